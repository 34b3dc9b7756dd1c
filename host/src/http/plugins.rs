//! `/plugins`: what is loaded, what failed and why, state, counters, limits and grants;
//! `POST /plugins/{name}/enable` restarts a quarantined plugin.

use super::{ApiError, AppState};
use crate::plugins::{EnableError, PluginInfo, PluginRuntime};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;

pub fn routes() -> Router<AppState> {
    Router::new().route("/plugins", get(list)).route("/plugins/{name}", get(one)).route("/plugins/{name}/enable", post(enable))
}

async fn list(State(st): State<AppState>) -> Json<Value> {
    let list = st.plugins.as_ref().map(|p| p.list()).unwrap_or_default();
    Json(serde_json::to_value(list).unwrap_or_default())
}

fn find(rt: Option<&PluginRuntime>, name: &str) -> Result<PluginInfo, ApiError> {
    let list = rt.map(|p| p.list()).unwrap_or_default();
    list.into_iter().find(|p| p.name == name).ok_or_else(|| ApiError::not_found(format!("plugin {name:?} not found")))
}

async fn one(State(st): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(serde_json::to_value(find(st.plugins.as_ref(), &name)?).unwrap_or_default()))
}

#[derive(serde::Deserialize)]
struct EnableQuery {
    /// Move the plugin's checkpoint to the head of the feed: the events it missed are dropped.
    #[serde(default)]
    skip_events: bool,
}

/// 200 with the plugin, now active; 404 unknown; 409 not quarantined; 422 it failed to
/// load again (it stays quarantined, the reason in `detail`).
async fn enable(State(st): State<AppState>, Path(name): Path<String>, Query(q): Query<EnableQuery>) -> Result<Json<Value>, ApiError> {
    let rt = st.plugins.as_ref().ok_or_else(|| ApiError::not_found(format!("plugin {name:?} not found")))?;
    match rt.enable(&name, q.skip_events).await {
        Ok(_) => Ok(Json(serde_json::to_value(find(Some(rt), &name)?).unwrap_or_default())),
        Err(e @ EnableError::NotFound(_)) => Err(ApiError::not_found(e.to_string())),
        Err(e @ EnableError::NotQuarantined(_)) => Err(ApiError::new(StatusCode::CONFLICT, e.to_string())),
        Err(e @ EnableError::Failed(_)) => Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())),
    }
}
