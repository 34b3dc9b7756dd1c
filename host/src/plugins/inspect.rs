//! Looking at plugin files without running them: `fluid plugins check FILE` and
//! `fluid plugins ls` (offline). A file is compiled and linked against the world it
//! exports, `plugin` or `task` (so an author learns which one it is and what does not
//! fit), never instantiated: `register` may need the storage of a running host.

use super::config::FluidConfig;
use super::loader::{check_component, wasm_files};
use super::runtime::{PluginInfo, engine, linker, task_linker};
use std::path::Path;

/// The world (with its version) the component at `path` implements, plugin or task; the
/// error says what does not fit.
pub fn check_file(path: &Path, cache_dir: Option<&Path>) -> anyhow::Result<Result<&'static str, String>> {
    let engine = engine()?;
    let linker = linker(&engine)?;
    let task_linker = task_linker(&engine)?;
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return Ok(Err(format!("{}: cannot read: {e}", path.display()))),
    };
    Ok(check_component(&engine, &linker, &task_linker, path, &bytes, cache_dir).map(|c| c.world()))
}

/// Every `*.wasm` of `dir` with whether it fits, and the limits and grants `config` gives it.
pub fn inspect_dir(dir: &Path, config: &FluidConfig, cache_dir: Option<&Path>) -> anyhow::Result<Vec<PluginInfo>> {
    let engine = engine()?;
    let linker = linker(&engine)?;
    let task_linker = task_linker(&engine)?;
    let mut out = Vec::new();
    for file in wasm_files(dir)? {
        let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("").to_string();
        let bytes = std::fs::read(&file)?;
        let fits = check_component(&engine, &linker, &task_linker, &file, &bytes, cache_dir);
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
            sha256: Some(super::cache::sha256(&bytes)),
            world: fits.as_ref().map(|c| c.world().to_string()).unwrap_or_default(),
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
