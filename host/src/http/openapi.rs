//! `/openapi.json`: the OpenAPI 3.1 document of the host's routes, plus the routes the
//! loaded plugins declared. Written by hand from one table rather than derived with a
//! macro crate: the routes are few, and plugin routes are only known at run time.
//!
//! Complete enough to generate a client from: every request and response has a schema,
//! priorities and run states are enums, each task has its own `POST /tasks/NAME` with its
//! params schema (any object when it declares none) as the body, and every status a route answers
//! is listed, errors with the `Error` schema (`{"detail": ...}`). The bundled db and stats
//! plugins' routes are described in full (history pages, one stored run, counts); another
//! plugin's routes are described by what the host knows of them (path parameters, a JSON
//! answer, the statuses a plugin call maps to).

use super::AppState;
use crate::scheduler::{Priority, TaskState};
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

pub fn routes() -> Router<AppState> {
    Router::new().route("/openapi.json", get(document))
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// One operation: its summary, parameters, optional JSON body (schema, required), the
/// answers it gives on success (status, schema) and the errors it may answer with
/// (status, why), each with the `Error` schema.
struct Op {
    summary: String,
    params: Vec<Value>,
    body: Option<(Value, bool)>,
    /// Status, media type, schema.
    ok: Vec<(&'static str, &'static str, Value)>,
    errors: Vec<(&'static str, &'static str)>,
    /// False: open, no token needed (the dashboard's page, `/metrics` when left open).
    secured: bool,
}

impl Op {
    fn new(summary: impl Into<String>) -> Op {
        Op { summary: summary.into(), params: vec![], body: None, ok: vec![], errors: vec![], secured: true }
    }
    fn param(mut self, p: Value) -> Op {
        self.params.push(p);
        self
    }
    fn body(mut self, schema: Value, required: bool) -> Op {
        self.body = Some((schema, required));
        // A body that is not JSON, or too large.
        self.errors.push(("400", "the body is not valid JSON"));
        self.errors.push(("413", "the body is larger than 1 MiB"));
        self
    }
    fn ok(mut self, code: &'static str, schema: Value) -> Op {
        self.ok.push((code, "application/json", schema));
        self
    }
    /// A text answer of `media` (HTML, metrics).
    fn ok_text(mut self, code: &'static str, media: &'static str) -> Op {
        self.ok.push((code, media, json!({"type": "string"})));
        self
    }
    fn err(mut self, code: &'static str, why: &'static str) -> Op {
        self.errors.push((code, why));
        self
    }
    /// Reads or writes the database: a failing one is a 503.
    fn db(self) -> Op {
        self.err("503", "the database is unavailable")
    }
    fn open(mut self) -> Op {
        self.secured = false;
        self
    }

    fn build(self) -> Value {
        let mut responses = Map::new();
        for (code, media, schema) in self.ok {
            responses.insert(code.into(), json!({"description": "OK", "content": {media: {"schema": schema}}}));
        }
        let mut errors = self.errors;
        if self.secured {
            // Once API tokens are in force (see `auth`).
            errors.push(("401", "no valid API token"));
            errors.push(("403", "the token's role may not do this"));
        }
        for (code, why) in errors {
            // Two causes of one status: one entry naming both.
            let entry = responses
                .entry(code)
                .or_insert_with(|| json!({"description": "", "content": {"application/json": {"schema": schema_ref("Error")}}}));
            let d = entry["description"].as_str().unwrap_or("");
            entry["description"] = json!(if d.is_empty() { why.to_string() } else { format!("{d}; {why}") });
        }
        let mut o = json!({"summary": self.summary, "parameters": self.params, "responses": responses});
        if let Some((schema, required)) = self.body {
            o["requestBody"] = json!({"required": required, "content": {"application/json": {"schema": schema}}});
        }
        if !self.secured {
            o["security"] = json!([]);
        }
        o
    }
}

fn path_param(name: &str, schema: Value) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": schema})
}

fn query(name: &str, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": schema, "description": description})
}

/// A repeatable query parameter (`?tags=a&tags=b`).
fn query_list(name: &str, items: Value, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "style": "form", "explode": true,
        "schema": {"type": "array", "items": items}, "description": description})
}

fn priority_query() -> Value {
    query("priority", schema_ref("Priority"), "the run's priority (the task's own by default)")
}

fn get_task() -> Op {
    Op::new("One task").ok("200", schema_ref("TaskInfo")).err("404", "unknown task").db()
}

fn patch_task() -> Op {
    Op::new("Enable or disable a task")
        .body(schema_ref("TaskUpdate"), true)
        .ok("200", schema_ref("TaskInfo"))
        .err("404", "unknown task")
        .err("422", "the body is not {\"enabled\": true|false}")
        .db()
}

/// The host's own routes. Queueing a run is described per task (in `build`), with the
/// params that task takes: a template `POST /tasks/{name}` would tell a client that any
/// object is params of any task.
fn host_paths(metrics_open: bool) -> Value {
    let run_id = || path_param("id", json!({"type": "string"}));
    let plugin = || path_param("name", json!({"type": "string"}));
    let metrics = Op::new("Prometheus metrics of this host (OpenMetrics text)").ok_text("200", "application/openmetrics-text");
    json!({
        "/tasks": {"get": Op::new("List tasks (those with at least one of `tags` when given)")
            .param(query_list("tags", json!({"type": "string"}), "only tasks having at least one of these tags"))
            .ok("200", json!({"type": "array", "items": schema_ref("TaskInfo")})).db().build()},
        "/tasks-status": {"get": Op::new("Live hosts and queue lengths").ok("200", schema_ref("TaskManagersStatus")).db().build()},
        "/tasks-queue": {"delete": Op::new("Abort every queued run; the runs aborted per priority")
            .ok("200", schema_ref("QueueCounts")).db().build()},
        "/tasks-queue/{priority}": {"delete": Op::new("Abort the queued runs of one priority; the runs aborted")
            .param(path_param("priority", schema_ref("Priority"))).ok("200", schema_ref("QueueCounts")).err("422", "not a priority").db().build()},
        "/task-runs/{id}": {
            "get": Op::new("One run").param(run_id()).ok("200", schema_ref("TaskRun")).err("404", "unknown run").db().build(),
        },
        "/task-runs/{id}/cancel": {
            "post": Op::new("Cancel a run: 200 when it was queued (now aborted), 202 when it is running (its host stops it)")
                .param(run_id()).ok("200", schema_ref("TaskRun")).ok("202", schema_ref("TaskRun"))
                .err("404", "unknown run").err("409", "the run already ended").db().build(),
        },
        "/plugins": {"get": Op::new("Loaded plugins and task components, and files that failed to load, with why")
            .ok("200", schema_ref("PluginList")).build()},
        "/plugins/{name}": {"get": Op::new("One plugin: state, counters, limits, grants")
            .param(plugin()).ok("200", schema_ref("PluginInfo")).err("404", "unknown plugin").build()},
        "/plugins/{name}/enable": {"post": Op::new("Re-enable a quarantined plugin (skip_events=true drops the events it missed, which needs admin)")
            .param(plugin()).param(query("skip_events", json!({"type": "boolean", "default": false}), "drop the events the plugin missed"))
            .ok("200", schema_ref("PluginInfo")).err("400", "skip_events is not true or false").err("404", "unknown plugin")
            .err("409", "the plugin is not quarantined").err("422", "it fails to load again (it stays quarantined)").db().build()},
        "/throughput": {"get": Op::new("Runs that ended on this host per 5 s bucket (succeeded, failed, other), oldest first")
            .param(query("minutes", json!({"type": "integer", "minimum": 1, "maximum": u32::MAX, "default": 10}), "how far back (at most 60 minutes are kept)"))
            .ok("200", schema_ref("Throughput")).err("422", "minutes is not a positive integer, or an unknown query parameter").build()},
        "/metrics": {"get": if metrics_open { metrics.open().build() } else { metrics.build() }},
        "/ui/": {"get": Op::new("The web dashboard (HTML; GET / redirects here)").open()
            .ok_text("200", "text/html").build()},
        "/token": {"get": Op::new("Whether API tokens are in force, and the role of the one sent").ok("200", schema_ref("TokenInfo")).build()},
    })
}

/// What a plugin call answers with when it serves a route (see `plugins::services::routes`).
fn plugin_errors(op: Op) -> Op {
    op.err("404", "not found (the plugin's answer)")
        .err("422", "invalid input (the plugin's answer)")
        .err("500", "the plugin failed")
        .err("502", "the plugin answered with invalid JSON")
        .err("503", "the plugin is unavailable (quarantined, out of time or busy)")
}

/// The routes of the bundled db and stats plugins, by (plugin, method, declared path).
fn bundled_route(plugin: &str, method: &str, path: &str) -> Option<Op> {
    Some(match (plugin, method, path) {
        ("db", "GET", "/task-history") => Op::new("History of runs (the db plugin), newest queued first, a page at a time")
            .param(query_list("task", json!({"type": "string"}), "runs of any of these tasks"))
            .param(query_list("state", schema_ref("TaskState"), "runs in any of these states"))
            .param(query_list("priority", schema_ref("Priority"), "runs of any of these priorities"))
            .param(query_list("tags", json!({"type": "string"}), "runs of tasks having at least one of these tags"))
            .param(query("start", schema_ref("TimeFilter"), "runs queued at or after this time"))
            .param(query("end", schema_ref("TimeFilter"), "runs queued at or before this time"))
            .param(json!({"name": "params", "in": "query", "required": false,
                "description": "runs whose params contain this JSON object (at most 64 keys, none with quotes or backslashes)",
                "content": {"application/json": {"schema": {"type": "object", "maxProperties": 64, "propertyNames": {"pattern": "^[^\"\\\\]*$"}}}}}))
            .param(query("limit", json!({"type": "integer", "minimum": 1, "maximum": u32::MAX, "default": 250}), "page size (at most 500 are returned)"))
            .param(query("cursor", json!({"type": "string", "format": "fluid-cursor"}),
                "the `cursor` of the previous page, opaque (base64url of the query it continues and a position); empty: the first page"))
            .ok("200", schema_ref("TaskRunHistoryPage")),
        ("db", "GET", "/task-history/{id}") => Op::new("One stored run (the db plugin)")
            .param(path_param("id", json!({"type": "string"})))
            .ok("200", schema_ref("TaskRunHistory")),
        ("stats", "GET", "/stats") => Op::new("Runs per task and state (the stats plugin)").ok("200", schema_ref("Stats")),
        _ => return None,
    })
}

/// The plugins whose file is byte for byte the bundled one: their routes are known.
fn bundled_plugins(st: &AppState) -> Vec<String> {
    use crate::plugins::bundled::BUNDLED;
    use crate::plugins::sha256;
    static SUMS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    let sums =
        SUMS.get_or_init(|| BUNDLED.iter().map(|(file, bytes)| (file.trim_end_matches(".wasm").to_string(), sha256(bytes))).collect());
    let list = st.plugins.as_ref().map(|p| p.list()).unwrap_or_default();
    list.into_iter()
        .filter(|p| sums.iter().any(|(name, sum)| *name == p.name && p.sha256.as_deref() == Some(sum.as_str())))
        .map(|p| p.name)
        .collect()
}

async fn document(State(st): State<AppState>) -> Json<Value> {
    Json(build(&st))
}

fn build(st: &AppState) -> Value {
    let tasks = st.scheduler.tasks();
    let mut paths = host_paths(st.auth.metrics_open());
    // Each task's own path: its POST's body is its params, as its schema declares them
    // (required when the task refuses none); a task without a schema takes any object.
    for task in tasks.iter() {
        let (schema, required) = match &task.params_schema {
            // Without a body the params are `{}`: when the task takes that, none (or null) is fine.
            Some(schema) if task.validate_params(Value::Null).is_err() => (schema.clone(), true),
            Some(schema) => (json!({"anyOf": [schema, {"type": "null"}]}), false),
            None => (json!({"type": ["object", "null"], "description": "any object; none is {}"}), false),
        };
        let batch = json!({"type": "array", "maxItems": crate::scheduler::MAX_BATCH, "items": schema.clone(),
            "description": "params, one per run"});
        paths[&format!("/tasks/{}/batch", task.name)] = json!({
            "post": Op::new(format!("Queue runs of {}, one per params, in one transaction (all or none)", task.name))
                .param(priority_query())
                .body(batch, true)
                .ok("201", json!({"type": "array", "items": schema_ref("TaskRun")}))
                .err("422", "params that do not fit (the first, by its index), too many runs, an unknown query parameter or a bad priority")
                .db()
                .build(),
        });
        paths[&format!("/tasks/{}", task.name)] = json!({
            "get": get_task().build(),
            "patch": patch_task().build(),
            "post": Op::new(format!("Queue a run of {}; the body is its params", task.name))
                .param(priority_query())
                .body(schema, required)
                .ok("201", schema_ref("TaskRun"))
                .err("422", "params the task refuses, an unknown query parameter or a bad priority")
                .db()
                .build(),
        });
    }
    if let Some(pr) = &st.plugin_routes {
        let bundled = bundled_plugins(st);
        for (method, path, plugin) in pr.routes() {
            let declared =
                path.strip_prefix(&crate::plugins::namespace(&plugin)).map_or(path.as_str(), |p| if p.is_empty() { "/" } else { p });
            let known = bundled.contains(&plugin).then(|| bundled_route(&plugin, &method, declared)).flatten();
            let op = known.unwrap_or_else(|| {
                let mut op = Op::new(format!("Served by plugin {plugin}")).ok("200", json!({}));
                for var in path.split('/').filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}'))) {
                    op = op.param(path_param(var, json!({"type": "string"})));
                }
                if method != "GET" {
                    op = op.body(json!({}), false);
                }
                op
            });
            paths[&path][method.to_lowercase()] = plugin_errors(op).build();
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "fluid", "version": env!("CARGO_PKG_VERSION"),
            "description": "A task scheduler whose plugins are WebAssembly components. Every error is {\"detail\": ...}."},
        "paths": paths,
        // Every route wants a token once one exists (see `auth`); the roles are in docs/http-api.md.
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                "description": "An API token from `fluid token create --role read|operate|admin`"}},
            "schemas": schemas(),
        }
    })
}

fn schemas() -> Value {
    let time = json!({"type": "string", "format": "date-time"});
    let time_or_null = json!({"type": ["string", "null"], "format": "date-time"});
    let text_or_null = json!({"type": ["string", "null"]});
    let strings = json!({"type": "array", "items": {"type": "string"}});
    let count = json!({"type": "integer", "minimum": 0});
    let states: Vec<&str> = TaskState::ALL.iter().map(|s| s.as_str()).collect();
    let priorities: Vec<&str> = Priority::ALL.iter().map(|p| p.as_str()).collect();
    let history_run = json!({"type": "object",
    "required": ["id", "task", "priority", "state", "queued", "start", "end", "params"],
    "properties": {
        "id": {"type": "string"}, "task": {"type": "string"}, "priority": schema_ref("Priority"), "state": schema_ref("TaskState"),
        "queued": time, "start": time_or_null, "end": time_or_null, "params": {"type": "object"},
        "tags": strings, "error": text_or_null, "retry_attempt": count, "rate_limit_attempt": count,
        "from_run_id": {"type": "string"}, "root_run_id": {"type": "string"}
    }});
    json!({
        "Error": {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}}},
        "TimeFilter": {"description": "RFC 3339 (a time without an offset is taken as UTC, as aio-fluid does), or microseconds since the epoch",
            "anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "pattern": "^-?[0-9]{1,18}$"}]},
        "Priority": {"type": "string", "enum": priorities, "description": "high runs start before medium, medium before low"},
        "TaskState": {"type": "string", "enum": states},
        "RetryPolicy": {"type": "object", "required": ["max_attempts", "wait", "backoff", "max_wait"], "properties": {
            "max_attempts": {"type": ["integer", "null"], "minimum": 0, "description": "retries after the first attempt; null: forever"},
            "wait": {"type": "number", "description": "seconds before the first retry"},
            "backoff": {"type": "number"}, "max_wait": {"type": "number"}
        }},
        "TaskInfo": {"type": "object", "required": [
            "name", "short_description", "description", "module", "priority", "max_concurrency", "schedule", "tags",
            "timeout_seconds", "retry", "rate_limit_retry", "params_schema", "enabled", "last_run_end", "last_run_duration", "last_run_state"
        ], "properties": {
            "name": {"type": "string"}, "short_description": {"type": "string"}, "description": {"type": "string"},
            "module": {"type": "string"}, "priority": schema_ref("Priority"), "max_concurrency": count,
            "schedule": {"type": ["string", "null"], "description": "`every(0:00:05)` or `crontab(...)`, as aio-fluid writes them"},
            "tags": strings, "timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
            "retry": {"oneOf": [schema_ref("RetryPolicy"), {"type": "null"}]},
            "rate_limit_retry": {"oneOf": [schema_ref("RetryPolicy"), {"type": "null"}]},
            "params_schema": {"type": ["object", "null"], "description": "the JSON schema of the task's params, when it declares one"},
            "enabled": {"type": "boolean"}, "last_run_end": time_or_null,
            "last_run_duration": {"type": ["string", "null"], "description": "ISO 8601 with fractions of seconds, as pydantic writes it: PT1.5S"},
            "last_run_state": {"oneOf": [schema_ref("TaskState"), {"type": "null"}]}
        }},
        "TaskUpdate": {"type": "object", "required": ["enabled"], "properties": {"enabled": {"type": "boolean"}}},
        "TaskRun": {"type": "object", "required": [
            "id", "task", "tags", "priority", "state", "params", "queued", "start", "end", "execute_after",
            "retry_attempt", "rate_limit_attempt", "from_run_id", "root_run_id", "error"
        ], "properties": {
            "id": {"type": "string", "description": "32 hex digits"}, "task": {"type": "string"}, "tags": strings,
            "priority": schema_ref("Priority"), "state": schema_ref("TaskState"), "params": {"type": "object"},
            "queued": time_or_null, "start": time_or_null, "end": time_or_null, "execute_after": time_or_null,
            "retry_attempt": count, "rate_limit_attempt": count,
            "from_run_id": {"type": "string"}, "root_run_id": {"type": "string"}, "error": text_or_null
        }},
        "TaskManagerStatus": {"type": "object", "required": ["kind", "status", "id", "this_host", "workers", "started_at", "heartbeat_at"], "properties": {
            "kind": {"type": "string"}, "status": {"type": "object", "description": "the same facts as aio-fluid's status object"},
            "id": {"type": "string"}, "this_host": {"type": "boolean"}, "workers": count, "started_at": time, "heartbeat_at": time
        }},
        "TaskManagersStatus": {"type": "object", "required": ["workers", "queues", "running_here", "backend"], "properties": {
            "workers": {"type": "array", "items": schema_ref("TaskManagerStatus")},
            "queues": schema_ref("QueueCounts"), "running_here": count, "backend": {"type": "string", "enum": ["sqlite", "postgres"]}
        }},
        "QueueCounts": {"type": "object", "description": "runs per priority",
            "properties": {"high": count, "medium": count, "low": count}, "additionalProperties": false},
        "PluginInfo": {"type": "object", "required": ["name", "version", "file", "sha256", "world", "tasks", "state", "error",
            "replacement_error", "subscriptions", "routes", "health", "limits", "grants"], "properties": {
            "name": {"type": "string"}, "version": text_or_null, "file": {"type": "string"}, "sha256": text_or_null,
            "world": {"type": "string"}, "tasks": strings,
            "state": {"type": "string", "description": "active, failing, quarantined, or failed (to load)"},
            "error": text_or_null, "replacement_error": text_or_null, "subscriptions": strings, "routes": strings,
            "health": {"type": ["object", "null"]}, "limits": {"type": ["object", "null"]}, "grants": {"type": ["object", "null"]}
        }},
        "PluginList": {"type": "array", "items": schema_ref("PluginInfo")},
        "Throughput": {"type": "object", "required": ["bucket_seconds", "minutes", "buckets"], "properties": {
            "bucket_seconds": count, "minutes": count,
            "buckets": {"type": "array", "items": {"type": "object", "required": ["start", "succeeded", "failed", "other"], "properties": {
                "start": time, "succeeded": count, "failed": count, "other": count
            }}}
        }},
        "TokenInfo": {"type": "object", "required": ["enforced", "role", "id"], "properties": {
            "enforced": {"type": "boolean"}, "role": {"type": "string", "enum": ["read", "operate", "admin"]}, "id": text_or_null
        }},
        "TaskRunHistory": history_run,
        "TaskRunHistoryPage": {"type": "object", "required": ["data", "cursor"], "properties": {
            "data": {"type": "array", "items": schema_ref("TaskRunHistory")},
            "cursor": {"type": "string", "description": "the next page's cursor; empty on the last page"}
        }},
        "Stats": {"type": "object", "description": "runs per task, per state",
            "additionalProperties": {"type": "object", "additionalProperties": count}},
    })
}
