//! Plugin routes over HTTP: a request a plugin's route serves (see
//! `plugins::services::routes` for which one, and the role it needs) becomes a call of its
//! handler with `{"path", "query", "body"}`; the JSON it returns is the answer, a call error
//! a status.

use super::{ApiError, PluginRoutes};
use crate::plugins::PluginRuntime;
use crate::plugins::RouteMatch;
use crate::scheduler::{PluginCallError, PluginDirectory};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// The status a plugin call's error answers with.
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
    fn find(&self, method: &str, path: &str) -> Option<RouteMatch> {
        self.route_for(method, path)
    }

    fn serve<'a>(
        &'a self,
        route: RouteMatch,
        query: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send + 'a>> {
        Box::pin(async move {
            let body = match super::json_body(&body) {
                Ok(v) => v,
                Err(e) => return e.into_response(),
            };
            let args = serde_json::json!({ "path": route.vars, "query": query, "body": body });
            let plugin = route.plugin;
            match self.call(&plugin, &route.handler, args.to_string()).await {
                // Checked, not built: a tree of the result would take many times its text.
                Ok(text) => match serde_json::from_str::<serde::de::IgnoredAny>(&text) {
                    Ok(_) => ([(axum::http::header::CONTENT_TYPE, "application/json")], text).into_response(),
                    Err(e) => ApiError::new(StatusCode::BAD_GATEWAY, format!("plugin {plugin} returned invalid JSON: {e}")).into_response(),
                },
                Err(e) => error_response(e),
            }
        })
    }

    fn routes(&self) -> Vec<(String, String, String)> {
        self.route_list()
    }
}
