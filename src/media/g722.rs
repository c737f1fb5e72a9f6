//! ITU-T G.722 decoder (64 kbit/s, 16 kHz out).
//!
//! Taken from ezk-g722 0.1.2 (MIT, Copyright (c) kbalt; its `libg722` module, a Rust
//! translation of sippy/libg722), which is Steve Underwood's spandsp g722_decode.c (placed
//! by him in the public domain) on the CMU 1993 codec ("use ... is completely
//! unrestricted"). Two changes, why we carry it instead of depending on the crate:
//!
//! - the crate starts both sub-bands with a zero step size (`det`); G.722 (and spandsp's
//!   `g722_decode_init`) start at 32 (low band) and 8 (high band). With zero, the first
//!   ~0.4 s of every stream decode up to 510 LSB away from a reference decoder (measured
//!   against ffmpeg 5.1); with the ITU start the output is identical to ffmpeg's, sample
//!   for sample (tests/media.rs);
//! - it decodes into the caller's buffer (the crate returns a `Vec` per packet), and
//!   drops the crate's dependencies (tokio, rand and the ezk media framework, ~30
//!   crates) that a decoder does not need.

#[derive(Clone, Copy, Debug, Default)]
struct Band {
    s: i32,
    sp: i32,
    sz: i32,
    r: [i32; 3],
    a: [i32; 3],
    ap: [i32; 3],
    p: [i32; 3],
    d: [i32; 7],
    b: [i32; 7],
    bp: [i32; 7],
    sg: [i32; 7],
    nb: i32,
    det: i32,
}

#[inline]
fn saturate(amp: i32) -> i32 {
    amp.clamp(i32::from(i16::MIN), i32::from(i16::MAX))
}

/// Block 4 of G.722: the adaptive predictor of one sub-band.
fn block4(band: &mut Band, d: i32) {
    // RECONS, PARREC
    band.d[0] = d;
    band.r[0] = saturate(band.s + d);
    band.p[0] = saturate(band.sz + d);

    // UPPOL2
    for i in 0..3 {
        band.sg[i] = band.p[i] >> 15;
    }
    let wd1 = saturate(band.a[1] << 2);
    let wd2 = (if band.sg[0] == band.sg[1] { -wd1 } else { wd1 }).min(32767);
    let mut wd3 = (wd2 >> 7) + if band.sg[0] == band.sg[2] { 128 } else { -128 };
    wd3 += (band.a[2] * 32512) >> 15;
    band.ap[2] = wd3.clamp(-12288, 12288);

    // UPPOL1
    band.sg[0] = band.p[0] >> 15;
    band.sg[1] = band.p[1] >> 15;
    let wd1 = if band.sg[0] == band.sg[1] { 192 } else { -192 };
    let wd2 = (band.a[1] * 32640) >> 15;
    band.ap[1] = saturate(wd1 + wd2);
    let wd3 = saturate(15360 - band.ap[2]);
    band.ap[1] = band.ap[1].clamp(-wd3, wd3);

    // UPZERO
    let wd1 = if d == 0 { 0 } else { 128 };
    band.sg[0] = d >> 15;
    for i in 1..7 {
        band.sg[i] = band.d[i] >> 15;
        let wd2 = if band.sg[i] == band.sg[0] { wd1 } else { -wd1 };
        let wd3 = (band.b[i] * 32640) >> 15;
        band.bp[i] = saturate(wd2 + wd3);
    }

    // DELAYA
    for i in (1..7).rev() {
        band.d[i] = band.d[i - 1];
        band.b[i] = band.bp[i];
    }
    for i in (1..3).rev() {
        band.r[i] = band.r[i - 1];
        band.p[i] = band.p[i - 1];
        band.a[i] = band.ap[i];
    }

    // FILTEP
    let wd1 = (band.a[1] * saturate(band.r[1] + band.r[1])) >> 15;
    let wd2 = (band.a[2] * saturate(band.r[2] + band.r[2])) >> 15;
    band.sp = saturate(wd1 + wd2);

    // FILTEZ
    let mut sz = 0;
    for i in (1..7).rev() {
        sz += (band.b[i] * saturate(band.d[i] + band.d[i])) >> 15;
    }
    band.sz = saturate(sz);

    // PREDIC
    band.s = saturate(band.sp + band.sz);
}

static WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];
static RL42: [i32; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];
static ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
    2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];
static WH: [i32; 3] = [0, -214, 798];
static RH2: [i32; 4] = [2, 1, 2, 1];
static QM2: [i32; 4] = [-7408, -1616, 7408, 1616];
static QM4: [i32; 16] = [
    0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584,
    1200, 0,
];
static QM6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232,
    -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776,
    -2400, -2032, -1688, -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280,
    11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776,
    2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
];
static QMF_COEFFS: [i32; 12] = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];

/// Decoder state of one stream (~400 bytes).
#[derive(Clone, Debug)]
pub struct G722 {
    band: [Band; 2],
    x: [i32; 24],
}

impl Default for G722 {
    fn default() -> Self {
        let mut band = [Band::default(); 2];
        // G.722 / spandsp g722_decode_init: the step sizes start at their minimum.
        band[0].det = 32;
        band[1].det = 8;
        G722 { band, x: [0; 24] }
    }
}

impl G722 {
    /// Decodes one payload at 64 kbit/s (one byte = one low-band and one high-band code,
    /// two 16 kHz samples) into `out`; returns the samples written.
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> usize {
        let mut n = 0;
        for (&byte, pair) in payload.iter().zip(out.chunks_exact_mut(2)) {
            let code = i32::from(byte);
            let ilow = code & 0x3F;
            let ihigh = (code >> 6) & 0x3;

            // Low band: INVQBL, RECONS, LIMIT.
            let wd2 = (self.band[0].det * QM6[ilow as usize]) >> 15;
            let rlow = (self.band[0].s + wd2).clamp(-16384, 16383);
            // INVQAL
            let wd1 = ilow >> 2;
            let dlowt = (self.band[0].det * QM4[wd1 as usize]) >> 15;
            // LOGSCL
            let nb = ((self.band[0].nb * 127) >> 7) + WL[RL42[wd1 as usize] as usize];
            self.band[0].nb = nb.clamp(0, 18432);
            // SCALEL
            let i = (self.band[0].nb >> 6) & 31;
            let shift = 8 - (self.band[0].nb >> 11);
            let wd3 = if shift < 0 {
                ILB[i as usize] << -shift
            } else {
                ILB[i as usize] >> shift
            };
            self.band[0].det = wd3 << 2;
            block4(&mut self.band[0], dlowt);

            // High band: INVQAH, RECONS, LIMIT.
            let dhigh = (self.band[1].det * QM2[ihigh as usize]) >> 15;
            let rhigh = (dhigh + self.band[1].s).clamp(-16384, 16383);
            // LOGSCH
            let nb = ((self.band[1].nb * 127) >> 7) + WH[RH2[ihigh as usize] as usize];
            self.band[1].nb = nb.clamp(0, 22528);
            // SCALEH
            let i = (self.band[1].nb >> 6) & 31;
            let shift = 10 - (self.band[1].nb >> 11);
            let wd3 = if shift < 0 {
                ILB[i as usize] << -shift
            } else {
                ILB[i as usize] >> shift
            };
            self.band[1].det = wd3 << 2;
            block4(&mut self.band[1], dhigh);

            // Receive QMF.
            self.x.copy_within(2.., 0);
            self.x[22] = rlow + rhigh;
            self.x[23] = rlow - rhigh;
            let (mut xout1, mut xout2) = (0i32, 0i32);
            for i in 0..12 {
                xout2 += self.x[2 * i] * QMF_COEFFS[i];
                xout1 += self.x[2 * i + 1] * QMF_COEFFS[11 - i];
            }
            pair[0] = saturate(xout1 >> 11) as i16;
            pair[1] = saturate(xout2 >> 11) as i16;
            n += 2;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_bytes_decode_without_overflow() {
        // Debug builds panic on i32 overflow: walk every code from many states.
        let mut d = G722::default();
        let mut out = [0i16; 512];
        let mut x = 0x1234_5678u32;
        for _ in 0..2000 {
            let payload: Vec<u8> = (0..256)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            assert_eq!(d.decode(&payload, &mut out), 512);
        }
        let all: Vec<u8> = (0..=255).collect();
        for _ in 0..100 {
            d.decode(&all, &mut out);
            d.decode(&[0xFF; 256], &mut out);
            d.decode(&[0x00; 256], &mut out);
        }
    }
}
