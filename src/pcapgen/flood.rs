//! An INVITE flood as SIP scanners send it (SIPVicious' `svwar`/`svcrack`, "friendly-
//! scanner"): a stream of INVITEs from a few or many sources to the PBX, each with its
//! own Call-ID, none of which anyone answers. What a recorder on an internet-facing PBX
//! sees every day, and what must cost it a bounded amount.

use std::fs::File;
use std::io::{self, BufWriter};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::capture::Timestamp;

use super::call::DEFAULT_START;
use super::link::Link;
use super::rng::Rng;
use super::wire::{udp, Packet};
use super::writer::{ByteOrder, PcapFile, TsResolution};

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct FloodSpec {
    pub invites: usize,
    /// Source addresses the INVITEs come from, in turn (100.64.0.0/10, CGN space).
    pub sources: usize,
    pub per_second: u32,
    /// Give each INVITE an SDP offer (some floods do; SIPVicious does not).
    pub with_sdp: bool,
    pub seed: u64,
    pub start: Timestamp,
}

/// The PBX the flood targets.
pub const FLOOD_TARGET: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)), 5060);

impl FloodSpec {
    /// `invites` INVITEs from `sources` addresses at 1,000 a second, without SDP.
    pub fn new(invites: usize, sources: usize) -> Self {
        FloodSpec {
            invites,
            sources: sources.max(1),
            per_second: 1000,
            with_sdp: false,
            seed: 0x5CA7_7E4D,
            start: DEFAULT_START,
        }
    }

    /// The source address of INVITE `i`.
    pub fn source(&self, i: usize) -> IpAddr {
        let k = (i % self.sources) as u32;
        IpAddr::V4(Ipv4Addr::from(0x6440_0000 + 1 + k))
    }

    /// INVITE `i`: its capture time and bytes.
    pub fn invite(&self, i: usize) -> Packet {
        let mut r = Rng::derive(self.seed, i as u64);
        let src_ip = self.source(i);
        let src = SocketAddr::new(src_ip, 5060 + (r.next_u16() % 1000));
        let target = FLOOD_TARGET.ip();
        let ext = 100 + i % 9900;
        let tag = r.next_u32();
        let branch = r.next_u64();
        let call_id = format!("{:016x}{:08x}", r.next_u64(), i);
        let sdp = if self.with_sdp {
            format!(
                "v=0\r\no=- {i} {i} IN IP4 {src_ip}\r\ns=-\r\nc=IN IP4 {src_ip}\r\nt=0 0\r\n\
                 m=audio {} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n",
                10_000 + 2 * (i % 20_000)
            )
        } else {
            String::new()
        };
        let content_type = if sdp.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        let msg = format!(
            "INVITE sip:{ext}@{target} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {src};branch=z9hG4bK{branch:x};rport\r\n\
             Max-Forwards: 70\r\n\
             From: \"{ext}\" <sip:{ext}@{target}>;tag={tag:08x}\r\n\
             To: \"{ext}\" <sip:{ext}@{target}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:{ext}@{src}>\r\n\
             User-Agent: friendly-scanner\r\n\
             Accept: application/sdp\r\n\
             {content_type}Content-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        let nanos = 1_000_000_000u64 * i as u64 / u64::from(self.per_second.max(1));
        let time = self.start.saturating_add(Duration::from_nanos(nanos));
        Packet::new(time, udp(src, FLOOD_TARGET, msg.as_bytes()))
    }

    /// Streams every INVITE, in time order, into `sink`.
    pub fn generate(&self, mut sink: impl FnMut(Packet) -> io::Result<()>) -> io::Result<()> {
        (0..self.invites).try_for_each(|i| sink(self.invite(i)))
    }

    /// Writes the flood as an Ethernet pcap at `path`.
    pub fn write_pcap(&self, path: &Path) -> io::Result<()> {
        let mut pcap = PcapFile::new(
            BufWriter::with_capacity(1 << 20, File::create(path)?),
            Link::Ethernet,
            ByteOrder::Little,
            TsResolution::Micro,
        )?;
        self.generate(|p| pcap.write_packet(&p))?;
        pcap.finish()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_invite_is_its_own_call_from_its_source() {
        let spec = FloodSpec::new(10, 3);
        let texts: Vec<String> = (0..10)
            .map(|i| {
                let p = spec.invite(i);
                String::from_utf8_lossy(&p.data[28..]).into_owned()
            })
            .collect();
        let call_ids: std::collections::HashSet<&str> = texts
            .iter()
            .filter_map(|t| t.lines().find(|l| l.starts_with("Call-ID:")))
            .collect();
        assert_eq!(call_ids.len(), 10);
        assert!(texts.iter().all(|t| t.starts_with("INVITE sip:")));
        assert_eq!(spec.source(0), spec.source(3));
        assert_ne!(spec.source(0), spec.source(1));
        assert!(spec.invite(9).time > spec.invite(0).time);
    }
}
