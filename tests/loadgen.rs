//! calltap-loadgen's agents place real calls over loopback sockets. Without privileges:
//! every scenario ends as it says, and a lost answer cannot hang the caller. With
//! tcpdump allowed on `lo`: what the agents sent, replayed through calltap's engine,
//! gives the records the scenarios promise, and recordings with the caller's 440 Hz on
//! one channel and the callee's 1000 Hz on the other.

#[path = "support/skip.rs"]
mod skip;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use calltap::call::{CallRecord, Direction, Outcome, Party as RecordParty, WhoHungUp};
use calltap::config::Config;
use calltap::engine::Engine;
use calltap::ingest::Ingest;
use calltap::loadgen::uac::{Uac, UacConfig};
use calltap::loadgen::uas::{Uas, UasConfig};
use calltap::loadgen::{self, CallResult, Media, Plan, Scenario, Timeouts};
use calltap::pcapgen::scenario::{Dialog, Ua};
use calltap::replay::replay_files;
use calltap::store::Store;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an address literal")
}

fn scenarios(names: &[&str]) -> Vec<Scenario> {
    names
        .iter()
        .map(|n| n.parse().expect("a scenario name"))
        .collect()
}

/// The scenario set the capture tests use: 1.5 s of talk, short rings.
const SET: [&str; 7] = [
    "answer-1500ms",
    "callee-hangs-up-1500ms",
    "busy",
    "decline",
    "cancel-400ms",
    "no-answer-400ms",
    "ring-forever",
];

fn plan(caller: &str, callee: &str) -> Plan {
    let mut p = Plan::new(ip(caller), ip(callee), scenarios(&SET));
    p.ring = Duration::from_millis(300);
    p.timeouts.max_ring = Duration::from_millis(600);
    p
}

#[test]
fn every_scenario_ends_as_it_says() {
    let started = Instant::now();
    let report = loadgen::run(&plan("127.0.41.2", "127.0.41.3")).expect("run");
    let calls = &report.uac.calls;
    assert_eq!(calls.len(), SET.len());
    for c in calls {
        assert!(c.as_expected(), "{c:?}");
    }
    let by_name: HashMap<&str, _> = calls.iter().map(|c| (c.scenario.as_str(), c)).collect();
    assert_eq!(by_name["busy"].final_status, 486);
    assert_eq!(by_name["decline"].final_status, 603);
    assert_eq!(by_name["cancel-400ms"].final_status, 487);
    assert_eq!(by_name["ring-forever"].final_status, 487);
    assert_eq!(by_name["no-answer-400ms"].final_status, 480);
    for name in ["answer-1500ms", "callee-hangs-up-1500ms"] {
        let c = by_name[name];
        let talk = c.talk_ms.expect("talk time");
        assert!(talk.abs_diff(1500) < 150, "{name}: {talk} ms");
        let ring = c.ring_ms.expect("ring time");
        assert!(ring.abs_diff(300) < 100, "{name}: rang {ring} ms");
    }
    assert_eq!(
        by_name["callee-hangs-up-1500ms"].hung_up_by,
        Some(RecordParty::Callee)
    );
    // Two answered calls, two streams each, each socket heard its peer.
    let m = &report.media;
    assert_eq!(m.streams_started, 4);
    assert_eq!(m.streams_heard_peer, 4, "{m:?}");
    assert_eq!(m.send_errors, 0);
    // 1.5 s at 50 packets/s, four streams, give or take the edges.
    assert!(
        (280..=320).contains(&m.packets_sent),
        "{} packets",
        m.packets_sent
    );
    let uas = &report.uas.counters;
    assert_eq!((uas.invites, uas.answered, uas.byes_sent), (7, 2, 1));
    assert_eq!(uas.unknown_scenario + uas.malformed + uas.timeouts, 0);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn several_concurrent_calls_each_get_their_own_ports_and_ids() {
    let mut p = Plan::new(
        ip("127.0.42.2"),
        ip("127.0.42.3"),
        scenarios(&["answer-600ms", "callee-hangs-up-600ms", "busy"]),
    );
    p.count = 30;
    p.concurrency = 12;
    p.ring = Duration::from_millis(100);
    let report = loadgen::run(&p).expect("run");
    let calls = &report.uac.calls;
    assert_eq!(calls.len(), 30);
    assert!(calls.iter().all(|c| c.as_expected()), "{calls:?}");
    let ids: std::collections::HashSet<_> = calls.iter().map(|c| &c.call_id).collect();
    assert_eq!(ids.len(), 30);
    // At most 12 at once: 20 answered calls, 40 streams, never more than 24 together.
    assert_eq!(report.media.streams_started, 40);
    assert!(
        report.media.peak_streams <= 24,
        "{}",
        report.media.peak_streams
    );
    assert_eq!(report.media.streams_heard_peer, 40);
}

#[test]
fn a_callee_that_never_answers_times_the_call_out() {
    // Nothing listens at the callee's address: the INVITE goes nowhere.
    let media = Media::spawn().expect("media");
    let uac = Uac::bind(UacConfig {
        local: SocketAddr::new(ip("127.0.43.2"), 5060),
        remote: SocketAddr::new(ip("127.0.43.3"), 5060),
        rtp_ports: loadgen::CALLER_RTP_PORTS,
        scenarios: scenarios(&["answer-1s"]),
        count: 2,
        concurrency: 2,
        ramp: Duration::ZERO,
        timeouts: Timeouts {
            invite: Duration::from_millis(300),
            ..Timeouts::default()
        },
        seed: 7,
    })
    .expect("bind");
    let started = Instant::now();
    let report = uac.run(&media.handle());
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(report.calls.len(), 2);
    for c in &report.calls {
        assert!(c.timed_out, "{c:?}");
        assert_eq!((c.outcome, c.final_status), (Outcome::Failed, 0));
        assert!(!c.as_expected());
    }
    assert_eq!(media.finish().streams_started, 0);
}

#[test]
fn the_callee_refuses_a_user_that_names_no_scenario() {
    let media = Media::spawn().expect("media");
    let callee = SocketAddr::new(ip("127.0.44.3"), 5060);
    let uas = Uas::bind(UasConfig {
        local: callee,
        ..UasConfig::default()
    })
    .expect("bind");
    let stop = Arc::new(AtomicBool::new(false));
    let (h, s) = (media.handle(), stop.clone());
    let thread = std::thread::spawn(move || uas.run(&h, &s));
    // An INVITE for extension 1002, from the capture generator's builder.
    let phone = UdpSocket::bind((ip("127.0.44.2"), 5060)).expect("bind");
    phone
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut d = Dialog::new(
        3,
        Ua::new("1001", ip("127.0.44.2")),
        Ua::new("1002", callee.ip()),
    );
    d.invite(calltap::pcapgen::call::DEFAULT_START);
    let invite = d.take_messages().remove(0);
    phone.send_to(&invite.bytes, callee).expect("send");
    let mut buf = [0u8; 4096];
    let (n, _) = phone.recv_from(&mut buf).expect("a response");
    let (resp, _) = calltap::sip::parse(&buf[..n]).expect("SIP");
    assert_eq!(resp.status_code(), Some(404));
    assert_eq!(resp.call_id(), d.call_id.as_bytes());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let report = thread.join().expect("uas");
    assert_eq!(report.counters.unknown_scenario, 1);
    drop(media);
}

/// tcpdump on `lo`, writing `file`, or why it cannot run here.
struct Tcpdump(std::process::Child);

impl Tcpdump {
    fn start(file: &Path, filter: &str) -> Result<Tcpdump, String> {
        let mut child = Command::new("tcpdump")
            .args(["-i", "lo", "-U", "-s", "0", "-w"])
            .arg(file)
            .arg(filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("tcpdump cannot start: {e}"))?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        // tcpdump says "listening on lo" once the capture is open, or why it failed.
        match lines.next() {
            Some(Ok(l)) if l.contains("listening on") => {
                std::thread::spawn(move || for _ in lines {});
                Ok(Tcpdump(child))
            }
            other => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("tcpdump could not capture on lo: {other:?}"))
            }
        }
    }

    /// SIGTERM: tcpdump writes out what it buffered and exits.
    fn stop(mut self) {
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

/// Power of `freq` in `samples` (Goertzel), relative to the signal's energy.
fn tone_share(samples: &[i16], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / 8000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut energy = 0.0;
    for &x in samples {
        let x = f64::from(x);
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
        energy += x * x;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    if energy == 0.0 {
        0.0
    } else {
        2.0 * power / (samples.len() as f64 * energy)
    }
}

#[test]
fn what_the_agents_send_replays_into_the_records_the_scenarios_promise() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pcap = dir.path().join("agents.pcap");
    let (caller, callee) = ("127.0.45.2", "127.0.45.3");
    let filter = format!("udp and (host {caller} or host {callee})");
    let tcpdump = match Tcpdump::start(&pcap, &filter) {
        Ok(t) => t,
        Err(why) => {
            skip::skip(format!("capture test skipped: {why}"));
            return;
        }
    };
    let report = loadgen::run(&plan(caller, callee));
    tcpdump.stop();
    let report = report.expect("run");
    assert!(report.uac.calls.iter().all(|c| c.as_expected()));

    let store = Store::open(&dir.path().join("store")).expect("store");
    let engine = Engine::with_recordings(&Config::default(), store.recordings_dir().to_path_buf());
    let mut ingest = Ingest::new(engine, &store);
    replay_files(&[&pcap], &mut ingest, false);
    let records: HashMap<String, CallRecord> = store
        .all_calls()
        .filter_map(Result::ok)
        .map(|r| (r.sip.call_id.clone(), r))
        .collect();
    assert_eq!(records.len(), SET.len(), "{:?}", records.keys());
    assert_records(&report.uac.calls, &records, store.recordings_dir());
}

/// The records calltap made of the agents' calls say what the scenarios promised: the
/// outcome, who hung up, the talk time, and a recording with a tone on each channel.
fn assert_records(calls: &[CallResult], records: &HashMap<String, CallRecord>, recordings: &Path) {
    for call in calls {
        let scenario = call.planned.expect("planned");
        let r = records
            .get(&call.call_id)
            .unwrap_or_else(|| panic!("no record of {}", call.scenario));
        assert_eq!(r.outcome, scenario.expected_outcome(), "{}", call.scenario);
        assert_eq!(r.sip.final_status, call.final_status, "{}", call.scenario);
        let Some(talk) = scenario.talk() else {
            assert!(r.answer_ns.is_none() && r.media.recording.is_none());
            continue;
        };
        // Who hung up, as the SIP party and as the contract says it.
        let by = match scenario {
            Scenario::CalleeHangsUp { .. } => RecordParty::Callee,
            _ => RecordParty::Caller,
        };
        assert_eq!(r.hung_up_by, Some(by), "{}", call.scenario);
        // The operator is the caller on an outgoing call, the callee on an incoming one
        // (with no operator configured, calltap discovers the caller as the operator).
        let operator_side = match r.direction {
            Direction::Incoming => RecordParty::Callee,
            Direction::Outgoing | Direction::Internal => RecordParty::Caller,
        };
        let who = if by == operator_side {
            WhoHungUp::Operator
        } else {
            WhoHungUp::Client
        };
        assert_eq!(r.who_hung_up, who, "{} ({:?})", call.scenario, r.direction);
        let answer = r.answer_ns.expect("answered");
        let talk_ms = (r.end_ns - answer) / 1_000_000;
        assert!(
            talk_ms.abs_diff(talk.as_millis() as u64) < 150,
            "{}: {talk_ms} ms",
            call.scenario
        );
        assert!(r.media.is_two_way(), "{:?}", r.media);
        // The recording: 440 Hz on one channel, 1000 Hz on the other.
        let rec = r.media.recording.as_ref().expect("a recording");
        let mut wav = hound::WavReader::open(recordings.join(&rec.file)).expect("a WAV");
        assert_eq!(wav.spec().channels, 2);
        let samples: Vec<i16> = wav.samples::<i16>().filter_map(Result::ok).collect();
        let (left, right): (Vec<i16>, Vec<i16>) =
            samples.chunks_exact(2).map(|f| (f[0], f[1])).unzip();
        let dominant = |ch: &[i16]| {
            let (a, b) = (tone_share(ch, 440.0), tone_share(ch, 1000.0));
            if a > 0.5 && a > 10.0 * b {
                440
            } else if b > 0.5 && b > 10.0 * a {
                1000
            } else {
                0
            }
        };
        let tones = (dominant(&left), dominant(&right));
        assert!(
            tones == (440, 1000) || tones == (1000, 440),
            "{}: channels carry {tones:?}",
            call.scenario
        );
    }
}

#[test]
fn the_callee_sends_rtp_to_the_offer_and_gives_up_on_a_caller_that_vanishes() {
    let media = Media::spawn().expect("media");
    let callee = SocketAddr::new(ip("127.0.46.3"), 5060);
    let uas = Uas::bind(UasConfig {
        local: callee,
        ring: Duration::from_millis(100),
        caller_bye: Duration::from_millis(300),
        ..UasConfig::default()
    })
    .expect("bind");
    let stop = Arc::new(AtomicBool::new(false));
    let (h, s) = (media.handle(), stop.clone());
    let thread = std::thread::spawn(move || uas.run(&h, &s));
    // A phone that offers RTP on port 40000, then never ACKs and never hangs up.
    let phone = UdpSocket::bind((ip("127.0.46.2"), 5060)).expect("bind");
    let rtp = UdpSocket::bind((ip("127.0.46.2"), 40_000)).expect("bind");
    phone
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    rtp.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut d = Dialog::new(
        4,
        Ua::new("1001", ip("127.0.46.2")).rtp_port(40_000),
        Ua::new("answer-400ms", callee.ip()),
    );
    d.invite(calltap::pcapgen::call::DEFAULT_START);
    phone
        .send_to(&d.take_messages().remove(0).bytes, callee)
        .expect("send");
    let mut buf = [0u8; 4096];
    let mut codes = Vec::new();
    while codes.last() != Some(&200) {
        let (n, _) = phone.recv_from(&mut buf).expect("a response");
        let (resp, _) = calltap::sip::parse(&buf[..n]).expect("SIP");
        codes.push(resp.status_code().unwrap_or(0));
    }
    assert_eq!(codes, [100, 180, 200]);
    // The callee's 1000 Hz PCMU arrives where the offer asked, from the answer's port.
    let answered = Instant::now();
    let mut packets = 0;
    while let Ok((n, src)) = rtp.recv_from(&mut buf) {
        assert_eq!((n, buf[1] & 0x7F), (172, 0));
        assert_eq!(src.ip(), callee.ip());
        packets += 1;
    }
    // 400 ms of talk and 300 ms of grace, then it stops: about 35 packets, not more.
    let quiet_after = answered.elapsed();
    assert!((25..=45).contains(&packets), "{packets} packets");
    assert!(quiet_after < Duration::from_secs(2), "{quiet_after:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let report = thread.join().expect("uas");
    assert_eq!(report.counters.caller_bye_missing, 1);
    assert_eq!(media.finish().streams_stopped, 1);
}

/// `GET /health` with the key: the status code, or `None` while nothing answers.
fn health(addr: SocketAddr, key: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let req = format!(
        "GET /health HTTP/1.1\r\nHost: {addr}\r\nX-Secret-Key: {key}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

#[test]
fn calltap_run_on_lo_records_the_agents_calls_live() {
    let bin = env!("CARGO_BIN_EXE_calltap");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("calltap.toml");
    std::fs::write(&config, "[capture]\ninterfaces = [\"lo\"]\n").expect("config");
    let data = dir.path().join("data");
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let key = "loadgen-live-test-key";
    let mut calltap = Command::new(bin)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--data")
        .arg(&data)
        .arg("--listen")
        .arg(listen.to_string())
        .env("CALLTAP_SECRET_KEY", key)
        .env_remove("CALLTAP_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("calltap starts");
    let ready_by = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = calltap.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = calltap.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            let lower = err.to_lowercase();
            // calltap's own words for a missing CAP_NET_RAW or a kernel without AF_PACKET.
            if lower.contains("not permitted") || lower.contains("no af_packet") {
                skip::skip(format!("live test skipped: {err}"));
                return;
            }
            panic!("calltap run exited with {status}: {err}");
        }
        if health(listen, key) == Some(200) {
            break;
        }
        assert!(Instant::now() < ready_by, "calltap run never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let report = loadgen::run(&plan("127.0.47.2", "127.0.47.3")).expect("run");
    assert!(report.uac.calls.iter().all(|c| c.as_expected()));
    // SIGTERM ends the run and stores every record at once.
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signalling our own child by its pid.
    unsafe {
        libc::kill(calltap.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = calltap.wait().expect("calltap stops");
    assert!(status.success(), "calltap run exited with {status}");
    let out = Command::new(bin)
        .args(["calls", "--all", "--json", "--data"])
        .arg(&data)
        .env_remove("CALLTAP_CONFIG")
        .output()
        .expect("calltap calls");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    // Other tests' agents share lo: keep the records of this test's calls.
    let records: HashMap<String, CallRecord> = listed["calls"]
        .as_array()
        .expect("a list of calls")
        .iter()
        .filter_map(|c| serde_json::from_value::<CallRecord>(c["calltap"].clone()).ok())
        .map(|r| (r.sip.call_id.clone(), r))
        .filter(|(id, _)| report.uac.calls.iter().any(|c| &c.call_id == id))
        .collect();
    assert_eq!(records.len(), SET.len(), "{:?}", records.keys());
    assert_records(&report.uac.calls, &records, &data.join("recordings"));
}

#[test]
fn both_agents_can_share_one_ipv6_address() {
    let mut p = Plan::new(
        ip("::1"),
        ip("::1"),
        scenarios(&["answer-300ms", "callee-hangs-up-300ms", "busy"]),
    );
    p.ring = Duration::from_millis(100);
    let report = loadgen::run(&p).expect("run");
    assert!(
        report.uac.calls.iter().all(|c| c.as_expected()),
        "{:?}",
        report.uac.calls
    );
    let rtp = report.uac.calls[0]
        .callee_rtp
        .as_deref()
        .unwrap_or_default();
    assert!(rtp.starts_with("[::1]:"), "{rtp}");
    assert_eq!(report.media.streams_heard_peer, 4);
}

#[test]
fn the_caller_alone_calls_a_callee_agent_already_running() {
    let callee = SocketAddr::new(ip("127.0.48.3"), 5060);
    let media = Media::spawn().expect("media");
    let uas = Uas::bind(UasConfig {
        local: callee,
        ring: Duration::from_millis(100),
        ..UasConfig::default()
    })
    .expect("bind");
    let stop = Arc::new(AtomicBool::new(false));
    let (h, s) = (media.handle(), stop.clone());
    let thread = std::thread::spawn(move || uas.run(&h, &s));
    let mut p = Plan::new(
        ip("127.0.48.2"),
        callee.ip(),
        scenarios(&["answer-300ms", "busy"]),
    );
    p.with_callee = false;
    let started = Instant::now();
    let report = loadgen::run(&p).expect("run");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(report.uac.calls.iter().all(|c| c.as_expected()));
    assert_eq!(report.uas.counters.invites, 0, "no callee agent of its own");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let uas = thread.join().expect("uas");
    assert_eq!((uas.counters.answered, uas.counters.busy), (1, 1));
    assert_eq!(media.finish().streams_started, 1);
}
