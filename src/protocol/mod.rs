//! Release protocols as data: loading, validation and the embedded defaults.
//!
//! `protocols/*.yaml` are transcriptions of the seed documents. They are compiled into the binary
//! as defaults (so `raybot demo` runs anywhere) and can be overridden by a directory on disk.

pub mod expr;
pub mod model;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use expr::Threshold;
use model::{Pipeline, Protocol, StepRun};

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
    /// Which protocols `/ray deploy` chains per target environment.
    pub pipeline: Pipeline,
    /// Where it came from (`embedded` or a directory).
    pub source: String,
}

impl Catalog {
    /// The protocol with `id`, ignoring leading zeros (`6` finds `06`).
    pub fn get(&self, id: &str) -> Option<&Protocol> {
        self.protocols.iter().find(|p| same_id(&p.id, id))
    }

    /// The protocols `/ray deploy … to <env>` runs, in order.
    pub fn pipeline_for(&self, env: &str) -> Option<Vec<Protocol>> {
        let ids = self.pipeline.targets.get(env)?;
        ids.iter().map(|id| self.get(id).cloned()).collect()
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
                match serde_norway::from_str::<Pipeline>(text) {
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
        let Some((pfile, pipeline)) = pipeline else {
            errors.push(ProtocolError {
                file: format!("{source}/pipeline.yaml"),
                field: "(file)".into(),
                message: "missing: the pipeline that chains protocols for /ray deploy".into(),
            });
            return Err(errors);
        };
        for (env, ids) in &pipeline.targets {
            for (i, id) in ids.iter().enumerate() {
                match protocols.iter().find(|(_, p)| same_id(&p.id, id)) {
                    // A protocol /ray deploy runs must have gates its steps can pass.
                    Some((file, p)) => errors.extend(unmeasurable_gates(file, p)),
                    None => errors.push(ProtocolError {
                        file: pfile.clone(),
                        field: format!("targets.{env}[{i}]"),
                        message: format!("no protocol with id {id}"),
                    }),
                }
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Catalog { protocols: protocols.into_iter().map(|(_, p)| p).collect(), pipeline, source: source.to_string() })
    }
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
                    t.replace("staging: [\"10\"]", "staging: [\"7\"]")
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
