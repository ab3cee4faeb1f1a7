//! Gates and halts: a failed gate and its waiver, gates that cannot be waived, a phase or a step
//! run again, missing prerequisites, configuration drift and incomplete or tampered packages.

use super::*;

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
fn a_failed_case_of_a_non_critical_suite_lowers_coverage_below_the_rehearsal_gate() {
    let mut sim = Sim::new();
    sim.fail_jobs.push("validation regression staging".into());
    sim.start("alice", Strategy::Bluegreen);
    let text = sim.channel.join("\n");
    // Not blocking (regression is not critical): the step passes and the gate's coverage clause
    // decides.
    assert!(text.contains("staging validation: 1/2 test cases passed in 2 suites (coverage 50%), probes"), "{text}");
    assert!(text.contains("[RAY GATE FAILED: Deployment Rehearsal Gate]"), "{text}");
    assert!(text.contains("coverage = 0.5"), "{text}");
    assert!(text.contains("blocking_errors = 0"), "{text}");
    let results = sim.files.iter().find(|(k, _)| k.ends_with("staging-test-results.json")).map(|(_, v)| v).unwrap();
    let body: serde_json::Value = serde_json::from_str(results).unwrap();
    assert_eq!(body["coverage"], 0.5, "{body}");
    assert_eq!(body["suites"][1]["report"]["failures"], 1, "{body}");
    assert_eq!(body["suites"][1]["report"]["failed_cases"][0]["name"], "simulated.case", "{body}");
    assert_eq!(body["coverage_source"]["inputs"][0]["sha256"], "5133", "{body}");
}

#[test]
fn a_missing_test_report_leaves_coverage_unmeasured_and_the_gate_fails() {
    let mut sim = Sim::new();
    sim.lose_reports.push("validation regression staging".into());
    sim.start("alice", Strategy::Bluegreen);
    let text = sim.channel.join("\n");
    assert!(
        text.contains("1/1 test cases passed in 1 of 2 suites (coverage not measured (regression: report missing at"),
        "{text}"
    );
    assert!(text.contains("[RAY GATE FAILED: Deployment Rehearsal Gate]"), "{text}");
    assert!(text.contains("coverage not measured"), "{text}");
    assert!(matches!(sim.release().activity, Activity::Halted(_)));
}

#[test]
fn step_retry_reruns_only_the_failed_step() {
    let mut sim = Sim::new();
    sim.fail_jobs.push("refresh_data".into());
    // A failing GUIDELINE job is noted and the release goes on.
    sim.start("alice", Strategy::Bluegreen);
    assert!(matches!(sim.release().activity, Activity::Approval { .. }), "{}", sim.channel.join("\n"));
    // A failing MUST step whose gate cannot decide yet halts; /ray retry reruns that step alone.
    let mut sim = Sim::new();
    sim.lose_files.push("pre-deployment/observability-baseline.md".into());
    sim.start("alice", Strategy::Bluegreen);
    let Activity::Halted(h) = sim.release().activity.clone() else { panic!("{}", sim.channel.join("\n")) };
    assert!(h.step.contains("STEP 4.1 Assemble Go/No-Go Package"), "{h:?}");
    assert_eq!(h.resume, release::Resume::Step);
    let jobs = sim.jobs_run.len();
    sim.lose_files.clear();
    sim.command("carol", ReleaseCommand::Retry);
    assert_eq!(sim.jobs_run.len(), jobs, "no earlier step runs again: {:?}", &sim.jobs_run[jobs..]);
    assert!(matches!(sim.release().activity, Activity::Approval { .. }), "{}", sim.channel.join("\n"));
}

#[test]
fn a_failed_rollback_job_fails_the_rollback_gate_and_retry_reruns_only_its_phase() {
    let mut sim = Sim::new();
    sim.fail_jobs.push("rollback rehearsal staging".into());
    sim.start("alice", Strategy::Bluegreen);
    let text = sim.channel.join("\n");
    let Activity::Halted(h) = sim.release().activity.clone() else { panic!("{text}") };
    assert_eq!(h.step, "Rollback & Security Gate (Protocol 10 gate 3)");
    assert!(h.reason.contains("recovery_seconds not measured"), "{h:?}");
    assert!(text.contains("[RAY GATE FAILED: Rollback & Security Gate]"), "{text}");
    assert!(text.contains("halt condition met — rollback job on staging failed (exit 1"), "{text}");
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

#[test]
fn a_rehearsal_that_rolled_back_nothing_fails_the_rollback_gate_after_a_waived_rehearsal_gate() {
    let mut sim = Sim::new();
    // The staging suite fails: the Deployment Rehearsal Gate fails and rolls staging back to
    // v1.1, then a release manager waives it.
    sim.fail_jobs.push("validation smoke staging".into());
    sim.start("alice", Strategy::Bluegreen);
    assert!(posted(&sim, "[RAY GATE FAILED: Deployment Rehearsal Gate]"));
    assert_eq!(sim.serving["staging"].0, "v1.1");
    sim.fail_jobs.clear();
    sim.command(
        "alice",
        ReleaseCommand::Waive { gate: "rehearsal".into(), justification: "suite flaky, tracked in QA-7".into() },
    );
    let text = sim.channel.join("\n");
    // The rehearsal sees v1.1 serving: there is no candidate to roll back, so nothing is proven.
    let Activity::Halted(h) = sim.release().activity.clone() else { panic!("{text}") };
    assert_eq!(h.step, "Rollback & Security Gate (Protocol 10 gate 3)", "{text}");
    assert!(text.contains("[RAY GATE FAILED: Rollback & Security Gate]"), "{text}");
    assert!(text.contains("cannot rehearse the rollback on staging: v1.2 is not serving there"), "{text}");
    assert!(!text.contains("recovered in"), "no recovery is claimed: {text}");
    assert!(!sim.jobs_run.iter().any(|j| j.starts_with("rollback rehearsal")), "{:?}", sim.jobs_run);
    assert!(sim.release().rounds.is_empty(), "no go/no-go package is issued");
    let report: serde_json::Value =
        serde_json::from_str(&sim.files["pre-deployment/rollback-verification-report.json"]).unwrap();
    assert_eq!(report["proof"]["proven"], false);
    assert_eq!(report["proof"]["candidate_serving_before"]["v1.1"], 20);
    assert_eq!(report["recovery_seconds"], serde_json::Value::Null);
    assert!(report["failure"].as_str().unwrap().contains("v1.2 is not serving"), "{report}");
}

#[test]
fn a_rollback_script_that_changes_nothing_fails_the_rehearsal() {
    let mut sim = Sim::new();
    sim.inert_jobs.push("rollback rehearsal staging".into());
    sim.start("alice", Strategy::Bluegreen);
    let text = sim.channel.join("\n");
    let Activity::Halted(h) = sim.release().activity.clone() else { panic!("{text}") };
    assert_eq!(h.step, "Rollback & Security Gate (Protocol 10 gate 3)", "{text}");
    assert!(text.contains("the rollback rehearsal changed nothing on staging: v1.2 still serves"), "{text}");
    assert!(!sim.jobs_run.iter().any(|j| j.starts_with("roll forward")), "{:?}", sim.jobs_run);
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
        content: Vec::new(),
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
            content: Vec::new(),
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
fn a_release_begun_under_earlier_rules_keeps_them() {
    // A plan frozen before the rehearsal had to prove its rollback: it replays and goes on the
    // way the build that began it ran it (the rollback job first, no probe by version before).
    let mut plan = testkit::sample_plan("production");
    assert_eq!(plan.rules, crate::engine::plan::RULES, "new plans take the current rules");
    plan.rules = 0;
    let mut sim = Sim::new();
    sim.fail_jobs.push("rollback rehearsal staging".into());
    sim.start_with("alice", Strategy::Bluegreen, plan);
    let purposes: Vec<&str> = sim.release().probes.iter().map(|p| p.purpose.as_str()).collect();
    assert!(!purposes.iter().any(|p| p.starts_with("before rollback rehearsal")), "{purposes:?}");
    // Under the earlier rules the failed step halts on its own; the gate does not decide.
    let Activity::Halted(h) = sim.release().activity.clone() else { panic!("{}", sim.channel.join("\n")) };
    assert!(h.step.contains("STEP 3.1 Rehearse Rollback Procedure"), "{h:?}");
}
