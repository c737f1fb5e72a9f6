//! Input formats shared by the fuzz targets. Each turns arbitrary bytes into a sequence
//! the code under test consumes, with small headers the fuzzer can flip so that time
//! steps (timeouts, clock jumps), link types and directions are all reachable.
//!
//! `seed.py` writes the same formats from real captures, so the corpora start from
//! frames and segments the decoder really sees.

pub mod targets;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use calltap::capture::{Frame, LinkType, Timestamp};

/// The link types a record's low nibble selects; 8..=15 are link types calltap does
/// not decode (counted as such).
pub const LINKS: [u32; 8] = [1, 0, 108, 101, 228, 229, 113, 276];

pub fn link_type(nibble: u8) -> LinkType {
    match LINKS.get(usize::from(nibble)) {
        Some(&n) => LinkType::from_linktype(n),
        None => LinkType::from_linktype(140 + u32::from(nibble)),
    }
}

/// Time steps a record's bits 4..=6 select: none, a packetisation interval, the sweep
/// interval, past the fragment timeout, past the ring timeout, past the longest call,
/// past the engine's broken-clock threshold, and backwards.
const STEPS: [i64; 8] = [
    0,
    20_000_000,
    1_000_000_000,
    33_000_000_000,
    301_000_000_000,
    5 * 3600 * 1_000_000_000,
    40 * 24 * 3600 * 1_000_000_000,
    -10_000_000_000,
];

/// Start of capture time in the generated sequences: a plausible recent date.
pub const EPOCH: Timestamp = Timestamp::from_nanos(1_700_000_000_000_000_000);

fn step(time: Timestamp, code: u8) -> Timestamp {
    let delta = STEPS[usize::from(code & 7)];
    if delta >= 0 {
        time.saturating_add(Duration::from_nanos(delta as u64))
    } else {
        Timestamp::from_nanos(time.as_nanos().saturating_sub(delta.unsigned_abs()))
    }
}

/// One record of a frame sequence: `[ctl][len lo][len hi][len bytes of data]`.
/// `ctl` bits 0..=3: link type ([`link_type`]), or with bit 7 set, bit 0 the direction
/// of a UDP datagram between two SIP ports whose payload is the data; bits 4..=6: the
/// time step before this frame.
pub struct FrameRecord<'a> {
    pub time: Timestamp,
    pub link: LinkType,
    /// Wrap `data` as the payload of a UDP datagram (see [`udp_frame`]).
    pub udp_sip: Option<bool>,
    pub data: &'a [u8],
}

pub fn frame_records(mut input: &[u8]) -> impl Iterator<Item = FrameRecord<'_>> {
    let mut time = EPOCH;
    std::iter::from_fn(move || {
        let (&ctl, rest) = input.split_first()?;
        let (len, rest) = match rest {
            [lo, hi, rest @ ..] => (usize::from(u16::from_le_bytes([*lo, *hi])), rest),
            _ => (rest.len(), &[][..]),
        };
        let len = len.min(rest.len());
        let (data, rest) = rest.split_at(len);
        input = rest;
        time = step(time, ctl >> 4);
        Some(FrameRecord {
            time,
            link: link_type(ctl & 0x0F),
            udp_sip: (ctl & 0x80 != 0).then_some(ctl & 1 == 1),
            data,
        })
    })
}

pub const PHONE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 21)), 5060);
pub const PBX: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)), 5060);

/// A raw-IP frame carrying `payload` in IPv4/UDP from the phone to the PBX (`reverse`:
/// the other way). Checksums are left zero: calltap does not check them.
pub fn udp_frame(payload: &[u8], reverse: bool, out: &mut Vec<u8>) {
    let (src, dst) = if reverse { (PBX, PHONE) } else { (PHONE, PBX) };
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        unreachable!()
    };
    let payload = &payload[..payload.len().min(65_535 - 28)];
    let total = (28 + payload.len()) as u16;
    out.clear();
    out.extend_from_slice(&[0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0]);
    out[2..4].copy_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&s.octets());
    out.extend_from_slice(&d.octets());
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out.extend_from_slice(&(total - 20).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
}

/// Feeds each record of `input` to `f` as a frame (wrapping UDP records as raw IP).
pub fn for_each_frame(input: &[u8], mut f: impl FnMut(&Frame<'_>)) {
    let mut wrapped = Vec::new();
    for r in frame_records(input) {
        let (link, data) = match r.udp_sip {
            Some(reverse) => {
                udp_frame(r.data, reverse, &mut wrapped);
                (LinkType::RawIp, &wrapped[..])
            }
            None => (r.link, r.data),
        };
        f(&Frame {
            time: r.time,
            link,
            data,
            orig_len: data.len() as u32,
        });
    }
}

/// One record of a TCP segment sequence: `[ctl][seq lo][seq hi][len][len bytes]`.
/// `ctl` bits 0..=1: which of two connections and which direction; bit 2 SYN, bit 3
/// FIN, bit 4 RST; bits 5..=6 the time step (none, 10 ms, past the gap wait, past the
/// idle timeout); bit 7: on a SIP port. The sequence number is the direction's next
/// expected one plus the signed 16-bit offset, so retransmissions, overlaps and holes
/// are a small change away.
pub struct SegmentRecord<'a> {
    pub time: Timestamp,
    pub conn: u8,
    pub reverse: bool,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    pub sip_port: bool,
    pub seq_offset: i16,
    pub payload: &'a [u8],
}

const SEGMENT_STEPS: [u64; 4] = [0, 10_000_000, 6_000_000_000, 601_000_000_000];

pub fn segment_records(mut input: &[u8]) -> impl Iterator<Item = SegmentRecord<'_>> {
    let mut time = EPOCH;
    std::iter::from_fn(move || {
        let (&ctl, rest) = input.split_first()?;
        let (seq_offset, len, rest) = match rest {
            [lo, hi, len, rest @ ..] => (i16::from_le_bytes([*lo, *hi]), usize::from(*len), rest),
            _ => (0, rest.len(), &[][..]),
        };
        let len = len.min(rest.len());
        let (payload, rest) = rest.split_at(len);
        input = rest;
        time = time.saturating_add(Duration::from_nanos(
            SEGMENT_STEPS[usize::from((ctl >> 5) & 3)],
        ));
        Some(SegmentRecord {
            time,
            conn: (ctl >> 1) & 1,
            reverse: ctl & 1 == 1,
            syn: ctl & 0x04 != 0,
            fin: ctl & 0x08 != 0,
            rst: ctl & 0x10 != 0,
            sip_port: ctl & 0x80 != 0,
            seq_offset,
            payload,
        })
    })
}

/// Reads every byte of a payload handed out, so a slice pointing outside its buffer
/// shows up under the sanitizer, and returns a value the optimiser must keep.
pub fn touch(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0u64, |a, &b| a.wrapping_mul(31).wrapping_add(u64::from(b)))
}
