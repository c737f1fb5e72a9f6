//! The SIP scanner: one pass over the message bytes that checks what the dialog layer
//! relies on and records where each field is, then accessors that read in place.
//!
//! `parse` treats its input as one UDP datagram: the body is what Content-Length says, the
//! rest of the datagram is ignored (and shows in the consumed count), no Content-Length
//! means the rest of the datagram, and a Content-Length beyond the datagram keeps the
//! message with the bytes that are there and a counted [`Defect`]. `parse_stream` frames
//! a TCP byte stream instead: Content-Length is required, and a short buffer is
//! [`SipError::Incomplete`].

use super::fields::{multipart_parts, CSeq, ContentType, NameAddr, Replaces, Via};
use super::text::{
    is_lws, is_token, lossy, method_from_token, parse_u32, parse_u64, trim, CommaList,
};
use super::uri::RequestUri;
use std::borrow::Cow;

/// Header lines (not values) in one message. Real INVITEs through two or three proxies
/// carry 20 to 40; RFC 4475 longreq has 45. Past this it is a flood, not a PBX.
pub const MAX_HEADERS: usize = 128;

/// One physical line. The longest real ones are Identity and Via lists (under 1 KiB);
/// longreq's longest is about 900 bytes.
pub const MAX_LINE: usize = 8192;

/// A declared body beyond this is refused on a stream (it would only grow the TCP
/// buffer); SIP bodies are SDP, sipfrag or a small multipart, well under 64 KiB.
pub const MAX_BODY: usize = 65_536;

/// Why a message was refused. Callers count these by [`SipError::reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SipError {
    /// Nothing but CRLF keep-alives.
    Empty,
    /// The first line does not look like SIP at all (RTP, TLS or random bytes on 5060).
    BinaryGarbage,
    LineTooLong,
    TooManyHeaders,
    BadStartLine,
    /// A version other than SIP/2.0.
    BadVersion,
    /// A status code that is not three digits in 100..=699.
    BadStatusCode,
    /// A header line without a colon or with a name that is not a token.
    MalformedHeader,
    MissingCallId,
    MissingCSeq,
    /// CSeq number not below 2^31, or no method.
    BadCSeq,
    MissingFrom,
    MissingTo,
    /// A request whose CSeq method is not its own method.
    CSeqMethodMismatch,
    /// Two Call-ID, CSeq, From or To headers that disagree: which dialog is it?
    ConflictingHeaders,
    /// Content-Length negative, not a number, or absurd.
    BadContentLength,
    /// Two Content-Length headers that disagree.
    ConflictingContentLength,
    /// Stream only: the message is not all there yet.
    Incomplete,
    /// Stream only: no Content-Length, so the message cannot be framed.
    MissingContentLength,
}

impl SipError {
    pub const ALL: [SipError; 19] = [
        SipError::Empty,
        SipError::BinaryGarbage,
        SipError::LineTooLong,
        SipError::TooManyHeaders,
        SipError::BadStartLine,
        SipError::BadVersion,
        SipError::BadStatusCode,
        SipError::MalformedHeader,
        SipError::MissingCallId,
        SipError::MissingCSeq,
        SipError::BadCSeq,
        SipError::MissingFrom,
        SipError::MissingTo,
        SipError::CSeqMethodMismatch,
        SipError::ConflictingHeaders,
        SipError::BadContentLength,
        SipError::ConflictingContentLength,
        SipError::Incomplete,
        SipError::MissingContentLength,
    ];

    /// A stable label for counters and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            SipError::Empty => "empty",
            SipError::BinaryGarbage => "binary garbage",
            SipError::LineTooLong => "line too long",
            SipError::TooManyHeaders => "too many headers",
            SipError::BadStartLine => "bad start line",
            SipError::BadVersion => "bad SIP version",
            SipError::BadStatusCode => "bad status code",
            SipError::MalformedHeader => "malformed header",
            SipError::MissingCallId => "missing Call-ID",
            SipError::MissingCSeq => "missing CSeq",
            SipError::BadCSeq => "bad CSeq",
            SipError::MissingFrom => "missing From",
            SipError::MissingTo => "missing To",
            SipError::CSeqMethodMismatch => "CSeq method mismatch",
            SipError::ConflictingHeaders => "conflicting dialog headers",
            SipError::BadContentLength => "bad Content-Length",
            SipError::ConflictingContentLength => "conflicting Content-Length",
            SipError::Incomplete => "incomplete",
            SipError::MissingContentLength => "missing Content-Length",
        }
    }
}

impl std::fmt::Display for SipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for SipError {}

/// A defect the scanner tolerated: the message is usable, and the defect is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Defect {
    /// Content-Length is larger than the datagram: the body is what arrived (RFC 4475 clerr).
    ContentLengthExceedsData = 1 << 0,
    /// The header block ran to the end of the datagram without an empty line.
    HeadersUnterminated = 1 << 1,
    /// White space inside the Request-URI (RFC 4475 lwsruri).
    RequestUriWhitespace = 1 << 2,
    /// `<...>` around the Request-URI (RFC 4475 ltgtruri).
    RequestUriBrackets = 1 << 3,
    /// A display name in From or To with an unclosed quote (RFC 4475 quotbal).
    UnbalancedQuote = 1 << 4,
    /// The top Via could not be read (no sent-protocol or sent-by).
    BadVia = 1 << 5,
}

impl Defect {
    pub const ALL: [Defect; 6] = [
        Defect::ContentLengthExceedsData,
        Defect::HeadersUnterminated,
        Defect::RequestUriWhitespace,
        Defect::RequestUriBrackets,
        Defect::UnbalancedQuote,
        Defect::BadVia,
    ];

    pub fn reason(&self) -> &'static str {
        match self {
            Defect::ContentLengthExceedsData => "Content-Length exceeds data",
            Defect::HeadersUnterminated => "headers unterminated",
            Defect::RequestUriWhitespace => "white space in Request-URI",
            Defect::RequestUriBrackets => "brackets around Request-URI",
            Defect::UnbalancedQuote => "unbalanced quote",
            Defect::BadVia => "bad Via",
        }
    }
}

/// The set of defects of one message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Defects(u16);

impl Defects {
    pub fn contains(&self, d: Defect) -> bool {
        self.0 & d as u16 != 0
    }
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }
    fn insert(&mut self, d: Defect) {
        self.0 |= d as u16;
    }
    pub fn iter(self) -> impl Iterator<Item = Defect> {
        Defect::ALL.into_iter().filter(move |d| self.contains(*d))
    }
}

/// How the bytes reached us, which decides what Content-Length means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One message per datagram (UDP).
    Datagram,
    /// A byte stream (TCP, TLS after decryption): messages are framed by Content-Length.
    Stream,
}

/// The first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    Request { method: &'a [u8], uri: &'a [u8] },
    Response { code: u16, reason: &'a [u8] },
}

/// The headers kept by position during the scan (first occurrence of each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    CallId,
    CSeq,
    From,
    To,
    Via,
    Contact,
    ContentType,
    ContentLength,
    MaxForwards,
    PAssertedIdentity,
    RemotePartyId,
    Diversion,
    Reason,
    ReferTo,
    ReferredBy,
    Replaces,
    SessionExpires,
    UserAgent,
    Server,
}
const KNOWN: usize = 19;

/// Full header names by their lower-case form, with the slot they fill.
const KNOWN_NAMES: [(&[u8], Known); KNOWN] = [
    (b"call-id", Known::CallId),
    (b"cseq", Known::CSeq),
    (b"from", Known::From),
    (b"to", Known::To),
    (b"via", Known::Via),
    (b"contact", Known::Contact),
    (b"content-type", Known::ContentType),
    (b"content-length", Known::ContentLength),
    (b"max-forwards", Known::MaxForwards),
    (b"p-asserted-identity", Known::PAssertedIdentity),
    (b"remote-party-id", Known::RemotePartyId),
    (b"diversion", Known::Diversion),
    (b"reason", Known::Reason),
    (b"refer-to", Known::ReferTo),
    (b"referred-by", Known::ReferredBy),
    (b"replaces", Known::Replaces),
    (b"session-expires", Known::SessionExpires),
    (b"user-agent", Known::UserAgent),
    (b"server", Known::Server),
];

/// RFC 3261 7.3.3 and the IANA registry's compact forms.
pub fn expand_compact(c: u8) -> Option<&'static str> {
    Some(match c.to_ascii_lowercase() {
        b'a' => "Accept-Contact",
        b'b' => "Referred-By",
        b'c' => "Content-Type",
        b'd' => "Request-Disposition",
        b'e' => "Content-Encoding",
        b'f' => "From",
        b'i' => "Call-ID",
        b'j' => "Reject-Contact",
        b'k' => "Supported",
        b'l' => "Content-Length",
        b'm' => "Contact",
        b'n' => "Identity-Info",
        b'o' => "Event",
        b'r' => "Refer-To",
        b's' => "Subject",
        b't' => "To",
        b'u' => "Allow-Events",
        b'v' => "Via",
        b'x' => "Session-Expires",
        b'y' => "Identity",
        _ => return None,
    })
}

/// The full form of a header name (compact forms expanded), for comparison.
fn full_name(name: &[u8]) -> &[u8] {
    if name.len() == 1 {
        if let Some(full) = expand_compact(name[0]) {
            return full.as_bytes();
        }
    }
    name
}

/// Header names compare case-insensitively, compact and full forms alike.
pub fn header_name_eq(a: &[u8], b: &[u8]) -> bool {
    full_name(a).eq_ignore_ascii_case(full_name(b))
}

fn classify(name: &[u8]) -> Option<Known> {
    let name = full_name(name);
    KNOWN_NAMES
        .iter()
        .find(|(n, _)| n.len() == name.len() && n.eq_ignore_ascii_case(name))
        .map(|&(_, k)| k)
}

/// One SIP message, validated, as a view over the bytes it came in.
#[derive(Debug, Clone)]
pub struct SipMessage<'a> {
    /// The message itself: start line to the end of its body.
    bytes: &'a [u8],
    start: StartLine<'a>,
    /// From the first header line to the end of the last one.
    header_block: &'a [u8],
    header_count: u16,
    known: [Option<&'a [u8]>; KNOWN],
    call_id: &'a [u8],
    cseq: CSeq<'a>,
    from: NameAddr<'a>,
    to: NameAddr<'a>,
    top_via: Option<Via<'a>>,
    via_count: u16,
    content_length: Option<usize>,
    body: &'a [u8],
    defects: Defects,
}

/// One datagram's message; see the module documentation for what Content-Length means.
/// Returns the message and the bytes it took (less than the input when the datagram
/// carries bytes past Content-Length).
pub fn parse(bytes: &[u8]) -> Result<(SipMessage<'_>, usize), SipError> {
    SipMessage::parse_framed(bytes, Framing::Datagram)
}

/// The first message of a stream buffer; the caller drops the consumed bytes and calls
/// again. [`SipError::Incomplete`] means: wait for more bytes.
pub fn parse_stream(bytes: &[u8]) -> Result<(SipMessage<'_>, usize), SipError> {
    SipMessage::parse_framed(bytes, Framing::Stream)
}

/// The end of the line starting at `pos` (without CR) and where the next one starts.
/// `None` for the end when the line has no LF.
#[inline]
fn line_at(buf: &[u8], pos: usize) -> (usize, usize, bool) {
    match memchr::memchr(b'\n', &buf[pos..]) {
        Some(i) => {
            let lf = pos + i;
            let end = if lf > pos && buf[lf - 1] == b'\r' {
                lf - 1
            } else {
                lf
            };
            (end, lf + 1, true)
        }
        None => (buf.len(), buf.len(), false),
    }
}

fn is_sip_version(v: &[u8]) -> bool {
    v.eq_ignore_ascii_case(b"SIP/2.0")
}

fn looks_like_version(v: &[u8]) -> bool {
    v.len() >= 4 && v[..4].eq_ignore_ascii_case(b"SIP/")
}

fn parse_start_line<'a>(line: &'a [u8], defects: &mut Defects) -> Result<StartLine<'a>, SipError> {
    // Control characters never appear in a start line; a reason phrase may carry UTF-8.
    if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(SipError::BinaryGarbage);
    }
    let is_sp = |b: &u8| *b == b' ' || *b == b'\t';
    if looks_like_version(line) {
        let v_end = line.iter().position(is_sp).unwrap_or(line.len());
        if !is_sip_version(&line[..v_end]) {
            return Err(SipError::BadVersion);
        }
        let rest = &line[v_end..];
        let c_start = rest.iter().position(|b| !is_sp(b)).unwrap_or(rest.len());
        let rest = &rest[c_start..];
        let c_end = rest.iter().position(is_sp).unwrap_or(rest.len());
        let code = &rest[..c_end];
        let code = match parse_u64(code) {
            Some(c) if code.len() == 3 && (100..=699).contains(&c) => c as u16,
            _ => return Err(SipError::BadStatusCode),
        };
        return Ok(StartLine::Response {
            code,
            reason: trim(&rest[c_end..]),
        });
    }
    let m_end = line.iter().position(is_sp).ok_or(SipError::BadStartLine)?;
    let method = &line[..m_end];
    if method.is_empty() || !method.iter().all(|&b| is_token(b)) {
        return Err(SipError::BadStartLine);
    }
    // Extra spaces between the parts and after the version are tolerated (RFC 4475
    // lwsstart, trws): the version is the last word, the URI all that is between.
    let rest = trim(&line[m_end..]);
    let v_start = rest.iter().rposition(is_sp).ok_or(SipError::BadStartLine)? + 1;
    let version = &rest[v_start..];
    if !is_sip_version(version) {
        return Err(if looks_like_version(version) {
            SipError::BadVersion
        } else {
            SipError::BadStartLine
        });
    }
    let mut uri = trim(&rest[..v_start]);
    if uri.is_empty() {
        return Err(SipError::BadStartLine);
    }
    if let Some(inner) = uri.strip_prefix(b"<").and_then(|u| u.strip_suffix(b">")) {
        defects.insert(Defect::RequestUriBrackets);
        uri = trim(inner);
    }
    if uri.iter().any(|&b| b == b' ' || b == b'\t') {
        defects.insert(Defect::RequestUriWhitespace);
    }
    Ok(StartLine::Request { method, uri })
}

impl<'a> SipMessage<'a> {
    /// Scans one message. Work is linear in the input and bounded by [`MAX_HEADERS`] and
    /// [`MAX_LINE`]; no allocation.
    pub fn parse_framed(buf: &'a [u8], framing: Framing) -> Result<(Self, usize), SipError> {
        // RFC 3261 7.5 / 5626: CRLFs before a message are keep-alives, not errors.
        let lead = buf
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .ok_or(SipError::Empty)?;
        if !(0x21..0x7f).contains(&buf[lead]) {
            return Err(SipError::BinaryGarbage);
        }
        let mut defects = Defects::default();

        let (sl_end, mut pos, sl_has_lf) = line_at(buf, lead);
        if sl_end - lead > MAX_LINE {
            return Err(SipError::LineTooLong);
        }
        if !sl_has_lf && framing == Framing::Stream {
            return Err(SipError::Incomplete);
        }
        let start = parse_start_line(&buf[lead..sl_end], &mut defects)?;

        let headers_start = pos;
        let mut headers_end = pos;
        let mut body_start = None;
        let mut known: [Option<&'a [u8]>; KNOWN] = [None; KNOWN];
        let mut header_count = 0usize;
        let mut via_count = 0usize;
        let mut content_length: Option<usize> = None;
        // The header being read: name and value span (value grows over folded lines).
        let mut cur: Option<(&'a [u8], usize, usize)> = None;

        let mut finish = |name: &'a [u8],
                          vs: usize,
                          ve: usize,
                          known: &mut [Option<&'a [u8]>; KNOWN]|
         -> Result<(), SipError> {
            header_count += 1;
            if header_count > MAX_HEADERS {
                return Err(SipError::TooManyHeaders);
            }
            let value = trim(&buf[vs..ve]);
            let Some(k) = classify(name) else {
                return Ok(());
            };
            match k {
                Known::Via => {
                    via_count += CommaList::new(value)
                        .filter(|v| v.first().is_some_and(|&b| is_token(b)))
                        .count();
                }
                Known::ContentLength => {
                    let n = parse_u64(value)
                        .and_then(|n| usize::try_from(n).ok())
                        .filter(|&n| n <= u32::MAX as usize)
                        .ok_or(SipError::BadContentLength)?;
                    if content_length.is_some_and(|c| c != n) {
                        return Err(SipError::ConflictingContentLength);
                    }
                    content_length = Some(n);
                }
                _ => {}
            }
            let slot = &mut known[k as usize];
            match slot {
                None => *slot = Some(value),
                Some(prev) => {
                    let dialog_id =
                        matches!(k, Known::CallId | Known::CSeq | Known::From | Known::To);
                    if dialog_id && *prev != value {
                        return Err(SipError::ConflictingHeaders);
                    }
                }
            }
            Ok(())
        };

        while pos < buf.len() {
            let (end, next, has_lf) = line_at(buf, pos);
            if end - pos > MAX_LINE {
                return Err(SipError::LineTooLong);
            }
            if !has_lf && framing == Framing::Stream {
                return Err(SipError::Incomplete);
            }
            if end == pos {
                body_start = Some(next);
                break;
            }
            let first = buf[pos];
            if first == b' ' || first == b'\t' {
                // A folded line continues the header before it (RFC 3261 7.3.1).
                match cur.as_mut() {
                    Some((_, _, ve)) => *ve = end,
                    None => return Err(SipError::MalformedHeader),
                }
            } else {
                if let Some((name, vs, ve)) = cur.take() {
                    finish(name, vs, ve, &mut known)?;
                }
                let line = &buf[pos..end];
                let colon = memchr::memchr(b':', line).ok_or(SipError::MalformedHeader)?;
                // `Call-ID :` and `Via  :` put white space before the colon.
                let name = trim(&line[..colon]);
                if name.is_empty() || !name.iter().all(|&b| is_token(b)) {
                    return Err(SipError::MalformedHeader);
                }
                cur = Some((name, pos + colon + 1, end));
            }
            headers_end = end;
            pos = next;
        }
        if let Some((name, vs, ve)) = cur.take() {
            finish(name, vs, ve, &mut known)?;
        }
        let body_start = match body_start {
            Some(b) => b,
            None if framing == Framing::Stream => return Err(SipError::Incomplete),
            None => {
                defects.insert(Defect::HeadersUnterminated);
                buf.len()
            }
        };

        let call_id = known[Known::CallId as usize]
            .filter(|v| !v.is_empty())
            .ok_or(SipError::MissingCallId)?;
        let cseq = CSeq::parse(known[Known::CSeq as usize].ok_or(SipError::MissingCSeq)?)
            .ok_or(SipError::BadCSeq)?;
        let from = known[Known::From as usize]
            .and_then(NameAddr::parse)
            .ok_or(SipError::MissingFrom)?;
        let to = known[Known::To as usize]
            .and_then(NameAddr::parse)
            .ok_or(SipError::MissingTo)?;
        if from.unbalanced_quote || to.unbalanced_quote {
            defects.insert(Defect::UnbalancedQuote);
        }
        if let StartLine::Request { method, .. } = start {
            if method != cseq.method {
                return Err(SipError::CSeqMethodMismatch);
            }
        }
        let top_via = known[Known::Via as usize]
            .and_then(|v| CommaList::new(v).next())
            .and_then(Via::parse);
        if known[Known::Via as usize].is_some() && top_via.is_none() {
            defects.insert(Defect::BadVia);
        }

        let available = buf.len() - body_start;
        let body_len = match (content_length, framing) {
            (Some(n), _) if n <= available => n,
            (Some(n), Framing::Stream) => {
                return Err(if n > MAX_BODY {
                    SipError::BadContentLength
                } else {
                    SipError::Incomplete
                })
            }
            (Some(_), Framing::Datagram) => {
                defects.insert(Defect::ContentLengthExceedsData);
                available
            }
            (None, Framing::Stream) => return Err(SipError::MissingContentLength),
            (None, Framing::Datagram) => available,
        };
        let consumed = body_start + body_len;
        let msg = SipMessage {
            bytes: &buf[lead..consumed],
            start,
            header_block: &buf[headers_start..headers_end.max(headers_start)],
            header_count: header_count as u16,
            known,
            call_id,
            cseq,
            from,
            to,
            top_via,
            via_count: via_count.min(u16::MAX as usize) as u16,
            content_length,
            body: &buf[body_start..consumed],
            defects,
        };
        Ok((msg, consumed))
    }

    /// The message's bytes, start line to end of body (leading keep-alive CRLFs excluded).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn start_line(&self) -> StartLine<'a> {
        self.start
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    pub fn is_response(&self) -> bool {
        !self.is_request()
    }

    /// The request method token as sent (extension methods included); `None` for responses.
    pub fn method_bytes(&self) -> Option<&'a [u8]> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The request method as rsip's type; `None` for responses and extension methods.
    pub fn method(&self) -> Option<rsip::Method> {
        self.method_bytes().and_then(method_from_token)
    }

    pub fn request_uri(&self) -> Option<&'a [u8]> {
        match self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI typed: rsip's `Uri` when rsip reads it, our split otherwise.
    pub fn request_uri_parsed(&self) -> Option<RequestUri<'a>> {
        RequestUri::parse(self.request_uri()?)
    }

    pub fn status_code(&self) -> Option<u16> {
        match self.start {
            StartLine::Response { code, .. } => Some(code),
            StartLine::Request { .. } => None,
        }
    }

    /// The status as rsip's type (unknown codes become `StatusCode::Other`).
    pub fn status(&self) -> Option<rsip::StatusCode> {
        self.status_code().map(rsip::StatusCode::from)
    }

    /// The reason phrase; bytes, as some PBXs send it in their own language.
    pub fn reason_phrase(&self) -> Option<&'a [u8]> {
        match self.start {
            StartLine::Response { reason, .. } => Some(reason),
            StartLine::Request { .. } => None,
        }
    }

    pub fn call_id(&self) -> &'a [u8] {
        self.call_id
    }

    pub fn call_id_lossy(&self) -> Cow<'a, str> {
        lossy(self.call_id)
    }

    pub fn cseq(&self) -> CSeq<'a> {
        self.cseq
    }

    pub fn from(&self) -> &NameAddr<'a> {
        &self.from
    }

    pub fn to(&self) -> &NameAddr<'a> {
        &self.to
    }

    pub fn from_tag(&self) -> Option<&'a [u8]> {
        self.from.tag()
    }

    pub fn to_tag(&self) -> Option<&'a [u8]> {
        self.to.tag()
    }

    /// The first Via value (the sender's hop).
    pub fn top_via(&self) -> Option<&Via<'a>> {
        self.top_via.as_ref()
    }

    /// Via values over all Via headers, comma-joined ones counted one by one.
    pub fn via_count(&self) -> usize {
        usize::from(self.via_count)
    }

    /// Every Via value, top first.
    pub fn vias(&self) -> impl Iterator<Item = Via<'a>> + 'a {
        self.header_values("Via")
            .flat_map(CommaList::new)
            .filter_map(Via::parse)
    }

    fn known(&self, k: Known) -> Option<&'a [u8]> {
        self.known[k as usize]
    }

    /// The first Contact (`*` in a REGISTER gives `None`).
    pub fn contact(&self) -> Option<NameAddr<'a>> {
        CommaList::new(self.known(Known::Contact)?)
            .next()
            .and_then(NameAddr::parse)
    }

    pub fn content_type(&self) -> Option<ContentType<'a>> {
        self.known(Known::ContentType).map(ContentType::parse)
    }

    /// The declared Content-Length (the body may be shorter; see [`Defect`]).
    pub fn content_length(&self) -> Option<usize> {
        self.content_length
    }

    pub fn max_forwards(&self) -> Option<u32> {
        self.known(Known::MaxForwards).and_then(parse_u32)
    }

    pub fn p_asserted_identity(&self) -> Option<NameAddr<'a>> {
        self.first_name_addr(Known::PAssertedIdentity)
    }

    pub fn remote_party_id(&self) -> Option<NameAddr<'a>> {
        self.first_name_addr(Known::RemotePartyId)
    }

    /// The first Diversion entry (the most recent redirection).
    pub fn diversion(&self) -> Option<NameAddr<'a>> {
        self.first_name_addr(Known::Diversion)
    }

    /// Every Diversion entry, most recent first.
    pub fn diversions(&self) -> impl Iterator<Item = NameAddr<'a>> + 'a {
        self.header_values("Diversion")
            .flat_map(CommaList::new)
            .filter_map(NameAddr::parse)
    }

    /// The Reason header (RFC 3326), raw: `Q.850;cause=16;text="Normal call clearing"`.
    pub fn reason_header(&self) -> Option<&'a [u8]> {
        self.known(Known::Reason)
    }

    pub fn refer_to(&self) -> Option<NameAddr<'a>> {
        self.known(Known::ReferTo).and_then(NameAddr::parse)
    }

    pub fn referred_by(&self) -> Option<NameAddr<'a>> {
        self.known(Known::ReferredBy).and_then(NameAddr::parse)
    }

    pub fn replaces(&self) -> Option<Replaces<'a>> {
        self.known(Known::Replaces).and_then(Replaces::parse)
    }

    /// Session-Expires delta seconds (RFC 4028).
    pub fn session_expires(&self) -> Option<u32> {
        let v = self.known(Known::SessionExpires)?;
        let end = memchr::memchr(b';', v).unwrap_or(v.len());
        parse_u32(trim(&v[..end]))
    }

    /// User-Agent, or Server in a response: which PBX or phone sent this.
    pub fn user_agent(&self) -> Option<&'a [u8]> {
        self.known(Known::UserAgent).or(self.known(Known::Server))
    }

    fn first_name_addr(&self, k: Known) -> Option<NameAddr<'a>> {
        CommaList::new(self.known(k)?)
            .next()
            .and_then(NameAddr::parse)
    }

    /// The first value of a header by name, case-insensitive, compact forms matched both
    /// ways (`header("Call-ID")` finds `i:`). Folded lines come back as sent (with their
    /// CRLF and indentation inside), trimmed at both ends.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.header_values(name).next()
    }

    /// Every value of a header by name, in order.
    pub fn header_values<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + 'n
    where
        'a: 'n,
    {
        self.headers()
            .filter(move |(n, _)| header_name_eq(n, name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// All headers as (name, value) in order.
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter {
            block: self.header_block,
            pos: 0,
        }
    }

    pub fn header_count(&self) -> usize {
        usize::from(self.header_count)
    }

    /// The body: Content-Length bytes, or what arrived when the datagram is shorter.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// The SDP: the body when it is application/sdp, or the application/sdp part of a
    /// multipart body (SIP-I/SIP-T gateways send SDP beside ISUP).
    pub fn sdp(&self) -> Option<&'a [u8]> {
        let ct = self.content_type()?;
        if ct.is_sdp() {
            return Some(self.body);
        }
        if ct.is_multipart() {
            let parts = multipart_parts(self.body, ct.boundary()?);
            return parts
                .into_iter()
                .find(|p| p.content_type().is_some_and(|c| c.is_sdp()))
                .map(|p| p.body);
        }
        None
    }

    /// What the scanner tolerated in this message.
    pub fn defects(&self) -> Defects {
        self.defects
    }
}

/// The header lines of a validated message, folds joined.
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    block: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a [u8], &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let b = self.block;
        loop {
            if self.pos >= b.len() {
                return None;
            }
            let (end, mut next, _) = line_at(b, self.pos);
            let line = &b[self.pos..end];
            let Some(colon) = memchr::memchr(b':', line).filter(|_| !is_lws(line[0])) else {
                // Only reachable on bytes the scanner did not validate: skip the line.
                self.pos = next;
                continue;
            };
            let name = trim(&line[..colon]);
            let vs = self.pos + colon + 1;
            let mut ve = end;
            while next < b.len() && (b[next] == b' ' || b[next] == b'\t') {
                let (e, n, _) = line_at(b, next);
                ve = e;
                next = n;
            }
            self.pos = next;
            return Some((name, trim(&b[vs..ve])));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_distinct() {
        let mut r: Vec<_> = SipError::ALL.iter().map(|e| e.reason()).collect();
        r.sort();
        r.dedup();
        assert_eq!(r.len(), SipError::ALL.len());
    }

    #[test]
    fn method_tokens_are_case_sensitive() {
        assert_eq!(method_from_token(b"INVITE"), Some(rsip::Method::Invite));
        assert_eq!(method_from_token(b"invite"), None);
        assert_eq!(method_from_token(b"RE%47IST%45R"), None);
        for m in rsip::Method::all() {
            assert_eq!(method_from_token(m.to_string().as_bytes()), Some(m));
        }
    }
}
