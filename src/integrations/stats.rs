//! Per-integration and per-step counters for `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One step's counters since start.
#[derive(Default)]
pub struct StepStats {
    pub succeeded: AtomicU64,
    /// Failed for good (the run stops unless the step continues on error).
    pub failed: AtomicU64,
    pub skipped: AtomicU64,
    /// Attempts that failed and were retried.
    pub retried: AtomicU64,
    /// Time of attempts that were made, for the mean.
    pub micros: AtomicU64,
    pub attempts: AtomicU64,
}

impl StepStats {
    pub fn observe(&self, took: Duration) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        self.micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }
}

/// One integration's counters since start.
#[derive(Default)]
pub struct IntegrationStats {
    pub started: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    /// Events of its types its `when` left out.
    pub not_selected: AtomicU64,
    /// Runs not finished.
    pub open: AtomicU64,
    pub steps: Vec<(String, StepStats)>,
}

impl IntegrationStats {
    pub fn new(step_names: impl IntoIterator<Item = String>) -> IntegrationStats {
        IntegrationStats {
            steps: step_names
                .into_iter()
                .map(|n| (n, StepStats::default()))
                .collect(),
            ..IntegrationStats::default()
        }
    }

    pub fn step(&self, index: usize) -> Option<&StepStats> {
        self.steps.get(index).map(|(_, s)| s)
    }
}

/// Every integration's counters in the Prometheus text format.
pub fn write_prometheus(all: &[(String, Arc<IntegrationStats>)], out: &mut String) {
    if all.is_empty() {
        return;
    }
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP calltap_integration_runs_total Integration runs, by what became of them\n# TYPE calltap_integration_runs_total counter"
    );
    for (name, s) in all {
        for (status, value) in [
            ("started", &s.started),
            ("succeeded", &s.succeeded),
            ("failed", &s.failed),
            ("not_selected", &s.not_selected),
        ] {
            let _ = writeln!(
                out,
                "calltap_integration_runs_total{{integration=\"{name}\",status=\"{status}\"}} {}",
                load(value)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP calltap_integration_runs_open Integration runs not finished (running or waiting for a retry)\n# TYPE calltap_integration_runs_open gauge"
    );
    for (name, s) in all {
        let _ = writeln!(
            out,
            "calltap_integration_runs_open{{integration=\"{name}\"}} {}",
            load(&s.open)
        );
    }
    let _ = writeln!(
        out,
        "# HELP calltap_integration_steps_total Integration steps finished, by status\n# TYPE calltap_integration_steps_total counter"
    );
    for (name, s) in all {
        for (step, st) in &s.steps {
            for (status, value) in [
                ("succeeded", &st.succeeded),
                ("failed", &st.failed),
                ("skipped", &st.skipped),
            ] {
                let _ = writeln!(
                    out,
                    "calltap_integration_steps_total{{integration=\"{name}\",step=\"{step}\",status=\"{status}\"}} {}",
                    load(value)
                );
            }
        }
    }
    type Counter = fn(&StepStats) -> &AtomicU64;
    let per_step: [(&str, &str, Counter); 2] = [
        (
            "step_retries_total",
            "Integration step attempts that failed and were retried",
            |s| &s.retried,
        ),
        (
            "step_attempts_total",
            "Integration step attempts made",
            |s| &s.attempts,
        ),
    ];
    for (metric, help, get) in per_step {
        let _ = writeln!(
            out,
            "# HELP calltap_integration_{metric} {help}\n# TYPE calltap_integration_{metric} counter"
        );
        for (name, s) in all {
            for (step, st) in &s.steps {
                let _ = writeln!(
                    out,
                    "calltap_integration_{metric}{{integration=\"{name}\",step=\"{step}\"}} {}",
                    load(get(st))
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP calltap_integration_step_seconds_total Time spent in integration step attempts\n# TYPE calltap_integration_step_seconds_total counter"
    );
    for (name, s) in all {
        for (step, st) in &s.steps {
            let _ = writeln!(
                out,
                "calltap_integration_step_seconds_total{{integration=\"{name}\",step=\"{step}\"}} {}",
                load(&st.micros) as f64 / 1e6
            );
        }
    }
}
