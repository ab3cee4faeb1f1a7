//! The local war room: `raybot chat` reads people's messages from stdin and prints raybot's posts
//! as a transcript on stdout. `/as NAME` switches the speaker, `/react EMOJI` reacts to the latest
//! post that asks for reactions, `/click approve|reject` clicks the latest buttons.

use std::io::Write;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{ChatError, ChatSink, Inbound};
use crate::engine::{Ask, Button, UserRef, ray_error};

/// Prints posts to a writer and remembers which ones ask for reactions or clicks.
pub struct LocalChat {
    out: Mutex<Box<dyn Write + Send>>,
    state: Mutex<LocalState>,
    session: String,
}

#[derive(Default)]
struct LocalState {
    next: u64,
    /// Latest post asking for reactions / with buttons.
    reactable: Option<String>,
    buttons: Option<String>,
}

impl LocalChat {
    /// `session` makes message ids unique across runs (`<session>-<n>`).
    pub fn new(out: Box<dyn Write + Send>, session: &str) -> LocalChat {
        LocalChat { out: Mutex::new(out), state: Mutex::new(LocalState::default()), session: session.to_string() }
    }

    /// Writes a transcript line (people's messages, demo notes).
    pub fn say(&self, line: &str) {
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    }

    fn print(&self, prefix: &str, text: &str) {
        let mut lines = text.lines();
        let first = lines.next().unwrap_or("");
        let pad = " ".repeat(prefix.chars().count() + 1);
        let mut s = format!("{prefix} {first}\n");
        for l in lines {
            s.push_str(&format!("{pad}{l}\n"));
        }
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(s.as_bytes());
            let _ = out.flush();
        }
    }

    /// Turns one input line from `user` into an inbound event, or a local answer.
    pub fn parse_line(&self, user: &mut String, line: &str) -> LineResult {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return LineResult::Nothing;
        }
        if let Some(name) = line.strip_prefix("/as ") {
            let name = name.trim();
            if name.is_empty() || name.contains(char::is_whitespace) {
                return LineResult::Local(ray_error("usage: `/as NAME`"));
            }
            *user = name.to_string();
            return LineResult::Local(format!("(now speaking as {name})"));
        }
        self.say(&format!("{user}: {line}"));
        let who = UserRef::new("local", user.clone());
        if line == "/ray" || line.starts_with("/ray ") {
            return LineResult::Inbound(Inbound::Command { user: who, text: line.to_string() });
        }
        if let Some(emoji) = line.strip_prefix("/react") {
            let emoji = emoji.trim().trim_matches(':');
            if emoji.is_empty() {
                return LineResult::Local(ray_error("usage: `/react EMOJI`, e.g. `/react ✅`"));
            }
            let target = self.state.lock().ok().and_then(|s| s.reactable.clone());
            return match target {
                Some(message) => {
                    LineResult::Inbound(Inbound::Reaction { user: who, message, emoji: emoji.to_string(), added: true })
                }
                None => LineResult::Local(ray_error("no raybot message asks for reactions yet.")),
            };
        }
        if let Some(what) = line.strip_prefix("/unreact") {
            let emoji = what.trim().trim_matches(':');
            let target = self.state.lock().ok().and_then(|s| s.reactable.clone());
            return match target {
                Some(message) if !emoji.is_empty() => LineResult::Inbound(Inbound::Reaction {
                    user: who,
                    message,
                    emoji: emoji.to_string(),
                    added: false,
                }),
                _ => LineResult::Local(ray_error("usage: `/unreact EMOJI` after a message that asks for reactions.")),
            };
        }
        if let Some(what) = line.strip_prefix("/click") {
            let button = match what.trim() {
                "approve" => Button::Approve,
                "reject" => Button::Reject,
                other => {
                    return LineResult::Local(ray_error(format!("usage: `/click approve|reject` (got `{other}`)")));
                }
            };
            let target = self.state.lock().ok().and_then(|s| s.buttons.clone());
            return match target {
                Some(message) => LineResult::Inbound(Inbound::Click { user: who, message, button }),
                None => LineResult::Local(ray_error("no raybot message has buttons yet.")),
            };
        }
        if line.starts_with('/') {
            let verb = line.split_whitespace().next().unwrap_or(line);
            return LineResult::Local(ray_error(format!(
                "unknown local command `{verb}`: use `/ray …`, `/as NAME`, `/react EMOJI`, `/unreact EMOJI` or `/click approve|reject`."
            )));
        }
        LineResult::Nothing
    }
}

/// What an input line amounts to.
#[derive(Debug, PartialEq, Eq)]
pub enum LineResult {
    /// Blank line, `#` comment or ordinary talk: nothing for raybot to do.
    Nothing,
    /// A message for this user only (usage errors, `/as` confirmations).
    Local(String),
    /// Something for the driver: a `/ray` command, `/react`, `/unreact` or `/click`.
    Inbound(Inbound),
}

#[async_trait]
impl ChatSink for LocalChat {
    async fn post(&self, text: &str, ask: &Ask) -> Result<String, ChatError> {
        let id = {
            let mut s = self.state.lock().map_err(|_| ChatError("transcript lock poisoned".into()))?;
            s.next += 1;
            let id = format!("{}-{}", self.session, s.next);
            match ask {
                Ask::Reaction { .. } => s.reactable = Some(id.clone()),
                Ask::Buttons => s.buttons = Some(id.clone()),
                Ask::Nothing => {}
            }
            id
        };
        let mut text = text.to_string();
        match ask {
            Ask::Reaction { emoji } => {
                text.push_str(&format!("\n(raybot reacted :{emoji}: — type `/react {emoji}` to acknowledge)"))
            }
            Ask::Buttons => text.push_str("\n[ Approve ] [ Reject ]  (type `/click approve` or `/click reject`)"),
            Ask::Nothing => {}
        }
        self.print("raybot:", &text);
        Ok(id)
    }

    async fn update(&self, message: &str, text: &str) -> Result<(), ChatError> {
        if let Ok(mut s) = self.state.lock() {
            if s.buttons.as_deref() == Some(message) {
                s.buttons = None;
            }
        }
        self.print("raybot (edited):", text);
        Ok(())
    }

    async fn reply(&self, to: &UserRef, text: &str) -> Result<(), ChatError> {
        self.print(&format!("raybot → {} (only you):", to.id), text);
        Ok(())
    }
}
