//! The engine: the scheduler's handle, its registry of tasks, queueing and cancelling,
//! start and shutdown. Each background role has a module of its own: the producer claims,
//! the executor runs, the completer records ends (and claims the next runs), and the
//! maintenance services beat the heartbeat (rescuing runs of lost hosts), prune the change
//! feed and queue scheduled runs. Each role's module holds its config and defaults, its
//! loop, a `run_once` step where it has one, and unit tests beside them.

mod completer;
mod executor;
mod feed_pruner;
mod heartbeat;
mod producer;
mod queuer;
mod reserved;
mod run_pruner;
mod schedules;
#[cfg(test)]
mod testing;

pub use completer::CompleterConfig;
pub use feed_pruner::FeedPrunerConfig;
pub use heartbeat::HeartbeatConfig;
pub use producer::ProducerConfig;
pub use queuer::QueuerConfig;
pub use run_pruner::RunPrunerConfig;
pub use schedules::SchedulesConfig;

use super::context::{PluginDirectory, TaskContext};
use super::share::Shares;
use super::task::{Task, TaskError};
use crate::metrics::Metrics;
use crate::store::{Begin, Cancel, ClaimRules, Claimed, Cycle, Finish, Outcome, RunRow, ShareRoom};
use crate::store::{Store, StoreError};
use crate::time::{now_us, to_datetime};
use crate::types::{MAX_PARAMS_BYTES, MAX_PARAMS_VALUES, ParamsShape, Priority, TaskRun, TaskState, error_text};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Tuning of one host's scheduler: what it does, and each role's own config (defaults
/// documented with each).
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Runs executing at once on this host.
    pub workers: usize,
    /// Identity in `fluid_hosts` and in each run's `owner`.
    pub host_id: String,
    /// Whether this host fires schedules (every host may; each due time fires once).
    pub run_schedules: bool,
    /// Whether this host claims runs (false: an API-only host).
    pub consume: bool,
    /// The producer: claims runs.
    pub producer: ProducerConfig,
    /// The completer: records ends in batches, and claims the next runs with them.
    pub completer: CompleterConfig,
    /// The queuer: group commit of runs queued one at a time.
    pub queuer: QueuerConfig,
    /// The heartbeat: this host alive, cancel requests, rescue of lost hosts' runs.
    pub heartbeat: HeartbeatConfig,
    /// The feed pruner: drops the change feed every plugin has consumed.
    pub feed_pruner: FeedPrunerConfig,
    /// The run pruner: drops finished runs after a while.
    pub run_pruner: RunPrunerConfig,
    /// Schedules: queue one run per due time.
    pub schedules: SchedulesConfig,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            workers: 8,
            host_id: format!("host-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
            run_schedules: true,
            consume: true,
            producer: ProducerConfig::default(),
            completer: CompleterConfig::default(),
            queuer: QueuerConfig::default(),
            heartbeat: HeartbeatConfig::default(),
            feed_pruner: FeedPrunerConfig::default(),
            run_pruner: RunPrunerConfig::default(),
            schedules: SchedulesConfig::default(),
        }
    }
}

/// Why a run could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// No task of that name is registered on this host (the payload is the name).
    #[error("task {0:?} not found")]
    UnknownTask(String),
    /// The task's validator refused the params; nothing was stored.
    #[error("invalid params for task {task}: {message}")]
    InvalidParams {
        /// The task the run was for.
        task: String,
        /// Why the params were refused (with the batch index, for `queue_many`).
        message: String,
    },
    /// The store failed to write the run (for instance the database is unreachable).
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

/// What executions hand the completer: an end, or the start of a reserved run (recorded in
/// its next commit; refused when the run moved on, and the execution is then stopped).
enum Request {
    Finish(FinishRequest),
    Begin(Begin),
}

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
    finisher: OnceLock<mpsc::Sender<Request>>,
    /// Runs claimed ahead for this host's next free workers (`reserved`).
    reserved: Mutex<reserved::Reserved>,
    /// A cycle failed, perhaps after its commit: reservations may be held by no one here.
    answer_lost: std::sync::atomic::AtomicBool,
    /// Runs queued one at a time, written together when they arrive together (`queuer`).
    queuer: OnceLock<mpsc::Sender<queuer::QueueRequest>>,
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

/// Most runs one `queue_many` queues: one transaction, and one answer, of bounded size.
pub const MAX_BATCH: usize = 1000;

/// Handle to the scheduler; cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

impl Scheduler {
    /// A scheduler over `store`, with no tasks and nothing running yet: register tasks,
    /// then [`start`](Self::start) it. [`Host`](crate::Host) does all of this for you.
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
                reserved: Mutex::default(),
                answer_lost: Default::default(),
                queuer: OnceLock::new(),
                changes: broadcast::channel(16_384).0,
                publish: tokio::sync::RwLock::new(()),
                feed: watch::channel(0).0,
                plugins: RwLock::default(),
                metrics,
                config: SchedulerConfig { workers, ..config },
            }),
        }
    }

    /// The durable store the scheduler runs on.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The config it was built with (`workers` at least one).
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

    /// The registered task of that name, if any.
    pub fn task(&self, name: &str) -> Option<Arc<Task>> {
        self.inner.registry.read().unwrap().get(name).cloned()
    }

    /// Every registered task, in name order.
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

    /// Every state change committed by this host, after commit. A run whose params hold
    /// more than [`BROADCAST_PARAMS_VALUES`] values or [`BROADCAST_PARAMS_BYTES`] bytes of
    /// strings comes with them replaced by `{"$truncated": {"params": true}}` (the store
    /// and the change feed keep them whole): a receiver that falls behind holds every change
    /// it has not read, and queued params are the queuer's choice.
    pub fn subscribe(&self) -> broadcast::Receiver<TaskRun> {
        self.inner.changes.subscribe()
    }

    /// Bumped after every commit that appended to the change feed (wakes the dispatcher).
    pub(crate) fn feed_signal(&self) -> watch::Receiver<u64> {
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
            if self.inner.changes.receiver_count() > 0 {
                let _ = self.inner.changes.send(broadcast_copy(r));
            }
        }
        self.inner.feed.send_modify(|n| *n += 1);
    }

    /// Builds a validated `queued` run without storing it.
    fn new_run(&self, name: &str, params: Value, opts: &QueueOptions) -> Result<TaskRun, QueueError> {
        let task = self.task(name).ok_or_else(|| QueueError::UnknownTask(name.into()))?;
        // Parsed, a value takes many times its text (`[0,0,…]`: two bytes, over thirty
        // parsed), and every reserved and running run holds its params parsed.
        // Counted before the params are checked, which costs per value too.
        let values = ParamsShape::of(&params).values;
        if values > MAX_PARAMS_VALUES {
            let message = format!("params hold {values} JSON values, over the limit of {MAX_PARAMS_VALUES}");
            return Err(QueueError::InvalidParams { task: name.into(), message });
        }
        let params = task.validate_params(params).map_err(|message| QueueError::InvalidParams { task: name.into(), message })?;
        let size = params.to_string().len();
        if size > MAX_PARAMS_BYTES {
            let message = format!("params are {size} bytes of JSON, over the limit of {} bytes", MAX_PARAMS_BYTES);
            return Err(QueueError::InvalidParams { task: name.into(), message });
        }
        // JSON may carry one (`\u0000`), PostgreSQL's jsonb refuses it: a plugin storing the
        // run's params there (the db plugin) would fail on every delivery of its events.
        // Looked for in the params as stored (a check may drop keys it does not know).
        if ParamsShape::of(&params).nul {
            let message = "params hold a NUL character (\\u0000), which no store accepts".to_string();
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
            let (reply, answer) = oneshot::channel();
            match self.queuer().send((run.clone(), reply)).await {
                Ok(()) => {
                    answer.await.map_err(|_| StoreError::Other(anyhow::anyhow!("the scheduler stopped before the run was queued")))??
                }
                // The queuer has ended (after shutdown): write it here.
                Err(_) => self.insert_now(std::slice::from_ref(&run)).await?,
            }
            Ok(run)
        }
        .instrument(span)
        .await
    }

    /// Queues one run of `task` per params, in one transaction: all of them, or none when
    /// any params are refused (the error names the first, by its index). At most
    /// [`MAX_BATCH`] at once.
    pub async fn queue_many(&self, task: &str, params: Vec<Value>, opts: QueueOptions) -> Result<Vec<TaskRun>, QueueError> {
        if params.len() > MAX_BATCH {
            let message = format!("{} runs in one batch, over the limit of {MAX_BATCH}", params.len());
            return Err(QueueError::InvalidParams { task: task.into(), message });
        }
        let mut runs = Vec::with_capacity(params.len());
        for (i, p) in params.into_iter().enumerate() {
            runs.push(self.new_run(task, p, &opts).map_err(|e| match e {
                QueueError::InvalidParams { task, message } => QueueError::InvalidParams { task, message: format!("[{i}]: {message}") },
                other => other,
            })?);
        }
        if runs.is_empty() {
            return Ok(runs);
        }
        let span = tracing::debug_span!("fluid.queue_many", task = %task, runs = runs.len());
        async move {
            self.insert_now(&runs).await?;
            Ok(runs)
        }
        .instrument(span)
        .await
    }

    /// The run of that id as stored now, whichever host queued or ran it.
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
                self.forget_reserved(id);
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

    /// A run this host may have reserved was aborted in the store: never start it, and stop
    /// it if it started (its start is not recorded yet, so the store could not say).
    fn forget_reserved(&self, id: &str) {
        self.inner.reserved.lock().unwrap().forget(id);
        self.stop_local(id, Outcome::Aborted("cancelled".into()));
    }

    fn stop_local(&self, id: &str, outcome: Outcome) {
        if let Some(r) = self.inner.running.lock().unwrap().get(id) {
            let _ = r.reason.set(outcome);
            r.cancel.cancel();
        }
    }

    /// Enables or disables a task for every host on the store. While disabled, its queued
    /// runs are aborted when claimed and its schedule skips its due times.
    pub async fn set_enabled(&self, task: &str, enabled: bool) -> Result<(), StoreError> {
        self.inner.store.set_enabled(task, enabled).await
    }

    /// Aborts every queued run of the given priorities.
    pub async fn clear_queue(&self, priorities: &[Priority]) -> Result<BTreeMap<Priority, u64>, StoreError> {
        let _publish = self.inner.publish.write().await;
        let (counts, aborted) = self.inner.store.clear_queue(priorities).await?;
        for run in &aborted {
            self.forget_reserved(&run.id);
        }
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
        let (tx, rx) = mpsc::channel(self.inner.config.completer.inbox);
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
        bg.spawn(self.clone().feed_pruner_loop());
        bg.spawn(self.clone().run_pruner_loop());
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
        // Reservations not started go back to the queue for other hosts.
        self.inner.reserved.lock().unwrap().take_stale(Duration::ZERO);
        if let Err(e) = self.inner.store.release_all(&self.inner.config.host_id).await {
            tracing::warn!(error = %e, "could not release this host's reservations; the rescue will");
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
        let final_run = self.clone().execute(row, task, None, None).await.ok_or_else(|| StoreError::RunNotFound(run.id.clone()))?;
        Ok(final_run)
    }

    fn start_finisher_only(&self) {
        let (tx, rx) = mpsc::channel(64);
        if self.inner.finisher.set(tx).is_ok() {
            self.inner.background.spawn(self.clone().finisher_loop(rx));
        }
    }
}

/// Most values a broadcast run's params may hold before they are left out of it.
pub const BROADCAST_PARAMS_VALUES: usize = 4096;
/// Most bytes of strings and keys a broadcast run's params may hold before they are left
/// out of it.
pub const BROADCAST_PARAMS_BYTES: usize = 64 * 1024;

/// `run` as the change broadcast carries it: params past the broadcast's bounds left out,
/// so what receivers that fall behind hold is bounded by the broadcast's capacity alone.
fn broadcast_copy(mut run: TaskRun) -> TaskRun {
    if !ParamsShape::within(&run.params, BROADCAST_PARAMS_VALUES, BROADCAST_PARAMS_BYTES) {
        run.params = serde_json::json!({ "$truncated": { "params": true } });
    }
    run
}
