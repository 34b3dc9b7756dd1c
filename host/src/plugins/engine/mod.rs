//! Layer 2, where guest code runs: the one wasmtime engine and its epoch ticker (here), the
//! sandbox a store puts around an instance (`sandbox`, `stderr`), the operator's policy it
//! enforces (`policy`), compiled components on disk (`cache`), the threads guests run on
//! (`guest_pool`), and the bounds on what a component hands the host to keep (`limits`).
//!
//! It knows the contract's types (`wit`) and nothing above: not which plugins are loaded,
//! nor what their imports do.

pub(crate) mod cache;
pub(crate) mod guest_pool;
pub(crate) mod limits;
pub(crate) mod policy;
pub(crate) mod sandbox;
mod stderr;

use std::time::Duration;
use wasmtime::{Config, Engine};

/// Epoch tick: the granularity of call time limits, and the longest a guest computes
/// before it yields (so the longest guest code holds a host thread, see `guest_pool`).
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The engine every plugin runs on: components, epoch interruption for call deadlines.
/// The process's one engine (and its epoch ticker), shared by every runtime, host and
/// check: compiled code and the instance pool are per engine, and a ticker per runtime
/// would advance one engine's epoch several times per tick.
pub fn engine() -> anyhow::Result<Engine> {
    static ENGINE: std::sync::OnceLock<Result<Engine, String>> = std::sync::OnceLock::new();
    ENGINE.get_or_init(|| build_engine().map_err(|e| format!("{e:#}"))).clone().map_err(anyhow::Error::msg)
}

/// The pooling allocator makes a fresh instance per task run cost microseconds: slots for
/// memories, tables and instances are reserved once (virtual address space only) and
/// reused. Limits per slot are generous so that any plugin's own memory cap (StoreLimits,
/// fluid.toml) is what binds, and multi-module components (componentize-py) fit. Where the
/// reservation fails (small address spaces), the on-demand allocator is used instead.
fn build_engine() -> anyhow::Result<Engine> {
    let config = |pooling: bool| {
        let mut c = Config::new();
        c.wasm_component_model(true);
        c.epoch_interruption(true);
        if pooling {
            let mut pool = wasmtime::PoolingAllocationConfig::default();
            pool.total_component_instances(1000)
                .total_core_instances(2000)
                .total_memories(2000)
                .total_tables(2000)
                .max_core_instances_per_component(64)
                .max_memories_per_component(16)
                .max_tables_per_component(16)
                .max_core_instance_size(8 << 20)
                .max_component_instance_size(8 << 20)
                .table_elements(200_000)
                .max_memory_size(4 << 30)
                // Reset the first pages of a reused slot by memset rather than madvise:
                // cheaper for the small memories most runs touch.
                .linear_memory_keep_resident(256 << 10)
                .table_keep_resident(64 << 10);
            c.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
        c
    };
    let engine = match Engine::new(&config(true)) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "pooling allocator unavailable; instances are allocated on demand");
            Engine::new(&config(false)).map_err(wt)?
        }
    };
    // Epoch ticker: advances time for every store's call deadline.
    let weak = engine.weak();
    std::thread::Builder::new().name("fluid-epoch".into()).spawn(move || {
        loop {
            std::thread::sleep(EPOCH_TICK);
            match weak.upgrade() {
                Some(e) => e.increment_epoch(),
                None => return,
            }
        }
    })?;
    Ok(engine)
}

/// wasmtime's error as anyhow's.
pub(crate) fn wt(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
}
