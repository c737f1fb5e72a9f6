//! Ingest: the engine's call events into the store. Records go in batches (one flush
//! per batch) so replay is not bound by fsync; a batch is flushed before the replay
//! reports it stored, and at the end of input.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::base::SipTrace;
use crate::call::classify::Classifier;
use crate::call::correlate::Correlator;
use crate::call::{CallRecord, EndReason, Outcome, WhoHungUp};
use crate::capture::{Frame, Timestamp};
use crate::config::Config;
use crate::dialog::FinishedDialog;
use crate::engine::{Engine, EngineEvent, InProgress};
use crate::events::Event;
use crate::net::stats::Counters;
use crate::replay::FrameSink;
use crate::store::convert::ConvertQueue;
use crate::store::{DiscoveredOperator, Inserted, Store, StoreError};

/// Records held before a write: big enough that a flush is rare during a replay,
/// small enough that a crash loses little and memory stays flat.
const BATCH: usize = 256;

/// Call events held before a write, for the same reasons.
const EVENT_BATCH: usize = 4096;

/// Dialogs' SIP messages held before a write: a trace is up to 256 KiB, so this bounds
/// what waits in memory (most are a few KiB).
const TRACE_BATCH: usize = 256;

/// What an ingest did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IngestSummary {
    /// New records, by outcome.
    pub calls: BTreeMap<&'static str, u64>,
    /// New records the importer will see.
    pub exported: u64,
    /// Records already in the store (the same traffic ingested again).
    pub duplicates: u64,
    /// Partial records (finalised after a crash, or at a stop) replaced by the whole
    /// call: the same traffic ingested again completed them.
    pub completed: u64,
    pub operators_seen: u64,
    /// Call events added to the outbox (for webhooks), not counting those already in it.
    pub call_events: u64,
    /// Store errors, by message (the calls concerned are not stored).
    pub errors: Vec<String>,
}

impl IngestSummary {
    pub fn new_calls(&self) -> u64 {
        self.calls.values().sum()
    }
}

pub struct Ingest<'s> {
    pub engine: Engine,
    store: &'s Store,
    batch: Vec<CallRecord>,
    /// Call events, written to the outbox after the records of the same batch (so a
    /// `recording.ready` never goes out before its record can be read).
    call_events: Vec<Event>,
    /// Dialogs' SIP messages, by their record's id, written with the records.
    traces: Vec<(String, SipTrace)>,
    summary: IngestSummary,
    /// Written to the store since the last [`Ingest::sync`].
    unsynced: bool,
    /// Where stored recordings go to be encoded (the FLAC format), if anywhere.
    convert: Option<ConvertQueue>,
}

impl<'s> Ingest<'s> {
    pub fn new(engine: Engine, store: &'s Store) -> Self {
        let mut summary = IngestSummary::default();
        for o in Outcome::ALL {
            summary.calls.insert(o.as_str(), 0);
        }
        Ingest {
            engine,
            store,
            batch: Vec::with_capacity(BATCH),
            call_events: Vec::new(),
            traces: Vec::new(),
            summary,
            unsynced: false,
            convert: None,
        }
    }

    /// Stored recordings from now on are handed to `queue` (`[recording] format`).
    pub fn convert_with(&mut self, queue: ConvertQueue) {
        self.convert = Some(queue);
    }

    pub fn summary(&self) -> &IngestSummary {
        &self.summary
    }

    /// Advances capture time on a quiet line (live capture's timer), then stores what
    /// ended: a live feed cannot wait for a batch to fill before a call is served.
    pub fn tick(&mut self, now: Timestamp) {
        self.engine.tick(now);
        self.drain();
        self.write();
    }

    /// Live capture stops: open calls end as "shutdown" with the audio so far, and
    /// everything is written.
    pub fn shutdown(&mut self) {
        self.engine.shutdown();
        self.drain();
        self.write();
    }

    /// Makes what was stored durable now (live capture, after each poll): sled writes
    /// out on its own every 500 ms, and an insert followed at once by SIGKILL was lost
    /// 5 times out of 5 without a flush, so a call answered in that window could vanish.
    /// Costs one fsync per poll that stored anything (at most 10 a second).
    pub fn sync(&mut self) {
        self.write();
        if std::mem::take(&mut self.unsynced) {
            if let Err(e) = self.store.flush() {
                self.error(e);
            }
        }
    }

    fn drain(&mut self) {
        while let Some(event) = self.engine.poll() {
            match event {
                EngineEvent::Answered(progress) | EngineEvent::HungUp(progress) => {
                    let id = progress.record.id.clone();
                    if self.stored_whole(&id) {
                        // Seen again (a repeat replay): nothing to keep, and the stored
                        // recording must not be rewritten under a crash's threat.
                        self.engine.skip_recording(&id);
                        continue;
                    }
                    // Kept until the call's record is stored (which removes it), so a
                    // crash in between is finalised on restart.
                    let state = serde_json::to_vec(&*progress).unwrap_or_default();
                    if let Err(e) = self.store.put_in_progress(&id, &state) {
                        self.error(e);
                    }
                    self.unsynced = true;
                }
                EngineEvent::Call(record) => {
                    self.batch.push(*record);
                    if self.batch.len() >= BATCH {
                        self.write();
                    }
                }
                EngineEvent::SipMessages { id, trace } => {
                    self.traces.push((id, *trace));
                    if self.traces.len() >= TRACE_BATCH {
                        self.write();
                    }
                }
                EngineEvent::CallEvent(event) => {
                    self.call_events.push(*event);
                    if self.call_events.len() >= EVENT_BATCH {
                        self.write();
                    }
                }
                EngineEvent::Operator(op, seen) => {
                    self.summary.operators_seen += 1;
                    let secs = seen.unix_secs();
                    let sighting = DiscoveredOperator {
                        id: op.extension.clone(),
                        name: op.name.unwrap_or_default(),
                        extension: op.extension,
                        first_seen: secs,
                        last_seen: secs,
                    };
                    if let Err(e) = self.store.upsert_operator(&sighting) {
                        self.error(e);
                    }
                }
            }
        }
    }

    fn write(&mut self) {
        // Before the records: a record the console can show has its ladder already.
        if !self.traces.is_empty() {
            self.unsynced = true;
            if let Err(e) = self.store.put_sip_messages(&self.traces) {
                self.error(e);
            }
            self.traces.clear();
        }
        self.write_records();
        if !self.call_events.is_empty() {
            self.unsynced = true;
            if self.convert.is_some() {
                self.hold_recording_ready();
            }
            match self.store.enqueue_events(&self.call_events) {
                Ok(new) => self.summary.call_events += new as u64,
                Err(e) => self.error(e),
            }
            self.call_events.clear();
        }
    }

    /// With FLAC storage, `recording.ready` waits for the encoder (see
    /// [`Store::hold_event`]); the other events go on. Their records are stored already:
    /// a record always comes out of the engine before its `recording.ready`.
    fn hold_recording_ready(&mut self) {
        let events = std::mem::take(&mut self.call_events);
        for event in events {
            let id = event.data["id"].as_str().map(str::to_owned);
            match (event.kind, id) {
                (crate::events::EventKind::RecordingReady, Some(id)) => {
                    if let Err(e) = self.store.hold_event(&id, &event) {
                        self.error(e);
                    }
                }
                _ => self.call_events.push(event),
            }
        }
    }

    fn write_records(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        self.unsynced = true;
        match self.store.put_calls(&self.batch) {
            Ok(results) => {
                for (record, inserted) in self.batch.iter().zip(results) {
                    if let (Some(q), Some(rec), Inserted::New | Inserted::Completed) =
                        (&self.convert, &record.media.recording, inserted)
                    {
                        q.submit(&record.id, rec);
                    }
                    match inserted {
                        Inserted::New => {
                            *self
                                .summary
                                .calls
                                .entry(record.outcome.as_str())
                                .or_default() += 1;
                            if record.exported {
                                self.summary.exported += 1;
                            }
                        }
                        Inserted::Duplicate => self.summary.duplicates += 1,
                        Inserted::Completed => self.summary.completed += 1,
                    }
                }
            }
            Err(e) => self.error(e),
        }
        self.batch.clear();
    }

    /// Whether the store holds this call whole already. A store error counts as no
    /// (the call is recorded again; its record then meets the stored one as a duplicate).
    fn stored_whole(&mut self, id: &str) -> bool {
        match self.store.is_whole(id) {
            Ok(whole) => whole,
            Err(e) => {
                self.error(e);
                false
            }
        }
    }

    fn error(&mut self, e: StoreError) {
        let message = e.to_string();
        tracing::error!("store: {message}");
        // Bounded: a broken disk must not grow this list without end.
        if self.summary.errors.len() < 100 {
            self.summary.errors.push(message);
        }
    }
}

impl FrameSink for Ingest<'_> {
    fn begin_file(&mut self) {
        self.engine.new_source();
    }

    fn frame(&mut self, frame: &Frame<'_>) {
        self.engine.frame(frame);
        self.drain();
    }

    fn end_file(&mut self) {
        self.sync();
    }

    fn finish(&mut self) {
        self.engine.finish();
        self.drain();
        self.sync();
    }

    fn take_counters(&mut self) -> Counters {
        self.engine.take_packet_counters()
    }
}

/// What [`recover_interrupted`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Calls finalised from their in-progress state and the audio on disk.
    pub finalised: usize,
    /// In-progress calls already stored whole (a crash during a repeat replay): their
    /// stored record and recording were kept as they are.
    pub already_whole: usize,
    /// Partial recordings left by a crash with no call to belong to, removed.
    pub stray_parts: usize,
    /// Whole recordings of calls whose record and state a crash took before they were
    /// durable, removed (replaying the same traffic again brings them back whole).
    pub stray_recordings: usize,
}

/// Finalises the calls a crash (or SIGKILL) left in progress (DESIGN.md, "Nothing is
/// lost"). Each keeps the most audio the disk holds for it:
/// - a call already stored whole keeps its record and recording untouched (the crash
///   came during a repeat replay), and any partial file of it goes;
/// - otherwise the recording is the repaired `ID.wav.part` (the audio that reached the
///   disk), or `ID.wav` when the crash came after the recording was complete; an earlier
///   partial record of the call with more audio is kept instead;
/// - a call still talking ends where its audio ends, whoHungUp "system"; a call that had
///   hung up keeps its hang-up. The record is marked `recovered`, so the same traffic
///   replayed later replaces it with the whole call.
///
/// Partial files no call claims are removed last, so none is ever served or left.
pub fn recover_interrupted(store: &Store, config: &Config) -> Result<Recovery, StoreError> {
    let mut done = Recovery::default();
    let interrupted = store.begin_session()?;
    let dir = store.recordings_dir().to_path_buf();
    let io_err = |path: &std::path::Path, what| {
        let path = path.to_owned();
        move |source| StoreError::Io { path, what, source }
    };
    let mut finalised: Vec<(Option<FinishedDialog>, CallRecord)> = Vec::new();
    for (id, state) in store.in_progress()? {
        // A state saved with its dialog (today's), or a record alone (older stores).
        let (dialog, mut record) = match serde_json::from_slice::<InProgress>(&state) {
            Ok(p) => (Some(p.dialog), p.record),
            Err(_) => match serde_json::from_slice::<CallRecord>(&state) {
                Ok(record) => (None, record),
                Err(_) => {
                    tracing::warn!("in-progress state of {id} is unreadable; dropped");
                    store.remove_in_progress(&id)?;
                    continue;
                }
            },
        };
        let name = crate::media::file_name(&record.id);
        let part = dir.join(format!("{name}.wav.part"));
        let whole = dir.join(format!("{name}.wav"));
        if store.is_whole(&record.id)? {
            remove_if_present(&part).map_err(io_err(&part, "remove a partial recording"))?;
            store.remove_in_progress(&id)?;
            done.already_whole += 1;
            continue;
        }
        // Audio an earlier partial record of this call already holds.
        let kept_ms = store
            .get_call(&record.id)?
            .and_then(|old| old.media.recording)
            .map(|r| r.duration_ms);
        if part.exists() {
            let on_disk = crate::media::partial_duration_ms(&part).ok();
            if kept_ms.is_some_and(|kept| on_disk.is_none_or(|ms| ms < kept)) {
                // Replayed again and cut earlier than before: the earlier recovery stays.
                remove_if_present(&part).map_err(io_err(&part, "remove a partial recording"))?;
                store.remove_in_progress(&id)?;
                continue;
            }
            match crate::media::repair_partial(&part) {
                Ok(rec) => record.media.recording = Some(crate::engine::recording_file(&rec)),
                Err(e) => {
                    remove_if_present(&part)
                        .map_err(io_err(&part, "remove a partial recording"))?;
                    record.media.no_recording_reason = Some(format!(
                        "interrupted; the partial recording was unreadable: {e}"
                    ));
                }
            }
        } else if whole.exists() {
            match crate::media::describe_recording(&whole) {
                Ok(rec) => record.media.recording = Some(crate::engine::recording_file(&rec)),
                Err(e) => {
                    record.media.no_recording_reason =
                        Some(format!("interrupted; the recording was unreadable: {e}"));
                }
            }
        } else if record.media.no_recording_reason.is_none() {
            record.media.no_recording_reason = Some("interrupted before any audio".into());
        }
        // A state saved at the hang-up (its record lingered for late NOTIFYs when the
        // crash came) keeps who hung up, when and why; one saved at the answer ends
        // where the audio on disk ends, by the system.
        if record.end_reason == EndReason::EndOfCapture {
            let talk_ms = record.media.recording.as_ref().map_or(0, |r| r.duration_ms);
            let answer = record.answer_ns.unwrap_or(record.invite_ns);
            record.end_ns = answer + talk_ms * 1_000_000;
            record.end_time = record.end_ns / 1_000_000_000;
            record.duration = record.end_time.saturating_sub(record.start_time);
            record.who_hung_up = WhoHungUp::System;
            record.hung_up_by = None;
            record.end_reason = EndReason::Shutdown;
        }
        record.recovered = true;
        finalised.push((dialog, record));
    }
    done.finalised = finalised.len();
    let mut records = merge_recovered_legs(finalised, config);
    for record in &mut records {
        crate::engine::align_borrowed(&dir, record);
    }
    store.put_calls(&records)?;
    store.flush()?;
    // Partial files of no call in progress: a repeat replay's file of a call stored
    // whole, or a header written just before the crash took the call's state.
    let entries = std::fs::read_dir(&dir).map_err(io_err(&dir, "list the recordings folder"))?;
    for entry in entries {
        let entry = entry.map_err(io_err(&dir, "list the recordings folder"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // An encode a crash cut short too: the next encoder starts it again.
        let encode_part = crate::store::convert::ENCODED_EXTENSIONS
            .iter()
            .any(|ext| name.strip_suffix(".part").is_some_and(|n| n.ends_with(ext)));
        if name.ends_with(".wav.part") || encode_part {
            let path = entry.path();
            remove_if_present(&path).map_err(io_err(&path, "remove a partial recording"))?;
            done.stray_parts += 1;
        } else if interrupted && !is_named_by_a_record(store, &name)? {
            // Stores are made durable per poll or per file, not per call: a crash can
            // take a call's record and state while its recording is complete on disk.
            let path = entry.path();
            remove_if_present(&path).map_err(io_err(&path, "remove a recording"))?;
            done.stray_recordings += 1;
        }
    }
    Ok(done)
}

/// Whether file `name` in the recordings folder is the recording a stored record names.
/// Recordings are named by their record's id.
fn is_named_by_a_record(store: &Store, name: &str) -> Result<bool, StoreError> {
    let Some(id) = name.strip_suffix(".wav") else {
        return Ok(true);
    };
    let record = match store.get_call(id) {
        Ok(record) => record,
        // Kept: a record that does not decode is not proof the file is no one's.
        Err(
            StoreError::Corrupt { .. }
            | StoreError::InvalidRecord { .. }
            | StoreError::Dangling { .. },
        ) => return Ok(true),
        Err(e) => return Err(e),
    };
    Ok(record
        .and_then(|r| r.media.recording)
        .is_some_and(|r| r.file == name))
}

/// The legs of one B2BUA conversation, finalised one by one, merged into one record as
/// they would have been had calltap not stopped (the correlator's rules, on the facts
/// each leg had when the crash came). Legs saved without their dialog (an older store)
/// stay as they are.
fn merge_recovered_legs(
    legs: Vec<(Option<FinishedDialog>, CallRecord)>,
    config: &Config,
) -> Vec<CallRecord> {
    let classifier = Classifier::new(config);
    let mut correlator = Correlator::new(config);
    let mut out = Vec::new();
    let mut known = Vec::new();
    for (dialog, record) in legs {
        match dialog {
            Some(mut d) => {
                // The dialog's end as the record now has it (the audio's end for a
                // call that was still talking).
                d.end_time = Timestamp::from_nanos(record.end_ns);
                d.end_reason = record.end_reason;
                d.hung_up_by = record.hung_up_by;
                known.push((d, record));
            }
            None => out.push(record),
        }
    }
    // Every leg is seen up first, so the PBX guess (without `[network] pbx`) knows the
    // box before any leg is placed.
    for (d, _) in &known {
        if d.answer_time.is_some() {
            correlator.answered(d);
        }
    }
    for (d, record) in known {
        out.extend(correlator.ended(d, record));
    }
    out.extend(correlator.flush(&classifier));
    for r in &mut out {
        r.recovered = true;
    }
    out
}

fn remove_if_present(path: &std::path::Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
