//! The stats plugin: how many runs of each task entered each state, at `GET /stats`
//! (and `call("counts")`). A second, small example of the plugin interface.
//!
//! Exact under at-least-once delivery: it records one row per (run, state) with an
//! upsert, so a replayed event changes nothing, and counts those rows when asked.

use fluid_guest::storage::{self, Column, ColumnType, Filter, FilterOp, TableDef, Value as V};
use fluid_guest::{ALL_EVENT_STATES, CallError, Event, Plugin, Registration};
use serde_json::{Map, Value, json};

const TABLE: &str = "entered";

struct Stats;

impl Plugin for Stats {
    fn register(_config: Value) -> Result<Registration, String> {
        let col = |name: &str| Column { name: name.into(), kind: ColumnType::Text, nullable: false };
        storage::ensure_table(&TableDef {
            name: TABLE.into(),
            columns: vec![col("run_id"), col("task"), col("state")],
            primary_key: vec!["run_id".into(), "state".into()],
            indexes: vec![vec!["task".into(), "state".into()]],
        })
        .map_err(|e| format!("{e:?}"))?;
        Ok(Registration::new("stats", env!("CARGO_PKG_VERSION")).subscribe(&ALL_EVENT_STATES, "stats").route("GET", "/stats", "counts"))
    }

    fn on_events(events: Vec<Event>) -> Result<(), String> {
        let rows: Vec<Vec<V>> = events
            .iter()
            .map(|e| vec![V::Text(e.run.id.clone()), V::Text(e.run.task.clone()), V::Text(e.run.state.as_str().into())])
            .collect();
        let columns = ["run_id", "task", "state"].map(String::from);
        storage::upsert(TABLE, &columns, &rows).map_err(|e| format!("{e:?}"))?;
        Ok(())
    }

    fn call(method: &str, _args: Value) -> Result<Value, CallError> {
        if method != "counts" {
            return Err(CallError::UnknownMethod(method.into()));
        }
        let mut out = Map::new();
        for task in fluid_guest::host::list_tasks() {
            let mut per_state = Map::new();
            for state in ALL_EVENT_STATES {
                let filters = [
                    Filter { column: "task".into(), op: FilterOp::Eq(V::Text(task.name.clone())) },
                    Filter { column: "state".into(), op: FilterOp::Eq(V::Text(state.as_str().into())) },
                ];
                let n = storage::count(TABLE, &filters).map_err(|e| CallError::Failed(format!("{e:?}")))?;
                if n > 0 {
                    per_state.insert(state.as_str().into(), json!(n));
                }
            }
            out.insert(task.name, Value::Object(per_state));
        }
        Ok(Value::Object(out))
    }
}

fluid_guest::export_plugin!(Stats);
