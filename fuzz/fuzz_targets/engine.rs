//! Frames -> `Engine` (packet layer, SIP, dialogs, classification, call events), events drained as
//! they come. Input that starts like a capture file is read as one (the seeds are real
//! calls); anything else is a frame sequence (`calltap_fuzz::frame_records`), whose UDP
//! records carry SIP text between two SIP ports, with time steps past every timeout.
#![no_main]

use calltap::capture::file::CaptureReader;
use calltap::config::Config;
use calltap::engine::{Engine, EngineEvent};
use calltap_fuzz::for_each_frame;
use libfuzzer_sys::fuzz_target;
use std::hint::black_box;

fn drain(engine: &mut Engine) {
    while let Some(event) = engine.poll() {
        match event {
            EngineEvent::Answered(record)
            | EngineEvent::HungUp(record)
            | EngineEvent::Call(record) => {
                black_box(&record);
            }
            EngineEvent::Operator(op, seen) => {
                black_box((&op, seen));
            }
            EngineEvent::CallEvent(event) => {
                black_box(serde_json::to_vec(&event).ok());
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

fuzz_target!(|data: &[u8]| {
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
});
