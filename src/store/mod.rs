//! The store: call records in start-time order, an index by id, discovered operators and the state
//! of calls in progress in one sled database, and the recordings folder beside it.
//!
//! Layout of a store folder:
//! - `calltap.lock`: held (flock) while a `Store` is open, so a second calltap on the
//!   same folder stops at once with [`StoreError::Locked`];
//! - `db/`: sled, with the trees
//!   - `calls`: start time (u64 BE) ++ id -> [format, flags, outcome] ++ JSON record
//!     (see `codec`). The records themselves are kept in start-time order, so a window
//!     is one sequential range scan rather than an index scan plus one random read per
//!     call: on 100,000 calls, reading and decoding a 1,000-call day took 11.1 ms with
//!     an index and 6.8 ms this way (benches/store.rs), and the raw scan of a 10,000-call
//!     day in a 1,000,000-call store is 3 ms warm, 15 ms cold. Every outcome is kept
//!     here, not only exported calls: `calltap calls` lists them all, and the flags byte
//!     lets `POST /calls` skip the rest without decoding them. Retention (`keep_days`)
//!     can delete a prefix;
//!   - `by_id`: id -> start time (u64 BE): finds a call by id, and makes a repeated id a
//!     duplicate;
//!   - `operators`: id -> JSON [`DiscoveredOperator`];
//!   - `recordings`: start time (u64 BE) ++ id -> recording bytes (u64 BE) ++ file name,
//!     one entry per stored record that names a recording: retention finds the oldest
//!     recordings and their files without decoding records (100,000 recordings among
//!     1,000,000 calls), and the running total in `meta` saves walking the folder;
//!   - `in_progress`: id -> opaque bytes of the recording layer;
//!   - `sip_messages`: record id -> that dialog's SIP messages, bounded per call (see
//!     `sip_messages`), for the console's ladder and pcap download;
//!   - `events`, `event_ids`: the outbox of call events (see `outbox`);
//!   - `held_events`: record id -> a `recording.ready` event waiting for the recording's
//!     FLAC (see `outbox`);
//!   - `hook_cursor`, `hook_pending`, `hook_dead`, `hook_log`: webhook delivery state
//!     per endpoint (see `deliveries`);
//!   - `runs`, `runs_open`: integration runs and their steps (see `runs`);
//!   - `meta`: `schema_version` (u32 BE), the call counters (u64 BE) by outcome, and the
//!     recordings' count and total bytes;
//! - `recordings/`: WAV files, owned by the recording layer, and the FLAC files
//!   `convert` makes of them when the configured format is FLAC.
//!
//! Durability: a call is written in one sled transaction (record, id entry, counters,
//! and the removal of its in-progress state) and the database is flushed before
//! [`Store::put_call`] returns `New`, so a stored call survives a crash and a crash never
//! leaves a call half written. [`Store::put_calls`] does the same for a batch with one
//! flush, for replay. Other writes ride sled's own flush (every 500 ms) unless noted.

mod codec;
mod codecs;
pub mod convert;
pub mod deliveries;
mod error;
mod operators;
mod outbox;
pub mod retention;
pub mod runs;
mod sip_messages;

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

use crate::call::{CallRecord, Outcome, RecordingFile};

pub use error::StoreError;
pub use operators::DiscoveredOperator;

/// The layout this code reads and writes. Bump it when a tree changes meaning, and add
/// the migration from the previous version to [`Store::open`].
pub const SCHEMA_VERSION: u32 = 2;

/// sled's page cache. sled's default is 1 GiB, too greedy for an appliance that shares
/// the PBX's host; 256 MiB holds the id index of ten million calls plus weeks of records,
/// which is what the importer reads again and again.
const CACHE_BYTES: u64 = 256 * 1024 * 1024;

const SCHEMA_KEY: &[u8] = b"schema_version";
/// Present while a process writes the store; found at open, the last one crashed.
const SESSION_KEY: &[u8] = b"session_open";
const EXPORTED_COUNTER: &str = "count/exported";
const RECORDINGS_COUNTER: &str = "recordings/count";
const RECORDING_BYTES_COUNTER: &str = "recordings/bytes";

/// What [`Store::put_call`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// Stored, and flushed to disk.
    New,
    /// A call with this id was already stored; nothing changed.
    Duplicate,
    /// A partial record of this call (finalised after a crash, or at a stop) was
    /// replaced by this one, which holds more of it; flushed to disk.
    Completed,
}

/// Stored calls by outcome, from counters kept with every write (no scan).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallCounts {
    /// Indexed like [`Outcome::ALL`].
    pub by_outcome: [u64; Outcome::ALL.len()],
    /// Calls `POST /calls` may return.
    pub exported: u64,
}

impl CallCounts {
    pub fn get(&self, outcome: Outcome) -> u64 {
        self.by_outcome[codec::outcome_code(outcome) as usize]
    }

    pub fn total(&self) -> u64 {
        self.by_outcome.iter().sum()
    }
}

/// Recordings named by stored records, from counters kept with every write (no walk of
/// the folder). Recordings of calls in progress are not in it until their call is stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordingTotals {
    pub count: u64,
    pub bytes: u64,
}

/// One entry of the recordings index: a stored call's recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecording {
    /// The call's start time (Unix seconds) and id.
    pub start_time: u64,
    pub id: String,
    /// File name within the recordings folder, as the record names it.
    pub file: String,
    pub bytes: u64,
}

/// What [`Store::delete_calls`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Deleted {
    pub records: u64,
    pub recordings: u64,
    pub recording_bytes: u64,
}

/// An open store. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Store {
    // Field order is drop order: sled closes before the lock file is released.
    db: sled::Db,
    calls: sled::Tree,
    by_id: sled::Tree,
    operators: sled::Tree,
    recordings_index: sled::Tree,
    in_progress: sled::Tree,
    sip_messages: sled::Tree,
    meta: sled::Tree,
    events: sled::Tree,
    event_ids: sled::Tree,
    held_events: sled::Tree,
    hook_cursor: sled::Tree,
    hook_pending: sled::Tree,
    hook_dead: sled::Tree,
    hook_log: sled::Tree,
    runs: sled::Tree,
    runs_open: sled::Tree,
    /// Writes to the dead letters and the log, so trimming runs once in a while.
    hook_writes: AtomicU64,
    /// Bumped when events are enqueued or a delivery is asked for again: delivery
    /// tasks wait on it instead of polling the outbox.
    outbox_changed: tokio::sync::watch::Sender<u64>,
    corrupt: Arc<AtomicU64>,
    /// This process marked the store as being written (see [`Store::begin_session`]).
    in_session: std::sync::atomic::AtomicBool,
    root: PathBuf,
    recordings: PathBuf,
    _lock: File,
}

impl Store {
    /// Opens (or creates) the store in `dir`: `dir/db` for sled, `dir/recordings/`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let io_err = |path: &Path, what| {
            let path = path.to_owned();
            move |source| StoreError::Io { path, what, source }
        };
        fs::create_dir_all(dir).map_err(io_err(dir, "create the store folder"))?;
        let recordings = dir.join("recordings");
        fs::create_dir_all(&recordings)
            .map_err(io_err(&recordings, "create the recordings folder"))?;
        let lock = lock(dir)?;

        let db_path = dir.join("db");
        let db = open_sled(&db_path).map_err(|source| match source {
            // sled's own lock (another program on `db/` without our lock file).
            sled::Error::Io(e) if e.to_string().contains("could not acquire lock") => {
                StoreError::Locked {
                    path: dir.to_owned(),
                }
            }
            source => StoreError::Open {
                path: db_path.clone(),
                source,
            },
        })?;
        let tree = |name: &'static str| db.open_tree(name).map_err(StoreError::db(name));
        let store = Store {
            calls: tree("calls")?,
            by_id: tree("by_id")?,
            operators: tree("operators")?,
            recordings_index: tree("recordings")?,
            in_progress: tree("in_progress")?,
            sip_messages: tree("sip_messages")?,
            meta: tree("meta")?,
            events: tree("events")?,
            event_ids: tree("event_ids")?,
            held_events: tree("held_events")?,
            hook_cursor: tree("hook_cursor")?,
            hook_pending: tree("hook_pending")?,
            hook_dead: tree("hook_dead")?,
            hook_log: tree("hook_log")?,
            runs: tree("runs")?,
            runs_open: tree("runs_open")?,
            hook_writes: AtomicU64::new(1),
            outbox_changed: tokio::sync::watch::Sender::new(0),
            db,
            corrupt: Arc::new(AtomicU64::new(0)),
            in_session: std::sync::atomic::AtomicBool::new(false),
            root: dir.to_owned(),
            recordings,
            _lock: lock,
        };
        store.check_schema()?;
        Ok(store)
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let found = self.meta.get(SCHEMA_KEY).map_err(StoreError::db("meta"))?;
        match found {
            None => {
                // A new store (or one from before counters existed): count what is there.
                self.recount()?;
                self.index_recordings()?;
                self.meta
                    .insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())
                    .map_err(StoreError::db("meta"))?;
                self.flush()
            }
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt {
                        tree: "meta",
                        key: "schema_version".into(),
                        reason: format!("{} bytes where a u32 (4) was expected", v.len()),
                    })?;
                if found > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema {
                        path: self.root.clone(),
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                if found < 2 {
                    // Version 2 added the recordings index: built from the records once
                    // (decoding every record: 9.9 s for a million calls, benches/retention.rs).
                    self.index_recordings()?;
                    self.meta
                        .insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())
                        .map_err(StoreError::db("meta"))?;
                    self.flush()?;
                }
                Ok(())
            }
        }
    }

    /// Rebuilds the call counters from the records' headers (no record decoded).
    /// Used on a store without counters.
    fn recount(&self) -> Result<(), StoreError> {
        let mut counts = CallCounts::default();
        for item in self.calls.iter() {
            let (key, value) = item.map_err(StoreError::db("calls"))?;
            match codec::Entry::parse(&key, &value) {
                Ok(entry) => {
                    if let Some(n) = counts.by_outcome.get_mut(entry.outcome as usize) {
                        *n += 1;
                    }
                    counts.exported += u64::from(entry.exported);
                }
                Err(_) => {
                    self.corrupt.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        for (name, n) in counter_names()
            .zip(counts.by_outcome)
            .chain([(EXPORTED_COUNTER.to_owned(), counts.exported)])
        {
            self.meta
                .insert(name.as_bytes(), &n.to_be_bytes())
                .map_err(StoreError::db("meta"))?;
        }
        Ok(())
    }

    /// Rebuilds the recordings index and its counters from the records.
    fn index_recordings(&self) -> Result<(), StoreError> {
        self.recordings_index
            .clear()
            .map_err(StoreError::db("recordings"))?;
        let mut totals = RecordingTotals::default();
        for item in self.calls.iter() {
            let (key, value) = item.map_err(StoreError::db("calls"))?;
            let Ok(record) = codec::Entry::parse(&key, &value).and_then(|e| e.decode()) else {
                self.corrupt.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            if let Some(rec) = &record.media.recording {
                self.recordings_index
                    .insert(&key, codec::recording_value(rec.bytes, &rec.file))
                    .map_err(StoreError::db("recordings"))?;
                totals.count += 1;
                totals.bytes += rec.bytes;
            }
        }
        for (name, n) in [
            (RECORDINGS_COUNTER, totals.count),
            (RECORDING_BYTES_COUNTER, totals.bytes),
        ] {
            self.meta
                .insert(name.as_bytes(), &n.to_be_bytes())
                .map_err(StoreError::db("meta"))?;
        }
        Ok(())
    }

    /// Stores a finished call, unless a call with its id is already stored whole. Also
    /// drops the call's in-progress state. Flushed to disk before it returns `New` or
    /// `Completed`.
    pub fn put_call(&self, record: &CallRecord) -> Result<Inserted, StoreError> {
        let inserted = self.put_calls(std::slice::from_ref(record))?;
        if inserted[0] != Inserted::Duplicate {
            self.flush()?;
        }
        Ok(inserted[0])
    }

    /// [`put_call`](Store::put_call) for many calls, in one transaction: ingest's path.
    /// Answers one `Inserted` per record, in order; a repeated id within the batch is a
    /// `Duplicate` like any other. Durable with the caller's next
    /// [`flush`](Store::flush) (per poll live, per file in replay).
    ///
    /// A stored record of the same id is replaced only when it is partial
    /// ([`CallRecord::is_partial`]): a replay of the same traffic completes what a crash
    /// cut short, and nothing ever changes a whole record. A partial record is replaced
    /// by whatever comes, since whoever wrote the new one also wrote the file it names
    /// (crash recovery keeps the longer of two partial recordings before it gets here).
    pub fn put_calls(&self, records: &[CallRecord]) -> Result<Vec<Inserted>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        // Encoded before the transaction, which may run more than once on a conflict.
        let values = records
            .iter()
            .map(codec::encode_record)
            .collect::<Result<Vec<_>, _>>()?;
        let trees = (
            &self.calls,
            &self.by_id,
            &self.meta,
            &self.in_progress,
            &self.recordings_index,
        );
        let inserted = trees
            .transaction(|(calls, by_id, meta, in_progress, recordings)| {
                let mut inserted = Vec::with_capacity(records.len());
                let mut added = CallCounts::default();
                let mut removed = CallCounts::default();
                let mut recorded = RecordingTotals::default();
                let mut unrecorded = RecordingTotals::default();
                for (record, value) in records.iter().zip(&values) {
                    let id = record.id.as_bytes();
                    // Whatever happens to the record, the call is no longer in progress.
                    in_progress.remove(id)?;
                    let mut outcome = Inserted::New;
                    if let Some(start) = by_id.get(id)? {
                        let start = codec::u64_value("by_id", &record.id, &start)
                            .map_err(ConflictableTransactionError::Abort)?;
                        let old_key = codec::call_key(start, &record.id);
                        let Some(old) = calls.get(old_key.as_slice())? else {
                            inserted.push(Inserted::Duplicate);
                            continue;
                        };
                        let old = codec::Entry::parse(&old_key, &old)
                            .map_err(ConflictableTransactionError::Abort)?;
                        if !old.partial {
                            inserted.push(Inserted::Duplicate);
                            continue;
                        }
                        if let Some(n) = removed.by_outcome.get_mut(old.outcome as usize) {
                            *n += 1;
                        }
                        removed.exported += u64::from(old.exported);
                        calls.remove(old_key.as_slice())?;
                        if let Some(v) = recordings.remove(old_key.as_slice())? {
                            let (bytes, _) = codec::parse_recording_value(&record.id, &v)
                                .map_err(ConflictableTransactionError::Abort)?;
                            unrecorded.count += 1;
                            unrecorded.bytes += bytes;
                        }
                        outcome = Inserted::Completed;
                    }
                    by_id.insert(id, &record.start_time.to_be_bytes())?;
                    let key = codec::call_key(record.start_time, &record.id);
                    if let Some(rec) = &record.media.recording {
                        recordings
                            .insert(key.as_slice(), codec::recording_value(rec.bytes, &rec.file))?;
                        recorded.count += 1;
                        recorded.bytes += rec.bytes;
                    }
                    calls.insert(key, value.as_slice())?;
                    added.by_outcome[codec::outcome_code(record.outcome) as usize] += 1;
                    added.exported += u64::from(record.exported);
                    inserted.push(outcome);
                }
                let plus = counter_names().zip(added.by_outcome).chain([
                    (EXPORTED_COUNTER.to_owned(), added.exported),
                    (RECORDINGS_COUNTER.to_owned(), recorded.count),
                    (RECORDING_BYTES_COUNTER.to_owned(), recorded.bytes),
                ]);
                let minus = removed.by_outcome.into_iter().chain([
                    removed.exported,
                    unrecorded.count,
                    unrecorded.bytes,
                ]);
                for ((name, plus), minus) in plus.zip(minus) {
                    if plus != minus {
                        add_counter(meta, &name, plus, minus)?;
                    }
                }
                Ok(inserted)
            })
            .map_err(transaction_error)?;
        Ok(inserted)
    }

    /// Whether a stored call with this id is whole (not [`partial`](CallRecord::is_partial)):
    /// a replay seeing the call again has nothing to add to it. Reads the record's
    /// header, never the record.
    pub fn is_whole(&self, id: &str) -> Result<bool, StoreError> {
        let Some(start) = self
            .by_id
            .get(id.as_bytes())
            .map_err(StoreError::db("by_id"))?
        else {
            return Ok(false);
        };
        let key = codec::call_key(codec::u64_value("by_id", id, &start)?, id);
        match self.calls.get(&key).map_err(StoreError::db("calls"))? {
            Some(value) => Ok(!codec::Entry::parse(&key, &value)?.partial),
            None => Ok(false),
        }
    }

    /// The stored call with this id. A record that does not decode is an error (and
    /// counted in [`corrupt_seen`](Store::corrupt_seen)).
    pub fn get_call(&self, id: &str) -> Result<Option<CallRecord>, StoreError> {
        let start = self
            .by_id
            .get(id.as_bytes())
            .map_err(StoreError::db("by_id"))?;
        let Some(start) = start else {
            return Ok(None);
        };
        let read = || {
            let start = codec::u64_value("by_id", id, &start)?;
            let key = codec::call_key(start, id);
            match self.calls.get(&key).map_err(StoreError::db("calls"))? {
                Some(value) => codec::Entry::parse(&key, &value)?.decode(),
                None => Err(StoreError::Dangling { id: id.to_owned() }),
            }
        };
        read().map(Some).inspect_err(|e| {
            if !matches!(e, StoreError::Db { .. }) {
                self.corrupt.fetch_add(1, Ordering::Relaxed);
            }
        })
    }

    /// Exported calls whose start time lies in `[start, stop)` (Unix seconds), sorted by
    /// start time then id: what `POST /calls` serves. A record that fails to decode comes
    /// out as an `Err` for its id and the iteration goes on.
    pub fn calls_between(&self, start: u64, stop: u64) -> Calls {
        self.range(start, stop, true)
    }

    /// Every call (any outcome) whose start time lies in `[start, stop)`, in the same
    /// order: `calltap calls --since/--until`.
    pub fn all_calls_between(&self, start: u64, stop: u64) -> Calls {
        self.range(start, stop, false)
    }

    /// Every call (any outcome) whose start time lies in `[start, stop)`, newest first,
    /// from just before call `before` (a start time and id, as the last call of the
    /// previous page) when given: the console's History, a page at a time, each page
    /// a range scan however deep.
    pub fn all_calls_newest_first(
        &self,
        start: u64,
        stop: u64,
        before: Option<(u64, &str)>,
    ) -> Calls {
        let low = start.to_be_bytes().to_vec();
        let mut high = stop.max(start).to_be_bytes().to_vec();
        if let Some((at, id)) = before {
            let key = codec::call_key(at, id);
            if key < high {
                high = key;
            }
        }
        let high = high.max(low.clone());
        Calls {
            range: self.calls.range(low..high),
            exported_only: false,
            newest_first: true,
            corrupt: Arc::clone(&self.corrupt),
        }
    }

    /// Every stored call, any outcome, in start-time order: `calltap calls --all`.
    pub fn all_calls(&self) -> Calls {
        Calls {
            range: self.calls.iter(),
            exported_only: false,
            newest_first: false,
            corrupt: Arc::clone(&self.corrupt),
        }
    }

    fn range(&self, start: u64, stop: u64, exported_only: bool) -> Calls {
        // Keys are start time ++ id, so [start, stop) on the time is [start, stop) on the
        // 8-byte prefix: every key of second `stop - 1` sorts before `stop`'s.
        let stop = stop.max(start);
        Calls {
            range: self.calls.range(start.to_be_bytes()..stop.to_be_bytes()),
            exported_only,
            newest_first: false,
            corrupt: Arc::clone(&self.corrupt),
        }
    }

    /// Keys of the calls starting in `[from, stop)`, at most `limit`, in start-time order
    /// (`from` is a key, so a batch can resume just past the last key of the previous).
    pub(crate) fn call_keys(
        &self,
        from: &[u8],
        stop: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        let mut out = Vec::new();
        for item in self.calls.range(from..&stop.to_be_bytes()[..]).take(limit) {
            let (key, _) = item.map_err(StoreError::db("calls"))?;
            out.push(codec::split_key("calls", &key)?);
        }
        Ok(out)
    }

    /// Entries of the recordings index of calls starting in `[from, stop)` (`from` a
    /// key), at most `limit`, oldest first.
    pub(crate) fn recordings_between(
        &self,
        from: &[u8],
        stop: u64,
        limit: usize,
    ) -> Result<Vec<StoredRecording>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .recordings_index
            .range(from..&stop.to_be_bytes()[..])
            .take(limit)
        {
            let (key, value) = item.map_err(StoreError::db("recordings"))?;
            let (start_time, id) = codec::split_key("recordings", &key)?;
            let (bytes, file) = codec::parse_recording_value(&id, &value)?;
            out.push(StoredRecording {
                start_time,
                id,
                file,
                bytes,
            });
        }
        Ok(out)
    }

    /// The recordings index entry of the call `(start_time, id)`, if it names a recording.
    pub(crate) fn recording_of(
        &self,
        start_time: u64,
        id: &str,
    ) -> Result<Option<StoredRecording>, StoreError> {
        let key = codec::call_key(start_time, id);
        let Some(value) = self
            .recordings_index
            .get(&key)
            .map_err(StoreError::db("recordings"))?
        else {
            return Ok(None);
        };
        let (bytes, file) = codec::parse_recording_value(id, &value)?;
        Ok(Some(StoredRecording {
            start_time,
            id: id.to_owned(),
            file,
            bytes,
        }))
    }

    /// Whether a call with this id is in progress (its recording is still being written).
    pub(crate) fn is_in_progress(&self, id: &str) -> Result<bool, StoreError> {
        self.in_progress
            .contains_key(id.as_bytes())
            .map_err(StoreError::db("in_progress"))
    }

    /// Deletes the calls `(start_time, id)`: record, id entry, recordings index entry and
    /// counters, in one transaction. The recording files are the caller's to delete
    /// (first: see `retention`). A key no longer stored is skipped.
    pub(crate) fn delete_calls(&self, keys: &[(u64, String)]) -> Result<Deleted, StoreError> {
        let trees = (
            &self.calls,
            &self.by_id,
            &self.meta,
            &self.recordings_index,
            &self.sip_messages,
        );
        trees
            .transaction(|(calls, by_id, meta, recordings, sip_messages)| {
                let mut deleted = Deleted::default();
                let mut removed = CallCounts::default();
                for (start, id) in keys {
                    let key = codec::call_key(*start, id);
                    let Some(value) = calls.remove(key.as_slice())? else {
                        continue;
                    };
                    deleted.records += 1;
                    // A corrupt header still goes: its counters were never counted.
                    if let Ok(entry) = codec::Entry::parse(&key, &value) {
                        if let Some(n) = removed.by_outcome.get_mut(entry.outcome as usize) {
                            *n += 1;
                        }
                        removed.exported += u64::from(entry.exported);
                    }
                    // The id entry goes only if it names this call (a repeated id stays).
                    if by_id.get(id.as_bytes())?.as_deref() == Some(&start.to_be_bytes()[..]) {
                        by_id.remove(id.as_bytes())?;
                        sip_messages.remove(id.as_bytes())?;
                    }
                    if let Some(v) = recordings.remove(key.as_slice())? {
                        let (bytes, _) = codec::parse_recording_value(id, &v)
                            .map_err(ConflictableTransactionError::Abort)?;
                        deleted.recordings += 1;
                        deleted.recording_bytes += bytes;
                    }
                }
                let changes = counter_names().zip(removed.by_outcome).chain([
                    (EXPORTED_COUNTER.to_owned(), removed.exported),
                    (RECORDINGS_COUNTER.to_owned(), deleted.recordings),
                    (RECORDING_BYTES_COUNTER.to_owned(), deleted.recording_bytes),
                ]);
                for (name, n) in changes.filter(|&(_, n)| n > 0) {
                    add_counter(meta, &name, 0, n)?;
                }
                Ok(deleted)
            })
            .map_err(transaction_error)
    }

    /// Forgets the recordings of these calls: each record keeps everything but its
    /// recording, which is cleared with `reason` as its `no_recording_reason` (the API
    /// then answers 404 for it), and leaves the recordings index and totals. The files
    /// are the caller's to delete (first). Answers the recordings forgotten and their
    /// bytes.
    pub(crate) fn forget_recordings(
        &self,
        recordings: &[StoredRecording],
        reason: &str,
    ) -> Result<RecordingTotals, StoreError> {
        // Read and re-encoded before the transaction, which may run more than once.
        let mut updates = Vec::with_capacity(recordings.len());
        for r in recordings {
            let key = codec::call_key(r.start_time, &r.id);
            let Some(value) = self.calls.get(&key).map_err(StoreError::db("calls"))? else {
                updates.push((key, None));
                continue;
            };
            let mut record = codec::Entry::parse(&key, &value)?.decode()?;
            record.media.recording = None;
            record.media.no_recording_reason = Some(reason.to_owned());
            updates.push((key, Some(codec::encode_record(&record)?)));
        }
        let trees = (&self.calls, &self.meta, &self.recordings_index);
        trees
            .transaction(|(calls, meta, index)| {
                let mut forgotten = RecordingTotals::default();
                for (key, value) in &updates {
                    let Some(v) = index.remove(key.as_slice())? else {
                        continue;
                    };
                    let id = String::from_utf8_lossy(&key[8..]);
                    let (bytes, _) = codec::parse_recording_value(&id, &v)
                        .map_err(ConflictableTransactionError::Abort)?;
                    forgotten.count += 1;
                    forgotten.bytes += bytes;
                    if let Some(value) = value {
                        calls.insert(key.as_slice(), value.as_slice())?;
                    }
                }
                for (name, n) in [
                    (RECORDINGS_COUNTER, forgotten.count),
                    (RECORDING_BYTES_COUNTER, forgotten.bytes),
                ] {
                    if n > 0 {
                        add_counter(meta, name, 0, n)?;
                    }
                }
                Ok(forgotten)
            })
            .map_err(transaction_error)
    }

    /// Points the stored call `id` at another file for the same audio (a WAV encoded to
    /// FLAC): the record, the recordings index and the bytes total change together, and
    /// only if the record still names `old` as it was (retention, or a replay completing
    /// a partial record with a new file of the same name, may have moved on). Answers
    /// whether it did. A whole record changes here and nowhere else.
    pub fn replace_recording(
        &self,
        id: &str,
        old: &RecordingFile,
        new: &RecordingFile,
    ) -> Result<bool, StoreError> {
        let Some(start) = self
            .by_id
            .get(id.as_bytes())
            .map_err(StoreError::db("by_id"))?
        else {
            return Ok(false);
        };
        let key = codec::call_key(codec::u64_value("by_id", id, &start)?, id);
        let trees = (&self.calls, &self.meta, &self.recordings_index);
        trees
            .transaction(|(calls, meta, index)| {
                let Some(value) = calls.get(key.as_slice())? else {
                    return Ok(false);
                };
                let decoded = codec::Entry::parse(&key, &value).and_then(|e| e.decode());
                let mut record = decoded.map_err(ConflictableTransactionError::Abort)?;
                if record.media.recording.as_ref() != Some(old) {
                    return Ok(false);
                }
                let old_bytes = old.bytes;
                record.media.recording = Some(new.clone());
                let encoded =
                    codec::encode_record(&record).map_err(ConflictableTransactionError::Abort)?;
                calls.insert(key.as_slice(), encoded)?;
                if index.get(key.as_slice())?.is_some() {
                    index.insert(key.as_slice(), codec::recording_value(new.bytes, &new.file))?;
                    add_counter(meta, RECORDING_BYTES_COUNTER, new.bytes, old_bytes)?;
                }
                Ok(true)
            })
            .map_err(transaction_error)
    }

    /// Every (id, file name) the recordings index holds: what the FLAC encoder checks at
    /// start for WAVs still to encode. One sequential scan, no record decoded.
    pub fn recording_files(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut out = Vec::new();
        for item in self.recordings_index.iter() {
            let (key, value) = item.map_err(StoreError::db("recordings"))?;
            let (_, id) = codec::split_key("recordings", &key)?;
            let (_, file) = codec::parse_recording_value(&id, &value)?;
            out.push((id, file));
        }
        Ok(out)
    }

    /// Recordings named by stored records, and their bytes (counters, no walk).
    pub fn recordings_totals(&self) -> Result<RecordingTotals, StoreError> {
        Ok(RecordingTotals {
            count: self.counter(RECORDINGS_COUNTER)?,
            bytes: self.counter(RECORDING_BYTES_COUNTER)?,
        })
    }

    fn counter(&self, name: &str) -> Result<u64, StoreError> {
        match self
            .meta
            .get(name.as_bytes())
            .map_err(StoreError::db("meta"))?
        {
            Some(v) => codec::u64_value("meta", name, &v),
            None => Ok(0),
        }
    }

    /// Number of stored calls, any outcome.
    pub fn count_calls(&self) -> Result<u64, StoreError> {
        Ok(self.counts()?.total())
    }

    /// Stored calls by outcome, and how many are exported.
    pub fn counts(&self) -> Result<CallCounts, StoreError> {
        let read = |name: &str| self.counter(name);
        let mut counts = CallCounts::default();
        for (slot, name) in counts.by_outcome.iter_mut().zip(counter_names()) {
            *slot = read(&name)?;
        }
        counts.exported = read(EXPORTED_COUNTER)?;
        Ok(counts)
    }

    /// Records a sighting of an operator found in traffic (`first_seen` and `last_seen`
    /// the time of the sighting) and answers what is stored now. The first name stays
    /// unless the new one is better: a display name beats a bare extension. Not flushed:
    /// operators are rediscovered from the next call or REGISTER.
    pub fn upsert_operator(
        &self,
        seen: &DiscoveredOperator,
    ) -> Result<DiscoveredOperator, StoreError> {
        let key = seen.id.as_bytes();
        let err = StoreError::db("operators");
        let mut current = self.operators.get(key).map_err(err)?;
        loop {
            let stored = current
                .as_ref()
                .and_then(|v| match serde_json::from_slice(v) {
                    Ok(op) => Some(op),
                    Err(_) => {
                        // Overwritten by this sighting: the tree heals itself.
                        self.corrupt.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                });
            let merged = operators::merge(stored, seen.clone());
            let value = serde_json::to_vec(&merged).map_err(|e| StoreError::InvalidRecord {
                id: seen.id.clone(),
                reason: e.to_string(),
            })?;
            if current.as_deref() == Some(value.as_slice()) {
                return Ok(merged);
            }
            match self
                .operators
                .compare_and_swap(key, current, Some(value))
                .map_err(StoreError::db("operators"))?
            {
                Ok(()) => return Ok(merged),
                Err(conflict) => current = conflict.current,
            }
        }
    }

    /// The discovered operators, sorted by id. An entry that does not decode is skipped
    /// and counted.
    pub fn operators(&self) -> Result<Vec<DiscoveredOperator>, StoreError> {
        let mut out = Vec::new();
        for item in self.operators.iter() {
            let (key, value) = item.map_err(StoreError::db("operators"))?;
            match serde_json::from_slice::<DiscoveredOperator>(&value) {
                Ok(op) => out.push(op),
                Err(e) => {
                    self.corrupt.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        id = %String::from_utf8_lossy(&key),
                        error = %e,
                        "skipping a corrupt discovered operator"
                    );
                }
            }
        }
        Ok(out)
    }

    /// Marks the store as being written by this process until it is dropped, and
    /// answers whether the last process that did so ended without dropping it (a crash,
    /// a SIGKILL, a power cut): then what it wrote last may not all be durable.
    pub fn begin_session(&self) -> Result<bool, StoreError> {
        let interrupted = self
            .meta
            .contains_key(SESSION_KEY)
            .map_err(StoreError::db("meta"))?;
        self.meta
            .insert(SESSION_KEY, &[1u8])
            .map_err(StoreError::db("meta"))?;
        self.flush()?;
        self.in_session.store(true, Ordering::Relaxed);
        Ok(interrupted)
    }

    /// Saves the state of a call in progress (replacing any earlier state for `id`), so
    /// that after a crash [`in_progress`](Store::in_progress) returns it. Durable with the
    /// next [`flush`](Store::flush), which the caller paces (per poll live, per file in
    /// replay): a flush per call cost replay 6,500 fsyncs and 100,000 futex wake-ups
    /// for 3,200 calls.
    pub fn put_in_progress(&self, id: &str, state: &[u8]) -> Result<(), StoreError> {
        self.in_progress
            .insert(id.as_bytes(), state)
            .map_err(StoreError::db("in_progress"))?;
        Ok(())
    }

    /// Drops a call's in-progress state. Not flushed: if a crash brings it back, the
    /// call is finalised again and its record is a `Duplicate`. (`put_call` drops the
    /// state itself, in the same transaction as the record.)
    pub fn remove_in_progress(&self, id: &str) -> Result<(), StoreError> {
        self.in_progress
            .remove(id.as_bytes())
            .map(drop)
            .map_err(StoreError::db("in_progress"))
    }

    /// Every call in progress with its state, sorted by id: what a restart finalises.
    pub fn in_progress(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.in_progress
            .iter()
            .map(|item| {
                let (key, value) = item.map_err(StoreError::db("in_progress"))?;
                Ok((String::from_utf8_lossy(&key).into_owned(), value.to_vec()))
            })
            .collect()
    }

    /// The store folder this was opened on.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Where recordings live: `recordings/` in the store folder.
    pub fn recordings_dir(&self) -> &Path {
        &self.recordings
    }

    /// Bytes the database takes on disk (recordings not included).
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db.size_on_disk().map_err(StoreError::db("(database)"))
    }

    /// Bytes the files in the recordings folder take (one level: the folder is flat).
    pub fn recordings_size(&self) -> Result<u64, StoreError> {
        let err = |source| StoreError::Io {
            path: self.recordings.clone(),
            what: "list the recordings folder",
            source,
        };
        let mut total = 0;
        for entry in fs::read_dir(&self.recordings).map_err(err)? {
            let meta = entry.and_then(|e| e.metadata()).map_err(err)?;
            if meta.is_file() {
                total += meta.len();
            }
        }
        Ok(total)
    }

    /// Values that failed to decode since the store was opened (calls, id entries,
    /// operators): a figure for `/metrics`, each one also returned or logged as an error.
    pub fn corrupt_seen(&self) -> u64 {
        self.corrupt.load(Ordering::Relaxed)
    }

    fn count_corrupt(&self) {
        self.corrupt.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes everything to disk now.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db
            .flush()
            .map(drop)
            .map_err(StoreError::db("(database)"))
    }
}

/// Adds `plus` to and takes `minus` from a counter in `meta`, within a transaction. A
/// counter never goes below zero (a count rebuilt after damage may be short).
impl Drop for Store {
    /// A clean end: the session mark goes, with everything written before it.
    fn drop(&mut self) {
        if self.in_session.load(Ordering::Relaxed) {
            let cleared = self.meta.remove(SESSION_KEY).is_ok();
            if let Err(e) = self.db.flush() {
                tracing::error!("store: last flush failed: {e}");
            } else if !cleared {
                tracing::error!("store: the session mark could not be cleared");
            }
        }
    }
}

fn add_counter(
    meta: &sled::transaction::TransactionalTree,
    name: &str,
    plus: u64,
    minus: u64,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    let old = match meta.get(name.as_bytes())? {
        Some(v) => {
            codec::u64_value("meta", name, &v).map_err(ConflictableTransactionError::Abort)?
        }
        None => 0,
    };
    let new = old.saturating_add(plus).saturating_sub(minus);
    meta.insert(name.as_bytes(), &new.to_be_bytes())?;
    Ok(())
}

fn transaction_error(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(source) => StoreError::Db {
            tree: "calls",
            source,
        },
    }
}

fn counter_names() -> impl Iterator<Item = String> {
    Outcome::ALL
        .into_iter()
        .map(|o| format!("count/{}", o.as_str()))
}

/// Takes `dir/calltap.lock` (an advisory flock, released by the kernel when the
/// process dies, so a crash never leaves a stale lock).
fn lock(dir: &Path) -> Result<File, StoreError> {
    use fs2::FileExt;
    let path = dir.join("calltap.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StoreError::Io {
            path: path.clone(),
            what: "open the lock file",
            source,
        })?;
    match file.try_lock_exclusive() {
        Ok(()) => Ok(file),
        Err(e)
            if e.kind() == io::ErrorKind::WouldBlock
                || e.raw_os_error() == fs2::lock_contended_error().raw_os_error() =>
        {
            Err(StoreError::Locked {
                path: dir.to_owned(),
            })
        }
        Err(source) => Err(StoreError::Io {
            path,
            what: "lock the store",
            source,
        }),
    }
}

/// Calls read in start-time order (from [`Store::calls_between`] and friends). Owns what
/// it reads from, so it can move into a blocking task.
pub struct Calls {
    range: sled::Iter,
    exported_only: bool,
    newest_first: bool,
    corrupt: Arc<AtomicU64>,
}

impl Iterator for Calls {
    type Item = Result<CallRecord, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let next = if self.newest_first {
                self.range.next_back()
            } else {
                self.range.next()
            };
            let (key, value) = match next? {
                Ok(kv) => kv,
                Err(source) => {
                    return Some(Err(StoreError::Db {
                        tree: "calls",
                        source,
                    }))
                }
            };
            let record = codec::Entry::parse(&key, &value).and_then(|entry| {
                if self.exported_only && !entry.exported {
                    Ok(None)
                } else {
                    entry.decode().map(Some)
                }
            });
            match record {
                Ok(None) => continue,
                Ok(Some(record)) => return Some(Ok(record)),
                Err(e) => {
                    self.corrupt.fetch_add(1, Ordering::Relaxed);
                    return Some(Err(e));
                }
            }
        }
    }
}

/// How long sled's own lock may stay held once our lock file is ours: a store dropped
/// in this process releases the lock only when sled's flusher thread next wakes (every
/// 500 ms by default), seen as a failed reopen right after a drop under load.
const SLED_LOCK_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Opens sled, waiting out a closing predecessor: with `calltap.lock` held, whoever
/// still holds sled's lock is a store of this process on its way out.
fn open_sled(db_path: &Path) -> sled::Result<sled::Db> {
    let started = std::time::Instant::now();
    loop {
        match sled::Config::new()
            .path(db_path)
            .cache_capacity(CACHE_BYTES)
            .open()
        {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && started.elapsed() < SLED_LOCK_GRACE =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            result => return result,
        }
    }
}
