//! Payload types to codecs (through the SDP's rtpmap), and the G.711 decoder (a table);
//! G.722 is in `g722.rs`, G.726 in `g726.rs`, G.729 in `g729.rs`, GSM in `gsm.rs` and
//! Opus in `opus.rs`.

use super::g726;
use crate::sip::sdp::{static_payload, MediaDescription};

/// What a payload type carries, as far as recording is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Kind {
    /// Not announced by the SDP and not a static type we know: not this stream's.
    #[default]
    Unknown,
    Pcmu,
    Pcma,
    G722,
    /// G.726 at one rate, in one packing.
    G726(g726::Mode),
    /// G.729 and G.729A, with Annex B's SID frames.
    G729,
    /// GSM 06.10 full rate.
    Gsm,
    /// Opus, its RTP clock at 48 kHz.
    Opus,
    /// RFC 4733 telephone-event: DTMF digits, never audio.
    Event,
    /// RFC 3389 comfort noise: silence, never decoded.
    Cn,
    /// A speech codec calltap cannot decode (iLBC, Speex, G.723.1, ...).
    Unsupported,
}

impl Kind {
    fn from_name(name: &str) -> Kind {
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("PCMU") {
            Kind::Pcmu
        } else if is("PCMA") {
            Kind::Pcma
        } else if is("G722") {
            Kind::G722
        } else if is("telephone-event") {
            Kind::Event
        } else if is("CN") {
            Kind::Cn
        } else if let Some(mode) = g726::Mode::from_name(name) {
            Kind::G726(mode)
        } else if is("G729") || is("G729A") {
            // G.729D and E are other bit rates: not decoded.
            Kind::G729
        } else if is("GSM") {
            Kind::Gsm
        } else if is("opus") {
            Kind::Opus
        } else {
            Kind::Unsupported
        }
    }

    /// A speech codec (decoded or not), as opposed to events and comfort noise.
    pub fn is_speech(self) -> bool {
        matches!(
            self,
            Kind::Pcmu
                | Kind::Pcma
                | Kind::G722
                | Kind::G726(_)
                | Kind::G729
                | Kind::Gsm
                | Kind::Opus
                | Kind::Unsupported
        )
    }

    /// Samples per second of the decoded audio. Opus renders any rate; it asks for
    /// wide band (its speech modes reach 8 kHz of audio bandwidth and beyond) and is
    /// decoded at whatever rate the recording has.
    pub fn sample_rate(self) -> u32 {
        match self {
            Kind::G722 | Kind::Opus => 16_000,
            _ => 8_000,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Unknown => "unknown",
            Kind::Pcmu => "PCMU",
            Kind::Pcma => "PCMA",
            Kind::G722 => "G722",
            Kind::G726(mode) => mode.name(),
            Kind::G729 => "G729",
            Kind::Gsm => "GSM",
            Kind::Opus => "opus",
            Kind::Event => "telephone-event",
            Kind::Cn => "CN",
            Kind::Unsupported => "unsupported",
        }
    }
}

/// Payload type -> codec for one direction, built once per SDP so the per-packet lookup
/// is an index. Payload types follow the receiver's SDP (RFC 3264 5.1: the numbers in a
/// description are what its author expects to receive).
#[derive(Clone, Debug)]
pub struct PtMap {
    kind: [Kind; 128],
    /// RTP clock in kHz (8 for every codec decoded here but Opus's 48).
    clock_khz: [u8; 128],
    /// Names of the unsupported codecs announced, for the reason of a missing WAV.
    unsupported: Vec<(u8, String)>,
}

impl Default for PtMap {
    /// Static payload types only: what a stream with no SDP (or a PT the SDP forgot)
    /// is most likely carrying.
    fn default() -> Self {
        let mut m = PtMap {
            kind: [Kind::Unknown; 128],
            clock_khz: [8; 128],
            unsupported: Vec::new(),
        };
        for pt in [0u8, 2, 3, 8, 9, 13, 18] {
            if let Some((name, _, _)) = static_payload(pt) {
                m.set(pt, name, 8000);
            }
        }
        m
    }
}

impl PtMap {
    pub fn from_media(media: &MediaDescription) -> Self {
        let mut m = PtMap::default();
        for &pt in &media.payload_types {
            if pt >= 128 {
                continue;
            }
            if let (Some(name), Some(rate)) = (media.codec_name(pt), media.clock_rate(pt)) {
                let name = name.into_owned();
                m.set(pt, &name, rate);
            }
        }
        m
    }

    fn set(&mut self, pt: u8, name: &str, rate: u32) {
        let i = usize::from(pt & 0x7F);
        let kind = Kind::from_name(name);
        self.kind[i] = kind;
        self.clock_khz[i] = u8::try_from((rate / 1000).clamp(1, 255)).unwrap_or(8);
        self.unsupported.retain(|(p, _)| *p != pt);
        if kind == Kind::Unsupported {
            self.unsupported.push((pt, name.to_string()));
        }
    }

    #[inline]
    pub fn kind(&self, pt: u8) -> Kind {
        self.kind[usize::from(pt & 0x7F)]
    }

    #[inline]
    pub fn clock_hz(&self, pt: u8) -> u32 {
        u32::from(self.clock_khz[usize::from(pt & 0x7F)]) * 1000
    }

    pub fn unsupported_name(&self, pt: u8) -> Option<&str> {
        self.unsupported
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, n)| n.as_str())
    }
}

/// The first speech codec a media section lists: the one its author prefers to receive.
pub fn preferred_speech(media: &MediaDescription) -> Option<Kind> {
    let map = PtMap::from_media(media);
    media
        .payload_types
        .iter()
        .map(|&pt| map.kind(pt))
        .find(|k| k.is_speech())
}

/// The codecs a media section lists, each once, in its order.
pub fn offered(media: &MediaDescription) -> Vec<Kind> {
    let map = PtMap::from_media(media);
    let mut kinds: Vec<Kind> = Vec::new();
    for &pt in &media.payload_types {
        let kind = map.kind(pt);
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    kinds
}

const fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code;
    let t = (((u & 0x0F) as i16) << 3) + 0x84;
    let t = t << ((u & 0x70) >> 4);
    if u & 0x80 != 0 {
        0x84 - t
    } else {
        t - 0x84
    }
}

const fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = ((a & 0x0F) as i16) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    if a & 0x80 != 0 {
        t
    } else {
        -t
    }
}

const fn table(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw {
            alaw_to_linear(i as u8)
        } else {
            ulaw_to_linear(i as u8)
        };
        i += 1;
    }
    t
}

/// G.711 mu-law to linear, the decoder of ITU-T G.711 / Sun g711.c, one entry per code.
///
/// A table, not symphonia's PCM codec: on this machine (benches/media.rs, one 160-byte
/// packet) the table decodes in 0.05 us and symphonia-codec-pcm 0.5 in 0.48 us (about
/// 10x: its per-packet buffer setup and sample conversion dominate), with identical output.
pub static ULAW: [i16; 256] = table(false);
/// G.711 A-law to linear.
pub static ALAW: [i16; 256] = table(true);

/// Decodes G.711 into `out` (same length as `payload`).
#[inline]
pub fn decode_g711(table: &[i16; 256], payload: &[u8], out: &mut [i16]) {
    for (o, &b) in out.iter_mut().zip(payload) {
        *o = table[usize::from(b)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcapgen::g711;

    #[test]
    fn tables_equal_the_reference_decoders() {
        for c in 0..=255u8 {
            assert_eq!(ULAW[usize::from(c)], g711::ulaw_to_linear(c));
            assert_eq!(ALAW[usize::from(c)], g711::alaw_to_linear(c));
        }
    }

    #[test]
    fn rtpmap_decides_dynamic_types() {
        let sdp = crate::sip::sdp::SessionDescription::parse(
            b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 9 96 97 101 18\r\n\
              a=rtpmap:96 opus/48000/2\r\na=rtpmap:97 PCMA/8000\r\n\
              a=rtpmap:101 telephone-event/8000\r\n",
        )
        .unwrap();
        let m = sdp.audio().unwrap();
        let map = PtMap::from_media(m);
        assert_eq!(map.kind(9), Kind::G722);
        assert_eq!(map.kind(97), Kind::Pcma);
        assert_eq!(map.kind(96), Kind::Opus);
        assert_eq!(map.clock_hz(96), 48_000);
        assert_eq!(map.kind(101), Kind::Event);
        assert_eq!(map.kind(18), Kind::G729);
        assert_eq!(map.kind(13), Kind::Cn);
        assert_eq!(map.kind(100), Kind::Unknown);
        assert_eq!(map.kind(3), Kind::Gsm);
        assert_eq!(preferred_speech(m), Some(Kind::G722));
        assert!(offered(m).contains(&Kind::G722));
    }

    #[test]
    fn g726_binds_by_name_and_static_type_2_is_g726_32() {
        use super::g726::{Mode, Packing};
        let sdp = crate::sip::sdp::SessionDescription::parse(
            b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 2 112 113 114\r\n\
              a=rtpmap:112 AAL2-G726-32/8000\r\na=rtpmap:113 g726-16/8000\r\n\
              a=rtpmap:114 G726-48/8000\r\n",
        )
        .unwrap();
        let m = sdp.audio().unwrap();
        let map = PtMap::from_media(m);
        let g726 = |bits, packing| Kind::G726(Mode::new(bits, packing).unwrap());
        assert_eq!(map.kind(2), g726(4, Packing::Rfc3551));
        assert_eq!(map.kind(112), g726(4, Packing::Aal2));
        assert_eq!(map.kind(113), g726(2, Packing::Rfc3551));
        assert_eq!(map.kind(114), Kind::Unsupported);
        assert_eq!(PtMap::default().kind(2), g726(4, Packing::Rfc3551));
        assert_eq!(map.kind(112).name(), "AAL2-G726-32");
        assert_eq!(preferred_speech(m), Some(g726(4, Packing::Rfc3551)));
        assert!(!offered(m).contains(&Kind::G722));
    }
}
