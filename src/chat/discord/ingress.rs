//! Discord payloads in, driver deliveries out: interactions (slash commands and button clicks, from
//! the gateway or the HTTP endpoint) and reactions (gateway only).
//!
//! Queuing is synchronous: each payload is put on the driver's queue in the call that receives it,
//! so the order the gateway delivered events in is the order the driver applies them. Only the
//! answers (interaction callbacks) are sent from tasks of their own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use reqwest::Method;
use serde_json::{Value, json};
use serenity::model::application::{
    CommandDataOption, CommandDataOptionValue, CommandInteraction, ComponentInteraction, Interaction,
};
use serenity::model::channel::{Reaction, ReactionType};
use serenity::model::id::{ApplicationId, ChannelId, UserId};
use tokio::sync::oneshot;

use super::rest::Rest;
use super::sink::{clip, parse_custom_id};
use crate::chat::handle::{ACK_BUDGET, Answer, DriverHandle};
use crate::chat::{Delivery, Handled, Inbound, answer_text};
use crate::command::Command;
use crate::command::one_line;
use crate::engine::{Button, Platform, UserRef, ray_error};

/// Ephemeral-message flag of interaction responses.
const EPHEMERAL: u64 = 64;

/// Interaction callback types used here.
pub(crate) const PONG: u64 = 1;
const CHANNEL_MESSAGE: u64 = 4;
const DEFERRED_CHANNEL_MESSAGE: u64 = 5;

/// What an interaction amounts to once it is queued (or refused).
pub(crate) enum Queued {
    /// A PING from Discord's endpoint check: answer PONG.
    Ping,
    /// Answer this text to the person alone, now (refusals that change nothing).
    Now(String),
    /// A read-only command: answered by the driver's read side, concurrently with its writes
    /// (see [`Ingress::settle`]), else queued like any other.
    Read {
        /// Idempotency key of the interaction.
        key: String,
        /// The command.
        inbound: Inbound,
        /// Said when the driver had nothing private to say.
        accepted: String,
    },
    /// The driver has it; its answer comes through the receiver.
    Waiting {
        /// Delivers what the driver said to the person.
        rx: oneshot::Receiver<Handled>,
        /// Said when the driver had nothing private to say.
        accepted: String,
    },
}

/// The first answer to an interaction and, when it was deferred, the text that follows.
pub(crate) enum First {
    /// Answered in full within [`ACK_BUDGET`].
    Message(String),
    /// Deferred: the answer follows when the driver is done.
    Deferred(oneshot::Receiver<Handled>, String),
}

/// A reaction's (message, user, emoji).
type ReactionOf = (String, String, String);

/// Turns Discord payloads into deliveries for one driver.
pub struct Ingress {
    handle: DriverHandle,
    http: Arc<Rest>,
    channel: ChannelId,
    /// raybot's own user id (from READY); its reactions are not acknowledgements.
    bot_user: AtomicU64,
    /// Per (message, user, emoji): how many adds and removes were queued. See [`Ingress::reaction`].
    toggles: Mutex<HashMap<ReactionOf, (u64, u64)>>,
}

impl Ingress {
    /// Deliveries go to `handle`; answers through `http`; commands are taken only in `channel`.
    pub fn new(handle: DriverHandle, http: Arc<Rest>, channel: ChannelId) -> Ingress {
        Ingress { handle, http, channel, bot_user: AtomicU64::new(0), toggles: Mutex::new(HashMap::new()) }
    }

    /// Remembers raybot's own user id.
    pub fn set_bot_user(&self, id: UserId) {
        self.bot_user.store(id.get(), Ordering::Relaxed);
    }

    /// Sends a late answer; a stopping process waits for it before it exits.
    pub fn follow_up<F>(&self, send: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.handle.follow_up(send);
    }

    /// The REST client answers go through.
    pub fn http(&self) -> &Arc<Rest> {
        &self.http
    }

    /// Queues an interaction for the driver, or says why not. Synchronous, so arrival order is kept.
    pub(crate) fn interaction(&self, interaction: &Interaction) -> Queued {
        let (key, inbound, accepted) = match interaction {
            Interaction::Ping(_) => return Queued::Ping,
            Interaction::Command(c) => {
                if c.channel_id != self.channel {
                    return Queued::Now(self.elsewhere());
                }
                // Typed options become a typed command here: a malformed one is answered without
                // the driver or the store.
                let command = match command(c) {
                    Ok(command) => command,
                    Err(e) => return Queued::Now(ray_error(e)),
                };
                let accepted = format!("[RAY] `{}` accepted.", one_line(&command.to_string()));
                let user = UserRef::new(Platform::Discord, c.user.id.to_string());
                (c.id.to_string(), Inbound::Command { user, command }, accepted)
            }
            Interaction::Component(c) => {
                if c.channel_id != self.channel {
                    return Queued::Now(self.elsewhere());
                }
                let (message, button) = match click(c) {
                    Ok(x) => x,
                    Err(e) => return Queued::Now(ray_error(e)),
                };
                let accepted = match button {
                    Button::Approve => "[RAY] Your approval is recorded.",
                    Button::Reject => "[RAY] Your rejection is recorded.",
                }
                .to_string();
                let user = UserRef::new(Platform::Discord, c.user.id.to_string());
                (c.id.to_string(), Inbound::Click { user, message, button }, accepted)
            }
            _ => return Queued::Now(ray_error("raybot only takes `/ray` commands and its own buttons.")),
        };
        let key = format!("discord:interaction:{key}");
        if matches!(&inbound, Inbound::Command { command, .. } if command.is_read_only()) {
            return Queued::Read { key, inbound, accepted };
        }
        self.queue(key, inbound, accepted)
    }

    fn queue(&self, key: String, inbound: Inbound, accepted: String) -> Queued {
        let (tx, rx) = oneshot::channel();
        match self.handle.send(Delivery { key: Some(key), inbound, done: Some(tx) }) {
            Ok(()) => Queued::Waiting { rx, accepted },
            Err(e) => Queued::Now(ray_error(format!("{e}; nothing was changed."))),
        }
    }

    /// Answers a read-only command from the read side when it can, else queues it (its order
    /// among writes does not matter: it changes nothing). Other interactions pass through.
    pub(crate) async fn settle(&self, queued: Queued) -> Queued {
        let Queued::Read { key, inbound, accepted } = queued else { return queued };
        if let Inbound::Command { command, .. } = &inbound {
            if let Some(text) = self.handle.read(command).await {
                return Queued::Now(text);
            }
        }
        self.queue(key, inbound, accepted)
    }

    /// Queues a reaction added to or removed from a message in the war room. raybot's own
    /// reactions and reactions elsewhere are ignored.
    ///
    /// Idempotency key: Discord's reaction events carry no id, and a person may remove and add the
    /// same reaction again, legitimately. The key is `message + user + emoji + add/remove + n`,
    /// where `n` counts the opposite changes queued before it for the same message, user and
    /// emoji. An event delivered twice (a second gateway session of another replica, a replay)
    /// gets the same key and counts once; a real remove-then-add gets a new one. The counts live
    /// in this process: after a restart they start again from zero (the engine's acknowledgements
    /// are a set, so a repeated add or remove changes nothing either way).
    pub fn reaction(&self, r: &Reaction, added: bool) {
        let Some(user) = r.user_id else { return };
        if user.get() == self.bot_user.load(Ordering::Relaxed) || r.channel_id != self.channel {
            return;
        }
        let emoji = match &r.emoji {
            ReactionType::Unicode(s) => s.clone(),
            ReactionType::Custom { name, id, .. } => name.clone().unwrap_or_else(|| id.to_string()),
            _ => return,
        };
        let message = r.message_id.to_string();
        let n = {
            let Ok(mut t) = self.toggles.lock() else { return };
            let entry = t.entry((message.clone(), user.to_string(), emoji.clone())).or_insert((0, 0));
            let (adds, removes) = *entry;
            if added {
                entry.0 += 1;
                removes
            } else {
                entry.1 += 1;
                adds
            }
        };
        let key = format!("discord:reaction:{message}:{user}:{emoji}:{}:{n}", if added { "add" } else { "remove" });
        let inbound =
            Inbound::Reaction { user: UserRef::new(Platform::Discord, user.to_string()), message, emoji, added };
        // Refusals (not on the freeze list) come back through `ChatSink::reply`.
        if let Err(e) = self.handle.send(Delivery { key: Some(key), inbound, done: None }) {
            tracing::warn!(error = %e, "reaction not delivered to the driver");
        }
    }

    fn elsewhere(&self) -> String {
        ray_error(format!("raybot takes commands only in the war room, <#{}>.", self.channel))
    }
}

/// Waits up to [`ACK_BUDGET`] for the driver: the full answer, or a deferral.
pub(crate) async fn first_answer(rx: oneshot::Receiver<Handled>, accepted: String) -> First {
    match DriverHandle::within(rx, ACK_BUDGET).await {
        Answer::Now(h) => First::Message(answer_text(&h, &accepted)),
        Answer::Later(rx) => First::Deferred(rx, accepted),
    }
}

/// An ephemeral interaction response of `kind` (4 with content, 5 deferred).
pub(crate) fn response(kind: u64, content: Option<&str>) -> Value {
    match content {
        Some(text) => json!({ "type": kind, "data": {
            "content": clip(text), "flags": EPHEMERAL, "allowed_mentions": { "parse": [] }
        }}),
        None => json!({ "type": kind, "data": { "flags": EPHEMERAL } }),
    }
}

/// The ephemeral answer with `text`.
pub(crate) fn message_response(text: &str) -> Value {
    response(CHANNEL_MESSAGE, Some(text))
}

/// "raybot is thinking", seen only by the person; the answer replaces it.
pub(crate) fn deferred_response() -> Value {
    response(DEFERRED_CHANNEL_MESSAGE, None)
}

/// Finishes a deferred interaction: edits the original (deferred) response with the answer.
pub(crate) async fn finish_deferred(
    http: &Rest,
    app: ApplicationId,
    token: &str,
    rx: oneshot::Receiver<Handled>,
    accepted: &str,
) {
    let text = match rx.await {
        Ok(h) => answer_text(&h, accepted),
        Err(_) => crate::chat::no_answer(),
    };
    let body = json!({ "content": clip(&text), "allowed_mentions": { "parse": [] } });
    let path = format!("/webhooks/{app}/{token}/messages/@original");
    if let Err(e) = http.call(Method::PATCH, &path, Some(&body)).await {
        tracing::warn!(error = %e, "could not send the deferred answer");
    }
}

/// Answers a gateway interaction through the callback endpoint: within [`ACK_BUDGET`] in
/// full, else deferred and completed later.
pub(crate) async fn answer_over_rest(ingress: Arc<Ingress>, interaction: Interaction, queued: Queued) {
    let Some((id, app, token)) = ids(&interaction) else { return };
    let http = ingress.http().clone();
    let (first, late) = match ingress.settle(queued).await {
        Queued::Ping | Queued::Read { .. } => return,
        Queued::Now(text) => (message_response(&text), None),
        Queued::Waiting { rx, accepted } => match first_answer(rx, accepted).await {
            First::Message(text) => (message_response(&text), None),
            First::Deferred(rx, accepted) => (deferred_response(), Some((rx, accepted))),
        },
    };
    let path = format!("/interactions/{id}/{token}/callback");
    if let Err(e) = http.call(Method::POST, &path, Some(&first)).await {
        tracing::warn!(error = %e, "could not answer an interaction");
        return;
    }
    if let Some((rx, accepted)) = late {
        finish_deferred(&http, app, &token, rx, &accepted).await;
    }
}

/// Interaction id, application id and token of a command or click.
pub(crate) fn ids(i: &Interaction) -> Option<(String, ApplicationId, String)> {
    match i {
        Interaction::Command(c) => Some((c.id.to_string(), c.application_id, c.token.clone())),
        Interaction::Component(c) => Some((c.id.to_string(), c.application_id, c.token.clone())),
        _ => None,
    }
}

/// The `/ray` command of a slash-command interaction, from its subcommand and typed options —
/// no text in between, so an option value can only ever be the field it was given for.
pub fn command(c: &CommandInteraction) -> Result<Command, String> {
    if c.data.name != "ray" {
        return Err(format!("unknown command `/{}`; raybot answers `/ray`.", one_line(&c.data.name)));
    }
    let Some(sub) = c.data.options.first() else {
        return Err("missing subcommand. Type `/ray help` for the list.".into());
    };
    let CommandDataOptionValue::SubCommand(options) = &sub.value else {
        return Err(format!("`{}` is not a `/ray` subcommand.", one_line(&sub.name)));
    };
    let value = |name: &str| -> Option<String> {
        options.iter().find(|o| o.name == name).and_then(|o: &CommandDataOption| match &o.value {
            CommandDataOptionValue::String(s) => Some(s.clone()),
            CommandDataOptionValue::Integer(i) => Some(i.to_string()),
            CommandDataOptionValue::Boolean(b) => Some(b.to_string()),
            _ => None,
        })
    };
    crate::command::from_options(&sub.name, &value)
}

/// The approval request and button a click names.
fn click(c: &ComponentInteraction) -> Result<(String, Button), String> {
    let Some((button, message)) = parse_custom_id(&c.data.custom_id) else {
        return Err("that button is not one of raybot's.".into());
    };
    if message != c.message.id.to_string() {
        return Err("that button does not belong to the message it is on.".into());
    }
    Ok((message, button))
}
