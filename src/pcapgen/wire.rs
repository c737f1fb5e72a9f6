//! IP, UDP, TCP and ICMP packets as bytes, checksums included.
//!
//! Headers are written by hand rather than through etherparse's builders because tests
//! also need packets no builder will make: overlapping fragments, an ICMP error quoting a
//! whole datagram, extension headers in chosen places. The tests re-parse everything with
//! etherparse, an independent implementation, so a wrong checksum or length here fails
//! there rather than hiding behind a shared bug.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::capture::Timestamp;

pub const PROTO_HOPOPT: u8 = 0;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_IPIP: u8 = 4;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_IPV6: u8 = 41;
pub const PROTO_FRAGMENT: u8 = 44;
pub const PROTO_GRE: u8 = 47;
pub const PROTO_ICMPV6: u8 = 58;
pub const PROTO_DSTOPTS: u8 = 60;

/// One IP packet (IPv4 or IPv6, first byte = version) with its capture time. The link
/// layer is added when the packet is written, so one scenario can go out on any link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub time: Timestamp,
    pub data: Vec<u8>,
}

impl Packet {
    pub fn new(time: Timestamp, data: Vec<u8>) -> Self {
        Packet { time, data }
    }

    /// The same bytes at another time: a retransmission, or a reordered copy.
    pub fn at(&self, time: Timestamp) -> Packet {
        Packet {
            time,
            data: self.data.clone(),
        }
    }
}

/// Adds `data` to a running one's-complement sum (RFC 1071), as big-endian 16-bit words.
pub fn checksum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [last] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*last) << 8);
    }
    sum
}

/// Folds a running sum into the final 16-bit Internet checksum.
pub fn checksum_finish(mut sum: u32) -> u16 {
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// The Internet checksum of `data` alone (IPv4 header, ICMPv4).
pub fn checksum(data: &[u8]) -> u16 {
    checksum_finish(checksum_add(0, data))
}

/// The sum of the TCP/UDP/ICMPv6 pseudo-header.
fn pseudo_header_sum(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> u32 {
    let mut sum = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => checksum_add(checksum_add(0, &s.octets()), &d.octets()),
        (IpAddr::V6(s), IpAddr::V6(d)) => checksum_add(checksum_add(0, &s.octets()), &d.octets()),
        _ => panic!("pseudo header with mixed address families: {src} -> {dst}"),
    };
    sum = sum.wrapping_add((len as u32) >> 16);
    sum = sum.wrapping_add((len as u32) & 0xFFFF);
    sum.wrapping_add(u32::from(proto))
}

/// Fields of the IP header a scenario may want to choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpOpts {
    pub ttl: u8,
    /// IPv4 identification; derived from the payload when `None` so that packets differ
    /// (as they do on the wire) while staying deterministic.
    pub id: Option<u16>,
    pub dont_fragment: bool,
    /// DiffServ code point (46 = EF for RTP, 24 = CS3 for SIP, as phones mark them).
    pub dscp: u8,
}

impl Default for IpOpts {
    fn default() -> Self {
        IpOpts {
            ttl: 64,
            id: None,
            dont_fragment: false,
            dscp: 0,
        }
    }
}

impl IpOpts {
    pub fn dscp(dscp: u8) -> Self {
        IpOpts {
            dscp,
            ..IpOpts::default()
        }
    }
}

fn derive_id(payload: &[u8]) -> u16 {
    // FNV-1a over the payload: cheap, deterministic, and different per packet.
    let mut h: u32 = 0x811C_9DC5;
    for &b in payload.iter().take(64) {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h ^= payload.len() as u32;
    (h ^ (h >> 16)) as u16
}

/// The 20-byte IPv4 header (no options), checksum filled in.
/// `frag_offset` is in bytes and must be a multiple of 8.
#[allow(clippy::too_many_arguments)]
pub fn ipv4_header(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    payload_len: usize,
    opts: &IpOpts,
    id: u16,
    frag_offset: usize,
    more_fragments: bool,
) -> [u8; 20] {
    debug_assert!(frag_offset % 8 == 0);
    let total = (20 + payload_len) as u16;
    let mut flags_off = (frag_offset / 8) as u16;
    if opts.dont_fragment {
        flags_off |= 0x4000;
    }
    if more_fragments {
        flags_off |= 0x2000;
    }
    let mut h = [0u8; 20];
    h[0] = 0x45;
    h[1] = opts.dscp << 2;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6..8].copy_from_slice(&flags_off.to_be_bytes());
    h[8] = opts.ttl;
    h[9] = proto;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

/// An IPv4 packet around `payload`.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8], opts: &IpOpts) -> Vec<u8> {
    let id = opts.id.unwrap_or_else(|| derive_id(payload));
    let mut out = Vec::with_capacity(20 + payload.len());
    out.extend_from_slice(&ipv4_header(
        src,
        dst,
        proto,
        payload.len(),
        opts,
        id,
        0,
        false,
    ));
    out.extend_from_slice(payload);
    out
}

/// The 40-byte IPv6 header.
pub fn ipv6_header(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    payload_len: usize,
    opts: &IpOpts,
) -> [u8; 40] {
    let mut h = [0u8; 40];
    let tc = u32::from(opts.dscp) << 2;
    // A fixed flow label per address pair, as a stack hashing the 5-tuple would.
    let flow = u32::from(derive_id(&[src.octets(), dst.octets()].concat())) & 0xFFFFF;
    let word = (6u32 << 28) | (tc << 20) | flow;
    h[0..4].copy_from_slice(&word.to_be_bytes());
    h[4..6].copy_from_slice(&(payload_len as u16).to_be_bytes());
    h[6] = next_header;
    h[7] = opts.ttl;
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
    h
}

/// An IPv6 packet; `payload` starts with the header `next_header` names.
pub fn ipv6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    payload: &[u8],
    opts: &IpOpts,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + payload.len());
    out.extend_from_slice(&ipv6_header(src, dst, next_header, payload.len(), opts));
    out.extend_from_slice(payload);
    out
}

/// An IP packet of the family of the addresses (both must be of one family).
pub fn ip(src: IpAddr, dst: IpAddr, proto: u8, payload: &[u8], opts: &IpOpts) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4(s, d, proto, payload, opts),
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6(s, d, proto, payload, opts),
        _ => panic!("IP packet with mixed address families: {src} -> {dst}"),
    }
}

/// A UDP header plus payload, checksum computed over the pseudo-header.
pub fn udp_datagram(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
    let sum = checksum_add(pseudo_header_sum(src.ip(), dst.ip(), PROTO_UDP, len), &out);
    let mut c = checksum_finish(sum);
    if c == 0 {
        // RFC 768: a computed zero is sent as all ones (zero means "no checksum").
        c = 0xFFFF;
    }
    out[6..8].copy_from_slice(&c.to_be_bytes());
    out
}

/// A complete UDP/IP packet.
pub fn udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    udp_with(src, dst, payload, &IpOpts::default())
}

pub fn udp_with(src: SocketAddr, dst: SocketAddr, payload: &[u8], opts: &IpOpts) -> Vec<u8> {
    ip(
        src.ip(),
        dst.ip(),
        PROTO_UDP,
        &udp_datagram(src, dst, payload),
        opts,
    )
}

/// TCP flag bits.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// A TCP header (with `options`, padded to 32 bits) plus payload, checksum included.
/// One argument per header field keeps call sites readable next to a capture dump.
#[allow(clippy::too_many_arguments)]
pub fn tcp_segment(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let opt_len = options.len().div_ceil(4) * 4;
    let hlen = 20 + opt_len;
    let mut out = Vec::with_capacity(hlen + payload.len());
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ack.to_be_bytes());
    out.push(((hlen / 4) as u8) << 4);
    out.push(flags);
    out.extend_from_slice(&window.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(options);
    out.resize(hlen, 1); // pad with NOPs
    out.extend_from_slice(payload);
    let sum = checksum_add(
        pseudo_header_sum(src.ip(), dst.ip(), PROTO_TCP, out.len()),
        &out,
    );
    out[16..18].copy_from_slice(&checksum_finish(sum).to_be_bytes());
    out
}

/// An IPv6 extension header that can sit between the IPv6 header and UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv6Ext {
    /// Hop-by-Hop Options with a Router Alert option (RFC 2711) and padding.
    HopByHop,
    /// Destination Options holding only a PadN option.
    DestinationOptions,
}

/// A UDP/IPv6 packet with one extension header before the UDP header.
pub fn udp_v6_with_ext(src: SocketAddr, dst: SocketAddr, payload: &[u8], ext: Ipv6Ext) -> Vec<u8> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (src.ip(), dst.ip()) else {
        panic!("udp_v6_with_ext needs IPv6 addresses");
    };
    let (first, body): (u8, [u8; 8]) = match ext {
        // next=UDP, len=0 (8 bytes), Router Alert (type 5, len 2, value 0 = MLD), PadN(0).
        Ipv6Ext::HopByHop => (PROTO_HOPOPT, [PROTO_UDP, 0, 5, 2, 0, 0, 1, 0]),
        // next=UDP, len=0, PadN of 4 bytes.
        Ipv6Ext::DestinationOptions => (PROTO_DSTOPTS, [PROTO_UDP, 0, 1, 4, 0, 0, 0, 0]),
    };
    let mut inner = body.to_vec();
    inner.extend_from_slice(&udp_datagram(src, dst, payload));
    ipv6(s, d, first, &inner, &IpOpts::default())
}

/// How the fragments of one datagram go on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum FragOrder {
    #[default]
    InOrder,
    Reversed,
    /// A permutation: `order[i]` is the index of the fragment sent `i`-th.
    Permuted(Vec<usize>),
}

/// How to cut an IP packet into fragments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fragmentation {
    /// Largest IP packet on the link (1500 on Ethernet, 1280 is IPv6's minimum).
    pub mtu: usize,
    pub order: FragOrder,
    /// Also send a bogus fragment overlapping fragment `k` (its offset is 8 bytes before
    /// fragment `k`'s, its bytes are 0xEE), just before fragment `k` in sending order.
    /// A reassembler must not hand up a datagram containing 0xEE bytes as if all were well.
    pub overlap: Option<usize>,
}

impl Fragmentation {
    pub fn mtu(mtu: usize) -> Self {
        Fragmentation {
            mtu,
            order: FragOrder::InOrder,
            overlap: None,
        }
    }

    pub fn order(mut self, order: FragOrder) -> Self {
        self.order = order;
        self
    }

    pub fn overlap(mut self, k: usize) -> Self {
        self.overlap = Some(k);
        self
    }

    fn arrange(&self, frags: Vec<Vec<u8>>, bogus: Option<Vec<u8>>) -> Vec<Vec<u8>> {
        let n = frags.len();
        let order: Vec<usize> = match &self.order {
            FragOrder::InOrder => (0..n).collect(),
            FragOrder::Reversed => (0..n).rev().collect(),
            FragOrder::Permuted(p) => {
                assert!(
                    p.len() == n && (0..n).all(|i| p.contains(&i)),
                    "fragment order {p:?} is not a permutation of 0..{n}"
                );
                p.clone()
            }
        };
        let mut slots: Vec<Option<Vec<u8>>> = frags.into_iter().map(Some).collect();
        let mut out = Vec::with_capacity(n + 1);
        for i in order {
            if self.overlap == Some(i) {
                if let Some(b) = &bogus {
                    out.push(b.clone());
                }
            }
            out.push(slots[i].take().expect("each fragment once"));
        }
        out
    }
}

/// Byte ranges `(offset, len)` of a payload of `total` bytes in chunks of at most `max`
/// (a multiple of 8 except for the last).
fn frag_ranges(total: usize, max: usize) -> Vec<(usize, usize)> {
    let chunk = (max / 8) * 8;
    assert!(chunk >= 8, "MTU too small to fragment");
    (0..total.div_ceil(chunk))
        .map(|i| (i * chunk, chunk.min(total - i * chunk)))
        .collect()
}

/// Cuts an IPv4 packet (20-byte header) into fragments that fit `plan.mtu`, in the sending
/// order of the plan. A packet that fits is returned whole.
pub fn fragment_ipv4(packet: &[u8], plan: &Fragmentation) -> Vec<Vec<u8>> {
    assert_eq!(
        packet[0], 0x45,
        "fragment_ipv4 takes an IPv4 packet without options"
    );
    if packet.len() <= plan.mtu {
        return vec![packet.to_vec()];
    }
    let src = Ipv4Addr::from(<[u8; 4]>::try_from(&packet[12..16]).expect("4 bytes"));
    let dst = Ipv4Addr::from(<[u8; 4]>::try_from(&packet[16..20]).expect("4 bytes"));
    let id = u16::from_be_bytes([packet[4], packet[5]]);
    let opts = IpOpts {
        ttl: packet[8],
        id: Some(id),
        dont_fragment: false,
        dscp: packet[1] >> 2,
    };
    let proto = packet[9];
    let payload = &packet[20..];
    let ranges = frag_ranges(payload.len(), plan.mtu - 20);
    let last = ranges.len() - 1;
    let build = |off: usize, data: &[u8], more: bool| {
        let mut f = ipv4_header(src, dst, proto, data.len(), &opts, id, off, more).to_vec();
        f.extend_from_slice(data);
        f
    };
    let frags = ranges
        .iter()
        .enumerate()
        .map(|(i, &(off, len))| build(off, &payload[off..off + len], i != last))
        .collect();
    let bogus = plan.overlap.map(|k| {
        let (off, len) = ranges[k];
        let off = off.saturating_sub(8);
        build(off, &vec![0xEE; len], true)
    });
    plan.arrange(frags, bogus)
}

/// Cuts an IPv6 packet (plain 40-byte header, no extension headers) into fragments with a
/// Fragment extension header each.
pub fn fragment_ipv6(packet: &[u8], plan: &Fragmentation, id: u32) -> Vec<Vec<u8>> {
    assert_eq!(packet[0] >> 4, 6, "fragment_ipv6 takes an IPv6 packet");
    if packet.len() <= plan.mtu {
        return vec![packet.to_vec()];
    }
    let next = packet[6];
    let payload = &packet[40..];
    let ranges = frag_ranges(payload.len(), plan.mtu - 48);
    let last = ranges.len() - 1;
    let build = |off: usize, data: &[u8], more: bool| {
        let mut f = packet[..40].to_vec();
        f[4..6].copy_from_slice(&((8 + data.len()) as u16).to_be_bytes());
        f[6] = PROTO_FRAGMENT;
        f.push(next);
        f.push(0);
        f.extend_from_slice(&((off as u16) | u16::from(more)).to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
        f.extend_from_slice(data);
        f
    };
    let frags = ranges
        .iter()
        .enumerate()
        .map(|(i, &(off, len))| build(off, &payload[off..off + len], i != last))
        .collect();
    let bogus = plan.overlap.map(|k| {
        let (off, len) = ranges[k];
        build(off.saturating_sub(8), &vec![0xEE; len], true)
    });
    plan.arrange(frags, bogus)
}

/// The addresses of an IP packet (IPv4 or IPv6).
pub fn ip_addrs(packet: &[u8]) -> (IpAddr, IpAddr) {
    match packet[0] >> 4 {
        4 => {
            let s: [u8; 4] = packet[12..16].try_into().expect("4 bytes");
            let d: [u8; 4] = packet[16..20].try_into().expect("4 bytes");
            (IpAddr::from(s), IpAddr::from(d))
        }
        6 => {
            let s: [u8; 16] = packet[8..24].try_into().expect("16 bytes");
            let d: [u8; 16] = packet[24..40].try_into().expect("16 bytes");
            (IpAddr::from(s), IpAddr::from(d))
        }
        v => panic!("not an IP packet (version {v})"),
    }
}

/// The ICMP error a host sends back when `offending` (an IP packet it received, UDP to a
/// closed port) has no listener: ICMPv4 type 3 code 3, or ICMPv6 type 1 code 4. The quote
/// is as much of the packet as the error may carry (576 bytes in all for IPv4, as Linux
/// does; 1280 for IPv6, RFC 4443), so it normally holds the whole RTP packet.
pub fn icmp_port_unreachable(offending: &[u8]) -> Vec<u8> {
    let (orig_src, orig_dst) = ip_addrs(offending);
    match (orig_dst, orig_src) {
        (IpAddr::V4(me), IpAddr::V4(peer)) => {
            let quote = &offending[..offending.len().min(576 - 28)];
            let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
            icmp.extend_from_slice(quote);
            let c = checksum(&icmp);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            ipv4(me, peer, PROTO_ICMP, &icmp, &IpOpts::dscp(48))
        }
        (IpAddr::V6(me), IpAddr::V6(peer)) => {
            let quote = &offending[..offending.len().min(1280 - 48)];
            let mut icmp = vec![1, 4, 0, 0, 0, 0, 0, 0];
            icmp.extend_from_slice(quote);
            let sum = checksum_add(
                pseudo_header_sum(orig_dst, orig_src, PROTO_ICMPV6, icmp.len()),
                &icmp,
            );
            icmp[2..4].copy_from_slice(&checksum_finish(sum).to_be_bytes());
            ipv6(me, peer, PROTO_ICMPV6, &icmp, &IpOpts::default())
        }
        _ => unreachable!("ip_addrs returns one family"),
    }
}

/// A 12-byte RTP header (version 2, no CSRC, no extension) followed by `payload`.
pub fn rtp(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + payload.len());
    out.push(0x80);
    out.push((u8::from(marker) << 7) | (pt & 0x7F));
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(payload);
    out
}
