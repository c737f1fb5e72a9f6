//! The API over real HTTP on loopback, as the importer sees it: a store filled with
//! answered incoming, outgoing and exported-internal calls, a missed call and one WAV;
//! every endpoint and shape, every filter form and operator, window edges, auth on every
//! endpoint with key rotation, recording links (full, Range, forged, expired), every bad
//! input, and the shared importer-check tool run against the live server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use calltap::api::{self, AppState};
use calltap::call::record::RecordingFile;
use calltap::call::{CallRecord, Direction, OperatorRef, Outcome, WhoHungUp};
use calltap::config::Config;
use calltap::store::{DiscoveredOperator, Store};
use hmac::{Hmac, Mac};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

const KEY_NEW: &str = "new-key-0123456789abcdef";
const KEY_OLD: &str = "old-key-0123456789abcdef";
const LINK_KEY_NEW: &str = "link-key-new-0123456789";
const LINK_KEY_OLD: &str = "link-key-old-0123456789";
/// A Unix time the fixture's calls start after.
const T0: u64 = 1_700_000_000;
/// A window holding every fixture call.
const FROM: u64 = T0;
const TO: u64 = T0 + 2_000;
/// Calls after `TO`, 1,700 s apart.
const LATE: u64 = 24;

// ---------------------------------------------------------------- the fixture

fn operator(id: &str, name: &str, number: &str) -> OperatorRef {
    OperatorRef {
        id: id.into(),
        name: name.into(),
        number: number.into(),
        department: None,
        configured: true,
    }
}

#[path = "support/records.rs"]
mod records;

/// An answered, exported call starting at `T0 + offset`, lasting a minute.
fn call(id: &str, offset: u64, direction: Direction, op: OperatorRef) -> CallRecord {
    CallRecord {
        direction,
        operator: op,
        client_name: Some("Client One".into()),
        ..records::answered_call(id, T0 + offset)
    }
}

fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// A one-second stereo 8 kHz WAV, as the recording layer writes them.
fn write_wav(path: &Path) -> u64 {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..8000i32 {
        w.write_sample(((i * 37) % 2000 - 1000) as i16).unwrap();
        w.write_sample(((i * 91) % 3000 - 1500) as i16).unwrap();
    }
    w.finalize().unwrap();
    std::fs::metadata(path).unwrap().len()
}

/// Fills `store` with the scenario every test reads:
///
/// | id        | start  | direction | operator | X-Queue | X-Priority | X-VIP | MOS | recording |
/// |-----------|--------|-----------|----------|---------|------------|-------|-----|-----------|
/// | c-in-1    | T0+100 | incoming  | op-101   | billing | 3          | yes   | 4.2 | WAV       |
/// | c-in-2    | T0+200 | incoming  | op-102   | support | 7          | no    | 3.1 | none (SRTP) |
/// | c-missed  | T0+250 | missed, not exported                                               |
/// | c-out-1   | T0+300 | outgoing  | op-101   |         | 5          |       | 2.5 | file gone |
/// | c-int-1   | T0+400 | internal (exported, so "outgoing") | op-102 | none of the headers   |
/// | c-edge    | T0+1000| incoming  | op-101   |         | 10         |       |     |           |
/// | c-late-NN | T0+3000+NN*1700 (24 calls, after the window most tests use) | op-102 |  |     |
fn fill(store: &Store) {
    let alice = || operator("op-101", "Alice Smith", "101");
    let bob = || operator("op-102", "Bob Jones", "102");

    let mut in1 = call("c-in-1", 100, Direction::Incoming, alice());
    in1.sip.headers = headers(&[
        ("X-Queue", "billing"),
        ("X-Priority", "3"),
        ("x-vip", "yes"),
    ]);
    in1.media.mos = Some(4.2);
    let wav = store.recordings_dir().join("c-in-1.wav");
    let bytes = write_wav(&wav);
    in1.media.recording = Some(RecordingFile {
        file: "c-in-1.wav".into(),
        bytes,
        sample_rate: 8000,
        duration_ms: 1000,
    });

    let mut in2 = call("c-in-2", 200, Direction::Incoming, bob());
    in2.sip.headers = headers(&[("X-Queue", "support"), ("X-Priority", "7"), ("X-VIP", "no")]);
    in2.media.mos = Some(3.1);
    in2.media.no_recording_reason = Some("encrypted media (SRTP)".into());
    in2.who_hung_up = WhoHungUp::Operator;

    let mut missed = call("c-missed", 250, Direction::Incoming, alice());
    missed.outcome = Outcome::Missed;
    missed.exported = false;
    missed.duration = 0;
    missed.end_time = missed.start_time;

    let mut out1 = call("c-out-1", 300, Direction::Outgoing, alice());
    out1.sip.headers = headers(&[("X-Priority", "5")]);
    out1.media.mos = Some(2.5);
    out1.media.recording = Some(RecordingFile {
        file: "c-out-1.wav".into(),
        bytes: 44,
        sample_rate: 8000,
        duration_ms: 0,
    });
    out1.client_name = None;

    let int1 = call("c-int-1", 400, Direction::Internal, bob());

    let mut edge = call("c-edge", 1000, Direction::Incoming, alice());
    edge.sip.headers = headers(&[("X-Priority", "10")]);

    store
        .put_calls(&[in1, in2, missed, out1, int1, edge])
        .unwrap();
    // Later the same day, outside [FROM, TO): spread over hours, for long windows.
    let late: Vec<CallRecord> = (0..LATE)
        .map(|k| {
            call(
                &format!("c-late-{k:02}"),
                3_000 + k * 1_700,
                Direction::Incoming,
                bob(),
            )
        })
        .collect();
    store.put_calls(&late).unwrap();
    for (id, name) in [("103", "Carol"), ("101", "alice desk phone")] {
        store
            .upsert_operator(&DiscoveredOperator {
                id: id.into(),
                name: name.into(),
                extension: id.into(),
                first_seen: T0,
                last_seen: T0,
            })
            .unwrap();
    }
}

fn config(port: u16, secret_keys: &str) -> Config {
    let text = format!(
        r#"
        [api]
        listen = "127.0.0.1:{port}"
        secret_keys = {secret_keys}
        link_keys = ["{LINK_KEY_NEW}", "{LINK_KEY_OLD}"]
        public_url = "http://127.0.0.1:{port}"
        max_window_days = 2
        max_body_bytes = "4KiB"

        # These tests send wrong keys from 127.0.0.1 by the hundred, on purpose.
        [api.rate_limit]
        failed_keys_per_minute = 0

        [[operators]]
        id = "op-101"
        name = "Alice Smith"
        extension = "101"
        phone = "+15551230101"
        department = "Sales"

        [[operators]]
        id = "op-102"
        name = "Bob Jones"
        extension = "102"
        department = "Support"

        [[properties]]
        key = "Department"
        type = "enum"
        values = ["Sales", "Support"]
        source = "department"

        [[properties]]
        key = "Queue"
        type = "string"
        source = "header"
        header = "X-Queue"

        [[properties]]
        key = "Priority"
        type = "number"
        source = "header"
        header = "X-Priority"

        [[properties]]
        key = "VIP"
        type = "boolean"
        source = "header"
        header = "X-VIP"

        [[properties]]
        key = "Quality"
        type = "number"
        source = "mos"
        "#
    );
    Config::from_toml(&text, "tests/api.rs").expect("the test configuration is valid")
}

struct Server {
    base: String,
    port: u16,
    state: AppState,
}

/// Starts a server on its own thread and runtime; it lives as long as the test process.
fn start(secret_keys: &str) -> Server {
    let (tx, rx) = std::sync::mpsc::channel();
    let keys = secret_keys.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
            let store = Arc::new(Store::open(dir.path()).unwrap());
            fill(&store);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let state = AppState::new(config(port, &keys), store).unwrap();
            tx.send((port, state.clone())).unwrap();
            api::serve_on(listener, state, std::future::pending())
                .await
                .unwrap();
        });
    });
    let (port, state) = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    Server {
        base: format!("http://127.0.0.1:{port}"),
        port,
        state,
    }
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| start(&format!("[\"{KEY_NEW}\", \"{KEY_OLD}\"]")))
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    bytes: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|e| {
            panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.bytes))
        })
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    /// Asserts the status and the contract's error shape; answers the message.
    fn error(&self, status: u16) -> String {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{:?}",
            String::from_utf8_lossy(&self.bytes)
        );
        assert!(self.header("content-type").starts_with("application/json"));
        let json = self.json();
        assert_eq!(json["status"], "error", "{json}");
        let message = json["message"].as_str().expect("a message").to_owned();
        assert!(!message.is_empty());
        assert_eq!(json.as_object().unwrap().len(), 2, "{json}");
        message
    }
}

async fn send(
    method: Method,
    url: &str,
    key: Option<&str>,
    body: Option<Vec<u8>>,
    extra: &[(&str, &str)],
) -> Answer {
    let url = if url.starts_with("http") {
        url.to_owned()
    } else {
        format!("{}{url}", server().base)
    };
    let mut request = client().request(method, &url);
    if let Some(key) = key {
        request = request.header("X-Secret-Key", key);
    }
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body);
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("the server answers");
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        bytes: response.bytes().await.unwrap().to_vec(),
    }
}

async fn get(path: &str) -> Answer {
    send(Method::GET, path, Some(KEY_NEW), None, &[]).await
}

async fn post_calls(body: Value) -> Answer {
    send(
        Method::POST,
        "/calls",
        Some(KEY_NEW),
        Some(serde_json::to_vec(&body).unwrap()),
        &[],
    )
    .await
}

/// The ids `POST /calls` answers for the fixture window plus `extra` fields.
async fn ids(extra: Value) -> Vec<String> {
    ids_in(FROM, TO, extra).await
}

async fn ids_in(from: u64, to: u64, extra: Value) -> Vec<String> {
    let mut body = json!({"startTime": from, "stopTime": to});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let answer = post_calls(body.clone()).await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "{body}: {:?}",
        String::from_utf8_lossy(&answer.bytes)
    );
    answer.json()["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Sends `GET path` byte for byte (no client normalising `..` or `%2e`), and answers
/// the status and body.
fn raw_get(path: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(("127.0.0.1", server().port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Secret-Key: {KEY_NEW}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1;
    (
        status,
        serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {text}")),
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(key: &str, id: &str, exp: u64) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{id}|{exp}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

async fn recording_url(id: &str) -> String {
    let answer = get(&format!("/calls/{id}/recording")).await;
    assert_eq!(answer.status, StatusCode::OK);
    answer.json()["url"].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------- endpoints and shapes

#[tokio::test]
async fn health_answers_success() {
    let answer = get("/health").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer
        .header("content-type")
        .starts_with("application/json"));
    assert_eq!(answer.json(), json!({"status": "success"}));
}

#[tokio::test]
async fn contacts_merge_configured_and_discovered_operators() {
    let answer = get("/contacts").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.json(),
        json!({"contacts": [
            {"id": "op-101", "phone": "+15551230101", "name": "Alice Smith", "department": "Sales"},
            {"id": "op-102", "phone": "102", "name": "Bob Jones", "department": "Support"},
            // "101" was discovered too, but the configured op-101 has that extension.
            {"id": "103", "phone": "103", "name": "Carol"}
        ]})
    );
}

#[tokio::test]
async fn calls_answer_exported_completed_calls_in_start_order_with_properties() {
    let answer = post_calls(json!({"startTime": FROM, "stopTime": TO})).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer
        .header("content-type")
        .starts_with("application/json"));
    let json = answer.json();
    let calls = json["calls"].as_array().unwrap();
    let ids: Vec<&str> = calls.iter().map(|c| c["id"].as_str().unwrap()).collect();
    // No missed call; the internal call goes out as outgoing.
    assert_eq!(ids, ["c-in-1", "c-in-2", "c-out-1", "c-int-1", "c-edge"]);
    assert_eq!(
        calls[0],
        json!({
            "id": "c-in-1",
            "clientNumber": "+15557654321",
            "clientName": "Client One",
            "direction": "incoming",
            "duration": 60,
            "startTime": T0 + 100,
            "endTime": T0 + 160,
            "operatorId": "op-101",
            "operatorName": "Alice Smith",
            "operatorNumber": "101",
            "whoHungUp": "client",
            "properties": {"Department": "Sales", "Queue": "billing", "Priority": 3, "VIP": true, "Quality": 4.2}
        })
    );
    assert_eq!(calls[3]["direction"], "outgoing");
    assert_eq!(calls[3]["properties"], json!({"Department": "Support"}));
    let schema_keys = ["Department", "Queue", "Priority", "VIP", "Quality"];
    for c in calls {
        for key in c["properties"].as_object().unwrap().keys() {
            assert!(schema_keys.contains(&key.as_str()), "{key}");
        }
    }
}

#[tokio::test]
async fn schema_lists_the_configured_properties() {
    let answer = get("/properties/schema").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.json(),
        json!({"properties": [
            {"key": "Department", "type": "enum", "values": ["Sales", "Support"]},
            {"key": "Queue", "type": "string"},
            {"key": "Priority", "type": "number"},
            {"key": "VIP", "type": "boolean"},
            {"key": "Quality", "type": "number"}
        ]})
    );
}

#[tokio::test]
async fn recording_answers_a_signed_link() {
    let answer = get("/calls/c-in-1/recording").await;
    assert_eq!(answer.status, StatusCode::OK);
    let json = answer.json();
    assert_eq!(json["filename"], "call_recording_c-in-1.wav");
    assert_eq!(json["mimeType"], "audio/wav");
    let url = json["url"].as_str().unwrap();
    let prefix = format!("{}/recordings/c-in-1.wav?exp=", server().base);
    assert!(url.starts_with(&prefix), "{url}");
    let (exp, sig) = url[prefix.len()..].split_once("&sig=").unwrap();
    let exp: u64 = exp.parse().unwrap();
    assert!(exp > now() + 86_000 && exp <= now() + 86_400, "{exp}");
    assert_eq!(sig, sign(LINK_KEY_NEW, "c-in-1", exp));
}

#[tokio::test]
async fn recording_of_an_unknown_call_or_a_call_without_one_is_404() {
    for (id, says) in [
        ("no-such-call", "no call"),
        ("c-missed", "no call"), // not exported: the importer never saw it
        ("c-in-2", "SRTP"),
        ("c-out-1", "no longer on disk"),
    ] {
        let message = get(&format!("/calls/{id}/recording")).await.error(404);
        assert!(message.contains(says), "{id}: {message}");
    }
}

#[tokio::test]
async fn with_no_properties_configured_the_schema_is_empty_and_a_reload_applies() {
    let full = server().state.config();
    let mut bare = full.clone();
    bare.properties.clear();
    // A second server over its own store, so the shared one is not disturbed.
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    fill(&store);
    let other = AppState::new(bare, store).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(api::serve_on(
        listener,
        other.clone(),
        std::future::pending(),
    ));
    let schema = || async {
        send(
            Method::GET,
            &format!("{base}/properties/schema"),
            Some(KEY_NEW),
            None,
            &[],
        )
        .await
        .json()
    };
    let first_call = || async {
        let body = serde_json::to_vec(&json!({"startTime": FROM, "stopTime": TO})).unwrap();
        let json = send(
            Method::POST,
            &format!("{base}/calls"),
            Some(KEY_NEW),
            Some(body),
            &[],
        )
        .await
        .json();
        json["calls"][0].clone()
    };
    assert_eq!(schema().await, json!({"properties": []}));
    let call = first_call().await;
    assert_eq!(call["id"], "c-in-1");
    assert!(call.get("properties").is_none(), "{call}");

    // Properties are computed when served: a new schema applies to stored calls at once.
    other.reload(full);
    assert_eq!(schema().await["properties"].as_array().unwrap().len(), 5);
    assert_eq!(first_call().await["properties"]["Queue"], "billing");
}

// ---------------------------------------------------------------- filters

#[tokio::test]
async fn direction_filter() {
    assert_eq!(
        ids(json!({"direction": "incoming"})).await,
        ["c-in-1", "c-in-2", "c-edge"]
    );
    assert_eq!(
        ids(json!({"direction": "outgoing"})).await,
        ["c-out-1", "c-int-1"]
    );
}

#[tokio::test]
async fn operators_filter() {
    assert_eq!(
        ids(json!({"operators": ["op-102"]})).await,
        ["c-in-2", "c-int-1"]
    );
    assert_eq!(
        ids(json!({"operators": ["op-101", "nobody"], "direction": "outgoing"})).await,
        ["c-out-1"]
    );
    assert!(ids(json!({"operators": ["nobody"]})).await.is_empty());
    // An empty list sets no condition.
    assert_eq!(ids(json!({"operators": []})).await.len(), 5);
}

#[tokio::test]
async fn property_filter_exact_values() {
    assert_eq!(
        ids(json!({"propertyFilters": {"Queue": "billing"}})).await,
        ["c-in-1"]
    );
    assert_eq!(
        ids(json!({"propertyFilters": {"VIP": false}})).await,
        ["c-in-2"]
    );
    assert_eq!(
        ids(json!({"propertyFilters": {"Priority": 7}})).await,
        ["c-in-2"]
    );
    assert_eq!(
        ids(json!({"propertyFilters": {"Department": "Sales"}})).await,
        ["c-in-1", "c-out-1", "c-edge"]
    );
    // A value of another type than the property's matches nothing.
    assert!(ids(json!({"propertyFilters": {"Priority": "7"}}))
        .await
        .is_empty());
}

#[tokio::test]
async fn property_filter_one_of_lists() {
    assert_eq!(
        ids(json!({"propertyFilters": {"Department": ["Support"]}})).await,
        ["c-in-2", "c-int-1"]
    );
    assert_eq!(
        ids(json!({"propertyFilters": {"Department": ["Sales", "Support"]}}))
            .await
            .len(),
        5
    );
    assert_eq!(
        ids(json!({"propertyFilters": {"Queue": ["support", "sales"]}})).await,
        ["c-in-2"]
    );
    assert_eq!(
        ids(json!({"propertyFilters": {"Priority": [3, 10]}})).await,
        ["c-in-1", "c-edge"]
    );
}

#[tokio::test]
async fn property_filter_numeric_conditions_each_operator() {
    // Priority: c-in-1 3, c-in-2 7, c-out-1 5, c-int-1 none, c-edge 10.
    let cases: [(&str, f64, &[&str]); 6] = [
        ("eq", 7.0, &["c-in-2"]),
        ("ne", 7.0, &["c-in-1", "c-out-1", "c-edge"]),
        ("gt", 5.0, &["c-in-2", "c-edge"]),
        ("gte", 5.0, &["c-in-2", "c-out-1", "c-edge"]),
        ("lt", 5.0, &["c-in-1"]),
        ("lte", 5.0, &["c-in-1", "c-out-1"]),
    ];
    for (op, value, expected) in cases {
        for mode in [json!("all"), json!("any"), Value::Null] {
            let mut filter = json!({"conditions": [{"operator": op, "value": value}]});
            if !mode.is_null() {
                filter["mode"] = mode.clone();
            }
            assert_eq!(
                ids(json!({"propertyFilters": {"Priority": filter}})).await,
                expected,
                "{op} {value} mode {mode}"
            );
        }
    }
}

#[tokio::test]
async fn property_filter_modes_all_and_any() {
    let between = json!({"mode": "all", "conditions": [
        {"operator": "gt", "value": 3}, {"operator": "lt", "value": 10}]});
    assert_eq!(
        ids(json!({"propertyFilters": {"Priority": between}})).await,
        ["c-in-2", "c-out-1"]
    );
    let outside = json!({"mode": "any", "conditions": [
        {"operator": "lt", "value": 4}, {"operator": "gt", "value": 8}]});
    assert_eq!(
        ids(json!({"propertyFilters": {"Priority": outside}})).await,
        ["c-in-1", "c-edge"]
    );
    // No mode: all.
    let default = json!({"conditions": [
        {"operator": "gte", "value": 3}, {"operator": "lte", "value": 5}]});
    assert_eq!(
        ids(json!({"propertyFilters": {"Priority": default}})).await,
        ["c-in-1", "c-out-1"]
    );
    let quality = json!({"conditions": [{"operator": "gte", "value": 3.1}]});
    assert_eq!(
        ids(json!({"propertyFilters": {"Quality": quality}})).await,
        ["c-in-1", "c-in-2"]
    );
}

#[tokio::test]
async fn property_filters_and_across_keys_and_with_other_filters() {
    let filters = json!({
        "Department": "Sales",
        "Priority": {"conditions": [{"operator": "gt", "value": 4}]}
    });
    assert_eq!(
        ids(json!({"propertyFilters": filters.clone()})).await,
        ["c-out-1", "c-edge"]
    );
    assert_eq!(
        ids(json!({"propertyFilters": filters, "direction": "incoming"})).await,
        ["c-edge"]
    );
    assert_eq!(
        ids(json!({"propertyFilters": {"Department": ["Support"], "Queue": "support"}, "operators": ["op-102"]})).await,
        ["c-in-2"]
    );
}

#[tokio::test]
async fn window_start_is_inclusive_and_stop_exclusive() {
    let window = |a: u64, b: u64| json!({"startTime": a, "stopTime": b});
    let got = |body: Value| async move {
        let json = post_calls(body).await.json();
        json["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(got(window(T0 + 100, T0 + 200)).await, ["c-in-1"]);
    assert_eq!(got(window(T0 + 101, T0 + 201)).await, ["c-in-2"]);
    assert_eq!(got(window(T0 + 100, T0 + 101)).await, ["c-in-1"]);
    assert!(got(window(T0 + 100, T0 + 100)).await.is_empty());
    assert!(got(window(T0 + 1001, T0 + 3_000)).await.is_empty());
    assert_eq!(got(window(T0 + 1001, T0 + 3_001)).await, ["c-late-00"]);
    // Fractions: a call at T0+100 lies in [T0+99.5, T0+100.5), not in [T0+100.5, ...).
    assert_eq!(
        got(json!({"startTime": (T0 + 99) as f64 + 0.5, "stopTime": (T0 + 100) as f64 + 0.5}))
            .await,
        ["c-in-1"]
    );
    assert_eq!(
        got(json!({"startTime": (T0 + 100) as f64 + 0.5, "stopTime": T0 + 200})).await,
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn a_long_window_read_in_slices_keeps_start_order() {
    // Two days: read an hour at a time by several threads, sent in order.
    let answer = post_calls(json!({"startTime": T0 - 86_400, "stopTime": T0 + 86_400})).await;
    let json = answer.json();
    let calls = json["calls"].as_array().unwrap();
    let mut expected: Vec<String> = ["c-in-1", "c-in-2", "c-out-1", "c-int-1", "c-edge"]
        .map(String::from)
        .to_vec();
    expected.extend((0..LATE).map(|k| format!("c-late-{k:02}")));
    let got: Vec<&str> = calls.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(got, expected);
    // With a filter that empties some slices and not others.
    let got = ids_in(
        T0 - 86_400,
        T0 + 86_400,
        json!({"operators": ["op-102"], "direction": "incoming"}),
    )
    .await;
    let mut expected = vec!["c-in-2".to_owned()];
    expected.extend((0..LATE).map(|k| format!("c-late-{k:02}")));
    assert_eq!(got, expected);
}

// ---------------------------------------------------------------- auth

/// Every contract endpoint, and `/status`, with a request that would succeed.
fn protected() -> Vec<(Method, &'static str, Option<Vec<u8>>)> {
    let window = serde_json::to_vec(&json!({"startTime": FROM, "stopTime": TO})).unwrap();
    vec![
        (Method::GET, "/health", None),
        (Method::GET, "/contacts", None),
        (Method::POST, "/calls", Some(window)),
        (Method::GET, "/properties/schema", None),
        (Method::GET, "/calls/c-in-1/recording", None),
        (Method::GET, "/status", None),
    ]
}

#[tokio::test]
async fn every_contract_endpoint_needs_the_key_and_accepts_any_configured_one() {
    for (method, path, body) in protected() {
        let message = send(method.clone(), path, None, body.clone(), &[])
            .await
            .error(401);
        assert!(message.contains("missing"), "{path}: {message}");
        let message = send(method.clone(), path, Some("wrong"), body.clone(), &[])
            .await
            .error(401);
        assert!(!message.contains("wrong\""), "the key is never echoed");
        // Almost the key: the same length, the last byte different.
        let almost = format!("{}X", &KEY_NEW[..KEY_NEW.len() - 1]);
        send(method.clone(), path, Some(&almost), body.clone(), &[])
            .await
            .error(401);
        for key in [KEY_NEW, KEY_OLD] {
            let answer = send(method.clone(), path, Some(key), body.clone(), &[]).await;
            assert_eq!(answer.status, StatusCode::OK, "{path} with {key}");
        }
    }
}

#[tokio::test]
async fn the_key_is_checked_before_the_body_or_the_method() {
    // A malformed body without a key is a 401, not a 400.
    send(Method::POST, "/calls", None, Some(b"{".to_vec()), &[])
        .await
        .error(401);
    // A wrong method on a contract path without a key is a 401, with it a 405.
    send(Method::DELETE, "/calls", None, None, &[])
        .await
        .error(401);
    send(Method::GET, "/calls", Some(KEY_NEW), None, &[])
        .await
        .error(405);
    send(Method::POST, "/health", Some(KEY_NEW), None, &[])
        .await
        .error(405);
}

#[tokio::test]
async fn with_no_secret_key_configured_every_contract_request_is_refused() {
    let closed = start("[]");
    for (method, path, body) in protected() {
        for key in [None, Some(KEY_NEW), Some("")] {
            let answer = send(
                method.clone(),
                &format!("{}{path}", closed.base),
                key,
                body.clone(),
                &[],
            )
            .await;
            let message = answer.error(401);
            assert!(message.contains("no secret key is configured"), "{message}");
        }
    }
}

// ---------------------------------------------------------------- recording download

#[tokio::test]
async fn download_serves_the_wav_without_the_key() {
    let url = recording_url("c-in-1").await;
    let answer = send(Method::GET, &url, None, None, &[]).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("content-type"), "audio/wav");
    assert_eq!(answer.header("accept-ranges"), "bytes");
    assert_eq!(
        answer.header("content-length"),
        answer.bytes.len().to_string()
    );
    let on_disk =
        std::fs::read(server().state.store().recordings_dir().join("c-in-1.wav")).unwrap();
    assert_eq!(answer.bytes, on_disk);
    assert_eq!(&answer.bytes[..4], b"RIFF");
    let reader = hound::WavReader::new(std::io::Cursor::new(&answer.bytes)).unwrap();
    assert_eq!(reader.spec().channels, 2);
    assert_eq!(reader.duration(), 8000);
}

#[tokio::test]
async fn download_answers_ranges() {
    let url = recording_url("c-in-1").await;
    let full = send(Method::GET, &url, None, None, &[]).await.bytes;
    let part = send(Method::GET, &url, None, None, &[("Range", "bytes=10-49")]).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.bytes, &full[10..50]);
    assert_eq!(part.header("content-length"), "40");
    assert_eq!(
        part.header("content-range"),
        format!("bytes 10-49/{}", full.len())
    );
    let tail = send(Method::GET, &url, None, None, &[("Range", "bytes=-100")]).await;
    assert_eq!(tail.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(tail.bytes, &full[full.len() - 100..]);
    let open = send(Method::GET, &url, None, None, &[("Range", "bytes=32000-")]).await;
    assert_eq!(open.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(open.bytes, &full[32000..]);

    let beyond = format!("bytes={}-{}", full.len() + 10, full.len() + 20);
    let answer = send(Method::GET, &url, None, None, &[("Range", &beyond)]).await;
    answer.error(416);
    assert_eq!(
        answer.header("content-range"),
        format!("bytes */{}", full.len())
    );
    send(Method::GET, &url, None, None, &[("Range", "bytes=50-10")])
        .await
        .error(416);
}

#[tokio::test]
async fn download_refuses_forged_altered_and_expired_links() {
    let url = recording_url("c-in-1").await;
    let (head, sig) = url.split_once("&sig=").unwrap();
    let flipped = format!(
        "{head}&sig={}{}",
        &sig[..sig.len() - 1],
        if sig.ends_with('0') { '1' } else { '0' }
    );
    let exp: u64 = head.split_once("exp=").unwrap().1.parse().unwrap();
    let base = &server().base;
    let forged = [
        flipped,
        format!("{base}/recordings/c-in-1.wav?exp={}&sig={sig}", exp + 1),
        format!("{base}/recordings/c-in-2.wav?exp={exp}&sig={sig}"),
        format!("{base}/recordings/c-in-1.wav?exp={exp}"),
        format!("{base}/recordings/c-in-1.wav"),
        format!("{base}/recordings/c-in-1.wav?exp={exp}&sig=nothex"),
        format!(
            "{base}/recordings/c-in-1.wav?exp={exp}&sig={}",
            sign("not-the-link-key", "c-in-1", exp)
        ),
    ];
    for url in forged {
        send(Method::GET, &url, None, None, &[]).await.error(403);
    }
    let past = now() - 10;
    let expired = format!(
        "{base}/recordings/c-in-1.wav?exp={past}&sig={}",
        sign(LINK_KEY_NEW, "c-in-1", past)
    );
    let message = send(Method::GET, &expired, None, None, &[])
        .await
        .error(403);
    assert!(message.contains("expired"), "{message}");
}

#[tokio::test]
async fn links_signed_with_a_rotated_out_link_key_still_work() {
    let exp = now() + 600;
    let url = format!(
        "{}/recordings/c-in-1.wav?exp={exp}&sig={}",
        server().base,
        sign(LINK_KEY_OLD, "c-in-1", exp)
    );
    let answer = send(Method::GET, &url, None, None, &[]).await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn path_tricks_never_reach_a_file() {
    for trick in [
        "/calls/..%2F..%2Fetc%2Fpasswd/recording",
        "/calls/%2e%2e%2f/recording",
        "/calls/%2e%2e/recording",
        "/calls/..%5C..%5Cwin.ini/recording",
        "/calls/c-in-1%00/recording",
        "/calls/c-in-1.wav/recording",
    ] {
        let (status, json) = raw_get(trick);
        assert!(status == 400 || status == 404, "{trick}: {status}");
        assert_eq!(json["status"], "error", "{trick}");
    }
    let exp = now() + 600;
    for id in ["..%2F..%2Fdb%2Fconf", "%2e%2e%2Fcalltap.lock", "..%5Cx"] {
        let decoded = id
            .replace("%2F", "/")
            .replace("%2e", ".")
            .replace("%5C", "\\");
        let sig = sign(LINK_KEY_NEW, &decoded, exp);
        let (status, json) = raw_get(&format!("/recordings/{id}.wav?exp={exp}&sig={sig}"));
        assert!(status == 400 || status == 404, "{id}: {status}");
        assert_eq!(json["status"], "error");
    }
    // Raw dot segments reach the router as they are and match nothing.
    let (status, json) = raw_get("/recordings/../calltap.lock");
    assert_eq!(status, 404);
    assert_eq!(json["status"], "error");
}

// ---------------------------------------------------------------- bad input

#[tokio::test]
async fn bad_calls_requests_get_400_saying_what_was_wrong() {
    let window = |extra: Value| {
        let mut body = json!({"startTime": FROM, "stopTime": TO});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::to_vec(&body).unwrap()
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{".to_vec(), "not valid JSON"),
        (b"".to_vec(), "not valid JSON"),
        (b"[1,2]".to_vec(), "JSON object"),
        (
            br#"{"startTime": "yesterday", "stopTime": 5}"#.to_vec(),
            "startTime must be a number",
        ),
        (br#"{"startTime": 5}"#.to_vec(), "stopTime is required"),
        (br#"{"stopTime": 5}"#.to_vec(), "startTime is required"),
        (
            br#"{"startTime": -5, "stopTime": 5}"#.to_vec(),
            "non-negative",
        ),
        (
            br#"{"startTime": 10, "stopTime": 5}"#.to_vec(),
            "before startTime",
        ),
        (
            serde_json::to_vec(&json!({"startTime": FROM, "stopTime": FROM + 3 * 86_400})).unwrap(),
            "wider than the 2 days",
        ),
        (
            window(json!({"direction": "sideways"})),
            "direction must be",
        ),
        (window(json!({"direction": 1})), "direction must be"),
        (window(json!({"operators": "op-101"})), "operators must be"),
        (
            window(json!({"operators": [{"id": 1}]})),
            "operators must be",
        ),
        (
            window(json!({"propertyFilters": []})),
            "propertyFilters must be",
        ),
        (
            window(json!({"propertyFilters": {"Nope": "x"}})),
            "\"Nope\" is not a property",
        ),
        (
            window(json!({"propertyFilters": {"Queue": null}})),
            "propertyFilters.Queue",
        ),
        (
            window(json!({"propertyFilters": {"Queue": [{"a": 1}]}})),
            "a list holds",
        ),
        (
            window(
                json!({"propertyFilters": {"Priority": {"conditions": [{"operator": "approx", "value": 1}]}}}),
            ),
            "unknown operator \"approx\"",
        ),
        (
            window(json!({"propertyFilters": {"Priority": {"mode": "most", "conditions": []}}})),
            "mode must be",
        ),
        (
            window(
                json!({"propertyFilters": {"Priority": {"conditions": [{"operator": "gt", "value": "5"}]}}}),
            ),
            "number \"value\"",
        ),
        (
            window(json!({"propertyFilters": {"Priority": {"conditions": "gt 5"}}})),
            "conditions must be",
        ),
        (
            window(
                json!({"propertyFilters": {"Queue": {"conditions": [{"operator": "gt", "value": 5}]}}}),
            ),
            "need a number property",
        ),
    ];
    for (body, says) in cases {
        let answer = send(
            Method::POST,
            "/calls",
            Some(KEY_NEW),
            Some(body.clone()),
            &[],
        )
        .await;
        let message = answer.error(400);
        assert!(
            message.contains(says),
            "{}: {message:?} should say {says:?}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413() {
    let body = serde_json::to_vec(&json!({
        "startTime": FROM, "stopTime": TO,
        "operators": (0..2000).map(|i| format!("op-{i}")).collect::<Vec<_>>()
    }))
    .unwrap();
    assert!(body.len() > 4096);
    let message = send(Method::POST, "/calls", Some(KEY_NEW), Some(body), &[])
        .await
        .error(413);
    assert!(message.contains("4096"), "{message}");
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_the_error_shape() {
    let message = get("/nope").await.error(404);
    assert!(message.contains("/nope"));
    send(Method::GET, "/nope", None, None, &[]).await.error(404);
    get("/calls/c-in-1").await.error(404);
    get("/calls/c-in-1/recording/extra").await.error(404);
    send(Method::POST, "/metrics", None, None, &[])
        .await
        .error(405);
    send(Method::PUT, "/openapi.json", None, None, &[])
        .await
        .error(405);
}

// ---------------------------------------------------------------- operations

#[tokio::test]
async fn request_ids_are_honoured_or_made() {
    let answer = send(
        Method::GET,
        "/health",
        Some(KEY_NEW),
        None,
        &[("X-Request-Id", "importer-42")],
    )
    .await;
    assert_eq!(answer.header("x-request-id"), "importer-42");
    let answer = get("/health").await;
    assert!(answer.header("x-request-id").len() >= 16);
    let answer = send(Method::GET, "/health", None, None, &[]).await;
    assert!(!answer.header("x-request-id").is_empty(), "on errors too");
}

#[tokio::test]
async fn metrics_count_requests_and_stored_calls() {
    get("/health").await;
    send(Method::GET, "/health", None, None, &[]).await;
    let answer = send(Method::GET, "/metrics", None, None, &[]).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.header("content-type").starts_with("text/plain"));
    let text = String::from_utf8(answer.bytes).unwrap();
    for line in [
        "calltap_api_requests_total{path=\"/health\",status=\"200\"}",
        "calltap_api_requests_total{path=\"/health\",status=\"401\"}",
        "calltap_api_request_duration_seconds_bucket{le=\"+Inf\"}",
        "calltap_api_request_duration_seconds_count",
        "calltap_calls_stored{outcome=\"answered\"} 29",
        "calltap_calls_stored{outcome=\"missed\"} 1",
        "calltap_calls_exported 29",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    // The engine's slot.
    server()
        .state
        .set_metrics_source(Arc::new(|out: &mut String| {
            out.push_str("# TYPE calltap_packets_total counter\ncalltap_packets_total 42\n")
        }));
    let text =
        String::from_utf8(send(Method::GET, "/metrics", None, None, &[]).await.bytes).unwrap();
    assert!(text.contains("calltap_packets_total 42"));
}

#[tokio::test]
async fn status_tells_the_store_and_the_capture_slot() {
    let json = get("/status").await.json();
    assert_eq!(json["calls"]["total"], 30);
    assert_eq!(json["calls"]["exported"], 29);
    assert_eq!(json["calls"]["byOutcome"]["missed"], 1);
    assert!(json["store"]["recordingsBytes"].as_u64().unwrap() > 32_000);
    assert!(json["store"]["databaseBytes"].as_u64().is_some());
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(json["api"]["linkKey"], "configured");
    assert!(!json.to_string().contains(KEY_NEW), "no secret in /status");
    server().state.set_status_source(Arc::new(
        || json!({"sources": ["eth1"], "lastSipSeen": 1700000000}),
    ));
    let json = get("/status").await.json();
    assert_eq!(json["capture"]["sources"], json!(["eth1"]));
}

// ---------------------------------------------------------------- OpenAPI

/// Checks `value` against an OpenAPI schema: `$ref`, type, required, properties,
/// additionalProperties, items, enum, oneOf. Answers what does not fit.
fn check_schema(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/components/schemas/");
        return check_schema(doc, &doc["components"]["schemas"][name], value, at, errors);
    }
    if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
        let fits = options
            .iter()
            .filter(|s| {
                let mut e = Vec::new();
                check_schema(doc, s, value, at, &mut e);
                e.is_empty()
            })
            .count();
        if fits != 1 {
            errors.push(format!("{at}: {value} fits {fits} of oneOf"));
        }
        return;
    }
    let fits_type = match schema.get("type").and_then(Value::as_str) {
        Some("string") => value.is_string(),
        Some("number") => value.is_number(),
        Some("integer") => value.is_u64() || value.is_i64(),
        Some("boolean") => value.is_boolean(),
        Some("array") => value.is_array(),
        Some("object") => value.is_object(),
        _ => true,
    };
    if !fits_type {
        errors.push(format!("{at}: {value} is not {}", schema["type"]));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            errors.push(format!("{at}: {value} not in {allowed:?}"));
        }
    }
    if let Some(object) = value.as_object() {
        for name in schema["required"].as_array().into_iter().flatten() {
            if !object.contains_key(name.as_str().unwrap()) {
                errors.push(format!("{at}: required {name} missing"));
            }
        }
        for (key, v) in object {
            let sub = &schema["properties"][key];
            if !sub.is_null() {
                check_schema(doc, sub, v, &format!("{at}.{key}"), errors);
            } else if let Some(extra) = schema.get("additionalProperties") {
                check_schema(doc, extra, v, &format!("{at}.{key}"), errors);
            } else if schema.get("properties").is_some() {
                errors.push(format!("{at}: unexpected field {key:?}"));
            }
        }
    }
    if let (Some(items), Some(list)) = (schema.get("items"), value.as_array()) {
        for (i, v) in list.iter().enumerate() {
            check_schema(doc, items, v, &format!("{at}[{i}]"), errors);
        }
    }
}

#[tokio::test]
async fn real_answers_fit_the_openapi_document() {
    let answer = send(Method::GET, "/openapi.json", None, None, &[]).await;
    assert_eq!(answer.status, StatusCode::OK);
    let doc = answer.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let window = json!({"startTime": FROM, "stopTime": TO});
    let mut errors = Vec::new();
    check_schema(
        &doc,
        &doc["paths"]["/calls"]["post"]["requestBody"]["content"]["application/json"]["schema"],
        &json!({"startTime": FROM, "stopTime": TO, "direction": "incoming", "operators": ["op-101"],
                "propertyFilters": {"Department": ["Sales"], "Queue": "billing",
                    "Priority": {"mode": "any", "conditions": [{"operator": "gt", "value": 2}]}}}),
        "request",
        &mut errors,
    );
    let cases: Vec<(Answer, &str, &str, &str)> = vec![
        (get("/health").await, "/health", "get", "200"),
        (get("/contacts").await, "/contacts", "get", "200"),
        (post_calls(window.clone()).await, "/calls", "post", "200"),
        (
            get("/properties/schema").await,
            "/properties/schema",
            "get",
            "200",
        ),
        (
            get("/calls/c-in-1/recording").await,
            "/calls/{id}/recording",
            "get",
            "200",
        ),
        (
            get("/calls/nope/recording").await,
            "/calls/{id}/recording",
            "get",
            "404",
        ),
        (
            send(Method::GET, "/health", None, None, &[]).await,
            "/health",
            "get",
            "401",
        ),
        (
            post_calls(json!({"startTime": "x"})).await,
            "/calls",
            "post",
            "400",
        ),
        (
            get("/webhooks/deliveries").await,
            "/webhooks/deliveries",
            "get",
            "200",
        ),
        (
            send(
                Method::POST,
                "/webhooks/deliveries/crm.evt_0/retry",
                Some(KEY_NEW),
                None,
                &[],
            )
            .await,
            "/webhooks/deliveries/{id}/retry",
            "post",
            "404",
        ),
    ];
    for (answer, path, method, status) in cases {
        assert_eq!(answer.status.as_str(), status, "{path}");
        let schema = &doc["paths"][path][method]["responses"][status]["content"]
            ["application/json"]["schema"];
        assert!(!schema.is_null(), "{path} {status} is documented");
        check_schema(
            &doc,
            schema,
            &answer.json(),
            &format!("{method} {path} {status}"),
            &mut errors,
        );
    }
    let calls = post_calls(window).await.json();
    assert!(calls["calls"].as_array().unwrap().len() == 5);
    assert!(errors.is_empty(), "{errors:#?}");
}

// ---------------------------------------------------------------- as the importer

#[tokio::test]
async fn the_importer_walk_health_contacts_calls_recording_download() {
    let health = get("/health").await;
    assert_eq!(health.json(), json!({"status": "success"}));
    let contacts = get("/contacts").await.json();
    let team: Vec<&str> = contacts["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(team.contains(&"op-101"));
    let calls = post_calls(json!({"startTime": FROM, "stopTime": TO, "operators": ["op-101"]}))
        .await
        .json();
    let mut downloaded = 0;
    for call in calls["calls"].as_array().unwrap() {
        assert_eq!(call["operatorId"], "op-101");
        let id = call["id"].as_str().unwrap();
        let link = get(&format!("/calls/{id}/recording")).await;
        if link.status == StatusCode::NOT_FOUND {
            link.error(404);
            continue;
        }
        let link = link.json();
        let file = send(Method::GET, link["url"].as_str().unwrap(), None, None, &[]).await;
        assert_eq!(file.status, StatusCode::OK);
        assert_eq!(
            file.header("content-type"),
            link["mimeType"].as_str().unwrap()
        );
        assert!(file.bytes.len() > 32_000);
        downloaded += 1;
    }
    assert_eq!(downloaded, 1);
    let schema = get("/properties/schema").await.json();
    assert_eq!(schema["properties"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn the_shared_importer_check_passes() {
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/importer-check");
    if !tool.exists() {
        println!("skipped: {} is absent", tool.display());
        return;
    }
    let base = server().base.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(&tool)
            .args(["--url", &base, "--key", KEY_NEW])
            .args(["--from", &FROM.to_string(), "--to", &TO.to_string()])
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "importer-check failed:\n{stdout}");
    assert!(stdout.contains(" 0 failed"));
}
