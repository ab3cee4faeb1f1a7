//! The release engine: pure, deterministic, no I/O.
//!
//! A release is the fold of its event log. [`Release::handle`] takes the state, one [`Event`] and
//! the current time, changes the state and returns the [`Effect`]s the driver must perform (post a
//! message, run a job, probe a URL, write evidence, arm a timer). Job results, probe figures and
//! timer ticks come back as events. No tokio, no clock, no filesystem: tests drive it directly.
//!
//! Every refusal is a [`Refusal`], rendered as `[RAY ERROR] …` by [`Refusal::to_chat`] alone
//! (`refusal`); the ids the engine makes and reads back are types (`ids`: [`ReleaseId`], [`JobId`],
//! [`ProbeId`], [`TimerId`], [`PostKey`], [`Platform`]) that serialise as the strings stored logs
//! hold. People are named as their platform shows them: [`plan::People::named`] and `mention` in
//! chat, [`plan::People::label`] (name and platform id) in evidence.

pub mod ids;
pub mod plan;
#[cfg(test)]
mod props;
pub mod refusal;
mod release;
pub mod reports;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use ids::{JobId, Platform, PostKey, ProbeId, ReleaseId, TimerId};
pub use plan::Plan;
pub use refusal::Refusal;
pub use release::{
    Activity, Approval, ApprovalRound, AuditEntry, Cursor, Freeze, GateVerdict, Halt, JobRecord, ProbeRecord, Release,
    Resume, RollbackRecord, Task, Terminal, Verdict, valid_version,
};
pub use reports::{
    BundleReport, FailedCase, FileDigest, InputStatus, JobOutcome, ProbeReport, ReportRead, TestCounts, TestReport,
};

/// Milliseconds since the Unix epoch. The engine never reads a clock: time comes in with events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// RFC 3339 UTC text, e.g. `2026-11-21T23:34:20.123Z`.
    pub fn rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => {
                let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
                format!(
                    "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
                    t.hour(),
                    t.minute(),
                    t.second(),
                    t.millisecond()
                )
            }
            Err(_) => format!("@{}ms", self.0),
        }
    }

    /// The time `ms` milliseconds later (saturating), e.g. when a reminder or soak round is due.
    pub fn plus_ms(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }
}

/// A chat user on one platform.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserRef {
    /// The platform; stored as `local`, `slack` or `discord`.
    pub platform: Platform,
    /// The platform's user id.
    pub id: String,
}

impl UserRef {
    /// A user of `platform`, e.g. `UserRef::new(Platform::Local, "alice")`.
    pub fn new(platform: Platform, id: impl Into<String>) -> Self {
        UserRef { platform, id: id.into() }
    }
}

/// Rollout strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Start the new version beside the old, then switch all traffic at once.
    #[default]
    Bluegreen,
    /// 10% → 50% → 100% with probes between the steps.
    Canary,
    /// 25% → 50% → 75% → 100%.
    Rolling,
}

impl Strategy {
    /// Traffic share after each step. Blue/green's first step starts the idle colour (0%).
    pub fn steps(self) -> &'static [u8] {
        match self {
            Strategy::Bluegreen => &[0, 100],
            Strategy::Canary => &[10, 50, 100],
            Strategy::Rolling => &[25, 50, 75, 100],
        }
    }

    /// The canonical name, as in `--strategy`, job argv (`{strategy}`) and evidence.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Bluegreen => "bluegreen",
            Strategy::Canary => "canary",
            Strategy::Rolling => "rolling",
        }
    }

    /// Reads a `--strategy` value; `blue-green` and `blue/green` are accepted for blue/green.
    pub fn parse(s: &str) -> Option<Strategy> {
        match s {
            "bluegreen" | "blue-green" | "blue/green" => Some(Strategy::Bluegreen),
            "canary" => Some(Strategy::Canary),
            "rolling" => Some(Strategy::Rolling),
            _ => None,
        }
    }
}

/// Buttons on the approval request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Button {
    /// Counts as `/ray approve` without a comment.
    Approve,
    /// Counts as `/ray reject` and stops the release.
    Reject,
}

/// A chat command aimed at a running release (`/ray deploy`, `/ray history` … are handled by the
/// driver, which owns locks and the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseCommand {
    /// `/ray ack`: acknowledge the change freeze (same as reacting on the freeze message).
    Ack,
    /// `/ray approve [comment]`: approve the open go/no-go round.
    Approve {
        /// Free text kept with the signature in the approval evidence.
        comment: Option<String>,
    },
    /// `/ray reject <reason>`: reject the open go/no-go round; the release ends `Rejected`.
    Reject {
        /// Why, as posted in chat and recorded in the evidence.
        reason: String,
    },
    /// `/ray waive <gate> <justification>`: pass the failed gate the release is halted at.
    Waive {
        /// Gate id (or number) in the current protocol, lowercased, e.g. `intake`.
        gate: String,
        /// At least three words; recorded in the gate verdict and the report.
        justification: String,
    },
    /// `/ray retry`: run the halted step, phase or rollback again.
    Retry,
    /// `/ray rollback [reason]`: restore the previous version of the target environment.
    Rollback {
        /// Why; `requested` when omitted.
        reason: Option<String>,
    },
    /// `/ray abort [reason]`: end a release that has not touched the target environment yet.
    Abort {
        /// Why; `no reason given` when omitted.
        reason: Option<String>,
    },
    /// `/ray status`: answered privately; the only command a finished release still accepts.
    Status,
}

/// Everything that can happen to a release. The log stores these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// `/ray deploy` accepted: the first event of every release.
    Started {
        /// Release id, `<version>-<env>-<UTC time>-<hex>`, e.g. `v1.2-production-20261121T233420Z-747a`.
        release: ReleaseId,
        /// Version being released, e.g. `v1.2`.
        version: String,
        /// Target environment, e.g. `production`.
        env: String,
        /// Rollout strategy for the target environment.
        strategy: Strategy,
        /// Who typed `/ray deploy`; their approval alone never passes a go/no-go round.
        by: UserRef,
        /// Protocols and configuration frozen for this release, so replays ignore later edits.
        plan: Box<Plan>,
    },
    /// A chat command from a person.
    Command {
        /// Who typed it; roles come from the plan's people.
        by: UserRef,
        /// What was asked.
        command: ReleaseCommand,
    },
    /// A reaction added to or removed from a message.
    Reaction {
        /// Who reacted.
        by: UserRef,
        /// Platform message id the reaction is on; only the freeze post counts.
        message: String,
        /// Emoji name or character (`white_check_mark` or `✅`, both accepted).
        emoji: String,
        /// False when the reaction was removed, which withdraws a freeze acknowledgement.
        added: bool,
    },
    /// A button click on a message.
    Click {
        /// Who clicked.
        by: UserRef,
        /// Platform message id of the approval request; clicks on closed rounds are refused.
        message: String,
        /// Which button.
        button: Button,
    },
    /// The chat platform assigned `message` to the post raybot made under `key`.
    Posted {
        /// The key of [`Effect::Post`], e.g. `freeze` or `approval:0`.
        key: PostKey,
        /// The platform's message id.
        message: String,
    },
    /// A job started by [`Effect::RunJob`] ended.
    JobFinished {
        /// The id from [`JobSpec::id`]; results for a job the release no longer waits for are
        /// recorded and otherwise ignored.
        job: JobId,
        /// Exit code, duration and output tail.
        outcome: JobOutcome,
    },
    /// A probe started by [`Effect::Probe`] ended.
    ProbeFinished {
        /// The id from [`ProbeSpec::id`], e.g. `v1.2-production-…#probe7`.
        probe: ProbeId,
        /// Success rate, latencies and serving versions.
        report: ProbeReport,
    },
    /// The prerequisite files asked for by [`Effect::CheckInputs`] were looked up.
    InputsChecked {
        /// The check id from the effect.
        check: String,
        /// One status per requested artifact, in request order.
        results: Vec<InputStatus>,
    },
    /// A zip asked for by [`Effect::Bundle`] was written.
    BundleWritten {
        /// The bundle id from the effect.
        bundle: String,
        /// Zip path and digest, files included and files missing.
        report: BundleReport,
    },
    /// Writing an evidence file failed.
    EvidenceFailed {
        /// Path relative to the release's artifacts directory.
        file: String,
        /// The I/O error text; the release halts with it.
        error: String,
    },
    /// A timer armed by [`Effect::ArmTimer`] fired.
    Tick {
        /// The timer id; ticks of timers the release no longer waits for are ignored.
        timer: TimerId,
    },
    /// A raybot process took the release over after a restart (or from a replica that stopped).
    Resumed {
        /// The process taking over (`RAYBOT_REPLICA`, `FLY_MACHINE_ID` or `raybot-<pid>`).
        replica: String,
        /// The process that recorded the log's last event, named in "job outcome unknown" halts.
        previous: Option<String>,
        /// Jobs go through the shared queue (Redis): a running job is not lost with the process
        /// that queued it. The job the release waits for is queued again (a no-op when the queue
        /// has it) instead of being reported unknown; [`Event::JobLost`] reports jobs whose
        /// replica stopped.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        jobs_queued: bool,
    },
    /// The replica running a queued job stopped before reporting it: its outcome is unknown and
    /// the job is never run again by itself.
    JobLost {
        /// The id from [`JobSpec::id`].
        job: JobId,
        /// The raybot process that had taken the job.
        replica: String,
    },
}

/// How a post asks for interaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ask {
    /// A plain message.
    Nothing,
    /// People react with this emoji (name, e.g. `white_check_mark`); raybot adds it first.
    Reaction {
        /// The configured `ack_emoji`.
        emoji: String,
    },
    /// Approve / Reject buttons.
    Buttons,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Post in the war room. When `key` is set the driver reports the message id with
    /// [`Event::Posted`] so that reactions and clicks on it can be matched.
    Post {
        /// Name for later updates and for matching reactions/clicks, e.g. `freeze`, `approval:0`.
        key: Option<PostKey>,
        /// The message, already rendered.
        text: String,
        /// Reaction or buttons to offer.
        ask: Ask,
    },
    /// Replace the text of an earlier keyed post (and remove its buttons).
    Update {
        /// Key of the earlier post; the latest message posted under it is edited.
        key: PostKey,
        /// The new text.
        text: String,
    },
    /// Answer one person only (ephemeral on Slack and Discord).
    Reply {
        /// The person who asked.
        to: UserRef,
        /// The answer; refusals start with `[RAY ERROR]`.
        text: String,
    },
    /// Start a job in the background; its result comes back as [`Event::JobFinished`].
    RunJob(JobSpec),
    /// Start an HTTP probe; its figures come back as [`Event::ProbeFinished`].
    Probe(ProbeSpec),
    /// Check prerequisite files.
    CheckInputs {
        /// Id echoed back in [`Event::InputsChecked`].
        check: String,
        /// The protocol's prerequisite artifacts.
        items: Vec<InputSpec>,
    },
    /// Write an evidence file (path relative to the release's artifacts directory).
    WriteEvidence {
        /// e.g. `pre-deployment/staging-parity-report.json`.
        path: String,
        /// The whole file; it replaces any earlier version atomically.
        contents: String,
    },
    /// Zip evidence files, with an optional SHA-256 manifest written first.
    Bundle {
        /// Id echoed back in [`Event::BundleWritten`].
        bundle: String,
        /// Zip path relative to the artifacts directory, e.g. `pre-deployment/PRE-DEPLOYMENT-PACKAGE.zip`.
        zip: String,
        /// Files to include, relative to the artifacts directory; absent ones are reported missing.
        files: Vec<String>,
        /// Path of the SHA-256 manifest to write and include, if any.
        manifest: Option<String>,
        /// Protocol id, recorded in the manifest.
        protocol: String,
    },
    /// Deliver [`Event::Tick`] for `timer` at `at` (reminders, health-window rounds).
    ArmTimer {
        /// Timer id, e.g. `v1.2-production-…#timer9`.
        timer: TimerId,
        /// When to fire; a time in the past fires at once.
        at: Timestamp,
    },
    /// The release ended: free the environment lock.
    Finished {
        /// How the release ended.
        outcome: Terminal,
    },
}

/// A job to run. `argv` is already expanded and never passes through a shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Id the result comes back with, e.g. `v1.2-production-20261121T233420Z#job4`; the runtime
    /// keys its job queue by it.
    pub id: JobId,
    /// What it is for, e.g. `deploy production 50%`.
    pub purpose: String,
    /// Program and arguments; the driver still replaces `{artifacts}` with the release's folder.
    pub argv: Vec<String>,
    /// Extra environment: the configured `job_env` and job `env`, plus `RAYBOT_RELEASE`,
    /// `RAYBOT_VERSION`, `RAYBOT_ENV`, `RAYBOT_STRATEGY` and `RAYBOT_PERCENT`.
    pub env: Vec<(String, String)>,
    /// Kill the job's process group after this many milliseconds.
    pub timeout_ms: u64,
    /// Log file relative to the release's artifacts directory.
    pub log: String,
    /// The test report the job writes, which the runtime reads once it ends; `None` for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportSpec>,
}

/// A test report a job is asked to write (its `{output}`), for the runtime to read after the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportSpec {
    /// How to read it.
    pub format: plan::ReportFormat,
    /// Where, relative to the release's artifacts directory.
    pub path: String,
}

/// An HTTP probe to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// Id the report comes back with, e.g. `v1.2-production-…#probe7`.
    pub id: ProbeId,
    /// Health URL of the environment, e.g. `http://127.0.0.1:18090/healthz`.
    pub url: String,
    /// Number of sequential GET requests.
    pub count: u32,
    /// Milliseconds between the starts of two requests.
    pub interval_ms: u64,
    /// Limit for one request, in milliseconds.
    pub timeout_ms: u64,
    /// Response header that names the serving version, e.g. `x-version`.
    pub version_header: Option<String>,
}

/// A prerequisite file to check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputSpec {
    /// File name or glob as the protocol lists it, e.g. `QUALITY-AUDIT-PACKAGE.zip`, `scripts/deploy_*.sh`.
    pub name: String,
    /// `inputs`, `repository` or `artifacts`.
    pub location: String,
    /// A missing optional artifact does not lower the completeness score.
    pub required: bool,
    /// Older files count as `expired`; `None` accepts any age.
    pub max_age_days: Option<u64>,
    /// Fields the artifact must carry.
    pub expects: Vec<crate::protocol::model::ContentCheck>,
}

/// The one line every refusal starts with, for input an adapter could not read (in its reader's
/// own words): rendered by [`Refusal::to_chat`] like every other refusal.
pub fn ray_error(text: impl std::fmt::Display) -> String {
    Refusal::Said(text.to_string()).to_chat()
}

/// `refusal` as the one `[RAY ERROR] …` line a person is answered with.
pub fn refuse(refusal: impl Into<Refusal>) -> String {
    refusal.into().to_chat()
}
