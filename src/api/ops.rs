//! Operations, outside the contract's paths: `/metrics` (Prometheus text), `/status`
//! (JSON, behind the key), the per-request counters and the request span.
//!
//! The capture engine's own figures (packets, datagrams, SIP messages, dialogs active,
//! RTP packets, loss, drops by reason; capture sources and the last SIP seen) are not the
//! API's to count: the engine fills two slots, [`AppState::set_metrics_source`] and
//! [`AppState::set_status_source`], with closures read on every scrape or request. E.g.
//! in `calltap run`:
//!
//! ```ignore
//! let state = AppState::new(config, store)?;
//! let stats = engine.stats_handle(); // Arc of atomics the engine updates
//! state.set_metrics_source(Arc::new(move |out: &mut String| stats.write_prometheus(out)));
//! state.set_status_source(Arc::new(move || stats.status_json()));
//! api::serve_on(listener, state, shutdown).await?;
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{ApiError, AppState};
use crate::call::{CallInProgress, Outcome};

/// Appends Prometheus exposition text to the `/metrics` answer.
pub type MetricsSource = Arc<dyn Fn(&mut String) + Send + Sync>;
/// Gives the `"capture"` part of `/status`.
pub type StatusSource = Arc<dyn Fn() -> Value + Send + Sync>;
/// Gives the calls ringing and talking now (the console's Live page).
pub type InProgressSource = Arc<dyn Fn() -> Arc<Vec<CallInProgress>> + Send + Sync>;

/// Upper bounds of the latency histogram, in seconds: from a cached `/health` (well
/// under a millisecond) to a month-wide `POST /calls` (seconds).
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
pub(crate) struct Slots {
    metrics: RwLock<Option<MetricsSource>>,
    status: RwLock<Option<StatusSource>>,
    in_progress: RwLock<Option<InProgressSource>>,
}

impl Slots {
    pub(crate) fn set_metrics(&self, source: MetricsSource) {
        *self.metrics.write().unwrap_or_else(|e| e.into_inner()) = Some(source);
    }

    pub(crate) fn set_status(&self, source: StatusSource) {
        *self.status.write().unwrap_or_else(|e| e.into_inner()) = Some(source);
    }

    pub(crate) fn set_in_progress(&self, source: InProgressSource) {
        *self.in_progress.write().unwrap_or_else(|e| e.into_inner()) = Some(source);
    }

    pub(crate) fn in_progress(&self) -> Option<InProgressSource> {
        self.in_progress
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn metrics(&self) -> Option<MetricsSource> {
        self.metrics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn status(&self) -> Option<StatusSource> {
        self.status
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The API's own counters.
#[derive(Default)]
pub(crate) struct Metrics {
    /// (route, status) -> answers. Routes are templates (see [`route_of`]), so the
    /// label set stays bounded whatever paths clients send.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// Cumulative counts per bucket of [`LATENCY_BUCKETS`], then +Inf.
    latency: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_micros: AtomicU64,
}

impl Metrics {
    fn observe(&self, route: &'static str, status: u16, seconds: f64) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((route, status))
            .or_default() += 1;
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }
}

/// The route template of a path, for metric labels.
fn route_of(path: &str) -> &'static str {
    match path {
        "/health" => "/health",
        "/contacts" => "/contacts",
        "/calls" => "/calls",
        "/properties/schema" => "/properties/schema",
        "/status" => "/status",
        "/metrics" => "/metrics",
        "/openapi.json" => "/openapi.json",
        p if p.starts_with("/calls/") && p.ends_with("/recording") => "/calls/{id}/recording",
        "/webhooks/deliveries" => "/webhooks/deliveries",
        "/integrations/runs" => "/integrations/runs",
        p if p.starts_with("/webhooks/deliveries/") && p.ends_with("/retry") => {
            "/webhooks/deliveries/{id}/retry"
        }
        p if p.starts_with("/recordings/") => "/recordings/{file}",
        _ => "other",
    }
}

/// Middleware: counts every answer by route and status, and its latency (to the
/// response head: a streamed `/calls` body is still being sent when this is taken).
pub(crate) async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = route_of(request.uri().path());
    let started = Instant::now();
    let response = next.run(request).await;
    state.inner.metrics.observe(
        route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// The tracing span of a request: method, path (never the query: it carries link
/// signatures) and request id.
pub(crate) fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %id,
    )
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let counts = state.blocking(|store| Ok(store.counts()?)).await?;
    let store = state.store();
    let mut out = String::with_capacity(4096);
    let m = &state.inner.metrics;

    let _ = writeln!(
        out,
        "# HELP calltap_build_info The running calltap's version."
    );
    let _ = writeln!(out, "# TYPE calltap_build_info gauge");
    let _ = writeln!(
        out,
        "calltap_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );

    let _ = writeln!(
        out,
        "# HELP calltap_api_requests_total API answers by route and status."
    );
    let _ = writeln!(out, "# TYPE calltap_api_requests_total counter");
    for ((route, status), n) in m.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = writeln!(
            out,
            "calltap_api_requests_total{{path=\"{route}\",status=\"{status}\"}} {n}"
        );
    }

    let _ = writeln!(
        out,
        "# HELP calltap_api_request_duration_seconds Time to the response head."
    );
    let _ = writeln!(out, "# TYPE calltap_api_request_duration_seconds histogram");
    let mut cumulative = 0;
    for (i, bucket) in m.latency.iter().enumerate() {
        cumulative += bucket.load(Ordering::Relaxed);
        let le = LATENCY_BUCKETS
            .get(i)
            .map_or("+Inf".to_owned(), |b| b.to_string());
        let _ = writeln!(
            out,
            "calltap_api_request_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "calltap_api_request_duration_seconds_sum {}",
        m.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    );
    let _ = writeln!(
        out,
        "calltap_api_request_duration_seconds_count {cumulative}"
    );

    let c = &state.inner.connections;
    let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP calltap_api_connections_open API connections open now."
    );
    let _ = writeln!(out, "# TYPE calltap_api_connections_open gauge");
    let _ = writeln!(out, "calltap_api_connections_open {}", load(&c.open));
    let _ = writeln!(
        out,
        "# HELP calltap_api_connections_total API connections accepted and served."
    );
    let _ = writeln!(out, "# TYPE calltap_api_connections_total counter");
    let _ = writeln!(out, "calltap_api_connections_total {}", load(&c.accepted));
    let _ = writeln!(
        out,
        "# HELP calltap_api_connections_refused_total Connections answered 503 and closed, by the cap they met."
    );
    let _ = writeln!(out, "# TYPE calltap_api_connections_refused_total counter");
    for (cap, n) in [
        ("total", &c.refused_total),
        ("per_source", &c.refused_per_source),
    ] {
        let _ = writeln!(
            out,
            "calltap_api_connections_refused_total{{cap=\"{cap}\"}} {}",
            load(n)
        );
    }
    let _ = writeln!(
        out,
        "# HELP calltap_api_connections_timed_out_total Connections closed for waiting too long, by what they waited for."
    );
    let _ = writeln!(
        out,
        "# TYPE calltap_api_connections_timed_out_total counter"
    );
    for (waiting, n) in [
        ("head", &c.header_timeouts),
        ("idle", &c.idle_timeouts),
        ("client_read", &c.write_stalls),
    ] {
        let _ = writeln!(
            out,
            "calltap_api_connections_timed_out_total{{waiting=\"{waiting}\"}} {}",
            load(n)
        );
    }

    let _ = writeln!(
        out,
        "# HELP calltap_calls_stored Calls in the store by outcome."
    );
    let _ = writeln!(out, "# TYPE calltap_calls_stored gauge");
    for outcome in Outcome::ALL {
        let _ = writeln!(
            out,
            "calltap_calls_stored{{outcome=\"{}\"}} {}",
            outcome.as_str(),
            counts.get(outcome)
        );
    }
    let _ = writeln!(
        out,
        "# HELP calltap_calls_exported Calls in the store that POST /calls serves."
    );
    let _ = writeln!(out, "# TYPE calltap_calls_exported gauge");
    let _ = writeln!(out, "calltap_calls_exported {}", counts.exported);
    let _ = writeln!(
        out,
        "# HELP calltap_store_corrupt_values_total Stored values that failed to decode since start."
    );
    let _ = writeln!(out, "# TYPE calltap_store_corrupt_values_total counter");
    let _ = writeln!(
        out,
        "calltap_store_corrupt_values_total {}",
        store.corrupt_seen()
    );

    state.inner.access.write_metrics(&mut out);
    if let Some(tls) = state.tls() {
        tls.write_metrics(&mut out);
    }

    if let Some(source) = state.inner.slots.metrics() {
        source(&mut out);
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        out,
    )
        .into_response())
}

/// `GET /status` (behind the key): store, calls, configuration at a glance, and the
/// capture slot.
pub(crate) async fn status(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    status_json(&state).await.map(Json)
}

/// What `GET /status` answers (the console's Status page shows it too).
pub(crate) async fn status_json(state: &AppState) -> Result<Value, ApiError> {
    // The recordings' running totals, not a walk of the folder: 14 µs against 206 ms on
    // 100 k recordings (benches/retention.rs).
    let (counts, db_bytes, recordings) = state
        .blocking(|store| {
            Ok((
                store.counts()?,
                store.size_on_disk()?,
                store.recordings_totals()?,
            ))
        })
        .await?;
    let live = state.live();
    let store = state.store();
    let by_outcome: serde_json::Map<String, Value> = Outcome::ALL
        .into_iter()
        .map(|o| (o.as_str().to_owned(), json!(counts.get(o))))
        .collect();
    let capture = state
        .inner
        .slots
        .status()
        .map_or(Value::Null, |source| source());
    Ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptimeSeconds": state.inner.started.elapsed().as_secs(),
        "store": {
            "path": store.path().display().to_string(),
            "databaseBytes": db_bytes,
            "recordings": recordings.count,
            "recordingsBytes": recordings.bytes,
            "corruptValues": store.corrupt_seen(),
        },
        "calls": {
            "total": counts.total(),
            "exported": counts.exported,
            "byOutcome": by_outcome,
        },
        "api": {
            "linkBase": live.api.link_base(),
            "linkTtlSeconds": live.api.link_ttl_secs,
            "linkKey": if live.link_keys.is_random() { "random, made at start" } else { "configured" },
            "secretKeys": live.api_keys.len(),
            "operatorsConfigured": live.operators.len(),
            "properties": live.properties.len(),
        },
        "capture": capture,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_templates() {
        assert_eq!(route_of("/calls/c-1/recording"), "/calls/{id}/recording");
        assert_eq!(route_of("/recordings/c-1.wav"), "/recordings/{file}");
        assert_eq!(route_of("/wp-admin"), "other");
    }
}

/// Writes every number in `value` as a Prometheus gauge named by its path under
/// `prefix` (`{"sip": {"messages": 3}}` -> `calltap_sip_messages 3`): the engine's
/// counters are serde structs, so this is how they reach `/metrics` without a second
/// list of names to keep in step.
pub fn prometheus_from_json(prefix: &str, value: &Value, out: &mut String) {
    match value {
        Value::Number(n) => {
            let _ = writeln!(out, "{prefix} {n}");
        }
        Value::Bool(b) => {
            let _ = writeln!(out, "{prefix} {}", u8::from(*b));
        }
        Value::Object(map) => {
            for (key, inner) in map {
                let name: String = key
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() {
                            c.to_ascii_lowercase()
                        } else {
                            '_'
                        }
                    })
                    .collect();
                prometheus_from_json(&format!("{prefix}_{name}"), inner, out);
            }
        }
        Value::Null | Value::String(_) | Value::Array(_) => {}
    }
}

#[cfg(test)]
mod prometheus_tests {
    use super::*;

    #[test]
    fn nested_counters_become_gauges_named_by_their_path() {
        let mut out = String::new();
        let stats = json!({"sip": {"messages": 3, "malformed": {"bad_start_line": 1}},
                           "name": "x", "ok": true});
        prometheus_from_json("calltap", &stats, &mut out);
        assert_eq!(
            out,
            "calltap_ok 1\ncalltap_sip_malformed_bad_start_line 1\ncalltap_sip_messages 3\n"
        );
    }
}
