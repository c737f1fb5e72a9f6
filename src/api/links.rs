//! Recording links: `GET /calls/{id}/recording` hands out a signed, expiring URL, and
//! `GET /recordings/{id}.wav?exp=..&sig=..` (or `.flac`) serves the recording to whoever
//! holds one, without `X-Secret-Key` (the importer downloads the URL on its own).
//!
//! The file served is the one the record names when the link is used, whatever the
//! link's extension: a WAV encoded to FLAC after the link was made is served as the
//! FLAC, with its own type and file name.
//!
//! The signature is HMAC-SHA256 over `id|exp` (an id never holds `|`), hex. The first
//! link key signs and every link key verifies, so a key can be rotated while links made
//! with the old one are still in the importer's queue. The file served is the one the
//! call's record names inside the recordings folder: the id in the URL only finds the
//! record, it is never joined to a path.

use std::path::{Component, Path as FsPath};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::{ApiError, AppState, Live};
use crate::call::RecordingFile;
use crate::config::SecretKey;

type HmacSha256 = Hmac<Sha256>;

/// The longest call id accepted in a path; calltap's own ids are 26 characters.
const MAX_ID_LEN: usize = 128;

/// The link keys in force.
pub(crate) struct LinkKeys {
    keys: Vec<Vec<u8>>,
    random: bool,
}

impl LinkKeys {
    /// The configured keys, or the start-up key when none is configured.
    pub(crate) fn new(configured: &[SecretKey], startup: &[u8; 32]) -> LinkKeys {
        if configured.is_empty() {
            LinkKeys {
                keys: vec![startup.to_vec()],
                random: true,
            }
        } else {
            LinkKeys {
                keys: configured
                    .iter()
                    .map(|k| k.expose().as_bytes().to_vec())
                    .collect(),
                random: false,
            }
        }
    }

    pub(crate) fn is_random(&self) -> bool {
        self.random
    }

    fn mac(key: &[u8], id: &str, exp: u64) -> HmacSha256 {
        // HMAC takes keys of any length; new_from_slice cannot fail.
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
        mac.update(id.as_bytes());
        mac.update(b"|");
        mac.update(exp.to_string().as_bytes());
        mac
    }

    /// The hex signature of `id` valid until `exp`, with the first key.
    pub(crate) fn sign(&self, id: &str, exp: u64) -> String {
        hex::encode(Self::mac(&self.keys[0], id, exp).finalize().into_bytes())
    }

    /// Whether `sig` (hex) signs `id` and `exp` under any key; constant-time per key.
    pub(crate) fn verify(&self, id: &str, exp: u64, sig: &str) -> bool {
        // Links are written in lower-case hex; accepting upper case too would make two
        // spellings of one signature valid, and an altered link must be refused.
        if sig.bytes().any(|b| b.is_ascii_uppercase()) {
            return false;
        }
        let Ok(sig) = hex::decode(sig) else {
            return false;
        };
        self.keys.iter().fold(false, |ok, key| {
            ok | Self::mac(key, id, exp).verify_slice(&sig).is_ok()
        })
    }
}

/// Whether `id` can be a call id: letters, digits, `-` and `_`. Checked before anything
/// else looks at it, so `..`, `/`, `\` and `%2e%2e` never go further.
fn checked_id(id: &str) -> Result<&str, ApiError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(id)
    } else {
        Err(ApiError::bad_request(
            "not a call id: call ids have 1 to 128 letters, digits, '-' or '_'",
        ))
    }
}

fn path_param(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(p)| p)
        .map_err(|e| ApiError::bad_request(format!("bad path: {}", e.body_text())))
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A signed link to call `id`'s recording, valid for `[api] link_ttl_secs` from now.
pub(crate) fn signed_url(live: &Live, id: &str, ext: &str) -> String {
    format!("{}{}", live.api.link_base(), signed_path(live, id, ext))
}

/// [`signed_url`] without its base: `/recordings/{id}.{ext}?exp=..&sig=..`, for a page
/// served from the same address (the console's player).
pub(crate) fn signed_path(live: &Live, id: &str, ext: &str) -> String {
    let exp = now_unix().saturating_add(live.api.link_ttl_secs);
    let sig = live.link_keys.sign(id, exp);
    format!("/recordings/{id}.{ext}?exp={exp}&sig={sig}")
}

/// The recording of a call, if the record names one and the file is there: of an
/// exported call only when `exported_only` (`GET /calls/{id}/recording`, the importer's
/// view). A signed link serves any call's: calltap signs links for exported calls (the
/// API) and for any call the logged-in administrator opens (the console).
async fn recording_of(
    state: &AppState,
    id: &str,
    exported_only: bool,
) -> Result<RecordingFile, ApiError> {
    let owned = id.to_owned();
    let record = state
        .blocking(move |store| store.get_call(&owned).map_err(ApiError::from))
        .await?
        .filter(|r| r.exported || !exported_only)
        .ok_or_else(|| ApiError::not_found(format!("no call with id {id:?}")))?;
    let Some(file) = record.media.recording else {
        let why = record
            .media
            .no_recording_reason
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        return Err(ApiError::not_found(format!(
            "call {id:?} has no recording{why}"
        )));
    };
    let path = state.store().recordings_dir().join(safe_name(&file.file)?);
    match tokio::fs::metadata(&path).await {
        Ok(meta) if meta.is_file() => Ok(file),
        _ => Err(ApiError::not_found(format!(
            "the recording of call {id:?} is no longer on disk"
        ))),
    }
}

/// A record's file name as one plain path component (defence in depth: the recording
/// layer writes plain names, but a record is data and data can be wrong).
fn safe_name(name: &str) -> Result<&FsPath, ApiError> {
    let path = FsPath::new(name);
    let mut parts = path.components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(_)), None) if !name.contains('\\') => Ok(path),
        _ => {
            tracing::error!(file = %name, "a call record names a recording outside the recordings folder");
            Err(ApiError::Internal(
                "the recording's file name is not valid".into(),
            ))
        }
    }
}

#[derive(Serialize)]
pub(crate) struct RecordingLink {
    url: String,
    filename: String,
    #[serde(rename = "mimeType")]
    mime_type: &'static str,
}

/// The extensions a link's file name may carry.
const EXTENSIONS: [&str; 4] = [".wav", ".flac", ".opus", ".mp3"];

/// `GET /calls/{id}/recording`.
pub(crate) async fn recording(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<RecordingLink>, ApiError> {
    let id = path_param(path)?;
    let id = checked_id(&id)?;
    let file = recording_of(&state, id, true).await?;
    let ext = file.extension();
    let live = state.live();
    Ok(Json(RecordingLink {
        url: signed_url(&live, id, ext),
        filename: file.download_name(id),
        mime_type: file.mime_type(),
    }))
}

/// `GET /recordings/{id}.wav?exp=..&sig=..`: the recording, with Range support: tower-http's
/// `ServeFile` serves the file (HEAD, `Last-Modified`, `If-Modified-Since`,
/// `If-Unmodified-Since`, one range), after [`range_plan`] has decided what the Range
/// header means under RFC 9110.
pub(crate) async fn download(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Result<Response, ApiError> {
    let file = path_param(path)?;
    let id = EXTENSIONS
        .iter()
        .find_map(|ext| file.strip_suffix(ext))
        .ok_or_else(|| {
            ApiError::not_found("recordings are served as <call id>.wav, .flac, .opus or .mp3")
        })?;
    let id = checked_id(id)?;
    let (exp, sig) = link_params(query.as_deref().unwrap_or(""))?;
    if !state.live().link_keys.verify(id, exp, sig) {
        tracing::warn!(%id, "recording link refused: bad signature");
        return Err(ApiError::Forbidden(
            "this link's signature is not valid: ask GET /calls/{id}/recording for a new link"
                .into(),
        ));
    }
    if exp < now_unix() {
        return Err(ApiError::Forbidden(format!(
            "this link expired at {exp} (Unix time): ask GET /calls/{{id}}/recording for a new one"
        )));
    }
    let (parts, _) = request.into_parts();
    // Twice at most: a WAV encoded to FLAC between reading the record and opening the
    // file is gone, and the record read again names the FLAC.
    let mut attempts = 0;
    let (recording, response) = loop {
        attempts += 1;
        let recording = recording_of(&state, id, false).await?;
        let path = state
            .store()
            .recordings_dir()
            .join(safe_name(&recording.file)?);
        let size = match tokio::fs::metadata(&path).await {
            Ok(meta) => meta.len(),
            Err(_) if attempts < 2 => continue,
            Err(_) => {
                return Err(ApiError::not_found(format!(
                    "the recording of call {id:?} is no longer on disk"
                )))
            }
        };
        let mut request = Request::from_parts(parts.clone(), axum::body::Body::empty());
        match range_plan(request.headers().get(header::RANGE), size) {
            RangePlan::AsAsked => {}
            RangePlan::Whole => {
                request.headers_mut().remove(header::RANGE);
            }
            RangePlan::WholeAsRange => {
                request
                    .headers_mut()
                    .insert(header::RANGE, HeaderValue::from_static("bytes=0-"));
            }
            RangePlan::Unsatisfiable => {
                return Err(ApiError::RangeNotSatisfiable { size: Some(size) })
            }
        }
        let mime: mime::Mime = recording
            .mime_type()
            .parse()
            .map_err(|e| ApiError::Internal(format!("recording type: {e}")))?;
        let response = ServeFile::new_with_mime(path, &mime)
            .oneshot(request)
            .await
            .map_err(|e| ApiError::Internal(format!("cannot serve the recording: {e}")))?;
        if response.status() == StatusCode::NOT_FOUND && attempts < 2 {
            continue;
        }
        break (recording, response);
    };
    let status = response.status();
    if status == StatusCode::RANGE_NOT_SATISFIABLE {
        let size = response
            .headers()
            .get(header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes */"))
            .and_then(|v| v.parse().ok());
        return Err(ApiError::RangeNotSatisfiable { size });
    }
    if status == StatusCode::NOT_FOUND {
        return Err(ApiError::not_found(format!(
            "the recording of call {id:?} is no longer on disk"
        )));
    }
    if status.is_client_error() || status.is_server_error() {
        return Err(ApiError::Internal(format!(
            "serving the recording answered {status}"
        )));
    }
    let mut response = response.map(axum::body::Body::new).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}\"",
        recording.download_name(id)
    )) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// The `exp` and `sig` of a link's query, exactly as the link was made: `exp` in
/// canonical decimal (no sign, no leading zero: the signature covers the number, so
/// `exp=0<exp>` or `exp=+<exp>` would be a second spelling of a signed link), each of
/// them once (a repeated parameter leaves a proxy or a log reading another value than
/// calltap). Other parameters are ignored.
fn link_params(query: &str) -> Result<(u64, &str), ApiError> {
    let (mut exp, mut sig) = (None, None);
    for pair in query.split('&') {
        let (slot, value) = match pair.split_once('=') {
            Some(("exp", v)) => (&mut exp, v),
            Some(("sig", v)) => (&mut sig, v),
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(ApiError::Forbidden(
                "this link repeats exp or sig, so it is not a link calltap made: \
                 ask GET /calls/{id}/recording for a link"
                    .into(),
            ));
        }
    }
    let (Some(exp), Some(sig)) = (exp, sig) else {
        return Err(ApiError::Forbidden(
            "this link is not signed: ask GET /calls/{id}/recording for a link".into(),
        ));
    };
    match exp.parse::<u64>() {
        Ok(n) if n.to_string() == exp => Ok((n, sig)),
        _ => Err(ApiError::Forbidden(
            "this link's exp is not a link calltap made (a plain decimal number of Unix \
             seconds): ask GET /calls/{id}/recording for a link"
                .into(),
        )),
    }
}

/// What a download does with the request's `Range` header.
#[derive(Debug, PartialEq, Eq)]
enum RangePlan {
    /// No Range, or one satisfiable range: `ServeFile` answers it (200 or 206).
    AsAsked,
    /// Answer the whole file (200): the header does not parse, names a unit other than
    /// bytes, or asks for several ranges (RFC 9110 14.2 lets a server ignore all of
    /// these; one 200 is simpler for every client than multipart/byteranges).
    Whole,
    /// A suffix longer than the file means the whole file (RFC 9110 14.1.3): 206 of
    /// every byte.
    WholeAsRange,
    /// No range overlaps the file, or a range ends before it starts: 416 with
    /// `Content-Range: bytes */size`.
    Unsatisfiable,
}

fn range_plan(header: Option<&HeaderValue>, size: u64) -> RangePlan {
    use http_range_header::{EndPosition, RangeUnsatisfiableError, StartPosition};
    let Some(header) = header else {
        return RangePlan::AsAsked;
    };
    let Ok(text) = header.to_str() else {
        return RangePlan::Whole;
    };
    let ranges = match http_range_header::parse_range_header(text) {
        Ok(parsed) => parsed.ranges,
        // `bytes=-0` parses in RFC 9110's grammar and selects nothing.
        Err(RangeUnsatisfiableError::ZeroSuffix) => return RangePlan::Unsatisfiable,
        Err(_) => return RangePlan::Whole,
    };
    // A range is satisfiable when it starts inside the file (a suffix always does).
    let satisfiable = |r: &http_range_header::SyntacticallyCorrectRange| match (r.start, r.end) {
        (StartPosition::FromLast(_), _) => true,
        (StartPosition::Index(first), EndPosition::Index(last)) => first <= last && first < size,
        (StartPosition::Index(first), EndPosition::LastByte) => first < size,
    };
    match ranges.as_slice() {
        [one] if !satisfiable(one) => RangePlan::Unsatisfiable,
        [one] => match one.start {
            StartPosition::FromLast(n) if n > size => RangePlan::WholeAsRange,
            _ => RangePlan::AsAsked,
        },
        many if many.iter().any(satisfiable) => RangePlan::Whole,
        _ => RangePlan::Unsatisfiable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_key_signs_every_key_verifies() {
        let old = LinkKeys::new(&[SecretKey::new("old-link-key").unwrap()], &[0; 32]);
        let rotated = LinkKeys::new(
            &[
                SecretKey::new("new-link-key").unwrap(),
                SecretKey::new("old-link-key").unwrap(),
            ],
            &[0; 32],
        );
        let sig = old.sign("c-1", 100);
        assert!(rotated.verify("c-1", 100, &sig));
        assert!(!rotated.verify("c-1", 101, &sig));
        assert!(!rotated.verify("c-2", 100, &sig));
        assert!(!rotated.verify("c-1", 100, "zz"));
        assert_ne!(rotated.sign("c-1", 100), sig);
    }

    /// The importer's tamper check changes a signature's last character to "A": when it
    /// was "a", hex decoding alone would accept the upper-case spelling as the same bytes.
    #[test]
    fn only_the_lower_case_spelling_verifies() {
        let keys = LinkKeys::new(&[SecretKey::new("link-key").unwrap()], &[0; 32]);
        let sig = keys.sign("c-1", 100);
        assert!(keys.verify("c-1", 100, &sig));
        assert!(!keys.verify("c-1", 100, &sig.to_ascii_uppercase()));
    }

    #[test]
    fn ids_are_plain_tokens() {
        for bad in [
            "",
            "..",
            "../x",
            "a/b",
            "a\\b",
            "a.b",
            "a%2e",
            &"x".repeat(129),
        ] {
            assert!(checked_id(bad).is_err(), "{bad:?}");
        }
        assert!(checked_id("c-0123456789abcdef_X").is_ok());
        assert!(safe_name("c-1.wav").is_ok());
        for bad in ["../c-1.wav", "/etc/passwd", "a/b.wav", "..", "a\\b.wav"] {
            assert!(safe_name(bad).is_err(), "{bad:?}");
        }
    }
    #[test]
    fn exp_and_sig_are_taken_only_in_the_form_calltap_writes() {
        let sig = "ab".repeat(32);
        assert_eq!(
            link_params(&format!("exp=1700000000&sig={sig}")).unwrap(),
            (1_700_000_000, sig.as_str())
        );
        assert_eq!(link_params(&format!("x=1&exp=0&sig={sig}")).unwrap().0, 0);
        for bad in [
            format!("exp=01700000000&sig={sig}"),
            format!("exp=+1700000000&sig={sig}"),
            format!("exp=1700000000 &sig={sig}"),
            format!("exp=&sig={sig}"),
            format!("exp=1700000000&exp=1700000000&sig={sig}"),
            format!("exp=1700000000&sig={sig}&sig={sig}"),
            format!("exp=99999999999999999999&sig={sig}"),
            "exp=1700000000".to_string(),
        ] {
            assert!(link_params(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        let plan = |h: &str| range_plan(Some(&HeaderValue::from_str(h).unwrap()), 1000);
        assert_eq!(range_plan(None, 1000), RangePlan::AsAsked);
        for (header, expected) in [
            ("bytes=0-99", RangePlan::AsAsked),
            ("bytes=990-5000", RangePlan::AsAsked),
            ("bytes=-100", RangePlan::AsAsked),
            ("bytes=999-", RangePlan::AsAsked),
            ("bytes=-1000", RangePlan::AsAsked),
            ("bytes=-1001", RangePlan::WholeAsRange),
            ("bytes=0-0,0-0", RangePlan::Whole),
            ("bytes=0-9,20-29", RangePlan::Whole),
            ("bytes=5000-6000,0-1", RangePlan::Whole),
            ("bytes=abc", RangePlan::Whole),
            ("items=0-1", RangePlan::Whole),
            ("bytes=0-1-2", RangePlan::Whole),
            ("bytes=1000-", RangePlan::Unsatisfiable),
            ("bytes=1000-2000", RangePlan::Unsatisfiable),
            ("bytes=50-10", RangePlan::Unsatisfiable),
            ("bytes=-0", RangePlan::Unsatisfiable),
            ("bytes=1000-1001,2000-2001", RangePlan::Unsatisfiable),
        ] {
            assert_eq!(plan(header), expected, "{header}");
        }
    }
}
