//! Every route of the HTTP API with its error codes, against the real server of a host on
//! a real SQLite file. The host does not consume (`consume = false`), so queue counts only
//! move when a request stores a run: each bad request is checked to store nothing.

mod common;

use common::*;
use fluid_host::{Host, Priority, RetryPolicy, Schedule, Task, TaskContext, TaskRun, TaskState};
use serde_json::{Value, json};
use std::time::Duration;

#[derive(serde::Deserialize, serde::Serialize)]
struct AddParams {
    a: i64,
    b: i64,
}

fn tasks() -> Vec<Task> {
    vec![
        Task::new("add")
            .description("Adds two numbers.\nSecond line.")
            .tags(["math", "example"])
            .params::<AddParams>()
            .max_concurrency(3)
            .timeout(Duration::from_secs(7))
            .retry(RetryPolicy::new(2).wait(Duration::from_secs(1)))
            .run(|_ctx: TaskContext| async { Ok(()) }),
        Task::new("urgent").priority(Priority::High).tags(["ops"]).run(|_ctx: TaskContext| async { Ok(()) }),
        Task::new("cleanup")
            .tags(["ops", "nightly"])
            .schedule(Schedule::cron("0 3 * * *").unwrap())
            .priority(Priority::Low)
            .run(|_ctx: TaskContext| async { Ok(()) }),
        Task::new("untagged").run(|_ctx: TaskContext| async { Ok(()) }),
    ]
}

async fn api_host(dir: &TestEnv) -> Host {
    let mut c = dir.config();
    c.scheduler.consume = false;
    start(c, tasks()).await
}

async fn get_json(http: &reqwest::Client, u: String) -> (u16, Value) {
    let r = http.get(u).send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

async fn queue_counts(http: &reqwest::Client, host: &Host) -> Value {
    let (code, status) = get_json(http, url(host, "/tasks-status")).await;
    assert_eq!(code, 200);
    status["queues"].clone()
}

/// Asserts an error response: its status and a JSON `{"detail": "..."}` mentioning `needle`.
async fn assert_error(r: reqwest::Response, code: u16, needle: &str) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(status, code, "body: {text}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("error body is not JSON: {text:?}"));
    let detail = v["detail"].as_str().unwrap_or_else(|| panic!("no detail in {v}"));
    assert!(detail.contains(needle), "{detail:?} does not mention {needle:?}");
}

fn names(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect();
    v.sort();
    v
}

async fn task_routes_describe_filter_and_toggle_tasks(db: Db) {
    let dir = TestEnv::new(db).await;
    let host = api_host(&dir).await;
    let http = client();

    let (code, list) = get_json(&http, url(&host, "/tasks")).await;
    assert_eq!(code, 200);
    assert_eq!(names(&list), ["add", "cleanup", "untagged", "urgent"]);
    let add = list.as_array().unwrap().iter().find(|t| t["name"] == "add").unwrap();
    for field in [
        "name",
        "short_description",
        "description",
        "module",
        "priority",
        "max_concurrency",
        "schedule",
        "tags",
        "timeout_seconds",
        "retry",
        "rate_limit_retry",
        "params_schema",
        "enabled",
        "last_run_end",
        "last_run_duration",
        "last_run_state",
    ] {
        assert!(add.get(field).is_some(), "TaskInfo lacks {field}: {add}");
    }
    assert_eq!(add["short_description"], "Adds two numbers.");
    assert_eq!(add["priority"], "medium");
    assert_eq!(add["max_concurrency"], 3);
    assert_eq!(add["timeout_seconds"], 7.0);
    assert_eq!(add["retry"]["max_attempts"], 2);
    assert_eq!(add["enabled"], true);
    assert_eq!(add["tags"], json!(["example", "math"]));
    assert_eq!(add["module"], "native");
    let cleanup = list.as_array().unwrap().iter().find(|t| t["name"] == "cleanup").unwrap();
    assert_eq!(cleanup["schedule"], "crontab(minute 0; hour 3; day *; month *; day_of_week *)");

    // ?tags= keeps tasks with at least one of the tags.
    let (_, ops) = get_json(&http, url(&host, "/tasks?tags=ops")).await;
    assert_eq!(names(&ops), ["cleanup", "urgent"]);
    let (_, either) = get_json(&http, url(&host, "/tasks?tags=math&tags=nightly")).await;
    assert_eq!(names(&either), ["add", "cleanup"]);
    let (code, none) = get_json(&http, url(&host, "/tasks?tags=nope")).await;
    assert_eq!((code, none), (200, json!([])));

    // One task; unknown is 404.
    let (code, one) = get_json(&http, url(&host, "/tasks/urgent")).await;
    assert_eq!((code, one["name"].as_str(), one["priority"].as_str()), (200, Some("urgent"), Some("high")));
    assert_error(http.get(url(&host, "/tasks/missing")).send().await.unwrap(), 404, "missing").await;

    // PATCH: 404 unknown, 400 garbage, 422 without a boolean "enabled"; state unchanged by errors.
    let patch = |name: &str| http.patch(url(&host, &format!("/tasks/{name}")));
    assert_error(patch("missing").json(&json!({"enabled": false})).send().await.unwrap(), 404, "missing").await;
    assert_error(patch("add").body("{not json").header("content-type", "application/json").send().await.unwrap(), 400, "JSON").await;
    assert_error(patch("add").json(&json!({})).send().await.unwrap(), 422, "enabled").await;
    assert_error(patch("add").json(&json!({"enabled": "no"})).send().await.unwrap(), 422, "enabled").await;
    assert_error(patch("add").json(&json!([false])).send().await.unwrap(), 422, "enabled").await;
    assert_error(patch("add").send().await.unwrap(), 422, "enabled").await;
    assert_eq!(get_json(&http, url(&host, "/tasks/add")).await.1["enabled"], true);
    let r = patch("add").json(&json!({"enabled": false})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["enabled"], false);
    assert_eq!(get_json(&http, url(&host, "/tasks/add")).await.1["enabled"], false);
    let (_, list) = get_json(&http, url(&host, "/tasks")).await;
    let enabled: Vec<bool> = list.as_array().unwrap().iter().map(|t| t["enabled"].as_bool().unwrap()).collect();
    assert_eq!(enabled.iter().filter(|e| !**e).count(), 1, "only add is disabled");

    // The OpenAPI document lists every route.
    let (code, doc) = get_json(&http, url(&host, "/openapi.json")).await;
    assert_eq!(code, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, methods) in [
        ("/tasks", &["get"][..]),
        ("/tasks/add", &["get", "patch", "post"]),
        ("/tasks/untagged", &["get", "patch", "post"]),
        ("/tasks-status", &["get"]),
        ("/tasks-queue", &["delete"]),
        ("/tasks-queue/{priority}", &["delete"]),
        ("/task-runs/{id}", &["get"]),
        ("/task-runs/{id}/cancel", &["post"]),
        ("/throughput", &["get"]),
        ("/metrics", &["get"]),
        ("/ui/", &["get"]),
    ] {
        for m in methods {
            assert!(doc["paths"][path][m].is_object(), "openapi.json lacks {m} {path}");
        }
    }
    assert_eq!(
        doc["paths"]["/plugins"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/PluginList"
    );
    assert_eq!(doc["components"]["schemas"]["PluginList"]["type"], "array", "GET /plugins answers an array");
    assert!(doc["paths"]["/task-runs/{id}/cancel"]["post"]["responses"]["202"].is_object(), "a running run's cancel is 202");
    assert!(doc["paths"]["/tasks"]["get"]["responses"]["401"].is_object() && doc["components"]["securitySchemes"]["bearer"].is_object());
    // A path nobody serves: JSON 404.
    assert_error(http.get(url(&host, "/no/such/route")).send().await.unwrap(), 404, "no route").await;
    // What axum answers by itself is JSON too: a method a known path does not take, a path
    // or query its extractors refuse.
    let wrong = http.post(url(&host, "/tasks-status")).send().await.unwrap();
    assert!(wrong.headers().get("allow").is_some(), "a 405 says what is allowed");
    assert_error(wrong, 405, "Method Not Allowed").await;
    assert_error(http.get(url(&host, "/task-runs/%FF")).send().await.unwrap(), 400, "").await;
    assert_error(http.post(url(&host, "/plugins/db/enable?skip_events=maybe")).send().await.unwrap(), 400, "skip_events").await;
    host.shutdown(Duration::from_secs(5)).await;
}

async fn queue_route_stores_valid_runs_and_nothing_for_bad_requests(db: Db) {
    let dir = TestEnv::new(db).await;
    let host = api_host(&dir).await;
    let http = client();
    let post = |path: &str| http.post(url(&host, path));
    let zero = json!({"high": 0, "medium": 0, "low": 0});
    assert_eq!(queue_counts(&http, &host).await, zero);

    // 201 with the queued run, stored and readable.
    let r = post("/tasks/add").json(&json!({"a": 1, "b": 2})).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let run: TaskRun = r.json().await.unwrap();
    assert_eq!((run.task.as_str(), run.state, run.priority), ("add", TaskState::Queued, Priority::Medium));
    assert_eq!(run.params, json!({"a": 1, "b": 2}));
    assert_eq!(run.id.len(), 32);
    assert_eq!(run.tags, ["example", "math"]);
    let (code, stored) = get_json(&http, url(&host, &format!("/task-runs/{}", run.id))).await;
    assert_eq!(code, 200);
    assert_eq!(serde_json::from_value::<TaskRun>(stored).unwrap(), run);
    // The task's priority, or the one asked for.
    let r = post("/tasks/urgent").send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<TaskRun>().await.unwrap().priority, Priority::High);
    let r = post("/tasks/untagged?priority=low").json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<TaskRun>().await.unwrap().priority, Priority::Low);
    let counts = json!({"high": 1, "medium": 1, "low": 1});
    assert_eq!(queue_counts(&http, &host).await, counts);

    // Bad requests: the right code, a JSON detail, and nothing stored.
    let big = format!("{{\"a\": 1, \"b\": 2, \"pad\": \"{}\"}}", "x".repeat(1 << 20));
    let json_body = |b: &str| b.to_string();
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (post("/tasks/missing").json(&json!({})), 404, "missing"),
        (post("/tasks/add").json(&json!({"a": 1})), 422, "missing field"),
        (post("/tasks/add").json(&json!({"a": "one", "b": 2})), 422, "invalid type"),
        (post("/tasks/add"), 422, "invalid params"),
        (post("/tasks/untagged").json(&json!([1, 2])), 422, "JSON object"),
        (post("/tasks/untagged").json(&json!({"x": ["a\u{0}b"]})), 422, "NUL"),
        (post("/tasks/untagged").json(&json!({"k\u{0}": 1})), 422, "NUL"),
        (post("/tasks/untagged").json(&json!({"p": vec![0; fluid_host::scheduler::MAX_PARAMS_VALUES]})), 422, "JSON values"),
        (post("/tasks/add?priority=urgent").json(&json!({"a": 1, "b": 2})), 422, "priority"),
        (post("/tasks/add?colour=red").json(&json!({"a": 1, "b": 2})), 422, "colour"),
        (post("/tasks/add").header("content-type", "application/json").body(json_body("{\"a\": 1,")), 400, "JSON"),
        (post("/tasks/add").header("content-type", "application/json").body(big), 413, ""),
    ];
    for (req, code, needle) in cases {
        assert_error(req.send().await.unwrap(), code, needle).await;
        assert_eq!(queue_counts(&http, &host).await, counts, "a rejected request stored a run (expected {code})");
    }
    // Run lookup: unknown ids are 404.
    assert_error(http.get(url(&host, "/task-runs/nope")).send().await.unwrap(), 404, "nope").await;
    host.shutdown(Duration::from_secs(5)).await;
}

async fn status_and_queue_routes_report_and_clear_queued_runs(db: Db) {
    let dir = TestEnv::new(db).await;
    let host = api_host(&dir).await;
    let http = client();
    let (code, status) = get_json(&http, url(&host, "/tasks-status")).await;
    assert_eq!(code, 200);
    assert_eq!(status["backend"], if db == Db::Sqlite { "sqlite" } else { "postgres" });
    assert_eq!(status["running_here"], 0);
    let me = status["workers"].as_array().unwrap().iter().find(|w| w["this_host"] == true).expect("this host is listed");
    assert_eq!(me["id"].as_str(), Some(host.scheduler.config().host_id.as_str()));

    let mut rx = host.scheduler.subscribe();
    let mut ids = Vec::new();
    for (task, n) in [("urgent", 2), ("add", 3), ("cleanup", 1)] {
        for _ in 0..n {
            let r = http.post(url(&host, &format!("/tasks/{task}"))).json(&json!({"a": 1, "b": 1})).send().await.unwrap();
            assert_eq!(r.status(), 201);
            ids.push(r.json::<TaskRun>().await.unwrap().id);
        }
    }
    assert_eq!(queue_counts(&http, &host).await, json!({"high": 2, "medium": 3, "low": 1}));

    assert_error(http.delete(url(&host, "/tasks-queue/urgent")).send().await.unwrap(), 422, "priority").await;
    let r = http.delete(url(&host, "/tasks-queue/high")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"high": 2}));
    assert_eq!(queue_counts(&http, &host).await, json!({"high": 0, "medium": 3, "low": 1}));
    let r = http.delete(url(&host, "/tasks-queue")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"high": 0, "medium": 3, "low": 1}));
    assert_eq!(queue_counts(&http, &host).await, json!({"high": 0, "medium": 0, "low": 0}));

    // Cleared runs are aborted, stored and broadcast like any other state change.
    for id in &ids {
        let (_, run) = get_json(&http, url(&host, &format!("/task-runs/{id}"))).await;
        assert_eq!((run["state"].as_str(), run["error"].as_str()), (Some("aborted"), Some("queue cleared")));
    }
    let mut aborted = Vec::new();
    while aborted.len() < ids.len() {
        let r = tokio::time::timeout(WAIT, rx.recv()).await.expect("cleared runs are broadcast").unwrap();
        if r.state == TaskState::Aborted {
            aborted.push(r.id);
        }
    }
    aborted.sort();
    ids.sort();
    assert_eq!(aborted, ids);
    host.shutdown(Duration::from_secs(5)).await;
}

/// `POST /tasks/{name}/batch`: one run per params in the list, queued together in order,
/// or none at all when one params is refused (named by its index).
async fn batch_route_queues_every_run_or_none(db: Db) {
    let dir = TestEnv::new(db).await;
    let host = api_host(&dir).await;
    let http = client();
    let post = |path: &str| http.post(url(&host, path));
    let list: Vec<Value> = (0..300).map(|i| json!({"a": i, "b": 1})).collect();
    let r = post("/tasks/add/batch?priority=low").json(&list).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let runs: Vec<TaskRun> = r.json().await.unwrap();
    assert_eq!(runs.len(), 300);
    assert!(runs.iter().enumerate().all(|(i, r)| r.params["a"] == i && r.state == TaskState::Queued && r.priority == Priority::Low));
    let (_, stored) = get_json(&http, url(&host, &format!("/task-runs/{}", runs[299].id))).await;
    assert_eq!(serde_json::from_value::<TaskRun>(stored).unwrap(), runs[299]);
    let counts = json!({"high": 0, "medium": 0, "low": 300});
    assert_eq!(queue_counts(&http, &host).await, counts);
    let mut bad = list.clone();
    bad[7] = json!({"a": "seven", "b": 1});
    let too_many: Vec<Value> = (0..=fluid_host::scheduler::MAX_BATCH).map(|_| json!({"a": 1, "b": 1})).collect();
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (post("/tasks/add/batch").json(&bad), 422, "[7]"),
        (post("/tasks/add/batch").json(&too_many), 422, "over the limit"),
        (post("/tasks/add/batch").json(&json!({"a": 1, "b": 2})), 422, "list"),
        (post("/tasks/missing/batch").json(&list), 404, "missing"),
    ];
    for (req, code, needle) in cases {
        assert_error(req.send().await.unwrap(), code, needle).await;
        assert_eq!(queue_counts(&http, &host).await, counts, "a refused batch stored runs (expected {code})");
    }
    host.shutdown(Duration::from_secs(5)).await;
}

crate::backend_tests!(
    task_routes_describe_filter_and_toggle_tasks,
    batch_route_queues_every_run_or_none,
    queue_route_stores_valid_runs_and_nothing_for_bad_requests,
    status_and_queue_routes_report_and_clear_queued_runs,
);
