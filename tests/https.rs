//! Built-in HTTPS against the real server on loopback, with certificates the test
//! makes (rcgen) and trusts: the importer's own walk (importer-check) over HTTPS,
//! HTTP/2 and HTTP/1.1 by ALPN, a certificate replaced on disk served on the next
//! connection (and a broken one ignored), plain HTTP and old-cipher hellos sent to the
//! TLS port, bad pairs at start, and the redirect listener.

#[path = "support/skip.rs"]
mod skip;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use calltap::api::{self, AppState};
use calltap::config::Config;
use calltap::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

#[path = "support/certs.rs"]
mod certs;
#[path = "support/records.rs"]
mod records;

use certs::TestCa;

const KEY: &str = "https-test-key-0123456789";
const LINK_KEY: &str = "https-test-link-key-0123";
const T0: u64 = 1_700_000_000;

struct Server {
    addr: SocketAddr,
    state: AppState,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Result<(), api::ApiError>>,
    ca: TestCa,
    ca_path: PathBuf,
    cert_path: PathBuf,
    key_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn base(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.done).await;
    }
}

/// Replaces a file the way certbot and most tools do: a new file renamed over it.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A store with one recorded call, `c-1` at `T0`.
fn store(dir: &Path) -> Arc<Store> {
    records::store_with_recording(&dir.join("store"), T0, 10_000, 600)
}

fn config_text(addr: SocketAddr, cert: &Path, key: &Path, extra: &str) -> String {
    format!(
        "[api]\nlisten = \"{addr}\"\nsecret_keys = [\"{KEY}\"]\nlink_keys = [\"{LINK_KEY}\"]\n\
         tls_cert = \"{}\"\ntls_key = \"{}\"\n{extra}\n",
        cert.display(),
        key.display()
    )
}

/// A TLS server with a certificate for 127.0.0.1 and `first.test`, signed by a CA the
/// test trusts, and `[api]` settings `extra`.
async fn start(extra: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("calltap test CA");
    let ca_path = ca.write(dir.path());
    let (cert, key) = ca.server_cert(&["127.0.0.1", "first.test"]);
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Config::from_toml(
        &config_text(addr, &cert_path, &key_path, extra),
        "tests/https.rs",
    )
    .unwrap();
    let state = AppState::new(config, store(dir.path())).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(api::serve_on(listener, state.clone(), async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        state,
        stop: Some(stop),
        done,
        ca,
        ca_path,
        cert_path,
        key_path,
        _dir: dir,
    }
}

fn client(server: &Server) -> reqwest::ClientBuilder {
    let ca = reqwest::Certificate::from_pem(server.ca.pem.as_bytes()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(10))
}

/// The names of the certificate the server presents on a new connection.
async fn served_names(server: &Server) -> Vec<String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(server.ca.pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.expect("handshake");
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

use rustls::pki_types::pem::PemObject;

async fn metrics(server: &Server) -> String {
    client(server)
        .build()
        .unwrap()
        .get(format!("{}/metrics", server.base()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_importer_check_passes_over_https() {
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/importer-check");
    if !tool.exists() {
        skip::skip(format!(
            "{} is absent; the importer walk over HTTPS is not run",
            tool.display()
        ));
        return;
    }
    let server = start("").await;
    let (base, ca) = (server.base(), server.ca_path.clone());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(&tool)
            .args(["--url", &base, "--key", KEY, "--cacert"])
            .arg(&ca)
            .args([
                "--from",
                &T0.to_string(),
                "--to",
                &(T0 + 86_400).to_string(),
            ])
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "importer-check over HTTPS failed:\n{stdout}"
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    // The recording link it downloaded is an https one.
    assert!(server
        .state
        .config()
        .api
        .link_base()
        .starts_with("https://127.0.0.1:"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_and_http1_are_chosen_by_alpn() {
    let server = start("body_timeout_secs = 2").await;
    let h2 = client(&server).build().unwrap();
    let answer = h2
        .get(format!("{}/health", server.base()))
        .header("X-Secret-Key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.version(), reqwest::Version::HTTP_2);
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), r#"{"status":"success"}"#);
    // Several requests at once on the one HTTP/2 connection, contract errors included.
    let mut all = Vec::new();
    for i in 0..20 {
        let h2 = h2.clone();
        let url = format!("{}/calls", server.base());
        all.push(tokio::spawn(async move {
            let key = if i % 5 == 0 { "wrong" } else { KEY };
            h2.post(url)
                .header("X-Secret-Key", key)
                .json(&serde_json::json!({"startTime": T0, "stopTime": T0 + 60}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in all {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 16);
    assert_eq!(statuses.iter().filter(|&&s| s == 401).count(), 4);
    // The body timeout holds on HTTP/2 too: a POST whose body never comes gets 408.
    let (tx, body) = futures_channel();
    let slow = h2
        .post(format!("{}/calls", server.base()))
        .header("X-Secret-Key", KEY)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(body))
        .send();
    let answer = tokio::time::timeout(Duration::from_secs(15), slow)
        .await
        .expect("answered within the body timeout");
    drop(tx);
    assert_eq!(answer.unwrap().status(), 408);

    let h1 = client(&server).http1_only().build().unwrap();
    let answer = h1
        .get(format!("{}/health", server.base()))
        .header("X-Secret-Key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.version(), reqwest::Version::HTTP_11);
    assert_eq!(answer.status(), 200);
    let text = metrics(&server).await;
    assert!(text.contains("calltap_tls_handshakes_total"), "{text}");
    let days = text
        .lines()
        .find_map(|l| l.strip_prefix("calltap_tls_certificate_expiry_days "))
        .expect("expiry on /metrics");
    let days: f64 = days.parse().unwrap();
    assert!((88.0..=90.0).contains(&days), "{days}");
    server.stop().await;
}

type Chunk = Result<Vec<u8>, std::io::Error>;

/// A request body stream that sends one byte and then nothing until its sender is
/// dropped.
fn futures_channel() -> (
    tokio::sync::mpsc::Sender<Chunk>,
    impl futures_util::Stream<Item = Chunk>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let _ = tx.try_send(Ok(b"{".to_vec()));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (tx, stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_replaced_on_disk_is_served_on_the_next_connection() {
    let server = start("").await;
    assert!(served_names(&server)
        .await
        .contains(&"first.test".to_owned()));

    let (cert, key) = server.ca.server_cert(&["127.0.0.1", "second.test"]);
    replace(&server.key_path, &key);
    replace(&server.cert_path, &cert);
    assert!(
        served_names(&server)
            .await
            .contains(&"second.test".to_owned()),
        "the new certificate, on the very next connection"
    );

    // A broken replacement (a key for another certificate) keeps the one in use.
    let (_, other_key) = server.ca.server_cert(&["127.0.0.1", "third.test"]);
    let (third, _) = server.ca.server_cert(&["127.0.0.1", "third.test"]);
    replace(&server.cert_path, &third);
    replace(&server.key_path, &other_key);
    assert!(served_names(&server)
        .await
        .contains(&"second.test".to_owned()));
    // An expired one too, and SIGHUP's reload says the same.
    let (expired, expired_key) = server
        .ca
        .server_cert_valid(&["127.0.0.1", "old.test"], (-100, -10));
    replace(&server.cert_path, &expired);
    replace(&server.key_path, &expired_key);
    server.state.reload(server.state.config());
    assert!(served_names(&server)
        .await
        .contains(&"second.test".to_owned()));
    let text = metrics(&server).await;
    assert!(
        text.contains("calltap_tls_certificate_reloads_total{result=\"ok\"} 1"),
        "{text}"
    );
    let failed: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("calltap_tls_certificate_reloads_total{result=\"failed\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(failed >= 2, "{text}");

    // Then a good pair again, found by the watch without any connection.
    let (fourth, fourth_key) = server.ca.server_cert(&["127.0.0.1", "fourth.test"]);
    replace(&server.key_path, &fourth_key);
    replace(&server.cert_path, &fourth);
    let mut found = false;
    for _ in 0..100 {
        let current = server.state.tls().unwrap().resolver.current().unwrap();
        if current.names.contains(&"fourth.test".to_owned()) {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found, "the watch loaded the new pair");
    server.stop().await;
}

/// Reads what the server sends until it closes (at most 64 KiB, 10 s).
async fn read_all(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < 65_536 {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_tls_port_is_told_to_use_https() {
    let server = start("").await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Secret-Key: x\r\n\r\n")
        .await
        .unwrap();
    let answer = String::from_utf8(read_all(&mut tcp).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["status"], "error");
    assert!(
        json["message"].as_str().unwrap().contains("https://"),
        "{json}"
    );
    assert!(metrics(&server)
        .await
        .contains("calltap_tls_plain_http_total 1"));
    server.stop().await;
}

/// A TLS 1.2 ClientHello offering only RSA key exchange with CBC and 3DES suites.
fn old_client_hello() -> Vec<u8> {
    let suites: [u16; 3] = [0x002f, 0x0035, 0x000a];
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0x42; 32]);
    body.push(0);
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]);
    let mut handshake = vec![1, 0, 0, 0];
    handshake[1..4].copy_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hello_with_only_old_ciphers_is_refused() {
    let server = start("").await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(&old_client_hello()).await.unwrap();
    let answer = read_all(&mut tcp).await;
    // A fatal alert (21), handshake_failure (40).
    assert_eq!(answer.first(), Some(&0x15), "{answer:?}");
    assert_eq!(answer.get(5..7), Some(&[2u8, 40][..]), "{answer:?}");
    let text = metrics(&server).await;
    assert!(
        text.contains("calltap_tls_handshake_failures_total{reason=\"incompatible\"} 1"),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_pairs_at_start_are_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("ca");
    let (cert, _) = ca.server_cert(&["127.0.0.1"]);
    let (_, other_key) = ca.server_cert(&["127.0.0.1"]);
    let (expired, expired_key) = ca.server_cert_valid(&["127.0.0.1"], (-100, -10));
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let cert_path = write("cert.pem", &cert);
    let other_key_path = write("other-key.pem", &other_key);
    let expired_path = write("expired.pem", &expired);
    let expired_key_path = write("expired-key.pem", &expired_key);
    let missing = dir.path().join("missing.pem");
    for (cert, key, expect, named) in [
        (
            &cert_path,
            &other_key_path,
            "does not belong",
            &other_key_path,
        ),
        (
            &expired_path,
            &expired_key_path,
            "expired on",
            &expired_path,
        ),
        (&missing, &other_key_path, "cannot read", &missing),
        (&cert_path, &missing, "cannot read", &missing),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = Config::from_toml(&config_text(addr, cert, key, ""), "t").unwrap();
        let state = AppState::new(config, store(dir.path())).unwrap();
        let err = api::serve_on(listener, state, std::future::pending())
            .await
            .expect_err("a bad pair stops the start")
            .to_string();
        assert!(err.contains(expect), "{err}");
        assert!(err.contains(&*named.display().to_string()), "{err}");
    }
    // check-config finds the same before start.
    let config_path = write(
        "calltap.toml",
        &config_text(
            "127.0.0.1:8443".parse().unwrap(),
            &cert_path,
            &other_key_path,
            "",
        ),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_calltap"))
        .args(["check-config", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&*other_key_path.display().to_string()),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redirect_listener_sends_plain_http_to_https() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let redirect_addr = free.local_addr().unwrap();
    drop(free);
    let server = start(&format!("redirect_listen = \"{redirect_addr}\"")).await;
    let mut answer = None;
    for _ in 0..50 {
        let plain = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        if let Ok(a) = plain
            .get(format!("http://{redirect_addr}/calls/c-1/recording?x=1"))
            .send()
            .await
        {
            answer = Some(a);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = answer.expect("the redirect listener answers");
    assert_eq!(answer.status(), 308);
    assert_eq!(
        answer.headers()["location"],
        format!(
            "https://127.0.0.1:{}/calls/c-1/recording?x=1",
            server.addr.port()
        )
        .as_str()
    );
    let json: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(json["status"], "error");
    server.stop().await;
    assert!(
        std::net::TcpStream::connect(redirect_addr).is_err(),
        "the redirect listener stops with the API"
    );
}

/// The web console over built-in TLS: its cookies are `Secure` (a login form's token
/// and the session), so a browser never sends them over plain HTTP.
#[tokio::test]
async fn the_consoles_cookies_are_secure_over_tls() {
    let password = "https-console-password";
    let hash = calltap::ui::hash_password(password).unwrap();
    let server = start(&format!("[ui]\npassword_hash = \"{hash}\"\n")).await;
    let http = client(&server)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = http
        .get(format!("{}/ui/login", server.base()))
        .send()
        .await
        .unwrap();
    let set = form.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.contains("; Secure") && set.contains("HttpOnly"),
        "{set}"
    );
    let token_cookie = set.split(';').next().unwrap().to_owned();
    let csrf = token_cookie.split_once('=').unwrap().1.to_owned();
    let done = http
        .post(format!("{}/ui/login", server.base()))
        .header("Cookie", &token_cookie)
        .header("Origin", server.base())
        .form(&[("csrf", csrf.as_str()), ("password", password)])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 303);
    let session = done
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("calltap_session="))
        .expect("a session cookie");
    assert!(
        session.contains("; Secure") && session.contains("SameSite=Strict"),
        "{session}"
    );
    server.stop().await;
}
