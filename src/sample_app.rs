//! The sample service the demo deploys, and the tiny weighted router in front of it.
//!
//! Both listen on 127.0.0.1 only. `scripts/deploy_backend.sh` starts them as
//! `raybot sample-app serve --port P --version V [--unhealthy]` and
//! `raybot sample-app router --port P --state FILE`.
//!
//! The router's state file (written by the scripts, re-read on every request):
//!
//! ```json
//! {
//!   "stable": {"port": 18081, "version": "v1.1"},
//!   "canary": {"port": 18082, "version": "v1.2"},
//!   "weight": 10,
//!   "previous": null
//! }
//! ```
//!
//! `canary` gets exactly `weight`% of the requests, spread evenly: request `n` (a counter over all
//! requests routed while a canary is set) goes to the canary iff
//! `floor((n+1)·w/100) > floor(n·w/100)`, so any 100 consecutive requests carry exactly `w` canary
//! requests and 20 requests at 10% carry exactly 2.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

/// Header that names the version which served a response.
pub const VERSION_HEADER: &str = "x-version";
/// Header the router adds: which backend (`stable` / `canary`) served the request.
pub const BACKEND_HEADER: &str = "x-backend";

/// One running instance of the sample app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    /// Loopback port it listens on.
    pub port: u16,
    /// Version it serves.
    pub version: String,
}

/// The router's state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteState {
    /// Gets all traffic the canary does not get.
    pub stable: Backend,
    /// Gets `weight`% of the traffic when set.
    #[serde(default)]
    pub canary: Option<Backend>,
    /// Canary share in percent, 0..=100 (larger values count as 100).
    #[serde(default)]
    pub weight: u8,
    /// The version before `stable`, kept for rollback; not routed to.
    #[serde(default)]
    pub previous: Option<Backend>,
}

/// Serves the sample app on `127.0.0.1:port` until SIGTERM / SIGINT.
///
/// `GET /healthz` answers 200 `{"status":"ok","version":V}`, or 503 `{"status":"unhealthy",…}` when
/// `healthy` is false; `GET /version` answers `V` as text; every response carries `x-version: V`.
pub async fn serve_app(port: u16, version: String, healthy: bool) -> anyhow::Result<()> {
    let app = app_router(&version, healthy)?;
    let listener = bind(port).await?;
    tracing::info!(port, %version, healthy, "sample app listening");
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await.context("serving the sample app")?;
    tracing::info!(port, %version, "sample app stopped");
    Ok(())
}

/// Serves the weighted router on `127.0.0.1:port` until SIGTERM / SIGINT.
///
/// Every request re-reads `state_file` (see the module docs) and forwards the GET path (and query)
/// to `http://127.0.0.1:<port><path>` of the stable or canary backend. Status, body, `content-type`
/// and `x-version` are passed through, and `x-backend: stable|canary` is added. An unreadable state
/// file answers 503, an unreachable backend 502, any method other than GET 405.
pub async fn serve_router(port: u16, state_file: PathBuf) -> anyhow::Result<()> {
    let app = router_router(state_file.clone())?;
    let listener = bind(port).await?;
    tracing::info!(port, state = %state_file.display(), "sample router listening");
    axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await.context("serving the sample router")?;
    tracing::info!(port, "sample router stopped");
    Ok(())
}

async fn bind(port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => {},
        res = tokio::signal::ctrl_c() => {
            if let Err(err) = res {
                tracing::warn!(%err, "cannot listen for SIGINT");
                std::future::pending::<()>().await;
            }
        },
    }
}

/// The sample app's routes (separate from binding so tests can serve it on port 0).
pub(crate) fn app_router(version: &str, healthy: bool) -> anyhow::Result<Router> {
    let header_value =
        HeaderValue::from_str(version).with_context(|| format!("version {version:?} is not a valid header value"))?;
    let health_version = version.to_string();
    let text_version = version.to_string();
    let root_version = version.to_string();
    let router = Router::new()
        .route(
            "/healthz",
            get(move || {
                let version = health_version.clone();
                async move {
                    if healthy {
                        (StatusCode::OK, Json(serde_json::json!({"status": "ok", "version": version})))
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            Json(serde_json::json!({"status": "unhealthy", "version": version})),
                        )
                    }
                }
            }),
        )
        .route(
            "/version",
            get(move || {
                let version = text_version.clone();
                async move { version }
            }),
        )
        .route(
            "/",
            get(move || {
                let version = root_version.clone();
                async move { format!("raybot sample app {version}\n") }
            }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(axum::middleware::map_response(move |mut res: Response| {
            let value = header_value.clone();
            async move {
                res.headers_mut().insert(HeaderName::from_static(VERSION_HEADER), value);
                res
            }
        }));
    Ok(router)
}

struct RouterState {
    state_file: PathBuf,
    client: reqwest::Client,
    counter: AtomicU64,
}

/// The router's routes (separate from binding so tests can serve it on port 0).
pub(crate) fn router_router(state_file: PathBuf) -> anyhow::Result<Router> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the router's HTTP client")?;
    let state = Arc::new(RouterState { state_file, client, counter: AtomicU64::new(0) });
    Ok(Router::new().fallback(forward).with_state(state))
}

/// Whether request number `n` goes to a canary that gets `weight`% of the traffic.
pub(crate) fn goes_to_canary(n: u64, weight: u8) -> bool {
    let w = u64::from(weight.min(100));
    (n + 1) * w / 100 > n * w / 100
}

async fn read_state(path: &std::path::Path) -> Result<RouteState, String> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| format!("cannot read route state {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("bad route state {}: {e}", path.display()))
}

async fn forward(State(state): State<Arc<RouterState>>, req: Request) -> Response {
    if req.method() != Method::GET {
        return (StatusCode::METHOD_NOT_ALLOWED, "only GET is routed\n").into_response();
    }
    let route = match read_state(&state.state_file).await {
        Ok(route) => route,
        Err(err) => {
            tracing::warn!(%err, "route state unavailable");
            return (StatusCode::SERVICE_UNAVAILABLE, format!("{err}\n")).into_response();
        }
    };
    let (backend, which) = match &route.canary {
        Some(canary) => {
            let n = state.counter.fetch_add(1, Ordering::Relaxed);
            if goes_to_canary(n, route.weight) { (canary, "canary") } else { (&route.stable, "stable") }
        }
        None => (&route.stable, "stable"),
    };
    let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str()).to_string();
    let url = format!("http://127.0.0.1:{}{path}", backend.port);

    let upstream = match state.client.get(&url).send().await {
        Ok(resp) => resp,
        Err(err) => return bad_gateway(which, backend, &err),
    };
    let status = upstream.status();
    let version = upstream.headers().get(VERSION_HEADER).cloned();
    let content_type = upstream.headers().get(header::CONTENT_TYPE).cloned();
    let body = match upstream.bytes().await {
        Ok(body) => body,
        Err(err) => return bad_gateway(which, backend, &err),
    };

    let mut res = Response::new(Body::from(body));
    *res.status_mut() = status;
    let headers = res.headers_mut();
    if let Some(v) = version {
        headers.insert(HeaderName::from_static(VERSION_HEADER), v);
    }
    if let Some(v) = content_type {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(HeaderName::from_static(BACKEND_HEADER), HeaderValue::from_static(which));
    res
}

fn bad_gateway(which: &'static str, backend: &Backend, err: &reqwest::Error) -> Response {
    tracing::warn!(which, port = backend.port, version = %backend.version, %err, "backend unreachable");
    let mut res = (
        StatusCode::BAD_GATEWAY,
        format!("{which} backend {} on port {} unreachable\n", backend.version, backend.port),
    )
        .into_response();
    res.headers_mut().insert(HeaderName::from_static(BACKEND_HEADER), HeaderValue::from_static(which));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn serve_on_free_port(app: Router) -> (u16, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (port, handle)
    }

    fn write_state(path: &std::path::Path, state: &RouteState) {
        std::fs::write(path, serde_json::to_vec_pretty(state).unwrap()).unwrap();
    }

    #[test]
    fn canary_split_is_exact_and_even() {
        let picks = |w: u8, count: u64| (0..count).filter(|&n| goes_to_canary(n, w)).count();
        assert_eq!(picks(10, 20), 2);
        assert_eq!(picks(50, 20), 10);
        assert_eq!(picks(0, 100), 0);
        assert_eq!(picks(100, 100), 100);
        assert_eq!(picks(200, 10), 10);
        for w in 0..=100u8 {
            assert_eq!(picks(w, 100), usize::from(w));
            // Any window of 100 consecutive requests carries exactly w.
            assert_eq!((37..137).filter(|&n| goes_to_canary(n, w)).count(), usize::from(w));
        }
    }

    #[tokio::test]
    async fn app_answers_health_version_and_header() {
        let client = reqwest::Client::new();
        let (port, h1) = serve_on_free_port(app_router("v1.2", true).unwrap()).await;
        let (bad, h2) = serve_on_free_port(app_router("v1.3", false).unwrap()).await;

        let res = client.get(format!("http://127.0.0.1:{port}/healthz")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()[VERSION_HEADER], "v1.2");
        let body = json_body(res).await;
        assert_eq!(body, serde_json::json!({"status": "ok", "version": "v1.2"}));

        let res = client.get(format!("http://127.0.0.1:{port}/version")).send().await.unwrap();
        assert_eq!(res.headers()[VERSION_HEADER], "v1.2");
        assert_eq!(res.text().await.unwrap(), "v1.2");

        let res = client.get(format!("http://127.0.0.1:{port}/nope")).send().await.unwrap();
        assert_eq!(res.status(), 404);
        assert_eq!(res.headers()[VERSION_HEADER], "v1.2");

        let res = client.get(format!("http://127.0.0.1:{bad}/healthz")).send().await.unwrap();
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()[VERSION_HEADER], "v1.3");
        let body = json_body(res).await;
        assert_eq!(body["status"], "unhealthy");
        assert_eq!(body["version"], "v1.3");
        h1.abort();
        h2.abort();

        assert!(app_router("bad\nversion", true).is_err());
    }

    async fn json_body(res: reqwest::Response) -> serde_json::Value {
        serde_json::from_slice(&res.bytes().await.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn router_splits_traffic_by_weight() {
        let dir = tempfile::tempdir().unwrap();
        let state_file = dir.path().join("route.json");
        let (stable_port, h1) = serve_on_free_port(app_router("v1.1", true).unwrap()).await;
        let (canary_port, h2) = serve_on_free_port(app_router("v1.2", true).unwrap()).await;
        let (router_port, h3) = serve_on_free_port(router_router(state_file.clone()).unwrap()).await;
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{router_port}/version?x=1");

        // No state file yet.
        let res = client.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 503);

        let mut state = RouteState {
            stable: Backend { port: stable_port, version: "v1.1".into() },
            canary: Some(Backend { port: canary_port, version: "v1.2".into() }),
            weight: 10,
            previous: None,
        };
        write_state(&state_file, &state);
        let mut counts = std::collections::BTreeMap::<String, u32>::new();
        for _ in 0..20 {
            let res = client.get(&url).send().await.unwrap();
            assert_eq!(res.status(), 200);
            let header = res.headers()[VERSION_HEADER].to_str().unwrap().to_string();
            let which = res.headers()[BACKEND_HEADER].to_str().unwrap().to_string();
            assert_eq!(which == "canary", header == "v1.2");
            let body = res.text().await.unwrap();
            assert_eq!(body, header);
            *counts.entry(header).or_default() += 1;
        }
        assert_eq!(counts.get("v1.2"), Some(&2), "{counts:?}");
        assert_eq!(counts.get("v1.1"), Some(&18), "{counts:?}");

        state.weight = 50;
        write_state(&state_file, &state);
        let mut canary = 0;
        for _ in 0..20 {
            let res = client.get(&url).send().await.unwrap();
            if res.headers()[VERSION_HEADER] == "v1.2" {
                canary += 1;
            }
        }
        assert_eq!(canary, 10);

        // Status and JSON body pass through.
        let res = client.get(format!("http://127.0.0.1:{router_port}/healthz")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        let body = json_body(res).await;
        assert_eq!(body["status"], "ok");

        // Unreachable canary → 502.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_port = closed.local_addr().unwrap().port();
        drop(closed);
        state.canary = Some(Backend { port: closed_port, version: "v1.2".into() });
        state.weight = 100;
        write_state(&state_file, &state);
        let res = client.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 502);
        assert_eq!(res.headers()[BACKEND_HEADER], "canary");

        state.canary = None;
        state.weight = 0;
        write_state(&state_file, &state);
        let res = client.get(&url).send().await.unwrap();
        assert_eq!(res.headers()[VERSION_HEADER], "v1.1");

        let res = client.post(&url).send().await.unwrap();
        assert_eq!(res.status(), 405);
        h1.abort();
        h2.abort();
        h3.abort();
    }

    #[test]
    fn route_state_accepts_the_documented_shape() {
        let state: RouteState = serde_json::from_str(
            r#"{"stable": {"port": 1, "version": "a"}, "canary": null, "weight": 0, "previous": null}"#,
        )
        .unwrap();
        assert_eq!(state.stable.version, "a");
        assert!(state.canary.is_none());
        let state: RouteState = serde_json::from_str(r#"{"stable": {"port": 1, "version": "a"}}"#).unwrap();
        assert_eq!(state.weight, 0);
    }
}
