//! Webhook delivery: the sustained rate to a local receiver, and what delivery costs a
//! replay that feeds it.
//!
//! - Delivery rate: the call events of `LoadSpec::short_calls(CALLS, 60)` in a store's
//!   outbox, sent to one local receiver (axum on loopback, answering 200 at once), with
//!   `concurrency` 4 (the default) and 16; events/s from start to the last one received.
//!   Every request is signed (timestamped dialect), so HMAC and JSON encoding are in it.
//! - Replay cost: the same capture replayed (`Ingest`, call events on) into a fresh
//!   store, with no endpoint, then with two endpoints subscribed to every event
//!   delivering from the same process while the replay runs. The ratio of the two
//!   throughputs is the cost of delivery to capture on a shared machine; both in one
//!   run, so the machine's state is the same for both.
//!
//! `cargo bench --bench webhooks` (CALLTAP_BENCH_CALLS sets the calls, default 2000).
//!
//! Figures on the 2-core development machine (2,000 calls, 8,000 events): see
//! README.md, Webhooks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use calltap::config::Config;
use calltap::engine::Engine;
use calltap::events::deliver::Deliveries;
use calltap::ingest::Ingest;
use calltap::pcapgen::LoadSpec;
use calltap::replay::replay_files;
use calltap::store::Store;

const SECONDS: u32 = 60;

fn calls() -> usize {
    std::env::var("CALLTAP_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

/// A receiver that counts what it is sent.
async fn receiver() -> (String, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    let app = Router::new().fallback(axum::routing::post(move || {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::Relaxed);
            "ok"
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), count)
}

fn config(hooks: &[(&str, &str, usize)]) -> Config {
    let mut text = String::new();
    for (name, url, concurrency) in hooks {
        text.push_str(&format!(
            "[[webhooks]]\nname = \"{name}\"\nurl = \"{url}\"\nsecret = \"bench-secret\"\n\
             concurrency = {concurrency}\n"
        ));
    }
    Config::from_toml(&text, "bench").expect("config")
}

/// Replays the capture into a new store; answers the store and the seconds it took.
fn replay(
    capture: &std::path::Path,
    dir: &std::path::Path,
    config: &Config,
) -> (Arc<Store>, f64, u64) {
    let store = Arc::new(Store::open(dir).expect("store"));
    let started = Instant::now();
    let mut engine = Engine::new(config);
    engine.emit_call_events(config);
    let mut ingest = Ingest::new(engine, &store);
    let reports = replay_files(&[capture], &mut ingest, false);
    ingest.shutdown();
    ingest.sync();
    assert!(
        reports.iter().all(|(_, r)| r.failed.is_none()),
        "replay failed"
    );
    let events = ingest.summary().call_events;
    let took = started.elapsed().as_secs_f64();
    drop(ingest);
    (store, took, events)
}

async fn wait_for(counts: &[&AtomicU64], n: u64, limit: Duration) -> f64 {
    let started = Instant::now();
    while counts.iter().any(|c| c.load(Ordering::Relaxed) < n) {
        assert!(started.elapsed() < limit, "not delivered within {limit:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    started.elapsed().as_secs_f64()
}

fn main() {
    let calls = calls();
    let tmp = tempfile::tempdir().expect("tempdir");
    let capture = tmp.path().join("load.pcap");
    LoadSpec::short_calls(calls, SECONDS)
        .write_pcap(&capture)
        .expect("capture");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // Replay with no endpoint: the baseline, and the outbox for the rate runs.
        let (store, base_secs, events) = tokio::task::block_in_place(|| {
            replay(&capture, &tmp.path().join("none"), &Config::default())
        });
        println!("capture: {calls} calls, {events} call events");

        println!("\ndelivery rate to one local receiver (signed, events/s):");
        for concurrency in [4usize, 16] {
            let (url, count) = receiver().await;
            let name = format!("c{concurrency}");
            let cfg = config(&[(&name, &url, concurrency)]);
            let started = Instant::now();
            let deliveries = Deliveries::start(&cfg, store.clone(), None).expect("start");
            wait_for(&[&count], events, Duration::from_secs(600)).await;
            let secs = started.elapsed().as_secs_f64();
            deliveries.stop().await;
            println!(
                "  concurrency {concurrency:>2}: {events} events in {secs:.2} s = {:.0} events/s",
                events as f64 / secs
            );
        }

        println!("\nreplay throughput, call events on:");
        let (url_a, count_a) = receiver().await;
        let (url_b, count_b) = receiver().await;
        let cfg = config(&[("a", &url_a, 4), ("b", &url_b, 4)]);
        let dir = tmp.path().join("two");
        // The store must exist before delivery starts: open it, start, then replay into it.
        let store2 = Arc::new(Store::open(&dir).expect("store"));
        let deliveries = Deliveries::start(&cfg, store2.clone(), None).expect("start");
        let started = Instant::now();
        let replayed = tokio::task::block_in_place(|| {
            let mut engine = Engine::new(&cfg);
            engine.emit_call_events(&cfg);
            let mut ingest = Ingest::new(engine, &store2);
            let reports = replay_files(&[&capture], &mut ingest, false);
            ingest.shutdown();
            ingest.sync();
            assert!(reports.iter().all(|(_, r)| r.failed.is_none()));
            ingest.summary().call_events
        });
        let two_secs = started.elapsed().as_secs_f64();
        let backlog = wait_for(&[&count_a, &count_b], replayed, Duration::from_secs(600)).await;
        deliveries.stop().await;
        // The baseline again, after: the better of the two, so the order of the runs
        // does not flatter either side.
        let (_, again_secs, _) = tokio::task::block_in_place(|| {
            replay(&capture, &tmp.path().join("none-again"), &Config::default())
        });
        let base_secs = base_secs.min(again_secs);
        let rate = |secs: f64| calls as f64 / secs;
        println!(
            "  no endpoint:    {base_secs:.2} s, {:.0} calls/s (the better of a run before and one after)",
            rate(base_secs)
        );
        println!(
            "  two endpoints:  {two_secs:.2} s, {:.0} calls/s (both delivering meanwhile; \
             the last event reached both {backlog:.2} s after the replay ended)",
            rate(two_secs)
        );
        println!(
            "  ratio (two endpoints / none): {:.2}",
            rate(two_secs) / rate(base_secs)
        );
    });
}
