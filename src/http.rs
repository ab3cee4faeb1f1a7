//! `raybot serve`: the HTTP side. `/healthz` reports the process and the state store; `/metrics`
//! is Prometheus text. Chat platform endpoints plug into [`router`].

use std::sync::Arc;

use crate::metrics::Metrics;
use crate::store::Store;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// Checked by `/healthz` (2 s limit).
    pub store: Arc<dyn Store>,
    /// Rendered by `/metrics`; the same instance the driver updates.
    pub metrics: Arc<Metrics>,
}

/// The HTTP application (tests call it without a socket).
pub fn router(state: AppState) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/metrics", get(metrics)).with_state(state)
}

async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    let check = tokio::time::timeout(std::time::Duration::from_secs(2), s.store.health()).await;
    match check {
        Ok(Ok(())) => (StatusCode::OK, axum::Json(serde_json::json!({"status": "ok", "store": "ok"}))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "store unhealthy");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"status": "degraded", "store": "unavailable"})),
            )
        }
        Err(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({"status": "degraded", "store": "timeout"})))
        }
    }
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.encode())
}
