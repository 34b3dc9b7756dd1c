//! The web dashboard (`/ui/`) against a real host with the bundled db plugin on a real
//! SQLite file: its assets and `/throughput` over HTTP, and the page itself in a real
//! browser, Debian's headless Chromium driven by playwright-core (`tests/browser/dashboard.mjs`).
//! In the browser the page switches a task off and cancels a running run by clicking; this
//! test then checks both through the HTTP API. A run whose error is markup is shown as
//! text: nothing an untrusted task or plugin writes runs in the operator's browser. A
//! plugin quarantined after trapping is enabled again from the page, its held events skipped. The screenshot is kept as a test artifact
//! at `$CARGO_TARGET_DIR/test-artifacts/dashboard.png` (`target/` when unset).
//!
//! The browser test needs node, Chromium and `tests/browser/node_modules`; without them it
//! fails and says to run `tests/browser/setup.sh`, which installs them.

mod common;

use common::*;
use fluid_host::Host;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MARKUP: &str = "<img src=x onerror=\"window.__injected=1\"><b id=\"injected\">bold</b>";

/// The browser script's own deadline is 30 s per step; this bounds the whole run.
const BROWSER_LIMIT: Duration = Duration::from_secs(180);

/// The examples (`ping`, `add`, `flaky`, `slow`) and the test tasks (`sleepy`, ...), with
/// plugins: what `fluid serve` runs, with schedules off so nothing runs uninvited.
async fn host(env: &TestEnv) -> Host {
    let mut c = env.config();
    c.load_plugins = true;
    c.scheduler.workers = 4;
    let mut tasks = fluid_host::examples::tasks();
    tasks.extend(fluid_tests::test_tasks());
    // Fails with markup as its error: what an untrusted task or plugin could write.
    tasks.push(fluid_host::Task::new("markup").run(|_| async { Err(fluid_host::TaskError::Failed(MARKUP.into())) }));
    start(c, tasks).await
}

async fn get_json(h: &Host, path: &str) -> (u16, Value) {
    let r = client().get(url(h, path)).send().await.expect("request");
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

/// Queues a run over HTTP; returns its id.
async fn post_run(h: &Host, task: &str, params: Value) -> String {
    let r = client().post(url(h, &format!("/tasks/{task}"))).json(&params).send().await.expect("request");
    let code = r.status().as_u16();
    let body: Value = r.json().await.expect("JSON body");
    assert_eq!(code, 201, "POST /tasks/{task}: {body}");
    body["id"].as_str().expect("run id").to_string()
}

/// Polls `path` until its JSON satisfies `pred`; returns that JSON.
async fn wait_json(h: &Host, path: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    poll(&format!("{path}: {what}"), WAIT, || async {
        let (code, body) = get_json(h, path).await;
        (code == 200 && pred(&body)).then_some(body)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_page_and_counts_throughput() {
    let env = TestEnv::new(Db::Sqlite).await;
    let h = host(&env).await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    let r = http.get(url(&h, "/")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/ui/");

    for (path, content_type, needle) in [
        ("/ui", "text/html; charset=utf-8", "/ui/app.js"),
        ("/ui/", "text/html; charset=utf-8", "/ui/app.css"),
        ("/ui/app.js", "text/javascript; charset=utf-8", "/task-history"),
        ("/ui/app.css", "text/css; charset=utf-8", ".badge"),
    ] {
        let r = http.get(url(&h, path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], content_type, "{path}");
        assert_eq!(r.headers()["cache-control"], "no-cache", "{path}");
        assert!(r.text().await.unwrap().contains(needle), "{path} lacks {needle:?}");
    }

    // One success, one failure (the sum overflows), one aborted (queued with a delay, cancelled).
    let ok = post_run(&h, "add", json!({"a": 1, "b": 2})).await;
    let failed = post_run(&h, "add", json!({"a": i64::MAX, "b": 1})).await;
    let slow = post_run(&h, "slow", json!({"seconds": 600})).await;
    for id in [&ok, &failed] {
        wait_json(&h, &format!("/task-runs/{id}"), "ended", |r| r["end"].is_string()).await;
    }
    wait_json(&h, &format!("/task-runs/{slow}"), "running", |r| r["state"] == "running").await;
    assert!(client().post(url(&h, &format!("/task-runs/{slow}/cancel"))).send().await.unwrap().status().is_success());

    let sum = |b: &Value, k: &str| b["buckets"].as_array().unwrap().iter().map(|x| x[k].as_u64().unwrap()).sum::<u64>();
    let body = wait_json(&h, "/throughput", "one success, one failure, one other", |b| {
        sum(b, "succeeded") == 1 && sum(b, "failed") == 1 && sum(b, "other") == 1
    })
    .await;
    assert_eq!(body["bucket_seconds"], 5);
    assert_eq!(body["buckets"].as_array().unwrap().len(), 10 * 12, "10 minutes by default");
    let start = |b: &Value, i: usize| chrono::DateTime::parse_from_rfc3339(b["buckets"][i]["start"].as_str().unwrap()).unwrap();
    assert_eq!((start(&body, 1) - start(&body, 0)).num_seconds(), 5, "oldest first");

    let (code, body) = get_json(&h, "/throughput?minutes=1000").await;
    assert_eq!((code, body["buckets"].as_array().unwrap().len()), (200, 60 * 12), "at most 60 minutes");
    for bad in ["minutes=0", "minutes=x", "hours=1"] {
        let (code, body) = get_json(&h, &format!("/throughput?{bad}")).await;
        assert_eq!(code, 422, "{bad}: {body}");
        assert!(body["detail"].is_string(), "{bad}: {body}");
    }
    h.shutdown(Duration::ZERO).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disables_a_task_cancels_a_run_and_enables_a_plugin_in_chromium() {
    let browser = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    check_browser_setup(&browser, &chromium);

    let env = TestEnv::new(Db::Sqlite).await;
    // A plugin that traps on every event, quarantined at its first failure.
    let plugins = env.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(fluid_host::plugins::bundled::guest_wasm_dir().join("fluid_test_trap_events.wasm"), plugins.join("trap_events.wasm"))
        .unwrap();
    std::fs::write(env.path().join("fluid.toml"), "[plugins.trap_events.limits]\nquarantine_after = 1\n").unwrap();
    let h = host(&env).await;

    // A history that looks real: several tasks, successes, a failure, a retried run.
    let mut ended = Vec::new();
    for (task, params, state) in [
        ("add", json!({"a": 1, "b": 2}), "success"),
        ("add", json!({"a": 40, "b": 2}), "success"),
        ("add", json!({"a": i64::MAX, "b": 1}), "failure"),
        ("flaky", json!({"failures": 1}), "success"),
        ("slow", json!({"seconds": 0.2}), "success"),
        ("sleepy", json!({"seconds": 0}), "success"),
    ] {
        ended.push((post_run(&h, task, params).await, state));
    }
    let markup = post_run(&h, "markup", json!({})).await;
    ended.push((markup.clone(), "failure"));
    // The run the page cancels, and the task it switches off.
    let victim = post_run(&h, "sleepy", json!({"seconds": 600})).await;
    let task = "ping";
    wait_json(&h, &format!("/task-runs/{victim}"), "running", |r| r["state"] == "running").await;
    // The page reads runs from the db plugin's history: wait until it has them all.
    wait_json(&h, &format!("/task-history/{victim}"), "running in the history", |r| r["state"] == "running").await;
    for (id, state) in &ended {
        wait_json(&h, &format!("/task-history/{id}"), &format!("{state} in the history"), |r| r["state"] == *state).await;
    }
    let (_, before) = get_json(&h, &format!("/tasks/{task}")).await;
    assert_eq!(before["enabled"], true);
    wait_json(&h, "/plugins/trap_events", "quarantined", |p| p["state"] == "quarantined").await;

    let artifacts = artifact_dir();
    std::fs::create_dir_all(&artifacts).expect("create the artifacts folder");
    let shot = artifacts.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    drive(
        &browser,
        &h,
        &["--disable-task", task, "--cancel-run", &victim, "--escaped-run", &markup, "--enable-plugin", "trap_events"],
        &shot,
    )
    .await;

    // What the clicks did, read back through the API.
    let (_, after) = get_json(&h, &format!("/tasks/{task}")).await;
    assert_eq!(after["enabled"], false, "{task} is still enabled: {after}");
    let (_, other) = get_json(&h, "/tasks/add").await;
    assert_eq!(other["enabled"], true, "only {task} was switched off");
    let run = wait_json(&h, &format!("/task-runs/{victim}"), "aborted", |r| r["state"] == "aborted").await;
    assert!(run["error"].as_str().is_some_and(|e| e.contains("cancel")), "{run}");
    let stored = wait_json(&h, &format!("/task-history/{victim}"), "aborted in the history", |r| r["state"] == "aborted").await;
    assert_eq!(stored["error"], run["error"]);

    // Enabled with the events it failed on skipped: active, its checkpoint at the feed's head
    // as it was when enabled (the page's clicks above wrote no event after that).
    let plugin = wait_json(&h, "/plugins/trap_events", "active", |p| p["state"] == "active").await;
    let head = h.scheduler.store().feed_head().await.unwrap();
    assert_eq!(plugin["health"]["checkpoint"], json!(head), "{plugin}");

    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", shot.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "{} is not a real PNG", shot.display());
    h.shutdown(Duration::ZERO).await;
}

/// Runs `dashboard.mjs` with `args` against `h` in Chromium; fails the test with its log
/// and screenshot when it fails.
async fn drive(browser: &Path, h: &Host, args: &[&str], shot: &Path) {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let base = format!("http://{}", h.addr);
    let started = Instant::now();
    let run = tokio::process::Command::new("node")
        .arg(browser.join("dashboard.mjs"))
        .args(["--url", &base, "--chromium", &chromium])
        .args(args)
        .arg("--screenshot")
        .arg(shot)
        .current_dir(browser)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(BROWSER_LIMIT, run)
        .await
        .unwrap_or_else(|_| panic!("dashboard.mjs did not finish within {BROWSER_LIMIT:?}"))
        .expect("start node");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{log}dashboard.mjs took {:.1?}; screenshot: {}", started.elapsed(), shot.display());
    assert!(out.status.success(), "dashboard.mjs failed ({}):\n{log}\nscreenshot of the page: {}", out.status, shot.display());
}

/// A host that wants tokens: the page asks for one, keeps it for the tab's session, and
/// offers only what its role may do (a read token no buttons, an operate token "Run now").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asks_for_a_token_and_offers_only_what_its_role_may_do_in_chromium() {
    use fluid_host::http::auth::{Role, mint};
    let browser = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    check_browser_setup(&browser, &std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    let env = TestEnv::new(Db::Sqlite).await;
    let h = host(&env).await;
    let mut tokens = Vec::new();
    for role in [Role::Read, Role::Operate] {
        let (token, row) = mint(role, role.as_str());
        h.scheduler.store().add_token(&row).await.unwrap();
        tokens.push(token);
    }
    let artifacts = artifact_dir();
    std::fs::create_dir_all(&artifacts).expect("create the artifacts folder");
    drive(&browser, &h, &["--tokens", &tokens.join(",")], &artifacts.join("dashboard-tokens.png")).await;
    // The operate token's click queued a run of ping, read back with that token.
    poll("the run the page queued", WAIT, || async {
        let r = client().get(url(&h, "/task-history?task=ping")).bearer_auth(&tokens[1]).send().await.ok()?;
        let page: Value = r.json().await.ok()?;
        (page["data"].as_array()?.len() == 1).then_some(())
    })
    .await;
    h.shutdown(Duration::ZERO).await;
}

/// `$CARGO_TARGET_DIR/test-artifacts`, or `target/test-artifacts` in the workspace.
fn artifact_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace folder");
    let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(d) => workspace.join(d), // an absolute path replaces the workspace folder
        None => workspace.join("target"),
    };
    target.join("test-artifacts")
}

/// Fails (never skips) when the browser test cannot run, naming what is missing.
fn check_browser_setup(browser: &Path, chromium: &str) {
    let fix = "run tests/browser/setup.sh (installs Chromium from Debian and playwright-core from npm)";
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(matches!(&node, Ok(o) if o.status.success()), "node is not installed: {fix}");
    assert!(Path::new(chromium).exists(), "{chromium} is missing: {fix}");
    let version = |file: PathBuf, pointer: &str| -> Option<String> {
        let json: Value = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
        json.pointer(pointer)?.as_str().map(str::to_string)
    };
    let pinned = version(browser.join("package-lock.json"), "/packages/node_modules~1playwright-core/version").expect("package-lock.json");
    let installed = version(browser.join("node_modules/playwright-core/package.json"), "/version");
    assert_eq!(
        installed.as_deref(),
        Some(pinned.as_str()),
        "playwright-core {pinned} is not installed in tests/browser/node_modules: {fix}"
    );
}
