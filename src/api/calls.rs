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
use crate::call::record::{CallRecord, PropertyValue};
use crate::call::{filter, properties};
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
    pub(crate) filters: filter::PropertyFilters,
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
            None => Vec::new(),
            Some(value) => {
                filter::parse_filters(value, &live.properties).map_err(ApiError::bad_request)?
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

    /// A window `[start, stop)` with the contract's direction and operators filters and
    /// no property filters: the console's History, which filters as `POST /calls` does.
    pub(crate) fn window(
        start: u64,
        stop: u64,
        direction: Option<&'static str>,
        operators: Option<HashSet<String>>,
    ) -> CallsQuery {
        CallsQuery {
            start,
            stop,
            direction,
            operators,
            filters: Vec::new(),
        }
    }

    /// The filters that need no properties (cheap, so they run first).
    pub(crate) fn selects(&self, record: &CallRecord) -> bool {
        self.direction
            .is_none_or(|d| record.direction.contract() == d)
            && self
                .operators
                .as_ref()
                .is_none_or(|ops| ops.contains(&record.operator.id))
    }

    fn properties_match(&self, values: &BTreeMap<String, PropertyValue>) -> bool {
        filter::all_match(&self.filters, values)
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
