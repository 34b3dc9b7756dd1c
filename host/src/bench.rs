//! `fluid bench`: measures the host on this machine and prints each figure beside a
//! baseline measured in the same run (so ratios hold on a noisy machine), with the machine
//! it ran on. Writes `results.md` and `throughput.svg` into the output folder.
//!
//! - Throughput: N trivial runs queued in batches, until the last one finished (and, with
//!   the db plugin, until the history has caught up), for 1, 2, 4, 8 workers, on SQLite and
//!   PostgreSQL; baseline: the same workload with no plugin loaded.
//! - Enqueue-to-start latency p50/p99 under that load (start - queued of every run).
//! - Event delivery: one `on-events` call with 1 and 100 events, to a plugin that does
//!   nothing and to the db plugin; baseline: one `call("ping")` round trip.
//! - Start-up with 50 plugins, compile cache cold and warm; memory per loaded plugin (RSS).
//! - `GET /task-history` p50/p99 over a large history; baseline: `GET /tasks-status`.
//! - Observing: metrics and disabled spans per run (ns), throughput with traces exported
//!   over OTLP against traces off, `GET /metrics` against `GET /tasks-status`.

use crate::host::{Host, HostConfig};
use crate::plugins::wit::bindings::tmp::Event;
use crate::plugins::wit::convert::wit_run;
use crate::plugins::{PluginRuntime, PluginSettings};
use crate::scheduler::{Priority, Scheduler, SchedulerConfig, Task, TaskRun, TaskState};
use crate::store::{Backend, Store};
use crate::time::{now_us, to_datetime};
use anyhow::Context;
use sqlx::AssertSqlSafe;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What to measure and where to write it.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub out: PathBuf,
    /// Smaller workloads (a smoke run).
    pub quick: bool,
    /// Admin URL of a PostgreSQL server (a fresh database is created and dropped); None skips it.
    pub postgres: Option<String>,
    /// Only these parts (throughput, events, tasks, startup, history, observe, enqueue, latency, and
    /// peer, which runs only when named); empty means all but peer.
    pub only: Vec<String>,
    /// Backends of the throughput part ("sqlite", "postgres"); empty means both.
    pub backends: Vec<String>,
    /// Worker counts of the throughput part; empty means 1, 8 and 64.
    pub workers: Vec<usize>,
    /// Runs per throughput measurement; None means 20,000 (1,000 with `quick`).
    pub runs: Option<usize>,
}

impl BenchOptions {
    fn wants(&self, part: &str) -> bool {
        (self.only.is_empty() && part != "peer") || self.only.iter().any(|p| p == part)
    }
}

struct Report {
    md: String,
}

impl Report {
    fn line(&mut self, s: impl AsRef<str>) {
        println!("{}", s.as_ref());
        let _ = writeln!(self.md, "{}", s.as_ref());
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("fluid-bench-{tag}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    let _ = std::fs::create_dir_all(&p);
    p
}

/// The middle of `v` (the upper one of an even count).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn machine() -> String {
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

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

/// A fresh PostgreSQL database for one measurement, dropped on `drop_db`.
async fn create_pg(admin: &str) -> anyhow::Result<(String, String)> {
    sqlx::any::install_default_drivers();
    let name = format!("fluid_bench_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let pool = sqlx::AnyPool::connect(admin).await.with_context(|| format!("PostgreSQL at {}", crate::store::redact(admin)))?;
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await?;
    pool.close().await;
    let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or_default();
    Ok((name.clone(), format!("{base}/{name}")))
}

async fn drop_pg(admin: &str, name: &str) {
    if let Ok(pool) = sqlx::AnyPool::connect(admin).await {
        let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&pool).await;
        pool.close().await;
    }
}

fn trivial() -> Task {
    Task::new("bench").run(|_| async { Ok(()) })
}

fn new_runs(n: usize) -> Vec<TaskRun> {
    (0..n)
        .map(|_| {
            let t = to_datetime(now_us());
            TaskRun {
                id: TaskRun::new_id(),
                task: "bench".into(),
                tags: vec![],
                priority: Priority::Medium,
                state: TaskState::Queued,
                params: serde_json::json!({}),
                queued: Some(t),
                start: None,
                end: None,
                execute_after: Some(t),
                retry_attempt: 0,
                rate_limit_attempt: 0,
                from_run_id: String::new(),
                root_run_id: String::new(),
                error: None,
            }
        })
        .collect()
}

async fn count_done(store: &Store) -> anyhow::Result<i64> {
    Ok(crate::store::query("SELECT COUNT(*) AS n FROM fluid_runs WHERE task = 'bench' AND state = 'success'")
        .fetch_one(&mut store.read().await?)
        .await?
        .try_get("n")?)
}

struct Throughput {
    runs_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Runs started per scheduler commit (finish-and-claim cycles), read from `/metrics`.
    runs_per_commit: f64,
    /// What the databases grew by, per run (runs, feed, and history with the db plugin),
    /// before any pruning.
    bytes_per_run: f64,
    /// The host process's resident memory when the runs are done.
    rss_mib: f64,
}

/// Bytes the databases take: on SQLite the pages of the queue's file and the plugins' (not
/// the write-ahead log, which is folded back in and reused), on PostgreSQL the database's
/// size.
async fn database_bytes(store: &Store) -> anyhow::Result<u64> {
    if store.backend == Backend::Postgres {
        let row = crate::store::query("SELECT pg_database_size(current_database()) AS n").fetch_one(&mut store.read().await?).await?;
        return Ok(row.try_get::<i64, _>("n")? as u64);
    }
    let pages = |s: Store| async move {
        let row = crate::store::query("SELECT page_count * page_size AS n FROM pragma_page_count(), pragma_page_size()")
            .fetch_one(&mut s.read().await?)
            .await?;
        anyhow::Ok(row.try_get::<i64, _>("n")? as u64)
    };
    // The plugins' file through a store of its own, closed after.
    let plugins = store.plugin_store().await?;
    let total = pages(store.clone()).await? + pages(plugins.clone()).await?;
    plugins.close().await;
    Ok(total)
}

/// How many finish-and-claim commits the host made, as its `/metrics` reports them.
fn cycle_commits(metrics: &crate::metrics::Metrics) -> u64 {
    let line = metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix("fluid_store_operation_duration_seconds_count{op=\"finish_and_claim\"} ").map(str::to_string));
    line.and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

/// A host for one measurement, on a fresh database: its folder, and on PostgreSQL the
/// database to drop after (`end_bench_host`).
async fn bench_host(
    backend: Backend,
    pg_admin: Option<&str>,
    workers: usize,
    with_db: bool,
    tag: &str,
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
    c.scheduler = SchedulerConfig { workers, run_schedules: false, poll: Duration::from_millis(20), ..Default::default() };
    let host = Host::start(c, vec![trivial()]).await?;
    Ok((host, dir, pg))
}

async fn end_bench_host(host: Host, dir: PathBuf, pg: Option<(String, String)>, pg_admin: Option<&str>) {
    host.shutdown(Duration::from_secs(5)).await;
    if let (Some((name, _)), Some(admin)) = (&pg, pg_admin) {
        drop_pg(admin, name).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Start minus queued of every bench run, in ms, sorted.
async fn start_latencies(store: &Store) -> anyhow::Result<Vec<f64>> {
    let rows = crate::store::query("SELECT start_at - queued_at AS lat FROM fluid_runs WHERE task = 'bench'")
        .fetch_all(&mut store.read().await?)
        .await?;
    let mut lat: Vec<f64> = rows.iter().filter_map(|r| r.try_get::<i64, _>("lat").ok()).map(|us| us as f64 / 1000.0).collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    Ok(lat)
}

/// One throughput measurement on a fresh database.
async fn throughput(backend: Backend, pg_admin: Option<&str>, workers: usize, with_db: bool, n: usize) -> anyhow::Result<Throughput> {
    let (host, dir, pg) = bench_host(backend, pg_admin, workers, with_db, "tp").await?;
    if with_db {
        // Only the db plugin: stats is another workload.
        if let Some(rt) = &host.plugins {
            rt.unload("stats").await;
        }
    }
    let store = host.scheduler.store().clone();
    let runs = new_runs(n);
    let bytes_before = database_bytes(&store).await?;
    // Count successes from the scheduler's own broadcast: polling the database would
    // compete with the host for it.
    let mut changes = host.scheduler.subscribe();
    let t0 = Instant::now();
    for chunk in runs.chunks(500) {
        store.insert_runs(chunk).await?;
        host.scheduler.wake();
    }
    let mut done = 0usize;
    while done < n {
        match changes.recv().await {
            Ok(r) if r.task == "bench" && r.state == TaskState::Success => done += 1,
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => done = count_done(&store).await? as usize,
            Err(e) => anyhow::bail!("change broadcast closed: {e}"),
        }
    }
    if let Some(rt) = &host.plugins {
        let db = rt.get("db").context("db plugin loaded")?;
        let head = store.feed_head().await?;
        while db.health().checkpoint < head {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let rss_mib = rss_bytes() as f64 / (1 << 20) as f64;
    let bytes_per_run = database_bytes(&store).await?.saturating_sub(bytes_before) as f64 / n as f64;
    let commits = cycle_commits(host.scheduler.metrics());
    let lat = start_latencies(&store).await?;
    end_bench_host(host, dir, pg, pg_admin).await;
    Ok(Throughput {
        runs_per_s: n as f64 / secs,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        runs_per_commit: n as f64 / commits.max(1) as f64,
        bytes_per_run,
        rss_mib,
    })
}

fn svg(series: &[(String, Vec<(usize, f64)>)]) -> String {
    let (w, h, left, bottom) = (640.0, 360.0, 70.0, 40.0);
    let max = series.iter().flat_map(|(_, p)| p.iter().map(|x| x.1)).fold(1.0_f64, f64::max) * 1.1;
    let xs = [1usize, 2, 4, 8];
    let x = |workers: usize| left + (xs.iter().position(|&v| v == workers).unwrap_or(0) as f64) * (w - left - 20.0) / 3.0;
    let y = |v: f64| (h - bottom) - v / max * (h - bottom - 20.0);
    let colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"];
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let _ = writeln!(s, "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>", h - bottom, w - 10.0, h - bottom);
    let _ = writeln!(s, "<line x1=\"{left}\" y1=\"10\" x2=\"{left}\" y2=\"{}\" stroke=\"black\"/>", h - bottom);
    for &wk in &xs {
        let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{wk}</text>", x(wk), h - bottom + 16.0);
    }
    let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">workers</text>", (w + left) / 2.0, h - 6.0);
    for i in 0..=4 {
        let v = max * i as f64 / 4.0;
        let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.0}</text>", left - 6.0, y(v) + 4.0, v);
    }
    let _ = writeln!(s, "<text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">runs/s</text>", h / 2.0, h / 2.0);
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = colors[i % colors.len()];
        let path: Vec<String> = pts.iter().map(|(wk, v)| format!("{:.1},{:.1}", x(*wk), y(*v))).collect();
        let _ = writeln!(s, "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>", path.join(" "));
        for (wk, v) in pts {
            let _ = writeln!(s, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{c}\"/>", x(*wk), y(*v));
        }
        let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" fill=\"{c}\">{name}</text>", left + 10.0, 20.0 + 16.0 * i as f64);
    }
    s.push_str("</svg>\n");
    s
}

/// A plain HTTP/1.1 GET (one connection per request, as a simple client does).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<(u16, usize)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let status = std::str::from_utf8(&buf[..buf.len().min(12)]).ok().and_then(|l| l.get(9..12)).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, buf.len()))
}

async fn time_gets(addr: std::net::SocketAddr, paths: &[String], rounds: usize) -> anyhow::Result<(f64, f64)> {
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

/// Bulk-loads `n` history rows straight into the db plugin's table (loading a million
/// runs through the scheduler would measure the scheduler, not the history read).
async fn fill_history(store: &Store, n: usize) -> anyhow::Result<()> {
    use crate::store::plugin_tables::{PluginStorage, TableLimits, Value as V};
    // Through the plugins' storage, as the db plugin writes its table (which it made when
    // it loaded); only the limits are the bench's, to hold a million rows.
    let storage = PluginStorage::new(store.clone()).await?;
    let limits = TableLimits {
        max_tables: 64,
        max_rows: u64::MAX,
        max_storage_mib: u64::MAX >> 20,
        max_read_mib: 64,
        statement_timeout_ms: 600_000,
    };
    let columns: Vec<String> = [
        "id",
        "name",
        "priority",
        "state",
        "queued",
        "start",
        "end",
        "params",
        "tags",
        "error",
        "retry_attempt",
        "rate_limit_attempt",
        "from_run_id",
        "root_run_id",
        "seq",
    ]
    .map(String::from)
    .to_vec();
    let base = now_us() - n as i64 * 1000;
    let states = ["success", "success", "success", "failure", "aborted"];
    let text = |s: &str| V::Text(s.to_string());
    for chunk_start in (0..n).step_by(10_000) {
        let rows: Vec<Vec<V>> = (chunk_start..(chunk_start + 10_000).min(n))
            .map(|i| {
                let q = base + i as i64 * 1000 / 3; // a third of a millisecond apart: equal times happen
                vec![
                    V::Text(format!("{i:032x}")),
                    V::Text(format!("task{}", i % 20)),
                    text("medium"),
                    text(states[i % states.len()]),
                    V::Int(q),
                    V::Int(q),
                    V::Int(q + 500),
                    V::Json(format!("{{\"i\": {}}}", i % 1000)),
                    V::Json("[]".into()),
                    V::Null,
                    V::Int(0),
                    V::Int(0),
                    text(""),
                    text(""),
                    V::Int(i as i64),
                ]
            })
            .collect();
        storage.upsert("db", "fluid_tasks", columns.clone(), rows, None, &limits).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    Ok(())
}

/// Runs every benchmark and writes the report.
pub async fn run(opts: BenchOptions) -> anyhow::Result<()> {
    std::fs::create_dir_all(&opts.out)?;
    let mut r = Report { md: String::new() };
    r.line("# fluid bench");
    r.line("");
    r.line(format!("Machine: {}", machine()));
    r.line("");
    let n = opts.runs.unwrap_or(if opts.quick { 1000 } else { 20_000 });

    if opts.wants("throughput") {
        throughput_section(&opts, &mut r, n).await?;
    }
    if opts.wants("events") || opts.wants("startup") || opts.wants("tasks") {
        plugin_sections(&opts, &mut r).await?;
    }
    if opts.wants("history") {
        history_section(&opts, &mut r).await?;
    }
    if opts.wants("observe") {
        observe_section(&opts, &mut r, n).await?;
    }
    if opts.wants("enqueue") {
        enqueue_section(&opts, &mut r, n).await?;
    }
    if opts.wants("latency") {
        latency_section(&opts, &mut r).await?;
    }
    if opts.wants("peer") {
        peer_section(&opts, &mut r, n).await?;
    }
    r.line("Targets: >= 20,000 runs/s with history on SQLite, >= 5,000 on PostgreSQL; <= 2 µs per event in batches; <= 50 µs per task-component instance; history p99 <= 5 ms at 1,000,000 rows; 50 cached plugins in <= 300 ms.");
    std::fs::write(opts.out.join("results.md"), &r.md)?;
    println!("\nwrote {}", opts.out.join("results.md").display());
    Ok(())
}

async fn throughput_section(opts: &BenchOptions, r: &mut Report, n: usize) -> anyhow::Result<()> {
    r.line(format!("## End-to-end throughput ({n} trivial runs; with the db plugin, until the history caught up)"));
    r.line("");
    r.line("| backend | workers | no plugin (baseline) runs/s | with db plugin runs/s | ratio | start latency p50 / p99 (ms), with db | runs per commit, baseline / with db | database growth per run, baseline / with db (bytes) | host RSS when done, with db (MiB) |");
    r.line("|---|---|---|---|---|---|---|---|---|");
    let mut series = Vec::new();
    let on = |b: &str| opts.backends.is_empty() || opts.backends.iter().any(|x| x == b);
    let mut backends = Vec::new();
    if on("sqlite") {
        backends.push((Backend::Sqlite, "SQLite"));
    }
    if on("postgres") {
        match opts.postgres {
            Some(_) => backends.push((Backend::Postgres, "PostgreSQL")),
            None if !opts.backends.is_empty() => anyhow::bail!("--backend postgres needs a PostgreSQL server: --postgres URL, not none"),
            None => {}
        }
    }
    let counts = if opts.workers.is_empty() { vec![1, 8, 64] } else { opts.workers.clone() };
    for (backend, label) in backends {
        let mut base_pts = Vec::new();
        let mut db_pts = Vec::new();
        for &workers in &counts {
            let base = throughput(backend, opts.postgres.as_deref(), workers, false, n).await?;
            let db = throughput(backend, opts.postgres.as_deref(), workers, true, n).await?;
            r.line(format!(
                "| {label} | {workers} | {:.0} | {:.0} | {:.2} | {:.1} / {:.1} | {:.1} / {:.1} | {:.0} / {:.0} | {:.0} |",
                base.runs_per_s,
                db.runs_per_s,
                db.runs_per_s / base.runs_per_s,
                db.p50_ms,
                db.p99_ms,
                base.runs_per_commit,
                db.runs_per_commit,
                base.bytes_per_run,
                db.bytes_per_run,
                db.rss_mib
            ));
            base_pts.push((workers, base.runs_per_s));
            db_pts.push((workers, db.runs_per_s));
        }
        series.push((format!("{label}, no plugin"), base_pts));
        series.push((format!("{label}, db plugin"), db_pts));
    }
    std::fs::write(opts.out.join("throughput.svg"), svg(&series))?;
    r.line("");
    Ok(())
}

async fn plugin_sections(opts: &BenchOptions, r: &mut Report) -> anyhow::Result<()> {
    // Event delivery, task components and start-up, on one SQLite store.
    let dir = temp_dir("plugins");
    let store = Store::open_sqlite(&dir).await?;
    let scheduler = Scheduler::new(store.clone(), SchedulerConfig { consume: false, run_schedules: false, ..Default::default() });
    let plugins_dir = dir.join("plugins");
    std::fs::create_dir_all(&plugins_dir)?;
    let noop = std::fs::read(crate::plugins::bundled::guest_wasm_dir().join("fluid_test_noop.wasm"))
        .context("noop test component (built with the host)")?;
    std::fs::write(plugins_dir.join("noop.wasm"), &noop)?;
    std::fs::write(plugins_dir.join("db.wasm"), crate::plugins::bundled::DB_WASM)?;
    let mut settings = PluginSettings::new(&plugins_dir);
    settings.cache_dir = Some(dir.join("cache"));
    settings.scan_interval = None;
    let rt = PluginRuntime::new(scheduler.clone(), settings.clone()).await?;
    rt.load_dir().await?;
    r.line("## Event delivery to a component (one on-events call)");
    r.line("");
    r.line("| plugin | batch | µs per event | baseline: one call(\"ping\") round trip, µs |");
    r.line("|---|---|---|---|");
    let ping = {
        let p = rt.get("noop").context("noop loaded")?;
        let rounds = if opts.quick { 2000 } else { 20000 };
        let t = Instant::now();
        for _ in 0..rounds {
            p.actor.call("ping".into(), "{}".into(), vec![]).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        t.elapsed().as_secs_f64() * 1e6 / rounds as f64
    };
    for plugin in ["noop", "db"] {
        let p = rt.get(plugin).with_context(|| format!("{plugin} loaded"))?;
        for batch in [1usize, 100] {
            let total = if opts.quick { 2000 } else { if plugin == "db" { 20000 } else { 100000 } };
            let mut seq = 1u64;
            // The runs are made before the clock starts (a new id is a getrandom syscall);
            // converting them for the plugin is part of delivery, and is timed.
            let runs = new_runs(batch);
            let t = Instant::now();
            let mut sent = 0;
            while sent < total {
                let events: Vec<Event> = runs
                    .iter()
                    .map(|run| {
                        seq += 1;
                        Event { seq, run: wit_run(run) }
                    })
                    .collect();
                p.actor.on_events(events).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
                sent += batch;
            }
            r.line(format!("| {plugin} | {batch} | {:.2} | {ping:.2} |", t.elapsed().as_secs_f64() * 1e6 / sent as f64));
        }
    }
    // One task-component run (a fresh instance and one call) against a native task.
    std::fs::write(
        plugins_dir.join("task_cases.wasm"),
        std::fs::read(crate::plugins::bundled::guest_wasm_dir().join("fluid_test_task_cases.wasm"))?,
    )?;
    rt.load_file(&plugins_dir.join("task_cases.wasm")).await.map_err(anyhow::Error::msg)?;
    let component = scheduler.task("give-up").context("task component loaded")?;
    let native = std::sync::Arc::new(Task::new("native").run(|_| async { Err(crate::scheduler::TaskError::Aborted("baseline".into())) }));
    let runs = if opts.quick { 500 } else { 5000 };
    let mut per_run = Vec::new();
    for task in [&native, &component] {
        let mut made = new_runs(runs);
        for run in &mut made {
            run.task = task.name.clone();
        }
        let t = Instant::now();
        for run in made {
            let ctx =
                crate::scheduler::TaskContext { run, scheduler: scheduler.clone(), cancel: tokio_util::sync::CancellationToken::new() };
            let _ = (task.executor)(ctx).await;
        }
        per_run.push(t.elapsed().as_secs_f64() * 1e6 / runs as f64);
    }
    r.line("");
    r.line("## One task-component run (fresh instance + run call)");
    r.line("");
    r.line("| task | µs per run |");
    r.line("|---|---|");
    r.line(format!("| baseline: native task | {:.2} |", per_run[0]));
    r.line(format!("| component task | {:.2} |", per_run[1]));
    // Where a component run's time goes: the store and its WASI context alone, made and
    // dropped as each run does; the rest is instantiation, the call and the slot's reset.
    let policy = std::sync::Arc::new(rt.shared.config.read().unwrap().policy("task_cases")?);
    let sup = std::sync::Arc::new(crate::plugins::instance::supervisor::Supervisor::new(
        "bench",
        policy,
        tokio_util::sync::CancellationToken::new(),
    ));
    let store_us = {
        let t = Instant::now();
        for _ in 0..runs {
            drop(rt.shared.stores.new_store(&sup).map_err(anyhow::Error::msg)?);
        }
        t.elapsed().as_secs_f64() * 1e6 / runs as f64
    };
    r.line(format!("| of which: a store and its WASI context, made and dropped | {store_us:.2} |"));
    // The same store, plus instantiation (no call): what the call itself costs is the rest.
    let instantiate_us = {
        let path = plugins_dir.join("task_cases.wasm");
        let bytes = std::fs::read(&path)?;
        let sh = &rt.shared;
        let crate::plugins::Checked::Task(pre, _) =
            crate::plugins::check_component(&sh.linkers.engine, &sh.linkers.plugin, &sh.linkers.task, &path, &bytes, None)
                .map_err(anyhow::Error::msg)?
        else {
            anyhow::bail!("task_cases.wasm is not a task component");
        };
        let t = Instant::now();
        for _ in 0..runs {
            let mut store = sh.stores.new_store(&sup).map_err(anyhow::Error::msg)?;
            store.set_epoch_deadline(1_000);
            pre.instantiate_async(&mut store).await.map_err(crate::plugins::engine::wt)?;
        }
        t.elapsed().as_secs_f64() * 1e6 / runs as f64
    };
    r.line(format!("| of which: the same, plus instantiation (no call) | {instantiate_us:.2} |"));
    rt.shutdown().await;
    r.line("");

    // Start-up with 50 plugins, cache cold then warm; memory per plugin.
    let many = dir.join("many");
    std::fs::create_dir_all(&many)?;
    for i in 0..50 {
        std::fs::write(many.join(format!("n{i:02}.wasm")), &noop)?;
        std::fs::write(many.join(format!("n{i:02}.json")), format!("{{\"name\": \"n{i:02}\"}}"))?;
    }
    let mut s50 = PluginSettings::new(&many);
    s50.cache_dir = Some(dir.join("cache50"));
    s50.scan_interval = None;
    // Baseline: the same runtime over an empty folder.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty)?;
    let mut s0 = PluginSettings::new(&empty);
    s0.cache_dir = Some(dir.join("cache0"));
    s0.scan_interval = None;
    let t = Instant::now();
    let rt0 = PluginRuntime::new(scheduler.clone(), s0).await?;
    rt0.load_dir().await?;
    let mut startup = vec![("baseline: an empty plugins folder", t.elapsed().as_secs_f64() * 1000.0, 0)];
    rt0.shutdown().await;
    let mut per_plugin = 0.0;
    let mut keep = Vec::new();
    let rss_before = rss_bytes();
    for label in ["cold", "warm"] {
        let rss0 = rss_bytes();
        let t = Instant::now();
        let rt = PluginRuntime::new(scheduler.clone(), s50.clone()).await?;
        rt.load_dir().await?;
        startup.push((label, t.elapsed().as_secs_f64() * 1000.0, rt.list().iter().filter(|p| p.state == "active").count()));
        // The warm set loads while the cold one is still alive, so its RSS growth is 50 more
        // live plugins (instances, memories, actors), not freed memory reused.
        per_plugin = (rss_bytes().saturating_sub(rss0)) as f64 / 50.0 / 1024.0;
        keep.push(rt);
    }
    for rt in keep {
        rt.shutdown().await;
    }
    r.line("## Start-up with 50 plugins");
    r.line("");
    r.line("| compile cache | ms to load 50 | active |");
    r.line("|---|---|---|");
    for (label, ms, active) in &startup {
        r.line(format!("| {label} | {ms:.1} | {active} |"));
    }
    r.line("");
    r.line(format!(
        "Memory per loaded plugin (RSS growth / 50, warm): {per_plugin:.0} KiB; baseline: the whole process before loading them, {:.0} MiB",
        rss_before as f64 / (1024.0 * 1024.0)
    ));
    r.line("");
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn history_section(opts: &BenchOptions, r: &mut Report) -> anyhow::Result<()> {
    // History reads over a large table.
    let rows = if opts.quick { 100_000 } else { 1_000_000 };
    let hdir = temp_dir("history");
    let mut c = HostConfig::new(&hdir);
    c.plugin_scan_interval = None;
    c.scheduler = SchedulerConfig { consume: false, run_schedules: false, ..Default::default() };
    let host = Host::start(c, vec![]).await?;
    let t = Instant::now();
    // The db plugin's table is in the plugins' store (on SQLite, a file of its own).
    let plugin_store = host.scheduler.store().plugin_store().await?;
    fill_history(&plugin_store, rows).await?;
    if plugin_store.backend == Backend::Sqlite {
        plugin_store.close().await;
    }
    let fill_s = t.elapsed().as_secs_f64();
    let rounds = if opts.quick { 100 } else { 400 };
    let (b50, b99) = time_gets(host.addr, &["/tasks-status".to_string()], rounds).await?;
    r.line(format!("## GET /task-history over {rows} stored runs (loaded in {fill_s:.1} s)"));
    r.line("");
    r.line("| query | p50 ms | p99 ms |");
    r.line("|---|---|---|");
    r.line(format!("| baseline: GET /tasks-status | {b50:.2} | {b99:.2} |"));
    let first = http_get(host.addr, "/task-history?limit=50").await?;
    anyhow::ensure!(first.0 == 200, "history answered {}", first.0);
    let queries: Vec<(&str, Vec<String>)> = vec![
        ("first page, limit 50", vec!["/task-history?limit=50".into()]),
        ("default page (250)", vec!["/task-history".into()]),
        ("one task, limit 50", (0..20).map(|i| format!("/task-history?task=task{i}&limit=50")).collect()),
        ("state=failure, limit 50", vec!["/task-history?state=failure&limit=50".into()]),
        ("one run by id", (0..50).map(|i| format!("/task-history/{:032x}", i * 997 % rows)).collect()),
    ];
    for (label, paths) in queries {
        let (p50, p99) = time_gets(host.addr, &paths, rounds).await?;
        r.line(format!("| {label} | {p50:.2} | {p99:.2} |"));
    }
    host.shutdown(Duration::from_secs(1)).await;
    let _ = std::fs::remove_dir_all(&hdir);
    r.line("");
    Ok(())
}

/// Queue-to-start latency at a steady arrival rate: `rate` runs a second for `secs`, each
/// queued on its own (as requests and tasks queue them), on a host with 8 workers. The
/// p50 and p99 of start minus queued, in ms.
async fn steady_latency(backend: Backend, pg_admin: Option<&str>, rate: u64, secs: u64) -> anyhow::Result<(f64, f64)> {
    let (host, dir, pg) = bench_host(backend, pg_admin, 8, false, "lat").await?;
    let n = rate * secs;
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut changes = host.scheduler.subscribe();
    let mut queued = tokio::task::JoinSet::new();
    for _ in 0..n {
        ticker.tick().await;
        let s = host.scheduler.clone();
        queued.spawn(async move { s.queue("bench", serde_json::json!({}), Default::default()).await });
    }
    while let Some(q) = queued.join_next().await {
        q??;
    }
    let mut done = 0;
    while done < n {
        match changes.recv().await {
            Ok(r) if r.state == TaskState::Success => done += 1,
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => done = count_done(host.scheduler.store()).await? as u64,
            Err(e) => anyhow::bail!("change broadcast closed: {e}"),
        }
    }
    let lat = start_latencies(host.scheduler.store()).await?;
    end_bench_host(host, dir, pg, pg_admin).await;
    Ok((percentile(&lat, 0.5), percentile(&lat, 0.99)))
}

async fn latency_section(opts: &BenchOptions, r: &mut Report) -> anyhow::Result<()> {
    let (rate, secs) = if opts.quick { (200, 2) } else { (1000, 10) };
    r.line(format!("## Queue-to-start latency at a steady {rate} runs/s for {secs} s (8 workers, no plugin)"));
    r.line("");
    r.line("| backend | p50 ms | p99 ms |");
    r.line("|---|---|---|");
    let (p50, p99) = steady_latency(Backend::Sqlite, None, rate, secs).await?;
    r.line(format!("| SQLite | {p50:.2} | {p99:.2} |"));
    if let Some(admin) = opts.postgres.as_deref() {
        let (p50, p99) = steady_latency(Backend::Postgres, Some(admin), rate, secs).await?;
        r.line(format!("| PostgreSQL | {p50:.2} | {p99:.2} |"));
    }
    r.line("");
    Ok(())
}

/// The peer's script and its pinned packages (npm), written out and installed under
/// `out/peer` when the peer part runs.
const PEER_FILES: [(&str, &str); 3] = [
    ("package.json", include_str!("../bench-peer/package.json")),
    ("package-lock.json", include_str!("../bench-peer/package-lock.json")),
    ("graphile.mjs", include_str!("../bench-peer/graphile.mjs")),
];

/// graphile-worker's jobs per second on a fresh database of the server at `admin`: `n`
/// no-op jobs, concurrency 8, `mode` batched or default.
async fn graphile_rate(peer: &std::path::Path, admin: &str, n: usize, mode: &str) -> anyhow::Result<f64> {
    let (name, url) = create_pg(admin).await?;
    let out = tokio::process::Command::new("node")
        .arg(peer.join("graphile.mjs"))
        .args([url.as_str(), &n.to_string(), "8", mode])
        .current_dir(peer)
        .output()
        .await
        .context("run node (graphile-worker)")?;
    drop_pg(admin, &name).await;
    let text = String::from_utf8_lossy(&out.stdout);
    let rate = text.lines().find_map(|l| l.strip_prefix("jobs/s ")).and_then(|v| v.trim().parse().ok());
    rate.ok_or_else(|| anyhow::anyhow!("graphile-worker ({mode}) printed no rate: {text}{}", String::from_utf8_lossy(&out.stderr)))
}

/// fluid beside graphile-worker (npm, the version pinned in `bench-peer/`) on the same
/// PostgreSQL: three rounds, each system in turn within a round, medians.
async fn peer_section(opts: &BenchOptions, r: &mut Report, n: usize) -> anyhow::Result<()> {
    let admin = opts.postgres.as_deref().context("the peer part needs a PostgreSQL server: --postgres URL")?;
    let peer = opts.out.join("peer");
    std::fs::create_dir_all(&peer)?;
    for (file, text) in PEER_FILES {
        std::fs::write(peer.join(file), text)?;
    }
    if !peer.join("node_modules/graphile-worker").is_dir() {
        let status = tokio::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&peer)
            .status()
            .await
            .context("run npm (install graphile-worker)")?;
        anyhow::ensure!(status.success(), "npm ci failed in {}", peer.display());
    }
    let rounds = 3;
    let mut rates: Vec<(&str, Vec<f64>)> = vec![
        ("graphile-worker, batched (local queue, batched completion), PostgreSQL", vec![]),
        ("graphile-worker, default, PostgreSQL", vec![]),
        ("fluid, db plugin recording history, PostgreSQL", vec![]),
        ("fluid, no plugin, PostgreSQL", vec![]),
        ("fluid, db plugin recording history, SQLite", vec![]),
    ];
    for _ in 0..rounds {
        rates[0].1.push(graphile_rate(&peer, admin, n, "batched").await?);
        rates[1].1.push(graphile_rate(&peer, admin, n, "default").await?);
        rates[2].1.push(throughput(Backend::Postgres, Some(admin), 8, true, n).await?.runs_per_s);
        rates[3].1.push(throughput(Backend::Postgres, Some(admin), 8, false, n).await?.runs_per_s);
        rates[4].1.push(throughput(Backend::Sqlite, None, 8, true, n).await?.runs_per_s);
    }
    let base = median(&rates[0].1);
    r.line(format!("## Beside graphile-worker ({n} no-op runs, concurrency 8, {rounds} rounds interleaved, medians)"));
    r.line("");
    r.line("| system | runs/s | against graphile-worker batched |");
    r.line("|---|---|---|");
    for (label, v) in &rates {
        r.line(format!("| {label} | {:.0} | {:.2} |", median(v), median(v) / base));
    }
    r.line("");
    Ok(())
}

/// Queues `n` runs over HTTP: `POST /tasks/bench` from `clients` clients at once, or, with
/// `batch`, lists of that many params to `POST /tasks/bench/batch` from one client.
/// Runs queued per second.
async fn enqueue_rate(addr: std::net::SocketAddr, n: usize, clients: usize, batch: Option<usize>) -> anyhow::Result<f64> {
    let http = reqwest::Client::new();
    let t = Instant::now();
    match batch {
        Some(size) => {
            let body: Vec<serde_json::Value> = (0..size).map(|_| serde_json::json!({})).collect();
            for _ in 0..n.div_ceil(size) {
                let r = http.post(format!("http://{addr}/tasks/bench/batch")).json(&body).send().await?;
                anyhow::ensure!(r.status() == 201, "batch answered {}", r.status());
            }
        }
        None => {
            let mut clients_done = tokio::task::JoinSet::new();
            for _ in 0..clients {
                let http = http.clone();
                let each = n / clients;
                clients_done.spawn(async move {
                    for _ in 0..each {
                        let r = http.post(format!("http://{addr}/tasks/bench")).json(&serde_json::json!({})).send().await?;
                        anyhow::ensure!(r.status() == 201, "queue answered {}", r.status());
                    }
                    Ok(())
                });
            }
            while let Some(done) = clients_done.join_next().await {
                done??;
            }
        }
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

async fn enqueue_section(opts: &BenchOptions, r: &mut Report, n: usize) -> anyhow::Result<()> {
    let rounds = 3;
    let dir = temp_dir("enqueue");
    let mut c = HostConfig::new(&dir);
    c.plugin_scan_interval = None;
    c.load_plugins = false;
    c.scheduler = SchedulerConfig { consume: false, run_schedules: false, ..Default::default() };
    let host = Host::start(c, vec![trivial()]).await?;
    // Interleaved rounds: each way in turn, so both see the same machine and table sizes.
    let (mut single, mut batched) = (vec![], vec![]);
    let n = if opts.quick { n.min(2000) } else { n };
    for _ in 0..rounds {
        single.push(enqueue_rate(host.addr, n, 8, None).await?);
        batched.push(enqueue_rate(host.addr, n, 1, Some(1000)).await?);
    }
    host.shutdown(Duration::from_secs(1)).await;
    let _ = std::fs::remove_dir_all(&dir);
    let (s, b) = (median(&single), median(&batched));
    r.line(format!("## Queueing over HTTP, SQLite ({n} runs a round, {rounds} rounds interleaved, medians)"));
    r.line("");
    r.line("| way | runs queued/s | ratio |");
    r.line("|---|---|---|");
    r.line(format!("| baseline: `POST /tasks/{{name}}`, 8 clients at once | {s:.0} | 1.00 |"));
    r.line(format!("| `POST /tasks/{{name}}/batch`, 1,000 params a request, 1 client | {b:.0} | {:.2} |", b / s));
    r.line("");
    Ok(())
}

/// Runs `fut` on a runtime of its own whose every thread logs and traces through
/// `dispatch`: one process can so compare tracing set-ups side by side.
fn on_dispatch<T: Send + 'static>(
    dispatch: tracing::Dispatch,
    fut: impl std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
) -> anyhow::Result<T> {
    std::thread::spawn(move || {
        let d = dispatch.clone();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            // The guard would reset the thread's default when dropped; the thread keeps it.
            .on_thread_start(move || std::mem::forget(tracing::dispatcher::set_default(&d)))
            .build()?;
        let _guard = tracing::dispatcher::set_default(&dispatch);
        rt.block_on(fut)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("benchmark thread panicked"))?
}

/// A local OTLP/HTTP endpoint that accepts and counts export requests.
async fn sink_collector() -> anyhow::Result<(String, std::sync::Arc<std::sync::atomic::AtomicU64>)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let bytes = std::sync::Arc::new(AtomicU64::new(0));
    let b = bytes.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            b.fetch_add(body.len() as u64, Ordering::Relaxed);
            async { axum::http::StatusCode::OK }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((format!("http://{addr}"), bytes))
}

/// The cost of observing: metrics recorded per run, disabled spans, traces exported, and
/// a scrape of `/metrics`.
async fn observe_section(opts: &BenchOptions, r: &mut Report, n: usize) -> anyhow::Result<()> {
    use crate::telemetry::{LogStyle, TelemetryConfig, layers};
    use tracing_subscriber::layer::SubscriberExt;
    let serve_default = |otlp: Option<String>| TelemetryConfig {
        log: "info".into(),
        style: LogStyle::Plain,
        otlp_endpoint: otlp,
        service_name: "fluid-bench".into(),
    };
    r.line("## The cost of observing");
    r.line("");
    // Metrics a run records: queued, started (latency), ended (duration), finished.
    let metrics = crate::metrics::Metrics::new(&Default::default());
    let rounds = if opts.quick { 100_000 } else { 1_000_000 };
    let t = Instant::now();
    for _ in 0..rounds {
        metrics.run_queued("bench");
        metrics.run_started("bench", Duration::from_micros(150));
        metrics.run_ended("bench", Duration::from_micros(40));
        metrics.run_finished("bench", "success");
    }
    let metrics_ns = t.elapsed().as_secs_f64() * 1e9 / rounds as f64;
    // Spans a run opens when traces are off: queue, run, and its share of a claim, a
    // finish and a delivery (counted whole: an upper bound), under `fluid serve`'s subscriber.
    let (l, _) = layers(&serve_default(None), std::io::sink)?;
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(l));
    let spans_ns = tracing::dispatcher::with_default(&dispatch, || {
        let t = Instant::now();
        for i in 0..rounds {
            for name in ["queue", "claim", "run", "finish", "deliver"] {
                let span = tracing::debug_span!("fluid.bench", name, i);
                std::hint::black_box(span.in_scope(|| i));
            }
        }
        t.elapsed().as_secs_f64() * 1e9 / rounds as f64
    });
    r.line("| per run | ns |");
    r.line("|---|---|");
    r.line(format!("| metrics recorded (4 series) | {metrics_ns:.0} |"));
    r.line(format!("| 5 spans opened and entered, traces off | {spans_ns:.0} |"));
    r.line("");

    // End-to-end: the same workload with traces off and exported to a local collector,
    // alternated three times (a single pair is within this machine's run-to-run noise).
    let workers = 4;
    let (off, on, exported) = tokio::task::spawn_blocking(move || -> anyhow::Result<(Vec<f64>, Vec<f64>, u64)> {
        let rt = tokio::runtime::Runtime::new()?;
        let (endpoint, bytes) = rt.block_on(sink_collector())?;
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let (l, _) = layers(&serve_default(None), std::io::sink)?;
            let d = tracing::Dispatch::new(tracing_subscriber::registry().with(l));
            off.push(on_dispatch(d, throughput(Backend::Sqlite, None, workers, false, n))?.runs_per_s);
            let (l, provider) = layers(&serve_default(Some(endpoint.clone())), std::io::sink)?;
            let d = tracing::Dispatch::new(tracing_subscriber::registry().with(l));
            on.push(on_dispatch(d, throughput(Backend::Sqlite, None, workers, false, n))?.runs_per_s);
            if let Some(p) = provider {
                let _ = p.shutdown();
            }
        }
        Ok((off, on, bytes.load(std::sync::atomic::Ordering::Relaxed)))
    })
    .await??;
    let runs = |v: &[f64]| v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ");
    r.line(format!("| SQLite, {workers} workers, {n} runs, no plugin | runs/s, median of 3 (each run) | ratio |"));
    r.line("|---|---|---|");
    r.line(format!("| baseline: `fluid serve`'s logging, traces off | {:.0} ({}) | 1.00 |", median(&off), runs(&off)));
    r.line(format!(
        "| traces exported over OTLP/HTTP ({:.1} MB sent) | {:.0} ({}) | {:.2} |",
        exported as f64 / 1e6,
        median(&on),
        runs(&on),
        median(&on) / median(&off)
    ));
    r.line("");

    // A scrape of /metrics against a plain read of the same host.
    let dir = temp_dir("observe");
    let mut c = HostConfig::new(&dir);
    c.plugin_scan_interval = None;
    c.scheduler = SchedulerConfig { run_schedules: false, ..Default::default() };
    let host = Host::start(c, vec![trivial()]).await?;
    host.scheduler.store().insert_runs(&new_runs(1000)).await?;
    host.scheduler.wake();
    let rounds = if opts.quick { 100 } else { 400 };
    let (b50, b99) = time_gets(host.addr, &["/tasks-status".to_string()], rounds).await?;
    let (m50, m99) = time_gets(host.addr, &["/metrics".to_string()], rounds).await?;
    r.line("| request | p50 ms | p99 ms |");
    r.line("|---|---|---|");
    r.line(format!("| baseline: GET /tasks-status | {b50:.2} | {b99:.2} |"));
    r.line(format!("| GET /metrics | {m50:.2} | {m99:.2} |"));
    r.line("");
    host.shutdown(Duration::from_secs(1)).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
