//! The outbox: a task per war-room channel that performs the driver's chat effects, so that a
//! decision never waits on a chat platform.
//!
//! The driver decides, persists and answers; then it hands its posts, edits and private replies
//! to the outbox and goes on with the next delivery. The outbox performs them one at a time in the
//! order they came (a release's announcements stay in protocol order), through the platform's
//! [`ChatSink`], which paces posts and waits out 429 / `Retry-After`. Edits of one message that
//! pile up while the platform is slow are coalesced: the message shows the latest text, not every
//! intermediate one.
//!
//! A keyed post (the freeze request, an approval request, the live status message) gets its
//! message id from the platform; the outbox remembers it, so an edit queued before the driver has
//! recorded that id still finds its message, and reports it back through the callback given to
//! [`Outbox::spawn`] (the driver records it as [`crate::engine::Event::Posted`]).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::ChatSink;
use crate::engine::{Ask, UserRef};

/// One chat effect for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A post in the war room; a keyed one is reported back with its message id.
    Post {
        /// The release it belongs to (empty for notices about no release).
        release: String,
        /// The engine's post key (`freeze`, `approval:0`, `status`), if it is to be edited or
        /// matched with reactions and clicks later.
        key: Option<String>,
        /// The message.
        text: String,
        /// Reaction or buttons to offer.
        ask: Ask,
    },
    /// Replace the text of the latest message posted under `key` (and remove its buttons).
    Edit {
        /// The release it belongs to.
        release: String,
        /// The post key.
        key: String,
        /// The message id, when the driver knows it from the release's log; otherwise the outbox
        /// uses the id of its own post under that key, and drops the edit if it has none.
        message: Option<String>,
        /// The new text.
        text: String,
    },
    /// An answer for one person only.
    Reply {
        /// Who.
        to: UserRef,
        /// The answer.
        text: String,
    },
}

/// What the outbox reports after performing one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The release of the item.
    pub release: String,
    /// For a keyed post that went out: its key and the platform's message id.
    pub posted: Option<(String, String)>,
}

/// Message ids of the keyed posts this outbox made: `(release, key) → message` and back.
#[derive(Debug, Default)]
struct Posted {
    by_key: HashMap<(String, String), String>,
    by_message: HashMap<String, (String, String)>,
}

/// The driver's side of an outbox task.
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Outgoing>,
    pending: Arc<AtomicUsize>,
    posted: Arc<Mutex<Posted>>,
}

impl Outbox {
    /// Starts the outbox task over `sink`; `report` is called after every item it performed or
    /// dropped. The task ends when every [`Outbox`] clone is dropped and the queue is empty.
    pub fn spawn(sink: Arc<dyn ChatSink>, report: impl Fn(Sent) + Send + Sync + 'static) -> (Outbox, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let outbox = Outbox { tx, pending: Arc::default(), posted: Arc::default() };
        let task = tokio::spawn(run(sink, rx, outbox.pending.clone(), outbox.posted.clone(), report));
        (outbox, task)
    }

    /// Queues one item; never waits.
    pub fn send(&self, item: Outgoing) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(item).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!("the outbox has stopped; a chat effect was dropped");
        }
    }

    /// Items queued and not yet performed.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// The release and key of a message this outbox posted (before the driver may have recorded it).
    pub fn posted(&self, message: &str) -> Option<(String, String)> {
        self.posted.lock().ok().and_then(|p| p.by_message.get(message).cloned())
    }
}

async fn run(
    sink: Arc<dyn ChatSink>,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    pending: Arc<AtomicUsize>,
    posted: Arc<Mutex<Posted>>,
    report: impl Fn(Sent),
) {
    let mut batch = VecDeque::new();
    while let Some(first) = rx.recv().await {
        batch.push_back(first);
        take_queued(&mut rx, &mut batch, &pending);
        while let Some(item) = batch.pop_front() {
            // Items that arrived meanwhile join this batch, so edits coalesce while the platform is slow.
            take_queued(&mut rx, &mut batch, &pending);
            let sent = perform(sink.as_ref(), &posted, item).await;
            // Reported before it stops counting as pending: whoever waits for the outbox to be
            // empty finds the report already sent.
            report(sent);
            pending.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Moves what is queued into `batch` and coalesces it; folded items stop counting as pending.
fn take_queued(rx: &mut mpsc::UnboundedReceiver<Outgoing>, batch: &mut VecDeque<Outgoing>, pending: &AtomicUsize) {
    while let Ok(more) = rx.try_recv() {
        batch.push_back(more);
    }
    let before = batch.len();
    coalesce(batch);
    pending.fetch_sub(before - batch.len(), Ordering::SeqCst);
}

/// Folds an edit into an earlier queued edit of the same message (which then carries the latest
/// text), unless a new post under that key lies between them.
fn coalesce(batch: &mut VecDeque<Outgoing>) {
    let mut i = 1;
    while i < batch.len() {
        let Outgoing::Edit { release, key, message, text } = &batch[i] else {
            i += 1;
            continue;
        };
        let target = (release.clone(), key.clone(), message.clone());
        let earlier = (0..i).rev().find_map(|j| match &batch[j] {
            Outgoing::Edit { release, key, message, .. }
                if (release, key, message) == (&target.0, &target.1, &target.2) =>
            {
                Some(Some(j))
            }
            Outgoing::Post { release, key: Some(key), .. } if (release, key) == (&target.0, &target.1) => Some(None),
            _ => None,
        });
        match earlier.flatten() {
            Some(j) => {
                let text = text.clone();
                if let Outgoing::Edit { text: t, .. } = &mut batch[j] {
                    *t = text;
                }
                batch.remove(i);
            }
            None => i += 1,
        }
    }
}

async fn perform(sink: &dyn ChatSink, posted: &Mutex<Posted>, item: Outgoing) -> Sent {
    match item {
        Outgoing::Post { release, key, text, ask } => match sink.post(&text, &ask).await {
            Ok(message) => {
                let posted_key = key.map(|key| {
                    if let Ok(mut p) = posted.lock() {
                        p.by_key.insert((release.clone(), key.clone()), message.clone());
                        p.by_message.insert(message.clone(), (release.clone(), key.clone()));
                    }
                    (key, message)
                });
                Sent { release, posted: posted_key }
            }
            Err(e) => {
                tracing::warn!(release = %release, error = %e, "post failed");
                Sent { release, posted: None }
            }
        },
        Outgoing::Edit { release, key, message, text } => {
            let message = message
                .or_else(|| posted.lock().ok().and_then(|p| p.by_key.get(&(release.clone(), key.clone())).cloned()));
            match message {
                Some(m) => {
                    if let Err(e) = sink.update(&m, &text).await {
                        tracing::warn!(release = %release, key = %key, error = %e, "edit failed");
                    }
                }
                None => tracing::debug!(release = %release, key = %key, "no message to edit yet"),
            }
            Sent { release, posted: None }
        }
        Outgoing::Reply { to, text } => {
            if let Err(e) = sink.reply(&to, &text).await {
                tracing::warn!(error = %e, "could not answer privately");
            }
            Sent { release: String::new(), posted: None }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ChatError;
    use async_trait::async_trait;
    use std::time::Duration;

    /// A sink that takes `delay` per call and records what it did.
    #[derive(Default)]
    struct Slow {
        delay: Duration,
        calls: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl ChatSink for Slow {
        async fn post(&self, text: &str, _ask: &Ask) -> Result<String, ChatError> {
            tokio::time::sleep(self.delay).await;
            let mut c = self.calls.lock().unwrap();
            c.push(format!("post {text}"));
            Ok(format!("m{}", c.len()))
        }
        async fn update(&self, message: &str, text: &str) -> Result<(), ChatError> {
            tokio::time::sleep(self.delay).await;
            self.calls.lock().unwrap().push(format!("edit {message} {text}"));
            Ok(())
        }
        async fn reply(&self, to: &UserRef, text: &str) -> Result<(), ChatError> {
            self.calls.lock().unwrap().push(format!("reply {} {text}", to.id));
            Ok(())
        }
    }

    fn post(key: &str, text: &str) -> Outgoing {
        Outgoing::Post { release: "r".into(), key: Some(key.into()), text: text.into(), ask: Ask::Nothing }
    }

    fn edit(key: &str, text: &str) -> Outgoing {
        Outgoing::Edit { release: "r".into(), key: key.into(), message: None, text: text.into() }
    }

    #[tokio::test(start_paused = true)]
    async fn sending_never_waits_and_edits_of_one_message_coalesce_while_the_platform_is_slow() {
        let sink = Arc::new(Slow { delay: Duration::from_secs(1), ..Slow::default() });
        let reports = Arc::new(Mutex::new(Vec::new()));
        let r = reports.clone();
        let (outbox, task) = Outbox::spawn(sink.clone(), move |s| r.lock().unwrap().push(s));
        let started = tokio::time::Instant::now();
        outbox.send(post("status", "s0"));
        outbox.send(post("freeze", "f0"));
        for n in 1..=20 {
            outbox.send(edit("status", &format!("s{n}")));
        }
        outbox.send(edit("freeze", "f1"));
        assert_eq!(started.elapsed(), Duration::ZERO, "queueing waited for the platform");
        drop(outbox);
        task.await.unwrap();
        let calls = sink.calls.lock().unwrap().clone();
        assert_eq!(calls, vec!["post s0", "post f0", "edit m1 s20", "edit m2 f1"]);
        let posted: Vec<_> = reports.lock().unwrap().iter().filter_map(|s| s.posted.clone()).collect();
        assert_eq!(posted, vec![("status".to_string(), "m1".to_string()), ("freeze".to_string(), "m2".to_string())]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_edit_is_not_folded_across_a_new_post_under_its_key() {
        let mut batch = VecDeque::from([edit("freeze", "a"), post("freeze", "again"), edit("freeze", "b")]);
        coalesce(&mut batch);
        assert_eq!(batch.len(), 3);
        let mut batch = VecDeque::from([edit("freeze", "a"), edit("status", "x"), edit("freeze", "b")]);
        coalesce(&mut batch);
        assert_eq!(batch, VecDeque::from([edit("freeze", "b"), edit("status", "x")]));
    }

    #[tokio::test(start_paused = true)]
    async fn pending_counts_down_to_zero_and_posted_messages_are_known() {
        let sink = Arc::new(Slow::default());
        let (outbox, _task) = Outbox::spawn(sink, |_| {});
        outbox.send(post("freeze", "f"));
        outbox.send(edit("freeze", "f2"));
        outbox.send(edit("freeze", "f3"));
        while outbox.pending() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(outbox.posted("m1"), Some(("r".to_string(), "freeze".to_string())));
    }
}
