//! The scheduler: what aio-fluid's `TaskScheduler` does, on a durable store.
//!
//! A run flows: queue (HTTP, CLI, a schedule, a task chaining another) -> a `queued` row
//! -> the claim loop takes due rows in priority order, in batches, in one transaction that
//! also enforces `max_concurrency` and aborts runs of disabled tasks (and leaves out tasks
//! whose group has no room left in its share of this host's workers) -> each claimed run
//! executes in its own tokio task under its timeout -> its end is recorded by the batching
//! finisher (one transaction for many runs), which also re-queues retries and, in that same
//! transaction, claims the next due runs into the worker slots the ended runs free (each
//! execution hands its slot to the finisher with its end). A busy queue thus costs one
//! commit per cycle, not two; the claim loop covers the rest (new work, idle slots). Every state
//! change is appended to the change feed in the same transaction, which is what plugins
//! consume. Nothing here knows about WebAssembly: plugins are reached through the
//! [`PluginDirectory`] trait.

mod context;
mod engine;
mod schedule;
mod share;
mod task;

pub use crate::types::{
    InvalidTransition, MAX_ERROR_BYTES, MAX_PARAMS_BYTES, MAX_PARAMS_VALUES, Priority, RetryPolicy, TaskRun, TaskState, cut_text,
};
pub use context::{CallFuture, PluginCallError, PluginDirectory, PluginHandle, TaskContext};
pub use engine::{
    BROADCAST_PARAMS_BYTES, BROADCAST_PARAMS_VALUES, Cancelled, CompleterConfig, FeedPrunerConfig, HeartbeatConfig, MAX_BATCH,
    ProducerConfig, QueueError, QueueOptions, QueuerConfig, RunPrunerConfig, Scheduler, SchedulerConfig, SchedulesConfig,
};
pub use schedule::{Cron, CronError, Every, Schedule};
pub(crate) use task::any_object;
pub use task::{Executor, ParamsValidator, Task, TaskBuilder, TaskError, TaskFuture, WorkerShare};
