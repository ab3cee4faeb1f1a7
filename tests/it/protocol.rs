//! What the protocols demand, done for real through `raybot chat` on the sample service: checks
//! that prove what they claim, and failure paths that leave a full record.

use crate::support::{Workspace, demo, release_dir};

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
    let (out, code, art) = demo(&["--fail", "deploy"]);
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

/// A failed production deploy leaves as full a record as a release: `rollback-plan.md` lists the
/// rollback of production and nothing else, `retrospective-inputs.json` holds the failed gate and
/// its figures, and the report's communication log holds the `[RAY GATE FAILED]` block in full
/// and the final rolled-back post.
#[test]
fn a_failed_production_deploy_leaves_the_rollback_plan_retrospective_and_full_log() {
    let (out, code, art) = demo(&["--fail", "deploy"]);
    assert_eq!(code, 3, "{out}");
    let dir = release_dir(art.path());

    let plan = std::fs::read_to_string(dir.join("deployment/rollback-plan.md")).unwrap();
    let steps = plan.split("## Steps executed").nth(1).expect("steps").split("\n## ").next().unwrap_or_default();
    let listed: Vec<&str> = steps.lines().filter(|l| l.starts_with(|c: char| c.is_ascii_digit())).collect();
    assert_eq!(listed.len(), 1, "{plan}");
    assert!(
        listed[0].starts_with(
            "1. `scripts/rollback_backend.sh --env production --release v1.2` — rollback production — exit 0"
        ),
        "{plan}"
    );
    assert!(steps.contains("Confirming probe: after rollback production") && steps.contains("serving v1.1×"), "{plan}");
    for other in ["security_scan", "--dry-run", "deploy production"] {
        assert!(!steps.contains(other), "{other} is not a rollback step:\n{plan}");
    }

    let text = std::fs::read_to_string(dir.join("deployment/retrospective-inputs.json")).expect("retrospective inputs");
    let retro: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(retro["outcome"], "rolled back", "{text}");
    assert_eq!(retro["failed_gates"][0]["name"], "Production Launch Gate", "{text}");
    assert_eq!(retro["failed_gates"][0]["figures"][0]["actual"], 1.0, "{text}");
    assert!(
        retro["improvements"][0]["improvement"]
            .as_str()
            .unwrap()
            .starts_with("Production Launch Gate failed: deploy production 0% failed (exit 1"),
        "{text}"
    );
    assert_eq!(retro["improvements"][0]["owner"], "Carol Example (local carol)", "{text}");

    let report = std::fs::read_to_string(dir.join("deployment/DEPLOYMENT-REPORT.md")).unwrap();
    let log = report.split("## Communication log").nth(1).expect("a communication log");
    for line in [
        "[RAY GATE FAILED: Production Launch Gate]",
        "> \"Quality gate 'Production Launch Gate' failed.",
        "> Criteria: Approval recorded, deployment successful, immediate checks passed",
        "> Actual: blocking_incidents = 1, validation_success_rate not measured",
        "> Required action: Initiate rollback per plan, notify stakeholders, engage Protocol 13.\"",
    ] {
        assert!(log.lines().any(|l| l.trim_end().ends_with(line)), "missing {line:?} in\n{log}");
    }
    let last = log.lines().rfind(|l| !l.trim().is_empty() && !l.starts_with("```")).unwrap_or_default();
    assert!(last.contains("[RAY] ↩️ v1.2 rolled back in production: Production Launch Gate failed"), "{log}");
    assert!(out.contains(last.split("[RAY] ").nth(1).unwrap_or("?")), "the final post is the one sent:\n{last}\n{out}");
}

/// Every `.md` and `.json` file a clean release writes shows the values raybot used: no
/// `{env}`-style placeholder is left, the data refresh names its release, and the security scan
/// is not said to run in production.
#[test]
fn a_clean_release_writes_no_unexpanded_placeholder() {
    let (out, code, art) = demo(&[]);
    assert_eq!(code, 0, "{out}");
    let dir = release_dir(art.path());
    let mut stack = vec![dir.clone()];
    let mut checked = 0;
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if !path.extension().is_some_and(|e| e == "md" || e == "json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            checked += 1;
            for (i, _) in text.match_indices('{') {
                let rest = &text[i + 1..];
                let word = rest.split('}').next().unwrap_or_default();
                let placeholder =
                    rest.contains('}') && !word.is_empty() && word.chars().all(|c| c.is_ascii_lowercase() || c == '_');
                assert!(!placeholder, "{} shows {{{word}}}:\n{text}", path.display());
            }
        }
    }
    assert!(checked > 15, "only {checked} files checked");
    let release = dir.file_name().unwrap().to_string_lossy().to_string();
    let refresh = std::fs::read_to_string(dir.join("pre-deployment/staging-data-refresh.md")).unwrap();
    assert!(refresh.contains(&format!("- Release: `{release}` (version `v1.2`)")), "{refresh}");
    let report = std::fs::read_to_string(dir.join("deployment/DEPLOYMENT-REPORT.md")).unwrap();
    let scan = report.lines().find(|l| l.starts_with("| security scan |")).expect("the scan in the jobs table");
    assert!(!scan.contains("| production |"), "{scan}");
    // The release scope is the Release Planning manifest's, as read, not an assertion.
    let manifest = std::fs::read_to_string(dir.join("deployment/release-manifest.md")).unwrap();
    assert!(manifest.contains("## Release plan (release-manifest.json, SHA-256 "), "{manifest}");
    assert!(
        manifest.contains("- services: sample-app\n- scope: checkout_v2 feature flag, latency fixes"),
        "{manifest}"
    );
}
