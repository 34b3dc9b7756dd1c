//! Figures read off the store as a whole: what the databases weigh, and how long the runs
//! of a task waited to start. `fluid bench` reads them after a workload; an operator's
//! tooling can too. Each is one read, outside any write transaction.

use super::{Store, StoreError, query};
use crate::types::TaskState;

impl Store {
    /// Bytes the databases take: on SQLite the pages of the queue's file and of the
    /// plugins' file (not the write-ahead log, which is folded back in and reused), on
    /// PostgreSQL the size of the database.
    pub async fn database_bytes(&self) -> Result<u64, StoreError> {
        async fn size(s: &Store) -> Result<u64, StoreError> {
            let row = query(s.backend.database_size()).fetch_one(&mut s.read().await?).await?;
            Ok(row.try_get::<i64, _>("n")? as u64)
        }
        let own = size(self).await?;
        if !self.backend.plugin_tables_apart() {
            return Ok(own);
        }
        // The plugins' file through a store of its own, closed after.
        let plugins = self.plugin_store().await?;
        let total = own + size(&plugins).await?;
        plugins.close().await;
        Ok(total)
    }

    /// How many runs of `task` are in `state` now.
    pub async fn count_runs(&self, task: &str, state: TaskState) -> Result<u64, StoreError> {
        let row = query("SELECT COUNT(*) AS n FROM fluid_runs WHERE task = $1 AND state = $2")
            .bind(task)
            .bind(state.as_str())
            .fetch_one(&mut self.read().await?)
            .await?;
        Ok(row.try_get::<i64, _>("n")? as u64)
    }

    /// For every run of `task` that started: how long it waited from queued to started,
    /// in microseconds, shortest first.
    pub async fn start_delays_us(&self, task: &str) -> Result<Vec<i64>, StoreError> {
        let rows = query("SELECT start_at - queued_at AS wait FROM fluid_runs WHERE task = $1 AND start_at IS NOT NULL")
            .bind(task)
            .fetch_all(&mut self.read().await?)
            .await?;
        let mut waits: Vec<i64> = rows.iter().filter_map(|r| r.try_get::<i64, _>("wait").ok()).collect();
        waits.sort_unstable();
        Ok(waits)
    }
}
