//! A go/no-go round: which roles must say go, who did, and when the round is decided.
//!
//! A leaf: [`ApprovalRound::approve`] records an approval and returns a [`RoundOutcome`]; the rule
//! that each required role is covered by a different person, and that the person who started the
//! release never approves alone, lives here and nowhere else.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::engine::Timestamp;

/// One approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Platform user id of the approver.
    pub user: String,
    /// Display name from `release-approvers.yaml`, for the evidence.
    pub name: String,
    /// The approver's roles that this round requires.
    pub roles: Vec<String>,
    /// When they approved.
    pub at: Timestamp,
    /// The `/ray approve` comment, if any (buttons carry none).
    pub comment: Option<String>,
    /// `command` or `button`.
    pub via: String,
}

/// Who rejected a round, as what, when, how and why: the failure path's record, as full as the
/// approvals' own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// Platform user id of who rejected.
    pub user: String,
    /// Display name from `release-approvers.yaml`, for the evidence.
    pub name: String,
    /// Their roles that the round requires (what they rejected as).
    pub roles: Vec<String>,
    /// When they rejected.
    pub at: Timestamp,
    /// The `/ray reject` reason (the Reject button gives a fixed one).
    pub reason: String,
    /// `command` or `button`.
    pub via: String,
}

/// A go/no-go round (one approval step).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRound {
    /// Protocol id, e.g. `10`.
    pub protocol: String,
    /// Id of the approval step.
    pub step: String,
    /// Required roles; each must be covered by a different approver.
    pub roles: Vec<String>,
    /// Approvals so far, in order.
    pub approvals: Vec<Approval>,
    /// When the request was posted.
    pub opened_at: Timestamp,
    /// `approved` or `rejected` once decided.
    pub decision: Option<String>,
    /// When the decision fell.
    pub decided_at: Option<Timestamp>,
    /// Who rejected the round, when, how and why; `None` unless it was rejected (and in state
    /// written before rejections were recorded: replaying the log fills it in).
    #[serde(default)]
    pub rejection: Option<Rejection>,
}

/// What one approval did to the round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RoundOutcome {
    /// The approval covers none of the required roles: nothing changed.
    NotRequired,
    /// The person approved this round before: counted once, nothing changed.
    Already,
    /// Recorded, and every required role is now covered by someone other than the initiator
    /// alone: the round is decided `approved`.
    Approved,
    /// Recorded; these required roles are not covered yet.
    Missing(Vec<String>),
    /// Recorded; every role is covered, but only by the person who started the release.
    InitiatorAlone,
}

impl ApprovalRound {
    /// A round of approval step `step` of protocol `protocol`, requiring `roles`, opened at `now`.
    pub(crate) fn open(protocol: String, step: String, roles: Vec<String>, now: Timestamp) -> ApprovalRound {
        ApprovalRound {
            protocol,
            step,
            roles,
            approvals: Vec::new(),
            opened_at: now,
            decision: None,
            decided_at: None,
            rejection: None,
        }
    }

    /// The roles among `held` that this round requires: what an approval by their holder covers.
    pub(crate) fn covered_by(&self, held: &[String]) -> Vec<String> {
        held.iter().filter(|x| self.roles.contains(x)).cloned().collect()
    }

    /// True once the round was decided `approved`.
    pub(crate) fn is_approved(&self) -> bool {
        self.decision.as_deref() == Some("approved")
    }

    /// Records `approval` (its `roles` are [`ApprovalRound::covered_by`] the approver's roles) and
    /// decides the round when it is complete. `initiator` is the user id of who started the release.
    pub(crate) fn approve(&mut self, approval: Approval, initiator: &str) -> RoundOutcome {
        if approval.roles.is_empty() {
            return RoundOutcome::NotRequired;
        }
        if self.approvals.iter().any(|a| a.user == approval.user) {
            return RoundOutcome::Already;
        }
        let at = approval.at;
        self.approvals.push(approval);
        let missing: Vec<String> = self.missing_roles().into_iter().cloned().collect();
        let approvers: BTreeSet<&str> = self.approvals.iter().map(|a| a.user.as_str()).collect();
        let only_initiator = approvers.len() == 1 && approvers.contains(initiator);
        if !missing.is_empty() {
            return RoundOutcome::Missing(missing);
        }
        if only_initiator {
            return RoundOutcome::InitiatorAlone;
        }
        self.decision = Some("approved".into());
        self.decided_at = Some(at);
        RoundOutcome::Approved
    }

    /// Decides the round `rejected`, keeping who rejected, when, how and why.
    pub(crate) fn reject(&mut self, rejection: Rejection) {
        self.decision = Some("rejected".into());
        self.decided_at = Some(rejection.at);
        self.rejection = Some(rejection);
    }

    /// Required roles no distinct approver covers yet, in the round's order.
    pub(crate) fn missing_roles(&self) -> Vec<&String> {
        self.roles.iter().zip(self.coverage()).filter(|(_, c)| c.is_none()).map(|(role, _)| role).collect()
    }

    /// Which required roles are covered by distinct approvers (bipartite matching; small sizes).
    fn coverage(&self) -> Vec<Option<String>> {
        fn assign(
            roles: &[String],
            i: usize,
            approvals: &[Approval],
            used: &mut Vec<bool>,
            out: &mut Vec<Option<String>>,
            best: &mut Vec<Option<String>>,
        ) {
            if i == roles.len() {
                if out.iter().filter(|o| o.is_some()).count() > best.iter().filter(|o| o.is_some()).count() {
                    *best = out.clone();
                }
                return;
            }
            for (k, a) in approvals.iter().enumerate() {
                if !used[k] && a.roles.contains(&roles[i]) {
                    used[k] = true;
                    out[i] = Some(a.user.clone());
                    assign(roles, i + 1, approvals, used, out, best);
                    out[i] = None;
                    used[k] = false;
                }
            }
            assign(roles, i + 1, approvals, used, out, best);
        }
        let mut best = vec![None; self.roles.len()];
        let mut out = vec![None; self.roles.len()];
        let mut used = vec![false; self.approvals.len()];
        assign(&self.roles, 0, &self.approvals, &mut used, &mut out, &mut best);
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round() -> ApprovalRound {
        ApprovalRound::open("11".into(), "go".into(), vec!["release_manager".into(), "sre_lead".into()], Timestamp(1))
    }

    fn approval(round: &ApprovalRound, user: &str, roles: &[&str], at: u64) -> Approval {
        let held: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        Approval {
            user: user.into(),
            name: user.into(),
            roles: round.covered_by(&held),
            at: Timestamp(at),
            comment: None,
            via: "command".into(),
        }
    }

    #[test]
    fn each_role_needs_a_different_person() {
        let mut r = round();
        let both = approval(&r, "bob", &["release_manager", "sre_lead", "stakeholder"], 2);
        assert_eq!(both.roles, ["release_manager", "sre_lead"]);
        assert_eq!(r.approve(both, "alice"), RoundOutcome::Missing(vec!["sre_lead".into()]));
        let carol = approval(&r, "carol", &["sre_lead"], 3);
        assert_eq!(r.approve(carol, "alice"), RoundOutcome::Approved);
        assert!(r.is_approved());
        assert_eq!(r.decided_at, Some(Timestamp(3)));
    }

    #[test]
    fn the_matching_finds_the_assignment_that_covers_most_roles() {
        let mut r = round();
        // carol approves first with both roles, dave only as release manager: carol must take sre_lead.
        let carol = approval(&r, "carol", &["release_manager", "sre_lead"], 2);
        r.approve(carol, "alice");
        let dave = approval(&r, "dave", &["release_manager"], 3);
        assert_eq!(r.approve(dave, "alice"), RoundOutcome::Approved);
    }

    #[test]
    fn a_person_counts_once() {
        let mut r = round();
        let bob = approval(&r, "bob", &["release_manager"], 2);
        r.approve(bob.clone(), "alice");
        assert_eq!(r.approve(bob, "alice"), RoundOutcome::Already);
        assert_eq!(r.approvals.len(), 1);
    }

    #[test]
    fn the_initiator_never_approves_alone() {
        let mut r = round();
        let alice = approval(&r, "alice", &["release_manager", "sre_lead"], 2);
        assert_eq!(r.approve(alice, "alice"), RoundOutcome::Missing(vec!["sre_lead".into()]));
        let mut r = ApprovalRound::open("10".into(), "go".into(), vec!["release_manager".into()], Timestamp(1));
        let alice = approval(&r, "alice", &["release_manager"], 2);
        assert_eq!(r.approve(alice, "alice"), RoundOutcome::InitiatorAlone);
        assert_eq!(r.decision, None);
        let erin = approval(&r, "erin", &["stakeholder"], 3);
        assert_eq!(r.approve(erin, "alice"), RoundOutcome::NotRequired);
        let bob = approval(&r, "bob", &["release_manager"], 4);
        assert_eq!(r.approve(bob, "alice"), RoundOutcome::Approved);
    }

    #[test]
    fn a_rejection_decides_the_round_and_keeps_who_when_how_and_why() {
        let mut r = round();
        let bob = approval(&r, "bob", &["release_manager"], 2);
        r.approve(bob, "alice");
        let carol = Rejection {
            user: "carol".into(),
            name: "Carol".into(),
            roles: vec!["sre_lead".into()],
            at: Timestamp(5),
            reason: "not today".into(),
            via: "button".into(),
        };
        r.reject(carol.clone());
        assert_eq!(r.decision.as_deref(), Some("rejected"));
        assert_eq!(r.decided_at, Some(Timestamp(5)));
        assert_eq!(r.rejection, Some(carol));
        assert_eq!(r.approvals.len(), 1, "the signatures given before stay");
        assert!(!r.is_approved());
    }

    #[test]
    fn a_round_stored_before_rejections_were_recorded_still_loads() {
        let mut stored = serde_json::to_value(round()).expect("serializes");
        stored.as_object_mut().expect("an object").remove("rejection");
        let loaded: ApprovalRound = serde_json::from_value(stored).expect("loads");
        assert_eq!(loaded, round());
    }
}
