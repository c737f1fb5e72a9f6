//! Compact storage. FLAC (`[recording] format = "flac"`): the WAV a call is recorded into is
//! encoded once the call is stored, losslessly (symphonia, another implementation than
//! the encoder, decodes it back to the WAV's samples, channel by channel); the record,
//! the store's totals, retention and the API then see the FLAC; and a SIGKILL while the
//! real binary encodes leaves every record naming a whole file, the WAV served, and the
//! next start encodes what was left. MP3: the encoded file decodes (ffmpeg) to audio
//! aligned with the WAV, each party on its own channel.

#[path = "support/skip.rs"]
mod skip;
#[path = "support/stored.rs"]
mod stored;
#[path = "support/tinydisk.rs"]
mod tinydisk;

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use calltap::capture::Timestamp;
use calltap::config::Config;
use calltap::engine::Engine;
use calltap::ingest::Ingest;
use calltap::pcapgen::{CallScript, Party, Phone, Signal};
use calltap::replay::replay_files;
use calltap::store::convert::{wav_to_flac, Converter, Target};
use calltap::store::retention::Retention;
use calltap::store::Store;
use symphonia_bundle_flac::{FlacDecoder, FlacReader};
use symphonia_core::audio::SampleBuffer;
use symphonia_core::codecs::{Decoder, DecoderOptions};
use symphonia_core::formats::{FormatOptions, FormatReader};
use symphonia_core::io::MediaSourceStream;

/// A decoded recording: rate, channels, interleaved samples.
type Pcm = (u32, u16, Vec<i16>);

fn read_wav(path: &Path) -> Pcm {
    let mut r = hound::WavReader::open(path).expect("a valid WAV");
    let spec = r.spec();
    let samples = r.samples::<i16>().map(|s| s.expect("sample")).collect();
    (spec.sample_rate, spec.channels, samples)
}

/// symphonia's FLAC reader and decoder.
fn read_flac(path: &Path) -> Pcm {
    let file = File::open(path).expect("the FLAC");
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let mut reader = FlacReader::try_new(mss, &FormatOptions::default()).expect("a FLAC stream");
    let params = reader
        .default_track()
        .expect("a track")
        .codec_params
        .clone();
    let rate = params.sample_rate.expect("a rate");
    let channels = params.channels.expect("channels").count() as u16;
    let mut decoder =
        FlacDecoder::try_new(&params, &DecoderOptions { verify: true }).expect("a FLAC decoder");
    let mut out = Vec::new();
    loop {
        let packet = match reader.next_packet() {
            Ok(p) => p,
            Err(symphonia_core::errors::Error::IoError(e))
                if e.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                break
            }
            Err(e) => panic!("reading {}: {e}", path.display()),
        };
        let decoded = decoder.decode(&packet).expect("a FLAC frame");
        let mut buf = SampleBuffer::<i16>::new(decoded.capacity() as u64, *decoded.spec());
        buf.copy_interleaved_ref(decoded);
        out.extend_from_slice(buf.samples());
    }
    (rate, channels, out)
}

#[test]
fn flac_decodes_to_the_wavs_samples_channel_by_channel() {
    let dir = tempfile::tempdir().expect("temp dir");
    for rate in [8000u32, 16_000] {
        let wav = dir.path().join(format!("r{rate}.wav"));
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&wav, spec).expect("WAV");
        let mut lcg: u32 = 7;
        // Left: a tone with silences; right: noise at another level. Ten seconds and a
        // bit, so the last FLAC block is a short one.
        for n in 0..(10 * rate + 123) {
            let t = f64::from(n) / f64::from(rate);
            let left = if (t * 2.0) as u32 % 3 == 2 {
                0.0
            } else {
                9000.0 * (std::f64::consts::TAU * 440.0 * t).sin()
            };
            lcg = lcg.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            w.write_sample(left.round() as i16).expect("sample");
            w.write_sample((lcg >> 16) as i16 / 16).expect("sample");
        }
        w.finalize().expect("WAV written");
        let flac = dir.path().join(format!("r{rate}.flac"));
        let bytes = wav_to_flac(&wav, &flac).expect("encoded");
        assert_eq!(std::fs::metadata(&flac).expect("FLAC").len(), bytes);
        assert!(!dir.path().join(format!("r{rate}.flac.part")).exists());
        let wav_bytes = std::fs::metadata(&wav).expect("WAV").len();
        assert!(bytes < wav_bytes, "{bytes} >= {wav_bytes}");
        assert_eq!(read_flac(&flac), read_wav(&wav), "{rate} Hz");
    }
}

/// Calls of `talk_s` seconds each, every party with its own signal.
fn calls_capture(calls: usize, talk_s: u64) -> Vec<u8> {
    let base = Timestamp::from_nanos(1_772_614_800 * 1_000_000_000);
    let mut packets = Vec::new();
    for i in 0..calls {
        let n = i as u32;
        let caller = Phone::new(
            &format!("{}", 201 + i),
            IpAddr::V4(Ipv4Addr::new(10, 0, 1, 20 + i as u8)),
            16_000 + 2 * i as u16,
        )
        .signal(Signal::Tone {
            freq_hz: 300 + 100 * n,
            amplitude: 6000,
        });
        let callee = Phone::new(
            &format!("+1555{:07}", 1000 + i),
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, 20 + i as u8)),
            26_000 + 2 * i as u16,
        )
        .signal(Signal::Spurts {
            f0_hz: 500 + 50 * n,
            f1_hz: 2500,
            on_ms: 700,
            off_ms: 400,
            offset_ms: 0,
            amplitude: 8000,
        });
        let script = CallScript::new(0xF1AC + i as u64)
            .caller(caller)
            .callee(callee)
            .start(base.saturating_add(Duration::from_millis(1_500 * i as u64)))
            .talk(Duration::from_secs(talk_s))
            .hangup_by(Party::Callee);
        packets.extend(script.to_vec());
    }
    packets.sort_by_key(|p| p.time);
    stored::pcap_of(&packets)
}

const CONFIG: &str = "[network]\ninternal = [\"10.0.0.0/16\"]\n";

/// Replays `capture` into a new store at `dir`, encoding to FLAC when `flac`.
fn replay_into(dir: &Path, capture: &Path, flac: bool) -> Arc<Store> {
    replay_encoded(dir, capture, flac.then_some(Target::Flac))
}

/// Replays `capture` into a new store at `dir`, encoding stored recordings to `target`.
fn replay_encoded(dir: &Path, capture: &Path, target: Option<Target>) -> Arc<Store> {
    let store = Arc::new(Store::open(dir).expect("store"));
    let config = Config::from_toml(CONFIG, "tests/flac.rs").expect("config");
    let converter = target.map(|t| Converter::start(store.clone(), t).expect("encoder"));
    let engine = Engine::with_recordings(&config, store.recordings_dir().to_path_buf());
    let mut ingest = Ingest::new(engine, &store);
    if let Some(c) = &converter {
        ingest.convert_with(c.queue());
    }
    replay_files(&[capture.to_path_buf()], &mut ingest, false);
    drop(ingest);
    if let Some(c) = converter {
        c.finish();
    }
    store
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("recordings")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn stored_recordings_become_flac_counted_by_their_real_size() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let capture = tmp.path().join("calls.pcap");
    std::fs::write(&capture, calls_capture(3, 20)).expect("capture");
    let wav_store = replay_into(&tmp.path().join("wav"), &capture, false);
    let flac_store = replay_into(&tmp.path().join("flac"), &capture, true);

    let calls: Vec<_> = flac_store.all_calls().map(|c| c.expect("record")).collect();
    assert_eq!(calls.len(), 3);
    let (mut wav_total, mut flac_total) = (0, 0);
    for call in &calls {
        let rec = call.media.recording.as_ref().expect("a recording");
        assert_eq!(rec.file, format!("{}.flac", call.id));
        assert_eq!((rec.extension(), rec.mime_type()), ("flac", "audio/flac"));
        let path = flac_store.recordings_dir().join(&rec.file);
        assert_eq!(std::fs::metadata(&path).expect("FLAC").len(), rec.bytes);
        // The same call recorded as WAV: same samples, same channels, same duration.
        let wav_call = wav_store
            .get_call(&call.id)
            .expect("read")
            .expect("the same call");
        let wav = wav_call.media.recording.expect("its WAV");
        assert_eq!(wav.duration_ms, rec.duration_ms);
        assert_eq!(wav.sample_rate, rec.sample_rate);
        let pcm = read_wav(&wav_store.recordings_dir().join(&wav.file));
        assert_eq!(read_flac(&path), pcm, "{}", call.id);
        let (left, right): (Vec<i16>, Vec<i16>) =
            pcm.2.chunks_exact(2).map(|f| (f[0], f[1])).unzip();
        assert_ne!(left, right, "two parties, two channels");
        // Only a record that still names the WAV as it was is pointed elsewhere.
        assert!(!flac_store
            .replace_recording(&call.id, &wav, rec)
            .expect("store"));
        wav_total += wav.bytes;
        flac_total += rec.bytes;
    }
    let names = files(flac_store.recordings_dir());
    assert!(names.iter().all(|n| n.ends_with(".flac")), "{names:?}");
    assert_eq!(names.len(), 3);
    let totals = flac_store.recordings_totals().expect("totals");
    assert_eq!((totals.count, totals.bytes), (3, flac_total));
    assert!(
        flac_total * 3 < wav_total * 2,
        "{flac_total} vs {wav_total}"
    );

    // max_disk between the two sizes: the FLAC store is under it, the WAV one is not.
    let cap = (wav_total + flac_total) / 2;
    let store_config = Config::from_toml(&format!("[store]\nmax_disk = {cap}\n"), "t")
        .expect("config")
        .store;
    let now = 1_772_614_800 + 3600;
    let kept = Retention::new(&store_config)
        .sweep(&flac_store, now)
        .expect("sweep");
    assert_eq!(kept.recordings_deleted, 0);
    assert_eq!(kept.recordings_bytes, flac_total);
    let cut = Retention::new(&store_config)
        .sweep(&wav_store, now)
        .expect("sweep");
    assert!(cut.recordings_deleted > 0);
}

#[test]
fn the_api_serves_the_flac_under_its_type_and_name_even_on_a_wav_link() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let capture = tmp.path().join("call.pcap");
    std::fs::write(&capture, calls_capture(1, 10)).expect("capture");
    let store = replay_into(&tmp.path().join("store"), &capture, false);
    let id = store
        .all_calls()
        .next()
        .expect("a call")
        .expect("record")
        .id;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let port = listener.local_addr().expect("addr").port();
        let config = Config::from_toml(
            &format!(
                "[api]\nlisten = \"127.0.0.1:{port}\"\nsecret_keys = [\"k\"]\n\
                 link_keys = [\"link\"]\npublic_url = \"http://127.0.0.1:{port}\"\n"
            ),
            "t",
        )
        .expect("config");
        let state = calltap::api::AppState::new(config, store.clone()).expect("state");
        tokio::spawn(calltap::api::serve_on(
            listener,
            state,
            std::future::pending(),
        ));
        let client = reqwest::Client::new();
        let link = |client: reqwest::Client| {
            let id = id.clone();
            async move {
                let v: serde_json::Value = client
                    .get(format!("http://127.0.0.1:{port}/calls/{id}/recording"))
                    .header("X-Secret-Key", "k")
                    .send()
                    .await
                    .expect("link")
                    .json()
                    .await
                    .expect("JSON");
                v
            }
        };
        let before = link(client.clone()).await;
        assert_eq!(before["mimeType"], "audio/wav");
        assert_eq!(before["filename"], format!("call_recording_{id}.wav"));
        let wav_url = before["url"].as_str().expect("url").to_owned();
        assert!(
            wav_url.contains(&format!("/recordings/{id}.wav?")),
            "{wav_url}"
        );

        // A restart with format = "flac": the encoder finds the stored WAV.
        let s = store.clone();
        tokio::task::spawn_blocking(move || {
            Converter::start(s, Target::Flac).expect("encoder").finish()
        })
        .await
        .expect("encoded");
        let flac_path = store.recordings_dir().join(format!("{id}.flac"));
        let flac_bytes = std::fs::read(&flac_path).expect("the FLAC");
        assert!(!store.recordings_dir().join(format!("{id}.wav")).exists());

        let after = link(client.clone()).await;
        assert_eq!(after["mimeType"], "audio/flac");
        assert_eq!(after["filename"], format!("call_recording_{id}.flac"));
        assert!(after["url"]
            .as_str()
            .expect("url")
            .contains(&format!("/recordings/{id}.flac?")));
        // The link made for the WAV serves the FLAC now, whole and by range.
        let whole = client.get(&wav_url).send().await.expect("download");
        assert_eq!(whole.status(), 200);
        let header = |r: &reqwest::Response, name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        assert_eq!(header(&whole, "content-type"), "audio/flac");
        assert_eq!(
            header(&whole, "content-disposition"),
            format!("attachment; filename=\"call_recording_{id}.flac\"")
        );
        assert_eq!(whole.bytes().await.expect("body").to_vec(), flac_bytes);
        let part = client
            .get(after["url"].as_str().expect("url"))
            .header("Range", "bytes=0-3")
            .send()
            .await
            .expect("range");
        assert_eq!(part.status(), 206);
        assert_eq!(
            header(&part, "content-range"),
            format!("bytes 0-3/{}", flac_bytes.len())
        );
        assert_eq!(&part.bytes().await.expect("body")[..], b"fLaC");
    });
}

fn calltap() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_calltap"));
    cmd.env_remove("CALLTAP_CONFIG")
        .env("CALLTAP_LOG", "error")
        .env("CALLTAP_SECRET_KEY", "flac-key");
    cmd
}

/// Every record names a file that exists with the size it states; answers the names.
fn consistent(store: &Store) -> Vec<String> {
    let mut names = Vec::new();
    for call in store.all_calls() {
        let call = call.expect("record");
        let rec = call.media.recording.expect("a recording");
        let meta = std::fs::metadata(store.recordings_dir().join(&rec.file));
        assert_eq!(meta.map(|m| m.len()).ok(), Some(rec.bytes), "{}", rec.file);
        names.push(rec.file);
    }
    names
}

#[test]
fn a_sigkill_while_encoding_leaves_the_wav_served_and_the_next_start_encodes_it() {
    const CALLS: usize = 6;
    let tmp = tempfile::tempdir().expect("temp dir");
    let capture_path = tmp.path().join("calls.pcap");
    std::fs::write(&capture_path, calls_capture(CALLS, 60)).expect("capture");
    let config = tmp.path().join("calltap.toml");
    std::fs::write(&config, format!("{CONFIG}[recording]\nformat = \"flac\"\n")).expect("config");
    let store_dir = tmp.path().join("store");
    let recordings = store_dir.join("recordings");
    let replay = || {
        let mut cmd = calltap();
        cmd.args(["replay", "-q", "--config"])
            .arg(&config)
            .arg("--data")
            .arg(&store_dir)
            .arg(&capture_path);
        cmd
    };

    // Killed once the first FLAC is on disk: the encoder is at work on the next WAV.
    let mut child = replay().spawn().expect("calltap runs");
    let started = Instant::now();
    let killed = loop {
        let flac_seen = std::fs::read_dir(&recordings)
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().contains(".flac"))
            })
            .unwrap_or(false);
        if flac_seen {
            child.kill().expect("SIGKILL");
            break true;
        }
        if child.try_wait().expect("status").is_some() {
            break false;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no FLAC appeared"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    let _ = child.wait();
    assert!(
        killed,
        "the replay finished before a kill: the test proves nothing"
    );

    {
        // Every record names a whole file: the WAV until its FLAC is named instead.
        let store = Store::open(&store_dir).expect("store after the kill");
        let names = consistent(&store);
        assert_eq!(
            names.len(),
            CALLS,
            "every call was stored before encoding began"
        );
        let wavs = names.iter().filter(|n| n.ends_with(".wav")).count();
        println!("at the kill: {wavs} of {CALLS} records name their WAV");
        assert!(wavs > 0, "some WAVs were still to encode at the kill");
    }

    // The next start (here a repeat replay: every call is already stored) encodes the
    // rest, and nothing is left behind.
    let out = replay().output().expect("calltap runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = Store::open(&store_dir).expect("store");
    let names = consistent(&store);
    assert!(names.iter().all(|n| n.ends_with(".flac")), "{names:?}");
    let on_disk = files(&recordings);
    assert_eq!(on_disk, {
        let mut n = names.clone();
        n.sort();
        n
    });
    // Lossless through the kill: each FLAC is the audio a WAV-format replay records.
    let reference = replay_into(&tmp.path().join("reference"), &capture_path, false);
    for call in reference.all_calls() {
        let call = call.expect("record");
        let wav = call.media.recording.expect("WAV");
        let flac: PathBuf = recordings.join(format!("{}.flac", call.id));
        assert_eq!(
            read_flac(&flac),
            read_wav(&reference.recordings_dir().join(&wav.file)),
            "{}",
            call.id
        );
    }
}

/// With FLAC storage a call's `recording.ready` waits for the encoder: receivers are
/// told the FLAC (its name, type and size), once per call, never the WAV it replaced.
#[test]
fn recording_ready_names_the_flac() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let capture = tmp.path().join("calls.pcap");
    std::fs::write(&capture, calls_capture(3, 5)).expect("capture");
    let store = Arc::new(Store::open(&tmp.path().join("store")).expect("store"));
    let config = Config::from_toml(CONFIG, "tests/flac.rs").expect("config");
    let converter = Converter::start(store.clone(), Target::Flac).expect("encoder");
    let mut engine = Engine::with_recordings(&config, store.recordings_dir().to_path_buf());
    engine.emit_call_events(&config);
    let mut ingest = Ingest::new(engine, &store);
    ingest.convert_with(converter.queue());
    replay_files(&[capture], &mut ingest, false);
    drop(ingest);
    converter.finish();

    let events = store.events_after(0, 1000).expect("outbox");
    let ready: Vec<_> = events
        .iter()
        .map(|(_, e)| e)
        .filter(|e| e.kind == calltap::events::EventKind::RecordingReady)
        .collect();
    assert_eq!(ready.len(), 3, "one per call");
    for event in ready {
        let id = event.data["id"].as_str().expect("call id");
        let rec = store
            .get_call(id)
            .expect("read")
            .and_then(|c| c.media.recording)
            .expect("a recording");
        assert_eq!(rec.file, format!("{id}.flac"));
        let told = &event.data["recording"];
        assert_eq!(told["filename"], format!("call_recording_{id}.flac"));
        assert_eq!(told["mimeType"], "audio/flac");
        assert_eq!(told["bytes"], rec.bytes);
    }
    assert_eq!(
        store.release_settled_held(true).expect("held"),
        0,
        "none left held"
    );
}

/// Normalised correlation of `a` and `b` with `b` delayed by `lag` samples.
fn correlation(a: &[f64], b: &[f64], lag: usize) -> f64 {
    let n = a.len().min(b.len().saturating_sub(lag));
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (x, y) = (a[i], b[i + lag]);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa * bb).sqrt()
    }
}

/// Call `id`'s stored WAV: its size, rate, and its two channels.
fn wav_channels(store: &Store, id: &str) -> (u64, u32, [Vec<f64>; 2]) {
    let rec = store
        .get_call(id)
        .expect("store")
        .and_then(|c| c.media.recording)
        .expect("its WAV");
    let (rate, _, wav) = read_wav(&store.recordings_dir().join(&rec.file));
    let channel = |ch: usize| {
        wav.iter()
            .skip(ch)
            .step_by(2)
            .map(|&s| f64::from(s))
            .collect()
    };
    (rec.bytes, rate, [channel(0), channel(1)])
}

/// ffmpeg's decode of an encoded recording, stereo s16le at `rate`, as two channels.
fn ffmpeg_channels(path: &Path, rate: u32) -> [Vec<f64>; 2] {
    let out = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-i"])
        .arg(path)
        .args(["-f", "s16le", "-ac", "2", "-ar", &rate.to_string(), "-"])
        .output()
        .expect("run ffmpeg");
    assert!(out.status.success(), "ffmpeg reads {}", path.display());
    let samples: Vec<f64> = out
        .stdout
        .chunks_exact(2)
        .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])))
        .collect();
    [
        samples.iter().step_by(2).copied().collect(),
        samples.iter().skip(1).step_by(2).copied().collect(),
    ]
}

/// MP3 storage: each stored call's file decodes (ffmpeg, a decoder that is not the
/// encoder's) to audio in place, the operator's tone sample-aligned with the WAV's at
/// LAME's fixed encoder delay, and the client's channel following the client's
/// talkspurts, not the operator. The record names the file, its MIME type follows.
#[test]
fn stored_recordings_become_mp3_aligned_with_the_wav() {
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        skip::skip("ffmpeg is not installed (Debian: ffmpeg)");
        return;
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let capture = tmp.path().join("calls.pcap");
    std::fs::write(&capture, calls_capture(2, 20)).expect("capture");
    let wav_store = replay_encoded(&tmp.path().join("wav"), &capture, None);
    let targets = [(
        Target::Mp3 { bitrate: 32_000 },
        "mp3",
        "audio/mpeg",
        0..=2_000,
    )];
    for (target, ext, mime, lags) in targets {
        let store = replay_encoded(&tmp.path().join(ext), &capture, Some(target));
        for call in store.all_calls().map(|c| c.expect("record")) {
            let rec = call.media.recording.as_ref().expect("a recording");
            assert!(rec.file.ends_with(&format!(".{ext}")), "{}", rec.file);
            assert_eq!(rec.mime_type(), mime);
            let path = store.recordings_dir().join(&rec.file);
            assert_eq!(std::fs::metadata(&path).expect("file").len(), rec.bytes);
            let (wav_bytes, rate, wav) = wav_channels(&wav_store, &call.id);
            assert!(
                rec.bytes * 4 < wav_bytes,
                "{ext}: {} of {wav_bytes}",
                rec.bytes
            );
            let decoded = ffmpeg_channels(&path, rate);
            // Sample alignment on the operator's tone (a waveform a speech codec keeps).
            let (lag, best) = lags
                .clone()
                .map(|lag| (lag, correlation(&wav[0], &decoded[0], lag)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .expect("a lag");
            eprintln!("{ext}: tone correlation {best:.3} at lag {lag}");
            assert!(best > 0.9, "{ext}: tone correlation {best:.3}");
            // The client's channel follows the client's talkspurts and pauses (10 ms
            // envelopes), and the operator's steady tone does not leak into it.
            let envelope = |x: &[f64]| -> Vec<f64> {
                let e: Vec<f64> = x
                    .chunks(rate as usize / 100)
                    .map(|c| (c.iter().map(|v| v * v).sum::<f64>() / c.len() as f64).sqrt())
                    .collect();
                // Centred, so a steady tone correlates with nothing.
                let mean = e.iter().sum::<f64>() / e.len().max(1) as f64;
                e.iter().map(|v| v - mean).collect()
            };
            let env_wav = [envelope(&wav[0]), envelope(&wav[1])];
            {
                let ch = 1;
                let d = &decoded[ch];
                let shifted = &d[lag.min(d.len())..];
                let own = correlation(&env_wav[ch], &envelope(shifted), 0);
                let other = correlation(&env_wav[1 - ch], &envelope(shifted), 0);
                eprintln!("{ext} channel {ch}: envelope {own:.3}, the other's {other:.3}");
                assert!(
                    own > 0.8,
                    "{ext} channel {ch}: envelope correlation {own:.3}"
                );
                assert!(
                    other.abs() < 0.2,
                    "{ext} channel {ch} follows the other party"
                );
                let leak = correlation(&wav[0], &d[lag.min(d.len())..], 0);
                assert!(
                    leak.abs() < 0.1,
                    "{ext}: the operator's tone in the client's channel"
                );
            }
        }
    }
}

/// `calltap recordings convert --to mp3` encodes what a WAV store holds, resumably: a
/// `.part` an interrupted run left is cleared, every record ends naming its MP3, the
/// WAVs go, and a second run finds nothing to do; a format that is none is refused.
#[test]
fn recordings_convert_encodes_a_wav_store_and_resumes() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let capture = tmp.path().join("calls.pcap");
    std::fs::write(&capture, calls_capture(3, 5)).expect("capture");
    let data = tmp.path().join("store");
    let store = replay_encoded(&data, &capture, None);
    let ids: Vec<String> = store.all_calls().map(|c| c.expect("record").id).collect();
    assert_eq!(ids.len(), 3);
    drop(store);
    // An earlier run stopped mid-encode.
    std::fs::write(
        data.join("recordings").join(format!("{}.mp3.part", ids[0])),
        b"half",
    )
    .expect("a partial file");
    let convert = |to: &str| {
        Command::new(env!("CARGO_BIN_EXE_calltap"))
            .args(["recordings", "convert", "--to", to, "--data"])
            .arg(&data)
            .env("CALLTAP_LOG", "error")
            .output()
            .expect("run calltap")
    };
    let out = convert("mp3");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.starts_with("3 encoded, 0 failed"), "{said}");
    let store = Store::open(&data).expect("store");
    for id in &ids {
        let rec = store
            .get_call(id)
            .expect("store")
            .and_then(|c| c.media.recording)
            .expect("a recording");
        assert_eq!(rec.file, format!("{id}.mp3"));
    }
    let mut expected: Vec<String> = ids.iter().map(|id| format!("{id}.mp3")).collect();
    expected.sort();
    assert_eq!(files(&data.join("recordings")), expected);
    drop(store);
    let again = convert("mp3");
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("0 encoded"));
    let ogg = convert("ogg");
    assert_eq!(ogg.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&ogg.stderr).contains("not a recording format"));
}

/// Opus storage: the operator's tone of the generated calls comes back sample-aligned
/// (lag 0: the pre-skip in the header is the encoder's delay), and a real conversation
/// (the G.711 call of `gprshome-wireshark_sip.pcap`) comes back with each party's
/// loudness following that party's speech, at its level, on its own channel.
#[test]
fn stored_recordings_become_ogg_opus_each_party_on_its_own_channel() {
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        skip::skip("ffmpeg is not installed (Debian: ffmpeg)");
        return;
    }
    let Some(pcaps) = skip::shared_pcaps() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let opus = Target::Opus { bitrate: 24_000 };
    let generated = tmp.path().join("calls.pcap");
    std::fs::write(&generated, calls_capture(1, 10)).expect("capture");
    let real = pcaps.join("gprshome-wireshark_sip.pcap");
    for (capture, tone) in [(generated, true), (real, false)] {
        let name = if tone { "generated" } else { "real" };
        let wav_store = replay_encoded(&tmp.path().join(format!("{name}-wav")), &capture, None);
        let store = replay_encoded(
            &tmp.path().join(format!("{name}-opus")),
            &capture,
            Some(opus),
        );
        let call = store
            .all_calls()
            .map(|c| c.expect("record"))
            .filter(|c| c.media.recording.is_some())
            .max_by_key(|c| c.media.recording.as_ref().map(|r| r.duration_ms))
            .expect("a recorded call");
        let rec = call.media.recording.as_ref().expect("a recording");
        assert!(rec.file.ends_with(".opus"), "{}", rec.file);
        assert_eq!(rec.mime_type(), "audio/ogg");
        let path = store.recordings_dir().join(&rec.file);
        let (wav_bytes, rate, wav) = wav_channels(&wav_store, &call.id);
        assert!(rec.bytes * 8 < wav_bytes, "{} of {wav_bytes}", rec.bytes);
        let decoded = ffmpeg_channels(&path, rate);
        let (got, want) = (decoded[0].len(), wav[0].len());
        assert!(got.abs_diff(want) <= 1, "{got} samples decoded of {want}");
        if tone {
            let c = correlation(&wav[0], &decoded[0], 0);
            eprintln!("opus: tone correlation {c:.3} at lag 0");
            assert!(c > 0.95, "tone correlation {c:.3}");
            continue;
        }
        let envelope = |x: &[f64]| -> Vec<f64> {
            let e: Vec<f64> = x
                .chunks(rate as usize / 50)
                .map(|c| (c.iter().map(|v| v * v).sum::<f64>() / c.len() as f64).sqrt())
                .collect();
            let mean = e.iter().sum::<f64>() / e.len().max(1) as f64;
            e.iter().map(|v| v - mean).collect()
        };
        let rms = |x: &[f64]| (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64).sqrt();
        for ch in 0..2 {
            if rms(&wav[ch]) < 1.0 {
                // A party that said nothing stays silent: nothing of the other leaks in.
                let leak = rms(&decoded[ch]);
                eprintln!(
                    "opus, real speech, channel {ch}: silent in the WAV, rms {leak:.1} decoded"
                );
                assert!(
                    leak < 8.0,
                    "channel {ch}: {leak:.1} rms where the WAV is silent"
                );
                continue;
            }
            let own = correlation(&envelope(&wav[ch]), &envelope(&decoded[ch]), 0);
            let other = correlation(&envelope(&wav[1 - ch]), &envelope(&decoded[ch]), 0);
            let level = rms(&decoded[ch]) / rms(&wav[ch]);
            eprintln!("opus, real speech, channel {ch}: envelope {own:.3}, the other party's {other:.3}, level {level:.2}");
            assert!(own > 0.9, "channel {ch}: envelope correlation {own:.3}");
            assert!(other < own - 0.2, "channel {ch} follows the other party");
            assert!(
                (0.7..1.4).contains(&level),
                "channel {ch}: level {level:.2}"
            );
        }
    }
}

/// A disk that fills while encoding: the recordings folder is a tmpfs with room for the
/// WAVs and a few KiB more, so every FLAC fails part-way (ENOSPC). Each record still
/// names its WAV, whole and served; the failures are counted; no `.part` is left.
#[test]
fn a_disk_that_fills_while_encoding_keeps_every_wav() {
    let Some(disk) = tinydisk::TinyDisk::mount(8 << 20) else {
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let capture = tmp.path().join("calls.pcap");
    std::fs::write(&capture, calls_capture(3, 20)).expect("capture");
    let data = tmp.path().join("store");
    std::fs::create_dir_all(&data).expect("store folder");
    std::os::unix::fs::symlink(disk.dir.path(), data.join("recordings")).expect("link");
    let store = replay_encoded(&data, &capture, None);
    let calls: Vec<_> = store.all_calls().map(|c| c.expect("record")).collect();
    assert_eq!(calls.len(), 3);
    let wav_bytes: u64 = calls
        .iter()
        .map(|c| c.media.recording.as_ref().expect("a recording").bytes)
        .sum();
    drop(store);
    assert!(disk.resize(wav_bytes + 16 * 1024), "tmpfs resized");
    let store = Arc::new(Store::open(&data).expect("store"));
    let converter = Converter::start(store.clone(), Target::Flac).expect("encoder");
    let queue = converter.queue();
    let stats = {
        while queue.stats().backlog > 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
        queue.stats()
    };
    drop(queue);
    converter.finish();
    assert_eq!((stats.encoded, stats.failed), (0, 3), "{stats:?}");
    for call in &calls {
        let now = store
            .get_call(&call.id)
            .expect("store")
            .and_then(|c| c.media.recording)
            .expect("a recording");
        assert_eq!(Some(&now), call.media.recording.as_ref(), "still the WAV");
        let (_, channels, samples) = read_wav(&store.recordings_dir().join(&now.file));
        assert_eq!(channels, 2);
        assert!(!samples.is_empty());
    }
    let left = files(disk.dir.path());
    assert!(left.iter().all(|f| f.ends_with(".wav")), "{left:?}");
}
