//! How records are laid out as bytes.
//!
//! `calls` key: start time (Unix seconds, big-endian so byte order is time order)
//! followed by the id, so calls starting in the same second come out sorted by id.
//!
//! `calls` value: a 3-byte header, then the encoded record:
//! - format: how the rest is encoded. Records are decoded by their own format byte, so a
//!   later encoding can coexist with this one and a migration can be lazy; the store-wide
//!   schema version in `meta` says what the trees mean;
//! - flags: bit 0 set when `POST /calls` returns the call; bit 1 set when the record
//!   holds only part of the call ([`CallRecord::is_partial`]: finalised after a crash or
//!   at a stop), so the whole call may replace it. Records written before bit 1 existed
//!   read as whole;
//! - outcome: the position of the record's outcome in `Outcome::ALL`.
//!
//! The header is read without decoding the record, so a window of exported calls skips
//! the others for the price of a byte, and the counters can be rebuilt by a scan that
//! decodes nothing. Today's format is JSON, readable with any sled dump: decoding a
//! record takes about 4 us, under half of a one-day window's cost (benches/store.rs).
//! MessagePack with named fields measured 2.4 us against JSON's 3.6 us in a side test on
//! the same records; a positional binary format cannot carry the record's skipped
//! optional fields and untagged property values. A new format byte is the way in if the
//! API ever needs those 1-2 us per call.

use crate::call::record::PropertyValue;
use crate::call::{CallRecord, Outcome};

use super::error::StoreError;

/// Format byte of a JSON-encoded `CallRecord`.
pub(crate) const FORMAT_JSON: u8 = 1;
const HEADER: usize = 3;

/// Flags bit: the call is one `POST /calls` returns.
const EXPORTED: u8 = 1;
/// Flags bit: the record holds only part of the call.
const PARTIAL: u8 = 2;

pub(crate) fn call_key(start_time: u64, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + id.len());
    key.extend_from_slice(&start_time.to_be_bytes());
    key.extend_from_slice(id.as_bytes());
    key
}

/// The start time and id of a `calls` (or `recordings`) key.
pub(crate) fn split_key(tree: &'static str, key: &[u8]) -> Result<(u64, String), StoreError> {
    match key.split_first_chunk::<8>() {
        Some((start, id)) if !id.is_empty() => Ok((
            u64::from_be_bytes(*start),
            String::from_utf8_lossy(id).into_owned(),
        )),
        _ => Err(StoreError::Corrupt {
            tree,
            key: String::from_utf8_lossy(key).into_owned(),
            reason: format!("a key of {} bytes (start time and id expected)", key.len()),
        }),
    }
}

/// A `recordings` value: the recording's bytes (u64 BE), then its file name.
pub(crate) fn recording_value(bytes: u64, file: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + file.len());
    v.extend_from_slice(&bytes.to_be_bytes());
    v.extend_from_slice(file.as_bytes());
    v
}

pub(crate) fn parse_recording_value(id: &str, value: &[u8]) -> Result<(u64, String), StoreError> {
    match value.split_first_chunk::<8>() {
        Some((bytes, file)) => match std::str::from_utf8(file) {
            Ok(file) => Ok((u64::from_be_bytes(*bytes), file.to_owned())),
            Err(_) => Err(StoreError::Corrupt {
                tree: "recordings",
                key: id.to_owned(),
                reason: "the file name is not UTF-8".into(),
            }),
        },
        None => Err(StoreError::Corrupt {
            tree: "recordings",
            key: id.to_owned(),
            reason: format!("a value of {} bytes", value.len()),
        }),
    }
}

pub(crate) fn encode_record(record: &CallRecord) -> Result<Vec<u8>, StoreError> {
    check_record(record)?;
    let mut out = Vec::with_capacity(1024);
    let mut flags = if record.exported { EXPORTED } else { 0 };
    if record.is_partial() {
        flags |= PARTIAL;
    }
    out.extend_from_slice(&[FORMAT_JSON, flags, outcome_code(record.outcome)]);
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

/// A `calls` entry with its header read and its record not yet decoded.
pub(crate) struct Entry<'a> {
    key: &'a [u8],
    pub start_time: u64,
    pub exported: bool,
    pub partial: bool,
    pub outcome: u8,
    body: &'a [u8],
}

impl<'a> Entry<'a> {
    pub fn parse(key: &'a [u8], value: &'a [u8]) -> Result<Entry<'a>, StoreError> {
        let Some((start, _)) = key
            .split_first_chunk::<8>()
            .filter(|(_, id)| !id.is_empty())
        else {
            return Err(corrupt(
                key,
                format!("a key of {} bytes (start time and id expected)", key.len()),
            ));
        };
        let Some(([format, flags, outcome], body)) = value.split_first_chunk::<HEADER>() else {
            return Err(corrupt(key, format!("a value of {} bytes", value.len())));
        };
        if *format != FORMAT_JSON {
            return Err(corrupt(key, format!("unknown record format {format}")));
        }
        Ok(Entry {
            key,
            start_time: u64::from_be_bytes(*start),
            exported: flags & EXPORTED != 0,
            partial: flags & PARTIAL != 0,
            outcome: *outcome,
            body,
        })
    }

    pub fn id(&self) -> &'a [u8] {
        &self.key[8..]
    }

    pub fn decode(&self) -> Result<CallRecord, StoreError> {
        let record: CallRecord =
            serde_json::from_slice(self.body).map_err(|e| corrupt(self.key, e.to_string()))?;
        if record.id.as_bytes() != self.id() || record.start_time != self.start_time {
            return Err(corrupt(
                self.key,
                format!(
                    "the record inside is call {:?} starting at {}",
                    record.id, record.start_time
                ),
            ));
        }
        Ok(record)
    }
}

/// A corrupt `calls` entry, named by its call id, as the API and an administrator
/// know it.
fn corrupt(key: &[u8], reason: String) -> StoreError {
    let id = key.get(8..).filter(|id| !id.is_empty()).unwrap_or(key);
    StoreError::Corrupt {
        tree: "calls",
        key: String::from_utf8_lossy(id).into_owned(),
        reason,
    }
}

/// The outcome's position in `Outcome::ALL`, as stored in the header.
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
