//! The API's connection handling against the real server on loopback, as a hostile or
//! broken client meets it: half-sent and trickled heads, trickled bodies and idle
//! kept-alive connections are closed on their timeouts (1 s and 2 s here, so nothing
//! sleeps long), connections over the caps are refused at once (per source too, from
//! 127.0.0.2), a declared oversized body gets 413 before it is sent, malformed requests
//! get the error shape, Range follows RFC 9110, links are taken only as calltap writes
//! them, and a shutdown lets the request in flight finish.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use calltap::api::{self, AppState};
use calltap::config::Config;
use hmac::{Hmac, Mac};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;

#[path = "support/records.rs"]
mod records;

const KEY: &str = "hardening-key-0123456789";
const LINK_KEY: &str = "hardening-link-key-0123";
const T0: u64 = 1_700_000_000;
/// Longer than any timeout a test waits for, shorter than a hung test.
const PATIENCE: Duration = Duration::from_secs(10);
/// What the machine may add to a timeout (two cores shared with other builds).
const SLACK: Duration = Duration::from_millis(2500);

struct Server {
    addr: SocketAddr,
    state: AppState,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Result<(), api::ApiError>>,
    _dir: tempfile::TempDir,
}

/// A server with one recorded call (`c-1`, a 10,000-byte recording) and `[api]`
/// settings `extra` added to the test's own.
async fn start(extra: &str) -> Server {
    start_with_recording(extra, 10_000).await
}

async fn start_with_recording(extra: &str, wav_len: u32) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = records::store_with_recording(dir.path(), T0, wav_len, 600);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let text = format!(
        "[api]\nlisten = \"{addr}\"\nsecret_keys = [\"{KEY}\"]\nlink_keys = [\"{LINK_KEY}\"]\n\
         max_body_bytes = \"4KiB\"\n{extra}\n"
    );
    let config = Config::from_toml(&text, "tests/http_hardening.rs").unwrap();
    let state = AppState::new(config, store).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(api::serve_on(listener, state.clone(), async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        state,
        stop: Some(stop),
        done,
        _dir: dir,
    }
}

/// Timeouts short enough for tests: heads 1 s, bodies 1 s, idle 2 s (longer than a
/// head, so an idle close is told apart from a head timeout).
const SHORT: &str = "header_timeout_secs = 1\nbody_timeout_secs = 1\nidle_timeout_secs = 2";

/// An HTTP answer read off a raw connection.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts `status` and the contract's error shape; answers the message.
    fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.header("content-type"), Some("application/json"));
        let json: Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"));
        assert_eq!(json["status"], "error", "{json}");
        assert_eq!(json.as_object().unwrap().len(), 2, "{json}");
        let message = json["message"].as_str().unwrap().to_owned();
        assert!(!message.is_empty());
        message
    }
}

/// Reads one answer from `stream` (head, then a `content-length` or chunked body);
/// bytes after it stay in `buf` for the next.
async fn read_answer_buffered(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Raw {
    let (status, headers, head_len) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(n) = response.parse(buf).unwrap() {
            let headers: Vec<(String, String)> = response
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            break (response.code.unwrap(), headers, n);
        }
        assert!(fill(stream, buf).await, "closed before an answer: {buf:?}");
    };
    buf.drain(..head_len);
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if find("transfer-encoding").as_deref() == Some("chunked") {
        loop {
            let line_end = loop {
                if let Some(at) = buf.windows(2).position(|w| w == b"\r\n") {
                    break at;
                }
                assert!(fill(stream, buf).await, "closed inside a chunked body");
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).unwrap(), 16).unwrap();
            while buf.len() < line_end + 2 + size + 2 {
                assert!(fill(stream, buf).await, "closed inside a chunk");
            }
            body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
            buf.drain(..line_end + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
    } else {
        let length: usize = find("content-length").map_or(0, |v| v.parse().unwrap());
        while buf.len() < length {
            assert!(fill(stream, buf).await, "closed inside a body");
        }
        body = buf.drain(..length).collect();
    }
    Raw {
        status,
        headers,
        body,
    }
}

/// Reads more of `stream` into `buf`; false at its end.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    let got = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
        .await
        .expect("the server answers in time")
        .unwrap_or(0);
    buf.extend_from_slice(&chunk[..got]);
    got > 0
}

/// Reads one answer, where nothing may follow it on the connection.
async fn read_answer(stream: &mut TcpStream) -> Raw {
    let mut buf = Vec::new();
    let answer = read_answer_buffered(stream, &mut buf).await;
    assert!(buf.is_empty(), "more than one answer: {buf:?}");
    answer
}

/// Waits for the server to close `stream` (EOF or reset) and answers how long it took
/// and the bytes it sent meanwhile.
async fn closed_after(stream: &mut TcpStream) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut chunk)).await {
            Err(_) => panic!("still open after {PATIENCE:?}; sent {seen:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return (started.elapsed(), seen),
            Ok(Ok(n)) => seen.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn connect(server: &Server) -> TcpStream {
    TcpStream::connect(server.addr).await.unwrap()
}

/// A connection to the server from `source` (another loopback address).
async fn connect_from(server: &Server, source: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(server.addr).await.unwrap()
}

async fn request(server: &Server, text: &[u8]) -> Raw {
    let mut stream = connect(server).await;
    stream.write_all(text).await.unwrap();
    read_answer(&mut stream).await
}

fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: calltap\r\n{extra}\r\n").into_bytes()
}

fn assert_within(took: Duration, limit: Duration, what: &str) {
    assert!(
        took >= limit.saturating_sub(Duration::from_millis(100)),
        "{what}: closed after {took:?}, before its {limit:?}"
    );
    assert!(
        took <= limit + SLACK,
        "{what}: closed after {took:?}, well past its {limit:?}"
    );
}

async fn metrics(server: &Server) -> String {
    let answer = request(server, &get("/metrics", "Connection: close\r\n")).await;
    assert_eq!(answer.status, 200);
    String::from_utf8(answer.body).unwrap()
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

// ---------------------------------------------------------------- slow clients

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_line_is_closed_within_the_head_timeout() {
    let server = start(SHORT).await;
    let mut stream = connect(&server).await;
    stream.write_all(b"GET /hea").await.unwrap();
    let (took, sent) = closed_after(&mut stream).await;
    assert_within(took, Duration::from_secs(1), "half a request line");
    assert!(sent.is_empty(), "{sent:?}");
    let text = metrics(&server).await;
    assert!(
        metric(
            &text,
            "calltap_api_connections_timed_out_total{waiting=\"head\"}"
        ) >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_says_nothing_is_closed_within_the_head_timeout() {
    let server = start(SHORT).await;
    let mut stream = connect(&server).await;
    let (took, _) = closed_after(&mut stream).await;
    assert_within(took, Duration::from_secs(1), "a silent connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_trickled_byte_by_byte_is_closed_at_the_head_timeout() {
    let server = start(SHORT).await;
    let mut stream = connect(&server).await;
    let started = Instant::now();
    let head = get("/health", &format!("X-Secret-Key: {KEY}\r\n"));
    let mut closed = false;
    for byte in head.iter().take(head.len() - 1) {
        if stream.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_secs(1) + SLACK {
            break;
        }
    }
    if !closed {
        let (_, sent) = closed_after(&mut stream).await;
        assert!(sent.is_empty(), "{sent:?}");
    }
    assert_within(started.elapsed(), Duration::from_secs(1), "a trickled head");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_body_is_cut_by_the_body_timeout_with_408() {
    let server = start(SHORT).await;
    let mut stream = connect(&server).await;
    stream
        .write_all(
            format!(
                "POST /calls HTTP/1.1\r\nHost: calltap\r\nX-Secret-Key: {KEY}\r\n\
                 Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let mut reader = {
        let (read, mut write) = stream.into_split();
        // One byte every 100 ms: steady, and 20 s for the whole body.
        tokio::spawn(async move {
            for _ in 0..199 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if write.write_all(b" ").await.is_err() {
                    return;
                }
            }
        });
        read
    };
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(PATIENCE, reader.read_to_end(&mut bytes)).await;
    assert!(read.is_ok(), "still open after {PATIENCE:?}");
    assert_within(started.elapsed(), Duration::from_secs(1), "a trickled body");
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    let body: Value = serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["status"], "error");
    assert!(body["message"].as_str().unwrap().contains("did not arrive"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let server = start(SHORT).await;
    let mut stream = connect(&server).await;
    let health = get("/health", &format!("X-Secret-Key: {KEY}\r\n"));
    // Kept alive: a second request on the same connection after a pause shorter than
    // the idle timeout but longer than a head may take.
    stream.write_all(&health).await.unwrap();
    assert_eq!(read_answer(&mut stream).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stream.write_all(&health).await.unwrap();
    assert_eq!(read_answer(&mut stream).await.status, 200);
    let (took, sent) = closed_after(&mut stream).await;
    assert!(sent.is_empty(), "{sent:?}");
    assert_within(took, Duration::from_secs(2), "an idle connection");
    let text = metrics(&server).await;
    assert!(
        metric(
            &text,
            "calltap_api_connections_timed_out_total{waiting=\"idle\"}"
        ) >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_an_answer_is_closed_after_the_idle_timeout() {
    // 32 MB: more than loopback's socket buffers hold, so the server's writes wait.
    let server = start_with_recording(SHORT, 32 << 20).await;
    let mut stream = connect(&server).await;
    stream.write_all(&get(&link(), "")).await.unwrap();
    let mut head = [0u8; 1024];
    let n = stream.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"));
    // Read nothing more: the server's writes stall once the buffers are full.
    let started = Instant::now();
    let stalled = "calltap_api_connections_timed_out_total{waiting=\"client_read\"}";
    loop {
        if metric(&metrics(&server).await, stalled) == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2) + SLACK,
            "never closed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    // What was buffered still arrives, then the end: the answer is cut short.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .expect("the connection is closed");
    assert!(n + rest.len() < 32 << 20, "the whole answer arrived");
}

// ---------------------------------------------------------------- connection caps

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_caps_are_refused_at_once() {
    let server =
        start("header_timeout_secs = 30\nmax_connections = 4\nmax_connections_per_source = 3")
            .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(&server).await);
    }
    // A request on a held connection proves they are all accepted and served.
    held[0]
        .write_all(&get("/health", &format!("X-Secret-Key: {KEY}\r\n")))
        .await
        .unwrap();
    assert_eq!(read_answer(&mut held[0]).await.status, 200);

    let refuse = |mut stream: TcpStream, says: &'static str| async move {
        let started = Instant::now();
        let answer = read_answer(&mut stream).await;
        let message = answer.error(503);
        assert!(message.contains(says), "{message}");
        assert_eq!(answer.header("connection"), Some("close"));
        let (more, sent) = closed_after(&mut stream).await;
        assert!(sent.is_empty());
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed() + more
        );
    };
    // A fourth from the same source: over the per-source cap.
    refuse(connect(&server).await, "this address").await;
    // Another source still gets the last slot...
    held.push(connect_from(&server, "127.0.0.2").await);
    let last = held.last_mut().unwrap();
    last.write_all(&get("/health", &format!("X-Secret-Key: {KEY}\r\n")))
        .await
        .unwrap();
    assert_eq!(read_answer(last).await.status, 200);
    // ...and then every source meets the total cap.
    refuse(
        connect_from(&server, "127.0.0.3").await,
        "too many connections",
    )
    .await;

    // Slots come back when connections close.
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = metrics(&server).await;
    assert_eq!(
        metric(
            &text,
            "calltap_api_connections_refused_total{cap=\"per_source\"}"
        ),
        1
    );
    assert_eq!(
        metric(
            &text,
            "calltap_api_connections_refused_total{cap=\"total\"}"
        ),
        1
    );
    // The /metrics connection itself is the one open.
    assert_eq!(metric(&text, "calltap_api_connections_open"), 1);
}

// ---------------------------------------------------------------- body limit

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_body_over_the_limit_gets_413_before_it_is_sent() {
    let server = start(SHORT).await;
    for expect in ["", "Expect: 100-continue\r\n"] {
        let mut stream = connect(&server).await;
        let started = Instant::now();
        stream
            .write_all(
                format!(
                    "POST /calls HTTP/1.1\r\nHost: calltap\r\nX-Secret-Key: {KEY}\r\n\
                     Content-Type: application/json\r\nContent-Length: 10000000\r\n{expect}\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let answer = read_answer(&mut stream).await;
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        let message = answer.error(413);
        assert!(message.contains("4096"), "{message}");
        assert_eq!(answer.header("connection"), Some("close"));
    }
    // The key is still checked first.
    let answer = request(
        &server,
        b"POST /calls HTTP/1.1\r\nHost: calltap\r\nContent-Length: 10000000\r\n\r\n",
    )
    .await;
    answer.error(401);
}

// ---------------------------------------------------------------- malformed requests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_the_error_shape() {
    let server = start(SHORT).await;
    let long_path = format!("/{}", "a".repeat(100_000));
    let many_headers: String = (0..200).map(|i| format!("X-H-{i}: {i}\r\n")).collect();
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (get(&long_path, ""), 414),
        (get("/health", &many_headers), 431),
        (b"\x16\x03\x01garbage garbage\r\n\r\n".to_vec(), 400),
        (b"GET\r\n\r\n".to_vec(), 400),
        (get("/health", "X-Bad: a\0b\r\n"), 400),
        (
            get("/health", "Content-Length: 1\r\nContent-Length: 2\r\n"),
            400,
        ),
    ];
    for (text, status) in cases {
        let mut stream = connect(&server).await;
        stream.write_all(&text).await.unwrap();
        let answer = read_answer(&mut stream).await;
        answer.error(status);
        assert_eq!(answer.header("connection"), Some("close"), "{status}");
        let (_, more) = closed_after(&mut stream).await;
        assert!(more.is_empty(), "{status}: {more:?}");
    }
    // A good request after a bad one on another connection is served as ever.
    let answer = request(
        &server,
        &get("/health", &format!("X-Secret-Key: {KEY}\r\n")),
    )
    .await;
    assert_eq!(answer.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_after_a_good_one_on_a_kept_alive_connection_gets_the_error_shape() {
    let server = start(SHORT).await;
    let mut stream = connect(&server).await;
    let mut text = get("/health", &format!("X-Secret-Key: {KEY}\r\n"));
    text.extend_from_slice(b"NOT HTTP AT ALL\r\n\r\n");
    stream.write_all(&text).await.unwrap();
    let mut buf = Vec::new();
    let first = read_answer_buffered(&mut stream, &mut buf).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body, br#"{"status":"success"}"#);
    read_answer_buffered(&mut stream, &mut buf).await.error(400);
}

// ---------------------------------------------------------------- Range

fn sign(id: &str, exp: u64) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(LINK_KEY.as_bytes()).unwrap();
    mac.update(format!("{id}|{exp}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn exp() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600
}

fn link() -> String {
    let exp = exp();
    format!("/recordings/c-1.wav?exp={exp}&sig={}", sign("c-1", exp))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_follow_rfc_9110() {
    let server = start(SHORT).await;
    let wav = std::fs::read(server.state.store().recordings_dir().join("c-1.wav")).unwrap();
    let len = wav.len();
    let range = |value: &str| get(&link(), &format!("Range: {value}\r\n"));

    // Ignored: the whole file, 200.
    for ignored in [
        "bytes=0-0,0-0",
        "bytes=0-9,5-20",
        "bytes=0-9,20-29",
        "bytes=abc",
        "items=0-1",
        "bytes=1-2-3",
        "bytes= 1-2",
    ] {
        let answer = request(&server, &range(ignored)).await;
        assert_eq!(answer.status, 200, "{ignored}");
        assert_eq!(answer.body, wav, "{ignored}");
        assert_eq!(answer.header("content-length"), Some(&*len.to_string()));
        assert_eq!(answer.header("content-type"), Some("audio/wav"));
        assert_eq!(answer.header("accept-ranges"), Some("bytes"));
        assert_eq!(answer.header("content-range"), None, "{ignored}");
    }
    // A suffix longer than the file: all of it.
    let answer = request(&server, &range("bytes=-999999")).await;
    assert_eq!(answer.status, 206);
    assert_eq!(answer.body, wav);
    assert_eq!(
        answer.header("content-range"),
        Some(&*format!("bytes 0-{}/{len}", len - 1))
    );
    // Satisfiable single ranges, as before.
    for (value, from, to) in [
        ("bytes=10-49", 10, 50),
        ("bytes=-100", len - 100, len),
        ("bytes=9000-", 9000, len),
        ("bytes=9990-20000", 9990, len),
    ] {
        let answer = request(&server, &range(value)).await;
        assert_eq!(answer.status, 206, "{value}");
        assert_eq!(answer.body, &wav[from..to], "{value}");
        assert_eq!(
            answer.header("content-length"),
            Some(&*(to - from).to_string())
        );
        assert_eq!(
            answer.header("content-range"),
            Some(&*format!("bytes {from}-{}/{len}", to - 1))
        );
    }
    // Nothing satisfiable: 416 with the size.
    for value in [
        &*format!("bytes={len}-"),
        &*format!("bytes={}-{}", len + 10, len + 20),
        "bytes=50-10",
        "bytes=-0",
        &*format!("bytes={len}-{},{}-", len + 1, len + 5),
    ] {
        let answer = request(&server, &range(value)).await;
        answer.error(416);
        assert_eq!(
            answer.header("content-range"),
            Some(&*format!("bytes */{len}")),
            "{value}"
        );
    }
    // HEAD: the head of the whole file, no body.
    let mut stream = connect(&server).await;
    stream
        .write_all(
            format!(
                "HEAD {} HTTP/1.1\r\nHost: calltap\r\nConnection: close\r\n\r\n",
                link()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let (_, bytes) = closed_after(&mut stream).await;
    let text = String::from_utf8_lossy(&bytes).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(
        text.contains(&format!("content-length: {len}\r\n")),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\n"), "{text}");
    // Conditional requests still work (Last-Modified / If-Modified-Since).
    let first = request(&server, &get(&link(), "")).await;
    let modified = first
        .header("last-modified")
        .expect("Last-Modified")
        .to_owned();
    let answer = request(
        &server,
        &get(&link(), &format!("If-Modified-Since: {modified}\r\n")),
    )
    .await;
    assert_eq!(answer.status, 304);
}

// ---------------------------------------------------------------- signed links

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_are_taken_only_as_calltap_writes_them() {
    let server = start(SHORT).await;
    let exp = exp();
    let sig = sign("c-1", exp);
    let good = request(
        &server,
        &get(&format!("/recordings/c-1.wav?exp={exp}&sig={sig}"), ""),
    )
    .await;
    assert_eq!(good.status, 200);
    for query in [
        format!("exp=0{exp}&sig={sig}"),
        format!("exp=+{exp}&sig={sig}"),
        format!("exp=%2B{exp}&sig={sig}"),
        format!("exp={exp}&exp={exp}&sig={sig}"),
        format!("exp={exp}&sig={sig}&sig={sig}"),
        format!("exp={}&exp={exp}&sig={sig}", exp + 1),
        format!("exp={exp}&sig={}", sig.to_ascii_uppercase()),
    ] {
        let answer = request(&server, &get(&format!("/recordings/c-1.wav?{query}"), "")).await;
        answer.error(403);
    }
}

// ---------------------------------------------------------------- shutdown

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_finishes_the_request_in_flight_and_closes_idle_connections() {
    let mut server = start("body_timeout_secs = 10").await;
    // Idle: one request answered, the connection kept alive.
    let mut idle = connect(&server).await;
    idle.write_all(&get("/health", &format!("X-Secret-Key: {KEY}\r\n")))
        .await
        .unwrap();
    assert_eq!(read_answer(&mut idle).await.status, 200);
    // In flight: a POST whose body is not all sent yet.
    let body = format!("{{\"startTime\": {T0}, \"stopTime\": {}}}", T0 + 3600);
    let mut busy = connect(&server).await;
    busy.write_all(
        format!(
            "POST /calls HTTP/1.1\r\nHost: calltap\r\nX-Secret-Key: {KEY}\r\n\
             Content-Length: {}\r\n\r\n{}",
            body.len(),
            &body[..5]
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.stop.take().unwrap().send(()).unwrap();
    let (took, sent) = closed_after(&mut idle).await;
    assert!(sent.is_empty());
    assert!(took < Duration::from_secs(1), "{took:?}");
    // New connections are no longer taken.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !server.done.is_finished(),
        "serve returned with a request in flight"
    );
    busy.write_all(&body.as_bytes()[5..]).await.unwrap();
    let answer = read_answer(&mut busy).await;
    assert_eq!(answer.status, 200);
    let calls: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(calls["calls"][0]["id"], "c-1");
    tokio::time::timeout(PATIENCE, &mut server.done)
        .await
        .expect("serve returns once the request is answered")
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(server.addr).await.is_err());
}

// ---------------------------------------------------------------- configuration

#[test]
fn connection_limits_are_checked_with_the_configuration() {
    let check = |text: &str| Config::from_toml(&format!("[api]\n{text}\n"), "t.toml");
    let config = check("").unwrap();
    assert_eq!(config.api.header_timeout_secs, 10);
    assert_eq!(config.api.body_timeout_secs, 30);
    assert_eq!(config.api.idle_timeout_secs, 60);
    assert_eq!(config.api.max_connections, 256);
    assert_eq!(config.api.max_connections_per_source, 64);
    assert!(config
        .describe()
        .contains("256 connections (64 per source)"));
    for (text, says) in [
        ("header_timeout_secs = 0", "header_timeout_secs"),
        ("body_timeout_secs = 0", "body_timeout_secs"),
        ("idle_timeout_secs = 0", "idle_timeout_secs"),
        ("idle_timeout_secs = 100000000", "at most"),
        ("max_connections = 0", "max_connections"),
        (
            "max_connections_per_source = 0",
            "max_connections_per_source",
        ),
        (
            "max_connections = 10\nmax_connections_per_source = 11",
            "more than max_connections",
        ),
    ] {
        let error = check(text).unwrap_err().to_string();
        assert!(error.contains(says), "{text}: {error}");
    }
}

// ---------------------------------------------------------------- calltap demo

/// Runs `calltap demo` with `key_env` as CALLTAP_SECRET_KEY, takes its printed
/// `/health` curl line, lets a shell expand it (with the same environment, `curl`
/// standing for a function that prints its arguments), and sends the header the shell
/// made: the line works only if that header holds an accepted key.
async fn demo_health_line_works(key_env: Option<&str>) {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_calltap"));
    demo.args(["demo", "--data"])
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env_remove("CALLTAP_SECRET_KEY")
        .env_remove("CALLTAP_CONFIG")
        .env("CALLTAP_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(key) = key_env {
        demo.env("CALLTAP_SECRET_KEY", key);
    }
    let mut child = demo.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.contains("Ctrl-C stops it");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    let lines = tokio::time::timeout(Duration::from_secs(60), lines)
        .await
        .expect("the demo starts")
        .unwrap();
    let health = lines
        .iter()
        .find(|l| l.contains("/health"))
        .unwrap_or_else(|| panic!("no /health line: {lines:#?}"));
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg(format!(
            "curl() {{ for a in \"$@\"; do printf '%s\\n' \"$a\"; done; }}; {health}"
        ))
        .env_remove("CALLTAP_SECRET_KEY");
    if let Some(key) = key_env {
        shell.env("CALLTAP_SECRET_KEY", key);
    }
    let expanded = shell.output().unwrap();
    let expanded = String::from_utf8(expanded.stdout).unwrap();
    let header = expanded
        .lines()
        .find_map(|a| a.strip_prefix("X-Secret-Key: "))
        .unwrap_or_else(|| panic!("no header in {expanded:?} from {health:?}"))
        .to_owned();
    let answer = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/health"))
        .header("X-Secret-Key", &header)
        .send()
        .await
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answer.status(), 200, "{health:?} sent {header:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demos_curl_lines_work_with_a_key_from_the_environment() {
    demo_health_line_works(Some("demo-key-one-0123456789,demo-key-two-0123456789")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demos_curl_lines_work_with_its_one_time_key() {
    demo_health_line_works(None).await;
}

// ---------------------------------------------------------------- /openapi.json

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_says_what_post_calls_accepts() {
    let server = start(SHORT).await;
    let doc: Value =
        serde_json::from_slice(&request(&server, &get("/openapi.json", "")).await.body).unwrap();
    let fields = &doc["components"]["schemas"]["CallsRequest"]["properties"];
    for field in ["direction", "operators", "propertyFilters"] {
        assert_eq!(fields[field]["nullable"], true, "{field}");
    }
    // No properties are configured here: no filter key is accepted.
    assert_eq!(fields["propertyFilters"]["additionalProperties"], false);
    assert_eq!(
        fields["propertyFilters"]["properties"],
        serde_json::json!({})
    );
    for time in ["startTime", "stopTime"] {
        assert_eq!(fields[time]["minimum"], 0, "{time}");
        assert_eq!(fields[time]["maximum"], 1_000_000_000_000_000u64, "{time}");
    }
    let post = |body: String| {
        format!(
            "POST /calls HTTP/1.1\r\nHost: calltap\r\nX-Secret-Key: {KEY}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    let accepted = [
        format!(
            r#"{{"startTime": {T0}, "stopTime": {T0}, "propertyFilters": null, "direction": null, "operators": null}}"#
        ),
        format!(
            r#"{{"startTime": {T0}, "stopTime": {T0}, "propertyFilters": {{}}, "operators": [101, "op-101"]}}"#
        ),
        r#"{"startTime": 0, "stopTime": 0.5}"#.to_string(),
        r#"{"startTime": 1000000000000000, "stopTime": 1e15}"#.to_string(),
    ];
    for body in accepted {
        let answer = request(&server, &post(body.clone())).await;
        assert_eq!(
            answer.status,
            200,
            "{body}: {:?}",
            String::from_utf8_lossy(&answer.body)
        );
    }
    let refused = [
        r#"{"startTime": -1, "stopTime": 5}"#,
        r#"{"startTime": -0.5, "stopTime": 5}"#,
        r#"{"startTime": 1000000000000001, "stopTime": 1000000000000001}"#,
        r#"{"startTime": 18446744073709551615, "stopTime": 18446744073709551615}"#,
        r#"{"startTime": 0, "stopTime": 1, "propertyFilters": {"Any": "x"}}"#,
    ];
    for body in refused {
        request(&server, &post(body.to_string())).await.error(400);
    }
}
