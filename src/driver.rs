//! The driver: the only place where the engine meets the world.
//!
//! For every inbound event it routes to the right release, lets the engine decide, makes the event
//! durable in the [`Store`] *before* anything is said in chat, then performs the effects: posts,
//! jobs, probes, evidence, timers. Results of jobs and probes come back as events through the same
//! path, so a restart can rebuild every release by replaying its log.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::chat::{ChatSink, Delivery, Handled, Inbound};
use crate::command::{self, Command, HELP};
use crate::config::Config;
use crate::engine::{Activity, Effect, Event, Release, ReleaseCommand, Terminal, Timestamp, UserRef, ray_error};
use crate::evidence::{EvidenceWriter, InputCheck};
use crate::http::Metrics;
use crate::jobs::{JobRequest, run_job};
use crate::probe::{ProbeRequest, run_probe};
use crate::protocol::Catalog;
use crate::store::{JobQueue, LockOutcome, ReleaseSummary, Store, StoreError};

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

/// The wall clock, in the engine's unit.
pub fn now() -> Timestamp {
    Timestamp(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0))
}

/// Message shown when the store cannot take a write.
pub const STORE_DOWN: &str = "state store unavailable — nothing was changed, try again";

struct Active {
    release: Release,
    log_len: u64,
    lock_token: Option<u64>,
    /// When the environment lock's lease ends (ms); renewed as the release goes on.
    lock_expires_at: u64,
    /// The in-memory state holds an event the store did not take: rebuild it before use.
    stale: bool,
    /// The live status message (platforms with [`ChatSink::live_status`]): its id and last text.
    status_post: Option<(String, String)>,
}

/// Results of background work, addressed to a release.
#[derive(Debug)]
pub struct Internal {
    /// Id of the release that asked for the work.
    pub release: String,
    /// The result: `JobFinished`, `ProbeFinished`, `InputsChecked`, `BundleWritten`, `Tick` ….
    /// `None`: no result, time to look for releases whose raybot process stopped.
    pub event: Option<Event>,
    /// The job-queue entry to acknowledge once `event` is recorded (a queued job's result).
    pub ack: Option<String>,
}

impl Internal {
    fn result(release: String, event: Event) -> Internal {
        Internal { release, event: Some(event), ack: None }
    }
}

/// A job as it travels through the shared [`JobQueue`]: everything a replica needs to run it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedPayload {
    /// The release that asked for it.
    pub release: String,
    /// The job.
    pub spec: crate::engine::JobSpec,
    /// `RAYBOT_INPUTS_DIR` of the release.
    pub inputs_dir: String,
    /// First line of the job's log block.
    pub header: String,
}

/// How many queued jobs one raybot process runs at once.
const MAX_QUEUED_JOBS: usize = 4;

/// Set when this process is stopping: its workers take no new jobs and look for no abandoned ones,
/// but finish what they run and keep their claims and heartbeat until the results are recorded.
static DRAINING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Queued jobs (and loss reports) this process took whose results are not recorded yet.
static IN_HAND: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// This process is stopping: take no new jobs from the shared queue (see [`jobs_in_hand`]).
pub fn begin_drain() {
    DRAINING.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Jobs this process took from the shared queue whose results are not recorded yet; a stopping
/// `raybot serve` waits for this to reach zero (up to `RAYBOT_DRAIN_SECONDS`).
pub fn jobs_in_hand() -> usize {
    IN_HAND.load(std::sync::atomic::Ordering::SeqCst)
}

fn release_hand() {
    let _ = IN_HAND.fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |n| {
        Some(n.saturating_sub(1))
    });
}

/// Runs releases for one chat platform.
pub struct Driver {
    /// Configuration new releases are planned from (running releases keep their frozen plan).
    pub config: Config,
    /// Protocols new releases are planned from; also answers `/ray protocols`.
    pub catalog: Catalog,
    store: Arc<dyn Store>,
    chat: Arc<dyn ChatSink>,
    /// Evidence root; each release writes under `<root>/<release id>/`.
    pub artifacts: PathBuf,
    platform: String,
    replica: String,
    releases: BTreeMap<String, Active>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    /// Background jobs, probes, checks and bundles not yet reported back.
    in_flight: usize,
    /// Outcomes of releases that ended while this driver ran.
    pub finished: Vec<(String, Terminal)>,
    /// While a [`Delivery`] with a reply channel is handled: its sender and what was said to them.
    capture: Option<(UserRef, Vec<String>)>,
    /// Timers armed by this driver and not yet fired, per release.
    timers: BTreeMap<String, usize>,
    /// The shared job queue (Redis), if the store has one.
    queue: Option<Arc<dyn JobQueue>>,
    /// Whether this driver's queue worker runs.
    worker: bool,
    /// Jobs this driver queued whose results it has not recorded yet.
    queued: BTreeSet<String>,
    /// Wakes the queue worker when this driver queued a job.
    wake: Arc<tokio::sync::Notify>,
    /// Releases of other chat platforms (never loaded again by this driver).
    foreign: BTreeSet<String>,
    /// Idempotency key of the delivery being handled, until its first event is recorded.
    once: Option<String>,
    /// The store refused the delivery's first event as already recorded.
    duplicate_hit: bool,
    /// Unfinished releases read with the delivery's idempotency check (used by its catch-up).
    prefetched: Option<Vec<ReleaseSummary>>,
}

/// How long an idempotency key is remembered (Slack retries for up to an hour; Discord interaction
/// tokens live 15 minutes).
pub const DEDUP_TTL_MS: u64 = 24 * 3600 * 1000;

impl Driver {
    /// A driver for `platform` (`local`, `slack`, `discord`), named as a replica by `RAYBOT_REPLICA`,
    /// else `FLY_MACHINE_ID`, else `raybot-<pid>`. [`Driver::resume`] then picks up unfinished releases.
    pub fn new(
        config: Config,
        catalog: Catalog,
        store: Arc<dyn Store>,
        chat: Arc<dyn ChatSink>,
        artifacts: PathBuf,
        platform: &str,
        metrics: Arc<Metrics>,
    ) -> Driver {
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let replica = replica_name();
        Driver {
            config,
            catalog,
            store,
            chat,
            artifacts,
            platform: platform.to_string(),
            replica,
            releases: BTreeMap::new(),
            internal_tx,
            internal_rx,
            http: reqwest::Client::builder().no_proxy().build().unwrap_or_default(),
            metrics,
            in_flight: 0,
            finished: Vec::new(),
            capture: None,
            timers: BTreeMap::new(),
            queue: None,
            worker: false,
            queued: BTreeSet::new(),
            wake: Arc::new(tokio::sync::Notify::new()),
            foreign: BTreeSet::new(),
            once: None,
            duplicate_hit: false,
            prefetched: None,
        }
        .with_queue()
    }

    fn with_queue(mut self) -> Driver {
        self.queue = self.store.queue();
        self
    }

    /// The name of this raybot process (consumer name in the job queue, `replica` in the log).
    pub fn replica(&self) -> &str {
        &self.replica
    }

    fn job_lease_ms(&self) -> u64 {
        self.config.raybot.release.job_lease_seconds.max(1) * 1000
    }

    /// Loads every unfinished release of this platform from the store and resumes it, unless the
    /// raybot process that recorded its latest event is alive (another replica drives it). With a
    /// shared job queue, also starts this process's queue worker.
    pub async fn resume(&mut self) -> Result<usize, StoreError> {
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
        let Some((release, log_len, previous)) = self.load(id).await? else { return Ok(false) };
        if release.plan.people.platform != self.platform {
            self.foreign.insert(id.to_string());
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
        // Keep the live status message this driver already shows for it (a survivor taking over).
        let status_post = self.releases.get(id).and_then(|a| a.status_post.clone());
        self.releases.insert(
            id.to_string(),
            Active { release, log_len, lock_token: token, lock_expires_at, stale: false, status_post },
        );
        self.metrics.release_resumed();
        let ev = Event::Resumed { replica: self.replica.clone(), previous, jobs_queued: self.queue.is_some() };
        match self.apply_with(id, ev, None, retry).await {
            Ok(()) => Ok(true),
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
    pub async fn sweep(&mut self) -> Result<(), StoreError> {
        let open = self.store.unfinished().await?;
        self.prefetched = Some(open.clone());
        self.refresh().await?;
        for s in open {
            let Some(other) = s.replica.as_deref() else { continue };
            if other == self.replica || self.foreign.contains(&s.id) || self.store.alive(other).await? {
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
    pub async fn farewell(&self) {
        if let Err(e) = self.store.farewell(&self.replica).await {
            tracing::warn!(error = %e, "could not remove this process's heartbeat");
        }
    }

    /// Starts the queue worker of this process (once; only with a shared job queue).
    pub fn start_worker(&mut self) {
        let Some(queue) = self.queue.clone() else { return };
        if self.worker {
            return;
        }
        self.worker = true;
        let w = Worker {
            store: self.store.clone(),
            queue,
            platform: self.platform.clone(),
            replica: self.replica.clone(),
            tx: self.internal_tx.clone(),
            artifacts: self.artifacts.clone(),
            base_dir: self.config.base_dir.clone(),
            metrics: self.metrics.clone(),
            lease_ms: self.job_lease_ms(),
            wake: self.wake.clone(),
            holding: std::sync::Mutex::new(BTreeSet::new()),
        };
        tokio::spawn(w.run());
    }

    /// Reads release `id` from the store and rebuilds it (the store is the truth when another
    /// replica wrote to it). Returns the release and its log length, or `None` if it is unknown.
    async fn load(&self, id: &str) -> Result<Option<(Release, u64, Option<String>)>, StoreError> {
        let lines = self.store.read(id).await?;
        let mut events = Vec::with_capacity(lines.len());
        let mut previous = None;
        for l in &lines {
            let e: StoredEvent = serde_json::from_str(l).map_err(|e| StoreError::Corrupt(format!("{id}: {e}")))?;
            previous = e.replica.or(previous);
            events.push((e.at, e.event));
        }
        Ok(Release::replay(events.iter()).map(|r| (r, lines.len() as u64, previous)))
    }

    /// Catches up with events another replica recorded for release `id`.
    async fn reload(&mut self, id: &str) -> Result<(), StoreError> {
        let Some((release, log_len, _)) = self.load(id).await? else { return Ok(()) };
        if let Some(a) = self.releases.get_mut(id) {
            a.release = release;
            a.log_len = log_len;
            a.stale = false;
        }
        Ok(())
    }

    /// Picks up releases other replicas started or moved on since this one last looked, so that
    /// a command reaching any replica finds the release it is for. Reads only the index of
    /// unfinished releases; a release is read again only when its log grew.
    pub async fn refresh(&mut self) -> Result<(), StoreError> {
        let open = match self.prefetched.take() {
            Some(open) => open,
            None => self.store.unfinished().await?,
        };
        let open_ids: BTreeSet<&str> = open.iter().map(|s| s.id.as_str()).collect();
        // Loaded releases that left the index ended on another replica: catch up once.
        let ended: Vec<String> = self
            .releases
            .iter()
            .filter(|(id, a)| !a.release.is_finished() && !open_ids.contains(id.as_str()))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ended {
            self.reload(&id).await?;
        }
        for s in &open {
            let up_to_date = match self.releases.get(&s.id) {
                Some(a) => !a.stale && a.log_len == s.events,
                None => self.foreign.contains(&s.id),
            };
            if !up_to_date {
                self.adopt(&s.id).await?;
            }
        }
        Ok(())
    }

    /// Loads release `id` from the store (a release another replica started or moved on).
    async fn adopt(&mut self, id: &str) -> Result<(), StoreError> {
        let Some((release, log_len, _)) = self.load(id).await? else { return Ok(()) };
        if release.plan.people.platform != self.platform {
            self.foreign.insert(id.to_string());
            return Ok(());
        }
        match self.releases.get_mut(id) {
            Some(a) => {
                a.release = release;
                a.log_len = log_len;
                a.stale = false;
            }
            None => {
                let lock = self.store.lock_holder(&release.env, now().0).await?.filter(|l| l.owner == id);
                self.releases.insert(
                    id.to_string(),
                    Active {
                        release,
                        log_len,
                        lock_token: lock.as_ref().map(|l| l.token),
                        lock_expires_at: lock.map(|l| l.expires_at_ms).unwrap_or(0),
                        stale: false,
                        status_post: None,
                    },
                );
            }
        }
        Ok(())
    }

    /// The release lost its environment lock: stop acting on it and say so.
    async fn fenced(&mut self, id: &str, e: &StoreError) {
        tracing::warn!(release = %id, error = %e, "fenced: another release holds the environment now");
        if let Some(a) = self.releases.remove(id) {
            let text = ray_error(format!(
                "release {id} lost the {} lock (its lease lapsed and another release took it); this raybot stops acting on {id}. `/ray status` shows what holds {} now.",
                a.release.env, a.release.env
            ));
            if let Err(err) = self.chat.post(&text, &crate::engine::Ask::Nothing).await {
                tracing::warn!(error = %err, "post failed");
            }
        }
    }

    fn lease_ms(&self) -> u64 {
        self.config.raybot.release.lock_lease_seconds * 1000
    }

    /// True when no release is busy: each one waits for people or has ended, and nothing runs.
    ///
    /// A release another replica drives (loaded by [`Driver::refresh`]) may be busy there; this
    /// driver waits only for its own jobs, probes and timers.
    pub fn idle(&self) -> bool {
        self.in_flight == 0
            && self.releases.iter().all(|(id, a)| {
                let queued_job = matches!(&a.release.activity, Activity::Job { job, .. } if self.queued.contains(job));
                !queued_job && (a.release.activity.needs_people() || self.timers.get(id).copied().unwrap_or(0) == 0)
            })
    }

    /// Active (unfinished) releases.
    pub fn active(&self) -> impl Iterator<Item = &Release> {
        self.releases.values().map(|a| &a.release).filter(|r| !r.is_finished())
    }

    /// The next background result (jobs, probes, timers …); never `None` while the driver lives.
    pub async fn recv_internal(&mut self) -> Option<Internal> {
        self.internal_rx.recv().await
    }

    /// Applies a background result (or, for a result-less message, sweeps for releases whose
    /// raybot process stopped).
    pub async fn handle_internal(&mut self, msg: Internal) {
        let Some(event) = msg.event.clone() else {
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = %e, "could not look for releases of stopped replicas");
            }
            return;
        };
        let queued = msg.ack.is_some();
        let count = |d: &mut Driver, up: bool| {
            let n = match &event {
                _ if queued => return,
                Event::Tick { .. } => d.timers.entry(msg.release.clone()).or_default(),
                _ => &mut d.in_flight,
            };
            *n = if up { *n + 1 } else { n.saturating_sub(1) };
        };
        count(self, false);
        // A queued job may have been asked for by another replica: read its release first.
        let mut result = Ok(());
        if !self.releases.contains_key(&msg.release) {
            result = self.adopt(&msg.release).await;
        }
        if result.is_ok() {
            result = self.apply(&msg.release, event.clone(), None).await;
        }
        match result {
            Ok(()) => {
                if let (Some(entry), Some(queue)) = (&msg.ack, &self.queue) {
                    let job = match &event {
                        Event::JobFinished { job, .. } | Event::JobLost { job, .. } => job.clone(),
                        _ => String::new(),
                    };
                    self.queued.remove(&job);
                    if let Err(e) = queue.done(&self.platform, entry, &job).await {
                        // The entry stays pending; whoever claims it later finds the result recorded.
                        tracing::warn!(job = %job, error = %e, "could not acknowledge a queued job");
                    }
                    release_hand();
                }
            }
            // The release is no longer this driver's to act on; the queue entry stays for the
            // replica that holds it (or is reported lost there).
            Err(StoreError::Fenced { .. }) => {
                if msg.ack.is_some() {
                    release_hand();
                }
            }
            Err(e) => {
                // Keep the result and try again: a finished job must not be lost to a store hiccup.
                tracing::warn!(release = %msg.release, error = %e, "could not record a result; retrying in 1s");
                count(self, true);
                let tx = self.internal_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let _ = tx.send(msg);
                });
            }
        }
    }

    /// Handles one platform delivery: drops it if its idempotency key was seen before, else handles
    /// it like [`Driver::inbound`], and reports back through `done` what was said to the sender.
    pub async fn deliver(&mut self, d: Delivery) {
        let Delivery { key, inbound, done } = d;
        let user = match &inbound {
            Inbound::Command { user, .. } | Inbound::Reaction { user, .. } | Inbound::Click { user, .. } => {
                user.clone()
            }
        };
        if done.is_some() {
            self.capture = Some((user.clone(), Vec::new()));
        }
        let mut duplicate = false;
        // The idempotency check and the catch-up read of unfinished releases share one round trip.
        let once = key.as_ref().map(|k| format!("inbound:{k}"));
        let seen = match self.store.seen_and_unfinished(once.as_deref(), now().0).await {
            Ok((seen, open)) => {
                self.prefetched = Some(open);
                Ok(seen)
            }
            Err(e) => Err(e),
        };
        match seen {
            Ok(false) => {
                // The first event this delivery records carries its key, in the same write: a
                // replay racing this one (another replica) is refused by the store, and a
                // delivery whose write failed is handled again when the platform retries it.
                self.once = once.clone();
                self.duplicate_hit = false;
                self.inbound(inbound).await;
                // Still set: no event recorded it (status, refusals, a failed write).
                let unrecorded = self.once.take().is_some();
                duplicate = std::mem::take(&mut self.duplicate_hit);
                if let (Some(k), true, false) = (&once, unrecorded, duplicate) {
                    // Deliveries that wrote nothing are remembered on their own, so a replay is
                    // not answered twice; an event's key was recorded with it.
                    if let Err(e) = self.store.remember(k, DEDUP_TTL_MS, now().0).await {
                        tracing::warn!(error = %e, "could not record an idempotency key");
                    }
                }
            }
            Ok(true) => {
                duplicate = true;
                tracing::debug!(key = ?key, "duplicate delivery ignored");
            }
            // Reactions and clicks are not commands, but the person still learns nothing was counted.
            Err(e) => {
                tracing::warn!(error = %e, "could not read an idempotency key");
                self.reply(&user, ray_error(STORE_DOWN)).await;
            }
        }
        self.prefetched = None;
        let replies = self.capture.take().map(|(_, r)| r).unwrap_or_default();
        if let Some(done) = done {
            let _ = done.send(Handled { duplicate, replies });
        }
    }

    /// Handles something a person did.
    pub async fn inbound(&mut self, msg: Inbound) {
        self.metrics.inbound(match &msg {
            Inbound::Command { .. } => "command",
            Inbound::Reaction { .. } => "reaction",
            Inbound::Click { .. } => "click",
        });
        if let Inbound::Reaction { user, .. } | Inbound::Click { user, .. } = &msg {
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "could not read the store");
                let user = user.clone();
                return self.reply(&user, ray_error(STORE_DOWN)).await;
            }
        }
        match msg {
            Inbound::Command { user, text } => self.command(user, &text).await,
            Inbound::Reaction { user, message, emoji, added } => {
                if let Some(id) = self.release_of_message(&message) {
                    let ev = Event::Reaction { by: user.clone(), message, emoji, added };
                    self.apply_or_tell(&id, ev, &user).await;
                }
            }
            Inbound::Click { user, message, button } => match self.release_of_message(&message) {
                Some(id) => {
                    let ev = Event::Click { by: user.clone(), message, button };
                    self.apply_or_tell(&id, ev, &user).await;
                }
                None => {
                    self.reply(
                        &user,
                        ray_error("that button belongs to no running release; `/ray status` shows what is running."),
                    )
                    .await
                }
            },
        }
    }

    fn release_of_message(&self, message: &str) -> Option<String> {
        self.releases
            .values()
            .find(|a| a.release.posts.values().any(|ids| ids.iter().any(|m| m == message)))
            .map(|a| a.release.id.clone())
    }

    async fn reply(&mut self, to: &UserRef, text: String) {
        if let Some((who, said)) = &mut self.capture {
            if who == to {
                said.push(text);
                return;
            }
        }
        if let Err(e) = self.chat.reply(to, &text).await {
            tracing::warn!(error = %e, "could not reply");
        }
    }

    async fn apply_or_tell(&mut self, id: &str, ev: Event, user: &UserRef) {
        if let Err(e) = self.apply(id, ev, Some(user)).await {
            tracing::warn!(release = %id, error = %e, "store write failed");
        }
    }

    async fn command(&mut self, user: UserRef, text: &str) {
        let cmd = match command::parse(text) {
            Ok(c) => c,
            Err(e) => return self.reply(&user, ray_error(e)).await,
        };
        // Everything but help and the protocol list depends on the store: catch up with other
        // replicas first, and fail fast (nothing changed) when the store cannot be read.
        if !matches!(cmd, Command::Help | Command::Protocols) {
            if let Err(e) = self.refresh().await {
                tracing::warn!(error = %e, "could not read the store");
                return self.reply(&user, ray_error(STORE_DOWN)).await;
            }
        }
        match cmd {
            Command::Help => self.reply(&user, HELP.to_string()).await,
            Command::Protocols => {
                let mut s = String::from("[RAY] Protocols:");
                for p in &self.catalog.protocols {
                    s.push_str(&format!(
                        "\n- {} {} ({} phases, {} gates)",
                        p.id,
                        p.title,
                        p.phases.len(),
                        p.gates.len()
                    ));
                }
                for (env, ids) in &self.catalog.pipeline.targets {
                    s.push_str(&format!("\n/ray deploy … to {env} runs: {}", ids.join(" → ")));
                }
                self.reply(&user, s).await;
            }
            Command::History => {
                let text = match self.store.summaries().await {
                    Ok(list) if list.is_empty() => "[RAY] No releases yet.".to_string(),
                    Ok(list) => {
                        let mut s = String::from("[RAY] Recent releases:");
                        for r in list.iter().take(10) {
                            s.push_str(&format!(
                                "\n- {} {} → {}: {} (by {}, {})",
                                r.id,
                                r.version,
                                r.env,
                                r.status,
                                r.started_by,
                                Timestamp(r.started_at_ms).rfc3339()
                            ));
                        }
                        s
                    }
                    Err(_) => ray_error(STORE_DOWN),
                };
                self.reply(&user, text).await;
            }
            Command::Status { version } => {
                let found: Vec<String> = self
                    .releases
                    .values()
                    .map(|a| &a.release)
                    .filter(|r| version.as_ref().is_none_or(|v| &r.version == v))
                    .filter(|r| version.is_some() || !r.is_finished())
                    .map(Release::status_text)
                    .collect();
                let text = if found.is_empty() {
                    match version {
                        Some(v) => {
                            ray_error(format!("no release of {v} is known here; `/ray history` lists releases."))
                        }
                        None => "[RAY] No release is running. Start one with `/ray deploy <version>`.".to_string(),
                    }
                } else {
                    found.join("\n")
                };
                self.reply(&user, text).await;
            }
            Command::Deploy { version, env, strategy } => {
                self.deploy(user, version, env, strategy.unwrap_or_default()).await
            }
            Command::Release(rc) => {
                let Some(id) = self.route(&rc) else {
                    let what = match rc {
                        ReleaseCommand::Ack => "no change freeze is waiting for acknowledgement",
                        ReleaseCommand::Approve { .. } | ReleaseCommand::Reject { .. } => {
                            "no release is waiting for approval"
                        }
                        _ => "no release is running",
                    };
                    return self
                        .reply(
                            &user,
                            ray_error(format!(
                                "{what}. `/ray status` shows what is running; `/ray deploy <version>` starts a release."
                            )),
                        )
                        .await;
                };
                self.apply_or_tell(&id, Event::Command { by: user.clone(), command: rc }, &user).await;
            }
        }
    }

    /// Picks the release a command is for: the one waiting for that kind of input, else the only one.
    fn route(&self, rc: &ReleaseCommand) -> Option<String> {
        use crate::engine::Activity;
        let active: Vec<&Release> = self.active().collect();
        let waiting = active.iter().find(|r| match rc {
            ReleaseCommand::Ack => matches!(r.activity, Activity::Acks { .. }),
            ReleaseCommand::Approve { .. } | ReleaseCommand::Reject { .. } => {
                matches!(r.activity, Activity::Approval { .. })
            }
            ReleaseCommand::Waive { .. } | ReleaseCommand::Retry => matches!(r.activity, Activity::Halted(_)),
            _ => false,
        });
        match (waiting, active.as_slice()) {
            (Some(r), _) => Some(r.id.clone()),
            (None, [only]) => Some(only.id.clone()),
            _ => None,
        }
    }

    async fn deploy(&mut self, user: UserRef, version: String, env: Option<String>, strategy: crate::engine::Strategy) {
        let env = env.unwrap_or_else(|| "production".to_string());
        let people = self.config.people(&self.platform);
        if people.get(&user.id).is_none() {
            return self
                .reply(
                    &user,
                    ray_error(format!(
                        "{} is not in config/release-approvers.yaml; only listed people may start a release.",
                        user.id
                    )),
                )
                .await;
        }
        let plan = match self.config.plan(&self.catalog, &env, &self.platform, &version) {
            Ok(p) => p,
            Err(e) => return self.reply(&user, ray_error(e)).await,
        };
        let started = now();
        let id = format!("{version}-{env}-{}", compact_time(started));
        // One release per environment until it ends, however long it waits for people: an
        // unfinished release holds the environment even if its lease lapsed while nobody ran raybot.
        match self.store.summaries().await {
            Ok(list) => {
                if let Some(other) = list.iter().find(|s| s.env == env && !s.finished) {
                    return self
                        .reply(
                            &user,
                            ray_error(format!(
                                "{env} is locked by release {} ({} by {}, {}) — one release per environment. Wait for it to finish, or `/ray abort` / `/ray rollback` it.",
                                other.id, other.version, people.mention(&other.started_by), other.status
                            )),
                        )
                        .await;
                }
            }
            Err(_) => return self.reply(&user, ray_error(STORE_DOWN)).await,
        }
        let lock = match self.store.lock(&env, &id, self.lease_ms(), started.0).await {
            Ok(LockOutcome::Acquired(l)) => l,
            Ok(LockOutcome::Held(l)) => {
                let holder = self.releases.get(&l.owner).map(|a| {
                    format!(
                        "{} (started by {}, {})",
                        a.release.id,
                        people.mention(&a.release.started_by.id),
                        a.release.activity.label()
                    )
                });
                return self
                    .reply(
                        &user,
                        ray_error(format!(
                            "{env} is locked by release {} — one release per environment. Wait for it to finish, or `/ray abort` / `/ray rollback` it.",
                            holder.unwrap_or(l.owner)
                        )),
                    )
                    .await;
            }
            Err(_) => return self.reply(&user, ray_error(STORE_DOWN)).await,
        };
        let ev = Event::Started {
            release: id.clone(),
            version,
            env: env.clone(),
            strategy,
            by: user.clone(),
            plan: Box::new(plan),
        };
        let Some((release, fx)) = Release::start(&ev, started) else {
            let _ = self.store.unlock(&env, &id, lock.token).await;
            return self.reply(&user, ray_error("could not start the release (empty pipeline)")).await;
        };
        let line =
            match serde_json::to_string(&StoredEvent { at: started, event: ev, replica: Some(self.replica.clone()) }) {
                Ok(l) => l,
                Err(e) => return self.reply(&user, ray_error(format!("internal error: {e}"))).await,
            };
        let once = self.once.take();
        let row = summary(&release, 1, &self.replica);
        if self
            .store
            .append(&id, 0, &[line], &row, Some(lock.token), once.as_deref().map(|k| (k, DEDUP_TTL_MS)))
            .await
            .is_err()
        {
            let _ = self.store.unlock(&env, &id, lock.token).await;
            return self.reply(&user, ray_error(STORE_DOWN)).await;
        }
        self.metrics.release_started();
        self.releases.insert(
            id.clone(),
            Active {
                release,
                log_len: 1,
                lock_token: Some(lock.token),
                lock_expires_at: lock.expires_at_ms,
                stale: false,
                status_post: None,
            },
        );
        self.perform(&id, fx).await;
        self.show_status(&id).await;
    }

    /// Applies `event` to release `id`: decide, persist, then act. Store failures leave the
    /// release untouched and tell `user` (if any) that nothing changed.
    pub async fn apply(&mut self, id: &str, event: Event, user: Option<&UserRef>) -> Result<(), StoreError> {
        self.apply_with(id, event, user, true).await
    }

    /// [`Driver::apply`]; with `retry` false, an event another replica beat to the log is dropped
    /// (returns the conflict) instead of being decided again on the newer state.
    async fn apply_with(
        &mut self,
        id: &str,
        event: Event,
        user: Option<&UserRef>,
        retry: bool,
    ) -> Result<(), StoreError> {
        let mut queue = VecDeque::from([event]);
        let mut conflicts = 0;
        while let Some(event) = queue.pop_front() {
            if self.releases.get(id).is_some_and(|a| a.stale) {
                self.reload(id).await?;
            }
            let Some(active) = self.releases.get_mut(id) else { return Ok(()) };
            let at = now();
            // Decide in place (no copy of a state that grows with the log); if the event cannot be
            // recorded, the state is marked stale and rebuilt from the store before its next use.
            let fx = active.release.handle(&event, at);
            active.stale = true;
            let line =
                serde_json::to_string(&StoredEvent { at, event: event.clone(), replica: Some(self.replica.clone()) })
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let len = active.log_len;
            let fence = active.lock_token;
            let row = summary(&active.release, len + 1, &self.replica);
            let once = self.once.clone();
            match self.store.append(id, len, &[line], &row, fence, once.as_deref().map(|k| (k, DEDUP_TTL_MS))).await {
                Ok(_) => self.once = None,
                Err(StoreError::Duplicate { .. }) => {
                    // Another replica recorded this very delivery: it answered the person.
                    self.once = None;
                    self.duplicate_hit = true;
                    return Ok(());
                }
                Err(StoreError::Conflict { .. }) if retry && conflicts < 3 => {
                    // Another replica recorded an event first: catch up and decide again.
                    conflicts += 1;
                    self.reload(id).await?;
                    queue.push_front(event);
                    continue;
                }
                Err(e @ StoreError::Fenced { .. }) => {
                    self.fenced(id, &e).await;
                    return Err(e);
                }
                Err(e) => {
                    if let Some(u) = user {
                        let text = match &e {
                            StoreError::Conflict { .. } => {
                                ray_error("the release changed while this was handled; nothing was changed, try again")
                            }
                            _ => ray_error(STORE_DOWN),
                        };
                        self.reply(u, text).await;
                    }
                    return Err(e);
                }
            }
            if let Some(a) = self.releases.get_mut(id) {
                a.stale = false;
                a.log_len = len + 1;
            }
            self.renew_lock(id, at).await;
            queue.extend(self.perform(id, fx).await);
        }
        self.show_status(id).await;
        Ok(())
    }

    /// Keeps the release's live status message current: posted once, then edited when the status
    /// line changes (who acknowledged, who approved, which phase runs).
    async fn show_status(&mut self, id: &str) {
        if !self.chat.live_status() {
            return;
        }
        let Some(a) = self.releases.get(id) else { return };
        let text = a.release.status_text();
        match a.status_post.clone() {
            Some((_, shown)) if shown == text => {}
            Some((message, _)) => match self.chat.update(&message, &text).await {
                Ok(()) => {
                    if let Some(a) = self.releases.get_mut(id) {
                        a.status_post = Some((message, text));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not update the status message"),
            },
            None => match self.chat.post(&text, &crate::engine::Ask::Nothing).await {
                Ok(message) => {
                    if let Some(a) = self.releases.get_mut(id) {
                        a.status_post = Some((message, text));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not post the status message"),
            },
        }
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
                self.fenced(id, &e).await;
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
        match queue.enqueue(&self.platform, &job, &json).await {
            Ok(_) => self.wake.notify_one(),
            Err(e) => {
                tracing::warn!(job = %job, error = %e, "could not queue a job; trying again every second");
                let platform = self.platform.clone();
                let wake = self.wake.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        match queue.enqueue(&platform, &job, &json).await {
                            Ok(_) => return wake.notify_one(),
                            Err(e) => tracing::warn!(job = %job, error = %e, "still cannot queue the job"),
                        }
                    }
                });
            }
        }
    }

    /// Performs effects; returns events that must be applied right away (message ids, write errors).
    async fn perform(&mut self, id: &str, fx: Vec<Effect>) -> Vec<Event> {
        let mut follow = Vec::new();
        let root = self.artifacts.join(id);
        for e in fx {
            match e {
                Effect::Post { key, text, ask } => match self.chat.post(&text, &ask).await {
                    Ok(message) => {
                        if let Some(key) = key {
                            follow.push(Event::Posted { key, message });
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "post failed"),
                },
                Effect::Update { key, text } => {
                    let msg =
                        self.releases.get(id).and_then(|a| a.release.posts.get(&key)).and_then(|v| v.last().cloned());
                    if let Some(m) = msg {
                        if let Err(err) = self.chat.update(&m, &text).await {
                            tracing::warn!(error = %err, "update failed");
                        }
                    }
                }
                Effect::Reply { to, text } => self.reply(&to, text).await,
                Effect::RunJob(spec) => {
                    let Some(a) = self.releases.get(id) else { continue };
                    let protocol = a
                        .release
                        .plan
                        .protocols
                        .get(a.release.cursor.protocol)
                        .map(|p| format!("Protocol {} ({})", p.id, p.title))
                        .unwrap_or_default();
                    let payload = QueuedPayload {
                        release: id.to_string(),
                        header: format!(
                            "# release {id} — {protocol} — {} — job {} — {}",
                            spec.purpose,
                            spec.id,
                            now().rfc3339()
                        ),
                        inputs_dir: a.release.plan.inputs_dir.clone(),
                        spec,
                    };
                    match self.queue.clone() {
                        Some(queue) => self.enqueue(queue, payload).await,
                        None => {
                            self.in_flight += 1;
                            self.metrics.job_started();
                            let req = job_request(&payload, &self.artifacts, &self.config.base_dir);
                            let tx = self.internal_tx.clone();
                            let metrics = self.metrics.clone();
                            tokio::spawn(async move {
                                let outcome = run_job(req).await;
                                metrics.job_finished(outcome.succeeded());
                                let event = Event::JobFinished { job: payload.spec.id, outcome };
                                let _ = tx.send(Internal::result(payload.release, event));
                            });
                        }
                    }
                }
                Effect::Probe(spec) => {
                    self.in_flight += 1;
                    let client = self.http.clone();
                    let tx = self.internal_tx.clone();
                    let release = id.to_string();
                    tokio::spawn(async move {
                        let req = ProbeRequest {
                            url: spec.url.clone(),
                            count: spec.count,
                            interval: Duration::from_millis(spec.interval_ms),
                            timeout: Duration::from_millis(spec.timeout_ms),
                            version_header: spec.version_header.clone(),
                        };
                        let report = run_probe(&client, &req).await;
                        let _ = tx.send(Internal::result(release, Event::ProbeFinished { probe: spec.id, report }));
                    });
                }
                Effect::CheckInputs { check, items } => {
                    self.in_flight += 1;
                    let inputs_dir =
                        self.releases.get(id).map(|a| PathBuf::from(&a.release.plan.inputs_dir)).unwrap_or_default();
                    let base = self.config.base_dir.clone();
                    let checks: Vec<InputCheck> = items
                        .into_iter()
                        .map(|i| InputCheck {
                            dir: match i.location.as_str() {
                                "repository" => base.clone(),
                                "artifacts" => root.clone(),
                                _ => inputs_dir.clone(),
                            },
                            name: i.name,
                            required: i.required,
                            max_age: i.max_age_days.map(|d| Duration::from_secs(d * 86_400)),
                        })
                        .collect();
                    let tx = self.internal_tx.clone();
                    let release = id.to_string();
                    tokio::task::spawn_blocking(move || {
                        let results = crate::evidence::check_inputs(&checks);
                        let _ = tx.send(Internal::result(release, Event::InputsChecked { check, results }));
                    });
                }
                Effect::WriteEvidence { path, contents } => {
                    if let Err(err) = EvidenceWriter::new(&root).write(&path, contents.as_bytes()) {
                        follow.push(Event::EvidenceFailed { file: path, error: err.to_string() });
                    }
                }
                Effect::Bundle { bundle, zip, files, manifest, protocol } => {
                    self.in_flight += 1;
                    let tx = self.internal_tx.clone();
                    let release = id.to_string();
                    let root = root.clone();
                    tokio::task::spawn_blocking(move || {
                        let writer = EvidenceWriter::new(&root);
                        let event = match writer.bundle(
                            &zip,
                            &files,
                            manifest.as_deref(),
                            &release,
                            &protocol,
                            &now().rfc3339(),
                        ) {
                            Ok(report) => Event::BundleWritten { bundle, report },
                            Err(err) => Event::EvidenceFailed { file: zip, error: err.to_string() },
                        };
                        let _ = tx.send(Internal::result(release, event));
                    });
                }
                Effect::ArmTimer { timer, at } => {
                    *self.timers.entry(id.to_string()).or_default() += 1;
                    let tx = self.internal_tx.clone();
                    let release = id.to_string();
                    let wait = Duration::from_millis(at.0.saturating_sub(now().0));
                    tokio::spawn(async move {
                        tokio::time::sleep(wait).await;
                        let _ = tx.send(Internal::result(release, Event::Tick { timer }));
                    });
                }
                Effect::Finished { outcome } => {
                    self.metrics.release_finished(outcome.label());
                    if let Some(a) = self.releases.get(id) {
                        let env = a.release.env.clone();
                        if let Some(token) = a.lock_token {
                            if let Err(err) = self.store.unlock(&env, id, token).await {
                                tracing::warn!(error = %err, "could not release the environment lock");
                            }
                        }
                    }
                    self.finished.push((id.to_string(), outcome));
                }
            }
        }
        follow
    }
}

/// This process's name as a replica: `RAYBOT_REPLICA`, else `FLY_MACHINE_ID` (kept across restarts
/// of a fly machine), else `raybot-<pid>`.
pub fn replica_name() -> String {
    std::env::var("RAYBOT_REPLICA")
        .or_else(|_| std::env::var("FLY_MACHINE_ID"))
        .unwrap_or_else(|_| format!("raybot-{}", std::process::id()))
}

/// `20261121T233420Z`-style compact UTC time for release ids.
fn compact_time(t: Timestamp) -> String {
    t.rfc3339().replace(['-', ':'], "").chars().take(15).collect::<String>() + "Z"
}

/// The index row of a release.
pub fn summary(r: &Release, events: u64, replica: &str) -> ReleaseSummary {
    ReleaseSummary {
        id: r.id.clone(),
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

/// The process that runs a queued job: `{artifacts}` and `RAYBOT_ARTIFACTS` point at this
/// process's evidence folder, and jobs can call raybot itself (`RAYBOT_BIN`, unless configured).
fn job_request(p: &QueuedPayload, artifacts: &std::path::Path, base_dir: &std::path::Path) -> JobRequest {
    let root = artifacts.join(&p.release);
    let root_s = root.display().to_string();
    let mut env = p.spec.env.clone();
    env.push(("RAYBOT_ARTIFACTS".into(), root_s.clone()));
    if !env.iter().any(|(k, _)| k == "RAYBOT_BIN") {
        if let Ok(exe) = std::env::current_exe() {
            env.push(("RAYBOT_BIN".into(), exe.display().to_string()));
        }
    }
    env.push(("RAYBOT_INPUTS_DIR".into(), p.inputs_dir.clone()));
    JobRequest {
        argv: p.spec.argv.iter().map(|a| a.replace("{artifacts}", &root_s)).collect(),
        env,
        cwd: base_dir.to_path_buf(),
        timeout: Duration::from_millis(p.spec.timeout_ms),
        log_path: root.join(&p.spec.log),
        header: p.header.clone(),
    }
}

/// Takes jobs from the shared queue and runs them in this process, renewing its claim while they
/// run; reports jobs whose replica stopped; keeps this process's heartbeat; and asks its driver to
/// sweep for releases of stopped replicas. Ends when the driver is gone.
struct Worker {
    store: Arc<dyn Store>,
    queue: Arc<dyn JobQueue>,
    platform: String,
    replica: String,
    tx: mpsc::UnboundedSender<Internal>,
    artifacts: PathBuf,
    base_dir: PathBuf,
    metrics: Arc<Metrics>,
    lease_ms: u64,
    wake: Arc<tokio::sync::Notify>,
    /// Entries whose result (or loss) went to the driver and is not recorded yet: their claims
    /// are renewed until the driver acknowledges them, so a result waiting for Redis to come back
    /// is not declared lost by another replica meanwhile.
    holding: std::sync::Mutex<BTreeSet<String>>,
}

impl Worker {
    async fn run(self) {
        let this = Arc::new(self);
        let beat = Duration::from_millis((this.lease_ms / 3).max(100));
        // Jobs taken under this name before this process started were running in a process that
        // stopped: their outcome is unknown.
        loop {
            match this.queue.taken_by(&this.platform, &this.replica).await {
                Ok(jobs) => {
                    for j in jobs {
                        this.lost(j, this.replica.clone());
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "job queue unavailable; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            if this.tx.is_closed() {
                return;
            }
        }
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut sweep = tokio::time::interval(beat);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = sweep.tick() => {
                    if let Err(e) = this.store.heartbeat(&this.replica, this.lease_ms).await {
                        tracing::warn!(error = %e, "could not record this process's heartbeat");
                    }
                    this.renew_held().await;
                    let draining = DRAINING.load(std::sync::atomic::Ordering::SeqCst);
                    let found = if draining {
                        Ok(Vec::new())
                    } else {
                        this.queue.claim_abandoned(&this.platform, &this.replica, this.lease_ms).await
                    };
                    match found {
                        Ok(found) => {
                            for (job, owner) in found {
                                tracing::warn!(job = %job.job, replica = %owner, "a job's replica stopped; its outcome is unknown");
                                this.lost(job, owner);
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "could not look for abandoned jobs"),
                    }
                    // A stopping process takes nothing over.
                    if !draining && this.tx.send(Internal { release: String::new(), event: None, ack: None }).is_err() {
                        return;
                    }
                }
                _ = this.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            if this.tx.is_closed() {
                return;
            }
            while running.load(std::sync::atomic::Ordering::SeqCst) < MAX_QUEUED_JOBS
                && !DRAINING.load(std::sync::atomic::Ordering::SeqCst)
            {
                match this.queue.take(&this.platform, &this.replica).await {
                    Ok(Some(job)) => {
                        IN_HAND.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        running.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let (w, running, beat) = (this.clone(), running.clone(), beat);
                        tokio::spawn(async move {
                            w.execute(job, beat).await;
                            running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read the job queue");
                        break;
                    }
                }
            }
        }
    }

    /// Renews the claims of results the driver has not recorded yet; forgets acknowledged ones.
    async fn renew_held(&self) {
        let held: Vec<String> = self.holding.lock().map(|h| h.iter().cloned().collect()).unwrap_or_default();
        for entry in held {
            match self.queue.extend(&self.platform, &self.replica, &entry).await {
                Ok(true) => {}
                Ok(false) => {
                    if let Ok(mut h) = self.holding.lock() {
                        h.remove(&entry);
                    }
                }
                Err(e) => tracing::warn!(entry = %entry, error = %e, "could not renew a held job claim"),
            }
        }
    }

    fn hold(&self, entry: &str) {
        if let Ok(mut h) = self.holding.lock() {
            h.insert(entry.to_string());
        }
    }

    /// Reports `job` as lost (its outcome unknown after `owner` stopped).
    fn lost(&self, job: crate::store::QueuedJob, owner: String) {
        match serde_json::from_str::<QueuedPayload>(&job.payload) {
            Ok(p) => {
                IN_HAND.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                self.hold(&job.entry);
                let event = Event::JobLost { job: p.spec.id, replica: owner };
                let _ = self.tx.send(Internal { release: p.release, event: Some(event), ack: Some(job.entry) });
            }
            Err(_) => {
                // Deleted meanwhile (its result was recorded) or unreadable: nothing to report.
                let (queue, platform) = (self.queue.clone(), self.platform.clone());
                tokio::spawn(async move { queue.done(&platform, &job.entry, &job.job).await });
            }
        }
    }

    async fn execute(&self, job: crate::store::QueuedJob, beat: Duration) {
        let payload: QueuedPayload = match serde_json::from_str(&job.payload) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(entry = %job.entry, error = %e, "unreadable job in the queue; dropped");
                let _ = self.queue.done(&self.platform, &job.entry, &job.job).await;
                release_hand();
                return;
            }
        };
        tracing::info!(job = %payload.spec.id, purpose = %payload.spec.purpose, "running a queued job");
        self.metrics.job_started();
        let run = run_job(job_request(&payload, &self.artifacts, &self.base_dir));
        tokio::pin!(run);
        let mut renew = tokio::time::interval(beat);
        renew.tick().await;
        let outcome = loop {
            tokio::select! {
                outcome = &mut run => break outcome,
                _ = renew.tick() => match self.queue.extend(&self.platform, &self.replica, &job.entry).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(job = %payload.spec.id, "another replica declared this job lost; its result is still recorded"),
                    Err(e) => tracing::warn!(job = %payload.spec.id, error = %e, "could not renew the job's claim"),
                },
            }
        };
        self.metrics.job_finished(outcome.succeeded());
        self.hold(&job.entry);
        let event = Event::JobFinished { job: payload.spec.id, outcome };
        let _ = self.tx.send(Internal { release: payload.release, event: Some(event), ack: Some(job.entry) });
    }
}
