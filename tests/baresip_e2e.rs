//! calltap beside real phones: pairs of baresip instances call each other over loopback
//! (real SIP, real G.711 RTP, each phone on its own 127.x address) while `calltap run`
//! captures `lo`. What the phones did (who answered, who hung up, how long they talked,
//! which tone each sent) is checked against what the API serves: the call records, their
//! recordings, and the importer's own walk through the contract.
//!
//! All scenarios run at once, so the test costs one dialog linger (32 s) plus a few
//! seconds: one record is awaited while `run` is still running (the linger), the rest are
//! flushed by SIGTERM and read back through `calltap serve` on the same store. tcpdump, when
//! present, records the same traffic, and replaying it must give the same records.
//! Each run takes its own addresses, ports, numbers and extensions, and asks the API for
//! its own operators: other tests may be calling on lo at the same time.
//!
//! Needs baresip (Debian: baresip-core) and AF_PACKET (root or CAP_NET_RAW); skipped with
//! a reason otherwise (listed at the end of `cargo test`).

#[path = "support/baresip.rs"]
mod baresip;
#[path = "support/e2e.rs"]
mod e2e;

#[path = "support/skip.rs"]
mod skip;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use baresip::{AnswerMode, Event, Phone, PhoneConfig};
use e2e::{af_packet_allowed, sigterm, tone_power, wait_exit, Guard, RATE};
use serde_json::{json, Value};

const KEY: &str = "baresip-e2e-key";
/// The dialog layer keeps an ended call 32 s (64 x T1) for late requests; the record
/// of a call that ended while `run` runs is served after that, plus a tick or two.
const LINGER_WAIT: Duration = Duration::from_secs(60);
/// The contract gives SIGTERM "a few seconds"; more than this is a hang.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);
/// How far a recording's length may stray from the talk time the phones saw.
const RECORDING_SLACK_SECS: f64 = 0.5;
const EVENT_WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Script {
    /// Answered; the caller hangs up after this many seconds of talk.
    CallerHangsUp(f64),
    /// Answered; the callee hangs up after this many seconds.
    CalleeHangsUp(f64),
    /// The caller gives up while the callee is ringing (CANCEL, 487).
    Cancelled,
    /// The callee refuses the ringing call (baresip answers 486).
    Busy,
    /// Answered and still talking when calltap is stopped.
    InProgress,
}

struct Scenario {
    name: &'static str,
    script: Script,
    /// The operator dials the client (otherwise the client calls the operator).
    outgoing: bool,
}

/// Scenario n (from 1) uses the client number and operator extension `Plan` gives it,
/// and the addresses 127.a.b.(2n) and 127.a.b.(2n+1).
const SCENARIOS: [Scenario; 8] = [
    Scenario {
        name: "client hangs up (awaited while run runs)",
        script: Script::CallerHangsUp(3.0),
        outgoing: false,
    },
    Scenario {
        name: "operator hangs up",
        script: Script::CalleeHangsUp(3.0),
        outgoing: false,
    },
    Scenario {
        name: "cancelled while ringing",
        script: Script::Cancelled,
        outgoing: false,
    },
    Scenario {
        name: "busy",
        script: Script::Busy,
        outgoing: false,
    },
    Scenario {
        name: "concurrent 1: client hangs up",
        script: Script::CallerHangsUp(2.2),
        outgoing: false,
    },
    Scenario {
        name: "concurrent 2: outgoing, client hangs up",
        script: Script::CalleeHangsUp(4.2),
        outgoing: true,
    },
    Scenario {
        name: "concurrent 3: operator hangs up",
        script: Script::CalleeHangsUp(3.4),
        outgoing: false,
    },
    Scenario {
        name: "in progress at shutdown",
        script: Script::InProgress,
        outgoing: false,
    },
];

/// Tones 100 Hz apart, no two alike, so a swapped channel or a swapped recording shows.
fn client_tone(n: usize) -> f64 {
    250.0 + 100.0 * n as f64
}
fn operator_tone(n: usize) -> f64 {
    1150.0 + 100.0 * n as f64
}

/// Addresses, ports and numbers of this run, apart from any other test on the machine:
/// `run` captures all of lo, where other tests (or another run of this one) may be
/// calling at the same time, and calltap finds SIP on any port.
struct Plan {
    net: (u8, u8),
    sip_port: u16,
    base: u16,
    /// Three digits in this run's client numbers and extensions.
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
        let base = 10_000 + (seed % 70) as u16 * 300;
        Plan {
            net: (100 + ((seed >> 8) % 100) as u8, ((seed >> 16) % 256) as u8),
            sip_port: base,
            base,
            tag: 100 + (seed >> 20) % 900,
        }
    }
    fn client_number(&self, n: usize) -> String {
        format!("+1555{}{n:04}", self.tag)
    }
    fn extension(&self, n: usize) -> String {
        format!("{}{n}", self.tag)
    }
    fn operator_ids(&self) -> Vec<String> {
        (1..=SCENARIOS.len())
            .map(|n| format!("op-{}", self.extension(n)))
            .collect()
    }
    fn ip(&self, last: usize) -> Ipv4Addr {
        Ipv4Addr::new(127, self.net.0, self.net.1, last as u8)
    }
    fn ctrl_port(&self, phone: usize) -> u16 {
        self.base + 1 + phone as u16
    }
    fn rtp_ports(&self, phone: usize) -> (u16, u16) {
        let start = self.base + 100 + phone as u16 * 10;
        (start, start + 9)
    }
    fn run_api(&self) -> u16 {
        self.base + 40
    }
    fn serve_api(&self) -> u16 {
        self.base + 41
    }
}

fn calltap() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_calltap"));
    c.env_remove("CALLTAP_CONFIG")
        .env("CALLTAP_SECRET_KEY", KEY);
    c
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn unix_f64(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

fn config_toml(plan: &Plan) -> String {
    let mut s = format!(
        "[capture]\ninterfaces = [\"lo\"]\nsip_ports = [{}]\n",
        plan.sip_port
    );
    for n in 1..=SCENARIOS.len() {
        s += &format!(
            "\n[[operators]]\nid = \"op-{ext}\"\nname = \"Operator {ext}\"\nextension = \"{ext}\"\n",
            ext = plan.extension(n)
        );
    }
    s
}

/// The HTTP side: reqwest on a small runtime of the test's own.
struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Http {
    fn new() -> Http {
        Http {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
        }
    }

    fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        key: bool,
        body: Option<&Value>,
    ) -> (u16, Vec<u8>) {
        self.try_send(method, url, key, body)
            .unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn try_send(
        &self,
        method: reqwest::Method,
        url: &str,
        key: bool,
        body: Option<&Value>,
    ) -> Result<(u16, Vec<u8>), String> {
        self.rt.block_on(async {
            let mut req = self.client.request(method, url);
            if key {
                req = req.header("X-Secret-Key", KEY);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
            Ok((status, bytes.to_vec()))
        })
    }

    fn wait_healthy(&self, base: &str, child: &mut Child) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok((200, _)) =
                self.try_send(reqwest::Method::GET, &format!("{base}/health"), true, None)
            {
                return;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("calltap exited before serving: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "{base}/health never answered 200"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// POST /calls for a window and these operators.
    fn calls(&self, base: &str, from: u64, to: u64, operators: &[String]) -> Vec<Value> {
        let (status, body) = self.send(
            reqwest::Method::POST,
            &format!("{base}/calls"),
            true,
            Some(&json!({"startTime": from, "stopTime": to, "operators": operators})),
        );
        assert_eq!(status, 200, "POST /calls: {}", text(&body));
        let v: Value = serde_json::from_slice(&body).expect("JSON");
        v["calls"].as_array().expect("calls array").clone()
    }
}

/// What one scenario's phones saw.
#[derive(Clone, Debug, Default)]
struct Seen {
    answered: Option<Event>,
    /// The BYE left between these two: the hang-up command sent, and the other
    /// phone's CALL_CLOSED (milliseconds apart, unless the machine stalls).
    ended: Option<(Instant, Instant)>,
}

/// The talk time the phones allow, as a range in seconds.
#[derive(Clone, Copy, Debug)]
struct Talk {
    min: f64,
    max: f64,
}

impl Talk {
    fn new(answered: Instant, end: (Instant, Instant)) -> Talk {
        Talk {
            min: end.0.duration_since(answered).as_secs_f64(),
            max: end.1.duration_since(answered).as_secs_f64(),
        }
    }

    /// Whether `secs` lies within `slack` of the range.
    fn fits(&self, secs: f64, slack: f64) -> bool {
        secs >= self.min - slack && secs <= self.max + slack
    }
}

fn play(s: &Scenario, caller: &Phone, callee: &Phone) -> Result<Seen, String> {
    caller.dial(&callee.config.uri())?;
    let mut seen = Seen::default();
    let hang_up_after = |talk: f64, who: &Phone, other: &Phone, seen: &mut Seen| {
        let est = caller.wait_event("CALL_ESTABLISHED", EVENT_WAIT)?;
        let until = est.at + Duration::from_secs_f64(talk);
        thread::sleep(until.saturating_duration_since(Instant::now()));
        seen.answered = Some(est);
        let sent = Instant::now();
        who.hangup()?;
        let closed = other.wait_event("CALL_CLOSED", EVENT_WAIT)?;
        seen.ended = Some((sent, closed.at));
        Ok::<(), String>(())
    };
    match s.script {
        Script::CallerHangsUp(talk) => hang_up_after(talk, caller, callee, &mut seen)?,
        Script::CalleeHangsUp(talk) => hang_up_after(talk, callee, caller, &mut seen)?,
        Script::Cancelled => {
            caller.wait_event("CALL_RINGING", EVENT_WAIT)?;
            callee.wait_event("CALL_INCOMING", EVENT_WAIT)?;
            thread::sleep(Duration::from_millis(1000));
            caller.hangup()?;
            callee.wait_event("CALL_CLOSED", EVENT_WAIT)?;
        }
        Script::Busy => {
            callee.wait_event("CALL_INCOMING", EVENT_WAIT)?;
            thread::sleep(Duration::from_millis(500));
            callee.hangup()?;
            caller.wait_event("CALL_CLOSED", EVENT_WAIT)?;
        }
        Script::InProgress => {
            seen.answered = Some(caller.wait_event("CALL_ESTABLISHED", EVENT_WAIT)?);
        }
    }
    Ok(seen)
}

/// The phones of scenario n (from 1): (client, operator).
fn phones(plan: &Plan, baresip: &baresip::Install, n: usize) -> (PhoneConfig, PhoneConfig) {
    let s = &SCENARIOS[n - 1];
    let ringing = matches!(s.script, Script::Cancelled | Script::Busy);
    let phone = |i: usize, name: String, user: String, display: Option<String>, tone: f64| {
        let callee = (i % 2 == 1) != s.outgoing;
        PhoneConfig {
            modules: baresip.modules.clone(),
            name,
            user,
            display,
            ip: plan.ip(i),
            sip_port: plan.sip_port,
            ctrl_port: plan.ctrl_port(i),
            rtp_ports: plan.rtp_ports(i),
            tone_hz: tone,
            // Talk is a few seconds; the call left running waits out the linger.
            tone_secs: if s.script == Script::InProgress {
                90
            } else {
                20
            },
            answer: if callee && ringing {
                AnswerMode::Manual
            } else {
                AnswerMode::Auto
            },
            outbound: None,
        }
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

/// Checks one channel carries `want` Hz: loud, and stronger than every other tone the
/// test sends by a wide margin.
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
    // The phones send a 10 000-peak sine: about 7 000 RMS.
    assert!(rms > 3000.0, "{what}: silent or faint (RMS {rms:.0})");
    let candidates: Vec<f64> = (1..=SCENARIOS.len())
        .flat_map(|n| [client_tone(n), operator_tone(n)])
        .collect();
    let mut powers: Vec<(f64, f64)> = candidates
        .iter()
        .map(|&hz| (hz, tone_power(middle, hz)))
        .collect();
    powers.sort_by(|a, b| b.1.total_cmp(&a.1));
    assert_eq!(powers[0].0, want, "{what}: strongest tone {powers:?}");
    assert!(
        powers[0].1 > 100.0 * powers[1].1,
        "{what}: {want} Hz not clearly alone: {powers:?}"
    );
}

/// Fetches a call's recording as the importer does and checks it against the phones.
fn check_recording(http: &Http, base: &str, id: &str, n: usize, talk: Talk) {
    let (status, body) = http.send(
        reqwest::Method::GET,
        &format!("{base}/calls/{id}/recording"),
        true,
        None,
    );
    assert_eq!(status, 200, "recording of {id}: {}", text(&body));
    let link: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(link["mimeType"], "audio/wav");
    assert_eq!(link["filename"], format!("call_recording_{id}.wav"));
    let url = link["url"].as_str().expect("url");
    let (status, wav) = http.send(reqwest::Method::GET, url, false, None);
    assert_eq!(status, 200, "download {url}");
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(&wav[8..12], b"WAVE");
    let reader = hound::WavReader::new(std::io::Cursor::new(wav)).expect("a WAV file");
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, RATE, 16),
        "{id}: {spec:?}"
    );
    let samples: Vec<i16> = reader
        .into_samples::<i16>()
        .collect::<Result<_, _>>()
        .expect("samples");
    let secs = samples.len() as f64 / 2.0 / f64::from(RATE);
    assert!(
        talk.fits(secs, RECORDING_SLACK_SECS),
        "call {n}: recording {secs:.2} s, talk {talk:.2?} s"
    );
    let channel =
        |c: usize| -> Vec<f64> { samples.chunks_exact(2).map(|f| f64::from(f[c])).collect() };
    // Operator left, client right, whoever called.
    assert_tone(&format!("call {n} left"), &channel(0), operator_tone(n));
    assert_tone(&format!("call {n} right"), &channel(1), client_tone(n));
}

/// The contract's object a scenario must produce, but for the times measured.
fn expected_record(
    plan: &Plan,
    n: usize,
    s: &Scenario,
    id: &str,
    start: u64,
    duration: u64,
) -> Value {
    let mut v = json!({
        "id": id,
        "clientNumber": plan.client_number(n),
        "direction": if s.outgoing { "outgoing" } else { "incoming" },
        "duration": duration,
        "startTime": start,
        "endTime": start + duration,
        "operatorId": format!("op-{}", plan.extension(n)),
        "operatorName": format!("Operator {}", plan.extension(n)),
        "operatorNumber": plan.extension(n),
        "whoHungUp": match (s.script, s.outgoing) {
            (Script::InProgress, _) => "system",
            (Script::CallerHangsUp(_), false) | (Script::CalleeHangsUp(_), true) => "client",
            _ => "operator",
        },
    });
    if !s.outgoing {
        // The caller's display name; an outgoing call's To carries none.
        v["clientName"] = json!(format!("Client {n}"));
    }
    v
}

/// `calltap calls --all --json`: this run's calls, keyed by client number (each once).
fn stored_calls(plan: &Plan, config: &Path, data: &Path) -> BTreeMap<String, Value> {
    let out = calltap()
        .args(["calls", "--all", "--json", "--config"])
        .arg(config)
        .arg("--data")
        .arg(data)
        .output()
        .expect("calltap calls");
    let json: Value = serde_json::from_str(&ok(out, "calls --all --json")).expect("JSON");
    let ours: Vec<String> = (1..=SCENARIOS.len())
        .map(|n| plan.client_number(n))
        .collect();
    let mut calls = BTreeMap::new();
    for c in json["calls"].as_array().expect("calls") {
        let number = c["clientNumber"].as_str().unwrap_or_default();
        if ours.iter().any(|o| o == number) {
            let before = calls.insert(number.to_string(), c.clone());
            assert!(
                before.is_none(),
                "two records for {number}: {before:?} and {c}"
            );
        }
    }
    calls
}

/// tcpdump writing everything on this run's loopback net to a file.
struct Tcpdump {
    child: Guard,
    file: PathBuf,
    /// tcpdump's closing lines, which count the packets the kernel dropped.
    stderr: thread::JoinHandle<Vec<String>>,
}

impl Tcpdump {
    fn start(plan: &Plan, file: PathBuf) -> Option<Tcpdump> {
        // --immediate-mode: without it libpcap hands packets over in ring blocks, and
        // the block pending at SIGTERM (the last ~1 s of calls, BYEs included) was lost.
        // -s/-B: in immediate mode each ring slot holds a whole snaplen (256 KiB by
        // default), so the default 2 MiB ring held 8 packets and the burst of 16 phones
        // dialling at once lost INVITEs and 200s; 4 KiB slots in 8 MiB hold 2048.
        let mut child = Command::new("tcpdump")
            .args([
                "-i",
                "lo",
                "-U",
                "--immediate-mode",
                "--time-stamp-precision=nano",
                "-n",
                "-s",
                "4096",
                "-B",
                "8192",
            ])
            .arg("-w")
            .arg(&file)
            .arg(format!("net 127.{}.{}.0/24", plan.net.0, plan.net.1))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        // tcpdump says "listening on lo" once its filter is in place.
        let mut lines = BufReader::new(child.stderr.take()?).lines();
        let ready = lines.any(|l| l.is_ok_and(|l| l.contains("listening on")));
        let stderr = thread::spawn(move || lines.map_while(Result::ok).collect());
        let child = Guard(child);
        ready.then_some(Tcpdump {
            child,
            file,
            stderr,
        })
    }

    /// Stops the capture; the file, once tcpdump said it lost nothing.
    fn stop(mut self) -> PathBuf {
        sigterm(&self.child.0);
        wait_exit(&mut self.child.0, SHUTDOWN_LIMIT).unwrap_or_else(|e| panic!("tcpdump: {e}"));
        let said = self.stderr.join().unwrap_or_default();
        assert!(
            said.iter().any(|l| l == "0 packets dropped by kernel"),
            "tcpdump lost packets, so calltap's answers cannot be judged: {said:?}"
        );
        self.file.clone()
    }
}

#[test]
fn baresip_calls_through_calltap_run() {
    let baresip = match baresip::find() {
        Ok(b) => b,
        Err(why) => {
            skip::skip(format!(
                "{why} (Debian: baresip-core); baresip test skipped"
            ));
            return;
        }
    };
    if !af_packet_allowed() {
        skip::skip("AF_PACKET not permitted (needs root or CAP_NET_RAW); baresip test skipped");
        return;
    }
    let began = Instant::now();
    let from = unix_now() - 1;
    let plan = Plan::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("calltap.toml");
    std::fs::write(&config, config_toml(&plan)).expect("config written");
    let data = dir.path().join("data");
    let operators = plan.operator_ids();
    let http = Http::new();
    println!(
        "{}; phones on 127.{}.{}.x, SIP port {}",
        baresip.version, plan.net.0, plan.net.1, plan.sip_port
    );

    let tcpdump = Tcpdump::start(&plan, dir.path().join("lo.pcap"));
    if tcpdump.is_none() {
        skip::skip("tcpdump unavailable; the replay comparison is skipped");
    }
    let run_base = format!("http://127.0.0.1:{}", plan.run_api());
    let run_log = dir.path().join("run.log");
    let mut run = Guard(
        calltap()
            .args(["run", "--config"])
            .arg(&config)
            .arg("--data")
            .arg(&data)
            .args(["--listen", &format!("127.0.0.1:{}", plan.run_api())])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&run_log).expect("run.log"))
            .spawn()
            .expect("calltap run starts"),
    );
    http.wait_healthy(&run_base, &mut run.0);

    // Every phone of every scenario, started in parallel (each takes ~50 ms to start).
    let pairs: Vec<(Phone, Phone)> = thread::scope(|scope| {
        let handles: Vec<_> = (1..=SCENARIOS.len())
            .map(|n| {
                let (c, o) = phones(&plan, &baresip, n);
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

    // All scenarios at once; the first call's record is awaited on the running `run`
    // while the others play out.
    let (tx, rx) = mpsc::channel();
    let mut seen: Vec<Seen> = vec![Seen::default(); SCENARIOS.len()];
    let mut linger = Duration::ZERO;
    let mut served_live = None;
    thread::scope(|scope| {
        for (i, (client, operator)) in pairs.iter().enumerate() {
            let s = &SCENARIOS[i];
            let (caller, callee) = if s.outgoing {
                (operator, client)
            } else {
                (client, operator)
            };
            let tx = tx.clone();
            scope.spawn(move || {
                let result = play(s, caller, callee).map_err(|e| {
                    format!(
                        "{}: {e}\n--- caller log:\n{}\n--- callee log:\n{}",
                        s.name,
                        caller.log(),
                        callee.log()
                    )
                });
                let _ = tx.send((i, result));
            });
        }
        drop(tx);
        for (i, result) in rx.iter() {
            seen[i] = result.unwrap_or_else(|e| panic!("{e}"));
            if i != 0 {
                continue;
            }
            let (bye, _) = seen[0].ended.expect("scenario 1 hung up");
            let found = loop {
                let calls = http.calls(&run_base, from, unix_now() + 60, &operators);
                if let Some(c) = calls
                    .iter()
                    .find(|c| c["clientNumber"] == plan.client_number(1))
                {
                    break c.clone();
                }
                assert!(
                    bye.elapsed() < LINGER_WAIT,
                    "no record for call 1 {LINGER_WAIT:?} after its BYE; run's log:\n{}",
                    std::fs::read_to_string(&run_log).unwrap_or_default()
                );
                thread::sleep(Duration::from_millis(250));
            };
            linger = bye.elapsed();
            served_live = Some(found);
        }
    });
    println!(
        "call 1 served by run {:.1} s after its BYE",
        linger.as_secs_f64()
    );

    let stopped_at = Instant::now();
    sigterm(&run.0);
    let took = wait_exit(&mut run.0, SHUTDOWN_LIMIT).unwrap_or_else(|e| {
        panic!(
            "calltap run: {e}; its log:\n{}",
            std::fs::read_to_string(&run_log).unwrap_or_default()
        )
    });
    println!(
        "calltap run stopped {:.2} s after SIGTERM",
        took.as_secs_f64()
    );
    let pcap = tcpdump.map(Tcpdump::stop);
    drop(pairs);

    // Talk time as the phones saw it; the call left running ends between SIGTERM and
    // the exit.
    let exited_at = stopped_at + took;
    let talk = |i: usize| -> Option<Talk> {
        let est = seen[i].answered.as_ref()?;
        Some(Talk::new(
            est.at,
            seen[i].ended.unwrap_or((stopped_at, exited_at)),
        ))
    };

    // Outcomes of every attempt, answered or not.
    let stored = stored_calls(&plan, &config, &data);
    for (i, s) in SCENARIOS.iter().enumerate() {
        let n = i + 1;
        let call = stored
            .get(&plan.client_number(n))
            .unwrap_or_else(|| panic!("{}: not stored: {stored:?}", s.name));
        let (outcome, exported) = match s.script {
            Script::Cancelled => ("cancelled", false),
            Script::Busy => ("busy", false),
            _ => ("answered", true),
        };
        assert_eq!(call["calltap"]["outcome"], outcome, "{}: {call}", s.name);
        assert_eq!(call["calltap"]["exported"], exported, "{}: {call}", s.name);
        if let Some(est) = &seen[i].answered {
            assert_eq!(
                call["calltap"]["sip"]["call_id"],
                est.call_id.as_str(),
                "{call}"
            );
        }
        if s.script == Script::Busy {
            assert_eq!(call["calltap"]["sip"]["final_status"], 486, "{call}");
        }
    }
    assert_eq!(stored.len(), SCENARIOS.len(), "{stored:?}");

    // The API, served from the same store.
    let serve_base = format!("http://127.0.0.1:{}", plan.serve_api());
    let serve = calltap()
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data")
        .arg(&data)
        .args(["--listen", &format!("127.0.0.1:{}", plan.serve_api())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("calltap serve starts");
    let mut serve = Guard(serve);
    http.wait_healthy(&serve_base, &mut serve.0);
    let to = unix_now() + 60;
    // This run's operators: other tests may be calling on lo meanwhile.
    let served = http.calls(&serve_base, from, to, &operators);
    let mut answered = Vec::new();
    for (i, s) in SCENARIOS.iter().enumerate() {
        let n = i + 1;
        let Some(talk) = talk(i) else {
            assert!(
                !served
                    .iter()
                    .any(|c| c["clientNumber"] == plan.client_number(n)),
                "{}: not a conversation, yet served: {served:?}",
                s.name
            );
            continue;
        };
        let got = served
            .iter()
            .find(|c| c["clientNumber"] == plan.client_number(n))
            .unwrap_or_else(|| panic!("{}: not served: {served:?}", s.name));
        let id = got["id"].as_str().expect("id");
        assert_eq!(id, stored[&plan.client_number(n)]["id"], "{}", s.name);
        let start = got["startTime"].as_u64().expect("startTime");
        let duration = got["duration"].as_u64().expect("duration");
        assert_eq!(
            got,
            &expected_record(&plan, n, s, id, start, duration),
            "{}",
            s.name
        );
        // Packet time and the phone's event differ by milliseconds; the record's start
        // is the answer in whole seconds.
        let answer = unix_f64(seen[i].answered.as_ref().expect("answered").wall);
        assert!(
            start as f64 <= answer + 0.1 && answer - (start as f64) < 1.1,
            "{}: startTime {start}, answered at {answer:.3}",
            s.name
        );
        assert!(
            // The hang-up's second minus the answer's: within a second of the talk.
            talk.fits(duration as f64, 1.0 + 0.01),
            "{}: duration {duration}, talk {talk:.2?} s",
            s.name
        );
        if n == 1 {
            assert_eq!(
                served_live.as_ref(),
                Some(got),
                "call 1 while run ran, and after"
            );
        }
        check_recording(&http, &serve_base, id, n, talk);
        answered.push(n);
    }
    assert_eq!(served.len(), answered.len(), "{served:?}");

    let checker = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/importer-check");
    // Against serve, not run: on a live run other tests' calls could enter the window
    // between two of its requests and fail its "same window, same calls" check.
    let mut walk = Command::new("python3");
    walk.arg(&checker)
        .args(["--url", &serve_base, "--key", KEY])
        .args(["--from", &from.to_string(), "--to", &to.to_string()]);
    if !checker.exists() {
        skip::skip("../shared/tools/importer-check absent; importer walk skipped");
    } else if let Ok(out) = walk.output() {
        assert!(
            out.status.success(),
            "importer-check:\n{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    } else {
        skip::skip("python3 unavailable; importer walk skipped");
    }
    sigterm(&serve.0);
    wait_exit(&mut serve.0, SHUTDOWN_LIMIT).unwrap_or_else(|e| panic!("calltap serve: {e}"));

    // The same traffic from a file (nanosecond timestamps, as the live ring has): the
    // same records to the packet counts and the nanosecond, the call cut by SIGTERM
    // aside, which a file ends elsewhere.
    if let Some(pcap) = pcap {
        let replayed = dir.path().join("replayed");
        ok(
            calltap()
                .args(["replay", "-q", "--config"])
                .arg(&config)
                .arg("--data")
                .arg(&replayed)
                .arg(&pcap)
                .output()
                .expect("calltap replay"),
            "replay",
        );
        let again = stored_calls(&plan, &config, &replayed);
        for (i, s) in SCENARIOS.iter().enumerate() {
            if s.script == Script::InProgress {
                continue;
            }
            let key = plan.client_number(i + 1);
            let live = &stored[&key];
            let file = again
                .get(&key)
                .unwrap_or_else(|| panic!("{}: not in the replay", s.name));
            assert_eq!(live, file, "{}: live vs replay", s.name);
        }
    }
    println!(
        "{} answered calls checked, wall time {:.1} s",
        answered.len(),
        began.elapsed().as_secs_f64()
    );
}
