//! `calltap run`: the appliance. A capture thread drives the engine from a live source and
//! stores what it reports (call events into the outbox); the API serves the same store
//! and webhook delivery sends the outbox from a tokio runtime; signals
//! stop it (SIGTERM, SIGINT) or reload the configuration (SIGHUP), and systemd is told
//! when it is ready, alive and stopping (Type=notify).
//!
//! The wall clock enters only here, as the quiet-line tick: the engine's timeouts are
//! capture time, and with no packet arriving capture time must still move on.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::call::CallInProgress;
use crate::capture::Timestamp;
use crate::config::Config;
use crate::engine::Engine;
use crate::ingest::{Ingest, IngestSummary};
use crate::replay::FrameSink;
use crate::store::convert::{ConvertQueue, Converter, Target};
use crate::store::retention::{DiskWatch, Retention};
use crate::store::Store;

pub use crate::drive::{FrameSource, SourceError};

/// Why `calltap run` could not start, or ended other than by a signal.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot handle signals: {0}")]
    Signals(#[source] std::io::Error),
    #[error("cannot start the capture thread: {0}")]
    CaptureThread(#[source] std::io::Error),
    #[error("the capture thread panicked")]
    CapturePanicked,
    #[error("a task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("webhooks: {0}")]
    Webhooks(String),
    #[error("integrations: {0}")]
    Integrations(String),
    #[error(transparent)]
    Api(#[from] crate::api::ApiError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// How long one poll of the source may block: the capture thread sees a stop or a
/// reload within this, and the watchdog heartbeat moves at least this often.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// How often, in wall time, the capture thread advances a quiet line's clock and
/// publishes its counters. Records are stored within SYNC_EVERY; a finished call
/// reaches the API after the dialog layer's own 32 s linger for late NOTIFYs.
const TICK_EVERY: Duration = Duration::from_secs(1);
/// How often the capture loop makes what it stored durable (one fsync at most).
const SYNC_EVERY: Duration = Duration::from_millis(200);

/// A quiet-line tick runs this far behind the wall clock: frames still waiting in the
/// kernel ring carry earlier stamps, and capture time must not run ahead of them.
const QUIET_LAG: Duration = Duration::from_secs(1);

/// What the service side asks of the capture thread.
enum Control {
    Reload(Box<Config>),
    Stop,
}

/// What the capture thread shows the service side.
struct Shared {
    /// Milliseconds since `started` at the capture thread's last turn (the watchdog's
    /// proof that the engine is not stuck).
    heartbeat_ms: AtomicU64,
    started: Instant,
    /// The latest counters, published once a tick.
    snapshot: Mutex<Arc<Value>>,
    /// The calls in progress, published once a tick (the console's Live page).
    in_progress: Mutex<Arc<Vec<CallInProgress>>>,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            heartbeat_ms: AtomicU64::new(0),
            started: Instant::now(),
            snapshot: Mutex::new(Arc::new(json!({}))),
            in_progress: Mutex::new(Arc::new(Vec::new())),
        }
    }

    fn beat(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.heartbeat_ms.store(ms, Ordering::Relaxed);
    }

    fn since_beat(&self) -> Duration {
        let now = self.started.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.heartbeat_ms.load(Ordering::Relaxed)))
    }

    fn publish(&self, value: Value) {
        *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(value);
    }

    fn publish_in_progress(&self, calls: Vec<CallInProgress>) {
        *self.in_progress.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(calls);
    }

    fn in_progress(&self) -> Arc<Vec<CallInProgress>> {
        self.in_progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn snapshot(&self) -> Arc<Value> {
        self.snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// What `calltap run` needs besides its source and store.
pub struct RunOptions {
    /// The configuration in force at start.
    pub config: Config,
    /// Where SIGHUP reads the configuration again; `None` means defaults, so a reload
    /// changes nothing.
    pub config_path: Option<PathBuf>,
}

/// What a run did, printed when it ends.
#[derive(Debug)]
pub struct RunSummary {
    pub ingest: IngestSummary,
    pub frames: u64,
}

/// Runs until SIGTERM or SIGINT: capture into the store, the API over it. Returns once
/// the capture thread has finalised every call in progress (whoHungUp "system", with the
/// audio so far) and the store is flushed.
pub fn run(
    options: RunOptions,
    source: Box<dyn FrameSource>,
    store: Arc<Store>,
) -> Result<RunSummary, RunError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    runtime.block_on(serve_and_capture(options, source, store))
}

async fn serve_and_capture(
    options: RunOptions,
    source: Box<dyn FrameSource>,
    store: Arc<Store>,
) -> Result<RunSummary, RunError> {
    let signals_taken = Signals::take()?;
    let config = options.config.clone();
    let listen: SocketAddr = config.api.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| RunError::Listen {
            addr: listen,
            source,
        })?;
    let state = crate::api::AppState::new(config.clone(), store.clone())?;

    let retention = Arc::new(Retention::new(&config.store));
    let disk = Arc::new(DiskWatch::new(
        &config.store,
        store.recordings_dir(),
        &retention,
    ));
    // Before the first frame: a disk already below the floor records no audio at all.
    disk.check();

    // Delivery only reads the outbox the capture thread writes: a receiver that is slow
    // or down never holds up capture.
    let deliveries = crate::events::deliver::Deliveries::start(
        &config,
        store.clone(),
        Some(state.link_signer()),
    )
    .map_err(RunError::Webhooks)?;
    let delivery_metrics = deliveries.metrics();
    // Integrations read the same outbox on their own tasks.
    let integrations =
        crate::integrations::Integrations::start(&config, store.clone(), Some(state.link_signer()))
            .map_err(RunError::Integrations)?;
    let integration_metrics = integrations.metrics();
    // Compact storage: the encoder starts with what a stop or crash left as WAV.
    let r = &config.recording;
    let converter = match Target::from_config(r.format, r.bitrate_kbps) {
        Some(target) => Some(Converter::start(store.clone(), target)?),
        None => None,
    };
    let convert = converter.as_ref().map(Converter::queue);

    let what = source.describe();
    let shared = Arc::new(Shared::new());
    let (control, commands) = mpsc::channel();
    let capture = {
        let shared = shared.clone();
        let store = store.clone();
        let mut engine = Engine::with_recordings(&config, store.recordings_dir().to_path_buf());
        engine.set_audio_open(disk.audio_open());
        engine.emit_call_events(&config);
        let convert = convert.clone();
        let disk = disk.clone();
        thread::Builder::new()
            .name("capture".into())
            .spawn(move || capture_loop(source, engine, &store, convert, &disk, &commands, &shared))
            .map_err(RunError::CaptureThread)?
    };

    {
        let metrics = shared.clone();
        let disk = disk.clone();
        let encoder = convert.clone();
        state.set_metrics_source(Arc::new(move |out: &mut String| {
            let snapshot = metrics.snapshot();
            crate::api::prometheus_from_json("calltap", &snapshot, out);
            no_response_sources(&snapshot, out);
            let disk = serde_json::to_value(disk.stats()).unwrap_or_default();
            crate::api::prometheus_from_json("calltap_disk", &disk, out);
            delivery_metrics.write_prometheus(out);
            integration_metrics.write_prometheus(out);
            if let Some(q) = &encoder {
                let encoder = serde_json::to_value(q.stats()).unwrap_or_default();
                crate::api::prometheus_from_json("calltap_recording_encoder", &encoder, out);
            }
        }));
        let shared = shared.clone();
        let what = what.clone();
        let encoder = convert.clone();
        state.set_status_source(Arc::new(move || {
            let snapshot = shared.snapshot();
            json!({
                "source": format!("live capture on {what}"),
                "interfaces": snapshot.get("capture").cloned().unwrap_or(Value::Null),
                "pbx_guess": snapshot.pointer("/engine/correlation/pbx_guess"),
                "dialogs": snapshot.pointer("/engine/dialogs"),
                "sip": snapshot.pointer("/engine/sip"),
                "recording_encoder": encoder.as_ref().map(ConvertQueue::stats),
            })
        }));
    }

    {
        let shared = shared.clone();
        state.set_in_progress_source(Arc::new(move || shared.in_progress()));
    }

    let (api_stop, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::api::serve_on(listener, state.clone(), async {
        let _ = api_stopped.await;
    }));

    let housekeeping = tokio::spawn(housekeeping(store.clone(), retention, disk));

    let scheme = if config.api.tls() { "https" } else { "http" };
    let status = format!("capturing on {what}; API on {scheme}://{listen}");
    println!("calltap: {status}");
    notify(&["READY=1", &format!("STATUS={status}")]);
    let watchdog = watchdog_period().map(|period| {
        let shared = shared.clone();
        tokio::spawn(watchdog(period, shared))
    });

    let outcome = signals(signals_taken, &options, &state, &control).await;

    notify(&["STOPPING=1"]);
    if let Some(task) = watchdog {
        task.abort();
    }
    housekeeping.abort();
    // The capture thread may be mid-poll: it sees the stop within POLL_TIMEOUT, then
    // ends every open call and flushes the store.
    let _ = control.send(Control::Stop);
    let summary = tokio::task::spawn_blocking(move || capture.join())
        .await
        .map_err(RunError::Task)?
        .map_err(|_| RunError::CapturePanicked)?;
    deliveries.stop().await;
    integrations.stop().await;
    let _ = api_stop.send(());
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.into()),
        Err(e) => return Err(RunError::Task(e)),
    }
    store.flush()?;
    outcome?;
    Ok(summary)
}

/// INVITEs that got no response, per source, as labelled Prometheus samples (the
/// busiest sources; the rest are in `calltap_engine_dialogs_no_response_other_sources`).
/// Live capture's options from `[capture]`: its interfaces, promiscuous mode and ring,
/// and the packet layer's pre-filter over its SIP and RTP ports.
pub fn live_options(config: &Config) -> crate::capture::live::LiveOptions {
    let c = &config.capture;
    let filter = Arc::new(crate::net::filter::PreFilter::new(
        &c.sip_ports,
        c.rtp_ports.start..=c.rtp_ports.end,
    ));
    crate::capture::live::LiveOptions {
        promiscuous: c.promiscuous,
        ring_bytes: c.ring_size.as_usize(),
        ..crate::capture::live::LiveOptions::new(c.interfaces.clone(), filter)
    }
}

fn no_response_sources(snapshot: &Value, out: &mut String) {
    use std::fmt::Write;
    let Some(sources) = snapshot
        .pointer("/engine/dialogs/no_response/sources")
        .and_then(Value::as_array)
    else {
        return;
    };
    let _ = writeln!(
        out,
        "# HELP calltap_no_response_invites INVITEs that got no response at all (scanners, floods), by source address\n# TYPE calltap_no_response_invites counter"
    );
    for s in sources {
        if let (Some(source), Some(n)) = (s["source"].as_str(), s["invites"].as_u64()) {
            let _ = writeln!(
                out,
                "calltap_no_response_invites{{source=\"{source}\"}} {n}"
            );
        }
    }
}

/// The signals `run` handles, taken over before it says it is ready: a SIGTERM right
/// after READY=1 must stop it cleanly, not kill it by the default action.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn take() -> Result<Signals, RunError> {
        use tokio::signal::unix::{signal, SignalKind};
        let take = |kind| signal(kind).map_err(RunError::Signals);
        Ok(Signals {
            term: take(SignalKind::terminate())?,
            int: take(SignalKind::interrupt())?,
            hup: take(SignalKind::hangup())?,
        })
    }
}

/// Waits for SIGTERM/SIGINT (returns) and handles SIGHUP (reload) meanwhile.
async fn signals(
    mut signals: Signals,
    options: &RunOptions,
    state: &crate::api::AppState,
    control: &Sender<Control>,
) -> Result<(), RunError> {
    let Signals { term, int, hup } = &mut signals;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => reload(options, state, control),
        }
    }
}

/// SIGHUP: operators, properties, keys, access rules and numbering from the file
/// again, and the TLS certificate files. A file that does not load leaves the running
/// configuration as it is.
fn reload(options: &RunOptions, state: &crate::api::AppState, control: &Sender<Control>) {
    let Some(path) = &options.config_path else {
        tracing::info!("SIGHUP: no configuration file to reload (running on defaults)");
        return;
    };
    notify(&["RELOADING=1"]);
    match Config::load(Some(path)) {
        Ok(mut config) => {
            // Where data lives and where the API listens are fixed for the process.
            config.store.path = options.config.store.path.clone();
            config.api.listen = options.config.api.listen;
            // So are TLS's sources (the certificate files themselves are re-read).
            config.api.tls_cert = options.config.api.tls_cert.clone();
            config.api.tls_key = options.config.api.tls_key.clone();
            config.api.acme = options.config.api.acme.clone();
            config.api.redirect_listen = options.config.api.redirect_listen;
            tracing::info!(
                "SIGHUP: {} reloaded ({} operators, {} properties)",
                path.display(),
                config.operators.len(),
                config.properties.len()
            );
            state.reload(config.clone());
            let _ = control.send(Control::Reload(Box::new(config)));
        }
        Err(e) => tracing::error!("SIGHUP: configuration not reloaded, the old one stays: {e}"),
    }
    notify(&["READY=1"]);
}

/// Pets systemd's watchdog while the capture thread turns; a stuck engine stops the
/// pets and systemd restarts the service.
async fn watchdog(period: Duration, shared: Arc<Shared>) {
    let mut every = tokio::time::interval(period / 2);
    loop {
        every.tick().await;
        if shared.since_beat() < period / 2 {
            notify(&["WATCHDOG=1"]);
        } else {
            tracing::error!(
                "capture thread silent for {:?}: watchdog not petted",
                shared.since_beat()
            );
        }
    }
}

/// How often free space is checked against `[store] min_free`: at 100 calls a second's
/// worth of audio (~1.6 MB/s) the default 1 GiB floor is minutes away, so seconds do.
const DISK_CHECK_EVERY: Duration = Duration::from_secs(5);

/// How often retention runs; its rules are in days, and an idle sweep costs microseconds.
const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// The free-space floor and retention, off the capture thread (both touch the disk).
async fn housekeeping(store: Arc<Store>, retention: Arc<Retention>, disk: Arc<DiskWatch>) {
    let mut every = tokio::time::interval(DISK_CHECK_EVERY);
    let mut next_sweep = Instant::now();
    loop {
        every.tick().await;
        let sweep = Instant::now() >= next_sweep;
        if sweep {
            next_sweep = Instant::now() + RETENTION_EVERY;
        }
        let (store, retention, disk) = (store.clone(), retention.clone(), disk.clone());
        let _ = tokio::task::spawn_blocking(move || {
            disk.check();
            if sweep {
                let now = wall_clock().unix_secs();
                match retention.sweep(&store, now) {
                    Ok(r) if r.records_deleted + r.recordings_deleted > 0 => tracing::info!(
                        "retention: {} records and {} recordings deleted, {} bytes freed",
                        r.records_deleted,
                        r.recordings_deleted,
                        r.bytes_freed
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::error!("retention: {e}"),
                }
            }
        })
        .await;
    }
}

/// Tells systemd (Type=notify) how the service stands: "READY=1", "WATCHDOG=1",
/// "STOPPING=1", "STATUS=...". Not through the sd-notify crate: its send blocks when the
/// manager is slow to read, and a blocked send in the watchdog task or at shutdown held
/// the process (seen when the reader was stalled). A datagram that cannot go at once is
/// dropped, as the watchdog's next pet or systemd's own timeout covers it.
fn notify(lines: &[&str]) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let addr = match path.strip_prefix('@') {
        // A Linux abstract socket, as systemd may hand out.
        Some(name) => UnixAddr::from_abstract_name(name.as_bytes()),
        None => UnixAddr::from_pathname(&path),
    };
    let message = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    let sent = UnixDatagram::unbound().and_then(|socket| {
        socket.set_nonblocking(true)?;
        socket.send_to_addr(message.as_bytes(), &addr?)
    });
    if let Err(e) = sent {
        tracing::warn!("cannot notify systemd ({path}): {e}");
    }
}

/// The watchdog period systemd asks for (WATCHDOG_USEC, for this process).
fn watchdog_period() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

fn wall_clock() -> Timestamp {
    Timestamp::from_duration(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

/// The capture thread: frames into the engine, records into the store, until stopped.
fn capture_loop(
    mut source: Box<dyn FrameSource>,
    engine: Engine,
    store: &Store,
    convert: Option<ConvertQueue>,
    disk: &DiskWatch,
    commands: &Receiver<Control>,
    shared: &Shared,
) -> RunSummary {
    let mut ingest = Ingest::new(engine, store);
    if let Some(q) = convert {
        ingest.convert_with(q);
    }
    let mut frames = 0u64;
    let mut frames_at_tick = 0u64;
    let mut next_tick = Instant::now() + TICK_EVERY;
    let mut last_sync = Instant::now();
    loop {
        shared.beat();
        match commands.recv_timeout(Duration::ZERO) {
            Ok(Control::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            Ok(Control::Reload(config)) => ingest.engine.reload(&config),
            Err(RecvTimeoutError::Timeout) => {}
        }
        // The disk watch's verdict (its own thread checks the free space), handed to
        // the engine as an input like the frames.
        ingest.engine.set_audio_open(disk.audio_open());
        match source.poll(POLL_TIMEOUT, &mut |frame| {
            FrameSink::frame(&mut ingest, frame)
        }) {
            Ok(n) => {
                frames += n as u64;
                // Durable within SYNC_EVERY: a SIGKILL loses at most that much of calls'
                // starts and ends, at a few fsyncs a second however fast blocks come.
                if last_sync.elapsed() >= SYNC_EVERY {
                    ingest.sync();
                    last_sync = Instant::now();
                }
            }
            Err(e) => {
                tracing::error!("capture failed: {e}");
                break;
            }
        }
        if Instant::now() >= next_tick {
            if frames == frames_at_tick {
                let now = wall_clock();
                let behind = Timestamp::from_nanos(
                    now.as_nanos().saturating_sub(QUIET_LAG.as_nanos() as u64),
                );
                ingest.tick(behind);
            }
            frames_at_tick = frames;
            next_tick = Instant::now() + TICK_EVERY;
            shared.publish(snapshot(&ingest, source.as_ref(), frames));
            shared.publish_in_progress(ingest.engine.calls_in_progress());
        }
    }
    // Open calls end here with the audio so far (whoHungUp "system"); lingering records
    // are released; everything is written.
    ingest.shutdown();
    shared.publish(snapshot(&ingest, source.as_ref(), frames));
    shared.publish_in_progress(Vec::new());
    RunSummary {
        ingest: ingest.summary().clone(),
        frames,
    }
}

fn snapshot(ingest: &Ingest<'_>, source: &dyn FrameSource, frames: u64) -> Value {
    json!({
        "capture": source.stats(),
        "frames": frames,
        "packets": ingest.engine.packet_counters(),
        "engine": ingest.engine.stats(),
        "ingest": ingest.summary(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::{EndReason, WhoHungUp};
    use crate::capture::file::CaptureReader;
    use crate::capture::{Frame, LinkType};
    use crate::replay::replay_bytes;

    const OFFICE_DAY: &[u8] = include_bytes!("../pcaps/office-day.pcap");

    /// The frames of a capture, handed out as if they arrived now: stamps moved so the
    /// capture's last frame is `last_at`, then a quiet line.
    struct Restamped {
        frames: Vec<(Timestamp, LinkType, Vec<u8>)>,
        next: usize,
    }

    impl Restamped {
        fn new(bytes: &[u8], keep: impl Fn(usize, usize) -> bool, last_at: Timestamp) -> Self {
            let mut reader = CaptureReader::new("test", bytes).expect("capture");
            let mut frames = Vec::new();
            while let Some(Ok(f)) = reader.next_frame() {
                frames.push((f.time, f.link, f.data.to_vec()));
            }
            let total = frames.len();
            let frames: Vec<_> = frames
                .into_iter()
                .enumerate()
                .filter(|(i, _)| keep(*i, total))
                .map(|(_, f)| f)
                .collect();
            let shift =
                last_at.as_nanos() as i128 - frames.last().map_or(0, |f| f.0.as_nanos()) as i128;
            let frames = frames
                .into_iter()
                .map(|(t, link, data)| {
                    let t = (t.as_nanos() as i128 + shift).max(0) as u64;
                    (Timestamp::from_nanos(t), link, data)
                })
                .collect();
            Restamped { frames, next: 0 }
        }
    }

    impl FrameSource for Restamped {
        fn poll(
            &mut self,
            timeout: Duration,
            on_frame: &mut dyn FnMut(&Frame<'_>),
        ) -> Result<usize, SourceError> {
            if self.next == self.frames.len() {
                thread::sleep(timeout);
                return Ok(0);
            }
            let end = (self.next + 5000).min(self.frames.len());
            for (time, link, data) in &self.frames[self.next..end] {
                on_frame(&Frame {
                    time: *time,
                    link: *link,
                    data,
                    orig_len: data.len() as u32,
                });
            }
            let n = end - self.next;
            self.next = end;
            Ok(n)
        }
        fn stats(&self) -> Value {
            json!({"delivered": self.next})
        }
        fn describe(&self) -> String {
            "test".into()
        }
    }

    #[test]
    fn no_response_sources_are_labelled_samples() {
        let snapshot = json!({"engine": {"dialogs": {"no_response": {"sources": [
            {"source": "100.64.0.1", "invites": 12},
            {"source": "2001:db8::7", "invites": 3}
        ]}}}});
        let mut out = String::new();
        no_response_sources(&snapshot, &mut out);
        assert!(out.contains("# TYPE calltap_no_response_invites counter\n"));
        assert!(out.contains("calltap_no_response_invites{source=\"100.64.0.1\"} 12\n"));
        assert!(out.contains("calltap_no_response_invites{source=\"2001:db8::7\"} 3\n"));
        let mut empty = String::new();
        no_response_sources(&json!({}), &mut empty);
        assert!(empty.is_empty());
    }

    fn ago(secs: u64) -> Timestamp {
        Timestamp::from_nanos(wall_clock().as_nanos() - secs * 1_000_000_000)
    }

    fn stored_ids(store: &Store) -> Vec<String> {
        let mut ids: Vec<String> = store
            .calls_between(0, u64::MAX)
            .filter_map(Result::ok)
            .map(|c| c.id)
            .collect();
        ids.sort();
        ids
    }

    fn start(
        source: Restamped,
        store: Arc<Store>,
    ) -> (Sender<Control>, thread::JoinHandle<RunSummary>) {
        let config = Config::default();
        let engine = Engine::with_recordings(&config, store.recordings_dir().to_path_buf());
        let (control, commands) = mpsc::channel();
        let retention = Retention::new(&config.store);
        let disk = DiskWatch::with_free_space(&config.store, &retention, || Ok(u64::MAX));
        let handle = thread::spawn(move || {
            capture_loop(
                Box::new(source),
                engine,
                &store,
                None,
                &disk,
                &commands,
                &Shared::new(),
            )
        });
        (control, handle)
    }

    /// A finished call reaches the store while capture goes on, through the quiet-line
    /// tick alone: no stop, no end of input. The records are those a replay gives.
    #[test]
    fn quiet_line_ticks_store_finished_calls_while_running() {
        let replayed = tempfile::tempdir().expect("tempdir");
        let replayed = Store::open(replayed.path()).expect("store");
        let mut ingest = Ingest::new(Engine::new(&Config::default()), &replayed);
        replay_bytes("office-day.pcap", OFFICE_DAY, &mut ingest);
        let replayed_calls = ingest.summary().new_calls();
        drop(ingest);
        let expected = stored_ids(&replayed);
        assert!(expected.len() >= 3, "the demo capture has calls");

        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        // Ended long enough ago that every linger and leg hold has run out.
        let source = Restamped::new(OFFICE_DAY, |_, _| true, ago(120));
        let (control, handle) = start(source, store.clone());
        let mut live = Vec::new();
        for _ in 0..100 {
            live = stored_ids(&store);
            if live.len() >= expected.len() {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(live, expected, "stored while running, before any stop");
        control.send(Control::Stop).expect("send");
        let summary = handle.join().expect("capture thread");
        assert_eq!(stored_ids(&store), expected);
        assert_eq!(summary.ingest.new_calls(), replayed_calls);
        assert!(summary.frames > 0);
    }

    /// Stopping mid-capture ends the open calls as "shutdown", whoHungUp "system",
    /// with a complete WAV of the audio so far.
    #[test]
    fn stop_ends_calls_in_progress_with_their_audio() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Store::open(dir.path()).expect("store"));
        // The first half of the capture, its last frame just now: calls are mid-talk.
        let source = Restamped::new(OFFICE_DAY, |i, n| i < n / 2, ago(0));
        let (control, handle) = start(source, store.clone());
        thread::sleep(Duration::from_millis(500));
        control.send(Control::Stop).expect("send");
        handle.join().expect("capture thread");
        let stopped: Vec<_> = store
            .calls_between(0, u64::MAX)
            .filter_map(Result::ok)
            .filter(|c| c.end_reason == EndReason::Shutdown)
            .collect();
        assert!(!stopped.is_empty(), "calls were in progress at the stop");
        assert!(store.in_progress().expect("in progress").is_empty());
        for call in &stopped {
            assert_eq!(call.who_hung_up, WhoHungUp::System, "{}", call.id);
            if let Some(rec) = &call.media.recording {
                let path = store.recordings_dir().join(&rec.file);
                let wav = hound::WavReader::open(&path).expect("a complete WAV");
                assert_eq!(wav.spec().channels, 2);
                assert!(wav.duration() > 0, "{}", path.display());
            }
        }
        assert!(
            stopped.iter().any(|c| c.media.recording.is_some()),
            "at least one stopped call had audio"
        );
    }
}
