//! The gateway bot: a serenity [`Client`] that registers `/ray` when it is ready and feeds
//! interactions and reactions to [`Ingress`] in the order the gateway sent them.
//!
//! serenity runs every event handler call in a task of its own, so two events that arrive back to
//! back may be handled out of order. raybot therefore takes its events from a collector callback,
//! which serenity's shard runner calls synchronously for each event, in arrival order, before any
//! handler task is spawned; the callback only queues (see [`Ingress`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use serenity::all::{Context, EventHandler, GatewayIntents, Ready};
use serenity::client::Client;
use serenity::gateway::CollectorCallback;
use serenity::http::Http;
use serenity::model::event::Event;
use serenity::model::id::{ApplicationId, GuildId};

use super::ingress::{Ingress, Queued, answer_over_rest};
use super::rest::Rest;

/// The `/ray` command definition registered in each guild.
const COMMANDS: &str = include_str!("../../../commands/discord-commands.json");

/// Gateway intents raybot needs: guilds (to be told about the servers it is in) and reactions on
/// guild messages. Interactions arrive without any intent.
pub fn intents() -> GatewayIntents {
    GatewayIntents::GUILDS | GatewayIntents::GUILD_MESSAGE_REACTIONS
}

struct Handler {
    ingress: Arc<OnceLock<Arc<Ingress>>>,
    guilds: Vec<GuildId>,
    /// Bumped on each READY; an older collector removes itself, so a session that re-identifies
    /// in the same shard runner does not feed the driver twice.
    generation: Arc<AtomicU64>,
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, ctx: Context, ready: Ready) {
        let Some(ingress) = self.ingress.get().cloned() else { return };
        ingress.set_bot_user(ready.user.id);
        let mine = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let generation = self.generation.clone();
        let feed = ingress.clone();
        ctx.shard.add_collector(CollectorCallback(Box::new(move |event| {
            if generation.load(Ordering::SeqCst) != mine {
                return false;
            }
            on_event(&feed, event);
            true
        })));
        tracing::info!(guilds = ready.guilds.len(), "discord gateway ready");
        register_commands(ingress.http(), ready.application.id, &self.guilds).await;
    }
}

/// Queues one gateway event (called in arrival order by the shard runner).
fn on_event(ingress: &Arc<Ingress>, event: &Event) {
    match event {
        Event::InteractionCreate(e) => {
            let queued = ingress.interaction(&e.interaction);
            if !matches!(queued, Queued::Ping) {
                ingress.follow_up(answer_over_rest(ingress.clone(), e.interaction.clone(), queued));
            }
        }
        Event::ReactionAdd(e) => ingress.reaction(&e.reaction, true),
        Event::ReactionRemove(e) => ingress.reaction(&e.reaction, false),
        _ => {}
    }
}

/// Registers `/ray` (bulk overwrite) in each guild, or globally when no guild is configured.
async fn register_commands(http: &Rest, app: ApplicationId, guilds: &[GuildId]) {
    let commands: serde_json::Value = match serde_json::from_str(COMMANDS) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "commands/discord-commands.json is not valid JSON");
            return;
        }
    };
    if guilds.is_empty() {
        let path = format!("/applications/{app}/commands");
        if let Err(e) = http.call(reqwest::Method::PUT, &path, Some(&commands)).await {
            tracing::warn!(error = %e, "could not register /ray globally");
        }
    }
    for guild in guilds {
        let path = format!("/applications/{app}/guilds/{guild}/commands");
        match http.call(reqwest::Method::PUT, &path, Some(&commands)).await {
            Ok(_) => tracing::info!(guild = %guild, "registered /ray"),
            Err(e) => tracing::warn!(guild = %guild, error = %e, "could not register /ray"),
        }
    }
}

/// A gateway client (serenity's `http` is used for gateway discovery only) that will feed the [`Ingress`] set in the returned cell.
pub async fn client(http: Http, guilds: Vec<GuildId>) -> anyhow::Result<(Client, Arc<OnceLock<Arc<Ingress>>>)> {
    let cell = Arc::new(OnceLock::new());
    let handler = Handler { ingress: cell.clone(), guilds, generation: Arc::new(AtomicU64::new(0)) };
    let client = serenity::client::ClientBuilder::new_with_http(http, intents()).event_handler(handler).await?;
    Ok((client, cell))
}
