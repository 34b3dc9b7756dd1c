//! `/plugins` and `/plugins/{name}`: what is loaded, what failed and why, and counters.

use super::{ApiError, AppState};
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

pub fn routes() -> Router<AppState> {
    Router::new().route("/plugins", get(list)).route("/plugins/{name}", get(one))
}

async fn list(State(st): State<AppState>) -> Json<Value> {
    let list = st.plugins.as_ref().map(|p| p.list()).unwrap_or_default();
    Json(serde_json::to_value(list).unwrap_or_default())
}

async fn one(State(st): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let list = st.plugins.as_ref().map(|p| p.list()).unwrap_or_default();
    let p = list.into_iter().find(|p| p.name == name).ok_or_else(|| ApiError::not_found(format!("plugin {name:?} not found")))?;
    Ok(Json(serde_json::to_value(p).unwrap_or_default()))
}
