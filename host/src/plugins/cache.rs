//! Compiled components cached on disk (`DATA/cache/`), so a restart does not recompile.
//!
//! A file is named after the SHA-256 of the component's bytes and a hash of the engine's
//! compatibility settings (wasmtime version, target, compiler flags), so a changed plugin
//! or a new fluid build never picks up a stale compilation; wasmtime also checks the
//! version and settings itself when it loads one, and a file it refuses is recompiled and
//! rewritten. Files are written beside and renamed into place, so a crash never leaves a
//! truncated one under a final name.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Hex SHA-256 of `bytes`: the component's identity in the cache and in `/plugins`.
pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn engine_key(engine: &Engine) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

fn entry(dir: &Path, engine: &Engine, sha: &str) -> PathBuf {
    dir.join(format!("{sha}-{}.cwasm", engine_key(engine)))
}

/// The component of `bytes` (whose hash is `sha`), from the cache in `dir` when there,
/// else compiled and stored there. A cache that cannot be read or written only costs a
/// compilation (logged); it never refuses a plugin.
pub fn component(engine: &Engine, bytes: &[u8], sha: &str, dir: Option<&Path>) -> wasmtime::Result<Component> {
    let Some(dir) = dir else { return Component::from_binary(engine, bytes) };
    let path = entry(dir, engine, sha);
    if path.exists() {
        // SAFETY: `deserialize_file` trusts the file to be wasmtime's own output, since it
        // maps it as native code. This folder only ever holds what `serialize` below wrote
        // (through a temporary file and a rename), under the hash of the source bytes and
        // of this engine's settings, and wasmtime checks its version and settings header
        // before use. Whoever could plant a file here could as well replace the fluid
        // binary beside it: the cache adds no new way in.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => return Ok(c),
            Err(e) => tracing::warn!(file = %path.display(), error = %format!("{e:#}"), "cached compilation refused; recompiling"),
        }
    }
    let component = Component::from_binary(engine, bytes)?;
    if let Err(e) = store(dir, &path, &component) {
        tracing::warn!(folder = %dir.display(), error = %e, "cannot write the compile cache");
    }
    Ok(component)
}

fn store(dir: &Path, path: &Path, component: &Component) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let bytes = component.serialize().map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let tmp = dir.join(format!(".{}.{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("c"), std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compiled_component_is_reused_and_a_corrupt_entry_recompiled() {
        let dir = std::env::temp_dir().join(format!("fluid-cache-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let engine = Engine::default();
        let bytes = crate::plugins::bundled::STATS_WASM;
        let sha = sha256(bytes);
        component(&engine, bytes, &sha, Some(&dir)).unwrap();
        let path = entry(&dir, &engine, &sha);
        let first = std::fs::metadata(&path).unwrap().modified().unwrap();
        component(&engine, bytes, &sha, Some(&dir)).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), first, "not rewritten: it was reused");
        std::fs::write(&path, b"garbage").unwrap();
        component(&engine, bytes, &sha, Some(&dir)).unwrap();
        assert_ne!(std::fs::read(&path).unwrap(), b"garbage");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
