//! Capture file writers: classic pcap in either byte order and resolution, and pcapng
//! with several interfaces. Both stream to any `Write`, so a file of millions of packets
//! never sits in memory; write to a `Vec<u8>` for an in-memory capture.

use std::borrow::Cow;
use std::io::{self, Write};
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapTsResolution, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption, InterfaceTsResolution,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness};

use crate::capture::Timestamp;

use super::link::Link;
use super::wire::Packet;

/// Byte order of a classic pcap file's headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ByteOrder {
    #[default]
    Little,
    Big,
}

/// Timestamp resolution of a pcap file or pcapng interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TsResolution {
    #[default]
    Micro,
    Nano,
}

/// Snap length written in headers: large enough that nothing generated is cut.
pub const SNAPLEN: u32 = 262_144;

fn io_err(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::other(e)
}

/// Anything frames can be written to with their capture time.
pub trait FrameSink {
    fn write_frame(&mut self, time: Timestamp, frame: &[u8]) -> io::Result<()>;
}

/// A classic pcap file.
pub struct PcapFile<W: Write> {
    inner: PcapWriter<W>,
    link: Link,
    resolution: TsResolution,
    frames: u64,
    buf: Vec<u8>,
}

impl<W: Write> PcapFile<W> {
    /// Writes the file header for frames framed by `link`.
    pub fn new(out: W, link: Link, order: ByteOrder, resolution: TsResolution) -> io::Result<Self> {
        let header = PcapHeader {
            snaplen: SNAPLEN,
            datalink: DataLink::from(link.linktype()),
            ts_resolution: match resolution {
                TsResolution::Micro => PcapTsResolution::MicroSecond,
                TsResolution::Nano => PcapTsResolution::NanoSecond,
            },
            endianness: match order {
                ByteOrder::Little => Endianness::Little,
                ByteOrder::Big => Endianness::Big,
            },
            ..PcapHeader::default()
        };
        let inner = PcapWriter::with_header(out, header).map_err(io_err)?;
        Ok(PcapFile {
            inner,
            link,
            resolution,
            frames: 0,
            buf: Vec::with_capacity(2048),
        })
    }

    /// Frames and writes one IP packet.
    pub fn write_packet(&mut self, packet: &Packet) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        self.link.frame_into(&packet.data, &mut buf);
        let r = self.write_frame(packet.time, &buf);
        self.buf = buf;
        r
    }

    pub fn write_all<'a>(
        &mut self,
        packets: impl IntoIterator<Item = &'a Packet>,
    ) -> io::Result<()> {
        packets.into_iter().try_for_each(|p| self.write_packet(p))
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Flushes and returns the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.inner.flush().map_err(io_err)?;
        Ok(self.inner.into_inner())
    }
}

fn duration(time: Timestamp, resolution: TsResolution) -> Duration {
    let ns = time.as_nanos();
    let ns = match resolution {
        TsResolution::Micro => ns - ns % 1000,
        TsResolution::Nano => ns,
    };
    Duration::from_nanos(ns)
}

impl<W: Write> FrameSink for PcapFile<W> {
    fn write_frame(&mut self, time: Timestamp, frame: &[u8]) -> io::Result<()> {
        let len = frame.len() as u32;
        let p = PcapPacket::new(duration(time, self.resolution), len, Cow::Borrowed(frame))
            .map_err(io_err)?;
        self.inner.write_packet(&p).map_err(io_err)?;
        self.frames += 1;
        Ok(())
    }
}

/// One interface of a pcapng file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub link: Link,
    pub resolution: TsResolution,
}

impl Interface {
    pub fn new(name: &str, link: Link, resolution: TsResolution) -> Self {
        Interface {
            name: name.to_string(),
            link,
            resolution,
        }
    }
}

/// A pcapng file with one section and the given interfaces (each with its own link type
/// and an if_tsresol option).
pub struct PcapNgFile<W: Write> {
    inner: PcapNgWriter<W>,
    interfaces: Vec<Interface>,
    frames: u64,
}

impl<W: Write> PcapNgFile<W> {
    pub fn new(out: W, interfaces: &[Interface]) -> io::Result<Self> {
        let mut inner = PcapNgWriter::with_endianness(out, Endianness::Little).map_err(io_err)?;
        for i in interfaces {
            let resol = match i.resolution {
                TsResolution::Micro => InterfaceTsResolution::MICRO,
                TsResolution::Nano => InterfaceTsResolution::NANO,
            };
            let idb = InterfaceDescriptionBlock {
                linktype: DataLink::from(i.link.linktype()),
                snaplen: SNAPLEN,
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Owned(i.name.clone())),
                    InterfaceDescriptionOption::IfTsResol(resol),
                ],
            };
            inner.write_pcapng_block(idb).map_err(io_err)?;
        }
        Ok(PcapNgFile {
            inner,
            interfaces: interfaces.to_vec(),
            frames: 0,
        })
    }

    /// Frames an IP packet with interface `iface`'s link and writes it there.
    pub fn write_packet(&mut self, iface: u32, packet: &Packet) -> io::Result<()> {
        let link = self.interfaces[iface as usize].link;
        self.write_frame_on(iface, packet.time, &link.frame(&packet.data))
    }

    pub fn write_frame_on(&mut self, iface: u32, time: Timestamp, frame: &[u8]) -> io::Result<()> {
        let res = self.interfaces[iface as usize].resolution;
        let epb = EnhancedPacketBlock {
            interface_id: iface,
            timestamp: duration(time, res),
            original_len: frame.len() as u32,
            data: Cow::Borrowed(frame),
            options: vec![],
        };
        self.inner.write_pcapng_block(epb).map_err(io_err)?;
        self.frames += 1;
        Ok(())
    }

    pub fn frames(&self) -> u64 {
        self.frames
    }

    pub fn finish(self) -> io::Result<W> {
        let mut w = self.inner.into_inner();
        w.flush()?;
        Ok(w)
    }
}

/// A whole pcap in memory: the usual way for a test to get a capture to feed the engine.
pub fn pcap_bytes<'a>(link: Link, packets: impl IntoIterator<Item = &'a Packet>) -> Vec<u8> {
    pcap_bytes_with(link, ByteOrder::Little, TsResolution::Micro, packets)
}

pub fn pcap_bytes_with<'a>(
    link: Link,
    order: ByteOrder,
    resolution: TsResolution,
    packets: impl IntoIterator<Item = &'a Packet>,
) -> Vec<u8> {
    let mut f = PcapFile::new(Vec::new(), link, order, resolution).expect("writing to memory");
    f.write_all(packets).expect("writing to memory");
    f.finish().expect("writing to memory")
}

/// Offsets of the records of a pcap file: `(record header offset, captured length)`.
/// Only for files this module wrote (the byte order comes from the magic).
pub fn pcap_records(file: &[u8]) -> Vec<(usize, usize)> {
    let big = file[..4] == [0xA1, 0xB2, 0xC3, 0xD4] || file[..4] == [0xA1, 0xB2, 0x3C, 0x4D];
    let rd = |o: usize| {
        let b: [u8; 4] = file[o..o + 4].try_into().expect("4 bytes");
        if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= file.len() {
        let incl = rd(off + 8) as usize;
        out.push((off, incl));
        off += 16 + incl;
    }
    out
}

/// Cuts a pcap inside record `index`: its header and half its data remain, as when the
/// capturing process is killed mid-write.
pub fn truncate_in_record(mut file: Vec<u8>, index: usize) -> Vec<u8> {
    let (off, len) = pcap_records(&file)[index];
    file.truncate(off + 16 + len / 2);
    file
}

/// Overwrites the header of record `index` with garbage lengths: captured length
/// 0x00FF_FF00 (beyond the snap length) and an original length smaller than it.
pub fn corrupt_pcap_record(mut file: Vec<u8>, index: usize) -> Vec<u8> {
    let (off, _) = pcap_records(&file)[index];
    let big = file[..2] == [0xA1, 0xB2];
    let put = |f: &mut Vec<u8>, o: usize, v: u32| {
        let b = if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        f[o..o + 4].copy_from_slice(&b);
    };
    put(&mut file, off + 8, 0x00FF_FF00);
    put(&mut file, off + 12, 0x0000_0040);
    file
}

/// Offsets and lengths of the blocks of a little-endian pcapng file.
pub fn pcapng_blocks(file: &[u8]) -> Vec<(usize, u32, usize)> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 12 <= file.len() {
        let ty = u32::from_le_bytes(file[off..off + 4].try_into().expect("4 bytes"));
        let len = u32::from_le_bytes(file[off + 4..off + 8].try_into().expect("4 bytes")) as usize;
        out.push((off, ty, len));
        off += len.max(12);
    }
    out
}

/// Corrupts the body of the `n`-th Enhanced Packet Block of a little-endian pcapng file
/// while keeping both copies of its block length intact, so a reader can skip exactly
/// that block: the interface id becomes 0xDEAD (no such interface) and the captured length
/// 0xFFFF_0000 (larger than the block).
pub fn corrupt_pcapng_packet(mut file: Vec<u8>, n: usize) -> Vec<u8> {
    let (off, _, _) = pcapng_blocks(&file)
        .into_iter()
        .filter(|&(_, ty, _)| ty == 6)
        .nth(n)
        .expect("enough packet blocks");
    file[off + 8..off + 12].copy_from_slice(&0xDEADu32.to_le_bytes());
    file[off + 20..off + 24].copy_from_slice(&0xFFFF_0000u32.to_le_bytes());
    file
}
