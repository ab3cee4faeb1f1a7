//! The way into a driver task: a [`DriverHandle`], and the platforms' three-second rule.
//!
//! Chat platforms want an answer within three seconds: [`DriverHandle::deliver`] waits up to
//! [`ACK_BUDGET`] and otherwise hands back a receiver for the answer, which the adapter must send
//! on when it comes (Slack's `response_url` or an ephemeral message, Discord's deferred response)
//! through [`DriverHandle::follow_up`], so that a stopping process sends it before it exits.
//!
//! Callers that speak for people in this process (`raybot chat`, the demo, tests) also wait for
//! the driver to reach a point — [`DriverHandle::handled`], [`DriverHandle::flush`],
//! [`DriverHandle::settle`] — watch its [`Progress`], and [`DriverHandle::close`] it.

use std::collections::BTreeMap;
use std::time::Duration;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::task::TaskTracker;

use super::{Delivery, Handled, Inbound};
use crate::command::Command;
use crate::engine::{Activity, PostKey, ReleaseId, Terminal};

/// Answers read-only commands beside the driver, concurrently with its writes. `None` when it
/// cannot answer from what it reads (the driver must catch up first): the command then goes
/// through the driver's queue like any other.
#[async_trait]
pub trait ReadSide: Send + Sync {
    /// The answer to `command` (only ever a read-only one), if it can be given here.
    async fn answer(&self, command: &Command) -> Option<String>;
}

/// How long an adapter waits for the driver's answer before it acknowledges and lets the answer
/// follow. Slack and Discord both give up at 3 s; the rest is the platform's own round trip.
pub const ACK_BUDGET: Duration = Duration::from_millis(2000);

/// How many deliveries may wait for a busy driver before adapters are told to back off.
const QUEUE: usize = 1024;

/// A clonable way into a running driver task.
#[derive(Clone)]
pub struct DriverHandle {
    tx: mpsc::Sender<Request>,
    follow_ups: TaskTracker,
    reader: Option<Arc<dyn ReadSide>>,
    progress: watch::Receiver<Progress>,
}

/// What goes down a driver's queue. Everything goes down the one queue, so a wait is answered
/// only after every delivery queued before it is handled.
#[derive(Debug)]
pub(crate) enum Request {
    /// A delivery to handle.
    Deliver(Delivery),
    /// Someone waits for the driver to reach `until`; `done` fires then.
    Wait { until: Until, done: oneshot::Sender<()> },
    /// Take nothing new, answer what is queued, then stop (as when every handle is dropped).
    Close,
}

/// How far the driver must have come for a [`Request::Wait`] to be answered; each point
/// includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// Every delivery queued before the wait is handled.
    Handled,
    /// The outbox has also performed what it holds, and its reports are handled.
    Flushed,
    /// The driver is also idle: every release waits for people or has ended, nothing runs.
    Idle,
}

/// The driver's ends of a [`DriverHandle`].
pub(crate) struct Ends {
    /// Deliveries and waits, in the order they were sent.
    pub(crate) requests: mpsc::Receiver<Request>,
    /// Late answers being sent; a stopping driver waits for them.
    pub(crate) follow_ups: TaskTracker,
    /// Where the driver shows its [`Progress`]; dropped when the driver task ends.
    pub(crate) progress: watch::Sender<Progress>,
}

/// What a driver shows of its releases as it goes (see [`DriverHandle::progress`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Unfinished releases the driver holds, in id order.
    pub active: Vec<Running>,
    /// Releases that ended while the driver ran, in the order they ended, with their outcome.
    pub finished: Vec<(String, Terminal)>,
    /// Nothing is busy: every release waits for people or has ended, no job, probe or timer of
    /// this driver is outstanding, and its outbox has performed everything.
    pub idle: bool,
}

/// An unfinished release as [`Progress`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// Release id.
    pub id: ReleaseId,
    /// What it is doing or waiting for.
    pub activity: Activity,
    /// Platform message ids of its keyed posts (`freeze`, `approval:0`, `status` …), latest last.
    pub posts: BTreeMap<PostKey, Vec<String>>,
}

impl std::fmt::Debug for DriverHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverHandle").field("read_side", &self.reader.is_some()).finish()
    }
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

/// The driver's answer to a delivery, within [`ACK_BUDGET`] or later.
#[derive(Debug)]
pub enum Answer {
    /// Decided (or refused) in time.
    Now(Handled),
    /// Still queued or being decided; the answer comes through the receiver and must be sent on.
    Later(oneshot::Receiver<Handled>),
}

impl DriverHandle {
    /// A handle and the driver's ends. `reader` answers read-only commands without the queue.
    pub(crate) fn new(reader: Option<Arc<dyn ReadSide>>) -> (DriverHandle, Ends) {
        let (tx, requests) = mpsc::channel(QUEUE);
        let follow_ups = TaskTracker::new();
        let (progress, watching) = watch::channel(Progress::default());
        let handle = DriverHandle { tx, follow_ups: follow_ups.clone(), reader, progress: watching };
        (handle, Ends { requests, follow_ups, progress })
    }

    /// Queues a delivery; does not wait for it to be handled.
    pub fn send(&self, d: Delivery) -> Result<(), HandleError> {
        self.tx.try_send(Request::Deliver(d)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => HandleError::Busy,
            mpsc::error::TrySendError::Closed(_) => HandleError::Stopped,
        })
    }

    /// Queues a delivery with its idempotency key and waits up to [`ACK_BUDGET`] for the answer.
    /// A read-only command is answered by the read side when it can, without waiting for writes.
    pub async fn deliver(&self, key: Option<String>, inbound: Inbound) -> Result<Answer, HandleError> {
        if let Inbound::Command { command, .. } = &inbound {
            if let Some(text) = self.read(command).await {
                return Ok(Answer::Now(Handled { duplicate: false, replies: vec![text] }));
            }
        }
        let rx = self.submit(key, inbound)?;
        Ok(Self::within(rx, ACK_BUDGET).await)
    }

    /// The read side's answer to a read-only `command`, if it can give one (else the command
    /// must go through the queue).
    pub async fn read(&self, command: &Command) -> Option<String> {
        match &self.reader {
            Some(reader) if command.is_read_only() => reader.answer(command).await,
            _ => None,
        }
    }

    /// Queues a delivery and returns the receiver of its answer (adapters that must queue in a
    /// synchronous callback to keep arrival order, and wait later).
    pub fn submit(&self, key: Option<String>, inbound: Inbound) -> Result<oneshot::Receiver<Handled>, HandleError> {
        let (tx, rx) = oneshot::channel();
        self.send(Delivery { key, inbound, done: Some(tx) })?;
        Ok(rx)
    }

    /// Waits up to `budget` for an answer already submitted.
    pub async fn within(mut rx: oneshot::Receiver<Handled>, budget: Duration) -> Answer {
        match tokio::time::timeout(budget, &mut rx).await {
            Ok(Ok(h)) => Answer::Now(h),
            // The driver dropped the delivery without an answer: the receiver says so when awaited.
            Ok(Err(_)) | Err(_) => Answer::Later(rx),
        }
    }

    /// Runs the sending of a late answer; a stopping process waits for it before it exits.
    pub fn follow_up<F>(&self, send: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.follow_ups.spawn(send);
    }

    /// Waits until every delivery queued before this call (through any handle) is handled.
    pub async fn handled(&self) -> Result<(), HandleError> {
        self.wait(Until::Handled).await
    }

    /// Waits until every delivery queued before this call is handled and the outbox has
    /// performed what they asked for, its message ids recorded: what `raybot chat` waits for
    /// after each line, so its transcript reads in order.
    pub async fn flush(&self) -> Result<(), HandleError> {
        self.wait(Until::Flushed).await
    }

    /// Waits until the driver is also idle: every release waits for people or has ended, and
    /// nothing it started (jobs, probes, timers, posts) is outstanding.
    pub async fn settle(&self) -> Result<(), HandleError> {
        self.wait(Until::Idle).await
    }

    async fn wait(&self, until: Until) -> Result<(), HandleError> {
        let (done, reached) = oneshot::channel();
        self.tx.send(Request::Wait { until, done }).await.map_err(|_| HandleError::Stopped)?;
        reached.await.map_err(|_| HandleError::Stopped)
    }

    /// The driver's progress, updated after everything it handles; `changed()` wakes when it
    /// changes and fails once the driver task has ended.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// Stops the driver and waits until it has stopped: it takes no new delivery (through any
    /// handle), answers those already queued, records the results of the jobs this process
    /// runs, lets its outbox send what it holds and says farewell — as when every handle is
    /// dropped.
    pub async fn close(self) {
        let mut progress = self.progress.clone();
        // Fails only when the driver has stopped already.
        let _ = self.tx.send(Request::Close).await;
        drop(self);
        // The driver drops its end of the progress channel as its task ends.
        while progress.changed().await.is_ok() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_answer_after_the_budget_comes_through_the_receiver() {
        let (tx, rx) = oneshot::channel();
        let late = tokio::spawn(async move {
            tokio::time::sleep(ACK_BUDGET * 2).await;
            let _ = tx.send(Handled { duplicate: false, replies: vec!["done".into()] });
        });
        let Answer::Later(rx) = DriverHandle::within(rx, ACK_BUDGET).await else { panic!("answered in time") };
        assert_eq!(rx.await.unwrap().replies, vec!["done".to_string()]);
        late.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_within_the_budget_is_given_at_once() {
        let (tx, rx) = oneshot::channel();
        tx.send(Handled::default()).unwrap();
        assert!(matches!(DriverHandle::within(rx, ACK_BUDGET).await, Answer::Now(_)));
    }
}
