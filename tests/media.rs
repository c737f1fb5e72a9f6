//! Recordings, scenario by scenario: a call is described by SDP, answered, fed RTP built
//! with pcapgen's encoders and known signals, and ended; the WAV and the summary are
//! checked against what the packets carried.

#[path = "support/skip.rs"]
mod skip;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use calltap::call::record::Party;
use calltap::capture::Timestamp;
use calltap::media::{repair_partial, MediaOptions, MediaSummary, MediaTable};
use calltap::net::{Datagram, Transport};
use calltap::pcapgen::g711::{self, Codec, Signal};
use calltap::pcapgen::wire;
use calltap::sip::sdp::SessionDescription;

const T0: u64 = 1_768_471_200_000_000_000;
const ID: &str = "call-1";

fn at(ms: f64) -> Timestamp {
    Timestamp::from_nanos(T0 + (ms * 1e6) as u64)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

const CALLER: &str = "10.0.0.10:16000";
const CALLEE: &str = "10.0.0.20:26000";

/// An SDP body announcing `rtp` as where its author receives audio.
fn sdp(rtp: &str, profile: &str, pts: &str, attrs: &str) -> SessionDescription {
    let a = addr(rtp);
    let (fam, ip) = match a {
        SocketAddr::V4(v) => ("IP4", v.ip().to_string()),
        SocketAddr::V6(v) => ("IP6", v.ip().to_string()),
    };
    let body = format!(
        "v=0\r\no=- 1 1 IN {fam} {ip}\r\ns=-\r\nc=IN {fam} {ip}\r\nt=0 0\r\n\
         m=audio {} {profile} {pts}\r\n{attrs}",
        a.port()
    );
    SessionDescription::parse(body.as_bytes()).expect("sdp")
}

fn g711_sdp(rtp: &str) -> SessionDescription {
    sdp(
        rtp,
        "RTP/AVP",
        "0 8 101 13",
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n",
    )
}

/// One datagram to feed: capture time, source, destination, UDP payload.
type Pkt = (Timestamp, SocketAddr, SocketAddr, Vec<u8>);

struct Rig {
    table: MediaTable,
    dir: tempfile::TempDir,
}

impl Rig {
    fn new() -> Rig {
        Rig::with(|_| {})
    }

    fn with(f: impl FnOnce(&mut MediaOptions)) -> Rig {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut opts = MediaOptions {
            recordings_dir: dir.path().join("rec"),
            ..MediaOptions::default()
        };
        f(&mut opts);
        Rig {
            table: MediaTable::new(opts),
            dir,
        }
    }

    /// Offer from the caller, answer from the callee, answered at 0 ms (caller is the
    /// operator: the left channel).
    fn g711_call(&mut self) {
        self.table
            .describe(ID, at(-2000.0), Party::Caller, &g711_sdp(CALLER));
        self.table
            .describe(ID, at(0.0), Party::Callee, &g711_sdp(CALLEE));
        self.table.answered(ID, at(0.0), Party::Caller);
    }

    fn feed(&mut self, mut pkts: Vec<Pkt>) {
        pkts.sort_by_key(|p| p.0);
        for (t, src, dst, payload) in &pkts {
            self.table.datagram(&Datagram {
                time: *t,
                src: *src,
                dst: *dst,
                transport: Transport::Udp,
                payload,
            });
        }
    }

    fn end(&mut self, ms: f64) -> MediaSummary {
        self.table.ended(ID, at(ms)).expect("known call")
    }

    fn files(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.dir.path().join("rec")) {
            Ok(rd) => rd.map(|e| e.expect("entry").path()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// One direction's RTP: packet `k` carries samples `160k..160k+160` of the signal and is
/// captured at `first_ms + 20k`.
#[derive(Clone)]
struct Tx {
    src: SocketAddr,
    dst: SocketAddr,
    codec: Codec,
    signal: Signal,
    ssrc: u32,
    seq0: u16,
    ts0: u32,
    first_ms: f64,
}

impl Tx {
    fn caller() -> Tx {
        Tx {
            src: addr(CALLER),
            dst: addr(CALLEE),
            codec: Codec::Pcmu,
            signal: Signal::Chirp {
                f0_hz: 200,
                f1_hz: 3400,
                period_ms: 700,
                amplitude: 9000,
            },
            ssrc: 0x1111_2222,
            seq0: 1000,
            ts0: 50_000,
            first_ms: 40.0,
        }
    }

    fn callee() -> Tx {
        Tx {
            src: addr(CALLEE),
            dst: addr(CALLER),
            signal: Signal::Tone {
                freq_hz: 1000,
                amplitude: 6000,
            },
            ssrc: 0x3333_4444,
            seq0: 60_000,
            ts0: 4_000_000_000,
            first_ms: 50.0,
            ..Tx::caller()
        }
    }

    fn payload(&self, slot: u64) -> Vec<u8> {
        let mut p = vec![0u8; 160];
        g711::encode_signal(self.codec, &self.signal, slot * 160, &mut p);
        p
    }

    /// Packet number `n` of the stream, for time slot `slot` (they differ around gaps).
    fn rtp_n(&self, n: u64, slot: u64) -> Vec<u8> {
        wire::rtp(
            self.codec.payload_type(),
            n == 0,
            self.seq0.wrapping_add(n as u16),
            self.ts0.wrapping_add((slot * 160) as u32),
            self.ssrc,
            &self.payload(slot),
        )
    }

    fn time(&self, slot: u64) -> Timestamp {
        at(self.first_ms + 20.0 * slot as f64)
    }

    fn pkt(&self, slot: u64) -> Pkt {
        (self.time(slot), self.src, self.dst, self.rtp_n(slot, slot))
    }

    fn packets(&self, slots: std::ops::Range<u64>) -> Vec<Pkt> {
        slots.map(|k| self.pkt(k)).collect()
    }

    /// The decoded sample the WAV must hold for signal sample `n`.
    fn expect(&self, n: u64) -> i16 {
        self.codec.decode(self.codec.encode(self.signal.sample(n)))
    }

    /// WAV frame of packet slot 0 at 8 kHz.
    fn pos0(&self) -> usize {
        (self.first_ms * 8.0) as usize
    }
}

struct Wav {
    rate: u32,
    left: Vec<i16>,
    right: Vec<i16>,
}

fn read_wav(path: &Path) -> Wav {
    let mut r = hound::WavReader::open(path).expect("valid WAV");
    let spec = r.spec();
    assert_eq!(spec.channels, 2);
    assert_eq!(spec.bits_per_sample, 16);
    let s: Vec<i16> = r.samples::<i16>().map(|x| x.expect("sample")).collect();
    Wav {
        rate: spec.sample_rate,
        left: s.iter().step_by(2).copied().collect(),
        right: s.iter().skip(1).step_by(2).copied().collect(),
    }
}

fn wav_of(s: &MediaSummary) -> Wav {
    let rec = s.recording.as_ref().unwrap_or_else(|| {
        panic!("no recording: {:?}", s.no_recording_reason);
    });
    read_wav(&rec.path)
}

/// Asserts packet slots `slots` of `tx` sit in `ch` exactly where capture time puts them.
fn assert_slots(ch: &[i16], tx: &Tx, slots: std::ops::Range<u64>, what: &str) {
    for slot in slots {
        for i in 0..160u64 {
            let n = slot * 160 + i;
            let at = tx.pos0() + n as usize;
            assert_eq!(
                ch[at],
                tx.expect(n),
                "{what}: slot {slot} sample {i} (frame {at})"
            );
        }
    }
}

fn assert_silent(ch: &[i16], tx: &Tx, slots: std::ops::Range<u64>, what: &str) {
    let a = tx.pos0() + slots.start as usize * 160;
    let b = tx.pos0() + slots.end as usize * 160;
    assert!(
        ch[a..b].iter().all(|&s| s == 0),
        "{what}: frames {a}..{b} not silent"
    );
}

// ---------------------------------------------------------------------------------------
// Bit-exactness, alignment, duration

fn bit_exact(codec: Codec) {
    let mut rig = Rig::new();
    rig.g711_call();
    let caller = Tx {
        codec,
        ..Tx::caller()
    };
    let callee = Tx {
        codec,
        ..Tx::callee()
    };
    let mut pkts = caller.packets(0..147);
    pkts.extend(callee.packets(0..147));
    rig.feed(pkts);
    let s = rig.end(3000.0);
    let w = wav_of(&s);
    assert_eq!(w.rate, 8000);
    assert_slots(&w.left, &caller, 0..147, "caller (operator, left)");
    assert_slots(&w.right, &callee, 0..147, "callee (client, right)");
    assert!(w.left[..caller.pos0()].iter().all(|&x| x == 0));
    assert_eq!(s.caller.received, 147);
    assert_eq!(s.caller.lost, 0);
    assert_eq!(s.callee.expected, 147);
    assert_eq!(s.codecs, vec![codec.rtpmap_name().to_string()]);
    assert_eq!(s.loss_percent, 0.0);
    let mos = s.mos.expect("a MOS");
    assert!(mos > 4.3, "clean call MOS {mos}");
}

#[test]
fn pcmu_channel_is_the_g711_round_trip_sample_for_sample() {
    bit_exact(Codec::Pcmu);
}

#[test]
fn pcma_channel_is_the_g711_round_trip_sample_for_sample() {
    bit_exact(Codec::Pcma);
}

#[test]
fn operator_callee_goes_left() {
    let mut rig = Rig::new();
    rig.table
        .describe(ID, at(-100.0), Party::Caller, &g711_sdp(CALLER));
    rig.table
        .describe(ID, at(0.0), Party::Callee, &g711_sdp(CALLEE));
    rig.table.answered(ID, at(0.0), Party::Callee);
    let (caller, callee) = (Tx::caller(), Tx::callee());
    let mut pkts = caller.packets(0..50);
    pkts.extend(callee.packets(0..50));
    rig.feed(pkts);
    let w = wav_of(&rig.end(1100.0));
    assert_slots(&w.left, &callee, 0..50, "callee left");
    assert_slots(&w.right, &caller, 0..50, "caller right");
}

fn first_sound(ch: &[i16]) -> usize {
    ch.iter().position(|&s| s != 0).expect("some sound")
}

#[test]
fn channels_are_aligned_in_capture_time() {
    let mut rig = Rig::new();
    rig.g711_call();
    let caller = Tx {
        first_ms: 100.0,
        ..Tx::caller()
    };
    let callee = Tx {
        first_ms: 530.0,
        // An RTP clock that has nothing to do with the caller's.
        ts0: 123,
        ..Tx::callee()
    };
    let mut pkts = caller.packets(0..100);
    pkts.extend(callee.packets(0..80));
    rig.feed(pkts);
    let w = wav_of(&rig.end(2500.0));
    let offset_ms = (first_sound(&w.right) as f64 - first_sound(&w.left) as f64) / 8.0;
    assert!(
        (offset_ms - 430.0).abs() <= 20.0,
        "offset in the WAV {offset_ms} ms, capture offset 430 ms"
    );
}

#[test]
fn wav_covers_exactly_answer_to_end() {
    for (end_ms, answer_ms) in [(3000.0, 0.0), (1234.5, 0.0), (61_000.0, 0.0)] {
        let mut rig = Rig::new();
        rig.g711_call();
        let caller = Tx::caller();
        // Media that runs past the BYE is cut at the end.
        let n = ((end_ms + 200.0) / 20.0) as u64;
        rig.feed(caller.packets(0..n));
        let s = rig.end(end_ms);
        let w = wav_of(&s);
        let want = ((end_ms - answer_ms) * 8.0) as usize;
        assert!(
            w.left.len().abs_diff(want) <= 160,
            "{} frames for {end_ms} ms",
            w.left.len()
        );
        let rec = s.recording.unwrap();
        assert_eq!(rec.duration_ms, (w.left.len() as u64 * 1000) / 8000);
        assert_eq!(rec.bytes, 44 + 4 * w.left.len() as u64);
        assert!(rec.path.ends_with("call-1.wav"));
        assert_eq!(rig.files(), vec![rec.path.clone()], "no part file left");
    }
}

// ---------------------------------------------------------------------------------------
// Per-stream edge cases

#[test]
fn lost_packets_are_silence_and_counted() {
    let mut rig = Rig::new();
    rig.g711_call();
    let tx = Tx::caller();
    let pkts = tx.packets(0..100);
    let kept = pkts
        .into_iter()
        .enumerate()
        .filter(|(k, _)| !(10..14).contains(k) && *k != 50)
        .map(|(_, p)| p)
        .collect();
    rig.feed(kept);
    let s = rig.end(2100.0);
    let w = wav_of(&s);
    assert_slots(&w.left, &tx, 0..10, "before loss");
    assert_silent(&w.left, &tx, 10..14, "lost");
    assert_slots(&w.left, &tx, 14..50, "between");
    assert_silent(&w.left, &tx, 50..51, "lost");
    assert_slots(&w.left, &tx, 51..100, "after loss");
    assert_eq!(s.caller.lost, 5);
    assert_eq!(s.caller.expected, 100);
    assert!((s.loss_percent - 5.0).abs() < 0.01, "{}", s.loss_percent);
    assert!(s.caller.mos.unwrap() < 4.0);
}

#[test]
fn reordered_packets_land_in_their_place() {
    let mut rig = Rig::new();
    rig.g711_call();
    let tx = Tx::caller();
    let mut pkts = tx.packets(0..100);
    // 20 arrives after 21; 30 arrives three packets late (within the window).
    pkts[20].0 = tx.time(21).saturating_add(Duration::from_millis(1));
    pkts[30].0 = tx.time(33).saturating_add(Duration::from_millis(1));
    rig.feed(pkts);
    let s = rig.end(2100.0);
    assert_slots(&wav_of(&s).left, &tx, 0..100, "reordered");
    assert_eq!(s.caller.reordered, 2);
    assert_eq!(s.caller.lost, 0);
    assert_eq!(s.caller.late, 0);
}

#[test]
fn a_packet_later_than_the_window_is_dropped_not_misplaced() {
    let mut rig = Rig::new();
    rig.g711_call();
    let tx = Tx::caller();
    let mut pkts = tx.packets(0..100);
    pkts[20].0 = tx.time(60);
    rig.feed(pkts);
    let s = rig.end(2100.0);
    let w = wav_of(&s);
    assert_slots(&w.left, &tx, 0..20, "before");
    assert_silent(&w.left, &tx, 20..21, "too late");
    assert_slots(&w.left, &tx, 21..100, "after");
    assert_eq!(s.caller.late, 1);
}

#[test]
fn duplicates_are_dropped_and_counted() {
    let mut rig = Rig::new();
    rig.g711_call();
    let tx = Tx::caller();
    let mut pkts = tx.packets(0..100);
    let mut dup = tx.pkt(15);
    dup.0 = tx.time(15).saturating_add(Duration::from_micros(5));
    pkts.push(dup);
    let mut late_dup = tx.pkt(40);
    late_dup.0 = tx.time(44);
    pkts.push(late_dup);
    rig.feed(pkts);
    let s = rig.end(2100.0);
    assert_slots(&wav_of(&s).left, &tx, 0..100, "with duplicates");
    assert_eq!(s.caller.duplicates, 2);
    assert_eq!(s.caller.received, 100);
    assert_eq!(s.caller.lost, 0);
}

#[test]
fn ssrc_change_continues_the_channel_without_a_jump() {
    let mut rig = Rig::new();
    rig.g711_call();
    let a = Tx::caller();
    // From slot 60 a new source (after a transfer): new SSRC, sequence and timestamps.
    let b = Tx {
        ssrc: 0xABCD_0001,
        seq0: 7,
        ts0: 999_999,
        ..Tx::caller()
    };
    let mut pkts = a.packets(0..60);
    for slot in 60..120 {
        let n = slot - 60;
        pkts.push((
            b.time(slot),
            b.src,
            b.dst,
            wire::rtp(
                0,
                n == 0,
                7 + n as u16,
                999_999 + (n * 160) as u32,
                b.ssrc,
                &b.payload(slot),
            ),
        ));
    }
    rig.feed(pkts);
    let s = rig.end(2500.0);
    assert_slots(&wav_of(&s).left, &a, 0..120, "across the SSRC change");
    assert_eq!(s.caller.ssrc_changes, 1);
    assert_eq!(s.caller.expected, 120);
    assert_eq!(s.caller.lost, 0);
}

#[test]
fn a_one_packet_ssrc_glitch_neither_splits_nor_restarts_the_channel() {
    let mut rig = Rig::new();
    rig.g711_call();
    let tx = Tx::caller();
    let mut pkts = tx.packets(0..100);
    // The recv_streams capture: one stray packet with another SSRC on the same 5-tuple.
    pkts.push((
        tx.time(50).saturating_add(Duration::from_millis(7)),
        tx.src,
        tx.dst,
        wire::rtp(8, false, 31_000, 77, 0x0032_01E4, &[0x55; 160]),
    ));
    rig.feed(pkts);
    let s = rig.end(2100.0);
    assert_slots(&wav_of(&s).left, &tx, 0..100, "around the glitch");
    assert_eq!(s.caller.ssrc_changes, 0);
    assert_eq!(s.caller.lost, 0);
    assert_eq!(rig.table.stats().unconfirmed_source, 1);
}

/// Packets `slots` sent as consecutive sequence numbers (a sender that stops during
/// silence or hold keeps its numbering), timestamps by slot or by packet.
fn with_gap(
    tx: &Tx,
    before: std::ops::Range<u64>,
    after: std::ops::Range<u64>,
    ts_jumps: bool,
) -> Vec<Pkt> {
    before
        .chain(after.clone())
        .enumerate()
        .map(|(n, slot)| {
            let ts_slot = if ts_jumps { slot } else { n as u64 };
            let mut rtp = wire::rtp(
                tx.codec.payload_type(),
                n == 0 || slot == after.start,
                tx.seq0.wrapping_add(n as u16),
                tx.ts0.wrapping_add((ts_slot * 160) as u32),
                tx.ssrc,
                &tx.payload(slot),
            );
            rtp.truncate(12 + 160);
            (tx.time(slot), tx.src, tx.dst, rtp)
        })
        .collect()
}

#[test]
fn timestamp_jump_after_silence_suppression_is_filled_with_silence() {
    let mut rig = Rig::new();
    rig.g711_call();
    let tx = Tx::caller();
    rig.feed(with_gap(&tx, 0..40, 60..100, true));
    let s = rig.end(2100.0);
    let w = wav_of(&s);
    assert_slots(&w.left, &tx, 0..40, "talkspurt 1");
    assert_silent(&w.left, &tx, 40..60, "suppressed silence");
    assert_slots(&w.left, &tx, 60..100, "talkspurt 2");
    assert_eq!(s.caller.lost, 0);
}

#[test]
fn sequence_numbers_wrap_around() {
    let mut rig = Rig::new();
    rig.g711_call();
    let tx = Tx {
        seq0: 65_500,
        ..Tx::caller()
    };
    rig.feed(tx.packets(0..150));
    let s = rig.end(3100.0);
    assert_slots(&wav_of(&s).left, &tx, 0..150, "seq wrap");
    assert_eq!(s.caller.expected, 150);
    assert_eq!(s.caller.lost, 0);
}

#[test]
fn timestamps_wrap_around() {
    let mut rig = Rig::new();
    rig.g711_call();
    let tx = Tx {
        ts0: u32::MAX - 160 * 30 + 1,
        ..Tx::caller()
    };
    rig.feed(tx.packets(0..150));
    let s = rig.end(3100.0);
    assert_slots(&wav_of(&s).left, &tx, 0..150, "ts wrap");
    assert_eq!(s.caller.resyncs, 0);
}

fn hold_call(ts_jumps: bool) {
    let mut rig = Rig::new();
    rig.g711_call();
    let (a, b) = (Tx::caller(), Tx::callee());
    let mut pkts = with_gap(&a, 0..50, 125..150, ts_jumps);
    pkts.extend(with_gap(&b, 0..50, 125..150, ts_jumps));
    let (before, after): (Vec<Pkt>, Vec<Pkt>) = pkts.into_iter().partition(|p| p.0 < at(1500.0));
    rig.feed(before);
    // Caller holds (sendonly / recvonly), then resumes: RTP stops both ways meanwhile.
    let hold = sdp(
        CALLER,
        "RTP/AVP",
        "0 101",
        "a=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n",
    );
    let held = sdp(
        CALLEE,
        "RTP/AVP",
        "0 101",
        "a=rtpmap:101 telephone-event/8000\r\na=recvonly\r\n",
    );
    rig.table.describe(ID, at(1100.0), Party::Caller, &hold);
    rig.table.describe(ID, at(1102.0), Party::Callee, &held);
    assert!(rig.table.sweep(at(1500.0)).is_empty());
    rig.table
        .describe(ID, at(2500.0), Party::Caller, &g711_sdp(CALLER));
    rig.table
        .describe(ID, at(2502.0), Party::Callee, &g711_sdp(CALLEE));
    rig.feed(after);
    let s = rig.end(3100.0);
    let w = wav_of(&s);
    let what = if ts_jumps { "ts jumps" } else { "ts continues" };
    assert_slots(&w.left, &a, 0..50, what);
    assert_silent(&w.left, &a, 50..125, what);
    assert_slots(&w.left, &a, 125..150, what);
    assert_slots(&w.right, &b, 0..50, what);
    assert_slots(&w.right, &b, 125..150, what);
    assert_eq!(s.caller.lost, 0, "{what}");
    assert_eq!(w.left.len(), 3100 * 8);
}

#[test]
fn hold_and_unhold_give_silence_for_the_held_time_not_a_cut() {
    hold_call(true);
    hold_call(false);
}

#[test]
fn nat_learns_the_real_source_and_records_both_ways() {
    let mut rig = Rig::new();
    // The caller is behind NAT: its SDP says a private address it is never reached at.
    rig.table.describe(
        ID,
        at(-100.0),
        Party::Caller,
        &g711_sdp("192.168.1.10:4000"),
    );
    rig.table
        .describe(ID, at(0.0), Party::Callee, &g711_sdp(CALLEE));
    rig.table.answered(ID, at(0.0), Party::Caller);
    let public = addr("203.0.113.7:40000");
    let a = Tx {
        src: public,
        ..Tx::caller()
    };
    let b = Tx {
        dst: public,
        first_ms: 60.0,
        ..Tx::callee()
    };
    let mut pkts = a.packets(0..100);
    pkts.extend(b.packets(0..100));
    rig.feed(pkts);
    let s = rig.end(2200.0);
    let w = wav_of(&s);
    assert_slots(&w.left, &a, 0..100, "caller via NAT");
    assert_slots(&w.right, &b, 0..100, "callee to the learned address");
    assert_eq!(rig.table.stats().unknown_port, 0);
}

#[test]
fn ipv6_media_is_bound_too() {
    let mut rig = Rig::new();
    let (c6, e6) = ("[2001:db8::10]:16000", "[2001:db8::20]:26000");
    rig.table
        .describe(ID, at(-100.0), Party::Caller, &g711_sdp(c6));
    rig.table
        .describe(ID, at(0.0), Party::Callee, &g711_sdp(e6));
    rig.table.answered(ID, at(0.0), Party::Caller);
    let a = Tx {
        src: addr(c6),
        dst: addr(e6),
        ..Tx::caller()
    };
    rig.feed(a.packets(0..50));
    assert_slots(&wav_of(&rig.end(1100.0)).left, &a, 0..50, "IPv6");
}

#[test]
fn dtmf_in_the_middle_of_speech_is_kept_as_digits_and_is_silence_in_the_wav() {
    let mut rig = Rig::new();
    rig.g711_call();
    let tx = Tx::caller();
    let mut pkts = Vec::new();
    let mut seq = tx.seq0;
    let push = |slot: u64, rtp: Vec<u8>, pkts: &mut Vec<Pkt>| {
        pkts.push((tx.time(slot), tx.src, tx.dst, rtp));
    };
    let ts = |slot: u64| tx.ts0.wrapping_add((slot * 160) as u32);
    let mut slot = 0;
    for (digit, from, to) in [(5u8, 50u64, 59u64), (7, 100, 109)] {
        while slot < from {
            push(
                slot,
                wire::rtp(0, false, seq, ts(slot), tx.ssrc, &tx.payload(slot)),
                &mut pkts,
            );
            seq = seq.wrapping_add(1);
            slot += 1;
        }
        // An event: updates, then the end packet sent three times with one sequence number.
        for k in 0..(to - from) {
            let end = k >= to - from - 3;
            let dur = ((k + 1) * 160).min(160 * (to - from - 3)) as u16;
            let mut ev = vec![digit, if end { 0x80 | 10 } else { 10 }];
            ev.extend_from_slice(&dur.to_be_bytes());
            push(
                slot,
                wire::rtp(101, k == 0, seq, ts(from), tx.ssrc, &ev),
                &mut pkts,
            );
            if !end || k == to - from - 1 {
                seq = seq.wrapping_add(1);
            }
            slot += 1;
        }
    }
    while slot < 150 {
        push(
            slot,
            wire::rtp(0, false, seq, ts(slot), tx.ssrc, &tx.payload(slot)),
            &mut pkts,
        );
        seq = seq.wrapping_add(1);
        slot += 1;
    }
    rig.feed(pkts);
    let s = rig.end(3100.0);
    let w = wav_of(&s);
    assert_eq!(s.dtmf_digits, "57");
    assert_slots(&w.left, &tx, 0..50, "speech");
    assert_silent(&w.left, &tx, 50..59, "digit 5");
    assert_slots(&w.left, &tx, 59..100, "speech");
    assert_silent(&w.left, &tx, 100..109, "digit 7");
    assert_slots(&w.left, &tx, 109..150, "speech");
    assert_eq!(s.caller.lost, 0);
    assert_eq!(s.caller.duplicates, 4);
    assert_eq!(s.codecs, vec!["PCMU".to_string()]);
}

#[test]
fn comfort_noise_is_silence_not_speech() {
    let mut rig = Rig::new();
    rig.g711_call();
    let tx = Tx::caller();
    let mut pkts: Vec<Pkt> = Vec::new();
    let mut seq = tx.seq0;
    for slot in 0..100u64 {
        let ts = tx.ts0.wrapping_add((slot * 160) as u32);
        let rtp = if (30..50).contains(&slot) {
            if slot % 10 != 0 {
                continue;
            }
            // CN: a noise level byte, every 200 ms while silent.
            wire::rtp(13, false, seq, ts, tx.ssrc, &[40])
        } else {
            wire::rtp(0, slot == 50, seq, ts, tx.ssrc, &tx.payload(slot))
        };
        pkts.push((tx.time(slot), tx.src, tx.dst, rtp));
        seq = seq.wrapping_add(1);
    }
    rig.feed(pkts);
    let s = rig.end(2100.0);
    let w = wav_of(&s);
    assert_slots(&w.left, &tx, 0..30, "speech");
    assert_silent(&w.left, &tx, 30..50, "comfort noise");
    assert_slots(&w.left, &tx, 50..100, "speech");
    assert_eq!(rig.table.stats().comfort_noise, 2);
    assert_eq!(s.caller.lost, 0);
}

// ---------------------------------------------------------------------------------------
// Placement under stress: arrival timing never costs a received sample

impl Rng {
    /// Uniform in [0, 1): the delays of the timing tests, repeatable.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Slots `0..slots` of `tx` sent on time and captured `delay(k)` ms later.
fn delayed(tx: &Tx, slots: u64, mut delay: impl FnMut(u64) -> f64) -> Vec<Pkt> {
    (0..slots)
        .map(|k| {
            let (_, s, d, rtp) = tx.pkt(k);
            (at(tx.first_ms + 20.0 * k as f64 + delay(k)), s, d, rtp)
        })
        .collect()
}

/// Every slot in `slots` not counted late is exactly at its timestamp's place; answers
/// how many were.
fn assert_in_place_unless_late(ch: &[i16], tx: &Tx, slots: std::ops::Range<u64>) -> u64 {
    let mut exact = 0;
    for slot in slots {
        let at = tx.pos0() + (slot * 160) as usize;
        let want: Vec<i16> = (0..160).map(|i| tx.expect(slot * 160 + i)).collect();
        if ch[at..at + 160] == want[..] {
            exact += 1;
        } else {
            // Late: missing, or the part whose place was not yet on disk (in place).
            for (i, (&got, &w)) in ch[at..at + 160].iter().zip(&want).enumerate() {
                assert!(
                    got == 0 || got == w,
                    "slot {slot} sample {i} (frame {}) is neither in place nor missing",
                    at + i
                );
            }
        }
    }
    exact
}

#[test]
fn a_start_burst_loses_no_speech() {
    // A loaded sender stalls 60 ms, then sends its first four packets within a
    // millisecond, then paces every 20 ms.
    let mut rig = Rig::new();
    rig.g711_call();
    let tx = Tx::caller();
    let pkts = delayed(&tx, 500, |k| match k {
        0..=3 => 60.0 - 20.0 * k as f64 + 0.25 * k as f64,
        _ => 0.0,
    });
    rig.feed(pkts);
    let s = rig.end(10_100.0);
    let w = wav_of(&s);
    assert_slots(
        &w.left,
        &tx,
        0..500,
        "every packet at its timestamp's place",
    );
    assert_eq!(s.caller.late, 0);
    assert_eq!((s.caller.resyncs, s.caller.clock_slips), (0, 0));
}

#[test]
fn jitter_with_a_fat_tail_never_moves_the_stream() {
    let mut rig = Rig::new();
    rig.g711_call();
    let tx = Tx::caller();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // Mostly a few ms, one packet in 20 up to 150 ms, one in 200 up to 900 ms.
    let pkts = delayed(&tx, 3_000, |_| {
        let u = rng.unit();
        let v = rng.unit();
        if u < 0.005 {
            300.0 + 600.0 * v
        } else if u < 0.05 {
            50.0 + 100.0 * v
        } else {
            5.0 * v
        }
    });
    rig.feed(pkts);
    let s = rig.end(61_000.0);
    let w = wav_of(&s);
    let exact = assert_in_place_unless_late(&w.left, &tx, 0..3_000);
    assert_eq!(
        exact + s.caller.late,
        3_000,
        "every packet placed or counted late"
    );
    assert!(s.caller.late > 0 && s.caller.late < 60, "{}", s.caller.late);
    assert_eq!((s.caller.resyncs, s.caller.clock_slips), (0, 0));
}

#[test]
fn a_queue_that_builds_for_seconds_and_drains_never_moves_the_stream() {
    let mut rig = Rig::new();
    rig.g711_call();
    let tx = Tx::caller();
    let mut rng = Rng(0xC0FF_EE00_1234_5678);
    // A link that buffers: the queue grows to 3 s over 10 s, drains over 10 s, twice;
    // packets leave in order (FIFO), and 9 % are lost.
    let mut last_arrival = 0.0f64;
    let mut pkts = Vec::new();
    for k in 0..4_000u64 {
        let t = 20.0 * k as f64;
        let phase = (t / 1000.0) % 20.0;
        let queue = if phase < 10.0 {
            phase * 300.0
        } else {
            (20.0 - phase) * 300.0
        };
        let arrival = (t + queue).max(last_arrival + 0.05);
        last_arrival = arrival;
        if rng.unit() < 0.09 {
            continue;
        }
        let (_, s, d, rtp) = tx.pkt(k);
        pkts.push((at(tx.first_ms + arrival), s, d, rtp));
    }
    let sent = pkts.len() as u64;
    rig.feed(pkts);
    let s = rig.end(90_000.0);
    let w = wav_of(&s);
    let exact = assert_in_place_unless_late(&w.left, &tx, 0..4_000);
    assert_eq!(
        exact + s.caller.late,
        sent,
        "every packet placed or counted late"
    );
    // Only the packets that find the horizon too short as the queue grows are late:
    // it widens to wait for the next ones.
    assert!(
        s.caller.late * 100 < sent,
        "{} of {sent} late",
        s.caller.late
    );
    assert_eq!((s.caller.resyncs, s.caller.clock_slips), (0, 0));
}

/// A sender whose clock runs `ppm` off the capture clock for `slots` packets: it stays
/// with capture time by one-millisecond slips, and between slips every packet is
/// exact (a slip adds silence, or drops at most a millisecond, between two packets).
fn clock_off_by(ppm: f64, slots: u64) {
    let mut rig = Rig::new();
    rig.g711_call();
    let tx = Tx::caller();
    let scale = 1.0 + ppm * 1e-6;
    let pkts: Vec<Pkt> = (0..slots)
        .map(|k| {
            let (_, s, d, rtp) = tx.pkt(k);
            (at(tx.first_ms + 20.0 * k as f64 * scale), s, d, rtp)
        })
        .collect();
    let end_ms = tx.first_ms + 20.0 * slots as f64 * scale + 100.0;
    rig.feed(pkts);
    let s = rig.end(end_ms);
    let w = wav_of(&s);
    // Walk the channel against the packets' samples: silence may be added, or samples
    // dropped, only in slips of at most a millisecond.
    let want: Vec<i16> = (0..slots * 160).map(|n| tx.expect(n)).collect();
    let ch = &w.left[tx.pos0()..];
    let (mut i, mut j, mut added, mut dropped) = (0usize, 0usize, 0usize, 0usize);
    // Four samples in a row decide, so a sample that happens to decode to 0 is not
    // taken for a slip.
    let same = |i: usize, j: usize| (0..4).all(|k| ch.get(i + k) == want.get(j + k));
    while j < want.len() && i < ch.len() {
        if ch[i] == want[j] {
            i += 1;
            j += 1;
        } else if let Some(d) = (1..=8).find(|&d| same(i, j + d)) {
            j += d;
            dropped += d;
        } else if let Some(z) =
            (1..=8).find(|&z| ch[i..i + z].iter().all(|&x| x == 0) && same(i + z, j))
        {
            i += z;
            added += z;
        } else {
            panic!(
                "frame {i} is no sample near {j}: channel {:?}, want {:?}",
                &ch[i.saturating_sub(4)..i + 12],
                &want[j.saturating_sub(4)..j + 12]
            );
        }
    }
    let moved = (added + dropped) as u64;
    let drift_frames = (slots as f64 * 160.0 * ppm.abs() * 1e-6) as u64;
    assert!(
        moved + 160 >= drift_frames && moved <= drift_frames + 160,
        "{moved} frames slipped for {drift_frames} of drift"
    );
    assert!(s.caller.clock_slips > 0);
    // The last packet ends within a packet of its capture time.
    let last_cap = ((tx.first_ms + 20.0 * (slots - 1) as f64 * scale) * 8.0) as usize;
    let last_at = tx.pos0() + (i - 160).min(ch.len());
    assert!(
        last_at.abs_diff(last_cap) <= 160,
        "last packet at {last_at}, captured at {last_cap}"
    );
}

#[test]
fn a_slow_sender_clock_is_followed_by_slips_of_silence() {
    // 500 ppm for 12 minutes drifts as far as 100 ppm in an hour (360 ms).
    clock_off_by(500.0, 36_000);
}

#[test]
fn a_fast_sender_clock_is_followed_by_slips_of_a_millisecond() {
    clock_off_by(-500.0, 36_000);
}

#[test]
fn timestamps_leaping_half_the_clock_each_packet_cannot_overflow() {
    // Each packet's timestamp 2^31 - 1 past the last: in order, so the extended
    // timestamp climbs 2^31 a packet, past what (timestamp - anchor) x rate can hold
    // in 64 bits after about 540,000 packets (it panicked in a debug build).
    let mut rig = Rig::new();
    rig.g711_call();
    let tx = Tx::caller();
    let mut rtp = wire::rtp(tx.codec.payload_type(), false, 0, 0, tx.ssrc, &[0xFF]);
    for k in 0..600_000u64 {
        rtp[2..4].copy_from_slice(&(tx.seq0.wrapping_add(k as u16)).to_be_bytes());
        rtp[4..8].copy_from_slice(&((k as u32).wrapping_mul(0x7FFF_FFFF)).to_be_bytes());
        rig.table.datagram(&Datagram {
            time: at(tx.first_ms + 0.1 * k as f64),
            src: tx.src,
            dst: tx.dst,
            transport: Transport::Udp,
            payload: &rtp,
        });
    }
    let s = rig.end(61_000.0);
    assert_eq!(s.caller.received, 600_000);
}

// ---------------------------------------------------------------------------------------
// Codecs

fn g722_reference() -> (Vec<u8>, Vec<i16>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let bits = std::fs::read(dir.join("g722_chirp.g722")).expect("g722 data");
    let pcm = std::fs::read(dir.join("g722_chirp.ffmpeg.s16")).expect("reference");
    let pcm = pcm
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    (bits, pcm)
}

/// Tolerance against ffmpeg's G.722 decoder (the committed reference): none. Our decoder
/// (spandsp's, see src/media/g722.rs) gives ffmpeg 5.1's output sample for sample; the
/// ezk-g722 crate it came from was up to 510 LSB off for the first 0.4 s (SNR 46 dB).
const G722_MAX_DIFF: i32 = 0;
const G722_MIN_SNR_DB: f64 = f64::INFINITY;

#[test]
fn g722_is_recorded_at_16khz_and_matches_a_reference_decoder() {
    let (bits, reference) = g722_reference();
    let mut rig = Rig::new();
    let wb = |rtp: &str| {
        sdp(
            rtp,
            "RTP/AVP",
            "9 0 101",
            "a=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        )
    };
    rig.table
        .describe(ID, at(-100.0), Party::Caller, &wb(CALLER));
    rig.table.describe(ID, at(0.0), Party::Callee, &wb(CALLEE));
    rig.table.answered(ID, at(0.0), Party::Caller);
    let a = Tx::caller();
    let b = Tx::callee();
    let mut pkts: Vec<Pkt> = bits
        .chunks(160)
        .enumerate()
        .map(|(k, p)| {
            let rtp = wire::rtp(9, k == 0, 100 + k as u16, 5000 + 160 * k as u32, 0xDDD, p);
            (a.time(k as u64), a.src, a.dst, rtp)
        })
        .collect();
    // The other side stays narrow-band (PCMU): its channel is interpolated to 16 kHz.
    pkts.extend(b.packets(0..100));
    rig.feed(pkts);
    let s = rig.end(2200.0);
    let w = wav_of(&s);
    assert_eq!(w.rate, 16_000);
    assert_eq!(w.left.len(), 2200 * 16);
    let start = (a.first_ms * 16.0) as usize;
    let got = &w.left[start..start + reference.len()];
    let (mut sig, mut err, mut max) = (0f64, 0f64, 0i32);
    for (&g, &r) in got.iter().zip(&reference) {
        let d = i32::from(g) - i32::from(r);
        max = max.max(d.abs());
        sig += f64::from(r) * f64::from(r);
        err += f64::from(d) * f64::from(d);
    }
    let snr = if err == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (sig / err).log10()
    };
    println!("G.722 vs ffmpeg: max |diff| {max}, SNR {snr:.1} dB");
    assert!(max <= G722_MAX_DIFF, "max diff {max}");
    assert!(snr >= G722_MIN_SNR_DB, "SNR {snr}");
    // Narrow side: every second frame is the 8 kHz sample itself, the others midpoints.
    let p0 = (b.first_ms * 16.0) as usize;
    for n in 1..16_000usize {
        assert_eq!(
            w.right[p0 + 2 * n + 1],
            b.expect(n as u64),
            "narrow sample {n}"
        );
        let mid = ((i32::from(b.expect(n as u64 - 1)) + i32::from(b.expect(n as u64))) >> 1) as i16;
        assert_eq!(w.right[p0 + 2 * n], mid, "interpolated sample {n}");
    }
    assert_eq!(s.codecs, vec!["G722".to_string(), "PCMU".to_string()]);
}

#[test]
fn dynamic_payload_types_follow_the_rtpmap() {
    let mut rig = Rig::new();
    let dynamic = |rtp: &str| {
        sdp(
            rtp,
            "RTP/AVP",
            "98 101",
            "a=rtpmap:98 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        )
    };
    rig.table
        .describe(ID, at(-100.0), Party::Caller, &dynamic(CALLER));
    rig.table
        .describe(ID, at(0.0), Party::Callee, &dynamic(CALLEE));
    rig.table.answered(ID, at(0.0), Party::Caller);
    let tx = Tx {
        codec: Codec::Pcma,
        ..Tx::caller()
    };
    let pkts = (0..50u64)
        .map(|k| {
            let mut p = tx.pkt(k);
            p.3[1] = (p.3[1] & 0x80) | 98;
            p
        })
        .collect();
    rig.feed(pkts);
    let s = rig.end(1100.0);
    assert_slots(&wav_of(&s).left, &tx, 0..50, "PT 98 = PCMA");
    assert_eq!(s.codecs, vec!["PCMA".to_string()]);
}

#[test]
fn an_unsupported_codec_keeps_the_summary_writes_no_wav_and_says_why() {
    let mut rig = Rig::new();
    let speex = |rtp: &str| {
        sdp(
            rtp,
            "RTP/AVP",
            "97 101",
            "a=rtpmap:97 speex/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        )
    };
    rig.table
        .describe(ID, at(-100.0), Party::Caller, &speex(CALLER));
    rig.table
        .describe(ID, at(0.0), Party::Callee, &speex(CALLEE));
    rig.table.answered(ID, at(0.0), Party::Caller);
    let tx = Tx::callee();
    let pkts = (0..100u64)
        .map(|k| {
            let rtp = wire::rtp(97, k == 0, k as u16, 160 * k as u32, 9, &[0x5A; 20]);
            (tx.time(k), tx.src, tx.dst, rtp)
        })
        .collect();
    rig.feed(pkts);
    let s = rig.end(2100.0);
    assert!(s.recording.is_none());
    assert_eq!(
        s.no_recording_reason.as_deref(),
        Some("unsupported codec speex")
    );
    assert_eq!(s.codecs, vec!["speex".to_string()]);
    assert_eq!(s.callee.received, 100);
    assert!(rig.files().is_empty(), "{:?}", rig.files());
    let st = rig.table.stats();
    assert_eq!(st.no_recording_unsupported_codec, 1);
    assert_eq!(st.unsupported_codec_packets, 100);
}

#[test]
fn srtp_keeps_the_summary_writes_no_wav_and_says_why() {
    let mut rig = Rig::new();
    let savp = |rtp: &str| {
        sdp(rtp, "RTP/SAVP", "0", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n")
    };
    rig.table
        .describe(ID, at(-100.0), Party::Caller, &savp(CALLER));
    rig.table
        .describe(ID, at(0.0), Party::Callee, &savp(CALLEE));
    rig.table.answered(ID, at(0.0), Party::Caller);
    rig.feed(Tx::caller().packets(0..50));
    let s = rig.end(1100.0);
    assert!(s.recording.is_none());
    assert_eq!(
        s.no_recording_reason.as_deref(),
        Some("encrypted (RTP/SAVP)")
    );
    assert_eq!(s.caller.received, 50, "quality figures are still kept");
    assert!(rig.files().is_empty());
    assert_eq!(rig.table.stats().no_recording_encrypted, 1);
}

#[test]
fn recording_disabled_and_no_rtp_are_reasons_too() {
    let mut rig = Rig::with(|o| o.enabled = false);
    rig.g711_call();
    rig.feed(Tx::caller().packets(0..10));
    let s = rig.end(300.0);
    assert_eq!(s.no_recording_reason.as_deref(), Some("recording disabled"));
    assert_eq!(s.caller.received, 10);

    let mut rig = Rig::new();
    rig.g711_call();
    let s = rig.end(5000.0);
    assert_eq!(s.no_recording_reason.as_deref(), Some("no RTP"));
    assert!(rig.files().is_empty());
}

// ---------------------------------------------------------------------------------------
// What is not RTP

#[test]
fn rtcp_stun_dtls_and_unannounced_ports_are_recognised_and_not_audio() {
    let mut rig = Rig::new();
    rig.g711_call();
    let tx = Tx::caller();
    let mut pkts = tx.packets(0..50);
    let rtcp_dst = addr("10.0.0.20:26001");
    let rr = vec![
        0x81, 201, 0, 7, 0x11, 0x11, 0x22, 0x22, 0x33, 0x33, 0x44, 0x44, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    pkts.push((tx.time(3), tx.src, rtcp_dst, rr.clone()));
    // RTCP multiplexed on the RTP port (RFC 5761).
    pkts.push((tx.time(4), tx.src, tx.dst, rr));
    // A STUN binding request and a DTLS record on the RTP port.
    pkts.push((
        tx.time(5),
        tx.src,
        tx.dst,
        vec![
            0, 1, 0, 0, 0x21, 0x12, 0xA4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
        ],
    ));
    pkts.push((
        tx.time(6),
        tx.src,
        tx.dst,
        vec![22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    ));
    // RTP to a port nobody announced.
    for k in 0..5 {
        pkts.push((tx.time(k), tx.src, addr("10.0.0.20:30000"), tx.rtp_n(k, k)));
    }
    rig.feed(pkts);
    let st = rig.table.stats();
    assert_eq!(st.rtcp_packets, 2);
    assert_eq!(st.stun, 1);
    assert_eq!(st.dtls, 1);
    assert_eq!(st.unknown_port, 5);
    let s = rig.end(1100.0);
    assert_slots(&wav_of(&s).left, &tx, 0..50, "with RTCP/STUN/DTLS beside");
}

/// xorshift64*: deterministic bytes for the garbage test.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn garbage_on_an_rtp_port_is_counted_by_reason_and_never_corrupts_or_panics() {
    let mut rig = Rig::new();
    rig.g711_call();
    let tx = Tx::caller();
    let mut rng = Rng(0x5EED_CA11);
    let mut pkts = Vec::new();
    for k in 0..150u64 {
        pkts.push(tx.pkt(k));
        // Garbage interleaved from the very first packet: random bytes, half of them
        // dressed as RTP version 2 with a PT the SDP maps.
        for j in 0..20 {
            let len = (rng.next() % 300) as usize;
            let mut g: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if j % 2 == 0 && len > 1 {
                g[0] = (g[0] & 0x3F) | 0x80;
                g[1] = (g[1] & 0x80) | [0u8, 8, 13, 101][j % 4];
            }
            pkts.push((
                tx.time(k)
                    .saturating_add(Duration::from_micros(1 + j as u64)),
                tx.src,
                tx.dst,
                g,
            ));
        }
    }
    let t = |k: u64| tx.time(k).saturating_add(Duration::from_micros(500));
    let base = |b0: u8| {
        let mut v = vec![b0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        v.extend_from_slice(&[0xFF; 8]);
        v
    };
    // Each defect by name.
    pkts.push((t(10), tx.src, tx.dst, base(0xC0)));
    pkts.push((t(11), tx.src, tx.dst, base(0x8F)));
    let mut ext = base(0x90);
    ext[12..16].copy_from_slice(&[0xBE, 0xDE, 0x7F, 0xFF]);
    pkts.push((t(12), tx.src, tx.dst, ext));
    let mut pad = base(0xA0);
    *pad.last_mut().unwrap() = 200;
    pkts.push((t(13), tx.src, tx.dst, pad));
    pkts.push((t(14), tx.src, tx.dst, vec![0x80, 0, 1]));
    // Same SSRC as the real stream, a payload type that changes every packet.
    for k in 0..40u64 {
        let pt = [0u8, 8][(k % 2) as usize];
        let mut p = wire::rtp(
            pt,
            false,
            tx.seq0.wrapping_add(200 + k as u16),
            1,
            tx.ssrc,
            &[0x11; 160],
        );
        p.truncate(12 + 160);
        pkts.push((t(60 + k), tx.src, tx.dst, p));
    }
    rig.feed(pkts);
    let st = rig.table.stats();
    println!("{st:?}");
    assert!(st.bad_version > 0);
    assert!(st.csrc_past_end > 0);
    assert!(st.extension_past_end > 0);
    assert!(st.bad_padding > 0);
    assert!(st.too_short > 0);
    assert!(st.payload_type_flapping > 0);
    let s = rig.end(3100.0);
    let w = wav_of(&s);
    // The flapping packets claim sequence numbers far ahead; the real ones still play.
    assert_slots(&w.left, &tx, 0..60, "real stream among garbage");
}

#[test]
fn the_rtp_entry_point_survives_any_bytes() {
    // Fuzz without a call bound too, and a call in every state.
    let mut rig = Rig::new();
    rig.g711_call();
    let mut rng = Rng(42);
    let dst = addr(CALLEE);
    for i in 0..200_000u64 {
        let len = (rng.next() % 64) as usize;
        let mut g: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if len > 12 {
            g[0] = 0x80 | (g[0] & 0x3F);
            g[1] &= 0x80;
            // A handful of SSRCs and nearby sequence numbers: confirmations, restarts.
            g[8..12].copy_from_slice(&((rng.next() % 3) as u32).to_be_bytes());
        }
        let t = at(i as f64 * 0.05);
        rig.table.datagram(&Datagram {
            time: t,
            src: addr(CALLER),
            dst,
            transport: Transport::Udp,
            payload: &g,
        });
    }
    let s = rig.end(10_001.0);
    assert!(s.recording.is_some() || s.no_recording_reason.is_some());
}

// ---------------------------------------------------------------------------------------
// Timeouts and crash safety

#[test]
fn sweep_reports_calls_whose_media_stopped() {
    let mut rig = Rig::with(|o| o.media_timeout = Duration::from_secs(5));
    rig.g711_call();
    rig.feed(Tx::caller().packets(0..50));
    assert_eq!(rig.table.last_media_time(ID), Some(Tx::caller().time(49)));
    assert!(rig.table.sweep(at(4000.0)).is_empty());
    assert_eq!(
        rig.table.sweep(at(7000.0)),
        vec![(ID.to_string(), Tx::caller().time(49))]
    );
    // On hold, the hold timeout applies instead.
    let hold = sdp(CALLER, "RTP/AVP", "0", "a=inactive\r\n");
    rig.table.describe(ID, at(7100.0), Party::Caller, &hold);
    assert!(rig.table.sweep(at(8000.0)).is_empty());
}

#[test]
fn repair_partial_fixes_a_part_file_cut_by_a_crash() {
    let mut rig = Rig::new();
    rig.g711_call();
    let tx = Tx::caller();
    rig.feed(tx.packets(0..150));
    // The process dies here: take the part file as it is on disk, torn mid-frame.
    let part = rig.dir.path().join("rec/call-1.wav.part");
    let crashed = rig.dir.path().join("crashed.wav.part");
    let mut bytes = std::fs::read(&part).expect("part file exists while the call runs");
    assert!(
        bytes.len() > 44 + 4 * 8000,
        "audio reaches disk as the call goes"
    );
    bytes.extend_from_slice(&[1, 2, 3]);
    std::fs::write(&crashed, &bytes).unwrap();
    let rec = repair_partial(&crashed).expect("repaired");
    assert_eq!(rec.path, rig.dir.path().join("crashed.wav"));
    assert!(!crashed.exists());
    let w = read_wav(&rec.path);
    assert_eq!(rec.sample_rate, 8000);
    assert_eq!(rec.bytes, 44 + 4 * w.left.len() as u64);
    assert_eq!(w.left.len(), (bytes.len() - 44) / 4);
    let whole_slots = (w.left.len() - tx.pos0()) / 160;
    assert_slots(&w.left, &tx, 0..whole_slots as u64, "repaired audio");
    // Not a WAV: an error, not a panic.
    let junk = rig.dir.path().join("junk.wav.part");
    std::fs::write(&junk, b"RIFF").unwrap();
    assert!(repair_partial(&junk).is_err());
}

#[test]
fn memory_per_call_is_bounded_and_flat_in_call_length() {
    // A 10-minute call only ever holds the ring: everything older is on disk.
    let mut rig = Rig::new();
    rig.g711_call();
    let tx = Tx::caller();
    for k in 0..30_000u64 {
        let (t, s, d, p) = tx.pkt(k);
        rig.table.datagram(&Datagram {
            time: t,
            src: s,
            dst: d,
            transport: Transport::Udp,
            payload: &p,
        });
        if k % 5000 == 4999 {
            let part = rig.dir.path().join("rec/call-1.wav.part");
            let on_disk = std::fs::metadata(part).unwrap().len() as i64;
            let due = 44 + 4 * (tx.pos0() as i64 + 160 * (k as i64 + 1));
            assert!(
                (due - on_disk).abs() < 4 * 8000,
                "{on_disk} on disk, {due} due"
            );
        }
    }
    let s = rig.end(600_100.0);
    assert_eq!(s.caller.received, 30_000);
}

// ---------------------------------------------------------------------------------------
// Real captures (../shared/pcaps), through the media layer with SIP read by the test

mod shared {
    use super::*;
    use calltap::net::{Decoder, DecoderOptions};
    use calltap::replay::{replay_files, DatagramTap};
    use std::collections::HashMap;

    pub fn dir() -> Option<PathBuf> {
        let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps");
        if d.is_dir() {
            Some(d)
        } else {
            skip::skip(format!(
                "{} is absent; shared capture media tests skipped",
                d.display()
            ));
            None
        }
    }

    /// Replays a capture: SIP on port 5060 describes, answers and ends calls (the
    /// caller is the operator); everything else goes to the media table. Calls with no
    /// BYE end at the last datagram.
    pub fn replay(file: &str) -> Option<(Vec<(String, MediaSummary)>, calltap::media::MediaStats)> {
        let path = dir()?.join(file);
        let tmp = tempfile::tempdir().unwrap();
        let mut table = MediaTable::new(MediaOptions {
            recordings_dir: tmp.path().to_path_buf(),
            ..MediaOptions::default()
        });
        let mut caller_tag: HashMap<String, Vec<u8>> = HashMap::new();
        let mut out = Vec::new();
        let mut last = Timestamp::default();
        {
            let mut tap = DatagramTap {
                decoder: Decoder::new(&DecoderOptions::default()),
                on_datagram: |d: &Datagram<'_>| {
                    last = last.max(d.time);
                    let sip = d.src.port() == 5060
                        || d.dst.port() == 5060
                        || d.transport == Transport::Tcp;
                    if !sip {
                        table.datagram(d);
                        return;
                    }
                    let Ok((m, _)) = calltap::sip::message::parse(d.payload) else {
                        return;
                    };
                    let id = m.call_id_lossy().into_owned();
                    let from_tag = m.from_tag().unwrap_or_default().to_vec();
                    let is_invite = m.cseq().method == b"INVITE";
                    if m.is_request() && is_invite && !caller_tag.contains_key(&id) {
                        caller_tag.insert(id.clone(), from_tag.clone());
                    }
                    let Some(ctag) = caller_tag.get(&id) else {
                        return;
                    };
                    let from_caller = &from_tag == ctag;
                    let side = match (m.is_request(), from_caller) {
                        (true, true) | (false, false) => Party::Caller,
                        _ => Party::Callee,
                    };
                    if let Some(sdp) = m.sdp().and_then(|b| SessionDescription::parse(b).ok()) {
                        table.describe(&id, d.time, side, &sdp);
                    }
                    if m.status_code().is_some_and(|c| (200..300).contains(&c)) && is_invite {
                        table.answered(&id, d.time, Party::Caller);
                    }
                    if m.is_request() && m.cseq().method == b"BYE" {
                        if let Some(s) = table.ended(&id, d.time) {
                            out.push((id.clone(), s));
                        }
                    }
                },
            };
            replay_files(&[&path], &mut tap, false);
        }
        // No BYE: the call ends with its last packet (which lasts a packet time).
        let last = last.saturating_add(Duration::from_millis(20));
        for id in caller_tag.keys() {
            if let Some(s) = table.ended(id, last) {
                out.push((id.clone(), s));
            }
        }
        // Keep the WAVs readable for the caller's checks: move them out of the temp dir.
        let keep = std::env::temp_dir().join(format!("calltap-media-{file}"));
        let _ = std::fs::remove_dir_all(&keep);
        std::fs::create_dir_all(&keep).unwrap();
        for (_, s) in &mut out {
            if let Some(r) = s.recording.as_mut() {
                let to = keep.join(r.path.file_name().unwrap());
                std::fs::rename(&r.path, &to).unwrap();
                r.path = to;
            }
        }
        Some((out, table.stats()))
    }

    /// Frames between the first and the last sound of a channel.
    pub fn sound_span(ch: &[i16]) -> usize {
        match (
            ch.iter().position(|&s| s != 0),
            ch.iter().rposition(|&s| s != 0),
        ) {
            (Some(a), Some(b)) => b + 1 - a,
            _ => 0,
        }
    }
}

/// Every RTP payload of a capture sent to `port` with payload type `pt`, in arrival order.
fn payloads_to(file: &str, port: u16, pt: u8) -> Vec<(Timestamp, Vec<u8>)> {
    use calltap::net::{Decoder, DecoderOptions};
    use calltap::replay::{replay_files, DatagramTap};
    let mut v = Vec::new();
    let path = shared::dir().expect("checked").join(file);
    let mut tap = DatagramTap {
        decoder: Decoder::new(&DecoderOptions::default()),
        on_datagram: |d: &Datagram<'_>| {
            if d.dst.port() == port && d.payload.len() > 12 && d.payload[1] & 0x7F == pt {
                v.push((d.time, d.payload[12..].to_vec()));
            }
        },
    };
    replay_files(&[&path], &mut tap, false);
    drop(tap);
    v
}

#[test]
fn shared_g711_calls_record_every_rtp_packet() {
    let Some((calls, _)) = shared::replay("sip-rtp-g711.pcap") else {
        return;
    };
    assert_eq!(calls.len(), 2);
    // tshark: PCMU 425 packets (call 1), PCMA 414 (call 2), one-way from the callee to
    // port 6000, none lost. Each must be in the WAV, decoded, where its timestamp puts it.
    let want: HashMap<&str, (u64, Codec)> = [
        ("1-1966@10.0.2.20", (425, Codec::Pcmu)),
        ("1-1968@10.0.2.20", (414, Codec::Pcma)),
    ]
    .into();
    for (id, s) in &calls {
        let (packets, codec) = want[id.as_str()];
        assert_eq!(s.callee.received, packets, "{id}");
        assert_eq!(s.callee.lost, 0, "{id}");
        assert_eq!(s.codecs, vec![codec.rtpmap_name().to_string()], "{id}");
        let w = wav_of(s);
        assert!(
            w.left.iter().all(|&x| x == 0),
            "{id}: the caller sent nothing"
        );
        let rtp = payloads_to("sip-rtp-g711.pcap", 6000, codec.payload_type());
        assert_eq!(rtp.len() as u64, packets);
        let pcm: Vec<i16> = rtp
            .iter()
            .flat_map(|(_, p)| p.iter().map(|&b| codec.decode(b)))
            .collect();
        assert_eq!(pcm.len(), packets as usize * 160);
        // From the first packet's place, the WAV holds every packet's samples in order;
        // the recording stops at the BYE, which may cut into the last packet.
        let fits = |f: usize| {
            let m = pcm.len().min(w.right.len() - f);
            m + 160 >= pcm.len() && w.right[f..f + m] == pcm[..m]
        };
        let start = (0..8000)
            .find(|&f| fits(f))
            .unwrap_or_else(|| panic!("{id}: the {packets} packets are not in the WAV in order"));
        let in_wav = pcm.len().min(w.right.len() - start);
        println!(
            "{id}: {packets} packets = {} samples, {in_wav} in the WAV from frame {start}; WAV {} ms",
            pcm.len(),
            w.right.len() / 8
        );
    }
}

use std::collections::HashMap;

#[test]
fn shared_g722_call_is_recorded_wideband() {
    let Some((calls, _)) = shared::replay("sip-rtp-g722.pcap") else {
        return;
    };
    let (_, s) = &calls[0];
    assert_eq!(s.callee.received, 425);
    let w = wav_of(s);
    assert_eq!(w.rate, 16_000);
    let span = shared::sound_span(&w.right);
    assert!(span.abs_diff(425 * 320) <= 320, "{span}");
}

/// The G.729 capture is recorded (tests/codecs.rs holds its samples to bcg729's).
#[test]
fn shared_g729_call_is_recorded() {
    let Some((calls, stats)) = shared::replay("sip-rtp-g729a.pcap") else {
        return;
    };
    let (_, s) = &calls[0];
    assert_eq!(s.codecs, ["G729"]);
    let w = wav_of(s);
    assert_eq!(w.rate, 8_000);
    let span = shared::sound_span(&w.right).max(shared::sound_span(&w.left));
    assert!(span.abs_diff(425 * 160) <= 320, "{span}");
    assert_eq!(stats.unsupported_codec_packets, 0);
}

#[test]
fn shared_hold_capture_gives_silence_for_the_hold() {
    let Some((calls, _)) = shared::replay("made-sll2-nanosecond-hold.pcap") else {
        return;
    };
    let (_, s) = &calls[0];
    assert_eq!(s.caller.received, 197);
    assert_eq!(s.callee.received, 197);
    assert_eq!(s.caller.lost, 0);
    let w = wav_of(s);
    // 5.025 s answered (0.611 .. 5.636): the held second is silence, not cut.
    assert!(w.left.len().abs_diff(5025 * 8) <= 160, "{}", w.left.len());
    for ch in [&w.left, &w.right] {
        let span = shared::sound_span(ch);
        assert!(
            span > 197 * 160 + 7000,
            "{span}: the hold must stay in the timeline"
        );
    }
}

#[test]
fn shared_interception_ssrc_change_and_g722() {
    let Some((calls, stats)) = shared::replay("interception.pcapng") else {
        return;
    };
    assert_eq!(calls.len(), 3);
    for (id, s) in &calls {
        println!(
            "{id}: {:?} {:?} caller {:?} callee {:?}",
            s.codecs,
            s.recording.as_ref().map(|r| (r.sample_rate, r.duration_ms)),
            s.caller,
            s.callee
        );
        assert!(s.recording.is_some(), "{id}: {:?}", s.no_recording_reason);
    }
    let g722 = calls
        .iter()
        .find(|(_, s)| s.codecs.contains(&"G722".to_string()))
        .expect("the G.722 call");
    assert_eq!(g722.1.recording.as_ref().unwrap().sample_rate, 16_000);
    let first = calls
        .iter()
        .find(|(id, _)| id.starts_with("p65557t1573829978"))
        .unwrap();
    // The carrier (caller) changes SSRC after 7 packets: one change, no restart.
    assert_eq!(first.1.caller.ssrc_changes, 1);
    assert_eq!(first.1.caller.received, 7 + 1021);
    assert!(stats.ssrc_changes >= 1);
}

#[test]
fn shared_forensic_call_keeps_the_dtmf_digits() {
    let Some((calls, stats)) = shared::replay("Forensic_challenge_4.pcap") else {
        return;
    };
    let (_, s) = &calls[0];
    println!("digits {:?}, stats {stats:?}", s.dtmf_digits);
    assert!(!s.dtmf_digits.is_empty());
    assert!(s.recording.is_some());
}

#[test]
fn shared_zrtp_call_has_no_wav() {
    let Some((calls, stats)) = shared::replay("Asterisk_ZFONE_XLITE.pcap") else {
        return;
    };
    let (_, s) = &calls[0];
    println!("{:?} {stats:?}", s.no_recording_reason);
    assert!(stats.zrtp > 0);
    assert_eq!(s.no_recording_reason.as_deref(), Some("encrypted (ZRTP)"));
}

/// RTP-only captures: the call is described from what the manifest says.
fn rtp_only(
    file: &str,
    src: &str,
    dst: &str,
    pt: &str,
) -> Option<(MediaSummary, calltap::media::MediaStats)> {
    use calltap::net::{Decoder, DecoderOptions};
    use calltap::replay::{replay_files, DatagramTap};
    let path = shared::dir()?.join(file);
    let tmp = tempfile::tempdir().unwrap();
    let mut table = MediaTable::new(MediaOptions {
        recordings_dir: tmp.path().to_path_buf(),
        ..MediaOptions::default()
    });
    let attrs = "a=rtpmap:101 telephone-event/8000\r\n";
    table.describe(ID, at(0.0), Party::Caller, &sdp(src, "RTP/AVP", pt, attrs));
    table.describe(ID, at(0.0), Party::Callee, &sdp(dst, "RTP/AVP", pt, attrs));
    let (mut first, mut last) = (None, Timestamp::default());
    {
        let mut tap = DatagramTap {
            decoder: Decoder::new(&DecoderOptions::default()),
            on_datagram: |d: &Datagram<'_>| {
                if first.is_none() {
                    first = Some(d.time);
                    table.answered(ID, d.time, Party::Caller);
                }
                last = d.time;
                table.datagram(d);
            },
        };
        replay_files(&[&path], &mut tap, false);
    }
    let s = table.ended(ID, last.saturating_add(Duration::from_millis(20)))?;
    let stats = table.stats();
    // Read the WAV before the temp dir goes.
    let s = match s.recording.as_ref() {
        Some(r) => {
            let keep = std::env::temp_dir().join(format!("calltap-media-{file}.wav"));
            std::fs::copy(&r.path, &keep).unwrap();
            let mut s2 = s.clone();
            s2.recording.as_mut().unwrap().path = keep;
            s2
        }
        None => s,
    };
    Some((s, stats))
}

#[test]
fn shared_one_packet_ssrc_glitch_does_not_split_the_recording() {
    let Some((s, stats)) = rtp_only(
        "recv_streams_SSRC_0x3201e4_0x1000a323.pcap",
        "10.50.153.209:17548",
        "10.50.144.208:40308",
        "8",
    ) else {
        return;
    };
    assert_eq!(s.caller.ssrc_changes, 0);
    assert_eq!(stats.unconfirmed_source, 1);
    assert_eq!(s.caller.received, 1671);
    assert_eq!(s.caller.lost, 1);
    let w = wav_of(&s);
    let span = shared::sound_span(&w.left);
    assert!(span.abs_diff(1672 * 160) <= 2 * 160, "{span}");
}

#[test]
fn shared_carrier_loss_is_counted_and_filled() {
    let Some((s, _)) = rtp_only(
        "CARRIER_G711U.pcap",
        "208.89.128.69:47322",
        "81.201.84.200:13030",
        "0",
    ) else {
        return;
    };
    assert_eq!(s.caller.received, 800);
    assert_eq!(s.caller.lost, 14);
    let w = wav_of(&s);
    assert!(w.left.len().abs_diff(16_280 * 8) <= 160, "{}", w.left.len());
}

#[test]
fn shared_ptime_30_stream_is_recorded_whole() {
    let Some((s, _)) = rtp_only("g711a.pcap", "10.1.3.143:5000", "10.1.6.18:2006", "8") else {
        return;
    };
    assert_eq!(s.caller.received, 236);
    let w = wav_of(&s);
    let span = shared::sound_span(&w.left);
    assert!(span.abs_diff(236 * 240) <= 240, "{span}");
}

#[test]
fn shared_dtmf_only_stream_gives_one_digit() {
    let Some((s, _)) = rtp_only(
        "dtmf_2833_1.pcap",
        "192.168.0.3:49176",
        "192.168.0.1:10000",
        "101",
    ) else {
        return;
    };
    assert_eq!(s.dtmf_digits, "1");
    assert_eq!(s.caller.duplicates, 2);
}
