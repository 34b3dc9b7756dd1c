//! The durable store: queue, runs, change feed, schedules, hosts, plugin checkpoints and
//! plugin storage, on SQLite (embedded default) or PostgreSQL (many hosts, one queue).
//!
//! One schema and one state machine serve both backends through sqlx's `Any` driver; the
//! few places where SQL differs (DDL types, `FOR UPDATE SKIP LOCKED`, advisory locks, JSON
//! containment, waking other hosts) are methods of [`Backend`], in `dialect`. SQL lives per
//! table: `runs`, `events`, `tasks`, `schedules`, `hosts`, `checkpoints`. One exception:
//! on PostgreSQL the scheduler's cycle runs server-side, in one round trip (`pg_cycle` says
//! why).
//!
//! The modules are private: callers see [`Store`] (one method per transaction), the types
//! those methods take and give, the query layer ([`query`], [`Db`], [`Row`]) and plugins'
//! tables ([`plugin_tables`]). The tests' `store_conformance` suite holds every backend to
//! the same results through this face.
//!
//! SQLite runs in WAL mode with `synchronous=NORMAL` (no fsync per commit; a power cut can
//! lose the last commits, never corrupt the file). All SQLite writes go through one
//! connection, driven inline by rusqlite (`db` says why), so write transactions queue
//! instead of failing with SQLITE_BUSY, while reads use four connections of their own.
//! Plugins' tables are in a second file with its own writer (`plugin_file` says why).

mod api;
mod checkpoints;
mod cycle;
mod db;
mod dialect;
mod events;
mod hosts;
mod locks;
mod measure;
mod notify;
mod pg_cycle;
mod plugin_file;
pub mod plugin_tables;
mod runs;
mod schedules;
mod schema;
mod tasks;
mod tokens;

use anyhow::Context;
// The public face: the handle and its errors, the types its transactions take and give,
// and the query layer (tests hold both drivers to it; tools read the database with it).
pub use checkpoints::Forget;
pub use cycle::{Cycle, CycleOutcome};
pub use db::{Db, Query, Row, query, query_built};
pub use events::Event;
pub use hosts::HostRow;
pub use runs::{Begin, Cancel, ClaimRules, Claimed, Finish, Outcome, RunRow, ShareRoom};
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use std::path::Path;
use std::time::Duration;
pub use tasks::TaskStatus;
pub use tokens::TokenRow;

/// Which database holds the queue: the SQL that differs between the two is theirs
/// (`dialect`), the rest of the store is written once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One file, one host, one writer: the embedded default.
    Sqlite,
    /// One server shared by many hosts.
    Postgres,
}

impl Backend {
    /// Its name, as configuration and reports write it.
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
    /// The database behind it: callers that report or benchmark per backend read it.
    pub backend: Backend,
    /// Every write transaction.
    writer: Writer,
    /// Reads that need no transaction (HTTP listings, history, the feed).
    reader: Reader,
    /// The connection URL (PostgreSQL's LISTEN needs a connection of its own).
    pub(crate) url: String,
    /// How long each of its transactions takes, by operation.
    pub metrics: crate::metrics::StoreMetrics,
    /// Set by [`Store::close`]: SQLite's connections live as long as any clone, so new
    /// transactions are refused here instead, as sqlx refuses them on a closed pool.
    closed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Where write transactions run.
#[derive(Clone)]
enum Writer {
    /// PostgreSQL: the shared pool.
    Pool(AnyPool),
    /// SQLite: the one inline write connection.
    Lite(db::LiteWriter),
}

/// Where reads run.
#[derive(Clone)]
enum Reader {
    Pool(AnyPool),
    Lite(db::LiteReaders),
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
            let (path, create) = sqlite_path(url)?;
            Store::open_lite(&path, create, url.to_string()).with_context(|| format!("cannot open SQLite database {url}"))?
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .with_context(|| format!("cannot connect to PostgreSQL at {}", redact(url)))?;
            Store {
                backend: Backend::Postgres,
                writer: Writer::Pool(pool.clone()),
                reader: Reader::Pool(pool),
                url: url.to_string(),
                metrics: Default::default(),
                closed: Default::default(),
            }
        } else {
            anyhow::bail!("unsupported database URL {:?}: use sqlite://PATH or postgres://...", redact(url));
        };
        schema::migrate(&store).await.context("database migration failed")?;
        Ok(store)
    }

    /// A SQLite file's writer and readers (no migration); `url` names the file.
    fn open_lite(path: &str, create: bool, url: String) -> Result<Store, sqlx::Error> {
        // The writer creates the file and sets WAL mode before the readers open it.
        let writer = db::LiteWriter::open(path, create)?;
        let reader = db::LiteReaders::open(path, 4)?;
        Ok(Store {
            backend: Backend::Sqlite,
            writer: Writer::Lite(writer),
            reader: Reader::Lite(reader),
            url,
            metrics: Default::default(),
            closed: Default::default(),
        })
    }

    /// Begins a write transaction (on SQLite it takes the write lock at once, see
    /// `LiteWriter::begin`). Dropped without `commit`, it rolls back.
    pub async fn write_tx(&self) -> Result<Db, sqlx::Error> {
        self.open_or_closed()?;
        match &self.writer {
            Writer::Lite(w) => Ok(Db::Lite(w.begin().await?)),
            Writer::Pool(p) => Ok(Db::Tx(p.begin().await?)),
        }
    }

    /// A connection for reads that need no transaction.
    pub async fn read(&self) -> Result<Db, sqlx::Error> {
        self.open_or_closed()?;
        match &self.reader {
            Reader::Lite(r) => Ok(r.get().await),
            Reader::Pool(p) => Ok(Db::Pooled(p.acquire().await?)),
        }
    }

    fn open_or_closed(&self) -> Result<(), sqlx::Error> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) { Err(sqlx::Error::PoolClosed) } else { Ok(()) }
    }

    /// Refuses new transactions from now on and, on PostgreSQL, closes the pool (a host
    /// stopping: what is still running finishes, nothing new starts).
    pub async fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::Release);
        if let Writer::Pool(p) = &self.writer {
            p.close().await;
        }
        if let Reader::Pool(p) = &self.reader {
            p.close().await;
        }
    }
}

/// The file of a `sqlite://PATH[?mode=rwc|rw]` URL (percent-decoded, as sqlx reads it) and
/// whether it may be created (`mode=rwc`; without it a missing file is an error, not a new
/// empty queue). In-memory and read-only databases cannot hold a queue: refused.
fn sqlite_path(url: &str) -> anyhow::Result<(String, bool)> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    let (raw, params) = rest.split_once('?').unwrap_or((rest, ""));
    let mut create = false;
    for (k, v) in form_urlencoded::parse(params.as_bytes()) {
        match (k.as_ref(), v.as_ref()) {
            ("mode", "rwc") => create = true,
            ("mode", "rw") => create = false,
            ("mode", other) => anyhow::bail!("SQLite mode={other} cannot hold a queue ({url}): use mode=rwc or mode=rw"),
            (other, _) => anyhow::bail!("unsupported SQLite URL parameter {other:?} ({url}): only mode=rwc|rw is understood"),
        }
    }
    let bytes = raw.as_bytes();
    let mut path = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                path.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                path.push(b);
                i += 1;
            }
        }
    }
    let path = String::from_utf8(path).with_context(|| format!("SQLite path in {url} is not UTF-8"))?;
    anyhow::ensure!(
        !path.is_empty() && path != ":memory:",
        "in-memory SQLite is not supported ({url}): the writer and the readers need one file"
    );
    Ok((path, create))
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
    /// No run has this id.
    #[error("run {0} not found")]
    RunNotFound(String),
    /// The run is not in a state that allows the change (a fenced-out finish, a cancel of
    /// a finished run): nothing was written.
    #[error("run {id} is {state}: {why}")]
    Conflict {
        /// The run.
        id: String,
        /// Its state as stored.
        state: String,
        /// Why the change was refused.
        why: String,
    },
    /// The database failed; the operation may be retried.
    #[error("the database failed: {0}")]
    Db(DbError),
    /// Anything else (a migration, a file that cannot be opened).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// The database failed (unreachable, busy, full, a statement refused), in its own words:
/// for the host's log. Callers know only that it failed, not which driver said so.
#[derive(Debug, Clone)]
pub struct DbError(String);

impl DbError {
    /// The failure in the database's words (a caller relaying one it saw elsewhere).
    pub fn new(message: impl Into<String>) -> DbError {
        DbError(message.into())
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DbError {}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        StoreError::Db(DbError(e.to_string()))
    }
}
