//! The file feed: reads capture files in order and drives the engine with their frames.
//!
//! Files are read one after another through one decoder, so a capture rotated into
//! several files (tcpdump -C/-G) continues across them; counters are kept per file.

/// The demo capture, built in so `calltap demo` works from anywhere and webhook
/// templates are checked against real events: a PBX's morning of calls
/// (pcaps/README.md, office-day.pcap).
pub const DEMO_CAPTURE: &[u8] = include_bytes!("../pcaps/office-day.pcap");

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::capture::file::CaptureReader;
use crate::capture::Frame;
use crate::engine::Engine;
use crate::net::stats::Counters;
use crate::net::{Datagram, Decoder};

pub use crate::drive::FrameSink;

impl FrameSink for Engine {
    fn begin_file(&mut self) {
        self.new_source()
    }
    fn frame(&mut self, frame: &Frame<'_>) {
        Engine::frame(self, frame)
    }
    fn finish(&mut self) {
        Engine::finish(self)
    }
    fn take_counters(&mut self) -> Counters {
        self.take_packet_counters()
    }
}

/// The packet layer alone, each datagram handed to a closure.
pub struct DatagramTap<F: FnMut(&Datagram<'_>)> {
    pub decoder: Decoder,
    pub on_datagram: F,
}

impl<F: FnMut(&Datagram<'_>)> FrameSink for DatagramTap<F> {
    fn frame(&mut self, frame: &Frame<'_>) {
        self.decoder.decode(frame, &mut self.on_datagram)
    }
    fn finish(&mut self) {
        self.decoder.finish(&mut self.on_datagram)
    }
    fn take_counters(&mut self) -> Counters {
        self.decoder.take_counters()
    }
}

/// Frames between progress-bar updates: often enough to look live, rare enough to cost
/// nothing.
const PROGRESS_EVERY: u64 = 8192;

/// What one file gave.
#[derive(Debug, Serialize)]
pub struct FileReport {
    #[serde(flatten)]
    pub counters: Counters,
    /// Damage found in the file, with byte offsets; reading went past what it could.
    pub capture_errors: Vec<String>,
    /// Set when the file could not be read at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// Replays `paths` in order into `sink`. At the end, what is still partial (fragments,
/// TCP streams, open dialogs) is flushed and counted in the last file's report.
pub fn replay_files<P: AsRef<Path>, S: FrameSink>(
    paths: &[P],
    sink: &mut S,
    progress: bool,
) -> Vec<(String, FileReport)> {
    replay_files_until(paths, sink, progress, &AtomicBool::new(false))
}

/// What [`FileReport::failed`] says of a file whose replay `stop` cut short.
pub const INTERRUPTED: &str = "interrupted";

/// [`replay_files`] that stops reading as soon as `stop` is set (a signal handler sets
/// it): what was read is made durable ([`FrameSink::end_file`]), but calls still open
/// are not ended, since the rest of their traffic was never read; they stay in
/// progress, and the next start finalises them as a crash's (partial, completed by a
/// later replay of the same traffic). The cut file's report says [`INTERRUPTED`].
pub fn replay_files_until<P: AsRef<Path>, S: FrameSink>(
    paths: &[P],
    sink: &mut S,
    progress: bool,
    stop: &AtomicBool,
) -> Vec<(String, FileReport)> {
    let mut reports = Vec::with_capacity(paths.len());
    for (i, path) in paths.iter().enumerate() {
        let (capture_errors, mut failed) = replay_file(path.as_ref(), sink, progress, stop);
        let stopped = stop.load(Ordering::Relaxed);
        if stopped {
            failed = failed.or_else(|| Some(INTERRUPTED.to_string()));
        } else if i + 1 == paths.len() {
            sink.finish();
        }
        sink.end_file();
        let report = FileReport {
            counters: sink.take_counters(),
            capture_errors,
            failed,
        };
        reports.push((path.as_ref().display().to_string(), report));
        if stopped {
            break;
        }
    }
    reports
}

/// Returns the damage found and, when the file could not be read at all, why.
fn replay_file<S: FrameSink>(
    path: &Path,
    sink: &mut S,
    progress: bool,
    stop: &AtomicBool,
) -> (Vec<String>, Option<String>) {
    let reader = match CaptureReader::open(path) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e.to_string())),
    };
    let bar = progress.then(|| progress_bar(path));
    (replay_reader(reader, sink, bar.as_ref(), stop), None)
}

/// Replays one capture held in memory (the demo capture built into the binary), then
/// flushes what is partial: the whole input, in one call.
pub fn replay_bytes<S: FrameSink>(name: &str, bytes: &[u8], sink: &mut S) -> FileReport {
    let (capture_errors, failed) = match CaptureReader::new(name, bytes) {
        Ok(reader) => (
            replay_reader(reader, sink, None, &AtomicBool::new(false)),
            None,
        ),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    sink.finish();
    sink.end_file();
    FileReport {
        counters: sink.take_counters(),
        capture_errors,
        failed,
    }
}

/// Feeds every frame of `reader` to `sink`; returns the damage found.
fn replay_reader<R: std::io::Read, S: FrameSink>(
    mut reader: CaptureReader<R>,
    sink: &mut S,
    bar: Option<&ProgressBar>,
    stop: &AtomicBool,
) -> Vec<String> {
    let mut errors = Vec::new();
    sink.begin_file();
    let mut frames = 0u64;
    while let Some(next) = reader.next_frame() {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match next {
            Ok(frame) => sink.frame(&frame),
            Err(e) => errors.push(e.to_string()),
        }
        frames += 1;
        if frames % PROGRESS_EVERY == 0 {
            if let Some(bar) = bar {
                bar.set_position(reader.position());
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    errors
}

/// A byte-based bar; indicatif draws nothing when stderr is not a terminal.
fn progress_bar(path: &Path) -> ProgressBar {
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    bar
}
