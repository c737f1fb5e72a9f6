//! Messages per second: calltap's scanner against rsip 0.4, same corpus, same run.
//!
//! Corpus: RFC 4475's 13 well-formed messages (from ../shared/sip-torture when present)
//! plus a typical call as a PBX sends it: INVITE with SDP, 100, 180, 200 with SDP, ACK,
//! BYE, 200. Each side parses the message and reads what the dialog layer needs
//! (Call-ID, CSeq, From/To tags, top Via branch), so neither is timed doing less.
//!
//! `cargo bench --bench sip_parse` (plain harness: prints a table, no dependencies).

use calltap::sip;
use std::convert::TryFrom;
use std::hint::black_box;
use std::time::{Duration, Instant};

const SDP: &str = "v=0\r\no=- 1720 1720 IN IP4 10.0.0.21\r\ns=Talk\r\nc=IN IP4 10.0.0.21\r\n\
t=0 0\r\nm=audio 7078 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\na=sendrecv\r\n";

fn typical_call() -> Vec<Vec<u8>> {
    let via = "Via: SIP/2.0/UDP 10.0.0.21:5060;branch=z9hG4bK.8c1bKb3e3;rport";
    let from = "From: \"Alice Smith\" <sip:101@pbx.example.com>;tag=Zx9m2gQv";
    let to = "To: <sip:+15551234567@pbx.example.com>";
    let to_tag = "To: <sip:+15551234567@pbx.example.com>;tag=as5f3a1c2e";
    let cid = "Call-ID: 6c4d2a0f-1b2e-4e8a-9f3c-77d1a2b3c4d5";
    let ua = "User-Agent: Linphone/5.2.0 (belle-sip/5.2.0)";
    let msg = |first: &str, headers: &[&str], body: &str| -> Vec<u8> {
        let mut s = format!("{first}\r\n");
        for h in headers {
            s.push_str(h);
            s.push_str("\r\n");
        }
        if !body.is_empty() {
            s.push_str("Content-Type: application/sdp\r\n");
        }
        s.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        s.into_bytes()
    };
    vec![
        msg(
            "INVITE sip:+15551234567@pbx.example.com SIP/2.0",
            &[
                via,
                "Max-Forwards: 70",
                from,
                to,
                cid,
                "CSeq: 20 INVITE",
                "Contact: <sip:101@10.0.0.21:5060;transport=udp>",
                "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, UPDATE",
                "Supported: replaces, outbound, timer",
                "Session-Expires: 1800",
                ua,
            ],
            SDP,
        ),
        msg(
            "SIP/2.0 100 Trying",
            &[via, from, to, cid, "CSeq: 20 INVITE"],
            "",
        ),
        msg(
            "SIP/2.0 180 Ringing",
            &[
                via,
                from,
                to_tag,
                cid,
                "CSeq: 20 INVITE",
                "Contact: <sip:pbx@10.0.0.5:5060>",
            ],
            "",
        ),
        msg(
            "SIP/2.0 200 OK",
            &[
                via,
                from,
                to_tag,
                cid,
                "CSeq: 20 INVITE",
                "Contact: <sip:pbx@10.0.0.5:5060>",
                "Server: Asterisk PBX 18.9.0",
                "Session-Expires: 1800;refresher=uac",
            ],
            SDP,
        ),
        msg(
            "ACK sip:pbx@10.0.0.5:5060 SIP/2.0",
            &[
                "Via: SIP/2.0/UDP 10.0.0.21:5060;branch=z9hG4bK.aa01;rport",
                "Max-Forwards: 70",
                from,
                to_tag,
                cid,
                "CSeq: 20 ACK",
            ],
            "",
        ),
        msg(
            "BYE sip:pbx@10.0.0.5:5060 SIP/2.0",
            &[
                "Via: SIP/2.0/UDP 10.0.0.21:5060;branch=z9hG4bK.bb02;rport",
                "Max-Forwards: 70",
                from,
                to_tag,
                cid,
                "CSeq: 21 BYE",
                ua,
            ],
            "",
        ),
        msg(
            "SIP/2.0 200 OK",
            &[
                "Via: SIP/2.0/UDP 10.0.0.21:5060;branch=z9hG4bK.bb02;rport",
                from,
                to_tag,
                cid,
                "CSeq: 21 BYE",
            ],
            "",
        ),
    ]
}

fn torture_well_formed() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/sip-torture");
    [
        "wsinv",
        "intmeth",
        "esc01",
        "escnull",
        "esc02",
        "lwsdisp",
        "longreq",
        "dblreq",
        "semiuri",
        "transports",
        "mpart01",
        "unreason",
        "noreason",
    ]
    .iter()
    .filter_map(|n| std::fs::read(dir.join(format!("{n}.dat"))).ok())
    .collect()
}

/// Ours: returns whether the dialog fields were all there.
fn ours(b: &[u8]) -> bool {
    match sip::parse(b) {
        Ok((m, n)) => {
            black_box((
                m.call_id(),
                m.cseq(),
                m.from_tag(),
                m.to_tag(),
                m.top_via().and_then(|v| v.branch()),
                m.body(),
                n,
            ));
            true
        }
        Err(e) => {
            black_box(e);
            false
        }
    }
}

/// rsip: parse, then the same fields through its typed headers.
fn rsip_side(b: &[u8]) -> bool {
    use rsip::prelude::*;
    let Ok(m) = rsip::SipMessage::try_from(b) else {
        return false;
    };
    let call_id = m.call_id_header().map(|h| h.value().len());
    let cseq = m.cseq_header().ok().and_then(|h| h.typed().ok());
    let from = m
        .from_header()
        .ok()
        .and_then(|h| h.typed().ok())
        .and_then(|f| f.tag().cloned());
    let to = m
        .to_header()
        .ok()
        .and_then(|h| h.typed().ok())
        .map(|t| t.tag().cloned());
    let via = m
        .via_header()
        .ok()
        .and_then(|h| h.typed().ok())
        .map(|v| v.branch().cloned());
    let all = call_id.is_ok() && cseq.is_some() && from.is_some() && to.is_some() && via.is_some();
    let _ = black_box((call_id, cseq, from, to, via, m.body().len()));
    all
}

/// Runs `f` over the corpus for about `budget`; messages per second and how many of the
/// corpus gave all fields.
fn measure(corpus: &[Vec<u8>], budget: Duration, f: fn(&[u8]) -> bool) -> (f64, usize) {
    let complete = corpus.iter().filter(|b| f(b)).count();
    // Warm up, then time whole passes until the budget is spent.
    for _ in 0..50 {
        for b in corpus {
            black_box(f(black_box(b)));
        }
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..100 {
            for b in corpus {
                black_box(f(black_box(b)));
            }
        }
        n += 100 * corpus.len() as u64;
    }
    (n as f64 / start.elapsed().as_secs_f64(), complete)
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench`-less args: keep it short then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let budget = Duration::from_millis(if quick { 50 } else { 2000 });
    let typical = typical_call();
    let torture = torture_well_formed();
    let mut all = torture.clone();
    all.extend(typical.iter().cloned());
    if torture.is_empty() {
        println!("notice: ../shared/sip-torture absent; typical call only");
    }
    println!(
        "{:<28} {:>14} {:>14} {:>7}   complete (ours / rsip)",
        "corpus", "calltap msg/s", "rsip msg/s", "ratio"
    );
    for (name, corpus) in [
        ("typical call (7 msgs)", &typical),
        ("RFC 4475 well-formed (13)", &torture),
        ("both (20)", &all),
    ] {
        if corpus.is_empty() {
            continue;
        }
        let (ours_rate, ours_ok) = measure(corpus, budget, ours);
        let (rsip_rate, rsip_ok) = measure(corpus, budget, rsip_side);
        println!(
            "{name:<28} {:>14.0} {:>14.0} {:>6.1}x   {ours_ok}/{n} / {rsip_ok}/{n}",
            ours_rate,
            rsip_rate,
            ours_rate / rsip_rate,
            n = corpus.len()
        );
    }
}
