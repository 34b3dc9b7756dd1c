//! Maintenance: pruning finished runs. `fluid_runs` is the queue and each run's current
//! state; once a run has ended, its record for the long term is the db plugin's history,
//! so the queue keeps finished runs for `keep_for` (`GET /task-runs/{id}` answers for them
//! that long) and drops them after, in batches, so the queue's disk stays bounded.

use super::*;

/// The run pruner's config.
#[derive(Debug, Clone)]
pub struct RunPrunerConfig {
    /// How long a finished run is kept after its end; None keeps every run for ever.
    /// Default: 7 days.
    pub keep_for: Option<Duration>,
    /// How often it prunes. Default: 60 s.
    pub interval: Duration,
    /// Runs deleted per transaction, so a large backlog never holds the writer long.
    /// Default: 5,000.
    pub batch: usize,
}

impl Default for RunPrunerConfig {
    fn default() -> Self {
        RunPrunerConfig { keep_for: Some(Duration::from_secs(7 * 24 * 3600)), interval: Duration::from_secs(60), batch: 5_000 }
    }
}

impl Scheduler {
    pub(super) async fn run_pruner_loop(self) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.inner.config.run_pruner.interval) => {}
                _ = self.inner.stop_background.cancelled() => return,
            }
            match self.prune_runs_once().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(runs = n, "finished runs pruned"),
                Err(e) => tracing::warn!(error = %e, "pruning finished runs failed"),
            }
        }
    }

    /// One pruning: drops the runs that ended more than `keep_for` ago, a batch per
    /// transaction. Returns how many were dropped.
    pub(crate) async fn prune_runs_once(&self) -> Result<u64, StoreError> {
        let config = &self.inner.config.run_pruner;
        let Some(keep_for) = config.keep_for else { return Ok(0) };
        let before = now_us() - keep_for.as_micros() as i64;
        let batch = config.batch.max(1);
        let mut total = 0;
        loop {
            let n = self.inner.store.prune_runs(before, batch).await?;
            total += n;
            if (n as usize) < batch || self.inner.stop_background.is_cancelled() {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Fixture;
    use super::*;

    /// Runs that ended before the cut are dropped, in batches; runs that ended since, and
    /// queued or running ones however old, stay.
    #[tokio::test]
    async fn drops_runs_ended_before_keep_for_and_nothing_else() {
        let run_pruner = RunPrunerConfig { keep_for: Some(Duration::from_secs(3600)), batch: 2, ..Default::default() };
        let f = Fixture::new(SchedulerConfig { run_pruner, consume: false, ..Default::default() }).await;
        let (s, store) = (&f.scheduler, f.scheduler.store());
        let long_ago = to_datetime(now_us() - 2 * 3600 * 1_000_000);
        let ended = |state: TaskState, end| {
            let mut r = TaskRun::queued(TaskRun::new_id(), "t", long_ago);
            (r.state, r.start, r.end) = (state, Some(long_ago), Some(end));
            r
        };
        let old: Vec<TaskRun> =
            [TaskState::Success, TaskState::Failure, TaskState::Aborted, TaskState::Interrupted, TaskState::RateLimited]
                .into_iter()
                .map(|st| ended(st, long_ago))
                .collect();
        let recent = ended(TaskState::Success, to_datetime(now_us()));
        let queued = TaskRun::queued(TaskRun::new_id(), "t", long_ago);
        let mut running = TaskRun::queued(TaskRun::new_id(), "t", long_ago);
        (running.state, running.start) = (TaskState::Running, Some(long_ago));
        let all: Vec<TaskRun> = old.iter().cloned().chain([recent.clone(), queued.clone(), running.clone()]).collect();
        store.insert_runs(&all).await.unwrap();

        assert_eq!(s.prune_runs_once().await.unwrap(), 5, "the five old ends, two a transaction");
        for r in &old {
            assert!(store.get_run(&r.id).await.unwrap().is_none(), "{} ended long ago", r.state);
        }
        for r in [&recent, &queued, &running] {
            assert!(store.get_run(&r.id).await.unwrap().is_some(), "{} stays", r.state);
        }
        assert_eq!(s.prune_runs_once().await.unwrap(), 0);
    }
}
