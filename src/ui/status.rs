//! Status: what `/status` and `/webhooks/deliveries` answer, laid out for a person, and
//! a chart of SIP messages and calls per minute over the last hour. SIP messages come
//! from the capture engine's counter, sampled once a minute while the server runs;
//! calls from the store, by start minute.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use maud::{html, Markup, PreEscaped};
use serde_json::Value;

use super::page::{html_response, now_unix, utc_time, Nav, UiError, Viewer};
use crate::api::AppState;

/// Minutes the chart covers.
const MINUTES: usize = 60;

/// The capture engine's SIP message counter at the start of each minute.
#[derive(Default)]
pub(crate) struct Samples {
    sip: Mutex<VecDeque<(u64, u64)>>,
}

/// Takes this minute's sample (see [`super::sample_every_minute`]).
pub(crate) fn sample(state: &AppState) {
    let Some(total) = state
        .capture_status()
        .and_then(|c| c.pointer("/sip/messages").and_then(Value::as_u64))
    else {
        return;
    };
    let minute = now_unix() / 60;
    let mut sip = state
        .console()
        .samples
        .sip
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if sip.back().is_some_and(|&(m, _)| m == minute) {
        return;
    }
    sip.push_back((minute, total));
    while sip.len() > MINUTES + 1 {
        sip.pop_front();
    }
}

/// Per minute of the last hour (oldest first): SIP messages (None where no sample
/// tells) and calls started.
fn per_minute(state: &AppState, now: u64) -> Result<(Vec<Option<u64>>, Vec<u64>), UiError> {
    let this_minute = now / 60;
    let first = this_minute + 1 - MINUTES as u64;
    let mut sip = vec![None; MINUTES];
    {
        let samples = state
            .console()
            .samples
            .sip
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for pair in samples.iter().collect::<Vec<_>>().windows(2) {
            let ((m0, n0), (m1, n1)) = (*pair[0], *pair[1]);
            // A counter that went down was restarted: that minute is unknown.
            if m1 == m0 + 1 && n1 >= n0 && m0 >= first {
                sip[(m0 - first) as usize] = Some(n1 - n0);
            }
        }
    }
    let mut calls = vec![0u64; MINUTES];
    for r in state
        .store()
        .all_calls_between(first * 60, (this_minute + 1) * 60)
    {
        let Ok(r) = r else { continue };
        if let Some(slot) = calls.get_mut((r.start_time / 60).saturating_sub(first) as usize) {
            *slot += 1;
        }
    }
    Ok((sip, calls))
}

/// Two series as an SVG chart: SIP messages as bars, calls as a line.
fn chart(sip: &[Option<u64>], calls: &[u64]) -> Markup {
    let (w, h) = (600.0, 140.0);
    let step = w / MINUTES as f64;
    let sip_max = sip.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    let calls_max = calls.iter().copied().max().unwrap_or(0).max(1) as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 {w} {}\" \
         width=\"100%\" role=\"img\" aria-label=\"SIP messages (bars) and calls (line) per \
         minute over the last hour\">",
        h + 20.0
    );
    for (i, n) in sip.iter().enumerate() {
        if let Some(n) = n {
            let bar = *n as f64 / sip_max * h;
            svg.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bar:.1}\" fill=\"#90cdf4\"/>",
                i as f64 * step,
                h - bar,
                step - 1.0
            ));
        }
    }
    let points: Vec<String> = calls
        .iter()
        .enumerate()
        .map(|(i, n)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * step + step / 2.0,
                h - *n as f64 / calls_max * (h - 4.0)
            )
        })
        .collect();
    svg.push_str(&format!(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#c05621\" stroke-width=\"2\"/>",
        points.join(" ")
    ));
    svg.push_str(&format!(
        "<text x=\"2\" y=\"{}\" font-size=\"11\" fill=\"#555\">60 min ago</text>\
         <text x=\"{w}\" y=\"{}\" font-size=\"11\" fill=\"#555\" text-anchor=\"end\">now</text>\
         <text x=\"2\" y=\"12\" font-size=\"11\" fill=\"#2b6cb0\">SIP max {}/min</text>\
         <text x=\"{w}\" y=\"12\" font-size=\"11\" fill=\"#c05621\" text-anchor=\"end\">calls max {}/min</text></svg>",
        h + 15.0,
        h + 15.0,
        sip_max as u64,
        calls_max as u64
    ));
    PreEscaped(svg)
}

/// A JSON value as nested tables (numbers, strings, lists).
fn json_table(value: &Value) -> Markup {
    match value {
        Value::Object(map) if !map.is_empty() => html! {
            table.facts {
                @for (k, v) in map {
                    tr { th { (k) } td { (json_table(v)) } }
                }
            }
        },
        Value::Array(list) if !list.is_empty() => html! {
            @for v in list { div { (json_table(v)) } }
        },
        Value::Null => html! { "—" },
        Value::String(s) => html! { (s) },
        other => html! { (other.to_string()) },
    }
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n => format!("{:.1} KiB", n as f64 / 1024.0),
    }
}

/// `GET /ui/status`.
pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Response, UiError> {
    let status = crate::api::status_json(&state)
        .await
        .map_err(|e| UiError::internal(e.to_string()))?;
    let hooks = crate::api::deliveries_json(&state)
        .await
        .map_err(|e| UiError::internal(e.to_string()))?;
    let now = now_unix();
    let chart_state = state.clone();
    let (sip, calls) = tokio::task::spawn_blocking(move || per_minute(&chart_state, now))
        .await
        .map_err(|e| UiError::internal(format!("the chart's task failed: {e}")))??;
    let free = fs2::available_space(state.store().path()).ok();
    let live = state.live();
    let store = &status["store"];
    let s = &live.store;
    let days = |d: u32| {
        if d == 0 {
            "forever".to_owned()
        } else {
            format!("{d} days")
        }
    };
    let sessions = &state.console().sessions;
    let count = |endpoint: &str, list: &str| {
        hooks[list].as_array().map_or(0, |l| {
            l.iter().filter(|e| e["endpoint"] == endpoint).count()
        })
    };
    let last_error = |endpoint: &str| {
        hooks["recent"].as_array().and_then(|l| {
            l.iter()
                .find(|a| a["endpoint"] == endpoint && a["outcome"] != "delivered")
                .and_then(|a| a["error"].as_str().map(str::to_owned))
        })
    };
    let body = html! {
        h1 { "Status" }
        table.facts {
            tr { th { "Version" } td { "calltap " (status["version"].as_str().unwrap_or("")) } }
            tr { th { "Configuration" } td { code { (live.origin) } } }
            tr { th { "Up for" } td { (super::page::duration(status["uptimeSeconds"].as_u64().unwrap_or(0))) } }
            tr { th { "Now" } td { (utc_time(now)) " UTC" } }
        }
        h2 { "Traffic, last hour" }
        @if sip.iter().all(Option::is_none) {
            p.muted { "SIP messages per minute appear here a minute after a capturing calltap \
                       (calltap run) starts." }
        }
        (chart(&sip, &calls))
        p.muted { (calls.iter().sum::<u64>()) " calls started in the last hour; "
            (sip.iter().flatten().sum::<u64>()) " SIP messages counted." }
        h2 { "Capture" }
        @if status["capture"].is_null() {
            p.notice { "This calltap is not capturing (calltap serve or demo)." }
        } @else {
            (json_table(&status["capture"]))
        }
        h2 { "Calls stored" }
        (json_table(&status["calls"]))
        h2 { "Store and disk" }
        table.facts {
            tr { th { "Path" } td { code { (store["path"].as_str().unwrap_or("")) } } }
            tr { th { "Database" } td { (bytes(store["databaseBytes"].as_u64().unwrap_or(0))) } }
            tr { th { "Recordings" } td { (store["recordings"]) " files, "
                (bytes(store["recordingsBytes"].as_u64().unwrap_or(0))) } }
            tr { th { "Free on disk" } td { @match free { Some(f) => (bytes(f)), None => "unknown" }
                " (audio stops below " (s.min_free) ")" } }
            tr { th { "Corrupt values seen" } td { (store["corruptValues"]) } }
        }
        h2 { "Retention" }
        table.facts {
            tr { th { "Records kept" } td { (days(s.keep_days)) } }
            tr { th { "Recordings kept" } td { (days(s.recordings_keep_days)) } }
            tr { th { "Recordings cap" } td { @match s.max_disk { Some(m) => (m), None => "none" } } }
            tr { th { "SIP messages" } td { @if s.sip_messages { "kept with each record" } @else { "not kept" } } }
        }
        h2 { "Webhooks" }
        @if live.webhooks.is_empty() {
            p.muted { "No webhook endpoint is configured." }
        } @else {
            div.scroll { table {
                thead { tr { th { "Endpoint" } th { "URL" } th { "Retrying" } th { "Dead letters" } th { "Last failure" } } }
                tbody { @for h in &live.webhooks {
                    tr {
                        td { (h.name) } td { (h.url.as_str()) }
                        td { (count(&h.name, "pending")) } td { (count(&h.name, "dead")) }
                        td { (last_error(&h.name).unwrap_or_else(|| "—".into())) }
                    }
                } }
            } }
        }
        h2 { "Console" }
        table.facts {
            tr { th { "Sessions" } td { (sessions.active()) } }
            tr { th { "Logins" } td { (sessions.logins.load(Ordering::Relaxed)) " ok, "
                (sessions.failed_logins.load(Ordering::Relaxed)) " wrong passwords, "
                (sessions.blocked_logins.load(Ordering::Relaxed)) " refused while blocked" } }
        }
    };
    Ok(html_response(
        StatusCode::OK,
        super::page::page("Status", Nav::Status, Some(&viewer), body),
    ))
}
