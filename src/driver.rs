//! The driver: the only place where the engine meets the world.
//!
//! For every inbound event it routes to the right release, lets the engine decide, makes the event
//! durable in the [`Store`] *before* anything is said in chat, then performs the effects: posts,
//! jobs, probes, evidence, timers. Results of jobs and probes come back as events through the same
//! path, so a restart can rebuild every release by replaying its log.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::chat::{ChatSink, Delivery, Handled, Inbound};
use crate::command::{self, Command, HELP};
use crate::config::Config;
use crate::engine::{Effect, Event, Release, ReleaseCommand, Terminal, Timestamp, UserRef, ray_error};
use crate::evidence::{EvidenceWriter, InputCheck};
use crate::http::Metrics;
use crate::jobs::{JobRequest, run_job};
use crate::probe::{ProbeRequest, run_probe};
use crate::protocol::Catalog;
use crate::store::{LockOutcome, ReleaseSummary, Store, StoreError};

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
    pub event: Event,
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
        let replica = std::env::var("RAYBOT_REPLICA")
            .or_else(|_| std::env::var("FLY_MACHINE_ID"))
            .unwrap_or_else(|_| format!("raybot-{}", std::process::id()));
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
        }
    }

    /// Loads every unfinished release of this platform from the store and resumes it.
    pub async fn resume(&mut self) -> Result<usize, StoreError> {
        let summaries = self.store.summaries().await?;
        let mut resumed = 0;
        for s in summaries.into_iter().filter(|s| !s.finished) {
            let Some((release, log_len, previous)) = self.load(&s.id).await? else { continue };
            if release.plan.people.platform != self.platform {
                continue;
            }
            let (token, lock_expires_at) = match self
                .store
                .lock(&release.env, &release.id, self.lease_ms(), now().0)
                .await?
            {
                LockOutcome::Acquired(l) => (Some(l.token), l.expires_at_ms),
                LockOutcome::Held(l) => {
                    tracing::warn!(release = %release.id, holder = %l.owner, "environment lock held by another release; not resuming");
                    continue;
                }
            };
            let id = release.id.clone();
            self.releases.insert(
                id.clone(),
                Active { release, log_len, lock_token: token, lock_expires_at, stale: false, status_post: None },
            );
            self.metrics.release_resumed();
            let _ = self.apply(&id, Event::Resumed { replica: self.replica.clone(), previous }, None).await;
            resumed += 1;
        }
        Ok(resumed)
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
    /// a command reaching any replica finds the release it is for. Cheap when nothing changed (one
    /// read of the index).
    pub async fn refresh(&mut self) -> Result<(), StoreError> {
        let now_ms = now().0;
        for s in self.store.summaries().await? {
            let up_to_date = match self.releases.get(&s.id) {
                Some(a) => !a.stale && a.log_len == s.events,
                None => s.finished,
            };
            if up_to_date {
                continue;
            }
            let Some((release, log_len, _)) = self.load(&s.id).await? else { continue };
            if release.plan.people.platform != self.platform {
                continue;
            }
            match self.releases.get_mut(&s.id) {
                Some(a) => {
                    a.release = release;
                    a.log_len = log_len;
                    a.stale = false;
                }
                None => {
                    let lock = self.store.lock_holder(&release.env, now_ms).await?.filter(|l| l.owner == s.id);
                    let id = s.id.clone();
                    self.releases.insert(
                        id,
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
            && self
                .releases
                .iter()
                .all(|(id, a)| a.release.activity.needs_people() || self.timers.get(id).copied().unwrap_or(0) == 0)
    }

    /// Active (unfinished) releases.
    pub fn active(&self) -> impl Iterator<Item = &Release> {
        self.releases.values().map(|a| &a.release).filter(|r| !r.is_finished())
    }

    /// The next background result (jobs, probes, timers …); never `None` while the driver lives.
    pub async fn recv_internal(&mut self) -> Option<Internal> {
        self.internal_rx.recv().await
    }

    /// Applies a background result.
    pub async fn handle_internal(&mut self, msg: Internal) {
        if matches!(msg.event, Event::Tick { .. }) {
            if let Some(n) = self.timers.get_mut(&msg.release) {
                *n = n.saturating_sub(1);
            }
        } else {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        if let Err(e) = self.apply(&msg.release, msg.event.clone(), None).await {
            // Keep the result and try again: a finished job must not be lost to a store hiccup.
            tracing::warn!(release = %msg.release, error = %e, "could not record a result; retrying in 1s");
            if matches!(msg.event, Event::Tick { .. }) {
                *self.timers.entry(msg.release.clone()).or_default() += 1;
            } else {
                self.in_flight += 1;
            }
            let tx = self.internal_tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = tx.send(msg);
            });
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
        let fresh = match &key {
            None => Ok(true),
            Some(k) => self.store.remember(&format!("inbound:{k}"), DEDUP_TTL_MS, now().0).await,
        };
        match fresh {
            Ok(true) => self.inbound(inbound).await,
            Ok(false) => {
                duplicate = true;
                tracing::debug!(key = ?key, "duplicate delivery ignored");
            }
            // Reactions and clicks are not commands, but the person still learns nothing was counted.
            Err(e) => {
                tracing::warn!(error = %e, "could not record an idempotency key");
                self.reply(&user, ray_error(STORE_DOWN)).await;
            }
        }
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
        if self.store.append(&id, 0, &[line], &summary(&release, 1), Some(lock.token)).await.is_err() {
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
            let row = summary(&active.release, len + 1);
            match self.store.append(id, len, &[line], &row, fence).await {
                Ok(_) => {}
                Err(StoreError::Conflict { .. }) if conflicts < 3 => {
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
                    self.in_flight += 1;
                    self.metrics.job_started();
                    let root_s = root.display().to_string();
                    let argv: Vec<String> = spec.argv.iter().map(|a| a.replace("{artifacts}", &root_s)).collect();
                    let mut env = spec.env.clone();
                    env.push(("RAYBOT_ARTIFACTS".into(), root_s.clone()));
                    // Jobs can call raybot itself (the sample scripts do); a configured RAYBOT_BIN wins.
                    if !env.iter().any(|(k, _)| k == "RAYBOT_BIN") {
                        if let Ok(exe) = std::env::current_exe() {
                            env.push(("RAYBOT_BIN".into(), exe.display().to_string()));
                        }
                    }
                    if let Some(a) = self.releases.get(id) {
                        env.push(("RAYBOT_INPUTS_DIR".into(), a.release.plan.inputs_dir.clone()));
                    }
                    let req = JobRequest {
                        argv,
                        env,
                        cwd: self.config.base_dir.clone(),
                        timeout: Duration::from_millis(spec.timeout_ms),
                        log_path: root.join(&spec.log),
                        header: {
                            let protocol = self
                                .releases
                                .get(id)
                                .and_then(|a| a.release.plan.protocols.get(a.release.cursor.protocol))
                                .map(|p| format!("Protocol {} ({})", p.id, p.title))
                                .unwrap_or_default();
                            format!(
                                "# release {id} — {protocol} — {} — job {} — {}",
                                spec.purpose,
                                spec.id,
                                now().rfc3339()
                            )
                        },
                    };
                    let tx = self.internal_tx.clone();
                    let release = id.to_string();
                    let metrics = self.metrics.clone();
                    tokio::spawn(async move {
                        let outcome = run_job(req).await;
                        metrics.job_finished(outcome.succeeded());
                        let _ = tx.send(Internal { release, event: Event::JobFinished { job: spec.id, outcome } });
                    });
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
                        let _ = tx.send(Internal { release, event: Event::ProbeFinished { probe: spec.id, report } });
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
                        let _ = tx.send(Internal { release, event: Event::InputsChecked { check, results } });
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
                        let _ = tx.send(Internal { release, event });
                    });
                }
                Effect::ArmTimer { timer, at } => {
                    *self.timers.entry(id.to_string()).or_default() += 1;
                    let tx = self.internal_tx.clone();
                    let release = id.to_string();
                    let wait = Duration::from_millis(at.0.saturating_sub(now().0));
                    tokio::spawn(async move {
                        tokio::time::sleep(wait).await;
                        let _ = tx.send(Internal { release, event: Event::Tick { timer } });
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

/// `20261121T233420Z`-style compact UTC time for release ids.
fn compact_time(t: Timestamp) -> String {
    t.rfc3339().replace(['-', ':'], "").chars().take(15).collect::<String>() + "Z"
}

/// The index row of a release.
pub fn summary(r: &Release, events: u64) -> ReleaseSummary {
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
    }
}
