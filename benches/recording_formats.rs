//! Recording formats and codecs: `cargo bench --bench recording_formats`.
//!
//! 1. Storage: a call's stereo 8 kHz WAV encoded to FLAC and to MP3 (32 kbit/s) by
//!    `encode_file` (what the background encoder runs), on one thread: speed in times
//!    real time per core, and bytes per hour of speech against the WAV's. The speech is a real conversation:
//!    the 60 s PCMU call of `gprshome-wireshark_sip.pcap` in ../shared/pcaps, replayed
//!    to its recording; without that folder, synthetic talk spurts (said in the output).
//! 2. Each decoder against G.711: one 20 ms packet decoded (ns), and the replay cost of
//!    the same calls (SIP and two-way RTP, recorded) carried as PCMU, G726-32, G.729,
//!    GSM and Opus, through the whole engine into a store: wall time of one run each,
//!    and the ratio to PCMU.

use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Instant;

use calltap::config::Config;
use calltap::engine::Engine;
use calltap::ingest::Ingest;
use calltap::media::g726::{Mode, Packing, G726};
use calltap::media::g729::G729;
use calltap::media::gsm::Gsm;
use calltap::media::opus::Opus;
use calltap::media::{decode_g711, ULAW};
use calltap::pcapgen::b2bua::{self, at};
use calltap::pcapgen::scenario::{Dialog, Reply, Req, Scenario};
use calltap::pcapgen::{Link, Party};
use calltap::replay::replay_files;
use calltap::store::convert::{encode_file, Target};
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

fn storage(tmp: &Path) {
    let (wav, what) = speech_wav(tmp);
    let reader = hound::WavReader::open(&wav).expect("WAV");
    let spec = reader.spec();
    let secs = f64::from(reader.duration()) / f64::from(spec.sample_rate);
    let wav_bytes = std::fs::metadata(&wav).expect("WAV").len() as f64;
    let per_hour = 3600.0 / secs;
    println!(
        "{what}: {secs:.1} s stereo {} Hz, WAV {:.1} MB/h",
        spec.sample_rate,
        wav_bytes * per_hour / 1e6
    );
    for (target, name) in [
        (Target::Flac, "FLAC"),
        (Target::Opus { bitrate: 24_000 }, "Opus 24 kbit/s"),
        (Target::Mp3 { bitrate: 32_000 }, "MP3 32 kbit/s"),
    ] {
        let out = tmp.join(format!("speech.{}", target.extension()));
        let mut best = f64::MAX;
        let mut bytes = 0.0;
        for _ in 0..5 {
            let t = Instant::now();
            bytes = encode_file(target, &wav, &out).expect("encoded") as f64;
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "  {name}: encode {:.1} ms = {:.0}x real time on one core; {:.1} MB/h ({:.1}% of the WAV)",
            best * 1e3,
            secs / best,
            bytes * per_hour / 1e6,
            100.0 * bytes / wav_bytes
        );
    }
}

/// 20 ms Opus packets of a speech-like signal at 16 kHz, from opus-rs's encoder.
fn opus_packets(count: usize) -> Vec<Vec<u8>> {
    let mut enc =
        opus_rs::OpusEncoder::new(16_000, 1, opus_rs::Application::Voip).expect("Opus encoder");
    enc.bitrate_bps = 24_000;
    let mut buf = [0u8; 1500];
    (0..count)
        .map(|k| {
            let pcm: Vec<i16> = (0..320)
                .map(|i| {
                    let t = (k * 320 + i) as f64 / 16_000.0;
                    let v: f64 = (1..=8)
                        .map(|h| {
                            (std::f64::consts::TAU * 140.0 * f64::from(h) * t).sin() / f64::from(h)
                        })
                        .sum();
                    (4000.0 * v) as i16
                })
                .collect();
            let n = enc.encode_i16(&pcm, 320, &mut buf).expect("encode");
            buf[..n].to_vec()
        })
        .collect()
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
    let per = |t: Instant, n: u32| t.elapsed().as_secs_f64() * 1e9 / f64::from(n);
    let n = 20_000;
    let mut g729 = G729::default();
    let t = Instant::now();
    for _ in 0..n {
        black_box(g729.decode(black_box(&bytes[..20]), &mut out));
    }
    print!(", G.729 {:.0} ns", per(t, n));
    let mut gsm_frame = [0u8; 33];
    gsm_frame.copy_from_slice(&bytes[..33]);
    gsm_frame[0] = 0xD0 | (gsm_frame[0] & 0x0F);
    let mut gsm = Gsm::new().expect("libgsm");
    let t = Instant::now();
    for _ in 0..n {
        black_box(gsm.decode(black_box(&gsm_frame), &mut out));
    }
    print!(", GSM {:.0} ns", per(t, n));
    let packets = opus_packets(50);
    let mut opus = Opus::new(16_000).expect("Opus");
    let mut wide = [0i16; 320];
    let t = Instant::now();
    for k in 0..n {
        black_box(opus.decode(black_box(&packets[k as usize % 50]), &mut wide));
    }
    println!(", Opus (16 kHz out) {:.0} ns", per(t, n));
}

/// A codec the replay bench carries.
#[derive(Clone, Copy, PartialEq)]
enum Codec {
    Pcmu,
    G726,
    G729,
    Gsm,
    Opus,
}

impl Codec {
    fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::G726 => "G726-32",
            Codec::G729 => "G729",
            Codec::Gsm => "GSM",
            Codec::Opus => "opus",
        }
    }

    /// Payload type, rtpmap, octets of a 20 ms packet (0: Opus's own), RTP clock step.
    fn rtp(self) -> (u8, &'static str, usize, u64) {
        match self {
            Codec::Pcmu => (0, "", 160, 160),
            Codec::G726 => (111, "a=rtpmap:111 G726-32/8000\r\n", 80, 160),
            Codec::G729 => (18, "", 20, 160),
            Codec::Gsm => (3, "", 33, 160),
            Codec::Opus => (111, "a=rtpmap:111 opus/48000/2\r\n", 0, 960),
        }
    }
}

/// `calls` two-way calls of `secs` seconds, each direction in `codec`.
fn calls_capture(codec: Codec, calls: u64, secs: u64) -> Vec<u8> {
    let mut s = Scenario::new();
    let (pt, rtpmap, bytes, step) = codec.rtp();
    let opus = opus_packets(if codec == Codec::Opus { 250 } else { 0 });
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
                 m=audio {port} RTP/AVP {pt}\r\n{rtpmap}"
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
                p.extend_from_slice(&((k * step) as u32).to_be_bytes());
                p.extend_from_slice(&ssrc.to_be_bytes());
                if codec == Codec::Opus {
                    p.extend_from_slice(&opus[k as usize % opus.len()]);
                }
                for i in 0..bytes {
                    lcg = lcg.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    let b = (lcg >> 24) as u8;
                    // A GSM frame starts with its signature nibble.
                    p.push(if codec == Codec::Gsm && i == 0 {
                        0xD0 | (b & 0x0F)
                    } else {
                        b
                    });
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
    let codecs = [
        Codec::Pcmu,
        Codec::G726,
        Codec::G729,
        Codec::Gsm,
        Codec::Opus,
    ];
    for codec in codecs {
        let name = codec.name();
        let capture = tmp.join(format!("{name}.pcap"));
        std::fs::write(&capture, calls_capture(codec, calls, secs)).expect("capture");
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
    for (codec, t) in codecs.iter().zip(&times).skip(1) {
        println!(
            "replay cost {} / PCMU: {:.2}x (one run each)",
            codec.name(),
            t / times[0]
        );
    }
}

fn main() {
    let tmp = tempfile::tempdir().expect("temp dir");
    storage(tmp.path());
    decode_packet();
    replay_cost(tmp.path());
}
