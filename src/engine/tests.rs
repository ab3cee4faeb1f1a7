//! Engine tests: every gate, halt, waiver, retry, abort and rollback path, driven through [`Sim`].

use super::testkit::Sim;
use super::*;

fn approve(sim: &mut Sim, who: &str) {
    sim.command(who, ReleaseCommand::Approve { comment: None });
}

/// Runs the sample release up to the production approval.
fn to_production_approval(sim: &mut Sim) {
    sim.start("alice", Strategy::Bluegreen);
    assert!(matches!(sim.release().activity, Activity::Approval { .. }), "{:#?}", sim.channel);
    approve(sim, "alice");
    approve(sim, "bob");
    assert!(matches!(sim.release().activity, Activity::Acks { .. }), "{}", sim.channel.join("\n"));
    sim.ack_all();
    assert!(matches!(sim.release().activity, Activity::Approval { round: 1, .. }), "{}", sim.channel.join("\n"));
}

/// Runs the sample release until bob and carol said go for production (the deploy starts).
fn through_production_go(sim: &mut Sim) {
    to_production_approval(sim);
    approve(sim, "bob");
    approve(sim, "carol");
}

/// The texts of the posts among `fx`.
fn posts(fx: &[Effect]) -> Vec<String> {
    fx.iter().filter_map(|e| if let Effect::Post { text, .. } = e { Some(text.clone()) } else { None }).collect()
}

/// The release rebuilt from the log as it was while the first job or probe whose purpose starts
/// with `purpose` was running (the log cut just before its result).
fn while_running(sim: &Sim, purpose: &str) -> Release {
    let r = sim.release();
    let idx = sim
        .log
        .iter()
        .position(|(_, e)| match e {
            Event::JobFinished { job, .. } => r.jobs.iter().any(|j| &j.id == job && j.purpose.starts_with(purpose)),
            Event::ProbeFinished { probe, .. } => {
                r.probes.iter().any(|p| &p.id == probe && p.purpose.starts_with(purpose))
            }
            _ => false,
        })
        .unwrap_or_else(|| panic!("nothing called `{purpose}` ran"));
    Release::replay(sim.log[..idx].iter()).expect("replays")
}

fn posted(sim: &Sim, needle: &str) -> bool {
    sim.channel.iter().any(|l| l.contains(needle))
}

#[test]
fn clean_release_runs_both_protocols() {
    let mut sim = Sim::new();
    through_production_go(&mut sim);
    let text = sim.channel.join("\n");
    assert_eq!(sim.outcome, Some(Terminal::Released), "{text}");
    for line in [
        "[MASTER RAY™ | PHASE 1 START] - Validating upstream approvals and artifact completeness...",
        "[MASTER RAY™ | PHASE 1 COMPLETE] - Intake validation succeeded. Evidence: intake-validation-report.json.",
        "[MASTER RAY™ | PHASE 4 COMPLETE] - Pre-deployment package ready. Evidence: PRE-DEPLOYMENT-PACKAGE.zip.",
        "[MASTER RAY™ | PHASE 3 START] - Executing production deployment sequence...",
        "[PHASE 2] Change freeze in effect. All teams acknowledge?",
        "[APPROVAL REQUEST] All readiness gates passed. Approve production deployment? (yes/no)",
        "[RAY ANNOUNCEMENT] Production deployment 50% complete. No errors observed.",
        "[MASTER RAY™ | PHASE 4 COMPLETE] - Deployment report compiled. Evidence: DEPLOYMENT-REPORT.md.",
        "[MASTER RAY™ | PROTOCOL COMPLETE] Ready for Protocol 15",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    // Every gate of both protocols passed.
    let gates: Vec<(&str, &Verdict)> = sim.release().gates.iter().map(|g| (g.gate.as_str(), &g.verdict)).collect();
    assert_eq!(gates.len(), 8, "{gates:?}");
    assert!(gates.iter().all(|(_, v)| **v == Verdict::Passed), "{gates:?}");
    // Production was deployed exactly once per strategy step and never rolled back.
    let prod: Vec<&String> = sim.jobs_run.iter().filter(|j| j.starts_with("deploy production")).collect();
    assert_eq!(prod, ["deploy production 0%", "deploy production 100%"]);
    assert!(!sim.jobs_run.iter().any(|j| j == "rollback production"));
    for f in [
        "pre-deployment/intake-validation-report.json",
        "pre-deployment/staging-parity-report.json",
        "pre-deployment/staging-test-results.json",
        "pre-deployment/rollback-verification-report.json",
        "pre-deployment/security-compliance-report.json",
        "pre-deployment/readiness-approval.json",
        "pre-deployment/deployment-checklist.md",
        "pre-deployment/PRE-DEPLOYMENT-PACKAGE.zip",
        "deployment/deployment-readiness-checklist.json",
        "deployment/release-manifest.md",
        "deployment/staging-validation-results.json",
        "deployment/change-freeze-confirmation.md",
        "deployment/production-approval.json",
        "deployment/production-deployment-report.json",
        "deployment/post-deployment-validation.json",
        "deployment/deployment-health-log.md",
        "deployment/DEPLOYMENT-REPORT.md",
        "deployment/DEPLOYMENT-EVIDENCE.zip",
        "deployment/retrospective-inputs.json",
    ] {
        assert!(sim.files.contains_key(f), "missing evidence {f}; have {:?}", sim.files.keys());
    }
    assert!(!sim.files.contains_key("deployment/rollback-plan.md"));
    let approval = &sim.files["deployment/production-approval.json"];
    // Signatures name each person as evidence does: name from release-approvers.yaml and platform id.
    assert!(
        approval.contains("\"user\": \"Bob Example (local bob)\"")
            && approval.contains("\"user\": \"Carol Example (local carol)\""),
        "{approval}"
    );
    assert!(approval.contains("\"id\": \"v1.2-test\""));
}

#[test]
fn canary_posts_milestones_at_start_half_and_completion() {
    let mut sim = Sim::new();
    sim.start("alice", Strategy::Canary);
    approve(&mut sim, "alice");
    approve(&mut sim, "bob");
    sim.ack_all();
    approve(&mut sim, "bob");
    approve(&mut sim, "carol");
    let prod: Vec<&String> = sim.jobs_run.iter().filter(|j| j.starts_with("deploy production")).collect();
    assert_eq!(prod, ["deploy production 10%", "deploy production 50%", "deploy production 100%"]);
    let milestones: Vec<&String> =
        sim.channel.iter().filter(|l| l.starts_with("[RAY ANNOUNCEMENT] Production deployment")).collect();
    assert_eq!(milestones.len(), 3, "{milestones:?}");
    assert!(milestones[0].contains("started (canary: 10% → 50% → 100%)"));
    assert!(milestones[1].contains("50% complete. No errors observed."));
    assert!(milestones[2].contains("100% complete"));
}

#[test]
fn unhealthy_version_fails_launch_gate_and_rolls_back() {
    let mut sim = Sim::new();
    to_production_approval(&mut sim);
    sim.unhealthy.push("v1.2".into());
    approve(&mut sim, "bob");
    approve(&mut sim, "carol");
    let text = sim.channel.join("\n");
    assert!(matches!(sim.outcome, Some(Terminal::RolledBack { .. })), "{text}");
    assert!(text.contains("[RAY GATE FAILED: Production Launch Gate]"), "{text}");
    assert!(text.contains("Rolling back production (automatic)"), "{text}");
    assert!(text.contains("probe confirms the previous version serves again"), "{text}");
    assert_eq!(sim.serving["production"].0, "v1.1");
    assert!(sim.files.contains_key("deployment/rollback-plan.md"));
    assert!(sim.files["deployment/DEPLOYMENT-REPORT.md"].contains("rolled back"));
    let launch = sim.release().gates.iter().find(|g| g.gate == "launch").unwrap();
    assert_eq!(launch.verdict, Verdict::Failed);
}

#[test]
fn failing_production_deploy_rolls_back() {
    let mut sim = Sim::new();
    to_production_approval(&mut sim);
    sim.fail_jobs.push("deploy production 100%".into());
    approve(&mut sim, "bob");
    approve(&mut sim, "carol");
    assert!(matches!(sim.outcome, Some(Terminal::RolledBack { .. })), "{}", sim.channel.join("\n"));
    assert!(sim.jobs_run.contains(&"rollback production".to_string()));
}

#[test]
fn rejection_stops_before_production() {
    let mut sim = Sim::new();
    to_production_approval(&mut sim);
    sim.command("carol", ReleaseCommand::Reject { reason: "error budget exhausted".into() });
    assert_eq!(sim.outcome, Some(Terminal::Rejected { by: "carol".into(), reason: "error budget exhausted".into() }));
    assert!(!sim.jobs_run.iter().any(|j| j.starts_with("deploy production")));
    assert!(posted(&sim, "Rejected by @carol"));
}

#[test]
fn initiator_cannot_be_the_only_approver() {
    let mut plan = testkit::sample_plan("production");
    // Make the readiness review need the release manager only.
    for p in &mut plan.protocols {
        for ph in &mut p.phases {
            for s in &mut ph.steps {
                if let crate::protocol::model::StepRun::Approval { roles, .. } = &mut s.run {
                    if p.id == "10" {
                        *roles = vec!["release_manager".into()];
                    }
                }
            }
        }
    }
    plan.people.persons.push(plan::Person {
        id: "frank".into(),
        name: "Frank".into(),
        roles: vec!["release_manager".into()],
    });
    let mut sim = Sim::new();
    sim.start_with("alice", Strategy::Bluegreen, plan);
    approve(&mut sim, "alice");
    assert!(matches!(sim.release().activity, Activity::Approval { round: 0, .. }));
    assert!(posted(&sim, "@alice started this release, so another approver is needed"));
    approve(&mut sim, "frank");
    assert!(matches!(sim.release().activity, Activity::Acks { .. }));
}

#[test]
fn people_without_the_role_are_refused_and_nothing_changes() {
    let mut sim = Sim::new();
    to_production_approval(&mut sim);
    let before = sim.release().clone();
    sim.command("erin", ReleaseCommand::Approve { comment: None });
    sim.command("mallory", ReleaseCommand::Approve { comment: None });
    let last_two: Vec<&String> = sim.replies.iter().rev().take(2).map(|(_, t)| t).collect();
    assert!(last_two.iter().all(|t| t.starts_with("[RAY ERROR]")), "{last_two:?}");
    assert!(last_two[1].contains("erin (stakeholder) may not approve"), "{last_two:?}");
    assert!(last_two[0].contains("mallory is not in config/release-approvers.yaml"), "{last_two:?}");
    let after = sim.release();
    assert_eq!(before.rounds, after.rounds);
    assert_eq!(before.activity, after.activity);
    assert_eq!(
        after.audit.iter().filter(|a| !a.accepted).count(),
        before.audit.iter().filter(|a| !a.accepted).count() + 2
    );
}

#[test]
fn double_approval_and_double_ack_count_once() {
    let mut sim = Sim::new();
    sim.start("alice", Strategy::Bluegreen);
    approve(&mut sim, "bob");
    approve(&mut sim, "bob");
    assert_eq!(sim.release().rounds[0].approvals.len(), 1);
    approve(&mut sim, "alice");
    let msg = sim.message("freeze");
    for _ in 0..3 {
        sim.send(Event::Reaction { by: Sim::user("dave"), message: msg.clone(), emoji: "✅".into(), added: true });
    }
    sim.command("dave", ReleaseCommand::Ack);
    assert_eq!(sim.release().freeze.acks.len(), 1);
}

#[test]
fn freeze_reactions_count_and_uncount_and_strangers_do_not_count() {
    let mut sim = Sim::new();
    sim.start("alice", Strategy::Bluegreen);
    approve(&mut sim, "alice");
    approve(&mut sim, "bob");
    let msg = sim.message("freeze");
    let react = |sim: &mut Sim, who: &str, added: bool| {
        sim.send(Event::Reaction { by: Sim::user(who), message: msg.clone(), emoji: "white_check_mark".into(), added });
    };
    react(&mut sim, "carol", true);
    react(&mut sim, "mallory", true);
    assert_eq!(sim.release().freeze.acks.len(), 1);
    assert!(sim.replies.last().unwrap().1.contains("mallory is not on the change-freeze list"));
    react(&mut sim, "carol", false);
    assert_eq!(sim.release().freeze.acks.len(), 0);
    // A reaction on another message or with another emoji does nothing.
    sim.send(Event::Reaction {
        by: Sim::user("carol"),
        message: "other".into(),
        emoji: "white_check_mark".into(),
        added: true,
    });
    sim.send(Event::Reaction { by: Sim::user("carol"), message: msg.clone(), emoji: "tada".into(), added: true });
    assert_eq!(sim.release().freeze.acks.len(), 0);
    assert!(posted(&sim, "Waiting for: @alice, @bob, @carol, @dave, @erin"));
}

#[test]
fn freeze_reminder_names_who_is_missing() {
    let mut sim = Sim::new();
    sim.start("alice", Strategy::Bluegreen);
    approve(&mut sim, "alice");
    approve(&mut sim, "bob");
    for u in ["alice", "bob", "carol"] {
        sim.command(u, ReleaseCommand::Ack);
    }
    sim.fire_latest_timer();
    let last = sim.channel.last().unwrap();
    assert!(last.starts_with("[RAY REMINDER]") && last.contains("@dave, @erin"), "{last}");
    assert_eq!(sim.release().freeze.reminders, 1);
}

#[test]
fn gate_failure_halts_then_waiver_continues() {
    let mut sim = Sim::new();
    sim.fail_jobs.push("security scan".into());
    sim.start("alice", Strategy::Bluegreen);
    let text = sim.channel.join("\n");
    assert!(matches!(sim.release().activity, Activity::Halted(_)), "{text}");
    assert!(text.contains("[RAY GATE FAILED: Rollback & Security Gate]"), "{text}");
    assert!(text.contains("blocking_findings = 1"), "{text}");
    // A stakeholder may not waive; a short justification is refused; an unknown gate is named.
    sim.command(
        "erin",
        ReleaseCommand::Waive { gate: "rollback-security".into(), justification: "ship it now please".into() },
    );
    sim.command("alice", ReleaseCommand::Waive { gate: "rollback-security".into(), justification: "fine".into() });
    sim.command(
        "alice",
        ReleaseCommand::Waive { gate: "nope".into(), justification: "this gate does not exist".into() },
    );
    assert_eq!(sim.replies.iter().filter(|(_, t)| t.starts_with("[RAY ERROR]")).count(), 3);
    assert!(matches!(sim.release().activity, Activity::Halted(_)));
    sim.command(
        "alice",
        ReleaseCommand::Waive {
            gate: "rollback-security".into(),
            justification: "false positive in vendored test fixture, tracked in SEC-42".into(),
        },
    );
    assert!(matches!(sim.release().activity, Activity::Approval { round: 0, .. }), "{}", sim.channel.join("\n"));
    let g = sim.release().gates.iter().rfind(|g| g.gate == "rollback-security").unwrap();
    assert!(matches!(&g.verdict, Verdict::Waived { by, .. } if by == "alice"));
    assert!(sim.release().waivers[0].2.contains("SEC-42"));
}

#[test]
fn launch_gate_cannot_be_waived() {
    let mut sim = Sim::new();
    to_production_approval(&mut sim);
    sim.unhealthy.push("v1.2".into());
    sim.fail_jobs.push("rollback production".into());
    approve(&mut sim, "bob");
    approve(&mut sim, "carol");
    // The rollback itself failed: halted, awaiting a retry of the rollback.
    let Activity::Halted(h) = sim.release().activity.clone() else { panic!("{}", sim.channel.join("\n")) };
    assert_eq!(h.resume, release::Resume::Rollback);
    sim.command(
        "alice",
        ReleaseCommand::Waive { gate: "launch".into(), justification: "we accept the risk here".into() },
    );
    assert!(sim.replies.last().unwrap().1.starts_with("[RAY ERROR]"));
    sim.fail_jobs.clear();
    sim.command("carol", ReleaseCommand::Retry);
    assert!(matches!(sim.outcome, Some(Terminal::RolledBack { .. })), "{}", sim.channel.join("\n"));
}

#[test]
fn staging_rehearsal_failure_rolls_staging_back_and_retry_reruns_the_phase() {
    let mut sim = Sim::new();
    sim.fail_jobs.push("validation smoke staging".into());
    sim.start("alice", Strategy::Bluegreen);
    let text = sim.channel.join("\n");
    assert!(text.contains("[RAY GATE FAILED: Deployment Rehearsal Gate]"), "{text}");
    assert!(sim.jobs_run.contains(&"rollback staging".to_string()), "{:?}", sim.jobs_run);
    assert!(matches!(sim.release().activity, Activity::Halted(_)));
    let deploys_before = sim.jobs_run.iter().filter(|j| j.starts_with("deploy staging")).count();
    sim.fail_jobs.clear();
    sim.command("bob", ReleaseCommand::Retry);
    assert!(sim.replies.last().unwrap().1.contains("bob may not retry"));
    sim.command("alice", ReleaseCommand::Retry);
    assert!(sim.jobs_run.iter().filter(|j| j.starts_with("deploy staging")).count() > deploys_before);
    assert!(matches!(sim.release().activity, Activity::Approval { .. }), "{}", sim.channel.join("\n"));
}

#[test]
fn manual_rollback_and_abort_rules() {
    let mut sim = Sim::new();
    sim.start("alice", Strategy::Bluegreen);
    // Nothing deployed to production yet: rollback is refused, abort works.
    sim.command("alice", ReleaseCommand::Rollback { reason: None });
    assert!(sim.replies.last().unwrap().1.contains("nothing to roll back"));
    sim.command("erin", ReleaseCommand::Abort { reason: None });
    assert!(sim.replies.last().unwrap().1.contains("erin may not abort"));
    sim.command("alice", ReleaseCommand::Abort { reason: Some("scope changed".into()) });
    assert_eq!(sim.outcome, Some(Terminal::Aborted { by: "alice".into(), reason: "scope changed".into() }));
    sim.command("alice", ReleaseCommand::Ack);
    assert!(sim.replies.last().unwrap().1.contains("has already ended"));
}

#[test]
fn production_health_window_breach_escalates() {
    let mut sim = Sim::new();
    to_production_approval(&mut sim);
    // Two probes during the blue/green rollout and one post-deployment check pass; the health
    // window's probes then see production failing.
    sim.break_production_after_probes = Some(3);
    approve(&mut sim, "bob");
    approve(&mut sim, "carol");
    let text = sim.channel.join("\n");
    let Activity::Halted(h) = sim.release().activity.clone() else { panic!("{text}") };
    assert!(
        h.reason.contains("SLO breaches during the health window") && h.reason.contains("Escalate to Protocol 13"),
        "{h:?}"
    );
    assert!(sim.files["deployment/deployment-health-log.md"].contains("escalate to Protocol 13"));
    // Production was touched: abort is refused, rollback restores v1.1.
    sim.command("alice", ReleaseCommand::Abort { reason: None });
    assert!(sim.replies.last().unwrap().1.contains("use `/ray rollback"));
    sim.break_production_after_probes = None;
    sim.command("carol", ReleaseCommand::Rollback { reason: Some("error rate during soak".into()) });
    assert!(matches!(sim.outcome, Some(Terminal::RolledBack { .. })), "{}", sim.channel.join("\n"));
    assert_eq!(sim.serving["production"].0, "v1.1");
}

#[test]
fn unknown_job_after_restart_is_not_rerun() {
    let mut sim = Sim::new();
    through_production_go(&mut sim);
    // Rebuild from the log cut right after the first production deploy job was asked for.
    let mut r = while_running(&sim, "deploy production");
    assert!(matches!(r.activity, Activity::Job { .. }));
    let fx = r.handle(
        &Event::Resumed { replica: "raybot-2".into(), previous: Some("raybot-1".into()), jobs_queued: false },
        Timestamp(sim.now.0),
    );
    assert!(!fx.iter().any(|e| matches!(e, Effect::RunJob(_))), "{fx:?}");
    let text = posts(&fx);
    assert!(
        text[0].starts_with("[RAY ERROR] - \"Failed at Protocol 11 STEP 3.2 Execute Production Deployment"),
        "{text:?}"
    );
    assert!(text[0].contains("job outcome unknown after raybot-1 stopped. Awaiting instructions."), "{text:?}");
    assert!(matches!(r.activity, Activity::Halted(_)));
}

#[test]
fn a_queued_job_is_queued_again_on_takeover_and_reported_once_lost() {
    let mut sim = Sim::new();
    through_production_go(&mut sim);
    let mut r = while_running(&sim, "deploy production");
    let Activity::Job { job, .. } = r.activity.clone() else { panic!("{:?}", r.activity) };
    // A replica taking over a release on the shared queue asks for the same job (the queue drops
    // the duplicate) and reports nothing yet: the job may still be running elsewhere.
    let fx = r.handle(
        &Event::Resumed { replica: "raybot-2".into(), previous: Some("raybot-1".into()), jobs_queued: true },
        Timestamp(sim.now.0),
    );
    let asked: Vec<_> =
        fx.iter().filter_map(|e| if let Effect::RunJob(s) = e { Some(s.id.clone()) } else { None }).collect();
    assert_eq!(asked, vec![job.clone()], "{fx:?}");
    assert!(posts(&fx).is_empty(), "{fx:?}");
    // A loss report for another job changes nothing.
    assert!(r.handle(&Event::JobLost { job: "other#job1".into(), replica: "raybot-9".into() }, sim.now).is_empty());
    // The queue found the job's replica gone: the seed's error, no re-run.
    let fx = r.handle(&Event::JobLost { job: job.clone(), replica: "raybot-1".into() }, Timestamp(sim.now.0 + 1));
    assert!(!fx.iter().any(|e| matches!(e, Effect::RunJob(_))), "{fx:?}");
    let text = posts(&fx);
    assert!(text[0].starts_with("[RAY ERROR] - \"Failed at Protocol 11 STEP 3.2"), "{text:?}");
    assert!(
        text[0].contains("Reason: job outcome unknown after raybot-1 stopped. Awaiting instructions.\""),
        "{text:?}"
    );
    assert!(matches!(r.activity, Activity::Halted(_)));
    // Reported twice (two replicas claimed it in turn): said once.
    assert!(posts(&r.handle(&Event::JobLost { job, replica: "raybot-1".into() }, Timestamp(sim.now.0 + 2))).is_empty());
}

#[test]
fn replay_rebuilds_the_same_state() {
    let mut sim = Sim::new();
    to_production_approval(&mut sim);
    approve(&mut sim, "bob");
    let rebuilt = Release::replay(sim.log.iter()).unwrap();
    assert_eq!(&rebuilt, sim.release());
}

#[test]
fn intake_missing_prerequisite_halts_with_seed_error() {
    let mut sim = Sim::new();
    sim.start("alice", Strategy::Bluegreen);
    // Restart a fresh release where the check reports a missing file.
    let mut r = Release::replay(sim.log[..1].iter()).unwrap();
    let Activity::Inputs { check } = r.activity.clone() else { panic!("{:?}", r.activity) };
    let results = vec![InputStatus {
        name: "QUALITY-AUDIT-PACKAGE.zip".into(),
        found: vec![],
        status: "missing".into(),
        required: true,
        sha256: None,
    }];
    let fx = r.handle(&Event::InputsChecked { check, results }, Timestamp(sim.now.0 + 1));
    let posts = posts(&fx);
    assert!(
        posts.iter().any(|p| p.contains("Failed at Protocol 10 STEP 1.1 Confirm Upstream Approvals")
            && p.contains("QUALITY-AUDIT-PACKAGE.zip (missing)")),
        "{posts:#?}"
    );
    assert!(matches!(r.activity, Activity::Halted(_)));
}

#[test]
fn critical_parity_drift_halts_intake_and_a_waiver_is_recorded_in_the_evidence() {
    let mut plan = testkit::sample_plan("production");
    if let Some(p) = plan.environments.get_mut("production").and_then(|e| e.parity.get_mut("runtime")) {
        p.value = "sample-app/2".into();
    }
    let mut sim = Sim::new();
    sim.start_with("alice", Strategy::Bluegreen, plan);
    // The phase's gate has both its figures, so it decides at once.
    let Activity::Halted(h) = sim.release().activity.clone() else { panic!("{}", sim.channel.join("\n")) };
    assert_eq!(h.step, "Intake Confirmation Gate (Protocol 10 gate 1)");
    assert!(h.reason.contains("drift_severity = 4"), "{h:?}");
    assert_eq!(h.gate.as_deref(), Some("intake"));
    assert!(posted(&sim, "configuration drift of severity critical between staging and production"));
    let parity = &sim.files["pre-deployment/staging-parity-report.json"];
    assert!(parity.contains("\"key\": \"runtime\"") && parity.contains("\"drift_severity\": \"critical\""), "{parity}");
    sim.command(
        "carol",
        ReleaseCommand::Waive {
            gate: "intake".into(),
            justification: "runtime v2 is rolled out to staging next week".into(),
        },
    );
    assert!(matches!(sim.release().activity, Activity::Approval { round: 0, .. }), "{}", sim.channel.join("\n"));
    approve(&mut sim, "alice");
    approve(&mut sim, "bob");
    let approval = &sim.files["pre-deployment/readiness-approval.json"];
    assert!(approval.contains("runtime v2 is rolled out"), "the waiver is a recorded risk: {approval}");
}

#[test]
fn tampered_pre_deployment_package_fails_the_readiness_confirmation_gate() {
    let mut sim = Sim::new();
    sim.start("alice", Strategy::Bluegreen);
    approve(&mut sim, "alice");
    approve(&mut sim, "bob");
    // Protocol 10 finished; cut the log just before Protocol 11 reads its inputs and answer with a
    // package whose digest differs from the one the bundle recorded.
    let idx = sim.log.iter().rposition(|(_, e)| matches!(e, Event::InputsChecked { .. })).unwrap();
    let mut r = Release::replay(sim.log[..idx].iter()).unwrap();
    let Activity::Inputs { check } = r.activity.clone() else { panic!("{:?}", r.activity) };
    let zip = r.bundles.iter().find(|b| b.zip.ends_with("PRE-DEPLOYMENT-PACKAGE.zip")).unwrap().zip.clone();
    let results: Vec<InputStatus> = r
        .protocol_prerequisites()
        .into_iter()
        .map(|(name, required)| InputStatus {
            sha256: if name == zip { Some("f".repeat(64)) } else { None },
            found: vec![name.clone()],
            name,
            status: "present".into(),
            required,
        })
        .collect();
    let fx = r.handle(&Event::InputsChecked { check, results }, Timestamp(sim.now.0 + 1));
    let posts = posts(&fx);
    assert!(posts.iter().any(|p| p.contains("PRE-DEPLOYMENT-PACKAGE.zip (checksum mismatch)")), "{posts:#?}");
    assert!(posts.iter().any(|p| p.contains("[RAY GATE FAILED: Readiness Confirmation Gate]")), "{posts:#?}");
    assert!(matches!(r.activity, Activity::Halted(_)));
    assert!(!r.production_touched);
}

#[test]
fn rollback_asked_during_a_deploy_job_runs_when_the_job_ends() {
    let mut sim = Sim::new();
    through_production_go(&mut sim);
    // Rebuild the release at the moment the first production deploy job runs.
    let mut r = while_running(&sim, "deploy production");
    let Activity::Job { job, .. } = r.activity.clone() else { panic!() };
    let fx = r.handle(
        &Event::Command {
            by: Sim::user("carol"),
            command: ReleaseCommand::Rollback { reason: Some("pager fired".into()) },
        },
        sim.now,
    );
    assert!(matches!(&fx[0], Effect::Reply { text, .. } if text.contains("Rollback queued")), "{fx:?}");
    let ok = JobOutcome { exit_code: Some(0), timed_out: false, duration_ms: 5, spawn_error: None, log_tail: vec![] };
    // The rollback starts as soon as the running job ends: no further step, not even a probe.
    let fx = r.handle(&Event::JobFinished { job, outcome: ok }, sim.now);
    assert!(fx.iter().any(|e| matches!(e, Effect::RunJob(j) if j.purpose == "rollback production")), "{fx:?}");
    assert!(!fx.iter().any(|e| matches!(e, Effect::Probe(_))), "{fx:?}");
    assert!(r.rollback_requested.is_none());
}

#[test]
fn step_retry_reruns_only_the_failed_step() {
    let mut sim = Sim::new();
    sim.fail_jobs.push("refresh_data".into());
    // A failing GUIDELINE job is noted and the release goes on.
    sim.start("alice", Strategy::Bluegreen);
    assert!(matches!(sim.release().activity, Activity::Approval { .. }), "{}", sim.channel.join("\n"));
    // A failing MUST step halts; /ray retry reruns that step alone.
    let mut sim = Sim::new();
    sim.fail_jobs.push("rollback rehearsal staging".into());
    sim.start("alice", Strategy::Bluegreen);
    let Activity::Halted(h) = sim.release().activity.clone() else { panic!("{}", sim.channel.join("\n")) };
    assert!(h.step.contains("STEP 3.1 Rehearse Rollback Procedure"), "{h:?}");
    let deploys = sim.jobs_run.iter().filter(|j| j.starts_with("deploy staging")).count();
    sim.fail_jobs.clear();
    sim.command("carol", ReleaseCommand::Retry);
    assert_eq!(
        sim.jobs_run.iter().filter(|j| j.starts_with("deploy staging")).count(),
        deploys,
        "phase 2 must not rerun"
    );
    assert!(matches!(sim.release().activity, Activity::Approval { .. }), "{}", sim.channel.join("\n"));
}

/// Protocol 06 is not in the default pipeline, but its steps are all runnable: a pipeline of 06
/// alone deploys staging, asks for approval, deploys production and validates it.
#[test]
fn protocol_06_runs_on_its_own() {
    let mut plan = testkit::sample_plan("production");
    let catalog = crate::protocol::Catalog::embedded().unwrap();
    plan.protocols = vec![catalog.get("06").unwrap().clone()];
    let mut sim = Sim::new();
    sim.start_with("alice", Strategy::Canary, plan);
    assert!(matches!(sim.release().activity, Activity::Approval { .. }), "{}", sim.channel.join("\n"));
    assert!(posted(
        &sim,
        "[APPROVAL REQUEST] Staging deployment successful. All quality gates passed. Proceed with production deployment? (yes/no)"
    ));
    approve(&mut sim, "bob");
    approve(&mut sim, "carol");
    let text = sim.channel.join("\n");
    assert_eq!(sim.outcome, Some(Terminal::Released), "{text}");
    assert!(
        text.contains("[DEPLOYMENT PHASE 3 COMPLETE] - Post-Deployment Validation finished successfully ✓"),
        "{text}"
    );
    assert!(sim.files.contains_key("deployment/smoke-test-results.json"), "{:?}", sim.files.keys());
    assert_eq!(sim.serving["production"].0, "v1.2");
}

#[test]
fn incomplete_package_halts_the_readiness_phase_until_waived() {
    let mut sim = Sim::new();
    sim.lose_files.push("pre-deployment/observability-baseline.md".into());
    sim.start("alice", Strategy::Bluegreen);
    let Activity::Halted(h) = sim.release().activity.clone() else { panic!("{}", sim.channel.join("\n")) };
    assert!(h.step.contains("STEP 4.1 Assemble Go/No-Go Package"), "{h:?}");
    assert!(h.reason.contains("package incomplete: pre-deployment/observability-baseline.md missing"), "{h:?}");
    assert_eq!(h.gate.as_deref(), Some("readiness"));
    // The approval round has not opened: no go/no-go on an incomplete package.
    assert!(sim.release().rounds.is_empty());
    sim.command(
        "alice",
        ReleaseCommand::Waive {
            gate: "readiness".into(),
            justification: "baseline is guidance, dashboards cover it".into(),
        },
    );
    assert!(matches!(sim.release().activity, Activity::Approval { round: 0, .. }), "{}", sim.channel.join("\n"));
}

#[test]
fn reject_button_stops_the_release_and_strangers_cannot_click() {
    let mut sim = Sim::new();
    to_production_approval(&mut sim);
    let message = sim.message("approval:1");
    sim.send(Event::Click { by: Sim::user("erin"), message: message.clone(), button: Button::Reject });
    assert!(sim.replies.last().unwrap().1.starts_with("[RAY ERROR] erin may not reject"), "{:?}", sim.replies.last());
    assert!(sim.outcome.is_none());
    // A click on a closed request (the readiness one) is refused too.
    let old = sim.message("approval:0");
    sim.send(Event::Click { by: Sim::user("bob"), message: old, button: Button::Approve });
    assert!(sim.replies.last().unwrap().1.contains("this approval request is closed"));
    sim.send(Event::Click { by: Sim::user("carol"), message, button: Button::Reject });
    assert_eq!(
        sim.outcome,
        Some(Terminal::Rejected { by: "carol".into(), reason: "rejected with the Reject button".into() })
    );
    assert!(
        sim.channel.iter().any(|l| l.starts_with("(updated) [RAY] ⛔ Rejected by @carol")),
        "{}",
        sim.channel.join("\n")
    );
    assert!(sim.files["deployment/production-approval.json"].contains("\"decision\": \"rejected\""));
}

#[test]
fn rollback_asked_during_the_health_window_probe_is_not_lost() {
    let mut sim = Sim::new();
    through_production_go(&mut sim);
    let mut r = while_running(&sim, "health window");
    let Activity::Probe { probe, .. } = r.activity.clone() else { panic!("{:?}", r.activity) };
    r.handle(
        &Event::Command {
            by: Sim::user("alice"),
            command: ReleaseCommand::Rollback { reason: Some("error budget".into()) },
        },
        sim.now,
    );
    let report =
        ProbeReport { url: "x".into(), total: 20, ok: 20, p50_ms: 1, p95_ms: 2, max_ms: 3, ..Default::default() };
    let fx = r.handle(&Event::ProbeFinished { probe: probe.into(), report }, sim.now);
    assert!(fx.iter().any(|e| matches!(e, Effect::RunJob(j) if j.purpose == "rollback production")), "{fx:?}");
}

#[test]
fn a_final_bundle_that_cannot_be_written_halts_and_a_retry_writes_it_again_and_ends() {
    let mut sim = Sim::new();
    // Step 4.2 writes the bundle, then the release's end writes it again with the outcome: that
    // second writing fails.
    sim.fail_bundles.push(("DEPLOYMENT-EVIDENCE.zip".into(), 2));
    through_production_go(&mut sim);
    let text = sim.channel.join("\n");
    let Activity::Halted(h) = sim.release().activity.clone() else { panic!("not halted:\n{text}") };
    assert_eq!(h.resume, release::Resume::Finish { outcome: Terminal::Released }, "{text}");
    assert!(h.reason.contains("DEPLOYMENT-EVIDENCE.zip: No space left on device"), "{}", h.reason);
    assert!(sim.outcome.is_none(), "not released before its evidence is written");
    assert!(posted(&sim, "Type `/ray retry` to write the final evidence again."), "{text}");

    // The disk has room again: the retry writes the report and bundle and ends the release.
    sim.fail_bundles.clear();
    sim.command("alice", ReleaseCommand::Retry);
    assert_eq!(sim.outcome, Some(Terminal::Released), "{}", sim.channel.join("\n"));
    assert!(sim.files.keys().any(|f| f.ends_with("DEPLOYMENT-EVIDENCE.zip")));
    let replayed = Release::replay(sim.log.iter()).expect("the log replays");
    assert_eq!(replayed.activity, sim.release().activity);
}

/// The sample release on Slack: the same people, with their Slack ids.
fn slack_release(sim: &mut Sim) {
    sim.start_with("U0ALICE001", Strategy::Bluegreen, super::testkit::sample_plan_on("production", Platform::Slack));
    sim.command("U0MALLORY9", ReleaseCommand::Approve { comment: None });
    approve(sim, "U0ALICE001");
    approve(sim, "U0BOB00002");
    sim.ack_all();
    sim.command("U0ERIN0005", ReleaseCommand::Approve { comment: None });
    sim.command("U0ERIN0005", ReleaseCommand::Rollback { reason: None });
    approve(sim, "U0BOB00002");
    approve(sim, "U0CAROL003");
}

const SLACK_IDS: [&str; 6] = ["U0ALICE001", "U0BOB00002", "U0CAROL003", "U0DAVE0004", "U0ERIN0005", "U0MALLORY9"];

#[test]
fn refusals_and_the_deployment_window_post_mention_people_on_slack() {
    let mut sim = Sim::new();
    slack_release(&mut sim);
    assert_eq!(sim.outcome, Some(Terminal::Released), "{}", sim.channel.join("\n"));
    let refusals: Vec<&str> =
        sim.replies.iter().map(|(_, t)| t.as_str()).filter(|t| t.starts_with("[RAY ERROR]")).collect();
    assert!(
        refusals.contains(
            &"[RAY ERROR] <@U0MALLORY9> is not in config/release-approvers.yaml, so cannot approve releases."
        ),
        "{refusals:?}"
    );
    assert!(
        refusals.iter().any(|t| t.starts_with("[RAY ERROR] <@U0ERIN0005> (stakeholder) may not approve")),
        "{refusals:?}"
    );
    assert!(refusals.iter().any(|t| t.starts_with("[RAY ERROR] <@U0ERIN0005> may not roll back")), "{refusals:?}");
    let window = sim.channel.iter().find(|l| l.contains("Deployment window:")).expect("the window is announced");
    assert!(window.contains("on-call: SRE (<@U0CAROL003>), Product (<@U0BOB00002>)."), "{window}");
}

#[test]
fn no_post_reply_or_evidence_file_of_a_slack_release_shows_a_bare_user_id() {
    let mut sim = Sim::new();
    slack_release(&mut sim);
    assert_eq!(sim.outcome, Some(Terminal::Released));
    let bare = |what: &str, text: &str| {
        let lines = super::testkit::bare_ids(text, Platform::Slack, &SLACK_IDS);
        assert!(lines.is_empty(), "{what} shows a bare id: {lines:#?}");
    };
    for post in &sim.channel {
        bare("a post", post);
    }
    for (_, reply) in &sim.replies {
        bare("a reply", reply);
    }
    assert!(sim.files.len() > 15, "{:?}", sim.files.keys());
    for (path, contents) in &sim.files {
        bare(path, contents);
    }
    // Evidence names people with their name and their Slack id.
    let report = &sim.files["deployment/DEPLOYMENT-REPORT.md"];
    assert!(report.contains("Started by: Alice Example (slack U0ALICE001)"), "{report}");
    assert!(report.contains("refused slack U0MALLORY9 at "), "{report}");
    assert!(
        report.contains("on-call: SRE (Carol Example (slack U0CAROL003)), Product (Bob Example (slack U0BOB00002))"),
        "{report}"
    );
    let approval = &sim.files["deployment/production-approval.json"];
    assert!(approval.contains("\"user\": \"Carol Example (slack U0CAROL003)\""), "{approval}");
    let freeze = &sim.files["deployment/change-freeze-confirmation.md"];
    assert!(freeze.contains("| Dave Example (slack U0DAVE0004) | security_lead |"), "{freeze}");
}

#[test]
fn a_rollback_asked_on_slack_names_who_asked_in_chat_and_in_the_evidence() {
    let mut sim = Sim::new();
    sim.start_with("U0ALICE001", Strategy::Bluegreen, super::testkit::sample_plan_on("production", Platform::Slack));
    approve(&mut sim, "U0ALICE001");
    approve(&mut sim, "U0BOB00002");
    sim.ack_all();
    approve(&mut sim, "U0BOB00002");
    approve(&mut sim, "U0CAROL003");
    // Back to the moment the first production deploy job ran: carol asks for a rollback, then the
    // job ends and the world goes on from there.
    let r = while_running(&sim, "deploy production");
    let Activity::Job { job, .. } = r.activity.clone() else { panic!() };
    sim.release = Some(r);
    sim.command("U0CAROL003", ReleaseCommand::Rollback { reason: Some("customer reports".into()) });
    let ok = JobOutcome { exit_code: Some(0), timed_out: false, duration_ms: 5, spawn_error: None, log_tail: vec![] };
    sim.send(Event::JobFinished { job, outcome: ok });
    assert!(matches!(sim.outcome, Some(Terminal::RolledBack { .. })), "{:?}", sim.outcome);
    let text = sim.channel.join("\n");
    assert!(
        text.contains("Rolling back production (<@U0CAROL003>): requested by <@U0CAROL003>: customer reports"),
        "{text}"
    );
    let plan = &sim.files["deployment/rollback-plan.md"];
    assert!(plan.contains("- Triggered by: Carol Example (slack U0CAROL003)"), "{plan}");
    assert!(plan.contains("- Reason: requested by Carol Example (slack U0CAROL003): customer reports"), "{plan}");
    for (path, contents) in &sim.files {
        let lines = super::testkit::bare_ids(contents, Platform::Slack, &SLACK_IDS);
        assert!(lines.is_empty(), "{path} shows a bare id: {lines:#?}");
    }
}

#[test]
fn the_bare_id_check_tells_a_mention_and_a_label_from_a_bare_id() {
    let text = "refused U0BOB00002 at noon\n<@U0BOB00002> approved\nBob Example (slack U0BOB00002)\nmessage U0BOB000021\n(U0BOB00002)";
    assert_eq!(
        super::testkit::bare_ids(text, Platform::Slack, &["U0BOB00002"]),
        ["refused U0BOB00002 at noon", "(U0BOB00002)"]
    );
}

#[test]
fn a_waiver_on_slack_is_recorded_with_the_waivers_name_and_slack_id() {
    let mut sim = Sim::new();
    sim.fail_jobs.push("security scan".into());
    sim.start_with("U0ALICE001", Strategy::Bluegreen, super::testkit::sample_plan_on("production", Platform::Slack));
    assert!(matches!(sim.release().activity, Activity::Halted(_)), "{}", sim.channel.join("\n"));
    sim.command(
        "U0ERIN0005",
        ReleaseCommand::Waive { gate: "rollback-security".into(), justification: "ship it now please".into() },
    );
    let refusal = &sim.replies.last().unwrap().1;
    assert_eq!(
        refusal,
        "[RAY ERROR] <@U0ERIN0005> may not waive gates; waivers need one of: release_manager, sre_lead."
    );
    sim.command(
        "U0ALICE001",
        ReleaseCommand::Waive {
            gate: "rollback-security".into(),
            justification: "false positive in vendored test fixture, tracked in SEC-42".into(),
        },
    );
    let text = sim.channel.join("\n");
    assert!(text.contains("waived by <@U0ALICE001> (release_manager)"), "{text}");
    slack_release_from_readiness(&mut sim);
    assert_eq!(sim.outcome, Some(Terminal::Released), "{}", sim.channel.join("\n"));
    let report = &sim.files["deployment/DEPLOYMENT-REPORT.md"];
    assert!(report.contains("waived by Alice Example (slack U0ALICE001)"), "{report}");
    let retro = &sim.files["deployment/retrospective-inputs.json"];
    assert!(retro.contains("\"owner\": \"Alice Example (slack U0ALICE001)\""), "{retro}");
    for (path, contents) in &sim.files {
        let lines = super::testkit::bare_ids(contents, Platform::Slack, &SLACK_IDS);
        assert!(lines.is_empty(), "{path} shows a bare id: {lines:#?}");
    }
    for post in sim.channel.iter().chain(sim.replies.iter().map(|(_, t)| t)) {
        let lines = super::testkit::bare_ids(post, Platform::Slack, &SLACK_IDS);
        assert!(lines.is_empty(), "a message shows a bare id: {lines:#?}");
    }
}

/// From the readiness review of a Slack release to its end.
fn slack_release_from_readiness(sim: &mut Sim) {
    approve(sim, "U0ALICE001");
    approve(sim, "U0BOB00002");
    sim.ack_all();
    approve(sim, "U0BOB00002");
    approve(sim, "U0CAROL003");
}
