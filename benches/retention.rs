//! Retention on a store the size the run loop must handle every minute: a million calls
//! over 100 days, one in ten with a recording (100,000 files). Measures the first sweep
//! that enables retention on a full store, an idle sweep, the per-minute sweep, a sweep
//! after a day's pause, a `max_disk` trim, the recordings index migration, and what the
//! folder walk that the running total replaces would cost.
//!
//! `cargo bench --bench retention` (CALLTAP_BENCH_CALLS=100000 for a quick run).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use calltap::call::record::{PropertyValue, RecordingFile, SipFacts};
use calltap::call::{CallRecord, Direction, EndReason, OperatorRef, Outcome, WhoHungUp};
use calltap::config::{ByteSize, StoreConfig};
use calltap::store::retention::{Retention, RetentionReport};
use calltap::store::Store;

const DAYS: u64 = 100;
const DAY: u64 = 86_400;
/// 2024-03-01 00:00:00 UTC.
const BASE: u64 = 1_709_251_200;
/// One call in this many has a recording.
const RECORDED_EVERY: u64 = 10;
/// What a record says its recording takes: a minute of 8 kHz stereo. The files
/// themselves are headers only, so the bench does not need 100 GB of disk.
const RECORDING_BYTES: u64 = 1_920_044;
const RUNS: usize = 100;

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A record shaped like replay's (SIP facts, headers, properties: ~1.2 KB stored).
fn synthetic(i: u64, start: u64, recorded: bool) -> CallRecord {
    let h = mix(i);
    let ext = 100 + h % 50;
    let client = format!("+1555{:07}", h % 10_000_000);
    let id = format!("c{h:016x}");
    CallRecord {
        id: id.clone(),
        outcome: Outcome::Answered,
        direction: Direction::Incoming,
        exported: true,
        invite_ns: (start - 4) * 1_000_000_000,
        answer_ns: Some(start * 1_000_000_000),
        end_ns: (start + 60) * 1_000_000_000,
        start_time: start,
        end_time: start + 60,
        duration: 60,
        ring_seconds: 4.25,
        operator: OperatorRef {
            id: format!("op-{ext}"),
            name: format!("Operator {ext}"),
            number: ext.to_string(),
            department: Some("Sales".into()),
            configured: true,
        },
        client_number: Some(client.clone()),
        client_name: None,
        who_hung_up: WhoHungUp::Client,
        hung_up_by: None,
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
            headers: vec![("X-Queue".into(), "support-main".into())],
            ..SipFacts::default()
        },
        media: calltap::call::MediaFacts {
            codecs: vec!["PCMA".into()],
            recording: recorded.then(|| RecordingFile {
                file: format!("{id}.wav"),
                bytes: RECORDING_BYTES,
                sample_rate: 8000,
                duration_ms: 60_000,
            }),
            mos: Some(4.3),
            caller_packets: 3000,
            callee_packets: 3000,
            ..Default::default()
        },
        properties: BTreeMap::from([
            (
                "Department".to_owned(),
                PropertyValue::Text("support".into()),
            ),
            (
                "Quality score".to_owned(),
                PropertyValue::Number((h % 100) as f64),
            ),
        ]),
        conversation: Default::default(),
        recovered: false,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn summary(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    let p99 = ((v.len() as f64 * 0.99).ceil() as usize).clamp(1, v.len()) - 1;
    (v[v.len() / 2], v[p99])
}

fn config(keep: u32, rec_keep: u32, max_disk: Option<u64>) -> StoreConfig {
    StoreConfig {
        keep_days: keep,
        recordings_keep_days: rec_keep,
        max_disk: max_disk.map(ByteSize),
        ..StoreConfig::default()
    }
}

fn timed(retention: &Retention, store: &Store, now: u64) -> (RetentionReport, Duration) {
    let t = Instant::now();
    let report = retention.sweep(store, now).expect("sweep");
    (report, t.elapsed())
}

fn line(what: &str, d: Duration, r: &RetentionReport) {
    println!(
        "| {what} | {:.1} ms | {} | {} |",
        ms(d),
        r.records_deleted,
        r.recordings_deleted
    );
}

fn main() {
    let calls: u64 = std::env::var("CALLTAP_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let per_day = calls / DAYS;
    let dir = tempfile::tempdir().expect("a temporary folder");
    println!(
        "retention bench: {calls} calls over {DAYS} days, one in {RECORDED_EVERY} recorded, in {}",
        dir.path().display()
    );
    let store = Store::open(dir.path()).expect("store");
    let header = [0u8; 44];
    let fill = Instant::now();
    let mut i = 0;
    while i < calls {
        let batch: Vec<CallRecord> = (i..(i + 1000).min(calls))
            .map(|j| {
                let recorded = j % RECORDED_EVERY == 0;
                let record = synthetic(j, BASE + j * DAYS * DAY / calls, recorded);
                if let Some(rec) = &record.media.recording {
                    std::fs::write(store.recordings_dir().join(&rec.file), header).expect("a file");
                }
                record
            })
            .collect();
        store.put_calls(&batch).expect("stored");
        i += 1000;
    }
    println!("fill: {:.1} s", fill.elapsed().as_secs_f64());
    let totals = store.recordings_totals().expect("totals");
    println!(
        "recordings: {} ({} bytes by their records)",
        totals.count, totals.bytes
    );

    // What the running total replaces: a walk of the folder.
    let t = Instant::now();
    let walked = store.recordings_size().expect("walk");
    let walk = t.elapsed();
    let t = Instant::now();
    let counted = store.recordings_totals().expect("totals");
    let counter = t.elapsed();
    std::hint::black_box((walked, counted));
    drop(store);

    // The upgrade from schema 1: the index built from the records on open.
    {
        let db = sled::open(dir.path().join("db")).expect("sled");
        db.drop_tree("recordings").expect("drop");
        db.open_tree("meta")
            .expect("meta")
            .insert("schema_version", &1u32.to_be_bytes())
            .expect("v1");
        db.flush().expect("flush");
    }
    let t = Instant::now();
    let store = Store::open(dir.path()).expect("reopen and migrate");
    let migrate = t.elapsed();
    assert_eq!(store.recordings_totals().expect("totals"), totals);

    println!();
    println!("| sweep | time | records deleted | recordings deleted |");
    println!("|-------|------|-----------------|--------------------|");
    // Retention switched on over a full store: 10 days of records go, then the
    // recordings of days 10 to 70, then 5% more by max_disk.
    let now = BASE + DAYS * DAY;
    let after_keep = totals.bytes / 100 * 30;
    let cap = after_keep / 100 * 95;
    let retention = Retention::new(&config(90, 30, Some(cap)));
    let (r, d) = timed(&retention, &store, now);
    line(
        "first sweep, retention switched on (90 d, 30 d, cap)",
        d,
        &r,
    );

    let mut idle = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        idle.push(timed(&retention, &store, now).1);
    }
    let (idle_med, idle_p99) = summary(idle);
    println!(
        "| idle sweep, nothing due: median / p99 | {:.3} / {:.3} ms | 0 | 0 |",
        ms(idle_med),
        ms(idle_p99)
    );

    // Every minute, as the run loop does (the cap raised so time alone drives it).
    let retention = Retention::new(&config(90, 30, Some(totals.bytes)));
    let mut minute = Vec::with_capacity(RUNS);
    let (mut records, mut recordings) = (0, 0);
    for k in 1..=RUNS as u64 {
        let (r, d) = timed(&retention, &store, now + 60 * k);
        minute.push(d);
        records += r.records_deleted;
        recordings += r.recordings_deleted;
    }
    let (min_med, min_p99) = summary(minute);
    println!(
        "| every minute ({per_day} calls a day): median / p99 | {:.2} / {:.2} ms | {} in {RUNS} | {} in {RUNS} |",
        ms(min_med),
        ms(min_p99),
        records,
        recordings
    );

    // The run loop was stopped for a day.
    let (r, d) = timed(&retention, &store, now + DAY + 60 * RUNS as u64);
    line("a day's worth at once", d, &r);

    // max_disk lowered by 1%.
    let total = store.recordings_totals().expect("totals").bytes;
    let retention = Retention::new(&config(0, 0, Some(total / 100 * 99)));
    let (r, d) = timed(&retention, &store, now);
    line("max_disk lowered by 1%", d, &r);

    println!();
    println!(
        "| recordings total by walking the folder ({} files) | {:.1} ms |",
        totals.count,
        ms(walk)
    );
    println!(
        "| recordings total from the counters | {:.3} ms |",
        ms(counter)
    );
    println!(
        "| schema 1 -> 2 migration on open (index built) | {:.1} s |",
        migrate.as_secs_f64()
    );
}
