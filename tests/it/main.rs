//! Integration tests: one binary, modules per area (one build shared by all of them).
//! They run the real `raybot` binary, real jobs (the sample scripts) and real HTTP on loopback.

mod chat;
mod cli;
mod demo;
mod scripts;
mod slack;
#[path = "../support/slack.rs"]
mod slack_fake;
mod support;
