//! Engine tests: every gate, halt, waiver, retry, abort and rollback path, driven through [`Sim`],
//! one file per subject. The helpers below run the sample release to where a test starts.

mod gates;
mod people;
mod recovery;
mod rollback;
mod slack;
mod walk;

use super::testkit::Sim;
use super::*;

fn approve(sim: &mut Sim, who: &str) {
    sim.command(who, ReleaseCommand::Approve { comment: None });
}

/// Runs the sample release up to the production approval.
fn to_production_approval(sim: &mut Sim) {
    sim.start("alice", Strategy::Bluegreen);
    assert!(matches!(sim.release().activity, Activity::Approval { .. }), "{:#?}", sim.channel);
    approve(sim, "alice");
    approve(sim, "bob");
    assert!(matches!(sim.release().activity, Activity::Acks { .. }), "{}", sim.channel.join("\n"));
    sim.ack_all();
    assert!(matches!(sim.release().activity, Activity::Approval { round: 1, .. }), "{}", sim.channel.join("\n"));
}

/// Runs the sample release until bob and carol said go for production (the deploy starts).
fn through_production_go(sim: &mut Sim) {
    to_production_approval(sim);
    approve(sim, "bob");
    approve(sim, "carol");
}

/// The texts of the posts among `fx`.
fn posts(fx: &[Effect]) -> Vec<String> {
    fx.iter().filter_map(|e| if let Effect::Post { text, .. } = e { Some(text.clone()) } else { None }).collect()
}

/// The release rebuilt from the log as it was while the first job or probe whose purpose starts
/// with `purpose` was running (the log cut just before its result).
fn while_running(sim: &Sim, purpose: &str) -> Release {
    let r = sim.release();
    let idx = sim
        .log
        .iter()
        .position(|(_, e)| match e {
            Event::JobFinished { job, .. } => r.jobs.iter().any(|j| &j.id == job && j.purpose.starts_with(purpose)),
            Event::ProbeFinished { probe, .. } => {
                r.probes.iter().any(|p| &p.id == probe && p.purpose.starts_with(purpose))
            }
            _ => false,
        })
        .unwrap_or_else(|| panic!("nothing called `{purpose}` ran"));
    Release::replay(sim.log[..idx].iter()).expect("replays")
}

fn posted(sim: &Sim, needle: &str) -> bool {
    sim.channel.iter().any(|l| l.contains(needle))
}
