//! The captures calltap makes itself (pcaps/, see pcaps/README.md): every link type,
//! byte order and timestamp resolution, fragments, SIP over TCP, tunnels, ICMP quotes
//! and damaged files decode to exactly what the generator put in them.

use std::path::PathBuf;

use calltap::capture::file::CaptureReader;
use calltap::config::Config;
use calltap::engine::{Engine, EngineEvent};
use calltap::net::{Datagram, Decoder, DecoderOptions, Transport};
use calltap::replay::{replay_files, DatagramTap, FileReport};

fn pcap(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("pcaps")
        .join(name)
}

struct Counts {
    udp: u64,
    tcp_sip: u64,
}

fn decode(name: &str) -> (FileReport, Counts) {
    let mut counts = Counts { udp: 0, tcp_sip: 0 };
    let mut tap = DatagramTap {
        decoder: Decoder::new(&DecoderOptions::default()),
        on_datagram: |d: &Datagram<'_>| match d.transport {
            Transport::Udp => counts.udp += 1,
            Transport::Tcp => counts.tcp_sip += 1,
        },
    };
    let mut reports = replay_files(&[pcap(name)], &mut tap, false);
    drop(tap);
    let (_, report) = reports.remove(0);
    (report, counts)
}

/// (file, link type as counted, frames, UDP datagrams, datagrams reassembled from IP
/// fragments, SIP messages cut out of TCP, calls in it)
const CLEAN: &[(&str, &str, u64, u64, u64, u64, usize)] = &[
    ("call-ethernet.pcap", "ethernet", 207, 207, 0, 0, 1),
    ("call-vlan.pcap", "ethernet", 207, 207, 0, 0, 1),
    ("call-qinq.pcap", "ethernet", 207, 207, 0, 0, 1),
    ("call-pppoe.pcap", "ethernet", 207, 207, 0, 0, 1),
    ("call-pppoe-ipv6.pcap", "ethernet", 207, 207, 0, 0, 1),
    ("call-sll.pcap", "linux_sll", 207, 207, 0, 0, 1),
    ("call-sll2-ns.pcap", "linux_sll2", 207, 207, 0, 0, 1),
    ("call-raw.pcap", "raw", 207, 207, 0, 0, 1),
    ("call-raw-ipv6.pcap", "raw", 207, 207, 0, 0, 1),
    ("call-null.pcap", "null", 207, 207, 0, 0, 1),
    ("call-null-ipv6.pcap", "null", 207, 207, 0, 0, 1),
    ("call-big-endian.pcap", "ethernet", 207, 207, 0, 0, 1),
    ("call-nanosecond.pcap", "ethernet", 207, 207, 0, 0, 1),
    ("call-ipv6-hop-by-hop.pcap", "ethernet", 107, 107, 0, 0, 1),
    ("call-ipv6-dstopts.pcap", "ethernet", 107, 107, 0, 0, 1),
    ("two-interfaces.pcapng", "ethernet", 414, 414, 0, 0, 2),
    ("fragmented-invite-ipv4.pcap", "ethernet", 109, 107, 1, 0, 1),
    ("fragmented-invite-ipv6.pcap", "ethernet", 109, 107, 1, 0, 1),
    ("sip-tcp-segmented.pcap", "ethernet", 123, 100, 0, 7, 1),
    ("erspan2.pcap", "ethernet", 107, 107, 0, 0, 1),
    ("erspan3.pcap", "ethernet", 107, 107, 0, 0, 1),
    ("erspan3-subheader.pcap", "ethernet", 107, 107, 0, 0, 1),
    ("ipip.pcap", "ethernet", 107, 107, 0, 0, 1),
    ("ip6in4.pcap", "ethernet", 107, 107, 0, 0, 1),
    // Three ICMP errors quote RTP sent after the hangup: never datagrams.
    ("icmp-port-unreachable.pcap", "ethernet", 113, 110, 0, 0, 1),
    (
        "icmpv6-port-unreachable.pcap",
        "ethernet",
        113,
        110,
        0,
        0,
        1,
    ),
];

#[test]
fn every_generated_capture_decodes_exactly() {
    for &(file, link, frames, udp, reassembled, tcp_sip, _) in CLEAN {
        let (report, counts) = decode(file);
        let c = &report.counters;
        assert!(
            report.failed.is_none() && report.capture_errors.is_empty(),
            "{file}: {report:?}"
        );
        assert_eq!(c.frames, frames, "{file}: frames");
        let json = serde_json::to_value(&c.link_types).expect("serialisable");
        assert!(json.get(link).is_some(), "{file}: link types {json}");
        assert_eq!(c.undecodable.total(), 0, "{file}: {:?}", c.undecodable);
        assert_eq!(counts.udp, udp, "{file}: UDP datagrams");
        assert_eq!(c.fragments_reassembled, reassembled, "{file}: reassembled");
        assert_eq!(c.fragments_dropped, 0, "{file}: fragments dropped");
        assert_eq!(counts.tcp_sip, tcp_sip, "{file}: SIP over TCP");
    }
}

#[test]
fn two_interfaces_with_different_link_types_and_resolutions() {
    let (report, _) = decode("two-interfaces.pcapng");
    let json = serde_json::to_value(&report.counters.link_types).expect("serialisable");
    assert_eq!(
        json,
        serde_json::json!({"ethernet": 207, "linux_sll2": 207})
    );
}

#[test]
fn nanosecond_and_microsecond_stamps_read_the_same_instant() {
    let first_time = |name: &str| {
        let mut r = CaptureReader::open(&pcap(name)).expect("opens");
        let frame = r.next_frame().expect("a frame").expect("readable");
        frame.time
    };
    let micro = first_time("call-ethernet.pcap");
    assert_eq!(micro, first_time("call-nanosecond.pcap"));
    assert_eq!(micro, first_time("call-big-endian.pcap"));
    // 2026-01-15 10:00:00 UTC, the generator's epoch.
    assert_eq!(micro.unix_secs(), 1_768_471_200);
}

#[test]
fn every_generated_call_is_found_answered_with_its_bye() {
    for &(file, _, _, udp, _, tcp_sip, calls) in CLEAN {
        // 7 SIP messages a call; RTP is 50 packets a second each way.
        let sip = 7 * calls as u64;
        let talk = (udp + tcp_sip - sip) / calls as u64 / 100;
        let mut engine = Engine::new(&Config::default());
        replay_files(&[pcap(file)], &mut engine, false);
        let mut found = Vec::new();
        while let Some(event) = engine.poll() {
            if let EngineEvent::Call(record) = event {
                found.push(record);
            }
        }
        assert_eq!(found.len(), calls, "{file}: calls");
        for r in &found {
            assert_eq!(r.outcome, calltap::call::Outcome::Answered, "{file}");
            assert!(r.hung_up_by.is_some(), "{file}: BYE seen");
            assert_eq!(
                r.duration, talk,
                "{file}: answered at 2 s, BYE {talk} s later"
            );
        }
    }
}

#[test]
fn overlapping_fragments_drop_the_datagram_and_say_so() {
    let (report, counts) = decode("fragmented-overlap-ipv4.pcap");
    let c = &report.counters;
    assert_eq!(counts.udp, 106);
    assert_eq!(c.fragments_reassembled, 0);
    assert_eq!(c.fragments_dropped, 4);
    assert_eq!(c.undecodable.total(), 0);
}

#[test]
fn icmp_errors_quoting_rtp_are_counted_not_decoded() {
    let (report, counts) = decode("icmp-port-unreachable.pcap");
    assert_eq!(counts.udp, 110);
    let ignored = serde_json::to_value(&report.counters.ignored).expect("serialisable");
    assert_eq!(ignored, serde_json::json!({"icmp": 3}));
}

#[test]
fn a_truncated_file_keeps_every_frame_before_the_cut() {
    let (report, counts) = decode("truncated.pcap");
    assert_eq!(report.counters.frames, 53);
    assert_eq!(counts.udp, 53);
    assert_eq!(report.capture_errors.len(), 1);
    let e = &report.capture_errors[0];
    assert!(
        e.contains("truncated.pcap at byte 13540") && e.contains("truncated"),
        "{e}"
    );
}

#[test]
fn a_corrupt_pcap_record_is_stepped_over() {
    let (report, counts) = decode("corrupt-record.pcap");
    // 107 records, the 54th with a garbage header: the 53 before and the 53 after.
    assert_eq!(report.counters.frames, 106);
    assert_eq!(counts.udp, 106);
    assert_eq!(report.capture_errors.len(), 1);
    let e = &report.capture_errors[0];
    assert!(
        e.contains("at byte 13540") && e.contains("skipped to byte"),
        "{e}"
    );
}

#[test]
fn a_corrupt_pcapng_block_is_skipped_by_its_length() {
    let (report, _) = decode("corrupt-block.pcapng");
    assert_eq!(report.counters.frames, 106);
    assert_eq!(report.capture_errors.len(), 1);
    assert!(
        report.capture_errors[0].contains("at byte 14536"),
        "{:?}",
        report.capture_errors
    );
}

#[test]
fn garbage_and_empty_files_are_clear_errors() {
    for (bytes, want) in [
        (&b""[..], "not a pcap"),
        (&b"hello, this is no capture at all"[..], "not a pcap"),
        (&[0xD4, 0xC3, 0xB2, 0xA1, 2, 0][..], "truncated"),
    ] {
        let err = CaptureReader::new("x.pcap", bytes)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(want), "{err}");
    }
}

#[test]
fn random_damage_never_panics() {
    // A small xorshift keeps the test deterministic without a dependency.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for name in [
        "call-ethernet.pcap",
        "two-interfaces.pcapng",
        "sip-tcp-segmented.pcap",
    ] {
        let original = std::fs::read(pcap(name)).expect("bundled capture");
        for _ in 0..200 {
            let mut bytes = original.clone();
            for _ in 0..8 {
                let at = (next() % bytes.len() as u64) as usize;
                bytes[at] = next() as u8;
            }
            let cut = (next() % bytes.len() as u64) as usize;
            bytes.truncate(cut.max(bytes.len() / 2));
            let Ok(mut reader) = CaptureReader::new(name, &bytes[..]) else {
                continue;
            };
            let mut engine = Engine::new(&Config::default());
            while let Some(frame) = reader.next_frame() {
                if let Ok(frame) = frame {
                    engine.frame(&frame);
                }
            }
            engine.finish();
            while engine.poll().is_some() {}
        }
    }
}
