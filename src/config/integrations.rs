//! `[[integrations]]` and `[smtp]`: short workflows run on call events
//! (src/integrations): ordered steps (an HTTP request, an e-mail, a chat message), each
//! with its own condition, whose answers later steps may use.
//!
//! Checked here: what the file alone tells (names, methods, URLs of chat steps, header
//! names, every template's syntax, every condition's syntax and the names it uses,
//! limits). Whether the templates and conditions only name fields that events have is
//! checked against sample events by `integrations::check`, which `check-config` and
//! every start run.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::{k, Locator, PathSeg};
use super::webhooks::{
    check_headers, default_retry_first_ms, default_retry_max_secs, default_timeout_secs,
    is_endpoint_name, read_secret, resolve_headers, within, HeaderValueSource, EVENT_TYPES,
    MAX_CONCURRENCY, MAX_TIMEOUT_SECS,
};
use super::{ConfigError, Environment, SecretKey};

/// The names templates and conditions see.
pub const CONTEXT_NAMES: [&str; 3] = ["event", "steps", "saved"];

/// Steps in one integration: a workflow, not a program.
const MAX_STEPS: usize = 16;

/// What a step does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    #[default]
    Http,
    Email,
    Chat,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Http => "http",
            StepKind::Email => "email",
            StepKind::Chat => "chat",
        }
    }
}

/// An HTTP step's method.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    #[default]
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }
}

/// One `[[integrations.steps]]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// Names the step in the run log and to later steps (`steps.NAME`): a letter or
    /// `_`, then letters, digits or `_`.
    pub name: String,
    #[serde(default)]
    pub kind: StepKind,
    /// A condition (CEL) over `event`, `steps` and `saved`; the step is skipped when
    /// it is false. Default: always.
    #[serde(default)]
    pub when: Option<String>,
    /// A failure of this step does not stop the steps after it.
    #[serde(default)]
    pub continue_on_error: bool,
    /// http: the method. Default POST.
    #[serde(default)]
    pub method: Option<HttpMethod>,
    /// http and chat: where the request goes (a template, for ids in paths).
    #[serde(default)]
    pub url: Option<String>,
    /// http: extra headers (a value, `{ file = "..." }` or `{ env = "VAR" }`).
    #[serde(default, skip_serializing)]
    pub headers: BTreeMap<String, HeaderValueSource>,
    /// http and email: the body (a template). http default: none (no body).
    #[serde(default)]
    pub body: Option<String>,
    /// http: Content-Type of the body. Default application/json.
    #[serde(default)]
    pub content_type: Option<String>,
    /// http: values kept from the JSON answer for later steps, `name = "/json/pointer"`.
    #[serde(default)]
    pub save: BTreeMap<String, String>,
    /// http: the answer codes that mean success. Default any 2xx.
    #[serde(default)]
    pub expect: Vec<u16>,
    /// email: recipients (templates).
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    /// email: the subject (a template).
    #[serde(default)]
    pub subject: Option<String>,
    /// chat: the message (a template).
    #[serde(default)]
    pub text: Option<String>,

    /// `headers` with files read and variables looked up.
    #[serde(skip)]
    pub resolved_headers: Vec<(String, SecretKey)>,
    /// The step's line in the file, for messages about it.
    #[serde(skip)]
    pub line: Option<usize>,
}

/// One `[[integrations]]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationConfig {
    /// Names the integration in logs, metrics, run ids and `integrations test`:
    /// letters, digits, `-` and `_`. Its place in the outbox is kept under this name.
    pub name: String,
    /// Event types that start a run. Default: all.
    #[serde(default)]
    pub on: Vec<String>,
    /// A condition (CEL) over `event`; no run when it is false. Default: always.
    #[serde(default)]
    pub when: Option<String>,
    pub steps: Vec<StepConfig>,
    /// Signs HTTP and chat requests as webhooks are (`X-Calltap-Signature`, HMAC-SHA256
    /// of timestamp + "." + body). Default none: not signed.
    #[serde(default)]
    pub secret: Option<SecretKey>,
    /// A file whose first non-comment line is the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    #[serde(default = "default_retry_first_ms")]
    pub retry_first_ms: u64,
    #[serde(default = "default_retry_max_secs")]
    pub retry_max_secs: u64,
    /// Attempts per step before the run fails.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Runs in flight at once (different calls; one call's runs go in order).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,

    /// The integration's line in the file.
    #[serde(skip)]
    pub line: Option<usize>,
}

/// 12: retries after 1, 2, 4 ... 1024 s, about 34 minutes in all. A workflow's later
/// steps wait on its earlier ones, so a run gives up sooner than a webhook (a day).
fn default_max_attempts() -> u32 {
    12
}
fn default_concurrency() -> usize {
    4
}

impl IntegrationConfig {
    /// Whether an event type starts a run of this integration.
    pub fn wants(&self, event_type: &str) -> bool {
        self.on.is_empty() || self.on.iter().any(|e| e == event_type)
    }
}

/// How the SMTP connection is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (port 587); refused without it.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: a relay on the same host or a test server only.
    None,
}

/// `[smtp]`: the server e-mail steps send through.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// Default by `security`: 587, 465, or 25.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub security: SmtpSecurity,
    #[serde(default)]
    pub user: Option<String>,
    /// A file whose first non-comment line is the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The sender, e.g. `calltap <calltap@example.com>`.
    pub from: String,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    #[serde(skip)]
    pub password: Option<SecretKey>,
}

impl SmtpConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.security {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::None => 25,
        })
    }
}

/// Whether `name` can name a step (CEL reads `steps.NAME`).
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
}

/// Compiles a CEL condition and checks it reads only `allowed` names; the message for
/// an administrator otherwise.
pub fn compile_condition(text: &str, allowed: &[&str]) -> Result<cel_interpreter::Program, String> {
    let program = cel_interpreter::Program::compile(text).map_err(|e| {
        // One line per configuration error: the position, not the caret drawing.
        let why: Vec<String> = e
            .errors
            .iter()
            .map(|e| format!("line {} column {}: {}", e.pos.0, e.pos.1 + 1, e.msg))
            .collect();
        format!("condition {text:?} does not compile: {}", why.join("; "))
    })?;
    let references = program.references();
    if let Some(unknown) = references
        .variables()
        .into_iter()
        .find(|v| !allowed.contains(v))
    {
        return Err(format!(
            "condition {text:?} reads {unknown:?}; this condition sees {}",
            allowed.join(", ")
        ));
    }
    Ok(program)
}

pub(crate) fn check(
    integrations: &mut [IntegrationConfig],
    smtp: Option<&SmtpConfig>,
    loc: &Locator<'_>,
) -> Result<(), ConfigError> {
    if let Some(smtp) = smtp {
        if smtp.host.trim().is_empty() {
            return Err(loc.error(&[k("smtp"), k("host")], "the SMTP host cannot be empty"));
        }
        if smtp.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(loc.error(
                &[k("smtp"), k("from")],
                format!("{:?} is not an address (name <user@host>)", smtp.from),
            ));
        }
        if smtp.password_file.is_some() && smtp.user.is_none() {
            return Err(loc.error(&[k("smtp"), k("user")], "password_file needs user"));
        }
        within(
            loc,
            &[k("smtp"), k("timeout_secs")],
            smtp.timeout_secs,
            (1, MAX_TIMEOUT_SECS),
            "a server answers within seconds",
        )?;
    }
    for i in 0..integrations.len() {
        let (earlier, rest) = integrations.split_at_mut(i);
        let it = &mut rest[0];
        let at = |key: &str| vec![k("integrations"), PathSeg::Index(i), k(key)];
        it.line = loc.line_of(&at("name"));
        if !is_endpoint_name(&it.name) {
            return Err(loc.error(
                &at("name"),
                format!(
                    "{:?} is not an integration name (1 to 64 letters, digits, '-' or '_')",
                    it.name
                ),
            ));
        }
        if earlier.iter().any(|e| e.name == it.name) {
            return Err(loc.error(&at("name"), format!("{:?} names two integrations", it.name)));
        }
        for (j, event) in it.on.iter().enumerate() {
            let path = [
                k("integrations"),
                PathSeg::Index(i),
                k("on"),
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
        }
        if it.secret.is_some() && it.secret_file.is_some() {
            return Err(loc.error(&at("secret_file"), "set secret or secret_file, not both"));
        }
        if let Some(when) = &it.when {
            compile_condition(when, &["event"]).map_err(|m| loc.error(&at("when"), m))?;
        }
        if it.steps.is_empty() || it.steps.len() > MAX_STEPS {
            return Err(loc.error(
                &at("steps"),
                format!("an integration has 1 to {MAX_STEPS} steps"),
            ));
        }
        let bounds: [(&str, u64, u64, u64, &str); 5] = [
            (
                "timeout_secs",
                it.timeout_secs,
                1,
                MAX_TIMEOUT_SECS,
                "receivers answer within seconds",
            ),
            (
                "retry_first_ms",
                it.retry_first_ms,
                1,
                86_400_000,
                "the first retry comes after a moment, within a day",
            ),
            (
                "retry_max_secs",
                it.retry_max_secs,
                1,
                7 * 86_400,
                "retries are at least a second and at most a week apart",
            ),
            (
                "max_attempts",
                it.max_attempts.into(),
                1,
                1_000,
                "at least the first attempt",
            ),
            (
                "concurrency",
                it.concurrency as u64,
                1,
                MAX_CONCURRENCY as u64,
                "one run at a time at least",
            ),
        ];
        for (key, value, least, most, why) in bounds {
            within(loc, &at(key), value, (least, most), why)?;
        }
        let mut saved_names: Vec<String> = Vec::new();
        for j in 0..it.steps.len() {
            let (before, after) = it.steps.split_at_mut(j);
            let step = &mut after[0];
            let path = |key: &str| {
                vec![
                    k("integrations"),
                    PathSeg::Index(i),
                    k("steps"),
                    PathSeg::Index(j),
                    k(key),
                ]
            };
            step.line = loc.line_of(&path("name"));
            if !is_identifier(&step.name) {
                return Err(loc.error(
                    &path("name"),
                    format!(
                        "{:?} is not a step name (a letter or '_', then letters, digits or '_'; \
                         conditions read steps.NAME)",
                        step.name
                    ),
                ));
            }
            if before.iter().any(|s| s.name == step.name) {
                return Err(loc.error(&path("name"), format!("{:?} names two steps", step.name)));
            }
            check_step(step, smtp.is_some(), &path, loc)?;
            for name in step.save.keys() {
                if !is_identifier(name) || saved_names.contains(name) {
                    return Err(loc.error(
                        &path("save"),
                        format!("{name:?}: a saved name is an identifier, once per integration"),
                    ));
                }
                saved_names.push(name.clone());
            }
        }
    }
    Ok(())
}

fn check_step(
    step: &StepConfig,
    have_smtp: bool,
    path: &dyn Fn(&str) -> Vec<PathSeg>,
    loc: &Locator<'_>,
) -> Result<(), ConfigError> {
    let kind = step.kind.as_str();
    // (key, set, allowed for this kind)
    let keys: [(&str, bool, bool); 9] = [
        ("method", step.method.is_some(), step.kind == StepKind::Http),
        ("url", step.url.is_some(), step.kind != StepKind::Email),
        (
            "headers",
            !step.headers.is_empty(),
            step.kind == StepKind::Http,
        ),
        ("body", step.body.is_some(), step.kind != StepKind::Chat),
        (
            "content_type",
            step.content_type.is_some(),
            step.kind == StepKind::Http,
        ),
        ("save", !step.save.is_empty(), step.kind == StepKind::Http),
        (
            "expect",
            !step.expect.is_empty(),
            step.kind == StepKind::Http,
        ),
        (
            "to",
            !step.to.is_empty() || !step.cc.is_empty() || step.subject.is_some(),
            step.kind == StepKind::Email,
        ),
        ("text", step.text.is_some(), step.kind == StepKind::Chat),
    ];
    for (key, set, allowed) in keys {
        if set && !allowed {
            return Err(loc.error(&path(key), format!("{key} is not for {kind} steps")));
        }
    }
    let required: &[(&str, bool)] = match step.kind {
        StepKind::Http => &[("url", step.url.is_some())],
        StepKind::Chat => &[("url", step.url.is_some()), ("text", step.text.is_some())],
        StepKind::Email => &[
            ("to", !step.to.is_empty()),
            ("subject", step.subject.is_some()),
            ("body", step.body.is_some()),
        ],
    };
    for (key, set) in required {
        if !set {
            return Err(loc.error(&path("name"), format!("a {kind} step needs {key}")));
        }
    }
    if step.kind == StepKind::Email && !have_smtp {
        return Err(loc.error(
            &path("kind"),
            "an email step needs [smtp] (host, from, ...)",
        ));
    }
    for (key, template) in templates(step) {
        if let Some(e) = super::templates::syntax_error(template) {
            return Err(loc.error(&path(key), e));
        }
    }
    if let Some(when) = &step.when {
        compile_condition(when, &CONTEXT_NAMES).map_err(|m| loc.error(&path("when"), m))?;
    }
    check_headers(
        &step.headers,
        &path("headers"),
        &["x-calltap-integration", "x-calltap-signature"],
        loc,
    )?;
    if let Some(ct) = &step.content_type {
        if axum::http::HeaderValue::from_str(ct).is_err() || !ct.contains('/') {
            return Err(loc.error(&path("content_type"), format!("{ct:?} is not a media type")));
        }
    }
    for (name, pointer) in &step.save {
        if !(pointer.is_empty() || pointer.starts_with('/')) {
            return Err(loc.error(
                &path("save"),
                format!("{name} = {pointer:?} is not a JSON pointer (\"/id\", \"/data/0/id\")"),
            ));
        }
    }
    for code in &step.expect {
        if !(100..=599).contains(code) {
            return Err(loc.error(
                &path("expect"),
                format!("{code} is not an HTTP status code"),
            ));
        }
    }
    Ok(())
}

/// Every template of a step, with the key it is under.
pub fn templates(step: &StepConfig) -> Vec<(&'static str, &String)> {
    let mut out: Vec<(&'static str, &String)> = Vec::new();
    for (key, value) in [
        ("url", &step.url),
        ("body", &step.body),
        ("subject", &step.subject),
        ("text", &step.text),
    ] {
        if let Some(v) = value {
            out.push((key, v));
        }
    }
    out.extend(step.to.iter().map(|t| ("to", t)));
    out.extend(step.cc.iter().map(|t| ("cc", t)));
    out
}

/// Reads header files and variables, and the SMTP password file.
pub(crate) fn read_files(
    integrations: &mut [IntegrationConfig],
    smtp: Option<&mut SmtpConfig>,
    loc: &Locator<'_>,
    env: &dyn Environment,
) -> Result<(), ConfigError> {
    for (i, it) in integrations.iter_mut().enumerate() {
        if let Some(file) = &it.secret_file {
            let at = [k("integrations"), PathSeg::Index(i), k("secret_file")];
            it.secret = Some(read_secret(file, &at, "secret", loc, env)?);
        }
        for (j, step) in it.steps.iter_mut().enumerate() {
            step.resolved_headers = resolve_headers(
                &step.headers,
                &[
                    k("integrations"),
                    PathSeg::Index(i),
                    k("steps"),
                    PathSeg::Index(j),
                    k("headers"),
                ],
                loc,
                env,
            )?;
        }
    }
    if let Some(smtp) = smtp {
        if let Some(file) = &smtp.password_file {
            let at = [k("smtp"), k("password_file")];
            smtp.password = Some(read_secret(file, &at, "password", loc, env)?);
        }
    }
    Ok(())
}
