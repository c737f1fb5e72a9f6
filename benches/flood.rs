//! An INVITE flood nobody answers, replayed: for each size in CALLTAP_BENCH_INVITES
//! (default "100000,300000,1000000"; 1,000 INVITEs a second of capture time from 50
//! sources, each with an SDP offer) it runs `calltap replay` (release) into a new store
//! and prints the wall time, CPU time per INVITE, peak RSS, store size and records
//! stored. Flat memory and store, and CPU per INVITE that does not grow with the flood,
//! are the aim. Run `cargo bench --bench flood`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use calltap::pcapgen::flood::FloodSpec;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sizes =
        std::env::var("CALLTAP_BENCH_INVITES").unwrap_or_else(|_| "100000,300000,1000000".into());
    println!(
        "{:>9} {:>8} {:>13} {:>8} {:>9} {:>8}",
        "INVITEs", "wall s", "CPU us/INVITE", "RSS MB", "store MB", "records"
    );
    for invites in sizes
        .split(',')
        .filter_map(|n| n.trim().parse::<usize>().ok())
    {
        size(invites);
    }
}

fn size(invites: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let capture = dir.path().join("flood.pcap");
    FloodSpec {
        with_sdp: true,
        ..FloodSpec::new(invites, 50)
    }
    .write_pcap(&capture)
    .expect("flood written");
    let data = dir.path().join("store");
    let started = Instant::now();
    // Reaped by wait4 below, which also gives its peak RSS.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(env!("CARGO_BIN_EXE_calltap"))
        .args(["replay", "-q", "--data"])
        .arg(&data)
        .arg(&capture)
        .env_remove("CALLTAP_CONFIG")
        .env("CALLTAP_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .expect("calltap replay");
    let (status, usage) = wait(child.id());
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(status, 0, "calltap replay failed");
    let cpu = usage.ru_utime.tv_sec as f64
        + usage.ru_stime.tv_sec as f64
        + (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) as f64 / 1e6;
    let records = Command::new(env!("CARGO_BIN_EXE_calltap"))
        .args(["calls", "--all", "--json", "--data"])
        .arg(&data)
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|v| v["calls"].as_array().map(Vec::len))
        .unwrap_or(0);
    println!(
        "{:>9} {:>8.2} {:>13.2} {:>8.1} {:>9.1} {:>8}",
        invites,
        wall,
        cpu * 1e6 / invites as f64,
        usage.ru_maxrss as f64 / 1024.0,
        dir_bytes(&data) as f64 / 1e6,
        records
    );
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

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
