//! The plugin side against the real components built from plugins/ and a real SQLite
//! file: the db plugin's history (every outcome, every filter, pagination), get-plugin
//! from a native task, and plugins that trap, are malformed or are of another world.

mod common;

use common::*;
use fluid_host::history::{HistoryQuery, TaskRunHistoryPage, get_db_plugin};
use fluid_host::plugins::bundled::guest_wasm_dir;
use fluid_host::scheduler::{QueueOptions, Scheduler};
use fluid_host::{Host, Priority, RetryPolicy, Task, TaskContext, TaskError, TaskRun, TaskState};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn tasks(report: Arc<Mutex<Option<TaskRunHistoryPage>>>) -> Vec<Task> {
    vec![
        Task::new("ok").tags(["blue"]).run(|_| async { Ok(()) }),
        Task::new("fail").tags(["red"]).run(|_| async { Err(TaskError::failed("boom")) }),
        Task::new("self_abort").run(|ctx: TaskContext| async move { Err(ctx.abort("not today")) }),
        Task::new("retry_once").retry(RetryPolicy::new(2).wait(Duration::from_millis(10))).run(|ctx: TaskContext| async move {
            if ctx.run.retry_attempt == 0 { Err(TaskError::failed("first attempt fails")) } else { Ok(()) }
        }),
        Task::new("exclusive").max_concurrency(1).run(|ctx: TaskContext| async move {
            ctx.cancelled().await;
            Ok(())
        }),
        Task::new("skipped").tags(["skip_db"]).run(|_| async { Ok(()) }),
        Task::new("forever").timeout(Duration::from_secs(600)).run(|ctx: TaskContext| async move {
            ctx.cancelled().await;
            Ok(())
        }),
        Task::new("report").run(move |ctx: TaskContext| {
            let report = report.clone();
            async move {
                let db = get_db_plugin(&ctx).ok_or_else(|| TaskError::failed("no db plugin"))?;
                let page = db
                    .get_history(&HistoryQuery { task: vec!["ok".into()], limit: Some(10), ..Default::default() })
                    .await
                    .map_err(TaskError::failed)?;
                for run in &page.data {
                    tracing::info!(id = %run.id, state = %run.state, "history");
                }
                *report.lock().unwrap() = Some(page);
                Ok(())
            }
        }),
    ]
}

async fn host(env: &TestEnv) -> (Host, Arc<Mutex<Option<TaskRunHistoryPage>>>) {
    let report = Arc::new(Mutex::new(None));
    let mut c = env.config();
    c.load_plugins = true;
    c.scheduler.workers = 4;
    (start(c, tasks(report.clone())).await, report)
}

async fn history(h: &Host, query: &str) -> Vec<Value> {
    let (status, body) = get_json(h, &format!("/task-history?{query}")).await;
    assert_eq!(status, 200, "{query}: {body}");
    body["data"].as_array().unwrap().clone()
}

fn ids(rows: &[Value]) -> HashSet<String> {
    rows.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
}

async fn run_to_end(s: &Scheduler, task: &str, params: Value) -> TaskRun {
    let run = queue(s, task, params).await;
    wait_done(s, &run.id).await
}

async fn history_records_every_outcome_with_error_attempts_and_lineage(db: Db) {
    let dir = TestEnv::new(db).await;
    let (h, _) = host(&dir).await;
    let s = h.scheduler.clone();
    let ok = run_to_end(&s, "ok", json!({"x": 1})).await;
    let fail = run_to_end(&s, "fail", json!({})).await;
    let aborted = run_to_end(&s, "self_abort", json!({})).await;
    let retried = queue(&s, "retry_once", json!({})).await;
    let retried = wait_run(&s, &retried.id, "success", |r| r.state == TaskState::Success).await;
    // rate_limited: the only slot of `exclusive` is held, the next run is refused at the door.
    let holder = queue(&s, "exclusive", json!({})).await;
    wait_state(&s, &holder.id, TaskState::Running).await;
    let limited = run_to_end(&s, "exclusive", json!({})).await;
    assert_eq!(limited.state, TaskState::RateLimited);
    s.cancel(&holder.id).await.unwrap();
    wait_done(&s, &holder.id).await;
    caught_up(&h, "db").await;

    let (status, row) = get_json(&h, &format!("/task-history/{}", ok.id)).await;
    assert_eq!(status, 200);
    assert_eq!((row["task"].as_str(), row["state"].as_str(), row["priority"].as_str()), (Some("ok"), Some("success"), Some("medium")));
    assert_eq!(row["params"], json!({"x": 1}));
    assert!(row["start"].is_string() && row["end"].is_string() && row["queued"].is_string());
    let (_, row) = get_json(&h, &format!("/task-history/{}", fail.id)).await;
    assert_eq!((row["state"].as_str(), row["error"].as_str()), (Some("failure"), Some("boom")));
    let (_, row) = get_json(&h, &format!("/task-history/{}", aborted.id)).await;
    assert_eq!((row["state"].as_str(), row["error"].as_str()), (Some("aborted"), Some("not today")));
    let (_, row) = get_json(&h, &format!("/task-history/{}", retried.id)).await;
    assert_eq!((row["state"].as_str(), row["retry_attempt"].as_u64()), (Some("success"), Some(1)));
    let (_, row) = get_json(&h, &format!("/task-history/{}", limited.id)).await;
    assert_eq!(row["state"], "rate_limited");
    assert!(row["start"].is_null(), "a run refused at the door never started: {row}");
    let (status, body) = get_json(&h, "/task-history/0123456789abcdef0123456789abcdef").await;
    assert_eq!(status, 404, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("not found"));
    h.shutdown(Duration::ZERO).await;
}

async fn interrupted_run_reaches_history_after_restart(db: Db) {
    let dir = TestEnv::new(db).await;
    let (h, _) = host(&dir).await;
    let run = queue(&h.scheduler, "forever", json!({})).await;
    wait_state(&h.scheduler, &run.id, TaskState::Running).await;
    h.shutdown(Duration::ZERO).await;
    // The `interrupted` change is in the feed; the db plugin gets it from its checkpoint.
    let (h, _) = host(&dir).await;
    caught_up(&h, "db").await;
    let (_, row) = get_json(&h, &format!("/task-history/{}", run.id)).await;
    assert_eq!(row["state"], "interrupted", "{row}");
    h.shutdown(Duration::ZERO).await;
}

async fn skip_db_tag_keeps_runs_out_of_history(db: Db) {
    let dir = TestEnv::new(db).await;
    let (h, _) = host(&dir).await;
    let skipped = run_to_end(&h.scheduler, "skipped", json!({})).await;
    let kept = run_to_end(&h.scheduler, "ok", json!({})).await;
    caught_up(&h, "db").await;
    let (status, _) = get_json(&h, &format!("/task-history/{}", skipped.id)).await;
    assert_eq!(status, 404);
    let (status, _) = get_json(&h, &format!("/task-history/{}", kept.id)).await;
    assert_eq!(status, 200);
    h.shutdown(Duration::ZERO).await;
}

async fn every_history_filter_alone_and_together(db: Db) {
    let dir = TestEnv::new(db).await;
    let (h, _) = host(&dir).await;
    let s = h.scheduler.clone();
    let a = run_to_end(&s, "ok", json!({"user": "ann", "n": 1})).await;
    let b = run_to_end(&s, "ok", json!({"user": "bob", "n": 2})).await;
    let c = run_to_end(&s, "fail", json!({"user": "ann", "n": 3})).await;
    let d = s.queue("ok", json!({"user": "cat"}), QueueOptions { priority: Some(Priority::High), ..Default::default() }).await.unwrap();
    let d = wait_done(&s, &d.id).await;
    caught_up(&h, "db").await;
    let set = |runs: &[&TaskRun]| runs.iter().map(|r| r.id.clone()).collect::<HashSet<_>>();

    assert_eq!(ids(&history(&h, "").await), set(&[&a, &b, &c, &d]));
    assert_eq!(ids(&history(&h, "task=fail").await), set(&[&c]));
    assert_eq!(ids(&history(&h, "task=fail&task=ok").await), set(&[&a, &b, &c, &d]));
    assert_eq!(ids(&history(&h, "state=failure").await), set(&[&c]));
    assert_eq!(ids(&history(&h, "state=failure&state=success").await), set(&[&a, &b, &c, &d]));
    assert_eq!(ids(&history(&h, "priority=high").await), set(&[&d]));
    let p = |v: Value| form(&v.to_string());
    assert_eq!(ids(&history(&h, &format!("params={}", p(json!({"user": "ann"})))).await), set(&[&a, &c]));
    assert_eq!(ids(&history(&h, &format!("params={}", p(json!({"user": "ann", "n": 3})))).await), set(&[&c]));
    assert!(history(&h, &format!("params={}", p(json!({"user": "nobody"})))).await.is_empty());
    assert_eq!(ids(&history(&h, "tags=red").await), set(&[&c]));
    assert_eq!(ids(&history(&h, "tags=red&tags=blue").await), set(&[&a, &b, &c, &d]));
    assert!(history(&h, "tags=nothing").await.is_empty());
    let iso = |r: &TaskRun| form(&r.queued.unwrap().to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    assert_eq!(ids(&history(&h, &format!("start={}", iso(&b))).await), set(&[&b, &c, &d]));
    assert_eq!(ids(&history(&h, &format!("end={}", iso(&b))).await), set(&[&a, &b]));
    assert_eq!(ids(&history(&h, &format!("start={}&end={}", iso(&b), iso(&c))).await), set(&[&b, &c]));
    // Together: every filter ANDed.
    let all = format!("task=ok&task=fail&state=success&priority=medium&tags=blue&start={}&params={}", iso(&a), p(json!({"user": "bob"})));
    assert_eq!(ids(&history(&h, &all).await), set(&[&b]));
    // Tags AND task, as aio-fluid: the intersection.
    assert!(history(&h, "tags=red&task=ok").await.is_empty());

    // The same query through the db plugin's `get_history` call.
    let db = fluid_host::history::DbPlugin::new(s.get_plugin("db").expect("db plugin"));
    let page = db.get_history(&HistoryQuery { state: vec!["failure".into()], ..Default::default() }).await.unwrap();
    assert_eq!(page.data.iter().map(|r| r.id.clone()).collect::<HashSet<_>>(), set(&[&c]));
    h.shutdown(Duration::ZERO).await;
}

fn form(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn bad_history_queries_get_4xx_with_a_message(db: Db) {
    let dir = TestEnv::new(db).await;
    let (h, _) = host(&dir).await;
    for q in [
        "state=bogus",
        "priority=urgent",
        "limit=0",
        "limit=ten",
        "params=%5B1%5D",
        "params=notjson",
        "start=yesterday",
        "cursor=%%%",
        "cursor=bm90LWEtY3Vyc29y",
    ] {
        let (status, body) = get_json(&h, &format!("/task-history?{q}")).await;
        assert!((400..500).contains(&status), "{q}: {status} {body}");
        assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{q}: {body}");
    }
    h.shutdown(Duration::ZERO).await;
}

async fn pages_never_repeat_or_skip_runs_sharing_one_queued_time(db: Db) {
    let dir = TestEnv::new(db).await;
    let (h, _) = host(&dir).await;
    let s = &h.scheduler;
    // 1,000 finished runs stored with the very same queued time.
    let t = chrono::Utc::now();
    let runs: Vec<TaskRun> = (0..1000)
        .map(|i| TaskRun {
            id: TaskRun::new_id(),
            task: "ok".into(),
            tags: vec!["blue".into()],
            priority: Priority::Medium,
            state: TaskState::Queued,
            params: json!({ "i": i }),
            queued: Some(t),
            start: None,
            end: None,
            execute_after: Some(t + chrono::Duration::days(365)),
            retry_attempt: 0,
            rate_limit_attempt: 0,
            from_run_id: String::new(),
            root_run_id: String::new(),
            error: None,
        })
        .collect();
    s.store().insert_runs(&runs).await.unwrap();
    caught_up(&h, "db").await;
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let q = if cursor.is_empty() { "limit=70".to_string() } else { format!("cursor={}", form(&cursor)) };
        let (status, body) = get_json(&h, &format!("/task-history?{q}")).await;
        assert_eq!(status, 200, "{body}");
        let data = body["data"].as_array().unwrap();
        assert!(data.len() <= 70);
        seen.extend(data.iter().map(|r| r["id"].as_str().unwrap().to_string()));
        pages += 1;
        cursor = body["cursor"].as_str().unwrap().to_string();
        if cursor.is_empty() {
            break;
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), 1000, "no duplicate");
    assert_eq!(unique.len(), 1000, "no gap");
    assert_eq!(unique, runs.iter().map(|r| &r.id).collect());
    assert_eq!(pages, 15);
    // The default page is 250 and the cap 500.
    assert_eq!(history(&h, "").await.len(), 250);
    assert_eq!(history(&h, "limit=5000").await.len(), 500);
    h.shutdown(Duration::ZERO).await;
}

async fn native_task_reads_history_through_get_plugin(db: Db) {
    let dir = TestEnv::new(db).await;
    let (h, report) = host(&dir).await;
    let s = h.scheduler.clone();
    let mut expected = HashSet::new();
    for _ in 0..3 {
        expected.insert(run_to_end(&s, "ok", json!({})).await.id);
    }
    run_to_end(&s, "fail", json!({})).await;
    caught_up(&h, "db").await;
    let r = run_to_end(&s, "report", json!({})).await;
    assert_eq!(r.state, TaskState::Success, "{:?}", r.error);
    let page = report.lock().unwrap().clone().expect("report ran");
    assert_eq!(page.data.iter().map(|r| r.id.clone()).collect::<HashSet<_>>(), expected);
    assert!(page.data.iter().all(|r| r.state == "success" && r.task == "ok"));
    // A missing plugin is None, a missing method a typed error: no trap, no panic.
    assert!(s.get_plugin("nope").is_none());
    let db = s.get_plugin("db").unwrap();
    let err = db.call_json("no_such_method", "{}".into()).await.unwrap_err();
    assert!(matches!(err, fluid_host::scheduler::PluginCallError::UnknownMethod(_)), "{err:?}");
    h.shutdown(Duration::ZERO).await;
}

async fn trapping_plugin_keeps_its_events_and_harms_no_one(db: Db) {
    let dir = TestEnv::new(db).await;
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(guest_wasm_dir().join("fluid_test_trap_events.wasm"), plugins.join("trap_events.wasm")).unwrap();
    let (h, _) = host(&dir).await;
    let s = h.scheduler.clone();
    let mut done = Vec::new();
    for _ in 0..5 {
        done.push(run_to_end(&s, "ok", json!({})).await);
    }
    caught_up(&h, "db").await;
    for r in &done {
        let (status, _) = get_json(&h, &format!("/task-history/{}", r.id)).await;
        assert_eq!(status, 200, "db plugin unaffected by the trapping one");
    }
    let rt = h.plugins.clone().unwrap();
    let trap = rt.get("trap_events").expect("loaded");
    poll("the trap to be recorded", WAIT, || {
        let trap = trap.clone();
        async move { (trap.health().traps > 0).then_some(()) }
    })
    .await;
    let health = trap.health();
    assert_eq!(health.checkpoint, 0, "no event of the trapping plugin was consumed");
    assert_eq!(health.state, "failing");
    let last_error = health.last_error.unwrap();
    assert!(last_error.contains("trapped"), "{last_error}");
    assert!(last_error.contains("trap_events refuses"), "the guest's panic message is kept: {last_error}");
    // A fresh instance answers after the trap.
    assert_eq!(s.get_plugin("trap_events").unwrap().call_json("ping", "{}".into()).await.unwrap(), "\"pong\"");
    let (status, list) = get_json(&h, "/plugins/trap_events").await;
    assert_eq!(status, 200);
    assert_eq!(list["state"], "failing");
    // The queue kept going all along.
    assert_eq!(run_to_end(&s, "ok", json!({})).await.state, TaskState::Success);
    h.shutdown(Duration::ZERO).await;
}

async fn malformed_and_foreign_components_are_refused_with_a_reason(db: Db) {
    let dir = TestEnv::new(db).await;
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::write(plugins.join("garbage.wasm"), b"\0asm this is not wasm at all").unwrap();
    std::fs::write(plugins.join("text.wasm"), b"hello").unwrap();
    std::fs::copy(guest_wasm_dir().join("not_a_plugin.wasm"), plugins.join("not_a_plugin.wasm")).unwrap();
    let (h, _) = host(&dir).await;
    let (status, list) = get_json(&h, "/plugins").await;
    assert_eq!(status, 200);
    let by_name =
        |n: &str| list.as_array().unwrap().iter().find(|p| p["name"] == n).cloned().unwrap_or_else(|| panic!("{n} listed: {list}"));
    for (name, why) in [("garbage", "not a valid component"), ("text", "not a WebAssembly file"), ("not_a_plugin", "task-manager-plugin")] {
        let p = by_name(name);
        assert_eq!(p["state"], "failed", "{p}");
        let err = p["error"].as_str().unwrap();
        assert!(err.contains(&format!("{name}.wasm")) && err.contains(why), "{name}: {err}");
    }
    assert_eq!(by_name("db")["state"], "active");
    assert_eq!(run_to_end(&h.scheduler, "ok", json!({})).await.state, TaskState::Success);
    h.shutdown(Duration::ZERO).await;
}

async fn replayed_events_never_regress_history(db: Db) {
    let dir = TestEnv::new(db).await;
    let (h, _) = host(&dir).await;
    let run = run_to_end(&h.scheduler, "ok", json!({})).await;
    caught_up(&h, "db").await;
    let store = h.scheduler.store().clone();
    h.shutdown(Duration::ZERO).await;
    drop(store);
    // Rewind the db plugin's checkpoint and drop the run's last change from the feed: on
    // restart the plugin gets only the older `queued` and `running` again, late.
    let s2 = fluid_host::store::Store::connect(&dir.url()).await.unwrap();
    s2.reset_checkpoint("db", 0).await.unwrap();
    s2.close().await;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&dir.url()).await.unwrap();
    let deleted =
        sqlx::query("DELETE FROM fluid_events WHERE run_id = $1 AND state = 'success'").bind(&run.id).execute(&pool).await.unwrap();
    assert_eq!(deleted.rows_affected(), 1);
    pool.close().await;
    let (h, _) = host(&dir).await;
    caught_up(&h, "db").await;
    let (_, row) = get_json(&h, &format!("/task-history/{}", run.id)).await;
    assert_eq!(row["state"], "success", "{row}");
    h.shutdown(Duration::ZERO).await;
}

async fn stats_plugin_counts_runs_per_task_and_state_at_its_route(db: Db) {
    let dir = TestEnv::new(db).await;
    let (h, _) = host(&dir).await;
    for _ in 0..2 {
        run_to_end(&h.scheduler, "ok", json!({})).await;
    }
    run_to_end(&h.scheduler, "fail", json!({})).await;
    caught_up(&h, "stats").await;
    let (status, body) = get_json(&h, "/stats").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"], json!({"queued": 2, "running": 2, "success": 2}));
    assert_eq!(body["fail"], json!({"queued": 1, "running": 1, "failure": 1}));
    let (_, doc) = get_json(&h, "/openapi.json").await;
    assert!(doc["paths"]["/stats"]["get"].is_object() && doc["paths"]["/task-history/{id}"]["get"].is_object());
    h.shutdown(Duration::ZERO).await;
}

crate::backend_tests!(
    history_records_every_outcome_with_error_attempts_and_lineage,
    interrupted_run_reaches_history_after_restart,
    skip_db_tag_keeps_runs_out_of_history,
    every_history_filter_alone_and_together,
    bad_history_queries_get_4xx_with_a_message,
    pages_never_repeat_or_skip_runs_sharing_one_queued_time,
    native_task_reads_history_through_get_plugin,
    trapping_plugin_keeps_its_events_and_harms_no_one,
    malformed_and_foreign_components_are_refused_with_a_reason,
    replayed_events_never_regress_history,
    stats_plugin_counts_runs_per_task_and_state_at_its_route,
);
