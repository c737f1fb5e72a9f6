//! `[[webhooks]]`: endpoints that are sent call events (src/events/deliver), each with
//! its own secret, headers, event types, filters, body template, signature dialect and
//! retry policy.
//!
//! Checked here: everything that can be checked from the file alone (names, URL, header
//! names, the template's syntax, filters against the configured properties, limits).
//! Whether a template only names fields that events have is checked against sample
//! events by the delivery side (`events::deliver::check_templates`), which
//! `check-config` and every start run.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{k, Locator, PathSeg};
use super::filters::{self as filter, PropertyFilters};
use super::{ConfigError, Environment, Property, SecretKey};

/// Header names calltap sets itself; an extra header cannot replace them.
pub const OWN_HEADERS: [&str; 4] = [
    "content-type",
    "x-calltap-event",
    "x-calltap-delivery",
    "x-calltap-timestamp",
];

/// The event types an endpoint may ask for, as `events::EventKind` names them (a test
/// there keeps the two lists equal; the configuration does not import the push side).
pub const EVENT_TYPES: [&str; 10] = [
    "call.ringing",
    "call.answered",
    "call.voicemail",
    "call.missed",
    "call.busy",
    "call.rejected",
    "call.failed",
    "call.transferred",
    "call.ended",
    "recording.ready",
];

/// The longest `timeout_secs`: a receiver is asked to answer within seconds; one that
/// takes minutes holds a delivery slot for them.
pub(super) const MAX_TIMEOUT_SECS: u64 = 300;

/// The most deliveries in flight to one endpoint: receivers are CRMs and chat tools,
/// not load balancers.
pub(super) const MAX_CONCURRENCY: usize = 64;

/// What the signature covers, for receivers written for other platforms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureDialect {
    /// HMAC-SHA256 of `timestamp + "." + body`: a replayed request with an old
    /// timestamp can be refused by the receiver.
    #[default]
    Timestamped,
    /// HMAC-SHA256 of the raw body alone, as many receivers already check.
    Body,
}

impl<'de> Deserialize<'de> for SignatureDialect {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::values::parse_str(d, "a signature dialect", |text| match text {
            "timestamped" => Ok(SignatureDialect::Timestamped),
            "body" => Ok(SignatureDialect::Body),
            other => Err(format!(
                "{other:?} is not a signature dialect: \"timestamped\" or \"body\""
            )),
        })
    }
}

/// A `headers` value: the text itself, or `{ file = "..." }` or `{ env = "VAR" }` to
/// keep it out of the configuration (a bearer token). Debug shows no literal value: it
/// may be a credential.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum HeaderValueSource {
    Literal(String),
    File { file: PathBuf },
    Env { env: String },
}

impl std::fmt::Debug for HeaderValueSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderValueSource::Literal(_) => f.write_str("Literal(<redacted>)"),
            HeaderValueSource::File { file } => write!(f, "File({})", file.display()),
            HeaderValueSource::Env { env } => write!(f, "Env({env})"),
        }
    }
}

/// One `[[webhooks]]` endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Names the endpoint in logs, metrics, the delivery log and `webhooks test`:
    /// letters, digits, `-` and `_`. Its delivery state is kept under this name, so a
    /// renamed endpoint starts again from the events that come next.
    pub name: String,
    /// Where events are POSTed: http or https (rustls, the system's CA store plus
    /// `ca_file`).
    pub url: String,
    /// The HMAC-SHA256 key of the signature. Without a secret (nor `secret_file`) no
    /// signature header is sent.
    #[serde(default)]
    pub secret: Option<SecretKey>,
    /// A file whose first non-comment line is the secret. Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    /// Extra headers (e.g. `Authorization = "Bearer ..."`, or `{ file = "..." }`).
    /// Never serialised: a value may be a credential.
    #[serde(default, skip_serializing)]
    pub headers: BTreeMap<String, HeaderValueSource>,
    /// Event types sent (e.g. `["call.ended", "recording.ready"]`). Default: all.
    #[serde(default)]
    pub events: Vec<String>,
    /// Only calls of these directions ("incoming", "outgoing"). Default: both.
    #[serde(default)]
    pub directions: Vec<String>,
    /// Only calls of these operator ids. Default: every operator.
    #[serde(default)]
    pub operators: Vec<String>,
    /// Only calls that talked at least this many seconds, for events sent once the call
    /// is over (those whose `data` has `duration`); earlier events (ringing, answered)
    /// cannot know yet and pass. Default 0.
    #[serde(default)]
    pub min_talk_seconds: u64,
    /// Property filters in the forms of `POST /calls`'s `propertyFilters`. Default none.
    /// Not serialised: its keys are the administrator's property names.
    #[serde(default, skip_serializing)]
    pub properties: Option<toml::Table>,
    /// A minijinja template for the body, over the event (`id`, `type`, `occurredAt`,
    /// `callId`, `data`, and all of it as `event`). Default none: the event as JSON.
    #[serde(default)]
    pub template: Option<String>,
    /// Content-Type of a templated body. Default application/json.
    #[serde(default = "default_content_type")]
    pub content_type: String,
    #[serde(default)]
    pub signature: SignatureDialect,
    #[serde(default = "default_signature_header")]
    pub signature_header: String,
    #[serde(default = "default_signature_prefix")]
    pub signature_prefix: String,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    #[serde(default = "default_retry_first_ms")]
    pub retry_first_ms: u64,
    #[serde(default = "default_retry_max_secs")]
    pub retry_max_secs: u64,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    #[serde(default = "default_pause_after_failures")]
    pub pause_after_failures: u32,
    /// PEM CA certificates trusted for this endpoint, besides the system's. Default none.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,

    /// `properties`, checked against the configured properties.
    #[serde(skip)]
    pub property_filters: PropertyFilters,
    /// `headers` with the files read.
    #[serde(skip)]
    pub resolved_headers: Vec<(String, SecretKey)>,
    /// The line of `template` in the file, for messages about it.
    #[serde(skip)]
    pub template_line: Option<usize>,
}

fn default_content_type() -> String {
    "application/json".into()
}
fn default_signature_header() -> String {
    "X-Calltap-Signature".into()
}
fn default_signature_prefix() -> String {
    "sha256=".into()
}
pub(super) fn default_timeout_secs() -> u64 {
    5
}
pub(super) fn default_retry_first_ms() -> u64 {
    1_000
}
pub(super) fn default_retry_max_secs() -> u64 {
    3_600
}
/// 36: retries after 1, 2, 4 ... 2048 s (12 of them, 68 minutes), then 23 more an hour
/// apart: the last attempt falls about 25 hours after the first, so an endpoint down
/// for a whole day still gets every event. Twelve attempts with a one-hour cap would
/// give up after about nine hours.
fn default_max_attempts() -> u32 {
    36
}
/// 4: enough to keep up with a busy PBX over a slow receiver (one event each way per
/// 250 ms round trip is 16 a second) without loading a small CRM.
fn default_concurrency() -> usize {
    4
}
/// 5 failures in a row (timeouts, refused connections, 5xx, 429) and the endpoint is
/// taken as down: it is paused and probed with one delivery at a time.
fn default_pause_after_failures() -> u32 {
    5
}

impl WebhookConfig {
    /// An endpoint with every default, for tests and tools.
    pub fn new(name: &str, url: &str) -> WebhookConfig {
        WebhookConfig {
            name: name.into(),
            url: url.into(),
            secret: None,
            secret_file: None,
            headers: BTreeMap::new(),
            events: Vec::new(),
            directions: Vec::new(),
            operators: Vec::new(),
            min_talk_seconds: 0,
            properties: None,
            template: None,
            content_type: default_content_type(),
            signature: SignatureDialect::default(),
            signature_header: default_signature_header(),
            signature_prefix: default_signature_prefix(),
            timeout_secs: default_timeout_secs(),
            retry_first_ms: default_retry_first_ms(),
            retry_max_secs: default_retry_max_secs(),
            max_attempts: default_max_attempts(),
            concurrency: default_concurrency(),
            pause_after_failures: default_pause_after_failures(),
            ca_file: None,
            property_filters: Vec::new(),
            resolved_headers: Vec::new(),
            template_line: None,
        }
    }

    /// Whether an event type is sent to this endpoint.
    pub fn wants(&self, event_type: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == event_type)
    }
}

/// Whether `name` can name an endpoint (it goes into store keys, metric labels and
/// delivery ids).
pub fn is_endpoint_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks every endpoint; `properties` are the configured properties (checked first).
pub(crate) fn check(
    hooks: &mut [WebhookConfig],
    properties: &[Property],
    loc: &Locator<'_>,
) -> Result<(), ConfigError> {
    for i in 0..hooks.len() {
        let (earlier, rest) = hooks.split_at_mut(i);
        let hook = &mut rest[0];
        let at = |key: &str| vec![k("webhooks"), PathSeg::Index(i), k(key)];
        if !is_endpoint_name(&hook.name) {
            return Err(loc.error(
                &at("name"),
                format!(
                    "{:?} is not an endpoint name (1 to 64 letters, digits, '-' or '_')",
                    hook.name
                ),
            ));
        }
        if earlier.iter().any(|h| h.name == hook.name) {
            return Err(loc.error(&at("name"), format!("{:?} names two endpoints", hook.name)));
        }
        match reqwest::Url::parse(&hook.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            Ok(url) => {
                return Err(loc.error(
                    &at("url"),
                    format!(
                        "{:?} is not an http:// or https:// URL with a host (scheme {:?})",
                        hook.url,
                        url.scheme()
                    ),
                ))
            }
            Err(e) => {
                return Err(loc.error(&at("url"), format!("{:?} is not a URL: {e}", hook.url)))
            }
        }
        if hook.secret.is_some() && hook.secret_file.is_some() {
            return Err(loc.error(&at("secret_file"), "set secret or secret_file, not both"));
        }
        for (j, event) in hook.events.iter().enumerate() {
            let path = [
                k("webhooks"),
                PathSeg::Index(i),
                k("events"),
                PathSeg::Index(j),
            ];
            if !EVENT_TYPES.contains(&event.as_str()) {
                return Err(loc.error(
                    &path,
                    format!(
                        "{event:?} is not an event type; the types are {}",
                        EVENT_TYPES.join(", ")
                    ),
                ));
            }
            if hook.events[..j].contains(event) {
                return Err(loc.error(&path, format!("{event:?} is listed twice")));
            }
        }
        for (j, d) in hook.directions.iter().enumerate() {
            if d != "incoming" && d != "outgoing" {
                return Err(loc.error(
                    &[
                        k("webhooks"),
                        PathSeg::Index(i),
                        k("directions"),
                        PathSeg::Index(j),
                    ],
                    format!("{d:?} is not a direction: \"incoming\" or \"outgoing\""),
                ));
            }
        }
        let own = hook.signature_header.to_ascii_lowercase();
        check_headers(
            &hook.headers,
            &[k("webhooks"), PathSeg::Index(i), k("headers")],
            &[own.as_str()],
            loc,
        )?;
        if axum::http::HeaderName::from_bytes(hook.signature_header.as_bytes()).is_err() {
            return Err(loc.error(
                &at("signature_header"),
                format!("{:?} is not a header name", hook.signature_header),
            ));
        }
        if axum::http::HeaderValue::from_str(&hook.signature_prefix).is_err() {
            return Err(loc.error(&at("signature_prefix"), "the prefix must be printable text"));
        }
        if axum::http::HeaderValue::from_str(&hook.content_type).is_err()
            || !hook.content_type.contains('/')
        {
            return Err(loc.error(
                &at("content_type"),
                format!("{:?} is not a media type", hook.content_type),
            ));
        }
        if let Some(template) = &hook.template {
            if let Some(e) = super::templates::syntax_error(template) {
                return Err(loc.error(&at("template"), e));
            }
            hook.template_line = loc.line_of(&at("template"));
        }
        if let Some(table) = &hook.properties {
            let value = serde_json::to_value(table).unwrap_or(Value::Null);
            hook.property_filters = filter::parse_filters(&value, properties)
                .map_err(|m| loc.error(&at("properties"), m))?;
        }
        // (key, value, least, most, why)
        let bounds: [(&str, u64, u64, u64, &str); 6] = [
            (
                "timeout_secs",
                hook.timeout_secs,
                1,
                MAX_TIMEOUT_SECS,
                "receivers answer within seconds",
            ),
            (
                "retry_first_ms",
                hook.retry_first_ms,
                1,
                86_400_000,
                "the first retry comes after a moment, within a day",
            ),
            (
                "retry_max_secs",
                hook.retry_max_secs,
                1,
                7 * 86_400,
                "retries are at least a second and at most a week apart",
            ),
            (
                "max_attempts",
                hook.max_attempts.into(),
                1,
                1_000,
                "at least the first attempt",
            ),
            (
                "concurrency",
                hook.concurrency as u64,
                1,
                MAX_CONCURRENCY as u64,
                "one delivery at a time at least",
            ),
            (
                "pause_after_failures",
                hook.pause_after_failures.into(),
                1,
                1_000,
                "one failure at least",
            ),
        ];
        for (key, value, least, most, why) in bounds {
            within(loc, &at(key), value, (least, most), why)?;
        }
        if hook.retry_max_secs.saturating_mul(1000) < hook.retry_first_ms {
            return Err(loc.error(
                &at("retry_max_secs"),
                "the cap on retry delays is below the first delay",
            ));
        }
    }
    Ok(())
}

/// Reads `secret_file` and header files.
pub(crate) fn read_files(
    hooks: &mut [WebhookConfig],
    loc: &Locator<'_>,
    env: &dyn Environment,
) -> Result<(), ConfigError> {
    for (i, hook) in hooks.iter_mut().enumerate() {
        if let Some(file) = &hook.secret_file {
            let at = [k("webhooks"), PathSeg::Index(i), k("secret_file")];
            hook.secret = Some(read_secret(file, &at, "secret", loc, env)?);
        }
        hook.resolved_headers = resolve_headers(
            &hook.headers,
            &[k("webhooks"), PathSeg::Index(i), k("headers")],
            loc,
            env,
        )?;
    }
    Ok(())
}

/// Checks header names and literal values; `also_own` are more names calltap sets
/// itself (lower case), besides [`OWN_HEADERS`].
pub(crate) fn check_headers(
    headers: &BTreeMap<String, HeaderValueSource>,
    at: &[PathSeg],
    also_own: &[&str],
    loc: &Locator<'_>,
) -> Result<(), ConfigError> {
    for (name, value) in headers {
        let mut path = at.to_vec();
        path.push(k(name));
        if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(loc.error(&path, format!("{name:?} is not a header name")));
        }
        let lower = name.to_ascii_lowercase();
        if OWN_HEADERS.contains(&lower.as_str()) || also_own.contains(&lower.as_str()) {
            return Err(loc.error(
                &path,
                format!("{name} is set by calltap itself and cannot be replaced"),
            ));
        }
        if let HeaderValueSource::Literal(text) = value {
            if axum::http::HeaderValue::from_str(text).is_err() {
                return Err(loc.error(
                    &path,
                    "the value is not a valid header value (no control characters)",
                ));
            }
        }
    }
    Ok(())
}

/// Header values with their files read and environment variables looked up.
pub(crate) fn resolve_headers(
    headers: &BTreeMap<String, HeaderValueSource>,
    at: &[PathSeg],
    loc: &Locator<'_>,
    env: &dyn Environment,
) -> Result<Vec<(String, SecretKey)>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in headers {
        let mut path = at.to_vec();
        path.push(k(name));
        let text = match value {
            HeaderValueSource::Literal(text) => text.clone(),
            HeaderValueSource::File { file } => {
                let text = env
                    .read_file(file)
                    .map_err(|e| loc.file_error(&path, file.clone(), e))?;
                let line = text.lines().map(str::trim).find(|l| !l.is_empty());
                let Some(line) = line.filter(|l| axum::http::HeaderValue::from_str(l).is_ok())
                else {
                    return Err(loc.error(
                        &path,
                        format!("{} holds no valid header value", file.display()),
                    ));
                };
                line.to_owned()
            }
            HeaderValueSource::Env { env: var } => {
                let Some(text) = env.var(var) else {
                    return Err(
                        loc.error(&path, format!("the environment variable {var} is not set"))
                    );
                };
                if axum::http::HeaderValue::from_str(text.trim()).is_err() {
                    return Err(loc.error(
                        &path,
                        format!("the environment variable {var} is not a valid header value"),
                    ));
                }
                text
            }
        };
        if let Some(value) = SecretKey::new(&text) {
            out.push((name.clone(), value));
        }
    }
    Ok(out)
}

/// A setting's value within `least..=most`, or an error saying `why`.
pub(crate) fn within(
    loc: &Locator<'_>,
    path: &[PathSeg],
    value: u64,
    (least, most): (u64, u64),
    why: &str,
) -> Result<(), ConfigError> {
    if value < least || value > most {
        return Err(loc.error(
            path,
            format!("{value} is out of range: {least} to {most} ({why})"),
        ));
    }
    Ok(())
}

/// The first non-comment line of a `*_file` key's file: a secret kept out of the
/// configuration. `what` names it in the error.
pub(crate) fn read_secret(
    file: &std::path::Path,
    at: &[PathSeg],
    what: &str,
    loc: &Locator<'_>,
    env: &dyn Environment,
) -> Result<SecretKey, ConfigError> {
    let text = env
        .read_file(file)
        .map_err(|e| loc.file_error(at, file.to_owned(), e))?;
    text.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .find_map(SecretKey::new)
        .ok_or_else(|| loc.error(at, format!("{} holds no {what}", file.display())))
}
