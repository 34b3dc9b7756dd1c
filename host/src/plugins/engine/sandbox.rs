//! The sandbox around one instance: the store's memory cap and copy bound, and WASI with
//! only what fluid.toml grants that plugin by name. The rest of an instance's store data
//! (what its capabilities need) is `instance::state`'s.
//!
//! Nothing is ambient. Without grants a plugin has no preopened folder (opening any path
//! fails with an error the guest sees), an empty environment, no sockets (TCP, UDP and
//! name lookups are switched off, and every address is refused), no arguments and no
//! stdin; its stdout and stderr go nowhere. A granted folder is preopened read-only unless
//! `write = true`; granted environment variables carry the host's values at load time;
//! granted addresses may be connected to (TCP) or sent to (UDP). Stdout goes nowhere;
//! the tail of stderr is kept to explain a trap ([`StderrTail`]).

use super::policy::{Limits, Policy};
use super::stderr::StderrTail;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder};

/// The sandbox part of one instance's store data: WASI with only its grants, its resource
/// table, its memory cap and the tail of its stderr.
pub(crate) struct Sandbox {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    limits: MemoryCap,
    /// The end of what this instance wrote to stderr (a panic message, say).
    pub(crate) stderr: StderrTail,
}

impl Sandbox {
    /// The sandbox `policy` gives one instance: its grants, its memory cap, a bounded
    /// resource table. An unusable grant refuses the instance (see [`wasi_ctx`]).
    pub(crate) fn new(policy: &Policy) -> Result<Sandbox, String> {
        let limits = MemoryCap::new(policy.limits.memory_bytes());
        let stderr = StderrTail::default();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Ok(Sandbox { wasi: wasi_ctx(policy, &stderr)?, stderr, table, limits })
    }
}

/// Store data with a sandbox in it: what [`new_store`] needs to bound the store.
pub(crate) trait Sandboxed: Send + 'static {
    fn sandbox(&mut self) -> &mut Sandbox;
}

/// WASI for a plugin: only its grants. An unusable grant (a folder that does not exist)
/// refuses the plugin rather than silently running it with less.
pub(crate) fn wasi_ctx(policy: &Policy, stderr: &StderrTail) -> Result<WasiCtx, String> {
    let g = &policy.grants;
    let mut b = WasiCtxBuilder::new();
    b.stderr(stderr.clone());
    // The host builds the bytes before the guest gets them: a call asking for more traps.
    b.max_random_size(MAX_RANDOM_BYTES);
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

/// Most bytes one `get-random-bytes` call may ask for (the host holds them at once).
pub const MAX_RANDOM_BYTES: u64 = 1 << 20;

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
    /// A cap of `cap` bytes across the instance's memories.
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

/// A fresh store around `data`: the memory cap of its sandbox, a bounded copy per call (by
/// `limits`); the caller sets the per-call deadline.
pub(crate) fn new_store<T: Sandboxed>(engine: &Engine, limits: &Limits, data: T) -> Store<T> {
    let mut store = Store::new(engine, data);
    store.limiter(|s| &mut s.sandbox().limits);
    // What one call may make the host copy out of the guest (arguments of an import, the
    // result of an export), counted by the host bytes each string and element becomes.
    // Entries of a list may all point at the same bytes, so without this bound a 64 MiB
    // guest could have the host copy terabytes; data that is really there fits its memory.
    store.set_hostcall_fuel(limits.memory_bytes());
    store.epoch_deadline_trap();
    store
}
