//! The bundled demo, pcaps/office-day.pcap: a PBX's morning with no configuration at
//! all. calltap must tell incoming from outgoing and internal by the numbers alone,
//! name the operators from their phones' REGISTERs, and export only the conversations.

use std::path::PathBuf;

use calltap::call::{CallRecord, Direction, Outcome, WhoHungUp};
use calltap::config::Config;
use calltap::engine::{Engine, EngineEvent};
use calltap::replay::replay_files;

fn office_day() -> Vec<CallRecord> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pcaps/office-day.pcap");
    let mut engine = Engine::new(&Config::default());
    replay_files(&[path], &mut engine, false);
    let mut calls = Vec::new();
    while let Some(event) = engine.poll() {
        if let EngineEvent::Call(r) = event {
            calls.push(*r);
        }
    }
    calls.sort_by_key(|r| r.invite_ns);
    calls
}

#[test]
fn a_morning_at_the_office() {
    use Direction::*;
    use Outcome::*;
    use WhoHungUp::*;
    let calls = office_day();
    // (direction, outcome, operator id, operator name, client, duration, who hung up)
    let want = [
        (
            Incoming,
            Answered,
            "101",
            "Alice Smith",
            "+15551230001",
            7,
            Client,
        ),
        (
            Incoming,
            Answered,
            "102",
            "Brian Jones",
            "+15551230002",
            6,
            Operator,
        ),
        (
            Outgoing,
            Answered,
            "103",
            "Carol White",
            "+4930123456",
            8,
            Operator,
        ),
        (
            Incoming,
            Cancelled,
            "104",
            "David Brown",
            "+15551230003",
            0,
            System,
        ),
        (
            Outgoing,
            Busy,
            "101",
            "Alice Smith",
            "+15551239999",
            0,
            System,
        ),
        (
            Incoming,
            Answered,
            "102",
            "Brian Jones",
            "+15551230001",
            8,
            Client,
        ),
        (Internal, Answered, "103", "Carol White", "104", 5, Client),
    ];
    assert_eq!(calls.len(), want.len());
    for (r, (dir, outcome, op, name, client, secs, who)) in calls.iter().zip(want) {
        assert_eq!(r.direction, dir, "{}", r.sip.call_id);
        assert_eq!(r.outcome, outcome, "{}", r.sip.call_id);
        assert_eq!(r.operator.id, op);
        assert_eq!(r.operator.name, name);
        assert_eq!(r.client_number.as_deref(), Some(client));
        assert_eq!(r.duration, secs);
        assert_eq!(r.who_hung_up, who);
    }
    let exported: Vec<usize> = (0..calls.len()).filter(|&i| calls[i].exported).collect();
    assert_eq!(
        exported,
        [0, 1, 2, 5],
        "the four conversations with clients"
    );
    let queue = &calls[1].sip.headers;
    assert!(
        queue.contains(&("X-Queue".into(), "support".into())),
        "{queue:?}"
    );
}
