//! JSON errors: `{"detail": "..."}` (the shape aio-fluid's FastAPI app returns).

use crate::scheduler::QueueError;
use crate::store::StoreError;
use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An error answer: `status` with `{"detail": detail}`. Handlers return it with `?`; the
/// `From` impls below map each layer's errors to their status.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status; 4xx for the caller's mistakes, 5xx only for the host's.
    pub status: StatusCode,
    /// The message, shown to the caller as is.
    pub detail: String,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> ApiError {
        ApiError { status, detail: detail.into() }
    }
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, detail)
    }
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, detail)
    }
    pub fn unprocessable(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "detail": self.detail }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::RunNotFound(id) => ApiError::not_found(format!("task run {id} not found")),
            StoreError::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            // The database's own words go to the log, not to the client.
            StoreError::Db(e) => {
                tracing::error!(error = %e, "database error");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the database is unavailable; retry later")
            }
            StoreError::Other(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::UnknownTask(_) => ApiError::not_found(e.to_string()),
            QueueError::InvalidParams { .. } => ApiError::unprocessable(e.to_string()),
            QueueError::Store(s) => s.into(),
        }
    }
}

/// A body that could not be read (over [`super::BODY_LIMIT`]: 413) as a JSON error, like
/// every other error, instead of axum's plain-text rejection.
impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        let detail = match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => format!("request body is larger than {} bytes", super::BODY_LIMIT),
            _ => e.body_text(),
        };
        ApiError::new(e.status(), detail)
    }
}

/// Every error answer is `{"detail": ...}`: an extractor's rejection (a path that is not
/// valid UTF-8, a bad query), a method a known path does not take (405) and the like come
/// from axum as plain text or nothing, and are wrapped here.
pub async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024).await.map(|b| String::from_utf8_lossy(&b).trim().to_string()).unwrap_or_default();
    let detail = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_string() } else { text };
    let mut out = (status, Json(serde_json::json!({ "detail": detail }))).into_response();
    // Keep what the status needs besides its body (`Allow` on a 405, `WWW-Authenticate`).
    for name in [axum::http::header::ALLOW, axum::http::header::WWW_AUTHENTICATE] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}
