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

use super::runtime::{Loaded, PluginRuntime};
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
        let rest = path.strip_prefix('/').ok_or_else(|| format!("route path {:?} must start with /", super::limits::truncated(path)))?;
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
    pub method: String,
    pub path: String,
    pub handler: String,
    pub pattern: Pattern,
    /// What a request to it needs once the API wants tokens (see `route_roles`).
    pub role: Role,
}

/// Where a plugin's routes are always served.
pub fn namespace(plugin: &str) -> String {
    format!("/plugins/{plugin}/routes")
}

/// Checks the routes a plugin declares against the host's paths and the root routes of
/// the other loaded plugins: the refusal names both owners.
pub fn check_routes<'a>(
    plugin: &str,
    root: bool,
    declared: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    others: &[std::sync::Arc<Loaded>],
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
            for o in others.iter().filter(|o| o.name != plugin && o.root_routes) {
                if let Some(r) = o.routes.iter().find(|r| r.method == method && r.pattern.overlaps(&pattern)) {
                    return Err(format!("route {method} {path} overlaps route {} {} of plugin {}", r.method, r.path, o.name));
                }
            }
        }
        let role = super::route_roles::default_role(&method);
        out.push(PluginRoute { method, path: path.to_string(), handler: handler.to_string(), pattern, role });
    }
    Ok(out)
}

/// The route serving a request, found by `PluginRuntime::route_for`.
pub struct RouteMatch {
    pub plugin: String,
    pub handler: String,
    /// The path's `{x}` values.
    pub vars: BTreeMap<String, String>,
    pub role: Role,
}

impl PluginRuntime {
    /// The route serving `method path`: in a plugin's namespace, or at a root route.
    pub fn route_for(&self, method: &str, path: &str) -> Option<RouteMatch> {
        let plugins = self.shared.plugins.read().unwrap();
        let find = |p: &Loaded, path: &str| {
            p.routes.iter().find_map(|r| {
                (r.method == method).then(|| r.pattern.matches(path)).flatten().map(|vars| RouteMatch {
                    plugin: p.name.clone(),
                    handler: r.handler.clone(),
                    vars,
                    role: r.role,
                })
            })
        };
        if let Some(rest) = path.strip_prefix("/plugins/") {
            let (name, tail) = rest.split_once('/').unwrap_or((rest, ""));
            let p = plugins.get(name)?;
            let tail = tail.strip_prefix("routes")?;
            let tail = if tail.is_empty() { "/" } else { tail };
            return tail.starts_with('/').then(|| find(p, tail)).flatten();
        }
        plugins.values().filter(|p| p.root_routes).find_map(|p| find(p, path))
    }

    /// Every route served, as `(method, path, plugin)`: in its namespace, and at its own
    /// path when the plugin has root routes.
    pub fn route_list(&self) -> Vec<(String, String, String)> {
        let plugins = self.shared.plugins.read().unwrap();
        let mut out = Vec::new();
        for p in plugins.values() {
            for r in &p.routes {
                let ns = format!("{}{}", namespace(&p.name), if r.path == "/" { "" } else { r.path.as_str() });
                out.push((r.method.clone(), ns, p.name.clone()));
                if p.root_routes {
                    out.push((r.method.clone(), r.path.clone(), p.name.clone()));
                }
            }
        }
        out
    }
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
}
