//! Live: the calls ringing and talking now, as the capture engine last published them
//! (once a second, `calltap run`), with a server-sent event a second carrying the
//! table's new rows; the page's script swaps them in and ticks the durations between.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::Stream;
use maud::{html, Markup};

use super::page::{html_response, Nav, Viewer};
use crate::api::AppState;
use crate::call::{CallInProgress, Stage};

/// How often the stream sends the table: the engine publishes once a second.
const EVERY: Duration = Duration::from_secs(1);

/// A stream ends after this; the browser reconnects at once, and the reconnection
/// passes the login layer again (a session that expired stops the updates).
const STREAM_FOR: Duration = Duration::from_secs(600);

/// The table's rows for `calls`, talking first then ringing, longest first.
pub(crate) fn rows(calls: &[CallInProgress]) -> Markup {
    let mut order: Vec<&CallInProgress> = calls.iter().collect();
    order.sort_by_key(|c| (c.stage == Stage::Ringing, std::cmp::Reverse(c.elapsed_secs)));
    html! {
        thead { tr {
            th { "State" } th { "For" } th { "Direction" } th { "Client" } th { "Operator" }
            th.wide { "From → To" } th { "Codec" } th.wide { "Packets in/out" } th { "Loss" }
        } }
        tbody {
            @if order.is_empty() {
                tr { td colspan="9" { "No call is ringing or talking now." } }
            }
            @for c in order {
                tr {
                    td { @match c.stage { Stage::Ringing => "ringing", Stage::Talking => "talking" } }
                    td data-elapsed=(c.elapsed_secs) { (super::page::duration(c.elapsed_secs)) }
                    td { (c.direction.contract()) }
                    td { (c.client_number.as_deref().unwrap_or("—")) }
                    td { (c.operator.name) " " span.muted { (c.operator.number) } }
                    td.wide { (c.from) " → " (c.to) }
                    td { @if c.codecs.is_empty() { "—" } @else { (c.codecs.join(", ")) } }
                    td.wide { (c.caller_packets) " / " (c.callee_packets) }
                    td { @match c.loss_percent { Some(l) => (format!("{l:.1} %")), None => "—" } }
                }
            }
        }
    }
}

/// `GET /ui/live`.
pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
) -> Response {
    let calls = state.calls_in_progress();
    let body = html! {
        h1 { "Live calls" }
        @match &calls {
            None => p.notice {
                "This calltap is not capturing (it runs as calltap serve or calltap demo), so \
                 no call is in progress here. Live calls show under calltap run."
            },
            Some(calls) => {
                p.muted { (calls.len()) " in progress · " span #live-state { "live" } }
                div.scroll {
                    table #live-calls data-events="/ui/live/events" { (rows(calls)) }
                }
            }
        }
    };
    html_response(
        StatusCode::OK,
        super::page::page("Live calls", Nav::Live, Some(&viewer), body),
    )
}

/// The `calls` event: the rows on one line (an event's data may not hold CR).
pub(crate) fn event_data(calls: &[CallInProgress]) -> String {
    rows(calls).into_string().replace(['\r', '\n'], " ")
}

/// `GET /ui/live/events`: a `calls` event a second while the client listens.
pub(crate) async fn events(State(state): State<AppState>) -> Response {
    if state.calls_in_progress().is_none() {
        return (StatusCode::NOT_FOUND, "this calltap is not capturing").into_response();
    }
    Sse::new(stream(state))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Ends when the server stops (a stream never ending would hold its shutdown, which
/// waits for answers in flight) or after [`STREAM_FOR`].
fn stream(state: AppState) -> impl Stream<Item = Result<Event, Infallible>> {
    let every = tokio::time::interval(EVERY);
    let stopping = state.console().stopping();
    let until = tokio::time::Instant::now() + STREAM_FOR;
    futures_util::stream::unfold(
        (state, every, stopping),
        move |(state, mut every, mut stopping)| async move {
            tokio::select! {
                _ = every.tick() => {}
                _ = stopping.wait_for(|s| *s) => return None,
                () = tokio::time::sleep_until(until) => return None,
            }
            let calls = state.calls_in_progress().unwrap_or_default();
            let event = Event::default().event("calls").data(event_data(&calls));
            Some((Ok(event), (state, every, stopping)))
        },
    )
}
