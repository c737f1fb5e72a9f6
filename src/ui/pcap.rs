//! A call's SIP messages as a pcap file for Wireshark: each message in an Ethernet /
//! IPv4-or-IPv6 frame with its capture time and addresses, built with etherparse.
//!
//! UDP messages are one datagram each. TCP messages are written as TCP segments of
//! their stream (PSH+ACK, sequence numbers running per direction from 1, cut at
//! [`TCP_SEGMENT`] bytes), with no handshake: Wireshark reassembles and decodes them as
//! SIP on the SIP ports as it does any capture that starts mid-connection.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapTsResolution, PcapWriter};
use pcap_file::DataLink;

use crate::base::{TracedMessage, Transport};

/// Payload bytes per TCP segment written: an Ethernet MSS.
const TCP_SEGMENT: usize = 1448;

/// Room for the largest UDP datagram with its headers (tcpdump's default snap length).
const SNAPLEN: u32 = 262_144;

/// Locally administered MAC addresses: the trace keeps no link layer.
const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// What was written.
#[derive(Debug, Default)]
pub(crate) struct PcapFile {
    pub(crate) bytes: Vec<u8>,
    /// Frames written (a TCP message over one segment long takes several).
    pub(crate) frames: usize,
    /// Messages that could not be framed (a source and destination of different IP
    /// families, which no capture can hold).
    pub(crate) skipped: usize,
}

/// The pcap of `messages`, in the order given.
pub(crate) fn write(messages: &[&TracedMessage]) -> Result<PcapFile, String> {
    let header = PcapHeader {
        snaplen: SNAPLEN,
        datalink: DataLink::ETHERNET,
        ts_resolution: PcapTsResolution::NanoSecond,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(Vec::new(), header)
        .map_err(|e| format!("cannot start the pcap: {e}"))?;
    let mut out = PcapFile::default();
    // Next sequence number per direction of a TCP stream.
    let mut next_seq: HashMap<(SocketAddr, SocketAddr), u32> = HashMap::new();
    let mut frame = Vec::with_capacity(2048);
    for m in messages {
        let segments: Vec<&[u8]> = match m.transport {
            Transport::Udp => vec![&m.text[..]],
            Transport::Tcp => m.text.chunks(TCP_SEGMENT).collect(),
        };
        for payload in segments {
            frame.clear();
            let built = match m.transport {
                Transport::Udp => udp_frame(m.src, m.dst, payload, &mut frame),
                Transport::Tcp => {
                    let seq = *next_seq.entry((m.src, m.dst)).or_insert(1);
                    let ack = *next_seq.entry((m.dst, m.src)).or_insert(1);
                    next_seq.insert((m.src, m.dst), seq.wrapping_add(payload.len() as u32));
                    tcp_frame(m.src, m.dst, seq, ack, payload, &mut frame)
                }
            };
            if !built {
                out.skipped += 1;
                break;
            }
            let time = Duration::from_nanos(m.time.as_nanos());
            let packet = PcapPacket::new(time, frame.len() as u32, &frame[..])
                .map_err(|e| format!("a frame does not fit a pcap record: {e}"))?;
            writer
                .write_packet(&packet)
                .map_err(|e| format!("cannot write a frame: {e}"))?;
            out.frames += 1;
        }
    }
    out.bytes = writer.into_inner();
    Ok(out)
}

/// The Ethernet and IP layers for `src` -> `dst`, or None for mixed families.
fn ip_layers(
    src: SocketAddr,
    dst: SocketAddr,
) -> Option<etherparse::PacketBuilderStep<etherparse::IpHeaders>> {
    let ethernet = PacketBuilder::ethernet2(MAC_A, MAC_B);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Some(ethernet.ipv4(s.octets(), d.octets(), 64)),
        (IpAddr::V6(s), IpAddr::V6(d)) => Some(ethernet.ipv6(s.octets(), d.octets(), 64)),
        _ => None,
    }
}

fn udp_frame(src: SocketAddr, dst: SocketAddr, payload: &[u8], out: &mut Vec<u8>) -> bool {
    let Some(ip) = ip_layers(src, dst) else {
        return false;
    };
    ip.udp(src.port(), dst.port()).write(out, payload).is_ok()
}

fn tcp_frame(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> bool {
    let Some(ip) = ip_layers(src, dst) else {
        return false;
    };
    ip.tcp(src.port(), dst.port(), seq, 65_535)
        .ack(ack)
        .psh()
        .write(out, payload)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::Timestamp;

    fn message(transport: Transport, src: &str, dst: &str, len: usize) -> TracedMessage {
        TracedMessage {
            time: Timestamp::from_nanos(1_772_600_000_000_000_001),
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            transport,
            text: vec![b'a'; len].into(),
        }
    }

    #[test]
    fn a_long_tcp_message_takes_several_segments_and_mixed_families_are_skipped() {
        let messages = [
            message(Transport::Udp, "10.0.0.1:5060", "10.0.0.2:5060", 500),
            message(
                Transport::Tcp,
                "[2001:db8::1]:40000",
                "[2001:db8::2]:5060",
                3000,
            ),
            message(Transport::Udp, "10.0.0.1:5060", "[2001:db8::2]:5060", 10),
        ];
        let refs: Vec<&TracedMessage> = messages.iter().collect();
        let pcap = write(&refs).unwrap();
        assert_eq!(pcap.frames, 1 + 3);
        assert_eq!(pcap.skipped, 1);
        // Global header, then the first record: 16-byte header and Ethernet + IPv4 + UDP.
        assert!(pcap.bytes.len() > 24 + 16 + 14 + 20 + 8 + 500);
    }
}
