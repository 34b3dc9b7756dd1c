//! SQL of `fluid_plugin_checkpoints`: the last feed `seq` each plugin has handled, and
//! which host delivers its events now (a lease, so with many hosts on one database each
//! plugin sees its events once, in order, from one host at a time).

use super::{Db, query};

/// The plugin's checkpoint; a plugin seen for the first time starts at `start`.
pub(crate) async fn get_or_init(conn: &mut Db, plugin: &str, start: i64) -> Result<i64, sqlx::Error> {
    query("INSERT INTO fluid_plugin_checkpoints (plugin, seq) VALUES ($1, $2) ON CONFLICT (plugin) DO NOTHING")
        .bind(plugin)
        .bind(start)
        .execute(&mut *conn)
        .await?;
    query("SELECT seq FROM fluid_plugin_checkpoints WHERE plugin = $1").bind(plugin).fetch_one(&mut *conn).await?.try_get("seq")
}

/// The lowest checkpoint among `plugins` (events below it may be pruned).
pub(crate) async fn min(conn: &mut Db) -> Result<Option<i64>, sqlx::Error> {
    query("SELECT MIN(seq) AS m FROM fluid_plugin_checkpoints").fetch_one(&mut *conn).await?.try_get("m")
}

/// Every plugin's checkpoint, removed plugins' included (they still hold the feed).
pub(crate) async fn all(conn: &mut Db) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = query("SELECT plugin, seq FROM fluid_plugin_checkpoints ORDER BY plugin").fetch_all(&mut *conn).await?;
    rows.iter().map(|r| Ok((r.try_get("plugin")?, r.try_get("seq")?))).collect()
}

/// Takes or renews the delivery lease of `plugin` for `host` until `until`; false when
/// another host holds an unexpired lease.
pub(crate) async fn hold(conn: &mut Db, plugin: &str, host: &str, now: i64, until: i64) -> Result<bool, sqlx::Error> {
    let done = query(
        "UPDATE fluid_plugin_checkpoints SET owner = $2, lease_until = $4 \
         WHERE plugin = $1 AND (owner = $2 OR owner IS NULL OR lease_until < $3)",
    )
    .bind(plugin)
    .bind(host)
    .bind(now)
    .bind(until)
    .execute(&mut *conn)
    .await?;
    Ok(done == 1)
}

/// Moves the checkpoint forward only while `host` still holds the lease: a host that lost
/// it (paused, partitioned) cannot move the checkpoint of the host that took over. The
/// same statement renews the lease until `until`, so a busy delivery loop needs no commit
/// of its own to keep it (one queue commit per batch, not two).
pub(crate) async fn advance_as(conn: &mut Db, plugin: &str, host: &str, seq: i64, until: i64) -> Result<bool, sqlx::Error> {
    let done = query("UPDATE fluid_plugin_checkpoints SET seq = $3, lease_until = $4 WHERE plugin = $1 AND owner = $2 AND seq < $3")
        .bind(plugin)
        .bind(host)
        .bind(seq)
        .bind(until)
        .execute(&mut *conn)
        .await?;
    Ok(done == 1)
}

/// Gives the lease up (a clean shutdown), so another host takes over at once.
pub(crate) async fn release(conn: &mut Db, plugin: &str, host: &str) -> Result<(), sqlx::Error> {
    query("UPDATE fluid_plugin_checkpoints SET owner = NULL, lease_until = 0 WHERE plugin = $1 AND owner = $2")
        .bind(plugin)
        .bind(host)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
