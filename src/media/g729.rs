//! G.729 / G.729A with Annex B, through `g729-sys` (pure Rust, MIT): RFC 3551 4.5.6
//! payloads, zero or more 10-octet frames followed by at most one 2-octet SID frame.
//!
//! G.729A streams decode with the G.729 decoder (Annex A changed the encoder's and the
//! decoder's complexity, not the bitstream). A SID frame makes Annex B comfort noise for
//! its 10 ms; the silence between two talkspurts (no packets) stays silent, like loss.

/// Samples (8 kHz) of one frame, voice or SID.
const FRAME_SAMPLES: usize = 80;
const VOICE_BYTES: usize = 10;
const SID_BYTES: usize = 2;

/// The samples a payload decodes to, and whether it ends in a piece that is neither a
/// whole voice frame nor a SID frame (truncated: left out, silent).
pub fn samples(len: usize) -> (usize, bool) {
    let voice = len / VOICE_BYTES;
    match len % VOICE_BYTES {
        0 => (voice * FRAME_SAMPLES, false),
        SID_BYTES => ((voice + 1) * FRAME_SAMPLES, false),
        _ => (voice * FRAME_SAMPLES, true),
    }
}

/// One direction's decoder state.
pub struct G729 {
    decoder: g729_sys::Decoder,
}

impl Default for G729 {
    fn default() -> Self {
        G729 {
            decoder: g729_sys::Decoder::new(),
        }
    }
}

impl G729 {
    /// Decodes a payload into `out` (at least `samples(payload.len()).0` long); answers
    /// the samples written.
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> usize {
        let mut n = 0;
        let mut frames = payload.chunks_exact(VOICE_BYTES);
        for frame in frames.by_ref() {
            let Some(dst) = out.get_mut(n..n + FRAME_SAMPLES) else {
                return n;
            };
            dst.copy_from_slice(&self.decoder.decode(frame, false, false, false));
            n += FRAME_SAMPLES;
        }
        let rest = frames.remainder();
        if rest.len() == SID_BYTES {
            if let Some(dst) = out.get_mut(n..n + FRAME_SAMPLES) {
                dst.copy_from_slice(&self.decoder.decode(rest, false, true, false));
                n += FRAME_SAMPLES;
            }
        }
        n
    }
}

impl std::fmt::Debug for G729 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("G729")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_sizes() {
        assert_eq!(samples(20), (160, false));
        assert_eq!(samples(22), (240, false));
        assert_eq!(samples(2), (80, false));
        assert_eq!(samples(15), (80, true));
        assert_eq!(samples(0), (0, false));
    }

    #[test]
    fn garbage_decodes_without_panic() {
        let mut d = G729::default();
        let mut out = [0i16; 960];
        for len in 0..=120usize {
            let payload: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            let n = d.decode(&payload, &mut out);
            assert_eq!(n, samples(len).0.min(960));
        }
    }
}
