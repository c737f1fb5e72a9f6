//! The API at the size the importer meets it: a million exported calls over 100 days
//! (about 10,000 a day), served on loopback. Measures `POST /calls` for a one-day window
//! (median and p99 to the last byte, and response MB/s, over 50 requests on different
//! days), then requests/s under concurrent load for `/health` and for a small window.
//! Aim: the 10,000-call day in under 100 ms.
//!
//! `cargo bench --bench api` (CALLTAP_BENCH_CALLS=100000 for a quick run: the day then
//! holds 1,000 calls; CALLTAP_BENCH_CLIENTS sets the concurrent client tasks, default 32;
//! CALLTAP_BENCH_SECS the seconds of each load run, default 5).
//!
//! The client runs in this process, on its own single-threaded runtime, while the server
//! has two worker threads: on a 2-core machine the two compete for cores, so the figures
//! are a floor for what a separate client machine would see.
//!
//! Figures on the 2-core development machine (1,000,000 calls, 10,000 a day):
//! - one day, one thread per request: median 105 ms, 34 MB/s;
//! - one day, read an hour at a time on two threads (src/api/calls.rs): median 62 ms,
//!   p99 187 ms (the first, cold request after the store was reopened), 53 MB/s,
//!   3.5 MB per answer; with Department + Priority filters (1,981 calls) median 60 ms;
//! - 32 concurrent clients: `/health` ~43,000 requests/s, a one-minute window (~7 calls)
//!   ~9,000 requests/s.

use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "support/calls.rs"]
mod calls;

use calltap::config::Config;
use calltap::store::Store;

use calls::{env_u64, BASE, DAY, DAYS};

const WINDOW_RUNS: usize = 50;
const KEY: &str = "bench-key-0123456789abcdef";

fn config(port: u16) -> Config {
    let mut text = format!(
        r#"
        [api]
        listen = "127.0.0.1:{port}"
        secret_keys = ["{KEY}"]
        link_keys = ["bench-link-key-0123456789"]
        # The load runs are one source sending as fast as it can: no rate limit.
        [api.rate_limit]
        per_source = 0
        per_key = 0
        "#
    );
    for ext in 100..150 {
        text.push_str(&format!(
            "[[operators]]\nid = \"op-{ext}\"\nname = \"Operator {ext}\"\nextension = \"{ext}\"\ndepartment = \"{}\"\n",
            if ext % 2 == 0 { "Sales" } else { "Support" }
        ));
    }
    text.push_str(
        r#"
        [[properties]]
        key = "Department"
        type = "enum"
        values = ["Sales", "Support"]
        source = "department"
        [[properties]]
        key = "Queue"
        type = "string"
        source = "header"
        header = "X-Queue"
        [[properties]]
        key = "Priority"
        type = "number"
        source = "header"
        header = "X-Priority"
        [[properties]]
        key = "MOS"
        type = "number"
        source = "mos"
        [[properties]]
        key = "Client city"
        type = "string"
        source = "client_prefix"
        prefixes = { "1555" = "Springfield", "1556" = "Shelbyville" }
        "#,
    );
    Config::from_toml(&text, "benches/api.rs").expect("the bench configuration is valid")
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

/// Requests/s from `clients` tasks sending `make()` for `secs` seconds; every answer
/// must be 200.
async fn load(
    client: &reqwest::Client,
    clients: u64,
    secs: u64,
    make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync + Clone + 'static,
) -> (f64, u64) {
    let stop = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let client = client.clone();
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < stop {
                let response = make(&client).send().await.expect("the server answers");
                assert_eq!(response.status(), 200);
                response.bytes().await.expect("a body");
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    (total as f64 / started.elapsed().as_secs_f64(), total)
}

fn main() {
    let calls = env_u64("CALLTAP_BENCH_CALLS", 1_000_000);
    let clients = env_u64("CALLTAP_BENCH_CLIENTS", 32);
    let secs = env_u64("CALLTAP_BENCH_SECS", 5);
    let dir = tempfile::tempdir().expect("a temporary folder");
    println!(
        "api bench: {calls} exported calls over {DAYS} days ({} a day), in {}",
        calls / DAYS,
        dir.path().display()
    );

    let fill = Instant::now();
    {
        let store = Store::open(dir.path()).expect("the store opens");
        calls::fill(&store, calls);
    }
    println!("filled in {:.1} s", fill.elapsed().as_secs_f64());

    // The server: its own runtime with two workers, on a freshly reopened store.
    let store = Arc::new(Store::open(dir.path()).expect("the store reopens"));
    let base = calls::serve(store, config, |_| {});

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(usize::try_from(clients).unwrap_or(64))
            .build()
            .unwrap();
        let window = |start: u64, stop: u64, extra: serde_json::Value| {
            let mut body = serde_json::json!({"startTime": start, "stopTime": stop});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            serde_json::to_vec(&body).unwrap()
        };

        for (label, extra) in [
            ("one day", serde_json::json!({})),
            (
                "one day, filtered (Department + Priority > 4)",
                serde_json::json!({"propertyFilters": {"Department": ["Sales"],
                    "Priority": {"mode": "all", "conditions": [{"operator": "gt", "value": 4}]}}}),
            ),
        ] {
            let mut times = Vec::with_capacity(WINDOW_RUNS);
            let mut bytes = 0usize;
            let mut n_calls = 0usize;
            let mut first = Duration::ZERO;
            for run in 0..WINDOW_RUNS as u64 {
                let day = (run * 37) % DAYS;
                let start = BASE + day * DAY;
                let body = window(start, start + DAY, extra.clone());
                let t = Instant::now();
                let response = client
                    .post(format!("{base}/calls"))
                    .header("X-Secret-Key", KEY)
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("the server answers");
                assert_eq!(response.status(), 200);
                let data = response.bytes().await.expect("a body");
                let elapsed = t.elapsed();
                if run == 0 {
                    first = elapsed;
                    let json: serde_json::Value = serde_json::from_slice(&data).unwrap();
                    n_calls = json["calls"].as_array().unwrap().len();
                }
                bytes += data.len();
                times.push(elapsed);
            }
            let total: Duration = times.iter().sum();
            let (median, p99) = summary(times);
            println!(
                "POST /calls, {label}: {n_calls} calls, {:.2} MB; first (cold) {:.1} ms, \
                 median {:.1} ms, p99 {:.1} ms, {:.0} MB/s",
                bytes as f64 / WINDOW_RUNS as f64 / 1e6,
                ms(first),
                ms(median),
                ms(p99),
                bytes as f64 / 1e6 / total.as_secs_f64(),
            );
        }

        let health = {
            let base = base.clone();
            move |c: &reqwest::Client| c.get(format!("{base}/health")).header("X-Secret-Key", KEY)
        };
        let (rps, n) = load(&client, clients, secs, health).await;
        println!(
            "GET /health, {clients} concurrent clients: {rps:.0} requests/s ({n} in {secs} s)"
        );

        let small = {
            let base = base.clone();
            let body = window(BASE + 10 * DAY, BASE + 10 * DAY + 60, serde_json::json!({}));
            move |c: &reqwest::Client| {
                c.post(format!("{base}/calls"))
                    .header("X-Secret-Key", KEY)
                    .header("Content-Type", "application/json")
                    .body(body.clone())
            }
        };
        let (rps, n) = load(&client, clients, secs, small).await;
        println!(
            "POST /calls, a one-minute window (~{:.1} calls), {clients} concurrent clients: \
             {rps:.0} requests/s ({n} in {secs} s)",
            calls as f64 / DAYS as f64 / 1440.0
        );
    });
}
