//! The HTTP endpoints Slack calls: `POST /slack/commands`, `/slack/events`, `/slack/interactions`.
//! slack-morphism's layer checks the `v0` signature (HMAC-SHA256 of `v0:{ts}:{body}`, timestamp
//! within 300 s, constant-time compare) before a handler runs; a missing, wrong or stale signature
//! gets 401 from [`refuse`] and reaches nothing.

use std::sync::Arc;

use axum::http::StatusCode;
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
        .layer(Extension(desk))
}

/// The listener's error handler: signature failures are 401, unreadable payloads 400. Neither
/// reaches the driver. The secret and the body are never logged.
fn refuse(
    err: Box<dyn std::error::Error + Send + Sync>,
    _client: Arc<Client>,
    _state: SlackClientEventsUserState,
) -> StatusCode {
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
