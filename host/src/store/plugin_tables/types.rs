//! What plugin tables are made of, in the store's own words: the `storage` interface's
//! types, mirrored so the store needs nothing of the plugins' bindings (the plugins'
//! `storage` module converts between the two).

use std::time::Duration;

/// A typed value. `Json` holds JSON text.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Boolean(bool),
    Json(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Int,
    Float,
    Text,
    Boolean,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub kind: ColumnType,
    pub nullable: bool,
}

/// A table: its columns, primary key and extra indexes.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDef {
    pub name: String,
    pub columns: Vec<Column>,
    pub primary_key: Vec<String>,
    pub indexes: Vec<Vec<String>>,
}

/// A comparison of one column with values.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterOp {
    Eq(Value),
    Ne(Value),
    Lt(Value),
    Le(Value),
    Gt(Value),
    Ge(Value),
    OneOf(Vec<Value>),
    JsonContains(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub column: String,
    pub op: FilterOp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    pub column: String,
    pub descending: bool,
}

/// What to read: columns, filters (all must hold), order, a keyset cursor, a limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub columns: Vec<String>,
    pub filters: Vec<Filter>,
    pub order: Vec<OrderBy>,
    pub after: Option<Vec<Value>>,
    pub limit: Option<u32>,
}

/// Why a call on plugin tables failed. `Backend` never carries the database's own words.
#[derive(Debug, Clone, PartialEq)]
pub enum StorageError {
    InvalidName(String),
    NoSuchTable(String),
    SchemaMismatch(String),
    InvalidValue(String),
    QuotaExceeded(String),
    Backend(String),
}

/// The bounds one plugin's tables are held to (its limits in `fluid.toml`; the names in
/// messages are those keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableLimits {
    pub max_tables: u64,
    pub max_rows: u64,
    pub max_storage_mib: u64,
    pub max_read_mib: u64,
    pub statement_timeout_ms: u64,
}

impl TableLimits {
    pub fn max_storage_bytes(&self) -> u64 {
        self.max_storage_mib.saturating_mul(1 << 20)
    }
    pub fn max_read_bytes(&self) -> usize {
        (self.max_read_mib as usize).saturating_mul(1 << 20)
    }
    pub fn statement_timeout(&self) -> Duration {
        Duration::from_millis(self.statement_timeout_ms.max(1))
    }
}
