//! The HTTP API (axum). Routes are compatible with aio-fluid where it makes sense
//! (`/tasks`, `/tasks/{name}`, `/tasks-status`, `/tasks-queue`), plus run lookup and
//! cancel at `/task-runs/{id}`, plugin routes, `/openapi.json` and Prometheus `/metrics`.
//!
//! Every error is JSON `{"detail": "..."}` with a 4xx status for bad input (unknown name:
//! 404, malformed JSON: 400, invalid params: 422, body over the limit: 413); 5xx only
//! when the host itself fails (for instance the database is unreachable: 503).
//!
//! [`Host`](crate::Host) builds and serves the router; applications reach the API over
//! HTTP. What is public here is what provisions access to it: [`auth::mint`].

/// API tokens and roles; [`auth::mint`] makes a token for an application to store.
pub mod auth;
mod dashboard;
mod error;
mod metrics;
mod openapi;
mod plugin_routes;
mod plugins;
mod runs;
mod tasks;

pub(crate) use error::ApiError;

use crate::plugins::RouteMatch;
use crate::scheduler::Scheduler;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use serde_json::Value;
use std::sync::Arc;

/// Largest request body accepted (params of one run, a plugin request).
pub(crate) const BODY_LIMIT: usize = 1 << 20;

/// What every handler can reach.
#[derive(Clone)]
pub(crate) struct AppState {
    /// The scheduler the API queues on and reads from.
    pub scheduler: Scheduler,
    /// Routes declared by plugins, served by forwarding to the plugin.
    pub plugin_routes: Option<Arc<dyn PluginRoutes>>,
    /// The plugin runtime, for `/plugins`.
    pub plugins: Option<crate::plugins::PluginRuntime>,
    /// The API tokens requests are checked against.
    pub auth: Arc<auth::Auth>,
}

/// The plugin runtime's side of HTTP: serve a request a plugin declared a route for.
pub(crate) trait PluginRoutes: Send + Sync {
    /// The route serving `method path`, if a plugin declared one. Looked up once per
    /// request, by the token guard, which checks the role the route needs and hands the
    /// route itself on to the fallback (in the request's extensions): the route served is
    /// the route whose role was checked, even when a plugin is swapped in between.
    fn find(&self, method: &str, path: &str) -> Option<RouteMatch>;
    /// Serves a request on `route`, found by [`find`](Self::find).
    fn serve<'a>(
        &'a self,
        route: RouteMatch,
        query: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = axum::response::Response> + Send + 'a>>;
    /// Declared routes, for the OpenAPI document: (method, path, plugin).
    fn routes(&self) -> Vec<(String, String, String)>;
}

/// The whole API over `state`: the host's routes, the plugins' routes as the fallback, the
/// token guard, JSON errors and the body limit.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .merge(tasks::routes())
        .merge(runs::routes())
        .merge(openapi::routes())
        .merge(plugins::routes())
        .merge(dashboard::routes(&state))
        .merge(metrics::routes())
        .merge(auth::routes())
        .fallback(plugin_fallback)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::guard))
        .layer(axum::middleware::from_fn(error::json_errors))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Anything the host does not serve itself goes to the plugin that declared it.
async fn plugin_fallback(
    axum::extract::State(state): axum::extract::State<AppState>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    route: Option<axum::Extension<RouteMatch>>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = match body {
        Ok(b) => b,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let query = parse_query(uri.query());
    if let Some(routes) = &state.plugin_routes {
        if let Some(axum::Extension(route)) = route {
            return routes.serve(route, query, body.to_vec()).await;
        }
        // A plugin's path asked with a method it does not declare there: 405, as the
        // host's own paths answer.
        let mut allowed: Vec<String> = routes
            .routes()
            .into_iter()
            .filter(|(_, path, _)| crate::plugins::Pattern::parse(path).is_ok_and(|p| p.matches(uri.path()).is_some()))
            .map(|(m, _, _)| m)
            .collect();
        if !allowed.is_empty() {
            allowed.sort();
            allowed.dedup();
            let allow = allowed.join(",");
            let mut resp = ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                format!("{} is not allowed on {} (allowed: {allow})", method, uri.path()),
            )
            .into_response();
            if let Ok(v) = axum::http::HeaderValue::from_str(&allow) {
                resp.headers_mut().insert(axum::http::header::ALLOW, v);
            }
            return resp;
        }
    }
    ApiError::not_found(format!("no route for {} {}", method, uri.path())).into_response()
}

/// Parses a JSON body, telling malformed JSON (400) from an empty body (null).
pub(crate) fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))
}

/// `a=1&b=2&b=3` as ordered pairs (repeated keys kept).
pub(crate) fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(q.unwrap_or("").as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}
