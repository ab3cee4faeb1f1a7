//! [`SlackChat`]: the driver's posts as Slack Web API calls (`chat.postMessage`, `chat.update`,
//! `reactions.add`, `chat.postEphemeral`), paced at one post per second in the war-room channel and
//! retried after `Retry-After` when Slack answers 429.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use tokio::time::Instant;

use super::payload::{blocks, emoji_name, message_id, split_message_id};
use crate::chat::{ChatError, ChatSink};
use crate::engine::{Ask, UserRef};

/// The Slack client type raybot uses (hyper, https or plain http for `SLACK_API_URL` fakes).
pub type Client = SlackClient<SlackClientHyperHttpsConnector>;

/// How many times one call is retried after a 429 before giving up.
const RATE_LIMIT_RETRIES: usize = 5;

/// Runs one Web API call `$call` on session `$s`, again after `Retry-After` (default 1 s) while
/// Slack answers 429. (A macro: a closure cannot return a future borrowing its session argument.)
macro_rules! call {
    ($self:ident, $method:literal, |$s:ident| $call:expr) => {{
        let mut attempt = 0;
        loop {
            let $s = $self.client.open_session(&$self.token);
            match $call.await {
                Ok(v) => break Ok(v),
                Err(SlackClientError::RateLimitError(e)) if attempt < RATE_LIMIT_RETRIES => {
                    let wait = e.retry_after.unwrap_or(Duration::from_secs(1));
                    tracing::info!(method = $method, wait_ms = wait.as_millis() as u64, "Slack rate limit; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => break Err(ChatError(format!("{}: {e}", $method))),
            }
        }
    }};
}

/// Posts in one Slack channel.
pub struct SlackChat {
    client: Arc<Client>,
    token: SlackApiToken,
    channel: String,
    /// When the last `chat.postMessage` went out. The tokio mutex is fair, so posts queue in the
    /// order the driver made them and each waits for its one-second slot.
    last_post: tokio::sync::Mutex<Option<Instant>>,
    interval: Duration,
}

impl std::fmt::Debug for SlackChat {
    // By hand: the token must never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackChat").field("channel", &self.channel).field("interval", &self.interval).finish()
    }
}

impl SlackChat {
    /// Posts in `channel` with `token`, at most one post per `interval`.
    pub fn new(client: Arc<Client>, token: SlackApiToken, channel: &str, interval: Duration) -> SlackChat {
        SlackChat { client, token, channel: channel.to_string(), last_post: tokio::sync::Mutex::new(None), interval }
    }

    /// The war-room channel id.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Answers `user` privately in the war room (`chat.postEphemeral`).
    pub async fn ephemeral(&self, user: &str, text: &str) -> Result<(), ChatError> {
        let req = SlackApiChatPostEphemeralRequest::new(
            self.channel.clone().into(),
            user.to_string().into(),
            SlackMessageContent::new().with_text(text.to_string()),
        );
        call!(self, "chat.postEphemeral", |s| s.chat_post_ephemeral(&req)).map(|_| ())
    }

    /// Answers through a slash command's `response_url` (ephemeral by default).
    pub async fn respond(&self, url: &SlackResponseUrl, text: &str) -> Result<(), ChatError> {
        let req = SlackApiPostWebhookMessageRequest::new(SlackMessageContent::new().with_text(text.to_string()));
        let mut attempt = 0;
        loop {
            match self.client.respond_to_event(url, &req).await {
                Ok(_) => return Ok(()),
                Err(SlackClientError::RateLimitError(e)) if attempt < RATE_LIMIT_RETRIES => {
                    tokio::time::sleep(e.retry_after.unwrap_or(Duration::from_secs(1))).await;
                    attempt += 1;
                }
                Err(e) => return Err(ChatError(format!("response_url: {e}"))),
            }
        }
    }
}

#[async_trait]
impl ChatSink for SlackChat {
    fn live_status(&self) -> bool {
        true
    }

    async fn post(&self, text: &str, ask: &Ask) -> Result<String, ChatError> {
        let content = SlackMessageContent::new()
            .with_text(text.to_string())
            .with_blocks(blocks(text, matches!(ask, Ask::Buttons)));
        let req = SlackApiChatPostMessageRequest::new(self.channel.clone().into(), content);
        let posted = {
            let mut last = self.last_post.lock().await;
            if let Some(at) = *last {
                tokio::time::sleep_until(at + self.interval).await;
            }
            let r = call!(self, "chat.postMessage", |s| s.chat_post_message(&req));
            *last = Some(Instant::now());
            r?
        };
        let id = message_id(&posted.channel.0, &posted.ts.0);
        if let Ask::Reaction { emoji } = ask {
            // raybot reacts first so that people only have to click its ✅.
            let req = SlackApiReactionsAddRequest::new(posted.channel.clone(), emoji_name(emoji).into(), posted.ts);
            if let Err(e) = call!(self, "reactions.add", |s| s.reactions_add(&req)) {
                tracing::warn!(error = %e, "could not add raybot's own reaction");
            }
        }
        Ok(id)
    }

    async fn update(&self, message: &str, text: &str) -> Result<(), ChatError> {
        let (channel, ts) =
            split_message_id(message).ok_or_else(|| ChatError(format!("not a Slack message id: {message}")))?;
        let content = SlackMessageContent::new().with_text(text.to_string()).with_blocks(blocks(text, false));
        let req = SlackApiChatUpdateRequest::new(channel.to_string().into(), content, ts.to_string().into());
        call!(self, "chat.update", |s| s.chat_update(&req)).map(|_| ())
    }

    async fn reply(&self, to: &UserRef, text: &str) -> Result<(), ChatError> {
        self.ephemeral(&to.id, text).await
    }
}
