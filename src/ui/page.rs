//! What every page shares: the frame (header, navigation, logout), the security
//! headers, times and durations as an administrator reads them, and the error page.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use crate::store::StoreError;

/// The section a page belongs to, for the navigation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Live,
    History,
    Status,
    Other,
}

/// The logged-in administrator, as the login layer found them.
#[derive(Clone)]
pub(crate) struct Viewer {
    /// The session's token for state-changing forms (logout).
    pub(crate) csrf: String,
}

/// A whole page: `viewer` None for the login page.
pub(crate) fn page(title: &str, nav: Nav, viewer: Option<&Viewer>, body: Markup) -> Markup {
    let link = |href: &str, name: &str, here: bool| {
        html! { a href=(href) class=[here.then_some("here")] { (name) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · calltap" }
                link rel="stylesheet" href=(concat!("/ui/assets/style.css?v=", env!("CARGO_PKG_VERSION")));
                script src=(concat!("/ui/assets/console.js?v=", env!("CARGO_PKG_VERSION"))) defer {}
            }
            body {
                header {
                    span.brand { "calltap" }
                    @if let Some(viewer) = viewer {
                        (link("/ui/live", "Live", nav == Nav::Live))
                        (link("/ui/history", "History", nav == Nav::History))
                        (link("/ui/status", "Status", nav == Nav::Status))
                        form method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(viewer.csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// `markup` as an HTML answer with the console's headers: nothing cached (pages show
/// call data), no framing, no referrer to other sites (a recording link carries its
/// signature; within the console it lets a browser name the form's origin), and only
/// the console's own scripts, styles and media.
pub(crate) fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(h);
    response
}

pub(crate) fn secure_headers(h: &mut axum::http::HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
             base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// What went wrong, as a page saying so.
#[derive(Debug)]
pub(crate) struct UiError {
    pub(crate) status: StatusCode,
    pub(crate) title: &'static str,
    pub(crate) message: String,
}

impl UiError {
    pub(crate) fn not_found(message: impl Into<String>) -> UiError {
        UiError {
            status: StatusCode::NOT_FOUND,
            title: "Not found",
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> UiError {
        UiError {
            status: StatusCode::BAD_REQUEST,
            title: "That request cannot be answered",
            message: message.into(),
        }
    }

    pub(crate) fn forbidden(message: impl Into<String>) -> UiError {
        UiError {
            status: StatusCode::FORBIDDEN,
            title: "Refused",
            message: message.into(),
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> UiError {
        UiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            title: "calltap failed",
            message: message.into(),
        }
    }
}

impl From<StoreError> for UiError {
    fn from(e: StoreError) -> UiError {
        tracing::error!(error = %e, "console: store error");
        UiError::internal(format!("The store could not be read: {e}"))
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let body = html! {
            h1 { (self.title) }
            p.notice.error { (self.message) }
            p { a href="/ui/history" { "Call history" } " · " a href="/ui/live" { "Live calls" } }
        };
        html_response(self.status, page(self.title, Nav::Other, None, body))
    }
}

/// Unix seconds now, from the wall clock (the console's own time ranges and sessions;
/// the engine never reads it).
pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// "2026-03-04 10:00:05" (UTC).
pub(crate) fn utc_time(secs: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(secs.min(253_402_300_799));
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_owned()
}

/// "2026-03-04 10:00:05.123" (UTC), from capture nanoseconds.
pub(crate) fn utc_time_ns(ns: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_nanos(ns);
    humantime::format_rfc3339_millis(t)
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_owned()
}

/// A time typed in the History form ("2026-03-04T10:00", seconds optional, UTC), as
/// Unix seconds.
pub(crate) fn parse_input_time(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let full = match text.len() {
        16 => format!("{text}:00Z"),
        _ => format!("{text}Z"),
    };
    humantime::parse_rfc3339(&full)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .ok_or_else(|| format!("\"{text}\" is not a time like 2026-03-04T10:00 (UTC)"))
}

/// "1:02:03", "2:05", "0:07".
pub(crate) fn duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_and_print_in_utc() {
        assert_eq!(utc_time(1_772_618_405), "2026-03-04 10:00:05");
        assert_eq!(parse_input_time("2026-03-04T10:00"), Ok(1_772_618_400));
        assert_eq!(parse_input_time("2026-03-04T10:00:05"), Ok(1_772_618_405));
        assert!(parse_input_time("yesterday").is_err());
        assert_eq!(
            utc_time_ns(1_772_618_405_123_456_789),
            "2026-03-04 10:00:05.123"
        );
        assert_eq!(duration(3723), "1:02:03");
        assert_eq!(duration(7), "0:07");
    }
}
