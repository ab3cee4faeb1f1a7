//! Integration tests: one binary, modules per area (one build shared by all of them).
//! They run the real `raybot` binary, real jobs (the sample scripts) and real HTTP on loopback.

mod chat;
mod cli;
mod demo;
mod redis;
#[path = "../support/redis.rs"]
mod redis_server;
mod scripts;
mod support;
