//! SIP scenarios beyond the one answered call of [`CallScript`](super::CallScript): any
//! sequence of requests and responses in a dialog, with the headers a real user agent
//! puts on them (Via with a fresh branch per transaction, CSeq per side, tags, Contact,
//! SDP with a session version that moves), seen directly or at both hops of a proxy,
//! over UDP or TCP, IPv4 or IPv6.
//!
//! A test writes the scenario as it reads:
//! ```
//! use std::time::Duration;
//! use calltap::pcapgen::scenario::{Dialog, Reply, Scenario, Ua};
//! use calltap::pcapgen::{Link, Party};
//! let t0 = calltap::pcapgen::call::DEFAULT_START;
//! let at = |ms: u64| t0.saturating_add(Duration::from_millis(ms));
//! let client = Ua::new("+15551230199", "203.0.113.9".parse().unwrap());
//! let operator = Ua::new("201", "10.0.0.21".parse().unwrap());
//! let mut d = Dialog::new(1, client, operator);
//! let invite = d.invite(at(0));
//! d.reply(at(2), &invite, 100);
//! d.reply(at(60), &invite, 180);
//! d.reply(at(3000), &invite, Reply::new(200).answer());
//! d.ack(at(3002), &invite);
//! let bye = d.bye(at(9000), Party::Callee);
//! d.reply(at(9002), &bye, 200);
//! let pcap = Scenario::new().dialog(d).pcap(Link::Ethernet);
//! # assert!(pcap.len() > 24);
//! ```
//!
//! Nothing here checks that a scenario is legal SIP: sending a BYE for a dialog that was
//! never set up, or a response nobody asked for, is how the bad-input tests are written.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::capture::Timestamp;

use super::call::{Party, SipTransport};
use super::g711::Codec;
use super::link::Link;
use super::rng::Rng;
use super::tcp::{Side, TcpConn};
use super::wire::{self, IpOpts, Packet};
use super::writer::pcap_bytes;

/// How long a proxy takes to forward a message to the next hop.
const PROXY_DELAY: Duration = Duration::from_micros(400);

/// One SIP user agent (a phone, a trunk, a PBX).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ua {
    pub user: String,
    pub display: Option<String>,
    pub addr: IpAddr,
    pub port: u16,
    pub rtp_port: u16,
    pub user_agent: String,
    /// The host of the address of record (From, To, the INVITE's Request-URI) when it is
    /// not the UA's own: a phone's PBX domain. A proxy then retargets the INVITE to the
    /// UA's Contact on the last hop, as a registrar-backed proxy does.
    pub domain: Option<String>,
    /// The G.711 laws its SDP lists, in order of preference.
    pub codecs: Vec<Codec>,
}

impl Ua {
    pub fn new(user: &str, addr: IpAddr) -> Self {
        Ua {
            user: user.to_string(),
            display: None,
            addr,
            port: 5060,
            rtp_port: 20000,
            user_agent: "calltap-pcapgen".into(),
            domain: None,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
        }
    }

    pub fn domain(mut self, host: &str) -> Self {
        self.domain = Some(host.to_string());
        self
    }

    pub fn codecs(mut self, codecs: &[Codec]) -> Self {
        assert!(!codecs.is_empty(), "an SDP needs a codec");
        self.codecs = codecs.to_vec();
        self
    }

    pub fn display(mut self, name: &str) -> Self {
        self.display = Some(name.to_string());
        self
    }

    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    pub fn rtp_port(mut self, port: u16) -> Self {
        self.rtp_port = port;
        self
    }

    pub fn user_agent(mut self, ua: &str) -> Self {
        self.user_agent = ua.to_string();
        self
    }

    pub fn sip_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port)
    }

    /// The host as it goes in a URI or a Via (IPv6 in brackets).
    pub fn host(&self) -> String {
        host(self.addr)
    }

    /// `sip:user@host` (`sip:user@domain` when the UA has one).
    pub fn aor(&self) -> String {
        match &self.domain {
            Some(d) => format!("sip:{}@{d}", self.user),
            None => format!("sip:{}@{}", self.user, self.host()),
        }
    }

    /// `"Display" <sip:user@host>` (no tag).
    pub fn name_addr(&self) -> String {
        match &self.display {
            Some(d) => format!("\"{d}\" <{}>", self.aor()),
            None => format!("<{}>", self.aor()),
        }
    }

    fn contact_uri(&self, transport: SipTransport) -> String {
        let param = match transport {
            SipTransport::Udp => "",
            SipTransport::Tcp => ";transport=tcp",
        };
        format!("sip:{}@{}:{}{param}", self.user, self.host(), self.port)
    }
}

fn host(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

fn transport_token(t: SipTransport) -> &'static str {
    match t {
        SipTransport::Udp => "UDP",
        SipTransport::Tcp => "TCP",
    }
}

/// A SIP message as a start line, headers in order, and a body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    pub start: String,
    pub headers: Vec<(String, String)>,
    /// (Content-Type, body).
    pub body: Option<(String, String)>,
}

impl Msg {
    /// The wire form; Content-Length is always the body's length.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut m = String::with_capacity(600);
        let _ = write!(m, "{}\r\n", self.start);
        for (name, value) in &self.headers {
            let _ = write!(m, "{name}: {value}\r\n");
        }
        match &self.body {
            Some((ctype, body)) => {
                let _ = write!(
                    m,
                    "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
            None => m.push_str("Content-Length: 0\r\n\r\n"),
        }
        m.into_bytes()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn set_header(&mut self, name: &str, value: String) {
        match self
            .headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(h) => h.1 = value,
            None => self.headers.push((name.to_string(), value)),
        }
    }

    /// Puts a Via above the others (what a proxy does when it forwards a request).
    fn push_via(&mut self, via: String) {
        let at = self
            .headers
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case("via"))
            .unwrap_or(0);
        self.headers.insert(at, ("Via".into(), via));
    }

    /// Takes the top Via off (what a proxy does when it forwards a response).
    fn pop_via(&mut self) {
        if let Some(at) = self
            .headers
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case("via"))
        {
            self.headers.remove(at);
        }
    }
}

/// One message on the wire.
#[derive(Clone, Debug)]
pub struct WireMsg {
    pub time: Timestamp,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: SipTransport,
    pub bytes: Vec<u8>,
    /// "INVITE", "180", "200 (BYE)": what the test log or a failure names.
    pub label: String,
}

/// Who sent a request: one of the parties, or the proxy on its own behalf (a CANCEL or
/// an ACK to a fork that lost the race).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Party(Party),
    /// The proxy, towards fork `k`.
    Proxy {
        fork: usize,
    },
}

/// A request sent, to answer or cancel.
#[derive(Clone, Debug)]
pub struct Tx {
    pub method: String,
    pub cseq: u32,
    pub branch: String,
    pub origin: Origin,
    /// The request as the sender sent it (first hop).
    pub request: Msg,
}

impl Tx {
    fn sender(&self) -> Party {
        match self.origin {
            Origin::Party(p) => p,
            Origin::Proxy { .. } => Party::Caller,
        }
    }
}

/// A response to build: its status and what it carries.
#[derive(Clone, Debug)]
pub struct Reply {
    pub code: u16,
    pub reason: Option<String>,
    /// Add the responder's To-tag (default: every response but 100 Trying).
    pub tag: Option<bool>,
    /// Sent by fork `k` instead of the dialog's callee.
    pub fork: Option<usize>,
    /// The proxy absorbs it (a 487 from a fork that lost): seen on the fork's hop only.
    pub absorbed: bool,
    pub sdp: Option<SdpKind>,
    pub headers: Vec<(String, String)>,
    pub body: Option<(String, String)>,
}

/// Which SDP a message carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SdpKind {
    /// The sender's usual description with this direction attribute.
    Direction(&'static str),
    /// RFC 2543 hold: `c=IN IP4 0.0.0.0`, no direction attribute.
    NullAddress,
}

impl Reply {
    pub fn new(code: u16) -> Self {
        Reply {
            code,
            reason: None,
            tag: None,
            fork: None,
            absorbed: false,
            sdp: None,
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn reason(mut self, r: &str) -> Self {
        self.reason = Some(r.to_string());
        self
    }

    /// The usual answer SDP (sendrecv).
    pub fn answer(self) -> Self {
        self.sdp(SdpKind::Direction("sendrecv"))
    }

    pub fn sdp(mut self, kind: SdpKind) -> Self {
        self.sdp = Some(kind);
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn no_tag(mut self) -> Self {
        self.tag = Some(false);
        self
    }

    pub fn fork(mut self, k: usize) -> Self {
        self.fork = Some(k);
        self
    }

    pub fn absorbed(mut self) -> Self {
        self.absorbed = true;
        self
    }
}

impl From<u16> for Reply {
    fn from(code: u16) -> Self {
        Reply::new(code)
    }
}

/// A request to build (in-dialog unless it is the initial INVITE).
#[derive(Clone, Debug, Default)]
pub struct Req {
    pub method: String,
    pub sdp: Option<SdpKind>,
    pub headers: Vec<(String, String)>,
    pub body: Option<(String, String)>,
}

impl Req {
    pub fn new(method: &str) -> Self {
        Req {
            method: method.to_string(),
            ..Req::default()
        }
    }

    pub fn sdp(mut self, kind: SdpKind) -> Self {
        self.sdp = Some(kind);
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, ctype: &str, body: &str) -> Self {
        self.body = Some((ctype.to_string(), body.to_string()));
        self
    }
}

/// The reason phrase RFC 3261 21 gives a status code.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        302 => "Moved Temporarily",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => "Unknown",
    }
}

/// One INVITE dialog (and its forks), message by message.
#[derive(Clone, Debug)]
pub struct Dialog {
    pub call_id: String,
    pub caller: Ua,
    pub callee: Ua,
    pub from_tag: String,
    /// The callee's tag (the answering fork's).
    pub to_tag: String,
    pub transport: SipTransport,
    /// Every message is seen twice: sender -> proxy, proxy -> receiver.
    pub proxy: Option<Ua>,
    /// Phones the proxy forked the INVITE to besides the callee, with their tags.
    pub forks: Vec<(Ua, String)>,
    /// Extra headers on the initial INVITE (P-Asserted-Identity, Session-Expires, ...).
    pub invite_headers: Vec<(String, String)>,
    /// The Request-URI user of the initial INVITE, when not the callee's user.
    pub request_user: Option<String>,
    /// Next CSeq each side uses (caller, callee).
    cseq: [u32; 2],
    /// SDP o= version each side is at.
    sdp_version: [u32; 2],
    sdp_session: [u32; 2],
    rng: Rng,
    msgs: Vec<WireMsg>,
}

impl Dialog {
    /// A dialog from `caller` to `callee`, ids drawn from `seed`. The caller starts its
    /// CSeq at 1 (as most phones), the callee at 101 (as Asterisk's 102, a different
    /// space: RFC 3261 12.2.1.1).
    pub fn new(seed: u64, caller: Ua, callee: Ua) -> Self {
        let mut rng = Rng::new(seed);
        let call_id = format!("{}@{}", rng.hex(24), caller.host());
        let from_tag = rng.hex(10);
        let to_tag = rng.hex(10);
        let sdp_session = [rng.next_u32() >> 1, rng.next_u32() >> 1];
        Dialog {
            call_id,
            caller,
            callee,
            from_tag,
            to_tag,
            transport: SipTransport::Udp,
            proxy: None,
            forks: Vec::new(),
            invite_headers: Vec::new(),
            request_user: None,
            cseq: [1, 101],
            sdp_version: sdp_session,
            sdp_session,
            rng,
            msgs: Vec::new(),
        }
    }

    pub fn transport(mut self, t: SipTransport) -> Self {
        self.transport = t;
        self
    }

    pub fn via_proxy(mut self, proxy: Ua) -> Self {
        self.proxy = Some(proxy);
        self
    }

    /// Adds a phone the proxy forks to; it rings with its own tag. Returns its index.
    pub fn fork_to(&mut self, ua: Ua) -> usize {
        let tag = self.rng.hex(10);
        self.forks.push((ua, tag));
        self.forks.len() - 1
    }

    pub fn invite_header(mut self, name: &str, value: &str) -> Self {
        self.invite_headers
            .push((name.to_string(), value.to_string()));
        self
    }

    pub fn request_user(mut self, user: &str) -> Self {
        self.request_user = Some(user.to_string());
        self
    }

    /// Sets the next CSeq of `party` (a phone that starts elsewhere).
    pub fn cseq(mut self, party: Party, next: u32) -> Self {
        self.cseq[idx(party)] = next;
        self
    }

    pub fn call_id(mut self, id: &str) -> Self {
        self.call_id = id.to_string();
        self
    }

    fn ua(&self, p: Party) -> &Ua {
        match p {
            Party::Caller => &self.caller,
            Party::Callee => &self.callee,
        }
    }

    fn tag(&self, p: Party) -> &str {
        match p {
            Party::Caller => &self.from_tag,
            Party::Callee => &self.to_tag,
        }
    }

    fn branch(&mut self) -> String {
        format!("z9hG4bK{}", self.rng.hex(16))
    }

    fn via(&self, ua_host: &str, port: u16, branch: &str) -> String {
        format!(
            "SIP/2.0/{} {ua_host}:{port};branch={branch};rport",
            transport_token(self.transport)
        )
    }

    /// The SDP `party` sends now; every new description bumps its o= version.
    pub fn sdp(&mut self, party: Party, kind: &SdpKind) -> String {
        let ua = self.ua(party).clone();
        self.sdp_of(party, &ua, kind)
    }

    fn sdp_of(&mut self, party: Party, ua: &Ua, kind: &SdpKind) -> String {
        let i = idx(party);
        self.sdp_version[i] = self.sdp_version[i].wrapping_add(1);
        let family = if ua.addr.is_ipv4() { "IP4" } else { "IP6" };
        let conn = match kind {
            SdpKind::NullAddress => "0.0.0.0".to_string(),
            SdpKind::Direction(_) => ua.addr.to_string(),
        };
        let pts: String = ua
            .codecs
            .iter()
            .map(|c| format!("{} ", c.payload_type()))
            .collect();
        let rtpmaps: String = ua
            .codecs
            .iter()
            .map(|c| format!("a=rtpmap:{} {}/8000\r\n", c.payload_type(), c.rtpmap_name()))
            .collect();
        let mut s = format!(
            "v=0\r\no={} {} {} IN {family} {}\r\ns=calltap-pcapgen\r\nc=IN {} {conn}\r\nt=0 0\r\n\
             m=audio {} RTP/AVP {pts}101\r\n{rtpmaps}\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n",
            ua.user,
            self.sdp_session[i],
            self.sdp_version[i],
            ua.addr,
            if matches!(kind, SdpKind::NullAddress) {
                "IP4"
            } else {
                family
            },
            ua.rtp_port,
        );
        if let SdpKind::Direction(dir) = kind {
            let _ = write!(s, "a={dir}\r\n");
        }
        s
    }

    /// The initial INVITE (caller's SDP offer, sendrecv).
    pub fn invite(&mut self, time: Timestamp) -> Tx {
        let req = Req::new("INVITE").sdp(SdpKind::Direction("sendrecv"));
        self.invite_with(time, req)
    }

    /// The initial INVITE with extra headers or another body; a second call on the same
    /// dialog is the retry after a 401/407 (same Call-ID and From-tag, CSeq + 1).
    pub fn invite_with(&mut self, time: Timestamp, req: Req) -> Tx {
        let cseq = self.cseq[0];
        self.cseq[0] += 1;
        let branch = self.branch();
        let caller = self.caller.clone();
        let callee = self.callee.clone();
        let ruri_user = self.request_user.as_deref().unwrap_or(&callee.user);
        let ruri = match &callee.domain {
            Some(d) => format!("sip:{ruri_user}@{d}"),
            None => format!("sip:{ruri_user}@{}:{}", callee.host(), callee.port),
        };
        let mut headers = vec![
            ("Via".into(), self.via(&caller.host(), caller.port, &branch)),
            ("Max-Forwards".into(), "70".into()),
            (
                "From".into(),
                format!("{};tag={}", caller.name_addr(), self.from_tag),
            ),
            ("To".into(), callee.name_addr()),
            ("Call-ID".into(), self.call_id.clone()),
            ("CSeq".into(), format!("{cseq} INVITE")),
            (
                "Contact".into(),
                format!("<{}>", caller.contact_uri(self.transport)),
            ),
            (
                "Allow".into(),
                "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, REFER, NOTIFY".into(),
            ),
            ("Supported".into(), "replaces, timer".into()),
            ("User-Agent".into(), caller.user_agent.clone()),
        ];
        headers.extend(self.invite_headers.iter().cloned());
        headers.extend(req.headers);
        let body = match (&req.sdp, req.body) {
            (Some(kind), _) => Some(("application/sdp".into(), self.sdp(Party::Caller, kind))),
            (None, body) => body,
        };
        let msg = Msg {
            start: format!("INVITE {ruri} SIP/2.0"),
            headers,
            body,
        };
        let tx = Tx {
            method: "INVITE".into(),
            cseq,
            branch,
            origin: Origin::Party(Party::Caller),
            request: msg,
        };
        self.emit_request(time, &tx, true);
        tx
    }

    /// An in-dialog request from `from` (re-INVITE, UPDATE, BYE, REFER, NOTIFY, INFO).
    pub fn request(&mut self, time: Timestamp, from: Party, req: Req) -> Tx {
        let i = idx(from);
        let cseq = self.cseq[i];
        self.cseq[i] += 1;
        let branch = self.branch();
        let me = self.ua(from).clone();
        let peer = self.ua(from.other()).clone();
        let mut headers = vec![
            ("Via".into(), self.via(&me.host(), me.port, &branch)),
            ("Max-Forwards".into(), "70".into()),
            (
                "From".into(),
                format!("{};tag={}", me.name_addr(), self.tag(from)),
            ),
            (
                "To".into(),
                format!("{};tag={}", peer.name_addr(), self.tag(from.other())),
            ),
            ("Call-ID".into(), self.call_id.clone()),
            ("CSeq".into(), format!("{cseq} {}", req.method)),
        ];
        if matches!(
            req.method.as_str(),
            "INVITE" | "UPDATE" | "REFER" | "NOTIFY" | "SUBSCRIBE"
        ) {
            headers.push((
                "Contact".into(),
                format!("<{}>", me.contact_uri(self.transport)),
            ));
        }
        headers.push(("User-Agent".into(), me.user_agent.clone()));
        headers.extend(req.headers);
        let body = match (&req.sdp, req.body) {
            (Some(kind), _) => Some(("application/sdp".into(), self.sdp(from, kind))),
            (None, body) => body,
        };
        let msg = Msg {
            start: format!(
                "{} {} SIP/2.0",
                req.method,
                peer.contact_uri(self.transport)
            ),
            headers,
            body,
        };
        let tx = Tx {
            method: req.method,
            cseq,
            branch,
            origin: Origin::Party(from),
            request: msg,
        };
        self.emit_request(time, &tx, false);
        tx
    }

    pub fn bye(&mut self, time: Timestamp, from: Party) -> Tx {
        self.request(time, from, Req::new("BYE"))
    }

    /// A re-INVITE from `from` with its SDP in the given direction.
    pub fn reinvite(&mut self, time: Timestamp, from: Party, sdp: SdpKind) -> Tx {
        self.request(time, from, Req::new("INVITE").sdp(sdp))
    }

    /// The ACK for `invite`: for a 2xx a new transaction to the callee's Contact with
    /// the answering tag (RFC 3261 13.2.2.4); for a non-2xx final, hop by hop with the
    /// INVITE's branch and the To-tag of that response (17.1.1.3).
    pub fn ack(&mut self, time: Timestamp, invite: &Tx) {
        self.ack_with_tag(time, invite, None, true)
    }

    /// The ACK for a non-2xx final answer from the tag `to_tag` (default: the callee's).
    pub fn ack_failure(&mut self, time: Timestamp, invite: &Tx) {
        self.ack_with_tag(time, invite, None, false)
    }

    fn ack_with_tag(&mut self, time: Timestamp, invite: &Tx, tag: Option<&str>, ok: bool) {
        let to_tag = tag.unwrap_or(&self.to_tag).to_string();
        let caller = self.caller.clone();
        let callee = self.callee.clone();
        let branch = if ok {
            self.branch()
        } else {
            invite.branch.clone()
        };
        let ruri = if ok {
            callee.contact_uri(self.transport)
        } else {
            invite
                .request
                .start
                .split(' ')
                .nth(1)
                .unwrap_or_default()
                .to_string()
        };
        let msg = Msg {
            start: format!("ACK {ruri} SIP/2.0"),
            headers: vec![
                ("Via".into(), self.via(&caller.host(), caller.port, &branch)),
                ("Max-Forwards".into(), "70".into()),
                (
                    "From".into(),
                    invite.request.header("From").unwrap_or_default().into(),
                ),
                ("To".into(), format!("{};tag={to_tag}", callee.name_addr())),
                ("Call-ID".into(), self.call_id.clone()),
                ("CSeq".into(), format!("{} ACK", invite.cseq)),
                ("User-Agent".into(), caller.user_agent.clone()),
            ],
            body: None,
        };
        let tx = Tx {
            method: "ACK".into(),
            cseq: invite.cseq,
            branch,
            origin: Origin::Party(Party::Caller),
            request: msg,
        };
        self.emit_request(time, &tx, false);
    }

    /// CANCEL for a pending INVITE: same branch, same CSeq number (RFC 3261 9.1).
    pub fn cancel(&mut self, time: Timestamp, invite: &Tx) -> Tx {
        let tx = self.cancel_msg(invite, Origin::Party(Party::Caller));
        self.emit_request(time, &tx, false);
        tx
    }

    fn cancel_msg(&self, invite: &Tx, origin: Origin) -> Tx {
        let r = &invite.request;
        let keep = ["Via", "From", "To", "Call-ID"];
        let mut headers: Vec<(String, String)> = Vec::new();
        headers.push(("Via".into(), r.header("Via").unwrap_or_default().into()));
        headers.push(("Max-Forwards".into(), "70".into()));
        for k in &keep[1..] {
            headers.push((k.to_string(), r.header(k).unwrap_or_default().into()));
        }
        headers.push(("CSeq".into(), format!("{} CANCEL", invite.cseq)));
        let ruri = r.start.split(' ').nth(1).unwrap_or_default();
        Tx {
            method: "CANCEL".into(),
            cseq: invite.cseq,
            branch: invite.branch.clone(),
            origin,
            request: Msg {
                start: format!("CANCEL {ruri} SIP/2.0"),
                headers,
                body: None,
            },
        }
    }

    /// The proxy cancels fork `k` after another fork answered (RFC 3261 16.7 step 10),
    /// on the fork's hop only.
    pub fn proxy_cancel_fork(&mut self, time: Timestamp, invite: &Tx, k: usize) -> Tx {
        let fork_invite = self.fork_request(invite, k);
        let mut tx = self.cancel_msg(&fork_invite, Origin::Proxy { fork: k });
        tx.request
            .set_header("Via", self.proxy_via(&invite.branch, k));
        let proxy = self.proxy.clone().expect("forks need a proxy");
        let fork = self.forks[k].0.clone();
        self.push(
            time,
            proxy.sip_addr(),
            fork.sip_addr(),
            &tx.request,
            "CANCEL (proxy)",
        );
        tx
    }

    /// The proxy's ACK to fork `k`'s non-2xx final (hop by hop, the fork INVITE's branch).
    pub fn proxy_ack_fork(&mut self, time: Timestamp, invite: &Tx, k: usize) {
        let proxy = self.proxy.clone().expect("forks need a proxy");
        let (fork, tag) = self.forks[k].clone();
        let r = &self.fork_request(invite, k).request;
        let msg = Msg {
            start: format!(
                "ACK {} SIP/2.0",
                r.start.split(' ').nth(1).unwrap_or_default()
            ),
            headers: vec![
                ("Via".into(), self.proxy_via(&invite.branch, k)),
                ("Max-Forwards".into(), "70".into()),
                ("From".into(), r.header("From").unwrap_or_default().into()),
                (
                    "To".into(),
                    format!("{};tag={tag}", r.header("To").unwrap_or_default()),
                ),
                ("Call-ID".into(), self.call_id.clone()),
                ("CSeq".into(), format!("{} ACK", invite.cseq)),
            ],
            body: None,
        };
        self.push(time, proxy.sip_addr(), fork.sip_addr(), &msg, "ACK (proxy)");
    }

    /// The INVITE as the proxy forwards it to fork `k` (`usize::MAX`: to the callee).
    fn fork_request(&self, tx: &Tx, k: usize) -> Tx {
        let mut r = tx.request.clone();
        if tx.method == "CANCEL" {
            // Hop by hop: the proxy's CANCEL carries its own Via only.
            r.headers.retain(|(n, _)| !n.eq_ignore_ascii_case("via"));
        }
        r.push_via(self.proxy_via(&tx.branch, k));
        r.set_header("Max-Forwards", "69".into());
        if let Some((fork, _)) = self.forks.get(k) {
            // The proxy retargets each branch to the fork's registered contact.
            let method = r.start.split(' ').next().unwrap_or_default().to_string();
            r.start = format!("{method} {} SIP/2.0", fork.contact_uri(self.transport));
        } else if self.callee.domain.is_some() {
            // Addressed to the callee's record in its domain (the INVITE, its CANCEL and
            // the ACK of a failure): the proxy sends it on to the registered contact.
            let mut parts = r.start.splitn(3, ' ');
            let (method, ruri) = (parts.next().unwrap_or_default(), parts.next());
            if ruri == Some(self.callee.aor().as_str()) {
                r.start = format!(
                    "{method} {} SIP/2.0",
                    self.callee.contact_uri(self.transport)
                );
            }
        }
        Tx {
            request: r,
            ..tx.clone()
        }
    }

    /// The proxy's Via for the transaction whose top branch is `branch`, towards fork
    /// `k`: derived, so a CANCEL gets the branch of the INVITE it cancels (RFC 3261 16.6
    /// step 8 and 9.1) and each fork its own.
    fn proxy_via(&self, branch: &str, k: usize) -> String {
        let proxy = self.proxy.as_ref().expect("a proxy");
        let mut h = Sha256::new();
        h.update(branch.as_bytes());
        h.update((k as u64).to_be_bytes());
        let d = h.finalize();
        let hex: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
        self.via(&proxy.host(), proxy.port, &format!("z9hG4bK{hex}"))
    }

    /// The early dialog fork `k` set up, as a dialog of its own: what the caller ACKs
    /// and BYEs when that fork answered too (RFC 3261 13.2.2.4). It has no messages yet.
    pub fn fork_dialog(&self, k: usize) -> Dialog {
        let (ua, tag) = self.forks[k].clone();
        let mut d = self.clone();
        d.callee = ua;
        d.to_tag = tag;
        d.forks.clear();
        d.msgs.clear();
        d.rng = Rng::derive(self.rng.clone().next_u64(), k as u64 + 1);
        d
    }

    /// Sends a response to `tx` from the other side (or from a fork).
    pub fn reply(&mut self, time: Timestamp, tx: &Tx, reply: impl Into<Reply>) {
        let reply = reply.into();
        let responder = tx.sender().other();
        let r = &tx.request;
        let tagged = reply.tag.unwrap_or(reply.code != 100);
        let mut to = r.header("To").unwrap_or_default().to_string();
        let responder_tag = match reply.fork {
            Some(k) => self.forks[k].1.clone(),
            None => self.tag(responder).to_string(),
        };
        if tagged && !to.contains(";tag=") {
            let _ = write!(to, ";tag={responder_tag}");
        }
        let mut headers: Vec<(String, String)> = r
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("via"))
            .cloned()
            .collect();
        headers.push(("From".into(), r.header("From").unwrap_or_default().into()));
        headers.push(("To".into(), to));
        headers.push(("Call-ID".into(), self.call_id.clone()));
        headers.push(("CSeq".into(), r.header("CSeq").unwrap_or_default().into()));
        let responder_ua = match reply.fork {
            Some(k) => self.forks[k].0.clone(),
            None => self.ua(responder).clone(),
        };
        let dialog_forming = matches!(tx.method.as_str(), "INVITE" | "SUBSCRIBE" | "REFER")
            && reply.code > 100
            && reply.code < 300;
        if dialog_forming {
            headers.push((
                "Contact".into(),
                format!("<{}>", responder_ua.contact_uri(self.transport)),
            ));
        }
        headers.push(("Server".into(), responder_ua.user_agent.clone()));
        headers.extend(reply.headers.iter().cloned());
        let body = match (&reply.sdp, &reply.body) {
            (Some(kind), _) => Some((
                "application/sdp".into(),
                self.sdp_of(responder, &responder_ua, kind),
            )),
            (None, body) => body.clone(),
        };
        let reason = reply
            .reason
            .clone()
            .unwrap_or_else(|| reason_phrase(reply.code).to_string());
        let msg = Msg {
            start: format!("SIP/2.0 {} {reason}", reply.code),
            headers,
            body,
        };
        let label = format!("{} ({})", reply.code, tx.method);
        self.emit_response(time, tx, &msg, &reply, &label);
    }

    /// Sends `tx`'s request: directly, or at both hops of the proxy (and to every fork,
    /// for the initial INVITE).
    fn emit_request(&mut self, time: Timestamp, tx: &Tx, initial: bool) {
        let sender = tx.sender();
        let src = self.ua(sender).sip_addr();
        let dst = self.ua(sender.other()).sip_addr();
        let label = tx.method.clone();
        match self.proxy.clone() {
            None => self.push(time, src, dst, &tx.request, &label),
            Some(proxy) => {
                self.push(time, src, proxy.sip_addr(), &tx.request, &label);
                let later = time.saturating_add(PROXY_DELAY);
                let fwd = self.fork_request(tx, usize::MAX);
                self.push(later, proxy.sip_addr(), dst, &fwd.request, &label);
                // A CANCEL is hop by hop: the proxy answers it and sends its own to each
                // branch, which the fork_request above already is for the callee.
                if initial || tx.method == "CANCEL" {
                    for k in 0..self.forks.len() {
                        let fwd = self.fork_request(tx, k);
                        let fork = self.forks[k].0.sip_addr();
                        let t = later.saturating_add(PROXY_DELAY * (k as u32 + 1));
                        self.push(t, proxy.sip_addr(), fork, &fwd.request, &label);
                    }
                }
            }
        }
    }

    fn emit_response(&mut self, time: Timestamp, tx: &Tx, msg: &Msg, reply: &Reply, label: &str) {
        let responder = tx.sender().other();
        let src = match reply.fork {
            Some(k) => self.forks[k].0.sip_addr(),
            None => self.ua(responder).sip_addr(),
        };
        let dst = self.ua(tx.sender()).sip_addr();
        match (self.proxy.clone(), tx.origin) {
            (None, _) => self.push(time, src, dst, msg, label),
            (Some(proxy), Origin::Proxy { fork }) => {
                // A response to the proxy's own request: its Via only, one hop.
                let mut m = msg.clone();
                m.headers.retain(|(n, _)| !n.eq_ignore_ascii_case("via"));
                m.push_via(self.proxy_via(&tx.branch, fork));
                // Keep the CSeq/From/To of the proxy's request; the Via above is its own.
                let src = self.forks[fork].0.sip_addr();
                self.push(time, src, proxy.sip_addr(), &m, label);
            }
            (Some(proxy), Origin::Party(_)) => {
                let k = reply.fork.unwrap_or(usize::MAX);
                let mut down = msg.clone();
                down.push_via(self.proxy_via(&tx.branch, k));
                self.push(time, src, proxy.sip_addr(), &down, label);
                if !reply.absorbed {
                    let mut up = down;
                    up.pop_via();
                    let later = time.saturating_add(PROXY_DELAY);
                    self.push(later, proxy.sip_addr(), dst, &up, label);
                }
            }
        }
    }

    fn push(&mut self, time: Timestamp, src: SocketAddr, dst: SocketAddr, m: &Msg, label: &str) {
        self.msgs.push(WireMsg {
            time,
            src,
            dst,
            transport: self.transport,
            bytes: m.to_bytes(),
            label: label.to_string(),
        });
    }

    /// Sends the last message again, byte for byte, `after` later (a retransmission:
    /// RFC 3261 17.1.1.2 Timer A is 500 ms at first).
    pub fn retransmit_last(&mut self, after: Duration) {
        let mut m = self.msgs.last().expect("a message to repeat").clone();
        m.time = m.time.saturating_add(after);
        m.label.push_str(" (again)");
        self.msgs.push(m);
    }

    /// The messages so far.
    pub fn messages(&self) -> &[WireMsg] {
        &self.msgs
    }

    pub fn into_messages(self) -> Vec<WireMsg> {
        self.msgs
    }

    /// Hands over the messages made since the last call: a live user agent
    /// (`calltap-loadgen`) sends each one as soon as it is built.
    pub fn take_messages(&mut self) -> Vec<WireMsg> {
        std::mem::take(&mut self.msgs)
    }
}

/// The generator's party is the record's: who sent the INVITE, who received it.
impl From<Party> for crate::call::Party {
    fn from(p: Party) -> Self {
        match p {
            Party::Caller => crate::call::Party::Caller,
            Party::Callee => crate::call::Party::Callee,
        }
    }
}

fn idx(p: Party) -> usize {
    match p {
        Party::Caller => 0,
        Party::Callee => 1,
    }
}

/// The REFER's sipfrag NOTIFY (RFC 3515 2.4.5): `status` of the new call.
pub fn sipfrag_notify(status: u16, terminated: bool) -> Req {
    let state = if terminated {
        "terminated;reason=noresource"
    } else {
        "active;expires=60"
    };
    Req::new("NOTIFY")
        .header("Event", "refer")
        .header("Subscription-State", state)
        .body(
            "message/sipfrag;version=2.0",
            &format!("SIP/2.0 {status} {}\r\n", reason_phrase(status)),
        )
}

/// A capture: dialogs and loose messages, put in time order and onto the wire.
#[derive(Clone, Debug, Default)]
pub struct Scenario {
    msgs: Vec<WireMsg>,
}

impl Scenario {
    pub fn new() -> Self {
        Scenario::default()
    }

    pub fn dialog(mut self, d: Dialog) -> Self {
        self.msgs.extend(d.into_messages());
        self
    }

    pub fn add(&mut self, d: Dialog) {
        self.msgs.extend(d.into_messages());
    }

    /// Any bytes as one UDP datagram (garbage, a hand-written message).
    pub fn raw(&mut self, time: Timestamp, src: SocketAddr, dst: SocketAddr, bytes: &[u8]) {
        self.msgs.push(WireMsg {
            time,
            src,
            dst,
            transport: SipTransport::Udp,
            bytes: bytes.to_vec(),
            label: "raw".into(),
        });
    }

    /// OPTIONS keep-alives from `from` to `to` every `every`, each answered 200 OK, from
    /// `start` while before `end` (what a PBX does to its trunks all day).
    pub fn options_pings(
        &mut self,
        seed: u64,
        from: &Ua,
        to: &Ua,
        start: Timestamp,
        end: Timestamp,
        every: Duration,
    ) {
        let mut rng = Rng::new(seed);
        let call_id = format!("{}@{}", rng.hex(20), from.host());
        let tag = rng.hex(8);
        let mut t = start;
        let mut cseq = 1;
        while t < end {
            let branch = format!("z9hG4bK{}", rng.hex(16));
            let via = format!(
                "SIP/2.0/UDP {}:{};branch={branch};rport",
                from.host(),
                from.port
            );
            let req = Msg {
                start: format!("OPTIONS sip:{}:{} SIP/2.0", to.host(), to.port),
                headers: vec![
                    ("Via".into(), via.clone()),
                    ("Max-Forwards".into(), "70".into()),
                    ("From".into(), format!("<{}>;tag={tag}", from.aor())),
                    ("To".into(), format!("<sip:{}:{}>", to.host(), to.port)),
                    ("Call-ID".into(), call_id.clone()),
                    ("CSeq".into(), format!("{cseq} OPTIONS")),
                    (
                        "Contact".into(),
                        format!("<{}>", from.contact_uri(SipTransport::Udp)),
                    ),
                    ("User-Agent".into(), from.user_agent.clone()),
                ],
                body: None,
            };
            let resp = Msg {
                start: "SIP/2.0 200 OK".into(),
                headers: vec![
                    ("Via".into(), via),
                    ("From".into(), format!("<{}>;tag={tag}", from.aor())),
                    (
                        "To".into(),
                        format!("<sip:{}:{}>;tag={}", to.host(), to.port, rng.hex(8)),
                    ),
                    ("Call-ID".into(), call_id.clone()),
                    ("CSeq".into(), format!("{cseq} OPTIONS")),
                    ("Allow".into(), "INVITE, ACK, CANCEL, BYE, OPTIONS".into()),
                    ("Server".into(), to.user_agent.clone()),
                ],
                body: None,
            };
            self.push_msg(t, from.sip_addr(), to.sip_addr(), &req, "OPTIONS");
            let t2 = t.saturating_add(Duration::from_millis(3));
            self.push_msg(t2, to.sip_addr(), from.sip_addr(), &resp, "200 (OPTIONS)");
            cseq += 1;
            t = t.saturating_add(every);
        }
    }

    /// A phone registering: REGISTER, 401 with a digest challenge, REGISTER with
    /// credentials (CSeq + 1), 200 OK with the binding.
    pub fn register(&mut self, seed: u64, phone: &Ua, registrar: &Ua, at: Timestamp) {
        let mut rng = Rng::new(seed);
        let call_id = format!("{}@{}", rng.hex(20), phone.host());
        let tag = rng.hex(10);
        let aor = format!("sip:{}@{}", phone.user, registrar.host());
        let from = match &phone.display {
            Some(d) => format!("\"{d}\" <{aor}>;tag={tag}"),
            None => format!("<{aor}>;tag={tag}"),
        };
        let to = match &phone.display {
            Some(d) => format!("\"{d}\" <{aor}>"),
            None => format!("<{aor}>"),
        };
        let contact = format!("<{}>;expires=3600", phone.contact_uri(SipTransport::Udp));
        let nonce = rng.hex(32);
        for (k, code) in [(1u32, 401u16), (2, 200)] {
            let t = at.saturating_add(Duration::from_millis(40 * u64::from(k - 1)));
            let branch = format!("z9hG4bK{}", rng.hex(16));
            let via = format!(
                "SIP/2.0/UDP {}:{};branch={branch};rport",
                phone.host(),
                phone.port
            );
            let mut headers = vec![
                ("Via".into(), via.clone()),
                ("Max-Forwards".into(), "70".into()),
                ("From".into(), from.clone()),
                ("To".into(), to.clone()),
                ("Call-ID".into(), call_id.clone()),
                ("CSeq".into(), format!("{k} REGISTER")),
                ("Contact".into(), contact.clone()),
                ("Expires".into(), "3600".into()),
                ("User-Agent".into(), phone.user_agent.clone()),
            ];
            if k == 2 {
                headers.push((
                    "Authorization".into(),
                    format!(
                        "Digest username=\"{}\", realm=\"calltap\", nonce=\"{nonce}\", \
                         uri=\"sip:{}\", response=\"{}\", algorithm=MD5",
                        phone.user,
                        registrar.host(),
                        rng.hex(32)
                    ),
                ));
            }
            let req = Msg {
                start: format!("REGISTER sip:{} SIP/2.0", registrar.host()),
                headers,
                body: None,
            };
            self.push_msg(t, phone.sip_addr(), registrar.sip_addr(), &req, "REGISTER");
            let mut rh = vec![
                ("Via".into(), via),
                ("From".into(), from.clone()),
                ("To".into(), format!("{to};tag={}", rng.hex(8))),
                ("Call-ID".into(), call_id.clone()),
                ("CSeq".into(), format!("{k} REGISTER")),
            ];
            if code == 401 {
                rh.push((
                    "WWW-Authenticate".into(),
                    format!("Digest realm=\"calltap\", nonce=\"{nonce}\", algorithm=MD5"),
                ));
            } else {
                rh.push(("Contact".into(), contact.clone()));
            }
            rh.push(("Server".into(), registrar.user_agent.clone()));
            let resp = Msg {
                start: format!("SIP/2.0 {code} {}", reason_phrase(code)),
                headers: rh,
                body: None,
            };
            let t2 = t.saturating_add(Duration::from_millis(4));
            self.push_msg(
                t2,
                registrar.sip_addr(),
                phone.sip_addr(),
                &resp,
                "REGISTER reply",
            );
        }
    }

    fn push_msg(&mut self, time: Timestamp, src: SocketAddr, dst: SocketAddr, m: &Msg, l: &str) {
        self.msgs.push(WireMsg {
            time,
            src,
            dst,
            transport: SipTransport::Udp,
            bytes: m.to_bytes(),
            label: l.to_string(),
        });
    }

    /// Every message in time order (stable: equal times keep the order they were made).
    pub fn messages(&self) -> Vec<WireMsg> {
        let mut m = self.msgs.clone();
        m.sort_by_key(|w| w.time);
        m
    }

    /// The IP packets: UDP datagrams, or TCP segments on one connection per address
    /// pair (opened by the first sender 3 ms before its first message, each message one
    /// segment acknowledged by the peer 300 us later).
    pub fn packets(&self) -> Vec<Packet> {
        let mut out = Vec::new();
        let mut conns: HashMap<(SocketAddr, SocketAddr), TcpConn> = HashMap::new();
        let mut next_port: u16 = 49_500;
        for m in self.messages() {
            match m.transport {
                SipTransport::Udp => out.push(Packet::new(
                    m.time,
                    wire::udp_with(m.src, m.dst, &m.bytes, &IpOpts::dscp(24)),
                )),
                SipTransport::Tcp => {
                    // The connection is the client's ephemeral port to the server's
                    // listening port; the server answers and sends on it too.
                    let (key, side) = if conns.contains_key(&(m.dst, m.src)) {
                        ((m.dst, m.src), Side::Server)
                    } else {
                        ((m.src, m.dst), Side::Client)
                    };
                    let conn = conns.entry(key).or_insert_with(|| {
                        let client = SocketAddr::new(m.src.ip(), next_port);
                        next_port += 1;
                        let mut c = TcpConn::new(client, m.dst);
                        let t0 = Timestamp::from_nanos(m.time.as_nanos().saturating_sub(3_000_000));
                        out.extend(c.handshake(t0, Duration::from_micros(900)));
                        c
                    });
                    out.push(conn.data(side, m.time, &m.bytes));
                    let t = m.time.saturating_add(Duration::from_micros(300));
                    out.push(conn.ack(side.peer(), t));
                }
            }
        }
        out.sort_by_key(|p| p.time);
        out
    }

    /// The whole capture as a pcap in memory.
    pub fn pcap(&self, link: Link) -> Vec<u8> {
        pcap_bytes(link, &self.packets())
    }
}
