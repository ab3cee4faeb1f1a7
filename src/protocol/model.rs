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
    /// What must exist before the protocol starts; checked by its `intake` step.
    #[serde(default)]
    pub prerequisites: Prerequisites,
    /// Persona and guardrail (posted when the protocol starts) and mission.
    pub role: Role,
    /// The workflow, run in order.
    pub phases: Vec<Phase>,
    /// Upstream inputs, downstream outputs and storage, as the seed lists them (documentation only).
    #[serde(default)]
    pub integration: Integration,
    /// Quality gates; each phase names the one evaluated when it ends.
    #[serde(default)]
    pub gates: Vec<Gate>,
    /// The seed's message templates; the error template and validation prompt are posted.
    #[serde(default)]
    pub communication: Communication,
    /// The seed's automation scripts and manual fallbacks (documentation only; raybot runs jobs).
    #[serde(default)]
    pub automation: Automation,
    /// Completion announcement, posted with a gate summary when the protocol's last phase ends.
    #[serde(default)]
    pub handoff: Option<Handoff>,
    /// The seed's evidence summary table (documentation only).
    #[serde(default)]
    pub evidence_summary: Vec<EvidenceSummaryRow>,
    /// The seed's quality metrics table (documentation only).
    #[serde(default)]
    pub quality_metrics: Vec<QualityMetric>,
}

/// A protocol's "PREREQUISITES" section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prerequisites {
    /// Files checked on disk; missing required ones fail the intake step.
    #[serde(default)]
    pub artifacts: Vec<PrerequisiteArtifact>,
    /// Approvals the seed requires, verbatim. The intake evidence says, for each, which artifact
    /// field verified it (`expects[].proves`), or that nothing did.
    #[serde(default)]
    pub approvals: Vec<String>,
    /// System states the seed requires, verbatim; copied into the intake evidence, not checked.
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
    /// What the artifact must contain: fields of a JSON file in it (or of the artifact itself,
    /// when it is a JSON file), each checked when the artifact is found. A failed expectation makes
    /// the artifact `content check failed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expects: Vec<ContentCheck>,
}

/// One field a prerequisite artifact must carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentCheck {
    /// The JSON file inside the zip, e.g. `quality-audit-report.json`; omitted when the artifact
    /// is itself a JSON file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The field, dotted for nested objects, e.g. `recommendation` or `signoff.by`.
    pub field: String,
    /// The value it must equal; omitted: any value but null, false, `""`, `[]` or `{}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<serde_json::Value>,
    /// The seed's prerequisite approval this field verifies, verbatim as listed under
    /// `prerequisites.approvals`, so the evidence says which approvals were read, not assumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proves: Option<String>,
}

fn yes() -> bool {
    true
}

/// Which folder a prerequisite artifact is looked up in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactLocation {
    /// The release inputs folder (`inputs_dir` in `raybot.toml`, `{version}` expanded).
    #[default]
    Inputs,
    /// The directory jobs run in (the parent of `config/`).
    Repository,
    /// This release's artifacts directory, e.g. evidence an earlier protocol wrote.
    Artifacts,
}

/// "AI ROLE AND MISSION".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// Who raybot acts as, e.g. `Release Engineer`; posted when the protocol starts.
    pub persona: String,
    /// The seed's mission sentence (shown by `raybot protocols show`).
    pub mission: String,
    /// The `🚫 [CRITICAL]` line.
    #[serde(default)]
    pub guardrail: Option<String>,
}

/// One phase of a protocol's workflow (`STEP n` in the seed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// 1-based phase number (`STEP n` in the seed).
    pub number: u32,
    /// Title as the seed writes it, used in the default `PHASE n START` line.
    pub title: String,
    /// Announcement when the phase starts (the first `[MUST]` step's communication in P10/P11).
    #[serde(default)]
    pub start_announcement: Option<String>,
    /// Announcement when the phase completes, if the seed has one.
    #[serde(default)]
    pub complete_announcement: Option<String>,
    /// The steps, run in order.
    pub steps: Vec<Step>,
    /// Id of the gate evaluated when the phase ends.
    #[serde(default)]
    pub gate: Option<String>,
}

/// How binding a step is (the seed's `[MUST]` / `[GUIDELINE]` tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Level {
    /// A met halt condition stops the release; its evidence is expected in the report.
    #[serde(rename = "MUST")]
    Must,
    /// A met halt condition is posted and the release goes on.
    #[serde(rename = "GUIDELINE")]
    Guideline,
}

/// One step of a phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Stable id, kebab-case, unique within the protocol.
    pub id: String,
    /// `MUST` or `GUIDELINE`.
    pub level: Level,
    /// Title as the seed writes it; appears in halt messages and evidence headers.
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
    /// "Pause if/until …": like `Stop`, the release halts until `/ray retry` (or a waiver). The
    /// seed's "pause until people confirm" cases are freeze and approval steps, which wait by nature.
    Pause,
    /// "Trigger/Initiate rollback if …": the target environment is rolled back automatically once
    /// the release has changed it; before that there is nothing to roll back and the release halts.
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
    Job {
        /// Job name under `environments.<env>.jobs`, e.g. `refresh_data`.
        job: String,
        /// Environment whose job runs, e.g. `staging`.
        env: String,
    },
    /// Deploy to an environment. Staging runs one step; production follows the rollout strategy
    /// with probes between steps and milestone posts. Metric `blocking_errors`.
    Deploy {
        /// Environment to deploy to.
        env: String,
    },
    /// Run the environment's validation suites and probes. Metrics `coverage`,
    /// `validation_success_rate`, `blocking_errors` / `blocking_incidents`.
    Validate {
        /// Environment to validate.
        env: String,
    },
    /// Run the environment's rollback job and time recovery; metric `recovery_seconds`.
    RollbackRehearsal {
        /// Environment to rehearse on, e.g. `staging`; the candidate is re-deployed afterwards.
        env: String,
    },
    /// Run the security job; metric `blocking_findings`.
    Security,
    /// Probe the environment once more and write the observability baseline from those figures.
    Baseline {
        /// Environment to probe.
        env: String,
    },
    /// Zip the listed evidence into `zip`, with a SHA-256 manifest; metric `manifest_completeness`.
    Package {
        /// Zip name in the protocol's artifacts dir, e.g. `PRE-DEPLOYMENT-PACKAGE.zip`.
        zip: String,
        /// Manifest name, e.g. `pre-deployment-manifest.json`; written first and zipped too.
        manifest: Option<String>,
        /// Evidence file names to include; missing ones fail the step.
        files: Vec<String>,
    },
    /// Collect go/no-go approvals; metric `approvals_recorded`.
    Approval {
        /// Roles that must approve, each by a different person (not the initiator alone).
        roles: Vec<String>,
        /// The `[APPROVAL REQUEST] …` text posted with the buttons.
        prompt: String,
    },
    /// Change freeze acknowledgement by everyone in `roles`; metric `freeze_ack_ratio`.
    Freeze {
        /// Everyone holding any of these roles must acknowledge.
        roles: Vec<String>,
    },
    /// Write a document computed from the release (checklists, manifests, retrospective inputs).
    Document {
        /// Which document.
        template: DocumentTemplate,
    },
    /// Probe the environment repeatedly for the soak period; metric `slo_breaches`.
    HealthWindow {
        /// Environment to watch; its `health_window` sets duration and interval.
        env: String,
    },
    /// Compile `DEPLOYMENT-REPORT.md` and zip everything; metric `report_completeness`.
    Report {
        /// Zip name in the protocol's artifacts dir, e.g. `DEPLOYMENT-EVIDENCE.zip`.
        zip: String,
    },
    /// Post the step's communication only (guidance that needs no automation here).
    Note,
}

/// Documents raybot can compute from a release's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentTemplate {
    /// `deployment-checklist.md`: production steps, rehearsal learnings and communication plan.
    DeploymentChecklist,
    /// `release-manifest.md`: scope, rollback procedure, stakeholders and confirmations so far.
    ReleaseManifest,
    /// Chat line only: the deployment window, channel and on-call people.
    DeploymentWindow,
    /// `retrospective-inputs.json`: failed jobs, waivers, reminders and job durations.
    RetrospectiveInputs,
    /// Chat line only: on-call SRE, escalation contact and the rollback command.
    RunbookCoverage,
}

/// The seed's "INTEGRATION POINTS" section, verbatim (documentation only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Integration {
    /// Upstream protocols and what they hand over.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Downstream protocols and what they receive.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Where evidence is stored, e.g. `.artifacts/pre-deployment/`.
    #[serde(default)]
    pub storage: Vec<String>,
}

/// A quality gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    /// Stable id used by `/ray waive <gate>`, e.g. `intake`.
    pub id: String,
    /// The seed's gate number; `/ray waive 1` works too.
    pub number: u32,
    /// Name as the seed writes it, e.g. `Intake Confirmation Gate`.
    pub name: String,
    /// The seed's criteria sentence, quoted when the gate fails (unless `failed_criteria` is set).
    pub criteria: String,
    /// Evidence files the seed names for this gate (documentation only).
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
    /// The seed's validation script for this gate (documentation only; raybot evaluates the threshold).
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

/// What a failed gate does to the release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateFailure {
    /// Halt and wait for `/ray retry`, `/ray waive` or `/ray abort`.
    Halt,
    /// Roll staging back (the rehearsal's failure handling), then halt for `/ray retry`.
    RollbackStaging,
    /// Roll the target environment back automatically and end the release rolled back — once the
    /// release has changed it; a failure before that (nothing deployed yet) halts instead.
    Rollback,
}

/// The seed's "COMMUNICATION PROTOCOLS" section.
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

/// A named error message template from the seed (kept verbatim, not posted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorTemplate {
    /// e.g. `Environment Unreachable`.
    pub name: String,
    /// e.g. `[ERROR] Unable to connect to {environment}. Check network/credentials.`
    pub template: String,
    /// The seed's recovery steps for this error.
    #[serde(default)]
    pub recovery_steps: Vec<String>,
}

/// The seed's "AUTOMATION HOOKS" section, verbatim (documentation only; raybot runs configured jobs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Automation {
    /// Commands and CI snippets, e.g. `python scripts/validate_prerequisites_10.py`.
    #[serde(default)]
    pub scripts: Vec<String>,
    /// What to do by hand when automation is unavailable.
    #[serde(default)]
    pub manual_fallbacks: Vec<String>,
}

/// The seed's "HANDOFF CHECKLIST" section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Handoff {
    /// Checklist items, verbatim (raybot posts its own gate and evidence summary instead).
    pub checklist: Vec<String>,
    /// The completion line, e.g. `[MASTER RAY™ | PROTOCOL COMPLETE] Ready for Protocol 15: …`.
    pub announcement: String,
    /// Files the seed hands to the next protocol, e.g. `PRE-DEPLOYMENT-PACKAGE.zip` (documentation only).
    #[serde(default)]
    pub evidence_package: Vec<String>,
    /// The seed's next protocol, e.g. `15-production-deployment` (documentation only; the pipeline
    /// decides what runs next).
    #[serde(default)]
    pub next_protocol: Option<String>,
}

/// One row of the seed's evidence summary table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceSummaryRow {
    /// File name, e.g. `intake-validation-report.json`.
    pub artifact: String,
    /// Folder, e.g. `.artifacts/pre-deployment/`.
    pub location: String,
    /// What it proves, e.g. `Confirms prerequisite readiness`.
    pub purpose: String,
    /// Who reads it, e.g. `Protocol 21 Gates`.
    pub consumer: String,
}

/// One row of the seed's quality metrics table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityMetric {
    /// e.g. `Gate 2 Pass Rate`.
    pub metric: String,
    /// e.g. `≥ 95%`.
    pub target: String,
}

/// `protocols/pipeline.yaml` as written: named flows and the default flow of each target, or the
/// earlier form (`targets:`, one chain per environment), which still loads. [`super::Catalog`]
/// checks it and turns it into a [`Pipeline`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// Pipeline name, e.g. `release`.
    pub name: String,
    /// What the pipeline is for, for readers of the file (raybot does not show it).
    pub description: String,
    /// Flow name → protocol ids in order, in the file's order.
    #[serde(default, deserialize_with = "ordered_map")]
    pub flows: Vec<(String, Vec<String>)>,
    /// Target environment → the flow `/ray deploy … to <env>` runs when none is named.
    #[serde(default)]
    pub defaults: std::collections::BTreeMap<String, String>,
    /// The form written for raybot before flows: target environment → protocol ids. Read as one
    /// flow per environment, named after it, which is that environment's default.
    #[serde(default, deserialize_with = "ordered_map")]
    pub targets: Vec<(String, Vec<String>)>,
}

/// A YAML mapping as `(key, value)` pairs in the file's order (flows are listed as written).
fn ordered_map<'de, D, V>(d: D) -> Result<Vec<(String, V)>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Pairs<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Pairs<V> {
        type Value = Vec<(String, V)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a mapping of names to protocol lists")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out: Vec<(String, V)> = Vec::new();
            while let Some((k, v)) = map.next_entry::<String, V>()? {
                if out.iter().any(|(x, _)| *x == k) {
                    return Err(serde::de::Error::custom(format!("`{k}` is named twice")));
                }
                out.push((k, v));
            }
            Ok(out)
        }
    }
    d.deserialize_map(Pairs(std::marker::PhantomData))
}

/// One named flow: the protocols a release runs, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// Its name, e.g. `standard` (what `/ray deploy … --flow NAME` types).
    pub name: String,
    /// Protocol ids in the order they run, e.g. `["10", "11"]`.
    pub protocols: Vec<String>,
}

/// The checked pipeline: which flows `/ray deploy` can run and which one each target runs by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    /// Pipeline name, e.g. `release`.
    pub name: String,
    /// The flows, in the file's order.
    pub flows: Vec<Flow>,
    /// Target environment → the name of its default flow.
    pub defaults: std::collections::BTreeMap<String, String>,
    /// Whether the file used the earlier `targets:` form (flows named after environments).
    pub from_targets: bool,
}

impl Pipeline {
    /// The flow called `name`.
    pub fn flow(&self, name: &str) -> Option<&Flow> {
        self.flows.iter().find(|f| f.name == name)
    }

    /// The names of the flows, in the file's order.
    pub fn flow_names(&self) -> Vec<&str> {
        self.flows.iter().map(|f| f.name.as_str()).collect()
    }

    /// Whether some target runs flow `name` by default.
    pub fn is_default(&self, name: &str) -> bool {
        self.defaults.values().any(|f| f == name)
    }
}

/// Whether `name` can be a flow's name: what the chat grammar accepts after `--flow`.
pub fn flow_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}
