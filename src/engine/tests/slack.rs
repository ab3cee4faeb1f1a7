//! A release on Slack: every refusal, post and evidence file names people as Slack shows them
//! (`<@U…>` in chat, name and Slack id in evidence), never by a bare id.

use super::*;

/// The sample release on Slack: the same people, with their Slack ids.
fn slack_release(sim: &mut Sim) {
    sim.start_with("U0ALICE001", Strategy::Bluegreen, testkit::sample_plan_on("production", Platform::Slack));
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
        let lines = testkit::bare_ids(text, Platform::Slack, &SLACK_IDS);
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
    sim.start_with("U0ALICE001", Strategy::Bluegreen, testkit::sample_plan_on("production", Platform::Slack));
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
    let ok = testkit::exited(0, 5);
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
        let lines = testkit::bare_ids(contents, Platform::Slack, &SLACK_IDS);
        assert!(lines.is_empty(), "{path} shows a bare id: {lines:#?}");
    }
}

#[test]
fn the_bare_id_check_tells_a_mention_and_a_label_from_a_bare_id() {
    let text = "refused U0BOB00002 at noon\n<@U0BOB00002> approved\nBob Example (slack U0BOB00002)\nmessage U0BOB000021\n(U0BOB00002)";
    assert_eq!(
        testkit::bare_ids(text, Platform::Slack, &["U0BOB00002"]),
        ["refused U0BOB00002 at noon", "(U0BOB00002)"]
    );
}

#[test]
fn a_waiver_on_slack_is_recorded_with_the_waivers_name_and_slack_id() {
    let mut sim = Sim::new();
    sim.fail_jobs.push("security scan".into());
    sim.start_with("U0ALICE001", Strategy::Bluegreen, testkit::sample_plan_on("production", Platform::Slack));
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
        let lines = testkit::bare_ids(contents, Platform::Slack, &SLACK_IDS);
        assert!(lines.is_empty(), "{path} shows a bare id: {lines:#?}");
    }
    for post in sim.channel.iter().chain(sim.replies.iter().map(|(_, t)| t)) {
        let lines = testkit::bare_ids(post, Platform::Slack, &SLACK_IDS);
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
