//! Layer 1, the contract with components: the types generated from the WIT (`bindings`,
//! the only `bindgen!`), the versions of the package this host speaks (`contract`), and the
//! conversions between the generated types and the scheduler's (`convert`).
//!
//! It imports nothing else of `plugins`: every layer above speaks these types.

pub(crate) mod bindings;
pub mod contract;
pub(crate) mod convert;
