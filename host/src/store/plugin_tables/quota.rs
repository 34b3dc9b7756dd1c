//! Storage quotas of a plugin: tables, rows and bytes across all its tables.
//!
//! Tables are counted in `fluid_plugin_tables`. Rows and bytes are measured with SQL over
//! the plugin's own tables (`COUNT(*)` and the summed length of every value, as text: an
//! approximation of the bytes stored, indexes and page overhead not included). Measuring
//! on every write would cost a scan per write, so each plugin keeps an upper bound: set by
//! a measurement, raised by what each upsert sends (as if every row were new and no value
//! replaced), lowered by the rows deletes remove (and measured again after one past half
//! a quota). A write whose bound stays under the quota goes through without measuring; one that could cross it is measured exactly inside its own
//! transaction, after its rows are written, and rolled back if the plugin is over. The
//! bound is this host's: with several hosts writing one plugin's tables on PostgreSQL, a
//! host measures when its own bound nears the limit, so the quota can be overshot by what
//! the others wrote since.

use super::{StorageError, TableLimits};
use crate::store::Backend;
use crate::store::{Db, query, query_built};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Rows and bytes of one plugin's tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Rows across its tables.
    pub rows: u64,
    /// The summed length of every value, as text.
    pub bytes: u64,
}

impl Usage {
    /// Which quota of `limits` it passes, said for the plugin, if any.
    pub fn over(&self, limits: &TableLimits) -> Option<String> {
        if self.rows > limits.max_rows {
            return Some(format!("{} rows, over the quota of {} (max_rows)", self.rows, limits.max_rows));
        }
        (self.bytes > limits.max_storage_bytes())
            .then(|| format!("about {} bytes, over the quota of {} MiB (max_storage_mib)", self.bytes, limits.max_storage_mib))
    }
}

/// Upper bounds of each plugin's usage, as described above, each marked when it is to be
/// measured again (it still bounds the usage until then).
#[derive(Clone, Default)]
pub struct Bounds(Arc<Mutex<HashMap<String, (Usage, bool)>>>);

impl Bounds {
    /// The bound, and whether it is to be measured again.
    pub fn get(&self, plugin: &str) -> Option<(Usage, bool)> {
        self.0.lock().unwrap().get(plugin).copied()
    }
    pub fn set(&self, plugin: &str, u: Usage) {
        self.0.lock().unwrap().insert(plugin.to_string(), (u, false));
    }
    pub fn add(&self, plugin: &str, rows: u64, bytes: u64) {
        if let Some((u, _)) = self.0.lock().unwrap().get_mut(plugin) {
            u.rows = u.rows.saturating_add(rows);
            u.bytes = u.bytes.saturating_add(bytes);
        }
    }
    /// `rows` were deleted. Their bytes stay in the bound (an upsert counts what it sends,
    /// a measure what is stored: lowering the bound by either would let inserting then
    /// deleting rows drift it below the usage); past half a quota the bound is marked to be
    /// measured again, or every write after a trim (the db plugin's history at its quota)
    /// would measure every table inside the writer.
    pub fn deleted(&self, plugin: &str, rows: u64, limits: &TableLimits) {
        if let Some((u, stale)) = self.0.lock().unwrap().get_mut(plugin) {
            u.rows = u.rows.saturating_sub(rows);
            if rows > 0 && (u.rows > limits.max_rows / 2 || u.bytes > limits.max_storage_bytes() / 2) {
                *stale = true;
            }
        }
    }
    /// The bound measured again: `measured`, plus what writes added since the bound read
    /// `before` the measure (it may not have seen them). Returns the new bound.
    pub fn remeasured(&self, plugin: &str, measured: Usage, before: Usage) -> Usage {
        let mut bounds = self.0.lock().unwrap();
        let now = bounds.get(plugin).map_or(before, |(u, _)| *u);
        let u = Usage {
            rows: measured.rows.saturating_add(now.rows.saturating_sub(before.rows)),
            bytes: measured.bytes.saturating_add(now.bytes.saturating_sub(before.bytes)),
        };
        bounds.insert(plugin.to_string(), (u, false));
        u
    }
}

pub fn exceeded(msg: String) -> StorageError {
    StorageError::QuotaExceeded(msg)
}

/// Refuses a new table when the plugin already has `max_tables`.
pub async fn check_new_table(conn: &mut Db, plugin: &str, limits: &TableLimits) -> Result<(), StorageError> {
    let row = query("SELECT COUNT(*) AS n FROM fluid_plugin_tables WHERE plugin = $1")
        .bind(plugin)
        .fetch_one(&mut *conn)
        .await
        .map_err(backend_err)?;
    let n: i64 = row.try_get("n").map_err(backend_err)?;
    if n as u64 >= limits.max_tables {
        return Err(exceeded(format!("the plugin has {n} tables, its quota (max_tables)")));
    }
    Ok(())
}

/// Exact rows and approximate bytes of every table of `plugin`; each scan within `limit`
/// when given (inside a write transaction, where it holds the plugins' one writer).
pub async fn measure(conn: &mut Db, backend: Backend, plugin: &str, limit: Option<std::time::Duration>) -> Result<Usage, StorageError> {
    let tables = query("SELECT physical, columns FROM fluid_plugin_tables WHERE plugin = $1")
        .bind(plugin)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend_err)?;
    let mut total = Usage::default();
    for t in tables {
        let physical: String = t.try_get("physical").map_err(backend_err)?;
        let columns: String = t.try_get("columns").map_err(backend_err)?;
        let names: Vec<serde_json::Value> = serde_json::from_str(&columns).map_err(|e| StorageError::Backend(e.to_string()))?;
        let lengths: Vec<String> = names
            .iter()
            .filter_map(|c| c.get("name").and_then(|n| n.as_str()))
            .map(|n| backend.stored_bytes(&format!("\"{n}\"")))
            .collect();
        // Names come from fluid_plugin_tables, checked as identifiers when the table was made.
        let sql = format!("SELECT COUNT(*) AS n, COALESCE(SUM({}), 0) AS b FROM {physical}", lengths.join(" + "));
        let mut q = query_built(sql).heavy();
        if let Some(l) = limit {
            q = q.time_limit(l);
        }
        let row = q.fetch_one(&mut *conn).await.map_err(backend_err)?;
        total.rows += row.try_get::<i64, _>("n").map_err(backend_err)? as u64;
        total.bytes += row.try_get::<i64, _>("b").map_err(backend_err)? as u64;
    }
    Ok(total)
}

use super::backend_err;
