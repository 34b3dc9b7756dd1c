//! Hostile task component: one task, `tick-fast`, scheduled `every 1ms` (timeout 1 s, each
//! run succeeds), to check that the host enforces a minimum schedule period instead of
//! queueing a thousand runs a second.

use fluid_guest::{RunContext, TaskComponent, TaskDef, TaskError};

struct FastSchedule;

impl TaskComponent for FastSchedule {
    fn definitions() -> Vec<TaskDef> {
        vec![TaskDef::new("tick-fast").schedule("every 1ms").timeout_ms(1_000)]
    }

    fn run(_ctx: RunContext) -> Result<(), TaskError> {
        Ok(())
    }
}

fluid_guest::export_task!(FastSchedule);
