//! The driver's event loop. The task owns its [`Driver`], so the events of a release are applied
//! one at a time and in the order they arrive, however concurrently the platform delivers them;
//! the only way in is the [`DriverHandle`] it returns. `raybot serve`, `raybot chat`, the demo and
//! the tests all run their driver here.

use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::Driver;
use crate::chat::handle::{DriverHandle, Ends, Progress, Request, Running, Until};
use crate::store::StoreError;

/// How soon the loop looks again while its outbox holds items: the outbox reports an item just
/// before it stops counting it, so the last report can be handled while the item still counts.
/// (The poll `Driver::flush` used had the same period.)
const RECHECK: Duration = Duration::from_millis(50);

/// Starts `driver` in its own task: it resumes unfinished releases (retrying while the store
/// cannot be read), then handles deliveries and background results until every
/// [`DriverHandle`] is dropped or one is closed. Then it answers the deliveries still queued,
/// records the results of the queued jobs this process runs, lets its outbox send what it holds,
/// and waits for the late answers adapters are sending. The task ends then.
pub fn spawn(driver: Driver) -> (DriverHandle, JoinHandle<()>) {
    launch(driver, false)
}

/// Like [`spawn`] for a session that should not start on a store it cannot read (`raybot chat`,
/// the demo, tests): resumes unfinished releases first and returns the store's error if that
/// fails. [`DriverHandle::close`] waits for the task to end.
pub async fn start(mut driver: Driver) -> Result<DriverHandle, StoreError> {
    let n = driver.resume().await?;
    if n > 0 {
        tracing::info!(resumed = n, "resumed unfinished releases");
    }
    Ok(launch(driver, true).0)
}

fn launch(driver: Driver, resumed: bool) -> (DriverHandle, JoinHandle<()>) {
    let reader = super::reader::Reader::new(driver.store.clone(), driver.board.clone(), &driver.catalog);
    let (handle, ends) = DriverHandle::new(Some(std::sync::Arc::new(reader)));
    let task = tokio::spawn(run(driver, ends, resumed));
    (handle, task)
}

impl Driver {
    /// Names this raybot process `replica` instead of [`super::replica_name`] (two drivers in one
    /// process standing for two replicas).
    pub fn with_replica(mut self, replica: &str) -> Driver {
        self.replica = replica.to_string();
        self
    }

    /// What [`DriverHandle::progress`] shows now.
    fn progress(&self) -> Progress {
        Progress {
            active: self
                .active()
                .map(|r| Running { id: r.id.clone(), activity: r.activity.clone(), posts: r.posts.clone() })
                .collect(),
            finished: self.finished.clone(),
            idle: self.idle(),
        }
    }

    /// Shows its progress to the handles, waking their watchers only when it changed.
    fn show(&self, to: &watch::Sender<Progress>) {
        let now = self.progress();
        to.send_if_modified(|shown| {
            let changed = *shown != now;
            if changed {
                *shown = now;
            }
            changed
        });
    }

    /// Whether the driver has come as far as `until` (every delivery queued before the wait is
    /// handled by the time the wait is read from the queue).
    fn reached(&self, until: Until) -> bool {
        match until {
            Until::Handled => true,
            Until::Flushed => self.settled(),
            Until::Idle => self.idle(),
        }
    }

    /// Answers the waits whose point is reached, and forgets those nobody waits for any more.
    fn answer(&self, waits: &mut Vec<(Until, oneshot::Sender<()>)>) {
        let (ready, rest): (Vec<_>, Vec<_>) = std::mem::take(waits)
            .into_iter()
            .filter(|(_, done)| !done.is_closed())
            .partition(|(u, _)| self.reached(*u));
        *waits = rest;
        for (_, done) in ready {
            let _ = done.send(());
        }
    }
}

async fn run(mut driver: Driver, ends: Ends, resumed: bool) {
    let Ends { mut requests, follow_ups, progress } = ends;
    if !resumed {
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
    }
    let drain = driver.drain.clone();
    let mut waits = Vec::new();
    let mut open = true;
    loop {
        driver.show(&progress);
        driver.answer(&mut waits);
        tokio::select! {
            // Results first: a keyed post's message id is recorded before a reaction on it is handled.
            biased;
            Some(msg) = driver.recv_internal() => driver.handle_internal(msg).await,
            // Stopping: take nothing new, but every delivery already queued is still answered.
            _ = drain.deliveries_closed(), if open => {
                open = false;
                requests.close();
            }
            r = requests.recv() => match r {
                Some(Request::Deliver(d)) => {
                    // Deliveries that queued up meanwhile are decided with it and recorded in one
                    // write; a wait or a close behind them is taken in its turn, after them.
                    let mut group = vec![d];
                    let mut behind = None;
                    while group.len() < super::group::MAX_GROUP {
                        match requests.try_recv() {
                            Ok(Request::Deliver(d)) => group.push(d),
                            Ok(other) => {
                                behind = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    driver.deliver_all(group).await;
                    match behind {
                        Some(Request::Wait { until, done }) => waits.push((until, done)),
                        Some(Request::Close) => {
                            open = false;
                            requests.close();
                        }
                        Some(Request::Deliver(_)) | None => {}
                    }
                }
                Some(Request::Wait { until, done }) => waits.push((until, done)),
                Some(Request::Close) => {
                    open = false;
                    requests.close();
                }
                // Every handle is gone (or closed) and every queued delivery was answered.
                None => break,
            },
            _ = tokio::time::sleep(RECHECK), if !driver.settled() => {}
        }
    }
    // Results of queued jobs this process still runs are recorded before the task ends, so
    // nobody has to call them lost.
    while driver.drain.in_hand() > 0 {
        tokio::select! {
            Some(msg) = driver.recv_internal() => driver.handle_internal(msg).await,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    // Record the message ids of what the outbox still posts, then let it finish.
    while !driver.settled() {
        tokio::select! {
            Some(msg) = driver.recv_internal() => driver.handle_internal(msg).await,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    driver.show(&progress);
    // Waits that were queued behind the close and reached now are answered; the others learn
    // that the driver stopped.
    driver.answer(&mut waits);
    drop(waits);
    // How far the posts went out is recorded, so the next start posts none of them again.
    driver.write_marks().await;
    driver.farewell().await;
    driver.close().await;
    follow_ups.close();
    follow_ups.wait().await;
    // Last: `DriverHandle::close` returns once this is dropped.
    drop(progress);
}
