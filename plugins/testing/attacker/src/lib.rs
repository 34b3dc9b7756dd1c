//! A configurable hostile plugin: one `.wasm` that tests copy under several file names to
//! attack the host through each of its imports and hooks, and check that every attack is
//! bounded (time, memory, storage, queue, log, result size) without hurting the host.
//!
//! Config (from `register`): `name` (default `"attacker"`; the host wants the file's
//! stem), `routes` (`[[method, path, handler], ...]`), `subscribe` (true: every state,
//! tag `"all"`), `register_spin_ms`, `events_spin_ms`, `fail_events`.
//!
//! Methods (JSON args -> JSON result): `echo`, `spin {ms}`, `spin_forever`, `call {plugin,
//! method, args}`, `call_loop {plugin, method, args, n}`, `queue {task, n, params, parent}`,
//! `fill {rows, bytes, chunk}`, `reindex {n}`, `read_all`, `query {order_cols, filters, after_len}`,
//! `big_result {bytes}`, `log_flood {n, bytes}`, `grow {mib}`, `handles {n}` (holds n
//! `get-plugin` handles at once), `random {bytes, insecure}` (one `wasi:random` call).
//! Errors from the host come back as `{"error": "<Debug>"}` values, so a test can tell
//! what was refused and why.

use fluid_guest::host::{self, QueueRequest, get_plugin};
use fluid_guest::storage::{self, Column, ColumnType, Filter, FilterOp, OrderBy, Query, TableDef, Value as V};
use fluid_guest::{ALL_EVENT_STATES, CallError, Event, Plugin, Registration};
use serde_json::{Value, json};
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

// `wasi:random` as a plugin may import it, asking for any length: std never asks for more
// than it needs.
wit_bindgen::generate!({
    inline: "package wasi:random@0.2.0;
        interface random { get-random-bytes: func(len: u64) -> list<u8>; get-random-u64: func() -> u64; }
        interface insecure { get-insecure-random-bytes: func(len: u64) -> list<u8>; get-insecure-random-u64: func() -> u64; }
        world random-import { import random; import insecure; }",
    world: "random-import",
});

/// The config `register` was given, for `on_events`.
static CONFIG: Mutex<Value> = Mutex::new(Value::Null);

fn config() -> Value {
    CONFIG.lock().map(|c| c.clone()).unwrap_or(Value::Null)
}

/// Busy-loops (no sleeping) for `ms` milliseconds of wall-clock time.
fn spin(ms: u64) {
    let (start, mut n) = (Instant::now(), 0u64);
    while start.elapsed() < Duration::from_millis(ms) {
        n = black_box(n.wrapping_add(1));
    }
}

fn dbg<E: std::fmt::Debug>(e: E) -> Value {
    json!({ "error": format!("{e:?}") })
}

#[link(wasm_import_module = "fluid:scheduler/storage@0.1.0")]
unsafe extern "C" {
    /// `storage.count` as the core import: table, filters, return area.
    #[link_name = "count"]
    fn raw_count(table: *const u8, table_len: usize, filters: *const u8, filters_len: usize, ret: *mut u8);
}

struct Attacker;

impl Plugin for Attacker {
    fn register(config: Value) -> Result<Registration, String> {
        if let Some(ms) = config["register_spin_ms"].as_u64() {
            spin(ms);
        }
        let mut reg = Registration::new(config["name"].as_str().unwrap_or("attacker"), "0.1.0");
        for r in config["routes"].as_array().into_iter().flatten() {
            match r.as_array().map(|t| t.iter().map(Value::as_str).collect::<Vec<_>>()).as_deref() {
                Some([Some(m), Some(p), Some(h)]) => reg = reg.route(m, p, h),
                _ => return Err(format!("a route must be [method, path, handler], not {r}")),
            }
        }
        if config["subscribe"] == json!(true) {
            reg = reg.subscribe(&ALL_EVENT_STATES, "all");
        }
        *CONFIG.lock().map_err(|e| e.to_string())? = config;
        Ok(reg)
    }

    fn on_events(_events: Vec<Event>) -> Result<(), String> {
        let config = config();
        if config["fail_events"] == json!(true) {
            return Err("refused on purpose".into());
        }
        if let Some(ms) = config["events_spin_ms"].as_u64() {
            spin(ms);
        }
        Ok(())
    }

    fn call(method: &str, args: Value) -> Result<Value, CallError> {
        let num = |k: &str| args[k].as_u64().unwrap_or(0);
        Ok(match method {
            "echo" => args,
            "spin" => {
                spin(num("ms"));
                json!({ "spun_ms": num("ms") })
            }
            "spin_forever" => {
                let mut n = 0u64;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            "call" => match get_plugin(args["plugin"].as_str().unwrap_or("")) {
                None => json!({ "error": "no such plugin" }),
                Some(p) => match p.call(args["method"].as_str().unwrap_or(""), &args["args"].to_string()) {
                    Ok(out) => json!({ "ok": serde_json::from_str::<Value>(&out).unwrap_or(Value::String(out)) }),
                    Err(e) => dbg(e),
                },
            },
            "call_loop" => {
                let Some(p) = get_plugin(args["plugin"].as_str().unwrap_or("")) else {
                    return Ok(json!({ "error": "no such plugin" }));
                };
                let (m, a) = (args["method"].as_str().unwrap_or(""), args["args"].to_string());
                let (mut ok, mut errors, mut first) = (0u64, 0u64, None);
                for _ in 0..num("n") {
                    match p.call(m, &a) {
                        Ok(_) => ok += 1,
                        Err(e) => {
                            errors += 1;
                            first.get_or_insert_with(|| format!("{e:?}"));
                        }
                    }
                }
                json!({ "ok": ok, "errors": errors, "first_error": first })
            }
            "queue" => {
                let params = if args["params"].is_null() { json!({}) } else { args["params"].clone() };
                let req = QueueRequest {
                    task: args["task"].as_str().unwrap_or("").into(),
                    params_json: params.to_string(),
                    priority: None,
                    // `parent`: another run's id, to graft these onto its lineage.
                    from_run_id: args["parent"].as_str().map(str::to_string),
                };
                let (mut queued, mut error) = (0u64, None);
                for _ in 0..num("n") {
                    match host::queue_run(&req) {
                        Ok(_) => queued += 1,
                        Err(e) => {
                            error = Some(format!("{e:?}"));
                            break;
                        }
                    }
                }
                json!({ "queued": queued, "error": error })
            }
            "fill" => {
                let def = TableDef {
                    name: "blob".into(),
                    columns: vec![
                        Column { name: "id".into(), kind: ColumnType::Int, nullable: false },
                        Column { name: "data".into(), kind: ColumnType::Text, nullable: false },
                    ],
                    primary_key: vec!["id".into()],
                    indexes: vec![],
                };
                if let Err(e) = storage::ensure_table(&def) {
                    return Ok(dbg(e));
                }
                let (data, cols) = ("x".repeat(num("bytes") as usize), ["id".to_string(), "data".to_string()]);
                let ids: Vec<i64> = (0..num("rows") as i64).collect();
                let mut written = 0u64;
                // `chunk` rows per upsert (one transaction each): a large one holds the writer.
                let chunk = if num("chunk") == 0 { 8 } else { num("chunk") as usize };
                for batch in ids.chunks(chunk) {
                    let rows: Vec<_> = batch.iter().map(|&id| vec![V::Int(id), V::Text(data.clone())]).collect();
                    match storage::upsert("blob", &cols, &rows) {
                        Ok(n) => written += n,
                        Err(e) => return Ok(dbg(e)),
                    }
                }
                json!({ "written": written })
            }
            // `ensure-table` of one wide table `n` times, each time with one more index
            // (an index of an earlier definition stays): how many a table may gather.
            "reindex" => {
                let columns: Vec<Column> = (0..24).map(|i| Column { name: format!("c{i}"), kind: ColumnType::Int, nullable: true }).collect();
                let mut made = 0;
                for i in 0..num("n") as usize {
                    let def = TableDef {
                        name: "wide".into(),
                        columns: columns.clone(),
                        primary_key: vec!["c0".into()],
                        indexes: vec![vec![format!("c{}", 1 + i % 23)]],
                    };
                    if let Err(e) = storage::ensure_table(&def) {
                        return Ok(json!({ "made": made, "error": format!("{e:?}") }));
                    }
                    made += 1;
                }
                json!({ "made": made })
            }
            "read_all" => {
                let q = Query { columns: vec![], filters: vec![], order: vec![], after: None, limit: None };
                match storage::select("blob", &q) {
                    Ok(rows) => {
                        let bytes: usize = rows.iter().flatten().map(|v| if let V::Text(t) = v { t.len() } else { 0 }).sum();
                        json!({ "rows": rows.len(), "bytes": bytes })
                    }
                    Err(e) => dbg(e),
                }
            }
            "query" => {
                let q = Query {
                    columns: vec![],
                    filters: (0..num("filters")).map(|_| Filter { column: "id".into(), op: FilterOp::Eq(V::Int(0)) }).collect(),
                    order: (0..num("order_cols")).map(|_| OrderBy { column: "id".into(), descending: false }).collect(),
                    after: (num("after_len") > 0).then(|| (0..num("after_len")).map(|_| V::Int(0)).collect()),
                    limit: None,
                };
                match storage::select("blob", &q) {
                    Ok(rows) => json!({ "rows": rows.len() }),
                    Err(e) => dbg(e),
                }
            }
            "big_result" => Value::String("x".repeat(num("bytes") as usize)),
            "log_flood" => {
                let msg = "x".repeat(num("bytes") as usize);
                for _ in 0..num("n") {
                    fluid_guest::log::info(&msg);
                }
                json!({ "logged": num("n") })
            }
            "grow" => {
                let len = num("mib") as usize * 1024 * 1024;
                let mut v = vec![0u8; len];
                for i in (0..len).step_by(4096) {
                    v[i] = 1; // touch every page
                }
                black_box(&v);
                json!({ "grew": num("mib") })
            }
            // `count` called by hand with `n` filters whose column names all point at one
            // string of `bytes`: a plain lift would copy it `n` times into the host.
            "alias" => {
                let column = vec![b'c'; num("bytes") as usize];
                let n = num("n") as usize;
                // filter = { column: string @0, op: filter-op @8 (eq = 0, value null = 0) }: 32 bytes.
                let mut filters = vec![0u8; n * 32];
                for f in filters.chunks_mut(32) {
                    f[0..4].copy_from_slice(&(column.as_ptr() as u32).to_le_bytes());
                    f[4..8].copy_from_slice(&(column.len() as u32).to_le_bytes());
                }
                let table = b"blob";
                let mut ret = [0u64; 4];
                // SAFETY: the pointers and lengths describe live buffers laid out as the
                // canonical ABI lays out `list<filter>`; `ret` has room for the result.
                unsafe { raw_count(table.as_ptr(), table.len(), filters.as_ptr(), n, ret.as_mut_ptr().cast()) };
                json!({ "returned": true })
            }
            // Host resources held at once: each handle is host memory outside the instance.
            "handles" => {
                let me = config()["name"].as_str().unwrap_or("attacker").to_string();
                let handles: Vec<_> = (0..num("n")).filter_map(|_| get_plugin(&me)).collect();
                json!({ "held": handles.len() })
            }
            // One call asking the host for `bytes` random bytes at once.
            "random" => {
                let bytes = if args["insecure"] == true {
                    wasi::random::insecure::get_insecure_random_bytes(num("bytes"))
                } else {
                    wasi::random::random::get_random_bytes(num("bytes"))
                };
                json!({ "got": bytes.len() })
            }
            other => return Err(CallError::UnknownMethod(other.into())),
        })
    }
}

fluid_guest::export_plugin!(Attacker);
