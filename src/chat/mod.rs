//! Chat adapters. Each platform turns its payloads into [`Inbound`] messages for the driver and
//! performs the driver's posts through [`ChatSink`]. Adapters hold no release logic.

pub mod discord;
pub mod handle;
pub mod local;
pub mod outbox;
pub mod slack;

use async_trait::async_trait;

use crate::engine::{Ask, Button, UserRef};

/// Something a person did in the war room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A `/ray …` command, parsed at the edge (a malformed one never gets this far: the adapter
    /// answers it without touching the driver or the store).
    Command {
        /// Who typed it.
        user: UserRef,
        /// What they asked for.
        command: crate::command::Command,
    },
    /// A reaction added to or removed from a message.
    Reaction {
        /// Who reacted.
        user: UserRef,
        /// Platform message id reacted on; routes the event to the release that posted it.
        message: String,
        /// Emoji name (`white_check_mark`) or character (`✅`).
        emoji: String,
        /// False when the reaction was removed.
        added: bool,
    },
    /// A click on an Approve / Reject button.
    Click {
        /// Who clicked.
        user: UserRef,
        /// Platform message id of the approval request.
        message: String,
        /// Which button.
        button: Button,
    },
}

impl Inbound {
    /// `text` typed by `user`, parsed; the error is the refusal's text (without the prefix).
    pub fn command(user: UserRef, text: &str) -> Result<Inbound, String> {
        crate::command::parse(text).map(|command| Inbound::Command { user, command })
    }

    /// Who did it.
    pub fn user(&self) -> &UserRef {
        match self {
            Inbound::Command { user, .. } | Inbound::Reaction { user, .. } | Inbound::Click { user, .. } => user,
        }
    }

    /// `command`, `reaction` or `click` (the metrics label).
    pub fn kind(&self) -> &'static str {
        match self {
            Inbound::Command { .. } => "command",
            Inbound::Reaction { .. } => "reaction",
            Inbound::Click { .. } => "click",
        }
    }
}

/// The private answer to a handled delivery that said nothing else: `accepted` when it was
/// recorded, the duplicate notice when it was a retry, else what the driver said.
pub fn answer_text(h: &Handled, accepted: &str) -> String {
    if h.duplicate {
        "[RAY] Already received — it counts once.".to_string()
    } else if h.replies.is_empty() {
        accepted.to_string()
    } else {
        h.replies.join("\n")
    }
}

/// What a person is told when the driver dropped their delivery unanswered (the process stopped).
pub fn no_answer() -> String {
    crate::engine::refuse(crate::engine::refusal::Runtime::Stopped)
}

/// One inbound event as a platform adapter hands it to the driver.
#[derive(Debug)]
pub struct Delivery {
    /// Idempotency key (Slack `event_id` / `trigger_id`, Discord interaction id, or for reactions
    /// `message + user + emoji + add/remove` with the platform's event id). A key seen before is
    /// acknowledged and ignored, so a retried or replayed delivery counts once.
    pub key: Option<String>,
    /// What the person did.
    pub inbound: Inbound,
    /// When set, the driver answers here as soon as the delivery's decision is recorded (or
    /// refused), with everything it said privately to this person, so the adapter can answer
    /// inside the platform's own response (Slack's HTTP reply, Discord's interaction response).
    pub done: Option<tokio::sync::oneshot::Sender<Handled>>,
}

impl Delivery {
    /// A delivery without idempotency key or reply channel.
    pub fn new(inbound: Inbound) -> Delivery {
        Delivery { key: None, inbound, done: None }
    }
}

/// What the driver did with a [`Delivery`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Handled {
    /// True when the idempotency key was seen before and the delivery was ignored.
    pub duplicate: bool,
    /// Private answers for the person who sent it, in order (e.g. a `[RAY ERROR] …` line).
    pub replies: Vec<String>,
}

/// A chat platform as `raybot serve` starts it.
pub struct Platform {
    /// `slack` or `discord`.
    pub name: &'static str,
    /// Its HTTP endpoints (merged into the server's router).
    pub routes: axum::Router,
    /// Its transports (Socket Mode, the Discord gateway): stopped first when the process stops,
    /// so that no new delivery arrives while the held ones are answered.
    pub transports: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts a driver task for a platform: `(platform, its chat sink) → the handle into it`.
pub type SpawnDriver<'a> =
    &'a mut (dyn FnMut(crate::engine::Platform, std::sync::Arc<dyn ChatSink>) -> handle::DriverHandle + Send);

/// Errors a chat platform reports.
#[derive(Debug, thiserror::Error)]
#[error("chat platform: {0}")]
pub struct ChatError(pub String);

/// A post's identity, the same each time it is derived from its release's log (release, event,
/// post): what lets a platform tell that a post re-derived after a crash went out already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostTag {
    /// `<release>/<event number>/<post number>`.
    pub id: String,
    /// When the event that asked for it was recorded (the post cannot be older).
    pub since: crate::engine::Timestamp,
}

impl PostTag {
    /// The tag of post `n` among those asked for by event `event` (0-based) of `release`.
    pub fn new(release: &str, event: u64, n: usize, since: crate::engine::Timestamp) -> PostTag {
        PostTag { id: format!("{release}/{event}/{n}"), since }
    }
}

/// Where the driver's messages go.
#[async_trait]
pub trait ChatSink: Send + Sync {
    /// Posts in the war room; returns the platform's message id.
    async fn post(&self, text: &str, ask: &Ask) -> Result<String, ChatError>;
    /// Posts with the post's identity attached where the platform keeps one (Slack message
    /// metadata, Discord's enforced nonce), so [`ChatSink::find`] can tell it went out.
    async fn post_tagged(&self, text: &str, ask: &Ask, tag: &PostTag) -> Result<String, ChatError> {
        let _ = tag;
        self.post(text, ask).await
    }
    /// The message id of a post made with `tag`, if the platform can tell (`Ok(None)`: not found,
    /// or the platform cannot tell — a transcript, or Discord, which refuses the duplicate itself).
    async fn find(&self, tag: &PostTag) -> Result<Option<String>, ChatError> {
        let _ = tag;
        Ok(None)
    }
    /// Replaces the text of an earlier post and removes its buttons.
    async fn update(&self, message: &str, text: &str) -> Result<(), ChatError>;
    /// Answers one person only.
    async fn reply(&self, to: &UserRef, text: &str) -> Result<(), ChatError>;
    /// The least time between two edits of one message: edits queued meanwhile are folded into
    /// one that shows the latest text (a platform limits edits per channel; a person cannot read
    /// faster anyway). Zero for transcripts.
    fn edit_gap(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    /// True when the platform shows a live status message per release, kept current by edits
    /// (chat platforms); false for transcripts, where every edit would print again.
    fn live_status(&self) -> bool {
        false
    }
}
