//! Putting it together: store, scheduler, plugin runtime and HTTP server, started and
//! stopped as one [`Host`].

use crate::http::{self, AppState};
use crate::plugins::{Limits, PluginRuntime, PluginSettings};
use crate::scheduler::{Scheduler, SchedulerConfig, Task};
use crate::store::Store;
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Everything `fluid serve` can be told.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The data folder: the SQLite file, the plugins folder by default, the compile cache.
    pub data_dir: PathBuf,
    /// `postgres://...` to share one queue between hosts; SQLite in `data_dir` when None.
    pub database_url: Option<String>,
    /// Where HTTP listens; port 0 picks a free one.
    pub bind: SocketAddr,
    /// The plugins folder; `data_dir/plugins` when None.
    pub plugins_dir: Option<PathBuf>,
    /// Whether to load plugins at all.
    pub load_plugins: bool,
    /// Whether to write the bundled plugins (db, stats) into the plugins folder.
    pub seed_bundled: bool,
    /// fluid.toml: per-plugin limits, grants and config; `data_dir/fluid.toml` when None.
    pub config_file: Option<PathBuf>,
    /// Compiled components; `FLUID_CACHE_DIR` when set, else `data_dir/cache`. Pointing
    /// many hosts (or test runs) at one folder compiles each component once: entries are
    /// keyed by content and engine, and written by rename.
    pub cache_dir: Option<PathBuf>,
    /// Limits of plugins fluid.toml says nothing about.
    pub plugin_limits: Limits,
    /// How often the plugins folder and fluid.toml are polled for changes; None: never.
    pub plugin_scan_interval: Option<Duration>,
    /// The scheduler's tuning: workers, host id, whether this host claims runs and fires
    /// schedules, and each background role's timing.
    pub scheduler: SchedulerConfig,
    /// Serve the API without tokens on an address others can reach (refused otherwise).
    pub insecure_no_auth: bool,
    /// Let `/metrics` answer without a token when tokens are in force.
    pub metrics_open: bool,
    /// Events read from the change feed per delivery round to a plugin (fewer when they
    /// exceed its `max_args_kib`).
    pub event_batch: usize,
    /// Plugin files compiled at once (see [`plugins::DEFAULT_COMPILE_SLOTS`](crate::plugins::DEFAULT_COMPILE_SLOTS)).
    pub compile_slots: usize,
}

impl HostConfig {
    /// The defaults around `data_dir`: SQLite there, HTTP on a free loopback port, the
    /// bundled plugins seeded and loaded, the plugins folder watched, no tokens required
    /// on loopback. Set fields to change any of it.
    pub fn new(data_dir: impl Into<PathBuf>) -> HostConfig {
        HostConfig {
            data_dir: data_dir.into(),
            database_url: None,
            bind: "127.0.0.1:0".parse().unwrap(),
            plugins_dir: None,
            load_plugins: true,
            seed_bundled: true,
            config_file: None,
            cache_dir: std::env::var_os("FLUID_CACHE_DIR").filter(|v| !v.is_empty()).map(PathBuf::from),
            plugin_limits: Limits::default(),
            plugin_scan_interval: Some(Duration::from_millis(500)),
            scheduler: SchedulerConfig::default(),
            insecure_no_auth: false,
            metrics_open: false,
            event_batch: crate::plugins::DEFAULT_EVENT_BATCH,
            compile_slots: crate::plugins::DEFAULT_COMPILE_SLOTS,
        }
    }

    /// The plugins folder in use: [`plugins_dir`](Self::plugins_dir) if set, else
    /// `data_dir/plugins`.
    pub fn plugins_dir(&self) -> PathBuf {
        self.plugins_dir.clone().unwrap_or_else(|| self.data_dir.join("plugins"))
    }

    /// The fluid.toml in use: [`config_file`](Self::config_file) if set, else
    /// `data_dir/fluid.toml`.
    pub fn config_file(&self) -> PathBuf {
        self.config_file.clone().unwrap_or_else(|| self.data_dir.join("fluid.toml"))
    }

    /// The plugin runtime's settings: folders, compile cache (`cache_dir`), limits.
    pub fn plugin_settings(&self) -> PluginSettings {
        let mut s = PluginSettings::new(self.plugins_dir());
        s.config_path = self.config_file();
        s.cache_dir = Some(self.cache_dir.clone().unwrap_or_else(|| self.data_dir.join("cache")));
        s.limits = self.plugin_limits.clone();
        s.scan_interval = self.plugin_scan_interval;
        s.batch = self.event_batch.max(1);
        s.compile_slots = self.compile_slots.max(1);
        s
    }

    /// Opens the store this config names (PostgreSQL at `database_url`, else SQLite in
    /// `data_dir`) and brings its schema up to date. [`Host::start`] calls it; commands that
    /// only read or write the database use it alone.
    pub async fn open_store(&self) -> anyhow::Result<Store> {
        match &self.database_url {
            Some(url) => Store::connect(url).await,
            None => Store::open_sqlite(&self.data_dir).await,
        }
    }
}

/// A running host: scheduler, plugins and HTTP API, from [`Host::start`] until
/// [`Host::shutdown`].
pub struct Host {
    /// The scheduler, to queue runs, read them and watch their changes in-process.
    pub scheduler: Scheduler,
    /// The plugin runtime; None when the config said not to load plugins.
    pub plugins: Option<PluginRuntime>,
    /// The address HTTP listens on.
    pub addr: SocketAddr,
    stop_http: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

impl Host {
    /// Opens the store, registers `tasks`, starts the scheduler and the HTTP server.
    pub async fn start(config: HostConfig, tasks: Vec<Task>) -> anyhow::Result<Host> {
        let store = config.open_store().await?;
        let scheduler = Scheduler::new(store, config.scheduler.clone());
        for t in tasks {
            let name = t.name.clone();
            scheduler.register(t).map_err(anyhow::Error::msg).with_context(|| format!("cannot register task {name}"))?;
        }
        // Native task names are this program's: no task component may take them over.
        let natives: Vec<String> = scheduler.tasks().iter().map(|t| t.name.clone()).collect();
        for (name, owner) in scheduler.store().claim_task_owners("native", &natives).await.context("cannot write to the database")? {
            tracing::error!(task = %name, owner = %owner, "a task component already defines this native task's name on a host sharing the database; its runs may run either");
        }
        let auth = http::auth::Auth::load(scheduler.store().clone(), config.metrics_open).await.context("cannot read the API tokens")?;
        http::auth::check_exposure(config.bind, &auth, config.insecure_no_auth)?;
        // First heartbeat before claiming, so this host is alive before it owns runs.
        scheduler.heartbeat_once().await.context("cannot write to the database")?;
        let plugins = if config.load_plugins {
            let dir = config.plugins_dir();
            if config.seed_bundled {
                for f in
                    crate::plugins::bundled::seed(&dir).with_context(|| format!("cannot write bundled plugins to {}", dir.display()))?
                {
                    tracing::info!(file = %f.display(), "bundled plugin installed");
                }
            }
            let rt = PluginRuntime::new(scheduler.clone(), config.plugin_settings()).await?;
            rt.load_dir().await?;
            rt.watch();
            Some(rt)
        } else {
            None
        };
        scheduler.start();
        let plugin_routes = plugins.clone().map(|p| std::sync::Arc::new(p) as std::sync::Arc<dyn http::PluginRoutes>);
        let state = AppState { scheduler: scheduler.clone(), plugin_routes, plugins: plugins.clone(), auth };
        let listener = tokio::net::TcpListener::bind(config.bind).await.with_context(|| format!("cannot listen on {}", config.bind))?;
        let addr = listener.local_addr()?;
        let stop_http = CancellationToken::new();
        let stop = stop_http.clone();
        let app = http::router(state);
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move { stop.cancelled().await });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        });
        tracing::info!(%addr, backend = scheduler.store().backend.name(), host = %scheduler.config().host_id, workers = scheduler.config().workers, "fluid host started");
        Ok(Host { scheduler, plugins, addr, stop_http, server })
    }

    /// Graceful stop: HTTP first, then the scheduler (running runs get `grace`).
    pub async fn shutdown(self, grace: Duration) {
        self.stop_http.cancel();
        let _ = self.server.await;
        self.scheduler.shutdown(grace).await;
        if let Some(p) = &self.plugins {
            // Also hands the delivery leases over now rather than after they expire.
            p.shutdown().await;
        }
        self.scheduler.store().close().await;
        tracing::info!("fluid host stopped");
    }
}
