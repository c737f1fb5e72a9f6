//! Where received speech lands: for every G.711 stream of every recorded call in the
//! captures of CALLTAP_BENCH_PCAPS (default `../shared/pcaps`), the share of its
//! received samples that sit at their RTP timestamp's place in the recording, measured
//! from the place of the first packet of their run of contiguous timestamps (samples
//! whose place falls outside the recording, before the answer or after the hang-up,
//! are not counted). 100 % where timestamps are contiguous is
//! the aim; drift corrections (`clock_slips`) and re-placements (`resyncs`) are printed
//! beside. Run `cargo bench --bench placement`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use calltap::capture::file::CaptureReader;
use calltap::config::Config;
use calltap::engine::{Engine, EngineEvent};
use calltap::media::rtp::RtpPacket;
use calltap::media::{decode_g711, ALAW, ULAW};
use calltap::net::Decoder;
use calltap::replay::replay_files;

/// One RTP stream of the capture: its packets by arrival, (time ns, timestamp, samples).
struct Stream {
    packets: Vec<(u64, u32, Vec<i16>)>,
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = std::env::var("CALLTAP_BENCH_PCAPS").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps"),
        PathBuf::from,
    );
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("notice: {} is absent; nothing measured", dir.display());
        return;
    };
    let mut captures: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x != "md"))
        .collect();
    captures.sort();
    let (mut placed, mut total) = (0u64, 0u64);
    println!(
        "{:45} {:>8} {:>9} {:>8}",
        "capture / stream", "samples", "in place", "share"
    );
    for path in captures {
        for (name, in_place, samples) in measure(&path) {
            placed += in_place;
            total += samples;
            println!(
                "{:45} {:>8} {:>9} {:>7.2}%",
                name,
                samples,
                in_place,
                100.0 * in_place as f64 / samples.max(1) as f64
            );
        }
    }
    println!(
        "all streams: {placed} of {total} samples at their timestamp's place ({:.3} %)",
        100.0 * placed as f64 / total.max(1) as f64
    );
}

/// (stream, samples in place, samples received) for each recorded G.711 stream.
fn measure(path: &Path) -> Vec<(String, u64, u64)> {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(_) => return Vec::new(),
    };
    let config = Config::default();
    let mut engine = Engine::with_recordings(&config, dir.path().to_path_buf());
    replay_files(&[path], &mut engine, false);
    let mut wavs = Vec::new();
    while let Some(e) = engine.poll() {
        if let EngineEvent::Call(r) = e {
            if let Some(rec) = &r.media.recording {
                if let Ok(w) = hound::WavReader::open(dir.path().join(&rec.file)) {
                    if w.spec().sample_rate == 8000 {
                        let s: Vec<i16> = w.into_samples::<i16>().filter_map(Result::ok).collect();
                        wavs.push((r.id.clone(), s));
                    }
                }
            }
        }
    }
    let streams = streams(path);
    let file = path
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    let mut out = Vec::new();
    for ((src, dst, ssrc), stream) in &streams {
        // The channel that holds this stream: the one where its first packet is found.
        let Some((_, _, first)) = stream.packets.first() else {
            continue;
        };
        let probe = &first[..first.len().min(40)];
        if probe.iter().all(|&x| x == 0) {
            continue;
        }
        // The recording and channel that hold it: where it is found best.
        let mut best: Option<(String, u64, u64)> = None;
        for (id, samples) in &wavs {
            for ch in 0..2 {
                let channel: Vec<i16> = samples.iter().skip(ch).step_by(2).copied().collect();
                let Some(start) = channel.windows(probe.len()).position(|w| w == probe) else {
                    continue;
                };
                // Every packet against the place its timestamp gives from the first of
                // its run (a run: timestamps contiguous, one packet after the other; a
                // pause of the sender starts a new one, which may be placed anew).
                let (mut in_place, mut all) = (0u64, 0u64);
                let mut run: Option<(i64, u32)> = None;
                let mut prev: Option<(u32, usize)> = None;
                for (_, ts, pcm) in &stream.packets {
                    let contiguous =
                        prev.is_some_and(|(pts, len)| ts.wrapping_sub(pts) as usize == len);
                    if !contiguous {
                        // Where the run starts: searched near where the last run's
                        // timestamps put it (a looped prompt repeats itself), else
                        // anywhere.
                        let probe = &pcm[..pcm.len().min(24)];
                        let found_in = |lo: usize, hi: usize| {
                            channel
                                .get(lo..hi.min(channel.len()))
                                .and_then(|c| {
                                    c.windows(probe.len())
                                        .position(|w| w == probe && probe.iter().any(|&x| x != 0))
                                })
                                .map(|p| (p + lo) as i64)
                        };
                        let near = run.map(|(at, rts)| at + i64::from(ts.wrapping_sub(rts) as i32));
                        let found = near
                            .and_then(|p| {
                                let lo = (p - 8000).max(0) as usize;
                                found_in(lo, (p + 8000).max(0) as usize)
                            })
                            .or_else(|| found_in(0, channel.len()));
                        run = found.map(|p| (p, *ts)).or(run);
                    }
                    prev = Some((*ts, pcm.len()));
                    let Some((run_at, run_ts)) = run else {
                        continue;
                    };
                    let at = run_at + i64::from(ts.wrapping_sub(run_ts) as i32);
                    // Only what the recording spans (answer to hang-up) counts.
                    if at < 0 || at as usize + pcm.len() > channel.len() {
                        continue;
                    }
                    all += pcm.len() as u64;
                    let at = at as usize;
                    in_place += pcm
                        .iter()
                        .enumerate()
                        .filter(|(i, &x)| channel.get(at + i) == Some(&x))
                        .count() as u64;
                }
                let _ = start;
                if best.as_ref().is_none_or(|b| in_place > b.1) {
                    let name = format!("{file} {src}>{dst} {ssrc:08x} {id} ch{ch}");
                    best = Some((name.chars().take(45).collect(), in_place, all));
                }
            }
        }
        out.extend(best);
    }
    out
}

/// The capture's G.711 RTP streams, by (source, destination, SSRC), samples decoded.
fn streams(path: &Path) -> BTreeMap<(SocketAddr, SocketAddr, u32), Stream> {
    let mut out: BTreeMap<(SocketAddr, SocketAddr, u32), Stream> = BTreeMap::new();
    let Ok(mut reader) = CaptureReader::open(path) else {
        return out;
    };
    let mut decoder = Decoder::new(&calltap::engine::decoder_options(&Config::default()));
    let mut take = |d: &calltap::net::Datagram<'_>| {
        let Ok(p) = RtpPacket::new_checked(d.payload) else {
            return;
        };
        let table = match p.payload_type() {
            0 => &ULAW,
            8 => &ALAW,
            _ => return,
        };
        if d.payload[0] >> 6 != 2 || p.payload().is_empty() {
            return;
        }
        let mut pcm = vec![0i16; p.payload().len()];
        decode_g711(table, p.payload(), &mut pcm);
        out.entry((d.src, d.dst, p.ssrc()))
            .or_insert_with(|| Stream {
                packets: Vec::new(),
            })
            .packets
            .push((d.time.as_nanos(), p.timestamp(), pcm));
    };
    while let Some(frame) = reader.next_frame() {
        if let Ok(frame) = frame {
            decoder.decode(&frame, &mut take);
        }
    }
    decoder.finish(&mut take);
    out
}
