//! End-to-end throughput, with and without the db plugin recording history, and the
//! queue-to-start latency at a steady arrival rate.

use crate::harness::*;
use crate::{BenchOptions, Report};
use anyhow::Context;
use fluid_host::TaskState;
use fluid_host::store::Backend;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// One throughput measurement's figures.
pub(crate) struct Throughput {
    pub(crate) runs_per_s: f64,
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

/// One throughput measurement on a fresh database.
pub(crate) async fn throughput(
    backend: Backend,
    pg_admin: Option<&str>,
    workers: usize,
    with_db: bool,
    n: usize,
) -> anyhow::Result<Throughput> {
    throughput_tuned(backend, pg_admin, workers, with_db, n, Tuning::default()).await
}

/// [`throughput`], tuned.
async fn throughput_tuned(
    backend: Backend,
    pg_admin: Option<&str>,
    workers: usize,
    with_db: bool,
    n: usize,
    tuning: Tuning,
) -> anyhow::Result<Throughput> {
    let (host, dir, pg) = bench_host_tuned(backend, pg_admin, workers, with_db, "tp", tuning).await?;
    if with_db {
        // Only the db plugin: stats is another workload.
        if let Some(rt) = &host.plugins {
            rt.unload("stats").await;
        }
    }
    let store = host.scheduler.store().clone();
    let runs = new_runs(n);
    let bytes_before = store.database_bytes().await?;
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
    let bytes_per_run = store.database_bytes().await?.saturating_sub(bytes_before) as f64 / n as f64;
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

/// The backends `--backend` asks for (both by default; PostgreSQL only with a server).
fn backends(opts: &BenchOptions) -> anyhow::Result<Vec<(Backend, &'static str)>> {
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
    Ok(backends)
}

/// Every backend at every worker count, with and without the db plugin; the plot.
pub(crate) async fn section(opts: &BenchOptions, r: &mut Report, n: usize) -> anyhow::Result<()> {
    r.line(format!("## End-to-end throughput ({n} trivial runs; with the db plugin, until the history caught up)"));
    r.line("");
    r.line("| backend | workers | no plugin (baseline) runs/s | with db plugin runs/s | ratio | start latency p50 / p99 (ms), with db | runs per commit, baseline / with db | database growth per run, baseline / with db (bytes) | host RSS when done, with db (MiB) |");
    r.line("|---|---|---|---|---|---|---|---|---|");
    let mut series = Vec::new();
    let counts = if opts.workers.is_empty() { vec![1, 8, 64] } else { opts.workers.clone() };
    for (backend, label) in backends(opts)? {
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

pub(crate) async fn latency_section(opts: &BenchOptions, r: &mut Report) -> anyhow::Result<()> {
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

/// The change feed's delivery round sized by measurement: throughput with the db plugin
/// recording history (8 workers) for each number of events read a round, on each backend,
/// in rounds that rotate the order, medians; each beside the default.
pub(crate) async fn delivery_section(opts: &BenchOptions, r: &mut Report, n: usize) -> anyhow::Result<()> {
    let default = fluid_host::plugins::DEFAULT_EVENT_BATCH;
    let mut sizes = if opts.event_batches.is_empty() { vec![256, default, 4096] } else { opts.event_batches.clone() };
    if !sizes.contains(&default) {
        sizes.push(default);
    }
    sizes.sort_unstable();
    sizes.dedup();
    let rounds = 3;
    r.line(format!(
        "## Events per delivery round ({n} trivial runs, 8 workers, db plugin recording history, {rounds} rounds rotating the order, medians)"
    ));
    r.line("");
    r.line(format!("| backend | events a round | runs/s with db plugin | against {default} (the default) | runs per commit |"));
    r.line("|---|---|---|---|---|");
    let tunings: Vec<Tuning> = sizes.iter().map(|&event_batch| Tuning { event_batch, ..Tuning::default() }).collect();
    for (backend, label) in backends(opts)? {
        let ts = rotated(backend, opts.postgres.as_deref(), true, n, &tunings, rounds).await?;
        let base = medians(&ts, |t| t.runs_per_s)[sizes.iter().position(|&s| s == default).unwrap_or(0)];
        let commits = medians(&ts, |t| t.runs_per_commit);
        for (i, (size, m)) in sizes.iter().zip(medians(&ts, |t| t.runs_per_s)).enumerate() {
            r.line(format!("| {label} | {size} | {m:.0} | {:.2} | {:.1} |", m / base, commits[i]));
        }
    }
    r.line("");
    Ok(())
}

/// Claiming ahead sized by measurement: throughput (8 workers, without and with the db
/// plugin) for each cap on runs held reserved, 0 being the cycle without reservations, on
/// each backend, in rounds that rotate the order, medians; each beside 0.
pub(crate) async fn reserve_section(opts: &BenchOptions, r: &mut Report, n: usize) -> anyhow::Result<()> {
    let default = Tuning::default().reserve_ahead;
    let mut caps = if opts.reserve_ahead.is_empty() { vec![0, 64, default] } else { opts.reserve_ahead.clone() };
    caps.extend([0, default]);
    caps.sort_unstable();
    caps.dedup();
    let rounds = 3;
    r.line(format!("## Runs claimed ahead ({n} trivial runs, 8 workers, {rounds} rounds rotating the order, medians)"));
    r.line("");
    r.line("| backend | db plugin | reserved at most | runs/s | against 0 (none reserved) | runs per commit | p50 start ms |");
    r.line("|---|---|---|---|---|---|---|");
    let tunings: Vec<Tuning> = caps.iter().map(|&reserve_ahead| Tuning { reserve_ahead, ..Tuning::default() }).collect();
    for (backend, label) in backends(opts)? {
        for with_db in [false, true] {
            let ts = rotated(backend, opts.postgres.as_deref(), with_db, n, &tunings, rounds).await?;
            let rates = medians(&ts, |t| t.runs_per_s);
            let (commits, p50) = (medians(&ts, |t| t.runs_per_commit), medians(&ts, |t| t.p50_ms));
            let db = if with_db { "history" } else { "none" };
            for (i, cap) in caps.iter().enumerate() {
                let m = rates[i];
                r.line(format!("| {label} | {db} | {cap} | {m:.0} | {:.2} | {:.1} | {:.1} |", m / rates[0], commits[i], p50[i]));
            }
        }
    }
    r.line("");
    Ok(())
}

/// Throughput (8 workers) under each of `tunings`, `rounds` times, each round starting one
/// further along the list so no tuning always runs first: per tuning, its measurements.
async fn rotated(
    backend: Backend,
    pg_admin: Option<&str>,
    with_db: bool,
    n: usize,
    tunings: &[Tuning],
    rounds: usize,
) -> anyhow::Result<Vec<Vec<Throughput>>> {
    let mut out: Vec<Vec<Throughput>> = tunings.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for k in 0..tunings.len() {
            let i = (k + round) % tunings.len();
            out[i].push(throughput_tuned(backend, pg_admin, 8, with_db, n, tunings[i]).await?);
        }
    }
    Ok(out)
}

/// Per tuning, the median of one figure of its measurements.
fn medians(ts: &[Vec<Throughput>], figure: impl Fn(&Throughput) -> f64) -> Vec<f64> {
    ts.iter().map(|m| median(&m.iter().map(&figure).collect::<Vec<_>>())).collect()
}
