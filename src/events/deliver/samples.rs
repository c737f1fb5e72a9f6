//! Sample events, for checking templates before any call is seen and for `calltap
//! webhooks test`: the built-in demo capture replayed with the configuration in force
//! (so `data.properties` has the configured keys), one event of each type it gives.
//! The types an office morning does not show take the shape of their nearest kin:
//! `call.voicemail` and `call.transferred` that of `call.answered`, `call.rejected`
//! and `call.failed` that of `call.busy`, `recording.ready` that of `call.ended` with
//! the recording's fields.

use serde_json::json;

use crate::config::Config;
use crate::engine::{Engine, EngineEvent};
use crate::events::{Event, EventKind};
use crate::replay::{replay_bytes, DEMO_CAPTURE};

/// One sample event per type, in [`EventKind::ALL`] order.
pub fn sample_events(config: &Config) -> Vec<Event> {
    let mut engine = Engine::new(config);
    engine.emit_call_events(config);
    let _ = replay_bytes("office-day.pcap", DEMO_CAPTURE, &mut engine);
    engine.shutdown();
    let mut seen: Vec<Event> = Vec::new();
    while let Some(e) = engine.poll() {
        if let EngineEvent::CallEvent(e) = e {
            if !seen.iter().any(|s| s.kind == e.kind) {
                seen.push(*e);
            }
        }
    }
    let like = |kind: EventKind, model: EventKind| -> Option<Event> {
        let m = seen.iter().find(|e| e.kind == model)?;
        let mut e = Event::new(kind, &m.call_id, 0, m.occurred_at, m.data.clone());
        match kind {
            EventKind::Transferred => {
                e.data["transfer"] = json!({"kind": "blind", "target": "104", "completed": true});
            }
            EventKind::RecordingReady => {
                let id = m.call_id.clone();
                e.data["recording"] = json!({
                    "filename": format!("call_recording_{id}.wav"),
                    "mimeType": "audio/wav",
                    "bytes": 224_044,
                    "durationMs": 7000,
                    "url": format!("http://127.0.0.1:8080/recordings/{id}.wav?exp=0&sig=0"),
                });
            }
            _ => {}
        }
        Some(e)
    };
    EventKind::ALL
        .into_iter()
        .filter_map(|kind| {
            seen.iter()
                .find(|e| e.kind == kind)
                .cloned()
                .or_else(|| match kind {
                    EventKind::Voicemail | EventKind::Transferred => {
                        like(kind, EventKind::Answered)
                    }
                    EventKind::Rejected | EventKind::Failed => like(kind, EventKind::Busy),
                    EventKind::RecordingReady => like(kind, EventKind::Ended),
                    _ => None,
                })
        })
        .collect()
}
