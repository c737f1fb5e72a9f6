//! An event's `data`: the contract call object as of the event (CONTRACT.md's names and
//! types, properties computed as `POST /calls` computes them), with calltap's own facts
//! beside it. Fields that do not hold yet are left out (a ringing call has no duration,
//! nobody has hung up an answered one), never sent as placeholders.

use serde_json::{json, Map, Value};

use crate::call::record::{CallRecord, Outcome, RecordingFile};
use crate::config::Config;

use super::{Event, EventKind};

/// The call event `kind` of conversation `key` (its `callId`), the `nth` of its type
/// for the call, caused by a packet captured `at`, from `record` as it stands.
pub fn call_event(
    kind: EventKind,
    key: &str,
    nth: u32,
    at: crate::base::Timestamp,
    record: &CallRecord,
    config: &Config,
) -> Event {
    Event::new(kind, key, nth, at, data(kind, record, config))
}

/// The outcome's event: `call.missed` for a cancelled or unanswered attempt, `busy`,
/// `rejected` or `failed` by the final answer.
pub fn unanswered_kind(outcome: Outcome) -> EventKind {
    match outcome {
        Outcome::Cancelled | Outcome::Missed => EventKind::Missed,
        Outcome::Busy => EventKind::Busy,
        Outcome::Rejected => EventKind::Rejected,
        Outcome::Failed | Outcome::Answered => EventKind::Failed,
    }
}

fn data(kind: EventKind, record: &CallRecord, config: &Config) -> Value {
    let properties = crate::call::properties::compute(record, config);
    let mut data = match serde_json::to_value(record.contract_with(&properties)) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let over = matches!(
        kind,
        EventKind::Missed
            | EventKind::Busy
            | EventKind::Rejected
            | EventKind::Failed
            | EventKind::Ended
            | EventKind::RecordingReady
    );
    if !over {
        for field in ["duration", "endTime"] {
            data.remove(field);
        }
    }
    if !matches!(kind, EventKind::Ended | EventKind::RecordingReady) {
        data.remove("whoHungUp");
    }
    let mut put = |k: &str, v: Value| {
        data.insert(k.to_string(), v);
    };
    put("sipCallId", json!(record.sip.call_id));
    if over {
        put("outcome", json!(record.outcome.as_str()));
        put("endReason", json!(record.end_reason));
        put("finalStatus", json!(record.sip.final_status));
        if let Some(reason) = &record.sip.reason {
            put("reason", json!(reason));
        }
    }
    if !matches!(kind, EventKind::Ringing) {
        put("ringSeconds", json!(record.ring_seconds));
    }
    if let Some(t) = &record.transfer {
        put("transfer", json!(t));
    }
    if matches!(kind, EventKind::Ended | EventKind::RecordingReady) {
        let m = &record.media;
        put(
            "quality",
            json!({"mos": m.mos, "lossPercent": m.loss_percent, "jitterMs": m.jitter_ms}),
        );
        put("codecs", json!(m.codecs));
        put("holds", json!(record.holds));
        if !m.dtmf_digits.is_empty() {
            put("dtmfDigits", json!(m.dtmf_digits));
        }
    }
    if matches!(kind, EventKind::RecordingReady) {
        if let Some(rec) = &record.media.recording {
            put("recording", recording_data(&record.id, rec));
        }
    }
    if let Some(id) = &record.conversation.id {
        put("conversationId", json!(id));
    }
    Value::Object(data)
}

/// `data.recording` of a `recording.ready` event for call `id`'s recording `rec`. The
/// link is added when the event is sent (it is signed and expires; the event may wait).
pub fn recording_data(id: &str, rec: &RecordingFile) -> Value {
    json!({
        "filename": rec.download_name(id),
        "mimeType": rec.mime_type(),
        "bytes": rec.bytes,
        "durationMs": rec.duration_ms,
    })
}
