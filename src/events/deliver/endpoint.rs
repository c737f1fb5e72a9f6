//! One endpoint's delivery loop: takes the events it wants from the outbox into its
//! pending set (persisted), sends them with bounded concurrency and in order per call,
//! retries, buries, and pauses when the endpoint looks down.
//!
//! Order: a call's events go one at a time, oldest first: an event waits while an
//! earlier event of the same call is pending (in flight or waiting for a retry), so a
//! `call.ended` never overtakes its `call.answered`. Different calls go in parallel, up
//! to `concurrency`.
//!
//! Pause: after `pause_after_failures` failures in a row (no answer, 5xx, 429) the
//! endpoint is taken as down: one delivery at a time (a probe), spaced by the same
//! backoff, until one succeeds. Only the probe spends its attempts, so an endpoint down
//! for hours does not exhaust every event's attempts at once.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::store::deliveries::{delivery_id, Attempt, DeadLetter, Pending};
use crate::store::Store;

use super::backoff::{jitter, retry_delay};
use super::request::{Answer, Sender};
use super::select::selects;
use super::stats::EndpointStats;

/// Events held pending per endpoint: past it the outbox is not read further until
/// some are delivered, so an endpoint down for a day holds this many in memory and its
/// backlog stays in the outbox (bounded by `[store] max_events`).
const WINDOW: usize = 256;

/// The longest the loop sleeps with nothing due: it wakes on new events anyway.
const IDLE_WAKE: Duration = Duration::from_secs(60);

/// The wall clock in Unix milliseconds: retry schedules.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(super) struct Endpoint {
    pub(super) sender: Arc<Sender>,
    pub(super) store: Arc<Store>,
    pub(super) stats: Arc<EndpointStats>,
}

#[derive(Default)]
struct State {
    pending: BTreeMap<u64, Pending>,
    in_flight: HashSet<u64>,
    failures_in_a_row: u32,
    /// Nothing is sent before this (Unix ms): a pause, or a 429's Retry-After.
    hold_until_ms: u64,
}

type Done = (u64, Answer, Duration);

impl Endpoint {
    fn name(&self) -> &str {
        &self.sender.hook.name
    }

    pub(super) async fn run(
        self,
        mut changes: watch::Receiver<u64>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut st = State::default();
        let mut tasks: JoinSet<Done> = JoinSet::new();
        // Re-reading the stored pending set is needed at start and when woken (a
        // delivery asked for again); after a delivery only the outbox is read.
        let mut refill = true;
        let mut reread = true;
        loop {
            if refill {
                self.refill(&mut st, std::mem::take(&mut reread));
                refill = false;
            }
            let now = now_ms();
            let next = self.dispatch(&mut st, &mut tasks, now);
            self.publish(&st);
            let wait = next.map_or(IDLE_WAKE, |t| Duration::from_millis(t.saturating_sub(now)));
            tokio::select! {
                Some(done) = tasks.join_next() => {
                    match done {
                        Ok((seq, answer, took)) => self.settle(&mut st, seq, answer, took),
                        Err(e) => tracing::error!(endpoint = self.name(), "a delivery task failed: {e}"),
                    }
                    refill = true;
                }
                changed = changes.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    refill = true;
                    reread = true;
                }
                _ = tokio::time::sleep(wait.min(IDLE_WAKE)) => {}
                _ = stop.changed() => break,
            }
        }
        // In-flight deliveries stay pending in the store: the next start sends them
        // again (at least once).
        tasks.abort_all();
    }

    /// Takes what the store holds for this endpoint: with `reread`, pending deliveries
    /// (a previous run's, or asked for again through the API); then, once fewer than
    /// half of [`WINDOW`] are pending, new events up to [`WINDOW`] (reading the outbox
    /// a few events at a time would decode a batch to take one).
    fn refill(&self, st: &mut State, reread: bool) {
        let name = self.name().to_owned();
        if reread {
            match self.store.pending(&name, WINDOW * 4) {
                Ok(stored) => {
                    for p in stored {
                        st.pending.entry(p.seq).or_insert(p);
                    }
                }
                Err(e) => tracing::error!(endpoint = %name, "reading pending deliveries: {e}"),
            }
        }
        if st.pending.len() >= WINDOW / 2 {
            return;
        }
        let mut cursor = match self.store.hook_cursor(&name) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(endpoint = %name, "reading the delivery cursor: {e}");
                return;
            }
        };
        while st.pending.len() < WINDOW {
            let batch = match self.store.events_after(cursor, WINDOW) {
                Ok(b) if !b.is_empty() => b,
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(endpoint = %name, "reading the outbox: {e}");
                    break;
                }
            };
            let now = now_ms();
            let mut taken = Vec::new();
            for (seq, event) in batch {
                if st.pending.len() + taken.len() >= WINDOW {
                    break;
                }
                cursor = seq;
                if selects(&self.sender.hook, &event) {
                    taken.push(Pending {
                        endpoint: name.clone(),
                        seq,
                        event,
                        attempts: 0,
                        next_attempt_ms: now,
                        last_error: None,
                    });
                }
            }
            if let Err(e) = self.store.take_events(&name, &taken, cursor) {
                tracing::error!(endpoint = %name, "recording taken events: {e}");
                break;
            }
            for p in taken {
                st.pending.insert(p.seq, p);
            }
        }
    }

    /// Starts what is due and allowed; answers when something next falls due.
    fn dispatch(&self, st: &mut State, tasks: &mut JoinSet<Done>, now: u64) -> Option<u64> {
        let hook = &self.sender.hook;
        if now < st.hold_until_ms {
            return Some(st.hold_until_ms);
        }
        let paused = st.failures_in_a_row >= hook.pause_after_failures;
        let limit = if paused { 1 } else { hook.concurrency };
        let mut calls_ahead: HashSet<&str> = HashSet::new();
        let mut next: Option<u64> = None;
        let mut due = Vec::new();
        for (seq, p) in &st.pending {
            if st.in_flight.len() + due.len() >= limit {
                break;
            }
            // Only a call's oldest pending event may go.
            if !calls_ahead.insert(p.event.call_id.as_str()) || st.in_flight.contains(seq) {
                continue;
            }
            if p.next_attempt_ms > now {
                next = Some(next.map_or(p.next_attempt_ms, |n: u64| n.min(p.next_attempt_ms)));
                continue;
            }
            due.push(*seq);
        }
        for seq in due {
            let Some(p) = st.pending.get(&seq) else {
                continue;
            };
            st.in_flight.insert(seq);
            let sender = self.sender.clone();
            let event = p.event.clone();
            tasks.spawn(async move {
                let (answer, took) = sender.send(&event).await;
                (seq, answer, took)
            });
        }
        next
    }

    /// Applies an attempt's answer: delivered, retried later, or buried.
    fn settle(&self, st: &mut State, seq: u64, answer: Answer, took: Duration) {
        st.in_flight.remove(&seq);
        let Some(mut p) = st.pending.remove(&seq) else {
            return;
        };
        let hook = &self.sender.hook;
        let name = self.name();
        p.attempts += 1;
        let now = now_ms();
        if answer.status().is_some() {
            self.stats.observe(took);
        }
        let mut log = Attempt {
            id: delivery_id(name, &p.event.id),
            endpoint: name.to_owned(),
            event_id: p.event.id.clone(),
            event_type: p.event.kind.as_str().to_owned(),
            call_id: p.event.call_id.clone(),
            attempt: p.attempts,
            at_ms: now.saturating_sub(took.as_millis() as u64),
            status: answer.status(),
            outcome: String::new(),
            error: None,
            latency_ms: took.as_millis() as u64,
        };
        let first = Duration::from_millis(hook.retry_first_ms);
        let max = Duration::from_secs(hook.retry_max_secs);
        match answer {
            Answer::Delivered { .. } => {
                if let Err(e) = self.store.remove_pending(name, seq) {
                    tracing::error!(endpoint = name, "removing a delivered event: {e}");
                }
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
                if st.failures_in_a_row >= hook.pause_after_failures {
                    tracing::info!(
                        endpoint = name,
                        "the endpoint answers again: deliveries resume"
                    );
                }
                st.failures_in_a_row = 0;
                st.hold_until_ms = 0;
                log.outcome = "delivered".into();
            }
            Answer::GiveUp { reason, .. } => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                // The receiver answered: it is up, whatever it thought of this event.
                st.failures_in_a_row = 0;
                log.outcome = "dead".into();
                log.error = Some(reason.clone());
                self.bury(p, reason, now);
            }
            Answer::Retry { reason, after, .. } => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                st.failures_in_a_row += 1;
                log.error = Some(reason.clone());
                if p.attempts >= hook.max_attempts {
                    log.outcome = "dead".into();
                    let attempts = p.attempts;
                    self.bury(
                        p,
                        format!("{reason}; given up after {attempts} attempts"),
                        now,
                    );
                } else {
                    let delay = after
                        .map(|a| a.min(max))
                        .unwrap_or_else(|| retry_delay(first, max, p.attempts, jitter()));
                    p.next_attempt_ms = now + delay.as_millis() as u64;
                    p.last_error = Some(reason.clone());
                    if let Err(e) = self.store.put_pending(&p) {
                        tracing::error!(endpoint = name, "recording a retry: {e}");
                    }
                    st.pending.insert(seq, p);
                    log.outcome = "retrying".into();
                }
                if let Some(after) = after {
                    // The receiver said when: nothing goes before then.
                    st.hold_until_ms = st
                        .hold_until_ms
                        .max(now + after.min(max).as_millis() as u64);
                }
                if st.failures_in_a_row >= hook.pause_after_failures {
                    let n = st.failures_in_a_row - hook.pause_after_failures + 1;
                    let pause = retry_delay(first, max, n, jitter());
                    st.hold_until_ms = st.hold_until_ms.max(now + pause.as_millis() as u64);
                    if n == 1 {
                        tracing::warn!(
                            endpoint = name,
                            "{} failures in a row ({reason}): paused, probing with one delivery at a time",
                            st.failures_in_a_row
                        );
                    }
                }
            }
        }
        if let Err(e) = self.store.log_attempt(&log) {
            tracing::error!(endpoint = name, "writing the delivery log: {e}");
        }
    }

    fn bury(&self, p: Pending, reason: String, now: u64) {
        tracing::warn!(
            endpoint = self.name(),
            event = %p.event.id,
            r#type = p.event.kind.as_str(),
            "delivery given up: {reason}"
        );
        self.stats.dead.fetch_add(1, Ordering::Relaxed);
        let dead = DeadLetter {
            endpoint: p.endpoint,
            seq: p.seq,
            event: p.event,
            attempts: p.attempts,
            died_at_ms: now,
            reason,
        };
        if let Err(e) = self.store.bury(&dead) {
            tracing::error!(endpoint = self.name(), "writing a dead letter: {e}");
        }
    }

    fn publish(&self, st: &State) {
        let s = &self.stats;
        s.pending.store(st.pending.len() as u64, Ordering::Relaxed);
        s.retrying.store(
            st.pending.values().filter(|p| p.attempts > 0).count() as u64,
            Ordering::Relaxed,
        );
        s.paused.store(
            st.failures_in_a_row >= self.sender.hook.pause_after_failures,
            Ordering::Relaxed,
        );
    }
}
