//! Loading, swapping, unloading and re-enabling plugins, one at a time.
//!
//! A swap never loses or doubles an event: the new version is compiled, instantiated and
//! registered while the old one still runs (if that fails, the old one keeps running and
//! the reason is shown); then the old actor and delivery loop are stopped and awaited, so
//! its last batch is either acknowledged (checkpoint moved) or not, and only then does the
//! new version's delivery loop start, from the stored checkpoint.
//!
//! It owns the admin lock and the files being loaded ([`Admin`]); what it loads goes into
//! the loaded set (`loaded`).

use super::config::FluidConfig;
use super::loaded::{Failed, FileStamp, Loaded};
use super::runtime::PluginRuntime;
use crate::plugins::engine::{cache, guest_pool, limits};
use crate::plugins::instance::actor::{self, Actor, ActorCtx};
use crate::plugins::instance::state::PluginState;
use crate::plugins::instance::supervisor::Supervisor;
use crate::plugins::services::dispatch::{self, Subscriber};
use crate::plugins::services::routes::{self, PluginRoute};
use crate::plugins::wit::bindings::PluginPre;
use crate::plugins::wit::bindings::task_world::TaskPre;
use crate::plugins::wit::contract::{self, TASK_WORLD, WORLD};
use crate::plugins::wit::convert::host_state;
use crate::scheduler::TaskState;
use crate::store::plugin_tables::check_ident;
use anyhow::Context;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

/// One load, swap, unload or re-enable at a time, the files the watcher is loading now
/// (each on its own task), and the compile slots.
pub(crate) struct Admin {
    pub(crate) lock: tokio::sync::Mutex<()>,
    pub(crate) loading: Mutex<BTreeSet<PathBuf>>,
    /// Compilations at once. A compile's memory grows with the component (a large one
    /// takes hundreds of MiB) and cannot be stopped once begun: a compile abandoned after
    /// its `compile_timeout_s` keeps its slot until its thread ends. So files dropped
    /// together, or slow ones dropped again and again, never compile side by side past
    /// these slots.
    pub(crate) compile_slots: Arc<tokio::sync::Semaphore>,
}

impl Admin {
    pub(crate) fn new(compile_slots: usize) -> Admin {
        Admin {
            lock: tokio::sync::Mutex::default(),
            loading: Mutex::default(),
            compile_slots: Arc::new(tokio::sync::Semaphore::new(compile_slots.max(1))),
        }
    }
}

/// Why `enable` did nothing.
#[derive(Debug, thiserror::Error)]
pub enum EnableError {
    /// No plugin, loaded or failed, has that name.
    #[error("plugin {0:?} not found")]
    NotFound(String),
    /// It runs: there is nothing to re-enable.
    #[error("plugin {0:?} is not quarantined")]
    NotQuarantined(String),
    /// Reading fluid.toml, moving the checkpoint or loading failed.
    #[error("{0}")]
    Failed(String),
}

/// A file read and compiled, not yet loaded.
struct Compiled {
    checked: Checked,
    bytes: Vec<u8>,
    stamp: FileStamp,
}

/// A new version, registered and ready to take over.
struct Prepared {
    name: String,
    version: String,
    file: PathBuf,
    sha256: String,
    stamp: FileStamp,
    subscriptions: Vec<(TaskState, String)>,
    routes: Vec<PluginRoute>,
    root_routes: bool,
    world: String,
    ctx: ActorCtx,
    instance: actor::Instance,
}

/// A component that fits one of fluid's worlds, ready to instantiate, with the contract
/// version it was built against.
pub enum Checked {
    /// A plugin (`task-manager-plugin` exported).
    Plugin(PluginPre<PluginState>, &'static str),
    /// A task component (`task-component` exported).
    Task(TaskPre<PluginState>, &'static str),
}

impl Checked {
    /// The world it implements, with the version it was built against.
    pub fn world(&self) -> String {
        match self {
            Checked::Plugin(_, v) => format!("{}/plugin@{v}", contract::PACKAGE),
            Checked::Task(_, v) => format!("{}/task@{v}", contract::PACKAGE),
        }
    }
}

/// The export that tells a plugin (`task-manager-plugin`) from a task component
/// (`task-component`), whatever the version (`contract::built_against` judges that), so a
/// component built against another version is told so instead of "does not fit".
fn exported_world(engine: &Engine, component: &Component) -> Result<&'static str, Vec<String>> {
    let names: Vec<String> = component.component_type().exports(engine).map(|(n, _)| n.to_string()).collect();
    for (iface, world) in [("fluid:scheduler/task-component", "task"), ("fluid:scheduler/task-manager-plugin", "plugin")] {
        if names.iter().any(|n| n.split('@').next() == Some(iface)) {
            return Ok(world);
        }
    }
    Err(names)
}

/// Compiles `bytes` (the file at `path`, through the compile cache when `cache_dir` is
/// given) and checks them against the world they export, `plugin` or `task`: a clear
/// error naming the file, the world and version, and what does not fit (a missing
/// export, an import fluid does not provide).
pub fn check_component(
    engine: &Engine,
    linker: &Linker<PluginState>,
    task_linker: &Linker<PluginState>,
    path: &Path,
    bytes: &[u8],
    cache_dir: Option<&Path>,
) -> Result<Checked, String> {
    let file = path.display();
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(format!("{file}: not a WebAssembly file"));
    }
    let component = cache::component(engine, bytes, &cache::sha256(bytes), cache_dir).map_err(|e| {
        if bytes.get(4..8) == Some(&[1, 0, 0, 0]) {
            format!(
                "{file}: a core WebAssembly module, not a component (build for wasm32-wasip2 or wrap it with `wasm-tools component new`)"
            )
        } else {
            format!("{file}: not a valid component: {e:#}")
        }
    })?;
    let world = exported_world(engine, &component).map_err(|names| {
        format!("{file}: implements neither {WORLD} (it must export task-manager-plugin) nor {TASK_WORLD} (it must export task-component); it exports {names:?}")
    })?;
    // Every name of the package it imports or exports must be of a version this host
    // speaks; the bindings of the newest then serve it.
    let ty = component.component_type();
    let names: Vec<String> = ty.imports(engine).chain(ty.exports(engine)).map(|(n, _)| n.to_string()).collect();
    let version = contract::built_against(names.iter().map(String::as_str)).map_err(|e| format!("{file}: {e}"))?;
    let expected = format!("{}/{world}@{version}", contract::PACKAGE);
    let l = if world == "task" { task_linker } else { linker };
    let pre = l
        .instantiate_pre(&component)
        .map_err(|e| format!("{file}: a {expected} component that imports something fluid does not provide to that world: {e:#}"))?;
    if world == "task" {
        TaskPre::new(pre).map(|p| Checked::Task(p, version)).map_err(|e| format!("{file}: does not implement the {expected} world: {e:#}"))
    } else {
        PluginPre::new(pre)
            .map(|p| Checked::Plugin(p, version))
            .map_err(|e| format!("{file}: does not implement the {expected} world (it must export task-manager-plugin): {e:#}"))
    }
}

impl PluginRuntime {
    /// Loads every `*.wasm` in the plugins folder. A file that fails is recorded with its
    /// reason (and logged); the others still load.
    pub async fn load_dir(&self) -> anyhow::Result<()> {
        let dir = &self.shared.settings.dir;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create plugins folder {}", dir.display()))?;
        for f in wasm_files(dir)? {
            let _ = self.load_file(&f).await;
        }
        Ok(())
    }

    /// Loads one component file: a plugin is registered and its event delivery started
    /// (`Some`); a task component's tasks are registered (`None`, see `tasks`). What was
    /// already loaded from the file is swapped for the new version. On failure the reason
    /// is recorded (shown by `/plugins`) and a running older version keeps running.
    pub async fn load_file(&self, path: &Path) -> Result<Option<Arc<Loaded>>, String> {
        // Compiled before taking the admin lock: a slow file never holds up the others.
        let compiled = self.compile(path).await;
        let _admin = self.shared.admin.lock.lock().await;
        self.load_compiled(path, compiled).await
    }

    async fn load_locked(&self, path: &Path) -> Result<Option<Arc<Loaded>>, String> {
        let compiled = self.compile(path).await;
        self.load_compiled(path, compiled).await
    }

    /// Reads and compiles a file on a low-priority thread of its own, within its size and time limits
    /// (`max_wasm_mib`, `compile_timeout_s` of the plugin its name gives). A compilation
    /// that runs out of time is abandoned (its thread finishes in the background and its
    /// result is dropped) and the file refused until it changes.
    async fn compile(&self, path: &Path) -> Result<Compiled, String> {
        let shared = &self.shared;
        let file = path.display();
        let stamp = FileStamp::of(path).ok_or_else(|| format!("{file}: cannot read"))?;
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let limits = shared.config.read().unwrap().policy(name).map(|p| p.limits).unwrap_or_else(|_| shared.settings.limits.clone());
        if stamp.len > limits.max_wasm_bytes() {
            return Err(format!("{file}: {} bytes, over the limit of {} MiB (max_wasm_mib)", stamp.len, limits.max_wasm_mib));
        }
        let (shared2, path2) = (shared.clone(), path.to_path_buf());
        let trust = shared.config.read().unwrap().trust().clone();
        let name2 = name.to_string();
        let limit = limits.compile_timeout();
        // A file waits for a slot at most its time limit (never for ever behind slow ones),
        // then has its time limit to compile; the slot goes with the thread, held until it
        // ends, abandoned or not.
        let slot = match tokio::time::timeout(limit, shared.admin.compile_slots.clone().acquire_owned()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) => return Err(format!("{file}: the host is stopping")),
            Err(_) => {
                return Err(format!(
                    "{file}: no compile slot within {limit:?} (compile_timeout_s): every slot is held by a slower file's \
                     compilation, or by one abandoned after its own limit; refused until the file changes"
                ));
            }
        };
        let work = guest_pool::off_host("fluid-compile", move || {
            let _slot = slot;
            let bytes = std::fs::read(&path2).map_err(|e| format!("{}: cannot read: {e}", path2.display()))?;
            // Before it is compiled: an untrusted file costs nothing but this check.
            trust.admits(&name2, &path2, &bytes)?;
            let checked = check_component(
                &shared2.linkers.engine,
                &shared2.linkers.plugin,
                &shared2.linkers.task,
                &path2,
                &bytes,
                shared2.settings.cache_dir.as_deref(),
            )?;
            Ok::<_, String>((checked, bytes))
        });
        match tokio::time::timeout(limit, work).await {
            Ok(Ok(Ok((checked, bytes)))) => Ok(Compiled { checked, bytes, stamp }),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(format!("{file}: compilation failed: its thread ended without an answer")),
            Err(_) => Err(format!("{file}: compilation took longer than {limit:?} (compile_timeout_s); refused until the file changes")),
        }
    }

    async fn load_compiled(&self, path: &Path, compiled: Result<Compiled, String>) -> Result<Option<Arc<Loaded>>, String> {
        let stamp = FileStamp::of(path);
        match async { self.load_checked(path, compiled?).await }.await {
            Ok(loaded) => {
                self.shared.loaded.failed.write().unwrap().remove(path);
                Ok(loaded)
            }
            Err(reason) => {
                tracing::error!(file = %path.display(), error = %reason, "plugin not loaded");
                let mut all = self.shared.loaded.failed.write().unwrap();
                let failed = Failed::new(reason.clone(), stamp, database_busy(path, &reason), all.get(path));
                all.insert(path.to_path_buf(), failed);
                Err(reason)
            }
        }
    }

    /// Compiles the file and loads it as the world it implements; a file that changed
    /// world drops what its previous version had loaded.
    async fn load_checked(&self, path: &Path, compiled: Compiled) -> Result<Option<Arc<Loaded>>, String> {
        let shared = &self.shared;
        let Compiled { checked, bytes, stamp } = compiled;
        let world = checked.world();
        match checked {
            Checked::Plugin(pre, _) => {
                let p = self.prepare(path, pre, world, &bytes, stamp).await?;
                self.unload_tasks(path);
                Ok(Some(self.install(p).await))
            }
            Checked::Task(pre, _) => {
                self.install_tasks(path, pre, &bytes, stamp, world).await?;
                let name = shared.loaded.plugins.read().unwrap().values().find(|p| p.file == path).map(|p| p.name.clone());
                if let Some(name) = name {
                    self.unload_locked(&name).await;
                }
                Ok(None)
            }
        }
    }

    async fn prepare(
        &self,
        path: &Path,
        pre: PluginPre<PluginState>,
        world: String,
        bytes: &[u8],
        stamp: FileStamp,
    ) -> Result<Prepared, String> {
        let shared = &self.shared;
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("").to_string();
        check_ident("plugin name (the file name)", &name, limits::MAX_PLUGIN_NAME).map_err(|_| {
            format!(
                "{}: the plugin name (the file name) {name:?} must match [a-z][a-z0-9_]* and have at most 24 characters, e.g. {}.wasm",
                path.display(),
                valid_name(&name)
            )
        })?;
        if let Some(other) = shared.plugin(&name).filter(|o| o.file != path) {
            return Err(format!("{}: a plugin named {name:?} is already loaded from {}", path.display(), other.file.display()));
        }
        let policy = shared
            .config
            .read()
            .unwrap()
            .policy(&name)
            .map_err(|e| format!("{}: fluid.toml: {e:#}", shared.settings.config_path.display()))?;
        let config_json = match &policy.config {
            Some(v) => v.to_string(),
            None => legacy_config(path)?,
        };
        let sup = Arc::new(Supervisor::new(&name, Arc::new(policy), shared.stop.child_token()));
        let ctx = ActorCtx { config_json, stores: shared.stores.clone(), pre, sup };
        let (mut instance, reg) = actor::instantiate_off_host(&ctx).await.map_err(|e| format!("{}: {e}", path.display()))?;
        if reg.name != name {
            let hint = if check_ident("plugin name", &reg.name, limits::MAX_PLUGIN_NAME).is_ok() {
                format!("name the file {}.wasm", reg.name)
            } else {
                format!("that is not a valid plugin name either: make register return {name:?}")
            };
            return Err(format!("{}: the component registers as {:?}; {hint}", path.display(), limits::truncated(&reg.name)));
        }
        let root_routes = ctx.sup.policy.grants.root_routes(&name, crate::plugins::bundled::is_bundled(&name, bytes));
        let others = shared.loaded.plugins();
        let root_owners: Vec<(&str, &[PluginRoute])> =
            others.iter().filter(|o| o.root_routes).map(|o| (o.name.as_str(), o.routes.as_slice())).collect();
        let declared = reg.routes.iter().map(|r| (r.method.as_str(), r.path.as_str(), r.handler.as_str()));
        let mut routes =
            routes::check_routes(&name, root_routes, declared, &root_owners).map_err(|e| format!("{}: {e}", path.display()))?;
        let state = instance.0.data_mut();
        let (roles, refused) = (std::mem::take(&mut state.route_roles), state.route_roles_refused.take());
        routes::apply(&mut routes, roles, refused).map_err(|e| format!("{}: {e}", path.display()))?;
        ctx.sup.host_bytes.store(limits::registration_bytes(&reg), std::sync::atomic::Ordering::Relaxed);
        let subscriptions: Vec<(TaskState, String)> = reg.subscriptions.iter().map(|s| (host_state(s.state), s.tag.clone())).collect();
        let file = path.to_path_buf();
        Ok(Prepared {
            name,
            version: reg.version,
            file,
            sha256: cache::sha256(bytes),
            stamp,
            subscriptions,
            routes,
            root_routes,
            world,
            ctx,
            instance,
        })
    }

    /// Stops the version in place (if any), then starts this one.
    async fn install(&self, p: Prepared) -> Arc<Loaded> {
        if let Some(old) = self.shared.plugin(&p.name) {
            stop_and_wait(&old).await;
        }
        let sup = p.ctx.sup.clone();
        // Shown at once by `/plugins` (the delivery loop reads it again, retrying on errors).
        if let Ok(cp) = dispatch::first_checkpoint(self.shared.scheduler.store(), &p.name, sup.policy.start).await {
            sup.update(|h| h.checkpoint = cp);
        }
        let actor = Actor::spawn(p.ctx, p.instance, sup.stop.clone());
        let (name, version, file, sha256, stamp, subscriptions, routes, root_routes) =
            (p.name, p.version, p.file, p.sha256, p.stamp, p.subscriptions, p.routes, p.root_routes);
        let loaded = Arc::new(Loaded {
            name,
            version,
            file,
            sha256,
            stamp,
            subscriptions,
            routes,
            root_routes,
            world: p.world,
            actor,
            sup,
            delivery: Mutex::new(None),
        });
        self.shared.loaded.plugins.write().unwrap().insert(loaded.name.clone(), loaded.clone());
        let subscriber = Subscriber {
            name: loaded.name.clone(),
            subscriptions: loaded.subscriptions.clone(),
            actor: loaded.actor.clone(),
            sup: loaded.sup.clone(),
        };
        *loaded.delivery.lock().unwrap() = Some(tokio::spawn(dispatch::deliver(self.shared.feed(), subscriber)));
        tracing::info!(plugin = %loaded.name, version = %loaded.version, file = %loaded.file.display(), sha256 = %loaded.sha256,
            subscriptions = loaded.subscriptions.len(), routes = loaded.routes.len(), "plugin loaded");
        loaded
    }

    /// Unloads a plugin: no more calls or deliveries; its checkpoint and tables stay.
    pub async fn unload(&self, name: &str) -> bool {
        let _admin = self.shared.admin.lock.lock().await;
        self.unload_locked(name).await
    }

    async fn unload_locked(&self, name: &str) -> bool {
        let Some(p) = self.shared.loaded.plugins.write().unwrap().remove(name) else { return false };
        stop_and_wait(&p).await;
        // Its delivery loop has ended: give the lease up, so another host that has the
        // plugin goes on at once, and `fluid plugins forget` sees it is no longer loaded here.
        let host = &self.shared.scheduler.config().host_id;
        if let Err(e) = self.shared.scheduler.store().release_delivery(name, host).await {
            tracing::warn!(plugin = %name, error = %e, "cannot release the delivery lease of an unloaded plugin");
        }
        tracing::info!(plugin = %name, file = %p.file.display(), "plugin unloaded");
        true
    }

    /// Restarts a quarantined plugin (or retries a file that failed to load) from its file,
    /// with fluid.toml read again. Its held events are then delivered, or skipped when
    /// `skip_events` (its checkpoint moves to the head of the feed first).
    pub async fn enable(&self, name: &str, skip_events: bool) -> Result<Arc<Loaded>, EnableError> {
        let _admin = self.shared.admin.lock.lock().await;
        self.reload_config().map_err(|e| EnableError::Failed(format!("{e:#}")))?;
        let loaded = self.shared.plugin(name);
        let path = match &loaded {
            Some(p) if !p.sup.quarantined() => return Err(EnableError::NotQuarantined(name.into())),
            Some(p) => p.file.clone(),
            None => {
                let failed = self.shared.loaded.failed.read().unwrap();
                failed
                    .keys()
                    .find(|f| f.file_stem().and_then(|s| s.to_str()) == Some(name))
                    .cloned()
                    .ok_or_else(|| EnableError::NotFound(name.into()))?
            }
        };
        if let Some(old) = &loaded {
            stop_and_wait(old).await;
        }
        if skip_events {
            let store = self.shared.scheduler.store();
            let skip = async {
                let head = store.feed_head().await?;
                store.checkpoint(name, head).await?;
                store.reset_checkpoint(name, head).await
            };
            skip.await.map_err(|e| EnableError::Failed(format!("cannot move the checkpoint: {e}")))?;
            tracing::warn!(plugin = %name, "events held for the quarantined plugin skipped by the operator");
        }
        let result = self.load_locked(&path).await;
        if let (Err(reason), Some(old)) = (&result, &loaded) {
            old.sup.update(|h| h.last_error = Some(reason.clone()));
        }
        match result {
            Ok(Some(p)) => Ok(p),
            Ok(None) => Err(EnableError::Failed(format!("{} is now a task component", path.display()))),
            Err(e) => Err(EnableError::Failed(e)),
        }
    }

    /// Reads fluid.toml again; an invalid file is an error and the previous one stays in force.
    pub(crate) fn reload_config(&self) -> anyhow::Result<()> {
        let s = &self.shared.settings;
        let fresh = FluidConfig::load(&s.config_path, s.limits.clone())?;
        *self.shared.config.write().unwrap() = fresh;
        Ok(())
    }

    /// Swaps a loaded plugin for the version in its file (the watcher's and the config
    /// reload's entry point).
    pub(crate) async fn replace(&self, path: &Path) {
        let _ = self.load_file(path).await;
    }
}

/// Stops a plugin's actor and delivery loop and waits for the loop to end (it finishes
/// the batch in hand first, so the checkpoint is settled when this returns).
pub(crate) async fn stop_and_wait(p: &Loaded) {
    p.sup.stop.cancel();
    let handle = p.delivery.lock().unwrap().take();
    if let Some(h) = handle {
        let _ = h.await;
    }
}

/// A valid plugin name close to `name`: lower case, `_` for anything else, a letter first.
pub fn valid_name(name: &str) -> String {
    let mut out: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    if !out.starts_with(|c: char| c.is_ascii_lowercase()) {
        out.insert(0, 'p');
    }
    out.truncate(24);
    out
}

/// `NAME.json` beside `NAME.wasm`: the config before fluid.toml, still honoured when
/// fluid.toml gives none.
fn legacy_config(path: &Path) -> Result<String, String> {
    let config_path = path.with_extension("json");
    match std::fs::read_to_string(&config_path) {
        Ok(s) => {
            let v: serde_json::Value =
                serde_json::from_str(&s).map_err(|e| format!("{}: config is not JSON: {e}", config_path.display()))?;
            if !v.is_object() {
                return Err(format!("{}: config must be a JSON object", config_path.display()));
            }
            Ok(s)
        }
        Err(_) => Ok("{}".to_string()),
    }
}

/// The `*.wasm` files of a folder, sorted.
pub fn wasm_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Whether a load of `path` failed with `reason` because the database was busy: the mark
/// the host puts first on a start's error (`actor::DATABASE_FAULT`), right after the path.
/// Only there: further on, the reason quotes the guest, which could write the same words.
fn database_busy(path: &Path, reason: &str) -> bool {
    reason.strip_prefix(&format!("{}: ", path.display())).is_some_and(|r| r.starts_with(crate::plugins::instance::actor::DATABASE_FAULT))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn only_the_hosts_own_mark_says_the_database_was_busy() {
        let path = Path::new("/p/x.wasm");
        let mark = crate::plugins::instance::actor::DATABASE_FAULT;
        assert!(super::database_busy(path, &format!("/p/x.wasm: {mark}register refused: no")));
        // The guest's refusal quoting the words is its own failure.
        assert!(!super::database_busy(path, &format!("/p/x.wasm: register refused: {mark}")));
        assert!(!super::database_busy(path, "/p/x.wasm: register refused: no"));
    }
}
