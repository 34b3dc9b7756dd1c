//! SQL of `fluid_plugin_checkpoints`: the last feed `seq` each plugin has handled.

use sqlx::{AnyConnection, Row};

/// The plugin's checkpoint; a plugin seen for the first time starts at `start`.
pub(crate) async fn get_or_init(conn: &mut AnyConnection, plugin: &str, start: i64) -> Result<i64, sqlx::Error> {
    sqlx::query("INSERT INTO fluid_plugin_checkpoints (plugin, seq) VALUES ($1, $2) ON CONFLICT (plugin) DO NOTHING")
        .bind(plugin)
        .bind(start)
        .execute(&mut *conn)
        .await?;
    sqlx::query("SELECT seq FROM fluid_plugin_checkpoints WHERE plugin = $1").bind(plugin).fetch_one(&mut *conn).await?.try_get("seq")
}

/// Moves the checkpoint forward only (a late writer cannot move it back).
pub(crate) async fn advance(conn: &mut AnyConnection, plugin: &str, seq: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE fluid_plugin_checkpoints SET seq = $2 WHERE plugin = $1 AND seq < $2")
        .bind(plugin)
        .bind(seq)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The lowest checkpoint among `plugins` (events below it may be pruned).
pub(crate) async fn min(conn: &mut AnyConnection) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query("SELECT MIN(seq) AS m FROM fluid_plugin_checkpoints").fetch_one(&mut *conn).await?.try_get("m")
}
