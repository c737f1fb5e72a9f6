//! Compact storage: stored WAV recordings encoded to FLAC, Ogg Opus or MP3 in the
//! background.
//!
//! The WAV is written as always while the call runs (its crash safety unchanged); once
//! the call's record is stored, one low-priority thread encodes `ID.wav` to
//! `ID.<ext>.part`, syncs it, renames it to `ID.<ext>`, points the record at it (file,
//! bytes, and so the served MIME type and the running totals, in one transaction) and
//! only then removes the WAV. Until then the WAV is what the record names and what is
//! served. A crash at any point leaves the WAV named, or the encoded file named and a
//! WAV to remove: at start the encoder queues every WAV a record still names and removes
//! those no record names any more, so nothing is lost and nothing is left.
//!
//! One thread: the machine this runs on has the PBX beside it, and every format encodes
//! speech far faster than real time on one core (benches/recording_formats.rs: FLAC
//! 775x, Opus and MP3 in the README's table), so one core at nice 10 keeps up with a
//! busy site and never competes with capture.

use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crate::config::RecordingFormat;
use flacenc::component::BitRepr;
use flacenc::error::{SourceError, Verify};
use flacenc::source::{Fill, Source};
use serde::Serialize;

use super::{Store, StoreError};
use crate::call::RecordingFile;

/// Recordings waiting to be encoded before new ones wait for the next start instead:
/// about 6 MB of queue, days of calls for a machine that keeps up.
const QUEUE: usize = 100_000;
/// The encoder thread's nice value: below capture and the API, above nothing.
const NICE: i32 = 10;

/// What the encoder did, for /metrics and /status.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ConvertStats {
    /// Recordings waiting to be encoded.
    pub backlog: u64,
    pub encoded: u64,
    /// Encodes that failed (the WAV is kept and served; the reason is logged).
    pub failed: u64,
    /// Bytes of WAV encoded, and of encoded files written for them.
    pub wav_bytes: u64,
    pub encoded_bytes: u64,
}

#[derive(Default)]
struct Counters {
    backlog: AtomicU64,
    encoded: AtomicU64,
    failed: AtomicU64,
    wav_bytes: AtomicU64,
    encoded_bytes: AtomicU64,
}

/// What stored recordings become.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Lossless.
    Flac,
    /// Ogg Opus (RFC 7845), each party a mono stream, at this many bits a second.
    Opus { bitrate: u32 },
    /// MPEG-1/2/2.5 layer III, plain stereo (no joint stereo: the two channels are two
    /// parties), at this many bits a second.
    #[cfg(feature = "mp3")]
    Mp3 { bitrate: u32 },
}

impl Target {
    /// The encoding the configuration asks for; `None` for WAV.
    pub fn from_config(format: RecordingFormat, bitrate_kbps: Option<u32>) -> Option<Target> {
        match format {
            RecordingFormat::Wav => None,
            RecordingFormat::Flac => Some(Target::Flac),
            RecordingFormat::Opus => Some(Target::Opus {
                bitrate: bitrate_kbps.unwrap_or(crate::config::OPUS_DEFAULT_KBPS) * 1000,
            }),
            #[cfg(feature = "mp3")]
            RecordingFormat::Mp3 => Some(Target::Mp3 {
                bitrate: bitrate_kbps.unwrap_or(crate::config::MP3_DEFAULT_KBPS) * 1000,
            }),
        }
    }

    /// The file extension, without its dot.
    pub fn extension(self) -> &'static str {
        match self {
            Target::Flac => "flac",
            Target::Opus { .. } => "opus",
            #[cfg(feature = "mp3")]
            Target::Mp3 { .. } => "mp3",
        }
    }
}

/// The extensions of encoded recordings (of any format a build may write): what a
/// start cleans up after and what a record may name.
pub const ENCODED_EXTENSIONS: [&str; 3] = ["flac", "opus", "mp3"];

/// A stored call's WAV to encode.
struct Job {
    id: String,
    wav: String,
}

/// Hands stored recordings to the encoder thread; cheap to clone.
#[derive(Clone)]
pub struct ConvertQueue {
    tx: SyncSender<Job>,
    counters: Arc<Counters>,
}

impl ConvertQueue {
    /// Queues the recording of a call just stored, if it is a WAV. A full queue leaves
    /// it for the next start (the WAV is served meanwhile).
    pub fn submit(&self, id: &str, recording: &RecordingFile) {
        if !recording.file.ends_with(".wav") {
            return;
        }
        let job = Job {
            id: id.to_owned(),
            wav: recording.file.clone(),
        };
        self.counters.backlog.fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send(job).is_err() {
            self.counters.backlog.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> ConvertStats {
        let c = &self.counters;
        ConvertStats {
            backlog: c.backlog.load(Ordering::Relaxed),
            encoded: c.encoded.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            wav_bytes: c.wav_bytes.load(Ordering::Relaxed),
            encoded_bytes: c.encoded_bytes.load(Ordering::Relaxed),
        }
    }
}

/// The encoder thread.
pub struct Converter {
    queue: ConvertQueue,
    thread: JoinHandle<()>,
}

impl Converter {
    /// Starts the encoder to `target` for `store`, first queueing every WAV a stored
    /// record still names (a restart after a crash or a stop mid-encode) and removing
    /// what a crash left behind: `*.<ext>.part`, and WAVs whose record names their
    /// encoded file already.
    pub fn start(store: Arc<Store>, target: Target) -> Result<Converter, StoreError> {
        let dir = store.recordings_dir().to_path_buf();
        let io_err = |what| {
            let path = dir.clone();
            move |source| StoreError::Io { path, what, source }
        };
        for entry in fs::read_dir(&dir).map_err(io_err("list the recordings folder"))? {
            let entry = entry.map_err(io_err("list the recordings folder"))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if ENCODED_EXTENSIONS
                .iter()
                .any(|ext| name.ends_with(&format!(".{ext}.part")))
            {
                remove_if_present(&entry.path())
                    .map_err(io_err("remove a partial encoded recording"))?;
            }
        }
        let mut pending = Vec::new();
        for (id, file) in store.recording_files()? {
            if file.ends_with(".wav") {
                pending.push(Job { id, wav: file });
            } else if let Some(stem) = ENCODED_EXTENSIONS
                .iter()
                .find_map(|ext| file.strip_suffix(&format!(".{ext}")))
            {
                remove_if_present(&dir.join(format!("{stem}.wav")))
                    .map_err(io_err("remove an encoded WAV"))?;
            }
        }
        store.release_settled_held(false)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE.max(pending.len()));
        let counters = Arc::new(Counters::default());
        let queue = ConvertQueue {
            tx,
            counters: counters.clone(),
        };
        for job in pending {
            counters.backlog.fetch_add(1, Ordering::Relaxed);
            if queue.tx.try_send(job).is_err() {
                counters.backlog.fetch_sub(1, Ordering::Relaxed);
            }
        }
        let thread = thread::Builder::new()
            .name("recording-encoder".into())
            .spawn(move || work(&store, target, &rx, &counters))
            .map_err(io_err("start the recording encoder thread"))?;
        Ok(Converter { queue, thread })
    }

    pub fn queue(&self) -> ConvertQueue {
        self.queue.clone()
    }

    /// Encodes what is queued, then stops (replay, tests): every queue handle must be
    /// dropped first, or this waits for them.
    pub fn finish(self) {
        drop(self.queue);
        if self.thread.join().is_err() {
            tracing::error!("the recording encoder thread panicked");
        }
    }
}

fn work(store: &Store, target: Target, rx: &Receiver<Job>, counters: &Counters) {
    // SAFETY: setpriority on the calling thread (Linux keeps a nice value per thread);
    // a failure leaves the thread at normal priority, which is only slower for others.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, NICE);
    }
    while let Ok(job) = rx.recv() {
        match convert(store, target, &job) {
            Ok(Some((wav, encoded))) => {
                counters.encoded.fetch_add(1, Ordering::Relaxed);
                counters.wav_bytes.fetch_add(wav, Ordering::Relaxed);
                counters.encoded_bytes.fetch_add(encoded, Ordering::Relaxed);
            }
            Ok(None) => {}
            Err(e) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                let ext = target.extension();
                tracing::warn!(id = %job.id, "recording kept as WAV: {ext} encoding failed: {e}");
            }
        }
        // Its recording.ready, held for the final format, goes out now whatever became
        // of the encode (it describes the file the record names).
        if let Err(e) = store.release_held(&job.id) {
            tracing::warn!(id = %job.id, "recording.ready not released: {e}");
        }
        counters.backlog.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Encodes one call's WAV and points its record at the encoded file; `None` when the
/// record no longer names that WAV (deleted by retention, replaced by a replay).
fn convert(store: &Store, target: Target, job: &Job) -> Result<Option<(u64, u64)>, String> {
    let still_named = |r: &RecordingFile| r.file == job.wav;
    let record = store.get_call(&job.id).map_err(|e| e.to_string())?;
    let Some(old) = record.and_then(|r| r.media.recording).filter(still_named) else {
        return Ok(None);
    };
    let dir = store.recordings_dir();
    let Some(stem) = job.wav.strip_suffix(".wav") else {
        return Ok(None);
    };
    let flac_name = format!("{stem}.{}", target.extension());
    let (wav, flac) = (dir.join(&job.wav), dir.join(&flac_name));
    // The file the record describes, not a newer one of the same name (a replay
    // completing a partial record writes one); that one comes as a job of its own.
    if fs::metadata(&wav).map(|m| m.len()).ok() != Some(old.bytes) {
        return Ok(None);
    }
    let bytes = encode_file(target, &wav, &flac).map_err(|e| e.to_string())?;
    let new = RecordingFile {
        file: flac_name,
        bytes,
        ..old.clone()
    };
    match store.replace_recording(&job.id, &old, &new) {
        Ok(true) => {}
        Ok(false) => {
            let _ = remove_if_present(&flac);
            return Ok(None);
        }
        Err(e) => {
            let _ = remove_if_present(&flac);
            return Err(e.to_string());
        }
    }
    // The record is flushed before the WAV goes: a crash in between leaves a WAV the
    // next start removes, never a record naming a missing file.
    store.flush().map_err(|e| e.to_string())?;
    remove_if_present(&wav).map_err(|e| format!("remove {}: {e}", wav.display()))?;
    Ok(Some((old.bytes, bytes)))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Encodes a 16-bit PCM WAV to `target` at `dst` (through `dst.part`, synced, then
/// renamed, so a crash never leaves a half file under the final name). Answers the
/// encoded file's size.
pub fn encode_file(target: Target, wav: &Path, dst: &Path) -> io::Result<u64> {
    let reader = hound::WavReader::open(wav).map_err(|e| invalid(format!("{e}")))?;
    let spec = reader.spec();
    if spec.bits_per_sample != 16 || spec.sample_format != hound::SampleFormat::Int {
        return Err(invalid("not 16-bit PCM".into()));
    }
    let bytes = match target {
        Target::Flac => flac_bytes(reader, wav)?,
        Target::Opus { bitrate } => super::codecs::ogg_opus(reader, bitrate)?,
        #[cfg(feature = "mp3")]
        Target::Mp3 { bitrate } => super::codecs::mp3(reader, bitrate)?,
    };
    let mut part = dst.as_os_str().to_owned();
    part.push(".part");
    let part = std::path::PathBuf::from(part);
    let written = (|| {
        let mut f = File::create(&part)?;
        f.write_all(&bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = remove_if_present(&part);
        return Err(e);
    }
    fs::rename(&part, dst)?;
    if let Some(parent) = dst.parent() {
        File::open(parent)?.sync_all()?;
    }
    Ok(bytes.len() as u64)
}

/// Encodes a 16-bit PCM WAV to FLAC at `flac` (see [`encode_file`]). Lossless: the
/// FLAC decodes to the WAV's samples.
pub fn wav_to_flac(wav: &Path, flac: &Path) -> io::Result<u64> {
    encode_file(Target::Flac, wav, flac)
}

/// The FLAC stream of a WAV, held in memory (the compressed file, never the PCM).
fn flac_bytes(reader: hound::WavReader<BufReader<File>>, wav: &Path) -> io::Result<Vec<u8>> {
    let spec = reader.spec();
    let config = flacenc::config::Encoder::default()
        .into_verified()
        .map_err(|(_, e)| invalid(format!("encoder configuration: {e:?}")))?;
    let mut source = WavSource {
        channels: usize::from(spec.channels),
        rate: spec.sample_rate as usize,
        samples: reader.into_samples(),
        buf: Vec::new(),
        error: None,
    };
    let stream = flacenc::encode_with_fixed_block_size(&config, &mut source, config.block_size)
        .map_err(|e| invalid(format!("encode: {e:?}")))?;
    if let Some(e) = source.error {
        return Err(invalid(format!("read {}: {e}", wav.display())));
    }
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream
        .write(&mut sink)
        .map_err(|e| invalid(format!("write: {e:?}")))?;
    let mut bytes = sink.into_inner();
    fix_min_block_size(&mut bytes);
    Ok(bytes)
}

/// STREAMINFO's minimum block size excludes the last block (RFC 9639 8.2); flacenc 0.5
/// counts the short last block, which makes a fixed-block stream look variable, and
/// symphonia then refuses it (ffmpeg reads it either way). The stream's blocks are all
/// `max` but the last, so `min` is `max`.
fn fix_min_block_size(flac: &mut [u8]) {
    // "fLaC", then the first metadata block's header (type 0: STREAMINFO), then
    // min (16 bits) and max (16 bits) block size.
    if flac.len() >= 12 && &flac[..4] == b"fLaC" && flac[4] & 0x7F == 0 {
        let (min, max) = flac[8..12].split_at_mut(2);
        min.copy_from_slice(max);
    }
}

/// A WAV read a block at a time, so encoding holds the compressed file in memory, never
/// the PCM.
struct WavSource {
    channels: usize,
    rate: usize,
    samples: hound::WavIntoSamples<BufReader<File>, i16>,
    buf: Vec<i32>,
    /// A read error ends the input; the encode is then failed by the caller.
    error: Option<hound::Error>,
}

impl Source for WavSource {
    fn channels(&self) -> usize {
        self.channels
    }

    fn bits_per_sample(&self) -> usize {
        16
    }

    fn sample_rate(&self) -> usize {
        self.rate
    }

    fn read_samples<F: Fill>(
        &mut self,
        block_size: usize,
        dest: &mut F,
    ) -> Result<usize, SourceError> {
        self.buf.clear();
        if self.error.is_none() {
            for s in self.samples.by_ref().take(block_size * self.channels) {
                match s {
                    Ok(s) => self.buf.push(i32::from(s)),
                    Err(e) => {
                        self.error = Some(e);
                        break;
                    }
                }
            }
        }
        // Whole frames only: a WAV cut inside a frame loses the part frame.
        self.buf
            .truncate(self.buf.len() / self.channels * self.channels);
        dest.fill_interleaved(&self.buf)?;
        Ok(self.buf.len() / self.channels)
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
