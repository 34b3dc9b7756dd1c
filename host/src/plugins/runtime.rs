//! The plugin runtime: one wasmtime engine and linker, the operator's fluid.toml, and the
//! set of loaded plugins that tasks, routes and other plugins reach by name.
//!
//! A plugin's name is the stem of its file (`db.wasm` is `db`), and its `register` must
//! return that name: the name keys its storage namespace, its checkpoint, its section of
//! fluid.toml and its legacy config file (`db.json` beside `db.wasm`). Loading, swapping
//! and unloading live in `loader`, the folder watch in `watcher`.

use super::actor::Actor;
use super::bindings::Plugin;
use super::config::{FluidConfig, Limits, Policy};
use super::loader::{Failed, FileStamp};
use super::sandbox::PluginState;
use super::supervisor::{Health, Supervisor};
use crate::scheduler::{CallFuture, PluginCallError, PluginDirectory, Scheduler, TaskState};
use crate::store::plugin_tables::PluginStorage;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wasmtime::component::Linker;
use wasmtime::{Config, Engine};

/// Folders and host-wide settings of the plugin runtime.
#[derive(Debug, Clone)]
pub struct PluginSettings {
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
    /// How often the plugins folder and fluid.toml are looked at; None: never after start.
    pub scan_interval: Option<Duration>,
}

impl PluginSettings {
    pub fn new(dir: impl Into<PathBuf>) -> PluginSettings {
        let dir = dir.into();
        PluginSettings {
            config_path: dir.join("fluid.toml"),
            dir,
            cache_dir: None,
            limits: Limits::default(),
            batch: 256,
            scan_interval: Some(Duration::from_millis(500)),
        }
    }
}

/// Epoch tick: the granularity of call time limits, and the longest a guest computes
/// before it yields (so the longest guest code holds a host thread, see `guest_pool`).
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The world every plugin implements, in the newest contract version.
pub const WORLD: &str = "fluid:scheduler/plugin@0.1.1";

/// The world every task component implements, in the newest contract version.
pub const TASK_WORLD: &str = "fluid:scheduler/task@0.1.1";

/// A loaded plugin.
pub struct Loaded {
    pub name: String,
    pub version: String,
    pub file: PathBuf,
    /// SHA-256 of the file's bytes.
    pub sha256: String,
    pub(crate) stamp: FileStamp,
    pub subscriptions: Vec<(TaskState, String)>,
    pub routes: Vec<super::routes::PluginRoute>,
    /// Also served at the paths as declared (fluid.toml `root_routes`), not only in its
    /// namespace.
    pub root_routes: bool,
    /// The world and contract version it was built against.
    pub world: String,
    pub(crate) actor: Actor,
    pub(crate) sup: Arc<Supervisor>,
    pub(crate) delivery: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Loaded {
    /// A snapshot of the plugin's counters and state.
    pub fn health(&self) -> Health {
        self.sup.health()
    }

    pub fn policy(&self) -> &Policy {
        &self.sup.policy
    }

    pub fn subscribed(&self, state: TaskState) -> bool {
        self.subscriptions.iter().any(|(s, _)| *s == state)
    }
}

/// What `/plugins` and `fluid plugins ls` show.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: Option<String>,
    pub file: String,
    pub sha256: Option<String>,
    pub world: String,
    /// The tasks a task component registered (empty for a plugin).
    #[serde(default)]
    pub tasks: Vec<String>,
    /// `active`, `failing`, `quarantined` or `failed` (to load).
    pub state: String,
    pub error: Option<String>,
    /// A newer file that failed to load while this version keeps running.
    pub replacement_error: Option<String>,
    pub subscriptions: Vec<String>,
    pub routes: Vec<String>,
    pub health: Option<serde_json::Value>,
    pub limits: Option<serde_json::Value>,
    pub grants: Option<serde_json::Value>,
}

pub struct Shared {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<PluginState>,
    /// The imports of the `task` world (no `storage`).
    pub(crate) task_linker: Linker<PluginState>,
    pub(crate) scheduler: Scheduler,
    pub(crate) storage: PluginStorage,
    pub(crate) settings: PluginSettings,
    pub(crate) config: RwLock<FluidConfig>,
    pub(crate) plugins: RwLock<BTreeMap<String, Arc<Loaded>>>,
    pub(crate) failed: RwLock<BTreeMap<PathBuf, Failed>>,
    /// Task components by file, with the tasks each registered.
    pub(crate) task_files: RwLock<BTreeMap<PathBuf, Arc<super::tasks::TaskComponent>>>,
    /// Serializes loads, swaps, unloads and re-enables.
    pub(crate) admin: tokio::sync::Mutex<()>,
    /// Who waits on whom: a plugin in a `call` to another (an instance makes one call at
    /// a time, so one target each). A call that would close a cycle is refused at once.
    pub(crate) waits: Mutex<BTreeMap<String, String>>,
    /// Calls in flight per (caller, target): a caller gets a fair share of a plugin.
    pub(crate) in_flight: Mutex<BTreeMap<(String, String), usize>>,
    /// Files the watcher is loading now (each on its own task).
    pub(crate) loading: Mutex<std::collections::BTreeSet<PathBuf>>,
    pub(crate) stop: CancellationToken,
}

impl Shared {
    pub fn has_plugin(&self, name: &str) -> bool {
        self.plugins.read().unwrap().contains_key(name)
    }

    pub fn scheduler(&self) -> Scheduler {
        self.scheduler.clone()
    }

    pub fn plugin(&self, name: &str) -> Option<Arc<Loaded>> {
        self.plugins.read().unwrap().get(name).cloned()
    }

    /// Calls a plugin's exported `call`. `chain` holds the plugins already waiting on this
    /// call; reaching one of them again would deadlock, so it is refused, and so is a call
    /// that would close a cycle with calls already waiting on other stacks (two plugins
    /// calling each other at the same moment): both at once, as `unavailable`, charged to
    /// no one. A quarantined plugin and arguments over the target's `max_args_kib` are
    /// refused before reaching it; the latter is the caller's mistake.
    pub async fn call(&self, target: &str, method: &str, args: String, chain: Vec<String>) -> Result<String, PluginCallError> {
        if chain.iter().any(|c| c == target) {
            return Err(PluginCallError::Unavailable(format!("re-entrant call: plugin {target} is already on this call's stack")));
        }
        if chain.len() >= 8 {
            return Err(PluginCallError::Unavailable("plugin call chain deeper than 8".into()));
        }
        let plugin = self.plugin(target).ok_or_else(|| PluginCallError::NoSuchPlugin(target.into()))?;
        if let Some(why) = plugin.sup.unavailable() {
            return Err(PluginCallError::Unavailable(why));
        }
        let max = plugin.policy().limits.max_args_bytes();
        if args.len() > max {
            return Err(PluginCallError::InvalidInput(format!(
                "arguments of {} bytes exceed the limit of {max} bytes of plugin {target} (max_args_kib)",
                args.len()
            )));
        }
        // A plugin or task calling: at most MAX_CALLS_PER_CALLER of its calls wait on one
        // target, so no caller can take a plugin's whole queue from the others.
        let _share = match chain.last() {
            Some(c) => Some(CallShare::take(self, c, target)?),
            None => None,
        };
        let _held = plugin.sup.hold(args.len());
        // Task runs (`task NAME`) are never waited on, so only plugin callers are edges.
        let caller = chain.last().and_then(|c| self.plugin(c));
        let _edge = match &caller {
            Some(c) => Some(WaitEdge::add(self, &c.name, target)?),
            None => None,
        };
        let out = plugin.actor.call(method.to_string(), args, chain).await;
        if let (Err(PluginCallError::Unavailable(_) | PluginCallError::Failed(_)), Some(c)) = (&out, &caller) {
            // The callee keeps its health (see `actor`); the caller sees what it caused.
            c.sup.update(|h| h.calls_failed_downstream += 1);
        }
        out
    }
}

/// Calls one caller (a plugin, or the runs of one task) may have waiting on one plugin.
pub const MAX_CALLS_PER_CALLER: usize = 4;

/// One of a caller's calls in flight to a target, for as long as this lives.
struct CallShare<'a> {
    shared: &'a Shared,
    key: (String, String),
}

impl<'a> CallShare<'a> {
    fn take(shared: &'a Shared, caller: &str, target: &str) -> Result<CallShare<'a>, PluginCallError> {
        let key = (caller.to_string(), target.to_string());
        let mut map = shared.in_flight.lock().unwrap();
        let n = map.entry(key.clone()).or_default();
        if *n >= MAX_CALLS_PER_CALLER {
            return Err(PluginCallError::Unavailable(format!(
                "{caller} already has {MAX_CALLS_PER_CALLER} calls waiting on plugin {target}; retry later"
            )));
        }
        *n += 1;
        Ok(CallShare { shared, key })
    }
}

impl Drop for CallShare<'_> {
    fn drop(&mut self) {
        let mut map = self.shared.in_flight.lock().unwrap();
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// `caller` waits on `target` for as long as this lives.
struct WaitEdge<'a> {
    shared: &'a Shared,
    caller: String,
}

impl<'a> WaitEdge<'a> {
    fn add(shared: &'a Shared, caller: &str, target: &str) -> Result<WaitEdge<'a>, PluginCallError> {
        let mut waits = shared.waits.lock().unwrap();
        // The message names only the two ends the caller knows, not who else waits.
        if closes_cycle(&waits, caller, target).is_some() {
            return Err(PluginCallError::Unavailable(format!(
                "call cycle: plugin {target} already waits on {caller}, directly or through others"
            )));
        }
        waits.insert(caller.to_string(), target.to_string());
        Ok(WaitEdge { shared, caller: caller.to_string() })
    }
}

/// The cycle `caller` waiting on `target` would close in the wait-for graph `waits`
/// (each plugin waits on at most one other), as the path from `caller` back to itself.
fn closes_cycle(waits: &BTreeMap<String, String>, caller: &str, target: &str) -> Option<Vec<String>> {
    let mut path = vec![caller.to_string(), target.to_string()];
    let mut at = target;
    while let Some(next) = waits.get(at) {
        path.push(next.clone());
        if next == caller {
            return Some(path);
        }
        if path.len() > waits.len() + 2 {
            return None;
        }
        at = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_closing_a_wait_cycle_is_found_whatever_its_length() {
        let waits: BTreeMap<String, String> =
            [("a", "b"), ("b", "c"), ("x", "y"), ("y", "x")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(closes_cycle(&waits, "c", "a").unwrap(), ["c", "a", "b", "c"]);
        assert_eq!(closes_cycle(&waits, "b", "a").unwrap(), ["b", "a", "b"]);
        assert!(closes_cycle(&waits, "c", "d").is_none());
        assert!(closes_cycle(&waits, "d", "a").is_none());
        assert!(closes_cycle(&waits, "d", "x").is_none(), "a cycle not through the caller is not its own, and ends");
    }
}

impl Drop for WaitEdge<'_> {
    fn drop(&mut self) {
        self.shared.waits.lock().unwrap().remove(&self.caller);
    }
}

/// Handle to the plugin runtime; cheap to clone.
#[derive(Clone)]
pub struct PluginRuntime {
    pub(crate) shared: Arc<Shared>,
}

/// The engine every plugin runs on: components, epoch interruption for call deadlines.
/// The process's one engine (and its epoch ticker), shared by every runtime, host and
/// check: compiled code and the instance pool are per engine, and a ticker per runtime
/// would advance one engine's epoch several times per tick.
pub fn engine() -> anyhow::Result<Engine> {
    static ENGINE: std::sync::OnceLock<Result<Engine, String>> = std::sync::OnceLock::new();
    ENGINE.get_or_init(|| build_engine().map_err(|e| format!("{e:#}"))).clone().map_err(anyhow::Error::msg)
}

/// The pooling allocator makes a fresh instance per task run cost microseconds: slots for
/// memories, tables and instances are reserved once (virtual address space only) and
/// reused. Limits per slot are generous so that any plugin's own memory cap (StoreLimits,
/// fluid.toml) is what binds, and multi-module components (componentize-py) fit. Where the
/// reservation fails (small address spaces), the on-demand allocator is used instead.
fn build_engine() -> anyhow::Result<Engine> {
    let config = |pooling: bool| {
        let mut c = Config::new();
        c.wasm_component_model(true);
        c.epoch_interruption(true);
        if pooling {
            let mut pool = wasmtime::PoolingAllocationConfig::default();
            pool.total_component_instances(1000)
                .total_core_instances(2000)
                .total_memories(2000)
                .total_tables(2000)
                .max_core_instances_per_component(64)
                .max_memories_per_component(16)
                .max_tables_per_component(16)
                .max_core_instance_size(8 << 20)
                .max_component_instance_size(8 << 20)
                .table_elements(200_000)
                .max_memory_size(4 << 30)
                // Reset the first pages of a reused slot by memset rather than madvise:
                // cheaper for the small memories most runs touch.
                .linear_memory_keep_resident(256 << 10)
                .table_keep_resident(64 << 10);
            c.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
        c
    };
    let engine = match Engine::new(&config(true)) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "pooling allocator unavailable; instances are allocated on demand");
            Engine::new(&config(false)).map_err(wt)?
        }
    };
    // Epoch ticker: advances time for every store's call deadline.
    let weak = engine.weak();
    std::thread::Builder::new().name("fluid-epoch".into()).spawn(move || {
        loop {
            std::thread::sleep(EPOCH_TICK);
            match weak.upgrade() {
                Some(e) => e.increment_epoch(),
                None => return,
            }
        }
    })?;
    Ok(engine)
}

/// The imports a plugin may use: WASI (restricted per store by its grants) and the world's.
pub fn linker(engine: &Engine) -> anyhow::Result<Linker<PluginState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(wt)?;
    Plugin::add_to_linker::<_, wasmtime::component::HasSelf<PluginState>>(&mut linker, |s| s).map_err(wt)?;
    Ok(linker)
}

/// The imports a task component may use: WASI (restricted by its grants) and `host`.
pub fn task_linker(engine: &Engine) -> anyhow::Result<Linker<PluginState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(wt)?;
    super::bindings::task_world::Task::add_to_linker::<_, wasmtime::component::HasSelf<PluginState>>(&mut linker, |s| s).map_err(wt)?;
    Ok(linker)
}

/// wasmtime's error as anyhow's.
pub(crate) fn wt(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
}

impl super::bindings::types::Host for PluginState {}

impl PluginRuntime {
    /// Reads fluid.toml (an invalid file stops the start, naming the key) and attaches the
    /// runtime to the scheduler. Load plugins with `load_dir`, then `watch` the folder.
    pub async fn new(scheduler: Scheduler, settings: PluginSettings) -> anyhow::Result<PluginRuntime> {
        let config = FluidConfig::load(&settings.config_path, settings.limits.clone())?;
        let engine = engine()?;
        let linker = linker(&engine)?;
        let task_linker = task_linker(&engine)?;
        let storage = PluginStorage::new(scheduler.store().plugin_store().await?).await?;
        if let Some(dir) = settings.cache_dir.clone() {
            // Off the async threads: a large cache folder is many file system calls.
            tokio::task::spawn_blocking(move || {
                let n = super::cache::prune(&dir, super::cache::UNUSED_FOR);
                if n > 0 {
                    tracing::info!(folder = %dir.display(), files = n, "compile cache: deleted entries unused for 30 days");
                }
            });
        }
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            engine,
            linker,
            task_linker,
            scheduler: scheduler.clone(),
            storage,
            settings,
            config: RwLock::new(config),
            plugins: RwLock::default(),
            failed: RwLock::default(),
            task_files: RwLock::default(),
            admin: tokio::sync::Mutex::new(()),
            waits: Mutex::default(),
            loading: Mutex::default(),
            in_flight: Mutex::default(),
            stop,
        });
        let rt = PluginRuntime { shared };
        scheduler.set_plugin_directory(Arc::new(rt.clone()));
        Ok(rt)
    }

    pub fn settings(&self) -> &PluginSettings {
        &self.shared.settings
    }

    pub fn get(&self, name: &str) -> Option<Arc<Loaded>> {
        self.shared.plugin(name)
    }

    /// Loaded plugins (with their limits, grants and counters) and files that failed to load.
    pub fn list(&self) -> Vec<PluginInfo> {
        let failed = self.shared.failed.read().unwrap().clone();
        let plugins: Vec<Arc<Loaded>> = self.shared.plugins.read().unwrap().values().cloned().collect();
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
                            let ns =
                                format!("{} {}{}", r.method, super::routes::namespace(&p.name), if r.path == "/" { "" } else { &r.path });
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
        let plugins: Vec<Arc<Loaded>> = self.shared.plugins.read().unwrap().values().cloned().collect();
        let host = self.shared.scheduler.config().host_id.clone();
        for p in plugins {
            super::loader::stop_and_wait(&p).await;
            if let Err(e) = self.shared.scheduler.store().release_delivery(&p.name, &host).await {
                tracing::warn!(plugin = %p.name, error = %e, "cannot release the delivery lease");
            }
        }
        self.shared.storage.close().await;
    }
}

impl PluginDirectory for PluginRuntime {
    fn has_plugin(&self, name: &str) -> bool {
        self.shared.has_plugin(name)
    }

    fn call<'a>(&'a self, plugin: &'a str, method: &'a str, args_json: String) -> CallFuture<'a> {
        Box::pin(self.shared.call(plugin, method, args_json, Vec::new()))
    }
}
