//! The executor: runs one claimed run (its task's code, under its timeout and its
//! cancellation), and turns how it ended into the finish the completer records.

use super::*;

impl Scheduler {
    /// Executes one claimed run and records its end; returns the recorded run. `slot` (the
    /// worker slot it runs in) goes to the finisher with the end. A reserved run comes with
    /// its `begin`, handed to the finisher once the run can be stopped (its start refused).
    pub(super) async fn execute(
        self,
        row: RunRow,
        task: Arc<Task>,
        slot: Option<OwnedSemaphorePermit>,
        begin: Option<Begin>,
    ) -> Option<TaskRun> {
        let id = row.run.id.clone();
        let cancel = CancellationToken::new();
        let reason = Arc::new(OnceLock::new());
        self.inner.running.lock().unwrap().insert(id.clone(), Running { cancel: cancel.clone(), reason: reason.clone() });
        if let (Some(begin), Some(sender)) = (begin, self.inner.finisher.get()) {
            let _ = sender.send(Request::Begin(begin)).await;
        }
        // Per-run lines are debug: at thousands of runs a second they would be most of the
        // log and a measurable share of a run's cost; metrics and traces cover each run, and
        // failures are logged at warn below.
        tracing::debug!(run = %id, task = %task.name, params = %row.run.params, attempt = row.run.retry_attempt, "start");
        let ctx = TaskContext { run: row.run.clone(), scheduler: self.clone(), cancel: cancel.clone() };
        let started = std::time::Instant::now();
        let due = row.run.execute_after.or(row.run.queued);
        let waited = match (due, row.run.start) {
            (Some(due), Some(start)) => (start - due).to_std().unwrap_or_default(),
            _ => Duration::ZERO,
        };
        self.inner.metrics.run_started(&task.name, waited);
        // Its own tokio task: a panic in the task is caught as a failure of this run only.
        let mut handle = tokio::spawn((task.executor)(ctx));
        let outcome = tokio::select! {
            joined = &mut handle => match joined {
                Ok(Ok(())) => Outcome::Success,
                Ok(Err(TaskError::Failed(e))) => Outcome::Failure(e),
                Ok(Err(TaskError::Aborted(r))) => Outcome::Aborted(r),
                Err(e) if e.is_panic() => Outcome::Failure(format!("task panicked: {}", panic_message(e))),
                Err(_) => Outcome::Interrupted("task was cancelled".into()),
            },
            _ = tokio::time::sleep(task.timeout) => {
                handle.abort();
                Outcome::Failure(format!("timeout after {:?}", task.timeout))
            }
            _ = cancel.cancelled() => {
                handle.abort();
                reason.get().cloned().unwrap_or(Outcome::Aborted("cancelled".into()))
            }
            _ = self.inner.stop_running.cancelled() => {
                handle.abort();
                Outcome::Interrupted("host shutting down".into())
            }
        };
        let outcome = match outcome {
            Outcome::Failure(e) => Outcome::Failure(error_text(e)),
            Outcome::Aborted(e) => Outcome::Aborted(error_text(e)),
            o => o,
        };
        let retry_after = match (&outcome, &task.retry) {
            (Outcome::Failure(_), Some(p)) if p.allows(row.run.retry_attempt + 1) => Some(p.delay(row.run.retry_attempt + 1)),
            _ => None,
        };
        let took = started.elapsed();
        self.inner.metrics.run_ended(&task.name, took);
        let elapsed_ms = took.as_secs_f64() * 1000.0;
        match &outcome {
            Outcome::Failure(e) => {
                // Quoted: the text is the task's (a component's) choice, and a line break
                // in it would forge log lines.
                tracing::warn!(run = %id, task = %task.name, error = ?e, ms = elapsed_ms, retry_in = ?retry_after, "end - failure")
            }
            Outcome::Success => tracing::debug!(run = %id, task = %task.name, ms = elapsed_ms, "end - success"),
            o => tracing::info!(run = %id, task = %task.name, outcome = ?o, ms = elapsed_ms, "end"),
        }
        let finish = Finish { id: id.clone(), lease: row.lease, outcome, retry_after };
        // Its group's room frees now, so the commit recording this end may fill it.
        self.inner.shares.release(&id);
        // The next reserved run starts in this slot at once; else the slot goes with the end,
        // for the commit that records it to fill.
        let slot = slot.and_then(|s| self.start_reserved(s));
        let result = self.record_finish(finish, slot).await;
        {
            // Only this execution's entry: a retry with no wait may already be running again
            // under the same id (the finisher can claim it in the commit that re-queued it).
            let mut running = self.inner.running.lock().unwrap();
            if running.get(&id).is_some_and(|r| Arc::ptr_eq(&r.reason, &reason)) {
                running.remove(&id);
            }
        }
        match result {
            Ok(run) => {
                tracing::Span::current().record("state", run.state.as_str());
                Some(run)
            }
            // A reserved run cancelled (or its task disabled) before its start was recorded.
            Err(e @ StoreError::Conflict { .. }) => {
                tracing::info!(run = %id, error = %e, "the run moved on before its end was recorded");
                None
            }
            Err(e) => {
                tracing::error!(run = %id, error = %e, "could not record the end of a run");
                None
            }
        }
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    let p = e.into_panic();
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests {
    use super::super::testing::Fixture;
    use super::*;

    /// How an execution ends is the state recorded: success, a failure, an abort, a panic
    /// caught as a failure of that run only, and a timeout that stops the task.
    #[tokio::test]
    async fn an_executions_end_is_the_state_recorded() {
        let f = Fixture::new(SchedulerConfig { consume: false, ..Default::default() }).await;
        let s = &f.scheduler;
        s.register(Task::new("fails").run(|_| async { Err(TaskError::Failed("it broke".into())) })).unwrap();
        s.register(Task::new("aborts").run(|_| async { Err(TaskError::Aborted("not today".into())) })).unwrap();
        s.register(Task::new("panics").run(|_| async {
            if std::hint::black_box(true) {
                panic!("boom");
            }
            Ok(())
        }))
        .unwrap();
        s.register(Task::new("slow").timeout(Duration::from_millis(50)).run(|_| async {
            tokio::time::sleep(Duration::from_secs(600)).await;
            Ok(())
        }))
        .unwrap();
        let ended = |task: &'static str| async move { s.execute_now(task, serde_json::json!({})).await.unwrap() };
        let run = ended("t").await;
        assert_eq!((run.state, run.error), (TaskState::Success, None));
        let run = ended("fails").await;
        assert_eq!((run.state, run.error.as_deref()), (TaskState::Failure, Some("it broke")));
        let run = ended("aborts").await;
        assert_eq!((run.state, run.error.as_deref()), (TaskState::Aborted, Some("not today")));
        let run = ended("panics").await;
        assert_eq!(run.state, TaskState::Failure);
        assert!(run.error.as_deref().is_some_and(|e| e.contains("task panicked") && e.contains("boom")), "{:?}", run.error);
        let run = ended("slow").await;
        assert_eq!(run.state, TaskState::Failure);
        assert!(run.error.as_deref().is_some_and(|e| e.starts_with("timeout after")), "{:?}", run.error);
    }
}
