//! Live capture under load: `calltap run` on `lo` while `calltap-loadgen load` holds N
//! concurrent G.711 calls (two 50 packet/s RTP streams each, recording on), for each N
//! in CALLTAP_BENCH_CALLS (default "1000,2000"), every call talking
//! CALLTAP_BENCH_SECONDS (default 70: 10 s of ramp, then about 60 s with all calls up).
//!
//! Per level it prints what the issue asks of a capture box: packets/s held, the kernel's
//! drops (PACKET_STATISTICS, from /metrics), calls placed vs stored with the right
//! whoHungUp, calltap's CPU (utime + stime from /proc) per 1,000 calls, and its peak RSS.
//! On `lo` every packet crosses the ring twice (the outgoing copy is skipped in user
//! space), so the ring carries twice the packets/s printed. Needs CAP_NET_RAW; run
//! `cargo bench --bench live` (release binaries).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // SAFETY: plain socket(2), closed at once; only asks whether capture is allowed.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        eprintln!("notice: the live bench needs CAP_NET_RAW; skipped");
        return;
    }
    // SAFETY: our own fd.
    unsafe { libc::close(fd) };
    let levels = std::env::var("CALLTAP_BENCH_CALLS").unwrap_or_else(|_| "1000,2000".into());
    let seconds: u64 = std::env::var("CALLTAP_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(70);
    println!(
        "{:>6} {:>9} {:>8} {:>10} {:>8} {:>14} {:>9} {:>9}",
        "calls", "pps held", "drops", "ring pkts", "stored", "right hang-up", "CPU/1k", "RSS MB"
    );
    for calls in levels
        .split(',')
        .filter_map(|n| n.trim().parse::<u64>().ok())
    {
        level(calls, seconds);
    }
}

fn level(calls: u64, seconds: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = dir.path().join("calltap.toml");
    std::fs::write(
        &config,
        format!("[capture]\ninterfaces = [\"lo\"]\n[api]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .expect("config");
    let mut run = Command::new(env!("CARGO_BIN_EXE_calltap"))
        .args(["run", "--config"])
        .arg(&config)
        .arg("--data")
        .arg(dir.path().join("data"))
        .env("CALLTAP_SECRET_KEY", "bench")
        .env("CALLTAP_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("calltap run");
    let mut lines = BufReader::new(run.stdout.take().expect("stdout")).lines();
    let ready = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(ready.starts_with("calltap: capturing"), "{ready}");
    std::thread::spawn(move || lines.for_each(drop));
    let pid = run.id();
    let cpu_before = cpu_ticks(pid);

    let load = Command::new(env!("CARGO_BIN_EXE_calltap-loadgen"))
        .args(["load", "--calls", &calls.to_string()])
        .args(["--duration", &seconds.to_string(), "--ramp", "10"])
        .stderr(Stdio::null())
        .output()
        .expect("calltap-loadgen");
    let load: Value = serde_json::from_slice(&load.stdout).expect("loadgen's JSON");

    let cpu = cpu_ticks(pid) - cpu_before;
    let rss_kb = status_field(pid, "VmHWM:");
    let metrics = get(port, "/metrics");
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let drops = metric("calltap_capture_total_kernel_drops");
    let ring_packets = metric("calltap_capture_total_kernel_packets");
    // SAFETY: kill(2) on our child; SIGTERM ends it after it stores every call.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = run.wait().expect("calltap run exits");
    assert!(status.success(), "{status}");

    let stored = stored(&dir.path().join("data"));
    let answered = load["calls"]["answered"].as_u64().unwrap_or(0);
    let right_hangup = stored
        .iter()
        .filter(|c| matches!(c["whoHungUp"].as_str(), Some("client" | "operator")))
        .count();
    let ticks = ticks_per_second();
    println!(
        "{:>6} {:>9.0} {:>8} {:>10.0} {:>8} {:>14} {:>8.1}s {:>9.0}",
        answered,
        load["rtp"]["steady_pps"].as_f64().unwrap_or(f64::NAN),
        drops,
        ring_packets,
        stored.len(),
        right_hangup,
        cpu as f64 / ticks / calls as f64 * 1000.0,
        rss_kb as f64 / 1024.0,
    );
    println!(
        "        load held {} s at full strength; loadgen late mean {} us, skipped {}; calltap CPU {:.1} s over the run",
        load["rtp"]["steady_seconds"],
        load["rtp"]["late_mean_us"],
        load["rtp"]["skipped_late"],
        cpu as f64 / ticks
    );
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the 12th, stime
    // the 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    fields.get(11).unwrap_or(&0) + fields.get(12).unwrap_or(&0)
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

fn status_field(pid: u32, name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn get(port: u16, path: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = stream.read_to_string(&mut out);
    out
}

fn stored(data: &Path) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_calltap"))
        .args(["calls", "--all", "--json", "--data"])
        .arg(data)
        .output()
        .expect("calltap calls");
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    listed["calls"].as_array().cloned().unwrap_or_default()
}
