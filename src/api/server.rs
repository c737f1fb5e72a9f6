//! The accept loop: calltap's own, around hyper's HTTP/1 and HTTP/2 connections, because
//! `axum::serve` has no connection cap, no per-connection timeouts and answers hyper's
//! bare responses to malformed requests.
//!
//! Each accepted TCP connection
//! 1. takes a slot: at most `max_connections` at once, `max_connections_per_source`
//!    from one address; without one it gets a canned 503 and is closed at once (no
//!    task, no buffer, nothing waits on that client);
//! 2. goes through the [`Acceptor`] step (plain TCP, or the TLS handshake of
//!    `tls.rs`), under the head timeout;
//! 3. is served by hyper, HTTP/1.1 or, when TLS's ALPN chose it, HTTP/2, watched by
//!    [`Phase`]: the head must arrive within `header_timeout` of its first byte (of the
//!    connection's start, for the first request), the body within `body_timeout` of
//!    the head ([`DeadlineBody`]: 408), and a connection closes after `idle_timeout`
//!    without a request in flight.
//!
//! HTTP/2 keeps every limit but one: its frames (PINGs, window updates) are not
//! request heads, so bytes arriving on an idle HTTP/2 connection do not start the head
//! timeout; a stream whose HEADERS never complete is bounded by the idle timeout, its
//! header block by `MAX_HEAD_BYTES`, and the streams of one connection by
//! `MAX_H2_STREAMS`.
//!
//! A handler's own time and a response's sending are not timed as a whole: `POST /calls`
//! streams a month of calls as fast as the client reads, and a recording download is as
//! slow as the importer's link. But a client that takes no response bytes at all for
//! `idle_timeout` (a peer gone without a FIN, or one that stopped reading) is closed,
//! and the connection cap bounds what slow readers can hold.
//!
//! Shutdown: the listener closes, every connection is told to finish its request in
//! flight and close (idle ones close at once), and `serve` returns when all have.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use axum::Router;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use super::error::error_body;
use crate::config::ApiConfig;

/// Header fields a request may have (hyper's default); one more is 431.
const MAX_HEADERS: usize = 100;

/// hyper's read buffer, and so the largest request head: 128 KiB holds the longest
/// request target hyper takes (65,534 bytes, 414 beyond) with room for headers, and
/// bounds what a connection holding a half-sent head costs (256 of them: 32 MiB).
const MAX_HEAD_BYTES: usize = 128 * 1024;

/// Requests in flight at once on one HTTP/2 connection. The importer runs a poller and
/// a few downloads; 32 is ample, and it bounds what one connection can ask at once
/// (hyper's default is 200).
const MAX_H2_STREAMS: u32 = 32;

/// How long the accept loop pauses after an accept error that is not the client's
/// (out of descriptors): long enough not to spin, short enough to be unnoticed.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The step between an accepted TCP connection and HTTP: plain TCP, or built-in TLS (a
/// rustls handshake, `tls.rs`), run under the head timeout and inside the connection's
/// slot, so a stalled handshake is bounded like a stalled head.
pub trait Acceptor: Send + Sync + 'static {
    /// The byte stream HTTP is spoken over.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Turns an accepted connection into that stream.
    fn accept(&self, tcp: TcpStream) -> impl Future<Output = io::Result<Self::Io>> + Send;
    /// The HTTP version to speak on `io` (ALPN's choice, for TLS).
    fn protocol(_io: &Self::Io) -> Protocol {
        Protocol::Http1
    }
    /// Whether the stream is encrypted (the access log and redirects say so).
    fn is_tls(&self) -> bool {
        false
    }
}

/// The HTTP version of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// What a request knows of its connection, put into its extensions: the TCP peer,
/// whether TLS carried it, and the HTTP version.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
    pub protocol: Protocol,
}

/// HTTP straight over TCP.
pub struct PlainTcp;

impl Acceptor for PlainTcp {
    type Io = TcpStream;
    fn accept(&self, tcp: TcpStream) -> impl Future<Output = io::Result<TcpStream>> + Send {
        std::future::ready(Ok(tcp))
    }
}

/// The connection limits in force, from `[api]`; fixed when the server starts.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_source: usize,
}

impl ServerLimits {
    pub fn from_config(api: &ApiConfig) -> ServerLimits {
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        ServerLimits {
            header_timeout: Duration::from_secs(api.header_timeout_secs),
            body_timeout: Duration::from_secs(api.body_timeout_secs),
            idle_timeout: Duration::from_secs(api.idle_timeout_secs),
            max_connections: count(api.max_connections),
            max_connections_per_source: count(api.max_connections_per_source),
        }
    }
}

/// Connection counters for `/metrics`.
#[derive(Default)]
pub(crate) struct ConnStats {
    pub(crate) open: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) refused_total: AtomicU64,
    pub(crate) refused_per_source: AtomicU64,
    pub(crate) header_timeouts: AtomicU64,
    pub(crate) idle_timeouts: AtomicU64,
    pub(crate) write_stalls: AtomicU64,
}

/// Serves `router` on `listener` until `shutdown` completes, then drains.
pub(crate) async fn serve<A: Acceptor>(
    listener: TcpListener,
    acceptor: A,
    router: Router,
    limits: ServerLimits,
    stats: Arc<ConnStats>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let acceptor = Arc::new(acceptor);
    let slots = Arc::new(Slots::new(&limits, stats.clone()));
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // The client went away between SYN and accept: nothing to do.
                Err(e) if is_client_error(&e) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "cannot accept API connections; retrying");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                    }
                }
            },
        };
        let slot = match slots.take(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                refuse(&tcp, refusal);
                continue;
            }
        };
        // Small JSON answers go out at once rather than waiting on Nagle.
        let _ = tcp.set_nodelay(true);
        let connection = Connection {
            acceptor: acceptor.clone(),
            router: router.clone(),
            limits: limits.clone(),
            stats: stats.clone(),
            peer,
        };
        tokio::spawn(connection.run(tcp, slot, stopping.clone()));
    }
    drop(listener);
    drop(stopping);
    stop.send_replace(true);
    // Every connection task holds a receiver: closed() is "all of them have ended".
    stop.closed().await;
}

fn is_client_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

/// Why a connection got no slot.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    Total,
    PerSource,
}

/// Answers a connection over a cap: a 503 in the error shape, written without waiting
/// (a fresh socket's send buffer always takes it), then closed.
fn refuse(tcp: &TcpStream, refusal: Refusal) {
    let message = match refusal {
        Refusal::Total => "calltap has too many connections open: try again shortly",
        Refusal::PerSource => {
            "this address has too many connections open to calltap: close some, or try again shortly"
        }
    };
    let body = error_body(message);
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n",
        body.len()
    );
    let _ = tcp.try_write(&[head.as_bytes(), &body].concat());
}

/// The connection cap, in all and per source address.
struct Slots {
    max_total: usize,
    max_per_source: usize,
    by_source: Mutex<(usize, HashMap<IpAddr, usize>)>,
    stats: Arc<ConnStats>,
}

/// A connection's place under the cap, given back on drop.
struct Slot {
    slots: Arc<Slots>,
    source: IpAddr,
}

impl Slots {
    fn new(limits: &ServerLimits, stats: Arc<ConnStats>) -> Slots {
        Slots {
            max_total: limits.max_connections,
            max_per_source: limits.max_connections_per_source,
            by_source: Mutex::new((0, HashMap::new())),
            stats,
        }
    }

    fn take(self: &Arc<Self>, source: IpAddr) -> Result<Slot, Refusal> {
        let source = source_of(source);
        let mut guard = self.by_source.lock().unwrap_or_else(|e| e.into_inner());
        let (total, by_source) = &mut *guard;
        if *total >= self.max_total {
            self.stats.refused_total.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Total);
        }
        let mine = by_source.entry(source).or_insert(0);
        if *mine >= self.max_per_source {
            self.stats
                .refused_per_source
                .fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::PerSource);
        }
        *mine += 1;
        *total += 1;
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            slots: self.clone(),
            source,
        })
    }
}

/// The source a connection counts against: its address, with an IPv4 client on a
/// dual-stack socket one source however it is written, and an IPv6 /64 one source
/// (one host usually holds a whole /64, and could otherwise open 64 connections from
/// each of its addresses).
pub(crate) fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut guard = self
            .slots
            .by_source
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (total, by_source) = &mut *guard;
        *total -= 1;
        if let Some(n) = by_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                by_source.remove(&self.source);
            }
        }
        self.slots.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One accepted connection and what serving it needs.
struct Connection<A> {
    acceptor: Arc<A>,
    router: Router,
    limits: ServerLimits,
    stats: Arc<ConnStats>,
    peer: SocketAddr,
}

impl<A: Acceptor> Connection<A> {
    async fn run(self, tcp: TcpStream, _slot: Slot, stopping: watch::Receiver<bool>) {
        let io = match tokio::time::timeout(self.limits.header_timeout, self.acceptor.accept(tcp))
            .await
        {
            Ok(Ok(io)) => io,
            Ok(Err(e)) => {
                tracing::debug!(peer = %self.peer, error = %e, "connection set-up failed");
                return;
            }
            Err(_) => {
                self.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let protocol = A::protocol(&io);
        let multiplexed = protocol == Protocol::Http2;
        let phase = Arc::new(Phase::new(multiplexed));
        let service = ConnService {
            router: self.router.clone(),
            phase: phase.clone(),
            body_timeout: self.limits.body_timeout,
            info: ConnInfo {
                peer: self.peer,
                tls: self.acceptor.is_tls(),
                protocol,
            },
        };
        // hyper's own answers to unparsable requests are HTTP/1's; HTTP/2 has none.
        let io = GuardedIo::new(io, phase.clone(), self.limits.idle_timeout, !multiplexed);
        match protocol {
            Protocol::Http1 => {
                let mut http = hyper::server::conn::http1::Builder::new();
                http.max_headers(MAX_HEADERS)
                    .max_buf_size(MAX_HEAD_BYTES)
                    // One flat write buffer, so a parse-error answer of hyper's is one
                    // recognisable write (see `GuardedIo`).
                    .writev(false)
                    // The head timeout is `Phase`'s: hyper's would also close an idle
                    // kept-alive connection at the head timeout.
                    .header_read_timeout(None);
                let conn = http.serve_connection(TokioIo::new(io), service);
                self.drive(conn, &phase, stopping).await;
            }
            Protocol::Http2 => {
                let mut http = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                http.max_concurrent_streams(MAX_H2_STREAMS)
                    .max_header_list_size(MAX_HEAD_BYTES as u32)
                    .timer(TokioTimer::new());
                let conn = http.serve_connection(TokioIo::new(io), service);
                self.drive(conn, &phase, stopping).await;
            }
        }
    }

    /// Runs a hyper connection to its end, a shutdown (the request in flight finishes)
    /// or a timeout of its [`Phase`].
    async fn drive<C>(&self, conn: C, phase: &Phase, mut stopping: watch::Receiver<bool>)
    where
        C: Future<Output = Result<(), hyper::Error>> + Graceful,
    {
        tokio::pin!(conn);
        let mut draining = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        if write_stalled(&e) {
                            self.stats.write_stalls.fetch_add(1, Ordering::Relaxed);
                        }
                        tracing::debug!(peer = %self.peer, error = %e, "connection ended on an error");
                    }
                    return;
                }
                changed = stopping.changed(), if !draining => {
                    // Shutdown (or the server gone): finish the request in flight.
                    let _ = changed;
                    draining = true;
                    conn.as_mut().shut_down();
                }
                timed_out = phase.expired(&self.limits) => {
                    let counter = match timed_out {
                        Waiting::Head => &self.stats.header_timeouts,
                        Waiting::Idle => &self.stats.idle_timeouts,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(peer = %self.peer, waiting = ?timed_out, "connection timed out");
                    return;
                }
            }
        }
    }
}

/// hyper's HTTP/1 and HTTP/2 connections, told to finish what is in flight and close.
trait Graceful {
    fn shut_down(self: Pin<&mut Self>);
}

impl<I, S> Graceful for hyper::server::conn::http1::Connection<I, S>
where
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S::ResBody: HttpBody + 'static,
    <S::ResBody as HttpBody>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shut_down(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, E> Graceful for hyper::server::conn::http2::Connection<I, S, E>
where
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S::ResBody: HttpBody + Send + 'static,
    <S::ResBody as HttpBody>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn shut_down(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// What a connection is doing, for its timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for a request head (since its first byte, or the connection's start).
    Head,
    /// A request is being served: the handler, the body (under its own deadline) and
    /// the response are not timed here.
    Busy,
    /// Between requests on a kept-alive connection.
    Idle,
}

/// Which wait timed out.
#[derive(Clone, Copy, Debug)]
enum Waiting {
    Head,
    Idle,
}

/// A connection's [`State`] and when it began, shared by the byte stream (a first
/// byte after idling starts a head), the service (a head complete) and the response
/// body (sent), and watched by [`Phase::expired`].
struct Phase {
    state: Mutex<PhaseState>,
    changed: Notify,
    /// HTTP/2: several requests at once, and bytes between them that are not heads.
    multiplexed: bool,
}

struct PhaseState {
    state: State,
    since: Instant,
    /// Requests being served (0 or 1 on HTTP/1).
    in_flight: usize,
}

impl Phase {
    fn new(multiplexed: bool) -> Phase {
        Phase {
            state: Mutex::new(PhaseState {
                state: State::Head,
                since: Instant::now(),
                in_flight: 0,
            }),
            changed: Notify::new(),
            multiplexed,
        }
    }

    fn get(&self) -> (State, Instant) {
        let guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (guard.state, guard.since)
    }

    /// A request head is complete: the connection is busy until its answer is sent.
    fn request_started(&self) {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        guard.in_flight += 1;
        guard.state = State::Busy;
        guard.since = Instant::now();
        drop(guard);
        self.changed.notify_one();
    }

    /// An answer is sent (or dropped): idle once no other request is in flight.
    fn request_ended(&self) {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        guard.in_flight = guard.in_flight.saturating_sub(1);
        if guard.in_flight == 0 {
            guard.state = State::Idle;
            guard.since = Instant::now();
        }
        drop(guard);
        self.changed.notify_one();
    }

    /// Bytes arrived: if idle, a new request head has begun (HTTP/1 only).
    fn bytes_arrived(&self) {
        if self.multiplexed {
            return;
        }
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if guard.state == State::Idle {
            guard.state = State::Head;
            guard.since = Instant::now();
            drop(guard);
            self.changed.notify_one();
        }
    }

    fn is_busy(&self) -> bool {
        self.get().0 == State::Busy
    }

    /// Completes when the connection has waited too long in its current state.
    async fn expired(&self, limits: &ServerLimits) -> Waiting {
        loop {
            let (state, since) = self.get();
            let (waiting, limit) = match state {
                State::Head => (Waiting::Head, limits.header_timeout),
                State::Idle => (Waiting::Idle, limits.idle_timeout),
                State::Busy => {
                    self.changed.notified().await;
                    continue;
                }
            };
            tokio::select! {
                () = tokio::time::sleep_until(since + limit) => {
                    if self.get() == (state, since) {
                        return waiting;
                    }
                }
                () = self.changed.notified() => {}
            }
        }
    }
}

/// The per-connection service: marks the phase, puts the body deadline on the request
/// and a marker on the response body, and runs the router.
#[derive(Clone)]
struct ConnService {
    router: Router,
    phase: Arc<Phase>,
    body_timeout: Duration,
    info: ConnInfo,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<SentBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<SentBody>, Infallible>> + Send>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        self.phase.request_started();
        // Ends the request however it ends: answered, or dropped unanswered (an HTTP/2
        // stream the client reset), so the connection's idle timeout is never lost.
        let in_flight = InFlight(self.phase.clone());
        request.extensions_mut().insert(self.info);
        let deadline = Instant::now() + self.body_timeout;
        let limit = self.body_timeout;
        let request = request.map(|body| DeadlineBody {
            inner: body,
            deadline,
            limit,
            sleep: None,
        });
        let router = self.router.clone();
        Box::pin(async move {
            let response = match router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            Ok(response.map(|inner| SentBody {
                inner,
                _in_flight: in_flight,
            }))
        })
    }
}

/// The request body read past its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs())]
pub(crate) struct BodyTimedOut(pub(crate) Duration);

/// The [`BodyTimedOut`] behind an error from reading a request body, if that is why.
pub(crate) fn body_timed_out<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a BodyTimedOut> {
    caused_by(error)
}

/// The `E` somewhere in `error`'s chain of causes.
fn caused_by<'a, E: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        cause = e.source();
    }
    None
}

/// A request body that fails with [`BodyTimedOut`] once its deadline passes: a client
/// trickling a body is cut off however steadily it trickles.
pub(crate) struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    limit: Duration,
    /// Made on the first wait only: most requests have no body, or all of it at once.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = self.deadline;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(Some(Err(Box::new(BodyTimedOut(self.limit)))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request being served, until dropped.
struct InFlight(Arc<Phase>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// A response body that ends its request (the connection may go idle) when hyper is
/// done with it.
struct SentBody {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for SentBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's byte stream: tells [`Phase`] when bytes arrive, and puts the
/// contract's error shape on hyper's own answers to requests it cannot parse.
///
/// Why here: hyper answers a request it cannot parse (a bad request line or header,
/// 400; a request target over 65,534 bytes, 414; too many or too large headers, 431)
/// itself, with an empty body, before any service sees a request, and offers no hook
/// to change that answer. Raising its limits and checking in a layer cannot cover a
/// request line that does not parse at all. So the answer is recognised where it is
/// written: hyper writes it as the last bytes of the connection, as a head with only
/// `connection: close`, `content-length: 0` and `date`, status 400, 414 or 431, while
/// no request is
/// being served. No response of ours looks like that (each has `x-request-id` and a
/// body), so the rewrite cannot touch one; the head is replaced by the same status
/// with the error shape and `connection: close` (hyper closes after it anyway).
struct GuardedIo<T> {
    inner: T,
    phase: Arc<Phase>,
    /// A replacement answer still to write, and how much of it is written.
    pending: Option<(Vec<u8>, usize)>,
    /// How long a write may wait for the client to take bytes (the idle timeout: a
    /// client that takes nothing is idle), and the timer of the wait in progress.
    stall_limit: Duration,
    stall: Option<Pin<Box<Sleep>>>,
    /// Whether hyper's HTTP/1 parse-error answers are looked for.
    rewrite: bool,
}

impl<T> GuardedIo<T> {
    fn new(inner: T, phase: Arc<Phase>, stall_limit: Duration, rewrite: bool) -> Self {
        GuardedIo {
            inner,
            phase,
            pending: None,
            stall_limit,
            stall: None,
            rewrite,
        }
    }
}

impl<T: AsyncWrite + Unpin> GuardedIo<T> {
    /// Writes to the client; a write the client leaves waiting (a full window: a dead
    /// peer, or one that stopped reading) longer than `stall_limit` fails with
    /// [`WriteStalled`], which ends the connection.
    fn poll_write_inner(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => {
                let limit = self.stall_limit;
                let stall = self
                    .stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                ready!(stall.as_mut().poll(cx));
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    WriteStalled(limit),
                )))
            }
            ready => {
                self.stall = None;
                ready
            }
        }
    }

    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            if *written == bytes.len() {
                self.pending = None;
                break;
            }
            let at = *written;
            let bytes = std::mem::take(bytes);
            let result = self.poll_write_inner(cx, &bytes[at..]);
            self.pending = Some((bytes, at));
            let n = ready!(result)?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if let Some((_, written)) = &mut self.pending {
                *written += n;
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Whether `error` comes from a [`WriteStalled`] (inside an `io::Error`, whose
/// `source` skips the error it carries).
fn write_stalled(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        let inner = e.downcast_ref::<io::Error>().and_then(io::Error::get_ref);
        if inner.is_some_and(|inner| inner.is::<WriteStalled>()) {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The client took no response bytes for the given time.
#[derive(Debug, thiserror::Error)]
#[error("the client took no bytes for {} s", .0.as_secs())]
struct WriteStalled(Duration);

impl<T: AsyncRead + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            self.phase.bytes_arrived();
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if self.rewrite && !self.phase.is_busy() {
            if let Some((at, status)) = parse_error_answer(buf) {
                if at > 0 {
                    // What precedes it (the end of an earlier answer) goes out as is.
                    return self.poll_write_inner(cx, &buf[..at]);
                }
                self.pending = Some((shaped_answer(status, buf), 0));
                // The bytes are taken; flush and shutdown write the replacement.
                let _ = self.poll_pending(cx)?;
                return Poll::Ready(Ok(buf.len()));
            }
        }
        self.poll_write_inner(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Where hyper's answer to an unparsable request starts in `buf` (it ends `buf`), and
/// its status: a complete head, status 400, 414 or 431, whose only headers are
/// `content-length: 0`, `date` and `connection: close`.
fn parse_error_answer(buf: &[u8]) -> Option<(usize, u16)> {
    if !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let at = memchr::memmem::rfind(buf, b"HTTP/1.1 ")?;
    let mut headers = [httparse::EMPTY_HEADER; 4];
    let mut head = httparse::Response::new(&mut headers);
    match head.parse(&buf[at..]) {
        Ok(httparse::Status::Complete(n)) if at + n == buf.len() => {}
        _ => return None,
    }
    let status = head.code.filter(|c| matches!(c, 400 | 414 | 431))?;
    let mut empty = false;
    for h in head.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") && h.value == b"0" {
            empty = true;
        } else if !(h.name.eq_ignore_ascii_case("date")
            || h.name.eq_ignore_ascii_case("connection") && h.value == b"close")
        {
            return None;
        }
    }
    empty.then_some((at, status))
}

/// The contract's answer for hyper's `head` (status `status`), keeping its date.
fn shaped_answer(status: u16, head: &[u8]) -> Vec<u8> {
    let (reason, message) = match status {
        414 => (
            "URI Too Long",
            "the request target is longer than the 65534 bytes calltap reads",
        ),
        431 => (
            "Request Header Fields Too Large",
            "the request head is too large: calltap reads up to 100 header fields and 128 KiB",
        ),
        _ => (
            "Bad Request",
            "the request is not valid HTTP/1.1: its request line or a header could not be \
             parsed (a control character such as NUL in a header value, for example)",
        ),
    };
    let date = head
        .split(|&b| b == b'\n')
        .find(|line| line.len() > 5 && line[..5].eq_ignore_ascii_case(b"date:"))
        .map(|line| String::from_utf8_lossy(line).trim_end().to_owned());
    let body = error_body(message);
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if let Some(date) = date {
        out.push_str(&date);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "date: Thu, 05 Mar 2026 10:00:00 GMT\r\n";

    #[test]
    fn only_hypers_bare_parse_error_answers_are_recognised() {
        let bare = |status: &str| {
            format!("HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: 0\r\n{DATE}\r\n")
        };
        assert_eq!(
            parse_error_answer(bare("400 Bad Request").as_bytes()),
            Some((0, 400))
        );
        assert_eq!(
            parse_error_answer(bare("431 Request Header Fields Too Large").as_bytes()),
            Some((0, 431))
        );
        let after = format!("{{\"calls\":[]}}{}", bare("414 URI Too Long"));
        assert_eq!(parse_error_answer(after.as_bytes()), Some((12, 414)));
        for ours in [
            bare("200 OK"),
            bare("404 Not Found"),
            format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-request-id: 1\r\n{DATE}\r\n"
            ),
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 52\r\n{DATE}\r\n"),
            "HTTP/1.1 400 Bad Request\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n"
                .to_string(),
            format!("HTTP/1.1 400 Bad Request\r\n{DATE}\r\n"),
            format!("{}{{}}", bare("400 Bad Request")),
        ] {
            assert_eq!(parse_error_answer(ours.as_bytes()), None, "{ours:?}");
        }
    }

    #[test]
    fn sources_are_addresses_and_ipv6_64s() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(source_of(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(source_of(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(source_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            source_of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            ip("2001:db8:1:2::")
        );
        assert_ne!(source_of(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
    }

    #[test]
    fn the_replacement_is_the_error_shape_with_the_same_status() {
        let head = format!(
            "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n{DATE}\r\n"
        );
        let out = shaped_answer(431, head.as_bytes());
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(n) = response.parse(&out).unwrap() else {
            panic!("incomplete")
        };
        assert_eq!(response.code, Some(431));
        let body: serde_json::Value = serde_json::from_slice(&out[n..]).unwrap();
        assert_eq!(body["status"], "error");
        let text = String::from_utf8_lossy(&out[..n]).to_string();
        assert!(text.contains(&format!("content-length: {}\r\n", out.len() - n)));
        assert!(text.contains("connection: close\r\n"));
        assert!(text.contains(DATE), "{text}");
    }
}
