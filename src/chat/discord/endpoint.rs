//! `POST /discord/interactions`: Discord's HTTP interactions endpoint, for teams that run raybot
//! without a gateway connection (then there are no reactions: Discord sends those on the gateway
//! only, so the freeze is acknowledged with `/ray ack`).
//!
//! Every request must carry an Ed25519 signature of `timestamp + body` by the application's public
//! key (`X-Signature-Ed25519`, `X-Signature-Timestamp`) and a timestamp within five minutes of now;
//! anything else is answered 401 and changes nothing.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serenity::interactions_endpoint::Verifier;
use serenity::model::application::Interaction;

use super::ingress::{
    First, Ingress, PONG, Queued, deferred_response, finish_deferred, first_answer, ids, message_response,
};

/// How far a signed timestamp may be from now.
pub const MAX_SKEW_SECS: u64 = 300;

#[derive(Clone)]
struct Endpoint {
    ingress: Arc<Ingress>,
    verifier: Arc<Verifier>,
}

/// The verifier for a hex public key (the application's "Public Key" in the developer portal).
pub fn verifier(public_key_hex: &str) -> anyhow::Result<Verifier> {
    let bytes = hex::decode(public_key_hex.trim()).map_err(|_| anyhow::anyhow!("DISCORD_PUBLIC_KEY is not hex"))?;
    let key: [u8; 32] =
        bytes.try_into().map_err(|_| anyhow::anyhow!("DISCORD_PUBLIC_KEY must be 32 bytes (64 hex digits)"))?;
    Verifier::try_new(key).map_err(|_| anyhow::anyhow!("DISCORD_PUBLIC_KEY is not a valid Ed25519 key"))
}

/// The route, answering through `ingress`.
pub fn routes(ingress: Arc<Ingress>, verifier: Verifier) -> Router {
    Router::new()
        .route("/discord/interactions", post(interactions))
        .with_state(Endpoint { ingress, verifier: Arc::new(verifier) })
}

/// True when `timestamp` (Unix seconds) is within [`MAX_SKEW_SECS`] of `now`, for any value of
/// either: `abs_diff` cannot overflow, where `(now - t).abs()` wrapped for `t` near -2^63 and let
/// such a request through.
pub fn fresh(timestamp: &str, now: i64) -> bool {
    timestamp.parse::<i64>().is_ok_and(|t| now.abs_diff(t) <= MAX_SKEW_SECS)
}

async fn interactions(State(s): State<Endpoint>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (signature, timestamp) = (header("x-signature-ed25519"), header("x-signature-timestamp"));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    if !fresh(timestamp, now) || s.verifier.verify(signature, timestamp, &body).is_err() {
        return (StatusCode::UNAUTHORIZED, "invalid request signature").into_response();
    }
    let interaction: Interaction = match serde_json::from_slice(&body) {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable interaction");
            return (StatusCode::BAD_REQUEST, "unreadable interaction").into_response();
        }
    };
    let ids_of = ids(&interaction);
    let answer = match s.ingress.settle(s.ingress.interaction(&interaction)).await {
        Queued::Ping => serde_json::json!({ "type": PONG }),
        // `settle` never leaves a read pending; answered as "no answer" should that change.
        Queued::Read { .. } => message_response(&crate::chat::no_answer()),
        Queued::Now(text) => message_response(&text),
        Queued::Waiting { rx, accepted } => match first_answer(rx, accepted).await {
            First::Message(text) => message_response(&text),
            First::Deferred(rx, accepted) => {
                let http = s.ingress.http().clone();
                if let Some((_, app, token)) = ids_of {
                    s.ingress.follow_up(async move { finish_deferred(&http, app, &token, rx, &accepted).await });
                }
                deferred_response()
            }
        },
    };
    Json(answer).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_older_or_newer_than_five_minutes_are_stale() {
        assert!(fresh("1000", 1000));
        assert!(fresh("700", 1000));
        assert!(!fresh("699", 1000));
        assert!(!fresh("1301", 1000));
        assert!(!fresh("", 1000));
        assert!(!fresh("12abc", 1000));
    }

    #[test]
    fn absurd_timestamps_are_stale_and_nothing_overflows() {
        let now = 1_700_000_000;
        assert!(!fresh("-9223372036854775800", now));
        assert!(!fresh(&i64::MIN.to_string(), now));
        assert!(!fresh(&i64::MAX.to_string(), now));
        assert!(!fresh(&i64::MIN.to_string(), i64::MAX));
        assert!(!fresh(&i64::MAX.to_string(), i64::MIN));
        assert!(fresh(&i64::MIN.to_string(), i64::MIN) && fresh(&i64::MAX.to_string(), i64::MAX));
        assert!(!fresh("9223372036854775808", now), "out of range for i64");
    }

    #[test]
    fn bad_public_keys_are_refused() {
        assert!(verifier("zz").is_err());
        assert!(verifier("abcd").is_err());
        let public = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes();
        assert!(verifier(&hex::encode(public)).is_ok());
    }
}
