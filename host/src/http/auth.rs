//! Who may do what: API tokens with roles, checked on every request.
//!
//! A token is `fluid_` and 64 hex digits, shown once by `fluid token create`; the database
//! keeps only its SHA-256 (so every host sharing the database knows it) and whether it was
//! revoked. A request sends it as `Authorization: Bearer <token>`. Roles are ordered:
//! `read` (every GET), `operate` (queue, cancel, enable and disable tasks, re-enable
//! plugins), `admin` (clearing queues, and anything else that changes state). A plugin's
//! route needs the role its plugin declared (`route-roles`), else `read` for GET and
//! `operate` for other methods. No token: 401; a role too low: 403; both
//! `{"detail": ...}`.
//!
//! Tokens are enforced as soon as one exists. A host on a loopback address may run
//! without any; on any other address it refuses to start without one unless told
//! `--insecure-no-auth` (see `check_exposure`). Every state-changing request is audited:
//! a `fluid::audit` log line (token id and role, never the token) and a metric.

use super::AppState;
use crate::plugins::sha256;
use crate::store::Store;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub use crate::types::Role;

/// How often the hosts' tokens are read again (a revocation takes effect within this).
const REFRESH: Duration = Duration::from_secs(2);

struct Known {
    id: String,
    role: Role,
    /// SHA-256 of the token, hex, as stored.
    hash: String,
}

/// The tokens this host accepts, read from the database.
pub(crate) struct Auth {
    store: Store,
    /// Whether `/metrics` answers without a token.
    metrics_open: bool,
    known: RwLock<(Vec<Known>, Instant)>,
    /// Set once tokens were in force, or from the start on an address others can reach:
    /// from then on a request needs a token even when none is valid any more (revoking
    /// the last one closes the API rather than opening it).
    sticky: std::sync::atomic::AtomicBool,
    /// One refresh at a time; when the last one was tried (a failed one too), so requests
    /// with unknown tokens cannot make every request read the database.
    refreshing: tokio::sync::Mutex<Instant>,
    /// `--insecure-no-auth` on an address others can reach: anyone, from anywhere.
    open_to_all: std::sync::atomic::AtomicBool,
}

impl Auth {
    /// The tokens of `store`, read now and again every [`REFRESH`].
    pub(crate) async fn load(store: Store, metrics_open: bool) -> anyhow::Result<Arc<Auth>> {
        let auth = Arc::new(Auth {
            store,
            metrics_open,
            known: RwLock::new((Vec::new(), Instant::now())),
            sticky: false.into(),
            refreshing: tokio::sync::Mutex::new(Instant::now()),
            open_to_all: false.into(),
        });
        auth.refresh().await?;
        let weak = Arc::downgrade(&auth);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REFRESH).await;
                let Some(auth) = weak.upgrade() else { return };
                if let Err(e) = auth.refresh().await {
                    tracing::warn!(error = %e, "cannot read the API tokens; the last ones read stay in force");
                }
            }
        });
        Ok(auth)
    }

    async fn refresh(&self) -> anyhow::Result<()> {
        let mut tried = self.refreshing.lock().await;
        *tried = Instant::now();
        let rows = self.store.tokens().await?;
        let known = rows
            .into_iter()
            .filter(|t| t.revoked_at.is_none())
            .filter_map(|t| Some(Known { role: Role::parse(&t.role)?, hash: t.hash.to_ascii_lowercase(), id: t.id }))
            .collect();
        let known: Vec<Known> = known;
        if !known.is_empty() {
            self.sticky.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        *self.known.write().unwrap() = (known, Instant::now());
        drop(tried);
        Ok(())
    }

    /// Reads the tokens again unless that was tried a moment ago (by any request).
    async fn refresh_if_stale(&self) {
        if self.refreshing.try_lock().is_ok_and(|t| t.elapsed() < Duration::from_millis(250)) {
            return;
        }
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "cannot read the API tokens");
        }
    }

    /// Whether `/metrics` answers without a token (`--metrics-open`).
    pub(crate) fn metrics_open(&self) -> bool {
        self.metrics_open
    }

    /// Whether requests need a token: once one exists (and from then on).
    pub(crate) fn enforced(&self) -> bool {
        self.sticky.load(std::sync::atomic::Ordering::Relaxed) || !self.known.read().unwrap().0.is_empty()
    }

    /// [`Auth::enforced`], reading the tokens again first when none were known a moment
    /// ago: the first token made (on any host) is in force within a moment, not a refresh.
    async fn enforced_now(&self) -> bool {
        if self.enforced() {
            return true;
        }
        self.refresh_if_stale().await;
        self.enforced()
    }

    /// The id and role of `token`, if it is a valid one. Every known hash is compared, in
    /// time that does not depend on where they differ.
    fn identify(&self, token: &str) -> Option<(String, Role)> {
        let hash = sha256(token.as_bytes());
        let known = self.known.read().unwrap();
        let mut found = None;
        for k in &known.0 {
            if constant_time_eq(k.hash.as_bytes(), hash.as_bytes()) {
                found = Some((k.id.clone(), k.role));
            }
        }
        found
    }

    /// A token this host has not read yet (just created, maybe on another host): read
    /// them again, at most a few times a second.
    async fn identify_fresh(&self, token: &str) -> Option<(String, Role)> {
        if let Some(found) = self.identify(token) {
            return Some(found);
        }
        self.refresh_if_stale().await;
        self.identify(token)
    }
}

/// A new API token of `role`, named `name` (a label for listings and the audit log):
/// the secret to hand its holder once, and the row to store with
/// [`Store::add_token`](crate::store::Store::add_token), which holds only its hash. What
/// `fluid token create` does, for applications that provision tokens themselves.
pub fn mint(role: Role, name: &str) -> (String, crate::store::TokenRow) {
    let secret = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let token = format!("fluid_{secret}");
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let row = crate::store::TokenRow {
        id,
        name: name.to_string(),
        role: role.as_str().to_string(),
        hash: sha256(token.as_bytes()),
        created_at: crate::time::now_us(),
        revoked_at: None,
    };
    (token, row)
}

/// Refuses to serve on an address others can reach without tokens, unless told to.
pub(crate) fn check_exposure(bind: std::net::SocketAddr, auth: &Auth, insecure_no_auth: bool) -> anyhow::Result<()> {
    if bind.ip().is_loopback() {
        return Ok(());
    }
    if auth.enforced() {
        // Others can reach it: tokens stay in force even if every one is revoked.
        auth.sticky.store(true, std::sync::atomic::Ordering::Relaxed);
        return Ok(());
    }
    if insecure_no_auth {
        auth.open_to_all.store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(%bind, "the API is served WITHOUT authentication on an address others can reach (--insecure-no-auth): anyone who reaches it can queue, cancel and clear runs and read every run's params");
        return Ok(());
    }
    anyhow::bail!(
        "refusing to serve the API on {bind} without API tokens: create one with `fluid token create --role admin` (the database keeps only its hash), or pass --insecure-no-auth to serve it open"
    )
}

/// The role a request needs; None: open (the dashboard's static files).
pub(crate) fn needed(method: &Method, path: &str, query: &str, metrics_open: bool) -> Option<Role> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if path == "/" || segments[0] == "ui" || (segments[0] == "metrics" && metrics_open) {
        return None;
    }
    if method == Method::GET || method == Method::HEAD {
        return Some(Role::Read);
    }
    let operate = match (method.as_str(), segments.as_slice()) {
        ("POST" | "PATCH", ["tasks", _]) | ("POST", ["tasks", _, "batch"]) => true,
        ("POST", ["task-runs", _, "cancel"]) => true,
        // Skipping the events a quarantined plugin holds drops them for good: admin's.
        ("POST", ["plugins", _, "enable"]) => !super::parse_query(Some(query)).iter().any(|(k, v)| k == "skip_events" && v != "false"),
        // A plugin's own routes, in its namespace or at its root paths (the host's paths
        // are all known here).
        (_, ["plugins", _, "routes", ..]) => true,
        (_, [first, ..]) => !crate::plugins::HOST_SEGMENTS.contains(first),
        _ => false,
    };
    Some(if operate { Role::Operate } else { Role::Admin })
}

/// The middleware: lets a request through when its token's role suffices, and audits
/// every state-changing request.
pub(crate) async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let auth = state.auth.clone();
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let changes = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let query = req.uri().query().unwrap_or("").to_string();
    // A plugin's route needs what its plugin declared (by default, by its method).
    let plugin_route = state.plugin_routes.as_ref().and_then(|r| r.find(method.as_str(), &path));
    let need = plugin_route.as_ref().map(|r| r.role).or_else(|| needed(&method, &path, &query, auth.metrics_open));
    // Without tokens (a loopback host), only requests that name a loopback host: a web
    // page the operator visits cannot drive the API (a cross-site request, DNS rebinding).
    if need.is_some() && !auth.enforced_now().await && !auth.open_to_all.load(std::sync::atomic::Ordering::Relaxed) && !from_loopback(&req)
    {
        let resp =
            refuse(StatusCode::FORBIDDEN, "without API tokens this host answers only requests to a loopback address, from no other site");
        audit(&state, changes, None, &method, &path, resp.status());
        return resp;
    }
    let enforced = need.is_some() && auth.enforced_now().await;
    let who = match (need, enforced) {
        (Some(need), true) => {
            let token = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
            let who = match token {
                Some(t) => auth.identify_fresh(t.trim()).await,
                None => None,
            };
            match who {
                None => {
                    let resp = refuse(StatusCode::UNAUTHORIZED, "a valid API token is needed: send `Authorization: Bearer <token>`");
                    audit(&state, changes, None, &method, &path, resp.status());
                    return resp;
                }
                Some((id, role)) if role < need => {
                    let resp = refuse(
                        StatusCode::FORBIDDEN,
                        &format!("this token's role, {}, may not do this: {} is needed", role.as_str(), need.as_str()),
                    );
                    audit(&state, changes, Some((&id, role)), &method, &path, resp.status());
                    return resp;
                }
                Some(found) => Some(found),
            }
        }
        _ => None,
    };
    let mut req = req;
    req.extensions_mut().insert(Caller { enforced, who: who.clone() });
    if let Some(route) = plugin_route {
        req.extensions_mut().insert(route);
    }
    let resp = next.run(req).await;
    audit(&state, changes, who.as_ref().map(|(id, role)| (id.as_str(), *role)), &method, &path, resp.status());
    resp
}

/// Who made a request, for the handlers (`GET /token`).
#[derive(Clone)]
struct Caller {
    enforced: bool,
    who: Option<(String, Role)>,
}

/// The auth routes: `GET /token`.
pub(crate) fn routes() -> axum::Router<AppState> {
    axum::Router::new().route("/token", axum::routing::get(whoami))
}

/// `GET /token`: whether tokens are in force and the role of the one sent (the dashboard
/// shows only what that role may do). Without tokens in force, anyone may do anything.
async fn whoami(axum::Extension(caller): axum::Extension<Caller>) -> axum::Json<serde_json::Value> {
    let (id, role) = match &caller.who {
        Some((id, role)) => (Some(id.as_str()), *role),
        None => (None, Role::Admin),
    };
    axum::Json(serde_json::json!({ "enforced": caller.enforced, "role": role.as_str(), "id": id }))
}

/// Whether the request names a loopback host (`Host`), and comes from no other site
/// (`Origin`, when the browser sends one).
fn from_loopback(req: &Request) -> bool {
    let loopback = |authority: &str| {
        let host =
            authority.rsplit_once(':').map_or(authority, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { authority });
        matches!(host.trim_start_matches('[').trim_end_matches(']'), "localhost" | "127.0.0.1" | "::1")
    };
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let host_ok = header(header::HOST).or(req.uri().authority().map(|a| a.as_str())).is_none_or(loopback);
    let origin_ok =
        header(header::ORIGIN).is_none_or(|o| o.split_once("://").is_some_and(|(_, rest)| loopback(rest.trim_end_matches('/'))));
    host_ok && origin_ok
}

fn refuse(status: StatusCode, detail: &str) -> Response {
    let mut resp = (status, axum::Json(serde_json::json!({ "detail": detail }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    }
    resp
}

/// One line and one count per state-changing request: who (token id and role, never the
/// token), what, and how it ended.
fn audit(state: &AppState, changes: bool, who: Option<(&str, Role)>, method: &Method, path: &str, status: StatusCode) {
    if !changes {
        return;
    }
    let (id, role) = who.map_or(("none", "none"), |(id, role)| (id, role.as_str()));
    tracing::info!(target: "fluid::audit", token = id, role, method = %method, path, status = status.as_u16(), "request");
    state.scheduler.metrics().audited(role, method.as_str(), status.as_u16());
}

/// Equal in time that does not depend on where they differ (they have the same length:
/// two hex SHA-256).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_needs_the_role_its_effect_calls_for() {
        let r = |m: Method, p: &str| needed(&m, p, "", false);
        assert_eq!(r(Method::GET, "/tasks"), Some(Role::Read));
        assert_eq!(r(Method::GET, "/task-history"), Some(Role::Read), "a plugin's GET route");
        assert_eq!(r(Method::GET, "/metrics"), Some(Role::Read));
        assert_eq!(needed(&Method::GET, "/metrics", "", true), None, "left open when configured");
        assert_eq!(
            needed(&Method::POST, "/plugins/db/enable", "skip_events=true", false),
            Some(Role::Admin),
            "dropping held events is admin's"
        );
        assert_eq!(r(Method::GET, "/ui/app.js"), None);
        assert_eq!(r(Method::POST, "/tasks/add"), Some(Role::Operate));
        assert_eq!(r(Method::PATCH, "/tasks/add"), Some(Role::Operate));
        assert_eq!(r(Method::POST, "/tasks/add/batch"), Some(Role::Operate));
        assert_eq!(r(Method::POST, "/task-runs/abc/cancel"), Some(Role::Operate));
        assert_eq!(r(Method::POST, "/plugins/db/enable"), Some(Role::Operate));
        assert_eq!(r(Method::POST, "/plugins/x/routes/hook"), Some(Role::Operate), "a plugin's route");
        assert_eq!(r(Method::POST, "/plugins/x/other"), Some(Role::Admin), "the host's own, unknown");
        assert_eq!(r(Method::POST, "/hook"), Some(Role::Operate), "a plugin's root route");
        assert_eq!(r(Method::DELETE, "/tasks-queue"), Some(Role::Admin));
        assert_eq!(r(Method::DELETE, "/tasks-queue/high"), Some(Role::Admin));
    }

    #[test]
    fn a_minted_token_is_stored_as_its_hash_only() {
        let (token, row) = mint(Role::Operate, "ci");
        assert!(token.starts_with("fluid_") && token.len() == 6 + 64);
        assert!(!row.hash.contains(&token[6..]) && row.hash == sha256(token.as_bytes()));
        let (h, other) = (sha256(token.as_bytes()), sha256(b"other"));
        assert!(constant_time_eq(h.as_bytes(), h.as_bytes()) && !constant_time_eq(h.as_bytes(), other.as_bytes()));
    }
}
