//! Packets per second through the packet layer, against the bare read of the same file.
//!
//! Input: the generator's large capture, 500 concurrent G.711 calls for 60 s (about
//! 2.8 M Ethernet frames, 600 MB), written to the temp folder on the first run, or the
//! file named by `CALLTAP_BENCH_PCAP`. The file is read once before timing so every
//! pass reads from the page cache; what is timed is parsing, not the disk.
//!
//! Four loops over the same file, interleaved pass by pass so a noisy neighbour hurts
//! them alike, `CALLTAP_BENCH_REPS` passes each (default 5), median reported:
//! - `read`: `CaptureReader` alone, touching one byte of each frame (the ceiling);
//! - `pcap-file`: pcap-file's own `PcapReader::next_packet`, for reference;
//! - `decode`: `CaptureReader` + `Decoder` (through `DatagramTap`), counting datagrams;
//! - `engine`: `CaptureReader` + `Engine` (SIP parsing, dialogs, classification).
//!
//! `CALLTAP_BENCH_ONLY=<loop name prefix>` runs one loop alone, for perf or callgrind.
//!
//! The aim: decode costs at most 1.5x the bare read.
//!
//! `cargo bench --bench decode` (plain harness: prints a table, no dependencies).

use std::fs::File;
use std::hint::black_box;
use std::io::{self};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use calltap::capture::file::CaptureReader;
use calltap::config::Config;
use calltap::engine::{Engine, EngineEvent};
use calltap::net::{Datagram, Decoder, DecoderOptions};
use calltap::pcapgen::LoadSpec;
use calltap::replay::{DatagramTap, FrameSink};

const CALLS: usize = 500;
const SECONDS: u32 = 60;

fn capture_path() -> io::Result<PathBuf> {
    if let Some(p) = std::env::var_os("CALLTAP_BENCH_PCAP") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::temp_dir().join(format!("calltap-bench-{CALLS}x{SECONDS}s.pcap"));
    if !path.exists() {
        eprintln!("writing {} ...", path.display());
        LoadSpec::concurrent(CALLS, SECONDS).write_pcap(&path)?;
    }
    Ok(path)
}

/// What one pass saw: frames read, and a loop-specific count (datagrams, calls).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Seen {
    frames: u64,
    items: u64,
}

fn read_only(path: &Path) -> Seen {
    let mut reader = CaptureReader::open(path).expect("open capture");
    let (mut frames, mut touched) = (0u64, 0u64);
    while let Some(next) = reader.next_frame() {
        if let Ok(frame) = next {
            frames += 1;
            touched = touched.wrapping_add(u64::from(frame.data.first().copied().unwrap_or(0)));
        }
    }
    Seen {
        frames,
        items: black_box(touched),
    }
}

fn pcap_file_only(path: &Path) -> Seen {
    let file = File::open(path).expect("open capture");
    let mut reader = pcap_file::pcap::PcapReader::new(file).expect("pcap header");
    let (mut frames, mut touched) = (0u64, 0u64);
    while let Some(next) = reader.next_packet() {
        if let Ok(packet) = next {
            frames += 1;
            touched = touched.wrapping_add(u64::from(packet.data().first().copied().unwrap_or(0)));
        }
    }
    Seen {
        frames,
        items: black_box(touched),
    }
}

fn decode(path: &Path) -> Seen {
    let mut reader = CaptureReader::open(path).expect("open capture");
    let mut datagrams = 0u64;
    let mut frames = 0u64;
    {
        let mut tap = DatagramTap {
            decoder: Decoder::new(&DecoderOptions::default()),
            on_datagram: |d: &Datagram<'_>| {
                datagrams += 1;
                black_box(d.payload.len());
            },
        };
        while let Some(next) = reader.next_frame() {
            if let Ok(frame) = next {
                frames += 1;
                tap.frame(&frame);
            }
        }
        tap.finish();
    }
    Seen {
        frames,
        items: datagrams,
    }
}

fn engine(path: &Path, config: &Config) -> Seen {
    let mut reader = CaptureReader::open(path).expect("open capture");
    let mut engine = Engine::new(config);
    let (mut frames, mut calls) = (0u64, 0u64);
    let mut drain = |engine: &mut Engine| {
        while let Some(event) = engine.poll() {
            if let EngineEvent::Call(record) = event {
                calls += 1;
                black_box(record);
            }
        }
    };
    while let Some(next) = reader.next_frame() {
        if let Ok(frame) = next {
            frames += 1;
            engine.frame(&frame);
            drain(&mut engine);
        }
    }
    engine.finish();
    drain(&mut engine);
    Seen {
        frames,
        items: calls,
    }
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() -> io::Result<()> {
    let path = capture_path()?;
    let reps: usize = std::env::var("CALLTAP_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let config = Config::default();

    // Into the page cache, so each timed pass parses rather than waits on the disk.
    let bytes = io::copy(&mut File::open(&path)?, &mut io::sink())?;

    type Pass<'a> = (&'a str, &'a str, Box<dyn Fn() -> Seen + 'a>);
    let passes: Vec<Pass> = vec![
        ("read (ceiling)", "frames", Box::new(|| read_only(&path))),
        (
            "pcap-file next_packet",
            "frames",
            Box::new(|| pcap_file_only(&path)),
        ),
        ("decode", "datagrams", Box::new(|| decode(&path))),
        ("engine", "calls", Box::new(|| engine(&path, &config))),
    ];
    // `CALLTAP_BENCH_ONLY=decode` runs one loop alone, for a profiler.
    let passes: Vec<Pass> = match std::env::var("CALLTAP_BENCH_ONLY") {
        Ok(only) => passes
            .into_iter()
            .filter(|p| p.0.starts_with(&only))
            .collect(),
        Err(_) => passes,
    };
    assert!(!passes.is_empty(), "CALLTAP_BENCH_ONLY matches no loop");
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); passes.len()];
    let mut seen: Vec<Option<Seen>> = vec![None; passes.len()];
    for _ in 0..reps {
        for (i, (name, _, run)) in passes.iter().enumerate() {
            let started = Instant::now();
            let s = run();
            times[i].push(started.elapsed());
            // Every pass over the same file must see the same thing.
            if let Some(first) = seen[i] {
                assert_eq!(first, s, "{name}: passes disagree");
            }
            seen[i] = Some(s);
        }
    }

    println!(
        "{}: {:.0} MB, {} passes each, median",
        path.display(),
        bytes as f64 / 1e6,
        reps
    );
    println!(
        "{:<24} {:>10} {:>9} {:>12} {:>9} {:>13}",
        "loop", "frames", "ms", "packets/s", "x read", "seen"
    );
    let medians: Vec<Duration> = times.iter_mut().map(|t| median(t)).collect();
    let ceiling = medians[0].as_secs_f64();
    for (i, (name, what, _)) in passes.iter().enumerate() {
        let s = seen[i].expect("ran");
        let secs = medians[i].as_secs_f64();
        let seen_text = if *what == "frames" {
            String::new()
        } else {
            format!("{} {what}", s.items)
        };
        println!(
            "{:<24} {:>10} {:>9.0} {:>10.2} M {:>8.2}x {:>13}",
            name,
            s.frames,
            secs * 1e3,
            s.frames as f64 / secs / 1e6,
            secs / ceiling,
            seen_text
        );
    }
    let spread = |t: &[Duration]| {
        let (lo, hi) = (t[0].as_secs_f64(), t[t.len() - 1].as_secs_f64());
        format!("{:.0}-{:.0} ms", lo * 1e3, hi * 1e3)
    };
    println!(
        "range over passes: {}",
        passes
            .iter()
            .zip(&times)
            .map(|((name, _, _), t)| format!("{name} {}", spread(t)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
