//! Layer 3, instances and their supervision: an instance's store data and the handle it
//! reaches the rest of the host through (`state`), the task that owns a plugin's instance
//! and runs its calls one at a time (`actor`), and a plugin's counters, failures and
//! quarantine (`supervisor`).
//!
//! It builds on the engine and sandbox (`engine`) and the contract (`wit`). It never names
//! the registry: what an instance's capabilities need of the set of loaded plugins is the
//! [`state::Peers`] trait, which the registry implements.

pub(crate) mod actor;
pub(crate) mod state;
pub(crate) mod supervisor;
