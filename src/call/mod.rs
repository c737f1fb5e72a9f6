//! Calls: the record of each INVITE dialog and the rules that classify it.

pub mod classify;
pub mod correlate;
pub mod filter;
pub mod properties;
pub mod record;

pub use record::{
    Alignment, CallRecord, Conversation, Direction, EndReason, MediaFacts, OperatorRef, Outcome,
    Party, RecordingFile, WhoHungUp,
};
