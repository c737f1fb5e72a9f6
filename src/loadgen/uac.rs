//! The caller agent: places calls to the callee agent (or any UAS that speaks the same
//! scenario names), one [`Dialog`] per call, and hangs up or cancels on schedule.
//!
//! No retransmissions (loopback does not lose datagrams unless a buffer overflows);
//! instead every state waits a bounded time for the message that moves it on, so a
//! lost response ends the call as timed out and never hangs the run.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::call::{Outcome, Party as RecordParty};
use crate::pcapgen::g711::{Codec, PayloadGen};
use crate::pcapgen::rng::Rng;
use crate::pcapgen::scenario::{Dialog, Tx, Ua};
use crate::pcapgen::Party;
use crate::sip::{self, SipMessage};

use super::media::{MediaHandle, StreamId, StreamSpec};
use super::transport::{bind_sip, sdp_rtp_addr, stamp, to_tx, wait_readable, PortPool, USER_AGENT};
use super::{Scenario, CALLER_SIGNAL};

/// How long the caller waits at each step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// For any response to the INVITE (RFC 3261's Timer B is 32 s for a lossy network;
    /// on loopback a silent callee is gone).
    pub invite: Duration,
    /// Ringing without an answer, then CANCEL (`ring-forever`).
    pub max_ring: Duration,
    /// For the 487 after a CANCEL.
    pub cancel: Duration,
    /// For the 200 to a BYE.
    pub bye: Duration,
    /// Past the talk time, for the callee's BYE before the caller sends its own.
    pub callee_bye: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            invite: Duration::from_secs(4),
            max_ring: Duration::from_secs(60),
            cancel: Duration::from_secs(4),
            bye: Duration::from_secs(4),
            callee_bye: Duration::from_secs(5),
        }
    }
}

#[derive(Clone, Debug)]
pub struct UacConfig {
    pub local: SocketAddr,
    /// The callee agent's SIP address.
    pub remote: SocketAddr,
    pub rtp_ports: (u16, u16),
    pub scenarios: Vec<Scenario>,
    pub count: usize,
    pub concurrency: usize,
    pub ramp: Duration,
    pub timeouts: Timeouts,
    pub seed: u64,
}

/// One call as the caller saw it.
#[derive(Clone, Debug, Serialize)]
pub struct CallResult {
    pub index: usize,
    pub call_id: String,
    pub scenario: String,
    #[serde(skip)]
    pub planned: Option<Scenario>,
    pub outcome: Outcome,
    /// Final response to the INVITE (0: none).
    pub final_status: u16,
    pub hung_up_by: Option<RecordParty>,
    /// INVITE to the final response.
    pub ring_ms: Option<u64>,
    /// Answer to the BYE.
    pub talk_ms: Option<u64>,
    /// A response or request the call waited for never came.
    pub timed_out: bool,
    /// Where the caller sent its RTP and where it received it (`ip:port`).
    pub caller_rtp: Option<String>,
    pub callee_rtp: Option<String>,
}

impl CallResult {
    /// Ended as its scenario says, with nothing lost on the way.
    pub fn as_expected(&self) -> bool {
        let Some(s) = self.planned else { return false };
        let hangup = match s {
            Scenario::CallerHangsUp { .. } => Some(RecordParty::Caller),
            Scenario::CalleeHangsUp { .. } => Some(RecordParty::Callee),
            _ => None,
        };
        !self.timed_out && self.outcome == s.expected_outcome() && self.hung_up_by == hangup
    }
}

/// Counters of the caller's SIP side.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UacCounters {
    pub invites: u64,
    pub acks: u64,
    pub cancels: u64,
    pub byes_sent: u64,
    pub byes_received: u64,
    pub messages_received: u64,
    /// Not SIP, or SIP without what a reply needs.
    pub malformed: u64,
    /// Responses and requests for no call in progress (late, or a stranger's).
    pub unknown_dialog: u64,
    pub send_errors: u64,
    pub rtp_port_errors: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct UacReport {
    pub counters: UacCounters,
    pub calls: Vec<CallResult>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// INVITE sent, nothing heard.
    Calling,
    /// A provisional response came.
    Ringing,
    Cancelling,
    Talking,
    /// BYE sent.
    Leaving,
}

struct Call {
    dialog: Dialog,
    invite: Tx,
    scenario: Scenario,
    state: State,
    placed: Instant,
    answered: Option<Instant>,
    rtp: Option<UdpSocket>,
    stream: Option<StreamId>,
    ssrc: u32,
    generation: u32,
    result: CallResult,
}

pub struct Uac {
    cfg: UacConfig,
    socket: UdpSocket,
    ports: PortPool,
    payload: Arc<PayloadGen>,
    calls: HashMap<u64, Call>,
    by_call_id: HashMap<String, u64>,
    timers: BinaryHeap<Reverse<(Instant, u64, u32)>>,
    placed: usize,
    report: UacReport,
}

impl Uac {
    pub fn bind(cfg: UacConfig) -> io::Result<Uac> {
        let socket = bind_sip(cfg.local)?;
        let ports = PortPool::new(cfg.local.ip(), cfg.rtp_ports.0, cfg.rtp_ports.1);
        Ok(Uac {
            socket,
            ports,
            payload: Arc::new(PayloadGen::new(Codec::Pcmu, CALLER_SIGNAL)),
            calls: HashMap::new(),
            by_call_id: HashMap::new(),
            timers: BinaryHeap::new(),
            placed: 0,
            report: UacReport::default(),
            cfg,
        })
    }

    /// Places every call of the plan and returns once all have ended.
    pub fn run(mut self, media: &MediaHandle) -> UacReport {
        let t0 = Instant::now();
        let mut buf = vec![0u8; 65_536];
        while self.placed < self.cfg.count || !self.calls.is_empty() {
            let now = Instant::now();
            // Place what the ramp and the concurrency allow.
            while self.placed < self.cfg.count
                && self.calls.len() < self.cfg.concurrency
                && now >= t0 + self.start_offset(self.placed)
            {
                self.place();
            }
            self.fire_timers(media);
            let mut wake = now + Duration::from_millis(50);
            if let Some(Reverse((t, _, _))) = self.timers.peek() {
                wake = wake.min(*t);
            }
            if self.placed < self.cfg.count && self.calls.len() < self.cfg.concurrency {
                wake = wake.min(t0 + self.start_offset(self.placed));
            }
            let wait = wake
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            if wait_readable(&self.socket, wait) {
                while let Ok((n, src)) = self.socket.recv_from(&mut buf) {
                    self.received(&buf[..n], src, media);
                }
            }
        }
        self.report.calls.sort_by_key(|c| c.index);
        self.report
    }

    fn start_offset(&self, i: usize) -> Duration {
        let n = self.cfg.count.max(1) as u32;
        self.cfg.ramp * (i as u32) / n
    }

    fn arm(&mut self, key: u64, at: Instant) {
        if let Some(call) = self.calls.get_mut(&key) {
            call.generation += 1;
            self.timers.push(Reverse((at, key, call.generation)));
        }
    }

    fn send(&mut self, bytes: &[u8], dst: SocketAddr) {
        if self.socket.send_to(bytes, dst).is_err() {
            self.report.counters.send_errors += 1;
        }
    }

    /// Sends what the call's dialog built since the last send.
    fn flush(&mut self, key: u64) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let msgs = call.dialog.take_messages();
        for m in msgs {
            self.send(&m.bytes, self.cfg.remote);
        }
    }

    fn place(&mut self) {
        let i = self.placed;
        self.placed += 1;
        let scenario = self.cfg.scenarios[i % self.cfg.scenarios.len()];
        let key = i as u64;
        let (rtp, rtp_port) = match self.ports.bind() {
            Ok(p) => p,
            Err(_) => {
                self.report.counters.rtp_port_errors += 1;
                self.report.calls.push(CallResult {
                    index: i,
                    call_id: String::new(),
                    scenario: scenario.to_string(),
                    planned: Some(scenario),
                    outcome: Outcome::Failed,
                    final_status: 0,
                    hung_up_by: None,
                    ring_ms: None,
                    talk_ms: None,
                    timed_out: false,
                    caller_rtp: None,
                    callee_rtp: None,
                });
                return;
            }
        };
        let local = self.cfg.local;
        let caller = Ua::new(&format!("{}", 100_000 + i), local.ip())
            .port(local.port())
            .rtp_port(rtp_port)
            .display(&format!("Loadgen {i}"))
            .codecs(&[Codec::Pcmu])
            .user_agent(USER_AGENT);
        let callee = Ua::new(&scenario.to_string(), self.cfg.remote.ip())
            .port(self.cfg.remote.port())
            .codecs(&[Codec::Pcmu])
            .user_agent(USER_AGENT);
        let seed = Rng::derive(self.cfg.seed, key).next_u64();
        let mut dialog = Dialog::new(seed, caller, callee);
        let invite = dialog.invite(stamp());
        let call_id = dialog.call_id.clone();
        let now = Instant::now();
        let call = Call {
            dialog,
            invite,
            scenario,
            state: State::Calling,
            placed: now,
            answered: None,
            rtp: Some(rtp),
            stream: None,
            ssrc: (seed >> 16) as u32,
            generation: 0,
            result: CallResult {
                index: i,
                call_id: call_id.clone(),
                scenario: scenario.to_string(),
                planned: Some(scenario),
                outcome: Outcome::Failed,
                final_status: 0,
                hung_up_by: None,
                ring_ms: None,
                talk_ms: None,
                timed_out: false,
                caller_rtp: Some(SocketAddr::new(local.ip(), rtp_port).to_string()),
                callee_rtp: None,
            },
        };
        self.calls.insert(key, call);
        self.by_call_id.insert(call_id, key);
        self.report.counters.invites += 1;
        self.flush(key);
        let first = match scenario {
            Scenario::Cancel { after } => after.min(self.cfg.timeouts.invite),
            _ => self.cfg.timeouts.invite,
        };
        self.arm(key, now + first);
    }

    fn fire_timers(&mut self, media: &MediaHandle) {
        let now = Instant::now();
        while let Some(&Reverse((at, key, generation))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(call) = self.calls.get(&key) else {
                continue;
            };
            if call.generation != generation {
                continue;
            }
            self.timer(key, media);
        }
    }

    /// The call's one timer fired: what it means depends on the state.
    fn timer(&mut self, key: u64, media: &MediaHandle) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let now = Instant::now();
        let cancel_at = match call.scenario {
            Scenario::Cancel { after } => Some(call.placed + after),
            _ => None,
        };
        match call.state {
            State::Calling | State::Ringing => {
                let due_cancel = cancel_at.is_some_and(|t| now >= t);
                let ring_limit =
                    call.state == State::Ringing && now >= call.placed + self.cfg.timeouts.max_ring;
                if due_cancel || ring_limit {
                    call.dialog.cancel(stamp(), &call.invite);
                    call.state = State::Cancelling;
                    self.report.counters.cancels += 1;
                    self.flush(key);
                    self.arm(key, now + self.cfg.timeouts.cancel);
                } else if call.state == State::Calling
                    && now >= call.placed + self.cfg.timeouts.invite
                {
                    call.result.timed_out = true;
                    self.end(key, media);
                } else {
                    // A cancel time still ahead (the callee answers on its own schedule).
                    let next = cancel_at.unwrap_or(call.placed + self.cfg.timeouts.max_ring);
                    let limit = if call.state == State::Calling {
                        call.placed + self.cfg.timeouts.invite
                    } else {
                        call.placed + self.cfg.timeouts.max_ring
                    };
                    self.arm(key, next.min(limit).max(now + Duration::from_millis(1)));
                }
            }
            State::Cancelling => {
                // No 487: the call is over all the same.
                call.result.outcome = Outcome::Cancelled;
                call.result.timed_out = true;
                self.end(key, media);
            }
            State::Talking => {
                if matches!(call.scenario, Scenario::CalleeHangsUp { .. }) {
                    // The callee's BYE never came.
                    call.result.timed_out = true;
                }
                self.hang_up(key, media);
            }
            State::Leaving => {
                call.result.timed_out = true;
                self.end(key, media);
            }
        }
    }

    fn hang_up(&mut self, key: u64, media: &MediaHandle) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        if let Some(id) = call.stream.take() {
            media.stop(id);
        }
        call.dialog.bye(stamp(), Party::Caller);
        call.state = State::Leaving;
        call.result.hung_up_by = Some(RecordParty::Caller);
        if let Some(a) = call.answered {
            call.result.talk_ms = Some(a.elapsed().as_millis() as u64);
        }
        self.report.counters.byes_sent += 1;
        self.flush(key);
        self.arm(key, Instant::now() + self.cfg.timeouts.bye);
    }

    fn end(&mut self, key: u64, media: &MediaHandle) {
        let Some(mut call) = self.calls.remove(&key) else {
            return;
        };
        if let Some(id) = call.stream.take() {
            media.stop(id);
        }
        self.by_call_id.remove(&call.result.call_id);
        self.report.calls.push(call.result);
    }

    fn received(&mut self, bytes: &[u8], src: SocketAddr, media: &MediaHandle) {
        self.report.counters.messages_received += 1;
        let Ok((msg, _)) = sip::parse(bytes) else {
            self.report.counters.malformed += 1;
            return;
        };
        let key = std::str::from_utf8(msg.call_id())
            .ok()
            .and_then(|id| self.by_call_id.get(id))
            .copied();
        let Some(key) = key else {
            self.report.counters.unknown_dialog += 1;
            if msg.is_request() && msg.method_bytes() != Some(b"ACK") {
                self.stateless_reply(&msg, src, 481);
            }
            return;
        };
        if msg.is_response() {
            self.response(key, &msg, media);
        } else {
            self.request(key, &msg, src, media);
        }
    }

    fn response(&mut self, key: u64, msg: &SipMessage<'_>, media: &MediaHandle) {
        let Some(code) = msg.status_code() else {
            self.report.counters.malformed += 1;
            return;
        };
        let cseq = msg.cseq();
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let now = Instant::now();
        match cseq.method {
            b"INVITE" if cseq.number == call.invite.cseq => {}
            b"BYE" => {
                if call.state == State::Leaving && code >= 200 {
                    self.end(key, media);
                }
                return;
            }
            // 200 to CANCEL: the 487 follows.
            _ => return,
        }
        match code {
            100..=199 => {
                if call.state == State::Calling {
                    call.state = State::Ringing;
                    let next = match call.scenario {
                        Scenario::Cancel { after } => call.placed + after,
                        _ => call.placed + self.cfg.timeouts.max_ring,
                    };
                    self.arm(key, next.max(now));
                }
            }
            200..=299 => {
                if !matches!(
                    call.state,
                    State::Calling | State::Ringing | State::Cancelling
                ) {
                    return; // a 200 again: the ACK went already
                }
                if let Some(tag) = msg.to_tag() {
                    call.dialog.to_tag = sip::lossy(tag).into_owned();
                }
                call.dialog.ack(stamp(), &call.invite);
                call.result.final_status = code;
                call.result.outcome = Outcome::Answered;
                call.result.ring_ms = Some(now.duration_since(call.placed).as_millis() as u64);
                call.answered = Some(now);
                self.report.counters.acks += 1;
                let cancelling = call.state == State::Cancelling;
                call.state = State::Talking;
                // Media to where the answer's SDP says.
                if let (Some(peer), Some(socket)) = (sdp_rtp_addr(msg), call.rtp.take()) {
                    call.result.callee_rtp = Some(peer.to_string());
                    let seed = u64::from(call.ssrc);
                    let mut r = Rng::new(seed);
                    let spec = StreamSpec {
                        socket,
                        peer,
                        payload: self.payload.clone(),
                        pt: Codec::Pcmu.payload_type(),
                        ssrc: call.ssrc,
                        seq0: r.next_u16(),
                        ts0: r.next_u32(),
                        start: now,
                    };
                    call.stream = media.start(spec).ok();
                }
                let talk = call.scenario.talk();
                let scenario = call.scenario;
                self.flush(key);
                if cancelling {
                    // The answer crossed the CANCEL: a call all the same, ended at once.
                    self.hang_up(key, media);
                    return;
                }
                let at = match (scenario, talk) {
                    (Scenario::CallerHangsUp { .. }, Some(t)) => now + t,
                    (Scenario::CalleeHangsUp { .. }, Some(t)) => {
                        now + t + self.cfg.timeouts.callee_bye
                    }
                    // Answered where it should not have been: hang up at once.
                    _ => now,
                };
                self.arm(key, at);
            }
            _ => {
                // A final failure: ACK it (same branch, the response's To-tag).
                if let Some(tag) = msg.to_tag() {
                    call.dialog.to_tag = sip::lossy(tag).into_owned();
                }
                call.dialog.ack_failure(stamp(), &call.invite);
                call.result.final_status = code;
                call.result.ring_ms = Some(now.duration_since(call.placed).as_millis() as u64);
                call.result.outcome = match code {
                    487 => Outcome::Cancelled,
                    486 | 600 => Outcome::Busy,
                    403 | 603 | 607 | 608 => Outcome::Rejected,
                    408 | 480 => Outcome::Missed,
                    _ => Outcome::Failed,
                };
                self.report.counters.acks += 1;
                self.flush(key);
                self.end(key, media);
            }
        }
    }

    fn request(&mut self, key: u64, msg: &SipMessage<'_>, src: SocketAddr, media: &MediaHandle) {
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        let method = msg.method_bytes().unwrap_or_default();
        match method {
            b"BYE" if matches!(call.state, State::Talking | State::Leaving) => {
                let tx = to_tx(msg, Party::Callee);
                call.dialog.reply(stamp(), &tx, 200);
                let msgs = call.dialog.take_messages();
                self.report.counters.byes_received += 1;
                if call.state == State::Talking {
                    call.result.hung_up_by = Some(RecordParty::Callee);
                    if let Some(a) = call.answered {
                        call.result.talk_ms = Some(a.elapsed().as_millis() as u64);
                    }
                }
                for m in msgs {
                    self.send(&m.bytes, src);
                }
                self.end(key, media);
            }
            b"ACK" => {}
            _ => self.stateless_reply(msg, src, 481),
        }
    }

    /// A reply outside any call (481 to a stranger's request), from a throwaway dialog.
    fn stateless_reply(&mut self, msg: &SipMessage<'_>, src: SocketAddr, code: u16) {
        let Some(bytes) = super::uas::stateless_reply_bytes(msg, src, self.cfg.local, code) else {
            self.report.counters.malformed += 1;
            return;
        };
        self.send(&bytes, src);
    }
}
