//! Hostile plugins against a real host: each attack is its own component
//! (plugins/testing/<attack>), loaded beside the bundled db and stats plugins on a real
//! SQLite file. For every attack: the host stays up, the attacker gets a typed error or
//! an empty hand (never a crash of anything but its own instance), the queue and the db
//! plugin keep going, nothing stored is lost or altered, and the failure shows in
//! `/plugins`. Attackers run with a 300 ms call limit and 16 MiB of memory so this stays
//! fast; the db and stats plugins keep production limits.

mod common;

use common::*;
use fluid_host::plugins::bundled::guest_wasm_dir;
use fluid_host::scheduler::PluginCallError;
use fluid_host::{Host, Task, TaskError, TaskRun, TaskState};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// Limits for the attackers; the bundled plugins keep theirs.
const LIMITS: &str = r#"
[limits]
call_timeout_ms = 300
memory_mib = 16
max_args_kib = 64
max_result_kib = 64
quarantine_after = 3
quarantine_window_s = 60

[plugins.db.limits]
call_timeout_ms = 10000
memory_mib = 64
max_args_kib = 2048
max_result_kib = 8192

[plugins.stats.limits]
call_timeout_ms = 10000
memory_mib = 64
max_args_kib = 2048
max_result_kib = 8192
"#;

fn tasks() -> Vec<Task> {
    vec![Task::new("ok").run(|_| async { Ok(()) }), Task::new("fail").run(|_| async { Err(TaskError::failed("boom")) })]
}

/// The component built from plugins/testing/<krate>, as the plugin file `<name>.wasm`.
fn install(dir: &Path, krate: &str) {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let name = krate.replace('-', "_");
    std::fs::copy(guest_wasm_dir().join(format!("fluid_test_{name}.wasm")), plugins.join(format!("{name}.wasm"))).unwrap();
}

/// A host with the bundled plugins, the given attackers and `LIMITS` + `extra` as fluid.toml.
async fn host(dir: &Path, attackers: &[&str], extra: &str) -> Host {
    for a in attackers {
        install(dir, a);
    }
    std::fs::write(dir.join("fluid.toml"), format!("{LIMITS}\n{extra}")).unwrap();
    let mut c = config(dir);
    c.load_plugins = true;
    c.scheduler.workers = 2;
    start(c, tasks()).await
}

async fn call(h: &Host, plugin: &str, method: &str, args: Value) -> Result<Value, PluginCallError> {
    let p = h.scheduler.get_plugin(plugin).unwrap_or_else(|| panic!("{plugin} loaded"));
    p.call_json(method, args.to_string()).await.map(|s| serde_json::from_str(&s).expect("JSON result"))
}

/// Runs that ended before the attack, and their history rows as the db plugin stored them.
struct Before(Vec<(TaskRun, Value)>);

async fn before(h: &Host) -> Before {
    let mut out = Vec::new();
    for task in ["ok", "fail"] {
        let run = queue(&h.scheduler, task, json!({ "before": true })).await;
        out.push(wait_done(&h.scheduler, &run.id).await);
    }
    caught_up(h, "db").await;
    let mut rows = Vec::new();
    for run in out {
        let (status, row) = get_json(h, &format!("/task-history/{}", run.id)).await;
        assert_eq!(status, 200);
        rows.push((run, row));
    }
    Before(rows)
}

/// The guarantees every attack must leave standing: a new run goes through the queue and
/// into history, every earlier run and history row is exactly as it was, and the db
/// plugin is active with no trap.
async fn unharmed(h: &Host, before: &Before) {
    let run = queue(&h.scheduler, "ok", json!({ "after": true })).await;
    assert_eq!(wait_done(&h.scheduler, &run.id).await.state, TaskState::Success, "the queue keeps going");
    caught_up(h, "db").await;
    let (status, row) = get_json(h, &format!("/task-history/{}", run.id)).await;
    assert_eq!((status, row["state"].as_str()), (200, Some("success")), "the db plugin keeps recording: {row}");
    for (run, row) in &before.0 {
        assert_eq!(h.scheduler.get_run(&run.id).await.unwrap().as_ref(), Some(run), "stored run unchanged");
        assert_eq!(&get_json(h, &format!("/task-history/{}", run.id)).await.1, row, "history row unchanged");
    }
    let db = plugin_info(h, "db").await;
    assert_eq!((db["state"].as_str(), db["health"]["traps"].as_u64()), (Some("active"), Some(0)), "{db}");
}

fn unavailable(r: Result<Value, PluginCallError>) -> String {
    match r {
        Err(PluginCallError::Unavailable(m)) => m,
        other => panic!("expected unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_is_stopped_at_its_time_limit_and_the_next_call_gets_a_fresh_instance() {
    let dir = TempDir::new();
    let h = host(dir.path(), &["infinite-loop"], "").await;
    let b = before(&h).await;
    let t = Instant::now();
    let msg = unavailable(call(&h, "infinite_loop", "spin", json!({})).await);
    assert!(msg.contains("time limit"), "{msg}");
    assert!(t.elapsed() < Duration::from_secs(3), "stopped near its 300 ms limit, took {:?}", t.elapsed());
    assert_eq!(call(&h, "infinite_loop", "ping", json!({})).await.unwrap(), "pong");
    let info = plugin_info(&h, "infinite_loop").await;
    assert_eq!((info["health"]["traps"].as_u64(), info["state"].as_str()), (Some(1), Some("active")), "{info}");
    assert!(info["error"].as_str().unwrap().contains("time limit"));
    assert_eq!(info["limits"]["call_timeout_ms"], 300);
    unharmed(&h, &b).await;
    h.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_whose_callers_gave_up_leave_the_queue_unrun() {
    let dir = TempDir::new();
    let h = host(dir.path(), &["infinite-loop"], "").await;
    // Sixteen callers give up while the first call spins to its time limit: fifteen of
    // their calls wait in the plugin's queue, which holds sixteen.
    let plugin = h.scheduler.get_plugin("infinite_loop").unwrap();
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let plugin = plugin.clone();
        callers.spawn(async move { tokio::time::timeout(Duration::from_millis(50), plugin.call_json("spin", "{}".into())).await });
    }
    while let Some(r) = callers.join_next().await {
        assert!(r.unwrap().is_err(), "the caller gave up");
    }
    // The next call finds room, and runs as soon as the spinning one is stopped: the
    // abandoned calls are dropped unrun, not run for nobody one after another.
    assert_eq!(call(&h, "infinite_loop", "ping", json!({})).await.unwrap(), "pong");
    let info = plugin_info(&h, "infinite_loop").await;
    assert_eq!((info["health"]["calls"].as_u64(), info["health"]["traps"].as_u64()), (Some(2), Some(1)), "{info}");
    h.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_of_runs_with_array_heavy_params_are_served_whole() {
    let dir = TempDir::new();
    let h = host(dir.path(), &[], "").await;
    let b = before(&h).await;
    // Params near the limit of values: a page of many would not fit in the db plugin's
    // memory, parsed at once.
    let heavy = json!({ "p": vec![0; fluid_host::scheduler::MAX_PARAMS_VALUES - 2] });
    let mut runs = Vec::new();
    for _ in 0..6 {
        runs.push(queue(&h.scheduler, "ok", heavy.clone()).await);
    }
    for run in &runs {
        wait_done(&h.scheduler, &run.id).await;
    }
    caught_up(&h, "db").await;
    let (mut cursor, mut seen, mut pages) = (String::new(), Vec::new(), 0);
    loop {
        let after = if cursor.is_empty() { String::new() } else { format!("&cursor={cursor}") };
        let (status, page) = get_json(&h, &format!("/task-history?task=ok&limit=100{after}")).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        for row in page["data"].as_array().unwrap() {
            seen.push(row["id"].as_str().unwrap().to_string());
        }
        cursor = page["cursor"].as_str().unwrap_or_default().to_string();
        if cursor.is_empty() {
            break;
        }
    }
    assert!(runs.iter().all(|r| seen.contains(&r.id)), "every run is served");
    assert!(pages > 1, "pages are cut by the values they parse, the cursor goes on from there");
    unharmed(&h, &b).await;
    h.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upsert_larger_than_a_select_may_read_back_is_refused() {
    let dir = TempDir::new();
    let h = host(dir.path(), &["attacker"], "[plugins.attacker.limits]\nmax_read_mib = 1\n").await;
    let b = before(&h).await;
    let r = call(&h, "attacker", "fill", json!({ "rows": 1, "bytes": 1_200_000, "chunk": 1 })).await.unwrap();
    let error = r["error"].as_str().unwrap_or_default();
    assert!(error.contains("InvalidValue") && error.contains("max_read_mib"), "{r}");
    let r = call(&h, "attacker", "fill", json!({ "rows": 4, "bytes": 200_000, "chunk": 4 })).await.unwrap();
    assert_eq!(r["written"], 4, "{r}");
    unharmed(&h, &b).await;
    h.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_traps_its_own_instance_only() {
    let dir = TempDir::new();
    let h = host(dir.path(), &["deep-recursion"], "").await;
    let b = before(&h).await;
    let msg = unavailable(call(&h, "deep_recursion", "recurse", json!({})).await);
    assert!(msg.contains("trapped"), "{msg}");
    assert_eq!(call(&h, "deep_recursion", "ping", json!({})).await.unwrap(), "pong");
    assert_eq!(plugin_info(&h, "deep_recursion").await["health"]["traps"], 1);
    unharmed(&h, &b).await;
    h.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_stops_at_its_memory_cap() {
    let dir = TempDir::new();
    let h = host(dir.path(), &["memory-bomb"], "").await;
    let b = before(&h).await;
    let msg = unavailable(call(&h, "memory_bomb", "bomb", json!({})).await);
    assert!(msg.contains("trapped"), "{msg}");
    assert_eq!(call(&h, "memory_bomb", "ping", json!({})).await.unwrap(), "pong");
    let info = plugin_info(&h, "memory_bomb").await;
    assert_eq!((info["health"]["traps"].as_u64(), info["limits"]["memory_mib"].as_u64()), (Some(1), Some(16)), "{info}");
    unharmed(&h, &b).await;
    h.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_results_and_arguments_are_typed_errors_not_traps() {
    let dir = TempDir::new();
    let h = host(dir.path(), &["huge-result"], "").await;
    let b = before(&h).await;
    match call(&h, "huge_result", "huge", json!({ "kib": 1024 })).await {
        Err(PluginCallError::Failed(m)) => assert!(m.contains("over the limit of 65536 bytes"), "{m}"),
        other => panic!("expected failed, got {other:?}"),
    }
    let big = json!({ "pad": "y".repeat(100 * 1024) });
    match call(&h, "huge_result", "size", big).await {
        Err(PluginCallError::InvalidInput(m)) => assert!(m.contains("exceed the limit"), "{m}"),
        other => panic!("expected invalid input, got {other:?}"),
    }
    assert!(call(&h, "huge_result", "size", json!({ "pad": "small" })).await.is_ok());
    assert_eq!(call(&h, "huge_result", "huge", json!({ "kib": 1 })).await.unwrap().as_str().unwrap().len(), 1024);
    let info = plugin_info(&h, "huge_result").await;
    assert_eq!((info["health"]["traps"].as_u64(), info["state"].as_str()), (Some(0), Some("active")), "{info}");
    assert!(info["error"].as_str().unwrap().contains("over the limit"));
    unharmed(&h, &b).await;
    h.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_over_a_plugins_size_limit_is_delivered_without_its_params_not_held() {
    let dir = TempDir::new();
    let h = host(dir.path(), &["event-log"], "[plugins.event_log.limits]\nmax_args_kib = 2").await;
    let b = before(&h).await;
    let big = queue(&h.scheduler, "ok", json!({ "pad": "z".repeat(8 * 1024) })).await;
    wait_done(&h.scheduler, &big.id).await;
    caught_up(&h, "event_log").await;
    let info = plugin_info(&h, "event_log").await;
    assert_eq!(
        (info["state"].as_str(), info["health"]["traps"].as_u64(), info["health"]["recent_failures"].as_u64()),
        (Some("active"), Some(0), Some(0)),
        "{info}"
    );
    assert!(info["health"]["last_limit"].as_str().unwrap().starts_with("max_args_kib: "), "{info}");
    // The db plugin (2 MiB) has the run whole.
    let (status, row) = get_json(&h, &format!("/task-history/{}", big.id)).await;
    assert_eq!((status, row["params"]["pad"].as_str().map(str::len)), (200, Some(8 * 1024)), "{row}");
    unharmed(&h, &b).await;
    h.shutdown(Duration::ZERO).await;
}

/// Rewrites fluid.toml and waits until the watcher has swapped `plugin` to grants that
/// satisfy `applied`.
async fn regrant(h: &Host, dir: &Path, plugin: &str, extra: &str, applied: impl Fn(&Value) -> bool) {
    std::fs::write(dir.join("fluid.toml"), format!("{LIMITS}\n{extra}")).unwrap();
    poll("fluid.toml to be applied", WAIT, || async {
        let info = plugin_info(h, plugin).await;
        applied(&info["grants"]).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_out_of_reach_unless_granted_and_read_only_grants_refuse_writes() {
    let dir = TempDir::new();
    let h = host(dir.path(), &["fs-escape"], "").await;
    let b = before(&h).await;
    for (method, path) in [
        ("read", "/etc/passwd"),
        ("list", "/"),
        ("list", "."),
        ("write", "/tmp/fluid-escape"),
        ("read", dir.path().join("fluid.db").to_str().unwrap()),
    ] {
        let out = call(&h, "fs_escape", method, json!({ "path": path, "text": "x" })).await.unwrap();
        assert!(out.get("error").is_some(), "{method} {path}: {out}");
    }
    assert!(!Path::new("/tmp/fluid-escape").exists());
    let (ro, rw) = (dir.path().join("ro"), dir.path().join("rw"));
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::write(ro.join("note.txt"), "granted").unwrap();
    let grants =
        "[plugins.fs_escape.grants]\ndirs = [{ host = \"ro\", guest = \"/ro\" }, { host = \"rw\", guest = \"/rw\", write = true }]";
    regrant(&h, dir.path(), "fs_escape", grants, |g| g["dirs"].as_array().is_some_and(|d| d.len() == 2)).await;
    assert_eq!(call(&h, "fs_escape", "read", json!({ "path": "/ro/note.txt" })).await.unwrap(), json!({ "ok": "granted" }));
    let denied = call(&h, "fs_escape", "write", json!({ "path": "/ro/new.txt", "text": "x" })).await.unwrap();
    assert!(denied.get("error").is_some(), "read-only grant: {denied}");
    assert!(!ro.join("new.txt").exists());
    let written = call(&h, "fs_escape", "write", json!({ "path": "/rw/out.txt", "text": "hello" })).await.unwrap();
    assert_eq!(written, json!({ "ok": null }));
    assert_eq!(std::fs::read_to_string(rw.join("out.txt")).unwrap(), "hello");
    for escape in ["/ro/../fluid.toml", "/ro/../../etc/passwd", "/etc/passwd"] {
        let out = call(&h, "fs_escape", "read", json!({ "path": escape })).await.unwrap();
        assert!(out.get("error").is_some(), "{escape}: {out}");
    }
    unharmed(&h, &b).await;
    h.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_is_empty_unless_variables_are_granted_by_name() {
    let dir = TempDir::new();
    let h = host(dir.path(), &["env-snoop"], "").await;
    let b = before(&h).await;
    assert_eq!(call(&h, "env_snoop", "env", json!({})).await.unwrap(), json!({}));
    let path = std::env::var("PATH").expect("PATH is set");
    regrant(&h, dir.path(), "env_snoop", "[plugins.env_snoop.grants]\nenv = [\"PATH\", \"FLUID_NO_SUCH_VARIABLE\"]", |g| {
        g["env"].as_array().is_some_and(|e| !e.is_empty())
    })
    .await;
    assert_eq!(call(&h, "env_snoop", "env", json!({})).await.unwrap(), json!({ "PATH": path }));
    unharmed(&h, &b).await;
    h.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_are_refused_unless_the_address_is_granted() {
    let dir = TempDir::new();
    let h = host(dir.path(), &["net-connect"], "").await;
    let b = before(&h).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let out = call(&h, "net_connect", "connect", json!({ "addr": addr })).await.unwrap();
    assert!(out.get("error").is_some(), "{out}");
    assert!(listener.accept().is_err(), "no connection reached the listener");
    let out = call(&h, "net_connect", "lookup", json!({ "host": "localhost" })).await.unwrap();
    assert!(out.get("error").is_some(), "{out}");
    regrant(&h, dir.path(), "net_connect", &format!("[plugins.net_connect.grants]\nnetwork = [\"{addr}\"]"), |g| {
        g["network"].as_array().is_some_and(|n| !n.is_empty())
    })
    .await;
    assert_eq!(call(&h, "net_connect", "connect", json!({ "addr": addr })).await.unwrap(), json!({ "ok": "connected" }));
    let (mut conn, _) = poll("the granted connection", WAIT, || async { listener.accept().ok() }).await;
    conn.set_nonblocking(false).unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&mut conn), &mut line).unwrap();
    assert_eq!(line, "hello from a plugin\n");
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = call(&h, "net_connect", "connect", json!({ "addr": other.local_addr().unwrap().to_string() })).await.unwrap();
    assert!(out.get("error").is_some(), "only the granted port: {out}");
    unharmed(&h, &b).await;
    h.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_table_names_never_reach_other_plugins_or_host_tables() {
    let dir = TempDir::new();
    let h = host(dir.path(), &["table-escape"], "").await;
    let b = before(&h).await;
    let attempts = call(&h, "table_escape", "attack", json!({})).await.unwrap();
    let is_ident = |s: &str, max: usize| {
        !s.is_empty()
            && s.len() <= max
            && s.as_bytes()[0].is_ascii_lowercase()
            && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
    };
    for a in attempts.as_array().unwrap() {
        let (op, name) = (a["op"].as_str().unwrap(), a["name"].as_str().unwrap());
        let max = if op.contains("column") { 48 } else { 24 };
        if !is_ident(name, max) {
            assert!(a["result"]["error"].as_str().is_some_and(|e| e.contains("InvalidName")), "{a}");
        } else if op == "select" || op == "count" {
            // A valid name is a table of its own, new and empty: never the host's or db's.
            assert!(a["result"]["ok"] == "[]" || a["result"]["ok"] == "0", "{a}");
        }
    }
    // Its own `fluid_tasks` is not the db plugin's, which holds the runs above.
    assert_eq!(call(&h, "table_escape", "own", json!({})).await.unwrap(), json!(0));
    // Every table it made is in its own namespace.
    sqlx::any::install_default_drivers();
    let tables = |file: &'static str| {
        let url = format!("sqlite://{}", dir.path().join(file).display());
        async move {
            let pool = sqlx::AnyPool::connect(&url).await.unwrap();
            let names: Vec<String> =
                sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'").fetch_all(&pool).await.unwrap();
            pool.close().await;
            names
        }
    };
    let names = tables("fluid.plugins.db").await;
    assert!(names.iter().any(|n| n == "p_12_table_escape_fluid_runs"), "{names:?}");
    for n in names {
        assert!(
            ["fluid_plugin_tables", "p_2_db_", "p_5_stats_", "p_12_table_escape_", "sqlite_"].iter().any(|p| n.starts_with(p)),
            "unexpected table {n} in the plugins' file"
        );
    }
    // The queue's file holds the host's tables only.
    for n in tables("fluid.db").await {
        assert!(["fluid_", "sqlite_"].iter().any(|p| n.starts_with(p)), "unexpected table {n} in the queue's file");
    }
    unharmed(&h, &b).await;
    h.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_injection_strings_are_stored_and_matched_literally() {
    let dir = TempDir::new();
    let h = host(dir.path(), &["sql-inject"], "").await;
    let b = before(&h).await;
    let values = [
        "'; DROP TABLE fluid_runs; --",
        "\" OR 1=1 --",
        "Robert'); DROP TABLE p_10_sql_inject_kv;--",
        "' UNION SELECT id, task, params FROM fluid_runs --",
        "%",
        "_",
        "\\",
        "$1",
        "?",
        "x' OR 'x'='x",
        "😀 ümlaut",
    ];
    let out = call(&h, "sql_inject", "roundtrip", json!({ "values": values })).await.unwrap();
    for (v, got) in values.iter().zip(out["values"].as_array().unwrap()) {
        for filter in ["eq", "one_of", "json_contains"] {
            assert_eq!(got[filter], json!({ "Ok": [v] }), "{filter} on {v:?}: {got}");
        }
    }
    assert!(out["bad_key"].as_str().unwrap().contains("InvalidValue"), "{out}");
    assert_eq!(out["count"], values.len());
    unharmed(&h, &b).await;
    h.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_register_refuses_the_plugin_with_the_reason() {
    let dir = TempDir::new();
    let h = host(dir.path(), &["register-panic"], "").await;
    let b = before(&h).await;
    let info = plugin_info(&h, "register_panic").await;
    assert_eq!(info["state"], "failed");
    let err = info["error"].as_str().unwrap();
    assert!(err.contains("register_panic.wasm") && err.contains("register trapped"), "{err}");
    assert!(err.contains("register_panic panics on purpose"), "the panic message is part of the reason: {err}");
    assert!(h.scheduler.get_plugin("register_panic").is_none());
    unharmed(&h, &b).await;
    h.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_that_never_returns_is_refused_at_its_time_limit() {
    let dir = TempDir::new();
    let t = Instant::now();
    let h = host(dir.path(), &["register-hang"], "").await;
    assert!(t.elapsed() < Duration::from_secs(10), "the start did not wait on the plugin: {:?}", t.elapsed());
    let b = before(&h).await;
    let info = plugin_info(&h, "register_hang").await;
    assert_eq!(info["state"], "failed");
    assert!(info["error"].as_str().unwrap().contains("time limit"), "{info}");
    unharmed(&h, &b).await;
    h.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_calling_itself_through_get_plugin_is_refused_not_deadlocked() {
    let dir = TempDir::new();
    let h = host(dir.path(), &["self-call"], "").await;
    let b = before(&h).await;
    let out = tokio::time::timeout(WAIT, call(&h, "self_call", "recurse", json!({}))).await.expect("no deadlock").unwrap();
    let err = out["error"].as_str().unwrap_or_else(|| panic!("{out}"));
    assert!(err.contains("Unavailable") && err.contains("re-entrant"), "{err}");
    assert_eq!(plugin_info(&h, "self_call").await["health"]["traps"], 0);
    unharmed(&h, &b).await;
    h.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_flood_is_cut_and_rate_limited_while_the_host_answers() {
    let dir = TempDir::new();
    let h = host(dir.path(), &["log-flood"], "[plugins.log_flood.limits]\ncall_timeout_ms = 5000").await;
    let b = before(&h).await;
    let flood = call(&h, "log_flood", "flood", json!({ "lines": 20000, "bytes": 20000 }));
    let (out, (status, _)) = tokio::join!(flood, get_json(&h, "/tasks"));
    assert_eq!(status, 200, "HTTP answers during the flood");
    assert_eq!(out.unwrap(), json!(20000));
    let dropped = plugin_info(&h, "log_flood").await["health"]["log_lines_dropped"].as_u64().unwrap();
    assert!(dropped > 10000, "most lines dropped by the rate limit, dropped {dropped}");
    unharmed(&h, &b).await;
    h.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_keeps_trapping_is_quarantined_and_callers_get_unavailable() {
    let dir = TempDir::new();
    install(dir.path(), "trap-events");
    let h = host(dir.path(), &[], "").await;
    let b = before(&h).await;
    let info = poll("trap_events to be quarantined", WAIT, || async {
        let info = plugin_info(&h, "trap_events").await;
        (info["state"] == "quarantined").then_some(info)
    })
    .await;
    assert_eq!((info["health"]["traps"].as_u64(), info["health"]["checkpoint"].as_i64()), (Some(3), Some(0)), "{info}");
    assert!(info["error"].as_str().unwrap().contains("trapped"));
    let msg = unavailable(call(&h, "trap_events", "ping", json!({})).await);
    assert!(msg.contains("quarantined"), "{msg}");
    unharmed(&h, &b).await;
    // Still quarantined: no retry loop went on behind the operator's back.
    assert_eq!(plugin_info(&h, "trap_events").await["health"]["traps"], 3);
    h.shutdown(Duration::ZERO).await;
}

/// A plugin that keeps failing (never quarantined here) backs off for longer and longer,
/// past the delivery lease: it keeps the lease all the while, so no other host takes its
/// delivery over and `fluid plugins forget` is refused, since it is still loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_plugin_keeps_its_delivery_lease_through_its_back_off() {
    use fluid_host::store::Forget;
    let dir = TempDir::new();
    install(dir.path(), "event-log");
    let extra = "[plugins.event_log.limits]\nquarantine_after = 0\n[plugins.event_log.config]\nfail = true";
    std::fs::write(dir.path().join("fluid.toml"), format!("{LIMITS}\n{extra}")).unwrap();
    let mut c = config(dir.path());
    c.load_plugins = true;
    c.scheduler.heartbeat.host_timeout = Duration::from_secs(1);
    c.scheduler.heartbeat.interval = Duration::from_millis(200);
    let h = start(c, tasks()).await;
    queue(&h.scheduler, "ok", json!({})).await;
    let store = h.scheduler.store().clone();
    let errors = || async { plugin_info(&h, "event_log").await["health"]["errors"].as_u64().unwrap() };
    // A failed delivery means the lease was taken first.
    poll("a first failed delivery", WAIT, || async { (errors().await >= 1).then_some(()) }).await;
    let delivering = |when: &str| {
        let (store, me, when) = (store.clone(), h.scheduler.config().host_id.clone(), when.to_string());
        async move {
            match store.forget_checkpoint("event_log").await.unwrap() {
                Forget::Delivering { host } => assert_eq!(host, me),
                other => panic!("{when}, a loaded plugin's checkpoint was {other:?}"),
            }
        }
    };
    // Back-offs of 0.2, 0.4, 0.8, then 1.6 s: longer than the 1 s lease. Checked all
    // through, up to well inside the 1.6 s one.
    while errors().await < 4 {
        delivering("before the 4th failure").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fourth = std::time::Instant::now();
    while fourth.elapsed() < Duration::from_millis(1300) {
        delivering(&format!("{:?} into the 1.6 s back-off", fourth.elapsed())).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(plugin_info(&h, "event_log").await["state"], "failing");
    h.shutdown(Duration::ZERO).await;
}

/// event_log's rows: (seq, times delivered).
async fn seen(h: &Host) -> Vec<(i64, i64)> {
    serde_json::from_value(call(h, "event_log", "seen", json!({})).await.unwrap()).unwrap()
}

async fn quarantined_event_log(dir: &Path) -> (Host, Before) {
    let h = host(dir, &["event-log"], "[plugins.event_log.config]\nfail = true").await;
    let b = before(&h).await;
    poll("event_log to be quarantined", WAIT, || async { (plugin_info(&h, "event_log").await["state"] == "quarantined").then_some(()) })
        .await;
    let info = plugin_info(&h, "event_log").await;
    assert!(info["error"].as_str().unwrap().contains("configured to fail"), "{info}");
    assert_eq!(info["health"]["checkpoint"], 0, "its events are held");
    // Its delivery lease is given up at once: a host where it is not quarantined may take
    // its delivery over without waiting for the lease to run out.
    let store = h.scheduler.store().clone();
    poll("the quarantined plugin's lease to be given up", WAIT, || async {
        let owner: Option<String> = fluid_host::store::query("SELECT owner FROM fluid_plugin_checkpoints WHERE plugin = 'event_log'")
            .fetch_one(&mut store.read().await.unwrap())
            .await
            .unwrap()
            .try_get("owner")
            .unwrap();
        owner.is_none().then_some(())
    })
    .await;
    // The operator fixes the plugin's config; a quarantined plugin waits for `enable`.
    std::fs::write(dir.join("fluid.toml"), format!("{LIMITS}\n[plugins.event_log.config]\nfail = false")).unwrap();
    (h, b)
}

async fn enable(h: &Host, query: &str) -> (u16, Value) {
    let r = client().post(url(h, &format!("/plugins/event_log/enable{query}"))).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_plugin_gets_its_held_events_once_re_enabled() {
    let dir = TempDir::new();
    let (h, b) = quarantined_event_log(dir.path()).await;
    let (status, body) = enable(&h, "").await;
    assert_eq!((status, body["state"].as_str()), (200, Some("active")), "{body}");
    caught_up(&h, "event_log").await;
    let head = h.scheduler.store().feed_head().await.unwrap();
    assert_eq!(seen(&h).await, (1..=head).map(|s| (s, 1)).collect::<Vec<_>>(), "every held event, once");
    assert_eq!(enable(&h, "").await.0, 409, "an active plugin is not re-enabled");
    unharmed(&h, &b).await;
    h.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_with_skip_events_moves_the_checkpoint_to_the_head_of_the_feed() {
    let dir = TempDir::new();
    let (h, b) = quarantined_event_log(dir.path()).await;
    let head = h.scheduler.store().feed_head().await.unwrap();
    let (status, body) = enable(&h, "?skip_events=true").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["health"]["checkpoint"].as_i64().unwrap() >= head, "{body}");
    unharmed(&h, &b).await;
    caught_up(&h, "event_log").await;
    assert!(seen(&h).await.iter().all(|(s, n)| *s > head && *n == 1), "only events after the skip");
    assert!(!seen(&h).await.is_empty());
    h.shutdown(Duration::ZERO).await;
}

/// `fluid plugins enable` (the real binary) against the running host: a quarantined plugin
/// is re-enabled and gets its held events; refusals (not quarantined, unknown) exit 1 with
/// the host's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_re_enables_a_quarantined_plugin_and_reports_refusals() {
    let dir = TempDir::new();
    let (h, b) = quarantined_event_log(dir.path()).await;
    let base = url(&h, "");
    let cli = |name: &'static str| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_fluid-test-host"))
            .args(["--log", "error", "plugins", "enable", name, "--url", &base])
            .output()
    };
    let out = cli("event_log").await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("event_log: active, delivering from checkpoint "), "{stdout}");
    caught_up(&h, "event_log").await;
    let head = h.scheduler.store().feed_head().await.unwrap();
    assert_eq!(seen(&h).await, (1..=head).map(|s| (s, 1)).collect::<Vec<_>>(), "every held event, once");
    let again = cli("event_log").await.unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("HTTP 409"), "{}", String::from_utf8_lossy(&again.stderr));
    let unknown = cli("nope").await.unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("HTTP 404"), "{}", String::from_utf8_lossy(&unknown.stderr));
    unharmed(&h, &b).await;
    h.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_quotas_refuse_more_tables_rows_and_bytes_with_a_typed_error() {
    let dir = TempDir::new();
    let quota = "[plugins.storage_hog.limits]\nmax_tables = 3\nmax_rows = 20\nmax_storage_mib = 1";
    let h = host(dir.path(), &["storage-hog"], quota).await;
    let b = before(&h).await;
    let quota_error = |out: &Value| out["error"].as_str().is_some_and(|e| e.contains("QuotaExceeded"));
    // `rows` is one table already: two more, then refused.
    let out = call(&h, "storage_hog", "tables", json!({ "n": 5 })).await.unwrap();
    assert_eq!(out["done"], 2, "{out}");
    assert!(quota_error(&out) && out["error"].as_str().unwrap().contains("max_tables"), "{out}");
    let out = call(&h, "storage_hog", "rows", json!({ "from": 0, "n": 30, "kib": 1 })).await.unwrap();
    assert_eq!((out["done"].as_u64(), out["rows"].as_u64()), (Some(20), Some(20)), "{out}");
    assert!(quota_error(&out) && out["error"].as_str().unwrap().contains("max_rows"), "{out}");
    // At the quota, existing rows can still be rewritten; deleting makes room again.
    let out = call(&h, "storage_hog", "rows", json!({ "from": 0, "n": 20, "kib": 1 })).await.unwrap();
    assert_eq!((out["done"].as_u64(), out["error"].is_null()), (Some(20), true), "{out}");
    let out = call(&h, "storage_hog", "delete", json!({ "below": 20 })).await.unwrap();
    assert_eq!((out["done"].as_u64(), out["rows"].as_u64()), (Some(20), Some(0)), "{out}");
    // Bytes: rows of 100 KiB fill 1 MiB after about ten.
    let out = call(&h, "storage_hog", "rows", json!({ "from": 100, "n": 20, "kib": 100 })).await.unwrap();
    let done = out["done"].as_u64().unwrap();
    assert!((9..=10).contains(&done), "{out}");
    assert!(quota_error(&out) && out["error"].as_str().unwrap().contains("max_storage_mib"), "{out}");
    let info = plugin_info(&h, "storage_hog").await;
    assert_eq!((info["health"]["traps"].as_u64(), info["state"].as_str()), (Some(0), Some("active")), "{info}");
    unharmed(&h, &b).await;
    h.shutdown(Duration::ZERO).await;
}
