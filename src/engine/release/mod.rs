//! A release: [`Release::handle`], the walk through protocols, phases and steps, and the effects.
//!
//! Every decision is made before anything changes, by code that cannot change the release:
//! leaf types and functions that import nothing from this file or from the release (the step
//! sub-machines), and read-only views of the release (`impl Release` blocks over `&self`) that
//! ask the leaves and return an outcome. This file performs the outcomes: posts, edits, evidence,
//! jobs, probes, timers, ids, and the next step. No file imports from this one (views take the
//! release from `state`), so the imports form no circle.
//!
//! | file           | holds                                                                          |
//! |----------------|--------------------------------------------------------------------------------|
//! | `mod.rs`       | `handle`, the walk, and performing outcomes (`apply`, `perform`, `respond`)     |
//! | `state.rs`     | the stored data: `Release`, `Activity`, `Task`, `Halt`, `Terminal`, `Cursor::next_phase` |
//! | *leaves*       |                                                                                |
//! | `steps.rs`     | `start` → `Next` per step kind; deploy sub-steps, validation, scan, soak verdicts; `Act`, `Reading`, `Asking` |
//! | `jobs.rs`      | `JobAsk` → `JobSpec` (placeholders, `RAYBOT_*`), the job record                 |
//! | `rollout.rs`   | `Rollout::after_probe` → `ProbeStep`, health checks, soak rounds, probe specs  |
//! | `rehearsal.rs` | the rollback rehearsal proven by version: probe → rollback → probe → roll forward → probe → RTO |
//! | `intake.rs`    | `Intake::read`: prerequisite completeness, evidence body, verdict              |
//! | `packaging.rs` | package and report bundles: completeness, expected evidence, verdict           |
//! | `freeze.rs`    | `Freeze::ack` / `unack` → `AckOutcome`; which emoji acknowledge                |
//! | `approval.rs`  | `ApprovalRound::approve` → `RoundOutcome` (each person once, never the initiator alone) |
//! | `gates.rs`     | `evaluate` → `GateVerdict`, `on_failure`, `waivable`, `Parity`, failure text   |
//! | `access.rs`    | one `Rule` (listed, `Needs`, `Access`) per command; `check` → `Refused`         |
//! | `rollback.rs`  | `request`, `after_job` / `after_probe` → `RollbackStep`, the queued rollback   |
//! | `recovery.rs`  | `recover` → `Recovery` after a takeover; where a lost job halts                |
//! | `scores.rs`    | validation coverage, security findings, prerequisite completeness              |
//! | *views*        |                                                                                |
//! | `readings.rs`  | a step, health-window round or rollback result, approval, ack, gate or its failure → `Reading`; halts |
//! | `requests.rs`  | the freeze and go/no-go requests: who is asked, the round opened, the post that asks, an approval |
//! | `answers.rs`   | a command, reaction or click → `Answer`; a waiver, retry, rejection, abort, rollback asked → `Reading` |
//! | `place.rs`     | where the release stands: protocol, phase, step, label, figures, paths         |
//! | `copy.rs`      | chat texts as functions of the state                                           |
//! | `evidence.rs`  | evidence files (JSON and Markdown) rendered from the release                   |
//! | `report.rs`    | the closing record: rollback plan, deployment report and its log, retrospective |

mod access;
mod answers;
mod approval;
mod copy;
mod evidence;
mod freeze;
mod gates;
mod intake;
mod jobs;
mod packaging;
mod place;
mod readings;
mod recovery;
mod rehearsal;
mod report;
mod requests;
mod rollback;
mod rollout;
mod scores;
mod state;
mod steps;

use std::collections::BTreeMap;
use std::sync::Arc;

use super::ids::{JobId, PostKey, ProbeId, TimerId};
use super::plan::Environment;
use super::refusal::Refusal;
use super::reports::{BundleReport, InputStatus, JobOutcome, ProbeReport};
use super::{Ask, Effect, Event, Timestamp, UserRef};
use crate::protocol::model::StepRun;
use answers::Answer;
use approval::RoundOutcome;
pub use approval::{Approval, ApprovalRound};
use freeze::AckOutcome;
pub use freeze::Freeze;
pub use gates::{GateVerdict, Verdict};
use jobs::JobAsk;
use readings::{GateRun, HaltRoute};
use recovery::Recovery;
use state::Advance;
pub use state::{
    Activity, AuditEntry, Cursor, Halt, JobRecord, ProbeRecord, Release, Resume, RollbackRecord, Task, Terminal,
};
use steps::{Act, Asking, Next, Reading};

type Fx = Vec<Effect>;

/// What a request re-posted after a restart starts with.
const RESUMED: &str = "[RAY] Resumed after a restart.\n";

/// Result of starting a step.
enum Entered {
    /// Waiting for a result or for people.
    Waiting,
    /// Finished at once; go on.
    Done,
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
        let mut r = Release::new(release, version, env, *strategy, by, plan, now);
        let mut fx = Vec::new();
        let text = r.start_text();
        r.post(now, &mut fx, None, text, Ask::Nothing);
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
            Event::Command { by, command } => self.respond(by, self.answer_command(by, command), now, &mut fx),
            Event::Reaction { by, message, emoji, added } => {
                self.respond(by, self.answer_reaction(by, message, emoji, *added), now, &mut fx)
            }
            Event::Click { by, message, button } => {
                self.respond(by, self.answer_click(by, message, *button), now, &mut fx)
            }
            Event::Posted { key, message } => {
                self.posts.entry(key.clone()).or_default().push(message.clone());
            }
            Event::JobFinished { job, outcome } => self.job_finished(job, outcome, now, &mut fx),
            Event::ProbeFinished { probe, report } => self.probe_finished(probe, report, now, &mut fx),
            Event::InputsChecked { check, results } => self.inputs_checked(check, results, now, &mut fx),
            Event::BundleWritten { bundle, report } => self.bundle_written(bundle, report, now, &mut fx),
            Event::EvidenceFailed { file, error } => {
                self.evidence.remove(file);
                if let Some(halt) = self.evidence_halt(file, error, now) {
                    self.halt(now, &mut fx, halt);
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

    /// The next number for an id of this release (jobs, probes, timers, checks and bundles
    /// share the counter).
    fn next_n(&mut self) -> u64 {
        let n = self.next_id;
        self.next_id += 1;
        n
    }

    /// `<release>#<kind><n>` for checks and bundles.
    fn next(&mut self, kind: &str) -> String {
        let n = self.next_n();
        format!("{}#{kind}{n}", self.id)
    }

    fn post(&mut self, now: Timestamp, fx: &mut Fx, key: Option<PostKey>, text: String, ask: Ask) {
        self.communication.push((now, text.clone()));
        fx.push(Effect::Post { key, text, ask });
    }

    /// Posts `text` to the channel, asking nothing back.
    fn say(&mut self, now: Timestamp, fx: &mut Fx, text: String) {
        self.post(now, fx, None, text, Ask::Nothing);
    }

    /// Edits a keyed post. Edits are not part of the communication log: what they show (acks,
    /// decisions) is recorded in the state itself.
    fn update(&mut self, fx: &mut Fx, key: PostKey, text: String) {
        fx.push(Effect::Update { key, text });
    }

    /// Answers `by` with `refusal` and records it in the audit trail under `what` (the action).
    fn refuse(&mut self, now: Timestamp, fx: &mut Fx, by: &UserRef, what: &str, refusal: Refusal) {
        self.audit.push(AuditEntry {
            at: now,
            who: by.id.clone(),
            what: format!("{what}: {refusal}"),
            accepted: false,
        });
        fx.push(Effect::Reply { to: by.clone(), text: refusal.to_chat() });
    }

    fn accept(&mut self, now: Timestamp, by: &UserRef, what: String) {
        self.audit.push(AuditEntry::accepted(now, &by.id, what));
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

    fn write(&mut self, fx: &mut Fx, path: String, contents: String) {
        self.evidence.insert(path.clone());
        fx.push(Effect::WriteEvidence { path, contents });
    }

    fn job_effect(&mut self, now: Timestamp, fx: &mut Fx, ask: JobAsk) -> JobId {
        let n = self.next_n();
        let id = JobId::new(&self.id, n);
        let spec = ask.spec(&id, jobs::Vars { id: &self.id, version: &self.version, strategy: self.strategy });
        self.jobs.push(JobRecord::started(&spec, &ask.env, now));
        self.evidence.extend(ask.output.clone());
        if ask.env == self.env && self.plan.protocols.len() > 1 && ask.changes_serving() {
            self.production_touched = true;
        }
        self.evidence.insert(spec.log.clone());
        fx.push(Effect::RunJob(spec));
        id
    }

    /// Starts a job and waits for it as `task`.
    fn start_job(&mut self, now: Timestamp, fx: &mut Fx, ask: JobAsk, task: Task) {
        let job = self.job_effect(now, fx, ask);
        self.activity = Activity::Job { job, task };
    }

    fn probe_effect(&mut self, now: Timestamp, fx: &mut Fx, env: &Environment, purpose: String) -> ProbeId {
        let n = self.next_n();
        let id = ProbeId::new(&self.id, n);
        self.probes.push(ProbeRecord { id: id.clone(), purpose, env: env.name.clone(), started_at: now, report: None });
        fx.push(Effect::Probe(rollout::probe_spec(&id, env)));
        id
    }

    /// Arms the timer of the next reminder to the people a request waits for.
    fn remind(&mut self, now: Timestamp, fx: &mut Fx) -> TimerId {
        self.arm(fx, now.plus_ms(self.plan.policy.remind_after_ms))
    }

    fn arm(&mut self, fx: &mut Fx, at: Timestamp) -> TimerId {
        let n = self.next_n();
        let id = TimerId::new(&self.id, n);
        fx.push(Effect::ArmTimer { timer: id.clone(), at });
        id
    }

    // ----- the protocol walk ----------------------------------------------------------------

    fn enter_protocol(&mut self, now: Timestamp, fx: &mut Fx) {
        self.say(now, fx, Self::protocol_text(self.protocol()));
        self.enter_phase(now, fx);
    }

    fn enter_phase(&mut self, now: Timestamp, fx: &mut Fx) {
        self.phase_metrics.clear();
        if let Some(text) = steps::phase_opening(self.phase()) {
            self.say(now, fx, text);
        }
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
        if let Some(gate) = self.phase().gate.clone() {
            if !self.gate_passes(&gate, now, fx) {
                return false;
            }
        }
        if let Some(done) = self.phase().complete_announcement.clone() {
            self.say(now, fx, done);
        }
        if self.cursor.phase + 1 >= self.protocol().phases.len() {
            // Protocol complete: handoff.
            for text in self.handoff_texts() {
                self.say(now, fx, text);
            }
        }
        self.deploy_index = 0;
        match self.cursor.next_phase(&self.plan) {
            Advance::Phase => self.enter_phase(now, fx),
            Advance::Protocol => self.enter_protocol(now, fx),
            Advance::Released => {
                self.finish(now, fx, Terminal::Released);
                return false;
            }
        }
        true
    }

    /// Ends the release: a release that did not reach `released` records its retrospective
    /// inputs (the success path wrote them at their step), then the report bundle is refreshed
    /// if there is one, then `Finished`.
    fn finish(&mut self, now: Timestamp, fx: &mut Fx, outcome: Terminal) {
        // Whether there is a bundle to write is decided on the evidence as it stood: recording
        // the retrospective inputs changes what is written, never what happens next.
        let report_zip = self.report_zip().filter(|_| !self.evidence.is_empty());
        if outcome != Terminal::Released {
            let (path, contents) = self.failed_retrospective(now, &outcome);
            self.write(fx, path, contents);
        }
        match report_zip {
            Some((dir, zip, protocol)) => {
                self.report_bundle(now, fx, &dir, format!("{dir}/{zip}"), protocol, Some(outcome));
            }
            _ => self.end(now, fx, outcome),
        }
    }

    fn end(&mut self, now: Timestamp, fx: &mut Fx, outcome: Terminal) {
        let text = self.end_text(&outcome);
        self.say(now, fx, text);
        self.activity = Activity::Ended(outcome.clone());
        fx.push(Effect::Finished { outcome });
    }

    fn halt(&mut self, now: Timestamp, fx: &mut Fx, halt: Halt) {
        let text = self.halt_text(&halt.step, &halt.reason, halt.gate.as_deref(), &halt.resume);
        self.say(now, fx, text);
        self.halts.push(halt.clone());
        self.activity = Activity::Halted(halt);
    }

    /// Evaluates `gate` of the current protocol; on failure applies its failure handling.
    fn gate_passes(&mut self, gate_id: &str, now: Timestamp, fx: &mut Fx) -> bool {
        let Some(GateRun { verdict, text, failure }) = self.evaluate_gate(gate_id, now) else { return true };
        self.gates.push(verdict);
        self.say(now, fx, text);
        let Some(failed) = failure else { return true };
        self.perform(now, fx, self.gate_failure(now, failed));
        false
    }

    /// Runs a step's halt condition: the phase's gate decides if it reads metrics that are all
    /// measured; otherwise the step's own halt kind applies.
    fn step_failed(&mut self, now: Timestamp, fx: &mut Fx, reason: String) {
        let label = self.step_label();
        self.say(now, fx, format!("[RAY] {label}: halt condition met — {reason}"));
        match self.halt_route() {
            HaltRoute::Continue(text) => {
                if let Some(text) = text {
                    self.say(now, fx, text);
                }
                return self.run(now, fx, Entered::Done, false);
            }
            // The gate's figures may be fine although the step's halt condition held: then the
            // step's own halt handling applies.
            HaltRoute::Gate(gate) if !self.gate_passes(&gate, now, fx) => return,
            HaltRoute::Gate(_) => {
                self.gates.pop();
            }
            HaltRoute::Own => {}
        }
        self.apply(now, fx, self.own_halt(now, reason));
    }

    fn step_note(&mut self, now: Timestamp, fx: &mut Fx, text: String) {
        self.say(now, fx, self.step_note_text(&text));
    }

    /// Starts the current step.
    fn enter_step(&mut self, now: Timestamp, fx: &mut Fx) -> Entered {
        self.metrics_at_step = self.phase_metrics.clone();
        let step = self.step().clone();
        if let Some(line) = steps::opening_line(&step, self.cursor.step == 0, self.phase().start_announcement.as_ref())
        {
            self.say(now, fx, line.clone());
        }
        let next = steps::start(self.setting(), &step, self.deploy_index, now);
        self.apply(now, fx, next)
    }

    /// Maps what the current step asks for to effects; `Done` when it finished at once.
    fn apply(&mut self, now: Timestamp, fx: &mut Fx, next: Next) -> Entered {
        match next {
            Next::Done => return Entered::Done,
            Next::Wait => {}
            Next::Note(text) => {
                self.step_note(now, fx, text);
                return Entered::Done;
            }
            Next::Failed(reason) => self.step_failed(now, fx, reason),
            Next::Job { ask, task, note } => {
                if let Some(note) = note {
                    self.step_note(now, fx, note);
                }
                self.start_job(now, fx, ask, task);
            }
            Next::Deploy { ask, index, announce } => {
                if announce {
                    let text = self.deploy_started_text(&ask.env);
                    self.say(now, fx, text);
                }
                self.start_job(now, fx, ask, Task::DeployStep { index });
            }
            Next::Probe { env, purpose, task } => self.start_probe(now, fx, &env, purpose, task),
            Next::CheckInputs(items) => {
                let check = self.next("check");
                fx.push(Effect::CheckInputs { check: check.clone(), items });
                self.activity = Activity::Inputs { check };
            }
            Next::Package { zip, manifest, files } => {
                self.evidence.extend(manifest.iter().chain([&zip]).cloned());
                let protocol = self.protocol().id.clone();
                self.start_bundle(fx, zip, files, manifest, protocol, None);
            }
            Next::Report { zip } => {
                let (dir, protocol) = (self.protocol().artifacts_dir.clone(), self.protocol().id.clone());
                self.report_bundle(now, fx, &dir, zip.clone(), protocol, None);
                self.evidence.insert(zip);
            }
            Next::Soak { env, until } => {
                self.soak.clear();
                self.set_metric("slo_breaches", 0.0);
                self.start_probe(now, fx, &env, format!("health window {env}"), Task::SoakProbe { until });
            }
            Next::SoakRound { until, at } => {
                let timer = self.arm(fx, at);
                self.activity = Activity::Soak { until, timer };
            }
            Next::SoakOver => return self.perform(now, fx, self.soak_over(now)),
            Next::Parity => return self.perform(now, fx, self.parity(now)),
            Next::Unscanned => return self.perform(now, fx, self.unscanned(now)),
            Next::Approval(roles) => return self.perform(now, fx, self.approval_opening(roles, now)),
            Next::Freeze(roles) => return self.perform(now, fx, self.freeze_opening(&roles, now)),
            Next::Ask(asking) => self.ask(now, fx, asking, ""),
            Next::Document(template) => return self.perform(now, fx, self.document_step(now, template)),
            Next::Halt(halt) => self.halt(now, fx, halt),
            Next::Rollback { reason, trigger } => self.start_rollback(now, fx, reason, trigger),
            Next::Finish(outcome) => self.finish(now, fx, outcome),
            Next::RunStep => {
                self.phase_metrics = self.metrics_at_step.clone();
                self.run(now, fx, Entered::Waiting, true);
            }
            Next::RunPhase => {
                (self.cursor.step, self.deploy_index) = (0, 0);
                self.enter_phase(now, fx);
                self.run(now, fx, Entered::Waiting, true);
            }
            Next::PassGate => {
                self.cursor.step = self.phase().steps.len() - 1;
                return Entered::Done;
            }
        }
        Entered::Waiting
    }

    /// Performs what a step's result means, in order, then what comes next.
    fn perform(&mut self, now: Timestamp, fx: &mut Fx, reading: Reading) -> Entered {
        for act in reading.acts {
            self.act(now, fx, act);
        }
        self.apply(now, fx, reading.next)
    }

    fn act(&mut self, now: Timestamp, fx: &mut Fx, act: Act) {
        match act {
            Act::Set(name, value) => self.set_metric(name, value),
            Act::Add(name, value) => self.add_metric(name, value),
            Act::Write(path, contents) => self.write(fx, path, contents),
            Act::Note(text) => self.step_note(now, fx, text),
            Act::Say(text) => self.say(now, fx, text),
            Act::Rollout(index) => self.deploy_index = index,
            Act::Update(key, text) => self.update(fx, key, text),
            Act::Rollback(record) => self.rollback = record.map(|r| *r),
            Act::Audit(entry) => self.audit.push(entry),
            Act::Waiver(key, who, justification, at) => self.waivers.push((key, who, justification, at)),
            Act::Observe(report) => self.soak.push(*report),
            Act::Freeze(freeze) => self.freeze = *freeze,
            Act::Round(round) => self.rounds.push(*round),
            Act::QueueRollback(who, why) => self.rollback_requested = Some((who, why)),
            Act::Reply(to, text) => fx.push(Effect::Reply { to, text }),
        }
    }

    /// Performs what a result of the current step means; a step done at once walks on.
    fn go(&mut self, now: Timestamp, fx: &mut Fx, reading: impl Into<Reading>) {
        if let Entered::Done = self.perform(now, fx, reading.into()) {
            self.run(now, fx, Entered::Done, false);
        }
    }

    /// Asks for bundle `bundle` of `files` into `zip` and waits for it; `finish` ends the release
    /// once it is written.
    fn start_bundle(
        &mut self,
        fx: &mut Fx,
        zip: String,
        files: Vec<String>,
        manifest: Option<String>,
        protocol: String,
        finish: Option<Terminal>,
    ) {
        let bundle = self.next("bundle");
        fx.push(Effect::Bundle { bundle: bundle.clone(), zip, files, manifest, protocol });
        self.activity = Activity::Bundle { bundle, finish };
    }

    /// Writes `DEPLOYMENT-REPORT.md` into `dir` and bundles every evidence file but zips into `zip`.
    fn report_bundle(
        &mut self,
        now: Timestamp,
        fx: &mut Fx,
        dir: &str,
        zip: String,
        protocol: String,
        finish: Option<Terminal>,
    ) {
        let text = self.deployment_report(now, finish.as_ref());
        self.write(fx, format!("{dir}/DEPLOYMENT-REPORT.md"), text);
        let files: Vec<String> = self.evidence.iter().filter(|f| !f.ends_with(".zip")).cloned().collect();
        self.start_bundle(fx, zip, files, None, protocol, finish);
    }

    /// Probes `env` for `purpose` and waits for the figures as `task` (nothing when `env` is not
    /// configured).
    fn start_probe(&mut self, now: Timestamp, fx: &mut Fx, env: &str, purpose: String, task: Task) {
        let plan = Arc::clone(&self.plan);
        let Some(e) = plan.environment(env) else { return };
        let probe = self.probe_effect(now, fx, e, purpose);
        self.activity = Activity::Probe { probe, task };
    }

    // ----- requests to people: the freeze and go/no-go rounds -----------------------------

    /// Posts (or re-posts, after `lead`) the request `asking` with its reaction or buttons and
    /// waits for the people it asks, with a reminder armed.
    fn ask(&mut self, now: Timestamp, fx: &mut Fx, asking: Asking, lead: &str) {
        let (key, text, ask) = self.request(asking, lead);
        self.post(now, fx, Some(key), text, ask);
        let reminder = self.remind(now, fx);
        self.activity = asking.waiting(reminder);
    }

    /// Records an approval the access check let through and performs the round's outcome.
    fn approve(&mut self, by: &UserRef, comment: Option<String>, via: &str, now: Timestamp, fx: &mut Fx) {
        let Some((round, approval)) = self.approval(by, comment, via, now) else { return };
        match self.rounds[round].approve(approval, &self.started_by.id) {
            // The access check refuses approvers without a required role.
            RoundOutcome::NotRequired => {}
            RoundOutcome::Already => fx.push(Effect::Reply { to: by.clone(), text: self.approved_already_text() }),
            outcome => {
                self.accept(now, by, format!("approved {} via {via}", self.rounds[round].step));
                self.go(now, fx, self.round_reading(now, round, &outcome));
            }
        }
    }

    /// Counts an acknowledgement the access check let through and performs the freeze's outcome.
    fn ack(&mut self, by: &UserRef, via: &str, now: Timestamp, fx: &mut Fx) {
        match self.freeze.ack(&by.id, via, now) {
            AckOutcome::NotListed => {} // the access check refuses people off the list
            AckOutcome::Already => fx.push(Effect::Reply { to: by.clone(), text: self.acknowledged_already_text() }),
            AckOutcome::Counted { confirmed } => {
                self.accept(now, by, format!("acknowledged freeze via {via}"));
                self.go(now, fx, self.freeze_reading(now, confirmed));
            }
        }
    }

    fn unack(&mut self, by: &UserRef, now: Timestamp, fx: &mut Fx) {
        if matches!(self.activity, Activity::Acks { .. }) && self.freeze.unack(&by.id) {
            self.accept(now, by, "withdrew freeze acknowledgement (reaction removed)".into());
            self.go(now, fx, self.freeze_reading(now, false));
        }
    }

    // ----- inbound people events ---------------------------------------------------------

    /// Performs what a person's event comes to (the answer decided it before anything changed).
    fn respond(&mut self, by: &UserRef, answer: Answer, now: Timestamp, fx: &mut Fx) {
        match answer {
            Answer::Ignore => {}
            Answer::Refuse(action, refusal) => self.refuse(now, fx, by, action, refusal),
            Answer::Reply(text) => fx.push(Effect::Reply { to: by.clone(), text }),
            Answer::Ack(via) => self.ack(by, via, now, fx),
            Answer::Unack => self.unack(by, now, fx),
            Answer::Approve { comment, via } => self.approve(by, comment, via, now, fx),
            Answer::Reject { reason, via } => {
                let Some((round, rejection)) = self.rejection(by, reason, via, now) else { return };
                self.rounds[round].reject(rejection);
                self.go(now, fx, self.rejected(round, now));
            }
            Answer::Waive(waive) => {
                let reading = self.waived(by, waive, now);
                self.activity = Activity::Idle;
                self.go(now, fx, reading);
            }
            Answer::Retry(halt) => {
                self.activity = Activity::Idle;
                self.go(now, fx, self.retried(by, halt, now));
            }
            Answer::Rollback { request, reason } => self.go(now, fx, self.rollback_asked(by, request, reason, now)),
            Answer::Abort(reason) => self.go(now, fx, self.aborted(by, reason, now)),
        }
    }

    // ----- rollback -------------------------------------------------------------------------

    fn start_rollback(&mut self, now: Timestamp, fx: &mut Fx, reason: String, trigger: String) {
        if let Some(start) = self.rollback_start(now, reason, trigger) {
            self.perform(now, fx, start);
        }
    }

    // ----- results --------------------------------------------------------------------------

    /// The task the release was waiting on, when job or probe `id` is the work it waits for: the
    /// release goes idle, and a rollback asked for meanwhile starts instead (then `None`, as for
    /// work it was not waiting for).
    fn take_awaited(&mut self, now: Timestamp, fx: &mut Fx, id: &str) -> Option<Task> {
        let task = self.awaited(id)?;
        self.activity = Activity::Idle;
        // A `/ray rollback` that arrived while the work ran starts now, whatever step it was for.
        let Some((by, reason)) = rollback::take_queued(&mut self.rollback_requested, &task) else { return Some(task) };
        self.start_rollback(now, fx, reason, by);
        None
    }

    fn job_finished(&mut self, job: &JobId, outcome: &JobOutcome, now: Timestamp, fx: &mut Fx) {
        if !jobs::record_outcome(&mut self.jobs, job, outcome, now) {
            return; // duplicate delivery
        }
        let Some(task) = self.take_awaited(now, fx, job) else { return };
        if let Some(reading) = self.read_job(&task, outcome, now) {
            self.go(now, fx, reading);
        }
    }

    fn probe_finished(&mut self, probe: &ProbeId, report: &ProbeReport, now: Timestamp, fx: &mut Fx) {
        if let Some(p) = self.probes.iter_mut().find(|p| p.id == *probe) {
            if p.report.is_some() {
                return;
            }
            p.report = Some(report.clone());
        }
        let Some(task) = self.take_awaited(now, fx, probe) else { return };
        if let Some(reading) = self.read_probe(&task, report, now) {
            self.go(now, fx, reading);
        }
    }

    fn inputs_checked(&mut self, check: &str, results: &[InputStatus], now: Timestamp, fx: &mut Fx) {
        let Activity::Inputs { check: current } = self.activity.clone() else { return };
        if current != check {
            return;
        }
        self.activity = Activity::Idle;
        let read = self.read_inputs(results);
        self.inputs.push((check.to_string(), read.results.clone()));
        self.go(now, fx, self.intake(now, &read));
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
        self.go(now, fx, self.read_bundle(report));
    }

    fn tick(&mut self, timer: &TimerId, now: Timestamp, fx: &mut Fx) {
        match self.activity.clone() {
            Activity::Acks { reminder } if reminder == *timer => {
                self.freeze.remind();
                self.say(now, fx, self.freeze_reminder_text());
                let reminder = self.remind(now, fx);
                self.activity = Activity::Acks { reminder };
            }
            Activity::Approval { round, reminder } if reminder == *timer => {
                self.say(now, fx, self.approval_reminder_text(&self.rounds[round]));
                let reminder = self.remind(now, fx);
                self.activity = Activity::Approval { round, reminder };
            }
            Activity::Soak { timer: t, until } if t == *timer => {
                let StepRun::HealthWindow { env } = self.step().run.clone() else { return };
                self.start_probe(now, fx, &env, format!("health window {env}"), Task::SoakProbe { until });
            }
            _ => {}
        }
    }

    fn job_lost(&mut self, job: &JobId, replica: &str, now: Timestamp, fx: &mut Fx) {
        match self.activity.clone() {
            Activity::Job { job: current, task } if current == *job => {
                // A `/ray rollback` asked for while the job ran is the instruction: say what
                // happened, then roll back.
                let rollback = rollback::take_queued(&mut self.rollback_requested, &task);
                self.halt(now, fx, self.lost_job(job, &task, replica, now));
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
        let step = self.phase().steps.get(self.cursor.step).map(|s| &s.run);
        match recovery::recover(&self.activity, &self.jobs, jobs_queued, step, &self.env) {
            // The queue runs it, or has it running on a live replica, or reports it lost.
            Recovery::Requeue(spec) => fx.push(Effect::RunJob(spec)),
            Recovery::JobUnknown { job, task } => self.halt(now, fx, self.lost_job(&job, &task, &before, now)),
            Recovery::Reprobe { env, task } => self.start_probe(now, fx, &env, format!("resumed probe {env}"), task),
            Recovery::Rerun => self.run(now, fx, Entered::Waiting, true),
            Recovery::Finish(outcome) => self.finish(now, fx, outcome),
            Recovery::Refreeze => self.ask(now, fx, Asking::Acks, RESUMED),
            Recovery::Reapprove { round } => self.ask(now, fx, Asking::Approval(round), RESUMED),
            Recovery::Resoak { until } => {
                let timer = self.arm(fx, now);
                self.activity = Activity::Soak { until, timer };
            }
            Recovery::Nothing => {}
        }
    }
}
