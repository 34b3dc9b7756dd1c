//! One tokio task per plugin owns its instance (store + bindings). Calls arrive over a
//! channel and run one at a time, each with a fresh epoch deadline. A trap (including a
//! deadline or the memory cap) poisons the instance: it is dropped, the caller gets
//! `unavailable`, and the next call instantiates (and registers) a fresh one.

use super::bindings::tmp::{Event, Registration};
use super::bindings::{Plugin, PluginPre};
use super::host_api::from_call_error;
use super::runtime::{EPOCH_TICK, PluginState, Shared, new_store};
use crate::scheduler::PluginCallError;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use wasmtime::Store;

pub(crate) struct ActorCtx {
    pub name: String,
    pub config_json: String,
    pub shared: Arc<Shared>,
    pub pre: PluginPre<PluginState>,
}

pub(crate) type Instance = (Store<PluginState>, Plugin);

enum Job {
    Events { events: Vec<Event>, reply: oneshot::Sender<Result<(), PluginCallError>> },
    Call { method: String, args: String, chain: Vec<String>, reply: oneshot::Sender<Result<String, PluginCallError>> },
}

#[derive(Clone)]
pub(crate) struct Actor {
    tx: mpsc::Sender<Job>,
}

fn deadline_ticks(shared: &Shared) -> u64 {
    (shared.settings.call_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

fn describe_trap(e: &wasmtime::Error) -> String {
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        match trap {
            wasmtime::Trap::Interrupt => return "trapped: call took longer than its time limit".into(),
            wasmtime::Trap::StackOverflow => return "trapped: stack overflow".into(),
            _ => {}
        }
    }
    let msg = format!("{e:#}");
    if msg.contains("memory") && msg.contains("grow") { format!("trapped: memory limit reached ({msg})") } else { format!("trapped: {msg}") }
}

/// A fresh instance with `register` called: what the loader checks and the actor reuses.
pub(crate) async fn instantiate(ctx: &ActorCtx) -> Result<(Instance, Registration), String> {
    let mut store = new_store(&ctx.shared, &ctx.name);
    store.set_epoch_deadline(deadline_ticks(&ctx.shared));
    let plugin = ctx.pre.instantiate_async(&mut store).await.map_err(|e| format!("cannot instantiate: {}", describe_trap(&e)))?;
    store.set_epoch_deadline(deadline_ticks(&ctx.shared));
    let reg = plugin
        .fluid_scheduler_task_manager_plugin()
        .call_register(&mut store, &ctx.config_json)
        .await
        .map_err(|e| format!("register {}", describe_trap(&e)))?
        .map_err(|e| format!("register refused: {e}"))?;
    Ok(((store, plugin), reg))
}

impl Actor {
    pub(crate) fn spawn(ctx: ActorCtx, first: Instance, stop: CancellationToken) -> Actor {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(run(ctx, Some(first), rx, stop));
        Actor { tx }
    }

    pub(crate) async fn on_events(&self, events: Vec<Event>) -> Result<(), PluginCallError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Job::Events { events, reply }).await.map_err(|_| PluginCallError::Unavailable("plugin unloaded".into()))?;
        rx.await.map_err(|_| PluginCallError::Unavailable("plugin unloaded".into()))?
    }

    pub(crate) async fn call(&self, method: String, args: String, chain: Vec<String>) -> Result<String, PluginCallError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Job::Call { method, args, chain, reply }).await.map_err(|_| PluginCallError::Unavailable("plugin unloaded".into()))?;
        rx.await.map_err(|_| PluginCallError::Unavailable("plugin unloaded".into()))?
    }
}

async fn run(ctx: ActorCtx, mut instance: Option<Instance>, mut rx: mpsc::Receiver<Job>, stop: CancellationToken) {
    loop {
        let job = tokio::select! {
            j = rx.recv() => match j { Some(j) => j, None => return },
            _ = stop.cancelled() => return,
        };
        if instance.is_none() {
            match instantiate(&ctx).await {
                Ok((i, _)) => instance = Some(i),
                Err(e) => {
                    tracing::error!(plugin = %ctx.name, error = %e, "cannot start a fresh instance");
                    let err = PluginCallError::Unavailable(e);
                    match job {
                        Job::Events { reply, .. } => drop(reply.send(Err(err))),
                        Job::Call { reply, .. } => drop(reply.send(Err(err))),
                    }
                    continue;
                }
            }
        }
        let (store, plugin) = instance.as_mut().expect("instance present");
        store.set_epoch_deadline(deadline_ticks(&ctx.shared));
        let api = plugin.fluid_scheduler_task_manager_plugin();
        let trapped = match job {
            Job::Events { events, reply } => {
                store.data_mut().chain.clear();
                match api.call_on_events(&mut *store, &events).await {
                    Ok(r) => {
                        let _ = reply.send(r.map_err(PluginCallError::Failed));
                        None
                    }
                    Err(e) => {
                        let msg = describe_trap(&e);
                        let _ = reply.send(Err(PluginCallError::Unavailable(msg.clone())));
                        Some(msg)
                    }
                }
            }
            Job::Call { method, args, chain, reply } => {
                store.data_mut().chain = chain;
                match api.call_call(&mut *store, &method, &args).await {
                    Ok(r) => {
                        let _ = reply.send(r.map_err(from_call_error));
                        None
                    }
                    Err(e) => {
                        let msg = describe_trap(&e);
                        let _ = reply.send(Err(PluginCallError::Unavailable(msg.clone())));
                        Some(msg)
                    }
                }
            }
        };
        if let Some(msg) = trapped {
            tracing::warn!(plugin = %ctx.name, error = %msg, "plugin trapped; its instance is discarded");
            if let Some(p) = ctx.shared.plugin(&ctx.name) {
                let mut h = p.health.lock().unwrap();
                h.traps += 1;
                h.last_error = Some(msg);
            }
            instance = None;
        }
    }
}
