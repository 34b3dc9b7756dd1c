//! fluid beside graphile-worker, installed from npm (the version pinned in `src/peer/`), on the
//! same PostgreSQL.

use crate::harness::*;
use crate::throughput::throughput;
use crate::{BenchOptions, Report};
use anyhow::Context;
use fluid_host::store::Backend;

/// The peer's script and its pinned packages (npm), written out and installed under
/// `out/peer` when the peer part runs.
const PEER_FILES: [(&str, &str); 3] = [
    ("package.json", include_str!("peer/package.json")),
    ("package-lock.json", include_str!("peer/package-lock.json")),
    ("graphile.mjs", include_str!("peer/graphile.mjs")),
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

/// fluid beside graphile-worker (npm, the version pinned in `src/peer/`) on the same
/// PostgreSQL: three rounds, each system in turn within a round, medians.
pub(crate) async fn section(opts: &BenchOptions, r: &mut Report, n: usize) -> anyhow::Result<()> {
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
