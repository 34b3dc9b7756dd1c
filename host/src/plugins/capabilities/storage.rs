//! The `storage` import: a plugin's calls, in its own namespace, on the store's plugin
//! tables (`store::plugin_tables`, which owns their SQL and quotas), and every conversion
//! between the interface's types and the store's.

use crate::plugins::engine::policy::Limits;
use crate::plugins::instance::state::PluginState;
use crate::plugins::wit::bindings::storage_if as wit;
use crate::plugins::wit::bindings::storage_if::{Filter, Query, StorageError, TableDef, Value};
use crate::store::plugin_tables as tables;

impl From<&Limits> for tables::TableLimits {
    fn from(l: &Limits) -> tables::TableLimits {
        tables::TableLimits {
            max_tables: l.max_tables,
            max_rows: l.max_rows,
            max_storage_mib: l.max_storage_mib,
            max_read_mib: l.max_read_mib,
            statement_timeout_ms: l.statement_timeout_ms,
        }
    }
}

fn value_in(v: Value) -> tables::Value {
    match v {
        Value::Null => tables::Value::Null,
        Value::Int(i) => tables::Value::Int(i),
        Value::Float(f) => tables::Value::Float(f),
        Value::Text(t) => tables::Value::Text(t),
        Value::Boolean(b) => tables::Value::Boolean(b),
        Value::Json(j) => tables::Value::Json(j),
    }
}

fn value_out(v: tables::Value) -> Value {
    match v {
        tables::Value::Null => Value::Null,
        tables::Value::Int(i) => Value::Int(i),
        tables::Value::Float(f) => Value::Float(f),
        tables::Value::Text(t) => Value::Text(t),
        tables::Value::Boolean(b) => Value::Boolean(b),
        tables::Value::Json(j) => Value::Json(j),
    }
}

fn rows_in(rows: Vec<Vec<Value>>) -> Vec<Vec<tables::Value>> {
    rows.into_iter().map(|r| r.into_iter().map(value_in).collect()).collect()
}

fn column_type_in(k: wit::ColumnType) -> tables::ColumnType {
    match k {
        wit::ColumnType::Int => tables::ColumnType::Int,
        wit::ColumnType::Float => tables::ColumnType::Float,
        wit::ColumnType::Text => tables::ColumnType::Text,
        wit::ColumnType::Boolean => tables::ColumnType::Boolean,
        wit::ColumnType::Json => tables::ColumnType::Json,
    }
}

fn table_def_in(d: TableDef) -> tables::TableDef {
    tables::TableDef {
        name: d.name,
        columns: d
            .columns
            .into_iter()
            .map(|c| tables::Column { name: c.name, kind: column_type_in(c.kind), nullable: c.nullable })
            .collect(),
        primary_key: d.primary_key,
        indexes: d.indexes,
    }
}

fn filter_in(f: Filter) -> tables::Filter {
    use tables::FilterOp as T;
    use wit::FilterOp as W;
    let op = match f.op {
        W::Eq(v) => T::Eq(value_in(v)),
        W::Ne(v) => T::Ne(value_in(v)),
        W::Lt(v) => T::Lt(value_in(v)),
        W::Le(v) => T::Le(value_in(v)),
        W::Gt(v) => T::Gt(value_in(v)),
        W::Ge(v) => T::Ge(value_in(v)),
        W::OneOf(vs) => T::OneOf(vs.into_iter().map(value_in).collect()),
        W::JsonContains(j) => T::JsonContains(j),
    };
    tables::Filter { column: f.column, op }
}

fn filters_in(fs: Vec<Filter>) -> Vec<tables::Filter> {
    fs.into_iter().map(filter_in).collect()
}

fn query_in(q: Query) -> tables::Query {
    tables::Query {
        columns: q.columns,
        filters: filters_in(q.filters),
        order: q.order.into_iter().map(|o| tables::OrderBy { column: o.column, descending: o.descending }).collect(),
        after: q.after.map(|a| a.into_iter().map(value_in).collect()),
        limit: q.limit,
    }
}

fn error_out(e: tables::StorageError) -> StorageError {
    use tables::StorageError as T;
    match e {
        T::InvalidName(m) => StorageError::InvalidName(m),
        T::NoSuchTable(m) => StorageError::NoSuchTable(m),
        T::SchemaMismatch(m) => StorageError::SchemaMismatch(m),
        T::InvalidValue(m) => StorageError::InvalidValue(m),
        T::QuotaExceeded(m) => StorageError::QuotaExceeded(m),
        T::Backend(m) => StorageError::Backend(m),
    }
}

impl wit::Host for PluginState {
    async fn ensure_table(&mut self, def: TableDef) -> wasmtime::Result<Result<(), StorageError>> {
        let (out, waited) = tables::with_waits(self.storage.ensure_table(&self.name, table_def_in(def), &self.table_limits())).await;
        self.storage_waited += waited;
        Ok(self.noted(out))
    }

    async fn upsert(&mut self, table: String, columns: Vec<String>, rows: Vec<Vec<Value>>) -> wasmtime::Result<Result<u64, StorageError>> {
        let (out, waited) =
            tables::with_waits(self.storage.upsert(&self.name, &table, columns, rows_in(rows), None, &self.table_limits())).await;
        self.storage_waited += waited;
        Ok(self.noted(out))
    }

    async fn upsert_newer(
        &mut self,
        table: String,
        columns: Vec<String>,
        rows: Vec<Vec<Value>>,
        version: String,
    ) -> wasmtime::Result<Result<u64, StorageError>> {
        let (out, waited) =
            tables::with_waits(self.storage.upsert(&self.name, &table, columns, rows_in(rows), Some(&version), &self.table_limits())).await;
        self.storage_waited += waited;
        Ok(self.noted(out))
    }

    async fn select(&mut self, table: String, q: Query) -> wasmtime::Result<Result<Vec<Vec<Value>>, StorageError>> {
        let (out, waited) = tables::with_waits(self.storage.select(&self.name, &table, query_in(q), &self.table_limits())).await;
        self.storage_waited += waited;
        if let Err(tables::StorageError::InvalidValue(m)) = &out
            && m.contains("max_read_mib")
        {
            self.sup.limit_hit("max_read_mib", m);
        }
        Ok(self.noted(out).map(|rows| rows.into_iter().map(|r| r.into_iter().map(value_out).collect()).collect()))
    }

    async fn delete(&mut self, table: String, filters: Vec<Filter>) -> wasmtime::Result<Result<u64, StorageError>> {
        let (out, waited) = tables::with_waits(self.storage.delete(&self.name, &table, filters_in(filters), &self.table_limits())).await;
        self.storage_waited += waited;
        Ok(self.noted(out))
    }

    async fn count(&mut self, table: String, filters: Vec<Filter>) -> wasmtime::Result<Result<u64, StorageError>> {
        let (out, waited) = tables::with_waits(self.storage.count(&self.name, &table, filters_in(filters), &self.table_limits())).await;
        self.storage_waited += waited;
        Ok(self.noted(out))
    }
}

impl PluginState {
    fn table_limits(&self) -> tables::TableLimits {
        (&self.sup.policy.limits).into()
    }

    /// Passes a storage result on in the interface's words, noting when the database was
    /// the cause of its failure.
    fn noted<T>(&mut self, out: Result<T, tables::StorageError>) -> Result<T, StorageError> {
        if let Err(e) = &out
            && tables::not_its_fault(e)
        {
            self.not_its_fault = true;
        }
        out.map_err(error_out)
    }
}
