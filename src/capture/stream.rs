//! A live pcap or pcapng stream: `tcpdump -U -w -` on this host or another
//! (`ssh pbx tcpdump -U -w - | calltap run --pcap-stream -`), a named pipe, or any
//! program that writes a capture as it goes. Frames are read on a thread of their own,
//! since reading blocks, and handed over through a bounded queue: a reader faster than
//! the engine waits, it never grows memory.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde::Serialize;

use super::file::CaptureReader;
use super::{Frame, LinkType, Timestamp};

/// Frames queued between the reader and the engine: about a tenth of a second of a
/// busy PBX's traffic (40 k packets/s), a few MB at most.
const QUEUE_FRAMES: usize = 4096;

/// Frames handed to the engine per poll at most, so a poll returns within its time
/// budget even when the queue is full.
const POLL_FRAMES: usize = 16_384;

/// One frame, owned, as it crosses the queue.
struct OwnedFrame {
    time: Timestamp,
    link: LinkType,
    orig_len: u32,
    data: Vec<u8>,
}

/// What the stream has done so far.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StreamStats {
    pub frames: u64,
    pub bytes: u64,
    /// Damage found in the stream (a record cut short, a corrupt block), skipped.
    pub errors: u64,
    /// The writer closed the stream (or reading failed for good): no more frames come.
    pub ended: bool,
    /// Why reading stopped, when it stopped on an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_error: Option<String>,
}

/// A capture stream read on its own thread.
pub struct PcapStream {
    name: String,
    frames: Receiver<OwnedFrame>,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    frames: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    ended: AtomicBool,
    end_error: Mutex<Option<String>>,
}

impl PcapStream {
    /// Opens `path` (`-` for standard input) and starts reading it. The file header is
    /// read on the reader thread: opening a named pipe waits for its writer, and that
    /// must not hold up the caller.
    pub fn open(path: &Path) -> std::io::Result<PcapStream> {
        let (name, source): (String, Box<dyn Read + Send>) = if path == Path::new("-") {
            ("standard input".into(), Box::new(std::io::stdin()))
        } else {
            (path.display().to_string(), Box::new(LazyFile::new(path)))
        };
        let (tx, frames) = mpsc::sync_channel(QUEUE_FRAMES);
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        let reader_name = name.clone();
        thread::Builder::new()
            .name("pcap-stream".into())
            .spawn(move || read_stream(reader_name, source, tx, &shared))?;
        Ok(PcapStream {
            name,
            frames,
            counters,
        })
    }

    /// Waits up to `timeout` for frames and hands each to `on_frame`; returns how many.
    /// Once the stream has ended it returns 0 after the timeout, every time.
    pub fn poll(&mut self, timeout: Duration, on_frame: &mut dyn FnMut(&Frame<'_>)) -> usize {
        let first = match self.frames.recv_timeout(timeout) {
            Ok(f) => f,
            Err(RecvTimeoutError::Timeout) => return 0,
            Err(RecvTimeoutError::Disconnected) => {
                thread::sleep(timeout);
                return 0;
            }
        };
        let mut handed = 0;
        let mut next = Some(first);
        while let Some(f) = next.take() {
            on_frame(&Frame {
                time: f.time,
                link: f.link,
                data: &f.data,
                orig_len: f.orig_len,
            });
            handed += 1;
            if handed == POLL_FRAMES {
                break;
            }
            // Empty or disconnected alike: this poll is done.
            next = self.frames.try_recv().ok();
        }
        handed
    }

    pub fn stats(&self) -> StreamStats {
        let c = &self.counters;
        StreamStats {
            frames: c.frames.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            ended: c.ended.load(Ordering::Relaxed),
            end_error: c
                .end_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    /// "pcap stream from NAME".
    pub fn describe(&self) -> String {
        format!("pcap stream from {}", self.name)
    }
}

fn read_stream(
    name: String,
    source: Box<dyn Read + Send>,
    tx: mpsc::SyncSender<OwnedFrame>,
    counters: &Counters,
) {
    let end = |error: Option<String>| {
        if let Some(e) = &error {
            tracing::error!("capture stream {name}: {e}");
        } else {
            tracing::info!("capture stream {name} ended");
        }
        *counters.end_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
        counters.ended.store(true, Ordering::Relaxed);
    };
    let mut reader = match CaptureReader::new(name.clone(), source) {
        Ok(r) => r,
        Err(e) => return end(Some(e.to_string())),
    };
    let mut last_error = None;
    while let Some(next) = reader.next_frame() {
        match next {
            Ok(frame) => {
                counters.frames.fetch_add(1, Ordering::Relaxed);
                counters
                    .bytes
                    .fetch_add(frame.data.len() as u64, Ordering::Relaxed);
                let owned = OwnedFrame {
                    time: frame.time,
                    link: frame.link,
                    orig_len: frame.orig_len,
                    data: frame.data.to_vec(),
                };
                if tx.send(owned).is_err() {
                    // The engine is gone: calltap is stopping.
                    return;
                }
            }
            Err(e) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                if !e.is_recoverable() {
                    last_error = Some(e.to_string());
                }
            }
        }
    }
    end(last_error);
}

/// A file opened at its first read: opening a named pipe blocks until a writer opens
/// it, which belongs on the reader thread.
struct LazyFile {
    path: PathBuf,
    file: Option<File>,
}

impl LazyFile {
    fn new(path: &Path) -> LazyFile {
        LazyFile {
            path: path.to_owned(),
            file: None,
        }
    }
}

impl Read for LazyFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(File::open(&self.path)?),
        };
        file.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const OFFICE_DAY: &[u8] = include_bytes!("../../pcaps/office-day.pcap");

    fn count(bytes: &[u8]) -> usize {
        let mut reader = CaptureReader::new("test", bytes).expect("capture");
        let mut n = 0;
        while let Some(Ok(_)) = reader.next_frame() {
            n += 1;
        }
        n
    }

    #[test]
    fn a_named_pipe_delivers_every_frame_in_order_then_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("capture.pcap");
        let path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path; mkfifo touches nothing else.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        let mut stream = PcapStream::open(&fifo).expect("opens at once");
        let writer = thread::spawn(move || {
            let mut pipe = std::fs::OpenOptions::new()
                .write(true)
                .open(&fifo)
                .expect("pipe");
            for chunk in OFFICE_DAY.chunks(1000) {
                pipe.write_all(chunk).expect("written");
            }
        });
        let mut times = Vec::new();
        while !stream.stats().ended || times.len() < count(OFFICE_DAY) {
            stream.poll(Duration::from_millis(50), &mut |f| times.push(f.time));
        }
        writer.join().expect("writer");
        assert_eq!(times.len(), count(OFFICE_DAY));
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        let stats = stream.stats();
        assert_eq!(stats.frames as usize, times.len());
        assert_eq!(stats.errors, 0);
        assert!(stats.end_error.is_none());
        assert_eq!(stream.poll(Duration::from_millis(10), &mut |_| {}), 0);
    }

    #[test]
    fn a_stream_cut_mid_record_ends_with_what_it_had() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("cut.pcap");
        let cut = &OFFICE_DAY[..OFFICE_DAY.len() / 2];
        std::fs::write(&file, cut).expect("written");
        let mut stream = PcapStream::open(&file).expect("opens");
        let mut n = 0;
        loop {
            let ended = stream.stats().ended;
            let got = stream.poll(Duration::from_millis(20), &mut |_| {});
            n += got;
            if ended && got == 0 {
                break;
            }
        }
        assert_eq!(n, count(cut));
        assert!(n > 0);
    }

    #[test]
    fn not_a_capture_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("junk");
        std::fs::write(&file, b"this is not a capture at all").expect("written");
        let mut stream = PcapStream::open(&file).expect("opens");
        while !stream.stats().ended {
            stream.poll(Duration::from_millis(20), &mut |_| {});
        }
        assert!(stream.stats().end_error.is_some());
    }
}
