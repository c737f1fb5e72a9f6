//! Zero-copy views of the header values the dialog layer reads: name-addr (From, To,
//! Contact, P-Asserted-Identity, ...), Via, CSeq, parameters, comma lists, Content-Type
//! and multipart bodies. Every parser here takes a trimmed value slice, never panics,
//! and does work linear in its input.

use std::net::IpAddr;

use super::text::{
    closing_quote, is_lws, is_token, method_from_token, param, parse_ip, parse_u16, parse_u32,
    split_host_port, trim, unescape_quoted,
};

/// A `name-addr` or `addr-spec` with header parameters: From, To, Contact,
/// P-Asserted-Identity, Remote-Party-ID, Diversion, Refer-To, Referred-By.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name as sent: a quoted one without its quotes (escapes kept), a token
    /// one trimmed. Bytes, since PBXs put Latin-1 and worse here.
    pub display_name: Option<&'a [u8]>,
    /// The URI without `<>` and surrounding space.
    pub uri: &'a [u8],
    /// The header parameters after the URI (`;tag=...;...`), raw.
    pub params: &'a [u8],
    /// The display name opened a quote that never closed (RFC 4475 `quotbal`).
    pub unbalanced_quote: bool,
}

impl<'a> NameAddr<'a> {
    /// Parses one value (not a comma list: split Contact-like headers with [`CommaList`]
    /// first). `None` when no URI can be found.
    pub fn parse(value: &'a [u8]) -> Option<Self> {
        let v = trim(value);
        let mut unbalanced_quote = false;
        let (display_name, rest): (Option<&[u8]>, &[u8]) = if v.first() == Some(&b'"') {
            match closing_quote(v) {
                Some(q) => (Some(&v[1..q]), trim(&v[q + 1..])),
                None => {
                    // `"Mr. J. User <sip:j.user@example.com>`: the URI is still there.
                    unbalanced_quote = true;
                    let lt = memchr::memchr(b'<', v)?;
                    (Some(trim(&v[1..lt])), &v[lt..])
                }
            }
        } else {
            match memchr::memchr(b'<', v) {
                Some(lt) => {
                    let dn = trim(&v[..lt]);
                    (if dn.is_empty() { None } else { Some(dn) }, &v[lt..])
                }
                None => (None, v),
            }
        };
        let (uri, params) = if rest.first() == Some(&b'<') {
            match memchr::memchr(b'>', rest) {
                Some(gt) => (trim(&rest[1..gt]), &rest[gt + 1..]),
                None => (trim(&rest[1..]), &b""[..]),
            }
        } else {
            // addr-spec: the parameters after the URI belong to the header (RFC 3261 20.10).
            match memchr::memchr(b';', rest) {
                Some(semi) => (trim(&rest[..semi]), &rest[semi..]),
                None => (trim(rest), &b""[..]),
            }
        };
        if uri.is_empty() {
            return None;
        }
        Some(NameAddr {
            display_name,
            uri,
            params,
            unbalanced_quote,
        })
    }

    /// The `tag` parameter (dialog identity).
    pub fn tag(&self) -> Option<&'a [u8]> {
        self.param(b"tag").flatten()
    }

    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        param(self.params, name)
    }

    /// The display name as text: quoted-pairs resolved, invalid UTF-8 replaced.
    pub fn display_name_lossy(&self) -> Option<String> {
        self.display_name
            .map(|d| String::from_utf8_lossy(&unescape_quoted(d)).into_owned())
    }

    /// The URI split into scheme, user, host, port (zero-copy).
    pub fn uri_parts(&self) -> Option<super::uri::UriParts<'a>> {
        super::uri::UriParts::parse(self.uri)
    }
}

/// One Via value: `SIP / 2.0 / UDP host:port;branch=...;received=...;rport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// `UDP`, `TCP`, `TLS`, `SCTP`, `WS`, ... as sent.
    pub transport: &'a [u8],
    /// The sent-by host; an IPv6 reference comes without its brackets.
    pub host: &'a [u8],
    pub port: Option<u16>,
    /// The parameters after sent-by, raw.
    pub params: &'a [u8],
}

impl<'a> Via<'a> {
    /// Parses one Via value (split comma-joined ones with [`CommaList`] first).
    pub fn parse(value: &'a [u8]) -> Option<Self> {
        let v = trim(value);
        let s1 = memchr::memchr(b'/', v)?;
        if !trim(&v[..s1]).eq_ignore_ascii_case(b"SIP") {
            return None;
        }
        let s2 = s1 + 1 + memchr::memchr(b'/', &v[s1 + 1..])?;
        let rest = trim(&v[s2 + 1..]);
        let t_end = rest
            .iter()
            .position(|&b| !is_token(b))
            .unwrap_or(rest.len());
        let transport = &rest[..t_end];
        if transport.is_empty() {
            return None;
        }
        let rest = &rest[t_end..];
        let (sent_by, params) = match memchr::memchr(b';', rest) {
            Some(i) => (trim(&rest[..i]), &rest[i..]),
            None => (trim(rest), &b""[..]),
        };
        let (host, port) = split_host_port(sent_by)?;
        Some(Via {
            transport,
            host,
            port,
            params,
        })
    }

    pub fn branch(&self) -> Option<&'a [u8]> {
        param(self.params, b"branch").flatten()
    }

    /// `received=`: the address the previous hop saw (IPv4 or bare IPv6).
    pub fn received(&self) -> Option<&'a [u8]> {
        param(self.params, b"received").flatten()
    }

    pub fn received_ip(&self) -> Option<IpAddr> {
        parse_ip(self.received()?)
    }

    /// `rport`: `None` absent, `Some(None)` requested (no value yet), `Some(Some(p))` filled.
    pub fn rport(&self) -> Option<Option<u16>> {
        param(self.params, b"rport").map(|v| v.and_then(parse_u16))
    }

    pub fn host_ip(&self) -> Option<IpAddr> {
        parse_ip(self.host)
    }
}

/// `CSeq: 4711 INVITE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    pub number: u32,
    pub method: &'a [u8],
}

impl<'a> CSeq<'a> {
    /// RFC 3261 8.1.1.5: the number is below 2^31; anything else is refused.
    pub fn parse(value: &'a [u8]) -> Option<Self> {
        let v = trim(value);
        let n_end = v.iter().position(|&b| is_lws(b))?;
        let number = parse_u32(&v[..n_end]).filter(|&n| n < 1 << 31)?;
        let method = trim(&v[n_end..]);
        if method.is_empty() || !method.iter().all(|&b| is_token(b)) {
            return None;
        }
        Some(CSeq { number, method })
    }

    /// The method as rsip's type, when it is one rsip knows.
    pub fn method_typed(&self) -> Option<rsip::Method> {
        method_from_token(self.method)
    }
}

/// `Replaces: call-id;to-tag=...;from-tag=...` (RFC 3891).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replaces<'a> {
    pub call_id: &'a [u8],
    pub to_tag: Option<&'a [u8]>,
    pub from_tag: Option<&'a [u8]>,
    pub early_only: bool,
}

impl<'a> Replaces<'a> {
    pub fn parse(value: &'a [u8]) -> Option<Self> {
        let v = trim(value);
        let (call_id, params) = match memchr::memchr(b';', v) {
            Some(i) => (trim(&v[..i]), &v[i..]),
            None => (v, &b""[..]),
        };
        if call_id.is_empty() {
            return None;
        }
        Some(Replaces {
            call_id,
            to_tag: param(params, b"to-tag").flatten(),
            from_tag: param(params, b"from-tag").flatten(),
            early_only: param(params, b"early-only").is_some(),
        })
    }
}

/// `Content-Type: type/subtype;params`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentType<'a> {
    pub media_type: &'a [u8],
    pub params: &'a [u8],
}

impl<'a> ContentType<'a> {
    pub fn parse(value: &'a [u8]) -> Self {
        let v = trim(value);
        match memchr::memchr(b';', v) {
            Some(i) => ContentType {
                media_type: trim(&v[..i]),
                params: &v[i..],
            },
            None => ContentType {
                media_type: v,
                params: b"",
            },
        }
    }

    pub fn is(&self, media_type: &str) -> bool {
        self.media_type.eq_ignore_ascii_case(media_type.as_bytes())
    }

    pub fn is_sdp(&self) -> bool {
        self.is("application/sdp")
    }

    pub fn is_multipart(&self) -> bool {
        self.media_type.len() > 10 && self.media_type[..10].eq_ignore_ascii_case(b"multipart/")
    }

    pub fn boundary(&self) -> Option<&'a [u8]> {
        param(self.params, b"boundary").flatten()
    }
}

/// A multipart body is cut into at most this many parts: real ones carry SDP plus ISUP
/// or a PIDF document, so two or three; the cap keeps garbage from costing more.
pub const MAX_MULTIPART_PARTS: usize = 16;

/// One part of a multipart body (RFC 2046): its header block and its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPart<'a> {
    pub headers: &'a [u8],
    pub body: &'a [u8],
}

impl<'a> BodyPart<'a> {
    /// The part's Content-Type (case-insensitive name, compact `c` accepted).
    pub fn content_type(&self) -> Option<ContentType<'a>> {
        self.headers.split(|&b| b == b'\n').find_map(|line| {
            let colon = memchr::memchr(b':', line)?;
            let name = trim(&line[..colon]);
            (name.eq_ignore_ascii_case(b"content-type") || name.eq_ignore_ascii_case(b"c"))
                .then(|| ContentType::parse(&line[colon + 1..]))
        })
    }
}

/// The parts of a multipart body, split on `--boundary` delimiter lines.
pub fn multipart_parts<'a>(body: &'a [u8], boundary: &[u8]) -> Vec<BodyPart<'a>> {
    let mut parts = Vec::new();
    if boundary.is_empty() {
        return parts;
    }
    let mut delim = Vec::with_capacity(boundary.len() + 2);
    delim.extend_from_slice(b"--");
    delim.extend_from_slice(boundary);
    let finder = memchr::memmem::Finder::new(&delim);
    // Delimiters only count at the start of a line.
    let mut starts = Vec::new();
    let mut from = 0;
    while let Some(i) = finder.find(&body[from..]) {
        let at = from + i;
        if at == 0 || body[at - 1] == b'\n' {
            starts.push(at);
            if starts.len() > MAX_MULTIPART_PARTS {
                break;
            }
        }
        from = at + delim.len();
    }
    for w in starts.windows(2) {
        let (d, next) = (w[0], w[1]);
        let after = d + delim.len();
        if body[after..].starts_with(b"--") {
            break; // close delimiter
        }
        let content_start = match memchr::memchr(b'\n', &body[after..next]) {
            Some(nl) => after + nl + 1,
            None => continue,
        };
        // The CRLF before the next delimiter belongs to the delimiter.
        let mut end = next;
        if end > content_start && body[end - 1] == b'\n' {
            end -= 1;
            if end > content_start && body[end - 1] == b'\r' {
                end -= 1;
            }
        }
        let part = &body[content_start..end];
        let (headers, content) = split_head_body(part);
        parts.push(BodyPart {
            headers,
            body: content,
        });
        if parts.len() == MAX_MULTIPART_PARTS {
            break;
        }
    }
    parts
}

/// Splits at the first empty line (CRLF or LF); no empty line: all headers.
fn split_head_body(part: &[u8]) -> (&[u8], &[u8]) {
    if part.starts_with(b"\r\n") {
        return (b"", &part[2..]);
    }
    if part.starts_with(b"\n") {
        return (b"", &part[1..]);
    }
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\n', &part[from..]) {
        let nl = from + i;
        let rest = &part[nl + 1..];
        if rest.starts_with(b"\r\n") {
            return (&part[..nl + 1], &rest[2..]);
        }
        if rest.starts_with(b"\n") {
            return (&part[..nl + 1], &rest[1..]);
        }
        from = nl + 1;
    }
    (part, b"")
}
