//! HTTP routes declared by plugins: the host matches method and path and forwards the
//! request to the plugin's `call(handler, {"path", "query", "body"})`.

use super::runtime::PluginRuntime;
use crate::http::{ApiError, PluginRoutes};
use crate::scheduler::PluginCallError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;

/// Paths the host serves itself; a plugin may not declare them.
pub fn host_owns(path: &str) -> bool {
    ["/tasks", "/tasks-status", "/tasks-queue", "/task-runs", "/openapi.json", "/plugins"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

/// Matches `/a/{x}/b` against a request path; returns the `{x}` values.
fn matches(pattern: &str, path: &str) -> Option<BTreeMap<String, String>> {
    let p: Vec<&str> = pattern.trim_end_matches('/').split('/').collect();
    let a: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    if p.len() != a.len() {
        return None;
    }
    let mut vars = BTreeMap::new();
    for (ps, as_) in p.iter().zip(&a) {
        match ps.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) if !as_.is_empty() => {
                let decoded = form_urlencoded::parse(format!("v={as_}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default();
                vars.insert(name.to_string(), decoded);
            }
            Some(_) => return None,
            None if ps == as_ => {}
            None => return None,
        }
    }
    Some(vars)
}

pub fn error_response(e: PluginCallError) -> Response {
    let status = match &e {
        PluginCallError::NotFound(_) | PluginCallError::UnknownMethod(_) | PluginCallError::NoSuchPlugin(_) => StatusCode::NOT_FOUND,
        PluginCallError::InvalidInput(_) => StatusCode::UNPROCESSABLE_ENTITY,
        PluginCallError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        PluginCallError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let detail = match e {
        PluginCallError::NotFound(m) | PluginCallError::InvalidInput(m) => m,
        other => other.to_string(),
    };
    ApiError::new(status, detail).into_response()
}

impl PluginRoutes for PluginRuntime {
    fn serve<'a>(
        &'a self,
        method: &'a str,
        path: &'a str,
        query: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Response>> + Send + 'a>> {
        Box::pin(async move {
            let found = self.shared.plugins.read().unwrap().values().find_map(|p| {
                p.routes.iter().find_map(|(m, pattern, handler)| {
                    (m == method).then(|| matches(pattern, path)).flatten().map(|vars| (p.name.clone(), handler.clone(), vars))
                })
            });
            let (plugin, handler, vars) = found?;
            let body = match crate::http::json_body(&body) {
                Ok(v) => v,
                Err(e) => return Some(e.into_response()),
            };
            let args = serde_json::json!({ "path": vars, "query": query, "body": body });
            Some(match self.shared.call(&plugin, &handler, args.to_string(), Vec::new()).await {
                Ok(text) => match serde_json::from_str::<serde_json::Value>(&text) {
                    Ok(v) => axum::Json(v).into_response(),
                    Err(e) => ApiError::new(StatusCode::BAD_GATEWAY, format!("plugin {plugin} returned invalid JSON: {e}")).into_response(),
                },
                Err(e) => error_response(e),
            })
        })
    }

    fn routes(&self) -> Vec<(String, String, String)> {
        self.shared
            .plugins
            .read()
            .unwrap()
            .values()
            .flat_map(|p| p.routes.iter().map(|(m, path, _)| (m.clone(), path.clone(), p.name.clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_patterns_bind_segments_and_reject_other_shapes() {
        assert_eq!(matches("/task-history", "/task-history"), Some(BTreeMap::new()));
        let v = matches("/task-history/{id}", "/task-history/abc").unwrap();
        assert_eq!(v["id"], "abc");
        assert!(matches("/task-history/{id}", "/task-history").is_none());
        assert!(matches("/task-history/{id}", "/task-history/a/b").is_none());
        assert!(matches("/stats", "/other").is_none());
        assert!(host_owns("/tasks/x") && host_owns("/plugins") && !host_owns("/task-history"));
    }
}
