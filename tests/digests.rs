//! Byte for byte the same: every record and every WAV that replaying the project's own
//! captures, a generated load and the third-party captures in ../shared/pcaps gives,
//! as SHA-256 digests held in tests/data/digests.tsv. Work on speed (threads, buffers,
//! how files are written) must leave every one unchanged; a change that means to alter
//! records or audio rewrites the file with `CALLTAP_BLESS=1 cargo test --test digests`,
//! and its diff names each capture that changed.

#[path = "support/skip.rs"]
mod skip;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use calltap::config::Config;
use calltap::engine::Engine;
use calltap::ingest::Ingest;
use calltap::pcapgen::load::LoadSpec;
use calltap::replay::replay_files;
use calltap::store::Store;
use sha2::{Digest, Sha256};

fn digests_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/digests.tsv")
}

/// Replays `capture` into a new store with recording on; answers the digest of its
/// records (in store order) and of its recordings (by file name), and their counts.
fn digest(capture: &Path) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    let config = Config::default();
    let engine = Engine::with_recordings(&config, store.recordings_dir().to_path_buf());
    let mut ingest = Ingest::new(engine, &store);
    replay_files(&[capture], &mut ingest, false);
    drop(ingest);
    let mut records = Sha256::new();
    let mut calls = 0;
    for record in store.all_calls() {
        let record = record.expect("a stored record");
        records.update(serde_json::to_vec(&record).expect("JSON"));
        calls += 1;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(store.recordings_dir())
        .expect("recordings")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    let mut audio = Sha256::new();
    for file in &files {
        audio.update(file.file_name().expect("name").as_encoded_bytes());
        audio.update(std::fs::read(file).expect("recording"));
    }
    format!(
        "{calls}\t{}\t{}\t{}",
        hex::encode(&records.finalize()[..8]),
        files.len(),
        hex::encode(&audio.finalize()[..8])
    )
}

fn captures_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.extension()
                        .is_some_and(|e| e == "pcap" || e == "pcapng" || e == "cap")
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn replays_give_the_same_records_and_recordings_byte_for_byte() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shared = root.join("../shared/pcaps");
    if !shared.is_dir() {
        skip::skip(format!("{} is absent", shared.display()));
        return;
    }
    let generated = tempfile::tempdir().expect("temp dir");
    let load = generated.path().join("load-300.pcap");
    LoadSpec::concurrent(300, 4)
        .write_pcap(&load)
        .expect("load written");

    let mut got = BTreeMap::new();
    for capture in captures_in(&root.join("pcaps")) {
        let name = format!("pcaps/{}", capture.file_name().expect("name").display());
        got.insert(name, digest(&capture));
    }
    got.insert("generated/load-300.pcap".to_string(), digest(&load));
    for capture in captures_in(&shared) {
        let name = format!("shared/{}", capture.file_name().expect("name").display());
        got.insert(name, digest(&capture));
    }
    let table: String = std::iter::once(
        "# capture\trecords\trecords sha256/8\trecordings\trecordings sha256/8\n".to_string(),
    )
    .chain(got.iter().map(|(name, d)| format!("{name}\t{d}\n")))
    .collect();

    if std::env::var("CALLTAP_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(digests_file(), &table).expect("digests written");
        return;
    }
    let want = std::fs::read_to_string(digests_file()).expect("tests/data/digests.tsv");
    let changed: Vec<String> = table
        .lines()
        .zip(want.lines())
        .filter(|(g, w)| g != w)
        .map(|(g, w)| format!("  now:  {g}\n  was:  {w}"))
        .collect();
    assert!(
        changed.is_empty() && table.lines().count() == want.lines().count(),
        "records or recordings changed (rewrite with CALLTAP_BLESS=1 if meant):\n{}",
        changed.join("\n")
    );
}
