//! Where SQLite and PostgreSQL differ, in one place: every piece of SQL text or practice that
//! depends on the backend is a method of [`Backend`] here, and the rest of `store/` writes
//! the same statements for both.

use super::Backend;

impl Backend {
    /// Locks the rows a `SELECT` reads until the transaction ends, skipping rows another
    /// transaction holds: how hosts sharing PostgreSQL never claim the same run. SQLite has
    /// one writer, so nothing to add.
    pub fn skip_locked(self) -> &'static str {
        match self {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        }
    }

    /// Locks the rows a `SELECT` reads until the transaction ends (SQLite: one writer).
    pub fn for_update(self) -> &'static str {
        match self {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }

    /// Whether the store takes advisory locks (`locks`): PostgreSQL's many writers need them.
    pub fn takes_advisory_locks(self) -> bool {
        self == Backend::Postgres
    }

    /// The statement an append to the change feed starts with, so commits append in `seq`
    /// order (see `events`): PostgreSQL's lock of the feed. SQLite has one writer: none.
    pub fn feed_order_lock(self) -> Option<&'static str> {
        match self {
            Backend::Postgres => Some(super::locks::FEED),
            Backend::Sqlite => None,
        }
    }

    /// The statement an append to the change feed ends with, to wake the other hosts
    /// (delivered at commit on [`Backend::change_channel`]). SQLite: every writer is in
    /// this process, which wakes itself.
    pub fn announce_change(self) -> Option<&'static str> {
        match self {
            Backend::Postgres => Some("SELECT pg_notify('fluid', '')"),
            Backend::Sqlite => None,
        }
    }

    /// The channel a host listens on for the feed's changes made by other hosts (the one
    /// [`Backend::announce_change`] notifies). None where there are no other hosts' writers.
    pub fn change_channel(self) -> Option<&'static str> {
        match self {
            Backend::Postgres => Some("fluid"),
            Backend::Sqlite => None,
        }
    }

    /// Rows one `INSERT` carries. SQLite runs statements inline: one cached statement per
    /// row costs less than parsing a many-row text. PostgreSQL: many rows per round trip.
    pub fn rows_per_insert(self, many: usize) -> usize {
        match self {
            Backend::Postgres => many,
            Backend::Sqlite => 1,
        }
    }

    /// An auto-numbered primary key column.
    pub fn serial_key(self) -> &'static str {
        match self {
            Backend::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
            Backend::Postgres => "BIGSERIAL PRIMARY KEY",
        }
    }

    /// The SQL type of a plugin table's column of `kind` (int, float, text, boolean, json).
    pub fn column_type(self, kind: &str) -> &'static str {
        match (self, kind) {
            (Backend::Sqlite, "int" | "boolean") => "INTEGER",
            (Backend::Sqlite, "float") => "REAL",
            (Backend::Sqlite, _) => "TEXT",
            (Backend::Postgres, "int") => "BIGINT",
            (Backend::Postgres, "float") => "DOUBLE PRECISION",
            (Backend::Postgres, "boolean") => "BOOLEAN",
            (Backend::Postgres, "json") => "JSONB",
            (Backend::Postgres, _) => "TEXT",
        }
    }

    /// The placeholder for parameter `n` bound to a column of `kind`.
    pub fn placeholder(self, n: usize, kind: &str) -> String {
        match (self, kind) {
            (Backend::Postgres, "json") => format!("${n}::jsonb"),
            _ => format!("${n}"),
        }
    }

    /// A column as selected (`quoted` is its quoted name): JSON comes back as text on both.
    pub fn select_column(self, quoted: &str, kind: &str) -> String {
        match (self, kind) {
            (Backend::Postgres, "json") => format!("{quoted}::text"),
            _ => quoted.to_string(),
        }
    }

    /// The names of a table's indexes (`$1`: the table), as `name`.
    pub fn list_indexes(self) -> &'static str {
        match self {
            Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = $1",
            Backend::Postgres => "SELECT indexname::text AS name FROM pg_indexes WHERE tablename = $1",
        }
    }

    /// The bytes a column's value takes (`quoted` is its quoted name), 0 for NULL: what a
    /// plugin's storage quota counts.
    pub fn stored_bytes(self, quoted: &str) -> String {
        match self {
            Backend::Sqlite => format!("COALESCE(LENGTH({quoted}), 0)"),
            Backend::Postgres => format!("COALESCE(OCTET_LENGTH({quoted}::text), 0)"),
        }
    }

    /// Whether the plugins' tables live in a database of their own: SQLite gives them a
    /// file beside the queue's, so their writes never wait on the queue's one writer;
    /// PostgreSQL's many writers need no such thing.
    pub fn plugin_tables_apart(self) -> bool {
        self == Backend::Sqlite
    }

    /// Whether booleans are a type of their own; SQLite stores them as 0 and 1.
    pub fn has_booleans(self) -> bool {
        self == Backend::Postgres
    }

    /// The size in bytes of the database a connection is on, as `n`: PostgreSQL's
    /// database, or SQLite's file (its pages; the write-ahead log is folded back in and
    /// reused, so it is left out).
    pub fn database_size(self) -> &'static str {
        match self {
            Backend::Postgres => "SELECT pg_database_size(current_database()) AS n",
            Backend::Sqlite => "SELECT page_count * page_size AS n FROM pragma_page_count(), pragma_page_size()",
        }
    }
}
