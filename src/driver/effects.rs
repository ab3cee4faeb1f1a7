//! [`Hands`]: what the driver does for a recorded event besides chat — run jobs, probe services,
//! check inputs, write evidence and bundles, arm timers.
//!
//! Nothing here decides or waits: each piece of work runs in its own task and comes back as an
//! [`Internal::Result`] the driver records like any event. What needs the store or the driver's
//! own state (a job for the shared queue, the lock of a release that ended, a private answer) is
//! handed back in [`Done`]. Hands also count what they started and has not come back, which is
//! what "idle" means for the tests and for `raybot chat`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Internal;
use super::worker::{QueuedPayload, job_request};
use crate::clock::now;
use crate::engine::{Effect, Event, Terminal, UserRef};
use crate::evidence::{EvidenceWriter, InputCheck};
use crate::jobs::run_job;
use crate::metrics::Metrics;
use crate::probe::{ProbeRequest, run_probe};

/// What the effects of one event need to know of their release.
#[derive(Debug, Clone)]
pub(super) struct Scope {
    /// The release id.
    pub(super) id: String,
    /// `Protocol 10 (…)`: the protocol a job runs in, for its log header.
    pub(super) protocol: String,
    /// `RAYBOT_INPUTS_DIR` of the release.
    pub(super) inputs_dir: String,
}

/// What is left for the driver once the hands did their part.
#[derive(Debug, Default)]
pub(super) struct Done {
    /// Events to record at once (evidence that could not be written).
    pub(super) follow: Vec<Event>,
    /// Jobs for the shared queue (any replica's worker runs them).
    pub(super) queue: Vec<QueuedPayload>,
    /// Private answers, in order.
    pub(super) replies: Vec<(UserRef, String)>,
    /// The release reached its outcome.
    pub(super) finished: Option<Terminal>,
}

/// Performs effects in background tasks and counts what has not come back.
pub(super) struct Hands {
    http: reqwest::Client,
    /// Evidence root; each release writes under `<root>/<release id>/`.
    artifacts: PathBuf,
    /// Where jobs run and repository inputs are found.
    base_dir: PathBuf,
    results: mpsc::UnboundedSender<Internal>,
    metrics: Arc<Metrics>,
    /// Jobs, probes, checks and bundles started and not reported back.
    in_flight: usize,
    /// Timers armed and not yet fired, per release.
    timers: BTreeMap<String, usize>,
}

impl Hands {
    pub(super) fn new(
        artifacts: PathBuf,
        base_dir: PathBuf,
        results: mpsc::UnboundedSender<Internal>,
        metrics: Arc<Metrics>,
    ) -> Hands {
        Hands {
            http: reqwest::Client::builder().no_proxy().build().unwrap_or_default(),
            artifacts,
            base_dir,
            results,
            metrics,
            in_flight: 0,
            timers: BTreeMap::new(),
        }
    }

    /// Nothing started by these hands is still out (timers aside).
    pub(super) fn free(&self) -> bool {
        self.in_flight == 0
    }

    /// Timers of release `id` armed and not yet fired.
    pub(super) fn timers(&self, id: &str) -> usize {
        self.timers.get(id).copied().unwrap_or(0)
    }

    /// The result `event` of release `id` came back (`true`), or is kept to be recorded again
    /// later (`false`). Results of queued jobs are counted by the queue, not here.
    pub(super) fn returned(&mut self, id: &str, event: &Event, back: bool) {
        let n = match event {
            Event::Tick { .. } => self.timers.entry(id.to_string()).or_default(),
            _ => &mut self.in_flight,
        };
        *n = if back { n.saturating_sub(1) } else { *n + 1 };
    }

    /// Starts what `fx` asks for (chat aside: the outbox has it); jobs go to the queue when
    /// `queued`, else run in this process.
    pub(super) fn perform(&mut self, scope: &Scope, fx: Vec<Effect>, queued: bool) -> Done {
        let mut done = Done::default();
        let root = self.artifacts.join(&scope.id);
        for e in fx {
            match e {
                Effect::Post { .. } | Effect::Update { .. } => {}
                Effect::Reply { to, text } => done.replies.push((to, text)),
                Effect::RunJob(spec) => {
                    let header = format!(
                        "# release {} — {} — {} — job {} — {}",
                        scope.id,
                        scope.protocol,
                        spec.purpose,
                        spec.id,
                        now().rfc3339()
                    );
                    let payload =
                        QueuedPayload { release: scope.id.clone(), header, inputs_dir: scope.inputs_dir.clone(), spec };
                    if queued {
                        done.queue.push(payload);
                    } else {
                        self.run_job(payload);
                    }
                }
                Effect::Probe(spec) => {
                    self.in_flight += 1;
                    let (client, tx, release) = (self.http.clone(), self.results.clone(), scope.id.clone());
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
                    let inputs_dir = PathBuf::from(&scope.inputs_dir);
                    let checks: Vec<InputCheck> = items
                        .into_iter()
                        .map(|i| InputCheck {
                            dir: match i.location.as_str() {
                                "repository" => self.base_dir.clone(),
                                "artifacts" => root.clone(),
                                _ => inputs_dir.clone(),
                            },
                            name: i.name,
                            required: i.required,
                            max_age: i.max_age_days.map(|d| Duration::from_secs(d * 86_400)),
                            expects: i.expects,
                        })
                        .collect();
                    let (tx, release) = (self.results.clone(), scope.id.clone());
                    tokio::task::spawn_blocking(move || {
                        let results = crate::evidence::check_inputs(&checks);
                        let _ = tx.send(Internal::result(release, Event::InputsChecked { check, results }));
                    });
                }
                Effect::WriteEvidence { path, contents } => {
                    if let Err(err) = EvidenceWriter::new(&root).write(&path, contents.as_bytes()) {
                        done.follow.push(Event::EvidenceFailed { file: path, error: err.to_string() });
                    }
                }
                Effect::Bundle { bundle, zip, files, manifest, protocol } => {
                    self.in_flight += 1;
                    let (tx, release, root) = (self.results.clone(), scope.id.clone(), root.clone());
                    tokio::task::spawn_blocking(move || {
                        let writer = EvidenceWriter::new(&root);
                        let written =
                            writer.bundle(&zip, &files, manifest.as_deref(), &release, &protocol, &now().rfc3339());
                        let event = match written {
                            Ok(report) => Event::BundleWritten { bundle, report },
                            Err(err) => Event::EvidenceFailed { file: zip, error: err.to_string() },
                        };
                        let _ = tx.send(Internal::result(release, event));
                    });
                }
                Effect::ArmTimer { timer, at } => {
                    *self.timers.entry(scope.id.clone()).or_default() += 1;
                    let (tx, release) = (self.results.clone(), scope.id.clone());
                    let wait = Duration::from_millis(at.0.saturating_sub(now().0));
                    tokio::spawn(async move {
                        tokio::time::sleep(wait).await;
                        let _ = tx.send(Internal::result(release, Event::Tick { timer }));
                    });
                }
                Effect::Finished { outcome } => done.finished = Some(outcome),
            }
        }
        done
    }

    /// Runs a job as a child process of this raybot; its outcome comes back as `JobFinished`.
    fn run_job(&mut self, payload: QueuedPayload) {
        self.in_flight += 1;
        self.metrics.job_started();
        let req = job_request(&payload, &self.artifacts, &self.base_dir);
        let (tx, metrics) = (self.results.clone(), self.metrics.clone());
        tokio::spawn(async move {
            let outcome = run_job(req).await;
            metrics.job_finished(outcome.succeeded());
            let event = Event::JobFinished { job: payload.spec.id, outcome };
            let _ = tx.send(Internal::result(payload.release, event));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{JobSpec, Platform, Timestamp};

    fn hands(dir: &std::path::Path) -> (Hands, mpsc::UnboundedReceiver<Internal>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Hands::new(dir.join("artifacts"), dir.to_path_buf(), tx, Arc::new(Metrics::new())), rx)
    }

    fn scope() -> Scope {
        Scope { id: "r1".into(), protocol: "Protocol 10 (PRE-DEPLOYMENT)".into(), inputs_dir: "inputs".into() }
    }

    fn job(argv: &[&str]) -> JobSpec {
        JobSpec {
            id: "job-1".into(),
            purpose: "deploy staging".into(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
            env: vec![("RAYBOT_ENV".into(), "staging".into())],
            timeout_ms: 10_000,
            log: "deployment/staging-run.log".into(),
            report: None,
        }
    }

    #[tokio::test]
    async fn a_job_runs_as_a_child_process_and_comes_back_once_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut hands, mut results) = hands(dir.path());
        let done =
            hands.perform(&scope(), vec![Effect::RunJob(job(&["sh", "-c", "echo deployed $RAYBOT_ENV"]))], false);
        assert!(done.queue.is_empty() && done.follow.is_empty());
        assert!(!hands.free(), "the job is out");
        let Some(Internal::Result { release, event: Event::JobFinished { job, outcome }, ack: None }) =
            results.recv().await
        else {
            panic!("no job result")
        };
        assert_eq!((release.as_str(), job.as_str()), ("r1", "job-1"));
        assert!(outcome.succeeded(), "{outcome:?}");
        let log = std::fs::read_to_string(dir.path().join("artifacts/r1/deployment/staging-run.log")).unwrap();
        assert!(log.starts_with("# release r1 — Protocol 10 (PRE-DEPLOYMENT) — deploy staging — job job-1"), "{log}");
        assert!(log.contains("deployed staging"), "{log}");
        hands.returned("r1", &Event::JobFinished { job, outcome }, true);
        assert!(hands.free());
    }

    #[tokio::test]
    async fn with_a_shared_queue_jobs_are_handed_back_not_run() {
        let dir = tempfile::tempdir().unwrap();
        let (mut hands, mut results) = hands(dir.path());
        let done = hands.perform(&scope(), vec![Effect::RunJob(job(&["false"]))], true);
        assert_eq!(done.queue.len(), 1);
        assert_eq!(done.queue[0].inputs_dir, "inputs");
        assert!(hands.free(), "nothing runs here");
        assert!(results.try_recv().is_err());
    }

    #[tokio::test]
    async fn evidence_that_cannot_be_written_comes_back_as_an_event_to_record() {
        let dir = tempfile::tempdir().unwrap();
        let (mut hands, _results) = hands(dir.path());
        // A file where the release's folder should be: nothing under it can be written.
        std::fs::create_dir_all(dir.path().join("artifacts")).unwrap();
        std::fs::write(dir.path().join("artifacts/r1"), "not a folder").unwrap();
        let fx = vec![
            Effect::WriteEvidence { path: "intake/report.json".into(), contents: "{}".into() },
            Effect::Reply { to: UserRef::new(Platform::Local, "bob"), text: "[RAY] noted".into() },
            Effect::Finished { outcome: Terminal::Released },
        ];
        let done = hands.perform(&scope(), fx, false);
        assert!(
            matches!(&done.follow[..], [Event::EvidenceFailed { file, .. }] if file == "intake/report.json"),
            "{:?}",
            done.follow
        );
        assert_eq!(done.replies, vec![(UserRef::new(Platform::Local, "bob"), "[RAY] noted".to_string())]);
        assert!(matches!(done.finished, Some(Terminal::Released)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_fires_at_its_time_and_is_counted_until_it_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut hands, mut results) = hands(dir.path());
        let at = Timestamp(now().0 + 60_000);
        hands.perform(&scope(), vec![Effect::ArmTimer { timer: "t1".into(), at }], false);
        assert_eq!(hands.timers("r1"), 1);
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert!(results.try_recv().is_err(), "fired early");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let Some(Internal::Result { event, .. }) = results.recv().await else { panic!("no tick") };
        assert!(matches!(&event, Event::Tick { timer } if timer == "t1"), "{event:?}");
        hands.returned("r1", &event, true);
        assert_eq!(hands.timers("r1"), 0);
    }
}
