//! HTTP routes declared by plugins: which route serves a request (method and path), and
//! the role it needs. `http::plugin_routes` forwards the request to the plugin's
//! `call(handler, {"path", "query", "body"})`.
//!
//! Who answers a request is never a plugin's choice:
//!
//! - every plugin's routes are served in its own namespace, `/plugins/NAME/routes/...`
//!   (a route `/stats` of plugin `stats` is `/plugins/stats/routes/stats`), which no other
//!   plugin can reach;
//! - a plugin granted `root_routes` in fluid.toml is also served at the paths as declared
//!   (`/task-history`, aio-fluid's path); `db` and `stats` have that grant unless
//!   fluid.toml says otherwise. Such a route may not overlap a path the host serves
//!   (any path under `/`, `/ui`, `/tasks...`, `/task-runs`, `/plugins`, `/metrics`,
//!   `/throughput`, `/openapi.json`) nor a root route of another plugin: overlap is judged
//!   by what the patterns match (a `{param}` segment matches any one segment; a trailing
//!   slash matches as without), and the newcomer is refused at load naming both owners.
//!
//! Which loaded plugin serves a request is the registry's lookup (`registry::route_table`);
//! this module owns the patterns, the checks at load and the roles of routes.

use crate::plugins::engine::limits::truncated;
use crate::plugins::instance::state::Declared;
use crate::types::Role;
use std::collections::BTreeMap;

/// First path segments the host serves itself (`""` is the root page).
pub(crate) const HOST_SEGMENTS: [&str; 11] =
    ["", "tasks", "tasks-status", "tasks-queue", "task-runs", "openapi.json", "plugins", "ui", "metrics", "throughput", "token"];

/// Segments of a route pattern at most.
const MAX_SEGMENTS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    Param(String),
}

/// A parsed route path: `/a/{x}/b`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(Vec<Seg>);

impl Pattern {
    /// Parses a declared path: it starts with `/`; segments are literals of
    /// `[A-Za-z0-9._~-]` or a whole `{name}`; no empty segment (a trailing slash is
    /// dropped); at most 16 segments.
    pub fn parse(path: &str) -> Result<Pattern, String> {
        let rest = path.strip_prefix('/').ok_or_else(|| format!("route path {:?} must start with /", truncated(path)))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Ok(Pattern(vec![Seg::Lit(String::new())]));
        }
        let mut segs = Vec::new();
        for s in rest.split('/') {
            let seg = if let Some(name) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("route path {path:?}: {s:?} is not a {{name}} segment"));
                }
                Seg::Param(name.to_string())
            } else if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "._~-".contains(c)) {
                Seg::Lit(s.to_string())
            } else {
                return Err(format!(
                    "route path {path:?}: segment {s:?} must be a literal of letters, digits and ._~- or a whole {{name}}"
                ));
            };
            segs.push(seg);
        }
        if segs.len() > MAX_SEGMENTS {
            return Err(format!("route path {path:?} has more than {MAX_SEGMENTS} segments"));
        }
        Ok(Pattern(segs))
    }

    /// Whether some request path matches both patterns.
    pub fn overlaps(&self, other: &Pattern) -> bool {
        self.0.len() == other.0.len()
            && self.0.iter().zip(&other.0).all(|(a, b)| match (a, b) {
                (Seg::Lit(x), Seg::Lit(y)) => x == y,
                _ => true,
            })
    }

    /// Whether it could match a path the host serves.
    pub fn host_owned(&self) -> bool {
        match &self.0[0] {
            Seg::Param(_) => true,
            Seg::Lit(first) => HOST_SEGMENTS.contains(&first.as_str()),
        }
    }

    /// The `{x}` values when `path` (a request path) matches.
    pub fn matches(&self, path: &str) -> Option<BTreeMap<String, String>> {
        let path = path.strip_prefix('/')?;
        let path = path.strip_suffix('/').unwrap_or(path);
        let parts: Vec<&str> = path.split('/').collect();
        if parts.len() != self.0.len() {
            return None;
        }
        let mut vars = BTreeMap::new();
        for (seg, part) in self.0.iter().zip(&parts) {
            match seg {
                Seg::Param(name) if !part.is_empty() => {
                    let decoded =
                        form_urlencoded::parse(format!("v={part}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default();
                    vars.insert(name.clone(), decoded);
                }
                Seg::Lit(l) if l == part => {}
                _ => return None,
            }
        }
        Some(vars)
    }
}

/// One declared route of a loaded plugin.
#[derive(Debug, Clone)]
pub struct PluginRoute {
    /// The HTTP method, upper case.
    pub method: String,
    /// The path as declared, `/a/{x}`.
    pub path: String,
    /// The method of its `call` a request goes to.
    pub handler: String,
    /// The path, parsed.
    pub pattern: Pattern,
    /// What a request to it needs once the API wants tokens (see `route_roles`).
    pub role: Role,
}

/// Where a plugin's routes are always served.
pub fn namespace(plugin: &str) -> String {
    format!("/plugins/{plugin}/routes")
}

/// Checks the routes a plugin declares against the host's paths and the root routes of
/// the other loaded plugins (`root_owners`: each plugin served at its declared paths, with
/// its routes): the refusal names both owners.
pub(crate) fn check_routes<'a>(
    plugin: &str,
    root: bool,
    declared: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    root_owners: &[(&str, &[PluginRoute])],
) -> Result<Vec<PluginRoute>, String> {
    let mut out = Vec::new();
    for (method, path, handler) in declared {
        let method = method.to_ascii_uppercase();
        let pattern = Pattern::parse(path)?;
        if root {
            if pattern.host_owned() {
                return Err(format!(
                    "route {method} {path} overlaps paths the host serves (it may be served in its namespace without root_routes)"
                ));
            }
            for (owner, routes) in root_owners.iter().filter(|(owner, _)| *owner != plugin) {
                if let Some(r) = routes.iter().find(|r| r.method == method && r.pattern.overlaps(&pattern)) {
                    return Err(format!("route {method} {path} overlaps route {} {} of plugin {owner}", r.method, r.path));
                }
            }
        }
        let role = default_role(&method);
        out.push(PluginRoute { method, path: path.to_string(), handler: handler.to_string(), pattern, role });
    }
    Ok(out)
}

/// The route serving a request, found by `PluginRuntime::route_for`.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    /// The plugin that serves it.
    pub plugin: String,
    /// The method of its `call` the request goes to.
    pub handler: String,
    /// The path's `{x}` values.
    pub vars: BTreeMap<String, String>,
    /// What the request needs once the API wants tokens.
    pub role: Role,
}

/// The role each of `routes` needs: the declared one, else `read` for GET and `operate`
/// for any other method. An error names a declaration that fits no route, a route
/// declared twice, or why `route_roles` refused one (`refused`).
pub(crate) fn apply(routes: &mut [PluginRoute], declared: Vec<Declared>, refused: Option<String>) -> Result<(), String> {
    if let Some(why) = refused {
        return Err(why);
    }
    let mut seen = std::collections::HashSet::new();
    for (method, path, role) in declared {
        let Some(route) = routes.iter_mut().find(|r| r.method == method && r.path == path) else {
            // Escaped: the plugin chose them (bounded by `route_roles`), and this reaches the log.
            let (method, path) = (method.escape_debug(), path.escape_debug());
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
pub(crate) fn default_role(method: &str) -> Role {
    if method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD") { Role::Read } else { Role::Operate }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    #[test]
    fn route_patterns_bind_segments_and_reject_other_shapes() {
        assert_eq!(p("/task-history").matches("/task-history"), Some(BTreeMap::new()));
        assert_eq!(p("/task-history").matches("/task-history/"), Some(BTreeMap::new()));
        let v = p("/task-history/{id}").matches("/task-history/a%20b").unwrap();
        assert_eq!(v["id"], "a b");
        assert!(p("/task-history/{id}").matches("/task-history").is_none());
        assert!(p("/task-history/{id}").matches("/task-history/a/b").is_none());
        assert!(p("/task-history/{id}").matches("/task-history//").is_none());
        assert!(p("/stats").matches("/other").is_none());
    }

    #[test]
    fn overlap_is_judged_by_what_patterns_match() {
        assert!(p("/task-history").overlaps(&p("/task-history/")));
        assert!(p("/task-history/{id}").overlaps(&p("/task-history/{x}")));
        assert!(p("/task-history/{id}").overlaps(&p("/{a}/{b}")));
        assert!(p("/task-history/{id}").overlaps(&p("/{a}/latest")));
        assert!(!p("/task-history/{id}").overlaps(&p("/task-history")));
        assert!(!p("/a/{x}").overlaps(&p("/b/{x}")));
    }

    #[test]
    fn host_paths_and_odd_shapes_are_refused() {
        for host in [
            "/",
            "/tasks",
            "/tasks/x",
            "/ui/app.js",
            "/metrics",
            "/throughput",
            "/openapi.json",
            "/plugins/db/routes/x",
            "/{any}",
            "/task-runs/{id}",
        ] {
            assert!(p(host).host_owned(), "{host}");
        }
        assert!(!p("/task-history").host_owned() && !p("/tasks-x").host_owned());
        for bad in ["task-history", "/a//b", "/a/*", "/a/{", "/a/{x}y", "/a/%2e%2e", "/a/b c"] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
        assert!(Pattern::parse(&"/a".repeat(17)).is_err());
    }

    #[test]
    fn declared_roles_apply_and_others_follow_the_method() {
        let declared = [("GET", "/open", "h"), ("POST", "/poke", "h"), ("POST", "/purge", "h"), ("GET", "/secret", "h")];
        let mut routes = check_routes("p", false, declared, &[]).unwrap();
        apply(&mut routes, vec![("POST".into(), "/purge".into(), Role::Admin), ("GET".into(), "/secret".into(), Role::Operate)], None)
            .unwrap();
        let roles: Vec<Role> = routes.iter().map(|r| r.role).collect();
        assert_eq!(roles, [Role::Read, Role::Operate, Role::Admin, Role::Operate]);
    }

    #[test]
    fn a_declaration_for_no_route_or_twice_is_refused() {
        let mut routes = check_routes("p", false, [("GET", "/a", "h")], &[]).unwrap();
        let e = apply(&mut routes, vec![("POST".into(), "/a".into(), Role::Admin)], None).unwrap_err();
        assert!(e.contains("POST /a, which register does not return"), "{e}");
        let forged = apply(&mut routes, vec![("GET".into(), "/a\nERROR x".into(), Role::Admin)], None).unwrap_err();
        assert!(!forged.contains('\n') && forged.contains("/a\\nERROR x"), "{forged}");
        let twice = vec![("GET".into(), "/a".into(), Role::Admin), ("GET".into(), "/a".into(), Role::Read)];
        assert!(apply(&mut routes, twice, None).unwrap_err().contains("declared twice"));
        let refused = apply(&mut routes, vec![], Some("route-roles: more than 64 declarations".into())).unwrap_err();
        assert!(refused.contains("more than"));
    }
}
