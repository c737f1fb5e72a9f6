//! A call ringing or talking now, as the capture engine sees it (the console's Live page).

use serde::Serialize;

use super::record::{Direction, OperatorRef};

/// Where a call in progress is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// INVITE sent, no answer yet (ringing or still being routed).
    Ringing,
    /// Answered: talking (or on hold).
    Talking,
}

#[derive(Clone, Debug, Serialize)]
pub struct CallInProgress {
    /// The record id the call will be stored under.
    pub id: String,
    pub stage: Stage,
    pub direction: Direction,
    pub operator: OperatorRef,
    pub client_number: Option<String>,
    /// Caller and callee as the INVITE named them (user parts).
    pub from: String,
    pub to: String,
    pub invite_ns: u64,
    pub answer_ns: Option<u64>,
    /// From the INVITE (ringing) or the answer (talking) to the engine's clock, seconds.
    pub elapsed_secs: u64,
    pub codecs: Vec<String>,
    /// RTP packets received from each side so far.
    pub caller_packets: u64,
    pub callee_packets: u64,
    /// Lost over expected, both directions, so far, in %.
    pub loss_percent: Option<f64>,
}
