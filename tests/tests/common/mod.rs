//! Helpers shared by the integration tests: a host on a real SQLite file in its own temp
//! folder, waiting for run states through the scheduler's change broadcast or by polling
//! with a deadline, gates a test opens to release blocked tasks, and HTTP helpers.
#![allow(dead_code)]

use fluid_host::scheduler::{QueueOptions, Scheduler};
use fluid_host::{Host, HostConfig, Task, TaskRun, TaskState};
use serde_json::Value;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};

/// Upper bound for any single wait in these tests: generous, only there so a broken
/// scheduler fails the test instead of hanging it.
pub const WAIT: Duration = Duration::from_secs(15);

/// A folder under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!("fluid-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A config for tests of the scheduler core: SQLite in `dir`, no plugins, a short claim
/// poll (retries and back-offs are picked up sooner), schedules off unless a test turns
/// them on.
pub fn config(dir: &Path) -> HostConfig {
    let mut c = HostConfig::new(dir);
    c.load_plugins = false;
    c.scheduler.producer.poll = Duration::from_millis(25);
    c.scheduler.run_schedules = false;
    c
}

/// The database a shared test runs against: each test in the shared suite runs once per
/// backend (see [`backend_tests!`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A test's own temp folder and, on PostgreSQL, its own fresh database.
pub struct TestEnv {
    dir: TempDir,
    pg: Option<fluid_tests::pg::TestDb>,
}

impl TestEnv {
    pub async fn new(db: Db) -> TestEnv {
        let pg = match db {
            Db::Sqlite => None,
            Db::Postgres => Some(fluid_tests::pg::TestDb::create().await),
        };
        TestEnv { dir: TempDir::new(), pg }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The test config of [`config`], on this test's database.
    pub fn config(&self) -> HostConfig {
        let mut c = config(self.dir.path());
        c.database_url = self.pg.as_ref().map(|p| p.url.clone());
        c
    }

    /// The database URL (SQLite file in the folder, or the PostgreSQL database).
    pub fn url(&self) -> String {
        match &self.pg {
            Some(p) => p.url.clone(),
            None => format!("sqlite://{}?mode=rwc", self.dir.path().join("fluid.db").display()),
        }
    }
}

/// Runs each listed `async fn name(db: Db)` as two tests, `sqlite::name` and
/// `postgres::name`: one suite, both backends.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Db::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Db::Postgres).await
                }
            )*
        }
    };
}

pub async fn start(config: HostConfig, tasks: Vec<Task>) -> Host {
    Host::start(config, tasks).await.expect("host starts")
}

/// `GET path`: the status and the JSON body.
pub async fn get_json(h: &Host, path: &str) -> (u16, Value) {
    let r = client().get(url(h, path)).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.expect("JSON body"))
}

/// `GET /plugins/NAME`, which must answer 200.
pub async fn plugin_info(h: &Host, name: &str) -> Value {
    let (status, body) = get_json(h, &format!("/plugins/{name}")).await;
    assert_eq!(status, 200, "{name}: {body}");
    body
}

pub fn url(host: &Host, path: &str) -> String {
    format!("http://{}{}", host.addr, path)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

pub async fn queue(s: &Scheduler, task: &str, params: Value) -> TaskRun {
    s.queue(task, params, QueueOptions::default()).await.expect("queued")
}

/// Waits until the stored run satisfies `pred`, woken by the scheduler's change broadcast
/// (so no change is missed: it subscribes before it reads the current state).
pub async fn wait_run(s: &Scheduler, id: &str, what: &str, pred: impl Fn(&TaskRun) -> bool) -> TaskRun {
    wait_run_any(&[s], id, what, pred).await
}

/// [`wait_run`] for a run that any of `hosts` (sharing one store) may change: a host
/// broadcasts only the changes it committed itself, so every host's broadcast is watched.
pub async fn wait_run_any(hosts: &[&Scheduler], id: &str, what: &str, pred: impl Fn(&TaskRun) -> bool) -> TaskRun {
    // Each host's changes, forwarded into one channel (`None`: a host's receiver lagged).
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<Option<String>>();
    let mut forwarders = tokio::task::JoinSet::new();
    for host in hosts {
        let mut changes = host.subscribe();
        let tx = tx.clone();
        forwarders.spawn(async move {
            loop {
                let change = match changes.recv().await {
                    Ok(r) => Some(r.id),
                    Err(broadcast::error::RecvError::Lagged(_)) => None,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if tx.send(change).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let run = hosts[0].get_run(id).await.expect("store readable").unwrap_or_else(|| panic!("run {id} not stored"));
        if pred(&run) {
            return run; // dropping the JoinSet stops the forwarders
        }
        // Wake on the next change of this run (or any lag), then read the row again.
        loop {
            match tokio::time::timeout_at(deadline, seen.recv()).await {
                Err(_) => panic!("run {id}: not {what} within {WAIT:?}; last seen {run:?}"),
                Ok(Some(Some(other))) if other != id => continue,
                Ok(Some(_)) => break,
                Ok(None) => panic!("every scheduler is gone"),
            }
        }
    }
}

pub async fn wait_state(s: &Scheduler, id: &str, state: TaskState) -> TaskRun {
    wait_run(s, id, state.as_str(), |r| r.state == state).await
}

pub async fn wait_done(s: &Scheduler, id: &str) -> TaskRun {
    wait_run(s, id, "done", |r| r.state.is_done()).await
}

/// Every snapshot of run `id` broadcast from now on until it reaches a finished state that
/// `last` accepts.
pub async fn history_until(rx: &mut broadcast::Receiver<TaskRun>, id: &str, last: impl Fn(&TaskRun) -> bool) -> Vec<TaskRun> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => panic!("run {id}: no final state within {WAIT:?}; seen {:?}", states(&seen)),
            Ok(Ok(r)) if r.id == id => {
                let stop = last(&r);
                seen.push(r);
                if stop {
                    return seen;
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("broadcast: {e}"),
        }
    }
}

pub fn states(runs: &[TaskRun]) -> Vec<TaskState> {
    runs.iter().map(|r| r.state).collect()
}

/// Polls `f` until it returns Some, every 20 ms, for at most `limit`.
pub async fn poll<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `plugin` has consumed the whole change feed.
pub async fn caught_up(h: &fluid_host::Host, plugin: &str) {
    let (store, rt) = (h.scheduler.store().clone(), h.plugins.clone().expect("plugins loaded"));
    poll(&format!("{plugin} to consume the feed"), WAIT, || {
        let (store, rt) = (store.clone(), rt.clone());
        async move {
            let head = store.feed_head().await.ok()?;
            (rt.get(plugin)?.health().checkpoint >= head).then_some(())
        }
    })
    .await
}

/// A gate blocked tasks wait on until the test opens it.
#[derive(Clone)]
pub struct Gate(Arc<watch::Sender<bool>>);

impl Gate {
    pub fn new() -> Gate {
        Gate(Arc::new(watch::channel(false).0))
    }
    pub fn open(&self) {
        self.0.send_replace(true);
    }
    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }
}

/// Counts executions in flight and the highest count ever seen.
#[derive(Clone, Default)]
pub struct InFlight {
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
}

impl InFlight {
    pub fn enter(&self) -> InFlightGuard {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        self.total.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.now.clone())
    }
    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
    pub fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }
}

pub struct InFlightGuard(Arc<AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
