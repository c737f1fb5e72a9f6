//! Media: every answered call's RTP to one aligned stereo WAV, plus quality figures.
//!
//! Synchronous, no clock, no I/O but the recordings. The engine tells the table what SDP
//! each party announced ([`MediaTable::describe`]), when the call was answered and who
//! the operator is ([`MediaTable::answered`]), hands it every non-SIP UDP datagram
//! ([`MediaTable::datagram`]), and asks for the summary when the call ends
//! ([`MediaTable::ended`]).
//!
//! Streams are bound by where each party said it receives (the SDP's connection address
//! and audio port; RTCP on port + 1 or `a=rtcp`): a packet to party X's address is the
//! other party's voice. When a direction's packets come from another address than its
//! sender announced (NAT, a latching PBX), that real source is learned and bound too, so
//! the reverse direction sent to it is found (symmetric latching, as RTP proxies do).
//! Datagrams to an address no SDP announced cost one hash lookup and a counter.
//!
//! Recording: operator on the left channel, client on the right, 8 kHz, or 16 kHz when
//! the negotiated codec is G.722 (the narrow side is then interpolated up; see
//! `stream.rs` for placement and the drift rule, `wav.rs` for the bounded writer).
//!
//! Measured (benches/media.rs, 500 concurrent G.711 calls, 2 cores, ext4): recording off
//! 19-24 M RTP packets/s (~45 ns a packet: lookup, header, sequence, jitter); recording
//! on 0.9-1.1 M packets/s, of which ~400 ns a packet is ours (decode, ring, hound) and
//! ~500 ns the kernel's buffered ext4 write of 32 KB/s per call (page-cache copy and
//! zeroing, block bookkeeping). Memory: 27.6 KiB per recorded call (16 KiB ring, 8 KiB
//! hound buffer, streams), 3.6 KiB unrecorded, flat in call length.

mod codec;
mod g722;
pub mod g726;
pub mod g729;
pub mod gsm;
pub mod opus;
pub mod quality;
pub mod rtp;
mod stream;
mod wav;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::base::Party;
use crate::base::Timestamp;
use crate::net::{Datagram, Transport};
use crate::sip::sdp::SessionDescription;

pub use codec::{decode_g711, Kind, ALAW, ULAW};
/// Why a call answered while audio is off (the disk below its free-space floor) has no
/// recording.
pub const GATE_CLOSED_REASON: &str = "disk below the free-space floor (min_free)";

/// Why a call seen again records nothing: its whole record is stored already.
pub const ALREADY_STORED_REASON: &str = "already stored";
pub use quality::DirectionQuality;
pub use wav::{
    describe as describe_recording, is_disk_full, partial_duration_ms, realign, repair_partial,
    Realign, Recording,
};

use codec::PtMap;
use rtp::{demux, Demux, RtpError, RtpPacket};
use stream::{Out, Scratch, Stream};
use wav::{Recorder, Stopped};

/// A latched source that has been silent this long may be replaced by another address
/// sending to the same port (a media server failover, a re-routed call).
const RELATCH_AFTER: Duration = Duration::from_secs(1);
/// Packet time the reorder window is counted in.
const PTIME_MS: usize = 20;

/// What the media layer takes from the configuration.
#[derive(Clone, Debug)]
pub struct MediaOptions {
    /// Where `ID.wav.part` is written and renamed to `ID.wav`.
    pub recordings_dir: PathBuf,
    /// Off: quality figures and DTMF only, no WAV.
    pub enabled: bool,
    /// Reordering tolerated, in 20 ms packets: audio is written to disk this late. The
    /// per-call ring caps it at 196 ms at 8 kHz and 132 ms at 16 kHz.
    pub reorder_window: usize,
    /// An answered call with no RTP for this long is reported by `sweep` (rtpengine's
    /// default is 60 s).
    pub media_timeout: Duration,
    /// The same while a party has the call on hold (many phones send nothing then).
    pub hold_timeout: Duration,
    /// Calls tracked at once; more are counted and ignored (a recorded one holds ~28 KiB).
    pub max_calls: usize,
    /// Record calls whose parties speak Opus at 48 kHz (Opus's full band) instead of
    /// 16: three times the bytes, and packets up to 20 ms only.
    pub opus_fullband: bool,
}

impl Default for MediaOptions {
    fn default() -> Self {
        MediaOptions {
            recordings_dir: PathBuf::from("recordings"),
            enabled: true,
            reorder_window: 8,
            media_timeout: Duration::from_secs(60),
            hold_timeout: Duration::from_secs(3600),
            max_calls: 20_000,
            opus_fullband: false,
        }
    }
}

/// Counters by reason, for /metrics and `replay --stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaStats {
    /// UDP datagrams seen (non-SIP).
    pub datagrams: u64,
    /// To an address no SDP announced and no source latched: dropped.
    pub unknown_port: u64,
    pub rtp_packets: u64,
    pub rtcp_packets: u64,
    pub stun: u64,
    pub dtls: u64,
    pub zrtp: u64,
    pub turn_channel: u64,
    pub too_short: u64,
    /// Not RTP version 2, and none of what RFC 7983 lets share a media port.
    pub bad_version: u64,
    pub csrc_past_end: u64,
    pub extension_past_end: u64,
    pub bad_padding: u64,
    /// A payload type neither party's SDP maps (nor a known static type).
    pub unknown_payload_type: u64,
    /// A speech payload type changing nearly every packet.
    pub payload_type_flapping: u64,
    pub payload_too_long: u64,
    /// Payloads that end inside a codeword or frame (G.726, G.729, GSM: truncated): the
    /// whole ones are decoded, the rest of the packet's time is silence.
    pub partial_codewords: u64,
    /// Frames the decoder refused (GSM without its signature, an Opus packet that is
    /// not Opus): silence in their place.
    #[serde(default)]
    pub corrupt_frames: u64,
    /// From another address than the direction's latched source, while it is active.
    pub foreign_source: u64,
    /// Packets of a new SSRC never confirmed by a following packet (one-packet glitches).
    pub unconfirmed_source: u64,
    pub ssrc_changes: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Too late for the reorder window (their slot was already on disk).
    pub late: u64,
    pub resyncs: u64,
    /// One-millisecond steps following a sender clock at another rate.
    pub clock_slips: u64,
    pub dtmf_events: u64,
    pub comfort_noise: u64,
    pub unsupported_codec_packets: u64,
    pub calls_over_limit: u64,
    pub recordings_written: u64,
    /// Recordings lost to a write error (their records say why).
    pub recordings_failed: u64,
    /// Of those, the disk (or a quota) was full.
    pub recordings_disk_full: u64,
    /// Recordings stopped early by the audio gate (disk below the free-space floor):
    /// kept, with the audio up to the stop.
    pub recordings_cut_short: u64,
    /// Calls answered while the audio gate was closed: no recording.
    pub no_recording_disk_floor: u64,
    pub no_recording_encrypted: u64,
    pub no_recording_unsupported_codec: u64,
    pub no_recording_no_rtp: u64,
    pub no_recording_disabled: u64,
    pub no_recording_not_answered: u64,
    /// Calls seen again whose whole record (and recording) was already stored: nothing
    /// written, so the stored recording is never touched.
    pub no_recording_already_stored: u64,
}

/// What the media of one call came to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MediaSummary {
    pub recording: Option<Recording>,
    /// Why there is no WAV: "encrypted (RTP/SAVP)", "unsupported codec G729", "no RTP",
    /// "recording disabled", "not answered", "write error: ...", the free-space floor;
    /// or, beside a recording, why it stops before the call's end.
    pub no_recording_reason: Option<String>,
    /// What the caller sent.
    pub caller: DirectionQuality,
    /// What the callee sent.
    pub callee: DirectionQuality,
    /// Lost over expected, both directions, in %.
    pub loss_percent: f64,
    /// The worse direction's estimated MOS (quality.rs documents the E-model used).
    pub mos: Option<f64>,
    /// RFC 4733 digits in the order pressed, both directions.
    pub dtmf_digits: String,
    /// Codecs seen in the RTP ("PCMU", "G722", "G729", ...).
    pub codecs: Vec<String>,
}

fn idx(p: Party) -> usize {
    match p {
        Party::Caller => 0,
        Party::Callee => 1,
    }
}

/// What one party's latest SDP said about where and how it receives audio.
#[derive(Debug, Default)]
struct Side {
    described: bool,
    rtp: Option<SocketAddr>,
    rtcp: Option<SocketAddr>,
    pt: PtMap,
    hold: bool,
    encrypted: Option<String>,
    preferred: Option<Kind>,
    /// The codecs the section lists (speech or not), in its order.
    offered: Vec<Kind>,
}

impl Side {
    fn from_sdp(sdp: &SessionDescription) -> Side {
        let mut side = Side {
            described: true,
            hold: sdp.is_on_hold(),
            ..Side::default()
        };
        let Some(m) = sdp.audio() else {
            return side;
        };
        side.pt = PtMap::from_media(m);
        side.preferred = codec::preferred_speech(m);
        side.offered = codec::offered(m);
        if m.is_encrypted() {
            side.encrypted = Some(format!("encrypted ({})", m.protocol));
        } else if m.crypto {
            side.encrypted = Some("encrypted (a=crypto)".to_string());
        }
        side.rtp = sdp
            .audio_rtp_addr()
            .filter(|a| !a.ip().is_unspecified() && a.port() != 0);
        if let Some(rtp) = side.rtp {
            side.rtcp = match m.rtcp {
                Some(r) => Some(SocketAddr::new(r.addr.unwrap_or(rtp.ip()), r.port)),
                None => rtp
                    .port()
                    .checked_add(1)
                    .map(|p| SocketAddr::new(rtp.ip(), p)),
            };
        }
        side
    }
}

#[derive(Debug)]
struct CallMedia {
    id: String,
    sides: [Side; 2],
    /// By sender: `streams[0]` is what the caller sends.
    streams: [Stream; 2],
    learned: Vec<SocketAddr>,
    answered: Option<(Timestamp, Party)>,
    recorder: Option<Recorder>,
    /// When the dialog ended: the recording is written no further than this while the
    /// record lingers (32 s of silence per call otherwise, 4x a short call's audio).
    hung_up: Option<Timestamp>,
    /// A recording the audio gate stopped before the end of the call.
    stopped: Option<Stopped>,
    no_recording: Option<String>,
    last_media: Option<Timestamp>,
    dtmf: String,
    zrtp: bool,
}

/// Where a datagram to this address belongs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Endpoint {
    slot: u32,
    /// The party that receives here (the sender is the other one).
    receiver: u8,
    rtcp: bool,
}

/// The endpoint table's hasher: foldhash, seeded at random per process. The table is
/// probed for every datagram, so the hasher must be fast (foldhash is, as FxHash was),
/// and its keys include source addresses a sender chooses (latched sources), so the
/// seed must not be guessable: a fixed hash lets crafted addresses collide into one
/// bucket and slow every probe.
type EndpointMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// All calls' media state.
pub struct MediaTable {
    opts: MediaOptions,
    calls: Vec<Option<CallMedia>>,
    free: Vec<u32>,
    by_id: HashMap<String, u32>,
    endpoints: EndpointMap<SocketAddr, Endpoint>,
    stats: MediaStats,
    scratch: Scratch,
    /// Whether audio may be written: off while the disk is below its free-space floor,
    /// as the driver that watches the disk says (`set_audio_open`). Off, no recording
    /// starts and those in progress stop where they are; records are not affected.
    audio_open: bool,
}

/// A recording's file name (without `.wav`) from a record id: letters, digits, `-`, `_`
/// and `.` kept, the rest `_`.
pub fn file_name(id: &str) -> String {
    let mut s: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        s.insert(0, '_');
    }
    s
}

impl MediaTable {
    pub fn new(opts: MediaOptions) -> Self {
        MediaTable {
            opts,
            calls: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            endpoints: EndpointMap::default(),
            stats: MediaStats::default(),
            scratch: Scratch::default(),
            audio_open: true,
        }
    }

    pub fn options(&self) -> &MediaOptions {
        &self.opts
    }

    /// Audio on or off (the disk's free-space floor), from the next packet on.
    pub fn set_audio_open(&mut self, open: bool) {
        self.audio_open = open;
    }

    /// Calls tracked now.
    pub fn active_calls(&self) -> usize {
        self.by_id.len()
    }

    fn slot_for(&mut self, call: &str) -> Option<u32> {
        if let Some(&s) = self.by_id.get(call) {
            return Some(s);
        }
        if self.by_id.len() >= self.opts.max_calls {
            self.stats.calls_over_limit += 1;
            return None;
        }
        let media = CallMedia {
            id: call.to_string(),
            sides: Default::default(),
            streams: Default::default(),
            learned: Vec::new(),
            answered: None,
            recorder: None,
            hung_up: None,
            stopped: None,
            no_recording: None,
            last_media: None,
            dtmf: String::new(),
            zrtp: false,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.calls[s as usize] = Some(media);
                s
            }
            None => {
                self.calls.push(Some(media));
                (self.calls.len() - 1) as u32
            }
        };
        self.by_id.insert(call.to_string(), slot);
        Some(slot)
    }

    fn unbind(&mut self, addr: SocketAddr, slot: u32, receiver: Option<u8>) {
        if let Some(ep) = self.endpoints.get(&addr) {
            if ep.slot == slot && receiver.is_none_or(|r| r == ep.receiver) {
                self.endpoints.remove(&addr);
            }
        }
    }

    /// A call's SDP as seen at `time`: `side` is the party that announced it (where that
    /// party receives). Call it for the offer, the answer (183/200) and every
    /// re-INVITE/UPDATE offer and answer; the latest of each party replaces the earlier.
    pub fn describe(
        &mut self,
        call: &str,
        _time: Timestamp,
        side: Party,
        sdp: &SessionDescription,
    ) {
        let Some(slot) = self.slot_for(call) else {
            return;
        };
        let si = idx(side);
        let new = Side::from_sdp(sdp);
        let (old_rtp, old_rtcp, old_hold) = {
            let c = self.calls[slot as usize]
                .as_ref()
                .expect("slot of a live call");
            let s = &c.sides[si];
            (s.rtp, s.rtcp, s.hold)
        };
        for a in [old_rtp, old_rtcp].into_iter().flatten() {
            self.unbind(a, slot, Some(si as u8));
        }
        let rtp_ep = Endpoint {
            slot,
            receiver: si as u8,
            rtcp: false,
        };
        if let Some(a) = new.rtp {
            // The latest SDP wins an address (a PBX reuses ports across calls).
            self.endpoints.insert(a, rtp_ep);
        }
        if let Some(a) = new.rtcp {
            let taken_by_rtp = self.endpoints.get(&a).is_some_and(|e| !e.rtcp);
            if !taken_by_rtp {
                self.endpoints.insert(
                    a,
                    Endpoint {
                        rtcp: true,
                        ..rtp_ep
                    },
                );
            }
        }
        let c = self.calls[slot as usize]
            .as_mut()
            .expect("slot of a live call");
        if new.rtp != old_rtp {
            // This party now sends from somewhere else too (direct media, a transfer).
            c.streams[si].latched = None;
        }
        if new.rtp != old_rtp || new.hold != old_hold {
            for s in &mut c.streams {
                s.resync = true;
            }
        }
        c.sides[si] = new;
    }

    /// The call was answered at `time`: recording starts here. `operator` is the party
    /// whose voice goes on the left channel.
    pub fn answered(&mut self, call: &str, time: Timestamp, operator: Party) {
        let Some(slot) = self.slot_for(call) else {
            return;
        };
        let opts = &self.opts;
        let c = self.calls[slot as usize]
            .as_mut()
            .expect("slot of a live call");
        if c.answered.is_some() {
            return;
        }
        c.answered = Some((time, operator));
        if !opts.enabled {
            c.no_recording = Some("recording disabled".to_string());
            return;
        }
        if let Some(e) = c.sides.iter().find_map(|s| s.encrypted.clone()) {
            c.no_recording = Some(e);
            return;
        }
        if !self.audio_open {
            c.no_recording = Some(GATE_CLOSED_REASON.to_string());
            return;
        }
        // Wide-band when a party prefers a wide-band codec (G.722, Opus) and the other
        // accepts it (or said nothing).
        let wide = |a: &Side, b: &Side| {
            a.preferred.is_some_and(|k| {
                k.sample_rate() > 8_000 && (!b.described || b.offered.contains(&k))
            })
        };
        let speaks = |kind: Kind, a: &Side, b: &Side| {
            a.preferred == Some(kind) && (!b.described || b.offered.contains(&kind))
        };
        let [a, b] = &c.sides;
        let rate = if opts.opus_fullband && (speaks(Kind::Opus, a, b) || speaks(Kind::Opus, b, a)) {
            48_000
        } else if wide(a, b) || wide(b, a) {
            16_000
        } else {
            8_000
        };
        let horizon = opts.reorder_window.max(1) * PTIME_MS * rate as usize / 1000;
        match Recorder::create(&opts.recordings_dir, &file_name(&c.id), rate, time, horizon) {
            Ok(r) => c.recorder = Some(r),
            Err(e) => {
                self.stats.recordings_failed += 1;
                self.stats.recordings_disk_full += u64::from(is_disk_full(&e));
                c.no_recording = Some(format!("write error: {e}"));
            }
        }
    }

    /// One UDP datagram that is not SIP. The hot path: a hash probe, a header check, a
    /// table decode into the call's ring; no allocation.
    pub fn datagram(&mut self, d: &Datagram<'_>) {
        if d.transport != Transport::Udp {
            return;
        }
        let MediaTable {
            calls,
            endpoints,
            stats,
            scratch,
            ..
        } = self;
        stats.datagrams += 1;
        let Some(&ep) = endpoints.get(&d.dst) else {
            stats.unknown_port += 1;
            return;
        };
        if ep.rtcp {
            stats.rtcp_packets += 1;
            return;
        }
        let Some(c) = calls[ep.slot as usize].as_mut() else {
            return;
        };
        match demux(d.payload) {
            Demux::Rtp => {}
            Demux::Rtcp => {
                stats.rtcp_packets += 1;
                return;
            }
            Demux::Stun => {
                stats.stun += 1;
                return;
            }
            Demux::Zrtp => {
                stats.zrtp += 1;
                c.zrtp = true;
                return;
            }
            Demux::Dtls => {
                stats.dtls += 1;
                return;
            }
            Demux::TurnChannel => {
                stats.turn_channel += 1;
                return;
            }
            Demux::Other if d.payload.is_empty() => {
                stats.too_short += 1;
                return;
            }
            Demux::Other => {
                stats.bad_version += 1;
                return;
            }
        }
        let p = match RtpPacket::new_checked(d.payload) {
            Ok(p) => p,
            Err(e) => {
                *match e {
                    RtpError::TooShort => &mut stats.too_short,
                    RtpError::BadVersion => &mut stats.bad_version,
                    RtpError::CsrcPastEnd => &mut stats.csrc_past_end,
                    RtpError::ExtensionPastEnd => &mut stats.extension_past_end,
                    RtpError::BadPadding => &mut stats.bad_padding,
                } += 1;
                return;
            }
        };
        let receiver = usize::from(ep.receiver);
        let sender = 1 - receiver;
        let pt = p.payload_type();
        // The receiver's numbering; some phones send with their own (telephone-event).
        let (mut kind, mut map) = (c.sides[receiver].pt.kind(pt), &c.sides[receiver].pt);
        if kind == Kind::Unknown && c.sides[sender].described {
            kind = c.sides[sender].pt.kind(pt);
            map = &c.sides[sender].pt;
        }
        if kind == Kind::Unknown {
            stats.unknown_payload_type += 1;
            return;
        }
        let clock = map.clock_hz(pt);
        if kind == Kind::Unsupported {
            let s = &mut c.streams[sender];
            if s.unsupported_name.is_none() {
                s.unsupported_name = map.unsupported_name(pt).map(str::to_string);
            }
        }

        // Latching: the first source of a direction is its source; another address takes
        // over only once the first has gone quiet.
        let s = &mut c.streams[sender];
        match s.latched {
            Some(l) if l == d.src => {}
            Some(_) if s.last_time.is_some_and(|t| d.time.since(t) < RELATCH_AFTER) => {
                stats.foreign_source += 1;
                return;
            }
            _ => {
                s.latched = Some(d.src);
                if c.sides[sender].rtp != Some(d.src) && !endpoints.contains_key(&d.src) {
                    endpoints.insert(
                        d.src,
                        Endpoint {
                            slot: ep.slot,
                            receiver: sender as u8,
                            rtcp: false,
                        },
                    );
                    c.learned.push(d.src);
                }
            }
        }

        stats.rtp_packets += 1;
        c.last_media = Some(d.time);
        let channel = match c.answered {
            Some((_, op)) if idx(op) == sender => 0,
            Some(_) => 1,
            // Not answered yet: nothing is written, the channel does not matter.
            None => sender,
        };
        if let Some(r) = c.recorder.as_mut() {
            // First move the window to now, so a packet after a quiet spell has room.
            r.advance(c.hung_up.map_or(d.time, |end| d.time.min(end)));
        }
        let mut out = Out {
            rec: c.recorder.as_mut(),
            channel,
            scratch,
            stats,
            dtmf: &mut c.dtmf,
        };
        c.streams[sender].packet(&p, kind, clock, d.time, &mut out);
    }

    /// The call is already stored whole (the same traffic seen again): its recording is
    /// dropped before it writes anything but a header, and nothing more is written for
    /// it, so the stored recording of the same name is never replaced.
    pub fn skip_recording(&mut self, call: &str) {
        let Some(c) = self
            .by_id
            .get(call)
            .and_then(|&slot| self.calls[slot as usize].as_mut())
        else {
            return;
        };
        if let Some(rec) = c.recorder.take() {
            rec.discard();
        }
        if let Some(stopped) = c.stopped.take() {
            stopped.discard();
        }
        if c.no_recording.is_none() {
            self.stats.no_recording_already_stored += 1;
        }
        c.no_recording = Some(ALREADY_STORED_REASON.to_string());
    }

    /// The dialog ended at `time` (its record comes later): the recording stops moving.
    pub fn hung_up(&mut self, call: &str, time: Timestamp) {
        if let Some(&slot) = self.by_id.get(call) {
            if let Some(c) = self.calls[slot as usize].as_mut() {
                c.hung_up = Some(time);
            }
        }
    }

    /// The call ended at `time`: the WAV is completed to exactly answer..end, renamed to
    /// its final name, and the summary returned. `None` for a call never described.
    pub fn ended(&mut self, call: &str, time: Timestamp) -> Option<MediaSummary> {
        let slot = self.by_id.remove(call)?;
        let mut c = self.calls[slot as usize].take()?;
        self.free.push(slot);
        if c.recorder.is_some() && !self.audio_open {
            // Closed since the last sweep: nothing more is written for this call either.
            stop_recorder(&mut c, &mut self.stats);
        }
        let mut addrs: Vec<SocketAddr> = c
            .sides
            .iter()
            .flat_map(|s| [s.rtp, s.rtcp])
            .flatten()
            .collect();
        addrs.append(&mut c.learned);
        for a in addrs {
            self.unbind(a, slot, None);
        }

        for s in &c.streams {
            self.stats.unconfirmed_source += s.unconfirmed();
        }
        let (mut summary, unsupported) = summarize(&c);
        let decoded: u64 = c
            .streams
            .iter()
            .map(|s| s.decoded.iter().sum::<u64>())
            .sum();
        let received: u64 = c.streams.iter().map(|s| s.q.received).sum();

        // Why no WAV, if none.
        let reason = if c.answered.is_none() {
            self.stats.no_recording_not_answered += 1;
            Some("not answered".to_string())
        } else if let Some(r) = c.no_recording.take() {
            if r.starts_with("encrypted") {
                self.stats.no_recording_encrypted += 1;
            } else if r == "recording disabled" {
                self.stats.no_recording_disabled += 1;
            } else if r == GATE_CLOSED_REASON {
                self.stats.no_recording_disk_floor += 1;
            }
            Some(r)
        } else if c.zrtp {
            self.stats.no_recording_encrypted += 1;
            Some("encrypted (ZRTP)".to_string())
        } else if decoded == 0 && unsupported.is_some() {
            self.stats.no_recording_unsupported_codec += 1;
            Some(format!(
                "unsupported codec {}",
                unsupported.unwrap_or_default()
            ))
        } else if received == 0 {
            self.stats.no_recording_no_rtp += 1;
            Some("no RTP".to_string())
        } else {
            None
        };
        let written = match (reason, c.recorder.take(), c.stopped.take()) {
            (Some(r), rec, stopped) => {
                if let Some(rec) = rec {
                    rec.discard();
                }
                if let Some(stopped) = stopped {
                    stopped.discard();
                }
                summary.no_recording_reason = Some(r);
                None
            }
            (None, Some(rec), _) => Some((rec.finish(time, summary.codecs.clone()), None)),
            (None, None, Some(stopped)) if stopped.duration_ms() == 0 => {
                // Stopped before any audio reached the disk: no file at all.
                stopped.discard();
                self.stats.no_recording_disk_floor += 1;
                summary.no_recording_reason = Some(GATE_CLOSED_REASON.to_string());
                None
            }
            (None, None, Some(stopped)) => {
                let note = format!(
                    "audio after {} s not recorded: {GATE_CLOSED_REASON}",
                    stopped.duration_ms() / 1000
                );
                Some((stopped.finish(time, summary.codecs.clone()), Some(note)))
            }
            (None, None, None) => {
                // A recorder that failed (at the start, or when the gate stopped it)
                // left its reason in `no_recording`, so this is not expected.
                summary.no_recording_reason = Some("no recording".to_string());
                None
            }
        };
        match written {
            Some((Ok(r), note)) => {
                self.stats.recordings_written += 1;
                self.stats.recordings_cut_short += u64::from(note.is_some());
                summary.recording = Some(r);
                summary.no_recording_reason = note;
            }
            Some((Err(e), _)) => {
                self.stats.recordings_failed += 1;
                self.stats.recordings_disk_full += u64::from(is_disk_full(&e));
                summary.no_recording_reason = Some(format!("write error: {e}"));
            }
            None => {}
        }
        Some(summary)
    }

    /// Capture time advanced to `now` (call it about once a second): recordings of quiet
    /// calls are written up to `now`, and the answered calls whose media has been silent
    /// longer than the media timeout (the hold timeout while on hold) returned, each with
    /// the time its media was last heard (the answer, if never): where such a call ended,
    /// however far `now` has jumped since.
    pub fn sweep(&mut self, now: Timestamp) -> Vec<(String, Timestamp)> {
        let mut dead = Vec::new();
        let gate_open = self.audio_open;
        for c in self.calls.iter_mut().flatten() {
            let Some((answer, _)) = c.answered else {
                continue;
            };
            if !gate_open && c.recorder.is_some() {
                stop_recorder(c, &mut self.stats);
            }
            if let Some(r) = c.recorder.as_mut() {
                r.advance(c.hung_up.map_or(now, |end| now.min(end)));
            }
            let last = c.last_media.map_or(answer, |t| t.max(answer));
            let limit = if c.sides.iter().any(|s| s.hold) {
                self.opts.hold_timeout
            } else {
                self.opts.media_timeout
            };
            if now.since(last) > limit {
                dead.push((c.id.clone(), last));
            }
        }
        dead
    }

    /// Where recordings are written.
    pub fn recordings_dir(&self) -> &std::path::Path {
        &self.opts.recordings_dir
    }

    pub fn stats(&self) -> MediaStats {
        self.stats.clone()
    }
}

/// What a call's media came to so far (no recording facts), and the first codec it
/// could not decode.
fn summarize(c: &CallMedia) -> (MediaSummary, Option<String>) {
    let mut codecs: Vec<String> = Vec::new();
    let mut unsupported: Option<String> = None;
    for s in &c.streams {
        for (i, &name) in stream::DECODED.iter().enumerate() {
            let name = match name {
                "G726-32" => s.g726_name.unwrap_or(name),
                _ => name,
            };
            if s.decoded[i] > 0 && !codecs.iter().any(|c| c == name) {
                codecs.push(name.to_string());
            }
        }
        if s.unsupported > 0 {
            let name = s
                .unsupported_name
                .clone()
                .unwrap_or_else(|| "unknown".to_string());
            if !codecs.contains(&name) {
                codecs.push(name.clone());
            }
            unsupported.get_or_insert(name);
        }
    }
    let mut summary = MediaSummary {
        dtmf_digits: c.dtmf.clone(),
        ..MediaSummary::default()
    };
    let mut dirs = [c.streams[0].quality(), c.streams[1].quality()];
    for (d, s) in dirs.iter_mut().zip(&c.streams) {
        if d.received > 0 {
            let g729 = s.decoded[4] > 0
                || (s.unsupported > 0
                    && s.unsupported_name
                        .as_deref()
                        .is_some_and(|n| n.starts_with("G729")));
            let imp = if g729 { quality::G729 } else { quality::G711 };
            let ptime = if s.ptime_ms > 0.0 { s.ptime_ms } else { 20.0 };
            d.mos = Some(quality::mos(d.loss_percent(), d.jitter_ms, ptime, imp));
        }
    }
    let expected: u64 = dirs.iter().map(|d| d.expected).sum();
    let lost: u64 = dirs.iter().map(|d| d.lost).sum();
    summary.loss_percent = if expected == 0 {
        0.0
    } else {
        (10_000.0 * lost as f64 / expected as f64).round() / 100.0
    };
    summary.mos = dirs
        .iter()
        .filter_map(|d| d.mos)
        .min_by(|a, b| a.total_cmp(b));
    let [caller, callee] = dirs;
    summary.caller = caller;
    summary.callee = callee;
    summary.codecs = codecs;
    (summary, unsupported)
}

/// The audio gate closed during a call: its recording stops where it is. The WAV is made
/// final at once (header fixed over the audio on disk, file closed) rather than kept open
/// and fed nothing: the disk gets no further byte from this call, a crash or power loss
/// from here on leaves a playable file, and the handle and buffers are freed. It is not
/// resumed if the gate reopens during the call: the gap would have to be written as
/// silence to keep the file's time axis, a burst of writes when the disk is tightest.
/// The file keeps its `.part` name until the call ends, so a crash in between is repaired
/// and finalised on restart like any interrupted call.
fn stop_recorder(c: &mut CallMedia, stats: &mut MediaStats) {
    let Some(rec) = c.recorder.take() else {
        return;
    };
    match rec.stop() {
        Ok(stopped) => c.stopped = Some(stopped),
        Err(e) => {
            stats.recordings_failed += 1;
            stats.recordings_disk_full += u64::from(is_disk_full(&e));
            c.no_recording = Some(format!("write error: {e}"));
        }
    }
}

impl MediaTable {
    /// What the call's media came to so far (quality, codecs, DTMF; no recording): the
    /// figures a call event gives at the hang-up, before the call's record is made.
    pub fn summary_so_far(&self, call: &str) -> Option<MediaSummary> {
        let &slot = self.by_id.get(call)?;
        let c = self.calls[slot as usize].as_ref()?;
        Some(summarize(c).0)
    }

    /// Capture time of the call's last RTP packet.
    pub fn last_media_time(&self, call: &str) -> Option<Timestamp> {
        let &slot = self.by_id.get(call)?;
        self.calls[slot as usize].as_ref()?.last_media
    }
}
