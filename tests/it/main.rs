//! Integration tests: one binary, modules per area (one build shared by all of them).
//! They run the real `raybot` binary, real jobs (the sample scripts), real Redis servers and fake
//! Slack / Discord peers on loopback.

mod chat;
mod cli;
mod demo;
mod discord;
#[path = "../support/discord.rs"]
mod discord_fake;
mod edge;
mod flows;
mod group;
mod protocol;
mod redis;
#[path = "../support/redis.rs"]
mod redis_server;
mod replay;
mod scripts;
mod slack;
#[path = "../support/slack.rs"]
mod slack_fake;
mod support;
