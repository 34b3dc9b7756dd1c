//! Queueing over HTTP: single requests from many clients at once (grouped into shared
//! commits by the host) against the batch route.

use crate::harness::*;
use crate::{BenchOptions, Report};
use fluid_host::scheduler::SchedulerConfig;
use fluid_host::{Host, HostConfig};
use std::time::{Duration, Instant};

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

/// Both ways of queueing, alternated, medians.
pub(crate) async fn section(opts: &BenchOptions, r: &mut Report, n: usize) -> anyhow::Result<()> {
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
