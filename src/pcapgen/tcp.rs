//! A TCP connection that hands out segments with consistent sequence and ack numbers, so
//! a test can shape a byte stream (split, coalesce, retransmit, reorder, wrap) without
//! doing sequence arithmetic itself.

use std::net::SocketAddr;
use std::time::Duration;

use crate::capture::Timestamp;

use super::wire::{self, tcp_flags::*, IpOpts, Packet};

/// Which end of the connection sends a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The end that sent the SYN.
    Client,
    /// The end that answered it.
    Server,
}

impl Side {
    pub fn peer(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// MSS 1460, the option every stack puts on its SYN.
const SYN_OPTIONS: [u8; 4] = [2, 4, 0x05, 0xB4];
/// Receive window announced on every segment (no window scaling).
const WINDOW: u16 = 64240;

/// One TCP connection between `client` and `server`.
///
/// Every method that sends data advances the sender's sequence number, and every segment
/// acknowledges all that the peer has sent so far, as a peer that received everything in
/// order would. To reorder or retransmit, collect the returned packets and emit them in
/// another order or again with [`Packet::at`]: the bytes stay those of the original.
#[derive(Clone, Debug)]
pub struct TcpConn {
    client: SocketAddr,
    server: SocketAddr,
    client_isn: u32,
    server_isn: u32,
    /// Next sequence number each side will send.
    client_next: u32,
    server_next: u32,
    opts: IpOpts,
}

impl TcpConn {
    /// A connection with arbitrary but fixed initial sequence numbers.
    pub fn new(client: SocketAddr, server: SocketAddr) -> Self {
        Self::with_isn(client, server, 0x1A2B_3C4D, 0x7E57_0001)
    }

    /// Initial sequence numbers of each side; pick one near `u32::MAX` to force a wrap.
    pub fn with_isn(
        client: SocketAddr,
        server: SocketAddr,
        client_isn: u32,
        server_isn: u32,
    ) -> Self {
        TcpConn {
            client,
            server,
            client_isn,
            server_isn,
            client_next: client_isn,
            server_next: server_isn,
            opts: IpOpts::dscp(24),
        }
    }

    pub fn client(&self) -> SocketAddr {
        self.client
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The sequence number `side` will put on its next segment.
    pub fn next_seq(&self, side: Side) -> u32 {
        match side {
            Side::Client => self.client_next,
            Side::Server => self.server_next,
        }
    }

    /// The initial sequence number of `side` (the SYN's sequence number).
    pub fn isn(&self, side: Side) -> u32 {
        match side {
            Side::Client => self.client_isn,
            Side::Server => self.server_isn,
        }
    }

    fn addrs(&self, side: Side) -> (SocketAddr, SocketAddr) {
        match side {
            Side::Client => (self.client, self.server),
            Side::Server => (self.server, self.client),
        }
    }

    fn advance(&mut self, side: Side, n: u32) {
        match side {
            Side::Client => self.client_next = self.client_next.wrapping_add(n),
            Side::Server => self.server_next = self.server_next.wrapping_add(n),
        }
    }

    /// A segment with explicit fields, advancing nothing: for hand-made oddities.
    pub fn raw_segment(
        &self,
        side: Side,
        time: Timestamp,
        seq: u32,
        ack: u32,
        flags: u8,
        payload: &[u8],
    ) -> Packet {
        let (src, dst) = self.addrs(side);
        let options: &[u8] = if flags & SYN != 0 { &SYN_OPTIONS } else { &[] };
        let seg = wire::tcp_segment(src, dst, seq, ack, flags, WINDOW, options, payload);
        Packet::new(
            time,
            wire::ip(src.ip(), dst.ip(), wire::PROTO_TCP, &seg, &self.opts),
        )
    }

    fn send(
        &mut self,
        side: Side,
        time: Timestamp,
        flags: u8,
        payload: &[u8],
        consumes: u32,
    ) -> Packet {
        let seq = self.next_seq(side);
        let ack = if flags & ACK != 0 {
            self.next_seq(side.peer())
        } else {
            0
        };
        let p = self.raw_segment(side, time, seq, ack, flags, payload);
        self.advance(side, payload.len() as u32 + consumes);
        p
    }

    pub fn syn(&mut self, time: Timestamp) -> Packet {
        self.send(Side::Client, time, SYN, &[], 1)
    }

    pub fn syn_ack(&mut self, time: Timestamp) -> Packet {
        self.send(Side::Server, time, SYN | ACK, &[], 1)
    }

    /// SYN at `time`, SYN-ACK one `rtt` later, ACK another `rtt` later.
    pub fn handshake(&mut self, time: Timestamp, rtt: Duration) -> Vec<Packet> {
        let syn = self.syn(time);
        let syn_ack = self.syn_ack(time.saturating_add(rtt));
        let ack = self.ack(Side::Client, time.saturating_add(rtt * 2));
        vec![syn, syn_ack, ack]
    }

    /// A pure ACK from `side`.
    pub fn ack(&mut self, side: Side, time: Timestamp) -> Packet {
        self.send(side, time, ACK, &[], 0)
    }

    /// One data segment (PSH, ACK) carrying `payload`.
    pub fn data(&mut self, side: Side, time: Timestamp, payload: &[u8]) -> Packet {
        self.send(side, time, PSH | ACK, payload, 0)
    }

    /// `payload` cut at the byte offsets `cuts` (ascending, inside the payload), one
    /// segment per piece, `gap` apart starting at `time`. Only the last piece has PSH.
    pub fn data_split(
        &mut self,
        side: Side,
        time: Timestamp,
        payload: &[u8],
        cuts: &[usize],
        gap: Duration,
    ) -> Vec<Packet> {
        let mut bounds = vec![0];
        bounds.extend(cuts.iter().copied().filter(|&c| c > 0 && c < payload.len()));
        bounds.push(payload.len());
        assert!(
            bounds.windows(2).all(|w| w[0] < w[1]),
            "cuts must ascend: {cuts:?}"
        );
        let pieces = bounds.len() - 1;
        (0..pieces)
            .map(|i| {
                let t = time.saturating_add(gap * i as u32);
                let flags = if i + 1 == pieces { PSH | ACK } else { ACK };
                self.send(side, t, flags, &payload[bounds[i]..bounds[i + 1]], 0)
            })
            .collect()
    }

    /// FIN, ACK from `side` (consumes one sequence number).
    pub fn fin(&mut self, side: Side, time: Timestamp) -> Packet {
        self.send(side, time, FIN | ACK, &[], 1)
    }

    /// RST, ACK from `side`.
    pub fn rst(&mut self, side: Side, time: Timestamp) -> Packet {
        self.send(side, time, RST | ACK, &[], 0)
    }
}
