//! The web console at size: History over a million stored calls (100 days, 10,000 a
//! day), first page and a deep page (half-way back, by its cursor) and a number search
//! matching nothing (the per-page scan bound); the Call page, its waveform and its pcap
//! for a one-hour recorded call with 200 SIP messages; and the Live stream's cost with
//! 500 calls up, and what listing 500 calls in progress costs the capture thread each
//! second (`Engine::calls_in_progress` on an engine in the middle of 500 concurrent
//! calls). Aim: every page under 200 ms.
//!
//! `cargo bench --bench ui` (CALLTAP_BENCH_CALLS=100000 for a quick run). The client
//! runs in this process beside the server's two worker threads, as in benches/api.rs.
//!
//! Figures on the 2-core development machine (1,000,000 calls; medians of 20): History
//! first page 0.4 ms, 500,000 calls back 0.4 ms, one operator's incoming calls 11 ms, a
//! number no call has 54 ms (78 ms at most); the one-hour call's page 0.9 ms, its
//! waveform 48 ms (290 ms with a division per sample), its pcap 0.3 ms; Status 0.3 ms;
//! Live 0.3 ms; the stream 0.73 ms of CPU per 126 KB event; `calls_in_progress` with
//! 500 calls up 0.76 ms.

#[path = "support/calls.rs"]
mod calls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use calltap::base::{SipTrace, Timestamp, TracedMessage, Transport};
use calltap::call::{CallInProgress, CallRecord, Direction, RecordingFile, Stage};
use calltap::config::Config;
use calltap::store::Store;

use calls::{env_u64, BASE, DAY, DAYS};

const RUNS: usize = 20;
const PASSWORD: &str = "bench-console-password";
const LIVE_CALLS: usize = 500;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A one-hour call, recorded (stereo 8 kHz, a tone in each channel) with 200 SIP
/// messages (a session timer's refreshes), at `start`.
fn hour_call(store: &Store, start: u64) -> CallRecord {
    let mut record = calls::synthetic(u64::MAX, start);
    record.id = "c-one-hour".into();
    record.duration = 3600;
    record.end_time = start + 3600;
    record.end_ns = record.end_time * 1_000_000_000;
    let path = store.recordings_dir().join("c-one-hour.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).expect("the WAV");
    for i in 0..3600 * 8000u32 {
        let t = f64::from(i) / 8000.0;
        let envelope = if (i / 8000) % 7 < 4 { 8000.0 } else { 300.0 };
        w.write_sample((envelope * (t * 440.0 * std::f64::consts::TAU).sin()) as i16)
            .expect("a sample");
        w.write_sample((envelope * (t * 620.0 * std::f64::consts::TAU).sin()) as i16)
            .expect("a sample");
    }
    w.finalize().expect("the WAV ends");
    record.media.recording = Some(RecordingFile {
        file: "c-one-hour.wav".into(),
        bytes: std::fs::metadata(&path).expect("the WAV").len(),
        sample_rate: 8000,
        duration_ms: 3_600_000,
    });
    let a: SocketAddr = "203.0.113.10:5060".parse().unwrap();
    let b: SocketAddr = "10.0.0.5:5060".parse().unwrap();
    let mut trace = SipTrace::default();
    for k in 0..200u64 {
        let (src, dst, first) = match k % 4 {
            0 => (a, b, "INVITE sip:101@10.0.0.5 SIP/2.0"),
            1 => (b, a, "SIP/2.0 100 Trying"),
            2 => (b, a, "SIP/2.0 200 OK"),
            _ => (a, b, "ACK sip:101@10.0.0.5 SIP/2.0"),
        };
        let text = format!(
            "{first}\r\nVia: SIP/2.0/UDP {src};branch=z9hG4bK{k}\r\nCall-ID: one-hour@pbx\r\n\
             CSeq: {} {}\r\nContent-Length: 0\r\n\r\n",
            k / 4 + 1,
            if k % 4 == 3 { "ACK" } else { "INVITE" }
        );
        trace.push(TracedMessage {
            time: Timestamp::from_nanos((start + k * 18) * 1_000_000_000),
            src,
            dst,
            transport: Transport::Udp,
            text: text.into_bytes().into(),
        });
    }
    store
        .put_sip_messages(&[("c-one-hour".into(), trace)])
        .expect("the messages");
    record
}

fn live_calls() -> Vec<CallInProgress> {
    (0..LIVE_CALLS as u64)
        .map(|i| {
            let r = calls::synthetic(i, BASE);
            CallInProgress {
                id: r.id,
                stage: if i % 5 == 0 {
                    Stage::Ringing
                } else {
                    Stage::Talking
                },
                direction: Direction::Incoming,
                operator: r.operator,
                client_number: r.client_number,
                from: "+15551234567".into(),
                to: "101".into(),
                invite_ns: 0,
                answer_ns: Some(0),
                elapsed_secs: i * 7,
                codecs: vec!["PCMA".into()],
                caller_packets: i * 50,
                callee_packets: i * 49,
                loss_percent: Some(0.1),
            }
        })
        .collect()
}

fn config() -> Config {
    let hash = calltap::ui::hash_password(PASSWORD).expect("a hash");
    Config::from_toml(
        &format!(
            "[api]\nsecret_keys = [\"bench-key-0123456789\"]\nlink_keys = [\"bench-link-key-0123\"]\n\
             [api.rate_limit]\nper_source = 0\nper_key = 0\n[ui]\npassword_hash = \"{hash}\"\n"
        ),
        "benches/ui.rs",
    )
    .expect("the bench configuration")
}

/// The `name=value` of the answer's cookie.
fn cookie_of(response: &reqwest::Response) -> String {
    let set = response.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

/// CPU seconds this process has used.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    s(usage.ru_utime) + s(usage.ru_stime)
}

/// `Engine::calls_in_progress` with 500 calls talking: the capture thread's cost of
/// publishing them once a second (median of 20).
fn listing_cost(dir: &std::path::Path) {
    use calltap::capture::file::CaptureReader;
    let capture = dir.join("live.pcap");
    calltap::pcapgen::load::LoadSpec::concurrent(LIVE_CALLS, 10)
        .write_pcap(&capture)
        .expect("the capture");
    let config = Config::default();
    let recordings = dir.join("live-recordings");
    std::fs::create_dir_all(&recordings).expect("a folder");
    let mut engine = calltap::engine::Engine::with_recordings(&config, recordings);
    let bytes = std::fs::read(&capture).expect("the capture");
    let mut reader = CaptureReader::new("live.pcap", &bytes[..]).expect("a pcap");
    let mut frames = 0u64;
    let mut until = None;
    while let Some(Ok(frame)) = reader.next_frame() {
        let midway = *until.get_or_insert(frame.time.saturating_add(Duration::from_secs(5)));
        if frame.time > midway {
            break;
        }
        engine.frame(&frame);
        frames += 1;
        while engine.poll().is_some() {}
    }
    let mut times = Vec::new();
    let mut listed = 0;
    for _ in 0..20 {
        let t = Instant::now();
        listed = engine.calls_in_progress().len();
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "Engine::calls_in_progress, {listed} calls up ({frames} frames in): median {:.2} ms, \
         max {:.2} ms (once a second on the capture thread)",
        ms(times[10]),
        ms(times[19])
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = env_u64("CALLTAP_BENCH_CALLS", 1_000_000);
    let dir = tempfile::tempdir().expect("a temporary folder");
    listing_cost(dir.path());
    let fill = Instant::now();
    {
        let store = Store::open(dir.path()).expect("the store opens");
        calls::fill(&store, n);
        let hour = hour_call(&store, BASE + 50 * DAY + 7);
        store.put_calls(&[hour]).expect("stored");
    }
    println!(
        "ui bench: {n} calls over {DAYS} days, filled in {:.1} s",
        fill.elapsed().as_secs_f64()
    );

    let store = Arc::new(Store::open(dir.path()).expect("the store reopens"));
    let base = calls::serve(
        store,
        |_| config(),
        |state| {
            let live = Arc::new(live_calls());
            state.set_in_progress_source(Arc::new(move || live.clone()));
        },
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        // Log in as a browser does: the form, its token cookie, the post.
        let form = client.get(format!("{base}/ui/login")).send().await.unwrap();
        let login_cookie = cookie_of(&form);
        let text = form.text().await.unwrap();
        let csrf = text
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned();
        let done = client
            .post(format!("{base}/ui/login"))
            .header("Cookie", login_cookie)
            .form(&[("csrf", csrf.as_str()), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), 303, "logged in");
        let session = cookie_of(&done);

        let deep_cursor = format!("{}_c", BASE + 50 * DAY);
        let pages = [
            ("History, first page", "/ui/history".to_owned()),
            (
                "History, a page 500,000 calls back",
                format!("/ui/history?before={deep_cursor}"),
            ),
            (
                "History, incoming from one operator",
                "/ui/history?direction=incoming&operator=op-120".to_owned(),
            ),
            (
                "History, a number no call has (scan bound)",
                "/ui/history?number=%2B4499".to_owned(),
            ),
            (
                "Call page, one-hour call",
                "/ui/calls/c-one-hour".to_owned(),
            ),
            (
                "its waveform (115 MB WAV)",
                "/ui/calls/c-one-hour/waveform.svg".to_owned(),
            ),
            (
                "its pcap (200 messages)",
                "/ui/calls/c-one-hour/sip.pcap".to_owned(),
            ),
            ("Status", "/ui/status".to_owned()),
            ("Live, 500 calls", "/ui/live".to_owned()),
        ];
        for (label, path) in pages {
            let mut times = Vec::with_capacity(RUNS);
            let mut size = 0;
            for _ in 0..RUNS {
                let t = Instant::now();
                let r = client
                    .get(format!("{base}{path}"))
                    .header("Cookie", &session)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{path}");
                size = r.bytes().await.unwrap().len();
                times.push(t.elapsed());
            }
            let first = times[0];
            times.sort();
            println!(
                "{label}: first {:.1} ms, median {:.1} ms, max {:.1} ms ({} KB)",
                ms(first),
                ms(times[RUNS / 2]),
                ms(times[RUNS - 1]),
                size / 1000
            );
        }

        // The Live stream: 10 clients for 10 s, each receiving an event a second.
        let streams = 10;
        let secs = 10;
        let cpu = cpu_secs();
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..streams {
            let client = client.clone();
            let url = format!("{base}/ui/live/events");
            let session = session.clone();
            tasks.push(tokio::spawn(async move {
                let mut r = client
                    .get(url)
                    .header("Cookie", session)
                    .send()
                    .await
                    .unwrap();
                let (mut events, mut bytes) = (0u64, 0usize);
                let until = Instant::now() + Duration::from_secs(secs);
                while Instant::now() < until {
                    match tokio::time::timeout_at(until.into(), r.chunk()).await {
                        Ok(Ok(Some(chunk))) => {
                            bytes += chunk.len();
                            events +=
                                chunk.windows(12).filter(|w| w == b"event: calls").count() as u64;
                        }
                        _ => break,
                    }
                }
                (events, bytes)
            }));
        }
        let (mut events, mut bytes) = (0, 0);
        for t in tasks {
            let (e, b) = t.await.unwrap();
            events += e;
            bytes += b;
        }
        let cpu = cpu_secs() - cpu;
        println!(
            "Live stream, {LIVE_CALLS} calls up, {streams} clients for {secs} s: {events} events, \
             {:.0} KB each, {:.2} ms CPU per event (server and client, this process), \
             {:.1} % of one core",
            bytes as f64 / events.max(1) as f64 / 1000.0,
            cpu * 1e3 / events.max(1) as f64,
            cpu * 100.0 / started.elapsed().as_secs_f64()
        );
    });
}
