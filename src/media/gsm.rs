//! GSM 06.10 full rate through the reference libgsm (`gsm-sys`, built from its bundled
//! source): RFC 3551 4.5.8 payloads of 33-octet frames, 160 samples (20 ms) each.

/// Octets of one frame (a 4-bit signature 0xD, then 260 bits).
pub const FRAME_BYTES: usize = 33;
const FRAME_SAMPLES: usize = 160;

/// The samples a payload decodes to, and whether it ends inside a frame.
pub fn samples(len: usize) -> (usize, bool) {
    (len / FRAME_BYTES * FRAME_SAMPLES, len % FRAME_BYTES != 0)
}

/// One direction's libgsm state.
pub struct Gsm {
    state: gsm_sys::Gsm,
}

// SAFETY: the state is plain memory libgsm allocated for this handle alone (no globals,
// no thread-locals); it is used by one thread at a time through `&mut self`.
unsafe impl Send for Gsm {}

impl Gsm {
    /// `None` when libgsm cannot allocate its state.
    pub fn new() -> Option<Gsm> {
        // SAFETY: gsm_create takes no input and answers an owned handle or null.
        let state = unsafe { gsm_sys::gsm_create() };
        (!state.is_null()).then_some(Gsm { state })
    }

    /// Decodes whole frames of `payload` into `out`; a frame without the GSM signature
    /// (not GSM, or damaged) is silence. Answers (samples written, bad frames).
    pub fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> (usize, u64) {
        let mut n = 0;
        let mut bad = 0;
        for frame in payload.chunks_exact(FRAME_BYTES) {
            let Some(dst) = out.get_mut(n..n + FRAME_SAMPLES) else {
                break;
            };
            let mut input = [0u8; FRAME_BYTES];
            input.copy_from_slice(frame);
            // SAFETY: `state` is a live handle; libgsm reads exactly 33 octets and
            // writes exactly 160 samples, and both buffers have that size.
            let status =
                unsafe { gsm_sys::gsm_decode(self.state, input.as_mut_ptr(), dst.as_mut_ptr()) };
            if status != 0 {
                dst.fill(0);
                bad += 1;
            }
            n += FRAME_SAMPLES;
        }
        (n, bad)
    }
}

impl Drop for Gsm {
    fn drop(&mut self) {
        // SAFETY: the handle came from gsm_create and is destroyed once.
        unsafe { gsm_sys::gsm_destroy(self.state) }
    }
}

impl std::fmt::Debug for Gsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gsm")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_without_the_signature_are_silent_and_counted() {
        let mut d = Gsm::new().expect("libgsm state");
        let mut out = [1i16; 320];
        let (n, bad) = d.decode(&[0u8; 66], &mut out);
        assert_eq!((n, bad), (320, 2));
        assert!(out.iter().all(|&s| s == 0));
    }

    #[test]
    fn garbage_decodes_without_panic() {
        let mut d = Gsm::new().expect("libgsm state");
        let mut out = [0i16; 960];
        for seed in 0..64u8 {
            let payload: Vec<u8> = (0..99u8)
                .map(|i| 0xD0 | (i ^ seed).wrapping_mul(29) >> 4)
                .collect();
            let (n, _) = d.decode(&payload, &mut out);
            assert_eq!(n, 480);
        }
    }
}
