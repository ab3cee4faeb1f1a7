//! `raybot serve`: the HTTP side. `/healthz` reports the process and the state store; `/metrics`
//! is Prometheus text. Chat platform endpoints plug into [`router`], and [`harden`] puts the body
//! limit and the slow-client timeout around the whole application.

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::store::Store;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

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

/// How long a client may take to send a request's headers before its connection is closed (a
/// client trickling its headers would otherwise hold a connection for ever).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` over HTTP/1.1 until `stop` resolves, then lets the requests in
/// flight finish. Each connection must send its headers within [`HEADER_TIMEOUT`]; the body limit
/// and the request timeout of [`harden`] apply on top.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a moment instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            _ = &mut stop => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The largest request body raybot reads: 1 MiB. Slack's and Discord's payloads are a few KB (a
/// Slack interaction with a big message attached is tens of KB), so this leaves a wide margin while
/// one request can never hold more than this much memory.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How long one request may take from its first byte of body to the answer. Slack and Discord
/// want an answer within 3 s and raybot acknowledges within 2.5 s, so a request still running after
/// this is a client trickling its body (or a stuck handler): it is answered 408 and dropped.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Wraps the whole application (platform routes included) in the limits every endpoint needs:
/// - a body larger than [`MAX_BODY_BYTES`] is answered 413 Payload Too Large before it is read
///   when `Content-Length` says so, and as soon as the limit is crossed for a chunked body (the
///   body stops at the limit; see [`is_too_large`] for handlers that read it themselves);
/// - a request not answered within [`REQUEST_TIMEOUT`] is answered 408 Request Timeout.
pub fn harden(router: Router) -> Router {
    router
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
}

/// True when `err`, or an error it wraps, is the body limit of [`harden`] tripping: for code that
/// reads a body itself and must answer 413 rather than "unreadable".
pub fn is_too_large(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = e.source();
    }
    false
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
    if let Some(n) = s.store.requests() {
        s.metrics.store_requests(n);
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.encode())
}
