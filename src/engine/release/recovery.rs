//! Recovery after a restart or a takeover, and after a job whose process was lost.
//!
//! A leaf: [`recover`] reads what the release was waiting for and says how to pick it up again;
//! the release posts, probes, queues and halts accordingly.

use crate::engine::{JobId, JobSpec, Timestamp};
use crate::protocol::model::StepRun;

use super::state::{Activity, JobRecord, Resume, Task, Terminal};

/// How a release picks up what it was waiting for when a process takes it over.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Recovery {
    /// Queue the awaited job again: the shared queue runs it once, or reports it lost.
    Requeue(JobSpec),
    /// The awaited job ran in the stopped process and will never report: halt.
    JobUnknown {
        /// Id of the awaited job.
        job: JobId,
        /// What its result was for.
        task: Task,
    },
    /// Probe `env` again for `task`: probes only read, so running them twice is harmless.
    Reprobe {
        /// Environment to probe.
        env: String,
        /// What the figures are for.
        task: Task,
    },
    /// Enter the current step again (prerequisite checks and bundles are idempotent).
    Rerun,
    /// End the release again: the final report bundle never reported.
    Finish(Terminal),
    /// Post the freeze request again (reactions on the old message may be lost).
    Refreeze,
    /// Post go/no-go request `round` again.
    Reapprove {
        /// Index into the release's rounds.
        round: usize,
    },
    /// Probe the health window at once, then go on until `until`.
    Resoak {
        /// End of the health window.
        until: Timestamp,
    },
    /// Halted or ended: nothing was running.
    Nothing,
}

/// How to pick up `activity`. `jobs_queued` is set when jobs go through a shared queue (they
/// survive the process that queued them); `step` is the current step's work, `None` past the last
/// step of a phase (a failed phase gate); `target` is the release's target environment.
pub(crate) fn recover(
    activity: &Activity,
    jobs: &[JobRecord],
    jobs_queued: bool,
    step: Option<&StepRun>,
    target: &str,
) -> Recovery {
    match activity {
        Activity::Job { job, task } => match jobs.iter().find(|j| &j.id == job).and_then(|j| j.spec.clone()) {
            Some(spec) if jobs_queued => Recovery::Requeue(spec),
            _ => Recovery::JobUnknown { job: job.clone(), task: task.clone() },
        },
        Activity::Probe { task, .. } => {
            let env = match (task, step) {
                (Task::RollbackProbe { .. }, _) => target,
                (
                    _,
                    Some(
                        StepRun::Deploy { env }
                        | StepRun::Validate { env }
                        | StepRun::RollbackRehearsal { env }
                        | StepRun::Baseline { env }
                        | StepRun::HealthWindow { env },
                    ),
                ) => env,
                _ => target,
            };
            Recovery::Reprobe { env: env.to_string(), task: task.clone() }
        }
        Activity::Inputs { .. } | Activity::Idle | Activity::Bundle { finish: None, .. } => Recovery::Rerun,
        Activity::Bundle { finish: Some(outcome), .. } => Recovery::Finish(outcome.clone()),
        Activity::Acks { .. } => Recovery::Refreeze,
        Activity::Approval { round, .. } => Recovery::Reapprove { round: *round },
        Activity::Soak { until, .. } => Recovery::Resoak { until: *until },
        Activity::Halted(_) | Activity::Ended(_) => Recovery::Nothing,
    }
}

/// Where a release halts when the job it waits for (for `task`) will never report, and what
/// `/ray retry` then runs: the rollback again, or the step (`step` names it with the job's
/// purpose).
pub(crate) fn lost_job_halt(task: &Task, target: &str, step: String) -> (String, Resume) {
    match task {
        Task::Rollback { .. } => (format!("rollback of {target}"), Resume::Rollback),
        _ => (step, Resume::Step),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::reports::JobOutcome;

    fn job(id: &str, spec: bool) -> JobRecord {
        JobRecord {
            id: id.into(),
            purpose: "deploy production 0%".into(),
            env: "production".into(),
            argv: Vec::new(),
            log: "l".into(),
            started_at: Timestamp(1),
            outcome: None::<JobOutcome>,
            finished_at: None,
            spec: spec.then(|| JobSpec {
                id: id.into(),
                purpose: "deploy production 0%".into(),
                argv: Vec::new(),
                env: Vec::new(),
                timeout_ms: 1,
                log: "l".into(),
                report: None,
            }),
        }
    }

    fn deploy() -> Option<&'static StepRun> {
        static DEPLOY: std::sync::OnceLock<StepRun> = std::sync::OnceLock::new();
        Some(DEPLOY.get_or_init(|| StepRun::Deploy { env: "staging".into() }))
    }

    #[test]
    fn a_queued_job_is_queued_again_and_any_other_is_unknown() {
        let waiting = Activity::Job { job: "r#job1".into(), task: Task::DeployStep { index: 0 } };
        let with_spec = [job("r#job1", true)];
        assert!(
            matches!(recover(&waiting, &with_spec, true, deploy(), "production"), Recovery::Requeue(s) if s.id == "r#job1")
        );
        let unknown = Recovery::JobUnknown { job: "r#job1".into(), task: Task::DeployStep { index: 0 } };
        assert_eq!(recover(&waiting, &with_spec, false, deploy(), "production"), unknown);
        // After a replay the spec is gone (it is not stored): the outcome is unknown.
        assert_eq!(recover(&waiting, &[job("r#job1", false)], true, deploy(), "production"), unknown);
    }

    #[test]
    fn probes_run_again_against_the_step_environment_or_the_target_for_rollbacks() {
        let deploy_probe = Activity::Probe { probe: "p".into(), task: Task::DeployStep { index: 1 } };
        assert_eq!(
            recover(&deploy_probe, &[], false, deploy(), "production"),
            Recovery::Reprobe { env: "staging".into(), task: Task::DeployStep { index: 1 } }
        );
        let rollback_probe = Activity::Probe { probe: "p".into(), task: Task::RollbackProbe { started: Timestamp(1) } };
        assert!(matches!(
            recover(&rollback_probe, &[], false, deploy(), "production"),
            Recovery::Reprobe { env, .. } if env == "production"
        ));
    }

    #[test]
    fn people_are_asked_again_and_halts_stay_halted() {
        assert_eq!(recover(&Activity::Acks { reminder: "t".into() }, &[], false, deploy(), "p"), Recovery::Refreeze);
        assert_eq!(
            recover(&Activity::Approval { round: 2, reminder: "t".into() }, &[], false, deploy(), "p"),
            Recovery::Reapprove { round: 2 }
        );
        assert_eq!(recover(&Activity::Ended(Terminal::Released), &[], false, deploy(), "p"), Recovery::Nothing);
        assert_eq!(
            recover(
                &Activity::Bundle { bundle: "b".into(), finish: Some(Terminal::Released) },
                &[],
                false,
                deploy(),
                "p"
            ),
            Recovery::Finish(Terminal::Released)
        );
    }

    #[test]
    fn a_lost_rollback_job_halts_the_rollback_and_any_other_the_step() {
        let (step, resume) = lost_job_halt(&Task::Rollback { started: Timestamp(1) }, "production", "x".into());
        assert_eq!((step.as_str(), resume), ("rollback of production", Resume::Rollback));
        let (step, resume) = lost_job_halt(&Task::Security, "production", "STEP 1 (security scan)".into());
        assert_eq!((step.as_str(), resume), ("STEP 1 (security scan)", Resume::Step));
    }
}
