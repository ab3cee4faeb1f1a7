//! `raybot serve`: the one place that wires the process together.
//!
//! It opens nothing itself (main passes the loaded configuration, protocols and store): for every
//! configured chat platform it starts a driver task (one per platform, so the events of a release
//! are applied in the order they arrive), merges the platform's routes into the HTTP app with
//! `/healthz` and `/metrics`, and owns the process's lifecycle. Stopping (SIGINT or SIGTERM) goes:
//! stop the transports and take no new jobs; let the HTTP server finish the requests it holds;
//! answer or record every delivery already queued; record the results of the jobs this process
//! runs (up to `RAYBOT_DRAIN_SECONDS`); send what the outboxes and late answers still hold; remove
//! this replica's heartbeat.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::task::JoinHandle;

use crate::chat::ChatSink;
use crate::chat::handle::DriverHandle;
use crate::config::Config;
use crate::driver::Driver;
use crate::driver::worker::Drain;
use crate::engine::Platform;
use crate::http::AppState;
use crate::metrics::Metrics;
use crate::protocol::Catalog;
use crate::store::Store;

/// How long a stopping `raybot serve` waits for the queued jobs it runs (`RAYBOT_DRAIN_SECONDS`);
/// below fly.io's `kill_timeout` in fly.toml.
pub const DRAIN_SECONDS: u64 = 25;

/// Everything `raybot serve` shares between platforms.
#[derive(Clone)]
pub struct ServeContext {
    /// Loaded `config/`.
    pub config: Config,
    /// Loaded protocols.
    pub catalog: Catalog,
    /// The state store (`RAYBOT_STORE` / `REDIS_URL`).
    pub store: Arc<dyn Store>,
    /// Metrics shown on `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Evidence root (`RAYBOT_ARTIFACTS`, default `.artifacts`).
    pub artifacts: PathBuf,
    /// This process's stop signal, shared by its drivers and job workers.
    pub drain: Drain,
}

impl ServeContext {
    /// A driver for `platform` posting through `chat`.
    pub fn driver(&self, platform: Platform, chat: Arc<dyn ChatSink>) -> Driver {
        Driver::new(
            self.config.clone(),
            self.catalog.clone(),
            self.store.clone(),
            chat,
            self.artifacts.clone(),
            platform,
            self.metrics.clone(),
        )
        .with_drain(self.drain.clone())
    }
}

/// Runs `raybot serve` on `addr` until SIGINT or SIGTERM, then stops as described above.
pub async fn run(ctx: ServeContext, addr: &str) -> anyhow::Result<u8> {
    let mut drivers: Vec<JoinHandle<()>> = Vec::new();
    let mut spawn = |platform: Platform, chat: Arc<dyn ChatSink>| -> DriverHandle {
        let (handle, task) = crate::driver::run::spawn(ctx.driver(platform, chat));
        drivers.push(task);
        handle
    };
    let mut app = crate::http::router(AppState { store: ctx.store.clone(), metrics: ctx.metrics.clone() });
    let mut names = Vec::new();
    let mut transports = Vec::new();
    let war_room = &ctx.config.raybot.war_room;
    let mut platforms = Vec::new();
    if let Some(env) = crate::chat::slack::SlackEnv::from_env() {
        platforms.push(crate::chat::slack::start(env, war_room.slack_channel.as_deref(), &mut spawn).await?);
    }
    if let Some(discord) = crate::chat::discord::start(war_room, &mut spawn).await? {
        platforms.push(discord);
    }
    for p in platforms {
        names.push(p.name);
        app = app.merge(p.routes);
        transports.extend(p.transports);
    }
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    eprintln!("raybot listening on http://{}", listener.local_addr()?);
    if names.is_empty() {
        eprintln!(
            "no chat platform configured (set SLACK_BOT_TOKEN + SLACK_SIGNING_SECRET, or DISCORD_TOKEN / DISCORD_PUBLIC_KEY): serving /healthz and /metrics only"
        );
    } else {
        eprintln!("chat platforms: {}", names.join(", "));
    }
    let drain = ctx.drain.clone();
    let stopping = async move {
        shutdown_signal().await;
        // From now on no new delivery arrives by a transport and no new job is taken; the HTTP
        // server finishes the requests it holds.
        drain.begin();
        for t in &transports {
            t.abort();
        }
        eprintln!("stopping: taking no new jobs or deliveries ({} job(s) running)", drain.in_hand());
    };
    crate::http::serve(listener, crate::http::harden(app), stopping).await?;
    ctx.drain.close_deliveries();
    // The router (and the handles in it) is gone: each driver answers the deliveries it still
    // holds, records the results of the jobs this replica runs, and flushes its outbox.
    let limit = Duration::from_secs(
        std::env::var("RAYBOT_DRAIN_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(DRAIN_SECONDS),
    );
    let started = Instant::now();
    if ctx.drain.in_hand() > 0 {
        eprintln!("stopping: waiting up to {}s for {} running job(s)", limit.as_secs(), ctx.drain.in_hand());
    }
    for task in drivers {
        let left = limit.saturating_sub(started.elapsed());
        if tokio::time::timeout(left, task).await.is_err() {
            eprintln!(
                "stopping with {} job(s) still running: another replica reports them as outcome unknown",
                ctx.drain.in_hand()
            );
            break;
        }
    }
    // Stopping cleanly: other replicas take this one's releases over now, not after a lease.
    if let Err(e) = ctx.store.farewell(&crate::driver::replica_name()).await {
        eprintln!("could not remove this replica's heartbeat: {e}");
    }
    Ok(0)
}

/// SIGINT (fly's default kill signal, Ctrl-C) or SIGTERM (Docker, Kubernetes).
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
