//! From frames to datagrams: link layers, IPv4/IPv6, fragments, tunnels, UDP, and TCP
//! streams framed into SIP messages.

pub mod tcp;

use std::net::SocketAddr;

use crate::capture::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    /// One SIP message cut out of a reassembled TCP stream.
    Tcp,
}

/// A UDP payload, or one SIP message from a TCP stream, with its capture time and
/// endpoints. The payload borrows the frame when it can (the UDP fast path) or the
/// decoder's reassembly buffer (IP fragments, TCP streams).
#[derive(Clone, Copy, Debug)]
pub struct Datagram<'a> {
    pub time: Timestamp,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: Transport,
    pub payload: &'a [u8],
}
