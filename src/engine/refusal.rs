//! Why raybot says no: one type for every refusal, and the one place that renders it.
//!
//! A refusal is answered to the person alone as one `[RAY ERROR] …` line that says what was
//! wrong and what to type instead; it changes nothing but the audit trail. The engine builds a
//! [`Refusal`] where it decides; [`Refusal::to_chat`] is the only code that writes the tag. The
//! texts are the ones users have always seen; a person is named as their platform shows them
//! (the `who` fields hold `<@U…>` on Slack and Discord, the local name otherwise), never by a
//! bare platform id.

use super::ids::ReleaseId;

/// The line every refusal starts with. Halt posts use it too (the seeds' error template).
pub const ERROR_TAG: &str = "[RAY ERROR]";

/// A refused command, button, reaction or request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The release has ended: only `/ray status` is still answered.
    #[error("release {release} has already ended ({status}). Start a new one with `/ray deploy <version>`.")]
    Ended {
        /// Release id.
        release: ReleaseId,
        /// How it ended, e.g. `released`.
        status: String,
    },
    /// The person is not in `release-approvers.yaml`, and the command records who gave it.
    #[error("{who} is not in config/release-approvers.yaml, so cannot approve releases.")]
    NotListed {
        /// The person, as their platform shows them.
        who: String,
    },
    /// The release is not waiting for this command.
    #[error(transparent)]
    NothingWaiting(#[from] NothingWaiting),
    /// The command's access rule does not let this person give it.
    #[error(transparent)]
    NotAllowed(#[from] NotAllowed),
    /// A duplicate: the rollback asked for is already running.
    #[error("a rollback of {env} is already running.")]
    RollbackRunning {
        /// The environment being rolled back.
        env: String,
    },
    /// A button on an approval request that is no longer open.
    #[error("this approval request is closed; `/ray status` shows what is waiting.")]
    ClosedRequest,
    /// `/ray rollback` before the release changed its target environment.
    #[error("nothing to roll back: {env} has not been touched by {release}. Use `/ray abort <reason>` to stop it.")]
    NothingToRollBack {
        /// Release id.
        release: ReleaseId,
        /// Its target environment.
        env: String,
    },
    /// `/ray abort` after the release changed its target environment.
    #[error("{release} has already changed {env}; use `/ray rollback <reason>` to restore the previous version.")]
    AlreadyChanged {
        /// Release id.
        release: ReleaseId,
        /// Its target environment.
        env: String,
    },
    /// `/ray retry` of a halt with no step left to run (logs recorded before final-evidence halts).
    #[error("there is no step left to run again here; `/ray rollback` or `/ray abort` ends the release.")]
    NoStepLeft,
    /// An argument of the command does not fit.
    #[error(transparent)]
    BadArgument(#[from] BadArgument),
    /// What the runtime around the engine refuses: the store, the environment lock, the war room.
    #[error(transparent)]
    Runtime(#[from] Runtime),
    /// Input an adapter could not read, in its reader's own words (a `/ray` line that does not
    /// parse, a payload without a user, a `raybot chat` usage line).
    #[error("{0}")]
    Said(String),
}

/// The runtime's refusals. Each says that nothing was changed, or what holds the request up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Runtime {
    /// The store did not answer or did not take the write.
    #[error("state store unavailable — nothing was changed, try again")]
    StoreDown,
    /// Another replica recorded an event of the release first (and deciding again was not possible).
    #[error("the release changed while this was handled; nothing was changed, try again")]
    Changed,
    /// `/ray deploy` by someone not in `release-approvers.yaml`.
    #[error("{who} is not in config/release-approvers.yaml; only listed people may start a release.")]
    MayNotStart {
        /// The person, as their platform shows them.
        who: String,
    },
    /// `/ray deploy` while another release holds the environment.
    #[error(
        "{env} is locked by release {holder} — one release per environment. Wait for it to finish, or `/ray abort` / `/ray rollback` it."
    )]
    Locked {
        /// The environment.
        env: String,
        /// The release holding it: id, version, who started it, what it is doing.
        holder: String,
    },
    /// The configuration cannot plan the release (an unknown environment, a bad protocol list).
    #[error("{0}")]
    Unplannable(String),
    /// The plan has no protocol to run.
    #[error("could not start the release (empty pipeline)")]
    EmptyPipeline,
    /// `/ray status <version>` of a version no release of which is known.
    #[error("no release of {version} is known here; `/ray history` lists releases.")]
    UnknownVersion {
        /// The version asked about.
        version: String,
    },
    /// A release command no release is there for.
    #[error("{what}. `/ray status` shows what is running; `/ray deploy <version>` starts a release.")]
    NoRelease {
        /// What was missing, e.g. `no release is waiting for approval`.
        what: String,
    },
    /// A click on a message no running release posted.
    #[error("that button belongs to no running release; `/ray status` shows what is running.")]
    ForeignButton,
    /// The release's environment lock was taken by another release after its lease lapsed.
    #[error(
        "release {release} lost the {env} lock (its lease lapsed and another release took it); this raybot stops acting on {release}. `/ray status` shows what holds {env} now."
    )]
    LostLock {
        /// Release id.
        release: ReleaseId,
        /// Its environment.
        env: String,
    },
    /// The process stopped with the delivery unanswered.
    #[error("raybot stopped before it could answer; `/ray status` shows whether it counted.")]
    Stopped,
    /// A delivery arrived before the driver was up.
    #[error("raybot is starting; try again in a moment.")]
    Starting,
}

/// What a command needed the release to be waiting for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NothingWaiting {
    /// `/ray ack` while no freeze waits for acknowledgements.
    #[error("no change freeze is waiting for acknowledgement on release {release} (it is {status}).")]
    Freeze {
        /// Release id.
        release: ReleaseId,
        /// What the release is doing.
        status: String,
    },
    /// `/ray approve` (or Approve) while no go/no-go round is open.
    #[error("no approval is waiting for release {release} (it is {status}). `/ray status` shows what it is doing.")]
    Approval {
        /// Release id.
        release: ReleaseId,
        /// What the release is doing.
        status: String,
    },
    /// `/ray reject` (or Reject) while no go/no-go round is open.
    #[error("no approval is waiting for release {release}; to stop it use `/ray abort <reason>`.")]
    Rejection {
        /// Release id.
        release: ReleaseId,
    },
    /// `/ray waive` while the release is not halted.
    #[error("release {release} is not halted at a gate (it is {status}).")]
    Gate {
        /// Release id.
        release: ReleaseId,
        /// What the release is doing.
        status: String,
    },
    /// `/ray retry` while the release is not halted.
    #[error("release {release} is not halted (it is {status}); nothing to retry.")]
    Halt {
        /// Release id.
        release: ReleaseId,
        /// What the release is doing.
        status: String,
    },
}

/// Who a command's access rule lets in, and that this person is not among them. `who` is the
/// person as their platform shows them; `needs` the roles (comma-separated) that would do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAllowed {
    /// A freeze reaction by someone not on the freeze's list.
    #[error("{who} is not on the change-freeze list of {release}; the reaction does not count.")]
    Reaction {
        /// The person.
        who: String,
        /// Release id.
        release: ReleaseId,
    },
    /// `/ray ack` by someone not on the freeze's list.
    #[error("{who} is not on the change-freeze list of {release}; it names: {names}.")]
    Ack {
        /// The person.
        who: String,
        /// Release id.
        release: ReleaseId,
        /// Everyone on the list, mentioned.
        names: String,
    },
    /// An approval by someone without a role the round requires.
    #[error("{who} ({held}) may not approve this step; it needs: {needs}.")]
    Approve {
        /// The person.
        who: String,
        /// The roles they hold.
        held: String,
        /// The roles the round requires.
        needs: String,
    },
    /// A rejection by someone without a role the round requires.
    #[error("{who} may not reject this step; it needs one of: {needs}.")]
    Reject {
        /// The person.
        who: String,
        /// The roles the round requires.
        needs: String,
    },
    /// A waiver by someone without a waiver role.
    #[error("{who} may not waive gates; waivers need one of: {needs}.")]
    Waive {
        /// The person.
        who: String,
        /// The waiver roles.
        needs: String,
    },
    /// `/ray retry` by someone who is not an operator.
    #[error("{who} may not retry; it needs one of: {needs}.")]
    Retry {
        /// The person.
        who: String,
        /// The operator roles.
        needs: String,
    },
    /// `/ray rollback` by someone who is not an operator.
    #[error("{who} may not roll back; it needs one of: {needs}.")]
    Rollback {
        /// The person.
        who: String,
        /// The operator roles.
        needs: String,
    },
    /// `/ray abort` by someone who is neither an operator nor the initiator.
    #[error("{who} may not abort {release}; it needs one of: {needs} or the person who started it.")]
    Abort {
        /// The person.
        who: String,
        /// Release id.
        release: ReleaseId,
        /// The operator roles.
        needs: String,
    },
    /// `/ray status` by someone it is not for (no rule says so today).
    #[error("{who} may not ask for the status of {release}.")]
    Status {
        /// The person.
        who: String,
        /// Release id.
        release: ReleaseId,
    },
}

/// A command's argument that does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadArgument {
    /// `/ray waive` names no gate of the current protocol.
    #[error("unknown gate `{gate}` in Protocol {protocol}; gates: {gates}.")]
    UnknownGate {
        /// What was typed.
        gate: String,
        /// The current protocol's id.
        protocol: String,
        /// Its gate ids, comma-separated.
        gates: String,
    },
    /// `/ray waive` names a gate other than the one the release is halted at.
    #[error("the release is halted at {step}, not at gate `{gate}`.")]
    OtherGate {
        /// Where the release is halted.
        step: String,
        /// The gate named.
        gate: String,
    },
    /// `/ray waive` names a gate that cannot be waived.
    #[error("gate `{gate}` ({name}) cannot be waived.")]
    NotWaivable {
        /// Gate id.
        gate: String,
        /// Gate name.
        name: String,
    },
    /// `/ray waive` with fewer than three words of justification.
    #[error("a waiver needs a justification of at least three words: `/ray waive <gate> <justification>`.")]
    ShortJustification,
}

impl Refusal {
    /// The answer to the person: `[RAY ERROR] ` and the refusal. The only place that writes it.
    pub fn to_chat(&self) -> String {
        format!("{ERROR_TAG} {self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_renders_as_one_ray_error_line() {
        let refusals: Vec<Refusal> = vec![
            Refusal::Ended { release: "r1".into(), status: "released".into() },
            Refusal::NotListed { who: "<@U0MALLORY9>".into() },
            NothingWaiting::Rejection { release: "r1".into() }.into(),
            NotAllowed::Retry { who: "<@U0BOB00002>".into(), needs: "release_manager".into() }.into(),
            Refusal::RollbackRunning { env: "production".into() },
            Refusal::ClosedRequest,
            Refusal::NothingToRollBack { release: "r1".into(), env: "production".into() },
            Refusal::AlreadyChanged { release: "r1".into(), env: "production".into() },
            Refusal::NoStepLeft,
            BadArgument::ShortJustification.into(),
            Refusal::Said("unknown command `dploy`".into()),
            Runtime::StoreDown.into(),
            Runtime::Changed.into(),
            Runtime::MayNotStart { who: "<@U0MALLORY9>".into() }.into(),
            Runtime::Locked { env: "production".into(), holder: "r1 (v1.2 by <@U0ALICE001>, waiting)".into() }.into(),
            Runtime::Unplannable("unknown environment `prod`".into()).into(),
            Runtime::EmptyPipeline.into(),
            Runtime::NoRelease { what: "no release is waiting for approval".into() }.into(),
            Runtime::UnknownVersion { version: "v9".into() }.into(),
            Runtime::ForeignButton.into(),
            Runtime::LostLock { release: "r1".into(), env: "production".into() }.into(),
            Runtime::Stopped.into(),
            Runtime::Starting.into(),
        ];
        for r in &refusals {
            let line = r.to_chat();
            assert!(line.starts_with("[RAY ERROR] ") && !line.contains('\n'), "{line}");
            assert_eq!(line.matches(ERROR_TAG).count(), 1, "{line}");
        }
        assert_eq!(
            refusals[1].to_chat(),
            "[RAY ERROR] <@U0MALLORY9> is not in config/release-approvers.yaml, so cannot approve releases."
        );
        assert_eq!(refusals[3].to_chat(), "[RAY ERROR] <@U0BOB00002> may not retry; it needs one of: release_manager.");
        assert_eq!(refusals[10].to_chat(), "[RAY ERROR] unknown command `dploy`");
        // The runtime's own: the texts people have always seen, a person named as shown.
        assert_eq!(refusals[11].to_chat(), "[RAY ERROR] state store unavailable — nothing was changed, try again");
        assert_eq!(
            refusals[13].to_chat(),
            "[RAY ERROR] <@U0MALLORY9> is not in config/release-approvers.yaml; only listed people may start a release."
        );
        assert!(
            refusals[14].to_chat().starts_with("[RAY ERROR] production is locked by release r1 (v1.2 by <@U0ALICE001>")
        );
    }

    #[test]
    fn the_runtime_helper_renders_through_the_same_function() {
        assert_eq!(crate::engine::ray_error("production is locked"), "[RAY ERROR] production is locked");
    }
}
