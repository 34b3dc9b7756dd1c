//! The plugin runtime: one wasmtime engine and linker, the plugins folder, and the set of
//! loaded plugins that tasks, routes and other plugins reach by name.
//!
//! A plugin's name is the stem of its file (`db.wasm` is `db`), and its `register` must
//! return that name: the name keys its storage namespace, its checkpoint and its config
//! file (`db.json` beside `db.wasm`, a JSON object passed to `register`).

use super::actor::{self, Actor};
use super::bindings::{Plugin, PluginPre};
use super::dispatch;
use super::host_api::LogBudget;
use super::storage::{PluginStorage, check_ident};
use crate::scheduler::{CallFuture, PluginCallError, PluginDirectory, Scheduler, TaskState};
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Limits and folders of the plugin runtime.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    pub dir: PathBuf,
    /// Wall-clock budget of wasm execution per call (epoch interruption).
    pub call_timeout: Duration,
    /// Linear memory a plugin instance may grow to.
    pub memory_bytes: usize,
    /// Events per `on-events` call.
    pub batch: usize,
}

impl PluginSettings {
    pub fn new(dir: impl Into<PathBuf>) -> PluginSettings {
        PluginSettings { dir: dir.into(), call_timeout: Duration::from_secs(10), memory_bytes: 64 << 20, batch: 256 }
    }
}

/// Epoch tick: the granularity of call time limits.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The data of one plugin instance's store.
pub struct PluginState {
    pub name: String,
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) shared: Arc<Shared>,
    /// Plugins on the call stack above this call (to refuse re-entry instead of deadlocking).
    pub(crate) chain: Vec<String>,
    pub(crate) log_budget: LogBudget,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Counters and health of one plugin, shown by `/plugins`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Health {
    pub calls: u64,
    pub errors: u64,
    pub traps: u64,
    pub events_delivered: u64,
    pub checkpoint: i64,
    pub last_error: Option<String>,
    /// `active`, or `failing` while deliveries fail and are retried.
    pub state: String,
}

/// A loaded plugin.
pub struct Loaded {
    pub name: String,
    pub version: String,
    pub file: PathBuf,
    pub subscriptions: Vec<(TaskState, String)>,
    pub routes: Vec<(String, String, String)>,
    pub(crate) actor: Actor,
    pub(crate) health: Mutex<Health>,
    pub(crate) stop: CancellationToken,
}

impl Loaded {
    /// A snapshot of the plugin's counters and state.
    pub fn health(&self) -> Health {
        self.health.lock().unwrap().clone()
    }

    pub fn subscribed(&self, state: TaskState) -> bool {
        self.subscriptions.iter().any(|(s, _)| *s == state)
    }
}

/// What `/plugins` and `fluid plugins ls` show.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: Option<String>,
    pub file: String,
    pub world: String,
    pub state: String,
    pub error: Option<String>,
    pub subscriptions: Vec<String>,
    pub routes: Vec<String>,
    pub health: Option<Health>,
}

pub struct Shared {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<PluginState>,
    pub(crate) scheduler: Scheduler,
    pub(crate) storage: PluginStorage,
    pub(crate) settings: PluginSettings,
    pub(crate) plugins: RwLock<BTreeMap<String, Arc<Loaded>>>,
    pub(crate) failed: RwLock<BTreeMap<PathBuf, String>>,
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
    /// call; reaching one of them again would deadlock, so it is refused.
    pub async fn call(&self, target: &str, method: &str, args: String, chain: Vec<String>) -> Result<String, PluginCallError> {
        if chain.iter().any(|c| c == target) {
            return Err(PluginCallError::Unavailable(format!("re-entrant call: {} -> {target}", chain.join(" -> "))));
        }
        if chain.len() >= 8 {
            return Err(PluginCallError::Unavailable("plugin call chain deeper than 8".into()));
        }
        let plugin = self.plugin(target).ok_or_else(|| PluginCallError::NoSuchPlugin(target.into()))?;
        let out = plugin.actor.call(method.to_string(), args, chain).await;
        let mut h = plugin.health.lock().unwrap();
        h.calls += 1;
        if let Err(e) = &out {
            if !matches!(e, PluginCallError::NotFound(_) | PluginCallError::InvalidInput(_)) {
                h.errors += 1;
                h.last_error = Some(e.to_string());
            }
        }
        out
    }
}

/// Handle to the plugin runtime; cheap to clone.
#[derive(Clone)]
pub struct PluginRuntime {
    pub(crate) shared: Arc<Shared>,
}

fn engine() -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    Engine::new(&config).map_err(wt)
}

/// wasmtime's error as anyhow's.
pub(crate) fn wt(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
}

impl super::bindings::types::Host for PluginState {}

impl PluginRuntime {
    pub async fn new(scheduler: Scheduler, settings: PluginSettings) -> anyhow::Result<PluginRuntime> {
        let engine = engine()?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(wt)?;
        Plugin::add_to_linker::<_, wasmtime::component::HasSelf<PluginState>>(&mut linker, |s| s).map_err(wt)?;
        let storage = PluginStorage::new(scheduler.store().clone()).await?;
        let stop = CancellationToken::new();
        // Epoch ticker: advances time for every store's call deadline.
        let weak = engine.weak();
        let ticker_stop = stop.clone();
        std::thread::Builder::new().name("fluid-epoch".into()).spawn(move || {
            while !ticker_stop.is_cancelled() {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(e) => e.increment_epoch(),
                    None => return,
                }
            }
        })?;
        let shared = Arc::new(Shared {
            engine,
            linker,
            scheduler: scheduler.clone(),
            storage,
            settings,
            plugins: RwLock::default(),
            failed: RwLock::default(),
            stop,
        });
        let rt = PluginRuntime { shared };
        scheduler.set_plugin_directory(Arc::new(rt.clone()));
        Ok(rt)
    }

    pub fn settings(&self) -> &PluginSettings {
        &self.shared.settings
    }

    /// Loads every `*.wasm` in the plugins folder. A file that fails is recorded with its
    /// reason (and logged); the others still load.
    pub async fn load_dir(&self) -> anyhow::Result<()> {
        let dir = &self.shared.settings.dir;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create plugins folder {}", dir.display()))?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
            .collect();
        files.sort();
        for f in files {
            if let Err(e) = self.load_file(&f).await {
                tracing::error!(file = %f.display(), error = %e, "plugin not loaded");
            }
        }
        Ok(())
    }

    /// Loads one component file, registers it and starts its event delivery.
    pub async fn load_file(&self, path: &Path) -> Result<Arc<Loaded>, String> {
        let result = self.try_load(path).await;
        match &result {
            Ok(p) => {
                self.shared.failed.write().unwrap().remove(path);
                tracing::info!(plugin = %p.name, version = %p.version, file = %path.display(), subscriptions = p.subscriptions.len(), routes = p.routes.len(), "plugin loaded");
            }
            Err(e) => {
                self.shared.failed.write().unwrap().insert(path.to_path_buf(), e.clone());
            }
        }
        result
    }

    async fn try_load(&self, path: &Path) -> Result<Arc<Loaded>, String> {
        let shared = &self.shared;
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("").to_string();
        check_ident("plugin name (the file name)", &name, 24).map_err(|e| format!("{}: {e:?}", path.display()))?;
        if let Some(other) = shared.plugin(&name) {
            return Err(format!("{}: a plugin named {name:?} is already loaded from {}", path.display(), other.file.display()));
        }
        let pre = check_component(&shared.engine, &shared.linker, path)?;
        let config_path = path.with_extension("json");
        let config_json = match std::fs::read_to_string(&config_path) {
            Ok(s) => {
                let v: serde_json::Value = serde_json::from_str(&s).map_err(|e| format!("{}: config is not JSON: {e}", config_path.display()))?;
                if !v.is_object() {
                    return Err(format!("{}: config must be a JSON object", config_path.display()));
                }
                s
            }
            Err(_) => "{}".to_string(),
        };
        let ctx = actor::ActorCtx { name: name.clone(), config_json, shared: shared.clone(), pre };
        let (instance, reg) = actor::instantiate(&ctx).await.map_err(|e| format!("{}: {e}", path.display()))?;
        if reg.name != name {
            return Err(format!("{}: the component registers as {:?}; name the file {}.wasm", path.display(), reg.name, reg.name));
        }
        let mut routes = Vec::new();
        for r in &reg.routes {
            let method = r.method.to_ascii_uppercase();
            if !r.path.starts_with('/') {
                return Err(format!("{}: route path {:?} must start with /", path.display(), r.path));
            }
            let taken = shared.plugins.read().unwrap().values().any(|p| p.routes.iter().any(|(m, pth, _)| *m == method && *pth == r.path));
            if taken || super::routes::host_owns(&r.path) {
                return Err(format!("{}: route {method} {} is already served", path.display(), r.path));
            }
            routes.push((method, r.path.clone(), r.handler.clone()));
        }
        let subscriptions = reg.subscriptions.iter().map(|s| (dispatch::host_state(s.state), s.tag.clone())).collect();
        let stop = shared.stop.child_token();
        let loaded = Arc::new(Loaded {
            name: name.clone(),
            version: reg.version.clone(),
            file: path.to_path_buf(),
            subscriptions,
            routes,
            actor: Actor::spawn(ctx, instance, stop.clone()),
            health: Mutex::new(Health { state: "active".into(), ..Default::default() }),
            stop,
        });
        shared.plugins.write().unwrap().insert(name, loaded.clone());
        tokio::spawn(dispatch::deliver(shared.clone(), loaded.clone()));
        Ok(loaded)
    }

    /// Unloads a plugin: no more calls or deliveries; its checkpoint stays.
    pub fn unload(&self, name: &str) -> bool {
        match self.shared.plugins.write().unwrap().remove(name) {
            Some(p) => {
                p.stop.cancel();
                true
            }
            None => false,
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<Loaded>> {
        self.shared.plugin(name)
    }

    /// Loaded plugins and files that failed to load.
    pub fn list(&self) -> Vec<PluginInfo> {
        let mut out: Vec<PluginInfo> = self
            .shared
            .plugins
            .read()
            .unwrap()
            .values()
            .map(|p| {
                let health = p.health.lock().unwrap().clone();
                PluginInfo {
                    name: p.name.clone(),
                    version: Some(p.version.clone()),
                    file: p.file.display().to_string(),
                    world: "fluid:scheduler/plugin@0.1.0".into(),
                    state: health.state.clone(),
                    error: health.last_error.clone(),
                    subscriptions: p.subscriptions.iter().map(|(s, t)| format!("{s}.{t}")).collect(),
                    routes: p.routes.iter().map(|(m, pth, _)| format!("{m} {pth}")).collect(),
                    health: Some(health),
                }
            })
            .collect();
        for (file, err) in self.shared.failed.read().unwrap().iter() {
            out.push(PluginInfo {
                name: file.file_stem().and_then(|s| s.to_str()).unwrap_or("").into(),
                version: None,
                file: file.display().to_string(),
                world: String::new(),
                state: "failed".into(),
                error: Some(err.clone()),
                subscriptions: vec![],
                routes: vec![],
                health: None,
            });
        }
        out
    }

    /// Stops every plugin's delivery and actor.
    pub fn shutdown(&self) {
        self.shared.stop.cancel();
    }
}

/// Compiles a file and checks it against the `plugin` world: a clear error naming the file
/// and what does not fit.
pub fn check_component(engine: &Engine, linker: &Linker<PluginState>, path: &Path) -> Result<PluginPre<PluginState>, String> {
    let file = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("{file}: cannot read: {e}"))?;
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(format!("{file}: not a WebAssembly file"));
    }
    let component = Component::from_binary(engine, &bytes).map_err(|e| {
        let core_module = bytes.get(4..8) == Some(&[1, 0, 0, 0]);
        if core_module {
            format!("{file}: a core WebAssembly module, not a component (build for wasm32-wasip2 or wrap it with `wasm-tools component new`)")
        } else {
            format!("{file}: not a valid component: {e:#}")
        }
    })?;
    let pre = linker
        .instantiate_pre(&component)
        .map_err(|e| format!("{file}: imports something fluid does not provide: {e:#}"))?;
    PluginPre::new(pre).map_err(|e| format!("{file}: does not implement the fluid:scheduler/plugin@0.1.0 world (it must export task-manager-plugin): {e:#}"))
}

impl PluginDirectory for PluginRuntime {
    fn has_plugin(&self, name: &str) -> bool {
        self.shared.has_plugin(name)
    }

    fn call<'a>(&'a self, plugin: &'a str, method: &'a str, args_json: String) -> CallFuture<'a> {
        Box::pin(self.shared.call(plugin, method, args_json, Vec::new()))
    }
}

/// Builds a fresh store for a plugin instance: no WASI grants, the memory cap, the
/// per-call deadline set by the caller.
pub(crate) fn new_store(shared: &Arc<Shared>, name: &str) -> Store<PluginState> {
    let limits = StoreLimitsBuilder::new().memory_size(shared.settings.memory_bytes).instances(32).tables(64).trap_on_grow_failure(true).build();
    let state = PluginState {
        name: name.to_string(),
        wasi: WasiCtx::builder().build(),
        table: ResourceTable::new(),
        limits,
        shared: shared.clone(),
        chain: Vec::new(),
        log_budget: LogBudget::default(),
    };
    let mut store = Store::new(&shared.engine, state);
    store.limiter(|s| &mut s.limits);
    store.epoch_deadline_trap();
    store
}
