//! The steps of a protocol as sub-machines: what a step asks for when it starts ([`start`]), which
//! job or probe comes next in a deploy or a validation, and what a plain job's result means.
//!
//! A leaf: each function reads the step, the plan and the results it is given and returns a
//! [`Next`]; the release numbers and starts the jobs and probes, posts, writes the evidence and
//! walks on to the next step.

use crate::engine::ids::{PostKey, TimerId};
use crate::engine::plan::{Environment, PROVEN_REHEARSAL, Plan, ReportFormat, Suite};
use crate::engine::reports::{JobOutcome, ProbeReport};
use crate::engine::{InputSpec, Strategy, Timestamp, UserRef};
use crate::protocol::model::{DocumentTemplate, Phase, Protocol, Step, StepRun};

use super::approval::ApprovalRound;
use super::freeze::Freeze;
use super::jobs::JobAsk;
use super::rollout::Rollout;
use super::scores::Validation;
use super::state::{Activity, AuditEntry, Halt, RollbackRecord, Task, Terminal};

/// Purpose of the probe that opens a rollback rehearsal, before its rollback job.
pub(crate) const REHEARSAL_BEFORE: &str = "before rollback rehearsal";

/// The purpose of the `security` job. It scans the release candidate, not an environment:
/// evidence labels it so, whatever environment it is recorded under.
pub(crate) const SECURITY_SCAN: &str = "security scan";

/// What a step reads of the release: the plan, the current protocol and the target.
#[derive(Clone, Copy)]
pub(crate) struct Setting<'a> {
    /// The frozen plan.
    pub(crate) plan: &'a Plan,
    /// The protocol the step belongs to (its artifacts directory holds the evidence).
    pub(crate) protocol: &'a Protocol,
    /// The release's target environment.
    pub(crate) target: &'a str,
    /// The rollout strategy.
    pub(crate) strategy: Strategy,
}

impl Setting<'_> {
    /// Evidence path of `name` in the protocol's artifacts directory.
    pub(crate) fn path(&self, name: &str) -> String {
        format!("{}/{}", self.protocol.artifacts_dir, name)
    }

    fn env(&self, env: &str) -> Option<&Environment> {
        self.plan.environment(env)
    }
}

/// What the release does next for the current step.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Next {
    /// The step is done: go on.
    Done,
    /// The step goes on waiting (for people, a job, a probe or a timer).
    Wait,
    /// Post this note under the step; the step is done.
    Note(String),
    /// The step's halt condition is met, for this reason.
    Failed(String),
    /// Run a job and wait for it as `task`, after posting `note` under the step.
    Job {
        /// The job.
        ask: JobAsk,
        /// What its result decides.
        task: Task,
        /// Posted under the step first.
        note: Option<String>,
    },
    /// Run rollout sub-step `index`; `announce` posts the start of the target's deployment first.
    Deploy {
        /// The deploy job of the sub-step.
        ask: JobAsk,
        /// Index into [`Strategy::steps`].
        index: usize,
        /// The first sub-step on the target: everyone hears the deployment started.
        announce: bool,
    },
    /// Probe `env` and wait for the figures as `task`.
    Probe {
        /// Environment probed.
        env: String,
        /// What the probe is for, e.g. `baseline staging`.
        purpose: String,
        /// What its figures decide.
        task: Task,
    },
    /// Check the protocol's prerequisite artifacts.
    CheckInputs(Vec<InputSpec>),
    /// Zip `files` (paths) into `zip`, with a manifest if named.
    Package {
        /// Zip path.
        zip: String,
        /// Manifest path.
        manifest: Option<String>,
        /// Paths of the files to zip.
        files: Vec<String>,
    },
    /// Write the deployment report and zip every evidence file into `zip`.
    Report {
        /// Zip path.
        zip: String,
    },
    /// Open the health window on `env`; it ends at `until`.
    Soak {
        /// Environment watched.
        env: String,
        /// End of the window.
        until: Timestamp,
    },
    /// Probe the health window (which ends at `until`) again at `at`.
    SoakRound {
        /// End of the window.
        until: Timestamp,
        /// When the next round is due.
        at: Timestamp,
    },
    /// The health window is over: read its rounds.
    SoakOver,
    /// Compare staging and production configuration.
    Parity,
    /// No security scanner is configured: record that findings were not measured.
    Unscanned,
    /// Ask for go/no-go from these roles.
    Approval(Vec<String>),
    /// Ask everyone holding these roles to acknowledge the change freeze.
    Freeze(Vec<String>),
    /// Post the request to people (opened already) and wait for them, reminding them.
    Ask(Asking),
    /// Write a document computed from the release.
    Document(DocumentTemplate),
    /// Stop and wait for instructions (`/ray retry`, `/ray waive`, `/ray rollback`, `/ray abort`).
    Halt(Halt),
    /// Roll the target environment back.
    Rollback {
        /// Why, as announced and recorded.
        reason: String,
        /// `automatic`, or the user id of who asked for it.
        trigger: String,
    },
    /// End the release (after its final report bundle, when it has one).
    Finish(Terminal),
    /// Run the current step again, with the phase's figures as they were when it began.
    RunStep,
    /// Run the current phase again from its first step.
    RunPhase,
    /// The phase's gate failed and was waived: go on as if it passed.
    PassGate,
}

/// One effect of reading a step's result, performed by the release in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Act {
    /// Record figure `name` for the current phase and protocol.
    Set(&'static str, f64),
    /// Add to figure `name` (from 0 when not measured yet).
    Add(&'static str, f64),
    /// Write an evidence file: path, contents.
    Write(String, String),
    /// Post under the step (`[PHASE n] …`).
    Note(String),
    /// Post to everyone.
    Say(String),
    /// Move the rollout to sub-step `index`.
    Rollout(usize),
    /// Edit a keyed post (what it shows is in the state; edits are not in the communication log).
    Update(PostKey, String),
    /// Replace the rollback record: confirmed, or dropped before a retry starts a new one.
    Rollback(Option<Box<RollbackRecord>>),
    /// Record a person's accepted action in the audit trail.
    Audit(AuditEntry),
    /// Record a waiver: `<protocol>/<gate>`, user id, justification, when.
    Waiver(String, String, String, Timestamp),
    /// Record a round of the health window.
    Observe(Box<ProbeReport>),
    /// Open the change freeze (its list of people to ask).
    Freeze(Box<Freeze>),
    /// Open a go/no-go round.
    Round(Box<ApprovalRound>),
    /// Roll back once the running job or probe ends: who asked (user id), and why.
    QueueRollback(String, String),
    /// Answer one person only.
    Reply(UserRef, String),
}

/// A request to people that the release posts and then waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asking {
    /// The change freeze's acknowledgements.
    Acks,
    /// The approvals of go/no-go round `n` (index into the release's rounds).
    Approval(usize),
}

impl Asking {
    /// What the release does while the request waits, with `reminder` armed.
    pub(crate) fn waiting(self, reminder: TimerId) -> Activity {
        match self {
            Asking::Acks => Activity::Acks { reminder },
            Asking::Approval(round) => Activity::Approval { round, reminder },
        }
    }
}

/// What a step's result means: the effects, then what comes next.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reading {
    /// Effects, in order.
    pub(crate) acts: Vec<Act>,
    /// Then.
    pub(crate) next: Next,
}

impl From<Next> for Reading {
    fn from(next: Next) -> Reading {
        Reading { acts: Vec::new(), next }
    }
}

/// The step's `Communication:` line, if it is posted as the step starts: freeze and approval
/// steps post it inside their request, and the phase's first step does not repeat the phase's
/// start line.
pub(crate) fn opening_line<'a>(step: &'a Step, first: bool, phase_start: Option<&String>) -> Option<&'a String> {
    let line = step.communication.as_ref()?;
    let already = first && Some(line) == phase_start;
    let in_request = matches!(step.run, StepRun::Freeze { .. } | StepRun::Approval { .. });
    (!already && !in_request).then_some(line)
}

/// The line that opens `phase` as it starts: its start announcement, or a generic one; `None`
/// when a later step carries the start line (Protocol 11 phase 3: the approval comes first), so
/// that it is posted when that step starts, as the seed orders it.
pub(crate) fn phase_opening(phase: &Phase) -> Option<String> {
    let later =
        phase.steps.iter().skip(1).any(|s| s.communication.is_some() && s.communication == phase.start_announcement);
    if later {
        return None;
    }
    let generic = || format!("[MASTER RAY™ | PHASE {} START] - {}...", phase.number, phase.title);
    Some(phase.start_announcement.clone().unwrap_or_else(generic))
}

fn not_configured(env: &str) -> Next {
    Next::Failed(format!("environment `{env}` is not configured"))
}

/// What `step` asks for as it starts at `now`; `deploy_index` is the rollout sub-step a deploy
/// step resumes at.
pub(crate) fn start(s: Setting<'_>, step: &Step, deploy_index: usize, now: Timestamp) -> Next {
    match &step.run {
        StepRun::Note if step.communication.is_none() => Next::Note(step.action.clone()),
        StepRun::Note => Next::Done,
        StepRun::Intake => Next::CheckInputs(
            s.protocol
                .prerequisites
                .artifacts
                .iter()
                .map(|a| InputSpec {
                    name: a.name.clone(),
                    location: format!("{:?}", a.location).to_lowercase(),
                    required: a.required,
                    max_age_days: s.plan.inputs_max_age_days,
                    expects: a.expects.clone(),
                })
                .collect(),
        ),
        StepRun::Parity => Next::Parity,
        StepRun::Job { job, env } => match s.env(env).and_then(|e| e.jobs.get(job)) {
            None => Next::Note(format!("skipped: no `{job}` job is configured for {env}.")),
            Some(t) => {
                let log = s.path(&format!("{env}-{}.log", job.replace('_', "-")));
                let mut ask = JobAsk::new(env, format!("{job} {env}"), t, log);
                ask.output = step.evidence.first().map(|e| s.path(e));
                Next::Job { ask, task: Task::OptionalJob, note: Some(format!("running `{job}` on {env}.")) }
            }
        },
        StepRun::Deploy { env } => deploy(s, step, env, deploy_index),
        StepRun::Validate { env } => validation(s, env, 0),
        StepRun::RollbackRehearsal { env } => match s.env(env) {
            None => not_configured(env),
            // A rehearsal first probes which version serves (rules before PROVEN_REHEARSAL ran
            // the rollback job at once); `rehearsal.rs` reads what follows.
            Some(_) if s.plan.under(PROVEN_REHEARSAL) => Next::Probe {
                env: env.clone(),
                purpose: format!("{REHEARSAL_BEFORE} {env}"),
                task: Task::RehearsalBefore,
            },
            Some(e) => {
                let log = s.path(&format!("{env}-rollback-rehearsal.log"));
                let ask = JobAsk::new(env, format!("rollback rehearsal {env}"), &e.rollback, log).at(0);
                Next::Job { ask, task: Task::Rehearsal { started: now }, note: None }
            }
        },
        StepRun::Security => match s.plan.jobs.get("security") {
            None => Next::Unscanned,
            Some(t) => {
                let ask = JobAsk::new(s.target, SECURITY_SCAN.into(), t, s.path("security-scan.log"));
                Next::Job { ask, task: Task::Security, note: None }
            }
        },
        StepRun::Baseline { env } => match s.env(env) {
            None => Next::Done,
            Some(_) => Next::Probe { env: env.clone(), purpose: format!("baseline {env}"), task: Task::BaselineProbe },
        },
        StepRun::Package { zip, manifest, files } => Next::Package {
            zip: s.path(zip),
            manifest: manifest.as_deref().map(|m| s.path(m)),
            files: files.iter().map(|f| s.path(f)).collect(),
        },
        StepRun::Approval { roles, .. } => Next::Approval(roles.clone()),
        StepRun::Freeze { roles } => Next::Freeze(roles.clone()),
        StepRun::Document { template } => Next::Document(*template),
        StepRun::HealthWindow { env } => match s.env(env) {
            None => Next::Done,
            Some(e) => Next::Soak { env: env.clone(), until: now.plus_ms(e.health_window.duration_ms) },
        },
        StepRun::Report { zip } => Next::Report { zip: s.path(zip) },
    }
}

/// Rollout sub-step `index` of deploy `step` to `env`: its job, logged where the step's evidence
/// names a log.
pub(crate) fn deploy(s: Setting<'_>, step: &Step, env: &str, index: usize) -> Next {
    let Some(e) = s.env(env) else { return not_configured(env) };
    let at = index.min(s.strategy.steps().len() - 1);
    let percent = Rollout { strategy: s.strategy }.percent(at);
    let log = match step.evidence.iter().find(|e| e.ends_with(".log")) {
        Some(l) => s.path(l),
        None => s.path(&format!("{env}-deployment-run.log")),
    };
    let ask = JobAsk::new(env, format!("deploy {env} {percent}%"), &e.deploy, log).at(percent);
    Next::Deploy { ask, index: at, announce: env == s.target && index == 0 }
}

/// What deploy sub-step `index`'s job means: a failure names the traffic share, success probes.
pub(crate) fn after_deploy_job(strategy: Strategy, env: &str, index: usize, outcome: &JobOutcome) -> Next {
    let percent = strategy.steps()[index];
    if !outcome.succeeded() {
        return Next::Failed(format!("deploy job at {percent}% failed ({})", outcome.summary()));
    }
    Next::Probe {
        env: env.to_string(),
        purpose: format!("after deploy {env} {percent}%"),
        task: Task::DeployStep { index },
    }
}

/// Validation of `env` from suite `index` on: the next suite's job, then a probe.
pub(crate) fn validation(s: Setting<'_>, env: &str, index: usize) -> Next {
    let Some(e) = s.env(env) else { return not_configured(env) };
    match e.validation.get(index) {
        Some(suite) => {
            let log = s.path(&format!("{env}-validation.log"));
            let mut ask = JobAsk::new(env, format!("validation {} {env}", suite.name), &suite.job, log);
            if let Some(format) = suite.report {
                ask.output = Some(s.path(&report_file(env, &suite.name, format)));
                ask.report = Some(format);
            }
            Next::Job { ask, task: Task::Suite { index }, note: None }
        }
        None => Next::Probe { env: env.to_string(), purpose: format!("validation {env}"), task: Task::ValidateProbe },
    }
}

/// The file suite `suite` on `env` writes its report to, e.g. `staging-smoke-junit.xml`; a
/// character of the suite's name that does not belong in a file name becomes `-`.
fn report_file(env: &str, suite: &str, format: ReportFormat) -> String {
    let name: String =
        suite.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' }).collect();
    format!("{env}-{name}-{}.xml", format.as_str())
}

/// What an optional job's result means: a failure meets the halt condition.
pub(crate) fn after_optional_job(outcome: &JobOutcome) -> Next {
    if outcome.succeeded() {
        Next::Note(format!("done ({}).", outcome.summary()))
    } else {
        Next::Failed(format!("job failed ({})", outcome.summary()))
    }
}

/// What the security scan found: any blocking finding meets the halt condition.
pub(crate) fn after_scan(outcome: &JobOutcome, findings: f64) -> (String, Next) {
    let note = format!("Security scan: {} ({} blocking findings).", outcome.summary(), findings);
    let next = if findings > 0.0 { Next::Failed(format!("{findings} blocking security findings")) } else { Next::Done };
    (note, next)
}

/// The validation of `env` after its probe: the note (test cases passed, coverage and where it
/// comes from, blocking errors, probe figures) and a failure when something blocks. `suites`
/// are the environment's suites, in the order `score` counted them.
pub(crate) fn after_validation(env: &str, suites: &[Suite], score: &Validation, probes: &str) -> (String, Next) {
    let n = score.suites.len();
    let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let counted = n - score.unmeasured(suites).len();
    let cases = match score.coverage {
        _ if n == 0 => "no test suite configured".to_string(),
        Some(_) => format!("{}/{} test cases passed in {}", score.passed, score.targeted, plural(n, "suite", "suites")),
        None => format!("{}/{} test cases passed in {counted} of {n} suites", score.passed, score.targeted),
    };
    let coverage = match score.coverage {
        Some(c) if n == 0 => format!("coverage {} from the probe alone", percent(c)),
        Some(c) => format!("coverage {}", percent(c)),
        None => format!("coverage not measured ({})", score.unmeasured(suites).join("; ")),
    };
    let blocking = if score.blocking > 0.0 { format!(", {} blocking", score.blocking) } else { String::new() };
    let note = format!("{env} validation: {cases} ({coverage}){blocking}, probes {probes}.");
    let next = if score.passed() { Next::Done } else { Next::Failed(note.clone()) };
    (note, next)
}

/// `share` as a percentage rounded down to a tenth, so a note never shows more than was measured
/// (`90%`, `83.3%`).
fn percent(share: f64) -> String {
    let tenths = (share * 1000.0 + 1e-9).floor() / 10.0;
    if tenths.fract() == 0.0 { format!("{tenths:.0}%") } else { format!("{tenths:.1}%") }
}

/// The health window is over after `rounds` probe rounds: any SLO breach fails the step.
pub(crate) fn after_soak(rounds: usize, breaches: f64) -> (String, Next) {
    let note = format!("Health window over: {rounds} probe rounds, {breaches} SLO breaches.");
    let next = if breaches > 0.0 {
        Next::Failed(format!("{breaches} SLO breaches during the health window"))
    } else {
        Next::Done
    };
    (note, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testkit::sample_plan;

    fn outcome(exit: i32) -> JobOutcome {
        JobOutcome {
            exit_code: Some(exit),
            timed_out: false,
            duration_ms: 1200,
            spawn_error: None,
            log_tail: Vec::new(),
            report: None,
        }
    }

    /// The first step of the sample plan whose run matches.
    fn find(plan: &Plan, pick: impl Fn(&StepRun) -> bool) -> (usize, Step) {
        plan.protocols
            .iter()
            .enumerate()
            .find_map(|(i, p)| p.phases.iter().flat_map(|ph| &ph.steps).find(|s| pick(&s.run)).map(|s| (i, s.clone())))
            .expect("the sample plan has such a step")
    }

    fn setting(plan: &Plan, protocol: usize) -> Setting<'_> {
        Setting { plan, protocol: &plan.protocols[protocol], target: "production", strategy: Strategy::Canary }
    }

    #[test]
    fn a_deploy_to_the_target_announces_its_first_sub_step_only() {
        let plan = sample_plan("production");
        let (p, step) = find(&plan, |r| matches!(r, StepRun::Deploy { env } if env == "production"));
        let Next::Deploy { ask, index, announce } = start(setting(&plan, p), &step, 0, Timestamp(0)) else {
            panic!("a deploy step starts a deploy job")
        };
        assert_eq!((ask.purpose.as_str(), ask.percent, index, announce), ("deploy production 10%", 10, 0, true));
        let Next::Deploy { ask, announce, .. } = deploy(setting(&plan, p), &step, "production", 1) else { panic!() };
        assert_eq!((ask.percent, announce), (50, false));
    }

    #[test]
    fn a_step_on_an_unconfigured_environment_fails_naming_it() {
        let plan = sample_plan("production");
        let (p, step) = find(&plan, |r| matches!(r, StepRun::Validate { .. }));
        assert_eq!(
            validation(setting(&plan, p), "moon", 0),
            Next::Failed("environment `moon` is not configured".into())
        );
        assert_eq!(
            deploy(setting(&plan, p), &step, "moon", 0),
            Next::Failed("environment `moon` is not configured".into())
        );
    }

    #[test]
    fn validation_runs_each_suite_then_probes() {
        let plan = sample_plan("production");
        let (p, _) = find(&plan, |r| matches!(r, StepRun::Validate { .. }));
        let suites = plan.environment("staging").map(|e| e.validation.len()).unwrap_or(0);
        assert!(suites > 0);
        assert!(matches!(
            validation(setting(&plan, p), "staging", 0),
            Next::Job { task: Task::Suite { index: 0 }, .. }
        ));
        assert!(matches!(
            validation(setting(&plan, p), "staging", suites),
            Next::Probe { task: Task::ValidateProbe, .. }
        ));
    }

    #[test]
    fn a_suite_that_names_a_report_writes_it_next_to_the_evidence() {
        let plan = sample_plan("production");
        let (p, _) = find(&plan, |r| matches!(r, StepRun::Validate { .. }));
        let Next::Job { ask, .. } = validation(setting(&plan, p), "staging", 0) else { panic!("a suite job") };
        assert_eq!(ask.report, Some(ReportFormat::Junit));
        assert_eq!(ask.output, Some(setting(&plan, p).path("staging-smoke-junit.xml")));
        assert_eq!(report_file("staging", "e2e / api", ReportFormat::Junit), "staging-e2e---api-junit.xml");
    }

    #[test]
    fn a_failed_deploy_job_fails_the_step_with_its_traffic_share_and_a_good_one_probes() {
        assert_eq!(
            after_deploy_job(Strategy::Canary, "production", 1, &outcome(3)),
            Next::Failed("deploy job at 50% failed (exit 3 in 1.2s)".into())
        );
        assert_eq!(
            after_deploy_job(Strategy::Canary, "production", 1, &outcome(0)),
            Next::Probe {
                env: "production".into(),
                purpose: "after deploy production 50%".into(),
                task: Task::DeployStep { index: 1 }
            }
        );
    }

    #[test]
    fn blocking_findings_fail_the_security_step() {
        assert_eq!(after_scan(&outcome(0), 0.0).1, Next::Done);
        assert_eq!(after_scan(&outcome(1), 2.0).1, Next::Failed("2 blocking security findings".into()));
        assert_eq!(after_optional_job(&outcome(2)), Next::Failed("job failed (exit 2 in 1.2s)".into()));
    }

    #[test]
    fn a_blocked_validation_fails_with_its_figures() {
        use super::super::scores::{CaseSource, SuiteCases};
        let plan = sample_plan("production");
        let suites = &plan.environment("staging").expect("staging").validation;
        let cases = |targeted, passed| SuiteCases {
            source: CaseSource::Exit,
            targeted,
            passed,
            failed: targeted - passed,
            skipped: 0,
        };
        let score = Validation {
            suites: vec![cases(5, 4), cases(6, 6)],
            passed: 10,
            targeted: 11,
            coverage: Some(10.0 / 11.0),
            blocking: 1.0,
        };
        let (note, next) = after_validation("staging", suites, &score, "10/10 healthy");
        assert_eq!(
            note,
            "staging validation: 10/11 test cases passed in 2 suites (coverage 90.9%), 1 blocking, probes 10/10 healthy."
        );
        assert_eq!(next, Next::Failed(note.clone()));
        let clean = Validation {
            suites: vec![cases(5, 5), cases(7, 7)],
            passed: 12,
            targeted: 12,
            coverage: Some(1.0),
            blocking: 0.0,
        };
        let (note, next) = after_validation("staging", suites, &clean, "ok");
        assert_eq!(note, "staging validation: 12/12 test cases passed in 2 suites (coverage 100%), probes ok.");
        assert_eq!(next, Next::Done);
    }

    #[test]
    fn a_validation_without_a_count_says_why_coverage_is_not_measured() {
        use super::super::scores::{CaseSource, SuiteCases};
        let plan = sample_plan("production");
        let suites = &plan.environment("staging").expect("staging").validation;
        let smoke = SuiteCases { source: CaseSource::Exit, targeted: 5, passed: 5, failed: 0, skipped: 0 };
        let lost = SuiteCases {
            source: CaseSource::Unmeasured("report missing at p/r.xml".into()),
            targeted: 0,
            passed: 0,
            failed: 0,
            skipped: 0,
        };
        let score = Validation { suites: vec![smoke, lost], passed: 5, targeted: 5, coverage: None, blocking: 0.0 };
        let (note, next) = after_validation("staging", suites, &score, "ok");
        assert_eq!(
            note,
            format!(
                "staging validation: 5/5 test cases passed in 1 of 2 suites (coverage not measured ({}: report missing at p/r.xml)), probes ok.",
                suites[1].name
            )
        );
        assert_eq!(next, Next::Done, "the gate, not the step, reads the unmeasured coverage");
        let none = Validation { suites: Vec::new(), passed: 0, targeted: 0, coverage: Some(1.0), blocking: 0.0 };
        assert_eq!(
            after_validation("qa", &[], &none, "ok").0,
            "qa validation: no test suite configured (coverage 100% from the probe alone), probes ok."
        );
        assert_eq!(percent(0.8999), "89.9%");
        assert_eq!(percent(0.9), "90%");
    }

    #[test]
    fn slo_breaches_in_the_health_window_fail_the_step() {
        assert_eq!(after_soak(4, 0.0), ("Health window over: 4 probe rounds, 0 SLO breaches.".into(), Next::Done));
        assert_eq!(after_soak(4, 2.0).1, Next::Failed("2 SLO breaches during the health window".into()));
    }

    #[test]
    fn the_communication_line_is_posted_once() {
        let plan = sample_plan("production");
        let (_, mut step) = find(&plan, |r| matches!(r, StepRun::Note));
        step.communication = Some("Hello".into());
        let hello = "Hello".to_string();
        assert_eq!(opening_line(&step, false, None), Some(&hello));
        assert_eq!(opening_line(&step, true, Some(&hello)), None);
        assert_eq!(start(setting(&plan, 0), &step, 0, Timestamp(0)), Next::Done);
        step.communication = None;
        assert_eq!(start(setting(&plan, 0), &step, 0, Timestamp(0)), Next::Note(step.action.clone()));
    }

    #[test]
    fn a_phase_opens_with_its_announcement_unless_a_later_step_carries_it() {
        let plan = sample_plan("production");
        let mut phase = plan.protocols[0].phases[0].clone();
        phase.start_announcement = None;
        assert_eq!(
            phase_opening(&phase),
            Some(format!("[MASTER RAY™ | PHASE {} START] - {}...", phase.number, phase.title))
        );
        phase.start_announcement = Some("Go".into());
        assert_eq!(phase_opening(&phase), Some("Go".into()));
        if phase.steps.len() > 1 {
            phase.steps[1].communication = Some("Go".into());
            assert_eq!(phase_opening(&phase), None);
        }
    }

    #[test]
    fn the_health_window_ends_after_its_duration() {
        let plan = sample_plan("production");
        let (p, step) = find(&plan, |r| matches!(r, StepRun::HealthWindow { .. }));
        let Next::Soak { until, .. } = start(setting(&plan, p), &step, 0, Timestamp(1_000)) else { panic!() };
        let StepRun::HealthWindow { env } = &step.run else { unreachable!() };
        let window = plan.environment(env).map(|e| e.health_window.duration_ms).unwrap_or(0);
        assert_eq!(until, Timestamp(1_000 + window));
    }
}
