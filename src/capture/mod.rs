//! Sources of timestamped frames: capture files, and live Linux interfaces.

pub mod file;
pub mod live;
pub mod stream;

pub use crate::base::{Frame, FrameFilter, LinkType, Timestamp};
