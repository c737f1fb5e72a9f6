//! The `[api]` settings that decide who reaches the API and how: built-in TLS and ACME
//! (`[api.acme]`), keys with their own allow-lists (`[[api.keys]]`), and rate limits
//! (`[api.rate_limit]`). Checked here, loaded with the rest of `[api]`.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::{k, Locator, PathSeg};
use super::values::{self, AddressSet, SecretKey};
use super::{ApiConfig, ConfigError};

/// Let's Encrypt's production directory, the default.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (untrusted certificates, generous limits), for a
/// first try: `directory = "staging"`.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// How ACME proves that calltap answers for its domains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AcmeChallenge {
    /// TLS-ALPN-01 on the API's own port: no other port to open. The CA connects to
    /// port 443 of the domain, so the API must be reachable there.
    #[default]
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
    /// HTTP-01: the CA fetches a token over plain HTTP on port 80, answered by the
    /// `redirect_listen` listener (on port 80, or one that port 80 is forwarded to).
    #[serde(rename = "http-01")]
    Http01,
}

/// `[api.acme]`: certificates obtained and renewed automatically.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AcmeConfig {
    /// The names the certificate is for; the first is its subject. Required.
    pub domains: Vec<String>,
    /// Where the CA writes about expiring certificates or problems with the account:
    /// an e-mail address ("mailto:" is added). Default none.
    pub contact: Option<String>,
    /// The CA's ACME directory: "production" (Let's Encrypt, the default), "staging"
    /// (Let's Encrypt's test CA), or the URL of another CA's directory.
    pub directory: String,
    /// "tls-alpn-01" (default: on the API port itself) or "http-01" (port 80, through
    /// `redirect_listen`).
    pub challenge: AcmeChallenge,
    /// A PEM file of the root(s) that sign the ACME server's own HTTPS certificate, for a
    /// private CA (step-ca, Pebble); default none: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Renew this many days before the certificate expires. Default 30: Let's Encrypt's
    /// certificates last 90 days and its own advice is to renew at 60, which leaves a
    /// month of daily retries should the CA or the network be down.
    pub renew_before_days: u32,
}

impl Default for AcmeConfig {
    fn default() -> Self {
        AcmeConfig {
            domains: Vec::new(),
            contact: None,
            directory: "production".into(),
            challenge: AcmeChallenge::TlsAlpn01,
            ca_file: None,
            renew_before_days: 30,
        }
    }
}

impl AcmeConfig {
    /// The directory URL `directory` names.
    pub fn directory_url(&self) -> &str {
        match self.directory.as_str() {
            "production" => LETS_ENCRYPT,
            "staging" => LETS_ENCRYPT_STAGING,
            url => url,
        }
    }

    /// The contact as the ACME account takes it.
    pub fn contact_url(&self) -> Option<String> {
        self.contact.as_deref().map(|c| {
            if c.starts_with("mailto:") {
                c.to_owned()
            } else {
                format!("mailto:{c}")
            }
        })
    }
}

/// One `[[api.keys]]` entry: API keys from a file, with a name for the access log and
/// an optional allow-list of their own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// A file with the key(s), one per line (`#` comments), like `secret_keys_file`:
    /// several lines rotate a key without downtime.
    pub key_file: PathBuf,
    /// Shown in the access log instead of the key's fingerprint. Default none.
    #[serde(default)]
    pub name: Option<String>,
    /// Sources this key is accepted from (besides `[api] allow_from`). Default
    /// empty: from wherever `allow_from` lets a request in.
    #[serde(default)]
    pub allow_from: AddressSet,
    /// The keys read from `key_file`.
    #[serde(skip)]
    pub keys: Vec<SecretKey>,
}

/// `[api.rate_limit]`: requests per second per source address and per key, each with
/// a burst, and failed-key attempts per minute per source.
///
/// The defaults never touch the importer: its walk over a 10,000-call day is about
/// 20,000 requests (a link and a download per call, plus a few `POST /calls`), and
/// over the internet a client with eight connections and 50 ms round trips makes at
/// most ~160 small requests a second, while downloads of multi-megabyte WAVs come far
/// slower. calltap itself answers a few thousand a second on two cores
/// (benches/api.rs), so these limits stop a runaway client or a scraper long before it
/// costs the importer anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Requests per second from one source (an IPv6 /64 is one source), sustained;
    /// 0 turns the limit off. Default 200.
    pub per_source: u32,
    /// Requests one source may make at once above that pace. Default 2000: a
    /// backfill's burst of link requests.
    pub per_source_burst: u32,
    /// Requests per second with one key, from wherever; 0 turns it off. Default 400,
    /// so a key shared by two importer workers still fits.
    pub per_key: u32,
    /// Burst per key. Default 4000.
    pub per_key_burst: u32,
    /// Requests with a missing or wrong key per minute from one source, with a burst
    /// of as many; past them every request from that source with a key gets 429 (so
    /// guessing stops) until the budget refills. 0 turns it off. Default 30: an
    /// importer with the right key never fails, one with a wrong key fails a request
    /// per poll, and a guesser gets 43,200 tries a day at a key of 2^256.
    pub failed_keys_per_minute: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_source: 200,
            per_source_burst: 2000,
            per_key: 400,
            per_key_burst: 4000,
            failed_keys_per_minute: 30,
        }
    }
}

/// `redirect_listen`: an optional socket address.
pub(crate) mod optional_addr {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SocketAddr>, D::Error> {
        values::socket_addr::deserialize(d).map(Some)
    }

    pub(crate) fn serialize<S: Serializer>(
        addr: &Option<SocketAddr>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match addr {
            Some(a) => s.collect_str(a),
            None => s.serialize_none(),
        }
    }
}

/// Warnings about TLS and ACME settings that load but may not work.
pub(crate) fn warnings(api: &ApiConfig) -> Vec<String> {
    let mut out = Vec::new();
    if let (Some(acme), Some(addr)) = (&api.acme, api.redirect_listen) {
        if acme.challenge == AcmeChallenge::Http01 && addr.port() != 80 {
            out.push(format!(
                "the CA validates http-01 on port 80, but redirect_listen is {addr}: \
                 forward port 80 to it"
            ));
        }
    }
    out
}

/// Checks the TLS, ACME, key and access settings of `[api]`.
pub(crate) fn check(api: &ApiConfig, loc: &Locator<'_>) -> Result<(), ConfigError> {
    let at = |key: &str| vec![k("api"), k(key)];
    if let Some(acme) = &api.acme {
        let at_acme = |key: &str| vec![k("api"), k("acme"), k(key)];
        if api.tls_cert.is_some() {
            return Err(loc.error(
                &at("tls_cert"),
                "tls_cert and [api.acme] both give the API its certificate: keep one \
                 (your own certificate files, or one obtained by ACME)",
            ));
        }
        if acme.domains.is_empty() {
            return Err(loc.error(
                &at_acme("domains"),
                "[api.acme] needs at least one domain, e.g. domains = [\"calltap.example.com\"]",
            ));
        }
        for (i, domain) in acme.domains.iter().enumerate() {
            let path = [k("api"), k("acme"), k("domains"), PathSeg::Index(i)];
            if !is_dns_name(domain) {
                return Err(loc.error(
                    &path,
                    format!(
                        "{domain:?} is not a domain name a public CA certifies \
                         (letters, digits, '-' and dots, e.g. \"calltap.example.com\")"
                    ),
                ));
            }
            if acme.domains[..i].contains(domain) {
                return Err(loc.error(&path, format!("{domain:?} is listed twice")));
            }
        }
        if !matches!(acme.directory.as_str(), "production" | "staging")
            && !acme.directory.starts_with("https://")
        {
            return Err(loc.error(
                &at_acme("directory"),
                format!(
                    "{:?} is neither \"production\", \"staging\" nor an https:// URL of an \
                     ACME directory",
                    acme.directory
                ),
            ));
        }
        if let Some(contact) = &acme.contact {
            let address = contact.strip_prefix("mailto:").unwrap_or(contact);
            if !address.contains('@') || address.contains(char::is_whitespace) {
                return Err(loc.error(
                    &at_acme("contact"),
                    format!("{contact:?} is not an e-mail address"),
                ));
            }
        }
        if !(1..=60).contains(&acme.renew_before_days) {
            return Err(loc.error(
                &at_acme("renew_before_days"),
                format!(
                    "{} is outside 1..=60 (certificates from Let's Encrypt last 90 days)",
                    acme.renew_before_days
                ),
            ));
        }
        if acme.challenge == AcmeChallenge::Http01 && api.redirect_listen.is_none() {
            return Err(loc.error(
                &at_acme("challenge"),
                "the http-01 challenge needs [api] redirect_listen (e.g. \"0.0.0.0:80\"), \
                 which answers the CA's requests on port 80",
            ));
        }
    }
    let tls = api.tls_cert.is_some() || api.acme.is_some();
    if let Some(addr) = api.redirect_listen {
        if !tls {
            return Err(loc.error(
                &at("redirect_listen"),
                "redirect_listen redirects to https, which needs built-in TLS \
                 (tls_cert and tls_key, or [api.acme])",
            ));
        }
        if addr == api.listen {
            return Err(loc.error(
                &at("redirect_listen"),
                format!("{addr} is the API's own listen address"),
            ));
        }
    }
    for (i, entry) in api.keys.iter().enumerate() {
        if entry
            .name
            .as_deref()
            .is_some_and(|n| n.trim().is_empty() || n.len() > 64 || n.contains(char::is_control))
        {
            return Err(loc.error(
                &[k("api"), k("keys"), PathSeg::Index(i), k("name")],
                "a key name is 1 to 64 printable characters",
            ));
        }
    }
    Ok(())
}

/// `check-config`'s lines on TLS, ACME and access.
pub(crate) fn describe(api: &ApiConfig) -> String {
    let mut lines = Vec::new();
    if let Some(acme) = &api.acme {
        lines.push(format!(
            "tls: certificate by ACME for {} from {} ({}), renewed {} days before expiry, \
             cached in the store's acme/ folder",
            acme.domains.join(", "),
            acme.directory_url(),
            match acme.challenge {
                AcmeChallenge::TlsAlpn01 => "tls-alpn-01 on the API port",
                AcmeChallenge::Http01 => "http-01 on port 80",
            },
            acme.renew_before_days,
        ));
    } else if let (Some(cert), Some(key)) = (&api.tls_cert, &api.tls_key) {
        lines.push(format!(
            "tls: certificate {}, key {} (re-read when they change and on SIGHUP)",
            cert.display(),
            key.display()
        ));
    } else {
        lines.push("tls: none (plain HTTP)".into());
    }
    if let Some(addr) = api.redirect_listen {
        lines.push(format!(
            "redirect: http://{addr} answers with https redirects"
        ));
    }
    let nets = |set: &AddressSet| {
        if set.is_empty() {
            "none".to_owned()
        } else {
            set.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let restricted = api.keys.iter().filter(|k| !k.allow_from.is_empty()).count();
    lines.push(format!(
        "access: allow_from {}; {} [[api.keys]] entries ({} with their own allow-list); \
         trusted proxies {}; recording links {}",
        if api.allow_from.is_empty() {
            "any source".to_owned()
        } else {
            nets(&api.allow_from)
        },
        api.keys.len(),
        restricted,
        nets(&api.trusted_proxies),
        if api.links_from_anywhere {
            "from anywhere"
        } else {
            "from allow_from only"
        },
    ));
    lines.push(format!(
        "operations: /metrics and /status from {}; {} ops keys",
        match &api.ops_from {
            Some(set) => nets(set),
            None if api.allow_from.is_empty() => "loopback".to_owned(),
            None => format!("loopback, {}", nets(&api.allow_from)),
        },
        api.ops_keys.len(),
    ));
    let r = &api.rate_limit;
    let rate = |n: u32, burst: u32| match n {
        0 => "off".to_owned(),
        n => format!("{n}/s (burst {burst})"),
    };
    lines.push(format!(
        "rate limits: {} per source, {} per key, {} failed keys a minute per source",
        rate(r.per_source, r.per_source_burst),
        rate(r.per_key, r.per_key_burst),
        match r.failed_keys_per_minute {
            0 => "no limit on".to_owned(),
            n => n.to_string(),
        },
    ));
    lines.join("\n")
}

/// A DNS name: dot-separated labels of letters, digits and '-', at least two labels
/// (a CA certifies no bare host name); `*.` in front for a wildcard is not taken,
/// since the challenges calltap answers cannot prove one.
fn is_dns_name(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    name.parse::<std::net::IpAddr>().is_err()
        && name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(is_dns_name("calltap.example.com"));
        assert!(is_dns_name("calltap.test"));
        assert!(!is_dns_name("localhost"));
        assert!(!is_dns_name("*.example.com"));
        assert!(!is_dns_name("-a.example.com"));
        assert!(!is_dns_name("a..example.com"));
        assert!(!is_dns_name("203.0.113.7"));
    }
}
