//! The release engine: pure, deterministic, no I/O.
//!
//! A release is the fold of its event log. [`Release::handle`] takes the state, one [`Event`] and
//! the current time, changes the state and returns the [`Effect`]s the driver must perform (post a
//! message, run a job, probe a URL, write evidence, arm a timer). Job results, probe figures and
//! timer ticks come back as events. No tokio, no clock, no filesystem: tests drive it directly.

pub mod expr;
pub mod io;
pub mod plan;
#[cfg(test)]
mod props;
mod release;
mod render;
#[doc(hidden)]
pub mod testkit;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use io::{BundleReport, FileDigest, InputStatus, JobOutcome, ProbeReport};
pub use plan::Plan;
pub use release::{Activity, Approval, GateVerdict, JobRecord, Release, Terminal, Verdict, valid_version};

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

    pub fn plus_ms(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }
}

/// A chat user on one platform.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserRef {
    /// `local`, `slack` or `discord`.
    pub platform: String,
    /// The platform's user id.
    pub id: String,
}

impl UserRef {
    pub fn new(platform: impl Into<String>, id: impl Into<String>) -> Self {
        UserRef { platform: platform.into(), id: id.into() }
    }
}

/// Identifies a job run (`<release>#<n>`); results for a job the release no longer waits for are
/// recorded and otherwise ignored.
pub type JobId = String;

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

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Bluegreen => "bluegreen",
            Strategy::Canary => "canary",
            Strategy::Rolling => "rolling",
        }
    }

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
    Approve,
    Reject,
}

/// A chat command aimed at a running release (`/ray deploy`, `/ray history` … are handled by the
/// driver, which owns locks and the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseCommand {
    Ack,
    Approve { comment: Option<String> },
    Reject { reason: String },
    Waive { gate: String, justification: String },
    Retry,
    Rollback { reason: Option<String> },
    Abort { reason: Option<String> },
    Status,
}

/// Everything that can happen to a release. The log stores these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// `/ray deploy` accepted: the first event of every release.
    Started {
        release: String,
        version: String,
        env: String,
        strategy: Strategy,
        by: UserRef,
        plan: Box<Plan>,
    },
    /// A chat command from a person.
    Command {
        by: UserRef,
        command: ReleaseCommand,
    },
    /// A reaction added to or removed from a message.
    Reaction {
        by: UserRef,
        message: String,
        emoji: String,
        added: bool,
    },
    /// A button click on a message.
    Click {
        by: UserRef,
        message: String,
        button: Button,
    },
    /// The chat platform assigned `message` to the post raybot made under `key`.
    Posted {
        key: String,
        message: String,
    },
    JobFinished {
        job: JobId,
        outcome: JobOutcome,
    },
    ProbeFinished {
        probe: String,
        report: ProbeReport,
    },
    InputsChecked {
        check: String,
        results: Vec<InputStatus>,
    },
    BundleWritten {
        bundle: String,
        report: BundleReport,
    },
    /// Writing an evidence file failed.
    EvidenceFailed {
        file: String,
        error: String,
    },
    /// A timer armed by [`Effect::ArmTimer`] fired.
    Tick {
        timer: String,
    },
    /// A raybot process took the release over after a restart (or from a replica that stopped).
    Resumed {
        replica: String,
        previous: Option<String>,
    },
}

/// How a post asks for interaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ask {
    Nothing,
    /// People react with this emoji (name, e.g. `white_check_mark`); raybot adds it first.
    Reaction {
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
        key: Option<String>,
        text: String,
        ask: Ask,
    },
    /// Replace the text of an earlier keyed post (and remove its buttons).
    Update {
        key: String,
        text: String,
    },
    /// Answer one person only (ephemeral on Slack and Discord).
    Reply {
        to: UserRef,
        text: String,
    },
    RunJob(JobSpec),
    Probe(ProbeSpec),
    /// Check prerequisite files.
    CheckInputs {
        check: String,
        items: Vec<InputSpec>,
    },
    /// Write an evidence file (path relative to the release's artifacts directory).
    WriteEvidence {
        path: String,
        contents: String,
    },
    /// Zip evidence files, with an optional SHA-256 manifest written first.
    Bundle {
        bundle: String,
        zip: String,
        files: Vec<String>,
        manifest: Option<String>,
        protocol: String,
    },
    ArmTimer {
        timer: String,
        at: Timestamp,
    },
    /// The release ended: free the environment lock.
    Finished {
        outcome: Terminal,
    },
}

/// A job to run. `argv` is already expanded and never passes through a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    pub id: JobId,
    /// What it is for, e.g. `deploy production 50%`.
    pub purpose: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub timeout_ms: u64,
    /// Log file relative to the release's artifacts directory.
    pub log: String,
}

/// An HTTP probe to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub id: String,
    pub url: String,
    pub count: u32,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub version_header: Option<String>,
}

/// A prerequisite file to check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputSpec {
    pub name: String,
    /// `inputs`, `repository` or `artifacts`.
    pub location: String,
    pub required: bool,
    pub max_age_days: Option<u64>,
}

/// The one line every refusal starts with.
pub fn ray_error(text: impl std::fmt::Display) -> String {
    format!("[RAY ERROR] {text}")
}
