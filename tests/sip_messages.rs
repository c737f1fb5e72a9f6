//! Each call's SIP messages kept in the store: replayed captures leave every message of
//! a dialog under its record's id, over UDP and TCP, in capture order with their
//! addresses; retention takes them with the record; `[store] sip_messages = false`
//! keeps none.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use calltap::base::Transport;
use calltap::config::Config;
use calltap::engine::Engine;
use calltap::ingest::Ingest;
use calltap::pcapgen::call::{SipTransport, DEFAULT_START};
use calltap::pcapgen::{CallScript, Phone};
use calltap::replay::replay_files;
use calltap::store::retention::Retention;
use calltap::store::Store;

#[path = "support/stored.rs"]
mod stored;

fn script(i: u8, transport: SipTransport) -> CallScript {
    CallScript::new(0x5100 + u64::from(i))
        .caller(Phone::new(
            &format!("10{i}"),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 10 + i)),
            16_000 + 2 * u16::from(i),
        ))
        .start(DEFAULT_START.saturating_add(Duration::from_secs(20 * u64::from(i))))
        .transport(transport)
}

fn replay(dir: &Path, scripts: &[CallScript], config: &str) -> Store {
    let mut packets: Vec<_> = scripts.iter().flat_map(|s| s.to_vec()).collect();
    packets.sort_by_key(|p| p.time);
    let capture = dir.join("calls.pcap");
    std::fs::write(&capture, stored::pcap_of(&packets)).expect("write capture");
    let config = Config::from_toml(config, "tests/sip_messages.rs").expect("config");
    let store = Store::open(&dir.join("store")).expect("store");
    let engine = Engine::with_recordings(&config, store.recordings_dir().to_path_buf());
    let mut ingest = Ingest::new(engine, &store);
    replay_files(&[capture], &mut ingest, false);
    drop(ingest);
    store
}

/// The id of the stored call whose SIP Call-ID is `call_id`.
fn id_of(store: &Store, call_id: &str) -> String {
    store
        .all_calls()
        .map(|r| r.expect("readable"))
        .find(|r| r.sip.call_id == call_id)
        .map(|r| r.id)
        .unwrap_or_else(|| panic!("no call with Call-ID {call_id}"))
}

#[test]
fn every_message_of_a_call_is_kept_in_order_with_its_addresses() {
    let dir = tempfile::tempdir().expect("temp dir");
    let scripts = [script(1, SipTransport::Udp), script(2, SipTransport::Tcp)];
    let store = replay(dir.path(), &scripts, "");
    for (script, transport) in scripts.iter().zip([Transport::Udp, Transport::Tcp]) {
        let sent = script.sip_messages();
        let id = id_of(&store, &script.ids().call_id);
        let trace = store
            .sip_messages(&id)
            .expect("readable")
            .expect("messages kept");
        assert_eq!(trace.cut, 0);
        let labels: Vec<&str> = sent.iter().map(|m| m.label).collect();
        assert_eq!(trace.messages.len(), sent.len(), "{labels:?}");
        for (kept, sent) in trace.messages.iter().zip(&sent) {
            assert_eq!(&*kept.text, &sent.bytes[..], "{}", sent.label);
            assert_eq!(kept.time, sent.time, "{}", sent.label);
            assert_eq!(kept.transport, transport);
        }
        let invite = &trace.messages[0];
        assert!(invite.text.starts_with(b"INVITE "));
        // Over TCP the caller sends from its connection's own port.
        assert_eq!(invite.src.ip(), script.caller.sip_addr().ip());
        if transport == Transport::Udp {
            assert_eq!(invite.src, script.caller.sip_addr());
        }
        assert_eq!(invite.dst, script.callee.sip_addr());
        assert!(trace.messages.windows(2).all(|w| w[0].time <= w[1].time));
    }
    assert!(store
        .sip_messages("no-such-call")
        .expect("readable")
        .is_none());
}

#[test]
fn retention_takes_the_messages_with_the_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = replay(dir.path(), &[script(1, SipTransport::Udp)], "");
    let id = id_of(&store, &script(1, SipTransport::Udp).ids().call_id);
    assert!(store.sip_messages(&id).expect("readable").is_some());
    let config = Config::from_toml("[store]\nkeep_days = 1\n", "test").expect("config");
    let ten_days_later = DEFAULT_START.unix_secs() + 10 * 86_400;
    let report = Retention::new(&config.store)
        .sweep(&store, ten_days_later)
        .expect("sweep");
    assert_eq!(report.records_deleted, 1);
    assert!(store.get_call(&id).expect("readable").is_none());
    assert!(store.sip_messages(&id).expect("readable").is_none());
}

#[test]
fn with_sip_messages_off_none_are_kept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = script(1, SipTransport::Udp);
    let store = replay(
        dir.path(),
        std::slice::from_ref(&s),
        "[store]\nsip_messages = false\n",
    );
    let id = id_of(&store, &s.ids().call_id);
    assert!(store.sip_messages(&id).expect("readable").is_none());
}
