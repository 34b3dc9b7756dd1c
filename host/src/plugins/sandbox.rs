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
use super::host_api::LogBudget;
use super::runtime::Shared;
use super::stderr::StderrTail;
use super::supervisor::Supervisor;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The data of one plugin instance's store.
pub struct PluginState {
    pub name: String,
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) shared: Arc<Shared>,
    pub(crate) sup: Arc<Supervisor>,
    /// Plugins on the call stack above this call (to refuse re-entry instead of deadlocking).
    pub(crate) chain: Vec<String>,
    pub(crate) log_budget: LogBudget,
    /// The end of what this instance wrote to stderr (a panic message, say).
    pub(crate) stderr: StderrTail,
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

/// A fresh store for an instance of the plugin `sup` supervises: its grants, its memory
/// cap; the caller sets the per-call deadline.
pub(crate) fn new_store(shared: &Arc<Shared>, sup: &Arc<Supervisor>) -> Result<Store<PluginState>, String> {
    let limits =
        StoreLimitsBuilder::new().memory_size(sup.policy.limits.memory_bytes()).instances(32).tables(64).trap_on_grow_failure(true).build();
    let stderr = StderrTail::default();
    let state = PluginState {
        name: sup.name.clone(),
        wasi: wasi_ctx(&sup.policy, &stderr)?,
        stderr,
        table: ResourceTable::new(),
        limits,
        shared: shared.clone(),
        sup: sup.clone(),
        chain: Vec::new(),
        log_budget: LogBudget::default(),
    };
    let mut store = Store::new(&shared.engine, state);
    store.limiter(|s| &mut s.limits);
    store.epoch_deadline_trap();
    Ok(store)
}
