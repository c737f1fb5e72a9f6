//! A call's SIP messages as they crossed the wire: what the console's ladder draws and
//! its pcap download holds. Bounded per call, so a call that refreshes its session for
//! hours, or a peer that sends huge messages, cannot grow it without end.

use std::net::SocketAddr;

use super::Timestamp;

/// How a SIP message travelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    /// One SIP message cut out of a reassembled TCP stream.
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// Messages kept per call: a call with a session timer refreshes twice per interval
/// (4 messages), so 200 covers a 90-second timer for over an hour of talk.
pub const MAX_TRACE_MESSAGES: usize = 200;

/// Bytes of message text kept per call: a typical INVITE with SDP is about 1 KiB.
pub const MAX_TRACE_BYTES: usize = 256 * 1024;

/// One SIP message as captured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TracedMessage {
    pub time: Timestamp,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: Transport,
    /// The message from its start line to the end of its body.
    pub text: Box<[u8]>,
}

/// The SIP messages of one dialog, in capture order, up to the limits above; what did
/// not fit is counted in `cut`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SipTrace {
    pub messages: Vec<TracedMessage>,
    /// Text bytes held.
    pub bytes: usize,
    /// Messages left out for the limits.
    pub cut: u32,
}

impl SipTrace {
    /// Keeps `message`, or counts it as cut when it would pass a limit.
    pub fn push(&mut self, message: TracedMessage) {
        if self.messages.len() >= MAX_TRACE_MESSAGES
            || self.bytes + message.text.len() > MAX_TRACE_BYTES
        {
            self.cut = self.cut.saturating_add(1);
            return;
        }
        self.bytes += message.text.len();
        self.messages.push(message);
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.cut == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: usize) -> TracedMessage {
        TracedMessage {
            time: Timestamp::from_nanos(1),
            src: "10.0.0.1:5060".parse().unwrap(),
            dst: "10.0.0.2:5060".parse().unwrap(),
            transport: Transport::Udp,
            text: vec![b'x'; len].into(),
        }
    }

    #[test]
    fn a_trace_stops_at_its_message_count_and_counts_the_rest() {
        let mut trace = SipTrace::default();
        for _ in 0..MAX_TRACE_MESSAGES + 7 {
            trace.push(message(10));
        }
        assert_eq!(trace.messages.len(), MAX_TRACE_MESSAGES);
        assert_eq!(trace.cut, 7);
        assert_eq!(trace.bytes, MAX_TRACE_MESSAGES * 10);
    }

    #[test]
    fn a_trace_stops_at_its_byte_budget_but_takes_a_smaller_message_after() {
        let mut trace = SipTrace::default();
        trace.push(message(MAX_TRACE_BYTES - 100));
        trace.push(message(200));
        trace.push(message(100));
        assert_eq!(trace.messages.len(), 2);
        assert_eq!(trace.cut, 1);
        assert_eq!(trace.bytes, MAX_TRACE_BYTES);
    }
}
