//! One delivery: the body (the event, or the endpoint's template over it), the headers
//! and signature, the POST, and what the answer means (delivered, retry, or give up).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::config::{SignatureDialect, WebhookConfig};
use crate::events::Event;

use super::backoff;

/// Bytes of the receiver's answer kept for the delivery log and `webhooks test`.
const ANSWER_KEEP: usize = 2048;

/// Signs recording links at send time (`recording.ready`'s `data.recording.url`):
/// a link expires, and an event may wait in the outbox longer than its life.
pub type LinkSigner = std::sync::Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The signature header's value without its prefix: hex HMAC-SHA256 under `secret` of
/// `timestamp + "." + body` (timestamped) or of the body alone.
pub fn signature(secret: &[u8], dialect: SignatureDialect, timestamp: u64, body: &[u8]) -> String {
    // HMAC takes keys of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    if dialect == SignatureDialect::Timestamped {
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
    }
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Puts a signed link in an event's (as JSON) `data.recording.url`, made when it is
/// sent: a link expires, and an event may wait in the outbox longer than its life.
pub fn add_recording_link(event: &mut Value, signer: Option<&LinkSigner>) {
    let id = event
        .pointer("/data/id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if let (Some(signer), Some(id), Some(recording)) = (
        signer,
        id,
        event
            .pointer_mut("/data/recording")
            .and_then(Value::as_object_mut),
    ) {
        if let Some(url) = signer(&id) {
            recording.insert("url".into(), Value::String(url));
        }
    }
}

/// What an attempt came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// 2xx.
    Delivered { status: u16, body: String },
    /// Worth another try (timeout, connection or TLS error, 5xx, 429); `after` is the
    /// receiver's `Retry-After`.
    Retry {
        status: Option<u16>,
        reason: String,
        after: Option<Duration>,
        body: String,
    },
    /// Never worth another try (other 4xx, a redirect, a body that cannot be made).
    GiveUp {
        status: Option<u16>,
        reason: String,
        body: String,
    },
}

impl Answer {
    pub fn status(&self) -> Option<u16> {
        match self {
            Answer::Delivered { status, .. } => Some(*status),
            Answer::Retry { status, .. } | Answer::GiveUp { status, .. } => *status,
        }
    }

    pub fn body(&self) -> &str {
        match self {
            Answer::Delivered { body, .. }
            | Answer::Retry { body, .. }
            | Answer::GiveUp { body, .. } => body,
        }
    }
}

/// An endpoint's HTTP client and what every request to it carries.
pub struct Sender {
    pub hook: WebhookConfig,
    client: reqwest::Client,
    signer: Option<LinkSigner>,
}

impl Sender {
    pub fn new(hook: WebhookConfig, signer: Option<LinkSigner>) -> Result<Sender, String> {
        let timeout = Duration::from_secs(hook.timeout_secs);
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A redirect is reported, not followed: the body and its signature were
            // meant for the configured URL, and a moved endpoint is the administrator's
            // to update.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("calltap/", env!("CARGO_PKG_VERSION")));
        if let Some(file) = &hook.ca_file {
            let pem = std::fs::read(file)
                .map_err(|e| format!("webhook {}: ca_file {}: {e}", hook.name, file.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("webhook {}: ca_file {}: {e}", hook.name, file.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "webhook {}: ca_file {} holds no certificate",
                    hook.name,
                    file.display()
                ));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| format!("webhook {}: {}", hook.name, chain(&e)))?;
        Ok(Sender {
            hook,
            client,
            signer,
        })
    }

    /// The body this endpoint is sent for `event`, and its content type.
    pub fn body(&self, event: &Event) -> Result<(Vec<u8>, String), String> {
        let mut value = serde_json::to_value(event).map_err(|e| e.to_string())?;
        add_recording_link(&mut value, self.signer.as_ref());
        match &self.hook.template {
            None => Ok((
                serde_json::to_vec(&value).map_err(|e| e.to_string())?,
                "application/json".into(),
            )),
            Some(template) => Ok((
                render(template, &value)?.into_bytes(),
                self.hook.content_type.clone(),
            )),
        }
    }

    /// One attempt to deliver `event`.
    pub async fn send(&self, event: &Event) -> (Answer, Duration) {
        let started = Instant::now();
        let (body, content_type) = match self.body(event) {
            Ok(b) => b,
            Err(e) => {
                return (
                    Answer::GiveUp {
                        status: None,
                        reason: format!("template: {e}"),
                        body: String::new(),
                    },
                    started.elapsed(),
                )
            }
        };
        let answer = self.post(event, body, &content_type).await;
        (answer, started.elapsed())
    }

    async fn post(&self, event: &Event, body: Vec<u8>, content_type: &str) -> Answer {
        let hook = &self.hook;
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut request = self
            .client
            .post(&hook.url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header("X-Calltap-Event", event.kind.as_str())
            .header("X-Calltap-Delivery", &event.id)
            .header("X-Calltap-Timestamp", timestamp.to_string());
        if let Some(secret) = &hook.secret {
            let sig = signature(secret.expose().as_bytes(), hook.signature, timestamp, &body);
            request = request.header(
                hook.signature_header.as_str(),
                format!("{}{sig}", hook.signature_prefix),
            );
        }
        for (name, value) in &hook.resolved_headers {
            request = request.header(name.as_str(), value.expose());
        }
        let response = match request.body(body).send().await {
            Ok(r) => r,
            Err(e) => return failed(&e, hook.timeout_secs),
        };
        answer_of(
            response,
            &|status| (200..300).contains(&status),
            ANSWER_KEEP,
        )
        .await
    }
}

/// What an answer means: `success` for the codes that count as delivered, a retry for
/// 429 and 5xx (with the receiver's `Retry-After`), never retried otherwise (a
/// redirect is reported, not followed). Keeps at most `keep` bytes of the body.
pub async fn answer_of(
    response: reqwest::Response,
    success: &(dyn Fn(u16) -> bool + Sync),
    keep: usize,
) -> Answer {
    let status = response.status();
    let code = status.as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| backoff::retry_after(v, SystemTime::now()));
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = read_some(response, keep).await;
    if success(code) {
        Answer::Delivered { status: code, body }
    } else if status.is_redirection() {
        Answer::GiveUp {
            status: Some(code),
            reason: format!(
                "HTTP {code} redirect{}: not followed (set url to where the receiver is)",
                location.map(|l| format!(" to {l}")).unwrap_or_default()
            ),
            body,
        }
    } else if code == 429 || status.is_server_error() {
        Answer::Retry {
            status: Some(code),
            reason: match retry_after {
                Some(after) => format!("HTTP {code} (Retry-After {} s)", after.as_secs()),
                None => format!("HTTP {code}"),
            },
            after: retry_after,
            body,
        }
    } else {
        Answer::GiveUp {
            status: Some(code),
            reason: if status.is_success() {
                format!("HTTP {code}: not a code the step expects")
            } else {
                format!("HTTP {code}: refused by the receiver; a 4xx is not retried")
            },
            body,
        }
    }
}

/// A request that got no answer: always worth another try (the receiver may come
/// back, its certificate may be fixed, its name may resolve again).
pub fn failed(e: &reqwest::Error, timeout_secs: u64) -> Answer {
    let text = chain(e);
    let reason = if e.is_timeout() {
        format!("timeout: no answer within {timeout_secs} s")
    } else if text.contains("certificate") || text.contains("tls") || text.contains("TLS") {
        format!("TLS: {text}")
    } else if text.contains("dns error") || text.contains("failed to lookup") {
        format!("name not resolved: {text}")
    } else if e.is_connect() {
        format!("connection: {text}")
    } else {
        format!("request: {text}")
    };
    Answer::Retry {
        status: None,
        reason,
        after: None,
        body: String::new(),
    }
}

/// An error and its causes on one line, without the URL (it may carry a token).
pub fn chain(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    if parts.is_empty() {
        return e.to_string();
    }
    parts.join(": ")
}

async fn read_some(mut response: reqwest::Response, keep: usize) -> String {
    let mut kept = Vec::new();
    while kept.len() < keep {
        match response.chunk().await {
            Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
            _ => break,
        }
    }
    kept.truncate(keep);
    String::from_utf8_lossy(&kept).into_owned()
}

/// Renders a body template over an event: its fields at the top level (`type`,
/// `data.clientNumber`), and the whole as `event`. A field that does not exist is an
/// error, never an empty string: a CRM would store the blank.
pub fn render(template: &str, event: &Value) -> Result<String, String> {
    let mut context = match event {
        Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    context.insert("event".into(), event.clone());
    crate::config::templates::render(
        template,
        minijinja::Value::from_serialize(Value::Object(context)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn signatures_follow_the_documented_recipe() {
        // Python: hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()
        assert_eq!(
            signature(b"k", SignatureDialect::Timestamped, 1_700_000_000, b"{}"),
            "c6ef4734033cee2367414a0939385eca0397754aa7a59716da7463a9298b5146"
        );
        // hmac.new(b"k", b"{}", hashlib.sha256).hexdigest(): the timestamp plays no part.
        assert_eq!(
            signature(b"k", SignatureDialect::Body, 1_700_000_000, b"{}"),
            "add853b103fbcc936a194f9eb15e29c4ff08af6e47d5d1bca4f20218e31e4fff"
        );
    }

    #[test]
    fn a_template_that_names_a_missing_field_fails_with_its_line() {
        let event = json!({"type": "call.ended", "data": {"clientNumber": "+1555"}});
        assert_eq!(
            render(
                "{\"text\": \"{{ type }} from {{ data.clientNumber }}\"}",
                &event
            )
            .as_deref(),
            Ok("{\"text\": \"call.ended from +1555\"}")
        );
        assert_eq!(
            render("{{ event.type }}", &event).as_deref(),
            Ok("call.ended")
        );
        let err = render("line one\n{{ data.nope }}", &event).expect_err("strict");
        assert!(err.starts_with("template line 2:"), "{err}");
        assert!(err.contains("data.nope"), "{err}");
    }
}
