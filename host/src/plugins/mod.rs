//! Plugins as WebAssembly components.
//!
//! - [`bindings`]: the generated types of the `plugin` and `task` worlds (the only `bindgen!`).
//! - [`config`]: fluid.toml: limits, capability grants and config per plugin.
//! - [`runtime`]: the engine, linker and the set of loaded plugins; calls between them.
//! - [`loader`]: loading, swapping, unloading and re-enabling a plugin from its file.
//! - [`watcher`]: polls the plugins folder and fluid.toml while the host runs.
//! - [`cache`]: compiled components on disk, keyed by content and engine.
//! - [`sandbox`]: a plugin instance's store: memory cap and WASI with only its grants.
//! - [`guest_pool`]: the threads guest code runs on (never the host's), CPU metering.
//! - [`limits`]: bounds on what a component's registration or definitions may hold.
//! - [`trust`]: which files may run at all (`[trust]`: any, pinned SHA-256, ed25519-signed).
//! - [`actor`]: one task per plugin owns its instance: calls are handled one at a time,
//!   each under a time limit; a trap discards the instance and the next call gets a
//!   fresh one.
//! - [`supervisor`]: counters, failures in a window, quarantine.
//! - [`dispatch`]: delivers the change feed to each plugin from its checkpoint.
//! - [`storage`]: the `storage` import, each plugin in its own namespace: its calls on the
//!   store's plugin tables (`store::plugin_tables`, which owns their SQL and quotas), and
//!   the conversions between the interface's types and the store's.
//! - [`route_roles`]: the `route-roles` import: the API role each route of a plugin needs.
//! - [`host_api`]: the `host` import: log, get-plugin, tasks, queueing.
//! - [`inspect`]: checking plugin files without running them (the CLI).
//! - [`routes`]: HTTP routes declared by plugins.
//! - [`tasks`]: task components: their tasks registered like native ones, a fresh
//!   instance per run under the task's timeout.
//! - [`params_schema`]: a task component's params schema, enforced at queue time with its
//!   cost bounded (the schema is untrusted input).

pub mod actor;
pub mod bindings;
pub mod bundled;
pub mod cache;
pub mod config;
pub mod contract;
pub mod dispatch;
pub mod guest_pool;
pub mod host_api;
pub mod inspect;
pub mod limits;
pub mod loader;
pub mod params_schema;
mod probe;
pub mod route_roles;
pub mod routes;
pub mod runtime;
pub mod sandbox;
mod stderr;
pub mod storage;
pub mod supervisor;
pub mod tasks;
pub mod trust;
pub mod watcher;

pub use config::{FluidConfig, Grants, Limits, Policy};
pub use loader::{Checked, EnableError, check_component};
pub use probe::InstanceCost;
pub use runtime::{PluginInfo, PluginRuntime, PluginSettings};
pub use supervisor::Health;
