//! Retention and the free-space floor: calls at known start times with real WAVs, swept
//! by `keep_days`, `recordings_keep_days` and `max_disk` (the exact set that goes, what
//! the store and the API answer afterwards, calls in progress untouched); a simulated
//! disk falling below `min_free` during a replay (records kept, audio stopped, resumed
//! above the floor, one log line per change); and a real full disk (a tiny tmpfs).

#[path = "support/skip.rs"]
mod skip;
#[path = "support/tinydisk.rs"]
mod tinydisk;

use tinydisk::TinyDisk;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use calltap::api::{self, AppState};
use calltap::call::record::RecordingFile;
use calltap::call::{CallRecord, EndReason, Outcome, WhoHungUp};
use calltap::capture::file::CaptureReader;
use calltap::config::{ByteSize, Config, StoreConfig};
use calltap::engine::Engine;
use calltap::ingest::Ingest;
use calltap::media::GATE_CLOSED_REASON;
use calltap::replay::{replay_files, FrameSink};
use calltap::store::retention::{DiskWatch, Retention, RetentionReport};
use calltap::store::{RecordingTotals, Store};
use tower::ServiceExt;

const DAY: u64 = 86_400;
/// "Now" of every sweep: 2024-03-31 00:00:00 UTC.
const NOW: u64 = 1_711_843_200;
const KEY: &str = "retention-test-key-0123456789";

// ---------------------------------------------------------------- fixtures

/// A stereo 8 kHz WAV of `frames` frames; answers its size.
fn write_wav(path: &Path, frames: u32) -> u64 {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create a WAV");
    for i in 0..frames as i32 {
        w.write_sample(((i * 37) % 2000 - 1000) as i16)
            .expect("write");
        w.write_sample(((i * 91) % 3000 - 1500) as i16)
            .expect("write");
    }
    w.finalize().expect("finalize");
    std::fs::metadata(path).expect("the WAV").len()
}

#[path = "support/records.rs"]
mod records;

/// An answered, exported call starting `days_ago` before `NOW`.
fn call(id: &str, days_ago: f64) -> CallRecord {
    records::answered_call(id, NOW - (days_ago * DAY as f64) as u64)
}

/// `call` with a real WAV of `frames` frames in the store's folder.
fn recorded(store: &Store, id: &str, days_ago: f64, frames: u32) -> CallRecord {
    let mut c = call(id, days_ago);
    let file = format!("{id}.wav");
    let bytes = write_wav(&store.recordings_dir().join(&file), frames);
    c.media.recording = Some(RecordingFile {
        file,
        bytes,
        sample_rate: 8000,
        duration_ms: u64::from(frames) / 8,
    });
    c
}

fn missed(id: &str, days_ago: f64) -> CallRecord {
    CallRecord {
        outcome: Outcome::Missed,
        exported: false,
        answer_ns: None,
        duration: 0,
        who_hung_up: WhoHungUp::System,
        end_reason: EndReason::NotAnswered,
        ..call(id, days_ago)
    }
}

fn store_config(text: &str) -> StoreConfig {
    Config::from_toml(&format!("[store]\n{text}"), "tests/retention.rs")
        .expect("a valid [store]")
        .store
}

/// Files in the recordings folder, sorted.
fn files(store: &Store) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(store.recordings_dir())
        .expect("the recordings folder")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

fn all_ids(store: &Store) -> Vec<String> {
    store
        .all_calls()
        .map(|c| c.expect("a readable call").id)
        .collect()
}

fn size(store: &Store, name: &str) -> u64 {
    std::fs::metadata(store.recordings_dir().join(name))
        .expect("the file")
        .len()
}

/// The API's answer to `GET /calls/{id}/recording`: status and JSON body.
async fn recording_endpoint(store: Arc<Store>, id: &str) -> (StatusCode, serde_json::Value) {
    let config = Config::from_toml(
        &format!("[api]\nsecret_keys = [\"{KEY}\"]\nlink_keys = [\"link-key-0123456789\"]"),
        "tests/retention.rs",
    )
    .expect("a valid configuration");
    let state = AppState::new(config, store).expect("the API state");
    let response = api::router(state)
        .oneshot(
            Request::get(format!("/calls/{id}/recording"))
                .header("X-Secret-Key", KEY)
                .body(Body::empty())
                .expect("a request"),
        )
        .await
        .expect("an answer");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("the body");
    (
        status,
        serde_json::from_slice(&body).expect("a JSON answer"),
    )
}

// ---------------------------------------------------------------- keep_days

#[tokio::test]
async fn keep_days_deletes_old_records_with_their_recordings_and_keeps_the_rest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(Store::open(dir.path()).expect("store"));
    let calls = vec![
        recorded(&store, "c-40d", 40.0, 8000),
        missed("c-35d-missed", 35.0),
        recorded(&store, "c-31d", 30.01, 4000),
        recorded(&store, "c-29d", 29.99, 2000),
        call("c-10d-none", 10.0),
        recorded(&store, "c-1d", 1.0, 1000),
    ];
    store.put_calls(&calls).expect("stored");
    let old_bytes = size(&store, "c-40d.wav") + size(&store, "c-31d.wav");
    let all_bytes = old_bytes + size(&store, "c-29d.wav") + size(&store, "c-1d.wav");
    assert_eq!(
        store.recordings_totals().expect("totals"),
        RecordingTotals {
            count: 4,
            bytes: all_bytes
        }
    );

    let retention = Retention::new(&store_config("keep_days = 30"));
    let report = retention.sweep(&store, NOW).expect("sweep");
    assert_eq!(
        report,
        RetentionReport {
            records_deleted: 3,
            recordings_deleted: 2,
            bytes_freed: old_bytes,
            recordings_count: 2,
            recordings_bytes: all_bytes - old_bytes,
            skipped_in_progress: 0,
            file_errors: 0,
        }
    );
    assert_eq!(all_ids(&store), ["c-29d", "c-10d-none", "c-1d"]);
    assert_eq!(files(&store), ["c-1d.wav", "c-29d.wav"]);
    for gone in ["c-40d", "c-35d-missed", "c-31d"] {
        assert!(store.get_call(gone).expect("readable").is_none(), "{gone}");
    }
    // The counters follow: 3 left, all answered and exported.
    let counts = store.counts().expect("counts");
    assert_eq!((counts.total(), counts.exported), (3, 3));
    assert_eq!(counts.get(Outcome::Missed), 0);
    // The API no longer knows the deleted call; the kept one still has its recording.
    let (status, body) = recording_endpoint(Arc::clone(&store), "c-40d").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["status"], "error");
    let (status, _) = recording_endpoint(Arc::clone(&store), "c-29d").await;
    assert_eq!(status, StatusCode::OK);
    let window: Vec<String> = store
        .calls_between(0, u64::MAX)
        .map(|c| c.expect("readable").id)
        .collect();
    assert_eq!(window, ["c-29d", "c-10d-none", "c-1d"]);

    // Nothing more to do at the same time; a day later the 29-day call goes too.
    let again = retention.sweep(&store, NOW).expect("sweep");
    assert_eq!((again.records_deleted, again.recordings_deleted), (0, 0));
    let later = retention.sweep(&store, NOW + DAY).expect("sweep");
    assert_eq!((later.records_deleted, later.recordings_deleted), (1, 1));
    assert_eq!(all_ids(&store), ["c-10d-none", "c-1d"]);
}

// ---------------------------------------------------------------- recordings_keep_days

#[tokio::test]
async fn recordings_keep_days_deletes_wavs_and_keeps_records_which_then_answer_404() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(Store::open(dir.path()).expect("store"));
    store
        .put_calls(&[
            recorded(&store, "c-20d", 20.0, 8000),
            recorded(&store, "c-8d", 8.0, 4000),
            recorded(&store, "c-6d", 6.0, 2000),
        ])
        .expect("stored");
    let freed = size(&store, "c-20d.wav") + size(&store, "c-8d.wav");
    let (status, _) = recording_endpoint(Arc::clone(&store), "c-8d").await;
    assert_eq!(status, StatusCode::OK, "before the sweep");

    let retention = Retention::new(&store_config("recordings_keep_days = 7"));
    let report = retention.sweep(&store, NOW).expect("sweep");
    assert_eq!(report.records_deleted, 0);
    assert_eq!(report.recordings_deleted, 2);
    assert_eq!(report.bytes_freed, freed);
    assert_eq!(report.recordings_count, 1);
    assert_eq!(files(&store), ["c-6d.wav"]);
    assert_eq!(all_ids(&store), ["c-20d", "c-8d", "c-6d"]);

    for id in ["c-20d", "c-8d"] {
        let record = store.get_call(id).expect("readable").expect("kept");
        assert!(record.media.recording.is_none(), "{id}");
        assert_eq!(
            record.media.no_recording_reason.as_deref(),
            Some("deleted after 7 days (recordings_keep_days)")
        );
        // Still a call the importer sees, without a recording to offer.
        assert!(record.exported);
        let contract = record.to_contract();
        assert!(!contract.to_string().contains(".wav"), "{contract}");
        let (status, body) = recording_endpoint(Arc::clone(&store), id).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(body["status"], "error");
        let message = body["message"].as_str().expect("a message");
        assert!(message.contains("recordings_keep_days"), "{message}");
    }
    let (status, body) = recording_endpoint(Arc::clone(&store), "c-6d").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["filename"], "call_recording_c-6d.wav");
}

// ---------------------------------------------------------------- max_disk

#[test]
fn max_disk_deletes_the_oldest_recordings_first_until_under_the_cap() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    // Stored out of order: the oldest goes first by call start time, not by insertion.
    // Each WAV is 44 + 4 x frames bytes.
    let calls = [
        recorded(&store, "c-d", 2.0, 4000),  // 16,044
        recorded(&store, "c-a", 5.0, 2000),  //  8,044
        recorded(&store, "c-e", 1.0, 1000),  //  4,044
        recorded(&store, "c-b", 4.0, 3000),  // 12,044
        recorded(&store, "c-c", 3.0, 10000), // 40,044
        call("c-none", 6.0),
    ];
    store.put_calls(&calls).expect("stored");
    assert_eq!(store.recordings_totals().expect("totals").bytes, 80_220);

    // 60,000: without a (8,044) and b (12,044) 60,132 is still over; without c too it
    // is 20,088. d and e stay, although deleting only c would have been enough.
    let retention = Retention::new(&store_config("max_disk = 60000"));
    let report = retention.sweep(&store, NOW).expect("sweep");
    assert_eq!(report.recordings_deleted, 3);
    assert_eq!(report.bytes_freed, 8_044 + 12_044 + 40_044);
    assert_eq!(report.recordings_bytes, 20_088);
    assert_eq!(files(&store), ["c-d.wav", "c-e.wav"]);
    assert_eq!(report.records_deleted, 0);
    assert_eq!(store.count_calls().expect("count"), 6);
    for id in ["c-a", "c-b", "c-c"] {
        let record = store.get_call(id).expect("readable").expect("kept");
        assert!(record.media.recording.is_none());
        assert_eq!(
            record.media.no_recording_reason.as_deref(),
            Some("deleted, oldest first, to keep recordings under max_disk (60kB)")
        );
    }
    // Under the cap: a new sweep deletes nothing; a new call over it deletes d only.
    assert_eq!(
        retention
            .sweep(&store, NOW)
            .expect("sweep")
            .recordings_deleted,
        0
    );
    store
        .put_call(&recorded(&store, "c-f", 0.5, 10_000))
        .expect("stored");
    let report = retention.sweep(&store, NOW).expect("sweep");
    assert_eq!(report.recordings_deleted, 1);
    assert_eq!(files(&store), ["c-e.wav", "c-f.wav"]);
    assert_eq!(report.recordings_bytes, 4_044 + 40_044);
}

// ---------------------------------------------------------------- in progress

#[test]
fn a_call_in_progress_is_never_deleted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    store
        .put_calls(&[
            recorded(&store, "c-old", 50.0, 1000),
            recorded(&store, "c-again", 49.0, 1000),
        ])
        .expect("stored");
    // A recording being written (no record names it), and a stored call whose id is in
    // progress again (the same traffic ingested a second time).
    let part = store.recordings_dir().join("c-live.wav.part");
    std::fs::write(&part, b"RIFF....WAVE").expect("a part file");
    store.put_in_progress("c-live", b"{}").expect("in progress");
    store
        .put_in_progress("c-again", b"{}")
        .expect("in progress");

    let retention = Retention::new(&store_config(
        "keep_days = 1\nrecordings_keep_days = 1\nmax_disk = 1",
    ));
    let report = retention.sweep(&store, NOW).expect("sweep");
    assert_eq!(report.records_deleted, 1);
    assert_eq!(report.skipped_in_progress, 1 + 1 + 1, "one per rule");
    assert_eq!(all_ids(&store), ["c-again"]);
    assert_eq!(files(&store), ["c-again.wav", "c-live.wav.part"]);
    assert!(store
        .get_call("c-again")
        .expect("readable")
        .expect("kept")
        .media
        .recording
        .is_some());
}

#[test]
fn a_record_naming_something_else_than_a_plain_wav_is_left_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    let outside = dir.path().join("precious.wav");
    write_wav(&outside, 10);
    let mut escaping = call("c-escape", 10.0);
    escaping.media.recording = Some(RecordingFile {
        file: "../precious.wav".into(),
        bytes: 84,
        sample_rate: 8000,
        duration_ms: 1,
    });
    let mut part = call("c-part", 10.0);
    std::fs::write(store.recordings_dir().join("c-part.wav.part"), b"x").expect("part");
    part.media.recording = Some(RecordingFile {
        file: "c-part.wav.part".into(),
        bytes: 1,
        sample_rate: 8000,
        duration_ms: 1,
    });
    store.put_calls(&[escaping, part]).expect("stored");
    let retention = Retention::new(&store_config("recordings_keep_days = 1"));
    let report = retention.sweep(&store, NOW).expect("sweep");
    assert_eq!(report.file_errors, 2);
    assert_eq!(report.recordings_deleted, 0);
    assert!(outside.exists());
    assert_eq!(files(&store), ["c-part.wav.part"]);
}

// ---------------------------------------------------------------- upgrade

#[test]
fn a_store_from_before_the_recordings_index_gets_it_on_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (bytes_a, bytes_b);
    {
        let store = Store::open(dir.path()).expect("store");
        let (a, b) = (
            recorded(&store, "c-a", 3.0, 100),
            recorded(&store, "c-b", 2.0, 200),
        );
        bytes_a = a.media.recording.as_ref().map(|r| r.bytes).unwrap_or(0);
        bytes_b = b.media.recording.as_ref().map(|r| r.bytes).unwrap_or(0);
        store
            .put_calls(&[a, b, call("c-none", 1.0)])
            .expect("stored");
    }
    {
        // What schema version 1 left: no index, no recording counters.
        let db = raw_sled(&dir.path().join("db")).expect("sled");
        db.drop_tree("recordings").expect("drop the index");
        let meta = db.open_tree("meta").expect("meta");
        meta.remove("recordings/count").expect("remove");
        meta.remove("recordings/bytes").expect("remove");
        meta.insert("schema_version", &1u32.to_be_bytes())
            .expect("version 1");
        db.flush().expect("flush");
    }
    let store = Store::open(dir.path()).expect("the store opens and migrates");
    assert_eq!(
        store.recordings_totals().expect("totals"),
        RecordingTotals {
            count: 2,
            bytes: bytes_a + bytes_b
        }
    );
    let retention = Retention::new(&store_config(&format!("max_disk = {bytes_b}")));
    let report = retention.sweep(&store, NOW).expect("sweep");
    assert_eq!(report.recordings_deleted, 1);
    assert_eq!(files(&store), ["c-b.wav"]);
}

// ---------------------------------------------------------------- the floor

/// Log lines written while `f` runs.
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&buf.0.lock().unwrap_or_else(|e| e.into_inner())).into();
    (out, text)
}

const MIB: u64 = 1 << 20;

#[test]
fn the_gate_closes_below_min_free_and_reopens_past_the_margin_logging_each_change_once() {
    let free = Arc::new(AtomicU64::new(5_000 * MIB));
    let source = Arc::clone(&free);
    let config = store_config("min_free = \"1GiB\"");
    let retention = Retention::new(&config);
    let watch = DiskWatch::with_free_space(&config, &retention, move || {
        match source.load(Ordering::Relaxed) {
            u64::MAX => Err(std::io::Error::other("statvfs failed")),
            n => Ok(n),
        }
    });
    let mut seen = Vec::new();
    let ((), log) = logged(|| {
        // Free MiB at each check, and whether audio may be written after it. The resume
        // level is 1 GiB + 256 MiB (10% of 1 GiB is less than the 256 MiB minimum).
        for mib in [
            5_000,
            1_100,
            1_023,
            900,
            1_100,
            1_279,
            u64::MAX,
            1_280,
            1_000,
            2_000,
        ] {
            free.store(mib.saturating_mul(MIB), Ordering::Relaxed);
            seen.push((mib, watch.check(), watch.audio_open()));
        }
    });
    assert_eq!(
        seen,
        [
            (5_000, true, true),
            (1_100, true, true),
            (1_023, false, false),
            (900, false, false),
            (1_100, false, false),
            (1_279, false, false),
            (u64::MAX, false, false), // unreadable: stays as it was
            (1_280, true, true),
            (1_000, false, false),
            (2_000, true, true),
        ]
    );
    let stats = watch.stats();
    assert_eq!(stats.pauses, 2);
    assert_eq!(stats.audio_paused, 0);
    assert_eq!(stats.checks, 10);
    assert_eq!(stats.check_errors, 1);
    assert_eq!(stats.free_bytes, 2_000 * MIB);
    assert_eq!(stats.min_free_bytes, 1024 * MIB);
    assert_eq!(stats.resume_free_bytes, 1280 * MIB);
    assert_eq!(
        log.matches("below the free-space floor").count(),
        2,
        "{log}"
    );
    assert_eq!(log.matches("recording audio again").count(), 2, "{log}");
    assert_eq!(
        log.matches("cannot read the free space").count(),
        1,
        "{log}"
    );
    assert_eq!(log.lines().count(), 6, "{log}");
}

#[test]
fn a_large_floor_gets_a_ten_percent_margin_and_zero_means_no_floor() {
    let retention = Retention::new(&StoreConfig::default());
    let big = store_config("min_free = \"10GiB\"");
    let watch = DiskWatch::with_free_space(&big, &retention, || Ok(0));
    assert_eq!(watch.stats().resume_free_bytes, 11 * 1024 * MIB);
    let none = store_config("min_free = 0");
    let watch = DiskWatch::with_free_space(&none, &retention, || Ok(0));
    assert!(watch.check(), "no floor: audio goes on on a full disk");
    assert_eq!(watch.stats().pauses, 0);
}

fn office_day() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pcaps/office-day.pcap")
}

/// office-day.pcap's answered calls: id, answer and hang-up (Unix seconds since
/// 1772614000, tenths).
const A: &str = "c-4f6cdf813d74dfa0d1159b9b"; // 839.2 - 846.2
const B: &str = "c-2543602e4a690e21ae6f21b9"; // 913.1 - 919.1
const C: &str = "c-5c42849509aa2806a711f8cb"; // 995.3 - 1003.3
const D: &str = "c-e6034e9b218894ff31f48b24"; // 1192.8 - 1200.8
const E: &str = "c-4966ae2dedd92a32ece551e0"; // 1282.1 - 1287.1

#[test]
fn below_the_floor_a_replay_keeps_every_record_writes_no_audio_and_resumes_above_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    let free = Arc::new(AtomicU64::new(10 << 30));
    let source = Arc::clone(&free);
    let config = store_config("min_free = \"1GiB\"");
    let retention = Retention::new(&config);
    let watch = DiskWatch::with_free_space(&config, &retention, move || {
        Ok(source.load(Ordering::Relaxed))
    });
    let engine = Engine::with_recordings(&Config::default(), store.recordings_dir().into());
    let mut ingest = Ingest::new(engine, &store);

    // The disk fills 4 s into call A; B and C are answered below the floor; at 1100
    // the disk has more than 1 GiB free but not the margin; at 1150 it has.
    let t0 = 1_772_614_000u64;
    let mut plan = vec![
        (t0 + 843, 100 * MIB),
        (t0 + 900, 100 * MIB),
        (t0 + 1100, 1100 * MIB),
        (t0 + 1150, 4096 * MIB),
    ]
    .into_iter()
    .peekable();
    let mut open_during = Vec::new();
    let ((), log) = logged(|| {
        let mut reader = CaptureReader::open(&office_day()).expect("capture");
        ingest.begin_file();
        while let Some(Ok(frame)) = reader.next_frame() {
            while let Some(&(at, bytes)) = plan.peek() {
                if frame.time.as_nanos() < at * 1_000_000_000 {
                    break;
                }
                free.store(bytes, Ordering::Relaxed);
                let open = watch.check();
                ingest.engine.set_audio_open(open);
                open_during.push(open);
                plan.next();
            }
            ingest.frame(&frame);
        }
        ingest.finish();
    });
    assert_eq!(open_during, [false, false, false, true]);
    assert!(ingest.summary().errors.is_empty(), "{:?}", ingest.summary());
    let media = ingest.engine.stats().media;

    // Every call is stored, recorded or not.
    let calls: BTreeMap<String, CallRecord> = store
        .all_calls()
        .map(|c| c.expect("readable"))
        .map(|c| (c.id.clone(), c))
        .collect();
    assert_eq!(calls.len(), 7);
    // A: cut short where the disk filled (4 s in, give or take the one-second check
    // and the writer's half-second batch), a valid WAV of what it has.
    let a = &calls[A];
    let rec = a
        .media
        .recording
        .as_ref()
        .expect("A keeps its first seconds");
    assert!(
        (2_500..=4_500).contains(&rec.duration_ms),
        "{} ms",
        rec.duration_ms
    );
    let wav = hound::WavReader::open(store.recordings_dir().join(&rec.file)).expect("valid");
    assert_eq!(u64::from(wav.duration()), rec.duration_ms * 8);
    assert_eq!(wav.spec().channels, 2);
    let note = a.media.no_recording_reason.as_deref().expect("a note");
    assert!(
        note.contains("not recorded") && note.contains("min_free"),
        "{note}"
    );
    // B and C: no audio at all.
    for id in [B, C] {
        let c = &calls[id];
        assert!(c.media.recording.is_none(), "{id}");
        assert_eq!(
            c.media.no_recording_reason.as_deref(),
            Some(GATE_CLOSED_REASON)
        );
        assert!(c.exported, "still a call for the importer");
    }
    // D and E: whole again.
    for (id, ms) in [(D, 8_000), (E, 5_000)] {
        let rec = calls[id].media.recording.as_ref().expect("recorded");
        assert_eq!(rec.duration_ms, ms, "{id}");
        assert!(calls[id].media.no_recording_reason.is_none());
    }
    assert_eq!(
        files(&store),
        [format!("{E}.wav"), format!("{A}.wav"), format!("{D}.wav")]
    );
    assert_eq!(media.recordings_cut_short, 1);
    assert_eq!(media.no_recording_disk_floor, 2);
    assert_eq!(media.recordings_written, 3);
    assert_eq!(media.recordings_failed, 0);
    let stats = watch.stats();
    assert_eq!((stats.pauses, stats.audio_paused), (1, 0));
    assert_eq!(
        log.matches("below the free-space floor").count(),
        1,
        "{log}"
    );
    assert_eq!(log.matches("recording audio again").count(), 1, "{log}");
}

#[test]
fn a_replay_below_the_floor_from_the_start_writes_no_file_at_all() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    let config = store_config("");
    let retention = Retention::new(&config);
    let watch = DiskWatch::with_free_space(&config, &retention, || Ok(10 * MIB));
    assert!(!watch.check());
    let mut engine = Engine::with_recordings(&Config::default(), store.recordings_dir().into());
    engine.set_audio_open(watch.audio_open());
    let mut ingest = Ingest::new(engine, &store);
    replay_files(&[office_day()], &mut ingest, false);
    let calls: Vec<CallRecord> = store.all_calls().map(|c| c.expect("readable")).collect();
    assert_eq!(calls.len(), 7);
    let answered: Vec<&CallRecord> = calls.iter().filter(|c| c.answer_ns.is_some()).collect();
    assert_eq!(answered.len(), 5);
    for c in answered {
        assert!(c.media.recording.is_none(), "{}", c.id);
        assert_eq!(
            c.media.no_recording_reason.as_deref(),
            Some(GATE_CLOSED_REASON)
        );
    }
    assert!(files(&store).is_empty(), "{:?}", files(&store));
    assert_eq!(ingest.engine.stats().media.no_recording_disk_floor, 5);
    assert_eq!(store.recordings_totals().expect("totals").count, 0);
}

// ---------------------------------------------------------------- a real full disk

#[test]
fn a_disk_full_while_writing_loses_only_that_recording_and_is_counted() {
    // 600 KiB. The five recordings take 160-256 kB each, 1.09 MB in all, so the first
    // fit and the later ones fail mid-write; the test asks only for both kinds, so it
    // holds if the sizes change a little.
    let Some(disk) = TinyDisk::mount(600 * 1024) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    let engine = Engine::with_recordings(&Config::default(), disk.dir.path().into());
    let mut ingest = Ingest::new(engine, &store);
    replay_files(&[office_day()], &mut ingest, false);
    let media = ingest.engine.stats().media;
    let calls: BTreeMap<String, CallRecord> = store
        .all_calls()
        .map(|c| c.expect("readable"))
        .map(|c| (c.id.clone(), c))
        .collect();
    assert_eq!(calls.len(), 7, "every record is stored");
    let (mut written, mut failed) = (Vec::new(), Vec::new());
    for id in [A, B, C, D, E] {
        let c = &calls[id];
        match &c.media.recording {
            Some(rec) => {
                let path = disk.dir.path().join(&rec.file);
                let wav = hound::WavReader::open(&path).expect("a valid WAV");
                assert_eq!(u64::from(wav.duration()), rec.duration_ms * 8, "{id}");
                written.push(rec.file.clone());
            }
            None => {
                let why = c.media.no_recording_reason.as_deref().unwrap_or_default();
                assert!(
                    why.starts_with("write error: ") && why.contains("No space left"),
                    "{id}: {why}"
                );
                assert!(!why.contains("write error: write error"), "{why}");
                failed.push(id);
            }
        }
    }
    assert!(
        !failed.is_empty() && !written.is_empty(),
        "{failed:?} {written:?}"
    );
    assert_eq!(media.recordings_failed, failed.len() as u64);
    assert_eq!(media.recordings_disk_full, failed.len() as u64);
    assert_eq!(media.recordings_written, written.len() as u64);
    // Nothing half-written is left, and no partial file was renamed into place.
    let mut left: Vec<String> = std::fs::read_dir(disk.dir.path())
        .expect("the tmpfs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    written.sort();
    assert_eq!(left, written);
}

#[test]
fn byte_sizes_in_the_example_configuration_parse() {
    // The keys as config/calltap.toml documents them.
    let c = store_config(
        "keep_days = 365\nrecordings_keep_days = 90\nmax_disk = \"200GiB\"\nmin_free = \"1GiB\"",
    );
    assert_eq!(c.max_disk, Some(ByteSize(200 << 30)));
    assert_eq!(c.min_free, ByteSize(1 << 30));
}

/// sled itself, under a store just dropped: its flusher thread lets go of sled's lock
/// when it next wakes (Store::open waits the same way).
fn raw_sled(path: &std::path::Path) -> sled::Result<sled::Db> {
    for _ in 0..150 {
        match sled::open(path) {
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            result => return result,
        }
    }
    sled::open(path)
}
