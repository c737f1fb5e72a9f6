//! G.729, GSM 06.10 and Opus against their references, and through the whole engine.
//!
//! - G.729: streams of voice and Annex B SID frames from `g729-sys`'s encoder, decoded
//!   by calltap and by bcg729 (Debian's libbcg729-0, through python3's ctypes) sample
//!   for sample; and the third-party G.729 capture of `../shared/pcaps` (SIPp against
//!   FreeSWITCH), whose recording must hold bcg729's decode of the captured payloads.
//! - GSM: streams from libgsm through ffmpeg's encoder, decoded by calltap (libgsm) and
//!   by ffmpeg's own GSM decoder.
//! - Opus: streams from libopus through ffmpeg, in Ogg, decoded packet by packet by
//!   calltap (opus-rs) and by ffmpeg with libopus; Opus is not specified bit-exactly
//!   (RFC 6716 4: a decoder conforms within a quality bound), so closeness is held.
//! - A call whose two directions use different codecs (G.729 one way, Opus the other)
//!   gives one stereo file at the wide rate, each channel the reference decode in place.
//!
//! Needs ffmpeg and python3 with libbcg729-0 (Debian packages; `.ci/run` installs
//! them); without them the tests say so and skip.

#[path = "support/audio.rs"]
mod audio;
#[path = "support/skip.rs"]
mod skip;
#[path = "support/stored.rs"]
mod stored;

use std::path::Path;
use std::process::Command;

use audio::{have, samples, signal, snr};
use calltap::media::g729::G729;
use calltap::media::gsm::{self, Gsm};
use calltap::media::opus::Opus;

fn ffmpeg_available() -> bool {
    if have("ffmpeg", &["-version"]) {
        true
    } else {
        skip::skip("ffmpeg is not installed (Debian: ffmpeg)");
        false
    }
}

/// ffmpeg decodes `input` (given as ffmpeg input arguments) to mono s16le at `rate`.
fn ffmpeg_decode(input_args: &[&str], input: &Path, rate: u32) -> Vec<i16> {
    let out = Command::new("ffmpeg")
        .args(["-loglevel", "error"])
        .args(input_args)
        .arg("-i")
        .arg(input)
        .args(["-f", "s16le", "-ac", "1", "-ar", &rate.to_string(), "-"])
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg decode {}: {}",
        input.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    samples(&out.stdout)
}

/// ffmpeg encodes 8 kHz mono `pcm` with `args` into `out`.
fn ffmpeg_encode(dir: &Path, pcm: &[i16], rate: u32, args: &[&str], out: &Path) {
    let src = dir.join("source.s16");
    let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(&src, bytes).expect("write source");
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "s16le", "-ac", "1"])
        .args(["-ar", &rate.to_string(), "-i"])
        .arg(&src)
        .args(args)
        .arg(out)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg encode {}", out.display());
}

/// bcg729 (Belledonne's G.729A/B, which FreeSWITCH and Asterisk modules use; Debian's
/// libbcg729-0) decodes frames through python3's ctypes: input is each frame's length
/// (one octet: 10 voice, 2 SID) and octets; output 80 s16le samples a frame.
const BCG729: &str = r#"
import ctypes, sys
lib = ctypes.CDLL('libbcg729.so.0')
lib.initBcg729DecoderChannel.restype = ctypes.c_void_p
lib.bcg729Decoder.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint8,
    ctypes.c_uint8, ctypes.c_uint8, ctypes.c_uint8, ctypes.POINTER(ctypes.c_int16)]
ctx = lib.initBcg729DecoderChannel()
data = sys.stdin.buffer.read()
out = bytearray()
pcm = (ctypes.c_int16 * 80)()
i = 0
while i < len(data):
    n = data[i]
    frame = bytes(data[i + 1:i + 1 + n])
    i += 1 + n
    lib.bcg729Decoder(ctx, frame, n, 0, 1 if n == 2 else 0, 0, pcm)
    out += bytes(pcm)
sys.stdout.buffer.write(out)
"#;

fn bcg729_available() -> bool {
    if have(
        "python3",
        &["-c", "import ctypes; ctypes.CDLL('libbcg729.so.0')"],
    ) {
        true
    } else {
        skip::skip("python3 with libbcg729.so.0 is not available (Debian: libbcg729-0)");
        false
    }
}

fn bcg729_decode(frames: &[Vec<u8>]) -> Vec<i16> {
    use std::io::Write;
    let mut input = Vec::new();
    for f in frames {
        input.push(f.len() as u8);
        input.extend_from_slice(f);
    }
    let mut child = Command::new("python3")
        .args(["-c", BCG729])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run python3");
    let mut stdin = child.stdin.take().expect("stdin");
    // Fed from a thread: the output pipe must be drained while the input is written.
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("bcg729 output");
    feeder.join().expect("feeder").expect("feed bcg729");
    assert!(out.status.success(), "bcg729 decode");
    samples(&out.stdout)
}

/// G.729 frames of `pcm` (8 kHz) from g729-sys's encoder, with Annex B's VAD when
/// `vad`: 10-octet voice frames, 2-octet SID frames, and none (not sent) between.
fn g729_encode(pcm: &[i16], vad: bool) -> Vec<Vec<u8>> {
    let mut enc = g729_sys::Encoder::new(vad);
    pcm.chunks_exact(80)
        .map(|chunk| enc.encode(chunk.try_into().expect("80 samples")))
        .filter(|frame| !frame.is_empty())
        .collect()
}

/// calltap's G.729 decode of `frames`, each its own RTP payload.
fn calltap_g729(frames: &[Vec<u8>]) -> Vec<i16> {
    let mut d = G729::default();
    let mut out = Vec::new();
    let mut buf = [0i16; 80];
    for f in frames {
        let n = d.decode(f, &mut buf);
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// G.729 with Annex B is specified bit-exactly: calltap's decode equals bcg729's on a
/// stream of voice and SID frames.
#[test]
fn g729_decodes_as_bcg729_does_voice_and_sid_frames() {
    if !bcg729_available() {
        return;
    }
    let pcm = signal();
    for vad in [false, true] {
        let frames = g729_encode(&pcm, vad);
        let sid = frames.iter().filter(|f| f.len() == 2).count();
        if vad {
            assert!(sid > 0, "the Annex B encoder sent no SID frame");
        }
        let ours = calltap_g729(&frames);
        let reference = bcg729_decode(&frames);
        assert_eq!(ours.len(), frames.len() * 80);
        assert_eq!(ours, reference, "vad {vad}: {sid} SID frames");
    }
}

/// Two voice frames and a SID frame in one payload (RFC 3551 4.5.6), and a payload cut
/// inside a frame, through the RTP payload entry point.
#[test]
fn g729_payloads_of_several_frames_and_a_cut_one() {
    let pcm = signal();
    let frames = g729_encode(&pcm[..800], false);
    let whole = calltap_g729(&frames[..3]);
    let mut payload: Vec<u8> = frames[..3].concat();
    let mut d = G729::default();
    let mut buf = [0i16; 320];
    assert_eq!(d.decode(&payload, &mut buf), 240);
    assert_eq!(&buf[..240], &whole[..]);
    assert_eq!(calltap::media::g729::samples(payload.len()), (240, false));
    payload.truncate(25);
    assert_eq!(calltap::media::g729::samples(payload.len()), (160, true));
    assert_eq!(G729::default().decode(&payload, &mut buf), 160);
    assert_eq!(&buf[..160], &whole[..160]);
}

#[test]
fn gsm_decodes_as_ffmpegs_decoder_does() {
    if !ffmpeg_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let pcm = signal();
    let file = dir.path().join("stream.gsm");
    ffmpeg_encode(
        dir.path(),
        &pcm,
        8000,
        &["-c:a", "libgsm", "-f", "gsm"],
        &file,
    );
    let stream = std::fs::read(&file).expect("encoded stream");
    assert_eq!(stream.len() % gsm::FRAME_BYTES, 0);
    let mut d = Gsm::new().expect("libgsm state");
    let mut ours = Vec::new();
    let mut buf = [0i16; 320];
    for payload in stream.chunks(2 * gsm::FRAME_BYTES) {
        let (n, bad) = d.decode(payload, &mut buf);
        assert_eq!(bad, 0);
        ours.extend_from_slice(&buf[..n]);
    }
    // ffmpeg's own GSM decoder, not libgsm: an independent reading of 06.10.
    let reference = ffmpeg_decode(&["-f", "gsm", "-c:a", "gsm"], &file, 8000);
    assert_eq!(ours.len(), reference.len());
    let exact = ours.iter().zip(&reference).filter(|(a, b)| a == b).count();
    eprintln!("GSM vs ffmpeg: {exact} of {} samples equal", ours.len());
    assert_eq!(ours, reference, "GSM 06.10 is specified bit-exactly");
}

/// The packets of an Ogg Opus file, after its two header packets.
fn ogg_opus_packets(file: &Path) -> Vec<Vec<u8>> {
    let mut reader = ogg::PacketReader::new(std::fs::File::open(file).expect("open the Ogg file"));
    let mut packets = Vec::new();
    while let Some(p) = reader.read_packet().expect("an Ogg packet") {
        packets.push(p.data);
    }
    assert!(packets.len() > 2 && packets[0].starts_with(b"OpusHead"));
    packets.split_off(2)
}

#[test]
fn opus_decodes_close_to_libopus() {
    if !ffmpeg_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let pcm = signal();
    // At 48 kHz both decoders render the codec's own rate; at 16 kHz ffmpeg's
    // resampler (48 -> 16) stands between, a fraction of a sample of delay and its
    // own filter.
    for (rate, bitrate, min_db) in [(48_000u32, "24k", f64::INFINITY), (16_000, "24k", 30.0)] {
        let file = dir.path().join(format!("stream-{rate}.opus"));
        ffmpeg_encode(
            dir.path(),
            &pcm,
            8000,
            &[
                "-c:a",
                "libopus",
                "-b:a",
                bitrate,
                "-application",
                "voip",
                "-frame_duration",
                "20",
                "-f",
                "ogg",
            ],
            &file,
        );
        let mut d = Opus::new(rate).expect("decoder");
        let mut ours = Vec::new();
        let mut buf = [0i16; 5760];
        for packet in ogg_opus_packets(&file) {
            let (n, refused) = d.decode(&packet, &mut buf);
            assert!(!refused);
            ours.extend_from_slice(&buf[..n]);
        }
        // libopus's decode of the same packets at the same rate; ffmpeg drops the
        // stream's pre-skip (the encoder's lookahead), so its sample k is ours k + skip.
        let reference = ffmpeg_decode(&["-c:a", "libopus"], &file, rate);
        let skip = (0..rate as usize / 50)
            .max_by(|&a, &b| {
                let at = |lag: usize| snr(&reference, &ours[lag.min(ours.len())..]);
                at(a).total_cmp(&at(b))
            })
            .unwrap_or(0);
        let ours = &ours[skip..];
        let n = ours.len().min(reference.len());
        let db = snr(&reference[..n], &ours[..n]);
        eprintln!("Opus at {rate} Hz vs libopus: {db:.1} dB over {n} samples (pre-skip {skip})");
        assert!(
            db >= min_db,
            "Opus decode at {rate} Hz too far from libopus: {db:.1} dB"
        );
    }
}

/// One call in a media table of its own: the caller (the client, right channel) at
/// 10.0.0.1:4000 offers `caller_sdp`'s codecs, the callee (the operator, left) at
/// 10.0.0.2:6000 answers with `callee_sdp`'s.
struct MediaCall {
    media: calltap::media::MediaTable,
    t0: calltap::capture::Timestamp,
    _dir: tempfile::TempDir,
}

const CALLER: &str = "10.0.0.1:4000";
const CALLEE: &str = "10.0.0.2:6000";

impl MediaCall {
    fn new(caller_sdp: &str, callee_sdp: &str) -> MediaCall {
        MediaCall::with(caller_sdp, callee_sdp, false)
    }

    fn with(caller_sdp: &str, callee_sdp: &str, opus_fullband: bool) -> MediaCall {
        use calltap::call::record::Party;
        use calltap::media::{MediaOptions, MediaTable};
        use calltap::sip::sdp::SessionDescription;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut media = MediaTable::new(MediaOptions {
            recordings_dir: dir.path().to_path_buf(),
            opus_fullband,
            ..MediaOptions::default()
        });
        let sdp = |ip: &str, port: u16, m: &str| {
            let body = format!(
                "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
                 m=audio {port} RTP/AVP {m}"
            );
            SessionDescription::parse(body.as_bytes()).expect("SDP")
        };
        let t0 = calltap::capture::Timestamp::from_nanos(1_772_614_800_000_000_000);
        media.describe("c", t0, Party::Caller, &sdp("10.0.0.1", 4000, caller_sdp));
        media.describe("c", t0, Party::Callee, &sdp("10.0.0.2", 6000, callee_sdp));
        media.answered("c", t0, Party::Callee);
        MediaCall {
            media,
            t0,
            _dir: dir,
        }
    }

    /// A re-INVITE's offer and answer, `ms` after the answer: both parties now speak
    /// `m` (same addresses).
    fn redescribe(&mut self, ms: u64, m: &str) {
        use calltap::call::record::Party;
        use calltap::sip::sdp::SessionDescription;
        let at = self.t0.saturating_add(std::time::Duration::from_millis(ms));
        for (party, ip, port) in [
            (Party::Caller, "10.0.0.1", 4000),
            (Party::Callee, "10.0.0.2", 6000),
        ] {
            let body = format!(
                "v=0\r\no=- 1 2 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
                 m=audio {port} RTP/AVP {m}"
            );
            let sdp = SessionDescription::parse(body.as_bytes()).expect("SDP");
            self.media.describe("c", at, party, &sdp);
        }
    }

    /// An RTP packet from `from` to the other party, captured `ms` after the answer.
    fn send(&mut self, from: &str, ms: u64, pt: u8, seq: u16, ts: u32, payload: &[u8]) {
        use calltap::net::{Datagram, Transport};
        let (src, dst) = if from == CALLER {
            (CALLER, CALLEE)
        } else {
            (CALLEE, CALLER)
        };
        let mut rtp = vec![0x80, pt];
        rtp.extend_from_slice(&seq.to_be_bytes());
        rtp.extend_from_slice(&ts.to_be_bytes());
        rtp.extend_from_slice(&(0xC0DE_0000 | u32::from(pt)).to_be_bytes());
        rtp.extend_from_slice(payload);
        self.media.datagram(&Datagram {
            time: self.t0.saturating_add(std::time::Duration::from_millis(ms)),
            src: src.parse().expect("addr"),
            dst: dst.parse().expect("addr"),
            transport: Transport::Udp,
            payload: &rtp,
        });
    }

    /// Ends the call: its summary and the recording's (left, right) channels.
    fn end(mut self, ms: u64) -> (calltap::media::MediaSummary, u32, Vec<i16>, Vec<i16>) {
        let end = self.t0.saturating_add(std::time::Duration::from_millis(ms));
        let summary = self.media.ended("c", end).expect("the call's media");
        let rec = summary.recording.clone().expect("a recording");
        let mut reader = hound::WavReader::open(&rec.path).expect("WAV");
        assert_eq!(reader.spec().channels, 2);
        let frames: Vec<i16> = reader
            .samples::<i16>()
            .map(|s| s.expect("sample"))
            .collect();
        let (left, right) = frames.chunks_exact(2).map(|f| (f[0], f[1])).unzip();
        (summary, rec.sample_rate, left, right)
    }
}

/// Opus packets of 20 ms of `pcm` (16 kHz mono), from opus-rs's encoder at 24 kbit/s.
fn opus_packets(pcm: &[i16]) -> Vec<Vec<u8>> {
    let mut enc =
        opus_rs::OpusEncoder::new(16_000, 1, opus_rs::Application::Voip).expect("Opus encoder");
    enc.bitrate_bps = 24_000;
    let mut buf = [0u8; 1500];
    pcm.chunks_exact(320)
        .map(|frame| {
            let n = enc.encode_i16(frame, 320, &mut buf).expect("encode");
            buf[..n].to_vec()
        })
        .collect()
}

/// The client speaks G.729, the operator's phone Opus (it prefers it; the trunk offered
/// both): one stereo file at 16 kHz, the operator's Opus decoded at 16 kHz on the left
/// and the client's G.729 on the right (interpolated up: every odd sample is the
/// decoder's, every even one the midpoint), each from its first packet's place.
#[test]
fn a_call_with_g729_one_way_and_opus_the_other_is_one_aligned_wideband_file() {
    const PACKETS: usize = 100;
    const FIRST_MS: u64 = 40;
    let mut call = MediaCall::new(
        "18 111 101\r\na=rtpmap:18 G729/8000\r\na=rtpmap:111 opus/48000/2\r\n\
         a=rtpmap:101 telephone-event/8000\r\n",
        "111 18\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:18 G729/8000\r\n",
    );
    let pcm = signal();
    let g729 = g729_encode(&pcm[..PACKETS * 160], false);
    let wide: Vec<i16> = pcm.iter().flat_map(|&s| [s, s]).collect();
    let opus = opus_packets(&wide[..PACKETS * 320]);
    let mut g729_ref = Vec::new();
    let mut opus_ref = Vec::new();
    let mut g729_dec = G729::default();
    let mut opus_dec = Opus::new(16_000).expect("decoder");
    let mut buf = [0i16; 960];
    for k in 0..PACKETS {
        let ms = FIRST_MS + 20 * k as u64;
        let two_frames = g729[2 * k..2 * k + 2].concat();
        call.send(CALLER, ms, 18, k as u16, (k * 160) as u32, &two_frames);
        call.send(CALLEE, ms, 111, k as u16, (k * 960) as u32, &opus[k]);
        let n = g729_dec.decode(&two_frames, &mut buf);
        g729_ref.extend_from_slice(&buf[..n]);
        let (n, refused) = opus_dec.decode(&opus[k], &mut buf);
        assert!(!refused);
        opus_ref.extend_from_slice(&buf[..n]);
    }
    let (summary, rate, left, right) = call.end(FIRST_MS + 20 * PACKETS as u64 + 500);
    assert_eq!(rate, 16_000);
    let mut codecs = summary.codecs.clone();
    codecs.sort();
    assert_eq!(codecs, ["G729", "opus"]);
    let from = FIRST_MS as usize * 16;
    assert_eq!(
        &left[from..from + PACKETS * 320],
        &opus_ref[..],
        "left: Opus"
    );
    let right = &right[from..from + PACKETS * 320];
    for (i, &x) in g729_ref.iter().enumerate() {
        assert_eq!(right[2 * i + 1], x, "right: G.729 sample {i}");
    }
    assert!(left[..from].iter().chain(&right[..0]).all(|&s| s == 0));
}

/// G.711 sent under the payload type the SDP bound to Opus: its timestamps advance 160
/// a packet, which no Opus stream does (its durations are multiples of 2.5 ms, 120 at
/// 48 kHz), so every packet after the first is refused and counted, and the channel
/// stays (nearly) silent.
#[test]
fn g711_under_an_opus_payload_type_is_counted_not_decoded_as_noise() {
    const PACKETS: usize = 50;
    let mut call = MediaCall::new(
        "111\r\na=rtpmap:111 opus/48000/2\r\n",
        "111\r\na=rtpmap:111 opus/48000/2\r\n",
    );
    let pcm = signal();
    for k in 0..PACKETS {
        let ulaw: Vec<u8> = pcm[8000 + 160 * k..8000 + 160 * (k + 1)]
            .iter()
            .map(|&s| calltap::pcapgen::g711::linear_to_ulaw(s))
            .collect();
        call.send(
            CALLER,
            20 * k as u64,
            111,
            k as u16,
            (k * 160) as u32,
            &ulaw,
        );
    }
    let stats = call.media.stats();
    let (_, _, _, right) = call.end(2_000);
    let refused = stats.corrupt_frames;
    assert!(
        refused >= PACKETS as u64 - 2,
        "{refused} of {PACKETS} packets refused"
    );
    // At most the first packet (and any the TOC already refused) was decoded: 20 ms.
    let loud = right.iter().filter(|&&s| s.abs() > 64).count();
    assert!(loud <= 320, "{loud} loud samples");
}

/// The third-party G.729 capture (SIPp against FreeSWITCH, one direction of G.729 in
/// 20-octet payloads): replayed through the whole engine, the recording holds bcg729's
/// decode of the captured payloads, sample for sample, in one
/// unbroken run on the channel of the party that sent them.
#[test]
fn the_shared_g729_capture_is_recorded_as_bcg729_decodes_it() {
    let Some(pcaps) = skip::shared_pcaps() else {
        return;
    };
    if !bcg729_available() {
        return;
    }
    let capture = pcaps.join("sip-rtp-g729a.pcap");
    // The RTP payloads, read with pcap-file and etherparse (not calltap's decoder):
    // UDP datagrams with RTP version 2 and payload type 18.
    let file = std::fs::File::open(&capture).expect("open the capture");
    let mut reader = pcap_file::pcap::PcapReader::new(file).expect("a pcap");
    let mut frames: Vec<Vec<u8>> = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let packet = packet.expect("a packet");
        let Ok(sliced) = etherparse::SlicedPacket::from_ethernet(packet.data()) else {
            continue;
        };
        let Some(etherparse::TransportSlice::Udp(udp)) = sliced.transport else {
            continue;
        };
        let rtp = udp.payload();
        if rtp.len() > 12 && rtp[0] >> 6 == 2 && rtp[1] & 0x7F == 18 {
            frames.extend(rtp[12..].chunks(10).map(<[u8]>::to_vec));
        }
    }
    assert_eq!(frames.len(), 850, "425 packets of two frames");
    let reference = bcg729_decode(&frames);

    let dir = tempfile::tempdir().expect("temp dir");
    let store = calltap::store::Store::open(&dir.path().join("store")).expect("store");
    let config = calltap::config::Config::default();
    let engine =
        calltap::engine::Engine::with_recordings(&config, store.recordings_dir().to_path_buf());
    let mut ingest = calltap::ingest::Ingest::new(engine, &store);
    calltap::replay::replay_files(&[capture], &mut ingest, false);
    drop(ingest);
    let calls: Vec<_> = store.all_calls().filter_map(Result::ok).collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].media.codecs, ["G729"]);
    let rec = calls[0].media.recording.as_ref().expect("a recording");
    let mut reader = hound::WavReader::open(store.recordings_dir().join(&rec.file)).expect("WAV");
    let frames: Vec<i16> = reader
        .samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect();
    let (left, right): (Vec<i16>, Vec<i16>) = frames.chunks_exact(2).map(|f| (f[0], f[1])).unzip();
    let channel = if left.iter().any(|&s| s != 0) {
        left
    } else {
        right
    };
    // The first packet's place (18 ms after the answer, the capture says), then every
    // sample to the BYE, which comes before the last packet's 20 ms are over.
    let start = channel
        .windows(400)
        .position(|w| w == &reference[..400])
        .expect("bcg729's decode of the first packets is in the recording");
    assert!(
        (130..150).contains(&start),
        "first packet at sample {start}"
    );
    let recorded = &channel[start..];
    assert!(
        reference.len() - recorded.len() < 160,
        "more than a packet cut"
    );
    assert_eq!(recorded, &reference[..recorded.len()]);
}

/// `[recording] opus_fullband`: a call in Opus is recorded at 48 kHz, the client's Opus
/// decoded at 48 kHz on the right, the operator's PCMU on the left interpolated up six
/// times (every sixth sample the decoder's), each from its first packet's place.
#[test]
fn opus_fullband_records_at_48_khz() {
    const PACKETS: usize = 50;
    const FIRST_MS: u64 = 40;
    let sdp = "111 0\r\na=rtpmap:111 opus/48000/2\r\n";
    let mut call = MediaCall::with(sdp, sdp, true);
    let pcm = signal();
    let wide: Vec<i16> = pcm.iter().flat_map(|&s| [s, s]).collect();
    let opus = opus_packets(&wide[..PACKETS * 320]);
    let mut opus_ref = Vec::new();
    let mut opus_dec = Opus::new(48_000).expect("decoder");
    let mut buf = [0i16; 960];
    for k in 0..PACKETS {
        let ms = FIRST_MS + 20 * k as u64;
        call.send(CALLER, ms, 111, k as u16, (k * 960) as u32, &opus[k]);
        let ulaw: Vec<u8> = pcm[160 * k..160 * (k + 1)]
            .iter()
            .map(|&s| calltap::pcapgen::g711::linear_to_ulaw(s))
            .collect();
        call.send(CALLEE, ms, 0, k as u16, (k * 160) as u32, &ulaw);
        let (n, refused) = opus_dec.decode(&opus[k], &mut buf);
        assert!(!refused);
        opus_ref.extend_from_slice(&buf[..n]);
    }
    let (summary, rate, left, right) = call.end(FIRST_MS + 20 * PACKETS as u64 + 500);
    assert_eq!(rate, 48_000);
    let mut codecs = summary.codecs.clone();
    codecs.sort();
    assert_eq!(codecs, ["PCMU", "opus"]);
    let from = FIRST_MS as usize * 48;
    assert_eq!(
        &right[from..from + PACKETS * 960],
        &opus_ref[..],
        "right: Opus"
    );
    for (i, &s) in pcm[..PACKETS * 160].iter().enumerate() {
        let decoded =
            calltap::pcapgen::g711::ulaw_to_linear(calltap::pcapgen::g711::linear_to_ulaw(s));
        assert_eq!(left[from + 6 * i + 5], decoded, "left: PCMU sample {i}");
    }
}

/// A re-INVITE moves a PCMU call to G.729 half-way, the senders keeping their SSRC and
/// timeline: one file at the rate chosen at the answer, each direction's audio in one
/// unbroken run, PCMU's decode then G.729's.
#[test]
fn a_reinvite_that_switches_codec_keeps_one_aligned_file() {
    const PACKETS: usize = 100;
    const SWITCH: usize = 50;
    let mut call = MediaCall::new("0\r\n", "0\r\n");
    let pcm = signal();
    let g729 = g729_encode(&pcm[..PACKETS * 160], false);
    let mut g729_dec = G729::default();
    let mut expected = Vec::new();
    let mut buf = [0i16; 160];
    for k in 0..PACKETS {
        let ms = 20 + 20 * k as u64;
        if k == SWITCH {
            call.redescribe(ms - 5, "18\r\na=rtpmap:18 G729/8000\r\n");
        }
        let (pt, payload) = if k < SWITCH {
            let ulaw: Vec<u8> = pcm[160 * k..160 * (k + 1)]
                .iter()
                .map(|&s| calltap::pcapgen::g711::linear_to_ulaw(s))
                .collect();
            for &c in &ulaw {
                expected.push(calltap::pcapgen::g711::ulaw_to_linear(c));
            }
            (0, ulaw)
        } else {
            let two = g729[2 * k..2 * k + 2].concat();
            let n = g729_dec.decode(&two, &mut buf);
            expected.extend_from_slice(&buf[..n]);
            (18, two)
        };
        call.send(CALLER, ms, pt, k as u16, (k * 160) as u32, &payload);
    }
    let (summary, rate, _, right) = call.end(20 + 20 * PACKETS as u64 + 500);
    assert_eq!(rate, 8_000);
    let mut codecs = summary.codecs.clone();
    codecs.sort();
    assert_eq!(codecs, ["G729", "PCMU"]);
    assert_eq!(&right[160..160 + PACKETS * 160], &expected[..]);
}
