//! Measuring plugins from outside the host's loops: a `call` round trip, one batch of
//! events delivered as the feed delivers it, and what a task component's fresh instance
//! costs in parts. `fluid bench` puts each figure beside its baseline with these; they do
//! what the host does, without a queue or the feed around them, so a figure is the
//! plugin's own cost.

use super::loader::{Checked, check_component};
use super::runtime::PluginRuntime;
use crate::plugins::engine::wt;
use crate::plugins::instance::supervisor::Supervisor;
use crate::plugins::wit::bindings::tmp::Event;
use crate::plugins::wit::convert::wit_run;
use crate::types::TaskRun;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What a task component's fresh instance costs, per instance, in parts.
#[derive(Debug, Clone, Copy)]
pub struct InstanceCost {
    /// A sandbox (the wasmtime store and its WASI context) made and dropped.
    pub sandbox: Duration,
    /// The same, plus instantiating the component in it (no call).
    pub sandbox_and_instance: Duration,
}

impl PluginRuntime {
    /// Calls `method` of the loaded plugin `name` with `args` (JSON), as another plugin's
    /// `get-plugin(name).call(...)` would, and returns its answer.
    pub async fn call_plugin(&self, name: &str, method: &str, args: &str) -> anyhow::Result<String> {
        let p = self.get(name).ok_or_else(|| anyhow::anyhow!("no plugin {name} is loaded"))?;
        let held = p.sup.hold(args.len());
        p.actor.call(method.into(), args.into(), vec![], Box::new(held)).await.map_err(|e| anyhow::anyhow!("{name}.{method}: {e}"))
    }

    /// Delivers `runs` to the loaded plugin `name` in one `on-events` call, numbered from
    /// `first_seq` up, as the change feed delivers a batch (the conversion included).
    pub async fn deliver_runs(&self, name: &str, runs: &[TaskRun], first_seq: u64) -> anyhow::Result<()> {
        let p = self.get(name).ok_or_else(|| anyhow::anyhow!("no plugin {name} is loaded"))?;
        let events: Vec<Event> = runs.iter().zip(first_seq..).map(|(run, seq)| Event { seq, run: wit_run(run) }).collect();
        p.actor.on_events(events).await.map_err(|e| anyhow::anyhow!("{name}: {e:?}"))
    }

    /// Measures `n` fresh instances of the task component in `file`, under the limits
    /// fluid.toml gives the plugin `name`: the sandbox alone, then sandbox and instance.
    pub async fn task_instance_cost(&self, name: &str, file: &Path, n: usize) -> anyhow::Result<InstanceCost> {
        let sh = &self.shared;
        let policy = Arc::new(sh.config.read().unwrap().policy(name)?);
        let sup = Arc::new(Supervisor::new(name, policy, CancellationToken::new()));
        let bytes = std::fs::read(file)?;
        let Checked::Task(pre, _) =
            check_component(&sh.linkers.engine, &sh.linkers.plugin, &sh.linkers.task, file, &bytes, None).map_err(anyhow::Error::msg)?
        else {
            anyhow::bail!("{} is not a task component", file.display());
        };
        let n = n.max(1);
        let t = Instant::now();
        for _ in 0..n {
            drop(sh.stores.new_store(&sup).map_err(anyhow::Error::msg)?);
        }
        let sandbox = t.elapsed() / n as u32;
        let t = Instant::now();
        for _ in 0..n {
            let mut store = sh.stores.new_store(&sup).map_err(anyhow::Error::msg)?;
            store.set_epoch_deadline(1_000);
            pre.instantiate_async(&mut store).await.map_err(wt)?;
        }
        Ok(InstanceCost { sandbox, sandbox_and_instance: t.elapsed() / n as u32 })
    }
}
