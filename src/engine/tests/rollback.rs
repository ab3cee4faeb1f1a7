//! Rollbacks and aborts: automatic after a failed gate, deploy or health window, asked for while a
//! job or probe runs, and abort refused once the target changed.

use super::*;

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
    let ok = testkit::exited(0, 5);
    // The rollback starts as soon as the running job ends: no further step, not even a probe.
    let fx = r.handle(&Event::JobFinished { job, outcome: ok }, sim.now);
    assert!(fx.iter().any(|e| matches!(e, Effect::RunJob(j) if j.purpose == "rollback production")), "{fx:?}");
    assert!(!fx.iter().any(|e| matches!(e, Effect::Probe(_))), "{fx:?}");
    assert!(r.rollback_requested.is_none());
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
    let fx = r.handle(&Event::ProbeFinished { probe, report }, sim.now);
    assert!(fx.iter().any(|e| matches!(e, Effect::RunJob(j) if j.purpose == "rollback production")), "{fx:?}");
}

/// The production deploy job fails at its first step: the release rolls production back.
fn rolled_back_after_a_failed_deploy() -> Sim {
    let mut sim = Sim::new();
    to_production_approval(&mut sim);
    sim.fail_jobs.push("deploy production 0%".into());
    approve(&mut sim, "bob");
    approve(&mut sim, "carol");
    assert!(matches!(sim.outcome, Some(Terminal::RolledBack { .. })), "{}", sim.channel.join("\n"));
    sim
}

fn json(sim: &Sim, path: &str) -> serde_json::Value {
    let text = sim.files.get(path).unwrap_or_else(|| panic!("no {path}; have {:?}", sim.files.keys()));
    serde_json::from_str(text).expect("json evidence")
}

/// `rollback-plan.md` lists what the rollback did: the rollback job of production with its
/// command, result, reason, trigger and the probe that confirmed the previous version, and no job
/// that is not a rollback step (the security scan, the dry run, the failed deploy).
#[test]
fn the_rollback_plan_lists_only_the_rollback_jobs() {
    let sim = rolled_back_after_a_failed_deploy();
    let plan = &sim.files["deployment/rollback-plan.md"];
    let steps = plan.split("## Steps executed").nth(1).expect("a steps section");
    let steps = steps.split("\n## ").next().unwrap_or_default();
    assert!(
        steps.contains(
            "1. `scripts/rollback_backend.sh --env production --release v1.2` — rollback production — exit 0"
        ),
        "{plan}"
    );
    assert!(steps.contains("Reason: Production Launch Gate failed: blocking_incidents = 1"), "{plan}");
    assert!(steps.contains("(trigger: automatic)"), "{plan}");
    assert!(steps.contains("Confirming probe: after rollback production at "), "{plan}");
    assert!(steps.contains("serving v1.1×20"), "{plan}");
    for other in ["security scan", "dry_run", "deploy production", "2. "] {
        assert!(!steps.contains(other), "{other:?} is not a rollback step:\n{plan}");
    }
}

/// A rolled-back release writes its retrospective inputs as the success path does, with the
/// outcome, the failed gate and its figures, the rollback and an improvement derived from what
/// failed, owned by the on-call SRE (the gate's failure handling names no role).
#[test]
fn a_rolled_back_release_writes_its_retrospective_inputs() {
    let sim = rolled_back_after_a_failed_deploy();
    let retro = json(&sim, "deployment/retrospective-inputs.json");
    assert_eq!(retro["outcome"], "rolled back", "{retro:#}");
    assert!(retro["outcome_reason"].as_str().unwrap().starts_with("Production Launch Gate failed"), "{retro:#}");
    let gate = &retro["failed_gates"][0];
    assert_eq!(gate["name"], "Production Launch Gate", "{retro:#}");
    assert_eq!(gate["figures"][0]["clause"], "blocking_incidents == 0", "{retro:#}");
    assert_eq!(gate["figures"][0]["actual"], 1.0, "{retro:#}");
    assert_eq!(gate["failed_jobs"][0]["job"], "deploy production 0%", "{retro:#}");
    let first = &retro["improvements"][0];
    assert!(
        first["improvement"].as_str().unwrap().starts_with(
            "Production Launch Gate failed: deploy production 0% failed (exit 1 in 0.1s); blocking_incidents = 1"
        ),
        "{retro:#}"
    );
    assert_eq!(first["owner"], "Carol Example (local carol)", "{retro:#}");
    assert_eq!(first["owner_role"], "sre_lead", "{retro:#}");
    assert_eq!(retro["rollback"]["trigger"], "automatic", "{retro:#}");
    assert_eq!(retro["rollback_steps"].as_array().map(Vec::len), Some(1), "{retro:#}");
    assert_eq!(retro["rollback_steps"][0]["job"], "rollback production", "{retro:#}");
    assert!(
        retro["decisions"].as_array().unwrap().iter().any(|d| d["who"] == "Carol Example (local carol)"),
        "{retro:#}"
    );
    // Part of the record: listed in the report and bundled.
    assert!(sim.files["deployment/DEPLOYMENT-REPORT.md"].contains("- deployment/retrospective-inputs.json\n"));
}

/// A rejected go/no-go: the retrospective inputs name who rejected, when and why, and the item
/// that follows goes to whoever started the release.
#[test]
fn a_rejected_release_writes_its_retrospective_inputs() {
    let mut sim = Sim::new();
    to_production_approval(&mut sim);
    sim.command("carol", ReleaseCommand::Reject { reason: "error budget exhausted".into() });
    let retro = json(&sim, "deployment/retrospective-inputs.json");
    assert_eq!(retro["outcome"], "rejected", "{retro:#}");
    assert_eq!(retro["outcome_reason"], "error budget exhausted", "{retro:#}");
    assert_eq!(retro["rejections"][0]["by"], "Carol Example (local carol; sre_lead)", "{retro:#}");
    assert_eq!(retro["rejections"][0]["reason"], "error budget exhausted", "{retro:#}");
    let item = retro["improvements"].as_array().unwrap().iter().find(|i| i["owner_from"] == "started the release");
    assert!(item.is_some_and(|i| i["owner"] == "Alice Example (local alice)"), "{retro:#}");
    assert!(retro["rollback"].is_null(), "{retro:#}");
}

/// A release halted at a failed gate and then aborted: the retrospective inputs (in the folder of
/// the protocol it reached) keep the halt and its reason, the failed gate and who aborted.
#[test]
fn a_halted_and_aborted_release_writes_its_retrospective_inputs() {
    let mut sim = Sim::new();
    sim.fail_jobs.push("security scan".into());
    sim.start("alice", Strategy::Bluegreen);
    assert!(matches!(sim.release().activity, Activity::Halted(_)), "{}", sim.channel.join("\n"));
    sim.command("alice", ReleaseCommand::Abort { reason: Some("scanner broken, retry tomorrow".into()) });
    assert!(matches!(sim.outcome, Some(Terminal::Aborted { .. })));
    let retro = json(&sim, "pre-deployment/retrospective-inputs.json");
    assert_eq!(retro["outcome"], "aborted", "{retro:#}");
    assert!(retro["stopped_at"].as_str().unwrap().contains("halted"), "{retro:#}");
    assert!(retro["halts"][0]["reason"].as_str().unwrap().contains("blocking_findings = 1"), "{retro:#}");
    assert_eq!(retro["failed_gates"][0]["name"], "Rollback & Security Gate", "{retro:#}");
    assert!(
        retro["improvements"][0]["improvement"]
            .as_str()
            .unwrap()
            .starts_with("Rollback & Security Gate failed: security scan failed (exit 1"),
        "{retro:#}"
    );
    let aborted = retro["improvements"].as_array().unwrap().iter().find(|i| i["owner_from"] == "aborted the release");
    assert!(
        aborted
            .is_some_and(|i| i["improvement"]
                == "Release aborted by Alice Example (local alice): scanner broken, retry tomorrow"),
        "{retro:#}"
    );
}

/// The report's communication log holds every post in full, multi-line ones too, up to the
/// final post, which is composed before the report is written and sent once it is bundled.
#[test]
fn the_report_keeps_every_post_in_full_up_to_the_final_one() {
    let mut sim = Sim::new();
    to_production_approval(&mut sim);
    sim.unhealthy.push("v1.2".into());
    approve(&mut sim, "bob");
    approve(&mut sim, "carol");
    let report = &sim.files["deployment/DEPLOYMENT-REPORT.md"];
    let log = report.split("## Communication log").nth(1).expect("a communication log");
    let failed = sim.channel.iter().find(|p| p.starts_with("[RAY GATE FAILED: Production Launch Gate]")).unwrap();
    assert!(failed.lines().count() > 3, "{failed}");
    for line in failed.lines() {
        assert!(log.lines().any(|l| l.trim_end().ends_with(line)), "missing {line:?} in\n{log}");
    }
    let last = sim.channel.last().unwrap();
    assert!(last.contains("rolled back in production"), "{last}");
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty() && !l.starts_with("```")).collect();
    assert!(lines.last().is_some_and(|l| l.contains("final post") && l.ends_with(last.as_str())), "{log}");
}
