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
/// another host holds an unexpired lease. A missing row (forgotten by `fluid plugins
/// forget` while the plugin was still loaded somewhere) is made again at seq 0, so a
/// loaded plugin always has a checkpoint and keeps holding the feed.
pub(crate) async fn hold(conn: &mut Db, plugin: &str, host: &str, now: i64, until: i64) -> Result<bool, sqlx::Error> {
    let done = query(
        "INSERT INTO fluid_plugin_checkpoints (plugin, seq, owner, lease_until) VALUES ($1, 0, $2, $4) \
         ON CONFLICT (plugin) DO UPDATE SET owner = $2, lease_until = $4 \
         WHERE fluid_plugin_checkpoints.owner = $2 OR fluid_plugin_checkpoints.owner IS NULL \
         OR fluid_plugin_checkpoints.lease_until < $3",
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

/// Among the checkpoints no host holds the delivery lease of at `now` (a plugin removed,
/// quarantined, or on hosts that are down), the one furthest behind: (plugin, seq).
pub(crate) async fn furthest_behind_idle(conn: &mut Db, now: i64) -> Result<Option<(String, i64)>, sqlx::Error> {
    let row =
        query("SELECT plugin, seq FROM fluid_plugin_checkpoints WHERE owner IS NULL OR lease_until < $1 ORDER BY seq, plugin LIMIT 1")
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?;
    row.map(|r| Ok((r.try_get("plugin")?, r.try_get("seq")?))).transpose()
}

/// What forgetting a plugin's checkpoint did ([`Store::forget_checkpoint`](super::Store::forget_checkpoint)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forget {
    /// The checkpoint is gone; it stood at `seq`, with `held` events of the feed kept for
    /// it that it had not handled.
    Forgotten {
        /// Where the checkpoint stood.
        seq: i64,
        /// Events the feed kept after it.
        held: i64,
    },
    /// A host holds the plugin's delivery lease now: it is loaded there, nothing changed.
    Delivering {
        /// The host delivering to it.
        host: String,
    },
    /// The plugin has no checkpoint.
    Unknown,
}

/// Deletes the checkpoint of a plugin no host delivers to now, so it stops holding the
/// feed (`fluid plugins forget`). Its tables are not touched.
pub(crate) async fn forget(conn: &mut Db, plugin: &str, now: i64) -> Result<Forget, sqlx::Error> {
    // One statement decides: a host taking the lease at the same moment either commits
    // first (the row is kept) or finds no row and makes it again (see `hold`).
    let deleted = query("DELETE FROM fluid_plugin_checkpoints WHERE plugin = $1 AND (owner IS NULL OR lease_until < $2) RETURNING seq")
        .bind(plugin)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = deleted {
        let seq = row.try_get("seq")?;
        return Ok(Forget::Forgotten { seq, held: super::events::kept_after(conn, seq).await? });
    }
    let owner = query("SELECT owner FROM fluid_plugin_checkpoints WHERE plugin = $1").bind(plugin).fetch_optional(&mut *conn).await?;
    Ok(match owner {
        Some(row) => Forget::Delivering { host: row.try_get::<Option<String>, _>("owner")?.unwrap_or_default() },
        None => Forget::Unknown,
    })
}

/// Gives the lease up (a clean shutdown, a quarantine, an unload), so another host takes
/// over at once.
pub(crate) async fn release(conn: &mut Db, plugin: &str, host: &str) -> Result<(), sqlx::Error> {
    query("UPDATE fluid_plugin_checkpoints SET owner = NULL, lease_until = 0 WHERE plugin = $1 AND owner = $2")
        .bind(plugin)
        .bind(host)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
