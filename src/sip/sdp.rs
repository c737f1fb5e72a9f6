//! SDP (RFC 4566) as the media layer needs it: where each party wants RTP, in which codec,
//! in which direction, and whether it is encrypted. The result is owned: it outlives the
//! packet, kept in the dialog until the next offer or answer replaces it.

use super::text::{parse_u16, parse_u32, trim};
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

/// Media sections kept per description: a call has audio, maybe video and a BFCP or T.38
/// stream; past this it is not a phone.
pub const MAX_MEDIA: usize = 16;
/// Payload types, rtpmaps and fmtps kept per media section (a softphone offers ~20).
pub const MAX_FORMATS: usize = 64;
/// Lines read from one body; a real SDP has 10 to 60.
pub const MAX_LINES: usize = 1024;

/// Media direction (RFC 4566 6, RFC 3264 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn from_attr(a: &[u8]) -> Option<Self> {
        Some(match a {
            b"sendrecv" => Direction::SendRecv,
            b"sendonly" => Direction::SendOnly,
            b"recvonly" => Direction::RecvOnly,
            b"inactive" => Direction::Inactive,
            _ => return None,
        })
    }
}

/// `a=rtpmap:PT name/rate[/channels]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
    pub channels: Option<u8>,
}

/// `a=rtcp:PORT [IN IP4 addr]` (RFC 3605).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpAttr {
    pub port: u16,
    pub addr: Option<IpAddr>,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MediaDescription {
    /// `audio`, `video`, `image`, `application`.
    pub media: String,
    /// 0: the stream is declined or removed.
    pub port: u16,
    /// `RTP/AVP`, `RTP/SAVP`, `UDP/TLS/RTP/SAVPF`, `udptl`...
    pub protocol: String,
    /// The formats as payload types (non-numeric formats such as T.38's `t38` dropped).
    pub payload_types: Vec<u8>,
    /// This section's own `c=`, which overrides the session's.
    pub connection: Option<IpAddr>,
    pub rtpmaps: Vec<RtpMap>,
    /// `a=fmtp:PT params`, params kept raw.
    pub fmtps: Vec<(u8, String)>,
    /// This section's own direction attribute, which overrides the session's.
    pub direction: Option<Direction>,
    pub rtcp: Option<RtcpAttr>,
    /// An `a=crypto` (SDES keys) line is present.
    pub crypto: bool,
    pub ptime: Option<u32>,
}

impl MediaDescription {
    /// SRTP profiles: the media on the wire is encrypted and cannot be recorded as audio.
    pub fn is_encrypted(&self) -> bool {
        self.protocol.contains("SAVP")
    }

    pub fn is_declined(&self) -> bool {
        self.port == 0
    }

    /// The codec of a payload type: the rtpmap, else the static table of RFC 3551.
    pub fn codec_name(&self, pt: u8) -> Option<Cow<'_, str>> {
        if let Some(m) = self.rtpmaps.iter().find(|m| m.payload_type == pt) {
            return Some(Cow::Borrowed(&m.encoding));
        }
        static_payload(pt).map(|(n, _, _)| Cow::Borrowed(n))
    }

    pub fn clock_rate(&self, pt: u8) -> Option<u32> {
        if let Some(m) = self.rtpmaps.iter().find(|m| m.payload_type == pt) {
            return Some(m.clock_rate);
        }
        static_payload(pt).map(|(_, r, _)| r)
    }

    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.fmtps
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, s)| s.as_str())
    }

    /// The payload type of a named codec (`telephone-event`), case-insensitive.
    pub fn payload_type_of(&self, name: &str) -> Option<u8> {
        self.payload_types.iter().copied().find(|&pt| {
            self.codec_name(pt)
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    }
}

/// RFC 3551 static payload types: name, clock rate, channels.
pub fn static_payload(pt: u8) -> Option<(&'static str, u32, u8)> {
    Some(match pt {
        0 => ("PCMU", 8000, 1),
        // RFC 3551 withdrew type 2 (RFC 1890's G721), but gear that still sends it means
        // G.726-32 in RFC 3551 packing.
        2 => ("G726-32", 8000, 1),
        3 => ("GSM", 8000, 1),
        4 => ("G723", 8000, 1),
        5 => ("DVI4", 8000, 1),
        6 => ("DVI4", 16000, 1),
        7 => ("LPC", 8000, 1),
        8 => ("PCMA", 8000, 1),
        // G.722's RTP clock is 8000 although it samples at 16 kHz (RFC 3551 4.5.2).
        9 => ("G722", 8000, 1),
        10 => ("L16", 44100, 2),
        11 => ("L16", 44100, 1),
        12 => ("QCELP", 8000, 1),
        13 => ("CN", 8000, 1),
        14 => ("MPA", 90000, 1),
        15 => ("G728", 8000, 1),
        16 => ("DVI4", 11025, 1),
        17 => ("DVI4", 22050, 1),
        18 => ("G729", 8000, 1),
        25 => ("CelB", 90000, 1),
        26 => ("JPEG", 90000, 1),
        28 => ("nv", 90000, 1),
        31 => ("H261", 90000, 1),
        32 => ("MPV", 90000, 1),
        33 => ("MP2T", 90000, 1),
        34 => ("H263", 90000, 1),
        _ => return None,
    })
}

/// A parsed SDP body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionDescription {
    /// The `o=` line's address (identifies the offerer's host).
    pub origin_address: Option<IpAddr>,
    /// `o=` session version: it changes when a re-INVITE changes the media.
    pub origin_version: Option<u64>,
    /// The session-level `c=`.
    pub connection: Option<IpAddr>,
    /// The session-level direction attribute.
    pub direction: Option<Direction>,
    pub media: Vec<MediaDescription>,
}

/// Why an SDP body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpError {
    /// No `v=` line and no `m=` line: not SDP.
    NotSdp,
}

impl SdpError {
    pub fn reason(&self) -> &'static str {
        match self {
            SdpError::NotSdp => "not SDP",
        }
    }
}

impl std::fmt::Display for SdpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for SdpError {}

/// `IN IP4 addr[/ttl]` or `IN IP6 addr`.
fn parse_connection(v: &[u8]) -> Option<IpAddr> {
    let mut it = v.split(|&b| b == b' ').filter(|s| !s.is_empty());
    let (_net, _atype, addr) = (it.next()?, it.next()?, it.next()?);
    let addr = addr.split(|&b| b == b'/').next()?;
    std::str::from_utf8(addr).ok()?.parse().ok()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl SessionDescription {
    /// Parses an SDP body; unknown and malformed lines are skipped, so one bad attribute
    /// does not lose the media address.
    pub fn parse(body: &[u8]) -> Result<Self, SdpError> {
        let mut sd = SessionDescription::default();
        let mut seen_v = false;
        for raw in body.split(|&b| b == b'\n').take(MAX_LINES) {
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            if line.len() < 2 || line[1] != b'=' {
                continue;
            }
            let v = trim(&line[2..]);
            match line[0] {
                b'v' => seen_v = true,
                b'o' => {
                    let f: Vec<&[u8]> = v.split(|&b| b == b' ').filter(|s| !s.is_empty()).collect();
                    if f.len() >= 6 {
                        sd.origin_version =
                            std::str::from_utf8(f[2]).ok().and_then(|s| s.parse().ok());
                        sd.origin_address =
                            std::str::from_utf8(f[5]).ok().and_then(|s| s.parse().ok());
                    }
                }
                b'c' => {
                    let c = parse_connection(v);
                    match sd.media.last_mut() {
                        Some(m) => m.connection = c,
                        None => sd.connection = c,
                    }
                }
                b'm' => {
                    if sd.media.len() == MAX_MEDIA {
                        // Attributes that follow belong to a section not kept: stop.
                        break;
                    }
                    let mut f = v.split(|&b| b == b' ').filter(|s| !s.is_empty());
                    let media = text(f.next().unwrap_or_default());
                    // `port/count` for layered streams: the first port is the one.
                    let port = f
                        .next()
                        .and_then(|p| p.split(|&b| b == b'/').next())
                        .and_then(parse_u16)
                        .unwrap_or(0);
                    let protocol = text(f.next().unwrap_or_default());
                    let payload_types = f
                        .filter_map(|pt| parse_u16(pt).and_then(|p| u8::try_from(p).ok()))
                        .take(MAX_FORMATS)
                        .collect();
                    sd.media.push(MediaDescription {
                        media,
                        port,
                        protocol,
                        payload_types,
                        ..Default::default()
                    });
                }
                b'a' => sd.attribute(v),
                _ => {}
            }
        }
        if !seen_v && sd.media.is_empty() {
            return Err(SdpError::NotSdp);
        }
        Ok(sd)
    }

    fn attribute(&mut self, a: &[u8]) {
        let (name, value) = match memchr::memchr(b':', a) {
            Some(i) => (&a[..i], trim(&a[i + 1..])),
            None => (a, &b""[..]),
        };
        if let Some(d) = Direction::from_attr(name) {
            match self.media.last_mut() {
                Some(m) => m.direction = Some(d),
                None => self.direction = Some(d),
            }
            return;
        }
        let Some(m) = self.media.last_mut() else {
            return;
        };
        match name {
            b"rtpmap" if m.rtpmaps.len() < MAX_FORMATS => {
                let sp = value.iter().position(|&b| b == b' ').unwrap_or(value.len());
                let Some(pt) = parse_u16(&value[..sp]).and_then(|p| u8::try_from(p).ok()) else {
                    return;
                };
                let mut enc = trim(&value[sp..]).split(|&b| b == b'/');
                let encoding = text(enc.next().unwrap_or_default());
                let clock_rate = enc.next().and_then(parse_u32).unwrap_or(0);
                let channels = enc
                    .next()
                    .and_then(parse_u16)
                    .and_then(|c| u8::try_from(c).ok());
                m.rtpmaps.push(RtpMap {
                    payload_type: pt,
                    encoding,
                    clock_rate,
                    channels,
                });
            }
            b"fmtp" if m.fmtps.len() < MAX_FORMATS => {
                let sp = value.iter().position(|&b| b == b' ').unwrap_or(value.len());
                if let Some(pt) = parse_u16(&value[..sp]).and_then(|p| u8::try_from(p).ok()) {
                    m.fmtps.push((pt, text(trim(&value[sp..]))));
                }
            }
            b"rtcp" => {
                let sp = value.iter().position(|&b| b == b' ').unwrap_or(value.len());
                if let Some(port) = parse_u16(&value[..sp]) {
                    m.rtcp = Some(RtcpAttr {
                        port,
                        addr: parse_connection(trim(&value[sp..])),
                    });
                }
            }
            b"crypto" => m.crypto = true,
            b"ptime" => m.ptime = parse_u32(value),
            _ => {}
        }
    }

    /// The first audio section that is not declined (port 0).
    pub fn audio(&self) -> Option<&MediaDescription> {
        self.media
            .iter()
            .find(|m| m.media.eq_ignore_ascii_case("audio") && !m.is_declined())
    }

    /// A section's connection address: its own `c=`, else the session's.
    pub fn connection_of(&self, m: &MediaDescription) -> Option<IpAddr> {
        m.connection.or(self.connection)
    }

    /// A section's direction: its own attribute, else the session's, else sendrecv.
    pub fn direction_of(&self, m: &MediaDescription) -> Direction {
        m.direction
            .or(self.direction)
            .unwrap_or(Direction::SendRecv)
    }

    /// Where the audio's sender wants to receive RTP; `None` when there is no live audio
    /// stream or no address.
    pub fn audio_rtp_addr(&self) -> Option<SocketAddr> {
        let m = self.audio()?;
        Some(SocketAddr::new(self.connection_of(m)?, m.port))
    }

    /// The audio's direction (sendrecv when none is said).
    pub fn audio_direction(&self) -> Option<Direction> {
        self.audio().map(|m| self.direction_of(m))
    }

    /// Whether this description puts the call on hold: audio sendonly or inactive
    /// (RFC 3264 8.4), or the pre-3264 `c=0.0.0.0`. An answer of recvonly to someone
    /// else's hold is not itself a hold; see [`Self::audio_direction`].
    pub fn is_on_hold(&self) -> bool {
        let Some(m) = self.audio() else {
            return false;
        };
        matches!(
            self.direction_of(m),
            Direction::SendOnly | Direction::Inactive
        ) || self.connection_of(m).is_some_and(|a| a.is_unspecified())
    }

    /// Whether the audio is SRTP (`RTP/SAVP`, `RTP/SAVPF`, `UDP/TLS/RTP/SAVPF`).
    pub fn is_encrypted(&self) -> bool {
        self.audio().is_some_and(MediaDescription::is_encrypted)
    }
}
