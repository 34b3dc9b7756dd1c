//! The host's tables. Migrations are idempotent `CREATE ... IF NOT EXISTS` statements run
//! at every start, in order; a released statement is never edited, only followed by new ones.

use super::{Backend, Store};
use super::{query, query_built};

/// Statements with `{serial}` standing for the backend's auto-increment primary key.
const MIGRATIONS: &[&str] = &[
    // Runs: the queue and the current state of every run.
    "CREATE TABLE IF NOT EXISTS fluid_runs (
        id TEXT PRIMARY KEY,
        task TEXT NOT NULL,
        tags TEXT NOT NULL,
        priority BIGINT NOT NULL,
        state TEXT NOT NULL,
        params TEXT NOT NULL,
        queued_at BIGINT,
        start_at BIGINT,
        end_at BIGINT,
        execute_after BIGINT NOT NULL,
        retry_attempt BIGINT NOT NULL DEFAULT 0,
        rate_limit_attempt BIGINT NOT NULL DEFAULT 0,
        from_run_id TEXT NOT NULL DEFAULT '',
        root_run_id TEXT NOT NULL DEFAULT '',
        error TEXT,
        owner TEXT,
        lease BIGINT NOT NULL DEFAULT 0,
        cancel_requested BIGINT NOT NULL DEFAULT 0
    )",
    "CREATE INDEX IF NOT EXISTS fluid_runs_ready ON fluid_runs (priority, execute_after, id) WHERE state = 'queued'",
    "CREATE INDEX IF NOT EXISTS fluid_runs_running ON fluid_runs (task, owner) WHERE state = 'running'",
    // Finished runs by end, for the run pruner.
    "CREATE INDEX IF NOT EXISTS fluid_runs_ended ON fluid_runs (end_at) WHERE state NOT IN ('queued', 'running')",
    // The change feed: one row per committed state change, in commit order.
    "CREATE TABLE IF NOT EXISTS fluid_events (
        seq {serial},
        run_id TEXT NOT NULL,
        state TEXT NOT NULL,
        snapshot TEXT NOT NULL
    )",
    // Per-task switches and last-run summary (aio-fluid's TaskInfoUpdate).
    "CREATE TABLE IF NOT EXISTS fluid_task_state (
        name TEXT PRIMARY KEY,
        enabled BIGINT NOT NULL DEFAULT 1,
        last_run_end BIGINT,
        last_run_duration_us BIGINT,
        last_run_state TEXT
    )",
    // Next due time of each schedule; advanced by compare-and-set so a due time fires once.
    "CREATE TABLE IF NOT EXISTS fluid_schedules (
        task TEXT PRIMARY KEY,
        next_due BIGINT NOT NULL
    )",
    // Live hosts and their heartbeats.
    "CREATE TABLE IF NOT EXISTS fluid_hosts (
        id TEXT PRIMARY KEY,
        started_at BIGINT NOT NULL,
        heartbeat_at BIGINT NOT NULL,
        workers BIGINT NOT NULL
    )",
    // How far each plugin has consumed the change feed.
    // `owner` holds the delivery lease until `lease_until`: one host at a time delivers
    // a plugin's events.
    "CREATE TABLE IF NOT EXISTS fluid_plugin_checkpoints (
        plugin TEXT PRIMARY KEY,
        seq BIGINT NOT NULL,
        owner TEXT,
        lease_until BIGINT NOT NULL DEFAULT 0
    )",
    PLUGIN_TABLES,
    // Which task component (its file's stem) defines each task name, on every host sharing
    // the database: another component's task of that name is refused, so no component can
    // take over the queued runs of another's task.
    "CREATE TABLE IF NOT EXISTS fluid_task_owners (
        name TEXT PRIMARY KEY,
        module TEXT NOT NULL
    )",
    // API tokens: only a hash of each is kept (the token is shown once, when created),
    // in the database so every host sharing it knows them.
    "CREATE TABLE IF NOT EXISTS fluid_tokens (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created_at BIGINT NOT NULL,
        revoked_at BIGINT
    )",
];

/// Schemas of the tables plugins create through the `storage` import. On SQLite they live
/// in the plugins' file (see `plugin_file`); the queue's file keeps an empty one.
const PLUGIN_TABLES: &str = "CREATE TABLE IF NOT EXISTS fluid_plugin_tables (
    plugin TEXT NOT NULL,
    name TEXT NOT NULL,
    physical TEXT NOT NULL,
    columns TEXT NOT NULL,
    primary_key TEXT NOT NULL,
    PRIMARY KEY (plugin, name)
)";

/// The plugins' SQLite file holds only the plugins' tables and their schemas.
pub async fn migrate_plugin_file(store: &Store) -> anyhow::Result<()> {
    let mut tx = store.write_tx().await?;
    query(PLUGIN_TABLES).execute(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn migrate(store: &Store) -> anyhow::Result<()> {
    let serial = store.backend.serial_key();
    let mut tx = store.write_tx().await?;
    if store.backend.takes_advisory_locks() {
        // Two hosts starting at once must not race on CREATE TABLE.
        query(super::locks::SCHEMA).execute(&mut tx).await?;
    }
    for m in MIGRATIONS {
        let sql = m.replace("{serial}", serial);
        query_built(sql).execute(&mut tx).await?;
    }
    if store.backend == Backend::Postgres {
        // Where missing only: replacing a function needs its owner, and a released version
        // never changes (see `pg_cycle`).
        let present: i64 = query("SELECT COUNT(*) AS n FROM pg_proc WHERE proname = $1")
            .bind(super::pg_cycle::FUNCTION_NAME)
            .fetch_one(&mut tx)
            .await?
            .try_get("n")?;
        if present == 0 {
            query(super::pg_cycle::FUNCTION).execute(&mut tx).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}
