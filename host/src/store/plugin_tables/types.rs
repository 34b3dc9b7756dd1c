//! What plugin tables are made of, in the store's own words: the `storage` interface's
//! types, mirrored so the store needs nothing of the plugins' bindings (the plugins'
//! `storage` module converts between the two).

use std::time::Duration;

/// A typed value. `Json` holds JSON text.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// No value.
    Null,
    /// A 64-bit integer.
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// UTF-8 text.
    Text(String),
    /// True or false.
    Boolean(bool),
    /// JSON, as text.
    Json(String),
}

/// The type a column is declared with; each backend stores it in its own SQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// 64-bit integers.
    Int,
    /// 64-bit floats.
    Float,
    /// Text.
    Text,
    /// Booleans.
    Boolean,
    /// JSON documents (PostgreSQL: `JSONB`).
    Json,
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Its name: `[a-z][a-z0-9_]*`, at most 48 characters.
    pub name: String,
    /// Its type.
    pub kind: ColumnType,
    /// Whether it may hold null.
    pub nullable: bool,
}

/// A table: its columns, primary key and extra indexes.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDef {
    /// Its name in the plugin's namespace: `[a-z][a-z0-9_]*`, at most 24 characters.
    pub name: String,
    /// Its columns (1 to 64).
    pub columns: Vec<Column>,
    /// The columns of its primary key (1 to 8).
    pub primary_key: Vec<String>,
    /// Extra indexes, each a list of columns.
    pub indexes: Vec<Vec<String>>,
}

/// A comparison of one column with values.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterOp {
    /// Equal (to null: is null).
    Eq(Value),
    /// Not equal (to null: is not null).
    Ne(Value),
    /// Less than.
    Lt(Value),
    /// Less than or equal.
    Le(Value),
    /// Greater than.
    Gt(Value),
    /// Greater than or equal.
    Ge(Value),
    /// Equal to one of these (none: matches nothing).
    OneOf(Vec<Value>),
    /// A JSON column holding every key of this JSON object with an equal value.
    JsonContains(String),
}

/// One condition of a query.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// The column compared.
    pub column: String,
    /// How.
    pub op: FilterOp,
}

/// One column of a query's order.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    /// The column.
    pub column: String,
    /// Greatest first.
    pub descending: bool,
}

/// What to read: columns, filters (all must hold), order, a keyset cursor, a limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The columns read (none: every column).
    pub columns: Vec<String>,
    /// Conditions every row read meets.
    pub filters: Vec<Filter>,
    /// The order of the rows.
    pub order: Vec<OrderBy>,
    /// Rows after this position in `order` (one value per order column): the next page.
    pub after: Option<Vec<Value>>,
    /// Most rows read (at most, and by default, `MAX_SELECT_ROWS`).
    pub limit: Option<u32>,
}

/// Why a call on plugin tables failed. `Backend` never carries the database's own words.
#[derive(Debug, Clone, PartialEq)]
pub enum StorageError {
    /// A table or column name that is not allowed, or no such column.
    InvalidName(String),
    /// The table was never created.
    NoSuchTable(String),
    /// The table exists with other columns or another key.
    SchemaMismatch(String),
    /// A value, a definition or a query outside what is allowed.
    InvalidValue(String),
    /// Over the plugin's tables, rows or bytes quota: nothing was written.
    QuotaExceeded(String),
    /// The database failed (in words for the plugin, never the database's own).
    Backend(String),
}

/// The bounds one plugin's tables are held to (its limits in `fluid.toml`; the names in
/// messages are those keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableLimits {
    /// Most tables the plugin may have.
    pub max_tables: u64,
    /// Most rows across all its tables.
    pub max_rows: u64,
    /// Most data across all its tables, in MiB (the values' lengths, roughly).
    pub max_storage_mib: u64,
    /// Most data one read returns, in MiB.
    pub max_read_mib: u64,
    /// Longest one call may hold the database, in milliseconds.
    pub statement_timeout_ms: u64,
}

impl TableLimits {
    /// `max_storage_mib` in bytes.
    pub fn max_storage_bytes(&self) -> u64 {
        self.max_storage_mib.saturating_mul(1 << 20)
    }
    /// `max_read_mib` in bytes.
    pub fn max_read_bytes(&self) -> usize {
        (self.max_read_mib as usize).saturating_mul(1 << 20)
    }
    /// `statement_timeout_ms`, at least a millisecond.
    pub fn statement_timeout(&self) -> Duration {
        Duration::from_millis(self.statement_timeout_ms.max(1))
    }
}
