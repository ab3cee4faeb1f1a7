//! The driver's event loop. The task owns its [`Driver`], so the events of a release are applied
//! one at a time and in the order they arrive, however concurrently the platform delivers them;
//! the only way in is the [`DriverHandle`] it returns.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use super::Driver;
use crate::chat::Delivery;
use crate::chat::handle::DriverHandle;

/// Starts `driver` in its own task: it resumes unfinished releases, then handles deliveries and
/// background results until every [`DriverHandle`] is dropped. Then it answers the deliveries
/// still queued, records the results of the queued jobs this process runs, lets its outbox send
/// what it holds, and waits for the late answers adapters are sending. The task ends then.
pub fn spawn(driver: Driver) -> (DriverHandle, JoinHandle<()>) {
    let reader = super::reader::Reader::new(driver.store.clone(), driver.board.clone(), &driver.catalog);
    let (handle, rx, follow_ups) = DriverHandle::new(Some(std::sync::Arc::new(reader)));
    let task = tokio::spawn(run(driver, rx, follow_ups));
    (handle, task)
}

async fn run(mut driver: Driver, mut rx: mpsc::Receiver<Delivery>, follow_ups: TaskTracker) {
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
    let drain = driver.drain.clone();
    let mut open = true;
    loop {
        tokio::select! {
            // Results first: a keyed post's message id is recorded before a reaction on it is handled.
            biased;
            Some(msg) = driver.recv_internal() => driver.handle_internal(msg).await,
            // Stopping: take nothing new, but every delivery already queued is still answered.
            _ = drain.deliveries_closed(), if open => {
                open = false;
                rx.close();
            }
            d = rx.recv() => match d {
                Some(d) => {
                    // What queued up meanwhile is decided with it and recorded in one write.
                    let mut group = vec![d];
                    while group.len() < super::group::MAX_GROUP {
                        match rx.try_recv() {
                            Ok(d) => group.push(d),
                            Err(_) => break,
                        }
                    }
                    driver.deliver_all(group).await
                }
                // Every handle is gone (or closed) and every queued delivery was answered.
                None => break,
            },
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
    driver.farewell().await;
    driver.close().await;
    follow_ups.close();
    follow_ups.wait().await;
}
