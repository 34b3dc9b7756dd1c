//! The loaded set: the plugins loaded by name, the task components by file, and the files
//! that failed to load with why. The loader writes it; calls, routes, the watcher and
//! `/plugins` read it.

use crate::plugins::engine::policy::Policy;
use crate::plugins::instance::actor::Actor;
use crate::plugins::instance::supervisor::{Health, Supervisor};
use crate::plugins::services::routes::PluginRoute;
use crate::scheduler::TaskState;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

/// What is loaded now, and what failed to.
#[derive(Default)]
pub(crate) struct LoadedSet {
    pub(crate) plugins: RwLock<BTreeMap<String, Arc<Loaded>>>,
    /// Task components by file, with the tasks each registered.
    pub(crate) task_components: RwLock<BTreeMap<PathBuf, Arc<TaskComponent>>>,
    pub(crate) failed: RwLock<BTreeMap<PathBuf, Failed>>,
}

impl LoadedSet {
    pub(crate) fn has_plugin(&self, name: &str) -> bool {
        self.plugins.read().unwrap().contains_key(name)
    }

    pub(crate) fn plugin(&self, name: &str) -> Option<Arc<Loaded>> {
        self.plugins.read().unwrap().get(name).cloned()
    }

    /// Every loaded plugin, in name order.
    pub(crate) fn plugins(&self) -> Vec<Arc<Loaded>> {
        self.plugins.read().unwrap().values().cloned().collect()
    }
}

/// A loaded plugin.
pub struct Loaded {
    /// Its name: the stem of its file, which its `register` returned.
    pub name: String,
    /// The version its `register` returned.
    pub version: String,
    /// The file it was loaded from.
    pub file: PathBuf,
    /// SHA-256 of the file's bytes.
    pub sha256: String,
    pub(crate) stamp: FileStamp,
    /// The run states (and tags) whose events it is delivered.
    pub subscriptions: Vec<(TaskState, String)>,
    /// The HTTP routes it serves.
    pub routes: Vec<PluginRoute>,
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

    /// The limits, grants and config it was loaded with.
    pub fn policy(&self) -> &Policy {
        &self.sup.policy
    }

    /// Whether it is delivered the events of runs entering `state`.
    pub fn subscribed(&self, state: TaskState) -> bool {
        self.subscriptions.iter().any(|(s, _)| *s == state)
    }
}

/// A loaded task component: its file and the tasks it registered.
pub(crate) struct TaskComponent {
    pub(crate) file: PathBuf,
    pub(crate) sha256: String,
    pub(crate) stamp: FileStamp,
    pub(crate) tasks: Vec<String>,
    /// The world and contract version it was built against.
    pub(crate) world: String,
    /// Its counters (CPU time, limits hit), shared by all its runs.
    pub(crate) sup: Arc<Supervisor>,
}

/// Size and modification time of a file: how the watcher tells a file changed, and that a
/// file being written has settled (the same stamp on two scans in a row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    pub(crate) len: u64,
    pub(crate) modified: Option<SystemTime>,
}

impl FileStamp {
    pub(crate) fn of(path: &Path) -> Option<FileStamp> {
        let m = std::fs::metadata(path).ok()?;
        m.is_file().then(|| FileStamp { len: m.len(), modified: m.modified().ok() })
    }
}

/// A file that failed to load, and the stamp it had then (not retried until it changes,
/// unless the database was the cause).
#[derive(Debug, Clone)]
pub(crate) struct Failed {
    pub(crate) reason: String,
    pub(crate) stamp: Option<FileStamp>,
    /// When the database was busy (another plugin holding it while this one registered):
    /// the loads that failed so in a row, and when the next may be tried. The host's own
    /// finding, never read from the reason, which holds the guest's words.
    pub(crate) busy: Option<(u32, std::time::Instant)>,
}

impl Failed {
    /// A failure of the file at `stamp`; `busy`: the database was the cause, after
    /// `before` (the file's previous failure, if any).
    pub(crate) fn new(reason: String, stamp: Option<FileStamp>, busy: bool, before: Option<&Failed>) -> Failed {
        let busy = busy.then(|| {
            let tries = before.filter(|b| b.stamp == stamp).and_then(|b| b.busy).map_or(1, |(n, _)| n.saturating_add(1));
            // Half a second, doubling, at most a minute: a plugin holding the database
            // keeps another waiting at most that long, and cannot make it reload at every scan.
            let wait = std::time::Duration::from_millis(500)
                .saturating_mul(1 << tries.min(8).saturating_sub(1))
                .min(std::time::Duration::from_secs(60));
            (tries, std::time::Instant::now() + wait)
        });
        Failed { reason, stamp, busy }
    }

    /// Whether the file, now at `stamp`, is left alone by a scan at `now`: it failed as it
    /// is, and not because the database was busy, or not long enough ago. A busy failure is
    /// retried, or a plugin holding the database at start would keep another (the db
    /// plugin) unloaded for good.
    pub(crate) fn stands(&self, stamp: &FileStamp, now: std::time::Instant) -> bool {
        self.stamp.as_ref() == Some(stamp) && self.busy.is_none_or(|(_, at)| now < at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_failed_load_is_retried_when_the_file_changed_or_after_a_busy_database_backing_off() {
        let stamp = FileStamp { len: 1, modified: None };
        let now = Instant::now();
        let failed = Failed::new("p.wasm: register refused".into(), Some(stamp), false, None);
        assert!(failed.stands(&stamp, now));
        assert!(!failed.stands(&FileStamp { len: 2, modified: None }, now));
        let busy = Failed::new("p.wasm: busy".into(), Some(stamp), true, None);
        assert!(busy.stands(&stamp, now) && !busy.stands(&stamp, now + Duration::from_millis(600)));
        // Each busy failure in a row waits twice as long, up to a minute.
        let mut last = busy;
        for _ in 0..10 {
            last = Failed::new("p.wasm: busy".into(), Some(stamp), true, Some(&last));
        }
        let (tries, at) = last.busy.unwrap();
        assert_eq!(tries, 11);
        assert!(at > now + Duration::from_secs(59) && at <= Instant::now() + Duration::from_secs(60));
        // A failure of its own ends the back-off: the file stands until it changes.
        let own = Failed::new("p.wasm: register refused".into(), Some(stamp), false, Some(&last));
        assert!(own.stands(&stamp, now + Duration::from_secs(3600)));
    }
}
