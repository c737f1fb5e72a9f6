//! The two ways frames reach the engine. A replay reads files and pushes each frame into
//! a [`FrameSink`] (the engine, the ingest around it, or the packet layer alone); the
//! live loop pulls frames from a [`FrameSource`] (AF_PACKET capture, a pcap stream).

use std::time::Duration;

use serde_json::Value;

use crate::base::Frame;
use crate::net::stats::Counters;

/// What a replay drives: the engine, or the packet layer alone.
pub trait FrameSink {
    /// A new file starts: its clock owes nothing to the previous file's.
    fn begin_file(&mut self) {}
    fn frame(&mut self, frame: &Frame<'_>);
    /// A file is read to its end: what it gave is made durable here.
    fn end_file(&mut self) {}
    /// End of all input.
    fn finish(&mut self);
    /// Packet counters since the last call.
    fn take_counters(&mut self) -> Counters;
}

/// A live feed of frames: the AF_PACKET capture in production, anything that yields
/// timestamped frames in tests.
pub trait FrameSource: Send {
    /// Waits up to `timeout` for frames and hands each to `on_frame`; returns how many.
    /// An error is fatal to the run (it ends, and systemd restarts it).
    fn poll(
        &mut self,
        timeout: Duration,
        on_frame: &mut dyn FnMut(&Frame<'_>),
    ) -> Result<usize, SourceError>;
    /// Counters for `/metrics` and `/status` (objects of numbers; arrays are not exported).
    fn stats(&self) -> Value;
    /// What is captured, for the log and `/status` ("lo, eth1").
    fn describe(&self) -> String;
}

impl FrameSource for crate::capture::live::LiveCapture {
    fn poll(
        &mut self,
        timeout: Duration,
        on_frame: &mut dyn FnMut(&Frame<'_>),
    ) -> Result<usize, SourceError> {
        Ok(crate::capture::live::LiveCapture::poll(
            self, timeout, on_frame,
        )?)
    }

    fn stats(&self) -> Value {
        serde_json::to_value(crate::capture::live::LiveCapture::stats(self)).unwrap_or_default()
    }

    fn describe(&self) -> String {
        let stats = crate::capture::live::LiveCapture::stats(self);
        stats
            .interfaces
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl FrameSource for crate::capture::stream::PcapStream {
    fn poll(
        &mut self,
        timeout: Duration,
        on_frame: &mut dyn FnMut(&Frame<'_>),
    ) -> Result<usize, SourceError> {
        Ok(crate::capture::stream::PcapStream::poll(
            self, timeout, on_frame,
        ))
    }

    fn stats(&self) -> Value {
        let stats = crate::capture::stream::PcapStream::stats(self);
        serde_json::to_value(stats).unwrap_or_default()
    }

    fn describe(&self) -> String {
        crate::capture::stream::PcapStream::describe(self)
    }
}

/// Why a frame source failed; fatal to the run.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Live(#[from] crate::capture::live::LiveError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
