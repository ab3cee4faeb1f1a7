//! `raybot chat`: a war room on stdin/stdout, cut off between people and resumed from the store.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{RAYBOT, Workspace, release_dir};

#[test]
fn a_release_survives_four_sessions_and_refuses_bad_input() {
    let ws = Workspace::new();

    // Session 1: bad input first, then the release starts and runs until people are needed.
    let (out, code) = ws.chat(
        "alice",
        "/ray dploy v1.2\n/ray deploy v1.2;rm -rf /\n/ray deploy\n/ray approve\n/ray deploy v1.2\n/ray deploy v1.3\n/as mallory\n/ray approve\n",
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("[RAY ERROR] unknown command `dploy`"), "{out}");
    assert!(out.contains("[RAY ERROR] `v1.2;rm` is not a valid version"), "{out}");
    assert!(out.contains("[RAY ERROR] missing version. Usage: `/ray deploy <version>"), "{out}");
    assert!(out.contains("[RAY ERROR] no release is waiting for approval"), "{out}");
    assert!(out.contains("[RAY ERROR] production is locked by release v1.2-production-"), "{out}");
    assert!(out.contains("[RAY ERROR] mallory is not in config/release-approvers.yaml"), "{out}");
    assert!(out.contains("[APPROVAL REQUEST] Readiness review"), "{out}");
    assert!(!out.contains("Go decision recorded"), "{out}");

    // Session 2: the readiness review is approved; raybot moves on to the change freeze.
    let (out, code) = ws.chat("alice", "/ray approve evidence reviewed\n/as bob\n/click approve\n");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("[RAY] Resumed after a restart."), "{out}");
    assert!(out.contains("Go decision recorded"), "{out}");
    assert!(out.contains("Change freeze in effect. All teams acknowledge?"), "{out}");

    // Session 3: everyone acknowledges, with a reaction or /ray ack; a stranger's reaction is refused.
    let (out, code) = ws.chat(
        "alice",
        "/ray ack\n/as bob\n/react ✅\n/as mallory\n/react ✅\n/as carol\n/ray ack\n/as dave\n/react white_check_mark\n/as erin\n/ray ack\n",
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("mallory is not on the change-freeze list"), "{out}");
    assert!(out.contains("Change freeze confirmed by all 5 stakeholders"), "{out}");
    assert!(
        out.contains("[APPROVAL REQUEST] All readiness gates passed. Approve production deployment? (yes/no)"),
        "{out}"
    );

    // Session 4: the go/no-go, the production deploy, the health window and the report.
    let (out, code) =
        ws.chat("erin", "/ray approve\n/as bob\n/click approve\n/as carol\n/ray approve monitoring ready\n");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("erin (stakeholder) may not approve"), "{out}");
    assert!(out.contains("Production deployment 100% complete"), "{out}");
    assert!(out.contains("v1.2 released to production"), "{out}");
    assert_eq!(ws.serving(ws.production_port), "v1.2");

    let dir = release_dir(&ws.artifacts());
    let freeze = std::fs::read_to_string(dir.join("deployment/change-freeze-confirmation.md")).unwrap();
    assert!(freeze.contains("| reaction |") && freeze.contains("| command |"), "{freeze}");
    assert!(dir.join("deployment/DEPLOYMENT-EVIDENCE.zip").is_file());

    // The store knows the release ended.
    let (status, code) = crate::support::run(
        std::process::Command::new(crate::support::RAYBOT)
            .args(["status", "--json"])
            .current_dir(ws.path())
            .env_remove("RAYBOT_STORE"),
        "",
        std::time::Duration::from_secs(20),
    );
    assert_eq!(code, 0, "{status}");
    let list: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(list[0]["status"], "released");
    assert_eq!(list[0]["finished"], true);
}

/// The production go/no-go is rejected by a named person with a reason: the approval evidence, the
/// final report and its communication log each say who (as what), when and why, and production
/// is never touched.
#[test]
fn a_rejected_go_no_go_is_recorded_with_who_when_and_why() {
    let ws = Workspace::new();
    let (out, code) = ws.chat("alice", "/ray deploy v1.2\n");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("[APPROVAL REQUEST] Readiness review"), "{out}");
    let (out, code) = ws.chat("alice", "/ray approve\n/as bob\n/click approve\n");
    assert_eq!(code, 0, "{out}");
    let (out, code) =
        ws.chat("alice", "/ray ack\n/as bob\n/ray ack\n/as carol\n/ray ack\n/as dave\n/ray ack\n/as erin\n/ray ack\n");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Approve production deployment? (yes/no)"), "{out}");

    let before = raybot::clock::now().rfc3339();
    let (out, code) = ws.chat("bob", "/ray approve\n/as carol\n/ray reject error budget exhausted this week\n");
    let after = raybot::clock::now().rfc3339();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("stopped: rejected by @carol: error budget exhausted this week"), "{out}");
    assert_eq!(ws.serving(ws.production_port), "v1.1");

    // The go/no-go's evidence: who rejected (named as signatures are), when, how and why.
    let dir = release_dir(&ws.artifacts());
    let text = std::fs::read_to_string(dir.join("deployment/production-approval.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["decision"], "rejected", "{text}");
    assert_eq!(
        doc["rejected_by"],
        serde_json::json!({
            "user": "Carol Example (local carol)", "name": "Carol Example", "roles": ["sre_lead"],
            "platform": "local", "via": "command",
        }),
        "{text}"
    );
    assert_eq!(doc["reason"], "error budget exhausted this week", "{text}");
    let at = doc["rejected_at"].as_str().expect("rejected_at").to_string();
    assert!(before <= at && at <= after, "{before} <= {at} <= {after}");
    assert_eq!(doc["signatures"][0]["user"], "Bob Example (local bob)", "{text}");

    // The final report: the decision, the verdict, and the communication log.
    let report = std::fs::read_to_string(dir.join("deployment/DEPLOYMENT-REPORT.md")).unwrap();
    assert!(report.contains("**Outcome:** rejected"), "{report}");
    assert!(
        report.contains(&format!(
            "- Rejected by Carol Example (local carol; sre_lead) at {at}: error budget exhausted this week\n"
        )),
        "{report}"
    );
    assert!(report.contains("- Verdict: no-go."), "{report}");
    let log = report.split("## Communication log").nth(1).expect("a communication log");
    let said = format!("rejected by @carol (sre_lead) at {at} via command: error budget exhausted this week");
    assert!(
        log.lines().any(|l| l.starts_with(&at) && l.contains("No-go decision recorded") && l.contains(&said)),
        "{log}"
    );
}

/// raybot is killed (SIGKILL) while the staging deploy job runs. The restarted process reports the
/// job's outcome as unknown, names the process that stopped, does not run the job again, and takes
/// instructions.
#[test]
fn a_job_interrupted_by_a_crash_is_reported_not_rerun() {
    let ws = Workspace::new();
    ws.edit_config(|t| {
        t.replacen(
            r#"deploy = { argv = ["scripts/deploy_backend.sh", "--env", "{env}", "--release", "{version}", "--strategy", "{strategy}", "--percent", "{percent}"], timeout_seconds = 120 }"#,
            r#"deploy = { argv = ["sleep", "6"], timeout_seconds = 120 }"#,
            1,
        )
    });
    let mut child = Command::new(RAYBOT)
        .args(["chat", "--user", "alice"])
        .current_dir(ws.path())
        .env_remove("RAYBOT_STORE")
        .env("RAYBOT_REPLICA", "raybot-first")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("raybot starts");
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "/ray deploy v1.2").unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let start = Instant::now();
    let mut seen = String::new();
    while !seen.contains("Rehearsing deployment on staging environment") {
        assert!(start.elapsed() < Duration::from_secs(30), "the staging deploy never started:\n{seen}");
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push_str(&line);
            seen.push('\n');
        }
    }
    // Wait until the job has really started (its command line is in the log), then SIGKILL.
    let started = || {
        std::fs::read_dir(ws.artifacts()).into_iter().flatten().filter_map(Result::ok).any(|d| {
            std::fs::read_to_string(d.path().join("pre-deployment/staging-deployment-run.log"))
                .is_ok_and(|l| l.contains("$ sleep 6"))
        })
    };
    while !started() {
        assert!(start.elapsed() < Duration::from_secs(30), "the deploy job never started:\n{seen}");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL: no clean-up of any kind
    child.wait().unwrap();
    drop(stdin);

    let (out, code) = ws.chat("alice", "/ray status\n/ray abort crash drill\n");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("[RAY ERROR] - \"Failed at Protocol 10 STEP 2.1 Execute Staging Deployment Rehearsal (deploy staging 0%). Reason: job outcome unknown after raybot-first stopped. Awaiting instructions.\""),
        "{out}"
    );
    assert!(out.contains("Halted at"), "{out}");
    assert!(out.contains("aborted by @alice: crash drill"), "{out}");
    let log = std::fs::read_to_string(release_dir(&ws.artifacts()).join("pre-deployment/staging-deployment-run.log"))
        .unwrap();
    assert_eq!(log.matches("$ sleep 6").count(), 1, "the job ran again:\n{log}");
}
