//! Looking at plugin files outside a running host: `fluid plugins check FILE` (a dry run
//! of loading it) and `fluid plugins ls` (offline: compiled and linked against the world
//! each file exports, `plugin` or `task`, never instantiated).

use super::config::FluidConfig;
use super::loader::{check_component, wasm_files};
use super::runtime::{PluginInfo, PluginRuntime, PluginSettings};
use super::trust;
use crate::plugins::capabilities::Linkers;
use crate::plugins::engine::{cache, engine, policy::Limits};
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::store::Store;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What `fluid plugins check` found: the file loaded as a host would load it, or why not.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The file checked, as given.
    pub file: String,
    /// Why the host would refuse it, in the words the host would use; None: it loads.
    pub error: Option<String>,
    /// Its plugin name (the stem of the file).
    pub name: String,
    /// The world and contract version it implements.
    pub world: String,
    /// The version its `register` returned.
    pub version: Option<String>,
    /// `STATE.TAG` of each subscription.
    pub subscriptions: Vec<String>,
    /// `METHOD PATH` of each route it would serve.
    pub routes: Vec<String>,
    /// The tasks a task component defines.
    pub tasks: Vec<String>,
    /// The interfaces it imports (what it may use of the host and WASI).
    pub imports: Vec<String>,
    /// The file's size.
    pub size_bytes: u64,
    /// Compiling (or reading from the compile cache), instantiating and `register` or
    /// `definitions`.
    pub load_ms: f64,
}

/// Loads `path` as a host would, in a sandbox of its own (a scratch data folder, an
/// empty queue, the limits, grants and config `config_path` gives it, `NAME.json` beside
/// the file): compiled through `cache_dir`, instantiated, `register` or `definitions`
/// called. Every reason the host refuses a file is found here, in the same words. Only
/// what depends on a running host is not: its own task names and other plugins' routes.
pub async fn dry_run(path: &Path, config_path: &Path, cache_dir: Option<PathBuf>, limits: Limits) -> anyhow::Result<CheckReport> {
    let scratch = std::env::temp_dir().join(format!("fluid-check-{}", uuid::Uuid::new_v4().simple()));
    let result = dry_run_in(&scratch, path, config_path, cache_dir, limits).await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn dry_run_in(
    scratch: &Path,
    path: &Path,
    config_path: &Path,
    cache_dir: Option<PathBuf>,
    limits: Limits,
) -> anyhow::Result<CheckReport> {
    let file_name = path.file_name().ok_or_else(|| anyhow::anyhow!("{}: not a file", path.display()))?;
    let dir = scratch.join("plugins");
    std::fs::create_dir_all(&dir)?;
    let copy = dir.join(file_name);
    let size_bytes = std::fs::copy(path, &copy).map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
    let beside = path.with_extension("json");
    if beside.is_file() {
        std::fs::copy(&beside, copy.with_extension("json"))?;
    }
    let signature = trust::signature_path(path);
    if signature.is_file() {
        std::fs::copy(&signature, trust::signature_path(&copy))?;
    }
    let store = Store::open_sqlite(scratch).await?;
    let scheduler = Scheduler::new(store, SchedulerConfig::default());
    let mut settings = PluginSettings::new(&dir);
    settings.config_path = config_path.to_path_buf();
    settings.cache_dir = cache_dir;
    settings.limits = limits;
    settings.scan_interval = None;
    let rt = PluginRuntime::new(scheduler.clone(), settings).await?;
    let started = Instant::now();
    let loaded = rt.load_file(&copy).await;
    let load_ms = started.elapsed().as_secs_f64() * 1000.0;
    // Messages name the file the author gave, not the scratch copy.
    let own = |text: &str| text.replace(&copy.display().to_string(), &path.display().to_string());
    let name = copy.file_stem().and_then(|s| s.to_str()).unwrap_or("").to_string();
    let info = rt.list().into_iter().find(|p| p.file == copy.display().to_string());
    // Only of a file the host would load: a refused one is not compiled for this.
    let imports = if loaded.is_ok() { imports_of(&rt, &copy) } else { Vec::new() };
    rt.shutdown().await;
    scheduler.store().close().await;
    let mut report = CheckReport {
        file: path.display().to_string(),
        error: loaded.err().map(|e| own(&e)),
        name,
        world: String::new(),
        version: None,
        subscriptions: vec![],
        routes: vec![],
        tasks: vec![],
        imports,
        size_bytes,
        load_ms,
    };
    if let Some(info) = info {
        report.world = info.world;
        report.version = info.version;
        report.subscriptions = info.subscriptions;
        report.routes = info.routes;
        report.tasks = info.tasks;
        if report.error.is_none() {
            report.error = info.error.map(|e| own(&e));
        }
    }
    Ok(report)
}

/// The interfaces the component at `path` imports (from the compile cache: no new work).
fn imports_of(rt: &PluginRuntime, path: &Path) -> Vec<String> {
    let shared = &rt.shared;
    let engine = &shared.linkers.engine;
    let Ok(bytes) = std::fs::read(path) else { return vec![] };
    let sha = cache::sha256(&bytes);
    match cache::component(engine, &bytes, &sha, shared.settings.cache_dir.as_deref()) {
        Ok(c) => c.component_type().imports(engine).map(|(n, _)| n.to_string()).collect(),
        Err(_) => vec![],
    }
}

/// The world (with its version) the component at `path` implements, plugin or task; the
/// error says what does not fit.
pub fn check_file(path: &Path, cache_dir: Option<&Path>) -> anyhow::Result<Result<String, String>> {
    let l = Linkers::new(engine()?)?;
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return Ok(Err(format!("{}: cannot read: {e}", path.display()))),
    };
    Ok(check_component(&l.engine, &l.plugin, &l.task, path, &bytes, cache_dir).map(|c| c.world()))
}

/// Every `*.wasm` of `dir` with whether it fits, and the limits and grants `config` gives it.
pub fn inspect_dir(dir: &Path, config: &FluidConfig, cache_dir: Option<&Path>) -> anyhow::Result<Vec<PluginInfo>> {
    let l = Linkers::new(engine()?)?;
    let mut out = Vec::new();
    for file in wasm_files(dir)? {
        let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("").to_string();
        let bytes = std::fs::read(&file)?;
        let fits = check_component(&l.engine, &l.plugin, &l.task, &file, &bytes, cache_dir);
        let policy = config.policy(&name);
        let error = match (&fits, &policy) {
            (Err(e), _) => Some(e.clone()),
            (_, Err(e)) => Some(format!("fluid.toml: {e:#}")),
            _ => None,
        };
        out.push(PluginInfo {
            name,
            version: None,
            file: file.display().to_string(),
            sha256: Some(cache::sha256(&bytes)),
            world: fits.as_ref().map(|c| c.world()).unwrap_or_default(),
            tasks: vec![],
            state: if error.is_none() { "loadable".into() } else { "failed".into() },
            error,
            replacement_error: None,
            subscriptions: vec![],
            routes: vec![],
            health: None,
            limits: policy.as_ref().ok().and_then(|p| serde_json::to_value(&p.limits).ok()),
            grants: policy.as_ref().ok().and_then(|p| serde_json::to_value(&p.grants).ok()),
        });
    }
    Ok(out)
}
