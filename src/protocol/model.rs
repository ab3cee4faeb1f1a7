//! The protocol document model: what `protocols/*.yaml` hold.
//!
//! These are plain serde types. The seeds' wording is kept verbatim in the text fields; the fields the
//! engine acts on (`run`, `halt`, `pass_threshold`, `on_failure`, `approval_roles`, …) are the seeds'
//! rules written as data.

use serde::{Deserialize, Serialize};

/// One release protocol (a transcription of one seed document).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Protocol {
    /// Protocol number as a string, e.g. `"10"`.
    pub id: String,
    /// Title as the seed writes it, e.g. `PRE-DEPLOYMENT VALIDATION & STAGING READINESS`.
    pub title: String,
    /// Compliance tag from the heading, e.g. `RELEASE COMPLIANT`.
    #[serde(default)]
    pub compliance: Option<String>,
    /// Seed file this was transcribed from.
    pub source: String,
    /// Folder under the release's artifacts directory, e.g. `pre-deployment`.
    pub artifacts_dir: String,
    #[serde(default)]
    pub prerequisites: Prerequisites,
    pub role: Role,
    pub phases: Vec<Phase>,
    #[serde(default)]
    pub integration: Integration,
    #[serde(default)]
    pub gates: Vec<Gate>,
    #[serde(default)]
    pub communication: Communication,
    #[serde(default)]
    pub automation: Automation,
    #[serde(default)]
    pub handoff: Option<Handoff>,
    #[serde(default)]
    pub evidence_summary: Vec<EvidenceSummaryRow>,
    #[serde(default)]
    pub quality_metrics: Vec<QualityMetric>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prerequisites {
    #[serde(default)]
    pub artifacts: Vec<PrerequisiteArtifact>,
    #[serde(default)]
    pub approvals: Vec<String>,
    #[serde(default)]
    pub system_states: Vec<String>,
}

/// A required input artifact, checked by the `intake` / `readiness` steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrerequisiteArtifact {
    /// File name or glob as the seed writes it (`QUALITY-AUDIT-PACKAGE.zip`, `scripts/deploy_*.sh`).
    pub name: String,
    /// Where it comes from (`Protocol 19`, `Release Planning`, `repository`).
    pub from: String,
    /// The seed's explanation after the dash.
    pub purpose: String,
    /// `false` for artifacts the seed marks "(if available)".
    #[serde(default = "yes")]
    pub required: bool,
    /// Where raybot looks for it: `inputs` (the release inputs folder), `repository` (the working
    /// directory) or `artifacts` (this release's own evidence, e.g. written by an earlier protocol).
    #[serde(default)]
    pub location: ArtifactLocation,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactLocation {
    #[default]
    Inputs,
    Repository,
    Artifacts,
}

/// "AI ROLE AND MISSION".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub persona: String,
    pub mission: String,
    /// The `🚫 [CRITICAL]` line.
    #[serde(default)]
    pub guardrail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// 1-based phase number (`STEP n` in the seed).
    pub number: u32,
    pub title: String,
    /// Announcement when the phase starts (the first `[MUST]` step's communication in P10/P11).
    #[serde(default)]
    pub start_announcement: Option<String>,
    /// Announcement when the phase completes, if the seed has one.
    #[serde(default)]
    pub complete_announcement: Option<String>,
    pub steps: Vec<Step>,
    /// Id of the gate evaluated when the phase ends.
    #[serde(default)]
    pub gate: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Level {
    #[serde(rename = "MUST")]
    Must,
    #[serde(rename = "GUIDELINE")]
    Guideline,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Stable id, kebab-case, unique within the protocol.
    pub id: String,
    pub level: Level,
    pub title: String,
    /// The seed's `Action:` text.
    pub action: String,
    /// The seed's `Communication:` text, verbatim (without the surrounding quotes).
    #[serde(default)]
    pub communication: Option<String>,
    /// The seed's `Halt condition:` text.
    #[serde(default)]
    pub halt_condition: Option<String>,
    /// What raybot does when the halt condition holds.
    #[serde(default)]
    pub halt: Option<HaltKind>,
    /// Evidence file names (relative to the protocol's artifacts dir).
    #[serde(default)]
    pub evidence: Vec<String>,
    /// The seed's `Example:` block, verbatim.
    #[serde(default)]
    pub example: Option<String>,
    /// What raybot executes for this step.
    pub run: StepRun,
}

/// How a step's halt condition stops the release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HaltKind {
    /// "Stop if …": the release halts and awaits `/ray retry`, `/ray waive` or `/ray abort`.
    Stop,
    /// "Pause if/until …": the release waits (for people, or for `/ray retry`).
    Pause,
    /// "Trigger/Initiate rollback if …": production is rolled back automatically.
    Rollback,
    /// "Escalate …": the release halts and the escalation target is named.
    Escalate,
}

/// The engine's vocabulary of executable steps. Each protocol step names one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StepRun {
    /// Check the protocol's prerequisite artifacts; metric `completeness_score` (0..1).
    Intake,
    /// Compare staging vs production parity keys; metric `drift_severity` (0 none .. 4 critical).
    Parity,
    /// Run an optional job of the environment (`job` names it in `raybot.toml`); skipped if absent.
    Job { job: String, env: String },
    /// Deploy to an environment. Staging runs one step; production follows the rollout strategy
    /// with probes between steps and milestone posts. Metric `blocking_errors`.
    Deploy { env: String },
    /// Run the environment's validation suites and probes. Metrics `coverage`,
    /// `validation_success_rate`, `blocking_errors` / `blocking_incidents`.
    Validate { env: String },
    /// Run the environment's rollback job and time recovery; metric `recovery_seconds`.
    RollbackRehearsal { env: String },
    /// Run the security job; metric `blocking_findings`.
    Security,
    /// Write the observability baseline from the latest probe figures.
    Baseline { env: String },
    /// Zip the listed evidence into `zip`, with a SHA-256 manifest; metric `manifest_completeness`.
    Package { zip: String, manifest: Option<String>, files: Vec<String> },
    /// Collect go/no-go approvals; metric `approvals_recorded`.
    Approval { roles: Vec<String>, prompt: String },
    /// Change freeze acknowledgement by everyone in `roles`; metric `freeze_ack_ratio`.
    Freeze { roles: Vec<String> },
    /// Write a document computed from the release (checklists, manifests, retrospective inputs).
    Document { template: DocumentTemplate },
    /// Probe the environment repeatedly for the soak period; metric `slo_breaches`.
    HealthWindow { env: String },
    /// Compile `DEPLOYMENT-REPORT.md` and zip everything; metric `report_completeness`.
    Report { zip: String },
    /// Post the step's communication only (guidance that needs no automation here).
    Note,
}

/// Documents raybot can compute from a release's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentTemplate {
    DeploymentChecklist,
    ReleaseManifest,
    DeploymentWindow,
    RetrospectiveInputs,
    RunbookCoverage,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Integration {
    #[serde(default)]
    pub inputs: Vec<String>,
    #[serde(default)]
    pub outputs: Vec<String>,
    #[serde(default)]
    pub storage: Vec<String>,
}

/// A quality gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    /// Stable id used by `/ray waive <gate>`, e.g. `intake`.
    pub id: String,
    pub number: u32,
    /// Name as the seed writes it, e.g. `Intake Confirmation Gate`.
    pub name: String,
    pub criteria: String,
    #[serde(default)]
    pub evidence: Vec<String>,
    /// The seed's pass threshold sentence.
    #[serde(default)]
    pub pass_threshold_text: Option<String>,
    /// The threshold as an expression over metrics, e.g. `coverage >= 0.90 and blocking_errors == 0`.
    #[serde(default)]
    pub pass_threshold: Option<String>,
    /// The seed's failure handling sentence.
    pub failure_handling: String,
    /// What raybot does on failure.
    pub on_failure: GateFailure,
    #[serde(default)]
    pub automation: Option<String>,
    /// Whether `/ray waive` may pass this gate. Gates whose failure means rollback are not waivable.
    #[serde(default = "yes")]
    pub waivable: bool,
    /// The `Criteria:` line of the seed's `[RAY GATE FAILED: …]` template, if it has one.
    #[serde(default)]
    pub failed_criteria: Option<String>,
    /// The `Required action:` line of the seed's gate-failed template, if it has one.
    #[serde(default)]
    pub required_action: Option<String>,
    /// The `Options:` list of the seed's gate-failed template, if it has one.
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateFailure {
    /// Halt and wait for `/ray retry`, `/ray waive` or `/ray abort`.
    Halt,
    /// Roll back the named environment's deployment (staging rehearsal), then halt.
    RollbackStaging,
    /// Roll production back automatically; the release ends rolled back.
    Rollback,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Communication {
    /// The seed's status announcement block, verbatim lines.
    #[serde(default)]
    pub status_announcements: Vec<String>,
    /// `[RAY ERROR] - "Failed at {step}. Reason: {explanation}. Awaiting instructions."`
    #[serde(default)]
    pub error_template: Option<String>,
    /// `[RAY CONFIRMATION REQUIRED]` prompt body, verbatim.
    #[serde(default)]
    pub validation_prompts: Vec<String>,
    /// Other error templates (06's `[DEPLOYMENT ERROR] …` and friends), verbatim.
    #[serde(default)]
    pub error_templates: Vec<ErrorTemplate>,
    /// Seed 07/06 style announcements of a goal, verbatim.
    #[serde(default)]
    pub other: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorTemplate {
    pub name: String,
    pub template: String,
    #[serde(default)]
    pub recovery_steps: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Automation {
    #[serde(default)]
    pub scripts: Vec<String>,
    #[serde(default)]
    pub manual_fallbacks: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handoff {
    pub checklist: Vec<String>,
    /// The completion line, e.g. `[MASTER RAY™ | PROTOCOL COMPLETE] Ready for Protocol 15: …`.
    pub announcement: String,
    #[serde(default)]
    pub evidence_package: Vec<String>,
    #[serde(default)]
    pub next_protocol: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceSummaryRow {
    pub artifact: String,
    pub location: String,
    pub purpose: String,
    pub consumer: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityMetric {
    pub metric: String,
    pub target: String,
}

/// `protocols/pipeline.yaml`: which protocols `/ray deploy` chains, per target environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    pub name: String,
    pub description: String,
    /// Target environment → protocol ids in order.
    pub targets: std::collections::BTreeMap<String, Vec<String>>,
}
