//! Plugins as WebAssembly components, in six layers; each imports only the layers below it
//! (the `layers` test in `lib.rs` holds this):
//!
//! 1. `wit`: the contract: the generated types (the only `bindgen!`), the versions of the
//!    WIT package this host speaks, and conversions to the scheduler's types.
//! 2. `engine`: where guest code runs: the engine, the sandbox around a store (memory cap,
//!    WASI with only its grants), the operator's policy, the compile cache, the guest
//!    threads and the bounds on what a component hands the host.
//! 3. `instance`: an instance's store data and the narrow handle it reaches other plugins
//!    through, the actor that owns a plugin's instance, and supervision (counters,
//!    failures, quarantine).
//! 4. `capabilities`: the imports given to components, one per module (`host`,
//!    `storage`, `route-roles`), and the linkers that put them together.
//! 5. `services`: what components do for the host: event delivery, task components'
//!    tasks, plugin HTTP routes.
//! 6. `registry`: which components are loaded: loading and swapping, call accounting,
//!    the folder watch, fluid.toml, trust, and offline inspection.
//!
//! [`bundled`] (the components carried in the binary) imports nothing of the layers.
//!
//! What the rest of the host and the CLI use is re-exported here.

pub mod bundled;
pub(crate) mod capabilities;
pub(crate) mod engine;
pub(crate) mod instance;
pub(crate) mod registry;
pub(crate) mod services;
pub(crate) mod wit;

pub use engine::cache::sha256;
pub use engine::policy::{DirGrant, FeedStart, Grants, Limits, Policy};
pub use engine::sandbox::MAX_RANDOM_BYTES;
pub use instance::state::PluginState;
pub use instance::supervisor::Health;
pub use registry::config::FluidConfig;
pub use registry::loaded::Loaded;
pub use registry::loader::{Checked, EnableError, check_component, valid_name};
pub use registry::probe::InstanceCost;
pub use registry::{DEFAULT_COMPILE_SLOTS, DEFAULT_EVENT_BATCH, PluginInfo, PluginRuntime, PluginSettings, inspect, trust};
pub use services::routes::{Pattern, PluginRoute, RouteMatch, namespace};

pub(crate) use services::routes::HOST_SEGMENTS;
pub use wit::contract;
