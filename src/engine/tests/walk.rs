//! A whole release: both protocols end to end, a strategy's milestones, a protocol run on its
//! own, and a log replayed to the same state.

use super::*;

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
        "[RAY ANNOUNCEMENT] Production deployment 50% complete: v1.2 is started on the idle side (its deploy job \
         succeeded; its health is probed once it takes traffic) with no traffic yet (0% of probe answers); the \
         switch comes next. No errors observed.",
        "[MASTER RAY™ | PHASE 4 COMPLETE] - Deployment report compiled. Evidence: DEPLOYMENT-REPORT.md.",
        "[MASTER RAY™ | PROTOCOL COMPLETE] Ready for Protocol 15",
        // The seed's next protocol is not the pipeline's: raybot says which runs and why.
        "The seed hands off to Protocol 15 (`15-production-deployment`); this release's pipeline \
         (protocols/pipeline.yaml) runs Protocol 11 (PRODUCTION DEPLOYMENT & RELEASE MANAGEMENT) next",
        // A confirmation nobody was asked for is not claimed as given.
        "Confirm readiness to transition to Protocol 15?\n→ not asked again: raybot takes the go/no-go approval of \
         @alice, @bob as this confirmation; continuing with Protocol 11.",
        "Next per the seed: Protocol 12 (`12-monitoring-observability`), which raybot does not run",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    // The security report says what was not asked or checked instead of leaving it null.
    let security: serde_json::Value =
        serde_json::from_str(&sim.files["pre-deployment/security-compliance-report.json"]).unwrap();
    assert!(security["approvals"].as_str().unwrap().starts_with("none requested"), "{security}");
    assert_eq!(security["not_checked"], serde_json::json!(["licence audit", "compliance validation"]));
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
    assert!(milestones[1].contains("50% complete: 50% of the traffic is routed to v1.2"), "{milestones:?}");
    assert!(milestones[2].contains("100% complete"));
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
    // A pipeline of one protocol announces the production milestones as a longer one does.
    let milestones: Vec<&String> =
        sim.channel.iter().filter(|l| l.starts_with("[RAY ANNOUNCEMENT] Production deployment")).collect();
    assert_eq!(milestones.len(), 3, "{milestones:?}");
    assert!(milestones[1].contains("50% complete: 50% of the traffic is routed to v1.2"), "{milestones:?}");
}

#[test]
fn replay_rebuilds_the_same_state() {
    let mut sim = Sim::new();
    to_production_approval(&mut sim);
    approve(&mut sim, "bob");
    let rebuilt = Release::replay(sim.log.iter()).unwrap();
    assert_eq!(&rebuilt, sim.release());
}

/// Protocol 06 alone: a failed staging deploy fails the Deployment Success Gate, whose handling
/// is a rollback. Production was never touched, so raybot rolls back staging (what the protocol
/// changed) and halts; it never runs or announces a production rollback.
#[test]
fn protocol_06_rolls_back_only_what_it_changed() {
    let mut plan = testkit::sample_plan("production");
    let catalog = crate::protocol::Catalog::embedded().unwrap();
    plan.protocols = vec![catalog.get("06").unwrap().clone()];
    let mut sim = Sim::new();
    sim.fail_jobs.push("deploy staging".into());
    sim.start_with("alice", Strategy::Canary, plan);
    let text = sim.channel.join("\n");
    assert!(text.contains("[RAY GATE FAILED: Deployment Success Gate]"), "{text}");
    assert!(text.contains("Rolling staging back as the gate's failure handling requires"), "{text}");
    assert!(!text.contains("Rolling back production"), "{text}");
    assert!(!sim.jobs_run.iter().any(|j| j == "rollback production"), "{:?}", sim.jobs_run);
    assert!(sim.jobs_run.iter().any(|j| j == "rollback staging"), "{:?}", sim.jobs_run);
    assert!(matches!(sim.release().activity, Activity::Halted(_)), "{text}");
    assert_eq!(sim.outcome, None, "the release is halted, not rolled back in production");
}

/// Every file raybot writes shows the values it used: no `{env}`, `{version}`, `{artifacts}` …
/// left in any of them, and the security scan is not said to run in production.
#[test]
fn no_evidence_file_shows_an_unexpanded_placeholder() {
    let mut sim = Sim::new();
    through_production_go(&mut sim);
    assert_eq!(sim.outcome, Some(Terminal::Released));
    for (path, contents) in &sim.files {
        for p in ["{env}", "{version}", "{strategy}", "{percent}", "{artifacts}", "{release}", "{output}"] {
            assert!(!contents.contains(p), "{path} shows {p}:\n{contents}");
        }
    }
    let checklist = &sim.files["pre-deployment/deployment-checklist.md"];
    assert!(checklist.contains("`scripts/rollback_backend.sh --env production --release v1.2`"), "{checklist}");
    assert!(checklist.contains("--percent 0`") && checklist.contains("--percent 100`"), "{checklist}");
    let report = &sim.files["deployment/DEPLOYMENT-REPORT.md"];
    let scan = report.lines().find(|l| l.starts_with("| security scan |")).expect("the scan in the jobs table");
    assert!(scan.contains("| candidate v1.2 (no environment) |"), "{scan}");
}
