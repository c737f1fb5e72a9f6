//! One step, once: its templates rendered into a request, an e-mail or a chat message
//! ([`Prepared`], which a dry run prints), then sent, and what the answer means.
//!
//! HTTP answers are read as webhook answers are (`events::deliver::answer_of`): a
//! retry for no answer, 429 (with its Retry-After) and 5xx; never for other codes.

use std::fmt;
use std::time::{Duration, Instant};

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::Value;

use crate::config::{IntegrationConfig, SmtpConfig, SmtpSecurity, StepConfig, StepKind};
use crate::config::{SecretKey, SignatureDialect};
use crate::events::deliver::{answer_of, failed, signature, Answer};

use super::context::Scope;

/// Bytes of an answer kept: enough for a CRM's JSON record, which `save` reads.
const ANSWER_KEEP: usize = 64 * 1024;

/// A step ready to send.
#[derive(Clone, Debug, PartialEq)]
pub enum Prepared {
    Http {
        method: &'static str,
        url: String,
        /// Header names and values; values from files or the environment are not
        /// shown by [`Display`].
        headers: Vec<(String, String, bool)>,
        content_type: String,
        body: Option<String>,
    },
    Email {
        to: Vec<String>,
        cc: Vec<String>,
        subject: String,
        body: String,
    },
    Chat {
        url: String,
        headers: Vec<(String, String, bool)>,
        body: String,
    },
}

impl fmt::Display for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prepared::Http {
                method,
                url,
                headers,
                content_type,
                body,
            } => {
                writeln!(f, "{method} {url}")?;
                for (name, value, secret) in headers {
                    if *secret {
                        writeln!(f, "{name}: <from the configuration, not shown>")?;
                    } else {
                        writeln!(f, "{name}: {value}")?;
                    }
                }
                if let Some(body) = body {
                    writeln!(f, "Content-Type: {content_type}\n\n{body}")?;
                }
                Ok(())
            }
            Prepared::Email {
                to,
                cc,
                subject,
                body,
            } => {
                writeln!(f, "To: {}", to.join(", "))?;
                if !cc.is_empty() {
                    writeln!(f, "Cc: {}", cc.join(", "))?;
                }
                writeln!(f, "Subject: {subject}\n\n{body}")
            }
            Prepared::Chat { url, body, .. } => writeln!(f, "POST {url}\n\n{body}"),
        }
    }
}

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Attempted {
    /// Done: the answer's code, its JSON, and the values `save` kept.
    Done {
        code: Option<u16>,
        json: Option<Value>,
        saved: Vec<(String, Value)>,
    },
    /// Worth another try, not before `after` when the receiver said.
    Retry {
        code: Option<u16>,
        reason: String,
        after: Option<Duration>,
    },
    /// Not worth another try.
    Failed { code: Option<u16>, reason: String },
}

/// Renders a step's templates over `scope`.
pub fn prepare(
    step: &StepConfig,
    scope: &Scope,
    headers_out: Vec<(String, String, bool)>,
) -> Result<Prepared, String> {
    let render = |key: &str, t: &str| scope.render(t).map_err(|e| format!("{key}: {e}"));
    let required = |key: &str, t: &Option<String>| -> Result<String, String> {
        match t {
            Some(t) => render(key, t),
            None => Err(format!("{key} is not set")),
        }
    };
    Ok(match step.kind {
        StepKind::Http => {
            let url = required("url", &step.url)?;
            check_url(&url)?;
            Prepared::Http {
                method: step.method.unwrap_or_default().as_str(),
                url,
                headers: headers_out,
                content_type: step
                    .content_type
                    .clone()
                    .unwrap_or_else(|| "application/json".into()),
                body: step
                    .body
                    .as_deref()
                    .map(|b| render("body", b))
                    .transpose()?,
            }
        }
        StepKind::Chat => {
            let url = required("url", &step.url)?;
            check_url(&url)?;
            let text = required("text", &step.text)?;
            // Slack's and Teams' incoming webhooks both take {"text": ...}.
            Prepared::Chat {
                url,
                headers: headers_out,
                body: serde_json::json!({ "text": text }).to_string(),
            }
        }
        StepKind::Email => {
            let list = |key: &str, all: &[String]| -> Result<Vec<String>, String> {
                all.iter()
                    .map(|t| render(key, t).map(|s| s.trim().to_owned()))
                    .collect()
            };
            Prepared::Email {
                to: list("to", &step.to)?,
                cc: list("cc", &step.cc)?,
                subject: required("subject", &step.subject)?,
                body: required("body", &step.body)?,
            }
        }
    })
}

fn check_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(format!("url: {url:?} is not an http:// or https:// URL")),
    }
}

/// An integration's means of sending: its HTTP client and the SMTP transport.
pub struct Sender {
    client: reqwest::Client,
    secret: Option<SecretKey>,
    smtp: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
    timeout_secs: u64,
}

impl Sender {
    pub fn new(it: &IntegrationConfig, smtp: Option<&SmtpConfig>) -> Result<Sender, String> {
        let timeout = Duration::from_secs(it.timeout_secs);
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(timeout)
            .connect_timeout(timeout)
            // As webhooks: a redirect is reported, not followed.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("calltap/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("integration {}: {e}", it.name))?;
        let wants_mail = it.steps.iter().any(|s| s.kind == StepKind::Email);
        let smtp = match smtp {
            Some(smtp) if wants_mail => Some(smtp_transport(smtp)?),
            _ => None,
        };
        Ok(Sender {
            client,
            secret: it.secret.clone(),
            smtp,
            timeout_secs: it.timeout_secs,
        })
    }

    /// The headers a step's request carries besides its own: what a dry run shows.
    pub fn headers(
        step: &StepConfig,
        integration: &str,
        event_type: &str,
        delivery: &str,
    ) -> Vec<(String, String, bool)> {
        let mut out = vec![
            (
                "X-Calltap-Integration".into(),
                integration.to_owned(),
                false,
            ),
            ("X-Calltap-Event".into(), event_type.to_owned(), false),
            ("X-Calltap-Delivery".into(), delivery.to_owned(), false),
        ];
        for (name, value) in &step.resolved_headers {
            out.push((name.clone(), value.expose().to_owned(), true));
        }
        out
    }

    /// Sends a prepared step once; `delivery` (run id and step name) lets a receiver
    /// deduplicate retries.
    pub async fn send(
        &self,
        step: &StepConfig,
        prepared: &Prepared,
        delivery: &str,
    ) -> (Attempted, Duration) {
        let started = Instant::now();
        let outcome = match prepared {
            Prepared::Http {
                method,
                url,
                headers,
                content_type,
                body,
            } => {
                let method =
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::POST);
                let mut request = self.client.request(method, url);
                for (name, value, _) in headers {
                    request = request.header(name.as_str(), value.as_str());
                }
                if let Some(body) = body {
                    request = request
                        .header(reqwest::header::CONTENT_TYPE, content_type.as_str())
                        .body(body.clone());
                }
                let request = self.signed(request, body.as_deref().unwrap_or(""));
                self.http(request, step).await
            }
            Prepared::Chat { url, headers, body } => {
                let mut request = self
                    .client
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
                for (name, value, _) in headers {
                    request = request.header(name.as_str(), value.as_str());
                }
                let request = self.signed(request, body);
                self.http(request, step).await
            }
            Prepared::Email {
                to,
                cc,
                subject,
                body,
            } => self.mail(to, cc, subject, body, delivery).await,
        };
        (outcome, started.elapsed())
    }

    /// With a secret: the timestamp and the signature webhooks carry, over `body`.
    fn signed(&self, request: reqwest::RequestBuilder, body: &str) -> reqwest::RequestBuilder {
        let Some(secret) = &self.secret else {
            return request;
        };
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let sig = signature(
            secret.expose().as_bytes(),
            SignatureDialect::Timestamped,
            timestamp,
            body.as_bytes(),
        );
        request
            .header("X-Calltap-Timestamp", timestamp.to_string())
            .header("X-Calltap-Signature", format!("sha256={sig}"))
    }

    async fn http(&self, request: reqwest::RequestBuilder, step: &StepConfig) -> Attempted {
        let expect = &step.expect;
        let success = |code: u16| {
            if expect.is_empty() {
                (200..300).contains(&code)
            } else {
                expect.contains(&code)
            }
        };
        let answer = match request.send().await {
            Ok(response) => answer_of(response, &success, ANSWER_KEEP).await,
            Err(e) => failed(&e, self.timeout_secs),
        };
        match answer {
            Answer::Delivered { status, body } => saved_from(step, Some(status), &body),
            Answer::Retry {
                status,
                reason,
                after,
                ..
            } => Attempted::Retry {
                code: status,
                reason,
                after,
            },
            Answer::GiveUp { status, reason, .. } => Attempted::Failed {
                code: status,
                reason,
            },
        }
    }

    async fn mail(
        &self,
        to: &[String],
        cc: &[String],
        subject: &str,
        body: &str,
        delivery: &str,
    ) -> Attempted {
        let Some((transport, from)) = &self.smtp else {
            return Attempted::Failed {
                code: None,
                reason: "no [smtp] server is configured".into(),
            };
        };
        let mut message = Message::builder()
            .from(from.clone())
            .subject(subject)
            // The run id and step name: a mail client shows a message sent twice once.
            .message_id(Some(format!("<{delivery}@calltap>")))
            .header(ContentType::TEXT_PLAIN);
        for (what, list) in [("to", to), ("cc", cc)] {
            for address in list {
                let Ok(mailbox) = address.parse::<Mailbox>() else {
                    return Attempted::Failed {
                        code: None,
                        reason: format!("{what}: {address:?} is not an e-mail address"),
                    };
                };
                message = if what == "to" {
                    message.to(mailbox)
                } else {
                    message.cc(mailbox)
                };
            }
        }
        let message = match message.body(body.to_owned()) {
            Ok(m) => m,
            Err(e) => {
                return Attempted::Failed {
                    code: None,
                    reason: format!("the message cannot be made: {e}"),
                }
            }
        };
        match transport.send(message).await {
            Ok(response) => Attempted::Done {
                code: smtp_code(&response.code()),
                json: None,
                saved: Vec::new(),
            },
            Err(e) => {
                let code = e.status().and_then(|c| smtp_code(&c));
                let reason = format!("SMTP: {}", error_chain(&e));
                if e.is_permanent() {
                    Attempted::Failed { code, reason }
                } else {
                    // Transient replies (4xx), and a server down or unreachable.
                    Attempted::Retry {
                        code,
                        reason,
                        after: None,
                    }
                }
            }
        }
    }
}

fn smtp_code(code: &lettre::transport::smtp::response::Code) -> Option<u16> {
    code.to_string().parse().ok()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

fn smtp_transport(
    smtp: &SmtpConfig,
) -> Result<(AsyncSmtpTransport<Tokio1Executor>, Mailbox), String> {
    let from = smtp
        .from
        .parse::<Mailbox>()
        .map_err(|e| format!("[smtp] from: {e}"))?;
    let builder = match smtp.security {
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host),
        SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host),
        SmtpSecurity::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
            &smtp.host,
        )),
    }
    .map_err(|e| format!("[smtp] {}: {e}", smtp.host))?;
    let mut builder = builder
        .port(smtp.port())
        .timeout(Some(Duration::from_secs(smtp.timeout_secs)));
    if let Some(user) = &smtp.user {
        let password = smtp
            .password
            .as_ref()
            .map(|p| p.expose().to_owned())
            .unwrap_or_default();
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    Ok((builder.build(), from))
}

/// A 2xx answer: its JSON, and the values `save` wants from it. A `save` that finds
/// no JSON, or no value at its pointer, fails the step with that reason.
fn saved_from(step: &StepConfig, code: Option<u16>, body: &str) -> Attempted {
    let json = serde_json::from_str::<Value>(body).ok();
    let mut saved = Vec::new();
    for (name, pointer) in &step.save {
        let Some(doc) = &json else {
            let shown: String = body.chars().take(80).collect();
            return Attempted::Failed {
                code,
                reason: format!("the answer is not JSON, and save wants {name} from it: {shown:?}"),
            };
        };
        match doc.pointer(pointer) {
            Some(value) => saved.push((name.clone(), value.clone())),
            None => {
                return Attempted::Failed {
                    code,
                    reason: format!("the answer has no {pointer:?}, which save wants as {name}"),
                }
            }
        }
    }
    Attempted::Done { code, json, saved }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(save: &[(&str, &str)]) -> StepConfig {
        let mut text = String::from("name = \"lead\"\nurl = \"http://127.0.0.1/\"\n");
        if !save.is_empty() {
            let pairs: Vec<String> = save.iter().map(|(k, v)| format!("{k} = \"{v}\"")).collect();
            text.push_str(&format!("save = {{ {} }}\n", pairs.join(", ")));
        }
        toml::from_str(&text).expect("step")
    }

    #[test]
    fn save_takes_values_by_pointer_and_fails_on_what_is_not_json() {
        let s = step(&[("lead_id", "/id"), ("owner", "/owner/name")]);
        match saved_from(&s, Some(201), r#"{"id": 42, "owner": {"name": "Ann"}}"#) {
            Attempted::Done { saved, json, .. } => {
                assert_eq!(
                    saved,
                    [
                        ("lead_id".to_string(), serde_json::json!(42)),
                        ("owner".to_string(), serde_json::json!("Ann"))
                    ]
                );
                assert_eq!(json.expect("json")["id"], 42);
            }
            other => panic!("{other:?}"),
        }
        match saved_from(&s, Some(200), "<html>ok</html>") {
            Attempted::Failed { reason, code } => {
                assert_eq!(code, Some(200));
                assert!(
                    reason.contains("not JSON") && reason.contains("lead_id"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        match saved_from(&s, Some(200), r#"{"id": 1}"#) {
            Attempted::Failed { reason, .. } => assert!(reason.contains("/owner/name"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // Without save, any answer will do.
        assert!(matches!(
            saved_from(&step(&[]), Some(204), ""),
            Attempted::Done { json: None, .. }
        ));
    }
}
