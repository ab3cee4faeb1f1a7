//! [`DiscordChat`]: the driver's posts, edits and private answers as Discord REST calls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};
use serenity::model::id::ChannelId;

use super::rest::{Rest, RestError};

use crate::chat::{ChatError, ChatSink, PostTag};
use crate::engine::{Ask, Button, UserRef};

/// Discord refuses message content longer than this.
pub(crate) const MAX_CONTENT: usize = 2000;

/// The least time between two reactions raybot adds itself.
const REACTION_SPACING: Duration = Duration::from_secs(1);

/// Posts in the war-room channel through Discord's REST API ([`Rest`] honours rate limits).
pub struct DiscordChat {
    http: Arc<Rest>,
    channel: ChannelId,
    /// When raybot last added a reaction (reactions have a tight per-route limit on Discord).
    last_reaction: tokio::sync::Mutex<Option<Instant>>,
}

impl DiscordChat {
    /// Posts to `channel` (the `[war_room] discord_channel` id) through `http`.
    pub fn new(http: Arc<Rest>, channel: ChannelId) -> DiscordChat {
        DiscordChat { http, channel, last_reaction: tokio::sync::Mutex::new(None) }
    }

    /// The war-room channel.
    pub fn channel(&self) -> ChannelId {
        self.channel
    }

    async fn send(&self, body: &Value) -> Result<String, ChatError> {
        let path = format!("/channels/{}/messages", self.channel);
        let msg = self.http.call(Method::POST, &path, Some(body)).await.map_err(rest_error)?;
        msg["id"].as_str().map(str::to_string).ok_or_else(|| ChatError("discord: message without id".into()))
    }

    async fn edit(&self, message: &str, body: &Value) -> Result<(), ChatError> {
        let path = format!("/channels/{}/messages/{message}", self.channel);
        self.http.call(Method::PATCH, &path, Some(body)).await.map_err(rest_error).map(|_| ())
    }

    /// Adds `emoji` to `message`, at most one reaction per second.
    async fn react(&self, message: &str, emoji: &str) -> Result<(), ChatError> {
        let mut last = self.last_reaction.lock().await;
        if let Some(at) = *last {
            tokio::time::sleep(REACTION_SPACING.saturating_sub(at.elapsed())).await;
        }
        let path = format!("/channels/{}/messages/{message}/reactions/{}/@me", self.channel, emoji_char(emoji));
        let result = self.http.call(Method::PUT, &path, None).await.map_err(rest_error).map(|_| ());
        *last = Some(Instant::now());
        result
    }
}

/// The message body for `text`: content clipped to Discord's limit, mentions limited to users (so
/// text people typed, such as a rejection reason, can never ping `@everyone` or a role).
pub(crate) fn message_body(text: &str) -> Value {
    json!({ "content": clip(text), "allowed_mentions": { "parse": ["users"] } })
}

/// `text` cut to [`MAX_CONTENT`] characters, ending with `…` when cut.
pub(crate) fn clip(text: &str) -> String {
    if text.chars().count() <= MAX_CONTENT {
        return text.to_string();
    }
    let mut s: String = text.chars().take(MAX_CONTENT - 1).collect();
    s.push('…');
    s
}

/// Splits a long post at line ends into pieces Discord accepts (a piece longer than the limit on
/// its own is clipped).
fn pieces(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if !cur.is_empty() && cur.chars().count() + 1 + line.chars().count() > MAX_CONTENT {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push('\n');
        }
        cur.push_str(line);
    }
    out.push(cur);
    out.into_iter().map(|p| clip(&p)).collect()
}

/// The `custom_id` of a button: `ray:<action>:<message id>`, naming the approval request it sits on.
pub fn custom_id(button: Button, message: &str) -> String {
    let action = match button {
        Button::Approve => "approve",
        Button::Reject => "reject",
    };
    format!("ray:{action}:{message}")
}

/// Reads a `custom_id` written by [`custom_id`].
pub fn parse_custom_id(id: &str) -> Option<(Button, String)> {
    let mut parts = id.splitn(3, ':');
    if parts.next()? != "ray" {
        return None;
    }
    let button = match parts.next()? {
        "approve" => Button::Approve,
        "reject" => Button::Reject,
        _ => return None,
    };
    let message = parts.next()?;
    (!message.is_empty() && message.chars().all(|c| c.is_ascii_digit())).then(|| (button, message.to_string()))
}

/// The Approve / Reject action row for message `id`.
fn buttons(id: &str) -> Value {
    json!([{
        "type": 1,
        "components": [
            { "type": 2, "style": 3, "label": "Approve", "custom_id": custom_id(Button::Approve, id) },
            { "type": 2, "style": 4, "label": "Reject", "custom_id": custom_id(Button::Reject, id) }
        ]
    }])
}

/// The emoji character for a configured name (`white_check_mark` → ✅); characters pass through.
pub fn emoji_char(name: &str) -> &str {
    match name.trim_matches(':') {
        "white_check_mark" => "✅",
        "heavy_check_mark" => "✔️",
        "thumbsup" | "+1" => "👍",
        "eyes" => "👀",
        other => other,
    }
}

fn rest_error(e: RestError) -> ChatError {
    // Errors name the route and Discord's JSON message, never a token.
    ChatError(format!("discord: {e}"))
}

#[async_trait]
impl ChatSink for DiscordChat {
    fn live_status(&self) -> bool {
        true
    }

    /// Discord limits edits per channel; the live status shows the latest state within this.
    fn edit_gap(&self) -> Duration {
        Duration::from_millis(300)
    }

    async fn post(&self, text: &str, ask: &Ask) -> Result<String, ChatError> {
        self.post_with(text, ask, None).await
    }

    /// Posts with a nonce derived from the post's identity and `enforce_nonce`: Discord answers
    /// a second post with the same nonce by the same author (within a few minutes) with the
    /// message it already has, so a post re-derived after a quick restart is not shown twice.
    async fn post_tagged(&self, text: &str, ask: &Ask, tag: &PostTag) -> Result<String, ChatError> {
        self.post_with(text, ask, Some(tag)).await
    }

    async fn update(&self, message: &str, text: &str) -> Result<(), ChatError> {
        if message.is_empty() || !message.chars().all(|c| c.is_ascii_digit()) {
            return Err(ChatError(format!("not a Discord message id: {message}")));
        }
        let mut body = message_body(text);
        body["components"] = json!([]);
        self.edit(message, &body).await
    }

    /// Outside an interaction Discord has no message that only one person sees, so the answer is
    /// posted in the war room and mentions that person (and pings nobody else). Refusals there
    /// are visible to the team, as the audit trail is.
    async fn reply(&self, to: &UserRef, text: &str) -> Result<(), ChatError> {
        // Addressed once: a refusal that already names the person is not prefixed again.
        let mention = format!("<@{}>", to.id);
        let text = if text.contains(&mention) { text.to_string() } else { format!("{mention} {text}") };
        let mut body = message_body(&text);
        body["allowed_mentions"] = json!({ "parse": [], "users": [to.id] });
        self.send(&body).await.map(|_| ())
    }
}

/// Discord's nonce for piece `piece` of the post `tag`: at most 25 characters, the same each
/// time the post is derived.
pub(crate) fn nonce(tag: &PostTag, piece: usize) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{}#{piece}", tag.id).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect::<String>()[..25].to_string()
}

impl DiscordChat {
    async fn post_with(&self, text: &str, ask: &Ask, tag: Option<&PostTag>) -> Result<String, ChatError> {
        let parts = pieces(text);
        let mut id = String::new();
        for (i, part) in parts.iter().enumerate() {
            let mut body = message_body(part);
            if let Some(tag) = tag {
                body["nonce"] = json!(nonce(tag, i));
                body["enforce_nonce"] = json!(true);
            }
            id = self.send(&body).await?;
        }
        match ask {
            Ask::Nothing => {}
            Ask::Reaction { emoji } => {
                if let Err(e) = self.react(&id, emoji).await {
                    // The message stands; people can still add the reaction or type `/ray ack`.
                    tracing::warn!(error = %e, "could not add raybot's own reaction");
                }
            }
            Ask::Buttons => {
                // The buttons name the message they sit on, so they are added once its id is known.
                self.edit(&id, &json!({ "components": buttons(&id) })).await?;
            }
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_ids_round_trip_and_refuse_strangers() {
        assert_eq!(custom_id(Button::Approve, "123"), "ray:approve:123");
        assert_eq!(parse_custom_id("ray:reject:42"), Some((Button::Reject, "42".to_string())));
        assert_eq!(parse_custom_id("ray:approve:"), None);
        assert_eq!(parse_custom_id("ray:launch:42"), None);
        assert_eq!(parse_custom_id("other:approve:42"), None);
        assert_eq!(parse_custom_id("ray:approve:4x2"), None);
    }

    #[test]
    fn long_posts_are_split_at_line_ends() {
        let line = "x".repeat(300);
        let text = [line.as_str(); 10].join("\n");
        let parts = pieces(&text);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.chars().count() <= MAX_CONTENT));
        assert_eq!(parts.join("\n"), text);
        assert_eq!(clip(&"y".repeat(2500)).chars().count(), MAX_CONTENT);
        assert_eq!(emoji_char("white_check_mark"), "✅");
        assert_eq!(emoji_char("✅"), "✅");
    }

    #[test]
    fn a_post_has_the_same_short_nonce_each_time_it_is_derived() {
        let tag = PostTag::new("v1.2-production-20261202T060917Z-3c8e", 12, 0, crate::engine::Timestamp(0));
        let again = PostTag::new("v1.2-production-20261202T060917Z-3c8e", 12, 0, crate::engine::Timestamp(5));
        assert_eq!(nonce(&tag, 0), nonce(&again, 0));
        assert_eq!(nonce(&tag, 0).len(), 25);
        assert_ne!(nonce(&tag, 0), nonce(&tag, 1), "each piece of a long post is its own message");
        let other = PostTag::new("v1.2-production-20261202T060917Z-3c8e", 12, 1, crate::engine::Timestamp(0));
        assert_ne!(nonce(&tag, 0), nonce(&other, 0));
    }
}
