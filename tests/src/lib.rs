//! Shared helpers of the integration tests (tests/tests/*.rs) and the `fluid-test-host`
//! binary they start as a real process.

pub mod pg;

use fluid_host::{RetryPolicy, Schedule, Task, TaskContext};
use std::time::Duration;

/// Sleeps for the `seconds` param (default 60).
async fn sleep_param(ctx: &TaskContext) {
    let secs = ctx.params_json().get("seconds").and_then(|v| v.as_f64()).unwrap_or(60.0);
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
}

/// Tasks the process tests need beside the examples.
pub fn test_tasks() -> Vec<Task> {
    vec![
        // Every second: the cluster test checks that no due time fires twice across hosts.
        Task::new("tick").schedule(Schedule::every(Duration::from_secs(1))).run(|_| async { Ok(()) }),
        // Sleeps `seconds`; a run killed mid-way is the subject of the crash tests.
        Task::new("sleepy").timeout(Duration::from_secs(600)).run(|ctx: TaskContext| async move {
            sleep_param(&ctx).await;
            Ok(())
        }),
        // Like `sleepy` on its first attempt, done at once on a retry: with its retry
        // policy, a run lost with its host is interrupted, re-queued and then succeeds.
        Task::new("sleepy-retry").timeout(Duration::from_secs(600)).retry(RetryPolicy::new(1).wait(Duration::ZERO)).run(
            |ctx: TaskContext| async move {
                if ctx.run.retry_attempt == 0 {
                    sleep_param(&ctx).await;
                }
                Ok(())
            },
        ),
    ]
}
