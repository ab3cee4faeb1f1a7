//! The way into a driver task: a [`DriverHandle`], and the platforms' three-second rule.
//!
//! Chat platforms want an answer within three seconds: [`DriverHandle::deliver`] waits up to
//! [`ACK_BUDGET`] and otherwise hands back a receiver for the answer, which the adapter must send
//! on when it comes (Slack's `response_url` or an ephemeral message, Discord's deferred response)
//! through [`DriverHandle::follow_up`], so that a stopping process sends it before it exits.

use std::time::Duration;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use super::{Delivery, Handled, Inbound};
use crate::command::Command;

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
    tx: mpsc::Sender<Delivery>,
    follow_ups: TaskTracker,
    reader: Option<Arc<dyn ReadSide>>,
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
    /// A handle and the driver's ends: its delivery queue and the tracker of late answers.
    /// `reader` answers read-only commands without the queue.
    pub fn new(reader: Option<Arc<dyn ReadSide>>) -> (DriverHandle, mpsc::Receiver<Delivery>, TaskTracker) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let follow_ups = TaskTracker::new();
        (DriverHandle { tx, follow_ups: follow_ups.clone(), reader }, rx, follow_ups)
    }

    /// Queues a delivery; does not wait for it to be handled.
    pub fn send(&self, d: Delivery) -> Result<(), HandleError> {
        self.tx.try_send(d).map_err(|e| match e {
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
