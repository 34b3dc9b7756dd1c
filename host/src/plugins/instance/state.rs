//! The data of one instance's store, [`PluginState`]: its sandbox, its supervisor, what its
//! capabilities reach outside it, and what the current call tells them (who is waiting on
//! it, which run it executes or is being delivered).
//!
//! What a capability needs of the loaded plugins (calling one, finding a task component's
//! tasks) goes through [`Peers`], a narrow handle the registry implements, so an instance
//! never holds the registry itself. [`StoreMaker`] is what every fresh store is made from.

use super::supervisor::Supervisor;
use crate::plugins::engine::sandbox::{self, Sandbox, Sandboxed};
use crate::scheduler::{CallFuture, Scheduler};
use crate::store::plugin_tables::PluginStorage;
use crate::types::Role;
use std::collections::HashSet;
use std::sync::Arc;
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtxView, WasiView};

/// What an instance's capabilities may ask of the other loaded plugins. Implemented by the
/// registry's call accounting; held by every instance instead of the registry itself.
pub(crate) trait Peers: Send + Sync {
    /// Whether a plugin of that name is loaded.
    fn has_plugin(&self, name: &str) -> bool;

    /// Calls plugin `target`'s exported `call`. `chain` holds the plugins already waiting
    /// on this call (its caller last), to refuse re-entry and wait cycles.
    fn call<'a>(&'a self, target: &'a str, method: &'a str, args: String, chain: Vec<String>) -> CallFuture<'a>;

    /// All the tasks of the loaded task component that `sup` supervises, when `task` is one
    /// of them; None when it is not, or the component is not (or no longer) loaded.
    fn component_tasks(&self, sup: &Arc<Supervisor>, task: &str) -> Option<Vec<String>>;

    /// Whether `task` is a task of a loaded task component other than the one `sup`
    /// supervises.
    fn owned_elsewhere(&self, sup: &Arc<Supervisor>, task: &str) -> bool;
}

/// A role a plugin declared for one of its routes: method (upper case), path, role.
pub type Declared = (String, String, Role);

/// The data of one plugin instance's store.
pub struct PluginState {
    /// The plugin's name (or `task NAME` for a task component's run).
    pub(crate) name: String,
    pub(crate) sandbox: Sandbox,
    pub(crate) sup: Arc<Supervisor>,
    /// The other plugins, as the `host` capability reaches them.
    pub(crate) peers: Arc<dyn Peers>,
    /// Tasks and queueing, for the `host` capability.
    pub(crate) scheduler: Scheduler,
    /// The plugin tables, for the `storage` capability.
    pub(crate) storage: PluginStorage,
    /// Plugins on the call stack above this call (to refuse re-entry instead of deadlocking).
    pub(crate) chain: Vec<String>,
    /// The run a task component's instance executes (its children name it as parent).
    pub(crate) run_id: Option<String>,
    /// The runs of the events a plugin is being delivered: the only runs it may name as
    /// the parent of a run it queues (a follow-up of a run it was told about).
    pub(crate) delivering: HashSet<String>,
    /// A storage call of the current job failed because of the database (busy with other
    /// plugins, unreachable), not the plugin: a failed delivery then does not count.
    pub(crate) not_its_fault: bool,
    /// How long the current job's storage calls waited for connections other plugins
    /// held: a job that ran out of time mostly so is not put down to the plugin.
    pub(crate) storage_waited: std::time::Duration,
    /// While `register` runs: the roles it declares for its routes (`route_roles`).
    pub(crate) in_register: bool,
    pub(crate) route_roles: Vec<Declared>,
    /// Why a declaration was refused (too many, too long): the loader refuses the plugin.
    pub(crate) route_roles_refused: Option<String>,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.sandbox.wasi, table: &mut self.sandbox.table }
    }
}

impl Sandboxed for PluginState {
    fn sandbox(&mut self) -> &mut Sandbox {
        &mut self.sandbox
    }
}

/// What every fresh store is made from, besides its plugin's supervisor: the engine, and
/// what the capabilities reach outside the sandbox. One per runtime; cheap to clone.
#[derive(Clone)]
pub(crate) struct StoreMaker {
    pub(crate) engine: Engine,
    pub(crate) scheduler: Scheduler,
    pub(crate) storage: PluginStorage,
    pub(crate) peers: Arc<dyn Peers>,
}

impl StoreMaker {
    /// A fresh store for an instance of the plugin `sup` supervises: its grants, its memory
    /// cap, a bounded resource table, a bounded copy per call; the caller sets the per-call
    /// deadline.
    pub(crate) fn new_store(&self, sup: &Arc<Supervisor>) -> Result<Store<PluginState>, String> {
        let state = PluginState {
            name: sup.name.clone(),
            sandbox: Sandbox::new(&sup.policy)?,
            sup: sup.clone(),
            peers: self.peers.clone(),
            scheduler: self.scheduler.clone(),
            storage: self.storage.clone(),
            chain: Vec::new(),
            run_id: None,
            delivering: Default::default(),
            not_its_fault: false,
            storage_waited: std::time::Duration::ZERO,
            in_register: false,
            route_roles: Vec::new(),
            route_roles_refused: None,
        };
        Ok(sandbox::new_store(&self.engine, &sup.policy.limits, state))
    }
}
