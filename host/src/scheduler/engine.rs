//! The engine: registry, queueing, the claim loop, execution, the batching finisher,
//! heartbeats with rescue of runs lost with their host, schedules and shutdown.

use super::context::{PluginDirectory, TaskContext};
use super::share::Shares;
use super::task::{Task, TaskError};
use crate::metrics::Metrics;
use crate::store::runs::{Cancel, ClaimRules, Claimed, Finish, Outcome, RunRow, ShareRoom};
use crate::store::{Store, StoreError};
use crate::time::{now_us, to_datetime};
use crate::types::{MAX_ERROR_BYTES, MAX_PARAMS_BYTES, Priority, TaskRun, TaskState, cut_text};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Tuning of one host's scheduler.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Runs executing at once on this host.
    pub workers: usize,
    /// Identity in `fluid_hosts` and in each run's `owner`.
    pub host_id: String,
    /// How often the claim loop looks for due runs when nothing wakes it.
    pub poll: Duration,
    /// How often this host writes its heartbeat, picks up cancel requests and rescues.
    pub heartbeat: Duration,
    /// A host silent this long is dead: its running runs are rescued.
    pub host_timeout: Duration,
    /// How often schedules are checked.
    pub schedule_tick: Duration,
    /// Whether this host fires schedules (every host may; each due time fires once).
    pub run_schedules: bool,
    /// Whether this host claims runs (false: an API-only host).
    pub consume: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            workers: 8,
            host_id: format!("host-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
            poll: Duration::from_millis(250),
            heartbeat: Duration::from_secs(2),
            host_timeout: Duration::from_secs(15),
            schedule_tick: Duration::from_millis(200),
            run_schedules: true,
            consume: true,
        }
    }
}

/// How often the change feed is pruned, and how many of its latest events are always kept.
const FEED_PRUNE_EVERY: Duration = Duration::from_secs(60);
const FEED_KEEP: i64 = 100_000;
/// How often a host says that a plugin no host delivers to holds the feed.
const FEED_HOLDER_WARN_EVERY: Duration = Duration::from_secs(3600);

/// How many times the finisher yields to executions about to end before it commits the
/// ends it has (see `finisher_loop`), and for how long at most: on an idle worker a yield
/// costs well under a microsecond, but behind busy tasks (a task component computing for
/// a whole epoch tick) one yield can wait milliseconds, and the ends in hand must not.
const GATHER_YIELDS: usize = 8;
const GATHER_FOR: Duration = Duration::from_millis(1);

/// A due time later than this when first seen was missed (the host was down): skipped.
const MISFIRE_GRACE_US: i64 = 5_000_000;

/// Why a run could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("task {0:?} not found")]
    UnknownTask(String),
    #[error("invalid params for task {task}: {message}")]
    InvalidParams { task: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Options of one queued run.
#[derive(Debug, Clone, Default)]
pub struct QueueOptions {
    /// Overrides the task's priority.
    pub priority: Option<Priority>,
    /// The run that queues this one (lineage).
    pub parent: Option<TaskRun>,
    /// Do not start before this delay.
    pub delay: Option<Duration>,
}

/// Outcome of a cancel request.
#[derive(Debug)]
pub enum Cancelled {
    /// The run was queued and is now aborted.
    Aborted(TaskRun),
    /// The run is running; its host stops it (at once when it is this host).
    Stopping(TaskRun),
}

/// An execution's end, sent to the batching finisher with the execution's worker slot (the
/// finisher may hand it to a run it claims in the same transaction), and where to answer.
type FinishRequest = (Finish, Option<OwnedSemaphorePermit>, oneshot::Sender<Result<TaskRun, StoreError>>);

struct Running {
    cancel: CancellationToken,
    /// Set before `cancel` fires: how the run ends.
    reason: Arc<OnceLock<Outcome>>,
}

struct Inner {
    store: Store,
    config: SchedulerConfig,
    started_at: i64,
    registry: RwLock<BTreeMap<String, Arc<Task>>>,
    rules: RwLock<Arc<BTreeMap<String, ClaimRules>>>,
    /// Workers held by groups of tasks; every claim takes its rules from here.
    shares: Shares,
    wake: Notify,
    slots: Arc<Semaphore>,
    running: Mutex<HashMap<String, Running>>,
    stop_claiming: CancellationToken,
    /// Fired when the shutdown grace period is over: every execution, including one that
    /// a claim in flight at shutdown starts afterwards, ends as `interrupted`.
    stop_running: CancellationToken,
    stop_background: CancellationToken,
    executions: TaskTracker,
    background: TaskTracker,
    /// The claim loop, joined at shutdown before waiting for executions.
    claimer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    finisher: OnceLock<mpsc::Sender<FinishRequest>>,
    changes: broadcast::Sender<TaskRun>,
    /// Keeps the broadcast of each run's changes in commit order. A commit is broadcast
    /// just after it, so a claim committed in between could overtake it (a subscriber
    /// would see `running` before `queued`, or a retry start before the failure that
    /// re-queued it). Writers that make a run claimable hold it shared from their commit
    /// to their broadcast; claims (and clearing the queue) hold it exclusively.
    publish: tokio::sync::RwLock<()>,
    feed: watch::Sender<u64>,
    plugins: RwLock<Option<Arc<dyn PluginDirectory>>>,
    metrics: Arc<Metrics>,
}

/// Handle to the scheduler; cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

impl Scheduler {
    pub fn new(store: Store, config: SchedulerConfig) -> Scheduler {
        let workers = config.workers.max(1);
        let metrics = Arc::new(Metrics::new(&store.metrics));
        Scheduler {
            inner: Arc::new(Inner {
                store,
                started_at: now_us(),
                registry: RwLock::default(),
                rules: RwLock::default(),
                shares: Shares::default(),
                wake: Notify::new(),
                slots: Arc::new(Semaphore::new(workers)),
                running: Mutex::default(),
                stop_claiming: CancellationToken::new(),
                stop_running: CancellationToken::new(),
                stop_background: CancellationToken::new(),
                executions: TaskTracker::new(),
                background: TaskTracker::new(),
                claimer: Mutex::default(),
                finisher: OnceLock::new(),
                changes: broadcast::channel(16_384).0,
                publish: tokio::sync::RwLock::new(()),
                feed: watch::channel(0).0,
                plugins: RwLock::default(),
                metrics,
                config: SchedulerConfig { workers, ..config },
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.inner.config
    }

    /// This host's metrics (`GET /metrics`).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Reads the gauges that describe shared state (queue depth, feed lag) from the
    /// store, just before the metrics are encoded.
    pub async fn refresh_metrics(&self) -> Result<(), StoreError> {
        let m = &self.inner.metrics;
        let depth = self.inner.store.queue_lengths().await?;
        for p in Priority::ALL {
            m.set_queue_depth(p.as_str(), depth.get(&p).copied().unwrap_or(0) as i64);
        }
        for (plugin, lag) in self.inner.store.feed_lag().await? {
            m.set_feed_lag(&plugin, lag);
        }
        Ok(())
    }

    /// Adds a task. Refused when the options are invalid or the name is taken.
    pub fn register(&self, task: Task) -> Result<(), String> {
        task.check()?;
        let mut reg = self.inner.registry.write().unwrap();
        if reg.contains_key(&task.name) {
            return Err(format!("task {:?} is already registered", task.name));
        }
        reg.insert(task.name.clone(), Arc::new(task));
        self.refresh_rules(&reg);
        Ok(())
    }

    /// Replaces the tasks named `old` with `new` in one step (a task component loaded or
    /// swapped): every new task is checked and none may clash with a task outside `old`,
    /// else nothing changes. The claim rules are rebuilt once, so registering n tasks
    /// is linear in n and the registry's lock is held only for the swap itself.
    pub fn replace_tasks(&self, old: &[String], new: Vec<Task>) -> Result<(), String> {
        for t in &new {
            t.check()?;
        }
        let mut reg = self.inner.registry.write().unwrap();
        if let Some(t) = new.iter().find(|t| reg.contains_key(&t.name) && !old.contains(&t.name)) {
            return Err(format!("task {:?} is already registered", t.name));
        }
        for name in old {
            reg.remove(name);
        }
        for t in new {
            reg.insert(t.name.clone(), Arc::new(t));
        }
        self.refresh_rules(&reg);
        Ok(())
    }

    /// Removes a task (a task component was unloaded). Its queued runs wait for a host
    /// that knows it.
    pub fn unregister(&self, name: &str) -> Option<Arc<Task>> {
        let mut reg = self.inner.registry.write().unwrap();
        let t = reg.remove(name);
        self.refresh_rules(&reg);
        t
    }

    fn refresh_rules(&self, reg: &BTreeMap<String, Arc<Task>>) {
        let workers = self.inner.config.workers;
        let rules: BTreeMap<String, ClaimRules> = reg
            .iter()
            .map(|(n, t)| {
                let share = t.workers.as_ref().map(|s| ShareRoom { group: s.group.clone(), room: s.cap(workers) as u32 });
                (n.clone(), ClaimRules { max_concurrency: t.max_concurrency, rate_limit_retry: t.rate_limit_retry.clone(), share })
            })
            .collect();
        self.inner.shares.registered(&rules);
        *self.inner.rules.write().unwrap() = Arc::new(rules);
    }

    /// The rules a claim may use now (see [`Shares::rules_now`]); read under the publish
    /// lock held exclusively, with [`Shares::hold`] before it is released, so two claims
    /// never both count on the same room.
    fn claim_rules(&self) -> Arc<BTreeMap<String, ClaimRules>> {
        let base = self.inner.rules.read().unwrap().clone();
        self.inner.shares.rules_now(base)
    }

    pub fn task(&self, name: &str) -> Option<Arc<Task>> {
        self.inner.registry.read().unwrap().get(name).cloned()
    }

    pub fn tasks(&self) -> Vec<Arc<Task>> {
        self.inner.registry.read().unwrap().values().cloned().collect()
    }

    /// Attaches the plugin runtime (reached by tasks through `get_plugin`).
    pub fn set_plugin_directory(&self, d: Arc<dyn PluginDirectory>) {
        *self.inner.plugins.write().unwrap() = Some(d);
    }

    pub(crate) fn plugin_directory(&self) -> Option<Arc<dyn PluginDirectory>> {
        self.inner.plugins.read().unwrap().clone()
    }

    /// Every state change committed by this host, after commit.
    pub fn subscribe(&self) -> broadcast::Receiver<TaskRun> {
        self.inner.changes.subscribe()
    }

    /// Bumped after every commit that appended to the change feed (wakes the dispatcher).
    pub fn feed_signal(&self) -> watch::Receiver<u64> {
        self.inner.feed.subscribe()
    }

    fn committed(&self, runs: impl IntoIterator<Item = TaskRun>) {
        let m = &self.inner.metrics;
        for r in runs {
            if r.state == TaskState::Queued {
                m.run_queued(&r.task);
            } else if r.state.is_done() {
                m.run_finished(&r.task, r.state.as_str());
            }
            let _ = self.inner.changes.send(r);
        }
        self.inner.feed.send_modify(|n| *n += 1);
    }

    /// Builds a validated `queued` run without storing it.
    fn new_run(&self, name: &str, params: Value, opts: &QueueOptions) -> Result<TaskRun, QueueError> {
        let task = self.task(name).ok_or_else(|| QueueError::UnknownTask(name.into()))?;
        let params = task.validate_params(params).map_err(|message| QueueError::InvalidParams { task: name.into(), message })?;
        let size = params.to_string().len();
        if size > MAX_PARAMS_BYTES {
            let message = format!("params are {size} bytes of JSON, over the limit of {} bytes", MAX_PARAMS_BYTES);
            return Err(QueueError::InvalidParams { task: name.into(), message });
        }
        let now = now_us();
        let (from_run_id, root_run_id) = match &opts.parent {
            Some(p) => (p.id.clone(), if p.root_run_id.is_empty() { p.id.clone() } else { p.root_run_id.clone() }),
            None => (String::new(), String::new()),
        };
        let after = now + opts.delay.map_or(0, |d| d.as_micros() as i64);
        let mut run = TaskRun {
            id: TaskRun::new_id(),
            task: task.name.clone(),
            tags: task.tags.iter().cloned().collect(),
            priority: opts.priority.unwrap_or(task.priority),
            state: TaskState::Init,
            params,
            queued: None,
            start: None,
            end: None,
            execute_after: Some(to_datetime(after)),
            retry_attempt: 0,
            rate_limit_attempt: 0,
            from_run_id,
            root_run_id,
            error: None,
        };
        run.state = run.state.transition(TaskState::Queued).expect("init -> queued");
        run.queued = Some(to_datetime(now));
        Ok(run)
    }

    /// Queues a run of `task` with `params` (validated now, not when dequeued).
    pub async fn queue(&self, task: &str, params: Value, opts: QueueOptions) -> Result<TaskRun, QueueError> {
        let run = self.new_run(task, params, &opts)?;
        let span = tracing::debug_span!("fluid.queue", run_id = %run.id, task = %run.task);
        async move {
            let publish = self.inner.publish.read().await;
            self.inner.store.insert_runs(std::slice::from_ref(&run)).await?;
            self.committed([run.clone()]);
            drop(publish);
            self.inner.wake.notify_one();
            Ok(run)
        }
        .instrument(span)
        .await
    }

    pub async fn get_run(&self, id: &str) -> Result<Option<TaskRun>, StoreError> {
        self.inner.store.get_run(id).await
    }

    /// Cancels a queued run (it becomes `aborted`) or asks the host running it to stop it
    /// (it becomes `aborted` with error "cancelled" once stopped).
    pub async fn cancel(&self, id: &str) -> Result<Cancelled, StoreError> {
        let _publish = self.inner.publish.read().await;
        match self.inner.store.cancel(id).await? {
            Cancel::Aborted(run) => {
                self.committed([run.clone()]);
                Ok(Cancelled::Aborted(run))
            }
            Cancel::Requested { run, owner } => {
                if owner == self.inner.config.host_id {
                    self.stop_local(id, Outcome::Aborted("cancelled".into()));
                }
                Ok(Cancelled::Stopping(run))
            }
        }
    }

    fn stop_local(&self, id: &str, outcome: Outcome) {
        if let Some(r) = self.inner.running.lock().unwrap().get(id) {
            let _ = r.reason.set(outcome);
            r.cancel.cancel();
        }
    }

    pub async fn set_enabled(&self, task: &str, enabled: bool) -> Result<(), StoreError> {
        self.inner.store.set_enabled(task, enabled).await
    }

    /// Aborts every queued run of the given priorities.
    pub async fn clear_queue(&self, priorities: &[Priority]) -> Result<BTreeMap<Priority, u64>, StoreError> {
        let _publish = self.inner.publish.write().await;
        let (counts, aborted) = self.inner.store.clear_queue(priorities).await?;
        self.committed(aborted);
        Ok(counts)
    }

    /// Wakes the claim loop (runs were stored by another path than [`Scheduler::queue`]).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Runs executing on this host now.
    pub fn running_here(&self) -> usize {
        self.inner.running.lock().unwrap().len()
    }

    /// Starts the background loops: claiming, finishing, heartbeats and schedules.
    pub fn start(&self) {
        let (tx, rx) = mpsc::channel(4096);
        if self.inner.finisher.set(tx).is_err() {
            return; // already started
        }
        let bg = &self.inner.background;
        let this = self.clone();
        self.inner.store.listen(self.inner.stop_background.clone(), move || {
            this.inner.wake.notify_one();
            this.inner.feed.send_modify(|n| *n += 1);
        });
        bg.spawn(self.clone().finisher_loop(rx));
        bg.spawn(self.clone().heartbeat_loop());
        if self.inner.config.consume {
            *self.inner.claimer.lock().unwrap() = Some(bg.spawn(self.clone().claim_loop()));
        }
        if self.inner.config.run_schedules {
            bg.spawn(self.clone().schedule_loop());
        }
    }

    /// Graceful stop: no new claims; running runs get `grace` to finish, then are
    /// interrupted and recorded as `interrupted`; then the loops stop.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.stop_claiming.cancel();
        // A claim committed as shutdown begins still spawns its executions: wait for the
        // claim loop to stop first, or they could start after the wait below saw none and
        // be left `running` with nobody to record their end.
        let claimer = self.inner.claimer.lock().unwrap().take();
        if let Some(claimer) = claimer {
            let _ = claimer.await;
        }
        self.inner.executions.close();
        if tokio::time::timeout(grace, self.inner.executions.wait()).await.is_err() {
            tracing::warn!(runs = self.running_here(), "grace period over: interrupting running runs");
            // A token rather than the runs running now: a claim that was in flight when
            // shutdown began may still start runs, and those must not be waited for.
            self.inner.stop_running.cancel();
            self.inner.executions.wait().await;
        }
        self.inner.stop_background.cancel();
        self.inner.background.close();
        self.inner.background.wait().await;
        if let Err(e) = self.inner.store.remove_host(&self.inner.config.host_id).await {
            tracing::warn!(error = %e, "could not remove host row");
        }
    }

    /// Runs one task in this process, without the claim loop (`fluid exec`): queues it,
    /// claims exactly that run, executes it and returns its final state.
    pub async fn execute_now(&self, task: &str, params: Value) -> Result<TaskRun, QueueError> {
        self.start_finisher_only();
        let run = self.queue(task, params, QueueOptions::default()).await?;
        let publish = self.inner.publish.write().await;
        let rules = self.claim_rules();
        let claimed = self.inner.store.claim_one(&self.inner.config.host_id, &run.id, &rules).await?;
        self.inner.shares.hold(&rules, &claimed.started);
        self.committed(claimed.ended.iter().cloned().chain(claimed.started.iter().map(|r| r.run.clone())));
        drop(publish);
        if let Some(done) = claimed.ended.into_iter().next() {
            return Ok(done);
        }
        let row = claimed.started.into_iter().next().ok_or_else(|| StoreError::RunNotFound(run.id.clone()))?;
        let task = self.task(&row.run.task).ok_or_else(|| QueueError::UnknownTask(row.run.task.clone()))?;
        let final_run = self.clone().execute(row, task, None).await.ok_or_else(|| StoreError::RunNotFound(run.id.clone()))?;
        Ok(final_run)
    }

    fn start_finisher_only(&self) {
        let (tx, rx) = mpsc::channel(64);
        if self.inner.finisher.set(tx).is_ok() {
            self.inner.background.spawn(self.clone().finisher_loop(rx));
        }
    }

    async fn claim_loop(self) {
        let inner = &self.inner;
        let mut backoff = Duration::from_millis(100);
        let mut last_full = false;
        loop {
            if inner.stop_claiming.is_cancelled() {
                return;
            }
            let mut free = inner.slots.available_permits();
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
                if let Ok(Ok(p)) = tokio::time::timeout(Duration::from_millis(2), inner.slots.acquire_many(half as u32)).await {
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
                    backoff = (backoff * 2).min(Duration::from_secs(5));
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
                _ = tokio::time::sleep(inner.config.poll) => {}
                _ = inner.stop_claiming.cancelled() => return,
            }
        }
    }

    /// Starts the executions of a claim, one slot of `slots` each (it holds at least as many
    /// as the claim started); the slots left over are released.
    fn launch(&self, claimed: Claimed, mut slots: OwnedSemaphorePermit) {
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
            inner.executions.spawn(this.execute(row, task, Some(permit)).instrument(span));
        }
    }

    /// Executes one claimed run and records its end; returns the recorded run. `slot` (the
    /// worker slot it runs in) goes to the finisher with the end.
    async fn execute(self, row: RunRow, task: Arc<Task>, slot: Option<OwnedSemaphorePermit>) -> Option<TaskRun> {
        let id = row.run.id.clone();
        let cancel = CancellationToken::new();
        let reason = Arc::new(OnceLock::new());
        self.inner.running.lock().unwrap().insert(id.clone(), Running { cancel: cancel.clone(), reason: reason.clone() });
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
            Outcome::Failure(e) => Outcome::Failure(cut_text(e, MAX_ERROR_BYTES)),
            Outcome::Aborted(e) => Outcome::Aborted(cut_text(e, MAX_ERROR_BYTES)),
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
                tracing::warn!(run = %id, task = %task.name, error = %e, ms = elapsed_ms, retry_in = ?retry_after, "end - failure")
            }
            Outcome::Success => tracing::debug!(run = %id, task = %task.name, ms = elapsed_ms, "end - success"),
            o => tracing::info!(run = %id, task = %task.name, outcome = ?o, ms = elapsed_ms, "end"),
        }
        let finish = Finish { id: id.clone(), lease: row.lease, outcome, retry_after };
        // Its group's room frees now, so the commit recording this end may fill it.
        self.inner.shares.release(&id);
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
            Err(e) => {
                tracing::error!(run = %id, error = %e, "could not record the end of a run");
                None
            }
        }
    }

    /// Sends a finish to the batching writer; retries while the database is unreachable
    /// so an end is not lost to a passing outage.
    async fn record_finish(&self, finish: Finish, mut slot: Option<OwnedSemaphorePermit>) -> Result<TaskRun, StoreError> {
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
    async fn finisher_loop(self, mut rx: mpsc::Receiver<FinishRequest>) {
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
                        let _ = reply.send(Err(StoreError::Db(sqlx::Error::Protocol(msg.clone()))));
                    }
                }
            }
            self.inner.wake.notify_one();
        }
    }

    async fn heartbeat_loop(self) {
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

    async fn schedule_loop(self) {
        let mut due: HashMap<String, i64> = HashMap::new();
        let mut pending: HashMap<String, String> = HashMap::new();
        loop {
            if let Err(e) = self.schedule_tick(&mut due, &mut pending).await {
                tracing::error!(error = %e, "schedule tick failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.inner.config.schedule_tick) => {}
                _ = self.inner.stop_claiming.cancelled() => return,
            }
        }
    }

    /// Fires every schedule whose due time has come. `due` caches each task's next due
    /// time; the stored one decides (another host may have fired it). `pending`: the last
    /// run this host's schedules queued for each task with a worker share (an untrusted
    /// component's): while it has not started, that task's due times are skipped, so a
    /// component whose runs cannot start (its share is full) does not pile up a backlog
    /// every claim would have to look past.
    async fn schedule_tick(&self, due: &mut HashMap<String, i64>, pending: &mut HashMap<String, String>) -> Result<(), StoreError> {
        let store = &self.inner.store;
        for task in self.tasks() {
            let Some(schedule) = &task.schedule else { continue };
            let now = now_us();
            let cached = match due.get(&task.name) {
                Some(&d) => d,
                None => store.schedule_due(&task.name, schedule.first_due(to_datetime(now)).timestamp_micros()).await?,
            };
            due.insert(task.name.clone(), cached);
            if now < cached {
                continue;
            }
            let seen = store.schedule_due(&task.name, cached).await?;
            if seen != cached {
                due.insert(task.name.clone(), seen);
                continue;
            }
            let next = schedule.next_due(to_datetime(seen), to_datetime(now)).timestamp_micros();
            let late = now - seen > MISFIRE_GRACE_US;
            let enabled = store.task_statuses().await?.get(&task.name).is_none_or(|s| s.enabled);
            let waiting = match pending.get(&task.name) {
                Some(id) => store.get_run(id).await?.is_some_and(|r| r.state == TaskState::Queued),
                None => false,
            };
            if waiting {
                tracing::debug!(task = %task.name, "its last scheduled run has not started; this due time is skipped");
            }
            let run = if late || !enabled || waiting {
                None
            } else {
                let delay = schedule.jitter();
                match self.new_run(&task.name, Value::Null, &QueueOptions { delay: Some(delay), ..Default::default() }) {
                    Ok(run) => Some(run),
                    Err(e) => {
                        // Registration refuses a scheduled task whose params refuse none; should
                        // one get here anyway, it loses this due time, not the other schedules.
                        tracing::error!(task = %task.name, error = %e, "a schedule could not queue its run; this due time is skipped");
                        None
                    }
                }
            };
            let publish = self.inner.publish.read().await;
            if store.fire_schedule(&task.name, seen, next, run.as_ref()).await? {
                match run {
                    Some(run) => {
                        tracing::debug!(task = %task.name, run = %run.id, "schedule fired");
                        if task.workers.is_some() {
                            pending.insert(task.name.clone(), run.id.clone());
                        }
                        self.committed([run]);
                        self.inner.wake.notify_one();
                    }
                    None if late => tracing::info!(task = %task.name, missed = %to_datetime(seen), "missed due time skipped"),
                    None => {}
                }
            }
            drop(publish);
            due.insert(task.name.clone(), store.schedule_due(&task.name, next).await?);
        }
        Ok(())
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    let p = e.into_panic();
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
