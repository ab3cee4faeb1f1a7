//! People at the change freeze and the go/no-go rounds: who may approve, acknowledge, reject or
//! click, each counted once, reminded, and refused with nothing changed.

use super::*;

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
    let msg = sim.message(&PostKey::Freeze);
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
    let msg = sim.message(&PostKey::Freeze);
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
fn reject_button_stops_the_release_and_strangers_cannot_click() {
    let mut sim = Sim::new();
    to_production_approval(&mut sim);
    let message = sim.message(&PostKey::Approval(1));
    sim.send(Event::Click { by: Sim::user("erin"), message: message.clone(), button: Button::Reject });
    assert!(sim.replies.last().unwrap().1.starts_with("[RAY ERROR] erin may not reject"), "{:?}", sim.replies.last());
    assert!(sim.outcome.is_none());
    // A click on a closed request (the readiness one) is refused too.
    let old = sim.message(&PostKey::Approval(0));
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

/// A rejected go/no-go leaves as full a record as an approved one: the approval evidence, the
/// final report and the communication log each say who rejected, as what, when, how and why,
/// and the release rebuilt from its log says the same.
#[test]
fn a_rejected_go_no_go_names_who_when_and_why_in_the_evidence_the_report_and_the_log() {
    let mut sim = Sim::new();
    to_production_approval(&mut sim);
    approve(&mut sim, "bob");
    sim.command("carol", ReleaseCommand::Reject { reason: "error budget exhausted".into() });
    let at = sim
        .log
        .iter()
        .rev()
        .find_map(|(t, e)| matches!(e, Event::Command { command: ReleaseCommand::Reject { .. }, .. }).then_some(*t))
        .expect("the rejection is in the log")
        .rfc3339();

    // 1. The go/no-go's evidence: the decision, who rejected, when, why, and what was known.
    let doc: serde_json::Value =
        serde_json::from_str(&sim.files["deployment/production-approval.json"]).expect("approval evidence is JSON");
    assert_eq!(doc["decision"], "rejected");
    assert_eq!(
        doc["rejected_by"],
        serde_json::json!({
            "user": "Carol Example (local carol)", "name": "Carol Example", "roles": ["sre_lead"],
            "platform": "local", "via": "command",
        })
    );
    assert_eq!(doc["rejected_at"], at.as_str());
    assert_eq!(doc["decided_at"], at.as_str());
    assert_eq!(doc["reason"], "error budget exhausted");
    let signed = doc["signatures"].as_array().expect("signatures");
    assert_eq!(signed.len(), 1, "{doc:#}");
    assert_eq!(signed[0]["user"], "Bob Example (local bob)");
    assert!(!doc["gates_so_far"].as_array().expect("gates").is_empty(), "{doc:#}");

    // 2. The final report: the decision in its own section, and the verdict.
    let report = &sim.files["deployment/DEPLOYMENT-REPORT.md"];
    assert!(report.contains("**Outcome:** rejected"), "{report}");
    assert!(report.contains("## Go/no-go decision"), "{report}");
    let decision = report.split("## Go/no-go decision").nth(1).expect("a go/no-go decision section");
    let decision = decision.split("\n## ").next().unwrap_or_default();
    let line = format!("- Rejected by Carol Example (local carol; sre_lead) at {at}: error budget exhausted\n");
    assert!(decision.contains(&line), "{report}");
    assert!(decision.contains("- Rejected via: command\n"), "{report}");
    assert!(decision.contains("- Signed before the rejection: Bob Example (local bob; product_owner) at "), "{report}");
    assert!(decision.contains("- Verdict: no-go."), "{report}");

    // 3. The communication log, in the state and in the report.
    let said = format!(
        "No-go decision recorded for v1.2-test: rejected by @carol (sre_lead) at {at} via command: error budget exhausted"
    );
    let r = sim.release();
    assert!(r.communication.iter().any(|(t, l)| t.rfc3339() == at && l.contains(&said)), "{:#?}", r.communication);
    let log = report.split("## Communication log").nth(1).expect("a communication log");
    assert!(log.contains(&format!("{at} [RAY] {said}")), "{log}");

    // The round keeps the rejection, and replaying the log rebuilds it.
    let round = &r.rounds[1];
    let rejection = round.rejection.as_ref().expect("the round keeps its rejection");
    assert_eq!(
        (rejection.user.as_str(), rejection.name.as_str(), rejection.roles.clone()),
        ("carol", "Carol Example", vec!["sre_lead".to_string()])
    );
    assert_eq!(
        (rejection.at.rfc3339(), rejection.reason.as_str(), rejection.via.as_str()),
        (at.clone(), "error budget exhausted", "command")
    );
    let rebuilt = Release::replay(sim.log.iter()).expect("replays");
    assert_eq!(rebuilt.rounds, r.rounds);
    assert_eq!(rebuilt.communication, r.communication);
}
