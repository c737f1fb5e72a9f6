//! The administrator's web console under `/ui/`, served by the API's server beside the
//! contract (floor 10 with `api`): server-rendered pages (maud), its stylesheet and
//! script compiled in, no build step and nothing fetched from elsewhere.
//!
//! Pages, behind a login of their own ([`session`]; never the importer's key):
//! - `/ui/live`: calls ringing and talking now, updated by server-sent events;
//! - `/ui/history`: stored calls by time, direction, operator, outcome and number,
//!   newest first, a page at a time ([`history`]);
//! - `/ui/calls/{id}`: one call: its record as the importer sees it, what operations
//!   need, the SIP ladder, the recording with a player and its waveform, and the SIP
//!   messages as a pcap ([`call`]);
//! - `/ui/status`: capture, store, retention, webhooks, version and configuration.
//!
//! `/` redirects to `/ui/`. `[ui] enabled = false` leaves every console path a 404.

mod call;
mod history;
mod ladder;
mod live;
mod page;
mod pcap;
mod session;
mod status;
mod waveform;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Router};

use crate::api::AppState;

pub use session::hash_password;

/// The console's state beside the API's: sessions, login counters, the per-minute
/// samples of the Status chart, and the signal that ends its event streams.
pub struct Console {
    pub(crate) sessions: session::Sessions,
    pub(crate) samples: status::Samples,
    stopping: tokio::sync::watch::Sender<bool>,
}

impl Default for Console {
    fn default() -> Self {
        Console {
            sessions: session::Sessions::default(),
            samples: status::Samples::default(),
            stopping: tokio::sync::watch::Sender::new(false),
        }
    }
}

impl Console {
    /// The server is stopping: event streams end, so the shutdown's wait for answers in
    /// flight ends too.
    pub(crate) fn stop_streams(&self) {
        self.stopping.send_replace(true);
    }

    pub(crate) fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }
}

const STYLE: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/console.js");

/// The console's routes, for the API's router.
pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/ui/", get(|| async { session::redirect("/ui/history") }))
        .route("/ui/live", get(live::page))
        .route("/ui/live/events", get(live::events))
        .route("/ui/history", get(history::page))
        .route("/ui/calls/{id}", get(call::page))
        .route("/ui/calls/{id}/sip.pcap", get(call::pcap))
        .route("/ui/calls/{id}/waveform.svg", get(call::waveform))
        .route("/ui/status", get(status::page))
        .route("/ui/logout", post(session::logout))
        .route("/ui/{*rest}", get(unknown_page))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            session::require_login,
        ));
    Router::new()
        .route("/", get(|| async { session::redirect("/ui/") }))
        .route("/ui", get(|| async { session::redirect("/ui/") }))
        .route("/ui/login", get(session::login_page).post(session::login))
        .route(
            "/ui/assets/style.css",
            get(|| async { asset(STYLE, "text/css") }),
        )
        .route(
            "/ui/assets/console.js",
            get(|| async { asset(SCRIPT, "text/javascript") }),
        )
        .merge(pages)
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&format!("{kind}; charset=utf-8"))
            .unwrap_or(HeaderValue::from_static("text/plain")),
    );
    // Named with the version in the pages, so a new calltap is never served old assets.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

async fn unknown_page(uri: axum::http::Uri) -> page::UiError {
    page::UiError::not_found(format!("The console has no page at {}.", uri.path()))
}

/// Takes the Status chart's samples once a minute, while the server runs.
pub(crate) async fn sample_every_minute(state: AppState) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        every.tick().await;
        status::sample(&state);
    }
}
