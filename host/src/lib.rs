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
//! - [`http`]: the HTTP API (axum), served by [`Host`]; public here is the minting of API tokens.
//! - [`metrics`]: Prometheus metrics of runs, plugins and the store.
//! - [`cli`]: the host's command line (the `fluid` binary, in the `fluid-cli` crate, adds `bench`).
//! - [`telemetry`]: logs, and traces exported over OpenTelemetry when asked.

#[deny(missing_docs)]
pub mod cli;
#[deny(missing_docs)]
pub mod componentize;
#[deny(missing_docs)]
pub mod examples;
#[deny(missing_docs)]
pub mod history;
#[deny(missing_docs)]
mod host;
#[deny(missing_docs)]
pub mod http;
#[deny(missing_docs)]
pub mod metrics;
pub mod plugins;
#[deny(missing_docs)]
pub mod scaffold;
#[deny(missing_docs)]
pub mod scheduler;
pub mod store;
#[deny(missing_docs)]
pub mod telemetry;
#[deny(missing_docs)]
pub mod time;
// The shared types are every layer's vocabulary: each public item says what it is.
#[deny(missing_docs)]
pub mod types;

pub use host::{Host, HostConfig};
pub use scheduler::{Priority, RetryPolicy, Schedule, Task, TaskContext, TaskError, TaskRun, TaskState};

/// The layers, held: what each folder may not import (and where locks are named). A leaf imports nothing above it; the
/// store knows no scheduler, the scheduler no wasmtime, plugins or HTTP.
#[cfg(test)]
mod layers {
    fn imports_of(dir: &str) -> Vec<(String, String)> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
        let mut out = vec![];
        let mut stack = vec![root];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                        out.push((p.display().to_string(), line.to_string()));
                    }
                }
            }
        }
        out
    }

    fn refuse(dir: &str, forbidden: &[&str]) {
        for (file, line) in imports_of(dir) {
            for f in forbidden {
                assert!(!line.contains(f), "{file} uses {f}, which {dir}/ may not: {line}");
            }
        }
    }

    /// Every PostgreSQL advisory lock is named in `store/locks.rs`, none by a bare number.
    #[test]
    fn advisory_locks_are_named_in_one_place() {
        // Spelled in two parts, so this test does not find itself.
        let lock = concat!("pg_advisory", "_xact_lock(");
        for (file, line) in imports_of("") {
            assert!(file.ends_with("store/locks.rs") || !line.contains(lock), "{file}: {line}");
        }
    }

    #[test]
    fn the_shared_types_are_a_leaf() {
        refuse("types", &["crate::scheduler", "crate::store", "crate::plugins", "crate::http", "crate::host", "crate::metrics"]);
    }

    #[test]
    fn the_store_knows_no_scheduler_plugins_or_http() {
        refuse("store", &["crate::scheduler", "crate::plugins", "crate::http", "crate::host"]);
    }

    #[test]
    fn plugins_know_no_http_and_write_no_sql() {
        refuse("plugins", &["crate::http", "axum", "sqlx", "crate::store::query", "query_built"]);
    }

    #[test]
    fn the_scheduler_knows_no_wasmtime_plugins_or_http() {
        refuse("scheduler", &["wasmtime", "crate::plugins", "crate::http", "crate::host"]);
    }
}
