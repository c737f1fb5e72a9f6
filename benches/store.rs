//! The store at the size the API issue asks about: a million exported calls over 100
//! days, then `POST /calls`' one-day window (about 10,000 calls) read and serialised to
//! the contract's JSON. Aim: under 100 ms.
//!
//! `cargo bench --bench store` (CALLTAP_BENCH_CALLS=100000 for a quick run;
//! CALLTAP_BENCH_BATCH sets the replay batch size, default 1000).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use calltap::call::record::{PropertyValue, SipFacts};
use calltap::call::{CallRecord, Direction, EndReason, OperatorRef, Outcome, Party, WhoHungUp};
use calltap::store::Store;

const DAYS: u64 = 100;
const DAY: u64 = 86_400;
/// 2024-03-01 00:00:00 UTC.
const BASE: u64 = 1_709_251_200;
const WINDOW_RUNS: usize = 50;
const SINGLE_PUTS: usize = 200;

fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a count")),
        Err(_) => default,
    }
}

/// A fixed pseudo-random sequence, so ids spread like hashes and runs compare.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A call shaped like the ones replay produces: SIP facts, two INVITE headers, four
/// properties.
fn synthetic(i: u64, start: u64) -> CallRecord {
    let h = mix(i);
    let ext = 100 + h % 50;
    let duration = 20 + h % 600;
    let incoming = h % 3 != 0;
    let client = format!("+1555{:07}", h % 10_000_000);
    let call_id = format!("{:032x}@10.0.0.5", u128::from(h) << 64 | u128::from(mix(h)));
    CallRecord {
        id: format!("c{h:016x}"),
        outcome: Outcome::Answered,
        direction: if incoming {
            Direction::Incoming
        } else {
            Direction::Outgoing
        },
        exported: true,
        invite_ns: (start - 4) * 1_000_000_000 + h % 1_000_000_000,
        answer_ns: Some(start * 1_000_000_000 + h % 1_000_000_000),
        end_ns: (start + duration) * 1_000_000_000,
        start_time: start,
        end_time: start + duration,
        duration,
        ring_seconds: 4.25,
        operator: OperatorRef {
            id: format!("op-{ext}"),
            name: format!("Operator {ext}"),
            number: ext.to_string(),
            department: Some(if ext % 2 == 0 { "Sales" } else { "Support" }.into()),
            configured: true,
        },
        client_number: Some(client.clone()),
        client_name: (h % 4 == 0).then(|| "Client Name".to_owned()),
        who_hung_up: if h % 2 == 0 {
            WhoHungUp::Client
        } else {
            WhoHungUp::Operator
        },
        hung_up_by: Some(if h % 2 == 0 {
            Party::Caller
        } else {
            Party::Callee
        }),
        end_reason: EndReason::Bye,
        transfer: None,
        holds: (h % 5 == 0) as u32,
        sip: SipFacts {
            call_id,
            from_tag: format!("{:08x}", h as u32),
            to_tag: format!("as{:08x}", (h >> 32) as u32),
            from_uri: format!("sip:{client}@203.0.113.10"),
            to_uri: format!("sip:{ext}@10.0.0.5"),
            request_uri: format!("sip:{ext}@10.0.0.5:5060"),
            p_asserted_identity: Some(format!("<sip:{client}@203.0.113.10>")),
            diversion: None,
            final_status: 200,
            reason: None,
            user_agent: Some("Asterisk PBX 20.5.0".into()),
            transport: "udp".into(),
            invite_src: "203.0.113.10:5060".into(),
            invite_dst: "10.0.0.5:5060".into(),
            headers: vec![
                ("X-Queue".into(), "support-main".into()),
                ("X-Campaign".into(), format!("spring-{}", h % 7)),
            ],
        },
        media: Default::default(),
        properties: BTreeMap::from([
            (
                "Department".to_owned(),
                PropertyValue::Text("support".into()),
            ),
            ("Client city".to_owned(), PropertyValue::Text("Kyiv".into())),
            ("Issue resolved".to_owned(), PropertyValue::Bool(h % 2 == 0)),
            (
                "Quality score".to_owned(),
                PropertyValue::Number((h % 100) as f64),
            ),
        ]),
        conversation: Default::default(),
        recovered: false,
    }
}

fn start_of(i: u64, calls: u64) -> u64 {
    BASE + i * DAYS * DAY / calls
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// (median, p99) of a sample.
fn summary(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    let p99 = ((v.len() as f64 * 0.99).ceil() as usize).clamp(1, v.len()) - 1;
    (v[v.len() / 2], v[p99])
}

/// Time this thread has spent on a CPU, so that figures taken on a busy machine can be
/// told apart from the store's own cost: wall time also counts the waits for a core.
fn cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no arguments.
    let calls = env_usize("CALLTAP_BENCH_CALLS", 1_000_000) as u64;
    let batch = env_usize("CALLTAP_BENCH_BATCH", 1000).max(1) as u64;
    let dir = tempfile::tempdir().expect("a temporary folder");
    println!(
        "store bench: {calls} exported calls over {DAYS} days, batches of {batch}, in {}",
        dir.path().display()
    );

    // Fill, as replay would: in start-time order, in batches, one flush per batch.
    let store = Store::open(dir.path()).expect("the store opens");
    let mut encoded_bytes = 0u64;
    let mut put_time = Duration::ZERO;
    let fill = Instant::now();
    let mut i = 0;
    while i < calls {
        let records: Vec<CallRecord> = (i..(i + batch).min(calls))
            .map(|j| synthetic(j, start_of(j, calls)))
            .collect();
        if i == 0 {
            encoded_bytes = serde_json::to_vec(&records[0]).unwrap().len() as u64 + 3;
        }
        let t = Instant::now();
        store.put_calls(&records).expect("the batch is stored");
        put_time += t.elapsed();
        i += batch;
    }
    let fill_time = fill.elapsed();
    assert_eq!(store.count_calls().unwrap(), calls);

    // One call at a time, each flushed: the live path.
    let mut single = Vec::with_capacity(SINGLE_PUTS);
    for k in 0..SINGLE_PUTS as u64 {
        let record = synthetic(calls + k, BASE + DAYS * DAY + k);
        let t = Instant::now();
        store.put_call(&record).expect("the call is stored");
        single.push(t.elapsed());
    }
    let (single_median, single_p99) = summary(single);
    store.flush().unwrap();
    let db_bytes = store.size_on_disk().unwrap();
    drop(store);
    let du_bytes = dir_size(&dir.path().join("db"));

    // The API's query, on a freshly opened store (sled's cache cold, the OS's warm).
    let store = Store::open(dir.path()).expect("the store reopens");
    let mut totals = Vec::with_capacity(WINDOW_RUNS);
    let mut cpus = Vec::with_capacity(WINDOW_RUNS);
    let mut reads = Vec::with_capacity(WINDOW_RUNS);
    let mut serialises = Vec::with_capacity(WINDOW_RUNS);
    let mut body_bytes = 0usize;
    let mut window_calls = 0usize;
    let mut first = Duration::ZERO;
    for run in 0..WINDOW_RUNS as u64 {
        let day = (run * 37) % DAYS;
        let start = BASE + day * DAY;
        let c0 = cpu_time();
        let t0 = Instant::now();
        let records: Vec<CallRecord> = store
            .calls_between(start, start + DAY)
            .map(|c| c.expect("a readable call"))
            .collect();
        let t1 = Instant::now();
        let calls_json: Vec<serde_json::Value> =
            records.iter().map(CallRecord::to_contract).collect();
        let body = serde_json::to_vec(&serde_json::json!({ "calls": calls_json })).unwrap();
        let t2 = Instant::now();
        cpus.push(cpu_time() - c0);
        if run == 0 {
            first = t2 - t0;
        }
        reads.push(t1 - t0);
        serialises.push(t2 - t1);
        totals.push(t2 - t0);
        body_bytes += body.len();
        window_calls += records.len();
    }
    // Where read+decode goes: JSON decoding alone, on one window's records.
    let day: Vec<Vec<u8>> = store
        .calls_between(BASE, BASE + DAY)
        .map(|c| serde_json::to_vec(&c.unwrap()).unwrap())
        .collect();
    let t = Instant::now();
    for json in &day {
        std::hint::black_box(serde_json::from_slice::<CallRecord>(json).unwrap());
    }
    let decode_per_call = t.elapsed() / day.len().max(1) as u32;

    // The importer's steady state: the same recent window polled again and again.
    let mut warm = Vec::with_capacity(WINDOW_RUNS);
    let mut warm_cpus = Vec::with_capacity(WINDOW_RUNS);
    let start = BASE + (DAYS - 1) * DAY;
    for _ in 0..WINDOW_RUNS {
        let c = cpu_time();
        let t = Instant::now();
        let calls_json: Vec<serde_json::Value> = store
            .calls_between(start, start + DAY)
            .map(|c| c.expect("a readable call").to_contract())
            .collect();
        let body = serde_json::to_vec(&serde_json::json!({ "calls": calls_json })).unwrap();
        std::hint::black_box(body);
        warm.push(t.elapsed());
        warm_cpus.push(cpu_time() - c);
    }
    let (warm_median, warm_p99) = summary(warm);
    let (warm_cpu_median, warm_cpu_p99) = summary(warm_cpus);

    drop(store);

    // sled's share: the same range scans on the raw tree, touching every value and
    // decoding nothing, on days not read yet (cold in sled's cache) and on one day again.
    let db = sled::open(dir.path().join("db")).expect("sled reopens");
    let tree = db.open_tree("calls").unwrap();
    let scan = |day: u64| {
        let start = BASE + day * DAY;
        let t = Instant::now();
        let bytes: usize = tree
            .range(start.to_be_bytes()..(start + DAY).to_be_bytes())
            .map(|kv| kv.unwrap().1.len())
            .sum();
        std::hint::black_box(bytes);
        t.elapsed()
    };
    let (raw_cold, _) = summary(
        (0..WINDOW_RUNS as u64)
            .map(|run| scan((run * 37 + 1) % DAYS))
            .collect(),
    );
    let (raw_warm, _) = summary((0..WINDOW_RUNS).map(|_| scan(DAYS - 1)).collect());
    drop(tree);
    drop(db);

    let (total_median, total_p99) = summary(totals);
    let (cpu_median, cpu_p99) = summary(cpus);
    let (read_median, read_p99) = summary(reads);
    let (ser_median, ser_p99) = summary(serialises);
    let body_avg = body_bytes as f64 / WINDOW_RUNS as f64;

    println!("load average (1, 5, 15 min) at the end: {}", load_average());
    println!();
    println!("| measure                                  | value |");
    println!("|------------------------------------------|-------|");
    println!("| calls stored                             | {calls} |");
    println!("| stored record (3-byte header + JSON)     | {encoded_bytes} B |");
    println!(
        "| fill, wall (incl. building records)      | {:.1} s |",
        fill_time.as_secs_f64()
    );
    println!(
        "| insert throughput, put_calls batched     | {:.0} calls/s |",
        calls as f64 / put_time.as_secs_f64()
    );
    println!(
        "| single put_call, flushed: median / p99   | {:.2} / {:.2} ms |",
        ms(single_median),
        ms(single_p99)
    );
    println!(
        "| calls per one-day window (mean)          | {} |",
        window_calls / WINDOW_RUNS
    );
    println!(
        "| window read + JSON: first after reopen   | {:.1} ms |",
        ms(first)
    );
    println!(
        "| window read + JSON, {WINDOW_RUNS} different days: median / p99 | {:.1} / {:.1} ms |",
        ms(total_median),
        ms(total_p99)
    );
    println!(
        "|   on-CPU time of the same: median / p99  | {:.1} / {:.1} ms |",
        ms(cpu_median),
        ms(cpu_p99)
    );
    println!(
        "|   of which read+decode: median / p99     | {:.1} / {:.1} ms |",
        ms(read_median),
        ms(read_p99)
    );
    println!(
        "|   raw sled range scan, new days / same day (median) | {:.1} / {:.1} ms |",
        ms(raw_cold),
        ms(raw_warm)
    );
    println!(
        "|   JSON decode alone, per call            | {:.2} us |",
        decode_per_call.as_secs_f64() * 1e6
    );
    println!(
        "|   of which to_contract+JSON: median / p99| {:.1} / {:.1} ms |",
        ms(ser_median),
        ms(ser_p99)
    );
    println!(
        "| window read + JSON, same day {WINDOW_RUNS} times: median / p99 | {:.1} / {:.1} ms |",
        ms(warm_median),
        ms(warm_p99)
    );
    println!(
        "|   on-CPU time of the same: median / p99  | {:.1} / {:.1} ms |",
        ms(warm_cpu_median),
        ms(warm_cpu_p99)
    );
    println!(
        "| response body per window (mean)          | {:.2} MB |",
        body_avg / 1e6
    );
    println!(
        "| response MB/s at the median              | {:.0} MB/s |",
        body_avg / 1e6 / total_median.as_secs_f64()
    );
    println!(
        "| database size: sled size_on_disk / du    | {:.0} / {:.0} MB |",
        db_bytes as f64 / 1e6,
        du_bytes as f64 / 1e6
    );
    println!(
        "| database bytes per call                  | {:.0} B |",
        du_bytes as f64 / (calls + SINGLE_PUTS as u64) as f64
    );
}
