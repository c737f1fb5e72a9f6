//! SIP and SDP parsing for the engine's hot path.
//!
//! Why our own scanner and not rsip's parser: every datagram on the SIP ports goes through
//! here. Measured on this crate's corpus (benches/sip_parse.rs, RFC 4475's 13 well-formed
//! messages plus a typical INVITE/180/200/ACK/BYE/200 set, 2-core dev VM, release build):
//!
//! | corpus                     | scanner msg/s | rsip msg/s | ratio | fields complete |
//! |----------------------------|---------------|------------|-------|-----------------|
//! | typical call (7 messages)  | 1.0-1.3 M     | 0.18-0.23 M| 5.6x  | 7/7 vs 7/7      |
//! | RFC 4475 well-formed (13)  | 0.55-0.90 M   | 0.18-0.24 M| 3-4x  | 13/13 vs 6/13   |
//!
//! (rsip's torture figure flatters it: it gives up early on the 7 it cannot read.)
//! rsip 0.4 also refuses or misreads what PBXs send: compact headers are "missing", `tel:`
//! and IPv6 Request-URIs do not parse, a Via with an IPv6 `received=` loses its branch,
//! and the body is all bytes after the headers whatever Content-Length says (each case
//! has a test in tests/sip_torture.rs calling rsip, so the claim stays checked). So the
//! scanner frames and indexes the message itself, and rsip supplies the types where it
//! accepts the input: `rsip::Method`, `rsip::StatusCode`, and `rsip::Uri` for the
//! Request-URI with our split as the fallback.

pub mod fields;
pub mod message;
pub mod sdp;
pub mod text;
pub mod uri;

pub use fields::{multipart_parts, BodyPart, CSeq, ContentType, NameAddr, Replaces, Via};
pub use message::{
    expand_compact, header_name_eq, parse, parse_stream, Defect, Defects, Framing, HeaderIter,
    SipError, SipMessage, StartLine, MAX_BODY, MAX_HEADERS, MAX_LINE,
};
pub use sdp::{Direction, MediaDescription, RtcpAttr, RtpMap, SdpError, SessionDescription};
pub use text::{lossy, method_from_token, param, trim, unescape_quoted, CommaList, Params};
pub use uri::{RequestUri, UriParts};
