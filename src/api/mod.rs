//! The HTTP API: the Custom Telephony contract (../shared/CONTRACT.md) over the store,
//! plus operational endpoints on paths the contract does not use.
//!
//! Routes:
//! - contract, behind the `X-Secret-Key` layer ([`auth`]): `GET /health`, `GET /contacts`,
//!   `POST /calls`, `GET /properties/schema`, `GET /calls/{id}/recording`; and
//!   `GET /status` (operations, but it tells about the store, so it takes the key too),
//!   `GET /webhooks/deliveries`, `POST /webhooks/deliveries/{id}/retry` ([`webhooks`]);
//!   `GET /integrations/runs` ([`integrations`]);
//! - open: `GET /recordings/{id}.wav?exp=..&sig=..` (the signed link is the credential),
//!   `GET /metrics` (Prometheus text, no call data), `GET /openapi.json`.
//!
//! In front of every route, [`access`]: the client's address (behind trusted proxies),
//! `allow_from` (403), `ops_from` / ops keys for `/metrics` and `/status`, the
//! per-source rate limit (429) and the access log. HTTPS is [`tls`] (and [`acme`]),
//! set up by [`serve_on`] when `[api]` asks for it.
//!
//! Every answer that is not 2xx is an [`ApiError`] in the contract's error shape: unknown
//! paths, wrong methods, extractor rejections and handler panics included. Every request
//! is logged (tracing) in a span with its request id (`X-Request-Id` taken from the
//! request or made, and echoed in the response); keys and link signatures never are.
//!
//! Wiring: [`serve`] for `calltap serve`; [`AppState::new`] + [`serve_on`] when the caller
//! also fills the operational slots ([`AppState::set_metrics_source`],
//! [`AppState::set_status_source`]) from the capture engine, e.g. in `calltap run`;
//! [`serve_with`] with another [`Acceptor`] (TLS). Connections, their limits and
//! timeouts are [`server`]'s (calltap's own accept loop over hyper).

mod access;
pub mod acme;
mod auth;
mod calls;
mod error;
mod integrations;
mod limits;
mod links;
mod openapi;
mod ops;
mod server;
pub mod tls;
mod webhooks;

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use serde::Serialize;
use serde_json::{json, Value};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::store::Store;

pub(crate) use access::Client;
pub(crate) use calls::CallsQuery;
pub use error::ApiError;
pub(crate) use links::signed_path;
pub(crate) use ops::status_json;
pub use ops::{prometheus_from_json, InProgressSource, MetricsSource, StatusSource};
pub use server::{Acceptor, ConnInfo, PlainTcp, Protocol, ServerLimits};
pub(crate) use webhooks::deliveries_json;

use auth::KeyDigests;
use links::LinkKeys;

/// What every handler shares: the store, the configuration in force (replaceable at run
/// time, see [`AppState::reload`]), the keys derived from it, the API's own counters and
/// the slots the capture engine fills. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<Store>,
    live: RwLock<Arc<Live>>,
    /// Signs links when no link key is configured; made once per process, so links
    /// survive a configuration reload but not a restart.
    startup_link_key: [u8; 32],
    metrics: ops::Metrics,
    connections: Arc<server::ConnStats>,
    access: access::AccessStats,
    /// Built-in TLS, when `serve_on` set it up: reloaded on SIGHUP, shown on /metrics.
    tls: RwLock<Option<Arc<tls::TlsRuntime>>>,
    slots: ops::Slots,
    started: Instant,
    /// The console's sessions and samples (src/ui).
    console: crate::ui::Console,
}

/// The configuration in force and what is derived from it, swapped as one on reload.
pub(crate) struct Live {
    pub(crate) config: Config,
    pub(crate) api_keys: KeyDigests,
    pub(crate) ops_keys: KeyDigests,
    pub(crate) link_keys: LinkKeys,
    pub(crate) limits: limits::Limits,
}

impl AppState {
    /// State over `store` with `config`. Fails only when the operating system cannot
    /// give random bytes for the start-up link key.
    pub fn new(config: Config, store: Arc<Store>) -> Result<AppState, ApiError> {
        let mut startup_link_key = [0u8; 32];
        getrandom::getrandom(&mut startup_link_key).map_err(|e| {
            ApiError::Config(format!("cannot make a random recording-link key: {e}"))
        })?;
        let live = Live::new(config, &startup_link_key);
        Ok(AppState {
            inner: Arc::new(Inner {
                store,
                live: RwLock::new(Arc::new(live)),
                startup_link_key,
                metrics: ops::Metrics::default(),
                connections: Arc::default(),
                access: access::AccessStats::default(),
                tls: RwLock::new(None),
                slots: ops::Slots::default(),
                started: Instant::now(),
                console: crate::ui::Console::default(),
            }),
        })
    }

    /// Puts a new configuration in force: keys, operators, properties and limits apply to
    /// the next request (the body size limit, the connection limits and the listen
    /// address excepted: they are fixed when the server starts).
    ///
    /// With built-in TLS from files, the certificate and key are read again too (their
    /// paths stay those of the start); a pair that does not load keeps the old one.
    pub fn reload(&self, config: Config) {
        let live = Arc::new(Live::new(config, &self.inner.startup_link_key));
        live.log_warnings();
        *self.inner.live.write().unwrap_or_else(|e| e.into_inner()) = live;
        if let Some(tls) = self.tls() {
            tls.reload();
        }
    }

    /// Built-in TLS, once the server has set it up.
    pub fn tls(&self) -> Option<Arc<tls::TlsRuntime>> {
        self.inner
            .tls
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A copy of the configuration in force.
    pub fn config(&self) -> Config {
        self.live().config.clone()
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.inner.store
    }

    /// Adds text to `/metrics` (Prometheus exposition format, complete `# HELP`/`# TYPE`
    /// lines included), called on every scrape: the capture engine's packet, SIP, RTP and
    /// drop counters. Replaces an earlier source.
    pub fn set_metrics_source(&self, source: MetricsSource) {
        self.inner.slots.set_metrics(source);
    }

    /// Adds a JSON value to `/status` under `"capture"` (capture sources, last SIP seen,
    /// dialogs active), called on every request. Replaces an earlier source.
    pub fn set_status_source(&self, source: StatusSource) {
        self.inner.slots.set_status(source);
    }

    /// Gives the calls in progress to the console's Live page (`calltap run` fills it
    /// from the capture engine). Replaces an earlier source.
    pub fn set_in_progress_source(&self, source: InProgressSource) {
        self.inner.slots.set_in_progress(source);
    }

    /// The calls in progress now, when a capture engine fills the slot.
    pub(crate) fn calls_in_progress(&self) -> Option<Arc<Vec<crate::call::CallInProgress>>> {
        self.inner.slots.in_progress().map(|source| source())
    }

    /// The `"capture"` part of `/status`, when a capture engine fills the slot.
    pub(crate) fn capture_status(&self) -> Option<Value> {
        self.inner.slots.status().map(|source| source())
    }

    pub(crate) fn console(&self) -> &crate::ui::Console {
        &self.inner.console
    }

    /// A signed link to call `id`'s recording as `GET /calls/{id}/recording` gives it
    /// (webhooks' `recording.ready` events, signed when they are sent). The link serves
    /// whatever file the record names, so a WAV link still works once it is FLAC.
    pub fn recording_url(&self, id: &str) -> String {
        links::signed_url(&self.live(), id, "wav")
    }

    /// What signs `recording.ready` links for webhook delivery.
    pub fn link_signer(&self) -> crate::events::deliver::LinkSigner {
        let state = self.clone();
        Arc::new(move |id: &str| Some(state.recording_url(id)))
    }

    pub(crate) fn live(&self) -> Arc<Live> {
        Arc::clone(&self.inner.live.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Runs store work off the async threads (sled may read from disk).
    pub(crate) async fn blocking<T, F>(&self, work: F) -> Result<T, ApiError>
    where
        F: FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let store = Arc::clone(&self.inner.store);
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|e| ApiError::Internal(format!("a store task failed: {e}")))?
    }
}

impl std::ops::Deref for Live {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.config
    }
}

impl Live {
    fn new(config: Config, startup_link_key: &[u8; 32]) -> Live {
        Live {
            api_keys: KeyDigests::from_config(&config.api),
            ops_keys: KeyDigests::with_prefix(&config.api.ops_keys, "ops-"),
            link_keys: LinkKeys::new(&config.api.link_keys, startup_link_key),
            limits: limits::Limits::new(&config.api.rate_limit),
            config,
        }
    }

    fn log_warnings(&self) {
        if self.api_keys.is_empty() {
            tracing::warn!(
                "no secret key configured: every contract request will get 401 \
                 (set [api] secret_keys, secret_keys_file or CALLTAP_SECRET_KEY)"
            );
        }
        if self.link_keys.is_random() {
            tracing::warn!(
                "no link key configured: recording links are signed with a random key \
                 made at start and stop working when calltap restarts \
                 (set [api] link_keys, link_keys_file or CALLTAP_LINK_KEY)"
            );
        }
    }
}

/// Runs the API on `[api] listen` until `shutdown` completes.
pub async fn serve(
    config: Config,
    store: Arc<Store>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ApiError> {
    let addr = config.api.listen;
    let state = AppState::new(config, store)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ApiError::Bind { addr, source })?;
    serve_on(listener, state, shutdown).await
}

/// Runs the API on a socket already bound (tests bind 127.0.0.1:0 and read the port):
/// over plain TCP, or with `[api] tls_cert`/`tls_key` or `[api.acme]` over HTTPS (with
/// the certificate watch, ACME's renewals and the `redirect_listen` listener beside
/// it). A certificate that cannot be loaded at start is an error naming the file.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ApiError> {
    let api = state.live().api.clone();
    if !api.tls() {
        return serve_with(listener, PlainTcp, state, shutdown).await;
    }
    // Bound first: an address in use stops the start before anything is ordered.
    let plain = match api.redirect_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ApiError::Bind { addr, source })?,
        ),
        None => None,
    };
    let resolver = Arc::new(tls::Resolver::default());
    let mut tasks = Vec::new();
    let (files, acme_status, tokens) = match &api.acme {
        Some(acme_config) => {
            let acme = acme::Acme::new(
                acme_config.clone(),
                state.store().path().join("acme"),
                resolver.clone(),
            );
            if let Some(cert) = acme.load_cached() {
                tracing::info!(
                    names = %cert.names.join(","),
                    "ACME: serving the cached certificate"
                );
            }
            let (status, tokens) = (acme.status(), acme.tokens());
            tasks.push(tokio::spawn(acme.run()));
            (None, Some(status), Some(tokens))
        }
        None => {
            let (Some(cert), Some(key)) = (&api.tls_cert, &api.tls_key) else {
                return Err(ApiError::Config("tls_cert needs tls_key".into()));
            };
            let (files, loaded) = tls::CertFiles::open(cert, key)
                .map_err(|e| ApiError::Config(format!("built-in TLS: {e}")))?;
            tracing::info!(
                cert = %cert.display(),
                names = %loaded.names.join(","),
                expires_in_days = loaded.days_left(tls::now_unix()).floor(),
                "TLS certificate loaded"
            );
            resolver.set(loaded);
            (Some(files), None, None)
        }
    };
    let acme_alpn = api
        .acme
        .as_ref()
        .is_some_and(|a| a.challenge == crate::config::AcmeChallenge::TlsAlpn01);
    let runtime = Arc::new(tls::TlsRuntime {
        resolver: resolver.clone(),
        files,
        stats: tls::TlsStats::default(),
        acme: acme_status,
    });
    *state.inner.tls.write().unwrap_or_else(|e| e.into_inner()) = Some(runtime.clone());
    let server_config = tls::server_config(resolver, acme_alpn)
        .map_err(|e| ApiError::Config(format!("built-in TLS: {e}")))?;
    if runtime.files.is_some() {
        let watched = runtime.clone();
        tasks.push(tokio::spawn(async move {
            let mut every = tokio::time::interval(tls::WATCH_EVERY);
            loop {
                every.tick().await;
                watched.refresh_if_changed();
            }
        }));
    }
    // One shutdown for the API and the redirect listener.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let redirect = match plain {
        Some(plain) => {
            tracing::info!(addr = ?plain.local_addr().ok(), "redirecting plain HTTP to https");
            let router = redirect::router(&api, tokens);
            let limits = ServerLimits::from_config(&api);
            let mut stopped = stopped.clone();
            Some(tokio::spawn(server::serve(
                plain,
                PlainTcp,
                router,
                limits,
                Arc::default(),
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                },
            )))
        }
        None => None,
    };
    let result = serve_with(
        listener,
        tls::TlsAcceptor::new(server_config, runtime),
        state,
        async move {
            shutdown.await;
            let _ = stop.send(true);
        },
    )
    .await;
    drop(stopped);
    for task in tasks {
        task.abort();
        let _ = task.await;
    }
    if let Some(task) = redirect {
        let _ = task.await;
    }
    result
}

/// Runs the API on a bound socket, each connection going through `acceptor` (plain
/// TCP, or a TLS handshake) before HTTP, under the `[api]` connection limits, until
/// `shutdown` completes; then requests in flight finish and it returns.
pub async fn serve_with<A: Acceptor>(
    listener: tokio::net::TcpListener,
    acceptor: A,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ApiError> {
    let live = state.live();
    let addr = listener.local_addr().map_err(ApiError::Serve)?;
    let limits = ServerLimits::from_config(&live.api);
    tracing::info!(
        %addr,
        links = %live.api.link_base(),
        tls = acceptor.is_tls(),
        secret_keys = live.api_keys.len(),
        max_connections = limits.max_connections,
        "API listening"
    );
    live.log_warnings();
    drop(live);
    let stats = state.inner.connections.clone();
    // Rate-limit buckets of sources not seen lately are forgotten once a minute.
    let sweeper = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                every.tick().await;
                state.live().limits.sweep();
            }
        })
    };
    // The console's per-minute counts for its Status chart.
    let sampler = tokio::spawn(crate::ui::sample_every_minute(state.clone()));
    let shutdown = {
        let state = state.clone();
        async move {
            shutdown.await;
            state.console().stop_streams();
        }
    };
    server::serve(listener, acceptor, router(state), limits, stats, shutdown).await;
    // Gone before returning: they hold the state, and with it the store.
    sweeper.abort();
    let _ = sweeper.await;
    sampler.abort();
    let _ = sampler.await;
    Ok(())
}

/// The whole API as an axum router, with its layers (auth on the contract paths, body
/// limit, request ids, tracing, metrics, panic guard).
pub fn router(state: AppState) -> Router {
    with_layers(routes(&state), state)
}

fn routes(state: &AppState) -> Router<AppState> {
    let limit = state.live().api.max_body_bytes.bytes();
    // The 405 fallback is set before the auth layer, so a wrong method on a contract
    // path still needs the key: auth comes first on every contract path.
    let contract = Router::new()
        .route("/health", get(health))
        .route("/contacts", get(contacts))
        .route("/calls", post(calls::calls))
        .route("/properties/schema", get(schema))
        .route("/calls/{id}/recording", get(links::recording))
        .route("/status", get(ops::status))
        .route("/webhooks/deliveries", get(webhooks::deliveries))
        .route("/webhooks/deliveries/{id}/retry", post(webhooks::retry))
        .route("/integrations/runs", get(integrations::runs))
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(limit, declared_length))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ));
    let open = Router::new()
        .route("/recordings/{file}", get(links::download))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(openapi::document))
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(limit, declared_length));
    let routes = contract.merge(open);
    if state.live().ui.enabled {
        routes.merge(crate::ui::routes(state)).fallback(not_found)
    } else {
        routes.fallback(not_found)
    }
}

/// 413 at once for a body declared (`Content-Length`) over `[api] max_body_bytes`,
/// before a byte of it is read (and before `Expect: 100-continue` is answered). On
/// contract paths it runs after the key check, like every other check. A body without
/// a declared length is cut at the limit as it is read. The limit is the one the router
/// was built with, as for that cut.
async fn declared_length(
    State(limit): State<u64>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit => ApiError::PayloadTooLarge { limit }.into_response(),
        _ => next.run(request).await,
    }
}

fn with_layers(routes: Router<AppState>, state: AppState) -> Router {
    let limit = usize::try_from(state.live().api.max_body_bytes.bytes()).unwrap_or(usize::MAX);
    routes
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state.clone())
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                // The access log (`access`) is the one line per request.
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(ops::request_span)
                        .on_response(()),
                )
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(middleware::from_fn_with_state(state.clone(), ops::track))
                .layer(middleware::from_fn_with_state(state, access::gate))
                .layer(CatchPanicLayer::custom(panic_response)),
        )
}

/// The plain-HTTP listener beside HTTPS (`redirect_listen`).
mod redirect {
    use std::sync::Arc;

    use axum::extract::{Path, Request, State};
    use axum::http::{header, HeaderValue, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use axum::Router;

    use super::acme::Http01Tokens;
    use super::error::error_response;
    use crate::config::ApiConfig;

    #[derive(Clone)]
    struct Target {
        /// `public_url` or ACME's domain, when known; else the request's Host.
        base: Option<String>,
        port: u16,
        tokens: Option<Arc<Http01Tokens>>,
    }

    pub(super) fn router(api: &ApiConfig, tokens: Option<Arc<Http01Tokens>>) -> Router {
        let target = Target {
            base: (api.public_url.is_some() || api.acme.is_some()).then(|| api.link_base()),
            port: api.listen.port(),
            tokens,
        };
        Router::new()
            .route("/.well-known/acme-challenge/{token}", get(challenge))
            .fallback(redirect)
            .with_state(target)
    }

    /// HTTP-01: the key authorization of a token calltap is waiting on.
    async fn challenge(State(target): State<Target>, Path(token): Path<String>) -> Response {
        match target.tokens.as_ref().and_then(|t| t.get(&token)) {
            Some(value) => ([(header::CONTENT_TYPE, "text/plain")], value).into_response(),
            None => error_response(StatusCode::NOT_FOUND, "no such ACME challenge token"),
        }
    }

    /// 308 to the same path and query over https (the method and body are kept).
    async fn redirect(State(target): State<Target>, request: Request) -> Response {
        let tail = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let base = match target.base {
            Some(base) => base,
            None => {
                let host = request
                    .headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .and_then(|h| h.parse::<axum::http::uri::Authority>().ok());
                let Some(host) = host else {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        "calltap's API is served over https; this request names no host",
                    );
                };
                match target.port {
                    443 => format!("https://{}", host.host()),
                    port if host.host().contains(':') => {
                        format!("https://[{}]:{port}", host.host())
                    }
                    port => format!("https://{}:{port}", host.host()),
                }
            }
        };
        let location = format!("{base}{tail}");
        let mut response = error_response(
            StatusCode::PERMANENT_REDIRECT,
            &format!("calltap's API is served over https: {location}"),
        );
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        response
    }
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %what, "a request handler panicked");
    error::error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error: the request could not be answered (see calltap's log)",
    )
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{method} is not allowed on {} (see /openapi.json)",
        uri.path()
    ))
}

async fn health() -> Json<Value> {
    Json(json!({"status": "success"}))
}

/// One entry of `/contacts`, in the contract's names.
#[derive(Serialize)]
pub(crate) struct Contact {
    pub(crate) id: String,
    pub(crate) phone: String,
    pub(crate) name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) department: Option<String>,
}

/// Configured operators first, in the configuration's order, then the discovered ones
/// no configured operator covers (by id or by extension), by id. `phone` is required by
/// the contract: the configured phone, else the extension (what reaches the operator).
async fn contacts(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let live = state.live();
    let discovered = state
        .blocking(|store| store.operators().map_err(ApiError::from))
        .await?;
    Ok(Json(json!({ "contacts": contacts_of(&live, discovered) })))
}

/// The operators as `/contacts` lists them (see [`contacts`]).
pub(crate) fn contacts_of(
    live: &Live,
    discovered: Vec<crate::store::DiscoveredOperator>,
) -> Vec<Contact> {
    let mut out: Vec<Contact> = live
        .operators
        .iter()
        .map(|op| Contact {
            id: op.id.clone(),
            phone: op
                .phone
                .clone()
                .or_else(|| op.extension.clone())
                .unwrap_or_default(),
            name: op.name.clone(),
            department: op.department.clone(),
        })
        .collect();
    for op in discovered {
        let covered = live
            .operators
            .iter()
            .any(|c| c.id == op.id || c.extension.as_deref() == Some(op.extension.as_str()));
        if !covered {
            out.push(Contact {
                phone: if op.extension.is_empty() {
                    op.id.clone()
                } else {
                    op.extension
                },
                name: if op.name.trim().is_empty() {
                    op.id.clone()
                } else {
                    op.name
                },
                id: op.id,
                department: None,
            });
        }
    }
    out
}

/// `/properties/schema`: the configured properties (key, type, values for enums).
async fn schema(State(state): State<AppState>) -> Json<Value> {
    let live = state.live();
    let properties: Vec<Value> = live
        .properties
        .iter()
        .map(|p| {
            let mut entry = json!({"key": p.key, "type": p.kind.as_str()});
            if !p.values.is_empty() {
                entry["values"] = json!(p.values);
            }
            entry
        })
        .collect();
    Json(json!({ "properties": properties }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panicking_handler_still_answers_the_error_shape() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let state = AppState::new(Config::default(), store).unwrap();
        let routes = routes(&state).route(
            "/boom",
            get(|| async {
                if true {
                    panic!("boom");
                }
                "unreachable"
            }),
        );
        let app = with_layers(routes, state);
        let response = app
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().contains_key("x-request-id"));
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let json: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["status"], "error");
        assert!(json["message"].as_str().unwrap().contains("internal error"));
    }
}
