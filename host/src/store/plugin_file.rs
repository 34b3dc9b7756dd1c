//! Where plugins' own tables live (the `storage` import).
//!
//! On PostgreSQL: in the queue's database, whose transactions write side by side.
//!
//! On SQLite: in a second file beside the queue's (`fluid.db` → `fluid.plugins.db`), with a
//! writer and readers of its own. SQLite lets one transaction at a time write a file, and a
//! history plugin writes every state change of every run: in the queue's file, its upserts
//! held the scheduler's commits back. In `fluid bench` (SQLite, 8 workers, with the db
//! plugin) a file of their own took the throughput from about 10,500 to 12,600 runs/s.
//! The cost: the two files are two databases, so a plugin's write never shares a
//! transaction with the queue's (none did: plugins see the queue through the feed).
//!
//! Tables an earlier fluid kept in the queue's file move on the first open, table by
//! table, in two steps that each commit in one file: copied into the plugins' file (unless
//! already there), then dropped from the queue's. A crash between the two leaves a table
//! in both files, finished at the next open, never in neither. A table found in both files
//! whose queue copy holds rows the plugins' copy lacks (an older fluid ran on these files
//! since the move) is never dropped: it is renamed `..._unmoved_<unix time>` in the queue's
//! file, and a warning names it.

use super::{Store, schema, sqlite_path};
use anyhow::Context;

/// The plugins' file beside the queue's: `x.db` → `x.plugins.db`, else `x` → `x.plugins.db`.
pub fn plugin_file_path(queue_file: &str) -> String {
    match queue_file.strip_suffix(".db") {
        Some(stem) => format!("{stem}.plugins.db"),
        None => format!("{queue_file}.plugins.db"),
    }
}

impl Store {
    /// The store of the plugins' tables: this one on PostgreSQL; on SQLite, the file beside
    /// this one's, created if missing, with tables left in the queue's file moved to it.
    pub async fn plugin_store(&self) -> anyhow::Result<Store> {
        if !self.backend.plugin_tables_apart() {
            return Ok(self.clone());
        }
        let (queue_file, _) = sqlite_path(&self.url)?;
        let file = plugin_file_path(&queue_file);
        let url = format!("sqlite://{}?mode=rwc", file.replace('%', "%25").replace('?', "%3F"));
        let store = Store::open_lite(&file, true, url).with_context(|| format!("cannot open the plugins' SQLite file {file}"))?;
        schema::migrate_plugin_file(&store).await.context("plugins' file migration failed")?;
        let moved = tokio::task::spawn_blocking(move || move_tables(&queue_file, &file)).await??;
        if moved > 0 {
            tracing::info!(tables = moved, "moved plugin tables from the queue's SQLite file to the plugins' file");
        }
        Ok(store)
    }
}

/// Moves every plugin table still in the queue's file into the plugins' file; how many.
fn move_tables(queue_file: &str, plugin_file: &str) -> anyhow::Result<usize> {
    use rusqlite::OpenFlags;
    use rusqlite::{Connection, params};
    // The flags the store opens files with (no URI names), so both open the same files.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(plugin_file, flags)?;
    conn.execute_batch("PRAGMA busy_timeout=10000;")?;
    conn.execute("ATTACH DATABASE ?1 AS queue", params![queue_file])?;
    let has_schemas: i64 =
        conn.query_row("SELECT COUNT(*) FROM queue.sqlite_master WHERE type = 'table' AND name = 'fluid_plugin_tables'", [], |r| r.get(0))?;
    if has_schemas == 0 {
        return Ok(0);
    }
    let left: Vec<(String, String, String)> = {
        let mut stmt = conn.prepare("SELECT plugin, name, physical FROM queue.fluid_plugin_tables ORDER BY plugin, name")?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?
    };
    for (plugin, name, physical) in &left {
        // `physical` was checked as an identifier when the table was made; quoted anyway.
        let quoted = format!("\"{}\"", physical.replace('"', "\"\""));
        // Deferred, then a write to the plugins' file only: `BEGIN IMMEDIATE` would take the
        // queue's write lock too, for as long as the copy lasts.
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM main.fluid_plugin_tables WHERE 0", [])?;
        let copied: i64 =
            tx.query_row("SELECT COUNT(*) FROM main.fluid_plugin_tables WHERE plugin = ?1 AND name = ?2", params![plugin, name], |r| {
                r.get(0)
            })?;
        // The table's own DDL, then its indexes': unqualified, they create in `main`.
        let ddl: Vec<String> = {
            let mut stmt =
                tx.prepare("SELECT sql FROM queue.sqlite_master WHERE tbl_name = ?1 AND sql IS NOT NULL ORDER BY type = 'index', name")?;
            stmt.query_map(params![physical], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        let mut keep_as = None;
        if ddl.is_empty() {
            // Registered, but the table itself is gone: nothing to move.
            tracing::warn!(plugin, table = name, physical, "plugin table registered in the queue's file but missing; registration dropped");
        } else if copied == 0 {
            for sql in &ddl {
                tx.execute_batch(sql).with_context(|| format!("cannot recreate {physical} in {plugin_file}"))?;
            }
            tx.execute(&format!("INSERT INTO main.{quoted} SELECT * FROM queue.{quoted}"), [])?;
            tx.execute(
                "INSERT INTO main.fluid_plugin_tables SELECT * FROM queue.fluid_plugin_tables WHERE plugin = ?1 AND name = ?2",
                params![plugin, name],
            )?;
        } else {
            // In both files: the queue's copy may go only if the plugins' has all it holds.
            let only_in_queue: i64 = tx.query_row(
                &format!("SELECT COUNT(*) FROM (SELECT * FROM queue.{quoted} EXCEPT SELECT * FROM main.{quoted})"),
                [],
                |r| r.get(0),
            )?;
            if only_in_queue > 0 {
                let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                keep_as = Some((format!("{physical}_unmoved_{unix}"), only_in_queue));
            }
        }
        tx.commit()?;
        let tx = conn.transaction()?;
        match &keep_as {
            None => tx.execute(&format!("DROP TABLE IF EXISTS queue.{quoted}"), [])?,
            Some((kept, rows)) => {
                tracing::warn!(
                    plugin, table = name, kept = %kept, rows,
                    "a plugin table is in both SQLite files and the queue's copy holds rows the plugins' lacks: it stays in the queue's file, renamed"
                );
                tx.execute(&format!("ALTER TABLE queue.{quoted} RENAME TO \"{}\"", kept.replace('"', "\"\"")), [])?
            }
        };
        tx.execute("DELETE FROM queue.fluid_plugin_tables WHERE plugin = ?1 AND name = ?2", params![plugin, name])?;
        tx.commit()?;
    }
    Ok(left.len())
}
