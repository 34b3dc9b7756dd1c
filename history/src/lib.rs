//! The db plugin's history types for the host: the one definition the guest SDK carries
//! (`guest-sdk/src/history_types.rs`), so the host and every guest agree on them.

#[path = "../../guest-sdk/src/history_types.rs"]
mod types;

pub use types::*;
