//! The data a release is made of: how it ended, what it waits for, what it ran and who did what.
//! Plain serde types (they are the stored and replayed state); the decisions live with the
//! sub-machines and the release.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::approval::ApprovalRound;
use super::freeze::Freeze;
use super::gates::GateVerdict;
use crate::engine::ids::{JobId, PostKey, ProbeId, ReleaseId, TimerId};
use crate::engine::plan::Plan;
use crate::engine::reports::{BundleReport, InputStatus, JobOutcome, ProbeReport};
use crate::engine::{JobSpec, Strategy, Timestamp, UserRef};

/// A release: the fold of its events. Its behaviour is in `release/mod.rs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// Release id, e.g. `v1.2-production-20261121T233420Z-747a`; also its evidence folder name.
    pub id: ReleaseId,
    /// Version being released, e.g. `v1.2`.
    pub version: String,
    /// Target environment, e.g. `production`.
    pub env: String,
    /// Rollout strategy for the target environment.
    pub strategy: Strategy,
    /// Who typed `/ray deploy`.
    pub started_by: UserRef,
    /// Time of the `Started` event.
    pub started_at: Timestamp,
    /// Time of the latest event.
    pub updated_at: Timestamp,
    /// The frozen protocols and configuration from the `Started` event.
    pub plan: Arc<Plan>,
    /// The step being run.
    pub cursor: Cursor,
    /// What the release is doing or waiting for.
    pub activity: Activity,
    /// Metrics per protocol (index as in the plan).
    pub metrics: Vec<BTreeMap<String, f64>>,
    /// The change freeze of the current (or last) freeze step.
    pub freeze: Freeze,
    /// Every go/no-go round, in order.
    pub rounds: Vec<ApprovalRound>,
    /// Every gate evaluation or waiver, in order.
    pub gates: Vec<GateVerdict>,
    /// Every job started, in order.
    pub jobs: Vec<JobRecord>,
    /// Every probe started, in order.
    pub probes: Vec<ProbeRecord>,
    /// Prerequisite checks: check id → the status of each artifact.
    pub inputs: Vec<(String, Vec<InputStatus>)>,
    /// Bundles written, each once; later prerequisite checks verify zips against these digests.
    pub bundles: Vec<BundleReport>,
    /// Post key → message ids the platform gave it.
    pub posts: BTreeMap<PostKey, Vec<String>>,
    /// Evidence paths (relative to the artifacts directory) written or expected; the final report
    /// bundles them.
    pub evidence: BTreeSet<String>,
    /// Every person's action, accepted or refused.
    pub audit: Vec<AuditEntry>,
    /// Everything raybot posted, in order (the communication log).
    pub communication: Vec<(Timestamp, String)>,
    /// Rollout sub-step of the current deploy step (index into [`Strategy::steps`]).
    pub deploy_index: usize,
    /// A deploy or rollback job was started on the target environment (multi-protocol releases
    /// only): from then on `/ray rollback` replaces `/ray abort`, and `halt: rollback` steps roll back.
    pub production_touched: bool,
    /// The rollback, once one started.
    pub rollback: Option<RollbackRecord>,
    /// `/ray rollback` queued while a job or probe ran: (user id, reason). Picked up at the next
    /// rollout sub-step or validation suite on the target environment.
    pub rollback_requested: Option<(String, String)>,
    /// Waivers: (`<protocol>/<gate>`, user id, justification, when). A waived gate passes unevaluated.
    pub waivers: Vec<(String, String, String, Timestamp)>,
    /// Counter for job, probe, timer, check and bundle ids (`<release>#job4`).
    pub next_id: u64,
    /// Observations of the health window.
    pub soak: Vec<ProbeReport>,
    /// The raybot process that last resumed this release.
    pub last_replica: Option<String>,
    /// Every halt, in order, with its reason (the current one is also the activity): what
    /// stopped the release stays on the record once a retry, waiver or abort moved on.
    #[serde(default)]
    pub halts: Vec<Halt>,
    /// Metrics measured in the current phase: its gate reads only these.
    pub phase_metrics: BTreeMap<String, f64>,
    /// `phase_metrics` as they were when the current step began, restored by `/ray retry`.
    pub metrics_at_step: BTreeMap<String, f64>,
    /// Set while replaying a log: effects are discarded, so texts that only feed effects (message
    /// edits) are not rendered. Never part of the state's meaning.
    #[serde(skip)]
    pub(super) quiet: bool,
}

impl Release {
    /// A release started by `by` at `now`, before its first step: nothing run, nobody asked.
    pub(super) fn new(
        release: &ReleaseId,
        version: &str,
        env: &str,
        strategy: Strategy,
        by: &UserRef,
        plan: &Plan,
        now: Timestamp,
    ) -> Release {
        Release {
            id: release.clone(),
            version: version.to_string(),
            env: env.to_string(),
            strategy,
            started_by: by.clone(),
            started_at: now,
            updated_at: now,
            plan: Arc::new(plan.clone()),
            cursor: Cursor::default(),
            activity: Activity::Idle,
            metrics: vec![BTreeMap::new(); plan.protocols.len()],
            freeze: Freeze::default(),
            rounds: Vec::new(),
            gates: Vec::new(),
            jobs: Vec::new(),
            probes: Vec::new(),
            inputs: Vec::new(),
            bundles: Vec::new(),
            posts: BTreeMap::new(),
            evidence: BTreeSet::new(),
            audit: Vec::new(),
            communication: Vec::new(),
            deploy_index: 0,
            production_touched: false,
            rollback: None,
            rollback_requested: None,
            waivers: Vec::new(),
            next_id: 1,
            soak: Vec::new(),
            last_replica: None,
            halts: Vec::new(),
            phase_metrics: BTreeMap::new(),
            metrics_at_step: BTreeMap::new(),
            quiet: false,
        }
    }
}

/// How a release ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Terminal {
    /// Every protocol completed; the version serves in the target environment.
    Released,
    /// Production was rolled back (automatically or by `/ray rollback`) and the old version serves.
    RolledBack {
        /// What triggered it, e.g. `Production Launch Gate failed: …` or `requested by @carol: …`.
        reason: String,
    },
    /// An approver said no.
    Rejected {
        /// User id of the approver who rejected.
        by: String,
        /// Their `/ray reject` reason.
        reason: String,
    },
    /// An operator stopped the release before production was touched.
    Aborted {
        /// User id of whoever typed `/ray abort`.
        by: String,
        /// Their reason, or `no reason given`.
        reason: String,
    },
}

impl Terminal {
    /// Short outcome for chat, metrics labels and the release index: `released`, `rolled back` ….
    pub fn label(&self) -> &'static str {
        match self {
            Terminal::Released => "released",
            Terminal::RolledBack { .. } => "rolled back",
            Terminal::Rejected { .. } => "rejected",
            Terminal::Aborted { .. } => "aborted",
        }
    }
}

/// What a job or probe result is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum Task {
    /// Sub-step `index` of the rollout strategy.
    DeployStep {
        /// Index into [`Strategy::steps`](crate::engine::Strategy::steps); the job and the probe after it share it.
        index: usize,
    },
    /// Validation suite `index`; the probe after the last suite is `ValidateProbe`.
    Suite {
        /// Index into the environment's `validation` suites.
        index: usize,
    },
    /// The probe after the last validation suite; it completes the `validate` step.
    ValidateProbe,
    /// Probe before the rollback rehearsal: the candidate must be serving for its rollback to
    /// prove anything.
    RehearsalBefore,
    /// Rollback rehearsal: job, probe, then roll forward again.
    Rehearsal {
        /// When the rehearsal began: recovery time is measured from here.
        started: Timestamp,
    },
    /// Probe checking the environment is healthy after the rehearsal's rollback job.
    RehearsalProbe {
        /// When the rehearsal began.
        started: Timestamp,
        /// Run time of the rollback job; recovery is never reported shorter than this.
        job_ms: u64,
    },
    /// Re-deploying the candidate after a successful rehearsal, so later steps test it.
    RollForward {
        /// Measured recovery time, compared with the RTO once the roll-forward succeeds.
        recovery_ms: u64,
        /// The version(s) that took over from the candidate during the rehearsal.
        #[serde(default)]
        previous: String,
    },
    /// Probe after the roll forward: the candidate must serve again.
    RollForwardProbe {
        /// Measured recovery time, compared with the RTO once the candidate serves again.
        recovery_ms: u64,
        /// The version(s) that took over from the candidate during the rehearsal.
        previous: String,
    },
    /// The `security` job; its log tail may carry `blocking_findings=N`.
    Security,
    /// An optional per-environment job (`StepRun::Job`, e.g. `refresh_data`).
    OptionalJob,
    /// Probe whose figures become the observability baseline.
    BaselineProbe,
    /// One probe round of the health window, which ends at `until`.
    SoakProbe {
        /// End of the soak period.
        until: Timestamp,
    },
    /// Rolling the target environment back.
    Rollback {
        /// When the rollback began (the announced duration is measured from here).
        started: Timestamp,
    },
    /// Probe confirming the previous version serves again after the rollback job.
    RollbackProbe {
        /// When the rollback began.
        started: Timestamp,
    },
    /// Rolling staging back after a failed rehearsal gate; then the release halts for `step`.
    RollbackStaging {
        /// Label of the failed gate, used as the halt's step.
        step: String,
        /// The gate's figures, used as the halt reason.
        reason: String,
        /// Id of the failed gate, so `/ray waive` can name it.
        gate: String,
    },
}

/// Where `/ray retry` resumes a halted release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resume {
    /// Run the halted step again.
    Step,
    /// Run the whole phase again (a gate failed).
    Phase,
    /// Run the rollback again.
    Rollback,
    /// Write the final report and evidence bundle again, then end the release with `outcome`
    /// (the release had reached its outcome when writing them failed).
    Finish {
        /// How the release ends once its evidence is written.
        outcome: Terminal,
    },
}

/// Why and where a release stopped to wait for instructions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halt {
    /// Where it stopped, e.g. `Protocol 10 STEP 2.1 Deploy to staging` or `rollback of production`.
    pub step: String,
    /// Why, as posted in the `[RAY ERROR]` message.
    pub reason: String,
    /// Gate that failed, if the halt came from a gate.
    pub gate: Option<String>,
    /// What `/ray retry` runs again.
    pub resume: Resume,
    /// When the release halted.
    pub at: Timestamp,
}

/// What the release is doing or waiting for now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "activity", rename_all = "snake_case")]
pub enum Activity {
    /// Between steps (never observed after `handle` returns).
    Idle,
    /// Waiting for the prerequisite check `check`.
    Inputs {
        /// Id of the [`Effect::CheckInputs`](crate::engine::Effect::CheckInputs) awaited.
        check: String,
    },
    /// Waiting for job `job`; `task` says what its result decides.
    Job {
        /// Id of the running job.
        job: JobId,
        /// What the result is for.
        task: Task,
    },
    /// Waiting for probe `probe`; `task` says what its figures decide.
    Probe {
        /// Id of the running probe.
        probe: ProbeId,
        /// What the figures are for.
        task: Task,
    },
    /// Building a bundle; `finish` ends the release afterwards.
    Bundle {
        /// Id of the [`Effect::Bundle`](crate::engine::Effect::Bundle) awaited.
        bundle: String,
        /// Set when this is the final report bundle of an ending release.
        finish: Option<Terminal>,
    },
    /// Waiting for change-freeze acknowledgements.
    Acks {
        /// Timer of the next reminder to the people still missing.
        reminder: TimerId,
    },
    /// Waiting for go/no-go approvals of round `round`.
    Approval {
        /// Index into [`Release::rounds`](super::Release::rounds).
        round: usize,
        /// Timer of the next reminder to the roles still missing.
        reminder: TimerId,
    },
    /// Health window: probes until `until`.
    Soak {
        /// End of the health window.
        until: Timestamp,
        /// Timer of the next probe round.
        timer: TimerId,
    },
    /// Stopped; waits for `/ray retry`, `/ray waive`, `/ray rollback` or `/ray abort`.
    Halted(Halt),
    /// Over; only `/ray status` is still answered.
    Ended(Terminal),
}

impl Activity {
    /// Short human text for `/ray status` and the release index.
    pub fn label(&self) -> String {
        match self {
            Activity::Idle => "starting".into(),
            Activity::Inputs { .. } => "checking prerequisites".into(),
            Activity::Job { .. } => "running a job".into(),
            Activity::Probe { .. } => "probing".into(),
            Activity::Bundle { .. } => "writing evidence".into(),
            Activity::Acks { .. } => "awaiting freeze acknowledgements".into(),
            Activity::Approval { .. } => "awaiting approval".into(),
            Activity::Soak { .. } => "monitoring health window".into(),
            Activity::Halted(_) => "halted, awaiting instructions".into(),
            Activity::Ended(t) => t.label().into(),
        }
    }

    /// True when the release waits for people (acks, approvals, instructions) or has ended.
    pub fn needs_people(&self) -> bool {
        matches!(self, Activity::Acks { .. } | Activity::Approval { .. } | Activity::Halted(_) | Activity::Ended(_))
    }
}

/// A job run and its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Job id, `<release>#job<n>`.
    pub id: JobId,
    /// What it was for, e.g. `deploy production 50%`; evidence filters on these prefixes.
    pub purpose: String,
    /// Environment it ran against.
    pub env: String,
    /// The expanded command line.
    pub argv: Vec<String>,
    /// Log file relative to the release's artifacts directory.
    pub log: String,
    /// When it was started.
    pub started_at: Timestamp,
    /// `None` while running (or if raybot stopped before it reported).
    pub outcome: Option<JobOutcome>,
    /// When its outcome arrived.
    pub finished_at: Option<Timestamp>,
    /// What was asked to run (queued again when another replica takes the release over).
    #[serde(skip)]
    pub spec: Option<JobSpec>,
}

/// A probe run and its figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeRecord {
    /// Probe id, `<release>#probe<n>`.
    pub id: ProbeId,
    /// What it was for, e.g. `after deploy production 50%`, `health window production`.
    pub purpose: String,
    /// Environment probed.
    pub env: String,
    /// When it was started.
    pub started_at: Timestamp,
    /// `None` until the figures arrive.
    pub report: Option<ProbeReport>,
}

/// One action by a person, accepted or refused: the release's audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When it happened.
    pub at: Timestamp,
    /// Platform user id.
    pub who: String,
    /// What was done, or for refusals `<action>: <why it was refused>`.
    pub what: String,
    /// False for refusals (reported in the deployment report).
    pub accepted: bool,
}

impl AuditEntry {
    /// An action by `who` at `at` that the access check let through.
    pub(crate) fn accepted(at: Timestamp, who: &str, what: String) -> AuditEntry {
        AuditEntry { at, who: who.to_string(), what, accepted: true }
    }
}

/// A rollback of the target environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackRecord {
    /// Environment rolled back (the release's target).
    pub env: String,
    /// Why, e.g. `Production Launch Gate failed: …`.
    pub reason: String,
    /// `automatic`, or the user id of who asked for it.
    pub trigger: String,
    /// When the rollback job was started.
    pub started_at: Timestamp,
    /// When the probe confirmed the previous version serves again.
    pub finished_at: Option<Timestamp>,
    /// Summary of that confirming probe.
    pub confirmed: Option<String>,
}

/// Where the walk goes after a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Advance {
    /// The next phase of the same protocol.
    Phase,
    /// The first phase of the next protocol.
    Protocol,
    /// That was the last phase of the last protocol: the cursor stays on the last step.
    Released,
}

impl Cursor {
    /// Moves past the current phase of `plan`.
    pub(crate) fn next_phase(&mut self, plan: &Plan) -> Advance {
        self.phase += 1;
        self.step = 0;
        if self.phase < plan.protocols[self.protocol].phases.len() {
            return Advance::Phase;
        }
        self.protocol += 1;
        self.phase = 0;
        if self.protocol < plan.protocols.len() {
            return Advance::Protocol;
        }
        self.protocol = plan.protocols.len() - 1;
        let phases = &plan.protocols[self.protocol].phases;
        self.phase = phases.len() - 1;
        self.step = phases[self.phase].steps.len().saturating_sub(1);
        Advance::Released
    }
}

/// Protocol/phase/step position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Index into [`Plan::protocols`](crate::engine::Plan::protocols).
    pub protocol: usize,
    /// Index into the protocol's phases.
    pub phase: usize,
    /// Index into the phase's steps.
    pub step: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testkit::sample_plan;

    #[test]
    fn the_cursor_walks_phases_then_protocols_and_stays_on_the_last_step() {
        let plan = sample_plan("production");
        let mut c = Cursor::default();
        let mut seen = Vec::new();
        loop {
            let advance = c.next_phase(&plan);
            seen.push(advance);
            if advance == Advance::Released {
                break;
            }
            assert_eq!(c.step, 0);
        }
        let phases: usize = plan.protocols.iter().map(|p| p.phases.len()).sum();
        assert_eq!(seen.len(), phases);
        assert_eq!(seen.iter().filter(|a| **a == Advance::Protocol).count(), plan.protocols.len() - 1);
        let last = plan.protocols.last().and_then(|p| p.phases.last()).map(|ph| ph.steps.len() - 1);
        assert_eq!((c.protocol, Some(c.step)), (plan.protocols.len() - 1, last));
    }
}
