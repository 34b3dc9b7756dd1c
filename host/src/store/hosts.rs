//! SQL of `fluid_hosts`: which hosts are alive, by heartbeat.

use super::{Db, query};

/// A host sharing the database, as its last heartbeat left it (times in µs since the epoch).
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostRow {
    /// The host's id.
    pub id: String,
    /// When it started.
    pub started_at: i64,
    /// Its last heartbeat: a host silent for long is taken for dead and its runs rescued.
    pub heartbeat_at: i64,
    /// How many runs it executes at once.
    pub workers: i64,
}

pub(crate) async fn beat(conn: &mut Db, id: &str, started_at: i64, now: i64, workers: i64) -> Result<(), sqlx::Error> {
    query(
        "INSERT INTO fluid_hosts (id, started_at, heartbeat_at, workers) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, workers = excluded.workers",
    )
    .bind(id)
    .bind(started_at)
    .bind(now)
    .bind(workers)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(crate) async fn remove(conn: &mut Db, id: &str) -> Result<(), sqlx::Error> {
    query("DELETE FROM fluid_hosts WHERE id = $1").bind(id).execute(&mut *conn).await?;
    Ok(())
}

/// Hosts seen since `alive_after`; forgets those silent for long.
pub(crate) async fn live(conn: &mut Db, alive_after: i64) -> Result<Vec<HostRow>, sqlx::Error> {
    let rows = query("SELECT id, started_at, heartbeat_at, workers FROM fluid_hosts WHERE heartbeat_at >= $1 ORDER BY started_at")
        .bind(alive_after)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(HostRow {
                id: r.try_get("id")?,
                started_at: r.try_get("started_at")?,
                heartbeat_at: r.try_get("heartbeat_at")?,
                workers: r.try_get("workers")?,
            })
        })
        .collect()
}
