//! The HTTP endpoints Slack calls: `POST /slack/commands`, `/slack/events`, `/slack/interactions`.
//! slack-morphism's layer checks the `v0` signature (HMAC-SHA256 of `v0:{ts}:{body}`, timestamp
//! within 300 s, constant-time compare) before a handler runs; a missing, wrong or stale signature
//! gets 401 from [`refuse`] and reaches nothing.
//!
//! In front of that layer, [`check_timestamp`] refuses a request whose `X-Slack-Request-Timestamp`
//! is missing, unreadable or more than [`MAX_SKEW_SECS`] from now, without reading its body:
//! slack-morphism's own age check subtracts timestamps and wraps for absurd values, so it would let
//! a correctly signed request with a timestamp near -2^63 through.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use slack_morphism::prelude::*;
use slack_morphism::signature_verifier::{SlackEventAbsentSignatureError, SlackEventSignatureVerifierError};

use super::{Client, Desk};

/// The three endpoints, verified with `signing_secret`.
pub(super) fn router(client: Arc<Client>, desk: Arc<Desk>, signing_secret: &str) -> Router {
    let env = Arc::new(SlackClientEventsListenerEnvironment::new(client).with_error_handler(refuse));
    let listener = SlackEventsAxumListener::new(env);
    let secret = SlackSigningSecret::new(signing_secret.to_string());
    Router::new()
        .route(
            "/slack/commands",
            post(command)
                .layer(listener.events_layer(&secret).with_event_extractor(SlackEventsExtractors::command_event())),
        )
        .route(
            "/slack/events",
            post(event).layer(listener.events_layer(&secret).with_event_extractor(SlackEventsExtractors::push_event())),
        )
        .route(
            "/slack/interactions",
            post(interaction)
                .layer(listener.events_layer(&secret).with_event_extractor(SlackEventsExtractors::interaction_event())),
        )
        .layer(middleware::from_fn(check_timestamp))
        .layer(Extension(desk))
}

/// How far `X-Slack-Request-Timestamp` may be from now (Slack's documented five minutes).
pub const MAX_SKEW_SECS: u64 = 300;

/// True when `timestamp` (Unix seconds) is within [`MAX_SKEW_SECS`] of `now`, for any value of
/// either (no subtraction that could overflow).
pub fn fresh(timestamp: &str, now: i64) -> bool {
    timestamp.parse::<i64>().is_ok_and(|t| now.abs_diff(t) <= MAX_SKEW_SECS)
}

/// 401 for a request whose timestamp header is missing or not [`fresh`]; the body is not read.
async fn check_timestamp(request: Request, next: Next) -> Response {
    let timestamp = request.headers().get("x-slack-request-timestamp").and_then(|v| v.to_str().ok()).unwrap_or("");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    if !fresh(timestamp, now) {
        tracing::warn!("refused a Slack request: missing or stale timestamp");
        return StatusCode::UNAUTHORIZED.into_response();
    }
    next.run(request).await
}

/// The listener's error handler: a body over the limit of [`crate::http::harden`] is 413,
/// signature failures are 401, unreadable payloads 400. None reaches the driver. The secret and the
/// body are never logged.
fn refuse(
    err: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<Client>,
    _state: SlackClientEventsUserState,
) -> StatusCode {
    if crate::http::is_too_large(&*err) {
        tracing::warn!("refused a Slack request: body larger than {} bytes", crate::http::MAX_BODY_BYTES);
        return StatusCode::PAYLOAD_TOO_LARGE;
    }
    let unsigned = err.downcast_ref::<SlackEventSignatureVerifierError>().is_some()
        || err.downcast_ref::<SlackEventAbsentSignatureError>().is_some()
        || err.downcast_ref::<axum::http::header::ToStrError>().is_some();
    if unsigned {
        tracing::warn!("refused a Slack request: missing, wrong or stale signature");
        StatusCode::UNAUTHORIZED
    } else {
        tracing::warn!("refused a Slack request: unreadable payload");
        StatusCode::BAD_REQUEST
    }
}

async fn command(Extension(desk): Extension<Arc<Desk>>, Extension(ev): Extension<SlackCommandEvent>) -> Response {
    let text = desk.command(&ev).await;
    Json(
        SlackCommandEventResponse::new(SlackMessageContent::new().with_text(text))
            .with_response_type(SlackMessageResponseType::Ephemeral),
    )
    .into_response()
}

async fn event(Extension(desk): Extension<Arc<Desk>>, Extension(ev): Extension<SlackPushEvent>) -> Response {
    match ev {
        SlackPushEvent::UrlVerification(v) => Json(serde_json::json!({ "challenge": v.challenge })).into_response(),
        SlackPushEvent::EventCallback(cb) => match desk.push(&cb).await {
            Ok(()) => StatusCode::OK.into_response(),
            // Not taken: Slack retries, and the event id makes the retry count once.
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
        },
        SlackPushEvent::AppRateLimited(_) => {
            tracing::warn!("Slack reports that raybot's app is rate limited for events");
            StatusCode::OK.into_response()
        }
    }
}

async fn interaction(
    Extension(desk): Extension<Arc<Desk>>,
    Extension(ev): Extension<SlackInteractionEvent>,
) -> Response {
    desk.interaction(&ev).await;
    StatusCode::OK.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_more_than_five_minutes_away_or_absurd_are_stale() {
        assert!(fresh("1000", 1000));
        assert!(fresh("700", 1000) && fresh("1300", 1000));
        assert!(!fresh("699", 1000) && !fresh("1301", 1000));
        assert!(!fresh("-9223372036854775800", 1_700_000_000));
        assert!(!fresh(&i64::MIN.to_string(), 1_700_000_000));
        assert!(!fresh(&i64::MAX.to_string(), 1_700_000_000));
        assert!(!fresh(&i64::MAX.to_string(), i64::MIN));
        assert!(!fresh("", 1000) && !fresh("1e3", 1000) && !fresh("99999999999999999999", 1000));
    }
}
