//! The store of one plugin instance: the memory cap, and WASI with only what fluid.toml
//! grants that plugin by name.
//!
//! Nothing is ambient. Without grants a plugin has no preopened folder (opening any path
//! fails with an error the guest sees), an empty environment, no sockets (TCP, UDP and
//! name lookups are switched off, and every address is refused), no arguments and no
//! stdin; its stdout and stderr go nowhere. A granted folder is preopened read-only unless
//! `write = true`; granted environment variables carry the host's values at load time;
//! granted addresses may be connected to (TCP) or sent to (UDP). Stdout goes nowhere;
//! the tail of stderr is kept to explain a trap ([`StderrTail`]).

use super::config::Policy;
use super::runtime::Shared;
use super::stderr::StderrTail;
use super::supervisor::Supervisor;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The data of one plugin instance's store.
pub struct PluginState {
    pub name: String,
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: MemoryCap,
    pub(crate) shared: Arc<Shared>,
    pub(crate) sup: Arc<Supervisor>,
    /// Plugins on the call stack above this call (to refuse re-entry instead of deadlocking).
    pub(crate) chain: Vec<String>,
    /// The run a task component's instance executes (its children name it as parent).
    pub(crate) run_id: Option<String>,
    /// The runs of the events a plugin is being delivered: the only runs it may name as
    /// the parent of a run it queues (a follow-up of a run it was told about).
    pub(crate) delivering: std::collections::HashSet<String>,
    /// The end of what this instance wrote to stderr (a panic message, say).
    pub(crate) stderr: StderrTail,
    /// A storage call of the current job failed because of the database (busy with other
    /// plugins, unreachable), not the plugin: a failed delivery then does not count.
    pub(crate) not_its_fault: bool,
    /// While `register` runs: the roles it declares for its routes (`route_roles`).
    pub(crate) in_register: bool,
    pub(crate) route_roles: Vec<super::route_roles::Declared>,
    pub(crate) route_roles_overflow: bool,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// WASI for a plugin: only its grants. An unusable grant (a folder that does not exist)
/// refuses the plugin rather than silently running it with less.
pub(crate) fn wasi_ctx(policy: &Policy, stderr: &StderrTail) -> Result<WasiCtx, String> {
    let g = &policy.grants;
    let mut b = WasiCtxBuilder::new();
    b.stderr(stderr.clone());
    for d in &g.dirs {
        let perms = if d.write { FsPerms::ReadWrite } else { FsPerms::ReadOnly };
        b.preopened_dir(&d.host, &d.guest, perms).map_err(|e| format!("granted folder {} cannot be opened: {e:#}", d.host.display()))?;
    }
    for name in &g.env {
        if let Ok(v) = std::env::var(name) {
            b.env(name, v);
        }
    }
    let net = !g.network.is_empty();
    b.allow_tcp(net).allow_udp(net).allow_ip_name_lookup(g.dns);
    let grants = g.clone();
    b.socket_addr_check(move |addr, usage| {
        let ok = match usage {
            SocketAddrUse::TcpConnect | SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => grants.allows(addr),
            // The implicit bind before a connect or send, to an ephemeral port.
            SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => !grants.network.is_empty() && addr.ip().is_unspecified() && addr.port() == 0,
            // Serving connections is never granted.
            SocketAddrUse::TcpListen | SocketAddrUse::TcpAccept => false,
        };
        Box::pin(async move { ok })
    });
    Ok(b.build())
}

/// Host resources (plugin handles, WASI streams and pollables...) one instance may hold
/// at once: each is host memory outside the instance's own.
pub const MAX_RESOURCES: usize = 10_000;

/// Table elements one instance may hold across its tables.
pub const MAX_TABLE_ELEMENTS: usize = 200_000;

/// An instance's memory cap counted across all its linear memories (a component may have
/// several; a cap per memory would let one with 16 memories take 16 times its share).
pub struct MemoryCap {
    cap: usize,
    used: usize,
    table_elements: usize,
}

impl MemoryCap {
    pub fn new(cap: usize) -> MemoryCap {
        MemoryCap { cap, used: 0, table_elements: 0 }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let grow = desired.saturating_sub(current);
        if self.used.saturating_add(grow) > self.cap {
            // A trap, not a failed grow: the guest cannot go on as if it had the memory.
            wasmtime::bail!(
                "cannot grow memory to {} bytes in all: over the memory limit of {} bytes (memory_mib)",
                self.used + grow,
                self.cap
            );
        }
        self.used += grow;
        Ok(true)
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let grow = desired.saturating_sub(current);
        if self.table_elements.saturating_add(grow) > MAX_TABLE_ELEMENTS {
            wasmtime::bail!("cannot grow tables past {MAX_TABLE_ELEMENTS} elements in all");
        }
        self.table_elements += grow;
        Ok(true)
    }

    fn instances(&self) -> usize {
        32
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }
}

/// A fresh store for an instance of the plugin `sup` supervises: its grants, its memory
/// cap, a bounded resource table, a bounded copy per call; the caller sets the per-call
/// deadline.
pub(crate) fn new_store(shared: &Arc<Shared>, sup: &Arc<Supervisor>) -> Result<Store<PluginState>, String> {
    let limits = MemoryCap::new(sup.policy.limits.memory_bytes());
    let stderr = StderrTail::default();
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_RESOURCES);
    let state = PluginState {
        name: sup.name.clone(),
        wasi: wasi_ctx(&sup.policy, &stderr)?,
        stderr,
        not_its_fault: false,
        table,
        limits,
        shared: shared.clone(),
        sup: sup.clone(),
        chain: Vec::new(),
        run_id: None,
        delivering: Default::default(),
        in_register: false,
        route_roles: Vec::new(),
        route_roles_overflow: false,
    };
    let mut store = Store::new(&shared.engine, state);
    store.limiter(|s| &mut s.limits);
    // What one call may make the host copy out of the guest (arguments of an import, the
    // result of an export), counted by the host bytes each string and element becomes.
    // Entries of a list may all point at the same bytes, so without this bound a 64 MiB
    // guest could have the host copy terabytes; data that is really there fits its memory.
    store.set_hostcall_fuel(sup.policy.limits.memory_bytes());
    store.epoch_deadline_trap();
    Ok(store)
}
