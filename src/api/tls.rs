//! Built-in HTTPS: rustls (ring) under the accept loop of `server.rs`.
//!
//! - TLS 1.2 and 1.3 with rustls's cipher suites, which are only the modern ones
//!   (AES-GCM and ChaCha20-Poly1305 with ECDHE; no CBC, no RSA key exchange); a client
//!   that offers nothing else fails its handshake, counted and logged.
//! - ALPN: `h2` first, then `http/1.1`; with ACME's TLS-ALPN-01 also `acme-tls/1`,
//!   whose handshakes get the challenge certificate and then are closed.
//! - The certificate is whatever the [`Resolver`] holds: from files ([`CertFiles`],
//!   checked for changes on every new connection and every few seconds, and re-read on
//!   SIGHUP), or from ACME (`acme.rs`). A new pair that does not load keeps the old
//!   one, and the log says why.
//! - Plain HTTP spoken to the TLS port gets a plain 400 in the contract's error shape
//!   saying to use https, instead of a TLS alert the client cannot show.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::error::error_body;
use super::server::{Acceptor, Protocol};

/// The ALPN name of TLS-ALPN-01 (RFC 8737).
pub(crate) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// How often the certificate files are looked at besides each new connection, so a
/// change on a quiet API is loaded (and a bad one logged) soon after it is written.
pub(crate) const WATCH_EVERY: Duration = Duration::from_secs(5);

/// Why a certificate or key could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----): {why}", path.display())]
    NoCertificate { path: PathBuf, why: String },
    #[error("{} holds no PEM private key (PKCS#8, PKCS#1 RSA or SEC1 EC): {why}", path.display())]
    NoKey { path: PathBuf, why: String },
    #[error("{} holds a private key rustls cannot use: {why}", path.display())]
    BadKey { path: PathBuf, why: String },
    #[error("the private key in {} does not belong to the certificate in {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("{} is not a valid X.509 certificate: {why}", path.display())]
    BadCertificate { path: PathBuf, why: String },
    #[error("the certificate in {} expired on {when}: renew it (certbot renew, or [api.acme])", path.display())]
    Expired { path: PathBuf, when: String },
    #[error("the certificate in {} is not valid before {when}: is this machine's clock right?", path.display())]
    NotYetValid { path: PathBuf, when: String },
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A certificate ready to serve, with what `/metrics` and the log tell about it.
#[derive(Clone)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// Unix seconds.
    pub not_after: i64,
    /// DNS names and IP addresses it is for.
    pub names: Vec<String>,
}

impl LoadedCert {
    /// Days left until it expires (negative once expired), at `now` (Unix seconds).
    pub fn days_left(&self, now: i64) -> f64 {
        (self.not_after - now) as f64 / 86_400.0
    }
}

/// The crypto provider for every TLS use in calltap: ring's, whose suites are all
/// modern and which builds without a C toolchain beyond cc.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Reads and checks a PEM certificate chain and its private key.
pub fn load_pair(cert_path: &Path, key_path: &Path) -> Result<LoadedCert, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(cert_path)?;
    let key_pem = read(key_path)?;
    pair_from_pem(&cert_pem, cert_path, &key_pem, key_path)
}

/// [`load_pair`] on PEM text already read; the paths name the sources in errors.
pub fn pair_from_pem(
    cert_pem: &[u8],
    cert_path: &Path,
    key_pem: &[u8],
    key_path: &Path,
) -> Result<LoadedCert, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::NoCertificate {
            path: cert_path.to_owned(),
            why: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_owned(),
            why: "no certificate in the file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::NoKey {
        path: key_path.to_owned(),
        why: e.to_string(),
    })?;
    let (not_before, not_after, names) = certificate_facts(&chain[0], cert_path)?;
    let now = now_unix();
    if not_after < now {
        return Err(TlsError::Expired {
            path: cert_path.to_owned(),
            when: rfc3339(not_after),
        });
    }
    if not_before > now + 60 {
        return Err(TlsError::NotYetValid {
            path: cert_path.to_owned(),
            when: rfc3339(not_before),
        });
    }
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::BadKey {
            path: key_path.to_owned(),
            why: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch {
                cert: cert_path.to_owned(),
                key: key_path.to_owned(),
            })
        }
        Err(e) => {
            return Err(TlsError::BadCertificate {
                path: cert_path.to_owned(),
                why: e.to_string(),
            })
        }
    }
    Ok(LoadedCert {
        key: Arc::new(certified),
        not_after,
        names,
    })
}

/// The leaf's validity (Unix seconds) and names.
fn certificate_facts(
    der: &CertificateDer<'_>,
    path: &Path,
) -> Result<(i64, i64, Vec<String>), TlsError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::BadCertificate {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
    let validity = cert.validity();
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(dns) => names.push(dns.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(ip) => {
                    let ip = match ip.len() {
                        4 => <[u8; 4]>::try_from(*ip).ok().map(std::net::IpAddr::from),
                        16 => <[u8; 16]>::try_from(*ip).ok().map(std::net::IpAddr::from),
                        _ => None,
                    };
                    names.extend(ip.map(|ip| ip.to_string()));
                }
                _ => {}
            }
        }
    }
    Ok((
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
        names,
    ))
}

fn rfc3339(unix: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The certificate rustls hands out: the one in force, or for a TLS-ALPN-01 handshake
/// the challenge certificate of the name asked for.
#[derive(Default)]
pub struct Resolver {
    current: RwLock<Option<LoadedCert>>,
    challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl Resolver {
    pub fn set(&self, cert: LoadedCert) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(cert);
    }

    pub fn current(&self) -> Option<LoadedCert> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_challenge(&self, domain: &str, key: Arc<CertifiedKey>) {
        self.challenges
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(domain.to_ascii_lowercase(), key);
    }

    pub(crate) fn clear_challenge(&self, domain: &str) {
        self.challenges
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&domain.to_ascii_lowercase());
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if acme {
            let name = hello.server_name()?.to_ascii_lowercase();
            return self
                .challenges
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&name)
                .cloned();
        }
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|c| c.key.clone())
    }
}

/// TLS counters for `/metrics`.
#[derive(Default)]
pub struct TlsStats {
    pub(crate) handshakes: AtomicU64,
    pub(crate) plain_http: AtomicU64,
    pub(crate) acme_challenges: AtomicU64,
    pub(crate) reloads_ok: AtomicU64,
    pub(crate) reloads_failed: AtomicU64,
    /// Failed handshakes by reason (see [`failure_reason`]).
    pub(crate) failures: Mutex<HashMap<&'static str, u64>>,
    /// When a failure of each reason was last logged (Unix seconds), so a scanner
    /// cannot flood the log.
    logged: Mutex<HashMap<&'static str, i64>>,
}

/// What serving TLS holds: the resolver, the file watcher (when the certificate comes
/// from files) and the counters.
pub struct TlsRuntime {
    pub resolver: Arc<Resolver>,
    pub files: Option<CertFiles>,
    pub stats: TlsStats,
    /// Set when ACME manages the certificate.
    pub acme: Option<Arc<super::acme::AcmeStatus>>,
}

impl TlsRuntime {
    /// Re-reads the certificate files now (SIGHUP), whether or not they changed.
    pub fn reload(&self) {
        if let Some(files) = &self.files {
            files.refresh(true, &self.resolver, &self.stats);
        }
    }

    /// Loads the files again if they changed since last look.
    pub(crate) fn refresh_if_changed(&self) {
        if let Some(files) = &self.files {
            files.refresh(false, &self.resolver, &self.stats);
        }
    }

    /// Prometheus lines: the certificate's days left, handshakes, reloads, ACME.
    pub fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let s = &self.stats;
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP calltap_tls_certificate_expiry_days Days until the served certificate expires.\n\
             # TYPE calltap_tls_certificate_expiry_days gauge"
        );
        if let Some(cert) = self.resolver.current() {
            let _ = writeln!(
                out,
                "calltap_tls_certificate_expiry_days {:.3}",
                cert.days_left(now_unix())
            );
        }
        let _ = writeln!(
            out,
            "# HELP calltap_tls_handshakes_total TLS handshakes completed.\n\
             # TYPE calltap_tls_handshakes_total counter\n\
             calltap_tls_handshakes_total {}",
            load(&s.handshakes)
        );
        let _ = writeln!(
            out,
            "# HELP calltap_tls_handshake_failures_total Failed TLS handshakes by reason.\n\
             # TYPE calltap_tls_handshake_failures_total counter"
        );
        let mut failures: Vec<(&str, u64)> = s
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        failures.sort();
        for (reason, n) in failures {
            let _ = writeln!(
                out,
                "calltap_tls_handshake_failures_total{{reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP calltap_tls_plain_http_total Plain HTTP requests sent to the TLS port (answered 400).\n\
             # TYPE calltap_tls_plain_http_total counter\n\
             calltap_tls_plain_http_total {}",
            load(&s.plain_http)
        );
        let _ = writeln!(
            out,
            "# HELP calltap_tls_certificate_reloads_total Certificate files loaded after a change or SIGHUP, by result.\n\
             # TYPE calltap_tls_certificate_reloads_total counter\n\
             calltap_tls_certificate_reloads_total{{result=\"ok\"}} {}\n\
             calltap_tls_certificate_reloads_total{{result=\"failed\"}} {}",
            load(&s.reloads_ok),
            load(&s.reloads_failed)
        );
        if let Some(acme) = &self.acme {
            acme.write_metrics(out);
        }
    }
}

/// A certificate and key read from files, and what they looked like when last read.
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    seen: Mutex<Option<(Stamp, Stamp)>>,
}

/// What tells a file changed: modification time, size and inode (a rename over it,
/// as certbot's symlinks and most tools do, changes the inode).
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

impl CertFiles {
    /// Loads the pair for the first time: an error here stops the start.
    pub fn open(cert: &Path, key: &Path) -> Result<(CertFiles, LoadedCert), TlsError> {
        let stamps = (stamp(cert), stamp(key));
        let loaded = load_pair(cert, key)?;
        Ok((
            CertFiles {
                cert: cert.to_owned(),
                key: key.to_owned(),
                seen: Mutex::new(Some(stamps)),
            },
            loaded,
        ))
    }

    /// Loads the pair again when either file changed (or always, with `force`); a pair
    /// that does not load leaves `resolver` as it is and is logged once per change.
    fn refresh(&self, force: bool, resolver: &Resolver, stats: &TlsStats) {
        let stamps = (stamp(&self.cert), stamp(&self.key));
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if !force && seen.as_ref() == Some(&stamps) {
                return;
            }
            *seen = Some(stamps);
        }
        match load_pair(&self.cert, &self.key) {
            Ok(loaded) => {
                tracing::info!(
                    cert = %self.cert.display(),
                    names = %loaded.names.join(","),
                    expires = %rfc3339(loaded.not_after),
                    "TLS certificate loaded"
                );
                resolver.set(loaded);
                stats.reloads_ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!("TLS certificate not reloaded, the one in use stays: {e}");
                stats.reloads_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The server side of TLS: the rustls configuration over a [`Resolver`].
pub(crate) fn server_config(
    resolver: Arc<Resolver>,
    acme_alpn: bool,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if acme_alpn {
        config.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    // Session tickets: an importer reconnecting skips the full handshake.
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(Arc::new(config))
}

/// The [`Acceptor`] for HTTPS.
pub struct TlsAcceptor {
    inner: tokio_rustls::TlsAcceptor,
    runtime: Arc<TlsRuntime>,
}

impl TlsAcceptor {
    pub fn new(config: Arc<ServerConfig>, runtime: Arc<TlsRuntime>) -> TlsAcceptor {
        TlsAcceptor {
            inner: tokio_rustls::TlsAcceptor::from(config),
            runtime,
        }
    }

    async fn handshake(&self, tcp: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        // The first byte of a TLS connection is a handshake record (22); anything
        // else here is most likely plain HTTP sent to the wrong scheme.
        let mut first = [0u8; 1];
        if tcp.peek(&mut first).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if first[0] != 0x16 {
            self.runtime
                .stats
                .plain_http
                .fetch_add(1, Ordering::Relaxed);
            answer_plain_http(tcp).await;
            return Err(io::Error::other("plain HTTP on the TLS port"));
        }
        self.runtime.refresh_if_changed();
        let peer = tcp.peer_addr().ok();
        let stream = match self.inner.accept(tcp).await {
            Ok(stream) => stream,
            Err(e) => {
                self.failed(&e, peer);
                return Err(e);
            }
        };
        if stream.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) {
            // The CA has seen the challenge certificate: that is all it asks.
            self.runtime
                .stats
                .acme_challenges
                .fetch_add(1, Ordering::Relaxed);
            let mut stream = stream;
            let _ = stream.shutdown().await;
            return Err(io::Error::other("ACME TLS-ALPN-01 challenge answered"));
        }
        self.runtime
            .stats
            .handshakes
            .fetch_add(1, Ordering::Relaxed);
        Ok(stream)
    }

    /// Counts a failed handshake by reason, and logs it (once a minute per reason).
    fn failed(&self, error: &io::Error, peer: Option<std::net::SocketAddr>) {
        let reason = failure_reason(error);
        let stats = &self.runtime.stats;
        *stats
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
        let now = now_unix();
        let mut logged = stats.logged.lock().unwrap_or_else(|e| e.into_inner());
        let last = logged.entry(reason).or_insert(i64::MIN);
        if now.saturating_sub(*last) >= 60 {
            *last = now;
            drop(logged);
            let hint = match reason {
                "incompatible" => {
                    ": the client offers no TLS 1.2/1.3 cipher suite calltap accepts \
                     (AES-GCM or ChaCha20-Poly1305 with ECDHE); update the client"
                }
                "no_certificate" => ": calltap has no certificate yet (ACME has not obtained one)",
                "client_alert" => {
                    ": the client refused the certificate (does it trust its issuer, and \
                     is the name it connects to one of the certificate's?)"
                }
                _ => "",
            };
            let peer = peer.map_or_else(|| "-".to_owned(), |p| p.to_string());
            tracing::warn!(
                reason,
                %peer,
                "TLS handshake failed: {error}{hint} (further failures of this kind are \
                 counted on /metrics, logged at most once a minute)"
            );
        }
    }
}

/// A short label for why a handshake failed.
fn failure_reason(error: &io::Error) -> &'static str {
    let Some(tls) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return match error.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe => "closed",
            _ => "other",
        };
    };
    match tls {
        rustls::Error::PeerIncompatible(_) => "incompatible",
        rustls::Error::AlertReceived(_) => "client_alert",
        rustls::Error::InvalidMessage(_) | rustls::Error::PeerMisbehaved(_) => "bad_message",
        rustls::Error::General(m) if m.contains("certificate") => "no_certificate",
        _ => "other",
    }
}

/// A 400 over plain HTTP: this port speaks HTTPS. What the client already sent is read
/// first, so closing does not reset the connection under the answer.
async fn answer_plain_http(mut tcp: TcpStream) {
    let mut sink = [0u8; 8192];
    let _ = tcp.try_read(&mut sink);
    let body = error_body(
        "this port speaks HTTPS: calltap's API is reached with https:// (plain HTTP is \
         not served here)",
    );
    let head = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = tcp.write_all(&[head.as_bytes(), &body].concat()).await;
    let _ = tcp.shutdown().await;
}

impl Acceptor for TlsAcceptor {
    type Io = TlsStream<TcpStream>;

    fn accept(
        &self,
        tcp: TcpStream,
    ) -> impl std::future::Future<Output = io::Result<Self::Io>> + Send {
        self.handshake(tcp)
    }

    fn protocol(io: &Self::Io) -> Protocol {
        match io.get_ref().1.alpn_protocol() {
            Some(b"h2") => Protocol::Http2,
            _ => Protocol::Http1,
        }
    }

    fn is_tls(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(names: &[&str]) -> (String, String) {
        let cert = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        (cert.cert.pem(), cert.signing_key.serialize_pem())
    }

    #[test]
    fn a_pair_loads_and_tells_its_names_and_expiry() {
        let (cert, key) = pair(&["calltap.test", "127.0.0.1"]);
        let loaded =
            pair_from_pem(cert.as_bytes(), "c".as_ref(), key.as_bytes(), "k".as_ref()).unwrap();
        assert_eq!(loaded.names, ["calltap.test", "127.0.0.1"]);
        assert!(loaded.days_left(now_unix()) > 300.0);
    }

    #[test]
    fn bad_pairs_name_their_files() {
        let (cert, key) = pair(&["a.test"]);
        let (_, other_key) = pair(&["b.test"]);
        let err = pair_from_pem(
            cert.as_bytes(),
            "/etc/c.pem".as_ref(),
            other_key.as_bytes(),
            "/etc/k.pem".as_ref(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("/etc/k.pem") && err.contains("does not belong"),
            "{err}"
        );
        let err = pair_from_pem(
            key.as_bytes(),
            "/etc/c.pem".as_ref(),
            key.as_bytes(),
            "/etc/k.pem".as_ref(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("/etc/c.pem") && err.contains("no PEM certificate"),
            "{err}"
        );
        let err = pair_from_pem(
            cert.as_bytes(),
            "/etc/c.pem".as_ref(),
            cert.as_bytes(),
            "/etc/k.pem".as_ref(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("/etc/k.pem") && err.contains("no PEM private key"),
            "{err}"
        );
    }

    #[test]
    fn an_expired_certificate_is_refused() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["old.test".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        let err = pair_from_pem(
            cert.pem().as_bytes(),
            "/etc/old.pem".as_ref(),
            key.serialize_pem().as_bytes(),
            "k".as_ref(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("/etc/old.pem") && err.contains("expired on 2021-01-01"),
            "{err}"
        );
    }
}
