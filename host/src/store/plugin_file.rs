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
//! in both files, finished at the next open, never in neither.

use super::{Backend, Reader, Store, Writer, db, schema, sqlite_path};
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
        if self.backend == Backend::Postgres {
            return Ok(self.clone());
        }
        let (queue_file, _) = sqlite_path(&self.url)?;
        let file = plugin_file_path(&queue_file);
        let writer = db::LiteWriter::open(&file, true).with_context(|| format!("cannot open the plugins' SQLite file {file}"))?;
        let reader = db::LiteReaders::open(&file, 4).with_context(|| format!("cannot open the plugins' SQLite file {file}"))?;
        let store = Store {
            backend: Backend::Sqlite,
            writer: Writer::Lite(writer),
            reader: Reader::Lite(reader),
            url: format!("sqlite://{}?mode=rwc", file.replace('%', "%25").replace('?', "%3F")),
            metrics: Default::default(),
            closed: Default::default(),
        };
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
    use rusqlite::{Connection, TransactionBehavior, params};
    let mut conn = Connection::open(plugin_file)?;
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
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let copied: i64 =
            tx.query_row("SELECT COUNT(*) FROM main.fluid_plugin_tables WHERE plugin = ?1 AND name = ?2", params![plugin, name], |r| {
                r.get(0)
            })?;
        if copied == 0 {
            // The table's own DDL, then its indexes': unqualified, they create in `main`.
            let ddl: Vec<String> = {
                let mut stmt = tx
                    .prepare("SELECT sql FROM queue.sqlite_master WHERE tbl_name = ?1 AND sql IS NOT NULL ORDER BY type = 'index', name")?;
                stmt.query_map(params![physical], |r| r.get(0))?.collect::<Result<_, _>>()?
            };
            for sql in &ddl {
                tx.execute_batch(sql).with_context(|| format!("cannot recreate {physical} in {plugin_file}"))?;
            }
            tx.execute(&format!("INSERT INTO main.{quoted} SELECT * FROM queue.{quoted}"), [])?;
            tx.execute(
                "INSERT INTO main.fluid_plugin_tables SELECT * FROM queue.fluid_plugin_tables WHERE plugin = ?1 AND name = ?2",
                params![plugin, name],
            )?;
        }
        tx.commit()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(&format!("DROP TABLE IF EXISTS queue.{quoted}"), [])?;
        tx.execute("DELETE FROM queue.fluid_plugin_tables WHERE plugin = ?1 AND name = ?2", params![plugin, name])?;
        tx.commit()?;
    }
    Ok(left.len())
}
