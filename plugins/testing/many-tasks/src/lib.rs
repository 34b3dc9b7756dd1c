//! Hostile task component: `definitions` returns 20,000 valid tasks, `many-0` ..
//! `many-19999` (timeout 1 s, each run succeeds), to check that the host bounds how many
//! tasks one component may define rather than registering them all.

use fluid_guest::{RunContext, TaskComponent, TaskDef, TaskError};

struct ManyTasks;

impl TaskComponent for ManyTasks {
    fn definitions() -> Vec<TaskDef> {
        (0..20_000).map(|i| TaskDef::new(&format!("many-{i}")).timeout_ms(1_000)).collect()
    }

    fn run(_ctx: RunContext) -> Result<(), TaskError> {
        Ok(())
    }
}

fluid_guest::export_task!(ManyTasks);
