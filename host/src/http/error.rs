//! JSON errors: `{"detail": "..."}` (the shape aio-fluid's FastAPI app returns).

use crate::scheduler::QueueError;
use crate::store::StoreError;
use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
}

impl ApiError {
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
            StoreError::Db(e) => {
                tracing::error!(error = %e, "database error");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("database unavailable: {e}"))
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
