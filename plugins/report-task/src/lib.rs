//! The seed example as a task component: task `report` reads the last 10 runs of a task
//! (`my-task` unless params say `{"task": ...}`) from the db plugin's history and logs
//! each run's id and state. With `{"forward_to": TASK}` it also queues a child run of
//! TASK whose params are `{"runs": [[id, state], ...]}`, which is how a test (or a
//! pipeline) sees what it read.

use fluid_guest::{HistoryQuery, RunContext, TaskComponent, TaskDef, TaskError, get_db_plugin, log};
use serde_json::{Value, json};

struct Report;

impl TaskComponent for Report {
    fn definitions() -> Vec<TaskDef> {
        let schema = json!({"type": "object", "properties": {"task": {"type": "string"}, "forward_to": {"type": "string"}}});
        vec![
            TaskDef::new("report")
                .description("Logs the last 10 runs of a task, read from the db plugin")
                .timeout_ms(10_000)
                .tags(&["example"])
                .params_schema(schema),
        ]
    }

    fn run(ctx: RunContext) -> Result<(), TaskError> {
        let params: Value = ctx.params()?;
        let task = params.get("task").and_then(Value::as_str).unwrap_or("my-task").to_string();
        let db = get_db_plugin().ok_or_else(|| RunContext::fail("the db plugin is not loaded"))?;
        let page = db
            .get_history(&HistoryQuery { task: vec![task.clone()], limit: Some(10), ..Default::default() })
            .map_err(|e| RunContext::fail(format!("{e:?}")))?;
        for run in &page.data {
            log::info(&format!("{task} run {} is {}", run.id, run.state));
        }
        if let Some(target) = params.get("forward_to").and_then(Value::as_str) {
            let runs: Vec<Value> = page.data.iter().map(|r| json!([r.id, r.state])).collect();
            ctx.queue_child(target, &json!({ "runs": runs })).map_err(|e| RunContext::fail(format!("cannot queue {target}: {e:?}")))?;
        }
        Ok(())
    }
}

fluid_guest::export_task!(Report);
