//! What the parts share: fresh hosts on fresh databases, trivial runs, percentiles, and
//! the machine's description.

use anyhow::Context;
use fluid_host::scheduler::{CompleterConfig, SchedulerConfig};
use fluid_host::store::{Backend, Store};
use fluid_host::time::{now_us, to_datetime};
use fluid_host::{Host, HostConfig, Task, TaskRun, TaskState};
use sqlx::AssertSqlSafe;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) fn temp_dir(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("fluid-bench-{tag}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    let _ = std::fs::create_dir_all(&p);
    p
}

/// The middle of `v` (the upper one of an even count).
pub(crate) fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|kb| kb.parse::<u64>().ok()))
        .map(|kb| format!("{:.0} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let profile = if cfg!(debug_assertions) { "debug build (numbers are not representative)" } else { "release build" };
    format!("{cpu}, {cores} cores, {mem}, Linux {}, fluid {} ({profile})", kernel.trim(), env!("CARGO_PKG_VERSION"))
}

pub(crate) fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

/// A fresh PostgreSQL database for one measurement, dropped on `drop_db`.
pub(crate) async fn create_pg(admin: &str) -> anyhow::Result<(String, String)> {
    sqlx::any::install_default_drivers();
    let name = format!("fluid_bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let pool = sqlx::AnyPool::connect(admin).await.with_context(|| format!("PostgreSQL at {}", fluid_host::store::redact(admin)))?;
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await?;
    pool.close().await;
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or_default();
    Ok((name.clone(), format!("{base}/{name}")))
}

pub(crate) async fn drop_pg(admin: &str, name: &str) {
    if let Ok(pool) = sqlx::AnyPool::connect(admin).await {
        let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&pool).await;
        pool.close().await;
    }
}

pub(crate) fn trivial() -> Task {
    Task::new("bench").run(|_| async { Ok(()) })
}

pub(crate) fn new_runs(n: usize) -> Vec<TaskRun> {
    (0..n)
        .map(|_| {
            let t = to_datetime(now_us());
            TaskRun::queued(TaskRun::new_id(), "bench", t)
        })
        .collect()
}

/// Bench runs that succeeded so far.
pub(crate) async fn count_done(store: &Store) -> anyhow::Result<u64> {
    Ok(store.count_runs("bench", TaskState::Success).await?)
}

/// How many finish-and-claim commits the host made, as its `/metrics` reports them.
pub(crate) fn cycle_commits(metrics: &fluid_host::metrics::Metrics) -> u64 {
    let line = metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix("fluid_store_operation_duration_seconds_count{op=\"finish_and_claim\"} ").map(str::to_string));
    line.and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

/// A host for one measurement, on a fresh database: its folder, and on PostgreSQL the
/// database to drop after (`end_bench_host`).
pub(crate) async fn bench_host(
    backend: Backend,
    pg_admin: Option<&str>,
    workers: usize,
    with_db: bool,
    tag: &str,
) -> anyhow::Result<(Host, PathBuf, Option<(String, String)>)> {
    bench_host_tuned(backend, pg_admin, workers, with_db, tag, Tuning::default()).await
}

/// The settings a measurement varies from the host's defaults.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuning {
    /// Events a delivery round reads from the feed.
    pub(crate) event_batch: usize,
    /// Most runs the completer holds reserved (0: claiming ahead off).
    pub(crate) reserve_ahead: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning { event_batch: fluid_host::plugins::DEFAULT_EVENT_BATCH, reserve_ahead: CompleterConfig::default().reserve_ahead }
    }
}

/// [`bench_host`], tuned.
pub(crate) async fn bench_host_tuned(
    backend: Backend,
    pg_admin: Option<&str>,
    workers: usize,
    with_db: bool,
    tag: &str,
    tuning: Tuning,
) -> anyhow::Result<(Host, PathBuf, Option<(String, String)>)> {
    let dir = temp_dir(tag);
    let pg = match (backend, pg_admin) {
        (Backend::Postgres, Some(admin)) => Some(create_pg(admin).await?),
        _ => None,
    };
    let mut c = HostConfig::new(&dir);
    c.database_url = pg.as_ref().map(|(_, url)| url.clone());
    c.load_plugins = with_db;
    c.plugin_scan_interval = None;
    c.event_batch = tuning.event_batch;
    c.scheduler = SchedulerConfig { workers, run_schedules: false, ..Default::default() };
    c.scheduler.completer.reserve_ahead = tuning.reserve_ahead;
    c.scheduler.producer.poll = Duration::from_millis(20);
    let host = Host::start(c, vec![trivial()]).await?;
    Ok((host, dir, pg))
}

pub(crate) async fn end_bench_host(host: Host, dir: PathBuf, pg: Option<(String, String)>, pg_admin: Option<&str>) {
    host.shutdown(Duration::from_secs(5)).await;
    if let (Some((name, _)), Some(admin)) = (&pg, pg_admin) {
        drop_pg(admin, name).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Start minus queued of every bench run, in ms, sorted.
pub(crate) async fn start_latencies(store: &Store) -> anyhow::Result<Vec<f64>> {
    Ok(store.start_delays_us("bench").await?.into_iter().map(|us| us as f64 / 1000.0).collect())
}

/// A plain HTTP/1.1 GET (one connection per request, as a simple client does).
pub(crate) async fn http_get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<(u16, usize)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let status = std::str::from_utf8(&buf[..buf.len().min(12)]).ok().and_then(|l| l.get(9..12)).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, buf.len()))
}

pub(crate) async fn time_gets(addr: std::net::SocketAddr, paths: &[String], rounds: usize) -> anyhow::Result<(f64, f64)> {
    let mut ms = Vec::new();
    for i in 0..rounds {
        let p = &paths[i % paths.len()];
        let t = Instant::now();
        let (status, _) = http_get(addr, p).await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(status == 200, "GET {p}: {status}");
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    Ok((percentile(&ms, 0.5), percentile(&ms, 0.99)))
}
