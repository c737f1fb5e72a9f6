//! calltap's own pair of SIP user agents: real calls over UDP sockets on loopback, with
//! real G.711 RTP paced in real time. They drive the end-to-end tests of live capture
//! (scenarios a softphone cannot easily script: busy, cancelled, no answer, either side
//! hanging up, many at once) and are the load generator for measuring live capture.
//!
//! - [`uas`]: the callee agent. It reads what to do from the user part of the
//!   Request-URI ([`Scenario`]): `answer-5s`, `callee-hangs-up-3s`, `busy`, `decline`,
//!   `no-answer-4s`, `cancel-2s`, `ring-forever`.
//! - [`uac`]: the caller agent. It places calls with that scenario as the callee's user,
//!   with its own RTP port from a range, ACKs, CANCELs, hangs up.
//! - [`media`]: one thread that sends every RTP stream of both agents on schedule.
//!
//! Messages are built by the capture generator's dialog builder
//! ([`crate::pcapgen::scenario::Dialog`]), so the SIP the agents send live is the SIP the
//! generated captures hold. The caller's microphone is a 440 Hz tone, the callee's
//! 1000 Hz, so a test tells a recording's channels apart.

pub mod media;
mod transport;
pub mod uac;
pub mod uas;

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::call::Outcome;
use crate::pcapgen::g711::Signal;

pub use media::{Media, MediaHandle, MediaReport};
pub use transport::{cpu_us, raise_fd_limit};
pub use uac::{CallResult, Timeouts, UacConfig, UacReport};
pub use uas::{UasConfig, UasReport};

/// What the caller's phone sends: 440 Hz.
pub const CALLER_SIGNAL: Signal = Signal::Tone {
    freq_hz: 440,
    amplitude: 8000,
};
/// What the callee's phone sends: 1000 Hz.
pub const CALLEE_SIGNAL: Signal = Signal::Tone {
    freq_hz: 1000,
    amplitude: 6000,
};
/// RTP ports of the caller (even ports, 4,096 calls).
pub const CALLER_RTP_PORTS: (u16, u16) = (16_384, 24_574);
/// RTP ports of the callee.
pub const CALLEE_RTP_PORTS: (u16, u16) = (24_576, 32_766);

/// What a call does, written as the callee's user name so the callee agent, which only
/// sees the INVITE, knows it too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// Answered; the caller hangs up after `talk` (`answer-5s`, `caller-hangs-up-5s`).
    CallerHangsUp { talk: Duration },
    /// Answered; the callee hangs up after `talk` (`callee-hangs-up-3s`).
    CalleeHangsUp { talk: Duration },
    /// 486 Busy Here (`busy`).
    Busy,
    /// 603 Decline (`decline`).
    Decline,
    /// Rings; the caller gives up after `after` and sends CANCEL (`cancel-2s`).
    Cancel { after: Duration },
    /// Rings for `after`, then 480 Temporarily Unavailable, as a PBX's no-answer timer
    /// (`no-answer-4s`).
    NoAnswer { after: Duration },
    /// Rings until the caller's ring limit, which cancels (`ring-forever`).
    RingForever,
}

impl Scenario {
    /// How calltap must classify the call.
    pub fn expected_outcome(self) -> Outcome {
        match self {
            Scenario::CallerHangsUp { .. } | Scenario::CalleeHangsUp { .. } => Outcome::Answered,
            Scenario::Busy => Outcome::Busy,
            Scenario::Decline => Outcome::Rejected,
            Scenario::Cancel { .. } | Scenario::RingForever => Outcome::Cancelled,
            Scenario::NoAnswer { .. } => Outcome::Missed,
        }
    }

    /// Talk time of an answered call.
    pub fn talk(self) -> Option<Duration> {
        match self {
            Scenario::CallerHangsUp { talk } | Scenario::CalleeHangsUp { talk } => Some(talk),
            _ => None,
        }
    }
}

fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn parse_duration(s: &str) -> Option<Duration> {
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    let secs = s.strip_suffix('s').unwrap_or(s);
    secs.parse().ok().map(Duration::from_secs)
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Scenario::CallerHangsUp { talk } => write!(f, "answer-{}", fmt_duration(talk)),
            Scenario::CalleeHangsUp { talk } => {
                write!(f, "callee-hangs-up-{}", fmt_duration(talk))
            }
            Scenario::Busy => f.write_str("busy"),
            Scenario::Decline => f.write_str("decline"),
            Scenario::Cancel { after } => write!(f, "cancel-{}", fmt_duration(after)),
            Scenario::NoAnswer { after } => write!(f, "no-answer-{}", fmt_duration(after)),
            Scenario::RingForever => f.write_str("ring-forever"),
        }
    }
}

/// A scenario name that is none of the known ones.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown scenario {0:?}: expected answer-T, caller-hangs-up-T, callee-hangs-up-T, busy, \
     decline, cancel-T, no-answer-T or ring-forever (T like 3s or 1500ms)"
)]
pub struct UnknownScenario(pub String);

impl FromStr for Scenario {
    type Err = UnknownScenario;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || UnknownScenario(s.to_string());
        let timed = |prefix: &str| -> Option<Result<Duration, UnknownScenario>> {
            s.strip_prefix(prefix)
                .map(|t| parse_duration(t).ok_or_else(bad))
        };
        Ok(match s {
            "busy" => Scenario::Busy,
            "decline" => Scenario::Decline,
            "ring-forever" => Scenario::RingForever,
            _ => {
                if let Some(t) = timed("answer-").or_else(|| timed("caller-hangs-up-")) {
                    Scenario::CallerHangsUp { talk: t? }
                } else if let Some(t) = timed("callee-hangs-up-") {
                    Scenario::CalleeHangsUp { talk: t? }
                } else if let Some(t) = timed("cancel-") {
                    Scenario::Cancel { after: t? }
                } else if let Some(t) = timed("no-answer-") {
                    Scenario::NoAnswer { after: t? }
                } else {
                    return Err(bad());
                }
            }
        })
    }
}

/// A run: both agents on this machine, calling each other.
#[derive(Clone, Debug)]
pub struct Plan {
    pub caller: IpAddr,
    pub callee: IpAddr,
    pub sip_port: u16,
    /// Call `i` gets scenario `i % len`.
    pub scenarios: Vec<Scenario>,
    pub count: usize,
    pub concurrency: usize,
    /// Call `i` starts no earlier than `ramp * i / count` after the start.
    pub ramp: Duration,
    /// INVITE to answer, at the callee.
    pub ring: Duration,
    pub timeouts: Timeouts,
    /// Seeds Call-IDs, tags and SSRCs; the default differs per run, so the same store
    /// never sees an id twice.
    pub seed: u64,
    /// Run the callee agent too (false: something else answers at `callee`, such as
    /// `calltap-loadgen uas` or a PBX that knows the scenario names).
    pub with_callee: bool,
}

impl Plan {
    pub fn new(caller: IpAddr, callee: IpAddr, scenarios: Vec<Scenario>) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id()).rotate_left(32);
        Plan {
            caller,
            callee,
            sip_port: 5060,
            count: scenarios.len(),
            concurrency: scenarios.len().max(1),
            scenarios,
            ramp: Duration::ZERO,
            ring: Duration::from_millis(500),
            timeouts: Timeouts::default(),
            seed,
            with_callee: true,
        }
    }
}

/// Everything a run did.
#[derive(Debug, Serialize)]
pub struct Report {
    pub elapsed_s: f64,
    pub uac: UacReport,
    pub uas: UasReport,
    pub media: MediaReport,
    /// CPU time of the whole process during the run.
    pub cpu_user_s: f64,
    pub cpu_sys_s: f64,
}

impl Report {
    /// The JSON summary the command line prints.
    pub fn summary(&self) -> serde_json::Value {
        let m = &self.media;
        let calls = &self.uac.calls;
        let count = |o: Outcome| calls.iter().filter(|c| c.outcome == o).count();
        let buckets: Vec<serde_json::Value> = m
            .late_histogram
            .iter()
            .enumerate()
            .map(|(i, n)| match media::LATE_BUCKETS_US.get(i) {
                Some(hi) => serde_json::json!({ "below_us": hi, "packets": n }),
                None => serde_json::json!({
                    "from_us": media::LATE_BUCKETS_US.last().copied().unwrap_or(0),
                    "packets": n,
                }),
            })
            .collect();
        // The steady state: the seconds in which every stream of the peak was sending,
        // the first and last (partial) seconds left out.
        let full: Vec<(u64, u64)> = m
            .per_second
            .iter()
            .zip(&m.streams_per_second)
            .map(|(&p, &s)| (p, s))
            .filter(|&(_, s)| s > 0 && s + s / 100 >= m.peak_streams)
            .collect();
        let steady: Vec<(u64, u64)> = if full.len() > 2 {
            full[1..full.len() - 1].to_vec()
        } else {
            full
        };
        let steady_pps = if steady.is_empty() {
            0.0
        } else {
            steady.iter().map(|&(p, _)| p as f64).sum::<f64>() / steady.len() as f64
        };
        let steady_target = if steady.is_empty() {
            0.0
        } else {
            steady.iter().map(|&(_, s)| s as f64 * 50.0).sum::<f64>() / steady.len() as f64
        };
        serde_json::json!({
            "calls": {
                "placed": calls.len(),
                "answered": count(Outcome::Answered),
                "busy": count(Outcome::Busy),
                "rejected": count(Outcome::Rejected),
                "cancelled": count(Outcome::Cancelled),
                "missed": count(Outcome::Missed),
                "failed": count(Outcome::Failed),
                "as_scenario": calls.iter().filter(|c| c.as_expected()).count(),
                "timed_out": calls.iter().filter(|c| c.timed_out).count(),
            },
            "rtp": {
                "packets_sent": m.packets_sent,
                "bytes_sent": m.bytes_sent,
                "send_errors": m.send_errors,
                "skipped_late": m.packets_skipped,
                "streams": m.streams_started,
                "streams_heard_peer": m.streams_heard_peer,
                "peak_streams": m.peak_streams,
                "peak_pps": m.per_second.iter().copied().max().unwrap_or(0),
                "steady_seconds": steady.len(),
                "steady_pps": steady_pps.round(),
                "steady_target_pps": steady_target.round(),
                "mean_pps": if self.elapsed_s > 0.0 { (m.packets_sent as f64 / self.elapsed_s).round() } else { 0.0 },
                "late_mean_us": (m.late_mean_us * 10.0).round() / 10.0,
                "late_max_us": m.late_max_us,
                "late_histogram": buckets,
            },
            "sip": {
                "uac": &self.uac.counters,
                "uas": &self.uas.counters,
            },
            "cpu": {
                "process_user_s": self.cpu_user_s,
                "process_sys_s": self.cpu_sys_s,
                "rtp_thread_user_s": m.cpu_user_ms as f64 / 1000.0,
                "rtp_thread_sys_s": m.cpu_sys_ms as f64 / 1000.0,
                "elapsed_s": self.elapsed_s,
            },
        })
    }
}

/// Runs a plan: the callee agent, the caller agent and the RTP sender, until every call
/// has ended (each bounded by the plan's timeouts, so a lost message cannot hang it).
pub fn run(plan: &Plan) -> io::Result<Report> {
    if plan.scenarios.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a plan needs at least one scenario",
        ));
    }
    raise_fd_limit()?;
    let started = Instant::now();
    let cpu0 = cpu_us(false);
    let media = Media::spawn()?;
    let stop = Arc::new(AtomicBool::new(false));
    let callee_sip = SocketAddr::new(plan.callee, plan.sip_port);
    let uas = if plan.with_callee {
        Some(uas::Uas::bind(UasConfig {
            local: callee_sip,
            rtp_ports: CALLEE_RTP_PORTS,
            ring: plan.ring,
            seed: plan.seed ^ 0x5EED_CA11_EE00_0000,
            ..UasConfig::default()
        })?)
    } else {
        None
    };
    // One address for both agents works too: the caller then takes the port two above
    // (calltap knows SIP by either end's port) and the RTP ranges never overlap.
    let caller_port = if plan.caller == plan.callee {
        plan.sip_port.wrapping_add(2)
    } else {
        plan.sip_port
    };
    let uac = uac::Uac::bind(UacConfig {
        local: SocketAddr::new(plan.caller, caller_port),
        remote: callee_sip,
        rtp_ports: CALLER_RTP_PORTS,
        scenarios: plan.scenarios.clone(),
        count: plan.count,
        concurrency: plan.concurrency,
        ramp: plan.ramp,
        timeouts: plan.timeouts,
        seed: plan.seed,
    })?;
    // The sender stops once every handle is dropped: the callee's exists only with it.
    let uas_thread = match uas {
        Some(uas) => {
            let (h, s) = (media.handle(), stop.clone());
            Some(
                std::thread::Builder::new()
                    .name("uas".into())
                    .spawn(move || uas.run(&h, &s))?,
            )
        }
        None => None,
    };
    let uac_media = media.handle();
    let uac_thread = std::thread::Builder::new()
        .name("uac".into())
        .spawn(move || uac.run(&uac_media))?;
    let uac_report = uac_thread
        .join()
        .map_err(|_| io::Error::other("the caller agent panicked"))?;
    stop.store(true, Ordering::Relaxed);
    let uas_report = match uas_thread {
        Some(t) => t
            .join()
            .map_err(|_| io::Error::other("the callee agent panicked"))?,
        None => UasReport::default(),
    };
    let media_report = media.finish();
    let cpu1 = cpu_us(false);
    Ok(Report {
        elapsed_s: started.elapsed().as_secs_f64(),
        uac: uac_report,
        uas: uas_report,
        media: media_report,
        cpu_user_s: (cpu1.0 - cpu0.0) as f64 / 1e6,
        cpu_sys_s: (cpu1.1 - cpu0.1) as f64 / 1e6,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names_round_trip() {
        for name in [
            "answer-5s",
            "callee-hangs-up-3s",
            "busy",
            "decline",
            "cancel-1500ms",
            "no-answer-4s",
            "ring-forever",
        ] {
            let s: Scenario = name.parse().expect(name);
            assert_eq!(s.to_string(), name);
        }
        assert_eq!(
            "caller-hangs-up-2s".parse::<Scenario>().ok(),
            Some(Scenario::CallerHangsUp {
                talk: Duration::from_secs(2)
            })
        );
        for bad in ["", "answer", "answer-", "answer-xs", "1002", "busy-3s"] {
            assert!(bad.parse::<Scenario>().is_err(), "{bad:?}");
        }
    }
}
