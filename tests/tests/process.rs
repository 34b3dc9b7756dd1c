//! The real `fluid-test-host` binary as a process (bundled plugins included): a host killed
//! with SIGKILL mid-run and another started on the same data folder, and a host stopped
//! with SIGTERM. Documented recovery policy: runs of a dead host become `interrupted`, then
//! are re-queued when their task has a retry policy; they never stay `running`.

mod common;

use common::*;
use fluid_host::TaskState;
use fluid_host::store::Store;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A `fluid-test-host serve` process, killed on drop.
struct HostProcess {
    child: Child,
    base: String,
    log: PathBuf,
}

impl HostProcess {
    fn spawn(dir: &Path, name: &str) -> HostProcess {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_fluid-test-host"))
            .arg("--data")
            .arg(dir)
            .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--host-timeout", "1", "--grace", "0", "--no-examples"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn fluid-test-host");
        HostProcess { child, base: format!("http://127.0.0.1:{port}"), log }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn ready(&mut self, http: &reqwest::Client) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("host exited with {status} before serving:\n{}", self.logs());
            }
            if let Ok(r) = http.get(format!("{}/tasks-status", self.base)).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "host not serving after 30 s:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn post(&self, http: &reqwest::Client, task: &str, params: Value) -> String {
        let r = http.post(format!("{}/tasks/{task}", self.base)).json(&params).send().await.unwrap();
        assert_eq!(r.status(), 201);
        r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
    }

    async fn wait_run(&self, http: &reqwest::Client, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let url = format!("{}/task-runs/{id}", self.base);
        poll(&format!("run {id} {what}"), Duration::from_secs(30), || async {
            let run: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
            pred(&run).then_some(run)
        })
        .await
    }

    /// SIGTERM, then waits (bounded) for the process to exit.
    async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let child = &mut self.child;
        poll("the host to exit after SIGTERM", Duration::from_secs(30), || {
            let exited = child.try_wait().unwrap();
            async move { exited }
        })
        .await
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_of_a_killed_host_end_interrupted_and_are_retried_per_policy() {
    let dir = TempDir::new();
    let http = client();
    let mut first = HostProcess::spawn(dir.path(), "first");
    first.ready(&http).await;
    let plain = first.post(&http, "sleepy", json!({"seconds": 600})).await;
    let retried = first.post(&http, "sleepy-retry", json!({"seconds": 600})).await;
    for id in [&plain, &retried] {
        first.wait_run(&http, id, "running", |r| r["state"] == "running").await;
    }
    first.kill();

    // The killed host left both rows `running`.
    let store = Store::open_sqlite(dir.path()).await.unwrap();
    for id in [&plain, &retried] {
        assert_eq!(store.get_run(id).await.unwrap().unwrap().state, TaskState::Running);
    }

    let mut second = HostProcess::spawn(dir.path(), "second");
    second.ready(&http).await;
    let retried_run = second.wait_run(&http, &retried, "success", |r| r["state"] == "success").await;
    assert_eq!(retried_run["retry_attempt"], 1);
    let plain_run = second.wait_run(&http, &plain, "interrupted", |r| r["state"] != "running").await;
    assert_eq!(plain_run["state"], "interrupted", "{plain_run}\n{}", second.logs());
    assert!(plain_run["error"].as_str().unwrap().contains("stopped before the run ended"), "{plain_run}");
    assert!(plain_run["end"].is_string());
    assert_eq!(plain_run["retry_attempt"], 0, "no retry policy: not re-queued");

    // The change feed holds the whole story of each run, in order.
    let events = store.events_after(0, 10_000, usize::MAX).await.unwrap();
    let story = |id: &str| events.iter().filter(|e| e.run.id == id).map(|e| e.run.state).collect::<Vec<_>>();
    use TaskState::*;
    assert_eq!(story(&plain), [Queued, Running, Interrupted]);
    assert_eq!(story(&retried), [Queued, Running, Interrupted, Queued, Running, Success]);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_host_and_records_its_running_runs_interrupted() {
    let dir = TempDir::new();
    let http = client();
    let mut host = HostProcess::spawn(dir.path(), "host");
    host.ready(&http).await;
    let run = host.post(&http, "sleepy", json!({"seconds": 600})).await;
    host.wait_run(&http, &run, "running", |r| r["state"] == "running").await;
    // --grace 0: the run is interrupted at once and the process exits cleanly.
    let status = host.terminate().await;
    assert!(status.success(), "exit status {status}:\n{}", host.logs());
    let store = Store::open_sqlite(dir.path()).await.unwrap();
    let stored = store.get_run(&run).await.unwrap().unwrap();
    assert_eq!((stored.state, stored.error.as_deref()), (TaskState::Interrupted, Some("host shutting down")));
    assert!(stored.end.is_some());
    store.close().await;
}
