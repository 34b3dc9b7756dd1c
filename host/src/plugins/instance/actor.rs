//! One task per plugin owns its instance (store + bindings). Calls arrive over a
//! channel and run one at a time, each with a fresh deadline, and a wall-clock backstop
//! for a call stuck in a host import. The task lives on the guest pool (`guest_pool`):
//! the guest yields there on every epoch tick, and its CPU time is metered.
//!
//! Blame: a failure of work the host gave the plugin (a delivery, `register`, its CPU
//! budget) counts toward its quarantine. A `call` is a caller's request: a trap, an
//! overrun or an oversized result there costs the instance and shows in the counters,
//! but never the plugin's health, since whoever chose the arguments could otherwise get
//! it quarantined. A fresh instance failing to start is the plugin's own failure (its
//! `register` sees only the host's config), except once right after a caller's trap
//! when it serves a call (see `Restarts`). Deliveries go before queued calls, so a
//! flood of calls cannot starve the change feed.
use super::state::{PluginState, StoreMaker};
use super::supervisor::Supervisor;
use crate::metrics::PluginMeters;
use crate::plugins::engine::guest_pool::{self, Metered};
use crate::plugins::engine::limits::guest_text;
use crate::plugins::wit::bindings::tmp::{Event, Registration};
use crate::plugins::wit::bindings::{Plugin, PluginPre};
use crate::plugins::wit::convert::from_call_error;
use crate::scheduler::PluginCallError;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use wasmtime::{Store, UpdateDeadline};

/// Extra wall-clock time past the epoch deadline before a call blocked in a host import
/// (where epochs cannot interrupt it) is abandoned.
pub(crate) const BACKSTOP: Duration = Duration::from_millis(250);

/// Calls that may wait for one plugin; more are refused as `unavailable` (busy).
const CALL_QUEUE: usize = 16;

#[derive(Clone)]
pub(crate) struct ActorCtx {
    pub config_json: String,
    pub stores: StoreMaker,
    pub pre: PluginPre<PluginState>,
    pub sup: Arc<Supervisor>,
}

pub(crate) type Instance = (Store<PluginState>, Plugin);

/// Why a batch of events was not acknowledged.
#[derive(Debug)]
pub(crate) enum DeliveryError {
    /// `on-events` returned an error.
    Refused(String),
    /// The instance trapped, or no fresh one started (the actor counted it as the plugin's
    /// failure, or put it down to a caller's call).
    Trapped(String),
    /// It failed or trapped after the database failed one of its storage calls (busy with
    /// other plugins, unreachable): retried later, not counted against it.
    NotItsFault(String),
    /// The plugin is stopping (unloaded, replaced or quarantined).
    Stopped,
}

/// What a queued call holds of its caller's allowances (its share of the plugin's queue,
/// the bytes of its arguments): given back when the call leaves the queue.
pub(crate) type Ticket = Box<dyn Send>;

enum Job {
    Events { events: Vec<Event>, reply: oneshot::Sender<Result<(), DeliveryError>> },
    Call { method: String, args: String, chain: Vec<String>, reply: oneshot::Sender<Result<String, PluginCallError>>, _ticket: Ticket },
}

#[derive(Clone)]
pub(crate) struct Actor {
    events: mpsc::Sender<Job>,
    calls: mpsc::Sender<Job>,
    sup: Arc<Supervisor>,
}

/// Arms the store for one call of at most `timeout`: on every epoch tick the guest
/// yields to the pool, and past `timeout` it traps.
pub(crate) fn arm(store: &mut Store<PluginState>, timeout: Duration) {
    let end = Instant::now() + timeout;
    store.epoch_deadline_callback(
        move |_| if Instant::now() >= end { Err(wasmtime::Trap::Interrupt.into()) } else { Ok(UpdateDeadline::Yield(1)) },
    );
    store.set_epoch_deadline(1);
}

pub(crate) fn describe_trap(e: &wasmtime::Error) -> String {
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        match trap {
            wasmtime::Trap::Interrupt => return "trapped: call took longer than its time limit".into(),
            wasmtime::Trap::StackOverflow => return "trapped: stack overflow".into(),
            _ => {}
        }
    }
    // The wasm backtrace (function indexes) helps no one reading `/plugins` or an HTTP
    // answer: the message keeps the trap's own words, the log keeps the backtrace.
    let msg = match e.downcast_ref::<wasmtime::WasmBacktrace>() {
        Some(_) => {
            tracing::debug!(error = ?e, "guest trap with its wasm backtrace");
            e.root_cause().to_string()
        }
        None => format!("{e:#}"),
    };
    if msg.contains("memory") && msg.contains("grow") {
        format!("trapped: memory limit reached ({msg})")
    } else {
        format!("trapped: {msg}")
    }
}

/// Runs one call into the instance under its deadline: a trap or an overrun is `Err`.
async fn bounded<T>(sup: &Supervisor, call: impl Future<Output = wasmtime::Result<T>>) -> Result<T, String> {
    match tokio::time::timeout(sup.policy.limits.call_timeout() + BACKSTOP, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(describe_trap(&e)),
        Err(_) => Err("trapped: call took longer than its time limit (blocked in a host call)".into()),
    }
}

/// A fresh instance with `register` called, on the guest pool: what the loader checks.
pub(crate) async fn instantiate_off_host(ctx: &ActorCtx) -> Result<(Instance, Registration), String> {
    let ctx = ctx.clone();
    guest_pool::run(async move { instantiate(&ctx, true).await }).await
}

/// A fresh instance with `register` called; its CPU is the plugin's own work when `own`.
pub(crate) async fn instantiate(ctx: &ActorCtx, own: bool) -> Result<(Instance, Registration), String> {
    let before = ctx.sup.cpu_ns.load(Ordering::Relaxed);
    let out = Metered::new(instantiate_unmetered(ctx), &ctx.sup.cpu_ns).await;
    if own {
        let spent = ctx.sup.cpu_ns.load(Ordering::Relaxed).saturating_sub(before);
        ctx.sup.own_cpu_ns.fetch_add(spent, Ordering::Relaxed);
    }
    let out = out?;
    crate::plugins::engine::limits::check_registration(&out.1)?;
    Ok(out)
}

async fn instantiate_unmetered(ctx: &ActorCtx) -> Result<(Instance, Registration), String> {
    let mut store = ctx.stores.new_store(&ctx.sup)?;
    let timeout = ctx.sup.policy.limits.call_timeout();
    arm(&mut store, timeout);
    let limit = timeout + BACKSTOP;
    let plugin = match tokio::time::timeout(limit, ctx.pre.instantiate_async(&mut store)).await {
        Ok(r) => r.map_err(|e| format!("cannot instantiate: {}", store.data().sandbox.stderr.explain(describe_trap(&e))))?,
        Err(_) => return Err("cannot instantiate: took longer than the time limit".into()),
    };
    arm(&mut store, timeout);
    let api = plugin.fluid_scheduler_task_manager_plugin();
    store.data_mut().in_register = true;
    let reg = tokio::time::timeout(limit, api.call_register(&mut store, &ctx.config_json)).await;
    store.data_mut().in_register = false;
    // A `register` that failed for the database's sake (busy, or out of time waiting for
    // connections others held) is marked so: no failure of the plugin's own.
    let theirs = |store: &wasmtime::Store<PluginState>, msg: String| {
        let d = store.data();
        if d.not_its_fault || (waited_out(d, &ctx.sup) && msg.contains(OUT_OF_TIME)) { format!("{DATABASE_FAULT}{msg}") } else { msg }
    };
    let reg = match reg {
        Ok(Ok(Ok(r))) => r,
        Ok(Ok(Err(e))) => return Err(theirs(&store, format!("register refused: {}", guest_text(e)))),
        Ok(Err(e)) => return Err(theirs(&store, format!("register {}", store.data().sandbox.stderr.explain(describe_trap(&e))))),
        Err(_) => return Err(theirs(&store, "register trapped: call took longer than its time limit (blocked in a host call)".into())),
    };
    Ok(((store, plugin), reg))
}

/// The words every out-of-time trap's message holds.
const OUT_OF_TIME: &str = "took longer than its time limit";

/// How a failed start's message begins when the database, not the plugin, made it fail.
pub(crate) const DATABASE_FAULT: &str = "the database was busy: ";

/// Whether the job's storage calls waited a quarter of its time or more for connections
/// other plugins held.
fn waited_out(state: &PluginState, sup: &Supervisor) -> bool {
    state.storage_waited * 4 >= sup.policy.limits.call_timeout()
}

impl Actor {
    pub(crate) fn spawn(ctx: ActorCtx, first: Instance, stop: CancellationToken) -> Actor {
        // One batch is in flight at a time (the delivery loop waits for it).
        let (events, events_rx) = mpsc::channel(1);
        let (calls, calls_rx) = mpsc::channel(CALL_QUEUE);
        let sup = ctx.sup.clone();
        guest_pool::spawn(run(ctx, Some(first), events_rx, calls_rx, stop));
        Actor { events, calls, sup }
    }

    fn gone(&self) -> PluginCallError {
        PluginCallError::Unavailable(
            self.sup.unavailable().unwrap_or_else(|| format!("plugin {} was unloaded or is being replaced", self.sup.name)),
        )
    }

    pub(crate) async fn on_events(&self, events: Vec<Event>) -> Result<(), DeliveryError> {
        let (reply, rx) = oneshot::channel();
        self.events.send(Job::Events { events, reply }).await.map_err(|_| DeliveryError::Stopped)?;
        rx.await.map_err(|_| DeliveryError::Stopped)?
    }

    pub(crate) async fn call(&self, method: String, args: String, chain: Vec<String>, ticket: Ticket) -> Result<String, PluginCallError> {
        let span = tracing::debug_span!("fluid.plugin_call", plugin = %self.sup.name, method = %method);
        async move {
            let (reply, rx) = oneshot::channel();
            // A full queue refuses at once: waiting callers would each hold their arguments.
            self.calls.try_send(Job::Call { method, args, chain, reply, _ticket: ticket }).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => PluginCallError::Unavailable(format!(
                    "plugin {} is busy: {CALL_QUEUE} calls already wait for it; retry later",
                    self.sup.name
                )),
                mpsc::error::TrySendError::Closed(_) => self.gone(),
            })?;
            rx.await.map_err(|_| self.gone())?
        }
        .instrument(span)
        .await
    }
}

/// Why the actor has no instance, and how starting fresh ones went since: whom a failed
/// start is put down to.
#[derive(Default)]
struct Restarts {
    /// The last instance was lost to a caller's call: starting the next is the caller's
    /// doing (its CPU is not the plugin's own work).
    lost_to_call: bool,
    /// Starts that failed since an instance last started.
    failed_in_a_row: u32,
}

impl Restarts {
    fn started(&mut self) {
        *self = Restarts::default();
    }

    /// Records a start that failed with `msg`, for a delivery when `delivery` (else a call).
    /// Only the first failure after a caller's trap, for a call, is the caller's, like the
    /// trap; otherwise a plugin whose `register` fails after one trapped call would never
    /// be quarantined and would hold its checkpoint (and the feed) for ever.
    fn start_failed(&mut self, sup: &Supervisor, msg: &str, delivery: bool) {
        if msg.starts_with(DATABASE_FAULT) {
            // The database's doing (another plugin holding it): nobody's failure.
            return;
        }
        self.failed_in_a_row = self.failed_in_a_row.saturating_add(1);
        if !self.lost_to_call || delivery || self.failed_in_a_row > 1 {
            sup.fail(msg, false);
        } else {
            sup.call_trapped(msg);
        }
    }
}

async fn run(
    ctx: ActorCtx,
    mut instance: Option<Instance>,
    mut events: mpsc::Receiver<Job>,
    mut calls: mpsc::Receiver<Job>,
    stop: CancellationToken,
) {
    let sup = ctx.sup.clone();
    let meters = ctx.stores.scheduler.metrics().plugin(&sup.name);
    let mut restarts = Restarts::default();
    loop {
        let job = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            Some(j) = events.recv() => j,
            Some(j) = calls.recv() => j,
            else => return,
        };
        if let Job::Call { reply, .. } = &job
            && reply.is_closed()
        {
            // Its caller stopped waiting (its run timed out or was cancelled): nobody would
            // get the answer, so the call is dropped unrun, its allowances given back.
            continue;
        }
        let own_work = matches!(job, Job::Events { .. });
        // A delivery that trapped waiting on the database is not its failure either.
        let mut excused = false;
        let cpu_before = sup.cpu_ns.load(Ordering::Relaxed);
        if instance.is_none() {
            // After a caller's call cost the instance, starting a new one is still the
            // caller's doing: its CPU is not counted as own work.
            match instantiate(&ctx, !restarts.lost_to_call).await {
                Ok((i, _)) => {
                    instance = Some(i);
                    restarts.started();
                }
                Err(e) => {
                    tracing::error!(plugin = %sup.name, error = %e, "cannot start a fresh instance");
                    restarts.start_failed(&sup, &e, own_work);
                    meters.errors.inc();
                    match job {
                        Job::Events { reply, .. } => drop(reply.send(Err(DeliveryError::Trapped(e)))),
                        Job::Call { reply, .. } => drop(reply.send(Err(PluginCallError::Unavailable(e)))),
                    }
                    continue;
                }
            }
        }
        // A caller may have given up while a fresh instance started.
        if let Job::Call { reply, .. } = &job
            && reply.is_closed()
        {
            continue;
        }
        let (store, plugin) = instance.as_mut().expect("instance present");
        arm(store, sup.policy.limits.call_timeout());
        store.data().sandbox.stderr.clear();
        store.data_mut().not_its_fault = false;
        store.data_mut().storage_waited = Duration::ZERO;
        let api = plugin.fluid_scheduler_task_manager_plugin();
        let started = Instant::now();
        let trapped = match job {
            Job::Events { events, reply } => {
                store.data_mut().chain.clear();
                store.data_mut().delivering = events.iter().map(|e| e.run.id.clone()).collect();
                let fut = api.call_on_events(&mut *store, &events);
                let out = Metered::new(bounded(&sup, fut), &sup.cpu_ns).await.map_err(|msg| store.data().sandbox.stderr.explain(msg));
                meters.event_calls.inc();
                meters.event_duration.observe(started.elapsed().as_secs_f64());
                // Its storage calls failed for the database's sake: not its failure; nor
                // running out of time having waited a quarter of it or more for
                // connections other plugins held (any other trap stays its own).
                let database = store.data().not_its_fault;
                let waited_out = waited_out(store.data(), &sup);
                match out {
                    Ok(r) => {
                        if r.is_ok() {
                            meters.events.inc_by(events.len() as u64);
                        } else {
                            meters.errors.inc();
                        }
                        let r = r.map_err(|m| {
                            let m = guest_text(m);
                            if database { DeliveryError::NotItsFault(m) } else { DeliveryError::Refused(m) }
                        });
                        let _ = reply.send(r);
                        None
                    }
                    Err(msg) if database || (waited_out && msg.contains(OUT_OF_TIME)) => {
                        let _ = reply.send(Err(DeliveryError::NotItsFault(msg.clone())));
                        excused = true;
                        Some(msg)
                    }
                    Err(msg) => {
                        let _ = reply.send(Err(DeliveryError::Trapped(msg.clone())));
                        Some(msg)
                    }
                }
            }
            Job::Call { method, args, chain, reply, .. } => {
                store.data_mut().chain = chain;
                store.data_mut().delivering.clear();
                let fut = api.call_call(&mut *store, &method, &args);
                let out = Metered::new(bounded(&sup, fut), &sup.cpu_ns).await.map_err(|msg| store.data().sandbox.stderr.explain(msg));
                sup.update(|h| h.calls += 1);
                meters.calls.inc();
                meters.call_duration.observe(started.elapsed().as_secs_f64());
                match out {
                    Ok(r) => {
                        let _ = reply.send(settle(&sup, &meters, &method, r.map_err(from_call_error)));
                        None
                    }
                    Err(msg) => {
                        let _ = reply.send(Err(PluginCallError::Unavailable(msg.clone())));
                        Some(msg)
                    }
                }
            }
        };
        sup.record_duration(started.elapsed());
        if let Some(msg) = trapped {
            tracing::warn!(plugin = %sup.name, error = %msg, "plugin trapped; its instance is discarded");
            if own_work && !excused {
                sup.fail(&msg, true);
            } else {
                sup.call_trapped(&msg);
            }
            restarts.lost_to_call = !own_work;
            meters.traps.inc();
            instance = None;
        }
        let spent = sup.cpu_ns.load(Ordering::Relaxed).saturating_sub(cpu_before);
        meters.cpu_seconds.inc_by(spent as f64 / 1e9);
        if own_work {
            sup.own_cpu_ns.fetch_add(spent, Ordering::Relaxed);
            if let Some(msg) = sup.check_cpu_budget() {
                tracing::warn!(plugin = %sup.name, error = %msg, "plugin over its CPU budget");
                meters.limits_hit.inc();
            }
        }
    }
}

/// Counts a call's outcome and refuses a result over the plugin's limit.
fn settle(sup: &Supervisor, meters: &PluginMeters, method: &str, out: Result<String, PluginCallError>) -> Result<String, PluginCallError> {
    let max = sup.policy.limits.max_result_bytes();
    match out {
        Ok(text) if text.len() > max => {
            let msg = format!("result of {method} is {} bytes, over the limit of {max} bytes (max_result_kib)", text.len());
            tracing::warn!(plugin = %sup.name, error = %msg, "plugin result refused");
            sup.limit_hit("max_result_kib", &msg);
            sup.update(|h| {
                h.errors += 1;
                h.last_error = Some(msg.clone());
            });
            meters.errors.inc();
            meters.limits_hit.inc();
            Err(PluginCallError::Failed(msg))
        }
        Ok(text) => Ok(text),
        Err(e) => {
            // A caller's mistake is not the plugin's error.
            if !matches!(e, PluginCallError::NotFound(_) | PluginCallError::InvalidInput(_)) {
                meters.errors.inc();
                sup.update(|h| {
                    h.errors += 1;
                    h.last_error = Some(e.to_string());
                });
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::engine::policy::Limits;

    fn sup(after: u32) -> Supervisor {
        Supervisor::for_test(Limits { quarantine_after: after, quarantine_window_s: 60, ..Limits::default() })
    }

    #[test]
    fn a_plugin_whose_register_keeps_failing_after_a_callers_trap_is_quarantined() {
        let s = sup(3);
        let mut r = Restarts { lost_to_call: true, ..Restarts::default() };
        // Deliveries retried after a caller's trap, each finding no instance.
        for _ in 0..3 {
            r.start_failed(&s, "register refused: no", true);
        }
        assert!(s.quarantined() && s.stop.is_cancelled());
        // The same with calls only: the first failure is the caller's, the next ones its own.
        let s = sup(3);
        let mut r = Restarts { lost_to_call: true, ..Restarts::default() };
        r.start_failed(&s, "register refused: no", false);
        assert_eq!(s.health().recent_failures, 0);
        r.start_failed(&s, "register refused: no", false);
        r.start_failed(&s, "register refused: no", false);
        assert_eq!(s.health().recent_failures, 2);
        r.start_failed(&s, "register refused: no", false);
        assert!(s.quarantined());
    }

    /// A start that failed because the database was busy (another plugin holding it)
    /// counts against no one, for a delivery too; the plugin's own failure still counts.
    #[test]
    fn a_start_failed_for_the_database_costs_a_plugin_nothing() {
        let s = sup(1);
        let mut r = Restarts::default();
        for _ in 0..3 {
            r.start_failed(&s, &format!("{DATABASE_FAULT}register refused: the database is busy"), true);
        }
        assert!(!s.quarantined() && s.health().recent_failures == 0);
        r.start_failed(&s, "register refused: no", true);
        assert!(s.quarantined());
    }

    #[test]
    fn a_callers_trap_followed_by_one_failed_start_costs_a_plugin_nothing() {
        let s = sup(1);
        let mut r = Restarts::default();
        for _ in 0..5 {
            r.lost_to_call = true;
            r.start_failed(&s, "cannot instantiate: busy", false);
            r.started();
        }
        let h = s.health();
        assert!(!s.quarantined() && h.recent_failures == 0 && h.errors == 5, "{h:?}");
        // Lost to its own work, a failed start is its own, as before.
        Restarts::default().start_failed(&s, "register refused: no", false);
        assert!(s.quarantined());
    }
}
