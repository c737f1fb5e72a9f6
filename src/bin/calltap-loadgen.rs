//! calltap-loadgen: real SIP calls with real RTP between two user agents on this
//! machine, for live-capture tests and load measurements. Prints a JSON summary.

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use calltap::loadgen::{self, Plan, Scenario};

#[derive(Parser)]
#[command(
    name = "calltap-loadgen",
    about = "Place real SIP/RTP calls between two agents on loopback (tests and load)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Place COUNT calls of the given scenarios, at most CONCURRENCY at once.
    Calls(CallsArgs),
    /// Hold CALLS concurrent G.711 calls for DURATION: the live-capture load.
    Load(LoadArgs),
    /// Run the callee agent alone for a while, for a softphone or a PBX to call: the
    /// user part of the Request-URI names the scenario (answer-5s, busy, ...).
    Uas(UasArgs),
}

#[derive(Args)]
struct UasArgs {
    #[arg(long, default_value = "127.0.0.3:5060")]
    listen: std::net::SocketAddr,
    /// INVITE to answer (e.g. 500ms, 2s).
    #[arg(long, value_parser = duration, default_value = "1s")]
    ring: Duration,
    /// How long to serve.
    #[arg(long = "for", value_parser = duration, default_value = "60")]
    serve_for: Duration,
}

#[derive(Args)]
struct Agents {
    /// The caller agent's address (its SIP and RTP sockets).
    #[arg(long, default_value = "127.0.0.2")]
    caller: IpAddr,
    /// The callee agent's address.
    #[arg(long, default_value = "127.0.0.3")]
    callee: IpAddr,
    /// SIP port of both agents.
    #[arg(long, default_value_t = 5060)]
    sip_port: u16,
    /// INVITE to answer at the callee (e.g. 500ms, 2s).
    #[arg(long, value_parser = duration)]
    ring: Option<Duration>,
    /// Seed of Call-IDs, tags and SSRCs (default: different every run).
    #[arg(long)]
    seed: Option<u64>,
    /// The caller cancels a call still ringing after this long (ring-forever).
    #[arg(long, value_parser = duration)]
    max_ring: Option<Duration>,
}

#[derive(Args)]
struct CallsArgs {
    #[command(flatten)]
    agents: Agents,
    /// Comma-separated; call i gets scenario i modulo the list: answer-T,
    /// caller-hangs-up-T, callee-hangs-up-T, busy, decline, cancel-T, no-answer-T,
    /// ring-forever.
    #[arg(long, value_delimiter = ',', required = true)]
    scenario: Vec<Scenario>,
    #[arg(long, default_value_t = 1)]
    count: usize,
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Spread the call starts over this time.
    #[arg(long, value_parser = duration, default_value = "0s")]
    ramp: Duration,
    /// Add each call's result to the summary.
    #[arg(long)]
    per_call: bool,
    /// Do not run the callee agent: call what already answers at --callee (e.g.
    /// `calltap-loadgen uas`).
    #[arg(long)]
    external_callee: bool,
}

#[derive(Args)]
struct LoadArgs {
    #[command(flatten)]
    agents: Agents,
    /// Concurrent calls (each two RTP streams of 50 packets/s).
    #[arg(long, default_value_t = 100)]
    calls: usize,
    /// Talk time of every call (seconds, or 90s, 2m).
    #[arg(long, value_parser = duration, default_value = "60")]
    duration: Duration,
    /// Spread the call starts over this time (seconds, or 500ms).
    #[arg(long, value_parser = duration, default_value = "10")]
    ramp: Duration,
}

/// A duration as humantime writes it (`1500ms`, `2m`), or bare seconds (`60`, `0.5`).
fn duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs));
        }
    }
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

fn plan(a: &Agents, scenarios: Vec<Scenario>) -> Plan {
    let mut p = Plan::new(a.caller, a.callee, scenarios);
    p.sip_port = a.sip_port;
    if let Some(r) = a.ring {
        p.ring = r;
    }
    if let Some(s) = a.seed {
        p.seed = s;
    }
    if let Some(m) = a.max_ring {
        p.timeouts.max_ring = m;
    }
    p
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("calltap-loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Calls(a) => {
            let mut p = plan(&a.agents, a.scenario);
            p.count = a.count;
            p.concurrency = a.concurrency.max(1);
            p.ramp = a.ramp;
            p.with_callee = !a.external_callee;
            let report = loadgen::run(&p).context("running the agents")?;
            let mut summary = report.summary();
            if a.per_call {
                summary["results"] = serde_json::to_value(&report.uac.calls)?;
            }
            println!("{}", serde_json::to_string_pretty(&summary)?);
            let bad = report.uac.calls.iter().filter(|c| !c.as_expected()).count();
            if bad > 0 {
                eprintln!("calltap-loadgen: {bad} call(s) did not end as their scenario says");
                return Ok(ExitCode::from(1));
            }
        }
        Cmd::Load(a) => {
            // Half the calls end by the caller, half by the callee, so both BYE paths
            // are under load; the callee answers fast, so the ring adds little.
            let talk = a.duration;
            let mut p = plan(
                &a.agents,
                vec![
                    Scenario::CallerHangsUp { talk },
                    Scenario::CalleeHangsUp { talk },
                ],
            );
            p.count = a.calls;
            p.concurrency = a.calls.max(1);
            p.ramp = a.ramp;
            if a.agents.ring.is_none() {
                p.ring = Duration::from_millis(200);
            }
            let report = loadgen::run(&p).context("running the agents")?;
            println!("{}", serde_json::to_string_pretty(&report.summary())?);
        }
        Cmd::Uas(a) => {
            loadgen::raise_fd_limit().context("raising the open-file limit")?;
            let media = loadgen::Media::spawn()?;
            let uas = loadgen::uas::Uas::bind(loadgen::UasConfig {
                local: a.listen,
                ring: a.ring,
                ..loadgen::UasConfig::default()
            })
            .with_context(|| format!("binding {}", a.listen))?;
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (h, s) = (media.handle(), stop.clone());
            let agent = std::thread::spawn(move || uas.run(&h, &s));
            std::thread::sleep(a.serve_for);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let report = agent
                .join()
                .map_err(|_| anyhow::anyhow!("the callee agent panicked"))?;
            let media = media.finish();
            let out = serde_json::json!({ "uas": report.counters, "rtp": {
                "packets_sent": media.packets_sent,
                "streams": media.streams_started,
                "streams_heard_peer": media.streams_heard_peer,
            }});
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
