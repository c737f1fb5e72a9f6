//! Synthetic call records for the benches that fill a big store (benches/api.rs,
//! benches/ui.rs): shaped like the ones replay produces, fixed pseudo-random, spread
//! over [`DAYS`] days from [`BASE`].
#![allow(dead_code)] // each bench uses a part of it

use std::collections::BTreeMap;

use calltap::call::record::{MediaFacts, SipFacts};
use calltap::call::{CallRecord, Direction, EndReason, OperatorRef, Outcome, Party, WhoHungUp};
use std::sync::Arc;

use calltap::api::{self, AppState};
use calltap::config::Config;
use calltap::store::Store;

pub const DAYS: u64 = 100;
pub const DAY: u64 = 86_400;
/// 2024-03-01 00:00:00 UTC.
pub const BASE: u64 = 1_709_251_200;
/// Records stored per batch while filling.
const BATCH: u64 = 10_000;

/// A count from the environment, or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a count")),
        Err(_) => default,
    }
}

/// Stores `calls` synthetic calls spread evenly over the days.
pub fn fill(store: &Store, calls: u64) {
    let mut i = 0;
    while i < calls {
        let records: Vec<CallRecord> = (i..(i + BATCH).min(calls))
            .map(|j| synthetic(j, BASE + j * DAYS * DAY / calls))
            .collect();
        store.put_calls(&records).expect("the batch is stored");
        i += BATCH;
    }
}

/// A fixed pseudo-random sequence, so runs compare.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A call shaped like the ones replay produces, with the headers and media figures the
/// bench's properties read.
pub fn synthetic(i: u64, start: u64) -> CallRecord {
    let h = mix(i);
    let ext = 100 + h % 50;
    let duration = 20 + h % 600;
    let client = format!("+1555{:07}", h % 10_000_000);
    CallRecord {
        id: format!("c{h:016x}"),
        outcome: Outcome::Answered,
        direction: if h % 3 != 0 {
            Direction::Incoming
        } else {
            Direction::Outgoing
        },
        exported: true,
        invite_ns: (start - 4) * 1_000_000_000,
        answer_ns: Some(start * 1_000_000_000),
        end_ns: (start + duration) * 1_000_000_000,
        start_time: start,
        end_time: start + duration,
        duration,
        ring_seconds: 4.25,
        operator: OperatorRef {
            id: format!("op-{ext}"),
            name: format!("Operator {ext}"),
            number: ext.to_string(),
            department: None,
            configured: true,
        },
        client_number: Some(client.clone()),
        client_name: (h % 4 == 0).then(|| "Client Name".to_owned()),
        who_hung_up: if h % 2 == 0 {
            WhoHungUp::Client
        } else {
            WhoHungUp::Operator
        },
        hung_up_by: Some(Party::Caller),
        end_reason: EndReason::Bye,
        transfer: None,
        holds: 0,
        sip: SipFacts {
            call_id: format!("{:032x}@10.0.0.5", u128::from(h) << 64 | u128::from(mix(h))),
            from_tag: format!("{:08x}", h as u32),
            to_tag: format!("as{:08x}", (h >> 32) as u32),
            from_uri: format!("sip:{client}@203.0.113.10"),
            to_uri: format!("sip:{ext}@10.0.0.5"),
            request_uri: format!("sip:{ext}@10.0.0.5:5060"),
            final_status: 200,
            user_agent: Some("Asterisk PBX 20.5.0".into()),
            transport: "udp".into(),
            invite_src: "203.0.113.10:5060".into(),
            invite_dst: "10.0.0.5:5060".into(),
            headers: vec![
                ("X-Queue".into(), "support-main".into()),
                ("X-Priority".into(), (h % 10).to_string()),
            ],
            ..SipFacts::default()
        },
        media: MediaFacts {
            codecs: vec!["PCMA".into()],
            mos: Some(3.0 + (h % 150) as f64 / 100.0),
            loss_percent: Some((h % 30) as f64 / 10.0),
            ..MediaFacts::default()
        },
        properties: BTreeMap::new(),
        conversation: Default::default(),
        recovered: false,
    }
}

/// Serves the API (and the console) over `store` on 127.0.0.1, on a runtime of its own
/// with two workers (the client gets the rest of the machine), with the configuration
/// `config` makes for the port and `setup` applied to the state; answers the base URL.
pub fn serve(
    store: Arc<Store>,
    config: impl FnOnce(u16) -> Config + Send + 'static,
    setup: impl FnOnce(&AppState) + Send + 'static,
) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let state = AppState::new(config(port), store).unwrap();
            setup(&state);
            tx.send(port).unwrap();
            api::serve_on(listener, state, std::future::pending())
                .await
                .unwrap();
        });
    });
    format!("http://127.0.0.1:{}", rx.recv().unwrap())
}
