//! Recordings through the whole engine and store: every answered call of the demo gets
//! a stereo WAV that covers exactly its talk time, with the operator on the left; and
//! a crash in the middle of a call is finalised on the next start, nothing lost.

#[path = "support/stored.rs"]
mod stored;

use std::path::{Path, PathBuf};

use calltap::call::{EndReason, WhoHungUp};
use calltap::capture::file::CaptureReader;
use calltap::config::Config;
use calltap::engine::Engine;
use calltap::ingest::{recover_interrupted, Ingest};
use calltap::replay::{replay_files, FrameSink};
use calltap::store::Store;

fn office_day() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pcaps/office-day.pcap")
}

fn wav_frames(path: &Path) -> (u32, u16, u32) {
    let reader = hound::WavReader::open(path).expect("a valid WAV");
    let spec = reader.spec();
    (spec.sample_rate, spec.channels, reader.duration())
}

#[test]
fn every_answered_call_gets_a_wav_as_long_as_the_call() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    let config = Config::default();
    let engine = Engine::with_recordings(&config, store.recordings_dir().to_path_buf());
    let mut ingest = Ingest::new(engine, &store);
    replay_files(&[office_day()], &mut ingest, false);
    let calls: Vec<_> = store.all_calls().filter_map(Result::ok).collect();
    let answered: Vec<_> = calls.iter().filter(|c| c.answer_ns.is_some()).collect();
    assert_eq!(answered.len(), 5);
    for call in answered {
        let rec = call.media.recording.as_ref().expect("a recording");
        let path = store.recordings_dir().join(&rec.file);
        assert_eq!(std::fs::metadata(&path).expect("file").len(), rec.bytes);
        let (rate, channels, frames) = wav_frames(&path);
        assert_eq!((rate, channels), (8000, 2));
        // Exactly answer..BYE: within one 20 ms packet of the record's duration.
        let talk_ms = (call.end_ns - call.answer_ns.unwrap_or(0)) / 1_000_000;
        let wav_ms = u64::from(frames) / 8;
        assert!(
            talk_ms.abs_diff(wav_ms) <= 20,
            "{}: {talk_ms} ms vs {wav_ms} ms",
            call.id
        );
        assert_eq!(rec.duration_ms, wav_ms);
        assert!(call.media.mos.is_some_and(|m| m > 4.0), "{:?}", call.media);
        assert_eq!(call.media.loss_percent, Some(0.0));
    }
    let dtmf: Vec<_> = calls.iter().map(|c| c.media.dtmf_digits.as_str()).collect();
    assert!(dtmf.contains(&"12"), "{dtmf:?}");
    // Nothing half-written is left behind.
    let parts = std::fs::read_dir(store.recordings_dir())
        .expect("recordings")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .count();
    assert_eq!(parts, 0);
}

#[test]
fn a_crash_during_a_call_is_finalised_on_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::default();
    {
        let store = Store::open(dir.path()).expect("store");
        let engine = Engine::with_recordings(&config, store.recordings_dir().to_path_buf());
        let mut ingest = Ingest::new(engine, &store);
        // Call 1 is answered at 09:00:39.2 and hung up at 09:00:46.2: stop in between,
        // with 4 s of its audio captured, and die without any clean-up.
        let cut = 1_772_614_843u64 * 1_000_000_000 + 200_000_000;
        let mut reader = CaptureReader::open(&office_day()).expect("capture");
        ingest.begin_file();
        while let Some(Ok(frame)) = reader.next_frame() {
            if frame.time.as_nanos() > cut {
                break;
            }
            ingest.frame(&frame);
        }
        std::mem::forget(ingest);
        assert_eq!(store.in_progress().expect("in progress").len(), 1);
        drop(store);
    }
    // The next start finds the call in progress and its partial recording.
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(
        recover_interrupted(&store, &Config::default())
            .expect("recovery")
            .finalised,
        1
    );
    assert!(store.in_progress().expect("in progress").is_empty());
    let calls: Vec<_> = store.all_calls().filter_map(Result::ok).collect();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.who_hung_up, WhoHungUp::System);
    assert_eq!(call.end_reason, EndReason::Shutdown);
    assert!(
        call.exported,
        "an interrupted conversation is still a conversation"
    );
    let rec = call
        .media
        .recording
        .as_ref()
        .expect("the audio that reached disk");
    let (_, channels, frames) = wav_frames(&store.recordings_dir().join(&rec.file));
    assert_eq!(channels, 2);
    let wav_ms = u64::from(frames) / 8;
    assert!(wav_ms <= 4_000, "no more than was captured: {wav_ms} ms");
    assert_eq!(call.duration, (wav_ms + 500) / 1000);
    assert_eq!(call.end_time, call.start_time + call.duration);

    assert!(call.recovered);

    // Replaying the whole capture afterwards adds the other calls and completes the
    // interrupted one: same id, never stored twice, now whole.
    let engine = Engine::with_recordings(&config, store.recordings_dir().to_path_buf());
    let mut ingest = Ingest::new(engine, &store);
    replay_files(&[office_day()], &mut ingest, false);
    assert_eq!(ingest.summary().duplicates, 0);
    assert_eq!(ingest.summary().completed, 1);
    assert_eq!(store.all_calls().count(), 7);
    let whole = store.get_call(&call.id).expect("read").expect("stored");
    assert!(!whole.recovered);
    assert_eq!(whole.end_reason, EndReason::Bye);
    assert_ne!(whole.who_hung_up, WhoHungUp::System);
    let rec = whole.media.recording.as_ref().expect("a recording");
    let (_, _, frames) = wav_frames(&store.recordings_dir().join(&rec.file));
    assert_eq!(
        u64::from(frames) * 4 + 44,
        rec.bytes,
        "the record states its file"
    );
    assert!(u64::from(frames) / 8 > 6_000, "the whole 7 s call");
    assert_eq!(store.counts().expect("counts").total(), 7);
}

/// A recording stops growing at the hang-up: the record waits out the dialog layer's
/// 32 s linger, but the WAV is not padded with silence meanwhile (a 7 s call's part file
/// once grew to 1.93 MB before being cut to its 224 kB).
#[test]
fn a_recording_stops_growing_at_the_hang_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let recordings = dir.path().join("recordings");
    std::fs::create_dir_all(&recordings).expect("folder");
    let mut engine = Engine::with_recordings(&Config::default(), recordings.clone());
    // One call of about 5 s, BYE included.
    let spec = calltap::pcapgen::load::LoadSpec::concurrent(1, 5);
    let mut last = spec.start;
    spec.generate(|p| {
        last = p.time;
        engine.frame(&calltap::capture::Frame {
            time: p.time,
            link: calltap::capture::LinkType::RawIp,
            data: &p.data,
            orig_len: p.data.len() as u32,
        });
        Ok(())
    })
    .expect("generated");
    // 20 s on: the dialog still lingers, its recording must not have moved.
    engine.tick(last.saturating_add(std::time::Duration::from_secs(20)));
    let parts: Vec<u64> = std::fs::read_dir(&recordings)
        .expect("recordings")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".wav.part"))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .collect();
    assert_eq!(parts.len(), 1, "the call's recording is still open");
    // 5 s x 8000 frames x 4 bytes, plus the header and one write batch.
    assert!(
        parts[0] <= 5 * 8000 * 4 + 44 + 16 * 1024,
        "{} bytes",
        parts[0]
    );
}

/// The same capture replayed again finds every call stored whole: no recording is
/// written again (so a crash in the middle could not cut one short), no in-progress
/// state is left behind, and the next start has nothing to finalise.
#[test]
fn a_repeat_replay_touches_no_recording_and_leaves_nothing_in_progress() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    let config = Config::default();
    let replay = |store: &Store| {
        let engine = Engine::with_recordings(&config, store.recordings_dir().to_path_buf());
        let mut ingest = Ingest::new(engine, store);
        replay_files(&[office_day()], &mut ingest, false);
        let summary = ingest.summary().clone();
        (summary, ingest.engine.stats().media)
    };
    let (first, _) = replay(&store);
    assert_eq!(first.new_calls(), 7);
    let files = |store: &Store| {
        let mut files: Vec<(String, std::time::SystemTime, Vec<u8>)> =
            std::fs::read_dir(store.recordings_dir())
                .expect("recordings")
                .filter_map(Result::ok)
                .map(|e| {
                    let meta = e.metadata().expect("metadata");
                    let bytes = std::fs::read(e.path()).expect("read");
                    let name = e.file_name().to_string_lossy().into_owned();
                    (name, meta.modified().expect("mtime"), bytes)
                })
                .collect();
        files.sort();
        files
    };
    let before = files(&store);
    assert_eq!(before.len(), 5);

    let (again, media) = replay(&store);
    assert_eq!(again.new_calls(), 0);
    assert_eq!(again.duplicates, 7);
    assert_eq!(media.no_recording_already_stored, 5);
    assert_eq!(media.recordings_written, 0);
    assert_eq!(files(&store), before, "not one recording written again");
    assert!(store.in_progress().expect("in progress").is_empty());
    drop(store);
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(
        recover_interrupted(&store, &Config::default()).expect("recovery"),
        calltap::ingest::Recovery::default()
    );
}

/// A call that falls silent in one capture file and is timed out while the next file,
/// years later, is read: it ends where it was last heard, never at the time the timeout
/// happened to be checked (once 491,721,722 s long).
#[test]
fn a_media_timeout_across_a_clock_jump_ends_where_the_call_was_last_heard() {
    use calltap::capture::{Frame, LinkType, Timestamp};
    use calltap::engine::EngineEvent;
    use calltap::pcapgen::CallScript;
    use std::time::Duration;

    let feed = |engine: &mut Engine, packets: &[calltap::pcapgen::Packet]| {
        engine.new_source();
        for p in packets {
            engine.frame(&Frame {
                time: p.time,
                link: LinkType::RawIp,
                data: &p.data,
                orig_len: p.data.len() as u32,
            });
        }
    };
    // 2011: answered, signalling only (an SBC's SIP-only capture), cut before any BYE.
    let old_start = Timestamp::from_nanos(1_300_000_000 * 1_000_000_000);
    let old = CallScript::new(11)
        .start(old_start)
        .talk(Duration::from_secs(600));
    let cut = old_start.saturating_add(Duration::from_secs(10));
    let old_sip: Vec<_> = old
        .sip_packets()
        .into_iter()
        .filter(|p| p.time < cut)
        .collect();
    // 2026: another call.
    let new = CallScript::new(26);

    let mut engine = Engine::new(&Config::default());
    feed(&mut engine, &old_sip);
    feed(&mut engine, &new.to_vec());
    engine.finish();
    let mut calls = Vec::new();
    while let Some(event) = engine.poll() {
        if let EngineEvent::Call(record) = event {
            calls.push(*record);
        }
    }
    let stale = calls
        .iter()
        .find(|c| c.start_time < 1_400_000_000)
        .expect("the 2011 call");
    assert_eq!(stale.end_reason, EndReason::MediaTimeout);
    let last_sip = old_sip.last().expect("packets").time.as_nanos();
    assert!(stale.end_ns <= last_sip, "{} > {last_sip}", stale.end_ns);
    assert!(stale.duration <= 10, "{} s", stale.duration);
    assert_eq!(stale.end_time, stale.start_time + stale.duration);
}

/// A crash in the middle of a conversation through a B2BUA (trunk leg and phone leg,
/// both up): at the restart the two legs are finalised and merged as they would have
/// been, one record for the importer, not two.
#[test]
fn a_crash_during_a_b2bua_call_gives_one_conversation() {
    use calltap::pcapgen::{b2bua, Link};
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::from_toml(b2bua::CONFIG, "b2bua").expect("config");
    let capture = b2bua::incoming_answered(3).pcap(Link::Ethernet);
    {
        let store = Store::open(dir.path()).expect("store");
        let engine = Engine::with_recordings(&config, store.recordings_dir().to_path_buf());
        let mut ingest = Ingest::new(engine, &store);
        // Both legs answered by 5 s; the crash comes at 30 s, mid-conversation.
        let cut = b2bua::at(30_000).as_nanos();
        let mut reader = CaptureReader::new("b2bua", capture.as_slice()).expect("capture");
        ingest.begin_file();
        while let Some(Ok(frame)) = reader.next_frame() {
            if frame.time.as_nanos() > cut {
                break;
            }
            ingest.frame(&frame);
        }
        std::mem::forget(ingest);
        assert_eq!(store.in_progress().expect("in progress").len(), 2);
        drop(store);
    }
    let store = Store::open(dir.path()).expect("reopen");
    let recovery = recover_interrupted(&store, &config).expect("recovery");
    assert_eq!(recovery.finalised, 2);
    let calls: Vec<_> = store.all_calls().filter_map(Result::ok).collect();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    let exported: Vec<_> = calls.iter().filter(|c| c.exported).collect();
    assert_eq!(
        exported.len(),
        1,
        "one conversation, one record: {calls:#?}"
    );
    let conversation = exported[0];
    assert_eq!(conversation.operator.id, "201");
    assert_eq!(conversation.client_number.as_deref(), Some(b2bua::CLIENT));
    assert_eq!(conversation.who_hung_up, WhoHungUp::System);
    assert!(calls.iter().all(|c| c.recovered));
    let merged = calls.iter().find(|c| !c.exported).expect("the trunk leg");
    assert_eq!(
        merged.conversation.merged_into.as_deref(),
        Some(conversation.id.as_str())
    );
}

/// A B2BUA conversation whose phone leg carried no RTP takes the trunk leg's recording;
/// the PBX answered the trunk at 1 s (an announcement) and the operator at 5 s. The
/// record's file must start at the record's start (5 s), end with its talk time, keep
/// the operator's voice (what the PBX sends the trunk) left and the client's right, and
/// leave no other copy behind.
#[test]
fn a_recording_borrowed_from_the_trunk_leg_starts_at_the_records_start() {
    use calltap::pcapgen::b2bua::{self, at, CLIENT};
    use calltap::pcapgen::g711::ulaw_to_linear;
    use calltap::pcapgen::scenario::{Dialog, Scenario};
    use calltap::pcapgen::Party;

    const FIRST_MS: u64 = 1_100;
    const LAST_MS: u64 = 64_900;
    let client_code = |k: u64| 0x10 + (k % 100) as u8;
    let pbx_code = |k: u64| 0x90 + (k % 100) as u8;

    let mut t = b2bua::trunk_in(7, CLIENT);
    let ti = b2bua::ring(&mut t, 0);
    b2bua::answer(&mut t, &ti, 1_000);
    let mut p = Dialog::new(8, b2bua::pbx(CLIENT).rtp_port(20_002), b2bua::phone("201"));
    let pi = b2bua::ring(&mut p, 20);
    b2bua::answer(&mut p, &pi, 5_000);
    b2bua::hang_up(&mut t, Party::Caller, 65_000);
    b2bua::hang_up(&mut p, Party::Caller, 65_005);
    let mut s = Scenario::new().dialog(t).dialog(p);
    let trunk_rtp: std::net::SocketAddr = "203.0.113.10:30000".parse().expect("addr");
    let pbx_rtp: std::net::SocketAddr = "10.0.0.5:20000".parse().expect("addr");
    let packet = |k: u64, ssrc: u32, code: u8| {
        let mut b = vec![0x80, 0x00];
        b.extend_from_slice(&(k as u16).to_be_bytes());
        b.extend_from_slice(&((k * 160) as u32).to_be_bytes());
        b.extend_from_slice(&ssrc.to_be_bytes());
        b.extend(std::iter::repeat_n(code, 160));
        b
    };
    for k in 0..=(LAST_MS - FIRST_MS) / 20 {
        let when = at(FIRST_MS + 20 * k);
        s.raw(when, trunk_rtp, pbx_rtp, &packet(k, 0x1111, client_code(k)));
        s.raw(when, pbx_rtp, trunk_rtp, &packet(k, 0x2222, pbx_code(k)));
    }
    let config = Config::from_toml(b2bua::CONFIG, "b2bua").expect("config");
    let stored = stored::replay_scenario(&s, &config);
    let store = &stored.store;

    let calls: Vec<_> = store.all_calls().filter_map(Result::ok).collect();
    let exported: Vec<_> = calls.iter().filter(|c| c.exported).collect();
    assert_eq!(exported.len(), 1, "{calls:#?}");
    let call = exported[0];
    assert_eq!(call.operator.id, "201");
    let answer = call.answer_ns.expect("answered");
    assert_eq!(answer, at(5_000).as_nanos());
    let rec = call
        .media
        .recording
        .as_ref()
        .expect("the trunk leg's audio");
    assert_eq!(rec.file, format!("{}.wav", call.id), "named by the record");
    let talk_ms = (call.end_ns - answer) / 1_000_000;
    assert_eq!(rec.duration_ms, talk_ms, "as long as the talk time");

    let path = store.recordings_dir().join(&rec.file);
    let mut reader = hound::WavReader::open(&path).expect("a valid WAV");
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect();
    assert_eq!(samples.len() as u64, 2 * talk_ms * 8);
    // Frame i is capture time 5 s + i/8000 s: in the trunk leg's timeline, packet k
    // covers 1.1 s + 20k ms onwards.
    let mut wrong = 0;
    for (i, frame) in samples.chunks_exact(2).enumerate() {
        let ms = 5_000 + i as u64 / 8;
        if ms >= LAST_MS + 20 {
            break;
        }
        let k = (ms - FIRST_MS) / 20;
        let want = [ulaw_to_linear(pbx_code(k)), ulaw_to_linear(client_code(k))];
        if frame != want {
            wrong += 1;
        }
    }
    assert_eq!(
        wrong, 0,
        "frames away from their place or on the wrong channel"
    );

    // The trunk leg's own copy is gone: every file on disk is a record's.
    let names: Vec<String> = calls
        .iter()
        .filter_map(|c| c.media.recording.as_ref().map(|r| r.file.clone()))
        .collect();
    for entry in std::fs::read_dir(store.recordings_dir()).expect("recordings") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        assert!(names.contains(&name), "{name} belongs to no record");
    }
}
