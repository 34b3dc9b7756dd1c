//! `/openapi.json`: the OpenAPI 3.1 document of the host's routes, plus the routes the
//! loaded plugins declared. Written by hand from one table rather than derived with a
//! macro crate: the routes are few, and plugin routes are only known at run time.

use super::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

pub fn routes() -> Router<AppState> {
    Router::new().route("/openapi.json", get(document))
}

fn op(summary: &str, params: Value, body: Option<Value>, ok: &str, errors: &[(&str, &str)]) -> Value {
    let mut responses = serde_json::Map::new();
    // `200 Schema`, or `200|202 Schema` for an operation that answers either.
    let (codes, schema) = ok.split_once(' ').unwrap_or((ok, "object"));
    for code in codes.split('|') {
        responses.insert(
            code.into(),
            json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}}),
        );
    }
    // Every route once API tokens are in force (see `auth`).
    let auth: [(&str, &str); 2] = [("401", "no valid API token"), ("403", "the token's role may not do this")];
    for (code, what) in errors.iter().chain(&auth) {
        responses.insert(
            (*code).into(),
            json!({"description": what, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
        );
    }
    let mut o = json!({"summary": summary, "parameters": params, "responses": responses});
    if let Some(b) = body {
        o["requestBody"] = json!({"content": {"application/json": {"schema": b}}});
    }
    o
}

fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
}

async fn document(State(st): State<AppState>) -> Json<Value> {
    let name = json!([path_param("name")]);
    let id = json!([path_param("id")]);
    let mut paths = json!({
        "/tasks": {"get": op("List tasks", json!([{"name": "tags", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}, "style": "form", "explode": true}]), None, "200 TaskInfoList", &[])},
        "/tasks/{name}": {
            "get": op("One task", name.clone(), None, "200 TaskInfo", &[("404", "unknown task")]),
            "patch": op("Enable or disable a task", name.clone(), Some(json!({"type": "object", "required": ["enabled"], "properties": {"enabled": {"type": "boolean"}}})), "200 TaskInfo", &[("404", "unknown task"), ("400", "malformed JSON"), ("422", "missing or non-boolean enabled")]),
            "post": op("Queue a run; the body is the params", json!([path_param("name"), {"name": "priority", "in": "query", "schema": {"type": "string", "enum": ["high", "medium", "low"]}}]), Some(json!({"type": "object"})), "201 TaskRun", &[("404", "unknown task"), ("400", "malformed JSON"), ("413", "body too large"), ("422", "invalid params or priority")]),
        },
        "/tasks-status": {"get": op("Hosts and queue lengths", json!([]), None, "200 Status", &[])},
        "/tasks-queue": {"delete": op("Abort every queued run", json!([]), None, "200 QueueCounts", &[])},
        "/tasks-queue/{priority}": {"delete": op("Abort the queued runs of one priority", json!([path_param("priority")]), None, "200 QueueCounts", &[("422", "bad priority")])},
        "/plugins": {"get": op("Loaded plugins and files that failed to load", json!([]), None, "200 PluginList", &[])},
        "/plugins/{name}": {"get": op("One plugin: state, counters, limits, grants", json!([path_param("name")]), None, "200 object", &[("404", "unknown plugin")])},
        "/plugins/{name}/enable": {"post": op("Re-enable a quarantined plugin (skip_events=true drops the events it missed)", json!([path_param("name"), {"name": "skip_events", "in": "query", "schema": {"type": "boolean"}}]), None, "200 object", &[("404", "unknown plugin"), ("409", "not quarantined"), ("422", "fails to load")])},
        "/task-runs/{id}": {
            "get": op("One run", id.clone(), None, "200 TaskRun", &[("404", "unknown run")]),
            "delete": op("Cancel a queued (200) or running (202) run", id.clone(), None, "200|202 TaskRun", &[("404", "unknown run"), ("409", "run already ended")]),
        },
        "/throughput": {"get": op("Runs that ended on this host per 5 s bucket (succeeded, failed, other), oldest first", json!([{"name": "minutes", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 10}}]), None, "200 object", &[("422", "bad minutes")])},
        "/metrics": {"get": {"summary": "Prometheus metrics of this host (OpenMetrics text)", "responses": {"200": {"description": "OK", "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}}}}},
        "/ui/": {"get": {"summary": "The web dashboard (HTML; GET / redirects here)", "responses": {"200": {"description": "OK", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/token": {"get": op("Whether API tokens are in force, and the role of the one sent", json!([]), None, "200 TokenInfo", &[])},
    });
    // Each task's own params, where it declares them: the body of its POST.
    for task in st.scheduler.tasks() {
        if let Some(schema) = &task.params_schema {
            let path = format!("/tasks/{}", task.name);
            paths[&path]["post"] = op(
                &format!("Queue a run of {}; the body is its params", task.name),
                json!([{"name": "priority", "in": "query", "schema": {"type": "string", "enum": ["high", "medium", "low"]}}]),
                Some(schema.clone()),
                "201 TaskRun",
                &[("400", "malformed JSON"), ("413", "body too large"), ("422", "params that do not fit the schema, or a bad priority")],
            );
        }
    }
    if let Some(pr) = &st.plugin_routes {
        for (method, path, plugin) in pr.routes() {
            let params: Vec<Value> =
                path.split('/').filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).map(path_param).collect();
            paths[&path][method.to_lowercase()] = op(
                &format!("Served by plugin {plugin}"),
                json!(params),
                None,
                "200 object",
                &[("400", "bad input"), ("404", "not found"), ("422", "bad input"), ("503", "plugin unavailable")],
            );
        }
    }
    let run_props = json!({
        "id": {"type": "string"}, "task": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
        "priority": {"type": "string", "enum": ["high", "medium", "low"]},
        "state": {"type": "string", "enum": ["init", "queued", "running", "success", "failure", "aborted", "rate_limited", "interrupted"]},
        "params": {"type": "object"}, "queued": {"type": ["string", "null"], "format": "date-time"},
        "start": {"type": ["string", "null"], "format": "date-time"}, "end": {"type": ["string", "null"], "format": "date-time"},
        "execute_after": {"type": ["string", "null"], "format": "date-time"},
        "retry_attempt": {"type": "integer"}, "rate_limit_attempt": {"type": "integer"},
        "from_run_id": {"type": "string"}, "root_run_id": {"type": "string"}, "error": {"type": ["string", "null"]}
    });
    Json(json!({
        "openapi": "3.1.0",
        "info": {"title": "fluid", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        // Every route wants a token once one exists (see `auth`); the roles are in the README.
        "security": [{"bearer": []}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "An API token from `fluid token create`"}}, "schemas": {
            "Error": {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}}},
            "TaskRun": {"type": "object", "properties": run_props},
            "TaskInfo": {"type": "object", "properties": {
                "name": {"type": "string"}, "description": {"type": "string"}, "schedule": {"type": ["string", "null"]},
                "priority": {"type": "string"}, "timeout_seconds": {"type": "number"}, "max_concurrency": {"type": "integer"},
                "tags": {"type": "array", "items": {"type": "string"}}, "enabled": {"type": "boolean"},
                "last_run_end": {"type": ["string", "null"]}, "last_run_duration": {"type": ["string", "null"]}, "last_run_state": {"type": ["string", "null"]}
            }},
            "TaskInfoList": {"type": "array", "items": {"$ref": "#/components/schemas/TaskInfo"}},
            "PluginList": {"type": "array", "items": {"type": "object"}},
            "TokenInfo": {"type": "object", "required": ["enforced", "role"], "properties": {
                "enforced": {"type": "boolean"}, "role": {"type": "string", "enum": ["read", "operate", "admin"]}, "id": {"type": ["string", "null"]}
            }},
            "QueueCounts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "Status": {"type": "object"},
            "object": {"type": "object"}
        }}
    }))
}
