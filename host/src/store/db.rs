//! The store's connection layer: one small query API over two drivers.
//!
//! PostgreSQL goes through sqlx's `Any` pool. SQLite goes through rusqlite, inline on the
//! calling task: writes on one connection behind an async mutex, reads on four of their own.
//! Why: sqlx's SQLite driver runs every statement on a worker thread of its own, so each
//! statement costs two thread hand-offs. On a 2-core VM that was ~100 µs per statement and
//! 47% of the CPU in futex and context switches (perf, `fluid bench`), while the statement
//! itself takes a few µs. Inline, a whole write transaction (`BEGIN IMMEDIATE` … `COMMIT`)
//! costs what SQLite costs, with statements prepared once and cached on the connection.
//!
//! The mutex is also SQLite's single-writer queue: this host's write transactions wait their
//! turn instead of failing with SQLITE_BUSY; another process writing the same file is waited
//! for by SQLite's `busy_timeout`. Both drivers use the same SQL text: parameters are `$N`
//! (SQLite reads `$N` as a named parameter, bound here by its number), and rows come back as
//! [`Row`]s of owned [`Cell`]s either way, so the per-table modules do not know the driver.
//!
//! Inline means a statement holds its tokio worker while it runs. That is the point for the
//! short statements of the queue; a statement that may scan (a plugin's query, a quota
//! measurement, a feed prune) is marked [`Query::heavy`] and runs under `block_in_place`, so
//! the worker's other tasks (timers, heartbeats, plugin deadlines) move to another thread.

use sqlx::any::{AnyTypeInfoKind, AnyValueRef};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AssertSqlSafe, Column, Row as _, ValueRef as _};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// Prepared statements kept per SQLite write connection (plugin storage makes many texts).
const STATEMENT_CACHE: usize = 256;
/// Longest statement text kept in the statement caches.
const MAX_CACHED_SQL: usize = 8 * 1024;

/// A prepared statement, from the cache or for one use.
enum Prepared<'c> {
    Cached(rusqlite::CachedStatement<'c>),
    Once(rusqlite::Statement<'c>),
}

impl<'c> std::ops::Deref for Prepared<'c> {
    type Target = rusqlite::Statement<'c>;
    fn deref(&self) -> &Self::Target {
        match self {
            Prepared::Cached(s) => s,
            Prepared::Once(s) => s,
        }
    }
}

impl std::ops::DerefMut for Prepared<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            Prepared::Cached(s) => s,
            Prepared::Once(s) => s,
        }
    }
}

/// A value to bind. Nulls carry their type: PostgreSQL needs one for every parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
    Bool(Option<bool>),
}

macro_rules! arg_from {
    ($($t:ty => |$v:ident| $e:expr),* $(,)?) => {
        $(impl From<$t> for Arg {
            fn from($v: $t) -> Arg {
                $e
            }
        })*
    };
}

arg_from! {
    i64 => |v| Arg::Int(Some(v)),
    Option<i64> => |v| Arg::Int(v),
    f64 => |v| Arg::Real(Some(v)),
    bool => |v| Arg::Bool(Some(v)),
    String => |v| Arg::Text(Some(v)),
    &String => |v| Arg::Text(Some(v.clone())),
    &str => |v| Arg::Text(Some(v.to_string())),
    Option<String> => |v| Arg::Text(v),
    &Option<String> => |v| Arg::Text(v.clone()),
    Option<&str> => |v| Arg::Text(v.map(str::to_string)),
}

/// One value of a result row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bool(bool),
    Blob(Vec<u8>),
}

impl Cell {
    /// What it weighs held in memory, roughly: its bytes for text and blobs, 8 otherwise.
    pub fn weight(&self) -> usize {
        match self {
            Cell::Text(t) => t.len() + 8,
            Cell::Blob(b) => b.len() + 8,
            _ => 8,
        }
    }
}

/// A type a [`Cell`] converts to.
pub trait FromCell: Sized {
    fn from_cell(c: &Cell) -> Option<Self>;
}

impl FromCell for i64 {
    fn from_cell(c: &Cell) -> Option<i64> {
        match c {
            Cell::Int(i) => Some(*i),
            Cell::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }
}

impl FromCell for f64 {
    fn from_cell(c: &Cell) -> Option<f64> {
        match c {
            Cell::Real(f) => Some(*f),
            Cell::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
}

impl FromCell for bool {
    fn from_cell(c: &Cell) -> Option<bool> {
        match c {
            Cell::Bool(b) => Some(*b),
            Cell::Int(i) => Some(*i != 0),
            _ => None,
        }
    }
}

impl FromCell for String {
    fn from_cell(c: &Cell) -> Option<String> {
        match c {
            Cell::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl<T: FromCell> FromCell for Option<T> {
    fn from_cell(c: &Cell) -> Option<Option<T>> {
        match c {
            Cell::Null => Some(None),
            c => T::from_cell(c).map(Some),
        }
    }
}

/// A column by name or by position.
pub trait ColumnRef: std::fmt::Display + Copy {
    fn position(self, names: &[String]) -> Option<usize>;
}

impl ColumnRef for &str {
    fn position(self, names: &[String]) -> Option<usize> {
        names.iter().position(|n| n == self)
    }
}

impl ColumnRef for usize {
    fn position(self, names: &[String]) -> Option<usize> {
        (self < names.len()).then_some(self)
    }
}

/// One result row, owned.
#[derive(Debug, Clone)]
pub struct Row {
    names: Arc<[String]>,
    cells: Vec<Cell>,
}

impl Row {
    /// The value of `column` (a name or a position) as `T`; an error when there is no such
    /// column or its value is not a `T` (an int is never read as text).
    pub fn try_get<T: FromCell, C: ColumnRef>(&self, column: C) -> Result<T, sqlx::Error> {
        let i = column.position(&self.names).ok_or_else(|| sqlx::Error::ColumnNotFound(column.to_string()))?;
        T::from_cell(&self.cells[i]).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: column.to_string(),
            source: format!("cannot read {:?} as {}", self.cells[i], std::any::type_name::<T>()).into(),
        })
    }
}

/// A statement and its arguments.
#[must_use]
pub struct Query {
    sql: Cow<'static, str>,
    args: Vec<Arg>,
    heavy: bool,
    /// On SQLite, the statement is interrupted past this (see [`Query::time_limit`]).
    time_limit: Option<std::time::Duration>,
}

/// A statement written in the source.
pub fn query(sql: &'static str) -> Query {
    Query { sql: Cow::Borrowed(sql), args: Vec::new(), heavy: false, time_limit: None }
}

/// A statement built at run time. Only names fluid checked (identifiers, numbers it
/// formatted) may be spliced into `sql`; values are always bound.
pub fn query_built(sql: String) -> Query {
    Query { sql: Cow::Owned(sql), args: Vec::new(), heavy: false, time_limit: None }
}

impl Query {
    /// Binds the next parameter (`$1`, `$2`, … in order).
    pub fn bind(mut self, v: impl Into<Arg>) -> Query {
        self.args.push(v.into());
        self
    }

    /// Binds the next parameter, in place (a statement built in a loop).
    pub fn push(&mut self, v: Arg) {
        self.args.push(v);
    }

    /// This statement may scan many rows: on SQLite, let the runtime move this worker's
    /// other tasks elsewhere while it runs.
    pub fn heavy(mut self) -> Query {
        self.heavy = true;
        self
    }

    /// Interrupts the statement if it runs longer than `limit`: SQLite fails it with an
    /// "interrupted" error, PostgreSQL with `statement_timeout` (set for the transaction it
    /// runs in, so the setting never outlives it on a pooled connection). For statements
    /// others wrote (plugin storage): on SQLite one writer serves every plugin, and on
    /// PostgreSQL every host shares a pool of connections, so no statement may hold either
    /// for long.
    pub fn time_limit(mut self, limit: std::time::Duration) -> Query {
        self.time_limit = Some(limit);
        self
    }

    /// Runs the statement; how many rows it changed.
    pub async fn execute(self, db: &mut Db) -> Result<u64, sqlx::Error> {
        match db {
            Db::Lite(tx) => inline(self.heavy, self.time_limit, || tx.conn.execute(&self.sql, &self.args)).map_err(lite_err),
            Db::LiteRead(c) => inline(self.heavy, self.time_limit, || c.execute(&self.sql, &self.args)).map_err(lite_err),
            Db::Pooled(c) => match self.time_limit {
                None => Ok(self.sqlx().execute(&mut **c).await?.rows_affected()),
                Some(limit) => {
                    let mut tx = sqlx::Connection::begin(&mut **c).await?;
                    set_local_timeout(&mut tx, limit).await?;
                    let n = self.sqlx().execute(&mut *tx).await?.rows_affected();
                    tx.commit().await?;
                    Ok(n)
                }
            },
            Db::Tx(t) => {
                if let Some(limit) = self.time_limit {
                    set_local_timeout(t, limit).await?;
                }
                Ok(self.sqlx().execute(&mut **t).await?.rows_affected())
            }
        }
    }

    /// Runs the statement; every row it returns.
    pub async fn fetch_all(self, db: &mut Db) -> Result<Vec<Row>, sqlx::Error> {
        match db {
            Db::Lite(tx) => inline(self.heavy, self.time_limit, || tx.conn.rows(&self.sql, &self.args)).map_err(lite_err),
            Db::LiteRead(c) => inline(self.heavy, self.time_limit, || c.rows(&self.sql, &self.args)).map_err(lite_err),
            Db::Pooled(c) => match self.time_limit {
                None => any_rows(self.sqlx().fetch_all(&mut **c).await?),
                Some(limit) => {
                    let mut tx = sqlx::Connection::begin(&mut **c).await?;
                    set_local_timeout(&mut tx, limit).await?;
                    let rows = any_rows(self.sqlx().fetch_all(&mut *tx).await?)?;
                    tx.commit().await?;
                    Ok(rows)
                }
            },
            Db::Tx(t) => {
                if let Some(limit) = self.time_limit {
                    set_local_timeout(t, limit).await?;
                }
                any_rows(self.sqlx().fetch_all(&mut **t).await?)
            }
        }
    }

    /// Like [`Query::fetch_all`], but stops reading as soon as the rows' cells pass
    /// `max_bytes` (text and blob lengths, 8 for other values): None then. What a caller
    /// may read is bounded before it is held, not after.
    pub async fn fetch_all_within(self, db: &mut Db, max_bytes: usize) -> Result<Option<Vec<Row>>, sqlx::Error> {
        self.fetch_within(db, max_bytes, false).await
    }

    /// The first rows whose cells stay within `max_bytes`, and always the first row: reads
    /// in pages sized by bytes, not by a row count alone.
    pub async fn fetch_prefix_within(self, db: &mut Db, max_bytes: usize) -> Result<Vec<Row>, sqlx::Error> {
        Ok(self.fetch_within(db, max_bytes, true).await?.unwrap_or_default())
    }

    async fn fetch_within(self, db: &mut Db, max_bytes: usize, prefix: bool) -> Result<Option<Vec<Row>>, sqlx::Error> {
        match db {
            Db::Lite(tx) => {
                inline(self.heavy, self.time_limit, || tx.conn.rows_within(&self.sql, &self.args, max_bytes, prefix)).map_err(lite_err)
            }
            Db::LiteRead(c) => {
                inline(self.heavy, self.time_limit, || c.rows_within(&self.sql, &self.args, max_bytes, prefix)).map_err(lite_err)
            }
            Db::Pooled(c) => match self.time_limit {
                None => any_rows_within(self.sqlx().fetch(&mut **c), max_bytes, prefix).await,
                Some(limit) => {
                    let mut tx = sqlx::Connection::begin(&mut **c).await?;
                    set_local_timeout(&mut tx, limit).await?;
                    let rows = any_rows_within(self.sqlx().fetch(&mut *tx), max_bytes, prefix).await?;
                    // A read: rolled back rather than committed, the same thing, and it ends
                    // a result that was left unread at the bound at once.
                    tx.rollback().await?;
                    Ok(rows)
                }
            },
            Db::Tx(t) => {
                if let Some(limit) = self.time_limit {
                    set_local_timeout(t, limit).await?;
                }
                any_rows_within(self.sqlx().fetch(&mut **t), max_bytes, prefix).await
            }
        }
    }

    /// Runs the statement; its first row, if any.
    pub async fn fetch_optional(self, db: &mut Db) -> Result<Option<Row>, sqlx::Error> {
        Ok(self.fetch_all(db).await?.into_iter().next())
    }

    /// Runs the statement; its first row, or `RowNotFound`.
    pub async fn fetch_one(self, db: &mut Db) -> Result<Row, sqlx::Error> {
        self.fetch_optional(db).await?.ok_or(sqlx::Error::RowNotFound)
    }

    fn sqlx(self) -> sqlx::query::Query<'static, Any, sqlx::any::AnyArguments> {
        // A long text (a plugin's query with many filters) is prepared for this use only,
        // as on SQLite: each connection's cache holds a hundred statements whatever their
        // size, and a plugin varying long texts would make every pooled connection hold many.
        let persistent = self.sql.len() <= MAX_CACHED_SQL;
        let mut q = sqlx::query(AssertSqlSafe(self.sql)).persistent(persistent);
        for a in self.args {
            q = match a {
                Arg::Int(v) => q.bind(v),
                Arg::Real(v) => q.bind(v),
                Arg::Text(v) => q.bind(v),
                Arg::Bool(v) => q.bind(v),
            };
        }
        q
    }
}

/// PostgreSQL: the statements that follow in this transaction are cancelled past `limit`.
async fn set_local_timeout(tx: &mut sqlx::Transaction<'_, Any>, limit: std::time::Duration) -> Result<(), sqlx::Error> {
    // A number fluid formats, never a caller's text.
    let sql = format!("SET LOCAL statement_timeout = {}", limit.as_millis().clamp(1, i32::MAX as u128));
    sqlx::query(AssertSqlSafe(sql)).execute(&mut **tx).await.map(drop)
}

thread_local! {
    /// When the SQLite statement running on this thread is to be interrupted, if ever.
    static DEADLINE: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
}

/// SQLite's progress handler: interrupts the statement once this thread's deadline passed.
fn past_deadline() -> bool {
    DEADLINE.with(|d| d.get().is_some_and(|t| std::time::Instant::now() >= t))
}

/// Runs a SQLite statement on this thread, within `limit` if given; a heavy one under
/// `block_in_place` where the runtime allows it (a multi-thread runtime).
fn inline<R>(heavy: bool, limit: Option<std::time::Duration>, f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let run = || {
        DEADLINE.with(|d| d.set(limit.map(|l| std::time::Instant::now() + l)));
        let out = f();
        DEADLINE.with(|d| d.set(None));
        out
    };
    if heavy && Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread) {
        tokio::task::block_in_place(run)
    } else {
        run()
    }
}

fn any_rows(rows: Vec<sqlx::any::AnyRow>) -> Result<Vec<Row>, sqlx::Error> {
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let names: Arc<[String]> = first.columns().iter().map(|c| c.name().to_string()).collect();
    rows.iter()
        .map(|r| {
            let cells = (0..names.len()).map(|i| any_cell(r.try_get_raw(i)?, r, i)).collect::<Result<_, sqlx::Error>>()?;
            Ok(Row { names: names.clone(), cells })
        })
        .collect()
}

/// Rows until their cells pass `max_bytes`: then None, or with `prefix` the rows so far
/// (at least the first).
async fn any_rows_within(
    mut rows: impl futures_util::Stream<Item = Result<sqlx::any::AnyRow, sqlx::Error>> + Unpin,
    max_bytes: usize,
    prefix: bool,
) -> Result<Option<Vec<Row>>, sqlx::Error> {
    use futures_util::TryStreamExt;
    let (mut out, mut bytes, mut names): (Vec<Row>, usize, Option<Arc<[String]>>) = (Vec::new(), 0, None);
    while let Some(r) = rows.try_next().await? {
        let names = names.get_or_insert_with(|| r.columns().iter().map(|c| c.name().to_string()).collect()).clone();
        let cells: Vec<Cell> = (0..names.len()).map(|i| any_cell(r.try_get_raw(i)?, &r, i)).collect::<Result<_, sqlx::Error>>()?;
        bytes += cells.iter().map(Cell::weight).sum::<usize>();
        if bytes > max_bytes {
            if !prefix {
                return Ok(None);
            }
            if out.is_empty() {
                out.push(Row { names, cells });
            }
            return Ok(Some(out));
        }
        out.push(Row { names, cells });
    }
    Ok(Some(out))
}

fn any_cell(v: AnyValueRef<'_>, r: &sqlx::any::AnyRow, i: usize) -> Result<Cell, sqlx::Error> {
    if v.is_null() {
        return Ok(Cell::Null);
    }
    let kind = v.type_info().kind();
    Ok(match kind {
        AnyTypeInfoKind::Bool => Cell::Bool(r.try_get(i)?),
        AnyTypeInfoKind::SmallInt | AnyTypeInfoKind::Integer | AnyTypeInfoKind::BigInt => Cell::Int(r.try_get(i)?),
        AnyTypeInfoKind::Real | AnyTypeInfoKind::Double => Cell::Real(r.try_get(i)?),
        AnyTypeInfoKind::Text => Cell::Text(r.try_get(i)?),
        AnyTypeInfoKind::Blob => Cell::Blob(r.try_get(i)?),
        AnyTypeInfoKind::Null => Cell::Null,
    })
}

/// A connection to run queries on: a pooled read connection, a sqlx transaction, a SQLite
/// read connection, or a SQLite write transaction on the inline connection.
pub enum Db {
    /// PostgreSQL: a pooled connection, each statement its own transaction.
    Pooled(PoolConnection<Any>),
    /// PostgreSQL: a transaction.
    Tx(sqlx::Transaction<'static, Any>),
    /// SQLite: a read connection, each statement its own transaction.
    LiteRead(OwnedMutexGuard<LiteConn>),
    /// SQLite: the write transaction on the one write connection.
    Lite(LiteTx),
}

impl Db {
    /// Commits a transaction (nothing to do on a connection without one).
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Db::Lite(tx) => tx.commit().map_err(lite_err),
            Db::Tx(t) => t.commit().await,
            Db::Pooled(_) | Db::LiteRead(_) => Ok(()),
        }
    }

    /// Rolls a transaction back (nothing to do on a connection without one).
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Db::Lite(tx) => tx.rollback().map_err(lite_err),
            Db::Tx(t) => t.rollback().await,
            Db::Pooled(_) | Db::LiteRead(_) => Ok(()),
        }
    }
}

/// The SQLite write connection, shared by every clone of the store.
#[derive(Clone)]
pub struct LiteWriter(Arc<Mutex<LiteConn>>);

/// The connection, and for each statement text which argument each parameter takes.
/// (Asking SQLite for a parameter's name is a linear search: for a statement with 3,000
/// parameters, naming them all on every run was 12% of the CPU in `fluid bench`.)
pub struct LiteConn {
    conn: rusqlite::Connection,
    params: HashMap<String, Arc<[usize]>>,
}

impl LiteConn {
    fn open(path: &str, create: bool) -> Result<LiteConn, sqlx::Error> {
        use rusqlite::OpenFlags;
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let conn = rusqlite::Connection::open_with_flags(path, flags).map_err(lite_err)?;
        // A checkpoint every 10,000 WAL pages (40 MB), not SQLite's 1,000: the pages a busy
        // queue rewrites (the feed's tail, the queue's indexes) are copied once per
        // checkpoint whatever the WAL holds, so at 1,000 checkpoints were 7% of `fluid bench`.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=10000; PRAGMA wal_autocheckpoint=10000;",
        )
        .map_err(lite_err)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // A cached statement is planned once. Without this, the bundled SQLite (built with
        // STAT4) re-plans a statement whenever a bound value might change its plan, such as
        // the claim's `execute_after <= $1`: 8% of the CPU, for the same plan every time.
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(lite_err)?;
        // Statements with a time limit (`Query::time_limit`) are interrupted past it.
        conn.progress_handler(1000, Some(past_deadline)).map_err(lite_err)?;
        Ok(LiteConn { conn, params: HashMap::new() })
    }
}

impl LiteWriter {
    /// Opens the database file, creating it if `create`.
    pub fn open(path: &str, create: bool) -> Result<LiteWriter, sqlx::Error> {
        Ok(LiteWriter(Arc::new(Mutex::new(LiteConn::open(path, create)?))))
    }

    /// Waits for this host's turn, then takes SQLite's write lock (`BEGIN IMMEDIATE`: a
    /// deferred transaction that reads first could not wait for a lock another process took
    /// meanwhile, and would fail with SQLITE_BUSY at its first write).
    pub async fn begin(&self) -> Result<LiteTx, sqlx::Error> {
        let mut conn = self.0.clone().lock_owned().await;
        conn.run("BEGIN IMMEDIATE").map_err(lite_err)?;
        Ok(LiteTx { conn, open: true })
    }
}

/// SQLite read connections (WAL: they read the last commit while the writer writes). Each
/// statement runs in its own implicit transaction, as on a sqlx pool.
#[derive(Clone)]
pub struct LiteReaders(Arc<[Arc<Mutex<LiteConn>>]>);

impl LiteReaders {
    pub fn open(path: &str, n: usize) -> Result<LiteReaders, sqlx::Error> {
        let conns = (0..n.max(1)).map(|_| LiteConn::open(path, false).map(|c| Arc::new(Mutex::new(c)))).collect::<Result<Vec<_>, _>>()?;
        Ok(LiteReaders(conns.into()))
    }

    /// A free connection, or the next one to be freed.
    pub async fn get(&self) -> Db {
        for c in self.0.iter() {
            if let Ok(g) = c.clone().try_lock_owned() {
                return Db::LiteRead(g);
            }
        }
        let i = fastrand::usize(..self.0.len());
        Db::LiteRead(self.0[i].clone().lock_owned().await)
    }
}

/// An open SQLite write transaction; rolled back if dropped before `commit`.
pub struct LiteTx {
    conn: OwnedMutexGuard<LiteConn>,
    open: bool,
}

impl LiteConn {
    fn prepare(&mut self, sql: &str, args: &[Arg]) -> rusqlite::Result<Prepared<'_>> {
        // A long text (a plugin's query with many filters) is prepared for this use only:
        // the caches hold statements by count, so long ones would make them hold a lot.
        let cache = sql.len() <= MAX_CACHED_SQL;
        let mut stmt = if cache { Prepared::Cached(self.conn.prepare_cached(sql)?) } else { Prepared::Once(self.conn.prepare(sql)?) };
        let map = match self.params.get(sql) {
            Some(m) => m.clone(),
            None => {
                // `$N` is the N-th argument wherever it appears; anonymous `?` go in order.
                let m: Arc<[usize]> = (1..=stmt.parameter_count())
                    .map(|i| stmt.parameter_name(i).and_then(|name| name.strip_prefix('$')).and_then(|n| n.parse().ok()).unwrap_or(i))
                    .collect();
                if cache {
                    if self.params.len() >= STATEMENT_CACHE * 4 {
                        self.params.clear();
                    }
                    self.params.insert(sql.to_string(), m.clone());
                }
                m
            }
        };
        for (i, &n) in map.iter().enumerate() {
            let arg = args.get(n.wrapping_sub(1)).ok_or(rusqlite::Error::InvalidParameterCount(n, args.len()))?;
            match arg {
                Arg::Int(v) => stmt.raw_bind_parameter(i + 1, v)?,
                Arg::Real(v) => stmt.raw_bind_parameter(i + 1, v)?,
                Arg::Text(v) => stmt.raw_bind_parameter(i + 1, v)?,
                Arg::Bool(v) => stmt.raw_bind_parameter(i + 1, v.map(i64::from))?,
            }
        }
        Ok(stmt)
    }

    fn run(&mut self, sql: &'static str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.raw_execute().map(drop)
    }

    fn execute(&mut self, sql: &str, args: &[Arg]) -> rusqlite::Result<u64> {
        let mut stmt = self.prepare(sql, args)?;
        Ok(stmt.raw_execute()? as u64)
    }

    fn rows(&mut self, sql: &str, args: &[Arg]) -> rusqlite::Result<Vec<Row>> {
        Ok(self.rows_within(sql, args, usize::MAX, false)?.unwrap_or_default())
    }

    fn rows_within(&mut self, sql: &str, args: &[Arg], max_bytes: usize, prefix: bool) -> rusqlite::Result<Option<Vec<Row>>> {
        use rusqlite::types::ValueRef;
        let mut stmt = self.prepare(sql, args)?;
        let names: Arc<[String]> = stmt.column_names().into_iter().map(str::to_string).collect();
        let mut rows = stmt.raw_query();
        let (mut out, mut bytes) = (Vec::new(), 0usize);
        while let Some(r) = rows.next()? {
            let cells = (0..names.len())
                .map(|i| {
                    Ok(match r.get_ref(i)? {
                        ValueRef::Null => Cell::Null,
                        ValueRef::Integer(v) => Cell::Int(v),
                        ValueRef::Real(v) => Cell::Real(v),
                        ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                        ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
                    })
                })
                .collect::<rusqlite::Result<Vec<Cell>>>()?;
            bytes += cells.iter().map(Cell::weight).sum::<usize>();
            if bytes > max_bytes {
                if !prefix {
                    return Ok(None);
                }
                if out.is_empty() {
                    out.push(Row { names: names.clone(), cells });
                }
                return Ok(Some(out));
            }
            out.push(Row { names: names.clone(), cells });
        }
        Ok(Some(out))
    }
}

impl LiteTx {
    fn commit(mut self) -> rusqlite::Result<()> {
        self.open = false;
        if let Err(e) = self.conn.run("COMMIT") {
            // A failed COMMIT can leave the transaction open: end it, so the next one can begin.
            if !self.conn.conn.is_autocommit() {
                let _ = self.conn.run("ROLLBACK");
            }
            return Err(e);
        }
        Ok(())
    }

    fn rollback(mut self) -> rusqlite::Result<()> {
        self.open = false;
        self.conn.run("ROLLBACK")
    }
}

impl Drop for LiteTx {
    fn drop(&mut self) {
        if self.open && !self.conn.conn.is_autocommit() {
            let _ = self.conn.run("ROLLBACK");
        }
    }
}

/// A rusqlite error as sqlx reports database errors, so callers handle one error type.
#[derive(Debug)]
struct LiteError {
    message: String,
    /// SQLite's extended result code, when the error came from SQLite.
    code: Option<i32>,
}

impl std::fmt::Display for LiteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LiteError {}

impl sqlx::error::DatabaseError for LiteError {
    fn message(&self) -> &str {
        &self.message
    }
    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }
    fn code(&self) -> Option<Cow<'_, str>> {
        self.code.map(|c| Cow::Owned(c.to_string()))
    }
    fn kind(&self) -> sqlx::error::ErrorKind {
        use rusqlite::ffi;
        use sqlx::error::ErrorKind;
        match self.code {
            Some(ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY) => ErrorKind::UniqueViolation,
            Some(ffi::SQLITE_CONSTRAINT_FOREIGNKEY) => ErrorKind::ForeignKeyViolation,
            Some(ffi::SQLITE_CONSTRAINT_NOTNULL) => ErrorKind::NotNullViolation,
            Some(ffi::SQLITE_CONSTRAINT_CHECK) => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

fn lite_err(e: rusqlite::Error) -> sqlx::Error {
    let code = e.sqlite_error().map(|s| s.extended_code);
    sqlx::Error::Database(Box::new(LiteError { message: e.to_string(), code }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A long statement (a plugin's query with many filters) runs, but neither cache keeps
    /// it: they hold statements by count, so long ones would make them hold a lot.
    #[test]
    fn long_statements_run_but_are_not_cached() {
        let dir = std::env::temp_dir().join(format!("fluid-db-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.db");
        let mut c = LiteConn::open(path.to_str().unwrap(), true).unwrap();
        let n = 3_000;
        let long = format!(
            "SELECT COUNT(*) AS total FROM (SELECT 1 AS x) WHERE x IN ({})",
            (1..=n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
        );
        assert!(long.len() > MAX_CACHED_SQL);
        let args: Vec<Arg> = (0..n).map(|_| Arg::Int(Some(1))).collect();
        for _ in 0..2 {
            let rows = c.rows(&long, &args).unwrap();
            assert_eq!(rows[0].try_get::<i64, _>("total").unwrap(), 1);
        }
        assert!(c.params.is_empty(), "the long text is not kept");
        c.rows("SELECT $1 AS one", &[Arg::Int(Some(1))]).unwrap();
        assert_eq!(c.params.len(), 1, "a short one is");
        drop(c);
        std::fs::remove_dir_all(&dir).ok();
    }
}
