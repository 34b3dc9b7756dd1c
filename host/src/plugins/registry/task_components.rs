//! The task components loaded from the plugins folder: registering a file's tasks (defined
//! and checked by `services::tasks`) in place of its previous version's, unregistering them,
//! and showing them in `/plugins`. The records live in the loaded set (`loaded`).

use super::loaded::{FileStamp, TaskComponent};
use super::runtime::{PluginInfo, PluginRuntime};
use crate::plugins::engine::cache;
use crate::plugins::instance::state::PluginState;
use crate::plugins::instance::supervisor::Supervisor;
use crate::plugins::services::tasks;
use crate::plugins::wit::bindings::task_world::TaskPre;
use std::path::Path;
use std::sync::Arc;

impl PluginRuntime {
    /// Registers the tasks of the task component at `path` (replacing those its previous
    /// version registered), or refuses the whole file with the first invalid definition.
    pub(crate) async fn install_tasks(
        &self,
        path: &Path,
        pre: TaskPre<PluginState>,
        bytes: &[u8],
        stamp: FileStamp,
        world: String,
    ) -> Result<(), String> {
        let shared = &self.shared;
        let component = path.file_stem().and_then(|s| s.to_str()).unwrap_or("").to_string();
        let policy = shared
            .config
            .read()
            .unwrap()
            .policy(&component)
            .map_err(|e| format!("{}: fluid.toml: {e:#}", shared.settings.config_path.display()))?;
        let sup = Arc::new(Supervisor::new(&format!("task component {component}"), Arc::new(policy), shared.stop.child_token()));
        let defined = tasks::define(path, &component, &shared.stores, &pre, &sup).await?;
        let previous: Vec<String> = shared.loaded.task_components.read().unwrap().get(path).map(|c| c.tasks.clone()).unwrap_or_default();
        let names = tasks::register(&shared.scheduler, path, &component, &previous, defined).await?;
        let tc = TaskComponent { file: path.to_path_buf(), sha256: cache::sha256(bytes), stamp, tasks: names, world, sup };
        shared.loaded.task_components.write().unwrap().insert(path.to_path_buf(), Arc::new(tc));
        Ok(())
    }

    /// Unregisters the tasks of the task component loaded from `path`, if any. Their
    /// queued runs wait for a host that knows them.
    pub(crate) fn unload_tasks(&self, path: &Path) -> bool {
        let Some(tc) = self.shared.loaded.task_components.write().unwrap().remove(path) else { return false };
        for name in &tc.tasks {
            self.shared.scheduler.unregister(name);
        }
        tracing::info!(file = %path.display(), tasks = ?tc.tasks, "task component unloaded");
        true
    }

    /// Loaded task components, as `/plugins` shows them.
    pub(crate) fn task_components(&self) -> Vec<PluginInfo> {
        self.shared
            .loaded
            .task_components
            .read()
            .unwrap()
            .values()
            .map(|tc| PluginInfo {
                name: tc.file.file_stem().and_then(|s| s.to_str()).unwrap_or("").into(),
                file: tc.file.display().to_string(),
                sha256: Some(tc.sha256.clone()),
                world: tc.world.clone(),
                tasks: tc.tasks.clone(),
                state: "active".into(),
                health: serde_json::to_value(tc.sup.health()).ok(),
                limits: serde_json::to_value(&tc.sup.policy.limits).ok(),
                ..Default::default()
            })
            .collect()
    }
}
