//! Integrations as their receivers meet them, on loopback: a CRM stub that answers 201
//! with an id and checks the next step's PUT carries it; conditions that pick exactly
//! the expected calls of the office morning's capture; a chat URL answering 429 then
//! 200; an answer that is not JSON where `save` wants a value; a local SMTP server
//! (aiosmtpd) receiving the rendered e-mail, and the same server down. Then the real
//! binary: a SIGKILL between two steps and a restart, the run log, /metrics, and
//! `calltap integrations test` with and without `--dry-run`.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/readme.rs"]
mod readme;
#[path = "support/skip.rs"]
mod skip;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use calltap::config::Config;
use calltap::engine::{Engine, EngineEvent};
use calltap::events::Event;
use calltap::integrations::Integrations;
use calltap::replay::replay_bytes;
use calltap::store::runs::{Run, RunStatus, StepStatus};
use calltap::store::Store;
use daemon::{free_port, write_config, Serve};
use readme::readme_block;
use serde_json::{json, Value};

const OFFICE_DAY: &[u8] = include_bytes!("../pcaps/office-day.pcap");
const KEY: &str = "integration-test-api-key";

// ---------------------------------------------------------------------------------
// A receiver whose answers each test scripts

#[derive(Clone, Debug)]
struct Got {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

type Answer = (u16, Vec<(&'static str, String)>, String);
type Script = dyn Fn(&Got, &[Got]) -> Answer + Send + Sync;

struct StubState {
    got: Mutex<Vec<Got>>,
    script: Box<Script>,
}

#[derive(Clone)]
struct Stub {
    state: Arc<StubState>,
    addr: SocketAddr,
}

async fn answer(
    State(state): State<Arc<StubState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let got = Got {
        method: method.to_string(),
        path: uri.path().to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let (code, extra, text) = {
        let mut all = state.got.lock().unwrap();
        let answer = (state.script)(&got, &all);
        all.push(got);
        answer
    };
    let mut response = (StatusCode::from_u16(code).unwrap(), text).into_response();
    for (name, value) in extra {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

impl Stub {
    async fn start(script: impl Fn(&Got, &[Got]) -> Answer + Send + Sync + 'static) -> Stub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(StubState {
            got: Mutex::new(Vec::new()),
            script: Box::new(script),
        });
        let app = Router::new()
            .fallback(axum::routing::any(answer))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Stub { state, addr }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn got(&self) -> Vec<Got> {
        self.state.got.lock().unwrap().clone()
    }
}

fn ok(code: u16, body: &str) -> Answer {
    (code, Vec::new(), body.to_owned())
}

// ---------------------------------------------------------------------------------
// Library-level set-up: a store with the office morning's events in its outbox

fn office_events() -> Vec<Event> {
    let config = Config::default();
    let mut engine = Engine::new(&config);
    engine.emit_call_events(&config);
    replay_bytes("office-day.pcap", OFFICE_DAY, &mut engine);
    engine.shutdown();
    let mut events = Vec::new();
    while let Some(e) = engine.poll() {
        if let EngineEvent::CallEvent(e) = e {
            events.push(*e);
        }
    }
    events
}

fn config(toml: &str) -> Config {
    Config::from_toml(toml, "calltap.toml").unwrap_or_else(|e| panic!("{e}"))
}

/// Quick retries, for tests.
const QUICK: &str = "retry_first_ms = 50\nretry_max_secs = 1\ntimeout_secs = 2\n";

struct Running {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    integrations: Integrations,
    events: Vec<Event>,
}

async fn start(toml: &str) -> Running {
    start_signed(toml, None).await
}

async fn start_signed(toml: &str, signer: Option<calltap::events::deliver::LinkSigner>) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let events = office_events();
    store.enqueue_events(&events).unwrap();
    let integrations = Integrations::start(&config(toml), store.clone(), signer).unwrap();
    Running {
        _dir: dir,
        store,
        integrations,
        events,
    }
}

/// Waits until `want` runs exist and none is running; answers them, oldest first.
async fn finished_runs(store: &Store, want: usize, within: Duration) -> Vec<Run> {
    let deadline = Instant::now() + within;
    loop {
        let mut runs = store.runs(10_000, None, None).unwrap();
        if runs.len() >= want && runs.iter().all(|r| r.status != RunStatus::Running) {
            runs.reverse();
            return runs;
        }
        assert!(
            Instant::now() < deadline,
            "{} runs finished of {want}: {runs:#?}",
            runs.iter()
                .filter(|r| r.status != RunStatus::Running)
                .count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn of_type<'a>(events: &'a [Event], kind: &str) -> Vec<&'a Event> {
    events.iter().filter(|e| e.kind.as_str() == kind).collect()
}

// ---------------------------------------------------------------------------------
// Steps and their answers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crm_lead_then_a_note_that_carries_the_id_the_crm_answered() {
    // The CRM hands out ids and refuses a note for a lead it did not make.
    let crm = Stub::start(|g, before| match (g.method.as_str(), g.path.as_str()) {
        ("POST", "/leads") => {
            let n = before.iter().filter(|b| b.method == "POST").count();
            ok(
                201,
                &json!({"id": format!("lead-{n}"), "status": "new"}).to_string(),
            )
        }
        ("PUT", path) => {
            let id = path
                .strip_prefix("/leads/")
                .and_then(|p| p.strip_suffix("/note"))
                .unwrap_or("");
            let issued = before
                .iter()
                .filter(|b| b.method == "POST")
                .enumerate()
                .any(|(n, _)| format!("lead-{n}") == id);
            if issued && g.json()["lead"] == id {
                ok(200, "{}")
            } else {
                ok(400, "unknown lead")
            }
        }
        _ => ok(404, ""),
    })
    .await;
    let toml = format!(
        r#"
[[integrations]]
name = "crm"
on = ["call.ended"]
secret = "crm-s3cret"
{QUICK}
[[integrations.steps]]
name = "lead"
method = "POST"
url = "{url}/leads"
headers = {{ Authorization = "Bearer t0ken" }}
body = '{{"phone": {{{{ event.data.clientNumber | tojson }}}}, "operator": {{{{ event.data.operatorId | tojson }}}}}}'
save = {{ lead_id = "/id" }}
expect = [201]

[[integrations.steps]]
name = "note"
method = "PUT"
url = "{url}/leads/{{{{ saved.lead_id }}}}/note"
body = '{{"lead": {{{{ saved.lead_id | tojson }}}}, "status": {{{{ steps.lead.json.status | tojson }}}}, "text": "{{{{ event.data.duration }}}} s with {{{{ event.data.operatorName }}}}"}}'
"#,
        url = crm.url()
    );
    let r = start(&toml).await;
    let ended = of_type(&r.events, "call.ended");
    assert_eq!(ended.len(), 5, "the office morning's answered calls");
    let runs = finished_runs(&r.store, ended.len(), Duration::from_secs(15)).await;
    let got = crm.got();
    for run in &runs {
        assert_eq!(run.status, RunStatus::Succeeded, "{run:#?}");
        assert_eq!(run.steps[0].code, Some(201));
        assert_eq!(run.steps[1].code, Some(200));
        let lead_id = run.saved["lead_id"].as_str().expect("saved id");
        let put = got
            .iter()
            .find(|g| g.method == "PUT" && g.path == format!("/leads/{lead_id}/note"))
            .expect("the note went to the lead");
        assert_eq!(put.header("x-calltap-delivery"), format!("{}.note", run.id));
        assert_eq!(put.header("x-calltap-integration"), "crm");
        assert_eq!(put.json()["status"], "new");
        assert!(put.json()["text"]
            .as_str()
            .unwrap()
            .ends_with(run.event.data["operatorName"].as_str().unwrap()));
    }
    let posts: Vec<&Got> = got.iter().filter(|g| g.method == "POST").collect();
    assert_eq!(posts.len(), ended.len(), "each lead once");
    assert!(posts
        .iter()
        .all(|p| p.header("authorization") == "Bearer t0ken"));
    // Signed as webhooks are: HMAC-SHA256 of timestamp + "." + body.
    for g in &got {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"crm-s3cret").unwrap();
        mac.update(format!("{}.{}", g.header("x-calltap-timestamp"), g.body).as_bytes());
        let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(g.header("x-calltap-signature"), want, "{g:?}");
    }
    let phones: BTreeSet<String> = posts
        .iter()
        .map(|p| p.json()["phone"].to_string())
        .collect();
    let want: BTreeSet<String> = ended
        .iter()
        .map(|e| e.data["clientNumber"].to_string())
        .collect();
    assert_eq!(phones, want);
    let metrics = r.integrations.metrics();
    let mut text = String::new();
    metrics.write_prometheus(&mut text);
    assert!(
        text.contains("calltap_integration_runs_total{integration=\"crm\",status=\"succeeded\"} 5"),
        "{text}"
    );
    assert!(text.contains(
        "calltap_integration_steps_total{integration=\"crm\",step=\"note\",status=\"succeeded\"} 5"
    ));
    r.integrations.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_select_exactly_the_expected_calls_and_steps() {
    let chat = Stub::start(|_, _| ok(200, "ok")).await;
    let toml = format!(
        r#"
[[integrations]]
name = "long-incoming"
on = ["call.ended", "call.missed", "call.busy"]
when = 'event.type == "call.missed" || (event.data.direction == "incoming" && has(event.data.duration) && event.data.duration >= 8)'
{QUICK}
[[integrations.steps]]
name = "post"
kind = "chat"
url = "{url}/chat"
text = "{{{{ event.type }}}} {{{{ event.callId }}}}"

[[integrations.steps]]
name = "missed_only"
kind = "chat"
when = 'event.type == "call.missed" && steps.post.status == "succeeded"'
url = "{url}/missed"
text = "missed {{{{ event.callId }}}}"
"#,
        url = chat.url()
    );
    let r = start(&toml).await;
    // What the condition should pick, read from the events themselves.
    let want: BTreeSet<String> = r
        .events
        .iter()
        .filter(|e| match e.kind.as_str() {
            "call.missed" => true,
            "call.ended" => {
                e.data["direction"] == "incoming" && e.data["duration"].as_u64().unwrap() >= 8
            }
            _ => false,
        })
        .map(|e| format!("{} {}", e.kind.as_str(), e.call_id))
        .collect();
    let considered = r
        .events
        .iter()
        .filter(|e| ["call.ended", "call.missed", "call.busy"].contains(&e.kind.as_str()))
        .count();
    assert!(
        !want.is_empty() && want.len() < considered,
        "the condition must both pick and leave out calls: {want:?}"
    );
    let runs = finished_runs(&r.store, want.len(), Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(r.store.runs(100, None, None).unwrap().len(), want.len());
    let posted: BTreeSet<String> = chat
        .got()
        .iter()
        .filter(|g| g.path == "/chat")
        .map(|g| g.json()["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(posted, want);
    let missed: Vec<String> = chat
        .got()
        .iter()
        .filter(|g| g.path == "/missed")
        .map(|g| g.json()["text"].as_str().unwrap().to_owned())
        .collect();
    let want_missed: Vec<String> = of_type(&r.events, "call.missed")
        .iter()
        .map(|e| format!("missed {}", e.call_id))
        .collect();
    assert_eq!(missed, want_missed);
    for run in &runs {
        assert_eq!(run.status, RunStatus::Succeeded);
        let second = &run.steps[1];
        if run.event.kind.as_str() == "call.missed" {
            assert_eq!(second.status, StepStatus::Succeeded);
        } else {
            assert_eq!(second.status, StepStatus::Skipped);
            assert_eq!(second.error.as_deref(), Some("when is false"));
        }
    }
    let mut text = String::new();
    r.integrations.metrics().write_prometheus(&mut text);
    let left_out = considered - want.len();
    assert!(
        text.contains(&format!(
            "calltap_integration_runs_total{{integration=\"long-incoming\",status=\"not_selected\"}} {left_out}"
        )),
        "{text}"
    );
    r.integrations.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_url_answering_429_waits_for_its_retry_after_then_posts() {
    let chat = Stub::start(|_, before| {
        if before.is_empty() {
            (
                429,
                vec![("retry-after", "1".to_owned())],
                "slow down".into(),
            )
        } else {
            ok(200, "ok")
        }
    })
    .await;
    let toml = format!(
        r#"
[[integrations]]
name = "chat"
on = ["call.missed"]
{QUICK}
[[integrations.steps]]
name = "post"
kind = "chat"
url = "{url}/hooks/T000/B000"
text = "Missed call from {{{{ event.data.clientNumber }}}}"
"#,
        url = chat.url()
    );
    let r = start(&toml).await;
    let runs = finished_runs(&r.store, 1, Duration::from_secs(10)).await;
    let got = chat.got();
    assert_eq!(got.len(), 2, "the 429, then the post");
    assert_eq!(
        got[0].header("x-calltap-delivery"),
        got[1].header("x-calltap-delivery")
    );
    assert_eq!(
        got[0].header("x-calltap-delivery"),
        format!("{}.post", runs[0].id)
    );
    let missed = of_type(&r.events, "call.missed")[0];
    assert_eq!(
        got[1].json(),
        json!({"text": format!("Missed call from {}", missed.data["clientNumber"].as_str().unwrap())})
    );
    let step = &runs[0].steps[0];
    assert_eq!(
        (step.status, step.attempts, step.code),
        (StepStatus::Succeeded, 2, Some(200))
    );
    r.integrations.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_ready_step_sees_the_signed_link_made_when_it_is_sent() {
    let chat = Stub::start(|_, _| ok(200, "ok")).await;
    let toml = format!(
        r#"
[[integrations]]
name = "recordings"
on = ["recording.ready"]
{QUICK}
[[integrations.steps]]
name = "post"
kind = "chat"
url = "{url}/"
text = "{{{{ event.data.recording.filename }}}} {{{{ event.data.recording.url }}}}"
"#,
        url = chat.url()
    );
    let signer: calltap::events::deliver::LinkSigner =
        Arc::new(|id: &str| Some(format!("https://calltap.example/recordings/{id}?sig=1")));
    let r = start_signed(&toml, Some(signer)).await;
    let ready = of_type(&r.events, "recording.ready");
    finished_runs(&r.store, ready.len(), Duration::from_secs(10)).await;
    let texts: BTreeSet<String> = chat
        .got()
        .iter()
        .map(|g| g.json()["text"].as_str().unwrap().to_owned())
        .collect();
    let want: BTreeSet<String> = ready
        .iter()
        .map(|e| {
            format!(
                "{} https://calltap.example/recordings/{}?sig=1",
                e.data["recording"]["filename"].as_str().unwrap(),
                e.data["id"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(texts, want);
    r.integrations.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_is_not_json_fails_a_step_that_saves_and_stops_the_run() {
    let crm = Stub::start(|g, _| match g.path.as_str() {
        "/leads" => ok(200, "<html>Lead created</html>"),
        _ => ok(200, "{}"),
    })
    .await;
    let toml = format!(
        r#"
[[integrations]]
name = "crm"
on = ["call.busy"]
{QUICK}
[[integrations.steps]]
name = "lead"
url = "{url}/leads"
save = {{ lead_id = "/id" }}
continue_on_error = false

[[integrations.steps]]
name = "note"
url = "{url}/leads/{{{{ saved.lead_id }}}}/note"

[[integrations.steps]]
name = "alert"
kind = "chat"
url = "{url}/alert"
text = "CRM step: {{{{ steps.lead.status }}}}"
"#,
        url = crm.url()
    );
    let r = start(&toml).await;
    let runs = finished_runs(&r.store, 1, Duration::from_secs(10)).await;
    let run = &runs[0];
    assert_eq!(run.status, RunStatus::Failed);
    let lead = &run.steps[0];
    assert_eq!(lead.status, StepStatus::Failed);
    assert_eq!(
        lead.attempts, 1,
        "an answer that is not JSON is not retried"
    );
    let reason = lead.error.as_deref().unwrap();
    assert!(
        reason.contains("not JSON") && reason.contains("lead_id"),
        "{reason}"
    );
    assert!(run.error.as_deref().unwrap().starts_with("step lead: "));
    for later in &run.steps[1..] {
        assert_eq!(later.status, StepStatus::Skipped);
        assert_eq!(later.error.as_deref(), Some("step lead failed before it"));
    }
    assert_eq!(crm.got().len(), 1, "nothing after the failed step");
    r.integrations.stop().await;

    // Marked continue_on_error, the later steps run (those that need its value fail).
    let crm2 = Stub::start(|g, _| match g.path.as_str() {
        "/leads" => ok(200, "<html>Lead created</html>"),
        _ => ok(200, "{}"),
    })
    .await;
    let toml = toml
        .replace("continue_on_error = false", "continue_on_error = true")
        .replace(&crm.url(), &crm2.url());
    let r = start(&toml).await;
    let runs = finished_runs(&r.store, 1, Duration::from_secs(10)).await;
    let run = &runs[0];
    assert_eq!(run.steps[0].status, StepStatus::Failed);
    assert_eq!(run.steps[1].status, StepStatus::Failed);
    assert!(run.steps[1]
        .error
        .as_deref()
        .unwrap()
        .contains("saved.lead_id"));
    assert_eq!(
        run.steps[2].status,
        StepStatus::Skipped,
        "the note failed before it"
    );
    assert_eq!(run.status, RunStatus::Failed);
    r.integrations.stop().await;
}

// ---------------------------------------------------------------------------------
// E-mail, through a local SMTP server

/// The Python with aiosmtpd (`.ci/run` makes one and names it in CALLTAP_TEST_PYTHON),
/// or a skip.
fn aiosmtpd_python() -> Option<String> {
    let python = std::env::var("CALLTAP_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import aiosmtpd"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Some(python)
    } else {
        skip::skip(format!("{python} has no aiosmtpd (pip install aiosmtpd)"));
        None
    }
}

/// aiosmtpd on loopback, printing each message it receives.
struct Smtp {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Smtp {
    fn start(python: &str, dir: &Path) -> Smtp {
        let port = free_port();
        let out = dir.join("smtp.out");
        let child = Command::new(python)
            .args([
                "-u",
                "-m",
                "aiosmtpd",
                "-n",
                "-c",
                "aiosmtpd.handlers.Debugging",
                "-l",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Smtp { child, port, out }
    }

    fn received(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mail_toml(port: u16, max_attempts: u32) -> String {
    format!(
        r#"
[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
from = "calltap <calltap@pbx.example>"
timeout_secs = 2

[[integrations]]
name = "missed-mail"
on = ["call.missed"]
max_attempts = {max_attempts}
{QUICK}
[[integrations.steps]]
name = "mail"
kind = "email"
to = ["sales@office.example"]
cc = ["{{{{ 'boss@office.example' }}}}"]
subject = "Missed call from {{{{ event.data.clientNumber }}}} to {{{{ event.data.operatorName }}}}"
body = """
{{{{ event.data.clientNumber }}}} called at {{{{ event.occurredAt }}}} and nobody answered.
"""
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_call_e_mail_reaches_the_smtp_server_with_its_rendered_subject() {
    let Some(python) = aiosmtpd_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(&python, dir.path());
    let r = start(&mail_toml(smtp.port, 3)).await;
    let runs = finished_runs(&r.store, 1, Duration::from_secs(15)).await;
    assert_eq!(runs[0].status, RunStatus::Succeeded, "{:#?}", runs[0]);
    assert_eq!(runs[0].steps[0].code, Some(250));
    let missed = of_type(&r.events, "call.missed")[0];
    let subject = format!(
        "Subject: Missed call from {} to {}",
        missed.data["clientNumber"].as_str().unwrap(),
        missed.data["operatorName"].as_str().unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !smtp.received().contains(&subject) {
        assert!(
            Instant::now() < deadline,
            "no {subject:?} in {}",
            smtp.received()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = smtp.received();
    assert!(text.contains("To: sales@office.example"), "{text}");
    assert!(text.contains("Cc: boss@office.example"), "{text}");
    assert!(text.contains("nobody answered"), "{text}");
    assert!(
        text.contains(&format!("Message-ID: <{}.mail@calltap>", runs[0].id)),
        "{text}"
    );
    r.integrations.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_server_that_is_down_is_retried_then_the_run_fails_saying_why() {
    let r = start(&mail_toml(free_port(), 3)).await;
    let runs = finished_runs(&r.store, 1, Duration::from_secs(15)).await;
    let step = &runs[0].steps[0];
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert_eq!((step.status, step.attempts), (StepStatus::Failed, 3));
    let reason = step.error.as_deref().unwrap();
    assert!(
        reason.starts_with("SMTP: ") && reason.contains("given up after 3 attempts"),
        "{reason}"
    );
    r.integrations.stop().await;
}

// ---------------------------------------------------------------------------------
// Refused at start

#[test]
fn a_template_naming_a_missing_field_or_a_bad_condition_is_refused_with_its_line() {
    let step = |body: &str, when: &str| {
        format!(
            "[[integrations]]\nname = \"crm\"\non = [\"call.ended\", \"call.ringing\"]\n\n[[integrations.steps]]\nname = \"lead\"\nurl = \"http://127.0.0.1:9/\"\n{when}body = '{body}'\n"
        )
    };
    // A field no event has: refused before any call, naming the step's line.
    let c = config(&step("{{ event.data.nope }}", ""));
    let err = calltap::integrations::check(&c).unwrap_err();
    assert!(
        err.starts_with("calltap.toml line 6: integration \"crm\" step \"lead\" body"),
        "{err}"
    );
    assert!(err.contains("nope"), "{err}");
    // A field only some events have, read without a guard.
    let c = config(&step("{{ event.data.duration }}", ""));
    let err = calltap::integrations::check(&c).unwrap_err();
    assert!(err.contains("call.ringing"), "{err}");
    let c = config(&step(
        "{% if event.data.duration is defined %}{{ event.data.duration }}{% endif %}",
        "",
    ));
    calltap::integrations::check(&c).unwrap();
    // A later step may read an earlier one's saved value, not one nobody saves.
    let two = format!(
        "{}\n[[integrations.steps]]\nname = \"note\"\nurl = \"http://127.0.0.1:9/{{{{ saved.lead_id }}}}\"\n",
        step("{}", "").replace("body = '{}'", "body = '{}'\nsave = { lead_id = \"/id\" }")
    );
    calltap::integrations::check(&config(&two)).unwrap();
    let err =
        calltap::integrations::check(&config(&two.replace("lead_id }}", "other }}"))).unwrap_err();
    assert!(
        err.contains("line 12") && err.contains("saved.other"),
        "{err}"
    );

    // Syntax: a condition that does not compile, and one that reads an unknown name.
    let err = Config::from_toml(
        &step("{}", "when = 'event.data.duration >>= 3'\n"),
        "calltap.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("calltap.toml line 8:")
            && err.contains("does not compile: line 1 column 23"),
        "{err}"
    );
    assert!(!err.contains('\n'), "one line: {err}");
    let err = Config::from_toml(&step("{}", "when = 'call.duration > 3'\n"), "calltap.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"call\"") && err.contains("event, steps, saved"),
        "{err}"
    );
    let err = Config::from_toml(&step("{% if %}", ""), "calltap.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("calltap.toml line 8:") && err.contains("template line 1"),
        "{err}"
    );
    // An e-mail step without [smtp], and keys of another kind.
    let err = Config::from_toml(
        "[[integrations]]\nname = \"m\"\n[[integrations.steps]]\nname = \"mail\"\nkind = \"email\"\nto = [\"a@b.example\"]\nsubject = \"s\"\nbody = \"b\"\n",
        "calltap.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("needs [smtp]"), "{err}");
    let err = Config::from_toml(
        "[[integrations]]\nname = \"c\"\n[[integrations.steps]]\nname = \"chat\"\nkind = \"chat\"\nurl = \"http://h/\"\ntext = \"t\"\nsave = { a = \"/a\" }\n",
        "calltap.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("save is not for chat steps"), "{err}");
}

#[test]
fn header_values_come_from_files_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "Bearer from-file\n").unwrap();
    let text = format!(
        "[[integrations]]\nname = \"crm\"\n[[integrations.steps]]\nname = \"lead\"\nurl = \"http://127.0.0.1:9/\"\nheaders = {{ Authorization = {{ file = \"{}\" }}, X-Api-Key = {{ env = \"CRM_KEY\" }} }}\n",
        token.display()
    );
    let env = |name: &str| (name == "CRM_KEY").then(|| "k-123".to_owned());
    let c = Config::from_toml_with(&text, "calltap.toml", &env).unwrap();
    let headers: Vec<(String, String)> = c.integrations[0].steps[0]
        .resolved_headers
        .iter()
        .map(|(n, v)| (n.clone(), v.expose().to_owned()))
        .collect();
    assert_eq!(
        headers,
        [
            ("Authorization".to_string(), "Bearer from-file".to_string()),
            ("X-Api-Key".to_string(), "k-123".to_string())
        ]
    );
    let err = Config::from_toml_with(&text, "calltap.toml", &|_: &str| None::<String>)
        .unwrap_err()
        .to_string();
    assert!(err.contains("CRM_KEY is not set"), "{err}");
}

// ---------------------------------------------------------------------------------
// The real binary

fn calltap() -> Command {
    daemon::calltap(KEY)
}

async fn runs_of(serve: &Serve) -> Value {
    reqwest::Client::new()
        .get(format!("{}/integrations/runs?limit=100", serve.base))
        .header("X-Secret-Key", KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn wait_for<F: std::future::Future<Output = bool>>(
    what: &str,
    within: Duration,
    check: impl Fn() -> F,
) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "waited for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_two_steps_then_a_restart_runs_the_second_once_and_never_the_first_again() {
    let dir = tempfile::tempdir().unwrap();
    let first = Stub::start(|_, _| ok(201, r#"{"id": "lead-1"}"#)).await;
    // The second step's receiver is down at first: nothing listens on its port.
    let second_port = free_port();
    let data = dir.path().join("data");
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"
[[integrations]]
name = "crm"
on = ["call.missed"]
retry_first_ms = 300
retry_max_secs = 1
timeout_secs = 2

[[integrations.steps]]
name = "lead"
url = "{first}/leads"
save = {{ lead_id = "/id" }}

[[integrations.steps]]
name = "note"
method = "PUT"
url = "http://127.0.0.1:{second_port}/leads/{{{{ saved.lead_id }}}}/note"
body = '{{"text": "missed"}}'
"#,
            first = first.url()
        ),
    );
    daemon::replay_office_day(KEY, &cfg, &data);
    let serve = Serve::start(KEY, &cfg, &data);
    // Killed once the first step is saved and the second has been tried.
    wait_for(
        "the first step done, the second failing",
        Duration::from_secs(10),
        || async {
            let runs = runs_of(&serve).await;
            let steps = &runs["runs"][0]["steps"];
            steps[0]["status"] == "succeeded" && steps[1]["attempts"].as_u64() >= Some(1)
        },
    )
    .await;
    serve.kill();
    assert_eq!(first.got().len(), 1);

    // The second receiver comes up; a new start resumes the run at its second step.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", second_port))
        .await
        .unwrap();
    let second_got = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
    {
        let got = second_got.clone();
        let app = Router::new().fallback(axum::routing::any(
            move |uri: Uri, headers: HeaderMap| async move {
                let delivery = headers
                    .get("x-calltap-delivery")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                got.lock().unwrap().push((uri.path().to_owned(), delivery));
                StatusCode::NO_CONTENT
            },
        ));
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    let serve = Serve::start(KEY, &cfg, &data);
    wait_for("the run to finish", Duration::from_secs(10), || async {
        runs_of(&serve).await["runs"][0]["status"] == "succeeded"
    })
    .await;
    let body = runs_of(&serve).await;
    let metrics = reqwest::get(format!("{}/metrics", serve.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serve.stop();
    let run = &body["runs"][0];
    assert_eq!(body["runs"].as_array().unwrap().len(), 1);
    assert_eq!(first.got().len(), 1, "the first step never again");
    let got = second_got.lock().unwrap().clone();
    assert_eq!(
        got,
        [(
            "/leads/lead-1/note".to_owned(),
            format!("{}.note", run["id"].as_str().unwrap())
        )],
        "the second step once"
    );
    assert_eq!(run["steps"][0]["attempts"], 1);
    assert_eq!(run["steps"][1]["status"], "succeeded");
    assert_eq!(run["steps"][1]["code"], 204);
    assert!(run["steps"][1]["attempts"].as_u64().unwrap() >= 2);
    assert_eq!(run["saved"]["lead_id"], "lead-1");
    assert_eq!(body["integrations"][0]["name"], "crm");
    assert!(
        metrics.contains("calltap_integration_steps_total{integration=\"crm\",step=\"note\",status=\"succeeded\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_log_is_behind_the_key_paged_and_checks_its_query() {
    let dir = tempfile::tempdir().unwrap();
    let chat = Stub::start(|_, _| ok(200, "ok")).await;
    let data = dir.path().join("data");
    let cfg = write_config(
        dir.path(),
        &format!(
            "[[integrations]]\nname = \"chat\"\non = [\"call.ringing\"]\n{QUICK}\n[[integrations.steps]]\nname = \"post\"\nkind = \"chat\"\nurl = \"{}/\"\ntext = \"ringing\"\n",
            chat.url()
        ),
    );
    daemon::replay_office_day(KEY, &cfg, &data);
    let serve = Serve::start(KEY, &cfg, &data);
    wait_for("seven runs", Duration::from_secs(10), || async {
        chat.got().len() >= 7
    })
    .await;
    let http = reqwest::Client::new();
    let get = |q: &str| {
        let url = format!("{}/integrations/runs{q}", serve.base);
        http.get(url).header("X-Secret-Key", KEY).send()
    };
    let unauthorized = http
        .get(format!("{}/integrations/runs", serve.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    let mut ids = Vec::new();
    let mut q = "?limit=3".to_owned();
    loop {
        let page: Value = get(&q).await.unwrap().json().await.unwrap();
        let runs = page["runs"].as_array().unwrap();
        assert!(runs.len() <= 3);
        ids.extend(runs.iter().map(|r| r["id"].as_str().unwrap().to_owned()));
        match page["next"].as_str() {
            Some(next) => q = format!("?limit=3&before={next}"),
            None => break,
        }
    }
    assert_eq!(ids.len(), 7);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 7, "no run twice");
    for (q, code) in [
        ("?limit=0", 400),
        ("?limit=x", 400),
        ("?before=12", 400),
        ("?integration=nope", 404),
        ("?integration=chat", 200),
    ] {
        assert_eq!(get(q).await.unwrap().status(), code, "{q}");
    }
    serve.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrations_test_runs_on_a_stored_call_and_a_dry_run_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let crm = Stub::start(|g, _| match g.method.as_str() {
        "POST" => ok(201, r#"{"id": 77}"#),
        _ => ok(200, "{}"),
    })
    .await;
    let data = dir.path().join("data");
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"
[[integrations]]
name = "crm"
on = ["call.ended"]
{QUICK}
[[integrations.steps]]
name = "lead"
url = "{url}/leads"
headers = {{ Authorization = "Bearer secret-token" }}
body = '{{"phone": {{{{ event.data.clientNumber | tojson }}}}}}'
save = {{ lead_id = "/id" }}

[[integrations.steps]]
name = "note"
method = "PATCH"
url = "{url}/leads/{{{{ saved.lead_id }}}}"
body = '{{"note": "called"}}'
"#,
            url = crm.url()
        ),
    );
    // A store with the calls and no outbox.
    let out = calltap()
        .args(["replay", "-q", "--config"])
        .arg(&cfg)
        .arg("--data")
        .arg(&data)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/office-day.pcap"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let call = {
        let store = Store::open(&data).unwrap();
        let mut calls = store.calls_between(0, u64::MAX);
        calls.next().expect("an answered call").unwrap()
    };
    let test = |extra: &[&str]| {
        calltap()
            .args([
                "integrations",
                "test",
                "crm",
                "--call",
                &call.id,
                "--config",
            ])
            .arg(&cfg)
            .arg("--data")
            .arg(&data)
            .args(extra)
            .output()
            .unwrap()
    };
    let dry = test(&["--dry-run"]);
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(crm.got().is_empty(), "a dry run sends nothing");
    let phone = call.client_number.clone().unwrap();
    assert!(
        text.contains(&format!("POST {}/leads", crm.url())),
        "{text}"
    );
    assert!(
        text.contains(&format!("{{\"phone\": \"{phone}\"}}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("PATCH {}/leads/<saved.lead_id>", crm.url())),
        "{text}"
    );
    assert!(
        text.contains("Authorization: <from the configuration, not shown>"),
        "{text}"
    );
    assert!(!text.contains("secret-token"), "{text}");

    let real = test(&[]);
    let text = String::from_utf8_lossy(&real.stdout);
    assert!(real.status.success(), "{text}");
    assert!(text.contains("step lead: succeeded, answer 201"), "{text}");
    assert!(text.contains("step note: succeeded, answer 200"), "{text}");
    assert!(text.contains("saved: {\"lead_id\":77}"), "{text}");
    let got = crm.got();
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[1].method.as_str(), got[1].path.as_str()),
        ("PATCH", "/leads/77")
    );

    let missing = calltap()
        .args([
            "integrations",
            "test",
            "nope",
            "--call",
            &call.id,
            "--config",
        ])
        .arg(&cfg)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("the integrations are crm"));
}

/// The files the README's examples name, without the real /etc.
struct ReadmeFiles;

impl calltap::config::Environment for ReadmeFiles {
    fn var(&self, _: &str) -> Option<String> {
        None
    }

    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        match path.to_str() {
            Some("/etc/calltap/crm-token") => Ok("Bearer t0ken\n".into()),
            Some("/etc/calltap/smtp-password") => Ok("pw\n".into()),
            _ => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
        }
    }
}

#[test]
fn the_readme_examples_load_and_fit_every_event_they_run_on() {
    let text = readme_block("## Integrations", "toml");
    let c =
        Config::from_toml_with(&text, "README.md", &ReadmeFiles).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = c.integrations.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["crm", "missed-call-mail", "long-calls"]);
    calltap::integrations::check(&c).unwrap_or_else(|e| panic!("{e}"));
}
