//! Recording formats and codecs: `cargo bench --bench recording_formats`.
//!
//! 1. FLAC storage: a call's stereo 8 kHz WAV encoded to FLAC by `wav_to_flac` (what the
//!    background encoder runs), on one thread: speed in times real time per core, and
//!    bytes per hour of speech against the WAV's. The speech is a real conversation:
//!    the 60 s PCMU call of `gprshome-wireshark_sip.pcap` in ../shared/pcaps, replayed
//!    to its recording; without that folder, synthetic talk spurts (said in the output).
//! 2. G.726 against G.711: one 20 ms packet decoded (ns), and the replay cost of the
//!    same calls (SIP and two-way RTP, recorded) carried as PCMU and as G726-32, through
//!    the whole engine into a store: wall time of one run each, and the ratio.

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Instant;

use calltap::config::Config;
use calltap::engine::Engine;
use calltap::ingest::Ingest;
use calltap::media::g726::{Mode, Packing, G726};
use calltap::media::{decode_g711, ULAW};
use calltap::pcapgen::b2bua::{self, at};
use calltap::pcapgen::scenario::{Dialog, Reply, Req, Scenario};
use calltap::pcapgen::{Link, Party};
use calltap::replay::replay_files;
use calltap::store::convert::wav_to_flac;
use calltap::store::Store;

/// Replays `capture` into a fresh store under `dir`; answers the wall time.
fn replay(dir: &Path, capture: &Path, config: &Config) -> (f64, Store) {
    let store = Store::open(dir).expect("store");
    let engine = Engine::with_recordings(config, store.recordings_dir().to_path_buf());
    let mut ingest = Ingest::new(engine, &store);
    let t = Instant::now();
    replay_files(&[capture.to_path_buf()], &mut ingest, false);
    drop(ingest);
    (t.elapsed().as_secs_f64(), store)
}

/// A recording of speech: the shared capture's call, or synthetic spurts.
fn speech_wav(tmp: &Path) -> (PathBuf, &'static str) {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/pcaps/gprshome-wireshark_sip.pcap");
    if shared.is_file() {
        let (_, store) = replay(&tmp.join("speech"), &shared, &Config::default());
        let best = store
            .all_calls()
            .filter_map(Result::ok)
            .filter_map(|c| c.media.recording)
            .max_by_key(|r| r.duration_ms)
            .expect("the shared call has a recording");
        return (
            store.recordings_dir().join(best.file),
            "real speech (gprshome-wireshark_sip.pcap)",
        );
    }
    let path = tmp.join("spurts.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).expect("WAV");
    let mut lcg: u32 = 1;
    for n in 0..60 * 8000u32 {
        let t = f64::from(n) / 8000.0;
        for (ch, f0) in [(0u32, 140.0), (1, 210.0)] {
            let talking = ((t + f64::from(ch) * 1.3) / 1.3) as u32 % 2 == 0;
            lcg = lcg.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let v: f64 = (1..=10)
                .map(|k| (std::f64::consts::TAU * f0 * f64::from(k) * t).sin() / f64::from(k))
                .sum();
            let noise = f64::from((lcg >> 16) as i16) / 200.0;
            let s = if talking {
                3000.0 * v + noise
            } else {
                noise / 4.0
            };
            w.write_sample(s.round() as i16).expect("sample");
        }
    }
    w.finalize().expect("WAV written");
    (path, "synthetic talk spurts (../shared/pcaps absent)")
}

fn flac(tmp: &Path) {
    let (wav, what) = speech_wav(tmp);
    let reader = hound::WavReader::open(&wav).expect("WAV");
    let spec = reader.spec();
    let secs = f64::from(reader.duration()) / f64::from(spec.sample_rate);
    let wav_bytes = std::fs::metadata(&wav).expect("WAV").len() as f64;
    let out = tmp.join("speech.flac");
    let reps = 5;
    let mut best = f64::MAX;
    let mut flac_bytes = 0.0;
    for _ in 0..reps {
        let t = Instant::now();
        flac_bytes = wav_to_flac(&wav, &out).expect("FLAC") as f64;
        best = best.min(t.elapsed().as_secs_f64());
    }
    let per_hour = 3600.0 / secs;
    println!(
        "FLAC, {what}: {secs:.1} s stereo {} Hz; encode {:.1} ms = {:.0}x real time on one core; \
         WAV {:.1} MB/h, FLAC {:.1} MB/h ({:.0}% of the WAV)",
        spec.sample_rate,
        best * 1e3,
        secs / best,
        wav_bytes * per_hour / 1e6,
        flac_bytes * per_hour / 1e6,
        100.0 * flac_bytes / wav_bytes
    );
}

fn decode_packet() {
    let mut lcg: u32 = 9;
    let mut bytes = [0u8; 160];
    for b in &mut bytes {
        lcg = lcg.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *b = (lcg >> 24) as u8;
    }
    let mut out = [0i16; 160];
    let n = 200_000;
    let t = Instant::now();
    for _ in 0..n {
        decode_g711(&ULAW, black_box(&bytes), &mut out);
        black_box(&out);
    }
    let g711 = t.elapsed().as_secs_f64() * 1e9 / f64::from(n);
    print!("one 20 ms packet: G.711 {g711:.0} ns");
    for bits in 2..=5u8 {
        let mode = Mode::new(bits, Packing::Rfc3551).expect("mode");
        let mut d = G726::new(mode);
        let payload = &bytes[..160 * usize::from(bits) / 8];
        let t = Instant::now();
        for _ in 0..n {
            black_box(d.decode(black_box(payload), &mut out));
        }
        let ns = t.elapsed().as_secs_f64() * 1e9 / f64::from(n);
        print!(", {} {ns:.0} ns", mode.name());
    }
    println!();
}

/// `calls` two-way calls of `secs` seconds, each direction in PCMU or G726-32.
fn calls_capture(g726: bool, calls: u64, secs: u64) -> Vec<u8> {
    let mut s = Scenario::new();
    let (pt, bytes) = if g726 { (111u8, 80) } else { (0u8, 160) };
    let mut lcg: u32 = 3;
    for i in 0..calls {
        let trunk = b2bua::trunk(&format!("+1555000{i:04}")).rtp_port(30_000 + 2 * i as u16);
        let phone = b2bua::phone(&format!("{}", 200 + i % 90));
        let phone = calltap::pcapgen::scenario::Ua {
            rtp_port: 16_000 + 2 * i as u16,
            ..phone
        };
        let sdp = |addr: IpAddr, port: u16| {
            format!(
                "v=0\r\no=- 1 1 IN IP4 {addr}\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\n\
                 m=audio {port} RTP/AVP {pt}\r\na=rtpmap:111 G726-32/8000\r\n"
            )
        };
        let t0 = i * 200;
        let mut d = Dialog::new(100 + i, trunk.clone(), phone.clone());
        let inv = d.invite_with(
            at(t0),
            Req::new("INVITE").body("application/sdp", &sdp(trunk.addr, trunk.rtp_port)),
        );
        let mut ok = Reply::new(200);
        ok.body = Some(("application/sdp".into(), sdp(phone.addr, phone.rtp_port)));
        d.reply(at(t0 + 1000), &inv, ok);
        d.ack(at(t0 + 1003), &inv);
        b2bua::hang_up(&mut d, Party::Caller, t0 + 1000 + secs * 1000 + 100);
        s.add(d);
        let a = SocketAddr::new(trunk.addr, trunk.rtp_port);
        let b = SocketAddr::new(phone.addr, phone.rtp_port);
        for k in 0..secs * 50 {
            for (src, dst, ssrc) in [(a, b, 0x1000 + i as u32), (b, a, 0x2000 + i as u32)] {
                let mut p = vec![0x80, pt];
                p.extend_from_slice(&(k as u16).to_be_bytes());
                p.extend_from_slice(&((k * 160) as u32).to_be_bytes());
                p.extend_from_slice(&ssrc.to_be_bytes());
                for _ in 0..bytes {
                    lcg = lcg.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    p.push((lcg >> 24) as u8);
                }
                s.raw(at(t0 + 1020 + 20 * k), src, dst, &p);
            }
        }
    }
    s.pcap(Link::Ethernet)
}

fn replay_cost(tmp: &Path) {
    let (calls, secs) = (40, 60);
    let config = Config::from_toml(b2bua::CONFIG, "bench").expect("config");
    let mut times = Vec::new();
    for (g726, name) in [(false, "PCMU"), (true, "G726-32")] {
        let capture = tmp.join(format!("{name}.pcap"));
        std::fs::write(&capture, calls_capture(g726, calls, secs)).expect("capture");
        let (t, store) = replay(&tmp.join(name), &capture, &config);
        let recorded = store
            .all_calls()
            .filter_map(Result::ok)
            .filter(|c| c.media.recording.is_some())
            .count();
        assert_eq!(recorded as u64, calls, "{name}");
        times.push(t);
        println!("replay, {calls} calls x {secs} s two-way {name}, recorded: {t:.2} s");
    }
    println!(
        "replay cost G726-32 / PCMU: {:.2}x (one run each)",
        times[1] / times[0]
    );
}

fn main() {
    let tmp = tempfile::tempdir().expect("temp dir");
    flac(tmp.path());
    decode_packet();
    replay_cost(tmp.path());
}
