//! The INVITE dialog state machine, one entry per Call-ID, fed SIP messages in capture
//! order. It keeps no clock of its own: timeouts are measured against the capture time
//! of the messages (and of the sweeps the engine makes), and what ends comes out as
//! [`DialogEvent`]s to poll.
//!
//! A passive observer sees every message once per hop and every retransmission, so
//! transactions are told apart by CSeq and method, not by Via branch: a proxy forwards
//! the same INVITE with a new branch, and both copies are one call.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::base::Timestamp;
use crate::base::{EndReason, Party, SipTrace, TracedMessage, Transfer};
use crate::net::Transport;
use crate::sip::{lossy, NameAddr, SessionDescription, SipMessage};

mod no_response;

use no_response::NoResponse;
pub use no_response::{NoResponseLimits, NoResponseStats, SourceCount};

/// 64 x T1 (RFC 3261 Timer B/F/H): after this a transaction is over, so it is how long
/// an ended dialog absorbs retransmissions and a CANCEL waits for its 487.
pub const LINGER: Duration = Duration::from_secs(32);

/// Text kept from a header: enough for any real URI or display name, bounded so a
/// hostile message cannot grow a dialog.
const MAX_FIELD: usize = 256;

/// Headers of the initial INVITE kept for properties (X-... and friends).
const MAX_KEPT_HEADERS: usize = 16;

/// Early dialogs (forks) remembered per call: a ring group rarely forks wider.
const MAX_EARLY_TAGS: usize = 16;

/// When the table is full, this share of the dialogs goes at once (the least useful
/// first, see `evict`), so a full table costs one scan per many new dialogs, not one
/// per dialog.
const EVICT_FRACTION: usize = 100;

#[derive(Clone, Copy, Debug)]
pub struct DialogLimits {
    pub max_dialogs: usize,
    pub ring_timeout: Duration,
    pub max_call: Duration,
    /// INVITEs that get no response at all (scanners, floods).
    pub no_response: NoResponseLimits,
    /// Keep each dialog's SIP messages ([`DialogEvent::Messages`]).
    pub keep_messages: bool,
}

impl Default for DialogLimits {
    fn default() -> Self {
        DialogLimits {
            max_dialogs: 100_000,
            ring_timeout: Duration::from_secs(300),
            max_call: Duration::from_secs(4 * 3600),
            no_response: NoResponseLimits::default(),
            keep_messages: true,
        }
    }
}

/// A party as the headers name it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Identity {
    pub uri: String,
    /// The user part of the URI (the number or extension), or the tel: number.
    pub user: String,
    pub display: Option<String>,
}

impl Identity {
    fn from_name_addr(na: &NameAddr<'_>) -> Identity {
        let user = na
            .uri_parts()
            .and_then(|u| u.user)
            .map(bounded)
            .unwrap_or_default();
        Identity {
            uri: bounded(na.uri),
            user,
            display: na
                .display_name_lossy()
                .map(|d| d.chars().take(MAX_FIELD).collect::<String>())
                .filter(|d| !d.is_empty()),
        }
    }
}

/// Everything the call layer needs from one INVITE dialog, once it is over.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct FinishedDialog {
    /// The call record's id (see [`record_id`]).
    pub record_id: String,
    pub call_id: String,
    pub from_tag: String,
    /// CSeq of the INVITE that opened the dialog: with the Call-ID and From tag it tells
    /// a late retry (a new attempt on the same Call-ID) from the first attempt.
    pub invite_cseq: u32,
    /// The answering (or, unanswered, the last responding) side's tag.
    pub to_tag: String,
    pub from: Identity,
    pub to: Identity,
    pub request_uri: Identity,
    pub p_asserted: Option<Identity>,
    pub diversion: Option<Identity>,
    pub invite_time: Timestamp,
    pub ring_time: Option<Timestamp>,
    pub answer_time: Option<Timestamp>,
    pub end_time: Timestamp,
    /// Final response to the initial INVITE; 0 when none was seen.
    pub final_status: u16,
    pub cancelled: bool,
    pub end_reason: EndReason,
    pub hung_up_by: Option<Party>,
    pub transfer: Option<Transfer>,
    /// INVITE with Replaces: the Call-ID of the dialog this one replaced.
    pub replaces: Option<String>,
    pub holds: u32,
    pub transport: Transport,
    pub invite_src: SocketAddr,
    pub invite_dst: SocketAddr,
    pub headers: Vec<(String, String)>,
    pub user_agent: Option<String>,
    pub reason: Option<String>,
}

/// A REGISTER seen: how extensions (and their display names) are discovered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    pub time: Timestamp,
    pub user: String,
    pub display: Option<String>,
    pub source: SocketAddr,
    /// Where the REGISTER went.
    pub registrar: Option<SocketAddr>,
}

#[derive(Clone, Debug)]
pub enum DialogEvent {
    /// A session description, as `side` announced it (an offer or an answer, in the
    /// INVITE, a 18x/2xx, or a re-INVITE/UPDATE): where that party receives media.
    Sdp {
        id: String,
        time: Timestamp,
        side: Party,
        sdp: Box<SessionDescription>,
    },
    /// The call was answered; the facts so far (recording starts here).
    Answered(Box<FinishedDialog>),
    /// An answered dialog ended (BYE, timeout): its facts at that moment, reported at
    /// once while the full record waits out [`LINGER`], so the recording stops growing
    /// at the hang-up and a crash in the linger still knows who hung up.
    HungUp(Box<FinishedDialog>),
    Ended(Box<FinishedDialog>),
    /// The dialog's SIP messages (bounded, see [`SipTrace`]), reported just before its
    /// `Ended`.
    Messages {
        id: String,
        trace: Box<SipTrace>,
    },
    Registered(Registration),
    /// The first response to the INVITE (with [`DialogTable::report_progress`]): the
    /// call has arrived somewhere.
    Started(Box<FinishedDialog>),
    /// An attempt ended unanswered (with `report_progress`), at once, while its record
    /// waits out [`LINGER`].
    NotAnswered(Box<FinishedDialog>),
    /// A transfer of the call was confirmed: a NOTIFY reporting the target answered, or
    /// an INVITE replacing this dialog (with `report_progress`).
    Transferred(Box<FinishedDialog>),
}

/// What the dialog layer counted.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DialogStats {
    pub dialogs_created: u64,
    pub dialogs_ended: u64,
    pub answered: u64,
    /// Copies of a message already seen: retransmissions, or the same message seen
    /// at two hops or on two interfaces.
    pub retransmissions: u64,
    /// Requests inside a dialog calltap never saw start (capture began mid-call).
    pub orphan_requests: u64,
    /// Responses to INVITE, BYE or CANCEL of no known dialog.
    pub orphan_responses: u64,
    /// 2xx from a second fork after the call was answered.
    pub extra_forks_answered: u64,
    /// In-dialog requests of a fork other than the answered one: the caller ACKs and
    /// hangs up each extra 2xx (RFC 3261 13.2.2.4); that BYE does not end the call.
    pub other_fork_requests: u64,
    /// Dialogs dropped because the table was full (`max_dialogs`): the ones that never
    /// got a response first, then unanswered ones, answered calls last.
    pub evicted: u64,
    /// INVITEs that got no response at all: scanners and floods.
    pub no_response: NoResponseStats,
    /// OPTIONS, REGISTER, SUBSCRIBE, MESSAGE, PUBLISH, ...: never calls.
    pub non_dialog_messages: u64,
    pub active: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// INVITE sent, no final answer yet.
    Inviting,
    /// A 401/407/3xx final: the caller may retry on the same Call-ID.
    AwaitingRetry {
        since: Timestamp,
    },
    Answered,
    /// Over and reported; kept for [`LINGER`] to absorb late copies.
    Ended {
        at: Timestamp,
    },
}

struct Dialog {
    facts: FinishedDialog,
    phase: Phase,
    /// From-tags the initial INVITE carried: a proxy or SBC that rewrites tags shows
    /// the caller under one tag per side, and a BYE under any of them is the caller's.
    caller_tags: Vec<Box<str>>,
    /// To-tags of 2xx answers after the first, with when they came.
    extra_forks: Vec<(Box<str>, Timestamp)>,
    initial_cseq: u32,
    early_tags: Vec<Box<str>>,
    last_activity: Timestamp,
    cancel_time: Option<Timestamp>,
    /// Session timer: interval and when the session was last refreshed.
    session_expires: Option<(Duration, Timestamp)>,
    on_hold: bool,
    /// In-dialog requests seen lately (side, CSeq, method), to tell a new request from
    /// a copy. Not "highest CSeq wins": real UAs (SIPp among them) reuse numbers
    /// across methods, so a BYE may carry a CSeq below an earlier UPDATE's.
    recent: VecDeque<(bool, u32, Box<[u8]>)>,
    /// CSeq of the last re-INVITE/UPDATE whose 2xx was taken, per direction of the
    /// request (caller, callee): each side numbers its own requests.
    last_answered_update: [u32; 2],
    /// No response of any kind yet (see `no_response`).
    awaiting_response: bool,
    /// A `Transferred` event was reported for this dialog.
    transfer_reported: bool,
    /// The INVITE's offer, handed to the media layer with the first response: a flood of
    /// INVITEs nobody answers never reaches it.
    pending_offer: Option<Box<SessionDescription>>,
    /// The dialog's messages as captured, for the console's ladder and pcap.
    trace: SipTrace,
}

pub struct DialogTable {
    limits: DialogLimits,
    /// Boxed: a dialog is ~1 KB, and the table moves every entry when it grows
    /// (benches/dialogs.rs: 2.6 KB a tracked dialog in all, 280 B less boxed).
    dialogs: HashMap<Box<[u8]>, Box<Dialog>>,
    no_response: NoResponse,
    events: VecDeque<DialogEvent>,
    stats: DialogStats,
    /// Report `Started`, `NotAnswered` and `Transferred` too (for call events).
    progress: bool,
}

fn bounded(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(MAX_FIELD)];
    lossy(cut).into_owned()
}

fn cseq_method_is(msg: &SipMessage<'_>, name: &[u8]) -> bool {
    msg.cseq().method.eq_ignore_ascii_case(name)
}

/// Headers worth keeping from the initial INVITE: dialplan-set `X-` headers and the
/// few standard ones properties may read.
fn keep_header(name: &[u8]) -> bool {
    (name.len() > 2 && name[..2].eq_ignore_ascii_case(b"x-"))
        || [&b"subject"[..], b"priority", b"organization", b"alert-info"]
            .iter()
            .any(|k| name.eq_ignore_ascii_case(k))
}

fn parse_sdp(msg: &SipMessage<'_>) -> Option<SessionDescription> {
    msg.sdp().and_then(|b| SessionDescription::parse(b).ok())
}

impl DialogTable {
    pub fn new(limits: DialogLimits) -> Self {
        DialogTable {
            limits,
            dialogs: HashMap::new(),
            no_response: NoResponse::new(limits.no_response),
            progress: false,
            events: VecDeque::new(),
            stats: DialogStats::default(),
        }
    }

    /// Also report when a call starts, ends unanswered and is transferred, as it
    /// happens (the call events need them; the records do not).
    pub fn report_progress(&mut self, on: bool) {
        self.progress = on;
    }

    pub fn stats(&self) -> DialogStats {
        let mut s = self.stats.clone();
        s.no_response = self.no_response.stats();
        s.active = self
            .dialogs
            .values()
            .filter(|d| !matches!(d.phase, Phase::Ended { .. }))
            .count() as u64;
        s
    }

    pub fn poll(&mut self) -> Option<DialogEvent> {
        self.events.pop_front()
    }

    /// The calls not over yet, with whether each was answered: dialogs that got a
    /// response (an INVITE nobody answers at all is a scanner or a flood, not a call).
    pub fn in_progress(&self) -> impl Iterator<Item = (&FinishedDialog, bool)> {
        self.dialogs
            .values()
            .filter(|d| !d.awaiting_response)
            .filter_map(|d| match d.phase {
                Phase::Ended { .. } => None,
                Phase::Answered => Some((&d.facts, true)),
                Phase::Inviting | Phase::AwaitingRetry { .. } => Some((&d.facts, false)),
            })
    }

    /// Feeds one SIP message seen at `time` going `src` -> `dst`.
    pub fn message(
        &mut self,
        time: Timestamp,
        msg: &SipMessage<'_>,
        src: SocketAddr,
        dst: SocketAddr,
        transport: Transport,
    ) {
        if msg.is_request() {
            self.request(time, msg, src, dst, transport);
        } else {
            self.response(time, msg);
        }
        // After the message has moved the table, so an INVITE that opened a dialog is
        // the first message of its trace.
        if !self.limits.keep_messages {
            return;
        }
        if let Some(d) = self.dialogs.get_mut(msg.call_id()) {
            d.trace.push(TracedMessage {
                time,
                src,
                dst,
                transport,
                text: msg.as_bytes().into(),
            });
        }
    }

    fn request(
        &mut self,
        time: Timestamp,
        msg: &SipMessage<'_>,
        src: SocketAddr,
        dst: SocketAddr,
        transport: Transport,
    ) {
        let Some(method) = msg.method_bytes() else {
            return;
        };
        if method == b"REGISTER" {
            self.stats.non_dialog_messages += 1;
            let to = msg.to();
            let id = Identity::from_name_addr(to);
            if !id.user.is_empty() {
                self.events.push_back(DialogEvent::Registered(Registration {
                    time,
                    user: id.user,
                    display: id
                        .display
                        .or_else(|| msg.from().display_name_lossy().filter(|d| !d.is_empty())),
                    source: src,
                    registrar: Some(dst),
                }));
            }
            return;
        }
        let call_id = msg.call_id();
        let mut known = self.dialogs.contains_key(call_id);
        if known && method == b"INVITE" && msg.to_tag().is_none() {
            // A new INVITE on the Call-ID of an attempt already reported is a new attempt
            // (a retry long after a challenge); its CSeq gives it its own record id.
            let reopened = self.dialogs.get(call_id).is_some_and(|d| {
                matches!(d.phase, Phase::Ended { .. }) && msg.cseq().number > d.initial_cseq
            });
            if reopened {
                self.emit(call_id);
                known = false;
            }
        }
        if !known {
            if method == b"INVITE" && msg.to_tag().is_none() {
                self.start(time, msg, src, dst, transport);
            } else if matches!(
                method,
                b"INVITE" | b"BYE" | b"ACK" | b"CANCEL" | b"REFER" | b"UPDATE" | b"PRACK"
            ) {
                self.stats.orphan_requests += 1;
            } else {
                self.stats.non_dialog_messages += 1;
            }
            return;
        }
        let Some(d) = self.dialogs.get_mut(call_id) else {
            return;
        };
        d.touch(time);
        if method == b"INVITE" && msg.to_tag().is_none() {
            if let Some(tag) = msg.from_tag() {
                if d.caller_tags.len() < MAX_EARLY_TAGS
                    && !d.caller_tags.iter().any(|t| t.as_bytes() == tag)
                {
                    d.caller_tags.push(bounded(tag).into());
                }
            }
        }
        let from_caller = d.sent_by_caller(msg);
        let cseq = msg.cseq().number;
        if d.phase == Phase::Answered && msg.to_tag().is_some() && !d.facts.to_tag.is_empty() {
            // Once answered, the call is the dialog of the answering fork: a request
            // whose callee-side tag is another fork's belongs to a dialog the caller is
            // tearing down (a second 2xx from a forking proxy), not to this call.
            let callee_tag = if from_caller {
                msg.to_tag()
            } else {
                msg.from_tag()
            };
            // A tag answered long ago is no extra fork being torn down but the same call
            // on another hop: a B2BUA that keeps the Call-ID and rewrites the To-tag
            // (ipv6frag.pcap) answers on both hops and is hung up under either tag.
            let tearing_down = callee_tag.is_some_and(|tag| {
                tag != d.facts.to_tag.as_bytes()
                    && d.extra_forks
                        .iter()
                        .any(|(t, at)| t.as_bytes() == tag && time.since(*at) < LINGER)
            });
            if tearing_down {
                self.stats.other_fork_requests += 1;
                return;
            }
        }
        match method {
            b"INVITE" if msg.to_tag().is_none() => {
                if cseq <= d.initial_cseq {
                    self.stats.retransmissions += 1;
                } else if let Phase::AwaitingRetry { .. } = d.phase {
                    // The caller answered a challenge (or followed a redirect): same
                    // call, new transaction.
                    d.initial_cseq = cseq;
                    d.phase = Phase::Inviting;
                    d.facts.final_status = 0;
                    if let Some(sdp) = parse_sdp(msg) {
                        self.events.push_back(DialogEvent::Sdp {
                            id: d.facts.record_id.clone(),
                            time,
                            side: Party::Caller,
                            sdp: Box::new(sdp),
                        });
                    }
                } else {
                    self.stats.retransmissions += 1;
                }
            }
            b"INVITE" | b"UPDATE" => {
                if d.seen(from_caller, cseq, method) {
                    self.stats.retransmissions += 1;
                    return;
                }
                if let Some((interval, _)) = d.session_expires {
                    d.session_expires = Some((
                        msg.session_expires()
                            .map_or(interval, |s| Duration::from_secs(u64::from(s))),
                        time,
                    ));
                }
                if let Some(sdp) = parse_sdp(msg) {
                    d.set_hold(sdp.is_on_hold());
                    self.events.push_back(DialogEvent::Sdp {
                        id: d.facts.record_id.clone(),
                        time,
                        side: if from_caller {
                            Party::Caller
                        } else {
                            Party::Callee
                        },
                        sdp: Box::new(sdp),
                    });
                }
            }
            b"CANCEL" if d.phase == Phase::Inviting && d.cancel_time.is_none() => {
                d.cancel_time = Some(time);
                d.facts.cancelled = true;
            }
            b"BYE" => {
                if d.seen(from_caller, cseq, method) || matches!(d.phase, Phase::Ended { .. }) {
                    self.stats.retransmissions += 1;
                    return;
                }
                let party = if from_caller {
                    Party::Caller
                } else {
                    Party::Callee
                };
                match d.phase {
                    Phase::Answered => {
                        d.facts.hung_up_by = Some(party);
                        if let Some(reason) = msg.reason_header() {
                            d.facts.reason = Some(bounded(reason));
                        }
                        self.end(call_id, time, EndReason::Bye);
                    }
                    // A BYE before the answer (RFC 3261 15): the caller gave up.
                    _ => {
                        d.facts.cancelled = true;
                        self.end(call_id, time, EndReason::NotAnswered);
                    }
                }
            }
            b"REFER" => {
                if d.seen(from_caller, cseq, method) {
                    self.stats.retransmissions += 1;
                    return;
                }
                if let Some(target) = msg.refer_to() {
                    let attended = target
                        .uri_parts()
                        .is_some_and(|u| contains_ignore_case(u.headers, b"replaces"));
                    let user = target
                        .uri_parts()
                        .and_then(|u| u.user)
                        .map(bounded)
                        .unwrap_or_else(|| bounded(target.uri));
                    d.facts.transfer = Some(Transfer {
                        kind: if attended { "attended" } else { "blind" }.into(),
                        target: user,
                        by: Some(if from_caller {
                            Party::Caller
                        } else {
                            Party::Callee
                        }),
                        completed: false,
                    });
                }
            }
            b"NOTIFY" => {
                // RFC 3515: the transferee reports the transfer target's answer as a
                // sipfrag body ("SIP/2.0 200 OK").
                let body = msg.body();
                if let Some(t) = d.facts.transfer.as_mut() {
                    if body.len() >= 11
                        && body[..8].eq_ignore_ascii_case(b"SIP/2.0 ")
                        && body[8] == b'2'
                    {
                        t.completed = true;
                        if self.progress && !std::mem::replace(&mut d.transfer_reported, true) {
                            self.events
                                .push_back(DialogEvent::Transferred(Box::new(d.facts.clone())));
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn start(
        &mut self,
        time: Timestamp,
        msg: &SipMessage<'_>,
        src: SocketAddr,
        dst: SocketAddr,
        transport: Transport,
    ) {
        if self.dialogs.len() >= self.limits.max_dialogs {
            self.evict();
        }
        let Some(from_tag) = msg.from_tag() else {
            // RFC 3261 requires a From tag; RFC 2543 peers omit it. Use an empty tag.
            return self.start_with_tag(time, msg, src, dst, transport, b"");
        };
        self.start_with_tag(time, msg, src, dst, transport, from_tag);
    }

    #[allow(clippy::too_many_arguments)]
    fn start_with_tag(
        &mut self,
        time: Timestamp,
        msg: &SipMessage<'_>,
        src: SocketAddr,
        dst: SocketAddr,
        transport: Transport,
        from_tag: &[u8],
    ) {
        let request_uri = msg
            .request_uri()
            .map(|raw| {
                let parts = crate::sip::UriParts::parse(raw);
                Identity {
                    uri: bounded(raw),
                    user: parts.and_then(|p| p.user).map(bounded).unwrap_or_default(),
                    display: None,
                }
            })
            .unwrap_or_default();
        let headers = msg
            .headers()
            .filter(|(name, _)| keep_header(name))
            .take(MAX_KEPT_HEADERS)
            .map(|(name, value)| (bounded(name), bounded(value)))
            .collect();
        let replaces = msg.replaces().map(|r| bounded(r.call_id));
        let cseq = msg.cseq().number;
        let facts = FinishedDialog {
            call_id: bounded(msg.call_id()),
            from_tag: bounded(from_tag),
            invite_cseq: cseq,
            record_id: record_id(msg.call_id(), from_tag, cseq),
            to_tag: String::new(),
            from: Identity::from_name_addr(msg.from()),
            to: Identity::from_name_addr(msg.to()),
            request_uri,
            p_asserted: msg
                .p_asserted_identity()
                .or_else(|| msg.remote_party_id())
                .map(|na| Identity::from_name_addr(&na)),
            diversion: msg.diversion().map(|na| Identity::from_name_addr(&na)),
            invite_time: time,
            ring_time: None,
            answer_time: None,
            end_time: time,
            final_status: 0,
            cancelled: false,
            end_reason: EndReason::EndOfCapture,
            hung_up_by: None,
            transfer: None,
            replaces: replaces.clone(),
            holds: 0,
            transport,
            invite_src: src,
            invite_dst: dst,
            headers,
            user_agent: msg.user_agent().map(bounded),
            reason: None,
        };
        let pending_offer = parse_sdp(msg).map(Box::new);
        let session_expires = msg
            .session_expires()
            .map(|s| (Duration::from_secs(u64::from(s)), time));
        self.dialogs.insert(
            msg.call_id().into(),
            Box::new(Dialog {
                caller_tags: vec![bounded(from_tag).into()],
                extra_forks: Vec::new(),
                facts,
                phase: Phase::Inviting,
                initial_cseq: cseq,
                early_tags: Vec::new(),
                last_activity: time,
                cancel_time: None,
                session_expires,
                on_hold: false,
                recent: VecDeque::new(),
                last_answered_update: [cseq, 0],
                awaiting_response: true,
                transfer_reported: false,
                pending_offer,
                trace: SipTrace::default(),
            }),
        );
        self.stats.dialogs_created += 1;
        self.no_response.opened(msg.call_id(), time);
        self.end_excess_unanswered();
        // An attended transfer: the dialog this INVITE replaces was transferred.
        if let Some(old) = replaces {
            let target = msg
                .to()
                .uri_parts()
                .and_then(|u| u.user)
                .map(bounded)
                .unwrap_or_default();
            if let Some(replaced) = self.dialogs.get_mut(old.as_bytes()) {
                let t = replaced.facts.transfer.get_or_insert(Transfer {
                    kind: "attended".into(),
                    target,
                    by: None,
                    completed: false,
                });
                t.completed = true;
                if self.progress && !std::mem::replace(&mut replaced.transfer_reported, true) {
                    self.events
                        .push_back(DialogEvent::Transferred(Box::new(replaced.facts.clone())));
                }
            }
        }
    }

    fn response(&mut self, time: Timestamp, msg: &SipMessage<'_>) {
        let Some(code) = msg.status_code() else {
            return;
        };
        let call_id = msg.call_id();
        let Some(d) = self.dialogs.get_mut(call_id) else {
            if ["INVITE", "BYE", "CANCEL"]
                .iter()
                .any(|m| cseq_method_is(msg, m.as_bytes()))
            {
                self.stats.orphan_responses += 1;
            } else {
                self.stats.non_dialog_messages += 1;
            }
            return;
        };
        d.touch(time);
        if std::mem::take(&mut d.awaiting_response) {
            self.no_response.settled();
            if let Some(sdp) = d.pending_offer.take() {
                self.events.push_back(DialogEvent::Sdp {
                    id: d.facts.record_id.clone(),
                    time: d.facts.invite_time,
                    side: Party::Caller,
                    sdp,
                });
            }
            if self.progress {
                self.events
                    .push_back(DialogEvent::Started(Box::new(d.facts.clone())));
            }
        }
        let cseq = msg.cseq().number;
        if cseq_method_is(msg, b"REFER") {
            // A refused REFER (RFC 3515 2.4.2) transferred nothing; an accepted one is
            // the transfer, as far as the transferor is concerned.
            if code >= 300 && d.facts.transfer.as_ref().is_some_and(|t| !t.completed) {
                d.facts.transfer = None;
            } else if (200..300).contains(&code)
                && d.facts.transfer.is_some()
                && self.progress
                && !std::mem::replace(&mut d.transfer_reported, true)
            {
                self.events
                    .push_back(DialogEvent::Transferred(Box::new(d.facts.clone())));
            }
            return;
        }
        if !cseq_method_is(msg, b"INVITE") && !cseq_method_is(msg, b"UPDATE") {
            return;
        }
        let to_tag = msg.to_tag();
        // Which side sent the request this answers: the callee numbers its own requests
        // (RFC 3261 12.2.1.1), so its re-INVITE may carry the initial INVITE's CSeq.
        let to_caller = d.sent_by_caller(msg);
        if !to_caller || cseq != d.initial_cseq || !cseq_method_is(msg, b"INVITE") {
            // A re-INVITE's or UPDATE's answer: new media, maybe hold or resume.
            let side = usize::from(!to_caller);
            if (200..300).contains(&code) && cseq > d.last_answered_update[side] {
                d.last_answered_update[side] = cseq;
                if let Some(sdp) = parse_sdp(msg) {
                    // The answerer is the other side from the request's sender.
                    self.events.push_back(DialogEvent::Sdp {
                        id: d.facts.record_id.clone(),
                        time,
                        side: if to_caller {
                            Party::Callee
                        } else {
                            Party::Caller
                        },
                        sdp: Box::new(sdp),
                    });
                }
            }
            return;
        }
        match (d.phase, code) {
            (Phase::Inviting, 100) => {}
            (Phase::Inviting, 101..=199) => {
                if code == 180 || code == 183 {
                    d.facts.ring_time.get_or_insert(time);
                }
                if let Some(tag) = to_tag {
                    if d.early_tags.len() < MAX_EARLY_TAGS
                        && !d.early_tags.iter().any(|t| t.as_bytes() == tag)
                    {
                        d.early_tags.push(bounded(tag).into());
                    }
                }
                // Early media: the callee's answer in a 183.
                if let Some(sdp) = parse_sdp(msg) {
                    self.events.push_back(DialogEvent::Sdp {
                        id: d.facts.record_id.clone(),
                        time,
                        side: Party::Callee,
                        sdp: Box::new(sdp),
                    });
                }
            }
            (Phase::Inviting, 200..=299) => {
                d.phase = Phase::Answered;
                d.facts.answer_time = Some(time);
                d.facts.final_status = code;
                d.facts.to_tag = to_tag.map(bounded).unwrap_or_default();
                if let Some(sdp) = parse_sdp(msg) {
                    self.events.push_back(DialogEvent::Sdp {
                        id: d.facts.record_id.clone(),
                        time,
                        side: Party::Callee,
                        sdp: Box::new(sdp),
                    });
                }
                if let Some(s) = msg.session_expires() {
                    d.session_expires = Some((Duration::from_secs(u64::from(s)), time));
                }
                self.stats.answered += 1;
                self.events
                    .push_back(DialogEvent::Answered(Box::new(d.facts.clone())));
            }
            (Phase::Answered, 200..=299) => {
                if let Some(tag) = to_tag.filter(|t| *t != d.facts.to_tag.as_bytes()) {
                    self.stats.extra_forks_answered += 1;
                    if d.extra_forks.len() < MAX_EARLY_TAGS
                        && !d.extra_forks.iter().any(|(t, _)| t.as_bytes() == tag)
                    {
                        d.extra_forks.push((bounded(tag).into(), time));
                    }
                } else {
                    self.stats.retransmissions += 1;
                }
            }
            (Phase::Inviting, 300..=699) => {
                d.facts.final_status = code;
                d.facts.to_tag = to_tag.map(bounded).unwrap_or_default();
                if let Some(reason) = msg.reason_header() {
                    d.facts.reason = Some(bounded(reason));
                }
                // Challenges and redirects are usually followed by a new INVITE on the
                // same Call-ID; anything else ends the attempt now.
                if matches!(code, 300..=399 | 401 | 407 | 422 | 491) && d.cancel_time.is_none() {
                    d.phase = Phase::AwaitingRetry { since: time };
                } else {
                    self.end(call_id, time, EndReason::NotAnswered);
                }
            }
            _ => self.stats.retransmissions += 1,
        }
    }

    /// Ends what timed out by `now`.
    pub fn sweep(&mut self, now: Timestamp) {
        let limits = self.limits;
        let mut ending: Vec<(Box<[u8]>, Timestamp, EndReason)> = Vec::new();
        let mut gone: Vec<Box<[u8]>> = Vec::new();
        for (key, d) in &self.dialogs {
            match d.phase {
                Phase::Ended { at } => {
                    if now.since(at) >= LINGER {
                        gone.push(key.clone());
                    }
                }
                Phase::AwaitingRetry { since } => {
                    // A person may be typing a password: wait as long as a phone rings.
                    if now.since(since) >= limits.ring_timeout {
                        ending.push((key.clone(), since, EndReason::NotAnswered));
                    }
                }
                Phase::Inviting => {
                    if let Some(cancel) = d.cancel_time {
                        // A CANCEL whose 487 never showed.
                        if now.since(cancel) >= LINGER {
                            ending.push((key.clone(), cancel, EndReason::NotAnswered));
                        }
                    } else if now.since(d.facts.invite_time) >= limits.ring_timeout {
                        let at = d.facts.invite_time.saturating_add(limits.ring_timeout);
                        ending.push((key.clone(), at, EndReason::RingTimeout));
                    }
                }
                Phase::Answered => {
                    let answered = d.facts.answer_time.unwrap_or(d.facts.invite_time);
                    if now.since(answered) >= limits.max_call {
                        let at = answered.saturating_add(limits.max_call);
                        ending.push((key.clone(), at, EndReason::MaxDuration));
                    } else if let Some((interval, refreshed)) = d.session_expires {
                        // RFC 4028 10: the session ends at expiry unless refreshed; allow
                        // the same grace as a transaction timeout.
                        if now.since(refreshed) >= interval + LINGER {
                            ending.push((
                                key.clone(),
                                refreshed.saturating_add(interval),
                                EndReason::SessionExpired,
                            ));
                        }
                    }
                }
            }
        }
        for key in gone {
            self.emit(&key);
        }
        for (key, at, reason) in ending {
            self.end(&key, at, reason);
        }
    }

    /// End of input: every open dialog ends at its last activity.
    /// `media_seen` gives a call's last RTP time: a call still up when the capture ends
    /// lasted as long as its media, not only to its last SIP message.
    pub fn finish(
        &mut self,
        open_reason: EndReason,
        media_seen: impl Fn(&str) -> Option<Timestamp>,
    ) {
        let open: Vec<(Box<[u8]>, Timestamp)> = self
            .dialogs
            .iter()
            .filter(|(_, d)| !matches!(d.phase, Phase::Ended { .. }))
            .map(|(k, d)| {
                let media = media_seen(&d.facts.record_id).unwrap_or_default();
                (k.clone(), d.last_activity.max(media))
            })
            .collect();
        for (key, at) in open {
            let reason = match self.dialogs.get(&key).map(|d| d.phase) {
                Some(Phase::AwaitingRetry { .. }) => EndReason::NotAnswered,
                Some(Phase::Inviting)
                    if self
                        .dialogs
                        .get(&key)
                        .is_some_and(|d| d.cancel_time.is_some()) =>
                {
                    EndReason::NotAnswered
                }
                _ => open_reason,
            };
            self.end(&key, at, reason);
        }
        let mut ended: Vec<(Timestamp, Box<[u8]>)> = self
            .dialogs
            .iter()
            .map(|(k, d)| (d.facts.end_time, k.clone()))
            .collect();
        ended.sort_unstable();
        for (_, key) in ended {
            self.emit(&key);
        }
    }

    /// Ends an answered call whose media stopped (RTP silent past the media timeout
    /// while its dialog never saw a BYE).
    pub fn end_media_timeout(&mut self, record_id: &str, last_heard: Timestamp) {
        let found = self
            .dialogs
            .iter()
            .find(|(_, d)| d.facts.record_id == record_id && d.phase == Phase::Answered)
            .map(|(k, d)| (k.clone(), d.last_activity));
        // The call ended when it was last heard, by RTP or by SIP: never at the sweep's
        // time, which may be far later (a capture-clock jump, a quiet line's tick).
        if let Some((key, last_sip)) = found {
            self.end(&key, last_heard.max(last_sip), EndReason::MediaTimeout);
        }
    }

    /// Ends the dialog; it lingers for [`LINGER`] before it is reported, so copies are
    /// absorbed and what arrives just after the BYE still counts (the NOTIFY that says
    /// a blind transfer succeeded often follows the transferor's BYE).
    fn end(&mut self, call_id: &[u8], at: Timestamp, reason: EndReason) {
        let Some(d) = self.dialogs.get_mut(call_id) else {
            return;
        };
        if matches!(d.phase, Phase::Ended { .. }) {
            return;
        }
        let mut reason = reason;
        if std::mem::take(&mut d.awaiting_response) {
            // Nobody ever answered it: a record only within the flood budgets, missed
            // for want of any response however it ended.
            reason = EndReason::NoResponse;
            self.no_response.settled();
            let (source, invited) = (d.facts.invite_src.ip(), d.facts.invite_time);
            if !self.no_response.admit(source, invited) {
                self.dialogs.remove(call_id);
                self.stats.dialogs_ended += 1;
                return;
            }
        }
        let Some(d) = self.dialogs.get_mut(call_id) else {
            return;
        };
        d.phase = Phase::Ended { at };
        let facts = &mut d.facts;
        facts.end_time = at.max(facts.invite_time);
        facts.end_reason = reason;
        if facts.answer_time.is_some() {
            self.events
                .push_back(DialogEvent::HungUp(Box::new(facts.clone())));
        }
        if facts.to_tag.is_empty() {
            if let Some(tag) = d.early_tags.last() {
                facts.to_tag = tag.to_string();
            }
        }
        if self.progress && facts.answer_time.is_none() {
            self.events
                .push_back(DialogEvent::NotAnswered(Box::new(facts.clone())));
        }
        self.stats.dialogs_ended += 1;
    }

    /// Reports an ended dialog and forgets it.
    fn emit(&mut self, call_id: &[u8]) {
        if let Some(d) = self.dialogs.remove(call_id) {
            if d.awaiting_response {
                self.no_response.settled();
            }
            if matches!(d.phase, Phase::Ended { .. }) {
                let Dialog { facts, trace, .. } = *d;
                if !trace.is_empty() {
                    self.events.push_back(DialogEvent::Messages {
                        id: facts.record_id.clone(),
                        trace: Box::new(trace),
                    });
                }
                self.events.push_back(DialogEvent::Ended(Box::new(facts)));
            }
        }
    }

    /// The table is full: a share of it goes, the least useful first (dialogs already
    /// over and lingering, then INVITEs nobody answered, then unanswered attempts, and
    /// answered calls only when nothing else is left), the stalest first within each.
    fn evict(&mut self) {
        let rank = |d: &Dialog| match d.phase {
            Phase::Ended { .. } => 0u8,
            _ if d.awaiting_response => 1,
            Phase::Inviting | Phase::AwaitingRetry { .. } => 2,
            Phase::Answered => 3,
        };
        let mut by_use: Vec<(u8, Timestamp, Box<[u8]>)> = self
            .dialogs
            .iter()
            .map(|(k, d)| (rank(d), d.last_activity, k.clone()))
            .collect();
        let count = (self.dialogs.len() / EVICT_FRACTION).max(1);
        if count < by_use.len() {
            by_use.select_nth_unstable(count);
            by_use.truncate(count);
        }
        by_use.sort_unstable();
        for (rank, at, key) in by_use {
            if rank > 0 {
                self.stats.evicted += 1;
                self.end(&key, at, EndReason::Evicted);
            }
            self.emit(&key);
        }
    }

    /// Too many dialogs wait for a first response (a flood): the oldest ends now.
    fn end_excess_unanswered(&mut self) {
        let dialogs = &self.dialogs;
        let still_pending = |call_id: &[u8], invited: Timestamp| {
            dialogs.get(call_id).is_some_and(|d| {
                d.awaiting_response
                    && d.facts.invite_time == invited
                    && !matches!(d.phase, Phase::Ended { .. })
            })
        };
        if let Some(call_id) = self.no_response.over_limit(still_pending) {
            let at = self
                .dialogs
                .get(&call_id)
                .map_or(Timestamp::default(), |d| d.last_activity);
            self.end(&call_id, at, EndReason::Evicted);
            self.emit(&call_id);
        }
    }
}

/// In-dialog requests remembered for copy detection: more than a dialog has in flight.
const RECENT_REQUESTS: usize = 8;

impl Dialog {
    /// Whether `msg` (a request, or the response to one: its From is the request's) is
    /// the caller's side of the dialog. One rule for requests and responses: the From
    /// tag is any the INVITE arrived with (a hop that rewrites the tag shows the caller
    /// under both); without a From tag (an RFC 2543 caller), the From URI is the
    /// INVITE's.
    fn sent_by_caller(&self, msg: &SipMessage<'_>) -> bool {
        match msg.from_tag() {
            Some(tag) => self.caller_tags.iter().any(|c| c.as_bytes() == tag),
            None => {
                self.caller_tags.iter().any(|c| c.is_empty())
                    && bounded(msg.from().uri) == self.facts.from.uri
            }
        }
    }

    /// Whether this request was seen already; remembers it if not.
    fn seen(&mut self, from_caller: bool, cseq: u32, method: &[u8]) -> bool {
        if self
            .recent
            .iter()
            .any(|(side, n, m)| *side == from_caller && *n == cseq && &**m == method)
        {
            return true;
        }
        if self.recent.len() == RECENT_REQUESTS {
            self.recent.pop_front();
        }
        self.recent.push_back((from_caller, cseq, method.into()));
        false
    }

    fn touch(&mut self, time: Timestamp) {
        self.last_activity = self.last_activity.max(time);
    }

    fn set_hold(&mut self, hold: bool) {
        if hold && !self.on_hold {
            self.facts.holds += 1;
        }
        self.on_hold = hold;
    }
}

/// A call record's stable id, from what identifies its dialog: the Call-ID, the
/// caller's tag (the callee's is unknown until an answer, and forks have several) and
/// the opening INVITE's CSeq (a retry long after a challenge is a new attempt on the
/// same Call-ID). 96 bits of SHA-256, hex: URL-safe, no `/`, collision-free at any
/// realistic volume, and the same every time the same traffic is replayed.
pub fn record_id(call_id: &[u8], from_tag: &[u8], invite_cseq: u32) -> String {
    use sha2::{Digest, Sha256};
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut h = Sha256::new();
    h.update(&call_id[..call_id.len().min(MAX_FIELD)]);
    h.update([0]);
    h.update(&from_tag[..from_tag.len().min(MAX_FIELD)]);
    h.update([0]);
    h.update(invite_cseq.to_be_bytes());
    let digest = h.finalize();
    let mut id = String::with_capacity(26);
    id.push_str("c-");
    for b in &digest[..12] {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 15)]));
    }
    id
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALL_ID: &str = "rewritten-tags@203.0.113.50";

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_nanos(1_768_471_200_000_000_000 + ms * 1_000_000)
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    fn sdp(ip: &str, port: u16) -> String {
        format!("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n")
    }

    fn message(start: &str, from: &str, to: &str, cseq: &str, body: &str) -> String {
        let ctype = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "{start}\r\nVia: SIP/2.0/UDP 10.0.0.5;branch=z9hG4bK{}\r\nFrom: {from}\r\nTo: {to}\r\n\
             Call-ID: {CALL_ID}\r\nCSeq: {cseq}\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
            start.len(),
            body.len()
        )
    }

    fn feed(table: &mut DialogTable, ms: u64, src: &str, dst: &str, text: &str) {
        let (msg, _) = crate::sip::parse(text.as_bytes()).expect("valid SIP");
        table.message(at(ms), &msg, addr(src), addr(dst), Transport::Udp);
    }

    fn events(table: &mut DialogTable) -> Vec<DialogEvent> {
        std::iter::from_fn(|| table.poll()).collect()
    }

    /// A proxy that rewrites the From tag (tag A before it, B after it) on one Call-ID:
    /// the phone's 200 OK, seen under tag B, is the answer to the caller's INVITE, and
    /// its SDP is the callee's.
    #[test]
    fn a_response_under_a_rewritten_from_tag_answers_the_caller() {
        let mut t = DialogTable::new(DialogLimits::default());
        let (client, proxy, phone) = ("203.0.113.50:5060", "10.0.0.5:5060", "10.0.0.21:5060");
        let offer = sdp("203.0.113.50", 31000);
        let inv = |tag: &str| {
            message(
                "INVITE sip:201@10.0.0.21 SIP/2.0",
                &format!("<sip:+15551230199@203.0.113.50>;tag={tag}"),
                "<sip:201@10.0.0.5>",
                "1 INVITE",
                &offer,
            )
        };
        feed(&mut t, 0, client, proxy, &inv("A"));
        feed(&mut t, 2, proxy, phone, &inv("B"));
        let answer = sdp("10.0.0.21", 16002);
        let ok = message(
            "SIP/2.0 200 OK",
            "<sip:+15551230199@203.0.113.50>;tag=B",
            "<sip:201@10.0.0.5>;tag=P",
            "1 INVITE",
            &answer,
        );
        feed(&mut t, 4_000, phone, proxy, &ok);
        let sides: Vec<(Party, u16)> = events(&mut t)
            .into_iter()
            .filter_map(|e| match e {
                DialogEvent::Sdp { side, sdp, .. } => {
                    Some((side, sdp.audio_rtp_addr().map_or(0, |a| a.port())))
                }
                _ => None,
            })
            .collect();
        assert_eq!(sides, [(Party::Caller, 31000), (Party::Callee, 16002)]);
    }

    /// An RFC 2543 caller sends no From tag: its BYE (no tag, its own From URI) is the
    /// caller's, not the callee's.
    #[test]
    fn a_bye_without_a_from_tag_from_the_caller_is_the_callers() {
        let mut t = DialogTable::new(DialogLimits::default());
        let (client, phone) = ("203.0.113.50:5060", "10.0.0.21:5060");
        let from = "<sip:+15551230199@203.0.113.50>";
        let to = "<sip:201@10.0.0.21>";
        let inv = message("INVITE sip:201@10.0.0.21 SIP/2.0", from, to, "1 INVITE", "");
        feed(&mut t, 0, client, phone, &inv);
        let to_tagged = "<sip:201@10.0.0.21>;tag=P";
        let ok = message("SIP/2.0 200 OK", from, to_tagged, "1 INVITE", "");
        feed(&mut t, 3_000, phone, client, &ok);
        let bye = message(
            "BYE sip:201@10.0.0.21 SIP/2.0",
            from,
            to_tagged,
            "2 BYE",
            "",
        );
        feed(&mut t, 9_000, client, phone, &bye);
        let hung_up = events(&mut t).into_iter().find_map(|e| match e {
            DialogEvent::HungUp(d) => Some(d.hung_up_by),
            _ => None,
        });
        assert_eq!(hung_up, Some(Some(Party::Caller)));
    }
}
