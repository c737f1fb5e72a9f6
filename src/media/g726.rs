//! ITU-T G.726 ADPCM decoder: 16, 24, 32 and 40 kbit/s (2 to 5 bits a codeword), 8 kHz
//! out, in both RTP packings.
//!
//! Written from the Recommendation's bit-level description (section 4, block names kept
//! as comments), with the ITU's 16-bit state. No crate on crates.io decodes G.726, and
//! ffmpeg's decoder is not the Recommendation's: its step-size mix (MIX) rounds
//! differently and it leaks the zero predictor by 2^-8 at 40 kbit/s where G.726 says
//! 2^-9, so its output drifts from what an ITU decoder makes of the same stream (by up to
//! 460 on a 440 Hz tone at 32 kbit/s; at 40 kbit/s an ITU decoder makes noise of its
//! encoder's streams). FreeSWITCH (spandsp) and Asterisk (Sun's g72x) follow the
//! Recommendation, and tests/g726.rs checks this decoder sample for sample against
//! spandsp, on spandsp's and ffmpeg's streams, at each rate and in both packings.
//!
//! One choice is ours: the 14-bit reconstructed signal becomes 16-bit PCM saturated,
//! where spandsp's `sr << 2` wraps a (rare) overshoot past 8191 into a click.

/// How codewords sit in the octets of an RTP payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Packing {
    /// RFC 3551 4.5.4 (`G726-32`): the first codeword in the least significant bits of
    /// the first octet.
    Rfc3551,
    /// ITU-T I.366.2 Annex E (`AAL2-G726-32`, RFC 3551's note): the first codeword in the
    /// most significant bits.
    Aal2,
}

/// A G.726 rate and packing, as an rtpmap names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mode {
    /// Bits a codeword: 2 (16 kbit/s) to 5 (40 kbit/s).
    bits: u8,
    packing: Packing,
}

impl Mode {
    /// `bits` outside 2..=5 is not G.726.
    pub fn new(bits: u8, packing: Packing) -> Option<Mode> {
        (2..=5).contains(&bits).then_some(Mode { bits, packing })
    }

    /// The encoding names of RFC 3551 and its registry (`G726-32`, `AAL2-G726-24`), and
    /// `G721`, RFC 1890's name for what static payload type 2 carried (G.726-32).
    pub fn from_name(name: &str) -> Option<Mode> {
        let upper = name.to_ascii_uppercase();
        if upper == "G721" {
            return Mode::new(4, Packing::Rfc3551);
        }
        let (packing, rest) = match upper.strip_prefix("AAL2-") {
            Some(rest) => (Packing::Aal2, rest),
            None => (Packing::Rfc3551, upper.as_str()),
        };
        let bits = match rest.strip_prefix("G726-")? {
            "16" => 2,
            "24" => 3,
            "32" => 4,
            "40" => 5,
            _ => return None,
        };
        Mode::new(bits, packing)
    }

    pub fn bits(self) -> u8 {
        self.bits
    }

    pub fn packing(self) -> Packing {
        self.packing
    }

    pub fn name(self) -> &'static str {
        match (self.packing, self.bits) {
            (Packing::Rfc3551, 2) => "G726-16",
            (Packing::Rfc3551, 3) => "G726-24",
            (Packing::Rfc3551, 5) => "G726-40",
            (Packing::Rfc3551, _) => "G726-32",
            (Packing::Aal2, 2) => "AAL2-G726-16",
            (Packing::Aal2, 3) => "AAL2-G726-24",
            (Packing::Aal2, 5) => "AAL2-G726-40",
            (Packing::Aal2, _) => "AAL2-G726-32",
        }
    }

    /// Whole codewords (so samples) in a payload of `len` octets.
    pub fn samples(self, len: usize) -> usize {
        len * 8 / usize::from(self.bits)
    }

    /// A payload that ends inside a codeword (RFC 3551 packs 24 and 40 kbit/s in groups
    /// of eight codewords, so a whole packet never does).
    pub fn is_partial(self, len: usize) -> bool {
        len * 8 % usize::from(self.bits) != 0
    }

    fn tables(self) -> &'static Tables {
        &TABLES[usize::from(self.bits - 2)]
    }
}

/// The per-rate tables of G.726, indexed by a codeword's magnitude |I| (the sign bit
/// removed, one's complement): the two halves of the Recommendation's tables mirror.
struct Tables {
    /// Reconstructed log magnitude, DQLN (Tables 7, 11, 13, 15 of G.726).
    dqln: &'static [i16],
    /// Scale factor multiplier W(I), times 32 (the units of YU).
    w: &'static [i32],
    /// F(I), times 512 (the units of DMS).
    f: &'static [i16],
}

static TABLES: [Tables; 4] = [
    Tables {
        dqln: &[116, 365],
        w: &[-22 * 32, 439 * 32],
        f: &[0, 7 << 9],
    },
    Tables {
        dqln: &[-2048, 135, 273, 373],
        w: &[-4 * 32, 30 * 32, 137 * 32, 582 * 32],
        f: &[0, 1 << 9, 2 << 9, 7 << 9],
    },
    Tables {
        dqln: &[-2048, 4, 135, 213, 273, 323, 373, 425],
        w: &[
            -12 * 32,
            18 * 32,
            41 * 32,
            64 * 32,
            112 * 32,
            198 * 32,
            355 * 32,
            1122 * 32,
        ],
        f: &[0, 0, 0, 1 << 9, 1 << 9, 1 << 9, 3 << 9, 7 << 9],
    },
    Tables {
        dqln: &[
            -2048, -66, 28, 104, 169, 224, 274, 318, 358, 395, 429, 459, 488, 514, 539, 566,
        ],
        w: &[
            14 * 32,
            14 * 32,
            24 * 32,
            39 * 32,
            40 * 32,
            41 * 32,
            58 * 32,
            100 * 32,
            141 * 32,
            179 * 32,
            219 * 32,
            280 * 32,
            358 * 32,
            440 * 32,
            529 * 32,
            696 * 32,
        ],
        f: &[
            0,
            0,
            0,
            0,
            0,
            1 << 9,
            1 << 9,
            1 << 9,
            1 << 9,
            1 << 9,
            2 << 9,
            3 << 9,
            4 << 9,
            5 << 9,
            6 << 9,
            6 << 9,
        ],
    },
];

/// Index of the highest set bit, -1 for zero.
#[inline]
fn top_bit(x: i32) -> i32 {
    31 - x.leading_zeros() as i32
}

/// G.726's 11-bit float (sign, 4-bit exponent, 6-bit mantissa) packed in an i16 as the
/// Recommendation's FLOAT A/B blocks make it: negative values carry -1024, so the sign
/// is the i16's and exponent and mantissa read the same either way.
#[inline]
fn float(mag: i32, negative: bool) -> i16 {
    let packed = if mag == 0 {
        0x20
    } else {
        let exp = top_bit(mag) + 1;
        (exp << 6) + ((mag << 6) >> exp)
    };
    (if negative { packed - 0x400 } else { packed }) as i16
}

/// FMULT: a 14-bit coefficient times a packed float, as the Recommendation computes it.
#[inline]
fn fmult(an: i16, srn: i16) -> i32 {
    let (an, srn) = (i32::from(an), i32::from(srn));
    let anmag = if an > 0 { an } else { (-an) & 0x1FFF };
    let anexp = top_bit(anmag) - 5;
    let anmant = if anmag == 0 {
        32
    } else if anexp >= 0 {
        anmag >> anexp
    } else {
        anmag << -anexp
    };
    let wanexp = anexp + ((srn >> 6) & 0xF) - 13;
    let wanmant = (anmant * (srn & 0x3F) + 0x30) >> 4;
    let product = if wanexp >= 0 {
        (wanmant << wanexp) & 0x7FFF
    } else {
        wanmant >> -wanexp
    };
    if (an ^ srn) < 0 {
        -product
    } else {
        product
    }
}

/// One decoder's state: G.726's delay elements, in the Recommendation's widths.
#[derive(Clone, Debug)]
pub struct G726 {
    mode: Mode,
    /// Slow (locked) and fast (unlocked) quantizer scale factors.
    yl: i32,
    yu: i16,
    /// Short- and long-term averages of F(I), and the speed control.
    dms: i16,
    dml: i16,
    ap: i16,
    /// Pole and zero predictor coefficients.
    a: [i16; 2],
    b: [i16; 6],
    /// Signs of the last two partial reconstructions (1 = negative).
    pk: [i16; 2],
    /// Last six quantized differences and last two reconstructed samples, as floats.
    dq: [i16; 6],
    sr: [i16; 2],
    /// Tone detected (a modem or fax signal, not speech).
    td: bool,
}

impl G726 {
    /// A decoder in the Recommendation's reset state.
    pub fn new(mode: Mode) -> G726 {
        G726 {
            mode,
            yl: 34816,
            yu: 544,
            dms: 0,
            dml: 0,
            ap: 0,
            a: [0; 2],
            b: [0; 6],
            pk: [0; 2],
            dq: [0x20; 6],
            sr: [0x20; 2],
            td: false,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Decodes one payload into `out`; returns the samples written (the payload's whole
    /// codewords, or fewer if `out` is shorter). Every bit pattern is a codeword, so
    /// there is nothing to reject.
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> usize {
        let bits = u32::from(self.mode.bits);
        let mask = (1u32 << bits) - 1;
        let mut acc = 0u32;
        let mut have = 0u32;
        let mut n = 0;
        for &byte in payload {
            match self.mode.packing {
                Packing::Rfc3551 => acc |= u32::from(byte) << have,
                Packing::Aal2 => acc = (acc << 8) | u32::from(byte),
            }
            have += 8;
            while have >= bits {
                if n == out.len() {
                    return n;
                }
                let code = match self.mode.packing {
                    Packing::Rfc3551 => {
                        let c = acc & mask;
                        acc >>= bits;
                        c
                    }
                    Packing::Aal2 => (acc >> (have - bits)) & mask,
                };
                have -= bits;
                // Keep only the bits not yet used, so the accumulator never overflows.
                acc &= (1u32 << have) - 1;
                out[n] = self.sample(code as u8);
                n += 1;
            }
        }
        n
    }

    /// One codeword to one 16-bit sample.
    fn sample(&mut self, code: u8) -> i16 {
        let t = self.mode.tables();
        let sign_bit = 1u8 << (self.mode.bits - 1);
        let negative = code & sign_bit != 0;
        // |I|: the Recommendation's tables are symmetric in one's complement.
        let m = usize::from(if negative { !code } else { code } & (sign_bit - 1));

        // Predictors (FMULT, ACCUM): zeros on past differences, poles on past samples.
        let mut sezi = 0i32;
        for (&b, &dq) in self.b.iter().zip(&self.dq) {
            sezi += fmult(b >> 2, dq);
        }
        let sezi = sezi as i16;
        let pole = (fmult(self.a[1] >> 2, self.sr[1]) + fmult(self.a[0] >> 2, self.sr[0])) as i16;
        let sei = (i32::from(sezi) + i32::from(pole)) as i16;
        let se = i32::from(sei >> 1);

        let y = self.step_size();
        let dq_mag = reconstruct(t.dqln[m], y);
        let sr = (if negative { se - dq_mag } else { se + dq_mag }) as i16;
        let dqsez = (i32::from(sr) + i32::from(sezi >> 1) - se) as i16;
        self.update(y, t.w[m], t.f[m], negative, dq_mag, sr, dqsez);
        (i32::from(sr) * 4).clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
    }

    /// MIX: the quantizer scale factor, between the fast and slow ones by AP.
    fn step_size(&self) -> i32 {
        let yu = i32::from(self.yu);
        if self.ap >= 256 {
            return yu;
        }
        let y = self.yl >> 6;
        let dif = yu - y;
        let al = i32::from(self.ap >> 2);
        // The product is sign-magnitude in the Recommendation: truncated towards zero.
        if dif > 0 {
            y + ((dif * al) >> 6)
        } else if dif < 0 {
            y + ((dif * al + 0x3F) >> 6)
        } else {
            y
        }
    }

    /// Every adaptation after one sample: scale factors, predictor coefficients, tone
    /// and transition detection, speed control.
    #[allow(clippy::too_many_arguments)]
    fn update(&mut self, y: i32, w: i32, f: i16, negative: bool, dq_mag: i32, sr: i16, dqsez: i16) {
        let pk0 = i16::from(dqsez < 0);

        // TRANS: a large difference while a tone is on is a transition (a modem's).
        let ylint = self.yl >> 15;
        let ylfrac = (self.yl >> 10) & 0x1F;
        let thr = if ylint > 9 {
            31 << 10
        } else {
            (32 + ylfrac) << ylint
        };
        let dqthr = (thr + (thr >> 1)) >> 1;
        let tr = self.td && dq_mag > dqthr;

        // FUNCTW, FILTD, LIMB: fast scale factor; FILTE: slow one.
        self.yu = (y + ((w - y) >> 5)).clamp(544, 5120) as i16;
        self.yl += i32::from(self.yu) + ((-self.yl) >> 6);

        let mut a2p = 0i32;
        if tr {
            // TRIGB: a transition resets the predictor.
            self.a = [0; 2];
            self.b = [0; 6];
        } else {
            // UPA2, LIMC: second pole.
            let pks1 = pk0 ^ self.pk[0];
            let a1 = i32::from(self.a[0]);
            a2p = i32::from(self.a[1]) - (i32::from(self.a[1]) >> 7);
            if dqsez != 0 {
                let fa1 = if pks1 != 0 { a1 } else { -a1 };
                a2p += if fa1 < -8191 {
                    -0x100
                } else if fa1 > 8191 {
                    0xFF
                } else {
                    fa1 >> 5
                };
                a2p = if pk0 ^ self.pk[1] != 0 {
                    if a2p <= -12160 {
                        -12288
                    } else if a2p >= 12416 {
                        12288
                    } else {
                        a2p - 0x80
                    }
                } else if a2p <= -12416 {
                    -12288
                } else if a2p >= 12160 {
                    12288
                } else {
                    a2p + 0x80
                };
            }
            // UPA1, LIMD: first pole, bounded by the second.
            let mut a1p = a1 - (a1 >> 8);
            if dqsez != 0 {
                a1p += if pks1 == 0 { 192 } else { -192 };
            }
            let a1ul = 15360 - a2p;
            self.a = [a1p.clamp(-a1ul, a1ul) as i16, a2p as i16];

            // UPB: zeros, leaking by 2^-9 at 40 kbit/s and 2^-8 otherwise; 16-bit, as in
            // the Recommendation (a coefficient can wrap, as there).
            let leak = if self.mode.bits == 5 { 9 } else { 8 };
            for (b, &dqn) in self.b.iter_mut().zip(&self.dq) {
                let mut v = i32::from(*b) - (i32::from(*b) >> leak);
                if dq_mag != 0 {
                    v += if negative == (dqn < 0) { 128 } else { -128 };
                }
                *b = v as i16;
            }
        }

        // DELAY, FLOAT A, FLOAT B.
        self.dq.copy_within(0..5, 1);
        self.dq[0] = float(dq_mag, negative);
        self.sr[1] = self.sr[0];
        self.sr[0] = match sr {
            0 => 0x20,
            i16::MIN => float(0, true),
            s => float(i32::from(s).abs(), s < 0),
        };
        self.pk = [pk0, self.pk[0]];

        // TONE: a second pole this negative is a tone, not speech.
        self.td = !tr && a2p < -11776;

        // FILTA, FILTB, SUBTC, FILTC: speed control.
        let (f, dms, dml) = (i32::from(f), i32::from(self.dms), i32::from(self.dml));
        let dms = dms + ((f - dms) >> 5);
        let dml = dml + (((f << 2) - dml) >> 7);
        (self.dms, self.dml) = (dms as i16, dml as i16);
        let ap = i32::from(self.ap);
        self.ap = if tr {
            256
        } else if y < 1536 || self.td || ((dms << 2) - dml).abs() >= (dml >> 3) {
            ap + ((0x200 - ap) >> 4)
        } else {
            ap + ((-ap) >> 4)
        } as i16;
    }
}

/// ADDA, ANTILOG: the magnitude of the quantized difference from its log and the scale.
#[inline]
fn reconstruct(dqln: i16, y: i32) -> i32 {
    let dql = (i32::from(dqln) + (y >> 2)) as i16;
    if dql < 0 {
        return 0;
    }
    let dex = i32::from((dql >> 7) & 15);
    let dqt = 128 + i32::from(dql & 127);
    (dqt << 7) >> (14 - dex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for bits in 2..=5 {
            for packing in [Packing::Rfc3551, Packing::Aal2] {
                let m = Mode::new(bits, packing).unwrap();
                assert_eq!(Mode::from_name(m.name()), Some(m));
                assert_eq!(Mode::from_name(&m.name().to_ascii_lowercase()), Some(m));
            }
        }
        assert_eq!(Mode::from_name("G721"), Mode::new(4, Packing::Rfc3551));
        assert_eq!(Mode::from_name("G726-48"), None);
        assert_eq!(Mode::from_name("G726"), None);
        assert_eq!(Mode::from_name("AAL2-PCMU"), None);
        assert_eq!(Mode::new(6, Packing::Aal2), None);
    }

    #[test]
    fn packings_read_codewords_from_opposite_ends() {
        // Four 4-bit codewords 1, 2, 3, 4 in each packing decode alike.
        let mut a = G726::new(Mode::new(4, Packing::Rfc3551).unwrap());
        let mut b = G726::new(Mode::new(4, Packing::Aal2).unwrap());
        let (mut x, mut y) = ([0i16; 4], [0i16; 4]);
        assert_eq!(a.decode(&[0x21, 0x43], &mut x), 4);
        assert_eq!(b.decode(&[0x12, 0x34], &mut y), 4);
        assert_eq!(x, y);
        assert!(x.iter().any(|&s| s != 0));
    }

    #[test]
    fn partial_codewords_are_left_out() {
        let m = Mode::new(3, Packing::Rfc3551).unwrap();
        assert_eq!(m.samples(3), 8);
        assert!(!m.is_partial(3));
        assert_eq!(m.samples(4), 10);
        assert!(m.is_partial(4));
        let mut d = G726::new(m);
        let mut out = [0i16; 16];
        assert_eq!(d.decode(&[0xFF; 4], &mut out), 10);
        // A short output buffer bounds what is written.
        assert_eq!(d.decode(&[0xFF; 4], &mut out[..3]), 3);
    }

    #[test]
    fn any_bytes_decode_without_panic() {
        // Every codeword at every rate, long enough for the predictor to saturate.
        for bits in 2..=5 {
            for packing in [Packing::Rfc3551, Packing::Aal2] {
                let mut d = G726::new(Mode::new(bits, packing).unwrap());
                let mut out = [0i16; 1024];
                for seed in 0..64u32 {
                    let payload: Vec<u8> = (0..400u32)
                        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
                        .collect();
                    d.decode(&payload, &mut out);
                    d.decode(&[0xFF; 400], &mut out);
                    d.decode(&[0x00; 400], &mut out);
                }
            }
        }
    }
}
