//! Task components (the `task` world) against real components built from plugins/ and a
//! real database: registration like native tasks, the seed's `report` reading the db
//! plugin's history, a fresh instance per run, timeouts and traps that fail one run
//! only, invalid definitions refused by file; and components written in Python and
//! JavaScript (plugins/polyglot/build.sh), loaded and exercised.

mod common;

use common::*;
use fluid_host::plugins::bundled::guest_wasm_dir;
use fluid_host::plugins::inspect::check_file;
use fluid_host::scheduler::PluginDirectory;
use fluid_host::{Host, Task, TaskContext, TaskError, TaskRun, TaskState};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

type Seen = Arc<Mutex<Vec<TaskRun>>>;

/// `my-task` (fails when params say so) and `sink`, which keeps every run it is handed.
fn native(seen: Seen) -> Vec<Task> {
    vec![
        Task::new("my-task").run(|ctx: TaskContext| async move {
            if ctx.params_json()["fail"] == json!(true) { Err(TaskError::failed("asked to fail")) } else { Ok(()) }
        }),
        Task::new("sink").run(move |ctx: TaskContext| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(ctx.run.clone());
                Ok(())
            }
        }),
    ]
}

/// A host loading the bundled plugins plus `files` (source path, name in the folder).
async fn host_with(env: &TestEnv, files: &[(PathBuf, &str)], cache: Option<PathBuf>) -> (Host, Seen) {
    let plugins = env.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for (src, name) in files {
        std::fs::copy(src, plugins.join(name)).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    }
    let seen = Seen::default();
    let mut c = env.config();
    c.load_plugins = true;
    c.scheduler.workers = 4;
    if cache.is_some() {
        c.cache_dir = cache;
    }
    (start(c, native(seen.clone())).await, seen)
}

fn guest(file: &str) -> PathBuf {
    guest_wasm_dir().join(file)
}

async fn run_to_end(h: &Host, task: &str, params: Value) -> TaskRun {
    let r = queue(&h.scheduler, task, params).await;
    wait_done(&h.scheduler, &r.id).await
}

/// The first run `sink` was handed whose parent is `parent`.
async fn child_of(seen: &Seen, parent: &str) -> TaskRun {
    poll(&format!("a child run of {parent}"), WAIT, || {
        let found = seen.lock().unwrap().iter().find(|r| r.from_run_id == parent).cloned();
        async move { found }
    })
    .await
}

async fn report_task_reads_the_history_of_my_task_through_the_db_plugin(db: Db) {
    let env = TestEnv::new(db).await;
    let (h, seen) = host_with(&env, &[(guest("fluid_report_task.wasm"), "report.wasm")], None).await;
    let report = h.scheduler.task("report").expect("the component's task is registered");
    assert_eq!((report.module.as_str(), report.timeout.as_millis()), ("report", 10_000));
    assert!(report.tags.contains("example"));
    for fail in [false, true, false] {
        run_to_end(&h, "my-task", json!({"fail": fail})).await;
    }
    caught_up(&h, "db").await;
    let run = run_to_end(&h, "report", json!({"forward_to": "sink"})).await;
    assert_eq!(run.state, TaskState::Success, "{:?}", run.error);
    let child = child_of(&seen, &run.id).await;
    assert_eq!(child.root_run_id, run.id, "lineage: the report run is the root");
    let history: fluid_host::history::TaskRunHistoryPage = {
        let rt = h.plugins.clone().unwrap();
        let out = rt.call("db", "get_history", json!({"task": ["my-task"], "limit": 10}).to_string()).await.expect("history");
        serde_json::from_str(&out).unwrap()
    };
    let expected: Vec<Value> = history.data.iter().map(|r| json!([r.id, r.state])).collect();
    assert_eq!(expected.len(), 3);
    assert_eq!(child.params["runs"], Value::Array(expected), "what report read is the history");
    h.shutdown(std::time::Duration::from_secs(1)).await;
}

async fn a_task_run_that_spins_traps_or_aborts_ends_alone_and_each_run_gets_a_fresh_instance(db: Db) {
    let env = TestEnv::new(db).await;
    let (h, _) = host_with(&env, &[(guest("fluid_test_task_cases.wasm"), "cases.wasm")], None).await;
    let spin = run_to_end(&h, "spin", json!({})).await;
    assert_eq!(spin.state, TaskState::Failure);
    assert!(spin.error.as_deref().unwrap_or("").contains("timeout"), "{:?}", spin.error);
    let boom = run_to_end(&h, "boom", json!({})).await;
    assert_eq!(boom.state, TaskState::Failure);
    assert!(boom.error.as_deref().unwrap_or("").contains("trapped"), "{:?}", boom.error);
    // The guest's own words: its panic message, from the tail of its stderr.
    let error = boom.error.as_deref().unwrap_or("");
    assert!(error.starts_with("trapped: panicked at") && error.contains("boom (wasm"), "its words first, then the trap: {error}");
    let give_up = run_to_end(&h, "give-up", json!({})).await;
    assert_eq!((give_up.state, give_up.retry_attempt), (TaskState::Aborted, 0), "aborted is never retried");
    for _ in 0..3 {
        let count = run_to_end(&h, "count", json!({})).await;
        assert_eq!(count.state, TaskState::Success, "a reused instance would count past 1: {:?}", count.error);
    }
    let native = run_to_end(&h, "my-task", json!({})).await;
    assert_eq!(native.state, TaskState::Success, "the host is unaffected");
    h.shutdown(std::time::Duration::from_secs(1)).await;
}

async fn an_invalid_task_component_is_refused_by_file_and_the_others_load(db: Db) {
    let env = TestEnv::new(db).await;
    let files = [(guest("fluid_test_bad_tasks.wasm"), "bad_tasks.wasm"), (guest("fluid_test_task_cases.wasm"), "cases.wasm")];
    let (h, _) = host_with(&env, &files, None).await;
    let list = h.plugins.clone().unwrap().list();
    let bad = list.iter().find(|p| p.name == "bad_tasks").expect("listed");
    let why = bad.error.clone().unwrap_or_default();
    assert_eq!(bad.state, "failed");
    assert!(why.contains("bad_tasks.wasm") && why.contains("\"twice\"") && why.contains("defined twice"), "{why}");
    assert!(h.scheduler.task("fine").is_none(), "no task of a refused file is registered");
    let cases = list.iter().find(|p| p.name == "cases").expect("listed");
    assert_eq!((cases.world.as_str(), cases.tasks.len()), ("fluid:scheduler/task@0.1.1", 4));
    assert!(h.scheduler.task("spin").is_some());
    h.shutdown(std::time::Duration::from_secs(1)).await;
}

crate::backend_tests!(
    report_task_reads_the_history_of_my_task_through_the_db_plugin,
    a_task_run_that_spins_traps_or_aborts_ends_alone_and_each_run_gets_a_fresh_instance,
    an_invalid_task_component_is_refused_by_file_and_the_others_load,
);

#[test]
fn plugins_check_names_the_world_a_component_implements() {
    assert_eq!(check_file(&guest("fluid_report_task.wasm"), None).unwrap(), Ok("fluid:scheduler/task@0.1.1".to_string()));
    assert_eq!(check_file(&guest("fluid_test_event_log.wasm"), None).unwrap(), Ok("fluid:scheduler/plugin@0.1.1".to_string()));
    let why = check_file(&guest("not_a_plugin.wasm"), None).unwrap().unwrap_err();
    assert!(why.contains("task-manager-plugin") && why.contains("task-component"), "{why}");
}

/// plugins/polyglot/out, built by plugins/polyglot/build.sh.
fn polyglot(file: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/polyglot/out").join(file);
    assert!(p.exists(), "{} missing: run plugins/polyglot/build.sh first (the README's test command does)", p.display());
    p
}

/// Compiled polyglot components (12-18 MB each, ~10 s to compile) are kept beside the
/// guests' build, outside any test's temp folder, so reruns do not compile them again.
fn polyglot_cache() -> PathBuf {
    guest_wasm_dir().join("polyglot-cache")
}

/// One host loads the four polyglot components (kept to one test: they are big).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_and_tasks_written_in_python_and_javascript_load_and_work() {
    let env = TestEnv::new(Db::Sqlite).await;
    let files = [
        (polyglot("pycount.wasm"), "pycount.wasm"),
        (polyglot("pytasks.wasm"), "pytasks.wasm"),
        (polyglot("jsfailures.wasm"), "jsfailures.wasm"),
        (polyglot("jstasks.wasm"), "jstasks.wasm"),
    ];
    let (h, seen) = host_with(&env, &files, Some(polyglot_cache())).await;
    let list = h.plugins.clone().unwrap().list();
    for name in ["pycount", "pytasks", "jsfailures", "jstasks"] {
        let p = list.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("{name} listed"));
        assert_eq!(p.error, None, "{name}");
    }
    // Python task: a child run with the sum, lineage kept; a negative `a` aborts.
    let sum = run_to_end(&h, "py-sum", json!({"a": 2, "b": 40, "forward_to": "sink"})).await;
    assert_eq!(sum.state, TaskState::Success, "{:?}", sum.error);
    assert_eq!(child_of(&seen, &sum.id).await.params, json!({"sum": 42}));
    let neg = run_to_end(&h, "py-sum", json!({"a": -1})).await;
    assert_eq!((neg.state, neg.error.as_deref()), (TaskState::Aborted, Some("a is negative")));
    // JavaScript task: the same contract.
    let doubled = run_to_end(&h, "js-double", json!({"n": 21, "forward_to": "sink"})).await;
    assert_eq!(doubled.state, TaskState::Success, "{:?}", doubled.error);
    assert_eq!(child_of(&seen, &doubled.id).await.params, json!({"doubled": 42}));
    let neg = run_to_end(&h, "js-double", json!({"n": -1})).await;
    assert_eq!((neg.state, neg.error.as_deref()), (TaskState::Aborted, Some("n is negative")));
    // Each declares its params as a JSON Schema: params that do not fit are refused over
    // HTTP with the reason (a 422, nothing queued), whatever language the task is in.
    for (task, bad, at) in [("js-double", json!({"n": "21"}), "/n"), ("py-sum", json!({"a": 1.5}), "/a")] {
        let r = client().post(url(&h, &format!("/tasks/{task}"))).json(&bad).send().await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        let detail = body["detail"].as_str().unwrap_or_default();
        assert_eq!(status, 422, "{task}: {body}");
        assert!(detail.contains(at) && detail.contains("integer"), "{task}: {detail}");
    }
    // The OpenAPI document describes each task's params: the body of its own POST.
    let doc: Value = client().get(url(&h, "/openapi.json")).send().await.unwrap().json().await.unwrap();
    let body = &doc["paths"]["/tasks/js-double"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    // (Its params may be left out, so the body may be null too.)
    assert_eq!(body["anyOf"][0]["properties"]["n"]["type"], "integer", "{body}");
    // Plugins: Python counts finished runs per task, JavaScript records failures.
    let ok = run_to_end(&h, "my-task", json!({})).await;
    let failed = run_to_end(&h, "my-task", json!({"fail": true})).await;
    caught_up(&h, "pycount").await;
    caught_up(&h, "jsfailures").await;
    let rt = h.plugins.clone().unwrap();
    let counts: Value = serde_json::from_str(&rt.call("pycount", "counts", String::new()).await.expect("pycount")).unwrap();
    assert_eq!(counts["my-task"], json!({"success": 1, "failure": 1}), "{counts} (ok run {})", ok.id);
    assert_eq!(counts["py-sum"], json!({"success": 1, "aborted": 1}), "{counts}");
    let failures: Value = serde_json::from_str(&rt.call("jsfailures", "failures", String::new()).await.expect("jsfailures")).unwrap();
    assert_eq!(failures, json!([[failed.id, "my-task", "asked to fail"]]));
    h.shutdown(std::time::Duration::from_secs(1)).await;
}
