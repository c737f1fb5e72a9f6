//! Opus (RFC 6716) in RTP (RFC 7587), through `opus-rs` (a pure-Rust port of libopus):
//! decoded to mono at the recording's rate, which the decoder resamples to itself (an
//! Opus decoder renders any of 8, 12, 16, 24 or 48 kHz), so no resampler of ours
//! touches it. A stereo stream is mixed down (the recording's channels are the two
//! parties). RTP timestamps run at 48 kHz whatever the audio's bandwidth.

/// Longest packet Opus allows: 120 ms at 48 kHz.
const MAX_PACKET_48K: usize = 5760;

/// Samples of a packet at `rate`, from its TOC byte (RFC 6716 3.1): frame duration from
/// the configuration, frame count from the code (and the frame-count byte of code 3).
/// `None` for what is not an Opus packet (empty, no count byte, a count of 0, over
/// 120 ms). The crate has no such query; this is the TOC arithmetic only.
pub fn samples(payload: &[u8], rate: u32) -> Option<usize> {
    let toc = *payload.first()?;
    let config = usize::from(toc >> 3);
    let frame_48k = match config {
        0..=11 => [480, 960, 1920, 2880][config % 4],
        12..=15 => [480, 960][config % 2],
        _ => [120, 240, 480, 960][config % 4],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => usize::from(*payload.get(1)? & 0x3F),
    };
    let total = frames * frame_48k;
    if total == 0 || total > MAX_PACKET_48K {
        return None;
    }
    Some(total * rate as usize / 48_000)
}

/// One direction's decoder, at the recording's rate.
pub struct Opus {
    decoder: opus_rs::OpusDecoder,
    rate: u32,
    pcm: Vec<f32>,
}

impl Opus {
    /// `rate` must be one Opus renders (8, 12, 16, 24 or 48 kHz).
    pub fn new(rate: u32) -> Option<Opus> {
        let decoder = opus_rs::OpusDecoder::new(i32::try_from(rate).ok()?, 1).ok()?;
        Some(Opus {
            decoder,
            rate,
            pcm: vec![0.0; MAX_PACKET_48K],
        })
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Decodes one packet into `out`, which must hold `samples(payload, rate)`. A packet
    /// the decoder refuses is silence. Answers (samples written, whether it was refused).
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> (usize, bool) {
        let Some(n) = samples(payload, self.rate).filter(|&n| n <= out.len()) else {
            return (0, true);
        };
        match self.decoder.decode(payload, n, &mut self.pcm[..n]) {
            Ok(got) => {
                let got = got.min(n);
                for (o, &x) in out.iter_mut().zip(&self.pcm[..got]) {
                    *o = (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
                }
                out[got..n].fill(0);
                (n, false)
            }
            Err(_) => {
                out[..n].fill(0);
                (n, true)
            }
        }
    }
}

impl std::fmt::Debug for Opus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Opus")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toc_durations() {
        // SILK WB 20 ms, one frame.
        assert_eq!(samples(&[9 << 3, 0], 16_000), Some(320));
        // CELT FB 20 ms, two frames (code 1).
        assert_eq!(samples(&[(31 << 3) | 1, 0], 48_000), Some(1920));
        // Code 3 with 6 frames of 20 ms: 120 ms.
        assert_eq!(samples(&[(31 << 3) | 3, 6], 8_000), Some(960));
        // 7 frames of 20 ms is over 120 ms; a count of 0; no count byte.
        assert_eq!(samples(&[(31 << 3) | 3, 7], 8_000), None);
        assert_eq!(samples(&[(31 << 3) | 3, 0], 8_000), None);
        assert_eq!(samples(&[(31 << 3) | 3], 8_000), None);
        assert_eq!(samples(&[], 8_000), None);
    }

    #[test]
    fn encoded_speech_round_trips() {
        let mut enc =
            opus_rs::OpusEncoder::new(16_000, 1, opus_rs::Application::Voip).expect("encoder");
        enc.bitrate_bps = 24_000;
        let mut dec = Opus::new(16_000).expect("decoder");
        let mut packet = [0u8; 400];
        let mut out = [0i16; 960];
        let mut energy = 0f64;
        for f in 0..50 {
            let pcm: Vec<i16> = (0..320)
                .map(|i| {
                    let t = (f * 320 + i) as f64 / 16_000.0;
                    (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
                })
                .collect();
            let len = enc.encode_i16(&pcm, 320, &mut packet).expect("encode");
            let (n, refused) = dec.decode(&packet[..len], &mut out);
            assert_eq!((n, refused), (320, false));
            if f > 10 {
                energy += out[..n].iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
            }
        }
        // A 440 Hz tone at amplitude 8000 has an RMS of about 5657.
        let rms = (energy / (39.0 * 320.0)).sqrt();
        assert!((4000.0..7000.0).contains(&rms), "rms {rms}");
    }

    #[test]
    fn g711_bytes_under_an_opus_payload_type_never_panic() {
        let mut dec = Opus::new(8_000).expect("decoder");
        let mut out = [0i16; 960];
        for seed in 0..=255u8 {
            let payload: Vec<u8> = (0..160u32)
                .map(|i| (i as u8).wrapping_mul(53).wrapping_add(seed) ^ 0x55)
                .collect();
            let (n, _) = dec.decode(&payload, &mut out);
            assert!(n <= 960);
        }
    }
}
