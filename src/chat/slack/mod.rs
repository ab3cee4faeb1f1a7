//! Slack: `/ray` slash commands, ✅ reactions on the freeze message and Approve / Reject buttons in
//! the war-room channel, over HTTP endpoints (`/slack/commands`, `/slack/events`,
//! `/slack/interactions`, signed with the app's signing secret) or over Socket Mode.
//!
//! - `payload` turns Slack payloads into [`Inbound`] messages and posts into Block Kit;
//! - `sink` holds [`SlackChat`], the driver's posts as Web API calls;
//! - this module hands deliveries to the driver within Slack's 3-second window and wires the
//!   transports: `routes` for HTTP, `socket` for Socket Mode.
//!
//! Environment: `SLACK_BOT_TOKEN` (xoxb-…, required), `SLACK_SIGNING_SECRET` (HTTP endpoints),
//! `SLACK_APP_TOKEN` (xapp-…, Socket Mode instead of HTTP), `SLACK_API_URL` (Web API base URL,
//! default `https://slack.com/api`). The channel is `[war_room] slack_channel` in `raybot.toml`.

mod payload;
mod routes;
mod sink;
mod socket;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use slack_morphism::prelude::*;

pub use sink::{Client, SlackChat};

use crate::chat::handle::{ACK_BUDGET, Answer, DriverHandle, HandleError};
use crate::chat::{Inbound, Platform, SpawnDriver, answer_text, no_answer};
use crate::engine::ray_error;

/// Posts in the war room: at most one per this interval (Slack's limit for `chat.postMessage`).
pub const POST_INTERVAL: Duration = Duration::from_secs(1);

/// The answer when a delivery was recorded and said nothing privately.
const ACCEPTED: &str = "[RAY] Accepted.";
/// The answer when the driver has not decided within the budget; the decision follows (always:
/// through the `response_url` or an ephemeral message).
const ACCEPTED_LATER: &str = "[RAY] Received — raybot is busy for a moment; its answer follows.";

/// Slack settings from the environment. Secrets stay in here and are never logged.
pub struct SlackEnv {
    bot_token: String,
    signing_secret: Option<String>,
    app_token: Option<String>,
    api_url: Option<String>,
}

impl SlackEnv {
    /// Reads `SLACK_BOT_TOKEN`, `SLACK_SIGNING_SECRET`, `SLACK_APP_TOKEN` and `SLACK_API_URL`;
    /// `None` when no bot token is set (Slack not configured).
    pub fn from_env() -> Option<SlackEnv> {
        let var = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        Some(SlackEnv {
            bot_token: var("SLACK_BOT_TOKEN")?,
            signing_secret: var("SLACK_SIGNING_SECRET"),
            app_token: var("SLACK_APP_TOKEN"),
            api_url: var("SLACK_API_URL"),
        })
    }
}

/// The Web API client: https for Slack, plain http allowed for a `SLACK_API_URL` on loopback.
pub fn client(api_url: Option<&str>) -> anyhow::Result<Arc<Client>> {
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let https = match builder.with_native_roots() {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "no native root certificates; using the bundled Mozilla roots");
            hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots()
        }
    }
    .https_or_http()
    .enable_http1()
    .build();
    let mut connector = SlackClientHyperConnector::from(https);
    if let Some(url) = api_url {
        connector = connector.with_slack_api_url(url.trim_end_matches('/'));
    }
    Ok(Arc::new(SlackClient::new(connector)))
}

/// Starts Slack (`SLACK_BOT_TOKEN` is set) in war-room `channel`: its driver task through `spawn`,
/// and either its HTTP routes or its Socket Mode connection.
pub async fn start(env: SlackEnv, channel: Option<&str>, spawn: SpawnDriver<'_>) -> anyhow::Result<Platform> {
    let channel = channel
        .map(str::to_string)
        .filter(|c| !c.trim().is_empty())
        .context("SLACK_BOT_TOKEN is set but `[war_room] slack_channel` is missing in raybot.toml")?;
    let client = client(env.api_url.as_deref())?;
    let token = SlackApiToken::new(env.bot_token.clone().into());
    // raybot's own user id, so that its own ✅ on the freeze message is not taken for an ack.
    let bot_user = match client.open_session(&token).auth_test().await {
        Ok(me) => Some(me.user_id.0),
        Err(e) => {
            tracing::warn!(error = %e, "auth.test failed; raybot's own reactions cannot be told apart");
            None
        }
    };
    let chat = Arc::new(SlackChat::new(client.clone(), token, &channel, POST_INTERVAL));
    let handle = spawn(crate::engine::Platform::Slack, chat.clone());
    let desk = Arc::new(Desk { handle, chat, bot_user });
    let mut transports = Vec::new();
    let routes = if let Some(app_token) = env.app_token {
        transports.push(socket::start(client, desk, app_token).await?);
        axum::Router::new()
    } else if let Some(secret) = env.signing_secret {
        routes::router(client, desk, &secret)
    } else {
        anyhow::bail!(
            "SLACK_BOT_TOKEN is set: set SLACK_SIGNING_SECRET (HTTP endpoints) or SLACK_APP_TOKEN (Socket Mode)"
        )
    };
    Ok(Platform { name: crate::engine::Platform::Slack.as_str(), routes, transports })
}

/// Where answers go that are ready only after the acknowledgement.
enum Late {
    /// A slash command's `response_url` (ephemeral).
    ResponseUrl(SlackResponseUrl),
    /// `chat.postEphemeral` to this user in the war room.
    Ephemeral(String),
}

/// Shared by both transports: hands Slack deliveries to the driver.
pub(crate) struct Desk {
    handle: DriverHandle,
    chat: Arc<SlackChat>,
    bot_user: Option<String>,
}

impl Desk {
    /// Queues a delivery and waits up to the handle's budget. An answer that comes later is
    /// always sent through `late` — "its answer follows" is a promise.
    async fn hand_over(&self, key: String, inbound: Inbound, late: Late) -> Result<Option<String>, HandleError> {
        match self.handle.deliver(Some(key), inbound).await? {
            Answer::Now(h) => Ok(Some(answer_text(&h, ACCEPTED))),
            Answer::Later(rx) => {
                let chat = self.chat.clone();
                self.handle.follow_up(async move {
                    let text = match rx.await {
                        Ok(h) => answer_text(&h, ACCEPTED),
                        Err(_) => no_answer(),
                    };
                    let sent = match &late {
                        Late::ResponseUrl(url) => chat.respond(url, &text).await,
                        Late::Ephemeral(user) => chat.ephemeral(user, &text).await,
                    };
                    if let Err(e) = sent {
                        tracing::warn!(error = %e, "could not send a late answer");
                    }
                });
                Ok(None)
            }
        }
    }

    /// A slash command: the ephemeral text to answer with right away.
    async fn command(&self, ev: &SlackCommandEvent) -> String {
        if ev.channel_id.0 != self.chat.channel() {
            return payload::wrong_channel(self.chat.channel());
        }
        // Parsed here: a malformed command is answered without the driver or the store.
        let inbound = match payload::command_inbound(&ev.user_id.0, ev.text.as_deref()) {
            Ok(i) => i,
            Err(e) => return ray_error(e),
        };
        let key = format!("slack:command:{}", ev.trigger_id.0);
        match self.hand_over(key, inbound, Late::ResponseUrl(ev.response_url.clone())).await {
            Ok(Some(text)) => text,
            Ok(None) => ACCEPTED_LATER.to_string(),
            Err(e) => ray_error(format!("{e}; nothing was changed.")),
        }
    }

    /// An Events API callback. `Err` when the driver could not take it (Slack should retry).
    async fn push(&self, cb: &SlackPushEventCallback) -> Result<(), HandleError> {
        let Some((key, inbound)) = payload::reaction_inbound(cb, self.bot_user.as_deref()) else { return Ok(()) };
        let Inbound::Reaction { user, message, .. } = &inbound else { return Ok(()) };
        if payload::split_message_id(message).map(|(c, _)| c) != Some(self.chat.channel()) {
            return Ok(());
        }
        // Durable before the 200: Slack retries an event that was not taken. A reaction is
        // answered only when there is something to say (a refusal).
        let rx = self.handle.submit(Some(key), inbound.clone())?;
        let user = user.id.clone();
        match DriverHandle::within(rx, ACK_BUDGET).await {
            Answer::Now(h) => {
                if !h.duplicate && !h.replies.is_empty() {
                    self.tell(user, h.replies.join("\n"));
                }
            }
            Answer::Later(rx) => {
                let chat = self.chat.clone();
                self.handle.follow_up(async move {
                    let Ok(h) = rx.await else { return };
                    if !h.duplicate && !h.replies.is_empty() {
                        if let Err(e) = chat.ephemeral(&user, &h.replies.join("\n")).await {
                            tracing::warn!(error = %e, "could not answer privately");
                        }
                    }
                });
            }
        }
        Ok(())
    }

    /// A Block Kit interaction; every answer goes privately to the person who clicked.
    async fn interaction(&self, ev: &SlackInteractionEvent) {
        let SlackInteractionEvent::BlockActions(ev) = ev else { return };
        let Some(user) = ev.user.as_ref().map(|u| u.id.0.clone()) else { return };
        let text = match payload::click_inbound(ev) {
            Err(refusal) => refusal,
            Ok((channel, _, _)) if channel != self.chat.channel() => payload::wrong_channel(self.chat.channel()),
            Ok((_, key, inbound)) => match self.hand_over(key, inbound, Late::Ephemeral(user.clone())).await {
                Ok(Some(text)) => text,
                Ok(None) => ACCEPTED_LATER.to_string(),
                Err(e) => ray_error(format!("{e}; nothing was changed.")),
            },
        };
        self.tell(user, text);
    }

    /// Sends an ephemeral message in the background (the acknowledgement must not wait for it).
    fn tell(&self, user: String, text: String) {
        let chat = self.chat.clone();
        tokio::spawn(async move {
            if let Err(e) = chat.ephemeral(&user, &text).await {
                tracing::warn!(error = %e, "could not answer privately");
            }
        });
    }
}
