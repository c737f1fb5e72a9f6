//! Link layers and tunnels around an IP packet.

use std::net::{IpAddr, Ipv4Addr};

use crate::capture::{LinkType, Timestamp};

use super::wire::{self, IpOpts, PROTO_GRE, PROTO_IPIP, PROTO_IPV6};

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86DD;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_QINQ: u16 = 0x88A8;
pub const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;
pub const ETHERTYPE_ERSPAN_II: u16 = 0x88BE;
pub const ETHERTYPE_ERSPAN_III: u16 = 0x22EB;
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;

/// How a capture frames each IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Link {
    /// Ethernet II.
    Ethernet,
    /// Ethernet with one 802.1Q tag (priority 5, the voice class).
    Vlan { id: u16 },
    /// Ethernet with an 802.1ad service tag (0x88a8) around an 802.1Q customer tag.
    QinQ { outer: u16, inner: u16 },
    /// Ethernet carrying a PPPoE session (RFC 2516), PPP protocol 0x0021 / 0x0057.
    Pppoe { session: u16 },
    /// Linux cooked capture v1 (`tcpdump -i any` before libpcap 1.10).
    Sll,
    /// Linux cooked capture v2.
    Sll2 { ifindex: u32 },
    /// Bare IP (LINKTYPE_RAW, 101).
    RawIp,
    /// BSD loopback: a 4-byte address family in the capturing host's byte order, written
    /// little-endian here (an x86 or ARM host). IPv4 is 2; IPv6 is 24 (NetBSD, OpenBSD),
    /// 28 (FreeBSD) or 30 (macOS), so a reader has to accept all three.
    Null { ipv6_family: u32 },
}

impl Link {
    /// The LINKTYPE_ value in the file header / interface description.
    pub fn linktype(self) -> u32 {
        match self {
            Link::Ethernet | Link::Vlan { .. } | Link::QinQ { .. } | Link::Pppoe { .. } => 1,
            Link::Sll => 113,
            Link::Sll2 { .. } => 276,
            Link::RawIp => 101,
            Link::Null { .. } => 0,
        }
    }

    /// The link type calltap's capture layer will report for such a file.
    pub fn link_type(self) -> LinkType {
        LinkType::from_linktype(self.linktype())
    }

    /// A short name for file names and reports.
    pub fn name(self) -> &'static str {
        match self {
            Link::Ethernet => "ethernet",
            Link::Vlan { .. } => "vlan",
            Link::QinQ { .. } => "qinq",
            Link::Pppoe { .. } => "pppoe",
            Link::Sll => "sll",
            Link::Sll2 { .. } => "sll2",
            Link::RawIp => "raw",
            Link::Null { .. } => "null",
        }
    }

    /// Bytes this link puts before the IP header.
    pub fn header_len(self) -> usize {
        match self {
            Link::Ethernet => 14,
            Link::Vlan { .. } => 18,
            Link::QinQ { .. } => 22,
            Link::Pppoe { .. } => 22,
            Link::Sll => 16,
            Link::Sll2 { .. } => 20,
            Link::RawIp => 0,
            Link::Null { .. } => 4,
        }
    }

    /// Frames an IP packet.
    pub fn frame(self, ip: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.header_len() + ip.len());
        self.frame_into(ip, &mut out);
        out
    }

    /// Frames an IP packet into `out` (cleared first), so a hot loop can reuse one buffer.
    pub fn frame_into(self, ip: &[u8], out: &mut Vec<u8>) {
        out.clear();
        let v6 = ip.first().map(|b| b >> 4) == Some(6);
        let ethertype = if v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 };
        match self {
            Link::Ethernet => {
                ethernet_header(ip, out);
                out.extend_from_slice(&ethertype.to_be_bytes());
            }
            Link::Vlan { id } => {
                ethernet_header(ip, out);
                push_tag(out, ETHERTYPE_VLAN, id);
                out.extend_from_slice(&ethertype.to_be_bytes());
            }
            Link::QinQ { outer, inner } => {
                ethernet_header(ip, out);
                push_tag(out, ETHERTYPE_QINQ, outer);
                push_tag(out, ETHERTYPE_VLAN, inner);
                out.extend_from_slice(&ethertype.to_be_bytes());
            }
            Link::Pppoe { session } => {
                ethernet_header(ip, out);
                out.extend_from_slice(&ETHERTYPE_PPPOE_SESSION.to_be_bytes());
                out.push(0x11); // version 1, type 1
                out.push(0x00); // code: session data
                out.extend_from_slice(&session.to_be_bytes());
                // PPPoE length covers the PPP protocol field and the packet.
                out.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
                let ppp = if v6 { PPP_IPV6 } else { PPP_IPV4 };
                out.extend_from_slice(&ppp.to_be_bytes());
            }
            Link::Sll => {
                out.extend_from_slice(&0u16.to_be_bytes()); // PACKET_HOST
                out.extend_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
                out.extend_from_slice(&6u16.to_be_bytes());
                out.extend_from_slice(&src_mac(ip));
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&ethertype.to_be_bytes());
            }
            Link::Sll2 { ifindex } => {
                out.extend_from_slice(&ethertype.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&ifindex.to_be_bytes());
                out.extend_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
                out.push(0); // PACKET_HOST
                out.push(6);
                out.extend_from_slice(&src_mac(ip));
                out.extend_from_slice(&[0, 0]);
            }
            Link::RawIp => {}
            Link::Null { ipv6_family } => {
                let family: u32 = if v6 { ipv6_family } else { 2 };
                out.extend_from_slice(&family.to_le_bytes());
            }
        }
        out.extend_from_slice(ip);
    }
}

fn push_tag(out: &mut Vec<u8>, tpid: u16, vid: u16) {
    out.extend_from_slice(&tpid.to_be_bytes());
    // PCP 5 (voice), DEI 0.
    out.extend_from_slice(&((5u16 << 13) | (vid & 0x0FFF)).to_be_bytes());
}

/// A locally administered MAC derived from an address, so each host keeps one MAC.
fn mac_for(addr: IpAddr) -> [u8; 6] {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            [0x02, 0x00, o[0], o[1], o[2], o[3]]
        }
        IpAddr::V6(a) => {
            let o = a.octets();
            [0x02, 0x06, o[12], o[13], o[14], o[15]]
        }
    }
}

fn src_mac(ip: &[u8]) -> [u8; 6] {
    mac_for(wire::ip_addrs(ip).0)
}

fn ethernet_header(ip: &[u8], out: &mut Vec<u8>) {
    let (s, d) = wire::ip_addrs(ip);
    out.extend_from_slice(&mac_for(d));
    out.extend_from_slice(&mac_for(s));
}

/// A tunnel that carries an IP packet inside an outer IPv4 packet: what a capture taken
/// behind a mirroring switch (ERSPAN) or on a tunnel endpoint (IP-in-IP) holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tunnel {
    /// GRE (protocol 47, sequence numbers on) with ERSPAN type II (0x88BE): an 8-byte
    /// ERSPAN header, then the mirrored Ethernet frame.
    ErspanII {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        session: u16,
    },
    /// GRE with ERSPAN type III (0x22EB): a 12-byte header (timestamp in 100 us units),
    /// plus an 8-byte platform-specific subheader when `platform_subheader` (the O flag).
    ErspanIII {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        session: u16,
        platform_subheader: bool,
    },
    /// IPv4 protocol 4 (IPv4 inside) or 41 (IPv6 inside), chosen by the inner packet.
    IpInIp { src: Ipv4Addr, dst: Ipv4Addr },
}

impl Tunnel {
    /// The outer IPv4 packet carrying `ip`. `seq` is the GRE sequence number (count the
    /// packets of the session); `time` feeds the ERSPAN III timestamp.
    pub fn wrap(&self, ip: &[u8], seq: u32, time: Timestamp) -> Vec<u8> {
        let opts = IpOpts {
            ttl: 62,
            ..IpOpts::default()
        };
        match *self {
            Tunnel::ErspanII { src, dst, session } => {
                let mut p = gre_header(ETHERTYPE_ERSPAN_II, seq);
                // Ver 1, VLAN 0 | COS 0, En 0, T 0, session | reserved, index 1.
                p.extend_from_slice(&(1u16 << 12).to_be_bytes());
                p.extend_from_slice(&(session & 0x3FF).to_be_bytes());
                p.extend_from_slice(&1u32.to_be_bytes());
                p.extend_from_slice(&Link::Ethernet.frame(ip));
                wire::ipv4(src, dst, PROTO_GRE, &p, &opts)
            }
            Tunnel::ErspanIII {
                src,
                dst,
                session,
                platform_subheader,
            } => {
                let mut p = gre_header(ETHERTYPE_ERSPAN_III, seq);
                p.extend_from_slice(&(2u16 << 12).to_be_bytes()); // Ver 2, VLAN 0
                p.extend_from_slice(&(session & 0x3FF).to_be_bytes()); // COS/BSO/T 0
                let ts = (time.as_nanos() / 100_000) as u32; // Gra 00: 100 us units
                p.extend_from_slice(&ts.to_be_bytes());
                p.extend_from_slice(&0u16.to_be_bytes()); // SGT
                                                          // P 0, FT 0 (Ethernet), HW ID 1, D 0, Gra 00, O.
                let flags = (1u16 << 4) | u16::from(platform_subheader);
                p.extend_from_slice(&flags.to_be_bytes());
                if platform_subheader {
                    // Platform ID 3: port index (16 bits after 10 reserved) and the
                    // timestamp's seconds.
                    let secs = time.unix_secs() as u32;
                    p.extend_from_slice(&[3 << 2, 0, 0, 1]);
                    p.extend_from_slice(&secs.to_be_bytes());
                }
                p.extend_from_slice(&Link::Ethernet.frame(ip));
                wire::ipv4(src, dst, PROTO_GRE, &p, &opts)
            }
            Tunnel::IpInIp { src, dst } => {
                let proto = if ip[0] >> 4 == 6 {
                    PROTO_IPV6
                } else {
                    PROTO_IPIP
                };
                wire::ipv4(src, dst, proto, ip, &opts)
            }
        }
    }
}

/// A GRE header with the S bit: flags, protocol, sequence number (8 bytes).
fn gre_header(proto: u16, seq: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(64);
    h.extend_from_slice(&0x1000u16.to_be_bytes());
    h.extend_from_slice(&proto.to_be_bytes());
    h.extend_from_slice(&seq.to_be_bytes());
    h
}
