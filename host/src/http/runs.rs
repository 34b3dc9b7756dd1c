//! `/task-runs/{id}`: one run, and cancelling it (`POST .../cancel`: a cancelled run stays,
//! aborted or stopping, so cancelling is an action on it rather than its deletion).

use super::{ApiError, AppState};
use crate::scheduler::Cancelled;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;

pub fn routes() -> Router<AppState> {
    Router::new().route("/task-runs/{id}", get(one)).route("/task-runs/{id}/cancel", post(cancel))
}

async fn one(State(st): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let run = st.scheduler.get_run(&id).await?.ok_or_else(|| ApiError::not_found(format!("task run {id} not found")))?;
    Ok(Json(serde_json::to_value(run).unwrap_or_default()))
}

/// 200 with the aborted run when it was queued; 202 with the run when it is running (its
/// host stops it); 409 when it already ended; 404 when unknown.
async fn cancel(State(st): State<AppState>, Path(id): Path<String>) -> Result<(StatusCode, Json<Value>), ApiError> {
    match st.scheduler.cancel(&id).await? {
        Cancelled::Aborted(run) => Ok((StatusCode::OK, Json(serde_json::to_value(run).unwrap_or_default()))),
        Cancelled::Stopping(run) => Ok((StatusCode::ACCEPTED, Json(serde_json::to_value(run).unwrap_or_default()))),
    }
}
