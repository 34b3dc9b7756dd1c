//! `fluid.toml`: the operator's word on each plugin's limits, capability grants and config,
//! read into the [`Policy`] of each plugin (`engine::policy`, which the layers below enforce)
//! and the `[trust]` section (`trust`).
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

use super::trust::Trust;
use crate::plugins::engine::policy::{FeedStart, Grants, Limits, Policy, START_OLDEST_BY_DEFAULT, parse_net};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    trust: Trust,
    #[serde(default)]
    plugins: BTreeMap<String, PluginSection>,
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

    /// Parses the text of a fluid.toml; relative grant paths start at `root`. Every
    /// plugin's section is checked, naming the key that is wrong.
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
    pub fn trust(&self) -> &Trust {
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
