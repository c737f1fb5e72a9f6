//! One integration's loop: takes the events it wants from the outbox (its own cursor,
//! as a webhook endpoint has), makes a durable run of each whose `when` holds, and
//! runs them: steps in order, each step's result saved (flushed) before the next
//! starts, failed attempts retried with the webhooks' back-off.
//!
//! A call's runs go one at a time, oldest event first; different calls in parallel up
//! to `concurrency`. A run waiting for a retry keeps its slot: with the receiver down,
//! nothing else would get through either.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{compile_condition, IntegrationConfig, CONTEXT_NAMES};
use crate::events::deliver::{add_recording_link, jitter, now_ms, retry_delay, LinkSigner};
use crate::events::Event;
use crate::store::runs::{run_id, Run, RunStatus, StepRecord, StepStatus};
use crate::store::Store;

use super::context::Scope;
use super::stats::IntegrationStats;
use super::step::{prepare, Attempted, Sender};

/// Open runs held per integration: past it the outbox is not read further until some
/// finish, and the backlog stays in the outbox.
const WINDOW: usize = 64;

/// The longest the loop sleeps with nothing to do: it wakes on new events anyway.
const IDLE_WAKE: Duration = Duration::from_secs(60);

/// An integration, compiled: its configuration, conditions and sender.
pub struct Compiled {
    pub config: IntegrationConfig,
    pub when: Option<cel_interpreter::Program>,
    pub step_when: Vec<Option<cel_interpreter::Program>>,
    pub sender: Sender,
    /// Signs `recording.ready`'s link, as webhook delivery does.
    pub signer: Option<LinkSigner>,
}

impl Compiled {
    pub fn new(
        config: &IntegrationConfig,
        smtp: Option<&crate::config::SmtpConfig>,
        signer: Option<LinkSigner>,
    ) -> Result<Compiled, String> {
        let at = |what: &str, e: String| format!("integration {}: {what}: {e}", config.name);
        let when = config
            .when
            .as_deref()
            .map(|w| compile_condition(w, &["event"]))
            .transpose()
            .map_err(|e| at("when", e))?;
        let step_when = config
            .steps
            .iter()
            .map(|s| {
                s.when
                    .as_deref()
                    .map(|w| compile_condition(w, &CONTEXT_NAMES))
                    .transpose()
                    .map_err(|e| at(&format!("step {}: when", s.name), e))
            })
            .collect::<Result<_, _>>()?;
        Ok(Compiled {
            config: config.clone(),
            when,
            step_when,
            sender: Sender::new(config, smtp)?,
            signer,
        })
    }

    /// Whether an event starts a run: its type, then `when`.
    pub fn selects(&self, event: &Event) -> Result<bool, String> {
        if !self.config.wants(event.kind.as_str()) {
            return Ok(false);
        }
        match &self.when {
            None => Ok(true),
            Some(when) => {
                let scope = Scope::stand_in(
                    serde_json::to_value(event).map_err(|e| e.to_string())?,
                    [],
                    [],
                );
                scope.holds(when).map_err(|e| format!("when: {e}"))
            }
        }
    }

    /// A new run of `event`, its steps all pending.
    pub fn new_run(&self, seq: u64, event: Event) -> Run {
        Run {
            id: run_id(&self.config.name, &event.id),
            integration: self.config.name.clone(),
            seq,
            event,
            status: RunStatus::Running,
            created_ms: now_ms(),
            finished_ms: None,
            steps: self
                .config
                .steps
                .iter()
                .map(|s| StepRecord::new(&s.name))
                .collect(),
            saved: BTreeMap::new(),
            error: None,
        }
    }

    /// Step `index` of `run`, once; `None` when it is skipped (the record says why).
    pub async fn attempt(&self, run: &mut Run, index: usize) -> Option<(Attempted, Duration)> {
        let step = &self.config.steps[index];
        let blocked = self.config.steps[..index]
            .iter()
            .zip(&run.steps)
            .find(|(cfg, rec)| rec.status == StepStatus::Failed && !cfg.continue_on_error)
            .map(|(cfg, _)| cfg.name.clone());
        let mut scope = Scope::of_run(run, index);
        add_recording_link(&mut scope.event, self.signer.as_ref());
        let record = &mut run.steps[index];
        if let Some(failed) = blocked {
            record.status = StepStatus::Skipped;
            record.error = Some(format!("step {failed} failed before it"));
            return None;
        }
        if let Some(when) = &self.step_when[index] {
            match scope.holds(when) {
                Ok(true) => {}
                Ok(false) => {
                    record.status = StepStatus::Skipped;
                    record.error = Some("when is false".into());
                    return None;
                }
                Err(e) => {
                    return Some((
                        Attempted::Failed {
                            code: None,
                            reason: format!("when: {e}"),
                        },
                        Duration::ZERO,
                    ))
                }
            }
        }
        let delivery = format!("{}.{}", run.id, step.name);
        let headers = Sender::headers(step, &self.config.name, run.event.kind.as_str(), &delivery);
        match prepare(step, &scope, headers) {
            Ok(prepared) => Some(self.sender.send(step, &prepared, &delivery).await),
            Err(reason) => Some((Attempted::Failed { code: None, reason }, Duration::ZERO)),
        }
    }
}

/// Applies an attempt to step `index` of `run`: done, failed, or retried at a time
/// the record holds. Answers whether the step is over.
pub fn settle(
    config: &IntegrationConfig,
    run: &mut Run,
    index: usize,
    attempted: Attempted,
    took: Duration,
) -> bool {
    let record = &mut run.steps[index];
    record.attempts += 1;
    record.duration_ms = Some(took.as_millis() as u64);
    match attempted {
        Attempted::Done { code, json, saved } => {
            record.status = StepStatus::Succeeded;
            record.code = code;
            record.json = json;
            record.error = None;
            run.saved.extend(saved);
            true
        }
        Attempted::Failed { code, reason } => {
            record.status = StepStatus::Failed;
            record.code = code;
            record.error = Some(reason);
            true
        }
        Attempted::Retry {
            code,
            reason,
            after,
        } => {
            record.code = code;
            if record.attempts >= config.max_attempts {
                record.status = StepStatus::Failed;
                record.error = Some(format!(
                    "{reason}; given up after {} attempts",
                    record.attempts
                ));
                return true;
            }
            let max = Duration::from_secs(config.retry_max_secs);
            let delay = after.map(|a| a.min(max)).unwrap_or_else(|| {
                retry_delay(
                    Duration::from_millis(config.retry_first_ms),
                    max,
                    record.attempts,
                    jitter(),
                )
            });
            record.next_attempt_ms = now_ms() + delay.as_millis() as u64;
            record.error = Some(reason);
            false
        }
    }
}

/// Ends a run once no step is pending: failed when a step failed that does not
/// continue on error.
pub fn finish(config: &IntegrationConfig, run: &mut Run) {
    let stopper = config
        .steps
        .iter()
        .zip(&run.steps)
        .find(|(cfg, rec)| rec.status == StepStatus::Failed && !cfg.continue_on_error);
    match stopper {
        Some((cfg, rec)) => {
            run.status = RunStatus::Failed;
            run.error = Some(format!(
                "step {}: {}",
                cfg.name,
                rec.error.as_deref().unwrap_or("failed")
            ));
        }
        None => run.status = RunStatus::Succeeded,
    }
    run.finished_ms = Some(now_ms());
}

pub(super) struct Worker {
    pub(super) compiled: Arc<Compiled>,
    pub(super) store: Arc<Store>,
    pub(super) stats: Arc<IntegrationStats>,
}

impl Worker {
    fn name(&self) -> &str {
        &self.compiled.config.name
    }

    pub(super) async fn run(
        self,
        mut changes: watch::Receiver<u64>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut open: BTreeMap<u64, Run> = BTreeMap::new();
        match self.store.open_runs(self.name()) {
            Ok(runs) => open.extend(runs.into_iter().map(|r| (r.seq, r))),
            Err(e) => tracing::error!(integration = self.name(), "reading open runs: {e}"),
        }
        let mut in_flight: HashSet<u64> = HashSet::new();
        let mut tasks: JoinSet<u64> = JoinSet::new();
        let mut refill = true;
        loop {
            if refill {
                self.refill(&mut open).await;
                refill = false;
            }
            self.dispatch(&open, &mut in_flight, &mut tasks);
            self.stats.open.store(open.len() as u64, Ordering::Relaxed);
            tokio::select! {
                Some(done) = tasks.join_next() => {
                    match done {
                        Ok(seq) => {
                            in_flight.remove(&seq);
                            open.remove(&seq);
                        }
                        Err(e) => tracing::error!(integration = self.name(), "a run task failed: {e}"),
                    }
                    refill = true;
                }
                changed = changes.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    refill = true;
                }
                _ = tokio::time::sleep(IDLE_WAKE) => {}
                _ = stop.changed() => break,
            }
        }
        // Runs in flight stay open in the store: the next start resumes them at the
        // step that had not finished.
        tasks.abort_all();
    }

    /// Takes new events from the outbox into runs, durably, up to [`WINDOW`] open.
    async fn refill(&self, open: &mut BTreeMap<u64, Run>) {
        let name = self.name().to_owned();
        let mut cursor = match self.store.run_cursor(&name) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(integration = %name, "reading the outbox cursor: {e}");
                return;
            }
        };
        while open.len() < WINDOW {
            let batch = match self.store.events_after(cursor, WINDOW) {
                Ok(b) if !b.is_empty() => b,
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(integration = %name, "reading the outbox: {e}");
                    break;
                }
            };
            let mut runs = Vec::new();
            for (seq, event) in batch {
                if open.len() + runs.len() >= WINDOW {
                    break;
                }
                cursor = seq;
                match self.compiled.selects(&event) {
                    Ok(true) => runs.push(self.compiled.new_run(seq, event)),
                    Ok(false) => {
                        if self.compiled.config.wants(event.kind.as_str()) {
                            self.stats.not_selected.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(reason) => {
                        // Logged as a failed run: the administrator sees why.
                        let mut run = self.compiled.new_run(seq, event);
                        run.status = RunStatus::Failed;
                        run.error = Some(reason);
                        run.finished_ms = Some(run.created_ms);
                        for step in &mut run.steps {
                            step.status = StepStatus::Skipped;
                        }
                        self.stats.failed.fetch_add(1, Ordering::Relaxed);
                        runs.push(run);
                    }
                }
            }
            let (store, keep, name2) = (self.store.clone(), runs.clone(), name.clone());
            let written =
                tokio::task::spawn_blocking(move || store.start_runs(&name2, &keep, cursor)).await;
            if !matches!(written, Ok(Ok(()))) {
                tracing::error!(integration = %name, "recording new runs failed: {written:?}");
                break;
            }
            for run in runs {
                if run.status == RunStatus::Running {
                    self.stats.started.fetch_add(1, Ordering::Relaxed);
                    open.insert(run.seq, run);
                }
            }
        }
    }

    fn dispatch(
        &self,
        open: &BTreeMap<u64, Run>,
        in_flight: &mut HashSet<u64>,
        tasks: &mut JoinSet<u64>,
    ) {
        let mut calls_ahead: HashSet<&str> = HashSet::new();
        for (seq, run) in open {
            if in_flight.len() >= self.compiled.config.concurrency {
                break;
            }
            if !calls_ahead.insert(run.event.call_id.as_str()) || in_flight.contains(seq) {
                continue;
            }
            in_flight.insert(*seq);
            let (compiled, store, stats, run) = (
                self.compiled.clone(),
                self.store.clone(),
                self.stats.clone(),
                run.clone(),
            );
            tasks.spawn(async move {
                let seq = run.seq;
                execute(&compiled, &store, &stats, run).await;
                seq
            });
        }
    }
}

/// Runs what is left of `run`, saving it after every step.
async fn execute(compiled: &Compiled, store: &Arc<Store>, stats: &IntegrationStats, mut run: Run) {
    let config = &compiled.config;
    for index in 0..run.steps.len() {
        while run.steps[index].status == StepStatus::Pending {
            let wait = run.steps[index].next_attempt_ms.saturating_sub(now_ms());
            if wait > 0 {
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            let step_stats = stats.step(index);
            match compiled.attempt(&mut run, index).await {
                None => {
                    if let Some(s) = step_stats {
                        s.skipped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some((attempted, took)) => {
                    let over = settle(config, &mut run, index, attempted, took);
                    if let Some(s) = step_stats {
                        s.observe(took);
                        let counter = match run.steps[index].status {
                            StepStatus::Succeeded => &s.succeeded,
                            StepStatus::Failed => &s.failed,
                            _ => &s.retried,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    if !over {
                        tracing::debug!(run = %run.id, step = %config.steps[index].name, "retrying: {:?}", run.steps[index].error);
                    }
                }
            }
            save(store, &run).await;
        }
    }
    finish(config, &mut run);
    let counter = match run.status {
        RunStatus::Failed => {
            tracing::warn!(run = %run.id, "integration run failed: {}", run.error.as_deref().unwrap_or(""));
            &stats.failed
        }
        _ => &stats.succeeded,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    save(store, &run).await;
}

/// Saves a run durably; the next step waits for it. A store that cannot be written is
/// logged: the run goes on, and a restart would repeat the unsaved step.
async fn save(store: &Arc<Store>, run: &Run) {
    let (store, copy) = (store.clone(), run.clone());
    match tokio::task::spawn_blocking(move || store.save_run(&copy)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(run = %run.id, "saving the run: {e}"),
        Err(e) => tracing::error!(run = %run.id, "saving the run: {e}"),
    }
}
