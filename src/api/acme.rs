//! Certificates by ACME (`[api.acme]`): obtained at start when none is cached, renewed
//! `renew_before_days` before expiry, proven by TLS-ALPN-01 on the API's own port (the
//! [`Resolver`] hands the challenge certificate to the CA's `acme-tls/1` handshake)
//! or by HTTP-01 through the plain `redirect_listen` listener.
//!
//! The account key and the certificate live in the store's `acme/` folder (mode
//! 0600), so a restart serves the cached certificate at once and reuses the account.
//! A failure (the CA down, a refused order, a challenge the CA could not reach) is
//! logged with the CA's URL and its problem document, counted on `/metrics`, and
//! retried after 15 minutes, doubling to 12 hours (Let's Encrypt allows 5 failed
//! validations per name and hour); the certificate in use stays.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::PrivateKeyDer;
use rustls::sign::CertifiedKey;

use super::tls::{now_unix, pair_from_pem, provider, LoadedCert, Resolver};
use crate::config::{AcmeChallenge, AcmeConfig};

/// First retry after a failure; doubled after each further failure.
const RETRY_FIRST: Duration = Duration::from_secs(15 * 60);
/// The longest wait between retries.
const RETRY_MOST: Duration = Duration::from_secs(12 * 3600);
/// How long to wait for the CA to validate and to issue, per step. Let's Encrypt
/// takes seconds; a minute covers a busy CA.
const ORDER_PATIENCE: Duration = Duration::from_secs(90);

/// HTTP-01 tokens waiting for the CA: token -> key authorization.
#[derive(Default)]
pub struct Http01Tokens(RwLock<HashMap<String, String>>);

impl Http01Tokens {
    pub(crate) fn get(&self, token: &str) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }

    fn put(&self, token: &str, value: &str) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.to_owned(), value.to_owned());
    }

    fn clear(&self) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// What `/metrics` tells about ACME.
#[derive(Default)]
pub struct AcmeStatus {
    ok: AtomicU64,
    failed: AtomicU64,
    /// Unix seconds of the last failure, 0 for none.
    last_failure: AtomicI64,
    /// Unix seconds of the next attempt.
    next_attempt: AtomicI64,
    last_error: Mutex<Option<String>>,
}

impl AcmeStatus {
    pub(crate) fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "# HELP calltap_acme_orders_total Certificates ordered by ACME, by result.\n\
             # TYPE calltap_acme_orders_total counter\n\
             calltap_acme_orders_total{{result=\"ok\"}} {}\n\
             calltap_acme_orders_total{{result=\"failed\"}} {}",
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP calltap_acme_last_failure_timestamp_seconds When an ACME order last failed (0: never).\n\
             # TYPE calltap_acme_last_failure_timestamp_seconds gauge\n\
             calltap_acme_last_failure_timestamp_seconds {}",
            self.last_failure.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP calltap_acme_next_attempt_timestamp_seconds When calltap next orders or renews.\n\
             # TYPE calltap_acme_next_attempt_timestamp_seconds gauge\n\
             calltap_acme_next_attempt_timestamp_seconds {}",
            self.next_attempt.load(Ordering::Relaxed)
        );
    }

    /// The last failure's message, if the last attempt failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Why an order failed; the message names the CA.
#[derive(Debug, thiserror::Error)]
#[error("ACME with {directory}: {what}")]
pub struct AcmeError {
    directory: String,
    what: String,
}

/// The ACME side of the API: obtains and renews into the resolver.
pub struct Acme {
    config: AcmeConfig,
    dir: PathBuf,
    resolver: Arc<Resolver>,
    tokens: Arc<Http01Tokens>,
    status: Arc<AcmeStatus>,
}

impl Acme {
    /// `dir` is the store's `acme/` folder.
    pub fn new(config: AcmeConfig, dir: PathBuf, resolver: Arc<Resolver>) -> Acme {
        Acme {
            config,
            dir,
            resolver,
            tokens: Arc::default(),
            status: Arc::default(),
        }
    }

    pub fn tokens(&self) -> Arc<Http01Tokens> {
        self.tokens.clone()
    }

    pub fn status(&self) -> Arc<AcmeStatus> {
        self.status.clone()
    }

    fn cert_path(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    fn key_path(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    /// Puts the cached certificate in force when it is there, unexpired and for every
    /// configured domain.
    pub fn load_cached(&self) -> Option<LoadedCert> {
        if !self.cert_path().exists() {
            return None;
        }
        match super::tls::load_pair(&self.cert_path(), &self.key_path()) {
            Ok(cert) if self.config.domains.iter().all(|d| cert.names.contains(d)) => {
                self.resolver.set(cert.clone());
                Some(cert)
            }
            Ok(_) => {
                tracing::info!("ACME: the cached certificate is for other domains; ordering anew");
                None
            }
            Err(e) => {
                tracing::warn!("ACME: the cached certificate cannot be used ({e}); ordering anew");
                None
            }
        }
    }

    /// Renews for ever: sleeps until the certificate is due, orders, retries failures.
    pub async fn run(self) {
        let mut retry = RETRY_FIRST;
        loop {
            let due = match self.resolver.current() {
                Some(cert) => cert.not_after - i64::from(self.config.renew_before_days) * 86_400,
                None => now_unix(),
            };
            self.status.next_attempt.store(due, Ordering::Relaxed);
            let wait = due - now_unix();
            if wait > 0 {
                // Wake at least twice a day: a clock that jumped, or a cached
                // certificate replaced by hand, is seen again.
                let wait = Duration::from_secs(wait as u64).min(Duration::from_secs(12 * 3600));
                tokio::time::sleep(wait).await;
                continue;
            }
            match self.obtain().await {
                Ok(cert) => {
                    tracing::info!(
                        domains = %cert.names.join(","),
                        expires_in_days = cert.days_left(now_unix()).round(),
                        "ACME: certificate obtained from {}",
                        self.config.directory_url()
                    );
                    self.resolver.set(cert);
                    self.status.ok.fetch_add(1, Ordering::Relaxed);
                    *self
                        .status
                        .last_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = None;
                    retry = RETRY_FIRST;
                }
                Err(e) => {
                    let next = now_unix() + retry.as_secs() as i64;
                    tracing::error!(
                        "{e}; the certificate in use (if any) stays; next try in {} min",
                        retry.as_secs() / 60
                    );
                    self.status.failed.fetch_add(1, Ordering::Relaxed);
                    self.status
                        .last_failure
                        .store(now_unix(), Ordering::Relaxed);
                    self.status.next_attempt.store(next, Ordering::Relaxed);
                    *self
                        .status
                        .last_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_MOST);
                }
            }
        }
    }

    fn fail(&self, what: impl std::fmt::Display) -> AcmeError {
        AcmeError {
            directory: self.config.directory_url().to_owned(),
            what: what.to_string(),
        }
    }

    /// One order, start to end: account, challenges, CSR, certificate, cache.
    pub async fn obtain(&self) -> Result<LoadedCert, AcmeError> {
        let result = self.order().await;
        for domain in &self.config.domains {
            self.resolver.clear_challenge(domain);
        }
        self.tokens.clear();
        result
    }

    async fn order(&self) -> Result<LoadedCert, AcmeError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| self.fail(format!("cannot make {}: {e}", self.dir.display())))?;
        let account = self.account().await?;
        let identifiers: Vec<Identifier> = self
            .config
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(|e| self.fail(format!("the new order was refused: {e}")))?;

        let kind = match self.config.challenge {
            AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
            AcmeChallenge::Http01 => ChallengeType::Http01,
        };
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz =
                authz.map_err(|e| self.fail(format!("cannot read an authorization: {e}")))?;
            match authz.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(self.fail(format!("an authorization is {other:?}")));
                }
            }
            let mut challenge = authz.challenge(kind.clone()).ok_or_else(|| {
                self.fail(format!("the CA offers no {kind:?} challenge for this name"))
            })?;
            let domain = challenge.identifier().to_string();
            let key_auth = challenge.key_authorization();
            match kind {
                ChallengeType::TlsAlpn01 => {
                    let cert = challenge_certificate(&domain, key_auth.digest().as_ref())
                        .map_err(|e| self.fail(format!("challenge certificate: {e}")))?;
                    self.resolver.set_challenge(&domain, cert);
                }
                _ => self.tokens.put(&challenge.token, key_auth.as_str()),
            }
            challenge
                .set_ready()
                .await
                .map_err(|e| self.fail(format!("the challenge for {domain} failed: {e}")))?;
        }

        let patience = RetryPolicy::new()
            .initial_delay(Duration::from_millis(500))
            .timeout(ORDER_PATIENCE);
        let status = order
            .poll_ready(&patience)
            .await
            .map_err(|e| self.fail(format!("waiting for validation: {e}")))?;
        if status != OrderStatus::Ready {
            let why = order
                .state()
                .error
                .as_ref()
                .map_or_else(|| format!("the order is {status:?}"), |p| p.to_string());
            return Err(self.fail(format!(
                "the CA could not validate {} ({why}); it must reach this calltap at {} \
                 on port {}",
                self.config.domains.join(", "),
                self.config.domains.join(", "),
                match self.config.challenge {
                    AcmeChallenge::TlsAlpn01 => 443,
                    AcmeChallenge::Http01 => 80,
                }
            )));
        }

        let key = rcgen::KeyPair::generate().map_err(|e| self.fail(e))?;
        let csr = rcgen::CertificateParams::new(self.config.domains.clone())
            .and_then(|params| params.serialize_request(&key))
            .map_err(|e| self.fail(format!("making the certificate request: {e}")))?;
        order
            .finalize_csr(csr.der())
            .await
            .map_err(|e| self.fail(format!("finalizing the order: {e}")))?;
        let chain = order
            .poll_certificate(&patience)
            .await
            .map_err(|e| self.fail(format!("downloading the certificate: {e}")))?;
        let key_pem = key.serialize_pem();
        let cert = pair_from_pem(
            chain.as_bytes(),
            &self.cert_path(),
            key_pem.as_bytes(),
            &self.key_path(),
        )
        .map_err(|e| self.fail(format!("the CA's certificate is not usable: {e}")))?;
        // Key first: a crash between the two renames leaves a pair that does not match,
        // which load_cached refuses (and orders anew), never a new certificate with an
        // old key.
        write_private(&self.key_path(), key_pem.as_bytes())
            .and_then(|()| write_private(&self.cert_path(), chain.as_bytes()))
            .map_err(|e| self.fail(format!("cannot cache the certificate: {e}")))?;
        Ok(cert)
    }

    /// The cached account for this directory, or a new one (then cached).
    async fn account(&self) -> Result<Account, AcmeError> {
        let url = self.config.directory_url();
        let path = self.dir.join(format!("account-{}.json", short_hash(url)));
        let builder = || match &self.config.ca_file {
            Some(ca) => Account::builder_with_root(ca).map_err(|e| {
                self.fail(format!(
                    "cannot use {} as the ACME server's root: {e}",
                    ca.display()
                ))
            }),
            None => Account::builder()
                .map_err(|e| self.fail(format!("cannot set up the HTTPS client: {e}"))),
        };
        if let Ok(text) = std::fs::read_to_string(&path) {
            match serde_json::from_str::<AccountCredentials>(&text) {
                Ok(credentials) => {
                    return builder()?
                        .from_credentials(credentials)
                        .await
                        .map_err(|e| self.fail(format!("cannot reach the directory: {e}")));
                }
                Err(e) => tracing::warn!(
                    "ACME: {} is not an account ({e}); making a new account",
                    path.display()
                ),
            }
        }
        let contact = self.config.contact_url();
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let (account, credentials) = builder()?
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                url.to_owned(),
                None,
            )
            .await
            .map_err(|e| self.fail(format!("cannot create an account: {e}")))?;
        let text = serde_json::to_vec(&credentials).map_err(|e| self.fail(e))?;
        write_private(&path, &text).map_err(|e| {
            self.fail(format!(
                "cannot cache the account in {}: {e}",
                path.display()
            ))
        })?;
        tracing::info!("ACME: account created with {url}");
        Ok(account)
    }
}

/// TLS-ALPN-01's certificate (RFC 8737): self-signed, for `domain`, carrying the key
/// authorization's digest in the acmeIdentifier extension.
fn challenge_certificate(domain: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec![domain.to_owned()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let key_der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| e.to_string())?;
    let signing = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    )))
}

/// Writes a file readable by calltap's user only, through a temporary name.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Eight hex digits of SHA-256, naming a directory's account file.
fn short_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(text.as_bytes())[..4])
}
