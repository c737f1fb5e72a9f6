//! Call events from replayed captures: the exact sequence each call gives (ringing,
//! answered or voicemail, missed/busy/rejected/failed, transferred, ended, recording
//! ready), when each happens in capture time, and that `call.ended` carries the call as
//! the importer will receive it. Through a B2BUA PBX a conversation is several dialogs
//! and still one event stream.

#[path = "support/skip.rs"]
mod skip;

use std::time::Duration;

use calltap::call::CallRecord;
use calltap::capture::Timestamp;
use calltap::config::Config;
use calltap::engine::{Engine, EngineEvent};
use calltap::events::Event;
use calltap::ingest::Ingest;
use calltap::pcapgen::call::DEFAULT_START;
use calltap::pcapgen::flood::FloodSpec;
use calltap::pcapgen::scenario::{Dialog, Reply, Scenario, SdpKind, Ua};
use calltap::pcapgen::{b2bua, Link, Party};
use calltap::replay::replay_bytes;
use calltap::store::Store;
use serde_json::Value;

const OFFICE_DAY: &[u8] = include_bytes!("../pcaps/office-day.pcap");

struct Run {
    events: Vec<Event>,
    records: Vec<CallRecord>,
}

fn replay(capture: &[u8], config: &Config) -> Run {
    let mut engine = Engine::new(config);
    engine.emit_call_events(config);
    replay_bytes("capture", capture, &mut engine);
    let mut run = Run {
        events: Vec::new(),
        records: Vec::new(),
    };
    while let Some(e) = engine.poll() {
        match e {
            EngineEvent::CallEvent(e) => run.events.push(*e),
            EngineEvent::Call(r) => run.records.push(*r),
            _ => {}
        }
    }
    run
}

impl Run {
    /// Each call's event types, in order, by `callId`.
    fn sequences(&self) -> Vec<(String, Vec<&'static str>)> {
        let mut out: Vec<(String, Vec<&'static str>)> = Vec::new();
        for e in &self.events {
            match out.iter_mut().find(|(id, _)| *id == e.call_id) {
                Some((_, kinds)) => kinds.push(e.kind.as_str()),
                None => out.push((e.call_id.clone(), vec![e.kind.as_str()])),
            }
        }
        out
    }

    fn of_type(&self, kind: &str) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|e| e.kind.as_str() == kind)
            .collect()
    }

    fn record(&self, id: &str) -> &CallRecord {
        self.records
            .iter()
            .find(|r| r.id == id)
            .unwrap_or_else(|| panic!("no record {id}"))
    }
}

/// `call.ended` carries the contract object the importer will get for the call.
fn assert_ended_is_the_record(run: &Run) {
    for e in run.of_type("call.ended") {
        let id = e.data["id"].as_str().expect("data.id");
        let record = run.record(id);
        let contract = record.to_contract();
        for (k, v) in contract.as_object().expect("object") {
            assert_eq!(&e.data[k], v, "{id}: {k}");
        }
        assert_eq!(e.data["outcome"], "answered");
        assert_eq!(
            e.occurred_at.as_nanos() / 1_000_000,
            record.end_ns / 1_000_000,
            "{id}: at the hang-up"
        );
    }
}

#[test]
fn each_call_of_an_office_morning_gives_its_sequence() {
    let run = replay(OFFICE_DAY, &Config::default());
    let sequences: Vec<Vec<&str>> = run.sequences().into_iter().map(|(_, k)| k).collect();
    let answered = vec!["call.ringing", "call.answered", "call.ended"];
    assert_eq!(
        sequences,
        [
            answered.clone(),
            answered.clone(),
            answered.clone(),
            vec!["call.ringing", "call.missed"],
            vec!["call.ringing", "call.busy"],
            answered.clone(),
            answered,
        ]
    );
    // Without a B2BUA every call is one dialog: callId is the record's id.
    for (call_id, _) in run.sequences() {
        let record = run.record(&call_id);
        let first = run
            .events
            .iter()
            .find(|e| e.call_id == call_id)
            .expect("an event");
        assert_eq!(first.data["direction"], record.to_contract()["direction"]);
        assert_eq!(
            first.occurred_at.as_nanos(),
            record.invite_ns,
            "rings at the INVITE"
        );
    }
    for e in run.of_type("call.answered") {
        let record = run.record(&e.call_id);
        assert_eq!(Some(e.occurred_at.as_nanos()), record.answer_ns);
        assert_eq!(e.data["operatorId"], record.operator.id.as_str());
        assert!(e.data.get("duration").is_none(), "not over yet");
        assert!(e.data.get("whoHungUp").is_none());
    }
    let missed = run.of_type("call.missed")[0];
    assert_eq!(missed.data["outcome"], "cancelled");
    assert_eq!(missed.data["finalStatus"], 487);
    assert_eq!(run.of_type("call.busy")[0].data["finalStatus"], 486);
    assert_ended_is_the_record(&run);
    for e in run.of_type("call.ended") {
        assert!(e.data["quality"]["mos"].as_f64().is_some_and(|m| m > 4.0));
    }
    // Every event its own id; the same traffic again, the same ids.
    let mut ids: Vec<&str> = run.events.iter().map(|e| e.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), run.events.len());
    let again = replay(OFFICE_DAY, &Config::default());
    assert_eq!(again.events, run.events);
}

/// Client calls operator 201, the PBX answers: a fixture for single-dialog scenarios.
fn client() -> Ua {
    Ua::new("+15551230199", "203.0.113.50".parse().expect("ip"))
        .display("Carol Client")
        .rtp_port(31000)
}

fn phone(ext: &str) -> Ua {
    Ua::new(ext, "10.0.0.21".parse().expect("ip")).rtp_port(16002)
}

fn at(ms: u64) -> Timestamp {
    DEFAULT_START.saturating_add(Duration::from_millis(ms))
}

fn refused(code: u16) -> Vec<u8> {
    let mut d = Dialog::new(u64::from(code), client(), phone("201"));
    let inv = d.invite(at(0));
    d.reply(at(2), &inv, 100);
    d.reply(at(3_500), &inv, code);
    d.ack_failure(at(3_502), &inv);
    Scenario::new().dialog(d).pcap(Link::Ethernet)
}

#[test]
fn refusals_give_rejected_or_failed_at_the_final_answer() {
    for (code, kind) in [
        (603, "call.rejected"),
        (403, "call.rejected"),
        (404, "call.failed"),
        (503, "call.failed"),
        (480, "call.missed"),
        (600, "call.busy"),
    ] {
        let run = replay(&refused(code), &Config::default());
        let kinds: Vec<&str> = run.events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["call.ringing", kind], "{code}");
        assert_eq!(run.events[1].occurred_at, at(3_500), "{code}");
        assert_eq!(run.events[1].data["finalStatus"], code, "{code}");
    }
}

#[test]
fn a_call_answered_by_voicemail_says_so_and_a_hold_is_no_event() {
    let mut d = Dialog::new(31, client(), phone("8500"));
    let inv = d.invite(at(0));
    d.reply(at(2), &inv, 100);
    d.reply(at(1_000), &inv, Reply::new(200).answer());
    d.ack(at(1_003), &inv);
    let hold = d.reinvite(at(5_000), Party::Callee, SdpKind::Direction("sendonly"));
    d.reply(
        at(5_004),
        &hold,
        Reply::new(200).sdp(SdpKind::Direction("recvonly")),
    );
    d.ack(at(5_006), &hold);
    let bye = d.bye(at(20_000), Party::Caller);
    d.reply(at(20_002), &bye, 200);
    let capture = Scenario::new().dialog(d).pcap(Link::Ethernet);
    let mut config = Config::default();
    config.calls.voicemail = vec!["8500".into()];
    let run = replay(&capture, &config);
    let kinds: Vec<&str> = run.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["call.ringing", "call.voicemail", "call.ended"]);
    assert_eq!(run.events[2].data["holds"], 1);
    assert_eq!(run.events[2].data["whoHungUp"], "client");
    // Not a voicemail number: answered.
    let run = replay(&capture, &Config::default());
    assert_eq!(run.events[1].kind.as_str(), "call.answered");
}

#[test]
fn invites_nobody_answers_give_no_event() {
    let spec = FloodSpec::new(50, 5);
    let mut capture = calltap::pcapgen::PcapFile::new(
        Vec::new(),
        Link::Ethernet,
        calltap::pcapgen::ByteOrder::Little,
        calltap::pcapgen::TsResolution::Micro,
    )
    .expect("writer");
    spec.generate(|p| capture.write_packet(&p)).expect("flood");
    let capture = capture.finish().expect("capture");
    let run = replay(&capture, &Config::default());
    assert!(!run.records.is_empty(), "some are stored");
    assert!(run.events.is_empty(), "{:?}", run.events);
}

fn b2bua_run(s: &Scenario) -> Run {
    let config = Config::from_toml(b2bua::CONFIG, "b2bua").expect("config");
    replay(&s.pcap(Link::Ethernet), &config)
}

/// Conversations through a B2BUA: one event stream each, named by the leg that entered
/// the PBX, with the operator from the phone leg and the client from the trunk leg.
#[test]
fn a_b2bua_conversation_is_one_event_stream() {
    let cases: [(&str, Scenario, &[&str]); 4] = [
        (
            "incoming",
            b2bua::incoming_answered(1),
            &["call.ringing", "call.answered", "call.ended"],
        ),
        (
            "outgoing",
            b2bua::outgoing_answered(2),
            &["call.ringing", "call.answered", "call.ended"],
        ),
        (
            "queue",
            b2bua::queue_second_answers(3),
            &["call.ringing", "call.answered", "call.ended"],
        ),
        (
            "blind transfer",
            b2bua::blind_transfer(5),
            &[
                "call.ringing",
                "call.answered",
                "call.transferred",
                "call.ended",
            ],
        ),
    ];
    for (name, scenario, want) in cases {
        let run = b2bua_run(&scenario);
        let sequences = run.sequences();
        assert_eq!(sequences.len(), 1, "{name}: {sequences:?}");
        assert_eq!(sequences[0].1, want, "{name}");
        assert_ended_is_the_record(&run);
        let answered = run.of_type("call.answered")[0];
        let ended = run.of_type("call.ended")[0];
        let exported: Vec<&CallRecord> = run.records.iter().filter(|r| r.exported).collect();
        // The answer names the operator who took the call, and the client.
        assert_eq!(
            answered.data["clientNumber"], ended.data["clientNumber"],
            "{name}"
        );
        assert_eq!(
            answered.data["operatorId"],
            exported[0].operator.id.as_str(),
            "{name}"
        );
        // The conversation is named by its first leg: the record's, or the one merged
        // into it.
        let first_leg = run
            .records
            .iter()
            .find(|r| r.id == sequences[0].0)
            .expect("the first leg's record");
        assert!(
            first_leg.conversation.merged_into.is_some() || first_leg.exported,
            "{name}"
        );
    }
}

#[test]
fn an_attended_transfer_moves_the_client_to_the_consulted_operator() {
    let run = b2bua_run(&b2bua::attended_transfer(6));
    let sequences = run.sequences();
    // The client's conversation, and the operators' consultation call.
    assert_eq!(sequences.len(), 2, "{sequences:?}");
    assert_eq!(
        sequences[0].1,
        [
            "call.ringing",
            "call.answered",
            "call.transferred",
            "call.ended"
        ]
    );
    assert_eq!(
        sequences[1].1,
        ["call.ringing", "call.answered", "call.ended"]
    );
    assert_ended_is_the_record(&run);
    let transferred = run.of_type("call.transferred")[0];
    assert_eq!(transferred.data["transfer"]["kind"], "attended");
    assert_eq!(transferred.data["transfer"]["target"], "202");
    // The client stayed on with 202 until they hung up at 60 s.
    let ended = run
        .of_type("call.ended")
        .into_iter()
        .find(|e| e.call_id == sequences[0].0)
        .expect("client's call.ended");
    assert_eq!(ended.data["operatorId"], "202");
    assert_eq!(ended.data["whoHungUp"], "client");
}

/// Through the store: `recording.ready` once the record is stored, with the file's
/// facts; a repeat replay adds no event to the outbox.
#[test]
fn recording_ready_follows_the_stored_record_and_a_repeat_adds_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let config = Config::default();
    let ingest_once = |store: &Store| {
        let mut engine = Engine::with_recordings(&config, store.recordings_dir().to_path_buf());
        engine.emit_call_events(&config);
        let mut ingest = Ingest::new(engine, store);
        replay_bytes("office-day.pcap", OFFICE_DAY, &mut ingest);
        ingest.summary().call_events
    };
    let first = ingest_once(&store);
    let events: Vec<Event> = store
        .events_after(0, 1000)
        .expect("outbox")
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(first as usize, events.len());
    let ready: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind.as_str() == "recording.ready")
        .collect();
    assert_eq!(ready.len(), 5, "every answered call of the morning");
    for e in &ready {
        let record = store
            .get_call(&e.call_id)
            .expect("read")
            .expect("stored before its event");
        let rec = record.media.recording.expect("a recording");
        assert_eq!(e.data["recording"]["bytes"], rec.bytes);
        assert_eq!(e.data["recording"]["mimeType"], "audio/wav");
        assert_eq!(
            e.data["recording"]["filename"],
            Value::from(format!("call_recording_{}.wav", record.id))
        );
        // After the call ended.
        let ended = events
            .iter()
            .position(|x| x.kind.as_str() == "call.ended" && x.call_id == e.call_id);
        let this = events.iter().position(|x| x.id == e.id);
        assert!(ended < this);
    }
    assert_eq!(ingest_once(&store), 0, "nothing new the second time");
    assert_eq!(store.events_len(), events.len());
}

/// Third-party captures: every call the importer gets has its `call.ended`, carrying
/// that call (where the B2BUA legs were put together live: with `[network] pbx`, or no
/// B2BUA at all), and every call's events come in capture-time order.
#[test]
fn every_exported_call_of_the_shared_captures_has_its_call_ended() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps");
    if !dir.is_dir() {
        skip::skip(format!(
            "{} is absent; shared capture events not checked",
            dir.display()
        ));
        return;
    }
    let mut captures: Vec<_> = std::fs::read_dir(&dir)
        .expect("shared pcaps")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x != "md"))
        .collect();
    captures.sort();
    assert!(captures.len() >= 30, "{} captures", captures.len());
    let mut ended_seen = 0;
    for path in captures {
        let name = path.display().to_string();
        let run = replay(&std::fs::read(&path).expect("read"), &Config::default());
        let ended = run.of_type("call.ended");
        for r in run.records.iter().filter(|r| r.exported) {
            let e = ended
                .iter()
                .find(|e| e.data["id"] == r.id.as_str())
                .unwrap_or_else(|| panic!("{name}: {} has no call.ended", r.id));
            let merged_live = r.conversation.id.is_none() || e.call_id != r.id;
            if merged_live {
                for (k, v) in r.to_contract().as_object().expect("object") {
                    assert_eq!(&e.data[k], v, "{name}: {} {k}", r.id);
                }
            }
            ended_seen += 1;
        }
        for (call_id, _) in run.sequences() {
            let times: Vec<u64> = run
                .events
                .iter()
                .filter(|e| e.call_id == call_id)
                .map(|e| e.occurred_at.as_nanos())
                .collect();
            assert!(times.windows(2).all(|w| w[0] <= w[1]), "{name}: {call_id}");
        }
    }
    assert!(ended_seen > 30, "{ended_seen}");
}
