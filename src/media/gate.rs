//! The audio gate: one switch, shared between whatever watches the disk and the media
//! layer that writes recordings. Closed, no new recording starts and recordings in
//! progress stop where they are (see [`MediaTable`](super::MediaTable)); call records
//! are not affected.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Why a call answered while the gate is closed has no recording.
pub const GATE_CLOSED_REASON: &str = "disk below the free-space floor (min_free)";

/// A shared on/off switch for writing audio, open by default. Clones share the switch.
#[derive(Clone, Debug)]
pub struct AudioGate(Arc<AtomicBool>);

impl Default for AudioGate {
    fn default() -> Self {
        AudioGate(Arc::new(AtomicBool::new(true)))
    }
}

impl AudioGate {
    /// An open gate.
    pub fn new() -> Self {
        AudioGate::default()
    }

    /// Whether audio may be written. Relaxed: a reader seeing the change one check
    /// late costs at most one more second of audio (the media layer checks it once a
    /// second of capture time).
    pub fn is_open(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Opens or closes the gate; answers whether it was open before.
    pub fn set_open(&self, open: bool) -> bool {
        self.0.swap(open, Ordering::Relaxed)
    }
}
