//! The call record: what calltap stores for every INVITE dialog it saw, and what the
//! importer receives for the answered ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::base::{EndReason, Party, Transfer};

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
    /// The party whose voice is the operator's, left in the recording: the callee of an
    /// incoming call, the caller of an outgoing or internal one.
    pub fn operator_party(self) -> Party {
        match self {
            Direction::Incoming => Party::Callee,
            Direction::Outgoing | Direction::Internal => Party::Caller,
        }
    }

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

/// The recording file of a call, inside the store's recordings folder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingFile {
    /// File name within the recordings folder (never a path: ids cannot escape it).
    pub file: String,
    pub bytes: u64,
    pub sample_rate: u32,
    pub duration_ms: u64,
}

impl RecordingFile {
    /// The file's format, by its name: what the recording is served as.
    pub fn extension(&self) -> &'static str {
        ["flac", "opus", "mp3"]
            .into_iter()
            .find(|ext| {
                self.file
                    .strip_suffix(ext)
                    .is_some_and(|stem| stem.ends_with('.'))
            })
            .unwrap_or("wav")
    }

    pub fn mime_type(&self) -> &'static str {
        match self.extension() {
            "flac" => "audio/flac",
            // RFC 7845 9: Ogg Opus files are audio/ogg.
            "opus" => "audio/ogg",
            "mp3" => "audio/mpeg",
            _ => "audio/wav",
        }
    }

    /// The name a download of call `id`'s recording is offered under (the API's link,
    /// Content-Disposition, webhook events).
    pub fn download_name(&self, id: &str) -> String {
        format!("call_recording_{id}.{}", self.extension())
    }
}

/// What the media told about the call (filled by the recordings layer).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MediaFacts {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codecs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingFile>,
    /// Why there is no recording: encrypted, unsupported codec, no RTP, disabled, the
    /// free-space floor, deleted by retention; or, beside a recording, why it stops early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_recording_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<f64>,
    /// Estimated MOS (E-model, ITU-T G.107 simplified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mos: Option<f64>,
    /// RFC 4733 digits, in order.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dtmf_digits: String,
    /// RTP packets received from the caller (distinct, duplicates not counted).
    #[serde(default)]
    pub caller_packets: u64,
    /// RTP packets received from the callee.
    #[serde(default)]
    pub callee_packets: u64,
    /// On a recording taken from another leg of the conversation: how its file must be
    /// rewritten to fit this record (set by the correlator, applied before the record is
    /// stored, never stored itself).
    #[serde(skip)]
    pub align: Option<Alignment>,
}

/// How a recording taken from another leg is made this record's: the other leg was
/// recorded from its own answer, with its own idea of who the operator is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Alignment {
    /// Nanoseconds from the file's start to the record's answer: cut from the head when
    /// positive, silence put before it when negative.
    pub head_ns: i64,
    /// The record's talk time: what is kept after the head (the other leg may go on,
    /// to another operator after a transfer).
    pub keep_ns: Option<u64>,
    /// The file's channels are the wrong way round (client left, operator right).
    pub swap: bool,
    /// A later record of the conversation takes the same file: it stays.
    pub source_shared: bool,
}

impl MediaFacts {
    /// Media flowed one way only: one direction received packets, the other none (a
    /// NAT or firewall problem on that leg, or a PBX relaying only one side). Records
    /// from before the counts were kept (both zero) are not one-way.
    pub fn is_one_way(&self) -> bool {
        (self.caller_packets == 0) != (self.callee_packets == 0)
    }

    /// Both directions received packets.
    pub fn is_two_way(&self) -> bool {
        self.caller_packets > 0 && self.callee_packets > 0
    }
}

/// How a record relates to the other legs of its conversation, when calltap saw the
/// conversation as several dialogs (a B2BUA PBX: trunk <-> PBX and PBX <-> phone, see
/// `call::correlate`). Empty for a dialog that stands alone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// Shared by every record of one conversation: the operator segments of a
    /// transferred call and the legs merged into them. Stable across replays (derived
    /// from the record id of the leg that entered the PBX first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Call-IDs of every leg of the conversation (on the records that carry it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub legs: Vec<String>,
    /// On a leg merged into a conversation record: that record's id. Such a leg is kept
    /// for operations and never exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
    /// This leg's role beside the PBX: "trunk", "phone" or "direct".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// What paired the legs: "header" (the configured correlation header) or
    /// "heuristics" (PBX addresses, time overlap, numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlated_by: Option<String>,
    /// The number the client dialled, from the trunk leg (ready for a property).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub did: Option<String>,
    /// The trunk's address, from the trunk leg (ready for a property).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trunk: Option<String>,
    /// Operator segment of a transferred conversation: 0 for the first operator.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub segment: u32,
    /// The operator of this segment left it by transferring the client.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub transferred: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Conversation {
    pub fn is_empty(&self) -> bool {
        *self == Conversation::default()
    }
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
    #[serde(default)]
    pub media: MediaFacts,
    /// Values of the configured properties (keys are schema keys).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, PropertyValue>,
    /// The other legs of this conversation (B2BUA correlation); empty when alone.
    #[serde(default, skip_serializing_if = "Conversation::is_empty")]
    pub conversation: Conversation,
    /// Finalised after a crash from what reached the disk (`ingest::recover_interrupted`),
    /// not from the dialog's end: a later replay of the same traffic replaces it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recovered: bool,
}

impl CallRecord {
    /// The record holds only part of the call: calltap stopped or crashed while it was
    /// up. The same dialog seen whole (a replay of the same traffic) replaces it; a whole
    /// record is never replaced.
    pub fn is_partial(&self) -> bool {
        self.recovered || self.end_reason == EndReason::Shutdown
    }

    /// The contract's call object (CONTRACT.md, `POST /calls`), as a borrowed view that
    /// serialises straight from the record: about 1 µs a call, where building a
    /// `serde_json::Value` tree first cost 5-7 µs (benches/store.rs).
    pub fn contract(&self) -> ContractCall<'_> {
        self.contract_with(&self.properties)
    }

    /// [`contract`](Self::contract) with other property values (computed for the
    /// configuration in force, where the stored ones may be stale or absent).
    pub fn contract_with<'a>(
        &'a self,
        properties: &'a BTreeMap<String, PropertyValue>,
    ) -> ContractCall<'a> {
        ContractCall {
            id: &self.id,
            client_number: self.client_number.as_deref(),
            client_name: self.client_name.as_deref(),
            direction: self.direction.contract(),
            duration: self.duration,
            start_time: self.start_time,
            end_time: self.end_time,
            operator_id: &self.operator.id,
            operator_name: &self.operator.name,
            operator_number: &self.operator.number,
            who_hung_up: self.who_hung_up.as_str(),
            properties: ContractProperties(properties),
        }
    }

    /// The contract's call object as a JSON value (tests, `calltap calls --json`).
    pub fn to_contract(&self) -> serde_json::Value {
        serde_json::to_value(self.contract()).unwrap_or(serde_json::Value::Null)
    }
}

/// The contract's field names, exactly; optional fields are left out when unknown.
#[derive(Serialize)]
pub struct ContractCall<'a> {
    id: &'a str,
    #[serde(rename = "clientNumber", skip_serializing_if = "Option::is_none")]
    client_number: Option<&'a str>,
    #[serde(rename = "clientName", skip_serializing_if = "Option::is_none")]
    client_name: Option<&'a str>,
    direction: &'static str,
    duration: u64,
    #[serde(rename = "startTime")]
    start_time: u64,
    #[serde(rename = "endTime")]
    end_time: u64,
    #[serde(rename = "operatorId")]
    operator_id: &'a str,
    #[serde(rename = "operatorName")]
    operator_name: &'a str,
    #[serde(rename = "operatorNumber")]
    operator_number: &'a str,
    #[serde(rename = "whoHungUp")]
    who_hung_up: &'static str,
    #[serde(skip_serializing_if = "ContractProperties::is_empty")]
    properties: ContractProperties<'a>,
}

/// Property values as the contract wants them: whole numbers as integers (72, not
/// 72.0); a number JSON cannot carry (NaN, infinity) is left out, never sent as null.
pub struct ContractProperties<'a>(&'a BTreeMap<String, PropertyValue>);

impl ContractProperties<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for ContractProperties<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in self.0 {
            match value {
                PropertyValue::Bool(b) => map.serialize_entry(key, b)?,
                PropertyValue::Text(t) => map.serialize_entry(key, t)?,
                PropertyValue::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => {
                    map.serialize_entry(key, &(*n as i64))?
                }
                PropertyValue::Number(n) if n.is_finite() => map.serialize_entry(key, n)?,
                PropertyValue::Number(_) => {}
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> CallRecord {
        CallRecord {
            id: "c-0123456789abcdef01234567".into(),
            outcome: Outcome::Answered,
            direction: Direction::Incoming,
            exported: true,
            invite_ns: 1_709_586_000_000_000_000 - 7_000_000_000,
            answer_ns: Some(1_709_586_000_400_000_000),
            end_ns: 1_709_586_185_600_000_000,
            start_time: 1_709_586_000,
            end_time: 1_709_586_185,
            duration: 185,
            ring_seconds: 7.4,
            operator: OperatorRef {
                id: "101".into(),
                name: "John Carter".into(),
                number: "7545".into(),
                department: Some("Sales".into()),
                configured: true,
            },
            client_number: Some("+380501234567".into()),
            client_name: None,
            who_hung_up: WhoHungUp::Client,
            hung_up_by: Some(Party::Caller),
            end_reason: EndReason::Bye,
            transfer: None,
            holds: 0,
            sip: SipFacts::default(),
            media: MediaFacts::default(),
            properties: BTreeMap::from([
                ("Department".into(), PropertyValue::Text("support".into())),
                ("Issue resolved".into(), PropertyValue::Bool(true)),
                ("Quality score".into(), PropertyValue::Number(72.0)),
                ("MOS".into(), PropertyValue::Number(4.1)),
                ("Broken".into(), PropertyValue::Number(f64::NAN)),
            ]),
            conversation: Conversation::default(),
            recovered: false,
        }
    }

    #[test]
    fn the_contract_object_has_the_contract_names_and_types() {
        let json = record().to_contract();
        assert_eq!(
            json,
            serde_json::json!({
                "id": "c-0123456789abcdef01234567",
                "clientNumber": "+380501234567",
                "direction": "incoming",
                "duration": 185,
                "startTime": 1_709_586_000u64,
                "endTime": 1_709_586_185u64,
                "operatorId": "101",
                "operatorName": "John Carter",
                "operatorNumber": "7545",
                "whoHungUp": "client",
                "properties": {
                    "Department": "support",
                    "Issue resolved": true,
                    "Quality score": 72,
                    "MOS": 4.1
                }
            })
        );
    }

    #[test]
    fn internal_calls_go_out_as_outgoing_and_empty_properties_are_left_out() {
        let mut r = record();
        r.direction = Direction::Internal;
        r.properties.clear();
        let json = r.to_contract();
        assert_eq!(json["direction"], "outgoing");
        assert!(json.get("properties").is_none());
        assert!(json.get("clientName").is_none());
    }
}
