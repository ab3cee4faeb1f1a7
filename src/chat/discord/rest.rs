//! The few Discord REST calls raybot makes, with Discord's rate limits honoured.
//!
//! Why not serenity's `Http`: in serenity 0.12 the REST base override (`HttpBuilder::proxy`) is
//! applied only when serenity's own rate limiter is disabled (a proxy is expected to rate-limit),
//! so one cannot both point it at another base URL and keep its limiter. This client does both:
//! it reads `X-RateLimit-Remaining` / `X-RateLimit-Reset-After` per route and waits when a bucket
//! is empty, and on a 429 it waits `retry_after` (the `Retry-After` header, else the JSON body's
//! `retry_after`; a global limit holds every route) and tries again.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::time::Instant;

/// Discord's REST API base when `DISCORD_API_URL` is not set.
pub const DISCORD: &str = "https://discord.com";

/// How often one call is tried when Discord keeps answering 429.
const ATTEMPTS: usize = 5;

/// A REST call that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// Discord answered with an error status (its JSON message kept, never the token).
    #[error("{method} {route}: HTTP {status}: {message}")]
    Status {
        /// The HTTP method.
        method: Method,
        /// The route, ids included (no token: interaction tokens are cut out).
        route: String,
        /// The status Discord answered.
        status: u16,
        /// Discord's `message`.
        message: String,
    },
    /// The request did not get an answer.
    #[error("{route}: {error}")]
    Transport {
        /// The route.
        route: String,
        /// What went wrong.
        error: String,
    },
}

/// A Discord REST client (bot token auth, API v10).
pub struct Rest {
    client: reqwest::Client,
    base: String,
    auth: String,
    /// Per bucket (route without message ids): when it may be used again.
    blocked: tokio::sync::Mutex<HashMap<String, Instant>>,
}

impl std::fmt::Debug for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rest").field("base", &self.base).finish_non_exhaustive()
    }
}

impl Rest {
    /// A client for `base` (e.g. [`DISCORD`]) authenticating with the bot `token`.
    pub fn new(base: &str, token: &str) -> Rest {
        let token = token.trim();
        let auth = if token.starts_with("Bot ") { token.to_string() } else { format!("Bot {token}") };
        Rest {
            client: reqwest::Client::builder()
                .user_agent("DiscordBot (https://github.com/raybot, 0.1)")
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
            base: format!("{}/api/v10", base.trim_end_matches('/')),
            auth,
            blocked: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Calls `method path` (path under `/api/v10`, e.g. `/channels/1/messages`) with a JSON body;
    /// returns the JSON answer (`null` for 204).
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, RestError> {
        let bucket = bucket(&method, path);
        let route = redact(path);
        for attempt in 1..=ATTEMPTS {
            self.wait(&bucket).await;
            let mut req = self.client.request(method.clone(), format!("{}{path}", self.base));
            req = req.header("authorization", &self.auth);
            if let Some(b) = body {
                req = req.json(b);
            }
            let res = req
                .send()
                .await
                .map_err(|e| RestError::Transport { route: route.clone(), error: e.without_url().to_string() })?;
            let status = res.status();
            let headers = res.headers().clone();
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
            let text = res.text().await.unwrap_or_default();
            let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if status == StatusCode::TOO_MANY_REQUESTS && attempt < ATTEMPTS {
                let secs = header("retry-after")
                    .and_then(|v| v.parse::<f64>().ok())
                    .or_else(|| json["retry_after"].as_f64())
                    .unwrap_or(1.0)
                    .clamp(0.0, 60.0);
                let global = header("x-ratelimit-global").is_some() || json["global"] == true;
                tracing::info!(route = %route, retry_after = secs, global, "discord rate limit; waiting");
                self.block(if global { "*" } else { &bucket }, Duration::from_secs_f64(secs)).await;
                continue;
            }
            if header("x-ratelimit-remaining").as_deref() == Some("0") {
                if let Some(after) = header("x-ratelimit-reset-after").and_then(|v| v.parse::<f64>().ok()) {
                    self.block(&bucket, Duration::from_secs_f64(after.clamp(0.0, 60.0))).await;
                }
            }
            if !status.is_success() {
                let message = json["message"].as_str().unwrap_or(status.canonical_reason().unwrap_or("")).to_string();
                return Err(RestError::Status { method, route, status: status.as_u16(), message });
            }
            return Ok(json);
        }
        Err(RestError::Status { method, route, status: 429, message: "still rate limited".into() })
    }

    async fn wait(&self, bucket: &str) {
        let until = {
            let b = self.blocked.lock().await;
            [b.get("*"), b.get(bucket)].into_iter().flatten().max().copied()
        };
        if let Some(t) = until {
            tokio::time::sleep_until(t).await;
        }
    }

    async fn block(&self, bucket: &str, d: Duration) {
        let until = Instant::now() + d;
        let mut b = self.blocked.lock().await;
        let e = b.entry(bucket.to_string()).or_insert(until);
        *e = (*e).max(until);
    }
}

/// Discord's rate-limit buckets follow the route's major parameter (channel, webhook); message ids
/// and emoji do not split them.
fn bucket(method: &Method, path: &str) -> String {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let major = parts.iter().take(2).copied().collect::<Vec<_>>().join("/");
    let kind = if parts.contains(&"reactions") { "reactions" } else { parts.get(2).copied().unwrap_or("") };
    format!("{method} {major} {kind}")
}

/// The path with interaction tokens (secrets for 15 minutes) cut out, for logs and errors.
fn redact(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    let mut out = Vec::with_capacity(parts.len());
    for (i, p) in parts.iter().enumerate() {
        let after = i.checked_sub(1).and_then(|j| parts.get(j)).copied();
        let two_after = i.checked_sub(2).and_then(|j| parts.get(j)).copied();
        if two_after == Some("webhooks") || (two_after == Some("interactions") && after.is_some()) {
            out.push("<token>");
        } else {
            out.push(p);
        }
    }
    out.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_the_major_parameter_and_tokens_never_show() {
        assert_eq!(bucket(&Method::POST, "/channels/1/messages"), bucket(&Method::POST, "/channels/1/messages"));
        assert_eq!(
            bucket(&Method::PUT, "/channels/1/messages/5/reactions/✅/@me"),
            bucket(&Method::PUT, "/channels/1/messages/6/reactions/✅/@me")
        );
        assert_ne!(bucket(&Method::POST, "/channels/1/messages"), bucket(&Method::POST, "/channels/2/messages"));
        assert_eq!(redact("/webhooks/4/secret-token/messages/@original"), "/webhooks/4/<token>/messages/@original");
        assert_eq!(redact("/interactions/9/secret-token/callback"), "/interactions/9/<token>/callback");
        assert_eq!(redact("/channels/1/messages"), "/channels/1/messages");
    }
}
