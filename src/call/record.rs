//! The call record: what calltap stores for every INVITE dialog it saw, and what the
//! importer receives for the answered ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How the attempt ended. Only `Answered` calls are conversations the importer sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// 2xx to the initial INVITE.
    Answered,
    /// The caller gave up: CANCEL (and its 487).
    Cancelled,
    /// Nobody answered: 408/480, or no final answer before the ring timeout.
    Missed,
    /// 486 Busy Here / 600 Busy Everywhere.
    Busy,
    /// The callee or the network refused: 403, 603 Decline, 607, 608.
    Rejected,
    /// Anything else: 404, 488, 5xx, an INVITE that never got a final response.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Cancelled => "cancelled",
            Outcome::Missed => "missed",
            Outcome::Busy => "busy",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
        }
    }

    pub const ALL: [Outcome; 6] = [
        Outcome::Answered,
        Outcome::Cancelled,
        Outcome::Missed,
        Outcome::Busy,
        Outcome::Rejected,
        Outcome::Failed,
    ];
}

/// The call's direction from the PBX's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Incoming,
    Outgoing,
    /// Operator to operator: kept, exported only when configured (as outgoing).
    Internal,
}

impl Direction {
    /// The contract's value: internal calls are exported from the caller's side.
    pub fn contract(self) -> &'static str {
        match self {
            Direction::Incoming => "incoming",
            Direction::Outgoing | Direction::Internal => "outgoing",
        }
    }
}

/// Who ended the call, in the contract's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhoHungUp {
    Operator,
    Client,
    /// No BYE: a timeout, the end of the capture, or calltap stopping.
    System,
}

impl WhoHungUp {
    pub fn as_str(self) -> &'static str {
        match self {
            WhoHungUp::Operator => "operator",
            WhoHungUp::Client => "client",
            WhoHungUp::System => "system",
        }
    }
}

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

/// The operator as the contract names them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorRef {
    pub id: String,
    pub name: String,
    /// Extension (or phone) the operator used on this call.
    pub number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    /// Configured (true) or discovered from traffic (false).
    pub configured: bool,
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

/// The SIP facts behind the record, for operations and debugging.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipFacts {
    pub call_id: String,
    pub from_tag: String,
    #[serde(default)]
    pub to_tag: String,
    pub from_uri: String,
    pub to_uri: String,
    pub request_uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_asserted_identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diversion: Option<String>,
    /// Final response code to the initial INVITE (0 if none was seen).
    pub final_status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// "udp" or "tcp".
    pub transport: String,
    /// Where the initial INVITE came from and went to (ip:port).
    pub invite_src: String,
    pub invite_dst: String,
    /// Headers of the initial INVITE that properties may read (X-..., and a few
    /// standard ones), bounded in count and length.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
}

/// A primitive property value, as the contract allows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PropertyValue {
    Bool(bool),
    Number(f64),
    Text(String),
}

/// One INVITE dialog, finished.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Stable: derived from the Call-ID and the dialog's tags.
    pub id: String,
    pub outcome: Outcome,
    pub direction: Direction,
    /// Whether `POST /calls` returns it (answered, and not internal unless configured).
    pub exported: bool,
    /// Capture times, nanoseconds since the Unix epoch.
    pub invite_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_ns: Option<u64>,
    pub end_ns: u64,
    /// Contract times: Unix seconds. `start_time` is the answer time (the INVITE time
    /// for calls never answered); `duration = end_time - start_time`.
    pub start_time: u64,
    pub end_time: u64,
    pub duration: u64,
    /// From the INVITE to the answer (or to the end, when never answered).
    pub ring_seconds: f64,
    pub operator: OperatorRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    pub who_hung_up: WhoHungUp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hung_up_by: Option<Party>,
    pub end_reason: EndReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<Transfer>,
    /// Times the call was put on hold (re-INVITE/UPDATE with sendonly, inactive or
    /// a 0.0.0.0 connection address).
    #[serde(default)]
    pub holds: u32,
    pub sip: SipFacts,
    /// Values of the configured properties (keys are schema keys).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, PropertyValue>,
}

impl CallRecord {
    /// The contract's call object (CONTRACT.md, `POST /calls`), field for field.
    pub fn to_contract(&self) -> serde_json::Value {
        let mut call = serde_json::Map::new();
        call.insert("id".into(), self.id.clone().into());
        if let Some(n) = &self.client_number {
            call.insert("clientNumber".into(), n.clone().into());
        }
        if let Some(n) = &self.client_name {
            call.insert("clientName".into(), n.clone().into());
        }
        call.insert("direction".into(), self.direction.contract().into());
        call.insert("duration".into(), self.duration.into());
        call.insert("startTime".into(), self.start_time.into());
        call.insert("endTime".into(), self.end_time.into());
        call.insert("operatorId".into(), self.operator.id.clone().into());
        call.insert("operatorName".into(), self.operator.name.clone().into());
        call.insert("operatorNumber".into(), self.operator.number.clone().into());
        call.insert("whoHungUp".into(), self.who_hung_up.as_str().into());
        if !self.properties.is_empty() {
            let props = self
                .properties
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        PropertyValue::Bool(b) => serde_json::Value::Bool(*b),
                        // Whole numbers go out as integers (72, not 72.0).
                        PropertyValue::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => {
                            serde_json::Value::from(*n as i64)
                        }
                        PropertyValue::Number(n) => serde_json::Number::from_f64(*n)
                            .map_or(serde_json::Value::Null, serde_json::Value::Number),
                        PropertyValue::Text(s) => serde_json::Value::String(s.clone()),
                    };
                    (k.clone(), v)
                })
                .filter(|(_, v)| !v.is_null())
                .collect();
            call.insert("properties".into(), serde_json::Value::Object(props));
        }
        serde_json::Value::Object(call)
    }
}
