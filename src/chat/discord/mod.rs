//! Discord: the war room on a Discord server.
//!
//! - [`sink`]: [`DiscordChat`], the driver's posts, edits and answers as REST calls.
//! - [`ingress`]: interactions and reactions turned into driver deliveries, and the 3-second rule
//!   (answer within 2 s with the driver's private replies, else defer and edit the answer in).
//! - [`gateway`]: the serenity gateway bot (`DISCORD_TOKEN`): registers `/ray`, receives commands,
//!   button clicks and reactions in arrival order.
//! - [`endpoint`]: `POST /discord/interactions` (`DISCORD_PUBLIC_KEY`), Ed25519-verified.
//!
//! Environment: `DISCORD_TOKEN` (bot token; needed for every post), `DISCORD_PUBLIC_KEY` (enables
//! the HTTP endpoint), `DISCORD_API_URL` (REST base instead of `https://discord.com`, for tests),
//! `DISCORD_GATEWAY=off` (HTTP endpoint only, no gateway connection: no reactions).

pub mod endpoint;
pub mod gateway;
pub mod ingress;
pub mod rest;
pub mod sink;

use std::sync::Arc;

use anyhow::Context as _;
use serenity::http::HttpBuilder;
use serenity::model::id::{ChannelId, GuildId};

pub use ingress::Ingress;
pub use sink::DiscordChat;

use crate::chat::{Platform, SpawnDriver};
use crate::config::WarRoom;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

fn snowflake(what: &str, s: &str) -> anyhow::Result<u64> {
    s.parse::<u64>().ok().filter(|v| *v > 0).with_context(|| format!("{what} `{s}` is not a Discord id (snowflake)"))
}

/// Starts Discord when `DISCORD_TOKEN` (gateway bot) or `DISCORD_PUBLIC_KEY` (HTTP endpoint) is
/// set: a driver task for platform `discord` through `spawn`, the gateway client and/or the
/// endpoint route.
pub async fn start(war_room: &WarRoom, spawn: SpawnDriver<'_>) -> anyhow::Result<Option<Platform>> {
    let (token, public_key) = (env("DISCORD_TOKEN"), env("DISCORD_PUBLIC_KEY"));
    if token.is_none() && public_key.is_none() {
        return Ok(None);
    }
    let token = token.context("DISCORD_PUBLIC_KEY is set but DISCORD_TOKEN is not: raybot posts with the bot token")?;
    let channel = war_room
        .discord_channel
        .as_deref()
        .context("DISCORD_TOKEN is set but config/raybot.toml has no [war_room] discord_channel")?;
    let channel = ChannelId::new(snowflake("[war_room] discord_channel", channel)?);
    let guilds = war_room
        .discord_guilds
        .iter()
        .map(|g| snowflake("[war_room] discord_guilds entry", g).map(GuildId::new))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let verifier = public_key.as_deref().map(endpoint::verifier).transpose()?;
    let gateway_on = !matches!(env("DISCORD_GATEWAY").as_deref(), Some("off" | "0" | "false"));

    let base = env("DISCORD_API_URL");
    let http = Arc::new(rest::Rest::new(base.as_deref().unwrap_or(rest::DISCORD), &token));
    let (client, cell) = if gateway_on {
        // serenity applies a REST base override only with its rate limiter off; its client makes
        // no REST call of raybot's (those go through `rest`), only the gateway discovery.
        let mut builder = HttpBuilder::new(&token);
        if let Some(url) = &base {
            builder = builder.proxy(url.trim_end_matches('/').to_string()).ratelimiter_disabled(true);
        }
        let (client, cell) = gateway::client(builder.build(), guilds).await?;
        (Some(client), Some(cell))
    } else {
        (None, None)
    };

    let chat = Arc::new(DiscordChat::new(http.clone(), channel));
    let handle = spawn(crate::engine::Platform::Discord, chat);
    let ingress = Arc::new(Ingress::new(handle, http, channel));
    let mut transports = Vec::new();
    if let (Some(mut client), Some(cell)) = (client, cell) {
        let _ = cell.set(ingress.clone());
        transports.push(tokio::spawn(async move {
            if let Err(e) = client.start().await {
                tracing::error!(error = %e, "discord gateway stopped");
            }
        }));
    }
    let routes = match verifier {
        Some(v) => endpoint::routes(ingress, v),
        None => axum::Router::new(),
    };
    Ok(Some(Platform { name: crate::engine::Platform::Discord.as_str(), routes, transports }))
}
