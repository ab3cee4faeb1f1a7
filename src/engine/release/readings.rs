//! What a result of the current step means, planned before anything changes: the figures,
//! evidence and posts it leads to, then the [`Next`] step. A read-only view of the release (an
//! `impl Release` block) that asks the step sub-machines (`steps`, `rollout`, `rehearsal`,
//! `intake`, `packaging`, `scores`) and renders the evidence; `mod.rs` performs the [`Reading`].

use serde_json::Value;

use super::approval::RoundOutcome;
use super::gates::{self, GateVerdict, OnFailure, Parity, Verdict};
use super::intake::{Earlier, Intake};
use super::packaging;
use super::recovery;
use super::rehearsal::{self, Rehearsal};
use super::rollback::{self, RollbackStep};
use super::rollout::{self, ProbeStep, Rollout};
use super::scores::{self, Validation};
use super::state::{Halt, JobRecord, Release, Resume, RollbackRecord, Task, Terminal};
use super::steps::{self, Act, Next, Reading};
use crate::engine::Timestamp;
use crate::engine::ids::{JobId, PostKey};
use crate::engine::plan::{Environment, GATE_DECIDES_LOST_FIGURES, PROVEN_REHEARSAL, ROLLBACK_ONLY_CHANGED};
use crate::engine::reports::{BundleReport, InputStatus, JobOutcome, ProbeReport};
use crate::protocol::model::{DocumentTemplate, HaltKind, Level, StepRun};

/// A gate evaluated: the verdict to record, the post, and what a failure does.
pub(super) struct GateRun {
    /// The evaluation, as recorded.
    pub(super) verdict: GateVerdict,
    /// Posted to everyone.
    pub(super) text: String,
    /// Set when the gate failed.
    pub(super) failure: Option<GateFailed>,
}

/// A failed gate.
pub(super) struct GateFailed {
    /// The halt's step: `<gate name> (Protocol <id> gate <n>)`.
    pub(super) step: String,
    /// The figures against the threshold.
    pub(super) reason: String,
    /// Gate id.
    pub(super) gate: String,
    /// Gate name.
    pub(super) name: String,
    /// Halt, roll staging back, or roll the target back.
    pub(super) handling: OnFailure,
}

/// Where a step's met halt condition goes first.
pub(super) enum HaltRoute {
    /// On to the next step (a guideline, or a waived gate: then this is posted).
    Continue(Option<String>),
    /// The phase's gate decides first.
    Gate(String),
    /// The step's own halt handling.
    Own,
}

impl Release {
    /// The step's JSON evidence (common header and `body`), when the step names a file.
    pub(super) fn step_json(&self, now: Timestamp, body: Value) -> Option<Act> {
        let step = self.step();
        let name = step.evidence.first()?;
        Some(Act::Write(self.evidence_path(name), self.json_doc(now, step, body)))
    }

    /// `contents` as the step's evidence, when the step names a file.
    pub(super) fn step_file(&self, contents: String) -> Option<Act> {
        Some(Act::Write(self.evidence_path(self.step().evidence.first()?), contents))
    }

    /// The environment of the current step, when it is of the kind `task` belongs to.
    fn task_env(&self, task: &Task) -> Option<&str> {
        match (&self.step().run, task) {
            (StepRun::Deploy { env }, Task::DeployStep { .. })
            | (StepRun::Validate { env }, Task::Suite { .. } | Task::ValidateProbe)
            | (
                StepRun::RollbackRehearsal { env },
                Task::RehearsalBefore
                | Task::Rehearsal { .. }
                | Task::RehearsalProbe { .. }
                | Task::RollForward { .. }
                | Task::RollForwardProbe { .. },
            ) => Some(env),
            _ => None,
        }
    }

    /// What the job awaited as `task` ending with `outcome` means; `None` for a job of another
    /// kind of step than the current one.
    pub(super) fn read_job(&self, task: &Task, outcome: &JobOutcome, now: Timestamp) -> Option<Reading> {
        let reading = match task {
            Task::DeployStep { index } => {
                let env = self.task_env(task)?;
                match steps::after_deploy_job(self.strategy, env, *index, outcome) {
                    Next::Failed(reason) => self.deploy_failure(now, env, reason, Vec::new()),
                    next => next.into(),
                }
            }
            Task::Suite { index } => steps::validation(self.setting(), self.task_env(task)?, index + 1).into(),
            Task::Rehearsal { started } => {
                let env = self.task_env(task)?;
                self.rehearsal(now, env, rehearsal::after_rollback_job(env, *started, outcome))
            }
            Task::RollForward { recovery_ms, previous } => {
                let env = self.task_env(task)?;
                let read = if self.plan.under(PROVEN_REHEARSAL) {
                    rehearsal::after_roll_forward(env, &self.version, outcome, *recovery_ms, previous)
                } else {
                    let rto = self.constants().get("rto").copied().unwrap_or(0.0);
                    rehearsal::after_unproven_roll_forward(env, &self.version, outcome, *recovery_ms, rto)
                };
                self.rehearsal(now, env, read)
            }
            Task::Security => {
                let findings = scores::blocking_findings(outcome);
                let (note, next) = steps::after_scan(outcome, findings);
                let mut acts = vec![Act::Set("blocking_findings", findings)];
                acts.extend(self.step_json(now, Self::security_body(Some(outcome), Some(findings))));
                acts.push(Act::Note(note));
                Reading { acts, next }
            }
            Task::OptionalJob => steps::after_optional_job(outcome).into(),
            Task::Rollback { started } => self.rolled_back(now, rollback::after_job(outcome), *started),
            Task::RollbackStaging { step, reason, gate } => {
                let reason = format!("{reason}; {}", rollback::staging_note(outcome));
                let halt =
                    Halt { step: step.clone(), reason, gate: Some(gate.clone()), resume: Resume::Phase, at: now };
                Next::Halt(halt).into()
            }
            _ => return None,
        };
        Some(reading)
    }

    /// What the probe awaited as `task` reporting `report` means; `None` for a probe of another
    /// kind of step.
    pub(super) fn read_probe(&self, task: &Task, report: &ProbeReport, now: Timestamp) -> Option<Reading> {
        let reading = match task {
            Task::SoakProbe { until } => self.soak_round(now, report, *until)?,
            Task::DeployStep { index } => self.deploy_probe(now, self.task_env(task)?, *index, report)?,
            Task::ValidateProbe => self.validation(now, self.task_env(task)?, report)?,
            Task::RehearsalBefore => {
                let env = self.task_env(task)?;
                let read = rehearsal::before_rollback(self.setting(), env, &self.version, report, now)?;
                self.rehearsal(now, env, read)
            }
            Task::RehearsalProbe { started, job_ms } => {
                let env = self.task_env(task)?;
                let read =
                    rehearsal::after_probe(self.setting(), env, &self.version, report, (*started, *job_ms), now)?;
                self.rehearsal(now, env, read)
            }
            Task::RollForwardProbe { recovery_ms, previous } => {
                let env = self.task_env(task)?;
                let rto = self.constants().get("rto").copied().unwrap_or(0.0);
                let read = rehearsal::after_roll_forward_probe(
                    self.setting(),
                    env,
                    &self.version,
                    report,
                    (*recovery_ms, previous),
                    rto,
                )?;
                self.rehearsal(now, env, read)
            }
            Task::BaselineProbe => {
                let doc = self.baseline_doc(now, self.step(), report);
                let note = format!("baseline captured: {}.", rollout::summary(report));
                Reading { acts: self.step_file(doc).into_iter().collect(), next: Next::Note(note) }
            }
            Task::RollbackProbe { started } => {
                let e = self.plan.environment(&self.env)?;
                self.rolled_back(now, rollback::after_probe(&e.probe, report, &self.env, &self.version), *started)
            }
            _ => return None,
        };
        Some(reading)
    }

    /// The target's rollback for `reason` starting: announced, recorded, and its job run
    /// (`None` when the target is not configured).
    pub(super) fn rollback_start(&self, now: Timestamp, reason: String, trigger: String) -> Option<Reading> {
        let env = &self.env;
        let e = self.plan.environment(env)?;
        let dir = self.plan.protocols.last().map(|p| p.artifacts_dir.as_str()).unwrap_or_default();
        let ask = rollback::job(env, e, format!("{dir}/{env}-rollback-run.log"));
        let said = Act::Say(self.rollback_started_text(env, &reason, &trigger));
        let record = RollbackRecord::start(env.clone(), reason, trigger, now);
        let next = Next::Job { ask, task: Task::Rollback { started: now }, note: None };
        Some(Reading { acts: vec![said, Act::Rollback(Some(Box::new(record)))], next })
    }

    /// A result of the target's rollback (begun at `started`): the probe that confirms it, a halt
    /// when it did not take, or the end, rolled back, with the confirmed record and the plan.
    fn rolled_back(&self, now: Timestamp, step: RollbackStep, started: Timestamp) -> Reading {
        let env = &self.env;
        let summary = match step {
            RollbackStep::Probe => {
                let (purpose, task) = (format!("after rollback {env}"), Task::RollbackProbe { started });
                return Next::Probe { env: env.clone(), purpose, task }.into();
            }
            RollbackStep::Halt(reason) => {
                let step = format!("rollback of {env}");
                return Next::Halt(Halt { step, reason, gate: None, resume: Resume::Rollback, at: now }).into();
            }
            RollbackStep::Confirmed { summary } => summary,
        };
        let confirmed = self.rollback.clone().map(|mut r| {
            r.confirm(now, summary.clone());
            Box::new(r)
        });
        let secs = now.0.saturating_sub(started.0) as f64 / 1000.0;
        let dir = self.plan.protocols.last().map(|p| p.artifacts_dir.clone()).unwrap_or_default();
        let plan = Act::Write(format!("{dir}/rollback-plan.md"), self.rollback_plan(now, confirmed.as_deref()));
        let reason = confirmed.as_ref().map(|r| r.reason.clone()).unwrap_or_default();
        let acts = vec![Act::Rollback(confirmed), Act::Say(Self::rollback_done_text(env, secs, &summary)), plan];
        Reading { acts, next: Next::Finish(Terminal::RolledBack { reason }) }
    }

    /// What the failed gate's handling comes to: a halt for `/ray waive` or `/ray retry`, the
    /// staging rollback first (then the halt), or the target's rollback.
    pub(super) fn gate_failure(&self, now: Timestamp, failed: GateFailed) -> Reading {
        let GateFailed { step, reason, gate, name, handling } = failed;
        let staging = match handling {
            OnFailure::Rollback => {
                let error = Act::Say(self.rolling_back_text(&step, &reason));
                let reason = format!("{name} failed: {reason}");
                return Reading {
                    acts: vec![error],
                    next: Next::Rollback { reason, trigger: rollback::AUTOMATIC.into() },
                };
            }
            OnFailure::RollbackStaging => self.plan.environment("staging"),
            OnFailure::Halt => None,
        };
        let Some(e) = staging else {
            return Next::Halt(Halt { step, reason, gate: Some(gate), resume: Resume::Phase, at: now }).into();
        };
        let ask = rollback::job("staging", e, self.evidence_path("staging-rollback.log"));
        Reading {
            acts: vec![Act::Say("[RAY] Rolling staging back as the gate's failure handling requires.".into())],
            next: Next::Job { ask, task: Task::RollbackStaging { step, reason, gate }, note: None },
        }
    }

    /// The current step's own halt handling once its halt condition held for `reason`: roll back
    /// (once the target changed), halt naming the condition (escalate), or halt.
    pub(super) fn own_halt(&self, now: Timestamp, reason: String) -> Next {
        let (step, label, gate) = (self.step(), self.step_label(), self.phase().gate.clone());
        let reason = match step.halt.unwrap_or(HaltKind::Stop) {
            HaltKind::Rollback if self.production_touched => {
                return Next::Rollback { reason: format!("{label}: {reason}"), trigger: rollback::AUTOMATIC.into() };
            }
            HaltKind::Escalate => format!("{reason}. {}", step.halt_condition.clone().unwrap_or_default()),
            _ => reason,
        };
        Next::Halt(Halt { step: label, reason, gate, resume: Resume::Step, at: now })
    }

    /// Where the release halts when job `job`, awaited as `task`, will never report because
    /// `before` stopped: it waits for `/ray retry` or `/ray rollback` (never runs it by itself).
    pub(super) fn lost_job(&self, job: &JobId, task: &Task, before: &str, now: Timestamp) -> Halt {
        let purpose = self.jobs.iter().find(|j| j.id == *job).map(|j| j.purpose.as_str()).unwrap_or_default();
        let (step, resume) = recovery::lost_job_halt(task, &self.env, format!("{} ({purpose})", self.step_label()));
        Halt { step, reason: format!("job outcome unknown after {before} stopped"), gate: None, resume, at: now }
    }

    /// The deploy step's report on `env`, when the step names a JSON file for it.
    fn deploy_report(&self, now: Timestamp, env: &str, failure: Option<&str>) -> Option<Act> {
        let step = self.step();
        let name = step.evidence.iter().find(|e| e.ends_with(".json"))?;
        Some(Act::Write(self.evidence_path(name), self.json_doc(now, step, self.deploy_report_body(env, failure))))
    }

    /// The deploy to `env` failed for `reason` (after `acts`): the blocking figures, the report,
    /// the announcement once the target changed, and the step's halt condition.
    fn deploy_failure(&self, now: Timestamp, env: &str, reason: String, mut acts: Vec<Act>) -> Reading {
        acts.extend([Act::Add("blocking_errors", 1.0), Act::Add("blocking_incidents", 1.0)]);
        acts.extend(self.deploy_report(now, env, Some(&reason)));
        if env == self.env && self.production_touched {
            acts.push(Act::Say(self.deploy_stopped_text(env, &reason)));
        }
        Reading { acts, next: Next::Failed(reason) }
    }

    /// The rollout's reading of the probe after sub-step `index`: fail, announce or note, then
    /// the next sub-step or the end of the step.
    fn deploy_probe(&self, now: Timestamp, env: &str, index: usize, report: &ProbeReport) -> Option<Reading> {
        let e = self.plan.environment(env)?;
        let rollout = Rollout { strategy: self.strategy };
        let mut acts = Vec::new();
        if env == self.env {
            acts.push(Act::Set("validation_success_rate", report.success_rate()));
        }
        let summary = rollout::summary(report);
        let outcome = rollout.after_probe(index, &e.probe, report, &self.version);
        if let Some(reason) = outcome.failure(&summary, &self.version) {
            return Some(self.deploy_failure(now, env, reason, acts));
        }
        // The target's deploy announces its milestones (start, 50%, completion) to everyone,
        // whatever the pipeline; a deploy to another environment (staging) notes each step.
        let announce = env == self.env;
        if !announce {
            acts.push(Act::Note(format!("{env} at {}%: {summary}", rollout.percent(index))));
        } else if outcome.halfway() {
            acts.push(Act::Say(self.deploy_halfway_text(env, rollout.percent(index), report, &summary)));
        }
        if let ProbeStep::Next { next, .. } = outcome {
            acts.push(Act::Rollout(next));
            return Some(Reading { acts, next: steps::deploy(self.setting(), self.step(), env, next) });
        }
        if announce {
            acts.push(Act::Say(self.deploy_complete_text(env)));
        }
        acts.extend([Act::Add("blocking_errors", 0.0), Act::Add("blocking_incidents", 0.0)]);
        acts.extend(self.deploy_report(now, env, None));
        acts.push(Act::Rollout(0));
        Some(Reading { acts, next: Next::Done })
    }

    /// The validation of `env` after its probe: the figures, the report and the verdict.
    fn validation(&self, now: Timestamp, env: &str, report: &ProbeReport) -> Option<Reading> {
        let e = self.plan.environment(env)?;
        let suite_jobs = scores::suite_jobs(&self.jobs, env, e.validation.len());
        let score = Validation::score(suite_jobs, &e.validation, rollout::healthy(&e.probe, report));
        // Coverage that was not measured stays unset: a gate that reads it fails as "not measured".
        let mut acts: Vec<Act> = score.coverage.map(|c| Act::Set("coverage", c)).into_iter().collect();
        acts.extend([
            Act::Set("validation_success_rate", report.success_rate()),
            Act::Add("blocking_errors", score.blocking),
            Act::Add("blocking_incidents", score.blocking),
        ]);
        acts.extend(self.step_json(now, self.validation_body(env, e, suite_jobs, &score, report)));
        let (note, next) = steps::after_validation(env, &e.validation, &score, &rollout::summary(report));
        acts.push(Act::Note(note));
        Some(Reading { acts, next })
    }

    /// A reading of the rollback rehearsal on `env`: its evidence, the recovery time, the note.
    fn rehearsal(&self, now: Timestamp, env: &str, read: Rehearsal) -> Reading {
        match read {
            Rehearsal::Go(next) => next.into(),
            Rehearsal::Failed { reason, evidence: None } => Next::Failed(reason).into(),
            Rehearsal::Failed { reason, evidence } => Reading {
                acts: self.step_json(now, self.rehearsal_body(env, None, evidence)).into_iter().collect(),
                next: Next::Failed(reason),
            },
            Rehearsal::Recovered { recovery_ms, note, next } => {
                let mut acts: Vec<Act> =
                    self.step_json(now, self.rehearsal_body(env, Some(recovery_ms), None)).into_iter().collect();
                acts.extend([Act::Set("recovery_seconds", recovery_ms as f64 / 1000.0), Act::Note(note)]);
                Reading { acts, next }
            }
        }
    }

    /// The parity step: staging and production compared, the drift figure, evidence and verdict.
    pub(super) fn parity(&self, now: Timestamp) -> Reading {
        let parity_of = |env: &str| self.plan.environment(env).map(|e| e.parity.clone()).unwrap_or_default();
        let parity = Parity::compare(&parity_of("staging"), &parity_of("production"));
        let mut acts = vec![Act::Set("drift_severity", parity.worst)];
        acts.extend(self.step_json(now, parity.body()));
        acts.push(Act::Note(parity.note()));
        Reading { acts, next: parity.failure().map_or(Next::Done, Next::Failed) }
    }

    /// A security step without a configured scanner: findings stay unmeasured.
    pub(super) fn unscanned(&self, now: Timestamp) -> Reading {
        let mut acts = vec![Act::Note("no `security` job is configured: blocking findings cannot be measured.".into())];
        acts.extend(self.step_json(now, Self::security_body(None, None)));
        Reading { acts, next: Next::Done }
    }

    /// A document step: the document computed from the release, and its note.
    pub(super) fn document_step(&self, now: Timestamp, template: DocumentTemplate) -> Reading {
        let (contents, note) = self.document(now, template, self.step());
        let mut acts: Vec<Act> = contents.and_then(|c| self.step_file(c)).into_iter().collect();
        acts.push(Act::Note(note));
        Reading { acts, next: Next::Done }
    }

    /// Go/no-go round `round` after an approval: the decision, or what is still needed.
    pub(super) fn round_reading(&self, now: Timestamp, round: usize, outcome: &RoundOutcome) -> Reading {
        let r = &self.rounds[round];
        let names = self.signatures(r);
        let still = match outcome {
            RoundOutcome::Approved => {
                let mut acts = vec![
                    Act::Update(PostKey::Approval(round), Self::approved_text(&names)),
                    Act::Say(self.go_text(&names)),
                    Act::Set("approvals_recorded", 1.0),
                ];
                acts.extend(self.step_json(now, self.approval_body(r)));
                return Reading { acts, next: Next::Done };
            }
            RoundOutcome::InitiatorAlone => self.initiator_alone_text(),
            RoundOutcome::Missing(missing) => format!("still needed: {}", missing.join(", ")),
            RoundOutcome::NotRequired | RoundOutcome::Already => return Next::Wait.into(),
        };
        let last = names.last().cloned().unwrap_or_default();
        Reading { acts: vec![Act::Say(format!("[RAY] Approval recorded: {last}; {still}."))], next: Next::Wait }
    }

    /// The freeze after an acknowledgement was counted or withdrawn: the ratio, the request
    /// re-rendered (not while replaying), and once everyone `confirmed` the confirmation.
    pub(super) fn freeze_reading(&self, now: Timestamp, confirmed: bool) -> Reading {
        let mut acts = vec![Act::Set("freeze_ack_ratio", self.freeze.ratio())];
        if !self.quiet {
            acts.push(Act::Update(PostKey::Freeze, self.freeze_text(self.step())));
        }
        if !confirmed {
            return Reading { acts, next: Next::Wait };
        }
        acts.push(Act::Say(self.freeze_confirmed_text(self.phase().number)));
        acts.extend(self.step_file(self.freeze_doc(now, self.step())));
        Reading { acts, next: Next::Done }
    }

    /// The environment the current step's health window watches.
    fn window_env(&self) -> Option<&Environment> {
        let StepRun::HealthWindow { env } = &self.step().run else { return None };
        self.plan.environment(env)
    }

    /// A round of the health window (which ends at `until`) reporting `report`: a breach of the
    /// SLO counted, the round recorded, then the next round, or the window's end once it is over.
    fn soak_round(&self, now: Timestamp, report: &ProbeReport, until: Timestamp) -> Option<Reading> {
        let e = self.window_env()?;
        let mut acts = Vec::new();
        if !rollout::healthy(&e.probe, report) {
            acts.push(Act::Add("slo_breaches", 1.0));
        }
        acts.push(Act::Observe(Box::new(report.clone())));
        let next = match rollout::next_soak_round(&e.health_window, now, until) {
            Some(at) => Next::SoakRound { until, at },
            None => Next::SoakOver,
        };
        Some(Reading { acts, next })
    }

    /// The health window is over (its rounds recorded): its log, the rounds and breaches, and the
    /// verdict.
    pub(super) fn soak_over(&self, now: Timestamp) -> Reading {
        // Never unset: its rounds were read on this very step.
        let Some(env) = self.window_env() else { return Next::Wait.into() };
        let mut acts: Vec<Act> = self.step_file(self.health_log(now, self.step(), env)).into_iter().collect();
        let (note, next) = steps::after_soak(self.soak.len(), self.metric("slo_breaches").unwrap_or(0.0));
        acts.push(Act::Note(note));
        Reading { acts, next }
    }

    /// Gate `gate_id` of the current protocol evaluated at `now` on the phase's figures (`None`
    /// when the protocol has no such gate).
    pub(super) fn evaluate_gate(&self, gate_id: &str, now: Timestamp) -> Option<GateRun> {
        let p = self.protocol();
        let gate = p.gates.iter().find(|g| g.id == gate_id)?;
        let verdict = gates::evaluate(&p.id, gate, &self.phase_metrics, &self.constants(), &self.waivers, now);
        let actual = verdict.actual().join(", ");
        let threshold = &verdict.threshold;
        let (text, failure) = match &verdict.verdict {
            Verdict::Waived { by, justification } => {
                (format!("[RAY GATE WAIVED: {}] Waived by {}: {justification}", gate.name, self.mention(by)), None)
            }
            Verdict::Passed => (format!("[RAY GATE PASSED: {}] {actual} (threshold: {threshold}).", gate.name), None),
            Verdict::Failed => {
                let failure = GateFailed {
                    step: format!("{} (Protocol {} gate {})", gate.name, p.id, gate.number),
                    reason: format!("{actual} (threshold: {threshold})"),
                    gate: gate.id.clone(),
                    name: gate.name.clone(),
                    handling: gates::on_failure(gate, self.changed()),
                };
                (gates::failure_text(gate, &actual), Some(failure))
            }
        };
        Some(GateRun { verdict, text, failure })
    }

    /// Where the halt condition of the current step goes first: a guideline or a waived gate
    /// goes on, a gate whose figures are all measured or that the failed step left unmeasurable
    /// decides (see [`gates::decides`]), otherwise the step's own halt.
    pub(super) fn halt_route(&self) -> HaltRoute {
        if self.step().level == Level::Guideline {
            return HaltRoute::Continue(None);
        }
        let Some(gate_id) = self.phase().gate.clone() else { return HaltRoute::Own };
        if gates::waiver(&self.waivers, &self.protocol().id, &gate_id).is_some() {
            return HaltRoute::Continue(Some(format!("[RAY] Continuing: gate '{gate_id}' was waived.")));
        }
        match self.protocol().gates.iter().find(|g| g.id == gate_id) {
            Some(gate) if gates::decides(gate, &self.phase_metrics, self.lost_figures()) => HaltRoute::Gate(gate_id),
            _ => HaltRoute::Own,
        }
    }

    /// What the release changed, for a failed `rollback` gate of the current protocol. Under rules
    /// before [`ROLLBACK_ONLY_CHANGED`]: the target once touched, or always in a pipeline of one
    /// protocol.
    fn changed(&self) -> gates::Changed {
        if !self.plan.under(ROLLBACK_ONLY_CHANGED) {
            let target = self.production_touched || self.plan.protocols.len() == 1;
            return gates::Changed { target, staging: false };
        }
        let deployed = |env: &str, j: &&JobRecord| j.env == env && j.purpose.starts_with("deploy ");
        let mine = format!("{}/", self.protocol().artifacts_dir);
        gates::Changed {
            target: self.production_touched || self.jobs.iter().any(|j| deployed(&self.env, &j)),
            staging: self.env != "staging"
                && self.jobs.iter().any(|j| deployed("staging", &j) && j.log.starts_with(&mine)),
        }
    }

    /// The figures the current step was to measure, which its failure leaves unmeasured for its
    /// gate (none under rules before [`GATE_DECIDES_LOST_FIGURES`]).
    fn lost_figures(&self) -> &'static [&'static str] {
        if self.plan.under(GATE_DECIDES_LOST_FIGURES) { crate::protocol::metrics_of(&self.step().run) } else { &[] }
    }

    /// The prerequisite check `results`, read for the current protocol.
    pub(super) fn read_inputs(&self, results: &[InputStatus]) -> Intake {
        // Protocols after the first also need the earlier go/no-go decisions and a verified rollback.
        let earlier = (self.cursor.protocol > 0).then(|| Earlier {
            approved: self.rounds.iter().any(|r| r.is_approved()),
            rollback_verified: self
                .metrics
                .iter()
                .take(self.cursor.protocol)
                .any(|m| m.contains_key("recovery_seconds")),
        });
        Intake::read(results, &self.bundles, earlier)
    }

    /// What the prerequisite check means: completeness, evidence, note and verdict.
    pub(super) fn intake(&self, now: Timestamp, read: &Intake) -> Reading {
        let mut acts = vec![Act::Set("completeness_score", read.score), Act::Set("checklist_completion", read.score)];
        acts.extend(self.step_json(now, read.body(self.protocol())));
        acts.push(Act::Note(read.note()));
        Reading { acts, next: read.next() }
    }

    /// What the current step's bundle `report` means: package or report completeness and notes.
    pub(super) fn read_bundle(&self, report: &BundleReport) -> Reading {
        match &self.step().run {
            StepRun::Package { manifest, .. } => {
                let manifest = manifest.as_deref().map(|m| self.evidence_path(m));
                let (completeness, note, next) = packaging::package(report, manifest.as_deref());
                Reading { acts: vec![Act::Set("manifest_completeness", completeness), Act::Note(note)], next }
            }
            StepRun::Report { .. } => {
                let expected = packaging::expected_evidence(self.protocol(), self.cursor.phase, self.cursor.step);
                let (completeness, note) = packaging::report(report, &expected);
                Reading { acts: vec![Act::Set("report_completeness", completeness), Act::Note(note)], next: Next::Done }
            }
            _ => Next::Done.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::release::state::Activity;
    use crate::engine::testkit::{Sim, probe_report};
    use crate::engine::{Event, ProbeId, ReleaseCommand, Strategy};

    fn approve(sim: &mut Sim, who: &str) {
        sim.command(who, ReleaseCommand::Approve { comment: None });
    }

    #[test]
    fn an_acknowledgement_re_renders_the_request_and_the_last_one_confirms_the_freeze() {
        let mut sim = Sim::new();
        sim.start("alice", Strategy::Bluegreen);
        approve(&mut sim, "alice");
        approve(&mut sim, "bob");
        let r = sim.release();
        assert!(matches!(r.activity, Activity::Acks { .. }));
        let waiting = r.freeze_reading(sim.now, false);
        assert_eq!(waiting.next, Next::Wait);
        assert!(matches!(waiting.acts.as_slice(), [Act::Set("freeze_ack_ratio", _), Act::Update(PostKey::Freeze, _)]));
        let done = r.freeze_reading(sim.now, true);
        assert_eq!(done.next, Next::Done);
        assert!(done.acts.iter().any(|a| matches!(a, Act::Say(t) if t.contains("Change freeze confirmed"))));
    }

    #[test]
    fn a_round_the_initiator_signed_alone_asks_for_another_approver() {
        let mut sim = Sim::new();
        sim.start("alice", Strategy::Bluegreen);
        approve(&mut sim, "alice");
        let r = sim.release();
        let Activity::Approval { round, .. } = r.activity else { panic!("waiting for approvals") };
        let alone = r.round_reading(sim.now, round, &RoundOutcome::InitiatorAlone);
        assert_eq!(alone.next, Next::Wait);
        assert!(matches!(&alone.acts[..], [Act::Say(t)] if t.contains("another approver is needed")));
        let decided = r.round_reading(sim.now, round, &RoundOutcome::Approved);
        assert_eq!(decided.next, Next::Done);
        assert!(decided.acts.contains(&Act::Set("approvals_recorded", 1.0)));
    }

    #[test]
    fn a_gate_without_its_figures_fails_naming_them_and_the_threshold() {
        let mut sim = Sim::new();
        sim.start("alice", Strategy::Bluegreen);
        let mut r = sim.release().clone();
        r.phase_metrics.clear();
        let gate = r.protocol().gates.iter().find(|g| g.pass_threshold.is_some()).expect("a gate").id.clone();
        let run = r.evaluate_gate(&gate, sim.now).expect("the protocol has the gate");
        let failed = run.failure.expect("unmeasured figures fail the gate");
        assert!(failed.reason.contains("not measured") && failed.reason.contains("(threshold: "), "{}", failed.reason);
        assert_eq!(run.verdict.verdict, Verdict::Failed);
    }

    fn failed(handling: OnFailure) -> GateFailed {
        let (step, reason, gate, name) = ("G (Protocol 10 gate 1)", "x=0 (threshold: x>=1)", "g1", "G");
        GateFailed { step: step.into(), reason: reason.into(), gate: gate.into(), name: name.into(), handling }
    }

    #[test]
    fn a_failed_gate_halts_for_a_waiver_rolls_staging_back_first_or_rolls_the_target_back() {
        let mut sim = Sim::new();
        sim.start("alice", Strategy::Bluegreen);
        let r = sim.release();
        let halted = r.gate_failure(sim.now, failed(OnFailure::Halt));
        assert!(halted.acts.is_empty());
        assert!(matches!(&halted.next, Next::Halt(h) if h.gate.as_deref() == Some("g1") && h.resume == Resume::Phase));
        let staging = r.gate_failure(sim.now, failed(OnFailure::RollbackStaging));
        assert!(matches!(&staging.acts[..], [Act::Say(t)] if t.contains("Rolling staging back")));
        let Next::Job { ask, task: Task::RollbackStaging { gate, .. }, note: None } = staging.next else {
            panic!("the staging rollback job first: {:?}", staging.next)
        };
        assert_eq!((ask.env.as_str(), gate.as_str()), ("staging", "g1"));
        let target = r.gate_failure(sim.now, failed(OnFailure::Rollback));
        let rollback = Next::Rollback { reason: "G failed: x=0 (threshold: x>=1)".into(), trigger: "automatic".into() };
        assert_eq!(target.next, rollback);
    }

    #[test]
    fn a_step_halts_at_itself_until_the_target_changed_then_its_rollback_halt_rolls_back() {
        let mut sim = Sim::new();
        sim.start("alice", Strategy::Bluegreen);
        let mut r = sim.release().clone();
        let cursor = r.cursor;
        let plan = std::sync::Arc::make_mut(&mut r.plan);
        plan.protocols[cursor.protocol].phases[cursor.phase].steps[cursor.step].halt = Some(HaltKind::Rollback);
        let Next::Halt(h) = r.own_halt(sim.now, "boom".into()) else { panic!("halts before the target changed") };
        assert_eq!((h.step, h.reason, h.resume), (r.step_label(), "boom".to_string(), Resume::Step));
        r.production_touched = true;
        let rollback = Next::Rollback { reason: format!("{}: boom", r.step_label()), trigger: "automatic".into() };
        assert_eq!(r.own_halt(sim.now, "boom".into()), rollback);
    }

    #[test]
    fn a_rollback_is_probed_halts_when_it_did_not_take_and_ends_confirmed_with_its_plan() {
        let mut sim = Sim::new();
        sim.start("alice", Strategy::Bluegreen);
        let mut r = sim.release().clone();
        let started = Timestamp(sim.now.0 - 4_000);
        let probe = r.rolled_back(sim.now, RollbackStep::Probe, started);
        assert!(matches!(probe.next, Next::Probe { task: Task::RollbackProbe { .. }, .. }));
        let halt = r.rolled_back(sim.now, RollbackStep::Halt("still v1.2".into()), started);
        assert!(
            matches!(&halt.next, Next::Halt(h) if h.step == "rollback of production" && h.resume == Resume::Rollback)
        );
        r.rollback = Some(crate::engine::release::RollbackRecord::start(
            "production".into(),
            "bad".into(),
            "automatic".into(),
            started,
        ));
        let done = r.rolled_back(sim.now, RollbackStep::Confirmed { summary: "10/10 healthy".into() }, started);
        let [Act::Rollback(Some(record)), Act::Say(said), Act::Write(path, plan)] = &done.acts[..] else {
            panic!("confirm, announce, write the plan: {:?}", done.acts)
        };
        assert_eq!((record.finished_at, record.confirmed.as_deref()), (Some(sim.now), Some("10/10 healthy")));
        assert!(
            said.contains("complete in 4.0s") && path.ends_with("/rollback-plan.md") && plan.contains("10/10 healthy"),
            "{said}"
        );
        assert_eq!(done.next, Next::Finish(Terminal::RolledBack { reason: "bad".into() }));
    }

    #[test]
    fn a_rollback_starts_announced_recorded_and_with_its_job_on_the_target() {
        let mut sim = Sim::new();
        sim.start("alice", Strategy::Bluegreen);
        let r = sim.release();
        let start = r.rollback_start(sim.now, "bad".into(), "carol".into()).expect("production is configured");
        let [Act::Say(said), Act::Rollback(Some(record))] = &start.acts[..] else { panic!("{:?}", start.acts) };
        assert!(said.starts_with("[RAY ANNOUNCEMENT] Rolling back production"), "{said}");
        assert_eq!((record.reason.as_str(), record.asked_by(), record.started_at), ("bad", Some("carol"), sim.now));
        let Next::Job { ask, task: Task::Rollback { started }, note: None } = start.next else { panic!("the job") };
        assert_eq!((ask.env.as_str(), started), ("production", sim.now));
        assert_eq!(ask.purpose, "rollback production");
    }

    /// The sample release rebuilt as it was while its first health-window probe ran, and when
    /// that probe reported.
    fn in_health_window() -> (Release, Timestamp) {
        let mut sim = Sim::new();
        sim.start("alice", Strategy::Bluegreen);
        approve(&mut sim, "alice");
        approve(&mut sim, "bob");
        sim.ack_all();
        approve(&mut sim, "bob");
        approve(&mut sim, "carol");
        let r = sim.release();
        let window =
            |probe: &ProbeId| r.probes.iter().any(|p| p.id == *probe && p.purpose.starts_with("health window"));
        let cut = sim
            .log
            .iter()
            .position(|(_, e)| matches!(e, Event::ProbeFinished { probe, .. } if window(probe)))
            .expect("the health window ran");
        (Release::replay(sim.log[..cut].iter()).expect("replays"), sim.log[cut].0)
    }

    #[test]
    fn a_health_window_round_counts_a_breach_is_recorded_and_probes_again_until_the_window_ends() {
        let (r, at) = in_health_window();
        let Activity::Probe { task: Task::SoakProbe { until }, .. } = r.activity else { panic!("{:?}", r.activity) };
        let healthy = probe_report(10, &[("v1.2", 10)]);
        let round = r.soak_round(at, &healthy, until).expect("the step is the health window");
        assert!(matches!(&round.acts[..], [Act::Observe(p)] if **p == healthy), "{:?}", round.acts);
        assert!(
            matches!(round.next, Next::SoakRound { until: u, at: next } if u == until && next > at && next <= until)
        );
        let failing = probe_report(2, &[("v1.2", 2)]);
        let last = r.soak_round(until, &failing, until).expect("the step is the health window");
        assert!(matches!(&last.acts[..], [Act::Add("slo_breaches", 1.0), Act::Observe(_)]), "{:?}", last.acts);
        assert_eq!(last.next, Next::SoakOver);
        // A health window's probe reported on another step is not read.
        let mut elsewhere = r.clone();
        (elsewhere.cursor.phase, elsewhere.cursor.step) = (0, 0);
        assert_eq!(elsewhere.soak_round(at, &healthy, until), None);
    }

    #[test]
    fn a_lost_job_halts_its_step_naming_the_process_that_stopped() {
        let mut sim = Sim::new();
        sim.start("alice", Strategy::Bluegreen);
        let r = sim.release();
        let halt = r.lost_job(&"nope".into(), &Task::Security, "replica-a", sim.now);
        assert_eq!(halt.reason, "job outcome unknown after replica-a stopped");
        assert_eq!((halt.resume, halt.gate, halt.at), (Resume::Step, None, sim.now));
    }
}
