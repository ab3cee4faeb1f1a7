//! A release's state and its transitions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::expr::Threshold;
use super::io::{BundleReport, InputStatus, JobOutcome, ProbeReport};
use super::plan::{Environment, JobTemplate, Plan};
use super::{
    Ask, Button, Effect, Event, InputSpec, JobSpec, ProbeSpec, ReleaseCommand, Strategy, Timestamp, UserRef, ray_error,
};
use crate::protocol::model::{GateFailure, HaltKind, Level, Phase, Protocol, Step, StepRun};

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
        /// Index into [`Strategy::steps`]; the job and the probe after it share it.
        index: usize,
    },
    /// Validation suite `index`; the probe after the last suite is `ValidateProbe`.
    Suite {
        /// Index into the environment's `validation` suites.
        index: usize,
    },
    /// The probe after the last validation suite; it completes the `validate` step.
    ValidateProbe,
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
        /// Id of the [`Effect::CheckInputs`] awaited.
        check: String,
    },
    /// Waiting for job `job`; `task` says what its result decides.
    Job {
        /// Id of the running job.
        job: String,
        /// What the result is for.
        task: Task,
    },
    /// Waiting for probe `probe`; `task` says what its figures decide.
    Probe {
        /// Id of the running probe.
        probe: String,
        /// What the figures are for.
        task: Task,
    },
    /// Building a bundle; `finish` ends the release afterwards.
    Bundle {
        /// Id of the [`Effect::Bundle`] awaited.
        bundle: String,
        /// Set when this is the final report bundle of an ending release.
        finish: Option<Terminal>,
    },
    /// Waiting for change-freeze acknowledgements.
    Acks {
        /// Timer of the next reminder to the people still missing.
        reminder: String,
    },
    /// Waiting for go/no-go approvals of round `round`.
    Approval {
        /// Index into [`Release::rounds`].
        round: usize,
        /// Timer of the next reminder to the roles still missing.
        reminder: String,
    },
    /// Health window: probes until `until`.
    Soak {
        /// End of the health window.
        until: Timestamp,
        /// Timer of the next probe round.
        timer: String,
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

/// One approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Platform user id of the approver.
    pub user: String,
    /// Display name from `release-approvers.yaml`, for the evidence.
    pub name: String,
    /// The approver's roles that this round requires.
    pub roles: Vec<String>,
    /// When they approved.
    pub at: Timestamp,
    /// The `/ray approve` comment, if any (buttons carry none).
    pub comment: Option<String>,
    /// `command` or `button`.
    pub via: String,
}

/// A go/no-go round (one approval step).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRound {
    /// Protocol id, e.g. `10`.
    pub protocol: String,
    /// Id of the approval step.
    pub step: String,
    /// Required roles; each must be covered by a different approver.
    pub roles: Vec<String>,
    /// Approvals so far, in order.
    pub approvals: Vec<Approval>,
    /// When the request was posted.
    pub opened_at: Timestamp,
    /// `approved` or `rejected` once decided.
    pub decision: Option<String>,
    /// When the decision fell.
    pub decided_at: Option<Timestamp>,
}

/// The change freeze.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freeze {
    /// User ids of everyone holding a freeze role; all must acknowledge.
    pub required: Vec<String>,
    /// User id → when and how (`command` or `reaction`) they acknowledged.
    pub acks: BTreeMap<String, (Timestamp, String)>,
    /// When the freeze was announced.
    pub opened_at: Option<Timestamp>,
    /// When the last required acknowledgement arrived.
    pub confirmed_at: Option<Timestamp>,
    /// Reminders posted so far (a retrospective input).
    pub reminders: u32,
}

/// Result of a gate evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every clause of the threshold held.
    Passed,
    /// A clause failed or read an unmeasured metric; the gate's `on_failure` applied.
    Failed,
    /// Accepted by `/ray waive`; the figures were not evaluated.
    Waived {
        /// User id of who waived it.
        by: String,
        /// Their justification.
        justification: String,
    },
}

/// A gate evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateVerdict {
    /// Protocol id, e.g. `11`.
    pub protocol: String,
    /// Gate id, e.g. `launch`.
    pub gate: String,
    /// Gate name, e.g. `Production Launch Gate`.
    pub name: String,
    /// The threshold expression evaluated, e.g. `coverage >= 0.90 and blocking_errors == 0`.
    pub threshold: String,
    /// Per clause: its text, the measured value (`None` if never measured) and whether it held.
    pub clauses: Vec<(String, Option<f64>, bool)>,
    /// The outcome.
    pub verdict: Verdict,
    /// When it was evaluated or waived.
    pub at: Timestamp,
}

/// A job run and its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Job id, `<release>#job<n>`.
    pub id: String,
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
    pub id: String,
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

/// Protocol/phase/step position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Index into [`Plan::protocols`].
    pub protocol: usize,
    /// Index into the protocol's phases.
    pub phase: usize,
    /// Index into the phase's steps.
    pub step: usize,
}

/// A release: the fold of its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Release {
    /// Release id, e.g. `v1.2-production-20261121T233420Z`; also its evidence folder name.
    pub id: String,
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
    pub posts: BTreeMap<String, Vec<String>>,
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
    /// Metrics measured in the current phase: its gate reads only these.
    pub phase_metrics: BTreeMap<String, f64>,
    /// `phase_metrics` as they were when the current step began, restored by `/ray retry`.
    pub metrics_at_step: BTreeMap<String, f64>,
    /// Set while replaying a log: effects are discarded, so texts that only feed effects (message
    /// edits) are not rendered. Never part of the state's meaning.
    #[serde(skip)]
    quiet: bool,
}

type Fx = Vec<Effect>;

/// What [`Release::job_effect`] needs to start a job.
struct JobAsk<'a> {
    env: &'a str,
    purpose: String,
    template: &'a JobTemplate,
    percent: u8,
    log: String,
    /// Evidence file the job writes itself (`{output}`).
    output: Option<String>,
}

/// Result of starting a step.
enum Entered {
    /// Waiting for a result or for people.
    Waiting,
    /// Finished at once; go on.
    Done,
}

fn expand(arg: &str, vars: &[(&str, &str)]) -> String {
    let mut out = arg.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// A version as `/ray deploy` accepts it.
pub fn valid_version(v: &str) -> bool {
    !v.is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl Release {
    /// Creates a release from its first event. Returns `None` for any other event.
    pub fn start(event: &Event, now: Timestamp) -> Option<(Release, Vec<Effect>)> {
        let Event::Started { release, version, env, strategy, by, plan } = event else {
            return None;
        };
        if !valid_version(version) || plan.protocols.is_empty() {
            return None;
        }
        let mut r = Release {
            id: release.clone(),
            version: version.clone(),
            env: env.clone(),
            strategy: *strategy,
            started_by: by.clone(),
            started_at: now,
            updated_at: now,
            plan: Arc::new((**plan).clone()),
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
            phase_metrics: BTreeMap::new(),
            metrics_at_step: BTreeMap::new(),
            quiet: false,
        };
        let mut fx = Vec::new();
        let chain: Vec<String> = r.plan.protocols.iter().map(|p| format!("Protocol {} ({})", p.id, p.title)).collect();
        r.post(
            now,
            &mut fx,
            None,
            format!(
                "[RAY] Release {} of {} to {} started by {} (strategy {}). Pipeline: {}.",
                r.id,
                r.version,
                r.env,
                r.mention(&by.id),
                r.strategy.as_str(),
                chain.join(" → ")
            ),
            Ask::Nothing,
        );
        r.enter_protocol(now, &mut fx);
        r.run(now, &mut fx, Entered::Waiting, true);
        Some((r, fx))
    }

    /// Rebuilds a release from its log (effects are discarded).
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a (Timestamp, Event)>) -> Option<Release> {
        let mut iter = events.into_iter();
        let (t0, first) = iter.next()?;
        let (mut r, _) = Release::start(first, *t0)?;
        r.quiet = true;
        for (t, e) in iter {
            r.handle(e, *t);
        }
        r.quiet = false;
        Some(r)
    }

    /// True once the release has ended.
    pub fn is_finished(&self) -> bool {
        matches!(self.activity, Activity::Ended(_))
    }

    /// Applies one event. Refusals change nothing but the audit trail and come back as a
    /// [`Effect::Reply`] starting with `[RAY ERROR]`.
    pub fn handle(&mut self, event: &Event, now: Timestamp) -> Vec<Effect> {
        let mut fx = Vec::new();
        self.updated_at = now;
        match event {
            Event::Started { .. } => {}
            Event::Command { by, command } => self.command(by, command, now, &mut fx),
            Event::Reaction { by, message, emoji, added } => self.reaction(by, message, emoji, *added, now, &mut fx),
            Event::Click { by, message, button } => self.click(by, message, *button, now, &mut fx),
            Event::Posted { key, message } => {
                self.posts.entry(key.clone()).or_default().push(message.clone());
            }
            Event::JobFinished { job, outcome } => self.job_finished(job, outcome, now, &mut fx),
            Event::ProbeFinished { probe, report } => self.probe_finished(probe, report, now, &mut fx),
            Event::InputsChecked { check, results } => self.inputs_checked(check, results, now, &mut fx),
            Event::BundleWritten { bundle, report } => self.bundle_written(bundle, report, now, &mut fx),
            Event::EvidenceFailed { file, error } => {
                self.evidence.remove(file);
                if !self.is_finished() {
                    let step = self.step_label();
                    self.halt(now, &mut fx, step, format!("could not write {file}: {error}"), None, Resume::Step);
                }
            }
            Event::Tick { timer } => self.tick(timer, now, &mut fx),
            Event::Resumed { replica, previous, jobs_queued } => {
                self.resumed(replica, previous.as_deref(), *jobs_queued, now, &mut fx)
            }
            Event::JobLost { job, replica } => self.job_lost(job, replica, now, &mut fx),
        }
        fx
    }

    // ----- small helpers -------------------------------------------------------------------

    fn next(&mut self, kind: &str) -> String {
        let n = self.next_id;
        self.next_id += 1;
        format!("{}#{kind}{n}", self.id)
    }

    fn mention(&self, id: &str) -> String {
        self.plan.people.mention(id)
    }

    fn post(&mut self, now: Timestamp, fx: &mut Fx, key: Option<String>, text: String, ask: Ask) {
        self.communication.push((now, text.clone()));
        fx.push(Effect::Post { key, text, ask });
    }

    /// Edits a keyed post. Edits are not part of the communication log: what they show (acks,
    /// decisions) is recorded in the state itself.
    fn update(&mut self, fx: &mut Fx, key: &str, text: String) {
        fx.push(Effect::Update { key: key.to_string(), text });
    }

    /// Re-renders the freeze message with who acknowledged and who is missing.
    fn update_freeze(&mut self, fx: &mut Fx) {
        if !self.quiet {
            let text = self.freeze_text(self.step());
            self.update(fx, "freeze", text);
        }
    }

    fn refuse(&mut self, now: Timestamp, fx: &mut Fx, by: &UserRef, what: &str, text: String) {
        self.audit.push(AuditEntry { at: now, who: by.id.clone(), what: format!("{what}: {text}"), accepted: false });
        fx.push(Effect::Reply { to: by.clone(), text: ray_error(text) });
    }

    fn accept(&mut self, now: Timestamp, by: &UserRef, what: String) {
        self.audit.push(AuditEntry { at: now, who: by.id.clone(), what, accepted: true });
    }

    fn protocol(&self) -> &Protocol {
        &self.plan.protocols[self.cursor.protocol.min(self.plan.protocols.len() - 1)]
    }

    fn phase(&self) -> &Phase {
        &self.protocol().phases[self.cursor.phase]
    }

    fn step(&self) -> &Step {
        &self.phase().steps[self.cursor.step]
    }

    fn step_label(&self) -> String {
        let p = self.phase();
        match p.steps.get(self.cursor.step) {
            Some(s) => {
                format!("Protocol {} STEP {}.{} {}", self.protocol().id, p.number, self.cursor.step + 1, s.title)
            }
            None => format!("Protocol {} STEP {}", self.protocol().id, p.number),
        }
    }

    fn metric(&self, name: &str) -> Option<f64> {
        self.phase_metrics.get(name).copied()
    }

    fn set_metric(&mut self, name: &str, value: f64) {
        fn put(map: &mut BTreeMap<String, f64>, name: &str, value: f64) {
            match map.get_mut(name) {
                Some(v) => *v = value,
                None => {
                    map.insert(name.to_string(), value);
                }
            }
        }
        let i = self.cursor.protocol.min(self.metrics.len() - 1);
        put(&mut self.metrics[i], name, value);
        put(&mut self.phase_metrics, name, value);
    }

    fn add_metric(&mut self, name: &str, value: f64) {
        let v = self.metric(name).unwrap_or(0.0) + value;
        self.set_metric(name, v);
    }

    /// Evidence path of the current protocol: `pre-deployment/<name>`.
    fn evidence_path(&self, name: &str) -> String {
        format!("{}/{}", self.protocol().artifacts_dir, name)
    }

    /// Writes `contents` to the step's (first) evidence file, if it names one.
    fn write_step_file(&mut self, fx: &mut Fx, step: &Step, contents: String) {
        if let Some(name) = step.evidence.first() {
            let path = self.evidence_path(name);
            self.write(fx, path, contents);
        }
    }

    /// Writes a JSON evidence document (common header + `body`) to the step's evidence file.
    fn write_step_json(&mut self, now: Timestamp, fx: &mut Fx, step: &Step, body: serde_json::Value) {
        if !step.evidence.is_empty() {
            let doc = super::render::json_doc(self, now, step, body);
            self.write_step_file(fx, step, doc);
        }
    }

    /// `product_owner (@bob, @frank)`: a role and who holds it.
    fn role_people(&self, role: &str) -> String {
        let people: Vec<String> =
            self.plan.people.with_roles(&[role.to_string()]).iter().map(|p| self.mention(&p.id)).collect();
        format!("{role} ({})", if people.is_empty() { "nobody configured".into() } else { people.join(", ") })
    }

    fn write(&mut self, fx: &mut Fx, path: String, contents: String) {
        self.evidence.insert(path.clone());
        fx.push(Effect::WriteEvidence { path, contents });
    }

    fn env_cfg(&self, env: &str) -> Option<Environment> {
        self.plan.environment(env).cloned()
    }

    fn job_effect(&mut self, now: Timestamp, fx: &mut Fx, ask: JobAsk<'_>) -> String {
        let JobAsk { env, purpose, template, percent, log, output } = ask;
        let id = self.next("job");
        let percent_s = percent.to_string();
        let output = output.map(|o| format!("{{artifacts}}/{o}")).unwrap_or_default();
        let vars = [
            ("version", self.version.as_str()),
            ("env", env),
            ("strategy", self.strategy.as_str()),
            ("percent", percent_s.as_str()),
            ("release", self.id.as_str()),
            ("output", output.as_str()),
        ];
        let argv: Vec<String> = template.argv.iter().map(|a| expand(a, &vars)).collect();
        let mut envs: Vec<(String, String)> = template.env.iter().map(|(k, v)| (k.clone(), expand(v, &vars))).collect();
        envs.push(("RAYBOT_RELEASE".into(), self.id.clone()));
        envs.push(("RAYBOT_VERSION".into(), self.version.clone()));
        envs.push(("RAYBOT_ENV".into(), env.to_string()));
        envs.push(("RAYBOT_STRATEGY".into(), self.strategy.as_str().into()));
        envs.push(("RAYBOT_PERCENT".into(), percent_s.clone()));
        self.jobs.push(JobRecord {
            id: id.clone(),
            purpose: purpose.clone(),
            env: env.to_string(),
            argv: argv.clone(),
            log: log.clone(),
            started_at: now,
            outcome: None,
            finished_at: None,
            spec: None,
        });
        if env == self.env && self.plan.protocols.len() > 1 && self.is_target_deploy(&purpose) {
            self.production_touched = true;
        }
        self.evidence.insert(log.clone());
        let spec = JobSpec { id: id.clone(), purpose, argv, env: envs, timeout_ms: template.timeout_ms, log };
        if let Some(record) = self.jobs.last_mut() {
            record.spec = Some(spec.clone());
        }
        fx.push(Effect::RunJob(spec));
        id
    }

    /// Starts a job and waits for it as `task`.
    fn start_job(&mut self, now: Timestamp, fx: &mut Fx, ask: JobAsk<'_>, task: Task) {
        let job = self.job_effect(now, fx, ask);
        self.activity = Activity::Job { job, task };
    }

    fn is_target_deploy(&self, purpose: &str) -> bool {
        purpose.starts_with("deploy ") || purpose.starts_with("rollback ")
    }

    fn probe_effect(&mut self, now: Timestamp, fx: &mut Fx, env: &Environment, purpose: String) -> String {
        let id = self.next("probe");
        self.probes.push(ProbeRecord { id: id.clone(), purpose, env: env.name.clone(), started_at: now, report: None });
        fx.push(Effect::Probe(ProbeSpec {
            id: id.clone(),
            url: env.probe.url.clone(),
            count: env.probe.count,
            interval_ms: env.probe.interval_ms,
            timeout_ms: env.probe.timeout_ms,
            version_header: env.probe.version_header.clone(),
        }));
        id
    }

    fn arm(&mut self, fx: &mut Fx, at: Timestamp) -> String {
        let id = self.next("timer");
        fx.push(Effect::ArmTimer { timer: id.clone(), at });
        id
    }

    fn probe_ok(env: &Environment, r: &ProbeReport) -> bool {
        r.success_rate() + 1e-9 >= env.probe.min_success_rate && r.p95_ms <= env.probe.max_p95_ms
    }

    fn probe_summary(r: &ProbeReport) -> String {
        let versions: Vec<String> = r.versions.iter().map(|(v, n)| format!("{v}×{n}")).collect();
        format!(
            "{}/{} healthy ({:.0}%), p95 {} ms{}",
            r.ok,
            r.total,
            r.success_rate() * 100.0,
            r.p95_ms,
            if versions.is_empty() { String::new() } else { format!(", serving {}", versions.join(" ")) }
        )
    }

    // ----- the protocol walk ----------------------------------------------------------------

    fn enter_protocol(&mut self, now: Timestamp, fx: &mut Fx) {
        let p = self.protocol().clone();
        let mut text = format!("[MASTER RAY™ | PROTOCOL {}: {}] Persona: {}.", p.id, p.title, p.role.persona);
        if let Some(g) = &p.role.guardrail {
            text.push_str(&format!(" Guardrail: {g}"));
        }
        self.post(now, fx, None, text, Ask::Nothing);
        self.enter_phase(now, fx);
    }

    fn enter_phase(&mut self, now: Timestamp, fx: &mut Fx) {
        self.phase_metrics.clear();
        let phase = self.phase().clone();
        // When a later step carries the start line (P11 phase 3: the approval comes first), it is
        // posted when that step starts, as the seed orders it.
        let later = phase
            .steps
            .iter()
            .skip(1)
            .any(|s| s.communication.is_some() && s.communication == phase.start_announcement);
        if later {
            return;
        }
        let text = phase
            .start_announcement
            .clone()
            .unwrap_or_else(|| format!("[MASTER RAY™ | PHASE {} START] - {}...", phase.number, phase.title));
        self.post(now, fx, None, text, Ask::Nothing);
    }

    /// Drives the walk: after a step finished (`Done`), moves on until something waits.
    /// `fresh` means the current step has not been entered yet.
    fn run(&mut self, now: Timestamp, fx: &mut Fx, mut state: Entered, mut fresh: bool) {
        loop {
            if fresh {
                state = self.enter_step(now, fx);
            }
            match state {
                Entered::Waiting => return,
                Entered::Done => {}
            }
            if matches!(self.activity, Activity::Halted(_) | Activity::Ended(_)) {
                return;
            }
            // The current step is done: next step, or end of phase.
            self.activity = Activity::Idle;
            self.cursor.step += 1;
            if self.cursor.step < self.phase().steps.len() {
                fresh = true;
                continue;
            }
            if !self.end_phase(now, fx) {
                return;
            }
            if matches!(self.activity, Activity::Ended(_) | Activity::Bundle { .. }) {
                return;
            }
            fresh = true;
        }
    }

    /// Evaluates the phase's gate and moves to the next phase/protocol. Returns false when the
    /// release stops here (gate failed, or the release ended).
    fn end_phase(&mut self, now: Timestamp, fx: &mut Fx) -> bool {
        let phase = self.phase().clone();
        if let Some(gate) = &phase.gate {
            if !self.gate_passes(gate, now, fx) {
                return false;
            }
        }
        if let Some(done) = &phase.complete_announcement {
            self.post(now, fx, None, done.clone(), Ask::Nothing);
        }
        self.cursor.phase += 1;
        self.cursor.step = 0;
        self.deploy_index = 0;
        if self.cursor.phase < self.protocol().phases.len() {
            self.enter_phase(now, fx);
            return true;
        }
        // Protocol complete: handoff.
        let p = self.protocol().clone();
        if let Some(h) = &p.handoff {
            let passed = self.gates.iter().filter(|g| g.protocol == p.id && g.verdict == Verdict::Passed).count();
            let waived =
                self.gates.iter().filter(|g| g.protocol == p.id && matches!(g.verdict, Verdict::Waived { .. })).count();
            self.post(
                now,
                fx,
                None,
                format!(
                    "{}\nHandoff checklist: {} gates passed, {} waived (documented); evidence in {}/.",
                    h.announcement, passed, waived, p.artifacts_dir
                ),
                Ask::Nothing,
            );
        }
        if let Some(prompt) = p.communication.validation_prompts.first() {
            let approvers: Vec<String> = self
                .rounds
                .iter()
                .filter(|r| r.protocol == p.id && r.decision.as_deref() == Some("approved"))
                .flat_map(|r| r.approvals.iter().map(|a| self.mention(&a.user)))
                .collect();
            let follow = if self.cursor.protocol + 1 < self.plan.protocols.len() {
                format!("continuing with Protocol {}", self.plan.protocols[self.cursor.protocol + 1].id)
            } else {
                "release complete".to_string()
            };
            let by = if approvers.is_empty() {
                "confirmed by the passed gates".to_string()
            } else {
                format!("confirmed by the go/no-go approval of {}", approvers.join(", "))
            };
            self.post(now, fx, None, format!("{}\n→ {by}; {follow}.", prompt.trim_end()), Ask::Nothing);
        }
        self.cursor.protocol += 1;
        self.cursor.phase = 0;
        if self.cursor.protocol < self.plan.protocols.len() {
            self.enter_protocol(now, fx);
            return true;
        }
        self.cursor.protocol = self.plan.protocols.len() - 1;
        self.cursor.phase = self.protocol().phases.len() - 1;
        self.cursor.step = self.phase().steps.len().saturating_sub(1);
        self.finish(now, fx, Terminal::Released);
        false
    }

    /// Ends the release: refresh the report bundle if there is one, then `Finished`.
    fn finish(&mut self, now: Timestamp, fx: &mut Fx, outcome: Terminal) {
        let report_zip = self.plan.protocols.iter().find_map(|p| {
            p.phases.iter().flat_map(|ph| &ph.steps).find_map(|s| match &s.run {
                StepRun::Report { zip } => Some((p.artifacts_dir.clone(), zip.clone(), p.id.clone())),
                _ => None,
            })
        });
        match report_zip {
            Some((dir, zip, protocol)) if !self.evidence.is_empty() => {
                let report = format!("{dir}/DEPLOYMENT-REPORT.md");
                let text = super::render::deployment_report(self, now, Some(&outcome));
                self.write(fx, report, text);
                let bundle = self.next("bundle");
                let files: Vec<String> = self.evidence.iter().filter(|f| !f.ends_with(".zip")).cloned().collect();
                fx.push(Effect::Bundle {
                    bundle: bundle.clone(),
                    zip: format!("{dir}/{zip}"),
                    files,
                    manifest: None,
                    protocol,
                });
                self.activity = Activity::Bundle { bundle, finish: Some(outcome) };
            }
            _ => self.end(now, fx, outcome),
        }
    }

    fn end(&mut self, now: Timestamp, fx: &mut Fx, outcome: Terminal) {
        let text = match &outcome {
            Terminal::Released => format!(
                "[RAY] ✅ {} released to {}. Evidence: {}/. Environment lock released.",
                self.version, self.env, self.id
            ),
            Terminal::RolledBack { reason } => format!(
                "[RAY] ↩️ {} rolled back in {}: {reason}. Evidence: {}/ (rollback-plan.md, DEPLOYMENT-REPORT.md).",
                self.version, self.env, self.id
            ),
            Terminal::Rejected { by, reason } => {
                format!(
                    "[RAY] ⛔ {} stopped: rejected by {}: {reason}. Nothing was deployed to {}.",
                    self.version,
                    self.mention(by),
                    self.env
                )
            }
            Terminal::Aborted { by, reason } => {
                format!(
                    "[RAY] ⛔ {} aborted by {}: {reason}. Environment lock released.",
                    self.version,
                    self.mention(by)
                )
            }
        };
        self.post(now, fx, None, text, Ask::Nothing);
        self.activity = Activity::Ended(outcome.clone());
        fx.push(Effect::Finished { outcome });
    }

    fn halt(
        &mut self,
        now: Timestamp,
        fx: &mut Fx,
        step: String,
        reason: String,
        gate: Option<String>,
        resume: Resume,
    ) {
        let template = self.protocol().communication.error_template.clone().unwrap_or_else(|| {
            "[RAY ERROR] - \"Failed at {step}. Reason: {explanation}. Awaiting instructions.\"".into()
        });
        let mut text = template.replace("{step}", &step).replace("{explanation}", reason.trim_end_matches('.'));
        let hint = match (&gate, &resume) {
            (Some(g), _) if self.gate_waivable(g) => format!(
                "\nType `/ray retry` to run it again, `/ray waive {g} <justification>` to accept the risk, or `/ray abort`."
            ),
            (_, Resume::Rollback) => "\nType `/ray retry` to run the rollback again.".to_string(),
            _ if self.production_touched => {
                "\nType `/ray retry` to run it again or `/ray rollback` to restore the previous version.".to_string()
            }
            _ => "\nType `/ray retry` to run it again or `/ray abort` to stop the release.".to_string(),
        };
        text.push_str(&hint);
        self.post(now, fx, None, text, Ask::Nothing);
        self.activity = Activity::Halted(Halt { step, reason, gate, resume, at: now });
    }

    fn gate_waivable(&self, gate: &str) -> bool {
        self.protocol().gates.iter().any(|g| g.id == gate && g.waivable)
    }

    /// Evaluates `gate` of the current protocol; on failure applies its failure handling.
    fn gate_passes(&mut self, gate_id: &str, now: Timestamp, fx: &mut Fx) -> bool {
        let p = self.protocol().clone();
        let Some(gate) = p.gates.iter().find(|g| g.id == gate_id) else {
            return true;
        };
        if let Some(w) = self.waivers.iter().find(|w| w.0 == format!("{}/{}", p.id, gate.id)).cloned() {
            self.gates.push(GateVerdict {
                protocol: p.id.clone(),
                gate: gate.id.clone(),
                name: gate.name.clone(),
                threshold: gate.pass_threshold.clone().unwrap_or_default(),
                clauses: Vec::new(),
                verdict: Verdict::Waived { by: w.1.clone(), justification: w.2.clone() },
                at: now,
            });
            self.post(
                now,
                fx,
                None,
                format!("[RAY GATE WAIVED: {}] Waived by {}: {}", gate.name, self.mention(&w.1), w.2),
                Ask::Nothing,
            );
            return true;
        }
        let threshold = gate.pass_threshold.as_deref().unwrap_or("");
        let clauses = match Threshold::parse(threshold) {
            Ok(t) => t.evaluate(&self.phase_metrics, &self.constants()),
            Err(e) => {
                vec![super::expr::ClauseResult { text: format!("invalid threshold: {e}"), actual: None, passed: false }]
            }
        };
        let passed = clauses.iter().all(|c| c.passed);
        let actual: Vec<String> = clauses
            .iter()
            .map(|c| {
                let metric = c.text.split_whitespace().next().unwrap_or("");
                match c.actual {
                    Some(v) => format!("{metric} = {}", fmt_num(v)),
                    None => format!("{metric} not measured"),
                }
            })
            .collect();
        self.gates.push(GateVerdict {
            protocol: p.id.clone(),
            gate: gate.id.clone(),
            name: gate.name.clone(),
            threshold: threshold.to_string(),
            clauses: clauses.iter().map(|c| (c.text.clone(), c.actual, c.passed)).collect(),
            verdict: if passed { Verdict::Passed } else { Verdict::Failed },
            at: now,
        });
        if passed {
            self.post(
                now,
                fx,
                None,
                format!("[RAY GATE PASSED: {}] {} (threshold: {}).", gate.name, actual.join(", "), threshold),
                Ask::Nothing,
            );
            return true;
        }
        let mut text = format!(
            "[RAY GATE FAILED: {name}]\n> \"Quality gate '{name}' failed.\n> Criteria: {criteria}\n> Actual: {actual}\n> Required action: {action}",
            name = gate.name,
            criteria = gate.failed_criteria.clone().unwrap_or_else(|| gate.criteria.clone()),
            actual = actual.join(", "),
            action = gate.required_action.clone().unwrap_or_else(|| gate.failure_handling.clone()),
        );
        if !gate.options.is_empty() {
            text.push_str("\n>\n> Options:");
            for (i, o) in gate.options.iter().enumerate() {
                text.push_str(&format!("\n> {}. {o}", i + 1));
            }
        }
        text.push('"');
        self.post(now, fx, None, text, Ask::Nothing);
        let step = format!("{} (Protocol {} gate {})", gate.name, p.id, gate.number);
        let reason = format!("{} (threshold: {threshold})", actual.join(", "));
        match gate.on_failure {
            GateFailure::Halt => self.halt(now, fx, step, reason, Some(gate.id.clone()), Resume::Phase),
            GateFailure::RollbackStaging => self.rollback_staging(now, fx, step, reason, gate.id.clone()),
            GateFailure::Rollback => {
                if self.production_touched || self.plan.protocols.len() == 1 {
                    self.start_rollback(now, fx, format!("{} failed: {reason}", gate.name), "automatic".into());
                } else {
                    self.halt(now, fx, step, reason, Some(gate.id.clone()), Resume::Phase);
                }
            }
        }
        false
    }

    fn constants(&self) -> BTreeMap<String, f64> {
        let mut c = BTreeMap::new();
        let rto = self
            .plan
            .environment("staging")
            .or_else(|| self.plan.environment(&self.env))
            .map(|e| e.rto_seconds)
            .unwrap_or(0.0);
        c.insert("rto".to_string(), rto);
        c
    }

    /// Runs a step's halt condition: the phase's gate decides if it reads metrics that are all
    /// measured; otherwise the step's own halt kind applies.
    fn step_failed(&mut self, now: Timestamp, fx: &mut Fx, reason: String) {
        let step = self.step().clone();
        let label = self.step_label();
        self.post(now, fx, None, format!("[RAY] {label}: halt condition met — {reason}"), Ask::Nothing);
        if step.level == Level::Guideline {
            return self.run(now, fx, Entered::Done, false);
        }
        if let Some(gate_id) = self.phase().gate.clone() {
            let waived = self.waivers.iter().any(|w| w.0 == format!("{}/{}", self.protocol().id, gate_id));
            if waived {
                self.post(now, fx, None, format!("[RAY] Continuing: gate '{gate_id}' was waived."), Ask::Nothing);
                return self.run(now, fx, Entered::Done, false);
            }
            let gate = self.protocol().gates.iter().find(|g| g.id == gate_id).cloned();
            if let Some(gate) = gate {
                let measured = gate
                    .pass_threshold
                    .as_deref()
                    .and_then(|t| Threshold::parse(t).ok())
                    .map(|t| t.metrics().all(|m| self.phase_metrics.contains_key(m)))
                    .unwrap_or(false);
                if measured {
                    if !self.gate_passes(&gate_id, now, fx) {
                        return;
                    }
                    // The gate's figures are fine although the step's halt condition held:
                    // fall through to the step's own halt handling.
                    self.gates.pop();
                }
            }
        }
        match step.halt.unwrap_or(HaltKind::Stop) {
            HaltKind::Rollback if self.production_touched => {
                self.start_rollback(now, fx, format!("{label}: {reason}"), "automatic".into())
            }
            HaltKind::Escalate => {
                let cond = step.halt_condition.clone().unwrap_or_default();
                self.halt(now, fx, label, format!("{reason}. {cond}"), self.phase().gate.clone(), Resume::Step)
            }
            _ => self.halt(now, fx, label, reason, self.phase().gate.clone(), Resume::Step),
        }
    }

    fn step_note(&mut self, now: Timestamp, fx: &mut Fx, text: String) {
        let p = self.phase().number;
        let step = self.step().clone();
        let lead = match step.level {
            Level::Must => format!("[PHASE {p}]"),
            Level::Guideline => format!("[PHASE {p}] Guideline — {}:", step.title),
        };
        self.post(now, fx, None, format!("{lead} {text}"), Ask::Nothing);
    }

    /// Starts the current step.
    fn enter_step(&mut self, now: Timestamp, fx: &mut Fx) -> Entered {
        self.metrics_at_step = self.phase_metrics.clone();
        let step = self.step().clone();
        let phase_start = self.phase().start_announcement.clone();
        if let Some(c) = &step.communication {
            let already = self.cursor.step == 0 && Some(c) == phase_start.as_ref();
            if !already && !matches!(step.run, StepRun::Freeze { .. } | StepRun::Approval { .. }) {
                self.post(now, fx, None, c.clone(), Ask::Nothing);
            }
        }
        match step.run.clone() {
            StepRun::Note => {
                if step.communication.is_none() {
                    self.step_note(now, fx, step.action.clone());
                }
                Entered::Done
            }
            StepRun::Intake => {
                let check = self.next("check");
                let items = self
                    .protocol()
                    .prerequisites
                    .artifacts
                    .iter()
                    .map(|a| InputSpec {
                        name: a.name.clone(),
                        location: format!("{:?}", a.location).to_lowercase(),
                        required: a.required,
                        max_age_days: self.plan.inputs_max_age_days,
                    })
                    .collect();
                fx.push(Effect::CheckInputs { check: check.clone(), items });
                self.activity = Activity::Inputs { check };
                Entered::Waiting
            }
            StepRun::Parity => self.parity(now, fx),
            StepRun::Job { job, env } => {
                let template = self.env_cfg(&env).and_then(|e| e.jobs.get(&job).cloned());
                match template {
                    None => {
                        self.step_note(now, fx, format!("skipped: no `{job}` job is configured for {env}."));
                        Entered::Done
                    }
                    Some(t) => {
                        let output = step.evidence.first().map(|e| self.evidence_path(e));
                        if let Some(o) = &output {
                            self.evidence.insert(o.clone());
                        }
                        let log = self.evidence_path(&format!("{env}-{}.log", job.replace('_', "-")));
                        self.step_note(now, fx, format!("running `{job}` on {env}."));
                        self.start_job(
                            now,
                            fx,
                            JobAsk {
                                env: &env,
                                purpose: format!("{job} {env}"),
                                template: &t,
                                percent: 100,
                                log,
                                output,
                            },
                            Task::OptionalJob,
                        );
                        Entered::Waiting
                    }
                }
            }
            StepRun::Deploy { env } => {
                if self.env_cfg(&env).is_none() {
                    self.step_failed(now, fx, format!("environment `{env}` is not configured"));
                    return Entered::Waiting;
                }
                if env == self.env && self.deploy_index == 0 {
                    let steps: Vec<String> = self.strategy.steps().iter().map(|p| format!("{p}%")).collect();
                    self.post(
                        now,
                        fx,
                        None,
                        format!(
                            "[RAY ANNOUNCEMENT] {} deployment of {} started ({}: {}). Next update at 50%.",
                            capitalize(&env),
                            self.version,
                            self.strategy.as_str(),
                            steps.join(" → ")
                        ),
                        Ask::Nothing,
                    );
                }
                self.deploy_substep(now, fx, &env);
                Entered::Waiting
            }
            StepRun::Validate { env } => self.validate_next(now, fx, &env, 0),
            StepRun::RollbackRehearsal { env } => {
                let Some(e) = self.env_cfg(&env) else {
                    self.step_failed(now, fx, format!("environment `{env}` is not configured"));
                    return Entered::Waiting;
                };
                let log = self.evidence_path(&format!("{env}-rollback-rehearsal.log"));
                self.start_job(
                    now,
                    fx,
                    JobAsk {
                        env: &env,
                        purpose: format!("rollback rehearsal {env}"),
                        template: &e.rollback,
                        percent: 0,
                        log,
                        output: None,
                    },
                    Task::Rehearsal { started: now },
                );
                Entered::Waiting
            }
            StepRun::Security => match self.plan.jobs.get("security").cloned() {
                None => {
                    self.step_note(
                        now,
                        fx,
                        "no `security` job is configured: blocking findings cannot be measured.".into(),
                    );
                    self.write_security(now, fx, None);
                    Entered::Done
                }
                Some(t) => {
                    let log = self.evidence_path("security-scan.log");
                    let env = self.env.clone();
                    self.start_job(
                        now,
                        fx,
                        JobAsk {
                            env: &env,
                            purpose: "security scan".into(),
                            template: &t,
                            percent: 100,
                            log,
                            output: None,
                        },
                        Task::Security,
                    );
                    Entered::Waiting
                }
            },
            StepRun::Baseline { env } => {
                let Some(e) = self.env_cfg(&env) else {
                    return Entered::Done;
                };
                let id = self.probe_effect(now, fx, &e, format!("baseline {env}"));
                self.activity = Activity::Probe { probe: id, task: Task::BaselineProbe };
                Entered::Waiting
            }
            StepRun::Package { zip, manifest, files } => {
                let dir = self.protocol().artifacts_dir.clone();
                let bundle = self.next("bundle");
                let files: Vec<String> = files.iter().map(|f| format!("{dir}/{f}")).collect();
                let manifest = manifest.map(|m| format!("{dir}/{m}"));
                if let Some(m) = &manifest {
                    self.evidence.insert(m.clone());
                }
                let zip = format!("{dir}/{zip}");
                self.evidence.insert(zip.clone());
                fx.push(Effect::Bundle {
                    bundle: bundle.clone(),
                    zip,
                    files,
                    manifest,
                    protocol: self.protocol().id.clone(),
                });
                self.activity = Activity::Bundle { bundle, finish: None };
                Entered::Waiting
            }
            StepRun::Approval { roles, .. } => self.open_approval(now, fx, &step, roles),
            StepRun::Freeze { roles } => self.open_freeze(now, fx, &step, roles),
            StepRun::Document { template } => {
                let (contents, note) = super::render::document(self, now, template, &step);
                if let Some(contents) = contents {
                    self.write_step_file(fx, &step, contents);
                }
                self.step_note(now, fx, note);
                Entered::Done
            }
            StepRun::HealthWindow { env } => {
                let Some(e) = self.env_cfg(&env) else {
                    return Entered::Done;
                };
                self.soak.clear();
                self.set_metric("slo_breaches", 0.0);
                let until = now.plus_ms(e.health_window.duration_ms);
                let probe = self.probe_effect(now, fx, &e, format!("health window {env}"));
                self.activity = Activity::Probe { probe, task: Task::SoakProbe { until } };
                Entered::Waiting
            }
            StepRun::Report { zip } => {
                let dir = self.protocol().artifacts_dir.clone();
                let report = format!("{dir}/DEPLOYMENT-REPORT.md");
                let text = super::render::deployment_report(self, now, None);
                self.write(fx, report, text);
                let bundle = self.next("bundle");
                let files: Vec<String> = self.evidence.iter().filter(|f| !f.ends_with(".zip")).cloned().collect();
                let zip = format!("{dir}/{zip}");
                self.evidence.insert(zip.clone());
                fx.push(Effect::Bundle {
                    bundle: bundle.clone(),
                    zip,
                    files,
                    manifest: None,
                    protocol: self.protocol().id.clone(),
                });
                self.activity = Activity::Bundle { bundle, finish: None };
                Entered::Waiting
            }
        }
    }

    fn parity(&mut self, now: Timestamp, fx: &mut Fx) -> Entered {
        let staging = self.plan.environment("staging").map(|e| e.parity.clone()).unwrap_or_default();
        let production = self.plan.environment("production").map(|e| e.parity.clone()).unwrap_or_default();
        let keys: BTreeSet<&String> = staging.keys().chain(production.keys()).collect();
        let mut drift = Vec::new();
        let mut worst = 0.0f64;
        for k in &keys {
            let s = staging.get(*k);
            let p = production.get(*k);
            if s.map(|v| &v.value) != p.map(|v| &v.value) {
                let sev = p.or(s).map(|v| v.severity.clone()).unwrap_or_else(|| "high".into());
                worst = worst.max(super::expr::severity_value(&sev).unwrap_or(3.0));
                drift.push(serde_json::json!({
                    "key": k, "staging": s.map(|v| &v.value), "production": p.map(|v| &v.value), "severity": sev,
                }));
            }
        }
        self.set_metric("drift_severity", worst);
        let sev_name = ["none", "low", "medium", "high", "critical"][worst as usize];
        let body = serde_json::json!({
            "compared_keys": keys.len(),
            "drift": drift,
            "drift_severity": sev_name,
            "status": if worst <= 1.0 { "parity" } else { "drift" },
        });
        let step = self.step().clone();
        self.write_step_json(now, fx, &step, body);
        self.step_note(
            now,
            fx,
            format!("Parity: {} keys compared, {} drifted, drift severity {sev_name}.", keys.len(), drift.len()),
        );
        if worst > 1.0 {
            self.step_failed(
                now,
                fx,
                format!("configuration drift of severity {sev_name} between staging and production"),
            );
            return Entered::Waiting;
        }
        Entered::Done
    }

    // ----- deploy ---------------------------------------------------------------------------

    fn deploy_substep(&mut self, now: Timestamp, fx: &mut Fx, env: &str) {
        let Some(e) = self.env_cfg(env) else { return };
        let steps = self.strategy.steps();
        let index = self.deploy_index.min(steps.len() - 1);
        let percent = steps[index];
        let log = self.deploy_log(env);
        self.start_job(
            now,
            fx,
            JobAsk {
                env,
                purpose: format!("deploy {env} {percent}%"),
                template: &e.deploy,
                percent,
                log,
                output: None,
            },
            Task::DeployStep { index },
        );
    }

    fn deploy_log(&self, env: &str) -> String {
        let step = self.step();
        match step.evidence.iter().find(|e| e.ends_with(".log")) {
            Some(l) => self.evidence_path(l),
            None => self.evidence_path(&format!("{env}-deployment-run.log")),
        }
    }

    fn completion(&self, index: usize) -> u8 {
        let steps = self.strategy.steps();
        match self.strategy {
            Strategy::Bluegreen => (((index + 1) * 100) / steps.len()) as u8,
            _ => steps[index],
        }
    }

    fn deploy_failed(&mut self, now: Timestamp, fx: &mut Fx, env: &str, reason: String) {
        self.add_metric("blocking_errors", 1.0);
        self.add_metric("blocking_incidents", 1.0);
        self.write_deploy_report(now, fx, env, Some(&reason));
        if env == self.env && self.production_touched {
            self.post(
                now,
                fx,
                None,
                format!("[RAY ANNOUNCEMENT] {} deployment of {} stopped: {reason}.", capitalize(env), self.version),
                Ask::Nothing,
            );
        }
        self.step_failed(now, fx, reason);
    }

    fn write_deploy_report(&mut self, now: Timestamp, fx: &mut Fx, env: &str, failure: Option<&str>) {
        let step = self.step().clone();
        let Some(name) = step.evidence.iter().find(|e| e.ends_with(".json")) else { return };
        let path = self.evidence_path(name);
        let actions: Vec<serde_json::Value> = self
            .jobs
            .iter()
            .filter(|j| j.env == env && j.purpose.starts_with("deploy "))
            .map(|j| {
                serde_json::json!({
                    "action": j.purpose, "argv": j.argv, "started_at": j.started_at.rfc3339(),
                    "finished_at": j.finished_at.map(|t| t.rfc3339()),
                    "exit_code": j.outcome.as_ref().and_then(|o| o.exit_code),
                    "timed_out": j.outcome.as_ref().map(|o| o.timed_out),
                    "duration_ms": j.outcome.as_ref().map(|o| o.duration_ms),
                    "log": j.log,
                })
            })
            .collect();
        let probes: Vec<serde_json::Value> = self
            .probes
            .iter()
            .filter(|p| p.env == env && p.purpose.starts_with("after deploy"))
            .map(|p| serde_json::json!({"purpose": p.purpose, "report": p.report}))
            .collect();
        let body = serde_json::json!({
            "environment": env,
            "strategy": self.strategy.as_str(),
            "steps": self.strategy.steps(),
            "actions": actions,
            "probes_between_steps": probes,
            "result": if failure.is_some() { "failed" } else { "succeeded" },
            "failure": failure,
        });
        let doc = super::render::json_doc(self, now, &step, body);
        self.write(fx, path, doc);
    }

    fn deploy_job_done(&mut self, now: Timestamp, fx: &mut Fx, index: usize, outcome: &JobOutcome) {
        let StepRun::Deploy { env } = self.step().run.clone() else { return };
        if !outcome.succeeded() {
            let percent = self.strategy.steps()[index];
            return self.deploy_failed(
                now,
                fx,
                &env,
                format!("deploy job at {percent}% failed ({})", outcome.summary()),
            );
        }
        let Some(e) = self.env_cfg(&env) else { return };
        let percent = self.strategy.steps()[index];
        let probe = self.probe_effect(now, fx, &e, format!("after deploy {env} {percent}%"));
        self.activity = Activity::Probe { probe, task: Task::DeployStep { index } };
    }

    fn deploy_probe_done(&mut self, now: Timestamp, fx: &mut Fx, index: usize, report: &ProbeReport) {
        let StepRun::Deploy { env } = self.step().run.clone() else { return };
        let Some(e) = self.env_cfg(&env) else { return };
        let steps = self.strategy.steps();
        let percent = steps[index];
        if env == self.env {
            self.set_metric("validation_success_rate", report.success_rate());
        }
        if !Self::probe_ok(&e, report) {
            return self.deploy_failed(
                now,
                fx,
                &env,
                format!("probes at {percent}% traffic: {}", Self::probe_summary(report)),
            );
        }
        let last = index + 1 == steps.len();
        if last
            && e.probe.version_header.is_some()
            && report.version_share(&self.version) + 1e-9 < e.probe.min_success_rate
        {
            return self.deploy_failed(
                now,
                fx,
                &env,
                format!("{} is not serving after the switch: {}", self.version, Self::probe_summary(report)),
            );
        }
        if env == self.env && self.plan.protocols.len() > 1 {
            let before = if index == 0 { 0 } else { self.completion(index - 1) };
            let now_pct = self.completion(index);
            if before < 50 && (50..100).contains(&now_pct) {
                self.post(
                    now,
                    fx,
                    None,
                    format!(
                        "[RAY ANNOUNCEMENT] {} deployment 50% complete. No errors observed. Next update at completion. ({})",
                        capitalize(&env),
                        Self::probe_summary(report)
                    ),
                    Ask::Nothing,
                );
            }
        } else {
            self.step_note(now, fx, format!("{env} at {percent}%: {}", Self::probe_summary(report)));
        }
        if last {
            if env == self.env && self.plan.protocols.len() > 1 {
                self.post(
                    now,
                    fx,
                    None,
                    format!(
                        "[RAY ANNOUNCEMENT] {} deployment 100% complete. No errors observed. {} serves {}. Next: post-deployment checks.",
                        capitalize(&env),
                        capitalize(&env),
                        self.version
                    ),
                    Ask::Nothing,
                );
            }
            self.add_metric("blocking_errors", 0.0);
            self.add_metric("blocking_incidents", 0.0);
            self.write_deploy_report(now, fx, &env, None);
            self.deploy_index = 0;
            return self.run(now, fx, Entered::Done, false);
        }
        self.deploy_index = index + 1;
        self.deploy_substep(now, fx, &env);
    }

    // ----- validation -----------------------------------------------------------------------

    fn validate_next(&mut self, now: Timestamp, fx: &mut Fx, env: &str, index: usize) -> Entered {
        let Some(e) = self.env_cfg(env) else {
            self.step_failed(now, fx, format!("environment `{env}` is not configured"));
            return Entered::Waiting;
        };
        if let Some(suite) = e.validation.get(index) {
            let log = self.evidence_path(&format!("{env}-validation.log"));
            self.start_job(
                now,
                fx,
                JobAsk {
                    env,
                    purpose: format!("validation {} {env}", suite.name),
                    template: &suite.job,
                    percent: 100,
                    log,
                    output: None,
                },
                Task::Suite { index },
            );
        } else {
            let probe = self.probe_effect(now, fx, &e, format!("validation {env}"));
            self.activity = Activity::Probe { probe, task: Task::ValidateProbe };
        }
        Entered::Waiting
    }

    fn validation_done(&mut self, now: Timestamp, fx: &mut Fx, report: &ProbeReport) {
        let step = self.step().clone();
        let StepRun::Validate { env } = step.run.clone() else { return };
        let Some(e) = self.env_cfg(&env) else { return };
        let suite_jobs: Vec<JobRecord> = {
            let first = self.jobs.iter().rposition(|j| j.purpose.starts_with("validation ") && j.env == env);
            let n = e.validation.len();
            match first {
                Some(last) if n > 0 => self.jobs[last + 1 - n..=last].to_vec(),
                _ => Vec::new(),
            }
        };
        let passed = suite_jobs.iter().filter(|j| j.outcome.as_ref().is_some_and(JobOutcome::succeeded)).count();
        let critical_failed = suite_jobs
            .iter()
            .zip(&e.validation)
            .filter(|(j, s)| s.critical && !j.outcome.as_ref().is_some_and(JobOutcome::succeeded))
            .count();
        let probe_ok = Self::probe_ok(&e, report);
        let coverage = if suite_jobs.is_empty() {
            if probe_ok { 1.0 } else { 0.0 }
        } else {
            passed as f64 / suite_jobs.len() as f64
        };
        let blocking = critical_failed as f64 + if probe_ok { 0.0 } else { 1.0 };
        self.set_metric("coverage", coverage);
        self.set_metric("validation_success_rate", report.success_rate());
        self.add_metric("blocking_errors", blocking);
        self.add_metric("blocking_incidents", blocking);
        let suites: Vec<serde_json::Value> = suite_jobs
            .iter()
            .zip(&e.validation)
            .map(|(j, s)| {
                serde_json::json!({
                    "suite": s.name, "critical": s.critical, "argv": j.argv,
                    "passed": j.outcome.as_ref().is_some_and(JobOutcome::succeeded),
                    "exit_code": j.outcome.as_ref().and_then(|o| o.exit_code),
                    "duration_ms": j.outcome.as_ref().map(|o| o.duration_ms),
                    "output_tail": j.outcome.as_ref().map(|o| o.log_tail.clone()),
                })
            })
            .collect();
        let body = serde_json::json!({
            "environment": env,
            "suites": suites,
            "suites_passed": passed,
            "suites_targeted": suite_jobs.len(),
            "coverage": coverage,
            "probe": report,
            "validation_success_rate": report.success_rate(),
            "thresholds": {"min_success_rate": e.probe.min_success_rate, "max_p95_ms": e.probe.max_p95_ms},
            "blocking": blocking,
            "result": if blocking == 0.0 { "passed" } else { "failed" },
        });
        self.write_step_json(now, fx, &step, body);
        let summary = format!(
            "{env} validation: {passed}/{} suites passed (coverage {:.0}%), probes {}.",
            suite_jobs.len(),
            coverage * 100.0,
            Self::probe_summary(report)
        );
        self.step_note(now, fx, summary.clone());
        if blocking > 0.0 {
            return self.step_failed(now, fx, summary);
        }
        self.run(now, fx, Entered::Done, false)
    }

    // ----- security, baseline, rehearsal ------------------------------------------------------

    fn write_security(&mut self, now: Timestamp, fx: &mut Fx, outcome: Option<&JobOutcome>) {
        let step = self.step().clone();
        let findings = outcome.map(|o| {
            if o.succeeded() {
                0.0
            } else {
                o.log_tail
                    .iter()
                    .rev()
                    .find_map(|l| l.trim().strip_prefix("blocking_findings=").and_then(|n| n.parse::<f64>().ok()))
                    .unwrap_or(1.0)
            }
        });
        if let Some(f) = findings {
            self.set_metric("blocking_findings", f);
        }
        let body = serde_json::json!({
            "scan": outcome.map(|_| "security job"),
            "exit_code": outcome.and_then(|o| o.exit_code),
            "summary": outcome.map(JobOutcome::summary),
            "blocking_findings": findings,
            "findings": outcome.map(|o| o.log_tail.clone()).unwrap_or_default(),
            "approvals": serde_json::Value::Null,
            "status": match findings { Some(0.0) => "cleared", Some(_) => "blocking findings", None => "not run" },
        });
        self.write_step_json(now, fx, &step, body);
    }

    // ----- approvals ------------------------------------------------------------------------

    fn open_approval(&mut self, now: Timestamp, fx: &mut Fx, step: &Step, roles: Vec<String>) -> Entered {
        let round = self.rounds.len();
        self.rounds.push(ApprovalRound {
            protocol: self.protocol().id.clone(),
            step: step.id.clone(),
            roles: roles.clone(),
            approvals: Vec::new(),
            opened_at: now,
            decision: None,
            decided_at: None,
        });
        self.post_approval_request(now, fx, round, "");
        Entered::Waiting
    }

    /// Posts (or re-posts) the go/no-go request of `round` with its buttons and arms a reminder.
    fn post_approval_request(&mut self, now: Timestamp, fx: &mut Fx, round: usize, lead: &str) {
        let r = self.rounds[round].clone();
        let step = self.protocol().phases.iter().flat_map(|p| &p.steps).find(|s| s.id == r.step).cloned();
        let prompt = match step.as_ref().map(|s| &s.run) {
            Some(StepRun::Approval { prompt, .. }) => prompt.clone(),
            _ => "[APPROVAL REQUEST] Approve?".to_string(),
        };
        let who: Vec<String> = r.roles.iter().map(|role| self.role_people(role)).collect();
        let mut text = lead.to_string();
        if let Some(c) = step.as_ref().and_then(|s| s.communication.as_ref()) {
            if c != &prompt {
                text.push_str(c);
                text.push('\n');
            }
        }
        text.push_str(&prompt);
        let got: Vec<String> = r.approvals.iter().map(|a| self.mention(&a.user)).collect();
        text.push_str(&format!(
            "\nRelease {} ({} → {}). Needed: {}.{} Approve with the button or `/ray approve [comment]`; `/ray reject <reason>` stops the release.",
            self.id,
            self.version,
            self.env,
            who.join(", "),
            if got.is_empty() { String::new() } else { format!(" Approved so far: {}.", got.join(", ")) }
        ));
        self.post(now, fx, Some(format!("approval:{round}")), text, Ask::Buttons);
        let reminder = self.arm(fx, now.plus_ms(self.plan.policy.remind_after_ms));
        self.activity = Activity::Approval { round, reminder };
    }

    /// Which required roles are covered by distinct approvers (bipartite matching; small sizes).
    fn coverage(&self, round: &ApprovalRound) -> Vec<Option<String>> {
        fn assign(
            roles: &[String],
            i: usize,
            approvals: &[Approval],
            used: &mut Vec<bool>,
            out: &mut Vec<Option<String>>,
            best: &mut Vec<Option<String>>,
        ) {
            if i == roles.len() {
                if out.iter().filter(|o| o.is_some()).count() > best.iter().filter(|o| o.is_some()).count() {
                    *best = out.clone();
                }
                return;
            }
            for (k, a) in approvals.iter().enumerate() {
                if !used[k] && a.roles.contains(&roles[i]) {
                    used[k] = true;
                    out[i] = Some(a.user.clone());
                    assign(roles, i + 1, approvals, used, out, best);
                    out[i] = None;
                    used[k] = false;
                }
            }
            assign(roles, i + 1, approvals, used, out, best);
        }
        let mut best = vec![None; round.roles.len()];
        let mut out = vec![None; round.roles.len()];
        let mut used = vec![false; round.approvals.len()];
        assign(&round.roles, 0, &round.approvals, &mut used, &mut out, &mut best);
        best
    }

    fn approve(&mut self, by: &UserRef, comment: Option<String>, via: &str, now: Timestamp, fx: &mut Fx) {
        let Some(person) = self.plan.people.get(&by.id).cloned() else {
            return self.refuse(
                now,
                fx,
                by,
                "approve",
                format!("{} is not in config/release-approvers.yaml, so cannot approve releases.", by.id),
            );
        };
        let Activity::Approval { round, .. } = self.activity.clone() else {
            return self.refuse(
                now,
                fx,
                by,
                "approve",
                format!(
                    "no approval is waiting for release {} (it is {}). `/ray status` shows what it is doing.",
                    self.id,
                    self.activity.label()
                ),
            );
        };
        let r = self.rounds[round].clone();
        let roles: Vec<String> = person.roles.iter().filter(|x| r.roles.contains(x)).cloned().collect();
        if roles.is_empty() {
            return self.refuse(
                now,
                fx,
                by,
                "approve",
                format!(
                    "{} ({}) may not approve this step; it needs: {}.",
                    by.id,
                    person.roles.join(", "),
                    r.roles.join(", ")
                ),
            );
        }
        if r.approvals.iter().any(|a| a.user == by.id) {
            fx.push(Effect::Reply {
                to: by.clone(),
                text: format!("[RAY] You already approved {} — counted once.", self.id),
            });
            return;
        }
        self.accept(now, by, format!("approved {} via {via}", r.step));
        let approval =
            Approval { user: by.id.clone(), name: person.name.clone(), roles, at: now, comment, via: via.into() };
        self.rounds[round].approvals.push(approval);
        let cover = self.coverage(&self.rounds[round]);
        let missing: Vec<String> =
            r.roles.iter().zip(&cover).filter(|(_, c)| c.is_none()).map(|(role, _)| role.clone()).collect();
        let approvers: BTreeSet<&String> = self.rounds[round].approvals.iter().map(|a| &a.user).collect();
        let only_initiator = approvers.len() == 1 && approvers.contains(&self.started_by.id);
        let names: Vec<String> = self.rounds[round]
            .approvals
            .iter()
            .map(|a| format!("{} ({}) at {}", self.mention(&a.user), a.roles.join("/"), a.at.rfc3339()))
            .collect();
        if missing.is_empty() && !only_initiator {
            self.rounds[round].decision = Some("approved".into());
            self.rounds[round].decided_at = Some(now);
            self.update(
                fx,
                &format!("approval:{round}"),
                format!("[RAY] ✅ Approved — {}. Decision recorded.", names.join(", ")),
            );
            self.post(
                now,
                fx,
                None,
                format!("[RAY] Go decision recorded for {}: {}.", self.id, names.join(", ")),
                Ask::Nothing,
            );
            self.set_metric("approvals_recorded", 1.0);
            self.write_approval(now, fx, round);
            return self.run(now, fx, Entered::Done, false);
        }
        let still = if missing.is_empty() {
            format!("{} started this release, so another approver is needed", self.mention(&self.started_by.id))
        } else {
            format!("still needed: {}", missing.join(", "))
        };
        self.post(
            now,
            fx,
            None,
            format!("[RAY] Approval recorded: {}; {still}.", names.last().cloned().unwrap_or_default()),
            Ask::Nothing,
        );
    }

    fn write_approval(&mut self, now: Timestamp, fx: &mut Fx, round: usize) {
        let step = self.step().clone();
        let r = self.rounds[round].clone();
        if step.evidence.is_empty() {
            return;
        }
        let signatures: Vec<serde_json::Value> = r
            .approvals
            .iter()
            .map(|a| {
                serde_json::json!({
                    "user": a.user, "name": a.name, "roles": a.roles, "approved_at": a.at.rfc3339(),
                    "comment": a.comment, "via": a.via, "platform": self.plan.people.platform,
                })
            })
            .collect();
        let body = serde_json::json!({
            "decision": r.decision,
            "required_roles": r.roles,
            "requested_at": r.opened_at.rfc3339(),
            "decided_at": r.decided_at.map(|t| t.rfc3339()),
            "initiator": self.started_by.id,
            "signatures": signatures,
            "gates_so_far": self.gates.iter().map(|g| serde_json::json!({"gate": g.name, "verdict": g.verdict})).collect::<Vec<_>>(),
            "risks": self.waivers.iter().map(|w| serde_json::json!({"waived_gate": w.0, "by": w.1, "justification": w.2})).collect::<Vec<_>>(),
        });
        self.write_step_json(now, fx, &step, body);
    }

    fn reject(&mut self, by: &UserRef, reason: String, now: Timestamp, fx: &mut Fx) {
        let Activity::Approval { round, .. } = self.activity.clone() else {
            return self.refuse(
                now,
                fx,
                by,
                "reject",
                format!("no approval is waiting for release {}; to stop it use `/ray abort <reason>`.", self.id),
            );
        };
        let roles = self.rounds[round].roles.clone();
        if !self.plan.people.has_any_role(&by.id, &roles) {
            return self.refuse(
                now,
                fx,
                by,
                "reject",
                format!("{} may not reject this step; it needs one of: {}.", by.id, roles.join(", ")),
            );
        }
        self.accept(now, by, format!("rejected: {reason}"));
        self.rounds[round].decision = Some("rejected".into());
        self.rounds[round].decided_at = Some(now);
        self.update(
            fx,
            &format!("approval:{round}"),
            format!("[RAY] ⛔ Rejected by {} at {}: {reason}", self.mention(&by.id), now.rfc3339()),
        );
        self.write_approval(now, fx, round);
        self.finish(now, fx, Terminal::Rejected { by: by.id.clone(), reason });
    }

    // ----- freeze ---------------------------------------------------------------------------

    fn open_freeze(&mut self, now: Timestamp, fx: &mut Fx, step: &Step, roles: Vec<String>) -> Entered {
        let required: Vec<String> = self.plan.people.with_roles(&roles).iter().map(|p| p.id.clone()).collect();
        if required.is_empty() {
            self.step_failed(now, fx, format!("nobody holds the freeze roles ({})", roles.join(", ")));
            return Entered::Waiting;
        }
        self.freeze =
            Freeze { required, acks: BTreeMap::new(), opened_at: Some(now), confirmed_at: None, reminders: 0 };
        let text = self.freeze_text(step);
        self.post(now, fx, Some("freeze".into()), text, Ask::Reaction { emoji: self.plan.policy.ack_emoji.clone() });
        let reminder = self.arm(fx, now.plus_ms(self.plan.policy.remind_after_ms));
        self.activity = Activity::Acks { reminder };
        Entered::Waiting
    }

    fn freeze_missing(&self) -> Vec<String> {
        self.freeze.required.iter().filter(|u| !self.freeze.acks.contains_key(*u)).cloned().collect()
    }

    fn freeze_text(&self, step: &Step) -> String {
        let head =
            step.communication.clone().unwrap_or_else(|| "Change freeze in effect. All teams acknowledge?".into());
        let acked: Vec<String> = self
            .freeze
            .required
            .iter()
            .filter(|u| self.freeze.acks.contains_key(*u))
            .map(|u| self.mention(u))
            .collect();
        let missing: Vec<String> = self.freeze_missing().iter().map(|u| self.mention(u)).collect();
        format!(
            "{head}\nRelease {} ({} → {}): react with :{}: or type `/ray ack`. Acknowledged {}/{}: {}. Waiting for: {}.",
            self.id,
            self.version,
            self.env,
            self.plan.policy.ack_emoji,
            acked.len(),
            self.freeze.required.len(),
            if acked.is_empty() { "nobody yet".into() } else { acked.join(", ") },
            if missing.is_empty() { "nobody".into() } else { missing.join(", ") },
        )
    }

    fn ack(&mut self, by: &UserRef, via: &str, now: Timestamp, fx: &mut Fx) {
        if !matches!(self.activity, Activity::Acks { .. }) {
            return self.refuse(
                now,
                fx,
                by,
                "ack",
                format!(
                    "no change freeze is waiting for acknowledgement on release {} (it is {}).",
                    self.id,
                    self.activity.label()
                ),
            );
        }
        if !self.freeze.required.contains(&by.id) {
            let list: Vec<String> = self.freeze.required.iter().map(|u| self.mention(u)).collect();
            return self.refuse(
                now,
                fx,
                by,
                "ack",
                format!("{} is not on the change-freeze list of {}; it names: {}.", by.id, self.id, list.join(", ")),
            );
        }
        if self.freeze.acks.contains_key(&by.id) {
            fx.push(Effect::Reply {
                to: by.clone(),
                text: format!("[RAY] You already acknowledged the freeze of {} — counted once.", self.id),
            });
            return;
        }
        self.accept(now, by, format!("acknowledged freeze via {via}"));
        self.freeze.acks.insert(by.id.clone(), (now, via.to_string()));
        self.freeze_progress(now, fx);
    }

    fn freeze_progress(&mut self, now: Timestamp, fx: &mut Fx) {
        let ratio = self.freeze.acks.len() as f64 / self.freeze.required.len() as f64;
        self.set_metric("freeze_ack_ratio", ratio);
        self.update_freeze(fx);
        if self.freeze_missing().is_empty() {
            self.freeze.confirmed_at = Some(now);
            self.post(
                now,
                fx,
                None,
                format!(
                    "[PHASE {}] Change freeze confirmed by all {} stakeholders.",
                    self.phase().number,
                    self.freeze.required.len()
                ),
                Ask::Nothing,
            );
            self.write_freeze(now, fx);
            self.run(now, fx, Entered::Done, false);
        }
    }

    fn write_freeze(&mut self, now: Timestamp, fx: &mut Fx) {
        let step = self.step().clone();
        if step.evidence.is_empty() {
            return;
        }
        let text = super::render::freeze_doc(self, now, &step);
        self.write_step_file(fx, &step, text);
    }

    fn unack(&mut self, by: &UserRef, now: Timestamp, fx: &mut Fx) {
        if matches!(self.activity, Activity::Acks { .. }) && self.freeze.acks.remove(&by.id).is_some() {
            self.accept(now, by, "withdrew freeze acknowledgement (reaction removed)".into());
            let ratio = self.freeze.acks.len() as f64 / self.freeze.required.len() as f64;
            self.set_metric("freeze_ack_ratio", ratio);
            self.update_freeze(fx);
        }
    }

    // ----- inbound people events ---------------------------------------------------------

    fn is_operator(&self, by: &UserRef) -> bool {
        self.plan.people.has_any_role(&by.id, &self.plan.policy.operator_roles)
    }

    fn command(&mut self, by: &UserRef, command: &ReleaseCommand, now: Timestamp, fx: &mut Fx) {
        if self.is_finished() && !matches!(command, ReleaseCommand::Status) {
            return self.refuse(
                now,
                fx,
                by,
                "command",
                format!(
                    "release {} has already ended ({}). Start a new one with `/ray deploy <version>`.",
                    self.id,
                    self.activity.label()
                ),
            );
        }
        match command {
            ReleaseCommand::Status => {
                fx.push(Effect::Reply { to: by.clone(), text: self.status_text() });
            }
            ReleaseCommand::Ack => self.ack(by, "command", now, fx),
            ReleaseCommand::Approve { comment } => self.approve(by, comment.clone(), "command", now, fx),
            ReleaseCommand::Reject { reason } => self.reject(by, reason.clone(), now, fx),
            ReleaseCommand::Waive { gate, justification } => self.waive(by, gate, justification, now, fx),
            ReleaseCommand::Retry => self.retry(by, now, fx),
            ReleaseCommand::Rollback { reason } => {
                if !self.is_operator(by) {
                    return self.refuse(
                        now,
                        fx,
                        by,
                        "rollback",
                        format!(
                            "{} may not roll back; it needs one of: {}.",
                            by.id,
                            self.plan.policy.operator_roles.join(", ")
                        ),
                    );
                }
                if !self.production_touched {
                    return self.refuse(
                        now,
                        fx,
                        by,
                        "rollback",
                        format!("nothing to roll back: {} has not been touched by {}. Use `/ray abort <reason>` to stop it.", self.env, self.id),
                    );
                }
                if matches!(
                    self.activity,
                    Activity::Job { task: Task::Rollback { .. }, .. }
                        | Activity::Probe { task: Task::RollbackProbe { .. }, .. }
                ) {
                    return self.refuse(
                        now,
                        fx,
                        by,
                        "rollback",
                        format!("a rollback of {} is already running.", self.env),
                    );
                }
                let reason = reason.clone().unwrap_or_else(|| "requested".into());
                self.accept(now, by, format!("requested rollback: {reason}"));
                let why = format!("requested by {}: {reason}", self.mention(&by.id));
                if matches!(self.activity, Activity::Job { .. } | Activity::Probe { .. }) {
                    self.rollback_requested = Some((by.id.clone(), why));
                    fx.push(Effect::Reply {
                        to: by.clone(),
                        text: "[RAY] Rollback queued: it starts as soon as the running step finishes.".into(),
                    });
                } else {
                    self.start_rollback(now, fx, why, by.id.clone());
                }
            }
            ReleaseCommand::Abort { reason } => {
                if !self.is_operator(by) && by.id != self.started_by.id {
                    return self.refuse(
                        now,
                        fx,
                        by,
                        "abort",
                        format!(
                            "{} may not abort {}; it needs one of: {} or the person who started it.",
                            by.id,
                            self.id,
                            self.plan.policy.operator_roles.join(", ")
                        ),
                    );
                }
                if self.production_touched {
                    return self.refuse(
                        now,
                        fx,
                        by,
                        "abort",
                        format!(
                            "{} has already changed {}; use `/ray rollback <reason>` to restore the previous version.",
                            self.id, self.env
                        ),
                    );
                }
                let reason = reason.clone().unwrap_or_else(|| "no reason given".into());
                self.accept(now, by, format!("aborted: {reason}"));
                self.finish(now, fx, Terminal::Aborted { by: by.id.clone(), reason });
            }
        }
    }

    fn reaction(&mut self, by: &UserRef, message: &str, emoji: &str, added: bool, now: Timestamp, fx: &mut Fx) {
        let on_freeze = self.posts.get("freeze").is_some_and(|ids| ids.iter().any(|m| m == message));
        if !on_freeze || !same_emoji(emoji, &self.plan.policy.ack_emoji) {
            return;
        }
        if added {
            if matches!(self.activity, Activity::Acks { .. }) && !self.freeze.required.contains(&by.id) {
                return self.refuse(
                    now,
                    fx,
                    by,
                    "ack",
                    format!("{} is not on the change-freeze list of {}; the reaction does not count.", by.id, self.id),
                );
            }
            if matches!(self.activity, Activity::Acks { .. }) {
                self.ack(by, "reaction", now, fx);
            }
        } else {
            self.unack(by, now, fx);
        }
    }

    fn click(&mut self, by: &UserRef, message: &str, button: Button, now: Timestamp, fx: &mut Fx) {
        let round = self
            .posts
            .iter()
            .find(|(k, ids)| k.starts_with("approval:") && ids.iter().any(|m| m == message))
            .and_then(|(k, _)| k.trim_start_matches("approval:").parse::<usize>().ok());
        let current = match self.activity {
            Activity::Approval { round, .. } => Some(round),
            _ => None,
        };
        if round.is_none() || round != current {
            return self.refuse(
                now,
                fx,
                by,
                "click",
                "this approval request is closed; `/ray status` shows what is waiting.".into(),
            );
        }
        match button {
            Button::Approve => self.approve(by, None, "button", now, fx),
            Button::Reject => self.reject(by, "rejected with the Reject button".into(), now, fx),
        }
    }

    fn waive(&mut self, by: &UserRef, gate: &str, justification: &str, now: Timestamp, fx: &mut Fx) {
        let Activity::Halted(h) = self.activity.clone() else {
            return self.refuse(
                now,
                fx,
                by,
                "waive",
                format!("release {} is not halted at a gate (it is {}).", self.id, self.activity.label()),
            );
        };
        if !self.plan.people.has_any_role(&by.id, &self.plan.policy.waiver_roles) {
            return self.refuse(
                now,
                fx,
                by,
                "waive",
                format!(
                    "{} may not waive gates; waivers need one of: {}.",
                    by.id,
                    self.plan.policy.waiver_roles.join(", ")
                ),
            );
        }
        let p = self.protocol().clone();
        let wanted = gate.to_lowercase();
        let Some(g) = p
            .gates
            .iter()
            .find(|g| g.id == wanted || g.name.to_lowercase() == wanted || g.number.to_string() == wanted)
        else {
            let ids: Vec<&str> = p.gates.iter().map(|g| g.id.as_str()).collect();
            return self.refuse(
                now,
                fx,
                by,
                "waive",
                format!("unknown gate `{gate}` in Protocol {}; gates: {}.", p.id, ids.join(", ")),
            );
        };
        if h.gate.as_deref() != Some(g.id.as_str()) {
            return self.refuse(
                now,
                fx,
                by,
                "waive",
                format!("the release is halted at {}, not at gate `{}`.", h.step, g.id),
            );
        }
        if !g.waivable {
            return self.refuse(now, fx, by, "waive", format!("gate `{}` ({}) cannot be waived.", g.id, g.name));
        }
        if justification.split_whitespace().count() < 3 {
            return self.refuse(
                now,
                fx,
                by,
                "waive",
                "a waiver needs a justification of at least three words: `/ray waive <gate> <justification>`.".into(),
            );
        }
        self.accept(now, by, format!("waived gate {}: {justification}", g.id));
        self.waivers.push((format!("{}/{}", p.id, g.id), by.id.clone(), justification.to_string(), now));
        self.post(
            now,
            fx,
            None,
            format!(
                "[RAY] Gate '{}' waived by {} ({}): {justification}",
                g.name,
                self.mention(&by.id),
                self.plan.people.get(&by.id).map(|p| p.roles.join("/")).unwrap_or_default()
            ),
            Ask::Nothing,
        );
        self.activity = Activity::Idle;
        if self.cursor.step >= self.phase().steps.len() - 1 && h.resume == Resume::Phase {
            // The gate itself failed: continue as if it passed.
            self.cursor.step = self.phase().steps.len() - 1;
        }
        self.run(now, fx, Entered::Done, false);
    }

    fn retry(&mut self, by: &UserRef, now: Timestamp, fx: &mut Fx) {
        let Activity::Halted(h) = self.activity.clone() else {
            return self.refuse(
                now,
                fx,
                by,
                "retry",
                format!("release {} is not halted (it is {}); nothing to retry.", self.id, self.activity.label()),
            );
        };
        if !self.is_operator(by) {
            return self.refuse(
                now,
                fx,
                by,
                "retry",
                format!("{} may not retry; it needs one of: {}.", by.id, self.plan.policy.operator_roles.join(", ")),
            );
        }
        self.accept(now, by, format!("retry of {}", h.step));
        self.activity = Activity::Idle;
        match h.resume {
            Resume::Rollback => {
                let reason = self.rollback.as_ref().map(|r| r.reason.clone()).unwrap_or_else(|| "retry".into());
                self.rollback = None;
                self.start_rollback(now, fx, reason, by.id.clone());
            }
            Resume::Phase => {
                self.post(
                    now,
                    fx,
                    None,
                    format!("[RAY] Retrying {} as asked by {}.", h.step, self.mention(&by.id)),
                    Ask::Nothing,
                );
                self.cursor.step = 0;
                self.deploy_index = 0;
                self.enter_phase(now, fx);
                self.run(now, fx, Entered::Waiting, true);
            }
            Resume::Step => {
                self.phase_metrics = self.metrics_at_step.clone();
                self.post(
                    now,
                    fx,
                    None,
                    format!("[RAY] Retrying {} as asked by {}.", h.step, self.mention(&by.id)),
                    Ask::Nothing,
                );
                self.run(now, fx, Entered::Waiting, true);
            }
        }
    }

    // ----- rollback -------------------------------------------------------------------------

    fn start_rollback(&mut self, now: Timestamp, fx: &mut Fx, reason: String, trigger: String) {
        let env = self.env.clone();
        let Some(e) = self.env_cfg(&env) else { return };
        self.post(
            now,
            fx,
            None,
            format!(
                "[RAY ANNOUNCEMENT] Rolling back {env} ({}): {reason}. Stakeholders: {}.",
                trigger,
                self.stakeholder_mentions()
            ),
            Ask::Nothing,
        );
        self.rollback = Some(RollbackRecord {
            env: env.clone(),
            reason,
            trigger,
            started_at: now,
            finished_at: None,
            confirmed: None,
        });
        let dir = self.plan.protocols.last().map(|p| p.artifacts_dir.clone()).unwrap_or_default();
        let log = format!("{dir}/{env}-rollback-run.log");
        self.start_job(
            now,
            fx,
            JobAsk {
                env: &env,
                purpose: format!("rollback {env}"),
                template: &e.rollback,
                percent: 0,
                log,
                output: None,
            },
            Task::Rollback { started: now },
        );
    }

    fn stakeholder_mentions(&self) -> String {
        self.plan.people.persons.iter().map(|p| self.mention(&p.id)).collect::<Vec<_>>().join(" ")
    }

    fn rollback_staging(&mut self, now: Timestamp, fx: &mut Fx, step: String, reason: String, gate: String) {
        let Some(e) = self.env_cfg("staging") else {
            return self.halt(now, fx, step, reason, Some(gate), Resume::Phase);
        };
        self.post(
            now,
            fx,
            None,
            "[RAY] Rolling staging back as the gate's failure handling requires.".into(),
            Ask::Nothing,
        );
        let log = self.evidence_path("staging-rollback.log");
        self.start_job(
            now,
            fx,
            JobAsk {
                env: "staging",
                purpose: "rollback staging".into(),
                template: &e.rollback,
                percent: 0,
                log,
                output: None,
            },
            Task::RollbackStaging { step, reason, gate },
        );
    }

    // ----- results --------------------------------------------------------------------------

    /// A `/ray rollback` that arrived while a job or probe ran starts as soon as it ends, whatever
    /// step it belonged to. Returns whether it did.
    fn run_queued_rollback(&mut self, now: Timestamp, fx: &mut Fx, task: &Task) -> bool {
        if matches!(task, Task::Rollback { .. } | Task::RollbackProbe { .. }) {
            return false;
        }
        match self.rollback_requested.take() {
            Some((by, reason)) => {
                self.start_rollback(now, fx, reason, by);
                true
            }
            None => false,
        }
    }

    fn job_finished(&mut self, job: &str, outcome: &JobOutcome, now: Timestamp, fx: &mut Fx) {
        if let Some(j) = self.jobs.iter_mut().find(|j| j.id == job) {
            if j.outcome.is_some() {
                return; // duplicate delivery
            }
            j.outcome = Some(outcome.clone());
            j.finished_at = Some(now);
        }
        let Activity::Job { job: current, task } = self.activity.clone() else { return };
        if current != job {
            return;
        }
        self.activity = Activity::Idle;
        if self.run_queued_rollback(now, fx, &task) {
            return;
        }
        match task {
            Task::DeployStep { index } => self.deploy_job_done(now, fx, index, outcome),
            Task::Suite { index } => {
                let StepRun::Validate { env } = self.step().run.clone() else { return };
                self.validate_next(now, fx, &env, index + 1);
            }
            Task::Rehearsal { started } => {
                let StepRun::RollbackRehearsal { env } = self.step().run.clone() else { return };
                if !outcome.succeeded() {
                    self.write_rehearsal(now, fx, &env, None, Some(outcome.summary()));
                    return self.step_failed(now, fx, format!("rollback job on {env} failed ({})", outcome.summary()));
                }
                let Some(e) = self.env_cfg(&env) else { return };
                let probe = self.probe_effect(now, fx, &e, format!("after rollback rehearsal {env}"));
                self.activity =
                    Activity::Probe { probe, task: Task::RehearsalProbe { started, job_ms: outcome.duration_ms } };
            }
            Task::RollForward { recovery_ms } => {
                let StepRun::RollbackRehearsal { env } = self.step().run.clone() else { return };
                if !outcome.succeeded() {
                    return self.step_failed(
                        now,
                        fx,
                        format!(
                            "re-deploying {} to {env} after the rehearsal failed ({})",
                            self.version,
                            outcome.summary()
                        ),
                    );
                }
                self.write_rehearsal(now, fx, &env, Some(recovery_ms), None);
                let secs = recovery_ms as f64 / 1000.0;
                self.set_metric("recovery_seconds", secs);
                let rto = self.constants().get("rto").copied().unwrap_or(0.0);
                self.step_note(
                    now,
                    fx,
                    format!(
                        "Rollback rehearsal on {env}: recovered in {secs:.1}s (RTO {rto}s); {} restored.",
                        self.version
                    ),
                );
                if secs > rto {
                    return self.step_failed(now, fx, format!("recovery took {secs:.1}s, over the RTO of {rto}s"));
                }
                self.run(now, fx, Entered::Done, false);
            }
            Task::Security => {
                self.write_security(now, fx, Some(outcome));
                let findings = self.metric("blocking_findings").unwrap_or(1.0);
                self.step_note(
                    now,
                    fx,
                    format!("Security scan: {} ({} blocking findings).", outcome.summary(), findings),
                );
                if findings > 0.0 {
                    return self.step_failed(now, fx, format!("{findings} blocking security findings"));
                }
                self.run(now, fx, Entered::Done, false);
            }
            Task::OptionalJob => {
                if !outcome.succeeded() {
                    return self.step_failed(now, fx, format!("job failed ({})", outcome.summary()));
                }
                self.step_note(now, fx, format!("done ({}).", outcome.summary()));
                self.run(now, fx, Entered::Done, false);
            }
            Task::Rollback { started } => {
                if !outcome.succeeded() {
                    let env = self.env.clone();
                    return self.halt(
                        now,
                        fx,
                        format!("rollback of {env}"),
                        format!("rollback job failed ({})", outcome.summary()),
                        None,
                        Resume::Rollback,
                    );
                }
                let env = self.env.clone();
                let Some(e) = self.env_cfg(&env) else { return };
                let probe = self.probe_effect(now, fx, &e, format!("after rollback {env}"));
                self.activity = Activity::Probe { probe, task: Task::RollbackProbe { started } };
            }
            Task::RollbackStaging { step, reason, gate } => {
                let note = if outcome.succeeded() {
                    "staging rolled back".to_string()
                } else {
                    format!("staging rollback failed ({})", outcome.summary())
                };
                self.halt(now, fx, step, format!("{reason}; {note}"), Some(gate), Resume::Phase);
            }
            Task::ValidateProbe
            | Task::RehearsalProbe { .. }
            | Task::BaselineProbe
            | Task::SoakProbe { .. }
            | Task::RollbackProbe { .. } => {}
        }
    }

    fn write_rehearsal(
        &mut self,
        now: Timestamp,
        fx: &mut Fx,
        env: &str,
        recovery_ms: Option<u64>,
        failure: Option<String>,
    ) {
        let step = self.step().clone();
        if step.evidence.is_empty() {
            return;
        }
        let jobs: Vec<serde_json::Value> = self
            .jobs
            .iter()
            .filter(|j| j.env == env && (j.purpose.starts_with("rollback rehearsal") || j.purpose.starts_with("roll forward")))
            .map(|j| serde_json::json!({"action": j.purpose, "argv": j.argv, "exit_code": j.outcome.as_ref().and_then(|o| o.exit_code), "duration_ms": j.outcome.as_ref().map(|o| o.duration_ms), "started_at": j.started_at.rfc3339()}))
            .collect();
        let probe = self
            .probes
            .iter()
            .rev()
            .find(|p| p.env == env && p.purpose.starts_with("after rollback rehearsal"))
            .and_then(|p| p.report.clone());
        let rto = self.constants().get("rto").copied().unwrap_or(0.0);
        let body = serde_json::json!({
            "environment": env,
            "steps": jobs,
            "probe_after_rollback": probe,
            "recovery_seconds": recovery_ms.map(|m| m as f64 / 1000.0),
            "rto_seconds": rto,
            "within_rto": recovery_ms.map(|m| m as f64 / 1000.0 <= rto),
            "failure": failure,
        });
        self.write_step_json(now, fx, &step, body);
    }

    fn probe_finished(&mut self, probe: &str, report: &ProbeReport, now: Timestamp, fx: &mut Fx) {
        if let Some(p) = self.probes.iter_mut().find(|p| p.id == probe) {
            if p.report.is_some() {
                return;
            }
            p.report = Some(report.clone());
        }
        let Activity::Probe { probe: current, task } = self.activity.clone() else { return };
        if current != probe {
            return;
        }
        self.activity = Activity::Idle;
        if self.run_queued_rollback(now, fx, &task) {
            return;
        }
        match task {
            Task::DeployStep { index } => self.deploy_probe_done(now, fx, index, report),
            Task::ValidateProbe => self.validation_done(now, fx, report),
            Task::RehearsalProbe { started, job_ms } => {
                let StepRun::RollbackRehearsal { env } = self.step().run.clone() else { return };
                let Some(e) = self.env_cfg(&env) else { return };
                if !Self::probe_ok(&e, report) {
                    self.write_rehearsal(now, fx, &env, None, Some(Self::probe_summary(report)));
                    return self.step_failed(
                        now,
                        fx,
                        format!("{env} unhealthy after the rollback rehearsal: {}", Self::probe_summary(report)),
                    );
                }
                let recovery_ms = now.0.saturating_sub(started.0).max(job_ms);
                // Restore the candidate so that later checks see the version under release.
                let log = self.evidence_path(&format!("{env}-rollback-rehearsal.log"));
                self.start_job(
                    now,
                    fx,
                    JobAsk {
                        env: &env,
                        purpose: format!("roll forward {env}"),
                        template: &e.deploy,
                        percent: 100,
                        log,
                        output: None,
                    },
                    Task::RollForward { recovery_ms },
                );
            }
            Task::BaselineProbe => {
                let step = self.step().clone();
                let text = super::render::baseline_doc(self, now, &step, report);
                self.write_step_file(fx, &step, text);
                self.step_note(now, fx, format!("baseline captured: {}.", Self::probe_summary(report)));
                self.run(now, fx, Entered::Done, false);
            }
            Task::SoakProbe { until } => self.soak_probe(now, fx, report, until),
            Task::RollbackProbe { started } => {
                let env = self.env.clone();
                let Some(e) = self.env_cfg(&env) else { return };
                let healthy = Self::probe_ok(&e, report);
                let serving_new = report.version_share(&self.version) > 0.0;
                if !healthy || serving_new {
                    return self.halt(
                        now,
                        fx,
                        format!("rollback of {env}"),
                        format!(
                            "after the rollback job {env} is not healthy on the previous version: {}",
                            Self::probe_summary(report)
                        ),
                        None,
                        Resume::Rollback,
                    );
                }
                let summary = Self::probe_summary(report);
                if let Some(r) = self.rollback.as_mut() {
                    r.finished_at = Some(now);
                    r.confirmed = Some(summary.clone());
                }
                let secs = now.0.saturating_sub(started.0) as f64 / 1000.0;
                self.post(now, fx, None, format!("[RAY ANNOUNCEMENT] Rollback of {env} complete in {secs:.1}s; probe confirms the previous version serves again: {summary}."), Ask::Nothing);
                let dir = self.plan.protocols.last().map(|p| p.artifacts_dir.clone()).unwrap_or_default();
                let text = super::render::rollback_plan(self, now);
                self.write(fx, format!("{dir}/rollback-plan.md"), text);
                let reason = self.rollback.as_ref().map(|r| r.reason.clone()).unwrap_or_default();
                self.finish(now, fx, Terminal::RolledBack { reason });
            }
            Task::Suite { .. }
            | Task::Rehearsal { .. }
            | Task::RollForward { .. }
            | Task::Security
            | Task::OptionalJob
            | Task::Rollback { .. }
            | Task::RollbackStaging { .. } => {}
        }
    }

    fn soak_probe(&mut self, now: Timestamp, fx: &mut Fx, report: &ProbeReport, until: Timestamp) {
        let StepRun::HealthWindow { env } = self.step().run.clone() else { return };
        let Some(e) = self.env_cfg(&env) else { return };
        if !Self::probe_ok(&e, report) {
            self.add_metric("slo_breaches", 1.0);
        }
        self.soak.push(report.clone());
        if now < until {
            let timer = self.arm(fx, now.plus_ms(e.health_window.interval_ms).min(until));
            self.activity = Activity::Soak { until, timer };
            return;
        }
        let step = self.step().clone();
        let text = super::render::health_log(self, now, &step, &e);
        self.write_step_file(fx, &step, text);
        let breaches = self.metric("slo_breaches").unwrap_or(0.0);
        self.step_note(
            now,
            fx,
            format!("Health window over: {} probe rounds, {} SLO breaches.", self.soak.len(), breaches),
        );
        if breaches > 0.0 {
            return self.step_failed(now, fx, format!("{breaches} SLO breaches during the health window"));
        }
        self.run(now, fx, Entered::Done, false);
    }

    fn inputs_checked(&mut self, check: &str, results: &[InputStatus], now: Timestamp, fx: &mut Fx) {
        let Activity::Inputs { check: current } = self.activity.clone() else { return };
        if current != check {
            return;
        }
        self.activity = Activity::Idle;
        let mut results = results.to_vec();
        // Files this release wrote itself must still carry the digest the bundle recorded.
        for r in &mut results {
            if let Some(sha) = &r.sha256 {
                let recorded = self.bundles.iter().find(|b| b.zip == r.name).map(|b| b.zip_sha256.clone());
                if recorded.is_some_and(|rec| &rec != sha) {
                    r.status = "checksum mismatch".into();
                }
            }
        }
        self.inputs.push((check.to_string(), results.clone()));
        let required: Vec<&InputStatus> = results.iter().filter(|r| r.required).collect();
        let ok = required.iter().filter(|r| r.status == "present").count();
        let mut total = required.len();
        let mut good = ok;
        // Protocols after the first also need the earlier go/no-go decisions and a verified rollback.
        let extra = if self.cursor.protocol > 0 {
            let approved = self.rounds.iter().any(|r| r.decision.as_deref() == Some("approved"));
            let rollback = self.metrics.iter().take(self.cursor.protocol).any(|m| m.contains_key("recovery_seconds"));
            total += 2;
            good += usize::from(approved) + usize::from(rollback);
            vec![
                serde_json::json!({"item": "readiness approvals recorded", "status": if approved {"present"} else {"missing"}}),
                serde_json::json!({"item": "rollback plan verified (rehearsal)", "status": if rollback {"present"} else {"missing"}}),
            ]
        } else {
            Vec::new()
        };
        let score = if total == 0 { 1.0 } else { good as f64 / total as f64 };
        self.set_metric("completeness_score", score);
        self.set_metric("checklist_completion", score);
        let step = self.step().clone();
        {
            let body = serde_json::json!({
                "artifacts": results,
                "checks": extra,
                "approvals_required": self.protocol().prerequisites.approvals,
                "system_states": self.protocol().prerequisites.system_states,
                "completeness": score,
                "status": if good == total { "complete" } else { "incomplete" },
            });
            self.write_step_json(now, fx, &step, body);
        }
        let missing: Vec<String> = results
            .iter()
            .filter(|r| r.required && r.status != "present")
            .map(|r| format!("{} ({})", r.name, r.status))
            .chain(
                extra.iter().filter(|c| c["status"] == "missing").map(|c| c["item"].as_str().unwrap_or("").to_string()),
            )
            .collect();
        self.step_note(
            now,
            fx,
            format!(
                "Prerequisites: {good}/{total} present{}.",
                if missing.is_empty() {
                    String::new()
                } else {
                    format!("; missing or invalid: {}", missing.join(", "))
                }
            ),
        );
        if !missing.is_empty() {
            return self.step_failed(now, fx, format!("prerequisites missing or invalid: {}", missing.join(", ")));
        }
        self.run(now, fx, Entered::Done, false);
    }

    fn bundle_written(&mut self, bundle: &str, report: &BundleReport, now: Timestamp, fx: &mut Fx) {
        if !self.bundles.iter().any(|b| b == report) {
            self.bundles.push(report.clone());
        }
        for f in &report.files {
            self.evidence.insert(f.path.clone());
        }
        let Activity::Bundle { bundle: current, finish } = self.activity.clone() else { return };
        if current != bundle {
            return;
        }
        self.activity = Activity::Idle;
        if let Some(outcome) = finish {
            return self.end(now, fx, outcome);
        }
        let step = self.step().clone();
        // The manifest is written by the bundle itself: count only the files the step asked for.
        let manifest = match &step.run {
            StepRun::Package { manifest: Some(m), .. } => Some(self.evidence_path(m)),
            _ => None,
        };
        let found = report.files.iter().filter(|f| Some(&f.path) != manifest.as_ref()).count();
        let asked = found + report.missing.len();
        let completeness = if asked == 0 { 0.0 } else { found as f64 / asked as f64 };
        match step.run {
            StepRun::Package { .. } => {
                self.set_metric("manifest_completeness", completeness);
                self.step_note(
                    now,
                    fx,
                    format!(
                        "{} written: {} files, SHA-256 {}{}.",
                        report.zip,
                        report.files.len(),
                        &report.zip_sha256[..report.zip_sha256.len().min(12)],
                        if report.missing.is_empty() {
                            String::new()
                        } else {
                            format!("; missing: {}", report.missing.join(", "))
                        }
                    ),
                );
                if !report.missing.is_empty() {
                    return self.step_failed(
                        now,
                        fx,
                        format!("package incomplete: {} missing", report.missing.join(", ")),
                    );
                }
            }
            StepRun::Report { .. } => {
                let expected = self.expected_evidence();
                let present = expected.iter().filter(|e| report.files.iter().any(|f| &f.path == *e)).count();
                let rc = if expected.is_empty() { 1.0 } else { present as f64 / expected.len() as f64 };
                self.set_metric("report_completeness", rc);
                self.step_note(
                    now,
                    fx,
                    format!(
                        "DEPLOYMENT-REPORT.md and {} written ({} files, report completeness {:.0}%).",
                        report.zip,
                        report.files.len(),
                        rc * 100.0
                    ),
                );
            }
            _ => {}
        }
        self.run(now, fx, Entered::Done, false);
    }

    /// Evidence the current protocol's MUST steps up to the current one should have produced.
    fn expected_evidence(&self) -> Vec<String> {
        let p = self.protocol();
        let mut out = Vec::new();
        for (pi, phase) in p.phases.iter().enumerate() {
            for (si, s) in phase.steps.iter().enumerate() {
                if (pi, si) > (self.cursor.phase, self.cursor.step) {
                    return out;
                }
                if s.level == Level::Must && !matches!(s.run, StepRun::Report { .. }) {
                    out.extend(
                        s.evidence.iter().filter(|e| !e.ends_with(".zip")).map(|e| format!("{}/{e}", p.artifacts_dir)),
                    );
                }
            }
        }
        out
    }

    fn tick(&mut self, timer: &str, now: Timestamp, fx: &mut Fx) {
        match self.activity.clone() {
            Activity::Acks { reminder } if reminder == timer => {
                self.freeze.reminders += 1;
                let missing: Vec<String> = self.freeze_missing().iter().map(|u| self.mention(u)).collect();
                self.post(
                    now,
                    fx,
                    None,
                    format!("[RAY REMINDER] Change freeze for {} still needs acknowledgement from {} — react with :{}: on the freeze message or type `/ray ack`.", self.version, missing.join(", "), self.plan.policy.ack_emoji),
                    Ask::Nothing,
                );
                let reminder = self.arm(fx, now.plus_ms(self.plan.policy.remind_after_ms));
                self.activity = Activity::Acks { reminder };
            }
            Activity::Approval { round, reminder } if reminder == timer => {
                let r = self.rounds[round].clone();
                let cover = self.coverage(&r);
                let missing: Vec<String> = r
                    .roles
                    .iter()
                    .zip(&cover)
                    .filter(|(_, c)| c.is_none())
                    .map(|(role, _)| self.role_people(role))
                    .collect();
                self.post(
                    now,
                    fx,
                    None,
                    format!("[RAY REMINDER] Go/no-go for {} is waiting for: {}.", self.version, missing.join(", ")),
                    Ask::Nothing,
                );
                let reminder = self.arm(fx, now.plus_ms(self.plan.policy.remind_after_ms));
                self.activity = Activity::Approval { round, reminder };
            }
            Activity::Soak { timer: t, until } if t == timer => {
                let StepRun::HealthWindow { env } = self.step().run.clone() else { return };
                let Some(e) = self.env_cfg(&env) else { return };
                let probe = self.probe_effect(now, fx, &e, format!("health window {env}"));
                self.activity = Activity::Probe { probe, task: Task::SoakProbe { until } };
            }
            _ => {}
        }
    }

    /// The job the release waits for will never report: halt and wait for `/ray retry` or
    /// `/ray rollback` (it is never run again by itself).
    fn job_unknown(&mut self, job: &str, task: Task, before: &str, now: Timestamp, fx: &mut Fx) {
        let purpose = self.jobs.iter().find(|j| j.id == job).map(|j| j.purpose.clone()).unwrap_or_default();
        let (step, resume) = match task {
            Task::Rollback { .. } => (format!("rollback of {}", self.env), Resume::Rollback),
            _ => (format!("{} ({purpose})", self.step_label()), Resume::Step),
        };
        self.halt(now, fx, step, format!("job outcome unknown after {before} stopped"), None, resume);
    }

    fn job_lost(&mut self, job: &str, replica: &str, now: Timestamp, fx: &mut Fx) {
        match self.activity.clone() {
            Activity::Job { job: current, task } if current == job => {
                // A `/ray rollback` asked for while the job ran is the instruction: say what
                // happened, then roll back.
                let rollback = if matches!(task, Task::Rollback { .. } | Task::RollbackProbe { .. }) {
                    None
                } else {
                    self.rollback_requested.take()
                };
                self.job_unknown(job, task, replica, now, fx);
                if let Some((by, reason)) = rollback {
                    self.start_rollback(now, fx, reason, by);
                }
            }
            // A result recorded meanwhile, or a job the release no longer waits for: nothing to say.
            _ => {}
        }
    }

    fn resumed(&mut self, replica: &str, previous: Option<&str>, jobs_queued: bool, now: Timestamp, fx: &mut Fx) {
        let before = previous
            .map(str::to_string)
            .or_else(|| self.last_replica.clone())
            .unwrap_or_else(|| "the previous raybot process".into());
        self.last_replica = Some(replica.to_string());
        match self.activity.clone() {
            Activity::Job { job, task } => {
                let spec = self.jobs.iter().find(|j| j.id == job).and_then(|j| j.spec.clone());
                match spec {
                    // The queue runs it, or has it running on a live replica, or reports it lost.
                    Some(spec) if jobs_queued => fx.push(Effect::RunJob(spec)),
                    _ => self.job_unknown(&job, task, &before, now, fx),
                }
            }
            Activity::Probe { task, .. } => {
                // Probes only read: run them again.
                let env = match &task {
                    Task::RollbackProbe { .. } => self.env.clone(),
                    _ => match &self.step().run {
                        StepRun::Deploy { env }
                        | StepRun::Validate { env }
                        | StepRun::RollbackRehearsal { env }
                        | StepRun::Baseline { env }
                        | StepRun::HealthWindow { env } => env.clone(),
                        _ => self.env.clone(),
                    },
                };
                if let Some(e) = self.env_cfg(&env) {
                    let probe = self.probe_effect(now, fx, &e, format!("resumed probe {env}"));
                    self.activity = Activity::Probe { probe, task };
                }
            }
            Activity::Inputs { .. } | Activity::Idle => {
                self.run(now, fx, Entered::Waiting, true);
            }
            Activity::Bundle { finish, .. } => match finish {
                Some(outcome) => self.finish(now, fx, outcome),
                None => self.run(now, fx, Entered::Waiting, true),
            },
            Activity::Acks { .. } => {
                let step = self.step().clone();
                let text = self.freeze_text(&step);
                self.post(
                    now,
                    fx,
                    Some("freeze".into()),
                    format!("[RAY] Resumed after a restart.\n{text}"),
                    Ask::Reaction { emoji: self.plan.policy.ack_emoji.clone() },
                );
                let reminder = self.arm(fx, now.plus_ms(self.plan.policy.remind_after_ms));
                self.activity = Activity::Acks { reminder };
            }
            Activity::Approval { round, .. } => {
                self.post_approval_request(now, fx, round, "[RAY] Resumed after a restart.\n");
            }
            Activity::Soak { until, .. } => {
                let timer = self.arm(fx, now);
                self.activity = Activity::Soak { until, timer };
            }
            Activity::Halted(_) | Activity::Ended(_) => {}
        }
    }

    /// Prerequisite artifacts of the current protocol: (name, required).
    pub fn protocol_prerequisites(&self) -> Vec<(String, bool)> {
        self.protocol().prerequisites.artifacts.iter().map(|a| (a.name.clone(), a.required)).collect()
    }

    /// `/ray status` text.
    pub fn status_text(&self) -> String {
        let p = self.protocol();
        let phase = &p.phases[self.cursor.phase.min(p.phases.len() - 1)];
        let mut s = format!(
            "[RAY STATUS] {} — {} → {} ({}), started by {} at {}. Protocol {} phase {} ({}): {}.",
            self.id,
            self.version,
            self.env,
            self.strategy.as_str(),
            self.mention(&self.started_by.id),
            self.started_at.rfc3339(),
            p.id,
            phase.number,
            phase.title,
            self.activity.label()
        );
        match &self.activity {
            Activity::Acks { .. } => {
                let missing: Vec<String> = self.freeze_missing().iter().map(|u| self.mention(u)).collect();
                s.push_str(&format!(
                    " Freeze acknowledgements {}/{}; missing: {}.",
                    self.freeze.acks.len(),
                    self.freeze.required.len(),
                    missing.join(", ")
                ));
            }
            Activity::Approval { round, .. } => {
                let r = &self.rounds[*round];
                let got: Vec<String> = r.approvals.iter().map(|a| self.mention(&a.user)).collect();
                s.push_str(&format!(
                    " Approvals so far: {}; required roles: {}.",
                    if got.is_empty() { "none".into() } else { got.join(", ") },
                    r.roles.join(", ")
                ));
            }
            Activity::Halted(h) => s.push_str(&format!(" Halted at {}: {}.", h.step, h.reason)),
            _ => {}
        }
        let gates: Vec<String> = self
            .gates
            .iter()
            .map(|g| {
                format!(
                    "{} {}",
                    g.name,
                    match g.verdict {
                        Verdict::Passed => "passed",
                        Verdict::Failed => "failed",
                        Verdict::Waived { .. } => "waived",
                    }
                )
            })
            .collect();
        if !gates.is_empty() {
            s.push_str(&format!(" Gates: {}.", gates.join("; ")));
        }
        s
    }
}

/// Emoji names and characters that mean the same acknowledgement (Slack sends names, Discord the
/// character).
fn same_emoji(a: &str, b: &str) -> bool {
    fn norm(s: &str) -> &str {
        match s.trim_matches(':') {
            "✅" | "white_check_mark" | "heavy_check_mark" | "✔️" => "white_check_mark",
            other => other,
        }
    }
    norm(a) == norm(b)
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

pub(crate) fn fmt_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.3}").trim_end_matches('0').to_string()
    }
}
