//! Hostile task component: runs that attack the host from inside the `task` world, to
//! check that queueing, run time, error and params sizes, and plugin calls are bounded.
//!
//! - `fork` (5 s): queues two more `fork` runs as its children (an exponential chain).
//! - `flood` (10 s): queues up to 100,000 `attack-noop` runs, failing with how many went
//!   through and the error that stopped it.
//! - `attack-noop` (1 s): does nothing.
//! - `burn` (2 s): busy-loops `params.ms` ms (default 1500).
//! - `huge-error`: fails with an error of `params.bytes` bytes (default 8 MiB).
//! - `huge-params`: queues `attack-noop` with a `blob` param of `params.bytes` bytes
//!   (default 4 MiB); fails with the error if the host refuses it.
//! - `call-db`: calls `db.<params.method>` (default `get`) with `params.args` (default
//!   `{}`) `params.n` times (default 1); succeeds whatever the calls return.
//! - `graft`: queues `attack-noop` as a child of `params.parent` (another run's id).
//! - `sleep` (300 ms): sleeps an hour in a host call, where the epoch cannot stop it.
//! - `hold`, `hold-too` (1 h): sleep `params.ms` ms (default an hour) in a host call,
//!   holding a worker all that time without using CPU.

use fluid_guest::host::{self, QueueRequest, get_plugin};
use fluid_guest::{RunContext, TaskComponent, TaskDef, TaskError};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

struct AttackTasks;

impl TaskComponent for AttackTasks {
    fn definitions() -> Vec<TaskDef> {
        vec![
            TaskDef::new("fork").timeout_ms(5_000),
            TaskDef::new("flood").timeout_ms(10_000),
            TaskDef::new("attack-noop").timeout_ms(1_000),
            TaskDef::new("burn").timeout_ms(2_000),
            TaskDef::new("huge-error"),
            TaskDef::new("huge-params"),
            TaskDef::new("call-db"),
            TaskDef::new("graft"),
            TaskDef::new("sleep").timeout_ms(300),
            TaskDef::new("hold").timeout_ms(3_600_000),
            TaskDef::new("hold-too").timeout_ms(3_600_000),
        ]
    }

    fn run(ctx: RunContext) -> Result<(), TaskError> {
        let params: Value = ctx.params()?;
        let num = |k: &str, default: u64| params[k].as_u64().unwrap_or(default);
        match ctx.run.task.as_str() {
            "fork" => {
                for _ in 0..2 {
                    ctx.queue_child("fork", &json!({})).map_err(|e| RunContext::fail(format!("{e:?}")))?;
                }
                Ok(())
            }
            "flood" => {
                let req = QueueRequest {
                    task: "attack-noop".into(),
                    params_json: "{}".into(),
                    priority: None,
                    from_run_id: Some(ctx.run.id.clone()),
                };
                for n in 0..100_000u32 {
                    if let Err(err) = host::queue_run(&req) {
                        return Err(RunContext::fail(format!("queued {n}, then: {err:?}")));
                    }
                }
                Ok(())
            }
            "attack-noop" => Ok(()),
            "burn" => {
                let (start, mut n) = (Instant::now(), 0u64);
                while start.elapsed() < Duration::from_millis(num("ms", 1_500)) {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
                Ok(())
            }
            "huge-error" => Err(RunContext::fail("e".repeat(num("bytes", 8 << 20) as usize))),
            "huge-params" => {
                let blob = "p".repeat(num("bytes", 4 << 20) as usize);
                let task = params["task"].as_str().unwrap_or("attack-noop");
                ctx.queue_child(task, &json!({ "blob": blob })).map_err(|e| RunContext::fail(format!("{e:?}")))?;
                Ok(())
            }
            // Parks in a host call (a WASI sleep) for an hour, past its 300 ms timeout:
            // the epoch cannot interrupt it there.
            "sleep" => {
                std::thread::sleep(Duration::from_secs(3600));
                Ok(())
            }
            // Holds its worker in a host call for `params.ms`, within its hour-long
            // timeout: many of them would take every worker.
            "hold" | "hold-too" => {
                std::thread::sleep(Duration::from_millis(num("ms", 3_600_000)));
                Ok(())
            }
            // Queues a run under another run's lineage (`params.parent`).
            "graft" => {
                let req = QueueRequest {
                    task: "attack-noop".into(),
                    params_json: "{}".into(),
                    priority: None,
                    from_run_id: params["parent"].as_str().map(str::to_string),
                };
                host::queue_run(&req).map(drop).map_err(|e| RunContext::fail(format!("{e:?}")))
            }
            "call-db" => {
                let db = get_plugin("db").ok_or_else(|| RunContext::fail("no db plugin"))?;
                let method = params["method"].as_str().unwrap_or("get");
                let args = if params["args"].is_null() { "{}".to_string() } else { params["args"].to_string() };
                for _ in 0..num("n", 1) {
                    let _ = db.call(method, &args);
                }
                Ok(())
            }
            other => Err(RunContext::fail(format!("unknown task {other}"))),
        }
    }
}

fluid_guest::export_task!(AttackTasks);
