//! TCP segments -> `TcpStreams` directly: two connections, both directions, sequence
//! numbers near the expected ones (see `crate::segment_records`), tight limits,
//! so reordering, retransmission, holes, FIN/RST, idle expiry and eviction are reached
//! without having to build IP packets first.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::super::{segment_records, touch};
use calltap::net::tcp::{TcpLimits, TcpSegment, TcpStreams};
use calltap::net::Datagram;

const BUFFER: usize = 2048;

fn check(d: &Datagram<'_>) {
    std::hint::black_box(touch(d.payload));
    assert!(
        d.payload.len() <= BUFFER,
        "message larger than the stream buffer"
    );
}

/// One input through the target.
pub fn run(data: &[u8]) {
    let mut streams = TcpStreams::new(TcpLimits {
        max_streams: 2,
        buffer_bytes: BUFFER,
        total_bytes: 3 * BUFFER,
        ..TcpLimits::default()
    });
    let ends = [
        (
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 21)), 40_000),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)), 5060),
        ),
        (
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 22)), 40_002),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)), 5060),
        ),
    ];
    // The next sequence number of each connection and direction, as the sender sees it.
    let mut next = [[1_000u32, 900_000u32]; 2];
    for r in segment_records(data) {
        let (a, b) = ends[usize::from(r.conn)];
        let (src, dst) = if r.reverse { (b, a) } else { (a, b) };
        let expected = &mut next[usize::from(r.conn)][usize::from(r.reverse)];
        let seq = expected.wrapping_add(r.seq_offset as i32 as u32);
        let seg = TcpSegment {
            seq,
            syn: r.syn,
            fin: r.fin,
            rst: r.rst,
            payload: r.payload,
        };
        streams.expire(r.time, &mut check);
        streams.segment(r.time, src, dst, r.sip_port, &seg, &mut check);
        let end = seq
            .wrapping_add(r.payload.len() as u32)
            .wrapping_add(u32::from(r.syn) + u32::from(r.fin));
        if end.wrapping_sub(*expected) as i32 > 0 {
            *expected = end;
        }
        assert!(streams.active_streams() <= 2, "stream cap exceeded");
        assert!(
            streams.buffered_bytes() <= 3 * BUFFER,
            "buffered {} over the total limit",
            streams.buffered_bytes()
        );
    }
    streams.finish(&mut check);
    assert_eq!(
        streams.buffered_bytes(),
        0,
        "bytes left buffered after finish"
    );
    std::hint::black_box(streams.stats());
}
