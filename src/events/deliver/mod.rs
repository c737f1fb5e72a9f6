//! Webhook delivery: the outbox's events POSTed to each `[[webhooks]]` endpoint, signed,
//! retried with backoff, in order per call, at least once.
//!
//! One tokio task per endpoint ([`endpoint`]), woken when events are enqueued (the
//! store's outbox watch), never polled; the capture side only enqueues, so a slow or
//! dead receiver never holds up capture. Each endpoint's progress is in the store
//! (`store::deliveries`): a restart, even a SIGKILL, resumes retry series where they
//! were. A trimmer keeps the outbox within `[store] max_events`.
//!
//! Retry scheduling reads the wall clock: it is about when a receiver may be back, not
//! about capture time, and the engine never sees it.

mod backoff;
mod endpoint;
mod request;
mod samples;
mod select;
mod stats;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::events::{Event, EventKind};
use crate::store::Store;

pub use backoff::{jitter, retry_after, retry_delay};
pub use endpoint::now_ms;
pub use request::{
    add_recording_link, answer_of, chain, failed, render, signature, Answer, LinkSigner, Sender,
};
pub use samples::sample_events;
pub use select::selects;
pub use stats::EndpointStats;

/// How often the outbox is held to `[store] max_events`: counting the outbox walks it
/// (sled's len), and at 100 calls a second a minute adds 30,000 events, far less than
/// the default cap.
const TRIM_EVERY: Duration = Duration::from_secs(30);

/// The running delivery: one task per endpoint and the outbox trimmer.
pub struct Deliveries {
    endpoints: Vec<(String, Arc<EndpointStats>)>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Deliveries {
    /// Starts delivery on the current tokio runtime. Fails on a template that does not
    /// render against sample events, or a `ca_file` that does not load.
    pub fn start(
        config: &Config,
        store: Arc<Store>,
        signer: Option<LinkSigner>,
    ) -> Result<Deliveries, String> {
        check_templates(config)?;
        let (stop, stopped) = watch::channel(false);
        let mut endpoints = Vec::new();
        let mut tasks = Vec::new();
        for hook in &config.webhooks {
            let sender = Arc::new(Sender::new(hook.clone(), signer.clone())?);
            let stats = Arc::new(EndpointStats::default());
            endpoints.push((hook.name.clone(), stats.clone()));
            let endpoint = endpoint::Endpoint {
                sender,
                store: store.clone(),
                stats,
            };
            tasks.push(tokio::spawn(
                endpoint.run(store.outbox_changes(), stopped.clone()),
            ));
            tracing::info!(endpoint = %hook.name, url = %hook.url, "webhook delivery started");
        }
        // Integrations read the outbox too: their cursors hold events back from trimming
        // as an endpoint's do.
        let cursors = config
            .integrations
            .iter()
            .map(|i| crate::store::runs::cursor_name(&i.name))
            .chain(endpoints.iter().map(|(n, _)| n.clone()))
            .collect();
        tasks.push(tokio::spawn(trim(
            store,
            config.store.max_events,
            cursors,
            endpoints.clone(),
            stopped,
        )));
        Ok(Deliveries {
            endpoints,
            stop,
            tasks,
        })
    }

    /// The per-endpoint counters, for `/metrics`.
    pub fn metrics(&self) -> DeliveryMetrics {
        DeliveryMetrics(self.endpoints.clone())
    }

    /// Stops every task; deliveries in flight stay pending for the next start.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Per-endpoint delivery counters, shareable with the API's `/metrics`.
#[derive(Clone)]
pub struct DeliveryMetrics(Vec<(String, Arc<EndpointStats>)>);

impl DeliveryMetrics {
    /// The counters in the Prometheus text format (nothing without endpoints).
    pub fn write_prometheus(&self, out: &mut String) {
        stats::write_prometheus(&self.0, out);
    }

    /// One endpoint's counters.
    pub fn endpoint(&self, name: &str) -> Option<&EndpointStats> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, s)| &**s)
    }
}

async fn trim(
    store: Arc<Store>,
    max: u64,
    names: Vec<String>,
    endpoints: Vec<(String, Arc<EndpointStats>)>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let (store, names) = (store.clone(), names.clone());
        match tokio::task::spawn_blocking(move || store.trim_outbox(max, &names)).await {
            Ok(Ok(trimmed)) => {
                for (name, n) in &trimmed.dropped {
                    tracing::warn!(
                        endpoint = %name,
                        "the outbox is over [store] max_events ({max}): {n} events the endpoint had not taken were dropped"
                    );
                    if let Some((_, s)) = endpoints.iter().find(|(e, _)| e == name) {
                        s.dropped
                            .fetch_add(*n, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
            Ok(Err(e)) => tracing::error!("trimming the outbox: {e}"),
            Err(e) => tracing::error!("the outbox trimmer failed: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(TRIM_EVERY) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// Renders every endpoint's template against a sample of each event type it is sent,
/// so a template naming a field that does not exist is refused before the first call.
/// The error names the file and line of the template, the event type and the
/// template's own line.
pub fn check_templates(config: &Config) -> Result<(), String> {
    if config.webhooks.iter().all(|h| h.template.is_none()) {
        return Ok(());
    }
    let samples = sample_events(config);
    for hook in &config.webhooks {
        let Some(template) = &hook.template else {
            continue;
        };
        for sample in samples.iter().filter(|e| hook.wants(e.kind.as_str())) {
            let value = serde_json::to_value(sample).map_err(|e| e.to_string())?;
            if let Err(e) = render(template, &value) {
                let at = hook
                    .template_line
                    .map(|l| format!(" line {l}"))
                    .unwrap_or_default();
                return Err(format!(
                    "{}{at}: webhooks {:?} template: with a {} event, {e} (a field an event \
                     may lack needs `is defined` or `default`)",
                    config.origin,
                    hook.name,
                    sample.kind.as_str()
                ));
            }
        }
    }
    Ok(())
}

/// `calltap webhooks test NAME`: one signed sample event (its `call.ended`, or the
/// first type the endpoint is sent), sent once, and the receiver's answer.
pub async fn send_test(
    config: &Config,
    name: &str,
    signer: Option<LinkSigner>,
) -> Result<(Event, Answer, Duration), String> {
    let hook = config
        .webhooks
        .iter()
        .find(|h| h.name == name)
        .ok_or_else(|| {
            crate::config::no_such_entry(
                "webhook",
                name,
                config.webhooks.iter().map(|h| h.name.as_str()),
            )
        })?;
    check_templates(config)?;
    let samples = sample_events(config);
    let event = samples
        .iter()
        .find(|e| e.kind == EventKind::Ended && hook.wants(e.kind.as_str()))
        .or_else(|| samples.iter().find(|e| hook.wants(e.kind.as_str())))
        .cloned()
        .ok_or("no sample event of the types this webhook is sent")?;
    let sender = Sender::new(hook.clone(), signer)?;
    let (answer, took) = sender.send(&event).await;
    Ok((event, answer, took))
}
