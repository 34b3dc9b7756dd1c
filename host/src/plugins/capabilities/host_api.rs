//! The `host` import: logging, `get-plugin` and its `plugin` resource, the task list and
//! queueing runs. Other plugins are reached through the instance's `Peers` handle, tasks and
//! the queue through the scheduler; each plugin's allowances are its supervisor's.

use crate::plugins::engine::limits::{one_line, truncated};
use crate::plugins::instance::state::{Peers, PluginState};
use crate::plugins::instance::supervisor::Supervisor;
use crate::plugins::wit::bindings::PluginRef;
use crate::plugins::wit::bindings::host_if::{self, LogLevel, QueueRequest};
use crate::plugins::wit::bindings::types::{CallError, TaskInfo, TaskRun as WitRun};
use crate::plugins::wit::convert::{call_error, host_priority, wit_priority, wit_run};
use crate::scheduler::{QueueError, QueueOptions, Scheduler};
use std::sync::Arc;
use wasmtime::component::Resource;

const MAX_LOG_LINE: usize = 8 * 1024;

/// Params a `queue-run` may parse and check on whichever thread the guest runs on; larger
/// ones are handled on the guest pool.
const ON_HOST_PARAMS_BYTES: usize = 4096;

/// How many queue-runs a task component may make between two counts of its queued runs,
/// while far from its bound.
const RECOUNT_EVERY: u64 = 256;

/// A guest (supervised by `sup`) queueing a run of `task`: refused once `max_queued` runs
/// wait in the queue, of the component's own tasks when `task` is one of them (its runs
/// share one bound), else of `task` (a plugin, or a component queueing the host's tasks:
/// no guest may grow any task's backlog without bound). Counted in the database near the
/// bound and every [`RECOUNT_EVERY`] runs; in between, counted up from the last count.
async fn within_max_queued(peers: Arc<dyn Peers>, scheduler: Scheduler, sup: Arc<Supervisor>, task: String) -> Result<(), String> {
    // An unknown task is refused by the queueing itself, and is no key to count under.
    if scheduler.task(&task).is_none() {
        return Ok(());
    }
    // One estimate per set counted: one shared by all tasks would let a run of another
    // task (an empty queue) reset the count of the task being flooded.
    let (key, tasks, whose) = match peers.component_tasks(&sup, &task) {
        Some(own) => (String::new(), own, "this component's tasks".to_string()),
        None => (task.clone(), vec![task.clone()], format!("task {:?}", truncated(&task))),
    };
    let max = sup.policy.limits.max_queued;
    {
        let mut estimates = sup.queued_estimate.lock().unwrap();
        let (counted, since) = estimates.entry(key.clone()).or_default();
        if *counted + *since + 1 < max && *since < RECOUNT_EVERY {
            *since += 1;
            return Ok(());
        }
    }
    // The database unreachable: no count, and the queueing itself will say so.
    let Ok(now) = scheduler.store().queued_runs_of(&tasks, max).await else { return Ok(()) };
    sup.queued_estimate.lock().unwrap().insert(key, (now, 1));
    if now >= max {
        let msg = format!("queue-run refused: {now} runs of {whose} wait in the queue, the limit (max_queued)");
        sup.limit_hit("max_queued", &msg);
        return Err(msg);
    }
    Ok(())
}

impl host_if::Host for PluginState {
    async fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        if !self.sup.log_budget.lock().unwrap().take() {
            self.sup.update(|h| h.log_lines_dropped += 1);
            return Ok(());
        }
        let mut message = message;
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("… [cut]");
        }
        let message = one_line(message);
        let plugin = self.name.as_str();
        match level {
            LogLevel::Trace => tracing::trace!(target: "fluid::plugin", plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "fluid::plugin", plugin, "{message}"),
            LogLevel::Info => tracing::info!(target: "fluid::plugin", plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "fluid::plugin", plugin, "{message}"),
            LogLevel::Error => tracing::error!(target: "fluid::plugin", plugin, "{message}"),
        }
        Ok(())
    }

    async fn get_plugin(&mut self, name: String) -> wasmtime::Result<Option<Resource<PluginRef>>> {
        if !self.peers.has_plugin(&name) {
            return Ok(None);
        }
        Ok(Some(self.sandbox.table.push(PluginRef { name })?))
    }

    async fn list_tasks(&mut self) -> wasmtime::Result<Vec<TaskInfo>> {
        Ok(self
            .scheduler
            .tasks()
            .iter()
            .map(|t| TaskInfo {
                name: t.name.clone(),
                description: t.description.clone(),
                schedule: t.schedule.as_ref().map(|s| s.to_string()),
                priority: wit_priority(t.priority),
                timeout_ms: t.timeout.as_millis() as u64,
                max_concurrency: t.max_concurrency,
                tags: t.tags.iter().cloned().collect(),
            })
            .collect())
    }

    async fn queue_run(&mut self, req: QueueRequest) -> wasmtime::Result<Result<WitRun, CallError>> {
        // No run is grafted onto another's lineage: a task run's children are its own, and a
        // plugin's follow-ups are of runs whose events it is being delivered.
        if let Some(from) = &req.from_run_id {
            match &self.run_id {
                Some(own) if own != from => {
                    return Ok(Err(CallError::InvalidInput("from-run-id must be the id of the run queueing it".into())));
                }
                None if !self.delivering.contains(from) => {
                    return Ok(Err(CallError::InvalidInput(
                        "from-run-id must be the id of a run whose event the plugin is being delivered (in on-events)".into(),
                    )));
                }
                _ => {}
            }
        }
        // Measured before it is parsed: a parsed value takes many times its text.
        if req.params_json.len() > crate::scheduler::MAX_PARAMS_BYTES {
            let max = crate::scheduler::MAX_PARAMS_BYTES;
            return Ok(Err(CallError::InvalidInput(format!("params of {} bytes, over the limit of {max} bytes", req.params_json.len()))));
        }
        if !self.sup.policy.grants.queue_others && self.peers.owned_elsewhere(&self.sup, &req.task) {
            let msg = format!(
                "task {:?} belongs to another task component: queueing its runs needs the operator's queue_others grant",
                truncated(&req.task)
            );
            return Ok(Err(CallError::InvalidInput(msg)));
        }
        let scheduler: Scheduler = self.scheduler.clone();
        if let Err(msg) = self.sup.take_queue_token(req.params_json.len()) {
            self.scheduler.metrics().plugin(&self.sup.name).limits_hit.inc();
            return Ok(Err(CallError::Unavailable(msg)));
        }
        if let Err(msg) = within_max_queued(self.peers.clone(), self.scheduler.clone(), self.sup.clone(), req.task.clone()).await {
            self.scheduler.metrics().plugin(&self.sup.name).limits_hit.inc();
            return Ok(Err(CallError::Unavailable(msg)));
        }
        // What follows grows with the params (parsing them, checking them against a schema),
        // and a task run's first slice runs on a host thread (see `guest_pool::run`): large
        // params yield first, so that work goes on on the guest pool.
        if req.params_json.len() > ON_HOST_PARAMS_BYTES {
            tokio::task::yield_now().await;
        }
        let params: serde_json::Value = match serde_json::from_str(&req.params_json) {
            Ok(v) => v,
            Err(e) => return Ok(Err(CallError::InvalidInput(format!("params-json is not JSON: {e}")))),
        };
        let parent = match &req.from_run_id {
            Some(id) => match scheduler.get_run(id).await {
                Ok(Some(run)) => Some(run),
                Ok(None) => return Ok(Err(CallError::NotFound(format!("run {id} not found")))),
                Err(e) => {
                    tracing::warn!(plugin = %self.name, error = %e, "queue-run: the database failed");
                    return Ok(Err(CallError::Unavailable("the database failed; retry later".into())));
                }
            },
            None => None,
        };
        let opts = QueueOptions { priority: req.priority.map(host_priority), parent, delay: None };
        Ok(match scheduler.queue(&req.task, params, opts).await {
            Ok(run) => Ok(wit_run(&run)),
            Err(QueueError::UnknownTask(t)) => Err(CallError::NotFound(format!("task {:?} not found", truncated(&t)))),
            Err(e @ QueueError::InvalidParams { .. }) => Err(CallError::InvalidInput(e.to_string())),
            Err(QueueError::Store(e)) => {
                tracing::warn!(plugin = %self.name, error = %e, "queue-run: the database failed");
                Err(CallError::Unavailable("the database failed; retry later".into()))
            }
        })
    }
}

impl host_if::HostPlugin for PluginState {
    async fn name(&mut self, this: Resource<PluginRef>) -> wasmtime::Result<String> {
        Ok(self.sandbox.table.get(&this)?.name.clone())
    }

    async fn call(&mut self, this: Resource<PluginRef>, method: String, args_json: String) -> wasmtime::Result<Result<String, CallError>> {
        let target = self.sandbox.table.get(&this)?.name.clone();
        let mut chain = self.chain.clone();
        // Its supervisor's name: a plugin's own, or one for all runs of a task component,
        // which then share one fair share of each plugin they call.
        chain.push(self.sup.name.clone());
        let peers = self.peers.clone();
        Ok(peers.call(&target, &method, args_json, chain).await.map_err(call_error))
    }

    async fn drop(&mut self, this: Resource<PluginRef>) -> wasmtime::Result<()> {
        self.sandbox.table.delete(this)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_guest_log_message_stays_one_line() {
        let forged = "ok\n2026-01-01T00:00:00Z ERROR fluid_host: plugin db quarantined\r".to_string();
        let line = super::one_line(forged);
        assert!(!line.contains(['\n', '\r']) && line.contains("ok\\n2026"), "{line}");
        assert_eq!(super::one_line("plain".into()), "plain");
    }
}
