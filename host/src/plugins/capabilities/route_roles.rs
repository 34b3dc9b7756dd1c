//! The `route-roles` import: during `register`, a plugin says which API role a request to
//! one of its routes needs. What it declares is collected on the instance and applied by
//! the loader to the routes `register` returned (`services::routes::apply`); a declaration
//! for a route it did not return, or two for one route, refuses the plugin.

use crate::plugins::instance::state::PluginState;
use crate::plugins::wit::bindings::route_roles_if::{self, Role as WitRole};
use crate::types::Role;

/// Most declarations one `register` may make (a plugin has at most 64 routes).
pub(crate) const MAX_DECLARATIONS: usize = 64;

impl route_roles_if::Host for PluginState {
    async fn require(&mut self, method: String, path: String, role: WitRole) -> wasmtime::Result<()> {
        if !self.in_register {
            return Ok(());
        }
        if self.route_roles.len() >= MAX_DECLARATIONS {
            // Kept, so the loader refuses the plugin with a clear reason.
            self.route_roles_overflow = true;
            return Ok(());
        }
        let role = match role {
            WitRole::Read => Role::Read,
            WitRole::Operate => Role::Operate,
            WitRole::Admin => Role::Admin,
        };
        self.route_roles.push((method.to_ascii_uppercase(), path, role));
        Ok(())
    }
}
