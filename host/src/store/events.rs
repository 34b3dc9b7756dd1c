//! SQL of `fluid_events`: the change feed.
//!
//! Each committed state change is one row with a growing `seq` and the run's snapshot as
//! JSON. Plugins consume the feed from their checkpoint, so delivery survives crashes.
//! On PostgreSQL, sequence values are handed out at insert time but become visible at
//! commit; a transaction-scoped advisory lock taken just before the insert makes commits
//! happen in `seq` order, so a reader that saw `seq = n` never later finds a smaller one.

use super::Backend;
use super::{Db, query, query_built};
use crate::types::TaskRun;

/// One entry of the feed.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its place in the feed: later commits have greater ones.
    pub seq: i64,
    /// The run as that change left it.
    pub run: TaskRun,
}

/// Appends one event per snapshot, in order. Each backend's practice is its dialect's:
/// the ordering lock first, rows per statement, and the wake-up of other hosts last.
pub(crate) async fn append(conn: &mut Db, backend: Backend, runs: &[TaskRun]) -> Result<(), sqlx::Error> {
    if runs.is_empty() {
        return Ok(());
    }
    if let Some(lock) = backend.feed_order_lock() {
        query(lock).execute(&mut *conn).await?;
    }
    let text = |n: usize| {
        let values: Vec<String> = (0..n).map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3)).collect();
        format!("INSERT INTO fluid_events (run_id, state, snapshot) VALUES {}", values.join(", "))
    };
    let per_statement = backend.rows_per_insert(100);
    // Built once: every chunk but the last is full.
    let full_rows = per_statement.min(runs.len());
    let full = text(full_rows);
    for chunk in runs.chunks(per_statement) {
        let mut q = query_built(if chunk.len() == full_rows { full.clone() } else { text(chunk.len()) });
        for run in chunk {
            let snapshot = serde_json::to_string(run).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            q = q.bind(&run.id).bind(run.state.as_str()).bind(snapshot);
        }
        q.execute(&mut *conn).await?;
    }
    // Delivered at commit to every host listening (see `super::notify`).
    if let Some(announce) = backend.announce_change() {
        query(announce).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Up to `limit` events after `seq`, in order, and no more than `max_bytes` of snapshots
/// (but always the first): a page of large runs is read a few at a time.
pub(crate) async fn after(conn: &mut Db, seq: i64, limit: i64, max_bytes: usize) -> Result<Vec<Event>, sqlx::Error> {
    let rows = query("SELECT seq, snapshot FROM fluid_events WHERE seq > $1 ORDER BY seq LIMIT $2")
        .bind(seq)
        .bind(limit)
        .fetch_prefix_within(&mut *conn, max_bytes)
        .await?;
    rows.iter()
        .map(|r| {
            let snapshot: String = r.try_get("snapshot")?;
            let run = serde_json::from_str(&snapshot).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            Ok(Event { seq: r.try_get("seq")?, run })
        })
        .collect()
}

/// The last sequence number written (0 when the feed is empty).
pub(crate) async fn head(conn: &mut Db) -> Result<i64, sqlx::Error> {
    let row = query("SELECT COALESCE(MAX(seq), 0) AS head FROM fluid_events").fetch_one(&mut *conn).await?;
    row.try_get("head")
}

/// How many events the feed keeps after `seq` (it is pruned from the front, so they are
/// the ones from the later of `seq + 1` and its first kept event, to its head).
pub(crate) async fn kept_after(conn: &mut Db, seq: i64) -> Result<i64, sqlx::Error> {
    let row = query("SELECT COALESCE(MIN(seq), 0) AS first, COALESCE(MAX(seq), 0) AS head FROM fluid_events").fetch_one(&mut *conn).await?;
    let (first, head): (i64, i64) = (row.try_get("first")?, row.try_get("head")?);
    Ok(if head == 0 { 0 } else { (head - seq.max(first - 1)).max(0) })
}

/// Drops events every plugin has consumed (keeps the feed small).
pub(crate) async fn prune(conn: &mut Db, upto: i64) -> Result<u64, sqlx::Error> {
    query("DELETE FROM fluid_events WHERE seq <= $1").heavy().bind(upto).execute(&mut *conn).await
}
