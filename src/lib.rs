//! raybot — a chat-ops release manager.
//!
//! A team types `/ray deploy v1.2` in its war-room channel; raybot runs the release protocols of
//! `protocols/` phase by phase, collects freeze acknowledgements and go/no-go approvals, runs the
//! deploy / validation / rollback jobs, evaluates every quality gate and leaves an evidence bundle.
//!
//! Map of the crate, one line per module (each a file or folder of `src/`). The pure model first
//! — no tokio, no I/O, no clock — then the runtime around it:
//!
//! | module | holds |
//! |---|---|
//! | [`engine`] | the release state machine: a release is the fold of its events, `handle(event, now) -> effects` |
//! | [`protocol`] | the protocol documents as data (`protocols/*.yaml`), loaded and validated |
//! | [`command`] | the `/ray …` grammar every chat platform shares |
//! | [`config`] | `config/raybot.toml` and `config/release-approvers.yaml`, turned into a release plan |
//! | [`store`] | event logs, release index, environment locks, idempotency keys, marks; on Redis the job queue and heartbeats |
//! | [`jobs`] | deploy / rollback / validation jobs as argv child processes with timeouts and logs |
//! | [`test_report`] | the JUnit XML reports validation jobs write, read and counted after the job |
//! | [`probe`] | HTTP health probes: success rate, latency percentiles, serving version |
//! | [`evidence`] | evidence files, SHA-256 manifests and zip bundles |
//! | [`driver`] | decides each delivery with the engine, records it, answers, then acts; its event loop and parts |
//! | [`chat`] | the way into a driver ([`chat::handle`]), the outbox, and the local, Slack and Discord adapters |
//! | [`serve`] | `raybot serve`: the one composition root, its lifecycle and drain |
//! | [`http`] | `/healthz`, Prometheus `/metrics`, the body limit and timeouts |
//! | [`metrics`] | the process's counters and histograms |
//! | [`clock`] | the wall clock, in the engine's unit |
//! | [`app`] | what each `raybot` subcommand does (`main.rs` only parses the arguments) |
//! | [`demo`] | `raybot demo`: the scripted v1.2 release against the local sample service |
//! | [`sample_app`] | the sample service and its blue/green router that the demo deploys |

pub mod app;
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
pub mod test_report;
