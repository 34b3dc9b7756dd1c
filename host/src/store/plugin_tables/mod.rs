//! Plugin tables: what the plugins' `storage` import does, in SQL. Structured CRUD on the
//! host's database, each plugin in its own namespace (on SQLite, in a file of their own:
//! see `crate::store::plugin_file`). The plugins reach it through `plugins::storage`,
//! which converts the interface's types to this module's (`types`).
//!
//! A plugin's table `t` is the physical table `p_{len}_{plugin}_{t}`: the length prefix
//! makes the mapping one-to-one, so no pair of plugin and table names can reach another
//! plugin's table, and no name can reach the host's `fluid_*` tables. Names are checked
//! against `[a-z][a-z0-9_]*` (24 characters for tables, 48 for columns) and always quoted;
//! values are bound parameters, converted to the column's declared type. Table schemas are
//! kept in `fluid_plugin_tables`, so a plugin reloaded later finds its tables again.
//! Quotas (tables, rows, bytes) are enforced as `quota` describes.

mod quota;
mod types;

use crate::store::db::Arg as Bound;
use crate::store::{Backend, Db, Store};
use crate::store::{Row, query, query_built};
use quota::Bounds;
pub use quota::Usage;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
pub use types::{Column, ColumnType, Filter, FilterOp, OrderBy, Query, StorageError, TableDef, TableLimits, Value};

/// Rows a single `select` may return.
pub const MAX_SELECT_ROWS: u32 = 10_000;
/// Filters of one query (each is a condition and its values in the statement).
pub const MAX_FILTERS: usize = 64;
/// Order-by columns of one query (a keyset cursor's condition grows with their square).
pub const MAX_ORDER: usize = 8;
/// Rows of one upsert (one transaction, which holds the plugins' writer on SQLite).
pub const MAX_UPSERT_ROWS: usize = 10_000;
/// Bytes of one `json-contains` object.
pub const MAX_JSON_CONTAINS: usize = 64 * 1024;
/// Columns asked for in one query (a table has at most as many; more are repeats).
pub const MAX_COLUMNS: usize = 64;
/// Rows per INSERT statement inside one upsert.
const UPSERT_CHUNK: usize = 200;
/// Most indexes one table may have, from all its definitions together (each one slows
/// every write to the table and takes space the quota does not see).
pub const MAX_INDEXES: usize = 16;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
struct Col {
    name: String,
    kind: String,
    nullable: bool,
}

#[derive(Debug, Clone)]
struct Meta {
    physical: String,
    columns: Vec<Col>,
    primary_key: Vec<String>,
}

impl Meta {
    fn col(&self, name: &str) -> Result<&Col, StorageError> {
        self.columns
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| StorageError::InvalidName(format!("table has no column {}", quoted(name))))
    }
}

/// Shared by all plugins; caches table schemas.
#[derive(Clone)]
pub struct PluginStorage {
    store: Store,
    meta: Arc<Mutex<HashMap<(String, String), Meta>>>,
    bounds: Bounds,
}

tokio::task_local! {
    /// Nanoseconds the storage call running in this task (see [`with_waits`]) waited for
    /// connections other plugins' statements held.
    static WAITED: Arc<AtomicU64>;
}

/// Runs one storage call and returns with its result how long it waited for connections
/// held by other plugins' statements: time others cost it, which the caller must not put
/// down to the plugin (its own statements are not counted).
pub async fn with_waits<T>(call: impl Future<Output = T>) -> (T, Duration) {
    let waited = Arc::new(AtomicU64::new(0));
    let out = WAITED.scope(waited.clone(), call).await;
    (out, Duration::from_nanos(waited.load(Ordering::Relaxed)))
}

/// A wait for a connection shorter than this is the checkout's own work (a check, the
/// `BEGIN`), which a plugin could repeat at will: not counted as others' cost.
const CONTENDED: Duration = Duration::from_millis(10);

/// A connection from `acquire`, waited for at most `statement_timeout_ms` (then `backend`,
/// busy: not the plugin's fault), a wait of [`CONTENDED`] or more counted for
/// [`with_waits`].
async fn connection(limits: &TableLimits, acquire: impl Future<Output = Result<Db, sqlx::Error>>) -> Result<Db, StorageError> {
    let started = Instant::now();
    let out = tokio::time::timeout(limits.statement_timeout(), acquire).await;
    let waited = started.elapsed();
    if waited >= CONTENDED {
        let _ = WAITED.try_with(|w| w.fetch_add(waited.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed));
    }
    match out {
        Ok(conn) => conn.map_err(backend_err),
        Err(_) => Err(StorageError::Backend(
            "the database is busy with other plugins' statements (statement_timeout_ms passed waiting); the call may be retried".into(),
        )),
    }
}

fn kind_name(k: ColumnType) -> &'static str {
    match k {
        ColumnType::Int => "int",
        ColumnType::Float => "float",
        ColumnType::Text => "text",
        ColumnType::Boolean => "boolean",
        ColumnType::Json => "json",
    }
}

/// Checks an identifier: `[a-z][a-z0-9_]*`, at most `max` characters.
pub fn check_ident(what: &str, s: &str, max: usize) -> Result<(), StorageError> {
    let ok = !s.is_empty()
        && s.len() <= max
        && s.as_bytes()[0].is_ascii_lowercase()
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidName(format!("{what} {} must match [a-z][a-z0-9_]* and have at most {max} characters", quoted(s))))
    }
}

/// A name a plugin gave, quoted for an error: its first 64 characters, escaped. The error
/// goes back to the plugin and may reach the log, so its size is not the plugin's choice.
fn quoted(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((end, _)) => format!("{:?}…", &s[..end]),
        None => format!("{s:?}"),
    }
}

/// The type of a value a plugin gave, named in an error instead of the value itself.
fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Int(_) => "int",
        Value::Float(_) => "float",
        Value::Text(_) => "text",
        Value::Boolean(_) => "boolean",
        Value::Json(_) => "json",
    }
}

fn physical(plugin: &str, table: &str) -> String {
    format!("p_{}_{}_{}", plugin.len(), plugin, table)
}

/// How a `backend` error starts when the database, not the plugin, is the cause (busy
/// with another plugin's statement, or unreachable): a delivery failing for it is retried
/// without counting against the plugin.
pub(crate) const NOT_ITS_FAULT: [&str; 2] = ["the database is busy", "the database is unreachable"];

/// Whether `e` is a `backend` error the plugin did not cause (see [`NOT_ITS_FAULT`]).
pub(crate) fn not_its_fault(e: &StorageError) -> bool {
    matches!(e, StorageError::Backend(m) if NOT_ITS_FAULT.iter().any(|p| m.starts_with(p)))
}

/// How a `backend` error starts when a statement ran out of its time.
const STATEMENT_TIMED_OUT: &str = "the statement took longer than its limit (statement_timeout_ms)";

/// The database's error, logged in full on the host; the plugin gets a kind, never the
/// text (it would echo SQL, physical table names, other plugins' names).
pub(crate) fn backend_err(e: sqlx::Error) -> StorageError {
    tracing::warn!(error = %e, "plugin storage query failed");
    let kind = match &e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => "the database is unreachable or busy",
        // By PostgreSQL's SQLSTATE, or SQLite's fixed message for the code, never by words
        // anywhere in a message: those quote names a plugin chose (a table `busy`), and a
        // failure of the plugin's own would pass for the database's.
        sqlx::Error::Database(d) => {
            let (code, message) = (d.code(), d.message());
            match (code.as_deref(), message) {
                // lock_not_available, deadlock_detected, serialization_failure; SQLITE_BUSY, SQLITE_LOCKED.
                (Some("55P03" | "40P01" | "40001"), _) | (_, "database is locked") => "the database is busy",
                (_, m) if m.starts_with("database table is locked") => "the database is busy",
                // disk_full; SQLITE_FULL.
                (Some("53100"), _) | (_, "database or disk is full") => "the database is full",
                // query_canceled (statement_timeout); SQLite interrupted by the progress handler.
                (Some("57014"), _) | (_, "interrupted") => STATEMENT_TIMED_OUT,
                _ => "the database failed",
            }
        }
        _ => "the database failed",
    };
    StorageError::Backend(format!("{kind}; the call may be retried (the host's log has the details)"))
}

/// FNV-1a: a short, stable name for an index's column list.
fn fnv32(s: &str) -> u32 {
    s.bytes().fold(0x811c9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x01000193))
}

fn quote(c: &str) -> String {
    format!("\"{c}\"")
}

impl PluginStorage {
    /// `store` holds the plugins' tables and their schemas (`fluid_plugin_tables`): the
    /// queue's [`Store::plugin_store`].
    pub async fn new(store: Store) -> anyhow::Result<PluginStorage> {
        Ok(PluginStorage { store, meta: Arc::default(), bounds: Bounds::default() })
    }

    /// Closes the plugins' SQLite file (on PostgreSQL it is the queue's, closed by the host).
    pub async fn close(&self) {
        if self.backend().plugin_tables_apart() {
            self.store.close().await;
        }
    }

    /// The plugins' writer, waited for at most `statement_timeout_ms`: one plugin holding
    /// it (within its own limit) must not make another's call run out of time waiting.
    async fn writer(&self, limits: &TableLimits) -> Result<Db, StorageError> {
        connection(limits, self.store.write_tx()).await
    }

    /// A reader, waited for as the writer is: plugins holding every reader with long
    /// selects must not make another's call wait without end.
    async fn reader(&self, limits: &TableLimits) -> Result<Db, StorageError> {
        connection(limits, self.store.read()).await
    }

    fn backend(&self) -> Backend {
        self.store.backend
    }

    async fn meta(&self, plugin: &str, table: &str, limits: &TableLimits) -> Result<Meta, StorageError> {
        check_ident("table", table, 24)?;
        if let Some(m) = self.meta.lock().unwrap().get(&(plugin.to_string(), table.to_string())) {
            return Ok(m.clone());
        }
        let row = query("SELECT physical, columns, primary_key FROM fluid_plugin_tables WHERE plugin = $1 AND name = $2")
            .bind(plugin)
            .bind(table)
            .fetch_optional(&mut self.reader(limits).await?)
            .await
            .map_err(backend_err)?
            .ok_or_else(|| StorageError::NoSuchTable(format!("table {table:?} does not exist: create it with ensure-table")))?;
        let columns: String = row.try_get("columns").map_err(backend_err)?;
        let pk: String = row.try_get("primary_key").map_err(backend_err)?;
        let meta = Meta {
            physical: row.try_get("physical").map_err(backend_err)?,
            columns: serde_json::from_str(&columns).map_err(|e| StorageError::Backend(e.to_string()))?,
            primary_key: serde_json::from_str(&pk).map_err(|e| StorageError::Backend(e.to_string()))?,
        };
        self.meta.lock().unwrap().insert((plugin.to_string(), table.to_string()), meta.clone());
        Ok(meta)
    }

    /// Creates `plugin`'s table `def.name` with its indexes, or checks that the one there
    /// has the same columns and key (indexes new to `def` are added); within the plugin's
    /// table quota.
    pub async fn ensure_table(&self, plugin: &str, def: TableDef, limits: &TableLimits) -> Result<(), StorageError> {
        check_ident("table", &def.name, 24)?;
        if def.columns.is_empty() || def.columns.len() > 64 {
            return Err(StorageError::InvalidValue("a table needs 1 to 64 columns".into()));
        }
        let mut columns = Vec::new();
        for c in &def.columns {
            check_ident("column", &c.name, 48)?;
            if columns.iter().any(|x: &Col| x.name == c.name) {
                return Err(StorageError::InvalidName(format!("column {:?} appears twice", c.name)));
            }
            columns.push(Col { name: c.name.clone(), kind: kind_name(c.kind).into(), nullable: c.nullable });
        }
        if def.primary_key.is_empty() {
            return Err(StorageError::InvalidValue("a table needs a primary key".into()));
        }
        if def.indexes.len() > MAX_INDEXES {
            return Err(StorageError::InvalidValue(format!("at most {MAX_INDEXES} indexes")));
        }
        if def.primary_key.len() > 8 || def.indexes.iter().any(|i| i.is_empty() || i.len() > 8) {
            return Err(StorageError::InvalidValue("a primary key or an index has 1 to 8 columns".into()));
        }
        for k in def.primary_key.iter().chain(def.indexes.iter().flatten()) {
            if !columns.iter().any(|c| &c.name == k) {
                return Err(StorageError::InvalidName(format!("key or index column {} is not a column", quoted(k))));
            }
        }
        let exists = match self.meta(plugin, &def.name, limits).await {
            Ok(existing) => {
                if existing.columns != columns || existing.primary_key != def.primary_key {
                    return Err(StorageError::SchemaMismatch(format!("table {:?} exists with other columns or key", def.name)));
                }
                true
            }
            Err(StorageError::NoSuchTable(_)) => false,
            Err(e) => return Err(e),
        };
        let phys = physical(plugin, &def.name);
        let col_sql: Vec<String> = columns
            .iter()
            .map(|c| format!("{} {}{}", quote(&c.name), self.backend().column_type(&c.kind), if c.nullable { "" } else { " NOT NULL" }))
            .collect();
        let pk: Vec<String> = def.primary_key.iter().map(|k| quote(k)).collect();
        let mut tx = self.writer(limits).await?;
        // The whole transaction, not each index, within the limit: it holds the writer.
        let until = std::time::Instant::now() + limits.statement_timeout();
        let left = || until.saturating_duration_since(std::time::Instant::now()).max(std::time::Duration::from_millis(1));
        if self.backend().takes_advisory_locks() {
            query(crate::store::locks::PLUGIN_TABLES).execute(&mut tx).await.map_err(backend_err)?;
        }
        if !exists {
            quota::check_new_table(&mut tx, plugin, limits).await?;
        }
        let create = format!("CREATE TABLE IF NOT EXISTS {phys} ({}, PRIMARY KEY ({}))", col_sql.join(", "), pk.join(", "));
        query_built(create).time_limit(left()).execute(&mut tx).await.map_err(backend_err)?;
        // Named after its columns: a plugin that changes an index gets the new one (the
        // old one stays), not the old one kept under a reused name. So the indexes a table
        // has, from every definition so far, are counted against the bound.
        let prefix = format!("{phys}_i");
        let list = self.backend().list_indexes();
        let mut have: Vec<String> = Vec::new();
        for r in query(list).bind(&phys).time_limit(left()).fetch_all(&mut tx).await.map_err(backend_err)? {
            let name: String = r.try_get("name").map_err(backend_err)?;
            if name.starts_with(&prefix) {
                have.push(name);
            }
        }
        let wanted: Vec<(String, &Vec<String>)> =
            def.indexes.iter().map(|idx| (format!("{prefix}{:08x}", fnv32(&idx.join(","))), idx)).collect();
        let new = wanted.iter().filter(|(n, _)| !have.contains(n)).count();
        if have.len() + new > MAX_INDEXES {
            return Err(StorageError::QuotaExceeded(format!(
                "table {:?} would have {} indexes, over the limit of {MAX_INDEXES} (an index of an earlier definition stays)",
                def.name,
                have.len() + new
            )));
        }
        for (name, idx) in &wanted {
            let cols: Vec<String> = idx.iter().map(|c| quote(c)).collect();
            let sql = format!("CREATE INDEX IF NOT EXISTS {name} ON {phys} ({})", cols.join(", "));
            query_built(sql).time_limit(left()).execute(&mut tx).await.map_err(backend_err)?;
        }
        query(
            "INSERT INTO fluid_plugin_tables (plugin, name, physical, columns, primary_key) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (plugin, name) DO NOTHING",
        )
        .bind(plugin)
        .bind(&def.name)
        .bind(&phys)
        .bind(serde_json::to_string(&columns).unwrap_or_default())
        .bind(serde_json::to_string(&def.primary_key).unwrap_or_default())
        .execute(&mut tx)
        .await
        .map_err(backend_err)?;
        tx.commit().await.map_err(backend_err)?;
        self.meta
            .lock()
            .unwrap()
            .insert((plugin.to_string(), def.name.clone()), Meta { physical: phys, columns, primary_key: def.primary_key.clone() });
        Ok(())
    }

    fn select_expr(&self, c: &Col) -> String {
        self.backend().select_column(&quote(&c.name), &c.kind)
    }

    /// Current usage of `plugin`'s tables: the upper bound, measured first when unknown or
    /// marked to be measured again. A marked bound still bounds the usage: its measure is
    /// held to the statement limit, and when it fails the bound stays as it was.
    pub async fn usage_bound(&self, plugin: &str, limits: &TableLimits) -> Result<Usage, StorageError> {
        let before = match self.bounds.get(plugin) {
            Some((u, false)) => return Ok(u),
            Some((u, true)) => Some(u),
            None => None,
        };
        let measured = async {
            let mut conn = self.reader(limits).await?;
            quota::measure(&mut conn, self.backend(), plugin, before.map(|_| limits.statement_timeout())).await
        };
        match (measured.await, before) {
            (Ok(u), Some(b)) => Ok(self.bounds.remeasured(plugin, u, b)),
            (Ok(u), None) => {
                self.bounds.set(plugin, u);
                Ok(u)
            }
            (Err(_), Some(b)) => Ok(b),
            (Err(e), None) => Err(e),
        }
    }

    /// Inserts `rows`, or replaces the given columns of rows whose key exists; with
    /// `version`, only where the given row's version is greater than the stored one
    /// (`upsert-newer`).
    pub async fn upsert(
        &self,
        plugin: &str,
        table: &str,
        columns: Vec<String>,
        rows: Vec<Vec<Value>>,
        version: Option<&str>,
        limits: &TableLimits,
    ) -> Result<u64, StorageError> {
        if rows.len() > MAX_UPSERT_ROWS || columns.len() > MAX_COLUMNS {
            return Err(StorageError::InvalidValue(format!(
                "{} rows of {} columns: at most {MAX_UPSERT_ROWS} rows of {MAX_COLUMNS} columns per upsert",
                rows.len(),
                columns.len()
            )));
        }
        let meta = self.meta(plugin, table, limits).await?;
        let cols: Vec<Col> = columns.iter().map(|c| meta.col(c).cloned()).collect::<Result<_, _>>()?;
        if let Some(v) = version {
            let kind = &meta.col(v)?.kind;
            if !columns.iter().any(|c| c == v) {
                return Err(StorageError::InvalidValue(format!("the version column {v:?} must be one of the columns given")));
            }
            if meta.primary_key.iter().any(|k| k == v) {
                return Err(StorageError::InvalidValue(format!("the version column {v:?} cannot be part of the primary key")));
            }
            // Numbers only: text and JSON would compare by collation on PostgreSQL and by
            // bytes on SQLite, and the two backends must agree on which copy is newer.
            if !matches!(kind.as_str(), "int" | "float") {
                return Err(StorageError::InvalidValue(format!("the version column {v:?} must be an int or float column")));
            }
        }
        for k in &meta.primary_key {
            if !columns.contains(k) {
                return Err(StorageError::InvalidValue(format!("upsert must give every primary key column; {k:?} is missing")));
            }
        }
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].contains(c) {
                return Err(StorageError::InvalidName(format!("column {} given twice", quoted(c))));
            }
        }
        let mut typed = Vec::with_capacity(rows.len());
        for (i, row) in rows.into_iter().enumerate() {
            if row.len() != cols.len() {
                return Err(StorageError::InvalidValue(format!("row {i} has {} values for {} columns", row.len(), cols.len())));
            }
            let vals: Vec<Bound> = row.into_iter().zip(&cols).map(|(v, c)| bind_value(self.backend(), c, v)).collect::<Result<_, _>>()?;
            typed.push(vals);
        }
        if typed.is_empty() {
            return Ok(0);
        }
        let new_rows = typed.len() as u64;
        let new_bytes: u64 = typed.iter().flatten().map(quota_bytes).sum();
        // What no select could read back is refused, and the bound keeps what one write
        // passes through a pooled connection's buffers (which keep their largest size).
        if new_bytes > limits.max_read_bytes() as u64 {
            return Err(StorageError::InvalidValue(format!(
                "an upsert of about {new_bytes} bytes, over what one select may read back ({} MiB, max_read_mib)",
                limits.max_read_mib
            )));
        }
        let bound = self.usage_bound(plugin, limits).await?;
        let may_cross = Usage { rows: bound.rows + new_rows, bytes: bound.bytes + new_bytes }.over(limits).is_some();
        let col_list: Vec<String> = columns.iter().map(|c| quote(c)).collect();
        let pk: Vec<String> = meta.primary_key.iter().map(|c| quote(c)).collect();
        let updates: Vec<String> =
            columns.iter().filter(|c| !meta.primary_key.contains(c)).map(|c| format!("{0} = excluded.{0}", quote(c))).collect();
        // A version compares the row given (`excluded`) with the row stored; a comparison
        // with a null is not true, so a null on either side keeps the stored row.
        let newer = version.map_or(String::new(), |v| format!(" WHERE excluded.{0} > {1}.{0}", quote(v), meta.physical));
        let on_conflict =
            if updates.is_empty() { "DO NOTHING".to_string() } else { format!("DO UPDATE SET {}{newer}", updates.join(", ")) };
        let mut tx = self.writer(limits).await?;
        // The whole transaction, not each statement, within the limit: it holds the writer.
        let until = std::time::Instant::now() + limits.statement_timeout();
        let left = || until.saturating_duration_since(std::time::Instant::now()).max(std::time::Duration::from_millis(1));
        // SQLite: one row per statement, the same text every time, so it is parsed once and
        // cached (statements run inline, so many rows per text would only add parsing).
        // PostgreSQL: many rows per statement, one round trip per chunk.
        let per_statement = self.backend().rows_per_insert(UPSERT_CHUNK);
        let statement = |rows: usize| {
            let tuple = |row: usize| {
                let ps: Vec<String> =
                    cols.iter().enumerate().map(|(i, c)| self.backend().placeholder(row * cols.len() + i + 1, &c.kind)).collect();
                format!("({})", ps.join(", "))
            };
            let tuples: Vec<String> = (0..rows).map(tuple).collect();
            format!(
                "INSERT INTO {} ({}) VALUES {} ON CONFLICT ({}) {on_conflict}",
                meta.physical,
                col_list.join(", "),
                tuples.join(", "),
                pk.join(", ")
            )
        };
        // Every chunk but the last has the same size, so the same text.
        let full_rows = per_statement.min(typed.len());
        let full = statement(full_rows);
        let mut written = 0;
        let mut rows = typed.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<Vec<Bound>> = rows.by_ref().take(per_statement).collect();
            let mut q = query_built(if chunk.len() == full_rows { full.clone() } else { statement(chunk.len()) }).time_limit(left());
            for v in chunk.into_iter().flatten() {
                q.push(v);
            }
            written += q.execute(&mut tx).await.map_err(backend_err)?;
        }
        if may_cross {
            let exact = match quota::measure(&mut tx, self.backend(), plugin, Some(left())).await {
                Ok(exact) => exact,
                // Near its quota, tables too large to measure in the time left are taken as
                // over it: the plugin is told to make room (as the db plugin does, trimming
                // its oldest rows), not failed for the host's slow scan.
                Err(StorageError::Backend(m)) if m.starts_with(STATEMENT_TIMED_OUT) => {
                    tx.rollback().await.map_err(backend_err)?;
                    return Err(quota::exceeded(
                        "upsert refused: the plugin's tables are near their quota and could not be measured in the statement's time limit (statement_timeout_ms)".into(),
                    ));
                }
                Err(e) => return Err(e),
            };
            if let Some(why) = exact.over(limits) {
                tx.rollback().await.map_err(backend_err)?;
                return Err(quota::exceeded(format!("upsert refused: the plugin's tables would hold {why}")));
            }
            tx.commit().await.map_err(backend_err)?;
            self.bounds.set(plugin, exact);
        } else {
            tx.commit().await.map_err(backend_err)?;
            self.bounds.add(plugin, new_rows, new_bytes);
        }
        Ok(written)
    }

    /// Builds `WHERE ...` for `filters` (and a keyset position), numbering parameters
    /// from `*n + 1`.
    fn where_sql(
        &self,
        meta: &Meta,
        filters: Vec<Filter>,
        after: Option<(&[OrderBy], Vec<Value>)>,
        n: &mut usize,
        binds: &mut Vec<Bound>,
    ) -> Result<String, StorageError> {
        if filters.len() > MAX_FILTERS {
            return Err(StorageError::InvalidValue(format!("{} filters, over the limit of {MAX_FILTERS}", filters.len())));
        }
        let mut parts = Vec::new();
        for f in filters {
            let col = meta.col(&f.column)?.clone();
            let c = quote(&col.name);
            let cmp = |op: &str, v: Value, binds: &mut Vec<Bound>, n: &mut usize| -> Result<String, StorageError> {
                if matches!(v, Value::Null) {
                    return match op {
                        "=" => Ok(format!("{c} IS NULL")),
                        "<>" => Ok(format!("{c} IS NOT NULL")),
                        _ => Err(StorageError::InvalidValue(format!("cannot compare {} with null using {op}", col.name))),
                    };
                }
                binds.push(bind_value(self.backend(), &col, v)?);
                *n += 1;
                Ok(format!("{c} {op} {}", self.backend().placeholder(*n, &col.kind)))
            };
            let part = match f.op {
                FilterOp::Eq(v) => cmp("=", v, binds, n)?,
                FilterOp::Ne(v) => cmp("<>", v, binds, n)?,
                FilterOp::Lt(v) => cmp("<", v, binds, n)?,
                FilterOp::Le(v) => cmp("<=", v, binds, n)?,
                FilterOp::Gt(v) => cmp(">", v, binds, n)?,
                FilterOp::Ge(v) => cmp(">=", v, binds, n)?,
                FilterOp::OneOf(vs) => {
                    if vs.is_empty() {
                        "1 = 0".to_string()
                    } else if vs.len() > 1000 {
                        return Err(StorageError::InvalidValue("one-of takes at most 1000 values".into()));
                    } else {
                        let mut ps = Vec::new();
                        for v in vs {
                            if matches!(v, Value::Null) {
                                return Err(StorageError::InvalidValue("one-of cannot hold null".into()));
                            }
                            binds.push(bind_value(self.backend(), &col, v)?);
                            *n += 1;
                            ps.push(self.backend().placeholder(*n, &col.kind));
                        }
                        // One value as `=`: planners then use an index on (c, order...) in order.
                        if ps.len() == 1 { format!("{c} = {}", ps[0]) } else { format!("{c} IN ({})", ps.join(", ")) }
                    }
                }
                FilterOp::JsonContains(text) => self.json_contains(&col, &text, n, binds)?,
            };
            parts.push(part);
        }
        if let Some((order, values)) = after {
            if values.len() != order.len() || order.is_empty() {
                return Err(StorageError::InvalidValue("after must give one value per order column".into()));
            }
            let mut ors = Vec::new();
            for i in 0..order.len() {
                let mut ands = Vec::new();
                for (j, o) in order.iter().enumerate().take(i + 1) {
                    let col = meta.col(&o.column)?.clone();
                    let op = if j < i {
                        "="
                    } else if o.descending {
                        "<"
                    } else {
                        ">"
                    };
                    binds.push(bind_value(self.backend(), &col, values[j].clone())?);
                    *n += 1;
                    ands.push(format!("{} {op} {}", quote(&col.name), self.backend().placeholder(*n, &col.kind)));
                }
                ors.push(format!("({})", ands.join(" AND ")));
            }
            parts.push(format!("({})", ors.join(" OR ")));
        }
        Ok(if parts.is_empty() { String::new() } else { format!(" WHERE {}", parts.join(" AND ")) })
    }

    fn json_contains(&self, col: &Col, text: &str, n: &mut usize, binds: &mut Vec<Bound>) -> Result<String, StorageError> {
        if col.kind != "json" {
            return Err(StorageError::InvalidValue(format!("json-contains needs a json column; {} is {}", col.name, col.kind)));
        }
        if text.len() > MAX_JSON_CONTAINS {
            return Err(StorageError::InvalidValue(format!("json-contains takes at most {MAX_JSON_CONTAINS} bytes")));
        }
        let obj = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => return Err(StorageError::InvalidValue("json-contains takes a JSON object".into())),
        };
        if obj.len() > MAX_FILTERS {
            return Err(StorageError::InvalidValue(format!("json-contains with {} keys, over the limit of {MAX_FILTERS}", obj.len())));
        }
        let c = quote(&col.name);
        if self.backend() == Backend::Postgres {
            binds.push(Bound::Text(Some(text.to_string())));
            *n += 1;
            return Ok(format!("{c} @> ${}::jsonb", *n));
        }
        if obj.is_empty() {
            return Ok("1 = 1".into());
        }
        // SQLite: every key of the object must be present with an equal value.
        let mut parts = Vec::new();
        for (k, v) in obj {
            if k.contains('"') || k.contains('\\') {
                return Err(StorageError::InvalidValue(format!("json-contains key {} may not hold quotes or backslashes", quoted(&k))));
            }
            binds.push(Bound::Text(Some(format!("$.\"{k}\""))));
            *n += 1;
            let path = *n;
            let part = match v {
                serde_json::Value::Null => format!("json_type({c}, ${path}) = 'null'"),
                serde_json::Value::Bool(b) => {
                    format!("json_type({c}, ${path}) = '{}'", if b { "true" } else { "false" })
                }
                serde_json::Value::Number(num) => {
                    binds.push(match num.as_i64() {
                        Some(i) => Bound::Int(Some(i)),
                        None => Bound::Real(num.as_f64()),
                    });
                    *n += 1;
                    format!("json_extract({c}, ${path}) = ${}", *n)
                }
                serde_json::Value::String(s) => {
                    binds.push(Bound::Text(Some(s)));
                    *n += 1;
                    format!("(json_type({c}, ${path}) = 'text' AND json_extract({c}, ${path}) = ${})", *n)
                }
                nested => {
                    binds.push(Bound::Text(Some(nested.to_string())));
                    *n += 1;
                    format!("json_extract({c}, ${path}) = json(${})", *n)
                }
            };
            parts.push(part);
        }
        Ok(format!("({})", parts.join(" AND ")))
    }

    /// The rows of `plugin`'s `table` that `q` asks for, within `limits` (rows read,
    /// bytes read, statement time).
    pub async fn select(&self, plugin: &str, table: &str, q: Query, limits: &TableLimits) -> Result<Vec<Vec<Value>>, StorageError> {
        if q.order.len() > MAX_ORDER {
            return Err(StorageError::InvalidValue(format!("{} order-by columns, over the limit of {MAX_ORDER}", q.order.len())));
        }
        if q.columns.len() > MAX_COLUMNS {
            return Err(StorageError::InvalidValue(format!("{} columns asked for, over the limit of {MAX_COLUMNS}", q.columns.len())));
        }
        let meta = self.meta(plugin, table, limits).await?;
        let cols: Vec<Col> = if q.columns.is_empty() {
            meta.columns.clone()
        } else {
            q.columns.iter().map(|c| meta.col(c).cloned()).collect::<Result<_, _>>()?
        };
        let mut binds = Vec::new();
        let mut n = 0;
        let after = q.after.map(|a| (q.order.as_slice(), a));
        let where_sql = self.where_sql(&meta, q.filters.clone(), after, &mut n, &mut binds)?;
        let mut order = Vec::new();
        for o in &q.order {
            meta.col(&o.column)?;
            order.push(format!("{} {}", quote(&o.column), if o.descending { "DESC" } else { "ASC" }));
        }
        let order_sql = if order.is_empty() { String::new() } else { format!(" ORDER BY {}", order.join(", ")) };
        let limit = q.limit.unwrap_or(MAX_SELECT_ROWS).min(MAX_SELECT_ROWS);
        let exprs: Vec<String> = cols.iter().map(|c| format!("{} AS {}", self.select_expr(c), quote(&c.name))).collect();
        let sql = format!("SELECT {} FROM {}{where_sql}{order_sql} LIMIT {limit}", exprs.join(", "), meta.physical);
        let mut query = query_built(sql).heavy().time_limit(limits.statement_timeout());
        for b in &binds {
            query.push(b.clone());
        }
        let max = limits.max_read_bytes();
        let rows = query.fetch_all_within(&mut self.reader(limits).await?, max).await.map_err(backend_err)?.ok_or_else(|| {
            StorageError::InvalidValue(format!(
                "the rows read would pass {max} bytes (max_read_mib): read fewer rows or columns at a time (limit, after)"
            ))
        })?;
        rows.iter().map(|r| read_row(self.backend(), r, &cols)).collect()
    }

    /// Deletes the rows of `plugin`'s `table` that match every filter; how many.
    pub async fn delete(&self, plugin: &str, table: &str, filters: Vec<Filter>, limits: &TableLimits) -> Result<u64, StorageError> {
        let meta = self.meta(plugin, table, limits).await?;
        let (mut binds, mut n) = (Vec::new(), 0);
        let where_sql = self.where_sql(&meta, filters, None, &mut n, &mut binds)?;
        let mut query = query_built(format!("DELETE FROM {}{where_sql}", meta.physical)).heavy().time_limit(limits.statement_timeout());
        for b in &binds {
            query.push(b.clone());
        }
        let mut tx = self.writer(limits).await?;
        let n = query.execute(&mut tx).await.map_err(backend_err)?;
        tx.commit().await.map_err(backend_err)?;
        self.bounds.deleted(plugin, n, limits);
        Ok(n)
    }

    /// How many rows of `plugin`'s `table` match every filter.
    pub async fn count(&self, plugin: &str, table: &str, filters: Vec<Filter>, limits: &TableLimits) -> Result<u64, StorageError> {
        let meta = self.meta(plugin, table, limits).await?;
        let (mut binds, mut n) = (Vec::new(), 0);
        let where_sql = self.where_sql(&meta, filters, None, &mut n, &mut binds)?;
        let mut query =
            query_built(format!("SELECT COUNT(*) AS n FROM {}{where_sql}", meta.physical)).heavy().time_limit(limits.statement_timeout());
        for b in &binds {
            query.push(b.clone());
        }
        let row = query.fetch_one(&mut self.reader(limits).await?).await.map_err(backend_err)?;
        Ok(row.try_get::<i64, _>("n").map_err(backend_err)? as u64)
    }
}

/// Bytes a bound value counts for in the storage quota.
fn quota_bytes(b: &Bound) -> u64 {
    match b {
        Bound::Text(Some(s)) => s.len() as u64,
        Bound::Text(None) | Bound::Int(None) | Bound::Real(None) | Bound::Bool(None) => 0,
        _ => 8,
    }
}

fn bind_value(backend: Backend, col: &Col, v: Value) -> Result<Bound, StorageError> {
    let mismatch = |v: &Value| StorageError::InvalidValue(format!("column {} is {}; got {}", col.name, col.kind, value_kind(v)));
    let null = matches!(v, Value::Null);
    if null && !col.nullable {
        return Err(StorageError::InvalidValue(format!("column {} is not nullable", col.name)));
    }
    Ok(match col.kind.as_str() {
        "int" => match v {
            Value::Null => Bound::Int(None),
            Value::Int(i) => Bound::Int(Some(i)),
            other => return Err(mismatch(&other)),
        },
        "float" => match v {
            Value::Null => Bound::Real(None),
            Value::Float(f) => Bound::Real(Some(f)),
            Value::Int(i) => Bound::Real(Some(i as f64)),
            other => return Err(mismatch(&other)),
        },
        "text" => match v {
            Value::Null => Bound::Text(None),
            Value::Text(s) => Bound::Text(Some(s)),
            other => return Err(mismatch(&other)),
        },
        "boolean" => match (v, backend.has_booleans()) {
            (Value::Null, true) => Bound::Bool(None),
            (Value::Null, false) => Bound::Int(None),
            (Value::Boolean(b), true) => Bound::Bool(Some(b)),
            (Value::Boolean(b), false) => Bound::Int(Some(b as i64)),
            (other, _) => return Err(mismatch(&other)),
        },
        _ => match v {
            Value::Null => Bound::Text(None),
            Value::Json(s) | Value::Text(s) => {
                serde_json::from_str::<serde::de::IgnoredAny>(&s)
                    .map_err(|e| StorageError::InvalidValue(format!("column {}: not JSON: {e}", col.name)))?;
                Bound::Text(Some(s))
            }
            other => return Err(mismatch(&other)),
        },
    })
}

fn read_row(backend: Backend, r: &Row, cols: &[Col]) -> Result<Vec<Value>, StorageError> {
    cols.iter()
        .enumerate()
        .map(|(i, c)| {
            Ok(match c.kind.as_str() {
                "int" => r.try_get::<Option<i64>, _>(i).map_err(backend_err)?.map_or(Value::Null, Value::Int),
                "float" => r.try_get::<Option<f64>, _>(i).map_err(backend_err)?.map_or(Value::Null, Value::Float),
                "text" => r.try_get::<Option<String>, _>(i).map_err(backend_err)?.map_or(Value::Null, Value::Text),
                "boolean" if !backend.has_booleans() => {
                    r.try_get::<Option<i64>, _>(i).map_err(backend_err)?.map_or(Value::Null, |b| Value::Boolean(b != 0))
                }
                "boolean" => r.try_get::<Option<bool>, _>(i).map_err(backend_err)?.map_or(Value::Null, Value::Boolean),
                _ => r.try_get::<Option<String>, _>(i).map_err(backend_err)?.map_or(Value::Null, Value::Json),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_quote_at_most_the_start_of_what_a_plugin_gave() {
        let huge = "x".repeat(8 << 20);
        let StorageError::InvalidName(e) = check_ident("table", &huge, 24).unwrap_err() else { panic!("not an invalid name") };
        assert!(e.len() < 200 && e.contains(&format!("{:?}…", "x".repeat(64))), "{}", e.len());
        assert_eq!(quoted("events"), "\"events\"");
        assert_eq!(quoted("a\nb"), "\"a\\nb\"");
        let meta = Meta { physical: "p_1_p_t".into(), columns: vec![], primary_key: vec![] };
        let StorageError::InvalidName(e) = meta.col(&huge).unwrap_err() else { panic!("not an invalid name") };
        assert!(e.len() < 200, "{}", e.len());
        let col = Col { name: "n".into(), kind: "int".into(), nullable: false };
        let StorageError::InvalidValue(e) = bind_value(Backend::Sqlite, &col, Value::Text(huge)).unwrap_err() else {
            panic!("not an invalid value")
        };
        assert_eq!(e, "column n is int; got text");
    }

    /// A storage call counts the time it waited for a connection another holds, not the
    /// time of its own statements; past `statement_timeout_ms` of waiting it gets `busy`.
    #[tokio::test]
    async fn a_call_counts_its_waits_for_connections_others_hold_and_not_its_own_work() {
        let dir = std::env::temp_dir().join(format!("fluid-waits-{}", uuid::Uuid::new_v4().simple()));
        let queue = Store::open_sqlite(&dir).await.unwrap();
        let storage = PluginStorage::new(queue.plugin_store().await.unwrap()).await.unwrap();
        let limits = TableLimits { max_tables: 8, max_rows: 1000, max_storage_mib: 8, max_read_mib: 8, statement_timeout_ms: 5_000 };
        let def = TableDef {
            name: "t".into(),
            columns: vec![Column { name: "id".into(), kind: ColumnType::Int, nullable: false }],
            primary_key: vec!["id".into()],
            indexes: vec![],
        };
        let row = |n: i64| vec![vec![Value::Int(n)]];
        let (made, waited) = with_waits(storage.ensure_table("p", def, &limits)).await;
        made.unwrap();
        let (_, alone) = with_waits(storage.upsert("p", "t", vec!["id".into()], row(1), None, &limits)).await;

        // Another holds the writer for a while: the wait is counted.
        let held = storage.store.write_tx().await.unwrap();
        let hold = Duration::from_millis(300);
        let release = tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            drop(held);
        });
        let (wrote, waited_held) = with_waits(storage.upsert("p", "t", vec!["id".into()], row(2), None, &limits)).await;
        assert_eq!(wrote.unwrap(), 1);
        release.await.unwrap();
        assert!(waited_held >= hold - Duration::from_millis(50), "waited {waited_held:?} for a writer held {hold:?}");
        assert!(alone < hold / 3 && waited < hold / 3, "uncontended calls counted {alone:?} and {waited:?}");

        // Held past the caller's own limit: `busy`, the database's fault, not the plugin's.
        let short = TableLimits { statement_timeout_ms: 50, ..limits };
        let held = storage.store.write_tx().await.unwrap();
        let (busy, waited_busy) = with_waits(storage.upsert("p", "t", vec!["id".into()], row(3), None, &short)).await;
        drop(held);
        assert!(busy.as_ref().is_err_and(not_its_fault), "{busy:?}");
        assert!(waited_busy >= Duration::from_millis(50), "{waited_busy:?}");
        storage.close().await;
        queue.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
