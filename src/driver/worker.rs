//! The job queue's worker: takes jobs from the shared queue (Redis) and runs them in this
//! process, renews its claims while they run, reports jobs whose replica stopped, keeps this
//! process's heartbeat and asks its driver to sweep for releases of stopped replicas. A [`Drain`]
//! tells it when the process is stopping.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::Internal;
use crate::engine::{Event, Platform};
use crate::jobs::{JobRequest, ReportRequest, run_job};
use crate::metrics::Metrics;
use crate::store::{JobQueue, Store};

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

/// Whether this process is stopping, and how many queued jobs (and loss reports) it took whose
/// results are not recorded yet. Created once per process (by `raybot serve`) and shared by its
/// drivers and workers: a stopping process takes no new jobs and looks for no abandoned ones, but
/// finishes what it runs and keeps its claims and heartbeat until the results are recorded.
#[derive(Debug, Clone, Default)]
pub struct Drain {
    stopping: Arc<AtomicBool>,
    in_hand: Arc<AtomicUsize>,
    /// No delivery is accepted any more (the HTTP server has finished its requests).
    closed: tokio_util::sync::CancellationToken,
}

impl Drain {
    /// From now on, take no new jobs.
    pub fn begin(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Whether [`Drain::begin`] was called.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The HTTP server has finished: drivers answer the deliveries they hold and accept no more
    /// (however many handles something still keeps).
    pub fn close_deliveries(&self) {
        self.closed.cancel();
    }

    /// Resolves once [`Drain::close_deliveries`] was called.
    pub async fn deliveries_closed(&self) {
        self.closed.cancelled().await
    }

    /// Queued jobs taken by this process whose results are not recorded yet.
    pub fn in_hand(&self) -> usize {
        self.in_hand.load(Ordering::SeqCst)
    }

    fn take(&self) {
        self.in_hand.fetch_add(1, Ordering::SeqCst);
    }

    /// A taken job's result (or loss) is recorded, or no longer this process's to record.
    pub(super) fn release(&self) {
        let _ = self.in_hand.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| Some(n.saturating_sub(1)));
    }
}

/// The process that runs a queued job: `{artifacts}` and `RAYBOT_ARTIFACTS` point at this
/// process's evidence folder, and jobs can call raybot itself (`RAYBOT_BIN`, unless configured).
/// A test report the job writes is read from the same folder.
pub(super) fn job_request(p: &QueuedPayload, artifacts: &std::path::Path, base_dir: &std::path::Path) -> JobRequest {
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
        report: p.spec.report.as_ref().map(|r| ReportRequest {
            format: r.format,
            file: root.join(&r.path),
            path: r.path.clone(),
        }),
    }
}

/// Takes jobs from the shared queue and runs them in this process, renewing its claim while they
/// run; reports jobs whose replica stopped; keeps this process's heartbeat; and asks its driver to
/// sweep for releases of stopped replicas. Ends when the driver is gone.
pub(super) struct Worker {
    pub(super) store: Arc<dyn Store>,
    pub(super) queue: Arc<dyn JobQueue>,
    pub(super) platform: Platform,
    pub(super) replica: String,
    pub(super) tx: mpsc::UnboundedSender<Internal>,
    pub(super) artifacts: PathBuf,
    pub(super) base_dir: PathBuf,
    pub(super) metrics: Arc<Metrics>,
    pub(super) lease_ms: u64,
    pub(super) wake: Arc<tokio::sync::Notify>,
    pub(super) drain: Drain,
    /// Entries whose result (or loss) went to the driver and is not recorded yet: their claims
    /// are renewed until the driver acknowledges them, so a result waiting for Redis to come back
    /// is not declared lost by another replica meanwhile.
    pub(super) holding: std::sync::Mutex<BTreeSet<String>>,
}

impl Worker {
    pub(super) async fn run(self) {
        let this = Arc::new(self);
        let beat = Duration::from_millis((this.lease_ms / 3).max(100));
        // Jobs taken under this name before this process started were running in a process that
        // stopped: their outcome is unknown.
        loop {
            match this.queue.taken_by(this.platform.as_str(), &this.replica).await {
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
        let running = Arc::new(AtomicUsize::new(0));
        let mut sweep = tokio::time::interval(beat);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = sweep.tick() => {
                    if let Err(e) = this.store.heartbeat(&this.replica, this.lease_ms).await {
                        tracing::warn!(error = %e, "could not record this process's heartbeat");
                    }
                    this.renew_held().await;
                    let draining = this.drain.stopping();
                    let found = if draining {
                        Ok(Vec::new())
                    } else {
                        this.queue.claim_abandoned(this.platform.as_str(), &this.replica, this.lease_ms).await
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
                    if !draining && this.tx.send(Internal::Sweep).is_err() {
                        return;
                    }
                }
                _ = this.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            if this.tx.is_closed() {
                return;
            }
            while running.load(Ordering::SeqCst) < MAX_QUEUED_JOBS && !this.drain.stopping() {
                match this.queue.take(this.platform.as_str(), &this.replica).await {
                    Ok(Some(job)) => {
                        this.drain.take();
                        running.fetch_add(1, Ordering::SeqCst);
                        let (w, running, beat) = (this.clone(), running.clone(), beat);
                        tokio::spawn(async move {
                            w.execute(job, beat).await;
                            running.fetch_sub(1, Ordering::SeqCst);
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
            match self.queue.extend(self.platform.as_str(), &self.replica, &entry).await {
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
                self.drain.take();
                self.hold(&job.entry);
                let event = Event::JobLost { job: p.spec.id, replica: owner };
                let _ = self.tx.send(Internal::Result { release: p.release, event, ack: Some(job.entry) });
            }
            Err(_) => {
                // Deleted meanwhile (its result was recorded) or unreadable: nothing to report.
                let (queue, platform) = (self.queue.clone(), self.platform);
                tokio::spawn(async move { queue.done(platform.as_str(), &job.entry, &job.job).await });
            }
        }
    }

    async fn execute(&self, job: crate::store::QueuedJob, beat: Duration) {
        let payload: QueuedPayload = match serde_json::from_str(&job.payload) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(entry = %job.entry, error = %e, "unreadable job in the queue; dropped");
                let _ = self.queue.done(self.platform.as_str(), &job.entry, &job.job).await;
                self.drain.release();
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
                _ = renew.tick() => match self.queue.extend(self.platform.as_str(), &self.replica, &job.entry).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(job = %payload.spec.id, "another replica declared this job lost; its result is still recorded"),
                    Err(e) => tracing::warn!(job = %payload.spec.id, error = %e, "could not renew the job's claim"),
                },
            }
        };
        self.metrics.job_finished(outcome.succeeded());
        self.hold(&job.entry);
        let event = Event::JobFinished { job: payload.spec.id, outcome };
        let _ = self.tx.send(Internal::Result { release: payload.release, event, ack: Some(job.entry) });
    }
}
