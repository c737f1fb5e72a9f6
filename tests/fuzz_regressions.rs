//! The fuzz targets' own bodies (`fuzz/src/targets`), run by `cargo test` on stable:
//! every input kept in `fuzz/regressions/<target>/` (cases that once broke something,
//! or that need care), the project's own captures through the capture and engine
//! targets, and a deterministic sweep of pseudo-random inputs through every target. A
//! panic anywhere fails the test with the input's name.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod calltap_fuzz;

use std::path::{Path, PathBuf};

use calltap_fuzz::targets;

type Target = (&'static str, fn(&[u8]));

const TARGETS: [Target; 10] = [
    ("capture_file", targets::capture_file::run),
    ("engine", targets::engine::run),
    ("frame_decoder", targets::frame_decoder::run),
    ("g726", targets::g726::run),
    ("live_block", targets::live_block::run),
    ("rtp", targets::rtp::run),
    ("sdp", targets::sdp::run),
    ("sip_message", targets::sip_message::run),
    ("speech_codecs", targets::speech_codecs::run),
    ("tcp_streams", targets::tcp_streams::run),
];

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file());
    files.sort();
    files
}

fn run_named(target: &str, run: fn(&[u8]), name: &str, data: &[u8]) {
    let outcome = std::panic::catch_unwind(|| run(data));
    assert!(outcome.is_ok(), "{target} panicked on {name}");
}

#[test]
fn every_regression_input_passes_through_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut ran = 0;
    for (target, run) in TARGETS {
        for file in files_in(&root.join(target)) {
            let data = std::fs::read(&file).expect("read");
            run_named(target, run, &file.display().to_string(), &data);
            ran += 1;
        }
    }
    assert!(ran >= 10, "{ran} regression inputs");
}

#[test]
fn the_projects_captures_pass_through_the_capture_and_engine_targets() {
    let pcaps = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps");
    let files: Vec<PathBuf> = files_in(&pcaps)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x != "md"))
        .collect();
    assert!(files.len() > 20);
    for file in files {
        let data = std::fs::read(&file).expect("read");
        let name = file.display().to_string();
        run_named("capture_file", targets::capture_file::run, &name, &data);
        // The engine target takes a capture whole; the big demo day is covered elsewhere.
        if data.len() < 512 * 1024 {
            run_named("engine", targets::engine::run, &name, &data);
        }
    }
}

#[test]
fn pseudo_random_inputs_pass_through_every_target() {
    // xorshift64*: the same inputs every run.
    let mut state: u64 = 0x853C_49E6_748F_EA9B;
    let mut next = || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    for (target, run) in TARGETS {
        for case in 0..300 {
            let len = (next() % 600) as usize;
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            run_named(target, run, &format!("random case {case}"), &data);
        }
    }
}
