//! `POST /calls`: the request (checked field by field, so every mistake gets a message
//! naming the field), the filters, and the answer streamed as the store is read.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::{ApiError, AppState, Live};
use crate::call::properties;
use crate::call::record::{CallRecord, PropertyValue};
use crate::config::PropertyType;
use crate::store::{Store, StoreError};

/// Bytes of JSON gathered before a chunk goes to the client: large enough that the
/// per-chunk cost (a channel send, a hyper frame) is noise, small enough that the first
/// calls leave while the store is still being read.
const CHUNK_BYTES: usize = 64 * 1024;

/// Chunks buffered between the store reader and the socket: the reader runs ahead of a
/// slow client by at most this many chunks (256 KiB), then waits.
const CHUNKS_IN_FLIGHT: usize = 4;

const DAY_SECS: u64 = 86_400;

/// A checked `POST /calls` request.
#[derive(Debug)]
pub(crate) struct CallsQuery {
    pub(crate) start: u64,
    pub(crate) stop: u64,
    /// The contract's direction ("incoming" / "outgoing").
    pub(crate) direction: Option<&'static str>,
    pub(crate) operators: Option<HashSet<String>>,
    pub(crate) filters: Vec<(String, Filter)>,
}

/// One `propertyFilters` entry.
#[derive(Debug, PartialEq)]
pub(crate) enum Filter {
    /// `{"Client city": "Kyiv"}`
    Exact(Scalar),
    /// `{"Department": ["sales", "support"]}`; an empty list sets no condition.
    OneOf(Vec<Scalar>),
    /// `{"mode": "all"|"any", "conditions": [...]}`; no conditions, no constraint.
    Numeric {
        any: bool,
        conditions: Vec<(Op, f64)>,
    },
}

#[derive(Debug, PartialEq)]
pub(crate) enum Scalar {
    Text(String),
    Number(f64),
    Bool(bool),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            _ => return None,
        })
    }

    fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Op::Eq => value == bound,
            Op::Ne => value != bound,
            Op::Gt => value > bound,
            Op::Gte => value >= bound,
            Op::Lt => value < bound,
            Op::Lte => value <= bound,
        }
    }
}

impl Scalar {
    fn matches(&self, value: &PropertyValue) -> bool {
        match (self, value) {
            (Scalar::Text(a), PropertyValue::Text(b)) => a == b,
            (Scalar::Number(a), PropertyValue::Number(b)) => a == b,
            (Scalar::Bool(a), PropertyValue::Bool(b)) => a == b,
            _ => false,
        }
    }

    fn from_json(value: &Value) -> Option<Scalar> {
        match value {
            Value::String(s) => Some(Scalar::Text(s.clone())),
            Value::Number(n) => n.as_f64().map(Scalar::Number),
            Value::Bool(b) => Some(Scalar::Bool(*b)),
            _ => None,
        }
    }
}

impl Filter {
    fn matches(&self, value: Option<&PropertyValue>) -> bool {
        match self {
            Filter::Exact(want) => value.is_some_and(|v| want.matches(v)),
            Filter::OneOf(list) => {
                list.is_empty() || value.is_some_and(|v| list.iter().any(|w| w.matches(v)))
            }
            Filter::Numeric { conditions, .. } if conditions.is_empty() => true,
            Filter::Numeric { any, conditions } => {
                let Some(PropertyValue::Number(n)) = value else {
                    return false;
                };
                let holds = |&(op, bound): &(Op, f64)| op.holds(*n, bound);
                if *any {
                    conditions.iter().any(holds)
                } else {
                    conditions.iter().all(holds)
                }
            }
        }
    }
}

impl CallsQuery {
    /// Checks a request body against the contract and the configuration in force.
    pub(crate) fn parse(body: &[u8], live: &Live) -> Result<CallsQuery, ApiError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
        })?;
        let Value::Object(body) = value else {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object with startTime and stopTime",
            ));
        };
        let start = time_field(&body, "startTime")?;
        let stop = time_field(&body, "stopTime")?;
        if stop < start {
            return Err(ApiError::bad_request(format!(
                "stopTime ({stop}) is before startTime ({start})"
            )));
        }
        let max_days = u64::from(live.api.max_window_days);
        if stop - start > max_days * DAY_SECS {
            return Err(ApiError::bad_request(format!(
                "the window from startTime to stopTime is {:.1} days, wider than the {max_days} days \
                 this calltap allows in one request: ask for shorter windows",
                (stop - start) as f64 / DAY_SECS as f64
            )));
        }
        let direction = match body.get("direction") {
            None | Some(Value::Null) => None,
            Some(Value::String(d)) if d == "incoming" => Some("incoming"),
            Some(Value::String(d)) if d == "outgoing" => Some("outgoing"),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "direction must be \"incoming\" or \"outgoing\", not {other}"
                )))
            }
        };
        let operators = match body.get("operators") {
            None | Some(Value::Null) => None,
            Some(Value::Array(list)) if list.is_empty() => None,
            Some(Value::Array(list)) => Some(
                list.iter()
                    .map(|v| match v {
                        Value::String(s) => Ok(s.clone()),
                        // An id written as a number ([101]) means the same operator.
                        Value::Number(n) => Ok(n.to_string()),
                        other => Err(ApiError::bad_request(format!(
                            "operators must be a list of operator ids (strings), and holds {other}"
                        ))),
                    })
                    .collect::<Result<HashSet<_>, _>>()?,
            ),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "operators must be a list of operator ids, not {other}"
                )))
            }
        };
        let filters = match body.get("propertyFilters") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(filters)) => filters
                .iter()
                .map(|(key, value)| parse_filter(key, value, live).map(|f| (key.clone(), f)))
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "propertyFilters must be an object of property keys, not {other}"
                )))
            }
        };
        Ok(CallsQuery {
            start,
            stop,
            direction,
            operators,
            filters,
        })
    }

    /// The filters that need no properties (cheap, so they run first).
    fn selects(&self, record: &CallRecord) -> bool {
        self.direction
            .is_none_or(|d| record.direction.contract() == d)
            && self
                .operators
                .as_ref()
                .is_none_or(|ops| ops.contains(&record.operator.id))
    }

    fn properties_match(&self, values: &BTreeMap<String, PropertyValue>) -> bool {
        self.filters
            .iter()
            .all(|(key, filter)| filter.matches(values.get(key)))
    }
}

/// The latest `startTime` / `stopTime` accepted: 10^15 s, far past any call, and far
/// enough from `u64::MAX` that window arithmetic cannot overflow. /openapi.json states
/// the same bounds.
pub(crate) const MAX_TIME: u64 = 1_000_000_000_000_000;

/// `startTime` / `stopTime`: a required number of Unix seconds from 0 to [`MAX_TIME`]
/// (no call starts before 1970, so a negative time is a mistake worth a 400). A fraction
/// is rounded up on both ends, since calls start on whole seconds: `start <= t` for a
/// whole `t` is `ceil(start) <= t`, and `t < stop` is `t < ceil(stop)`.
fn time_field(body: &Map<String, Value>, name: &str) -> Result<u64, ApiError> {
    let value = body.get(name).ok_or_else(|| {
        ApiError::bad_request(format!("{name} is required (a number of Unix seconds)"))
    })?;
    let Value::Number(n) = value else {
        return Err(ApiError::bad_request(format!(
            "{name} must be a number of Unix seconds, not {value}"
        )));
    };
    let seconds = match (n.as_u64(), n.as_f64()) {
        (Some(n), _) => Some(n),
        (None, Some(f)) if (0.0..=MAX_TIME as f64).contains(&f) => Some(f.ceil() as u64),
        _ => None,
    };
    seconds.filter(|&s| s <= MAX_TIME).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{name} must be a non-negative number of Unix seconds up to {MAX_TIME}, not {n}"
        ))
    })
}

fn parse_filter(key: &str, value: &Value, live: &Live) -> Result<Filter, ApiError> {
    let property = live.properties.iter().find(|p| p.key == key).ok_or_else(|| {
        let known: Vec<&str> = live.properties.iter().map(|p| p.key.as_str()).collect();
        ApiError::bad_request(if known.is_empty() {
            format!("propertyFilters: {key:?} is not a property (none are configured)")
        } else {
            format!(
                "propertyFilters: {key:?} is not a property; the properties are {} (see /properties/schema)",
                known.join(", ")
            )
        })
    })?;
    match value {
        Value::Array(list) => list
            .iter()
            .map(|v| {
                Scalar::from_json(v).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "propertyFilters.{key}: a list holds strings, numbers or booleans, not {v}"
                    ))
                })
            })
            .collect::<Result<_, _>>()
            .map(Filter::OneOf),
        Value::Object(object) => {
            if property.kind != PropertyType::Number {
                return Err(ApiError::bad_request(format!(
                    "propertyFilters.{key}: numeric conditions need a number property, and {key:?} is {}",
                    property.kind
                )));
            }
            parse_conditions(key, object)
        }
        other => Scalar::from_json(other).map(Filter::Exact).ok_or_else(|| {
            ApiError::bad_request(format!(
                "propertyFilters.{key}: expected a value, a list of values or \
                 {{\"mode\", \"conditions\"}}, not {other}"
            ))
        }),
    }
}

fn parse_conditions(key: &str, object: &Map<String, Value>) -> Result<Filter, ApiError> {
    let bad = |m: String| ApiError::bad_request(format!("propertyFilters.{key}: {m}"));
    if let Some(unknown) = object.keys().find(|k| *k != "mode" && *k != "conditions") {
        return Err(bad(format!(
            "unknown field {unknown:?} (a condition object has \"mode\" and \"conditions\")"
        )));
    }
    let any = match object.get("mode") {
        None | Some(Value::Null) => false,
        Some(Value::String(m)) if m == "all" => false,
        Some(Value::String(m)) if m == "any" => true,
        Some(other) => return Err(bad(format!("mode must be \"all\" or \"any\", not {other}"))),
    };
    let Some(Value::Array(list)) = object.get("conditions") else {
        return Err(bad(
            "conditions must be a list of {\"operator\", \"value\"} objects".into(),
        ));
    };
    let conditions = list
        .iter()
        .map(|c| {
            let op = match c.get("operator") {
                Some(Value::String(s)) => Op::parse(s).ok_or_else(|| {
                    bad(format!(
                        "unknown operator {s:?}: use eq, ne, gt, gte, lt or lte"
                    ))
                })?,
                _ => {
                    return Err(bad(format!(
                        "each condition needs \"operator\" (eq, ne, gt, gte, lt, lte): {c}"
                    )))
                }
            };
            let value = c
                .get("value")
                .and_then(Value::as_f64)
                .ok_or_else(|| bad(format!("each condition needs a number \"value\": {c}")))?;
            Ok((op, value))
        })
        .collect::<Result<_, _>>()?;
    Ok(Filter::Numeric { any, conditions })
}

/// The handler. The body is read only after the key was checked (the auth layer runs
/// first) and only up to `[api] max_body_bytes`.
pub(crate) async fn calls(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                limit: state.live().api.max_body_bytes.bytes(),
            }
        } else if let Some(timed_out) = super::server::body_timed_out(&rejection) {
            ApiError::RequestTimeout {
                secs: timed_out.0.as_secs(),
            }
        } else {
            ApiError::bad_request(format!(
                "cannot read the request body: {}",
                rejection.body_text()
            ))
        }
    })?;
    let live = state.live();
    let query = CallsQuery::parse(&body, &live)?;

    let (tx, mut rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let store = std::sync::Arc::clone(state.store());
    tokio::task::spawn_blocking(move || write_calls(&store, &live, &query, &tx));

    // The first chunk decides the status: a store that fails at once gets a proper 500
    // in the error shape. A failure after the first chunk can only cut the body short,
    // which a client sees as an incomplete response, never as fewer calls.
    let first = match rx.recv().await {
        Some(Ok(chunk)) => chunk,
        Some(Err(e)) => return Err(ApiError::Store(e)),
        None => {
            return Err(ApiError::Internal(
                "the store reader stopped before answering".into(),
            ))
        }
    };
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Some(Ok(chunk)) => Some((Ok::<_, std::io::Error>(chunk), rx)),
            Some(Err(e)) => {
                tracing::error!(error = %e, "store error while streaming calls; the answer is cut short");
                Some((Err(std::io::Error::other(e.to_string())), rx))
            }
            None => None,
        }
    });
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(first)]);
    use futures_util::StreamExt as _;
    let body = Body::from_stream(body.chain(rest));
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// Reads the window and writes `{"calls":[...]}` in chunks to `tx`. Runs on a blocking
/// thread. Stops when the client goes away (the channel closes).
///
/// A window longer than one slice is read by several threads, one slice (an hour of
/// start times) at a time, and the slices are sent in order: a one-day window of 10,000
/// calls is ~9 µs a call on one thread (decode ~4 µs, properties, JSON), so ~100 ms;
/// two threads bring it well under (benches/api.rs). Calls are kept in start-time
/// order, so slices concatenate into the same order one scan gives.
pub(crate) fn write_calls(
    store: &Store,
    live: &Live,
    query: &CallsQuery,
    tx: &mpsc::Sender<Result<Bytes, StoreError>>,
) {
    let slices = (query.stop - query.start).div_ceil(SLICE_SECS).max(1);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_WORKERS)
        .min(usize::try_from(slices).unwrap_or(usize::MAX));
    let mut out = Emitter::new(tx);
    if workers <= 1 {
        let mut buf = Vec::with_capacity(CHUNK_BYTES);
        for i in 0..slices {
            let (start, stop) = query.slice(i);
            if let Err(e) = write_slice(store, live, query, start, stop, &mut buf) {
                out.fail(e);
                return;
            }
            if buf.len() >= CHUNK_BYTES && !out.push(std::mem::take(&mut buf)) {
                return;
            }
        }
        if out.push(buf) {
            out.finish();
        }
        return;
    }
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Each worker may be one slice ahead of the writer: memory stays at a few slices
        // however slow the client, since the writer waits on the client.
        let (done_tx, done_rx) = std_mpsc::sync_channel(workers);
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let (next, stop) = (&next, &stop);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= slices || stop.load(Ordering::Relaxed) {
                    return;
                }
                let (start, end) = query.slice(i);
                let mut buf = Vec::new();
                let result = write_slice(store, live, query, start, end, &mut buf).map(|()| buf);
                if done_tx.send((i, result)).is_err() {
                    return;
                }
            });
        }
        drop(done_tx);
        let mut pending = BTreeMap::new();
        let mut want = 0;
        for (i, result) in done_rx {
            pending.insert(i, result);
            while let Some(result) = pending.remove(&want) {
                want += 1;
                let ok = match result {
                    Ok(bytes) => out.push(bytes),
                    Err(e) => {
                        out.fail(e);
                        false
                    }
                };
                if !ok {
                    // Dropping the receiver (end of this closure) stops the workers.
                    stop.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
        out.finish();
    });
}

/// Seconds of start times one worker reads at a time: an hour is ~400 calls at 10,000 a
/// day, large enough that starting a range scan is noise, small enough to share a day
/// evenly between threads and to keep the slices waiting for the writer small.
const SLICE_SECS: u64 = 3600;

/// Threads reading one window. More than the cores only adds switching; 4 bounds what
/// one request can take from the capture engine on a bigger machine.
const MAX_WORKERS: usize = 4;

impl CallsQuery {
    fn slice(&self, i: u64) -> (u64, u64) {
        let start = self.start + i * SLICE_SECS;
        (start, (start + SLICE_SECS).min(self.stop))
    }
}

/// Appends `,{call}` for every selected call starting in `[start, stop)`.
fn write_slice(
    store: &Store,
    live: &Live,
    query: &CallsQuery,
    start: u64,
    stop: u64,
    buf: &mut Vec<u8>,
) -> Result<(), StoreError> {
    for item in store.calls_between(start, stop) {
        let mut record = match item {
            Ok(record) => record,
            Err(e @ StoreError::Db { .. }) => return Err(e),
            Err(e) => {
                // One unreadable record must not hide the others; the store counts it.
                tracing::warn!(error = %e, "skipping a call that does not decode");
                continue;
            }
        };
        if !query.selects(&record) {
            continue;
        }
        record.properties = properties::compute(&record, &live.config);
        if !query.properties_match(&record.properties) {
            continue;
        }
        let mark = buf.len();
        buf.push(b',');
        if let Err(e) = serde_json::to_writer(&mut *buf, &record.contract()) {
            buf.truncate(mark);
            tracing::error!(id = %record.id, error = %e, "cannot serialise a call; skipped");
        }
    }
    Ok(())
}

/// Frames slices of `,{call}...` into `{"calls":[...]}` chunks on the response channel.
struct Emitter<'a> {
    tx: &'a mpsc::Sender<Result<Bytes, StoreError>>,
    buf: Vec<u8>,
    empty: bool,
}

impl<'a> Emitter<'a> {
    fn new(tx: &'a mpsc::Sender<Result<Bytes, StoreError>>) -> Self {
        let mut buf = Vec::with_capacity(CHUNK_BYTES + 4096);
        buf.extend_from_slice(b"{\"calls\":[");
        Emitter {
            tx,
            buf,
            empty: true,
        }
    }

    /// Adds a slice; false when the client went away.
    fn push(&mut self, slice: Vec<u8>) -> bool {
        let slice = match (self.empty, slice.split_first()) {
            (_, None) => return true,
            (true, Some((_comma, rest))) => rest,
            (false, Some(_)) => &slice[..],
        };
        self.empty = false;
        self.buf.extend_from_slice(slice);
        if self.buf.len() < CHUNK_BYTES {
            return true;
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES + 4096));
        self.tx.blocking_send(Ok(Bytes::from(chunk))).is_ok()
    }

    fn finish(&mut self) {
        self.buf.extend_from_slice(b"]}");
        let _ = self
            .tx
            .blocking_send(Ok(Bytes::from(std::mem::take(&mut self.buf))));
    }

    fn fail(&mut self, e: StoreError) {
        let _ = self.tx.blocking_send(Err(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_compare_as_the_contract_says() {
        let cases = [
            (Op::Eq, 5.0, true),
            (Op::Ne, 5.0, false),
            (Op::Gt, 4.0, true),
            (Op::Gt, 5.0, false),
            (Op::Gte, 5.0, true),
            (Op::Lt, 6.0, true),
            (Op::Lt, 5.0, false),
            (Op::Lte, 5.0, true),
        ];
        for (op, bound, expected) in cases {
            assert_eq!(op.holds(5.0, bound), expected, "{op:?} {bound}");
        }
    }

    #[test]
    fn numeric_conditions_need_a_number_value() {
        let f = Filter::Numeric {
            any: false,
            conditions: vec![(Op::Gt, 1.0)],
        };
        assert!(f.matches(Some(&PropertyValue::Number(2.0))));
        assert!(!f.matches(Some(&PropertyValue::Text("2".into()))));
        assert!(!f.matches(None));
    }
}
