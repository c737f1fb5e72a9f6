//! ITU-T G.711 encoders (and decoders, for checking) plus the known test signals that
//! generated calls carry, so a test can predict every payload byte.
//!
//! The encoders follow the G.711 segment tables as in the widely used Sun reference
//! implementation (g711.c): mu-law works on the top 14 bits with a bias of 33, A-law on
//! the top 13 bits with even-bit inversion (XOR 0x55). Both are bit-exact with what
//! Asterisk, FreeSWITCH and SoX produce.

/// Segment end points of mu-law, on the 14-bit magnitude plus bias.
const SEG_UEND: [i16; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
/// Segment end points of A-law, on the 13-bit magnitude.
const SEG_AEND: [i16; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
/// Largest 14-bit magnitude mu-law encodes before it clips (8159 + bias = 8192).
const ULAW_CLIP: i16 = 8159;
const ULAW_BIAS: i16 = 0x84 >> 2;

fn segment(value: i16, table: &[i16; 8]) -> usize {
    table.iter().position(|&end| value <= end).unwrap_or(8)
}

/// Encodes one 16-bit linear sample as G.711 mu-law (PCMU, RTP payload type 0).
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let mut v = sample >> 2;
    let mask: u8 = if v < 0 {
        v = -v;
        0x7F
    } else {
        0xFF
    };
    v = v.min(ULAW_CLIP) + ULAW_BIAS;
    let seg = segment(v, &SEG_UEND);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let uval = ((seg as u8) << 4) | ((v >> (seg + 1)) & 0xF) as u8;
    uval ^ mask
}

/// Encodes one 16-bit linear sample as G.711 A-law (PCMA, RTP payload type 8).
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut v = sample >> 3;
    let mask: u8 = if v >= 0 {
        0xD5
    } else {
        v = -v - 1;
        0x55
    };
    let seg = segment(v, &SEG_AEND);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let quant = if seg < 2 {
        (v >> 1) & 0xF
    } else {
        (v >> seg) & 0xF
    };
    (((seg as u8) << 4) | quant as u8) ^ mask
}

/// Decodes a mu-law byte to 16-bit linear (the inverse used by every G.711 decoder).
pub fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code;
    let t = ((i16::from(u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4);
    if u & 0x80 != 0 {
        0x84 - t
    } else {
        t - 0x84
    }
}

/// Decodes an A-law byte to 16-bit linear.
pub fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = i16::from(a & 0x0F) << 4;
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

/// The G.711 law a call uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// mu-law, static payload type 0.
    Pcmu,
    /// A-law, static payload type 8.
    Pcma,
}

impl Codec {
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The encoding name in SDP `a=rtpmap`.
    pub fn rtpmap_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    pub fn encode(self, sample: i16) -> u8 {
        match self {
            Codec::Pcmu => linear_to_ulaw(sample),
            Codec::Pcma => linear_to_alaw(sample),
        }
    }

    pub fn decode(self, code: u8) -> i16 {
        match self {
            Codec::Pcmu => ulaw_to_linear(code),
            Codec::Pcma => alaw_to_linear(code),
        }
    }
}

/// Sample rate of every G.711 stream.
pub const SAMPLE_RATE: u32 = 8000;
/// Samples in one 20 ms packet, the ptime every generated call uses.
pub const SAMPLES_PER_PACKET: usize = 160;

/// A known signal, defined sample by sample so a test can recompute any payload.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Signal {
    /// Digital silence (encodes to 0xFF in mu-law, 0xD5 in A-law).
    Silence,
    /// `amplitude * sin(2 pi freq n / 8000)`, rounded to nearest.
    Tone { freq_hz: u32, amplitude: i16 },
    /// A linear sweep from `f0_hz` to `f1_hz` over `period_ms`, then again from `f0_hz`.
    Chirp {
        f0_hz: u32,
        f1_hz: u32,
        period_ms: u32,
        amplitude: i16,
    },
    /// Talk spurts: a sweep from `f0_hz` to `f1_hz` lasting `on_ms`, then `off_ms` of
    /// silence, over and over, `offset_ms` into the cycle at sample 0. Two parties with
    /// the same cycle and offsets `0` and `off_ms` take turns, as people in a
    /// conversation do, so each channel of a recording is told apart by ear and by its
    /// silences.
    Spurts {
        f0_hz: u32,
        f1_hz: u32,
        on_ms: u32,
        off_ms: u32,
        offset_ms: u32,
        amplitude: i16,
    },
}

impl Signal {
    /// Linear sample number `n` (counted from the first sample of the stream).
    pub fn sample(&self, n: u64) -> i16 {
        use std::f64::consts::PI;
        let rate = f64::from(SAMPLE_RATE);
        match *self {
            Signal::Silence => 0,
            Signal::Tone { freq_hz, amplitude } => {
                // Reduce n first so the phase stays exact for streams of any length.
                let n = n % u64::from(SAMPLE_RATE);
                let x = 2.0 * PI * f64::from(freq_hz) * n as f64 / rate;
                (f64::from(amplitude) * x.sin()).round() as i16
            }
            Signal::Chirp {
                f0_hz,
                f1_hz,
                period_ms,
                amplitude,
            } => {
                let period = (u64::from(period_ms) * u64::from(SAMPLE_RATE) / 1000).max(1);
                let t = (n % period) as f64 / rate;
                let span = period as f64 / rate;
                let k = (f64::from(f1_hz) - f64::from(f0_hz)) / span;
                let phase = 2.0 * PI * (f64::from(f0_hz) * t + 0.5 * k * t * t);
                (f64::from(amplitude) * phase.sin()).round() as i16
            }
            Signal::Spurts {
                f0_hz,
                f1_hz,
                on_ms,
                offset_ms,
                amplitude,
                ..
            } => {
                let per_ms = u64::from(SAMPLE_RATE) / 1000;
                let cycle = self.period();
                let at = (n + u64::from(offset_ms) * per_ms) % cycle;
                if at >= u64::from(on_ms) * per_ms {
                    return 0;
                }
                let sweep = Signal::Chirp {
                    f0_hz,
                    f1_hz,
                    period_ms: on_ms,
                    amplitude,
                };
                sweep.sample(at)
            }
        }
    }

    /// Samples after which the signal repeats exactly.
    pub fn period(&self) -> u64 {
        match *self {
            Signal::Silence => 1,
            Signal::Tone { freq_hz, .. } => {
                let rate = u64::from(SAMPLE_RATE);
                rate / gcd(rate, u64::from(freq_hz).max(1))
            }
            Signal::Chirp { period_ms, .. } => {
                (u64::from(period_ms) * u64::from(SAMPLE_RATE) / 1000).max(1)
            }
            Signal::Spurts { on_ms, off_ms, .. } => {
                ((u64::from(on_ms) + u64::from(off_ms)) * u64::from(SAMPLE_RATE) / 1000).max(1)
            }
        }
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Produces the encoded payloads of one stream; one period of the signal is encoded once
/// and then copied, which keeps the load generator's RTP cheap (a sine costs ~40 ns per
/// sample in f64, a copy almost nothing).
#[derive(Clone, Debug)]
pub struct PayloadGen {
    period: Vec<u8>,
}

impl PayloadGen {
    pub fn new(codec: Codec, signal: Signal) -> Self {
        let period = (0..signal.period())
            .map(|n| codec.encode(signal.sample(n)))
            .collect();
        PayloadGen { period }
    }

    /// The payload of 20 ms packet number `packet` (0 = first packet of the stream).
    pub fn fill(&self, packet: u64, out: &mut [u8; SAMPLES_PER_PACKET]) {
        let p = self.period.len();
        let mut pos = ((packet * SAMPLES_PER_PACKET as u64) % p as u64) as usize;
        let mut done = 0;
        while done < out.len() {
            let n = (p - pos).min(out.len() - done);
            out[done..done + n].copy_from_slice(&self.period[pos..pos + n]);
            done += n;
            pos = 0;
        }
    }
}

/// Encodes samples `first..first + out.len()` of `signal`: the reference a test compares
/// recorded payloads (or decoded audio) against.
pub fn encode_signal(codec: Codec, signal: &Signal, first: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        *b = codec.encode(signal.sample(first + i as u64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_known_values() {
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(-1), 0x7E);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        // Segment edges from the G.711 table (14-bit magnitudes 30/31 and 94/95, x4).
        assert_eq!(linear_to_ulaw(1000), 0xCE);
        assert_eq!(linear_to_ulaw(-1000), 0x4E);
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
    }

    #[test]
    fn alaw_known_values() {
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
        assert_eq!(linear_to_alaw(1000), 0xFA);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
    }

    #[test]
    fn every_code_survives_a_round_trip() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            for code in 0..=255u8 {
                let pcm = codec.decode(code);
                assert_eq!(codec.decode(codec.encode(pcm)), pcm, "{codec:?} {code:#x}");
            }
        }
    }

    #[test]
    fn encoder_is_monotonic() {
        let mut last = i16::MIN;
        for s in i16::MIN..=i16::MAX {
            let d = alaw_to_linear(linear_to_alaw(s));
            assert!(d >= last, "alaw not monotonic at {s}");
            last = d;
        }
        let mut last = i16::MIN;
        for s in i16::MIN..=i16::MAX {
            let d = ulaw_to_linear(linear_to_ulaw(s));
            assert!(d >= last, "ulaw not monotonic at {s}");
            last = d;
        }
    }

    #[test]
    fn cached_payloads_match_direct_encoding() {
        let signals = [
            Signal::Tone {
                freq_hz: 440,
                amplitude: 8000,
            },
            Signal::Chirp {
                f0_hz: 300,
                f1_hz: 3000,
                period_ms: 1000,
                amplitude: 6000,
            },
            Signal::Spurts {
                f0_hz: 300,
                f1_hz: 1100,
                on_ms: 1300,
                off_ms: 900,
                offset_ms: 900,
                amplitude: 7000,
            },
        ];
        for sig in signals {
            let gen = PayloadGen::new(Codec::Pcma, sig);
            for packet in [0u64, 1, 7, 49, 50, 123_457] {
                let mut got = [0u8; SAMPLES_PER_PACKET];
                gen.fill(packet, &mut got);
                let mut want = [0u8; SAMPLES_PER_PACKET];
                encode_signal(Codec::Pcma, &sig, packet * 160, &mut want);
                assert_eq!(got, want, "{sig:?} packet {packet}");
            }
        }
    }
}
