//! calltap's own capture generator: byte-exact SIP/RTP traffic on any link layer, in any
//! capture format, with the network edge cases a recorder must survive.
//!
//! Tests, benchmarks and the bundled demo captures (`pcaps/`) all come from here, so every
//! case a test checks is also a file one can open in Wireshark. Everything is
//! deterministic: the same script and seed give the same bytes.
//!
//! The layers, bottom up:
//! - [`wire`]: IP/UDP/TCP/ICMP packets with correct checksums, IPv4/IPv6 fragmentation,
//!   IPv6 extension headers. A [`Packet`] is an IP packet with its capture time.
//! - [`link`]: [`Link`] frames a packet (Ethernet, VLAN, QinQ, PPPoE, SLL, SLL2, raw,
//!   NULL); [`Tunnel`] wraps it (ERSPAN II/III over GRE, IP-in-IP, 6in4).
//! - [`tcp`]: [`TcpConn`] hands out segments with consistent sequence numbers.
//! - [`g711`]: G.711 encoders and the known [`Signal`]s the calls carry.
//! - [`call`]: [`CallScript`], a two-party call (SIP dialog + RTP both ways).
//! - [`b2bua`]: conversations through a B2BUA PBX, one dialog per leg.
//! - [`writer`]: pcap ([`PcapFile`]) and pcapng ([`PcapNgFile`]) writers, streaming to any
//!   `Write`, and helpers that damage a file on purpose.
//! - [`office`]: ten minutes of a small office's calls, the demo to replay first.
//! - [`load`]: thousands of concurrent calls streamed to a file, for benchmarks.
//! - [`flood`]: an INVITE flood as SIP scanners send it, answered by nobody.
//! - [`demo`]: the bundled captures and their README.
//!
//! A test that needs a capture in memory:
//! ```
//! use calltap::pcapgen::{pcap_bytes, CallScript, Link, Party};
//! let call = CallScript::new(7).hangup_by(Party::Callee);
//! let pcap: Vec<u8> = pcap_bytes(Link::Vlan { id: 10 }, &call.to_vec());
//! let facts = call.facts(); // Call-ID, tags, RTP counts... to assert against
//! assert_eq!(facts.sip_messages, 7);
//! # assert!(pcap.len() > 24);
//! ```

pub mod b2bua;
pub mod call;
pub mod demo;
pub mod flood;
pub mod g711;
pub mod link;
pub mod load;
pub mod office;
pub mod rng;
pub mod scenario;
pub mod tcp;
pub mod wire;
pub mod writer;

pub use call::{
    CallFacts, CallIds, CallPackets, CallScript, Party, Phone, RtpStream, SipMessage, SipTransport,
};
pub use g711::{Codec, Signal};
pub use link::{Link, Tunnel};
pub use load::{LoadSpec, LoadStats};
pub use tcp::{Side, TcpConn};
pub use wire::{FragOrder, Fragmentation, IpOpts, Ipv6Ext, Packet};
pub use writer::{
    pcap_bytes, pcap_bytes_with, ByteOrder, FrameSink, Interface, PcapFile, PcapNgFile,
    TsResolution,
};

#[cfg(test)]
mod tests;
