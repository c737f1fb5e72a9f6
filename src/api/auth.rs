//! The `X-Secret-Key` check: one layer in front of every contract route, so no endpoint
//! can forget it, and it runs before any extractor reads the body or the store.
//!
//! In order: a source blocked for failed keys gets 429 (nothing compared); a source no
//! key is accepted from gets 403 (nothing compared); then the key is compared with
//! every accepted key in constant time; a wrong or missing key is 401 and counts
//! against the source's failed-key budget; a key from a source outside its own
//! `[[api.keys]] allow_from` is 403; a key over its rate is 429.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::access::{too_many, AccessStats, Client, OpsGranted};
use super::{ApiError, AppState};
use crate::config::{AddressSet, ApiConfig, SecretKey};

/// The header the importer sends its key in.
pub(crate) const HEADER: &str = "x-secret-key";

/// One accepted key: its SHA-256, what the access log calls it, where it is accepted
/// from (empty: wherever `allow_from` lets a request in), and its rate bucket.
pub(crate) struct KnownKey {
    digest: [u8; 32],
    pub(crate) id: String,
    allow_from: AddressSet,
    pub(crate) bucket: usize,
}

/// The accepted keys, as SHA-256 digests. Comparing digests rather than the keys makes
/// every comparison 32 bytes long, so timing tells neither a key's bytes nor its length.
pub(crate) struct KeyDigests(Vec<KnownKey>);

impl KeyDigests {
    /// Keys with no name and no allow-list of their own.
    pub(crate) fn new(keys: &[SecretKey]) -> Self {
        Self::with_prefix(keys, "")
    }

    /// The same, their ids starting with `prefix` (ops keys: "ops-").
    pub(crate) fn with_prefix(keys: &[SecretKey], prefix: &str) -> Self {
        KeyDigests(
            keys.iter()
                .enumerate()
                .map(|(i, k)| {
                    let digest = digest(k.expose().as_bytes());
                    KnownKey {
                        id: format!("{prefix}{}", key_id(&digest)),
                        digest,
                        allow_from: AddressSet::default(),
                        bucket: i,
                    }
                })
                .collect(),
        )
    }

    /// `[api] secret_keys` (with their file and environment) and `[[api.keys]]`.
    pub(crate) fn from_config(api: &ApiConfig) -> Self {
        let mut keys = Self::new(&api.secret_keys);
        for (bucket, entry) in (keys.0.len()..).zip(&api.keys) {
            for key in &entry.keys {
                let digest = digest(key.expose().as_bytes());
                keys.0.push(KnownKey {
                    id: entry.name.clone().unwrap_or_else(|| key_id(&digest)),
                    digest,
                    allow_from: entry.allow_from.clone(),
                    bucket,
                });
            }
        }
        keys
    }

    /// The key `presented` is, if any. Every key is compared and the match is picked
    /// without a branch, so the time tells neither whether nor which key matched.
    pub(crate) fn matching(&self, presented: &[u8]) -> Option<&KnownKey> {
        let presented = digest(presented);
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (i, key) in self.0.iter().enumerate() {
            let hit = key.digest.ct_eq(&presented);
            index = u32::conditional_select(&index, &(i as u32), hit);
            found |= hit;
        }
        bool::from(found).then(|| &self.0[index as usize])
    }

    /// Whether `presented` is one of the keys.
    #[cfg(test)]
    pub(crate) fn accepts(&self, presented: &[u8]) -> bool {
        self.matching(presented).is_some()
    }

    /// Whether some key is accepted from `source`.
    fn usable_from(&self, source: std::net::IpAddr) -> bool {
        self.0
            .iter()
            .any(|k| k.allow_from.is_empty() || k.allow_from.contains(source))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

impl KnownKey {
    fn allowed_from(&self, source: std::net::IpAddr) -> bool {
        self.allow_from.is_empty() || self.allow_from.contains(source)
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A key's id in logs: the first 8 hex digits of its SHA-256 (32 bits: enough to tell
/// keys apart, too few to test a guess against).
fn key_id(digest: &[u8; 32]) -> String {
    hex::encode(&digest[..4])
}

/// The layer (see the module doc). Rejections are logged with the path and the
/// reason, never the value sent.
pub(crate) async fn require_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if request.extensions().get::<OpsGranted>().is_some() {
        // `/status` with an ops key: the gate has checked it.
        return next.run(request).await;
    }
    let live = state.live();
    let client = request.extensions().get::<Client>().cloned();
    let source = client
        .as_ref()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.source);
    let stats = &state.inner.access;
    if live.api_keys.is_empty() {
        return refuse(
            &request,
            "no secret key is configured on this calltap, so every request is refused \
             (the administrator sets [api] secret_keys)",
        );
    }
    if let Some(wait) = live.limits.blocked(source) {
        AccessStats::count(&stats.failed_keys);
        return too_many(
            "too many requests with a missing or wrong key from this address: wait, then \
             send the right one",
            wait,
        );
    }
    if !live.api_keys.usable_from(source) {
        AccessStats::count(&stats.key_allow_from);
        return ApiError::Forbidden(format!("no API key is accepted from {source}"))
            .into_response();
    }
    let presented = request.headers().get(HEADER).map(|v| v.as_bytes());
    let Some(key) = presented.and_then(|p| live.api_keys.matching(p)) else {
        let reason = if presented.is_some() {
            "wrong X-Secret-Key"
        } else {
            "missing X-Secret-Key header"
        };
        if let Some(wait) = live.limits.key_failed(source) {
            AccessStats::count(&stats.failed_keys);
            tracing::warn!(%source, "too many failed keys: blocked for {} s", wait.as_secs());
            return too_many(
                "too many requests with a missing or wrong key from this address: wait, \
                 then send the right one",
                wait,
            );
        }
        return refuse(&request, reason);
    };
    if let Some(client) = &client {
        let _ = client.key_id.set(key.id.clone());
    }
    if !key.allowed_from(source) {
        AccessStats::count(&stats.key_allow_from);
        tracing::warn!(%source, key = %key.id, "refused: the key is not accepted from this address");
        return ApiError::Forbidden(format!(
            "this key is not accepted from {source} ([[api.keys]] allow_from)"
        ))
        .into_response();
    }
    if let Err(wait) = live.limits.key(key.bucket) {
        AccessStats::count(&stats.rate_key);
        return too_many(
            "too many requests with this key: slow down and retry after the time in \
             Retry-After",
            wait,
        );
    }
    drop(live);
    next.run(request).await
}

fn refuse(request: &Request, reason: &'static str) -> Response {
    tracing::warn!(path = %request.uri().path(), reason, "request refused");
    ApiError::Unauthorized(reason).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_configured_key_is_accepted_and_nothing_else() {
        let keys = KeyDigests::new(&[
            SecretKey::new("old-key-0123456789").unwrap(),
            SecretKey::new("new-key-0123456789").unwrap(),
        ]);
        assert!(keys.accepts(b"old-key-0123456789"));
        assert!(keys.accepts(b"new-key-0123456789"));
        assert!(!keys.accepts(b"new-key-012345678"));
        assert!(!keys.accepts(b""));
        assert!(!KeyDigests::new(&[]).accepts(b""));
    }

    #[test]
    fn the_matching_key_is_found_and_named_by_its_digest() {
        let keys = KeyDigests::new(&[
            SecretKey::new("first-key-0123456789").unwrap(),
            SecretKey::new("second-key-0123456789").unwrap(),
        ]);
        let second = keys.matching(b"second-key-0123456789").unwrap();
        assert_eq!(second.bucket, 1);
        let expected = hex::encode(&Sha256::digest(b"second-key-0123456789")[..4]);
        assert_eq!(second.id, expected);
        assert_eq!(keys.matching(b"first-key-0123456789").unwrap().bucket, 0);
    }
}
