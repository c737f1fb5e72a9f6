//! Webhook delivery state, per endpoint, so a restart (or a SIGKILL) in the middle of a
//! retry series resumes it and nothing taken from the outbox is lost.
//!
//! Trees:
//! - `hook_cursor`: endpoint name -> the outbox sequence number (u64 BE) up to which the
//!   endpoint has taken events (into `hook_pending`, or skipped them by its filters);
//! - `hook_pending`: name, 0, seq (u64 BE) -> [`Pending`] as JSON: taken, not yet
//!   delivered, with the event itself (the outbox may prune it meanwhile);
//! - `hook_dead`: the same key -> [`DeadLetter`] as JSON, at most [`DEAD_KEEP`];
//! - `hook_log`: u64 BE, ascending -> [`Attempt`] as JSON, the last [`LOG_KEEP`].
//!
//! Write order makes a crash harmless: pending entries before the cursor that skips
//! them (a crash between takes them again, under the same keys), a dead letter before
//! its pending entry goes. At worst an event is sent twice, never lost.

use serde::{Deserialize, Serialize};

use crate::events::Event;

use super::{Store, StoreError};

/// Delivery attempts kept for `GET /webhooks/deliveries`: an afternoon of a busy PBX's
/// events at a glance, a few hundred kilobytes.
pub const LOG_KEEP: usize = 1_000;

/// Dead letters kept, all endpoints together: each holds its event (1-2 KB), so 10,000
/// are at most about 20 MB, and a week of an endpoint refusing everything.
pub const DEAD_KEEP: usize = 10_000;

/// Trimming runs once this many writes, not on every one (it walks the tree).
const TRIM_EVERY: u64 = 64;

/// An event taken by an endpoint and not yet delivered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    pub endpoint: String,
    /// The event's place in the outbox.
    pub seq: u64,
    pub event: Event,
    /// Attempts made so far.
    pub attempts: u32,
    /// Unix milliseconds (wall clock) of the next attempt.
    pub next_attempt_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// An event an endpoint will not be sent again unless asked
/// (`POST /webhooks/deliveries/{id}/retry`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub endpoint: String,
    pub seq: u64,
    pub event: Event,
    pub attempts: u32,
    /// Unix milliseconds.
    pub died_at_ms: u64,
    pub reason: String,
}

/// One delivery attempt, for the delivery log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// The delivery id: endpoint name, `.`, event id.
    pub id: String,
    pub endpoint: String,
    pub event_id: String,
    pub event_type: String,
    pub call_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Unix milliseconds when it was made.
    pub at_ms: u64,
    /// The receiver's HTTP status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// "delivered", "retrying" or "dead".
    pub outcome: String,
    /// Why it failed, or is retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub latency_ms: u64,
}

/// A delivery id: what `X-Calltap-Delivery`'s event id is to one endpoint.
pub fn delivery_id(endpoint: &str, event_id: &str) -> String {
    format!("{endpoint}.{event_id}")
}

/// The endpoint and event id of a delivery id (endpoint names have no `.`).
pub fn split_delivery_id(id: &str) -> Option<(&str, &str)> {
    id.split_once('.')
        .filter(|(e, ev)| !e.is_empty() && ev.starts_with("evt_"))
}

fn key(endpoint: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(endpoint.len() + 9);
    k.extend_from_slice(endpoint.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn prefix(endpoint: &str) -> Vec<u8> {
    let mut k = endpoint.as_bytes().to_vec();
    k.push(0);
    k
}

fn json<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::InvalidRecord {
        id: what.to_owned(),
        reason: e.to_string(),
    })
}

/// What [`Store::trim_outbox`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Events removed from the outbox.
    pub removed: u64,
    /// Per endpoint, removed events it had not taken yet: lost to it.
    pub dropped: Vec<(String, u64)>,
}

impl Store {
    /// How far endpoint `name` has taken events (0: none yet).
    pub fn hook_cursor(&self, name: &str) -> Result<u64, StoreError> {
        match self
            .hook_cursor
            .get(name.as_bytes())
            .map_err(StoreError::db("hook_cursor"))?
        {
            Some(v) => super::codec::u64_value("hook_cursor", name, &v),
            None => Ok(0),
        }
    }

    /// Records that endpoint `name` took `taken` (now pending) and everything up to
    /// `cursor`.
    pub fn take_events(
        &self,
        name: &str,
        taken: &[Pending],
        cursor: u64,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for p in taken {
            batch.insert(key(name, p.seq), json(&p.event.id, p)?);
        }
        self.hook_pending
            .apply_batch(batch)
            .map_err(StoreError::db("hook_pending"))?;
        self.hook_cursor
            .insert(name.as_bytes(), &cursor.to_be_bytes())
            .map_err(StoreError::db("hook_cursor"))?;
        Ok(())
    }

    /// Writes (or rewrites) one pending delivery.
    pub fn put_pending(&self, p: &Pending) -> Result<(), StoreError> {
        self.hook_pending
            .insert(key(&p.endpoint, p.seq), json(&p.event.id, p)?)
            .map_err(StoreError::db("hook_pending"))?;
        Ok(())
    }

    pub fn remove_pending(&self, name: &str, seq: u64) -> Result<(), StoreError> {
        self.hook_pending
            .remove(key(name, seq))
            .map_err(StoreError::db("hook_pending"))?;
        Ok(())
    }

    /// Endpoint `name`'s pending deliveries, oldest event first, at most `limit`.
    pub fn pending(&self, name: &str, limit: usize) -> Result<Vec<Pending>, StoreError> {
        self.decode_all(
            "hook_pending",
            self.hook_pending.scan_prefix(prefix(name)),
            limit,
        )
    }

    /// Every endpoint's pending deliveries, at most `limit`.
    pub fn all_pending(&self, limit: usize) -> Result<Vec<Pending>, StoreError> {
        self.decode_all("hook_pending", self.hook_pending.iter(), limit)
    }

    /// Gives up on a pending delivery: it becomes a dead letter.
    pub fn bury(&self, dead: &DeadLetter) -> Result<(), StoreError> {
        let k = key(&dead.endpoint, dead.seq);
        self.hook_dead
            .insert(k.clone(), json(&dead.event.id, dead)?)
            .map_err(StoreError::db("hook_dead"))?;
        self.hook_pending
            .remove(k)
            .map_err(StoreError::db("hook_pending"))?;
        if self
            .hook_writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % TRIM_EVERY
            == 0
        {
            self.trim_tree(&self.hook_dead, "hook_dead", DEAD_KEEP, |v| {
                serde_json::from_slice::<DeadLetter>(v)
                    .map(|d| d.died_at_ms)
                    .unwrap_or(0)
            })?;
        }
        Ok(())
    }

    /// Dead letters, newest first, at most `limit`.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let mut all: Vec<DeadLetter> =
            self.decode_all("hook_dead", self.hook_dead.iter(), usize::MAX)?;
        all.sort_by_key(|d| std::cmp::Reverse(d.died_at_ms));
        all.truncate(limit);
        Ok(all)
    }

    /// Takes a dead letter back (to send it again), if there is one.
    pub fn resurrect(&self, name: &str, event_id: &str) -> Result<Option<DeadLetter>, StoreError> {
        for (k, v) in self.hook_dead.scan_prefix(prefix(name)).flatten() {
            if let Ok(dead) = serde_json::from_slice::<DeadLetter>(&v) {
                if dead.event.id == event_id {
                    self.hook_dead
                        .remove(k)
                        .map_err(StoreError::db("hook_dead"))?;
                    return Ok(Some(dead));
                }
            }
        }
        Ok(None)
    }

    /// Appends to the delivery log, keeping the last [`LOG_KEEP`] attempts.
    pub fn log_attempt(&self, attempt: &Attempt) -> Result<(), StoreError> {
        let id = self.db.generate_id().map_err(StoreError::db("hook_log"))?;
        self.hook_log
            .insert(id.to_be_bytes(), json(&attempt.id, attempt)?)
            .map_err(StoreError::db("hook_log"))?;
        if self
            .hook_writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % TRIM_EVERY
            == 0
        {
            self.trim_tree(&self.hook_log, "hook_log", LOG_KEEP, |_| 0)?;
        }
        Ok(())
    }

    /// The delivery log, newest first, at most `limit`.
    pub fn attempts(&self, limit: usize) -> Result<Vec<Attempt>, StoreError> {
        self.decode_all("hook_log", self.hook_log.iter().rev(), limit)
    }

    /// An event still in the outbox, by id.
    pub fn find_event(&self, event_id: &str) -> Result<Option<(u64, Event)>, StoreError> {
        let Some(seq) = self
            .event_ids
            .get(event_id.as_bytes())
            .map_err(StoreError::db("event_ids"))?
        else {
            return Ok(None);
        };
        let seq = super::codec::u64_value("event_ids", event_id, &seq)?;
        Ok(self
            .events_after(seq.saturating_sub(1), 1)?
            .into_iter()
            .find(|(s, _)| *s == seq))
    }

    /// Keeps the outbox at `max` events or fewer: the oldest go first, which are those
    /// every endpoint has taken before any it has not. `endpoints` are the configured
    /// ones; an endpoint loses the removed events it had not taken (its cursor moves
    /// past them), and [`Trimmed::dropped`] counts them.
    pub fn trim_outbox(&self, max: u64, endpoints: &[String]) -> Result<Trimmed, StoreError> {
        let len = self.events.len() as u64;
        let mut out = Trimmed::default();
        if len <= max {
            return Ok(out);
        }
        let excess = len - max;
        let mut cursors = Vec::with_capacity(endpoints.len());
        for name in endpoints {
            cursors.push(self.hook_cursor(name)?);
        }
        let mut dropped = vec![0u64; endpoints.len()];
        let mut last = 0;
        #[derive(Deserialize)]
        struct IdOnly {
            id: String,
        }
        let mut events = sled::Batch::default();
        let mut ids = sled::Batch::default();
        for item in self.events.iter().take(excess as usize) {
            let (k, v) = item.map_err(StoreError::db("events"))?;
            let seq = super::codec::u64_value("events", "(key)", &k)?;
            for (i, cursor) in cursors.iter().enumerate() {
                if seq > *cursor {
                    dropped[i] += 1;
                }
            }
            if let Ok(e) = serde_json::from_slice::<IdOnly>(&v) {
                ids.remove(e.id.as_bytes());
            }
            events.remove(k);
            last = seq;
            out.removed += 1;
        }
        self.events
            .apply_batch(events)
            .map_err(StoreError::db("events"))?;
        self.event_ids
            .apply_batch(ids)
            .map_err(StoreError::db("event_ids"))?;
        for (i, name) in endpoints.iter().enumerate() {
            if dropped[i] > 0 {
                self.hook_cursor
                    .insert(name.as_bytes(), &last.to_be_bytes())
                    .map_err(StoreError::db("hook_cursor"))?;
                out.dropped.push((name.clone(), dropped[i]));
            }
        }
        Ok(out)
    }

    fn decode_all<T: serde::de::DeserializeOwned>(
        &self,
        name: &'static str,
        iter: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for item in iter {
            if out.len() >= limit {
                break;
            }
            let (_, v) = item.map_err(StoreError::db(name))?;
            match serde_json::from_slice(&v) {
                Ok(value) => out.push(value),
                Err(_) => {
                    self.corrupt
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        Ok(out)
    }

    /// Removes the oldest entries past `keep`: by key order, or by `age` when it
    /// tells more than 0.
    fn trim_tree(
        &self,
        tree: &sled::Tree,
        name: &'static str,
        keep: usize,
        age: impl Fn(&[u8]) -> u64,
    ) -> Result<(), StoreError> {
        let len = tree.len();
        if len <= keep {
            return Ok(());
        }
        let mut entries: Vec<(u64, sled::IVec)> = Vec::with_capacity(len);
        for (i, item) in tree.iter().enumerate() {
            let (k, v) = item.map_err(StoreError::db(name))?;
            let a = age(&v);
            entries.push((if a > 0 { a } else { i as u64 }, k));
        }
        entries.sort_by_key(|(a, _)| *a);
        let mut batch = sled::Batch::default();
        for (_, k) in entries.into_iter().take(len - keep) {
            batch.remove(k);
        }
        tree.apply_batch(batch).map_err(StoreError::db(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::Timestamp;
    use crate::events::EventKind;

    fn event(call: &str, kind: EventKind) -> Event {
        Event::new(
            kind,
            call,
            0,
            Timestamp::from_nanos(1_000_000_000),
            serde_json::json!({}),
        )
    }

    fn pending(name: &str, seq: u64, event: Event) -> Pending {
        Pending {
            endpoint: name.into(),
            seq,
            event,
            attempts: 0,
            next_attempt_ms: 0,
            last_error: None,
        }
    }

    #[test]
    fn pending_deliveries_and_cursors_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let a = pending("crm", 3, event("c-1", EventKind::Ringing));
        let b = pending("crm", 7, event("c-1", EventKind::Answered));
        let other = pending("chat", 3, event("c-1", EventKind::Ringing));
        store
            .take_events("crm", &[a.clone(), b.clone()], 9)
            .expect("taken");
        store
            .take_events("chat", std::slice::from_ref(&other), 3)
            .expect("taken");
        let mut retried = b.clone();
        retried.attempts = 2;
        retried.last_error = Some("HTTP 503".into());
        store.put_pending(&retried).expect("put");
        store.flush().expect("flush");
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.hook_cursor("crm").expect("cursor"), 9);
        assert_eq!(store.hook_cursor("chat").expect("cursor"), 3);
        assert_eq!(store.hook_cursor("new").expect("cursor"), 0);
        assert_eq!(store.pending("crm", 10).expect("pending"), [a, retried]);
        assert_eq!(store.pending("chat", 10).expect("pending"), [other]);
    }

    #[test]
    fn a_buried_delivery_is_a_dead_letter_until_resurrected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let p = pending("crm", 1, event("c-1", EventKind::Ended));
        store
            .take_events("crm", std::slice::from_ref(&p), 1)
            .expect("taken");
        store
            .bury(&DeadLetter {
                endpoint: "crm".into(),
                seq: 1,
                event: p.event.clone(),
                attempts: 1,
                died_at_ms: 5,
                reason: "HTTP 410".into(),
            })
            .expect("buried");
        assert!(store.pending("crm", 10).expect("pending").is_empty());
        assert_eq!(store.dead_letters(10).expect("dead").len(), 1);
        assert!(store.resurrect("crm", "evt_nope").expect("none").is_none());
        let back = store.resurrect("crm", &p.event.id).expect("back");
        assert_eq!(back.map(|d| d.seq), Some(1));
        assert!(store.dead_letters(10).expect("dead").is_empty());
    }

    #[test]
    fn the_outbox_trims_oldest_first_and_counts_what_an_endpoint_lost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let events: Vec<Event> = (0..10)
            .map(|i| event(&format!("c-{i}"), EventKind::Ringing))
            .collect();
        store.enqueue_events(&events).expect("enqueued");
        let all = store.events_after(0, 100).expect("all");
        // "fast" took 6 events, "slow" 2.
        store.take_events("fast", &[], all[5].0).expect("cursor");
        store.take_events("slow", &[], all[1].0).expect("cursor");
        let trimmed = store
            .trim_outbox(5, &["fast".into(), "slow".into()])
            .expect("trimmed");
        assert_eq!(trimmed.removed, 5);
        assert_eq!(trimmed.dropped, [("slow".to_string(), 3)]);
        assert_eq!(store.events_len(), 5);
        assert_eq!(store.hook_cursor("slow").expect("cursor"), all[4].0);
        assert_eq!(store.hook_cursor("fast").expect("cursor"), all[5].0);
        assert!(store.find_event(&all[0].1.id).expect("find").is_none());
        assert_eq!(
            store
                .find_event(&all[7].1.id)
                .expect("find")
                .map(|(s, _)| s),
            Some(all[7].0)
        );
        // The trimmed events' ids are gone too: the same traffic may enqueue them again.
        assert_eq!(store.enqueue_events(&events[..1]).expect("again"), 1);
    }

    #[test]
    fn the_delivery_log_keeps_the_newest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        for i in 0..(LOG_KEEP as u32 + 200) {
            store
                .log_attempt(&Attempt {
                    id: format!("crm.evt_{i}"),
                    endpoint: "crm".into(),
                    event_id: format!("evt_{i}"),
                    event_type: "call.ended".into(),
                    call_id: "c-1".into(),
                    attempt: i,
                    at_ms: u64::from(i),
                    status: Some(200),
                    outcome: "delivered".into(),
                    error: None,
                    latency_ms: 1,
                })
                .expect("logged");
        }
        let newest = store.attempts(5).expect("log");
        assert_eq!(newest[0].attempt, LOG_KEEP as u32 + 199);
        assert!(store.hook_log.len() <= LOG_KEEP + TRIM_EVERY as usize);
    }
}
