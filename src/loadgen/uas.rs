//! The callee agent: answers each INVITE as the user part of its Request-URI says
//! ([`Scenario`]), with real responses built by the capture generator's dialog builder,
//! RTP back to the caller's SDP address, and its own BYE when the scenario hangs up on
//! the callee's side.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::pcapgen::g711::{Codec, PayloadGen};
use crate::pcapgen::rng::Rng;
use crate::pcapgen::scenario::{Dialog, Reply, Tx, Ua};
use crate::pcapgen::Party;
use crate::sip::{self, SipMessage};

use super::media::{MediaHandle, StreamId, StreamSpec};
use super::transport::{
    bind_sip, peer_ua, sdp_rtp_addr, stamp, to_tx, wait_readable, PortPool, USER_AGENT,
};
use super::{Scenario, CALLEE_SIGNAL};

/// INVITE to 180 Ringing (a phone's alerting delay).
const RINGING_DELAY: Duration = Duration::from_millis(40);

#[derive(Clone, Debug)]
pub struct UasConfig {
    pub local: SocketAddr,
    pub rtp_ports: (u16, u16),
    /// INVITE to 200 OK for the answered scenarios.
    pub ring: Duration,
    /// Rings this long at most (`ring-forever`), then 480.
    pub max_ring: Duration,
    /// Past the talk time, for the caller's BYE; then the call is dropped.
    pub caller_bye: Duration,
    /// For the ACK of a failure, and the 200 to our BYE.
    pub linger: Duration,
    pub seed: u64,
}

impl Default for UasConfig {
    fn default() -> Self {
        UasConfig {
            local: SocketAddr::from(([127, 0, 0, 3], 5060)),
            rtp_ports: super::CALLEE_RTP_PORTS,
            ring: Duration::from_millis(500),
            max_ring: Duration::from_secs(180),
            caller_bye: Duration::from_secs(5),
            linger: Duration::from_secs(4),
            seed: 0,
        }
    }
}

/// Counters of the callee's SIP side.
#[derive(Clone, Debug, Default, Serialize)]
pub struct UasCounters {
    pub invites: u64,
    pub answered: u64,
    pub busy: u64,
    pub declined: u64,
    pub cancelled: u64,
    pub no_answer: u64,
    pub byes_sent: u64,
    pub byes_received: u64,
    /// The caller's BYE did not come within the grace after the talk time.
    pub caller_bye_missing: u64,
    /// Our BYE, or a failure's ACK, got no answer.
    pub timeouts: u64,
    /// INVITEs for a user that names no scenario (answered 404).
    pub unknown_scenario: u64,
    pub messages_received: u64,
    pub malformed: u64,
    pub unknown_dialog: u64,
    pub retransmissions: u64,
    pub send_errors: u64,
    pub rtp_port_errors: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct UasReport {
    pub counters: UasCounters,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// 100 sent; 180 is next.
    Trying,
    Ringing,
    Answered,
    /// Our BYE is out.
    Leaving,
    /// A failure was sent; the ACK is awaited.
    Failed,
}

struct Call {
    dialog: Dialog,
    invite: Tx,
    /// Where the caller's messages come from: responses go back there.
    src: SocketAddr,
    scenario: Scenario,
    state: State,
    invited: Instant,
    caller_rtp: Option<SocketAddr>,
    stream: Option<StreamId>,
    generation: u32,
}

pub struct Uas {
    cfg: UasConfig,
    socket: UdpSocket,
    ports: PortPool,
    payload: Arc<PayloadGen>,
    calls: HashMap<String, Call>,
    timers: BinaryHeap<Reverse<(Instant, String, u32)>>,
    report: UasReport,
}

impl Uas {
    pub fn bind(cfg: UasConfig) -> io::Result<Uas> {
        let socket = bind_sip(cfg.local)?;
        let ports = PortPool::new(cfg.local.ip(), cfg.rtp_ports.0, cfg.rtp_ports.1);
        Ok(Uas {
            socket,
            ports,
            payload: Arc::new(PayloadGen::new(Codec::Pcmu, CALLEE_SIGNAL)),
            calls: HashMap::new(),
            timers: BinaryHeap::new(),
            report: UasReport::default(),
            cfg,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Serves calls until `stop` is set and its calls have ended (at most `linger`
    /// after `stop`, so a caller that vanished cannot keep it).
    pub fn run(mut self, media: &MediaHandle, stop: &AtomicBool) -> UasReport {
        let mut buf = vec![0u8; 65_536];
        let mut stop_at: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if stop_at.is_none() && stop.load(Ordering::Relaxed) {
                stop_at = Some(now + self.cfg.linger);
            }
            if let Some(t) = stop_at {
                if self.calls.is_empty() || now >= t {
                    break;
                }
            }
            self.fire_timers(media);
            let mut wake = now + Duration::from_millis(50);
            if let Some(Reverse((t, _, _))) = self.timers.peek() {
                wake = wake.min(*t);
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
        for (_, mut call) in self.calls.drain() {
            if let Some(id) = call.stream.take() {
                media.stop(id);
            }
        }
        self.report
    }

    fn arm(&mut self, id: &str, at: Instant) {
        if let Some(call) = self.calls.get_mut(id) {
            call.generation += 1;
            self.timers
                .push(Reverse((at, id.to_string(), call.generation)));
        }
    }

    fn send(&mut self, bytes: &[u8], dst: SocketAddr) {
        if self.socket.send_to(bytes, dst).is_err() {
            self.report.counters.send_errors += 1;
        }
    }

    /// Sends what the call's dialog built: responses to where the request came from
    /// (RFC 3581 rport), requests to the caller's Contact.
    fn flush(&mut self, id: &str) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let src = call.src;
        let msgs = call.dialog.take_messages();
        for m in msgs {
            let dst = if m.bytes.starts_with(b"SIP/2.0 ") {
                src
            } else {
                m.dst
            };
            self.send(&m.bytes, dst);
        }
    }

    fn reply(&mut self, id: &str, reply: Reply) {
        if let Some(call) = self.calls.get_mut(id) {
            let invite = call.invite.clone();
            call.dialog.reply(stamp(), &invite, reply);
        }
        self.flush(id);
    }

    fn end(&mut self, id: &str, media: &MediaHandle) {
        if let Some(mut call) = self.calls.remove(id) {
            if let Some(s) = call.stream.take() {
                media.stop(s);
            }
        }
    }

    fn fire_timers(&mut self, media: &MediaHandle) {
        let now = Instant::now();
        while let Some(Reverse((at, _, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, id, generation))) = self.timers.pop() else {
                break;
            };
            if self
                .calls
                .get(&id)
                .is_some_and(|c| c.generation == generation)
            {
                self.timer(&id, media);
            }
        }
    }

    fn timer(&mut self, id: &str, media: &MediaHandle) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let now = Instant::now();
        let (state, scenario, invited) = (call.state, call.scenario, call.invited);
        match state {
            State::Trying => {
                call.state = State::Ringing;
                self.reply(id, Reply::new(180));
                let at = match scenario {
                    Scenario::CallerHangsUp { .. } | Scenario::CalleeHangsUp { .. } => {
                        invited + self.cfg.ring
                    }
                    Scenario::NoAnswer { after } => invited + after,
                    _ => invited + self.cfg.max_ring,
                };
                self.arm(id, at.max(now));
            }
            State::Ringing => match scenario.talk() {
                Some(talk) => self.answer(id, talk, media),
                None => {
                    self.report.counters.no_answer += 1;
                    self.fail(id, 480);
                }
            },
            State::Answered => {
                if let Some(s) = call.stream.take() {
                    media.stop(s);
                }
                if matches!(scenario, Scenario::CalleeHangsUp { .. }) {
                    call.dialog.bye(stamp(), Party::Callee);
                    call.state = State::Leaving;
                    self.report.counters.byes_sent += 1;
                    self.flush(id);
                    self.arm(id, now + self.cfg.linger);
                } else {
                    self.report.counters.caller_bye_missing += 1;
                    self.end(id, media);
                }
            }
            State::Leaving | State::Failed => {
                self.report.counters.timeouts += 1;
                self.end(id, media);
            }
        }
    }

    fn fail(&mut self, id: &str, code: u16) {
        if let Some(call) = self.calls.get_mut(id) {
            call.state = State::Failed;
        }
        self.reply(id, Reply::new(code));
        self.arm(id, Instant::now() + self.cfg.linger);
    }

    fn answer(&mut self, id: &str, talk: Duration, media: &MediaHandle) {
        let now = Instant::now();
        let (socket, port) = match self.ports.bind() {
            Ok(p) => p,
            Err(_) => {
                self.report.counters.rtp_port_errors += 1;
                self.fail(id, 503);
                return;
            }
        };
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        call.dialog.callee.rtp_port = port;
        call.state = State::Answered;
        let scenario = call.scenario;
        let caller_rtp = call.caller_rtp;
        let seed = Rng::derive(self.cfg.seed, self.report.counters.answered).next_u64();
        self.report.counters.answered += 1;
        self.reply(id, Reply::new(200).answer());
        if let (Some(call), Some(peer)) = (self.calls.get_mut(id), caller_rtp) {
            let mut r = Rng::new(seed);
            let spec = StreamSpec {
                socket,
                peer,
                payload: self.payload.clone(),
                pt: Codec::Pcmu.payload_type(),
                ssrc: r.next_u32(),
                seq0: r.next_u16(),
                ts0: r.next_u32(),
                start: now,
            };
            call.stream = media.start(spec).ok();
        }
        let at = match scenario {
            Scenario::CalleeHangsUp { .. } => now + talk,
            _ => now + talk + self.cfg.caller_bye,
        };
        self.arm(id, at);
    }

    fn received(&mut self, bytes: &[u8], src: SocketAddr, media: &MediaHandle) {
        self.report.counters.messages_received += 1;
        let Ok((msg, _)) = sip::parse(bytes) else {
            self.report.counters.malformed += 1;
            return;
        };
        let Ok(id) = std::str::from_utf8(msg.call_id()).map(str::to_string) else {
            self.report.counters.malformed += 1;
            return;
        };
        if msg.is_response() {
            // The caller's 200 to our BYE.
            let done = self
                .calls
                .get(&id)
                .is_some_and(|c| c.state == State::Leaving)
                && msg.cseq().method == b"BYE"
                && msg.status_code().is_some_and(|c| c >= 200);
            if done {
                self.end(&id, media);
            }
            return;
        }
        let method = msg.method_bytes().unwrap_or_default();
        let known = self.calls.contains_key(&id);
        match (method, known) {
            (b"INVITE", false) => self.invite(&msg, id, src),
            (b"INVITE", true) => self.report.counters.retransmissions += 1,
            (b"CANCEL", true) => self.cancel(&msg, &id, src),
            (b"ACK", true) => {
                if self
                    .calls
                    .get(&id)
                    .is_some_and(|c| c.state == State::Failed)
                {
                    self.end(&id, media);
                }
            }
            (b"BYE", true) => {
                self.report.counters.byes_received += 1;
                if let Some(call) = self.calls.get_mut(&id) {
                    let tx = to_tx(&msg, Party::Caller);
                    call.dialog.reply(stamp(), &tx, 200);
                }
                self.flush(&id);
                self.end(&id, media);
            }
            (b"ACK", false) => self.report.counters.unknown_dialog += 1,
            _ => {
                self.report.counters.unknown_dialog += 1;
                let code = if method == b"OPTIONS" { 200 } else { 481 };
                self.stateless(&msg, src, code);
            }
        }
    }

    fn stateless(&mut self, msg: &SipMessage<'_>, src: SocketAddr, code: u16) {
        match stateless_reply_bytes(msg, src, self.cfg.local, code) {
            Some(b) => self.send(&b, src),
            None => self.report.counters.malformed += 1,
        }
    }

    fn invite(&mut self, msg: &SipMessage<'_>, id: String, src: SocketAddr) {
        self.report.counters.invites += 1;
        let user = msg
            .request_uri_parsed()
            .and_then(|u| u.user().map(|u| u.into_owned()))
            .unwrap_or_default();
        let Ok(scenario) = user.parse::<Scenario>() else {
            self.report.counters.unknown_scenario += 1;
            self.stateless(msg, src, 404);
            return;
        };
        let Some(from_tag) = msg.from_tag() else {
            self.report.counters.malformed += 1;
            return;
        };
        let caller = peer_ua(msg, msg.from(), src);
        let me = Ua::new(&user, self.cfg.local.ip())
            .port(self.cfg.local.port())
            .codecs(&[Codec::Pcmu])
            .user_agent(USER_AGENT);
        let seed = Rng::derive(!self.cfg.seed, self.report.counters.invites).next_u64();
        let mut dialog = Dialog::new(seed, caller, me).call_id(&id);
        dialog.from_tag = sip::lossy(from_tag).into_owned();
        let call = Call {
            dialog,
            invite: to_tx(msg, Party::Caller),
            src,
            scenario,
            state: State::Trying,
            invited: Instant::now(),
            caller_rtp: sdp_rtp_addr(msg),
            stream: None,
            generation: 0,
        };
        self.calls.insert(id.clone(), call);
        self.reply(&id, Reply::new(100));
        match scenario {
            Scenario::Busy => {
                self.report.counters.busy += 1;
                self.fail(&id, 486);
            }
            Scenario::Decline => {
                self.report.counters.declined += 1;
                self.fail(&id, 603);
            }
            _ => self.arm(&id, Instant::now() + RINGING_DELAY),
        }
    }

    fn cancel(&mut self, msg: &SipMessage<'_>, id: &str, src: SocketAddr) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let tx = to_tx(msg, Party::Caller);
        call.dialog.reply(stamp(), &tx, 200);
        let pending = matches!(call.state, State::Trying | State::Ringing);
        let msgs = call.dialog.take_messages();
        for m in msgs {
            self.send(&m.bytes, src);
        }
        if pending {
            self.report.counters.cancelled += 1;
            self.fail(id, 487);
        }
    }
}

/// A response to a request outside any call (404 for an unknown scenario, 481 for an
/// unknown dialog, 200 to OPTIONS), built by a throwaway dialog. `None` when the
/// request lacks what a response copies.
pub(super) fn stateless_reply_bytes(
    msg: &SipMessage<'_>,
    src: SocketAddr,
    local: SocketAddr,
    code: u16,
) -> Option<Vec<u8>> {
    msg.from_tag()?;
    let call_id = std::str::from_utf8(msg.call_id()).ok()?;
    let caller = peer_ua(msg, msg.from(), src);
    let me = Ua::new("loadgen", local.ip())
        .port(local.port())
        .user_agent(USER_AGENT);
    let mut d = Dialog::new(u64::from(code), caller, me).call_id(call_id);
    let tx = to_tx(msg, Party::Caller);
    d.reply(stamp(), &tx, code);
    d.take_messages().into_iter().next().map(|m| m.bytes)
}
