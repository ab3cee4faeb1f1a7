//! `raybot serve`: one driver task per chat platform, fed by the platform adapters through a
//! [`DriverHandle`]. The task owns its [`Driver`], so the events of a release are applied one at a
//! time and in the order they arrive, however concurrently the platform delivers them.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use std::path::PathBuf;
use std::sync::Arc;

use crate::chat::{Delivery, Handled, Inbound};
use crate::config::Config;
use crate::driver::Driver;
use crate::http::Metrics;
use crate::protocol::Catalog;
use crate::store::Store;

/// How many deliveries may wait for a busy driver before adapters are told to back off.
const QUEUE: usize = 1024;

/// A clonable way into a running driver task.
#[derive(Clone, Debug)]
pub struct DriverHandle {
    tx: mpsc::Sender<Delivery>,
}

/// Why a delivery did not reach the driver.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// The driver task has stopped.
    #[error("raybot is shutting down")]
    Stopped,
    /// Too many deliveries are waiting.
    #[error("raybot is busy — try again in a moment")]
    Busy,
}

impl DriverHandle {
    /// Queues a delivery; does not wait for it to be handled.
    pub fn send(&self, d: Delivery) -> Result<(), HandleError> {
        self.tx.try_send(d).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => HandleError::Busy,
            mpsc::error::TrySendError::Closed(_) => HandleError::Stopped,
        })
    }

    /// Queues a delivery and waits up to `within` for the driver to handle it. `Ok(Some(h))` when it
    /// was handled in time (with the private replies for the sender), `Ok(None)` when it is still
    /// queued or running: the adapter acknowledges now and the answer follows through `late`.
    pub async fn deliver(
        &self,
        key: Option<String>,
        inbound: Inbound,
        within: Duration,
    ) -> Result<Result<Handled, oneshot::Receiver<Handled>>, HandleError> {
        let (tx, mut rx) = oneshot::channel();
        self.send(Delivery { key, inbound, done: Some(tx) })?;
        match tokio::time::timeout(within, &mut rx).await {
            Ok(Ok(h)) => Ok(Ok(h)),
            Ok(Err(_)) => Err(HandleError::Stopped),
            Err(_) => Ok(Err(rx)),
        }
    }
}

/// Starts `driver` in its own task: it resumes unfinished releases, then handles deliveries and
/// background results until every [`DriverHandle`] is dropped, and then the results of queued jobs
/// this process still runs (see [`crate::driver::jobs_in_hand`]).
pub fn spawn_driver(mut driver: Driver) -> (DriverHandle, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Delivery>(QUEUE);
    let task = tokio::spawn(async move {
        loop {
            match driver.resume().await {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(resumed = n, "resumed unfinished releases");
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not resume releases from the store; retrying in 2s");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
        loop {
            tokio::select! {
                d = rx.recv() => match d {
                    Some(d) => driver.deliver(d).await,
                    None => break,
                },
                Some(msg) = driver.recv_internal() => driver.handle_internal(msg).await,
            }
        }
        // No more deliveries (the server is stopping): results of queued jobs this process still
        // runs are recorded before the task ends, so nobody has to call them lost.
        while crate::driver::jobs_in_hand() > 0 {
            tokio::select! {
                Some(msg) = driver.recv_internal() => driver.handle_internal(msg).await,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    });
    (DriverHandle { tx }, task)
}

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
}

impl ServeContext {
    /// A driver for `platform` posting through `chat`.
    pub fn driver(&self, platform: &str, chat: Arc<dyn crate::chat::ChatSink>) -> Driver {
        Driver::new(
            self.config.clone(),
            self.catalog.clone(),
            self.store.clone(),
            chat,
            self.artifacts.clone(),
            platform,
            self.metrics.clone(),
        )
    }
}

/// A platform that `raybot serve` started.
pub struct Started {
    /// `slack` or `discord`.
    pub name: &'static str,
    /// Its HTTP endpoints (merged into the server's router).
    pub routes: axum::Router,
    /// Its background tasks (driver, gateway, post queues).
    pub tasks: Vec<JoinHandle<()>>,
}

/// Starts every chat platform whose environment variables are set.
pub async fn start_platforms(ctx: &ServeContext) -> anyhow::Result<Vec<Started>> {
    let mut started = Vec::new();
    // Slack (issue #4) and Discord (issue #5) plug in here.
    if let Some(env) = crate::chat::slack::SlackEnv::from_env() {
        started.push(crate::chat::slack::start(ctx, env).await?);
    }
    if let Some(discord) = crate::chat::discord::start(ctx).await? {
        started.push(discord);
    }
    Ok(started)
}
