//! The types the scheduler, the store, the plugins and the HTTP API share: a run, its
//! states and their rules, priorities, retry policies, API roles. A leaf: it imports nothing of this
//! crate, so each of those layers can use it without importing another.

mod retry;
mod role;
mod run;

pub use retry::RetryPolicy;
pub use role::Role;
pub use run::{
    InvalidTransition, MAX_ERROR_BYTES, MAX_PARAMS_BYTES, MAX_PARAMS_VALUES, ParamsShape, Priority, TaskRun, TaskState, cut_text,
    error_text,
};
