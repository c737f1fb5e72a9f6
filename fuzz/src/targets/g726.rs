//! Bytes -> the G.726 decoder: the entry point every G.726 RTP payload reaches. The first
//! byte picks the rate and packing (low bits: 2 to 5 bits a codeword; bit 2: AAL2), the
//! rest is cut into payloads by length bytes and decoded by one decoder, so its state
//! runs through whatever the fuzzer builds; each payload goes into a buffer that is
//! sometimes shorter than it needs.

use calltap::media::g726::{Mode, Packing, G726};

/// One input through the target.
pub fn run(data: &[u8]) {
    let Some((&head, mut rest)) = data.split_first() else {
        return;
    };
    let packing = if head & 4 == 0 {
        Packing::Rfc3551
    } else {
        Packing::Aal2
    };
    let mode = Mode::new(2 + (head & 3), packing).expect("2..=5 bits is G.726");
    let mut decoder = G726::new(mode);
    let mut out = [0i16; 1024];
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        // An odd length byte decodes into a buffer a few samples short.
        let room = if len % 2 == 1 {
            mode.samples(len).saturating_sub(3)
        } else {
            out.len()
        };
        let n = decoder.decode(payload, &mut out[..room]);
        assert_eq!(n, mode.samples(len).min(room), "samples written");
        std::hint::black_box(&out[..n]);
    }
}
