//! Many concurrent calls in one capture, streamed: the input of the benchmarks.
//!
//! Calls are activated in start order and merged through a binary heap keyed by each
//! call's next packet time, so memory holds only the calls in progress (a few KB each)
//! whatever the length of the capture.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufWriter};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use crate::capture::Timestamp;

use super::call::{CallPackets, CallScript, Party, Phone, DEFAULT_START};
use super::g711::{Codec, Signal};
use super::link::Link;
use super::rng::Rng;
use super::wire::Packet;
use super::writer::{ByteOrder, PcapFile, TsResolution};

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadSpec {
    pub calls: usize,
    /// Length of the capture.
    pub seconds: u32,
    /// Short calls spread over the whole capture instead of long concurrent ones.
    pub short: bool,
    /// Talk time of a short call.
    pub short_talk: Duration,
    pub seed: u64,
    pub start: Timestamp,
}

impl LoadSpec {
    /// `calls` calls all in progress together for about `seconds`: staggered over the
    /// first 5% of the capture (at most 5 s), each with its whole SIP exchange, hanging
    /// up in the last 5%. 500 calls x 60 s make about 2.8 M packets.
    pub fn concurrent(calls: usize, seconds: u32) -> Self {
        LoadSpec {
            calls,
            seconds,
            short: false,
            short_talk: Duration::from_millis(200),
            seed: 0x0CA1_17A9,
            start: DEFAULT_START,
        }
    }

    /// `calls` short calls (0.2 s of talk, so little RTP) started uniformly over the
    /// capture: a SIP-heavy load.
    pub fn short_calls(calls: usize, seconds: u32) -> Self {
        LoadSpec {
            short: true,
            ..Self::concurrent(calls, seconds)
        }
    }

    /// The script of call `i`.
    pub fn call(&self, i: usize) -> CallScript {
        let mut r = Rng::derive(self.seed, i as u64);
        let window = Duration::from_secs(u64::from(self.seconds.max(1)));
        let n = self.calls.max(1) as u32;
        let (offset, ring, talk) = if self.short {
            let ring = Duration::from_millis(r.range(300, 1500));
            // Starts must ascend with `i` (generate() activates calls in index order), so
            // the window left for them cannot depend on this call's own ring time.
            let usable = window.saturating_sub(Duration::from_millis(1600) + self.short_talk);
            let offset = usable.mul_f64(f64::from(i as u32) / f64::from(n));
            (offset, ring, self.short_talk)
        } else {
            let spread = (window / 20).min(Duration::from_secs(5));
            let offset = spread * i as u32 / n;
            let ring = Duration::from_millis(r.range(500, 2000));
            let end = window.saturating_sub(spread) + spread * i as u32 / n;
            let talk = end
                .saturating_sub(offset + ring)
                .max(Duration::from_millis(100));
            (offset, ring, talk)
        };
        // Phones 10.20.0.0/16 call through the PBX 10.0.0.5; the PBX gives each call its
        // own RTP port pair.
        let k = i % 60_000;
        let phone_ip = Ipv4Addr::new(10, 20, (k / 250) as u8, (k % 250 + 2) as u8);
        let pbx_ip = Ipv4Addr::new(10, 0, 0, 5);
        let pbx_port = 10_000 + 2 * (i % 25_000) as u16;
        let phone = Phone::new(
            &format!("{}", 2000 + k),
            IpAddr::V4(phone_ip),
            16_384 + 2 * (i % 8) as u16,
        )
        .display(&format!("Phone {}", 2000 + k))
        .signal(Signal::Tone {
            freq_hz: 300 + 10 * (i % 100) as u32,
            amplitude: 7000,
        });
        let pbx = Phone::new(
            &format!("+1555{:07}", i % 10_000_000),
            IpAddr::V4(pbx_ip),
            pbx_port,
        )
        .display("PBX")
        .signal(Signal::Tone {
            freq_hz: 1000,
            amplitude: 5000,
        });
        CallScript::new(self.seed ^ (i as u64).wrapping_mul(0x9E37_79B9))
            .caller(phone)
            .callee(pbx)
            .codec(if i % 3 == 0 { Codec::Pcma } else { Codec::Pcmu })
            .start(self.start.saturating_add(offset))
            .ring(ring)
            .talk(talk)
            .hangup_by(if i % 2 == 0 {
                Party::Caller
            } else {
                Party::Callee
            })
    }

    /// Writes the load as an Ethernet pcap at `path`: under a temporary name renamed
    /// when complete, so an interrupted run leaves no half capture that a later run
    /// would take for the whole one.
    pub fn write_pcap(&self, path: &Path) -> io::Result<LoadStats> {
        let partial = path.with_extension("pcap.partial");
        let mut pcap = PcapFile::new(
            BufWriter::with_capacity(1 << 20, File::create(&partial)?),
            Link::Ethernet,
            ByteOrder::Little,
            TsResolution::Micro,
        )?;
        let stats = self.generate(|p| pcap.write_packet(&p))?;
        pcap.finish()?;
        std::fs::rename(&partial, path)?;
        Ok(stats)
    }

    /// Streams every packet of the load, in time order, into `sink`.
    pub fn generate(
        &self,
        mut sink: impl FnMut(Packet) -> io::Result<()>,
    ) -> io::Result<LoadStats> {
        let mut stats = LoadStats::default();
        let mut slots: Vec<Option<CallPackets>> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        let mut heap: BinaryHeap<Reverse<(Timestamp, usize)>> = BinaryHeap::new();
        let mut next_call = 0;
        // Start times ascend with the call index, so calls are activated in order.
        let mut next_start = (self.calls > 0).then(|| self.call(0).start);
        loop {
            let head = heap.peek().map(|Reverse((t, _))| *t);
            if let Some(s) = next_start {
                if head.is_none_or(|h| s <= h) {
                    let script = self.call(next_call);
                    let facts = script.facts();
                    stats.calls += 1;
                    stats.sip_messages += facts.sip_messages as u64;
                    stats.rtp_packets += facts.rtp_packets();
                    let packets = script.packets();
                    let slot = free.pop().unwrap_or_else(|| {
                        slots.push(None);
                        slots.len() - 1
                    });
                    if let Some(t) = packets.peek_time() {
                        heap.push(Reverse((t, slot)));
                    }
                    slots[slot] = Some(packets);
                    next_call += 1;
                    next_start = (next_call < self.calls).then(|| self.call(next_call).start);
                    debug_assert!(next_start.is_none_or(|n| n >= s), "call starts must ascend");
                    continue;
                }
            }
            let Some(Reverse((_, slot))) = heap.pop() else {
                break;
            };
            let call = slots[slot].as_mut().expect("active slot");
            let p = call.next().expect("peeked");
            match call.peek_time() {
                Some(t) => heap.push(Reverse((t, slot))),
                None => {
                    slots[slot] = None;
                    free.push(slot);
                }
            }
            stats.packets += 1;
            stats.bytes += p.data.len() as u64;
            sink(p)?;
        }
        Ok(stats)
    }
}

/// What a load contains.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadStats {
    pub calls: u64,
    pub packets: u64,
    pub sip_messages: u64,
    pub rtp_packets: u64,
    /// IP bytes (without link headers).
    pub bytes: u64,
}
