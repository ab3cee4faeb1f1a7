//! The rollback rehearsal step as a sub-machine. A rehearsal proves a rollback, it does not
//! assume one: probe that the candidate serves, roll the environment back, probe that the
//! previous version took over (the candidate serves no request), roll the candidate forward
//! again, probe that it serves again, then hold the recovery time against the RTO. Any probe that
//! cannot show this by the served version fails the rehearsal.
//!
//! A leaf: each reading returns a [`Rehearsal`]; the release writes the rehearsal evidence,
//! records `recovery_seconds`, posts and starts the next job or probe.

use crate::engine::Timestamp;
use crate::engine::plan::{PROVEN_REHEARSAL, ProbeSettings};
use crate::engine::reports::{JobOutcome, ProbeReport};

use super::jobs::JobAsk;
use super::rollback;
use super::rollout;
use super::state::Task;
use super::steps::{Next, Setting};

/// Purpose of the probe before the rehearsal's rollback job (the step starts with it).
pub(crate) use super::steps::REHEARSAL_BEFORE as BEFORE;
/// Purpose of the probe after the rehearsal's rollback job.
pub(crate) const AFTER_ROLLBACK: &str = "after rollback rehearsal";
/// Purpose of the probe after the candidate was rolled forward again.
pub(crate) const AFTER_ROLL_FORWARD: &str = "after roll forward";

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
    /// The candidate serves again; the previous version had taken over `recovery_ms` after the
    /// rollback began.
    Recovered {
        /// Measured recovery time.
        recovery_ms: u64,
        /// The note posted under the step.
        note: String,
        /// Done, or failed when recovery took longer than the RTO.
        next: Next,
    },
}

impl Rehearsal {
    fn failed(reason: String) -> Rehearsal {
        Rehearsal::Failed { evidence: Some(reason.clone()), reason }
    }
}

/// Whether `version` serves (nearly) every answer of a healthy environment.
fn serves(settings: &ProbeSettings, report: &ProbeReport, version: &str) -> bool {
    rollout::healthy(settings, report) && report.version_share(version) + 1e-9 >= settings.min_success_rate
}

/// The versions other than `version` that answered, e.g. `v1.1`.
fn others(report: &ProbeReport, version: &str) -> String {
    let v: Vec<&str> = report.versions.keys().map(String::as_str).filter(|v| *v != version).collect();
    if v.is_empty() { "no version".to_string() } else { v.join(", ") }
}

/// The probe before the rollback job, at `now`: the rollback is rehearsed only from the candidate
/// `version` serving on `env`; an environment that names no served version, or serves another
/// one, fails the rehearsal (a rollback from it would prove nothing). `None` when `env` is not
/// configured.
pub(crate) fn before_rollback(
    s: Setting<'_>,
    env: &str,
    version: &str,
    report: &ProbeReport,
    now: Timestamp,
) -> Option<Rehearsal> {
    let e = s.plan.environment(env)?;
    if e.probe.version_header.is_none() {
        return Some(Rehearsal::failed(format!(
            "cannot prove a rollback on {env}: its probe names no `version_header`, so the served version is unknown"
        )));
    }
    if !serves(&e.probe, report, version) {
        let summary = rollout::summary(report);
        return Some(Rehearsal::failed(format!(
            "cannot rehearse the rollback on {env}: {version} is not serving there ({summary}), so rolling it back would prove nothing"
        )));
    }
    let log = s.path(&format!("{env}-rollback-rehearsal.log"));
    let ask = JobAsk::new(env, format!("rollback rehearsal {env}"), &e.rollback, log).at(0);
    Some(Rehearsal::Go(Next::Job { ask, task: Task::Rehearsal { started: now }, note: None }))
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
        purpose: format!("{AFTER_ROLLBACK} {env}"),
        task: Task::RehearsalProbe { started, job_ms: outcome.duration_ms },
    })
}

/// The probe after the rollback job, at `now`: the previous version must serve every answer,
/// healthy, and the candidate `version` none; then the candidate is rolled forward again.
/// `None` when `env` is not configured.
pub(crate) fn after_probe(
    s: Setting<'_>,
    env: &str,
    version: &str,
    report: &ProbeReport,
    (started, job_ms): (Timestamp, u64),
    now: Timestamp,
) -> Option<Rehearsal> {
    let e = s.plan.environment(env)?;
    let summary = rollout::summary(report);
    if !rollout::healthy(&e.probe, report) {
        return Some(Rehearsal::failed(format!("{env} unhealthy after the rollback rehearsal: {summary}")));
    }
    let proven = rollback::restored(&e.probe, report, version) && !report.versions.is_empty();
    if s.plan.under(PROVEN_REHEARSAL) && !proven {
        return Some(Rehearsal::failed(format!(
            "the rollback rehearsal changed nothing on {env}: {version} still serves after the rollback job ({summary})"
        )));
    }
    // Recovery is never reported shorter than the rollback job itself took.
    let recovery_ms = now.0.saturating_sub(started.0).max(job_ms);
    // Restore the candidate so that later checks see the version under release.
    let log = s.path(&format!("{env}-rollback-rehearsal.log"));
    let ask = JobAsk::new(env, format!("roll forward {env}"), &e.deploy, log);
    let task = Task::RollForward { recovery_ms, previous: others(report, version) };
    Some(Rehearsal::Go(Next::Job { ask, task, note: None }))
}

/// The candidate `version` was deployed to `env` again (`previous` had taken over after
/// `recovery_ms`): probe that it serves, or fail.
pub(crate) fn after_roll_forward(
    env: &str,
    version: &str,
    outcome: &JobOutcome,
    recovery_ms: u64,
    previous: &str,
) -> Rehearsal {
    if !outcome.succeeded() {
        let reason = format!("re-deploying {version} to {env} after the rehearsal failed ({})", outcome.summary());
        return Rehearsal::failed(reason);
    }
    Rehearsal::Go(Next::Probe {
        env: env.to_string(),
        purpose: format!("{AFTER_ROLL_FORWARD} {env}"),
        task: Task::RollForwardProbe { recovery_ms, previous: previous.to_string() },
    })
}

/// The probe after the roll forward: the candidate must serve again; then recovered, and within
/// the `rto` (seconds) or not. `None` when `env` is not configured.
pub(crate) fn after_roll_forward_probe(
    s: Setting<'_>,
    env: &str,
    version: &str,
    report: &ProbeReport,
    (recovery_ms, previous): (u64, &str),
    rto: f64,
) -> Option<Rehearsal> {
    let e = s.plan.environment(env)?;
    if !serves(&e.probe, report, version) {
        let summary = rollout::summary(report);
        return Some(Rehearsal::failed(format!(
            "{version} is not serving on {env} after the rehearsal's roll forward: {summary}"
        )));
    }
    let secs = recovery_ms as f64 / 1000.0;
    let note = format!(
        "Rollback rehearsal on {env}: {version} was serving; {previous} took over in {secs:.1}s (RTO {rto}s); {version} serves again."
    );
    Some(recovered(recovery_ms, note, rto))
}

/// Under rules before [`PROVEN_REHEARSAL`]: the roll forward of `version` to `env` ended, and the
/// rehearsal counted as recovered once it succeeded.
pub(crate) fn after_unproven_roll_forward(
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
    recovered(
        recovery_ms,
        format!("Rollback rehearsal on {env}: recovered in {secs:.1}s (RTO {rto}s); {version} restored."),
        rto,
    )
}

/// Recovered after `recovery_ms`, within the `rto` (seconds) or not.
fn recovered(recovery_ms: u64, note: String, rto: f64) -> Rehearsal {
    let secs = recovery_ms as f64 / 1000.0;
    let next =
        if secs > rto { Next::Failed(format!("recovery took {secs:.1}s, over the RTO of {rto}s")) } else { Next::Done };
    Rehearsal::Recovered { recovery_ms, note, next }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Strategy;
    use crate::engine::testkit::{probe_report, sample_plan};

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

    fn reason(r: Option<Rehearsal>) -> String {
        match r {
            Some(Rehearsal::Failed { reason, evidence }) => {
                assert_eq!(evidence.as_deref(), Some(reason.as_str()), "the evidence records the failure");
                reason
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn the_rollback_is_rehearsed_only_from_the_candidate_serving() {
        let plan = sample_plan("production");
        let s = Setting { plan: &plan, protocol: &plan.protocols[0], target: "production", strategy: Strategy::Canary };
        let Some(Rehearsal::Go(Next::Job { ask, task, .. })) =
            before_rollback(s, "staging", "v1.2", &probe_report(10, &[("v1.2", 10)]), Timestamp(7))
        else {
            panic!("the candidate serves: its rollback runs")
        };
        assert_eq!(
            (ask.purpose.as_str(), ask.percent, task),
            ("rollback rehearsal staging", 0, Task::Rehearsal { started: Timestamp(7) })
        );
        // Staging still on the previous version (a waived rehearsal gate rolled it back).
        let old = before_rollback(s, "staging", "v1.2", &probe_report(10, &[("v1.1", 10)]), Timestamp(7));
        assert_eq!(
            reason(old),
            "cannot rehearse the rollback on staging: v1.2 is not serving there (10/10 healthy (100%), p95 5 ms, \
             serving v1.1×10), so rolling it back would prove nothing"
        );
        let mut blind = plan.clone();
        blind.environments.get_mut("staging").unwrap().probe.version_header = None;
        let s = Setting { plan: &blind, ..s };
        let r = before_rollback(s, "staging", "v1.2", &probe_report(10, &[]), Timestamp(7));
        assert!(reason(r).contains("names no `version_header`"));
        assert_eq!(before_rollback(s, "moon", "v1.2", &probe_report(10, &[]), Timestamp(7)), None);
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
    fn the_previous_version_must_take_over_before_the_candidate_rolls_forward() {
        let plan = sample_plan("production");
        let s = Setting { plan: &plan, protocol: &plan.protocols[0], target: "production", strategy: Strategy::Canary };
        let took_over = probe_report(10, &[("v1.1", 10)]);
        let Some(Rehearsal::Go(Next::Job { ask, task, .. })) =
            after_probe(s, "staging", "v1.2", &took_over, (Timestamp(1_000), 500), Timestamp(4_000))
        else {
            panic!("the previous version took over: the candidate is rolled forward")
        };
        assert_eq!(ask.purpose, "roll forward staging");
        assert_eq!(task, Task::RollForward { recovery_ms: 3_000, previous: "v1.1".into() });
        // A rollback script that changed nothing: the candidate still answers.
        let unchanged = after_probe(
            s,
            "staging",
            "v1.2",
            &probe_report(10, &[("v1.2", 10)]),
            (Timestamp(1_000), 500),
            Timestamp(4_000),
        );
        assert!(reason(unchanged).starts_with("the rollback rehearsal changed nothing on staging: v1.2 still serves"));
        let half = after_probe(
            s,
            "staging",
            "v1.2",
            &probe_report(10, &[("v1.1", 9), ("v1.2", 1)]),
            (Timestamp(1_000), 500),
            Timestamp(4_000),
        );
        assert!(reason(half).contains("changed nothing"));
        let unhealthy =
            after_probe(s, "staging", "v1.2", &probe_report(0, &[("v1.1", 10)]), (Timestamp(0), 0), Timestamp(9));
        assert!(reason(unhealthy).starts_with("staging unhealthy"));
    }

    #[test]
    fn recovery_counts_only_once_the_candidate_serves_again_and_within_the_rto() {
        let plan = sample_plan("production");
        let s = Setting { plan: &plan, protocol: &plan.protocols[0], target: "production", strategy: Strategy::Canary };
        let Rehearsal::Go(Next::Probe { task, purpose, .. }) =
            after_roll_forward("staging", "v1.2", &outcome(0, 1), 30_000, "v1.1")
        else {
            panic!("a roll forward is probed")
        };
        assert_eq!(purpose, "after roll forward staging");
        assert_eq!(task, Task::RollForwardProbe { recovery_ms: 30_000, previous: "v1.1".into() });
        assert!(matches!(
            after_roll_forward("staging", "v1.2", &outcome(2, 1), 30_000, "v1.1"),
            Rehearsal::Failed { evidence: Some(_), .. }
        ));
        let back = probe_report(10, &[("v1.2", 10)]);
        let Some(Rehearsal::Recovered { next, note, .. }) =
            after_roll_forward_probe(s, "staging", "v1.2", &back, (90_000, "v1.1"), 60.0)
        else {
            panic!()
        };
        assert_eq!(next, Next::Failed("recovery took 90.0s, over the RTO of 60s".into()));
        assert_eq!(
            note,
            "Rollback rehearsal on staging: v1.2 was serving; v1.1 took over in 90.0s (RTO 60s); v1.2 serves again."
        );
        let Some(Rehearsal::Recovered { next, .. }) =
            after_roll_forward_probe(s, "staging", "v1.2", &back, (30_000, "v1.1"), 60.0)
        else {
            panic!()
        };
        assert_eq!(next, Next::Done);
        let stuck =
            after_roll_forward_probe(s, "staging", "v1.2", &probe_report(10, &[("v1.1", 10)]), (1, "v1.1"), 60.0);
        assert!(reason(stuck).starts_with("v1.2 is not serving on staging after the rehearsal's roll forward"));
    }
}
