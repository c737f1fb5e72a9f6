//! 1,000 slow clients against the API with its default connection limits: each connects
//! (from one of 16 loopback addresses, so the total cap binds before the per-source
//! one), sends half a request head and then one more byte a second, never finishing.
//! Measures what the server holds (its established sockets on the API port, read from
//! /proc/net/tcp every 100 ms), how fast the clients over the cap are refused, and when
//! the others are closed. Aim: held connections bounded by `max_connections`, each
//! closed within the head timeout.
//!
//! `cargo bench --bench slow_clients` (CALLTAP_BENCH_CLIENTS, default 1000;
//! CALLTAP_BENCH_HEADER_SECS, default 10, the head timeout; other limits are the
//! defaults: 256 connections, 64 per source).
//!
//! Figures on the 2-core development machine (1,000 clients, defaults): the server held
//! at most 256 established connections (256 from the first second to the tenth, 0 at
//! 12 s); the 744 clients over the cap got 503 and were closed within 93 ms (p50 66
//! ms); the 256 with a slot were closed at 10.01 s (p50; max 10.03 s); every client was
//! closed 10.06 s after the first connected.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use calltap::api::{self, AppState};
use calltap::config::Config;
use calltap::store::Store;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

const SOURCES: u32 = 16;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v:?}")))
        .unwrap_or(default)
}

/// Established TCP sockets whose local port is `port`: the server's side of its
/// connections (accepted, or completed and waiting in the listen backlog).
fn held(port: u16) -> usize {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return 0;
    };
    let port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1).unwrap_or("");
            let state = fields.nth(1).unwrap_or("");
            local.ends_with(&port) && state == "01"
        })
        .count()
}

/// How one client ended.
struct Outcome {
    refused: bool,
    /// From connecting to the server closing the connection.
    closed_after: Duration,
}

async fn slow_client(addr: std::net::SocketAddr, source: u32) -> Outcome {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket
        .bind(format!("127.0.0.{source}:0").parse().expect("an address"))
        .expect("bind a loopback source");
    let started = Instant::now();
    let mut stream = socket.connect(addr).await.expect("connect");
    let _ = stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: calltap\r\nX-")
        .await;
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            },
            _ = tick.tick() => {
                // One more byte of a header name that never ends.
                if stream.write_all(b"a").await.is_err() {
                    break;
                }
            }
        }
    }
    Outcome {
        refused: seen.starts_with(b"HTTP/1.1 503"),
        closed_after: started.elapsed(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let clients = env_u64("CALLTAP_BENCH_CLIENTS", 1000) as usize;
    let header_secs = env_u64("CALLTAP_BENCH_HEADER_SECS", 10);
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = Arc::new(Store::open(dir.path()).expect("a store"));
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let listener = server
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a port");
    let addr = listener.local_addr().expect("its address");
    let config = Config::from_toml(
        &format!(
            "[api]\nlisten = \"{addr}\"\nsecret_keys = [\"bench-key-0123456789\"]\n\
             header_timeout_secs = {header_secs}\n"
        ),
        "benches/slow_clients.rs",
    )
    .expect("a valid configuration");
    let max_connections = config.api.max_connections;
    let per_source = config.api.max_connections_per_source;
    let state = AppState::new(config, store).expect("the API state");
    server.spawn(api::serve_on(listener, state, std::future::pending()));

    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut timeline = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let now = held(addr.port());
                peak.fetch_max(now, Ordering::Relaxed);
                timeline.push((started.elapsed(), now));
                std::thread::sleep(Duration::from_millis(100));
            }
            timeline
        })
    };
    let started = Instant::now();
    let outcomes: Vec<Outcome> = client.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|i| tokio::spawn(slow_client(addr, 1 + i as u32 % SOURCES)))
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for task in tasks {
            out.push(task.await.expect("a client task"));
        }
        out
    });
    let all_closed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let timeline = sampler.join().expect("the sampler");

    let (mut refused, mut served): (Vec<Duration>, Vec<Duration>) = (Vec::new(), Vec::new());
    for o in &outcomes {
        if o.refused {
            refused.push(o.closed_after);
        } else {
            served.push(o.closed_after);
        }
    }
    refused.sort();
    served.sort();
    println!(
        "{clients} slow clients from {SOURCES} addresses; limits: {max_connections} connections, \
         {per_source} per source, head timeout {header_secs} s"
    );
    println!(
        "held by the server: peak {} established (cap {max_connections})",
        peak.load(Ordering::Relaxed)
    );
    let at = |secs: f64| {
        timeline
            .iter()
            .find(|(t, _)| t.as_secs_f64() >= secs)
            .map_or(0, |(_, n)| *n)
    };
    println!(
        "held over time: 1 s {}, {} s {}, {} s {}",
        at(1.0),
        header_secs / 2,
        at(header_secs as f64 / 2.0),
        header_secs + 2,
        at(header_secs as f64 + 2.0)
    );
    println!(
        "refused with 503: {} clients, closed after p50 {:?}, max {:?}",
        refused.len(),
        percentile(&refused, 0.5),
        percentile(&refused, 1.0)
    );
    println!(
        "served a slot: {} clients, closed after p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        served.len(),
        percentile(&served, 0.5),
        percentile(&served, 0.99),
        percentile(&served, 1.0)
    );
    println!("every client closed after {all_closed:.2?}");
}
