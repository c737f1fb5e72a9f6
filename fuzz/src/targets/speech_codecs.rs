//! Bytes -> the G.729, GSM and Opus decoders: the entry points every such RTP payload
//! reaches. The first byte picks the codec (and Opus's output rate), the rest is cut
//! into payloads by length bytes and decoded by one decoder, so its state runs through
//! whatever the fuzzer builds; an odd length byte decodes into a buffer too short.

use calltap::media::g729::{self, G729};
use calltap::media::gsm::{self, Gsm};
use calltap::media::opus::{self, Opus};

/// One input through the target.
pub fn run(data: &[u8]) {
    let Some((&head, mut rest)) = data.split_first() else {
        return;
    };
    let mut out = [0i16; 5760];
    let rate = [8_000, 16_000, 48_000][usize::from(head >> 2) % 3];
    let mut g729 = G729::default();
    let mut gsm = Gsm::new().expect("libgsm state");
    let mut opus = Opus::new(rate).expect("an Opus rate");
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        let short = len % 2 == 1;
        match head % 3 {
            0 => {
                let (want, _) = g729::samples(len);
                let room = if short {
                    want.saturating_sub(3)
                } else {
                    out.len()
                };
                let n = g729.decode(payload, &mut out[..room]);
                assert!(n <= want.min(room), "G.729 wrote {n} of {want}");
            }
            1 => {
                let (want, _) = gsm::samples(len);
                let room = if short {
                    want.saturating_sub(3)
                } else {
                    out.len()
                };
                let (n, bad) = gsm.decode(payload, &mut out[..room]);
                assert!(n <= want.min(room) && bad as usize * 160 <= n);
            }
            _ => {
                let want = opus::samples(payload, rate).unwrap_or(0);
                let room = if short {
                    want.saturating_sub(3)
                } else {
                    out.len()
                };
                let (n, _) = opus.decode(payload, &mut out[..room]);
                assert!(n == 0 || n == want, "Opus wrote {n} of {want}");
            }
        }
        std::hint::black_box(&out);
    }
}
