//! Records every event it is handed: table `seen` keeps, per feed `seq`, how many times it
//! came (so a test sees a lost event as a gap and a doubled one as a count of 2).
//! Config: `fail` (bool) makes every delivery an error; `version` is the registered version.
//! `call("seen")` returns `[[seq, times], ...]` in seq order.

use fluid_guest::storage::{self, Column, ColumnType, Filter, FilterOp, OrderBy, Query, TableDef, Value as V};
use fluid_guest::{ALL_EVENT_STATES, CallError, Event, Plugin, Registration};
use serde_json::{Value, json};
use std::cell::Cell;

struct EventLog;

thread_local! {
    static FAIL: Cell<bool> = const { Cell::new(false) };
}

fn all(filters: Vec<Filter>) -> Result<Vec<(i64, i64)>, String> {
    let q = Query {
        columns: vec!["seq".into(), "times".into()],
        filters,
        order: vec![OrderBy { column: "seq".into(), descending: false }],
        after: None,
        limit: None,
    };
    let rows = storage::select("seen", &q).map_err(|e| format!("{e:?}"))?;
    Ok(rows
        .into_iter()
        .filter_map(|r| match (r.first(), r.get(1)) {
            (Some(V::Int(s)), Some(V::Int(t))) => Some((*s, *t)),
            _ => None,
        })
        .collect())
}

impl Plugin for EventLog {
    fn register(config: Value) -> Result<Registration, String> {
        FAIL.with(|f| f.set(config.get("fail").and_then(Value::as_bool).unwrap_or(false)));
        let version = config.get("version").and_then(Value::as_str).unwrap_or("1").to_string();
        let def = TableDef {
            name: "seen".into(),
            columns: vec![
                Column { name: "seq".into(), kind: ColumnType::Int, nullable: false },
                Column { name: "times".into(), kind: ColumnType::Int, nullable: false },
            ],
            primary_key: vec!["seq".into()],
            indexes: vec![],
        };
        storage::ensure_table(&def).map_err(|e| format!("{e:?}"))?;
        Ok(Registration::new("event_log", &version).subscribe(&ALL_EVENT_STATES, "log"))
    }

    fn on_events(events: Vec<Event>) -> Result<(), String> {
        if FAIL.with(Cell::get) {
            return Err(format!("event_log is configured to fail ({} events refused)", events.len()));
        }
        let seqs: Vec<V> = events.iter().map(|e| V::Int(e.seq as i64)).collect();
        let before: std::collections::HashMap<i64, i64> =
            all(vec![Filter { column: "seq".into(), op: FilterOp::OneOf(seqs) }])?.into_iter().collect();
        let rows: Vec<Vec<V>> =
            events.iter().map(|e| vec![V::Int(e.seq as i64), V::Int(before.get(&(e.seq as i64)).copied().unwrap_or(0) + 1)]).collect();
        storage::upsert("seen", &["seq".into(), "times".into()], &rows).map_err(|e| format!("{e:?}"))?;
        Ok(())
    }

    fn call(method: &str, _args: Value) -> Result<Value, CallError> {
        match method {
            "seen" => Ok(json!(all(vec![]).map_err(CallError::Failed)?)),
            other => Err(CallError::UnknownMethod(other.into())),
        }
    }
}

fluid_guest::export_plugin!(EventLog);
