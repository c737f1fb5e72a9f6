//! From frames to datagrams: link layers, IPv4/IPv6, fragments, tunnels, UDP, and TCP
//! streams framed into SIP messages.

pub mod tcp;

use std::net::SocketAddr;

use crate::base::Timestamp;
pub use crate::base::Transport;

/// A UDP payload, or one SIP message from a TCP stream, with its capture time and
/// endpoints. The payload borrows the frame when it can (the UDP fast path) or the
/// decoder's reassembly buffer (IP fragments, TCP streams).
#[derive(Clone, Copy, Debug)]
pub struct Datagram<'a> {
    pub time: Timestamp,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: Transport,
    pub payload: &'a [u8],
}
pub mod stats;

pub mod defrag;
pub mod filter;
pub mod link;
mod proto;

use std::net::IpAddr;
use std::time::Duration;

use etherparse::{Ipv6ExtensionSlice, LaxIpSlice};

use crate::base::Frame;
use defrag::{DefragLimits, Defragmenter, FragKey, FragOutcome, Fragment};
use link::{be16, be32, LinkPayload};
use stats::{Counters, Ignored, Undecodable};

use proto::{
    PortSet, GRE_PROTO_ERSPAN_2, GRE_PROTO_ERSPAN_3, GRE_PROTO_TEB, IPPROTO_GRE, IPPROTO_ICMP,
    IPPROTO_ICMPV6, IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_TCP, IPPROTO_UDP, MAX_TUNNEL_DEPTH,
};

/// How often, in capture time, stale fragments and TCP streams are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// What the packet layer needs to know from the configuration.
#[derive(Clone, Debug)]
pub struct DecoderOptions {
    /// TCP streams on these ports are reassembled as SIP.
    pub sip_ports: Vec<u16>,
    pub defrag: DefragLimits,
    pub tcp: tcp::TcpLimits,
}

impl Default for DecoderOptions {
    fn default() -> Self {
        DecoderOptions {
            sip_ports: vec![5060, 5061],
            defrag: DefragLimits::default(),
            tcp: tcp::TcpLimits::default(),
        }
    }
}

/// The packet layer as a state machine: frames in, datagrams out. It keeps fragment
/// and TCP stream state between frames and never reads a clock.
pub struct Decoder {
    sip_ports: PortSet,
    defrag: Defragmenter,
    tcp: tcp::TcpStreams,
    counters: Counters,
    next_sweep: Timestamp,
}

impl Decoder {
    pub fn new(options: &DecoderOptions) -> Self {
        Decoder {
            sip_ports: PortSet::new(options.sip_ports.iter().copied()),
            defrag: Defragmenter::new(options.defrag),
            tcp: tcp::TcpStreams::new(options.tcp),
            counters: Counters::default(),
            next_sweep: Timestamp::default(),
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The counters so far, leaving zeroes: per-file statistics over one engine.
    pub fn take_counters(&mut self) -> Counters {
        std::mem::take(&mut self.counters)
    }

    pub fn tcp_stats(&self) -> &tcp::TcpStats {
        self.tcp.stats()
    }

    /// Decodes one frame; each datagram found goes to `out`.
    pub fn decode(&mut self, frame: &Frame<'_>, out: &mut dyn FnMut(&Datagram<'_>)) {
        let c = &mut self.counters;
        c.frames += 1;
        c.bytes += frame.data.len() as u64;
        c.link_types.add(frame.link);
        if frame.orig_len as usize > frame.data.len() {
            c.snaplen_cut += 1;
        }
        if frame.time >= self.next_sweep {
            self.sweep(frame.time, out);
        }
        match link::decode(frame.link, frame.data) {
            Ok(LinkPayload::Ip(packet)) => self.ip(frame.time, packet, 0, out),
            Ok(LinkPayload::Ignored(why)) => self.counters.ignored.add(why),
            Err(why) => self.counters.undecodable.add(why),
        }
    }

    /// Advances capture time without a frame (a live capture's tick on a quiet line).
    pub fn tick(&mut self, now: Timestamp, out: &mut dyn FnMut(&Datagram<'_>)) {
        if now >= self.next_sweep {
            self.sweep(now, out);
        }
    }

    /// End of input: what is still partial is dropped and counted.
    pub fn finish(&mut self, out: &mut dyn FnMut(&Datagram<'_>)) {
        self.counters.fragments_dropped += self.defrag.finish();
        let messages = &mut self.counters.tcp_sip_messages;
        self.tcp.finish(&mut |d: &Datagram<'_>| {
            *messages += 1;
            out(d)
        });
    }

    /// Skipping a TCP hole can complete messages waiting behind it: they go to `out`.
    fn sweep(&mut self, now: Timestamp, out: &mut dyn FnMut(&Datagram<'_>)) {
        self.counters.fragments_dropped += self.defrag.expire(now);
        let messages = &mut self.counters.tcp_sip_messages;
        self.tcp.expire(now, &mut |d: &Datagram<'_>| {
            *messages += 1;
            out(d)
        });
        self.next_sweep = now.saturating_add(SWEEP_INTERVAL);
    }

    fn ip(&mut self, time: Timestamp, data: &[u8], depth: u8, out: &mut dyn FnMut(&Datagram<'_>)) {
        // Extension header errors only stop the walk; the payload found so far is kept.
        let Ok((packet, _)) = LaxIpSlice::from_slice(data) else {
            self.counters.undecodable.add(Undecodable::BadIpHeader);
            return;
        };
        let (src, dst) = (packet.source_addr(), packet.destination_addr());
        let payload = packet.payload();
        let protocol = payload.ip_number.0;
        let fragment = match &packet {
            LaxIpSlice::Ipv4(v4) => {
                self.counters.ipv4_packets += 1;
                let h = v4.header();
                payload.fragmented.then(|| {
                    (
                        u32::from(h.identification()),
                        h.fragments_offset().value(),
                        h.more_fragments(),
                    )
                })
            }
            LaxIpSlice::Ipv6(v6) => {
                self.counters.ipv6_packets += 1;
                if payload.fragmented {
                    v6.extensions()
                        .clone()
                        .into_iter()
                        .find_map(|ext| match ext {
                            Ipv6ExtensionSlice::Fragment(f) => Some((
                                f.identification(),
                                f.fragment_offset().value(),
                                f.more_fragments(),
                            )),
                            _ => None,
                        })
                } else {
                    None
                }
            }
        };
        let Some((id, offset, more)) = fragment else {
            self.transport(time, src, dst, protocol, payload.payload, depth, out);
            return;
        };
        self.counters.fragments += 1;
        if payload.incomplete {
            // A fragment cut by the snap length can never complete its datagram.
            self.counters.fragments_dropped += 1;
            return;
        }
        let frag = Fragment {
            key: FragKey {
                src,
                dst,
                id,
                protocol,
            },
            offset,
            more,
            payload: payload.payload,
        };
        match self.defrag.add(time, &frag) {
            FragOutcome::Complete(whole) => {
                self.counters.fragments_reassembled += 1;
                self.transport(time, src, dst, protocol, &whole, depth, out);
                self.defrag.recycle(whole);
            }
            FragOutcome::Dropped(n) => self.counters.fragments_dropped += n,
            FragOutcome::Pending | FragOutcome::Duplicate => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn transport(
        &mut self,
        time: Timestamp,
        src: IpAddr,
        dst: IpAddr,
        protocol: u8,
        data: &[u8],
        depth: u8,
        out: &mut dyn FnMut(&Datagram<'_>),
    ) {
        match protocol {
            IPPROTO_UDP => self.udp(time, src, dst, data, out),
            IPPROTO_TCP => self.tcp(time, src, dst, data, out),
            IPPROTO_ICMP | IPPROTO_ICMPV6 => self.counters.ignored.add(Ignored::Icmp),
            IPPROTO_IPIP | IPPROTO_IPV6 => {
                if let Some(depth) = self.enter_tunnel(depth) {
                    self.ip(time, data, depth, out);
                }
            }
            IPPROTO_GRE => {
                if let Some(depth) = self.enter_tunnel(depth) {
                    self.gre(time, data, depth, out);
                }
            }
            _ => self.counters.ignored.add(Ignored::OtherIpProtocol),
        }
    }

    fn enter_tunnel(&mut self, depth: u8) -> Option<u8> {
        if depth >= MAX_TUNNEL_DEPTH {
            self.counters.undecodable.add(Undecodable::TunnelTooDeep);
            return None;
        }
        self.counters.tunnelled_packets += 1;
        Some(depth + 1)
    }

    /// GRE (RFC 2784/2890) as mirror ports use it: IP directly, bridged Ethernet, or
    /// ERSPAN type I/II (0x88BE) and III (0x22EB) around a mirrored Ethernet frame.
    fn gre(&mut self, time: Timestamp, data: &[u8], depth: u8, out: &mut dyn FnMut(&Datagram<'_>)) {
        let (Some(flags), Some(proto)) = (be16(data, 0), be16(data, 2)) else {
            self.counters.undecodable.add(Undecodable::UnsupportedGre);
            return;
        };
        let (checksum, routing, key, seq) = (
            flags & 0x8000 != 0,
            flags & 0x4000 != 0,
            flags & 0x2000 != 0,
            flags & 0x1000 != 0,
        );
        if flags & 0x7 != 0 || routing {
            // Version 1 is PPTP's enhanced GRE; source routing is obsolete.
            self.counters.undecodable.add(Undecodable::UnsupportedGre);
            return;
        }
        let header = 4 + 4 * (usize::from(checksum) + usize::from(key) + usize::from(seq));
        let Some(inner) = data.get(header..) else {
            self.counters.undecodable.add(Undecodable::UnsupportedGre);
            return;
        };
        let frame = match proto {
            link::ETHERTYPE_IPV4 | link::ETHERTYPE_IPV6 => {
                return self.ip(time, inner, depth, out);
            }
            GRE_PROTO_TEB => inner,
            // Type I has no ERSPAN header and no GRE sequence number; type II has both.
            GRE_PROTO_ERSPAN_2 if !seq => inner,
            GRE_PROTO_ERSPAN_2 => match inner.first() {
                Some(v) if v >> 4 == 1 && inner.len() >= 8 => &inner[8..],
                _ => {
                    self.counters.undecodable.add(Undecodable::BadErspan);
                    return;
                }
            },
            GRE_PROTO_ERSPAN_3 => {
                // 12-byte header; its last bit (O) adds an 8-byte platform subheader.
                let optional = inner.get(11).map(|b| b & 1 == 1);
                let len = if optional == Some(true) { 20 } else { 12 };
                match inner.first() {
                    Some(v) if v >> 4 == 2 && inner.len() >= len => &inner[len..],
                    _ => {
                        self.counters.undecodable.add(Undecodable::BadErspan);
                        return;
                    }
                }
            }
            _ => {
                self.counters.undecodable.add(Undecodable::UnsupportedGre);
                return;
            }
        };
        match link::ethernet(frame) {
            Ok(LinkPayload::Ip(packet)) => self.ip(time, packet, depth, out),
            Ok(LinkPayload::Ignored(why)) => self.counters.ignored.add(why),
            Err(why) => self.counters.undecodable.add(why),
        }
    }

    fn udp(
        &mut self,
        time: Timestamp,
        src: IpAddr,
        dst: IpAddr,
        data: &[u8],
        out: &mut dyn FnMut(&Datagram<'_>),
    ) {
        let (Some(sport), Some(dport), Some(len)) = (be16(data, 0), be16(data, 2), be16(data, 4))
        else {
            self.counters.undecodable.add(Undecodable::BadUdpHeader);
            return;
        };
        let len = usize::from(len);
        if len < 8 {
            self.counters.undecodable.add(Undecodable::BadUdpHeader);
            return;
        }
        if data.len() < 8 {
            self.counters.undecodable.add(Undecodable::BadUdpHeader);
            return;
        }
        // A datagram cut short (snap length, or an IP length that overstates what was
        // sent, as in some real captures) still goes up with what is there: an RTP
        // packet missing its tail is mostly audio, and tshark counts it too.
        let payload = match data.get(8..len) {
            Some(whole) => whole,
            None => {
                self.counters.udp_truncated += 1;
                &data[8..]
            }
        };
        self.counters.udp_datagrams += 1;
        out(&Datagram {
            time,
            src: SocketAddr::new(src, sport),
            dst: SocketAddr::new(dst, dport),
            transport: Transport::Udp,
            payload,
        });
    }

    fn tcp(
        &mut self,
        time: Timestamp,
        src: IpAddr,
        dst: IpAddr,
        data: &[u8],
        out: &mut dyn FnMut(&Datagram<'_>),
    ) {
        let (Some(sport), Some(dport), Some(seq), Some(&offset), Some(&flags)) = (
            be16(data, 0),
            be16(data, 2),
            be32(data, 4),
            data.get(12),
            data.get(13),
        ) else {
            self.counters.undecodable.add(Undecodable::BadTcpHeader);
            return;
        };
        let header = usize::from(offset >> 4) * 4;
        let Some(payload) = data.get(header..).filter(|_| header >= 20) else {
            self.counters.undecodable.add(Undecodable::BadTcpHeader);
            return;
        };
        self.counters.tcp_segments += 1;
        let segment = tcp::TcpSegment {
            seq,
            syn: flags & 0x02 != 0,
            fin: flags & 0x01 != 0,
            rst: flags & 0x04 != 0,
            payload,
        };
        let sip_port = self.sip_ports.contains(sport) || self.sip_ports.contains(dport);
        let messages = &mut self.counters.tcp_sip_messages;
        self.tcp.segment(
            time,
            SocketAddr::new(src, sport),
            SocketAddr::new(dst, dport),
            sip_port,
            &segment,
            &mut |d: &Datagram<'_>| {
                *messages += 1;
                out(d)
            },
        );
    }
}
