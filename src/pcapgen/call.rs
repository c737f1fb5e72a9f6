//! A two-party SIP call as it appears on the wire: INVITE/100/180/200/ACK, G.711 RTP both
//! ways, BYE/200, with deterministic ids and capture-time timing.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::capture::Timestamp;

use super::g711::{Codec, PayloadGen, Signal, SAMPLES_PER_PACKET};
use super::rng::Rng;
use super::tcp::{Side, TcpConn};
use super::wire::{self, Fragmentation, IpOpts, Ipv6Ext, Packet};

/// The two parties of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Party {
    /// Sent the INVITE; its tag is the From-tag of the dialog.
    Caller,
    /// Received the INVITE; its tag is the To-tag.
    Callee,
}

impl Party {
    pub fn other(self) -> Party {
        match self {
            Party::Caller => Party::Callee,
            Party::Callee => Party::Caller,
        }
    }

    fn index(self) -> usize {
        match self {
            Party::Caller => 0,
            Party::Callee => 1,
        }
    }
}

/// How the SIP messages of a call travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SipTransport {
    Udp,
    /// One TCP connection opened by the caller, used both ways; every message is one
    /// segment, acknowledged by a pure ACK.
    Tcp,
}

/// One endpoint of a call.
#[derive(Clone, Debug, PartialEq)]
pub struct Phone {
    pub user: String,
    pub display: String,
    pub addr: IpAddr,
    pub sip_port: u16,
    pub rtp_port: u16,
    /// What this phone's microphone hears: the audio of its RTP stream.
    pub signal: Signal,
}

impl Phone {
    pub fn new(user: &str, addr: IpAddr, rtp_port: u16) -> Self {
        Phone {
            user: user.to_string(),
            display: format!("User {user}"),
            addr,
            sip_port: 5060,
            rtp_port,
            signal: Signal::Tone {
                freq_hz: 440,
                amplitude: 8000,
            },
        }
    }

    pub fn signal(mut self, signal: Signal) -> Self {
        self.signal = signal;
        self
    }

    pub fn display(mut self, display: &str) -> Self {
        self.display = display.to_string();
        self
    }

    pub fn sip_port(mut self, port: u16) -> Self {
        self.sip_port = port;
        self
    }

    pub fn sip_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.sip_port)
    }

    pub fn rtp_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.rtp_port)
    }

    fn host(&self) -> String {
        match self.addr {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        }
    }

    fn sdp_addr(&self) -> String {
        match self.addr {
            IpAddr::V4(a) => format!("IP4 {a}"),
            IpAddr::V6(a) => format!("IP6 {a}"),
        }
    }
}

/// Delay from a request to the response the far end sends at once (a LAN round trip
/// plus processing).
const RESPONSE_DELAY: Duration = Duration::from_micros(2_150);
/// INVITE to 180 Ringing.
const RINGING_DELAY: Duration = Duration::from_millis(60);
/// RTP packet interval (ptime 20).
pub const PTIME: Duration = Duration::from_millis(20);
/// Largest capture-time jitter added to an RTP packet; far below PTIME, so each stream
/// stays in order.
const MAX_JITTER_NS: u64 = 250_000;

/// The script of one answered call. Build it, then take its packets ([`CallScript::packets`])
/// and what a decoder must find in them ([`CallScript::facts`]).
#[derive(Clone, Debug)]
pub struct CallScript {
    pub caller: Phone,
    pub callee: Phone,
    pub codec: Codec,
    /// Capture time of the INVITE.
    pub start: Timestamp,
    /// INVITE to 200 OK.
    pub ring: Duration,
    /// 200 OK to BYE.
    pub talk: Duration,
    pub hangup: Party,
    pub transport: SipTransport,
    pub seed: u64,
    /// Bytes of extra SDP attributes in the INVITE (to make it need fragmenting).
    pub sdp_padding: usize,
    /// Fragment SIP datagrams larger than this plan's MTU (UDP only).
    pub fragmentation: Option<Fragmentation>,
    /// Put this extension header before UDP in every SIP packet (IPv6 only).
    pub ipv6_ext: Option<Ipv6Ext>,
    /// Give RTP capture times sub-microsecond digits (for nanosecond files).
    pub nanosecond_jitter: bool,
    /// Seed the source port of the caller's TCP connection.
    pub tcp_client_port: u16,
}

/// 2026-01-15 10:00:00 UTC: the default start of generated calls.
pub const DEFAULT_START: Timestamp = Timestamp::from_nanos(1_768_471_200_000_000_000);

impl CallScript {
    /// Alice (10.0.0.10, extension 1001) calls Bob (10.0.0.20, extension 1002): PCMU,
    /// 2 s of ringing, 3 s of talk, Alice hangs up, SIP over UDP.
    pub fn new(seed: u64) -> Self {
        CallScript {
            caller: Phone::new("1001", IpAddr::V4(Ipv4Addr::new(10, 0, 0, 10)), 16000)
                .display("Alice"),
            callee: Phone::new("1002", IpAddr::V4(Ipv4Addr::new(10, 0, 0, 20)), 26000)
                .display("Bob")
                .signal(Signal::Tone {
                    freq_hz: 1000,
                    amplitude: 6000,
                }),
            codec: Codec::Pcmu,
            start: DEFAULT_START,
            ring: Duration::from_secs(2),
            talk: Duration::from_secs(3),
            hangup: Party::Caller,
            transport: SipTransport::Udp,
            seed,
            sdp_padding: 0,
            fragmentation: None,
            ipv6_ext: None,
            nanosecond_jitter: false,
            tcp_client_port: 0,
        }
    }

    pub fn caller(mut self, phone: Phone) -> Self {
        self.caller = phone;
        self
    }

    pub fn callee(mut self, phone: Phone) -> Self {
        self.callee = phone;
        self
    }

    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    pub fn start(mut self, start: Timestamp) -> Self {
        self.start = start;
        self
    }

    pub fn ring(mut self, ring: Duration) -> Self {
        assert!(
            ring >= Duration::from_millis(100),
            "ring must leave room for 180"
        );
        self.ring = ring;
        self
    }

    pub fn talk(mut self, talk: Duration) -> Self {
        self.talk = talk;
        self
    }

    pub fn hangup_by(mut self, party: Party) -> Self {
        self.hangup = party;
        self
    }

    pub fn transport(mut self, transport: SipTransport) -> Self {
        self.transport = transport;
        self
    }

    pub fn sdp_padding(mut self, bytes: usize) -> Self {
        self.sdp_padding = bytes;
        self
    }

    pub fn fragment(mut self, plan: Fragmentation) -> Self {
        self.fragmentation = Some(plan);
        self
    }

    pub fn ipv6_ext(mut self, ext: Ipv6Ext) -> Self {
        self.ipv6_ext = Some(ext);
        self
    }

    pub fn nanosecond_jitter(mut self, on: bool) -> Self {
        self.nanosecond_jitter = on;
        self
    }

    /// Both phones on IPv6 (2001:db8::10 and 2001:db8::20), same ports.
    pub fn ipv6(mut self) -> Self {
        self.caller.addr = "2001:db8::10".parse().expect("literal");
        self.callee.addr = "2001:db8::20".parse().expect("literal");
        self
    }

    fn phone(&self, p: Party) -> &Phone {
        match p {
            Party::Caller => &self.caller,
            Party::Callee => &self.callee,
        }
    }

    /// The identifiers of the call, all derived from the seed.
    pub fn ids(&self) -> CallIds {
        let mut r = Rng::new(self.seed);
        let call_id = format!("{}@{}", r.hex(24), self.caller.addr);
        let from_tag = r.hex(10);
        let to_tag = r.hex(10);
        let mut branch = || format!("z9hG4bK{}", r.hex(16));
        let invite_branch = branch();
        let ack_branch = branch();
        let bye_branch = branch();
        CallIds {
            call_id,
            from_tag,
            to_tag,
            invite_branch,
            ack_branch,
            bye_branch,
            sdp_session: [r.next_u32() >> 1, r.next_u32() >> 1],
            ssrc: [r.next_u32(), r.next_u32()],
            seq0: [r.next_u16(), r.next_u16()],
            ts0: [r.next_u32(), r.next_u32()],
        }
    }

    fn times(&self) -> Times {
        let invite = self.start;
        let ok = invite.saturating_add(self.ring);
        let ack = ok.saturating_add(RESPONSE_DELAY);
        let bye = ok.saturating_add(self.talk);
        Times {
            invite,
            trying: invite.saturating_add(Duration::from_micros(480)),
            ringing: invite.saturating_add(RINGING_DELAY),
            ok,
            ack,
            bye,
            bye_ok: bye.saturating_add(RESPONSE_DELAY),
            // The callee sends as soon as it answers; the caller once it has the answer.
            rtp_first: [
                ack.saturating_add(Duration::from_micros(7_300)),
                ok.saturating_add(Duration::from_micros(9_100)),
            ],
        }
    }

    fn sdp(&self, p: Party, ids: &CallIds, offer: bool) -> String {
        let ph = self.phone(p);
        let pt = self.codec.payload_type();
        let mut s = String::with_capacity(400 + self.sdp_padding);
        let sess = ids.sdp_session[p.index()];
        let _ = write!(
            s,
            "v=0\r\no={} {sess} {sess} IN {}\r\ns=calltap-pcapgen\r\nc=IN {}\r\nt=0 0\r\n",
            ph.user,
            ph.sdp_addr(),
            ph.sdp_addr()
        );
        if offer {
            let _ = write!(
                s,
                "m=audio {} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n",
                ph.rtp_port
            );
        } else {
            let _ = write!(
                s,
                "m=audio {} RTP/AVP {pt} 101\r\na=rtpmap:{pt} {}/8000\r\n",
                ph.rtp_port,
                self.codec.rtpmap_name()
            );
        }
        s.push_str("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n");
        if offer && self.sdp_padding > 0 {
            // Unknown attributes a decoder must skip, like the vendor extensions that
            // make real INVITEs outgrow one Ethernet frame.
            let mut i = 0;
            let target = s.len() + self.sdp_padding;
            while s.len() < target {
                let _ = write!(s, "a=x-pcapgen-filler:{i:04} ");
                let fill = (target - s.len()).clamp(1, 60);
                s.extend(std::iter::repeat_n('f', fill));
                s.push_str("\r\n");
                i += 1;
            }
        }
        s.push_str("a=sendrecv\r\n");
        s
    }

    /// Every SIP message of the call, in time order.
    pub fn sip_messages(&self) -> Vec<SipMessage> {
        let ids = self.ids();
        let t = self.times();
        let (a, b) = (&self.caller, &self.callee);
        let tp = match self.transport {
            SipTransport::Udp => "UDP",
            SipTransport::Tcp => "TCP",
        };
        let uri_param = match self.transport {
            SipTransport::Udp => "",
            SipTransport::Tcp => ";transport=tcp",
        };
        let a_uri = format!("sip:{}@{}", a.user, a.host());
        let b_uri = format!("sip:{}@{}", b.user, b.host());
        let a_contact = format!("<sip:{}@{}:{}{uri_param}>", a.user, a.host(), a.sip_port);
        let b_contact = format!("<sip:{}@{}:{}{uri_param}>", b.user, b.host(), b.sip_port);
        let from = format!("\"{}\" <{a_uri}>;tag={}", a.display, ids.from_tag);
        let to_no_tag = format!("<{b_uri}>");
        let to = format!("<{b_uri}>;tag={}", ids.to_tag);
        let via_a = |branch: &str| {
            format!(
                "SIP/2.0/{tp} {}:{};branch={branch};rport",
                a.host(),
                a.sip_port
            )
        };
        let invite_via = via_a(&ids.invite_branch);

        let offer = self.sdp(Party::Caller, &ids, true);
        let answer = self.sdp(Party::Callee, &ids, false);
        let mut msgs = Vec::with_capacity(7);

        let req = |method: &str,
                   ruri: &str,
                   via: &str,
                   from: &str,
                   to: &str,
                   cseq: u32,
                   contact: Option<&str>,
                   body: Option<&str>| {
            let mut m = format!(
                "{method} {ruri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\n\
                 To: {to}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n",
                ids.call_id
            );
            if let Some(c) = contact {
                let _ = write!(m, "Contact: {c}\r\n");
            }
            if method == "INVITE" {
                m.push_str("Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE\r\n");
            }
            m.push_str("User-Agent: calltap-pcapgen\r\n");
            finish(m, body)
        };
        let resp = |status: &str,
                    via: &str,
                    from: &str,
                    to: &str,
                    cseq: &str,
                    contact: Option<&str>,
                    body: Option<&str>| {
            let mut m = format!(
                "SIP/2.0 {status}\r\nVia: {via}\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {}\r\n\
                 CSeq: {cseq}\r\n",
                ids.call_id
            );
            if let Some(c) = contact {
                let _ = write!(m, "Contact: {c}\r\n");
            }
            m.push_str("Server: calltap-pcapgen\r\n");
            finish(m, body)
        };

        let ruri_b = format!("{b_uri}:{}", b.sip_port);
        msgs.push(SipMessage::new(
            t.invite,
            Party::Caller,
            "INVITE",
            req(
                "INVITE",
                &ruri_b,
                &invite_via,
                &from,
                &to_no_tag,
                1,
                Some(&a_contact),
                Some(&offer),
            ),
        ));
        msgs.push(SipMessage::new(
            t.trying,
            Party::Callee,
            "100 Trying",
            resp(
                "100 Trying",
                &invite_via,
                &from,
                &to_no_tag,
                "1 INVITE",
                None,
                None,
            ),
        ));
        msgs.push(SipMessage::new(
            t.ringing,
            Party::Callee,
            "180 Ringing",
            resp(
                "180 Ringing",
                &invite_via,
                &from,
                &to,
                "1 INVITE",
                Some(&b_contact),
                None,
            ),
        ));
        msgs.push(SipMessage::new(
            t.ok,
            Party::Callee,
            "200 OK",
            resp(
                "200 OK",
                &invite_via,
                &from,
                &to,
                "1 INVITE",
                Some(&b_contact),
                Some(&answer),
            ),
        ));
        let b_target = format!("sip:{}@{}:{}{uri_param}", b.user, b.host(), b.sip_port);
        let a_target = format!("sip:{}@{}:{}{uri_param}", a.user, a.host(), a.sip_port);
        msgs.push(SipMessage::new(
            t.ack,
            Party::Caller,
            "ACK",
            req(
                "ACK",
                &b_target,
                &via_a(&ids.ack_branch),
                &from,
                &to,
                1,
                None,
                None,
            ),
        ));
        let (bye, bye_via) = match self.hangup {
            Party::Caller => {
                let via = via_a(&ids.bye_branch);
                let m = req("BYE", &b_target, &via, &from, &to, 2, None, None);
                (m, via)
            }
            Party::Callee => {
                let via = format!(
                    "SIP/2.0/{tp} {}:{};branch={};rport",
                    b.host(),
                    b.sip_port,
                    ids.bye_branch
                );
                // The callee's dialog view: From and To swap, its own CSeq space.
                let m = req("BYE", &a_target, &via, &to, &from, 1, None, None);
                (m, via)
            }
        };
        msgs.push(SipMessage::new(t.bye, self.hangup, "BYE", bye));
        let (bye_from, bye_to, bye_cseq) = match self.hangup {
            Party::Caller => (&from, &to, "2 BYE"),
            Party::Callee => (&to, &from, "1 BYE"),
        };
        msgs.push(SipMessage::new(
            t.bye_ok,
            self.hangup.other(),
            "200 OK (BYE)",
            resp("200 OK", &bye_via, bye_from, bye_to, bye_cseq, None, None),
        ));
        msgs
    }

    /// The RTP stream `from` sends (to the other party's SDP address).
    pub fn rtp_stream(&self, from: Party) -> RtpStream {
        let ids = self.ids();
        let t = self.times();
        let i = from.index();
        let src = self.phone(from).rtp_addr();
        let dst = self.phone(from.other()).rtp_addr();
        let first = t.rtp_first[i];
        // Packets whose nominal time falls before the BYE: the phone stops sending when
        // it hangs up or receives the BYE.
        let span = t.bye.as_nanos().saturating_sub(first.as_nanos());
        let count = span.div_ceil(PTIME.as_nanos() as u64);
        RtpStream {
            src,
            dst,
            pt: self.codec.payload_type(),
            ssrc: ids.ssrc[i],
            seq0: ids.seq0[i],
            ts0: ids.ts0[i],
            first,
            count,
            jitter_seed: self.seed ^ u64::from(ids.ssrc[i]),
            nanosecond_jitter: self.nanosecond_jitter,
            payload: Arc::new(PayloadGen::new(self.codec, self.phone(from).signal)),
        }
    }

    /// What a decoder must find in this call's packets.
    pub fn facts(&self) -> CallFacts {
        let ids = self.ids();
        let t = self.times();
        let rtp = [Party::Caller, Party::Callee].map(|p| {
            let s = self.rtp_stream(p);
            StreamFacts {
                src: s.src,
                dst: s.dst,
                ssrc: s.ssrc,
                payload_type: s.pt,
                first_seq: s.seq0,
                first_rtp_ts: s.ts0,
                packets: s.count,
                first_time: s.time(0),
                last_time: s.time(s.count.saturating_sub(1)),
            }
        });
        CallFacts {
            call_id: ids.call_id,
            from_tag: ids.from_tag,
            to_tag: ids.to_tag,
            invite_time: t.invite,
            answer_time: t.ok,
            bye_time: t.bye,
            hangup: self.hangup,
            sip_messages: 7,
            rtp,
        }
    }

    /// The SIP messages as IP packets (over UDP, fragmented when planned, or over TCP).
    pub fn sip_packets(&self) -> Vec<Packet> {
        let msgs = self.sip_messages();
        let mut out = Vec::with_capacity(msgs.len() * 2 + 3);
        match self.transport {
            SipTransport::Udp => {
                for m in &msgs {
                    let src = self.phone(m.from).sip_addr();
                    let dst = self.phone(m.from.other()).sip_addr();
                    let ip = match (self.ipv6_ext, src) {
                        (Some(ext), SocketAddr::V6(_)) => {
                            wire::udp_v6_with_ext(src, dst, &m.bytes, ext)
                        }
                        _ => wire::udp_with(src, dst, &m.bytes, &IpOpts::dscp(24)),
                    };
                    match &self.fragmentation {
                        Some(plan) if ip.len() > plan.mtu => {
                            let frags = if src.is_ipv4() {
                                wire::fragment_ipv4(&ip, plan)
                            } else {
                                let id = (self.seed as u32) ^ 0x5EED_0000;
                                wire::fragment_ipv6(&ip, plan, id)
                            };
                            for (k, f) in frags.into_iter().enumerate() {
                                let t = m.time.saturating_add(Duration::from_micros(12 * k as u64));
                                out.push(Packet::new(t, f));
                            }
                        }
                        _ => out.push(Packet::new(m.time, ip)),
                    }
                }
            }
            SipTransport::Tcp => {
                let port = if self.tcp_client_port != 0 {
                    self.tcp_client_port
                } else {
                    49152 + (self.seed % 16000) as u16
                };
                let client = SocketAddr::new(self.caller.addr, port);
                let mut conn = TcpConn::new(client, self.callee.sip_addr());
                let t0 = self.start.as_nanos().saturating_sub(3_000_000);
                out.extend(conn.handshake(Timestamp::from_nanos(t0), Duration::from_micros(900)));
                for m in &msgs {
                    let side = match m.from {
                        Party::Caller => Side::Client,
                        Party::Callee => Side::Server,
                    };
                    out.push(conn.data(side, m.time, &m.bytes));
                    let t = m.time.saturating_add(Duration::from_micros(300));
                    out.push(conn.ack(side.peer(), t));
                }
            }
        }
        out
    }

    /// All packets of the call in time order, built lazily (RTP is made as it is read).
    pub fn packets(&self) -> CallPackets {
        let mut sip: Vec<Packet> = self.sip_packets();
        sip.sort_by_key(|p| p.time);
        CallPackets {
            sip: sip.into(),
            rtp: [
                self.rtp_stream(Party::Caller),
                self.rtp_stream(Party::Callee),
            ],
            next: [0, 0],
        }
    }

    /// All packets of the call, collected.
    pub fn to_vec(&self) -> Vec<Packet> {
        self.packets().collect()
    }
}

fn finish(mut head: String, body: Option<&str>) -> Vec<u8> {
    match body {
        Some(b) => {
            let _ = write!(
                head,
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            );
        }
        None => head.push_str("Content-Length: 0\r\n\r\n"),
    }
    head.into_bytes()
}

struct Times {
    invite: Timestamp,
    trying: Timestamp,
    ringing: Timestamp,
    ok: Timestamp,
    ack: Timestamp,
    bye: Timestamp,
    bye_ok: Timestamp,
    rtp_first: [Timestamp; 2],
}

/// The identifiers of one call (index 0 = caller, 1 = callee).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallIds {
    pub call_id: String,
    pub from_tag: String,
    pub to_tag: String,
    pub invite_branch: String,
    pub ack_branch: String,
    pub bye_branch: String,
    pub sdp_session: [u32; 2],
    pub ssrc: [u32; 2],
    pub seq0: [u16; 2],
    pub ts0: [u32; 2],
}

/// One SIP message with its time and sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipMessage {
    pub time: Timestamp,
    pub from: Party,
    /// "INVITE", "100 Trying", ..., "200 OK (BYE)".
    pub label: &'static str,
    pub bytes: Vec<u8>,
}

impl SipMessage {
    fn new(time: Timestamp, from: Party, label: &'static str, bytes: Vec<u8>) -> Self {
        SipMessage {
            time,
            from,
            label,
            bytes,
        }
    }
}

/// One direction of media: G.711, 20 ms, 160-byte payloads of the sender's signal.
#[derive(Clone, Debug)]
pub struct RtpStream {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub pt: u8,
    pub ssrc: u32,
    pub seq0: u16,
    pub ts0: u32,
    pub first: Timestamp,
    /// Packets sent before the hangup.
    pub count: u64,
    jitter_seed: u64,
    nanosecond_jitter: bool,
    payload: Arc<PayloadGen>,
}

impl RtpStream {
    /// `count` packets of `signal` from `src` to `dst`, 20 ms apart from `first`, with
    /// SSRC, first sequence number, first timestamp and jitter drawn from `seed`: a
    /// stream for a dialog built with [`Dialog`](super::scenario::Dialog), which has no
    /// media of its own.
    pub fn new(
        src: SocketAddr,
        dst: SocketAddr,
        codec: Codec,
        signal: Signal,
        first: Timestamp,
        count: u64,
        seed: u64,
    ) -> Self {
        let mut r = Rng::new(seed);
        let ssrc = r.next_u32();
        RtpStream {
            src,
            dst,
            pt: codec.payload_type(),
            ssrc,
            seq0: r.next_u16(),
            ts0: r.next_u32(),
            first,
            count,
            jitter_seed: seed ^ u64::from(ssrc),
            nanosecond_jitter: false,
            payload: Arc::new(PayloadGen::new(codec, signal)),
        }
    }

    /// Capture time of packet `k`: its 20 ms slot plus a small fixed-per-packet jitter.
    pub fn time(&self, k: u64) -> Timestamp {
        let mut j = Rng::derive(self.jitter_seed, k).next_u64() % MAX_JITTER_NS;
        if !self.nanosecond_jitter {
            j -= j % 1000;
        }
        Timestamp::from_nanos(self.first.as_nanos() + k * PTIME.as_nanos() as u64 + j)
    }

    /// RTP packet `k` (it may lie beyond `count`: the media a phone sends too long).
    pub fn packet(&self, k: u64) -> Packet {
        let mut payload = [0u8; SAMPLES_PER_PACKET];
        self.payload.fill(k, &mut payload);
        let rtp = wire::rtp(
            self.pt,
            k == 0,
            self.seq0.wrapping_add(k as u16),
            self.ts0
                .wrapping_add((k * SAMPLES_PER_PACKET as u64) as u32),
            self.ssrc,
            &payload,
        );
        Packet::new(
            self.time(k),
            wire::udp_with(self.src, self.dst, &rtp, &IpOpts::dscp(46)),
        )
    }
}

/// The packets of one call in capture-time order.
#[derive(Clone, Debug)]
pub struct CallPackets {
    sip: VecDeque<Packet>,
    rtp: [RtpStream; 2],
    next: [u64; 2],
}

impl CallPackets {
    fn next_rtp_time(&self, i: usize) -> Option<Timestamp> {
        (self.next[i] < self.rtp[i].count).then(|| self.rtp[i].time(self.next[i]))
    }

    /// Time of the packet `next()` will return.
    pub fn peek_time(&self) -> Option<Timestamp> {
        [
            self.sip.front().map(|p| p.time),
            self.next_rtp_time(0),
            self.next_rtp_time(1),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

impl Iterator for CallPackets {
    type Item = Packet;

    fn next(&mut self) -> Option<Packet> {
        let sip = self.sip.front().map(|p| p.time);
        let r0 = self.next_rtp_time(0);
        let r1 = self.next_rtp_time(1);
        let earliest = [sip, r0, r1].into_iter().flatten().min()?;
        if sip == Some(earliest) {
            return self.sip.pop_front();
        }
        let i = if r0 == Some(earliest) { 0 } else { 1 };
        let p = self.rtp[i].packet(self.next[i]);
        self.next[i] += 1;
        Some(p)
    }
}

/// What a call must turn into once decoded (index 0 = caller's stream).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallFacts {
    pub call_id: String,
    pub from_tag: String,
    pub to_tag: String,
    pub invite_time: Timestamp,
    pub answer_time: Timestamp,
    pub bye_time: Timestamp,
    pub hangup: Party,
    pub sip_messages: usize,
    pub rtp: [StreamFacts; 2],
}

impl CallFacts {
    pub fn rtp_packets(&self) -> u64 {
        self.rtp[0].packets + self.rtp[1].packets
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamFacts {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub ssrc: u32,
    pub payload_type: u8,
    pub first_seq: u16,
    pub first_rtp_ts: u32,
    pub packets: u64,
    pub first_time: Timestamp,
    pub last_time: Timestamp,
}
