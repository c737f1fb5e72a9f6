//! The calltap command line: parses arguments, loads the configuration, hands off.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use calltap::call::CallRecord;
use calltap::capture::live::LiveCapture;
use calltap::capture::stream::PcapStream;
use calltap::config::{Config, SecretKey};
use calltap::engine::Engine;
use calltap::ingest::Ingest;
use calltap::replay::{replay_bytes, replay_files, replay_files_until, FileReport};
use calltap::store::convert::{Converter, Target};
use calltap::store::Store;

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

#[derive(Args)]
struct StoreArg {
    /// Store directory (database and recordings); overrides `[store] path`.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
}

#[derive(Args)]
struct ListenArg {
    /// Address the API listens on; overrides `[api] listen`.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

use calltap::replay::DEMO_CAPTURE;

#[derive(Subcommand)]
enum Command {
    /// Replay the built-in demo capture into the store and serve the API on localhost.
    ///
    /// Prints what to curl next. With no secret key configured (`[api] secret_keys` or
    /// CALLTAP_SECRET_KEY), a one-time key is made for this run and printed.
    Demo {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        listen: ListenArg,
    },
    /// Capture live on the configured interfaces and serve the API: the appliance.
    ///
    /// Records every call seen on `[capture] interfaces` (AF_PACKET; needs CAP_NET_RAW)
    /// into the store and serves them, until SIGTERM or SIGINT. On stop, calls in
    /// progress end with whoHungUp "system" and the audio so far; after a crash they
    /// are finalised the same way at the next start. SIGHUP reloads operators,
    /// properties, keys and access rules from the configuration file, and the TLS
    /// certificate files. Under systemd (Type=notify) it
    /// reports readiness and pets the watchdog.
    ///
    /// Without --config, /etc/calltap/calltap.toml is read when it exists.
    Run {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        listen: ListenArg,
        /// Interface to capture on (repeatable; "any" for all); overrides
        /// `[capture] interfaces`.
        #[arg(long = "interface", short = 'i', value_name = "NAME")]
        interfaces: Vec<String>,
        /// Read a live pcap or pcapng stream instead of capturing on interfaces: "-"
        /// for standard input (`ssh pbx tcpdump -U -w - | calltap run --pcap-stream -`)
        /// or a named pipe. Its stamps are taken as live capture time.
        #[arg(long, value_name = "PATH", conflicts_with = "interfaces")]
        pcap_stream: Option<PathBuf>,
    },
    /// Serve the Custom Telephony API over the store, and deliver its webhook outbox to
    /// `[[webhooks]]`, until interrupted.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        listen: ListenArg,
    },
    /// Replay capture files (pcap or pcapng) through the engine into the store.
    ///
    /// Files are read in the order given, as one continuous capture; a directory
    /// stands for the capture files in it, in name order. Calls already in the store
    /// (the same traffic replayed again) are skipped, never duplicated.
    Replay {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        store: StoreArg,
        /// Print one JSON object of packet counters per file instead of the summary.
        #[arg(long)]
        stats: bool,
        /// Decode and classify, but store nothing.
        #[arg(long)]
        dry_run: bool,
        /// Never draw a progress bar (none is drawn when stderr is not a terminal).
        #[arg(long, short = 'q')]
        quiet: bool,
        /// Also add the calls' events to the webhook outbox, for `calltap run` or
        /// `calltap serve` to deliver (a backfill). Without it a replay never reaches a
        /// webhook receiver.
        #[arg(long, conflicts_with = "dry_run")]
        webhooks: bool,
        /// Capture files or directories of them.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// List the calls in the store, oldest first.
    ///
    /// By default the calls the importer sees (answered, completed, exported); `--all`
    /// adds missed, cancelled, busy, rejected and failed attempts and internal calls.
    Calls {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        store: StoreArg,
        /// Only calls that started at or after this time (Unix seconds or RFC 3339).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Only calls that started before this time (Unix seconds or RFC 3339).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Every stored attempt, not only exported calls.
        #[arg(long)]
        all: bool,
        /// The contract's call objects, each with calltap's own fields under "calltap".
        #[arg(long)]
        json: bool,
    },
    /// Check a configuration file and print what it sets (secrets are never printed).
    ///
    /// Webhook body templates are rendered against sample events of every type the
    /// endpoint is sent: a template naming a field that does not exist is refused.
    CheckConfig {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print an argon2 hash of a password for the web console (`[ui] password_hash`).
    ///
    /// Reads the password from standard input: asked twice and not shown on a terminal,
    /// or the first line of a pipe. Prints the line to put under `[ui]`.
    Passwd,
    /// Webhook tools.
    Webhooks {
        #[command(subcommand)]
        action: WebhooksAction,
    },
    /// Stored recordings' tools.
    Recordings {
        #[command(subcommand)]
        action: RecordingsAction,
    },
    /// Integration tools.
    Integrations {
        #[command(subcommand)]
        action: IntegrationsAction,
    },
}

#[derive(Subcommand)]
enum RecordingsAction {
    /// Encode every stored WAV recording to FORMAT ("flac", "opus", or "mp3" in a build
    /// with the mp3 feature), one at a time on one low-priority thread, each through
    /// ID.<ext>.part and a rename before its record names it and its WAV goes.
    ///
    /// Resumable: stopped at any point (Ctrl-C, a crash), every record still names a
    /// whole file, and the next run (or `calltap run` with that format configured)
    /// carries on with the WAVs left. Not while `calltap run` or `serve` holds the
    /// store. FLAC recordings stay FLAC.
    Convert {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        store: StoreArg,
        /// The format to encode to: "flac", "opus" or "mp3".
        #[arg(long = "to", value_name = "FORMAT")]
        to: String,
        /// Opus's (12-256) or MP3's (16, 24, 32, 40, 48 or 64) bit rate in kbit/s;
        /// default `[recording] bitrate_kbps`, else 24 for Opus and 32 for MP3.
        #[arg(long, value_name = "KBPS")]
        bitrate_kbps: Option<u32>,
    },
}

#[derive(Subcommand)]
enum IntegrationsAction {
    /// Run the integration NAME on a stored call, step by step, and print each step's
    /// result (nothing is written to the store). Exits 1 unless the run succeeds.
    Test {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        store: StoreArg,
        /// The `name` of an `[[integrations]]` entry.
        name: String,
        /// The call's id, as `POST /calls` and `calltap calls` give it.
        #[arg(long, value_name = "ID")]
        call: String,
        /// Print the requests, e-mails and messages instead of sending them.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum WebhooksAction {
    /// Send one signed sample event (a `call.ended` from the built-in demo capture, or
    /// the first type the endpoint is sent) to the webhook NAME, once, and print the
    /// receiver's answer. Exits 1 unless the answer is 2xx.
    Test {
        #[command(flatten)]
        config: ConfigArg,
        /// The `name` of a `[[webhooks]]` entry.
        name: String,
    },
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so `calltap calls | head` would end in a print panic; a
    // command-line tool should end quietly as other Unix tools do.
    // SAFETY: called first, before any thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CALLTAP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = match cli.command {
        Command::Replay {
            config,
            store,
            stats,
            dry_run,
            quiet,
            webhooks,
            files,
        } => replay(
            &config,
            &store,
            ReplayOptions {
                stats,
                dry_run,
                quiet,
                webhooks,
            },
            &files,
        ),
        Command::Calls {
            config,
            store,
            since,
            until,
            all,
            json,
        } => calls(&config, &store, since, until, all, json),
        Command::Run {
            config,
            store,
            listen,
            interfaces,
            pcap_stream,
        } => run(&config, &store, &listen, interfaces, pcap_stream),
        Command::CheckConfig { config } => check_config(config.config.as_deref()),
        Command::Passwd => passwd(),
        Command::Webhooks {
            action: WebhooksAction::Test { config, name },
        } => webhooks_test(config.config.as_deref(), &name),
        Command::Recordings {
            action:
                RecordingsAction::Convert {
                    config,
                    store,
                    to,
                    bitrate_kbps,
                },
        } => recordings_convert(&config, &store, &to, bitrate_kbps),
        Command::Integrations {
            action:
                IntegrationsAction::Test {
                    config,
                    store,
                    name,
                    call,
                    dry_run,
                },
        } => integrations_test(&config, &store, &name, &call, dry_run),
        Command::Serve {
            config,
            store,
            listen,
        } => serve(&config, &store, &listen, false),
        Command::Demo {
            config,
            store,
            listen,
        } => serve(&config, &store, &listen, true),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("calltap: {message}");
            ExitCode::from(2)
        }
    }
}

/// What stops a command: printed as `calltap: {error}`, exit status 2.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Config(#[from] calltap::config::ConfigError),
    #[error(transparent)]
    Store(#[from] calltap::store::StoreError),
    #[error(transparent)]
    Run(#[from] calltap::run::RunError),
    #[error(transparent)]
    Api(#[from] calltap::api::ApiError),
    #[error(transparent)]
    Live(#[from] calltap::capture::live::LiveError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// Anything else, already worded for the administrator.
    #[error("{0}")]
    Message(String),
}

impl From<String> for CliError {
    fn from(message: String) -> Self {
        CliError::Message(message)
    }
}

impl From<&str> for CliError {
    fn from(message: &str) -> Self {
        CliError::Message(message.to_string())
    }
}

fn load_config(path: Option<&Path>) -> Result<Config, CliError> {
    Ok(Config::load(path)?)
}

/// The recording encoder when the configured format is not WAV: it first queues what a
/// stop or crash left as WAV.
fn start_converter(config: &Config, store: &Arc<Store>) -> Result<Option<Converter>, CliError> {
    let r = &config.recording;
    match Target::from_config(r.format, r.bitrate_kbps) {
        Some(target) => Ok(Some(Converter::start(store.clone(), target)?)),
        None => Ok(None),
    }
}

/// `calltap recordings convert`: the background encoder, run in the foreground until
/// every stored WAV is encoded.
fn recordings_convert(
    config: &ConfigArg,
    store: &StoreArg,
    to: &str,
    bitrate_kbps: Option<u32>,
) -> Result<ExitCode, CliError> {
    let mut config = load_config(config.config.as_deref())?;
    // The format and rate are checked as the configuration file's would be.
    let mut text = format!("[recording]\nformat = {to:?}\n");
    if let Some(kbps) = bitrate_kbps.or(config.recording.bitrate_kbps) {
        text.push_str(&format!("bitrate_kbps = {kbps}\n"));
    }
    let asked = Config::from_toml(&text, "--to")?.recording;
    let target = Target::from_config(asked.format, asked.bitrate_kbps)
        .ok_or("--to wav: recordings are WAV until encoded; nothing to convert to")?;
    config.recording = asked;
    let store = Arc::new(open_store(&config, store)?);
    let converter = Converter::start(store.clone(), target)?;
    let queue = converter.queue();
    let waiting = queue.stats().backlog;
    eprintln!(
        "encoding {waiting} WAV recording(s) to {} in {}",
        target.extension(),
        store.recordings_dir().display()
    );
    let started = std::time::Instant::now();
    let progress = std::thread::spawn({
        let queue = queue.clone();
        move || {
            while queue.stats().backlog > 0 {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            queue.stats()
        }
    });
    drop(queue);
    let stats = progress
        .join()
        .map_err(|_| "the progress thread panicked")?;
    converter.finish();
    let mb = |b: u64| b as f64 / 1e6;
    println!(
        "{} encoded, {} failed (kept as WAV, reasons logged): {:.1} MB of WAV became {:.1} MB of {} in {:.1} s",
        stats.encoded,
        stats.failed,
        mb(stats.wav_bytes),
        mb(stats.encoded_bytes),
        target.extension(),
        started.elapsed().as_secs_f64()
    );
    Ok(if stats.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Opens the store and finalises what a crash left in progress.
fn open_store(config: &Config, arg: &StoreArg) -> Result<Store, CliError> {
    let dir = arg
        .data
        .clone()
        .unwrap_or_else(|| config.store.path.clone());
    let store = Store::open(&dir)?;
    if config.recording.format == calltap::config::RecordingFormat::Wav {
        // recording.ready events held for a FLAC encoder that is no longer configured.
        store.release_settled_held(true)?;
    }
    match calltap::ingest::recover_interrupted(&store, config) {
        Ok(r) => {
            if r.finalised > 0 {
                tracing::warn!(
                    "{} calls interrupted by a crash were finalised",
                    r.finalised
                );
            }
            if r.already_whole > 0 {
                tracing::warn!(
                    "{} calls a crash interrupted were already stored whole and kept as they are",
                    r.already_whole
                );
            }
            if r.stray_parts > 0 {
                tracing::warn!(
                    "{} partial recordings of no call were removed",
                    r.stray_parts
                );
            }
            if r.stray_recordings > 0 {
                tracing::warn!(
                    "{} recordings whose calls a crash took before they were stored were \
                     removed (replaying the same traffic brings them back)",
                    r.stray_recordings
                );
            }
        }
        Err(e) => return Err(format!("finalising interrupted calls: {e}").into()),
    }
    Ok(store)
}

fn check_config(path: Option<&Path>) -> Result<ExitCode, CliError> {
    let config = load_config(path)?;
    match path {
        Some(p) => println!("{}: ok", p.display()),
        None => println!("no configuration file: defaults"),
    }
    println!("{}", config.describe());
    check_tls(&config)?;
    calltap::events::deliver::check_templates(&config)?;
    calltap::integrations::check(&config)?;
    Ok(ExitCode::SUCCESS)
}

/// `integrations test NAME --call ID`.
fn integrations_test(
    config_arg: &ConfigArg,
    store_arg: &StoreArg,
    name: &str,
    call: &str,
    dry_run: bool,
) -> Result<ExitCode, CliError> {
    let config = load_config(config_arg.config.as_deref())?;
    let dir = store_arg
        .data
        .clone()
        .unwrap_or_else(|| config.store.path.clone());
    let store = Arc::new(Store::open(&dir)?);
    let record = store
        .get_call(call)?
        .ok_or_else(|| format!("no call {call:?} in the store at {}", dir.display()))?;
    // Recording links as the daemon signs them (with a configured link key, they work).
    let signer = calltap::api::AppState::new(config.clone(), store)?.link_signer();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let (report, ok) = runtime.block_on(calltap::integrations::try_on_call(
        &config,
        name,
        &record,
        dry_run,
        Some(signer),
    ))?;
    print!("{report}");
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `webhooks test NAME`.
fn webhooks_test(path: Option<&Path>, name: &str) -> Result<ExitCode, CliError> {
    let config = load_config(path)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let (event, answer, took) =
        runtime.block_on(calltap::events::deliver::send_test(&config, name, None))?;
    println!(
        "sent {} {} to webhook {name} in {} ms",
        event.kind.as_str(),
        event.id,
        took.as_millis()
    );
    use calltap::events::deliver::Answer;
    let (verdict, ok) = match &answer {
        Answer::Delivered { .. } => ("delivered".to_owned(), true),
        Answer::Retry { reason, .. } => (format!("failed, would be retried: {reason}"), false),
        Answer::GiveUp { reason, .. } => (format!("failed, would not be retried: {reason}"), false),
    };
    match answer.status() {
        Some(status) => println!("answer: HTTP {status} ({verdict})"),
        None => println!("answer: none ({verdict})"),
    }
    if !answer.body().is_empty() {
        println!("{}", answer.body());
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// What `check-config` can tell of built-in TLS before start: the certificate files
/// load, match and are in date; ACME's private CA root is readable.
fn check_tls(config: &Config) -> Result<(), CliError> {
    let api = &config.api;
    if let (Some(cert), Some(key)) = (&api.tls_cert, &api.tls_key) {
        let loaded = calltap::api::tls::load_pair(cert, key).map_err(|e| e.to_string())?;
        let days = loaded.days_left(calltap::api::tls::now_unix());
        println!(
            "tls: {} is for {} and expires in {:.0} days",
            cert.display(),
            loaded.names.join(", "),
            days.floor()
        );
        if days < 14.0 {
            println!("warning: the certificate expires in less than 14 days: renew it");
        }
    }
    if let Some(ca) = api.acme.as_ref().and_then(|a| a.ca_file.as_ref()) {
        std::fs::read(ca).map_err(|e| format!("[api.acme] ca_file {}: {e}", ca.display()))?;
    }
    Ok(())
}

/// Expands directories into the capture files inside them, sorted by name.
fn capture_paths(args: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
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

/// `replay`'s switches.
struct ReplayOptions {
    stats: bool,
    dry_run: bool,
    quiet: bool,
    webhooks: bool,
}

fn replay(
    config_arg: &ConfigArg,
    store_arg: &StoreArg,
    options: ReplayOptions,
    args: &[PathBuf],
) -> Result<ExitCode, CliError> {
    let ReplayOptions {
        stats,
        dry_run,
        quiet,
        webhooks,
    } = options;
    let config = load_config(config_arg.config.as_deref())?;
    let paths = capture_paths(args)?;
    let progress = !quiet && std::io::stderr().is_terminal();
    let (reports, engine_stats, summary, store_path) = if dry_run {
        let mut engine = Engine::new(&config);
        let reports = replay_files(&paths, &mut engine, progress);
        let mut summary = calltap::ingest::IngestSummary::default();
        while let Some(event) = engine.poll() {
            if let calltap::engine::EngineEvent::Call(r) = event {
                *summary.calls.entry(r.outcome.as_str()).or_default() += 1;
                summary.exported += u64::from(r.exported);
            }
        }
        (reports, engine.stats(), summary, None)
    } else {
        let store = Arc::new(open_store(&config, store_arg)?);
        let converter = start_converter(&config, &store)?;
        let mut engine = Engine::with_recordings(&config, store.recordings_dir().to_path_buf());
        if webhooks {
            engine.emit_call_events(&config);
        }
        let mut ingest = Ingest::new(engine, &store);
        if let Some(c) = &converter {
            ingest.convert_with(c.queue());
        }
        stop_replay_on_signals();
        let reports = replay_files_until(&paths, &mut ingest, progress, &STOP_REPLAY);
        let summary = ingest.summary().clone();
        let engine_stats = ingest.engine.stats();
        drop(ingest);
        // The replay ends once what it stored is in the configured format.
        if let Some(c) = converter {
            c.finish();
        }
        (
            reports,
            engine_stats,
            summary,
            Some(store.path().to_path_buf()),
        )
    };
    let failed = reports.iter().any(|(_, r)| r.failed.is_some());
    if stats {
        let by_file: BTreeMap<&str, &FileReport> =
            reports.iter().map(|(name, r)| (name.as_str(), r)).collect();
        let json = serde_json::to_string_pretty(&by_file)?;
        println!("{json}");
    } else {
        for (name, report) in &reports {
            print_file_summary(name, report);
        }
        let s = &engine_stats;
        println!(
            "SIP: {} messages ({} malformed), {} dialogs",
            s.sip.messages,
            s.sip.malformed.values().sum::<u64>(),
            s.dialogs.dialogs_created
        );
        let outcomes: Vec<String> = summary
            .calls
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(o, n)| format!("{n} {o}"))
            .collect();
        println!(
            "calls: {} new ({}), {} exported, {} already stored",
            summary.new_calls(),
            if outcomes.is_empty() {
                "none".to_string()
            } else {
                outcomes.join(", ")
            },
            summary.exported,
            summary.duplicates
        );
        let c = &engine_stats.correlation;
        match (&c.pbx_guess, config.network.pbx.is_empty()) {
            (Some(pbx), true) => println!(
                "PBX: guessed {pbx} ([network] pbx not set; {} overlapping legs pointed at \
                 it); {} conversations merged from {} legs",
                c.pbx_guess_sightings,
                c.conversations_merged,
                c.conversations_merged + c.legs_merged
            ),
            (_, false) => println!(
                "PBX: configured; {} conversations merged from {} legs",
                c.conversations_merged,
                c.conversations_merged + c.legs_merged
            ),
            (None, true) => println!("PBX: none seen (no B2BUA legs to merge)"),
        }
        match &store_path {
            Some(p) => println!("store: {}", p.display()),
            None => println!("store: none (--dry-run)"),
        }
    }
    for e in &summary.errors {
        eprintln!("calltap: store error: {e}");
    }
    Ok(if failed || !summary.errors.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Set by SIGTERM or SIGINT during `replay`.
static STOP_REPLAY: AtomicBool = AtomicBool::new(false);

extern "C" fn request_replay_stop(_: libc::c_int) {
    // An atomic store is async-signal-safe.
    STOP_REPLAY.store(true, Ordering::Relaxed);
}

/// SIGTERM and SIGINT stop a replay at the next frame with the store durable, instead
/// of killing it with a batch of records not yet written.
fn stop_replay_on_signals() {
    let handler = request_replay_stop as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGINT, handler);
    }
}

fn print_file_summary(name: &str, report: &FileReport) {
    if report.failed.as_deref() == Some(calltap::replay::INTERRUPTED) {
        eprintln!(
            "calltap: {name}: interrupted; what was read is stored, and the calls still \
             open are finalised at the next start (a later replay of the same traffic \
             completes them)"
        );
        return;
    }
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

/// Unix seconds, or an RFC 3339 time (`2026-01-15T10:00:00Z`, `2026-01-15 10:00:00`).
fn parse_time(text: &str) -> Result<u64, String> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(secs);
    }
    humantime::parse_rfc3339_weak(text)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .ok_or_else(|| format!("{text:?} is neither Unix seconds nor an RFC 3339 time"))
}

fn calls(
    config_arg: &ConfigArg,
    store_arg: &StoreArg,
    since: Option<String>,
    until: Option<String>,
    all: bool,
    json: bool,
) -> Result<ExitCode, CliError> {
    let config = load_config(config_arg.config.as_deref())?;
    let store = open_store(&config, store_arg)?;
    let start = since.as_deref().map(parse_time).transpose()?.unwrap_or(0);
    let stop = until
        .as_deref()
        .map(parse_time)
        .transpose()?
        .unwrap_or(u64::MAX);
    let iter = if all {
        store.all_calls_between(start, stop)
    } else {
        store.calls_between(start, stop)
    };
    let mut records: Vec<CallRecord> = Vec::new();
    let mut errors = 0;
    for item in iter {
        match item {
            Ok(r) => records.push(r),
            Err(e) => {
                errors += 1;
                eprintln!("calltap: {e}");
            }
        }
    }
    if json {
        let calls: Vec<serde_json::Value> = records
            .iter()
            .map(|r| {
                let mut call = r.to_contract();
                if let (Some(obj), Ok(extra)) = (call.as_object_mut(), serde_json::to_value(r)) {
                    obj.insert("calltap".into(), extra);
                }
                call
            })
            .collect();
        let body = serde_json::json!({ "calls": calls });
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        println!(
            "{:<20} {:<9} {:<9} {:>6}  {:<16} {:<18} {:<8} id",
            "start (UTC)", "direction", "outcome", "secs", "operator", "client", "hung up"
        );
        for r in &records {
            let start = humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(r.start_time),
            )
            .to_string();
            println!(
                "{:<20} {:<9} {:<9} {:>6}  {:<16} {:<18} {:<8} {}",
                start.trim_end_matches('Z').replace('T', " "),
                format!("{:?}", r.direction).to_lowercase(),
                r.outcome.as_str(),
                r.duration,
                truncate(&format!("{} {}", r.operator.id, r.operator.name), 16),
                truncate(r.client_number.as_deref().unwrap_or("-"), 18),
                r.who_hung_up.as_str(),
                r.id
            );
        }
        println!("{} calls", records.len());
    }
    Ok(if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let cut: String = text.chars().take(width - 1).collect();
        format!("{cut}…")
    }
}

/// `serve`, and `demo` (the built-in capture replayed first, a key made if none is set).
fn serve(
    config_arg: &ConfigArg,
    store_arg: &StoreArg,
    listen: &ListenArg,
    demo: bool,
) -> Result<ExitCode, CliError> {
    let mut config = load_config(config_arg.config.as_deref())?;
    if let Some(addr) = listen.listen {
        config.api.listen = addr;
    }
    let store = Arc::new(open_store(&config, store_arg)?);
    let mut made_key = None;
    let mut made_password = None;
    let mut engine_metrics: Option<serde_json::Value> = None;
    if demo {
        let converter = start_converter(&config, &store)?;
        let mut engine = Engine::with_recordings(&config, store.recordings_dir().to_path_buf());
        engine.emit_call_events(&config);
        let mut ingest = Ingest::new(engine, &store);
        if let Some(c) = &converter {
            ingest.convert_with(c.queue());
        }
        let report = replay_bytes("office-day.pcap", DEMO_CAPTURE, &mut ingest);
        if let Some(why) = report.failed {
            return Err(why.into());
        }
        engine_metrics = Some(serde_json::json!({
            "packets": report.counters,
            "engine": ingest.engine.stats(),
        }));
        let s = ingest.summary().clone();
        drop(ingest);
        if let Some(c) = converter {
            c.finish();
        }
        println!(
            "demo capture: {} calls found, {} for the importer ({} already stored)",
            s.new_calls() + s.duplicates,
            store.counts().map(|c| c.exported).unwrap_or(0),
            s.duplicates
        );
        if config.api.secret_keys.is_empty() {
            let mut raw = [0u8; 16];
            getrandom::getrandom(&mut raw).map_err(|e| e.to_string())?;
            let key: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            config.api.secret_keys = SecretKey::new(&key).into_iter().collect();
            made_key = Some(key);
        }
        if config.ui.enabled && config.ui.password_hash.is_none() {
            let mut raw = [0u8; 9];
            getrandom::getrandom(&mut raw).map_err(|e| e.to_string())?;
            let password: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            config.ui.password_hash = Some(calltap::ui::hash_password(&password)?);
            made_password = Some(password);
        }
    }
    let base = if config.api.tls() {
        config.api.link_base()
    } else {
        format!("http://{}", config.api.listen)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.api.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.api.listen))?;
        if demo {
            print_next_steps(&base, &store, made_key.as_deref());
            print_console(&base, &config, made_password.as_deref());
        }
        let state = calltap::api::AppState::new(config.clone(), store.clone())?;
        let deliveries = calltap::events::deliver::Deliveries::start(
            &config,
            store.clone(),
            Some(state.link_signer()),
        )?;
        let delivery_metrics = deliveries.metrics();
        let integrations = calltap::integrations::Integrations::start(
            &config,
            store.clone(),
            Some(state.link_signer()),
        )?;
        let integration_metrics = integrations.metrics();
        if let Some(metrics) = &engine_metrics {
            // What fed the store in this process, and the PBX it found (issue: B2BUA legs).
            let capture = serde_json::json!({
                "source": "built-in demo capture (office-day.pcap)",
                "pbx_guess": metrics["engine"]["correlation"]["pbx_guess"],
                "conversations_merged": metrics["engine"]["correlation"]["conversations_merged"],
            });
            state.set_status_source(Arc::new(move || capture.clone()));
        }
        // What the demo's replay counted, as it stood when the replay ended, and the
        // webhook deliveries.
        state.set_metrics_source(Arc::new(move |out: &mut String| {
            if let Some(metrics) = &engine_metrics {
                calltap::api::prometheus_from_json("calltap", metrics, out);
            }
            delivery_metrics.write_prometheus(out);
            integration_metrics.write_prometheus(out);
        }));
        let served = calltap::api::serve_on(listener, state, shutdown_signal())
            .await
            .map_err(CliError::from);
        deliveries.stop().await;
        integrations.stop().await;
        served
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Where the packaged service keeps its configuration; `run` reads it when no file is
/// named, so a hand-started `calltap run` on an installed host behaves as the service.
const SYSTEM_CONFIG: &str = "/etc/calltap/calltap.toml";

/// `run`: live capture into the store, and the API, in one process.
fn run(
    config_arg: &ConfigArg,
    store_arg: &StoreArg,
    listen: &ListenArg,
    interfaces: Vec<String>,
    pcap_stream: Option<PathBuf>,
) -> Result<ExitCode, CliError> {
    let config_path = config_arg.config.clone().or_else(|| {
        let system = PathBuf::from(SYSTEM_CONFIG);
        system.exists().then_some(system)
    });
    let mut config = load_config(config_path.as_deref())?;
    if let Some(addr) = listen.listen {
        config.api.listen = addr;
    }
    if let Some(dir) = &store_arg.data {
        config.store.path = dir.clone();
    }
    if !interfaces.is_empty() {
        config.capture.interfaces = interfaces;
    }
    let capture: Box<dyn calltap::run::FrameSource> = match pcap_stream {
        Some(path) => {
            Box::new(PcapStream::open(&path).map_err(|e| format!("{}: {e}", path.display()))?)
        }
        None => {
            if config.capture.interfaces.is_empty() {
                return Err(
                    "no interface to capture on: set [capture] interfaces in the \
                     configuration or pass --interface (e.g. --interface eth1, or \
                     --interface any)"
                        .into(),
                );
            }
            // Capture first: a missing capability is the likeliest first-run mistake,
            // and it should be reported before anything is written.
            Box::new(LiveCapture::open(&calltap::run::live_options(&config))?)
        }
    };
    let store = Arc::new(open_store(&config, store_arg)?);
    if config.api.secret_keys.is_empty() {
        tracing::warn!(
            "no API key configured ([api] secret_keys, secret_keys_file or \
             CALLTAP_SECRET_KEY): every API request will be refused with 401"
        );
    }
    let options = calltap::run::RunOptions {
        config,
        config_path,
    };
    let summary = calltap::run::run(options, capture, store)?;
    println!(
        "calltap: stopped after {} frames; {} calls stored ({} for the importer)",
        summary.frames,
        summary.ingest.new_calls(),
        summary.ingest.exported
    );
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM (how systemd stops a service).
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

fn print_next_steps(base: &str, store: &Store, made_key: Option<&str>) {
    // The header goes in double quotes: a shell expands $CALLTAP_SECRET_KEY there and
    // never inside single quotes.
    let key = match made_key {
        Some(k) => {
            println!("no secret key configured: this run's key is {k}");
            k.to_string()
        }
        None => {
            let from_env = std::env::var(calltap::config::SECRET_KEY_ENV).ok();
            println!(
                "the commands below read the key from CALLTAP_SECRET_KEY in your shell{}",
                if from_env.is_some() {
                    " (export it there as it is set for calltap)"
                } else {
                    ": export CALLTAP_SECRET_KEY=<a key of [api] secret_keys> first"
                }
            );
            // CALLTAP_SECRET_KEY may list several keys, comma-separated: send the first.
            if from_env.is_some_and(|v| v.contains(',')) {
                "${CALLTAP_SECRET_KEY%%,*}".to_string()
            } else {
                "$CALLTAP_SECRET_KEY".to_string()
            }
        }
    };
    let calls: Vec<CallRecord> = store
        .calls_between(0, u64::MAX)
        .filter_map(Result::ok)
        .collect();
    let (from, to) = match (calls.first(), calls.last()) {
        (Some(a), Some(b)) => (a.start_time, b.start_time + 1),
        _ => (0, 1),
    };
    println!("calltap serves the Custom Telephony API on {base}. Try:");
    println!("  curl -s -H \"X-Secret-Key: {key}\" {base}/health");
    println!("  curl -s -H \"X-Secret-Key: {key}\" {base}/contacts");
    println!(
        "  curl -s -H \"X-Secret-Key: {key}\" -H 'Content-Type: application/json' \\\n       -d '{{\"startTime\": {from}, \"stopTime\": {to}}}' {base}/calls"
    );
    if let Some(call) = calls.iter().find(|c| c.media.recording.is_some()) {
        println!(
            "  curl -s -H \"X-Secret-Key: {key}\" {base}/calls/{}/recording",
            call.id
        );
    }
    println!("  curl -s {base}/metrics");
}

/// The demo's web console: where, and the password (made for this run when none is
/// configured).
fn print_console(base: &str, config: &Config, made_password: Option<&str>) {
    if config.ui.enabled {
        match made_password {
            Some(p) => println!(
                "web console: {base}/ui/ (password for this run: {p}; set your own with \
                 `calltap passwd` and [ui] password_hash)"
            ),
            None => println!("web console: {base}/ui/ (the password of [ui] password_hash)"),
        }
    }
    println!("Ctrl-C stops it.");
}

/// `passwd`: reads a password and prints its hash for `[ui] password_hash`.
fn passwd() -> Result<ExitCode, CliError> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = read_hidden("console password: ")?;
        let second = read_hidden("again: ")?;
        if first != second {
            return Err("the two passwords differ; nothing was printed".into());
        }
        first
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password: {e}"))?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if password.chars().count() < 8 {
        return Err("the password is shorter than 8 characters: choose a longer one".into());
    }
    let hash = calltap::ui::hash_password(&password)?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "# under [ui] in the configuration:");
    let _ = writeln!(out, "password_hash = \"{hash}\"");
    Ok(ExitCode::SUCCESS)
}

/// A line typed on the terminal with its echo off.
fn read_hidden(prompt: &str) -> Result<String, CliError> {
    use std::io::{BufRead, Write};
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it for a terminal file descriptor
    // (the caller checked stdin is one) and tcsetattr restores what it read.
    let saved = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            return Err("cannot read the terminal's settings".into());
        }
        let saved = t;
        t.c_lflag &= !libc::ECHO;
        libc::tcsetattr(fd, libc::TCSANOW, &t);
        saved
    };
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    // SAFETY: as above, restoring the settings read.
    unsafe {
        libc::tcsetattr(fd, libc::TCSANOW, &saved);
    }
    eprintln!();
    read.map_err(|e| format!("cannot read the password: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
