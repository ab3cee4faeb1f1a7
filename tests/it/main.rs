//! Integration tests: one binary, modules per area (one build shared by all of them).
//! They run the real `raybot` binary, real jobs (the sample scripts) and real HTTP on loopback.

mod chat;
mod cli;
mod demo;
mod discord;
#[path = "../support/discord.rs"]
mod discord_fake;
mod scripts;
mod support;
