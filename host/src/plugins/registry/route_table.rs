//! Which loaded plugin serves an HTTP request: the routes of the loaded set, looked up by
//! method and path (the patterns themselves are `services::routes`').

use super::loaded::Loaded;
use super::runtime::PluginRuntime;
use crate::plugins::services::routes::{RouteMatch, namespace};

impl PluginRuntime {
    /// The route serving `method path`: in a plugin's namespace, or at a root route.
    pub fn route_for(&self, method: &str, path: &str) -> Option<RouteMatch> {
        let plugins = self.shared.loaded.plugins.read().unwrap();
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
        let plugins = self.shared.loaded.plugins.read().unwrap();
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
