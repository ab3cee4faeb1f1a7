//! Who may give which command, as data, and the one ordered check that refuses.
//!
//! Every [`ReleaseCommand`] has a [`Rule`]: whether the person must be listed in
//! `release-approvers.yaml`, what the release must be waiting for ([`Needs`]) and who may give it
//! ([`Access`]). [`check`] reads the rule against the release's situation in a fixed order and
//! stops at the first failure, as a command framework checks its commands before running them:
//!
//! 1. the release has ended (only `/ray status` is still answered);
//! 2. the person is not listed, for commands that record who they are (`/ray approve`);
//! 3. the release is not waiting for this command;
//! 4. the person may not give it.
//!
//! Checks that depend on the command's own arguments or on what it would do (which gate, whether
//! the target was touched) stay with the command.

use crate::engine::ids::ReleaseId;
use crate::engine::plan::{People, Policy};
use crate::engine::refusal::{NotAllowed, NothingWaiting, Refusal};
use crate::engine::{ReleaseCommand, UserRef};

use super::state::Activity;

/// Who may give a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Everyone in the war room.
    Anyone,
    /// Everyone on the open change freeze's list.
    FreezeList,
    /// Holders of one of the roles the open go/no-go round requires.
    StepRoles,
    /// Holders of one of the policy's operator roles.
    Operator,
    /// Operators, and the person who started the release.
    OperatorOrInitiator,
    /// Holders of one of the policy's waiver roles.
    WaiverRoles,
}

/// What the release must be waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Needs {
    /// Any state of an unfinished release.
    Nothing,
    /// Freeze acknowledgements.
    Freeze,
    /// A go/no-go decision.
    Approval,
    /// Instructions after a halt.
    Halt,
}

/// A command without its arguments: what refusals and the audit trail call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    /// `/ray status`.
    Status,
    /// `/ray ack`, or the acknowledgement reaction.
    Ack,
    /// `/ray approve`, or the Approve button.
    Approve,
    /// `/ray reject`, or the Reject button.
    Reject,
    /// `/ray waive`.
    Waive,
    /// `/ray retry`.
    Retry,
    /// `/ray rollback`.
    Rollback,
    /// `/ray abort`.
    Abort,
}

/// A command's access rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rule {
    /// The person must be listed in `release-approvers.yaml` (checked before anything else but
    /// the end of the release: the command records their name).
    pub(crate) listed: bool,
    /// What the release must be waiting for.
    pub(crate) needs: Needs,
    /// Who may give it.
    pub(crate) access: Access,
}

impl Verb {
    /// The verb of `command`.
    pub(crate) fn of(command: &ReleaseCommand) -> Verb {
        match command {
            ReleaseCommand::Status => Verb::Status,
            ReleaseCommand::Ack => Verb::Ack,
            ReleaseCommand::Approve { .. } => Verb::Approve,
            ReleaseCommand::Reject { .. } => Verb::Reject,
            ReleaseCommand::Waive { .. } => Verb::Waive,
            ReleaseCommand::Retry => Verb::Retry,
            ReleaseCommand::Rollback { .. } => Verb::Rollback,
            ReleaseCommand::Abort { .. } => Verb::Abort,
        }
    }

    /// The name in the audit trail, e.g. `approve`.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Verb::Status => "status",
            Verb::Ack => "ack",
            Verb::Approve => "approve",
            Verb::Reject => "reject",
            Verb::Waive => "waive",
            Verb::Retry => "retry",
            Verb::Rollback => "rollback",
            Verb::Abort => "abort",
        }
    }

    /// The table: one rule per command.
    pub(crate) const fn rule(self) -> Rule {
        let (listed, needs, access) = match self {
            Verb::Status => (false, Needs::Nothing, Access::Anyone),
            Verb::Ack => (false, Needs::Freeze, Access::FreezeList),
            Verb::Approve => (true, Needs::Approval, Access::StepRoles),
            Verb::Reject => (false, Needs::Approval, Access::StepRoles),
            Verb::Waive => (false, Needs::Halt, Access::WaiverRoles),
            Verb::Retry => (false, Needs::Halt, Access::Operator),
            Verb::Rollback => (false, Needs::Nothing, Access::Operator),
            Verb::Abort => (false, Needs::Nothing, Access::OperatorOrInitiator),
        };
        Rule { listed, needs, access }
    }
}

/// What the checks read: the release's situation, as data.
pub(crate) struct Scene<'a> {
    /// Release id.
    pub(crate) release: &'a ReleaseId,
    /// What the release is doing.
    pub(crate) activity: &'a Activity,
    /// Who is who.
    pub(crate) people: &'a People,
    /// Operator and waiver roles.
    pub(crate) policy: &'a Policy,
    /// User ids on the change freeze's list.
    pub(crate) freeze_list: &'a [String],
    /// Roles the open go/no-go round requires, if one is open.
    pub(crate) round_roles: Option<&'a [String]>,
    /// User id of who started the release.
    pub(crate) initiator: &'a str,
}

/// A refused command: the audit trail's action and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    /// e.g. `approve`, or `command` when the release has ended.
    pub(crate) action: &'static str,
    /// Why, addressed to the person.
    pub(crate) refusal: Refusal,
}

/// Checks `verb` by `by` against its rule, in the order the module documents. `reaction` is set
/// when the command is a reaction, whose refusals say that the reaction does not count.
pub(crate) fn check(verb: Verb, by: &UserRef, reaction: bool, scene: &Scene<'_>) -> Result<(), Refused> {
    let rule = verb.rule();
    let refuse = |refusal: Refusal| Err(Refused { action: verb.name(), refusal });
    let release = || scene.release.clone();
    let status = || scene.activity.label();
    if verb != Verb::Status && matches!(scene.activity, Activity::Ended(_)) {
        return Err(Refused { action: "command", refusal: Refusal::Ended { release: release(), status: status() } });
    }
    if rule.listed && scene.people.get(&by.id).is_none() {
        return refuse(Refusal::NotListed { who: scene.people.named(&by.id) });
    }
    let waiting = match rule.needs {
        Needs::Nothing => true,
        Needs::Freeze => matches!(scene.activity, Activity::Acks { .. }),
        Needs::Approval => matches!(scene.activity, Activity::Approval { .. }),
        Needs::Halt => matches!(scene.activity, Activity::Halted(_)),
    };
    if !waiting {
        return refuse(
            match verb {
                Verb::Ack => NothingWaiting::Freeze { release: release(), status: status() },
                Verb::Approve => NothingWaiting::Approval { release: release(), status: status() },
                Verb::Reject => NothingWaiting::Rejection { release: release() },
                Verb::Waive => NothingWaiting::Gate { release: release(), status: status() },
                _ => NothingWaiting::Halt { release: release(), status: status() },
            }
            .into(),
        );
    }
    let id = by.id.as_str();
    let operator = || scene.people.has_any_role(id, &scene.policy.operator_roles);
    let allowed = match rule.access {
        Access::Anyone => true,
        Access::FreezeList => scene.freeze_list.iter().any(|u| u == id),
        Access::StepRoles => scene.round_roles.is_some_and(|roles| scene.people.has_any_role(id, roles)),
        Access::Operator => operator(),
        Access::OperatorOrInitiator => operator() || id == scene.initiator,
        Access::WaiverRoles => scene.people.has_any_role(id, &scene.policy.waiver_roles),
    };
    if allowed {
        return Ok(());
    }
    let operators = || scene.policy.operator_roles.join(", ");
    let who = scene.people.named(id);
    let roles = || scene.round_roles.unwrap_or_default().join(", ");
    refuse(
        match verb {
            Verb::Ack if reaction => NotAllowed::Reaction { who, release: release() },
            Verb::Ack => {
                let names: Vec<String> = scene.freeze_list.iter().map(|u| scene.people.mention(u)).collect();
                NotAllowed::Ack { who, release: release(), names: names.join(", ") }
            }
            Verb::Approve => {
                let held = scene.people.get(id).map(|p| p.roles.join(", ")).unwrap_or_default();
                NotAllowed::Approve { who, held, needs: roles() }
            }
            Verb::Reject => NotAllowed::Reject { who, needs: roles() },
            Verb::Waive => NotAllowed::Waive { who, needs: scene.policy.waiver_roles.join(", ") },
            Verb::Retry => NotAllowed::Retry { who, needs: operators() },
            Verb::Rollback => NotAllowed::Rollback { who, needs: operators() },
            Verb::Abort => NotAllowed::Abort { who, release: release(), needs: operators() },
            Verb::Status => NotAllowed::Status { who, release: release() },
        }
        .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ids::Platform;
    use crate::engine::plan::Person;
    use crate::engine::{Halt, Resume, Terminal, Timestamp};

    fn people() -> People {
        let p = |id: &str, roles: &[&str]| Person {
            id: id.into(),
            name: id.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        };
        People {
            platform: Platform::Local,
            persons: vec![
                p("alice", &["release_manager"]),
                p("bob", &["product_owner"]),
                p("carol", &["sre_lead"]),
                p("erin", &["stakeholder"]),
            ],
        }
    }

    fn policy() -> Policy {
        Policy {
            waiver_roles: vec!["release_manager".into()],
            operator_roles: vec!["release_manager".into(), "sre_lead".into()],
            remind_after_ms: 1,
            ack_emoji: "white_check_mark".into(),
        }
    }

    fn user(id: &str) -> UserRef {
        UserRef::new(Platform::Local, id)
    }

    struct World {
        activity: Activity,
        people: People,
        policy: Policy,
        freeze: Vec<String>,
        roles: Option<Vec<String>>,
    }

    impl World {
        fn new(activity: Activity) -> World {
            World { activity, people: people(), policy: policy(), freeze: Vec::new(), roles: None }
        }

        fn check(&self, verb: Verb, by: &str, reaction: bool) -> Result<(), Refused> {
            let scene = Scene {
                release: &ReleaseId::from("r1"),
                activity: &self.activity,
                people: &self.people,
                policy: &self.policy,
                freeze_list: &self.freeze,
                round_roles: self.roles.as_deref(),
                initiator: "bob",
            };
            check(verb, &user(by), reaction, &scene)
        }

        fn refusal(&self, verb: Verb, by: &str) -> String {
            let r = self.check(verb, by, false).expect_err("refused");
            format!("{}: {}", r.action, r.refusal)
        }
    }

    fn halted() -> Activity {
        Activity::Halted(Halt {
            step: "s".into(),
            reason: "r".into(),
            gate: None,
            resume: Resume::Step,
            at: Timestamp(1),
        })
    }

    #[test]
    fn every_command_has_one_rule() {
        use Access::*;
        let table: Vec<(Verb, bool, Needs, Access)> = [
            Verb::Status,
            Verb::Ack,
            Verb::Approve,
            Verb::Reject,
            Verb::Waive,
            Verb::Retry,
            Verb::Rollback,
            Verb::Abort,
        ]
        .into_iter()
        .map(|v| (v, v.rule().listed, v.rule().needs, v.rule().access))
        .collect();
        assert_eq!(
            table,
            [
                (Verb::Status, false, Needs::Nothing, Anyone),
                (Verb::Ack, false, Needs::Freeze, FreezeList),
                (Verb::Approve, true, Needs::Approval, StepRoles),
                (Verb::Reject, false, Needs::Approval, StepRoles),
                (Verb::Waive, false, Needs::Halt, WaiverRoles),
                (Verb::Retry, false, Needs::Halt, Operator),
                (Verb::Rollback, false, Needs::Nothing, Operator),
                (Verb::Abort, false, Needs::Nothing, OperatorOrInitiator),
            ]
        );
        assert_eq!(Verb::of(&ReleaseCommand::Approve { comment: None }), Verb::Approve);
        assert_eq!(Verb::of(&ReleaseCommand::Abort { reason: None }), Verb::Abort);
    }

    #[test]
    fn a_finished_release_answers_only_status() {
        let w = World::new(Activity::Ended(Terminal::Released));
        assert_eq!(w.check(Verb::Status, "mallory", false), Ok(()));
        assert_eq!(
            w.refusal(Verb::Rollback, "alice"),
            "command: release r1 has already ended (released). Start a new one with `/ray deploy <version>`."
        );
    }

    #[test]
    fn an_unlisted_approver_is_refused_before_the_state_is_looked_at() {
        let w = World::new(halted());
        assert_eq!(
            w.refusal(Verb::Approve, "mallory"),
            "approve: mallory is not in config/release-approvers.yaml, so cannot approve releases."
        );
        assert_eq!(
            w.refusal(Verb::Approve, "carol"),
            "approve: no approval is waiting for release r1 (it is halted, awaiting instructions). `/ray status` shows what it is doing."
        );
        // Reject has no such requirement: the state comes first.
        assert_eq!(
            w.refusal(Verb::Reject, "mallory"),
            "reject: no approval is waiting for release r1; to stop it use `/ray abort <reason>`."
        );
    }

    #[test]
    fn step_roles_come_from_the_open_round() {
        let mut w = World::new(Activity::Approval { round: 0, reminder: "t".into() });
        w.roles = Some(vec!["product_owner".into(), "sre_lead".into()]);
        assert_eq!(w.check(Verb::Approve, "bob", false), Ok(()));
        assert_eq!(w.check(Verb::Reject, "carol", false), Ok(()));
        assert_eq!(
            w.refusal(Verb::Approve, "erin"),
            "approve: erin (stakeholder) may not approve this step; it needs: product_owner, sre_lead."
        );
        assert_eq!(
            w.refusal(Verb::Reject, "mallory"),
            "reject: mallory may not reject this step; it needs one of: product_owner, sre_lead."
        );
    }

    #[test]
    fn the_freeze_list_decides_acknowledgements() {
        let mut w = World::new(Activity::Acks { reminder: "t".into() });
        w.freeze = vec!["bob".into(), "carol".into()];
        assert_eq!(w.check(Verb::Ack, "carol", true), Ok(()));
        assert_eq!(
            w.refusal(Verb::Ack, "erin"),
            "ack: erin is not on the change-freeze list of r1; it names: @bob, @carol."
        );
        let r = w.check(Verb::Ack, "erin", true).expect_err("refused");
        assert_eq!(r.refusal.to_string(), "erin is not on the change-freeze list of r1; the reaction does not count.");
        let w = World::new(halted());
        assert_eq!(
            w.refusal(Verb::Ack, "bob"),
            "ack: no change freeze is waiting for acknowledgement on release r1 (it is halted, awaiting instructions)."
        );
    }

    #[test]
    fn operators_retry_roll_back_and_abort_and_the_initiator_may_abort() {
        let w = World::new(halted());
        assert_eq!(w.check(Verb::Retry, "carol", false), Ok(()));
        assert_eq!(
            w.refusal(Verb::Retry, "bob"),
            "retry: bob may not retry; it needs one of: release_manager, sre_lead."
        );
        assert_eq!(
            w.refusal(Verb::Rollback, "bob"),
            "rollback: bob may not roll back; it needs one of: release_manager, sre_lead."
        );
        assert_eq!(w.check(Verb::Abort, "bob", false), Ok(()));
        assert_eq!(
            w.refusal(Verb::Abort, "erin"),
            "abort: erin may not abort r1; it needs one of: release_manager, sre_lead or the person who started it."
        );
        let running = World::new(Activity::Idle);
        assert_eq!(
            running.refusal(Verb::Retry, "alice"),
            "retry: release r1 is not halted (it is starting); nothing to retry."
        );
    }

    #[test]
    fn refusals_on_discord_and_slack_mention_the_person_instead_of_their_id() {
        let mut w = World::new(Activity::Approval { round: 0, reminder: "t".into() });
        w.people.platform = Platform::Discord;
        w.roles = Some(vec!["product_owner".into()]);
        assert_eq!(
            w.refusal(Verb::Approve, "1577443819027304456"),
            "approve: <@1577443819027304456> is not in config/release-approvers.yaml, so cannot approve releases."
        );
        assert_eq!(
            w.refusal(Verb::Approve, "erin"),
            "approve: <@erin> (stakeholder) may not approve this step; it needs: product_owner."
        );
        w.people.platform = Platform::Slack;
        for (verb, text) in [
            (Verb::Reject, "<@erin> may not reject this step"),
            (Verb::Rollback, "<@erin> may not roll back"),
            (Verb::Abort, "<@erin> may not abort r1"),
        ] {
            let refusal = w.refusal(verb, "erin");
            assert!(refusal.contains(text), "{refusal}");
        }
        let mut w = World::new(Activity::Acks { reminder: "t".into() });
        w.people.platform = Platform::Slack;
        w.freeze = vec!["bob".into()];
        let r = w.check(Verb::Ack, "U0MALLORY9", true).expect_err("refused");
        assert_eq!(
            r.refusal.to_string(),
            "<@U0MALLORY9> is not on the change-freeze list of r1; the reaction does not count."
        );
        let w = World { people: People { platform: Platform::Slack, ..people() }, ..World::new(halted()) };
        assert!(w.refusal(Verb::Waive, "carol").starts_with("waive: <@carol> may not waive gates"));
        assert!(w.refusal(Verb::Retry, "bob").starts_with("retry: <@bob> may not retry"));
    }

    #[test]
    fn waivers_need_a_halt_and_a_waiver_role() {
        let w = World::new(halted());
        assert_eq!(w.check(Verb::Waive, "alice", false), Ok(()));
        assert_eq!(
            w.refusal(Verb::Waive, "carol"),
            "waive: carol may not waive gates; waivers need one of: release_manager."
        );
        let w = World::new(Activity::Idle);
        assert_eq!(w.refusal(Verb::Waive, "alice"), "waive: release r1 is not halted at a gate (it is starting).");
    }
}
