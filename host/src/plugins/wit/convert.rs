//! Conversions between the generated types and the scheduler's: task states, priorities,
//! runs and call errors. Every layer that hands a run to a component or takes an answer back
//! converts here, so both sides agree in one place.

use super::bindings::types::{CallError, TaskPriority as WitPriority, TaskRun as WitRun, TaskState as WitState};
use crate::scheduler::{PluginCallError, Priority, TaskRun, TaskState};

/// A run state as components see it.
pub fn wit_state(s: TaskState) -> WitState {
    match s {
        TaskState::Init => WitState::Init,
        TaskState::Queued => WitState::Queued,
        TaskState::Running => WitState::Running,
        TaskState::Success => WitState::Success,
        TaskState::Failure => WitState::Failure,
        TaskState::Aborted => WitState::Aborted,
        TaskState::RateLimited => WitState::RateLimited,
        TaskState::Interrupted => WitState::Interrupted,
    }
}

/// A run state a component names, as the scheduler's.
pub fn host_state(s: WitState) -> TaskState {
    match s {
        WitState::Init => TaskState::Init,
        WitState::Queued => TaskState::Queued,
        WitState::Running => TaskState::Running,
        WitState::Success => TaskState::Success,
        WitState::Failure => TaskState::Failure,
        WitState::Aborted => TaskState::Aborted,
        WitState::RateLimited => TaskState::RateLimited,
        WitState::Interrupted => TaskState::Interrupted,
    }
}

/// A priority as components see it.
pub fn wit_priority(p: Priority) -> WitPriority {
    match p {
        Priority::High => WitPriority::High,
        Priority::Medium => WitPriority::Medium,
        Priority::Low => WitPriority::Low,
    }
}

/// A priority a component names, as the scheduler's.
pub fn host_priority(p: WitPriority) -> Priority {
    match p {
        WitPriority::High => Priority::High,
        WitPriority::Medium => Priority::Medium,
        WitPriority::Low => Priority::Low,
    }
}

/// A run as components see it (times in microseconds, params as JSON text).
pub fn wit_run(r: &TaskRun) -> WitRun {
    WitRun {
        id: r.id.clone(),
        task: r.task.clone(),
        tags: r.tags.clone(),
        priority: wit_priority(r.priority),
        state: wit_state(r.state),
        params_json: r.params.to_string(),
        queued: r.queued.map(|t| t.timestamp_micros()),
        start: r.start.map(|t| t.timestamp_micros()),
        end: r.end.map(|t| t.timestamp_micros()),
        retry_attempt: r.retry_attempt,
        rate_limit_attempt: r.rate_limit_attempt,
        from_run_id: r.from_run_id.clone(),
        root_run_id: r.root_run_id.clone(),
        error: r.error.clone(),
    }
}

/// A call's error as the calling component sees it.
pub fn call_error(e: PluginCallError) -> CallError {
    match e {
        PluginCallError::NoSuchPlugin(m) => CallError::NoSuchPlugin(m),
        PluginCallError::UnknownMethod(m) => CallError::UnknownMethod(m),
        PluginCallError::InvalidInput(m) => CallError::InvalidInput(m),
        PluginCallError::NotFound(m) => CallError::NotFound(m),
        PluginCallError::Failed(m) => CallError::Failed(m),
        PluginCallError::Unavailable(m) => CallError::Unavailable(m),
    }
}

/// A plugin's own error, with its text cut to [`crate::scheduler::MAX_ERROR_BYTES`]: it
/// travels to callers and into `/plugins`.
pub fn from_call_error(e: CallError) -> PluginCallError {
    let cut = |m: String| crate::scheduler::cut_text(m, crate::scheduler::MAX_ERROR_BYTES);
    match e {
        CallError::NoSuchPlugin(m) => PluginCallError::NoSuchPlugin(cut(m)),
        CallError::UnknownMethod(m) => PluginCallError::UnknownMethod(cut(m)),
        CallError::InvalidInput(m) => PluginCallError::InvalidInput(cut(m)),
        CallError::NotFound(m) => PluginCallError::NotFound(cut(m)),
        CallError::Failed(m) => PluginCallError::Failed(cut(m)),
        CallError::Unavailable(m) => PluginCallError::Unavailable(cut(m)),
    }
}
