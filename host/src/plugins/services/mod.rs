//! Layer 5, what components do for the host, each on instances (`instance`) with their
//! capabilities (`capabilities`): event delivery from the change feed (`dispatch`), task
//! components' tasks (`tasks`, with their params schemas in `params_schema`), and the HTTP
//! routes plugins declare (`routes`).
//!
//! Each takes what it needs of a loaded plugin as arguments; which plugins are loaded is the
//! registry's, above.

pub(crate) mod dispatch;
pub(crate) mod params_schema;
pub(crate) mod routes;
pub(crate) mod tasks;
