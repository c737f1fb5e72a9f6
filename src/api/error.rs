//! Every error the API answers, in one type: each variant knows its status, and
//! [`IntoResponse`] writes the contract's `{"status":"error","message":...}` once, so no
//! handler can answer a bare status, an HTML page or a text body.

use std::io;
use std::net::SocketAddr;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;

/// Why a request (or the server itself) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// Missing or wrong `X-Secret-Key`. The message never contains the key.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A recording link that is forged, altered or expired.
    #[error("{0}")]
    Forbidden(String),
    /// The request is malformed: the message says what was wrong.
    #[error("{0}")]
    BadRequest(String),
    /// No such call, recording or path.
    #[error("{0}")]
    NotFound(String),
    /// The path exists, the method does not.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The body did not arrive within `[api] body_timeout_secs`.
    #[error("the request body did not arrive within {secs} s: send it at once after the head")]
    RequestTimeout { secs: u64 },
    /// The body is over `[api] max_body_bytes`.
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    /// Over a rate limit; `retry_after` seconds go into `Retry-After`.
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u64 },
    /// A Range the file cannot satisfy; `size` goes into `Content-Range: bytes */size`.
    #[error("the requested range is not satisfiable{}", .size.map(|s| format!(": the file has {s} bytes")).unwrap_or_default())]
    RangeNotSatisfiable { size: Option<u64> },
    /// The store failed. The details are logged; the client gets a generic message.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Anything else that is our fault (a panic, a failed task).
    #[error("{0}")]
    Internal(String),
    /// `serve` could not listen on the configured address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The server stopped on an I/O error.
    #[error("the API server failed: {0}")]
    Serve(#[source] io::Error),
    /// A configuration the API cannot honour.
    #[error("{0}")]
    Config(String),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::NotFound(message.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Store(_)
            | ApiError::Internal(_)
            | ApiError::Bind { .. }
            | ApiError::Serve(_)
            | ApiError::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The contract's error shape.
#[derive(Serialize)]
struct ErrorBody<'a> {
    status: &'static str,
    message: &'a str,
}

/// `{"status":"error","message":...}` as bytes, for answers written outside axum.
pub(crate) fn error_body(message: &str) -> Vec<u8> {
    serde_json::to_vec(&ErrorBody {
        status: "error",
        message,
    })
    .unwrap_or_else(|_| br#"{"status":"error","message":"error"}"#.to_vec())
}

/// `{"status":"error","message":...}` with `status`, as a response.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response {
    let body = error_body(message);
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Store(e) => {
                tracing::error!(error = %e, "store error while answering a request");
                "internal error: the store could not be read (see calltap's log)".to_owned()
            }
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "internal error while answering a request");
                format!("internal error: {m}")
            }
            other => other.to_string(),
        };
        let mut response = error_response(status, &message);
        if let ApiError::RequestTimeout { .. } | ApiError::PayloadTooLarge { .. } = self {
            // The body was not read to its end, so the connection cannot carry another
            // request: say so rather than leave the client to find out.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let ApiError::TooManyRequests { retry_after, .. } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        if let ApiError::RangeNotSatisfiable { size: Some(size) } = self {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
        }
        response
    }
}
