//! Event delivery: each plugin consumes the durable change feed from its own checkpoint.
//!
//! Per plugin, one loop reads the events after its checkpoint, keeps those whose state it
//! subscribed to, hands them to the plugin in one `on-events` call, and moves the
//! checkpoint past them only when the call succeeded. So events arrive in commit order,
//! at least once, survive crashes (replayed from the checkpoint), and a plugin that fails
//! or traps holds only its own checkpoint, retried with back-off, while the queue and
//! every other plugin go on. A batch is cut to the plugin's `max_args_kib`. No event can
//! hold a plugin back: what enters the feed is bounded (params, error texts), and an
//! event still over a plugin's limit on its own is delivered alone in a form that fits,
//! its params replaced by `{"$truncated": {"bytes": N}}` and its error cut, so the
//! plugin records the run and moves on.
//!
//! Batching under load: the feed signal fires on every commit, and a batch costs the
//! plugin call plus a checkpoint commit, whatever its size. So after a batch that was not
//! full the loop lingers ([`LINGER`]) before reading again, letting the next batch fill.
//! Without this, a busy queue fed the db plugin batches of one or two events, three commits
//! each (lease, plugin storage, checkpoint), and history halved SQLite's throughput.

use crate::plugins::engine::policy::FeedStart;
use crate::plugins::instance::actor::{self, Actor, DeliveryError};
use crate::plugins::instance::supervisor::Supervisor;
use crate::plugins::wit::bindings::tmp::Event;
use crate::plugins::wit::convert::wit_run;
use crate::scheduler::{Scheduler, TaskState};
use crate::store::{Store, StoreError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// What delivery needs of the host, the same for every plugin: the scheduler (its store and
/// change feed), the events read per round, and the runtime's stop (on shutdown the runtime
/// gives every lease up itself).
#[derive(Clone)]
pub(crate) struct Feed {
    pub(crate) scheduler: Scheduler,
    pub(crate) batch: usize,
    pub(crate) shutdown: CancellationToken,
}

/// What delivery needs of one loaded plugin: its name, what it subscribed to, the actor
/// that owns its instance and its supervisor.
pub(crate) struct Subscriber {
    pub(crate) name: String,
    pub(crate) subscriptions: Vec<(TaskState, String)>,
    pub(crate) actor: Actor,
    pub(crate) sup: Arc<Supervisor>,
}

impl Subscriber {
    fn subscribed(&self, state: TaskState) -> bool {
        self.subscriptions.iter().any(|(s, _)| *s == state)
    }
}

/// How often a plugin with nothing to do looks at the feed without being woken (other
/// hosts on a shared database do not wake this one).
const IDLE_POLL: Duration = Duration::from_millis(500);
/// How long delivery waits after a batch that was not full: the most a plugin's events
/// are held back to be delivered together.
pub const LINGER: Duration = Duration::from_millis(10);

/// Waits `pause`; true if the plugin is being stopped meanwhile (then the loop returns).
async fn stopped_during(pause: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(pause) => false,
        _ = stop.cancelled() => true,
    }
}

/// Roughly what an event weighs once passed to the plugin: its texts plus fixed fields.
fn event_bytes(e: &Event) -> usize {
    let r = &e.run;
    256 + r.id.len()
        + r.task.len()
        + r.params_json.len()
        + r.tags.iter().map(|t| t.len() + 8).sum::<usize>()
        + r.error.as_ref().map_or(0, String::len)
        + r.from_run_id.len()
        + r.root_run_id.len()
}

/// An event too big for a plugin's limit, slimmed to fit: params replaced by a marker
/// with their size, error cut.
fn slimmed(mut ev: Event) -> Event {
    let bytes = ev.run.params_json.len();
    ev.run.params_json = serde_json::json!({ "$truncated": { "bytes": bytes } }).to_string();
    ev.run.error = ev.run.error.map(|e| crate::scheduler::cut_text(e, 512));
    ev
}

/// The next batch from `events` (read after the checkpoint): the subscribed ones among the
/// longest prefix that fits in `max_bytes`, and the seq the checkpoint moves to once the
/// plugin has them. A first subscribed event over the limit on its own goes alone,
/// [`slimmed`].
fn next_batch(plugin: &Subscriber, events: &[crate::store::Event], max_bytes: usize) -> (Vec<Event>, i64) {
    let (mut batch, mut bytes, mut last) = (Vec::new(), 0, 0);
    for e in events {
        if plugin.subscribed(e.run.state) {
            let ev = Event { seq: e.seq as u64, run: wit_run(&e.run) };
            let size = event_bytes(&ev);
            if bytes + size > max_bytes {
                if batch.is_empty() {
                    tracing::warn!(plugin = %plugin.name, seq = e.seq, bytes = size, limit = max_bytes,
                        "event over the plugin's max_args_kib: delivered with its params left out");
                    plugin
                        .sup
                        .limit_hit("max_args_kib", &format!("event seq {} of about {size} bytes delivered without its params", e.seq));
                    return (vec![slimmed(ev)], e.seq);
                }
                break;
            }
            bytes += size;
            batch.push(ev);
        }
        last = e.seq;
    }
    (batch, last)
}

/// This host's delivery lease on one plugin, as its delivery loop knows it.
///
/// One host at a time delivers a plugin's events: a lease in its checkpoint row, taken
/// over by another host when this one stops renewing. Each checkpoint advance renews it
/// (same statement); the loop renews it by itself when a quarter of it has gone by (idle
/// waits, back-off), or when what is left could not cover one whole call into the
/// plugin, so a batch never outlives the lease it started under. A lease that may have
/// run out meanwhile counts as lost: another host may have moved the checkpoint, so the
/// loop reads it again once the lease is back.
struct Lease {
    store: Store,
    plugin: String,
    host: String,
    ttl: Duration,
    held: bool,
    /// When it was last taken or renewed: the time asked, before the statement ran.
    renewed: Instant,
}

impl Lease {
    /// It may have run out since it was last renewed.
    fn lapsed(&self) -> bool {
        self.renewed.elapsed() >= self.ttl
    }

    /// Renewing is due: a quarter of it has gone by, or what is left could not cover `call`.
    fn due(&self, call: Duration) -> bool {
        let since = self.renewed.elapsed();
        since >= self.ttl / 4 || since + call >= self.ttl
    }

    /// Takes or renews it; false when another host holds it (then it is not held here).
    async fn hold(&mut self) -> Result<bool, StoreError> {
        let asked = Instant::now();
        let held = self.store.hold_delivery(&self.plugin, &self.host, self.ttl).await?;
        if held {
            self.renewed = asked;
        } else {
            self.held = false;
        }
        Ok(held)
    }

    /// Moves the checkpoint to `seq` and renews the lease; false when it was lost meanwhile.
    async fn advance(&mut self, seq: i64) -> Result<bool, StoreError> {
        let asked = Instant::now();
        let done = self.store.advance_checkpoint_as(&self.plugin, &self.host, seq, self.ttl).await?;
        if done {
            self.renewed = asked;
        } else {
            self.held = false;
        }
        Ok(done)
    }

    /// Waits `pause` without letting a held lease lapse; true if the plugin is being
    /// stopped meanwhile.
    async fn wait_holding(&mut self, pause: Duration, stop: &CancellationToken) -> bool {
        let until = Instant::now() + pause;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            if stopped_during(left.min(self.ttl / 4), stop).await {
                return true;
            }
            if self.held
                && self.renewed.elapsed() >= self.ttl / 4
                && let Err(e) = self.hold().await
            {
                tracing::warn!(plugin = %self.plugin, error = %e, "cannot renew the delivery lease");
            }
        }
    }
}

/// The delivery loop of one plugin; ends when the plugin is unloaded, replaced or
/// quarantined, after settling the batch in hand. A quarantined plugin's lease is given
/// up at once, so a host where it is not quarantined takes its delivery over without
/// waiting for the lease to run out. (Not on a swap: the new version goes on under the
/// same lease. Not on shutdown: the runtime releases every lease once all loops ended.)
pub(crate) async fn deliver(feed: Feed, plugin: Subscriber) {
    deliver_until_stopped(&feed, &plugin).await;
    if plugin.sup.quarantined() && !feed.shutdown.is_cancelled() {
        let host = &feed.scheduler.config().host_id;
        if let Err(e) = feed.scheduler.store().release_delivery(&plugin.name, host).await {
            tracing::warn!(plugin = %plugin.name, error = %e, "cannot release the delivery lease of a quarantined plugin");
        }
    }
}

/// The plugin's checkpoint; for a plugin seen for the first time, where `start` says
/// (the head of the feed now, or before its oldest retained event).
pub(crate) async fn first_checkpoint(store: &Store, plugin: &str, start: FeedStart) -> Result<i64, StoreError> {
    let seq = match start {
        FeedStart::Now => store.feed_head().await?,
        FeedStart::Oldest => 0,
    };
    store.checkpoint(plugin, seq).await
}

async fn deliver_until_stopped(feed: &Feed, plugin: &Subscriber) {
    let store = feed.scheduler.store().clone();
    let mut signal = feed.scheduler.feed_signal();
    let sup = plugin.sup.clone();
    let stop = sup.stop.clone();
    let mut backoff = Duration::from_millis(200);
    let mut checkpoint = loop {
        match first_checkpoint(&store, &plugin.name, sup.policy.start).await {
            Ok(c) => break c,
            Err(e) => {
                tracing::error!(plugin = %plugin.name, error = %e, "cannot read checkpoint; retrying");
                if stopped_during(backoff, &stop).await {
                    return;
                }
            }
        }
    };
    sup.update(|h| h.checkpoint = checkpoint);
    let mut lease = Lease {
        store: store.clone(),
        plugin: plugin.name.clone(),
        host: feed.scheduler.config().host_id.clone(),
        ttl: feed.scheduler.config().heartbeat.host_timeout,
        held: false,
        renewed: Instant::now(),
    };
    let call_budget = sup.policy.limits.call_timeout() + actor::BACKSTOP;
    loop {
        if stop.is_cancelled() {
            return;
        }
        if lease.lapsed() {
            lease.held = false;
        }
        if !lease.held || lease.due(call_budget) {
            match lease.hold().await {
                Ok(true) if !lease.held => match store.checkpoint(&plugin.name, 0).await {
                    // Another host may have moved the checkpoint while it held the lease.
                    Ok(c) => {
                        checkpoint = c;
                        lease.held = true;
                    }
                    Err(e) => {
                        tracing::error!(plugin = %plugin.name, error = %e, "cannot read checkpoint; retrying");
                        if stopped_during(backoff, &stop).await {
                            return;
                        }
                        continue;
                    }
                },
                Ok(true) => {}
                Ok(false) => {
                    if stopped_during(IDLE_POLL, &stop).await {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::error!(plugin = %plugin.name, error = %e, "cannot take the delivery lease; retrying");
                    lease.held = false;
                    if stopped_during(backoff, &stop).await {
                        return;
                    }
                    continue;
                }
            }
        }
        if !lease.held {
            continue;
        }
        // Read by bytes too: the plugin takes at most max_args_kib a batch anyway.
        let events = match store.events_after(checkpoint, feed.batch as i64, sup.policy.limits.max_args_bytes()).await {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(plugin = %plugin.name, error = %e, "cannot read the change feed; retrying");
                if stopped_during(backoff, &stop).await {
                    return;
                }
                continue;
            }
        };
        if events.is_empty() {
            tokio::select! {
                _ = signal.changed() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = stop.cancelled() => return,
            }
            continue;
        }
        let read = events.len();
        let (batch, last) = next_batch(plugin, &events, sup.policy.limits.max_args_bytes());
        let _held = sup.hold(batch.iter().map(event_bytes).sum());
        let n = batch.len() as u64;
        let span = tracing::debug_span!("fluid.deliver", plugin = %plugin.name, events = n, after_seq = checkpoint, to_seq = last);
        let r = if batch.is_empty() { Ok(()) } else { plugin.actor.on_events(batch).instrument(span).await };
        let delivered = match r {
            Ok(()) => Ok((n, last)),
            Err(DeliveryError::Stopped) => return,
            // Counted by the actor (a failed start too), not twice here.
            Err(DeliveryError::Trapped(msg)) => Err(msg),
            Err(DeliveryError::NotItsFault(msg)) => {
                tracing::warn!(plugin = %plugin.name, error = %msg, "delivery failed because of the database; retried, not counted against the plugin");
                Err(msg)
            }
            Err(DeliveryError::Refused(msg)) => {
                sup.fail(&msg, false);
                Err(msg)
            }
        };
        match delivered {
            Ok((n, last)) => {
                match lease.advance(last).await {
                    Ok(true) => {}
                    Ok(false) => {
                        // The lease was lost meanwhile: the new holder goes on from the stored checkpoint.
                        continue;
                    }
                    Err(e) => {
                        // Not advanced: the same events come again (at least once), after a pause.
                        tracing::error!(plugin = %plugin.name, error = %e, retry_in = ?backoff, "cannot save checkpoint");
                        if stopped_during(backoff, &stop).await {
                            return;
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        continue;
                    }
                }
                checkpoint = last;
                backoff = Duration::from_millis(200);
                sup.update(|h| {
                    h.events_delivered += n;
                    h.checkpoint = checkpoint;
                    if h.state == "failing" {
                        h.state = "active".into();
                    }
                });
                if read < feed.batch && stopped_during(LINGER, &stop).await {
                    return;
                }
            }
            Err(msg) => {
                if stop.is_cancelled() {
                    return;
                }
                tracing::warn!(plugin = %plugin.name, error = %msg, retry_in = ?backoff, "event delivery failed; will retry from the checkpoint");
                sup.update(|h| {
                    if h.state == "active" {
                        h.state = "failing".into();
                    }
                });
                // Back off without letting the lease lapse: the plugin is still loaded
                // here, so no other host takes its delivery over (a quarantine gives it
                // up, see `deliver`), and `fluid plugins forget` sees that it is loaded.
                if lease.wait_holding(backoff, &stop).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}
