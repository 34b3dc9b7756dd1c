//! The `route-roles` import: during `register`, a plugin says which API role a request to
//! one of its routes needs. What it declares is collected on the instance and applied by
//! the loader to the routes `register` returned; a declaration for a route it did not
//! return, or two for one route, refuses the plugin.

use super::bindings::route_roles_if::{self, Role as WitRole};
use super::sandbox::PluginState;
use crate::types::Role;

/// Most declarations one `register` may make (a plugin has at most 64 routes).
const MAX_DECLARATIONS: usize = 64;

/// A role a plugin declared for one of its routes: method (upper case), path, role.
pub type Declared = (String, String, Role);

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

/// The role each of `routes` needs: the declared one, else `read` for GET and `operate`
/// for any other method. An error names a declaration that fits no route, or a route
/// declared twice.
pub fn apply(routes: &mut [super::routes::PluginRoute], declared: Vec<Declared>, overflow: bool) -> Result<(), String> {
    if overflow {
        return Err(format!("route-roles: more than {MAX_DECLARATIONS} declarations"));
    }
    let mut seen = std::collections::HashSet::new();
    for (method, path, role) in declared {
        let Some(route) = routes.iter_mut().find(|r| r.method == method && r.path == path) else {
            return Err(format!("route-roles: a role for {method} {path}, which register does not return"));
        };
        if !seen.insert((method.clone(), path.clone())) {
            return Err(format!("route-roles: {method} {path} declared twice"));
        }
        route.role = role;
    }
    Ok(())
}

/// What a route needs when its plugin declares nothing for it.
pub fn default_role(method: &str) -> Role {
    if method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD") { Role::Read } else { Role::Operate }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::routes::check_routes;

    #[test]
    fn declared_roles_apply_and_others_follow_the_method() {
        let declared = [("GET", "/open", "h"), ("POST", "/poke", "h"), ("POST", "/purge", "h"), ("GET", "/secret", "h")];
        let mut routes = check_routes("p", false, declared, &[]).unwrap();
        apply(&mut routes, vec![("POST".into(), "/purge".into(), Role::Admin), ("GET".into(), "/secret".into(), Role::Operate)], false)
            .unwrap();
        let roles: Vec<Role> = routes.iter().map(|r| r.role).collect();
        assert_eq!(roles, [Role::Read, Role::Operate, Role::Admin, Role::Operate]);
    }

    #[test]
    fn a_declaration_for_no_route_or_twice_is_refused() {
        let mut routes = check_routes("p", false, [("GET", "/a", "h")], &[]).unwrap();
        let e = apply(&mut routes, vec![("POST".into(), "/a".into(), Role::Admin)], false).unwrap_err();
        assert!(e.contains("POST /a, which register does not return"), "{e}");
        let twice = vec![("GET".into(), "/a".into(), Role::Admin), ("GET".into(), "/a".into(), Role::Read)];
        assert!(apply(&mut routes, twice, false).unwrap_err().contains("declared twice"));
        assert!(apply(&mut routes, vec![], true).unwrap_err().contains("more than"));
    }
}
