//! Maintenance: pruning the change feed. The feed only needs what some plugin has not
//! consumed yet: every so often, what every checkpoint has passed is dropped, keeping a
//! recent tail. A plugin removed for good keeps its checkpoint, and so the feed, for ever:
//! nothing is dropped on a guess, but the operator is told, now and then, which plugin
//! holds it.

use super::*;

/// The feed pruner's config.
#[derive(Debug, Clone)]
pub struct FeedPrunerConfig {
    /// How often it prunes. Default: 60 s.
    pub interval: Duration,
    /// How many of the latest events are always kept, consumed or not (a plugin loaded
    /// later with `start = "oldest"` reads them). Default: 100,000.
    pub keep: i64,
    /// How often it says which plugin no host delivers to holds the feed. Default: 1 hour.
    pub holder_warning_every: Duration,
}

impl Default for FeedPrunerConfig {
    fn default() -> Self {
        FeedPrunerConfig { interval: Duration::from_secs(60), keep: 100_000, holder_warning_every: Duration::from_secs(3600) }
    }
}

impl Scheduler {
    pub(super) async fn feed_pruner_loop(self) {
        let config = self.inner.config.feed_pruner.clone();
        let mut last_holder_warning: Option<std::time::Instant> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(config.interval) => {}
                _ = self.inner.stop_background.cancelled() => return,
            }
            match self.prune_feed_once().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(events = n, "change feed pruned"),
                Err(e) => tracing::warn!(error = %e, "pruning the change feed failed"),
            }
            if last_holder_warning.is_none_or(|t| t.elapsed() >= config.holder_warning_every)
                && let Ok(Some((plugin, held))) = self.inner.store.idle_feed_holder().await
                && held > config.keep
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
    }

    /// One pruning: drops the events every plugin's checkpoint has passed, but for the
    /// latest `keep`. Returns how many were dropped.
    pub(crate) async fn prune_feed_once(&self) -> Result<u64, StoreError> {
        self.inner.store.prune_feed(self.inner.config.feed_pruner.keep).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::Fixture;
    use super::*;

    /// Events a plugin has not consumed stay; once it has, all but the latest `keep` go.
    #[tokio::test]
    async fn prunes_what_every_checkpoint_passed_but_the_latest_keep() {
        let feed_pruner = FeedPrunerConfig { keep: 3, ..Default::default() };
        let f = Fixture::new(SchedulerConfig { feed_pruner, consume: false, ..Default::default() }).await;
        let store = f.scheduler.store();
        store.checkpoint("reader", 0).await.unwrap();
        f.queue(10).await;
        let feed = || async { store.events_after(0, 1000, usize::MAX).await.unwrap().len() };
        assert_eq!(feed().await, 10);
        assert_eq!(f.scheduler.prune_feed_once().await.unwrap(), 0, "the reader has consumed nothing");
        assert_eq!(feed().await, 10);
        store.reset_checkpoint("reader", store.feed_head().await.unwrap()).await.unwrap();
        assert_eq!(f.scheduler.prune_feed_once().await.unwrap(), 7);
        assert_eq!(feed().await, 3);
    }
}
