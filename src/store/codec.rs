//! How records and index entries are laid out as bytes.
//!
//! A call value is one format byte followed by the encoded record. The format byte lets a
//! later encoding coexist with this one (records are decoded by their own byte, so a
//! migration can be lazy); the store-wide schema version in `meta` says what the trees
//! mean. Today's format is JSON: readable with any sled dump, and measured fast enough
//! for the API's one-day window (see benches/store.rs and the module docs).

use crate::call::record::PropertyValue;
use crate::call::{CallRecord, Outcome};

use super::error::StoreError;

/// Format byte of a JSON-encoded `CallRecord` (a JSON text never starts with 0x01).
pub(crate) const FORMAT_JSON: u8 = 1;

/// Bit of the index value: the call is one `POST /calls` returns.
const EXPORTED: u8 = 1;

pub(crate) fn encode_record(record: &CallRecord) -> Result<Vec<u8>, StoreError> {
    check_record(record)?;
    let mut out = Vec::with_capacity(1024);
    out.push(FORMAT_JSON);
    serde_json::to_writer(&mut out, record).map_err(|e| StoreError::InvalidRecord {
        id: record.id.clone(),
        reason: e.to_string(),
    })?;
    Ok(out)
}

/// What would not read back. serde_json writes a NaN or an infinity as `null`, which
/// then fails to decode as a number: better refused at the door, where the bug that made
/// it is still close, than found later as a corrupt record.
fn check_record(record: &CallRecord) -> Result<(), StoreError> {
    let invalid = |reason: String| StoreError::InvalidRecord {
        id: record.id.clone(),
        reason,
    };
    if record.id.is_empty() {
        return Err(invalid("the id is empty".into()));
    }
    if !record.ring_seconds.is_finite() {
        return Err(invalid(format!(
            "ring_seconds is {}, not a number",
            record.ring_seconds
        )));
    }
    for (key, value) in &record.properties {
        if let PropertyValue::Number(n) = value {
            if !n.is_finite() {
                return Err(invalid(format!("property {key:?} is {n}, not a number")));
            }
        }
    }
    Ok(())
}

pub(crate) fn decode_record(key: &[u8], value: &[u8]) -> Result<CallRecord, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        tree: "calls",
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    };
    match value.split_first() {
        Some((&FORMAT_JSON, json)) => {
            let record: CallRecord =
                serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))?;
            if record.id.as_bytes() != key {
                return Err(corrupt(format!("the record inside has id {:?}", record.id)));
            }
            Ok(record)
        }
        Some((format, _)) => Err(corrupt(format!("unknown record format {format}"))),
        None => Err(corrupt("empty value".into())),
    }
}

/// `by_start` key: start time (Unix seconds, big-endian so byte order is time order)
/// followed by the id, so calls starting in the same second come out sorted by id.
pub(crate) fn index_key(start_time: u64, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + id.len());
    key.extend_from_slice(&start_time.to_be_bytes());
    key.extend_from_slice(id.as_bytes());
    key
}

/// `by_start` value: [flags, outcome]. Both are read without decoding the record, so a
/// window of exported calls skips the others for the price of an index entry, and the
/// counters can be rebuilt from the index alone.
pub(crate) fn index_value(record: &CallRecord) -> [u8; 2] {
    let flags = if record.exported { EXPORTED } else { 0 };
    [flags, outcome_code(record.outcome)]
}

/// What an index entry says: the id bytes, whether exported, and the outcome code.
pub(crate) struct IndexEntry<'a> {
    pub id: &'a [u8],
    pub exported: bool,
    pub outcome: u8,
}

pub(crate) fn parse_index<'a>(key: &'a [u8], value: &[u8]) -> Result<IndexEntry<'a>, StoreError> {
    match (key.len() > 8, value) {
        (true, [flags, outcome]) => Ok(IndexEntry {
            id: &key[8..],
            exported: flags & EXPORTED != 0,
            outcome: *outcome,
        }),
        _ => Err(StoreError::Corrupt {
            tree: "by_start",
            key: String::from_utf8_lossy(key).into_owned(),
            reason: format!(
                "index entry of {} key and {} value bytes",
                key.len(),
                value.len()
            ),
        }),
    }
}

/// The outcome's position in `Outcome::ALL`, as stored in the index.
pub(crate) fn outcome_code(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Answered => 0,
        Outcome::Cancelled => 1,
        Outcome::Missed => 2,
        Outcome::Busy => 3,
        Outcome::Rejected => 4,
        Outcome::Failed => 5,
    }
}

pub(crate) fn u64_value(tree: &'static str, key: &str, value: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(value)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt {
            tree,
            key: key.to_owned(),
            reason: format!("{} bytes where a u64 (8) was expected", value.len()),
        })
}
