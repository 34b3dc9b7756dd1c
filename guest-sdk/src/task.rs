//! Write task components in Rust: the `task` world.
//!
//! ```ignore
//! use fluid_guest::{TaskComponent, TaskDef, RunContext, TaskError};
//!
//! struct Tasks;
//! impl TaskComponent for Tasks {
//!     fn definitions() -> Vec<TaskDef> {
//!         vec![TaskDef::new("hello").description("Says hello").schedule("every 30s")]
//!     }
//!     fn run(ctx: RunContext) -> Result<(), TaskError> {
//!         fluid_guest::log::info(&format!("hello from run {}", ctx.run.id));
//!         Ok(())
//!     }
//! }
//! fluid_guest::export_task!(Tasks);
//! ```

use crate::host::{self, QueueRequest};
use crate::{CallError, TaskPriority, TaskRun};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use crate::task_bindings::exports::fluid::scheduler::task_component::{Context, RetryPolicy, TaskDef, TaskError};

/// A task component. `definitions` is called once per load; `run` once per run, each on
/// a fresh instance, so nothing kept in memory survives from one run to the next.
pub trait TaskComponent: 'static {
    /// The tasks this component defines (an invalid one refuses the whole file).
    fn definitions() -> Vec<TaskDef>;

    /// Runs one run of `ctx.run.task`. `Err(TaskError::Failed)` ends it `failure` (retried
    /// by the task's policy); `Err(TaskError::Aborted)` ends it `aborted`, never retried.
    fn run(ctx: RunContext) -> Result<(), TaskError>;
}

impl TaskDef {
    /// aio-fluid's defaults: medium priority, 60 s timeout, no concurrency limit, no
    /// retry, no schedule, params any JSON object.
    pub fn new(name: &str) -> TaskDef {
        TaskDef {
            name: name.into(),
            description: String::new(),
            schedule: None,
            priority: TaskPriority::Medium,
            timeout_ms: 60_000,
            max_concurrency: 0,
            retry: None,
            tags: vec![],
            params_schema: None,
        }
    }
    pub fn description(mut self, d: &str) -> Self {
        self.description = d.into();
        self
    }
    /// `every 5s` (`ms`, `s`, `m`, `h`) or a five-field cron expression (UTC).
    pub fn schedule(mut self, s: &str) -> Self {
        self.schedule = Some(s.into());
        self
    }
    pub fn priority(mut self, p: TaskPriority) -> Self {
        self.priority = p;
        self
    }
    pub fn timeout_ms(mut self, ms: u64) -> Self {
        self.timeout_ms = ms;
        self
    }
    pub fn max_concurrency(mut self, n: u32) -> Self {
        self.max_concurrency = n;
        self
    }
    /// Retries after a failure: at most `max_attempts`, waiting `wait_ms * backoff^(n-1)`
    /// capped at 60 s.
    pub fn retry(mut self, max_attempts: u32, wait_ms: u64, backoff: f64) -> Self {
        self.retry = Some(RetryPolicy { max_attempts: Some(max_attempts), wait_ms, backoff, max_wait_ms: 60_000 });
        self
    }
    pub fn tags(mut self, tags: &[&str]) -> Self {
        self.tags = tags.iter().map(|t| t.to_string()).collect();
        self
    }
    /// A JSON Schema of the params: shown in `GET /tasks`, and enforced by the host when a
    /// run is queued (params that do not fit are refused with a 422 and the reasons).
    pub fn params_schema(mut self, schema: Value) -> Self {
        self.params_schema = Some(schema.to_string());
        self
    }
}

/// What a run is handed, with helpers for its params and for queueing child runs.
pub struct RunContext {
    pub run: TaskRun,
}

impl RunContext {
    /// The params, typed.
    pub fn params<P: DeserializeOwned>(&self) -> Result<P, TaskError> {
        serde_json::from_str(&self.run.params_json).map_err(|e| TaskError::Failed(format!("bad params: {e}")))
    }

    /// Queues a run of `task` whose parent is this run (lineage: its root is this run's
    /// root), at that task's own priority.
    pub fn queue_child(&self, task: &str, params: &Value) -> Result<TaskRun, CallError> {
        host::queue_run(&QueueRequest {
            task: task.into(),
            params_json: params.to_string(),
            priority: None,
            from_run_id: Some(self.run.id.clone()),
        })
    }

    /// A [`TaskError::Failed`] from anything printable.
    pub fn fail(msg: impl std::fmt::Display) -> TaskError {
        TaskError::Failed(msg.to_string())
    }

    /// A [`TaskError::Aborted`]: the run gives up, never retried.
    pub fn abort(msg: impl std::fmt::Display) -> TaskError {
        TaskError::Aborted(msg.to_string())
    }
}

/// Exports a [`TaskComponent`] implementation as the component's `task-component`.
#[macro_export]
macro_rules! export_task {
    ($tasks:ty) => {
        #[doc(hidden)]
        pub struct __FluidTaskExport;
        impl $crate::task_bindings::exports::fluid::scheduler::task_component::Guest for __FluidTaskExport {
            fn definitions() -> Vec<$crate::TaskDef> {
                <$tasks as $crate::TaskComponent>::definitions()
            }
            fn run(context: $crate::task::Context) -> Result<(), $crate::TaskError> {
                <$tasks as $crate::TaskComponent>::run($crate::RunContext { run: context.run })
            }
        }
        $crate::task_bindings::__export_task_world!(__FluidTaskExport);
    };
}
