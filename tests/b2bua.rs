//! One conversation, one record (issue 6): beside a B2BUA PBX a conversation is several
//! dialogs, and calltap exports one record per conversation (per operator segment),
//! keeping the other legs as merged, unexported records for operations.
//!
//! "Conversations" below are the records that are not merged into another one.

#[path = "support/skip.rs"]
mod skip;

use std::path::PathBuf;

use calltap::call::{CallRecord, Direction, Outcome, Party, WhoHungUp};
use calltap::config::Config;
use calltap::engine::{Engine, EngineEvent, EngineStats};
use calltap::pcapgen::b2bua::{self, CLIENT, CONFIG, DID, PBX_ADDR, TRUNK_ADDR};
use calltap::pcapgen::scenario::Scenario;
use calltap::pcapgen::Link;
use calltap::replay::replay_files;

struct Run {
    records: Vec<CallRecord>,
    stats: EngineStats,
}

impl Run {
    /// The records carrying a conversation (not merged into another).
    fn conversations(&self) -> Vec<&CallRecord> {
        self.records
            .iter()
            .filter(|r| r.conversation.merged_into.is_none())
            .collect()
    }

    fn merged(&self) -> Vec<&CallRecord> {
        self.records
            .iter()
            .filter(|r| r.conversation.merged_into.is_some())
            .collect()
    }

    fn exported(&self) -> Vec<&CallRecord> {
        self.records.iter().filter(|r| r.exported).collect()
    }
}

fn replay(path: &std::path::Path, config: &Config) -> Run {
    let mut engine = Engine::new(config);
    replay_files(&[path], &mut engine, false);
    let mut records = Vec::new();
    while let Some(event) = engine.poll() {
        if let EngineEvent::Call(r) = event {
            records.push(*r);
        }
    }
    Run {
        records,
        stats: engine.stats(),
    }
}

fn run_scenario(s: &Scenario, config: &Config) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b2bua.pcap");
    std::fs::write(&path, s.pcap(Link::Ethernet)).unwrap();
    replay(&path, config)
}

fn config() -> Config {
    Config::from_toml(CONFIG, "b2bua").unwrap()
}

fn shared_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps");
    if dir.is_dir() {
        Some(dir)
    } else {
        skip::skip(format!(
            "{} is absent; shared capture tests skipped",
            dir.display()
        ));
        None
    }
}

// ---------------------------------------------------------------- shared captures

/// (file, conversations expected, legs merged, the PBX calltap must guess), from
/// ../shared/pcaps/MANIFEST.md. No `[network] pbx` is configured: calltap guesses it.
const SHARED: &[(&str, usize, usize, Option<&str>)] = &[
    // Asterisk B2BUA between ext 2003 and ext 2001: leg A 2003 -> PBX (.86), leg B
    // PBX -> 2001, different Call-IDs, both answered, overlapping. One conversation.
    ("test_voip.pcap.pcapng", 1, 1, Some("192.168.87.86")),
    // Asterisk 1.6.2 (145.100.104.131) between Bria (appelman02) and Zoiper
    // (appelman01): two legs, same From user on both. One conversation.
    ("sip-call.pcap", 1, 1, Some("145.100.104.131")),
    // miniSIPServer (.103) between ext 100 and ext 101: phone -> PBX and PBX -> phone,
    // media direct, caller hangs up on both legs. One conversation.
    ("gprshome-wireshark_sip.pcap", 1, 1, Some("192.168.1.103")),
    // Asterisk 11.7 (.180): telephone2 -> 2301 and PBX -> telephone1, the caller's
    // user on both legs, direct-media re-INVITEs. One conversation.
    ("voip1b.pcapng", 1, 1, Some("172.16.98.180")),
    // Asterisk 11.7 (.101) between two Zoipers: two legs, telephone1 the caller on
    // both. One conversation.
    (
        "sip-2phones-B2BUA-Asterisk.pcapng",
        1,
        1,
        Some("172.16.98.101"),
    ),
    // A REFER transfer without a B2BUA: .10 calls .11, .11 refers .10 to 204, .10
    // calls 204 through .11 (a proxy: the same Call-ID on both hops). No address is
    // the destination of one INVITE and the source of another, so no PBX: two
    // records, as before (one per operator segment).
    ("voip-extension.pcap", 2, 0, None),
];

#[test]
fn shared_captures_give_one_record_per_conversation() {
    let Some(dir) = shared_dir() else { return };
    for &(file, conversations, merged, pbx) in SHARED {
        let run = replay(&dir.join(file), &Config::default());
        let ids: Vec<_> = run
            .records
            .iter()
            .map(|r| (&r.sip.call_id, &r.conversation))
            .collect();
        assert_eq!(run.conversations().len(), conversations, "{file}: {ids:#?}");
        assert_eq!(run.merged().len(), merged, "{file}: {ids:#?}");
        assert_eq!(
            run.stats.correlation.pbx_guess.as_deref(),
            pbx,
            "{file}: PBX guess"
        );
        for c in run.conversations() {
            if merged > 0 {
                // Every leg's Call-ID is on the conversation's record.
                assert_eq!(c.conversation.legs.len(), 1 + merged, "{file}");
                assert_eq!(c.outcome, Outcome::Answered, "{file}");
            }
        }
        // Nothing merged is exported; at most one record per conversation is.
        assert!(run.merged().iter().all(|r| !r.exported), "{file}");
        assert!(run.exported().len() <= conversations, "{file}");
    }
}

#[test]
fn test_voip_is_one_internal_conversation_ended_by_the_callee() {
    let Some(dir) = shared_dir() else { return };
    let run = replay(&dir.join("test_voip.pcap.pcapng"), &Config::default());
    let c = run.conversations()[0];
    // Leg A (2003 -> PBX) entered the PBX first: its id is the conversation's.
    assert!(c.sip.call_id.starts_with("5bdf8ea6-"));
    assert_eq!(c.direction, Direction::Internal);
    assert_eq!(c.operator.number, "2003");
    assert_eq!(c.client_number.as_deref(), Some("2001"));
    // 2001 sent the first BYE (leg B, 37.635 s), the PBX relayed it to 2003.
    assert_eq!(c.hung_up_by, Some(Party::Callee));
    let merged = run.merged()[0];
    assert!(merged.sip.call_id.starts_with("770bce9a5d8f"));
    assert_eq!(merged.conversation.merged_into.as_ref(), Some(&c.id));
    assert_eq!(merged.conversation.id, c.conversation.id);
}

#[test]
fn the_configured_pbx_is_used_and_nothing_is_guessed() {
    let Some(dir) = shared_dir() else { return };
    let cfg = Config::from_toml("[network]\npbx = [\"192.168.87.86\"]\n", "t").unwrap();
    let run = replay(&dir.join("test_voip.pcap.pcapng"), &cfg);
    assert_eq!(run.conversations().len(), 1);
    assert_eq!(run.stats.correlation.pbx_guess, None);
}

#[test]
fn replays_give_the_same_ids() {
    let Some(dir) = shared_dir() else { return };
    let path = dir.join("test_voip.pcap.pcapng");
    let ids = |run: Run| {
        run.records
            .into_iter()
            .map(|r| (r.id, r.conversation.id))
            .collect::<Vec<_>>()
    };
    let first = ids(replay(&path, &Config::default()));
    assert_eq!(first, ids(replay(&path, &Config::default())));
}

// ------------------------------------------------------------- generated captures

#[test]
fn incoming_via_trunk_answered_by_a_phone() {
    let run = run_scenario(&b2bua::incoming_answered(1), &config());
    assert_eq!(run.records.len(), 2, "{:#?}", run.records);
    let c = run.conversations();
    assert_eq!(c.len(), 1);
    let c = c[0];
    assert!(c.exported);
    assert_eq!(c.direction, Direction::Incoming);
    assert_eq!(c.operator.number, "201");
    assert_eq!(c.client_number.as_deref(), Some(CLIENT));
    // startTime = the phone's answer (5 s); the trunk leg ended first (65 s), by the
    // client's BYE.
    let t0 = b2bua::at(0).unix_secs();
    assert_eq!(c.start_time, t0 + 5);
    assert_eq!(c.duration, 60);
    assert_eq!(c.who_hung_up, WhoHungUp::Client);
    assert_eq!(c.ring_seconds, 5.0);
    assert_eq!(c.conversation.did.as_deref(), Some(DID));
    assert_eq!(c.conversation.trunk.as_deref(), Some(TRUNK_ADDR));
    assert_eq!(c.conversation.legs.len(), 2);
    assert_eq!(c.conversation.correlated_by.as_deref(), Some("heuristics"));
    // The record is the phone leg's (its id, its recording).
    let merged = run.merged()[0];
    assert_eq!(merged.conversation.role.as_deref(), Some("trunk"));
    assert!(!merged.exported);
    assert_eq!(run.stats.correlation.conversations_merged, 1);
}

#[test]
fn outgoing_from_a_phone_via_trunk() {
    let run = run_scenario(&b2bua::outgoing_answered(2), &config());
    let c = run.conversations();
    assert_eq!(c.len(), 1, "{:#?}", run.records);
    let c = c[0];
    assert!(c.exported);
    assert_eq!(c.direction, Direction::Outgoing);
    assert_eq!(c.operator.number, "202");
    assert_eq!(c.client_number.as_deref(), Some("+15551234567"));
    // The phone leg's answer (8.010 s); the operator's BYE on the phone leg came first.
    let t0 = b2bua::at(0).unix_secs();
    assert_eq!(c.start_time, t0 + 8);
    assert_eq!(c.who_hung_up, WhoHungUp::Operator);
    assert_eq!(c.conversation.trunk.as_deref(), Some(TRUNK_ADDR));
    assert_eq!(run.merged().len(), 1);
}

#[test]
fn a_queue_ringing_three_phones_is_the_answering_operators_call() {
    let run = run_scenario(&b2bua::queue_second_answers(3), &config());
    assert_eq!(run.records.len(), 4, "{:#?}", run.records);
    let c = run.conversations();
    assert_eq!(c.len(), 1, "{:#?}", run.records);
    let c = c[0];
    assert_eq!(c.operator.number, "202");
    assert_eq!(c.direction, Direction::Incoming);
    // 202 hung up first (its BYE at 50 s on the phone leg).
    assert_eq!(c.who_hung_up, WhoHungUp::Operator);
    assert_eq!(c.conversation.legs.len(), 4);
    // The unanswered legs are not calls: merged, cancelled, not exported.
    let merged = run.merged();
    assert_eq!(merged.len(), 3);
    assert_eq!(
        merged
            .iter()
            .filter(|r| r.outcome == Outcome::Cancelled)
            .count(),
        2
    );
    assert_eq!(run.exported().len(), 1);
}

#[test]
fn an_internal_call_through_the_pbx_is_one_record() {
    let run = run_scenario(&b2bua::internal_call(4), &config());
    let c = run.conversations();
    assert_eq!(c.len(), 1, "{:#?}", run.records);
    let c = c[0];
    assert_eq!(c.direction, Direction::Internal);
    assert!(!c.exported, "internal calls are not exported by default");
    assert_eq!(c.operator.number, "201");
    assert_eq!(c.client_number.as_deref(), Some("203"));
    // The called operator's answer (4 s) starts it; 203's BYE ended it.
    let t0 = b2bua::at(0).unix_secs();
    assert_eq!(c.start_time, t0 + 4);
    assert_eq!(c.hung_up_by, Some(Party::Callee));
    assert_eq!(run.merged().len(), 1);
}

#[test]
fn the_correlation_header_pairs_legs_numbers_cannot() {
    let header = "X-Calltap-Link";
    let s = b2bua::correlation_header(5, header);
    let cfg = Config::from_toml(
        &format!("{CONFIG}\n[calls]\ncorrelation_header = \"{header}\"\n"),
        "t",
    )
    .unwrap();
    let run = run_scenario(&s, &cfg);
    let c = run.conversations();
    assert_eq!(c.len(), 2, "{:#?}", run.records);
    for (r, (op, client)) in c
        .iter()
        .zip([("201", "+15557770001"), ("202", "+15557770002")])
    {
        assert_eq!(r.operator.number, op);
        assert_eq!(r.client_number.as_deref(), Some(client));
        assert_eq!(r.conversation.correlated_by.as_deref(), Some("header"));
    }
    assert_eq!(run.stats.correlation.header_matches, 2);
    // Without the header configured the anonymous phone legs find no partner.
    let run = run_scenario(&s, &config());
    assert_eq!(run.conversations().len(), 4);
}

#[test]
fn two_calls_from_one_client_to_two_operators_do_not_merge() {
    let run = run_scenario(&b2bua::same_client_two_operators(6), &config());
    let c = run.conversations();
    assert_eq!(c.len(), 2, "{:#?}", run.records);
    let t0 = b2bua::at(0).unix_secs();
    let by_op = |op: &str| *c.iter().find(|r| r.operator.number == op).unwrap();
    let (a, b) = (by_op("201"), by_op("202"));
    assert_eq!((a.start_time, a.duration), (t0 + 4, 26));
    assert_eq!((b.start_time, b.duration), (t0 + 6, 34));
    assert_ne!(a.conversation.id, b.conversation.id);
    // Each trunk leg merged into its own operator's record.
    for r in run.merged() {
        let into = r.conversation.merged_into.as_ref().unwrap();
        let owner = run.records.iter().find(|x| &x.id == into).unwrap();
        assert_eq!(owner.conversation.id, r.conversation.id);
        assert!(owner.conversation.legs.contains(&r.sip.call_id));
    }
    assert_eq!(run.exported().len(), 2);
}

#[test]
fn a_blind_transfer_gives_one_record_per_operator_linked_by_conversation() {
    let run = run_scenario(&b2bua::blind_transfer(7), &config());
    let c = run.conversations();
    assert_eq!(c.len(), 2, "{:#?}", run.records);
    let (a, b) = (c[0], c[1]);
    assert_eq!(a.operator.number, "201");
    assert_eq!(b.operator.number, "202");
    assert_eq!(a.conversation.id, b.conversation.id);
    assert!(a.conversation.id.is_some());
    assert_eq!((a.conversation.segment, b.conversation.segment), (0, 1));
    // 201 left by transferring; the client hung up on 202.
    assert!(a.conversation.transferred);
    assert_eq!(a.who_hung_up, WhoHungUp::Operator);
    assert_eq!(b.who_hung_up, WhoHungUp::Client);
    let t0 = b2bua::at(0).unix_secs();
    // 3 s to 20.5 s (the PBX's BYE to 201): seconds 3 and 20.
    assert_eq!((a.start_time, a.end_time), (t0 + 3, t0 + 20));
    assert_eq!((b.start_time, b.end_time), (t0 + 25, t0 + 60));
    assert!(a.exported && b.exported);
    assert_eq!(run.stats.correlation.transfer_segments, 1);
}

#[test]
fn an_attended_transfer_gives_one_record_per_operator_linked_by_conversation() {
    let run = run_scenario(&b2bua::attended_transfer(8), &config());
    let segs: Vec<&CallRecord> = run
        .conversations()
        .into_iter()
        .filter(|r| r.conversation.id.is_some() && r.conversation.role.as_deref() == Some("phone"))
        .collect();
    assert_eq!(segs.len(), 2, "{:#?}", run.records);
    let (a, b) = (segs[0], segs[1]);
    assert_eq!(
        (a.operator.number.as_str(), b.operator.number.as_str()),
        ("201", "202")
    );
    assert_eq!(a.conversation.id, b.conversation.id);
    assert_eq!((a.conversation.segment, b.conversation.segment), (0, 1));
    // Both talked to the client.
    assert_eq!(a.client_number.as_deref(), Some(CLIENT));
    assert_eq!(b.client_number.as_deref(), Some(CLIENT));
    // 201 left by transferring; the client hung up on 202.
    assert!(a.conversation.transferred);
    assert_eq!(a.who_hung_up, WhoHungUp::Operator);
    assert_eq!(
        a.transfer.as_ref().map(|t| t.kind.as_str()),
        Some("attended")
    );
    assert_eq!(b.who_hung_up, WhoHungUp::Client);
    assert!(a.exported && b.exported);
    // The consultation (201 -> 202 through the PBX) stays an internal record of its
    // own, not exported by default.
    let consult: Vec<&CallRecord> = run
        .records
        .iter()
        .filter(|r| r.sip.call_id.starts_with("consult-"))
        .collect();
    assert_eq!(consult.len(), 1, "{:#?}", run.records);
    assert_eq!(consult[0].direction, Direction::Internal);
    assert!(!consult[0].exported);
    assert_eq!(run.exported().len(), 2);
    assert_eq!(run.stats.correlation.transfer_segments, 1);
}

#[test]
fn did_and_trunk_are_properties_of_the_conversation() {
    use calltap::call::record::PropertyValue;
    let cfg = Config::from_toml(
        &format!(
            r#"{CONFIG}
[[properties]]
key = "DID"
type = "string"
source = "did"
[[properties]]
key = "Trunk"
type = "string"
source = "trunk"
[[properties]]
key = "Provider"
type = "enum"
values = ["{TRUNK_ADDR}", "198.51.100.7"]
source = "trunk"
"#
        ),
        "t",
    )
    .unwrap();
    let run = run_scenario(&b2bua::incoming_answered(1), &cfg);
    let c = run.conversations()[0];
    // The record is the phone leg's, whose Request-URI is the extension: the DID is
    // the trunk leg's dialled number.
    assert!(c.sip.request_uri.contains("201"), "{}", c.sip.request_uri);
    let props = calltap::call::properties::compute(c, &cfg);
    let text = |s: &str| Some(PropertyValue::Text(s.into()));
    assert_eq!(props.get("DID").cloned(), text(DID));
    assert_eq!(props.get("Trunk").cloned(), text(TRUNK_ADDR));
    assert_eq!(props.get("Provider").cloned(), text(TRUNK_ADDR));
    // An outgoing conversation has a trunk and no DID.
    let run = run_scenario(&b2bua::outgoing_answered(2), &cfg);
    let props = calltap::call::properties::compute(run.conversations()[0], &cfg);
    assert_eq!(props.get("DID"), None);
    assert_eq!(props.get("Trunk").cloned(), text(TRUNK_ADDR));
    // A direct call (no conversation facts): no trunk.
    let alone = Config::from_toml(
        "[network]\npbx = [\"10.9.9.9\"]\n[[properties]]\nkey = \"Trunk\"\ntype = \"string\"\nsource = \"trunk\"\n",
        "t",
    )
    .unwrap();
    let run = run_scenario(&b2bua::incoming_answered(1), &alone);
    for r in &run.records {
        assert!(calltap::call::properties::compute(r, &alone).is_empty());
    }
}

#[test]
fn the_trunk_source_fills_text_properties_only() {
    for (kind, ok) in [
        ("string", true),
        ("enum", true),
        ("number", false),
        ("boolean", false),
    ] {
        let values = if kind == "enum" {
            "values = [\"a\"]\n"
        } else {
            ""
        };
        let text = format!(
            "[[properties]]\nkey = \"Trunk\"\ntype = \"{kind}\"\n{values}source = \"trunk\"\n"
        );
        assert_eq!(Config::from_toml(&text, "t").is_ok(), ok, "{kind}");
    }
}

#[test]
fn a_leg_not_through_the_pbx_stands_alone() {
    // The same incoming conversation, with the PBX configured elsewhere: two legs,
    // two records, nothing merged, nothing held back.
    let cfg = Config::from_toml(
        "[network]\npbx = [\"10.9.9.9\"]\ntrunks = [\"203.0.113.0/24\"]\n",
        "t",
    )
    .unwrap();
    let run = run_scenario(&b2bua::incoming_answered(1), &cfg);
    assert_eq!(run.conversations().len(), 2);
    assert!(run.records.iter().all(|r| r.conversation.is_empty()));
    let _ = PBX_ADDR;
}

#[test]
fn finished_legs_wait_for_their_partners_in_capture_time() {
    // Fed frame by frame: the merged record comes out only after the last leg ended
    // plus the hold, not at the first BYE, and finish() flushes what is left.
    let s = b2bua::incoming_answered(1);
    let mut engine = Engine::new(&config());
    let packets = s.packets();
    let frames: Vec<(calltap::capture::Timestamp, Vec<u8>)> = packets
        .iter()
        .map(|p| (p.time, Link::Ethernet.frame(&p.data)))
        .collect();
    let mut calls = 0;
    for (time, bytes) in &frames {
        engine.frame(&calltap::capture::Frame {
            time: *time,
            link: Link::Ethernet.link_type(),
            data: bytes,
            orig_len: bytes.len() as u32,
        });
        while let Some(e) = engine.poll() {
            calls += matches!(e, EngineEvent::Call(_)) as usize;
        }
    }
    assert_eq!(calls, 0, "held until the partners can no longer appear");
    let end = frames.last().unwrap().0;
    engine.tick(end.saturating_add(calltap::call::correlate::HOLD_AFTER_END));
    engine.tick(end.saturating_add(calltap::call::correlate::HOLD_AFTER_END * 2));
    let mut records = Vec::new();
    while let Some(e) = engine.poll() {
        if let EngineEvent::Call(r) = e {
            records.push(*r);
        }
    }
    assert_eq!(records.len(), 2);
    engine.finish();
    assert!(engine.poll().is_none());
}

/// A carrier SBC that takes the call on one address and places the inner leg from
/// another is one B2BUA: with `[network] pbx` naming a subnet that holds both, and
/// without any configuration (the guess finds the pair), one record.
#[test]
fn an_sbc_with_two_addresses_is_one_b2bua() {
    let scenario = b2bua::sbc_two_addresses(11);
    let configured = Config::from_toml("[network]\npbx = [\"198.51.100.0/24\"]\n", "sbc").unwrap();
    for (name, config) in [("configured", configured), ("guessed", Config::default())] {
        let run = run_scenario(&scenario, &config);
        let c = run.conversations();
        assert_eq!(c.len(), 1, "{name}: {:#?}", run.records);
        assert_eq!(run.merged().len(), 1, "{name}");
        let call = c[0];
        assert_eq!(call.client_number.as_deref(), Some(CLIENT), "{name}");
        assert_eq!(call.who_hung_up, WhoHungUp::Client, "{name}");
        assert_eq!(run.exported().len(), 1, "{name}");
    }
    let guessed = run_scenario(&scenario, &Config::default());
    let guess = guessed
        .stats
        .correlation
        .pbx_guess
        .clone()
        .unwrap_or_default();
    assert!(
        guess.contains(b2bua::SBC_OUTSIDE) && guess.contains(b2bua::SBC_INSIDE),
        "{guess}"
    );
}
