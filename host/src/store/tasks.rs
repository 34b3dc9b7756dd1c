//! SQL of `fluid_task_state`: the enabled switch and last-run summary of each task.

use super::{Db, query};
use crate::types::TaskRun;
use std::collections::HashMap;

/// What aio-fluid calls `TaskInfoUpdate`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskStatus {
    /// Whether its runs may start (a disabled task's runs are aborted at the door).
    pub enabled: bool,
    /// When its last run ended (µs since the epoch).
    pub last_run_end: Option<i64>,
    /// How long its last run ran.
    pub last_run_duration_us: Option<i64>,
    /// How its last run ended.
    pub last_run_state: Option<String>,
}

pub(crate) async fn all(conn: &mut Db) -> Result<HashMap<String, TaskStatus>, sqlx::Error> {
    let rows = query("SELECT name, enabled, last_run_end, last_run_duration_us, last_run_state FROM fluid_task_state")
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("name")?,
                TaskStatus {
                    enabled: r.try_get::<i64, _>("enabled")? != 0,
                    last_run_end: r.try_get("last_run_end")?,
                    last_run_duration_us: r.try_get("last_run_duration_us")?,
                    last_run_state: r.try_get("last_run_state")?,
                },
            ))
        })
        .collect()
}

pub(crate) async fn set_enabled(conn: &mut Db, name: &str, enabled: bool) -> Result<(), sqlx::Error> {
    query(
        "INSERT INTO fluid_task_state (name, enabled) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET enabled = excluded.enabled",
    )
    .bind(name)
    .bind(enabled as i64)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records a finished run that has a start and an end.
pub(crate) async fn record_last_run(conn: &mut Db, run: &TaskRun) -> Result<(), sqlx::Error> {
    let (Some(end), Some(duration)) = (run.end, run.duration()) else {
        return Ok(());
    };
    query(
        "INSERT INTO fluid_task_state (name, enabled, last_run_end, last_run_duration_us, last_run_state) \
         VALUES ($1, 1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET last_run_end = excluded.last_run_end, \
         last_run_duration_us = excluded.last_run_duration_us, last_run_state = excluded.last_run_state",
    )
    .bind(&run.task)
    .bind(end.timestamp_micros())
    .bind(duration.num_microseconds().unwrap_or(i64::MAX))
    .bind(run.state.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records `module` as the owner of every name of `names` nobody owns yet; returns the
/// names another module owns, with that owner.
pub(crate) async fn claim_owners(conn: &mut Db, module: &str, names: &[String]) -> Result<Vec<(String, String)>, sqlx::Error> {
    let mut taken = Vec::new();
    for name in names {
        query("INSERT INTO fluid_task_owners (name, module) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name.as_str())
            .bind(module)
            .execute(&mut *conn)
            .await?;
        let owner: String = query("SELECT module FROM fluid_task_owners WHERE name = $1")
            .bind(name.as_str())
            .fetch_one(&mut *conn)
            .await?
            .try_get("module")?;
        if owner != module {
            taken.push((name.clone(), owner));
        }
    }
    Ok(taken)
}

/// Releases the task names `module` owns; how many.
pub(crate) async fn release_owner(conn: &mut Db, module: &str) -> Result<u64, sqlx::Error> {
    query("DELETE FROM fluid_task_owners WHERE module = $1").bind(module).execute(&mut *conn).await
}
