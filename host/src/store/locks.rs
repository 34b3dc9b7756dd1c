//! PostgreSQL advisory locks, every key in one place. Each is the two-key form
//! `pg_advisory_xact_lock(class, key)`: the first key names what is locked, so the lock of
//! a task (its name hashed) can never be one of the host's own, whatever the name. Each
//! is taken inside a transaction and held to its end. SQLite needs none: one writer.
//!
//! The SQL is written by macros, so the server-side cycle (`pg_cycle`) builds its text
//! from the same words as the statements here.

/// Creating the tables: two hosts starting at once must not race on `CREATE TABLE`.
macro_rules! schema_lock {
    () => {
        "pg_advisory_xact_lock(1, 0)"
    };
}

/// Appending to the change feed: commits append in `seq` order (see `events`). Taken after
/// every row lock of the transaction.
macro_rules! feed_lock {
    () => {
        "pg_advisory_xact_lock(2, 0)"
    };
}

/// Creating a plugin's table and its indexes (its storage).
macro_rules! plugin_tables_lock {
    () => {
        "pg_advisory_xact_lock(3, 0)"
    };
}

/// Counting a task's runs in flight against its `max_concurrency`: one host at a time per
/// task, taken in name order. `$name` is the SQL expression of the task's name.
macro_rules! task_lock {
    ($name:literal) => {
        concat!("pg_advisory_xact_lock(4, hashtext(", $name, "))")
    };
}

// The cycle's PL/pgSQL takes these two.
pub(crate) use {feed_lock, task_lock};

/// `SELECT` of each lock, for the statements the host sends itself.
pub const SCHEMA: &str = concat!("SELECT ", schema_lock!());
pub const FEED: &str = concat!("SELECT ", feed_lock!());
pub const PLUGIN_TABLES: &str = concat!("SELECT ", plugin_tables_lock!());
/// `$1`: the task's name.
pub const TASK: &str = concat!("SELECT ", task_lock!("$1"));
