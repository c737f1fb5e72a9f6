//! What the dialog, media and call layers all say of a call: who, why it ended, and a
//! transfer it went through.

use serde::{Deserialize, Serialize};

/// Which SIP party sent the BYE (before direction maps it to operator or client).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    Caller,
    Callee,
}

/// Why the dialog ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Bye,
    /// Not answered: CANCEL or a final non-2xx.
    NotAnswered,
    /// No final answer before the ring timeout.
    RingTimeout,
    /// No response at all to the INVITE, not even 100 Trying (a scanner, a flood, or
    /// traffic seen only one way).
    NoResponse,
    /// Answered, then no BYE before the session timer ran out.
    SessionExpired,
    /// Longer than the configured longest call.
    MaxDuration,
    /// No RTP and no SIP for the media timeout.
    MediaTimeout,
    /// The capture ended with the dialog still open.
    EndOfCapture,
    /// The dialog table was full and this was the stalest dialog.
    Evicted,
    /// calltap stopped (or crashed) during the call.
    Shutdown,
}

/// A transfer the call went through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// "blind" (REFER) or "attended" (REFER with Replaces, or INVITE with Replaces).
    pub kind: String,
    /// The user part (or whole URI) of the transfer target.
    pub target: String,
    /// Which side asked for the transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Party>,
    /// Whether a NOTIFY reported the transfer target answered.
    pub completed: bool,
}
