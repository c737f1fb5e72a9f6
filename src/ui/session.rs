//! Logging in: the admin password (an argon2 hash in `[ui] password_hash`), sessions in
//! memory behind an HttpOnly, SameSite=Strict cookie (Secure over TLS), and the guards
//! on the two forms that change state:
//! - login: a token in a short-lived cookie that the form must echo (a page on another
//!   site cannot read it, so it cannot log a browser in under its own password), and
//!   the failed-key budget of `[api.rate_limit]` per address, shared with the API;
//! - logout: the session's own token in the form.
//!
//! Both also refuse a request whose `Origin` is another site. Sessions are lost when
//! calltap restarts: the administrator logs in again.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{Query, Request, State};
use axum::http::{header, Extensions, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::html;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::page::{html_response, page, Nav, UiError, Viewer};
use crate::api::{AppState, Client, ConnInfo};

pub(crate) const SESSION_COOKIE: &str = "calltap_session";
const LOGIN_COOKIE: &str = "calltap_login";

/// Sessions held at once: an appliance has one or a few administrators; past this the
/// oldest goes, so a script logging in over and over cannot grow memory.
const MAX_SESSIONS: usize = 256;

/// How long the login form's token lives.
const LOGIN_FORM_SECS: u64 = 3600;

/// The sessions in force, by the SHA-256 of their token (a lookup's timing then tells
/// nothing about a token).
#[derive(Default)]
pub(crate) struct Sessions {
    by_digest: Mutex<HashMap<[u8; 32], Session>>,
    pub(crate) logins: AtomicU64,
    pub(crate) failed_logins: AtomicU64,
    pub(crate) blocked_logins: AtomicU64,
}

struct Session {
    expires: Instant,
    csrf: String,
}

/// What a cookie's token is.
pub(crate) enum Lookup {
    Valid(Viewer),
    /// A token calltap no longer holds: expired, logged out, or from before a restart.
    Ended,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// 32 random bytes, hex.
pub(crate) fn random_token() -> Result<String, UiError> {
    let mut raw = [0u8; 32];
    getrandom::getrandom(&mut raw)
        .map_err(|e| UiError::internal(format!("no random bytes for a session: {e}")))?;
    Ok(hex::encode(raw))
}

impl Sessions {
    fn create(&self, lifetime: Duration) -> Result<String, UiError> {
        let token = random_token()?;
        let csrf = random_token()?;
        let now = Instant::now();
        let mut map = self.by_digest.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(
            digest(&token),
            Session {
                expires: now + lifetime,
                csrf,
            },
        );
        Ok(token)
    }

    pub(crate) fn lookup(&self, token: &str) -> Lookup {
        let mut map = self.by_digest.lock().unwrap_or_else(|e| e.into_inner());
        let key = digest(token);
        match map.get(&key) {
            Some(s) if s.expires > Instant::now() => Lookup::Valid(Viewer {
                csrf: s.csrf.clone(),
            }),
            Some(_) => {
                map.remove(&key);
                Lookup::Ended
            }
            None => Lookup::Ended,
        }
    }

    fn end(&self, token: &str) {
        self.by_digest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&digest(token));
    }

    pub(crate) fn active(&self) -> usize {
        let now = Instant::now();
        self.by_digest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|s| s.expires > now)
            .count()
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the request came over the built-in TLS.
fn is_tls(extensions: &Extensions) -> bool {
    extensions.get::<ConnInfo>().is_some_and(|c| c.tls)
}

/// Whether cookies must be `Secure`: the connection is TLS, or the public address is.
fn over_tls(request_tls: bool, state: &AppState) -> bool {
    request_tls
        || state
            .live()
            .api
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https:"))
}

fn set_cookie(name: &str, value: &str, path: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A request whose `Origin` names another site than its host (`Host`, or HTTP/2's
/// `:authority` in `uri`): a form posted from elsewhere. Its absence, or "null" (a
/// browser hiding where a form came from), is let through: the form token still holds.
fn cross_site(headers: &HeaderMap, uri: &Uri) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    if origin == "null" {
        return false;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    origin.split_once("://").map(|(_, rest)| rest) != host
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Where to go after login: a console path only, never another site.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.contains("//") && !n.contains('\\') => n,
        _ => "/ui/",
    }
}

/// The layer in front of every console page but login and the assets.
pub(crate) async fn require_login(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = cookie(request.headers(), SESSION_COOKIE).map(str::to_owned);
    let lookup = token.as_deref().map(|t| state.console().sessions.lookup(t));
    match lookup {
        Some(Lookup::Valid(viewer)) => {
            request.extensions_mut().insert(viewer);
            next.run(request).await
        }
        ended => {
            let path = request
                .uri()
                .path_and_query()
                .map_or("/ui/", |p| p.as_str());
            let mut to = format!("/ui/login?next={}", encode(path));
            if matches!(ended, Some(Lookup::Ended)) {
                to.push_str("&expired=1");
            }
            redirect(&to)
        }
    }
}

/// 303 See Other to `to`.
pub(crate) fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Percent-encodes a path for a query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(serde::Deserialize, Default)]
pub(crate) struct LoginQuery {
    next: Option<String>,
    expired: Option<String>,
}

/// `GET /ui/login`.
pub(crate) async fn login_page(
    State(state): State<AppState>,
    extensions: Extensions,
    query: Result<Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let query = query.map(|q| q.0).unwrap_or_default();
    let notice = query.expired.is_some().then_some(
        "Your session has ended (it expired, you logged out, or calltap restarted): log in again.",
    );
    login_form(
        &state,
        is_tls(&extensions),
        StatusCode::OK,
        notice,
        None,
        query.next.as_deref(),
    )
}

/// The login form, with a fresh form token in its cookie.
fn login_form(
    state: &AppState,
    tls: bool,
    status: StatusCode,
    notice: Option<&str>,
    error: Option<&str>,
    next: Option<&str>,
) -> Response {
    let Ok(token) = random_token() else {
        return UiError::internal("no random bytes for the login form").into_response();
    };
    let configured = state.live().ui.password_hash.is_some();
    let body = html! {
        div.login {
            h1 { "Log in to calltap" }
            @if let Some(n) = notice { p.notice { (n) } }
            @if let Some(e) = error { p.notice.error role="alert" { (e) } }
            @if !configured {
                p.notice.error {
                    "No console password is set. Run " code { "calltap passwd" }
                    ", put the line it prints under " code { "[ui]" }
                    " in the configuration, and reload calltap (SIGHUP)."
                }
            }
            form method="post" action="/ui/login" {
                input type="hidden" name="csrf" value=(token);
                input type="hidden" name="next" value=(safe_next(next));
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password"
                    required autofocus disabled[!configured];
                button type="submit" disabled[!configured] { "Log in" }
            }
        }
    };
    let mut response = html_response(status, page("Log in", Nav::Other, None, body));
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            LOGIN_COOKIE,
            &token,
            "/ui/login",
            LOGIN_FORM_SECS,
            over_tls(tls, state),
        ),
    );
    response
}

#[derive(serde::Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

/// `POST /ui/login`.
pub(crate) async fn login(
    State(state): State<AppState>,
    extensions: Extensions,
    uri: Uri,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let tls = is_tls(&extensions);
    let source = extensions
        .get::<Client>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.source);
    let sessions = &state.console().sessions;
    let Ok(Form(form)) = form else {
        return UiError::bad_request(
            "The login form arrived incomplete: reload the page and try again.",
        )
        .into_response();
    };
    if cross_site(&headers, &uri) {
        return UiError::forbidden("A login posted from another site is refused.").into_response();
    }
    let cookie_token = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if form.csrf.is_empty() || !same(cookie_token, &form.csrf) {
        return login_form(
            &state,
            tls,
            StatusCode::FORBIDDEN,
            None,
            Some("The login form had expired (or cookies are off): try again on this fresh one."),
            form.next.as_deref(),
        );
    }
    let live = state.live();
    if let Some(wait) = live.limits.blocked(source) {
        sessions.blocked_logins.fetch_add(1, Ordering::Relaxed);
        let message = format!(
            "Too many wrong passwords from {source}: wait {} s before trying again.",
            wait.as_secs().max(1)
        );
        return login_form(
            &state,
            tls,
            StatusCode::TOO_MANY_REQUESTS,
            None,
            Some(&message),
            form.next.as_deref(),
        );
    }
    let Some(hash) = live.ui.password_hash.clone() else {
        return login_form(
            &state,
            tls,
            StatusCode::FORBIDDEN,
            None,
            Some("No console password is set, so nobody can log in yet."),
            form.next.as_deref(),
        );
    };
    let lifetime = Duration::from_secs(u64::from(live.ui.session_hours) * 3600);
    drop(live);
    // argon2 is slow on purpose (tens of ms): off the async threads.
    let password = form.password;
    let ok = tokio::task::spawn_blocking(move || verify(&password, &hash))
        .await
        .unwrap_or(false);
    if !ok {
        sessions.failed_logins.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%source, "console: wrong password");
        let blocked = state.live().limits.key_failed(source);
        let message = match blocked {
            Some(wait) => format!(
                "Wrong password. Too many from {source}: wait {} s before trying again.",
                wait.as_secs().max(1)
            ),
            None => "Wrong password.".to_owned(),
        };
        let status = if blocked.is_some() {
            StatusCode::TOO_MANY_REQUESTS
        } else {
            StatusCode::UNAUTHORIZED
        };
        return login_form(
            &state,
            tls,
            status,
            None,
            Some(&message),
            form.next.as_deref(),
        );
    }
    let token = match sessions.create(lifetime) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    sessions.logins.fetch_add(1, Ordering::Relaxed);
    tracing::info!(%source, "console: logged in");
    let secure = over_tls(tls, &state);
    let mut response = redirect(safe_next(form.next.as_deref()));
    let h = response.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &token, "/ui", lifetime.as_secs(), secure),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, "", "/ui/login", 0, secure),
    );
    response
}

#[derive(serde::Deserialize)]
pub(crate) struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/logout` (behind the login layer).
pub(crate) async fn logout(
    State(state): State<AppState>,
    axum::Extension(viewer): axum::Extension<Viewer>,
    extensions: Extensions,
    uri: Uri,
    headers: HeaderMap,
    form: Result<Form<LogoutForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let csrf = form.map(|f| f.0.csrf).unwrap_or_default();
    if cross_site(&headers, &uri) || !same(&csrf, &viewer.csrf) {
        return UiError::forbidden("This logout did not come from calltap's own page: refused.")
            .into_response();
    }
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        state.console().sessions.end(token);
    }
    let secure = over_tls(is_tls(&extensions), &state);
    let mut response = redirect("/ui/login");
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", "/ui", 0, secure),
    );
    response
}

/// Whether `password` matches the PHC `hash`.
fn verify(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// An argon2id hash of `password` with a random salt, in PHC form: what `calltap passwd`
/// prints for `[ui] password_hash`.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| format!("no random bytes for a salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| format!("salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify("correct horse", &hash));
        assert!(!verify("correct horse ", &hash));
        assert!(!verify("correct horse", "not a hash"));
    }

    #[test]
    fn next_stays_in_the_console() {
        assert_eq!(safe_next(Some("/ui/calls/c-1")), "/ui/calls/c-1");
        for bad in [
            "https://evil.example/",
            "//evil.example/ui/",
            "/ui//evil",
            "/metrics",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui/", "{bad}");
        }
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; calltap_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn a_form_from_another_site_is_told_apart() {
        let path: Uri = "/ui/login".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("pbx.example:8080"));
        assert!(!cross_site(&h, &path));
        let same = HeaderValue::from_static("http://pbx.example:8080");
        h.insert(header::ORIGIN, same);
        assert!(!cross_site(&h, &path));
        let other = HeaderValue::from_static("https://evil.example");
        h.insert(header::ORIGIN, other);
        assert!(cross_site(&h, &path));
        // HTTP/2: no Host; the authority is the URI's.
        let mut h2 = HeaderMap::new();
        h2.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://pbx.example"),
        );
        assert!(!cross_site(
            &h2,
            &"https://pbx.example/ui/login".parse().unwrap()
        ));
        assert!(cross_site(
            &h2,
            &"https://other.example/ui/login".parse().unwrap()
        ));
    }
}
