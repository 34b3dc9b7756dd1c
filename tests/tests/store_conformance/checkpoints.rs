//! The change feed's plugin checkpoints: where each plugin is in the feed, which host
//! delivers its events (a lease), and what the feed may drop (only what every checkpoint
//! has passed) or stop keeping (a plugin forgotten).

use crate::harness::*;
use fluid_host::TaskRun;
use fluid_host::store::{Forget, Store};
use std::time::Duration;

const TTL: Duration = Duration::from_secs(60);

/// Takes `plugin`'s lease for `host` once a lease of no time held by another has run out
/// (by the next microsecond): waits on the clock, never longer than the test's bound.
async fn take_over(store: &Store, plugin: &str, host: &str) {
    let deadline = std::time::Instant::now() + crate::common::WAIT;
    while !store.hold_delivery(plugin, host, TTL).await.unwrap() {
        assert!(std::time::Instant::now() < deadline, "{host} never took over {plugin}");
        a_moment_later().await;
    }
}

/// A plugin seen for the first time starts where it is told (the feed's head, usually);
/// later calls find its checkpoint where it is, whatever start they give.
pub async fn a_checkpoint_starts_where_asked_once_then_keeps_its_place(driver: &Driver) {
    let store = driver.fresh().await;
    store.insert_runs(&(0..3).map(|n| queued(n, "t")).collect::<Vec<TaskRun>>()).await.unwrap();
    let head = store.feed_head().await.unwrap();
    assert_eq!(head, 3, "one event per queued run, numbered from 1");
    assert_eq!(store.checkpoint("new", head).await.unwrap(), head);
    assert_eq!(store.checkpoint("new", 0).await.unwrap(), head, "kept, not started again");
    assert_eq!(store.checkpoint("old", 1).await.unwrap(), 1);
    assert_eq!(store.feed_lag().await.unwrap(), [("new".to_string(), 0), ("old".to_string(), 2)]);
    store.close().await;
}

/// Only the host holding a plugin's delivery lease moves its checkpoint, and only forward:
/// an advance to where it is, or behind, changes nothing (an operator's reset may move it
/// back). Each advance renews the lease, so a busy holder keeps it without a commit of its
/// own: a lease of no time, renewed by an advance, is not taken over.
pub async fn a_checkpoint_moves_only_forward_and_only_for_its_lease_holder(driver: &Driver) {
    let store = driver.fresh().await;
    assert_eq!(store.checkpoint("p", 0).await.unwrap(), 0);
    assert!(store.hold_delivery("p", "a", TTL).await.unwrap(), "a free lease is taken");
    assert!(store.hold_delivery("p", "a", TTL).await.unwrap(), "and renewed by its holder");
    assert!(!store.hold_delivery("p", "b", TTL).await.unwrap(), "a held lease is not taken");
    assert!(!store.advance_checkpoint_as("p", "b", 5, TTL).await.unwrap(), "only the holder advances");
    assert!(store.advance_checkpoint_as("p", "a", 5, TTL).await.unwrap());
    assert!(!store.advance_checkpoint_as("p", "a", 5, TTL).await.unwrap(), "staying is not advancing");
    assert!(!store.advance_checkpoint_as("p", "a", 3, TTL).await.unwrap(), "a checkpoint never moves back");
    assert_eq!(store.checkpoint("p", 0).await.unwrap(), 5);
    store.reset_checkpoint("p", 2).await.unwrap();
    assert_eq!(store.checkpoint("p", 0).await.unwrap(), 2, "an operator's reset moves it back");

    assert!(store.hold_delivery("q", "a", Duration::ZERO).await.unwrap());
    a_moment_later().await;
    assert!(store.advance_checkpoint_as("q", "a", 1, TTL).await.unwrap(), "a holder whose lease ran out but was not taken advances");
    assert!(!store.hold_delivery("q", "b", TTL).await.unwrap(), "the advance renewed the lease");
    store.close().await;
}

/// A lease that ran out is taken over by another host, and the old holder can no longer
/// move the checkpoint; a released lease is taken at once, and only its holder releases it.
pub async fn an_expired_or_released_lease_is_taken_over_and_its_old_holder_fenced_out(driver: &Driver) {
    let store = driver.fresh().await;
    assert!(store.hold_delivery("p", "a", Duration::ZERO).await.unwrap());
    take_over(&store, "p", "b").await;
    assert!(!store.advance_checkpoint_as("p", "a", 1, TTL).await.unwrap(), "the old holder is fenced out");
    assert!(!store.hold_delivery("p", "a", TTL).await.unwrap(), "and cannot take it back while b holds it");
    assert!(store.advance_checkpoint_as("p", "b", 1, TTL).await.unwrap());

    store.release_delivery("p", "a").await.unwrap();
    assert!(!store.hold_delivery("p", "c", TTL).await.unwrap(), "only the holder releases");
    store.release_delivery("p", "b").await.unwrap();
    assert!(store.hold_delivery("p", "c", TTL).await.unwrap(), "a released lease is taken at once");
    assert!(!store.advance_checkpoint_as("p", "b", 2, TTL).await.unwrap());
    assert!(store.advance_checkpoint_as("p", "c", 2, TTL).await.unwrap());
    assert_eq!(store.checkpoint("p", 0).await.unwrap(), 2);
    store.close().await;
}

/// The feed drops only events every checkpoint has passed, keeping the last `keep` events
/// whatever the checkpoints; what a checkpoint has not passed stays readable, complete.
pub async fn pruning_drops_only_what_every_checkpoint_has_passed(driver: &Driver) {
    let store = driver.fresh().await;
    let seqs = |store: &Store, after: i64| {
        let store = store.clone();
        async move { store.events_after(after, 1000, usize::MAX).await.unwrap().iter().map(|e| e.seq).collect::<Vec<i64>>() }
    };
    store.insert_runs(&(0..10).map(|n| queued(n, "t")).collect::<Vec<TaskRun>>()).await.unwrap();
    assert_eq!(store.prune_feed(3).await.unwrap(), 7, "without checkpoints, all but the last 3");
    assert_eq!(seqs(&store, 0).await, [8, 9, 10]);

    assert_eq!(store.checkpoint("a", 9).await.unwrap(), 9);
    assert_eq!(store.checkpoint("b", 10).await.unwrap(), 10);
    store.insert_runs(&(10..15).map(|n| queued(n, "t")).collect::<Vec<TaskRun>>()).await.unwrap();
    assert_eq!(store.feed_head().await.unwrap(), 15);
    assert_eq!(store.prune_feed(0).await.unwrap(), 2, "up to the furthest behind");
    assert_eq!(seqs(&store, 0).await, [10, 11, 12, 13, 14, 15]);
    assert_eq!(seqs(&store, 9).await, [10, 11, 12, 13, 14, 15], "a's events are all there");

    for plugin in ["a", "b"] {
        assert!(store.hold_delivery(plugin, "host", TTL).await.unwrap());
    }
    assert!(store.advance_checkpoint_as("a", "host", 15, TTL).await.unwrap());
    assert_eq!(store.prune_feed(0).await.unwrap(), 1, "now b is the furthest behind");
    assert!(store.advance_checkpoint_as("b", "host", 15, TTL).await.unwrap());
    assert_eq!(store.prune_feed(2).await.unwrap(), 3, "every checkpoint is at the head: all but the last 2");
    assert_eq!(seqs(&store, 0).await, [14, 15]);
    assert_eq!(store.prune_feed(0).await.unwrap(), 2);
    assert!(seqs(&store, 0).await.is_empty());
    assert_eq!(store.feed_head().await.unwrap(), 0, "an empty feed has head 0");
    assert_eq!(store.feed_lag().await.unwrap(), [("a".to_string(), 0), ("b".to_string(), 0)]);
    store.insert_runs(&[queued(15, "t")]).await.unwrap();
    assert_eq!(seqs(&store, 15).await, [16], "numbers are never reused");
    store.close().await;
}

/// A plugin removed for good keeps its checkpoint, and so the feed: `forget` lets it go,
/// but only when no host holds its delivery lease, and a lease taken later makes the
/// checkpoint again, so a plugin still loaded somewhere goes on holding the feed. The
/// warning names the plugin no host delivers to that holds the most, with what is kept.
pub async fn a_plugin_no_host_delivers_to_can_be_forgotten_and_stops_holding_the_feed(driver: &Driver) {
    let store = driver.fresh().await;
    let ttl = Duration::from_secs(60);
    store.insert_runs(&(0..10).map(|n| queued(n, "t")).collect::<Vec<_>>()).await.unwrap();
    let head = store.feed_head().await.unwrap();
    store.checkpoint("gone", head - 8).await.unwrap();
    store.checkpoint("slow", head - 9).await.unwrap();
    assert!(store.hold_delivery("slow", "host-1", ttl).await.unwrap());
    assert_eq!(store.idle_feed_holder().await.unwrap(), Some(("gone".into(), 8)), "the plugin no host delivers to, not the slow one");
    assert_eq!(store.prune_feed(0).await.unwrap(), 1, "pruned only up to the furthest checkpoint");

    assert_eq!(store.forget_checkpoint("slow").await.unwrap(), Forget::Delivering { host: "host-1".into() }, "a delivered plugin is kept");
    assert_eq!(store.forget_checkpoint("nope").await.unwrap(), Forget::Unknown);
    assert_eq!(store.forget_checkpoint("gone").await.unwrap(), Forget::Forgotten { seq: head - 8, held: 8 });
    assert_eq!(store.forget_checkpoint("gone").await.unwrap(), Forget::Unknown, "forgotten once");
    assert_eq!(store.idle_feed_holder().await.unwrap(), None);
    assert!(store.advance_checkpoint_as("slow", "host-1", head, ttl).await.unwrap());
    assert_eq!(store.prune_feed(0).await.unwrap(), 9, "the rest is pruned");

    // Forgotten while still loaded on some host: its next lease makes the checkpoint again,
    // at the start of the feed, and it holds the feed again.
    store.insert_runs(&(10..13).map(|n| queued(n, "t")).collect::<Vec<_>>()).await.unwrap();
    let head = store.feed_head().await.unwrap();
    assert!(store.hold_delivery("gone", "host-2", ttl).await.unwrap());
    assert_eq!(store.checkpoint("gone", head).await.unwrap(), 0, "made again at the start of the feed");
    assert_eq!(store.prune_feed(0).await.unwrap(), 0, "and it holds the feed again");
    // Released, it counts only the events the feed still keeps (3), not every seq since 0.
    store.release_delivery("gone", "host-2").await.unwrap();
    assert_eq!(store.idle_feed_holder().await.unwrap(), Some(("gone".into(), 3)));
    store.close().await;
}
