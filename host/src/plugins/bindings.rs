//! The one place that runs `bindgen!` for the `plugin` world (wit/). Everything else in
//! the host uses these generated types.

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "fluid:scheduler/host.plugin": super::host_api::PluginRef,
    },
});

pub use exports::fluid::scheduler::task_manager_plugin as tmp;
pub use fluid::scheduler::host as host_if;
pub use fluid::scheduler::storage as storage_if;
pub use fluid::scheduler::types;
