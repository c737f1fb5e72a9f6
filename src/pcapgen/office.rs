//! `office-day.pcap`: ten minutes of one small office's telephony, the capture a newcomer
//! replays to see what calltap does with no configuration at all.
//!
//! A PBX at 10.1.0.5 (a proxy such as Kamailio: it stays in the signalling path, one
//! dialog per call, media flows end to end), four desk phones 10.1.0.101-.104 with
//! extensions 101-104, and a SIP trunk provider at 203.0.113.10. The phones register,
//! the PBX pings the trunk with OPTIONS, and seven calls come and go: four answered
//! calls with clients (exported), one cancelled, one busy, one internal. Every answered
//! call carries G.711 both ways, each party a different talk-spurt signal, so the
//! operator and client channels of a recording can be told apart.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::capture::Timestamp;

use super::call::{Party, RtpStream, PTIME};
use super::g711::{Codec, Signal};
use super::scenario::{Dialog, Reply, Scenario, Ua};
use super::wire::{self, IpOpts, Packet};

/// 2026-03-04 09:00:00 UTC: the start of the office's morning.
pub const OFFICE_START: Timestamp = Timestamp::from_nanos(1_772_614_800_000_000_000);
/// The capture ends 10 minutes after it starts.
pub const OFFICE_SPAN: Duration = Duration::from_secs(600);
/// How often the PBX checks that the trunk is alive (a common qualify interval).
const OPTIONS_EVERY: Duration = Duration::from_secs(30);

/// RFC 4733 payload type the SDPs map to telephone-event.
pub const DTMF_PT: u8 = 101;
/// 20 ms packets a DTMF digit lasts: 5 updates (100 ms of tone), then the end packet
/// sent 3 times (RFC 4733 2.5.1.4).
const DTMF_UPDATES: u64 = 5;
const DTMF_END_COPIES: u64 = 3;
/// Volume field of the events: -10 dBm0, what desk phones send.
const DTMF_VOLUME: u8 = 10;

const PBX: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 5);
const TRUNK: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

/// One desk phone: extension and owner.
pub const PHONES: [(&str, &str); 4] = [
    ("101", "Alice Smith"),
    ("102", "Brian Jones"),
    ("103", "Carol White"),
    ("104", "David Brown"),
];

/// What became of a call attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Answered,
    Cancelled,
    Busy,
}

/// One call of the capture and what a decoder must make of it.
#[derive(Clone, Debug)]
pub struct OfficeCall {
    /// 1-based, in the order the calls start.
    pub number: usize,
    pub call_id: String,
    pub from_tag: String,
    /// "incoming", "outgoing" or "internal", as calltap names them.
    pub direction: &'static str,
    pub caller: String,
    pub callee: String,
    pub outcome: Outcome,
    pub invite_time: Timestamp,
    /// 200 OK to the INVITE.
    pub answer_time: Option<Timestamp>,
    /// BYE, CANCEL, or the final failure response.
    pub end_time: Timestamp,
    /// Who sent the BYE.
    pub hangup: Option<Party>,
    /// The extension of the office's side of the call (the caller's for an internal call).
    pub operator: String,
    /// The client's number (none for an internal call).
    pub client: Option<String>,
    /// The client's display name, when its From carries one.
    pub client_name: Option<String>,
    /// Returned by `POST /calls` with no configuration (answered, not internal).
    pub exported: bool,
    pub codec: Codec,
    /// RTP packets both ways (telephone-event packets included).
    pub rtp_packets: u64,
    /// Of those, RFC 4733 telephone-event packets.
    pub dtmf_packets: u64,
    pub dtmf_digits: String,
    /// Extra headers on the INVITE.
    pub headers: Vec<(&'static str, &'static str)>,
}

/// The whole capture: its packets in time order and the facts to check against.
#[derive(Clone, Debug)]
pub struct OfficeDay {
    pub packets: Vec<Packet>,
    pub calls: Vec<OfficeCall>,
    pub sip_messages: u64,
    pub rtp_packets: u64,
    pub registrations: usize,
    pub options_pings: usize,
}

fn at(offset: Duration) -> Timestamp {
    OFFICE_START.saturating_add(offset)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

fn pbx() -> Ua {
    Ua::new("pbx", IpAddr::V4(PBX)).user_agent("Kamailio (5.7.4 (x86_64/linux))")
}

fn trunk() -> Ua {
    Ua::new("trunk", IpAddr::V4(TRUNK)).user_agent("ExampleTel SBC 3.1")
}

/// Desk phone `ext` (101-104), its address of record in the PBX's domain. `call` picks
/// a fresh RTP port per call, as phones do.
fn phone(ext: &str, call: u16) -> Ua {
    let n: u8 = ext.parse().expect("an extension");
    let name = PHONES
        .iter()
        .find(|(e, _)| *e == ext)
        .map(|(_, name)| *name)
        .expect("a known extension");
    Ua::new(ext, IpAddr::V4(Ipv4Addr::new(10, 1, 0, n)))
        .display(name)
        .domain(&PBX.to_string())
        .rtp_port(11_000 + 100 * u16::from(n - 100) + 2 * call)
        .user_agent("Yealink SIP-T46U 66.86.0.15")
}

/// The phone as the far side names it: the trunk knows the extension it sends the call
/// to, not its owner's name.
fn phone_unnamed(ext: &str, call: u16) -> Ua {
    let mut ua = phone(ext, call);
    ua.display = None;
    ua
}

/// A number behind the trunk; the provider's SBC relays the media.
fn client(number: &str, name: Option<&str>, call: u16) -> Ua {
    let mut ua = Ua::new(number, IpAddr::V4(TRUNK))
        .rtp_port(40_000 + 2 * call)
        .user_agent("ExampleTel SBC 3.1");
    ua.display = name.map(str::to_string);
    ua
}

/// What each side says: the office's people sweep lower, clients higher, and the two
/// take turns (the client's spurts fall in the operator's pauses).
fn voices(call: u16) -> (Signal, Signal) {
    let k = u32::from(call);
    let operator = Signal::Spurts {
        f0_hz: 250 + 20 * k,
        f1_hz: 900 + 40 * k,
        on_ms: 1300,
        off_ms: 900,
        offset_ms: 0,
        amplitude: 7000,
    };
    let client = Signal::Spurts {
        f0_hz: 700 + 30 * k,
        f1_hz: 2200 + 50 * k,
        on_ms: 900,
        off_ms: 1300,
        offset_ms: 1300,
        amplitude: 6000,
    };
    (operator, client)
}

/// An answered call to build.
struct Answered {
    number: usize,
    seed: u64,
    caller: Ua,
    callee: Ua,
    start: Duration,
    ring: Duration,
    talk: Duration,
    hangup: Party,
    codec: Codec,
    headers: Vec<(&'static str, &'static str)>,
    /// Digits the caller sends, each at this long after its first RTP packet.
    dtmf: Vec<(char, Duration)>,
    /// Caller's and callee's signals.
    signals: (Signal, Signal),
}

/// RTP packet `k` of `s` as an RFC 4733 event packet: `digit` began in packet `first`.
fn dtmf_packet(s: &RtpStream, k: u64, first: u64, digit: char) -> Packet {
    let event = match digit {
        '0'..='9' => digit as u8 - b'0',
        '*' => 10,
        '#' => 11,
        _ => panic!("not a DTMF digit: {digit}"),
    };
    let j = k - first;
    let end = j >= DTMF_UPDATES;
    let duration = 160 * (j.min(DTMF_UPDATES - 1) + 1) as u16;
    let flags = if end { 0x80 } else { 0 } | DTMF_VOLUME;
    let mut payload = [event, flags, 0, 0];
    payload[2..].copy_from_slice(&duration.to_be_bytes());
    // Every packet of an event carries the timestamp of its start (RFC 4733 2.3.4).
    let ts = s.ts0.wrapping_add((first * 160) as u32);
    let rtp = wire::rtp(
        DTMF_PT,
        j == 0,
        s.seq0.wrapping_add(k as u16),
        ts,
        s.ssrc,
        &payload,
    );
    Packet::new(
        s.time(k),
        wire::udp_with(s.src, s.dst, &rtp, &IpOpts::dscp(46)),
    )
}

/// The packets of a stream, with DTMF events in place of the audio of their slots.
fn stream_packets(s: &RtpStream, dtmf: &[(char, u64)]) -> (Vec<Packet>, u64) {
    let span = DTMF_UPDATES + DTMF_END_COPIES;
    let mut events = 0;
    let packets = (0..s.count)
        .map(|k| {
            match dtmf
                .iter()
                .find(|(_, first)| (*first..*first + span).contains(&k))
            {
                Some(&(digit, first)) => {
                    events += 1;
                    dtmf_packet(s, k, first, digit)
                }
                None => s.packet(k),
            }
        })
        .collect();
    (packets, events)
}

fn answered(sc: &mut Scenario, rtp: &mut Vec<Packet>, c: Answered) -> OfficeCall {
    let t0 = at(c.start);
    let mut d = Dialog::new(c.seed, c.caller.clone(), c.callee.clone()).via_proxy(pbx());
    for (name, value) in &c.headers {
        d = d.invite_header(name, value);
    }
    let inv = d.invite(t0);
    d.reply(t0.saturating_add(ms(3)), &inv, 100);
    d.reply(t0.saturating_add(ms(85)), &inv, 180);
    let ok = t0.saturating_add(c.ring);
    d.reply(ok, &inv, Reply::new(200).answer());
    let ack = ok.saturating_add(ms(4));
    d.ack(ack, &inv);
    let bye = ok.saturating_add(c.talk);
    let tx = d.bye(bye, c.hangup);
    d.reply(bye.saturating_add(ms(3)), &tx, 200);
    let (call_id, from_tag) = (d.call_id.clone(), d.from_tag.clone());
    sc.add(d);

    // The callee sends once it has answered, the caller once the 200 OK reached it;
    // both stop at the BYE (the hanger-up sends it, the other stops on receiving it).
    let firsts = [
        ack.saturating_add(ms(8)),
        ok.saturating_add(Duration::from_micros(9_100)),
    ];
    let ends = [&c.caller, &c.callee];
    let mut total = 0;
    let mut dtmf_total = 0;
    for (i, party) in [Party::Caller, Party::Callee].into_iter().enumerate() {
        let (me, peer) = (ends[i], ends[1 - i]);
        let first = firsts[i];
        let span = bye.as_nanos().saturating_sub(first.as_nanos());
        let count = span.div_ceil(PTIME.as_nanos() as u64);
        let signal = match party {
            Party::Caller => c.signals.0,
            Party::Callee => c.signals.1,
        };
        let s = RtpStream::new(
            SocketAddr::new(me.addr, me.rtp_port),
            SocketAddr::new(peer.addr, peer.rtp_port),
            c.codec,
            signal,
            first,
            count,
            c.seed.wrapping_mul(2).wrapping_add(i as u64),
        );
        let digits: Vec<(char, u64)> = match party {
            Party::Caller => c
                .dtmf
                .iter()
                .map(|&(digit, after)| (digit, after.as_millis() as u64 / 20))
                .collect(),
            Party::Callee => Vec::new(),
        };
        let (packets, events) = stream_packets(&s, &digits);
        total += packets.len() as u64;
        dtmf_total += events;
        rtp.extend(packets);
    }

    let caller_is_ext = c.caller.addr != IpAddr::V4(TRUNK);
    let callee_is_ext = c.callee.addr != IpAddr::V4(TRUNK);
    let (direction, operator, client) = match (caller_is_ext, callee_is_ext) {
        (true, true) => ("internal", &c.caller, None),
        (true, false) => ("outgoing", &c.caller, Some(&c.callee)),
        _ => ("incoming", &c.callee, Some(&c.caller)),
    };
    OfficeCall {
        number: c.number,
        call_id,
        from_tag,
        direction,
        caller: c.caller.user.clone(),
        callee: c.callee.user.clone(),
        outcome: Outcome::Answered,
        invite_time: t0,
        answer_time: Some(ok),
        end_time: bye,
        hangup: Some(c.hangup),
        operator: operator.user.clone(),
        client: client.map(|u| u.user.clone()),
        client_name: client.and_then(|u| u.display.clone()),
        exported: direction != "internal",
        codec: c.codec,
        rtp_packets: total,
        dtmf_packets: dtmf_total,
        dtmf_digits: c.dtmf.iter().map(|(digit, _)| digit).collect(),
        headers: c.headers,
    }
}

/// The numbers behind the trunk, with the name their From carries.
const CLIENTS: [(&str, Option<&str>); 5] = [
    ("+15551230001", Some("Bob Client")),
    ("+15551230002", None),
    ("+15551230003", Some("Erin Example")),
    ("+4930123456", None),
    ("+15551239999", None),
];

fn client_ua(i: usize, call: u16) -> Ua {
    let (number, name) = CLIENTS[i];
    client(number, name, call)
}

/// Builds the capture.
pub fn office_day() -> OfficeDay {
    let mut sc = Scenario::new();
    let mut rtp = Vec::new();
    let mut calls = Vec::new();

    // The phones come up one after the other and register with the PBX (401, then
    // the REGISTER with credentials, 200 OK).
    for (i, (ext, _)) in PHONES.iter().enumerate() {
        let t = at(ms(1_500 + 1_200 * i as u64));
        sc.register(0x0FF1_CE00 + i as u64, &phone(ext, 0), &pbx(), t);
    }
    let registrations = PHONES.len();
    // The PBX qualifies the trunk all morning.
    sc.options_pings(
        0x0FF1_CE10,
        &pbx(),
        &trunk(),
        at(secs(10)),
        at(OFFICE_SPAN),
        OPTIONS_EVERY,
    );
    let options_pings = (OFFICE_SPAN - secs(10)).as_secs().div_ceil(30) as usize;

    // 1. Bob Client calls Alice; Bob hangs up.
    let (op, cl) = voices(1);
    calls.push(answered(
        &mut sc,
        &mut rtp,
        Answered {
            number: 1,
            seed: 0x0FF1_CE01,
            caller: client_ua(0, 1),
            callee: phone_unnamed("101", 1).codecs(&[Codec::Pcmu]),
            start: secs(35),
            ring: ms(4_200),
            talk: secs(7),
            hangup: Party::Caller,
            codec: Codec::Pcmu,
            headers: Vec::new(),
            dtmf: Vec::new(),
            signals: (cl, op),
        },
    ));

    // 2. A client from the support queue of the spring campaign reaches Brian, who
    // ends the call.
    let (op, cl) = voices(2);
    calls.push(answered(
        &mut sc,
        &mut rtp,
        Answered {
            number: 2,
            seed: 0x0FF1_CE02,
            caller: client_ua(1, 2),
            callee: phone_unnamed("102", 2).codecs(&[Codec::Pcmu]),
            start: secs(110),
            ring: ms(3_100),
            talk: secs(6),
            hangup: Party::Callee,
            codec: Codec::Pcmu,
            headers: vec![("X-Queue", "support"), ("X-Campaign", "spring")],
            dtmf: Vec::new(),
            signals: (cl, op),
        },
    ));

    // 3. Carol calls Berlin; the trunk answers in A-law; Carol hangs up.
    let (op, cl) = voices(3);
    calls.push(answered(
        &mut sc,
        &mut rtp,
        Answered {
            number: 3,
            seed: 0x0FF1_CE03,
            caller: phone("103", 3),
            callee: client_ua(3, 3).codecs(&[Codec::Pcma]),
            start: secs(190),
            ring: ms(5_300),
            talk: secs(8),
            hangup: Party::Caller,
            codec: Codec::Pcma,
            headers: Vec::new(),
            dtmf: Vec::new(),
            signals: (op, cl),
        },
    ));

    // 4. A client rings David for 6 s and gives up: CANCEL, 487.
    {
        let t0 = at(secs(260));
        let mut d =
            Dialog::new(0x0FF1_CE04, client_ua(2, 4), phone_unnamed("104", 4)).via_proxy(pbx());
        let inv = d.invite(t0);
        d.reply(t0.saturating_add(ms(3)), &inv, 100);
        d.reply(t0.saturating_add(ms(85)), &inv, 180);
        let cancel_at = t0.saturating_add(secs(6));
        let cancel = d.cancel(cancel_at, &inv);
        d.reply(cancel_at.saturating_add(ms(2)), &cancel, 200);
        d.reply(cancel_at.saturating_add(ms(4)), &inv, 487);
        d.ack_failure(cancel_at.saturating_add(ms(6)), &inv);
        calls.push(unanswered(
            4,
            &d,
            "incoming",
            "104",
            Some(CLIENTS[2]),
            Outcome::Cancelled,
            t0,
            cancel_at,
        ));
        sc.add(d);
    }
    // 5. Alice calls a number that is busy: 486, no media.
    {
        let t0 = at(secs(315));
        let mut d = Dialog::new(0x0FF1_CE05, phone("101", 5), client_ua(4, 5)).via_proxy(pbx());
        let inv = d.invite(t0);
        d.reply(t0.saturating_add(ms(3)), &inv, 100);
        let busy = t0.saturating_add(ms(1_250));
        d.reply(busy, &inv, 486);
        d.ack_failure(busy.saturating_add(ms(2)), &inv);
        calls.push(unanswered(
            5,
            &d,
            "outgoing",
            "101",
            Some(CLIENTS[4]),
            Outcome::Busy,
            t0,
            busy,
        ));
        sc.add(d);
    }

    // 6. Bob Client calls again, reaches Brian, keys 1 then 2 early in the call (RFC
    // 4733 events in his RTP) and hangs up.
    let (op, cl) = voices(6);
    calls.push(answered(
        &mut sc,
        &mut rtp,
        Answered {
            number: 6,
            seed: 0x0FF1_CE06,
            caller: client_ua(0, 6),
            callee: phone_unnamed("102", 6).codecs(&[Codec::Pcmu]),
            start: secs(390),
            ring: ms(2_800),
            talk: secs(8),
            hangup: Party::Caller,
            codec: Codec::Pcmu,
            headers: Vec::new(),
            dtmf: vec![('1', ms(1_000)), ('2', ms(1_600))],
            signals: (cl, op),
        },
    ));

    // 7. Carol calls David inside the office; David hangs up. Internal: kept, not
    // exported.
    let (op, other) = voices(7);
    calls.push(answered(
        &mut sc,
        &mut rtp,
        Answered {
            number: 7,
            seed: 0x0FF1_CE07,
            caller: phone("103", 7),
            callee: phone_unnamed("104", 7).codecs(&[Codec::Pcmu]),
            start: secs(480),
            ring: ms(2_100),
            talk: secs(5),
            hangup: Party::Callee,
            codec: Codec::Pcmu,
            headers: Vec::new(),
            dtmf: Vec::new(),
            signals: (op, other),
        },
    ));

    let sip_messages = sc.messages().len() as u64;
    let rtp_packets = rtp.len() as u64;
    let mut packets = sc.packets();
    packets.extend(rtp);
    packets.sort_by_key(|p| p.time);
    OfficeDay {
        packets,
        calls,
        sip_messages,
        rtp_packets,
        registrations,
        options_pings,
    }
}

#[allow(clippy::too_many_arguments)]
fn unanswered(
    number: usize,
    d: &Dialog,
    direction: &'static str,
    operator: &str,
    client: Option<(&str, Option<&str>)>,
    outcome: Outcome,
    invite_time: Timestamp,
    end_time: Timestamp,
) -> OfficeCall {
    OfficeCall {
        number,
        call_id: d.call_id.clone(),
        from_tag: d.from_tag.clone(),
        direction,
        caller: d.caller.user.clone(),
        callee: d.callee.user.clone(),
        outcome,
        invite_time,
        answer_time: None,
        end_time,
        hangup: None,
        operator: operator.to_string(),
        client: client.map(|c| c.0.to_string()),
        client_name: client.and_then(|c| c.1).map(str::to_string),
        exported: false,
        codec: Codec::Pcmu,
        rtp_packets: 0,
        dtmf_packets: 0,
        dtmf_digits: String::new(),
        headers: Vec::new(),
    }
}
