//! Capture files: pcap (either byte order, micro- or nanosecond) and pcapng (any number
//! of interfaces, each with its own link type and timestamp resolution).
//!
//! pcap-file parses the headers and blocks; this module owns the read buffer so it can
//! say where in the file a problem sits, bound what a corrupt length can make it read,
//! and step over damage where the format allows: a pcapng block whose length is intact,
//! or a pcap record header followed by a plausible one further on.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::PcapNgParser;
use pcap_file::Endianness;

use super::{Frame, LinkType, Timestamp};

/// Largest frame calltap accepts: libpcap's MAXIMUM_SNAPLEN. A record claiming more
/// is a corrupt header, not a frame.
const MAX_FRAME_LEN: u32 = 262_144;

/// Largest pcapng block read into memory. Packet blocks are bounded by
/// `MAX_FRAME_LEN`; this leaves room for big name-resolution or custom blocks.
const MAX_BLOCK_LEN: usize = 16 << 20;

/// How far past a corrupt pcap record header to search for the next plausible one.
const RESYNC_WINDOW: usize = 1 << 20;

/// Read size: large enough that reads are few, small enough to stay cache-friendly.
const READ_CHUNK: usize = 1 << 20;

const PCAPNG_SHB: u32 = 0x0A0D_0D0A;
const PCAPNG_IDB: u32 = 0x0000_0001;
const PCAPNG_PB: u32 = 0x0000_0002;
const PCAPNG_SPB: u32 = 0x0000_0003;
const PCAPNG_EPB: u32 = 0x0000_0006;

/// A problem in a capture file, with where it is.
#[derive(Debug)]
pub struct CaptureError {
    pub file: String,
    /// Byte offset in the file where the damaged record or block starts.
    pub offset: u64,
    pub kind: CaptureErrorKind,
}

#[derive(Debug)]
pub enum CaptureErrorKind {
    Io(io::Error),
    /// Neither a pcap nor a pcapng magic number.
    NotACapture,
    /// The file header itself is unreadable.
    BadFileHeader(String),
    /// The file ends inside a record or block: every frame before it was read.
    Truncated,
    /// A record or block header that cannot be right; reading went on after it when
    /// `skipped_to` is set.
    Corrupt {
        what: String,
        skipped_to: Option<u64>,
    },
}

impl CaptureError {
    /// Whether reading goes on after this error.
    pub fn is_recoverable(&self) -> bool {
        matches!(
            self.kind,
            CaptureErrorKind::Corrupt {
                skipped_to: Some(_),
                ..
            }
        )
    }
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}: ", self.file, self.offset)?;
        match &self.kind {
            CaptureErrorKind::Io(e) => write!(f, "read error: {e}"),
            CaptureErrorKind::NotACapture => write!(f, "not a pcap or pcapng file"),
            CaptureErrorKind::BadFileHeader(why) => write!(f, "bad file header: {why}"),
            CaptureErrorKind::Truncated => {
                write!(
                    f,
                    "file ends inside a record (truncated); frames before it were read"
                )
            }
            CaptureErrorKind::Corrupt {
                what,
                skipped_to: Some(to),
            } => write!(f, "{what}; skipped to byte {to}"),
            CaptureErrorKind::Corrupt {
                what,
                skipped_to: None,
            } => write!(f, "{what}; cannot read past it"),
        }
    }
}

impl std::error::Error for CaptureError {}

enum Format {
    Pcap {
        link: LinkType,
        snaplen: u32,
        big_endian: bool,
        nanos: bool,
    },
    PcapNg {
        parser: Box<PcapNgParser>,
        /// Link type per interface of the current section, resolved once per IDB.
        links: Vec<LinkType>,
    },
}

/// Reads frames from a pcap or pcapng stream, one at a time, borrowing each frame
/// from its own buffer.
pub struct CaptureReader<R> {
    name: String,
    source: R,
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// File offset of `buf[start]`.
    offset: u64,
    source_done: bool,
    format: Format,
    /// Set after an error reading cannot go past.
    stopped: bool,
    /// Simple packet blocks carry no time: they take the last one seen.
    last_time: Timestamp,
}

impl CaptureReader<File> {
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|e| CaptureError {
            file: name.clone(),
            offset: 0,
            kind: CaptureErrorKind::Io(e),
        })?;
        CaptureReader::new(name, file)
    }
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header; `name` is used in error messages.
    pub fn new(name: impl Into<String>, source: R) -> Result<Self, CaptureError> {
        let mut reader = CaptureReader {
            name: name.into(),
            source,
            buf: vec![0; READ_CHUNK],
            start: 0,
            end: 0,
            offset: 0,
            source_done: false,
            format: Format::Pcap {
                link: LinkType::Ethernet,
                snaplen: 0,
                big_endian: false,
                nanos: false,
            },
            stopped: false,
            last_time: Timestamp::default(),
        };
        reader.read_file_header()?;
        Ok(reader)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes of the file consumed so far.
    pub fn position(&self) -> u64 {
        self.offset
    }

    fn error(&self, offset: u64, kind: CaptureErrorKind) -> CaptureError {
        CaptureError {
            file: self.name.clone(),
            offset,
            kind,
        }
    }

    /// Makes at least `n` unconsumed bytes available unless the source ends first;
    /// returns how many are available.
    fn fill(&mut self, n: usize) -> Result<usize, CaptureError> {
        while self.end - self.start < n && !self.source_done {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.buf.len() < n {
                self.buf.resize(n.next_power_of_two(), 0);
            }
            if self.end == self.buf.len() {
                let grow = self.buf.len() + READ_CHUNK;
                self.buf.resize(grow, 0);
            }
            match self.source.read(&mut self.buf[self.end..]) {
                Ok(0) => self.source_done = true,
                Ok(read) => self.end += read,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.error(self.offset, CaptureErrorKind::Io(e))),
            }
        }
        Ok(self.end - self.start)
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
    }

    fn available(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn read_file_header(&mut self) -> Result<(), CaptureError> {
        self.fill(28)?;
        let head = self.available();
        if head.len() < 4 {
            return Err(self.error(0, CaptureErrorKind::NotACapture));
        }
        let magic = [head[0], head[1], head[2], head[3]];
        if magic == PCAPNG_SHB.to_be_bytes() {
            return self.read_pcapng_header();
        }
        let (parsed, used) = match PcapParser::new(head) {
            Ok((rest, parser)) => (parser.header(), head.len() - rest.len()),
            Err(pcap_file::pcap::PcapParseError::IncompleteBuffer(..)) => {
                return Err(self.error(0, CaptureErrorKind::Truncated))
            }
            Err(_) => return Err(self.error(0, CaptureErrorKind::NotACapture)),
        };
        self.format = Format::Pcap {
            link: LinkType::from_linktype(u32::from(parsed.datalink)),
            // A zero or absurd snap length in the header is common; bound by ours.
            snaplen: match parsed.snaplen {
                0 => MAX_FRAME_LEN,
                s => s.min(MAX_FRAME_LEN),
            },
            big_endian: parsed.endianness == Endianness::Big,
            nanos: parsed.ts_resolution == pcap_file::pcap::PcapTsResolution::NanoSecond,
        };
        self.consume(used);
        Ok(())
    }

    fn read_pcapng_header(&mut self) -> Result<(), CaptureError> {
        let total = self.pcapng_block_len()?;
        let head = &self.buf[self.start..self.start + total];
        let parser = match PcapNgParser::new(head) {
            Ok((_, parser)) => parser,
            Err(e) => return Err(self.error(0, CaptureErrorKind::BadFileHeader(e.to_string()))),
        };
        self.format = Format::PcapNg {
            parser: Box::new(parser),
            links: Vec::new(),
        };
        self.consume(total);
        Ok(())
    }

    /// The total length of the pcapng block at the read position, with the whole block
    /// made available in the buffer.
    fn pcapng_block_len(&mut self) -> Result<usize, CaptureError> {
        if self.fill(12)? < 12 {
            return Err(self.error(self.offset, CaptureErrorKind::Truncated));
        }
        let head = self.available();
        let block_type = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        // The section header's byte-order magic decides how its own length reads.
        let big = match &self.format {
            _ if block_type == PCAPNG_SHB => head[8..12] == [0x1A, 0x2B, 0x3C, 0x4D],
            Format::PcapNg { parser, .. } => parser.state().endianness() == Endianness::Big,
            Format::Pcap { .. } => true,
        };
        let raw_len = [head[4], head[5], head[6], head[7]];
        let len = if big {
            u32::from_be_bytes(raw_len)
        } else {
            u32::from_le_bytes(raw_len)
        } as usize;
        if len < 12 || len % 4 != 0 || len > MAX_BLOCK_LEN {
            return Err(self.error(
                self.offset,
                CaptureErrorKind::Corrupt {
                    what: format!("pcapng block length {len} is impossible"),
                    skipped_to: None,
                },
            ));
        }
        if self.fill(len)? < len {
            return Err(self.error(self.offset, CaptureErrorKind::Truncated));
        }
        Ok(len)
    }

    /// The next frame; `None` at the end of the file or after an error reading cannot
    /// go past. A recoverable error is returned once, and the next call goes on.
    pub fn next_frame(&mut self) -> Option<Result<Frame<'_>, CaptureError>> {
        if self.stopped {
            return None;
        }
        let result = match self.format {
            Format::Pcap { .. } => self.next_pcap_record(),
            Format::PcapNg { .. } => self.next_pcapng_packet(),
        };
        match result {
            Ok(Some((at, len, time, link, orig_len))) => Some(Ok(Frame {
                time,
                link,
                data: &self.buf[at..at + len],
                orig_len,
            })),
            Ok(None) => None,
            Err(e) => {
                if !e.is_recoverable() {
                    self.stopped = true;
                }
                Some(Err(e))
            }
        }
    }

    /// Returns (buffer position, length, time, link type, original length).
    #[allow(clippy::type_complexity)]
    fn next_pcap_record(
        &mut self,
    ) -> Result<Option<(usize, usize, Timestamp, LinkType, u32)>, CaptureError> {
        let Format::Pcap {
            link,
            snaplen,
            big_endian,
            nanos,
        } = self.format
        else {
            return Ok(None);
        };
        let have = self.fill(16)?;
        if have == 0 {
            return Ok(None);
        }
        if have < 16 {
            return Err(self.error(self.offset, CaptureErrorKind::Truncated));
        }
        let header = PcapRecordHeader::read(self.available(), big_endian);
        if let Some(why) = header.corrupt(snaplen) {
            let at = self.offset;
            return match self.resync_pcap(snaplen, big_endian, nanos)? {
                Some(to) => Err(self.error(
                    at,
                    CaptureErrorKind::Corrupt {
                        what: format!("corrupt record header ({why})"),
                        skipped_to: Some(to),
                    },
                )),
                None => Err(self.error(
                    at,
                    CaptureErrorKind::Corrupt {
                        what: format!("corrupt record header ({why})"),
                        skipped_to: None,
                    },
                )),
            };
        }
        let len = header.incl_len as usize;
        if self.fill(16 + len)? < 16 + len {
            return Err(self.error(self.offset, CaptureErrorKind::Truncated));
        }
        let frac_nanos = if nanos {
            u64::from(header.ts_frac)
        } else {
            u64::from(header.ts_frac) * 1_000
        };
        let time = Timestamp::from_nanos(
            u64::from(header.ts_sec)
                .saturating_mul(1_000_000_000)
                .saturating_add(frac_nanos),
        );
        let at = self.start + 16;
        self.consume(16 + len);
        Ok(Some((at, len, time, link, header.orig_len)))
    }

    /// Looks for the next offset where a plausible record header is followed by
    /// another plausible one (or by the exact end of the file). Returns its file offset.
    fn resync_pcap(
        &mut self,
        snaplen: u32,
        big_endian: bool,
        nanos: bool,
    ) -> Result<Option<u64>, CaptureError> {
        self.fill(RESYNC_WINDOW + 2 * (16 + MAX_FRAME_LEN as usize))?;
        let window = self.available();
        let limit = window.len().min(RESYNC_WINDOW);
        let plausible_at = |pos: usize| -> Option<usize> {
            let h = PcapRecordHeader::read(window.get(pos..pos + 16)?, big_endian);
            if h.implausible(snaplen, nanos).is_some() {
                return None;
            }
            Some(pos + 16 + h.incl_len as usize)
        };
        for pos in 1..limit {
            let Some(next) = plausible_at(pos) else {
                continue;
            };
            let chained = next == window.len() && self.source_done || plausible_at(next).is_some();
            if chained {
                self.consume(pos);
                return Ok(Some(self.offset));
            }
        }
        Ok(None)
    }

    #[allow(clippy::type_complexity)]
    fn next_pcapng_packet(
        &mut self,
    ) -> Result<Option<(usize, usize, Timestamp, LinkType, u32)>, CaptureError> {
        loop {
            if self.fill(1)? == 0 {
                return Ok(None);
            }
            let at = self.offset;
            let total = self.pcapng_block_len()?;
            let block_start = self.start;
            let Format::PcapNg { parser, links } = &mut self.format else {
                return Ok(None);
            };
            let block = &self.buf[block_start..block_start + total];
            let big = parser.state().endianness() == Endianness::Big;
            let word = |b: &[u8], i: usize| -> u32 {
                let bytes = [b[i], b[i + 1], b[i + 2], b[i + 3]];
                if big {
                    u32::from_be_bytes(bytes)
                } else {
                    u32::from_le_bytes(bytes)
                }
            };
            let block_type = if &block[0..4] == PCAPNG_SHB.to_be_bytes().as_slice() {
                PCAPNG_SHB
            } else {
                word(block, 0)
            };
            let body = &block[8..total - 4];
            let packet = match block_type {
                PCAPNG_SHB | PCAPNG_IDB => {
                    // State blocks go through pcap-file, which tracks sections,
                    // interfaces, and their timestamp resolutions and offsets.
                    if let Err(e) = parser.next_raw_block(block) {
                        let what = format!("unreadable pcapng state block: {e}");
                        self.consume(total);
                        return Err(self.error(
                            at,
                            CaptureErrorKind::Corrupt {
                                what,
                                skipped_to: Some(self.offset),
                            },
                        ));
                    }
                    *links = parser
                        .interfaces()
                        .iter()
                        .map(|idb| LinkType::from_linktype(u32::from(idb.linktype)))
                        .collect();
                    None
                }
                // Packet blocks are read here, without pcap-file's per-packet option
                // vector: the hot path allocates nothing.
                PCAPNG_EPB | PCAPNG_PB => {
                    if body.len() < 20 {
                        Some(Err("packet block shorter than its header".to_string()))
                    } else {
                        let (iface, high, low, cap, orig) = if block_type == PCAPNG_EPB {
                            (
                                word(body, 0),
                                word(body, 4),
                                word(body, 8),
                                word(body, 12),
                                word(body, 16),
                            )
                        } else {
                            let iface = if big {
                                u16::from_be_bytes([body[0], body[1]])
                            } else {
                                u16::from_le_bytes([body[0], body[1]])
                            };
                            (
                                u32::from(iface),
                                word(body, 4),
                                word(body, 8),
                                word(body, 12),
                                word(body, 16),
                            )
                        };
                        // Both packet block kinds have a 20-byte header before the data.
                        let data_at = 20;
                        match (
                            links.get(iface as usize),
                            parser.state().decode_timestamp(iface, high, low),
                        ) {
                            (None, _) | (_, Err(_)) => Some(Err(format!(
                                "packet block for interface {iface}, which no interface block declared"
                            ))),
                            (Some(_), Ok(_)) if cap as usize > body.len() - data_at => Some(Err(
                                format!("packet block captured length {cap} exceeds the block"),
                            )),
                            (Some(link), Ok(ts)) => Some(Ok((
                                block_start + 8 + data_at,
                                cap as usize,
                                Timestamp::from_duration(ts),
                                *link,
                                orig,
                            ))),
                        }
                    }
                }
                PCAPNG_SPB => {
                    if body.len() < 4 {
                        Some(Err(
                            "simple packet block shorter than its header".to_string()
                        ))
                    } else {
                        let orig = word(body, 0);
                        let cap = (orig as usize).min(body.len() - 4);
                        match links.first() {
                            Some(link) => {
                                Some(Ok((block_start + 12, cap, self.last_time, *link, orig)))
                            }
                            None => Some(Err(
                                "simple packet block before any interface block".to_string()
                            )),
                        }
                    }
                }
                // Statistics, name resolution, journal, custom blocks: nothing to decode.
                _ => None,
            };
            self.consume(total);
            match packet {
                None => continue,
                Some(Ok(frame)) => {
                    self.last_time = frame.2;
                    return Ok(Some(frame));
                }
                Some(Err(what)) => {
                    return Err(self.error(
                        at,
                        CaptureErrorKind::Corrupt {
                            what,
                            skipped_to: Some(self.offset),
                        },
                    ))
                }
            }
        }
    }
}

struct PcapRecordHeader {
    ts_sec: u32,
    ts_frac: u32,
    incl_len: u32,
    orig_len: u32,
}

impl PcapRecordHeader {
    /// `bytes` holds at least 16 bytes.
    fn read(bytes: &[u8], big_endian: bool) -> PcapRecordHeader {
        let word = |i: usize| {
            let b = [bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]];
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        PcapRecordHeader {
            ts_sec: word(0),
            ts_frac: word(4),
            incl_len: word(8),
            orig_len: word(12),
        }
    }

    /// A header that cannot be read past: its length would swallow what follows.
    fn corrupt(&self, snaplen: u32) -> Option<String> {
        (self.incl_len > snaplen.max(MAX_FRAME_LEN)).then(|| {
            format!(
                "captured length {} exceeds the snap length {snaplen}",
                self.incl_len
            )
        })
    }

    /// Stricter than [`Self::corrupt`], for finding the next record after damage:
    /// real writers sometimes get the other fields wrong, so normal reading forgives them.
    fn implausible(&self, snaplen: u32, nanos: bool) -> Option<String> {
        if let Some(why) = self.corrupt(snaplen) {
            return Some(why);
        }
        if self.incl_len == 0 || self.orig_len < self.incl_len {
            return Some(format!(
                "captured length {} exceeds the original length {}",
                self.incl_len, self.orig_len
            ));
        }
        let frac_limit = if nanos { 1_000_000_000 } else { 1_000_000 };
        if self.ts_frac >= frac_limit {
            return Some(format!("timestamp fraction {} out of range", self.ts_frac));
        }
        None
    }
}
