//! The db plugin: aio-fluid's `TaskDbPlugin` as a WebAssembly component.
//!
//! It stores every state change of every run (but `init`, which is never an event, and
//! runs of tasks tagged `skip_db_tag`) in one table of its own through the host's
//! `storage` import, and serves the history: `get_history` / `get_run` for tasks and
//! plugins, `GET /task-history` and `GET /task-history/{id}` over HTTP.
//!
//! Config (all optional): `table_name` (default `fluid_tasks`), `tag` (`db`, the handler
//! tag of its subscriptions), `skip_db_tag` (`skip_db`).
//!
//! When its tables reach their quota, it drops the oldest runs (by queued time) to make
//! room, so history keeps the newest runs and the plugin keeps working.
//!
//! Idempotent: each row remembers the feed `seq` of the change it holds, and a change
//! with a smaller or equal `seq` is ignored (`storage::upsert_newer` with `seq` as the
//! version, one statement, no read first), so replayed or late events never overwrite a
//! newer state. Pages are ordered by `queued` descending, then `id` descending, and the
//! cursor is a keyset position in that order, so no page repeats or skips a row even when
//! many runs share one queued time.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fluid_guest::storage::{self, Column, ColumnType, Filter, FilterOp, OrderBy, Query, TableDef, Value as V};
use fluid_guest::{CallError, Event, HistoryQuery, HttpArgs, Plugin, Registration, TaskRunHistory, TaskRunHistoryPage};
use serde_json::{Value, json};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

const DEFAULT_LIMIT: u32 = 250;
const MAX_LIMIT: u32 = 500;

struct Config {
    table: String,
    skip_db_tag: String,
}

thread_local! {
    static CONFIG: RefCell<Option<Config>> = const { RefCell::new(None) };
}

fn table() -> String {
    CONFIG.with(|c| c.borrow().as_ref().map(|c| c.table.clone()).unwrap_or_else(|| "fluid_tasks".into()))
}

/// Columns, in table order (rows read with `columns: []` come back in this order).
const COLUMNS: [(&str, ColumnType, bool); 15] = [
    ("id", ColumnType::Text, false),
    ("name", ColumnType::Text, false),
    ("priority", ColumnType::Text, false),
    ("state", ColumnType::Text, false),
    ("queued", ColumnType::Int, false),
    ("start", ColumnType::Int, true),
    ("end", ColumnType::Int, true),
    ("params", ColumnType::Json, false),
    ("tags", ColumnType::Json, false),
    ("error", ColumnType::Text, true),
    ("retry_attempt", ColumnType::Int, false),
    ("rate_limit_attempt", ColumnType::Int, false),
    ("from_run_id", ColumnType::Text, false),
    ("root_run_id", ColumnType::Text, false),
    ("seq", ColumnType::Int, false),
];

struct Db;

impl Plugin for Db {
    fn register(config: Value) -> Result<Registration, String> {
        let get = |k: &str, d: &str| config.get(k).and_then(Value::as_str).unwrap_or(d).to_string();
        let table = get("table_name", "fluid_tasks");
        let tag = get("tag", "db");
        let skip_db_tag = get("skip_db_tag", "skip_db");
        let def = TableDef {
            name: table.clone(),
            columns: COLUMNS.iter().map(|(n, k, null)| Column { name: n.to_string(), kind: *k, nullable: *null }).collect(),
            primary_key: vec!["id".into()],
            // Each filter column leads an index that then follows the page order, so a
            // filtered page is an index range scan, not a sort of every matching row.
            indexes: vec![
                vec!["queued".into(), "id".into()],
                vec!["name".into(), "queued".into(), "id".into()],
                vec!["state".into(), "queued".into(), "id".into()],
                vec!["priority".into(), "queued".into(), "id".into()],
            ],
        };
        storage::ensure_table(&def).map_err(|e| format!("cannot create table {table}: {e:?}"))?;
        CONFIG.with(|c| *c.borrow_mut() = Some(Config { table, skip_db_tag }));
        Ok(Registration::new("db", env!("CARGO_PKG_VERSION"))
            .subscribe(&fluid_guest::ALL_EVENT_STATES, &tag)
            .route("GET", "/task-history", "http_history")
            .route("GET", "/task-history/{id}", "http_run"))
    }

    fn on_events(events: Vec<Event>) -> Result<(), String> {
        let skip = CONFIG.with(|c| c.borrow().as_ref().map(|c| c.skip_db_tag.clone())).unwrap_or_default();
        // Last change per run within the batch (events come in commit order), by id: rows
        // are written in key order, so concurrent writers cannot deadlock on them.
        let mut latest: BTreeMap<String, Event> = BTreeMap::new();
        for e in events {
            if e.run.tags.contains(&skip) {
                continue;
            }
            latest.insert(e.run.id.clone(), e);
        }
        if latest.is_empty() {
            return Ok(());
        }
        let table = table();
        // Changes older than what is stored (replays, late deliveries) are skipped by the
        // host in the same statement: `seq` is the version, no read first.
        let rows: Vec<Vec<V>> = latest.values().map(to_row).collect();
        let columns: Vec<String> = COLUMNS.iter().map(|c| c.0.to_string()).collect();
        let write = || storage::upsert_newer(&table, &columns, &rows, "seq");
        let (mut trimmed, mut emptied) = (0, false);
        loop {
            match write() {
                Ok(_) => return Ok(()),
                // Its tables reached their quota (`max_rows`, `max_storage_mib`): the oldest
                // runs make room, as a log rotates, so history goes on with the newest runs
                // rather than stop (and the plugin with it) however many runs others queue.
                // Each trim drops twice the runs of the one before: a few runs with large
                // params may take the room of thousands of small ones.
                Err(storage::StorageError::QuotaExceeded(why)) if trimmed < MAX_TRIMS => {
                    let dropped = trim_oldest(&table, (TRIM_ROWS << trimmed).min(MAX_TRIM_ROWS)).map_err(|e| format!("{e:?}"))?;
                    emptied = dropped == 0;
                    trimmed = if emptied { MAX_TRIMS } else { trimmed + 1 };
                }
                // Still over with nothing left to drop, or after every trim: these changes
                // are left out of history, with a warning, rather than held back for ever
                // (the quota is the operator's bound, and a plugin failing every delivery
                // would be quarantined).
                Err(storage::StorageError::QuotaExceeded(why)) => {
                    // With nothing else stored, one by one (each write is measured then, and
                    // cheaply): only the changes that do not fit are left out. Otherwise the
                    // whole batch, rather than a measure of full tables for each change.
                    let mut left_out = if emptied { 0 } else { rows.len() };
                    for row in rows.iter().filter(|_| emptied) {
                        match storage::upsert_newer(&table, &columns, std::slice::from_ref(row), "seq") {
                            Ok(_) => {}
                            Err(storage::StorageError::QuotaExceeded(_)) => left_out += 1,
                            Err(e) => return Err(format!("{e:?}")),
                        }
                    }
                    fluid_guest::log::warn(&format!("{left_out} changes left out of history, still over its quota after trimming: {why}"));
                    return Ok(());
                }
                Err(e) => return Err(format!("{e:?}")),
            }
        }
    }

    fn call(method: &str, args: Value) -> Result<Value, CallError> {
        match method {
            "get_history" => {
                let q: HistoryQuery =
                    serde_json::from_value(args).map_err(|e| CallError::InvalidInput(format!("bad HistoryQuery: {e}")))?;
                Ok(json!(get_history(q)?))
            }
            "get_run" => {
                let id =
                    args.get("id").and_then(Value::as_str).ok_or_else(|| CallError::InvalidInput("expected {\"id\": \"...\"}".into()))?;
                Ok(json!(get_run(id)?))
            }
            "http_history" => {
                let http: HttpArgs = serde_json::from_value(args).map_err(|e| CallError::InvalidInput(e.to_string()))?;
                Ok(json!(get_history(query_from_http(&http)?)?))
            }
            "http_run" => {
                let http: HttpArgs = serde_json::from_value(args).map_err(|e| CallError::InvalidInput(e.to_string()))?;
                let id = http.path.get("id").cloned().unwrap_or_default();
                Ok(json!(get_run(&id)?))
            }
            other => Err(CallError::UnknownMethod(other.to_string())),
        }
    }
}

fn opt_int(v: Option<i64>) -> V {
    v.map_or(V::Null, V::Int)
}

fn to_row(e: &Event) -> Vec<V> {
    let r = &e.run;
    vec![
        V::Text(r.id.clone()),
        V::Text(r.task.clone()),
        V::Text(r.priority.as_str().into()),
        V::Text(r.state.as_str().into()),
        V::Int(r.queued.unwrap_or(0)),
        opt_int(r.start),
        opt_int(r.end),
        V::Json(r.params_json.clone()),
        V::Json(serde_json::to_string(&r.tags).unwrap_or_else(|_| "[]".into())),
        r.error.clone().map_or(V::Null, V::Text),
        V::Int(r.retry_attempt as i64),
        V::Int(r.rate_limit_attempt as i64),
        V::Text(r.from_run_id.clone()),
        V::Text(r.root_run_id.clone()),
        V::Int(e.seq as i64),
    ]
}

fn iso(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)).unwrap_or_default()
}

fn from_row(row: &[V]) -> Result<TaskRunHistory, CallError> {
    let text = |i: usize| match row.get(i) {
        Some(V::Text(s)) | Some(V::Json(s)) => s.clone(),
        _ => String::new(),
    };
    let int = |i: usize| match row.get(i) {
        Some(V::Int(n)) => Some(*n),
        _ => None,
    };
    if row.len() != COLUMNS.len() {
        return Err(CallError::Failed(format!("row has {} columns, expected {}", row.len(), COLUMNS.len())));
    }
    Ok(TaskRunHistory {
        id: text(0),
        task: text(1),
        priority: text(2),
        state: text(3),
        queued: iso(int(4).unwrap_or(0)),
        start: int(5).map(iso),
        end: int(6).map(iso),
        params: serde_json::from_str(&text(7)).unwrap_or(Value::Null),
        tags: serde_json::from_str(&text(8)).unwrap_or_default(),
        error: match row.get(9) {
            Some(V::Text(s)) => Some(s.clone()),
            _ => None,
        },
        retry_attempt: int(10).unwrap_or(0) as u32,
        rate_limit_attempt: int(11).unwrap_or(0) as u32,
        from_run_id: text(12),
        root_run_id: text(13),
    })
}

/// Runs dropped by the first trim, oldest first, when history reaches its quota (each
/// next trim of one delivery drops twice as many, up to [`MAX_TRIM_ROWS`], a select's
/// limit); and how many times one delivery may trim.
const TRIM_ROWS: u32 = 1_000;
const MAX_TRIM_ROWS: u32 = 10_000;
const MAX_TRIMS: usize = 8;

/// Drops the `n` oldest runs of history (by queued time); how many it dropped.
fn trim_oldest(table: &str, n: u32) -> Result<u64, storage::StorageError> {
    let oldest = storage::select(
        table,
        &Query {
            columns: vec!["queued".into()],
            filters: vec![],
            order: vec![OrderBy { column: "queued".into(), descending: false }],
            after: None,
            limit: Some(n),
        },
    )?;
    let Some(V::Int(upto)) = oldest.last().and_then(|r| r.first()).cloned() else {
        return Ok(0);
    };
    storage::delete(table, &[Filter { column: "queued".into(), op: FilterOp::Le(V::Int(upto)) }])
}

/// Most bytes of runs one history page holds (the host's default `max_result_kib` is
/// twice as much).
const PAGE_BYTES: usize = 4 << 20;

/// Most JSON values of params one page parses: parsed, a value takes many times its text
/// (`[0,0,…]`: two bytes of text, tens parsed), and a page of such runs within
/// [`PAGE_BYTES`] would not fit in the plugin's memory.
const PAGE_VALUES: usize = 250_000;

/// An upper bound on the JSON values in `text`, without parsing it.
fn values_at_most(text: &str) -> usize {
    1 + text.bytes().filter(|b| matches!(b, b',' | b'[' | b'{' | b':')).count()
}

fn storage_err(e: storage::StorageError) -> CallError {
    CallError::Failed(format!("storage: {e:?}"))
}

fn get_run(id: &str) -> Result<TaskRunHistory, CallError> {
    let rows = storage::select(
        &table(),
        &Query {
            columns: vec![],
            filters: vec![Filter { column: "id".into(), op: FilterOp::Eq(V::Text(id.into())) }],
            order: vec![],
            after: None,
            limit: Some(1),
        },
    )
    .map_err(storage_err)?;
    match rows.first() {
        Some(row) => from_row(row),
        None => Err(CallError::NotFound(format!("task run {id} not found"))),
    }
}

/// Parses an RFC 3339 time (or integer microseconds) into microseconds.
fn parse_time(field: &str, s: &str) -> Result<i64, CallError> {
    if let Ok(us) = s.parse::<i64>() {
        return Ok(us);
    }
    // A time without an offset is UTC, as aio-fluid (pydantic) takes it.
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_micros())
        .or_else(|e| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").map(|t| t.and_utc().timestamp_micros()).map_err(|_| e))
        .map_err(|e| CallError::InvalidInput(format!("{field}: {s:?} is not an RFC 3339 time ({e})")))
}

/// The query parameters of `GET /task-history` as a `HistoryQuery`.
fn query_from_http(h: &HttpArgs) -> Result<HistoryQuery, CallError> {
    let limit = match h.one("limit") {
        Some(l) => Some(l.parse::<u32>().map_err(|_| CallError::InvalidInput(format!("limit: {l:?} is not a positive integer")))?),
        None => None,
    };
    let params = match h.one("params") {
        Some(p) => Some(serde_json::from_str::<Value>(&p).map_err(|e| CallError::InvalidInput(format!("params: not JSON ({e})")))?),
        None => None,
    };
    Ok(HistoryQuery {
        task: h.all("task"),
        state: h.all("state"),
        priority: h.all("priority"),
        start: h.one("start"),
        end: h.one("end"),
        params,
        tags: h.all("tags"),
        limit,
        cursor: h.one("cursor").filter(|c| !c.is_empty()),
    })
}

/// What a cursor carries: the query it continues and the position after the last row.
#[derive(serde::Serialize, serde::Deserialize)]
struct Cursor {
    q: HistoryQuery,
    queued: i64,
    id: String,
}

fn decode_cursor(s: &str) -> Result<Cursor, CallError> {
    let bad = |why: String| CallError::InvalidInput(format!("invalid cursor: {why}"));
    let bytes = URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).map_err(|e| bad(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))
}

fn encode_cursor(c: &Cursor) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(c).unwrap_or_default())
}

/// A query given with a cursor continues the cursor's query; fields given again win.
fn merge(base: HistoryQuery, over: HistoryQuery) -> HistoryQuery {
    HistoryQuery {
        task: if over.task.is_empty() { base.task } else { over.task },
        state: if over.state.is_empty() { base.state } else { over.state },
        priority: if over.priority.is_empty() { base.priority } else { over.priority },
        start: over.start.or(base.start),
        end: over.end.or(base.end),
        params: over.params.or(base.params),
        tags: if over.tags.is_empty() { base.tags } else { over.tags },
        limit: over.limit.or(base.limit),
        cursor: None,
    }
}

const STATES: [&str; 8] = ["init", "queued", "running", "success", "failure", "aborted", "rate_limited", "interrupted"];
const PRIORITIES: [&str; 3] = ["high", "medium", "low"];

fn text_list(field: &str, values: &[String], allowed: Option<&[&str]>) -> Result<Vec<V>, CallError> {
    values
        .iter()
        .map(|v| match allowed {
            Some(ok) if !ok.contains(&v.as_str()) => {
                Err(CallError::InvalidInput(format!("{field}: {v:?} is not one of {}", ok.join(", "))))
            }
            _ => Ok(V::Text(v.clone())),
        })
        .collect()
}

fn get_history(q: HistoryQuery) -> Result<TaskRunHistoryPage, CallError> {
    let (q, position) = match q.cursor.clone() {
        Some(c) => {
            let cur = decode_cursor(&c)?;
            (merge(cur.q, q), Some((cur.queued, cur.id)))
        }
        None => (q, None),
    };
    let limit = match q.limit {
        Some(0) => return Err(CallError::InvalidInput("limit must be at least 1".into())),
        Some(n) => n.min(MAX_LIMIT),
        None => DEFAULT_LIMIT,
    };
    let mut filters = Vec::new();
    let mut names: Option<BTreeSet<String>> = (!q.task.is_empty()).then(|| q.task.iter().cloned().collect());
    if !q.tags.is_empty() {
        // As aio-fluid: tags select the registered tasks having any of them.
        let tagged: BTreeSet<String> =
            fluid_guest::host::list_tasks().into_iter().filter(|t| t.tags.iter().any(|tag| q.tags.contains(tag))).map(|t| t.name).collect();
        names = Some(match names {
            Some(n) => n.intersection(&tagged).cloned().collect(),
            None => tagged,
        });
    }
    if let Some(names) = names {
        let list: Vec<String> = names.into_iter().collect();
        filters.push(Filter { column: "name".into(), op: FilterOp::OneOf(text_list("task", &list, None)?) });
    }
    if !q.state.is_empty() {
        filters.push(Filter { column: "state".into(), op: FilterOp::OneOf(text_list("state", &q.state, Some(&STATES))?) });
    }
    if !q.priority.is_empty() {
        filters.push(Filter { column: "priority".into(), op: FilterOp::OneOf(text_list("priority", &q.priority, Some(&PRIORITIES))?) });
    }
    if let Some(s) = &q.start {
        filters.push(Filter { column: "queued".into(), op: FilterOp::Ge(V::Int(parse_time("start", s)?)) });
    }
    if let Some(e) = &q.end {
        filters.push(Filter { column: "queued".into(), op: FilterOp::Le(V::Int(parse_time("end", e)?)) });
    }
    if let Some(p) = &q.params {
        let obj = match p {
            Value::Object(_) => p.clone(),
            Value::String(s) => serde_json::from_str::<Value>(s)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| CallError::InvalidInput("params must be a JSON object".into()))?,
            _ => return Err(CallError::InvalidInput("params must be a JSON object".into())),
        };
        if !obj.is_object() {
            return Err(CallError::InvalidInput("params must be a JSON object".into()));
        }
        filters.push(Filter { column: "params".into(), op: FilterOp::JsonContains(obj.to_string()) });
    }
    let mut page = limit;
    let rows = loop {
        let query = Query {
            columns: vec![],
            filters: filters.clone(),
            order: vec![OrderBy { column: "queued".into(), descending: true }, OrderBy { column: "id".into(), descending: true }],
            after: position.clone().map(|(queued, id)| vec![V::Int(queued), V::Text(id)]),
            limit: Some(page + 1),
        };
        match storage::select(&table(), &query) {
            Ok(rows) => break rows,
            // Runs with large params: a page of that many would be more than the host lets
            // one read hold. A shorter page (its cursor goes on from where it ends) rather
            // than no answer.
            Err(storage::StorageError::InvalidValue(m)) if m.contains("max_read_mib") && page > 1 => page /= 2,
            // A params filter the storage cannot take (a key with quotes, too many keys).
            Err(storage::StorageError::InvalidValue(m)) if m.starts_with("json-contains") => {
                return Err(CallError::InvalidInput(format!("params: {m}")));
            }
            Err(e) => return Err(storage_err(e)),
        }
    };
    let mut data = Vec::with_capacity(rows.len().min(page as usize));
    let mut last = None;
    let (mut bytes, mut values, mut cut) = (0, 0, false);
    for row in rows.iter().take(page as usize) {
        // Counted before the params are parsed: the first run of a page always goes in.
        let more_values = match row.get(7) {
            Some(V::Text(p)) | Some(V::Json(p)) => values_at_most(p),
            _ => 1,
        };
        if !data.is_empty() && values + more_values > PAGE_VALUES {
            cut = true;
            break;
        }
        values += more_values;
        let run = from_row(row)?;
        // A page stays well within what the host lets one answer be (`max_result_kib`):
        // runs with large params end it early, and its cursor goes on from there.
        let size = serde_json::to_vec(&run).map_or(0, |v| v.len());
        if !data.is_empty() && bytes + size > PAGE_BYTES {
            cut = true;
            break;
        }
        bytes += size;
        if let (Some(V::Int(queued)), Some(V::Text(id))) = (row.get(4), row.first()) {
            last = Some((*queued, id.clone()));
        }
        data.push(run);
    }
    let more = cut || rows.len() > page as usize;
    let cursor = match (more, last) {
        (true, Some((queued, id))) => encode_cursor(&Cursor { q: HistoryQuery { limit: Some(limit), cursor: None, ..q }, queued, id }),
        _ => String::new(),
    };
    Ok(TaskRunHistoryPage { data, cursor })
}

fluid_guest::export_plugin!(Db);
