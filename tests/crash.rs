//! SIGKILL in the middle of a replay, then start again: the calls that were in progress
//! come back as calls (whoHungUp "system") with valid recordings of the audio that
//! reached disk; nothing else is lost.
//!
//! The capture is fed through a named pipe, so the process is killed at a known point
//! (half the capture read, every call in progress) rather than after a guessed delay.

#[path = "support/skip.rs"]
mod skip;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use calltap::pcapgen::{ByteOrder, Link, LoadSpec, PcapFile, TsResolution};

const CALLS: usize = 6;

/// A capture of `CALLS` concurrent answered calls, cut where every call is in progress.
fn first_half() -> Vec<u8> {
    let spec = LoadSpec::concurrent(CALLS, 40);
    let mut pcap = PcapFile::new(
        Vec::new(),
        Link::Ethernet,
        ByteOrder::Little,
        TsResolution::Micro,
    )
    .expect("writer");
    let mut first = None;
    spec.generate(|p| {
        let start = *first.get_or_insert(p.time);
        if p.time.since(start) < Duration::from_secs(20) {
            pcap.write_packet(&p)?;
        }
        Ok(())
    })
    .expect("capture");
    pcap.finish().expect("flushed")
}

fn parts_in(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".wav.part"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn sigkill_mid_replay_then_restart_finalises_the_calls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("store");
    let fifo = dir.path().join("capture.pcap");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        skip::skip("mkfifo unavailable; crash test skipped");
        return;
    }
    let mut replay = Command::new(env!("CARGO_BIN_EXE_calltap"))
        .args(["replay", "-q", "--data"])
        .arg(&data)
        .arg(&fifo)
        .env_remove("CALLTAP_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("calltap runs");
    // Opening the pipe's write end waits for calltap to open its read end.
    let mut pipe = std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .expect("pipe");
    pipe.write_all(&first_half()).expect("fed");
    pipe.flush().expect("flushed");
    // calltap now waits for more bytes, every call answered and recording.
    let recordings = data.join("recordings");
    let deadline = Instant::now() + Duration::from_secs(60);
    while parts_in(&recordings) < CALLS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(parts_in(&recordings), CALLS, "every call recording");
    std::thread::sleep(Duration::from_millis(500));
    replay.kill().expect("SIGKILL");
    replay.wait().expect("reaped");
    drop(pipe);

    // The next start (any command that opens the store) finalises them.
    let out = Command::new(env!("CARGO_BIN_EXE_calltap"))
        .args(["calls", "--all", "--json", "--data"])
        .arg(&data)
        .env_remove("CALLTAP_CONFIG")
        .output()
        .expect("calltap runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let calls = json["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), CALLS);
    for call in calls {
        assert_eq!(call["whoHungUp"], "system");
        assert_eq!(call["calltap"]["end_reason"], "shutdown");
        let rec = &call["calltap"]["media"]["recording"];
        let file = recordings.join(rec["file"].as_str().expect("a recording"));
        let wav = hound::WavReader::open(&file).expect("a valid WAV");
        assert_eq!(wav.spec().channels, 2);
        let secs = f64::from(wav.duration()) / f64::from(wav.spec().sample_rate);
        assert!(secs > 1.0 && secs <= 20.0, "{secs} s of audio");
        assert_eq!(
            call["duration"].as_f64().map(|d| (d - secs).abs() <= 1.0),
            Some(true)
        );
    }
    assert_eq!(parts_in(&recordings), 0, "no partial file left");
}
