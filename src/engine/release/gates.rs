//! Gate evaluation and configuration parity: pure functions over figures, waivers and
//! configuration. They decide; the release posts and halts.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::engine::Timestamp;
use crate::engine::plan::ParityValue;
use crate::engine::refusal::BadArgument;
use crate::protocol::expr::{ClauseResult, Threshold, severity_value};
use crate::protocol::model::{Gate, GateFailure, Protocol};

/// Result of a gate evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every clause of the threshold held.
    Passed,
    /// A clause failed or read an unmeasured metric; the gate's `on_failure` applied.
    Failed,
    /// Accepted by `/ray waive`; the figures were not evaluated.
    Waived {
        /// User id of who waived it.
        by: String,
        /// Their justification.
        justification: String,
    },
}

/// A gate evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateVerdict {
    /// Protocol id, e.g. `11`.
    pub protocol: String,
    /// Gate id, e.g. `launch`.
    pub gate: String,
    /// Gate name, e.g. `Production Launch Gate`.
    pub name: String,
    /// The threshold expression evaluated, e.g. `coverage >= 0.90 and blocking_errors == 0`.
    pub threshold: String,
    /// Per clause: its text, the measured value (`None` if never measured) and whether it held.
    pub clauses: Vec<(String, Option<f64>, bool)>,
    /// The outcome.
    pub verdict: Verdict,
    /// When it was evaluated or waived.
    pub at: Timestamp,
}

/// A waiver as the release records it: (`<protocol>/<gate>`, user id, justification, when).
pub(crate) type Waiver = (String, String, String, Timestamp);

/// The key a waiver of `gate` in protocol `protocol` is recorded under.
pub(crate) fn waiver_key(protocol: &str, gate: &str) -> String {
    format!("{protocol}/{gate}")
}

/// The gate of `protocol` a `/ray waive <gate> <justification>` names (by id, name or number),
/// when it is the gate the release halted at (`halted_at`, halted at `step`), it may be waived
/// and the justification has at least three words.
pub(crate) fn waivable<'a>(
    protocol: &'a Protocol,
    halted_at: Option<&str>,
    step: &str,
    gate: &str,
    justification: &str,
) -> Result<&'a Gate, BadArgument> {
    let wanted = gate.to_lowercase();
    let found = protocol
        .gates
        .iter()
        .find(|g| g.id == wanted || g.name.to_lowercase() == wanted || g.number.to_string() == wanted);
    let Some(g) = found else {
        let ids: Vec<&str> = protocol.gates.iter().map(|g| g.id.as_str()).collect();
        return Err(BadArgument::UnknownGate {
            gate: gate.into(),
            protocol: protocol.id.clone(),
            gates: ids.join(", "),
        });
    };
    if halted_at != Some(g.id.as_str()) {
        return Err(BadArgument::OtherGate { step: step.to_string(), gate: g.id.clone() });
    }
    if !g.waivable {
        return Err(BadArgument::NotWaivable { gate: g.id.clone(), name: g.name.clone() });
    }
    if justification.split_whitespace().count() < 3 {
        return Err(BadArgument::ShortJustification);
    }
    Ok(g)
}

/// The waiver of `gate` in protocol `protocol`, if one was given.
pub(crate) fn waiver<'a>(waivers: &'a [Waiver], protocol: &str, gate: &str) -> Option<&'a Waiver> {
    let key = waiver_key(protocol, gate);
    waivers.iter().find(|w| w.0 == key)
}

/// Evaluates `gate` of protocol `protocol`: a waived gate passes unevaluated, otherwise its
/// threshold is read against `metrics` (the current phase's figures) and `constants` (`rto`).
/// An unparsable threshold fails with one clause that says why.
pub(crate) fn evaluate(
    protocol: &str,
    gate: &Gate,
    metrics: &BTreeMap<String, f64>,
    constants: &BTreeMap<String, f64>,
    waivers: &[Waiver],
    now: Timestamp,
) -> GateVerdict {
    let threshold = gate.pass_threshold.clone().unwrap_or_default();
    let (clauses, verdict) = match waiver(waivers, protocol, &gate.id) {
        Some(w) => (Vec::new(), Verdict::Waived { by: w.1.clone(), justification: w.2.clone() }),
        None => {
            let clauses = match Threshold::parse(&threshold) {
                Ok(t) => t.evaluate(metrics, constants),
                Err(e) => vec![ClauseResult { text: format!("invalid threshold: {e}"), actual: None, passed: false }],
            };
            let passed = clauses.iter().all(|c| c.passed);
            let clauses: Vec<(String, Option<f64>, bool)> =
                clauses.into_iter().map(|c| (c.text, c.actual, c.passed)).collect();
            (clauses, if passed { Verdict::Passed } else { Verdict::Failed })
        }
    };
    GateVerdict {
        protocol: protocol.to_string(),
        gate: gate.id.clone(),
        name: gate.name.clone(),
        threshold,
        clauses,
        verdict,
        at: now,
    }
}

/// Whether every metric `gate`'s threshold reads has been measured: only then may the gate
/// decide a step's halt condition.
pub(crate) fn measurable(gate: &Gate, metrics: &BTreeMap<String, f64>) -> bool {
    gate.pass_threshold
        .as_deref()
        .and_then(|t| Threshold::parse(t).ok())
        .map(|t| t.metrics().all(|m| metrics.contains_key(m)))
        .unwrap_or(false)
}

/// Whether `gate` decides the halt of a failed step that was to measure `step_measures`: every
/// figure it reads is measured, or a figure the failed step was to measure never was (the step
/// failed before it could), so the gate cannot pass in this phase. Otherwise the step's own halt
/// handling applies (its seed error template, escalation or pause).
pub(crate) fn decides(gate: &Gate, metrics: &BTreeMap<String, f64>, step_measures: &[&str]) -> bool {
    let Some(t) = gate.pass_threshold.as_deref().and_then(|t| Threshold::parse(t).ok()) else { return false };
    measurable(gate, metrics) || t.metrics().any(|m| !metrics.contains_key(m) && step_measures.contains(&m))
}

/// What a failed gate does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnFailure {
    /// Halt and wait for `/ray retry`, `/ray waive` or `/ray abort`.
    Halt,
    /// Roll staging back, then halt.
    RollbackStaging,
    /// Roll the target environment back; the release ends rolled back.
    Rollback,
}

/// What the release changed, as far as a failed `rollback` gate is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Changed {
    /// A deploy to the target environment ran (it may have moved traffic).
    pub(crate) target: bool,
    /// The gate's protocol deployed to staging (the target is elsewhere).
    pub(crate) staging: bool,
}

/// The failure handling of `gate`: a `rollback` gate rolls back the target only once the release
/// changed it; before that it rolls back staging when the protocol deployed there (then halts),
/// or halts. Never a rollback of an environment the release did not touch.
pub(crate) fn on_failure(gate: &Gate, changed: Changed) -> OnFailure {
    match gate.on_failure {
        GateFailure::Halt => OnFailure::Halt,
        GateFailure::RollbackStaging => OnFailure::RollbackStaging,
        GateFailure::Rollback if changed.target => OnFailure::Rollback,
        GateFailure::Rollback if changed.staging => OnFailure::RollbackStaging,
        GateFailure::Rollback => OnFailure::Halt,
    }
}

impl GateVerdict {
    /// The measured figure of each clause, e.g. `coverage = 0.95` or `coverage not measured`.
    pub(crate) fn actual(&self) -> Vec<String> {
        self.clauses
            .iter()
            .map(|(text, actual, _)| {
                let metric = text.split_whitespace().next().unwrap_or("");
                match actual {
                    Some(v) => format!("{metric} = {}", fmt_num(*v)),
                    None => format!("{metric} not measured"),
                }
            })
            .collect()
    }
}

/// The `[RAY GATE FAILED: …]` post, in the seed's template: criteria, figures, required action
/// and the gate's options.
pub(crate) fn failure_text(gate: &Gate, actual: &str) -> String {
    let mut text = format!(
        "[RAY GATE FAILED: {name}]\n> \"Quality gate '{name}' failed.\n> Criteria: {criteria}\n> Actual: {actual}\n> Required action: {action}",
        name = gate.name,
        criteria = gate.failed_criteria.clone().unwrap_or_else(|| gate.criteria.clone()),
        action = gate.required_action.clone().unwrap_or_else(|| gate.failure_handling.clone()),
    );
    if !gate.options.is_empty() {
        text.push_str("\n>\n> Options:");
        for (i, o) in gate.options.iter().enumerate() {
            text.push_str(&format!("\n> {}. {o}", i + 1));
        }
    }
    text.push('"');
    text
}

/// Configuration drift between staging and production.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Parity {
    /// Keys configured in either environment.
    pub(crate) compared: usize,
    /// One entry per drifted key: key, both values and the severity.
    pub(crate) drift: Vec<serde_json::Value>,
    /// The worst drift's severity level (0 = none … 4 = critical); the `drift_severity` metric.
    pub(crate) worst: f64,
}

impl Parity {
    /// Compares the two environments' parity settings. A key missing on one side drifts with the
    /// severity the other side gives it; an unknown severity counts as `high`.
    pub(crate) fn compare(
        staging: &BTreeMap<String, ParityValue>,
        production: &BTreeMap<String, ParityValue>,
    ) -> Parity {
        let keys: BTreeSet<&String> = staging.keys().chain(production.keys()).collect();
        let mut drift = Vec::new();
        let mut worst = 0.0f64;
        for k in &keys {
            let s = staging.get(*k);
            let p = production.get(*k);
            if s.map(|v| &v.value) != p.map(|v| &v.value) {
                let sev = p.or(s).map(|v| v.severity.clone()).unwrap_or_else(|| "high".into());
                worst = worst.max(severity_value(&sev).unwrap_or(3.0));
                drift.push(serde_json::json!({
                    "key": k, "staging": s.map(|v| &v.value), "production": p.map(|v| &v.value), "severity": sev,
                }));
            }
        }
        Parity { compared: keys.len(), drift, worst }
    }

    /// `none`, `low`, `medium`, `high` or `critical`.
    pub(crate) fn severity(&self) -> &'static str {
        ["none", "low", "medium", "high", "critical"][self.worst as usize]
    }

    /// True when the drift is worse than `low`: the step fails.
    pub(crate) fn blocks(&self) -> bool {
        self.worst > 1.0
    }

    /// The parity step's evidence body.
    pub(crate) fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "compared_keys": self.compared,
            "drift": self.drift,
            "drift_severity": self.severity(),
            "status": if self.blocks() { "drift" } else { "parity" },
        })
    }

    /// The note under the parity step.
    pub(crate) fn note(&self) -> String {
        let (compared, drifted, severity) = (self.compared, self.drift.len(), self.severity());
        format!("Parity: {compared} keys compared, {drifted} drifted, drift severity {severity}.")
    }

    /// Why the parity step fails, when the drift blocks.
    pub(crate) fn failure(&self) -> Option<String> {
        let severity = self.severity();
        self.blocks().then(|| format!("configuration drift of severity {severity} between staging and production"))
    }
}

/// A figure as gates show it: integers without decimals, others with up to three.
pub(crate) fn fmt_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.3}").trim_end_matches('0').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(threshold: &str, on_failure: GateFailure) -> Gate {
        serde_json::from_value(serde_json::json!({
            "id": "launch", "number": 2, "name": "Production Launch Gate", "criteria": "healthy",
            "pass_threshold": threshold, "failure_handling": "roll back", "on_failure": on_failure,
        }))
        .expect("a gate")
    }

    fn metrics(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn a_gate_passes_when_every_clause_holds() {
        let g = gate("coverage >= 0.9 and blocking_errors == 0", GateFailure::Halt);
        let m = metrics(&[("coverage", 0.95), ("blocking_errors", 0.0)]);
        let v = evaluate("11", &g, &m, &BTreeMap::new(), &[], Timestamp(7));
        assert_eq!(v.verdict, Verdict::Passed);
        assert_eq!(v.actual(), ["coverage = 0.95", "blocking_errors = 0"]);
        assert_eq!((v.protocol.as_str(), v.gate.as_str(), v.at), ("11", "launch", Timestamp(7)));
    }

    #[test]
    fn an_unmeasured_metric_fails_the_gate() {
        let g = gate("coverage >= 0.9 and blocking_errors == 0", GateFailure::Halt);
        let m = metrics(&[("coverage", 0.95)]);
        let v = evaluate("11", &g, &m, &BTreeMap::new(), &[], Timestamp(7));
        assert_eq!(v.verdict, Verdict::Failed);
        assert_eq!(v.actual(), ["coverage = 0.95", "blocking_errors not measured"]);
        assert!(!measurable(&g, &m));
        assert!(measurable(&g, &metrics(&[("coverage", 0.0), ("blocking_errors", 1.0)])));
    }

    #[test]
    fn a_gate_decides_a_failed_step_once_its_figures_cannot_pass() {
        let g = gate("recovery_seconds <= rto and blocking_findings == 0", GateFailure::Halt);
        // The rehearsal failed before measuring recovery: it never will in this phase.
        assert!(decides(&g, &BTreeMap::new(), &["recovery_seconds"]));
        // A step that measures none of the missing figures leaves the decision to its own halt.
        assert!(!decides(&g, &BTreeMap::new(), &["coverage"]));
        assert!(!decides(&g, &metrics(&[("recovery_seconds", 12.0)]), &["recovery_seconds"]));
        assert!(decides(&g, &metrics(&[("recovery_seconds", 2.0), ("blocking_findings", 0.0)]), &[]));
    }

    #[test]
    fn a_broken_threshold_fails_and_says_why() {
        let g = gate("coverage >=", GateFailure::Halt);
        let v = evaluate("11", &g, &BTreeMap::new(), &BTreeMap::new(), &[], Timestamp(7));
        assert_eq!(v.verdict, Verdict::Failed);
        assert!(v.clauses[0].0.starts_with("invalid threshold: "), "{:?}", v.clauses);
        assert!(!measurable(&g, &BTreeMap::new()));
    }

    #[test]
    fn a_waived_gate_passes_unevaluated() {
        let g = gate("coverage >= 0.9", GateFailure::Halt);
        let waivers = vec![(waiver_key("11", "launch"), "carol".to_string(), "known risk".to_string(), Timestamp(3))];
        let v = evaluate("11", &g, &BTreeMap::new(), &BTreeMap::new(), &waivers, Timestamp(7));
        assert_eq!(v.verdict, Verdict::Waived { by: "carol".into(), justification: "known risk".into() });
        assert!(v.clauses.is_empty());
        assert_eq!(v.threshold, "coverage >= 0.9");
        // A waiver of the same gate id in another protocol does not count.
        let v = evaluate("10", &g, &BTreeMap::new(), &BTreeMap::new(), &waivers, Timestamp(7));
        assert_eq!(v.verdict, Verdict::Failed);
    }

    #[test]
    fn a_rollback_gate_rolls_back_only_what_the_release_changed() {
        let g = gate("x == 0", GateFailure::Rollback);
        let changed = |target, staging| Changed { target, staging };
        assert_eq!(on_failure(&g, changed(false, false)), OnFailure::Halt);
        assert_eq!(on_failure(&g, changed(true, false)), OnFailure::Rollback);
        assert_eq!(on_failure(&g, changed(true, true)), OnFailure::Rollback);
        // Only staging was deployed by the gate's protocol: staging is rolled back, not the target.
        assert_eq!(on_failure(&g, changed(false, true)), OnFailure::RollbackStaging);
        let staging = gate("x == 0", GateFailure::RollbackStaging);
        assert_eq!(on_failure(&staging, changed(true, true)), OnFailure::RollbackStaging);
    }

    #[test]
    fn parity_reports_the_worst_drift() {
        let v = |value: &str, severity: &str| ParityValue { value: value.into(), severity: severity.into() };
        let staging: BTreeMap<String, ParityValue> =
            [("tls".to_string(), v("1.3", "critical")), ("pool".to_string(), v("10", "low"))].into();
        let same = Parity::compare(&staging, &staging);
        assert_eq!((same.compared, same.drift.len(), same.severity(), same.blocks()), (2, 0, "none", false));
        let production: BTreeMap<String, ParityValue> =
            [("tls".to_string(), v("1.3", "critical")), ("pool".to_string(), v("20", "low"))].into();
        let low = Parity::compare(&staging, &production);
        assert_eq!((low.drift.len(), low.severity(), low.blocks()), (1, "low", false));
        let only_staging: BTreeMap<String, ParityValue> = [("tls".to_string(), v("1.3", "bogus"))].into();
        let missing = Parity::compare(&only_staging, &BTreeMap::new());
        assert_eq!((missing.severity(), missing.blocks()), ("high", true));
    }

    #[test]
    fn a_failed_gate_is_announced_in_the_seed_template() {
        let g = gate("x == 0", GateFailure::Halt);
        assert_eq!(
            failure_text(&g, "x = 1"),
            "[RAY GATE FAILED: Production Launch Gate]\n> \"Quality gate 'Production Launch Gate' failed.\n> Criteria: healthy\n> Actual: x = 1\n> Required action: roll back\""
        );
    }

    #[test]
    fn only_the_gate_halted_at_may_be_waived_with_a_reason() {
        let plan = crate::engine::testkit::sample_plan("production");
        let p = plan.protocols.iter().find(|p| p.gates.iter().any(|g| g.waivable)).expect("a waivable gate");
        let g = p.gates.iter().find(|g| g.waivable).expect("a waivable gate");
        let why = "accepted for this release";
        assert_eq!(waivable(p, Some(&g.id), "s", &g.name.to_uppercase(), why).map(|g| &g.id), Ok(&g.id));
        assert_eq!(waivable(p, Some(&g.id), "s", &g.number.to_string(), why).map(|g| &g.id), Ok(&g.id));
        assert_eq!(
            waivable(p, None, "STEP 1", &g.id, why),
            Err(BadArgument::OtherGate { step: "STEP 1".into(), gate: g.id.clone() })
        );
        assert_eq!(waivable(p, Some(&g.id), "s", &g.id, "because"), Err(BadArgument::ShortJustification));
        assert!(matches!(waivable(p, Some(&g.id), "s", "nope", why), Err(BadArgument::UnknownGate { .. })));
        if let Some(fixed) = p.gates.iter().find(|g| !g.waivable) {
            let refused = waivable(p, Some(&fixed.id), "s", &fixed.id, why);
            assert_eq!(refused, Err(BadArgument::NotWaivable { gate: fixed.id.clone(), name: fixed.name.clone() }));
        }
    }

    #[test]
    fn blocking_drift_fails_the_parity_step_naming_its_severity() {
        let value = |v: &str, sev: &str| ParityValue { value: v.into(), severity: sev.into() };
        let staging =
            BTreeMap::from([("db".to_string(), value("14", "high")), ("tz".to_string(), value("UTC", "low"))]);
        let production =
            BTreeMap::from([("db".to_string(), value("15", "high")), ("tz".to_string(), value("UTC", "low"))]);
        let p = Parity::compare(&staging, &production);
        assert_eq!(p.note(), "Parity: 2 keys compared, 1 drifted, drift severity high.");
        assert_eq!(p.failure(), Some("configuration drift of severity high between staging and production".into()));
        assert_eq!(p.body()["status"], "drift");
        assert_eq!(Parity::compare(&staging, &staging).failure(), None);
    }

    #[test]
    fn figures_print_without_noise() {
        assert_eq!(fmt_num(3.0), "3");
        assert_eq!(fmt_num(0.95), "0.95");
        assert_eq!(fmt_num(1.0 / 3.0), "0.333");
    }
}
