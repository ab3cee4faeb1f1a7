//! What a person's command, reaction or click comes to, decided before anything changes: a
//! refusal, a reply, or the action to take. A read-only view of the release (an `impl Release`
//! block) over the access table (`access`), `/ray waive`'s gate checks (`gates`) and the rollback
//! request (`rollback`); `mod.rs` performs the [`Answer`], and the [`Reading`] of a waiver, retry,
//! rejection, abort or rollback asked for.

use super::access::{self, Refused, Scene, Verb};
use super::approval::Rejection;
use super::freeze::same_emoji;
use super::gates;
use super::rollback::{self, Request};
use super::state::{Activity, AuditEntry, Halt, Release, Resume, Terminal};
use super::steps::{Act, Next, Reading};
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
    /// Reject the open round, given `via` a command or a button.
    Reject {
        /// Why (the Reject button gives a fixed reason).
        reason: String,
        /// `command` or `button`.
        via: &'static str,
    },
    /// Waive the gate the release halted at.
    Waive(Waive),
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

/// A waiver of the gate a release halted at, as `/ray waive` asked for it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Waive {
    /// The halt it lifts.
    pub(crate) halt: Halt,
    /// The waiver key (`<protocol>/<gate>`).
    pub(crate) key: String,
    /// Gate id.
    pub(crate) gate: String,
    /// Gate name.
    pub(crate) name: String,
    /// Why.
    pub(crate) justification: String,
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
            ReleaseCommand::Reject { reason } => Answer::Reject { reason: reason.clone(), via: "command" },
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
            Ok(g) => Answer::Waive(Waive {
                halt: h.clone(),
                key: gates::waiver_key(&p.id, &g.id),
                gate: g.id.clone(),
                name: g.name.clone(),
                justification: justification.to_string(),
            }),
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

    /// What a waiver by `by` does: recorded and announced, then the walk goes on past the halted
    /// step, or past the gate itself when the gate failed.
    pub(super) fn waived(&self, by: &UserRef, w: Waive, now: Timestamp) -> Reading {
        let Waive { halt, key, gate, name, justification } = w;
        let audit = AuditEntry::accepted(now, &by.id, format!("waived gate {gate}: {justification}"));
        let said = self.waived_text(&name, &by.id, &justification);
        let past_gate = self.cursor.step >= self.phase().steps.len() - 1 && halt.resume == Resume::Phase;
        Reading {
            acts: vec![Act::Audit(audit), Act::Waiver(key, by.id.clone(), justification, now), Act::Say(said)],
            next: if past_gate { Next::PassGate } else { Next::Done },
        }
    }

    /// What `/ray retry` by `by` runs again after `halt`: the rollback, the phase, the step, or
    /// the final evidence before the end.
    pub(super) fn retried(&self, by: &UserRef, halt: Halt, now: Timestamp) -> Reading {
        let audit = Act::Audit(AuditEntry::accepted(now, &by.id, format!("retry of {}", halt.step)));
        let (rewrite, next) = match halt.resume {
            Resume::Rollback => {
                let reason = self.rollback.as_ref().map(|r| r.reason.clone()).unwrap_or_else(|| "retry".into());
                let next = Next::Rollback { reason, trigger: by.id.clone() };
                return Reading { acts: vec![audit, Act::Rollback(None)], next };
            }
            Resume::Phase => (false, Next::RunPhase),
            Resume::Step => (false, Next::RunStep),
            Resume::Finish { outcome } => (true, Next::Finish(outcome)),
        };
        Reading { acts: vec![audit, Act::Say(self.retry_text(&halt.step, &by.id, rewrite))], next }
    }

    /// The rejection `by` gives the open round at `now` (`via` a command or a button), as the
    /// round records it: their name and the required roles they reject as. `None` when no round
    /// is open or `by` is not listed (the access check refuses them first).
    pub(super) fn rejection(
        &self,
        by: &UserRef,
        reason: String,
        via: &str,
        now: Timestamp,
    ) -> Option<(usize, Rejection)> {
        let Activity::Approval { round, .. } = self.activity else { return None };
        let person = self.plan.people.get(&by.id)?;
        let roles = self.rounds[round].covered_by(&person.roles);
        let rejection =
            Rejection { user: by.id.clone(), name: person.name.clone(), roles, at: now, reason, via: via.into() };
        Some((round, rejection))
    }

    /// What the rejection of go/no-go round `round` (already decided, keeping its
    /// [`Rejection`]) does: the request shows it, the channel and so the communication log are
    /// told who rejected as what, when, how and why, the round's evidence is written with it,
    /// and the release ends rejected. Nothing for a round not rejected.
    pub(super) fn rejected(&self, round: usize, now: Timestamp) -> Reading {
        let r = &self.rounds[round];
        let Some(x) = &r.rejection else { return Next::Wait.into() };
        let what = format!("rejected {} via {}: {}", r.step, x.via, x.reason);
        let mut acts = vec![
            Act::Audit(AuditEntry::accepted(now, &x.user, what)),
            Act::Update(PostKey::Approval(round), self.rejected_text(x)),
            Act::Say(self.no_go_text(x)),
        ];
        acts.extend(self.step_json(now, self.approval_body(r)));
        Reading { acts, next: Next::Finish(Terminal::Rejected { by: x.user.clone(), reason: x.reason.clone() }) }
    }

    /// What a `/ray rollback` by `by` (for `reason`) does: recorded, then the target's rollback
    /// starts now, or once the running job or probe ends, which `by` is told.
    pub(super) fn rollback_asked(&self, by: &UserRef, request: Request, reason: String, now: Timestamp) -> Reading {
        let audit = Act::Audit(AuditEntry::accepted(now, &by.id, format!("requested rollback: {reason}")));
        let why = format!("requested by {}: {reason}", self.mention(&by.id));
        if request == Request::Now {
            return Reading { acts: vec![audit], next: Next::Rollback { reason: why, trigger: by.id.clone() } };
        }
        let queued = "[RAY] Rollback queued: it starts as soon as the running step finishes.".to_string();
        let acts = vec![audit, Act::QueueRollback(by.id.clone(), why), Act::Reply(by.clone(), queued)];
        Reading { acts, next: Next::Wait }
    }

    /// What `/ray abort` by `by` does: recorded, and the release ends aborted.
    pub(super) fn aborted(&self, by: &UserRef, reason: String, now: Timestamp) -> Reading {
        let audit = AuditEntry::accepted(now, &by.id, format!("aborted: {reason}"));
        Reading { acts: vec![Act::Audit(audit)], next: Next::Finish(Terminal::Aborted { by: by.id.clone(), reason }) }
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
        let round = self.posts.iter().filter(|(_, ids)| ids.iter().any(|m| m == message)).find_map(|(k, _)| k.round());
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
            Button::Reject => Answer::Reject { reason: "rejected with the Reject button".into(), via: "button" },
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
        let freeze = sim.message(&PostKey::Freeze);
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
        let old = sim.message(&PostKey::Approval(0));
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

    #[test]
    fn a_rollback_asked_is_audited_and_starts_now_or_once_the_running_work_ends_saying_so() {
        let sim = at_freeze();
        let r = sim.release();
        let carol = Sim::user("carol");
        let now = r.rollback_asked(&carol, Request::Now, "errors".into(), sim.now);
        assert!(matches!(&now.acts[..], [Act::Audit(a)] if a.what == "requested rollback: errors" && a.who == "carol"));
        assert_eq!(now.next, Next::Rollback { reason: "requested by @carol: errors".into(), trigger: "carol".into() });
        let queued = r.rollback_asked(&carol, Request::Queued, "errors".into(), sim.now);
        let [Act::Audit(_), Act::QueueRollback(who, why), Act::Reply(to, text)] = &queued.acts[..] else {
            panic!("audit, queue, answer: {:?}", queued.acts)
        };
        assert_eq!((who.as_str(), why.as_str(), to), ("carol", "requested by @carol: errors", &carol));
        assert!(text.starts_with("[RAY] Rollback queued"), "{text}");
        assert_eq!(queued.next, Next::Wait);
    }

    /// The sample release halted at the failed Rollback & Security Gate.
    fn at_failed_gate() -> Sim {
        let mut sim = Sim::new();
        sim.fail_jobs.push("security scan".into());
        sim.start("alice", Strategy::Bluegreen);
        assert!(matches!(sim.release().activity, Activity::Halted(Halt { resume: Resume::Phase, .. })));
        sim
    }

    #[test]
    fn a_waiver_is_audited_recorded_and_announced_then_the_walk_goes_past_the_failed_gate() {
        let sim = at_failed_gate();
        let r = sim.release();
        let command = ReleaseCommand::Waive {
            gate: "rollback-security".into(),
            justification: "scanner flake, tracked in SEC-42".into(),
        };
        let Answer::Waive(waive) = r.answer_command(&Sim::user("alice"), &command) else { panic!("waivable") };
        let read = r.waived(&Sim::user("alice"), waive.clone(), sim.now);
        let [Act::Audit(audit), Act::Waiver(key, who, why, at), Act::Say(said)] = &read.acts[..] else {
            panic!("audit, waiver, announcement: {:?}", read.acts)
        };
        assert_eq!(
            (audit.what.as_str(), audit.accepted),
            ("waived gate rollback-security: scanner flake, tracked in SEC-42", true)
        );
        assert_eq!(
            (key.ends_with("/rollback-security"), who.as_str(), why.as_str()),
            (true, "alice", "scanner flake, tracked in SEC-42")
        );
        assert_eq!(*at, sim.now);
        assert!(said.contains("waived by"), "{said}");
        // The security step's own figures failed the gate: the walk goes on after that step.
        assert_eq!(read.next, Next::Done);
        // The gate failed at the end of the phase: the walk goes on as if it passed.
        let mut at_end = r.clone();
        at_end.cursor.step = at_end.phase().steps.len();
        assert_eq!(at_end.waived(&Sim::user("alice"), waive, sim.now).next, Next::PassGate);
    }

    #[test]
    fn a_retry_runs_the_phase_the_step_the_rollback_or_the_final_evidence_again() {
        let sim = at_failed_gate();
        let mut r = sim.release().clone();
        let Activity::Halted(halt) = r.activity.clone() else { unreachable!() };
        let carol = Sim::user("carol");
        let again = |r: &Release, resume| r.retried(&carol, Halt { resume, ..halt.clone() }, sim.now);
        let phase = again(&r, Resume::Phase);
        assert!(matches!(&phase.acts[..], [Act::Audit(a), Act::Say(t)] if a.who == "carol" && t.contains("Retrying")));
        assert_eq!(phase.next, Next::RunPhase);
        assert_eq!(again(&r, Resume::Step).next, Next::RunStep);
        let finish = again(&r, Resume::Finish { outcome: Terminal::Released });
        assert!(matches!(&finish.acts[1], Act::Say(t) if t.contains("Writing")));
        assert_eq!(finish.next, Next::Finish(Terminal::Released));
        r.rollback = Some(crate::engine::release::RollbackRecord::start(
            "production".into(),
            "bad".into(),
            "automatic".into(),
            sim.now,
        ));
        let rollback = again(&r, Resume::Rollback);
        assert!(matches!(&rollback.acts[..], [Act::Audit(_), Act::Rollback(None)]));
        assert_eq!(rollback.next, Next::Rollback { reason: "bad".into(), trigger: "carol".into() });
    }

    #[test]
    fn a_rejection_shows_on_the_request_and_an_abort_ends_the_release_naming_who() {
        let mut sim = Sim::new();
        sim.start("alice", Strategy::Bluegreen);
        let r = sim.release();
        let Activity::Approval { round, .. } = r.activity else { panic!("waiting for go/no-go") };
        let bob = Sim::user("bob");
        assert_eq!(r.rejected(round, sim.now), Next::Wait.into(), "a round not rejected: nothing to record");
        assert_eq!(r.rejection(&Sim::user("mallory"), "no".into(), "command", sim.now), None, "not listed");
        let (at, rejection) = r.rejection(&bob, "not today".into(), "button", sim.now).expect("a round is open");
        assert_eq!(at, round);
        assert_eq!(
            (rejection.user.as_str(), rejection.name.as_str(), rejection.roles.clone()),
            ("bob", "Bob Example", vec!["product_owner".to_string()])
        );
        assert_eq!((rejection.at, rejection.reason.as_str(), rejection.via.as_str()), (sim.now, "not today", "button"));
        let mut decided = r.clone();
        decided.rounds[round].reject(rejection);
        let rejected = decided.rejected(round, sim.now);
        let step = &r.rounds[round].step;
        let [Act::Audit(a), Act::Update(PostKey::Approval(n), edit), Act::Say(said), Act::Write(path, doc)] =
            &rejected.acts[..]
        else {
            panic!("audit, edit, announcement, evidence: {:?}", rejected.acts)
        };
        assert_eq!(
            (a.who.as_str(), a.what.clone(), *n),
            ("bob", format!("rejected {step} via button: not today"), round)
        );
        assert!(edit.contains("Rejected by @bob (product_owner) at"), "{edit}");
        assert!(said.contains("No-go decision recorded") && said.contains("via button: not today"), "{said}");
        assert!(path.ends_with("readiness-approval.json") && doc.contains("\"rejected_by\""), "{path}: {doc}");
        assert_eq!(rejected.next, Next::Finish(Terminal::Rejected { by: "bob".into(), reason: "not today".into() }));
        let aborted = r.aborted(&bob, "no reason given".into(), sim.now);
        assert!(matches!(&aborted.acts[..], [Act::Audit(a)] if a.what == "aborted: no reason given"));
        assert_eq!(
            aborted.next,
            Next::Finish(Terminal::Aborted { by: "bob".into(), reason: "no reason given".into() })
        );
    }
}
