//! The completer: records runs' ends in batches, each batch in one transaction that also
//! claims the next runs for the worker slots it frees.

use super::*;

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
            if sender.send((finish.clone(), slot.take(), tx)).await.is_err() {
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

    /// Commits finished runs in batches: one transaction for all that are waiting.
    pub(super) async fn finisher_loop(self, mut rx: mpsc::Receiver<FinishRequest>) {
        let mut batch = Vec::with_capacity(256);
        loop {
            tokio::select! {
                n = rx.recv_many(&mut batch, 256) => if n == 0 { return },
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
            for _ in 0..GATHER_YIELDS {
                if batch.len() >= self.running_here() || gathering.elapsed() >= GATHER_FOR {
                    break;
                }
                tokio::task::yield_now().await;
                while batch.len() < 256 {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
            }
            let finishes: Vec<Finish> = batch.iter().map(|(f, _, _)| f.clone()).collect();
            // The slots these ends free, and any free one: runs claimed in the same
            // transaction start in them (unless this host is stopping or never claims; then
            // each slot is freed with its answer).
            let claiming =
                self.inner.config.consume && !self.inner.stop_claiming.is_cancelled() && self.inner.claimer.lock().unwrap().is_some();
            let mut slots: Option<OwnedSemaphorePermit> = None;
            if claiming {
                let free = self.inner.slots.clone().try_acquire_many_owned(self.inner.slots.available_permits() as u32).ok();
                for p in batch.iter_mut().filter_map(|(_, slot, _)| slot.take()).chain(free) {
                    match &mut slots {
                        Some(all) => all.merge(p),
                        None => slots = Some(p),
                    }
                }
            }
            let limit = slots.as_ref().map_or(0, |s| s.num_permits());
            let span = tracing::debug_span!("fluid.finish", runs = finishes.len(), claim = limit);
            // A claim needs the publish lock exclusively (see `publish`); ends alone share it.
            let (shared, exclusive) =
                if limit > 0 { (None, Some(self.inner.publish.write().await)) } else { (Some(self.inner.publish.read().await), None) };
            let rules = self.claim_rules();
            let result = self.inner.store.finish_and_claim(&finishes, &self.inner.config.host_id, limit, &rules).instrument(span).await;
            if let Ok((results, claimed)) = &result {
                self.inner.shares.hold(&rules, &claimed.started);
                // Every state written, in commit order: the ends (a retried run: its end,
                // then `queued` again), then the runs started.
                self.committed(results.iter().filter_map(|r| r.as_ref().ok()).flatten().cloned().chain(claimed.changes()));
            }
            drop((shared, exclusive));
            let (finished, claimed) = match result {
                Ok((f, c)) => (Ok(f), Some(c)),
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
                    for ((_, _, reply), r) in batch.drain(..).zip(results) {
                        // The caller gets the run as it now stands.
                        let current = r.and_then(|written| {
                            written.into_iter().last().ok_or_else(|| StoreError::Other(anyhow::anyhow!("nothing written")))
                        });
                        let _ = reply.send(current);
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    for (_, _, reply) in batch.drain(..) {
                        let _ = reply.send(Err(StoreError::Db(crate::store::DbError::new(msg.clone()))));
                    }
                }
            }
            self.inner.wake.notify_one();
        }
    }
}
