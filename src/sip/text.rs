//! SIP's lexical layer, below every header parser and the URI splitter: linear white
//! space, tokens, quoted strings, `;params` and comma lists split outside quotes and
//! `<>`, `host[:port]`, decimal numbers and method tokens. It imports nothing of its
//! own crate, so `fields`, `uri` and `message` stand on it without leaning on each
//! other.

use std::borrow::Cow;
use std::net::IpAddr;

/// Linear white space as it appears in a header value, folds included.
#[inline]
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// The value without leading and trailing linear white space (folds included).
pub fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_lws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_lws(b)).map_or(start, |e| e + 1);
    &s[start..end]
}

/// RFC 3261 `token` characters (header names, methods, parameter names).
#[inline]
pub(crate) fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

/// Bytes as text for logs and records; invalid UTF-8 becomes U+FFFD.
pub fn lossy(b: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(b)
}

/// The content of a quoted string with its quoted-pairs (`\"`, `\\`) resolved.
pub fn unescape_quoted(raw: &[u8]) -> Cow<'_, [u8]> {
    if !raw.contains(&b'\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut it = raw.iter();
    while let Some(&b) = it.next() {
        if b == b'\\' {
            if let Some(&n) = it.next() {
                out.push(n);
            }
        } else {
            out.push(b);
        }
    }
    Cow::Owned(out)
}

/// Index of the quote closing a quoted string that opens at `s[0]`, honouring `\` escapes.
pub(crate) fn closing_quote(s: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Position of the first `sep` outside quoted strings and `<...>` (so a comma or a
/// semicolon inside a display name or a URI does not split the value).
fn find_top_level(s: &[u8], sep: u8) -> Option<usize> {
    let mut i = 0;
    let mut in_angle = false;
    while i < s.len() {
        let b = s[i];
        if b == b'"' && !in_angle {
            match closing_quote(&s[i..]) {
                Some(q) => i += q + 1,
                // An unbalanced quote swallows the rest: nothing after it splits.
                None => return None,
            }
            continue;
        }
        if b == b'<' {
            in_angle = true;
        } else if b == b'>' {
            in_angle = false;
        } else if b == sep && !in_angle {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The values of a comma-joined header (`Via: a, b`), split outside quotes and `<>`;
/// empty pieces are skipped.
#[derive(Debug, Clone)]
pub struct CommaList<'a> {
    rest: &'a [u8],
}

impl<'a> CommaList<'a> {
    pub fn new(value: &'a [u8]) -> Self {
        CommaList { rest: value }
    }
}

impl<'a> Iterator for CommaList<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        while !self.rest.is_empty() {
            let (piece, rest) = match find_top_level(self.rest, b',') {
                Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
                None => (self.rest, &b""[..]),
            };
            self.rest = rest;
            let piece = trim(piece);
            if !piece.is_empty() {
                return Some(piece);
            }
        }
        None
    }
}

/// `;name[=value]` parameters, split outside quotes, names and values trimmed of LWS
/// (`;   tag    = 1918181833n` gives `tag`, `1918181833n`); a quoted value comes back
/// without its quotes, escapes kept. Empty segments (`;;`) are skipped.
#[derive(Debug, Clone)]
pub struct Params<'a> {
    rest: &'a [u8],
}

impl<'a> Params<'a> {
    pub fn new(params: &'a [u8]) -> Self {
        Params { rest: params }
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);
    fn next(&mut self) -> Option<Self::Item> {
        while !self.rest.is_empty() {
            let (seg, rest) = match find_top_level(self.rest, b';') {
                Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
                None => (self.rest, &b""[..]),
            };
            self.rest = rest;
            let seg = trim(seg);
            if seg.is_empty() {
                continue;
            }
            return Some(match memchr::memchr(b'=', seg) {
                Some(eq) => {
                    let v = trim(&seg[eq + 1..]);
                    let v = if v.len() >= 2 && v[0] == b'"' && v[v.len() - 1] == b'"' {
                        &v[1..v.len() - 1]
                    } else {
                        v
                    };
                    (trim(&seg[..eq]), Some(v))
                }
                None => (seg, None),
            });
        }
        None
    }
}

/// The named parameter: `None` absent, `Some(None)` present without a value (`;rport`,
/// `;lr`), `Some(Some(v))` with a value. Names compare case-insensitively.
pub fn param<'a>(params: &'a [u8], name: &[u8]) -> Option<Option<&'a [u8]>> {
    Params::new(params)
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// `host[:port]` or `[v6]:port`; brackets removed from the host.
pub(crate) fn split_host_port(s: &[u8]) -> Option<(&[u8], Option<u16>)> {
    if s.first() == Some(&b'[') {
        let close = memchr::memchr(b']', s)?;
        let host = &s[1..close];
        let port = match s.get(close + 1) {
            Some(b':') => parse_u16(&s[close + 2..]),
            _ => None,
        };
        return Some((host, port));
    }
    if s.is_empty() {
        return None;
    }
    match memchr::memchr(b':', s) {
        // One colon: host:port. Several: a bare IPv6 address, no port.
        Some(c) if memchr::memchr(b':', &s[c + 1..]).is_none() => {
            Some((&s[..c], parse_u16(trim(&s[c + 1..]))))
        }
        _ => Some((s, None)),
    }
}

pub(crate) fn parse_ip(s: &[u8]) -> Option<IpAddr> {
    let s = trim(s);
    let s = s
        .strip_prefix(b"[")
        .and_then(|x| x.strip_suffix(b"]"))
        .unwrap_or(s);
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Decimal digits only, no sign, within range.
pub(crate) fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

pub(crate) fn parse_u16(s: &[u8]) -> Option<u16> {
    parse_u64(s).and_then(|n| u16::try_from(n).ok())
}

pub(crate) fn parse_u32(s: &[u8]) -> Option<u32> {
    parse_u64(s).and_then(|n| u32::try_from(n).ok())
}

/// rsip's method type from a method token, matched as RFC 3261 7.1 says: case-sensitive.
/// (rsip's own `FromStr` ignores case and trims.) Extension methods give `None`.
pub fn method_from_token(token: &[u8]) -> Option<rsip::Method> {
    use rsip::Method as M;
    Some(match token {
        b"INVITE" => M::Invite,
        b"ACK" => M::Ack,
        b"BYE" => M::Bye,
        b"CANCEL" => M::Cancel,
        b"OPTIONS" => M::Options,
        b"REGISTER" => M::Register,
        b"PRACK" => M::PRack,
        b"UPDATE" => M::Update,
        b"INFO" => M::Info,
        b"REFER" => M::Refer,
        b"NOTIFY" => M::Notify,
        b"SUBSCRIBE" => M::Subscribe,
        b"MESSAGE" => M::Message,
        b"PUBLISH" => M::Publish,
        _ => return None,
    })
}
