//! What the roles' unit tests share: a scheduler on a fresh SQLite file (removed when the
//! test ends), with one trivial task `t`, and the store's commit counts.

use super::*;

/// A scheduler on a fresh SQLite file, not started; its folder goes when this is dropped.
pub(super) struct Fixture {
    pub scheduler: Scheduler,
    dir: std::path::PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Fixture {
    pub async fn new(config: SchedulerConfig) -> Fixture {
        let dir = std::env::temp_dir().join(format!("fluid-engine-{}", uuid::Uuid::new_v4().simple()));
        let store = Store::open_sqlite(&dir).await.expect("a fresh SQLite store");
        let scheduler = Scheduler::new(store, SchedulerConfig { run_schedules: false, ..config });
        scheduler.register(Task::new("t").run(|_| async { Ok(()) })).expect("task t");
        Fixture { scheduler, dir }
    }

    /// Queues `n` runs of `t` one request at a time.
    pub async fn queue(&self, n: usize) -> Vec<TaskRun> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.scheduler.queue("t", serde_json::json!({}), QueueOptions::default()).await.expect("queued"));
        }
        out
    }

    /// Transactions of store operation `op` committed so far, from the host's metrics.
    pub fn commits(&self, op: &str) -> u64 {
        let prefix = format!("fluid_store_operation_duration_seconds_count{{op=\"{op}\"}} ");
        self.scheduler.metrics().encode().lines().find_map(|l| l.strip_prefix(&prefix).and_then(|n| n.trim().parse().ok())).unwrap_or(0)
    }
}
