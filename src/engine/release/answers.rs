//! What a person's command, reaction or click comes to, decided before anything changes: a
//! refusal, a reply, or the action to take. A read-only view of the release (an `impl Release`
//! block) over the access table (`access`), `/ray waive`'s gate checks (`gates`) and the rollback
//! request (`rollback`); `mod.rs` performs the [`Answer`].

use super::access::{self, Refused, Scene, Verb};
use super::freeze::same_emoji;
use super::gates;
use super::rollback::{self, Request};
use super::state::{Activity, Halt, Release, Resume};
use crate::engine::ids::PostKey;
use crate::engine::refusal::Refusal;
use crate::engine::{Button, ReleaseCommand, Timestamp, UserRef};

/// What a person's event comes to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    /// Nothing to do and nothing to say (a reaction outside the freeze window, another emoji).
    Ignore,
    /// Refused: audited under the action and answered.
    Refuse(&'static str, Refusal),
    /// Answered, changing nothing.
    Reply(String),
    /// Count a freeze acknowledgement given `via` a command or a reaction.
    Ack(&'static str),
    /// Withdraw a freeze acknowledgement (reaction removed).
    Unack,
    /// Record an approval given `via` a command or a button.
    Approve {
        /// The `/ray approve` comment.
        comment: Option<String>,
        /// `command` or `button`.
        via: &'static str,
    },
    /// Reject the open round.
    Reject(String),
    /// Waive the gate the release halted at.
    Waive {
        /// The halt it lifts.
        halt: Halt,
        /// The waiver key (`<protocol>/<gate>`).
        key: String,
        /// Gate id.
        gate: String,
        /// Gate name.
        name: String,
        /// Why.
        justification: String,
    },
    /// Run the halted work again.
    Retry(Halt),
    /// Roll the target back, now or once the running work ends.
    Rollback {
        /// Now or queued.
        request: Request,
        /// Why (`requested` when not given).
        reason: String,
    },
    /// Stop the release before the target changed.
    Abort(String),
}

impl Release {
    /// The access check of `verb` for `by`.
    fn check(&self, verb: Verb, by: &UserRef, reaction: bool) -> Result<(), Refused> {
        let round = match self.activity {
            Activity::Approval { round, .. } => self.rounds.get(round),
            _ => None,
        };
        let scene = Scene {
            release: &self.id,
            activity: &self.activity,
            people: &self.plan.people,
            policy: &self.plan.policy,
            freeze_list: &self.freeze.required,
            round_roles: round.map(|r| r.roles.as_slice()),
            initiator: &self.started_by.id,
        };
        access::check(verb, by, reaction, &scene)
    }

    /// What `command` from `by` comes to.
    pub(super) fn answer_command(&self, by: &UserRef, command: &ReleaseCommand) -> Answer {
        if let Err(Refused { action, refusal }) = self.check(Verb::of(command), by, false) {
            return Answer::Refuse(action, refusal);
        }
        match command {
            ReleaseCommand::Status => Answer::Reply(self.status_text()),
            ReleaseCommand::Ack => Answer::Ack("command"),
            ReleaseCommand::Approve { comment } => Answer::Approve { comment: comment.clone(), via: "command" },
            ReleaseCommand::Reject { reason } => Answer::Reject(reason.clone()),
            ReleaseCommand::Waive { gate, justification } => self.answer_waive(gate, justification),
            ReleaseCommand::Retry => self.answer_retry(),
            ReleaseCommand::Rollback { reason } => {
                match rollback::request(self.production_touched, &self.activity, &self.id, &self.env) {
                    Ok(request) => {
                        Answer::Rollback { request, reason: reason.as_deref().unwrap_or("requested").into() }
                    }
                    Err(refusal) => Answer::Refuse("rollback", refusal),
                }
            }
            ReleaseCommand::Abort { .. } if self.production_touched => {
                Answer::Refuse("abort", Refusal::AlreadyChanged { release: self.id.clone(), env: self.env.clone() })
            }
            ReleaseCommand::Abort { reason } => Answer::Abort(reason.as_deref().unwrap_or("no reason given").into()),
        }
    }

    /// `/ray waive`: the named gate must be the one halted at, waivable, with a reason.
    fn answer_waive(&self, gate: &str, justification: &str) -> Answer {
        let Activity::Halted(h) = &self.activity else { return Answer::Ignore };
        let p = self.protocol();
        match gates::waivable(p, h.gate.as_deref(), &h.step, gate, justification) {
            Ok(g) => Answer::Waive {
                halt: h.clone(),
                key: gates::waiver_key(&p.id, &g.id),
                gate: g.id.clone(),
                name: g.name.clone(),
                justification: justification.to_string(),
            },
            Err(refusal) => Answer::Refuse("waive", refusal.into()),
        }
    }

    /// `/ray retry`: the halted work, unless a step halt points past the last step.
    fn answer_retry(&self) -> Answer {
        let Activity::Halted(h) = &self.activity else { return Answer::Ignore };
        // A log recorded before final-evidence halts existed resumes past the last step: there is
        // nothing to run again, so the halt stays (and replaying such a log never panics).
        let step_exists =
            self.protocol().phases.get(self.cursor.phase).is_some_and(|p| p.steps.get(self.cursor.step).is_some());
        if h.resume == Resume::Step && !step_exists {
            return Answer::Refuse("retry", Refusal::NoStepLeft);
        }
        Answer::Retry(h.clone())
    }

    /// Where the release halts when evidence file `file` could not be written (`error`): the
    /// step, or the final evidence of a release that reached its outcome (a retry writes it
    /// again: there is no step left to run). `None` once the release ended.
    pub(super) fn evidence_halt(&self, file: &str, error: &str, now: Timestamp) -> Option<Halt> {
        let (step, resume) = match &self.activity {
            Activity::Ended(_) => return None,
            Activity::Bundle { finish: Some(outcome), .. } => {
                (format!("the final evidence of {}", self.id), Resume::Finish { outcome: outcome.clone() })
            }
            _ => (self.step_label(), Resume::Step),
        };
        Some(Halt { step, reason: format!("could not write {file}: {error}"), gate: None, resume, at: now })
    }

    /// What a reaction `emoji` on `message`, added or removed, comes to: only the freeze
    /// message's acknowledgement emoji counts, and only while acknowledgements are open.
    pub(super) fn answer_reaction(&self, by: &UserRef, message: &str, emoji: &str, added: bool) -> Answer {
        if !self.is_post(&PostKey::Freeze, message) || !same_emoji(emoji, &self.plan.policy.ack_emoji) {
            return Answer::Ignore;
        }
        if !added {
            return Answer::Unack;
        }
        // Reactions outside the freeze's acknowledgement window are ignored, not refused.
        if !matches!(self.activity, Activity::Acks { .. }) {
            return Answer::Ignore;
        }
        match self.check(Verb::Ack, by, true) {
            Ok(()) => Answer::Ack("reaction"),
            Err(Refused { action, refusal }) => Answer::Refuse(action, refusal),
        }
    }

    /// What a click of `button` on `message` comes to: only the open round's request takes one.
    pub(super) fn answer_click(&self, by: &UserRef, message: &str, button: Button) -> Answer {
        let round = self
            .posts
            .iter()
            .filter(|(_, ids)| ids.iter().any(|m| m == message))
            .find_map(|(k, _)| PostKey::parse(k).round());
        let current = match self.activity {
            Activity::Approval { round, .. } => Some(round),
            _ => None,
        };
        if round.is_none() || round != current {
            return Answer::Refuse("click", Refusal::ClosedRequest);
        }
        let verb = if button == Button::Approve { Verb::Approve } else { Verb::Reject };
        if let Err(Refused { action, refusal }) = self.check(verb, by, false) {
            return Answer::Refuse(action, refusal);
        }
        match button {
            Button::Approve => Answer::Approve { comment: None, via: "button" },
            Button::Reject => Answer::Reject("rejected with the Reject button".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Strategy;
    use crate::engine::testkit::Sim;

    /// The sample release waiting for freeze acknowledgements.
    fn at_freeze() -> Sim {
        let mut sim = Sim::new();
        sim.start("alice", Strategy::Bluegreen);
        sim.command("alice", ReleaseCommand::Approve { comment: None });
        sim.command("bob", ReleaseCommand::Approve { comment: None });
        assert!(matches!(sim.release().activity, Activity::Acks { .. }));
        sim
    }

    #[test]
    fn only_the_ack_emoji_on_the_freeze_message_counts() {
        let sim = at_freeze();
        let r = sim.release();
        let listed = Sim::user(&r.freeze.required[0]);
        let freeze = sim.message("freeze");
        let emoji = r.plan.policy.ack_emoji.clone();
        assert_eq!(r.answer_reaction(&listed, &freeze, "tada", true), Answer::Ignore);
        assert_eq!(r.answer_reaction(&listed, "another message", &emoji, true), Answer::Ignore);
        assert_eq!(r.answer_reaction(&listed, &freeze, &emoji, true), Answer::Ack("reaction"));
        assert_eq!(r.answer_reaction(&listed, &freeze, &emoji, false), Answer::Unack);
        let stranger = r.answer_reaction(&Sim::user("mallory"), &freeze, &emoji, true);
        assert!(matches!(stranger, Answer::Refuse("ack", _)), "{stranger:?}");
    }

    #[test]
    fn a_click_on_a_request_no_longer_open_is_refused() {
        let sim = at_freeze();
        let r = sim.release();
        let old = sim.message("approval:0");
        assert_eq!(
            r.answer_click(&Sim::user("bob"), &old, Button::Approve),
            Answer::Refuse("click", Refusal::ClosedRequest)
        );
    }

    #[test]
    fn abort_is_refused_once_the_target_changed_and_rollback_before() {
        let sim = at_freeze();
        let mut r = sim.release().clone();
        let alice = Sim::user("alice");
        let abort = ReleaseCommand::Abort { reason: None };
        assert_eq!(r.answer_command(&alice, &abort), Answer::Abort("no reason given".into()));
        let rollback = ReleaseCommand::Rollback { reason: None };
        assert!(matches!(r.answer_command(&alice, &rollback), Answer::Refuse(_, _)));
        r.production_touched = true;
        assert!(matches!(r.answer_command(&alice, &abort), Answer::Refuse("abort", Refusal::AlreadyChanged { .. })));
    }
}
