//! What built-in HTTPS costs, on loopback, side by side with plain HTTP:
//! 1. full TLS handshakes per second (TLS 1.3, ECDSA P-256 certificate, no
//!    resumption), and resumed ones (session tickets), from 4 concurrent clients;
//! 2. the 10,000-call day (`POST /calls` for one day) over plain HTTP, HTTPS with
//!    HTTP/1.1 and HTTPS with HTTP/2: median over the runs and the HTTPS/HTTP ratio;
//! 3. memory per idle connection: `calltap serve` as a child process, its RSS before and
//!    after 1,000 kept-alive connections that made one request each, TLS and plain.
//!
//! `cargo bench --bench tls` (CALLTAP_BENCH_CALLS sets the calls of the day, default
//! 10,000; CALLTAP_BENCH_SECS the seconds of each handshake run, default 5;
//! CALLTAP_BENCH_CONNS the idle connections, default 1,000).
//!
//! The clients run in this process on one thread and the server on two, on a 2-core
//! machine shared with the client: the figures are floors.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use calltap::api::{self, AppState};
use calltap::config::Config;
use calltap::store::Store;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[path = "../tests/support/certs.rs"]
mod certs;
#[path = "../tests/support/records.rs"]
mod records;

const KEY: &str = "tls-bench-key-0123456789";
/// 2024-03-01 00:00:00 UTC.
const DAY0: u64 = 1_709_251_200;
const RUNS: usize = 20;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config_text(port: u16, tls: Option<(&Path, &Path)>, extra: &str) -> String {
    let mut text = format!(
        "[api]\nlisten = \"127.0.0.1:{port}\"\nsecret_keys = [\"{KEY}\"]\n\
         link_keys = [\"tls-bench-link-key-0123\"]\nmax_connections = 4000\n\
         max_connections_per_source = 4000\nheader_timeout_secs = 300\nidle_timeout_secs = 300\n{extra}\n"
    );
    if let Some((cert, key)) = tls {
        text.push_str(&format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert.display(),
            key.display()
        ));
    }
    text.push_str("[api.rate_limit]\nper_source = 0\nper_key = 0\n");
    text
}

/// A server on its own two-worker runtime; answers its port.
fn serve(store: Arc<Store>, tls: Option<(&Path, &Path)>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let config = Config::from_toml(&config_text(port, tls, ""), "benches/tls.rs").unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let state = AppState::new(config, store).unwrap();
            api::serve_on(listener, state, std::future::pending())
                .await
                .unwrap();
        });
    });
    port
}

fn client_config(ca_pem: &str, resume: bool) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Handshakes per second from 4 tasks for `secs` seconds.
async fn handshakes(port: u16, config: Arc<rustls::ClientConfig>, secs: u64) -> f64 {
    let connector = tokio_rustls::TlsConnector::from(config);
    let stop = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let connector = connector.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < stop {
                let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
                let mut tls = connector.connect(name, tcp).await.expect("handshake");
                let _ = tls.shutdown().await;
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// Median time of `POST /calls` for the day, to the last byte.
async fn day(client: &reqwest::Client, base: &str) -> (Duration, usize, reqwest::Version) {
    let body = serde_json::json!({"startTime": DAY0, "stopTime": DAY0 + 86_400});
    let mut times = Vec::new();
    let mut calls = 0;
    let mut version = reqwest::Version::HTTP_11;
    for _ in 0..RUNS + 1 {
        let t = Instant::now();
        let response = client
            .post(format!("{base}/calls"))
            .header("X-Secret-Key", KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        version = response.version();
        assert_eq!(response.status(), 200);
        let bytes = response.bytes().await.unwrap();
        times.push(t.elapsed());
        calls = bytes.windows(6).filter(|w| w == b"\"id\":\"").count();
    }
    times.remove(0); // the cold first
    times.sort();
    (times[times.len() / 2], calls, version)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn one_request<S: AsyncReadExt + AsyncWriteExt + Unpin>(stream: &mut S) {
    let request = format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Secret-Key: {KEY}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"\"success\"}") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
}

/// RSS of a `calltap serve` child per idle connection, in KiB.
async fn idle_memory(
    dir: &Path,
    tls: Option<(&Path, &Path, Arc<rustls::ClientConfig>)>,
    conns: u64,
) -> (f64, u64) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join(format!("serve-{port}.toml"));
    std::fs::write(
        &config,
        config_text(port, tls.as_ref().map(|(c, k, _)| (*c, *k)), ""),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_calltap"))
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data")
        .arg(dir.join(format!("serve-store-{port}")))
        .env("CALLTAP_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(child.id());
    // Kept-alive connections that made one request, held open until measured.
    let mut open: Vec<Box<dyn std::any::Any + Send>> = Vec::new();
    for _ in 0..conns {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let idle = match &tls {
            Some((_, _, config)) => {
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
                let mut stream = connector.connect(name, tcp).await.unwrap();
                one_request(&mut stream).await;
                Box::new(stream) as Box<dyn std::any::Any + Send>
            }
            None => {
                one_request(&mut tcp).await;
                Box::new(tcp)
            }
        };
        open.push(idle);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(child.id());
    let per = (after.saturating_sub(before)) as f64 / conns as f64;
    drop(open);
    let _ = child.kill();
    let _ = child.wait();
    (per, after)
}

fn main() {
    // Two sides of 1,000 connections each need more than the usual 1,024 descriptors.
    // SAFETY: plain system calls on a struct we own.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
    let calls = env_u64("CALLTAP_BENCH_CALLS", 10_000);
    let secs = env_u64("CALLTAP_BENCH_SECS", 5);
    let conns = env_u64("CALLTAP_BENCH_CONNS", 1_000);
    let dir = tempfile::tempdir().unwrap();
    let ca = certs::TestCa::new("bench CA");
    let (cert, key) = ca.server_cert(&["127.0.0.1"]);
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();

    let store = Arc::new(Store::open(&dir.path().join("store")).unwrap());
    let records: Vec<_> = (0..calls)
        .map(|i| records::answered_call(&format!("c-{i:06}"), DAY0 + i * 86_400 / calls))
        .collect();
    for chunk in records.chunks(10_000) {
        store.put_calls(chunk).unwrap();
    }
    let plain = serve(store.clone(), None);
    let tls = serve(store, Some((&cert_path, &key_path)));
    std::thread::sleep(Duration::from_millis(300));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let full = handshakes(tls, client_config(&ca.pem, false), secs).await;
        let resumed = handshakes(tls, client_config(&ca.pem, true), secs).await;
        println!(
            "TLS 1.3 handshakes (ECDSA P-256, 4 clients): {full:.0}/s full, {resumed:.0}/s resumed"
        );

        let root = reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap();
        let plain_client = reqwest::Client::new();
        let h1 = reqwest::Client::builder()
            .add_root_certificate(root.clone())
            .http1_only()
            .build()
            .unwrap();
        let h2 = reqwest::Client::builder()
            .add_root_certificate(root)
            .build()
            .unwrap();
        let (http, n, _) = day(&plain_client, &format!("http://127.0.0.1:{plain}")).await;
        let (https1, _, _) = day(&h1, &format!("https://127.0.0.1:{tls}")).await;
        let (https2, _, version) = day(&h2, &format!("https://127.0.0.1:{tls}")).await;
        assert_eq!(version, reqwest::Version::HTTP_2);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "POST /calls for a day of {n} calls, median of {RUNS}: HTTP {:.1} ms, HTTPS/1.1 \
             {:.1} ms ({:.2}x), HTTPS/2 {:.1} ms ({:.2}x)",
            ms(http),
            ms(https1),
            https1.as_secs_f64() / http.as_secs_f64(),
            ms(https2),
            https2.as_secs_f64() / http.as_secs_f64(),
        );

        let (tls_per, tls_rss) = idle_memory(
            dir.path(),
            Some((&cert_path, &key_path, client_config(&ca.pem, false))),
            conns,
        )
        .await;
        let (plain_per, plain_rss) = idle_memory(dir.path(), None, conns).await;
        println!(
            "memory per idle kept-alive connection ({conns} open, calltap serve's RSS): \
             TLS {tls_per:.1} KiB (RSS {} MiB), plain {plain_per:.1} KiB (RSS {} MiB)",
            tls_rss / 1024,
            plain_rss / 1024
        );
    });
}
