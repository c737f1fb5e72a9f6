//! The bundled captures in `pcaps/`: one short call per link layer and format, plus the
//! network edge cases real captures lack (see ../shared/pcaps/MANIFEST.md for those
//! that exist). Each comes with the counts a decoder must reproduce, and the same code
//! writes `pcaps/README.md`, so files and descriptions cannot drift apart.

use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::capture::Timestamp;

use super::call::{CallFacts, CallScript, Party, Phone, SipTransport};
use super::g711::{Codec, Signal};
use super::link::{Link, Tunnel};
use super::office::{self, OfficeCall, Outcome};
use super::tcp::{Side, TcpConn};
use super::wire::{self, FragOrder, Fragmentation, Ipv6Ext, Packet};
use super::writer::{self, ByteOrder, Interface, PcapNgFile, TsResolution};

/// One generated file and what it holds.
#[derive(Clone, Debug)]
pub struct Demo {
    pub name: &'static str,
    /// "pcap, little-endian, microseconds, Ethernet" and the like.
    pub format: String,
    /// Records in the file (for a damaged file: records a reader gets back).
    pub frames: u64,
    pub tally: Tally,
    /// What a decoder must make of it, in prose.
    pub expect: String,
    pub bytes: Vec<u8>,
}

/// Counts over the IP packets of a file (inner packets for tunnels).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub ip_packets: u64,
    /// IPv4 or IPv6 fragments (every piece, bogus ones included).
    pub fragments: u64,
    /// UDP datagrams once fragments are reassembled.
    pub udp_datagrams: u64,
    pub tcp_segments: u64,
    /// TCP segments carrying data.
    pub tcp_data_segments: u64,
    pub icmp: u64,
    pub sip_messages: u64,
    pub rtp_packets: u64,
}

impl Tally {
    fn of(packets: &[Packet]) -> Tally {
        let mut t = Tally::default();
        let mut frag_ids = std::collections::BTreeSet::new();
        for p in packets {
            t.ip_packets += 1;
            let d = &p.data;
            let (proto, l4, frag) = if d[0] >> 4 == 4 {
                let ihl = usize::from(d[0] & 0xF) * 4;
                let fo = u16::from_be_bytes([d[6], d[7]]);
                let frag = fo & 0x3FFF != 0;
                (
                    d[9],
                    ihl,
                    frag.then(|| u32::from(u16::from_be_bytes([d[4], d[5]]))),
                )
            } else {
                let mut next = d[6];
                let mut off = 40;
                let mut frag = None;
                while matches!(next, 0 | 60 | 44) {
                    if next == 44 {
                        frag = Some(u32::from_be_bytes(
                            d[off + 4..off + 8].try_into().expect("4"),
                        ));
                        next = d[off];
                        off += 8;
                    } else {
                        next = d[off];
                        off += 8 * (usize::from(d[off + 1]) + 1);
                    }
                }
                (next, off, frag)
            };
            if let Some(id) = frag {
                t.fragments += 1;
                if proto == wire::PROTO_UDP && frag_ids.insert(id) {
                    t.udp_datagrams += 1;
                }
                continue;
            }
            match proto {
                wire::PROTO_UDP => t.udp_datagrams += 1,
                wire::PROTO_TCP => {
                    t.tcp_segments += 1;
                    let hl = usize::from(d[l4 + 12] >> 4) * 4;
                    if d.len() > l4 + hl {
                        t.tcp_data_segments += 1;
                    }
                }
                wire::PROTO_ICMP | wire::PROTO_ICMPV6 => t.icmp += 1,
                _ => {}
            }
        }
        t
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// A sentence per call: ids, streams, who hangs up.
fn describe_call(f: &CallFacts, codec: Codec, origin: Timestamp) -> String {
    let rel = |t: Timestamp| ms(t.since(origin));
    let s = |i: usize| {
        let r = &f.rtp[i];
        format!(
            "{} -> {} SSRC {:#010x} PT {} first seq {} ts {}, {} packets",
            r.src, r.dst, r.ssrc, r.payload_type, r.first_seq, r.first_rtp_ts, r.packets
        )
    };
    format!(
        "Call-ID `{}` (From-tag {}, To-tag {}): INVITE at {}, answered at {}, BYE from the {} at {}; {} \
         SIP messages; {} RTP: caller {}; callee {}.",
        f.call_id,
        f.from_tag,
        f.to_tag,
        rel(f.invite_time),
        rel(f.answer_time),
        match f.hangup {
            Party::Caller => "caller",
            Party::Callee => "callee",
        },
        rel(f.bye_time),
        f.sip_messages,
        codec.rtpmap_name(),
        s(0),
        s(1)
    )
}

fn format_name(kind: &str, order: ByteOrder, res: TsResolution, link: &str) -> String {
    let o = match order {
        ByteOrder::Little => "little-endian",
        ByteOrder::Big => "big-endian",
    };
    let r = match res {
        TsResolution::Micro => "microseconds",
        TsResolution::Nano => "nanoseconds",
    };
    format!("{kind}, {o}, {r}, {link}")
}

fn link_label(link: Link) -> String {
    match link {
        Link::Ethernet => "Ethernet (1)".into(),
        Link::Vlan { id } => format!("Ethernet (1) + 802.1Q VLAN {id}"),
        Link::QinQ { outer, inner } => {
            format!("Ethernet (1) + QinQ (0x88a8 S-VLAN {outer}, 0x8100 C-VLAN {inner})")
        }
        Link::Pppoe { session } => format!("Ethernet (1) + PPPoE session {session:#06x}"),
        Link::Sll => "Linux cooked SLL (113)".into(),
        Link::Sll2 { ifindex } => format!("Linux cooked SLL2 (276), ifindex {ifindex}"),
        Link::RawIp => "raw IP (101)".into(),
        Link::Null { ipv6_family } => {
            format!("BSD NULL (0), AF_INET 2 / AF_INET6 {ipv6_family}, little-endian")
        }
    }
}

fn pcap_demo(
    name: &'static str,
    link: Link,
    order: ByteOrder,
    res: TsResolution,
    packets: &[Packet],
    tally: Tally,
    expect: String,
) -> Demo {
    let bytes = writer::pcap_bytes_with(link, order, res, packets);
    Demo {
        name,
        format: format_name("pcap", order, res, &link_label(link)),
        frames: packets.len() as u64,
        tally,
        expect,
        bytes,
    }
}

/// A plain call written on one link.
fn call_demo(
    name: &'static str,
    link: Link,
    order: ByteOrder,
    res: TsResolution,
    script: CallScript,
    note: &str,
) -> Demo {
    let packets = script.to_vec();
    let mut tally = Tally::of(&packets);
    let f = script.facts();
    tally.sip_messages = f.sip_messages as u64;
    tally.rtp_packets = f.rtp_packets();
    let expect = format!(
        "{note}One call. {}",
        describe_call(&f, script.codec, script.start)
    );
    pcap_demo(name, link, order, res, &packets, tally, expect)
}

fn le_us() -> (ByteOrder, TsResolution) {
    (ByteOrder::Little, TsResolution::Micro)
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// Every bundled capture, built in memory.
pub fn demos() -> Vec<Demo> {
    let two = Duration::from_secs(2);
    let one = Duration::from_secs(1);
    let (le, us) = le_us();
    let mut out = vec![
        office_day(),
        call_demo(
            "call-ethernet.pcap",
            Link::Ethernet,
            le,
            us,
            CallScript::new(1).talk(two),
            "",
        ),
        call_demo(
            "call-vlan.pcap",
            Link::Vlan { id: 100 },
            le,
            us,
            CallScript::new(2)
                .talk(two)
                .codec(Codec::Pcma)
                .hangup_by(Party::Callee),
            "",
        ),
        call_demo(
            "call-qinq.pcap",
            Link::QinQ {
                outer: 200,
                inner: 100,
            },
            le,
            us,
            CallScript::new(3).talk(two),
            "",
        ),
        call_demo(
            "call-pppoe.pcap",
            Link::Pppoe { session: 0x2A17 },
            le,
            us,
            CallScript::new(4).talk(two).codec(Codec::Pcma),
            "PPP protocol 0x0021 (IPv4). ",
        ),
        call_demo(
            "call-pppoe-ipv6.pcap",
            Link::Pppoe { session: 0x2A18 },
            le,
            us,
            CallScript::new(5).talk(two).ipv6().hangup_by(Party::Callee),
            "PPP protocol 0x0057 (IPv6). ",
        ),
        call_demo(
            "call-sll.pcap",
            Link::Sll,
            le,
            us,
            CallScript::new(6).talk(two).codec(Codec::Pcma),
            "",
        ),
        call_demo(
            "call-sll2-ns.pcap",
            Link::Sll2 { ifindex: 2 },
            le,
            TsResolution::Nano,
            CallScript::new(7).talk(two).nanosecond_jitter(true),
            "RTP capture times carry sub-microsecond digits, which a reader must keep. ",
        ),
        call_demo(
            "call-raw.pcap",
            Link::RawIp,
            le,
            us,
            CallScript::new(8).talk(two),
            "",
        ),
        call_demo(
            "call-raw-ipv6.pcap",
            Link::RawIp,
            le,
            us,
            CallScript::new(9).talk(two).ipv6().codec(Codec::Pcma),
            "LINKTYPE_RAW holding IPv6 (the version nibble decides). ",
        ),
        call_demo(
            "call-null.pcap",
            Link::Null { ipv6_family: 24 },
            le,
            us,
            CallScript::new(10).talk(two),
            "Family 2 (AF_INET), little-endian. ",
        ),
        call_demo(
            "call-null-ipv6.pcap",
            Link::Null { ipv6_family: 30 },
            le,
            us,
            CallScript::new(11).talk(two).ipv6(),
            "Family 30 (macOS AF_INET6), little-endian. ",
        ),
        call_demo(
            "call-big-endian.pcap",
            Link::Ethernet,
            ByteOrder::Big,
            us,
            CallScript::new(12)
                .talk(two)
                .codec(Codec::Pcma)
                .hangup_by(Party::Callee),
            "Magic a1b2c3d4 read as big-endian: every record header field is big-endian. ",
        ),
        call_demo(
            "call-nanosecond.pcap",
            Link::Ethernet,
            le,
            TsResolution::Nano,
            CallScript::new(13).talk(two).nanosecond_jitter(true),
            "Magic a1b23c4d (nanoseconds); RTP times have sub-microsecond digits. ",
        ),
        call_demo(
            "call-ipv6-hop-by-hop.pcap",
            Link::Ethernet,
            le,
            us,
            CallScript::new(14)
                .talk(one)
                .ipv6()
                .ipv6_ext(Ipv6Ext::HopByHop),
            "Every SIP packet has an IPv6 Hop-by-Hop Options header (Router Alert) between \
             the IPv6 and UDP headers; RTP has none. ",
        ),
        call_demo(
            "call-ipv6-dstopts.pcap",
            Link::Ethernet,
            le,
            us,
            CallScript::new(15)
                .talk(one)
                .ipv6()
                .ipv6_ext(Ipv6Ext::DestinationOptions),
            "Every SIP packet has an IPv6 Destination Options header (PadN) before UDP. ",
        ),
    ];
    out.push(two_interfaces());
    out.extend(fragmented());
    out.push(sip_over_tcp());
    out.extend(tunnels());
    out.extend(icmp_unreachable());
    out.extend(damaged());
    out
}

/// One line of the office call table.
fn office_row(c: &OfficeCall) -> String {
    let rel = |t: Timestamp| {
        let s = t.since(office::OFFICE_START).as_secs_f64();
        format!("{:02}:{:06.3}", (s / 60.0) as u64, s % 60.0)
    };
    let outcome = match (c.outcome, c.hangup) {
        (Outcome::Answered, Some(p)) => {
            let side = match (c.direction, p) {
                ("internal", Party::Caller) => "the caller",
                ("internal", Party::Callee) => "the callee",
                ("incoming", Party::Caller) | ("outgoing", Party::Callee) => "the client",
                _ => "the operator",
            };
            format!(
                "answered at {}, {} s of talk, BYE from {side} at {}",
                rel(c.answer_time.expect("answered")),
                c.end_time
                    .since(c.answer_time.expect("answered"))
                    .as_secs_f64()
                    .round(),
                rel(c.end_time)
            )
        }
        (Outcome::Cancelled, _) => format!(
            "rings {} s, CANCEL at {} (200, 487, ACK)",
            c.end_time.since(c.invite_time).as_secs(),
            rel(c.end_time)
        ),
        (Outcome::Busy, _) => format!("486 Busy Here at {}, ACK", rel(c.end_time)),
        (Outcome::Answered, None) => unreachable!("answered calls end with a BYE"),
    };
    let client = match (&c.client, &c.client_name) {
        (Some(n), Some(name)) => format!("{n} (\"{name}\")"),
        (Some(n), None) => n.clone(),
        (None, _) => "-".into(),
    };
    let mut media = if c.rtp_packets == 0 {
        "-".to_string()
    } else {
        format!("{} {}", c.rtp_packets, c.codec.rtpmap_name())
    };
    if c.dtmf_packets > 0 {
        let _ = write!(
            media,
            " (of which {} telephone-event, digits {})",
            c.dtmf_packets, c.dtmf_digits
        );
    }
    let headers: Vec<String> = c.headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
    let headers = if headers.is_empty() {
        String::new()
    } else {
        format!("INVITE adds `{}`; ", headers.join("`, `"))
    };
    format!(
        "| {} | {} | {} | {} -> {} | {} | {} | {headers}{} | {} | {} | `{}` |\n",
        c.number,
        rel(c.invite_time),
        c.direction,
        c.caller,
        c.callee,
        c.operator,
        client,
        outcome,
        media,
        if c.exported { "yes" } else { "no" },
        c.call_id,
    )
}

/// The demo to replay first: a small office's morning, classified with no configuration.
fn office_day() -> Demo {
    let day = office::office_day();
    let mut tally = Tally::of(&day.packets);
    tally.sip_messages = day.sip_messages;
    tally.rtp_packets = day.rtp_packets;
    let names: Vec<String> = office::PHONES
        .iter()
        .map(|(ext, name)| format!("{ext} \"{name}\""))
        .collect();
    let mut expect = format!(
        "Ten minutes of one small office from 2026-03-04 09:00:00 UTC, the capture to replay \
         first (`calltap replay pcaps/office-day.pcap`, then `calltap calls --all`): no \
         configuration is needed to classify it. A proxy-like PBX at 10.1.0.5 (Kamailio) stays \
         in the signalling path, so every SIP message is seen twice, sender -> PBX and PBX -> \
         receiver, with the same Call-ID (one dialog per call, no B2BUA legs); media flows \
         end to end between the phone and the trunk's SBC. Desk phones 10.1.0.101-104 are \
         extensions {} (Yealink); the SIP trunk provider is 203.0.113.10. Every phone \
         registers at 00:01.5-00:05.1 (REGISTER with its display name, 401, REGISTER with \
         credentials, 200), so {} REGISTER transactions; the PBX sends the trunk an OPTIONS \
         every 30 s from 00:10 ({} pings, each answered 200). Incoming INVITEs come from the \
         trunk with the client in From and the extension in To without a name (the trunk \
         does not know it), addressed to `sip:EXT@10.1.0.5` and retargeted by the PBX to \
         the phone's contact; outgoing ones carry the operator's name in From. Each party \
         of an answered call sends talk spurts (a rising sweep, then silence) that fall \
         into the other party's pauses, a different sweep per party and call, so the two \
         channels of a recording are told apart by ear. {} SIP messages (both hops), {} \
         RTP packets.\n\n\
         | # | INVITE | direction | caller -> callee | operator | client | outcome | RTP | exported | Call-ID |\n\
         |---:|---|---|---|---|---|---|---|---|---|\n",
        names.join(", "),
        day.registrations,
        day.options_pings,
        day.sip_messages,
        day.rtp_packets,
    );
    for c in &day.calls {
        expect.push_str(&office_row(c));
    }
    expect.push_str(
        "\nWith no configuration a decoder must find 7 call attempts: 4 exported answered \
         calls (1, 2, 3, 6) with their direction, operator id (the extension), client number, \
         duration and who hung up; call 4 cancelled and call 5 busy (kept, not exported); \
         call 7 internal (answered, kept, not exported). Operator names: only outgoing and \
         internal INVITEs carry them in SIP (From); for incoming calls they come from the \
         REGISTERs. Call 6's client sends RFC 4733 events (payload type 101) for digit 1 \
         one second into his stream and digit 2 0.6 s later, each 5 updates then the end \
         packet 3 times, in place of his audio.",
    );
    let (le, us) = le_us();
    pcap_demo(
        "office-day.pcap",
        Link::Ethernet,
        le,
        us,
        &day.packets,
        tally,
        expect,
    )
}

fn two_interfaces() -> Demo {
    let a = CallScript::new(16).talk(Duration::from_secs(2));
    let b = CallScript::new(17)
        .caller(Phone::new("2001", v4(10, 0, 1, 10), 18000).display("Carol"))
        .callee(
            Phone::new("2002", v4(10, 0, 1, 20), 28000)
                .display("Dave")
                .signal(Signal::Chirp {
                    f0_hz: 300,
                    f1_hz: 3400,
                    period_ms: 1000,
                    amplitude: 7000,
                }),
        )
        .codec(Codec::Pcma)
        .start(a.start.saturating_add(Duration::from_millis(700)))
        .talk(Duration::from_secs(2))
        .hangup_by(Party::Callee)
        .nanosecond_jitter(true);
    let mut all: Vec<(u32, Packet)> = a
        .packets()
        .map(|p| (0, p))
        .chain(b.packets().map(|p| (1, p)))
        .collect();
    all.sort_by_key(|(_, p)| p.time);
    let ifaces = [
        Interface::new("eth0", Link::Ethernet, TsResolution::Micro),
        Interface::new("any", Link::Sll2 { ifindex: 3 }, TsResolution::Nano),
    ];
    let mut f = PcapNgFile::new(Vec::new(), &ifaces).expect("memory");
    for (i, p) in &all {
        f.write_packet(*i, p).expect("memory");
    }
    let frames = f.frames();
    let packets: Vec<Packet> = all.into_iter().map(|(_, p)| p).collect();
    let mut tally = Tally::of(&packets);
    let (fa, fb) = (a.facts(), b.facts());
    tally.sip_messages = (fa.sip_messages + fb.sip_messages) as u64;
    tally.rtp_packets = fa.rtp_packets() + fb.rtp_packets();
    Demo {
        name: "two-interfaces.pcapng",
        format: "pcapng, one section, interface 0 `eth0` Ethernet if_tsresol 6 (microseconds), \
                 interface 1 `any` SLL2 if_tsresol 9 (nanoseconds)"
            .into(),
        frames,
        tally,
        expect: format!(
            "Two different, overlapping calls, one per interface, interleaved in time order. \
             Interface 0: {} Interface 1 (callee sends a 300-3400 Hz chirp): {}",
            describe_call(&fa, a.codec, a.start),
            describe_call(&fb, b.codec, a.start)
        ),
        bytes: f.finish().expect("memory"),
    }
}

fn fragmented() -> Vec<Demo> {
    let (le, us) = le_us();
    let v4 = CallScript::new(18)
        .talk(Duration::from_secs(1))
        .sdp_padding(3000)
        .fragment(Fragmentation::mtu(1500).order(FragOrder::Permuted(vec![0, 2, 1])));
    let v6 = CallScript::new(19)
        .talk(Duration::from_secs(1))
        .ipv6()
        .sdp_padding(2800)
        .fragment(Fragmentation::mtu(1280).order(FragOrder::Reversed));
    let bogus = CallScript::new(20)
        .talk(Duration::from_secs(1))
        .sdp_padding(3000)
        .fragment(Fragmentation::mtu(1500).overlap(1));
    let invite_len = |s: &CallScript| s.sip_messages()[0].bytes.len();
    let mut out = vec![
        call_demo(
            "fragmented-invite-ipv4.pcap",
            Link::Ethernet,
            le,
            us,
            v4.clone(),
            &format!(
                "The INVITE ({} bytes of SIP, large SDP) is one UDP datagram cut into 3 IPv4 \
                 fragments (MTU 1500: 1480 + 1480 + rest), sent in the order 1st, 3rd, 2nd; \
                 reassembled, its UDP checksum is valid. ",
                invite_len(&v4)
            ),
        ),
        call_demo(
            "fragmented-invite-ipv6.pcap",
            Link::Ethernet,
            le,
            us,
            v6.clone(),
            &format!(
                "The INVITE ({} bytes of SIP) is cut into 3 IPv6 fragments (Fragment header, \
                 MTU 1280: 1232 + 1232 + rest) sent last first. ",
                invite_len(&v6)
            ),
        ),
        call_demo(
            "fragmented-overlap-ipv4.pcap",
            Link::Ethernet,
            le,
            us,
            bogus.clone(),
            &format!(
                "The INVITE ({} bytes) comes as 3 good IPv4 fragments plus, just before the 2nd, \
                 a bogus fragment overlapping the end of the 1st and most of the 2nd (0xEE \
                 bytes). Overlaps are an attack pattern (RFC 5722; Linux drops such datagrams \
                 since CVE-2018-5391): the decoder must drop the INVITE and count it, never \
                 deliver a message containing 0xEE; the rest of the call (6 SIP messages, \
                 RTP) decodes normally. (tshark 4.0 reassembles it with the bogus bytes and \
                 reports a bad UDP checksum on the result: that error is the point.) ",
                invite_len(&bogus)
            ),
        ),
    ];
    // In the overlap file the decoder drops the INVITE: one datagram and one SIP message
    // fewer than were sent.
    if let Some(d) = out.last_mut() {
        d.tally.sip_messages -= 1;
        d.tally.udp_datagrams -= 1;
    }
    out
}

/// SIP over TCP with every stream-reassembly trouble in one connection.
fn sip_over_tcp() -> Demo {
    let script = CallScript::new(30)
        .talk(Duration::from_secs(1))
        .transport(SipTransport::Tcp)
        .hangup_by(Party::Callee);
    let msgs = script.sip_messages();
    let client = SocketAddr::new(script.caller.addr, 49732);
    let server = script.callee.sip_addr();
    // The client's sequence numbers wrap past 2^32 inside the INVITE.
    let mut c = TcpConn::with_isn(client, server, u32::MAX - 300, 0x3C5D_0F12);
    let ms = |m: u64| Duration::from_millis(m);
    let us = |u: u64| Duration::from_micros(u);
    let at = |t: Timestamp, d: Duration| t.saturating_add(d);
    let opened = Timestamp::from_nanos(msgs[0].time.as_nanos() - 3_000_000);
    let mut p = c.handshake(opened, us(900));
    let mut notes = Vec::new();

    // INVITE in 3 segments cut at 200 and 500; the 3rd is retransmitted 250 ms later.
    let inv = &msgs[0];
    let segs = c.data_split(Side::Client, inv.time, &inv.bytes, &[200, 500], us(40));
    notes.push(format!(
        "INVITE ({} bytes) in 3 segments (bytes 0-199, 200-499, 500-{}); client seq wraps \
         from {:#x} past 2^32 inside the 2nd segment",
        inv.bytes.len(),
        inv.bytes.len() - 1,
        u32::MAX - 299
    ));
    let retrans = segs[2].at(at(inv.time, ms(250)));
    p.extend(segs);
    p.push(c.ack(Side::Server, at(inv.time, us(400))));
    p.push(retrans);
    notes.push("the INVITE's 3rd segment is retransmitted (same bytes) 250 ms later".into());

    // 100 Trying and 180 Ringing coalesced into one segment at the 180's time.
    let (trying, ringing) = (&msgs[1], &msgs[2]);
    let both = [trying.bytes.as_slice(), ringing.bytes.as_slice()].concat();
    p.push(c.data(Side::Server, ringing.time, &both));
    p.push(c.ack(Side::Client, at(ringing.time, us(300))));
    notes.push("100 Trying and 180 Ringing coalesced into one segment".into());

    // 200 OK cut at the end of its headers; the body segment arrives first.
    let ok = &msgs[3];
    let head = ok
        .bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end")
        + 4;
    let parts = c.data_split(Side::Server, ok.time, &ok.bytes, &[head], us(30));
    p.push(parts[1].at(ok.time));
    p.push(parts[0].at(at(ok.time, us(500))));
    p.push(c.ack(Side::Client, at(ok.time, us(900))));
    notes.push(format!(
        "200 OK in 2 segments (headers {} bytes, SDP body {} bytes) captured body first",
        head,
        ok.bytes.len() - head
    ));

    // ACK and BYE one segment each; the 200 OK to the BYE split inside a header line.
    let ack = &msgs[4];
    p.push(c.data(Side::Client, ack.time, &ack.bytes));
    p.push(c.ack(Side::Server, at(ack.time, us(300))));
    let bye = &msgs[5];
    p.push(c.data(Side::Server, bye.time, &bye.bytes));
    p.push(c.ack(Side::Client, at(bye.time, us(300))));
    let bye_ok = &msgs[6];
    let cut = bye_ok
        .bytes
        .windows(15)
        .position(|w| w == b"Content-Length:")
        .expect("header")
        + 8;
    p.extend(c.data_split(Side::Client, bye_ok.time, &bye_ok.bytes, &[cut], us(60)));
    notes.push(format!(
        "the 200 OK to BYE is cut inside its Content-Length header (byte {cut})"
    ));
    p.push(c.ack(Side::Server, at(bye_ok.time, us(400))));
    // Orderly close, client first.
    let end = at(bye_ok.time, ms(5));
    p.push(c.fin(Side::Client, end));
    p.push(c.fin(Side::Server, at(end, us(300))));
    p.push(c.ack(Side::Client, at(end, us(600))));
    notes.push("FIN from each side, then the last ACK".into());

    for party in [Party::Caller, Party::Callee] {
        let s = script.rtp_stream(party);
        p.extend((0..s.count).map(|k| s.packet(k)));
    }
    p.sort_by_key(|x| x.time);
    let mut tally = Tally::of(&p);
    let f = script.facts();
    tally.sip_messages = 7;
    tally.rtp_packets = f.rtp_packets();
    let (le, us) = le_us();
    pcap_demo(
        "sip-tcp-segmented.pcap",
        Link::Ethernet,
        le,
        us,
        &p,
        tally,
        format!(
            "SIP over one TCP connection {client} -> {server}: {}. Reassembled, the stream \
             holds exactly 7 SIP messages in order (the retransmitted bytes once; tshark flags \
             the retransmission and out-of-order segments by design). RTP over UDP. {}",
            notes.join("; "),
            describe_call(&f, script.codec, script.start)
        ),
    )
}

fn tunnels() -> Vec<Demo> {
    let (le, us) = le_us();
    let probe = Ipv4Addr::new(192, 0, 2, 10);
    let collector = Ipv4Addr::new(192, 0, 2, 200);
    let cases: [(&'static str, Tunnel, CallScript, &str); 5] = [
        (
            "erspan2.pcap",
            Tunnel::ErspanII {
                src: probe,
                dst: collector,
                session: 17,
            },
            CallScript::new(21).talk(Duration::from_secs(1)),
            "Each frame: Ethernet / IPv4 192.0.2.10 -> 192.0.2.200 / GRE (S bit, sequence \
             numbers from 1, protocol 0x88BE) / ERSPAN type II (8 bytes, session 17) / the \
             mirrored Ethernet frame / IPv4 / UDP. ",
        ),
        (
            "erspan3.pcap",
            Tunnel::ErspanIII {
                src: probe,
                dst: collector,
                session: 18,
                platform_subheader: false,
            },
            CallScript::new(22)
                .talk(Duration::from_secs(1))
                .codec(Codec::Pcma),
            "Each frame: Ethernet / IPv4 / GRE (protocol 0x22EB) / ERSPAN type III (12 bytes, \
             O flag clear, 100 us timestamp) / mirrored Ethernet / IPv4 / UDP. ",
        ),
        (
            "erspan3-subheader.pcap",
            Tunnel::ErspanIII {
                src: probe,
                dst: collector,
                session: 19,
                platform_subheader: true,
            },
            CallScript::new(23).talk(Duration::from_secs(1)),
            "As erspan3.pcap but with the O flag set: an 8-byte platform-specific subheader \
             (platform id 3) follows the 12-byte header, 20 bytes before the mirrored frame. ",
        ),
        (
            "ipip.pcap",
            Tunnel::IpInIp {
                src: Ipv4Addr::new(198, 51, 100, 1),
                dst: Ipv4Addr::new(198, 51, 100, 2),
            },
            CallScript::new(24).talk(Duration::from_secs(1)),
            "Each frame: Ethernet / IPv4 198.51.100.1 -> 198.51.100.2 protocol 4 / inner IPv4 \
             / UDP. ",
        ),
        (
            "ip6in4.pcap",
            Tunnel::IpInIp {
                src: Ipv4Addr::new(198, 51, 100, 1),
                dst: Ipv4Addr::new(198, 51, 100, 2),
            },
            CallScript::new(25).talk(Duration::from_secs(1)).ipv6(),
            "Each frame: Ethernet / IPv4 protocol 41 / inner IPv6 / UDP (a 6in4 tunnel). ",
        ),
    ];
    cases
        .into_iter()
        .map(|(name, tunnel, script, note)| {
            let inner = script.to_vec();
            let mut tally = Tally::of(&inner);
            let f = script.facts();
            tally.sip_messages = 7;
            tally.rtp_packets = f.rtp_packets();
            let outer: Vec<Packet> = inner
                .iter()
                .enumerate()
                .map(|(i, p)| Packet::new(p.time, tunnel.wrap(&p.data, i as u32 + 1, p.time)))
                .collect();
            pcap_demo(
                name,
                Link::Ethernet,
                le,
                us,
                &outer,
                tally,
                format!(
                    "{note}Counts are of the inner packets. One call. {}",
                    describe_call(&f, script.codec, script.start)
                ),
            )
        })
        .collect()
}

/// Media that outlives the hangup: the callee's last RTP packets reach a closed port and
/// the caller's host answers each with an ICMP error quoting the whole RTP packet.
fn icmp_unreachable() -> Vec<Demo> {
    let (le, us) = le_us();
    [
        (
            "icmp-port-unreachable.pcap",
            CallScript::new(26).talk(Duration::from_secs(1)),
            "ICMPv4 type 3 code 3",
        ),
        (
            "icmpv6-port-unreachable.pcap",
            CallScript::new(27).talk(Duration::from_secs(1)).ipv6(),
            "ICMPv6 type 1 code 4",
        ),
    ]
    .into_iter()
    .map(|(name, script, kind)| {
        let mut p = script.to_vec();
        let late = script.rtp_stream(Party::Callee);
        for k in late.count..late.count + 3 {
            let rtp = late.packet(k);
            let icmp = wire::icmp_port_unreachable(&rtp.data);
            let t = rtp.time.saturating_add(Duration::from_micros(85));
            p.push(rtp);
            p.push(Packet::new(t, icmp));
        }
        p.sort_by_key(|x| x.time);
        let mut tally = Tally::of(&p);
        let f = script.facts();
        tally.sip_messages = 7;
        tally.rtp_packets = f.rtp_packets() + 3;
        pcap_demo(
            name,
            Link::Ethernet,
            le,
            us,
            &p,
            tally,
            format!(
                "After the BYE the callee sends 3 more RTP packets (sequence numbers continue) to \
                 the caller's closed port; each is answered within 85 us by an {kind} from the \
                 caller quoting the whole RTP packet (IP + UDP + RTP). The quoted copies are not \
                 media: a decoder must not count them as RTP of the call (nor as duplicates). \
                 One call. {}",
                describe_call(&f, script.codec, script.start)
            ),
        )
    })
    .collect()
}

fn damaged() -> Vec<Demo> {
    let (le, us) = le_us();
    let call = |seed| CallScript::new(seed).talk(Duration::from_secs(1));
    let mut out = Vec::new();

    let script = call(31);
    let p = script.to_vec();
    let whole = writer::pcap_bytes(Link::Ethernet, &p);
    let cut_at = p.len() / 2;
    out.push(Demo {
        name: "truncated.pcap",
        format: format_name("pcap", le, us, "Ethernet (1)"),
        frames: cut_at as u64,
        tally: Tally::default(),
        expect: format!(
            "A {}-frame call file cut inside record {cut_at} (0-based): its 16-byte header and \
             half its data remain, as when tcpdump is killed. A reader returns the first \
             {cut_at} frames intact, then reports a truncated last record; no panic, no \
             partial frame handed on.",
            p.len()
        ),
        bytes: writer::truncate_in_record(whole, cut_at),
    });

    let script = call(32);
    let p = script.to_vec();
    let bad = p.len() / 2;
    out.push(Demo {
        name: "corrupt-record.pcap",
        format: format_name("pcap", le, us, "Ethernet (1)"),
        frames: bad as u64,
        tally: Tally::default(),
        expect: format!(
            "A {}-frame call file whose record {bad} (0-based) has a garbage header: captured \
             length 0x00FFFF00 (beyond the 262144 snap length) and original length 64. A reader \
             returns the {bad} frames before it intact and then stops with an error (the \
             record boundary is lost; a reader that resynchronises by scanning for a plausible \
             header may recover the {} frames after it). No allocation of the bogus length.",
            p.len(),
            p.len() - bad - 1
        ),
        bytes: writer::corrupt_pcap_record(writer::pcap_bytes(Link::Ethernet, &p), bad),
    });

    let script = call(33);
    let p = script.to_vec();
    let mut f = PcapNgFile::new(
        Vec::new(),
        &[Interface::new("eth0", Link::Ethernet, TsResolution::Micro)],
    )
    .expect("memory");
    for x in &p {
        f.write_packet(0, x).expect("memory");
    }
    let bad = p.len() / 2;
    out.push(Demo {
        name: "corrupt-block.pcapng",
        format: "pcapng, little-endian, one interface Ethernet (microseconds)".into(),
        frames: p.len() as u64 - 1,
        tally: Tally::default(),
        expect: format!(
            "A {}-packet call whose Enhanced Packet Block {bad} (0-based among packet blocks) is \
             corrupt inside: interface id 0xDEAD (no such interface) and captured length \
             0xFFFF0000 (longer than the block). Both copies of the block's total length are \
             intact, so a reader skips exactly that block and returns the other {} frames; the \
             lost one is an RTP packet or SIP message of the call (a decoder sees a one-packet \
             gap).",
            p.len(),
            p.len() - 1
        ),
        bytes: writer::corrupt_pcapng_packet(f.finish().expect("memory"), bad),
    });
    out
}

/// Writes every demo into `dir` plus its README.md.
pub fn write_demos(dir: &Path) -> io::Result<Vec<Demo>> {
    std::fs::create_dir_all(dir)?;
    let demos = demos();
    for d in &demos {
        std::fs::write(dir.join(d.name), &d.bytes)?;
    }
    std::fs::write(dir.join("README.md"), readme(&demos))?;
    Ok(demos)
}

/// The README of `pcaps/`.
pub fn readme(demos: &[Demo]) -> String {
    let mut s = String::new();
    s.push_str(
        "# Generated captures\n\n\
         Made by calltap's own generator (`src/pcapgen/`), not captured: every byte is \
         deterministic, so each file is reproduced exactly by\n\n\
         ```\ncargo run --bin calltap-pcapgen -- --out pcaps\n```\n\n\
         They cover what the third-party captures in `../shared/pcaps` (MANIFEST.md) lack: \
         every link type calltap reads, both pcap byte orders and resolutions, pcapng with \
         mixed interfaces, fragmented SIP over IPv4 and IPv6, SIP over TCP with hostile \
         segmentation, ERSPAN and IP-in-IP tunnels, ICMP errors quoting RTP, damaged files. \
         Start with `office-day.pcap`: a small office's morning, the demo of what calltap \
         does with no configuration (it is described on its own below).\n\n\
         Common to every call of the other files: SIP over UDP port 5060 unless noted; the caller (Alice, 1001, \
         10.0.0.10 or 2001:db8::10) calls the callee (Bob, 1002, 10.0.0.20 or 2001:db8::20); \
         INVITE with SDP offer `m=audio PORT RTP/AVP 0 8 101`, 100 Trying, 180 Ringing \
         (To-tag), 200 OK with the SDP answer (one codec + telephone-event), ACK, then G.711 \
         RTP both ways (20 ms, 160-byte payloads), then BYE and its 200 OK: 7 SIP messages. \
         The caller sends a 440 Hz tone (amplitude 8000), the callee a 1000 Hz tone \
         (amplitude 6000), encoded with `pcapgen::g711`, so a decoded channel can be checked \
         sample by sample against `Signal::sample`. Times are relative to the INVITE; the \
         first INVITE of every file is at 2026-01-15 10:00:00 UTC. Checksums (IPv4 header, \
         UDP, TCP, ICMP) are all valid except where a file says otherwise.\n\n\
         Columns: *frames* = records in the file; *UDP* = UDP datagrams after IP \
         reassembly; *frags* = IP fragment packets; *TCP* = TCP segments (with data); \
         *SIP* = SIP messages a decoder must extract; *RTP* = RTP packets of the call(s) \
         (both directions). For tunnels the counts are of the inner packets.\n\n\
         | File | Size | Format / link | frames | UDP | frags | TCP | SIP | RTP |\n\
         |---|---:|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for d in demos {
        let t = &d.tally;
        let dash = |n: u64| {
            if n == 0 {
                "-".to_string()
            } else {
                n.to_string()
            }
        };
        let tcp = if t.tcp_segments == 0 {
            "-".to_string()
        } else {
            format!("{} ({})", t.tcp_segments, t.tcp_data_segments)
        };
        let _ = writeln!(
            s,
            "| [{}](#{}) | {} B | {} | {} | {} | {} | {} | {} | {} |",
            d.name,
            d.name.replace('.', ""),
            d.bytes.len(),
            d.format,
            d.frames,
            dash(t.udp_datagrams),
            dash(t.fragments),
            tcp,
            dash(t.sip_messages),
            dash(t.rtp_packets),
        );
    }
    s.push('\n');
    for d in demos {
        let _ = write!(
            s,
            "## {}\n\n- Format: {}\n- Frames: {}",
            d.name, d.format, d.frames
        );
        if d.tally.icmp > 0 {
            let _ = write!(s, "; ICMP errors: {}", d.tally.icmp);
        }
        let _ = write!(s, "\n- Expect: {}\n\n", d.expect);
    }
    s.push_str(
        "## Load captures (not bundled)\n\n\
         Benchmarks generate their input instead of storing it:\n\n\
         ```\ncargo run --release --bin calltap-pcapgen -- load --calls 500 --seconds 60 --out /tmp/load.pcap\n\
         cargo run --release --bin calltap-pcapgen -- load --short-calls 100000 --seconds 600 --out /tmp/sip-heavy.pcap\n```\n\n\
         The first writes 500 concurrent calls (phones 10.20.x.y through a PBX at 10.0.0.5, \
         starts staggered over the first 3 s, each with its full SIP exchange and 50 packets/s \
         of RTP each way), about 2.8 M frames; the second 100000 short calls (0.2 s of talk) \
         spread over the capture. Both print the call, SIP and RTP counts.\n",
    );
    s
}
