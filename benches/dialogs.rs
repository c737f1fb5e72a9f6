//! The SIP half of the engine: calls/s and SIP messages/s on a SIP-heavy load, and heap
//! bytes per tracked dialog.
//!
//! Throughput input: `LoadSpec::short_calls(100_000, 60)` (100 k calls of 0.2 s talk
//! spread over 60 s: 7 SIP messages and about 20 RTP packets each), written to the temp
//! folder on the first run or read from `CALLTAP_BENCH_SIP_PCAP`. Three loops, median of
//! `CALLTAP_BENCH_REPS` passes (default 3):
//! - `engine, whole capture`: `CaptureReader` + `Engine`, RTP included;
//! - `engine, SIP frames only`: the load's SIP packets, held in memory, through `Engine`
//!   (packet layer for those frames, SIP scanner, dialogs, classification);
//! - `sip::parse only`: the same messages through the scanner, to show what of the
//!   above is parsing.
//!
//! Memory: 100,000 INVITEs with SDP (distinct Call-IDs, never answered) are parsed and
//! fed to a `DialogTable` whose cap is above that; a counting global allocator gives
//! the live heap before and after. The messages are built before the first reading, so
//! only what the table keeps is counted.
//!
//! `cargo bench --bench dialogs` (plain harness: prints tables, no dependencies).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::io::{self};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use calltap::capture::file::CaptureReader;
use calltap::capture::{Frame, LinkType, Timestamp};
use calltap::config::Config;
use calltap::dialog::{DialogLimits, DialogTable};
use calltap::engine::{Engine, EngineEvent};
use calltap::net::Transport;
use calltap::pcapgen::{LoadSpec, Packet};
use calltap::sip;

/// Live heap bytes and allocation count, for the per-dialog figure. Relaxed atomics:
/// one add per allocation, the same in every loop timed here.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
/// The largest single block: for the dialog table, the HashMap's bucket array.
static LARGEST: AtomicUsize = AtomicUsize::new(0);

fn count(size: usize) {
    LIVE.fetch_add(size as isize, Relaxed);
    ALLOCS.fetch_add(1, Relaxed);
    LARGEST.fetch_max(size, Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_sub(layout.size() as isize, Relaxed);
        count(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CALLS: usize = 100_000;
const SECONDS: u32 = 60;
const SIP_PORT: u16 = 5060;

fn capture_path() -> io::Result<PathBuf> {
    if let Some(p) = std::env::var_os("CALLTAP_BENCH_SIP_PCAP") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::temp_dir().join(format!("calltap-bench-short-{CALLS}x{SECONDS}s.pcap"));
    if !path.exists() {
        eprintln!("writing {} ...", path.display());
        LoadSpec::short_calls(CALLS, SECONDS).write_pcap(&path)?;
    }
    Ok(path)
}

/// The load's SIP packets (IPv4, UDP to or from 5060), as raw IP frames.
fn sip_packets() -> Vec<Packet> {
    let mut out = Vec::new();
    LoadSpec::short_calls(CALLS, SECONDS)
        .generate(|p| {
            let d = &p.data;
            let ihl = usize::from(d[0] & 0x0F) * 4;
            let udp = d[9] == 17;
            let port = |at: usize| u16::from_be_bytes([d[ihl + at], d[ihl + at + 1]]);
            if udp && (port(0) == SIP_PORT || port(2) == SIP_PORT) {
                out.push(p);
            }
            Ok(())
        })
        .expect("generate in memory");
    out
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Seen {
    messages: u64,
    calls: u64,
}

fn drain(engine: &mut Engine, calls: &mut u64) {
    while let Some(event) = engine.poll() {
        if let EngineEvent::Call(record) = event {
            *calls += 1;
            black_box(record);
        }
    }
}

fn engine_capture(path: &std::path::Path, config: &Config) -> Seen {
    let mut reader = CaptureReader::open(path).expect("open capture");
    let mut engine = Engine::new(config);
    let mut calls = 0;
    while let Some(next) = reader.next_frame() {
        if let Ok(frame) = next {
            engine.frame(&frame);
            drain(&mut engine, &mut calls);
        }
    }
    engine.finish();
    drain(&mut engine, &mut calls);
    Seen {
        messages: engine.stats().sip.messages,
        calls,
    }
}

fn engine_sip_only(packets: &[Packet], config: &Config) -> Seen {
    let mut engine = Engine::new(config);
    let mut calls = 0;
    for p in packets {
        engine.frame(&Frame {
            time: p.time,
            link: LinkType::RawIp,
            data: &p.data,
            orig_len: p.data.len() as u32,
        });
        drain(&mut engine, &mut calls);
    }
    engine.finish();
    drain(&mut engine, &mut calls);
    Seen {
        messages: engine.stats().sip.messages,
        calls,
    }
}

fn parse_only(packets: &[Packet]) -> Seen {
    let mut messages = 0;
    for p in packets {
        let ihl = usize::from(p.data[0] & 0x0F) * 4;
        if let Ok((msg, _)) = sip::parse(&p.data[ihl + 8..]) {
            messages += 1;
            black_box((msg.call_id(), msg.cseq(), msg.from_tag(), msg.to_tag()));
        }
    }
    Seen { messages, calls: 0 }
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// An INVITE as a desk phone sends it, with SDP: about 900 bytes.
fn invite(i: usize) -> Vec<u8> {
    let sdp = format!(
        "v=0\r\no=- {i} {i} IN IP4 10.20.{}.{}\r\ns=Talk\r\nc=IN IP4 10.20.{}.{}\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n",
        (i / 250) % 250,
        i % 250 + 2,
        (i / 250) % 250,
        i % 250 + 2,
        16_384 + 2 * (i % 8)
    );
    format!(
        "INVITE sip:+1555{n:07}@pbx.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.20.{a}.{b}:5060;branch=z9hG4bK{i:08x}a;rport\r\n\
         Max-Forwards: 70\r\n\
         From: \"Phone {ext}\" <sip:{ext}@pbx.example.com>;tag={i:08x}f\r\n\
         To: <sip:+1555{n:07}@pbx.example.com>\r\n\
         Call-ID: {i:08x}-5b1e-4c6a-9d2f-{i:012x}@10.20.{a}.{b}\r\n\
         CSeq: 20 INVITE\r\n\
         Contact: <sip:{ext}@10.20.{a}.{b}:5060;transport=udp>\r\n\
         Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, UPDATE\r\n\
         Supported: replaces, outbound, timer\r\n\
         User-Agent: Yealink SIP-T46S 66.86.0.15\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {len}\r\n\r\n{sdp}",
        n = i % 10_000_000,
        a = (i / 250) % 250,
        b = i % 250 + 2,
        ext = 2000 + i % 60_000,
        len = sdp.len(),
    )
    .into_bytes()
}

fn memory_per_dialog() {
    let messages: Vec<Vec<u8>> = (0..CALLS).map(invite).collect();
    let avg_len = messages.iter().map(Vec::len).sum::<usize>() / CALLS;
    let pbx = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)), 5060);
    let limits = DialogLimits {
        max_dialogs: 2 * CALLS,
        ..DialogLimits::default()
    };
    let mut table = DialogTable::new(limits);
    let (live_before, allocs_before) = (LIVE.load(Relaxed), ALLOCS.load(Relaxed));
    LARGEST.store(0, Relaxed);
    let start = Timestamp::from_nanos(1_700_000_000_000_000_000);
    let mut samples = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let (msg, _) = sip::parse(m).expect("INVITE parses");
        let phone = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(
                10,
                20,
                ((i / 250) % 250) as u8,
                (i % 250 + 2) as u8,
            )),
            5060,
        );
        // 1 ms apart: 100 s in all, inside the ring timeout, so nothing expires.
        let time = start.saturating_add(Duration::from_millis(i as u64));
        table.message(time, &msg, phone, pbx, Transport::Udp);
        if (i + 1) % (CALLS / 4) == 0 {
            samples.push((i + 1, LIVE.load(Relaxed) - live_before));
        }
    }
    let grown = LIVE.load(Relaxed) - live_before;
    let allocs = ALLOCS.load(Relaxed) - allocs_before;
    let largest = LARGEST.load(Relaxed);
    let stats = table.stats();
    assert_eq!(
        stats.active as usize, CALLS,
        "every INVITE tracked, none evicted"
    );
    drop(table);
    // Measured before anything is printed: stdout's buffer is an allocation too.
    let left = LIVE.load(Relaxed) - live_before;
    println!();
    println!(
        "memory: {CALLS} concurrent unanswered dialogs (INVITE with SDP, {avg_len} bytes avg)"
    );
    println!(
        "{:>10} {:>14} {:>12}",
        "dialogs", "heap growth", "bytes/dialog"
    );
    for (n, bytes) in &samples {
        println!(
            "{:>10} {:>11.1} MB {:>12.0}",
            n,
            *bytes as f64 / 1e6,
            *bytes as f64 / *n as f64
        );
    }
    println!(
        "{CALLS} dialogs: {:.0} bytes/dialog, {:.1} allocations/dialog (HashMap table included)",
        grown as f64 / CALLS as f64,
        allocs as f64 / CALLS as f64
    );
    // hashbrown keeps a power-of-two bucket count at most 7/8 full: 131,072 for 100 k.
    let buckets = (CALLS * 8 / 7).next_power_of_two();
    println!(
        "of which the HashMap bucket array: {:.1} MB ({} buckets, ~{} bytes each inline), \
         {:.0} bytes/dialog; the rest ({:.0} bytes/dialog) is what each dialog owns on the heap",
        largest as f64 / 1e6,
        buckets,
        largest / buckets,
        largest as f64 / CALLS as f64,
        (grown as f64 - largest as f64) / CALLS as f64
    );
    let samples_vec = (samples.capacity() * std::mem::size_of::<(usize, isize)>()) as isize;
    assert!(left <= samples_vec, "{left} bytes not freed with the table");
}

fn main() -> io::Result<()> {
    let reps: usize = std::env::var("CALLTAP_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let only_memory = std::env::var_os("CALLTAP_BENCH_ONLY").is_some_and(|v| v == "memory");
    if !only_memory {
        let path = capture_path()?;
        let config = Config::default();
        let frames = {
            let mut r = CaptureReader::open(&path).expect("open capture");
            let mut n = 0u64;
            while let Some(f) = r.next_frame() {
                n += u64::from(f.is_ok());
            }
            n
        };
        let packets = sip_packets();
        type Pass<'a> = (&'a str, Box<dyn Fn() -> Seen + 'a>);
        let passes: Vec<Pass> = vec![
            (
                "engine, whole capture",
                Box::new(|| engine_capture(&path, &config)),
            ),
            (
                "engine, SIP frames only",
                Box::new(|| engine_sip_only(&packets, &config)),
            ),
            ("sip::parse only", Box::new(|| parse_only(&packets))),
        ];
        let mut times = vec![Vec::new(); passes.len()];
        let mut seen = vec![None; passes.len()];
        for _ in 0..reps {
            for (i, (name, run)) in passes.iter().enumerate() {
                let started = Instant::now();
                let s = run();
                times[i].push(started.elapsed());
                if let Some(first) = seen[i] {
                    assert_eq!(first, s, "{name}: passes disagree");
                }
                seen[i] = Some(s);
            }
        }
        println!(
            "{}: {frames} frames, {} SIP packets; {reps} passes each, median",
            path.display(),
            packets.len()
        );
        println!(
            "{:<26} {:>8} {:>9} {:>10} {:>9} {:>12}",
            "loop", "ms", "calls", "calls/s", "messages", "messages/s"
        );
        for (i, (name, _)) in passes.iter().enumerate() {
            let s = seen[i].expect("ran");
            let secs = median(&mut times[i]).as_secs_f64();
            let calls = if s.calls > 0 {
                format!("{:.0} k", s.calls as f64 / secs / 1e3)
            } else {
                "-".into()
            };
            println!(
                "{:<26} {:>8.0} {:>9} {:>10} {:>9} {:>10.2} M",
                name,
                secs * 1e3,
                s.calls,
                calls,
                s.messages,
                s.messages as f64 / secs / 1e6
            );
        }
    }
    memory_per_dialog();
    Ok(())
}
