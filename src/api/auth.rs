//! The `X-Secret-Key` check: one layer in front of every contract route, so no endpoint
//! can forget it, and it runs before any extractor reads the body or the store.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::{ApiError, AppState};
use crate::config::SecretKey;

/// The header the importer sends its key in.
pub(crate) const HEADER: &str = "x-secret-key";

/// SHA-256 digests of the accepted keys. Comparing digests rather than the keys makes
/// every comparison 32 bytes long, so timing tells neither a key's bytes nor its length.
pub(crate) struct KeyDigests(Vec<[u8; 32]>);

impl KeyDigests {
    pub(crate) fn new(keys: &[SecretKey]) -> Self {
        KeyDigests(keys.iter().map(|k| digest(k.expose().as_bytes())).collect())
    }

    /// Whether `presented` is one of the keys. Every key is compared (no early exit), so
    /// the time does not tell which key matched during a rotation either.
    pub(crate) fn accepts(&self, presented: &[u8]) -> bool {
        let presented = digest(presented);
        let mut ok = Choice::from(0);
        for key in &self.0 {
            ok |= key.ct_eq(&presented);
        }
        ok.into()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The layer: 401 with the error shape unless `X-Secret-Key` holds an accepted key.
/// Rejections are logged with the path and the reason, never the value sent.
pub(crate) async fn require_key(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let live = state.live();
    let refusal = match request.headers().get(HEADER) {
        _ if live.api_keys.is_empty() => {
            "no secret key is configured on this calltap, so every request is refused \
             (the administrator sets [api] secret_keys)"
        }
        None => "missing X-Secret-Key header",
        Some(value) if live.api_keys.accepts(value.as_bytes()) => {
            drop(live);
            return next.run(request).await;
        }
        Some(_) => "wrong X-Secret-Key",
    };
    tracing::warn!(path = %request.uri().path(), reason = refusal, "request refused");
    ApiError::Unauthorized(refusal).into_response()
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
}
