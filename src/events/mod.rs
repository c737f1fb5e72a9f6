//! Call events, pushed: the engine's view of each call as one normalised event stream
//! (`call.ringing` ... `recording.ready`), whatever the PBX. Events are made in capture
//! time by the engine's feed, persisted in a durable outbox in the store before they are
//! sent, and delivered as signed webhooks by their own tasks: the capture loop never
//! waits on a receiver.
//!
//! An event as it goes out:
//! ```json
//! {"id": "evt_3f0c...", "type": "call.answered", "occurredAt": "2026-03-04T09:00:39.200Z",
//!  "callId": "c-0123456789abcdef01234567", "data": {...}}
//! ```
//! - `id` is stable: derived from the call, the type and how many events of that type the
//!   call had before, so the same SIP traffic replayed gives the same ids (receivers
//!   deduplicate on it, as on the `X-Calltap-Delivery` header).
//! - `occurredAt` is the capture time of the packet that caused it, RFC 3339 in UTC with
//!   milliseconds.
//! - `callId` is the call's id as `POST /calls` gives it.
//! - `data` is the contract call object as of the event (`id`, `direction`,
//!   `clientNumber`, `operatorId`, ... as CONTRACT.md names them) with calltap's own facts
//!   beside it (`outcome`, `endReason`, `ringSeconds`, quality figures, `recording`).

mod build;
pub mod deliver;

pub use build::{call_event, recording_data, unanswered_kind};

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::base::Timestamp;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// An incoming call arrived, or an outgoing one was placed (`data.direction`).
    Ringing,
    /// An operator (or the client) answered.
    Answered,
    /// Answered by a number in `[calls] voicemail`.
    Voicemail,
    /// Nobody answered: cancelled by the caller, or not answered (408/480, ring timeout,
    /// no response).
    Missed,
    /// 486 Busy Here / 600 Busy Everywhere.
    Busy,
    /// 403, 603 Decline, 607, 608.
    Rejected,
    /// Any other failure.
    Failed,
    /// The call was transferred (REFER, or INVITE with Replaces).
    Transferred,
    /// An answered call hung up: the full call with who hung up and its quality.
    Ended,
    /// The call's recording can be downloaded (`data.recording`: url, filename, mimeType).
    RecordingReady,
}

impl EventKind {
    pub const ALL: [EventKind; 10] = [
        EventKind::Ringing,
        EventKind::Answered,
        EventKind::Voicemail,
        EventKind::Missed,
        EventKind::Busy,
        EventKind::Rejected,
        EventKind::Failed,
        EventKind::Transferred,
        EventKind::Ended,
        EventKind::RecordingReady,
    ];

    /// The type as events carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Ringing => "call.ringing",
            EventKind::Answered => "call.answered",
            EventKind::Voicemail => "call.voicemail",
            EventKind::Missed => "call.missed",
            EventKind::Busy => "call.busy",
            EventKind::Rejected => "call.rejected",
            EventKind::Failed => "call.failed",
            EventKind::Transferred => "call.transferred",
            EventKind::Ended => "call.ended",
            EventKind::RecordingReady => "recording.ready",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One event, ready to persist and send.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub id: String,
    pub kind: EventKind,
    /// Capture time of the packet that caused it.
    pub occurred_at: Timestamp,
    pub call_id: String,
    pub data: Value,
}

impl Event {
    /// An event whose id derives from the call, the type and `nth` (how many events of
    /// this type the call had before it): the same traffic gives the same ids.
    pub fn new(
        kind: EventKind,
        call_id: &str,
        nth: u32,
        occurred_at: Timestamp,
        data: Value,
    ) -> Event {
        Event {
            id: event_id(kind, call_id, nth),
            kind,
            occurred_at,
            call_id: call_id.to_owned(),
            data,
        }
    }

    /// `occurredAt`: RFC 3339, UTC, milliseconds.
    pub fn occurred_at_rfc3339(&self) -> String {
        rfc3339_millis(self.occurred_at)
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(5))?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("type", self.kind.as_str())?;
        map.serialize_entry("occurredAt", &self.occurred_at_rfc3339())?;
        map.serialize_entry("callId", &self.call_id)?;
        map.serialize_entry("data", &self.data)?;
        map.end()
    }
}

impl<'de> serde::Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(serde::Deserialize)]
        struct Wire {
            id: String,
            #[serde(rename = "type")]
            kind: String,
            #[serde(rename = "occurredAt")]
            occurred_at: String,
            #[serde(rename = "callId")]
            call_id: String,
            data: Value,
        }
        let w = Wire::deserialize(deserializer)?;
        let kind = EventKind::parse(&w.kind)
            .ok_or_else(|| D::Error::custom(format!("unknown event type {:?}", w.kind)))?;
        let at = humantime::parse_rfc3339(&w.occurred_at)
            .map_err(|e| D::Error::custom(format!("occurredAt: {e}")))?;
        let at = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| D::Error::custom("occurredAt before 1970"))?;
        Ok(Event {
            id: w.id,
            kind,
            occurred_at: Timestamp::from_duration(at),
            call_id: w.call_id,
            data: w.data,
        })
    }
}

/// `evt_` and 96 bits of SHA-256 over the call, the type and the ordinal, in hex.
pub fn event_id(kind: EventKind, call_id: &str, nth: u32) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(call_id.as_bytes());
    h.update([0]);
    h.update(kind.as_str().as_bytes());
    h.update([0]);
    h.update(nth.to_be_bytes());
    format!("evt_{}", hex::encode(&h.finalize()[..12]))
}

/// A capture time as RFC 3339 in UTC with milliseconds: `2026-03-04T09:00:39.200Z`.
pub fn rfc3339_millis(t: Timestamp) -> String {
    let d = std::time::Duration::from_nanos(t.as_nanos() / 1_000_000 * 1_000_000);
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_event_goes_out_in_the_documented_shape_and_reads_back() {
        let at = Timestamp::from_nanos(1_772_614_839_200_456_789);
        let e = Event::new(
            EventKind::Answered,
            "c-1",
            0,
            at,
            json!({"direction": "incoming"}),
        );
        let text = serde_json::to_value(&e).expect("json");
        assert_eq!(
            text,
            json!({"id": e.id, "type": "call.answered", "occurredAt": "2026-03-04T09:00:39.200Z",
                   "callId": "c-1", "data": {"direction": "incoming"}})
        );
        assert!(e.id.starts_with("evt_") && e.id.len() == 28);
        let back: Event = serde_json::from_value(text).expect("reads back");
        assert_eq!(back.id, e.id);
        assert_eq!(back.kind, e.kind);
        assert_eq!(back.occurred_at.as_nanos(), 1_772_614_839_200_000_000);
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = event_id(EventKind::Ringing, "c-1", 0);
        assert_eq!(a, event_id(EventKind::Ringing, "c-1", 0));
        assert_ne!(a, event_id(EventKind::Ringing, "c-1", 1));
        assert_ne!(a, event_id(EventKind::Answered, "c-1", 0));
        assert_ne!(a, event_id(EventKind::Ringing, "c-2", 0));
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        // The configuration checks `[[webhooks]] events` against its own list.
        assert_eq!(
            EventKind::ALL.map(EventKind::as_str),
            crate::config::EVENT_TYPES
        );
    }
}
