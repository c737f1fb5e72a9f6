//! Value types an administrator writes as text (`"20GiB"`, `"10000-20000"`,
//! `"10.0.0.0/16"`) and the secret-key wrapper. Each parses in its `Deserialize` impl,
//! so a bad value is reported by the deserializer with the span of that very value,
//! which the loader turns into a file line and key.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Deserializes a string through `parse`, failing inside the deserializer's visit so the
/// error carries the span of that very value (an entry of a multi-line list included).
pub(crate) fn parse_str<'de, D, T>(
    d: D,
    expecting: &'static str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct V<F> {
        expecting: &'static str,
        parse: F,
    }
    impl<T, F: FnOnce(&str) -> Result<T, String>> Visitor<'_> for V<F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.parse)(v).map_err(E::custom)
        }
    }
    d.deserialize_str(V { expecting, parse })
}

/// A byte count. Written as a plain integer (`65536`) or with a unit, decimal (`kB`,
/// `MB`, `GB`, `TB`) or binary (`KiB`, `MiB`, `GiB`, `TiB`), e.g. `"500MB"`,
/// `"20GiB"`, `"1.5GiB"`. Units are case-insensitive; there is no bare `K`/`M`/`G`
/// because whether those mean 1000 or 1024 is exactly the doubt a config should not leave.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const KIB: u64 = 1 << 10;
    pub const MIB: u64 = 1 << 20;
    pub const GIB: u64 = 1 << 30;

    /// The number of bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// The size as `usize`, saturating on 32-bit targets.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

const UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
];

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s:?} is not a size (write bytes, or a number with a unit: \
                 \"500MB\", \"20GiB\"; units kB MB GB TB KiB MiB GiB TiB)"
            )
        };
        let text = s.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let unit = unit.trim().to_ascii_lowercase();
        let multiplier = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|&(_, m)| m)
            .ok_or_else(bad)?;
        let (whole, fraction) = match number.split_once('.') {
            Some((w, f)) => (w, f),
            None => (number, ""),
        };
        if whole.is_empty() || fraction.len() > 9 || fraction.contains('.') {
            return Err(bad());
        }
        let whole: u64 = whole.parse().map_err(|_| bad())?;
        let mut bytes = whole.checked_mul(multiplier).ok_or_else(bad)?;
        if !fraction.is_empty() {
            let digits: u64 = fraction.parse().map_err(|_| bad())?;
            let scale = 10u64.pow(fraction.len() as u32);
            let part = u128::from(digits) * u128::from(multiplier) / u128::from(scale);
            bytes = bytes
                .checked_add(u64::try_from(part).map_err(|_| bad())?)
                .ok_or_else(bad)?;
        }
        Ok(ByteSize(bytes))
    }
}

impl fmt::Display for ByteSize {
    /// The largest unit that divides the size exactly, so what is printed parses back
    /// to the same number: `20GiB`, `500MB`, `1234B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOW: &[(&str, u64)] = &[
            ("TiB", 1 << 40),
            ("TB", 1_000_000_000_000),
            ("GiB", 1 << 30),
            ("GB", 1_000_000_000),
            ("MiB", 1 << 20),
            ("MB", 1_000_000),
            ("KiB", 1 << 10),
            ("kB", 1_000),
        ];
        for &(unit, size) in SHOW {
            if self.0 >= size && self.0 % size == 0 {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl fmt::Debug for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: bytes, or a string such as \"500MB\" or \"20GiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("{v} is not a size: sizes cannot be negative")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An inclusive UDP port range, written `"10000-20000"`, as a single port `5004`, or
/// as a table `{ start = 10000, end = 20000 }`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub const fn new(start: u16, end: u16) -> Self {
        PortRange { start, end }
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }

    fn checked(start: u64, end: u64) -> Result<PortRange, String> {
        let port = |p: u64| {
            u16::try_from(p)
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("{p} is not a port (1-65535)"))
        };
        let (start, end) = (port(start)?, port(end)?);
        if start > end {
            return Err(format!(
                "\"{start}-{end}\" is an empty port range: the first port must not exceed the last"
            ));
        }
        Ok(PortRange { start, end })
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a port range (write \"10000-20000\")");
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let a: u64 = a.trim().parse().map_err(|_| bad())?;
        let b: u64 = b.trim().parse().map_err(|_| bad())?;
        PortRange::checked(a, b)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl fmt::Debug for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            start: u64,
            end: u64,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PortRange;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port range: \"10000-20000\" or { start = 10000, end = 20000 }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortRange, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortRange, E> {
                let v = u64::try_from(v).map_err(|_| E::custom(format!("{v} is not a port")))?;
                PortRange::checked(v, v).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PortRange, A::Error> {
                let t = Table::deserialize(de::value::MapAccessDeserializer::new(map))?;
                PortRange::checked(t.start, t.end).map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A set of addresses written as IPs or CIDR networks; a bare IP means one host
/// (/32 or /128). Host bits below the prefix are cleared (`10.0.0.5/16` is `10.0.0.0/16`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AddressSet(pub Vec<IpNet>);

impl AddressSet {
    /// Whether `ip` lies in one of the networks. An IPv4-mapped IPv6 address
    /// (`::ffff:10.0.0.5`, as a dual-stack socket reports it) matches its IPv4 form.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &IpNet> {
        self.0.iter()
    }
}

impl fmt::Debug for AddressSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(ToString::to_string))
            .finish()
    }
}

/// One entry of an [`AddressSet`]; its own type so an error points at that entry's line
/// in a multi-line list.
struct NetEntry(IpNet);

impl<'de> Deserialize<'de> for NetEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_str(d, "an IP address or CIDR network", |text| {
            let trimmed = text.trim();
            match trimmed.parse::<IpNet>() {
                Ok(net) => Ok(NetEntry(net.trunc())),
                Err(_) => trimmed
                    .parse::<IpAddr>()
                    .map(|ip| NetEntry(IpNet::from(ip)))
                    .map_err(|_| {
                        format!(
                            "{text:?} is not an IP address or CIDR network \
                             (write \"10.0.0.5\" or \"10.0.0.0/16\")"
                        )
                    }),
            }
        })
    }
}

impl<'de> Deserialize<'de> for AddressSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AddressSet;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of IP addresses or CIDR networks")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AddressSet, A::Error> {
                let mut nets = Vec::new();
                while let Some(NetEntry(net)) = seq.next_element()? {
                    nets.push(net);
                }
                Ok(AddressSet(nets))
            }
        }
        d.deserialize_seq(V)
    }
}

impl Serialize for AddressSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|n| n.to_string()))
    }
}

/// A secret (API key, link-signing key). Debug and Serialize print `<redacted>`, and
/// there is no Display, so a secret cannot reach a log line by accident; the value is
/// read through [`SecretKey::expose`] only where it is compared or used as a key.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(String);

impl SecretKey {
    /// A key from text; `None` when it is empty after trimming surrounding whitespace.
    pub fn new(text: &str) -> Option<SecretKey> {
        let text = text.trim();
        (!text.is_empty()).then(|| SecretKey(text.to_owned()))
    }

    /// The secret itself. Compare it in constant time; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl Serialize for SecretKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for SecretKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_str(d, "a secret key", |text| {
            SecretKey::new(text).ok_or_else(|| "a secret key cannot be empty".to_owned())
        })
    }
}

/// `SocketAddr` with an error message that shows what was written.
pub(crate) mod socket_addr {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        parse_str(d, "a socket address", |text| {
            text.trim().parse().map_err(|_| {
                format!(
                    "{text:?} is not a socket address (write IP:port, e.g. \"127.0.0.1:8080\" \
                     or \"[::]:8080\")"
                )
            })
        })
    }

    pub(crate) fn serialize<S: Serializer>(addr: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(addr)
    }
}

/// `max_disk`: a size where 0 means "no cap", kept as `None`.
pub(crate) mod optional_size {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<ByteSize>, D::Error> {
        let size = ByteSize::deserialize(d)?;
        Ok((size.0 > 0).then_some(size))
    }

    pub(crate) fn serialize<S: Serializer>(
        size: &Option<ByteSize>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        size.unwrap_or_default().serialize(s)
    }
}

/// `public_url`: an absolute http(s) URL without query or fragment, kept without a
/// trailing slash so `{public_url}/recordings/...` never doubles it.
pub(crate) mod public_url {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        parse_str(d, "a base URL", |text| {
            let url = text.trim().trim_end_matches('/');
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            let host = rest.map(|r| r.split('/').next().unwrap_or(""));
            let ok = matches!(host, Some(h) if !h.is_empty() && !h.contains(char::is_whitespace))
                && !url.contains(['?', '#']);
            if !ok {
                return Err(format!(
                    "{text:?} is not a base URL (write e.g. \"https://calltap.example.com\"; \
                     no query or fragment)"
                ));
            }
            Ok(Some(url.to_owned()))
        })
    }
}
