//! Runs claimed ahead: the completer reserves the next due runs in the commit that records
//! ends, and a worker that frees starts the next reservation at once, without waiting for
//! a commit; the start is recorded in the next one, beside the ends. So one commit carries
//! as many runs as ended since the last, not at most one per worker.
//!
//! A reservation stays `queued` in the store (no event), owned by this host under a new
//! lease, so no other host claims it and it never looks running. Only runs of tasks
//! without a concurrency limit or a share of workers are reserved (the store's rule), so
//! both limits stay exact. The rules for the rest:
//! - priority: reservations start in claim order, highest priority first; a run queued
//!   later at a higher priority waits behind this host's reservations at most;
//! - reservations stop at the first run they may not take (a limited or shared task's),
//!   so such a run waits for this host's reservations at most, then a freed worker
//!   claims it;
//! - the buffer follows the pace of ends: a cycle reserves no more runs than it saw end,
//!   so slow tasks keep it small; a reservation not started within `reserve_for` is
//!   released for any host;
//! - a cycle that failed may have committed with its answer lost: the heartbeat then
//!   releases every reservation of this host it neither holds nor started;
//! - cancelling a reserved run aborts it at once; if its host had started it, the host
//!   learns when it records the start (refused) and stops it;
//! - a task disabled after its run was reserved: the start is refused, the run `aborted`;
//! - a host that stops releases its reservations; a dead host's are released by the
//!   rescue, back to `queued` with no `interrupted` (they never started as far as the
//!   store knows). A run started here whose start was not yet committed when the host
//!   died is run again elsewhere: at least once, as graphile-worker's local queue.

use super::*;
use std::time::Instant;

/// This host's reservations, in claim order, with when each was taken.
#[derive(Default)]
pub(super) struct Reserved {
    runs: BTreeMap<(i64, i64, String), (RunRow, Instant)>,
    /// Reservations dropped here (too old, or their task is gone) and not yet released in
    /// the store; the heartbeat releases them.
    dropped: Vec<(String, i64)>,
}

fn key(row: &RunRow) -> (i64, i64, String) {
    (row.run.priority.rank(), row.run.execute_after.map_or(0, |t| t.timestamp_micros()), row.run.id.clone())
}

impl Reserved {
    /// Adds runs reserved by a commit.
    pub fn add(&mut self, rows: Vec<RunRow>) {
        let now = Instant::now();
        for row in rows {
            self.runs.insert(key(&row), (row, now));
        }
    }

    /// How many are held.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    /// The next reservation to start, if one is held and taken within `fresh`; older ones
    /// met on the way are dropped, to be released.
    pub fn next(&mut self, fresh: Duration) -> Option<RunRow> {
        while let Some((_, (row, at))) = self.runs.pop_first() {
            if at.elapsed() <= fresh {
                return Some(row);
            }
            self.dropped.push((row.run.id, row.lease));
        }
        None
    }

    /// Drops the reservation of run `id`, if held (it was cancelled).
    pub fn forget(&mut self, id: &str) -> bool {
        let before = self.runs.len();
        self.runs.retain(|(_, _, held), _| held != id);
        self.runs.len() != before
    }

    /// Drops the reservation `row` (its task is gone): to be released.
    pub fn drop_one(&mut self, row: &RunRow) {
        self.dropped.push((row.run.id.clone(), row.lease));
    }

    /// Every reservation to release now: those dropped, and those held longer than
    /// `fresh` (all of them when `fresh` is zero).
    pub fn take_stale(&mut self, fresh: Duration) -> Vec<(String, i64)> {
        let stale: Vec<(i64, i64, String)> =
            self.runs.iter().filter(|(_, (_, at))| fresh.is_zero() || at.elapsed() > fresh).map(|(k, _)| k.clone()).collect();
        for k in stale {
            if let Some((row, _)) = self.runs.remove(&k) {
                self.dropped.push((row.run.id, row.lease));
            }
        }
        std::mem::take(&mut self.dropped)
    }

    /// The runs held.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.runs.keys().map(|(_, _, id)| id.as_str())
    }

    /// Puts back reservations a release failed to give back (tried again later).
    pub fn release_failed(&mut self, reserved: Vec<(String, i64)>) {
        self.dropped.extend(reserved);
    }
}

impl Scheduler {
    /// Starts held reservations in the slots of `slots`, one each, while both last; returns
    /// the slots left over.
    pub(super) fn start_reserved(&self, mut slots: OwnedSemaphorePermit) -> Option<OwnedSemaphorePermit> {
        let inner = &self.inner;
        if inner.stop_claiming.is_cancelled() {
            return Some(slots);
        }
        let fresh = inner.config.completer.reserve_for;
        while slots.num_permits() > 0 {
            let Some(row) = inner.reserved.lock().unwrap().next(fresh) else { break };
            let Some(task) = self.task(&row.run.task) else {
                inner.reserved.lock().unwrap().drop_one(&row);
                continue;
            };
            let slot = slots.split(1).expect("a permit is left");
            self.begin_reserved(row, task, slot);
        }
        (slots.num_permits() > 0).then_some(slots)
    }

    /// Starts one reserved run now, in `slot`: its start goes to the completer, to be
    /// recorded in its next commit.
    fn begin_reserved(&self, mut row: RunRow, task: Arc<Task>, slot: OwnedSemaphorePermit) {
        let at = now_us();
        row.run.state = TaskState::Running;
        row.run.start = Some(to_datetime(at));
        let begin = Begin { id: row.run.id.clone(), lease: row.lease, at_us: at };
        let this = self.clone();
        let span = tracing::debug_span!(parent: None, "fluid.run", run_id = %row.run.id, task = %row.run.task, attempt = row.run.retry_attempt, state = tracing::field::Empty);
        self.inner.executions.spawn(this.execute(row, task, Some(slot), Some(begin)).instrument(span));
    }

    /// Releases in the store the reservations this host dropped or held too long; after a
    /// cycle whose answer was lost, every reservation of this host it neither holds nor
    /// has started.
    pub(super) async fn release_stale(&self) {
        let inner = &self.inner;
        if inner.answer_lost.swap(false, std::sync::atomic::Ordering::Relaxed) {
            // Exclusively: no cycle reserves between reading what is held and the release.
            let _publish = inner.publish.write().await;
            let mut keep: Vec<String> = inner.reserved.lock().unwrap().ids().map(str::to_string).collect();
            keep.extend(inner.running.lock().unwrap().keys().cloned());
            if let Err(e) = inner.store.release_unheld(&inner.config.host_id, &keep).await {
                tracing::warn!(error = %e, "releasing reservations after a lost answer failed; retrying at the next heartbeat");
                inner.answer_lost.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let stale = inner.reserved.lock().unwrap().take_stale(inner.config.completer.reserve_for);
        if stale.is_empty() {
            return;
        }
        if let Err(e) = inner.store.release(&inner.config.host_id, &stale).await {
            tracing::warn!(error = %e, runs = stale.len(), "releasing reservations failed; retrying at the next heartbeat");
            inner.reserved.lock().unwrap().release_failed(stale);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Fixture;
    use super::*;

    /// One worker: a quick run ends, and the commit recording its end starts a blocked run
    /// and reserves the next. No worker frees for it: past `reserve_for`, the heartbeat
    /// releases it and another host can claim it; at shutdown nothing stays reserved.
    #[tokio::test]
    async fn a_reservation_no_worker_takes_is_released_for_any_host() {
        let completer = CompleterConfig { reserve_for: Duration::from_millis(1), ..Default::default() };
        let f = Fixture::new(SchedulerConfig { completer, workers: 1, ..Default::default() }).await;
        let s = &f.scheduler;
        let gate = Arc::new(tokio::sync::Notify::new());
        let g = gate.clone();
        s.register(Task::new("blocked").run(move |_| {
            let g = g.clone();
            async move {
                g.notified().await;
                Ok(())
            }
        }))
        .unwrap();
        let high = QueueOptions { priority: Some(Priority::High), ..Default::default() };
        let first = s.queue("t", serde_json::json!({}), high).await.unwrap();
        let blocked = s.queue("blocked", serde_json::json!({}), QueueOptions::default()).await.unwrap();
        let next = s.queue("t", serde_json::json!({}), QueueOptions::default()).await.unwrap();
        let mut changes = s.subscribe();
        s.start();
        loop {
            let r = tokio::time::timeout(Duration::from_secs(30), changes.recv()).await.expect("the blocked run starts").unwrap();
            if r.id == blocked.id && r.state == TaskState::Running {
                break;
            }
        }
        assert_eq!(s.get_run(&first.id).await.unwrap().unwrap().state, TaskState::Success);
        assert_eq!(s.inner.reserved.lock().unwrap().len(), 1, "the next run is reserved");
        let rules = s.claim_rules();
        assert!(s.store().claim("other", 10, &rules).await.unwrap().started.is_empty(), "held for this host");

        // Older than `reserve_for` now.
        tokio::time::sleep(Duration::from_millis(2)).await;
        s.heartbeat_once().await.unwrap();
        let taken = s.store().claim("other", 10, &rules).await.unwrap().started;
        let taken: Vec<&str> = taken.iter().map(|r| r.run.id.as_str()).collect();
        assert_eq!(taken, [next.id.as_str()], "released, claimable by any host");
        assert_eq!(s.get_run(&next.id).await.unwrap().unwrap().state, TaskState::Running, "running on the other host");
        gate.notify_one();
        s.shutdown(Duration::from_secs(5)).await;
    }
}
