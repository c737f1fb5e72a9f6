//! Frames -> `Decoder`: the whole input as one frame of every link type, then the input
//! as a sequence of frames (see `crate::frame_records`) through a decoder with
//! small limits, so fragment reassembly, TCP streams, eviction and timeouts all run.

use std::time::Duration;

use super::super::{for_each_frame, touch, EPOCH, LINKS};
use calltap::capture::{Frame, LinkType};
use calltap::net::defrag::DefragLimits;
use calltap::net::tcp::TcpLimits;
use calltap::net::{Datagram, Decoder, DecoderOptions};

fn check(d: &Datagram<'_>) {
    std::hint::black_box(touch(d.payload));
    assert!(
        d.payload.len() <= 256 * 1024,
        "datagram larger than any buffer"
    );
}

/// One input through the target.
pub fn run(data: &[u8]) {
    let mut decoder = Decoder::new(&DecoderOptions::default());
    for link in LINKS.iter().map(|&n| LinkType::from_linktype(n)) {
        let frame = Frame {
            time: EPOCH,
            link,
            data,
            orig_len: data.len() as u32,
        };
        decoder.decode(&frame, &mut check);
    }
    decoder.finish(&mut check);

    let options = DecoderOptions {
        sip_ports: vec![5060],
        defrag: DefragLimits {
            max_pending: 4,
            max_bytes: 8192,
            timeout: Duration::from_secs(30),
        },
        tcp: TcpLimits {
            max_streams: 4,
            buffer_bytes: 4096,
            total_bytes: 8192,
            ..TcpLimits::default()
        },
    };
    let mut decoder = Decoder::new(&options);
    let mut frames = 0u64;
    for_each_frame(data, |frame| {
        frames += 1;
        decoder.decode(frame, &mut check);
    });
    decoder.finish(&mut check);
    assert_eq!(decoder.counters().frames, frames);
}
