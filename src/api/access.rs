//! Who may ask, and the record of who asked: one middleware in front of every route.
//!
//! 1. The client's address: the TCP peer, or, when the peer is one of `[api]
//!    trusted_proxies`, the address the proxy names in `Forwarded` / `X-Forwarded-For`
//!    (the right-most hop that is not itself a trusted proxy).
//! 2. `allow_from`: any other source gets 403 before anything else runs (recording
//!    links excepted while `links_from_anywhere`); `/metrics` and `/status` answer
//!    `ops_from` (default: loopback and `allow_from`) or an ops key instead.
//! 3. The per-source rate limit (429 with `Retry-After`).
//! 4. The access log: one line per request when its answer is sent, with the source,
//!    the key's id (never the key), method, path (never the query, which carries link
//!    signatures), status, bytes, duration and request id.

use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::limits::retry_after;
use super::server::{ConnInfo, Protocol};
use super::{ApiError, AppState, Live};
use crate::config::{AddressSet, ApiConfig};

/// What the gate learnt of a request, for the layers after it.
#[derive(Clone)]
pub(crate) struct Client {
    /// The client's address (see the module doc).
    pub(crate) source: IpAddr,
    /// The accepted key's id, once the key check (or the ops gate) knows it.
    pub(crate) key_id: Arc<OnceLock<String>>,
}

/// An ops key was presented: `/status` needs no contract key then.
#[derive(Clone, Copy)]
pub(crate) struct OpsGranted;

/// Requests refused by an access rule or a limit, for `/metrics`.
#[derive(Default)]
pub(crate) struct AccessStats {
    pub(crate) allow_from: AtomicU64,
    pub(crate) key_allow_from: AtomicU64,
    pub(crate) ops_from: AtomicU64,
    pub(crate) rate_source: AtomicU64,
    pub(crate) rate_key: AtomicU64,
    pub(crate) failed_keys: AtomicU64,
}

impl AccessStats {
    pub(crate) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "# HELP calltap_api_refused_total Requests refused by an access rule or a rate limit, by rule.\n\
             # TYPE calltap_api_refused_total counter"
        );
        for (rule, n) in [
            ("allow_from", &self.allow_from),
            ("key_allow_from", &self.key_allow_from),
            ("ops_from", &self.ops_from),
            ("rate_limit_source", &self.rate_source),
            ("rate_limit_key", &self.rate_key),
            ("failed_keys", &self.failed_keys),
        ] {
            let _ = writeln!(
                out,
                "calltap_api_refused_total{{rule=\"{rule}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
    }
}

/// Whether `ops_from` (or its default, loopback and `allow_from`) lets `ip` reach
/// `/metrics` and `/status` without an ops key.
pub(crate) fn ops_allows(api: &ApiConfig, ip: IpAddr) -> bool {
    match &api.ops_from {
        Some(set) => set.contains(ip),
        None => {
            ip.to_canonical().is_loopback()
                || (!api.allow_from.is_empty() && api.allow_from.contains(ip))
        }
    }
}

/// A 429 in the error shape with `Retry-After`.
pub(crate) fn too_many(message: &str, wait: std::time::Duration) -> Response {
    ApiError::TooManyRequests {
        message: message.to_owned(),
        retry_after: retry_after(wait),
    }
    .into_response()
}

/// The middleware (see the module doc).
pub(crate) async fn gate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let live = state.live();
    let info = request.extensions().get::<ConnInfo>().copied();
    let peer = info.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |i| i.peer.ip());
    let source = client_address(peer, request.headers(), &live.api.trusted_proxies);
    let key_id = Arc::new(OnceLock::new());
    request.extensions_mut().insert(Client {
        source,
        key_id: key_id.clone(),
    });
    let record = AccessRecord {
        source,
        peer,
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
        request_id: request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned(),
        proto: match info.map(|i| i.protocol) {
            Some(Protocol::Http2) => "HTTP/2",
            _ => "HTTP/1.1",
        },
        tls: info.is_some_and(|i| i.tls),
        started,
        key_id: key_id.clone(),
    };
    let response = match refusal(&state, &live, &mut request, source, &key_id) {
        Some(response) => response,
        None => {
            drop(live);
            next.run(request).await
        }
    };
    let status = response.status().as_u16();
    response.map(|inner| {
        Body::new(AccessBody {
            inner,
            bytes: 0,
            record: Some((record, status)),
        })
    })
}

/// The answer refusing `request`, or `None` to let it through.
fn refusal(
    state: &AppState,
    live: &Live,
    request: &mut Request,
    source: IpAddr,
    key_id: &OnceLock<String>,
) -> Option<Response> {
    let api = &live.api;
    let stats = &state.inner.access;
    let path = request.uri().path();
    if path == "/metrics" || path == "/status" {
        let presented = ops_key_presented(request.headers());
        let granted = presented.and_then(|k| live.ops_keys.matching(k.as_bytes()));
        if let Some(key) = granted {
            let _ = key_id.set(key.id.clone());
            request.extensions_mut().insert(OpsGranted);
        } else if !ops_allows(api, source) {
            if presented.is_some() {
                if let Some(wait) = live.limits.key_failed(source) {
                    AccessStats::count(&stats.failed_keys);
                    return Some(too_many(
                        "too many requests with a wrong key from this address: wait, then \
                         send the right one",
                        wait,
                    ));
                }
            }
            AccessStats::count(&stats.ops_from);
            return Some(
                ApiError::Forbidden(format!(
                    "{path} is served to the addresses in [api] ops_from (default: loopback \
                     and allow_from) or with an ops key; {source} is not one of them"
                ))
                .into_response(),
            );
        }
    } else {
        let link = path.starts_with("/recordings/") && api.links_from_anywhere;
        if !link && !api.allow_from.is_empty() && !api.allow_from.contains(source) {
            AccessStats::count(&stats.allow_from);
            tracing::debug!(%source, path, "refused: not in allow_from");
            return Some(
                ApiError::Forbidden(format!(
                    "{source} is not allowed to use this API ([api] allow_from)"
                ))
                .into_response(),
            );
        }
    }
    if let Err(wait) = live.limits.source(source) {
        AccessStats::count(&stats.rate_source);
        return Some(too_many(
            "too many requests from this address: slow down and retry after the time in \
             Retry-After",
            wait,
        ));
    }
    None
}

/// An ops key sent as `Authorization: Bearer KEY` (what Prometheus sends) or in
/// `X-Secret-Key`.
fn ops_key_presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(bearer.trim());
    }
    headers
        .get(super::auth::HEADER)
        .and_then(|v| v.to_str().ok())
}

/// The client's address: `peer`, or behind a trusted proxy the right-most address
/// in `Forwarded` (or, without it, `X-Forwarded-For`) that is not a trusted proxy. A
/// trusted proxy that names no parsable client gives the unspecified address, which
/// no allow-list holds (a misconfigured proxy must not lend its own, often loopback,
/// address to its clients).
pub(crate) fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &AddressSet) -> IpAddr {
    if trusted.is_empty() || !trusted.contains(peer) {
        return peer;
    }
    let unknown = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let hops = match forwarded_hops(headers) {
        Some(hops) => hops,
        None => return unknown,
    };
    for hop in hops.iter().rev() {
        match hop {
            Some(ip) if trusted.contains(*ip) => continue,
            Some(ip) => return ip.to_canonical(),
            None => return unknown,
        }
    }
    // Every hop a trusted proxy: the first one is the client.
    hops.first().copied().flatten().unwrap_or(unknown)
}

/// The `for=` hops of every `Forwarded` header (RFC 7239), else the addresses of
/// every `X-Forwarded-For`, in order; `None` for a hop that is not an address.
fn forwarded_hops(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let values = |name| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
    };
    let forwarded = values(header::FORWARDED);
    if !forwarded.is_empty() {
        let hops: Vec<Option<IpAddr>> = forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .map(|element| {
                element.split(';').find_map(|pair| {
                    let (name, value) = pair.trim().split_once('=')?;
                    name.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| parse_node(value.trim()))
                })
            })
            .map(Option::flatten)
            .collect();
        return (!hops.is_empty()).then_some(hops);
    }
    let xff = values(header::HeaderName::from_static("x-forwarded-for"));
    let hops: Vec<Option<IpAddr>> = xff
        .iter()
        .flat_map(|v| v.split(','))
        .map(|hop| parse_node(hop.trim()))
        .collect();
    (!hops.is_empty()).then_some(hops)
}

/// A node as written in `Forwarded` or `X-Forwarded-For`: `192.0.2.7`,
/// `192.0.2.7:4711`, `"[2001:db8::1]:4711"`, `2001:db8::1`.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim_matches('"');
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (host, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// What the access log line says of a request, written when its answer is done.
struct AccessRecord {
    source: IpAddr,
    peer: IpAddr,
    method: String,
    path: String,
    request_id: String,
    proto: &'static str,
    tls: bool,
    started: Instant,
    key_id: Arc<OnceLock<String>>,
}

/// A response body that counts what is sent and writes the access log line when
/// hyper is done with it (the whole answer sent, or the client gone).
struct AccessBody {
    inner: Body,
    bytes: u64,
    record: Option<(AccessRecord, u16)>,
}

impl HttpBody for AccessBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.bytes += data.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for AccessBody {
    fn drop(&mut self) {
        let Some((r, status)) = self.record.take() else {
            return;
        };
        let key = r.key_id.get().map_or("-", String::as_str);
        let peer = if r.peer == r.source {
            String::from("-")
        } else {
            r.peer.to_string()
        };
        tracing::info!(
            target: "calltap::access",
            source = %r.source,
            peer = %peer,
            key = %key,
            method = %r.method,
            path = %r.path,
            status,
            bytes = self.bytes,
            duration_ms = format_args!("{:.1}", r.started.elapsed().as_secs_f64() * 1e3),
            request_id = %r.request_id,
            proto = %r.proto,
            tls = r.tls,
            "request"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn set(list: &[&str]) -> AddressSet {
        AddressSet(list.iter().map(|s| s.parse().unwrap()).collect())
    }

    fn headers(list: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in list {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let trusted = set(&["127.0.0.1/32", "10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "203.0.113.9, 10.0.0.2")]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &h, &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_address(ip("198.51.100.1"), &h, &trusted),
            ip("198.51.100.1"),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            client_address(ip("127.0.0.1"), &h, &AddressSet::default()),
            ip("127.0.0.1")
        );
        // A client cannot hide behind an address it writes itself: the right-most
        // untrusted hop wins.
        let h = headers(&[("x-forwarded-for", "10.0.0.7, 198.51.100.66")]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &h, &trusted),
            ip("198.51.100.66")
        );
        let h = headers(&[(
            "forwarded",
            "for=192.0.2.60;proto=https, for=\"[2001:db8:cafe::17]:4711\"",
        )]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &h, &trusted),
            ip("2001:db8:cafe::17")
        );
        let h = headers(&[
            ("forwarded", "for=192.0.2.43:443"),
            ("x-forwarded-for", "1.2.3.4"),
        ]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &h, &trusted),
            ip("192.0.2.43")
        );
        let unspecified = ip("0.0.0.0");
        assert_eq!(
            client_address(ip("127.0.0.1"), &HeaderMap::new(), &trusted),
            unspecified
        );
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(client_address(ip("127.0.0.1"), &h, &trusted), unspecified);
        let h = headers(&[("x-forwarded-for", "10.0.0.7")]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &h, &trusted),
            ip("10.0.0.7")
        );
    }

    #[test]
    fn ops_from_defaults_to_loopback_and_the_allow_list() {
        let mut api = ApiConfig::default();
        assert!(ops_allows(&api, ip("127.0.0.1")));
        assert!(ops_allows(&api, ip("::1")));
        assert!(ops_allows(&api, ip("::ffff:127.0.0.1")));
        assert!(!ops_allows(&api, ip("192.0.2.1")));
        api.allow_from = set(&["192.0.2.0/24"]);
        assert!(ops_allows(&api, ip("192.0.2.1")));
        api.ops_from = Some(set(&["198.51.100.7/32"]));
        assert!(!ops_allows(&api, ip("127.0.0.1")));
        assert!(ops_allows(&api, ip("198.51.100.7")));
    }
}
