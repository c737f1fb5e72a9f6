//! Integrations: on a call event, a short workflow (create the lead in the CRM, keep
//! the id it answered, add a note to it, e-mail the team, post to the chat), each step
//! only when its condition holds, every run logged.
//!
//! A driver beside `events::deliver`, reading the same outbox: one tokio task per
//! `[[integrations]]` entry ([`runner`]) with its own cursor over the outbox, woken
//! when events are enqueued. A run is written to the store when its event is taken,
//! and after every step; a restart (even a SIGKILL) resumes at the step that had not
//! finished. The capture side only enqueues events, so nothing here holds it up.
//!
//! Retries read the wall clock, as webhook delivery does: they are about when a
//! receiver may be back, not about capture time.

mod context;
mod runner;
mod stats;
mod step;
mod trial;

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{step_templates, Config, StepKind};
use crate::events::deliver::{sample_events, LinkSigner};
use crate::store::Store;

pub use context::Scope;
pub use runner::Compiled;
pub use stats::IntegrationStats;
pub use step::{Attempted, Prepared};
pub use trial::{event_of_call, try_on_call};

/// The running integrations: one task each.
pub struct Integrations {
    stats: Vec<(String, Arc<IntegrationStats>)>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Integrations {
    /// Starts every integration on the current tokio runtime. Fails on a template or
    /// condition that does not fit sample events (see [`check`]).
    /// `signer` makes `recording.ready`'s `data.recording.url`, as for webhooks.
    pub fn start(
        config: &Config,
        store: Arc<Store>,
        signer: Option<LinkSigner>,
    ) -> Result<Integrations, String> {
        check(config)?;
        let (stop, stopped) = watch::channel(false);
        let mut stats = Vec::new();
        let mut tasks = Vec::new();
        for it in &config.integrations {
            let compiled = Arc::new(Compiled::new(it, config.smtp.as_ref(), signer.clone())?);
            let s = Arc::new(IntegrationStats::new(
                it.steps.iter().map(|s| s.name.clone()),
            ));
            stats.push((it.name.clone(), s.clone()));
            let worker = runner::Worker {
                compiled,
                store: store.clone(),
                stats: s,
            };
            tasks.push(tokio::spawn(
                worker.run(store.outbox_changes(), stopped.clone()),
            ));
            tracing::info!(integration = %it.name, steps = it.steps.len(), "integration started");
        }
        Ok(Integrations { stats, stop, tasks })
    }

    /// The counters, for `/metrics`.
    pub fn metrics(&self) -> IntegrationMetrics {
        IntegrationMetrics(self.stats.clone())
    }

    /// Stops every task; runs in flight stay open for the next start.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Per-integration counters, shareable with the API's `/metrics`.
#[derive(Clone)]
pub struct IntegrationMetrics(Vec<(String, Arc<IntegrationStats>)>);

impl IntegrationMetrics {
    /// The counters in the Prometheus text format (nothing without integrations).
    pub fn write_prometheus(&self, out: &mut String) {
        stats::write_prometheus(&self.0, out);
    }

    pub fn integration(&self, name: &str) -> Option<&IntegrationStats> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, s)| &**s)
    }
}

/// Checks every integration against a sample of each event type it runs on: its
/// `when`, every step's templates (earlier answers stand in), and the steps' `when`s
/// that read only the event and saved values. A field that does not exist is refused
/// before the first call, with the file's line of the integration or step.
pub fn check(config: &Config) -> Result<(), String> {
    if config.integrations.is_empty() {
        return Ok(());
    }
    let samples = sample_events(config);
    for it in &config.integrations {
        let compiled = Compiled::new(it, config.smtp.as_ref(), None)?;
        let line = |l: Option<usize>| l.map(|l| format!(" line {l}")).unwrap_or_default();
        for sample in samples.iter().filter(|e| it.wants(e.kind.as_str())) {
            let kind = sample.kind.as_str();
            let refuse = |at: Option<usize>, what: String, e: String| {
                format!(
                    "{}{}: integration {:?} {what}: with a {kind} event, {e} (a field an event \
                     may lack needs `is defined` or `default` in a template, has() in a condition)",
                    config.origin,
                    line(at),
                    it.name
                )
            };
            let event = serde_json::to_value(sample).map_err(|e| e.to_string())?;
            if let Some(when) = &compiled.when {
                Scope::stand_in(event.clone(), [], [])
                    .holds(when)
                    .map_err(|e| refuse(it.line, "when".into(), e))?;
            }
            let mut saved: Vec<&str> = Vec::new();
            for (j, step) in it.steps.iter().enumerate() {
                let earlier = it.steps[..j].iter().map(|s| s.name.as_str());
                let scope = Scope::stand_in(event.clone(), earlier, saved.iter().copied());
                for (key, template) in step_templates(step) {
                    scope
                        .render(template)
                        .map_err(|e| refuse(step.line, format!("step {:?} {key}", step.name), e))?;
                }
                if let (Some(when), Some(source)) = (&compiled.step_when[j], &step.when) {
                    let refs = when.references();
                    if !refs.has_variable("steps") && !refs.has_variable("saved") {
                        scope.holds(when).map_err(|e| {
                            refuse(
                                step.line,
                                format!("step {:?} when {source:?}", step.name),
                                e,
                            )
                        })?;
                    }
                }
                if step.kind == StepKind::Http {
                    saved.extend(step.save.keys().map(String::as_str));
                }
            }
        }
    }
    Ok(())
}
