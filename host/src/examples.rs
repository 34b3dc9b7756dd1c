//! Example tasks built into the `fluid` binary, so `fluid serve` shows real work at once:
//! a schedule, params, a failure that retries, and a run slow enough to cancel.

use crate::scheduler::{RetryPolicy, Schedule, Task, TaskContext, TaskError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Serialize, Deserialize)]
struct AddParams {
    a: i64,
    b: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct SlowParams {
    /// How long to work, in seconds.
    #[serde(default = "default_slow")]
    seconds: f64,
}

fn default_slow() -> f64 {
    30.0
}

#[derive(Debug, Serialize, Deserialize, Default)]
struct FlakyParams {
    /// Attempts that fail before one succeeds.
    #[serde(default = "default_failures")]
    failures: u32,
}

fn default_failures() -> u32 {
    2
}

/// The example tasks: `ping` (scheduled), `add` (typed params with a schema), `flaky`
/// (fails, then succeeds on a retry) and `slow` (cancellable). `fluid serve` registers them
/// unless `--no-examples`; they are also handy fixtures for an application's own tests.
pub fn tasks() -> Vec<Task> {
    vec![
        Task::new("ping")
            .description("Says pong every 5 seconds.")
            .schedule(Schedule::every(Duration::from_secs(5)))
            .tags(["example", "scheduled"])
            .timeout(Duration::from_secs(5))
            .run(|ctx: TaskContext| async move {
                tracing::info!(run = %ctx.id(), "pong");
                Ok(())
            }),
        Task::new("add")
            .description("Adds two numbers: POST /tasks/add {\"a\": 1, \"b\": 2}.")
            .tags(["example"])
            .params::<AddParams>()
            // Bounded as the run reads them (i64), so every number the schema admits is taken.
            .params_schema(serde_json::json!({"type": "object", "required": ["a", "b"], "properties": {
                "a": {"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX},
                "b": {"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX}
            }}))
            .run(|ctx: TaskContext| async move {
                let p: AddParams = ctx.params()?;
                let sum = p.a.checked_add(p.b).ok_or_else(|| TaskError::failed("overflow"))?;
                tracing::info!(run = %ctx.id(), a = p.a, b = p.b, sum, "added");
                Ok(())
            }),
        Task::new("flaky")
            .description("Fails its first `failures` attempts (default 2), then succeeds; retried with back-off.")
            .tags(["example"])
            .params::<FlakyParams>()
            .params_schema(serde_json::json!({"type": "object", "properties": {
                "failures": {"type": "integer", "minimum": 0, "maximum": u32::MAX, "default": 2}
            }}))
            .retry(RetryPolicy::new(3).wait(Duration::from_secs(1)).backoff(2.0).max_wait(Duration::from_secs(10)))
            .run(|ctx: TaskContext| async move {
                let p: FlakyParams = ctx.params()?;
                if ctx.run.retry_attempt < p.failures {
                    return Err(TaskError::failed(format!("attempt {} fails on purpose", ctx.run.retry_attempt)));
                }
                Ok(())
            }),
        Task::new("slow")
            .description("Works for `seconds` (default 30): cancel it with POST /task-runs/{id}/cancel.")
            .tags(["example"])
            .params::<SlowParams>()
            .params_schema(serde_json::json!({"type": "object", "properties": {
                "seconds": {"type": "number", "minimum": 0, "maximum": 3600, "default": 30}
            }}))
            .timeout(Duration::from_secs(120))
            .run(|ctx: TaskContext| async move {
                let p: SlowParams = ctx.params()?;
                let secs = p.seconds.clamp(0.0, 3600.0);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs_f64(secs)) => Ok(()),
                    _ = ctx.cancelled() => Err(ctx.abort("cancelled while working")),
                }
            }),
    ]
}
