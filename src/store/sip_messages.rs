//! The `sip_messages` tree: record id -> that dialog's SIP messages ([`SipTrace`]), in a
//! compact binary form (JSON would triple the size of the message text as byte arrays
//! and escape every CR LF), LZ4-compressed. Written with the records by ingest, read by
//! the console's ladder and pcap download, removed with the record by retention.
//!
//! Value layout (big-endian): version 2 (u8), the plain form's length (u32), then the
//! plain form LZ4-compressed (a block). The plain form: version 1 (u8), cut (u32),
//! count (u32), then per message: capture time (u64 ns), transport (u8: 0 UDP, 1 TCP),
//! source and destination (each: family u8 4|6, the address's 4 or 16 bytes, port u16),
//! text length (u32) and the text.
//!
//! Compressed because a dialog's messages repeat their Via, From, To and Call-ID. What
//! keeping them costs a replay is measured by benches/replay.rs ("no SIP msg").

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::base::{SipTrace, Timestamp, TracedMessage, Transport};

use super::{Store, StoreError};

const TREE: &str = "sip_messages";
/// The plain form.
const VERSION: u8 = 1;
/// The plain form, LZ4-compressed: what is stored.
const VERSION_LZ4: u8 = 2;

/// The largest plain form a trace can have: its text, and at most 50 bytes of framing a
/// message. A stored length above it is damage, not a size to allocate.
const MAX_PLAIN: usize = 9 + crate::base::MAX_TRACE_BYTES + crate::base::MAX_TRACE_MESSAGES * 50;

pub(crate) fn encode(trace: &SipTrace) -> Vec<u8> {
    let plain = encode_plain(trace);
    let packed = lz4_flex::block::compress(&plain);
    let mut out = Vec::with_capacity(5 + packed.len());
    out.push(VERSION_LZ4);
    out.extend_from_slice(&(plain.len() as u32).to_be_bytes());
    out.extend_from_slice(&packed);
    out
}

fn encode_plain(trace: &SipTrace) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + trace.bytes + trace.messages.len() * 48);
    out.push(VERSION);
    out.extend_from_slice(&trace.cut.to_be_bytes());
    out.extend_from_slice(&(trace.messages.len() as u32).to_be_bytes());
    for m in &trace.messages {
        out.extend_from_slice(&m.time.as_nanos().to_be_bytes());
        out.push(match m.transport {
            Transport::Udp => 0,
            Transport::Tcp => 1,
        });
        for addr in [m.src, m.dst] {
            match addr.ip() {
                IpAddr::V4(ip) => {
                    out.push(4);
                    out.extend_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    out.push(6);
                    out.extend_from_slice(&ip.octets());
                }
            }
            out.extend_from_slice(&addr.port().to_be_bytes());
        }
        out.extend_from_slice(&(m.text.len() as u32).to_be_bytes());
        out.extend_from_slice(&m.text);
    }
    out
}

/// Reads bytes off the front of a stored value, each read checked.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.rest.len() < n {
            return Err(format!(
                "{n} bytes expected, {} left: the value is cut short",
                self.rest.len()
            ));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn addr(&mut self) -> Result<SocketAddr, String> {
        let ip = match self.u8()? {
            4 => IpAddr::V4(Ipv4Addr::from(self.array::<4>()?)),
            6 => IpAddr::V6(Ipv6Addr::from(self.array::<16>()?)),
            other => return Err(format!("address family {other} is neither 4 nor 6")),
        };
        Ok(SocketAddr::new(ip, u16::from_be_bytes(self.array()?)))
    }
}

pub(crate) fn decode(value: &[u8]) -> Result<SipTrace, String> {
    let mut r = Reader { rest: value };
    match r.u8()? {
        VERSION => decode_plain(value),
        VERSION_LZ4 => {
            let len = r.u32()? as usize;
            if len > MAX_PLAIN {
                return Err(format!(
                    "a plain form of {len} bytes is more than a trace holds"
                ));
            }
            let plain = lz4_flex::block::decompress(r.rest, len)
                .map_err(|e| format!("the compressed messages do not decompress: {e}"))?;
            if plain.len() != len {
                return Err(format!(
                    "{} bytes decompressed, {len} expected",
                    plain.len()
                ));
            }
            decode_plain(&plain)
        }
        other => Err(format!(
            "format version {other}, this calltap reads {VERSION} and {VERSION_LZ4}"
        )),
    }
}

fn decode_plain(value: &[u8]) -> Result<SipTrace, String> {
    let mut r = Reader { rest: value };
    let version = r.u8()?;
    if version != VERSION {
        return Err(format!("plain form version {version}, not {VERSION}"));
    }
    let cut = r.u32()?;
    let count = r.u32()? as usize;
    // Each message takes at least 21 bytes: a count larger than that allows is a lie.
    if count > r.rest.len() / 21 {
        return Err(format!(
            "{count} messages cannot fit in {} bytes",
            r.rest.len()
        ));
    }
    let mut trace = SipTrace {
        messages: Vec::with_capacity(count),
        bytes: 0,
        cut,
    };
    for _ in 0..count {
        let time = Timestamp::from_nanos(u64::from_be_bytes(r.array()?));
        let transport = match r.u8()? {
            0 => Transport::Udp,
            1 => Transport::Tcp,
            other => return Err(format!("transport {other} is neither 0 (UDP) nor 1 (TCP)")),
        };
        let src = r.addr()?;
        let dst = r.addr()?;
        let len = r.u32()? as usize;
        let text: Box<[u8]> = r.take(len)?.into();
        trace.bytes += text.len();
        trace.messages.push(TracedMessage {
            time,
            src,
            dst,
            transport,
            text,
        });
    }
    if !r.rest.is_empty() {
        return Err(format!("{} bytes after the last message", r.rest.len()));
    }
    Ok(trace)
}

impl Store {
    /// Stores each dialog's SIP messages under its record id (a repeat replay writes
    /// the same messages again). One batch, riding the records' flush.
    pub fn put_sip_messages(&self, traces: &[(String, SipTrace)]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (id, trace) in traces {
            batch.insert(id.as_bytes(), encode(trace));
        }
        self.sip_messages
            .apply_batch(batch)
            .map_err(StoreError::db(TREE))
    }

    /// The SIP messages of the dialog whose record has id `id`, if any were stored.
    pub fn sip_messages(&self, id: &str) -> Result<Option<SipTrace>, StoreError> {
        let Some(value) = self
            .sip_messages
            .get(id.as_bytes())
            .map_err(StoreError::db(TREE))?
        else {
            return Ok(None);
        };
        decode(&value).map(Some).map_err(|reason| {
            self.count_corrupt();
            StoreError::Corrupt {
                tree: TREE,
                key: id.to_owned(),
                reason,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace() -> SipTrace {
        let mut t = SipTrace::default();
        t.push(TracedMessage {
            time: Timestamp::from_nanos(1_772_600_000_123_456_789),
            src: "10.0.0.1:5060".parse().unwrap(),
            dst: "[2001:db8::2]:5080".parse().unwrap(),
            transport: Transport::Tcp,
            text: b"INVITE sip:101@pbx SIP/2.0\r\n\r\n"[..].into(),
        });
        t.push(TracedMessage {
            time: Timestamp::from_nanos(1_772_600_000_200_000_000),
            src: "[2001:db8::2]:5080".parse().unwrap(),
            dst: "10.0.0.1:5060".parse().unwrap(),
            transport: Transport::Udp,
            text: b"SIP/2.0 180 Ringing\r\n\r\n"[..].into(),
        });
        t.cut = 3;
        t
    }

    #[test]
    fn a_trace_reads_back_as_it_was_written() {
        let t = trace();
        assert_eq!(decode(&encode(&t)).unwrap(), t);
    }

    #[test]
    fn a_plain_trace_reads_back_too() {
        let t = trace();
        assert_eq!(decode(&encode_plain(&t)).unwrap(), t);
    }

    #[test]
    fn repeated_headers_compress() {
        let mut t = SipTrace::default();
        for _ in 0..20 {
            t.push(trace().messages[0].clone());
        }
        assert!(encode(&t).len() * 3 < encode_plain(&t).len());
    }

    #[test]
    fn a_damaged_value_is_an_error_not_a_panic() {
        for bytes in [encode(&trace()), encode_plain(&trace())] {
            for cut in 0..bytes.len() {
                assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(decode(&longer).is_err());
        }
        let mut lying = encode_plain(&trace());
        lying[5..9].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&lying).is_err());
        let mut huge = encode(&trace());
        huge[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&huge)
            .unwrap_err()
            .contains("more than a trace holds"));
        // Every byte of the compressed form flipped in turn: an error or another
        // trace, never a panic.
        let packed = encode(&trace());
        for i in 5..packed.len() {
            let mut bent = packed.clone();
            bent[i] ^= 0x5A;
            let _ = decode(&bent);
        }
    }
}
