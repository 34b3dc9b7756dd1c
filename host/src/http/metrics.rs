//! `GET /metrics`: this host's metrics in the OpenMetrics text format, for Prometheus.
//! Gauges of shared state (queue depth, feed lag) are read from the store first; when the
//! store cannot answer, the rest is still served and the failure is counted in
//! `fluid_store_operation_errors_total`.

use super::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    if let Err(e) = st.scheduler.refresh_metrics().await {
        tracing::warn!(error = %e, "metrics: cannot read queue depth and feed lag");
    }
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], st.scheduler.metrics().encode())
}
