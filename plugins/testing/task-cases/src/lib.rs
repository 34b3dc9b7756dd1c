//! Test task component: one task per way a run can end badly. `spin` loops forever
//! (timeout 300 ms, so the epoch deadline must stop it), `boom` panics (a trap),
//! `give-up` returns `aborted`, `count` keeps a counter in memory and fails unless it is
//! the first run of its instance (a fresh instance per run keeps it at 1).

use fluid_guest::{RunContext, TaskComponent, TaskDef, TaskError};
use std::sync::atomic::{AtomicU32, Ordering};

struct Cases;

static RUNS: AtomicU32 = AtomicU32::new(0);

impl TaskComponent for Cases {
    fn definitions() -> Vec<TaskDef> {
        vec![TaskDef::new("spin").timeout_ms(300), TaskDef::new("boom"), TaskDef::new("give-up").retry(3, 10, 1.0), TaskDef::new("count")]
    }

    fn run(ctx: RunContext) -> Result<(), TaskError> {
        match ctx.run.task.as_str() {
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "boom" => panic!("boom"),
            "give-up" => Err(RunContext::abort("nothing to do")),
            "count" => match RUNS.fetch_add(1, Ordering::SeqCst) + 1 {
                1 => Ok(()),
                n => Err(RunContext::fail(format!("instance reused: run number {n}"))),
            },
            other => Err(RunContext::fail(format!("unknown task {other}"))),
        }
    }
}

fluid_guest::export_task!(Cases);
