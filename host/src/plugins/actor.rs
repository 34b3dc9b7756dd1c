//! One tokio task per plugin owns its instance (store + bindings). Calls arrive over a
//! channel and run one at a time, each with a fresh epoch deadline, and a wall-clock
//! backstop for a call stuck in a host import. A trap (including a deadline or the memory
//! cap) poisons the instance: it is dropped, the caller gets `unavailable`, the supervisor
//! counts the failure, and the next call instantiates (and registers) a fresh one.
//! A result over the plugin's `max_result_kib` is refused with `failed`, never passed on.

use super::bindings::tmp::{Event, Registration};
use super::bindings::{Plugin, PluginPre};
use super::host_api::from_call_error;
use super::runtime::{EPOCH_TICK, Shared};
use super::sandbox::{PluginState, new_store};
use super::supervisor::Supervisor;
use crate::metrics::PluginMeters;
use crate::scheduler::PluginCallError;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use wasmtime::Store;

/// Extra wall-clock time past the epoch deadline before a call blocked in a host import
/// (where epochs cannot interrupt it) is abandoned.
pub(crate) const BACKSTOP: Duration = Duration::from_millis(250);

pub(crate) struct ActorCtx {
    pub config_json: String,
    pub shared: Arc<Shared>,
    pub pre: PluginPre<PluginState>,
    pub sup: Arc<Supervisor>,
}

pub(crate) type Instance = (Store<PluginState>, Plugin);

/// Why a batch of events was not acknowledged.
#[derive(Debug)]
pub(crate) enum DeliveryError {
    /// `on-events` returned an error.
    Refused(String),
    /// The instance trapped (already counted as a failure).
    Trapped(String),
    /// The plugin is stopping (unloaded, replaced or quarantined).
    Stopped,
}

enum Job {
    Events { events: Vec<Event>, reply: oneshot::Sender<Result<(), DeliveryError>> },
    Call { method: String, args: String, chain: Vec<String>, reply: oneshot::Sender<Result<String, PluginCallError>> },
}

#[derive(Clone)]
pub(crate) struct Actor {
    tx: mpsc::Sender<Job>,
    sup: Arc<Supervisor>,
}

fn deadline_ticks(sup: &Supervisor) -> u64 {
    (sup.policy.limits.call_timeout().as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

pub(crate) fn describe_trap(e: &wasmtime::Error) -> String {
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        match trap {
            wasmtime::Trap::Interrupt => return "trapped: call took longer than its time limit".into(),
            wasmtime::Trap::StackOverflow => return "trapped: stack overflow".into(),
            _ => {}
        }
    }
    let msg = format!("{e:#}");
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

/// A fresh instance with `register` called: what the loader checks and the actor reuses.
pub(crate) async fn instantiate(ctx: &ActorCtx) -> Result<(Instance, Registration), String> {
    let mut store = new_store(&ctx.shared, &ctx.sup)?;
    store.set_epoch_deadline(deadline_ticks(&ctx.sup));
    let limit = ctx.sup.policy.limits.call_timeout() + BACKSTOP;
    let plugin = match tokio::time::timeout(limit, ctx.pre.instantiate_async(&mut store)).await {
        Ok(r) => r.map_err(|e| format!("cannot instantiate: {}{}", describe_trap(&e), store.data().stderr.note()))?,
        Err(_) => return Err("cannot instantiate: took longer than the time limit".into()),
    };
    store.set_epoch_deadline(deadline_ticks(&ctx.sup));
    let api = plugin.fluid_scheduler_task_manager_plugin();
    let reg = match tokio::time::timeout(limit, api.call_register(&mut store, &ctx.config_json)).await {
        Ok(r) => r
            .map_err(|e| format!("register {}{}", describe_trap(&e), store.data().stderr.note()))?
            .map_err(|e| format!("register refused: {e}"))?,
        Err(_) => return Err("register trapped: call took longer than its time limit (blocked in a host call)".into()),
    };
    Ok(((store, plugin), reg))
}

impl Actor {
    pub(crate) fn spawn(ctx: ActorCtx, first: Instance, stop: CancellationToken) -> Actor {
        let (tx, rx) = mpsc::channel(64);
        let sup = ctx.sup.clone();
        tokio::spawn(run(ctx, Some(first), rx, stop));
        Actor { tx, sup }
    }

    fn gone(&self) -> PluginCallError {
        PluginCallError::Unavailable(
            self.sup.unavailable().unwrap_or_else(|| format!("plugin {} was unloaded or is being replaced", self.sup.name)),
        )
    }

    pub(crate) async fn on_events(&self, events: Vec<Event>) -> Result<(), DeliveryError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Job::Events { events, reply }).await.map_err(|_| DeliveryError::Stopped)?;
        rx.await.map_err(|_| DeliveryError::Stopped)?
    }

    pub(crate) async fn call(&self, method: String, args: String, chain: Vec<String>) -> Result<String, PluginCallError> {
        let span = tracing::debug_span!("fluid.plugin_call", plugin = %self.sup.name, method = %method);
        async move {
            let (reply, rx) = oneshot::channel();
            self.tx.send(Job::Call { method, args, chain, reply }).await.map_err(|_| self.gone())?;
            rx.await.map_err(|_| self.gone())?
        }
        .instrument(span)
        .await
    }
}

async fn run(ctx: ActorCtx, mut instance: Option<Instance>, mut rx: mpsc::Receiver<Job>, stop: CancellationToken) {
    let sup = ctx.sup.clone();
    let meters = ctx.shared.scheduler.metrics().plugin(&sup.name);
    loop {
        let job = tokio::select! {
            j = rx.recv() => match j { Some(j) => j, None => return },
            _ = stop.cancelled() => return,
        };
        if instance.is_none() {
            match instantiate(&ctx).await {
                Ok((i, _)) => instance = Some(i),
                Err(e) => {
                    tracing::error!(plugin = %sup.name, error = %e, "cannot start a fresh instance");
                    sup.fail(&e, false);
                    meters.errors.inc();
                    match job {
                        Job::Events { reply, .. } => drop(reply.send(Err(DeliveryError::Trapped(e)))),
                        Job::Call { reply, .. } => drop(reply.send(Err(PluginCallError::Unavailable(e)))),
                    }
                    continue;
                }
            }
        }
        let (store, plugin) = instance.as_mut().expect("instance present");
        store.set_epoch_deadline(deadline_ticks(&sup));
        store.data().stderr.clear();
        let api = plugin.fluid_scheduler_task_manager_plugin();
        let started = Instant::now();
        let trapped = match job {
            Job::Events { events, reply } => {
                store.data_mut().chain.clear();
                let fut = api.call_on_events(&mut *store, &events);
                let out = bounded(&sup, fut).await.map_err(|msg| msg + &store.data().stderr.note());
                meters.event_calls.inc();
                meters.event_duration.observe(started.elapsed().as_secs_f64());
                match out {
                    Ok(r) => {
                        if r.is_ok() {
                            meters.events.inc_by(events.len() as u64);
                        } else {
                            meters.errors.inc();
                        }
                        let _ = reply.send(r.map_err(DeliveryError::Refused));
                        None
                    }
                    Err(msg) => {
                        let _ = reply.send(Err(DeliveryError::Trapped(msg.clone())));
                        Some(msg)
                    }
                }
            }
            Job::Call { method, args, chain, reply } => {
                store.data_mut().chain = chain;
                let fut = api.call_call(&mut *store, &method, &args);
                let out = bounded(&sup, fut).await.map_err(|msg| msg + &store.data().stderr.note());
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
            sup.fail(&msg, true);
            meters.traps.inc();
            instance = None;
        }
    }
}

/// Counts a call's outcome and refuses a result over the plugin's limit.
fn settle(sup: &Supervisor, meters: &PluginMeters, method: &str, out: Result<String, PluginCallError>) -> Result<String, PluginCallError> {
    let max = sup.policy.limits.max_result_bytes();
    match out {
        Ok(text) if text.len() > max => {
            let msg = format!("result of {method} is {} bytes, over the limit of {max} bytes", text.len());
            tracing::warn!(plugin = %sup.name, error = %msg, "plugin result refused");
            sup.fail(&msg, false);
            meters.errors.inc();
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
