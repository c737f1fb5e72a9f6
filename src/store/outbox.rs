//! The outbox: call events ([`crate::events::Event`]) persisted in the order they
//! happened, before anything is sent, so a restart or a SIGKILL loses none.
//!
//! Trees:
//! - `events`: sequence number (u64 BE, ascending) -> the event as JSON;
//! - `event_ids`: event id -> its sequence number: the same event enqueued again (the
//!   same traffic replayed) is not stored twice.
//!
//! Written by the capture side, in batches, durable with the store's next flush (the
//! capture loop flushes after every poll); read by the delivery side.

use crate::events::Event;

use super::{Store, StoreError};

impl Store {
    /// Appends the events not already in the outbox, in order; answers how many were new.
    ///
    /// Two batches, the log first and the id index after, rather than a transaction
    /// over both trees: sled's transactions cost 13 % of a `replay --webhooks` of 2,000
    /// short calls (callgrind). A crash between the two leaves events without their ids:
    /// the same traffic replayed later adds them again, and they may be delivered twice,
    /// which receivers absorb (they deduplicate on the event id).
    pub fn enqueue_events(&self, events: &[Event]) -> Result<usize, StoreError> {
        let mut log = sled::Batch::default();
        let mut ids = sled::Batch::default();
        let mut new = 0;
        let mut seen_here: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for event in events {
            let known = self
                .event_ids
                .contains_key(event.id.as_bytes())
                .map_err(StoreError::db("event_ids"))?;
            if known || !seen_here.insert(&event.id) {
                continue;
            }
            let value = serde_json::to_vec(event).map_err(|err| StoreError::InvalidRecord {
                id: event.id.clone(),
                reason: err.to_string(),
            })?;
            // Unique and ascending across restarts; one up, so that 0 reads as "before
            // the first event".
            let seq = self.db.generate_id().map_err(StoreError::db("events"))? + 1;
            log.insert(&seq.to_be_bytes(), value);
            ids.insert(event.id.as_bytes(), &seq.to_be_bytes());
            new += 1;
        }
        if new > 0 {
            self.events
                .apply_batch(log)
                .map_err(StoreError::db("events"))?;
            self.event_ids
                .apply_batch(ids)
                .map_err(StoreError::db("event_ids"))?;
            self.wake_deliveries();
        }
        Ok(new)
    }

    /// Wakes the delivery tasks (new events, or a delivery asked for again).
    pub fn wake_deliveries(&self) {
        self.outbox_changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// What delivery tasks wait on: changes when [`Store::wake_deliveries`] is called.
    pub fn outbox_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.outbox_changed.subscribe()
    }

    /// Events after sequence number `after` (exclusive; 0 for all), at most `limit`,
    /// oldest first.
    /// An entry that does not decode is skipped and counted.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Event)>, StoreError> {
        let start = after.saturating_add(1).to_be_bytes();
        let mut out = Vec::new();
        for item in self.events.range(start..).take(limit) {
            let (key, value) = item.map_err(StoreError::db("events"))?;
            let seq = super::codec::u64_value("events", "(key)", &key)?;
            match serde_json::from_slice::<Event>(&value) {
                Ok(event) => out.push((seq, event)),
                Err(_) => {
                    self.corrupt
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        Ok(out)
    }

    /// Events in the outbox.
    pub fn events_len(&self) -> usize {
        self.events.len()
    }

    /// Keeps a `recording.ready` event back until record `id`'s recording is in its final
    /// format (FLAC, encoded after the record is stored), so receivers are never told
    /// `.wav` and `audio/wav` for a file that is about to become FLAC. Durable with the
    /// next flush; released by [`release_held`](Store::release_held). If the recording
    /// is settled already (the encoder was quicker), it is released at once.
    pub fn hold_event(&self, id: &str, event: &Event) -> Result<(), StoreError> {
        let value = serde_json::to_vec(event).map_err(|err| StoreError::InvalidRecord {
            id: event.id.clone(),
            reason: err.to_string(),
        })?;
        self.held_events
            .insert(id.as_bytes(), value)
            .map_err(StoreError::db("held_events"))?;
        if !self.names_a_wav(id)? {
            self.release_held(id)?;
        }
        Ok(())
    }

    /// Sends record `id`'s held event on to the outbox, its recording described as the
    /// record names it now. Whoever takes it from the held tree first sends it, so the
    /// encoder and [`hold_event`](Store::hold_event) may both call this.
    pub fn release_held(&self, id: &str) -> Result<bool, StoreError> {
        let Some(value) = self
            .held_events
            .remove(id.as_bytes())
            .map_err(StoreError::db("held_events"))?
        else {
            return Ok(false);
        };
        let Ok(mut event) = serde_json::from_slice::<Event>(&value) else {
            self.corrupt
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(false);
        };
        if let Some(rec) = self.get_call(id)?.and_then(|r| r.media.recording) {
            event.data["recording"] = crate::events::recording_data(id, &rec);
        }
        self.enqueue_events(std::slice::from_ref(&event))?;
        Ok(true)
    }

    /// Releases every held event whose recording is settled (no longer a WAV), or all
    /// of them with `all` (the configured format is WAV again): what a stop or a crash
    /// between encoding and release left held.
    pub fn release_settled_held(&self, all: bool) -> Result<usize, StoreError> {
        let mut released = 0;
        for item in self.held_events.iter().keys() {
            let key = item.map_err(StoreError::db("held_events"))?;
            let id = String::from_utf8_lossy(&key).into_owned();
            if (all || !self.names_a_wav(&id)?) && self.release_held(&id)? {
                released += 1;
            }
        }
        Ok(released)
    }

    /// Whether record `id` names a WAV recording (one the encoder may still convert).
    fn names_a_wav(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .get_call(id)?
            .and_then(|r| r.media.recording)
            .is_some_and(|r| r.file.ends_with(".wav")))
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

    #[test]
    fn events_come_back_in_order_once_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let a = event("c-1", EventKind::Ringing);
        let b = event("c-1", EventKind::Answered);
        assert_eq!(
            store
                .enqueue_events(&[a.clone(), b.clone()])
                .expect("enqueued"),
            2
        );
        // The same traffic again adds nothing.
        assert_eq!(
            store
                .enqueue_events(&[a.clone(), b.clone()])
                .expect("again"),
            0
        );
        store.flush().expect("flushed");
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        let all = store.events_after(0, 10).expect("read");
        let ids: Vec<&str> = all.iter().map(|(_, e)| e.id.as_str()).collect();
        assert_eq!(ids, [a.id.as_str(), b.id.as_str()]);
        let rest = store.events_after(all[0].0, 10).expect("read");
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].1.id, b.id);
    }
}
