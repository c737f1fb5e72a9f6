//! calltap with a real SIP proxy in the call path: Kamailio, stateful and
//! record-routing, between pairs of baresip phones on loopback, while `calltap run`
//! captures `lo`. Every request of a call crosses `lo` twice (caller -> proxy -> callee,
//! and back along the recorded route), so each dialog is seen at two hops; calltap must
//! still store one call per dialog, with the outcome, the party that hung up and a
//! recording as long as the talk.
//!
//! The three calls run at once and `run` is stopped by SIGTERM afterwards (which flushes
//! the dialogs still lingering), so the test takes a few seconds, not a linger.
//! Needs kamailio (Debian: kamailio), baresip (Debian: baresip-core) and AF_PACKET (root
//! or CAP_NET_RAW); listed as skipped otherwise (tests/support/skip.rs).

// Shared with baresip_e2e, which uses all of it.
#[allow(dead_code)]
#[path = "support/baresip.rs"]
mod baresip;
#[path = "support/e2e.rs"]
mod e2e;
#[path = "support/kamailio.rs"]
mod kamailio;

#[path = "support/skip.rs"]
mod skip;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use baresip::{AnswerMode, Phone, PhoneConfig};
use e2e::{af_packet_allowed, sigterm, tone_power, wait_exit, Guard, RATE};
use serde_json::Value;

const KEY: &str = "kamailio-e2e-key";
const PROXY_PORT: u16 = 5060;
/// The contract gives SIGTERM "a few seconds"; more than this is a hang.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);
/// How far a recording's length may stray from the talk time the phones saw.
const RECORDING_SLACK_SECS: f64 = 0.5;
const EVENT_WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Script {
    /// Answered; the caller (the client) hangs up after this many seconds.
    CallerHangsUp(f64),
    /// Answered; the callee (the operator) hangs up after this many seconds.
    CalleeHangsUp(f64),
    /// The callee refuses the ringing call (baresip answers 486), relayed by the proxy.
    Busy,
}

/// Scenario n (from 1): the client 127.a.b.(2n) calls the operator 127.a.b.(2n+1)
/// through the proxy on 127.a.b.1.
const SCENARIOS: [Script; 3] = [
    Script::CallerHangsUp(3.0),
    Script::CalleeHangsUp(3.0),
    Script::Busy,
];

fn client_tone(n: usize) -> f64 {
    250.0 + 100.0 * n as f64
}
fn operator_tone(n: usize) -> f64 {
    1150.0 + 100.0 * n as f64
}

/// Addresses, ports and numbers of this run, apart from any other test calling on lo.
struct Plan {
    net: (u8, u8),
    base: u16,
    tag: u32,
}

impl Plan {
    fn new() -> Plan {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let seed = std::process::id().wrapping_mul(2_654_435_761) ^ nanos;
        // Below Linux's ephemeral range (32768 and up), so no client socket holds them.
        let base = 10_150 + (seed % 70) as u16 * 300;
        Plan {
            net: (100 + ((seed >> 8) % 100) as u8, ((seed >> 16) % 256) as u8),
            base,
            tag: 100 + (seed >> 20) % 900,
        }
    }
    fn client_number(&self, n: usize) -> String {
        format!("+1556{}{n:04}", self.tag)
    }
    fn extension(&self, n: usize) -> String {
        format!("{}{n}", self.tag)
    }
    fn ip(&self, last: usize) -> Ipv4Addr {
        Ipv4Addr::new(127, self.net.0, self.net.1, last as u8)
    }
    fn proxy_ip(&self) -> Ipv4Addr {
        self.ip(1)
    }
}

fn calltap() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_calltap"));
    c.env_remove("CALLTAP_CONFIG")
        .env("CALLTAP_SECRET_KEY", KEY);
    c
}

/// The health endpoint answers: `run` has opened its capture and store.
fn wait_healthy(port: u16, child: &mut Child) {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let req = format!(
                "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Secret-Key: {KEY}\r\nConnection: close\r\n\r\n"
            );
            let mut resp = String::new();
            if s.write_all(req.as_bytes()).is_ok()
                && s.read_to_string(&mut resp).is_ok()
                && resp.starts_with("HTTP/1.1 200")
            {
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("calltap run exited before serving: {status}");
        }
        assert!(Instant::now() < deadline, "/health never answered 200");
        thread::sleep(Duration::from_millis(50));
    }
}

fn config_toml(plan: &Plan) -> String {
    let mut s = format!(
        "[capture]\ninterfaces = [\"lo\"]\nsip_ports = [{}, {PROXY_PORT}]\n",
        plan.base
    );
    for n in 1..=SCENARIOS.len() {
        s += &format!(
            "\n[[operators]]\nid = \"op-{ext}\"\nname = \"Operator {ext}\"\nextension = \"{ext}\"\n",
            ext = plan.extension(n)
        );
    }
    s
}

/// The phones of scenario n (from 1): (client, operator). The client dials through
/// the proxy as its outbound proxy; the operator answers along the recorded route.
fn phones(plan: &Plan, install: &baresip::Install, n: usize) -> (PhoneConfig, PhoneConfig) {
    let s = SCENARIOS[n - 1];
    let phone =
        |i: usize, name: String, user: String, display: Option<String>, tone: f64| PhoneConfig {
            modules: install.modules.clone(),
            name,
            user,
            display,
            ip: plan.ip(i),
            sip_port: plan.base,
            ctrl_port: plan.base + 1 + i as u16,
            rtp_ports: {
                let start = plan.base + 100 + i as u16 * 10;
                (start, start + 9)
            },
            tone_hz: tone,
            tone_secs: 20,
            answer: if i % 2 == 1 && s == Script::Busy {
                AnswerMode::Manual
            } else {
                AnswerMode::Auto
            },
            outbound: (i % 2 == 0).then(|| format!("sip:{}:{PROXY_PORT};lr", plan.proxy_ip())),
        };
    (
        phone(
            2 * n,
            format!("client{n}"),
            plan.client_number(n),
            Some(format!("Client {n}")),
            client_tone(n),
        ),
        phone(
            2 * n + 1,
            format!("operator{n}"),
            plan.extension(n),
            None,
            operator_tone(n),
        ),
    )
}

/// What one scenario's phones saw.
#[derive(Clone, Debug, Default)]
struct Seen {
    call_id: String,
    answered: Option<Instant>,
    /// The BYE left between these two: the hang-up command sent, and the other
    /// phone's CALL_CLOSED.
    ended: Option<(Instant, Instant)>,
}

impl Seen {
    /// The talk time the phones allow, in seconds.
    fn talk(&self) -> Option<(f64, f64)> {
        let (a, (sent, closed)) = (self.answered?, self.ended?);
        Some((
            sent.duration_since(a).as_secs_f64(),
            closed.duration_since(a).as_secs_f64(),
        ))
    }
}

fn play(s: Script, client: &Phone, operator: &Phone) -> Result<Seen, String> {
    client.dial(&operator.config.uri())?;
    let mut seen = Seen::default();
    let mut talk = |secs: f64, who: &Phone, other: &Phone| {
        let est = client.wait_event("CALL_ESTABLISHED", EVENT_WAIT)?;
        thread::sleep(
            (est.at + Duration::from_secs_f64(secs)).saturating_duration_since(Instant::now()),
        );
        seen.call_id = est.call_id;
        seen.answered = Some(est.at);
        let sent = Instant::now();
        who.hangup()?;
        let closed = other.wait_event("CALL_CLOSED", EVENT_WAIT)?;
        seen.ended = Some((sent, closed.at));
        Ok::<(), String>(())
    };
    match s {
        Script::CallerHangsUp(secs) => talk(secs, client, operator)?,
        Script::CalleeHangsUp(secs) => talk(secs, operator, client)?,
        Script::Busy => {
            operator.wait_event("CALL_INCOMING", EVENT_WAIT)?;
            thread::sleep(Duration::from_millis(500));
            operator.hangup()?;
            seen.call_id = client.wait_event("CALL_CLOSED", EVENT_WAIT)?.call_id;
        }
    }
    Ok(seen)
}

/// One channel carries `want` Hz, loud and clearly above the other tones sent.
fn assert_tone(what: &str, samples: &[f64], want: f64) {
    // Skip the edges: RTP starts a few ms after the answer.
    let edge = (RATE as usize) * 3 / 10;
    assert!(
        samples.len() > 3 * edge,
        "{what}: only {} samples",
        samples.len()
    );
    let middle = &samples[edge..samples.len() - edge];
    let rms = (middle.iter().map(|x| x * x).sum::<f64>() / middle.len() as f64).sqrt();
    assert!(rms > 3000.0, "{what}: silent or faint (RMS {rms:.0})");
    let mut powers: Vec<(f64, f64)> = (1..=SCENARIOS.len())
        .flat_map(|n| [client_tone(n), operator_tone(n)])
        .map(|hz| (hz, tone_power(middle, hz)))
        .collect();
    powers.sort_by(|a, b| b.1.total_cmp(&a.1));
    assert_eq!(powers[0].0, want, "{what}: strongest tone {powers:?}");
    assert!(
        powers[0].1 > 100.0 * powers[1].1,
        "{what}: {want} Hz not clearly alone: {powers:?}"
    );
}

/// A file by name anywhere under `dir`.
fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if entry.file_name() == name {
            return Some(path);
        }
    }
    None
}

/// The recording of call n: stereo 8 kHz, as long as the talk, operator left and
/// client right.
fn check_recording(data: &Path, call: &Value, n: usize, talk: (f64, f64)) -> f64 {
    let file = call["calltap"]["media"]["recording"]["file"]
        .as_str()
        .unwrap_or_else(|| panic!("call {n}: no recording: {call}"));
    let path = find_file(data, file).unwrap_or_else(|| panic!("call {n}: {file} not on disk"));
    let reader = hound::WavReader::open(&path).expect("a WAV file");
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, RATE, 16),
        "call {n}: {spec:?}"
    );
    let samples: Vec<i16> = reader
        .into_samples::<i16>()
        .collect::<Result<_, _>>()
        .expect("samples");
    let secs = samples.len() as f64 / 2.0 / f64::from(RATE);
    assert!(
        secs >= talk.0 - RECORDING_SLACK_SECS && secs <= talk.1 + RECORDING_SLACK_SECS,
        "call {n}: recording {secs:.2} s, talk {talk:.2?} s"
    );
    let channel =
        |c: usize| -> Vec<f64> { samples.chunks_exact(2).map(|f| f64::from(f[c])).collect() };
    assert_tone(&format!("call {n} left"), &channel(0), operator_tone(n));
    assert_tone(&format!("call {n} right"), &channel(1), client_tone(n));
    secs
}

#[test]
fn calls_through_kamailio_are_one_call_each() {
    let kam = match kamailio::find() {
        Ok(k) => k,
        Err(why) => {
            skip::skip(format!("{why} (Debian: kamailio); kamailio test skipped"));
            return;
        }
    };
    let phone_install = match baresip::find() {
        Ok(b) => b,
        Err(why) => {
            skip::skip(format!(
                "{why} (Debian: baresip-core); kamailio test skipped"
            ));
            return;
        }
    };
    if !af_packet_allowed() {
        skip::skip("AF_PACKET not permitted (needs root or CAP_NET_RAW); kamailio test skipped");
        return;
    }
    let began = Instant::now();
    let plan = Plan::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("calltap.toml");
    std::fs::write(&config, config_toml(&plan)).expect("config written");
    let data = dir.path().join("data");
    println!(
        "kamailio {}, {}; proxy {}:{PROXY_PORT}, phones on 127.{}.{}.x port {}",
        kam.version,
        phone_install.version,
        plan.proxy_ip(),
        plan.net.0,
        plan.net.1,
        plan.base
    );

    // The proxy first: its readiness probe stays out of the capture.
    let proxy = kamailio::Proxy::start(
        &kam,
        &dir.path().join("kamailio"),
        plan.proxy_ip(),
        PROXY_PORT,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let api = plan.base + 40;
    let run_log = dir.path().join("run.log");
    let mut run = Guard(
        calltap()
            .args(["run", "--config"])
            .arg(&config)
            .arg("--data")
            .arg(&data)
            .args(["--listen", &format!("127.0.0.1:{api}")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&run_log).expect("run.log"))
            .spawn()
            .expect("calltap run starts"),
    );
    wait_healthy(api, &mut run.0);

    let pairs: Vec<(Phone, Phone)> = thread::scope(|scope| {
        let handles: Vec<_> = (1..=SCENARIOS.len())
            .map(|n| {
                let (c, o) = phones(&plan, &phone_install, n);
                let root = dir.path();
                scope.spawn(move || {
                    let c = Phone::start(root, c).unwrap_or_else(|e| panic!("{e}"));
                    let o = Phone::start(root, o).unwrap_or_else(|e| panic!("{e}"));
                    (c, o)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("phones start"))
            .collect()
    });
    let seen: Vec<Seen> = thread::scope(|scope| {
        let handles: Vec<_> = pairs
            .iter()
            .zip(SCENARIOS)
            .map(|((client, operator), s)| {
                scope.spawn(move || {
                    play(s, client, operator).unwrap_or_else(|e| {
                        panic!(
                            "{s:?}: {e}\n--- client log:\n{}\n--- operator log:\n{}",
                            client.log(),
                            operator.log()
                        )
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("scenario"))
            .collect()
    });

    sigterm(&run.0);
    let took = wait_exit(&mut run.0, SHUTDOWN_LIMIT).unwrap_or_else(|e| {
        panic!(
            "calltap run: {e}; its log:\n{}",
            std::fs::read_to_string(&run_log).unwrap_or_default()
        )
    });
    drop(pairs);

    // Each call went through the proxy: its INVITE, and for answered calls its BYE
    // (along the recorded route) too.
    for (i, s) in SCENARIOS.iter().enumerate() {
        let relayed = proxy.relayed(&seen[i].call_id);
        assert!(
            relayed.iter().any(|m| m == "INVITE"),
            "{s:?}: INVITE not through the proxy: {relayed:?}\n{}",
            proxy.log()
        );
        if *s != Script::Busy {
            assert!(
                relayed.iter().any(|m| m == "BYE"),
                "{s:?}: BYE not through the proxy: {relayed:?}"
            );
        }
    }
    drop(proxy);

    let out = calltap()
        .args(["calls", "--all", "--json", "--config"])
        .arg(&config)
        .arg("--data")
        .arg(&data)
        .output()
        .expect("calltap calls");
    assert!(out.status.success(), "calltap calls: {out:?}");
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let mut records: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for c in json["calls"].as_array().expect("calls") {
        let number = c["clientNumber"].as_str().unwrap_or_default();
        if (1..=SCENARIOS.len()).any(|n| plan.client_number(n) == number) {
            records
                .entry(number.to_string())
                .or_default()
                .push(c.clone());
        }
    }

    let mut lengths = Vec::new();
    for (i, s) in SCENARIOS.iter().enumerate() {
        let n = i + 1;
        let found = records
            .get(&plan.client_number(n))
            .cloned()
            .unwrap_or_default();
        // Seen at two hops, the dialog is still one call.
        assert_eq!(found.len(), 1, "{s:?}: {} records: {found:?}", found.len());
        let call = &found[0];
        let facts = &call["calltap"];
        assert_eq!(facts["sip"]["call_id"], seen[i].call_id.as_str(), "{call}");
        assert_eq!(call["direction"], "incoming", "{call}");
        assert_eq!(
            call["operatorId"],
            format!("op-{}", plan.extension(n)),
            "{call}"
        );
        assert_eq!(call["clientName"], format!("Client {n}"), "{call}");
        match s {
            Script::Busy => {
                assert_eq!(facts["outcome"], "busy", "{call}");
                assert_eq!(facts["sip"]["final_status"], 486, "{call}");
                assert_eq!(facts["exported"], false, "{call}");
            }
            _ => {
                assert_eq!(facts["outcome"], "answered", "{call}");
                assert_eq!(facts["exported"], true, "{call}");
                let who = if *s == Script::CalleeHangsUp(3.0) {
                    "operator"
                } else {
                    "client"
                };
                assert_eq!(call["whoHungUp"], who, "{s:?}: {call}");
                let talk = seen[i].talk().expect("answered and ended");
                let duration = call["duration"].as_u64().expect("duration") as f64;
                assert!(
                    duration >= talk.0 - 0.51 && duration <= talk.1 + 0.51,
                    "{s:?}: duration {duration}, talk {talk:.2?} s"
                );
                lengths.push(check_recording(&data, call, n, talk));
            }
        }
    }
    println!(
        "one record per call through the proxy; recordings {lengths:.2?} s; \
         run stopped {:.2} s after SIGTERM; wall time {:.1} s",
        took.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
}
