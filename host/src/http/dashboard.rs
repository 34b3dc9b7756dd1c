//! The web dashboard: one hand-written page (`dashboard/index.html`, `app.js`, `app.css`,
//! no build step, no framework) that reads and drives the JSON API in the browser: tasks
//! with their enabled switch and "run now", queue depth, the db plugin's history with its
//! filters and cursor paging, one run's detail and cancel, plugins with their counters and
//! re-enable, and a throughput chart.
//!
//! Routes: `GET /` redirects to `/ui/`; `GET /ui`, `/ui/`, `/ui/app.js`, `/ui/app.css` serve
//! the page, always with `cache-control: no-cache` (a new binary must never run an old
//! script); `GET /throughput?minutes=N` serves the chart's data (see [`throughput`]).
//!
//! The assets are embedded in the binary (`include_str!`), so `fluid serve` needs nothing
//! beside it. To edit them without rebuilding, start the host with `FLUID_DASHBOARD_DIR`
//! pointing at a folder holding the three files (`host/src/http/dashboard` in a checkout):
//! they are then read from disk on every request, and a reload of the page shows the edit.

mod throughput;

use super::{ApiError, AppState};
use axum::Router;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;

/// One embedded file: its name in the assets folder, content type and embedded text.
struct Asset {
    file: &'static str,
    content_type: &'static str,
    embedded: &'static str,
}

const INDEX: Asset = Asset { file: "index.html", content_type: "text/html; charset=utf-8", embedded: include_str!("dashboard/index.html") };
const SCRIPT: Asset = Asset { file: "app.js", content_type: "text/javascript; charset=utf-8", embedded: include_str!("dashboard/app.js") };
const STYLE: Asset = Asset { file: "app.css", content_type: "text/css; charset=utf-8", embedded: include_str!("dashboard/app.css") };

/// What the dashboard's handlers share.
#[derive(Clone)]
struct Dashboard {
    /// `FLUID_DASHBOARD_DIR`, read once when the routes are built.
    assets_dir: Option<Arc<PathBuf>>,
    throughput: Arc<throughput::Throughput>,
}

/// The dashboard's routes. Starts counting finished runs for the throughput chart now, so
/// the chart covers the minutes before the page was first opened.
pub fn routes(state: &AppState) -> Router<AppState> {
    let dashboard = Dashboard {
        assets_dir: std::env::var_os("FLUID_DASHBOARD_DIR").filter(|d| !d.is_empty()).map(|d| Arc::new(PathBuf::from(d))),
        throughput: throughput::Throughput::start(&state.scheduler),
    };
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|State(d): State<Dashboard>| async move { d.serve(&INDEX).await }))
        .route("/ui/", get(|State(d): State<Dashboard>| async move { d.serve(&INDEX).await }))
        .route("/ui/app.js", get(|State(d): State<Dashboard>| async move { d.serve(&SCRIPT).await }))
        .route("/ui/app.css", get(|State(d): State<Dashboard>| async move { d.serve(&STYLE).await }))
        .route("/throughput", get(|State(d): State<Dashboard>, q| async move { throughput::handler(&d.throughput, q) }))
        .with_state(dashboard)
}

impl Dashboard {
    async fn serve(&self, asset: &'static Asset) -> Response {
        let body: Cow<'static, str> = match &self.assets_dir {
            None => Cow::Borrowed(asset.embedded),
            Some(dir) => {
                let path = dir.join(asset.file);
                match tokio::fs::read_to_string(&path).await {
                    Ok(text) => Cow::Owned(text),
                    Err(e) => {
                        return ApiError::not_found(format!("FLUID_DASHBOARD_DIR: cannot read {}: {e}", path.display())).into_response();
                    }
                }
            }
        };
        ([(CONTENT_TYPE, asset.content_type), (CACHE_CONTROL, "no-cache")], body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    async fn text(r: Response) -> String {
        String::from_utf8(axum::body::to_bytes(r.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn serves_the_embedded_assets_or_the_folder_named_by_fluid_dashboard_dir() {
        let embedded = Dashboard { assets_dir: None, throughput: Default::default() };
        let r = embedded.serve(&SCRIPT).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert_eq!(r.headers()[CACHE_CONTROL], "no-cache");
        assert_eq!(text(r).await, SCRIPT.embedded);

        let dir = std::env::temp_dir().join(format!("fluid-dashboard-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("app.js"), "// edited").unwrap();
        let on_disk = Dashboard { assets_dir: Some(Arc::new(dir.clone())), throughput: Default::default() };
        let r = on_disk.serve(&SCRIPT).await;
        assert_eq!((r.status(), r.headers()[CACHE_CONTROL].clone()), (StatusCode::OK, "no-cache".parse().unwrap()));
        assert_eq!(text(r).await, "// edited");
        // A file missing from the folder is an error naming it, not the embedded copy.
        let r = on_disk.serve(&STYLE).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(text(r).await.contains("app.css"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
