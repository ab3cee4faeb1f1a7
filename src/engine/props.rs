//! Property tests: random people doing random things never get a release past its rules.

use proptest::prelude::{Just, ProptestConfig, any, prop_assert, prop_assert_eq, prop_oneof, proptest};
use proptest::strategy::Strategy as PropStrategy;

use super::testkit::Sim;
use super::*;

#[derive(Debug, Clone)]
enum Act {
    Ack,
    React { added: bool },
    Approve,
    Click(Button),
    Reject,
    Waive(usize),
    Retry,
    Rollback,
    Abort,
    Status,
    Tick,
}

const USERS: &[&str] = &["alice", "bob", "carol", "dave", "erin", "mallory"];
const GATES: &[&str] =
    &["intake", "rehearsal", "rollback-security", "readiness", "freeze", "launch", "stabilization", "nope"];

fn act() -> impl PropStrategy<Value = Act> {
    prop_oneof![
        4 => Just(Act::Ack),
        4 => any::<bool>().prop_map(|added| Act::React { added }),
        4 => Just(Act::Approve),
        3 => prop_oneof![Just(Button::Approve), Just(Button::Reject)].prop_map(Act::Click),
        1 => Just(Act::Reject),
        1 => (0..GATES.len()).prop_map(Act::Waive),
        1 => Just(Act::Retry),
        1 => Just(Act::Rollback),
        1 => Just(Act::Abort),
        1 => Just(Act::Status),
        1 => Just(Act::Tick),
    ]
}

fn apply(sim: &mut Sim, user: &str, a: &Act) {
    let by = Sim::user(user);
    let ev = match a {
        Act::Ack => Event::Command { by, command: ReleaseCommand::Ack },
        Act::React { added } => Event::Reaction {
            by,
            message: sim.message(&PostKey::Freeze),
            emoji: "white_check_mark".into(),
            added: *added,
        },
        Act::Approve => Event::Command { by, command: ReleaseCommand::Approve { comment: None } },
        Act::Click(b) => {
            let key = sim.release().posts.keys().rfind(|k| k.round().is_some()).cloned();
            Event::Click { by, message: key.map(|k| sim.message(&k)).unwrap_or_default(), button: *b }
        }
        Act::Reject => Event::Command { by, command: ReleaseCommand::Reject { reason: "no".into() } },
        Act::Waive(g) => Event::Command {
            by,
            command: ReleaseCommand::Waive {
                gate: GATES[*g].into(),
                justification: "risk accepted by the team".into(),
            },
        },
        Act::Retry => Event::Command { by, command: ReleaseCommand::Retry },
        Act::Rollback => Event::Command { by, command: ReleaseCommand::Rollback { reason: None } },
        Act::Abort => Event::Command { by, command: ReleaseCommand::Abort { reason: None } },
        Act::Status => Event::Command { by, command: ReleaseCommand::Status },
        Act::Tick => match sim.timers.last().cloned() {
            Some((timer, _)) => Event::Tick { timer },
            None => return,
        },
    };
    sim.send(ev);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    #[test]
    fn random_people_never_break_the_rules(
        actions in proptest::collection::vec((0..USERS.len(), act()), 1..80),
        fail_security in any::<bool>(),
    ) {
        let mut sim = Sim::new();
        if fail_security {
            sim.fail_jobs.push("security scan".into());
        }
        sim.start("alice", Strategy::Bluegreen);
        let mut ended_at: Option<usize> = None;
        for (i, (u, a)) in actions.iter().enumerate() {
            let jobs_before = sim.jobs_run.len();
            let posts_before = sim.channel.len();
            apply(&mut sim, USERS[*u], a);
            let r = sim.release();
            // Never count one person twice.
            for round in &r.rounds {
                let mut users: Vec<&String> = round.approvals.iter().map(|a| &a.user).collect();
                users.sort();
                users.dedup();
                prop_assert_eq!(users.len(), round.approvals.len());
            }
            // Acks only from the freeze list.
            prop_assert!(r.freeze.acks.keys().all(|u| r.freeze.required.contains(u)));
            // A terminal state is never left, and nothing runs after it.
            if let Some(at) = ended_at {
                prop_assert!(r.is_finished(), "left the terminal state after action {at}");
                prop_assert_eq!(sim.jobs_run.len(), jobs_before);
                prop_assert!(sim.channel.len() == posts_before);
            }
            if r.is_finished() && ended_at.is_none() {
                ended_at = Some(i);
            }
        }
        // Production deploys only after 100% freeze acks and the required approvals.
        let r = sim.release();
        if sim.jobs_run.iter().any(|j| j.starts_with("deploy production")) {
            prop_assert!(r.freeze.confirmed_at.is_some());
            prop_assert_eq!(r.freeze.acks.len(), r.freeze.required.len());
            let prod = r.rounds.iter().find(|x| x.protocol == "11").expect("production round");
            prop_assert_eq!(prod.decision.as_deref(), Some("approved"));
            for role in &prod.roles {
                prop_assert!(prod.approvals.iter().any(|a| a.roles.contains(role)), "role {} uncovered", role);
            }
            let approvers: std::collections::BTreeSet<&String> = prod.approvals.iter().map(|a| &a.user).collect();
            prop_assert!(!(approvers.len() == 1 && approvers.contains(&"alice".to_string())));
        }
        // Every refusal is a single [RAY ERROR] line addressed to one person.
        for (_, text) in &sim.replies {
            prop_assert!(text.starts_with("[RAY ERROR]") || text.starts_with("[RAY"), "{}", text);
        }
        // The log replays to the same state.
        let rebuilt = Release::replay(sim.log.iter()).expect("replays");
        prop_assert_eq!(&rebuilt, sim.release());
    }
}
