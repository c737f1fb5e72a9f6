//! Replay with recording against the dry run and tshark, side by side in one run.
//!
//! The capture: CALLTAP_BENCH_CALLS answered G.711 calls (default 3,200), all up
//! together for about CALLTAP_BENCH_SECONDS of capture time (default 3: about 950,000
//! packets). Each run of CALLTAP_BENCH_ROUNDS rounds (default 3) replays it into a new
//! store with recording on, then the same without keeping SIP messages (`[store]
//! sip_messages = false`: what keeping them costs), then with `--dry-run`, then reads it with
//! `tshark -q -z rtp,streams` when tshark is installed (which writes no audio at all).
//! Printed per run: wall time, packets/s, CPU seconds (user + system), peak RSS and
//! RSS per concurrent call; then the medians and the ratios. With CALLTAP_BENCH_STRACE=1
//! and strace installed, one more replay with recording runs under `strace -c -f` and
//! its syscall table is printed. Run `cargo bench --bench replay`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use calltap::pcapgen::load::LoadSpec;

struct Run {
    wall: f64,
    cpu: f64,
    rss_kib: i64,
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let calls = env_or("CALLTAP_BENCH_CALLS", 3_200);
    let seconds = env_or("CALLTAP_BENCH_SECONDS", 3) as u32;
    let rounds = env_or("CALLTAP_BENCH_ROUNDS", 3);
    let dir = tempfile::tempdir().expect("temp dir");
    let capture = dir.path().join("load.pcap");
    let stats = LoadSpec::concurrent(calls, seconds)
        .write_pcap(&capture)
        .expect("capture written");
    let packets = stats.packets as f64;
    println!(
        "capture: {} calls at once, {} packets, {:.0} MB",
        stats.calls,
        stats.packets,
        stats.bytes as f64 / 1e6
    );
    let tshark = Command::new("tshark")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !tshark {
        println!("tshark is not installed: its column stays empty");
    }
    println!(
        "{:<10} {:>7} {:>10} {:>7} {:>8} {:>12}",
        "run", "wall s", "packets/s", "CPU s", "RSS MB", "KiB per call"
    );
    let no_messages = dir.path().join("no-sip-messages.toml");
    std::fs::write(&no_messages, "[store]\nsip_messages = false\n").expect("config written");
    let mut recording = Vec::new();
    let mut without_messages = Vec::new();
    let mut dry = Vec::new();
    let mut reference = Vec::new();
    for _ in 0..rounds {
        let data = dir.path().join("store");
        let _ = std::fs::remove_dir_all(&data);
        let run = calltap(&data, &capture, false, None);
        assert_eq!(answered(&data), calls, "every call stored");
        show("recording", &run, packets, calls);
        recording.push(run);
        let _ = std::fs::remove_dir_all(&data);
        let run = calltap(&data, &capture, false, Some(&no_messages));
        show("no SIP msg", &run, packets, calls);
        without_messages.push(run);
        let _ = std::fs::remove_dir_all(&data);
        let run = calltap(&data, &capture, true, None);
        show("dry-run", &run, packets, calls);
        dry.push(run);
        if tshark {
            let run = measure(
                Command::new("tshark")
                    .args(["-q", "-z", "rtp,streams", "-r"])
                    .arg(&capture),
            );
            show("tshark", &run, packets, calls);
            reference.push(run);
        }
    }
    let rec = median(&recording);
    let bare = median(&without_messages);
    let cpu = |runs: &[Run]| {
        let mut v: Vec<f64> = runs.iter().map(|r| r.cpu).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "keeping SIP messages: median {:.2} s and {:.2} CPU s against {:.2} s and {:.2} CPU s \
         without ({:.3}x wall, {:.3}x CPU), {:.1} MB more peak RSS",
        rec.wall,
        cpu(&recording),
        bare.wall,
        cpu(&without_messages),
        rec.wall / bare.wall,
        cpu(&recording) / cpu(&without_messages),
        (rec.rss_kib - bare.rss_kib) as f64 / 1024.0
    );
    let dry = median(&dry);
    println!(
        "median: recording {:.2} s ({:.0} packets/s, {:.2} CPU s), dry run {:.2} s; \
         recording costs {:.2}x the dry run",
        rec.wall,
        packets / rec.wall,
        rec.cpu,
        dry.wall,
        rec.wall / dry.wall
    );
    if !reference.is_empty() {
        let t = median(&reference);
        println!(
            "tshark {:.2} s: replay with recording is {:.2}x faster",
            t.wall,
            t.wall / rec.wall
        );
    }
    if std::env::var("CALLTAP_BENCH_STRACE").as_deref() == Ok("1") {
        let data = dir.path().join("store");
        let _ = std::fs::remove_dir_all(&data);
        let out = Command::new("strace")
            .args(["-c", "-f", "-o"])
            .arg(dir.path().join("strace.txt"))
            .arg(env!("CARGO_BIN_EXE_calltap"))
            .args(["replay", "-q", "--data"])
            .arg(&data)
            .arg(&capture)
            .env_remove("CALLTAP_CONFIG")
            .env("CALLTAP_LOG", "error")
            .stdout(Stdio::null())
            .status();
        match out {
            Ok(s) if s.success() => {
                let table =
                    std::fs::read_to_string(dir.path().join("strace.txt")).unwrap_or_default();
                println!("syscalls of one replay with recording:\n{table}");
            }
            _ => println!("strace is not installed or failed: no syscall table"),
        }
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn calltap(data: &Path, capture: &Path, dry_run: bool, config: Option<&Path>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_calltap"));
    cmd.args(["replay", "-q", "--data"]).arg(data).arg(capture);
    if dry_run {
        cmd.arg("--dry-run");
    }
    cmd.env_remove("CALLTAP_CONFIG").env("CALLTAP_LOG", "error");
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    measure(&mut cmd)
}

fn measure(cmd: &mut Command) -> Run {
    let started = Instant::now();
    // Reaped by wait4 below, which also gives its CPU time and peak RSS.
    #[allow(clippy::zombie_processes)]
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let (status, usage) = wait(child.id());
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(status, 0, "{cmd:?} failed");
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Run {
        wall,
        cpu: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        rss_kib: usage.ru_maxrss,
    }
}

fn show(name: &str, run: &Run, packets: f64, calls: usize) {
    println!(
        "{:<10} {:>7.2} {:>10.0} {:>7.2} {:>8.1} {:>12.1}",
        name,
        run.wall,
        packets / run.wall,
        run.cpu,
        run.rss_kib as f64 / 1024.0,
        run.rss_kib as f64 / calls as f64
    );
}

fn median(runs: &[Run]) -> &Run {
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by(|&a, &b| runs[a].wall.total_cmp(&runs[b].wall));
    &runs[order[order.len() / 2]]
}

/// Answered calls in the store at `data`.
fn answered(data: &Path) -> usize {
    Command::new(env!("CARGO_BIN_EXE_calltap"))
        .args(["calls", "--all", "--json", "--data"])
        .arg(data)
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|v| {
            v["calls"].as_array().map(|calls| {
                calls
                    .iter()
                    .filter(|c| !c["calltap"]["answer_ns"].is_null())
                    .count()
            })
        })
        .unwrap_or(0)
}

/// Waits for `pid` and returns its exit status and resource usage (peak RSS in KiB).
fn wait(pid: u32) -> (i32, libc::rusage) {
    let mut status = 0;
    // SAFETY: rusage is plain data; zeroed is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child, with valid out-pointers.
    unsafe { libc::wait4(pid as i32, &mut status, 0, &mut usage) };
    (libc::WEXITSTATUS(status), usage)
}
