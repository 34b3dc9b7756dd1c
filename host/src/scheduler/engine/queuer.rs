//! The queuer: group commit for runs queued one at a time (`Scheduler::queue`, from HTTP
//! requests, tasks and plugins). The first request waiting is written at once; those that
//! arrive while a commit is under way are written together in the next one. So a lone
//! request waits for no one, and many at once share commits instead of each paying one.

use super::*;

/// A run to write, and where to say whether it was.
pub(super) type QueueRequest = (TaskRun, oneshot::Sender<Result<(), StoreError>>);

/// Requests that may wait for the queuer; past it, callers wait to send.
pub(super) const QUEUE_DEPTH: usize = 4096;

impl Scheduler {
    /// The queuer's inbox, started on first use. It holds the scheduler weakly, so it ends
    /// with the last handle, or at shutdown once every execution has ended.
    pub(super) fn queuer(&self) -> &mpsc::Sender<QueueRequest> {
        self.inner.queuer.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
            let (weak, stop) = (Arc::downgrade(&self.inner), self.inner.stop_background.clone());
            self.inner.background.spawn(queuer_loop(weak, stop, rx));
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

async fn queuer_loop(inner: std::sync::Weak<Inner>, stop: CancellationToken, mut rx: mpsc::Receiver<QueueRequest>) {
    loop {
        let first = tokio::select! {
            r = rx.recv() => r,
            _ = stop.cancelled() => None,
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
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
