//! Test task component with an invalid definition (the name `twice` is defined twice):
//! the host must refuse the whole file, naming it, and still load the other files.

use fluid_guest::{RunContext, TaskComponent, TaskDef, TaskError};

struct Bad;

impl TaskComponent for Bad {
    fn definitions() -> Vec<TaskDef> {
        vec![TaskDef::new("fine"), TaskDef::new("twice"), TaskDef::new("twice")]
    }

    fn run(_ctx: RunContext) -> Result<(), TaskError> {
        Ok(())
    }
}

fluid_guest::export_task!(Bad);
