//! The SIP scanner against RFC 4475's torture messages, what real PBXs send, and random
//! mutations; and the cases where rsip alone would lose the call.

#[path = "support/skip.rs"]
mod skip;

use calltap::sip::{
    self, parse, parse_stream, Defect, Direction, RequestUri, SessionDescription, SipError,
    SipMessage, Via,
};
use std::convert::TryFrom;
use std::path::PathBuf;

fn torture_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/sip-torture");
    if dir.is_dir() {
        Some(dir)
    } else {
        skip::skip(format!(
            "{} is absent; torture tests skipped",
            dir.display()
        ));
        None
    }
}

fn load(dir: &std::path::Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(format!("{name}.dat"))).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn ok(bytes: &[u8]) -> (SipMessage<'_>, usize) {
    match parse(bytes) {
        Ok(m) => m,
        Err(e) => panic!(
            "refused ({}): {}",
            e.reason(),
            String::from_utf8_lossy(bytes)
        ),
    }
}

// ---------------------------------------------------------------------------------------
// RFC 4475 3.1.1: the 13 well-formed messages.

/// What each well-formed message must give, written from the messages of RFC 4475.
struct WellFormed {
    file: &'static str,
    /// Request method token, or "" for a response.
    method: &'static [u8],
    status: Option<u16>,
    call_id: &'static [u8],
    cseq: (u32, &'static [u8]),
    from_tag: Option<&'static [u8]>,
    to_tag: Option<&'static [u8]>,
    branch: Option<&'static [u8]>,
    via_count: usize,
    body_len: usize,
}

const WELL_FORMED: [WellFormed; 13] = [
    WellFormed {
        // 3.1.1.1: white space and folding everywhere, compact forms, odd case.
        file: "wsinv",
        method: b"INVITE",
        status: None,
        call_id: b"wsinv.ndaksdj@192.0.2.1",
        cseq: (9, b"INVITE"),
        from_tag: Some(b"98asjd8"),
        to_tag: Some(b"1918181833n"),
        branch: Some(b"390skdjuw"),
        via_count: 3,
        body_len: 150,
    },
    WellFormed {
        // 3.1.1.2: every token character in the method and the tags.
        file: "intmeth",
        method: b"!interesting-Method0123456789_*+`.%indeed'~",
        status: None,
        call_id: b"intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
        cseq: (139122385, b"!interesting-Method0123456789_*+`.%indeed'~"),
        from_tag: Some(b"_token~1'+`*%!-."),
        to_tag: None,
        branch: Some(b"z9hG4bK-.!%66*_+`'~"),
        via_count: 1,
        body_len: 0,
    },
    WellFormed {
        // 3.1.1.3: escapes in URIs; `i:` and `C:` compact forms.
        file: "esc01",
        method: b"INVITE",
        status: None,
        call_id: b"esc01.239409asdfakjkn23onasd0-3234",
        cseq: (234234, b"INVITE"),
        from_tag: Some(b"938"),
        to_tag: None,
        branch: Some(b"z9hG4bKkdjuw"),
        via_count: 1,
        body_len: 150,
    },
    WellFormed {
        // 3.1.1.4: escaped NULs in URIs.
        file: "escnull",
        method: b"REGISTER",
        status: None,
        call_id: b"escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd",
        cseq: (14398234, b"REGISTER"),
        from_tag: Some(b"839923423"),
        to_tag: None,
        branch: Some(b"z9hG4bKkdjuw"),
        via_count: 1,
        body_len: 0,
    },
    WellFormed {
        // 3.1.1.5: `RE%47IST%45R` is an extension method, not REGISTER.
        file: "esc02",
        method: b"RE%47IST%45R",
        status: None,
        call_id: b"esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf",
        cseq: (29344, b"RE%47IST%45R"),
        from_tag: Some(b"f232jadfj23"),
        to_tag: None,
        branch: Some(b"z9hG4bK209%fzsnel234"),
        via_count: 1,
        body_len: 0,
    },
    WellFormed {
        // 3.1.1.6: no space between display name and `<`.
        file: "lwsdisp",
        method: b"OPTIONS",
        status: None,
        call_id: b"lwsdisp.1234abcd@funky.example.com",
        cseq: (60, b"OPTIONS"),
        from_tag: Some(b"323"),
        to_tag: None,
        branch: Some(b"z9hG4bKkdjuw"),
        via_count: 1,
        body_len: 0,
    },
    WellFormed {
        // 3.1.1.7: long values, 34 Vias in every spelling; the top one has no branch.
        file: "longreq",
        method: b"INVITE",
        status: None,
        call_id: b"longreq.onereallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallylongcallid",
        cseq: (3882340, b"INVITE"),
        from_tag: Some(b"12982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982424"),
        to_tag: None,
        branch: None,
        via_count: 34,
        body_len: 150,
    },
    WellFormed {
        // 3.1.1.8: a REGISTER, then bytes that look like an INVITE after Content-Length: 0.
        file: "dblreq",
        method: b"REGISTER",
        status: None,
        call_id: b"dblreq.0ha0isndaksdj99sdfafnl3lk233412",
        cseq: (8, b"REGISTER"),
        from_tag: Some(b"43251j3j324"),
        to_tag: None,
        branch: Some(b"z9hG4bKkdjuw23492"),
        via_count: 1,
        body_len: 0,
    },
    WellFormed {
        // 3.1.1.9: a `;` in the Request-URI's user part.
        file: "semiuri",
        method: b"OPTIONS",
        status: None,
        call_id: b"semiuri.0ha0isndaksdj",
        cseq: (8, b"OPTIONS"),
        from_tag: Some(b"33242"),
        to_tag: None,
        branch: Some(b"z9hG4bKkdjuw"),
        via_count: 1,
        body_len: 0,
    },
    WellFormed {
        // 3.1.1.10: UDP, SCTP, TLS, an unknown transport and TCP in the Vias.
        file: "transports",
        method: b"OPTIONS",
        status: None,
        call_id: b"transports.kijh4akdnaqjkwendsasfdj",
        cseq: (60, b"OPTIONS"),
        from_tag: Some(b"323"),
        to_tag: None,
        branch: Some(b"z9hG4bKkdjuw"),
        via_count: 5,
        body_len: 0,
    },
    WellFormed {
        // 3.1.1.11: a multipart body with binary content.
        file: "mpart01",
        method: b"MESSAGE",
        status: None,
        call_id: b"3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..",
        cseq: (1, b"MESSAGE"),
        from_tag: Some(b"2fb0dcc9"),
        to_tag: None,
        branch: Some(b"z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-"),
        via_count: 1,
        body_len: 553,
    },
    WellFormed {
        // 3.1.1.12: a UTF-8 reason phrase.
        file: "unreason",
        method: b"",
        status: Some(200),
        call_id: b"unreason.1234ksdfak3j2erwedfsASdf",
        cseq: (35, b"INVITE"),
        from_tag: Some(b"11141343"),
        to_tag: Some(b"2229"),
        branch: Some(b"z9hG4bK1324923"),
        via_count: 1,
        body_len: 154,
    },
    WellFormed {
        // 3.1.1.13: an empty reason phrase.
        file: "noreason",
        method: b"",
        status: Some(100),
        call_id: b"noreason.asndj203insdf99223ndf",
        cseq: (35, b"INVITE"),
        from_tag: Some(b"39ansfi3"),
        to_tag: Some(b"902jndnke3"),
        branch: Some(b"z9hG4bK2398ndaoe"),
        via_count: 1,
        body_len: 0,
    },
];

#[test]
fn rfc4475_well_formed_messages_parse_with_the_right_fields() {
    let Some(dir) = torture_dir() else { return };
    for w in &WELL_FORMED {
        let bytes = load(&dir, w.file);
        let (m, consumed) = match parse(&bytes) {
            Ok(m) => m,
            Err(e) => panic!("{}: refused: {}", w.file, e.reason()),
        };
        let f = w.file;
        match w.status {
            Some(code) => assert_eq!(m.status_code(), Some(code), "{f}"),
            None => assert_eq!(m.method_bytes(), Some(w.method), "{f}"),
        }
        assert_eq!(m.call_id(), w.call_id, "{f} Call-ID");
        assert_eq!((m.cseq().number, m.cseq().method), w.cseq, "{f} CSeq");
        assert_eq!(m.from_tag(), w.from_tag, "{f} From tag");
        assert_eq!(m.to_tag(), w.to_tag, "{f} To tag");
        assert_eq!(m.top_via().and_then(Via::branch), w.branch, "{f} branch");
        assert_eq!(m.via_count(), w.via_count, "{f} Via count");
        assert_eq!(m.body().len(), w.body_len, "{f} body");
        assert!(m.defects().is_empty(), "{f}: {:?}", m.defects());
        if f != "dblreq" {
            assert_eq!(consumed, bytes.len(), "{f} consumed");
        }
    }
}

#[test]
fn wsinv_reads_through_folds_and_spaces() {
    let Some(dir) = torture_dir() else { return };
    let b = load(&dir, "wsinv");
    let (m, _) = ok(&b);
    assert_eq!(m.method(), Some(rsip::Method::Invite));
    assert_eq!(
        m.request_uri(),
        Some(&b"sip:vivekg@chair-dnrc.example.com;unknownparam"[..])
    );
    assert_eq!(m.max_forwards(), Some(68));
    let via = m.top_via().unwrap();
    assert_eq!((via.transport, via.host), (&b"UDP"[..], &b"192.0.2.2"[..]));
    let all: Vec<_> = m
        .vias()
        .map(|v| (v.transport, v.host, v.branch()))
        .collect();
    assert_eq!(
        all[1..],
        [
            (
                &b"TCP"[..],
                &b"spindle.example.com"[..],
                Some(&b"z9hG4bK9ikj8"[..])
            ),
            (
                &b"UDP"[..],
                &b"192.168.255.111"[..],
                Some(&b"z9hG4bK30239"[..])
            ),
        ]
    );
    assert_eq!(
        m.from().display_name_lossy().as_deref(),
        Some("J Rosenberg \\\"")
    );
    assert_eq!(m.to().uri, b"sip:vivekg@chair-dnrc.example.com");
    let contact = m.contact().unwrap();
    assert_eq!(
        contact.display_name_lossy().as_deref(),
        Some("Quoted string \"\"")
    );
    assert_eq!(contact.uri, b"sip:jdrosen@example.com");
    assert_eq!(contact.param(b"q"), Some(Some(&b"0.33"[..])));
    assert_eq!(m.header("Subject"), Some(&b""[..]));
    assert!(m.content_type().unwrap().is_sdp());
    let sdp = SessionDescription::parse(m.sdp().unwrap()).unwrap();
    assert_eq!(
        sdp.audio_rtp_addr(),
        Some("192.0.2.4:49217".parse().unwrap())
    );
}

#[test]
fn intmeth_keeps_every_token_character_and_bytes_in_names() {
    let Some(dir) = torture_dir() else { return };
    let b = load(&dir, "intmeth");
    let (m, _) = ok(&b);
    // An extension method: not one of rsip's, kept as bytes.
    assert_eq!(m.method(), None);
    assert!(m.cseq().method_typed().is_none());
    let to_name = sip::unescape_quoted(m.to().display_name.unwrap()).into_owned();
    assert_eq!(to_name, b"BEL:\x07 NUL:\x00 DEL:\x7f");
    assert_eq!(
        m.from().display_name,
        Some(&b"token1~` token2'+_ token3*%!.-"[..])
    );
    // A quoted parameter value with UTF-8 and no tag confusion.
    let p = m.from().param(b"fromParam''~+*_!.-%").unwrap().unwrap();
    assert_eq!(std::str::from_utf8(p).unwrap(), "работающий");
    assert_eq!(
        m.header("extensionHeader-!.%*+_`'~"),
        Some("\u{feff}大停電".as_bytes()) // a BOM, then UTF-8
    );
}

#[test]
fn esc01_esc02_escnull_keep_escapes_and_compact_forms() {
    let Some(dir) = torture_dir() else { return };
    let b = load(&dir, "esc01");
    let (m, _) = ok(&b);
    assert_eq!(
        m.request_uri(),
        Some(&b"sip:sips%3Auser%40example.com@example.net"[..])
    );
    assert!(m.content_type().unwrap().is_sdp(), "C: is Content-Type");
    assert_eq!(
        m.contact().unwrap().uri,
        b"sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31"
    );
    assert_eq!(
        m.header("i"),
        Some(&b"esc01.239409asdfakjkn23onasd0-3234"[..])
    );

    let b = load(&dir, "esc02");
    let (m, _) = ok(&b);
    assert_eq!(m.method(), None, "RE%47IST%45R is not REGISTER");
    assert_eq!(m.contact().unwrap().uri, b"sip:alias1@host1.example.com");
    assert_eq!(m.header_values("Contact").count(), 2);
    assert_eq!(
        m.header("C%6Fntact"),
        Some(&b"<sip:alias2@host2.example.com>"[..])
    );
    assert_eq!(m.from().display_name, Some(&b"%Z%45"[..]));

    let b = load(&dir, "escnull");
    let (m, _) = ok(&b);
    assert_eq!(m.to().uri, b"sip:null-%00-null@example.com");
    assert_eq!(m.header_values("m").count(), 2);
    assert_eq!(m.content_length(), Some(0));
}

#[test]
fn dblreq_on_udp_is_one_register_and_the_invite_bytes_are_not_a_call() {
    let Some(dir) = torture_dir() else { return };
    let b = load(&dir, "dblreq");
    let (m, consumed) = ok(&b);
    assert_eq!(m.method(), Some(rsip::Method::Register));
    assert!(m.body().is_empty());
    // The datagram goes on past Content-Length: 0; the consumed count says where the
    // message ended, and on UDP the engine drops the rest.
    assert!(consumed < b.len());
    assert!(b[consumed..].starts_with(b"\r\nINVITE sip:joe@example.com"));
    assert!(m.as_bytes().ends_with(b"Content-Length: 0\r\n\r\n"));
    assert!(!m.as_bytes().windows(6).any(|w| w == b"INVITE"));
    // Had it come over TCP, the rest would be the next message, framed the same way.
    let (first, n) = parse_stream(&b).unwrap();
    assert_eq!(first.call_id(), m.call_id());
    let (next, _) = parse_stream(&b[n..]).unwrap();
    assert_eq!(next.method(), Some(rsip::Method::Invite));
}

#[test]
fn semiuri_and_transports_and_longreq() {
    let Some(dir) = torture_dir() else { return };
    let b = load(&dir, "semiuri");
    let (m, _) = ok(&b);
    let ru = m.request_uri_parsed().unwrap();
    assert!(!ru.is_rsip(), "rsip takes `user` for the host here");
    assert_eq!(ru.user().as_deref(), Some("user;par=u%40example.net"));
    assert_eq!(ru.host(), "example.com");
    assert!(m.header("Accept").unwrap().ends_with(b"message/sipfrag"));

    let b = load(&dir, "transports");
    let (m, _) = ok(&b);
    let t: Vec<_> = m.vias().map(|v| v.transport).collect();
    assert_eq!(t, [&b"UDP"[..], b"SCTP", b"TLS", b"UNKNOWN", b"TCP"]);

    let b = load(&dir, "longreq");
    let (m, _) = ok(&b);
    let vias: Vec<_> = m.vias().collect();
    assert_eq!(vias[0].host, b"sip33.example.com");
    assert_eq!(vias[33].host, b"host.example.com");
    assert_eq!(vias[33].received(), Some(&b"192.0.2.5"[..]));
    assert!(vias[33].branch().unwrap().starts_with(b"verylonglong"));
    assert_eq!(m.to().uri_parts().unwrap().port, Some(6000));
    assert!(m.to().display_name.unwrap().ends_with(b"proportion"));
}

#[test]
fn mpart01_splits_its_multipart_body() {
    let Some(dir) = torture_dir() else { return };
    let b = load(&dir, "mpart01");
    let (m, _) = ok(&b);
    let ct = m.content_type().unwrap();
    assert!(ct.is_multipart());
    assert_eq!(ct.boundary(), Some(&b"7a9cbec02ceef655"[..]));
    let parts = sip::multipart_parts(m.body(), ct.boundary().unwrap());
    assert_eq!(parts.len(), 2);
    assert!(parts[0].content_type().unwrap().is("text/plain"));
    assert_eq!(parts[0].body, b"Hello");
    assert!(parts[1]
        .content_type()
        .unwrap()
        .is("application/octet-stream"));
    assert!(parts[1].body.len() > 300);
    assert_eq!(m.sdp(), None, "no SDP part");
    let via = m.top_via().unwrap();
    assert_eq!((via.host, via.port), (&b"127.0.0.1"[..], Some(5070)));
    assert_eq!(via.rport(), Some(None));
    assert_eq!(m.user_agent(), Some(&b"SIPimp.org/0.2.5 (curses)"[..]));
}

#[test]
fn unreason_and_noreason_responses() {
    let Some(dir) = torture_dir() else { return };
    let b = load(&dir, "unreason");
    let (m, _) = ok(&b);
    assert_eq!(m.status(), Some(rsip::StatusCode::OK));
    let reason = std::str::from_utf8(m.reason_phrase().unwrap()).unwrap();
    assert!(reason.starts_with("= 2**3 * 5**2 но сто"), "{reason}");
    assert_eq!(m.cseq().method_typed(), Some(rsip::Method::Invite));

    let b = load(&dir, "noreason");
    let (m, _) = ok(&b);
    assert_eq!(m.status(), Some(rsip::StatusCode::Trying));
    assert_eq!(m.reason_phrase(), Some(&b""[..]));
}

// ---------------------------------------------------------------------------------------
// RFC 4475 3.1.2, 3.2, 3.3, 3.4: the other 36. Parsed tolerantly (and what was
// recovered) or refused with a counted reason.

enum Outcome {
    /// Parsed; the check asserts what was recovered, and the defects expected.
    Parsed(&'static [Defect], fn(&SipMessage<'_>)),
    Refused(SipError),
}

fn other_cases() -> Vec<(&'static str, Outcome)> {
    use Outcome::*;
    vec![
        (
            "badaspec",
            Parsed(&[], |m| {
                // `< sip:t.watson@example.org >`: the URI inside the spaces.
                assert_eq!(m.to().uri, b"sip:t.watson@example.org");
                assert_eq!(
                    m.to().display_name_lossy().as_deref(),
                    Some("Watson, Thomas")
                );
            }),
        ),
        (
            "badbranch",
            Parsed(&[], |m| {
                assert_eq!(m.top_via().unwrap().branch(), Some(&b"z9hG4bK"[..]));
            }),
        ),
        (
            "baddate",
            Parsed(&[], |m| {
                assert_eq!(
                    m.header("Date"),
                    Some(&b"Fri, 01 Jan 2010 16:00:00 EST"[..])
                );
                assert_eq!(m.body().len(), 150);
            }),
        ),
        (
            "baddn",
            Parsed(&[Defect::HeadersUnterminated], |m| {
                // Unquoted display names with commas; the file also ends without an empty line.
                assert_eq!(m.from().display_name, Some(&b"Bell, Alexander"[..]));
                assert_eq!(m.from_tag(), Some(&b"43"[..]));
                assert_eq!(m.to().display_name, Some(&b"Watson, Thomas"[..]));
                assert_eq!(m.cseq().number, 3923239);
            }),
        ),
        (
            "badinv01",
            Parsed(&[], |m| {
                // `Via: SIP/2.0/UDP 192.0.2.15;;,;,,`: the host survives, no branch, one value.
                let v = m.top_via().unwrap();
                assert_eq!((v.host, v.branch()), (&b"192.0.2.15"[..], None));
                assert_eq!(m.via_count(), 1);
                assert_eq!(m.contact().unwrap().uri, b"sip:joe@example.org");
                assert_eq!(m.body().len(), 152);
            }),
        ),
        ("badvers", Refused(SipError::BadVersion)),
        (
            "bcast",
            Parsed(&[], |m| {
                assert_eq!(m.status_code(), Some(200));
                assert_eq!(m.via_count(), 2);
                assert_eq!(m.vias().nth(1).unwrap().host, b"255.255.255.255");
            }),
        ),
        (
            "bext01",
            Parsed(&[], |m| {
                assert!(m.header("Require").is_some());
                assert_eq!(m.top_via().unwrap().transport, b"TLS");
            }),
        ),
        ("bigcode", Refused(SipError::BadStatusCode)),
        (
            "clerr",
            Parsed(&[Defect::ContentLengthExceedsData], |m| {
                // Content-Length 9999 on a datagram that holds 154: headers and what arrived.
                assert_eq!(m.content_length(), Some(9999));
                assert_eq!(m.body().len(), 154);
                assert_eq!(m.call_id(), b"clerr.0ha0isndaksdjweiafasdk3");
            }),
        ),
        (
            "cparam01",
            Parsed(&[], |m| {
                // Without <>, `;unknownparam` belongs to the header, not the URI.
                let c = m.contact().unwrap();
                assert_eq!(c.uri, b"sip:+19725552222@gw1.example.net");
                assert_eq!(c.param(b"unknownparam"), Some(None));
            }),
        ),
        (
            "cparam02",
            Parsed(&[], |m| {
                let c = m.contact().unwrap();
                assert_eq!(c.uri, b"sip:+19725552222@gw1.example.net;unknownparam");
                assert_eq!(c.uri_parts().unwrap().param(b"unknownparam"), Some(None));
            }),
        ),
        (
            "escruri",
            Parsed(&[], |m| {
                let p = sip::UriParts::parse(m.request_uri().unwrap()).unwrap();
                assert_eq!(p.host, b"example.com");
                assert_eq!(p.headers, b"Route=%3Csip:example.com%3E");
            }),
        ),
        ("insuf", Refused(SipError::MissingCallId)),
        (
            "inv2543",
            Parsed(&[], |m| {
                // RFC 2543 style: no tags, no branch, no Content-Length: body = rest of datagram.
                assert_eq!(m.from_tag(), None);
                assert_eq!(m.top_via().unwrap().branch(), None);
                assert_eq!(m.content_length(), None);
                assert_eq!(m.body().len(), 105);
                let sdp = SessionDescription::parse(m.sdp().unwrap()).unwrap();
                assert_eq!(
                    sdp.audio_rtp_addr(),
                    Some("192.0.2.5:49217".parse().unwrap())
                );
            }),
        ),
        (
            "invut",
            Parsed(&[], |m| {
                assert!(m.content_type().unwrap().is("application/unknownformat"));
                assert_eq!(m.sdp(), None);
                assert_eq!(m.body().len(), 40);
            }),
        ),
        (
            "ltgtruri",
            Parsed(&[Defect::RequestUriBrackets], |m| {
                assert_eq!(m.request_uri(), Some(&b"sip:user@example.com"[..]));
            }),
        ),
        (
            "lwsruri",
            Parsed(&[Defect::RequestUriWhitespace], |m| {
                assert_eq!(m.request_uri(), Some(&b"sip:user@example.com; lr"[..]));
                assert_eq!(m.to_tag(), Some(&b"3xfe-9921883-z9f"[..]));
            }),
        ),
        (
            "lwsstart",
            Parsed(&[], |m| {
                assert_eq!(m.request_uri(), Some(&b"sip:user@example.com"[..]));
                assert_eq!(m.method(), Some(rsip::Method::Invite));
            }),
        ),
        ("mcl01", Refused(SipError::ConflictingContentLength)),
        ("mismatch01", Refused(SipError::CSeqMethodMismatch)),
        ("mismatch02", Refused(SipError::CSeqMethodMismatch)),
        ("multi01", Refused(SipError::ConflictingHeaders)),
        ("ncl", Refused(SipError::BadContentLength)),
        (
            "novelsc",
            Parsed(&[], |m| {
                let p = sip::UriParts::parse(m.request_uri().unwrap()).unwrap();
                assert_eq!(
                    (p.scheme, p.host, p.port),
                    (&b"soap.beep"[..], &b"192.0.2.103"[..], Some(3002))
                );
            }),
        ),
        (
            "quotbal",
            Parsed(&[Defect::UnbalancedQuote], |m| {
                assert_eq!(m.to().uri, b"sip:j.user@example.com");
                assert_eq!(m.to().display_name, Some(&b"Mr. J. User"[..]));
            }),
        ),
        (
            "regaut01",
            Parsed(&[], |m| {
                assert!(m
                    .header("Authorization")
                    .unwrap()
                    .starts_with(b"NoOneKnowsThisScheme"));
            }),
        ),
        (
            "regbadct",
            Parsed(&[], |m| {
                assert_eq!(
                    m.contact().unwrap().uri,
                    b"sip:user@example.com?Route=%3Csip:sip.example.com%3E"
                );
            }),
        ),
        (
            "regescrt",
            Parsed(&[], |m| {
                let p = m.contact().unwrap().uri_parts().unwrap();
                assert_eq!(p.headers, b"Route=%3Csip:sip.example.com%3E");
            }),
        ),
        ("scalar02", Refused(SipError::BadCSeq)),
        ("scalarlg", Refused(SipError::BadCSeq)),
        (
            "sdp01",
            Parsed(&[], |m| {
                assert!(m.sdp().is_some());
            }),
        ),
        (
            "trws",
            Parsed(&[], |m| {
                assert_eq!(m.request_uri(), Some(&b"sip:remote-target@example.com"[..]));
            }),
        ),
        (
            "unkscm",
            Parsed(&[], |m| {
                let p = sip::UriParts::parse(m.request_uri().unwrap()).unwrap();
                assert_eq!(p.scheme, b"nobodyKnowsThisScheme");
            }),
        ),
        (
            "unksm2",
            Parsed(&[], |m| {
                assert_eq!(m.to().uri, b"isbn:2983792873");
                assert_eq!(m.from().uri, b"http://www.example.com");
                assert_eq!(m.contact().unwrap().uri, b"name:John_Smith");
            }),
        ),
        (
            "zeromf",
            Parsed(&[], |m| {
                assert_eq!(m.max_forwards(), Some(0));
            }),
        ),
    ]
}

#[test]
fn rfc4475_other_messages_are_recovered_or_refused_with_a_reason() {
    let Some(dir) = torture_dir() else { return };
    let cases = other_cases();
    assert_eq!(cases.len(), 36);
    // Every file is covered by one table or the other.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "dat").then_some(p.file_stem()?.to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    let mut covered: Vec<&str> = cases.iter().map(|(n, _)| *n).collect();
    covered.extend(WELL_FORMED.iter().map(|w| w.file));
    covered.sort();
    assert_eq!(names, covered);

    println!("{:<11} {:<8} reason / defects", "file", "outcome");
    for w in &WELL_FORMED {
        println!("{:<11} parsed   well-formed", w.file);
    }
    for (name, outcome) in &cases {
        let bytes = load(&dir, name);
        let got = parse(&bytes);
        match (outcome, &got) {
            (Outcome::Parsed(defects, check), Ok((m, consumed))) => {
                let got_defects: Vec<Defect> = m.defects().iter().collect();
                assert_eq!(&got_defects[..], *defects, "{name} defects");
                assert!(*consumed <= bytes.len());
                check(m);
                let d: Vec<_> = got_defects.iter().map(|d| d.reason()).collect();
                println!(
                    "{name:<11} parsed   {}",
                    if d.is_empty() {
                        "-".into()
                    } else {
                        d.join(", ")
                    }
                );
            }
            (Outcome::Refused(want), Err(e)) => {
                assert_eq!(e, want, "{name}");
                println!("{name:<11} refused  {}", e.reason());
            }
            (Outcome::Parsed(..), Err(e)) => {
                panic!("{name}: refused ({}), expected parsed", e.reason())
            }
            (Outcome::Refused(want), Ok(_)) => panic!("{name}: parsed, expected {}", want.reason()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Where rsip alone fails and the scanner or the fallback is what makes it work. Each test
// calls rsip, so if a later rsip fixes one, the test says so.

const COMPACT: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK74bf9\r\n\
f: \"Alice\" <sip:alice@example.com>;tag=9fxced76sl\r\n\
t: <sip:bob@example.com>\r\n\
i: 3848276298220188511@example.com\r\n\
CSeq: 1 INVITE\r\n\
m: <sip:alice@10.0.0.1:5060>\r\n\
c: application/sdp\r\n\
l: 0\r\n\r\n";

#[test]
fn rsip_misses_compact_headers_the_scanner_reads_them() {
    use rsip::prelude::*;
    let r = rsip::SipMessage::try_from(COMPACT).expect("rsip parses the framing");
    assert!(r.call_id_header().is_err(), "rsip now finds `i:`");
    assert!(r.from_header().is_err());
    assert!(r.via_header().is_err());

    let (m, _) = ok(COMPACT);
    assert_eq!(m.call_id(), b"3848276298220188511@example.com");
    assert_eq!(m.from_tag(), Some(&b"9fxced76sl"[..]));
    assert_eq!(m.top_via().unwrap().branch(), Some(&b"z9hG4bK74bf9"[..]));
    assert_eq!(m.contact().unwrap().uri, b"sip:alice@10.0.0.1:5060");
    assert!(m.content_type().unwrap().is_sdp());
    assert_eq!(m.header("Call-ID"), m.header("i"));
}

#[test]
fn rsip_refuses_tel_request_uri_the_fallback_splits_it() {
    let raw = "INVITE tel:+15551234567;phone-context=+1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:a@example.com>;tag=1\r\n\
To: <tel:+15551234567>\r\nCall-ID: tel1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    assert!(
        rsip::SipMessage::try_from(raw).is_err(),
        "rsip now takes tel:"
    );
    assert!(rsip::Uri::try_from("tel:+15551234567").is_err());

    let (m, _) = ok(raw.as_bytes());
    let ru = m.request_uri_parsed().unwrap();
    assert!(matches!(ru, RequestUri::Fallback(_)));
    assert_eq!(ru.user().as_deref(), Some("+15551234567"));
    assert_eq!(m.to().uri_parts().unwrap().user, Some(&b"+15551234567"[..]));
}

#[test]
fn rsip_refuses_ipv6_request_uri_the_fallback_splits_it() {
    let raw = "INVITE sip:bob@[2001:db8::1]:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP [2001:db8::2]:5060;branch=z9hG4bK1\r\nFrom: <sip:a@example.com>;tag=1\r\n\
To: <sip:bob@[2001:db8::1]>\r\nCall-ID: v6\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    assert!(
        rsip::SipMessage::try_from(raw).is_err(),
        "rsip now takes IPv6"
    );
    assert!(rsip::Uri::try_from("sip:bob@[2001:db8::1]:5060").is_err());

    let (m, _) = ok(raw.as_bytes());
    let ru = m.request_uri_parsed().unwrap();
    assert!(!ru.is_rsip());
    assert_eq!(ru.host(), "2001:db8::1");
    assert_eq!(ru.port(), Some(5060));
    let via = m.top_via().unwrap();
    assert_eq!(via.host_ip(), Some("2001:db8::2".parse().unwrap()));
    assert_eq!(via.port, Some(5060));
}

#[test]
fn rsip_loses_the_via_branch_after_ipv6_received_the_scanner_keeps_it() {
    use rsip::prelude::*;
    let raw = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP [2001:db8::9]:5060;received=2001:db8::9;branch=z9hG4bK776asdhds;rport=5062\r\n\
From: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: v6via\r\n\
CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let r = rsip::SipMessage::try_from(raw).unwrap();
    let rsip_branch = r
        .via_header()
        .ok()
        .and_then(|v| v.typed().ok())
        .and_then(|v| v.branch().map(|b| b.to_string()));
    assert_eq!(rsip_branch, None, "rsip now keeps the branch");

    let (m, _) = ok(raw.as_bytes());
    let via = m.top_via().unwrap();
    assert_eq!(via.branch(), Some(&b"z9hG4bK776asdhds"[..]));
    assert_eq!(via.received_ip(), Some("2001:db8::9".parse().unwrap()));
    assert_eq!(via.rport(), Some(Some(5062)));
}

#[test]
fn rsip_ignores_content_length_the_scanner_honours_it() {
    let raw = b"BYE sip:bob@10.0.0.2 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK2\r\nFrom: <sip:a@example.com>;tag=1\r\n\
To: <sip:bob@example.com>;tag=2\r\nCall-ID: cl\r\nCSeq: 2 BYE\r\nContent-Length: 4\r\n\r\n\
abcdPADDING-FROM-A-BROKEN-GATEWAY";
    let r = rsip::SipMessage::try_from(&raw[..]).unwrap();
    assert_eq!(r.body().len(), 4 + 29, "rsip now honours Content-Length");

    let (m, consumed) = ok(raw);
    assert_eq!(m.body(), b"abcd");
    assert_eq!(consumed, raw.len() - 29);
}

// ---------------------------------------------------------------------------------------
// Each tolerance item, as PBXs send it.

fn msg(head: &str, body: &str) -> Vec<u8> {
    format!("{head}\r\n{body}").into_bytes()
}

#[test]
fn odd_case_and_space_before_colon() {
    let b = msg(
        "INVITE sip:bob@example.com SIP/2.0\r\ncall-id : abc\r\nCSEQ: 1 INVITE\r\n\
FROM:<sip:a@example.com>;TAG=x1\r\nto:sip:b@example.com\r\nvIA : SIP/2.0/udp h;BRANCH=z9hG4bKq\r\n",
        "",
    );
    let (m, _) = ok(&b);
    assert_eq!(m.call_id(), b"abc");
    assert_eq!(m.from_tag(), Some(&b"x1"[..]));
    assert_eq!(m.top_via().unwrap().branch(), Some(&b"z9hG4bKq"[..]));
    assert_eq!(m.header("CALL-ID"), Some(&b"abc"[..]));
}

#[test]
fn folded_lines_and_lf_only_line_ends() {
    let b = b"SIP/2.0 180 Ringing\nVia: SIP/2.0/UDP 10.0.0.1;\n branch=z9hG4bKf\nFrom: <sip:a@x>\n\t;tag=ft\n\
To: <sip:b@x>;tag=tt\nCall-ID: lf@x\nCSeq: 7\n  INVITE\nContent-Length: 3\n\nxyzREST";
    let (m, consumed) = ok(b);
    assert_eq!(m.status_code(), Some(180));
    assert_eq!(m.top_via().unwrap().branch(), Some(&b"z9hG4bKf"[..]));
    assert_eq!(m.from_tag(), Some(&b"ft"[..]));
    assert_eq!((m.cseq().number, m.cseq().method), (7, &b"INVITE"[..]));
    assert_eq!(m.body(), b"xyz");
    assert_eq!(consumed, b.len() - 4);
}

#[test]
fn non_utf8_display_name_is_bytes_with_a_lossy_helper() {
    // Latin-1 "Müller", as some PBXs put it on the wire.
    let b =
        b"INVITE sip:bob@example.com SIP/2.0\r\nFrom: \"M\xfcller\" <sip:m@example.com>;tag=7\r\n\
To: <sip:bob@example.com>\r\nCall-ID: l1\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n";
    let (m, _) = ok(b);
    assert_eq!(m.from().display_name, Some(&b"M\xfcller"[..]));
    assert_eq!(
        m.from().display_name_lossy().as_deref(),
        Some("M\u{fffd}ller")
    );
}

#[test]
fn multiple_and_comma_joined_via_respect_quotes() {
    let b = msg(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP p1.example.com;branch=z9hG4bKa;x=\"a,b\", SIP/2.0/TCP p2.example.com:5070;branch=z9hG4bKb\r\n\
Via: SIP/2.0/UDP 10.0.0.7;branch=z9hG4bKc;received=10.0.0.8;rport=5999\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: via@x\r\nCSeq: 1 INVITE\r\nl: 0\r\n",
        "",
    );
    let (m, _) = ok(&b);
    assert_eq!(m.via_count(), 3);
    let v: Vec<_> = m.vias().collect();
    assert_eq!(v[0].branch(), Some(&b"z9hG4bKa"[..]));
    assert_eq!(sip::param(v[0].params, b"x"), Some(Some(&b"a,b"[..])));
    assert_eq!(v[1].host, b"p2.example.com");
    assert_eq!(v[1].port, Some(5070));
    assert_eq!(v[2].received(), Some(&b"10.0.0.8"[..]));
}

#[test]
fn quoted_display_names_with_escapes_and_commas() {
    let b = msg(
        "INVITE sip:bob@example.com SIP/2.0\r\nFrom: \"Smith, \\\"Bob\\\" <x>\" <sip:bob@example.com>;tag=q1\r\n\
To: <sip:c@example.com>\r\nCall-ID: q@x\r\nCSeq: 1 INVITE\r\n\
P-Asserted-Identity: \"Reception, Main\" <sip:+15550100@pbx.example.com>, <tel:+15550100>\r\nl: 0\r\n",
        "",
    );
    let (m, _) = ok(&b);
    assert_eq!(
        m.from().display_name_lossy().as_deref(),
        Some("Smith, \"Bob\" <x>")
    );
    assert_eq!(m.from().uri, b"sip:bob@example.com");
    let pai = m.p_asserted_identity().unwrap();
    assert_eq!(pai.display_name, Some(&b"Reception, Main"[..]));
    assert_eq!(pai.uri, b"sip:+15550100@pbx.example.com");
}

#[test]
fn identity_and_transfer_headers() {
    let b = msg(
        "REFER sip:bob@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKr\r\n\
From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: refer@x\r\nCSeq: 5 REFER\r\n\
r: <sip:carol@example.com?Replaces=abc%40x%3Bto-tag%3D7%3Bfrom-tag%3D8>\r\nb: <sip:a@x>\r\n\
Remote-Party-ID: \"Front Desk\" <sip:100@pbx>;party=calling;privacy=off\r\n\
Diversion: <sip:200@pbx>;reason=no-answer;counter=1, <sip:300@pbx>;reason=busy\r\n\
Diversion: <sip:400@pbx>;reason=unconditional\r\n\
Reason: Q.850;cause=16;text=\"Normal call clearing\"\r\nx: 1800;refresher=uac\r\n\
Replaces: 98732@host;to-tag=r33th4x0r;from-tag=ff87ff\r\nUser-Agent: Asterisk PBX 18.9.0\r\nl: 0\r\n",
        "",
    );
    let (m, _) = ok(&b);
    assert_eq!(m.method(), Some(rsip::Method::Refer));
    assert!(m
        .refer_to()
        .unwrap()
        .uri
        .starts_with(b"sip:carol@example.com?Replaces="));
    assert_eq!(m.referred_by().unwrap().uri, b"sip:a@x");
    let rpid = m.remote_party_id().unwrap();
    assert_eq!(rpid.param(b"party"), Some(Some(&b"calling"[..])));
    let div: Vec<_> = m.diversions().map(|d| d.uri).collect();
    assert_eq!(div, [&b"sip:200@pbx"[..], b"sip:300@pbx", b"sip:400@pbx"]);
    assert_eq!(
        m.diversion().unwrap().param(b"reason"),
        Some(Some(&b"no-answer"[..]))
    );
    assert!(m.reason_header().unwrap().starts_with(b"Q.850;cause=16"));
    assert_eq!(m.session_expires(), Some(1800));
    let r = m.replaces().unwrap();
    assert_eq!(
        (r.call_id, r.to_tag, r.from_tag),
        (
            &b"98732@host"[..],
            Some(&b"r33th4x0r"[..]),
            Some(&b"ff87ff"[..])
        )
    );
    assert_eq!(m.user_agent(), Some(&b"Asterisk PBX 18.9.0"[..]));
}

#[test]
fn compact_forms_map_both_ways() {
    for (c, full) in [
        ('i', "Call-ID"),
        ('f', "From"),
        ('t', "To"),
        ('v', "Via"),
        ('m', "Contact"),
        ('l', "Content-Length"),
        ('c', "Content-Type"),
        ('k', "Supported"),
        ('s', "Subject"),
        ('e', "Content-Encoding"),
        ('o', "Event"),
        ('r', "Refer-To"),
        ('b', "Referred-By"),
        ('x', "Session-Expires"),
        ('u', "Allow-Events"),
        ('y', "Identity"),
        ('a', "Accept-Contact"),
    ] {
        assert_eq!(sip::expand_compact(c as u8), Some(full));
        assert!(sip::header_name_eq(
            c.to_string().as_bytes(),
            full.to_lowercase().as_bytes()
        ));
        assert!(sip::header_name_eq(
            full.as_bytes(),
            c.to_ascii_uppercase().to_string().as_bytes()
        ));
    }
    assert!(!sip::header_name_eq(b"q", b"Call-ID"));
}

#[test]
fn content_length_against_the_datagram() {
    let head = "INVITE sip:b@x SIP/2.0\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c@x\r\nCSeq: 1 INVITE\r\n";
    // No Content-Length on UDP: the rest of the datagram.
    let b = format!("{head}\r\nv=0\r\n");
    let (m, n) = ok(b.as_bytes());
    assert_eq!((m.body(), n), (&b"v=0\r\n"[..], b.len()));
    // On a stream it cannot be framed.
    assert_eq!(
        parse_stream(b.as_bytes()).unwrap_err(),
        SipError::MissingContentLength
    );
    // Longer than the datagram: kept, with the defect counted.
    let b = format!("{head}Content-Length: 50\r\n\r\nv=0\r\n");
    let (m, _) = ok(b.as_bytes());
    assert!(m.defects().contains(Defect::ContentLengthExceedsData));
    assert_eq!(m.body(), b"v=0\r\n");
    // On a stream that is a partial message.
    assert_eq!(
        parse_stream(b.as_bytes()).unwrap_err(),
        SipError::Incomplete
    );
    let b = format!("{head}Content-Length: 99999999\r\n\r\n");
    assert_eq!(
        parse_stream(b.as_bytes()).unwrap_err(),
        SipError::BadContentLength
    );
    // Same value twice is fine; two values are not.
    let b = format!("{head}Content-Length: 0\r\nl: 0\r\n\r\n");
    assert!(parse(b.as_bytes()).is_ok());
    let b = format!("{head}Content-Length: 0\r\nl: 1\r\n\r\nx");
    assert_eq!(
        parse(b.as_bytes()).unwrap_err(),
        SipError::ConflictingContentLength
    );
}

#[test]
fn refusals_name_their_reason() {
    let cases: [(&[u8], SipError); 9] = [
        (b"\r\n\r\n", SipError::Empty),
        (b"\x80\x00\x12\x34rtp", SipError::BinaryGarbage),
        (b"\x16\x03\x01\x02\x00\x01", SipError::BinaryGarbage),
        (b"INVITE sip:x@y SIP/2.0\r\nCall-ID: a\r\nFrom: <sip:a@b>\r\nTo: <sip:c@d>\r\n\r\n", SipError::MissingCSeq),
        (b"INVITE sip:x@y SIP/2.0\r\nCall-ID: a\r\nCSeq: 1 INVITE\r\nTo: <sip:c@d>\r\n\r\n", SipError::MissingFrom),
        (b"INVITE sip:x@y SIP/2.0\r\nCall-ID: a\r\nCSeq: 1 INVITE\r\nFrom: <sip:c@d>\r\n\r\n", SipError::MissingTo),
        (b"INVITE sip:x@y SIP/2.0\r\nthis line has no colon\r\n\r\n", SipError::MalformedHeader),
        (b"HELLO WORLD\r\n\r\n", SipError::BadStartLine),
        (b"INVITE sip:x@y SIP/2.0\r\nCall-ID: a\r\nCSeq: x INVITE\r\nFrom: <sip:a@b>\r\nTo: <sip:c@d>\r\n\r\n", SipError::BadCSeq),
    ];
    for (b, want) in cases {
        assert_eq!(
            parse(b).unwrap_err(),
            want,
            "{}",
            String::from_utf8_lossy(b)
        );
    }
    let mut many = b"OPTIONS sip:x@y SIP/2.0\r\n".to_vec();
    for i in 0..=sip::MAX_HEADERS {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    assert_eq!(parse(&many).unwrap_err(), SipError::TooManyHeaders);
    let mut long = b"OPTIONS sip:x@y SIP/2.0\r\nX-Long: ".to_vec();
    long.resize(long.len() + sip::MAX_LINE, b'a');
    assert_eq!(parse(&long).unwrap_err(), SipError::LineTooLong);
}

#[test]
fn keepalive_crlf_before_a_message_is_skipped() {
    let b = b"\r\n\r\nOPTIONS sip:x@y SIP/2.0\r\nCall-ID: k\r\nCSeq: 1 OPTIONS\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nl: 0\r\n\r\n";
    let (m, n) = ok(b);
    assert_eq!(n, b.len());
    assert!(m.as_bytes().starts_with(b"OPTIONS"));
}

#[test]
fn multipart_body_yields_its_sdp_part() {
    let body = "--unique-boundary-1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\no=- 1 1 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\nm=audio 20000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\n\r\n\
--unique-boundary-1\r\nContent-Type: application/ISUP;version=itu-t92+\r\nContent-Disposition: signal;handling=optional\r\n\r\n\x01\x00\x49\x00\x00\x03\r\n--unique-boundary-1--\r\n";
    let b = format!(
        "INVITE sip:b@x SIP/2.0\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: mp@x\r\nCSeq: 1 INVITE\r\n\
Content-Type: multipart/mixed; boundary=\"unique-boundary-1\"\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (m, _) = ok(b.as_bytes());
    let sdp = m.sdp().expect("the SDP part");
    assert!(sdp.starts_with(b"v=0\r\n"));
    assert!(sdp.ends_with(b"telephone-event/8000\r\n"));
    let sd = SessionDescription::parse(sdp).unwrap();
    assert_eq!(sd.audio_rtp_addr(), Some("10.0.0.9:20000".parse().unwrap()));
    assert_eq!(
        sd.audio().unwrap().payload_type_of("telephone-event"),
        Some(101)
    );
}

// ---------------------------------------------------------------------------------------
// SDP.

fn sdp(s: &str) -> SessionDescription {
    SessionDescription::parse(s.replace('\n', "\r\n").as_bytes()).unwrap()
}

#[test]
fn sdp_addresses_codecs_and_overrides() {
    let sd = sdp(
        "v=0\no=- 20518 2 IN IP4 203.0.113.1\ns=-\nc=IN IP4 203.0.113.1\nt=0 0\n\
m=audio 54400 RTP/AVP 9 0 8 18 101\nc=IN IP4 10.1.2.3\na=rtpmap:101 telephone-event/8000\n\
a=fmtp:101 0-16\na=fmtp:18 annexb=no\na=ptime:20\na=rtcp:54401\n\
m=video 0 RTP/AVP 31\n",
    );
    assert_eq!(sd.origin_version, Some(2));
    assert_eq!(
        sd.audio_rtp_addr(),
        Some("10.1.2.3:54400".parse().unwrap()),
        "media c= wins"
    );
    let a = sd.audio().unwrap();
    assert_eq!(a.payload_types, [9, 0, 8, 18, 101]);
    assert_eq!(a.codec_name(9).as_deref(), Some("G722"));
    assert_eq!(a.codec_name(0).as_deref(), Some("PCMU"));
    assert_eq!(a.codec_name(8).as_deref(), Some("PCMA"));
    assert_eq!(a.codec_name(18).as_deref(), Some("G729"));
    assert_eq!(a.codec_name(13).as_deref(), Some("CN"));
    assert_eq!(a.codec_name(3).as_deref(), Some("GSM"));
    assert_eq!(a.codec_name(4).as_deref(), Some("G723"));
    assert_eq!(a.codec_name(101).as_deref(), Some("telephone-event"));
    assert_eq!(a.codec_name(96), None);
    assert_eq!(a.fmtp(18), Some("annexb=no"));
    assert_eq!(a.ptime, Some(20));
    assert_eq!(a.rtcp.unwrap().port, 54401);
    assert!(!sd.is_on_hold() && !sd.is_encrypted());
    assert_eq!(sd.audio_direction(), Some(Direction::SendRecv));
    assert!(sd.media[1].is_declined());
}

#[test]
fn sdp_hold_three_ways() {
    let base =
        "v=0\no=- 1 2 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 0\n";
    let sd = sdp(&format!("{base}a=sendonly\n"));
    assert!(sd.is_on_hold());
    assert_eq!(sd.audio_direction(), Some(Direction::SendOnly));
    let sd = sdp(&format!("{base}a=inactive\n"));
    assert!(sd.is_on_hold());
    // Pre-RFC 3264 hold: a null connection address.
    let sd =
        sdp("v=0\no=- 1 2 IN IP4 10.0.0.1\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\nm=audio 4000 RTP/AVP 0\n");
    assert!(sd.is_on_hold());
    // The answer to a hold (recvonly) is not itself a hold; session-level direction applies.
    let sd = sdp("v=0\no=- 1 2 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\na=recvonly\nm=audio 4000 RTP/AVP 0\n");
    assert!(!sd.is_on_hold());
    assert_eq!(sd.audio_direction(), Some(Direction::RecvOnly));
    // Media-level overrides session-level.
    let sd = sdp("v=0\no=- 1 2 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\na=sendonly\nm=audio 4000 RTP/AVP 0\na=sendrecv\n");
    assert!(!sd.is_on_hold());
}

#[test]
fn sdp_ipv6_connection_and_rtcp_address() {
    let sd = sdp("v=0\no=- 1 1 IN IP6 2001:db8::5\ns=-\nc=IN IP6 2001:db8::5\nt=0 0\nm=audio 30000 RTP/AVP 0\na=rtcp:30011 IN IP6 2001:db8::6\n");
    assert_eq!(
        sd.audio_rtp_addr(),
        Some("[2001:db8::5]:30000".parse().unwrap())
    );
    let rtcp = sd.audio().unwrap().rtcp.unwrap();
    assert_eq!(
        (rtcp.port, rtcp.addr),
        (30011, Some("2001:db8::6".parse().unwrap()))
    );
}

#[test]
fn sdp_encrypted_profiles() {
    for (proto, enc) in [
        ("RTP/AVP", false),
        ("RTP/AVPF", false),
        ("RTP/SAVP", true),
        ("RTP/SAVPF", true),
        ("UDP/TLS/RTP/SAVPF", true),
    ] {
        let sd = sdp(&format!("v=0\nc=IN IP4 10.0.0.1\nm=audio 4000 {proto} 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:abc\n"));
        assert_eq!(sd.is_encrypted(), enc, "{proto}");
        assert!(sd.audio().unwrap().crypto);
    }
}

#[test]
fn sdp_declined_audio_and_not_sdp() {
    let sd = sdp("v=0\nc=IN IP4 10.0.0.1\nm=audio 0 RTP/AVP 0\n");
    assert!(sd.audio().is_none());
    assert!(sd.audio_rtp_addr().is_none());
    assert!(sd.media[0].is_declined());
    assert!(SessionDescription::parse(b"<audio><pcmu port=\"443\"/></audio>").is_err());
}

// ---------------------------------------------------------------------------------------
// Random mutations: no panic, bounded work, consistent results.

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Touches every accessor, as the engine would, so a panic anywhere shows.
fn exercise(m: &SipMessage<'_>, input_len: usize, consumed: usize) {
    assert!(consumed <= input_len);
    assert!(m.body().len() <= consumed);
    let _ = (
        m.method(),
        m.status(),
        m.request_uri_parsed(),
        m.call_id_lossy(),
    );
    let _ = (
        m.from().tag(),
        m.to().display_name_lossy(),
        m.from().uri_parts(),
    );
    let _ = (
        m.top_via()
            .map(|v| (v.branch(), v.received_ip(), v.rport())),
        m.vias().count(),
    );
    let _ = (
        m.contact(),
        m.content_type().map(|c| c.boundary()),
        m.max_forwards(),
    );
    let _ = (
        m.p_asserted_identity(),
        m.remote_party_id(),
        m.diversions().count(),
    );
    let _ = (
        m.refer_to(),
        m.referred_by(),
        m.replaces(),
        m.session_expires(),
    );
    let _ = (
        m.user_agent(),
        m.reason_header(),
        m.header("X-Nothing"),
        m.headers().count(),
    );
    if let Some(s) = m.sdp() {
        if let Ok(sd) = SessionDescription::parse(s) {
            let _ = (sd.audio_rtp_addr(), sd.is_on_hold(), sd.is_encrypted());
        }
    }
}

#[test]
fn random_mutations_never_panic() {
    let Some(dir) = torture_dir() else { return };
    let mut corpus: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "dat")
                .then(|| std::fs::read(p).ok())
                .flatten()
        })
        .collect();
    corpus.push(COMPACT.to_vec());
    corpus.sort();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let specials = [
        b'\r', b'\n', b' ', b'\t', b':', b';', b',', b'"', b'<', b'>', b'\\', b'[', b']', b'=', 0,
        0xff,
    ];
    let started = std::time::Instant::now();
    let mut parsed = 0;
    for i in 0..6000 {
        let mut b = corpus[i % corpus.len()].clone();
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(b.len());
            match rng.below(6) {
                0 => b[at] = rng.next() as u8,
                1 => b[at] = specials[rng.below(specials.len())],
                2 => b.insert(at, specials[rng.below(specials.len())]),
                3 => {
                    b.remove(at.min(b.len().saturating_sub(1)));
                }
                4 => b.truncate(at),
                _ => {
                    let end = (at + rng.below(64)).min(b.len());
                    let chunk = b[at..end].to_vec();
                    let to = rng.below(b.len());
                    b.splice(to..to, chunk);
                }
            }
            if b.is_empty() {
                b.push(b'\n');
            }
        }
        for (m, consumed) in [parse(&b), parse_stream(&b)].into_iter().flatten() {
            exercise(&m, b.len(), consumed);
            parsed += 1;
        }
        let _ = SessionDescription::parse(&b);
    }
    // Bounded: 12 000 parses of < 4 KiB inputs take milliseconds, not seconds.
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert!(
        parsed > 1000,
        "mutations should mostly stay parseable: {parsed}"
    );
}
