//! Maintenance: this host's heartbeat, and the rescue of runs held by hosts that stopped
//! beating (`interrupted`, then retried by their policy).

use super::*;

impl Scheduler {
    pub(super) async fn heartbeat_loop(self) {
        let inner = &self.inner;
        let mut last_prune = std::time::Instant::now();
        let mut last_holder_warning: Option<std::time::Instant> = None;
        loop {
            if let Err(e) = self.heartbeat_once().await {
                tracing::error!(error = %e, "heartbeat failed");
            }
            // The change feed only needs what some plugin has not consumed yet: once a
            // minute, drop what every checkpoint has passed, keeping a recent tail.
            if last_prune.elapsed() >= FEED_PRUNE_EVERY {
                last_prune = std::time::Instant::now();
                match inner.store.prune_feed(FEED_KEEP).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(events = n, "change feed pruned"),
                    Err(e) => tracing::warn!(error = %e, "pruning the change feed failed"),
                }
                // A plugin removed for good keeps its checkpoint, and so the feed, for ever:
                // nothing is dropped on a guess, but the operator is told (once an hour).
                if last_holder_warning.is_none_or(|t| t.elapsed() >= FEED_HOLDER_WARN_EVERY)
                    && let Ok(Some((plugin, held))) = inner.store.idle_feed_holder().await
                    && held > FEED_KEEP
                {
                    last_holder_warning = Some(std::time::Instant::now());
                    tracing::warn!(
                        plugin = %plugin,
                        events = held,
                        "the change feed is kept for a plugin no host delivers to now (removed, or quarantined: see GET /plugins); \
                         if it was removed for good, `fluid plugins forget {plugin}` lets the feed be pruned"
                    );
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(inner.config.heartbeat) => {}
                _ = inner.stop_background.cancelled() => return,
            }
        }
    }

    /// One heartbeat: mark this host alive, act on cancel requests made through other
    /// hosts, rescue runs of dead hosts.
    pub async fn heartbeat_once(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        inner.store.heartbeat(&inner.config.host_id, inner.started_at, inner.config.workers).await?;
        for id in inner.store.cancel_requests(&inner.config.host_id).await? {
            self.stop_local(&id, Outcome::Aborted("cancelled".into()));
        }
        let dead_before = now_us() - inner.config.host_timeout.as_micros() as i64;
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
            self.committed(rescued);
            drop(publish);
            inner.wake.notify_one();
        }
        Ok(())
    }
}
