//! What the operator allows one plugin: its [`Limits`] and capability [`Grants`], where it
//! starts in the change feed, and the config passed to its `register` (a [`Policy`]).
//!
//! Plain data, read from fluid.toml by `registry::config`: the sandbox enforces the memory
//! cap and grants, supervision the failure and CPU bounds, the capabilities the storage
//! and queueing bounds. Defined down here so every layer reads the same policy without
//! knowing the file it came from.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What a plugin may use. Units are in the names, as in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Linear memory one instance may grow to.
    pub memory_mib: u64,
    /// Wall-clock time of one call into the plugin (epoch interruption), host calls included.
    pub call_timeout_ms: u64,
    /// Tables the plugin may create.
    pub max_tables: u64,
    /// Rows across all its tables.
    pub max_rows: u64,
    /// Bytes across all its tables, approximated as the sum of the values' sizes.
    pub max_storage_mib: u64,
    /// Largest `args-json` of a `call`, and largest `on-events` batch.
    pub max_args_kib: u64,
    /// Largest result of a `call`.
    pub max_result_kib: u64,
    /// Time one storage statement (an upsert: its whole transaction) may run: one writer
    /// serves every plugin on SQLite, and a pool every host on PostgreSQL, so no plugin may
    /// hold either for long; past it the call gets `backend`.
    pub statement_timeout_ms: u64,
    /// Largest component file it may be loaded from.
    pub max_wasm_mib: u64,
    /// Time its file may take to compile; a slower one is refused.
    pub compile_timeout_s: u64,
    /// Most bytes one storage `select` may read; a larger read is refused before it is held.
    pub max_read_mib: u64,
    /// Failures (traps, `on-events` errors) within the window that quarantine the plugin; 0 never does.
    pub quarantine_after: u32,
    /// The window `quarantine_after` counts failures in.
    pub quarantine_window_s: u64,
    /// CPU time its own work (deliveries, `register`) may use within `cpu_window_s`;
    /// more is a failure. 0: no budget.
    pub cpu_budget_ms: u64,
    /// The window `cpu_budget_ms` counts CPU time in.
    pub cpu_window_s: u64,
    /// Shortest `every` period a task component's schedule may declare.
    pub min_schedule_ms: u64,
    /// Longest timeout a task component's task may declare.
    pub max_task_timeout_ms: u64,
    /// Runs of each of a task component's tasks in flight at once across hosts, at most
    /// (it lowers what the task declares); 0: as declared.
    pub max_concurrency: u32,
    /// Workers of one host a task component's runs may hold at once, all its tasks
    /// together; past it they wait in the queue while other tasks' runs go ahead.
    /// 0: half of the host's workers (at least one).
    pub max_workers: u32,
    /// Runs of a task component's own tasks waiting in the queue, at most: past it its
    /// `queue-run` of them is refused (a backlog its worker share cannot start would be
    /// looked past by every claim).
    pub max_queued: u64,
    /// Runs it may queue (`queue-run`) per second, on average, across its instances...
    pub queue_per_s: u64,
    /// ...and at once after a quiet spell (the bucket's size).
    pub queue_burst: u64,
    /// KiB of params of the runs it queues, per second on average...
    pub queue_kib_per_s: u64,
    /// ...and at once after a quiet spell.
    pub queue_burst_kib: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            memory_mib: 64,
            call_timeout_ms: 10_000,
            max_tables: 32,
            max_rows: 10_000_000,
            max_storage_mib: 1024,
            max_args_kib: 2048,
            max_result_kib: 8192,
            max_read_mib: 16,
            statement_timeout_ms: 2000,
            max_wasm_mib: 64,
            compile_timeout_s: 120,
            quarantine_after: 5,
            quarantine_window_s: 60,
            cpu_budget_ms: 30_000,
            cpu_window_s: 60,
            min_schedule_ms: 1000,
            max_task_timeout_ms: 3_600_000,
            max_concurrency: 0,
            max_workers: 0,
            max_queued: 10_000,
            queue_per_s: 100,
            queue_burst: 1000,
            queue_kib_per_s: 1024,
            queue_burst_kib: 16 * 1024,
        }
    }
}

impl Limits {
    /// `memory_mib` in bytes.
    pub fn memory_bytes(&self) -> usize {
        (self.memory_mib as usize).saturating_mul(1 << 20)
    }
    /// `call_timeout_ms`, at least 1 ms.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms.max(1))
    }
    /// `max_storage_mib` in bytes.
    pub fn max_storage_bytes(&self) -> u64 {
        self.max_storage_mib.saturating_mul(1 << 20)
    }
    /// `max_args_kib` in bytes.
    pub fn max_args_bytes(&self) -> usize {
        (self.max_args_kib as usize).saturating_mul(1024)
    }
    /// `statement_timeout_ms`, at least 1 ms.
    pub fn statement_timeout(&self) -> Duration {
        Duration::from_millis(self.statement_timeout_ms.max(1))
    }
    /// `max_wasm_mib` in bytes.
    pub fn max_wasm_bytes(&self) -> u64 {
        self.max_wasm_mib.saturating_mul(1 << 20)
    }
    /// `compile_timeout_s`, at least 1 s.
    pub fn compile_timeout(&self) -> Duration {
        Duration::from_secs(self.compile_timeout_s.max(1))
    }
    /// `max_read_mib` in bytes.
    pub fn max_read_bytes(&self) -> usize {
        (self.max_read_mib as usize).saturating_mul(1 << 20)
    }
    /// `max_result_kib` in bytes.
    pub fn max_result_bytes(&self) -> usize {
        (self.max_result_kib as usize).saturating_mul(1024)
    }
    /// `quarantine_window_s`.
    pub fn quarantine_window(&self) -> Duration {
        Duration::from_secs(self.quarantine_window_s)
    }
    /// `min_schedule_ms`.
    pub fn min_schedule(&self) -> Duration {
        Duration::from_millis(self.min_schedule_ms)
    }
    /// `cpu_window_s`, at least 1 s.
    pub fn cpu_window(&self) -> Duration {
        Duration::from_secs(self.cpu_window_s.max(1))
    }
}

/// A folder of the host made visible to the plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    /// On the host; relative paths are relative to the folder of fluid.toml.
    pub host: PathBuf,
    /// Where the plugin sees it, e.g. `/exports`.
    pub guest: String,
    /// Read-write when true; read-only by default.
    #[serde(default)]
    pub write: bool,
}

/// Capabilities beyond the `storage` and `host` imports. Empty: nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Host folders it sees (read-only unless `write`).
    #[serde(default)]
    pub dirs: Vec<DirGrant>,
    /// Names of host environment variables the plugin sees (with the host's values).
    #[serde(default)]
    pub env: Vec<String>,
    /// `ip:port` or `ip:*` the plugin may connect (TCP) or send datagrams (UDP) to.
    #[serde(default)]
    pub network: Vec<String>,
    /// Whether name lookups (`wasi:sockets/ip-name-lookup`) are allowed.
    #[serde(default)]
    pub dns: bool,
    /// Whether its HTTP routes are also served at the paths as declared (`/task-history`),
    /// not only under `/plugins/NAME/routes`. Unset: only for the bundled `db` and `stats`
    /// (the files this binary carries, byte for byte), whose paths are aio-fluid's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_routes: Option<bool>,
    /// Whether a task component may tag its tasks `skip_db` (aio-fluid's tag that keeps a
    /// task's runs out of the history): an untrusted component may not hide its own runs.
    #[serde(default)]
    pub skip_history: bool,
    /// Whether it may queue runs of another task component's tasks. Without it, a guest
    /// queues the host's tasks and its own component's only: runs of another component
    /// would spend that component's `max_queued` and CPU budget, and so stop its own work.
    #[serde(default)]
    pub queue_others: bool,
}

/// The tag that keeps a task's runs out of the db plugin's history (its default
/// `skip_db_tag`, aio-fluid's name).
pub const SKIP_HISTORY_TAG: &str = "skip_db";

/// Plugins served at their declared paths unless fluid.toml says otherwise.
pub const ROOT_ROUTES_BY_DEFAULT: [&str; 2] = ["db", "stats"];

impl Grants {
    /// Whether plugin `name` is served at its declared paths (see `root_routes`); `bundled`:
    /// whether its file is the copy this binary carries. Without a word in fluid.toml only
    /// the bundled db and stats are: a third-party file named `stats.wasm` would otherwise
    /// answer at the root beside (or before) the db plugin's paths.
    pub fn root_routes(&self, name: &str, bundled: bool) -> bool {
        self.root_routes.unwrap_or_else(|| bundled && ROOT_ROUTES_BY_DEFAULT.contains(&name))
    }

    /// Whether `addr` matches a `network` entry.
    pub fn allows(&self, addr: SocketAddr) -> bool {
        self.network.iter().filter_map(|g| parse_net(g)).any(|(ip, port)| ip == addr.ip() && port.is_none_or(|p| p == addr.port()))
    }
}

/// `ip:port` or `ip:*` (any port); IPv6 in brackets.
pub(crate) fn parse_net(s: &str) -> Option<(std::net::IpAddr, Option<u16>)> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some((a.ip(), Some(a.port())));
    }
    let ip = s.strip_suffix(":*")?.trim_matches(['[', ']']).parse().ok()?;
    Some((ip, None))
}

/// Where a plugin seen for the first time starts in the change feed. Its checkpoint is
/// kept from then on (across restarts and new versions of the file) until it is forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedStart {
    /// At the head: it receives what happens from when it is first loaded. A plugin
    /// dropped into a busy host is not handed the past (nor quarantined by it).
    Now,
    /// At the oldest event still retained: it also receives the recent past.
    Oldest,
}

/// Plugins that start at the oldest retained event unless fluid.toml says otherwise: the
/// bundled history and statistics, which are meant to see every run.
pub const START_OLDEST_BY_DEFAULT: [&str; 2] = ["db", "stats"];

/// Everything the host applies to one plugin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    /// What it may use.
    pub limits: Limits,
    /// What it may reach beyond its own imports.
    pub grants: Grants,
    /// The JSON object passed to `register`, when fluid.toml gives one.
    #[serde(skip)]
    pub config: Option<serde_json::Value>,
    /// Where it starts in the change feed the first time it is seen.
    pub start: FeedStart,
}
