//! raybot — a chat-ops release manager.
//!
//! A team types `/ray deploy v1.2` in its war-room channel; raybot runs the release protocols of
//! `protocols/` phase by phase, collects freeze acknowledgements and go/no-go approvals, runs the
//! deploy / validation / rollback jobs, evaluates every quality gate and leaves an evidence bundle.
//!
//! Map of the crate:
//! - [`engine`] — the release state machine. Pure and deterministic: a release is the fold of its
//!   events, `handle(state, event, now) -> effects`. No tokio, no I/O, no clock.
//! - [`protocol`] — the protocol documents as data (`protocols/*.yaml`), their loading and validation.
//! - [`command`] — the `/ray …` grammar shared by every chat platform.
//! - [`config`] — `config/raybot.toml` and `config/release-approvers.yaml`, turned into a release plan.
//! - [`store`] — durable state: event logs, release index, environment locks, idempotency keys, and on
//!   Redis the job queue shared by replicas and their heartbeats.
//! - [`jobs`] — runs deploy / rollback / validation jobs as argv with timeouts and captured logs.
//! - [`probe`] — HTTP health probes (success rate, latency percentiles, serving version).
//! - [`evidence`] — writes evidence files, SHA-256 manifests and zip bundles.
//! - [`driver`] — the tokio side: decides each delivery with the engine, persists it, answers the
//!   person, then performs the effects; its event loop, the job queue's worker and drain, the
//!   releases it holds and the read side that answers status questions beside it.
//! - [`chat`] — the chat port ([`chat::handle`]: the way into a driver and the 3-second budget;
//!   [`chat::outbox`]: the per-channel outbox) and the adapters: [`chat::local`] is the terminal war
//!   room behind `raybot chat`, [`chat::slack`] the Slack app (signed HTTP endpoints or Socket Mode)
//!   and [`chat::discord`] the Discord bot (gateway and interactions endpoint) behind `raybot serve`.
//! - [`serve`] — `raybot serve`: the one composition root (a driver per platform, the routes, the
//!   lifecycle and the drain on SIGINT/SIGTERM).
//! - [`http`] — the HTTP side: `/healthz`, Prometheus `/metrics`, the body limit and timeouts.
//! - [`metrics`] — the process metrics; [`clock`] — the wall clock, in the engine's unit.
//! - [`demo`] — `raybot demo`: the scripted v1.2 release against the local sample service.
//! - [`sample_app`] — the sample service and its blue/green router that the demo deploys.

pub mod chat;
pub mod clock;
pub mod command;
pub mod config;
pub mod demo;
pub mod driver;
pub mod engine;
pub mod evidence;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod probe;
pub mod protocol;
pub mod sample_app;
pub mod serve;
pub mod store;
