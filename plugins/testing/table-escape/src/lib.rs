//! `call("attack")` reaches for tables that are not its own: the host's (`fluid_runs`,
//! `fluid_events`), SQLite's catalogue, the db plugin's physical table, and names with
//! quotes, dots and SQL in them, as tables, columns, filters and order. It answers with
//! what each attempt returned; `call("own")` reads its own `fluid_tasks` (a name the db
//! plugin also uses, which must be a different table).

use fluid_guest::storage::{self, Column, ColumnType, Filter, FilterOp, OrderBy, Query, TableDef, Value as V};
use fluid_guest::{CallError, Plugin, Registration};
use serde_json::{Value, json};

struct Escape;

const TABLES: [&str; 12] = [
    "fluid_runs",
    "fluid_events",
    "fluid_plugin_tables",
    "sqlite_master",
    "p_2_db_fluid_tasks",
    "FLUID_RUNS",
    "../db",
    "main.fluid_runs",
    "x\"; DROP TABLE fluid_runs; --",
    "fluid_runs; DELETE FROM fluid_runs",
    "",
    "a_very_long_table_name_over_the_limit_of_the_host",
];

fn def(name: &str, column: &str) -> TableDef {
    TableDef {
        name: name.into(),
        columns: vec![Column { name: column.into(), kind: ColumnType::Text, nullable: false }],
        primary_key: vec![column.into()],
        indexes: vec![],
    }
}

fn query(columns: Vec<String>, filters: Vec<Filter>, order: Vec<OrderBy>) -> Query {
    Query { columns, filters, order, after: None, limit: None }
}

fn show<T: std::fmt::Debug>(r: Result<T, storage::StorageError>) -> Value {
    match r {
        Ok(v) => json!({ "ok": format!("{v:?}") }),
        Err(e) => json!({ "error": format!("{e:?}") }),
    }
}

impl Plugin for Escape {
    fn register(_config: Value) -> Result<Registration, String> {
        storage::ensure_table(&def("fluid_tasks", "id")).map_err(|e| format!("{e:?}"))?;
        Ok(Registration::new("table_escape", "0.1.0"))
    }

    fn call(method: &str, _args: Value) -> Result<Value, CallError> {
        match method {
            "attack" => {
                let mut out = Vec::new();
                for t in TABLES {
                    out.push(json!({ "op": "ensure-table", "name": t, "result": show(storage::ensure_table(&def(t, "id"))) }));
                    out.push(json!({ "op": "select", "name": t, "result": show(storage::select(t, &query(vec![], vec![], vec![]))) }));
                    out.push(json!({ "op": "count", "name": t, "result": show(storage::count(t, &[])) }));
                    out.push(json!({ "op": "delete", "name": t, "result": show(storage::delete(t, &[])) }));
                    out.push(json!({ "op": "upsert", "name": t, "result": show(storage::upsert(t, &["id".into()], &[vec![V::Text("x".into())]])) }));
                }
                // Crafted column names against its own table.
                for c in ["id\" FROM fluid_runs --", "id, (SELECT COUNT(*) FROM fluid_runs)", "ID", "1"] {
                    let eq = Filter { column: c.into(), op: FilterOp::Eq(V::Text("x".into())) };
                    let by = OrderBy { column: c.into(), descending: false };
                    out.push(json!({ "op": "select-column", "name": c, "result": show(storage::select("fluid_tasks", &query(vec![c.into()], vec![], vec![]))) }));
                    out.push(json!({ "op": "filter-column", "name": c, "result": show(storage::select("fluid_tasks", &query(vec![], vec![eq], vec![]))) }));
                    out.push(json!({ "op": "order-column", "name": c, "result": show(storage::select("fluid_tasks", &query(vec![], vec![], vec![by]))) }));
                    out.push(json!({ "op": "ensure-column", "name": c, "result": show(storage::ensure_table(&def("other", c))) }));
                }
                Ok(json!(out))
            }
            "own" => {
                let rows =
                    storage::select("fluid_tasks", &query(vec![], vec![], vec![])).map_err(|e| CallError::Failed(format!("{e:?}")))?;
                Ok(json!(rows.len()))
            }
            other => Err(CallError::UnknownMethod(other.into())),
        }
    }
}

fluid_guest::export_plugin!(Escape);
