//! Test audio: a signal that takes speech decoders through every adaptation they have,
//! s16le reading, signal-to-difference, and whether a reference tool is installed.
#![allow(dead_code)] // each test binary uses a part of it

use std::process::Command;

pub const RATE: usize = 8000;
/// Where the signal's loud passage starts (the only one that overshoots 16 bits).
pub const LOUD_FROM: usize = 5 * RATE;

/// Six seconds that take the decoder through every adaptation it has.
pub fn signal() -> Vec<i16> {
    let mut out = Vec::with_capacity(6 * RATE);
    let mut phase = 0.0f64;
    let mut lcg: u32 = 0x1234_5678;
    for n in 0..6 * RATE {
        let t = n as f64 / RATE as f64;
        let tau = std::f64::consts::TAU;
        let x = if t < 1.0 {
            // Chirp 100 Hz -> 3.8 kHz.
            phase += tau * (100.0 + 3700.0 * t) / RATE as f64;
            8000.0 * phase.sin()
        } else if t < 2.0 {
            // Voiced-speech-like: harmonics of 140 Hz under a 4 Hz syllable envelope.
            let env = (0.5 - 0.5 * (tau * 4.0 * t).cos()) * 12_000.0;
            let v: f64 = (1..=12)
                .map(|k| (tau * 140.0 * k as f64 * t).sin() / k as f64)
                .sum();
            env * v / 2.0
        } else if t < 2.5 {
            0.0
        } else if t < 3.5 {
            lcg = lcg.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            f64::from((lcg >> 16) as i16) / 32768.0 * 3000.0
        } else if t < 5.0 {
            // FSK-like: 1200 / 2200 Hz switching every 150 ms (a modem, for TD and TR).
            let f = if ((t - 3.5) / 0.15) as u32 % 2 == 0 {
                1200.0
            } else {
                2200.0
            };
            phase += tau * f / RATE as f64;
            10_000.0 * phase.sin()
        } else {
            // Loud: a 300 Hz sine near full scale, clipped.
            (40_000.0 * (tau * 300.0 * t).sin()).clamp(-30_000.0, 30_000.0)
        };
        out.push(x.round().clamp(-32768.0, 32767.0) as i16);
    }
    out
}

pub fn have(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Reads s16le samples.
pub fn samples(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Signal to difference, in dB.
pub fn snr(reference: &[i16], got: &[i16]) -> f64 {
    let (mut sig, mut err) = (0f64, 0f64);
    for (&r, &g) in reference.iter().zip(got) {
        sig += f64::from(r).powi(2);
        err += (f64::from(r) - f64::from(g)).powi(2);
    }
    if err == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (sig / err).log10()
    }
}
