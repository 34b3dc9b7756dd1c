//! Plugins measured one at a time: event delivery, a task-component run against a native
//! task (and where its time goes), start-up with 50 plugins and memory per plugin.

use crate::harness::{new_runs, rss_bytes, temp_dir};
use crate::{BenchOptions, Report};
use anyhow::Context;
use fluid_host::Task;
use fluid_host::plugins::bundled::{DB_WASM, guest_wasm_dir};
use fluid_host::plugins::{PluginRuntime, PluginSettings};
use fluid_host::scheduler::{Scheduler, SchedulerConfig, TaskContext, TaskError};
use fluid_host::store::Store;
use std::time::Instant;

/// Event delivery, task components and start-up, on one SQLite store.
pub(crate) async fn sections(opts: &BenchOptions, r: &mut Report) -> anyhow::Result<()> {
    // Event delivery, task components and start-up, on one SQLite store.
    let dir = temp_dir("plugins");
    let store = Store::open_sqlite(&dir).await?;
    let scheduler = Scheduler::new(store.clone(), SchedulerConfig { consume: false, run_schedules: false, ..Default::default() });
    let plugins_dir = dir.join("plugins");
    std::fs::create_dir_all(&plugins_dir)?;
    let noop = std::fs::read(guest_wasm_dir().join("fluid_test_noop.wasm")).context("noop test component (built with the host)")?;
    std::fs::write(plugins_dir.join("noop.wasm"), &noop)?;
    std::fs::write(plugins_dir.join("db.wasm"), DB_WASM)?;
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
        let rounds = if opts.quick { 2000 } else { 20000 };
        let t = Instant::now();
        for _ in 0..rounds {
            rt.call_plugin("noop", "ping", "{}").await?;
        }
        t.elapsed().as_secs_f64() * 1e6 / rounds as f64
    };
    for plugin in ["noop", "db"] {
        for batch in [1usize, 100] {
            let total = if opts.quick { 2000 } else { if plugin == "db" { 20000 } else { 100000 } };
            let mut seq = 2u64;
            // The runs are made before the clock starts (a new id is a getrandom syscall);
            // converting them for the plugin is part of delivery, and is timed.
            let runs = new_runs(batch);
            let t = Instant::now();
            let mut sent = 0;
            while sent < total {
                rt.deliver_runs(plugin, &runs, seq).await?;
                seq += batch as u64;
                sent += batch;
            }
            r.line(format!("| {plugin} | {batch} | {:.2} | {ping:.2} |", t.elapsed().as_secs_f64() * 1e6 / sent as f64));
        }
    }
    // One task-component run (a fresh instance and one call) against a native task.
    std::fs::write(plugins_dir.join("task_cases.wasm"), std::fs::read(guest_wasm_dir().join("fluid_test_task_cases.wasm"))?)?;
    rt.load_file(&plugins_dir.join("task_cases.wasm")).await.map_err(anyhow::Error::msg)?;
    let component = scheduler.task("give-up").context("task component loaded")?;
    let native = std::sync::Arc::new(Task::new("native").run(|_| async { Err(TaskError::Aborted("baseline".into())) }));
    let runs = if opts.quick { 500 } else { 5000 };
    let mut per_run = Vec::new();
    for task in [&native, &component] {
        let mut made = new_runs(runs);
        for run in &mut made {
            run.task = task.name.clone();
        }
        let t = Instant::now();
        for run in made {
            let ctx = TaskContext::new(run, scheduler.clone());
            let _ = task.call(ctx).await;
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
    // dropped as each run does; then the same plus instantiation (no call). What the call
    // itself costs is the rest.
    let cost = rt.task_instance_cost("task_cases", &plugins_dir.join("task_cases.wasm"), runs).await?;
    r.line(format!("| of which: a store and its WASI context, made and dropped | {:.2} |", cost.sandbox.as_secs_f64() * 1e6));
    r.line(format!("| of which: the same, plus instantiation (no call) | {:.2} |", cost.sandbox_and_instance.as_secs_f64() * 1e6));
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
