//! One direction of a call's media: source confirmation (SSRC), sequence and timestamp
//! unwrapping, duplicates and reordering, jitter, DTMF, and placement of decoded audio on
//! the recording's timeline.
//!
//! Placement: every sample goes where its RTP timestamp puts it, so a stream whose
//! timestamps are contiguous is written contiguously, each received sample once, in
//! timestamp order; gaps (loss, silence suppression, hold with a timestamp jump) stay
//! silent. The timeline is anchored on the least-delayed packet, since network delay
//! only ever makes a packet late: a source's first packet sets it (at its capture time,
//! or right after the previous source's last packet when within a packet of it: an SSRC
//! change continues the channel), and while the source's audio is still in memory an
//! earlier-than-predicted packet moves the anchor (and what was written) back to it, so
//! a first packet held up behind a start burst costs nothing. Delay however it varies
//! (jitter, a queue that builds for seconds and drains) never moves the stream; a packet
//! whose place was already written to disk is counted late, and when it came in order
//! (a queue, not a reordering) the recorder's horizon widens so the next ones fit. Only a sender clock running
//! at another rate than the capture clock does: a packet earlier than the anchor allows
//! (impossible by delay), or a least delay higher than the anchor's for three windows of
//! `WINDOW_PACKETS` in a row, is corrected by one-millisecond slips (or all at once into
//! a silence gap), counted. A timestamp that breaks with its sequence number (a restart,
//! a jump past the writable window) or the first packet after a hold change is
//! re-placed at once.

use std::net::SocketAddr;

use crate::base::Timestamp;

use super::codec::{decode_g711, Kind, ALAW, ULAW};
use super::g722::G722;
use super::g726::G726;
use super::g729::{self, G729};
use super::gsm::{self, Gsm};
use super::opus::{self, Opus};
use super::quality::DirectionQuality;
use super::rtp::{RtpPacket, TelephoneEvent};
use super::wav::{Recorder, MAX_PACKET_FRAMES};
use super::MediaStats;

/// A sequence jump larger than this (either way) is a restart of the numbering, not loss
/// (RFC 3550 A.1's MAX_DROPOUT).
const MAX_DROPOUT: i64 = 3000;
/// Sequence numbers remembered for duplicate detection (one `u64` bitmap).
const SEQ_WINDOW: i64 = 64;
/// In-order speech packets per drift window: ten seconds of 20 ms packets. A clock
/// running at another rate is judged over three windows in a row, so a queue that
/// builds for seconds and drains is never taken for one.
const WINDOW_PACKETS: u32 = 500;
/// Windows in a row whose least delay must stay high before the clock is corrected.
const WINDOWS_HIGH: usize = 3;
/// Digits kept per call; a stuck key or a fax tone burst stops here.
const MAX_DIGITS: usize = 64;

/// How far the timeline is off a sender clock running at another rate, from the least
/// delays of the last windows (oldest first): they must all lie beyond `tolerance` on
/// one side and move further out window by window, which a delay that jumped once
/// (a queue drained, a route changed) does not do. The correction is the latest
/// window's; 0 when the windows show no clock.
fn clock_offset(window_mins: &[i64], tolerance: i64) -> i64 {
    let away = |sign: i64| {
        window_mins.iter().all(|&m| m * sign > tolerance)
            && window_mins.windows(2).all(|p| p[1] * sign > p[0] * sign)
    };
    if away(1) || away(-1) {
        window_mins.last().copied().unwrap_or(0)
    } else {
        0
    }
}

/// The codecs `Stream::decoded` counts, by name (G.726's actual rate and packing is
/// `Stream::g726_name`).
pub const DECODED: [&str; 7] = ["PCMU", "PCMA", "G722", "G726-32", "G729", "GSM", "opus"];

fn decoded_index(kind: Kind) -> Option<usize> {
    Some(match kind {
        Kind::Pcmu => 0,
        Kind::Pcma => 1,
        Kind::G722 => 2,
        Kind::G726(_) => 3,
        Kind::G729 => 4,
        Kind::Gsm => 5,
        Kind::Opus => 6,
        _ => return None,
    })
}

/// A packet waiting for its source to be confirmed by the next one.
#[derive(Clone, Copy, Debug)]
struct Pending {
    ssrc: u32,
    seq: u16,
    ts: u32,
    pt: u8,
    kind: Kind,
    clock: u32,
    time: Timestamp,
}

/// Where decoded audio goes and what the packet counts into.
pub struct Out<'a> {
    pub rec: Option<&'a mut Recorder>,
    pub channel: usize,
    pub scratch: &'a mut Scratch,
    pub stats: &'a mut MediaStats,
    pub dtmf: &'a mut String,
}

/// Decode buffers shared by all calls (one packet at a time).
pub struct Scratch {
    decoded: Box<[i16; 2 * MAX_PACKET_FRAMES]>,
    frames: Box<[i16; 2 * MAX_PACKET_FRAMES]>,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            decoded: Box::new([0; 2 * MAX_PACKET_FRAMES]),
            frames: Box::new([0; 2 * MAX_PACKET_FRAMES]),
        }
    }
}

#[derive(Debug, Default)]
pub struct Stream {
    /// The source address packets of this direction come from (learned, for NAT).
    pub latched: Option<SocketAddr>,
    pub last_time: Option<Timestamp>,
    /// Set by a hold change or new SDP: re-place the next packet by capture time.
    pub resync: bool,

    ssrc: Option<u32>,
    pending: [Option<Pending>; 2],
    pending_payload: [Vec<u8>; 2],
    /// The next accepted packet starts a new source (sequence and timeline).
    fresh: bool,

    max_seq: u16,
    ext_max: i64,
    src_first: i64,
    seen: u64,
    expected_before: u64,

    last_ts: u32,
    ext_ts: i64,
    /// (extended RTP timestamp, output frame) of the current source's timeline.
    anchor: Option<(i64, i64)>,
    /// One past the last frame of the last in-order speech packet.
    next_pos: Option<i64>,
    /// Where the current timeline's audio starts, and the earliest frame it may move
    /// back to (the previous timeline's end): while all of it is still in memory, a
    /// less-delayed packet moves it back.
    first_pos: i64,
    floor: i64,
    /// (extended sequence, extended timestamp) of the last in-order speech packet: a
    /// timestamp step that fits the sequence step is the same timeline however late.
    last_speech: Option<(i64, i64)>,
    /// Least delay (capture minus timestamp position, frames) in the current window,
    /// packets in it, and the last windows' least delays.
    window_min: i64,
    window_n: u32,
    window_mins: [i64; WINDOWS_HIGH],
    windows: usize,
    /// Frames the timeline still has to move to follow the sender's clock.
    clock_debt: i64,

    first_time: Option<Timestamp>,
    last_transit: Option<i64>,
    jitter: f64,
    jitter_clock: u32,

    cur_pt: Option<u8>,
    flap: u32,
    prev_sample: i16,
    g722: Option<Box<G722>>,
    g726: Option<Box<G726>>,
    g729: Option<Box<G729>>,
    gsm: Option<Gsm>,
    opus: Option<Box<Opus>>,
    last_event_ts: Option<u32>,

    pub q: DirectionQuality,
    /// Speech packets decoded, per codec, in `DECODED` order.
    pub decoded: [u64; DECODED.len()],
    /// The G.726 rate and packing decoded last, for the record's codec list.
    pub g726_name: Option<&'static str>,
    pub unsupported: u64,
    pub unsupported_name: Option<String>,
    pub events: u64,
    pub cn: u64,
    /// Packet duration seen last, in ms (for the MOS).
    pub ptime_ms: f64,
    /// The last in-order Opus packet: extended sequence, extended timestamp, and its
    /// duration in RTP clock units.
    last_opus: Option<(i64, i64, i64)>,
}

impl Stream {
    /// A packet from this direction's source address.
    pub fn packet(
        &mut self,
        p: &RtpPacket<'_>,
        kind: Kind,
        clock: u32,
        now: Timestamp,
        out: &mut Out<'_>,
    ) {
        self.last_time = Some(now);
        if self.first_time.is_none() {
            self.first_time = Some(now);
        }
        let ssrc = p.ssrc();
        if kind == Kind::Event && self.ssrc.is_some_and(|s| s != ssrc) {
            // Events sent under their own SSRC: digits only, no sequence bookkeeping.
            self.event(p.timestamp(), p.payload(), out);
            return;
        }
        if self.ssrc != Some(ssrc) {
            // Two candidate slots, so garbage interleaved with a starting stream cannot
            // keep evicting its first packet.
            let slot = self
                .pending
                .iter()
                .position(|c| c.is_some_and(|c| c.ssrc == ssrc));
            match slot {
                Some(i)
                    if self.pending[i].is_some_and(|c| p.sequence() == c.seq.wrapping_add(1)) =>
                {
                    let pd = self.pending[i].take().expect("checked");
                    if self.pending[1 - i].take().is_some() {
                        out.stats.unconfirmed_source += 1;
                    }
                    if self.ssrc.is_some() {
                        self.q.ssrc_changes += 1;
                        out.stats.ssrc_changes += 1;
                    }
                    self.start_source(ssrc);
                    let payload = std::mem::take(&mut self.pending_payload[i]);
                    self.accept(
                        pd.seq, pd.ts, pd.pt, pd.kind, pd.clock, pd.time, &payload, out,
                    );
                    self.pending_payload[i] = payload;
                }
                _ => {
                    let i = slot.unwrap_or_else(|| match self.pending {
                        [None, _] => 0,
                        [_, None] => 1,
                        [Some(a), Some(b)] => usize::from(b.time < a.time),
                    });
                    if self.pending[i].is_some() {
                        out.stats.unconfirmed_source += 1;
                    }
                    self.pending[i] = Some(Pending {
                        ssrc,
                        seq: p.sequence(),
                        ts: p.timestamp(),
                        pt: p.payload_type(),
                        kind,
                        clock,
                        time: now,
                    });
                    self.pending_payload[i].clear();
                    self.pending_payload[i].extend_from_slice(p.payload());
                    return;
                }
            }
        }
        self.accept(
            p.sequence(),
            p.timestamp(),
            p.payload_type(),
            kind,
            clock,
            now,
            p.payload(),
            out,
        );
    }

    fn start_source(&mut self, ssrc: u32) {
        self.expected_before += self.source_expected();
        self.ssrc = Some(ssrc);
        self.fresh = true;
        self.last_transit = None;
        self.cur_pt = None;
        self.last_opus = None;
        self.drop_decoders_but(Kind::Unknown);
    }

    /// Decoder state belongs to one stream of one codec: a new source or a switch of
    /// codec starts afresh.
    fn drop_decoders_but(&mut self, kind: Kind) {
        if kind != Kind::G722 {
            self.g722 = None;
        }
        if self
            .g726
            .as_ref()
            .is_some_and(|d| Kind::G726(d.mode()) != kind)
        {
            self.g726 = None;
        }
        if kind != Kind::G729 {
            self.g729 = None;
        }
        if kind != Kind::Gsm {
            self.gsm = None;
        }
        if kind != Kind::Opus {
            self.opus = None;
        }
    }

    fn source_expected(&self) -> u64 {
        if self.ssrc.is_none() || self.fresh {
            0
        } else {
            (self.ext_max - self.src_first + 1).max(0) as u64
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn accept(
        &mut self,
        seq: u16,
        ts: u32,
        pt: u8,
        kind: Kind,
        clock: u32,
        now: Timestamp,
        payload: &[u8],
        out: &mut Out<'_>,
    ) {
        // A speech payload type that keeps changing is garbage, not a codec switch.
        if kind.is_speech() && !self.fresh {
            if self.cur_pt.is_some_and(|c| c != pt) {
                if self.flap > 24 {
                    out.stats.payload_type_flapping += 1;
                    return;
                }
                self.flap += 8;
            } else {
                self.flap = self.flap.saturating_sub(1);
            }
        }

        // Sequence: duplicates, reordering, wrap-around, restarts.
        let in_order;
        let mut restart = self.fresh;
        if !self.fresh {
            let d = i64::from(seq.wrapping_sub(self.max_seq) as i16);
            if d > 0 {
                if d > MAX_DROPOUT {
                    restart = true;
                } else {
                    self.seen = if d >= SEQ_WINDOW { 0 } else { self.seen << d };
                    self.seen |= 1;
                    self.max_seq = seq;
                    self.ext_max += d;
                }
                in_order = true;
            } else if d == 0 {
                self.q.duplicates += 1;
                out.stats.duplicates += 1;
                return;
            } else {
                let back = -d;
                if back >= SEQ_WINDOW {
                    self.q.late += 1;
                    out.stats.late += 1;
                    return;
                }
                if self.seen & (1 << back) != 0 {
                    self.q.duplicates += 1;
                    out.stats.duplicates += 1;
                    return;
                }
                self.seen |= 1 << back;
                self.q.reordered += 1;
                out.stats.reordered += 1;
                in_order = false;
            }
        } else {
            in_order = true;
        }
        if restart {
            if !self.fresh {
                // Numbering restarted under the same SSRC: a new timeline, same channel.
                self.expected_before += self.source_expected();
                self.q.resyncs += 1;
                out.stats.resyncs += 1;
            }
            self.fresh = false;
            self.max_seq = seq;
            self.ext_max = i64::from(seq);
            self.src_first = self.ext_max;
            self.seen = 1;
            self.last_ts = ts;
            self.ext_ts = 0;
            self.anchor = None;
            self.last_speech = None;
        }
        self.q.received += 1;

        let ext_ts = self.ext_ts + i64::from(ts.wrapping_sub(self.last_ts) as i32);
        if in_order {
            self.last_ts = ts;
            self.ext_ts = ext_ts;
        }

        match kind {
            Kind::Event => {
                self.event(ts, payload, out);
                return;
            }
            Kind::Cn => {
                self.cn += 1;
                out.stats.comfort_noise += 1;
                return;
            }
            Kind::Unknown => return,
            _ => {}
        }

        if in_order {
            self.update_jitter(ext_ts, clock, now);
        }
        if self.cur_pt != Some(pt) {
            self.cur_pt = Some(pt);
            self.drop_decoders_but(kind);
        }
        if kind == Kind::Unsupported {
            self.unsupported += 1;
            out.stats.unsupported_codec_packets += 1;
            return;
        }
        self.place(kind, clock, ext_ts, in_order, now, payload, out);
    }

    fn update_jitter(&mut self, ext_ts: i64, clock: u32, now: Timestamp) {
        let first = self.first_time.unwrap_or(now);
        if clock != self.jitter_clock {
            self.jitter_clock = clock;
            self.last_transit = None;
        }
        let arrival = (i128::from(now.as_nanos() - first.as_nanos().min(now.as_nanos()))
            * i128::from(clock)
            / 1_000_000_000) as i64;
        let transit = arrival - ext_ts;
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    /// Decodes a speech payload and writes it at its place on the timeline.
    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        kind: Kind,
        clock: u32,
        ext_ts: i64,
        in_order: bool,
        now: Timestamp,
        payload: &[u8],
        out: &mut Out<'_>,
    ) {
        let Some(rec) = out.rec.as_deref_mut() else {
            return;
        };
        if kind == Kind::Opus && in_order {
            // Consecutive packets cannot overlap, and every Opus duration (a silence
            // gap of DTX included) is a multiple of 2.5 ms: a packet whose timestamp
            // breaks either is not Opus (G.711 under an Opus payload type advances 160
            // a packet, where 2.5 ms is 120 and Opus's 20 ms 960). Silence, counted.
            let len_ts = opus::samples(payload, clock).map_or(0, |n| n as i64);
            let unit = i64::from(clock / 400).max(1);
            let refused = self.last_opus.is_some_and(|(seq, ts, len)| {
                let advance = ext_ts - ts;
                self.ext_max - seq == 1 && (advance < len || advance % unit != 0)
            });
            self.last_opus = Some((self.ext_max, ext_ts, len_ts));
            if refused {
                out.stats.corrupt_frames += 1;
                return;
            }
        }
        let rate = i64::from(rec.rate());
        // Opus renders the recording's rate itself.
        let codec_rate = match kind {
            Kind::Opus => rate,
            _ => i64::from(kind.sample_rate()),
        };
        let (n_in, partial) = match kind {
            Kind::G722 => (payload.len() * 2, false),
            Kind::G726(mode) => (mode.samples(payload.len()), mode.is_partial(payload.len())),
            Kind::G729 => g729::samples(payload.len()),
            Kind::Gsm => gsm::samples(payload.len()),
            Kind::Opus => match opus::samples(payload, rec.rate()) {
                Some(n) => (n, false),
                None => {
                    out.stats.corrupt_frames += 1;
                    return;
                }
            },
            _ => (payload.len(), false),
        };
        if partial {
            // Decoded up to the last whole codeword or frame; the rest of the packet's
            // time stays silent (a gap, as loss).
            out.stats.partial_codewords += 1;
        }
        let n = (n_in as i64 * rate / codec_rate) as usize;
        let clock = i64::from(clock.max(1));
        if n == 0 {
            return;
        }
        if n > MAX_PACKET_FRAMES {
            out.stats.payload_too_long += 1;
            return;
        }
        self.ptime_ms = n as f64 * 1000.0 / rate as f64;

        // Position, in RTP clock units (`clock`: 8 kHz for every codec but Opus's 48,
        // G.722 included).
        let cap = rec.frame_at(now);
        let n_frames = n as i64;
        let (anchor_ts, anchor_pos) = match self.anchor {
            Some(a) => a,
            None => {
                let pos = match self.next_pos {
                    Some(np) if (cap - np).abs() <= n_frames => np,
                    _ => cap,
                };
                self.anchor = Some((ext_ts, pos));
                self.floor = self.next_pos.unwrap_or(i64::MIN).min(pos);
                self.first_pos = pos;
                self.start_windows();
                (ext_ts, pos)
            }
        };
        // i128: a hostile stream can push timestamps far from the anchor.
        let far = i128::from(ext_ts - anchor_ts) * i128::from(rate) / i128::from(clock);
        let mut pos = anchor_pos.saturating_add(far.clamp(-(1 << 62), 1 << 62) as i64);
        if in_order {
            let delta = cap - pos;
            let end = pos + n_frames;
            let flushed = rec.flushed();
            // Timestamps that follow the sequence numbers are the same timeline, however
            // late the packet: its place is kept (and it is late if that is on disk).
            let continuous = self.last_speech.is_some_and(|(seq, ts)| {
                let steps = self.ext_max - seq;
                let advance = (ext_ts - ts).saturating_mul(rate) / clock;
                steps > 0 && advance >= 0 && advance <= steps * MAX_PACKET_FRAMES as i64
            });
            let too_late = end <= flushed && cap + n_frames > flushed;
            let too_early = end > rec.limit();
            if too_late && continuous && !self.resync {
                // Held up on its way (a queue building on the sender's link): its place
                // is on disk already, so it is late, but the stream stays put and the
                // horizon widens to wait for the next ones (twice this delay, for a
                // queue still growing).
                rec.widen_horizon(2 * (cap - pos) + n_frames);
            } else if self.resync || too_late || too_early {
                if too_late || too_early || delta.abs() > n_frames {
                    self.shift(delta, out.stats);
                    pos += delta;
                    self.first_pos = pos;
                    self.floor = self.next_pos.unwrap_or(i64::MIN).min(pos);
                }
                self.resync = false;
                self.start_windows();
            } else if delta < 0 && self.first_pos + delta >= flushed.max(self.floor) {
                // Earlier than the anchor allows, with all of this timeline in memory:
                // the anchor was late (its packet held up); move it back, audio and all.
                let written_end = self.next_pos.unwrap_or(self.first_pos).max(self.first_pos);
                if rec.shift_channel(out.channel, self.first_pos, written_end, delta) {
                    if let Some((_, p)) = self.anchor.as_mut() {
                        *p += delta;
                    }
                    self.first_pos += delta;
                    if let Some(np) = self.next_pos.as_mut() {
                        *np += delta;
                    }
                    pos += delta;
                    self.start_windows();
                }
            } else {
                pos += self.follow_clock(delta, ext_ts, n_frames, rate, clock, out.stats);
            }
            self.last_speech = Some((self.ext_max, ext_ts));
            self.next_pos = Some(pos + n_frames);
        }

        // Decode at the codec's rate, then convert to the file's.
        let s = &mut *out.scratch;
        let decoded = &mut s.decoded[..n_in];
        match kind {
            Kind::Pcmu => decode_g711(&ULAW, payload, decoded),
            Kind::Pcma => decode_g711(&ALAW, payload, decoded),
            Kind::G722 => {
                let got = self
                    .g722
                    .get_or_insert_with(Default::default)
                    .decode(payload, decoded);
                decoded[got..].fill(0);
            }
            Kind::G726(mode) => {
                let d = self.g726.get_or_insert_with(|| Box::new(G726::new(mode)));
                let got = d.decode(payload, decoded);
                decoded[got..].fill(0);
                self.g726_name = Some(mode.name());
            }
            Kind::G729 => {
                let got = self
                    .g729
                    .get_or_insert_with(Default::default)
                    .decode(payload, decoded);
                decoded[got..].fill(0);
            }
            Kind::Gsm => {
                if self.gsm.is_none() {
                    self.gsm = Gsm::new();
                }
                let Some(d) = self.gsm.as_mut() else {
                    decoded.fill(0);
                    return;
                };
                let (got, bad) = d.decode(payload, decoded);
                decoded[got..].fill(0);
                out.stats.corrupt_frames += bad;
            }
            Kind::Opus => {
                let file_rate = rec.rate();
                if self.opus.as_ref().is_none_or(|d| d.rate() != file_rate) {
                    self.opus = Opus::new(file_rate).map(Box::new);
                }
                let Some(d) = self.opus.as_mut() else {
                    return;
                };
                let (got, refused) = d.decode(payload, decoded);
                decoded[got..].fill(0);
                out.stats.corrupt_frames += u64::from(refused);
            }
            _ => return,
        }
        if let Some(i) = decoded_index(kind) {
            self.decoded[i] += 1;
        }
        let frames: &[i16] = if rate == codec_rate {
            decoded
        } else if rate > codec_rate {
            // 8 -> 16 kHz: each sample, preceded by the midpoint from the previous one
            // (linear interpolation: a half-sample, 31 us, delay).
            let mut prev = if in_order {
                self.prev_sample
            } else {
                decoded[0]
            };
            for (i, &x) in decoded.iter().enumerate() {
                s.frames[2 * i] = ((i32::from(prev) + i32::from(x)) >> 1) as i16;
                s.frames[2 * i + 1] = x;
                prev = x;
            }
            &s.frames[..n]
        } else {
            // 16 -> 8 kHz: the mean of each pair (a two-tap low-pass, then decimation).
            for i in 0..n {
                s.frames[i] =
                    ((i32::from(decoded[2 * i]) + i32::from(decoded[2 * i + 1])) >> 1) as i16;
            }
            &s.frames[..n]
        };
        if in_order {
            self.prev_sample = *decoded.last().unwrap_or(&0);
        }
        let landed = rec.put(out.channel, pos, frames);
        if landed < n && pos < rec.flushed() && pos + (n as i64) > 0 {
            self.q.late += 1;
            out.stats.late += 1;
        }
    }

    fn shift(&mut self, by: i64, stats: &mut MediaStats) {
        if let Some((_, pos)) = self.anchor.as_mut() {
            *pos += by;
        }
        self.q.resyncs += 1;
        stats.resyncs += 1;
    }

    fn start_windows(&mut self) {
        self.window_n = 0;
        self.windows = 0;
        self.clock_debt = 0;
    }

    /// Follows a sender clock running at another rate than the capture clock, judged on
    /// `delta` (capture minus timestamp position) of in-order packets that are not
    /// discontinuities, window by window. Answers how far this packet moves: the whole correction into a
    /// silence gap before it, else at most a millisecond.
    fn follow_clock(
        &mut self,
        delta: i64,
        ext_ts: i64,
        n: i64,
        rate: i64,
        clock: i64,
        stats: &mut MediaStats,
    ) -> i64 {
        if self.window_n == 0 || delta < self.window_min {
            self.window_min = delta;
        }
        self.window_n += 1;
        if self.window_n >= WINDOW_PACKETS {
            self.window_n = 0;
            self.window_mins.rotate_left(1);
            self.window_mins[WINDOWS_HIGH - 1] = self.window_min;
            self.windows = (self.windows + 1).min(WINDOWS_HIGH);
            if self.windows == WINDOWS_HIGH && self.clock_debt == 0 {
                self.clock_debt = clock_offset(&self.window_mins, n / 2);
                if self.clock_debt != 0 {
                    self.windows = 0;
                }
            }
        }
        let gap = self
            .last_speech
            .map_or(0, |(_, ts)| (ext_ts - ts).saturating_mul(rate) / clock - n)
            .max(0);
        // After a silence gap (DTX, CN), a packet earlier than its timestamp allows
        // (delay cannot do that) is put at once where it was heard: the gap shortens,
        // no audio is lost. Senders whose timestamps run ahead across their pauses
        // (sipp, rtp_rtcp_sip_ipv4_udp.pcap) are followed talkspurt by talkspurt.
        if gap > 0 && delta < -n / 2 && self.clock_debt == 0 {
            self.clock_debt = delta;
        }
        if self.clock_debt == 0 {
            return 0;
        }
        let slip = rate / 1000;
        let step = if gap > 0 {
            // Into the silence: a shorter gap loses no audio, a longer one none either.
            self.clock_debt.clamp(-gap, i64::MAX)
        } else {
            self.clock_debt.clamp(-slip, slip)
        };
        self.clock_debt -= step;
        if let Some((_, pos)) = self.anchor.as_mut() {
            *pos += step;
        }
        self.q.clock_slips += 1;
        stats.clock_slips += 1;
        step
    }

    fn event(&mut self, ts: u32, payload: &[u8], out: &mut Out<'_>) {
        self.events += 1;
        out.stats.dtmf_events += 1;
        let Some(ev) = TelephoneEvent::parse(payload) else {
            return;
        };
        // All packets of one event (updates, the three end packets) share its timestamp.
        if self.last_event_ts == Some(ts) {
            return;
        }
        self.last_event_ts = Some(ts);
        if let Some(d) = ev.digit() {
            if out.dtmf.len() < MAX_DIGITS {
                out.dtmf.push(d);
            }
        }
    }

    /// The direction's figures at the end of the call.
    pub fn quality(&self) -> DirectionQuality {
        let mut q = self.q.clone();
        q.expected = self.expected_before + self.source_expected();
        q.lost = q.expected.saturating_sub(q.received);
        if self.jitter_clock > 0 {
            q.jitter_ms =
                (self.jitter / f64::from(self.jitter_clock) * 1000.0 * 100.0).round() / 100.0;
        }
        q
    }

    /// Packets still waiting for confirmation when the call ends.
    pub fn unconfirmed(&self) -> u64 {
        self.pending.iter().filter(|p| p.is_some()).count() as u64
    }
}
