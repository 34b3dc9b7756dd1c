//! Maintenance: this host's heartbeat, the cancel requests made through other hosts, and
//! the rescue of runs held by hosts that stopped beating (`interrupted`, then retried by
//! their policy).

use super::*;

/// The heartbeat's config.
#[derive(Debug, Clone)]
pub struct HeartbeatConfig {
    /// How often this host writes its heartbeat, picks up cancel requests and rescues.
    /// Default: 2 s. Keep it well under `host_timeout`, or a live host looks dead.
    pub interval: Duration,
    /// A host silent this long is dead: its running runs are rescued. Default: 15 s, long
    /// enough to ride out a pause of the database or the machine.
    pub host_timeout: Duration,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig { interval: Duration::from_secs(2), host_timeout: Duration::from_secs(15) }
    }
}

impl Scheduler {
    pub(super) async fn heartbeat_loop(self) {
        loop {
            if let Err(e) = self.heartbeat_once().await {
                tracing::error!(error = %e, "heartbeat failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.inner.config.heartbeat.interval) => {}
                _ = self.inner.stop_background.cancelled() => return,
            }
        }
    }

    /// One heartbeat: mark this host alive, act on cancel requests made through other
    /// hosts, rescue runs of dead hosts. Returns the runs rescued.
    pub(crate) async fn heartbeat_once(&self) -> Result<Vec<TaskRun>, StoreError> {
        let inner = &self.inner;
        inner.store.heartbeat(&inner.config.host_id, inner.started_at, inner.config.workers).await?;
        self.release_stale().await;
        for id in inner.store.cancel_requests(&inner.config.host_id).await? {
            self.stop_local(&id, Outcome::Aborted("cancelled".into()));
        }
        let dead_before = now_us() - inner.config.heartbeat.host_timeout.as_micros() as i64;
        let publish = inner.publish.read().await;
        let rescued = inner.store.rescue(dead_before, |run| {
            let policy = self.task(&run.task)?.retry.clone()?;
            policy.allows(run.retry_attempt + 1).then(|| policy.delay(run.retry_attempt + 1))
        });
        let rescued = rescued.await?;
        if !rescued.is_empty() {
            tracing::warn!(
                runs = rescued.iter().filter(|r| r.state == TaskState::Interrupted).count(),
                "rescued runs of a host that stopped"
            );
            self.committed(rescued.iter().cloned());
            drop(publish);
            inner.wake.notify_one();
        }
        Ok(rescued)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Fixture;
    use super::*;

    /// A run held by a host that never beat (or stopped) is rescued as `interrupted`; a run
    /// held by a host whose heartbeat is within `host_timeout` is left alone.
    #[tokio::test]
    async fn rescues_the_runs_of_silent_hosts_only() {
        let heartbeat = HeartbeatConfig { host_timeout: Duration::from_secs(3600), ..Default::default() };
        let f = Fixture::new(SchedulerConfig { heartbeat, consume: false, ..Default::default() }).await;
        let (s, store) = (&f.scheduler, f.scheduler.store());
        let rules = s.claim_rules();
        f.queue(1).await;
        let lost = store.claim("gone", 1, &rules).await.unwrap().started.remove(0).run;
        store.heartbeat("alive", now_us(), 1).await.unwrap();
        f.queue(1).await;
        let kept = store.claim("alive", 1, &rules).await.unwrap().started.remove(0).run;

        let rescued = s.heartbeat_once().await.unwrap();
        assert_eq!(rescued.iter().map(|r| (r.id.clone(), r.state)).collect::<Vec<_>>(), vec![(lost.id.clone(), TaskState::Interrupted)]);
        assert_eq!(store.get_run(&kept.id).await.unwrap().unwrap().state, TaskState::Running);
        // Rescued once: the next beat finds nothing.
        assert!(s.heartbeat_once().await.unwrap().is_empty());
    }
}
