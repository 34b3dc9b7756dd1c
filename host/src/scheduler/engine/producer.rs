//! The producer: claims due runs into this host's free worker slots, honouring priority,
//! concurrency limits and worker shares (the store decides which), and launches them.

use super::*;

/// The producer's config.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// How often it looks for due runs when nothing wakes it (a run queued here, a commit
    /// another host announces, a slot freed wake it at once). Default: 250 ms; a retry or
    /// a delayed run may start this late.
    pub poll: Duration,
    /// On a busy queue, how long a claim may wait for half the workers to be free, so one
    /// transaction starts several runs instead of one each. Default: 2 ms.
    pub gather_slots_for: Duration,
    /// The longest wait between attempts while claiming fails (the database is away);
    /// the wait doubles from 100 ms up to this. Default: 5 s.
    pub max_backoff: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig { poll: Duration::from_millis(250), gather_slots_for: Duration::from_millis(2), max_backoff: Duration::from_secs(5) }
    }
}

impl Scheduler {
    pub(super) async fn claim_loop(self) {
        let inner = &self.inner;
        // Reservations a previous process under this id held are nobody's now.
        if let Err(e) = inner.store.release_all(&inner.config.host_id).await {
            tracing::warn!(error = %e, "could not release this host id's old reservations; the rescue will");
        }
        let mut backoff = Duration::from_millis(100);
        let mut last_full = false;
        loop {
            if inner.stop_claiming.is_cancelled() {
                return;
            }
            let mut free = inner.slots.available_permits();
            // Free workers take held reservations first: they were claimed already.
            if free > 0 && inner.reserved.lock().unwrap().len() > 0 {
                if let Ok(held) = inner.slots.clone().try_acquire_many_owned(free as u32) {
                    drop(self.start_reserved(held));
                }
                free = inner.slots.available_permits();
            }
            if free == 0 {
                tokio::select! {
                    p = inner.slots.acquire() => drop(p),
                    _ = inner.stop_claiming.cancelled() => return,
                }
                continue;
            }
            let half = (inner.config.workers / 2).max(1);
            if last_full && free < half {
                // A busy queue: wait a moment for more slots to free up, so that one claim
                // transaction starts several runs instead of one each.
                if let Ok(Ok(p)) = tokio::time::timeout(inner.config.producer.gather_slots_for, inner.slots.acquire_many(half as u32)).await
                {
                    drop(p);
                }
                free = inner.slots.available_permits();
            }
            // The slots are taken before the claim: the finisher also claims (into the slots
            // its finished runs free), so what is free now may not be free after the commit.
            if free == 0 {
                continue;
            }
            let Ok(held) = inner.slots.clone().try_acquire_many_owned(free as u32) else { continue };
            let publish = inner.publish.write().await;
            let rules = self.claim_rules();
            let span = tracing::debug_span!("fluid.claim", slots = free, claimed = tracing::field::Empty);
            let claimed = inner.store.claim(&inner.config.host_id, free, &rules).instrument(span.clone()).await;
            if let Ok(c) = &claimed {
                span.record("claimed", c.started.len());
            }
            drop(span);
            let claimed = match claimed {
                Ok(c) => {
                    inner.shares.hold(&rules, &c.started);
                    backoff = Duration::from_millis(100);
                    c
                }
                Err(e) => {
                    drop(publish);
                    tracing::error!(error = %e, "claiming runs failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = inner.stop_claiming.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(inner.config.producer.max_backoff);
                    continue;
                }
            };
            let full = claimed.started.len() == free;
            last_full = full;
            let busy = full || !claimed.ended.is_empty();
            if !claimed.started.is_empty() || !claimed.ended.is_empty() {
                self.committed(claimed.ended.iter().cloned().chain(claimed.started.iter().map(|r| r.run.clone())));
            }
            drop(publish);
            self.launch(claimed, held);
            if busy {
                continue;
            }
            tokio::select! {
                _ = inner.wake.notified() => {}
                _ = tokio::time::sleep(inner.config.producer.poll) => {}
                _ = inner.stop_claiming.cancelled() => return,
            }
        }
    }

    /// Starts the executions of a claim, one slot of `slots` each (it holds at least as many
    /// as the claim started); the slots left over start held reservations, or are released.
    pub(super) fn launch(&self, claimed: Claimed, mut slots: OwnedSemaphorePermit) {
        let inner = &self.inner;
        for run in &claimed.ended {
            tracing::info!(run = %run.id, task = %run.task, state = %run.state, error = run.error.as_deref().unwrap_or(""), "run ended without executing");
        }
        for row in claimed.started {
            let Some(task) = self.task(&row.run.task) else {
                // Unregistered since the claim began (a task component was unloaded):
                // record an end rather than leave the run `running` on a live host.
                inner.shares.release(&row.run.id);
                let this = self.clone();
                let outcome = Outcome::Interrupted(format!("task {} is no longer registered", row.run.task));
                let finish = Finish { id: row.run.id.clone(), lease: row.lease, outcome, retry_after: None };
                inner.executions.spawn(async move {
                    if let Err(e) = this.record_finish(finish, None).await {
                        tracing::error!(run = %row.run.id, error = %e, "could not record the end of a run");
                    }
                });
                continue;
            };
            let permit = slots.split(1).expect("claimed no more runs than slots held");
            let this = self.clone();
            // Each run is a trace of its own, not a child of the claim that started it.
            let span = tracing::debug_span!(parent: None, "fluid.run", run_id = %row.run.id, task = %row.run.task, attempt = row.run.retry_attempt, state = tracing::field::Empty);
            inner.executions.spawn(this.execute(row, task, Some(permit), None).instrument(span));
        }
        if slots.num_permits() > 0 {
            drop(self.start_reserved(slots));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Fixture;
    use super::*;

    /// A run written to the store behind the scheduler's back (nothing wakes the producer,
    /// as on SQLite when another process queues) is still claimed and run: on the next poll.
    #[tokio::test]
    async fn claims_what_nothing_announced_on_its_next_poll() {
        let producer = ProducerConfig { poll: Duration::from_millis(20), ..Default::default() };
        let f = Fixture::new(SchedulerConfig { producer, ..Default::default() }).await;
        let s = &f.scheduler;
        let mut changes = s.subscribe();
        s.start();
        let run = s.new_run("t", serde_json::json!({}), &QueueOptions::default()).unwrap();
        s.store().insert_runs(std::slice::from_ref(&run)).await.unwrap();
        let done = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                match changes.recv().await {
                    Ok(r) if r.id == run.id && r.state == TaskState::Success => return,
                    Ok(_) => {}
                    Err(e) => panic!("change broadcast: {e}"),
                }
            }
        });
        done.await.expect("the run to be claimed and to succeed");
        s.shutdown(Duration::from_secs(1)).await;
    }
}
