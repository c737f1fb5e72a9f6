//! Integration runs, durable: a run is written when the integration takes its event
//! from the outbox, and again after each step, so a restart (even a SIGKILL) resumes
//! at the step that had not finished and never repeats one that had.
//!
//! Trees:
//! - `hook_cursor` (shared with webhooks): `integration:NAME` -> the outbox sequence
//!   number up to which the integration has taken events;
//! - `runs`: outbox seq (u64 BE), 0, integration name -> [`Run`] as JSON, the last
//!   [`RUNS_KEEP`] finished ones and every open one;
//! - `runs_open`: the same key -> nothing, for the runs not finished.
//!
//! Write order: runs before the cursor that passes their events (a crash between takes
//! the events again, under the same keys), a run's state before its open mark goes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::Event;

use super::{Store, StoreError};

/// Finished runs kept for `GET /integrations/runs`: each holds its event and the
/// steps' answers (a few KB), so about 50 MB at most.
pub const RUNS_KEEP: usize = 10_000;

/// Trimming runs once this many runs finish (it walks the tree).
const TRIM_EVERY: u64 = 64;

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
}

/// Where a step stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// Not started, or waiting for a retry.
    Pending,
    Succeeded,
    Failed,
    /// Its condition was false, or an earlier step failed.
    Skipped,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
        }
    }
}

/// One step of a run, as it went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    pub name: String,
    pub status: StepStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// Unix milliseconds (wall clock) of the next attempt, while pending.
    #[serde(default)]
    pub next_attempt_ms: u64,
    /// The answer's code: HTTP status, or SMTP reply code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// The last attempt's duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Why it failed, is retried, or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The answer as JSON, when it was JSON (`steps.NAME.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
}

impl StepRecord {
    pub fn new(name: &str) -> StepRecord {
        StepRecord {
            name: name.to_owned(),
            status: StepStatus::Pending,
            attempts: 0,
            next_attempt_ms: 0,
            code: None,
            duration_ms: None,
            error: None,
            json: None,
        }
    }
}

/// One run of an integration on one event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// Integration name, `.`, event id: stable, so a receiver may deduplicate on it.
    pub id: String,
    pub integration: String,
    /// The event's place in the outbox.
    pub seq: u64,
    pub event: Event,
    pub status: RunStatus,
    /// Unix milliseconds.
    pub created_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    /// One per configured step, in order.
    pub steps: Vec<StepRecord>,
    /// Values kept by `save` (`saved.NAME`).
    #[serde(default)]
    pub saved: BTreeMap<String, Value>,
    /// Why the run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A run id: what `X-Calltap-Delivery` carries, with the step name after it.
pub fn run_id(integration: &str, event_id: &str) -> String {
    format!("{integration}.{event_id}")
}

/// The outbox cursor of integration `name`, in the webhooks' cursor tree (endpoint
/// names have no `:`, so the two never meet).
pub fn cursor_name(integration: &str) -> String {
    format!("integration:{integration}")
}

fn key(integration: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(integration.len() + 9);
    k.extend_from_slice(&seq.to_be_bytes());
    k.push(0);
    k.extend_from_slice(integration.as_bytes());
    k
}

fn json(run: &Run) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(run).map_err(|e| StoreError::InvalidRecord {
        id: run.id.clone(),
        reason: e.to_string(),
    })
}

impl Store {
    /// How far integration `name` has taken events (0: none yet).
    pub fn run_cursor(&self, name: &str) -> Result<u64, StoreError> {
        self.hook_cursor(&cursor_name(name))
    }

    /// Records new runs of integration `name` and that it took everything up to
    /// `cursor`, durably: a run exists on disk before anything of it is sent.
    pub fn start_runs(&self, name: &str, runs: &[Run], cursor: u64) -> Result<(), StoreError> {
        let mut all = sled::Batch::default();
        let mut open = sled::Batch::default();
        for run in runs {
            let k = key(&run.integration, run.seq);
            all.insert(k.clone(), json(run)?);
            if run.status == RunStatus::Running {
                open.insert(k, &[]);
            }
        }
        self.runs.apply_batch(all).map_err(StoreError::db("runs"))?;
        self.runs_open
            .apply_batch(open)
            .map_err(StoreError::db("runs_open"))?;
        self.take_events(&cursor_name(name), &[], cursor)?;
        self.flush()
    }

    /// Writes a run as it stands, durably (flushed): the next step starts only after
    /// this returns. A finished run leaves the open set.
    pub fn save_run(&self, run: &Run) -> Result<(), StoreError> {
        let k = key(&run.integration, run.seq);
        self.runs
            .insert(k.clone(), json(run)?)
            .map_err(StoreError::db("runs"))?;
        if run.status != RunStatus::Running {
            self.runs_open
                .remove(k)
                .map_err(StoreError::db("runs_open"))?;
            if self
                .hook_writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                % TRIM_EVERY
                == 0
            {
                self.trim_runs()?;
            }
        }
        self.flush()
    }

    /// Integration `name`'s unfinished runs, oldest event first.
    pub fn open_runs(&self, name: &str) -> Result<Vec<Run>, StoreError> {
        let mut out = Vec::new();
        for item in self.runs_open.iter().keys() {
            let k = item.map_err(StoreError::db("runs_open"))?;
            if k.get(9..) != Some(name.as_bytes()) {
                continue;
            }
            match self.runs.get(&k).map_err(StoreError::db("runs"))? {
                Some(v) => match serde_json::from_slice::<Run>(&v) {
                    Ok(run) => out.push(run),
                    Err(_) => {
                        self.corrupt
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                },
                None => {
                    self.runs_open
                        .remove(k)
                        .map_err(StoreError::db("runs_open"))?;
                }
            }
        }
        Ok(out)
    }

    /// Runs, newest event first: at most `limit`, those before `before` (the outbox
    /// sequence and integration of the last run of the previous page), of one
    /// integration when `integration` is given.
    pub fn runs(
        &self,
        limit: usize,
        before: Option<(u64, &str)>,
        integration: Option<&str>,
    ) -> Result<Vec<Run>, StoreError> {
        let iter = match before {
            Some((seq, name)) => self.runs.range(..key(name, seq)),
            None => self.runs.range::<Vec<u8>, _>(..),
        };
        let mut out = Vec::new();
        for item in iter.rev() {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item.map_err(StoreError::db("runs"))?;
            if integration.is_some_and(|n| k.get(9..) != Some(n.as_bytes())) {
                continue;
            }
            match serde_json::from_slice::<Run>(&v) {
                Ok(run) => out.push(run),
                Err(_) => {
                    self.corrupt
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        Ok(out)
    }

    /// Removes the oldest finished runs past [`RUNS_KEEP`].
    fn trim_runs(&self) -> Result<(), StoreError> {
        let finished = self.runs.len().saturating_sub(self.runs_open.len());
        if finished <= RUNS_KEEP {
            return Ok(());
        }
        let mut excess = finished - RUNS_KEEP;
        let mut batch = sled::Batch::default();
        for item in self.runs.iter().keys() {
            if excess == 0 {
                break;
            }
            let k = item.map_err(StoreError::db("runs"))?;
            if !self
                .runs_open
                .contains_key(&k)
                .map_err(StoreError::db("runs_open"))?
            {
                batch.remove(k);
                excess -= 1;
            }
        }
        self.runs.apply_batch(batch).map_err(StoreError::db("runs"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::Timestamp;
    use crate::events::EventKind;

    fn run(name: &str, seq: u64) -> Run {
        let event = Event::new(
            EventKind::Ended,
            &format!("c-{seq}"),
            0,
            Timestamp::from_nanos(1_000_000_000),
            serde_json::json!({}),
        );
        Run {
            id: run_id(name, &event.id),
            integration: name.into(),
            seq,
            event,
            status: RunStatus::Running,
            created_ms: 1,
            finished_ms: None,
            steps: vec![StepRecord::new("lead"), StepRecord::new("note")],
            saved: BTreeMap::new(),
            error: None,
        }
    }

    #[test]
    fn open_runs_and_their_steps_survive_a_reopen_and_finished_ones_leave_the_open_set() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let (a, b, other) = (run("crm", 3), run("crm", 5), run("chat", 4));
        store
            .start_runs("crm", &[a.clone(), b.clone()], 9)
            .expect("started");
        store
            .start_runs("chat", std::slice::from_ref(&other), 4)
            .expect("started");
        let mut a2 = a.clone();
        a2.steps[0].status = StepStatus::Succeeded;
        a2.saved.insert("lead_id".into(), serde_json::json!(42));
        store.save_run(&a2).expect("saved");
        let mut b2 = b.clone();
        b2.status = RunStatus::Failed;
        store.save_run(&b2).expect("saved");
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.run_cursor("crm").expect("cursor"), 9);
        assert_eq!(store.run_cursor("chat").expect("cursor"), 4);
        assert_eq!(
            store.hook_cursor("crm").expect("cursor"),
            0,
            "not a webhook's"
        );
        assert_eq!(store.open_runs("crm").expect("open"), [a2.clone()]);
        assert_eq!(
            store.open_runs("chat").expect("open"),
            std::slice::from_ref(&other)
        );
        let all = store.runs(10, None, None).expect("all");
        assert_eq!(
            all.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [5, 4, 3],
            "newest first"
        );
        let page = store
            .runs(10, Some((4, "chat")), Some("crm"))
            .expect("page");
        assert_eq!(page, [a2.clone()]);
        // Two integrations' runs of one event: a page may end between them.
        let (x, y) = (run("a", 8), run("b", 8));
        store
            .start_runs("a", std::slice::from_ref(&x), 8)
            .expect("started");
        store
            .start_runs("b", std::slice::from_ref(&y), 8)
            .expect("started");
        let first = store.runs(1, None, None).expect("first");
        assert_eq!(first, [y]);
        let second = store.runs(1, Some((8, "b")), None).expect("second");
        assert_eq!(second, [x]);
    }
}
