//! Integrations: runs per second with three HTTP steps to a local receiver, and what
//! an integration costs a replay that feeds it.
//!
//! - Run rate: the `call.ended` events of `LoadSpec::short_calls(CALLS, 60)` in a
//!   store's outbox, each starting a run of three HTTP steps (POST that saves the id
//!   the receiver answers, PUT to a URL made with it, PATCH) to one local receiver
//!   (axum on loopback, answering at once), with `concurrency` 4 (the default) and 16;
//!   runs/s from start to the last run finished. Each step's result is flushed to the
//!   store before the next starts, so the disk's flush time is in it.
//! - Replay cost: the same capture replayed (`Ingest`, call events on) into a fresh
//!   store with no integration, then with the three-step integration running in the
//!   same process while the replay runs. The ratio of the two throughputs is the cost
//!   to capture; both in one run, so the machine's state is the same for both.
//!
//! `cargo bench --bench integrations` (CALLTAP_BENCH_CALLS sets the calls, default 2000).
//!
//! Figures on the 2-core development machine: see README.md, Integrations.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use axum::Router;
use calltap::config::Config;
use calltap::engine::Engine;
use calltap::ingest::Ingest;
use calltap::integrations::Integrations;
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

/// A receiver that answers a POST with a new id and counts the PATCHes (a run's last
/// step).
async fn receiver() -> (String, Arc<AtomicU64>) {
    let patched = Arc::new(AtomicU64::new(0));
    let ids = Arc::new(AtomicU64::new(0));
    let counted = patched.clone();
    let app = Router::new().fallback(axum::routing::any(move |method: Method| {
        let (counted, ids) = (counted.clone(), ids.clone());
        async move {
            if method == Method::POST {
                let id = ids.fetch_add(1, Ordering::Relaxed);
                return (axum::http::StatusCode::CREATED, format!("{{\"id\": {id}}}"));
            }
            if method == Method::PATCH {
                counted.fetch_add(1, Ordering::Relaxed);
            }
            (axum::http::StatusCode::OK, "{}".to_owned())
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), patched)
}

fn config(url: &str, concurrency: usize) -> Config {
    let text = format!(
        r#"
[[integrations]]
name = "crm"
on = ["call.ended"]
concurrency = {concurrency}

[[integrations.steps]]
name = "lead"
url = "{url}/leads"
body = '{{"phone": {{{{ event.data.clientNumber | tojson }}}}, "duration": {{{{ event.data.duration }}}}}}'
save = {{ lead_id = "/id" }}

[[integrations.steps]]
name = "note"
method = "PUT"
url = "{url}/leads/{{{{ saved.lead_id }}}}/note"
body = '{{"text": "{{{{ event.data.operatorName }}}}"}}'

[[integrations.steps]]
name = "close"
method = "PATCH"
url = "{url}/leads/{{{{ saved.lead_id }}}}"
body = '{{"status": "called"}}'
"#
    );
    Config::from_toml(&text, "bench").expect("config")
}

/// Replays the capture into `store`; answers the seconds it took and the `call.ended`
/// events made.
fn replay_into(capture: &std::path::Path, store: &Store, config: &Config) -> (f64, u64) {
    let started = Instant::now();
    let mut engine = Engine::new(config);
    engine.emit_call_events(config);
    let mut ingest = Ingest::new(engine, store);
    let reports = replay_files(&[capture], &mut ingest, false);
    ingest.shutdown();
    ingest.sync();
    assert!(
        reports.iter().all(|(_, r)| r.failed.is_none()),
        "replay failed"
    );
    let took = started.elapsed().as_secs_f64();
    drop(ingest);
    let ended = store
        .events_after(0, usize::MAX)
        .expect("outbox")
        .iter()
        .filter(|(_, e)| e.kind.as_str() == "call.ended")
        .count() as u64;
    (took, ended)
}

async fn wait_for(count: &AtomicU64, n: u64, limit: Duration) -> f64 {
    let started = Instant::now();
    while count.load(Ordering::Relaxed) < n {
        assert!(started.elapsed() < limit, "not done within {limit:?}");
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
        println!("\nruns/s, three HTTP steps each to one local receiver:");
        for concurrency in [4usize, 16] {
            let store = Arc::new(Store::open(&tmp.path().join(format!("rate{concurrency}"))).expect("store"));
            let (_, ended) = tokio::task::block_in_place(|| {
                replay_into(&capture, &store, &Config::default())
            });
            let (url, patched) = receiver().await;
            let cfg = config(&url, concurrency);
            let started = Instant::now();
            let integrations = Integrations::start(&cfg, store.clone(), None).expect("start");
            wait_for(&patched, ended, Duration::from_secs(1200)).await;
            let secs = started.elapsed().as_secs_f64();
            integrations.stop().await;
            let runs = store.runs(usize::MAX, None, None).expect("runs");
            assert!(runs.iter().all(|r| r.status == calltap::store::runs::RunStatus::Succeeded));
            println!(
                "  concurrency {concurrency:>2}: {ended} runs in {secs:.2} s = {:.0} runs/s ({:.0} steps/s)",
                ended as f64 / secs,
                3.0 * ended as f64 / secs
            );
        }

        println!("\nreplay throughput, call events on:");
        let base = Arc::new(Store::open(&tmp.path().join("none")).expect("store"));
        let (base_secs, _) =
            tokio::task::block_in_place(|| replay_into(&capture, &base, &Config::default()));
        let (url, patched) = receiver().await;
        let cfg = config(&url, 4);
        let store = Arc::new(Store::open(&tmp.path().join("one")).expect("store"));
        let integrations = Integrations::start(&cfg, store.clone(), None).expect("start");
        let (one_secs, ended) =
            tokio::task::block_in_place(|| replay_into(&capture, &store, &cfg));
        let backlog = wait_for(&patched, ended, Duration::from_secs(1200)).await;
        integrations.stop().await;
        let again = Arc::new(Store::open(&tmp.path().join("none-again")).expect("store"));
        let (again_secs, _) =
            tokio::task::block_in_place(|| replay_into(&capture, &again, &Config::default()));
        // The better of a run before and one after, so the order flatters neither side.
        let base_secs = base_secs.min(again_secs);
        let rate = |secs: f64| calls as f64 / secs;
        println!(
            "  no integration: {base_secs:.2} s, {:.0} calls/s (the better of a run before and one after)",
            rate(base_secs)
        );
        println!(
            "  one integration, three steps: {one_secs:.2} s, {:.0} calls/s (running meanwhile; \
             the last run finished {backlog:.2} s after the replay ended)",
            rate(one_secs)
        );
        println!(
            "  ratio (one integration / none): {:.2}",
            rate(one_secs) / rate(base_secs)
        );
    });
}
