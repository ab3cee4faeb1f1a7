//! HTTP prober for health and smoke checks: `count` sequential GETs against one URL.
//!
//! Figures reported in [`ProbeReport`]:
//! - `ok`: answers with a 2xx status whose body arrived within the per-request timeout;
//! - latencies (`p50_ms`, `p95_ms`, `max_ms`): nearest-rank percentiles over the requests that got an
//!   HTTP answer (any status, body read completely). Transport errors and timeouts have no latency:
//!   they show up in `statuses["error"]` and `errors` instead, so a dead backend cannot make the
//!   latency look good or bad. With no answer at all the latencies are 0;
//! - `statuses`: status code as a string (`"200"`, `"503"`) or `"error"` → count;
//! - `versions`: when `version_header` is set, its value on every answer → count, `"(none)"` when an
//!   answer did not carry it (so `version_share` is a share of all answers);
//! - `errors`: the first five distinct transport error texts.

use std::time::{Duration, Instant};

use crate::engine::reports::ProbeReport;

/// Key in [`ProbeReport::statuses`] for requests that got no HTTP answer.
pub const STATUS_ERROR: &str = "error";
/// Key in [`ProbeReport::versions`] for answers without the version header.
pub const VERSION_NONE: &str = "(none)";
/// How many distinct transport errors a report keeps.
const MAX_ERRORS: usize = 5;

/// One probe run.
#[derive(Debug, Clone)]
pub struct ProbeRequest {
    /// Full URL, e.g. `http://127.0.0.1:18080/healthz`.
    pub url: String,
    /// Number of GET requests, sent one after the other.
    pub count: u32,
    /// Time between the starts of two consecutive requests (a slower request delays the next one,
    /// it is never sent in parallel).
    pub interval: Duration,
    /// Limit for one request, from connecting until the body has been read.
    pub timeout: Duration,
    /// Response header that names the serving version, e.g. `x-version`.
    pub version_header: Option<String>,
}

/// Runs the probe and reports its figures. Never fails: every problem is a figure in the report.
pub async fn run_probe(client: &reqwest::Client, req: &ProbeRequest) -> ProbeReport {
    let mut report = ProbeReport { url: req.url.clone(), ..ProbeReport::default() };
    let mut latencies: Vec<u64> = Vec::with_capacity(req.count.min(1024) as usize);
    let first = tokio::time::Instant::now();

    for i in 0..req.count {
        if i > 0 {
            let due = first + req.interval.saturating_mul(i);
            tokio::time::sleep_until(due).await;
        }
        report.total += 1;
        let started = Instant::now();
        match get_once(client, req).await {
            Ok((status, version)) => {
                latencies.push(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
                *report.statuses.entry(status.as_u16().to_string()).or_insert(0) += 1;
                if status.is_success() {
                    report.ok += 1;
                }
                if req.version_header.is_some() {
                    let key = version.unwrap_or_else(|| VERSION_NONE.to_string());
                    *report.versions.entry(key).or_insert(0) += 1;
                }
            }
            Err(err) => {
                *report.statuses.entry(STATUS_ERROR.to_string()).or_insert(0) += 1;
                if report.errors.len() < MAX_ERRORS && !report.errors.contains(&err) {
                    report.errors.push(err);
                }
            }
        }
    }

    latencies.sort_unstable();
    report.p50_ms = nearest_rank(&latencies, 50);
    report.p95_ms = nearest_rank(&latencies, 95);
    report.max_ms = latencies.last().copied().unwrap_or(0);
    report
}

/// One GET: status and version header value, or a transport error text.
async fn get_once(
    client: &reqwest::Client,
    req: &ProbeRequest,
) -> Result<(reqwest::StatusCode, Option<String>), String> {
    let response = client.get(&req.url).timeout(req.timeout).send().await.map_err(|e| error_text(e, req.timeout))?;
    let status = response.status();
    let version = req
        .version_header
        .as_deref()
        .and_then(|name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(|v| v.trim().to_string()));
    // The answer counts only once its body has arrived (within the same timeout).
    response.bytes().await.map_err(|e| error_text(e, req.timeout))?;
    Ok((status, version))
}

/// `reqwest`'s own message is generic ("error sending request for url …"); add the causes.
fn error_text(err: reqwest::Error, timeout: Duration) -> String {
    if err.is_timeout() {
        return format!("timed out after {} ms", timeout.as_millis());
    }
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Nearest-rank percentile of sorted values: the smallest value such that at least `pct`% of the
/// values are less than or equal to it. 0 for no values.
fn nearest_rank(sorted: &[u64], pct: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let n = sorted.len() as u64;
    let rank = (pct * n).div_ceil(100).max(1);
    let idx = usize::try_from(rank - 1).unwrap_or(usize::MAX);
    sorted[idx.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use axum::Router;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::get;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(nearest_rank(&[], 50), 0);
        assert_eq!(nearest_rank(&[7], 95), 7);
        let v: Vec<u64> = (1..=10).collect();
        assert_eq!(nearest_rank(&v, 50), 5);
        assert_eq!(nearest_rank(&v, 95), 10);
        assert_eq!(nearest_rank(&v, 90), 9);
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(nearest_rank(&v, 95), 95);
        assert_eq!(nearest_rank(&v, 50), 50);
    }

    /// Every 5th request (the 5th, 10th, …) answers 500; `/slow` takes 300 ms.
    async fn server() -> (String, tokio::task::JoinHandle<()>) {
        let hits = Arc::new(AtomicU32::new(0));
        let app = Router::new()
            .route(
                "/healthz",
                get(move || {
                    let hits = hits.clone();
                    async move {
                        let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
                        let status = if n % 5 == 0 { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
                        (status, [("x-version", "v9.9")], "ok").into_response()
                    }
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "late"
                }),
            )
            .route("/plain", get(|| async { "no version header" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (format!("http://{addr}"), handle)
    }

    fn probe(url: String, count: u32) -> ProbeRequest {
        ProbeRequest {
            url,
            count,
            interval: Duration::from_millis(5),
            timeout: Duration::from_secs(2),
            version_header: Some("x-version".into()),
        }
    }

    #[tokio::test]
    async fn counts_statuses_versions_and_latency() {
        let (base, server) = server().await;
        let client = reqwest::Client::new();
        let report = run_probe(&client, &probe(format!("{base}/healthz"), 20)).await;
        server.abort();
        assert_eq!(report.url, format!("{base}/healthz"));
        assert_eq!(report.total, 20);
        assert_eq!(report.ok, 16);
        assert_eq!(report.statuses.get("200"), Some(&16));
        assert_eq!(report.statuses.get("500"), Some(&4));
        assert_eq!(report.statuses.get("error"), None);
        assert_eq!(report.versions.get("v9.9"), Some(&20));
        assert!((report.success_rate() - 0.8).abs() < 1e-9);
        assert!((report.version_share("v9.9") - 1.0).abs() < 1e-9);
        assert!(report.errors.is_empty());
        assert!(report.p50_ms <= report.p95_ms && report.p95_ms <= report.max_ms);
        assert!(report.max_ms < 2000);
    }

    #[tokio::test]
    async fn interval_spaces_requests() {
        let (base, server) = server().await;
        let client = reqwest::Client::new();
        let mut req = probe(format!("{base}/plain"), 4);
        req.interval = Duration::from_millis(100);
        let started = Instant::now();
        let report = run_probe(&client, &req).await;
        server.abort();
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(report.ok, 4);
        assert_eq!(report.versions.get(VERSION_NONE), Some(&4));
        assert_eq!(report.version_share("v9.9"), 0.0);
    }

    #[tokio::test]
    async fn timeouts_are_errors_without_latency() {
        let (base, server) = server().await;
        let client = reqwest::Client::new();
        let mut req = probe(format!("{base}/slow"), 3);
        req.timeout = Duration::from_millis(100);
        let report = run_probe(&client, &req).await;
        server.abort();
        assert_eq!(report.total, 3);
        assert_eq!(report.ok, 0);
        assert_eq!(report.statuses.get("error"), Some(&3));
        assert_eq!(report.errors, vec!["timed out after 100 ms".to_string()]);
        assert_eq!((report.p50_ms, report.p95_ms, report.max_ms), (0, 0, 0));
        assert!(report.versions.is_empty());
    }

    #[tokio::test]
    async fn connection_refused_is_reported() {
        // Bind then drop: the port is (almost certainly) closed afterwards.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = reqwest::Client::new();
        let report = run_probe(&client, &probe(format!("http://{addr}/healthz"), 3)).await;
        assert_eq!(report.total, 3);
        assert_eq!(report.ok, 0);
        assert_eq!(report.statuses.get("error"), Some(&3));
        assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
        assert!(report.errors[0].to_lowercase().contains("refused"), "{:?}", report.errors);
        assert_eq!(report.success_rate(), 0.0);
    }

    #[tokio::test]
    async fn bad_url_and_zero_count() {
        let client = reqwest::Client::new();
        let report = run_probe(&client, &probe("not a url".into(), 2)).await;
        assert_eq!(report.total, 2);
        assert_eq!(report.statuses.get("error"), Some(&2));
        assert_eq!(report.errors.len(), 1);
        let report = run_probe(&client, &probe("http://127.0.0.1:1/".into(), 0)).await;
        assert_eq!(report.total, 0);
        assert_eq!(report.success_rate(), 0.0);
    }
}
