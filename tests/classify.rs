//! Direction, operator, client and whoHungUp from the configuration (DESIGN.md "Call
//! semantics"): configured operators matched on either side, trunks only, internal
//! networks only, and nothing at all (operators discovered from traffic). Each case is a
//! generated call run through the engine, as a replay would.

use std::time::Duration;

use calltap::call::classify::DiscoveredOperator;
use calltap::call::{CallRecord, Direction, Outcome, WhoHungUp};
use calltap::capture::{Frame, Timestamp};
use calltap::config::Config;
use calltap::engine::{Engine, EngineEvent};
use calltap::pcapgen::call::DEFAULT_START;
use calltap::pcapgen::scenario::{Dialog, Reply, Scenario, Ua};
use calltap::pcapgen::{Link, Party};

fn at(ms: u64) -> Timestamp {
    DEFAULT_START.saturating_add(Duration::from_millis(ms))
}

const OPERATORS: &str = r#"
[[operators]]
id = "op-101"
name = "Alice Smith"
extension = "101"
phone = "+1 555-123-0101"
department = "Sales"

[[operators]]
id = "op-102"
name = "Bob Jones"
extension = "102"
"#;

fn config(toml: &str) -> Config {
    Config::from_toml(toml, "test").unwrap()
}

fn ua(user: &str, addr: &str) -> Ua {
    Ua::new(user, addr.parse().unwrap())
}

/// A client on the far side of the trunk (the trunk is 203.0.113.0/24).
fn client() -> Ua {
    ua("+15559870000", "203.0.113.50").display("Carol Client")
}

/// A desk phone (the phones are on 10.0.0.0/16).
fn desk(ext: &str, last: u8) -> Ua {
    ua(ext, &format!("10.0.0.{last}")).display(&format!("Desk {ext}"))
}

/// Dialog `d` answered and hung up by `bye`, at a time of its own (seed x 100 s).
fn call(seed: u64, d: Dialog, bye: Party) -> Dialog {
    let mut d = d;
    let inv = d.invite(at(seed * 100_000));
    d.reply(at(seed * 100_000 + 60), &inv, 180);
    d.reply(at(seed * 100_000 + 3_000), &inv, Reply::new(200).answer());
    d.ack(at(seed * 100_000 + 3_002), &inv);
    let b = d.bye(at(seed * 100_000 + 20_000), bye);
    d.reply(at(seed * 100_000 + 20_002), &b, 200);
    d
}

struct Out {
    calls: Vec<CallRecord>,
    discovered: Vec<DiscoveredOperator>,
}

/// Feeds the capture frame by frame, as the live feed does.
fn classify(config: &Config, dialogs: Vec<Dialog>) -> Out {
    let mut s = Scenario::new();
    for d in dialogs {
        s.add(d);
    }
    let mut engine = Engine::new(config);
    let link = Link::Ethernet;
    for p in s.packets() {
        let data = link.frame(&p.data);
        engine.frame(&Frame {
            time: p.time,
            link: link.link_type(),
            data: &data,
            orig_len: data.len() as u32,
        });
    }
    engine.finish();
    let mut out = Out {
        calls: Vec::new(),
        discovered: Vec::new(),
    };
    while let Some(ev) = engine.poll() {
        match ev {
            EngineEvent::Call(r) => out.calls.push(*r),
            EngineEvent::Operator(o, _) => out.discovered.push(o),
            EngineEvent::Answered(_)
            | EngineEvent::HungUp(_)
            | EngineEvent::CallEvent(_)
            | EngineEvent::SipMessages { .. } => {}
        }
    }
    out
}

fn only(config: &Config, d: Dialog) -> (CallRecord, Vec<DiscoveredOperator>) {
    let mut out = classify(config, vec![d]);
    assert_eq!(out.calls.len(), 1, "{:#?}", out.calls);
    (out.calls.remove(0), out.discovered)
}

fn discovered(ext: &str, name: &str) -> DiscoveredOperator {
    DiscoveredOperator {
        extension: ext.into(),
        name: Some(name.into()),
    }
}

// ---- configured operators ----

#[test]
fn incoming_to_an_operators_extension() {
    let cfg = config(OPERATORS);
    let d = Dialog::new(1, client(), desk("101", 101));
    let (r, found) = only(&cfg, call(1, d, Party::Caller));
    assert_eq!(r.direction, Direction::Incoming);
    assert!(r.exported);
    assert_eq!(r.operator.id, "op-101");
    assert_eq!(r.operator.name, "Alice Smith");
    assert_eq!(r.operator.number, "101");
    assert_eq!(r.operator.department.as_deref(), Some("Sales"));
    assert!(r.operator.configured);
    assert_eq!(r.client_number.as_deref(), Some("+15559870000"));
    assert_eq!(r.client_name.as_deref(), Some("Carol Client"));
    // The client (the caller) hung up.
    assert_eq!(r.who_hung_up, WhoHungUp::Client);
    assert!(found.is_empty(), "configured operators are not discovered");
    let contract = r.to_contract();
    assert_eq!(contract["direction"], "incoming");
    assert_eq!(contract["operatorId"], "op-101");
    assert_eq!(contract["whoHungUp"], "client");
}

#[test]
fn incoming_matched_on_the_request_uri_when_to_is_the_main_number() {
    // The trunk delivers To: the company's main number; the PBX routed the INVITE to
    // extension 102 (Request-URI).
    let cfg = config(OPERATORS);
    let main_number = ua("+15551230000", "10.0.0.102").display("Example Corp");
    let d = Dialog::new(2, client(), main_number).request_user("102");
    let (r, _) = only(&cfg, call(2, d, Party::Callee));
    assert_eq!(r.direction, Direction::Incoming);
    assert_eq!(r.operator.id, "op-102");
    assert_eq!(r.operator.number, "102");
    assert_eq!(r.who_hung_up, WhoHungUp::Operator);
}

#[test]
fn incoming_to_an_operators_direct_number_after_normalisation() {
    // Configured as "+1 555-123-0101"; the trunk sends "+15551230101", or the national
    // "5551230101" (the last nine digits settle it).
    let cfg = config(OPERATORS);
    for (seed, dialled) in [(3, "+15551230101"), (4, "5551230101")] {
        let d = Dialog::new(seed, client(), ua(dialled, "10.0.0.5"));
        let (r, _) = only(&cfg, call(seed, d, Party::Callee));
        assert_eq!(r.direction, Direction::Incoming, "{dialled}");
        assert_eq!(r.operator.id, "op-101", "{dialled}");
        assert_eq!(r.operator.number, "101", "{dialled}");
        assert_eq!(r.who_hung_up, WhoHungUp::Operator);
    }
}

#[test]
fn outgoing_from_an_operators_extension() {
    let cfg = config(OPERATORS);
    let d = Dialog::new(5, desk("102", 102), ua("+15559870000", "203.0.113.1"));
    let (r, _) = only(&cfg, call(5, d, Party::Callee));
    assert_eq!(r.direction, Direction::Outgoing);
    assert!(r.exported);
    assert_eq!(r.operator.id, "op-102");
    assert_eq!(r.client_number.as_deref(), Some("+15559870000"));
    // The callee is the client here.
    assert_eq!(r.who_hung_up, WhoHungUp::Client);
    assert_eq!(r.to_contract()["direction"], "outgoing");
}

#[test]
fn outgoing_identified_by_p_asserted_identity() {
    // An anonymous From; the PBX asserts the operator's direct number.
    let cfg = config(OPERATORS);
    let anon = ua("anonymous", "10.0.0.101").display("Anonymous");
    let d = Dialog::new(6, anon, ua("+15559870000", "203.0.113.1"))
        .invite_header("P-Asserted-Identity", "<sip:+15551230101@10.0.0.5>");
    let (r, _) = only(&cfg, call(6, d, Party::Caller));
    assert_eq!(r.direction, Direction::Outgoing);
    assert_eq!(r.operator.id, "op-101");
    assert_eq!(r.who_hung_up, WhoHungUp::Operator);
}

#[test]
fn operator_to_operator_is_internal_and_not_exported() {
    let cfg = config(OPERATORS);
    let d = Dialog::new(7, desk("101", 101), desk("102", 102));
    let (r, found) = only(&cfg, call(7, d, Party::Caller));
    assert_eq!(r.direction, Direction::Internal);
    assert_eq!(r.outcome, Outcome::Answered);
    assert!(!r.exported);
    // Seen from the caller's side.
    assert_eq!(r.operator.id, "op-101");
    assert_eq!(r.who_hung_up, WhoHungUp::Operator);
    assert!(found.is_empty());

    let cfg = config(&format!("[calls]\nexport_internal = true\n{OPERATORS}"));
    let d = Dialog::new(7, desk("101", 101), desk("102", 102));
    let (r, _) = only(&cfg, call(7, d, Party::Callee));
    assert_eq!(r.direction, Direction::Internal);
    assert!(r.exported);
    assert_eq!(r.to_contract()["direction"], "outgoing");
    // The callee hung up: from the caller's side, the other party.
    assert_eq!(r.who_hung_up, WhoHungUp::Client);
}

#[test]
fn who_hung_up_follows_the_direction() {
    let cfg = config(OPERATORS);
    let cases = [
        // (caller is the operator, BYE from, expected)
        (false, Party::Caller, WhoHungUp::Client),
        (false, Party::Callee, WhoHungUp::Operator),
        (true, Party::Caller, WhoHungUp::Operator),
        (true, Party::Callee, WhoHungUp::Client),
    ];
    for (k, (outgoing, by, expected)) in cases.into_iter().enumerate() {
        let seed = 10 + k as u64;
        let d = if outgoing {
            Dialog::new(seed, desk("101", 101), ua("+15559870000", "203.0.113.1"))
        } else {
            Dialog::new(seed, client(), desk("101", 101))
        };
        let (r, _) = only(&cfg, call(seed, d, by));
        assert_eq!(
            r.who_hung_up, expected,
            "outgoing {outgoing}, BYE from {by:?}"
        );
        assert_eq!(r.hung_up_by, Some(by.into()));
    }
}

#[test]
fn an_unconfigured_extension_beside_configured_ones_is_discovered() {
    let cfg = config(OPERATORS);
    let d = Dialog::new(20, desk("105", 105), ua("+15559870000", "203.0.113.1"));
    let (r, found) = only(&cfg, call(20, d, Party::Caller));
    assert_eq!(r.direction, Direction::Outgoing);
    assert_eq!(r.operator.id, "105");
    assert!(!r.operator.configured);
    assert_eq!(found, vec![discovered("105", "Desk 105")]);
}

// ---- [network] trunks only ----

const TRUNKS: &str = "[network]\ntrunks = [\"203.0.113.0/24\"]\n";

#[test]
fn trunks_only_settle_direction_by_address() {
    let cfg = config(TRUNKS);
    // From the trunk: incoming, even to a number that does not look like an extension.
    let pbx_did = ua("+15551230000", "10.0.0.5");
    let d = Dialog::new(21, client(), pbx_did);
    let (r, found) = only(&cfg, call(21, d, Party::Caller));
    assert_eq!(r.direction, Direction::Incoming);
    assert_eq!(r.operator.id, "+15551230000");
    assert!(!r.operator.configured);
    assert!(found.is_empty(), "a DID is not an extension");
    assert_eq!(r.who_hung_up, WhoHungUp::Client);

    // To the trunk: outgoing, even when the dialled number is short (an emergency or
    // service number looks like an extension).
    let d = Dialog::new(22, desk("201", 21), ua("911", "203.0.113.1"));
    let (r, found) = only(&cfg, call(22, d, Party::Callee));
    assert_eq!(r.direction, Direction::Outgoing);
    assert_eq!(r.operator.id, "201");
    assert_eq!(r.client_number.as_deref(), Some("911"));
    assert_eq!(r.who_hung_up, WhoHungUp::Client);
    assert_eq!(found, vec![discovered("201", "Desk 201")]);
}

// ---- [network] internal only ----

const INTERNAL: &str = "[network]\ninternal = [\"10.0.0.0/16\"]\n";

#[test]
fn internal_only_settles_direction_by_address() {
    let cfg = config(INTERNAL);
    // From outside to a phone: incoming, even from a short number; and the phone's user,
    // not extension-shaped, is still an operator (it is inside).
    let outside = ua("300", "198.51.100.7");
    let d = Dialog::new(23, outside, ua("sales", "10.0.0.40").display("Sales Desk"));
    let (r, found) = only(&cfg, call(23, d, Party::Callee));
    assert_eq!(r.direction, Direction::Incoming);
    assert_eq!(r.operator.id, "sales");
    assert_eq!(r.client_number.as_deref(), Some("300"));
    assert_eq!(r.who_hung_up, WhoHungUp::Operator);
    assert_eq!(found, vec![discovered("sales", "Sales Desk")]);

    // From a phone to outside: outgoing.
    let d = Dialog::new(24, desk("201", 21), ua("+442071234567", "198.51.100.9"));
    let (r, _) = only(&cfg, call(24, d, Party::Caller));
    assert_eq!(r.direction, Direction::Outgoing);
    assert_eq!(r.operator.id, "201");
    assert_eq!(r.who_hung_up, WhoHungUp::Operator);

    // Phone to phone: both inside, the numbers decide: two extensions are internal.
    let d = Dialog::new(25, desk("201", 21), desk("202", 22));
    let (r, _) = only(&cfg, call(25, d, Party::Caller));
    assert_eq!(r.direction, Direction::Internal);
    assert!(!r.exported);
}

// ---- nothing configured: discovery ----

#[test]
fn nothing_configured_discovers_the_extension_side() {
    let cfg = Config::default();
    let d = Dialog::new(26, client(), desk("201", 21));
    let (r, found) = only(&cfg, call(26, d, Party::Caller));
    assert_eq!(r.direction, Direction::Incoming);
    assert!(r.exported);
    assert_eq!(r.operator.id, "201");
    assert_eq!(r.operator.name, "Desk 201");
    assert_eq!(r.operator.number, "201");
    assert!(!r.operator.configured);
    assert_eq!(r.client_number.as_deref(), Some("+15559870000"));
    assert_eq!(r.who_hung_up, WhoHungUp::Client);
    assert_eq!(found, vec![discovered("201", "Desk 201")]);

    let d = Dialog::new(27, desk("202", 22), ua("+15559870000", "203.0.113.1"));
    let (r, found) = only(&cfg, call(27, d, Party::Caller));
    assert_eq!(r.direction, Direction::Outgoing);
    assert_eq!(r.operator.id, "202");
    assert_eq!(r.who_hung_up, WhoHungUp::Operator);
    assert_eq!(found, vec![discovered("202", "Desk 202")]);
}

#[test]
fn nothing_configured_extension_to_extension_is_internal() {
    let cfg = Config::default();
    let d = Dialog::new(28, desk("201", 21), desk("202", 22));
    let (r, found) = only(&cfg, call(28, d, Party::Callee));
    assert_eq!(r.direction, Direction::Internal);
    assert!(!r.exported);
    assert_eq!(r.operator.id, "201");
    assert!(found.contains(&discovered("201", "Desk 201")));
}

#[test]
fn nothing_configured_extension_to_extension_discovers_both() {
    let cfg = Config::default();
    let d = Dialog::new(29, desk("201", 21), desk("202", 22));
    let (_, found) = only(&cfg, call(29, d, Party::Callee));
    assert!(found.contains(&discovered("201", "Desk 201")));
    assert!(found.contains(&discovered("202", "Desk 202")));
}

#[test]
fn configured_operator_overrides_discovery() {
    // The same phone, unconfigured then configured: discovered first, not after.
    let d = Dialog::new(30, client(), desk("101", 101));
    let (r, found) = only(&Config::default(), call(30, d.clone(), Party::Caller));
    assert_eq!(r.operator.id, "101");
    assert_eq!(found.len(), 1);
    let (r, found) = only(&config(OPERATORS), call(30, d, Party::Caller));
    assert_eq!(r.operator.id, "op-101");
    assert!(found.is_empty());
}
