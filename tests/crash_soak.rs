//! SIGKILL at random moments, again and again: of a replay into a store that fills up
//! over the rounds, of a repeat replay into a store that already holds every call whole,
//! and of `calltap run` fed the same capture through a pipe. After each kill the next
//! start finalises what was in progress, and then:
//! - every call is one of the uninterrupted run's calls, and none is stored twice;
//! - every whole record, and its recording, is byte-identical to the uninterrupted run's;
//! - every record's recording exists and has the size the record states;
//! - no partial file is left in the recordings folder.
//!
//! A last uninterrupted replay then completes every partial record, so each store ends
//! identical to the reference. The kill points come from a seed printed at the start
//! (set CALLTAP_SOAK_SEED to replay a failing run).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use calltap::capture::Timestamp;
#[path = "support/stored.rs"]
mod stored;

use calltap::pcapgen::{CallScript, Party, Phone};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Talking calls, and short ones beside them: more than replay's batch of records, so
/// some records are written whole before a kill and others wait in the batch.
const LONG_CALLS: usize = 24;
const SHORT_CALLS: usize = 300;
const CALLS: usize = LONG_CALLS + SHORT_CALLS;
const KILLS_PER_PHASE: usize = 8;

/// Generous timeouts: a kill leaves calls silent for as long as the test runs, and
/// `run`'s quiet-line ticks must not end them by a media timeout meanwhile.
const CONFIG: &str = "[calls]\nmedia_timeout_secs = 86400\n";

/// Calls of 1-15 s starting over 20 s and calls of under a second all along, so that
/// at any kill some are ringing, some talking, some lingering after their BYE and some
/// stored. Stamped a minute before now: `run` takes the stamps as live time.
fn capture() -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let base = Timestamp::from_nanos((now - 60) * 1_000_000_000);
    let mut packets = Vec::new();
    for i in 0..CALLS {
        let (hi, lo) = ((i / 200) as u8, (i % 200) as u8);
        let caller = Phone::new(
            &format!("{}", 2000 + i),
            IpAddr::V4(Ipv4Addr::new(10, 20, hi, 10 + lo)),
            16_000 + 2 * i as u16,
        );
        let callee = Phone::new(
            &format!("+1555{:07}", 1000 + i),
            IpAddr::V4(Ipv4Addr::new(10, 30, hi, 10 + lo)),
            26_000 + 2 * i as u16,
        );
        let (start_ms, talk_ms) = if i < LONG_CALLS {
            (830 * i as u64, 1_000 + (i as u64 * 2_711) % 14_000)
        } else {
            (83 * (i - LONG_CALLS) as u64, 200 + (i as u64 * 37) % 500)
        };
        let script = CallScript::new(0x50A4 + i as u64)
            .caller(caller)
            .callee(callee)
            .start(base.saturating_add(Duration::from_millis(start_ms)))
            .ring(Duration::from_millis(300 + (97 * i as u64) % 2_000))
            .talk(Duration::from_millis(talk_ms))
            .hangup_by(if i % 2 == 0 {
                Party::Caller
            } else {
                Party::Callee
            });
        packets.extend(script.to_vec());
    }
    packets.sort_by_key(|p| p.time);
    stored::pcap_of(&packets)
}

/// A small xorshift: the kill points, repeatable from the seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

struct Soak {
    dir: tempfile::TempDir,
    capture: Vec<u8>,
    config: PathBuf,
    rng: Rng,
}

/// What a store holds: each call's full record, and its recording's digest.
type Calls = BTreeMap<String, (Value, Option<String>)>;

impl Soak {
    fn new() -> Soak {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("calltap.toml");
        std::fs::write(&config, CONFIG).expect("config");
        let seed = std::env::var("CALLTAP_SOAK_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
                    | 1
            });
        println!("crash soak seed: CALLTAP_SOAK_SEED={seed}");
        Soak {
            dir,
            capture: capture(),
            config,
            rng: Rng(seed),
        }
    }

    fn calltap(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_calltap"));
        cmd.env_remove("CALLTAP_CONFIG")
            .env("CALLTAP_LOG", "error")
            .env("CALLTAP_SECRET_KEY", "soak-key");
        cmd
    }

    /// Replays the whole capture into `store`, uninterrupted.
    fn replay(&self, store: &Path) {
        let file = self.dir.path().join("capture.pcap");
        std::fs::write(&file, &self.capture).expect("capture written");
        let out = self
            .calltap()
            .args(["replay", "-q", "--config"])
            .arg(&self.config)
            .arg("--data")
            .arg(store)
            .arg(&file)
            .output()
            .expect("calltap runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts `replay` (or `run`, with `live`) reading the capture from a pipe, feeds it
    /// a random part of the capture, waits a random moment and SIGKILLs it.
    fn kill_mid_feed(&mut self, store: &Path, live: bool) {
        let fifo = self.dir.path().join("feed.pcap");
        let _ = std::fs::remove_file(&fifo);
        let made = Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        let mut cmd = self.calltap();
        if live {
            cmd.args(["run", "--listen", "127.0.0.1:0", "--pcap-stream"])
                .arg(&fifo);
        } else {
            cmd.args(["replay", "-q"]).arg(&fifo);
        }
        let mut child: Child = cmd
            .arg("--config")
            .arg(&self.config)
            .arg("--data")
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("calltap runs");
        let cut = self.rng.below(self.capture.len() as u64) as usize;
        // At once, a moment later, or (live) after a quiet-line tick has moved capture
        // time on and released the records waiting out their linger.
        let wait = match self.rng.below(4) {
            0 => 0,
            3 if live => 2_500 + self.rng.below(1_000),
            _ => self.rng.below(400),
        };
        {
            // Opening the write end waits for calltap's read end; a write into a pipe
            // whose reader died fails, which is fine: the kill came first.
            let mut pipe = std::fs::OpenOptions::new()
                .write(true)
                .open(&fifo)
                .expect("pipe");
            let _ = pipe.write_all(&self.capture[..cut]);
            std::thread::sleep(Duration::from_millis(wait));
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
        }
    }

    /// Starts `replay` into `store` reading a new named pipe (stderr kept), which it
    /// waits on with the store open; answers the pipe and the process.
    fn replay_from_new_pipe(&self, store: &Path) -> (PathBuf, Child) {
        let fifo = self.dir.path().join("feed.pcap");
        let _ = std::fs::remove_file(&fifo);
        let made = Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        let child = self
            .calltap()
            .args(["replay", "-q"])
            .arg(&fifo)
            .arg("--config")
            .arg(&self.config)
            .arg("--data")
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("calltap runs");
        (fifo, child)
    }

    /// Opens the store as the next start does (finalising what was in progress) and
    /// reads every call with its recording's digest, checking each recording on the way.
    fn stored(&self, store: &Path) -> Calls {
        let out = self
            .calltap()
            .args(["calls", "--all", "--json", "--config"])
            .arg(&self.config)
            .arg("--data")
            .arg(store)
            .output()
            .expect("calltap runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let recordings = store.join("recordings");
        let mut calls = Calls::new();
        for call in json["calls"].as_array().expect("calls") {
            let record = call["calltap"].clone();
            let id = record["id"].as_str().expect("id").to_string();
            let digest = record["media"]["recording"].as_object().map(|rec| {
                let file = recordings.join(rec["file"].as_str().expect("file"));
                let bytes = std::fs::read(&file)
                    .unwrap_or_else(|e| panic!("{id}: its recording {}: {e}", file.display()));
                assert_eq!(
                    Some(bytes.len() as u64),
                    rec["bytes"].as_u64(),
                    "{id}: the record states the size of its file"
                );
                let wav = hound::WavReader::new(bytes.as_slice()).expect("a valid WAV");
                assert_eq!(
                    u64::from(wav.duration()) * 4 + 44,
                    bytes.len() as u64,
                    "{id}: the header states the file's audio"
                );
                hex::encode(Sha256::digest(&bytes))
            });
            assert!(
                calls.insert(id.clone(), (record, digest)).is_none(),
                "{id} stored twice"
            );
        }
        // Every WAV on disk belongs to a record that names it: a crash never leaves a
        // recording its record forgot (a whole WAV with `recording: null`).
        let named: std::collections::HashSet<String> = calls
            .values()
            .filter_map(|(r, _)| r["media"]["recording"]["file"].as_str().map(String::from))
            .collect();
        for entry in std::fs::read_dir(&recordings)
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".wav") {
                assert!(
                    named.contains(&name),
                    "{name} is on disk, no record names it"
                );
            }
        }
        let parts: Vec<String> = std::fs::read_dir(&recordings)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".part"))
                    .collect()
            })
            .unwrap_or_default();
        assert!(parts.is_empty(), "partial files left: {parts:?}");
        calls
    }
}

fn is_partial(record: &Value) -> bool {
    record["recovered"] == true || record["end_reason"] == "shutdown"
}

/// After a kill and a restart: only the reference's calls, every whole one identical
/// to the reference, and nothing stored before lost or shortened.
fn check(reference: &Calls, now: &Calls, before: &Calls, round: &str) {
    let partial = now.values().filter(|(r, _)| is_partial(r)).count();
    println!(
        "{round}: {} calls stored, {partial} of them partial",
        now.len()
    );
    for (id, (record, digest)) in now {
        let (want, want_digest) = reference
            .get(id)
            .unwrap_or_else(|| panic!("{round}: {id} is not a call of the capture"));
        if !is_partial(record) {
            assert_eq!(record, want, "{round}: whole record {id}");
            assert_eq!(digest, want_digest, "{round}: recording of {id}");
        }
    }
    for (id, (record, _)) in before {
        let (after, _) = now
            .get(id)
            .unwrap_or_else(|| panic!("{round}: {id} was stored and is gone"));
        if !is_partial(record) {
            assert!(!is_partial(after), "{round}: {id} was whole and is partial");
        }
        // A partial record gives way to the whole call; another partial one of the same
        // call must hold at least as much audio.
        let audio = |r: &Value| r["media"]["recording"]["duration_ms"].as_u64().unwrap_or(0);
        assert!(
            !is_partial(after) || audio(after) >= audio(record),
            "{round}: {id} lost audio ({} ms, then {} ms)",
            audio(record),
            audio(after)
        );
    }
}

fn mkfifo_available() -> bool {
    Command::new("mkfifo")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn sigkill_at_random_moments_loses_and_shortens_nothing() {
    assert!(mkfifo_available(), "mkfifo (coreutils) is needed");
    let mut soak = Soak::new();
    let root = soak.dir.path().to_path_buf();

    let reference_dir = root.join("reference");
    soak.replay(&reference_dir);
    let reference = soak.stored(&reference_dir);
    assert_eq!(reference.len(), CALLS);
    assert!(reference
        .values()
        .all(|(r, d)| !is_partial(r) && d.is_some()));

    // A replay killed again and again into one store: the first round into an empty
    // store, every later one a repeat replay over what the crashes left.
    let filling = root.join("filling");
    let mut before = Calls::new();
    for round in 0..KILLS_PER_PHASE {
        soak.kill_mid_feed(&filling, false);
        let now = soak.stored(&filling);
        check(&reference, &now, &before, &format!("replay kill {round}"));
        before = now;
    }

    // A repeat replay over a store holding every call whole: nothing may change.
    let full = root.join("full");
    soak.replay(&full);
    for round in 0..KILLS_PER_PHASE {
        soak.kill_mid_feed(&full, false);
        let now = soak.stored(&full);
        assert_eq!(now, reference, "repeat replay kill {round}");
    }

    // `calltap run` fed through a pipe, killed the same way.
    let live = root.join("live");
    let mut before = Calls::new();
    for round in 0..KILLS_PER_PHASE {
        soak.kill_mid_feed(&live, true);
        let now = soak.stored(&live);
        check(&reference, &now, &before, &format!("run kill {round}"));
        before = now;
    }

    // The whole traffic once more completes every partial record.
    for store in [&filling, &live] {
        soak.replay(store);
        assert_eq!(soak.stored(store), reference, "{}", store.display());
    }
}

/// The store is made durable per poll or per file, not per call, so a crash can take a
/// call's record while its recording is complete on disk. The next start after a crash
/// removes such a file; after a clean stop nothing is touched.
#[test]
fn a_recording_no_record_names_is_removed_after_a_crash_only() {
    assert!(mkfifo_available(), "mkfifo (coreutils) is needed");
    let soak = Soak::new();
    let store = soak.dir.path().join("store");
    soak.replay(&store);
    let recordings = store.join("recordings");
    let wavs = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("recordings")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let whole = wavs(&recordings);
    assert!(!whole.is_empty());
    let orphan = recordings.join("c-0123456789abcdef01234567.wav");
    std::fs::copy(recordings.join(&whole[0]), &orphan).expect("orphan");

    // A clean start: the file is someone's business, not a crash's.
    let opened = soak
        .calltap()
        .args(["calls", "--all", "--config"])
        .arg(&soak.config)
        .arg("--data")
        .arg(&store)
        .output()
        .expect("calltap runs");
    assert!(opened.status.success());
    assert!(orphan.exists(), "removed without a crash");

    // A crash: replay waits on an empty pipe, holding the store, and is killed.
    let (_fifo, mut child) = soak.replay_from_new_pipe(&store);
    // The store is opened (and marked) before the pipe: wait for its lock.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline && !lock_held(&store) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    let calls = soak.stored(&store);
    assert!(!orphan.exists(), "kept after a crash");
    assert_eq!(wavs(&recordings), whole, "every record's recording stays");
    assert_eq!(calls.len(), CALLS);
}

/// Whether a process holds the store's lock.
fn lock_held(store: &Path) -> bool {
    let Ok(file) = std::fs::File::open(store.join("calltap.lock")) else {
        return false;
    };
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor we own.
    let free = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    !free
}

/// SIGTERM stops a replay with what it read stored and durable: the process exits on
/// its own (status 1, "interrupted"), the calls it had not seen end are finalised at
/// the next start as a crash's, and the whole traffic replayed later completes them to
/// exactly an uninterrupted run's records.
#[test]
fn sigterm_stops_a_replay_with_what_it_read_stored() {
    assert!(mkfifo_available(), "mkfifo (coreutils) is needed");
    let soak = Soak::new();
    let reference_dir = soak.dir.path().join("reference");
    soak.replay(&reference_dir);
    let reference = soak.stored(&reference_dir);

    let store = soak.dir.path().join("store");
    let (fifo, child) = soak.replay_from_new_pipe(&store);
    {
        let mut pipe = std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .expect("pipe");
        pipe.write_all(&soak.capture[..soak.capture.len() / 2])
            .expect("half the capture");
        // Half of it is read (a pipe holds 64 KiB): the signal comes mid-capture.
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().expect("reaped");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");

    let after = soak.stored(&store);
    assert!(!after.is_empty(), "what was read is stored");
    assert!(after.len() < reference.len(), "the signal came mid-capture");
    for (id, (record, digest)) in &after {
        if !is_partial(record) {
            assert_eq!(
                reference.get(id),
                Some(&(record.clone(), digest.clone())),
                "{id}: a call that ended before the signal is whole"
            );
        }
    }
    soak.replay(&store);
    assert_eq!(soak.stored(&store), reference);
}
