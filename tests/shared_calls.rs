//! Every capture in ../shared/pcaps ingests without a panic, and where MANIFEST.md
//! describes the dialogs, calltap finds exactly those: one record per INVITE dialog,
//! with the outcome its final responses give and the side that sent the BYE. The legs
//! of a B2BUA conversation stay one record each (the merged ones marked and not
//! exported; tests/b2bua.rs checks the conversations).

#[path = "support/skip.rs"]
mod skip;

use std::path::PathBuf;

use calltap::call::{CallRecord, Outcome, Party};
use calltap::config::Config;
use calltap::engine::{Engine, EngineEvent};
use calltap::replay::replay_files;

use Outcome::*;

const CALLER: Option<Party> = Some(Party::Caller);
const CALLEE: Option<Party> = Some(Party::Callee);
const NO_BYE: Option<Party> = None;

/// One dialog: (Call-ID prefix, outcome, BYE side).
type Dialog = (&'static str, Outcome, Option<Party>);

/// (file, its dialogs) from MANIFEST.md's dialog lists.
const EXPECTED: &[(&str, &[Dialog])] = &[
    // A 401 or 407 followed by a retried INVITE is one call, answered.
    (
        "test_voip.pcap.pcapng",
        &[
            ("5bdf8ea6-", Answered, CALLEE),
            ("770bce9a5d8f", Answered, CALLEE),
        ],
    ),
    (
        "gprshome-wireshark_sip.pcap",
        &[
            ("ZTU2MDY4NTY4", Answered, CALLER),
            ("6C6A28903A62", Answered, CALLER),
        ],
    ),
    (
        "interception.pcapng",
        &[
            ("p65557t1573829978", Answered, CALLER),
            ("p65557t1574093282", Answered, CALLER),
            ("p65557t1574112922", Answered, CALLER),
        ],
    ),
    (
        "Forensic_challenge_4.pcap",
        &[("MzI4NzE5ZDVm", Answered, CALLER)],
    ),
    (
        "MaryLS-Laborator09_sip.pcap",
        &[("a3d80213-", Answered, CALLER)],
    ),
    ("sip.pcap.pcapng", &[("681270918", Answered, CALLEE)]),
    // The REFER's transferred call is a second dialog, ended by the To side.
    (
        "voip-extension.pcap",
        &[
            ("673b0437-", Answered, CALLEE),
            ("f49fa0af-", Answered, CALLEE),
        ],
    ),
    (
        "voip-extension2downata.pcap",
        &[("2d456948-", Answered, CALLEE)],
    ),
    (
        "voip1b.pcapng",
        &[
            ("342701946", Answered, CALLEE),
            ("390cbc3372b1", Answered, CALLEE),
        ],
    ),
    (
        "sip-2phones-B2BUA-Asterisk.pcapng",
        &[
            ("M2Q0ZDc1ZGM1", Answered, CALLER),
            ("37686afc57ce", Answered, CALLER),
        ],
    ),
    // Competing BYEs: the callee's comes first (and draws a 500); RFC 3261 15.1.1
    // ends the session with the first BYE sent, whatever its answer.
    (
        "private-test-sip-2.pcapng",
        &[("897ffa64f32a", Answered, CALLEE)],
    ),
    (
        "sip-flow-private-3.pcapng",
        &[("1339611883", Answered, CALLER)],
    ),
    ("RTP-Protocol.pcap", &[("19079832632712", Answered, CALLEE)]),
    (
        "sip-488-Not-Acceptable-Here-codec-null.pcapng",
        &[("NA4y5nr9Jk", Failed, NO_BYE)],
    ),
    (
        "sip-call.pcap",
        &[
            ("J2zOKUsppRIm", Answered, CALLEE),
            ("475685a126d5", Answered, CALLEE),
        ],
    ),
    ("sip_ipv4_tcp.pcap", &[("158936656982", Answered, CALLEE)]),
    // Bogus capture clock (years between packets): bridged, not timed out.
    ("sip_ipv6_udp.pcap", &[("c3eF6f58-", Answered, CALLER)]),
    ("ipv6frag.pcap", &[("71846-1647924829", Answered, CALLER)]),
    ("ipip.pcap", &[("1RLuVzzBClYCf2", Answered, CALLER)]),
    // Seen on both sides of a tag-rewriting device: the first BYE decides.
    (
        "erspan_sip_ipv4_udp.pcapng",
        &[
            ("ddd141f1d982", Answered, CALLEE),
            ("bf3880-0-16e4", Answered, CALLER),
            ("cdfef7c7647e", Answered, CALLER),
        ],
    ),
    // The SIP-over-WebSocket leg's INVITE is inside WebSocket frames calltap does not
    // open (see shared_pcaps.rs); the two dialogs are both seen on their UDP legs.
    (
        "sip_tcp_websocket.pcap",
        &[
            ("kovfhoptshgn", Answered, CALLER),
            ("926ffd16-6154", Answered, CALLER),
        ],
    ),
    // The file ends during the first call; the second INVITE only rang.
    (
        "rtp_rtcp_sip_ipv4_udp.pcap",
        &[
            ("12013223@", Answered, NO_BYE),
            ("12015624@", Missed, NO_BYE),
        ],
    ),
    (
        "FAX-Call-t38-CA-TDM-SIP-FB-1.pcap",
        &[
            ("00e9d4a500e9d48", Answered, CALLER),
            ("SD4909701-", Answered, CALLER),
        ],
    ),
    // (1) INVITE, CANCEL x11, 408; (2)-(3) 407 then a retry refused with 403;
    // (4) 407, retry, 183, 480. Nothing answered.
    (
        "aaa.pcap",
        &[
            ("105090259-", Cancelled, NO_BYE),
            ("85216695-", Rejected, NO_BYE),
            ("24487391-", Rejected, NO_BYE),
            ("11894297-", Missed, NO_BYE),
        ],
    ),
    (
        "SIP_DTMF2.cap",
        &[("5514@", Rejected, NO_BYE), ("25672@", Answered, NO_BYE)],
    ),
    ("DTMFsipinfo.pcap", &[("2091060b-", Answered, NO_BYE)]),
    (
        "Asterisk_ZFONE_XLITE.pcap",
        &[("ZDYzOWVlNjEw", Answered, CALLEE)],
    ),
    (
        "sip-rtp-g711.pcap",
        &[("1-1966@", Answered, CALLEE), ("1-1968@", Answered, NO_BYE)],
    ),
    ("sip-rtp-g722.pcap", &[("1-2161@", Answered, CALLEE)]),
    ("sip-rtp-g729a.pcap", &[("1-24411@", Answered, CALLEE)]),
    (
        "sipp_uac_Media_DTMF_Speex.pcap",
        &[("wICUpfWaoQE5", Answered, NO_BYE)],
    ),
    // The same call captured on two interfaces at once: one call, not two.
    (
        "made-two-interfaces-duplicates.pcapng",
        &[("1-30347@", Answered, CALLER)],
    ),
    (
        "made-sll2-nanosecond-hold.pcap",
        &[("1-30347@", Answered, CALLER)],
    ),
    // RTP only: no SIP, no call.
    ("CARRIER_G711U.pcap", &[]),
    ("g711a.pcap", &[]),
    ("dtmf_2833_1.pcap", &[]),
    ("ulaw-2013785496.pcap", &[]),
    ("recv_streams_SSRC_0x3201e4_0x1000a323.pcap", &[]),
    ("sipp_uac_ssrc_change.pcap", &[]),
];

fn records(path: &PathBuf) -> Vec<CallRecord> {
    let mut engine = Engine::new(&Config::default());
    replay_files(&[path], &mut engine, false);
    let mut out = Vec::new();
    while let Some(event) = engine.poll() {
        if let EngineEvent::Call(r) = event {
            out.push(*r);
        }
    }
    out
}

#[test]
fn shared_captures_give_the_dialogs_the_manifest_describes() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps");
    if !dir.is_dir() {
        skip::skip(format!(
            "{} is absent; shared capture tests skipped",
            dir.display()
        ));
        return;
    }
    let mut listed = 0;
    for (file, want) in EXPECTED {
        let found = records(&dir.join(file));
        assert_eq!(
            found.len(),
            want.len(),
            "{file}: {:?}",
            found.iter().map(|r| &r.sip.call_id).collect::<Vec<_>>()
        );
        for (prefix, outcome, bye) in *want {
            let r = found
                .iter()
                .find(|r| r.sip.call_id.starts_with(prefix))
                .unwrap_or_else(|| panic!("{file}: no record for Call-ID {prefix}..."));
            assert_eq!(r.outcome, *outcome, "{file} {prefix}: outcome");
            assert_eq!(r.hung_up_by, *bye, "{file} {prefix}: BYE side");
            // A leg merged into its conversation's record (the PBX guessed from the
            // two overlapping legs of a B2BUA: test_voip, gprshome, voip1b,
            // sip-2phones, sip-call) is kept for operations but never exported; the
            // record carrying the conversation is exported as before.
            assert_eq!(
                r.exported,
                *outcome == Answered
                    && r.direction != calltap::call::Direction::Internal
                    && r.conversation.merged_into.is_none()
            );
        }
        listed += 1;
    }
    listed += avaya_trunk_over_tcp(&dir);
    // Every capture in the folder is covered by the table above.
    let on_disk = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name() != "MANIFEST.md")
                .count()
        })
        .unwrap_or(0);
    assert_eq!(
        listed, on_disk,
        "a capture in ../shared/pcaps has no expectation here"
    );
}

/// sip_ipv4_tcp_fragmented.pcap: 126 s of an Avaya SIP trunk over TCP port 6060, the
/// capture starting mid-stream. MANIFEST: 37 dialogs with their INVITE in the file (32
/// answered, 1 cancelled with 487, 1 rejected with 403, 3 with no final response); BYE
/// from the From side 10 times and from the To side 2 times; the other 33 Call-IDs
/// started before the capture and must not become calls.
fn avaya_trunk_over_tcp(dir: &std::path::Path) -> usize {
    let found = records(&dir.join("sip_ipv4_tcp_fragmented.pcap"));
    let count = |o: Outcome| found.iter().filter(|r| r.outcome == o).count();
    assert_eq!(found.len(), 37);
    assert_eq!(count(Answered), 32);
    assert_eq!(count(Cancelled), 1);
    assert_eq!(count(Rejected), 1);
    assert_eq!(count(Missed) + count(Failed), 3);
    let by = |p: Option<Party>| found.iter().filter(|r| r.hung_up_by == p).count();
    assert_eq!(by(CALLER), 10);
    assert_eq!(by(CALLEE), 2);
    assert!(found.iter().all(|r| r.sip.transport == "tcp"));
    1
}

#[test]
fn replaying_a_capture_twice_gives_the_same_ids() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps");
    if !dir.is_dir() {
        skip::skip(format!(
            "{} is absent; shared capture tests skipped",
            dir.display()
        ));
        return;
    }
    let path = dir.join("aaa.pcap");
    let ids = |rs: Vec<CallRecord>| rs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let first = ids(records(&path));
    assert_eq!(first.len(), 4);
    assert_eq!(first, ids(records(&path)));
    let unique: std::collections::BTreeSet<_> = first.iter().collect();
    assert_eq!(unique.len(), first.len(), "ids are unique");
}
