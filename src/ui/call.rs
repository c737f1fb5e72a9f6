//! One call: its record as the importer sees it, the facts operations ask about (the
//! legs' Call-IDs, the outcome, ring time, quality, who hung up and from where), the SIP
//! ladder of every leg's messages, the recording (a player over a signed link, and a
//! waveform drawn here), and the SIP messages as a pcap.

use std::collections::BTreeMap;
use std::path::{Component, Path as FsPath};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::{html, Markup};
use serde::Serialize;

use super::history::direction_name;
use super::ladder::ladder;
use super::page::{duration, html_response, utc_time, utc_time_ns, Nav, UiError, Viewer};
use super::pcap;
use super::waveform;
use crate::api::AppState;
use crate::base::{SipTrace, TracedMessage};
use crate::call::{properties, CallRecord, Party};
use crate::store::Store;

/// The longest call id looked up; calltap's own are 26 characters.
const MAX_ID_LEN: usize = 128;

/// How far around a call its merged legs are looked for, seconds: a B2BUA's legs start
/// within the ring time of each other.
const LEG_WINDOW_SECS: u64 = 600;

/// A call and what belongs to it.
struct Dossier {
    record: CallRecord,
    /// The other records of its conversation (B2BUA legs, transfer segments).
    legs: Vec<CallRecord>,
    /// Its own SIP messages, and each leg's, by record id.
    traces: BTreeMap<String, SipTrace>,
}

fn checked_id(id: &str) -> Result<&str, UiError> {
    if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(|c| c.is_control()) {
        return Err(UiError::not_found("That is not a call id."));
    }
    Ok(id)
}

fn load(store: &Store, id: &str) -> Result<Dossier, UiError> {
    let record = store.get_call(id)?.ok_or_else(|| {
        UiError::not_found(format!(
            "No call with id {id} is stored: it may never have existed, or retention has deleted it."
        ))
    })?;
    let mut legs = Vec::new();
    if let Some(conversation) = record.conversation.id.as_deref() {
        let from = record.start_time.saturating_sub(LEG_WINDOW_SECS);
        let to = record.end_time.saturating_add(LEG_WINDOW_SECS);
        for other in store.all_calls_between(from, to) {
            let Ok(other) = other else { continue };
            if other.id != record.id && other.conversation.id.as_deref() == Some(conversation) {
                legs.push(other);
            }
        }
    }
    let mut traces = BTreeMap::new();
    for r in std::iter::once(&record).chain(&legs) {
        match store.sip_messages(&r.id) {
            Ok(Some(t)) => {
                traces.insert(r.id.clone(), t);
            }
            Ok(None) => {}
            // Counted by the store; the page says the messages are unreadable.
            Err(e) => tracing::warn!(id = %r.id, error = %e, "console: SIP messages unreadable"),
        }
    }
    Ok(Dossier {
        record,
        legs,
        traces,
    })
}

async fn load_async(state: &AppState, id: &str) -> Result<Dossier, UiError> {
    let store = Arc::clone(state.store());
    let id = id.to_owned();
    tokio::task::spawn_blocking(move || load(&store, &id))
        .await
        .map_err(|e| UiError::internal(format!("the call's task failed: {e}")))?
}

impl Dossier {
    /// Every leg's messages, in capture order.
    fn messages(&self) -> Vec<&TracedMessage> {
        let mut all: Vec<&TracedMessage> = self
            .traces
            .values()
            .flat_map(|t| t.messages.iter())
            .collect();
        all.sort_by_key(|m| m.time);
        all
    }

    fn cut(&self) -> u32 {
        self.traces.values().map(|t| t.cut).sum()
    }

    /// The BYE that ended this call (its own dialog's first BYE).
    fn bye(&self) -> Option<&TracedMessage> {
        self.traces
            .get(&self.record.id)?
            .messages
            .iter()
            .find(|m| m.text.starts_with(b"BYE "))
    }
}

/// A value as its JSON spelling ("end_of_capture", "callee").
fn spelled<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// `GET /ui/calls/{id}`.
pub(crate) async fn page(
    State(state): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let id = checked_id(&id)?;
    let d = load_async(&state, id).await?;
    let live = state.live();
    let r = &d.record;
    let properties = properties::compute(r, &live.config);
    let contract = serde_json::to_string_pretty(&r.contract_with(&properties))
        .unwrap_or_else(|e| format!("cannot show the record: {e}"));
    let recording_link = r
        .media
        .recording
        .as_ref()
        .map(|f| crate::api::signed_path(&live, &r.id, f.extension()));
    drop(live);
    let messages = d.messages();
    let title = format!(
        "{} call {}",
        direction_name(r),
        r.client_number.as_deref().unwrap_or("")
    );
    let body = html! {
        h1 { (title) " · " (utc_time(r.start_time)) " UTC" }
        @if let Some(primary) = &r.conversation.merged_into {
            p.notice { "This is a leg of a conversation stored as "
                a href=(format!("/ui/calls/{primary}")) { "call " (primary) } "." }
        } @else if !r.exported {
            p.notice { "The importer does not see this call (" (not_exported_why(r)) ")." }
        }
        h2 { "What happened" }
        (facts(&d))
        h2 { "Recording" }
        (recording(r, recording_link.as_deref()))
        h2 #ladder { "SIP messages" }
        @if messages.is_empty() {
            p.notice { "No SIP messages are stored for this call (kept only from when calltap \
                        started keeping them, and not when [store] sip_messages is off)." }
        } @else {
            p {
                (messages.len()) " messages between " (hosts(&messages)) " addresses. "
                a href=(format!("/ui/calls/{}/sip.pcap", r.id)) download { "Download as pcap" }
                " (opens in Wireshark)."
                @if d.cut() > 0 { " " strong { (d.cut()) " more were not kept" } " (the per-call limit)." }
            }
            (ladder(&messages))
        }
        h2 { "As the importer sees it" }
        pre { (contract) }
    };
    Ok(html_response(
        StatusCode::OK,
        super::page::page(&title, Nav::History, Some(&viewer), body),
    ))
}

fn not_exported_why(r: &CallRecord) -> &'static str {
    if r.answer_ns.is_none() {
        "it was not answered: only conversations are served"
    } else if matches!(r.direction, crate::call::Direction::Internal) {
        "an internal call, and [calls] does not export internal calls"
    } else {
        "not exported"
    }
}

fn hosts(messages: &[&TracedMessage]) -> usize {
    let mut seen = Vec::new();
    for m in messages {
        for a in [m.src, m.dst] {
            if !seen.contains(&a) {
                seen.push(a);
            }
        }
    }
    seen.len()
}

fn facts(d: &Dossier) -> Markup {
    let r = &d.record;
    let m = &r.media;
    let ring = format!("{:.1} s", r.ring_seconds);
    let talk = if r.answer_ns.is_some() {
        duration(r.duration)
    } else {
        "not answered".to_owned()
    };
    let hung_up = match r.hung_up_by {
        Some(Party::Caller) => format!("{} (the caller)", r.who_hung_up.as_str()),
        Some(Party::Callee) => format!("{} (the callee)", r.who_hung_up.as_str()),
        None => format!("{} (no BYE)", r.who_hung_up.as_str()),
    };
    let quality = html! {
        @if m.codecs.is_empty() { "no RTP seen" } @else { (m.codecs.join(", ")) }
        @if let Some(mos) = m.mos { " · MOS " (format!("{mos:.2}")) }
        @if let Some(loss) = m.loss_percent { " · loss " (format!("{loss:.2} %")) }
        @if let Some(j) = m.jitter_ms { " · jitter " (format!("{j:.1} ms")) }
        " · packets: caller " (m.caller_packets) ", callee " (m.callee_packets)
    };
    html! {
        table.facts {
            tr { th { "Outcome" } td class=(format!("outcome-{}", r.outcome.as_str())) {
                (r.outcome.as_str())
                @if r.sip.final_status > 0 { " (final response " (r.sip.final_status) ")" }
                @if let Some(reason) = &r.sip.reason { " · " (reason) }
            } }
            tr { th { "Direction" } td { (direction_name(r)) } }
            tr { th { "Client" } td { (r.client_number.as_deref().unwrap_or("—"))
                @if let Some(n) = &r.client_name { " (" (n) ")" } } }
            tr { th { "Operator" } td { (r.operator.name) " · " (r.operator.number) " · id " (r.operator.id) } }
            tr { th { "INVITE" } td { (utc_time_ns(r.invite_ns)) } }
            @if let Some(a) = r.answer_ns { tr { th { "Answered" } td { (utc_time_ns(a)) } } }
            tr { th { "Ended" } td { (utc_time_ns(r.end_ns)) " · " (spelled(&r.end_reason)) } }
            tr { th { "Ring time" } td { (ring) } }
            tr { th { "Talk time" } td { (talk) } }
            tr { th { "Hung up by" } td { (hung_up)
                @if let Some(bye) = d.bye() { " · BYE from " (bye.src) " at " (utc_time_ns(bye.time.as_nanos())) } } }
            @if let Some(t) = &r.transfer {
                tr { th { "Transfer" } td { (t.kind) " to " (t.target)
                    @if t.completed { " (completed)" } @else { " (not confirmed)" } } }
            }
            @if r.holds > 0 { tr { th { "Holds" } td { (r.holds) } } }
            tr { th { "Quality" } td { (quality) } }
            @if !m.dtmf_digits.is_empty() { tr { th { "DTMF" } td { (m.dtmf_digits) } } }
            tr { th { "Call-ID" } td { code { (r.sip.call_id) } " · " (r.sip.transport)
                " · " (r.sip.invite_src) " → " (r.sip.invite_dst) } }
            @if !r.conversation.legs.is_empty() {
                tr { th { "Legs' Call-IDs" } td { @for leg in &r.conversation.legs { code { (leg) } br; } } }
            }
            @if !d.legs.is_empty() {
                tr { th { "Other records" } td {
                    @for leg in &d.legs {
                        a href=(format!("/ui/calls/{}", leg.id)) { (leg.id) }
                        " " (leg.conversation.role.as_deref().unwrap_or("")) " · " code { (leg.sip.call_id) } br;
                    }
                } }
            }
            @if let Some(ua) = &r.sip.user_agent { tr { th { "User agent" } td { (ua) } } }
            tr { th { "Record id" } td { code { (r.id) } @if r.recovered { " (finalised after a crash)" } } }
        }
    }
}

fn recording(r: &CallRecord, link: Option<&str>) -> Markup {
    let Some(file) = &r.media.recording else {
        return html! {
            p.notice { "No recording: "
                (r.media.no_recording_reason.as_deref().unwrap_or("none was made")) "." }
        };
    };
    let link = link.unwrap_or_default();
    html! {
        p { (duration(file.duration_ms / 1000)) " · " (file.sample_rate) " Hz · "
            (format!("{:.1} MB", file.bytes as f64 / 1e6)) " · " (file.file) " · "
            a href=(link) download=(file.download_name(&r.id)) { "download" } }
        audio #player controls preload="metadata" src=(link) {
            "Your browser cannot play this recording: " a href=(link) { "download it" } "."
        }
        @if file.extension() == "wav" {
            div.waveform {
                img src=(format!("/ui/calls/{}/waveform.svg", r.id)) width="100%" height="140"
                    alt="Waveform: operator (left channel) above, client (right channel) below";
            }
            p.muted { "Operator above (left channel), client below (right channel)." }
        } @else {
            p.muted { "The waveform is drawn from WAV recordings; this one is stored as "
                (file.extension().to_uppercase()) "." }
        }
    }
}

/// `GET /ui/calls/{id}/sip.pcap`.
pub(crate) async fn pcap(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let id = checked_id(&id)?;
    let d = load_async(&state, id).await?;
    let messages = d.messages();
    if messages.is_empty() {
        return Err(UiError::not_found(format!(
            "No SIP messages are stored for call {id}, so there is no pcap to download."
        )));
    }
    let file = pcap::write(&messages).map_err(UiError::internal)?;
    if file.skipped > 0 {
        tracing::warn!(%id, skipped = file.skipped, "console: messages left out of a pcap");
    }
    let mut response = file.bytes.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.tcpdump.pcap"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"calltap-{id}-sip.pcap\""))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `GET /ui/calls/{id}/waveform.svg`.
pub(crate) async fn waveform(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let id = checked_id(&id)?.to_owned();
    let store = Arc::clone(state.store());
    let svg = tokio::task::spawn_blocking(move || -> Result<String, UiError> {
        let record = store
            .get_call(&id)?
            .ok_or_else(|| UiError::not_found(format!("No call with id {id} is stored.")))?;
        let file = record
            .media
            .recording
            .ok_or_else(|| UiError::not_found(format!("Call {id} has no recording.")))?;
        let name = FsPath::new(&file.file);
        let mut parts = name.components();
        if !matches!(
            (parts.next(), parts.next()),
            (Some(Component::Normal(_)), None)
        ) {
            return Err(UiError::internal("the record names its recording oddly"));
        }
        let peaks = waveform::peaks(&store.recordings_dir().join(name))
            .map_err(|e| UiError::not_found(format!("No waveform for call {id}: {e}.")))?;
        Ok(waveform::svg(&peaks, ["operator", "client"]))
    })
    .await
    .map_err(|e| UiError::internal(format!("the waveform task failed: {e}")))??;
    let mut response = svg.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("image/svg+xml"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}
