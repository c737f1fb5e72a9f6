//! Writes calltap's generated captures: the bundled demo files, or a benchmark load.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use calltap::pcapgen::demo;
use calltap::pcapgen::flood::FloodSpec;
use calltap::pcapgen::LoadSpec;

#[derive(Parser)]
#[command(
    name = "calltap-pcapgen",
    about = "Generate SIP/RTP captures for calltap's tests and benchmarks",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Folder for the demo captures and their README.md.
    #[arg(long, default_value = "pcaps")]
    out: PathBuf,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write many concurrent calls into one pcap (streamed; Ethernet, microseconds).
    Load(LoadArgs),
    /// Write an INVITE flood (a SIP scanner's: nobody answers) into one pcap.
    Flood(FloodArgs),
}

#[derive(Args)]
struct FloodArgs {
    /// INVITEs in the flood.
    #[arg(long, default_value_t = 100_000)]
    invites: usize,
    /// Source addresses they come from, in turn.
    #[arg(long, default_value_t = 1)]
    sources: usize,
    /// INVITEs per second of capture time.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Give each INVITE an SDP offer.
    #[arg(long)]
    sdp: bool,
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct LoadArgs {
    /// Concurrent calls lasting the whole capture.
    #[arg(long, conflicts_with = "short_calls")]
    calls: Option<usize>,
    /// Short calls (0.2 s of talk) spread over the capture: a SIP-heavy load.
    #[arg(long)]
    short_calls: Option<usize>,
    /// Length of the capture in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u32,
    #[arg(long, default_value_t = 0x0CA1_17A9)]
    seed: u64,
    #[arg(long)]
    out: PathBuf,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        None => {
            let demos = demo::write_demos(&cli.out)
                .with_context(|| format!("writing {}", cli.out.display()))?;
            for d in &demos {
                println!(
                    "{:32} {:>8} bytes {:>5} frames",
                    d.name,
                    d.bytes.len(),
                    d.frames
                );
            }
            println!(
                "{} files and README.md in {}",
                demos.len(),
                cli.out.display()
            );
        }
        Some(Cmd::Flood(a)) => {
            let spec = FloodSpec {
                per_second: a.rate,
                with_sdp: a.sdp,
                ..FloodSpec::new(a.invites, a.sources)
            };
            spec.write_pcap(&a.out)
                .with_context(|| format!("writing {}", a.out.display()))?;
            println!(
                "{}: {} INVITEs from {} sources at {}/s",
                a.out.display(),
                spec.invites,
                spec.sources,
                spec.per_second
            );
        }
        Some(Cmd::Load(a)) => {
            let mut spec = match (a.calls, a.short_calls) {
                (Some(n), None) => LoadSpec::concurrent(n, a.seconds),
                (None, Some(n)) => LoadSpec::short_calls(n, a.seconds),
                _ => bail!("give --calls N or --short-calls N"),
            };
            spec.seed = a.seed;
            let started = Instant::now();
            let stats = spec
                .write_pcap(&a.out)
                .with_context(|| format!("writing {}", a.out.display()))?;
            println!(
                "{}: {} calls, {} frames ({} SIP messages, {} RTP packets), {:.1} MB of IP, in {:.2} s",
                a.out.display(),
                stats.calls,
                stats.packets,
                stats.sip_messages,
                stats.rtp_packets,
                stats.bytes as f64 / 1e6,
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}
