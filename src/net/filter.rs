//! The live pre-filter: a few header reads per frame that keep only what calltap can
//! use, before the frame is handed on. On a mirror port most traffic is neither SIP nor
//! RTP (web, backups, storage); dropping it here saves the decoder, the engine and the
//! ring's consumer the work.
//!
//! Passed: UDP with either port a SIP port or in the RTP range (plus one above its top,
//! where the last RTP port's RTCP goes), TCP with a SIP port, IP fragments after the
//! first (their ports are unknown; the first fragment is judged by its ports), and
//! tunnels calltap decodes (GRE with IP, bridged Ethernet or ERSPAN II/III inside,
//! IP-in-IP, 6in4) when the packet inside passes. VLAN/QinQ tags and PPPoE are looked
//! through by calltap's own link-layer code, so filter and decoder agree on framing.
//!
//! What the filter cannot read (a truncated or malformed header) is passed, so the
//! decoder counts it under its reason in /metrics instead of it vanishing here.

use std::ops::RangeInclusive;

use super::link::{self, be16, LinkPayload};
use super::proto::{
    PortSet, GRE_PROTO_ERSPAN_2, GRE_PROTO_ERSPAN_3, GRE_PROTO_TEB, IPPROTO_AH, IPPROTO_DSTOPTS,
    IPPROTO_FRAGMENT, IPPROTO_GRE, IPPROTO_HOPOPT, IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_ROUTING,
    IPPROTO_TCP, IPPROTO_UDP, MAX_TUNNEL_DEPTH,
};
use crate::base::{FrameFilter, LinkType};

/// IPv6 extension headers walked before giving up (and passing the packet on).
const MAX_IPV6_EXTENSIONS: usize = 8;

/// Either port of a UDP or TCP header in `set`.
#[inline]
fn either(set: &PortSet, ports: &[u8]) -> bool {
    match (be16(ports, 0), be16(ports, 2)) {
        (Some(s), Some(d)) => set.contains(s) || set.contains(d),
        // No room for the ports: the decoder counts the bad header.
        _ => true,
    }
}

/// Decides per frame whether calltap wants it.
pub struct PreFilter {
    udp: PortSet,
    tcp: PortSet,
}

impl PreFilter {
    /// Keeps SIP on `sip_ports` (UDP and TCP) and UDP in `rtp_ports` (plus one above its
    /// top, where the last port's RTCP goes).
    pub fn new(sip_ports: &[u16], rtp_ports: RangeInclusive<u16>) -> Self {
        let rtcp_top = rtp_ports.end().saturating_add(1);
        PreFilter {
            udp: PortSet::new(
                sip_ports
                    .iter()
                    .copied()
                    .chain(*rtp_ports.start()..=rtcp_top),
            ),
            tcp: PortSet::new(sip_ports.iter().copied()),
        }
    }
}

impl std::fmt::Debug for PreFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreFilter")
    }
}

impl FrameFilter for PreFilter {
    fn wants(&self, link: LinkType, frame: &[u8]) -> bool {
        match link::decode(link, frame) {
            Ok(LinkPayload::Ip(ip)) => self.ip(ip, 0),
            Ok(LinkPayload::Ignored(_)) => false,
            Err(_) => true,
        }
    }
}

impl PreFilter {
    fn ip(&self, p: &[u8], depth: u8) -> bool {
        match p.first().map(|b| b >> 4) {
            Some(4) => self.ipv4(p, depth),
            Some(6) => self.ipv6(p, depth),
            _ => true,
        }
    }

    fn ipv4(&self, p: &[u8], depth: u8) -> bool {
        let header = usize::from(p[0] & 0x0F) * 4;
        let (Some(frag), Some(&proto), Some(payload)) = (be16(p, 6), p.get(9), p.get(header..))
        else {
            return true;
        };
        if header < 20 || frag & 0x1FFF != 0 {
            // Bad header length (decoder counts it), or a fragment after the first.
            return true;
        }
        self.transport(proto, payload, depth)
    }

    fn ipv6(&self, p: &[u8], depth: u8) -> bool {
        let Some(&first) = p.get(6) else {
            return true;
        };
        let (mut next, mut at) = (first, 40);
        for _ in 0..MAX_IPV6_EXTENSIONS {
            let ext = (p.get(at).copied(), p.get(at + 1).copied());
            match (next, ext) {
                (
                    IPPROTO_HOPOPT | IPPROTO_ROUTING | IPPROTO_DSTOPTS,
                    (Some(following), Some(len)),
                ) => {
                    at += (usize::from(len) + 1) * 8;
                    next = following;
                }
                (IPPROTO_AH, (Some(following), Some(len))) => {
                    at += (usize::from(len) + 2) * 4;
                    next = following;
                }
                (IPPROTO_FRAGMENT, (Some(following), _)) => {
                    match be16(p, at + 2) {
                        Some(offset) if offset >> 3 == 0 => {}
                        // A fragment after the first, or a cut fragment header.
                        _ => return true,
                    }
                    at += 8;
                    next = following;
                }
                // An extension header cut short: the decoder counts it.
                (
                    IPPROTO_HOPOPT | IPPROTO_ROUTING | IPPROTO_DSTOPTS | IPPROTO_AH
                    | IPPROTO_FRAGMENT,
                    _,
                ) => return true,
                (proto, _) => return self.transport(proto, p.get(at..).unwrap_or(&[]), depth),
            }
        }
        true
    }

    fn transport(&self, proto: u8, data: &[u8], depth: u8) -> bool {
        match proto {
            IPPROTO_UDP => either(&self.udp, data),
            IPPROTO_TCP => either(&self.tcp, data),
            IPPROTO_IPIP | IPPROTO_IPV6 if depth < MAX_TUNNEL_DEPTH => self.ip(data, depth + 1),
            IPPROTO_GRE if depth < MAX_TUNNEL_DEPTH => self.gre(data, depth + 1),
            // Too deep: the decoder counts it.
            IPPROTO_IPIP | IPPROTO_IPV6 | IPPROTO_GRE => true,
            _ => false,
        }
    }

    /// GRE as the decoder reads it (RFC 2784/2890, ERSPAN type I/II/III).
    fn gre(&self, data: &[u8], depth: u8) -> bool {
        let (Some(flags), Some(proto)) = (be16(data, 0), be16(data, 2)) else {
            return true;
        };
        if flags & 0x7 != 0 || flags & 0x4000 != 0 {
            // PPTP's enhanced GRE or source routing: nothing calltap decodes.
            return false;
        }
        let optional = [0x8000, 0x2000, 0x1000]
            .iter()
            .filter(|&&bit| flags & bit != 0)
            .count();
        let Some(inner) = data.get(4 + 4 * optional..) else {
            return true;
        };
        let sequenced = flags & 0x1000 != 0;
        let ethernet = match proto {
            link::ETHERTYPE_IPV4 | link::ETHERTYPE_IPV6 => return self.ip(inner, depth),
            GRE_PROTO_TEB => inner,
            GRE_PROTO_ERSPAN_2 if !sequenced => inner,
            GRE_PROTO_ERSPAN_2 => match inner.get(8..) {
                Some(frame) => frame,
                None => return true,
            },
            GRE_PROTO_ERSPAN_3 => {
                let len = match inner.get(11) {
                    Some(b) if b & 1 == 1 => 20,
                    Some(_) => 12,
                    None => return true,
                };
                match inner.get(len..) {
                    Some(frame) => frame,
                    None => return true,
                }
            }
            _ => return false,
        };
        match link::ethernet(ethernet) {
            Ok(LinkPayload::Ip(ip)) => self.ip(ip, depth),
            Ok(LinkPayload::Ignored(_)) => false,
            Err(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use super::*;
    use crate::base::Timestamp;
    use crate::pcapgen::wire::{self, tcp_flags, Fragmentation, IpOpts, Ipv6Ext};
    use crate::pcapgen::{Link, Tunnel};

    const SIP: u16 = 5060;

    fn filter() -> PreFilter {
        PreFilter::new(&[SIP, 5061], 10_000..=20_000)
    }

    fn v4(a: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, a], port))
    }

    fn v6(a: u16, port: u16) -> SocketAddr {
        SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, a], port))
    }

    fn udp(sport: u16, dport: u16) -> Vec<u8> {
        wire::udp(v4(1, sport), v4(2, dport), b"payload")
    }

    fn tcp(sport: u16, dport: u16) -> Vec<u8> {
        let seg = wire::tcp_segment(
            v4(1, sport),
            v4(2, dport),
            1,
            1,
            tcp_flags::ACK,
            1000,
            &[],
            b"x",
        );
        wire::ip(
            v4(1, 0).ip(),
            v4(2, 0).ip(),
            wire::PROTO_TCP,
            &seg,
            &IpOpts::default(),
        )
    }

    fn eth(ip: &[u8]) -> Vec<u8> {
        Link::Ethernet.frame(ip)
    }

    fn wants(ip: &[u8]) -> bool {
        filter().wants(LinkType::Ethernet, &eth(ip))
    }

    #[test]
    fn udp_on_sip_and_rtp_ports_passes_either_direction() {
        assert!(wants(&udp(40_000, SIP)));
        assert!(wants(&udp(SIP, 40_000)));
        assert!(wants(&udp(5061, 5061)));
        assert!(wants(&udp(10_000, 30_000)));
        assert!(wants(&udp(30_000, 20_000)));
        // RTCP of the range's last port.
        assert!(wants(&udp(30_000, 20_001)));
        assert!(!wants(&udp(30_000, 20_002)));
        assert!(!wants(&udp(53, 9_999)));
        let f = PreFilter::new(&[SIP], 1024..=65535);
        assert!(f.wants(LinkType::Ethernet, &eth(&udp(1024, 80))));
        assert!(!f.wants(LinkType::Ethernet, &eth(&udp(53, 1023))));
    }

    #[test]
    fn tcp_passes_on_sip_ports_only() {
        assert!(wants(&tcp(40_000, SIP)));
        assert!(wants(&tcp(5061, 40_000)));
        assert!(!wants(&tcp(40_000, 15_000)), "RTP ports are UDP only");
        assert!(!wants(&tcp(443, 50_000)));
    }

    #[test]
    fn other_protocols_and_non_ip_frames_are_dropped() {
        let icmp = wire::icmp_port_unreachable(&udp(SIP, 40_000));
        assert!(!wants(&icmp));
        let mut arp = vec![0xFF; 12];
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0; 28]);
        assert!(!filter().wants(LinkType::Ethernet, &arp));
    }

    #[test]
    fn ipv6_with_extension_headers() {
        let f = filter();
        let plain = wire::udp(v6(1, 40_000), v6(2, SIP), b"x");
        assert!(f.wants(LinkType::RawIp, &plain));
        for ext in [Ipv6Ext::HopByHop, Ipv6Ext::DestinationOptions] {
            let sip = wire::udp_v6_with_ext(v6(1, 40_000), v6(2, SIP), b"x", ext);
            assert!(f.wants(LinkType::RawIp, &sip), "{ext:?}");
            let other = wire::udp_v6_with_ext(v6(1, 40_000), v6(2, 53), b"x", ext);
            assert!(!f.wants(LinkType::RawIp, &other), "{ext:?}");
        }
    }

    #[test]
    fn fragments_after_the_first_pass_and_the_first_is_judged_by_its_ports() {
        let f = filter();
        let plan = Fragmentation::mtu(600);
        let big = vec![7u8; 1400];
        let sip = wire::fragment_ipv4(&wire::udp(v4(1, 40_000), v4(2, SIP), &big), &plan);
        let other = wire::fragment_ipv4(&wire::udp(v4(1, 40_000), v4(2, 53), &big), &plan);
        assert!(sip.len() >= 3 && other.len() >= 3);
        assert!(sip.iter().all(|frag| f.wants(LinkType::RawIp, frag)));
        assert!(!f.wants(LinkType::RawIp, &other[0]));
        assert!(other[1..].iter().all(|frag| f.wants(LinkType::RawIp, frag)));

        let sip6 = wire::fragment_ipv6(&wire::udp(v6(1, 40_000), v6(2, SIP), &big), &plan, 9);
        let other6 = wire::fragment_ipv6(&wire::udp(v6(1, 40_000), v6(2, 53), &big), &plan, 9);
        assert!(sip6.iter().all(|frag| f.wants(LinkType::RawIp, frag)));
        assert!(!f.wants(LinkType::RawIp, &other6[0]));
        assert!(other6[1..]
            .iter()
            .all(|frag| f.wants(LinkType::RawIp, frag)));
    }

    #[test]
    fn vlan_qinq_pppoe_and_cooked_frames_are_looked_through() {
        let f = filter();
        for link in [
            Link::Vlan { id: 10 },
            Link::QinQ {
                outer: 100,
                inner: 10,
            },
            Link::Pppoe { session: 7 },
            Link::Sll,
            Link::Sll2 { ifindex: 3 },
            Link::RawIp,
            Link::Null { ipv6_family: 30 },
        ] {
            assert!(
                f.wants(link.link_type(), &link.frame(&udp(40_000, SIP))),
                "{link:?}"
            );
            assert!(
                !f.wants(link.link_type(), &link.frame(&udp(40_000, 53))),
                "{link:?}"
            );
        }
    }

    #[test]
    fn tunnels_pass_when_the_packet_inside_does() {
        let (a, b) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
        let tunnels = [
            Tunnel::ErspanII {
                src: a,
                dst: b,
                session: 1,
            },
            Tunnel::ErspanIII {
                src: a,
                dst: b,
                session: 1,
                platform_subheader: false,
            },
            Tunnel::ErspanIII {
                src: a,
                dst: b,
                session: 1,
                platform_subheader: true,
            },
            Tunnel::IpInIp { src: a, dst: b },
        ];
        let sip6 = wire::udp(v6(1, 40_000), v6(2, SIP), b"x");
        let dns6 = wire::udp(v6(1, 40_000), v6(2, 53), b"x");
        for t in tunnels {
            let time = Timestamp::from_nanos(1);
            assert!(wants(&t.wrap(&udp(40_000, SIP), 1, time)), "{t:?}");
            assert!(wants(&t.wrap(&udp(12_000, 12_002), 1, time)), "{t:?}");
            assert!(!wants(&t.wrap(&udp(40_000, 53), 1, time)), "{t:?}");
            assert!(wants(&t.wrap(&sip6, 1, time)), "{t:?} 6in4");
            assert!(!wants(&t.wrap(&dns6, 1, time)), "{t:?} 6in4");
        }
        // Plain GRE carrying IP, with a key; and PPTP's GRE version 1, never decoded.
        let mut gre = vec![0x20, 0x00, 0x08, 0x00, 0, 0, 0, 42];
        gre.extend_from_slice(&udp(40_000, SIP));
        assert!(wants(&wire::ipv4(
            a,
            b,
            wire::PROTO_GRE,
            &gre,
            &IpOpts::default()
        )));
        gre[1] = 0x01;
        assert!(!wants(&wire::ipv4(
            a,
            b,
            wire::PROTO_GRE,
            &gre,
            &IpOpts::default()
        )));
        // Five tunnels deep is past what the decoder opens: passed for it to count.
        let mut deep = udp(40_000, 53);
        for _ in 0..5 {
            deep = Tunnel::IpInIp { src: a, dst: b }.wrap(&deep, 0, Timestamp::from_nanos(1));
        }
        assert!(wants(&deep));
    }

    #[test]
    fn unreadable_headers_pass_for_the_decoder_to_count() {
        let f = filter();
        let whole = udp(40_000, 53);
        assert!(!f.wants(LinkType::RawIp, &whole));
        // Cut inside the UDP header, inside the IP header, and not IP at all.
        assert!(f.wants(LinkType::RawIp, &whole[..22]));
        assert!(f.wants(LinkType::RawIp, &whole[..8]));
        assert!(f.wants(LinkType::RawIp, &[0x10, 0, 0, 0]));
        assert!(f.wants(LinkType::RawIp, &[]));
        assert!(f.wants(LinkType::Ethernet, &[0u8; 10]));
        assert!(f.wants(LinkType::Other(147), &[0u8; 60]));
        let mut bad_ihl = whole.clone();
        bad_ihl[0] = 0x41;
        assert!(f.wants(LinkType::RawIp, &bad_ihl));
    }
}
