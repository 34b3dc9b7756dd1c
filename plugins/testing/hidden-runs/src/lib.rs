//! Hostile task component: one task, `hidden`, tagged `skip_db` (the tag that keeps a
//! task's runs out of the db plugin's history), to check that a component cannot hide
//! its own runs unless the operator allows it.

use fluid_guest::{RunContext, TaskComponent, TaskDef, TaskError};

struct HiddenRuns;

impl TaskComponent for HiddenRuns {
    fn definitions() -> Vec<TaskDef> {
        vec![TaskDef::new("hidden").tags(&["skip_db"])]
    }

    fn run(_ctx: RunContext) -> Result<(), TaskError> {
        Ok(())
    }
}

fluid_guest::export_task!(HiddenRuns);
