//! The plugin runtime: the registry of components loaded from the plugins folder, under
//! the operator's fluid.toml, that tasks, routes and other plugins reach by name.
//!
//! A plugin's name is the stem of its file (`db.wasm` is `db`), and its `register` must
//! return that name: the name keys its storage namespace, its checkpoint, its section of
//! fluid.toml and its legacy config file (`db.json` beside `db.wasm`).
//!
//! [`Shared`] puts the registry's pieces together, each owned by one module: the engine
//! and linkers (`capabilities::Linkers`), what new stores are made of
//! (`instance::state::StoreMaker`), the loaded set (`loaded`), call accounting (`calls`),
//! and the admin lock and files being loaded (`loader::Admin`). Loading, swapping and
//! unloading live in `loader`, task components in `task_components`, the folder watch in
//! `watcher`.

use super::calls::Calls;
use super::config::FluidConfig;
use super::loaded::{Loaded, LoadedSet};
use super::loader::Admin;
use crate::plugins::capabilities::Linkers;
use crate::plugins::engine::{self, cache, policy::Limits};
use crate::plugins::instance::state::StoreMaker;
use crate::plugins::services::dispatch::Feed;
use crate::plugins::services::routes;
use crate::scheduler::{CallFuture, PluginDirectory, Scheduler};
use crate::store::plugin_tables::PluginStorage;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Folders and host-wide settings of the plugin runtime.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    /// The plugins folder: every `*.wasm` in it is loaded.
    pub dir: PathBuf,
    /// fluid.toml (`new` puts it in `dir`; the host uses `DATA/fluid.toml` or `--config`);
    /// a missing file means default limits and no grants.
    pub config_path: PathBuf,
    /// Compiled components; None compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Limits of a plugin fluid.toml says nothing about.
    pub limits: Limits,
    /// Events read from the feed per delivery round (fewer when they exceed `max_args_kib`).
    pub batch: usize,
    /// Compilations at once: each holds memory that grows with its component, and one
    /// abandoned after its `compile_timeout_s` holds its slot until it ends.
    pub compile_slots: usize,
    /// How often the plugins folder and fluid.toml are looked at; None: never after start.
    pub scan_interval: Option<Duration>,
}

/// Events read from the feed per delivery round unless told otherwise (`fluid bench --only
/// delivery` measures the choice). A round costs a call into the plugin and a checkpoint
/// commit whatever its size, and a larger one lets the db plugin write a run once for
/// several of its changes; a round is still cut to the plugin's `max_args_kib`.
pub const DEFAULT_EVENT_BATCH: usize = 1024;

/// Compilations at once unless told otherwise: two, so one slow file never holds up the
/// others alone, while what compiles at once (each holding memory that grows with its
/// component) stays bounded.
pub const DEFAULT_COMPILE_SLOTS: usize = 2;

impl PluginSettings {
    /// The defaults for the plugins folder `dir`, its fluid.toml in it.
    pub fn new(dir: impl Into<PathBuf>) -> PluginSettings {
        let dir = dir.into();
        PluginSettings {
            config_path: dir.join("fluid.toml"),
            dir,
            cache_dir: None,
            limits: Limits::default(),
            batch: DEFAULT_EVENT_BATCH,
            compile_slots: DEFAULT_COMPILE_SLOTS,
            scan_interval: Some(Duration::from_millis(500)),
        }
    }
}

/// What `/plugins` and `fluid plugins ls` show.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct PluginInfo {
    /// The plugin's name (the stem of its file).
    pub name: String,
    /// The version its `register` returned (a loaded plugin's).
    pub version: Option<String>,
    /// The file it was loaded from.
    pub file: String,
    /// SHA-256 of the file's bytes.
    pub sha256: Option<String>,
    /// The world and contract version it was built against.
    pub world: String,
    /// The tasks a task component registered (empty for a plugin).
    #[serde(default)]
    pub tasks: Vec<String>,
    /// `active`, `failing`, `quarantined` or `failed` (to load).
    pub state: String,
    /// Why it failed to load, or what went wrong last while it ran.
    pub error: Option<String>,
    /// A newer file that failed to load while this version keeps running.
    pub replacement_error: Option<String>,
    /// `STATE.TAG` of each subscription.
    pub subscriptions: Vec<String>,
    /// `METHOD PATH` of each route served.
    pub routes: Vec<String>,
    /// Its counters ([`Health`](crate::plugins::Health)).
    pub health: Option<serde_json::Value>,
    /// Its limits ([`Limits`]).
    pub limits: Option<serde_json::Value>,
    /// Its grants ([`Grants`](crate::plugins::Grants)).
    pub grants: Option<serde_json::Value>,
}

/// The registry's state, shared by every clone of a [`PluginRuntime`].
pub(crate) struct Shared {
    pub(crate) linkers: Linkers,
    pub(crate) stores: StoreMaker,
    pub(crate) scheduler: Scheduler,
    pub(crate) settings: PluginSettings,
    pub(crate) config: RwLock<FluidConfig>,
    pub(crate) loaded: Arc<LoadedSet>,
    pub(crate) calls: Arc<Calls>,
    pub(crate) admin: Admin,
    pub(crate) stop: CancellationToken,
}

impl Shared {
    pub(crate) fn plugin(&self, name: &str) -> Option<Arc<Loaded>> {
        self.loaded.plugin(name)
    }

    /// What every delivery loop of this runtime reads the feed with.
    pub(crate) fn feed(&self) -> Feed {
        Feed { scheduler: self.scheduler.clone(), batch: self.settings.batch, shutdown: self.stop.clone() }
    }
}

/// Handle to the plugin runtime; cheap to clone.
#[derive(Clone)]
pub struct PluginRuntime {
    pub(crate) shared: Arc<Shared>,
}

impl PluginRuntime {
    /// Reads fluid.toml (an invalid file stops the start, naming the key) and attaches the
    /// runtime to the scheduler. Load plugins with `load_dir`, then `watch` the folder.
    pub async fn new(scheduler: Scheduler, settings: PluginSettings) -> anyhow::Result<PluginRuntime> {
        let config = FluidConfig::load(&settings.config_path, settings.limits.clone())?;
        let compile_slots = settings.compile_slots;
        let linkers = Linkers::new(engine::engine()?)?;
        let storage = PluginStorage::new(scheduler.store().plugin_store().await?).await?;
        if let Some(dir) = settings.cache_dir.clone() {
            // Off the async threads: a large cache folder is many file system calls.
            tokio::task::spawn_blocking(move || {
                let n = cache::prune(&dir, cache::UNUSED_FOR);
                if n > 0 {
                    tracing::info!(folder = %dir.display(), files = n, "compile cache: deleted entries unused for 30 days");
                }
            });
        }
        let stop = CancellationToken::new();
        let loaded = Arc::new(LoadedSet::default());
        let calls = Arc::new(Calls::new(loaded.clone()));
        let stores = StoreMaker { engine: linkers.engine.clone(), scheduler: scheduler.clone(), storage, peers: calls.clone() };
        let shared = Arc::new(Shared {
            linkers,
            stores,
            scheduler: scheduler.clone(),
            settings,
            config: RwLock::new(config),
            loaded,
            calls,
            admin: Admin::new(compile_slots),
            stop,
        });
        let rt = PluginRuntime { shared };
        scheduler.set_plugin_directory(Arc::new(rt.clone()));
        Ok(rt)
    }

    /// The folders and settings it was started with.
    pub fn settings(&self) -> &PluginSettings {
        &self.shared.settings
    }

    /// The loaded plugin of that name.
    pub fn get(&self, name: &str) -> Option<Arc<Loaded>> {
        self.shared.plugin(name)
    }

    /// Loaded plugins (with their limits, grants and counters) and files that failed to load.
    pub fn list(&self) -> Vec<PluginInfo> {
        let failed = self.shared.loaded.failed.read().unwrap().clone();
        let plugins: Vec<Arc<Loaded>> = self.shared.loaded.plugins();
        let mut out: Vec<PluginInfo> = plugins
            .iter()
            .map(|p| {
                let health = p.health();
                PluginInfo {
                    name: p.name.clone(),
                    version: Some(p.version.clone()),
                    file: p.file.display().to_string(),
                    sha256: Some(p.sha256.clone()),
                    world: p.world.clone(),
                    tasks: vec![],
                    state: health.state.clone(),
                    error: health.last_error.clone(),
                    replacement_error: failed.get(&p.file).map(|f| f.reason.clone()),
                    subscriptions: p.subscriptions.iter().map(|(s, t)| format!("{s}.{t}")).collect(),
                    routes: p
                        .routes
                        .iter()
                        .flat_map(|r| {
                            let ns = format!("{} {}{}", r.method, routes::namespace(&p.name), if r.path == "/" { "" } else { &r.path });
                            let root = p.root_routes.then(|| format!("{} {}", r.method, r.path));
                            std::iter::once(ns).chain(root)
                        })
                        .collect(),
                    health: serde_json::to_value(health).ok(),
                    limits: serde_json::to_value(&p.policy().limits).ok(),
                    grants: serde_json::to_value(&p.policy().grants).ok(),
                }
            })
            .collect();
        for (file, f) in failed.iter().filter(|(file, _)| !plugins.iter().any(|p| &p.file == *file)) {
            out.push(PluginInfo {
                name: file.file_stem().and_then(|s| s.to_str()).unwrap_or("").into(),
                file: file.display().to_string(),
                state: "failed".into(),
                error: Some(f.reason.clone()),
                ..Default::default()
            });
        }
        out.extend(self.task_components());
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Stops every plugin's delivery, actor and the folder watch.
    pub async fn shutdown(&self) {
        self.shared.stop.cancel();
        // Wait for every delivery loop to end before giving its lease up: a loop still in
        // its last round could otherwise take the lease again right after the release, and
        // the next host would wait for it to expire.
        let plugins: Vec<Arc<Loaded>> = self.shared.loaded.plugins();
        let host = self.shared.scheduler.config().host_id.clone();
        for p in plugins {
            super::loader::stop_and_wait(&p).await;
            if let Err(e) = self.shared.scheduler.store().release_delivery(&p.name, &host).await {
                tracing::warn!(plugin = %p.name, error = %e, "cannot release the delivery lease");
            }
        }
        self.shared.stores.storage.close().await;
    }
}

impl PluginDirectory for PluginRuntime {
    fn has_plugin(&self, name: &str) -> bool {
        self.shared.loaded.has_plugin(name)
    }

    fn call<'a>(&'a self, plugin: &'a str, method: &'a str, args_json: String) -> CallFuture<'a> {
        Box::pin(self.shared.calls.call(plugin, method, args_json, Vec::new()))
    }
}
