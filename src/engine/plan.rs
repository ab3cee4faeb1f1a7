//! The release plan: everything a release needs to know, frozen into its first event.
//!
//! `/ray deploy` snapshots the protocols of the pipeline and the relevant configuration into a
//! [`Plan`]. Replaying the log therefore gives the same release even if `config/` or `protocols/`
//! changed since, and the engine never reads a file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::ids::Platform;
use crate::protocol::model::Protocol;

/// The rules the engine runs a release under, numbered in the order they were introduced. A
/// plan records the number it was frozen with, and the release keeps those rules to its end as it
/// keeps the rest of its plan: a release begun by an earlier build replays, and goes on after an
/// upgrade, the way that build ran it.
///
/// - 0: plans frozen before rules were numbered.
/// - 1: the rollback rehearsal proves each move by the served version (the candidate before, the
///   previous version after the rollback, the candidate after the roll forward); a gate decides
///   the halt of a step that failed before measuring one of the gate's figures; a failed
///   `rollback` gate rolls back only environments the release changed.
pub const RULES: u32 = 1;

/// Rule 1: the rollback rehearsal proves each move by the served version.
pub const PROVEN_REHEARSAL: u32 = 1;

/// Rule 1: a gate decides the halt of a step that failed before measuring one of its figures.
pub const GATE_DECIDES_LOST_FIGURES: u32 = 1;

/// Rule 1: a failed `rollback` gate rolls back the target once a deploy to it ran, else staging
/// when the protocol deployed there, else it halts (it never rolls back an untouched target).
pub const ROLLBACK_ONLY_CHANGED: u32 = 1;

/// Everything a release runs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The engine's [`RULES`] the release runs under (absent in plans frozen before rules were
    /// numbered, so their stored events are written back byte for byte).
    #[serde(default, skip_serializing_if = "before_rules")]
    pub rules: u32,
    /// Protocols in the order they run (e.g. 10 then 11).
    pub protocols: Vec<Protocol>,
    /// The flow of `pipeline.yaml` they are, e.g. `standard` (absent in plans frozen before flows
    /// could be chosen, so their stored events are written back byte for byte).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// Environments by name (`staging`, `production`).
    pub environments: BTreeMap<String, Environment>,
    /// Jobs that belong to no environment (`security`).
    #[serde(default)]
    pub jobs: BTreeMap<String, JobTemplate>,
    /// The people of the platform the release was started on.
    pub people: People,
    /// Who may waive, retry, roll back and abort; reminder timing; the freeze emoji.
    pub policy: Policy,
    /// Where prerequisite inputs live (already expanded for this version).
    pub inputs_dir: String,
    /// Inputs older than this are `expired`.
    #[serde(default)]
    pub inputs_max_age_days: Option<u64>,
    /// The war-room channel, for the texts.
    pub channel: String,
}

/// One deployment target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// Its name, e.g. `production`.
    pub name: String,
    /// The deploy job, run once per rollout step with `{percent}` set.
    pub deploy: JobTemplate,
    /// The rollback job, restoring the previous version (also used by the rehearsal).
    pub rollback: JobTemplate,
    /// Validation suites (smoke, e2e, regression …) run against the environment.
    #[serde(default)]
    pub validation: Vec<Suite>,
    /// Optional jobs by name (`refresh_data`, `dry_run`).
    #[serde(default)]
    pub jobs: BTreeMap<String, JobTemplate>,
    /// How to probe its health and what counts as healthy.
    pub probe: ProbeSettings,
    /// Recovery time objective in seconds (`recovery_seconds <= rto`).
    pub rto_seconds: f64,
    /// Configuration that must match between staging and production, with each key's severity.
    #[serde(default)]
    pub parity: BTreeMap<String, ParityValue>,
    /// The soak after deploying here.
    pub health_window: HealthWindow,
}

/// A value compared for parity, and how bad a drift of it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParityValue {
    /// The setting as configured for this environment, e.g. `checkout_v2=on`.
    pub value: String,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: String,
}

/// A job as configured: argv with `{version}`, `{env}`, `{strategy}`, `{percent}`, `{release}` and
/// `{output}` placeholders (the driver turns `{artifacts}` into the release's evidence folder).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTemplate {
    /// Program and arguments, never run through a shell, e.g. `["scripts/deploy_backend.sh", "--env", "{env}"]`.
    pub argv: Vec<String>,
    /// Kill the job's process group after this many milliseconds.
    pub timeout_ms: u64,
    /// Extra environment variables (the global `job_env` merged with the job's own), placeholders
    /// expanded in the values.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// A validation suite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suite {
    /// Suite name for chat and evidence, e.g. `smoke`.
    pub name: String,
    /// The job that runs it; exit 0 means passed.
    pub job: JobTemplate,
    /// A failing critical suite is a blocking error.
    pub critical: bool,
    /// The test report its job writes to `{output}`, read by the runtime after the job; `None`
    /// when the job's exit is the suite's only result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportFormat>,
}

/// A test report format the runtime can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    /// JUnit XML: `<testsuites>` or `<testsuite>` holding `<testcase>` elements, each passed or
    /// with a `<failure>`, `<error>` or `<skipped>` child.
    Junit,
}

impl ReportFormat {
    /// Its name in configuration and evidence: `junit`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportFormat::Junit => "junit",
        }
    }
}

/// HTTP probing of an environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeSettings {
    /// Health URL, e.g. `http://127.0.0.1:18090/healthz`.
    pub url: String,
    /// GET requests per probe run, e.g. `20`.
    pub count: u32,
    /// Milliseconds between the starts of two requests.
    pub interval_ms: u64,
    /// Limit for one request, in milliseconds.
    pub timeout_ms: u64,
    /// Minimum share of 2xx answers.
    pub min_success_rate: f64,
    /// Maximum p95 latency in milliseconds.
    pub max_p95_ms: u64,
    /// Response header that carries the serving version (`x-version`).
    #[serde(default)]
    pub version_header: Option<String>,
}

/// The soak period after a production deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthWindow {
    /// How long to keep probing, in milliseconds.
    pub duration_ms: u64,
    /// Milliseconds between probe rounds.
    pub interval_ms: u64,
}

/// Who is who on the platform the release runs on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct People {
    /// The platform the release runs on; decides how mentions look.
    pub platform: Platform,
    /// Everyone with an id on that platform, in `release-approvers.yaml` order.
    pub persons: Vec<Person>,
}

/// One person from `release-approvers.yaml`, as seen on one platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Platform user id (`alice` locally, `U024BE7LH` on Slack, a snowflake on Discord).
    pub id: String,
    /// Display name for evidence (`Alice Example`).
    pub name: String,
    /// Roles, e.g. `release_manager`, `sre_lead`; they decide who may approve, ack and operate.
    pub roles: Vec<String>,
}

impl People {
    /// The person with platform user id `id`; `None` for anyone not in `release-approvers.yaml`.
    pub fn get(&self, id: &str) -> Option<&Person> {
        self.persons.iter().find(|p| p.id == id)
    }

    /// Whether `id` is a listed person holding `role`.
    pub fn has_role(&self, id: &str, role: &str) -> bool {
        self.get(id).is_some_and(|p| p.roles.iter().any(|r| r == role))
    }

    /// Whether `id` holds at least one of `roles` (false for an empty list).
    pub fn has_any_role(&self, id: &str, roles: &[String]) -> bool {
        roles.iter().any(|r| self.has_role(id, r))
    }

    /// Everyone holding any of `roles`, in configuration order, each once.
    pub fn with_roles(&self, roles: &[String]) -> Vec<&Person> {
        self.persons.iter().filter(|p| p.roles.iter().any(|r| roles.contains(r))).collect()
    }

    /// How chat shows a mention of `id`: `<@U123>` on Slack and Discord, `@alice` locally.
    pub fn mention(&self, id: &str) -> String {
        if self.mentions_by_id() { format!("<@{id}>") } else { format!("@{id}") }
    }

    /// How a refusal names the person it is about: their mention on Slack and Discord (the
    /// platform shows their name), the name they typed locally (`alice`), never a bare platform id.
    pub fn named(&self, id: &str) -> String {
        if self.mentions_by_id() { format!("<@{id}>") } else { id.to_string() }
    }

    /// How evidence names a person: their name from `release-approvers.yaml` and their id on the
    /// platform, e.g. `Carol Example (slack U0CAROL003)`; `slack U0MALLORY9` for someone not listed.
    /// Evidence is read outside the chat, where a bare id names nobody.
    pub fn label(&self, id: &str) -> String {
        match self.get(id) {
            Some(p) => format!("{} ({} {id})", p.name, self.platform),
            None => format!("{} {id}", self.platform),
        }
    }

    /// `text` (a chat line) for evidence: every `<@id>` mention becomes [`People::label`]. Local
    /// mentions (`@alice`) already are the person's name and stay.
    pub fn unmention(&self, text: &str) -> String {
        if !self.mentions_by_id() {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find("<@") {
            out.push_str(&rest[..at]);
            let tail = &rest[at + 2..];
            match tail.find('>') {
                Some(end) if end > 0 && tail[..end].chars().all(|c| c.is_ascii_alphanumeric()) => {
                    out.push_str(&self.label(&tail[..end]));
                    rest = &tail[end + 1..];
                }
                _ => {
                    out.push_str("<@");
                    rest = tail;
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// Slack and Discord show `<@id>` as the person's name; a local war room has no such markup.
    fn mentions_by_id(&self) -> bool {
        self.platform.mentions_by_id()
    }
}

/// Who may do what, and timings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Roles that may `/ray waive` a gate.
    pub waiver_roles: Vec<String>,
    /// Roles that may `/ray rollback`, `/ray retry` and `/ray abort`.
    pub operator_roles: Vec<String>,
    /// Remind missing freeze acknowledgers / approvers after this long, then again each period.
    pub remind_after_ms: u64,
    /// Emoji (name) whose reaction acknowledges the freeze.
    pub ack_emoji: String,
}

fn before_rules(rules: &u32) -> bool {
    *rules == 0
}

impl Plan {
    /// Whether the release runs under rule `rule` (see [`RULES`]) or a later one.
    pub fn under(&self, rule: u32) -> bool {
        self.rules >= rule
    }

    /// The configured environment `name`, if any.
    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn people(platform: Platform, carol: &str) -> People {
        People {
            platform,
            persons: vec![Person { id: carol.into(), name: "Carol Example".into(), roles: vec!["sre_lead".into()] }],
        }
    }

    #[test]
    fn chat_names_people_as_their_platform_shows_them() {
        let slack = people(Platform::Slack, "U0CAROL003");
        assert_eq!(slack.mention("U0CAROL003"), "<@U0CAROL003>");
        assert_eq!(slack.named("U0CAROL003"), "<@U0CAROL003>");
        let discord = people(Platform::Discord, "100000000000000003");
        assert_eq!(discord.named("100000000000000003"), "<@100000000000000003>");
        let local = people(Platform::Local, "carol");
        assert_eq!(local.mention("carol"), "@carol");
        assert_eq!(local.named("carol"), "carol");
    }

    #[test]
    fn evidence_names_people_with_their_name_and_platform_id() {
        let slack = people(Platform::Slack, "U0CAROL003");
        assert_eq!(slack.label("U0CAROL003"), "Carol Example (slack U0CAROL003)");
        assert_eq!(slack.label("U0MALLORY9"), "slack U0MALLORY9");
        assert_eq!(people(Platform::Local, "carol").label("carol"), "Carol Example (local carol)");
    }

    #[test]
    fn chat_lines_become_evidence_lines_without_bare_ids() {
        let slack = people(Platform::Slack, "U0CAROL003");
        assert_eq!(
            slack.unmention("on-call: <@U0CAROL003>, <@U0MALLORY9>; <@ not a mention>, <@>"),
            "on-call: Carol Example (slack U0CAROL003), slack U0MALLORY9; <@ not a mention>, <@>"
        );
        let local = people(Platform::Local, "carol");
        assert_eq!(local.unmention("on-call: @carol"), "on-call: @carol");
    }
}
