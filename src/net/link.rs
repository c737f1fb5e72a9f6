//! Link layers: from a frame to the IP packet inside it.
//!
//! By hand rather than through etherparse's sliced packets: these are a few fixed
//! offsets, etherparse has no SLL2, NULL or PPPoE, and a frame is walked once, without
//! building header structs calltap does not read.

use crate::base::LinkType;

use super::stats::{Ignored, Undecodable};

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86DD;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88A8;
/// Pre-standard QinQ outer tag, still sent by older switches.
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;

/// VLAN tags a frame may stack before its payload. QinQ uses two; more is garbage.
const MAX_VLAN_TAGS: usize = 4;

/// What a link layer carries.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkPayload<'a> {
    /// An IP packet (version from its first nibble).
    Ip(&'a [u8]),
    /// A frame that decoded fine but is not IP.
    Ignored(Ignored),
}

/// Strips the link-layer header of `data`, per `link`.
pub fn decode(link: LinkType, data: &[u8]) -> Result<LinkPayload<'_>, Undecodable> {
    match link {
        LinkType::Ethernet => ethernet(data),
        LinkType::RawIp | LinkType::Ipv4 | LinkType::Ipv6 => Ok(LinkPayload::Ip(data)),
        LinkType::Null | LinkType::Loop => bsd_loopback(link, data),
        LinkType::LinuxSll => {
            // packet type(2) ARPHRD(2) address length(2) address(8) protocol(2)
            let proto = be16(data, 14).ok_or(Undecodable::TruncatedLinkHeader)?;
            ethertype(proto, &data[16..])
        }
        LinkType::LinuxSll2 => {
            // protocol(2) reserved(2) ifindex(4) ARPHRD(2) packet type(1) addr len(1) addr(8)
            let proto = be16(data, 0).ok_or(Undecodable::TruncatedLinkHeader)?;
            if data.len() < 20 {
                return Err(Undecodable::TruncatedLinkHeader);
            }
            ethertype(proto, &data[20..])
        }
        LinkType::Other(_) => Err(Undecodable::UnsupportedLinkType),
    }
}

/// An Ethernet II frame (the payload of ERSPAN and GRE bridging too).
pub fn ethernet(data: &[u8]) -> Result<LinkPayload<'_>, Undecodable> {
    let proto = be16(data, 12).ok_or(Undecodable::TruncatedLinkHeader)?;
    ethertype(proto, &data[14..])
}

/// Walks VLAN tags and PPPoE sessions down to IP.
fn ethertype(mut proto: u16, mut data: &[u8]) -> Result<LinkPayload<'_>, Undecodable> {
    let mut tags = 0;
    loop {
        match proto {
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => return Ok(LinkPayload::Ip(data)),
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD => {
                tags += 1;
                if tags > MAX_VLAN_TAGS {
                    return Err(Undecodable::TruncatedLinkHeader);
                }
                // TCI(2) then the inner ethertype(2)
                proto = be16(data, 2).ok_or(Undecodable::TruncatedLinkHeader)?;
                data = &data[4..];
            }
            ETHERTYPE_PPPOE_SESSION => {
                // ver/type(1) code(1) session(2) length(2) then the PPP protocol(2)
                let ppp = be16(data, 6).ok_or(Undecodable::BadPppoe)?;
                let len = usize::from(be16(data, 4).ok_or(Undecodable::BadPppoe)?);
                let payload = &data[8..];
                // The PPPoE length covers the PPP protocol field; Ethernet may pad after.
                let payload = &payload[..len.saturating_sub(2).min(payload.len())];
                return match ppp {
                    PPP_IPV4 | PPP_IPV6 => Ok(LinkPayload::Ip(payload)),
                    _ => Ok(LinkPayload::Ignored(Ignored::NonIp)),
                };
            }
            _ => return Ok(LinkPayload::Ignored(Ignored::NonIp)),
        }
    }
}

/// BSD loopback: a 4-byte address family, in the capturing host's byte order for
/// NULL, in network order for LOOP. IPv6's value differs per BSD (24, 28, 30).
fn bsd_loopback(link: LinkType, data: &[u8]) -> Result<LinkPayload<'_>, Undecodable> {
    let head: [u8; 4] = data
        .get(..4)
        .and_then(|h| h.try_into().ok())
        .ok_or(Undecodable::TruncatedLinkHeader)?;
    let family = match link {
        LinkType::Loop => u32::from_be_bytes(head),
        // The writer's byte order is unknown: the family is small, so whichever
        // reading is small is the right one.
        _ => {
            let le = u32::from_le_bytes(head);
            if le <= 0xFFFF {
                le
            } else {
                u32::from_be_bytes(head)
            }
        }
    };
    match family {
        2 | 24 | 28 | 30 => Ok(LinkPayload::Ip(&data[4..])),
        _ => Ok(LinkPayload::Ignored(Ignored::NonIp)),
    }
}

#[inline]
pub fn be16(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

#[inline]
pub fn be32(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: &[u8] = &[0x45, 0, 0, 20];

    fn eth(ethertype_and_rest: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(ethertype_and_rest);
        f
    }

    #[test]
    fn ethernet_vlan_qinq_and_pppoe_reach_ip() {
        let plain = eth(&[0x08, 0x00, 0x45, 0, 0, 20]);
        assert_eq!(ethernet(&plain), Ok(LinkPayload::Ip(IP)));
        let vlan = eth(&[0x81, 0x00, 0x00, 0x0A, 0x08, 0x00, 0x45, 0, 0, 20]);
        assert_eq!(ethernet(&vlan), Ok(LinkPayload::Ip(IP)));
        let qinq = eth(&[
            0x88, 0xA8, 0x00, 0x64, 0x81, 0x00, 0x00, 0x0A, 0x08, 0x00, 0x45, 0, 0, 20,
        ]);
        assert_eq!(ethernet(&qinq), Ok(LinkPayload::Ip(IP)));
        // PPPoE length 6 = PPP protocol (2) + 4 IP bytes; two bytes of padding after.
        let pppoe = eth(&[
            0x88, 0x64, 0x11, 0x00, 0x00, 0x01, 0x00, 0x06, 0x00, 0x21, 0x45, 0, 0, 20, 0, 0,
        ]);
        assert_eq!(ethernet(&pppoe), Ok(LinkPayload::Ip(IP)));
    }

    #[test]
    fn non_ip_is_ignored_and_short_frames_are_undecodable() {
        let arp = eth(&[0x08, 0x06, 0, 1]);
        assert_eq!(ethernet(&arp), Ok(LinkPayload::Ignored(Ignored::NonIp)));
        assert_eq!(ethernet(&[0; 13]), Err(Undecodable::TruncatedLinkHeader));
        let cut_vlan = eth(&[0x81, 0x00, 0x00]);
        assert_eq!(ethernet(&cut_vlan), Err(Undecodable::TruncatedLinkHeader));
        let endless_tags: Vec<u8> = eth(&[0x81, 0x00, 0x00, 0x01].repeat(8));
        assert_eq!(
            ethernet(&endless_tags),
            Err(Undecodable::TruncatedLinkHeader)
        );
    }

    #[test]
    fn cooked_and_loopback_headers() {
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 20]);
        assert_eq!(decode(LinkType::LinuxSll, &sll), Ok(LinkPayload::Ip(IP)));
        let mut sll2 = vec![0x86, 0xDD];
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(IP);
        assert_eq!(decode(LinkType::LinuxSll2, &sll2), Ok(LinkPayload::Ip(IP)));
        let null_le = [2, 0, 0, 0, 0x45, 0, 0, 20];
        assert_eq!(decode(LinkType::Null, &null_le), Ok(LinkPayload::Ip(IP)));
        let null_be = [0, 0, 0, 30, 0x45, 0, 0, 20];
        assert_eq!(decode(LinkType::Null, &null_be), Ok(LinkPayload::Ip(IP)));
        let loop_ = [0, 0, 0, 2, 0x45, 0, 0, 20];
        assert_eq!(decode(LinkType::Loop, &loop_), Ok(LinkPayload::Ip(IP)));
        assert_eq!(
            decode(LinkType::Other(147), &[0; 4]),
            Err(Undecodable::UnsupportedLinkType)
        );
    }
}
