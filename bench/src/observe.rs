//! The cost of observing: metrics recorded per run, disabled spans, traces exported over
//! OTLP, and a scrape of `/metrics`.

use crate::harness::*;
use crate::throughput::throughput;
use crate::{BenchOptions, Report};
use fluid_host::scheduler::SchedulerConfig;
use fluid_host::store::Backend;
use fluid_host::{Host, HostConfig};
use std::time::{Duration, Instant};

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
pub(crate) async fn section(opts: &BenchOptions, r: &mut Report, n: usize) -> anyhow::Result<()> {
    use fluid_host::telemetry::{LogStyle, TelemetryConfig, layers};
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
    let metrics = fluid_host::metrics::Metrics::new(&Default::default());
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
