//! Layer 4, the capabilities given to components: one import per module, each implemented
//! on the instance's store data (`instance::state::PluginState`) and reaching no further
//! than it does.
//!
//! - `host_api`: the `host` import: log, get-plugin and calls, the task list, queueing.
//! - `storage`: the `storage` import, each plugin in its own namespace of the plugin tables.
//! - `route_roles`: the `route-roles` import: the API role each route of a plugin needs.
//!
//! WASI comes from `wasmtime_wasi`, restricted per store by the sandbox (`engine::sandbox`).
//! [`Linkers`] puts them together: what each world may import.

pub(crate) mod host_api;
pub(crate) mod route_roles;
pub(crate) mod storage;

use crate::plugins::engine::wt;
use crate::plugins::instance::state::PluginState;
use crate::plugins::wit::bindings::{self, Plugin};
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

/// The `types` interface holds only types: nothing to provide.
impl bindings::types::Host for PluginState {}

/// The engine and the imports of each world: everything a component is checked against
/// and instantiated with. One per runtime (and per offline check).
pub(crate) struct Linkers {
    pub(crate) engine: Engine,
    /// The imports of the `plugin` world.
    pub(crate) plugin: Linker<PluginState>,
    /// The imports of the `task` world (no `storage`).
    pub(crate) task: Linker<PluginState>,
}

impl Linkers {
    /// Both worlds' linkers on `engine`.
    pub(crate) fn new(engine: Engine) -> anyhow::Result<Linkers> {
        Ok(Linkers { plugin: plugin_linker(&engine)?, task: task_linker(&engine)?, engine })
    }
}

/// The imports a plugin may use: WASI (restricted per store by its grants) and the world's.
fn plugin_linker(engine: &Engine) -> anyhow::Result<Linker<PluginState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(wt)?;
    Plugin::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s).map_err(wt)?;
    Ok(linker)
}

/// The imports a task component may use: WASI (restricted by its grants) and `host`.
fn task_linker(engine: &Engine) -> anyhow::Result<Linker<PluginState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(wt)?;
    bindings::task_world::Task::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s).map_err(wt)?;
    Ok(linker)
}
