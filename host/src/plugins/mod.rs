//! Plugins as WebAssembly components.
//!
//! - [`bindings`]: the generated types of the `plugin` world (the only `bindgen!`).
//! - [`runtime`]: the engine, linker and the set of loaded plugins; loading a folder.
//! - [`actor`]: one task per plugin owns its instance: calls are handled one at a time,
//!   each under a time limit and a memory cap; a trap discards the instance and the next
//!   call gets a fresh one.
//! - [`dispatch`]: delivers the change feed to each plugin from its checkpoint.
//! - [`storage`]: the `storage` import on sqlx, each plugin in its own namespace.
//! - [`host_api`]: the `host` import: log, get-plugin, tasks, queueing.
//! - [`routes`]: HTTP routes declared by plugins.

pub mod actor;
pub mod bundled;
pub mod bindings;
pub mod dispatch;
pub mod host_api;
pub mod routes;
pub mod runtime;
pub mod storage;

pub use runtime::{PluginInfo, PluginRuntime, PluginSettings};
