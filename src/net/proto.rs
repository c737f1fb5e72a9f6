//! Numbers the packet layer and the live pre-filter both read: IP protocol numbers,
//! GRE payload types, how deep tunnels are followed, and a set of ports. One place, so
//! the filter passes exactly what the decoder can decode.

pub(crate) const IPPROTO_HOPOPT: u8 = 0;
pub(crate) const IPPROTO_ICMP: u8 = 1;
pub(crate) const IPPROTO_IPIP: u8 = 4;
pub(crate) const IPPROTO_TCP: u8 = 6;
pub(crate) const IPPROTO_UDP: u8 = 17;
pub(crate) const IPPROTO_IPV6: u8 = 41;
pub(crate) const IPPROTO_ROUTING: u8 = 43;
pub(crate) const IPPROTO_FRAGMENT: u8 = 44;
pub(crate) const IPPROTO_GRE: u8 = 47;
pub(crate) const IPPROTO_AH: u8 = 51;
pub(crate) const IPPROTO_ICMPV6: u8 = 58;
pub(crate) const IPPROTO_DSTOPTS: u8 = 60;

pub(crate) const GRE_PROTO_TEB: u16 = 0x6558;
pub(crate) const GRE_PROTO_ERSPAN_2: u16 = 0x88BE;
pub(crate) const GRE_PROTO_ERSPAN_3: u16 = 0x22EB;

/// Tunnels a mirror port stacks (GRE, ERSPAN, IP-in-IP). Two is the most seen in
/// practice; past four it is a loop or garbage.
pub(crate) const MAX_TUNNEL_DEPTH: u8 = 4;

/// A set of ports, one bit each: membership is a shift and a mask (8 KiB a set).
pub(crate) struct PortSet(Box<[u64; 1024]>);

impl PortSet {
    pub(crate) fn new(ports: impl IntoIterator<Item = u16>) -> Self {
        let mut bits = Box::new([0u64; 1024]);
        for p in ports {
            bits[usize::from(p >> 6)] |= 1 << (p & 63);
        }
        PortSet(bits)
    }

    #[inline]
    pub(crate) fn contains(&self, port: u16) -> bool {
        self.0[usize::from(port >> 6)] & (1 << (port & 63)) != 0
    }
}
