//! The `route-roles` import: during `register`, a plugin says which API role a request to
//! one of its routes needs. What it declares is collected on the instance and applied by
//! the loader to the routes `register` returned (`services::routes::apply`); a declaration
//! for a route it did not return, or two for one route, refuses the plugin. So does one
//! too many, or one naming a method or path longer than any route's: such a declaration
//! is not kept, only the reason, so the host never holds what the plugin chose to send.

use crate::plugins::engine::limits::{MAX_PATH, truncated};
use crate::plugins::instance::state::PluginState;
use crate::plugins::wit::bindings::route_roles_if::{self, Role as WitRole};
use crate::types::Role;

/// Most declarations one `register` may make (a plugin has at most 64 routes).
pub(crate) const MAX_DECLARATIONS: usize = 64;
/// Bytes of a declared method (the longest route method, `DELETE`, has 6).
pub(crate) const MAX_METHOD: usize = 8;

/// Why a declaration is refused before it is kept (`kept`: those kept so far), if it is.
pub(crate) fn refusal(kept: usize, method: &str, path: &str) -> Option<String> {
    if kept >= MAX_DECLARATIONS {
        return Some(format!("route-roles: more than {MAX_DECLARATIONS} declarations"));
    }
    // Bytes, not characters: a route's method and path are ASCII.
    if method.len() > MAX_METHOD {
        return Some(format!("route-roles: a method of {} bytes ({:?}), over the limit of {MAX_METHOD}", method.len(), truncated(method)));
    }
    if path.len() > MAX_PATH {
        return Some(format!("route-roles: a path of {} bytes ({:?}), over the limit of {MAX_PATH}", path.len(), truncated(path)));
    }
    None
}

impl route_roles_if::Host for PluginState {
    async fn require(&mut self, method: String, path: String, role: WitRole) -> wasmtime::Result<()> {
        if !self.in_register || self.route_roles_refused.is_some() {
            return Ok(());
        }
        if let Some(why) = refusal(self.route_roles.len(), &method, &path) {
            // Kept, so the loader refuses the plugin with a clear reason.
            self.route_roles_refused = Some(why);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_declaration_is_refused_quoting_only_its_start() {
        assert_eq!(refusal(0, "DELETE", &format!("/{}", "a".repeat(MAX_PATH - 1))), None);
        assert!(refusal(MAX_DECLARATIONS, "GET", "/a").unwrap().contains("more than 64"));
        let method = refusal(0, &"X".repeat(1 << 20), "/a").unwrap();
        assert!(method.contains("a method of 1048576 bytes") && method.len() < 200, "{method}");
        let path = refusal(0, "GET", &format!("/{}", "p".repeat(1 << 20))).unwrap();
        assert!(path.contains("a path of 1048577 bytes") && path.len() < 200, "{path}");
        let odd = refusal(0, "GET", &format!("/\n{}", "é".repeat(200))).unwrap();
        assert!(odd.contains("\"/\\n") && !odd.contains('\n'), "{odd}");
    }
}
