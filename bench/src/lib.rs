//! `fluid bench`: measures the host on this machine and prints each figure beside a
//! baseline measured in the same run (so ratios hold on a noisy machine), with the machine
//! it ran on. Writes `results.md` and `throughput.svg` into the output folder.
//!
//! It drives the host only through the library's public API, as an embedding application
//! would, so what it measures is what users get. One module per part:
//!
//! - [`throughput`]: N trivial runs queued in batches until the last one finished (and, with
//!   the db plugin, until the history caught up), on SQLite and PostgreSQL, at several
//!   worker counts; baseline: the same workload with no plugin loaded. Also the
//!   queue-to-start latency at a steady arrival rate.
//! - [`plugins`]: one `on-events` call with 1 and 100 events to a plugin that does nothing
//!   and to the db plugin (baseline: one `call("ping")` round trip); a task-component run
//!   against a native task; start-up with 50 plugins, compile cache cold and warm.
//! - [`history`]: `GET /task-history` p50/p99 over a large history; baseline: `GET /tasks-status`.
//! - [`enqueue`]: queueing over HTTP, single requests from many clients and the batch route.
//! - [`observe`]: metrics and disabled spans per run, throughput with traces exported over
//!   OTLP against traces off, `GET /metrics` against `GET /tasks-status`.
//! - [`throughput`] also sizes the change feed's delivery round (`--only delivery`): the
//!   db plugin's throughput at several numbers of events a round, beside the default;
//!   and claiming ahead (`--only reserve`): throughput at several caps on runs held
//!   reserved, beside none.
//! - [`peer`]: graphile-worker (npm) beside fluid on the same PostgreSQL, only when named.
//!
//! [`harness`] holds what the parts share: fresh hosts and databases, runs, percentiles,
//! and the machine's description.

#![deny(missing_docs)]

mod enqueue;
mod harness;
mod history;
mod observe;
mod peer;
mod plugins;
mod throughput;

use harness::machine;
use std::fmt::Write as _;
use std::path::PathBuf;

/// `fluid bench`'s options.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Folder for results.md and throughput.svg.
    #[arg(long, default_value = "bench")]
    pub out: PathBuf,
    /// Smaller workloads (a smoke run, a few seconds).
    #[arg(long)]
    pub quick: bool,
    /// PostgreSQL admin URL (a fresh database is created and dropped); "none" skips PostgreSQL.
    #[arg(long, env = "FLUID_BENCH_PG", default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres: String,
    /// Only these parts: throughput, events, tasks, startup, history, observe, enqueue, latency, and, only when named, delivery (events per delivery round, sized by measurement), reserve (runs claimed ahead, sized by measurement) and peer (graphile-worker from npm on the same PostgreSQL) (repeatable).
    #[arg(long)]
    pub only: Vec<String>,
    /// Throughput only on these backends: sqlite, postgres (repeatable; default both).
    #[arg(long = "backend", value_parser = ["sqlite", "postgres"])]
    pub backends: Vec<String>,
    /// Throughput only for these worker counts (repeatable; default 1, 8 and 64).
    #[arg(long)]
    pub workers: Vec<usize>,
    /// Trivial runs per throughput measurement (default 20,000; 1,000 with --quick).
    #[arg(long)]
    pub runs: Option<usize>,
    /// The delivery part: events read from the feed per delivery round to try (repeatable;
    /// default 256, 1,024 and 4,096; the default size is always measured).
    #[arg(long = "event-batch")]
    pub event_batches: Vec<usize>,
    /// The reserve part: caps on runs held reserved to try (repeatable; default 0, 64 and
    /// 256; 0, no reservations, and the default are always measured).
    #[arg(long = "reserve-ahead")]
    pub reserve_ahead: Vec<usize>,
}

/// What to measure and where to write it: the options, PostgreSQL's "none" read as absent.
#[derive(Debug, Clone)]
struct BenchOptions {
    out: PathBuf,
    /// Smaller workloads (a smoke run).
    quick: bool,
    /// Admin URL of a PostgreSQL server (a fresh database is created and dropped); None skips it.
    postgres: Option<String>,
    /// Only these parts (throughput, events, tasks, startup, history, observe, enqueue, latency,
    /// and delivery, reserve and peer, which run only when named); empty means all but those.
    only: Vec<String>,
    /// Backends of the throughput part ("sqlite", "postgres"); empty means both.
    backends: Vec<String>,
    /// Worker counts of the throughput part; empty means 1, 8 and 64.
    workers: Vec<usize>,
    /// Runs per throughput measurement; None means 20,000 (1,000 with `quick`).
    runs: Option<usize>,
    /// Events per delivery round the delivery part tries; empty means its defaults.
    event_batches: Vec<usize>,
    /// Caps on runs held reserved the reserve part tries; empty means its defaults.
    reserve_ahead: Vec<usize>,
}

impl BenchOptions {
    /// Whether `part` is to run: every part but the peer, delivery and reserve (long) unless
    /// `--only` names some.
    fn wants(&self, part: &str) -> bool {
        (self.only.is_empty() && !["peer", "delivery", "reserve"].contains(&part)) || self.only.iter().any(|p| p == part)
    }
}

/// The report: printed as it is written, and kept for `results.md`.
struct Report {
    md: String,
}

impl Report {
    fn line(&mut self, s: impl AsRef<str>) {
        println!("{}", s.as_ref());
        let _ = writeln!(self.md, "{}", s.as_ref());
    }
}

/// Runs every benchmark and writes the report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let BenchArgs { out, quick, postgres, only, backends, workers, runs, event_batches, reserve_ahead } = args;
    let postgres = (postgres != "none").then_some(postgres);
    let opts = BenchOptions { out, quick, postgres, only, backends, workers, runs, event_batches, reserve_ahead };
    std::fs::create_dir_all(&opts.out)?;
    let mut r = Report { md: String::new() };
    r.line("# fluid bench");
    r.line("");
    r.line(format!("Machine: {}", machine()));
    r.line("");
    let n = opts.runs.unwrap_or(if opts.quick { 1000 } else { 20_000 });

    if opts.wants("throughput") {
        throughput::section(&opts, &mut r, n).await?;
    }
    if opts.wants("events") || opts.wants("startup") || opts.wants("tasks") {
        plugins::sections(&opts, &mut r).await?;
    }
    if opts.wants("history") {
        history::section(&opts, &mut r).await?;
    }
    if opts.wants("observe") {
        observe::section(&opts, &mut r, n).await?;
    }
    if opts.wants("enqueue") {
        enqueue::section(&opts, &mut r, n).await?;
    }
    if opts.wants("latency") {
        throughput::latency_section(&opts, &mut r).await?;
    }
    if opts.wants("delivery") {
        throughput::delivery_section(&opts, &mut r, n).await?;
    }
    if opts.wants("reserve") {
        throughput::reserve_section(&opts, &mut r, n).await?;
    }
    if opts.wants("peer") {
        peer::section(&opts, &mut r, n).await?;
    }
    r.line("Targets: >= 20,000 runs/s with history on SQLite, >= 5,000 on PostgreSQL; <= 2 µs per event in batches; <= 50 µs per task-component instance; history p99 <= 5 ms at 1,000,000 rows; 50 cached plugins in <= 300 ms.");
    std::fs::write(opts.out.join("results.md"), &r.md)?;
    println!("\nwrote {}", opts.out.join("results.md").display());
    Ok(())
}
