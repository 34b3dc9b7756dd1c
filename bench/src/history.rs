//! History reads over a large table, against a plain read of the same host.

use crate::harness::*;
use crate::{BenchOptions, Report};
use fluid_host::scheduler::SchedulerConfig;
use fluid_host::store::Backend;
use fluid_host::store::Store;
use fluid_host::store::plugin_tables::{PluginStorage, TableLimits, Value as V};
use fluid_host::time::now_us;
use fluid_host::{Host, HostConfig};
use std::time::Duration;
use std::time::Instant;

/// Bulk-loads `n` history rows straight into the db plugin's table (loading a million
/// runs through the scheduler would measure the scheduler, not the history read).
async fn fill_history(store: &Store, n: usize) -> anyhow::Result<()> {
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

/// `GET /task-history` p50/p99 over a large history; baseline: `GET /tasks-status`.
pub(crate) async fn section(opts: &BenchOptions, r: &mut Report) -> anyhow::Result<()> {
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
