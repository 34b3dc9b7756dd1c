//! The completer: records runs' ends in batches, each batch in one transaction that also
//! claims the next runs for the worker slots it frees.

use super::*;

/// The completer's config.
#[derive(Debug, Clone)]
pub struct CompleterConfig {
    /// Ends committed in one transaction at most. Default: 256.
    pub max_batch: usize,
    /// Ends that may wait for the completer; past it, executions wait to hand theirs in.
    /// Default: 4,096.
    pub inbox: usize,
    /// How many times it yields to executions about to end before it commits the ends it
    /// has, and for how long at most. On an idle worker a yield costs well under a
    /// microsecond, but behind busy tasks (a task component computing for a whole epoch
    /// tick) one yield can wait milliseconds, and the ends in hand must not. Defaults: 8
    /// yields, 1 ms.
    pub gather_yields: usize,
    /// See `gather_yields`.
    pub gather_for: Duration,
    /// Most runs held reserved at once (claimed ahead for the next free workers, see
    /// `reserved`); 0 turns claiming ahead off. A cycle reserves at most as many as it
    /// saw end or start, so the buffer follows the pace of ends, and only runs that end
    /// many to a commit fill it. Default: 256 (measured against 64 and 128, see
    /// docs/performance.md).
    pub reserve_ahead: usize,
    /// How long a reservation may wait for a free worker before it is released for any
    /// host (the heartbeat releases it): the longest a run queued later at a higher
    /// priority waits behind it, beside the heartbeat's interval. Default: 1 s.
    pub reserve_for: Duration,
}

impl Default for CompleterConfig {
    fn default() -> Self {
        CompleterConfig {
            max_batch: 256,
            inbox: 4096,
            gather_yields: 8,
            gather_for: Duration::from_millis(1),
            reserve_ahead: 256,
            reserve_for: Duration::from_secs(1),
        }
    }
}

impl Scheduler {
    /// Sends a finish to the batching writer; retries while the database is unreachable
    /// so an end is not lost to a passing outage.
    pub(super) async fn record_finish(&self, finish: Finish, mut slot: Option<OwnedSemaphorePermit>) -> Result<TaskRun, StoreError> {
        let Some(sender) = self.inner.finisher.get() else {
            return Err(StoreError::Other(anyhow::anyhow!("scheduler not started")));
        };
        let mut backoff = Duration::from_millis(100);
        loop {
            let (tx, rx) = oneshot::channel();
            // The slot goes with the first attempt only: if that commit fails the slot is
            // freed, and the run waits to record its end without holding a worker.
            if sender.send(Request::Finish((finish.clone(), slot.take(), tx))).await.is_err() {
                return Err(StoreError::Other(anyhow::anyhow!("finisher stopped")));
            }
            match rx.await {
                Ok(Err(StoreError::Db(e))) => {
                    tracing::error!(run = %finish.id, error = %e, "recording a run's end failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Ok(r) => return r,
                Err(_) => return Err(StoreError::Other(anyhow::anyhow!("finisher stopped"))),
            }
        }
    }

    /// Commits finished runs in batches: one transaction for all that are waiting, with the
    /// starts of reserved runs, the claim into the slots they free and the next reservations.
    pub(super) async fn finisher_loop(self, mut rx: mpsc::Receiver<Request>) {
        let config = self.inner.config.completer.clone();
        let mut batch = Vec::with_capacity(config.max_batch);
        // Starts whose commit failed: recorded with the next one.
        let mut begins: Vec<Begin> = Vec::new();
        loop {
            tokio::select! {
                n = rx.recv_many(&mut batch, config.max_batch) => if n == 0 { return },
                _ = self.inner.stop_background.cancelled() => {
                    if rx.is_empty() { return }
                    continue;
                }
            }
            // Ends right behind these ones join the batch. The runs the last cycle started
            // are often about to end: a few yields let them, and one commit then records
            // their ends and fills all their slots. Without this, trivial runs settled into
            // two halves taking turns, and 8 workers started 4 runs a commit.
            let gathering = std::time::Instant::now();
            let ends_in = |batch: &Vec<Request>| batch.iter().filter(|r| matches!(r, Request::Finish(_))).count();
            for _ in 0..config.gather_yields {
                if ends_in(&batch) >= self.running_here() || gathering.elapsed() >= config.gather_for {
                    break;
                }
                tokio::task::yield_now().await;
                while batch.len() < config.max_batch {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
            }
            let mut ends: Vec<FinishRequest> = Vec::with_capacity(batch.len());
            for request in batch.drain(..) {
                match request {
                    Request::Finish(f) => ends.push(f),
                    Request::Begin(b) => begins.push(b),
                }
            }
            let finishes: Vec<Finish> = ends.iter().map(|(f, _, _)| f.clone()).collect();
            // The slots these ends free, and any free one: runs claimed in the same
            // transaction start in them (unless this host is stopping or never claims; then
            // each slot is freed with its answer).
            let claiming =
                self.inner.config.consume && !self.inner.stop_claiming.is_cancelled() && self.inner.claimer.lock().unwrap().is_some();
            let mut slots: Option<OwnedSemaphorePermit> = None;
            if claiming {
                let free = self.inner.slots.clone().try_acquire_many_owned(self.inner.slots.available_permits() as u32).ok();
                for p in ends.iter_mut().filter_map(|(_, slot, _)| slot.take()).chain(free) {
                    match &mut slots {
                        Some(all) => all.merge(p),
                        None => slots = Some(p),
                    }
                }
            }
            // Held reservations come first: they were claimed before anything this claim
            // would take, so priority order holds.
            let slots = slots.and_then(|s| self.start_reserved(s));
            let limit = slots.as_ref().map_or(0, |s| s.num_permits());
            // As many reservations as runs this cycle saw end, up to the cap: slow runs
            // keep the buffer small.
            let ahead = if claiming {
                let held = self.inner.reserved.lock().unwrap().len();
                config.reserve_ahead.saturating_sub(held).min(finishes.len())
            } else {
                0
            };
            let span = tracing::debug_span!("fluid.finish", runs = finishes.len(), begun = begins.len(), claim = limit, ahead);
            // A claim needs the publish lock exclusively (see `publish`); ends alone share it.
            let (shared, exclusive) = if limit + ahead > 0 {
                (None, Some(self.inner.publish.write().await))
            } else {
                (Some(self.inner.publish.read().await), None)
            };
            let rules = self.claim_rules();
            let cycle = Cycle { host: &self.inner.config.host_id, begins: &begins, finishes: &finishes, limit, ahead, rules: &rules };
            let result = self.inner.store.cycle(&cycle).instrument(span).await;
            let result = result.map(|mut done| {
                self.inner.shares.hold(&rules, &done.claimed.started);
                // Every state written, in commit order: starts, ends (a retried run: its
                // end, then `queued` again), then the runs claimed.
                self.committed(std::mem::take(&mut done.written));
                // Held before the publish lock goes, so the sweep below never takes them
                // for reservations whose answer was lost.
                self.inner.reserved.lock().unwrap().add(std::mem::take(&mut done.claimed.reserved));
                done
            });
            if result.is_err() {
                // The commit may have happened with its answer lost: reservations it made
                // are held by no one here. The heartbeat releases them.
                self.inner.answer_lost.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            drop((shared, exclusive));
            let (finished, claimed) = match result {
                Ok(done) => {
                    for (b, r) in begins.drain(..).zip(done.begun) {
                        if let Err(e) = r {
                            tracing::info!(run = %b.id, error = %e, "a reserved run moved on before its start was recorded: stopping it");
                            self.stop_local(&b.id, Outcome::Aborted(e.to_string()));
                        }
                    }
                    (Ok(done.finished), Some(done.claimed))
                }
                Err(e) => (Err(e), None),
            };
            // Start the claimed runs before answering: the executions waiting for these
            // answers keep the tracker non-empty, so a shutdown waiting on it cannot miss them.
            match (claimed, slots) {
                (Some(claimed), Some(slots)) => self.launch(claimed, slots),
                (_, slots) => drop(slots),
            }
            match finished {
                Ok(results) => {
                    for ((_, _, reply), r) in ends.drain(..).zip(results) {
                        // The caller gets the run as it now stands.
                        let current = r.and_then(|written| {
                            written.into_iter().last().ok_or_else(|| StoreError::Other(anyhow::anyhow!("nothing written")))
                        });
                        let _ = reply.send(current);
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    for (_, _, reply) in ends.drain(..) {
                        let _ = reply.send(Err(StoreError::Db(crate::store::DbError::new(msg.clone()))));
                    }
                }
            }
            self.inner.wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Fixture;
    use super::*;

    /// Ends handed in together are recorded together, at most `max_batch` a transaction,
    /// each answered with its run as recorded.
    #[tokio::test]
    async fn ends_arriving_together_share_commits_of_at_most_max_batch() {
        let completer = CompleterConfig { max_batch: 4, ..Default::default() };
        let f = Fixture::new(SchedulerConfig { completer, workers: 16, consume: false, ..Default::default() }).await;
        let s = &f.scheduler;
        f.queue(16).await;
        let claimed = s.store().claim(&s.config().host_id, 16, &s.claim_rules()).await.unwrap().started;
        assert_eq!(claimed.len(), 16);
        s.start_finisher_only();
        let mut set = tokio::task::JoinSet::new();
        for row in claimed {
            let s = s.clone();
            let finish = Finish { id: row.run.id, lease: row.lease, outcome: Outcome::Success, retry_after: None };
            set.spawn(async move { s.record_finish(finish, None).await.unwrap() });
        }
        while let Some(run) = set.join_next().await {
            assert_eq!(run.unwrap().state, TaskState::Success);
        }
        let commits = f.commits("finish_and_claim");
        assert!((4..16).contains(&commits), "16 ends in {commits} commits: shared, and at most 4 a commit");
    }

    /// Trivial runs on two workers: each freed worker starts a reserved run at once, and
    /// one commit records the starts and ends of many, not two at most. Reserving off, the
    /// same runs take about one commit per two.
    #[tokio::test]
    async fn reserved_runs_share_commits_beyond_the_worker_count() {
        for (ahead, fewer_than) in [(64, 100), (0, usize::MAX)] {
            let completer = CompleterConfig { reserve_ahead: ahead, ..Default::default() };
            let f = Fixture::new(SchedulerConfig { completer, workers: 2, ..Default::default() }).await;
            let s = &f.scheduler;
            let runs = f.queue(400).await;
            let mut changes = s.subscribe();
            s.start();
            let mut done = 0;
            while done < runs.len() {
                match tokio::time::timeout(Duration::from_secs(60), changes.recv()).await.expect("runs keep ending") {
                    Ok(r) if r.state == TaskState::Success => done += 1,
                    Ok(_) => {}
                    Err(e) => panic!("change broadcast: {e}"),
                }
            }
            let commits = f.commits("finish_and_claim") as usize;
            if ahead == 0 {
                assert!(commits >= 150, "without reservations 400 runs on 2 workers took {commits} commits");
            } else {
                assert!(commits < fewer_than, "400 runs on 2 workers in {commits} commits");
            }
            s.shutdown(Duration::from_secs(1)).await;
        }
    }
}
