//! The calltap command line: parses arguments, loads the configuration, hands off.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use calltap::config::Config;
use calltap::engine::Engine;
use calltap::replay::{replay_files, FileReport};

#[derive(Parser)]
#[command(
    name = "calltap",
    version,
    about = "Passive SIP/RTP call recorder for on-prem PBXs",
    long_about = "calltap watches a PBX's SIP signalling and RTP media passively (from a \
                  Linux interface or from pcap/pcapng files), turns every conversation into \
                  a call record with a stereo recording, and serves them to a call-analytics \
                  importer over the Custom Telephony HTTP contract."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct ConfigArg {
    /// Configuration file (TOML). Without one, calltap runs on its defaults.
    #[arg(long, short = 'c', value_name = "FILE", env = "CALLTAP_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Decode capture files (pcap or pcapng) through the engine and report what they hold.
    ///
    /// Files are read in the order given, as one continuous capture; a directory
    /// stands for the capture files in it, in name order.
    Replay {
        #[command(flatten)]
        config: ConfigArg,
        /// Print one JSON object of counters per file instead of the summary.
        #[arg(long)]
        stats: bool,
        /// Never draw a progress bar (none is drawn when stderr is not a terminal).
        #[arg(long)]
        quiet: bool,
        /// Capture files or directories of them.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Check a configuration file and print what it sets (secrets are never printed).
    CheckConfig {
        #[command(flatten)]
        config: ConfigArg,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CALLTAP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Replay {
            config,
            stats,
            quiet,
            files,
        } => replay(config.config.as_deref(), stats, quiet, &files),
        Command::CheckConfig { config } => check_config(config.config.as_deref()),
    }
}

fn load_config(path: Option<&Path>) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("calltap: {e}");
        ExitCode::from(2)
    })
}

fn check_config(path: Option<&Path>) -> ExitCode {
    match load_config(path) {
        Ok(config) => {
            match path {
                Some(p) => println!("{}: ok", p.display()),
                None => println!("no configuration file: defaults"),
            }
            println!("{}", config.describe());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// Expands directories into the capture files inside them, sorted by name.
fn capture_paths(args: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut paths = Vec::new();
    for arg in args {
        if arg.is_dir() {
            let entries = std::fs::read_dir(arg).map_err(|e| format!("{}: {e}", arg.display()))?;
            let mut inside: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .and_then(|x| x.to_str())
                        .is_some_and(|x| matches!(x, "pcap" | "pcapng" | "cap"))
                })
                .collect();
            inside.sort();
            paths.extend(inside);
        } else {
            paths.push(arg.clone());
        }
    }
    Ok(paths)
}

fn replay(config_path: Option<&Path>, stats: bool, quiet: bool, args: &[PathBuf]) -> ExitCode {
    let config = match load_config(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let paths = match capture_paths(args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("calltap: {e}");
            return ExitCode::from(2);
        }
    };
    let mut engine = Engine::new(&config);
    let progress = !quiet && std::io::stderr().is_terminal();
    let reports = replay_files(&paths, &mut engine, progress);
    let failed = reports.iter().any(|(_, r)| r.failed.is_some());
    if stats {
        let by_file: BTreeMap<&str, &FileReport> =
            reports.iter().map(|(name, r)| (name.as_str(), r)).collect();
        match serde_json::to_string_pretty(&by_file) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("calltap: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        for (name, report) in &reports {
            print_summary(name, report);
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn print_summary(name: &str, report: &FileReport) {
    if let Some(why) = &report.failed {
        eprintln!("calltap: {why}");
        return;
    }
    let c = &report.counters;
    println!(
        "{name}: {} frames, {} UDP datagrams, {} TCP segments ({} SIP messages), \
         {} fragments reassembled, {} undecodable",
        c.frames,
        c.udp_datagrams,
        c.tcp_segments,
        c.tcp_sip_messages,
        c.fragments_reassembled,
        c.undecodable.total()
    );
    for (reason, n) in c.undecodable.iter() {
        println!("  undecodable {reason}: {n}");
    }
    for e in &report.capture_errors {
        eprintln!("calltap: warning: {e}");
    }
}
