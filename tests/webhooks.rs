//! Webhooks as a receiver meets them: a local receiver on 127.0.0.1 checks every
//! signature (both dialects) and header, counts duplicates, and injects the faults a
//! real endpoint has (down, slow, 500, 429 with Retry-After, 410, a redirect, an
//! untrusted certificate, a name that does not resolve). Then the real binary: a
//! replay with --webhooks delivered by `calltap serve` in each call's order, the API
//! and metrics around it, a SIGKILL in the middle of a retry series, `calltap run`
//! delivering call.ended within 2 s of the BYE, and `calltap webhooks test`.

#[path = "support/certs.rs"]
mod certs;
#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/readme.rs"]
mod readme;
#[path = "support/skip.rs"]
mod skip;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use calltap::config::Config;
use calltap::engine::{Engine, EngineEvent};
use calltap::events::deliver::Deliveries;
use calltap::events::Event;
use calltap::replay::replay_bytes;
use calltap::store::Store;
use daemon::{free_port, write_config, Serve};
use hmac::{Hmac, Mac};
use readme::readme_block;
use serde_json::Value;
use sha2::Sha256;

const OFFICE_DAY: &[u8] = include_bytes!("../pcaps/office-day.pcap");
const KEY: &str = "webhook-test-api-key";

// ---------------------------------------------------------------------------------
// The receiver

/// What the receiver does with one request.
#[derive(Clone, Debug)]
enum Behave {
    Ok,
    Status(u16),
    /// 429 (or another status) with this Retry-After.
    RetryAfter(u16, String),
    /// 429 with a Retry-After HTTP-date this many seconds after the answer.
    RetryAt(u64),
    /// Answers 200 after this long.
    Slow(Duration),
    /// 301 to this location.
    Redirect(String),
}

#[derive(Clone, Debug)]
struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
    at: Instant,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn event_id(&self) -> &str {
        self.header("x-calltap-delivery")
    }
}

#[derive(Default)]
struct ReceiverState {
    got: Mutex<Vec<Received>>,
    /// Behaviour per request, in turn; then `default`.
    script: Mutex<VecDeque<Behave>>,
    default: Mutex<Option<Behave>>,
    /// Behaviour for a given event type, before the script (for order tests).
    by_event: Mutex<HashMap<String, VecDeque<Behave>>>,
}

#[derive(Clone)]
struct Receiver {
    state: Arc<ReceiverState>,
    addr: SocketAddr,
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let kind = headers.get("x-calltap-event").cloned().unwrap_or_default();
    state.got.lock().unwrap().push(Received {
        headers,
        body: body.to_vec(),
        at: Instant::now(),
    });
    let behave = state
        .by_event
        .lock()
        .unwrap()
        .get_mut(&kind)
        .and_then(VecDeque::pop_front)
        .or_else(|| state.script.lock().unwrap().pop_front())
        .or_else(|| state.default.lock().unwrap().clone())
        .unwrap_or(Behave::Ok);
    match behave {
        Behave::Ok => (StatusCode::OK, "thanks").into_response(),
        Behave::Status(code) => (StatusCode::from_u16(code).unwrap(), "no").into_response(),
        Behave::RetryAfter(code, after) => (
            StatusCode::from_u16(code).unwrap(),
            [("retry-after", after)],
            "slow down",
        )
            .into_response(),
        Behave::RetryAt(secs) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(
                "retry-after",
                httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(secs)),
            )],
            "slow down",
        )
            .into_response(),
        Behave::Slow(d) => {
            tokio::time::sleep(d).await;
            (StatusCode::OK, "late").into_response()
        }
        Behave::Redirect(to) => {
            (StatusCode::MOVED_PERMANENTLY, [("location", to)], "moved").into_response()
        }
    }
}

impl Receiver {
    fn router(state: Arc<ReceiverState>) -> Router {
        Router::new()
            .fallback(axum::routing::any(receive))
            .with_state(state)
    }

    /// A plain-HTTP receiver on `addr` (port 0 for any).
    async fn start_on(addr: &str) -> Receiver {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ReceiverState::default());
        let app = Self::router(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { state, addr }
    }

    async fn start() -> Receiver {
        Self::start_on("127.0.0.1:0").await
    }

    /// An HTTPS receiver with this certificate and key (PEM).
    async fn start_tls(cert: &str, key: &str) -> Receiver {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ReceiverState::default());
        let app = Self::router(state.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    // A client that refuses the certificate ends the handshake: fine.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        tower::ServiceExt::oneshot(app.clone(), req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Receiver { state, addr }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn got(&self) -> Vec<Received> {
        self.state.got.lock().unwrap().clone()
    }

    fn script(&self, behaviours: &[Behave]) {
        self.state
            .script
            .lock()
            .unwrap()
            .extend(behaviours.iter().cloned());
    }

    fn always(&self, behave: Behave) {
        *self.state.default.lock().unwrap() = Some(behave);
    }

    fn for_event(&self, kind: &str, behaviours: &[Behave]) {
        self.state
            .by_event
            .lock()
            .unwrap()
            .entry(kind.to_owned())
            .or_default()
            .extend(behaviours.iter().cloned());
    }

    /// Waits until `enough` holds of what was received, or panics after `within`.
    async fn wait_for(&self, within: Duration, what: &str, enough: impl Fn(&[Received]) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            if enough(&self.got()) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{what}: not within {within:?}; received {} requests",
                    self.got().len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Distinct event ids received.
    fn distinct(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.got().iter().map(|r| r.event_id().to_owned()).collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// Checks the signature independently of calltap: HMAC-SHA256 with `secret` over
/// `timestamp.body` (timestamped) or the body, hex, after `prefix`.
fn signature_ok(r: &Received, secret: &str, header: &str, prefix: &str, timestamped: bool) -> bool {
    let Some(hex_sig) = r.header(header).strip_prefix(prefix) else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    if timestamped {
        mac.update(r.header("x-calltap-timestamp").as_bytes());
        mac.update(b".");
    }
    mac.update(&r.body);
    mac.verify_slice(&sig).is_ok()
}

// ---------------------------------------------------------------------------------
// Library-level set-up: a store with the office morning's events in its outbox

/// The office morning's call events, as the engine makes them.
fn office_events(config: &Config) -> Vec<Event> {
    let mut engine = Engine::new(config);
    engine.emit_call_events(config);
    replay_bytes("office-day.pcap", OFFICE_DAY, &mut engine);
    engine.shutdown();
    let mut events = Vec::new();
    while let Some(e) = engine.poll() {
        if let EngineEvent::CallEvent(e) = e {
            events.push(*e);
        }
    }
    events
}

fn config(toml: &str) -> Config {
    Config::from_toml(toml, "calltap.toml").unwrap_or_else(|e| panic!("{e}"))
}

/// An endpoint block with quick retries, for tests.
fn hook(name: &str, url: &str, extra: &str) -> String {
    let mut text =
        format!("[[webhooks]]\nname = \"{name}\"\nurl = \"{url}\"\nsecret = \"s3cret-{name}\"\n");
    for quick in [
        "retry_first_ms = 50",
        "retry_max_secs = 1",
        "timeout_secs = 2",
    ] {
        let key = quick.split(' ').next().unwrap_or_default();
        if !extra.lines().any(|l| l.starts_with(key)) {
            text.push_str(quick);
            text.push('\n');
        }
    }
    format!("{text}{extra}\n")
}

struct Bench {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    events: Vec<Event>,
}

fn bench_with(events: Vec<Event>) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    store.enqueue_events(&events).unwrap();
    Bench {
        _dir: dir,
        store,
        events,
    }
}

fn bench() -> Bench {
    bench_with(office_events(&Config::default()))
}

fn attempts_of(store: &Store) -> Vec<calltap::store::deliveries::Attempt> {
    store.attempts(10_000).unwrap()
}

/// Each call's event types in the order received (first receipt of each event).
fn sequences(got: &[Received]) -> BTreeMap<String, Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in got {
        if !seen.insert(r.event_id().to_owned()) {
            continue;
        }
        let body = r.json();
        out.entry(body["callId"].as_str().unwrap_or("").to_owned())
            .or_default()
            .push(body["type"].as_str().unwrap_or("").to_owned());
    }
    out
}

fn expected_sequences(events: &[Event]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in events {
        out.entry(e.call_id.clone())
            .or_default()
            .push(e.kind.as_str().to_owned());
    }
    out
}

// ---------------------------------------------------------------------------------
// Signatures, headers, order, duplicates

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_delivery_is_signed_in_its_dialect_once_and_in_call_order() {
    let b = bench();
    let plain = Receiver::start().await;
    let github = Receiver::start().await;
    let cfg = config(&format!(
        "{}{}",
        hook("plain", &plain.url(), ""),
        hook(
            "github",
            &github.url(),
            "signature = \"body\"\nsignature_header = \"X-Hub-Signature-256\"\nsignature_prefix = \"\"",
        )
    ));
    let deliveries = Deliveries::start(&cfg, b.store.clone(), None).unwrap();
    let n = b.events.len();
    assert!(n >= 15, "the office morning gives {n} events");
    for r in [&plain, &github] {
        r.wait_for(Duration::from_secs(10), "every event", |g| g.len() >= n)
            .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    deliveries.stop().await;

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (r, secret, header, prefix, timestamped) in [
        (
            &plain,
            "s3cret-plain",
            "x-calltap-signature",
            "sha256=",
            true,
        ),
        (&github, "s3cret-github", "x-hub-signature-256", "", false),
    ] {
        let got = r.got();
        assert_eq!(got.len(), n, "each event once, no duplicates");
        assert_eq!(r.distinct().len(), n);
        for d in &got {
            assert!(
                signature_ok(d, secret, header, prefix, timestamped),
                "signature of {}",
                d.event_id()
            );
            // The other dialect's recipe does not verify: the dialects differ.
            assert!(!signature_ok(d, secret, header, prefix, !timestamped));
            assert!(!signature_ok(d, "wrong", header, prefix, timestamped));
            assert_eq!(d.header("content-type"), "application/json");
            let body = d.json();
            assert_eq!(d.header("x-calltap-event"), body["type"]);
            assert_eq!(d.header("x-calltap-delivery"), body["id"]);
            let ts: u64 = d.header("x-calltap-timestamp").parse().unwrap();
            assert!(ts.abs_diff(now) < 60, "timestamp {ts} is now");
        }
        assert_eq!(sequences(&got), expected_sequences(&b.events));
        // The body is the event as stored.
        let first = b.events.iter().find(|e| e.id == got[0].event_id()).unwrap();
        assert_eq!(got[0].json(), serde_json::to_value(first).unwrap());
    }
    let log = attempts_of(&b.store);
    assert_eq!(
        log.iter().filter(|a| a.outcome == "delivered").count(),
        2 * n
    );
    assert!(b.store.all_pending(10).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_event_of_a_call_waits_while_an_earlier_one_retries() {
    let b = bench();
    let r = Receiver::start().await;
    // Every call.answered fails twice: its call.ended must wait for it.
    r.for_event("call.answered", &[Behave::Status(503), Behave::Status(503)]);
    let cfg = config(&hook(
        "crm",
        &r.url(),
        "retry_first_ms = 300\npause_after_failures = 100",
    ));
    let deliveries = Deliveries::start(&cfg, b.store.clone(), None).unwrap();
    let n = b.events.len();
    r.wait_for(Duration::from_secs(10), "every event", |g| {
        let ids: std::collections::HashSet<&str> = g.iter().map(Received::event_id).collect();
        ids.len() >= n
    })
    .await;
    deliveries.stop().await;
    let got = r.got();
    assert_eq!(sequences(&got), expected_sequences(&b.events));
    for e in b.events.iter().filter(|e| e.kind.as_str() == "call.ended") {
        let answered_ok = got
            .iter()
            .rposition(|g| {
                g.json()["callId"] == e.call_id.as_str()
                    && g.header("x-calltap-event") == "call.answered"
            })
            .expect("answered");
        let ended = got
            .iter()
            .position(|g| g.event_id() == e.id)
            .expect("ended");
        assert!(
            ended > answered_ok,
            "{}: call.ended after the answered that succeeded",
            e.call_id
        );
    }
    // Meanwhile other calls went on: a missed call's events arrived before the first
    // answered call's answered event succeeded.
    let missed = got
        .iter()
        .position(|g| g.header("x-calltap-event") == "call.missed")
        .expect("missed");
    let last_answered_ok = got
        .iter()
        .rposition(|g| g.header("x-calltap-event") == "call.answered")
        .unwrap();
    assert!(missed < last_answered_ok, "other calls are not held up");
}

// ---------------------------------------------------------------------------------
// Faults

/// One event, to a receiver scripted with `faults`; answers the receiver and the store
/// once the log says `done`.
async fn one_event_through(
    url: &str,
    extra: &str,
    setup: impl FnOnce(&Config),
    done: impl Fn(&[calltap::store::deliveries::Attempt]) -> bool,
) -> Bench {
    let events = office_events(&Config::default());
    let b = bench_with(events.into_iter().take(1).collect());
    let cfg = config(&hook("crm", url, extra));
    setup(&cfg);
    let deliveries = Deliveries::start(&cfg, b.store.clone(), None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done(&attempts_of(&b.store)) {
        assert!(
            Instant::now() < deadline,
            "log: {:#?}",
            attempts_of(&b.store)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    deliveries.stop().await;
    b
}

fn delivered(log: &[calltap::store::deliveries::Attempt]) -> bool {
    log.iter().any(|a| a.outcome == "delivered")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_is_retried_until_delivered() {
    let r = Receiver::start().await;
    r.script(&[Behave::Status(500), Behave::Status(502)]);
    let b = one_event_through(&r.url(), "", |_| {}, delivered).await;
    let log = attempts_of(&b.store);
    let outcomes: Vec<(u32, Option<u16>, &str)> = log
        .iter()
        .rev()
        .map(|a| (a.attempt, a.status, a.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            (1, Some(500), "retrying"),
            (2, Some(502), "retrying"),
            (3, Some(200), "delivered")
        ]
    );
    assert_eq!(r.distinct().len(), 1);
    assert_eq!(r.got().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_waits_for_its_retry_after_in_seconds_or_as_a_date() {
    for (after, behave) in [
        ("seconds", Behave::RetryAfter(429, "2".into())),
        ("date", Behave::RetryAt(3)),
    ] {
        let r = Receiver::start().await;
        r.script(&[behave]);
        let b = one_event_through(&r.url(), "retry_max_secs = 10", |_| {}, delivered).await;
        let got = r.got();
        assert_eq!(got.len(), 2);
        let waited = got[1].at - got[0].at;
        // retry_first_ms is 50: only Retry-After explains the wait. (An HTTP-date has
        // whole seconds, so it may be up to a second nearer.)
        assert!(
            waited >= Duration::from_millis(1_900),
            "{after}: waited {waited:?}"
        );
        assert!(
            waited < Duration::from_secs(5),
            "{after}: waited {waited:?}"
        );
        let log = attempts_of(&b.store);
        assert!(log.iter().any(|a| a.status == Some(429)
            && a.error
                .as_deref()
                .is_some_and(|e| e.contains("Retry-After"))));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_is_not_retried_and_becomes_a_dead_letter() {
    let r = Receiver::start().await;
    r.always(Behave::Status(410));
    let b = one_event_through(
        &r.url(),
        "",
        |_| {},
        |log| log.iter().any(|a| a.outcome == "dead"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.got().len(), 1, "one attempt only");
    let dead = b.store.dead_letters(10).unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].reason.contains("HTTP 410"), "{}", dead[0].reason);
    assert_eq!(dead[0].event.id, b.events[0].id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_not_followed() {
    let target = Receiver::start().await;
    let r = Receiver::start().await;
    r.always(Behave::Redirect(target.url()));
    let b = one_event_through(
        &r.url(),
        "",
        |_| {},
        |log| log.iter().any(|a| a.outcome == "dead"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(r.got().len(), 1);
    assert!(
        target.got().is_empty(),
        "the redirect target is never asked"
    );
    let dead = b.store.dead_letters(10).unwrap();
    assert!(
        dead[0].reason.contains("301 redirect") && dead[0].reason.contains("not followed"),
        "{}",
        dead[0].reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_times_out_and_the_event_is_sent_again() {
    let r = Receiver::start().await;
    r.script(&[Behave::Slow(Duration::from_secs(3))]);
    let b = one_event_through(&r.url(), "timeout_secs = 1", |_| {}, delivered).await;
    let log = attempts_of(&b.store);
    let first = log.last().unwrap();
    assert_eq!(first.outcome, "retrying");
    assert!(
        first.error.as_deref().unwrap().starts_with("timeout"),
        "{first:?}"
    );
    assert!(
        first.latency_ms >= 900 && first.latency_ms < 2_500,
        "{first:?}"
    );
    // The receiver saw it twice, under one delivery id: it deduplicates on it.
    assert_eq!(r.got().len(), 2);
    assert_eq!(r.distinct().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_does_not_resolve_is_retried_and_says_why() {
    let b = one_event_through(
        "http://calltap-webhook-test.invalid/hook",
        "max_attempts = 3",
        |_| {},
        |log| log.iter().any(|a| a.outcome == "dead"),
    )
    .await;
    let log = attempts_of(&b.store);
    assert_eq!(log.len(), 3, "retried up to max_attempts: {log:#?}");
    assert!(log.iter().all(|a| a.status.is_none()));
    let why = log[0].error.as_deref().unwrap();
    assert!(why.starts_with("name not resolved"), "{why}");
    let dead = b.store.dead_letters(10).unwrap();
    assert!(
        dead[0].reason.contains("given up after 3 attempts"),
        "{}",
        dead[0].reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_a_tls_error_and_a_trusted_one_delivers() {
    let ca = certs::TestCa::new("webhook test CA");
    let (cert, key) = ca.server_cert(&["127.0.0.1", "localhost"]);
    let r = Receiver::start_tls(&cert, &key).await;
    let url = format!("https://localhost:{}/hook", r.addr.port());
    // Not trusted: the system's CA store does not know the test CA.
    let b = one_event_through(
        &url,
        "max_attempts = 2",
        |_| {},
        |log| log.iter().any(|a| a.outcome == "dead"),
    )
    .await;
    let log = attempts_of(&b.store);
    let why = log[0].error.as_deref().unwrap();
    assert!(
        why.starts_with("TLS:") && why.contains("certificate"),
        "{why}"
    );
    assert!(r.got().is_empty(), "nothing reached the receiver");
    // Trusted through ca_file: delivered over TLS, signature and all.
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write(dir.path());
    one_event_through(
        &url,
        &format!("ca_file = \"{}\"", ca_file.display()),
        |_| {},
        delivered,
    )
    .await;
    let got = r.got();
    assert_eq!(got.len(), 1);
    assert!(signature_ok(
        &got[0],
        "s3cret-crm",
        "x-calltap-signature",
        "sha256=",
        true
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_down_then_up_gets_everything_after_a_pause_of_probes() {
    let b = bench();
    // A port nobody listens on yet.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let cfg = config(&hook(
        "crm",
        &format!("http://{addr}/hook"),
        "pause_after_failures = 3\nretry_max_secs = 1",
    ));
    let deliveries = Deliveries::start(&cfg, b.store.clone(), None).unwrap();
    let metrics = deliveries.metrics();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let log = attempts_of(&b.store);
    assert!(log.iter().all(|a| a.outcome == "retrying"), "{log:#?}");
    assert!(
        log[0].error.as_deref().unwrap().starts_with("connection"),
        "{:?}",
        log[0]
    );
    let paused = metrics.endpoint("crm").unwrap();
    assert!(
        paused.paused.load(std::sync::atomic::Ordering::Relaxed),
        "paused while down"
    );
    // Paused: probes one at a time, about a second apart (retry_max_secs), not every
    // event every 50 ms.
    assert!(log.len() < 12, "{} attempts in 2.5 s: hammering", log.len());
    let r = Receiver::start_on(&addr.to_string()).await;
    let n = b.events.len();
    r.wait_for(
        Duration::from_secs(10),
        "every event after the endpoint came back",
        |g| {
            let ids: std::collections::HashSet<&str> = g.iter().map(Received::event_id).collect();
            ids.len() >= n
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!paused.paused.load(std::sync::atomic::Ordering::Relaxed));
    assert_eq!(sequences(&r.got()), expected_sequences(&b.events));
    let mut text = String::new();
    metrics.write_prometheus(&mut text);
    assert!(
        text.contains(&format!(
            "calltap_webhook_sent_total{{endpoint=\"crm\"}} {n}"
        )),
        "{text}"
    );
    deliveries.stop().await;
}

// ---------------------------------------------------------------------------------
// Filters and templates

const QUEUE_PROPERTY: &str = "[[properties]]\nkey = \"Queue\"\ntype = \"string\"\nsource = \"header\"\nheader = \"X-Queue\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_and_templates_select_and_shape_exactly() {
    let props = config(QUEUE_PROPERTY);
    let b = bench_with(office_events(&props));
    let ended = Receiver::start().await;
    let queue = Receiver::start().await;
    let chat = Receiver::start().await;
    let cfg = config(&format!(
        "{QUEUE_PROPERTY}{}{}{}",
        hook(
            "ended",
            &ended.url(),
            "events = [\"call.ended\"]\ndirections = [\"outgoing\"]\nmin_talk_seconds = 1"
        ),
        hook(
            "queue",
            &queue.url(),
            "properties = { Queue = [\"support\"] }"
        ),
        hook(
            "chat",
            &chat.url(),
            "events = [\"call.missed\", \"call.busy\"]\ncontent_type = \"text/plain\"\n\
             template = '{{ type }} from {{ data.clientNumber }} at {{ occurredAt }}'"
        ),
    ));
    let deliveries = Deliveries::start(&cfg, b.store.clone(), None).unwrap();
    // What each should get, worked out from the events themselves.
    let want_ended: Vec<&Event> = b
        .events
        .iter()
        .filter(|e| e.kind.as_str() == "call.ended" && e.data["direction"] == "outgoing")
        .collect();
    let want_queue: Vec<&Event> = b
        .events
        .iter()
        .filter(|e| e.data["properties"]["Queue"] == "support")
        .collect();
    let want_chat: Vec<&Event> = b
        .events
        .iter()
        .filter(|e| matches!(e.kind.as_str(), "call.missed" | "call.busy"))
        .collect();
    assert!(!want_ended.is_empty() && !want_queue.is_empty() && want_chat.len() == 2);
    assert!(want_queue.len() < b.events.len() && want_ended.len() < 5);
    for (r, want) in [
        (&ended, &want_ended),
        (&queue, &want_queue),
        (&chat, &want_chat),
    ] {
        r.wait_for(Duration::from_secs(10), "the selected events", |g| {
            g.len() >= want.len()
        })
        .await;
    }
    // Give anything unwanted the time to arrive, then compare exactly.
    tokio::time::sleep(Duration::from_millis(500)).await;
    deliveries.stop().await;
    for (r, want) in [
        (&ended, &want_ended),
        (&queue, &want_queue),
        (&chat, &want_chat),
    ] {
        let mut got: Vec<String> = r.got().iter().map(|g| g.event_id().to_owned()).collect();
        let mut want: Vec<String> = want.iter().map(|e| e.id.clone()).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want);
    }
    for g in chat.got() {
        let e = want_chat.iter().find(|e| e.id == g.event_id()).unwrap();
        let text = String::from_utf8(g.body.clone()).unwrap();
        assert_eq!(
            text,
            format!(
                "{} from {} at {}",
                e.kind.as_str(),
                e.data["clientNumber"].as_str().unwrap(),
                e.occurred_at_rfc3339()
            )
        );
        assert_eq!(g.header("content-type"), "text/plain");
        // The signature covers the templated body.
        assert!(signature_ok(
            &g,
            "s3cret-chat",
            "x-calltap-signature",
            "sha256=",
            true
        ));
    }
}

#[test]
fn a_template_naming_a_missing_field_is_refused_with_its_line() {
    let text = "[[webhooks]]\nname = \"chat\"\nurl = \"http://127.0.0.1:9/\"\n\
                template = '{\"text\": \"{{ data.clientNumber }}\"}'\n\
                [[webhooks]]\nname = \"bad\"\nurl = \"http://127.0.0.1:9/\"\n\
                events = [\"call.ended\"]\n\
                template = '''\n{\"who\": \"{{ data.operatorName }}\",\n \"x\": \"{{ data.noSuchField }}\"}'''\n";
    let cfg = config(text);
    let err = calltap::events::deliver::check_templates(&cfg).unwrap_err();
    assert!(err.starts_with("calltap.toml line 9:"), "{err}");
    assert!(
        err.contains("\"bad\"") && err.contains("call.ended"),
        "{err}"
    );
    assert!(
        err.contains("template line 2") && err.contains("noSuchField"),
        "{err}"
    );
    // A syntax error is refused by the configuration itself, on the template's line.
    let broken =
        "[[webhooks]]\nname = \"x\"\nurl = \"http://127.0.0.1:9/\"\ntemplate = '{{ data.id '\n";
    let err = Config::from_toml(broken, "calltap.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("calltap.toml line 4:") && err.contains("template"),
        "{err}"
    );
    // A field only some events have, guarded, passes.
    let guarded = "[[webhooks]]\nname = \"x\"\nurl = \"http://127.0.0.1:9/\"\n\
                   template = '{{ data.duration|default(0) }} {% if data.whoHungUp is defined %}{{ data.whoHungUp }}{% endif %}'\n";
    calltap::events::deliver::check_templates(&config(guarded)).unwrap();
}

#[test]
fn webhook_settings_are_checked_with_their_line() {
    let cases: [(&str, usize, &str); 7] = [
        ("[[webhooks]]\nname = \"a b\"\nurl = \"http://x/\"\n", 2, "name"),
        ("[[webhooks]]\nname = \"a\"\nurl = \"ftp://x/\"\n", 3, "url"),
        ("[[webhooks]]\nname = \"a\"\nurl = \"http://x/\"\nevents = [\"call.nope\"]\n", 4, "events"),
        ("[[webhooks]]\nname = \"a\"\nurl = \"http://x/\"\ndirections = [\"inbound\"]\n", 4, "directions"),
        ("[[webhooks]]\nname = \"a\"\nurl = \"http://x/\"\nproperties = { Nope = 1 }\n", 4, "properties"),
        ("[[webhooks]]\nname = \"a\"\nurl = \"http://x/\"\nsignature = \"rsa\"\n", 4, "signature"),
        ("[[webhooks]]\nname = \"a\"\nurl = \"http://x/\"\n[webhooks.headers]\nX-Calltap-Event = \"x\"\n", 5, "headers"),
    ];
    for (text, line, key) in cases {
        let err = Config::from_toml(text, "calltap.toml").unwrap_err();
        let shown = err.to_string();
        assert_eq!(err.line(), Some(line), "{shown}");
        assert!(shown.contains(key), "{shown}");
    }
    let twice = "[[webhooks]]\nname = \"a\"\nurl = \"http://x/\"\n[[webhooks]]\nname = \"a\"\nurl = \"http://y/\"\n";
    assert_eq!(Config::from_toml(twice, "c").unwrap_err().line(), Some(5));
}

// ---------------------------------------------------------------------------------
// The real binary

fn calltap() -> Command {
    daemon::calltap(KEY)
}

fn replay_with_webhooks(config: &Path, data: &Path) {
    daemon::replay_office_day(KEY, config, data);
}

fn outbox_ids(data: &Path) -> Vec<Event> {
    let store = Store::open(data).unwrap();
    store
        .events_after(0, 100_000)
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_with_webhooks_is_delivered_by_serve_in_each_calls_order() {
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::start().await;
    let data = dir.path().join("data");
    let cfg = write_config(dir.path(), &hook("crm", &r.url(), ""));
    // Without --webhooks a replay enqueues nothing.
    let plain = dir.path().join("plain");
    let out = calltap()
        .args(["replay", "-q", "--config"])
        .arg(&cfg)
        .arg("--data")
        .arg(&plain)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/office-day.pcap"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(outbox_ids(&plain).is_empty());

    replay_with_webhooks(&cfg, &data);
    let events = outbox_ids(&data);
    // replay only enqueues: nothing was sent.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(r.got().is_empty());
    let sequences_in_outbox = expected_sequences(&events);
    let answered = [
        "call.ringing",
        "call.answered",
        "call.ended",
        "recording.ready",
    ];
    let mut shapes: Vec<Vec<&str>> = sequences_in_outbox
        .values()
        .map(|s| s.iter().map(String::as_str).collect())
        .collect();
    shapes.sort();
    let mut want = vec![answered.to_vec(); 5];
    want.push(vec!["call.ringing", "call.busy"]);
    want.push(vec!["call.ringing", "call.missed"]);
    want.sort();
    assert_eq!(shapes, want, "the office morning's calls");

    let serve = Serve::start(KEY, &cfg, &data);
    r.wait_for(Duration::from_secs(15), "every event", |g| {
        g.len() >= events.len()
    })
    .await;
    assert_eq!(sequences(&r.got()), sequences_in_outbox);
    assert_eq!(r.got().len(), events.len(), "no duplicates");

    let http = reqwest::Client::new();
    // recording.ready carries a signed link that works on its own.
    let ready = r
        .got()
        .into_iter()
        .find(|g| g.header("x-calltap-event") == "recording.ready")
        .unwrap()
        .json();
    let url = ready["data"]["recording"]["url"].as_str().expect("a link");
    let wav = http.get(url).send().await.unwrap();
    assert_eq!(wav.status(), 200);
    assert_eq!(wav.headers()["content-type"], "audio/wav");

    // The delivery log, behind the key.
    let list = format!("{}/webhooks/deliveries", serve.base);
    assert_eq!(http.get(&list).send().await.unwrap().status(), 401);
    let body: Value = http
        .get(&list)
        .header("X-Secret-Key", KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let recent = body["recent"].as_array().unwrap();
    assert_eq!(recent.len(), events.len());
    assert!(recent
        .iter()
        .all(|a| a["outcome"] == "delivered" && a["status"] == 200));
    assert_eq!(body["endpoints"][0]["name"], "crm");
    // What /openapi.json promises of an attempt, every attempt has, typed as stated.
    let doc: Value = http
        .get(format!("{}/openapi.json", serve.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let schema = &doc["components"]["schemas"]["WebhookAttempt"];
    for attempt in recent {
        for key in schema["required"].as_array().unwrap() {
            assert!(
                !attempt[key.as_str().unwrap()].is_null(),
                "{key} in {attempt}"
            );
        }
        for (key, value) in attempt.as_object().unwrap() {
            let want = schema["properties"][key]["type"]
                .as_str()
                .expect("documented");
            let fits = match want {
                "integer" => value.is_u64(),
                "string" => value.is_string(),
                other => panic!("{other}"),
            };
            assert!(fits, "{key}: {value} is not {want}");
        }
    }

    // Sent again on request; an unknown id is a 404 in the error shape.
    let id = format!("crm.{}", events[0].id);
    let again = http
        .post(format!("{}/webhooks/deliveries/{id}/retry", serve.base))
        .header("X-Secret-Key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 202);
    r.wait_for(Duration::from_secs(5), "the retried delivery", |g| {
        g.len() > events.len()
    })
    .await;
    assert_eq!(r.got().last().unwrap().event_id(), events[0].id);
    let unknown = http
        .post(format!(
            "{}/webhooks/deliveries/crm.evt_000/retry",
            serve.base
        ))
        .header("X-Secret-Key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let error: Value = unknown.json().await.unwrap();
    assert_eq!(error["status"], "error");

    let metrics = http
        .get(format!("{}/metrics", serve.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "calltap_webhook_sent_total{{endpoint=\"crm\"}} {}",
            events.len() + 1
        )),
        "{metrics}"
    );
    assert!(metrics.contains("calltap_webhook_latency_seconds_count{endpoint=\"crm\"}"));
    serve.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_a_retry_series_then_a_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::start().await;
    r.always(Behave::Status(503));
    let data = dir.path().join("data");
    let cfg = write_config(
        dir.path(),
        &hook(
            "crm",
            &r.url(),
            "retry_first_ms = 200\npause_after_failures = 1000",
        ),
    );
    replay_with_webhooks(&cfg, &data);
    let events = outbox_ids(&data);
    let serve = Serve::start(KEY, &cfg, &data);
    // Every event tried and failing, some more than once: a retry series under way.
    r.wait_for(Duration::from_secs(10), "retries", |g| {
        g.len() >= events.len() + 4
    })
    .await;
    serve.kill();
    let before = r.got().len();
    {
        let store = Store::open(&data).unwrap();
        let pending = store.all_pending(1_000).unwrap();
        assert!(
            !pending.is_empty() && pending.iter().any(|p| p.attempts > 0),
            "retries pending"
        );
    }
    // The receiver recovers; a new start resumes the series.
    *r.state.default.lock().unwrap() = Some(Behave::Ok);
    let serve = Serve::start(KEY, &cfg, &data);
    let want: std::collections::BTreeSet<String> = events.iter().map(|e| e.id.clone()).collect();
    r.wait_for(
        Duration::from_secs(15),
        "every event at least once with a 200",
        |g| {
            let ok: std::collections::BTreeSet<String> = g[before..]
                .iter()
                .map(|x| x.event_id().to_owned())
                .collect();
            want.is_subset(&ok)
        },
    )
    .await;
    serve.stop();
    let store = Store::open(&data).unwrap();
    assert!(store.all_pending(10).unwrap().is_empty());
    assert!(store.dead_letters(10).unwrap().is_empty());
}

/// The records of a pcap file: (header+data) byte ranges after the 24-byte header.
fn pcap_records(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        out.push(&bytes[at..at + 16 + len]);
        at += 16 + len;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_delivers_call_ended_within_2_s_of_the_bye() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("feed.pcap");
    if !Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success())
    {
        skip::skip("mkfifo unavailable: calltap run --pcap-stream test skipped");
        return;
    }
    let r = Receiver::start().await;
    let cfg = write_config(
        dir.path(),
        &hook(
            "crm",
            &r.url(),
            "events = [\"call.answered\", \"call.ended\"]",
        ),
    );
    let port = free_port();
    let mut child = calltap()
        .args(["run", "--config"])
        .arg(&cfg)
        .arg("--data")
        .arg(dir.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--pcap-stream"])
        .arg(&fifo)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let capture =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/call-ethernet.pcap"))
            .unwrap();
    let records = pcap_records(&capture);
    let bye = records
        .iter()
        .position(|r| r.windows(4).any(|w| w == b"BYE "))
        .expect("a BYE");
    let feeder = {
        let fifo = fifo.clone();
        let head = capture[..24].to_vec();
        let before: Vec<u8> = records[..bye].concat();
        let rest: Vec<u8> = records[bye..].concat();
        std::thread::spawn(move || {
            let mut pipe = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            pipe.write_all(&head).unwrap();
            pipe.write_all(&before).unwrap();
            pipe.flush().unwrap();
            std::thread::sleep(Duration::from_millis(1_500));
            let sent = Instant::now();
            pipe.write_all(&rest).unwrap();
            pipe.flush().unwrap();
            // Kept open: the stream goes on, as a live capture does.
            std::thread::sleep(Duration::from_secs(5));
            sent
        })
    };
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || BufReader::new(stdout).lines().for_each(drop));
    r.wait_for(Duration::from_secs(10), "call.ended", |g| {
        g.iter()
            .any(|x| x.header("x-calltap-event") == "call.ended")
    })
    .await;
    let ended_at = r
        .got()
        .iter()
        .find(|x| x.header("x-calltap-event") == "call.ended")
        .unwrap()
        .at;
    let answered = r
        .got()
        .iter()
        .any(|x| x.header("x-calltap-event") == "call.answered");
    let sent = tokio::task::spawn_blocking(move || feeder.join().unwrap())
        .await
        .unwrap();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    assert!(answered, "call.answered went out before the BYE");
    let took = ended_at.saturating_duration_since(sent);
    assert!(
        took < Duration::from_secs(2),
        "call.ended {took:?} after the BYE"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_test_sends_a_signed_sample_and_prints_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let r = Receiver::start().await;
    let cfg = write_config(dir.path(), &hook("crm", &r.url(), ""));
    let out = tokio::task::spawn_blocking({
        let cfg = cfg.clone();
        move || {
            calltap()
                .args(["webhooks", "test", "crm", "--config"])
                .arg(&cfg)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("HTTP 200") && stdout.contains("thanks"),
        "{stdout}"
    );
    let got = r.got();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("x-calltap-event"), "call.ended");
    assert!(signature_ok(
        &got[0],
        "s3cret-crm",
        "x-calltap-signature",
        "sha256=",
        true
    ));

    r.always(Behave::Status(410));
    let out = tokio::task::spawn_blocking(move || {
        calltap()
            .args(["webhooks", "test", "crm", "--config"])
            .arg(&cfg)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("HTTP 410") && stdout.contains("not be retried"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_verification_snippets_accept_a_real_delivery_and_refuse_a_forgery() {
    let b = bench_with(
        office_events(&Config::default())
            .into_iter()
            .take(1)
            .collect(),
    );
    let r = Receiver::start().await;
    let deliveries =
        Deliveries::start(&config(&hook("crm", &r.url(), "")), b.store.clone(), None).unwrap();
    r.wait_for(Duration::from_secs(10), "one delivery", |g| !g.is_empty())
        .await;
    deliveries.stop().await;
    let got = &r.got()[0];
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("body"), &got.body).unwrap();
    let mut tampered = got.body.clone();
    tampered.push(b' ');
    std::fs::write(dir.path().join("tampered"), &tampered).unwrap();
    let (ts, sig) = (
        got.header("x-calltap-timestamp"),
        got.header("x-calltap-signature"),
    );

    std::fs::write(
        dir.path().join("verify.py"),
        readme_block("Verifying the signature", "python"),
    )
    .unwrap();
    let python = format!(
        "import sys\nfrom verify import verify\nh = {{'X-Calltap-Timestamp': '{ts}', 'X-Calltap-Signature': '{sig}'}}\n\
         ok = verify(b's3cret-crm', h, open('body', 'rb').read())\n\
         forged = verify(b's3cret-crm', h, open('tampered', 'rb').read())\n\
         wrong = verify(b'other', h, open('body', 'rb').read())\n\
         sys.exit(0 if ok and not forged and not wrong else 1)\n"
    );
    match Command::new("python3")
        .arg("-c")
        .arg(&python)
        .current_dir(dir.path())
        .status()
    {
        Ok(status) => assert!(status.success(), "the README's Python verifier"),
        Err(_) => skip::skip("python3 unavailable: the README's Python verifier not run"),
    }

    std::fs::write(
        dir.path().join("verify.js"),
        readme_block("Verifying the signature", "javascript"),
    )
    .unwrap();
    let node = format!(
        "const {{ verify }} = require('./verify.js'); const fs = require('fs');\n\
         const h = {{ 'x-calltap-timestamp': '{ts}', 'x-calltap-signature': '{sig}' }};\n\
         const ok = verify('s3cret-crm', h, fs.readFileSync('body'));\n\
         const forged = verify('s3cret-crm', h, fs.readFileSync('tampered'));\n\
         const wrong = verify('other', h, fs.readFileSync('body'));\n\
         process.exit(ok && !forged && !wrong ? 0 : 1);\n"
    );
    match Command::new("node")
        .arg("-e")
        .arg(&node)
        .current_dir(dir.path())
        .status()
    {
        Ok(status) => assert!(status.success(), "the README's Node.js verifier"),
        Err(_) => skip::skip("node unavailable: the README's Node.js verifier not run"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_and_header_values_can_come_from_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("secret"),
        "# rotated in March\nfrom-a-file\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("token"), "Bearer tok-123\n").unwrap();
    let r = Receiver::start().await;
    let text = format!(
        "[[webhooks]]\nname = \"crm\"\nurl = \"{}\"\nsecret_file = \"{}\"\n\
         [webhooks.headers]\nauthorization = {{ file = \"{}\" }}\nx-api-key = \"literal-key-9\"\n",
        r.url(),
        dir.path().join("secret").display(),
        dir.path().join("token").display()
    );
    let path = dir.path().join("calltap.toml");
    std::fs::write(&path, &text).unwrap();
    let cfg = Config::load(Some(&path)).unwrap();
    let b = bench_with(
        office_events(&Config::default())
            .into_iter()
            .take(1)
            .collect(),
    );
    let deliveries = Deliveries::start(&cfg, b.store.clone(), None).unwrap();
    r.wait_for(Duration::from_secs(10), "one delivery", |g| !g.is_empty())
        .await;
    deliveries.stop().await;
    let got = &r.got()[0];
    assert_eq!(got.header("authorization"), "Bearer tok-123");
    assert_eq!(got.header("x-api-key"), "literal-key-9");
    assert!(signature_ok(
        got,
        "from-a-file",
        "x-calltap-signature",
        "sha256=",
        true
    ));
    // A header file that is missing is named, with the line of the header.
    std::fs::remove_file(dir.path().join("token")).unwrap();
    let err = Config::load(Some(&path)).unwrap_err().to_string();
    assert!(err.contains("token") && err.contains("line 6"), "{err}");
    // Secrets never show in check-config's summary.
    std::fs::write(dir.path().join("token"), "Bearer tok-123\n").unwrap();
    let shown = format!(
        "{} {:?}",
        Config::load(Some(&path)).unwrap().describe(),
        cfg.webhooks
    );
    for secret in ["from-a-file", "tok-123", "literal-key-9"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}
