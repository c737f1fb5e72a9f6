//! IPv4 and IPv6 fragment reassembly, bounded.
//!
//! etherparse's `IpDefragBuf` places each fragment; its `IpDefragPool` is not used
//! because it has no bound on memory, no timeout and accepts overlaps silently
//! (its own docs warn of out-of-memory attacks). This pool adds a cap on pending
//! datagrams and on bytes, a capture-time timeout, and drops a datagram whose
//! fragments overlap with different extents (RFC 5722; Linux does the same for IPv4).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use etherparse::defrag::IpDefragBuf;
use etherparse::{IpFragOffset, IpNumber};

use crate::base::Timestamp;

/// Bounds of the reassembly pool.
#[derive(Clone, Copy, Debug)]
pub struct DefragLimits {
    /// Datagrams being reassembled at once. A SIP host has a handful in flight;
    /// 1024 absorbs bursts without letting a flood of first fragments grow the map.
    pub max_pending: usize,
    /// Bytes held across all pending datagrams (each is at most 64 KiB).
    pub max_bytes: usize,
    /// Capture time a datagram may wait for its missing fragments: Linux's
    /// `ipfrag_time` is 30 s.
    pub timeout: Duration,
}

impl Default for DefragLimits {
    fn default() -> Self {
        DefragLimits {
            max_pending: 1024,
            max_bytes: 16 << 20,
            timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4's 16-bit identification or IPv6's 32-bit one.
    pub id: u32,
    pub protocol: u8,
}

/// One fragment of a datagram.
pub struct Fragment<'a> {
    pub key: FragKey,
    /// In 8-byte units, as on the wire.
    pub offset: u16,
    pub more: bool,
    pub payload: &'a [u8],
}

/// What became of a fragment.
#[derive(Debug, PartialEq, Eq)]
pub enum FragOutcome {
    /// Held until the rest arrives.
    Pending,
    /// The last missing piece: the whole transport payload.
    Complete(Vec<u8>),
    /// An exact copy of a fragment already held (a capture on two interfaces).
    Duplicate,
    /// The fragment, and the datagram it belonged to, were dropped: this many
    /// fragments in all.
    Dropped(u64),
}

struct Pending {
    buf: IpDefragBuf,
    /// (start, end) byte ranges received, to tell duplicates from overlaps.
    pieces: Vec<(u32, u32)>,
    last_seen: Timestamp,
    bytes: usize,
}

/// Fragments per datagram kept track of. A 64 KiB datagram at a 1280-byte MTU is
/// 52 fragments; anything past this is an attack or garbage.
const MAX_FRAGMENTS_PER_DATAGRAM: usize = 64;

#[derive(Default)]
pub struct Defragmenter {
    limits: DefragLimits,
    pending: HashMap<FragKey, Pending>,
    bytes: usize,
    spare: Vec<Vec<u8>>,
}

impl Defragmenter {
    pub fn new(limits: DefragLimits) -> Self {
        Defragmenter {
            limits,
            ..Default::default()
        }
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn add(&mut self, time: Timestamp, frag: &Fragment<'_>) -> FragOutcome {
        let Ok(offset) = IpFragOffset::try_new(frag.offset) else {
            return FragOutcome::Dropped(1);
        };
        let start = u32::from(frag.offset) * 8;
        let end = start + frag.payload.len() as u32;
        if end > 65_535 {
            return FragOutcome::Dropped(1);
        }
        let mut dropped = 0;
        if !self.pending.contains_key(&frag.key) {
            dropped += self.make_room(frag.payload.len());
            let data = self.spare.pop().unwrap_or_default();
            let buf = IpDefragBuf::new(IpNumber(frag.key.protocol), data, Vec::new());
            self.pending.insert(
                frag.key,
                Pending {
                    buf,
                    pieces: Vec::new(),
                    last_seen: time,
                    bytes: 0,
                },
            );
        }
        let Some(entry) = self.pending.get_mut(&frag.key) else {
            return FragOutcome::Dropped(dropped + 1);
        };
        if entry.pieces.contains(&(start, end)) {
            return FragOutcome::Duplicate;
        }
        let overlaps = entry.pieces.iter().any(|&(s, e)| start < e && s < end);
        if overlaps
            || entry.pieces.len() >= MAX_FRAGMENTS_PER_DATAGRAM
            || entry.buf.add(offset, frag.more, frag.payload).is_err()
        {
            let held = entry.pieces.len() as u64;
            self.discard(&frag.key);
            return FragOutcome::Dropped(dropped + held + 1);
        }
        entry.pieces.push((start, end));
        entry.last_seen = time;
        entry.bytes += frag.payload.len();
        self.bytes += frag.payload.len();
        if !entry.buf.is_complete() {
            return if dropped > 0 {
                FragOutcome::Dropped(dropped)
            } else {
                FragOutcome::Pending
            };
        }
        let Some(done) = self.pending.remove(&frag.key) else {
            return FragOutcome::Dropped(dropped);
        };
        self.bytes -= done.bytes;
        let (data, _) = done.buf.take_bufs();
        FragOutcome::Complete(data)
    }

    /// Gives a finished datagram's buffer back for reuse.
    pub fn recycle(&mut self, mut data: Vec<u8>) {
        if self.spare.len() < 16 {
            data.clear();
            self.spare.push(data);
        }
    }

    /// Drops datagrams that waited longer than the timeout; returns the fragments dropped.
    pub fn expire(&mut self, now: Timestamp) -> u64 {
        let timeout = self.limits.timeout;
        let mut dropped = 0;
        let mut freed = 0;
        self.pending.retain(|_, p| {
            let keep = now.since(p.last_seen) < timeout;
            if !keep {
                dropped += p.pieces.len() as u64;
                freed += p.bytes;
            }
            keep
        });
        self.bytes -= freed;
        dropped
    }

    /// Everything still pending at the end of input; returns the fragments dropped.
    pub fn finish(&mut self) -> u64 {
        let dropped = self.pending.values().map(|p| p.pieces.len() as u64).sum();
        self.pending.clear();
        self.bytes = 0;
        dropped
    }

    /// Evicts the stalest datagrams until one more fits; returns fragments dropped.
    fn make_room(&mut self, incoming: usize) -> u64 {
        let mut dropped = 0;
        while !self.pending.is_empty()
            && (self.pending.len() >= self.limits.max_pending
                || self.bytes + incoming > self.limits.max_bytes)
        {
            let Some(oldest) = self
                .pending
                .iter()
                .min_by_key(|(_, p)| p.last_seen)
                .map(|(k, _)| *k)
            else {
                break;
            };
            dropped += self
                .pending
                .get(&oldest)
                .map_or(0, |p| p.pieces.len() as u64);
            self.discard(&oldest);
        }
        dropped
    }

    fn discard(&mut self, key: &FragKey) {
        if let Some(p) = self.pending.remove(key) {
            self.bytes -= p.bytes;
            let (data, _) = p.buf.take_bufs();
            self.recycle(data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32) -> FragKey {
        FragKey {
            src: IpAddr::from([10, 0, 0, 1]),
            dst: IpAddr::from([10, 0, 0, 2]),
            id,
            protocol: 17,
        }
    }

    fn t(secs: u64) -> Timestamp {
        Timestamp::from_nanos(secs * 1_000_000_000)
    }

    fn frag(id: u32, offset: u16, more: bool, payload: &[u8]) -> Fragment<'_> {
        Fragment {
            key: key(id),
            offset,
            more,
            payload,
        }
    }

    #[test]
    fn out_of_order_fragments_reassemble_once() {
        let data: Vec<u8> = (0..40u8).collect();
        let mut d = Defragmenter::new(DefragLimits::default());
        assert_eq!(
            d.add(t(0), &frag(7, 4, false, &data[32..])),
            FragOutcome::Pending
        );
        assert_eq!(
            d.add(t(0), &frag(7, 0, true, &data[..16])),
            FragOutcome::Pending
        );
        assert_eq!(
            d.add(t(0), &frag(7, 0, true, &data[..16])),
            FragOutcome::Duplicate
        );
        assert_eq!(
            d.add(t(0), &frag(7, 2, true, &data[16..32])),
            FragOutcome::Complete(data.clone())
        );
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn overlapping_fragments_drop_the_datagram() {
        let data = [0u8; 32];
        let mut d = Defragmenter::new(DefragLimits::default());
        assert_eq!(
            d.add(t(0), &frag(1, 0, true, &data[..16])),
            FragOutcome::Pending
        );
        assert_eq!(
            d.add(t(0), &frag(1, 1, true, &data[..16])),
            FragOutcome::Dropped(2)
        );
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn stale_datagrams_time_out_in_capture_time() {
        let mut d = Defragmenter::new(DefragLimits::default());
        assert_eq!(
            d.add(t(0), &frag(1, 0, true, &[0; 8])),
            FragOutcome::Pending
        );
        assert_eq!(d.expire(t(29)), 0);
        assert_eq!(d.expire(t(31)), 1);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn the_pool_is_bounded() {
        let limits = DefragLimits {
            max_pending: 4,
            ..DefragLimits::default()
        };
        let mut d = Defragmenter::new(limits);
        for id in 0..100 {
            let _ = d.add(t(u64::from(id)), &frag(id, 0, true, &[0; 8]));
        }
        assert_eq!(d.pending(), 4);
        assert_eq!(d.finish(), 4);
    }

    #[test]
    fn bogus_offsets_are_dropped() {
        let mut d = Defragmenter::new(DefragLimits::default());
        assert_eq!(
            d.add(t(0), &frag(1, 8191, false, &[0; 64])),
            FragOutcome::Dropped(1)
        );
        // A middle fragment whose length is not a multiple of 8.
        assert_eq!(
            d.add(t(0), &frag(2, 0, true, &[0; 7])),
            FragOutcome::Dropped(1)
        );
    }
}
