//! The `fluid` command line (clap): `serve`, `ls`, `exec`, `enable`.
//!
//! Every option has an environment variable (`FLUID_*`), shown by `--help`.

use crate::host::{Host, HostConfig};
use crate::scheduler::{Scheduler, SchedulerConfig, Task};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "fluid", version, about = "A task scheduler whose plugins are sandboxed WebAssembly components")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Data folder: the SQLite database, the plugins folder and the compile cache.
    #[arg(long = "data", env = "FLUID_DATA_DIR", default_value = "data", global = true)]
    pub data_dir: PathBuf,
    /// PostgreSQL URL (postgres://user@host/db) to share one queue between hosts; SQLite when unset.
    #[arg(long, env = "FLUID_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Log format.
    #[arg(long, env = "FLUID_LOG_FORMAT", value_enum, default_value_t = LogFormat::Plain, global = true)]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `fluid_host=debug`.
    #[arg(long, env = "FLUID_LOG", default_value = "info", global = true)]
    pub log: String,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the host: scheduler, plugins and HTTP API.
    Serve(ServeArgs),
    /// List tasks.
    Ls {
        /// Only tasks with at least one of these tags.
        #[arg(long, short = 't')]
        tags: Vec<String>,
    },
    /// Run one task in this process and print the run.
    Exec {
        task: String,
        /// Params as a JSON object.
        #[arg(long, default_value = "{}")]
        params: String,
    },
    /// Enable a task, or disable it with --disable.
    Enable {
        task: String,
        #[arg(long)]
        disable: bool,
    },
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address for the HTTP API.
    #[arg(long, env = "FLUID_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Runs executing at once on this host.
    #[arg(long, env = "FLUID_WORKERS", default_value_t = 8)]
    pub workers: usize,
    /// Plugins folder (default: DATA/plugins).
    #[arg(long, env = "FLUID_PLUGINS_DIR")]
    pub plugins: Option<PathBuf>,
    /// Seconds running runs get to finish on shutdown before they are interrupted.
    #[arg(long, env = "FLUID_GRACE_SECONDS", default_value_t = 10.0)]
    pub grace: f64,
    /// Seconds without a heartbeat after which a host is dead and its running runs are rescued.
    #[arg(long, env = "FLUID_HOST_TIMEOUT_SECONDS", default_value_t = 15.0)]
    pub host_timeout: f64,
    /// Do not register the built-in example tasks.
    #[arg(long, env = "FLUID_NO_EXAMPLES")]
    pub no_examples: bool,
}

pub fn init_logging(g: &Global) {
    let filter = tracing_subscriber::EnvFilter::try_new(&g.log).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match g.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Plain => builder.try_init(),
    };
}

/// Entry point of a `fluid` binary: parses the command line and runs it with the given
/// native tasks (plus the examples unless `--no-examples`).
pub fn main(tasks: Vec<Task>) -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.global);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match rt.block_on(run(cli, tasks)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn config(g: &Global) -> HostConfig {
    let mut c = HostConfig::new(&g.data_dir);
    c.database_url = g.database_url.clone();
    c
}

async fn scheduler_for(g: &Global, tasks: Vec<Task>) -> anyhow::Result<Scheduler> {
    let store = config(g).open_store().await?;
    let s = Scheduler::new(store, SchedulerConfig { run_schedules: false, consume: false, ..Default::default() });
    for t in tasks {
        s.register(t).map_err(anyhow::Error::msg)?;
    }
    Ok(s)
}

pub async fn run(cli: Cli, mut tasks: Vec<Task>) -> anyhow::Result<std::process::ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Serve(a) => {
            if !a.no_examples {
                tasks.extend(crate::examples::tasks());
            }
            let mut c = config(g);
            c.bind = a.bind;
            c.plugins_dir = a.plugins;
            c.scheduler.workers = a.workers;
            c.scheduler.host_timeout = Duration::from_secs_f64(a.host_timeout.max(0.1));
            c.scheduler.heartbeat = (c.scheduler.host_timeout / 5).min(Duration::from_secs(2));
            let host = Host::start(c, tasks).await?;
            println!("fluid listening on http://{}", host.addr);
            shutdown_signal().await;
            tracing::info!("shutting down");
            host.shutdown(Duration::from_secs_f64(a.grace.max(0.0))).await;
        }
        Command::Ls { tags } => {
            tasks.extend(crate::examples::tasks());
            let s = scheduler_for(g, tasks).await?;
            let statuses = s.store().task_statuses().await?;
            println!("{:<20} {:<8} {:<22} {:>8} {:<8} {:<24} DESCRIPTION", "NAME", "ENABLED", "SCHEDULE", "TIMEOUT", "PRIORITY", "TAGS");
            for t in s.tasks() {
                if !tags.is_empty() && !tags.iter().any(|x| t.tags.contains(x)) {
                    continue;
                }
                let enabled = statuses.get(&t.name).is_none_or(|s| s.enabled);
                let schedule = t.schedule.as_ref().map(|s| s.to_string()).unwrap_or_default();
                let tagl: Vec<&str> = t.tags.iter().map(String::as_str).collect();
                println!(
                    "{:<20} {:<8} {:<22} {:>7}s {:<8} {:<24} {}",
                    t.name, enabled, schedule, t.timeout.as_secs_f64(), t.priority, tagl.join(","), t.description.lines().next().unwrap_or("")
                );
            }
            s.store().close().await;
        }
        Command::Exec { task, params } => {
            tasks.extend(crate::examples::tasks());
            let params: serde_json::Value = serde_json::from_str(&params).map_err(|e| anyhow::anyhow!("--params is not valid JSON: {e}"))?;
            let s = scheduler_for(g, tasks).await?;
            if s.task(&task).is_none() {
                anyhow::bail!("Task {task} not found");
            }
            let run = s.execute_now(&task, params).await?;
            println!("{}", serde_json::to_string_pretty(&run)?);
            s.shutdown(Duration::ZERO).await;
            s.store().close().await;
            let ok = run.state == crate::scheduler::TaskState::Success;
            return Ok(if ok { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE });
        }
        Command::Enable { task, disable } => {
            tasks.extend(crate::examples::tasks());
            let s = scheduler_for(g, tasks).await?;
            if s.task(&task).is_none() {
                anyhow::bail!("Task {task} not found");
            }
            s.set_enabled(&task, !disable).await?;
            println!("{task}: {}", if disable { "disabled" } else { "enabled" });
            s.store().close().await;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
