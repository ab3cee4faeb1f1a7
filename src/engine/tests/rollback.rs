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
    let ok = JobOutcome {
        exit_code: Some(0),
        timed_out: false,
        duration_ms: 5,
        spawn_error: None,
        log_tail: vec![],
        report: None,
    };
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
