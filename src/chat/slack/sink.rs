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
use crate::chat::{ChatError, ChatSink, PostTag};
use crate::engine::{Ask, UserRef};

/// The least time between two edits of one message (Slack rate-limits `chat.update`).
const EDIT_GAP: Duration = Duration::from_millis(300);

/// The `event_type` of the metadata raybot attaches to the posts of a release's log.
const POST_EVENT: &str = "raybot_post";

/// How many pages of `conversations.history` a look for a re-derived post reads at most.
const HISTORY_PAGES: usize = 10;

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

    fn edit_gap(&self) -> Duration {
        EDIT_GAP
    }

    async fn post(&self, text: &str, ask: &Ask) -> Result<String, ChatError> {
        self.post_with(text, ask, None).await
    }

    /// Posts with the post's identity in the message's metadata (kept by Slack and returned by
    /// `conversations.history`).
    async fn post_tagged(&self, text: &str, ask: &Ask, tag: &PostTag) -> Result<String, ChatError> {
        let payload = std::collections::HashMap::from([("post".to_string(), tag.id.clone())]);
        let metadata = SlackMessageMetadata { event_type: POST_EVENT.into(), event_payload: Some(payload) };
        self.post_with(text, ask, Some(metadata)).await
    }

    /// Looks through the channel's history since the post's event for a message carrying its
    /// identity (needs the `channels:history` scope, or `groups:history` in a private channel).
    async fn find(&self, tag: &PostTag) -> Result<Option<String>, ChatError> {
        // A second early: Slack's clock and ours may differ a little.
        let since = tag.since.0.saturating_sub(1000);
        let oldest = SlackTs(format!("{}.{:06}", since / 1000, (since % 1000) * 1000));
        let mut req = SlackApiConversationsHistoryRequest::new()
            .with_channel(self.channel.clone().into())
            .with_oldest(oldest)
            .with_limit(200)
            .with_include_all_metadata(true);
        for _ in 0..HISTORY_PAGES {
            let page = call!(self, "conversations.history", |s| s.conversations_history(&req))?;
            let found = page.messages.iter().find(|m| {
                m.content.metadata.as_ref().is_some_and(|md| {
                    md.event_type == POST_EVENT
                        && md.event_payload.as_ref().and_then(|p| p.get("post")) == Some(&tag.id)
                })
            });
            if let Some(m) = found {
                return Ok(Some(message_id(&self.channel, &m.origin.ts.0)));
            }
            match page.response_metadata.and_then(|r| r.next_cursor).filter(|c| !c.0.is_empty()) {
                Some(cursor) => req = req.with_cursor(cursor),
                None => break,
            }
        }
        Ok(None)
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

impl SlackChat {
    /// `chat.postMessage` in the war room, paced, with raybot's own reaction when it asks for one.
    async fn post_with(
        &self,
        text: &str,
        ask: &Ask,
        metadata: Option<SlackMessageMetadata>,
    ) -> Result<String, ChatError> {
        let mut content = SlackMessageContent::new()
            .with_text(text.to_string())
            .with_blocks(blocks(text, matches!(ask, Ask::Buttons)));
        content.metadata = metadata;
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
}
