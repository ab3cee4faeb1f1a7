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
        user: UserRef,
        text: String,
    },
    Reaction {
        user: UserRef,
        message: String,
        emoji: String,
        added: bool,
    },
    Click {
        user: UserRef,
        message: String,
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
