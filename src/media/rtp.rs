//! RTP as a checked view over the datagram (RFC 3550 5.1), and the first-byte demux of
//! what else shares a media port (RFC 7983: STUN, ZRTP, DTLS, TURN channels, RTCP).
//!
//! `RtpPacket::new_checked` validates the header once; the accessors after it cannot go
//! out of bounds. Nothing here allocates.

/// What a datagram on a media port is, by its first bytes (RFC 7983 section 7, plus
/// RFC 5761 for RTCP multiplexed on the RTP port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Demux {
    Rtp,
    Rtcp,
    Stun,
    Zrtp,
    Dtls,
    TurnChannel,
    /// Nothing a media port carries: garbage.
    Other,
}

/// Classifies a media-port datagram without parsing it.
#[inline]
pub fn demux(buf: &[u8]) -> Demux {
    let Some(&b0) = buf.first() else {
        return Demux::Other;
    };
    match b0 {
        0..=3 => Demux::Stun,
        // ZRTP: version nibble 1 and the magic cookie "ZRTP" in bytes 4..8.
        16..=19 if buf.get(4..8) == Some(b"ZRTP") => Demux::Zrtp,
        20..=63 => Demux::Dtls,
        64..=79 => Demux::TurnChannel,
        128..=191 => match buf.get(1) {
            // RTCP packet types 200..=204 (SR, RR, SDES, BYE, APP) and 205..=207 (feedback,
            // XR), which as an RTP byte would be marker + PT 72..=79: a range RFC 5761
            // reserves for exactly this reason.
            Some(192..=223) => Demux::Rtcp,
            _ => Demux::Rtp,
        },
        _ => Demux::Other,
    }
}

/// Why a datagram that looked like RTP was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtpError {
    /// Fewer than 12 bytes.
    TooShort,
    /// Version other than 2.
    BadVersion,
    /// The CSRC list runs past the end of the datagram.
    CsrcPastEnd,
    /// The header extension runs past the end of the datagram.
    ExtensionPastEnd,
    /// The padding count is zero or longer than the payload.
    BadPadding,
}

/// A validated RTP packet.
#[derive(Clone, Copy, Debug)]
pub struct RtpPacket<'a> {
    buf: &'a [u8],
    payload_start: usize,
    payload_end: usize,
}

const HEADER: usize = 12;

impl<'a> RtpPacket<'a> {
    /// Checks the fixed header, the CSRC list, the extension and the padding against the
    /// datagram's length.
    #[inline]
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, RtpError> {
        if buf.len() < HEADER {
            return Err(RtpError::TooShort);
        }
        let b0 = buf[0];
        if b0 >> 6 != 2 {
            return Err(RtpError::BadVersion);
        }
        let csrc = usize::from(b0 & 0x0F);
        let mut start = HEADER + 4 * csrc;
        if start > buf.len() {
            return Err(RtpError::CsrcPastEnd);
        }
        if b0 & 0x10 != 0 {
            let Some(ext) = buf.get(start..start + 4) else {
                return Err(RtpError::ExtensionPastEnd);
            };
            let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
            start += 4 + 4 * words;
            if start > buf.len() {
                return Err(RtpError::ExtensionPastEnd);
            }
        }
        let mut end = buf.len();
        if b0 & 0x20 != 0 {
            let pad = usize::from(buf[end - 1]);
            if pad == 0 || pad > end - start {
                return Err(RtpError::BadPadding);
            }
            end -= pad;
        }
        Ok(RtpPacket {
            buf,
            payload_start: start,
            payload_end: end,
        })
    }

    #[inline]
    pub fn marker(&self) -> bool {
        self.buf[1] & 0x80 != 0
    }

    #[inline]
    pub fn payload_type(&self) -> u8 {
        self.buf[1] & 0x7F
    }

    #[inline]
    pub fn sequence(&self) -> u16 {
        u16::from_be_bytes([self.buf[2], self.buf[3]])
    }

    #[inline]
    pub fn timestamp(&self) -> u32 {
        u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]])
    }

    #[inline]
    pub fn ssrc(&self) -> u32 {
        u32::from_be_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]])
    }

    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.payload_start..self.payload_end]
    }
}

/// One RFC 4733 telephone-event payload: the event code, the end bit, the duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    pub end: bool,
    pub duration: u16,
}

impl TelephoneEvent {
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let p = payload.get(..4)?;
        Some(TelephoneEvent {
            event: p[0],
            end: p[1] & 0x80 != 0,
            duration: u16::from_be_bytes([p[2], p[3]]),
        })
    }

    /// The DTMF digit of events 0..=15 (RFC 4733 3.2); other events (flash, tones) have none.
    pub fn digit(&self) -> Option<char> {
        Some(match self.event {
            0..=9 => char::from(b'0' + self.event),
            10 => '*',
            11 => '#',
            12..=15 => char::from(b'A' + self.event - 12),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(b0: u8, extra: &[u8]) -> Vec<u8> {
        let mut v = vec![b0, 0, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4];
        v.extend_from_slice(extra);
        v
    }

    #[test]
    fn header_checks() {
        assert_eq!(
            RtpPacket::new_checked(&[0x80; 11]).unwrap_err(),
            RtpError::TooShort
        );
        assert_eq!(
            RtpPacket::new_checked(&rtp(0x40, &[])).unwrap_err(),
            RtpError::BadVersion
        );
        assert_eq!(
            RtpPacket::new_checked(&rtp(0x82, &[0; 4])).unwrap_err(),
            RtpError::CsrcPastEnd
        );
        assert_eq!(
            RtpPacket::new_checked(&rtp(0x90, &[0xBE, 0xDE, 0, 2, 0, 0, 0, 0])).unwrap_err(),
            RtpError::ExtensionPastEnd
        );
        assert_eq!(
            RtpPacket::new_checked(&rtp(0xA0, &[1, 2, 9])).unwrap_err(),
            RtpError::BadPadding
        );
        let buf = rtp(0xA1, &[9, 9, 9, 9, 7, 8, 2]);
        let p = RtpPacket::new_checked(&buf).unwrap();
        assert_eq!(p.payload(), &[7]);
        assert_eq!(p.ssrc(), 0x0102_0304);
        assert_eq!(p.timestamp(), 160);
        let buf = rtp(0x90, &[0xBE, 0xDE, 0, 1, 0, 0, 0, 0, 5]);
        let p = RtpPacket::new_checked(&buf).unwrap();
        assert_eq!(p.payload(), &[5]);
    }

    #[test]
    fn demux_by_first_byte() {
        assert_eq!(demux(&[0x00, 0x01]), Demux::Stun);
        assert_eq!(demux(&[0x16, 0xFE, 0xFD]), Demux::Dtls);
        assert_eq!(demux(&[0x10, 0, 0, 0, b'Z', b'R', b'T', b'P']), Demux::Zrtp);
        assert_eq!(demux(&[0x80, 0x00]), Demux::Rtp);
        assert_eq!(demux(&[0x81, 200]), Demux::Rtcp);
        assert_eq!(demux(&[0x40, 0x00]), Demux::TurnChannel);
        assert_eq!(demux(&[0xFF]), Demux::Other);
        assert_eq!(demux(&[]), Demux::Other);
    }
}
