//! Rolling the target environment back: the record, whether the probe after the rollback job
//! confirms the previous version, and when a queued `/ray rollback` takes over.
//!
//! A leaf: the release starts the job and the probe, posts and ends the release.

use crate::engine::Timestamp;
use crate::engine::plan::{Environment, ProbeSettings};
use crate::engine::reports::{JobOutcome, ProbeReport};

use super::jobs::JobAsk;
use super::rollout;
use super::state::{Activity, RollbackRecord, Task};
use crate::engine::ids::ReleaseId;
use crate::engine::refusal::Refusal;

/// The trigger of a rollback nobody asked for (a failed gate, job or health window).
pub(crate) const AUTOMATIC: &str = "automatic";

impl RollbackRecord {
    /// A rollback of `env` started at `now`; `trigger` is `automatic` or the user id who asked.
    pub(crate) fn start(env: String, reason: String, trigger: String, now: Timestamp) -> RollbackRecord {
        RollbackRecord { env, reason, trigger, started_at: now, finished_at: None, confirmed: None }
    }

    /// The probe confirmed the previous version at `now`; `summary` is its figures.
    pub(crate) fn confirm(&mut self, now: Timestamp, summary: String) {
        self.finished_at = Some(now);
        self.confirmed = Some(summary);
    }

    /// Who asked for the rollback; `None` when it was [`AUTOMATIC`].
    pub(crate) fn asked_by(&self) -> Option<&str> {
        Some(self.trigger.as_str()).filter(|t| *t != AUTOMATIC)
    }
}

/// Whether the probe after the rollback job shows the environment healthy and no longer serving
/// `version` (any request still answered by it means the rollback did not take).
pub(crate) fn restored(settings: &ProbeSettings, report: &ProbeReport, version: &str) -> bool {
    rollout::healthy(settings, report) && report.version_share(version) <= 0.0
}

/// When a `/ray rollback` the access check let through runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request {
    /// Nothing is running: roll back now.
    Now,
    /// A job or probe runs: roll back as soon as it ends.
    Queued,
}

/// Whether `/ray rollback` can run while the release does `activity`; `touched` is whether the
/// target environment was changed. Refused when there is nothing to roll back or a rollback runs.
pub(crate) fn request(touched: bool, activity: &Activity, release: &ReleaseId, env: &str) -> Result<Request, Refusal> {
    if !touched {
        return Err(Refusal::NothingToRollBack { release: release.clone(), env: env.to_string() });
    }
    match activity {
        Activity::Job { task, .. } | Activity::Probe { task, .. } if task.is_rollback() => {
            Err(Refusal::RollbackRunning { env: env.to_string() })
        }
        Activity::Job { .. } | Activity::Probe { .. } => Ok(Request::Queued),
        _ => Ok(Request::Now),
    }
}

/// The rollback job of `env` (its configuration `config`), logging to `log`.
pub(crate) fn job(env: &str, config: &Environment, log: String) -> JobAsk {
    JobAsk::new(env, format!("rollback {env}"), &config.rollback, log).at(0)
}

/// What a result of the target's rollback means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RollbackStep {
    /// The job ran: probe that the previous version serves again.
    Probe,
    /// The rollback did not take: the release halts for `/ray retry` with this reason.
    Halt(String),
    /// The probe confirms the previous version; `summary` is its figures.
    Confirmed {
        /// The probe's figures.
        summary: String,
    },
}

/// The rollback job ended with `outcome`.
pub(crate) fn after_job(outcome: &JobOutcome) -> RollbackStep {
    if outcome.succeeded() {
        RollbackStep::Probe
    } else {
        RollbackStep::Halt(format!("rollback job failed ({})", outcome.summary()))
    }
}

/// The probe of `env` after the rollback job, which must no longer serve `version`.
pub(crate) fn after_probe(settings: &ProbeSettings, report: &ProbeReport, env: &str, version: &str) -> RollbackStep {
    let summary = rollout::summary(report);
    if restored(settings, report, version) {
        RollbackStep::Confirmed { summary }
    } else {
        RollbackStep::Halt(format!("after the rollback job {env} is not healthy on the previous version: {summary}"))
    }
}

/// What the halt after a failed gate says about rolling staging back (`outcome` of its job).
pub(crate) fn staging_note(outcome: &JobOutcome) -> String {
    if outcome.succeeded() {
        "staging rolled back".to_string()
    } else {
        format!("staging rollback failed ({})", outcome.summary())
    }
}

impl Task {
    /// True for the rollback's own job and probe: a queued `/ray rollback` never interrupts them.
    pub(crate) fn is_rollback(&self) -> bool {
        matches!(self, Task::Rollback { .. } | Task::RollbackProbe { .. })
    }
}

/// Takes the `/ray rollback` queued while a job or probe ran, unless `task` (what just ended) is
/// part of a rollback already.
pub(crate) fn take_queued(queued: &mut Option<(String, String)>, task: &Task) -> Option<(String, String)> {
    if task.is_rollback() { None } else { queued.take() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ProbeSettings {
        ProbeSettings {
            url: "u".into(),
            count: 10,
            interval_ms: 1,
            timeout_ms: 1,
            min_success_rate: 0.9,
            max_p95_ms: 100,
            version_header: Some("x-version".into()),
        }
    }

    fn report(ok: u32, versions: &[(&str, u32)]) -> ProbeReport {
        crate::engine::testkit::probe_report(ok, versions)
    }

    #[test]
    fn a_rollback_is_confirmed_only_by_a_healthy_previous_version() {
        assert!(restored(&settings(), &report(10, &[("v1.1", 10)]), "v1.2"));
        assert!(!restored(&settings(), &report(10, &[("v1.1", 9), ("v1.2", 1)]), "v1.2"));
        assert!(!restored(&settings(), &report(0, &[("v1.1", 10)]), "v1.2"));
        // Without a version header nothing names the version: health decides.
        assert!(restored(&settings(), &report(10, &[]), "v1.2"));
    }

    #[test]
    fn a_rollback_that_did_not_take_halts_with_the_figures() {
        let failed = JobOutcome {
            exit_code: Some(1),
            timed_out: false,
            duration_ms: 500,
            spawn_error: None,
            log_tail: Vec::new(),
            report: None,
        };
        assert_eq!(after_job(&failed), RollbackStep::Halt("rollback job failed (exit 1 in 0.5s)".into()));
        assert_eq!(staging_note(&failed), "staging rollback failed (exit 1 in 0.5s)");
        let still_new = after_probe(&settings(), &report(10, &[("v1.2", 10)]), "production", "v1.2");
        assert!(
            matches!(still_new, RollbackStep::Halt(r) if r.starts_with("after the rollback job production is not healthy"))
        );
        let back = after_probe(&settings(), &report(10, &[("v1.1", 10)]), "production", "v1.2");
        assert!(matches!(back, RollbackStep::Confirmed { summary } if summary.starts_with("10/10 healthy")));
    }

    #[test]
    fn a_rollback_is_refused_before_the_target_changed_or_while_one_runs_and_queued_behind_work() {
        let (idle, r) = (Activity::Idle, ReleaseId::from("r"));
        assert_eq!(
            request(false, &idle, &r, "production"),
            Err(Refusal::NothingToRollBack { release: "r".into(), env: "production".into() })
        );
        assert_eq!(request(true, &idle, &r, "production"), Ok(Request::Now));
        let job = |task| Activity::Job { job: "r#job1".into(), task };
        assert_eq!(request(true, &job(Task::DeployStep { index: 1 }), &r, "production"), Ok(Request::Queued));
        assert_eq!(
            request(true, &job(Task::Rollback { started: Timestamp(1) }), &r, "production"),
            Err(Refusal::RollbackRunning { env: "production".into() })
        );
    }

    #[test]
    fn the_record_keeps_when_and_how_it_was_confirmed() {
        let mut r = RollbackRecord::start("production".into(), "bad".into(), "automatic".into(), Timestamp(1));
        assert_eq!((r.finished_at, r.confirmed.as_deref()), (None, None));
        r.confirm(Timestamp(9), "10/10 healthy".into());
        assert_eq!((r.finished_at, r.confirmed.as_deref()), (Some(Timestamp(9)), Some("10/10 healthy")));
    }

    #[test]
    fn a_queued_rollback_waits_for_anything_but_a_rollback() {
        let mut queued = Some(("carol".to_string(), "requested by @carol: bad".to_string()));
        assert_eq!(take_queued(&mut queued, &Task::Rollback { started: Timestamp(1) }), None);
        assert!(queued.is_some());
        assert_eq!(take_queued(&mut queued, &Task::DeployStep { index: 0 }).map(|q| q.0), Some("carol".into()));
        assert_eq!(queued, None);
    }
}
