//! Frames -> `Engine` (packet layer, SIP, dialogs, classification, call events), events drained as
//! they come. Input that starts like a capture file is read as one (the seeds are real
//! calls); anything else is a frame sequence (`crate::frame_records`), whose UDP
//! records carry SIP text between two SIP ports, with time steps past every timeout.

use super::super::for_each_frame;
use calltap::capture::file::CaptureReader;
use calltap::config::Config;
use calltap::engine::{Engine, EngineEvent};
use std::hint::black_box;

fn drain(engine: &mut Engine) {
    while let Some(event) = engine.poll() {
        match event {
            EngineEvent::Answered(progress) | EngineEvent::HungUp(progress) => {
                black_box(&progress);
            }
            EngineEvent::Call(record) => {
                black_box(&record);
            }
            EngineEvent::Operator(op, seen) => {
                black_box((&op, seen));
            }
            EngineEvent::CallEvent(event) => {
                black_box(serde_json::to_vec(&event).ok());
            }
            EngineEvent::SipMessages { id, trace } => {
                black_box((&id, &trace));
            }
        }
    }
}

fn is_capture(data: &[u8]) -> bool {
    matches!(
        data.get(..4),
        Some([0xd4, 0xc3, 0xb2, 0xa1] | [0xa1, 0xb2, 0xc3, 0xd4] | [0x4d, 0x3c, 0xb2, 0xa1])
            | Some([0xa1, 0xb2, 0x3c, 0x4d] | [0x0a, 0x0d, 0x0d, 0x0a])
    )
}

/// One input through the target.
pub fn run(data: &[u8]) {
    let config = Config::default();
    let mut engine = Engine::new(&config);
    // The call events' live view of conversations runs too.
    engine.emit_call_events(&config);
    if is_capture(data) {
        if let Ok(mut reader) = CaptureReader::new("fuzz", data) {
            while let Some(next) = reader.next_frame() {
                if let Ok(frame) = next {
                    engine.frame(&frame);
                    drain(&mut engine);
                }
            }
        }
    } else {
        for_each_frame(data, |frame| {
            engine.frame(frame);
            drain(&mut engine);
        });
    }
    engine.finish();
    drain(&mut engine);
    black_box(engine.stats());
}
