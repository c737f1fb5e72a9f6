//! `calltap run` as the service runs it: live capture on `lo` while generated calls are
//! put on the wire through a packet socket at their own pace, then the signals an
//! administrator and systemd send (TERM, KILL, HUP) and what each must leave behind.
//!
//! Needs CAP_NET_RAW (root in CI); without it every test is listed as skipped.
//! The tests share `lo`, so they run one at a time.

#[path = "support/skip.rs"]
mod skip;

use std::ffi::CString;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use calltap::capture::Timestamp;
use calltap::pcapgen::load::LoadSpec;
use serde_json::Value;

static LO: Mutex<()> = Mutex::new(());
const KEY: &str = "run-test-key";

/// Frames sent onto `lo` through an AF_PACKET socket, as tcpreplay does: the kernel
/// loops them back, so a capture on `lo` sees them as received.
struct Injector {
    fd: i32,
    ifindex: i32,
}

impl Injector {
    fn open() -> Option<Injector> {
        // SAFETY: plain socket(2); the fd is owned by the Injector and closed on drop.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                (libc::ETH_P_ALL as u16).to_be() as i32,
            )
        };
        if fd < 0 {
            return None;
        }
        let name = CString::new("lo").ok()?;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
        Some(Injector { fd, ifindex })
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = self.ifindex;
        addr.sll_halen = 6;
        // SAFETY: `frame` and `addr` outlive the call; lengths are theirs.
        let sent = unsafe {
            libc::sendto(
                self.fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(sent, frame.len() as isize, "a frame onto lo");
    }
}

impl Drop for Injector {
    fn drop(&mut self) {
        // SAFETY: our own fd, closed once.
        unsafe { libc::close(self.fd) };
    }
}

fn capture_allowed() -> Option<Injector> {
    let injector = Injector::open();
    if injector.is_none() {
        skip::skip("live capture needs CAP_NET_RAW; calltap run tests skipped");
    }
    injector
}

fn now() -> Timestamp {
    Timestamp::from_duration(SystemTime::now().duration_since(UNIX_EPOCH).unwrap())
}

/// The frames of `calls` concurrent generated calls of about `seconds`, first call now.
fn load(calls: usize, seconds: u32) -> Vec<(Timestamp, Vec<u8>)> {
    let mut spec = LoadSpec::concurrent(calls, seconds);
    spec.start = now().saturating_add(Duration::from_millis(200));
    let mut frames = Vec::new();
    spec.generate(|p| {
        // The generator yields IP packets; lo carries Ethernet frames.
        let ethertype: u16 = if p.data.first().is_some_and(|b| b >> 4 == 6) {
            0x86dd
        } else {
            0x0800
        };
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.extend_from_slice(&p.data);
        frames.push((p.time, frame));
        Ok(())
    })
    .unwrap();
    frames
}

/// Sends frames at their own pace, up to (not including) the first due after `until`.
fn play(injector: &Injector, frames: &[(Timestamp, Vec<u8>)], until: Option<Duration>) {
    let Some(first) = frames.first().map(|f| f.0) else {
        return;
    };
    let started = Instant::now();
    for (time, data) in frames {
        let due = time.since(first);
        if until.is_some_and(|u| due > u) {
            break;
        }
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            thread::sleep(wait);
        }
        injector.send(data);
    }
}

/// The same frames replayed from a pcap into a fresh store: what live capture must equal.
fn replayed(frames: &[(Timestamp, Vec<u8>)], dir: &Path) -> Vec<Value> {
    let pcap = dir.join("same.pcap");
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (time, data) in frames {
        let ns = time.as_nanos();
        out.extend_from_slice(&((ns / 1_000_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((ns % 1_000_000_000 / 1000) as u32).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }
    std::fs::write(&pcap, out).unwrap();
    let data = dir.join("replayed");
    let status = Command::new(env!("CARGO_BIN_EXE_calltap"))
        .args(["replay", "-q", "--data"])
        .arg(&data)
        .arg(&pcap)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    stored(&data)
}

/// Every stored call, as `calltap calls --all --json` prints them.
fn stored(data: &Path) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_calltap"))
        .args(["calls", "--all", "--json", "--data"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut calls = listed["calls"].as_array().cloned().unwrap_or_default();
    calls.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    calls
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Run {
    child: Child,
    base: String,
}

impl Run {
    /// Starts `calltap run` on lo and waits until it says it captures.
    fn start(dir: &Path, config: &Path, env: &[(&str, String)]) -> Run {
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_calltap"))
            .args(["run", "--config"])
            .arg(config)
            .arg("--data")
            .arg(dir.join("data"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("CALLTAP_SECRET_KEY", KEY)
            .env("CALLTAP_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines
            .next()
            .and_then(Result::ok)
            .unwrap_or_else(|| panic!("calltap run ended: {:?}", child.wait()));
        assert!(ready.starts_with("calltap: capturing on lo"), "{ready}");
        thread::spawn(move || lines.for_each(drop));
        Run {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    fn stop(mut self, sig: i32) -> (ExitStatus, Duration) {
        let started = Instant::now();
        self.signal(sig);
        let status = self.child.wait().unwrap();
        (status, started.elapsed())
    }

    /// GET with the key; the body.
    fn get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let addr = self.base.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nX-Secret-Key: {KEY}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        body.to_string()
    }

    /// A number from /metrics.
    fn metric(&self, name: &str) -> Option<f64> {
        self.get("/metrics").lines().find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.parse().ok())?
        })
    }
}

fn config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("calltap.toml");
    std::fs::write(&path, format!("[capture]\ninterfaces = [\"lo\"]\n{extra}")).unwrap();
    path
}

/// WAV facts: (channels, sample rate, seconds).
fn wav(path: &Path) -> (u16, u32, f64) {
    let reader = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = reader.spec();
    (
        spec.channels,
        spec.sample_rate,
        f64::from(reader.duration()) / f64::from(spec.sample_rate),
    )
}

/// Live capture gives the records a replay of the same frames gives: same ids, outcomes,
/// who hung up, durations, and recordings of the same length. systemd hears READY=1,
/// WATCHDOG=1 while it runs and STOPPING=1 on SIGTERM, which ends it with status 0.
#[test]
fn live_capture_records_what_a_replay_of_the_same_frames_records() {
    let _lo = LO.lock().unwrap_or_else(|e| e.into_inner());
    let Some(injector) = capture_allowed() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    // Read as systemd does, all along: what calltap said, in order.
    let heard = thread::spawn(move || {
        let mut said = String::new();
        let mut buf = [0u8; 512];
        while let Ok(n) = notify.recv(&mut buf) {
            said.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        said
    });
    let cfg = config(dir.path(), "");
    let run = Run::start(
        dir.path(),
        &cfg,
        &[
            ("NOTIFY_SOCKET", notify_path.display().to_string()),
            ("WATCHDOG_USEC", "1000000".into()),
        ],
    );
    let frames = load(4, 5);
    play(&injector, &frames, None);
    assert_eq!(run.metric("calltap_capture_interfaces_lo_open"), Some(1.0));
    assert_eq!(run.metric("calltap_capture_total_kernel_drops"), Some(0.0));
    let (status, took) = run.stop(libc::SIGTERM);
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(5), "stopped in {took:?}");

    let said = heard.join().unwrap();
    for line in ["READY=1", "WATCHDOG=1", "STOPPING=1"] {
        assert!(said.lines().any(|l| l == line), "{line} in {said:?}");
    }

    let live = stored(&dir.path().join("data"));
    let expected = replayed(&frames, dir.path());
    assert_eq!(live.len(), 4);
    let ids = |calls: &[Value]| calls.iter().map(|c| c["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&live), ids(&expected));
    for (l, r) in live.iter().zip(&expected) {
        for field in ["direction", "whoHungUp", "operatorId", "clientNumber"] {
            assert_eq!(l[field], r[field], "{field} of {}", l["id"]);
        }
        assert_eq!(l["calltap"]["outcome"], r["calltap"]["outcome"]);
        let (ld, rd) = (
            l["duration"].as_u64().unwrap(),
            r["duration"].as_u64().unwrap(),
        );
        assert!(ld.abs_diff(rd) <= 1, "{ld} vs {rd}");
        let file = |c: &Value, data: &str| {
            dir.path()
                .join(data)
                .join("recordings")
                .join(format!("{}.wav", c["id"].as_str().unwrap()))
        };
        let (lc, lr, ls) = wav(&file(l, "data"));
        let (_, _, rs) = wav(&file(r, "replayed"));
        assert_eq!((lc, lr), (2, 8000));
        assert!((ls - rs).abs() < 0.5, "{ls} s live, {rs} s replayed");
        assert!(ls > 1.0, "{ls}");
    }
}

/// SIGKILL in mid-call, then a restart: the calls in progress are finalised with
/// whoHungUp "system" and a valid WAV of the audio that reached the disk.
#[test]
fn sigkill_mid_call_then_restart_finalises_the_calls_in_progress() {
    let _lo = LO.lock().unwrap_or_else(|e| e.into_inner());
    let Some(injector) = capture_allowed() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let run = Run::start(dir.path(), &cfg, &[]);
    let frames = load(3, 10);
    play(&injector, &frames, Some(Duration::from_secs(4)));
    // The last RTP must be in the engine (polled every 100 ms) and the WAV flushed.
    thread::sleep(Duration::from_millis(600));
    let (status, _) = run.stop(libc::SIGKILL);
    assert!(!status.success());

    let run = Run::start(dir.path(), &cfg, &[]);
    let (status, _) = run.stop(libc::SIGTERM);
    assert!(status.success());
    let calls = stored(&dir.path().join("data"));
    assert_eq!(calls.len(), 3, "{calls:#?}");
    for call in &calls {
        assert_eq!(call["whoHungUp"], "system", "{call}");
        assert_eq!(call["calltap"]["end_reason"], "shutdown", "{call}");
        let id = call["id"].as_str().unwrap();
        let path = dir.path().join("data/recordings").join(format!("{id}.wav"));
        let (channels, _, secs) = wav(&path);
        assert_eq!(channels, 2);
        assert!(secs > 0.5 && secs < 4.0, "{id}: {secs} s");
    }
}

/// SIGHUP puts a changed operator list in force without a restart.
#[test]
fn sighup_reloads_operators() {
    let _lo = LO.lock().unwrap_or_else(|e| e.into_inner());
    let Some(injector) = capture_allowed() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let operator = |name: &str| {
        format!("[[operators]]\nid = \"op-2000\"\nname = \"{name}\"\nextension = \"2000\"\n")
    };
    let cfg = config(dir.path(), &operator("Before Reload"));
    let run = Run::start(dir.path(), &cfg, &[]);
    config(dir.path(), &operator("After Reload"));
    run.signal(libc::SIGHUP);
    thread::sleep(Duration::from_millis(500));
    play(&injector, &load(1, 2), None);
    let (status, _) = run.stop(libc::SIGTERM);
    assert!(status.success());
    let calls = stored(&dir.path().join("data"));
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["operatorName"], "After Reload", "{}", calls[0]);
}

/// Two instances on one store: the second stops at once with a clear error.
#[test]
fn a_second_instance_on_the_same_store_is_refused() {
    let _lo = LO.lock().unwrap_or_else(|e| e.into_inner());
    if capture_allowed().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let first = Run::start(dir.path(), &cfg, &[]);
    let second = Command::new(env!("CARGO_BIN_EXE_calltap"))
        .args(["run", "--config"])
        .arg(&cfg)
        .arg("--data")
        .arg(dir.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("locked"), "{err}");
    assert!(first.stop(libc::SIGTERM).0.success());
}

/// Without CAP_NET_RAW the error names the capability and how to grant it.
#[test]
fn without_cap_net_raw_the_error_says_which_capability() {
    let _lo = LO.lock().unwrap_or_else(|e| e.into_inner());
    if capture_allowed().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_calltap"))
        .args(["run", "--interface", "lo", "--data"])
        .arg(dir.path().join("data"))
        .output();
    let Ok(out) = out else {
        skip::skip("setpriv is missing; the unprivileged run check skipped");
        return;
    };
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("CAP_NET_RAW"), "{err}");
    assert!(
        !dir.path().join("data").exists(),
        "nothing written before the error"
    );
}

/// With no interface configured, run says what to set instead of capturing nothing.
#[test]
fn no_interface_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("empty.toml");
    std::fs::write(&cfg, "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_calltap"))
        .args(["run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[capture] interfaces") && err.contains("--interface"),
        "{err}"
    );
}

/// SIGKILL after the hang-ups, while the records wait out the 32 s linger: the restart
/// keeps who hung up (the caller of calls 0 and 2, the callee of call 1) and the BYE.
#[test]
fn sigkill_after_the_hang_up_keeps_who_hung_up() {
    let _lo = LO.lock().unwrap_or_else(|e| e.into_inner());
    let Some(injector) = capture_allowed() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let run = Run::start(dir.path(), &cfg, &[]);
    play(&injector, &load(3, 4), None);
    // The BYEs reach the engine within a ring block timeout and a poll (100 ms each);
    // the hang-ups are synced to disk after that poll, well before sled's own 500 ms
    // write-out.
    thread::sleep(Duration::from_millis(400));
    assert!(!run.stop(libc::SIGKILL).0.success());

    let run = Run::start(dir.path(), &cfg, &[]);
    assert!(run.stop(libc::SIGTERM).0.success());
    let calls = stored(&dir.path().join("data"));
    assert_eq!(calls.len(), 3, "{calls:#?}");
    let mut by_party: Vec<(String, String)> = calls
        .iter()
        .map(|c| {
            (
                c["operatorId"].as_str().unwrap_or_default().to_string(),
                c["whoHungUp"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    by_party.sort();
    // Phones 2000-2002 call out; even calls are hung up by the caller (the operator).
    assert_eq!(
        by_party,
        [
            ("2000".to_string(), "operator".to_string()),
            ("2001".to_string(), "client".to_string()),
            ("2002".to_string(), "operator".to_string()),
        ]
    );
    for call in &calls {
        assert_eq!(call["calltap"]["end_reason"], "bye", "{call}");
        let id = call["id"].as_str().unwrap();
        let (channels, _, secs) = wav(&dir.path().join(format!("data/recordings/{id}.wav")));
        assert_eq!(channels, 2);
        let duration = call["duration"].as_f64().unwrap();
        assert!(
            (secs - duration).abs() <= 1.0,
            "{id}: {secs} s of audio, {duration} s call"
        );
    }
}
