//! The components bundled into the binary (built from plugins/ by build.rs), and the
//! seeding of the plugins folder with them.
//!
//! On start, `serve` writes each bundled plugin into the plugins folder when it is missing
//! and was never seeded there before, or when the file there is an older bundled copy the
//! operator did not change. A plugin the operator deleted or replaced is left alone.
//! `.bundled` in the folder records what was seeded.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// The `db` plugin: the run history (aio-fluid's `/task-history`).
pub const DB_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/db.wasm"));
/// The `stats` plugin: run statistics.
pub const STATS_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/stats.wasm"));

/// Bundled plugins by file name.
pub const BUNDLED: [(&str, &[u8]); 2] = [("db.wasm", DB_WASM), ("stats.wasm", STATS_WASM)];

/// Whether `bytes` are exactly the bundled plugin `name` this binary carries (trusted as
/// the binary is, whatever the trust policy).
pub fn is_bundled(name: &str, bytes: &[u8]) -> bool {
    BUNDLED.iter().any(|(file, b)| file.strip_suffix(".wasm") == Some(name) && *b == bytes)
}

/// Where build.rs left every component built from plugins/ (including the test ones).
pub fn guest_wasm_dir() -> PathBuf {
    PathBuf::from(env!("FLUID_GUEST_WASM_DIR"))
}

fn digest(bytes: &[u8]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    format!("{}-{:016x}", bytes.len(), h.finish())
}

/// Writes the bundled plugins into `dir` as described above; returns the files written.
pub fn seed(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let marker = dir.join(".bundled");
    let mut seeded: BTreeMap<String, String> =
        std::fs::read_to_string(&marker).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default();
    let mut written = Vec::new();
    for (file, bytes) in BUNDLED {
        let path = dir.join(file);
        let want = digest(bytes);
        let on_disk = std::fs::read(&path).ok().map(|b| digest(&b));
        let write = match (&on_disk, seeded.get(file)) {
            (None, None) => true,                             // never seeded
            (Some(d), Some(prev)) => d == prev && *d != want, // our old copy, untouched
            _ => false,                                       // deleted or replaced by the operator
        };
        if write {
            // Write beside, then rename: the folder never holds a half-written plugin.
            let tmp = dir.join(format!(".{file}.tmp"));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)?;
            written.push(path);
        }
        if write || on_disk.as_deref() == Some(want.as_str()) {
            seeded.insert(file.to_string(), want);
        }
    }
    std::fs::write(&marker, serde_json::to_string_pretty(&seeded).unwrap_or_default())?;
    Ok(written)
}
