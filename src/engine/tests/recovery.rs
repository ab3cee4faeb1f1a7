//! Restarts and lost work: a job whose outcome is unknown after a restart, a job on the shared
//! queue taken over and reported lost, and final evidence that could not be written.

use super::*;

#[test]
fn unknown_job_after_restart_is_not_rerun() {
    let mut sim = Sim::new();
    through_production_go(&mut sim);
    // Rebuild from the log cut right after the first production deploy job was asked for.
    let mut r = while_running(&sim, "deploy production");
    assert!(matches!(r.activity, Activity::Job { .. }));
    let fx = r.handle(
        &Event::Resumed { replica: "raybot-2".into(), previous: Some("raybot-1".into()), jobs_queued: false },
        Timestamp(sim.now.0),
    );
    assert!(!fx.iter().any(|e| matches!(e, Effect::RunJob(_))), "{fx:?}");
    let text = posts(&fx);
    assert!(
        text[0].starts_with("[RAY ERROR] - \"Failed at Protocol 11 STEP 3.2 Execute Production Deployment"),
        "{text:?}"
    );
    assert!(text[0].contains("job outcome unknown after raybot-1 stopped. Awaiting instructions."), "{text:?}");
    assert!(matches!(r.activity, Activity::Halted(_)));
}

#[test]
fn a_queued_job_is_queued_again_on_takeover_and_reported_once_lost() {
    let mut sim = Sim::new();
    through_production_go(&mut sim);
    let mut r = while_running(&sim, "deploy production");
    let Activity::Job { job, .. } = r.activity.clone() else { panic!("{:?}", r.activity) };
    // A replica taking over a release on the shared queue asks for the same job (the queue drops
    // the duplicate) and reports nothing yet: the job may still be running elsewhere.
    let fx = r.handle(
        &Event::Resumed { replica: "raybot-2".into(), previous: Some("raybot-1".into()), jobs_queued: true },
        Timestamp(sim.now.0),
    );
    let asked: Vec<_> =
        fx.iter().filter_map(|e| if let Effect::RunJob(s) = e { Some(s.id.clone()) } else { None }).collect();
    assert_eq!(asked, vec![job.clone()], "{fx:?}");
    assert!(posts(&fx).is_empty(), "{fx:?}");
    // A loss report for another job changes nothing.
    assert!(r.handle(&Event::JobLost { job: "other#job1".into(), replica: "raybot-9".into() }, sim.now).is_empty());
    // The queue found the job's replica gone: the seed's error, no re-run.
    let fx = r.handle(&Event::JobLost { job: job.clone(), replica: "raybot-1".into() }, Timestamp(sim.now.0 + 1));
    assert!(!fx.iter().any(|e| matches!(e, Effect::RunJob(_))), "{fx:?}");
    let text = posts(&fx);
    assert!(text[0].starts_with("[RAY ERROR] - \"Failed at Protocol 11 STEP 3.2"), "{text:?}");
    assert!(
        text[0].contains("Reason: job outcome unknown after raybot-1 stopped. Awaiting instructions.\""),
        "{text:?}"
    );
    assert!(matches!(r.activity, Activity::Halted(_)));
    // Reported twice (two replicas claimed it in turn): said once.
    assert!(posts(&r.handle(&Event::JobLost { job, replica: "raybot-1".into() }, Timestamp(sim.now.0 + 2))).is_empty());
}

#[test]
fn a_final_bundle_that_cannot_be_written_halts_and_a_retry_writes_it_again_and_ends() {
    let mut sim = Sim::new();
    // Step 4.2 writes the bundle, then the release's end writes it again with the outcome: that
    // second writing fails.
    sim.fail_bundles.push(("DEPLOYMENT-EVIDENCE.zip".into(), 2));
    through_production_go(&mut sim);
    let text = sim.channel.join("\n");
    let Activity::Halted(h) = sim.release().activity.clone() else { panic!("not halted:\n{text}") };
    assert_eq!(h.resume, release::Resume::Finish { outcome: Terminal::Released }, "{text}");
    assert!(h.reason.contains("DEPLOYMENT-EVIDENCE.zip: No space left on device"), "{}", h.reason);
    assert!(sim.outcome.is_none(), "not released before its evidence is written");
    assert!(posted(&sim, "Type `/ray retry` to write the final evidence again."), "{text}");

    // The disk has room again: the retry writes the report and bundle and ends the release.
    sim.fail_bundles.clear();
    sim.command("alice", ReleaseCommand::Retry);
    assert_eq!(sim.outcome, Some(Terminal::Released), "{}", sim.channel.join("\n"));
    assert!(sim.files.keys().any(|f| f.ends_with("DEPLOYMENT-EVIDENCE.zip")));
    let replayed = Release::replay(sim.log.iter()).expect("the log replays");
    assert_eq!(replayed.activity, sim.release().activity);
}
