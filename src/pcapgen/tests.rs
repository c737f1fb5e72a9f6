//! Checks of the generator against independent parsers (etherparse, pcap-file) and by
//! hand: checksums, lengths, fragment reassembly, TCP sequence arithmetic, file formats.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;

use super::demo;
use super::g711::{encode_signal, SAMPLES_PER_PACKET};
use super::writer::{self, corrupt_pcap_record, truncate_in_record};
use super::*;

/// Re-parses an IP packet with etherparse and checks every checksum and length in it.
/// Returns the transport payload (UDP/TCP), or `None` for a fragment or ICMP.
fn verify_ip(ip: &[u8]) -> Option<Vec<u8>> {
    let s =
        SlicedPacket::from_ip(ip).unwrap_or_else(|e| panic!("etherparse rejects packet: {e:?}"));
    let (src4, src6, frag) = match s.net.as_ref().expect("net layer") {
        NetSlice::Ipv4(v4) => {
            let h = v4.header();
            assert_eq!(
                h.header_checksum(),
                h.to_header().calc_header_checksum(),
                "IPv4 header checksum"
            );
            assert_eq!(usize::from(h.total_len()), ip.len(), "IPv4 total length");
            (Some(h.to_header()), None, v4.is_payload_fragmented())
        }
        NetSlice::Ipv6(v6) => {
            let h = v6.header();
            assert_eq!(
                usize::from(h.payload_length()) + 40,
                ip.len(),
                "IPv6 payload length"
            );
            (None, Some(h.to_header()), v6.is_payload_fragmented())
        }
        other => panic!("unexpected net slice {other:?}"),
    };
    if frag {
        return None;
    }
    match s.transport.expect("transport layer") {
        TransportSlice::Udp(u) => {
            let h = u.to_header();
            assert_eq!(usize::from(h.length), 8 + u.payload().len(), "UDP length");
            let want = match (&src4, &src6) {
                (Some(v4), _) => h.calc_checksum_ipv4(v4, u.payload()).expect("size"),
                (_, Some(v6)) => h.calc_checksum_ipv6(v6, u.payload()).expect("size"),
                _ => unreachable!(),
            };
            assert_eq!(h.checksum, want, "UDP checksum");
            Some(u.payload().to_vec())
        }
        TransportSlice::Tcp(t) => {
            let h = t.to_header();
            let want = match (&src4, &src6) {
                (Some(v4), _) => h.calc_checksum_ipv4(v4, t.payload()).expect("size"),
                (_, Some(v6)) => h.calc_checksum_ipv6(v6, t.payload()).expect("size"),
                _ => unreachable!(),
            };
            assert_eq!(h.checksum, want, "TCP checksum");
            Some(t.payload().to_vec())
        }
        TransportSlice::Icmpv4(i) => {
            assert_eq!(wire::checksum(i.slice()), 0, "ICMPv4 checksum");
            None
        }
        TransportSlice::Icmpv6(i) => {
            let v6 = src6.expect("ICMPv6 over IPv6");
            assert!(
                i.is_checksum_valid(v6.source, v6.destination),
                "ICMPv6 checksum"
            );
            None
        }
        other => panic!("unexpected transport {other:?}"),
    }
}

#[test]
fn call_packets_have_valid_checksums_v4_v6_udp_tcp() {
    let scripts = [
        CallScript::new(1).talk(Duration::from_millis(300)),
        CallScript::new(2).talk(Duration::from_millis(300)).ipv6(),
        CallScript::new(3)
            .talk(Duration::from_millis(300))
            .transport(SipTransport::Tcp),
        CallScript::new(4)
            .talk(Duration::from_millis(300))
            .ipv6()
            .transport(SipTransport::Tcp),
        CallScript::new(5)
            .talk(Duration::from_millis(300))
            .ipv6()
            .ipv6_ext(Ipv6Ext::HopByHop),
        CallScript::new(6)
            .talk(Duration::from_millis(300))
            .ipv6()
            .ipv6_ext(Ipv6Ext::DestinationOptions),
    ];
    for s in scripts {
        let packets = s.to_vec();
        assert!(
            packets.windows(2).all(|w| w[0].time <= w[1].time),
            "time order"
        );
        let payloads: Vec<Vec<u8>> = packets.iter().filter_map(|p| verify_ip(&p.data)).collect();
        let sip = payloads
            .iter()
            .filter(|p| {
                p.starts_with(b"SIP/2.0")
                    || p.get(..3) == Some(b"INV")
                    || p.starts_with(b"ACK")
                    || p.starts_with(b"BYE")
            })
            .count();
        assert_eq!(sip, 7, "seed {}", s.seed);
        let f = s.facts();
        let rtp = payloads
            .iter()
            .filter(|p| p.len() == 172 && p[0] == 0x80)
            .count() as u64;
        assert_eq!(rtp, f.rtp_packets());
    }
}

#[test]
fn icmp_errors_quote_the_rtp_and_checksum() {
    for s in [CallScript::new(9), CallScript::new(9).ipv6()] {
        let rtp = s.rtp_stream(Party::Callee).packet(3);
        let icmp = wire::icmp_port_unreachable(&rtp.data);
        assert_eq!(verify_ip(&icmp), None);
        let hdr = if s.caller.addr.is_ipv4() { 20 } else { 40 };
        assert_eq!(&icmp[hdr + 8..], &rtp.data[..], "whole packet quoted");
    }
}

#[test]
fn sip_messages_are_well_formed() {
    for hangup in [Party::Caller, Party::Callee] {
        let s = CallScript::new(42).hangup_by(hangup).codec(Codec::Pcma);
        let ids = s.ids();
        let msgs = s.sip_messages();
        let labels: Vec<_> = msgs.iter().map(|m| m.label).collect();
        assert_eq!(
            labels,
            [
                "INVITE",
                "100 Trying",
                "180 Ringing",
                "200 OK",
                "ACK",
                "BYE",
                "200 OK (BYE)"
            ]
        );
        for m in &msgs {
            let text = std::str::from_utf8(&m.bytes).expect("utf8");
            let (head, body) = text.split_once("\r\n\r\n").expect("header end");
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .unwrap_or_else(|| panic!("{} lacks {name}", m.label))
            };
            assert_eq!(
                header("Content-Length").parse::<usize>().expect("number"),
                body.len()
            );
            assert_eq!(header("Call-ID"), ids.call_id);
            assert!(header("Via").contains(";branch=z9hG4bK"));
            assert!(header("From").contains(";tag="));
            assert!(header("CSeq")
                .chars()
                .next()
                .expect("cseq")
                .is_ascii_digit());
            if !m.label.starts_with("100") && !m.label.starts_with("INVITE") {
                assert!(
                    header("To").contains(&format!("tag={}", ids.to_tag))
                        || header("From").contains(&ids.to_tag)
                );
            }
            if !body.is_empty() {
                assert_eq!(header("Content-Type"), "application/sdp");
                assert!(body.contains("a=sendrecv") && body.contains("c=IN IP4 "));
            }
            if matches!(m.label, "INVITE" | "ACK" | "BYE") {
                header("Max-Forwards");
            }
            if matches!(m.label, "INVITE" | "180 Ringing" | "200 OK") {
                header("Contact");
            }
        }
        assert!(std::str::from_utf8(&msgs[0].bytes)
            .expect("utf8")
            .contains("m=audio 16000 RTP/AVP 0 8 101"));
        assert!(std::str::from_utf8(&msgs[3].bytes)
            .expect("utf8")
            .contains("m=audio 26000 RTP/AVP 8 101"));
        let bye = std::str::from_utf8(&msgs[5].bytes).expect("utf8");
        let from_line = bye.lines().find(|l| l.starts_with("From:")).expect("From");
        let want_tag = match hangup {
            Party::Caller => &ids.from_tag,
            Party::Callee => &ids.to_tag,
        };
        assert!(
            from_line.ends_with(&format!("tag={want_tag}")),
            "BYE From-tag names who hung up"
        );
    }
}

#[test]
fn rtp_payloads_are_the_encoded_signal() {
    let s = CallScript::new(5)
        .codec(Codec::Pcma)
        .talk(Duration::from_millis(500));
    for party in [Party::Caller, Party::Callee] {
        let st = s.rtp_stream(party);
        let signal = match party {
            Party::Caller => s.caller.signal,
            Party::Callee => s.callee.signal,
        };
        for k in 0..st.count {
            let p = st.packet(k);
            let payload = verify_ip(&p.data).expect("udp");
            assert_eq!(payload[1] & 0x7F, 8);
            assert_eq!(
                payload[1] & 0x80 != 0,
                k == 0,
                "marker on the first packet only"
            );
            assert_eq!(
                u16::from_be_bytes([payload[2], payload[3]]),
                st.seq0.wrapping_add(k as u16)
            );
            let ts = u32::from_be_bytes(payload[4..8].try_into().expect("4"));
            assert_eq!(ts, st.ts0.wrapping_add(k as u32 * 160));
            let mut want = [0u8; SAMPLES_PER_PACKET];
            encode_signal(Codec::Pcma, &signal, k * 160, &mut want);
            assert_eq!(&payload[12..], &want[..]);
        }
    }
}

/// Reassembles IPv4 fragments by hand: returns the payload once every byte is present,
/// or an error on overlapping data.
fn reassemble_v4(frags: &[Vec<u8>]) -> Result<(u8, Vec<u8>), String> {
    let mut pieces = BTreeMap::new();
    let mut total = None;
    let mut proto = 0;
    for f in frags {
        assert!(verify_ip(f).is_none(), "fragments parse as fragments");
        let fo = u16::from_be_bytes([f[6], f[7]]);
        let off = usize::from(fo & 0x1FFF) * 8;
        let data = f[20..].to_vec();
        if fo & 0x2000 == 0 {
            total = Some(off + data.len());
        }
        proto = f[9];
        if let Some(prev) = pieces.insert(off, data) {
            return Err(format!("duplicate offset {off} ({} bytes)", prev.len()));
        }
    }
    let mut out = Vec::new();
    for (off, d) in pieces {
        if off != out.len() {
            return Err(format!("hole or overlap at {off}, have {}", out.len()));
        }
        out.extend(d);
    }
    (Some(out.len()) == total)
        .then_some((proto, out))
        .ok_or("incomplete".into())
}

#[test]
fn ipv4_fragments_reassemble_to_the_datagram() {
    let s = CallScript::new(18).sdp_padding(3000);
    let invite = &s.sip_messages()[0];
    let src = s.caller.sip_addr();
    let dst = s.callee.sip_addr();
    let whole = wire::udp(src, dst, &invite.bytes);
    for order in [
        FragOrder::InOrder,
        FragOrder::Reversed,
        FragOrder::Permuted(vec![0, 2, 1]),
    ] {
        let frags = wire::fragment_ipv4(&whole, &Fragmentation::mtu(1500).order(order.clone()));
        assert_eq!(frags.len(), 3);
        assert!(frags.iter().all(|f| f.len() <= 1500));
        let (proto, payload) = reassemble_v4(&frags).expect("reassembles");
        assert_eq!(proto, wire::PROTO_UDP);
        assert_eq!(payload, whole[20..]);
        // The reassembled datagram's checksum is right (etherparse on a rebuilt packet).
        let rebuilt = wire::ipv4(
            "10.0.0.10".parse().expect("ip"),
            "10.0.0.20".parse().expect("ip"),
            wire::PROTO_UDP,
            &payload,
            &IpOpts::default(),
        );
        assert_eq!(verify_ip(&rebuilt).expect("udp"), invite.bytes);
    }
    let bogus = wire::fragment_ipv4(&whole, &Fragmentation::mtu(1500).overlap(1));
    assert_eq!(bogus.len(), 4);
    assert!(reassemble_v4(&bogus).is_err(), "overlap is detectable");
}

#[test]
fn ipv6_fragments_reassemble_to_the_datagram() {
    let s = CallScript::new(19).ipv6().sdp_padding(2800);
    let invite = &s.sip_messages()[0];
    let whole = wire::udp(s.caller.sip_addr(), s.callee.sip_addr(), &invite.bytes);
    let frags = wire::fragment_ipv6(
        &whole,
        &Fragmentation::mtu(1280).order(FragOrder::Reversed),
        77,
    );
    assert_eq!(frags.len(), 3);
    let mut pieces = BTreeMap::new();
    for f in &frags {
        assert!(f.len() <= 1280);
        assert!(verify_ip(f).is_none());
        assert_eq!(f[6], wire::PROTO_FRAGMENT);
        assert_eq!(f[40], wire::PROTO_UDP);
        assert_eq!(u32::from_be_bytes(f[44..48].try_into().expect("4")), 77);
        let fo = u16::from_be_bytes([f[42], f[43]]);
        pieces.insert(usize::from(fo & !7), f[48..].to_vec());
    }
    let mut payload = Vec::new();
    for (off, d) in pieces {
        assert_eq!(off, payload.len());
        payload.extend(d);
    }
    assert_eq!(payload, whole[40..]);
}

#[test]
fn tcp_sequence_numbers_wrap_and_reassemble() {
    let c_addr: SocketAddr = "10.0.0.10:49732".parse().expect("addr");
    let s_addr: SocketAddr = "10.0.0.20:5060".parse().expect("addr");
    let mut c = TcpConn::with_isn(c_addr, s_addr, u32::MAX - 10, 5);
    let t = calltap_time(0);
    let hs = c.handshake(t, Duration::from_millis(1));
    let seg = |p: &Packet| {
        let d = &p.data;
        (
            u32::from_be_bytes(d[24..28].try_into().expect("4")),
            u32::from_be_bytes(d[28..32].try_into().expect("4")),
            d[33],
        )
    };
    assert_eq!(seg(&hs[0]), (u32::MAX - 10, 0, 0x02));
    assert_eq!(seg(&hs[1]), (5, u32::MAX - 9, 0x12));
    assert_eq!(seg(&hs[2]), (u32::MAX - 9, 6, 0x10));
    let msg = b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\n".repeat(3);
    let parts = c.data_split(Side::Client, t, &msg, &[5, 20], Duration::from_micros(10));
    assert_eq!(parts.len(), 3);
    // Reassemble by sequence number (relative to the ISN, so the wrap is harmless).
    let mut stream = BTreeMap::new();
    for p in parts.iter().rev() {
        let payload = verify_ip(&p.data).expect("tcp");
        let rel = seg(p).0.wrapping_sub(u32::MAX - 9);
        stream.insert(rel, payload);
    }
    assert!(
        seg(&parts[1]).0 > u32::MAX - 10 && seg(&parts[2]).0 < 100,
        "wraps in the 2nd piece"
    );
    let joined: Vec<u8> = stream.into_values().flatten().collect();
    assert_eq!(joined, msg);
    let reply = c.data(Side::Server, t, b"SIP/2.0 200 OK\r\n\r\n");
    assert_eq!(
        seg(&reply).1,
        (u32::MAX - 9).wrapping_add(msg.len() as u32),
        "acks all client data"
    );
    let fin = c.fin(Side::Client, t);
    assert_eq!(seg(&fin).2, 0x11);
    assert_eq!(c.next_seq(Side::Client), seg(&fin).0.wrapping_add(1));
    assert_eq!(seg(&c.rst(Side::Server, t)).2, 0x14);
}

fn calltap_time(ms: u64) -> crate::capture::Timestamp {
    call::DEFAULT_START.saturating_add(Duration::from_millis(ms))
}

#[test]
fn every_link_frames_what_parsers_expect() {
    let p = CallScript::new(3).rtp_stream(Party::Caller).packet(0);
    let eth = Link::Ethernet.frame(&p.data);
    assert_eq!(&eth[12..14], &[0x08, 0x00]);
    let vlan = Link::Vlan { id: 100 }.frame(&p.data);
    let s = SlicedPacket::from_ethernet(&vlan).expect("vlan");
    assert_eq!(
        s.vlan_ids().iter().map(|v| v.value()).collect::<Vec<_>>(),
        [100]
    );
    let q = Link::QinQ {
        outer: 200,
        inner: 100,
    }
    .frame(&p.data);
    assert_eq!(&q[12..14], &[0x88, 0xA8]);
    let s = SlicedPacket::from_ethernet(&q).expect("qinq");
    assert_eq!(
        s.vlan_ids().iter().map(|v| v.value()).collect::<Vec<_>>(),
        [200, 100]
    );
    verify_ip(&s_ip(&q, 22));
    let pp = Link::Pppoe { session: 7 }.frame(&p.data);
    assert_eq!(&pp[12..14], &[0x88, 0x64]);
    assert_eq!(
        u16::from_be_bytes([pp[18], pp[19]]) as usize,
        p.data.len() + 2
    );
    assert_eq!(&pp[20..22], &[0x00, 0x21]);
    let v6 = CallScript::new(3)
        .ipv6()
        .rtp_stream(Party::Caller)
        .packet(0);
    assert_eq!(
        &Link::Pppoe { session: 7 }.frame(&v6.data)[20..22],
        &[0x00, 0x57]
    );
    let sll = Link::Sll.frame(&p.data);
    assert!(SlicedPacket::from_linux_sll(&sll)
        .expect("sll")
        .net
        .is_some());
    let sll2 = Link::Sll2 { ifindex: 2 }.frame(&p.data);
    assert_eq!(sll2.len(), 20 + p.data.len());
    assert_eq!(&sll2[..2], &[0x08, 0x00]);
    assert_eq!(Link::RawIp.frame(&p.data), p.data);
    assert_eq!(
        &Link::Null { ipv6_family: 30 }.frame(&v6.data)[..4],
        &[30, 0, 0, 0]
    );
    assert_eq!(
        &Link::Null { ipv6_family: 30 }.frame(&p.data)[..4],
        &[2, 0, 0, 0]
    );
}

fn s_ip(frame: &[u8], at: usize) -> Vec<u8> {
    frame[at..].to_vec()
}

#[test]
fn tunnels_carry_the_inner_packet() {
    let p = CallScript::new(3).rtp_stream(Party::Caller).packet(0);
    let t = p.time;
    let a = "192.0.2.1".parse().expect("ip");
    let b = "192.0.2.2".parse().expect("ip");
    let cases = [
        (
            Tunnel::ErspanII {
                src: a,
                dst: b,
                session: 1,
            },
            20 + 8 + 8 + 14,
            0x88BEu16,
        ),
        (
            Tunnel::ErspanIII {
                src: a,
                dst: b,
                session: 1,
                platform_subheader: false,
            },
            20 + 8 + 12 + 14,
            0x22EB,
        ),
        (
            Tunnel::ErspanIII {
                src: a,
                dst: b,
                session: 1,
                platform_subheader: true,
            },
            20 + 8 + 20 + 14,
            0x22EB,
        ),
    ];
    for (tun, inner_at, proto) in cases {
        let outer = tun.wrap(&p.data, 9, t);
        assert_eq!(
            wire::checksum(&outer[..20]),
            0,
            "outer IPv4 header checksum"
        );
        assert_eq!(
            usize::from(u16::from_be_bytes([outer[2], outer[3]])),
            outer.len()
        );
        assert_eq!(outer[9], wire::PROTO_GRE);
        assert_eq!(u16::from_be_bytes([outer[22], outer[23]]), proto);
        assert_eq!(u32::from_be_bytes(outer[24..28].try_into().expect("4")), 9);
        assert_eq!(&outer[inner_at..], &p.data[..]);
    }
    let ipip = Tunnel::IpInIp { src: a, dst: b }.wrap(&p.data, 0, t);
    assert_eq!(ipip[9], wire::PROTO_IPIP);
    assert_eq!(verify_ip(&ipip[20..]).expect("inner udp").len(), 172);
    let v6 = CallScript::new(3)
        .ipv6()
        .rtp_stream(Party::Caller)
        .packet(0);
    let six = Tunnel::IpInIp { src: a, dst: b }.wrap(&v6.data, 0, t);
    assert_eq!(six[9], wire::PROTO_IPV6);
    verify_ip(&six[20..]).expect("inner udp");
}

fn read_pcap(bytes: &[u8]) -> (DataLink, Vec<(Duration, Vec<u8>)>) {
    let mut r = PcapReader::new(bytes).expect("pcap header");
    let dl = r.header().datalink;
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.expect("record");
        out.push((p.timestamp(), p.data().to_vec()));
    }
    (dl, out)
}

#[test]
fn pcap_files_read_back_in_every_byte_order_and_resolution() {
    let s = CallScript::new(13)
        .talk(Duration::from_millis(400))
        .nanosecond_jitter(true);
    let packets = s.to_vec();
    for order in [ByteOrder::Little, ByteOrder::Big] {
        for res in [TsResolution::Micro, TsResolution::Nano] {
            for link in [
                Link::Ethernet,
                Link::Sll2 { ifindex: 1 },
                Link::RawIp,
                Link::Null { ipv6_family: 24 },
            ] {
                let bytes = pcap_bytes_with(link, order, res, &packets);
                let (dl, frames) = read_pcap(&bytes);
                assert_eq!(u32::from(dl), link.linktype());
                assert_eq!(frames.len(), packets.len());
                for ((ts, data), p) in frames.iter().zip(&packets) {
                    let ns = p.time.as_nanos();
                    let want = if res == TsResolution::Nano {
                        ns
                    } else {
                        ns - ns % 1000
                    };
                    assert_eq!(ts.as_nanos() as u64, want);
                    assert_eq!(&data[link.header_len()..], &p.data[..]);
                }
            }
        }
    }
    let be = pcap_bytes_with(
        Link::Ethernet,
        ByteOrder::Big,
        TsResolution::Micro,
        &packets,
    );
    assert_eq!(&be[..4], &[0xA1, 0xB2, 0xC3, 0xD4]);
    let ns = pcap_bytes_with(
        Link::Ethernet,
        ByteOrder::Little,
        TsResolution::Nano,
        &packets,
    );
    assert_eq!(&ns[..4], &[0x4D, 0x3C, 0xB2, 0xA1]);
}

#[test]
fn pcapng_keeps_interfaces_apart() {
    let demos = demo::demos();
    let d = demos
        .iter()
        .find(|d| d.name == "two-interfaces.pcapng")
        .expect("demo");
    let mut r = PcapNgReader::new(&d.bytes[..]).expect("section");
    let mut per_iface = [0u64; 2];
    let mut links = Vec::new();
    while let Some(b) = r.next_block() {
        let (b, _) = b.expect("block");
        match b {
            Block::InterfaceDescription(i) => {
                links.push((u32::from(i.linktype), i.ts_resolution().resolution()))
            }
            Block::EnhancedPacket(p) => per_iface[p.interface_id as usize] += 1,
            _ => {}
        }
    }
    assert_eq!(links, [(1, 6), (276, 9)]);
    assert_eq!(per_iface.iter().sum::<u64>(), d.frames);
    assert!(per_iface[0] > 100 && per_iface[1] > 100);
}

#[test]
fn damaged_files_fail_where_documented() {
    let p = CallScript::new(1).talk(Duration::from_millis(300)).to_vec();
    let whole = pcap_bytes(Link::Ethernet, &p);
    let cut = truncate_in_record(whole.clone(), 10);
    let mut r = PcapReader::new(&cut[..]).expect("header");
    let mut ok = 0;
    let mut err = false;
    while let Some(x) = r.next_packet() {
        match x {
            Ok(_) => ok += 1,
            Err(_) => {
                err = true;
                break;
            }
        }
    }
    assert_eq!((ok, err), (10, true));
    let bad = corrupt_pcap_record(whole, 10);
    let mut r = PcapReader::new(&bad[..]).expect("header");
    let got: Vec<bool> = std::iter::from_fn(|| r.next_packet().map(|x| x.is_ok()))
        .take(12)
        .collect();
    assert!(got[..10].iter().all(|&x| x) && !got[10], "{got:?}");

    // pcapng: the block after the corrupt one is still reachable through its length.
    let demos = demo::demos();
    let d = demos
        .iter()
        .find(|d| d.name == "corrupt-block.pcapng")
        .expect("demo");
    let blocks = writer::pcapng_blocks(&d.bytes);
    assert_eq!(
        blocks.iter().map(|b| b.2).sum::<usize>(),
        d.bytes.len(),
        "lengths chain to the end"
    );
    let packets = blocks.iter().filter(|b| b.1 == 6).count() as u64;
    assert_eq!(packets, d.frames + 1);
}

#[test]
fn demo_counts_match_what_parsers_see() {
    for d in demo::demos() {
        if d.name.ends_with(".pcapng")
            || d.name.starts_with("truncated")
            || d.name.starts_with("corrupt")
        {
            continue;
        }
        let (_, frames) = read_pcap(&d.bytes);
        assert_eq!(frames.len() as u64, d.frames, "{}", d.name);
        // The office demo holds ten minutes of calls; the rest are one short call each.
        let limit = if d.name == "office-day.pcap" {
            1_500_000
        } else {
            200_000
        };
        assert!(
            d.bytes.len() < limit,
            "{} is {} bytes",
            d.name,
            d.bytes.len()
        );
    }
}

#[test]
fn office_day_reads_back_frame_for_frame() {
    let d = demo::demos()
        .into_iter()
        .find(|d| d.name == "office-day.pcap")
        .expect("bundled");
    let (link, frames) = read_pcap(&d.bytes);
    assert_eq!(link, DataLink::ETHERNET);
    // SIP: 4 phones x (REGISTER, 401, REGISTER, 200); 20 OPTIONS pings and their 200s;
    // then every call message twice (to the PBX, from the PBX): 5 answered calls x 7
    // (INVITE, 100, 180, 200, ACK, BYE, 200), the cancelled one 7 (INVITE, 100, 180,
    // CANCEL, 200, 487, ACK), the busy one 4 (INVITE, 100, 486, ACK).
    let sip = 4 * 4 + 20 * 2 + 2 * (5 * 7 + 7 + 4);
    // RTP: 7 + 6 + 8 + 8 + 5 s of talk, 50 packets a second each way.
    let rtp = 34 * 2 * 50;
    assert_eq!(frames.len(), 3548);
    assert_eq!(frames.len(), sip + rtp);
    assert_eq!(d.frames, 3548);

    let start = Duration::from_secs(1_772_614_800); // 2026-03-04 09:00:00 UTC
    let (mut seen_sip, mut seen_rtp, mut dtmf) = (0, 0, 0);
    let mut last = Duration::ZERO;
    for (time, frame) in &frames {
        assert!(*time >= last, "time order");
        last = *time;
        assert!(*time > start && *time < start + Duration::from_secs(600));
        assert_eq!(&frame[12..14], &[0x08, 0x00], "IPv4 over Ethernet");
        let udp = verify_ip(&frame[14..]).expect("whole UDP datagrams");
        let ports = (
            u16::from_be_bytes([frame[34], frame[35]]),
            u16::from_be_bytes([frame[36], frame[37]]),
        );
        if ports.0 == 5060 && ports.1 == 5060 {
            seen_sip += 1;
            assert!(
                udp.windows(10).any(|w| w == b"\r\nCall-ID:"),
                "a SIP message"
            );
        } else {
            seen_rtp += 1;
            assert_eq!(udp[0], 0x80, "RTP version 2");
            match udp[1] & 0x7F {
                0 | 8 => assert_eq!(udp.len(), 12 + SAMPLES_PER_PACKET),
                101 => {
                    dtmf += 1;
                    assert_eq!(udp.len(), 16);
                }
                pt => panic!("payload type {pt}"),
            }
        }
    }
    assert_eq!((seen_sip, seen_rtp), (sip, rtp));
    // Digits 1 and 2, 5 updates and 3 end packets each.
    assert_eq!(dtmf, 16);
}

#[test]
fn generation_is_deterministic_and_matches_the_bundled_files() {
    let a = demo::demos();
    let b = demo::demos();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.bytes, y.bytes, "{} differs between runs", x.name);
        if let Ok(on_disk) = std::fs::read(dir.join(x.name)) {
            assert!(
                on_disk == x.bytes,
                "pcaps/{} is stale: run `cargo run --bin calltap-pcapgen -- --out pcaps`",
                x.name
            );
        }
    }
}

#[test]
fn load_streams_calls_in_time_order() {
    for spec in [LoadSpec::concurrent(20, 6), LoadSpec::short_calls(50, 10)] {
        let mut last = None;
        let mut sip = 0u64;
        let mut n = 0u64;
        let stats = spec
            .generate(|p| {
                assert!(
                    last.is_none_or(|t| t <= p.time),
                    "time order: {last:?} then {:?} {}",
                    p.time,
                    String::from_utf8_lossy(&p.data[28..60.min(p.data.len())])
                );
                last = Some(p.time);
                if n % 97 == 0 {
                    verify_ip(&p.data);
                }
                if p.data.len() > 28
                    && (p.data[28..].starts_with(b"SIP/2.0")
                        || p.data[28..].starts_with(b"INVITE")
                        || p.data[28..].starts_with(b"ACK")
                        || p.data[28..].starts_with(b"BYE"))
                {
                    sip += 1;
                }
                n += 1;
                Ok(())
            })
            .expect("memory");
        assert_eq!(stats.calls, spec.calls as u64);
        assert_eq!(stats.packets, n);
        assert_eq!(stats.packets, stats.sip_messages + stats.rtp_packets);
        assert_eq!(sip, stats.sip_messages);
    }
    let long = LoadSpec::concurrent(20, 6);
    let rtp: u64 = (0..20).map(|i| long.call(i).facts().rtp_packets()).sum();
    // Every call talks for most of the window: about 100 packets a second per call.
    assert!(rtp > 20 * 100 * 4, "{rtp}");
}
