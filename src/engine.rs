//! The engine: frames in, call events out. It wires the layers together (net -> sip ->
//! dialog -> call) and is driven by a feed: capture files now, a live interface later.
//! Like str0m's state machine it does no I/O and reads no clock: `frame` and `tick` take
//! the capture time, `poll` hands out what happened.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::Serialize;

use std::path::{Path, PathBuf};

use crate::base::{Frame, SipTrace, Timestamp};
use crate::call::classify::{Classifier, DiscoveredOperator};
use crate::call::correlate::{CorrelationStats, Correlator, LiveOver};
use crate::call::{CallInProgress, CallRecord, EndReason, MediaFacts, RecordingFile, Stage};
use crate::config::Config;
use crate::dialog::{
    DialogEvent, DialogLimits, DialogStats, DialogTable, FinishedDialog, NoResponseLimits,
};
use crate::events::{call_event, unanswered_kind, Event, EventKind};
use crate::media::{
    realign, MediaOptions, MediaStats, MediaSummary, MediaTable, Realign, Recording,
};
use crate::net::defrag::DefragLimits;
use crate::net::stats::Counters;
use crate::net::tcp::TcpLimits;
use crate::net::{Datagram, Decoder, DecoderOptions, Transport};
use crate::sip;

/// Calls in progress listed for the console at most: a page an administrator reads,
/// and a bound on the work of listing them once a second.
pub const MAX_CALLS_SHOWN: usize = 1000;

/// How often, in capture time, dialog timeouts are checked.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// A step of the capture clock larger than this, either way, is a broken clock (seen in
/// real captures: years between an INVITE and its 100 Trying), not a quiet line: time
/// carries on from the previous frame instead, so no timer fires on it.
const MAX_CLOCK_STEP: Duration = Duration::from_secs(30 * 24 * 3600);

/// Capture time made continuous across broken-clock steps.
#[derive(Default)]
struct CaptureClock {
    /// (last raw stamp, last engine time).
    last: Option<(Timestamp, Timestamp)>,
    /// Engine time = raw + offset, in nanoseconds.
    offset: i128,
    steps: u64,
}

impl CaptureClock {
    fn adjust(&mut self, raw: Timestamp) -> Timestamp {
        if let Some((last_raw, last_time)) = self.last {
            let step = raw.as_nanos() as i128 - last_raw.as_nanos() as i128;
            if step.unsigned_abs() > MAX_CLOCK_STEP.as_nanos() {
                self.offset = last_time.as_nanos() as i128 - raw.as_nanos() as i128;
                self.steps += 1;
            }
        }
        let time = (raw.as_nanos() as i128 + self.offset).clamp(0, u64::MAX as i128) as u64;
        let time = Timestamp::from_nanos(time);
        self.last = Some((raw, time));
        time
    }
}

/// A call in progress as a crash would leave it: its record so far, and its dialog's
/// facts, so that recovery can merge the legs of one B2BUA conversation as the records
/// would have been merged.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct InProgress {
    pub record: CallRecord,
    pub dialog: FinishedDialog,
}

/// What the engine reports.
#[derive(Clone, Debug)]
pub enum EngineEvent {
    /// A call was answered: its record so far (ending at the answer), kept while the
    /// call is in progress so a crash can finalise it.
    Answered(Box<InProgress>),
    /// An answered call hung up: its record as of the hang-up (who, when, why), kept in
    /// place of the answered one while the dialog lingers, so a crash then still
    /// finalises it with the right party.
    HungUp(Box<InProgress>),
    /// A dialog ended: its record, to be stored.
    Call(Box<CallRecord>),
    /// An internal party not in the configuration (from a call or a REGISTER), and
    /// the capture time it was seen.
    Operator(DiscoveredOperator, Timestamp),
    /// A call event for webhooks (only with [`Engine::emit_call_events`]).
    CallEvent(Box<Event>),
    /// The SIP messages of the dialog whose record has id `id` (a leg's own id: a
    /// B2BUA conversation has one per leg). Comes before that record, which a
    /// correlated leg may hold back a while.
    SipMessages { id: String, trace: Box<SipTrace> },
}

/// What the SIP layer counted.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SipStats {
    pub messages: u64,
    pub requests: u64,
    pub responses: u64,
    /// CRLF keep-alives (RFC 5626) on a SIP port.
    pub keepalives: u64,
    /// Datagrams on a SIP port that are not SIP at all (STUN, garbage).
    pub not_sip: u64,
    /// Messages refused, by reason.
    pub malformed: BTreeMap<&'static str, u64>,
    /// Messages accepted despite a defect, by defect.
    pub defects: BTreeMap<&'static str, u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EngineStats {
    pub sip: SipStats,
    pub dialogs: DialogStats,
    pub media: MediaStats,
    /// Capture-clock steps larger than a month, bridged over.
    pub clock_steps: u64,
    /// B2BUA legs put together, and the PBX guessed when none is configured.
    pub correlation: CorrelationStats,
}

pub struct Engine {
    decoder: Decoder,
    sip_ports: Vec<u16>,
    dialogs: DialogTable,
    media: MediaTable,
    classifier: Classifier,
    /// Holds finished legs until their conversation is complete (B2BUA legs).
    correlator: Correlator,
    sip: SipStats,
    events: VecDeque<EngineEvent>,
    next_sweep: Timestamp,
    clock: CaptureClock,
    /// The latest capture time seen.
    now: Timestamp,
    /// Call events are made (see [`Engine::emit_call_events`]), with this configuration
    /// (properties, voicemail numbers).
    call_events: Option<Box<Config>>,
}

/// A UDP payload worth handing to the SIP scanner: SIP starts with an upper-case method
/// or "SIP/2.0"; RTP (0x80..), STUN (0x00/0x01) and DTLS (0x14..0x3F) never do. This
/// finds SIP on ports nobody configured, at the cost of one byte compare per datagram.
fn may_be_sip(payload: &[u8]) -> bool {
    payload.len() >= 12 && payload[0].is_ascii_uppercase()
}

impl Engine {
    /// An engine that writes no recordings (quality figures and DTMF are still kept).
    pub fn new(config: &Config) -> Self {
        Engine::build(config, None)
    }

    /// An engine that records answered calls into `recordings_dir` (when the
    /// configuration's `[recording] enabled` says so).
    pub fn with_recordings(config: &Config, recordings_dir: PathBuf) -> Self {
        Engine::build(config, Some(recordings_dir))
    }

    fn build(config: &Config, recordings_dir: Option<PathBuf>) -> Self {
        let media = MediaOptions {
            enabled: config.recording.enabled && recordings_dir.is_some(),
            recordings_dir: recordings_dir.unwrap_or_default(),
            media_timeout: Duration::from_secs(config.calls.media_timeout_secs),
            opus_fullband: config.recording.opus_fullband,
            ..MediaOptions::default()
        };
        Engine {
            decoder: Decoder::new(&decoder_options(config)),
            sip_ports: config.capture.sip_ports.clone(),
            dialogs: DialogTable::new(dialog_limits(config)),
            media: MediaTable::new(media),
            classifier: Classifier::new(config),
            correlator: Correlator::new(config),
            sip: SipStats::default(),
            events: VecDeque::new(),
            next_sweep: Timestamp::default(),
            clock: CaptureClock::default(),
            now: Timestamp::default(),
            call_events: None,
        }
    }

    /// Makes call events ([`EngineEvent::CallEvent`]) as calls ring, are answered, end
    /// and are recorded, for webhooks. Off by default: they cost a little per call.
    pub fn emit_call_events(&mut self, config: &Config) {
        self.call_events = Some(Box::new(config.clone()));
        self.dialogs.report_progress(true);
    }

    /// The next frames come from another source (the next capture file): a clock step
    /// between two files is real, not a broken clock to bridge.
    pub fn new_source(&mut self) {
        self.clock.last = None;
        self.clock.offset = 0;
    }

    /// Operators, numbering and export rules from a reloaded configuration (SIGHUP), for
    /// calls classified from now on. Capture, network and limits keep their start-up
    /// values: changing them needs a restart.
    pub fn reload(&mut self, config: &Config) {
        self.classifier.reload(config);
        if let Some(c) = self.call_events.as_mut() {
            **c = config.clone();
        }
    }

    /// Feeds one captured frame.
    pub fn frame(&mut self, frame: &Frame<'_>) {
        let frame = &Frame {
            time: self.clock.adjust(frame.time),
            ..*frame
        };
        self.now = self.now.max(frame.time);
        self.decode_with(|decoder, up| decoder.decode(frame, up));
        if frame.time >= self.next_sweep {
            self.tick(frame.time);
        }
        self.drain_dialogs();
    }

    /// Advances capture time with no frame (a live capture's timer on a quiet line).
    pub fn tick(&mut self, now: Timestamp) {
        self.now = self.now.max(now);
        self.decode_with(|decoder, up| decoder.tick(now, up));
        for (id, last_heard) in self.media.sweep(now) {
            self.dialogs.end_media_timeout(&id, last_heard);
        }
        self.dialogs.sweep(now);
        self.next_sweep = now.saturating_add(SWEEP_INTERVAL);
        self.drain_dialogs();
        // Once a sweep, not per frame: the check is held legs x answered legs.
        for record in self.correlator.release(self.now, &self.classifier) {
            self.record(record);
        }
        if self.call_events.is_some() {
            for (key, record, at) in self.correlator.live_due(now, &self.classifier) {
                self.call_event(EventKind::Ended, &key, at, &record);
            }
        }
    }

    /// End of input: partial packets are dropped, open dialogs end at their last
    /// activity (whoHungUp "system").
    pub fn finish(&mut self) {
        self.end_all(EndReason::EndOfCapture);
    }

    /// calltap stops during live capture: as [`Engine::finish`], but the open calls end
    /// for the reason an administrator should read ("shutdown", not "end of capture").
    pub fn shutdown(&mut self) {
        self.end_all(EndReason::Shutdown);
    }

    fn end_all(&mut self, open_reason: EndReason) {
        self.decode_with(|decoder, up| decoder.finish(up));
        let media = &self.media;
        self.dialogs
            .finish(open_reason, |id| media.last_media_time(id));
        self.drain_dialogs();
        for record in self.correlator.flush(&self.classifier) {
            self.record(record);
        }
    }

    /// A call's record is made: out it goes, with `recording.ready` when it has one.
    fn record(&mut self, mut record: CallRecord) {
        align_borrowed(self.media.recordings_dir(), &mut record);
        if self.call_events.is_some()
            && record.media.recording.is_some()
            && record.conversation.merged_into.is_none()
        {
            // The conversation's name: its first leg's record id.
            let key = record
                .conversation
                .id
                .as_deref()
                .and_then(|v| v.strip_prefix("v-"))
                .map_or_else(|| record.id.clone(), |rest| format!("c-{rest}"));
            let event = call_event(
                EventKind::RecordingReady,
                &key,
                record.conversation.segment,
                self.now,
                &record,
                self.call_events.as_deref().unwrap_or(&Config::default()),
            );
            self.events.push_back(EngineEvent::Call(Box::new(record)));
            self.events
                .push_back(EngineEvent::CallEvent(Box::new(event)));
            return;
        }
        self.events.push_back(EngineEvent::Call(Box::new(record)));
    }

    /// Pushes call event `kind` of conversation `key`, caused at `at`, from `record`.
    fn call_event(&mut self, kind: EventKind, key: &str, at: Timestamp, record: &CallRecord) {
        let Some(config) = self.call_events.as_deref() else {
            return;
        };
        let nth = self.correlator.live_next(key, kind);
        let event = call_event(kind, key, nth, at, record, config);
        self.events
            .push_back(EngineEvent::CallEvent(Box::new(event)));
    }

    /// Whether an answer came from a number listed in `[calls] voicemail`.
    fn answered_by_voicemail(&self, d: &FinishedDialog) -> bool {
        let Some(config) = self.call_events.as_deref() else {
            return false;
        };
        let numbers = &config.numbers;
        [&d.to.user, &d.request_uri.user]
            .into_iter()
            .filter(|u| !u.is_empty())
            .any(|u| {
                let u = numbers.normalize_number(u);
                config
                    .calls
                    .voicemail
                    .iter()
                    .any(|v| numbers.normalize_number(v) == u)
            })
    }

    /// Runs one step of the packet layer with every datagram it yields going up.
    fn decode_with(&mut self, step: impl FnOnce(&mut Decoder, &mut dyn FnMut(&Datagram<'_>))) {
        let Engine {
            decoder,
            sip_ports,
            dialogs,
            media,
            sip,
            ..
        } = self;
        step(decoder, &mut |d: &Datagram<'_>| {
            if !sip_datagram(d, sip_ports, dialogs, sip) {
                media.datagram(d);
            }
        });
    }

    pub fn poll(&mut self) -> Option<EngineEvent> {
        self.events.pop_front()
    }

    pub fn packet_counters(&self) -> &Counters {
        self.decoder.counters()
    }

    /// The packet counters so far, leaving zeroes (per-file statistics).
    pub fn take_packet_counters(&mut self) -> Counters {
        self.decoder.take_counters()
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            sip: self.sip.clone(),
            dialogs: self.dialogs.stats(),
            media: self.media.stats(),
            clock_steps: self.clock.steps,
            correlation: self.correlator.stats(),
        }
    }

    fn drain_dialogs(&mut self) {
        while let Some(event) = self.dialogs.poll() {
            match event {
                DialogEvent::Sdp {
                    id,
                    time,
                    side,
                    sdp,
                } => self.media.describe(&id, time, side, &sdp),
                DialogEvent::Answered(d) => {
                    let (record, _) = self.classifier.classify(&d);
                    let operator = record.direction.operator_party();
                    let at = d.answer_time.unwrap_or(d.invite_time);
                    self.media.answered(&d.record_id, at, operator);
                    self.correlator.answered(&d);
                    if self.call_events.is_some() {
                        if let Some(key) = self.correlator.live_answered(&d) {
                            let kind = if self.answered_by_voicemail(&d) {
                                EventKind::Voicemail
                            } else {
                                EventKind::Answered
                            };
                            // A conversation of several legs is previewed merged; a
                            // single dialog's record is this one.
                            let merged = if self.correlator.live_legs(&key) > 1 {
                                self.correlator.live_preview(&key, at, &self.classifier)
                            } else {
                                None
                            };
                            self.call_event(kind, &key, at, merged.as_ref().unwrap_or(&record));
                        }
                    }
                    self.events
                        .push_back(EngineEvent::Answered(Box::new(InProgress {
                            record,
                            dialog: *d,
                        })));
                }
                DialogEvent::HungUp(d) => {
                    self.media.hung_up(&d.record_id, d.end_time);
                    let (record, _) = self.classifier.classify(&d);
                    if self.call_events.is_some() {
                        let mut so_far = record.clone();
                        if let Some(summary) = self.media.summary_so_far(&d.record_id) {
                            so_far.media = media_facts(summary);
                        }
                        self.leg_over(&d, so_far);
                    }
                    self.events
                        .push_back(EngineEvent::HungUp(Box::new(InProgress {
                            record,
                            dialog: *d,
                        })));
                }
                DialogEvent::Started(d) => {
                    let start = self.correlator.live_started(&d);
                    if !start.placed {
                        let (record, _) = self.classifier.classify(&d);
                        self.call_event(EventKind::Ringing, &start.key, d.invite_time, &record);
                    }
                }
                DialogEvent::NotAnswered(d) => {
                    let (record, _) = self.classifier.classify(&d);
                    self.leg_over(&d, record);
                }
                DialogEvent::Transferred(d) => {
                    self.correlator.live_transferred(&d);
                    if let Some(key) = self.correlator.live_key(&d.record_id) {
                        let key = key.to_string();
                        let record = self
                            .correlator
                            .live_preview(&key, self.now, &self.classifier)
                            .unwrap_or_else(|| self.classifier.classify(&d).0);
                        // The leg that was transferred says how (the preview may be
                        // the conversation's first leg).
                        let record = CallRecord {
                            transfer: d.transfer.clone(),
                            ..record
                        };
                        self.call_event(EventKind::Transferred, &key, self.now, &record);
                    }
                }
                DialogEvent::Ended(d) => {
                    self.correlator.live_forget(&d.record_id);
                    let summary = self.media.ended(&d.record_id, d.end_time);
                    let (mut record, discovered) = self.classifier.classify(&d);
                    if let Some(summary) = summary {
                        record.media = media_facts(summary);
                    }
                    for op in discovered {
                        self.events
                            .push_back(EngineEvent::Operator(op, d.invite_time));
                    }
                    // A leg of a B2BUA conversation waits for its partners.
                    if let Some(record) = self.correlator.ended(*d, record) {
                        self.record(record);
                    }
                }
                DialogEvent::Messages { id, trace } => {
                    self.events
                        .push_back(EngineEvent::SipMessages { id, trace });
                }
                DialogEvent::Registered(r) => {
                    if let Some(op) = self.classifier.registration(&r) {
                        self.events.push_back(EngineEvent::Operator(op, r.time));
                    }
                }
            }
        }
    }

    /// A leg is over: its conversation's `call.ended`, or `call.missed` and the like,
    /// when that ends it.
    fn leg_over(&mut self, d: &FinishedDialog, record: CallRecord) {
        match self
            .correlator
            .live_over(d, record, self.now, &self.classifier)
        {
            LiveOver::Nothing => {}
            LiveOver::Unanswered { key, record } => {
                let at = Timestamp::from_nanos(record.end_ns);
                self.call_event(unanswered_kind(record.outcome), &key, at, &record);
            }
            LiveOver::Ended { key, record, at } => {
                self.call_event(EventKind::Ended, &key, at, &record);
            }
        }
    }

    /// The calls ringing and talking now (at most [`MAX_CALLS_SHOWN`]), as of the
    /// engine's clock, with their media so far (the console's Live page; `calltap run`
    /// asks once a second).
    pub fn calls_in_progress(&self) -> Vec<CallInProgress> {
        let now = self.now.as_nanos();
        self.dialogs
            .in_progress()
            .take(MAX_CALLS_SHOWN)
            .map(|(d, answered)| {
                let (record, _) = self.classifier.classify(d);
                let summary = self.media.summary_so_far(&d.record_id);
                let since = if answered {
                    d.answer_time.unwrap_or(d.invite_time)
                } else {
                    d.invite_time
                };
                CallInProgress {
                    id: d.record_id.clone(),
                    stage: if answered {
                        Stage::Talking
                    } else {
                        Stage::Ringing
                    },
                    direction: record.direction,
                    operator: record.operator,
                    client_number: record.client_number,
                    from: d.from.user.clone(),
                    to: d.to.user.clone(),
                    invite_ns: d.invite_time.as_nanos(),
                    answer_ns: d.answer_time.map(Timestamp::as_nanos),
                    elapsed_secs: now.saturating_sub(since.as_nanos()) / 1_000_000_000,
                    codecs: summary
                        .as_ref()
                        .map(|s| s.codecs.clone())
                        .unwrap_or_default(),
                    caller_packets: summary.as_ref().map_or(0, |s| s.caller.received),
                    callee_packets: summary.as_ref().map_or(0, |s| s.callee.received),
                    loss_percent: summary
                        .as_ref()
                        .map(|s| s.loss_percent)
                        .filter(|l| l.is_finite()),
                }
            })
            .collect()
    }

    /// The call `id` (just reported [`EngineEvent::Answered`]) is stored whole already:
    /// the same traffic is being seen again. Its recording is dropped, so the stored one
    /// is never overwritten (a crash mid-way would otherwise leave it cut short).
    pub fn skip_recording(&mut self, id: &str) {
        self.media.skip_recording(id);
    }

    /// Audio on or off: the driver watching the disk's free-space floor says which
    /// (`store::retention::DiskWatch`); records go on either way.
    pub fn set_audio_open(&mut self, open: bool) {
        self.media.set_audio_open(open);
    }
}

/// Makes a recording taken from another leg of the conversation the record's own (see
/// [`crate::call::Alignment`]): from the record's answer for its talk time, operator
/// left, under the record's name. If that fails, the record keeps the other leg's file
/// as it is and the log says why.
pub(crate) fn align_borrowed(dir: &Path, record: &mut CallRecord) {
    let Some(align) = record.media.align.take() else {
        return;
    };
    let Some(file) = record.media.recording.as_ref().map(|r| r.file.clone()) else {
        return;
    };
    let source = dir.join(&file);
    let target = dir.join(format!("{}.wav", crate::media::file_name(&record.id)));
    let how = Realign {
        head_ns: align.head_ns,
        keep_ns: align.keep_ns,
        swap: align.swap,
    };
    match realign(&source, &target, how) {
        Ok(done) => {
            if !align.source_shared && source != target {
                if let Err(e) = std::fs::remove_file(&source) {
                    tracing::warn!("{}: not removed after alignment: {e}", source.display());
                }
            }
            record.media.recording = Some(recording_file(&done));
        }
        Err(e) => tracing::warn!(
            "call {}: the recording taken from {file} is kept unaligned: {e}",
            record.id
        ),
    }
}

/// The packet layer's options from the configuration: the engine maps the file onto
/// each layer, so the layers do not read it.
pub fn decoder_options(config: &Config) -> DecoderOptions {
    let limits = &config.limits;
    DecoderOptions {
        sip_ports: config.capture.sip_ports.clone(),
        defrag: DefragLimits {
            max_pending: limits.max_fragment_buffers,
            max_bytes: limits.max_fragmented_bytes.as_usize(),
            timeout: Duration::from_secs(limits.fragment_timeout_secs),
        },
        tcp: TcpLimits {
            max_streams: limits.max_tcp_streams,
            buffer_bytes: limits.tcp_buffer_bytes.as_usize(),
            idle: Duration::from_secs(limits.tcp_idle_secs),
            ..TcpLimits::default()
        },
    }
}

/// The dialog layer's limits from the configuration.
pub fn dialog_limits(config: &Config) -> DialogLimits {
    let calls = &config.calls;
    DialogLimits {
        max_dialogs: calls.max_dialogs,
        ring_timeout: Duration::from_secs(calls.ring_timeout_secs),
        max_call: Duration::from_secs(calls.max_call_secs),
        no_response: NoResponseLimits {
            max_pending: calls.max_no_response,
            per_source_per_minute: calls.no_response_per_source_per_minute,
            per_minute: calls.no_response_per_minute,
        },
        keep_messages: config.store.sip_messages,
    }
}

/// What the call record keeps of the media layer's summary.
fn media_facts(s: MediaSummary) -> MediaFacts {
    let jitter = s.caller.jitter_ms.max(s.callee.jitter_ms);
    MediaFacts {
        codecs: s.codecs,
        recording: s.recording.as_ref().map(recording_file),
        no_recording_reason: s.no_recording_reason,
        loss_percent: Some(s.loss_percent).filter(|l| l.is_finite()),
        jitter_ms: Some(jitter).filter(|j| j.is_finite()),
        mos: s.mos.filter(|m| m.is_finite()),
        dtmf_digits: s.dtmf_digits,
        caller_packets: s.caller.received,
        callee_packets: s.callee.received,
        align: None,
    }
}

/// What a call record says of a finished recording.
pub(crate) fn recording_file(r: &Recording) -> RecordingFile {
    RecordingFile {
        file: r
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        bytes: r.bytes,
        sample_rate: r.sample_rate,
        duration_ms: r.duration_ms,
    }
}

/// Hands a datagram to the SIP layer; false when it is not SIP (it is media's then).
fn sip_datagram(
    d: &Datagram<'_>,
    sip_ports: &[u16],
    dialogs: &mut DialogTable,
    stats: &mut SipStats,
) -> bool {
    let on_sip_port = sip_ports.contains(&d.src.port()) || sip_ports.contains(&d.dst.port());
    if d.transport == Transport::Udp && !may_be_sip(d.payload) {
        if on_sip_port {
            if d.payload.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
                stats.keepalives += 1;
            } else {
                stats.not_sip += 1;
            }
            return true;
        }
        return false;
    }
    match sip::parse(d.payload) {
        Ok((msg, _)) => {
            stats.messages += 1;
            if msg.is_request() {
                stats.requests += 1;
            } else {
                stats.responses += 1;
            }
            for defect in msg.defects().iter() {
                *stats.defects.entry(defect.reason()).or_default() += 1;
            }
            dialogs.message(d.time, &msg, d.src, d.dst, d.transport);
        }
        // Off the SIP ports a failed parse just means "not SIP" (T.38, a game, ...).
        Err(e) if on_sip_port || d.transport == Transport::Tcp => {
            *stats.malformed.entry(e.reason()).or_default() += 1;
        }
        Err(_) => {}
    }
    true
}
