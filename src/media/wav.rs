//! The per-call stereo writer: a small ring of frames that both channels write into by
//! position, flushed to a hound WAV once the reorder horizon has passed, under a `.part`
//! name until the call ends.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::base::Timestamp;

/// Frames (one sample per channel) held in memory per call: 16 KiB. At 8 kHz that is
/// 512 ms, at 16 kHz 256 ms; it must hold the reorder horizon, one flush batch and the
/// longest packet (see `MAX_PACKET_FRAMES`, `flush_frames`).
pub const RING_FRAMES: usize = 4096;
/// What the ring may grow to when packets come late in order (a queue building on the
/// sender's link): the horizon widens to wait for them rather than write their places
/// out as silence. 8 s at 8 kHz, 4 s at 16 kHz (256 KiB), for that call only.
pub const MAX_RING_FRAMES: usize = 65_536;
/// Longest packet placed, in output frames: 60 ms at 16 kHz, 120 ms at 8 kHz. Longer
/// payloads are counted and skipped.
pub const MAX_PACKET_FRAMES: usize = 960;
/// Frames written per `write` call, by output rate: 8 KiB (256 ms) at 8 kHz, 4 KiB
/// (64 ms) at 16 kHz, through one byte buffer per thread (not per call).
/// Fewer, larger writes: 512-frame batches at 8 kHz ran at 0.92 M packets/s in
/// benches/media.rs, 2048-frame ones at 0.9-1.1 M (see src/media/mod.rs for why the
/// kernel's write path, not this code, sets the pace).
pub fn flush_frames(rate: u32) -> usize {
    if rate <= 8000 {
        2048
    } else {
        1024
    }
}
/// The longest reorder horizon the ring allows at a rate: 1568 frames (196 ms) at 8 kHz,
/// 2112 (132 ms) at 16 kHz.
pub fn max_horizon_frames(rate: u32) -> usize {
    RING_FRAMES - flush_frames(rate) - MAX_PACKET_FRAMES
}
/// Frames a WAV can hold: its data size is a u32 (about 18 h of 16 kHz stereo).
const MAX_WAV_FRAMES: i64 = (u32::MAX as i64 - 64) / 4;

/// A finished recording.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recording {
    pub path: PathBuf,
    /// File size in bytes (header included).
    pub bytes: u64,
    pub sample_rate: u32,
    pub channels: u16,
    /// Codecs decoded into it ("PCMU", "PCMA", "G722"); empty after a crash repair.
    pub codecs: Vec<String>,
    pub duration_ms: u64,
}

/// One call's WAV in progress.
pub struct Recorder {
    rate: u32,
    start: Timestamp,
    ring: Vec<[i16; 2]>,
    /// Frames already on disk; the ring holds [flushed, flushed + ring.len()).
    flushed: i64,
    horizon: i64,
    batch: i64,
    /// The `.part` file, after its header; `None` after a write error.
    file: Option<File>,
    part: PathBuf,
    path: PathBuf,
    /// The first write error; nothing is written after it.
    error: Option<io::Error>,
}

/// A recording no longer written to: its header is final and it holds the frames that
/// reached the disk, still under its `.part` name until [`Stopped::finish`] names it.
#[derive(Debug)]
pub struct Stopped {
    rate: u32,
    start: Timestamp,
    /// Frames in the file.
    frames: i64,
    part: PathBuf,
    path: PathBuf,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("rate", &self.rate)
            .field("flushed", &self.flushed)
            .field("part", &self.part)
            .finish()
    }
}

/// A 16-bit stereo PCM WAV header (PCMWAVEFORMAT, 44 bytes) with both sizes zero, as
/// written before any sample; [`set_data_len`] fills them in at the end. The bytes are
/// hound's, so files are the same whichever writes them (tests/digests.rs).
fn pcm_header(rate: u32) -> [u8; PCM_DATA_START as usize] {
    let mut h = [0u8; PCM_DATA_START as usize];
    h[0..4].copy_from_slice(b"RIFF");
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&2u16.to_le_bytes()); // channels
    h[24..28].copy_from_slice(&rate.to_le_bytes());
    h[28..32].copy_from_slice(&(rate * 4).to_le_bytes()); // bytes per second
    h[32..34].copy_from_slice(&4u16.to_le_bytes()); // block align
    h[34..36].copy_from_slice(&16u16.to_le_bytes()); // bits per sample
    h[36..40].copy_from_slice(b"data");
    h
}

thread_local! {
    /// Samples as bytes on their way to a file: one buffer for every call the thread
    /// records, where a writer per call would hold one each (8 KiB at 8 kHz).
    static WRITE_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn spec(rate: u32) -> hound::WavSpec {
    hound::WavSpec {
        channels: 2,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    }
}

impl Recorder {
    /// Creates `dir/name.wav.part` with its header; the recording starts at `start`.
    pub fn create(
        dir: &Path,
        name: &str,
        rate: u32,
        start: Timestamp,
        horizon: usize,
    ) -> io::Result<Self> {
        let path = dir.join(format!("{name}.wav"));
        let part = dir.join(format!("{name}.wav.part"));
        // The folder is made when missing, not checked per call (a mkdir per call was
        // 3,200 failing syscalls in a replay of 3,200 calls).
        let mut file = match File::create(&part) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(dir)?;
                File::create(&part)?
            }
            other => other?,
        };
        if let Err(e) = file.write_all(&pcm_header(rate)) {
            // No header (a full disk): leave no empty part file behind.
            let _ = fs::remove_file(&part);
            return Err(e);
        }
        Ok(Recorder {
            rate,
            start,
            ring: vec![[0i16; 2]; RING_FRAMES],
            flushed: 0,
            horizon: horizon.min(max_horizon_frames(rate)) as i64,
            batch: flush_frames(rate) as i64,
            file: Some(file),
            part,
            path,
            error: None,
        })
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// The frame a capture time falls on (negative before the answer).
    #[inline]
    pub fn frame_at(&self, t: Timestamp) -> i64 {
        let ns = t.as_nanos() as i128 - self.start.as_nanos() as i128;
        (ns * i128::from(self.rate) / 1_000_000_000) as i64
    }

    /// First frame still writable.
    #[inline]
    pub fn flushed(&self) -> i64 {
        self.flushed
    }

    /// One past the last frame the ring can take now.
    #[inline]
    pub fn limit(&self) -> i64 {
        self.flushed + self.ring.len() as i64
    }

    /// Writes `samples` into channel `ch` from frame `pos`; the parts before the flushed
    /// point or past the ring are dropped. Returns the frames that landed.
    #[inline]
    pub fn put(&mut self, ch: usize, pos: i64, samples: &[i16]) -> usize {
        let lo = pos.max(self.flushed);
        let hi = (pos + samples.len() as i64).min(self.limit());
        if lo >= hi {
            return 0;
        }
        let src = &samples[(lo - pos) as usize..(hi - pos) as usize];
        let len = self.ring.len();
        let at = (lo as usize) % len;
        // At most two contiguous runs (the ring wraps once at most).
        let first = src.len().min(len - at);
        for (f, &s) in self.ring[at..at + first].iter_mut().zip(&src[..first]) {
            f[ch] = s;
        }
        for (f, &s) in self.ring.iter_mut().zip(&src[first..]) {
            f[ch] = s;
        }
        src.len()
    }

    /// Waits longer before writing frames out: at least `frames` behind capture time
    /// (the delay an in-order packet just came with, past the horizon), growing the ring
    /// to hold it, up to what [`MAX_RING_FRAMES`] allows.
    pub fn widen_horizon(&mut self, frames: i64) {
        let most = (MAX_RING_FRAMES - flush_frames(self.rate) - MAX_PACKET_FRAMES) as i64;
        let horizon = frames.clamp(self.horizon, most);
        let need = horizon + self.batch + MAX_PACKET_FRAMES as i64;
        if horizon > self.horizon && self.make_room(self.flushed + need) {
            self.horizon = horizon;
        }
    }

    /// Makes the ring hold frames up to `end` (exclusive), growing it (to a power of two,
    /// at most [`MAX_RING_FRAMES`]). False when even the largest ring cannot.
    fn make_room(&mut self, end: i64) -> bool {
        let need = end - self.flushed;
        if need <= self.ring.len() as i64 {
            return true;
        }
        if need > MAX_RING_FRAMES as i64 {
            return false;
        }
        let new_len = (need as usize).next_power_of_two().min(MAX_RING_FRAMES);
        let mut ring = vec![[0i16; 2]; new_len];
        let old_len = self.ring.len();
        for f in self.flushed..self.flushed + old_len as i64 {
            ring[(f as usize) % new_len] = self.ring[(f as usize) % old_len];
        }
        self.ring = ring;
        true
    }

    /// Moves channel `ch`'s frames `[start, end)` by `by` frames (earlier when negative),
    /// leaving silence where they were: a stream whose first packet came late is put
    /// where its least-delayed packets say it belongs. Only frames still in memory move:
    /// returns false, changing nothing, when any part lies outside `[flushed, limit)`.
    pub fn shift_channel(&mut self, ch: usize, start: i64, end: i64, by: i64) -> bool {
        let (lo, hi) = (start.min(start + by), end.max(end + by));
        if start >= end || by == 0 || lo < self.flushed || hi > self.limit() {
            return start >= end || by == 0;
        }
        let len = self.ring.len();
        let slot = |f: i64| (f as usize) % len;
        let mut moved = |f: i64| {
            let v = self.ring[slot(f)][ch];
            self.ring[slot(f)][ch] = 0;
            self.ring[slot(f + by)][ch] = v;
        };
        if by < 0 {
            (start..end).for_each(&mut moved);
        } else {
            (start..end).rev().for_each(&mut moved);
        }
        true
    }

    /// Capture time has reached `now`: writes out what is older than the horizon, in
    /// whole batches.
    #[inline]
    pub fn advance(&mut self, now: Timestamp) {
        let target = self.frame_at(now) - self.horizon;
        if target - self.flushed >= self.batch {
            let whole = (target - self.flushed) / self.batch * self.batch;
            self.flush_to(self.flushed + whole);
        }
    }

    /// Writes frames [flushed, target): the ring's content, zeros past it.
    fn flush_to(&mut self, target: i64) {
        let target = target.min(MAX_WAV_FRAMES);
        while self.flushed < target {
            let len = self.ring.len();
            let at = (self.flushed as usize) % len;
            let n = ((target - self.flushed) as usize)
                .min(len - at)
                .min(self.batch as usize);
            let frames = &mut self.ring[at..at + n];
            if let Some(file) = self.file.as_mut() {
                let written = WRITE_BUFFER.with_borrow_mut(|bytes| {
                    bytes.clear();
                    for f in frames.iter() {
                        bytes.extend_from_slice(&f[0].to_le_bytes());
                        bytes.extend_from_slice(&f[1].to_le_bytes());
                    }
                    file.write_all(bytes)
                });
                if let Err(e) = written {
                    self.error = Some(e);
                    self.file = None;
                }
            }
            frames.fill([0, 0]);
            self.flushed += n as i64;
        }
    }

    /// Ends the recording at `end`: writes the rest, fixes the header, renames the part
    /// file to its final name. On any error the part file is removed: no partial or
    /// corrupt WAV is ever renamed into place.
    pub fn finish(mut self, end: Timestamp, codecs: Vec<String>) -> io::Result<Recording> {
        let end_frame = self.frame_at(end).max(0);
        self.flush_to(end_frame);
        self.stop()?.finish(end, codecs)
    }

    /// Stops writing: the header is made final over the frames already on disk and the
    /// file is closed; what the ring still holds is dropped. Nothing is written after
    /// this but the header (in place, so it needs no new disk block). On an error (an
    /// earlier write failed, or the header could not be fixed) the part file is removed.
    pub fn stop(mut self) -> io::Result<Stopped> {
        let frames = self.flushed.min(MAX_WAV_FRAMES);
        let result = match (self.error.take(), self.file.take()) {
            (Some(e), _) => Err(e),
            (None, None) => Err(io::Error::other("no file")),
            // The header's sizes, in place; the handle closes here.
            (None, Some(f)) => write_sizes(&f, PCM_DATA_START, frames as u64 * 4),
        };
        if let Err(e) = result {
            let _ = fs::remove_file(&self.part);
            return Err(e);
        }
        Ok(Stopped {
            rate: self.rate,
            start: self.start,
            frames,
            part: std::mem::take(&mut self.part),
            path: std::mem::take(&mut self.path),
        })
    }

    /// Drops the recording: the part file is removed.
    pub fn discard(mut self) {
        self.file = None;
        let _ = fs::remove_file(&self.part);
    }
}

impl Stopped {
    /// The call ended at `end`: the file is cut to end there if it holds more, and
    /// renamed to its final name. On an error the part file is removed.
    pub fn finish(self, end: Timestamp, codecs: Vec<String>) -> io::Result<Recording> {
        let ns = end.as_nanos() as i128 - self.start.as_nanos() as i128;
        let end_frame = ((ns * i128::from(self.rate) / 1_000_000_000) as i64).max(0);
        let frames = self.frames.min(end_frame);
        let done = || -> io::Result<u64> {
            if self.frames > end_frame {
                // Media past the end was already on disk (the end came late): cut it.
                let mut f = OpenOptions::new().write(true).open(&self.part)?;
                set_data_len(&mut f, PCM_DATA_START, frames as u64 * 4)?;
            }
            fs::rename(&self.part, &self.path)?;
            Ok(fs::metadata(&self.path)?.len())
        };
        let bytes = done().inspect_err(|_| {
            let _ = fs::remove_file(&self.part);
        })?;
        Ok(Recording {
            path: self.path.clone(),
            bytes,
            sample_rate: self.rate,
            channels: 2,
            codecs,
            duration_ms: frames as u64 * 1000 / u64::from(self.rate),
        })
    }

    /// Length of the audio on disk, in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.frames as u64 * 1000 / u64::from(self.rate)
    }

    /// Drops the recording: the part file is removed.
    pub fn discard(self) {
        let _ = fs::remove_file(&self.part);
    }
}

/// Whether an error is the disk (or the quota) being full.
pub fn is_disk_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull
        || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Where hound's 16-bit stereo (PCMWAVEFORMAT) header ends and the samples start.
const PCM_DATA_START: u64 = 44;

/// Sets a WAV's RIFF and data sizes to `data` bytes of samples from `data_start`, and
/// cuts the file there.
/// Sets a WAV's RIFF and data sizes for `data` bytes of samples from `data_start`,
/// the file being exactly that long already.
fn write_sizes(f: &File, data_start: u64, data: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    f.write_all_at(&((data_start + data - 8) as u32).to_le_bytes(), 4)?;
    f.write_all_at(&(data as u32).to_le_bytes(), data_start - 4)
}

fn set_data_len(f: &mut File, data_start: u64, data: u64) -> io::Result<()> {
    f.set_len(data_start + data)?;
    f.seek(SeekFrom::Start(4))?;
    f.write_all(&((data_start + data - 8) as u32).to_le_bytes())?;
    f.seek(SeekFrom::Start(data_start - 4))?;
    f.write_all(&(data as u32).to_le_bytes())?;
    Ok(())
}

fn hound_io(e: hound::Error) -> io::Error {
    match e {
        hound::Error::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// Where a WAV file's samples are and how they are laid out.
struct Layout {
    /// Offset of the first sample.
    data_start: u64,
    rate: u32,
    channels: u16,
    /// Bytes per frame.
    block: u64,
    /// Bytes of whole frames from `data_start` to the end of the file (a torn last
    /// frame left out), within what a WAV header can state.
    data: u64,
}

impl Layout {
    fn frames(&self) -> u64 {
        self.data / self.block
    }

    fn duration_ms(&self) -> u64 {
        self.frames() * 1000 / u64::from(self.rate)
    }
}

/// Reads a WAV's layout from its header, with its data taken from the file's length
/// rather than the header's sizes (which a crash leaves stale).
fn layout(f: &mut File) -> io::Result<Layout> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let len = f.metadata()?.len();
    let mut head = [0u8; 12];
    f.seek(SeekFrom::Start(0))?;
    f.read_exact(&mut head).map_err(|_| bad("no RIFF header"))?;
    if &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return Err(bad("not a WAV file"));
    }
    // Walk the chunks up to "data", reading the format on the way.
    let mut pos = 12u64;
    let (mut rate, mut channels, mut block) = (0u32, 0u16, 0u16);
    let data_start = loop {
        let mut ch = [0u8; 8];
        f.seek(SeekFrom::Start(pos))?;
        f.read_exact(&mut ch).map_err(|_| bad("no data chunk"))?;
        let size = u64::from(u32::from_le_bytes([ch[4], ch[5], ch[6], ch[7]]));
        if &ch[0..4] == b"fmt " {
            let mut fmt = [0u8; 16];
            f.read_exact(&mut fmt).map_err(|_| bad("short fmt chunk"))?;
            channels = u16::from_le_bytes([fmt[2], fmt[3]]);
            rate = u32::from_le_bytes([fmt[4], fmt[5], fmt[6], fmt[7]]);
            block = u16::from_le_bytes([fmt[12], fmt[13]]);
        }
        if &ch[0..4] == b"data" {
            break pos + 8;
        }
        pos += 8 + size + (size & 1);
        if pos >= len {
            return Err(bad("no data chunk"));
        }
    };
    if rate == 0 || block == 0 {
        return Err(bad("no fmt chunk"));
    }
    let block = u64::from(block);
    let data = (len.saturating_sub(data_start) / block * block).min(u64::from(u32::MAX) - 64);
    Ok(Layout {
        data_start,
        rate,
        channels,
        block,
        data,
    })
}

/// Milliseconds of whole frames in a recording a crash left as `NAME.wav.part`, without
/// touching it: what [`repair_partial`] would keep.
pub fn partial_duration_ms(path: &Path) -> io::Result<u64> {
    Ok(layout(&mut File::open(path)?)?.duration_ms())
}

/// A finished recording read back from its file (a call whose WAV was complete and
/// renamed when a crash took its record).
pub fn describe(path: &Path) -> io::Result<Recording> {
    let mut f = File::open(path)?;
    let l = layout(&mut f)?;
    Ok(Recording {
        path: path.to_owned(),
        bytes: f.metadata()?.len(),
        sample_rate: l.rate,
        channels: l.channels,
        codecs: Vec::new(),
        duration_ms: l.duration_ms(),
    })
}

/// Repairs a recording a crash left as `NAME.wav.part`: sets the WAV header to the whole
/// frames actually on disk (dropping a torn last frame) and renames it to `NAME.wav`.
pub fn repair_partial(path: &Path) -> io::Result<Recording> {
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    let l = layout(&mut f)?;
    set_data_len(&mut f, l.data_start, l.data)?;
    f.sync_all()?;
    drop(f);
    let done = match path.to_str().and_then(|s| s.strip_suffix(".part")) {
        Some(s) => PathBuf::from(s),
        None => path.with_extension("wav"),
    };
    fs::rename(path, &done)?;
    Ok(Recording {
        bytes: l.data_start + l.data,
        path: done,
        sample_rate: l.rate,
        channels: l.channels,
        codecs: Vec::new(),
        duration_ms: l.duration_ms(),
    })
}

/// What [`realign`] does to a recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Realign {
    /// Nanoseconds cut from the head; negative puts that much silence before it.
    pub head_ns: i64,
    /// At most this much is kept after the head.
    pub keep_ns: Option<u64>,
    /// Left and right exchanged.
    pub swap: bool,
}

/// Writes recording `source` again as `target` (which may be the same file), changed as
/// `how` says. Written under the target's `.part` name and renamed at the end, so a
/// crash leaves the source whole (and crash recovery treats the part as any other).
pub fn realign(source: &Path, target: &Path, how: Realign) -> io::Result<Recording> {
    let mut reader = hound::WavReader::open(source).map_err(hound_io)?;
    let got = reader.spec();
    if got.channels != 2
        || got.bits_per_sample != 16
        || got.sample_format != hound::SampleFormat::Int
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not 16-bit stereo", source.display()),
        ));
    }
    let rate = got.sample_rate;
    let frames_of = |ns: u64| (u128::from(ns) * u128::from(rate) / 1_000_000_000) as u64;
    let skip = frames_of(how.head_ns.max(0) as u64);
    let silence = frames_of(how.head_ns.min(0).unsigned_abs());
    let keep = how.keep_ns.map_or(u64::MAX, frames_of);
    let part = {
        let mut name = target.as_os_str().to_owned();
        name.push(".part");
        PathBuf::from(name)
    };
    let file = File::create(&part)?;
    let write = |reader: &mut hound::WavReader<io::BufReader<File>>| -> io::Result<()> {
        let mut writer =
            hound::WavWriter::new(io::BufWriter::new(file), spec(rate)).map_err(hound_io)?;
        let mut written = 0u64;
        while written < silence.min(keep) {
            writer.write_sample(0i16).map_err(hound_io)?;
            writer.write_sample(0i16).map_err(hound_io)?;
            written += 1;
        }
        let mut samples = reader.samples::<i16>().skip(2 * skip as usize);
        while written < keep {
            let (Some(left), Some(right)) = (samples.next(), samples.next()) else {
                break;
            };
            let (left, right) = (left.map_err(hound_io)?, right.map_err(hound_io)?);
            let (left, right) = if how.swap {
                (right, left)
            } else {
                (left, right)
            };
            writer.write_sample(left).map_err(hound_io)?;
            writer.write_sample(right).map_err(hound_io)?;
            written += 1;
        }
        writer.finalize().map_err(hound_io)
    };
    if let Err(e) = write(&mut reader) {
        let _ = fs::remove_file(&part);
        return Err(e);
    }
    drop(reader);
    File::open(&part)?.sync_all()?;
    fs::rename(&part, target)?;
    describe(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_nanos(1_000 * SEC + ms * 1_000_000)
    }

    /// A recorder with one second of a tone on both channels, written out.
    fn recorder(dir: &Path) -> Recorder {
        let mut r = Recorder::create(dir, "c-1", 8000, at(0), 160).expect("create");
        let tone: Vec<i16> = (0..160).map(|i| (i * 100) as i16).collect();
        for packet in 0..50 {
            for ch in 0..2 {
                r.put(ch, packet * 160, &tone);
            }
            r.advance(at(packet as u64 * 20));
        }
        r.advance(at(3_000));
        r
    }

    #[test]
    fn a_stopped_recording_is_a_valid_wav_of_what_reached_the_disk() {
        let dir = tempfile::tempdir().expect("temp dir");
        let r = recorder(dir.path());
        let on_disk = r.flushed();
        assert!(on_disk > 0);
        let stopped = r.stop().expect("stop");
        // Final under the part name: readable as it is (a crash here loses nothing).
        let part = dir.path().join("c-1.wav.part");
        let wav = hound::WavReader::open(&part).expect("a valid WAV already");
        assert_eq!(i64::from(wav.duration()), on_disk);
        drop(wav);
        // The call ends much later: the file keeps what it has, under its final name.
        let rec = stopped
            .finish(at(60_000), vec!["PCMU".into()])
            .expect("finish");
        assert!(!part.exists());
        let wav = hound::WavReader::open(&rec.path).expect("valid");
        assert_eq!(i64::from(wav.duration()), on_disk);
        assert_eq!(rec.duration_ms, on_disk as u64 * 1000 / 8000);
        assert_eq!(rec.bytes, 44 + on_disk as u64 * 4);
    }

    #[test]
    fn a_stopped_recording_is_cut_to_an_earlier_end() {
        let dir = tempfile::tempdir().expect("temp dir");
        let stopped = recorder(dir.path()).stop().expect("stop");
        let rec = stopped.finish(at(250), Vec::new()).expect("finish");
        let wav = hound::WavReader::open(&rec.path).expect("valid");
        assert_eq!(wav.duration(), 2000);
        assert_eq!(rec.duration_ms, 250);
    }

    #[test]
    fn a_full_disk_at_the_start_leaves_no_part_file_and_says_so() {
        let full = Path::new("/dev/full");
        // Every Linux has /dev/full; without it the test cannot run, and says so.
        assert!(
            full.exists(),
            "no /dev/full: the full-disk start test cannot run"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let part = dir.path().join("c-1.wav.part");
        std::os::unix::fs::symlink(full, &part).expect("symlink");
        let e = Recorder::create(dir.path(), "c-1", 8000, at(0), 160).expect_err("ENOSPC");
        assert!(is_disk_full(&e), "{e}");
        assert!(!part.exists() && part.symlink_metadata().is_err());
        assert!(!dir.path().join("c-1.wav").exists());
    }

    fn stereo(path: &Path, frames: &[[i16; 2]]) {
        let mut w = hound::WavWriter::create(path, spec(8000)).expect("create");
        for f in frames {
            w.write_sample(f[0]).expect("left");
            w.write_sample(f[1]).expect("right");
        }
        w.finalize().expect("finalize");
    }

    fn frames_of(path: &Path) -> Vec<[i16; 2]> {
        let mut r = hound::WavReader::open(path).expect("open");
        let s: Vec<i16> = r.samples::<i16>().map(|s| s.expect("sample")).collect();
        s.chunks_exact(2).map(|c| [c[0], c[1]]).collect()
    }

    #[test]
    fn realign_cuts_pads_keeps_and_swaps() {
        let dir = tempfile::tempdir().expect("temp dir");
        let source = dir.path().join("a.wav");
        let frames: Vec<[i16; 2]> = (0..80).map(|i| [i, -i]).collect();
        stereo(&source, &frames);
        // 1 ms = 8 frames cut, 5 ms = 40 frames kept, channels exchanged.
        let target = dir.path().join("b.wav");
        let how = Realign {
            head_ns: 1_000_000,
            keep_ns: Some(5_000_000),
            swap: true,
        };
        let done = realign(&source, &target, how).expect("realign");
        let want: Vec<[i16; 2]> = (8..48).map(|i| [-i, i]).collect();
        assert_eq!(frames_of(&target), want);
        assert_eq!(done.duration_ms, 5);
        assert!(source.exists(), "the source is the caller's to remove");
        // Silence before (2 ms = 16 frames), in place, nothing cut at the end.
        let how = Realign {
            head_ns: -2_000_000,
            keep_ns: None,
            swap: false,
        };
        realign(&source, &source, how).expect("in place");
        let got = frames_of(&source);
        assert_eq!(got.len(), 96);
        assert!(got[..16].iter().all(|f| *f == [0, 0]));
        assert_eq!(&got[16..], &frames[..]);
        assert!(!dir.path().join("a.wav.part").exists());
    }
}
