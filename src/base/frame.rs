//! Frames as capture hands them up, and the filter live capture applies first.

use super::Timestamp;

/// The link-layer header type of a frame (the pcap LINKTYPE_ values that calltap decodes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1), with 802.1Q/QinQ tags and PPPoE sessions inside.
    Ethernet,
    /// LINKTYPE_NULL (0): BSD loopback, a 4-byte address family in host byte order.
    Null,
    /// LINKTYPE_LOOP (108): OpenBSD loopback, the family in network byte order.
    Loop,
    /// LINKTYPE_RAW (101) and the historical DLT_RAW values (12, 14): bare IPv4/IPv6.
    RawIp,
    /// LINKTYPE_IPV4 (228).
    Ipv4,
    /// LINKTYPE_IPV6 (229).
    Ipv6,
    /// LINKTYPE_LINUX_SLL (113): Linux cooked capture v1 (`-i any`).
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276): Linux cooked capture v2.
    LinuxSll2,
    /// Anything else, by its LINKTYPE_ number: counted, not decoded.
    Other(u32),
}

impl LinkType {
    pub fn from_linktype(value: u32) -> LinkType {
        match value {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            12 | 14 | 101 => LinkType::RawIp,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            276 => LinkType::LinuxSll2,
            other => LinkType::Other(other),
        }
    }

    /// The name used in statistics (`replay --stats`, `/metrics`).
    pub fn name(self) -> String {
        match self {
            LinkType::Ethernet => "ethernet".into(),
            LinkType::Null => "null".into(),
            LinkType::Loop => "loop".into(),
            LinkType::RawIp => "raw".into(),
            LinkType::Ipv4 => "ipv4".into(),
            LinkType::Ipv6 => "ipv6".into(),
            LinkType::LinuxSll => "linux_sll".into(),
            LinkType::LinuxSll2 => "linux_sll2".into(),
            LinkType::Other(n) => format!("linktype_{n}"),
        }
    }
}

/// One captured frame, borrowed from the reader's buffer.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub time: Timestamp,
    pub link: LinkType,
    pub data: &'a [u8],
    /// Length on the wire; larger than `data.len()` when the snap length cut the frame.
    pub orig_len: u32,
}

/// Decides per frame, before anything else reads it, whether calltap wants it: live
/// capture drops the rest of a mirror port's traffic at the ring. The packet layer
/// provides the one it uses (`net::filter::PreFilter`).
pub trait FrameFilter: Send + Sync + std::fmt::Debug {
    fn wants(&self, link: LinkType, frame: &[u8]) -> bool;
}
