//! Retention and the free-space floor: what keeps a store from filling its disk.
//!
//! [`Retention::sweep`], run about once a minute, applies `[store]`'s `keep_days`,
//! `recordings_keep_days` and `max_disk`. [`DiskWatch::check`], run every few seconds,
//! turns audio off while the store's filesystem has less than `min_free` free, so audio
//! stops while call records go on (a record is ~1 KB, a minute of audio ~2 MB).
//!
//! Both read the wall clock's date (`now` is a parameter, so tests choose it) and the
//! disk, never the engine's state; the run loop hands [`DiskWatch::audio_open`] to the
//! engine (`Engine::set_audio_open`).
//!
//! Cost: a sweep with nothing to delete is two range probes and a counter read, whatever
//! the store's size; deleting walks only what goes, oldest first, through the start-time
//! ordered `calls` tree and the `recordings` index (no record decoded to delete a call,
//! one decode and encode per recording deleted with its record kept). Measured by
//! benches/retention.rs on 1,000,000 calls with 100,000 recordings (2 shared cores, load
//! 5-6): an idle sweep 2 us (p99 0.9 ms); the every-minute sweep at 10,000 calls a day
//! 0.8 ms (p99 2.4 ms); a day's records at once 0.46 s (46 us a call); `max_disk` cut by
//! 1% (285 recordings, records re-written in cold pages) 72 ms; switching retention on
//! over the full store (100,000 records and 71,500 recordings to delete) 41 s, once. The
//! running total reads in 14 us where walking the 100,000 files took 206 ms.

use std::fs;
use std::io;
use std::path::{Component, Path};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use crate::config::{ByteSize, StoreConfig};

use super::{codec, Store, StoreError, StoredRecording};

const DAY: u64 = 86_400;
/// Calls or recordings handled per transaction: big enough that a first sweep deleting
/// months of history is not bound by transaction overhead, small enough that one batch
/// holds little memory and a crash between batches loses nothing (files go first).
const BATCH: usize = 1024;
/// How far above `min_free` free space must climb before audio resumes, at least: 256 MiB
/// is about 2 h 20 min of one call's 8 kHz stereo audio (32 KB/s), or 80 s of 100 calls
/// recorded at once. Without this margin the gate would reopen at the floor and close
/// again at the next check from the recordings it let start, cutting every new call
/// short in turn.
const RESUME_MARGIN_MIN: u64 = 256 * ByteSize::MIB;
/// ... or 10% of `min_free`, when that is larger: a large floor gets a margin in scale.
const RESUME_MARGIN_PERCENT: u64 = 10;

/// What one sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    /// Call records deleted (`keep_days`), with their recordings and index entries.
    pub records_deleted: u64,
    /// Recordings deleted, by any of the three rules: the store no longer names them
    /// (including a file found already gone).
    pub recordings_deleted: u64,
    /// Bytes of the recording files removed.
    pub bytes_freed: u64,
    /// Recordings named by stored records after the sweep, and their bytes.
    pub recordings_count: u64,
    pub recordings_bytes: u64,
    /// Recordings left alone because their call is in progress.
    pub skipped_in_progress: u64,
    /// Files that could not be removed (their records are kept, so nothing is orphaned;
    /// the next sweep tries again).
    pub file_errors: u64,
}

/// Totals since start, shared with [`DiskWatch::stats`] for `/metrics`.
#[derive(Debug, Default)]
struct Counters {
    sweeps: AtomicU64,
    sweep_errors: AtomicU64,
    records_deleted: AtomicU64,
    recordings_deleted: AtomicU64,
    bytes_freed: AtomicU64,
    file_errors: AtomicU64,
    recordings_count: AtomicU64,
    recordings_bytes: AtomicU64,
    last_sweep_micros: AtomicU64,
}

/// The retention rules of `[store]`.
#[derive(Debug)]
pub struct Retention {
    keep_days: u32,
    recordings_keep_days: u32,
    max_disk: Option<ByteSize>,
    counters: Arc<Counters>,
}

/// What became of a recording's file.
enum Removal {
    /// Removed; its size.
    Removed(u64),
    /// Not there any more (removed by hand, or by a sweep a crash interrupted).
    Gone,
    /// Left in place: the store keeps naming it.
    Kept,
}

impl Retention {
    pub fn new(config: &StoreConfig) -> Retention {
        Retention {
            keep_days: config.keep_days,
            recordings_keep_days: config.recordings_keep_days,
            max_disk: config.max_disk.filter(|m| m.bytes() > 0),
            counters: Arc::default(),
        }
    }

    /// Applies the rules at `now` (Unix seconds), in order: records older than
    /// `keep_days` go with their recordings; recordings older than `recordings_keep_days`
    /// go, their records stay (with the reason); then, while the recordings' total is
    /// over `max_disk`, the oldest recordings go (by call start time). A recording of a
    /// call in progress is never touched (it is a `.wav.part` no record names yet, and a
    /// stored call whose id is in progress again is skipped). Files are removed before
    /// the store forgets them, so a crash in between leaves a record naming a missing
    /// file (the API answers 404, the next sweep finishes) and never an orphaned file.
    pub fn sweep(&self, store: &Store, now_unix_secs: u64) -> Result<RetentionReport, StoreError> {
        let started = Instant::now();
        let c = &self.counters;
        c.sweeps.fetch_add(1, Ordering::Relaxed);
        let result = self.run(store, now_unix_secs);
        c.last_sweep_micros
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        match &result {
            Ok(r) => {
                for (counter, n) in [
                    (&c.records_deleted, r.records_deleted),
                    (&c.recordings_deleted, r.recordings_deleted),
                    (&c.bytes_freed, r.bytes_freed),
                    (&c.file_errors, r.file_errors),
                ] {
                    counter.fetch_add(n, Ordering::Relaxed);
                }
                c.recordings_count
                    .store(r.recordings_count, Ordering::Relaxed);
                c.recordings_bytes
                    .store(r.recordings_bytes, Ordering::Relaxed);
                if r.records_deleted + r.recordings_deleted > 0 {
                    tracing::info!(
                        records = r.records_deleted,
                        recordings = r.recordings_deleted,
                        bytes_freed = r.bytes_freed,
                        recordings_bytes = r.recordings_bytes,
                        "retention deleted old calls and recordings"
                    );
                }
            }
            Err(_) => {
                c.sweep_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    fn run(&self, store: &Store, now: u64) -> Result<RetentionReport, StoreError> {
        let mut report = RetentionReport::default();
        if self.keep_days > 0 {
            let cutoff = now.saturating_sub(u64::from(self.keep_days) * DAY);
            self.delete_records(store, cutoff, &mut report)?;
        }
        if self.recordings_keep_days > 0 {
            let days = self.recordings_keep_days;
            let cutoff = now.saturating_sub(u64::from(days) * DAY);
            let reason = format!("deleted after {days} days (recordings_keep_days)");
            let mut from = Vec::new();
            loop {
                let batch = store.recordings_between(&from, cutoff, BATCH)?;
                let Some(last) = batch.last() else { break };
                from = after(last.start_time, &last.id);
                let doomed = self.remove_files(store, batch, &mut report)?;
                let forgotten = store.forget_recordings(&doomed, &reason)?;
                report.recordings_deleted += forgotten.count;
            }
        }
        if let Some(cap) = self.max_disk {
            self.trim_to(store, cap, &mut report)?;
        }
        if report.records_deleted + report.recordings_deleted > 0 {
            store.flush()?;
        }
        let totals = store.recordings_totals()?;
        report.recordings_count = totals.count;
        report.recordings_bytes = totals.bytes;
        Ok(report)
    }

    /// `keep_days`: calls that started before `cutoff` go, recordings first.
    fn delete_records(
        &self,
        store: &Store,
        cutoff: u64,
        report: &mut RetentionReport,
    ) -> Result<(), StoreError> {
        let mut from = Vec::new();
        loop {
            let keys = store.call_keys(&from, cutoff, BATCH)?;
            let Some((start, id)) = keys.last() else {
                break;
            };
            from = after(*start, id);
            let mut doomed = Vec::with_capacity(keys.len());
            for (start, id) in keys {
                if store.is_in_progress(&id)? {
                    report.skipped_in_progress += 1;
                    continue;
                }
                if let Some(rec) = store.recording_of(start, &id)? {
                    match remove_file(store.recordings_dir(), &rec) {
                        Removal::Removed(bytes) => report.bytes_freed += bytes,
                        Removal::Gone => {}
                        Removal::Kept => {
                            report.file_errors += 1;
                            continue;
                        }
                    }
                }
                doomed.push((start, id));
            }
            let deleted = store.delete_calls(&doomed)?;
            report.records_deleted += deleted.records;
            report.recordings_deleted += deleted.recordings;
        }
        Ok(())
    }

    /// `max_disk`: the oldest recordings go until the total is at most `cap`.
    fn trim_to(
        &self,
        store: &Store,
        cap: ByteSize,
        report: &mut RetentionReport,
    ) -> Result<(), StoreError> {
        let reason = format!("deleted, oldest first, to keep recordings under max_disk ({cap})");
        let mut total = store.recordings_totals()?.bytes;
        let mut from = Vec::new();
        while total > cap.bytes() {
            let batch = store.recordings_between(&from, u64::MAX, BATCH)?;
            if batch.is_empty() {
                break;
            }
            // Only as many as bring the total under the cap.
            let mut projected = total;
            let mut take = Vec::new();
            for rec in batch {
                if projected <= cap.bytes() {
                    break;
                }
                projected = projected.saturating_sub(rec.bytes);
                take.push(rec);
            }
            if let Some(last) = take.last() {
                from = after(last.start_time, &last.id);
            }
            let doomed = self.remove_files(store, take, report)?;
            let forgotten = store.forget_recordings(&doomed, &reason)?;
            report.recordings_deleted += forgotten.count;
            total = total.saturating_sub(forgotten.bytes);
        }
        Ok(())
    }

    /// Removes the files of `batch` (calls in progress excepted) and answers the entries
    /// whose file is gone now.
    fn remove_files(
        &self,
        store: &Store,
        batch: Vec<StoredRecording>,
        report: &mut RetentionReport,
    ) -> Result<Vec<StoredRecording>, StoreError> {
        let mut gone = Vec::with_capacity(batch.len());
        for rec in batch {
            if store.is_in_progress(&rec.id)? {
                report.skipped_in_progress += 1;
                continue;
            }
            match remove_file(store.recordings_dir(), &rec) {
                Removal::Removed(bytes) => report.bytes_freed += bytes,
                Removal::Gone => {}
                Removal::Kept => {
                    report.file_errors += 1;
                    continue;
                }
            }
            gone.push(rec);
        }
        Ok(gone)
    }
}

/// The smallest key after call `(start, id)`'s: where the next batch resumes.
fn after(start: u64, id: &str) -> Vec<u8> {
    let mut key = codec::call_key(start, id);
    key.push(0);
    key
}

/// Removes a finished recording's file. Only a plain `*.wav` name inside the recordings
/// folder is touched: never a `.part` (a call in progress) nor a path a damaged record
/// might name elsewhere.
fn remove_file(dir: &Path, rec: &StoredRecording) -> Removal {
    let name = Path::new(&rec.file);
    let plain = matches!(
        name.components().collect::<Vec<_>>().as_slice(),
        [Component::Normal(_)]
    );
    if !plain || !rec.file.ends_with(".wav") {
        tracing::warn!(id = %rec.id, file = %rec.file, "retention: a record names a recording file it will not delete");
        return Removal::Kept;
    }
    let path = dir.join(name);
    let bytes = match fs::symlink_metadata(&path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Removal::Gone,
        Err(_) => rec.bytes,
    };
    match fs::remove_file(&path) {
        Ok(()) => Removal::Removed(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Removal::Gone,
        Err(e) => {
            tracing::warn!(id = %rec.id, path = %path.display(), error = %e, "retention: cannot delete a recording");
            Removal::Kept
        }
    }
}

/// Where free space is read from: the store's filesystem, or a test's figure.
type FreeSpace = dyn Fn() -> io::Result<u64> + Send + Sync;

/// Watches the free space of the store's filesystem and says audio is off while it is
/// under `min_free`, open again once it is back over the resume level
/// (`min_free` plus a margin, see `RESUME_MARGIN_MIN`).
pub struct DiskWatch {
    min_free: u64,
    resume_at: u64,
    /// What the last check decided: audio may be written.
    audio_open: AtomicBool,
    free_space: Box<FreeSpace>,
    state: Mutex<WatchState>,
    retention: Arc<Counters>,
}

#[derive(Debug, Default)]
struct WatchState {
    free: u64,
    paused: bool,
    pauses: u64,
    checks: u64,
    check_errors: u64,
    /// The last check failed (logged once per run of failures).
    failing: bool,
}

/// The disk and retention figures for `/metrics`: all numbers, `audio_paused` 0 or 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DiskStats {
    /// Free bytes of the store's filesystem at the last check (for an unprivileged user).
    pub free_bytes: u64,
    pub min_free_bytes: u64,
    /// Free bytes at which audio resumes after a pause.
    pub resume_free_bytes: u64,
    /// 1 while audio is not written (below the floor), else 0.
    pub audio_paused: u64,
    /// Times audio was paused since start.
    pub pauses: u64,
    pub checks: u64,
    /// Checks that could not read the free space (audio then stays as it was).
    pub check_errors: u64,
    pub retention_sweeps: u64,
    pub retention_errors: u64,
    pub retention_records_deleted: u64,
    pub retention_recordings_deleted: u64,
    pub retention_bytes_freed: u64,
    pub retention_file_errors: u64,
    /// Recordings named by stored records, and their bytes, at the last sweep.
    pub recordings_count: u64,
    pub recordings_bytes: u64,
    /// How long the last sweep took.
    pub last_sweep_micros: u64,
}

impl DiskWatch {
    /// Watches the filesystem holding `store_dir` (the store's folder).
    pub fn new(config: &StoreConfig, store_dir: &Path, retention: &Retention) -> DiskWatch {
        let dir = store_dir.to_owned();
        DiskWatch::with_free_space(config, retention, move || fs2::available_space(&dir))
    }

    /// Reads free space from `free_space` (tests simulate a filling disk with it).
    pub fn with_free_space(
        config: &StoreConfig,
        retention: &Retention,
        free_space: impl Fn() -> io::Result<u64> + Send + Sync + 'static,
    ) -> DiskWatch {
        let min_free = config.min_free.bytes();
        let margin = (min_free.saturating_mul(RESUME_MARGIN_PERCENT) / 100).max(RESUME_MARGIN_MIN);
        DiskWatch {
            min_free,
            resume_at: min_free.saturating_add(margin),
            audio_open: AtomicBool::new(true),
            free_space: Box::new(free_space),
            state: Mutex::default(),
            retention: Arc::clone(&retention.counters),
        }
    }

    /// Whether audio may be written, as the last check found (on before any). Relaxed:
    /// the run loop seeing a change one poll late costs a poll of audio.
    pub fn audio_open(&self) -> bool {
        self.audio_open.load(Ordering::Relaxed)
    }

    /// Reads the free space and turns audio off or on; answers whether audio may be
    /// written. Logs once per change (a warning when audio stops, info when it resumes).
    /// When the free space cannot be read audio stays as it was (counted, logged
    /// once per run of failures).
    pub fn check(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.checks += 1;
        match (self.free_space)() {
            Ok(free) => {
                if s.failing {
                    s.failing = false;
                    tracing::info!("free space of the store's disk readable again");
                }
                s.free = free;
                if !s.paused && free < self.min_free {
                    s.paused = true;
                    s.pauses += 1;
                    tracing::warn!(
                        free_bytes = free,
                        min_free_bytes = self.min_free,
                        "the store's disk is below the free-space floor (min_free): audio \
                         is no longer recorded, call records still are"
                    );
                } else if s.paused && free >= self.resume_at {
                    s.paused = false;
                    tracing::info!(
                        free_bytes = free,
                        resume_free_bytes = self.resume_at,
                        "free space is back above the floor: recording audio again"
                    );
                }
            }
            Err(e) => {
                s.check_errors += 1;
                if !s.failing {
                    s.failing = true;
                    tracing::warn!(error = %e, "cannot read the free space of the store's disk");
                }
            }
        }
        self.audio_open.store(!s.paused, Ordering::Relaxed);
        !s.paused
    }

    pub fn stats(&self) -> DiskStats {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let r = &self.retention;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DiskStats {
            free_bytes: s.free,
            min_free_bytes: self.min_free,
            resume_free_bytes: self.resume_at,
            audio_paused: u64::from(s.paused),
            pauses: s.pauses,
            checks: s.checks,
            check_errors: s.check_errors,
            retention_sweeps: get(&r.sweeps),
            retention_errors: get(&r.sweep_errors),
            retention_records_deleted: get(&r.records_deleted),
            retention_recordings_deleted: get(&r.recordings_deleted),
            retention_bytes_freed: get(&r.bytes_freed),
            retention_file_errors: get(&r.file_errors),
            recordings_count: get(&r.recordings_count),
            recordings_bytes: get(&r.recordings_bytes),
            last_sweep_micros: get(&r.last_sweep_micros),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(file: &str) -> StoredRecording {
        StoredRecording {
            start_time: 1,
            id: "c-1".into(),
            file: file.into(),
            bytes: 10,
        }
    }

    #[test]
    fn only_a_plain_wav_in_the_folder_is_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let inner = dir.path().join("recordings");
        fs::create_dir(&inner).expect("folder");
        for name in ["a.wav", "a.wav.part", "notes.txt"] {
            fs::write(inner.join(name), b"12345").expect("file");
        }
        fs::write(dir.path().join("outside.wav"), b"1").expect("file");
        for kept in [
            "a.wav.part",
            "notes.txt",
            "../outside.wav",
            "/etc/hostname",
            "",
        ] {
            assert!(
                matches!(remove_file(&inner, &entry(kept)), Removal::Kept),
                "{kept}"
            );
        }
        assert!(matches!(
            remove_file(&inner, &entry("a.wav")),
            Removal::Removed(5)
        ));
        assert!(matches!(
            remove_file(&inner, &entry("a.wav")),
            Removal::Gone
        ));
        assert!(inner.join("a.wav.part").exists() && dir.path().join("outside.wav").exists());
    }

    #[test]
    fn a_batch_resumes_just_after_the_last_key() {
        let key = codec::call_key(7, "c-1");
        let next = after(7, "c-1");
        assert!(next.as_slice() > key.as_slice());
        // No other call sorts between the two: "c-1" followed by any byte is after.
        assert!(codec::call_key(7, "c-1\u{0}").as_slice() >= next.as_slice());
        assert!(codec::call_key(7, "c-10").as_slice() > next.as_slice());
    }
}
