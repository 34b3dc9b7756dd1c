//! The one place that runs `bindgen!`: the `plugin` world and the `task` world (the WIT the
//! guest SDK carries, `guest-sdk/wit/`).
//! Everything else in the host uses these generated types. The task world reuses the
//! plugin world's `types` and `host` bindings, so one `host` implementation serves both.

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../guest-sdk/wit",
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

/// The WIT the bindings above are generated from, file by file, as this host speaks it
/// (`fluid wit` writes them out for authors outside this repository).
pub const WIT_FILES: [(&str, &str); 6] = [
    ("types.wit", include_str!("../../../guest-sdk/wit/types.wit")),
    ("host.wit", include_str!("../../../guest-sdk/wit/host.wit")),
    ("storage.wit", include_str!("../../../guest-sdk/wit/storage.wit")),
    ("task-manager-plugin.wit", include_str!("../../../guest-sdk/wit/task-manager-plugin.wit")),
    ("task.wit", include_str!("../../../guest-sdk/wit/task.wit")),
    ("worlds.wit", include_str!("../../../guest-sdk/wit/worlds.wit")),
];

#[cfg(test)]
mod tests {
    /// Every file of the contract is in `WIT_FILES`: a file added to wit/ is written out too.
    #[test]
    fn wit_files_are_the_whole_contract() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/wit");
        let mut on_disk: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        on_disk.sort();
        let mut listed: Vec<String> = super::WIT_FILES.iter().map(|(n, _)| n.to_string()).collect();
        listed.sort();
        assert_eq!(listed, on_disk);
    }
}
