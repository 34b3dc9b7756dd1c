//! `fluid.toml`: the operator's word on each plugin's limits, capability grants and config.
//!
//! ```toml
//! [limits]                      # defaults for every plugin (each key optional)
//! memory_mib = 64
//! call_timeout_ms = 10000
//!
//! [plugins.db.limits]           # one plugin, by name: overrides [limits]
//! max_rows = 50000000
//! [plugins.db.config]           # passed to its `register` (instead of db.json)
//! table_name = "fluid_tasks"
//!
//! [plugins.exporter]
//! start = "oldest"              # its first events: "now" (the default) or "oldest" retained
//! [plugins.exporter.grants]     # nothing is granted unless listed here
//! dirs = [{ host = "/srv/exports", guest = "/exports", write = true }]
//! env = ["EXPORT_TOKEN"]
//! network = ["10.0.0.5:443", "127.0.0.1:*"]
//! dns = false
//! ```
//!
//! Unknown keys are errors (a typo must not silently leave a default in force). The file
//! is optional; without it every plugin gets [`Limits::default`] and no grants.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
    pub quarantine_window_s: u64,
    /// CPU time its own work (deliveries, `register`) may use within `cpu_window_s`;
    /// more is a failure. 0: no budget.
    pub cpu_budget_ms: u64,
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
    pub fn memory_bytes(&self) -> usize {
        (self.memory_mib as usize).saturating_mul(1 << 20)
    }
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms.max(1))
    }
    pub fn max_storage_bytes(&self) -> u64 {
        self.max_storage_mib.saturating_mul(1 << 20)
    }
    pub fn max_args_bytes(&self) -> usize {
        (self.max_args_kib as usize).saturating_mul(1024)
    }
    pub fn statement_timeout(&self) -> Duration {
        Duration::from_millis(self.statement_timeout_ms.max(1))
    }
    pub fn max_wasm_bytes(&self) -> u64 {
        self.max_wasm_mib.saturating_mul(1 << 20)
    }
    pub fn compile_timeout(&self) -> Duration {
        Duration::from_secs(self.compile_timeout_s.max(1))
    }
    pub fn max_read_bytes(&self) -> usize {
        (self.max_read_mib as usize).saturating_mul(1 << 20)
    }
    pub fn max_result_bytes(&self) -> usize {
        (self.max_result_kib as usize).saturating_mul(1024)
    }
    pub fn quarantine_window(&self) -> Duration {
        Duration::from_secs(self.quarantine_window_s)
    }
    pub fn min_schedule(&self) -> Duration {
        Duration::from_millis(self.min_schedule_ms)
    }
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
    /// not only under `/plugins/NAME/routes`. Unset: only for `db` and `stats`, whose
    /// paths are aio-fluid's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_routes: Option<bool>,
    /// Whether a task component may tag its tasks `skip_db` (aio-fluid's tag that keeps a
    /// task's runs out of the history): an untrusted component may not hide its own runs.
    #[serde(default)]
    pub skip_history: bool,
}

/// The tag that keeps a task's runs out of the db plugin's history (its default
/// `skip_db_tag`, aio-fluid's name).
pub const SKIP_HISTORY_TAG: &str = "skip_db";

/// Plugins served at their declared paths unless fluid.toml says otherwise.
pub const ROOT_ROUTES_BY_DEFAULT: [&str; 2] = ["db", "stats"];

impl Grants {
    /// Whether plugin `name` is served at its declared paths (see `root_routes`).
    pub fn root_routes(&self, name: &str) -> bool {
        self.root_routes.unwrap_or_else(|| ROOT_ROUTES_BY_DEFAULT.contains(&name))
    }

    /// Whether `addr` matches a `network` entry.
    pub fn allows(&self, addr: SocketAddr) -> bool {
        self.network.iter().filter_map(|g| parse_net(g)).any(|(ip, port)| ip == addr.ip() && port.is_none_or(|p| p == addr.port()))
    }
}

/// `ip:port` or `ip:*` (any port); IPv6 in brackets.
fn parse_net(s: &str) -> Option<(std::net::IpAddr, Option<u16>)> {
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginSection {
    start: Option<FeedStart>,
    #[serde(default)]
    limits: toml::Table,
    #[serde(default)]
    grants: Grants,
    config: Option<toml::Table>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    limits: toml::Table,
    #[serde(default)]
    trust: super::trust::Trust,
    #[serde(default)]
    plugins: BTreeMap<String, PluginSection>,
}

/// Everything the host applies to one plugin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    pub limits: Limits,
    pub grants: Grants,
    /// The JSON object passed to `register`, when fluid.toml gives one.
    #[serde(skip)]
    pub config: Option<serde_json::Value>,
    pub start: FeedStart,
}

/// The parsed file, with every plugin's limits already checked.
#[derive(Debug, Clone)]
pub struct FluidConfig {
    base: Limits,
    file: File,
    /// The folder relative grant paths start from.
    root: PathBuf,
}

impl FluidConfig {
    /// No file: `base` limits for everyone, nothing granted.
    pub fn empty(base: Limits) -> FluidConfig {
        FluidConfig { base, file: File::default(), root: PathBuf::from(".") }
    }

    /// Reads `path`; a missing file is [`FluidConfig::empty`], an invalid one an error
    /// naming the file and the key.
    pub fn load(path: &Path, base: Limits) -> anyhow::Result<FluidConfig> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FluidConfig::empty(base)),
            Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
        };
        let root = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        FluidConfig::parse(&text, base, root).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str, base: Limits, root: PathBuf) -> anyhow::Result<FluidConfig> {
        let file: File = toml::from_str(text)?;
        let cfg = FluidConfig { base, file, root };
        cfg.defaults()?;
        cfg.file.trust.validate()?;
        for name in cfg.file.plugins.keys() {
            cfg.policy(name).map_err(|e| anyhow::anyhow!("[plugins.{name}]: {e}"))?;
        }
        Ok(cfg)
    }

    fn defaults(&self) -> anyhow::Result<Limits> {
        merge(&self.base, &[&self.file.limits]).map_err(|e| anyhow::anyhow!("[limits]: {e}"))
    }

    /// Which plugin files may run (`[trust]`).
    pub fn trust(&self) -> &super::trust::Trust {
        &self.file.trust
    }

    /// The limits, grants and config of plugin `name`.
    pub fn policy(&self, name: &str) -> anyhow::Result<Policy> {
        let section = self.file.plugins.get(name).cloned().unwrap_or_default();
        let limits = merge(&self.base, &[&self.file.limits, &section.limits])?;
        let mut grants = section.grants;
        for d in &mut grants.dirs {
            if d.host.is_relative() {
                d.host = self.root.join(&d.host);
            }
        }
        for n in &grants.network {
            anyhow::ensure!(parse_net(n).is_some(), "network grant {n:?} is not ip:port or ip:*");
        }
        let config = section.config.map(serde_json::to_value).transpose()?;
        let start = section.start.unwrap_or(if START_OLDEST_BY_DEFAULT.contains(&name) { FeedStart::Oldest } else { FeedStart::Now });
        Ok(Policy { limits, grants, config, start })
    }
}

/// `base` with each table's keys laid over it in turn; unknown keys are errors.
fn merge(base: &Limits, layers: &[&toml::Table]) -> anyhow::Result<Limits> {
    let mut t = toml::Table::try_from(base)?;
    for layer in layers {
        for (k, v) in layer.iter() {
            t.insert(k.clone(), v.clone());
        }
    }
    Ok(t.try_into()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_limits_override_defaults_which_override_built_ins() {
        let text = r#"
            [limits]
            memory_mib = 16
            call_timeout_ms = 300
            [plugins.db.limits]
            call_timeout_ms = 5000
            [plugins.db.config]
            table_name = "t"
            [plugins.x.grants]
            env = ["HOME"]
            network = ["127.0.0.1:*", "10.0.0.1:443"]
            dirs = [{ host = "rel", guest = "/data" }]
        "#;
        let c = FluidConfig::parse(text, Limits::default(), PathBuf::from("/etc/fluid")).unwrap();
        let db = c.policy("db").unwrap();
        assert_eq!((db.limits.memory_mib, db.limits.call_timeout_ms, db.limits.max_tables), (16, 5000, 32));
        assert_eq!(db.config, Some(serde_json::json!({"table_name": "t"})));
        let x = c.policy("x").unwrap();
        assert_eq!(x.limits.call_timeout_ms, 300);
        assert_eq!(x.grants.dirs[0].host, PathBuf::from("/etc/fluid/rel"));
        assert!(!x.grants.dirs[0].write);
        assert!(x.grants.allows("127.0.0.1:9".parse().unwrap()) && x.grants.allows("10.0.0.1:443".parse().unwrap()));
        assert!(!x.grants.allows("10.0.0.1:80".parse().unwrap()) && !x.grants.allows("10.0.0.2:443".parse().unwrap()));
        let other = c.policy("other").unwrap();
        assert_eq!(other.grants, Grants::default());
        assert_eq!(other.config, None);
    }

    #[test]
    fn typos_and_bad_grants_are_refused_with_the_key() {
        for (text, key) in [
            ("[limits]\nmemory_mb = 3", "memory_mb"),
            ("[plugins.a.limits]\ncall_timeout = 3", "call_timeout"),
            ("[plugins.a.grants]\nnet = []", "net"),
            ("[plugins.a.grants]\nnetwork = [\"example.com:80\"]", "example.com:80"),
            ("[plugin.a]", "plugin"),
        ] {
            let e = FluidConfig::parse(text, Limits::default(), PathBuf::from(".")).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }
}
