//! `/tasks`, `/tasks/{name}`, `/tasks-status`, `/tasks-queue`.

use super::{ApiError, AppState, json_body, parse_query};
use crate::scheduler::{Priority, QueueOptions, Task};
use crate::store::TaskStatus;
use crate::time::{now_us, to_datetime};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::routing::{delete, get, post};
use axum::{Json, Router, body::Bytes};
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tasks", get(list))
        .route("/tasks/{name}", get(one).patch(patch).post(queue))
        .route("/tasks/{name}/batch", post(queue_batch))
        .route("/tasks-status", get(status))
        .route("/tasks-queue", delete(clear_all))
        .route("/tasks-queue/{priority}", delete(clear_one))
}

/// aio-fluid's `TaskInfo`: static options merged with the stored switches and last run.
pub fn task_info(t: &Task, s: Option<&TaskStatus>) -> Value {
    let default = TaskStatus { enabled: true, ..Default::default() };
    let s = s.unwrap_or(&default);
    let short = t.description.lines().next().unwrap_or("").to_string();
    json!({
        "name": t.name,
        "short_description": short,
        "description": t.description,
        "module": t.module,
        "priority": t.priority,
        "max_concurrency": t.max_concurrency,
        "schedule": t.schedule.as_ref().map(|s| s.to_string()),
        "tags": t.tags,
        "timeout_seconds": timeout_seconds(t.timeout),
        "retry": t.retry,
        "rate_limit_retry": t.rate_limit_retry,
        "params_schema": t.params_schema,
        "enabled": s.enabled,
        "last_run_end": s.last_run_end.map(to_datetime),
        "last_run_duration": s.last_run_duration_us.map(iso_duration),
        "last_run_state": s.last_run_state,
    })
}

/// Whole seconds as an integer, as aio-fluid's `timeout_seconds: int` (a fraction of a
/// second, which aio-fluid cannot express, stays a number with a fraction).
fn timeout_seconds(d: std::time::Duration) -> Value {
    if d.subsec_nanos() == 0 { json!(d.as_secs()) } else { json!(d.as_secs_f64()) }
}

/// ISO-8601 duration as pydantic writes it: `PT1.000969S`.
fn iso_duration(us: i64) -> String {
    let secs = us as f64 / 1e6;
    format!("PT{}S", (secs * 1e6).round() / 1e6)
}

async fn list(State(st): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<Vec<Value>>, ApiError> {
    let tags: Vec<String> = parse_query(q.as_deref()).into_iter().filter(|(k, _)| k == "tags").map(|(_, v)| v).collect();
    let statuses = st.scheduler.store().task_statuses().await?;
    let out = st
        .scheduler
        .tasks()
        .iter()
        .filter(|t| tags.is_empty() || tags.iter().any(|tag| t.tags.contains(tag)))
        .map(|t| task_info(t, statuses.get(&t.name)))
        .collect();
    Ok(Json(out))
}

fn find(st: &AppState, name: &str) -> Result<std::sync::Arc<Task>, ApiError> {
    st.scheduler.task(name).ok_or_else(|| ApiError::not_found(format!("task {name:?} not found")))
}

async fn one(State(st): State<AppState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let task = find(&st, &name)?;
    let statuses = st.scheduler.store().task_statuses().await?;
    Ok(Json(task_info(&task, statuses.get(&name))))
}

async fn patch(State(st): State<AppState>, Path(name): Path<String>, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
    let task = find(&st, &name)?;
    let body = body?;
    let enabled = match json_body(&body)? {
        Value::Object(m) => match m.get("enabled") {
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(ApiError::unprocessable(format!("\"enabled\" must be a boolean, got {other}"))),
            None => return Err(ApiError::unprocessable("body must contain \"enabled\": true or false")),
        },
        _ => return Err(ApiError::unprocessable("body must be an object {\"enabled\": bool}")),
    };
    st.scheduler.set_enabled(&name, enabled).await?;
    let statuses = st.scheduler.store().task_statuses().await?;
    Ok(Json(task_info(&task, statuses.get(&name))))
}

/// `?priority=` and nothing else: the options of a queued run.
fn queue_options(q: Option<&str>) -> Result<QueueOptions, ApiError> {
    let mut opts = QueueOptions::default();
    for (k, v) in parse_query(q) {
        match k.as_str() {
            "priority" => {
                opts.priority = Some(
                    Priority::parse(&v)
                        .ok_or_else(|| ApiError::unprocessable(format!("priority must be high, medium or low, got {v:?}")))?,
                )
            }
            other => return Err(ApiError::unprocessable(format!("unknown query parameter {other:?} (params go in the body)"))),
        }
    }
    Ok(opts)
}

/// What both queueing routes read first: the task exists, the options, the JSON body.
fn queue_request(
    st: &AppState,
    name: &str,
    q: Option<&str>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(QueueOptions, Value), ApiError> {
    find(st, name)?;
    let opts = queue_options(q)?;
    Ok((opts, json_body(&body?)?))
}

async fn queue(
    State(st): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    let (opts, params) = queue_request(&st, &name, q.as_deref(), body)?;
    let run = st.scheduler.queue(&name, params, opts).await?;
    Ok((axum::http::StatusCode::CREATED, Json(serde_json::to_value(run).unwrap_or_default())))
}

/// `POST /tasks/{name}/batch`: the body is a list of params; one run each, queued in one
/// transaction (all or none), answered in order.
async fn queue_batch(
    State(st): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    let (opts, list) = queue_request(&st, &name, q.as_deref(), body)?;
    let list = match list {
        Value::Array(list) => list,
        _ => return Err(ApiError::unprocessable("the body must be a JSON list of params, one per run")),
    };
    let runs = st.scheduler.queue_many(&name, list, opts).await?;
    Ok((axum::http::StatusCode::CREATED, Json(serde_json::to_value(runs).unwrap_or_default())))
}

fn queues_json(counts: &std::collections::BTreeMap<Priority, u64>) -> Value {
    Value::Object(counts.iter().map(|(p, n)| (p.as_str().to_string(), json!(n))).collect())
}

async fn status(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let sched = &st.scheduler;
    let cfg = sched.config();
    let alive_after = now_us() - cfg.heartbeat.host_timeout.as_micros() as i64;
    let hosts = sched.store().live_hosts(alive_after).await?;
    let queues = sched.store().queue_lengths().await?;
    let workers: Vec<Value> = hosts
        .iter()
        .map(|h| {
            let (started_at, heartbeat_at) = (to_datetime(h.started_at), to_datetime(h.heartbeat_at));
            json!({
                "kind": "fluid_host",
                // aio-fluid's `TaskManagerStatus.status`: what the host reports of itself.
                "status": {"id": h.id, "workers": h.workers, "started_at": started_at, "heartbeat_at": heartbeat_at},
                "id": h.id,
                "this_host": h.id == cfg.host_id,
                "workers": h.workers,
                "started_at": started_at,
                "heartbeat_at": heartbeat_at,
            })
        })
        .collect();
    Ok(Json(json!({
        "workers": workers,
        "queues": queues_json(&queues),
        "running_here": sched.running_here(),
        "backend": sched.store().backend.name(),
    })))
}

async fn clear_all(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let counts = st.scheduler.clear_queue(&Priority::ALL).await?;
    Ok(Json(queues_json(&counts)))
}

async fn clear_one(State(st): State<AppState>, Path(p): Path<String>) -> Result<Json<Value>, ApiError> {
    let p = Priority::parse(&p).ok_or_else(|| ApiError::unprocessable(format!("priority must be high, medium or low, got {p:?}")))?;
    let counts = st.scheduler.clear_queue(&[p]).await?;
    Ok(Json(queues_json(&counts)))
}
