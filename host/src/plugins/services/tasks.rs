//! Task components: `.wasm` files of the `task` world in the plugins folder, whose tasks
//! are registered with the scheduler exactly like native ones.
//!
//! On load, `definitions` is called on a throwaway instance and every definition is
//! checked; if one is invalid the whole file is refused (naming the file and the
//! definition) so a component never runs half-registered, and other files still load.
//! Each run then gets a fresh instance from the component's `InstancePre` (no state
//! leaks from one run to the next); its timeout is enforced inside wasm by epoch
//! interruption, and a trap or a timeout ends that run as `failure` without touching the
//! other runs or the host. Runs and `definitions` execute on the guest pool
//! (`guest_pool`), never on the host's threads; a spinning guest yields there on every
//! epoch tick, so a cancel (`POST /task-runs/{id}/cancel`) or the scheduler's own timeout still
//! reaches it, and its CPU time is charged to its component.
//!
//! What a component declares is bounded (`limits`: at most 256 tasks, short texts) and
//! registered in one step, linear in the number of tasks; a schedule more frequent than
//! `min_schedule_ms`, or an `every` period over a year, refuses the component.
//!
//! This module defines and registers a component's tasks; which components are loaded,
//! from which file, is the registry's (`registry::task_components`).

use super::params_schema;
use crate::plugins::engine::guest_pool::{self, Metered};
use crate::plugins::engine::limits;
use crate::plugins::engine::policy::{Limits, SKIP_HISTORY_TAG};
use crate::plugins::instance::actor::{self, describe_trap};
use crate::plugins::instance::state::{PluginState, StoreMaker};
use crate::plugins::instance::supervisor::Supervisor;
use crate::plugins::wit::bindings::task_world::TaskPre;
use crate::plugins::wit::bindings::task_world::tc::{Context, TaskDef, TaskError as WitTaskError};
use crate::plugins::wit::convert::{host_priority, wit_run};
use crate::scheduler::{RetryPolicy, Schedule, Scheduler, Task, TaskBuilder, TaskContext, TaskError};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use wasmtime::UpdateDeadline;

/// Retries a task component may make without waiting at least `min_schedule_ms` each.
const MAX_QUICK_RETRIES: u32 = 10;
/// The longest retry wait a task component may declare.
const MAX_RETRY_WAIT_MS: u64 = 30 * 24 * 3600 * 1000;

/// The longest `every` period a task component may declare (longer ones are a cron's job).
pub const MAX_PERIOD: Duration = Duration::from_secs(365 * 24 * 3600);

/// Time allowed for `definitions` on load.
const DEFINITIONS_TIMEOUT: Duration = Duration::from_secs(10);

/// Parses a schedule as a task component writes it: `every 5s` (units `ms`, `s`, `m`,
/// `h`, at most [`MAX_PERIOD`]) or a five-field cron expression.
pub fn parse_schedule(text: &str) -> Result<Schedule, String> {
    let text = text.trim();
    let Some(period) = text.strip_prefix("every ") else {
        return Schedule::cron(text).map_err(|e| e.to_string());
    };
    let period = period.trim();
    let split = period.find(|c: char| !c.is_ascii_digit()).unwrap_or(period.len());
    let (n, unit) = period.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("invalid schedule {text:?}: expected `every <number><ms|s|m|h>`"))?;
    let d = match unit.trim() {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => return Err(format!("invalid schedule {text:?}: the unit must be ms, s, m or h")),
    };
    // Past a year, due times soon leave what the scheduler's clock can hold.
    let Some(d) = d.filter(|d| *d <= MAX_PERIOD) else {
        return Err(format!("invalid schedule {text:?}: the period must be at most 365 days"));
    };
    if d.is_zero() {
        return Err(format!("invalid schedule {text:?}: the period must be positive"));
    }
    Ok(Schedule::every(d))
}

/// The options a definition declares, or why they are invalid (schedule, retry, schema;
/// name and timeout are checked by `Task::check`).
/// `schema_budget`: what the component's params schemas may still compile to.
fn options(def: &TaskDef, component: &str, limits: &Limits, schema_budget: &mut u64) -> Result<TaskBuilder, String> {
    let min_schedule = limits.min_schedule();
    if def.timeout_ms > limits.max_task_timeout_ms {
        return Err(format!("timeout of {} ms, over the limit of {} ms (max_task_timeout_ms)", def.timeout_ms, limits.max_task_timeout_ms));
    }
    // The operator's cap on runs in flight per task, over what the component declares.
    let concurrency = match (def.max_concurrency, limits.max_concurrency) {
        (declared, 0) => declared,
        (0, cap) => cap,
        (declared, cap) => declared.min(cap),
    };
    let mut b = Task::new(&def.name)
        .description(&def.description)
        .priority(host_priority(def.priority))
        .timeout(Duration::from_millis(def.timeout_ms))
        .max_concurrency(concurrency)
        .worker_share(component, limits.max_workers)
        .tags(def.tags.iter().cloned())
        .module(component);
    if let Some(s) = &def.schedule {
        let schedule = parse_schedule(s)?;
        if let Schedule::Every(e) = &schedule
            && e.period < min_schedule
        {
            return Err(format!("schedule {s:?} is more frequent than the minimum period of {min_schedule:?} (min_schedule_ms)"));
        }
        b = b.schedule(schedule);
    }
    if let Some(r) = &def.retry {
        if !(r.backoff.is_finite() && r.backoff >= 1.0) {
            return Err(format!("retry backoff must be a number >= 1, got {}", r.backoff));
        }
        if r.wait_ms.max(r.max_wait_ms) > MAX_RETRY_WAIT_MS {
            return Err(format!("a retry wait of more than {MAX_RETRY_WAIT_MS} ms (30 days)"));
        }
        // Retrying for ever (or nearly) is a schedule of its own: at most as often as one.
        // The shortest wait is the first, or `max-wait-ms` when it is smaller.
        let shortest = Duration::from_millis(r.wait_ms.min(r.max_wait_ms));
        if r.max_attempts.is_none_or(|n| n > MAX_QUICK_RETRIES) && shortest < min_schedule {
            return Err(format!(
                "a retry of more than {MAX_QUICK_RETRIES} attempts must wait at least {min_schedule:?} (min_schedule_ms), not {shortest:?}"
            ));
        }
        b = b.retry(RetryPolicy {
            max_attempts: r.max_attempts,
            wait: Duration::from_millis(r.wait_ms),
            backoff: r.backoff,
            max_wait: Duration::from_millis(r.max_wait_ms),
        });
    }
    if let Some(text) = &def.params_schema {
        let (schema, check) = params_schema::validator_within(text, schema_budget)?;
        b = b.validator(check).params_schema_of_validator(schema);
    }
    Ok(b)
}

/// The task a definition declares, running on fresh instances of `pre`.
fn task_of(
    def: &TaskDef,
    component: &str,
    stores: &StoreMaker,
    pre: &TaskPre<PluginState>,
    sup: &Arc<Supervisor>,
    schema_budget: &mut u64,
) -> Result<Task, String> {
    let b = options(def, component, &sup.policy.limits, schema_budget)?;
    let (stores, pre, sup) = (stores.clone(), pre.clone(), sup.clone());
    let meters = stores.scheduler.metrics().plugin(&sup.name);
    let task = b.executor(Arc::new(move |ctx: TaskContext| {
        let (stores, pre, sup, meters) = (stores.clone(), pre.clone(), sup.clone(), meters.clone());
        Box::pin(guest_pool::run(async move {
            // A component whose runs spent its CPU budget in this window runs no more
            // until the window ends: its runs fail at once and free their workers.
            if let Err(why) = sup.run_allowed() {
                meters.limits_hit.inc();
                return Err(TaskError::Failed(why));
            }
            let before = sup.cpu_ns.load(Ordering::Relaxed);
            let out = Metered::new(run_once(&stores, &pre, &sup, ctx), &sup.cpu_ns).await;
            let spent = sup.cpu_ns.load(Ordering::Relaxed).saturating_sub(before);
            sup.own_cpu_ns.fetch_add(spent, Ordering::Relaxed);
            meters.cpu_seconds.inc_by(spent as f64 / 1e9);
            out
        }))
    }));
    task.check()?;
    Ok(task)
}

/// One run on a fresh instance, under the task's timeout counted inside wasm.
async fn run_once(stores: &StoreMaker, pre: &TaskPre<PluginState>, sup: &Arc<Supervisor>, ctx: TaskContext) -> Result<(), TaskError> {
    let timeout = stores.scheduler.task(&ctx.run.task).map(|t| t.timeout).unwrap_or(Duration::from_secs(60));
    let mut store = stores.new_store(sup).map_err(TaskError::Failed)?;
    // Never a plugin's name, so a task may call any plugin without tripping re-entry.
    store.data_mut().name = format!("task {}", ctx.run.task);
    store.data_mut().run_id = Some(ctx.run.id.clone());
    let end = Instant::now() + timeout;
    store.epoch_deadline_callback(
        move |_| if Instant::now() >= end { Err(wasmtime::Trap::Interrupt.into()) } else { Ok(UpdateDeadline::Yield(1)) },
    );
    store.set_epoch_deadline(1);
    let timed_out = || TaskError::Failed(format!("timeout after {timeout:?} (stopped inside wasm)"));
    let trap = |e: wasmtime::Error| match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => timed_out(),
        _ => TaskError::Failed(describe_trap(&e)),
    };
    // A guest parked in a host call (a WASI sleep) cannot be interrupted by the epoch: the
    // wall clock ends it, a little after the epoch would have.
    let limit = timeout + actor::BACKSTOP;
    let call = async {
        let instance = pre.instantiate_async(&mut store).await?;
        let context = Context { run: wit_run(&ctx.run) };
        instance.fluid_scheduler_task_component().call_run(&mut store, &context).await
    };
    let Ok(out) = tokio::time::timeout(limit, call).await else {
        return Err(TaskError::Failed(format!("timeout after {timeout:?} (blocked in a host call)")));
    };
    match out {
        Ok(Ok(())) => Ok(()),
        Ok(Err(WitTaskError::Failed(m))) => Err(TaskError::Failed(m)),
        Ok(Err(WitTaskError::Aborted(m))) => Err(TaskError::Aborted(m)),
        Err(e) => {
            let e = match trap(e) {
                TaskError::Failed(m) => TaskError::Failed(store.data().sandbox.stderr.explain(m)),
                e => e,
            };
            tracing::warn!(task = %ctx.run.task, run = %ctx.run.id, error = %e, "task component trapped; the run fails");
            Err(e)
        }
    }
}

/// A component's schedules together queue runs no faster than its `queue_per_s`: each
/// schedule alone respects `min_schedule_ms`, but 256 of them would not.
fn check_schedule_rate(tasks: &[Task], limits: &Limits) -> Result<(), String> {
    let per_s: f64 = tasks
        .iter()
        .filter_map(|t| match &t.schedule {
            Some(Schedule::Every(e)) => Some(1.0 / e.period.as_secs_f64().max(1e-3)),
            Some(Schedule::Cron(_)) => Some(1.0 / 60.0),
            None => None,
        })
        .sum();
    if per_s > limits.queue_per_s as f64 {
        return Err(format!(
            "its schedules together queue about {per_s:.0} runs a second, over its allowance of {} (queue_per_s)",
            limits.queue_per_s
        ));
    }
    Ok(())
}

/// `definitions` of a throwaway instance.
async fn definitions(stores: &StoreMaker, pre: &TaskPre<PluginState>, sup: &Arc<Supervisor>) -> Result<Vec<TaskDef>, String> {
    let (stores, pre, sup) = (stores.clone(), pre.clone(), sup.clone());
    guest_pool::run(async move {
        let cpu = sup.clone();
        Metered::new(definitions_here(&stores, &pre, &sup), &cpu.cpu_ns).await
    })
    .await
}

async fn definitions_here(stores: &StoreMaker, pre: &TaskPre<PluginState>, sup: &Arc<Supervisor>) -> Result<Vec<TaskDef>, String> {
    let mut store = stores.new_store(sup)?;
    actor::arm(&mut store, DEFINITIONS_TIMEOUT);
    let call = async {
        let instance = pre.instantiate_async(&mut store).await?;
        instance.fluid_scheduler_task_component().call_definitions(&mut store).await
    };
    match tokio::time::timeout(DEFINITIONS_TIMEOUT + Duration::from_millis(250), call).await {
        Ok(Ok(defs)) => Ok(defs),
        Ok(Err(e)) => Err(format!("definitions {}", describe_trap(&e))),
        Err(_) => Err("definitions took longer than 10 s".into()),
    }
}

/// The tasks the task component `component` (the file at `path`) defines: `definitions`
/// called on a throwaway instance, every definition checked, each task running on fresh
/// instances of `pre`. The first invalid definition refuses the whole file.
pub(crate) async fn define(
    path: &Path,
    component: &str,
    stores: &StoreMaker,
    pre: &TaskPre<PluginState>,
    sup: &Arc<Supervisor>,
) -> Result<Vec<Task>, String> {
    let file = path.display();
    let defs = definitions(stores, pre, sup).await.map_err(|e| format!("{file}: {e}"))?;
    limits::check_definitions(&defs).map_err(|e| format!("{file}: {e}"))?;
    let mut seen = BTreeSet::new();
    let mut tasks = Vec::new();
    let mut schema_budget = params_schema::MAX_COMPONENT_SCHEMA_BYTES;
    for def in &defs {
        let name = limits::truncated(&def.name);
        if def.tags.iter().any(|t| t == SKIP_HISTORY_TAG) && !sup.policy.grants.skip_history {
            return Err(format!(
                "{file}: task {name:?} refused: its tag {SKIP_HISTORY_TAG:?} would keep its runs out of the history; only the operator may allow that ([plugins.{component}.grants] skip_history = true)"
            ));
        }
        let task =
            task_of(def, component, stores, pre, sup, &mut schema_budget).map_err(|e| format!("{file}: task {name:?} refused: {e}"))?;
        if !seen.insert(def.name.clone()) {
            return Err(format!("{file}: task {name:?} refused: defined twice in this component"));
        }
        tasks.push(task);
    }
    check_schedule_rate(&tasks, &sup.policy.limits).map_err(|e| format!("{file}: {e}"))?;
    Ok(tasks)
}

/// Registers `tasks` of the task component `component` (the file at `path`) with the
/// scheduler in place of the `previous` tasks of that file; returns their names. A name
/// is its first component's, on every host sharing the database: one another component
/// holds refuses the file.
pub(crate) async fn register(
    scheduler: &Scheduler,
    path: &Path,
    component: &str,
    previous: &[String],
    tasks: Vec<Task>,
) -> Result<Vec<String>, String> {
    let file = path.display();
    let names: Vec<String> = tasks.iter().map(|t| t.name.clone()).collect();
    let taken = scheduler.store().claim_task_owners(component, &names).await.map_err(|e| format!("{file}: {e}"))?;
    if let Some((name, owner)) = taken.first() {
        return Err(format!(
            "{file}: task {name:?} refused: it belongs to the task component {owner:?} (on this or another host sharing the database); `fluid plugins forget {owner}` releases its names"
        ));
    }
    scheduler.replace_tasks(previous, tasks).map_err(|e| format!("{file}: {e}"))?;
    tracing::info!(file = %file, tasks = ?names, "task component loaded");
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_read_as_every_or_cron() {
        assert_eq!(parse_schedule("every 5s").unwrap(), Schedule::every(Duration::from_secs(5)));
        assert_eq!(parse_schedule("every 250ms").unwrap(), Schedule::every(Duration::from_millis(250)));
        assert_eq!(parse_schedule("every 2m").unwrap(), Schedule::every(Duration::from_secs(120)));
        assert!(parse_schedule("0 3 * * *").is_ok());
        assert!(parse_schedule("every 0s").unwrap_err().contains("positive"));
        assert!(parse_schedule("every 5 parsecs").is_err());
        assert!(parse_schedule("61 * * * *").unwrap_err().contains("cron"));
    }

    #[test]
    fn a_period_over_a_year_is_refused_whatever_its_unit() {
        assert_eq!(parse_schedule("every 8760h").unwrap(), Schedule::every(MAX_PERIOD));
        for text in ["every 8761h", "every 525601m", "every 31536001s", "every 31536000001ms", "every 18446744073709551615ms"] {
            assert!(parse_schedule(text).unwrap_err().contains("at most 365 days"), "{text}");
        }
        // Would overflow as seconds.
        for text in ["every 5124095576030432h", "every 307445734561825861m"] {
            assert!(parse_schedule(text).unwrap_err().contains("at most 365 days"), "{text}");
        }
        let huge = checked(&TaskDef { schedule: Some("every 18446744073709551615h".into()), ..def("t") }).unwrap_err();
        assert!(huge.contains("at most 365 days"), "{huge}");
    }

    fn def(name: &str) -> TaskDef {
        TaskDef {
            name: name.into(),
            description: String::new(),
            schedule: None,
            priority: crate::plugins::wit::bindings::types::TaskPriority::Medium,
            timeout_ms: 1000,
            max_concurrency: 0,
            retry: None,
            tags: vec![],
            params_schema: None,
        }
    }

    fn checked(d: &TaskDef) -> Result<(), String> {
        options(d, "c", &Limits::default(), &mut { u64::MAX })?.run(|_| async { Ok(()) }).check()
    }

    #[test]
    fn a_definition_with_a_bad_cron_a_zero_timeout_or_a_bad_name_is_refused() {
        assert!(checked(&def("ok")).is_ok());
        assert!(checked(&TaskDef { schedule: Some("every 5s".into()), ..def("ok") }).is_ok());
        let fast = checked(&TaskDef { schedule: Some("every 999ms".into()), ..def("t") }).unwrap_err();
        assert!(fast.contains("min_schedule_ms"), "{fast}");
        let retry = |max_attempts, wait_ms| crate::plugins::wit::bindings::task_world::tc::RetryPolicy {
            max_attempts,
            wait_ms,
            backoff: 1.0,
            max_wait_ms: wait_ms,
        };
        let forever = checked(&TaskDef { retry: Some(retry(None, 10)), ..def("t") }).unwrap_err();
        assert!(forever.contains("min_schedule_ms"), "{forever}");
        assert!(checked(&TaskDef { retry: Some(retry(Some(3), 10)), ..def("t") }).is_ok(), "a bounded retry may be quick");
        assert!(checked(&TaskDef { retry: Some(retry(Some(u32::MAX), 10)), ..def("t") }).unwrap_err().contains("min_schedule_ms"));
        assert!(checked(&TaskDef { retry: Some(retry(None, 1000)), ..def("t") }).is_ok());
        let capped =
            crate::plugins::wit::bindings::task_world::tc::RetryPolicy { max_attempts: None, wait_ms: 5000, backoff: 1.0, max_wait_ms: 0 };
        assert!(
            checked(&TaskDef { retry: Some(capped), ..def("t") }).unwrap_err().contains("min_schedule_ms"),
            "max-wait-ms 0 means no wait"
        );
        assert!(checked(&TaskDef { retry: Some(retry(Some(1), u64::MAX)), ..def("t") }).unwrap_err().contains("30 days"));
        let long = checked(&TaskDef { timeout_ms: 3_600_001, ..def("t") }).unwrap_err();
        assert!(long.contains("max_task_timeout_ms"), "{long}");
    }

    #[test]
    fn the_operators_concurrency_cap_bounds_what_a_task_declares() {
        let capped = |declared, cap| {
            let limits = Limits { max_concurrency: cap, ..Limits::default() };
            options(&TaskDef { max_concurrency: declared, ..def("t") }, "c", &limits, &mut { u64::MAX })
                .unwrap()
                .run(|_| async { Ok(()) })
                .max_concurrency
        };
        assert_eq!((capped(0, 0), capped(5, 0), capped(0, 2), capped(5, 2), capped(1, 2)), (0, 5, 2, 2, 1));
        assert!(checked(&TaskDef { schedule: Some("0 25 * * *".into()), ..def("t") }).unwrap_err().contains("cron"));
        assert!(checked(&TaskDef { timeout_ms: 0, ..def("t") }).unwrap_err().contains("timeout must be positive"));
        assert!(checked(&def("has space")).is_err());
        assert!(checked(&TaskDef { params_schema: Some("{".into()), ..def("t") }).unwrap_err().contains("params-schema"));
    }

    #[test]
    fn schedules_together_stay_within_the_queue_allowance() {
        let limits = Limits { queue_per_s: 10, ..Default::default() };
        let every = |name: &str, s: &str| {
            options(&TaskDef { schedule: Some(s.into()), ..def(name) }, "c", &limits, &mut { u64::MAX }).unwrap().run(|_| async { Ok(()) })
        };
        let ten: Vec<Task> = (0..10).map(|i| every(&format!("t{i}"), "every 1s")).collect();
        assert!(check_schedule_rate(&ten, &limits).is_ok());
        let eleven: Vec<Task> = (0..11).map(|i| every(&format!("t{i}"), "every 1s")).collect();
        assert!(check_schedule_rate(&eleven, &limits).unwrap_err().contains("queue_per_s"));
    }

    #[test]
    fn a_scheduled_task_whose_schema_refuses_no_params_is_refused() {
        let schema = serde_json::json!({"type": "object", "required": ["n"]});
        let def = TaskDef { params_schema: Some(schema.to_string()), schedule: Some("every 5s".into()), ..def("t") };
        let why = checked(&def).unwrap_err();
        assert!(why.contains("has a schedule") && why.contains("\"n\" is a required property"), "{why}");
        let optional = serde_json::json!({"type": "object", "properties": {"n": {"type": "integer"}}});
        assert!(checked(&TaskDef { params_schema: Some(optional.to_string()), ..def }).is_ok(), "optional params are fine");
    }
}
