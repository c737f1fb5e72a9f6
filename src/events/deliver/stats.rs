//! Per-endpoint delivery counters for `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the delivery latency histogram, in seconds: a receiver on the LAN
/// answers in milliseconds, a cloud CRM in a few hundred, and 5 s is the default timeout.
const LATENCY_BUCKETS: [f64; 9] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// One endpoint's counters since start (pending and retrying come from the store).
#[derive(Default)]
pub struct EndpointStats {
    /// Deliveries the receiver took (2xx).
    pub sent: AtomicU64,
    /// Attempts that failed, retried or not.
    pub failed: AtomicU64,
    /// Deliveries given up on (dead letters).
    pub dead: AtomicU64,
    /// Events the outbox dropped before this endpoint took them (over `max_events`).
    pub dropped: AtomicU64,
    /// Deliveries waiting or in flight, and those of them retried at least once.
    pub pending: AtomicU64,
    pub retrying: AtomicU64,
    /// Paused after failures in a row, and probing.
    pub paused: AtomicBool,
    latency: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_micros: AtomicU64,
}

impl EndpointStats {
    /// Records the time an attempt that got an answer took.
    pub fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }
}

/// Writes every endpoint's counters in the Prometheus text format.
pub fn write_prometheus(endpoints: &[(String, std::sync::Arc<EndpointStats>)], out: &mut String) {
    if endpoints.is_empty() {
        return;
    }
    // (name, type, help, value)
    type Counter = (
        &'static str,
        &'static str,
        &'static str,
        fn(&EndpointStats) -> u64,
    );
    let simple: [Counter; 7] = [
        (
            "sent_total",
            "counter",
            "Webhook deliveries the receiver took (2xx)",
            |s| s.sent.load(Ordering::Relaxed),
        ),
        (
            "failed_total",
            "counter",
            "Webhook delivery attempts that failed (retried or not)",
            |s| s.failed.load(Ordering::Relaxed),
        ),
        (
            "dead_total",
            "counter",
            "Webhook deliveries given up on (dead letters)",
            |s| s.dead.load(Ordering::Relaxed),
        ),
        (
            "dropped_total",
            "counter",
            "Events the outbox dropped (over [store] max_events) before the endpoint took them",
            |s| s.dropped.load(Ordering::Relaxed),
        ),
        (
            "pending",
            "gauge",
            "Webhook deliveries waiting or in flight",
            |s| s.pending.load(Ordering::Relaxed),
        ),
        (
            "retrying",
            "gauge",
            "Pending webhook deliveries already tried at least once",
            |s| s.retrying.load(Ordering::Relaxed),
        ),
        (
            "paused",
            "gauge",
            "1 while the endpoint is paused after failures in a row and probed",
            |s| u64::from(s.paused.load(Ordering::Relaxed)),
        ),
    ];
    for (name, kind, help, get) in simple {
        let _ = writeln!(out, "# HELP calltap_webhook_{name} {help}");
        let _ = writeln!(out, "# TYPE calltap_webhook_{name} {kind}");
        for (endpoint, stats) in endpoints {
            let _ = writeln!(
                out,
                "calltap_webhook_{name}{{endpoint=\"{endpoint}\"}} {}",
                get(stats)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP calltap_webhook_latency_seconds Time from request to the receiver's answer\n# TYPE calltap_webhook_latency_seconds histogram"
    );
    for (endpoint, stats) in endpoints {
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += stats.latency[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "calltap_webhook_latency_seconds_bucket{{endpoint=\"{endpoint}\",le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += stats.latency[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "calltap_webhook_latency_seconds_bucket{{endpoint=\"{endpoint}\",le=\"+Inf\"}} {cumulative}"
        );
        let sum = stats.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "calltap_webhook_latency_seconds_sum{{endpoint=\"{endpoint}\"}} {sum}\ncalltap_webhook_latency_seconds_count{{endpoint=\"{endpoint}\"}} {cumulative}"
        );
    }
}
