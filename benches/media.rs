//! Media benchmarks: `cargo bench --bench media`.
//!
//! 1. G.711 decode of one 160-byte packet: calltap's 256-entry table against
//!    symphonia-codec-pcm's decoder (the figures are kept in src/media/codec.rs).
//! 2. MediaTable throughput in RTP packets/s: 500 concurrent G.711 calls (1000 streams),
//!    20 ms packets, synthetic datagrams in memory, WAVs written to a temp dir; with
//!    recording on, and off (classification, sequence and quality bookkeeping only).
//! 3. Memory per active call, counted by a global allocator, early and late in the calls
//!    (it must be flat in call length).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use calltap::call::record::Party;
use calltap::capture::Timestamp;
use calltap::media::{decode_g711, MediaOptions, MediaTable, ULAW};
use calltap::net::{Datagram, Transport};
use calltap::pcapgen::g711::{encode_signal, Codec, Signal};
use calltap::pcapgen::wire;
use calltap::sip::sdp::SessionDescription;

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn payload() -> [u8; 160] {
    let mut p = [0u8; 160];
    let sig = Signal::Chirp {
        f0_hz: 300,
        f1_hz: 3000,
        period_ms: 500,
        amplitude: 8000,
    };
    encode_signal(Codec::Pcmu, &sig, 1234, &mut p);
    p
}

fn g711_decode() {
    use symphonia_codec_pcm::PcmDecoder;
    use symphonia_core::audio::Channels;
    use symphonia_core::codecs::{CodecParameters, Decoder, DecoderOptions, CODEC_TYPE_PCM_MULAW};
    use symphonia_core::formats::Packet;

    let p = payload();
    const N: u32 = 2_000_000;
    let mut out = [0i16; 160];

    // Warm up, then time.
    for _ in 0..10_000 {
        decode_g711(&ULAW, black_box(&p), &mut out);
    }
    let t = Instant::now();
    for _ in 0..N {
        decode_g711(&ULAW, black_box(&p), &mut out);
        black_box(&out);
    }
    let table_ns = t.elapsed().as_nanos() as f64 / f64::from(N);

    let mut params = CodecParameters::new();
    params
        .for_codec(CODEC_TYPE_PCM_MULAW)
        .with_sample_rate(8000)
        .with_channels(Channels::FRONT_LEFT)
        .with_max_frames_per_packet(160)
        .with_bits_per_coded_sample(8);
    let mut dec = PcmDecoder::try_new(&params, &DecoderOptions::default()).expect("pcm decoder");
    let mut sym_out = [0i16; 160];
    let mut decode_sym = |out: &mut [i16; 160]| {
        let packet = Packet::new_from_slice(0, 0, 160, black_box(&p));
        let buf = dec.decode(&packet).expect("decode");
        let mut i = 0;
        if let symphonia_core::audio::AudioBufferRef::S16(b) = buf {
            for (o, s) in out
                .iter_mut()
                .zip(symphonia_core::audio::Signal::chan(b.as_ref(), 0))
            {
                *o = *s;
                i += 1;
            }
        }
        i
    };
    for _ in 0..10_000 {
        decode_sym(&mut sym_out);
    }
    let n = N / 4;
    let t = Instant::now();
    for _ in 0..n {
        black_box(decode_sym(&mut sym_out));
    }
    let sym_ns = t.elapsed().as_nanos() as f64 / f64::from(n);
    decode_g711(&ULAW, &p, &mut out);
    decode_sym(&mut sym_out);
    let same = out == sym_out;
    println!(
        "G.711 mu-law, one 160-byte packet: table {:.3} us, symphonia-codec-pcm {:.3} us ({:.1}x), identical output: {same}",
        table_ns / 1000.0,
        sym_ns / 1000.0,
        sym_ns / table_ns
    );
}

const CALLS: usize = 500;

fn ip(i: usize, side: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        10,
        side,
        (i / 250) as u8,
        (i % 250) as u8 + 1,
    ))
}

fn sdp(addr: SocketAddr) -> SessionDescription {
    let body = format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 101\r\n\
         a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
        ip = addr.ip(),
        port = addr.port()
    );
    SessionDescription::parse(body.as_bytes()).expect("sdp")
}

struct Run {
    packets: u64,
    elapsed: Duration,
    mem_early: usize,
    mem_late: usize,
}

/// 500 calls answered at once, `seconds` of 20 ms packets both ways, then ended.
fn table_run(record: bool, seconds: u64) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = LIVE.load(Ordering::Relaxed);
    let mut table = MediaTable::new(MediaOptions {
        recordings_dir: dir.path().to_path_buf(),
        enabled: record,
        ..MediaOptions::default()
    });
    let t0 = Timestamp::from_nanos(1_768_471_200_000_000_000);
    let mut streams = Vec::with_capacity(2 * CALLS);
    let body = payload();
    for i in 0..CALLS {
        let a = SocketAddr::new(ip(i, 1), 16000 + 2 * (i as u16 % 1000));
        let b = SocketAddr::new(ip(i, 2), 30000 + 2 * (i as u16 % 1000));
        let id = format!("call-{i:04}");
        table.describe(&id, t0, Party::Caller, &sdp(a));
        table.describe(&id, t0, Party::Callee, &sdp(b));
        table.answered(&id, t0, Party::Caller);
        for (src, dst, ssrc) in [(a, b, i as u32 * 2), (b, a, i as u32 * 2 + 1)] {
            streams.push((src, dst, wire::rtp(0, true, 0, 0, ssrc, &body)));
        }
    }
    let mut packets = 0u64;
    let mut mem_early = 0;
    let ticks = seconds * 50;
    let start = Instant::now();
    for k in 0..ticks {
        // Streams interleave as on a real line: each its own offset inside the 20 ms.
        for (j, (src, dst, buf)) in streams.iter_mut().enumerate() {
            let seq = k as u16;
            let ts = (k * 160) as u32;
            buf[2..4].copy_from_slice(&seq.to_be_bytes());
            buf[4..8].copy_from_slice(&ts.to_be_bytes());
            buf[1] = if k == 0 { 0x80 } else { 0 };
            let time = Timestamp::from_nanos(
                t0.as_nanos() + 5_000_000 + k * 20_000_000 + (j as u64 * 19_000),
            );
            table.datagram(&Datagram {
                time,
                src: *src,
                dst: *dst,
                transport: Transport::Udp,
                payload: buf,
            });
            packets += 1;
        }
        if k == 250 {
            mem_early = LIVE.load(Ordering::Relaxed) - base;
        }
        if k % 50 == 0 {
            black_box(table.sweep(Timestamp::from_nanos(t0.as_nanos() + k * 20_000_000)));
        }
    }
    let mem_late = LIVE.load(Ordering::Relaxed) - base;
    let end = Timestamp::from_nanos(t0.as_nanos() + ticks * 20_000_000 + 10_000_000);
    for i in 0..CALLS {
        let s = table.ended(&format!("call-{i:04}"), end).expect("call");
        assert_eq!(s.caller.lost, 0);
        assert_eq!(s.recording.is_some(), record);
    }
    let elapsed = start.elapsed();
    let st = table.stats();
    assert_eq!(st.rtp_packets, packets);
    Run {
        packets,
        elapsed,
        mem_early,
        mem_late,
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    if !std::env::args().any(|a| a == "--table-only") {
        g711_decode();
    }
    let seconds = if quick { 5 } else { 30 };
    for record in [false, true] {
        let r = table_run(record, seconds);
        let pps = r.packets as f64 / r.elapsed.as_secs_f64();
        println!(
            "MediaTable, {CALLS} calls x {seconds} s, recording {}: {} RTP packets in {:.2} s = {:.2} M packets/s ({:.0} ns/packet); memory per call {:.1} KiB at 5 s, {:.1} KiB at {seconds} s",
            if record { "on " } else { "off" },
            r.packets,
            r.elapsed.as_secs_f64(),
            pps / 1e6,
            1e9 / pps,
            r.mem_early as f64 / CALLS as f64 / 1024.0,
            r.mem_late as f64 / CALLS as f64 / 1024.0,
        );
    }
}
