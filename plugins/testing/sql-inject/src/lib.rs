//! Stores hostile strings as values and uses them in filters. `call("roundtrip",
//! {"values": [...]})` writes each as text and inside JSON, reads each back with an `eq`
//! filter, a `one-of` and a `json-contains`, and answers with what came back; keys with
//! quotes in `json-contains` are tried too.

use fluid_guest::storage::{self, Column, ColumnType, Filter, FilterOp, Query, TableDef, Value as V};
use fluid_guest::{CallError, Plugin, Registration};
use serde_json::{Value, json};

struct Inject;

fn col(name: &str, kind: ColumnType) -> Column {
    Column { name: name.into(), kind, nullable: false }
}

fn find(filters: Vec<Filter>) -> Result<Vec<String>, String> {
    let rows = storage::select("kv", &Query { columns: vec!["k".into(), "v".into()], filters, order: vec![], after: None, limit: None })
        .map_err(|e| format!("{e:?}"))?;
    Ok(rows
        .into_iter()
        .map(|r| match r.get(1) {
            Some(V::Text(s)) => s.clone(),
            other => format!("{other:?}"),
        })
        .collect())
}

impl Plugin for Inject {
    fn register(_config: Value) -> Result<Registration, String> {
        let def = TableDef {
            name: "kv".into(),
            columns: vec![col("k", ColumnType::Int), col("v", ColumnType::Text), col("doc", ColumnType::Json)],
            primary_key: vec!["k".into()],
            indexes: vec![vec!["v".into()]],
        };
        storage::ensure_table(&def).map_err(|e| format!("{e:?}"))?;
        Ok(Registration::new("sql_inject", "0.1.0"))
    }

    fn call(method: &str, args: Value) -> Result<Value, CallError> {
        if method != "roundtrip" {
            return Err(CallError::UnknownMethod(method.into()));
        }
        let values: Vec<String> = args
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default();
        let rows: Vec<Vec<V>> = values
            .iter()
            .enumerate()
            .map(|(i, v)| vec![V::Int(i as i64), V::Text(v.clone()), V::Json(json!({ "s": v }).to_string())])
            .collect();
        storage::upsert("kv", &["k".into(), "v".into(), "doc".into()], &rows).map_err(|e| CallError::Failed(format!("{e:?}")))?;
        let mut out = Vec::new();
        for v in &values {
            let eq = find(vec![Filter { column: "v".into(), op: FilterOp::Eq(V::Text(v.clone())) }]);
            let one_of = find(vec![Filter { column: "v".into(), op: FilterOp::OneOf(vec![V::Text(v.clone())]) }]);
            let contains = find(vec![Filter { column: "doc".into(), op: FilterOp::JsonContains(json!({ "s": v }).to_string()) }]);
            out.push(json!({ "value": v, "eq": eq, "one_of": one_of, "json_contains": contains }));
        }
        let bad_key = find(vec![Filter { column: "doc".into(), op: FilterOp::JsonContains(json!({ "s\") OR 1=1 --": 1 }).to_string()) }]);
        let count = storage::count("kv", &[]).map_err(|e| CallError::Failed(format!("{e:?}")))?;
        Ok(json!({ "values": out, "bad_key": format!("{bad_key:?}"), "count": count }))
    }
}

fluid_guest::export_plugin!(Inject);
