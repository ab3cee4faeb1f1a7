//! The driver: the only place where the engine meets the world.
//!
//! For every delivery it routes to the right release, lets the engine decide, makes the event
//! durable in the [`Store`], answers the person — and only then acts: chat effects go to the
//! [`Outbox`] (which never holds up a decision), jobs to the queue, probes, evidence and timers to
//! background tasks. Results of that work come back as events through the same path, so a restart
//! can rebuild every release by replaying its log.
//!
//! - `effects`: the hands — jobs, probes, input checks, evidence, timers — started in the
//!   background, their results coming back as events;
//! - `announce`: how far each process's posts went out, and posting again what a stopped one had not;
//! - [`turn`]: the one delivery being handled, passed down and answered once its event is recorded;
//! - [`run`]: the event loop behind a [`crate::chat::handle::DriverHandle`], with the platforms' 3-second rule;
//! - [`worker`]: the job queue's worker and the process's [`worker::Drain`];
//! - [`answers`]: the read-only commands' answers.

mod announce;
pub mod answers;
mod effects;
mod group;
pub mod reader;
mod releases;
pub mod run;
#[cfg(test)]
mod tests;
pub mod turn;
pub mod worker;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::chat::outbox::{Outbox, Outgoing, Sent};
use crate::chat::{ChatSink, Delivery, Inbound};
use crate::clock::now;
use crate::command::{Command, HELP};
use crate::config::Config;
use crate::engine::refusal::Runtime;
use crate::engine::{
    Activity, Ask, Effect, Event, JobId, Platform, PostKey, Release, ReleaseCommand, ReleaseId, Terminal, Timestamp,
    UserRef, refuse,
};
use crate::metrics::Metrics;
use crate::protocol::Catalog;
use crate::store::{Append, JobQueue, LockOutcome, ReleaseSummary, Store, StoreError};
use releases::{Active, Releases};
use turn::Turn;
use worker::{Drain, QueuedPayload, Worker};

/// What the store keeps per event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEvent {
    /// When the driver applied it (the `now` the engine saw).
    pub at: Timestamp,
    /// The event itself.
    pub event: Event,
    /// The raybot process that recorded it (named in "job outcome unknown after … stopped").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
}

/// Work that comes back to the driver from its background tasks.
#[derive(Debug)]
pub enum Internal {
    /// A result for release `release`: `JobFinished`, `ProbeFinished`, `InputsChecked`,
    /// `BundleWritten`, `Tick`, `JobLost` ….
    Result {
        /// Id of the release that asked for the work.
        release: String,
        /// The result.
        event: Event,
        /// The job-queue entry to acknowledge once `event` is recorded (a queued job's result).
        ack: Option<String>,
    },
    /// Time to look for releases whose raybot process stopped.
    Sweep,
    /// The outbox performed an item (for a keyed post: its message id, to be recorded).
    Sent(Sent),
    /// A mark may be written again (see `announce.rs`).
    MarkDue {
        /// The release.
        release: String,
        /// Whose mark.
        replica: String,
    },
    /// A write of an announced mark ended (see `announce.rs`).
    Marked {
        /// The release.
        release: String,
        /// Whose mark.
        replica: String,
        /// The figure written.
        through: u64,
        /// Whether the store took it.
        written: bool,
    },
}

impl Internal {
    fn result(release: String, event: Event) -> Internal {
        Internal::Result { release, event, ack: None }
    }
}

/// Runs releases for one chat platform.
pub struct Driver {
    /// Configuration new releases are planned from (running releases keep their frozen plan).
    pub config: Config,
    /// Protocols new releases are planned from; also answers `/ray protocols`.
    pub catalog: Catalog,
    store: Arc<dyn Store>,
    /// Where chat effects go; performed by its own task.
    outbox: Outbox,
    outbox_task: Option<JoinHandle<()>>,
    /// The platform shows a live status message per release.
    live_status: bool,
    /// Evidence root; each release writes under `<root>/<release id>/`.
    pub artifacts: PathBuf,
    platform: Platform,
    replica: String,
    releases: Releases,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    metrics: Arc<Metrics>,
    /// Runs what recorded events ask for besides chat (see `effects.rs`).
    hands: effects::Hands,
    /// Outcomes of releases that ended while this driver ran.
    finished: Vec<(String, Terminal)>,
    /// The shared job queue (Redis), if the store has one.
    queue: Option<Arc<dyn JobQueue>>,
    /// Whether this driver's queue worker runs.
    worker: bool,
    /// Jobs this driver queued whose results it has not recorded yet.
    queued: BTreeSet<JobId>,
    /// Wakes the queue worker when this driver queued a job.
    wake: Arc<tokio::sync::Notify>,
    /// Whether this process is stopping, shared with its worker.
    drain: Drain,
    /// What the read side answers status questions from (see [`reader`]).
    board: Arc<std::sync::RwLock<reader::Board>>,
    /// How far each release's announcements went out (see `announce.rs`).
    marks: announce::Marks,
}

/// How long an idempotency key is remembered (Slack retries for up to an hour; Discord interaction
/// tokens live 15 minutes).
pub const DEDUP_TTL_MS: u64 = 24 * 3600 * 1000;

impl Driver {
    /// A driver for `platform`, named as a replica by `RAYBOT_REPLICA`,
    /// else `FLY_MACHINE_ID`, else `raybot-<pid>`, posting through `chat` by way of its own outbox
    /// task. `Driver::resume` then picks up unfinished releases. Call inside a Tokio runtime.
    pub fn new(
        config: Config,
        catalog: Catalog,
        store: Arc<dyn Store>,
        chat: Arc<dyn ChatSink>,
        artifacts: PathBuf,
        platform: Platform,
        metrics: Arc<Metrics>,
    ) -> Driver {
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let live_status = chat.live_status();
        let report = internal_tx.clone();
        let (outbox, outbox_task) = Outbox::spawn(chat, move |sent| {
            let _ = report.send(Internal::Sent(sent));
        });
        let queue = store.queue();
        let releases = Releases::new(platform, store.clone());
        let hands =
            effects::Hands::new(artifacts.clone(), config.base_dir.clone(), internal_tx.clone(), metrics.clone());
        Driver {
            config,
            catalog,
            store,
            outbox,
            outbox_task: Some(outbox_task),
            live_status,
            artifacts,
            platform,
            replica: replica_name(),
            releases,
            internal_tx,
            internal_rx,
            metrics,
            hands,
            finished: Vec::new(),
            queue,
            worker: false,
            queued: BTreeSet::new(),
            wake: Arc::new(tokio::sync::Notify::new()),
            drain: Drain::default(),
            board: Arc::default(),
            marks: Default::default(),
        }
    }

    /// Shares `drain` (the process's stop signal and count of jobs in hand) with this driver.
    pub fn with_drain(mut self, drain: Drain) -> Driver {
        self.drain = drain;
        self
    }

    fn job_lease_ms(&self) -> u64 {
        self.config.raybot.release.job_lease_seconds.max(1) * 1000
    }

    /// Loads every unfinished release of this platform from the store and resumes it, unless the
    /// raybot process that recorded its latest event is alive (another replica drives it). With a
    /// shared job queue, also starts this process's queue worker.
    pub(crate) async fn resume(&mut self) -> Result<usize, StoreError> {
        let mut resumed = 0;
        for s in self.store.unfinished().await? {
            if self.releases.contains_key(&s.id) {
                continue;
            }
            if let Some(other) = s.replica.as_deref().filter(|r| *r != self.replica) {
                if self.store.alive(other).await? {
                    tracing::info!(release = %s.id, replica = %other, "driven by a live replica; not resuming");
                    continue;
                }
            }
            if self.take_over(&s.id, true).await? {
                resumed += 1;
            }
        }
        self.start_worker();
        Ok(resumed)
    }

    /// Takes release `id` over: loads it, takes its environment lock and records `Resumed`. When
    /// `retry` is false (a survivor taking over from a stopped replica) it gives up if anyone
    /// recorded an event meanwhile. Returns whether it took it over.
    async fn take_over(&mut self, id: &str, retry: bool) -> Result<bool, StoreError> {
        // One read serves the rebuild and the re-derivation of lost posts below.
        let log = releases::read_log(self.store.as_ref(), id).await?;
        let Some((release, log_len, previous)) = Releases::rebuild(&log) else { return Ok(false) };
        if release.plan.people.platform != self.platform {
            self.releases.foreign.insert(id.to_string());
            return Ok(false);
        }
        if release.is_finished() {
            return Ok(false);
        }
        let (token, lock_expires_at) = match self
            .store
            .lock(&release.env, &release.id, self.lease_ms(), now().0)
            .await?
        {
            LockOutcome::Acquired(l) => (Some(l.token), l.expires_at_ms),
            LockOutcome::Held(l) => {
                tracing::warn!(release = %release.id, holder = %l.owner, "environment lock held by another release; not resuming");
                return Ok(false);
            }
        };
        // What this driver already shows of it stays (a survivor taking over).
        let status_shown = self.releases.get(id).and_then(|a| a.status_shown.clone());
        let mut active = Active::new(release, log_len, token, lock_expires_at);
        active.status_shown = status_shown;
        self.releases.insert(id.into(), active);
        self.metrics.release_resumed();
        // What the stopped process recorded but never posted goes out first, in its order.
        // A start-up resume (`retry`) follows this process's own restart; a sweep runs beside
        // its live outbox.
        if let Err(e) = self.re_announce(id, &log, previous.as_deref(), retry).await {
            tracing::warn!(release = %id, error = %e, "could not re-derive the posts a stopped raybot had not made");
        }
        let ev = Event::Resumed { replica: self.replica.clone(), previous, jobs_queued: self.queue.is_some() };
        match self.apply(id, ev, &mut Turn::background(), retry).await {
            Ok(()) => {
                // A release recorded before status messages were keyed has none: this replica posts it.
                self.post_status(id);
                Ok(true)
            }
            Err(StoreError::Conflict { .. }) => {
                tracing::info!(release = %id, "another replica moved the release on first; leaving it to them");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Looks for unfinished releases whose latest event was recorded by a raybot process that
    /// stopped sending heartbeats, and takes them over (their reminders, probes and health windows
    /// lived in that process). Called a few times per job lease.
    pub(crate) async fn sweep(&mut self) -> Result<(), StoreError> {
        let open = self.store.unfinished().await?;
        self.refresh(open.clone()).await?;
        for s in open {
            let Some(other) = s.replica.as_deref() else { continue };
            if other == self.replica || self.releases.foreign.contains(&s.id) || self.store.alive(other).await? {
                continue;
            }
            if self.take_over(&s.id, false).await? {
                tracing::warn!(release = %s.id, replica = %other, "took over a release from a stopped replica");
            }
        }
        Ok(())
    }

    /// This process stops cleanly: it stops counting as alive, so other replicas (or its next
    /// start) take its releases over without waiting for a lease to lapse.
    pub(crate) async fn farewell(&self) {
        if let Err(e) = self.store.farewell(&self.replica).await {
            tracing::warn!(error = %e, "could not remove this process's heartbeat");
        }
    }

    /// Starts the queue worker of this process (once; only with a shared job queue).
    pub(crate) fn start_worker(&mut self) {
        let Some(queue) = self.queue.clone() else { return };
        if self.worker {
            return;
        }
        self.worker = true;
        let w = Worker {
            store: self.store.clone(),
            queue,
            platform: self.platform,
            replica: self.replica.clone(),
            tx: self.internal_tx.clone(),
            artifacts: self.artifacts.clone(),
            base_dir: self.config.base_dir.clone(),
            metrics: self.metrics.clone(),
            lease_ms: self.job_lease_ms(),
            wake: self.wake.clone(),
            drain: self.drain.clone(),
            holding: std::sync::Mutex::new(BTreeSet::new()),
        };
        tokio::spawn(w.run());
    }

    /// The release lost its environment lock: stop acting on it and say so.
    fn fenced(&mut self, id: &str, e: &StoreError) {
        tracing::warn!(release = %id, error = %e, "fenced: another release holds the environment now");
        if let Some(a) = self.releases.remove(id) {
            let text = refuse(Runtime::LostLock { release: id.into(), env: a.release.env.clone() });
            self.outbox.send(Outgoing::Post {
                release: id.to_string(),
                key: None,
                text,
                ask: Ask::Nothing,
                from: None,
            });
        }
    }

    fn lease_ms(&self) -> u64 {
        self.config.raybot.release.lock_lease_seconds * 1000
    }

    /// True when no release is busy: each one waits for people or has ended, nothing runs, and
    /// the outbox has performed everything.
    ///
    /// A release another replica drives (loaded by [`Driver::refresh`]) may be busy there; this
    /// driver waits only for its own jobs, probes, timers and posts.
    fn idle(&self) -> bool {
        self.hands.free()
            && self.settled()
            && self.releases.iter().all(|(id, a)| {
                let queued_job = matches!(&a.release.activity, Activity::Job { job, .. } if self.queued.contains(job));
                !queued_job && (a.release.activity.needs_people() || self.hands.timers(id) == 0)
            })
    }

    /// The outbox has performed everything and its reports (message ids of keyed posts) are
    /// handled.
    fn settled(&self) -> bool {
        self.outbox.pending() == 0 && self.internal_rx.is_empty() && self.marks.idle()
    }

    /// Active (unfinished) releases.
    pub(crate) fn active(&self) -> impl Iterator<Item = &Release> {
        self.releases.active()
    }

    /// Picks up releases other replicas started or moved on since this one last looked (see
    /// [`Releases`]), given the index of unfinished releases.
    pub(crate) async fn refresh(&mut self, open: Vec<ReleaseSummary>) -> Result<(), StoreError> {
        self.releases.refresh(open).await
    }

    /// The next background result (jobs, probes, timers, posts …); never `None` while the driver lives.
    async fn recv_internal(&mut self) -> Option<Internal> {
        self.internal_rx.recv().await
    }

    /// Stops the outbox once it has performed everything queued (the driver is done).
    pub(crate) async fn close(mut self) {
        let task = self.outbox_task.take();
        drop(self);
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Applies a background result (or sweeps for releases whose raybot process stopped, or
    /// records the message id of a keyed post).
    async fn handle_internal(&mut self, msg: Internal) {
        self.handle_internal_inner(msg).await;
        self.publish();
    }

    async fn handle_internal_inner(&mut self, msg: Internal) {
        match msg {
            Internal::Sweep => {
                if let Err(e) = self.sweep().await {
                    tracing::warn!(error = %e, "could not look for releases of stopped replicas");
                }
            }
            Internal::MarkDue { release, replica } => self.mark_due(&release, &replica),
            Internal::Marked { release, replica, through, written } => {
                self.marked(&release, &replica, through, written)
            }
            Internal::Sent(mut sent) => {
                if let Some(through) = sent.through.take() {
                    self.went_out(&sent.release, through);
                }
                let Some((key, message)) = sent.posted.clone() else { return };
                if let Err(e) = self.record_posted(&sent.release, key, message).await {
                    tracing::warn!(release = %sent.release, error = %e, "could not record a post's message id; retrying in 1s");
                    self.later(Internal::Sent(sent));
                }
            }
            Internal::Result { release, event, ack } => self.handle_result(release, event, ack).await,
        }
    }

    fn later(&self, msg: Internal) {
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = tx.send(msg);
        });
    }

    /// Records that the post under `key` of release `id` is platform message `message`, unless
    /// the release already knows it.
    async fn record_posted(&mut self, id: &str, key: PostKey, message: String) -> Result<(), StoreError> {
        if !self.releases.contains_key(id) {
            self.releases.adopt(id).await?;
        }
        let known = self.releases.get(id).is_none_or(|a| {
            a.release.is_finished() && key != PostKey::Status
                || a.release.posts.get(&key).is_some_and(|m| m.contains(&message))
        });
        if known {
            return Ok(());
        }
        match self.apply(id, Event::Posted { key, message }, &mut Turn::background(), true).await {
            Ok(()) | Err(StoreError::Fenced { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn handle_result(&mut self, release: String, event: Event, ack: Option<String>) {
        let queued = ack.is_some();
        if !queued {
            self.hands.returned(&release, &event, true);
        }
        // A queued job may have been asked for by another replica: read its release first.
        let mut result = Ok(());
        if !self.releases.contains_key(&release) {
            result = self.releases.adopt(&release).await;
        }
        if result.is_ok() {
            result = self.apply(&release, event.clone(), &mut Turn::background(), true).await;
        }
        match result {
            Ok(()) => {
                if let (Some(entry), Some(queue)) = (&ack, &self.queue) {
                    let job = match &event {
                        Event::JobFinished { job, .. } | Event::JobLost { job, .. } => job.clone(),
                        _ => JobId::default(),
                    };
                    self.queued.remove(&job);
                    if let Err(e) = queue.done(self.platform.as_str(), entry, &job).await {
                        // The entry stays pending; whoever claims it later finds the result recorded.
                        tracing::warn!(job = %job, error = %e, "could not acknowledge a queued job");
                    }
                    self.drain.release();
                }
            }
            // The release is no longer this driver's to act on; the queue entry stays for the
            // replica that holds it (or is reported lost there).
            Err(StoreError::Fenced { .. }) => {
                if queued {
                    self.drain.release();
                }
            }
            Err(e) => {
                // Keep the result and try again: a finished job must not be lost to a store hiccup.
                tracing::warn!(release = %release, error = %e, "could not record a result; retrying in 1s");
                if !queued {
                    self.hands.returned(&release, &event, false);
                }
                self.later(Internal::Result { release, event, ack });
            }
        }
    }

    /// Handles one delivery and answers it through its `done` channel as soon as its decision is
    /// recorded (or refused). A delivery whose idempotency key was seen before is answered as a
    /// duplicate. Read-only and malformed commands are answered without any store write.
    pub(crate) async fn deliver(&mut self, d: Delivery) {
        self.deliver_inner(d).await;
        self.publish();
    }

    /// Shows the read side what changed: every release whose recorded log grew or that left.
    fn publish(&self) {
        let Ok(mut board) = self.board.write() else { return };
        for (id, a) in self.releases.iter() {
            if !a.stale && board.events(id) != Some(a.log_len) {
                board.set(id, a.log_len, answers::StatusLine::of(&a.release));
            }
        }
        let gone: Vec<String> = board.ids().filter(|id| !self.releases.contains_key(id)).map(str::to_string).collect();
        for id in gone {
            board.remove(&id);
        }
        for id in &self.releases.foreign {
            board.foreign(id);
        }
    }

    async fn deliver_inner(&mut self, d: Delivery) {
        let Delivery { key, inbound, done } = d;
        let mut turn = Turn::new(inbound.user().clone(), key.map(|k| format!("inbound:{k}")), done);
        self.metrics.inbound(inbound.kind());
        let command = match &inbound {
            Inbound::Command { command, .. } => Some(command.clone()),
            _ => None,
        };
        match command {
            Some(Command::Help) => return self.tell(&mut turn, HELP.to_string()),
            Some(Command::Protocols) => return self.tell(&mut turn, answers::protocols(&self.catalog)),
            Some(Command::History) => {
                let text = match self.store.summaries().await {
                    Ok(list) => answers::history(&list),
                    Err(_) => refuse(Runtime::StoreDown),
                };
                return self.tell(&mut turn, text);
            }
            Some(Command::Status { version }) => {
                let text = match self.catch_up(None).await {
                    Ok(()) => {
                        let lines: Vec<_> =
                            self.releases.values().map(|a| answers::StatusLine::of(&a.release)).collect();
                        answers::status(lines.iter(), version.as_deref())
                    }
                    Err(_) => refuse(Runtime::StoreDown),
                };
                return self.tell(&mut turn, text);
            }
            _ => {}
        }
        // The idempotency check and the catch-up read of unfinished releases share one round trip.
        match self.store.seen_and_unfinished(turn.once.as_deref(), now().0).await {
            Ok((true, _)) => {
                tracing::debug!(key = ?turn.once, "duplicate delivery ignored");
                turn.duplicate = true;
                return;
            }
            Ok((false, open)) => turn.open = Some(open),
            Err(e) => {
                tracing::warn!(error = %e, "could not read an idempotency key");
                return self.tell(&mut turn, refuse(Runtime::StoreDown));
            }
        }
        self.handle(inbound, command, &mut turn).await;
        // No event recorded the key (a refusal): remember it on its own, after answering, so that
        // a replay is not answered twice. A failed write dropped its key, so a retry counts.
        turn.answer();
        if let (Some(k), false) = (turn.once.take(), turn.duplicate) {
            if let Err(e) = self.store.remember(&k, DEDUP_TTL_MS, now().0).await {
                tracing::warn!(error = %e, "could not record an idempotency key");
            }
        }
    }

    /// Catches up with the store: with `open` (read with the idempotency check) or a fresh read.
    async fn catch_up(&mut self, open: Option<Vec<ReleaseSummary>>) -> Result<(), StoreError> {
        let open = match open {
            Some(o) => o,
            None => self.store.unfinished().await?,
        };
        self.refresh(open).await
    }

    async fn handle(&mut self, inbound: Inbound, command: Option<Command>, turn: &mut Turn) {
        if let Err(e) = self.catch_up(turn.open.clone()).await {
            tracing::warn!(error = %e, "could not read the store");
            return self.tell(turn, refuse(Runtime::StoreDown));
        }
        match (inbound, command) {
            (Inbound::Command { user, .. }, Some(Command::Deploy { version, env, flow, strategy })) => {
                self.deploy(turn, user, version, env, flow, strategy.unwrap_or_default()).await
            }
            (Inbound::Command { user, .. }, Some(Command::Release(rc))) => {
                let Some(id) = self.releases.route(&rc) else {
                    let what = match rc {
                        ReleaseCommand::Ack => "no change freeze is waiting for acknowledgement",
                        ReleaseCommand::Approve { .. } | ReleaseCommand::Reject { .. } => {
                            "no release is waiting for approval"
                        }
                        _ => "no release is running",
                    };
                    return self.tell(turn, refuse(Runtime::NoRelease { what: what.to_string() }));
                };
                self.apply_for(turn, &id, Event::Command { by: user, command: rc }).await;
            }
            (Inbound::Reaction { user, message, emoji, added }, _) => {
                if let Some(id) = self.release_of_message(&message).await {
                    let ev = Event::Reaction { by: user, message, emoji, added };
                    self.apply_for(turn, &id, ev).await;
                }
            }
            (Inbound::Click { user, message, button }, _) => match self.release_of_message(&message).await {
                Some(id) => self.apply_for(turn, &id, Event::Click { by: user, message, button }).await,
                None => self.tell(turn, refuse(Runtime::ForeignButton)),
            },
            // Read-only commands were answered by `deliver`.
            (Inbound::Command { .. }, _) => {}
        }
    }

    /// The release that posted `message`: from the logs, else from the outbox's own posts whose
    /// message id is not recorded yet (then recorded first, so the reaction finds it).
    async fn release_of_message(&mut self, message: &str) -> Option<ReleaseId> {
        let known = self.releases.of_message(message);
        if known.is_some() {
            return known;
        }
        let (id, key) = self.outbox.posted(message)?;
        match self.record_posted(&id, key, message.to_string()).await {
            Ok(()) => Some(id.into()),
            Err(e) => {
                tracing::warn!(release = %id, error = %e, "could not record a post's message id");
                None
            }
        }
    }

    /// Says `text` to `to`: in the answer of `turn` while it is open, else privately through the outbox.
    fn reply(&self, turn: &mut Turn, to: &UserRef, text: String) {
        if let Some(text) = turn.say(to, text) {
            self.outbox.send(Outgoing::Reply { to: to.clone(), text });
        }
    }

    /// Says `text` to the sender of `turn` (nobody for background work).
    fn tell(&self, turn: &mut Turn, text: String) {
        match turn.sender().cloned() {
            Some(to) => self.reply(turn, &to, text),
            None => tracing::info!(text = %text, "nobody to tell"),
        }
    }

    async fn apply_for(&mut self, turn: &mut Turn, id: &str, ev: Event) {
        if let Err(e) = self.apply(id, ev, turn, true).await {
            tracing::warn!(release = %id, error = %e, "store write failed");
        }
    }

    async fn deploy(
        &mut self,
        turn: &mut Turn,
        user: UserRef,
        version: String,
        env: Option<String>,
        flow: Option<String>,
        strategy: crate::engine::Strategy,
    ) {
        let env = env.unwrap_or_else(|| "production".to_string());
        let people = self.config.people(self.platform);
        if people.get(&user.id).is_none() {
            return self.tell(turn, refuse(Runtime::MayNotStart { who: people.mention(&user.id) }));
        }
        let plan = match self.config.plan_flow(&self.catalog, &env, flow.as_deref(), self.platform, &version) {
            Ok(p) => p,
            Err(e) => return self.tell(turn, refuse(Runtime::Unplannable(e.to_string()))),
        };
        let locked = |holder: String| refuse(Runtime::Locked { env: env.clone(), holder });
        // One release per environment until it ends, however long it waits for people: an
        // unfinished release holds the environment even if its lease lapsed while nobody ran raybot.
        let open = turn.open.clone().unwrap_or_default();
        if let Some(other) = open.iter().find(|s| s.env == env) {
            let holder =
                format!("{} ({} by {}, {})", other.id, other.version, people.mention(&other.started_by), other.status);
            return self.tell(turn, locked(holder));
        }
        let started = now();
        let id = new_release_id(&version, &env, started);
        let lock = match self.store.lock(&env, &id, self.lease_ms(), started.0).await {
            Ok(LockOutcome::Acquired(l)) => l,
            Ok(LockOutcome::Held(l)) => {
                // Another replica's `/ray deploy` took it first (its release may not be recorded yet).
                let holder = self.releases.get(&l.owner).map(|a| {
                    format!(
                        "{} (started by {}, {})",
                        a.release.id,
                        people.mention(&a.release.started_by.id),
                        a.release.activity.label()
                    )
                });
                return self.tell(turn, locked(holder.unwrap_or(l.owner)));
            }
            Err(_) => return self.tell(turn, refuse(Runtime::StoreDown)),
        };
        let ev =
            Event::Started { release: id.clone(), version, env: env.clone(), strategy, by: user, plan: Box::new(plan) };
        let Some((release, fx)) = Release::start(&ev, started) else {
            let _ = self.store.unlock(&env, &id, lock.token).await;
            return self.tell(turn, refuse(Runtime::EmptyPipeline));
        };
        if self.start_marks(&id).await.is_err() {
            let _ = self.store.unlock(&env, &id, lock.token).await;
            return self.tell(turn, refuse(Runtime::StoreDown));
        }
        self.releases.insert(id.clone(), Active::new(release, 0, Some(lock.token), lock.expires_at_ms));
        match self.record(&id, &ev, started, fx, turn).await {
            Ok(follow) => {
                self.metrics.release_started();
                self.post_status(&id);
                if let Err(e) = self.apply_all(&id, follow, turn).await {
                    tracing::warn!(release = %id, error = %e, "store write failed");
                }
            }
            Err(e) => {
                // Nothing was recorded: the lock this deploy took (and only that one) is released.
                self.releases.remove(&id);
                if let Err(err) = self.store.unlock(&env, &id, lock.token).await {
                    tracing::warn!(error = %err, "could not release the environment lock");
                }
                if !turn.duplicate {
                    self.tell(turn, refusal_for(&e));
                    turn.once = None;
                }
            }
        }
    }

    /// Applies `event` to release `id`: decide, persist, answer, then act. Store failures leave
    /// the release untouched and tell the sender of `turn` (if any) that nothing changed. With
    /// `retry` false, an event another replica beat to the log is dropped (returns the conflict)
    /// instead of being decided again on the newer state.
    pub(crate) async fn apply(
        &mut self,
        id: &str,
        event: Event,
        turn: &mut Turn,
        retry: bool,
    ) -> Result<(), StoreError> {
        let mut conflicts = 0;
        loop {
            if self.releases.get(id).is_some_and(|a| a.stale) {
                self.releases.reload(id).await?;
            }
            let Some(active) = self.releases.get_mut(id) else { return Ok(()) };
            let at = now();
            // Decide in place (no copy of a state that grows with the log); if the event cannot be
            // recorded, the state is marked stale and rebuilt from the store before its next use.
            let fx = active.release.handle(&event, at);
            match self.record(id, &event, at, fx, turn).await {
                Ok(follow) => return self.apply_all(id, follow, turn).await,
                Err(StoreError::Conflict { .. }) if retry && conflicts < 3 => {
                    // Another replica recorded an event first: catch up and decide again.
                    conflicts += 1;
                    self.releases.reload(id).await?;
                }
                Err(StoreError::Duplicate { .. }) => return Ok(()),
                Err(e) => {
                    if !matches!(e, StoreError::Fenced { .. }) {
                        self.tell(turn, refusal_for(&e));
                    }
                    // Nothing was recorded, the key included: a platform retry is handled again.
                    turn.once = None;
                    return Err(e);
                }
            }
        }
    }

    /// Applies the follow-up events of a recorded event (write errors of evidence), then shows
    /// the release's status. The follow-ups of one event are decided one after another in memory
    /// and recorded in one append (all or nothing); their effects may bring more, which make the
    /// next append.
    async fn apply_all(&mut self, id: &str, follow: Vec<Event>, turn: &mut Turn) -> Result<(), StoreError> {
        let mut batch = follow;
        while !batch.is_empty() {
            let Some(active) = self.releases.get_mut(id) else { break };
            let first = active.log_len;
            let decided: Vec<(Timestamp, Vec<Effect>)> = batch
                .iter()
                .map(|event| {
                    let at = now();
                    (at, active.release.handle(event, at))
                })
                .collect();
            let mut append: Option<Append> = None;
            for (event, (at, _)) in batch.iter().zip(&decided) {
                let Some(a) = self.prepare_append(id, event, *at, turn)? else { return Ok(()) };
                if let Some(active) = self.releases.get_mut(id) {
                    active.log_len += 1;
                }
                match &mut append {
                    Some(x) => {
                        x.events.extend(a.events);
                        x.summary = a.summary;
                    }
                    None => append = Some(a),
                }
            }
            let Some(append) = append else { break };
            let written = self.store.append_all(std::slice::from_ref(&append)).await.pop();
            let written = written.unwrap_or_else(|| Err(StoreError::Corrupt("no answer to an append".into())));
            match self.written(id, written, turn) {
                Ok(()) => {}
                Err(StoreError::Conflict { .. }) => {
                    // Another replica wrote first: catch up and decide the batch again.
                    self.releases.reload(id).await?;
                    continue;
                }
                Err(e) => return Err(e),
            }
            self.metrics.recorded(batch.len() as u64);
            if let Some(a) = self.releases.get_mut(id) {
                a.stale = false;
            }
            let mut more = Vec::new();
            for (n, (at, fx)) in decided.into_iter().enumerate() {
                let origin = announce::Origin { event: first + n as u64, at };
                more.extend(self.recorded(id, origin, fx, turn).await);
            }
            batch = more;
        }
        self.show_status(id);
        Ok(())
    }

    /// Persists `event` of release `id` (already decided into `fx`), answers `turn` with the
    /// replies meant for its sender, then performs the rest of `fx`. Returns the events the
    /// effects produced at once (evidence write errors).
    async fn record(
        &mut self,
        id: &str,
        event: &Event,
        at: Timestamp,
        fx: Vec<Effect>,
        turn: &mut Turn,
    ) -> Result<Vec<Event>, StoreError> {
        let Some(append) = self.prepare_append(id, event, at, turn)? else { return Ok(Vec::new()) };
        let mut written = self.store.append_all(std::slice::from_ref(&append)).await;
        let written = written.pop().unwrap_or_else(|| Err(StoreError::Corrupt("no answer to an append".into())));
        self.written(id, written, turn)?;
        self.metrics.recorded(1);
        if let Some(a) = self.releases.get_mut(id) {
            a.stale = false;
            a.log_len = append.expected_len + 1;
        }
        let origin = announce::Origin { event: append.expected_len, at };
        Ok(self.recorded(id, origin, fx, turn).await)
    }

    /// The write of `event` (decided at `at`) to the log of release `id`, carrying the turn's
    /// idempotency key. Marks the release stale until the write is known to have landed.
    fn prepare_append(
        &mut self,
        id: &str,
        event: &Event,
        at: Timestamp,
        turn: &Turn,
    ) -> Result<Option<Append>, StoreError> {
        let Some(active) = self.releases.get_mut(id) else { return Ok(None) };
        active.stale = true;
        let line =
            serde_json::to_string(&StoredEvent { at, event: event.clone(), replica: Some(self.replica.clone()) })
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let len = active.log_len;
        Ok(Some(Append {
            release: id.to_string(),
            expected_len: len,
            events: vec![line],
            summary: summary(&active.release, len + 1, &self.replica),
            fence: active.lock_token,
            once: turn.once.clone().into_iter().collect(),
            once_ttl_ms: DEDUP_TTL_MS,
        }))
    }

    /// What a write's result means for `turn`: its key is spent once written, a duplicate was
    /// answered by whoever recorded it first, a fenced release stops here.
    fn written(&mut self, id: &str, result: Result<u64, StoreError>, turn: &mut Turn) -> Result<(), StoreError> {
        match result {
            Ok(_) => {
                turn.once = None;
                Ok(())
            }
            Err(e @ StoreError::Duplicate { .. }) => {
                // Another replica recorded this very delivery: it answered the person.
                turn.once = None;
                turn.duplicate = true;
                Err(e)
            }
            Err(e @ StoreError::Fenced { .. }) => {
                self.fenced(id, &e);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// After an event of release `id` is recorded: the person hears the decision now, before
    /// anything is posted or run; then the lock is renewed and the rest of `fx` performed.
    async fn recorded(&mut self, id: &str, origin: announce::Origin, fx: Vec<Effect>, turn: &mut Turn) -> Vec<Event> {
        let mut rest = Vec::with_capacity(fx.len());
        for e in fx {
            match e {
                Effect::Reply { to, text } if turn.waiting() => self.reply(turn, &to, text),
                other => rest.push(other),
            }
        }
        turn.answer();
        self.renew_lock(id, origin.at).await;
        let rest = self.announce(id, origin, rest);
        self.perform(id, rest, turn).await
    }

    /// Asks the outbox for the release's live status message (once per release, by the replica
    /// that started it or took it over, when the log names none).
    fn post_status(&mut self, id: &str) {
        if !self.live_status {
            return;
        }
        let Some(a) = self.releases.get_mut(id) else { return };
        if a.status_posting || a.release.posts.contains_key(&PostKey::Status) {
            return;
        }
        let text = a.release.status_text();
        a.status_posting = true;
        a.status_shown = Some(text.clone());
        self.outbox.send(Outgoing::Post {
            release: id.to_string(),
            key: Some(PostKey::Status),
            text,
            ask: Ask::Nothing,
            from: None,
        });
    }

    /// Keeps the release's live status message current: edited when the status line changes
    /// (who acknowledged, who approved, which phase runs). Whichever replica handles the event
    /// edits the one message recorded in the release's log.
    fn show_status(&mut self, id: &str) {
        if !self.live_status {
            return;
        }
        let Some(a) = self.releases.get_mut(id) else { return };
        let text = a.release.status_text();
        if a.status_shown.as_deref() == Some(text.as_str()) {
            return;
        }
        let message = a.release.posts.get(&PostKey::Status).and_then(|m| m.last().cloned());
        if message.is_none() && !a.status_posting {
            // Posted by another replica and not recorded yet: the next change shows it.
            return;
        }
        a.status_shown = Some(text.clone());
        self.outbox.send(Outgoing::Edit {
            release: id.to_string(),
            key: PostKey::Status,
            message,
            text,
            through: None,
        });
    }

    /// Extends the environment lock once half of its lease has passed, while the release runs.
    async fn renew_lock(&mut self, id: &str, at: Timestamp) {
        let lease = self.lease_ms();
        let Some(a) = self.releases.get(id) else { return };
        if a.release.is_finished() || at.0 + lease / 2 < a.lock_expires_at {
            return;
        }
        let env = a.release.env.clone();
        match self.store.lock(&env, id, lease, at.0).await {
            Ok(LockOutcome::Acquired(l)) => {
                if let Some(a) = self.releases.get_mut(id) {
                    a.lock_token = Some(l.token);
                    a.lock_expires_at = l.expires_at_ms;
                }
            }
            Ok(LockOutcome::Held(l)) => {
                let e = StoreError::Fenced {
                    release: id.to_string(),
                    token: self.releases.get(id).and_then(|a| a.lock_token).unwrap_or(0),
                    current: l.token,
                };
                self.fenced(id, &e);
            }
            Err(e) => tracing::warn!(release = %id, error = %e, "could not renew the environment lock"),
        }
    }

    /// Puts a job on the shared queue (any replica's worker takes it). Queueing is idempotent by
    /// job id; if the store cannot take it now, it is tried again every second in the background
    /// (and a replica taking the release over queues it again).
    async fn enqueue(&mut self, queue: Arc<dyn JobQueue>, payload: QueuedPayload) {
        self.start_worker();
        let job = payload.spec.id.clone();
        self.queued.insert(job.clone());
        let json = match serde_json::to_string(&payload) {
            Ok(j) => j,
            Err(e) => return tracing::error!(job = %job, error = %e, "could not encode a job"),
        };
        match queue.enqueue(self.platform.as_str(), &job, &json).await {
            Ok(_) => self.wake.notify_one(),
            Err(e) => {
                tracing::warn!(job = %job, error = %e, "could not queue a job; trying again every second");
                let platform = self.platform;
                let wake = self.wake.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        match queue.enqueue(platform.as_str(), &job, &json).await {
                            Ok(_) => return wake.notify_one(),
                            Err(e) => tracing::warn!(job = %job, error = %e, "still cannot queue the job"),
                        }
                    }
                });
            }
        }
    }

    /// Performs the effects of a recorded event besides chat (see [`effects::Hands`]): answers
    /// go to `turn`, jobs to the shared queue when there is one, and a release that ended gives
    /// its lock back. Returns events to record at once (evidence that could not be written).
    async fn perform(&mut self, id: &str, fx: Vec<Effect>, turn: &mut Turn) -> Vec<Event> {
        let Some(a) = self.releases.get(id) else {
            tracing::warn!(release = %id, "effects of a release this driver no longer holds were not performed");
            return Vec::new();
        };
        let protocol = a.release.plan.protocols.get(a.release.cursor.protocol);
        let scope = effects::Scope {
            id: id.to_string(),
            protocol: protocol.map(|p| format!("Protocol {} ({})", p.id, p.title)).unwrap_or_default(),
            inputs_dir: a.release.plan.inputs_dir.clone(),
        };
        let done = self.hands.perform(&scope, fx, self.queue.is_some());
        for (to, text) in done.replies {
            self.reply(turn, &to, text);
        }
        if let Some(queue) = self.queue.clone() {
            for payload in done.queue {
                self.enqueue(queue.clone(), payload).await;
            }
        }
        if let Some(outcome) = done.finished {
            self.metrics.release_finished(outcome.label());
            if let Some(a) = self.releases.get(id) {
                if let Some(token) = a.lock_token {
                    if let Err(err) = self.store.unlock(&a.release.env, id, token).await {
                        tracing::warn!(error = %err, "could not release the environment lock");
                    }
                }
            }
            self.finished.push((id.to_string(), outcome));
        }
        done.follow
    }
}

/// This process's name as a replica: `RAYBOT_REPLICA`, else `FLY_MACHINE_ID` (kept across restarts
/// of a fly machine), else `raybot-<pid>`.
pub fn replica_name() -> String {
    std::env::var("RAYBOT_REPLICA")
        .or_else(|_| std::env::var("FLY_MACHINE_ID"))
        .unwrap_or_else(|_| format!("raybot-{}", std::process::id()))
}

/// The index row of a release.
pub fn summary(r: &Release, events: u64, replica: &str) -> ReleaseSummary {
    ReleaseSummary {
        id: r.id.to_string(),
        version: r.version.clone(),
        env: r.env.clone(),
        status: r.activity.label(),
        finished: r.is_finished(),
        started_by: r.started_by.id.clone(),
        started_at_ms: r.started_at.0,
        updated_at_ms: r.updated_at.0,
        events,
        replica: Some(replica.to_string()),
    }
}

/// Records `log` (a release's events, as the engine's simulator made them) in `store` as a new
/// release that holds its environment's lock: what driver tests and benchmarks start from.
/// Returns the release id.
#[cfg(any(test, feature = "testkit"))]
pub async fn seed(store: &dyn Store, log: &[(Timestamp, Event)]) -> Result<ReleaseId, StoreError> {
    let release = Release::replay(log.iter()).ok_or_else(|| StoreError::Corrupt("an empty log".into()))?;
    let lines = log
        .iter()
        .map(|(at, event)| serde_json::to_string(&StoredEvent { at: *at, event: event.clone(), replica: None }))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let token = match store.lock(&release.env, &release.id, 600_000, now().0).await? {
        LockOutcome::Acquired(l) => l.token,
        LockOutcome::Held(l) => {
            return Err(StoreError::Unavailable(format!("{} is locked by {}", release.env, l.owner)));
        }
    };
    let row = summary(&release, lines.len() as u64, "seed");
    store.append(&release.id, 0, &lines, &row, Some(token), None).await?;
    Ok(release.id)
}

/// A release id unique across replicas: `<version>-<env>-<UTC time>-<4 random hex digits>`, e.g.
/// `v1.2-production-20261121T233420Z-3f9a`. Two `/ray deploy`s reaching two replicas in the same
/// second get different ids, so the second can never pass for a renewal of the first one's lock.
pub fn new_release_id(version: &str, env: &str, at: Timestamp) -> ReleaseId {
    let mut bytes = [0u8; 2];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness available: the process id and the clock's milliseconds still tell two
        // replicas apart.
        bytes = ((std::process::id() as u16) ^ (at.0 as u16)).to_be_bytes();
    }
    format!("{version}-{env}-{}-{}", crate::clock::compact(at), hex::encode(bytes)).into()
}

/// The refusal for a write the store did not take: nothing changed, and why.
fn refusal_for(e: &StoreError) -> String {
    match e {
        StoreError::Conflict { .. } => refuse(Runtime::Changed),
        _ => refuse(Runtime::StoreDown),
    }
}
