//! fluid: a task scheduler host whose plugins are sandboxed WebAssembly components.
//!
//! The crate is both the `fluid` binary and a library: applications register native
//! async Rust tasks with [`scheduler::Task`] and start the host through [`cli::main`] or
//! [`Host`]. Each concern has its own module with a small public face:
//!
//! - [`scheduler`]: tasks, runs and their state machine, schedules, the claim loop and workers.
//!   It knows nothing of wasmtime.
//! - [`store`]: the durable queue, runs, change feed and plugin storage on SQLite or PostgreSQL.
//! - [`plugins`]: WebAssembly components: loading, linking, sandbox, event delivery.
//! - [`http`]: the axum routes.
//! - [`metrics`]: Prometheus metrics of runs, plugins and the store.
//! - [`cli`]: the `fluid` command line.
//! - [`telemetry`]: logs, and traces exported over OpenTelemetry when asked.

pub mod bench;
pub mod cli;
pub mod componentize;
pub mod examples;
pub mod history;
pub mod host;
pub mod http;
pub mod metrics;
pub mod plugins;
pub mod scaffold;
pub mod scheduler;
pub mod store;
pub mod telemetry;
pub mod time;

pub use host::{Host, HostConfig};
pub use scheduler::{Priority, RetryPolicy, Schedule, Task, TaskContext, TaskError, TaskRun, TaskState};
