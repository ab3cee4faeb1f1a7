//! The requests raybot puts to people — the change freeze and the go/no-go rounds — decided
//! before anything changes: who a freeze asks (or that nobody can be asked), the round a step
//! opens, the post that asks (its key, text, and reaction or buttons), and the approval a person
//! gives. A read-only view of the release (an `impl Release` block) over the freeze and approval
//! sub-machines (`freeze`, `approval`); `mod.rs` posts the request, arms the reminder and records
//! what people answer.

use super::approval::{Approval, ApprovalRound};
use super::freeze::Freeze;
use super::state::{Activity, Release};
use super::steps::{Act, Asking, Next, Reading};
use crate::engine::ids::PostKey;
use crate::engine::{Ask, Timestamp, UserRef};

impl Release {
    /// The change freeze the current step opens at `now` for everyone holding `roles`; the step
    /// fails when nobody does.
    pub(super) fn freeze_opening(&self, roles: &[String], now: Timestamp) -> Reading {
        let required: Vec<String> = self.plan.people.with_roles(roles).iter().map(|p| p.id.clone()).collect();
        if required.is_empty() {
            return Next::Failed(format!("nobody holds the freeze roles ({})", roles.join(", "))).into();
        }
        Reading { acts: vec![Act::Freeze(Box::new(Freeze::open(required, now)))], next: Next::Ask(Asking::Acks) }
    }

    /// The go/no-go round the current step opens at `now`, requiring `roles`.
    pub(super) fn approval_opening(&self, roles: Vec<String>, now: Timestamp) -> Reading {
        let round = ApprovalRound::open(self.protocol().id.clone(), self.step().id.clone(), roles, now);
        let asking = Asking::Approval(self.rounds.len());
        Reading { acts: vec![Act::Round(Box::new(round))], next: Next::Ask(asking) }
    }

    /// The post that asks (`lead` first, e.g. after a restart): under which key, what it says, and
    /// the reaction or buttons it offers.
    pub(super) fn request(&self, asking: Asking, lead: &str) -> (PostKey, String, Ask) {
        match asking {
            Asking::Acks => {
                let ask = Ask::Reaction { emoji: self.plan.policy.ack_emoji.clone() };
                (PostKey::Freeze, format!("{lead}{}", self.freeze_text(self.step())), ask)
            }
            Asking::Approval(round) => {
                (PostKey::Approval(round), self.approval_request_text(&self.rounds[round], lead), Ask::Buttons)
            }
        }
    }

    /// The approval `by` gives the open round at `now` (`via` a command or a button), as the round
    /// records it: their name and the required roles they cover. `None` when no round is open or
    /// `by` is not listed (the access check refuses them first).
    pub(super) fn approval(
        &self,
        by: &UserRef,
        comment: Option<String>,
        via: &str,
        now: Timestamp,
    ) -> Option<(usize, Approval)> {
        let Activity::Approval { round, .. } = self.activity else { return None };
        let person = self.plan.people.get(&by.id)?;
        let roles = self.rounds[round].covered_by(&person.roles);
        let approval =
            Approval { user: by.id.clone(), name: person.name.clone(), roles, at: now, comment, via: via.into() };
        Some((round, approval))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::testkit::Sim;
    use crate::engine::{ReleaseCommand, Strategy};

    #[test]
    fn a_freeze_asks_everyone_holding_its_roles_and_fails_when_nobody_does() {
        let mut sim = Sim::new();
        sim.start("alice", Strategy::Bluegreen);
        let r = sim.release();
        let opening = r.freeze_opening(&["sre_lead".into(), "product_owner".into()], sim.now);
        let [Act::Freeze(freeze)] = &opening.acts[..] else { panic!("{:?}", opening.acts) };
        assert_eq!((freeze.required.clone(), freeze.opened_at), (vec!["bob".into(), "carol".into()], Some(sim.now)));
        assert_eq!(opening.next, Next::Ask(Asking::Acks));
        let nobody = r.freeze_opening(&["astronaut".into()], sim.now);
        assert!(nobody.acts.is_empty());
        assert_eq!(nobody.next, Next::Failed("nobody holds the freeze roles (astronaut)".into()));
    }

    #[test]
    fn a_round_is_opened_asked_with_buttons_and_an_approval_records_the_roles_it_covers() {
        let mut sim = Sim::new();
        sim.start("alice", Strategy::Bluegreen);
        let r = sim.release();
        let Activity::Approval { round, .. } = r.activity else { panic!("waiting for go/no-go") };
        let opening = r.approval_opening(vec!["sre_lead".into()], sim.now);
        assert!(matches!(&opening.acts[..], [Act::Round(o)] if o.roles == ["sre_lead"] && o.approvals.is_empty()));
        assert_eq!(opening.next, Next::Ask(Asking::Approval(r.rounds.len())));
        let (key, text, ask) = r.request(Asking::Approval(round), "[RAY] Resumed after a restart.\n");
        assert_eq!((key, ask), (PostKey::Approval(round), Ask::Buttons));
        assert!(text.starts_with("[RAY] Resumed after a restart.\n") && text.contains("Needed: "), "{text}");
        let bob = Sim::user("bob");
        let (at, approval) = r.approval(&bob, Some("ok".into()), "command", sim.now).expect("a round is open");
        assert_eq!(at, round);
        assert_eq!((approval.user.as_str(), approval.name.as_str()), ("bob", "Bob Example"));
        assert_eq!(
            (approval.roles, approval.comment, approval.via),
            (vec!["product_owner".into()], Some("ok".into()), "command".into())
        );
        assert_eq!(r.approval(&Sim::user("mallory"), None, "button", sim.now), None, "not listed");
    }

    #[test]
    fn the_freeze_request_offers_the_ack_reaction_and_waits_for_acknowledgements() {
        let mut sim = Sim::new();
        sim.start("alice", Strategy::Bluegreen);
        sim.command("alice", ReleaseCommand::Approve { comment: None });
        sim.command("bob", ReleaseCommand::Approve { comment: None });
        let r = sim.release();
        let (key, text, ask) = r.request(Asking::Acks, "");
        assert_eq!(key, PostKey::Freeze);
        assert_eq!(ask, Ask::Reaction { emoji: r.plan.policy.ack_emoji.clone() });
        assert!(text.contains("react with :white_check_mark:"), "{text}");
        let reminder = crate::engine::TimerId::new(&r.id, 9);
        assert_eq!(Asking::Acks.waiting(reminder.clone()), Activity::Acks { reminder: reminder.clone() });
        assert_eq!(Asking::Approval(2).waiting(reminder.clone()), Activity::Approval { round: 2, reminder });
    }
}
