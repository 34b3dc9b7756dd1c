//! SQL of `fluid_schedules`: the next due time of each scheduled task.
//!
//! Firing is a compare-and-set from the due time a host saw to the next one, in the same
//! transaction as the queued run: of several hosts that see the same due time, exactly
//! one advances it and queues the run.

use super::{Db, query};

/// The stored next due time, initialised to `first` when the task has none yet.
pub(crate) async fn next_due(conn: &mut Db, task: &str, first: i64) -> Result<i64, sqlx::Error> {
    query("INSERT INTO fluid_schedules (task, next_due) VALUES ($1, $2) ON CONFLICT (task) DO NOTHING")
        .bind(task)
        .bind(first)
        .execute(&mut *conn)
        .await?;
    query("SELECT next_due FROM fluid_schedules WHERE task = $1").bind(task).fetch_one(&mut *conn).await?.try_get("next_due")
}

/// Moves the due time from `seen` to `next`; false when another host already did.
pub(crate) async fn advance(conn: &mut Db, task: &str, seen: i64, next: i64) -> Result<bool, sqlx::Error> {
    let done = query("UPDATE fluid_schedules SET next_due = $3 WHERE task = $1 AND next_due = $2")
        .bind(task)
        .bind(seen)
        .bind(next)
        .execute(&mut *conn)
        .await?;
    Ok(done == 1)
}
