//! Announcements that survive a crash.
//!
//! A release's posts are made after its events are recorded (decide, persist, answer — then
//! post), so a process that dies in between has recorded events whose announcements never went
//! out. Each raybot process posts what the events it recorded asked for, and keeps a mark per
//! release in the store: the posts and edits of its events before event number `n` went out
//! ([`Store::announced`]). The outbox reports each item it performed ([`Through`]); [`Marks`]
//! writes the highest figure reached, one write at a time per release and process and at most
//! one per [`MARK_GAP`] (a burst of edits costs the store a few writes a second, not one each),
//! and every pending figure when the process stops cleanly.
//!
//! A process that takes a release over (its own restart, or a survivor after another replica
//! stopped) asks the engine again what the events after each stopped process's mark announced —
//! the engine is deterministic, so replaying the log gives the very same texts — and posts them
//! before its own `Resumed` notice, tagged with their identity ([`PostTag`]). Where the platform
//! can tell that a tagged post went out already (Slack message metadata, Discord's enforced
//! nonce) it is not posted twice. Keyed requests (freeze, approval, status) are not re-derived
//! here: recovery posts them again when the log names no message for them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::{Driver, Internal, StoredEvent};
use crate::chat::PostTag;
use crate::chat::outbox::{From, Outgoing, Through};
use crate::engine::{Effect, PostKey, Release, Timestamp};
use crate::store::StoreError;

/// The least time between two writes of one mark. Posts that went out in the last gap before a
/// crash are looked up on the platform (or, in a transcript, posted again).
pub(super) const MARK_GAP: Duration = Duration::from_millis(250);

/// One process's mark in one release.
#[derive(Debug, Default)]
struct Mark {
    /// The highest figure the outbox reported.
    reported: u64,
    /// The highest figure the store took.
    written: u64,
    /// A write is under way.
    writing: bool,
    /// When the last write started.
    last: Option<Instant>,
    /// A write waits for the gap to pass.
    due: bool,
}

/// The marks this driver keeps current: `(release, replica) →` [`Mark`].
#[derive(Debug, Default)]
pub(super) struct Marks {
    map: BTreeMap<(String, String), Mark>,
}

impl Marks {
    /// No mark write is under way (what a flush waits for).
    pub(super) fn idle(&self) -> bool {
        self.map.values().all(|m| !m.writing)
    }

    /// A mark known to be in the store already (a release started or taken over).
    fn known(&mut self, release: &str, replica: &str, written: u64) {
        let m = self.map.entry((release.to_string(), replica.to_string())).or_default();
        m.written = m.written.max(written);
        m.reported = m.reported.max(written);
    }
}

/// Where the items of one event sit in its release's log.
#[derive(Debug, Clone, Copy)]
pub(super) struct Origin {
    /// The event's number (0-based).
    pub(super) event: u64,
    /// When it was recorded.
    pub(super) at: Timestamp,
}

/// The outbox items for the chat effects of one event, in order, tagged and marked; an edit goes
/// to the latest message `posts` names under its key.
fn items(
    release: &str,
    replica: &str,
    origin: Origin,
    fx: Vec<Effect>,
    recheck: bool,
    posts: &BTreeMap<PostKey, Vec<String>>,
) -> Vec<Outgoing> {
    let chat = fx.iter().filter(|e| matches!(e, Effect::Post { .. } | Effect::Update { .. })).count();
    let mut out = Vec::with_capacity(chat);
    let mut n = 0;
    for e in fx {
        let last = out.len() + 1 == chat;
        let through = Through { replica: replica.to_string(), events: origin.event + u64::from(last) };
        match e {
            Effect::Post { key, text, ask } => {
                let tag = PostTag::new(release, origin.event, n, origin.at);
                n += 1;
                let from = Some(From { tag, through, recheck });
                out.push(Outgoing::Post { release: release.to_string(), key, text, ask, from });
            }
            Effect::Update { key, text } => out.push(Outgoing::Edit {
                release: release.to_string(),
                message: posts.get(&key).and_then(|m| m.last().cloned()),
                key,
                text,
                through: Some(through),
            }),
            _ => {}
        }
    }
    out
}

/// The chat effects of the events of `log` that the processes in `stopped` recorded at or after
/// their marks (`marks`; a process without one had none taken), as outbox items to check and post
/// again — keyed posts excepted (recovery asks for those).
fn re_derived(
    release: &str,
    log: &[StoredEvent],
    marks: &BTreeMap<String, u64>,
    stopped: &BTreeSet<String>,
) -> Vec<Outgoing> {
    let Some((first, rest)) = log.split_first() else { return Vec::new() };
    let Some((mut state, fx)) = Release::start(&first.event, first.at) else { return Vec::new() };
    let mut lost = Vec::new();
    let mut take = |n: u64, e: &StoredEvent, fx: Vec<Effect>| {
        let Some(replica) = e.replica.as_deref().filter(|r| stopped.contains(*r)) else { return };
        if n >= marks.get(replica).copied().unwrap_or(0) {
            let fx: Vec<Effect> = fx.into_iter().filter(|f| !matches!(f, Effect::Post { key: Some(_), .. })).collect();
            lost.push((replica.to_string(), Origin { event: n, at: e.at }, fx));
        }
    };
    take(0, first, fx);
    for (n, e) in rest.iter().enumerate() {
        let fx = state.handle(&e.event, e.at);
        take(n as u64 + 1, e, fx);
    }
    // Edits go to the messages the log names now.
    lost.into_iter()
        .flat_map(|(replica, origin, fx)| items(release, &replica, origin, fx, true, &state.posts))
        .collect()
}

impl Driver {
    /// Hands the chat effects in `fx` (what the event at `origin` of release `id` asked for,
    /// recorded by this process) to the outbox, tagged and marked; returns the other effects in
    /// order.
    pub(super) fn announce(&self, id: &str, origin: Origin, fx: Vec<Effect>) -> Vec<Effect> {
        let (chat, rest): (Vec<Effect>, Vec<Effect>) =
            fx.into_iter().partition(|e| matches!(e, Effect::Post { .. } | Effect::Update { .. }));
        let none = BTreeMap::new();
        let posts = self.releases.get(id).map(|a| &a.release.posts).unwrap_or(&none);
        for item in items(id, &self.replica, origin, chat, false, posts) {
            self.outbox.send(item);
        }
        rest
    }

    /// A new release keeps marks from its first event on: this process's is 0 until its first
    /// posts go out. (Without it, the release would count as one of an older build.)
    pub(super) async fn start_marks(&mut self, id: &str) -> Result<(), StoreError> {
        self.store.set_announced(id, &self.replica, 0).await?;
        self.marks.known(id, &self.replica, 0);
        Ok(())
    }

    /// Queues again what the events of release `id` (its stored `log`) recorded by stopped processes announced
    /// after their marks: `previous`, whose release this process takes over, any other process
    /// that is not alive, and — when `restarted` (this process has just started under its name)
    /// — this one before its restart. A running process's own posts are still in its outbox.
    /// Returns how many items it queued.
    pub(super) async fn re_announce(
        &mut self,
        id: &str,
        log: &[StoredEvent],
        previous: Option<&str>,
        restarted: bool,
    ) -> Result<usize, StoreError> {
        let Some(marks) = self.store.announced(id).await? else {
            tracing::info!(release = %id, "started by an older raybot: its lost posts cannot be re-derived");
            return Ok(0);
        };
        let mut stopped: BTreeSet<String> = previous.map(str::to_string).into_iter().collect();
        if restarted {
            stopped.insert(self.replica.clone());
        }
        let others: BTreeSet<String> = log
            .iter()
            .filter_map(|e| e.replica.clone())
            .filter(|r| !stopped.contains(r) && *r != self.replica)
            .collect();
        for r in others {
            if !self.store.alive(&r).await? {
                stopped.insert(r);
            }
        }
        for (replica, n) in &marks {
            self.marks.known(id, replica, *n);
        }
        let items = re_derived(id, log, &marks, &stopped);
        let n = items.len();
        if n > 0 {
            tracing::warn!(release = %id, items = n, "posting again what a stopped raybot had not posted");
        }
        for item in items {
            self.outbox.send(item);
        }
        Ok(n)
    }

    /// The outbox reached `through` in release `id`: raise that process's mark in the store
    /// (one write at a time per mark; the latest figure wins).
    pub(super) fn went_out(&mut self, id: &str, through: Through) {
        let m = self.marks.map.entry((id.to_string(), through.replica.clone())).or_default();
        m.reported = m.reported.max(through.events);
        self.write_mark(id, &through.replica);
    }

    fn write_mark(&mut self, id: &str, replica: &str) {
        let Some(m) = self.marks.map.get_mut(&(id.to_string(), replica.to_string())) else { return };
        if m.writing || m.due || m.reported <= m.written {
            return;
        }
        let wait = m.last.map(|at| MARK_GAP.saturating_sub(at.elapsed())).unwrap_or_default();
        if !wait.is_zero() {
            m.due = true;
            let (tx, release, replica) = (self.internal_tx.clone(), id.to_string(), replica.to_string());
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let _ = tx.send(Internal::MarkDue { release, replica });
            });
            return;
        }
        m.writing = true;
        m.last = Some(Instant::now());
        let (store, tx) = (self.store.clone(), self.internal_tx.clone());
        let (release, replica, through) = (id.to_string(), replica.to_string(), m.reported);
        tokio::spawn(async move {
            let written = store.set_announced(&release, &replica, through).await;
            if let Err(e) = &written {
                tracing::warn!(release = %release, error = %e, "could not record how far the posts went out");
            }
            let _ = tx.send(Internal::Marked { release, replica, through, written: written.is_ok() });
        });
    }

    /// The gap before a mark's next write has passed.
    pub(super) fn mark_due(&mut self, id: &str, replica: &str) {
        if let Some(m) = self.marks.map.get_mut(&(id.to_string(), replica.to_string())) {
            m.due = false;
        }
        self.write_mark(id, replica);
    }

    /// Writes every mark the outbox got further than the store knows, at once (the process stops).
    pub(super) async fn write_marks(&mut self) {
        for ((release, replica), m) in self.marks.map.iter_mut() {
            if m.reported > m.written {
                match self.store.set_announced(release, replica, m.reported).await {
                    Ok(()) => m.written = m.reported,
                    Err(e) => {
                        tracing::warn!(release = %release, error = %e, "could not record how far the posts went out")
                    }
                }
            }
        }
    }

    /// A mark write ended: the next one goes if the outbox got further meanwhile. (A failed
    /// write is not retried: the mark only lags, and a takeover checks with the platform.)
    pub(super) fn marked(&mut self, id: &str, replica: &str, through: u64, written: bool) {
        let key = (id.to_string(), replica.to_string());
        let Some(m) = self.marks.map.get_mut(&key) else { return };
        m.writing = false;
        if written {
            m.written = m.written.max(through);
            self.write_mark(id, replica);
        } else {
            m.reported = m.written;
        }
        let finished = self.releases.get(id).is_none_or(|a| a.release.is_finished());
        if finished && self.marks.map.get(&key).is_some_and(|m| !m.writing) {
            self.marks.map.remove(&key);
        }
    }
}
