//! The ground floor: the words every layer shares (capture time, frames and their link
//! types, the parties of a call, why a dialog ended, a transfer, a call's SIP messages).
//! It imports nothing of calltap, so `capture`, `net`, `dialog`, `media` and `call` can all stand on it
//! without leaning on each other (docs/architecture.md).

mod call;
mod frame;
mod time;
mod trace;

pub use call::{EndReason, Party, Transfer};
pub use frame::{Frame, FrameFilter, LinkType};
pub use time::Timestamp;
pub use trace::{SipTrace, TracedMessage, Transport, MAX_TRACE_BYTES, MAX_TRACE_MESSAGES};
