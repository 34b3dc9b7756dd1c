//! The durable store: queue, runs, change feed, schedules, hosts, plugin checkpoints and
//! plugin storage, on SQLite (embedded default) or PostgreSQL (many hosts, one queue).
//!
//! One schema and one state machine serve both backends through sqlx's `Any` driver; the
//! few places where SQL differs (DDL types, `FOR UPDATE SKIP LOCKED`, advisory locks, JSON
//! containment) branch on [`Backend`]. SQL lives per table: [`runs`], [`events`],
//! [`tasks`], [`schedules`], [`hosts`], [`checkpoints`].
//!
//! SQLite runs in WAL mode with `synchronous=NORMAL` (no fsync per commit; a power cut can
//! lose the last commits, never corrupt the file). All SQLite writes go through one
//! connection, so write transactions queue instead of failing with SQLITE_BUSY, while
//! reads use a pool of their own.

pub mod api;
pub mod checkpoints;
pub mod events;
pub mod hosts;
pub mod notify;
pub mod runs;
pub mod schedules;
pub mod schema;
pub mod tasks;

use anyhow::Context;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub backend: Backend,
    /// Every write transaction. One connection on SQLite.
    pub(crate) writer: AnyPool,
    /// Reads that need no transaction (HTTP listings, history).
    pub(crate) reader: AnyPool,
    /// The connection URL (PostgreSQL's LISTEN needs a connection of its own).
    pub(crate) url: String,
    /// How long each transaction of [`api`] takes, by operation.
    pub metrics: crate::metrics::StoreMetrics,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.backend).finish()
    }
}

impl Store {
    /// Opens (creating if needed) the embedded store in `data_dir/fluid.db`.
    pub async fn open_sqlite(data_dir: &Path) -> anyhow::Result<Store> {
        std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create data folder {}", data_dir.display()))?;
        let file = data_dir.join("fluid.db");
        Store::connect(&format!("sqlite://{}?mode=rwc", file.display())).await
    }

    /// Connects to `sqlite://...` or `postgres://...` and runs the migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let store = if url.starts_with("sqlite:") {
            let opts = || {
                AnyPoolOptions::new().after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000;").await?;
                        Ok(())
                    })
                })
            };
            let writer = opts().max_connections(1).connect(url).await;
            let writer = writer.with_context(|| format!("cannot open SQLite database {url}"))?;
            let reader = opts().max_connections(4).connect(url).await?;
            Store { backend: Backend::Sqlite, writer, reader, url: url.to_string(), metrics: Default::default() }
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .with_context(|| format!("cannot connect to PostgreSQL at {}", redact(url)))?;
            Store { backend: Backend::Postgres, writer: pool.clone(), reader: pool, url: url.to_string(), metrics: Default::default() }
        } else {
            anyhow::bail!("unsupported database URL {:?}: use sqlite://PATH or postgres://...", redact(url));
        };
        schema::migrate(&store).await.context("database migration failed")?;
        Ok(store)
    }

    /// Begins a write transaction. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`): a deferred transaction that reads before it writes cannot wait for the
    /// lock when another connection (another host on the same file) wrote in between, and
    /// fails at once with SQLITE_BUSY; an immediate one waits for the lock (busy_timeout).
    pub async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.writer.begin().await,
        }
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Errors the store reports to callers in words they can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("run {0} not found")]
    RunNotFound(String),
    #[error("run {id} is {state}: {why}")]
    Conflict { id: String, state: String, why: String },
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}
