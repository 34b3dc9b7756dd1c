//! The host's command line (clap): `serve`, `ls`, `exec`, `enable`, `plugins ls|check|enable|forget`,
//! tokens, keys and the authoring commands. The `fluid` binary (the `fluid-cli` crate) adds
//! `bench` beside them; an application embedding the host calls [`main`] with its own tasks.
//!
//! Every option has an environment variable (`FLUID_*`), shown by `--help`.

use crate::host::{Host, HostConfig};
use crate::plugins::contract;
use crate::scheduler::{Scheduler, SchedulerConfig, Task};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The host's whole command line: the global options and one command. [`run`] runs it.
#[derive(Parser, Debug)]
#[command(name = "fluid", version, about = "A task scheduler whose plugins are sandboxed WebAssembly components")]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes: where the data is, and how to log. A binary with commands
/// of its own flattens it into its parser and hands it to [`execute`].
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
    /// Plugin limits, capability grants and config (default: DATA/fluid.toml).
    #[arg(long = "config", env = "FLUID_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `fluid_host=debug`.
    #[arg(long, env = "FLUID_LOG", default_value = "info", global = true)]
    pub log: String,
    /// Export traces over OTLP/HTTP to this collector (e.g. http://127.0.0.1:4318); off when unset.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", global = true)]
    pub otlp_endpoint: Option<String>,
}

/// `--log-format`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Plain,
    /// One JSON object per line.
    Json,
}

/// The host's commands. A binary with commands of its own flattens this enum into its own
/// and passes these to [`run`].
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
        /// The task's name.
        task: String,
        /// Params as a JSON object.
        #[arg(long, default_value = "{}")]
        params: String,
    },
    /// Enable a task, or disable it with --disable.
    Enable {
        /// The task's name.
        task: String,
        /// Disable it instead: its queued runs are aborted when claimed, and its schedule pauses.
        #[arg(long)]
        disable: bool,
    },
    /// Inspect plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Make an ed25519 key for signing plugin files: the secret goes to FILE (keep it),
    /// the public key is printed (for `[trust] keys` in fluid.toml).
    Keygen {
        /// Where the secret key goes.
        #[arg(long, default_value = "fluid-signing.key")]
        out: PathBuf,
    },
    /// API tokens: create (shown once), list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Write a standalone project for a plugin or a task component (builds outside this
    /// repository, against the contract this binary speaks).
    New {
        /// What to make.
        #[arg(value_enum)]
        kind: crate::scaffold::Kind,
        /// Its name: a lowercase letter, then lowercase letters, digits or `_`; at most 24 characters (the .wasm is named after it).
        name: String,
        /// The language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: crate::scaffold::Lang,
        /// Where the project's folder goes.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Print the WIT contract this host speaks (the worlds plugins and task components
    /// implement), or write its files to a folder to generate bindings from. The newest
    /// version unless `--version` names an older one this host still accepts.
    Wit {
        /// Folder to write the `.wit` files to (created if missing); stdout when absent.
        #[arg(long)]
        out: Option<PathBuf>,
        /// A released version of the contract (`--list` shows those this host speaks).
        #[arg(long)]
        version: Option<String>,
        /// List the versions this host accepts components of, oldest first.
        #[arg(long)]
        list: bool,
    },
    /// Wrap a core WebAssembly module (what a `wasm32-wasi` C compiler writes, with the
    /// bindings `fluid new --lang c` gives) into a component of the newest contract.
    Componentize {
        /// The core module.
        core: PathBuf,
        /// The world it implements.
        #[arg(long, value_enum)]
        world: crate::componentize::World,
        /// Where the component goes.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `fluid token`: API tokens.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token and print it (once: the database keeps only its hash). Once a token
    /// exists, every request to the API needs one.
    Create {
        /// What it may do: read (every GET), operate (queue, cancel, enable and disable
        /// tasks, re-enable plugins), admin (everything, clearing queues too).
        #[arg(long, value_enum)]
        role: crate::http::auth::Role,
        /// A name to tell it by.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List tokens: id, name, role, created, revoked.
    Ls,
    /// Revoke a token by id (within a few seconds on every host).
    Revoke {
        /// The token's id, as `fluid token ls` shows it.
        id: String,
    },
}

/// `fluid plugins`: inspect, check and manage plugins.
#[derive(Subcommand, Debug)]
pub enum PluginsCommand {
    /// List plugins. With --url: a running host's plugins, with state and counters.
    /// Without: the files of the plugins folder, whether each fits the plugin world, and
    /// the limits and grants fluid.toml gives it (nothing is started).
    Ls {
        /// A running host, e.g. http://127.0.0.1:8080.
        #[arg(long, env = "FLUID_URL")]
        url: Option<String>,
        /// Plugins folder (default: DATA/plugins).
        #[arg(long, env = "FLUID_PLUGINS_DIR")]
        plugins: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Load a component as a host would, in a scratch sandbox (exit 1 if the host would
    /// refuse it, with the host's reason): compiled, instantiated, `register` or
    /// `definitions` called with its config; prints what it declares.
    /// Its limits, grants and config come from `--config` (default: DATA/fluid.toml).
    Check {
        /// The component file (`.wasm`).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Re-enable a quarantined plugin on a running host (its held events are delivered;
    /// --skip-events drops them). Exit 1 if the host refuses, with its reason.
    Enable {
        /// The plugin's name.
        name: String,
        /// The running host, e.g. http://127.0.0.1:8080.
        #[arg(long, env = "FLUID_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Move the plugin's checkpoint to the head of the feed first: the events it missed are dropped.
        #[arg(long)]
        skip_events: bool,
    },
    /// Sign a component file with a key from `fluid keygen`: writes FILE.sig beside it
    /// (what `[trust] policy = "signed"` wants).
    Sign {
        /// The component file to sign.
        file: PathBuf,
        /// The secret key file.
        #[arg(long, default_value = "fluid-signing.key")]
        key: PathBuf,
    },
    /// Forget a plugin removed for good: delete its feed checkpoint, so the change feed is
    /// no longer kept for it. Refused (exit 1) while a host delivers its events. Its tables
    /// stay; loaded again, it starts where its `start` setting says (the head of the feed
    /// by default).
    Forget {
        /// The plugin's name.
        name: String,
    },
}

/// `fluid serve`'s options.
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
    /// Days a finished run stays in the queue's table (`GET /task-runs/ID`) before it is
    /// pruned; its history stays with the db plugin. 0 keeps every run.
    #[arg(long, env = "FLUID_KEEP_RUNS_DAYS", default_value_t = 7.0)]
    pub keep_runs_days: f64,
    /// Plugin files compiled at once (each compile's memory grows with its component).
    #[arg(long, env = "FLUID_COMPILE_SLOTS", default_value_t = crate::plugins::DEFAULT_COMPILE_SLOTS)]
    pub compile_slots: usize,
    /// Do not register the built-in example tasks.
    #[arg(long, env = "FLUID_NO_EXAMPLES")]
    pub no_examples: bool,
    /// Serve the API without tokens on an address others can reach (refused otherwise:
    /// create a token with `fluid token create`).
    #[arg(long, env = "FLUID_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// Let `/metrics` answer without a token when tokens are in force.
    #[arg(long, env = "FLUID_METRICS_OPEN")]
    pub metrics_open: bool,
}

/// What `--log`, `--log-format` and `--otlp-endpoint` ask for.
pub(crate) fn telemetry_config(g: &Global) -> crate::telemetry::TelemetryConfig {
    crate::telemetry::TelemetryConfig {
        log: g.log.clone(),
        style: match g.log_format {
            LogFormat::Json => crate::telemetry::LogStyle::Json,
            LogFormat::Plain => crate::telemetry::LogStyle::Plain,
        },
        otlp_endpoint: g.otlp_endpoint.clone().filter(|e| !e.is_empty()),
        service_name: "fluid".into(),
    }
}

/// Entry point of a binary of the host's commands: parses the command line and runs it
/// with the given native tasks (plus the examples unless `--no-examples`).
pub fn main(tasks: Vec<Task>) -> std::process::ExitCode {
    let cli = Cli::parse();
    let quiet = is_quiet(&cli.command);
    let global = cli.global.clone();
    execute(&global, quiet, run(cli, tasks))
}

/// Whether `command` speaks for itself, so the host's own log would only repeat it (with
/// paths the author never gave): `plugins check`, unless `--log` asks for more.
pub fn is_quiet(command: &Command) -> bool {
    matches!(command, Command::Plugins(PluginsCommand::Check { .. }))
}

/// Runs `work` under the logging and tracing `global` asks for (off when `quiet` and
/// `--log` is left at its default), on a tokio runtime of its own, and prints its error.
/// A binary that adds commands of its own beside the host's runs each through this.
pub fn execute(
    global: &Global,
    quiet: bool,
    work: impl std::future::Future<Output = anyhow::Result<std::process::ExitCode>>,
) -> std::process::ExitCode {
    let mut telemetry_config = telemetry_config(global);
    if quiet && global.log == "info" {
        telemetry_config.log = "off".into();
    }
    let telemetry = match crate::telemetry::init(&telemetry_config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("Error: cannot set up tracing: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let code = match rt.block_on(work) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}

fn config(g: &Global) -> HostConfig {
    let mut c = HostConfig::new(&g.data_dir);
    c.database_url = g.database_url.clone();
    c.config_file = g.config.clone();
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

/// Runs one parsed command line with `tasks` as the native tasks, beside the built-in
/// examples (`serve --no-examples` leaves those out), and returns the process's exit code.
/// Run it through [`execute`], which sets up logging and the tokio runtime.
pub async fn run(cli: Cli, mut tasks: Vec<Task>) -> anyhow::Result<std::process::ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Wit { out, version, list } => write_wit(out.as_deref(), version.as_deref(), list)?,
        Command::Componentize { core, world, out } => {
            let bytes = std::fs::read(&core).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", core.display()))?;
            let component = crate::componentize::componentize(&bytes, world).map_err(|e| anyhow::anyhow!("{}: {e:#}", core.display()))?;
            std::fs::write(&out, component).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
            println!("wrote {} ({} world of {}@{})", out.display(), world.name(), contract::PACKAGE, contract::NEWEST);
        }
        Command::Token(cmd) => return token_command(g, cmd).await,
        Command::Keygen { out } => {
            let (secret, public) = crate::plugins::trust::keygen();
            // Created readable by its owner only, and never over an existing file (or link).
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&out)
                .map_err(|e| anyhow::anyhow!("{}: {e} (a key is not overwritten)", out.display()))?;
            writeln!(f, "{secret}")?;
            println!("{public}");
            eprintln!(
                "secret key written to {} (keep it private); the public key above goes in fluid.toml: [trust] keys = [\"{public}\"]",
                out.display()
            );
        }
        Command::New { kind, name, lang, dir } => {
            let root = crate::scaffold::new_project(kind, &name, lang, &dir)?;
            println!("wrote {}; build it with `{}` there (see its README.md)", root.display(), crate::scaffold::build_command(lang));
        }
        Command::Serve(a) => {
            if !a.no_examples {
                tasks.extend(crate::examples::tasks());
            }
            let mut c = config(g);
            c.bind = a.bind;
            c.plugins_dir = a.plugins;
            c.scheduler.workers = a.workers;
            c.insecure_no_auth = a.insecure_no_auth;
            c.metrics_open = a.metrics_open;
            c.compile_slots = a.compile_slots;
            c.scheduler.heartbeat.host_timeout = Duration::from_secs_f64(a.host_timeout.max(0.1));
            c.scheduler.heartbeat.interval = (c.scheduler.heartbeat.host_timeout / 5).min(Duration::from_secs(2));
            c.scheduler.run_pruner.keep_for =
                (a.keep_runs_days > 0.0).then(|| Duration::from_secs_f64((a.keep_runs_days * 86_400.0).min(1e12)));
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
                    t.name,
                    enabled,
                    schedule,
                    t.timeout.as_secs_f64(),
                    t.priority,
                    tagl.join(","),
                    t.description.lines().next().unwrap_or("")
                );
            }
            s.store().close().await;
        }
        Command::Exec { task, params } => {
            tasks.extend(crate::examples::tasks());
            let params: serde_json::Value =
                serde_json::from_str(&params).map_err(|e| anyhow::anyhow!("--params is not valid JSON: {e}"))?;
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
        Command::Plugins(cmd) => return plugins_command(g, cmd).await,
    }
    Ok(std::process::ExitCode::SUCCESS)
}

async fn token_command(g: &Global, cmd: TokenCommand) -> anyhow::Result<std::process::ExitCode> {
    let store = config(g).open_store().await?;
    let result = async {
        match cmd {
            TokenCommand::Create { role, name } => {
                let (token, row) = crate::http::auth::mint(role, &name);
                store.add_token(&row).await?;
                println!("{token}");
                eprintln!("token {} ({}) created; it is shown this once: keep it now", row.id, role.as_str());
            }
            TokenCommand::Ls => {
                println!("{:<14} {:<8} {:<24} {:<20} REVOKED", "ID", "ROLE", "NAME", "CREATED");
                for t in store.tokens().await? {
                    let when = |us: i64| crate::time::to_datetime(us).format("%Y-%m-%d %H:%M:%S").to_string();
                    println!(
                        "{:<14} {:<8} {:<24} {:<20} {}",
                        t.id,
                        t.role,
                        t.name,
                        when(t.created_at),
                        t.revoked_at.map(when).unwrap_or_default()
                    );
                }
            }
            TokenCommand::Revoke { id } => {
                if !store.revoke_token(&id).await? {
                    eprintln!("{id}: no such token, or revoked already");
                    return Ok(std::process::ExitCode::FAILURE);
                }
                println!("{id}: revoked");
            }
        }
        Ok::<_, anyhow::Error>(std::process::ExitCode::SUCCESS)
    }
    .await;
    store.close().await;
    result
}

/// A request to a running host, with the API token of `FLUID_TOKEN` when set.
fn with_token(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match std::env::var("FLUID_TOKEN") {
        Ok(t) if !t.is_empty() => req.bearer_auth(t),
        _ => req,
    }
}

fn write_wit(out: Option<&Path>, version: Option<&str>, list: bool) -> anyhow::Result<()> {
    if list {
        for v in contract::VERSIONS.iter() {
            println!("{}@{}", contract::PACKAGE, v.version);
        }
        return Ok(());
    }
    let v = match version {
        Some(v) => contract::version(v)
            .ok_or_else(|| anyhow::anyhow!("this host does not speak {}@{v}; it speaks {}", contract::PACKAGE, contract::spoken()))?,
        None => contract::newest(),
    };
    let Some(dir) = out else {
        for (name, text) in v.files {
            println!("// {name}\n{text}");
        }
        return Ok(());
    };
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    for (name, text) in v.files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    println!("wrote the {} files of {}@{} to {}", v.files.len(), contract::PACKAGE, v.version, dir.display());
    Ok(())
}

async fn plugins_command(g: &Global, cmd: PluginsCommand) -> anyhow::Result<std::process::ExitCode> {
    use crate::plugins::{FluidConfig, PluginInfo, inspect};
    let c = config(g);
    match cmd {
        PluginsCommand::Check { file, json } => {
            let settings = c.plugin_settings();
            let report = inspect::dry_run(&file, &settings.config_path, settings.cache_dir, settings.limits).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_check(&report);
            }
            if report.error.is_some() {
                return Ok(std::process::ExitCode::FAILURE);
            }
        }
        PluginsCommand::Sign { file, key } => {
            let secret = std::fs::read_to_string(&key).map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
            let bytes = std::fs::read(&file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            let sig = crate::plugins::trust::sign(&secret, name, &bytes)?;
            let out = crate::plugins::trust::signature_path(&file);
            std::fs::write(&out, format!("{sig}\n"))?;
            println!("wrote {}", out.display());
        }
        PluginsCommand::Enable { name, url, skip_events } => {
            let url = format!("{}/plugins/{name}/enable{}", url.trim_end_matches('/'), if skip_events { "?skip_events=true" } else { "" });
            let resp = with_token(reqwest::Client::new().post(&url)).send().await.map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
            let status = resp.status();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            if !status.is_success() {
                let why = body.get("detail").and_then(|d| d.as_str()).unwrap_or("no reason given");
                eprintln!("{name}: not enabled (HTTP {}): {why}", status.as_u16());
                return Ok(std::process::ExitCode::FAILURE);
            }
            let state = body.get("state").and_then(|s| s.as_str()).unwrap_or("?");
            let checkpoint = body.pointer("/health/checkpoint").map(|c| c.to_string()).unwrap_or_else(|| "?".into());
            println!("{name}: {state}, delivering from checkpoint {checkpoint}");
        }
        PluginsCommand::Forget { name } => {
            use crate::store::Forget;
            let store = c.open_store().await?;
            let done = store.forget_checkpoint(&name).await;
            // A task component's task names go with it (a plugin has none).
            let released = match &done {
                Ok(Forget::Delivering { .. }) => Ok(0),
                _ => store.release_task_owner(&name).await,
            };
            store.close().await;
            let released = released?;
            if released > 0 {
                println!("{name}: its {released} task names are released; another task component may define them");
            }
            match done? {
                Forget::Forgotten { held, .. } => {
                    println!("{name}: forgotten; the change feed is no longer kept for it ({held} events it had not handled)");
                    println!(
                        "its tables are kept; loaded again, it starts where its `start` setting says (the head of the feed by default)"
                    );
                }
                Forget::Delivering { host } => {
                    eprintln!("{name}: host {host} delivers its events now; remove {name}.wasm from that host's plugins folder first");
                    return Ok(std::process::ExitCode::FAILURE);
                }
                Forget::Unknown if released > 0 => {}
                Forget::Unknown => {
                    eprintln!("{name}: no such plugin has a feed checkpoint, nor such a task component task names");
                    return Ok(std::process::ExitCode::FAILURE);
                }
            }
        }
        PluginsCommand::Ls { url, plugins, json } => {
            let list: Vec<PluginInfo> = match url {
                Some(url) => {
                    let url = format!("{}/plugins", url.trim_end_matches('/'));
                    let resp = with_token(reqwest::Client::new().get(&url)).send().await.map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
                    anyhow::ensure!(resp.status().is_success(), "{url}: HTTP {}", resp.status());
                    resp.json().await?
                }
                None => {
                    let fluid_toml = FluidConfig::load(&c.config_file(), c.plugin_limits.clone())?;
                    let dir = plugins.unwrap_or_else(|| c.plugins_dir());
                    inspect::inspect_dir(&dir, &fluid_toml, Some(&c.data_dir.join("cache")))?
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print_plugins(&list);
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn print_check(r: &crate::plugins::inspect::CheckReport) {
    if let Some(e) = &r.error {
        println!("{e}");
        return;
    }
    let version = r.version.as_deref().map(|v| format!(" {v}")).unwrap_or_default();
    println!("{}: loads: {}{version}, {}", r.file, r.name, r.world);
    let list = |items: &[String]| if items.is_empty() { "none".to_string() } else { items.join(", ") };
    if r.world.contains("/task@") {
        println!("  tasks: {}", list(&r.tasks));
    } else {
        println!("  subscriptions: {}", list(&r.subscriptions));
        println!("  routes: {}", list(&r.routes));
    }
    println!("  imports: {}", list(&r.imports));
    println!(
        "  size: {} KiB; compiled (or read from the cache), instantiated and registered in {:.0} ms",
        r.size_bytes.div_ceil(1024),
        r.load_ms
    );
}

fn print_plugins(list: &[crate::plugins::PluginInfo]) {
    let num =
        |v: &Option<serde_json::Value>, k: &str| v.as_ref().and_then(|v| v.get(k)).map(|x| x.to_string()).unwrap_or_else(|| "-".into());
    println!(
        "{:<16} {:<9} {:<12} {:>7} {:>8} {:>7} {:>6} {:>9} {:>9} GRANTS",
        "NAME", "VERSION", "STATE", "MEM_MIB", "TIMEOUT", "CALLS", "TRAPS", "MEAN_MS", "P99_MS"
    );
    for p in list {
        let grants = p.grants.as_ref().map(|g| {
            let n = |k: &str| g.get(k).and_then(|v| v.as_array()).map_or(0, Vec::len);
            format!("dirs:{} env:{} net:{}", n("dirs"), n("env"), n("network"))
        });
        let ms = |k: &str| p.health.as_ref().and_then(|h| h.get(k)).and_then(|v| v.as_f64()).map_or("-".into(), |v| format!("{v:.2}"));
        println!(
            "{:<16} {:<9} {:<12} {:>7} {:>8} {:>7} {:>6} {:>9} {:>9} {}",
            p.name,
            p.version.as_deref().unwrap_or("-"),
            p.state,
            num(&p.limits, "memory_mib"),
            num(&p.limits, "call_timeout_ms"),
            num(&p.health, "calls"),
            num(&p.health, "traps"),
            ms("mean_call_ms"),
            ms("p99_call_ms"),
            grants.unwrap_or_else(|| "-".into())
        );
    }
    for p in list.iter().filter(|p| p.error.is_some() || p.replacement_error.is_some()) {
        if let Some(e) = &p.error {
            println!("{}: {e}", p.name);
        }
        if let Some(e) = &p.replacement_error {
            println!("{}: replacement not loaded: {e}", p.name);
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
