//! What the protocols demand, done for real through `raybot chat` on the sample service: checks
//! that prove what they claim, and failure paths that leave a full record.

use crate::support::{Workspace, release_dir};

/// The staging suite fails, so the Deployment Rehearsal Gate fails and staging is rolled back to
/// v1.1; a release manager waives the gate. The rollback rehearsal then finds v1.1 serving: it
/// has no candidate to roll back, so it proves nothing and the Rollback & Security Gate fails.
/// No recovery is claimed and no go/no-go package is issued.
#[test]
fn a_rollback_rehearsal_that_rolls_back_nothing_fails_its_gate() {
    let ws = Workspace::new();
    // The staging smoke suite checks for a version that never serves: it fails.
    ws.edit_config(|t| {
        t.replacen(
            r#"argv = ["scripts/smoke_test.sh", "--env", "{env}", "--release", "{version}", "--junit""#,
            r#"argv = ["scripts/smoke_test.sh", "--env", "{env}", "--release", "v9.9", "--junit""#,
            1,
        )
    });
    let (out, code) = ws.chat("alice", "/ray deploy v1.2\n");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("[RAY GATE FAILED: Deployment Rehearsal Gate]"), "{out}");
    let (out, code) =
        ws.chat("alice", "/ray waive rehearsal smoke suite pinned to the wrong version, tracked in QA-7\n");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("[RAY GATE WAIVED: Deployment Rehearsal Gate]"), "{out}");
    assert_eq!(ws.serving(ws.staging_port), "v1.1", "the gate's failure handling rolled staging back");
    assert!(out.contains("cannot rehearse the rollback on staging: v1.2 is not serving there"), "{out}");
    assert!(out.contains("[RAY GATE FAILED: Rollback & Security Gate]"), "{out}");
    assert!(out.contains("recovery_seconds not measured"), "{out}");
    assert!(!out.contains("recovered in"), "{out}");
    assert!(!out.contains("[APPROVAL REQUEST] Readiness review"), "no go/no-go package: {out}");

    let dir = release_dir(&ws.artifacts());
    let text = std::fs::read_to_string(dir.join("pre-deployment/rollback-verification-report.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["proof"]["proven"], false, "{report}");
    assert!(report["proof"]["candidate_serving_before"]["v1.1"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["recovery_seconds"], serde_json::Value::Null, "{report}");
    assert!(report["steps"].as_array().unwrap().is_empty(), "no rollback job ran: {report}");
}

/// A clean rehearsal proves each move by the version the probe sees: v1.2 before, v1.1 after the
/// rollback, v1.2 again after the roll forward; recovery is the time until v1.1 served.
#[test]
fn a_rollback_rehearsal_proves_each_move_by_the_served_version() {
    let ws = Workspace::new();
    let (out, code) = ws.chat("alice", "/ray deploy v1.2\n");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Rollback rehearsal on staging: v1.2 was serving; v1.1 took over in"), "{out}");
    assert!(out.contains("v1.2 serves again."), "{out}");
    assert_eq!(ws.serving(ws.staging_port), "v1.2");
    let dir = release_dir(&ws.artifacts());
    let text = std::fs::read_to_string(dir.join("pre-deployment/rollback-verification-report.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    let proof = &report["proof"];
    assert_eq!(proof["proven"], true, "{report}");
    assert_eq!(proof["candidate_serving_before"], serde_json::json!({"v1.2": 20}), "{report}");
    assert_eq!(proof["serving_after_rollback"], serde_json::json!({"v1.1": 20}), "{report}");
    assert_eq!(proof["serving_after_roll_forward"], serde_json::json!({"v1.2": 20}), "{report}");
    assert!(report["recovery_seconds"].as_f64().unwrap() > 0.0, "{report}");
    assert_eq!(report["steps"].as_array().unwrap().len(), 2, "rollback and roll forward: {report}");
}

/// The production deploy job fails before any traffic moves: that is a failed Production Launch
/// Gate, announced in the seed's template with a `[RAY ERROR]`, recorded as a FAILED verdict row
/// in the report, and followed by the automatic rollback.
#[test]
fn a_failed_production_deploy_job_fails_the_launch_gate_on_the_record() {
    let art = tempfile::tempdir().expect("tempdir");
    let (out, code) = crate::support::run(
        std::process::Command::new(crate::support::RAYBOT)
            .args(["demo", "--fail", "deploy", "--artifacts"])
            .arg(art.path()),
        "",
        std::time::Duration::from_secs(120),
    );
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("halt condition met — deploy job at 0% failed (exit 1"), "{out}");
    assert!(out.contains("[RAY GATE FAILED: Production Launch Gate]"), "{out}");
    assert!(
        out.contains(
            "[RAY ERROR] - \"Failed at Production Launch Gate (Protocol 11 gate 3). Reason: blocking_incidents = 1, \
             validation_success_rate not measured"
        ),
        "{out}"
    );
    assert!(out.contains("Rolling production back automatically, as the gate's failure handling requires."), "{out}");
    assert!(out.contains("probe confirms the previous version serves again"), "{out}");
    let dir = release_dir(art.path());
    let report = std::fs::read_to_string(dir.join("deployment/DEPLOYMENT-REPORT.md")).unwrap();
    let row = report.lines().find(|l| l.contains("| Production Launch Gate |")).expect("a verdict row");
    assert!(row.contains("blocking_incidents = 1") && row.contains("| FAILED |"), "{row}");
    assert!(report.contains("**Outcome:** rolled back"), "{report}");
}

/// Upstream approvals are read, not assumed: the QA package's recommendation and signer verify
/// the seed's first prerequisite approval in the intake evidence, and a package that says "hold"
/// fails the intake with what it said.
#[test]
fn upstream_packages_are_read_for_their_recommendation_and_signer() {
    let ws = Workspace::new();
    let (out, code) = ws.chat("alice", "/ray deploy v1.2\n");
    assert_eq!(code, 0, "{out}");
    let dir = release_dir(&ws.artifacts());
    let text = std::fs::read_to_string(dir.join("pre-deployment/intake-validation-report.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    let qa = &report["approvals"][0];
    assert_eq!(qa["status"], "verified", "{report}");
    assert_eq!(qa["read"][0]["found"], "ready", "{report}");
    assert_eq!(qa["read"][1]["found"], "Senior Quality Engineer (sample)", "{report}");
    assert!(report["approvals"][1]["status"].as_str().unwrap().starts_with("not verified"), "{report}");

    // Another workspace whose QA package recommends holding the release.
    let ws = Workspace::new();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("quality-audit-report.json", zip::write::SimpleFileOptions::default()).unwrap();
    std::io::Write::write_all(&mut zip, br#"{"protocol": "19", "recommendation": "hold", "signed_by": "Sam QE"}"#)
        .unwrap();
    let bytes = zip.finish().unwrap().into_inner();
    std::fs::write(ws.path().join("inputs/QUALITY-AUDIT-PACKAGE.zip"), bytes).unwrap();
    let (out, code) = ws.chat("alice", "/ray deploy v1.2\n");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "QUALITY-AUDIT-PACKAGE.zip (content check failed: quality-audit-report.json recommendation is \"hold\", \
             expected \"ready\")"
        ),
        "{out}"
    );
    assert!(out.contains("[RAY ERROR] - \"Failed at Protocol 10 STEP 1.1 Confirm Upstream Approvals"), "{out}");
    assert!(!out.contains("PHASE 2 START"), "nothing is deployed on a held package: {out}");
}
