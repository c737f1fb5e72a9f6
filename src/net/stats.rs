//! Counters of the packet layer: what `replay --stats` prints and `/metrics` serves.
//!
//! Per-packet events are counted, never logged. Counting must stay cheap on the hot
//! path, so reasons are enum-indexed arrays, not maps keyed by strings.

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::base::LinkType;

/// Why a frame, or part of one, could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Undecodable {
    /// A link type calltap has no decoder for.
    UnsupportedLinkType,
    /// The frame ends inside its link-layer header.
    TruncatedLinkHeader,
    /// An IP header that is cut short or malformed.
    BadIpHeader,
    /// A UDP header shorter than 8 bytes or a length field below 8.
    BadUdpHeader,
    /// A TCP header that is cut short or has a bad data offset.
    BadTcpHeader,
    /// GRE with flags or a protocol calltap does not decode.
    UnsupportedGre,
    /// An ERSPAN header that is cut short or of an unknown version.
    BadErspan,
    /// Tunnels inside tunnels past the nesting limit.
    TunnelTooDeep,
    /// A PPPoE session frame that is cut short or carries neither IPv4 nor IPv6.
    BadPppoe,
    /// A reassembled IP packet whose transport header is malformed.
    BadReassembled,
}

impl Undecodable {
    pub const ALL: [Undecodable; 10] = [
        Undecodable::UnsupportedLinkType,
        Undecodable::TruncatedLinkHeader,
        Undecodable::BadIpHeader,
        Undecodable::BadUdpHeader,
        Undecodable::BadTcpHeader,
        Undecodable::UnsupportedGre,
        Undecodable::BadErspan,
        Undecodable::TunnelTooDeep,
        Undecodable::BadPppoe,
        Undecodable::BadReassembled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Undecodable::UnsupportedLinkType => "unsupported_link_type",
            Undecodable::TruncatedLinkHeader => "truncated_link_header",
            Undecodable::BadIpHeader => "bad_ip_header",
            Undecodable::BadUdpHeader => "bad_udp_header",
            Undecodable::BadTcpHeader => "bad_tcp_header",
            Undecodable::UnsupportedGre => "unsupported_gre",
            Undecodable::BadErspan => "bad_erspan",
            Undecodable::TunnelTooDeep => "tunnel_too_deep",
            Undecodable::BadPppoe => "bad_pppoe",
            Undecodable::BadReassembled => "bad_reassembled",
        }
    }
}

/// Frames that decode fine but carry nothing calltap reads (ARP, ICMP, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// An Ethernet/SLL frame that is not IP (ARP, LLDP, STP, ...).
    NonIp,
    /// ICMP and ICMPv6, including errors that quote a UDP header: never a datagram.
    Icmp,
    /// Any other IP protocol (IGMP, ESP, OSPF, SCTP, ...).
    OtherIpProtocol,
}

impl Ignored {
    pub const ALL: [Ignored; 3] = [Ignored::NonIp, Ignored::Icmp, Ignored::OtherIpProtocol];

    pub fn name(self) -> &'static str {
        match self {
            Ignored::NonIp => "non_ip",
            Ignored::Icmp => "icmp",
            Ignored::OtherIpProtocol => "other_ip_protocol",
        }
    }
}

/// An enum whose values index a [`Tally`].
pub trait Reason: Copy + 'static {
    const COUNT: usize;
    fn index(self) -> usize;
    fn all() -> &'static [Self];
    fn label(self) -> &'static str;
}

impl Reason for Undecodable {
    const COUNT: usize = Undecodable::ALL.len();
    fn index(self) -> usize {
        self as usize
    }
    fn all() -> &'static [Self] {
        &Undecodable::ALL
    }
    fn label(self) -> &'static str {
        self.name()
    }
}

impl Reason for Ignored {
    const COUNT: usize = Ignored::ALL.len();
    fn index(self) -> usize {
        self as usize
    }
    fn all() -> &'static [Self] {
        &Ignored::ALL
    }
    fn label(self) -> &'static str {
        self.name()
    }
}

/// Counts keyed by a [`Reason`] enum.
#[derive(Clone, Debug)]
pub struct Tally<R: Reason> {
    counts: Vec<u64>,
    _reason: std::marker::PhantomData<R>,
}

impl<R: Reason> Default for Tally<R> {
    fn default() -> Self {
        Tally {
            counts: vec![0; R::COUNT],
            _reason: std::marker::PhantomData,
        }
    }
}

impl<R: Reason> Tally<R> {
    #[inline]
    pub fn add(&mut self, reason: R) {
        if let Some(slot) = self.counts.get_mut(reason.index()) {
            *slot += 1;
        }
    }

    pub fn get(&self, reason: R) -> u64 {
        self.counts.get(reason.index()).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The non-zero counts, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        R::all()
            .iter()
            .map(|r| (r.label(), self.get(*r)))
            .filter(|(_, n)| *n > 0)
    }
}

impl<R: Reason> Serialize for Tally<R> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (name, n) in self.iter() {
            map.serialize_entry(name, &n)?;
        }
        map.end()
    }
}

/// Frames per link type. A capture has one or two link types, so a short list
/// searched linearly beats a map.
#[derive(Clone, Debug, Default)]
pub struct LinkTypeCounts {
    counts: Vec<(LinkType, u64)>,
}

impl LinkTypeCounts {
    #[inline]
    pub fn add(&mut self, link: LinkType) {
        match self.counts.iter_mut().find(|(l, _)| *l == link) {
            Some((_, n)) => *n += 1,
            None => self.counts.push((link, 1)),
        }
    }

    pub fn get(&self, link: LinkType) -> u64 {
        self.counts
            .iter()
            .find(|(l, _)| *l == link)
            .map_or(0, |(_, n)| *n)
    }
}

impl Serialize for LinkTypeCounts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut sorted: Vec<(String, u64)> =
            self.counts.iter().map(|(l, n)| (l.name(), *n)).collect();
        sorted.sort();
        let mut map = serializer.serialize_map(Some(sorted.len()))?;
        for (name, n) in sorted {
            map.serialize_entry(&name, &n)?;
        }
        map.end()
    }
}

/// What the packet layer saw. Keys are the contract of `replay --stats`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Counters {
    pub frames: u64,
    pub bytes: u64,
    pub link_types: LinkTypeCounts,
    /// IPv4 headers decoded, tunnelled ones included (an IP-in-IP frame counts two).
    pub ipv4_packets: u64,
    pub ipv6_packets: u64,
    pub fragments: u64,
    pub fragments_reassembled: u64,
    pub fragments_dropped: u64,
    pub tunnelled_packets: u64,
    pub udp_datagrams: u64,
    /// UDP datagrams shorter than their length field, passed on with what was captured.
    pub udp_truncated: u64,
    pub tcp_segments: u64,
    pub tcp_sip_messages: u64,
    /// Frames whose snap length cut them short of their length on the wire.
    pub snaplen_cut: u64,
    pub ignored: Tally<Ignored>,
    pub undecodable: Tally<Undecodable>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_serialise_only_what_happened() {
        let mut t = Tally::<Undecodable>::default();
        t.add(Undecodable::BadUdpHeader);
        t.add(Undecodable::BadUdpHeader);
        t.add(Undecodable::BadTcpHeader);
        let json = serde_json::to_string(&t).unwrap_or_default();
        assert_eq!(json, r#"{"bad_udp_header":2,"bad_tcp_header":1}"#);
        assert_eq!(t.total(), 3);
    }

    #[test]
    fn every_reason_has_its_own_slot() {
        for (i, r) in Undecodable::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, r) in Ignored::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
