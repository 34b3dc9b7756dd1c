//! fluid: a task scheduler host whose plugins are sandboxed WebAssembly components.
//!
//! The library behind the `fluid` binary (crate `fluid-cli`): applications register native
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
//! - [`types`]: the vocabulary every layer shares (runs, states, priorities, retry, roles).
//!
//! Every public item says what it is: the crate denies `missing_docs`.

#![deny(missing_docs)]

pub mod cli;
pub mod componentize;
pub mod examples;
pub mod history;
mod host;
pub mod http;
pub mod metrics;
pub mod plugins;
pub mod scaffold;
pub mod scheduler;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod types;

pub use host::{Host, HostConfig};
pub use scheduler::{Priority, RetryPolicy, Schedule, Task, TaskContext, TaskError, TaskRun, TaskState};

/// The layers, held: what each folder may not import (and where locks are named). A leaf imports nothing above it; the
/// store knows no scheduler, the scheduler no wasmtime, plugins or HTTP.
#[cfg(test)]
mod layers {
    /// Every line but comments of the `.rs` files under `dir` (a folder or one file) of `src/`.
    fn imports_of(dir: &str) -> Vec<(String, String)> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
        let mut out = vec![];
        let mut stack = vec![root];
        while let Some(p) = stack.pop() {
            if p.is_dir() {
                stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                    out.push((p.display().to_string(), line.to_string()));
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

    /// The layers of `plugins/`, lowest first: each folder may import only the folders
    /// before it (and `bundled.rs`, which imports none), so no import cycle can form.
    const PLUGIN_LAYERS: [&str; 6] = ["wit", "engine", "instance", "capabilities", "services", "registry"];

    #[test]
    fn each_plugins_layer_imports_only_the_layers_below() {
        for (i, layer) in PLUGIN_LAYERS.iter().enumerate() {
            let dir = format!("plugins/{layer}");
            let above: Vec<String> =
                PLUGIN_LAYERS[i + 1..].iter().flat_map(|l| [format!("crate::plugins::{l}"), format!("super::{l}")]).collect();
            refuse(&dir, &above.iter().map(String::as_str).collect::<Vec<_>>());
            // Another layer is named by its full path, never through `super::super::` nor the
            // re-exports of `plugins/mod.rs` (which would hide an upward import).
            refuse(&dir, &["super::super::", "crate::plugins::{", "crate::plugins;", "use crate::plugins as"]);
            let below: Vec<String> = PLUGIN_LAYERS[..=i].iter().chain(&["bundled"]).map(|l| format!("crate::plugins::{l}::")).collect();
            for (file, line) in imports_of(&dir) {
                for (at, _) in line.match_indices("crate::plugins::") {
                    let path = &line[at..];
                    assert!(
                        below.iter().any(|b| path.starts_with(b.as_str())),
                        "{file} reaches above {dir}/ (or around the layers): {line}"
                    );
                }
            }
        }
        refuse("plugins/bundled.rs", &["crate::plugins", "super::"]);
    }

    #[test]
    fn the_scheduler_knows_no_wasmtime_plugins_or_http() {
        refuse("scheduler", &["wasmtime", "crate::plugins", "crate::http", "crate::host"]);
    }
}
