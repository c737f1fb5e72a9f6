//! Bytes -> `sip::parse` (datagram framing) and `sip::parse_stream` (stream framing, each
//! message after the other), then every accessor of each message, the lazily parsed
//! ones (Via list, URIs, rsip types, multipart SDP) included.

use super::super::touch;
use calltap::sip::{self, RequestUri, SipMessage};
use std::hint::black_box;

fn name_addr(n: Option<&sip::NameAddr<'_>>) {
    let Some(n) = n else { return };
    black_box((n.tag(), n.param(b"x"), n.display_name_lossy()));
    if let Some(parts) = n.uri_parts() {
        black_box((parts.param(b"user"), parts.is_tel()));
    }
}

fn every_accessor(msg: &SipMessage<'_>, input: &[u8]) {
    let all = msg.as_bytes();
    assert!(all.len() <= input.len());
    black_box((msg.start_line(), msg.is_request(), msg.is_response()));
    black_box((msg.method_bytes(), msg.method(), msg.request_uri()));
    if let Some(uri) = msg.request_uri_parsed() {
        black_box((uri.is_rsip(), uri.user(), uri.host(), uri.port()));
        if let RequestUri::Fallback(p) = uri {
            black_box(p.is_tel());
        }
    }
    black_box((msg.status_code(), msg.status(), msg.reason_phrase()));
    black_box((msg.call_id(), msg.call_id_lossy()));
    let cseq = msg.cseq();
    black_box((cseq.number, cseq.method_typed()));
    name_addr(Some(msg.from()));
    name_addr(Some(msg.to()));
    black_box((msg.from_tag(), msg.to_tag()));
    if let Some(v) = msg.top_via() {
        black_box((
            v.branch(),
            v.received(),
            v.received_ip(),
            v.rport(),
            v.host_ip(),
        ));
    }
    black_box(msg.via_count());
    for v in msg.vias().take(64) {
        black_box((v.branch(), v.received_ip(), v.host_ip()));
    }
    name_addr(msg.contact().as_ref());
    if let Some(ct) = msg.content_type() {
        black_box((ct.is_sdp(), ct.is_multipart(), ct.boundary()));
    }
    black_box((msg.content_length(), msg.max_forwards()));
    name_addr(msg.p_asserted_identity().as_ref());
    name_addr(msg.remote_party_id().as_ref());
    name_addr(msg.diversion().as_ref());
    for d in msg.diversions().take(64) {
        name_addr(Some(&d));
    }
    black_box(msg.reason_header());
    name_addr(msg.refer_to().as_ref());
    name_addr(msg.referred_by().as_ref());
    black_box(msg.replaces());
    black_box((msg.session_expires(), msg.user_agent()));
    black_box((msg.header("Call-ID"), msg.header("x-fuzz"), msg.header("v")));
    let mut headers = 0;
    for (name, value) in msg.headers() {
        black_box((touch(name), touch(value)));
        headers += 1;
        assert!(
            headers <= sip::MAX_HEADERS + 1,
            "more headers than MAX_HEADERS"
        );
    }
    black_box((msg.header_count(), touch(msg.body())));
    if let Some(sdp) = msg.sdp() {
        black_box(sip::SessionDescription::parse(sdp).ok());
    }
    for d in msg.defects().iter() {
        black_box(d.reason());
    }
}

/// One input through the target.
pub fn run(data: &[u8]) {
    match sip::parse(data) {
        Ok((msg, used)) => {
            assert!(used <= data.len());
            every_accessor(&msg, data);
        }
        Err(e) => {
            black_box((e.reason(), e.to_string()));
        }
    }
    let mut rest = data;
    while !rest.is_empty() {
        match sip::parse_stream(rest) {
            Ok((msg, used)) => {
                every_accessor(&msg, rest);
                // Each message takes at least one byte, or the stream never advances.
                assert!(
                    used > 0 && used <= rest.len(),
                    "used {used} of {}",
                    rest.len()
                );
                rest = &rest[used..];
            }
            Err(e) => {
                black_box(e.reason());
                break;
            }
        }
    }
}
