//! Chat adapters. Each platform turns its payloads into [`Inbound`] messages for the driver and
//! performs the driver's posts through [`ChatSink`]. Adapters hold no release logic.

pub mod local;

use async_trait::async_trait;

use crate::engine::{Ask, Button, UserRef};

/// Something a person did in the war room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A `/ray …` command (the text after `/ray`, or the whole line).
    Command {
        /// Who typed it.
        user: UserRef,
        /// The command text, e.g. `/ray approve looks good`.
        text: String,
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

/// Errors a chat platform reports.
#[derive(Debug, thiserror::Error)]
#[error("chat platform: {0}")]
pub struct ChatError(pub String);

/// Where the driver's messages go.
#[async_trait]
pub trait ChatSink: Send + Sync {
    /// Posts in the war room; returns the platform's message id.
    async fn post(&self, text: &str, ask: &Ask) -> Result<String, ChatError>;
    /// Replaces the text of an earlier post and removes its buttons.
    async fn update(&self, message: &str, text: &str) -> Result<(), ChatError>;
    /// Answers one person only.
    async fn reply(&self, to: &UserRef, text: &str) -> Result<(), ChatError>;
}
