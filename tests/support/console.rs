//! A calltap serving its web console on loopback, over a store that holds the demo
//! office day (B2BUA legs, missed calls, recordings) plus one call signalled over TCP
//! and one record with neither recording nor SIP messages; its Live page shows a call
//! an engine has seen half of. And a small browser: cookies kept, redirects not
//! followed, forms posted.
#![allow(dead_code)] // each test binary uses a part of it

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use calltap::api::{self, AppState};
use calltap::base::Frame;
use calltap::call::CallRecord;
use calltap::config::Config;
use calltap::engine::Engine;
use calltap::ingest::Ingest;
use calltap::pcapgen::call::{SipTransport, DEFAULT_START};
use calltap::pcapgen::{CallScript, Link, Phone};
use calltap::replay::{replay_bytes, DEMO_CAPTURE};
use calltap::store::Store;
use tokio::sync::oneshot;

pub const PASSWORD: &str = "console-test-password";
pub const KEY: &str = "console-test-secret-key";

/// The call signalled over TCP.
pub fn tcp_call() -> CallScript {
    CallScript::new(0x7C9)
        .caller(Phone::new(
            "+15550001111",
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 31)),
            17000,
        ))
        .start(DEFAULT_START)
        .transport(SipTransport::Tcp)
}

/// The call in progress on the Live page (the engine sees its first 4 s).
pub fn live_call() -> CallScript {
    CallScript::new(0x11FE)
        .caller(Phone::new(
            "+15557770000",
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 41)),
            18000,
        ))
        .start(DEFAULT_START)
        .talk(Duration::from_secs(60))
}

/// The calls in progress after the first 4 s of [`live_call`], as `calltap run`'s
/// engine (recording into `recordings`) sees them.
fn in_progress(
    config: &Config,
    recordings: &std::path::Path,
) -> Vec<calltap::call::CallInProgress> {
    let mut engine = Engine::with_recordings(config, recordings.to_path_buf());
    feed(&mut engine, &live_call().to_vec(), Duration::from_secs(4));
    engine.calls_in_progress()
}

/// Feeds `engine` the packets of the first `span` after [`DEFAULT_START`].
pub fn feed(engine: &mut Engine, packets: &[calltap::pcapgen::Packet], span: Duration) {
    let link = Link::Ethernet;
    let until = DEFAULT_START.saturating_add(span);
    for p in packets.iter().filter(|p| p.time < until) {
        let data = link.frame(&p.data);
        engine.frame(&Frame {
            time: p.time,
            link: link.link_type(),
            data: &data,
            orig_len: data.len() as u32,
        });
    }
}

pub struct Console {
    pub base: String,
    pub store: Arc<Store>,
    /// The record with neither recording nor SIP messages.
    pub bare: CallRecord,
    stop: Option<oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The configuration's text for a console with [`PASSWORD`], plus `extra`.
pub fn config_text(extra: &str) -> String {
    let hash = calltap::ui::hash_password(PASSWORD).expect("a hash");
    format!(
        "[api]\nsecret_keys = [\"{KEY}\"]\nlink_keys = [\"console-link-key-0123456789\"]\n\
         [network]\ninternal = [\"10.0.0.0/16\", \"10.1.0.0/16\"]\n\
         [ui]\npassword_hash = \"{hash}\"\n{extra}\n"
    )
}

/// A console on 127.0.0.1, with `extra` appended to its configuration (a table, such as
/// `[api.rate_limit]`, or nothing).
pub async fn start(extra: &str) -> Console {
    let dir = tempfile::tempdir().expect("temp dir");
    let config =
        Config::from_toml(&config_text(extra), "tests/support/console.rs").expect("config");
    let store = Arc::new(Store::open(&dir.path().join("store")).expect("store"));
    {
        let engine = Engine::with_recordings(&config, store.recordings_dir().to_path_buf());
        let mut ingest = Ingest::new(engine, &store);
        let report = replay_bytes("office-day.pcap", DEMO_CAPTURE, &mut ingest);
        assert!(report.failed.is_none(), "{:?}", report.failed);
        let tcp = crate::stored::pcap_of(&tcp_call().to_vec());
        let report = replay_bytes("tcp-call.pcap", &tcp, &mut ingest);
        assert!(report.failed.is_none(), "{:?}", report.failed);
    }
    let bare = {
        let mut r = crate::records::answered_call("c-bare", DEFAULT_START.unix_secs() + 3600);
        r.media.no_recording_reason = Some("encrypted media (SRTP)".into());
        r
    };
    store
        .put_calls(std::slice::from_ref(&bare))
        .expect("stored");
    let live_recordings = dir.path().join("live-recordings");
    std::fs::create_dir_all(&live_recordings).expect("a folder");
    let live = Arc::new(in_progress(&config, &live_recordings));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let state = AppState::new(config, store.clone()).expect("state");
    state.set_in_progress_source(Arc::new(move || live.clone()));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(api::serve_on(listener, state, async {
        let _ = stopped.await;
    }));
    Console {
        base: format!("http://{addr}"),
        store,
        bare,
        stop: Some(stop),
        _dir: dir,
    }
}

/// What a request got.
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Page {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The value of the first hidden form field `name`.
    pub fn field(&self, name: &str) -> String {
        let text = self.text();
        let marker = format!("name=\"{name}\" value=\"");
        let start = text
            .find(&marker)
            .map(|i| i + marker.len())
            .expect("the field");
        text[start..].split('"').next().unwrap_or("").to_owned()
    }
}

/// A browser of one: keeps cookies, follows no redirect.
pub struct Browser {
    base: String,
    http: reqwest::Client,
    cookies: Vec<(String, String)>,
}

impl Browser {
    pub fn new(base: &str) -> Browser {
        Browser {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
            cookies: Vec::new(),
        }
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.retain(|(k, _)| k != name);
        if !value.is_empty() {
            self.cookies.push((name.to_owned(), value.to_owned()));
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let request = if cookie.is_empty() {
            request
        } else {
            request.header("Cookie", cookie)
        };
        let response = request.send().await.expect("an answer");
        for set in response.headers().get_all("set-cookie") {
            let set = set.to_str().expect("ascii");
            let pair = set.split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                let expired = set.contains("Max-Age=0");
                self.set_cookie(k, if expired { "" } else { v });
            }
        }
        Page {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.bytes().await.expect("a body").to_vec(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)], origin: Option<&str>) -> Page {
        let mut request = self.http.post(format!("{}{path}", self.base)).form(form);
        if let Some(o) = origin {
            request = request.header("Origin", o);
        }
        self.send(request).await
    }

    /// Opens the login page and posts `password` with its form token.
    pub async fn login(&mut self, password: &str) -> Page {
        let form = self.get("/ui/login").await;
        let csrf = form.field("csrf");
        let origin = self.base.clone();
        self.post(
            "/ui/login",
            &[
                ("csrf", &csrf),
                ("password", password),
                ("next", "/ui/history"),
            ],
            Some(&origin),
        )
        .await
    }
}
