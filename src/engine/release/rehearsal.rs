//! The rollback rehearsal step as a sub-machine: roll the environment back, probe that it is
//! healthy, roll the candidate forward again, then hold the recovery time against the RTO.
//!
//! A leaf: each reading returns a [`Rehearsal`]; the release writes the rehearsal evidence,
//! records `recovery_seconds`, posts and starts the next job or probe.

use crate::engine::Timestamp;
use crate::engine::reports::{JobOutcome, ProbeReport};

use super::jobs::JobAsk;
use super::rollout;
use super::state::Task;
use super::steps::{Next, Setting};

/// What a result of the rehearsal means.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Rehearsal {
    /// The rehearsal failed: `reason` meets the step's halt condition; `evidence`, when set, is
    /// the failure the rehearsal evidence records.
    Failed {
        /// Why, for the halt.
        reason: String,
        /// The failure for the evidence file; `None` writes none.
        evidence: Option<String>,
    },
    /// Go on with the next job or probe of the rehearsal.
    Go(Next),
    /// The candidate serves again `recovery_ms` after the rehearsal began.
    Recovered {
        /// Measured recovery time.
        recovery_ms: u64,
        /// The note posted under the step.
        note: String,
        /// Done, or failed when recovery took longer than the RTO.
        next: Next,
    },
}

/// The rollback job on `env` ended: probe the environment, or fail with the job's summary.
pub(crate) fn after_rollback_job(env: &str, started: Timestamp, outcome: &JobOutcome) -> Rehearsal {
    if !outcome.succeeded() {
        let summary = outcome.summary();
        return Rehearsal::Failed {
            reason: format!("rollback job on {env} failed ({summary})"),
            evidence: Some(summary),
        };
    }
    Rehearsal::Go(Next::Probe {
        env: env.to_string(),
        purpose: format!("after rollback rehearsal {env}"),
        task: Task::RehearsalProbe { started, job_ms: outcome.duration_ms },
    })
}

/// The probe after the rollback job, at `now`: an unhealthy environment fails the rehearsal, a
/// healthy one is rolled forward to the candidate again. `None` when `env` is not configured.
pub(crate) fn after_probe(
    s: Setting<'_>,
    env: &str,
    report: &ProbeReport,
    started: Timestamp,
    job_ms: u64,
    now: Timestamp,
) -> Option<Rehearsal> {
    let e = s.plan.environment(env)?;
    if !rollout::healthy(&e.probe, report) {
        let summary = rollout::summary(report);
        return Some(Rehearsal::Failed {
            reason: format!("{env} unhealthy after the rollback rehearsal: {summary}"),
            evidence: Some(summary),
        });
    }
    // Recovery is never reported shorter than the rollback job itself took.
    let recovery_ms = now.0.saturating_sub(started.0).max(job_ms);
    // Restore the candidate so that later checks see the version under release.
    let log = s.path(&format!("{env}-rollback-rehearsal.log"));
    let ask = JobAsk::new(env, format!("roll forward {env}"), &e.deploy, log);
    Some(Rehearsal::Go(Next::Job { ask, task: Task::RollForward { recovery_ms }, note: None }))
}

/// The candidate `version` was deployed to `env` again: recovered, and within `rto` seconds or not.
pub(crate) fn after_roll_forward(
    env: &str,
    version: &str,
    outcome: &JobOutcome,
    recovery_ms: u64,
    rto: f64,
) -> Rehearsal {
    if !outcome.succeeded() {
        let reason = format!("re-deploying {version} to {env} after the rehearsal failed ({})", outcome.summary());
        return Rehearsal::Failed { reason, evidence: None };
    }
    let secs = recovery_ms as f64 / 1000.0;
    let note = format!("Rollback rehearsal on {env}: recovered in {secs:.1}s (RTO {rto}s); {version} restored.");
    let next =
        if secs > rto { Next::Failed(format!("recovery took {secs:.1}s, over the RTO of {rto}s")) } else { Next::Done };
    Rehearsal::Recovered { recovery_ms, note, next }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Strategy;
    use crate::engine::testkit::sample_plan;

    fn outcome(exit: i32, ms: u64) -> JobOutcome {
        JobOutcome {
            exit_code: Some(exit),
            timed_out: false,
            duration_ms: ms,
            spawn_error: None,
            log_tail: Vec::new(),
            report: None,
        }
    }

    fn report(ok: u32) -> ProbeReport {
        crate::engine::testkit::probe_report(ok, &[])
    }

    #[test]
    fn a_failed_rollback_job_fails_the_rehearsal_and_records_why() {
        let r = after_rollback_job("staging", Timestamp(0), &outcome(1, 2_000));
        assert_eq!(
            r,
            Rehearsal::Failed {
                reason: "rollback job on staging failed (exit 1 in 2.0s)".into(),
                evidence: Some("exit 1 in 2.0s".into())
            }
        );
        let Rehearsal::Go(Next::Probe { task, .. }) = after_rollback_job("staging", Timestamp(5), &outcome(0, 2_000))
        else {
            panic!("a good rollback job is probed")
        };
        assert_eq!(task, Task::RehearsalProbe { started: Timestamp(5), job_ms: 2_000 });
    }

    #[test]
    fn a_healthy_probe_rolls_forward_and_recovery_counts_from_the_start() {
        let plan = sample_plan("production");
        let s = Setting { plan: &plan, protocol: &plan.protocols[0], target: "production", strategy: Strategy::Canary };
        let Some(Rehearsal::Go(Next::Job { ask, task, .. })) =
            after_probe(s, "staging", &report(10), Timestamp(1_000), 500, Timestamp(4_000))
        else {
            panic!("a healthy environment is rolled forward")
        };
        assert_eq!((ask.purpose.as_str(), task), ("roll forward staging", Task::RollForward { recovery_ms: 3_000 }));
        let unhealthy = after_probe(s, "staging", &report(0), Timestamp(1_000), 500, Timestamp(4_000));
        assert!(matches!(unhealthy, Some(Rehearsal::Failed { reason, .. }) if reason.starts_with("staging unhealthy")));
        assert_eq!(after_probe(s, "moon", &report(10), Timestamp(0), 0, Timestamp(1)), None);
    }

    #[test]
    fn recovery_over_the_rto_fails_the_step_with_the_figure() {
        let Rehearsal::Recovered { next, note, .. } =
            after_roll_forward("staging", "v1.2", &outcome(0, 1), 90_000, 60.0)
        else {
            panic!()
        };
        assert_eq!(next, Next::Failed("recovery took 90.0s, over the RTO of 60s".into()));
        assert_eq!(note, "Rollback rehearsal on staging: recovered in 90.0s (RTO 60s); v1.2 restored.");
        let Rehearsal::Recovered { next, .. } = after_roll_forward("staging", "v1.2", &outcome(0, 1), 30_000, 60.0)
        else {
            panic!()
        };
        assert_eq!(next, Next::Done);
        assert!(matches!(
            after_roll_forward("staging", "v1.2", &outcome(2, 1), 30_000, 60.0),
            Rehearsal::Failed { evidence: None, .. }
        ));
    }
}
