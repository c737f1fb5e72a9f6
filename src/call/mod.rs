//! Calls: the record of each INVITE dialog and the rules that classify it.

pub mod classify;
pub mod correlate;
pub mod filter;
pub mod in_progress;
pub mod properties;
pub mod record;

pub use in_progress::{CallInProgress, Stage};
pub use record::{
    Alignment, CallRecord, Conversation, Direction, EndReason, MediaFacts, OperatorRef, Outcome,
    Party, RecordingFile, WhoHungUp,
};
