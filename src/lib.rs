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
//! - [`driver`] — the tokio side: feeds events to the engine, persists them, performs the effects.
//! - [`chat`] — chat adapters; [`chat::local`] is the terminal war room behind `raybot chat`,
//!   [`chat::slack`] the Slack app (signed HTTP endpoints or Socket Mode) behind `raybot serve`.
//! - [`demo`] — `raybot demo`: the scripted v1.2 release against the local sample service.
//! - [`sample_app`] — the sample service and its blue/green router that the demo deploys.
//! - [`http`] — `raybot serve`: `/healthz` and Prometheus `/metrics`.

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
