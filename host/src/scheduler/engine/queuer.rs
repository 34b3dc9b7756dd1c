//! The queuer: group commit for runs queued one at a time (`Scheduler::queue`, from HTTP
//! requests, tasks and plugins). The first request waiting is written at once; those that
//! arrive while a commit is under way are written together in the next one. So a lone
//! request waits for no one, and many at once share commits instead of each paying one.

use super::*;

/// A run to write, and where to say whether it was.
pub(super) type QueueRequest = (TaskRun, oneshot::Sender<Result<(), StoreError>>);

/// The queuer's config.
#[derive(Debug, Clone)]
pub struct QueuerConfig {
    /// Requests that may wait for the queuer; past it, callers wait to send. Default: 4,096.
    pub depth: usize,
    /// Runs written in one commit at most. Default: [`MAX_BATCH`], as a batch request.
    pub max_batch: usize,
}

impl Default for QueuerConfig {
    fn default() -> Self {
        QueuerConfig { depth: 4096, max_batch: MAX_BATCH }
    }
}

impl Scheduler {
    /// The queuer's inbox, started on first use. It holds the scheduler weakly, so it ends
    /// with the last handle, or at shutdown once every execution has ended.
    pub(super) fn queuer(&self) -> &mpsc::Sender<QueueRequest> {
        self.inner.queuer.get_or_init(|| {
            let config = &self.inner.config.queuer;
            let (tx, rx) = mpsc::channel(config.depth.max(1));
            let (weak, stop) = (Arc::downgrade(&self.inner), self.inner.stop_background.clone());
            self.inner.background.spawn(queuer_loop(weak, stop, rx, config.max_batch.max(1)));
            tx
        })
    }

    /// Writes `runs` in one transaction, broadcast in that order.
    pub(super) async fn insert_now(&self, runs: &[TaskRun]) -> Result<(), StoreError> {
        let publish = self.inner.publish.read().await;
        self.inner.store.insert_runs(runs).await?;
        self.committed(runs.iter().cloned());
        drop(publish);
        self.inner.wake.notify_one();
        Ok(())
    }
}

async fn queuer_loop(inner: std::sync::Weak<Inner>, stop: CancellationToken, mut rx: mpsc::Receiver<QueueRequest>, max_batch: usize) {
    loop {
        let first = tokio::select! {
            r = rx.recv() => r,
            _ = stop.cancelled() => None,
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let Some(inner) = inner.upgrade() else { break };
        let scheduler = Scheduler { inner };
        let runs: Vec<TaskRun> = batch.iter().map(|(r, _)| r.clone()).collect();
        match scheduler.insert_now(&runs).await {
            Ok(()) => {
                for (_, reply) in batch {
                    let _ = reply.send(Ok(()));
                }
            }
            // One by one, so each caller hears of its own run, and one bad row (say, an
            // id already stored) does not refuse the others.
            Err(_) if batch.len() > 1 => {
                for (run, reply) in batch {
                    let _ = reply.send(scheduler.insert_now(std::slice::from_ref(&run)).await);
                }
            }
            Err(e) => {
                if let Some((_, reply)) = batch.pop() {
                    let _ = reply.send(Err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Fixture;
    use super::*;

    /// Runs queued one at a time but at once share commits, at most `max_batch` a commit,
    /// and each caller gets its own run.
    #[tokio::test]
    async fn requests_arriving_together_share_commits_of_at_most_max_batch() {
        let queuer = QueuerConfig { max_batch: 4, ..Default::default() };
        let f = Fixture::new(SchedulerConfig { queuer, consume: false, ..Default::default() }).await;
        let mut set = tokio::task::JoinSet::new();
        for i in 0..20 {
            let s = f.scheduler.clone();
            set.spawn(async move { s.queue("t", serde_json::json!({ "i": i }), QueueOptions::default()).await.unwrap() });
        }
        let mut ids = std::collections::BTreeSet::new();
        while let Some(run) = set.join_next().await {
            ids.insert(run.unwrap().id);
        }
        assert_eq!(ids.len(), 20);
        assert_eq!(f.scheduler.store().count_runs("t", TaskState::Queued).await.unwrap(), 20);
        let commits = f.commits("insert_runs");
        assert!((5..20).contains(&commits), "20 runs in {commits} commits: shared, and at most 4 a commit");
    }
}
