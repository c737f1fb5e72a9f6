//! ACME end to end against Pebble, the ACME test server (Debian's `pebble`), all on
//! loopback: Pebble's own DNS stand-in (`pebble-challtestsrv`) answers 127.0.0.1 for
//! every name, so Pebble's validation authority really connects to calltap's API port
//! for TLS-ALPN-01. calltap obtains a certificate for `calltap.test`, serves it (a
//! client trusting Pebble's root connects by that name), caches account and
//! certificate, and serves the cached one after a restart without a new order. An ACME
//! server that is down is a logged, counted failure naming it.
//!
//! Without Pebble installed the tests say so and are listed as skipped, unless
//! `CALLTAP_TEST_REQUIRE=all` asks for every test to run for real (then they fail
//! saying what is missing). `.ci/run` installs Pebble.

#[path = "support/skip.rs"]
mod skip;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use calltap::api::{self, AppState};
use calltap::config::Config;
use calltap::store::Store;
use tokio::sync::oneshot;

#[path = "support/certs.rs"]
mod certs;

const KEY: &str = "acme-test-key-0123456789";
const DOMAIN: &str = "calltap.test";

/// The Pebble binaries, or why the test cannot run (a panic under
/// `CALLTAP_TEST_REQUIRE=all`).
fn pebble() -> Option<(PathBuf, PathBuf)> {
    let find = |name: &str| {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .chain([PathBuf::from("/usr/bin")])
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    };
    match (find("pebble"), find("pebble-challtestsrv")) {
        (Some(p), Some(c)) => Some((p, c)),
        _ => {
            skip::skip(
                "pebble and pebble-challtestsrv are not installed (apt-get install \
                 pebble); the ACME end-to-end test cannot run",
            );
            None
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when the test ends, pass or fail.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Pebble and its DNS stand-in, validating on `tls_port` (TLS-ALPN-01) and `http_port`
/// (HTTP-01) of 127.0.0.1.
struct Pebble {
    directory: String,
    management: u16,
    ca: certs::TestCa,
    ca_path: PathBuf,
    _processes: (Running, Running),
}

fn start_pebble(dir: &Path, tls_port: u16, http_port: u16) -> Option<Pebble> {
    let (pebble, challtestsrv) = pebble()?;
    let ca = certs::TestCa::new("pebble test CA");
    let ca_path = ca.write(dir);
    let (cert, key) = ca.server_cert(&["127.0.0.1", "localhost"]);
    std::fs::write(dir.join("pebble-cert.pem"), cert).unwrap();
    std::fs::write(dir.join("pebble-key.pem"), key).unwrap();
    let (listen, management, dns, dns_management) =
        (free_port(), free_port(), free_port(), free_port());
    let config = serde_json::json!({"pebble": {
        "listenAddress": format!("127.0.0.1:{listen}"),
        "managementListenAddress": format!("127.0.0.1:{management}"),
        "certificate": dir.join("pebble-cert.pem"),
        "privateKey": dir.join("pebble-key.pem"),
        "httpPort": http_port,
        "tlsPort": tls_port,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false
    }});
    std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
    let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
    let dns_server = Command::new(challtestsrv)
        .args(["-dns01", &format!("127.0.0.1:{dns}")])
        .args(["-management", &format!("127.0.0.1:{dns_management}")])
        .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
        .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
        .stdout(log("challtestsrv.log"))
        .stderr(Stdio::null())
        .spawn()
        .expect("pebble-challtestsrv starts");
    let dns_server = Running(dns_server);
    let server = Command::new(pebble)
        .arg("-config")
        .arg(dir.join("pebble.json"))
        .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
        // No random validation delays, no nonces refused on purpose: the test is
        // about calltap, not about its retries.
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .stdout(log("pebble.log"))
        .stderr(log("pebble.err"))
        .spawn()
        .expect("pebble starts");
    let server = Running(server);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", listen)).is_err() {
        assert!(
            Instant::now() < deadline,
            "pebble did not listen: {}",
            std::fs::read_to_string(dir.join("pebble.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(Pebble {
        directory: format!("https://127.0.0.1:{listen}/dir"),
        management,
        ca,
        ca_path,
        _processes: (dns_server, server),
    })
}

struct Calltap {
    addr: SocketAddr,
    state: AppState,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Result<(), api::ApiError>>,
}

impl Calltap {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.done).await;
    }
}

async fn start_calltap(listener: tokio::net::TcpListener, store: &Path, acme: &str) -> Calltap {
    let addr = listener.local_addr().unwrap();
    let text = format!(
        "[api]\nlisten = \"{addr}\"\nsecret_keys = [\"{KEY}\"]\nlink_keys = [\"acme-link-key-0123\"]\n\
         [api.acme]\ndomains = [\"{DOMAIN}\"]\ncontact = \"admin@calltap.test\"\n{acme}\n"
    );
    let config = Config::from_toml(&text, "tests/acme_pebble.rs").unwrap();
    // After a restart in the same test, the last of the old server's tasks may still
    // be letting go of the store.
    let deadline = Instant::now() + Duration::from_secs(10);
    let store = loop {
        match Store::open(store) {
            Ok(store) => break Arc::new(store),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the store does not open again: {e}"),
        }
    };
    let state = AppState::new(config, store).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(api::serve_on(listener, state.clone(), async {
        let _ = stopped.await;
    }));
    Calltap {
        addr,
        state,
        stop: Some(stop),
        done,
    }
}

/// Waits until calltap serves a certificate (or its ACME task reports a failure).
async fn served_certificate(calltap: &Calltap, patience: Duration) -> Vec<String> {
    let deadline = Instant::now() + patience;
    loop {
        // The server task sets TLS up as it starts.
        if let Some(tls) = calltap.state.tls() {
            if let Some(cert) = tls.resolver.current() {
                return cert.names;
            }
            if let Some(error) = tls.acme.as_ref().and_then(|a| a.last_error()) {
                panic!("ACME failed: {error}");
            }
        }
        assert!(
            Instant::now() < deadline,
            "no certificate within {patience:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pebble_issues_a_certificate_that_calltap_serves_caches_and_reuses() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let Some(pebble) = start_pebble(dir.path(), port, free_port()) else {
        return;
    };
    let store = dir.path().join("store");
    let acme = format!(
        "directory = \"{}\"\nca_file = \"{}\"",
        pebble.directory,
        pebble.ca_path.display()
    );
    let calltap = start_calltap(listener, &store, &acme).await;
    let names = served_certificate(&calltap, Duration::from_secs(60)).await;
    assert_eq!(names, [DOMAIN]);

    // A client that trusts Pebble's root reaches calltap by its name.
    let trusting_pebble = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pebble.ca.pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let root = trusting_pebble
        .get(format!("https://127.0.0.1:{}/roots/0", pebble.management))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(root.as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .resolve(DOMAIN, calltap.addr)
        .build()
        .unwrap();
    let base = format!("https://{DOMAIN}:{port}");
    let health = client
        .get(format!("{base}/health"))
        .header("X-Secret-Key", KEY)
        .send()
        .await
        .expect("the ACME certificate verifies against Pebble's root");
    assert_eq!(health.status(), 200);
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("calltap_acme_orders_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("calltap_tls_certificate_expiry_days "),
        "{metrics}"
    );
    // The recording links name the domain.
    assert_eq!(calltap.state.config().api.link_base(), base);

    // Account and certificate are cached, readable by calltap's user only.
    let cache = store.join("acme");
    let mut files: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files[0].starts_with("account-") && files[1] == "cert.pem" && files[2] == "key.pem");
    for f in &files {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cache.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    calltap.stop().await;

    // A restart serves the cached certificate at once: no new order.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let calltap = start_calltap(listener, &store, &acme).await;
    assert_eq!(
        served_certificate(&calltap, Duration::from_secs(5)).await,
        [DOMAIN]
    );
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("calltap_acme_orders_total{result=\"ok\"} 0"),
        "{metrics}"
    );
    calltap.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_01_is_answered_by_the_redirect_listener() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_port = free_port();
    let Some(pebble) = start_pebble(dir.path(), free_port(), http_port) else {
        return;
    };
    let acme = format!(
        "directory = \"{}\"\nca_file = \"{}\"\nchallenge = \"http-01\"",
        pebble.directory,
        pebble.ca_path.display()
    );
    // redirect_listen is an [api] key: it goes before the [api.acme] table.
    let addr = listener.local_addr().unwrap();
    let text = format!(
        "[api]\nlisten = \"{addr}\"\nsecret_keys = [\"{KEY}\"]\n\
         redirect_listen = \"127.0.0.1:{http_port}\"\n\
         [api.acme]\ndomains = [\"{DOMAIN}\"]\n{acme}\n"
    );
    let config = Config::from_toml(&text, "tests/acme_pebble.rs").unwrap();
    assert!(
        config
            .warnings()
            .iter()
            .any(|w| w.contains("forward port 80")),
        "{:?}",
        config.warnings()
    );
    let store = Arc::new(Store::open(&dir.path().join("store")).unwrap());
    let state = AppState::new(config, store).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(api::serve_on(listener, state.clone(), async {
        let _ = stopped.await;
    }));
    let calltap = Calltap {
        addr,
        state,
        stop: Some(stop),
        done,
    };
    let names = served_certificate(&calltap, Duration::from_secs(60)).await;
    assert_eq!(names, [DOMAIN]);
    calltap.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acme_server_that_is_down_is_a_failure_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // Runs without Pebble too: nothing listens on the directory's port.
    let down = free_port();
    let directory = format!("https://127.0.0.1:{down}/dir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let calltap = start_calltap(
        listener,
        &dir.path().join("store"),
        &format!("directory = \"{directory}\""),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let error = loop {
        let tls = calltap.state.tls();
        if let Some(error) = tls.and_then(|t| t.acme.as_ref().and_then(|a| a.last_error())) {
            break error;
        }
        assert!(Instant::now() < deadline, "no failure reported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(error.contains(&directory), "{error}");
    // The API is still up: a handshake fails (no certificate yet), the TCP port answers.
    assert!(tokio::net::TcpStream::connect(calltap.addr).await.is_ok());
    let mut text = String::new();
    calltap.state.tls().unwrap().write_metrics(&mut text);
    assert!(
        text.contains("calltap_acme_orders_total{result=\"failed\"} 1"),
        "{text}"
    );
    calltap.stop().await;
}
