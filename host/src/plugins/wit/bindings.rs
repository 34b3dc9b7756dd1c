//! The one place that runs `bindgen!`: the `plugin` world and the `task` world of the newest
//! contract (the WIT the guest SDK carries, `guest-sdk/wit/`; see `contract` for the older
//! versions these bindings also serve).
//! Everything else in the host uses these generated types. The task world reuses the
//! plugin world's `types` and `host` bindings, so one `host` implementation serves both.

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../guest-sdk/wit",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "fluid:scheduler/host.plugin": PluginRef,
    },
});

/// Host side of the `plugin` resource (what `get-plugin` returns): just the target's name.
/// Defined with the bindings, so the resource's type is the contract's, not the `host`
/// capability's.
pub struct PluginRef {
    /// The plugin it names.
    pub name: String,
}

pub use exports::fluid::scheduler::task_manager_plugin as tmp;
pub use fluid::scheduler::host as host_if;
pub use fluid::scheduler::route_roles as route_roles_if;
pub use fluid::scheduler::storage as storage_if;
pub use fluid::scheduler::types;

/// The `task` world: components that define and run tasks.
pub mod task_world {
    wasmtime::component::bindgen!({
        world: "task",
        path: "../guest-sdk/wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "fluid:scheduler/types": super::fluid::scheduler::types,
            "fluid:scheduler/host": super::fluid::scheduler::host,
        },
    });

    pub use exports::fluid::scheduler::task_component as tc;
}
