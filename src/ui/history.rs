//! History: stored calls of every outcome, newest first, filtered as `POST /calls`
//! filters (the window holds a call when its start time lies in it; direction and
//! operators through the API's own query), plus outcome and a number search. A page
//! is a range scan from a cursor (the last call of the page before), so page 1 and
//! page 10,000 cost the same; a filter that matches little stops after [`MAX_SCANNED`]
//! calls with a link to search on, so no page takes seconds however wide the range.

use std::collections::HashSet;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use maud::{html, Markup};

use super::page::{
    duration, html_response, now_unix, parse_input_time, utc_time, Nav, UiError, Viewer,
};
use crate::api::{contacts_of, AppState, CallsQuery};
use crate::call::{CallRecord, Outcome};
use crate::store::{Store, StoreError};

/// Calls per page.
pub(crate) const PAGE: usize = 50;

/// Calls read for one page at most: about 60 ms of decoding (benches/ui.rs), so a
/// filter that matches one call in a million answers quickly and offers to go on.
pub(crate) const MAX_SCANNED: usize = 20_000;

#[derive(serde::Deserialize, Default, Clone)]
pub(crate) struct HistoryQuery {
    from: Option<String>,
    to: Option<String>,
    direction: Option<String>,
    operator: Option<String>,
    outcome: Option<String>,
    number: Option<String>,
    /// The cursor: `START_ID` of the last call of the page before.
    before: Option<String>,
}

/// The outcomes offered: the store's, and "transferred" (any outcome, transferred).
const TRANSFERRED: &str = "transferred";

/// A filter's text, when one was typed.
fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The checked filters of a History request.
struct Filters {
    query: CallsQuery,
    outcome: Option<String>,
    number: Option<String>,
    before: Option<(u64, String)>,
}

impl Filters {
    fn parse(q: &HistoryQuery) -> Result<Filters, String> {
        let start = given(&q.from)
            .map(parse_input_time)
            .transpose()?
            .unwrap_or(0);
        // `to` is the minute typed, included: the window runs to the end of it.
        let stop = match given(&q.to) {
            Some(t) => parse_input_time(t)? + 60,
            None => u64::MAX / 2,
        };
        if stop <= start {
            return Err("\"to\" is before \"from\"".into());
        }
        let direction = match given(&q.direction) {
            None => None,
            Some("incoming") => Some("incoming"),
            Some("outgoing") => Some("outgoing"),
            Some(other) => return Err(format!("no direction \"{other}\"")),
        };
        let outcome = match given(&q.outcome) {
            None => None,
            Some(o) if o == TRANSFERRED || Outcome::ALL.iter().any(|x| x.as_str() == o) => {
                Some(o.to_owned())
            }
            Some(other) => return Err(format!("no outcome \"{other}\"")),
        };
        let operators = given(&q.operator).map(|o| HashSet::from([o.to_owned()]));
        let before = match given(&q.before) {
            None => None,
            Some(c) => {
                let (at, id) = c
                    .split_once('_')
                    .and_then(|(at, id)| Some((at.parse::<u64>().ok()?, id)))
                    .ok_or_else(|| format!("\"{c}\" is not a page position"))?;
                Some((at, id.to_owned()))
            }
        };
        Ok(Filters {
            query: CallsQuery::window(start, stop, direction, operators),
            outcome,
            number: given(&q.number).map(str::to_owned),
            before,
        })
    }

    fn matches(&self, r: &CallRecord) -> bool {
        self.query.selects(r)
            && self.outcome.as_deref().is_none_or(|o| {
                if o == TRANSFERRED {
                    r.transfer.is_some() || r.conversation.transferred
                } else {
                    r.outcome.as_str() == o
                }
            })
            && self.number.as_deref().is_none_or(|n| number_matches(r, n))
    }
}

/// Whether `needle` appears in one of the call's numbers (client, operator, From, To,
/// Request-URI), ignoring spaces, dashes and dots typed into the search.
fn number_matches(r: &CallRecord, needle: &str) -> bool {
    let needle: String = needle
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    if needle.is_empty() {
        return true;
    }
    [
        r.client_number.as_deref().unwrap_or(""),
        &r.operator.number,
        &r.sip.from_uri,
        &r.sip.to_uri,
        &r.sip.request_uri,
    ]
    .iter()
    .any(|n| n.contains(&needle))
}

/// One page of History.
pub(crate) struct Found {
    pub(crate) calls: Vec<CallRecord>,
    /// The cursor of the next (older) page, when there may be one.
    pub(crate) older: Option<(u64, String)>,
    /// The scan stopped at its bound before the page was full.
    pub(crate) cut_short: bool,
    pub(crate) scanned: usize,
}

fn find(store: &Store, f: &Filters) -> Result<Found, StoreError> {
    let before = f.before.as_ref().map(|(at, id)| (*at, id.as_str()));
    let mut calls = Vec::with_capacity(PAGE + 1);
    let mut scanned = 0;
    let mut last = None;
    for item in store.all_calls_newest_first(f.query.start, f.query.stop, before) {
        scanned += 1;
        match item {
            Ok(record) => {
                last = Some((record.start_time, record.id.clone()));
                if f.matches(&record) {
                    calls.push(record);
                    if calls.len() > PAGE {
                        break;
                    }
                }
            }
            Err(e @ StoreError::Db { .. }) => return Err(e),
            // Counted by the store; the others still show.
            Err(_) => {}
        }
        if scanned >= MAX_SCANNED && calls.len() <= PAGE {
            return Ok(Found {
                calls,
                older: last,
                cut_short: true,
                scanned,
            });
        }
    }
    let older = if calls.len() > PAGE {
        calls.truncate(PAGE);
        calls.last().map(|r| (r.start_time, r.id.clone()))
    } else {
        None
    };
    Ok(Found {
        calls,
        older,
        cut_short: false,
        scanned,
    })
}

/// `GET /ui/history`.
pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, UiError> {
    let q = query
        .map(|q| q.0)
        .map_err(|e| UiError::bad_request(format!("The filters could not be read: {e}")))?;
    let operators = {
        let live = state.live();
        let discovered = state.store().operators()?;
        contacts_of(&live, discovered)
    };
    let filters = match Filters::parse(&q) {
        Ok(f) => f,
        Err(message) => {
            let body = html! {
                h1 { "Call history" }
                (form(&q, &operators))
                p.notice.error role="alert" { "These filters cannot be used: " (message) "." }
            };
            return Ok(html_response(
                StatusCode::BAD_REQUEST,
                super::page::page("Call history", Nav::History, Some(&viewer), body),
            ));
        }
    };
    let store = std::sync::Arc::clone(state.store());
    let found = tokio::task::spawn_blocking(move || find(&store, &filters))
        .await
        .map_err(|e| UiError::internal(format!("the history task failed: {e}")))??;
    let body = html! {
        h1 { "Call history" }
        (form(&q, &operators))
        (results(&q, &found))
    };
    Ok(html_response(
        StatusCode::OK,
        super::page::page("Call history", Nav::History, Some(&viewer), body),
    ))
}

fn form(q: &HistoryQuery, operators: &[crate::api::Contact]) -> Markup {
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let selected = |v: &Option<String>, x: &str| v.as_deref() == Some(x);
    html! {
        form.filters method="get" action="/ui/history" {
            label { "From (UTC)" input type="datetime-local" name="from" value=(value(&q.from)); }
            label { "To (UTC)" input type="datetime-local" name="to" value=(value(&q.to)); }
            label { "Direction"
                select name="direction" {
                    option value="" { "any" }
                    option value="incoming" selected[selected(&q.direction, "incoming")] { "incoming" }
                    option value="outgoing" selected[selected(&q.direction, "outgoing")] { "outgoing (and internal)" }
                }
            }
            label { "Operator"
                select name="operator" {
                    option value="" { "any" }
                    @for op in operators {
                        option value=(op.id) selected[selected(&q.operator, &op.id)] {
                            (op.name) " (" (op.phone) ")"
                        }
                    }
                }
            }
            label { "Outcome"
                select name="outcome" {
                    option value="" { "any" }
                    @for o in Outcome::ALL {
                        option value=(o.as_str()) selected[selected(&q.outcome, o.as_str())] { (o.as_str()) }
                    }
                    option value=(TRANSFERRED) selected[selected(&q.outcome, TRANSFERRED)] { (TRANSFERRED) }
                }
            }
            label { "Number" input type="search" name="number" inputmode="tel" value=(value(&q.number)) placeholder="part of a number"; }
            button type="submit" { "Show" }
            a href="/ui/history" { "clear" }
        }
    }
}

/// The query string of `q` with the cursor set to `before`.
fn link(q: &HistoryQuery, before: Option<&(u64, String)>) -> String {
    let mut pairs = form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("from", &q.from),
        ("to", &q.to),
        ("direction", &q.direction),
        ("operator", &q.operator),
        ("outcome", &q.outcome),
        ("number", &q.number),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            pairs.append_pair(k, v);
        }
    }
    if let Some((at, id)) = before {
        pairs.append_pair("before", &format!("{at}_{id}"));
    }
    format!("/ui/history?{}", pairs.finish())
}

fn results(q: &HistoryQuery, found: &Found) -> Markup {
    html! {
        @if found.calls.is_empty() && !found.cut_short {
            p.notice { "No stored call matches these filters." }
        }
        @if !found.calls.is_empty() {
            div.scroll {
                table #history {
                    thead { tr {
                        th { "Start (UTC)" } th { "Direction" } th { "Outcome" } th { "Client" }
                        th { "Operator" } th { "Talk" } th.wide { "Ring" } th.wide { "Hung up" }
                        th.wide { "Rec." }
                    } }
                    tbody {
                        @for r in &found.calls {
                            tr {
                                td { a href=(format!("/ui/calls/{}", r.id)) { (utc_time(r.start_time)) } }
                                td { (direction_name(r)) }
                                td class=(format!("outcome-{}", r.outcome.as_str())) {
                                    (r.outcome.as_str())
                                    @if r.transfer.is_some() { " · transferred" }
                                }
                                td { (r.client_number.as_deref().unwrap_or("—")) }
                                td { (r.operator.name) " " span.muted { (r.operator.number) } }
                                td { @if r.answer_ns.is_some() { (duration(r.duration)) } @else { "—" } }
                                td.wide { (format!("{:.0} s", r.ring_seconds)) }
                                td.wide { (r.who_hung_up.as_str()) }
                                td.wide { @if r.media.recording.is_some() { "yes" } @else { "—" } }
                            }
                        }
                    }
                }
            }
        }
        @if found.cut_short {
            p.notice {
                "Searched " (found.scanned) " calls"
                @if let Some((at, _)) = &found.older { " back to " (utc_time(*at)) }
                " and found " (found.calls.len()) " so far. "
                @if let Some(older) = &found.older {
                    a href=(link(q, Some(older))) { "Search further back" }
                }
            }
        } @else {
            div.pager {
                @if q.before.is_some() { a href=(link(q, None)) { "« Newest" } }
                @if let Some(older) = &found.older { a href=(link(q, Some(older))) rel="next" { "Older »" } }
            }
        }
        p.muted { "Now: " (utc_time(now_unix())) " UTC." }
    }
}

pub(crate) fn direction_name(r: &CallRecord) -> &'static str {
    match r.direction {
        crate::call::Direction::Incoming => "incoming",
        crate::call::Direction::Outgoing => "outgoing",
        crate::call::Direction::Internal => "internal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HistoryQuery {
        let mut q = HistoryQuery::default();
        for &(k, v) in pairs {
            let slot = match k {
                "from" => &mut q.from,
                "to" => &mut q.to,
                "direction" => &mut q.direction,
                "outcome" => &mut q.outcome,
                "before" => &mut q.before,
                other => panic!("no field {other}"),
            };
            *slot = Some(v.to_owned());
        }
        q
    }

    #[test]
    fn filters_are_checked_with_a_reason() {
        assert!(Filters::parse(&q(&[])).is_ok());
        let f = Filters::parse(&q(&[
            ("from", "2026-03-04T10:00"),
            ("to", "2026-03-04T10:00"),
        ]))
        .unwrap();
        assert_eq!(
            (f.query.start, f.query.stop),
            (1_772_618_400, 1_772_618_460)
        );
        for (bad, why) in [
            (
                vec![("from", "2026-03-05T00:00"), ("to", "2026-03-04T00:00")],
                "before",
            ),
            (vec![("direction", "sideways")], "direction"),
            (vec![("outcome", "lost")], "outcome"),
            (vec![("before", "x")], "page position"),
            (vec![("from", "soon")], "not a time"),
        ] {
            let e = Filters::parse(&q(&bad)).err().unwrap();
            assert!(e.contains(why), "{e}");
        }
        let f = Filters::parse(&q(&[("before", "1772618400_c-ab_cd")])).unwrap();
        assert_eq!(f.before, Some((1_772_618_400, "c-ab_cd".into())));
    }
}
