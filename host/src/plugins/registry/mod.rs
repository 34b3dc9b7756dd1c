//! Layer 6, the registry: which components are loaded from the plugins folder and under
//! which settings, and the public face of the runtime.
//!
//! - `runtime`: [`PluginRuntime`], the handle, and the pieces of its state ([`runtime::Shared`]).
//! - `loaded`: the loaded set: plugins by name, task components by file, failed files.
//! - `calls`: call accounting between plugins; the `Peers` handle instances hold.
//! - `loader`: loading, swapping, unloading and re-enabling a plugin from its file.
//! - `task_components`: the task components' records and their tasks' registration.
//! - `route_table`: which loaded plugin serves an HTTP request.
//! - `watcher`: polls the plugins folder and fluid.toml while the host runs.
//! - `config`: fluid.toml, read into each plugin's policy.
//! - `trust`: which files may run at all (`[trust]`: any, pinned SHA-256, ed25519-signed).
//! - `inspect`: checking plugin files without a running host (the CLI).
//! - `probe`: measuring loaded plugins from outside the host's loops (`fluid bench`).
//!
//! It is the top layer: it implements the handles the layers below define
//! (`instance::state::Peers`) and hands each of them only what it needs.

pub(crate) mod calls;
pub(crate) mod config;
pub mod inspect;
pub(crate) mod loaded;
pub(crate) mod loader;
pub(crate) mod probe;
pub(crate) mod route_table;
pub(crate) mod runtime;
pub(crate) mod task_components;
pub mod trust;
pub(crate) mod watcher;

pub use runtime::{DEFAULT_COMPILE_SLOTS, DEFAULT_EVENT_BATCH, PluginInfo, PluginRuntime, PluginSettings};
