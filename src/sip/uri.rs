//! URIs: rsip's `Uri` where it parses the input correctly, our zero-copy split where it
//! does not. rsip 0.4 refuses `tel:` URIs (it reads the number as a port) and any IPv6
//! host reference, and it reads `sip:user;par=x@host` as the host `user`; the split
//! below handles all three, which is why it exists (see the tests in this module).

use super::text::{lossy, param, split_host_port, trim};
use std::borrow::Cow;

/// A URI cut into its parts without copying: `scheme:user@host:port;params?headers`.
/// For `tel:` the number is the `user` and `host` is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UriParts<'a> {
    pub scheme: &'a [u8],
    pub user: Option<&'a [u8]>,
    /// The host; an IPv6 reference comes without its brackets.
    pub host: &'a [u8],
    pub port: Option<u16>,
    /// The URI parameters (`;user=phone;transport=udp`), raw, leading `;` included.
    pub params: &'a [u8],
    /// The URI headers after `?`, raw.
    pub headers: &'a [u8],
}

impl<'a> UriParts<'a> {
    /// Splits any URI; `None` when there is no `scheme:`. Angle brackets and surrounding
    /// space are tolerated (`<sip:user@example.com>` as a Request-URI, RFC 4475 ltgtruri).
    pub fn parse(raw: &'a [u8]) -> Option<Self> {
        let mut s = trim(raw);
        if let Some(inner) = s.strip_prefix(b"<").and_then(|x| x.strip_suffix(b">")) {
            s = trim(inner);
        }
        let colon = memchr::memchr(b':', s)?;
        let scheme = &s[..colon];
        if scheme.is_empty()
            || !scheme[0].is_ascii_alphabetic()
            || !scheme
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        {
            return None;
        }
        let mut rest = &s[colon + 1..];
        rest = rest.strip_prefix(b"//").unwrap_or(rest);
        let (rest, headers) = match memchr::memchr(b'?', rest) {
            Some(q) => (&rest[..q], &rest[q + 1..]),
            None => (rest, &b""[..]),
        };
        if scheme.eq_ignore_ascii_case(b"tel") {
            let (number, params) = split_params(rest);
            return Some(UriParts {
                scheme,
                user: Some(number),
                host: b"",
                port: None,
                params,
                headers,
            });
        }
        // The user part may hold `;` (RFC 4475 semiuri: `sip:user;par=u%40example.net@host`)
        // but never an unescaped `@`, so the first `@` ends it.
        let (user, hostpart) = match memchr::memchr(b'@', rest) {
            Some(at) => {
                let userinfo = &rest[..at];
                // `user:password`: the password is not part of the identity.
                let user = match memchr::memchr(b':', userinfo) {
                    Some(c) => &userinfo[..c],
                    None => userinfo,
                };
                (Some(user), &rest[at + 1..])
            }
            None => (None, rest),
        };
        let (hostport, params) = split_params(hostpart);
        let (host, port) = split_host_port(trim(hostport)).unwrap_or((b"", None));
        Some(UriParts {
            scheme,
            user,
            host,
            port,
            params,
            headers,
        })
    }

    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        param(self.params, name)
    }

    pub fn is_tel(&self) -> bool {
        self.scheme.eq_ignore_ascii_case(b"tel")
    }
}

fn split_params(s: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b';', s) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, b""),
    }
}

/// A Request-URI as the engine consumes it: rsip's typed `Uri` when rsip reads it right,
/// otherwise our split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestUri<'a> {
    Rsip(rsip::Uri),
    Fallback(UriParts<'a>),
}

impl<'a> RequestUri<'a> {
    /// rsip first; the split when rsip refuses the URI, or accepts it but loses the user
    /// part (it then reads the user as the host).
    pub fn parse(raw: &'a [u8]) -> Option<Self> {
        let parts = UriParts::parse(raw)?;
        if let Ok(text) = std::str::from_utf8(trim(raw)) {
            if let Ok(uri) = rsip::Uri::try_from(text) {
                if uri.auth.is_some() == parts.user.is_some() {
                    return Some(RequestUri::Rsip(uri));
                }
            }
        }
        Some(RequestUri::Fallback(parts))
    }

    pub fn is_rsip(&self) -> bool {
        matches!(self, RequestUri::Rsip(_))
    }

    /// The user part (a `tel:` URI's number).
    pub fn user(&self) -> Option<Cow<'_, str>> {
        match self {
            RequestUri::Rsip(u) => u.user().map(Cow::Borrowed),
            RequestUri::Fallback(p) => p.user.map(lossy),
        }
    }

    /// The host, IPv6 without brackets; empty for `tel:`.
    pub fn host(&self) -> Cow<'_, str> {
        match self {
            RequestUri::Rsip(u) => Cow::Owned(u.host().to_string()),
            RequestUri::Fallback(p) => lossy(p.host),
        }
    }

    pub fn port(&self) -> Option<u16> {
        match self {
            RequestUri::Rsip(u) => u.port().map(|p| *p.value()),
            RequestUri::Fallback(p) => p.port,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_sip_tel_and_ipv6() {
        let p = UriParts::parse(b"sip:alice@[2001:db8::1]:5070;transport=udp").unwrap();
        assert_eq!(
            (p.scheme, p.user, p.host, p.port),
            (
                &b"sip"[..],
                Some(&b"alice"[..]),
                &b"2001:db8::1"[..],
                Some(5070)
            )
        );
        assert_eq!(p.param(b"transport"), Some(Some(&b"udp"[..])));

        let t = UriParts::parse(b"tel:+1-555-123-4567;phone-context=example.com").unwrap();
        assert!(t.is_tel());
        assert_eq!(t.user, Some(&b"+1-555-123-4567"[..]));
        assert_eq!(t.param(b"phone-context"), Some(Some(&b"example.com"[..])));

        let s = UriParts::parse(b"sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(s.user, Some(&b"user;par=u%40example.net"[..]));
        assert_eq!(s.host, b"example.com");

        let h = UriParts::parse(b"sip:user@example.com?Route=%3Csip:example.com%3E").unwrap();
        assert_eq!(h.host, b"example.com");
        assert_eq!(h.headers, b"Route=%3Csip:example.com%3E");

        let pw = UriParts::parse(b"sips:bob:secret@10.0.0.1:5061").unwrap();
        assert_eq!((pw.user, pw.port), (Some(&b"bob"[..]), Some(5061)));

        assert!(UriParts::parse(b"no scheme here").is_none());
    }

    #[test]
    fn rsip_used_when_it_reads_the_uri_right() {
        let u = RequestUri::parse(b"sip:+15551230101@10.0.0.5:5060;user=phone").unwrap();
        assert!(u.is_rsip());
        assert_eq!(u.user().as_deref(), Some("+15551230101"));
        assert_eq!(u.host(), "10.0.0.5");
        assert_eq!(u.port(), Some(5060));
    }

    #[test]
    fn fallback_when_rsip_misreads_a_user_with_semicolon() {
        let raw = &b"sip:user;par=u%40example.net@example.com"[..];
        let rs = rsip::Uri::try_from("sip:user;par=u%40example.net@example.com").unwrap();
        // rsip accepts it but takes `user` for the host and loses the real host.
        assert!(rs.auth.is_none());
        assert_eq!(rs.host().to_string(), "user");
        let u = RequestUri::parse(raw).unwrap();
        assert!(!u.is_rsip());
        assert_eq!(u.host(), "example.com");
        assert_eq!(u.user().as_deref(), Some("user;par=u%40example.net"));
    }
}
