//! Release protocols as data: loading, validation and the embedded defaults.
//!
//! `protocols/*.yaml` are transcriptions of the seed documents. They are compiled into the binary
//! as defaults (so `raybot demo` runs anywhere) and can be overridden by a directory on disk.

pub mod expr;
pub mod model;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use expr::Threshold;
use model::{Flow, Pipeline, PipelineFile, Protocol, StepRun};

/// The protocols shipped with raybot, as `(file name, YAML)`.
pub const EMBEDDED: &[(&str, &str)] = &[
    ("06-deployment-automation.yaml", include_str!("../../protocols/06-deployment-automation.yaml")),
    ("07-release-and-deployment.yaml", include_str!("../../protocols/07-release-and-deployment.yaml")),
    ("10-pre-deployment-validation.yaml", include_str!("../../protocols/10-pre-deployment-validation.yaml")),
    ("11-production-deployment.yaml", include_str!("../../protocols/11-production-deployment.yaml")),
    ("pipeline.yaml", include_str!("../../protocols/pipeline.yaml")),
];

/// A problem with one protocol file.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {field}: {message}")]
pub struct ProtocolError {
    /// The YAML file (or directory) at fault, e.g. `protocols/10-pre-deployment-validation.yaml`.
    pub file: String,
    /// Path of the offending field, e.g. `phases[1].steps[0].run`.
    pub field: String,
    /// What is wrong, e.g. `a phase needs at least one step`.
    pub message: String,
}

/// The loaded protocol set.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Every protocol found, in file-name order (not only those the pipeline runs).
    pub protocols: Vec<Protocol>,
    /// The flows `/ray deploy` can run and each target's default flow.
    pub pipeline: Pipeline,
    /// Where it came from (`embedded` or a directory).
    pub source: String,
}

impl Catalog {
    /// The protocol with `id`, ignoring leading zeros (`6` finds `06`).
    pub fn get(&self, id: &str) -> Option<&Protocol> {
        self.protocols.iter().find(|p| same_id(&p.id, id))
    }

    /// The protocols `/ray deploy … to <env>` runs when no flow is named, in order.
    pub fn pipeline_for(&self, env: &str) -> Option<Vec<Protocol>> {
        let flow = self.pipeline.defaults.get(env)?;
        self.flow_protocols(flow)
    }

    /// The protocols of flow `name`, in order.
    pub fn flow_protocols(&self, name: &str) -> Option<Vec<Protocol>> {
        let flow = self.pipeline.flow(name)?;
        flow.protocols.iter().map(|id| self.get(id).cloned()).collect()
    }

    /// The flow a release to `env` runs — `flow` when named, else the target's default — and its
    /// protocols; else the one-line reason, naming the choices.
    pub fn resolve(&self, env: &str, flow: Option<&str>) -> Result<(String, Vec<Protocol>), String> {
        let names = self.pipeline.flow_names().join(", ");
        let name = match flow {
            Some(f) if self.pipeline.flow(f).is_some() => f.to_string(),
            Some(f) => return Err(format!("unknown flow `{}`: use {names}.", crate::command::one_line(f))),
            None => match self.pipeline.defaults.get(env) {
                Some(f) => f.clone(),
                None => {
                    let targets: Vec<&str> = self.pipeline.defaults.keys().map(String::as_str).collect();
                    return Err(format!(
                        "no flow is the default for `{env}` (defaults: {}); name one with `--flow`: {names}.",
                        targets.join(", ")
                    ));
                }
            },
        };
        let protocols = self.flow_protocols(&name).ok_or_else(|| format!("flow `{name}` names a missing protocol."))?;
        Ok((name, protocols))
    }

    /// The embedded defaults.
    pub fn embedded() -> Result<Catalog, Vec<ProtocolError>> {
        let files: Vec<(String, String)> = EMBEDDED.iter().map(|(n, t)| ((*n).to_string(), (*t).to_string())).collect();
        Catalog::from_files(&files, "embedded")
    }

    /// Loads every `*.yaml` in `dir` (`pipeline.yaml` is the pipeline).
    pub fn load_dir(dir: &Path) -> Result<Catalog, Vec<ProtocolError>> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            vec![ProtocolError { file: dir.display().to_string(), field: "(directory)".into(), message: e.to_string() }]
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        paths.sort();
        let mut files = Vec::new();
        let mut errors = Vec::new();
        for p in paths {
            match std::fs::read_to_string(&p) {
                Ok(t) => files.push((p.display().to_string(), t)),
                Err(e) => errors.push(ProtocolError {
                    file: p.display().to_string(),
                    field: "(file)".into(),
                    message: e.to_string(),
                }),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Catalog::from_files(&files, &dir.display().to_string())
    }

    fn from_files(files: &[(String, String)], source: &str) -> Result<Catalog, Vec<ProtocolError>> {
        let mut protocols = Vec::new();
        let mut pipeline = None;
        let mut errors = Vec::new();
        for (name, text) in files {
            let is_pipeline = Path::new(name).file_stem().is_some_and(|s| s == "pipeline");
            if is_pipeline {
                match serde_norway::from_str::<PipelineFile>(text) {
                    Ok(p) => pipeline = Some((name.clone(), p)),
                    Err(e) => errors.push(yaml_error(name, &e)),
                }
            } else {
                match serde_norway::from_str::<Protocol>(text) {
                    Ok(p) => {
                        errors.extend(validate(name, &p));
                        protocols.push((name.clone(), p));
                    }
                    Err(e) => errors.push(yaml_error(name, &e)),
                }
            }
        }
        let mut seen = BTreeSet::new();
        for (file, p) in &protocols {
            if !seen.insert(p.id.clone()) {
                errors.push(ProtocolError {
                    file: file.clone(),
                    field: "id".into(),
                    message: format!("protocol id {} is used by two files", p.id),
                });
            }
        }
        let Some((pfile, file)) = pipeline else {
            errors.push(ProtocolError {
                file: format!("{source}/pipeline.yaml"),
                field: "(file)".into(),
                message: "missing: the pipeline that chains protocols for /ray deploy".into(),
            });
            return Err(errors);
        };
        let pipeline = match check_pipeline(&pfile, file, &protocols) {
            Ok(p) => p,
            Err(errs) => {
                errors.extend(errs);
                return Err(errors);
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Catalog { protocols: protocols.into_iter().map(|(_, p)| p).collect(), pipeline, source: source.to_string() })
    }
}

/// Checks `pipeline.yaml` (`pfile`) against the protocols found and turns it into a [`Pipeline`]:
/// flow names are tokens `/ray deploy … --flow` can type, every flow names existing protocols,
/// every default names an existing flow, and the protocols of default flows have gates their steps
/// can measure (protocols only in other flows are reported by `raybot protocols validate`).
/// The earlier `targets:` form becomes one flow per environment, named after it and its default.
fn check_pipeline(
    pfile: &str,
    file: PipelineFile,
    protocols: &[(String, Protocol)],
) -> Result<Pipeline, Vec<ProtocolError>> {
    let mut errors = Vec::new();
    let mut err =
        |field: String, message: String| errors.push(ProtocolError { file: pfile.to_string(), field, message });
    let from_targets = !file.targets.is_empty();
    if from_targets && (!file.flows.is_empty() || !file.defaults.is_empty()) {
        err("targets".into(), "use either `flows:` and `defaults:` or the earlier `targets:` form, not both".into());
    }
    let (section, flows, defaults) = if from_targets {
        let defaults = file.targets.iter().map(|(env, _)| (env.clone(), env.clone())).collect();
        ("targets", file.targets, defaults)
    } else {
        ("flows", file.flows, file.defaults)
    };
    if flows.is_empty() {
        err("flows".into(), "the pipeline needs at least one flow".into());
    }
    for (name, ids) in &flows {
        if !model::flow_name_ok(name) {
            err(
                format!("{section}.{name}"),
                "a flow name is lowercase letters, digits, `-` or `_` (at most 40 characters)".into(),
            );
        }
        for (i, id) in ids.iter().enumerate() {
            if !protocols.iter().any(|(_, p)| same_id(&p.id, id)) {
                err(format!("{section}.{name}[{i}]"), format!("flow `{name}` names no protocol with id {id}"));
            }
        }
    }
    let names: Vec<&str> = flows.iter().map(|(n, _)| n.as_str()).collect();
    for (env, flow) in &defaults {
        if !names.contains(&flow.as_str()) {
            err(format!("defaults.{env}"), format!("no flow named `{flow}`; flows: {}", names.join(", ")));
        }
    }
    // A protocol a target runs by default must have gates its steps can pass.
    let mut checked = BTreeSet::new();
    for (name, ids) in &flows {
        if !defaults.values().any(|f| f == name) {
            continue;
        }
        for id in ids {
            if let Some((file, p)) = protocols.iter().find(|(_, p)| same_id(&p.id, id)) {
                if checked.insert(p.id.clone()) {
                    errors.extend(unmeasurable_gates(file, p));
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Pipeline {
        name: file.name,
        flows: flows.into_iter().map(|(name, protocols)| Flow { name, protocols }).collect(),
        defaults,
        from_targets,
    })
}

/// Protocol ids compare without leading zeros: `6` and `06` name the same protocol.
fn same_id(a: &str, b: &str) -> bool {
    a.trim_start_matches('0') == b.trim_start_matches('0')
}

fn yaml_error(file: &str, e: &serde_norway::Error) -> ProtocolError {
    // serde_norway puts the field path first: "phases[0].steps[1].run: unknown variant …".
    let text = e.to_string();
    let (field, message) = match text.split_once(": ") {
        Some((f, m)) if !f.contains(' ') => (f.to_string(), m.to_string()),
        _ => ("(document)".to_string(), text.clone()),
    };
    ProtocolError { file: file.to_string(), field, message }
}

/// Metrics a step kind measures (what gate thresholds can read).
pub fn metrics_of(run: &StepRun) -> &'static [&'static str] {
    match run {
        StepRun::Intake => &["completeness_score", "checklist_completion"],
        StepRun::Parity => &["drift_severity"],
        StepRun::Deploy { .. } => &["blocking_errors", "blocking_incidents", "validation_success_rate"],
        StepRun::Validate { .. } => &["coverage", "validation_success_rate", "blocking_errors", "blocking_incidents"],
        StepRun::RollbackRehearsal { .. } => &["recovery_seconds"],
        StepRun::Security => &["blocking_findings"],
        StepRun::Package { .. } => &["manifest_completeness"],
        StepRun::Approval { .. } => &["approvals_recorded"],
        StepRun::Freeze { .. } => &["freeze_ack_ratio"],
        StepRun::HealthWindow { .. } => &["slo_breaches"],
        StepRun::Report { .. } => &["report_completeness"],
        StepRun::Job { .. } | StepRun::Baseline { .. } | StepRun::Document { .. } | StepRun::Note => &[],
    }
}

/// Gates whose threshold reads a metric no step of their phase measures: such a gate can never
/// pass. An error for protocols the pipeline runs; `protocols validate` reports it for the others.
pub fn unmeasurable_gates(file: &str, p: &Protocol) -> Vec<ProtocolError> {
    let mut out = Vec::new();
    for (pi, phase) in p.phases.iter().enumerate() {
        let Some(gate) = phase.gate.as_ref().and_then(|g| p.gates.iter().find(|x| &x.id == g)) else { continue };
        let Some(Ok(t)) = gate.pass_threshold.as_deref().map(Threshold::parse) else { continue };
        let measured: BTreeSet<&str> = phase.steps.iter().flat_map(|s| metrics_of(&s.run).iter().copied()).collect();
        for m in t.metrics() {
            if !measured.contains(m) {
                out.push(ProtocolError {
                    file: file.to_string(),
                    field: format!("phases[{pi}].gate"),
                    message: format!(
                        "gate `{}` reads `{m}`, which no step of phase {} measures",
                        gate.id, phase.number
                    ),
                });
            }
        }
    }
    out
}

/// Checks the rules the YAML schema cannot express.
pub fn validate(file: &str, p: &Protocol) -> Vec<ProtocolError> {
    let mut errors = Vec::new();
    let mut err =
        |field: String, message: String| errors.push(ProtocolError { file: file.to_string(), field, message });
    if p.phases.is_empty() {
        err("phases".into(), "a protocol needs at least one phase".into());
    }
    let gate_ids: BTreeSet<&str> = p.gates.iter().map(|g| g.id.as_str()).collect();
    if gate_ids.len() != p.gates.len() {
        err("gates".into(), "gate ids must be unique".into());
    }
    for (gi, g) in p.gates.iter().enumerate() {
        match &g.pass_threshold {
            Some(t) => {
                if let Err(e) = Threshold::parse(t) {
                    err(format!("gates[{gi}].pass_threshold"), e);
                }
            }
            None => {
                err(format!("gates[{gi}].pass_threshold"), format!("gate {} has no machine-readable threshold", g.id))
            }
        }
    }
    let mut step_ids = BTreeSet::new();
    for (pi, phase) in p.phases.iter().enumerate() {
        if phase.steps.is_empty() {
            err(format!("phases[{pi}].steps"), "a phase needs at least one step".into());
        }
        if let Some(g) = &phase.gate {
            if !gate_ids.contains(g.as_str()) {
                err(format!("phases[{pi}].gate"), format!("no gate with id `{g}`"));
            }
        }
        for (si, s) in phase.steps.iter().enumerate() {
            let at = format!("phases[{pi}].steps[{si}]");
            if !step_ids.insert(s.id.clone()) {
                err(format!("{at}.id"), format!("step id `{}` is used twice", s.id));
            }
            for (ei, e) in s.evidence.iter().enumerate() {
                if e.contains("..") || e.starts_with('/') || e.is_empty() {
                    err(
                        format!("{at}.evidence[{ei}]"),
                        format!("`{e}` must be a plain file name inside {}", p.artifacts_dir),
                    );
                }
            }
            match &s.run {
                StepRun::Approval { roles, .. } | StepRun::Freeze { roles } if roles.is_empty() => {
                    err(format!("{at}.run.roles"), "needs at least one role".into());
                }
                StepRun::Package { files, .. } if files.is_empty() => {
                    err(format!("{at}.run.files"), "a package needs files".into());
                }
                _ => {}
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_protocols_load_and_chain() {
        let c = Catalog::embedded().unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(c.protocols.len(), 4);
        let chain = c.pipeline_for("production").unwrap();
        assert_eq!(chain.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["10", "11"]);
        let p11 = c.get("11").unwrap();
        let launch = p11.gates.iter().find(|g| g.id == "launch").unwrap();
        assert_eq!(
            launch.pass_threshold.as_deref(),
            Some("blocking_incidents == 0 and validation_success_rate >= 0.95")
        );
        assert!(!launch.waivable);
    }

    #[test]
    fn pipeline_gates_are_measurable_and_07s_are_reported() {
        let c = Catalog::embedded().unwrap();
        for id in ["10", "11", "06"] {
            let p = c.get(id).unwrap();
            assert!(unmeasurable_gates(id, p).is_empty(), "{id}: {:?}", unmeasurable_gates(id, p));
        }
        let p07 = c.get("07").unwrap();
        assert!(!unmeasurable_gates("07", p07).is_empty());
    }

    #[test]
    fn a_pipeline_protocol_with_an_unmeasurable_gate_is_refused() {
        let files: Vec<(String, String)> = EMBEDDED
            .iter()
            .map(|(n, t)| {
                let t = if *n == "pipeline.yaml" {
                    t.replace("staging-rehearsal: [\"10\"]", "staging-rehearsal: [\"7\"]")
                } else {
                    (*t).to_string()
                };
                ((*n).to_string(), t)
            })
            .collect();
        assert_ne!(files[4].1, EMBEDDED[4].1, "the pipeline edit must apply");
        let errs = Catalog::from_files(&files, "test").unwrap_err();
        assert!(errs.iter().any(|e| e.file.contains("07-release") && e.message.contains("gate `all-tests-green` reads `coverage`")), "{errs:?}");
    }

    /// The embedded set with `pipeline.yaml` replaced by `pipeline`.
    fn with_pipeline(pipeline: &str) -> Vec<(String, String)> {
        EMBEDDED
            .iter()
            .map(|(n, t)| {
                ((*n).to_string(), if *n == "pipeline.yaml" { pipeline.to_string() } else { (*t).to_string() })
            })
            .collect()
    }

    #[test]
    fn shipped_flows_and_defaults() {
        let c = Catalog::embedded().unwrap();
        assert_eq!(c.pipeline.flow_names(), ["standard", "release-and-deployment", "automation", "staging-rehearsal"]);
        assert_eq!(c.pipeline.defaults["production"], "standard");
        assert_eq!(c.pipeline.defaults["staging"], "staging-rehearsal");
        assert!(!c.pipeline.from_targets);
        let ids = |v: Vec<Protocol>| v.into_iter().map(|p| p.id).collect::<Vec<_>>();
        assert_eq!(ids(c.pipeline_for("staging").unwrap()), ["10"]);
        let (name, chain) = c.resolve("production", None).unwrap();
        assert_eq!((name.as_str(), ids(chain)), ("standard", vec!["10".to_string(), "11".into()]));
        let (name, chain) = c.resolve("staging", Some("automation")).unwrap();
        assert_eq!((name.as_str(), ids(chain)), ("automation", vec!["06".to_string()]));
        assert_eq!(
            c.resolve("production", Some("nope")).unwrap_err(),
            "unknown flow `nope`: use standard, release-and-deployment, automation, staging-rehearsal."
        );
        let err = c.resolve("qa", None).unwrap_err();
        assert!(err.starts_with("no flow is the default for `qa` (defaults: production, staging)"), "{err}");
    }

    #[test]
    fn the_earlier_targets_form_still_loads_as_flows_named_after_environments() {
        let old = "name: release\ndescription: \"x\"\ntargets:\n  production: [\"10\", \"11\"]\n  staging: [\"10\"]\n";
        let c = Catalog::from_files(&with_pipeline(old), "test").unwrap_or_else(|e| panic!("{e:?}"));
        assert!(c.pipeline.from_targets);
        assert_eq!(c.pipeline.flow_names(), ["production", "staging"]);
        assert_eq!(c.pipeline.defaults["production"], "production");
        assert_eq!(c.pipeline.defaults["staging"], "staging");
        let chain = c.pipeline_for("production").unwrap();
        assert_eq!(chain.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["10", "11"]);
        // As before, a protocol an environment runs must have measurable gates.
        let errs = Catalog::from_files(&with_pipeline(&old.replace("staging: [\"10\"]", "staging: [\"07\"]")), "t")
            .unwrap_err();
        assert!(
            errs.iter().any(|e| e.file.contains("07-release") && e.message.contains("reads `coverage`")),
            "{errs:?}"
        );
        // Both forms at once are refused.
        let both = format!("{old}flows:\n  standard: [\"10\"]\n");
        let errs = Catalog::from_files(&with_pipeline(&both), "t").unwrap_err();
        assert!(errs.iter().any(|e| e.field == "targets" && e.message.contains("not both")), "{errs:?}");
    }

    #[test]
    fn flows_and_defaults_are_checked() {
        let base = "name: release\ndescription: \"x\"\n";
        let errs = Catalog::from_files(
            &with_pipeline(&format!(
                "{base}flows:\n  standard: [\"10\", \"12\"]\ndefaults:\n  production: standard\n  staging: rehearsal\n"
            )),
            "test",
        )
        .unwrap_err();
        let shown: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(
            shown.contains(
                &"pipeline.yaml: flows.standard[1]: flow `standard` names no protocol with id 12".to_string()
            ),
            "{shown:?}"
        );
        assert!(
            shown.contains(&"pipeline.yaml: defaults.staging: no flow named `rehearsal`; flows: standard".to_string()),
            "{shown:?}"
        );
        // A flow no default uses may hold a protocol with unmeasurable gates (07): it loads.
        let c = Catalog::from_files(
            &with_pipeline(&format!(
                "{base}flows:\n  standard: [\"10\"]\n  rd: [\"7\"]\ndefaults:\n  production: standard\n"
            )),
            "test",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(!c.pipeline.is_default("rd"));
        // Once a default uses it, it is refused.
        let errs = Catalog::from_files(
            &with_pipeline(&format!(
                "{base}flows:\n  standard: [\"10\"]\n  rd: [\"7\"]\ndefaults:\n  production: rd\n"
            )),
            "test",
        )
        .unwrap_err();
        assert!(errs.iter().any(|e| e.file.contains("07-release")), "{errs:?}");
        // Names the grammar could not type, and a flow named twice.
        let errs = Catalog::from_files(
            &with_pipeline(&format!("{base}flows:\n  Standard;x: [\"10\"]\ndefaults:\n  production: Standard;x\n")),
            "test",
        )
        .unwrap_err();
        assert!(errs.iter().any(|e| e.field == "flows.Standard;x" && e.message.contains("lowercase")), "{errs:?}");
        let errs = Catalog::from_files(
            &with_pipeline(&format!("{base}flows:\n  a: [\"10\"]\n  a: [\"11\"]\ndefaults:\n  production: a\n")),
            "test",
        )
        .unwrap_err();
        assert!(errs[0].file == "pipeline.yaml", "{errs:?}");
    }

    #[test]
    fn broken_file_names_file_and_field() {
        let mut files: Vec<(String, String)> =
            EMBEDDED.iter().map(|(n, t)| ((*n).to_string(), (*t).to_string())).collect();
        files[2].1 = files[2].1.replacen("kind: intake", "kind: intak", 1);
        let errs = Catalog::from_files(&files, "test").unwrap_err();
        assert!(errs[0].file.contains("10-pre-deployment"), "{errs:?}");
        assert!(errs[0].field.contains("phases[0].steps[0]"), "{errs:?}");
    }
}
