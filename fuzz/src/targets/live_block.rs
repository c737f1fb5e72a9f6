//! Bytes as a retired TPACKET_V3 ring block -> the live capture's walk, loopback rule and
//! pre-filter -> `Decoder`: every offset in a block is the kernel's word, and none is
//! trusted. The first byte picks a raw or a cooked (SLL) socket.

use super::super::touch;
use calltap::capture::live::walk_block_untrusted;
use calltap::net::filter::PreFilter;
use calltap::net::{Decoder, DecoderOptions};

/// One input through the target.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut block = rest.to_vec();
    let filter = PreFilter::new(&[5060, 5061], 1024..=65535);
    let mut decoder = Decoder::new(&DecoderOptions::default());
    walk_block_untrusted(&mut block, mode & 1 == 1, &filter, &mut |frame| {
        assert!(
            frame.data.len() <= rest.len(),
            "a frame larger than its block"
        );
        decoder.decode(frame, &mut |d| {
            std::hint::black_box(touch(d.payload));
        });
    });
}
