//! Walking one retired TPACKET_V3 block: safe code over the block's bytes, with every
//! offset the kernel wrote checked before use (a bad one ends the walk, never a panic).
//!
//! A block is a `tpacket_block_desc` followed by `num_pkts` packets chained through
//! `tp_next_offset`; each packet is a `tpacket3_hdr`, a `sockaddr_ll` (direction,
//! hardware type, protocol) and the frame at `tp_mac`. Offsets come from libc's struct
//! definitions, so they match the kernel's headers rather than a hand-typed table.

use std::mem::{offset_of, size_of};

use libc::{sockaddr_ll, tpacket3_hdr, tpacket_block_desc, tpacket_hdr_v1};

use crate::capture::Timestamp;

const BLOCK_HDR: usize = offset_of!(tpacket_block_desc, hdr);
/// Where the status word sits in each block (the ring reads it atomically).
pub(super) const BLOCK_STATUS_OFFSET: usize = BLOCK_HDR + offset_of!(tpacket_hdr_v1, block_status);
const NUM_PKTS: usize = BLOCK_HDR + offset_of!(tpacket_hdr_v1, num_pkts);
const FIRST_PKT: usize = BLOCK_HDR + offset_of!(tpacket_hdr_v1, offset_to_first_pkt);

const NEXT_OFFSET: usize = offset_of!(tpacket3_hdr, tp_next_offset);
const SEC: usize = offset_of!(tpacket3_hdr, tp_sec);
const NSEC: usize = offset_of!(tpacket3_hdr, tp_nsec);
const SNAPLEN: usize = offset_of!(tpacket3_hdr, tp_snaplen);
const LEN: usize = offset_of!(tpacket3_hdr, tp_len);
const MAC: usize = offset_of!(tpacket3_hdr, tp_mac);
/// The sockaddr_ll follows the header at the next 16-byte boundary (TPACKET_ALIGN).
const SLL: usize = size_of::<tpacket3_hdr>().next_multiple_of(libc::TPACKET_ALIGNMENT);
const SLL_PROTOCOL: usize = SLL + offset_of!(sockaddr_ll, sll_protocol);
const SLL_HATYPE: usize = SLL + offset_of!(sockaddr_ll, sll_hatype);
const SLL_PKTTYPE: usize = SLL + offset_of!(sockaddr_ll, sll_pkttype);
const SLL_HALEN: usize = SLL + offset_of!(sockaddr_ll, sll_halen);
const SLL_ADDR: usize = SLL + offset_of!(sockaddr_ll, sll_addr);
/// Header plus sockaddr_ll: the least a packet occupies before its frame.
const PACKET_HDR: usize = SLL + size_of::<sockaddr_ll>();

/// The LINKTYPE_LINUX_SLL header built in front of a cooked frame.
pub(super) const SLL_HEADER_LEN: usize = 16;

/// One packet of a block, as handed to the capture loop.
#[derive(Debug)]
pub(super) struct RingPacket<'a> {
    pub time: Timestamp,
    /// The frame: the link header on a raw socket, an SLL header on a cooked one.
    pub data: &'a [u8],
    /// Length on the wire (plus the SLL header when one was built).
    pub orig_len: u32,
    /// sll_pkttype: PACKET_HOST, PACKET_OUTGOING ...
    pub direction: u8,
    /// sll_hatype: ARPHRD_ETHER, ARPHRD_LOOPBACK ...
    pub hardware_type: u16,
}

impl RingPacket<'_> {
    /// Loopback's outgoing copy: every packet on `lo` passes the tap twice, and only the
    /// received copy is kept (as libpcap does).
    pub fn is_loopback_copy(&self) -> bool {
        self.direction == libc::PACKET_OUTGOING && self.hardware_type == libc::ARPHRD_LOOPBACK
    }
}

/// A block whose layout cannot be right; the packets before the damage were handed on.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct BadBlock;

fn ne32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn ne16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Hands each packet of a retired block to `each`. With `cooked` (a SOCK_DGRAM socket),
/// a Linux cooked (SLL) header is written in front of each frame, into the 16 bytes the
/// kernel leaves free there for exactly this (see tpacket_rcv: `macoff = netoff =
/// TPACKET_ALIGN(tp_hdrlen) + 16`), so no frame is copied.
pub(super) fn walk(
    block: &mut [u8],
    cooked: bool,
    each: &mut dyn FnMut(RingPacket<'_>),
) -> Result<(), BadBlock> {
    let count = ne32(block, NUM_PKTS).ok_or(BadBlock)?;
    let mut at = ne32(block, FIRST_PKT).ok_or(BadBlock)? as usize;
    for i in 0..count {
        let header = block.get(at..at + PACKET_HDR).ok_or(BadBlock)?;
        let field = |off| ne32(header, off).ok_or(BadBlock);
        let (next, sec, nsec) = (field(NEXT_OFFSET)?, field(SEC)?, field(NSEC)?);
        let (snaplen, len) = (field(SNAPLEN)? as usize, field(LEN)?);
        let mac = usize::from(ne16(header, MAC).ok_or(BadBlock)?);
        let direction = header[SLL_PKTTYPE];
        let hardware_type = ne16(header, SLL_HATYPE).ok_or(BadBlock)?;
        let start = at + mac;
        let end = start.checked_add(snaplen).ok_or(BadBlock)?;
        if mac < PACKET_HDR || end > block.len() {
            return Err(BadBlock);
        }
        let (data_start, orig_len) = if cooked {
            if mac < PACKET_HDR + SLL_HEADER_LEN {
                return Err(BadBlock);
            }
            let mut sll = [0u8; SLL_HEADER_LEN];
            // packet type(2) ARPHRD(2) address length(2) address(8) protocol(2), all in
            // network order; sll_protocol already is.
            sll[0..2].copy_from_slice(&u16::from(direction).to_be_bytes());
            sll[2..4].copy_from_slice(&hardware_type.to_be_bytes());
            let halen = header[SLL_HALEN].min(8);
            sll[4..6].copy_from_slice(&u16::from(halen).to_be_bytes());
            sll[6..6 + usize::from(halen)]
                .copy_from_slice(&header[SLL_ADDR..SLL_ADDR + usize::from(halen)]);
            sll[14..16].copy_from_slice(&header[SLL_PROTOCOL..SLL_PROTOCOL + 2]);
            block[start - SLL_HEADER_LEN..start].copy_from_slice(&sll);
            (
                start - SLL_HEADER_LEN,
                len.saturating_add(SLL_HEADER_LEN as u32),
            )
        } else {
            (start, len)
        };
        each(RingPacket {
            time: Timestamp::from_nanos(u64::from(sec) * 1_000_000_000 + u64::from(nsec)),
            data: &block[data_start..end],
            orig_len,
            direction,
            hardware_type,
        });
        if i + 1 < count {
            if next == 0 {
                return Err(BadBlock);
            }
            at = at.checked_add(next as usize).ok_or(BadBlock)?;
        }
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Builds a block the way the kernel lays one out, for walking without a socket.
    pub struct BlockBuilder {
        pub bytes: Vec<u8>,
        last: Option<usize>,
        count: u32,
        cooked: bool,
    }

    /// The kernel's first packet offset: the block descriptor, aligned (BLK_HDR_LEN).
    const FIRST: usize = size_of::<tpacket_block_desc>().next_multiple_of(8);

    impl BlockBuilder {
        pub fn new(size: usize, cooked: bool) -> Self {
            let mut bytes = vec![0u8; size];
            bytes[FIRST_PKT..FIRST_PKT + 4].copy_from_slice(&(FIRST as u32).to_ne_bytes());
            BlockBuilder {
                bytes,
                last: None,
                count: 0,
                cooked,
            }
        }

        /// Adds a packet at tpacket_rcv's offsets: a cooked frame at TPACKET_ALIGN(hdrlen)
        /// + 16, a raw one with its 14-byte Ethernet header ending at TPACKET_ALIGN(hdrlen
        /// + 16). Header fields the walk does not read stay zero.
        pub fn push(
            &mut self,
            sec: u32,
            nsec: u32,
            pkttype: u8,
            hatype: u16,
            proto: u16,
            frame: &[u8],
        ) {
            let at = match self.last {
                None => FIRST,
                Some(prev) => {
                    let prev_mac = usize::from(ne16(&self.bytes, prev + MAC).unwrap_or(0));
                    let prev_snap = ne32(&self.bytes, prev + SNAPLEN).unwrap_or(0) as usize;
                    let at = (prev + prev_mac + prev_snap).next_multiple_of(16);
                    let next = (at - prev) as u32;
                    self.bytes[prev + NEXT_OFFSET..prev + NEXT_OFFSET + 4]
                        .copy_from_slice(&next.to_ne_bytes());
                    at
                }
            };
            let mac = if self.cooked {
                PACKET_HDR.next_multiple_of(16) + 16
            } else {
                (PACKET_HDR + 16).next_multiple_of(16) - 14
            };
            let b = &mut self.bytes;
            b[at + SEC..at + SEC + 4].copy_from_slice(&sec.to_ne_bytes());
            b[at + NSEC..at + NSEC + 4].copy_from_slice(&nsec.to_ne_bytes());
            b[at + SNAPLEN..at + SNAPLEN + 4].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
            b[at + LEN..at + LEN + 4].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
            b[at + MAC..at + MAC + 2].copy_from_slice(&(mac as u16).to_ne_bytes());
            b[at + SLL_PROTOCOL..at + SLL_PROTOCOL + 2].copy_from_slice(&proto.to_be_bytes());
            b[at + SLL_HATYPE..at + SLL_HATYPE + 2].copy_from_slice(&hatype.to_ne_bytes());
            b[at + SLL_PKTTYPE] = pkttype;
            b[at + SLL_HALEN] = 6;
            b[at + SLL_ADDR..at + SLL_ADDR + 6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
            b[at + mac..at + mac + frame.len()].copy_from_slice(frame);
            self.last = Some(at);
            self.count += 1;
            b[NUM_PKTS..NUM_PKTS + 4].copy_from_slice(&self.count.to_ne_bytes());
        }
    }

    /// Time, frame, length on the wire and direction of each packet walked.
    type Walked = Vec<(u64, Vec<u8>, u32, u8)>;

    fn collect(block: &mut [u8], cooked: bool) -> (Walked, Result<(), BadBlock>) {
        let mut out = Vec::new();
        let r = walk(block, cooked, &mut |p| {
            out.push((p.time.as_nanos(), p.data.to_vec(), p.orig_len, p.direction))
        });
        (out, r)
    }

    #[test]
    fn raw_block_yields_each_frame_with_its_time() {
        let mut b = BlockBuilder::new(4096, false);
        b.push(1_700_000_000, 5, 0, 1, 0x0800, &[0xAA; 60]);
        b.push(1_700_000_001, 7, 4, 1, 0x0800, &[0xBB; 61]);
        let (out, r) = collect(&mut b.bytes, false);
        assert_eq!(r, Ok(()));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], (1_700_000_000_000_000_005, vec![0xAA; 60], 60, 0));
        assert_eq!(out[1], (1_700_000_001_000_000_007, vec![0xBB; 61], 61, 4));
    }

    #[test]
    fn cooked_block_gets_an_sll_header_in_front() {
        let mut b = BlockBuilder::new(4096, true);
        let ip = [0x45, 0, 0, 20, 1, 2, 3, 4];
        b.push(10, 0, 4, 772, 0x0800, &ip);
        let (out, r) = collect(&mut b.bytes, true);
        assert_eq!(r, Ok(()));
        let frame = &out[0].1;
        assert_eq!(frame.len(), 16 + ip.len());
        assert_eq!(out[0].2, 16 + ip.len() as u32);
        assert_eq!(&frame[0..2], &[0, 4], "packet type OUTGOING");
        assert_eq!(&frame[2..4], &772u16.to_be_bytes(), "ARPHRD_LOOPBACK");
        assert_eq!(&frame[4..6], &[0, 6]);
        assert_eq!(&frame[6..12], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(&frame[14..16], &[0x08, 0x00]);
        assert_eq!(&frame[16..], &ip);
        // And calltap's decoder reads it as SLL down to the IP packet.
        assert_eq!(
            crate::net::link::decode(crate::capture::LinkType::LinuxSll, frame),
            Ok(crate::net::link::LinkPayload::Ip(&ip[..]))
        );
    }

    #[test]
    fn damaged_blocks_end_the_walk_without_panicking() {
        let mut good = BlockBuilder::new(4096, false);
        good.push(1, 0, 0, 1, 0x0800, &[1; 40]);
        good.push(2, 0, 0, 1, 0x0800, &[2; 40]);

        // More packets claimed than chained: the second's next offset is 0.
        let mut more = good.bytes.clone();
        more[NUM_PKTS..NUM_PKTS + 4].copy_from_slice(&3u32.to_ne_bytes());
        let (out, r) = collect(&mut more, false);
        assert_eq!((out.len(), r), (2, Err(BadBlock)));

        // A snap length running past the block.
        let mut long = good.bytes.clone();
        long[FIRST + SNAPLEN..FIRST + SNAPLEN + 4].copy_from_slice(&u32::MAX.to_ne_bytes());
        let (out, r) = collect(&mut long, false);
        assert_eq!((out.len(), r), (0, Err(BadBlock)));

        // A first-packet offset past the end, and a block too short for its header.
        let mut far = good.bytes.clone();
        far[FIRST_PKT..FIRST_PKT + 4].copy_from_slice(&4090u32.to_ne_bytes());
        assert_eq!(collect(&mut far, false).1, Err(BadBlock));
        assert_eq!(collect(&mut [0u8; 8], false).1, Err(BadBlock));

        // A frame offset inside the header.
        let mut inside = good.bytes.clone();
        inside[FIRST + MAC..FIRST + MAC + 2].copy_from_slice(&8u16.to_ne_bytes());
        assert_eq!(collect(&mut inside, false).1, Err(BadBlock));

        // An empty block is fine.
        let mut empty = BlockBuilder::new(4096, false);
        assert_eq!(collect(&mut empty.bytes, false), (vec![], Ok(())));
    }
}
