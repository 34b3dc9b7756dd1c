//! Fills its storage. `call("tables", {"n"})` creates tables `t0`..; `call("rows", {"from",
//! "n", "kib"})` upserts rows `from..from+n` of `kib` KiB each, one upsert per row;
//! `call("delete", {"below"})` deletes rows under a key. Each answers how far it got and
//! the error that stopped it.

use fluid_guest::storage::{self, Column, ColumnType, Filter, FilterOp, TableDef, Value as V};
use fluid_guest::{CallError, Plugin, Registration};
use serde_json::{Value, json};

struct Hog;

fn table(name: &str) -> TableDef {
    TableDef {
        name: name.into(),
        columns: vec![
            Column { name: "k".into(), kind: ColumnType::Int, nullable: false },
            Column { name: "v".into(), kind: ColumnType::Text, nullable: false },
        ],
        primary_key: vec!["k".into()],
        indexes: vec![],
    }
}

impl Plugin for Hog {
    fn register(_config: Value) -> Result<Registration, String> {
        storage::ensure_table(&table("rows")).map_err(|e| format!("{e:?}"))?;
        Ok(Registration::new("storage_hog", "0.1.0"))
    }

    fn call(method: &str, args: Value) -> Result<Value, CallError> {
        let num = |k: &str| args.get(k).and_then(Value::as_i64).unwrap_or(0);
        let (mut done, mut error) = (0, None);
        match method {
            "tables" => {
                for i in 0..num("n") {
                    match storage::ensure_table(&table(&format!("t{i}"))) {
                        Ok(()) => done += 1,
                        Err(e) => {
                            error = Some(format!("{e:?}"));
                            break;
                        }
                    }
                }
            }
            "rows" => {
                let text = "v".repeat(num("kib") as usize * 1024);
                for k in num("from")..num("from") + num("n") {
                    match storage::upsert("rows", &["k".into(), "v".into()], &[vec![V::Int(k), V::Text(text.clone())]]) {
                        Ok(_) => done += 1,
                        Err(e) => {
                            error = Some(format!("{e:?}"));
                            break;
                        }
                    }
                }
            }
            "delete" => {
                done = storage::delete("rows", &[Filter { column: "k".into(), op: FilterOp::Lt(V::Int(num("below"))) }])
                    .map_err(|e| CallError::Failed(format!("{e:?}")))? as i64;
            }
            other => return Err(CallError::UnknownMethod(other.into())),
        }
        let count = storage::count("rows", &[]).map_err(|e| CallError::Failed(format!("{e:?}")))?;
        Ok(json!({ "done": done, "error": error, "rows": count }))
    }
}

fluid_guest::export_plugin!(Hog);
