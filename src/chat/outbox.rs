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

use super::{ChatSink, PostTag};
use crate::engine::{Ask, PostKey, UserRef};

/// One chat effect for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A post in the war room; a keyed one is reported back with its message id.
    Post {
        /// The release it belongs to (empty for notices about no release).
        release: String,
        /// The engine's post key (`freeze`, `approval:0`, `status`), if it is to be edited or
        /// matched with reactions and clicks later.
        key: Option<PostKey>,
        /// The message.
        text: String,
        /// Reaction or buttons to offer.
        ask: Ask,
        /// Its identity and place in the release's log (posts the engine asked for).
        from: Option<From>,
    },
    /// Replace the text of the latest message posted under `key` (and remove its buttons).
    Edit {
        /// The release it belongs to.
        release: String,
        /// The post key.
        key: PostKey,
        /// The message id, when the driver knows it from the release's log; otherwise the outbox
        /// uses the id of its own post under that key, and drops the edit if it has none.
        message: Option<String>,
        /// The new text.
        text: String,
        /// How far the release's announcements have gone out once this edit is made.
        through: Option<Through>,
    },
    /// Nothing to send: an edit folded into an earlier one leaves its place in the queue, so its
    /// release's announced mark moves only when everything queued before it went out.
    Mark {
        /// The release.
        release: String,
        /// How far its announcements have gone out once the queue reaches this place.
        through: Through,
    },
    /// An answer for one person only.
    Reply {
        /// Who.
        to: UserRef,
        /// The answer.
        text: String,
    },
}

/// Where a post the engine asked for comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    /// Its identity on the platform.
    pub tag: PostTag,
    /// How far the release's announcements have gone out once it is posted.
    pub through: Through,
    /// Re-derived from the log after a restart: look whether it went out before posting it.
    pub recheck: bool,
}

/// What the outbox reports after performing one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The release of the item.
    pub release: String,
    /// For a keyed post that went out: its key and the platform's message id.
    pub posted: Option<(PostKey, String)>,
    /// How far the release's announcements have gone out now (items from its log).
    pub through: Option<Through>,
}

/// How far the announcements of one raybot process in a release have gone out: every post and
/// edit asked for by the events it recorded before event number `events`. (Each process posts
/// what the events it recorded asked for, so each has its own mark.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Through {
    /// The raybot process (replica name) whose events these are.
    pub replica: String,
    /// The number of the event that asked for the item, plus one when the item is that event's
    /// last post or edit.
    pub events: u64,
}

/// Message ids of the keyed posts this outbox made: `(release, key) → message` and back.
#[derive(Debug, Default)]
struct Posted {
    by_key: HashMap<(String, PostKey), String>,
    by_message: HashMap<String, (String, PostKey)>,
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
    pub fn posted(&self, message: &str) -> Option<(String, PostKey)> {
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
    let gap = sink.edit_gap();
    // When each message (release, key) was last edited.
    let mut edited: HashMap<(String, PostKey), tokio::time::Instant> = HashMap::new();
    let mut batch = VecDeque::new();
    while let Some(first) = rx.recv().await {
        batch.push_back(first);
        take_queued(&mut rx, &mut batch, &pending);
        while let Some(mut item) = batch.pop_front() {
            if let Outgoing::Edit { release, key, .. } = &item {
                let due = edited.get(&(release.clone(), key.clone())).map(|at| *at + gap);
                if let Some(due) = due.filter(|d| *d > tokio::time::Instant::now()) {
                    // Too soon after its last edit: wait, and let the edits of that message
                    // queued meanwhile fold into this one, which then shows the latest text.
                    tokio::time::sleep_until(due).await;
                    batch.push_front(item);
                    take_queued(&mut rx, &mut batch, &pending);
                    let Some(front) = batch.pop_front() else { continue };
                    item = front;
                }
                if let Outgoing::Edit { release, key, .. } = &item {
                    edited.insert((release.clone(), key.clone()), tokio::time::Instant::now());
                }
            }
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
/// text), unless a new post under that key lies between them. A folded edit's mark (how far its
/// release went out) moves to one mark at the end of the batch, which only says what no other
/// queued item of that release and process says already.
fn coalesce(batch: &mut VecDeque<Outgoing>) {
    let mut i = 1;
    while i < batch.len() {
        let Outgoing::Edit { release, key, message, text, .. } = &batch[i] else {
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
                // Its place is gone; the end of the batch is later still, so never ahead.
                if let Some(Outgoing::Edit { release, through: Some(through), .. }) = batch.remove(i) {
                    batch.push_back(Outgoing::Mark { release, through });
                }
            }
            None => i += 1,
        }
    }
    // One mark per release and process at most, and only if it goes further than the items.
    let mut items: HashMap<(String, String), u64> = HashMap::new();
    let mut furthest: HashMap<(String, String), u64> = HashMap::new();
    for item in batch.iter() {
        if let Some((release, t)) = marks(item) {
            let seen = if matches!(item, Outgoing::Mark { .. }) { &mut furthest } else { &mut items };
            let n = seen.entry((release.clone(), t.replica.clone())).or_default();
            *n = (*n).max(t.events);
        }
    }
    let mut k = batch.len();
    while k > 0 {
        k -= 1;
        let Outgoing::Mark { release, through } = &mut batch[k] else { continue };
        let key = (release.clone(), through.replica.clone());
        let best = furthest.get(&key).copied().unwrap_or(0);
        if best > items.get(&key).copied().unwrap_or(0) {
            // The last mark of its key carries the furthest figure; earlier ones go.
            through.events = best;
            furthest.insert(key, 0);
        } else {
            batch.remove(k);
        }
    }
}

/// The release and mark an item carries, if any.
fn marks(item: &Outgoing) -> Option<(&String, &Through)> {
    match item {
        Outgoing::Post { release, from: Some(f), .. } => Some((release, &f.through)),
        Outgoing::Edit { release, through: Some(t), .. } | Outgoing::Mark { release, through: t } => Some((release, t)),
        _ => None,
    }
}

/// Posts `text`, or finds it posted already when it was re-derived after a restart.
async fn post(sink: &dyn ChatSink, text: &str, ask: &Ask, from: Option<&From>) -> Result<String, super::ChatError> {
    let Some(from) = from else { return sink.post(text, ask).await };
    if from.recheck {
        match sink.find(&from.tag).await {
            Ok(Some(message)) => {
                tracing::info!(post = %from.tag.id, "went out before the restart; not posted again");
                return Ok(message);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(post = %from.tag.id, error = %e, "could not look whether a post went out; posting it")
            }
        }
    }
    sink.post_tagged(text, ask, &from.tag).await
}

async fn perform(sink: &dyn ChatSink, posted: &Mutex<Posted>, item: Outgoing) -> Sent {
    match item {
        Outgoing::Post { release, key, text, ask, from } => {
            let through = from.as_ref().map(|f| f.through.clone());
            match post(sink, &text, &ask, from.as_ref()).await {
                Ok(message) => {
                    let posted_key = key.map(|key| {
                        if let Ok(mut p) = posted.lock() {
                            p.by_key.insert((release.clone(), key.clone()), message.clone());
                            p.by_message.insert(message.clone(), (release.clone(), key.clone()));
                        }
                        (key, message)
                    });
                    Sent { release, posted: posted_key, through }
                }
                Err(e) => {
                    // The platform refused it for good (retries are the sink's): the mark moves
                    // on, or one bad post would be posted again after every restart.
                    tracing::warn!(release = %release, error = %e, "post failed");
                    Sent { release, posted: None, through }
                }
            }
        }
        Outgoing::Mark { release, through } => Sent { release, posted: None, through: Some(through) },
        Outgoing::Edit { release, key, message, text, through } => {
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
            Sent { release, posted: None, through }
        }
        Outgoing::Reply { to, text } => {
            if let Err(e) = sink.reply(&to, &text).await {
                tracing::warn!(error = %e, "could not answer privately");
            }
            Sent { release: String::new(), posted: None, through: None }
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
        gap: Duration,
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
        fn edit_gap(&self) -> Duration {
            self.gap
        }
    }

    fn post(key: &str, text: &str) -> Outgoing {
        Outgoing::Post {
            release: "r".into(),
            key: Some(PostKey::parse(key)),
            text: text.into(),
            ask: Ask::Nothing,
            from: None,
        }
    }

    fn edit(key: &str, text: &str) -> Outgoing {
        Outgoing::Edit {
            release: "r".into(),
            key: PostKey::parse(key),
            message: None,
            text: text.into(),
            through: None,
        }
    }

    fn through(events: u64) -> Through {
        Through { replica: "raybot-a".into(), events }
    }

    /// Post `n` of event `event`, the last of that event's when `last`.
    fn announcement(event: u64, n: usize, last: bool, text: &str) -> Outgoing {
        let tag = PostTag::new("r", event, n, crate::engine::Timestamp(0));
        let from = From { tag, through: through(event + u64::from(last)), recheck: false };
        Outgoing::Post { release: "r".into(), key: None, text: text.into(), ask: Ask::Nothing, from: Some(from) }
    }

    fn status_edit(event: u64, text: &str) -> Outgoing {
        let through = Some(through(event + 1));
        Outgoing::Edit { release: "r".into(), key: PostKey::Status, message: None, text: text.into(), through }
    }

    #[tokio::test(start_paused = true)]
    async fn the_announced_mark_moves_only_as_far_as_what_went_out_in_order() {
        let sink = Arc::new(Slow { delay: Duration::from_secs(1), ..Slow::default() });
        let reports = Arc::new(Mutex::new(Vec::new()));
        let r = reports.clone();
        let (outbox, task) = Outbox::spawn(sink.clone(), move |s| r.lock().unwrap().push(s));
        outbox.send(post("status", "s0"));
        outbox.send(status_edit(0, "s1"));
        outbox.send(announcement(1, 0, false, "phase 1 start"));
        outbox.send(announcement(1, 1, true, "step 1.1"));
        // Folded into the edit of event 0, which goes out first: its place still marks event 2.
        outbox.send(status_edit(2, "s2"));
        outbox.send(announcement(3, 0, true, "step 1.2"));
        drop(outbox);
        task.await.unwrap();
        let calls = sink.calls.lock().unwrap().clone();
        assert_eq!(calls, vec!["post s0", "edit m1 s2", "post phase 1 start", "post step 1.1", "post step 1.2"]);
        let marks: Vec<Option<u64>> =
            reports.lock().unwrap().iter().map(|s| s.through.as_ref().map(|t| t.events)).collect();
        // Never ahead of what went out: event 2's mark is not reported with the edit it was folded
        // into; the post of event 3 carries the mark further, so the folded edit leaves none.
        assert_eq!(marks, vec![None, Some(1), Some(1), Some(2), Some(4)]);
    }

    #[test]
    fn a_burst_of_edits_folds_into_one_edit_and_one_mark() {
        let mut batch = VecDeque::from([post("status", "s0")]);
        for n in 0..100 {
            batch.push_back(status_edit(n, &format!("s{n}")));
            coalesce(&mut batch);
        }
        let marks: Vec<_> = batch.iter().filter_map(|i| marks(i).map(|(_, t)| t.events)).collect();
        assert_eq!(batch.len(), 3, "{batch:?}");
        assert!(matches!(&batch[1], Outgoing::Edit { text, .. } if text == "s99"), "{batch:?}");
        // The edit (first folded into) keeps its own mark; the last mark is the furthest.
        assert_eq!(marks, vec![1, 100]);
    }

    /// A sink whose platform can tell a tagged post went out.
    #[derive(Default)]
    struct Remembers {
        tagged: Mutex<Vec<(String, String)>>,
        posts: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl ChatSink for Remembers {
        async fn post(&self, text: &str, _ask: &Ask) -> Result<String, ChatError> {
            let mut p = self.posts.lock().unwrap();
            p.push(text.to_string());
            Ok(format!("m{}", p.len()))
        }
        async fn post_tagged(&self, text: &str, ask: &Ask, tag: &PostTag) -> Result<String, ChatError> {
            let m = self.post(text, ask).await?;
            self.tagged.lock().unwrap().push((tag.id.clone(), m.clone()));
            Ok(m)
        }
        async fn find(&self, tag: &PostTag) -> Result<Option<String>, ChatError> {
            Ok(self.tagged.lock().unwrap().iter().find(|(t, _)| *t == tag.id).map(|(_, m)| m.clone()))
        }
        async fn update(&self, _message: &str, _text: &str) -> Result<(), ChatError> {
            Ok(())
        }
        async fn reply(&self, _to: &UserRef, _text: &str) -> Result<(), ChatError> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_post_re_derived_after_a_restart_goes_out_only_if_the_platform_has_not_got_it() {
        let sink = Arc::new(Remembers::default());
        let (outbox, task) = Outbox::spawn(sink.clone(), |_| {});
        outbox.send(announcement(4, 0, true, "went out"));
        let again = |n: usize, text: &str| {
            let Outgoing::Post { release, key, ask, from: Some(mut from), .. } = announcement(4, n, true, text) else {
                unreachable!()
            };
            from.recheck = true;
            Outgoing::Post { release, key, text: text.into(), ask, from: Some(from) }
        };
        outbox.send(again(0, "went out"));
        outbox.send(again(1, "lost in the crash"));
        drop(outbox);
        task.await.unwrap();
        assert_eq!(*sink.posts.lock().unwrap(), vec!["went out", "lost in the crash"]);
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
        assert_eq!(posted, vec![(PostKey::Status, "m1".to_string()), (PostKey::Freeze, "m2".to_string())]);
    }

    #[tokio::test(start_paused = true)]
    async fn one_message_is_edited_at_most_once_per_gap_and_shows_the_latest_text() {
        let sink = Arc::new(Slow { gap: Duration::from_secs(1), ..Slow::default() });
        let (outbox, task) = Outbox::spawn(sink.clone(), |_| {});
        outbox.send(post("status", "s0"));
        // Twenty edits, one every 100 ms, while a post of another message goes out meanwhile.
        for n in 1..=20 {
            outbox.send(edit("status", &format!("s{n}")));
            if n == 5 {
                outbox.send(post("freeze", "f0"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(outbox);
        task.await.unwrap();
        let calls = sink.calls.lock().unwrap().clone();
        let edits: Vec<&String> = calls.iter().filter(|c| c.starts_with("edit")).collect();
        assert!(edits.len() <= 4, "{calls:?}");
        assert_eq!(calls.last().map(String::as_str), Some("edit m1 s20"), "{calls:?}");
        assert!(calls.contains(&"post f0".to_string()), "{calls:?}");
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
        assert_eq!(outbox.posted("m1"), Some(("r".to_string(), PostKey::Freeze)));
    }
}
