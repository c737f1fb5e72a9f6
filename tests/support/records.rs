//! Call records for the store, retention and API tests: one answered, exported incoming
//! call shape, varied by each test with struct update syntax.
#![allow(dead_code)] // each test binary uses a part of it

use std::collections::BTreeMap;

use std::path::Path;
use std::sync::Arc;

use calltap::call::record::{MediaFacts, RecordingFile, SipFacts};
use calltap::call::{CallRecord, Direction, EndReason, OperatorRef, Outcome, WhoHungUp};
use calltap::store::Store;

/// Alice Smith, extension 101, as configured.
pub fn alice() -> OperatorRef {
    OperatorRef {
        id: "op-101".into(),
        name: "Alice Smith".into(),
        number: "101".into(),
        department: None,
        configured: true,
    }
}

/// An answered, exported incoming call to Alice starting at `start` (Unix seconds),
/// rung 5 s, talked 60 s, the client hanging up.
pub fn answered_call(id: &str, start: u64) -> CallRecord {
    CallRecord {
        id: id.into(),
        outcome: Outcome::Answered,
        direction: Direction::Incoming,
        exported: true,
        invite_ns: (start - 5) * 1_000_000_000,
        answer_ns: Some(start * 1_000_000_000),
        end_ns: (start + 60) * 1_000_000_000,
        start_time: start,
        end_time: start + 60,
        duration: 60,
        ring_seconds: 5.0,
        operator: alice(),
        client_number: Some("+15557654321".into()),
        client_name: None,
        who_hung_up: WhoHungUp::Client,
        hung_up_by: None,
        end_reason: EndReason::Bye,
        transfer: None,
        holds: 0,
        sip: SipFacts {
            call_id: format!("{id}@pbx"),
            from_tag: "ft".into(),
            to_tag: "tt".into(),
            transport: "udp".into(),
            ..SipFacts::default()
        },
        media: MediaFacts::default(),
        properties: BTreeMap::new(),
        conversation: Default::default(),
        recovered: false,
    }
}

/// A store at `dir` holding one answered call, `c-1` starting at `start`, whose
/// recording `c-1.wav` is `bytes` bytes of a fixed pattern said to last `duration_ms`:
/// what the API tests download, range and sign links for.
pub fn store_with_recording(dir: &Path, start: u64, bytes: u32, duration_ms: u64) -> Arc<Store> {
    let store = Arc::new(Store::open(dir).expect("store"));
    let wav: Vec<u8> = (0..bytes).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(store.recordings_dir().join("c-1.wav"), &wav).expect("recording");
    let mut call = answered_call("c-1", start);
    call.media.recording = Some(RecordingFile {
        file: "c-1.wav".into(),
        bytes: wav.len() as u64,
        sample_rate: 8000,
        duration_ms,
    });
    store.put_calls(&[call]).expect("stored");
    store
}
