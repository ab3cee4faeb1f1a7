//! `raybot demo` as a new user runs it: real scripts, real sample service, real HTTP probes.

use sha2::{Digest, Sha256};

use crate::support::{demo, release_dir};

#[test]
fn clean_demo_releases_v1_2_with_the_full_evidence_bundle() {
    let (out, code, art) = demo(&[]);
    assert_eq!(code, 0, "{out}");
    for line in [
        "[MASTER RAY™ | PHASE 1 START] - Validating upstream approvals and artifact completeness...",
        "[MASTER RAY™ | PHASE 4 COMPLETE] - Pre-deployment package ready. Evidence: PRE-DEPLOYMENT-PACKAGE.zip.",
        "[PHASE 2] Change freeze in effect. All teams acknowledge?",
        "[RAY REMINDER] Change freeze for v1.2 still needs acknowledgement from @erin",
        "raybot → erin (only you): [RAY ERROR] erin (stakeholder) may not approve this step",
        "[APPROVAL REQUEST] All readiness gates passed. Approve production deployment? (yes/no)",
        "[RAY ANNOUNCEMENT] Production deployment of v1.2 started",
        "[RAY ANNOUNCEMENT] Production deployment 50% complete: v1.2 is started on the idle side (its deploy job \
         succeeded; its health is probed once it takes traffic) with no traffic yet (0% of probe answers); the \
         switch comes next. No errors observed.",
        "[RAY ANNOUNCEMENT] Production deployment 100% complete.",
        "[RAY GATE PASSED: Production Launch Gate]",
        "[MASTER RAY™ | PHASE 4 COMPLETE] - Deployment report compiled. Evidence: DEPLOYMENT-REPORT.md.",
        "v1.2 released to production",
    ] {
        assert!(out.contains(line), "missing {line:?} in transcript:\n{out}");
    }
    let dir = release_dir(art.path());
    for f in [
        "pre-deployment/intake-validation-report.json",
        "pre-deployment/staging-parity-report.json",
        "pre-deployment/staging-deployment-run.log",
        "pre-deployment/staging-test-results.json",
        "pre-deployment/rollback-verification-report.json",
        "pre-deployment/security-compliance-report.json",
        "pre-deployment/pre-deployment-manifest.json",
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
        assert!(dir.join(f).is_file(), "missing evidence {f}");
    }
    assert!(!dir.join("deployment/rollback-plan.md").exists(), "rollback-plan.md is only for rollbacks");

    // The staging deploy log holds the real commands and their output.
    let log = std::fs::read_to_string(dir.join("pre-deployment/staging-deployment-run.log")).unwrap();
    assert!(log.contains("$ scripts/deploy_backend.sh --env staging --release v1.2"), "{log}");
    assert!(log.contains("exit=0"), "{log}");

    // The staging test results are counted from the suites' JUnit reports, which the evidence
    // names with their digests: 5 smoke checks and 6 regression checks, all passed.
    assert!(out.contains("staging validation: 11/11 test cases passed in 2 suites (coverage 100%)"), "{out}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("pre-deployment/staging-test-results.json")).unwrap())
            .unwrap();
    assert_eq!((results["cases_passed"].as_u64(), results["cases_targeted"].as_u64()), (Some(11), Some(11)));
    assert_eq!(results["coverage"], 1.0);
    assert_eq!(results["coverage_source"]["targeted"], 11, "{results}");
    for (suite, tests) in [("smoke", 5), ("regression", 6)] {
        let s = results["suites"].as_array().unwrap().iter().find(|s| s["suite"] == suite).expect(suite);
        let report = &s["report"];
        assert_eq!((report["format"].as_str(), report["status"].as_str()), (Some("junit"), Some("parsed")), "{s}");
        assert_eq!((report["tests"].as_u64(), report["failures"].as_u64()), (Some(tests), Some(0)), "{s}");
        let path = report["path"].as_str().unwrap();
        assert_eq!(path, format!("pre-deployment/staging-{suite}-junit.xml"));
        let bytes = std::fs::read(dir.join(path)).unwrap();
        assert_eq!(report["sha256"].as_str(), Some(hex::encode(Sha256::digest(&bytes)).as_str()), "{path}");
        assert_eq!(s["exit_code"], 0);
        assert!(s["argv"].as_array().unwrap().iter().any(|a| a.as_str() == Some("--junit")), "{s}");
    }

    // Approvals name who approved when; the freeze record names all five people.
    let approval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("deployment/production-approval.json")).unwrap())
            .unwrap();
    let signers: Vec<&str> =
        approval["signatures"].as_array().unwrap().iter().map(|s| s["user"].as_str().unwrap()).collect();
    assert_eq!(signers, ["Bob Example (local bob)", "Carol Example (local carol)"]);
    assert_eq!(approval["release"]["version"], "v1.2");
    assert_eq!(approval["protocol"]["id"], "11");
    let freeze = std::fs::read_to_string(dir.join("deployment/change-freeze-confirmation.md")).unwrap();
    for who in ["alice", "bob", "carol", "dave", "erin"] {
        assert!(freeze.contains(who), "{who} missing from {freeze}");
    }
    assert!(freeze.contains("Acknowledgements: 5/5 (100%)"), "{freeze}");

    // The manifest's digests match the files, and the package holds them.
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("pre-deployment/pre-deployment-manifest.json")).unwrap(),
    )
    .unwrap();
    let files = manifest["files"].as_array().unwrap();
    assert!(files.len() >= 7, "{manifest}");
    let zip = std::fs::File::open(dir.join("pre-deployment/PRE-DEPLOYMENT-PACKAGE.zip")).unwrap();
    let mut zip = zip::ZipArchive::new(zip).unwrap();
    for f in files {
        let path = f["path"].as_str().unwrap();
        let bytes = std::fs::read(dir.join(path)).unwrap();
        assert_eq!(hex::encode(Sha256::digest(&bytes)), f["sha256"].as_str().unwrap(), "{path}");
        assert!(zip.by_name(path).is_ok(), "{path} not in the package");
    }
    let report = std::fs::read_to_string(dir.join("deployment/DEPLOYMENT-REPORT.md")).unwrap();
    assert!(report.contains("**Outcome:** released"), "{report}");
    assert!(report.contains("Production Launch Gate"), "{report}");
}

#[test]
fn failing_smoke_rolls_back_by_itself_and_the_old_version_serves_again() {
    let (out, code, art) = demo(&["--fail", "smoke", "--strategy", "canary"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("[RAY GATE FAILED: Production Launch Gate]"), "{out}");
    assert!(out.contains("Rolling back production (automatic)"), "{out}");
    assert!(out.contains("probe confirms the previous version serves again"), "{out}");
    assert!(out.contains("[demo] production now serves [\"v1.1\"] (5 of 5 healthy)"), "{out}");
    let dir = release_dir(art.path());
    let plan = std::fs::read_to_string(dir.join("deployment/rollback-plan.md")).expect("rollback-plan.md written");
    assert!(plan.contains("Production Launch Gate failed"), "{plan}");
    let report = std::fs::read_to_string(dir.join("deployment/DEPLOYMENT-REPORT.md")).unwrap();
    assert!(report.contains("**Outcome:** rolled back"), "{report}");
    assert!(dir.join("deployment/DEPLOYMENT-EVIDENCE.zip").is_file());
}

#[test]
fn rejected_go_no_go_never_touches_production() {
    let (out, code, art) = demo(&["--fail", "approval"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Rejected by @carol"), "{out}");
    assert!(!out.contains("Production deployment of v1.2 started"), "{out}");
    let dir = release_dir(art.path());
    assert!(!dir.join("deployment/production-deployment-run.log").exists());
}
