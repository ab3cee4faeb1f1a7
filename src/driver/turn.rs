//! [`Turn`]: what the driver knows about the one delivery it is handling, passed down by value
//! and answered as soon as the delivery's decision is recorded.

use tokio::sync::oneshot;

use crate::chat::Handled;
use crate::engine::UserRef;
use crate::store::ReleaseSummary;

/// One delivery being handled.
#[derive(Debug, Default)]
pub struct Turn {
    /// Who sent it; private answers to them are collected here while [`Turn::answer`] is pending.
    sender: Option<UserRef>,
    /// The idempotency key, until the first event this delivery causes records it (in the same
    /// write, so a replay racing this one is refused by the store).
    pub once: Option<String>,
    /// The store refused the delivery's event as already recorded (a retry another replica handled).
    pub duplicate: bool,
    /// Unfinished releases, read with the idempotency check (the catch-up needs no second read).
    pub open: Option<Vec<ReleaseSummary>>,
    /// What was said to the sender so far.
    replies: Vec<String>,
    /// Where the answer goes; taken when it is sent.
    done: Option<oneshot::Sender<Handled>>,
}

impl Turn {
    /// A turn for a delivery from `sender`; `done` receives the answer.
    pub fn new(sender: UserRef, once: Option<String>, done: Option<oneshot::Sender<Handled>>) -> Turn {
        Turn { sender: Some(sender), once, duplicate: false, open: None, replies: Vec::new(), done }
    }

    /// Background work (job results, timers): nobody waits for an answer.
    pub fn background() -> Turn {
        Turn::default()
    }

    /// Who sent the delivery (`None` for background work).
    pub fn sender(&self) -> Option<&UserRef> {
        self.sender.as_ref()
    }

    /// Keeps `text` for the answer if it is for this turn's sender and the answer is still open;
    /// otherwise hands it back to be sent on its own.
    pub fn say(&mut self, to: &UserRef, text: String) -> Option<String> {
        if self.done.is_some() && self.sender.as_ref() == Some(to) {
            self.replies.push(text);
            None
        } else {
            Some(text)
        }
    }

    /// Whether an answer is still owed to someone waiting for it.
    pub fn waiting(&self) -> bool {
        self.done.is_some()
    }

    /// Sends the answer now (the delivery's decision is recorded, or it was refused); later
    /// replies go out on their own.
    pub fn answer(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(Handled { duplicate: self.duplicate, replies: std::mem::take(&mut self.replies) });
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        // Every path answers: what was not sent explicitly goes when the turn ends.
        self.answer();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Platform;

    #[test]
    fn replies_to_the_sender_are_collected_until_the_answer_and_sent_alone_after() {
        let alice = UserRef::new(Platform::Slack, "U1");
        let (tx, mut rx) = oneshot::channel();
        let mut turn = Turn::new(alice.clone(), None, Some(tx));
        assert_eq!(turn.say(&alice, "one".into()), None);
        assert_eq!(turn.say(&UserRef::new(Platform::Slack, "U2"), "bob's".into()), Some("bob's".into()));
        turn.answer();
        assert_eq!(rx.try_recv().unwrap(), Handled { duplicate: false, replies: vec!["one".into()] });
        assert_eq!(turn.say(&alice, "later".into()), Some("later".into()));
    }

    #[test]
    fn a_dropped_turn_still_answers() {
        let (tx, mut rx) = oneshot::channel();
        let mut turn = Turn::new(UserRef::new(Platform::Local, "a"), None, Some(tx));
        turn.duplicate = true;
        drop(turn);
        assert!(rx.try_recv().unwrap().duplicate);
    }
}
