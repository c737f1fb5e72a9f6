//! Who reaches the API, against the real server on loopback (127.0.0.1 and 127.0.0.2
//! as two sources): `allow_from` refuses before the key is compared, per-key
//! allow-lists, trusted proxies' forwarded addresses, the ops gate on `/metrics` and
//! `/status`, rate limits per source, per key and for failed keys (429 with
//! Retry-After), and the access log (the key's id, never the key or a link's
//! signature).

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use calltap::api::{self, AppState};
use calltap::config::Config;
use calltap::store::Store;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

#[path = "support/records.rs"]
mod records;

const KEY: &str = "access-test-key-0123456789";
const LINK_KEY: &str = "access-test-link-key-0123";
const OPS_KEY: &str = "access-test-ops-key-0123456789";
const T0: u64 = 1_700_000_000;

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A plain-HTTP server with one recorded call, and `[api]` settings `extra` (which may
/// end with tables such as `[api.rate_limit]`).
async fn start(extra: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = records::store_with_recording(&dir.path().join("store"), T0, 4_000, 250);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let text = format!(
        "[api]\nlisten = \"{addr}\"\nsecret_keys = [\"{KEY}\"]\nlink_keys = [\"{LINK_KEY}\"]\n\
         ops_keys = [\"{OPS_KEY}\"]\n{extra}\n"
    );
    let config = Config::from_toml(&text, "tests/access.rs").unwrap();
    let state = AppState::new(config, store).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(api::serve_on(listener, state, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        stop: Some(stop),
        _dir: dir,
    }
}

/// A client whose connections come from `from` (127.0.0.1 or 127.0.0.2).
fn client(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Asserts `status` and the error shape; answers the message.
    fn error(&self, status: u16) -> String {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        let json = self.json();
        assert_eq!(json["status"], "error", "{json}");
        json["message"].as_str().unwrap().to_owned()
    }
}

async fn get(server: &Server, from: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let url = if path.starts_with("http") {
        path.to_owned()
    } else {
        format!("http://{}{path}", server.addr)
    };
    let mut request = client(from).get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.bytes().await.unwrap().to_vec(),
    }
}

fn key(k: &str) -> [(&str, &str); 1] {
    [("X-Secret-Key", k)]
}

async fn metric(server: &Server, name: &str) -> u64 {
    metric_from(server, "127.0.0.1", name).await
}

async fn metric_from(server: &Server, from: &str, name: &str) -> u64 {
    let text = String::from_utf8(get(server, from, "/metrics", &[]).await.body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} not in\n{text}"))
}

#[tokio::test]
async fn a_source_outside_allow_from_gets_403_before_its_key_is_compared() {
    let server = start("allow_from = [\"127.0.0.1/32\"]\nlinks_from_anywhere = false").await;
    let message = get(&server, "127.0.0.2", "/health", &key(KEY))
        .await
        .error(403);
    assert!(message.contains("127.0.0.2"), "{message}");
    // A wrong key or none at all: still 403, not 401, so nothing was compared.
    get(&server, "127.0.0.2", "/health", &key("wrong"))
        .await
        .error(403);
    get(&server, "127.0.0.2", "/contacts", &[]).await.error(403);
    get(&server, "127.0.0.2", "/openapi.json", &[])
        .await
        .error(403);
    let ok = get(&server, "127.0.0.1", "/health", &key(KEY)).await;
    assert_eq!(ok.status, 200);
    // Links follow allow_from here (links_from_anywhere = false).
    let link = get(&server, "127.0.0.1", "/calls/c-1/recording", &key(KEY))
        .await
        .json();
    let url = link["url"].as_str().unwrap().to_owned();
    get(&server, "127.0.0.2", &url, &[]).await.error(403);
    assert_eq!(get(&server, "127.0.0.1", &url, &[]).await.status, 200);
    assert_eq!(
        metric(&server, "calltap_api_refused_total{rule=\"allow_from\"}").await,
        5
    );

    // By default a link works from anywhere: the importer may download elsewhere.
    let server = start("allow_from = [\"127.0.0.1/32\"]").await;
    let link = get(&server, "127.0.0.1", "/calls/c-1/recording", &key(KEY))
        .await
        .json();
    let url = link["url"].as_str().unwrap();
    let download = get(&server, "127.0.0.2", url, &[]).await;
    assert_eq!(download.status, 200);
    assert_eq!(download.body.len(), 4_000);
    get(&server, "127.0.0.2", "/health", &key(KEY))
        .await
        .error(403);
}

#[tokio::test]
async fn a_key_with_its_own_allow_list_is_taken_only_from_there() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("partner-key");
    let mut f = std::fs::File::create(&key_file).unwrap();
    writeln!(f, "# the partner's key\npartner-key-0123456789").unwrap();
    let server = start(&format!(
        "[[api.keys]]\nkey_file = \"{}\"\nname = \"partner\"\nallow_from = [\"127.0.0.1/32\"]",
        key_file.display()
    ))
    .await;
    assert_eq!(
        get(
            &server,
            "127.0.0.1",
            "/health",
            &key("partner-key-0123456789")
        )
        .await
        .status,
        200
    );
    let message = get(
        &server,
        "127.0.0.2",
        "/health",
        &key("partner-key-0123456789"),
    )
    .await
    .error(403);
    assert!(message.contains("not accepted from 127.0.0.2"), "{message}");
    // secret_keys have no allow-list of their own.
    assert_eq!(
        get(&server, "127.0.0.2", "/health", &key(KEY)).await.status,
        200
    );
    assert_eq!(
        metric(
            &server,
            "calltap_api_refused_total{rule=\"key_allow_from\"}"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn with_only_restricted_keys_other_sources_get_403_before_any_compare() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("k");
    std::fs::write(&key_file, "only-key-0123456789\n").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let text = format!(
        "[api]\nlisten = \"{addr}\"\n[[api.keys]]\nkey_file = \"{}\"\nallow_from = [\"127.0.0.1\"]\n",
        key_file.display()
    );
    let store = Arc::new(Store::open(&dir.path().join("store")).unwrap());
    let state = AppState::new(Config::from_toml(&text, "t").unwrap(), store).unwrap();
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(api::serve_on(listener, state, async {
        let _ = stopped.await;
    }));
    let server = Server {
        addr,
        stop: None,
        _dir: tempfile::tempdir().unwrap(),
    };
    get(&server, "127.0.0.2", "/health", &key("anything"))
        .await
        .error(403);
    get(&server, "127.0.0.1", "/health", &key("anything"))
        .await
        .error(401);
    assert_eq!(
        get(&server, "127.0.0.1", "/health", &key("only-key-0123456789"))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let server =
        start("allow_from = [\"203.0.113.0/24\"]\ntrusted_proxies = [\"127.0.0.1\"]").await;
    let via = |xff: &'static str| [("X-Secret-Key", KEY), ("X-Forwarded-For", xff)];
    assert_eq!(
        get(&server, "127.0.0.1", "/health", &via("203.0.113.5"))
            .await
            .status,
        200
    );
    get(&server, "127.0.0.1", "/health", &via("198.51.100.1"))
        .await
        .error(403);
    // A client writing the header itself from an untrusted address gains nothing.
    get(&server, "127.0.0.2", "/health", &via("203.0.113.5"))
        .await
        .error(403);
    // RFC 7239's header too.
    let forwarded = [
        ("X-Secret-Key", KEY),
        ("Forwarded", "for=\"203.0.113.9:5555\""),
    ];
    assert_eq!(
        get(&server, "127.0.0.1", "/health", &forwarded)
            .await
            .status,
        200
    );
    // A trusted proxy that names no client lends the request no address of its own.
    get(&server, "127.0.0.1", "/health", &key(KEY))
        .await
        .error(403);
}

#[tokio::test]
async fn metrics_and_status_answer_ops_from_or_an_ops_key() {
    // The default (loopback and allow_from) holds all of 127.0.0.0/8.
    let server = start("").await;
    assert_eq!(get(&server, "127.0.0.2", "/metrics", &[]).await.status, 200);
    let server = start("allow_from = [\"127.0.0.2\"]").await;
    get(&server, "127.0.0.1", "/health", &key(KEY))
        .await
        .error(403);
    assert_eq!(get(&server, "127.0.0.1", "/metrics", &[]).await.status, 200);

    // 127.0.0.2 as the outside world.
    let server = start("ops_from = [\"127.0.0.1/32\"]").await;
    assert_eq!(get(&server, "127.0.0.1", "/metrics", &[]).await.status, 200);
    let message = get(&server, "127.0.0.2", "/metrics", &[]).await.error(403);
    assert!(message.contains("ops_from"), "{message}");
    let bearer = format!("Bearer {OPS_KEY}");
    let ops = get(
        &server,
        "127.0.0.2",
        "/metrics",
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!(ops.status, 200);
    assert!(String::from_utf8_lossy(&ops.body).contains("calltap_api_refused_total"));
    // /status: an API key from ops_from, or an ops key from anywhere.
    get(&server, "127.0.0.1", "/status", &[]).await.error(401);
    assert_eq!(
        get(&server, "127.0.0.1", "/status", &key(KEY)).await.status,
        200
    );
    get(&server, "127.0.0.2", "/status", &key(KEY))
        .await
        .error(403);
    assert_eq!(
        get(&server, "127.0.0.2", "/status", &key(OPS_KEY))
            .await
            .status,
        200
    );
    // An ops key is no API key.
    get(&server, "127.0.0.1", "/health", &key(OPS_KEY))
        .await
        .error(401);

    let server = start("ops_from = [\"127.0.0.2\"]").await;
    get(&server, "127.0.0.1", "/metrics", &[]).await.error(403);
    assert_eq!(
        metric_from(
            &server,
            "127.0.0.2",
            "calltap_api_refused_total{rule=\"ops_from\"}"
        )
        .await,
        1
    );
    assert_eq!(get(&server, "127.0.0.2", "/metrics", &[]).await.status, 200);
}

fn retry_after(answer: &Answer) -> u64 {
    answer.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let server = start("[api.rate_limit]\nper_source = 1\nper_source_burst = 5").await;
    for _ in 0..5 {
        assert_eq!(
            get(&server, "127.0.0.1", "/health", &key(KEY)).await.status,
            200
        );
    }
    let over = get(&server, "127.0.0.1", "/health", &key(KEY)).await;
    let message = over.error(429);
    assert!(message.contains("Retry-After"), "{message}");
    assert_eq!(retry_after(&over), 1);
    assert_eq!(
        get(&server, "127.0.0.2", "/health", &key(KEY)).await.status,
        200,
        "another source has its own budget"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        get(&server, "127.0.0.1", "/health", &key(KEY)).await.status,
        200
    );

    // Per key, whatever the source.
    let server = start("[api.rate_limit]\nper_key = 1\nper_key_burst = 3").await;
    for from in ["127.0.0.1", "127.0.0.2", "127.0.0.1"] {
        assert_eq!(get(&server, from, "/health", &key(KEY)).await.status, 200);
    }
    let over = get(&server, "127.0.0.2", "/health", &key(KEY)).await;
    over.error(429);
    assert_eq!(retry_after(&over), 1);
    assert_eq!(
        metric(
            &server,
            "calltap_api_refused_total{rule=\"rate_limit_key\"}"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn failed_keys_are_limited_harder_and_then_no_key_is_compared() {
    let server = start("[api.rate_limit]\nfailed_keys_per_minute = 3").await;
    for _ in 0..3 {
        get(&server, "127.0.0.1", "/health", &key("guess"))
            .await
            .error(401);
    }
    let over = get(&server, "127.0.0.1", "/health", &key("guess")).await;
    over.error(429);
    let wait = retry_after(&over);
    assert!((15..=20).contains(&wait), "{wait}");
    // Blocked: even the right key waits, so a guess cannot be confirmed.
    let blocked = get(&server, "127.0.0.1", "/health", &key(KEY)).await;
    blocked.error(429);
    assert!(retry_after(&blocked) <= wait);
    // Another source is not.
    assert_eq!(
        get(&server, "127.0.0.2", "/health", &key(KEY)).await.status,
        200
    );
    assert_eq!(
        metric(&server, "calltap_api_refused_total{rule=\"failed_keys\"}").await,
        2
    );
}

/// Every log line this test binary's code writes, for the access log test.
fn log_lines() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let writer = log.clone();
        tracing_subscriber::fmt()
            .with_env_filter("calltap::access=info")
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .init();
        log
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_access_log_names_the_key_id_and_never_the_key_or_a_link_signature() {
    let log = log_lines();
    let server = start("").await;
    let ok = get(
        &server,
        "127.0.0.1",
        "/health",
        &[("X-Secret-Key", KEY), ("X-Request-Id", "access-log-1")],
    )
    .await;
    assert_eq!(ok.status, 200);
    get(
        &server,
        "127.0.0.1",
        "/health",
        &[
            ("X-Secret-Key", "wrong-guess-42"),
            ("X-Request-Id", "access-log-2"),
        ],
    )
    .await
    .error(401);
    let link = get(&server, "127.0.0.1", "/calls/c-1/recording", &key(KEY))
        .await
        .json();
    let url = link["url"].as_str().unwrap().to_owned();
    let sig = url
        .split("sig=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let download = get(
        &server,
        "127.0.0.2",
        &url,
        &[("X-Request-Id", "access-log-3")],
    )
    .await;
    assert_eq!(download.status, 200);
    // The line is written when the answer is done; give the server a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = String::from_utf8(log.lock().unwrap().clone()).unwrap();
    let line = |id: &str| {
        text.lines()
            .find(|l| l.contains(&format!("request_id={id}")))
            .unwrap_or_else(|| panic!("no line for {id} in\n{text}"))
            .to_owned()
    };
    let key_id = hex::encode(&Sha256::digest(KEY.as_bytes())[..4]);
    let first = line("access-log-1");
    for field in [
        "source=127.0.0.1",
        &format!("key={key_id}"),
        "method=GET",
        "path=/health",
        "status=200",
        "bytes=20",
        "duration_ms=",
        "proto=HTTP/1.1",
        "tls=false",
    ] {
        assert!(first.contains(field), "{field} missing from {first}");
    }
    let refused = line("access-log-2");
    assert!(
        refused.contains("status=401") && refused.contains("key=-"),
        "{refused}"
    );
    let download = line("access-log-3");
    assert!(download.contains("path=/recordings/c-1.wav"), "{download}");
    assert!(
        download.contains("source=127.0.0.2") && download.contains("bytes=4000"),
        "{download}"
    );
    assert!(!text.contains(KEY), "the key itself is never logged");
    assert!(!text.contains("wrong-guess-42"), "nor a wrong one");
    assert!(
        !text.contains(&sig) && !text.contains("sig="),
        "nor a link signature"
    );
}
