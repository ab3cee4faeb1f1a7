//! The local war room: `raybot chat` reads people's messages from stdin and prints raybot's posts
//! as a transcript on stdout. `/as NAME` switches the speaker, `/react EMOJI` reacts to the latest
//! post that asks for reactions, `/click approve|reject` clicks the latest buttons. Input is read
//! with [`LineReader`], which reports a line that is not UTF-8 and goes on with the next one.

use std::io::Write;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use super::{ChatError, ChatSink, Inbound};
use crate::engine::{Ask, Button, Platform, UserRef, ray_error};

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
        let who = UserRef::new(Platform::Local, user.clone());
        if line == "/ray" || line.starts_with("/ray ") {
            // Parsed here: a malformed command is answered without the driver or the store.
            return match Inbound::command(who, line) {
                Ok(inbound) => LineResult::Inbound(inbound),
                Err(e) => LineResult::Local(format!("raybot → {user} (only you): {}", ray_error(e))),
            };
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

/// An input line that is not valid UTF-8: its number, counted from 1. It is skipped; the lines
/// after it are read as usual.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotUtf8 {
    /// Which line (1-based).
    pub line: u64,
}

impl std::fmt::Display for NotUtf8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {} is not valid UTF-8; it was ignored.", self.line)
    }
}

/// Reads input line by line, like `AsyncBufReadExt::lines`, except that a line that is not UTF-8
/// is handed back as [`NotUtf8`] instead of ending the input with an error.
///
/// Cancel safe, so it can sit in a `select!`: a partly read line stays in the reader's buffer and
/// the next call completes it.
pub struct LineReader<R> {
    input: R,
    /// The line being read (bytes so far, up to and including `\n`).
    buf: Vec<u8>,
    /// Lines handed out so far.
    line: u64,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// Reads from `input`.
    pub fn new(input: R) -> LineReader<R> {
        LineReader { input, buf: Vec::new(), line: 0 }
    }

    /// The next line without its `\n` or `\r\n`; `Ok(None)` at the end of the input. A last line
    /// without a newline is still a line.
    pub async fn next(&mut self) -> std::io::Result<Option<Result<String, NotUtf8>>> {
        let read = self.input.read_until(b'\n', &mut self.buf).await?;
        if read == 0 && self.buf.is_empty() {
            return Ok(None);
        }
        self.line += 1;
        let mut bytes = std::mem::take(&mut self.buf);
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        Ok(Some(String::from_utf8(bytes).map_err(|_| NotUtf8 { line: self.line })))
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(input: &[u8]) -> Vec<Result<String, NotUtf8>> {
        let mut reader = LineReader::new(input);
        let mut out = Vec::new();
        while let Some(line) = reader.next().await.expect("reading a slice cannot fail") {
            out.push(line);
        }
        out
    }

    #[tokio::test]
    async fn a_line_that_is_not_utf8_is_reported_by_number_and_reading_goes_on() {
        let lines = read_all(b"/ray help\r\n\xff\xfe bad \xc3\n/ray status\n\nlast without newline").await;
        assert_eq!(
            lines,
            vec![
                Ok("/ray help".to_string()),
                Err(NotUtf8 { line: 2 }),
                Ok("/ray status".to_string()),
                Ok(String::new()),
                Ok("last without newline".to_string()),
            ]
        );
        assert_eq!(NotUtf8 { line: 2 }.to_string(), "line 2 is not valid UTF-8; it was ignored.");
        assert_eq!(read_all("héllo ✅\n".as_bytes()).await, vec![Ok("héllo ✅".to_string())]);
        assert!(read_all(b"").await.is_empty());
    }

    #[tokio::test]
    async fn a_line_split_across_reads_is_read_whole_even_when_a_read_is_cancelled() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut reader = LineReader::new(tokio::io::BufReader::new(rx));
        use tokio::io::AsyncWriteExt;
        tx.write_all(b"/ray st").await.unwrap();
        // The first half arrives, then the read is given up (as `select!` does when another
        // branch is ready): the bytes read so far must not be lost.
        let cancelled = tokio::time::timeout(std::time::Duration::from_millis(50), reader.next()).await;
        assert!(cancelled.is_err());
        tx.write_all(b"atus\n").await.unwrap();
        assert_eq!(reader.next().await.unwrap(), Some(Ok("/ray status".to_string())));
        drop(tx);
        assert_eq!(reader.next().await.unwrap(), None);
    }
}
