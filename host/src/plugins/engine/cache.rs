//! Compiled components cached on disk (`DATA/cache/`), so a restart does not recompile.
//!
//! A file is named after the SHA-256 of the component's bytes and a hash of the engine's
//! compatibility settings (wasmtime version, target, compiler flags), so a changed plugin
//! or a new fluid build never picks up a stale compilation; wasmtime also checks the
//! version and settings itself when it loads one, and a file it refuses is recompiled and
//! rewritten. Files are written beside and renamed into place, so a crash never leaves a
//! truncated one under a final name.
//!
//! Pruning: each use of an entry renews its modification time, and when the plugin runtime
//! starts it deletes entries unused for [`UNUSED_FOR`] (those of replaced plugins and of
//! older fluid builds) and temporary files a crash left behind. By age rather than "not
//! loaded now", because one folder may serve several hosts or builds at once.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use wasmtime::Engine;
use wasmtime::component::Component;

/// An entry not used for this long is deleted at the next start.
pub const UNUSED_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
/// A temporary file older than this is a crash's leftover (a write takes seconds).
const TMP_STALE: Duration = Duration::from_secs(3600);

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
            Ok(c) => {
                // Marks the entry as in use, for [`prune`].
                let _ = std::fs::File::options().write(true).open(&path).and_then(|f| f.set_modified(SystemTime::now()));
                return Ok(c);
            }
            Err(e) => tracing::warn!(file = %path.display(), error = %format!("{e:#}"), "cached compilation refused; recompiling"),
        }
    }
    let component = Component::from_binary(engine, bytes)?;
    if let Err(e) = store(dir, &path, &component) {
        tracing::warn!(folder = %dir.display(), error = %e, "cannot write the compile cache");
    }
    Ok(component)
}

/// Deletes entries of `dir` unused for `unused_for` and stale temporary files; returns how
/// many files were deleted. Errors (a folder that does not exist yet, a file another host
/// just removed) only mean less is deleted.
pub fn prune(dir: &Path, unused_for: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let now = SystemTime::now();
    let mut deleted = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // Only names this module writes: the folder may be shared with other files.
        let max_age = if is_entry_name(&name) {
            unused_for
        } else if let Some(inner) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp"))
            && let Some((entry_name, pid)) = inner.rsplit_once('.')
            && is_entry_name(entry_name)
            && pid.bytes().all(|b| b.is_ascii_digit())
        {
            TMP_STALE
        } else {
            continue;
        };
        let age = e.metadata().and_then(|m| m.modified()).ok().and_then(|m| now.duration_since(m).ok());
        if age.is_some_and(|a| a > max_age) && std::fs::remove_file(e.path()).is_ok() {
            deleted += 1;
        }
    }
    deleted
}

/// `{sha256 hex}-{engine key hex}.cwasm`, what [`entry`] names.
fn is_entry_name(name: &str) -> bool {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    name.strip_suffix(".cwasm").and_then(|s| s.split_once('-')).is_some_and(|(sha, key)| hex(sha, 64) && hex(key, 16))
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
        // A rewrite is a rename over it, so a new inode; a use only renews its time.
        use std::os::unix::fs::MetadataExt;
        let first = std::fs::metadata(&path).unwrap().ino();
        component(&engine, bytes, &sha, Some(&dir)).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), first, "not rewritten: it was reused");
        std::fs::write(&path, b"garbage").unwrap();
        component(&engine, bytes, &sha, Some(&dir)).unwrap();
        assert_ne!(std::fs::read(&path).unwrap(), b"garbage");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn prune_deletes_entries_unused_for_a_month_and_crash_leftovers_only() {
        let dir = std::env::temp_dir().join(format!("fluid-cache-prune-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let engine = Engine::default();
        let bytes = crate::plugins::bundled::STATS_WASM;
        let sha = sha256(bytes);
        let aged = |name: &str, age: Duration| {
            let p = dir.join(name);
            std::fs::write(&p, b"x").unwrap();
            std::fs::File::options().write(true).open(&p).unwrap().set_modified(SystemTime::now() - age).unwrap();
            p
        };
        let day = Duration::from_secs(24 * 3600);
        let name = |c: char| format!("{}-{}.cwasm", c.to_string().repeat(64), "0123456789abcdef");
        let old = aged(&name('a'), 40 * day);
        let recent = aged(&name('b'), 2 * day);
        let leftover = aged(&format!(".{}.123.tmp", name('c')), 2 * TMP_STALE);
        let writing = aged(&format!(".{}.456.tmp", name('d')), Duration::from_secs(5));
        let foreign = aged("notes.txt", 400 * day);
        let foreign_cwasm = aged("someone-else.cwasm", 400 * day);
        // An entry last written long ago but used now is kept: use renews it.
        component(&engine, bytes, &sha, Some(&dir)).unwrap();
        let used = entry(&dir, &engine, &sha);
        std::fs::File::options().write(true).open(&used).unwrap().set_modified(SystemTime::now() - 40 * day).unwrap();
        component(&engine, bytes, &sha, Some(&dir)).unwrap();

        assert_eq!(prune(&dir, UNUSED_FOR), 2);
        assert!(!old.exists() && !leftover.exists());
        assert!(recent.exists() && writing.exists() && foreign.exists() && foreign_cwasm.exists() && used.exists());
        assert_eq!(prune(&dir.join("missing"), UNUSED_FOR), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
