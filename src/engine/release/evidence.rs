//! Evidence contents: every file names the release, the protocol, the step and the time, and holds
//! the figures the release really produced.
//!
//! These are read-only views of a [`Release`]: they read its data and return text. Nothing here
//! changes the release or decides anything, and the release's own files do not import from here
//! (they call these methods on `self`), so evidence depends on the release's data, not the other
//! way round.

use serde_json::{Value, json};

use super::approval::ApprovalRound;
use super::gates::{GateVerdict, Verdict};
use super::jobs::{JobAsk, Vars};
use super::rehearsal;
use super::scores::Validation;
use super::state::Release;
use super::state::{JobRecord, RollbackRecord};
use super::steps::SECURITY_SCAN;
use crate::engine::Timestamp;
use crate::engine::ids::JobId;
use crate::engine::plan::{Environment, JobTemplate};
use crate::engine::reports::{JobOutcome, ProbeReport};
use crate::protocol::model::{DocumentTemplate, Step};

impl Release {
    /// The validation step's report: each suite's result (its job, exit, the test report the
    /// runtime read with its digest and counts), the probe, and the figures gates read with where
    /// they come from.
    pub(super) fn validation_body(
        &self,
        env: &str,
        e: &Environment,
        suite_jobs: &[JobRecord],
        score: &Validation,
        report: &ProbeReport,
    ) -> Value {
        use super::scores::CaseSource;
        use crate::engine::reports::ReportRead;
        let counted_from = |source: &CaseSource| match source {
            CaseSource::Exit => "job exit (the suite names no report)",
            CaseSource::Report { exit_counted: false } => "test report",
            CaseSource::Report { exit_counted: true } => {
                "test report, plus the job's failed exit as one failed case (the report names no failure)"
            }
            CaseSource::Unmeasured(_) => "nothing: the report gave no count",
        };
        let runs: Vec<_> = suite_jobs.iter().zip(&e.validation).zip(&score.suites).collect();
        let suites: Vec<Value> = runs
            .iter()
            .map(|((j, s), c)| {
                let outcome = j.outcome.as_ref();
                let test_report = outcome.and_then(|o| o.report.as_ref()).map(|r| {
                    let mut v = json!({"format": r.format.as_str(), "path": r.path, "sha256": r.sha256});
                    let read = match &r.read {
                        ReportRead::Parsed(n) => json!({
                            "status": "parsed", "tests": n.tests, "failures": n.failures, "errors": n.errors,
                            "skipped": n.skipped, "failed_cases": n.failed_cases,
                        }),
                        ReportRead::Missing => json!({"status": "missing"}),
                        ReportRead::Unreadable { error } => json!({"status": "unreadable", "error": error}),
                        ReportRead::Malformed { error } => json!({"status": "malformed", "error": error}),
                    };
                    if let (Some(v), Value::Object(read)) = (v.as_object_mut(), read) {
                        v.extend(read);
                    }
                    v
                });
                json!({
                    "suite": s.name, "critical": s.critical, "job": j.id, "argv": shown_args(&j.argv),
                    "passed": c.clean(),
                    "exit_code": outcome.and_then(|o| o.exit_code),
                    "summary": outcome.map(JobOutcome::summary),
                    "duration_ms": outcome.map(|o| o.duration_ms),
                    "report_format": s.report.map(|f| f.as_str()),
                    "report": test_report,
                    "cases": {
                        "counted_from": counted_from(&c.source), "targeted": c.targeted, "passed": c.passed,
                        "failed": c.failed, "skipped": c.skipped, "not_measured_because": c.unmeasured(),
                    },
                    "output_tail": outcome.map(|o| o.log_tail.clone()),
                })
            })
            .collect();
        let coverage_source = if runs.is_empty() {
            json!({"formula": "no test suite configured: 1 when the probe is healthy, 0 otherwise"})
        } else {
            let inputs: Vec<Value> = runs
                .iter()
                .map(|((j, s), c)| {
                    let r = j.outcome.as_ref().and_then(|o| o.report.as_ref());
                    json!({
                        "suite": s.name, "counted_from": counted_from(&c.source), "passed": c.passed,
                        "targeted": c.targeted, "report": r.map(|r| &r.path), "sha256": r.and_then(|r| r.sha256.as_ref()),
                    })
                })
                .collect();
            json!({
                "formula": "test cases passed / test cases targeted, over the suites' test reports (skipped cases are targeted, not passed; a suite without a report counts its job's exit as one case; a report that gave no count leaves coverage not measured)",
                "passed": score.passed,
                "targeted": score.targeted,
                "inputs": inputs,
                "not_measured_because": score.unmeasured(&e.validation),
            })
        };
        json!({
            "environment": env,
            "suites": suites,
            "suites_passed": score.suites_passed(),
            "suites_targeted": suite_jobs.len(),
            "cases_passed": score.passed,
            "cases_targeted": score.targeted,
            "coverage": score.coverage,
            "coverage_source": coverage_source,
            "probe": report,
            "validation_success_rate": report.success_rate(),
            "thresholds": {"min_success_rate": e.probe.min_success_rate, "max_p95_ms": e.probe.max_p95_ms},
            "blocking": score.blocking,
            "blocking_source": "failed test cases of critical suites (one for a critical suite whose report gave no count), plus one for an unhealthy probe",
            "result": if score.blocking == 0.0 { "passed" } else { "failed" },
        })
    }

    /// The security step's report: the scan's result and its blocking findings (`None` when no
    /// scan is configured).
    pub(super) fn security_body(outcome: Option<&JobOutcome>, findings: Option<f64>) -> Value {
        json!({
            "scan": outcome.map(|_| "security job"),
            "exit_code": outcome.and_then(|o| o.exit_code),
            "summary": outcome.map(JobOutcome::summary),
            "blocking_findings": findings,
            "findings": outcome.map(|o| o.log_tail.clone()).unwrap_or_default(),
            // Said as it is rather than left null: nothing here was asked of a person, and only
            // the `security` job's own checks ran.
            "approvals": "none requested: no step asks the security and compliance lead to clear this scan",
            "not_checked": ["licence audit", "compliance validation"],
            "status": match findings { Some(0.0) => "cleared", Some(_) => "blocking findings", None => "not run" },
        })
    }

    /// The rollback rehearsal on `env`: its jobs, the three probes that prove it by the served
    /// version (candidate before, previous after the rollback, candidate after the roll
    /// forward) and the recovery time against the RTO.
    pub(super) fn rehearsal_body(&self, env: &str, recovery_ms: Option<u64>, failure: Option<String>) -> Value {
        let jobs: Vec<Value> = self
            .jobs
            .iter()
            .filter(|j| j.env == env && (j.purpose.starts_with("rollback rehearsal") || j.purpose.starts_with("roll forward")))
            .map(|j| json!({"action": j.purpose, "argv": shown_args(&j.argv), "exit_code": j.outcome.as_ref().and_then(|o| o.exit_code), "duration_ms": j.outcome.as_ref().map(|o| o.duration_ms), "started_at": j.started_at.rfc3339()}))
            .collect();
        // This rehearsal's probes: those since its last "before" probe.
        let first = self.probes.iter().rposition(|p| p.env == env && p.purpose.starts_with(rehearsal::BEFORE));
        let ours = first.map_or(&[][..], |i| &self.probes[i..]);
        let probe = |purpose: &str| {
            ours.iter().rev().find(|p| p.env == env && p.purpose.starts_with(purpose)).and_then(|p| p.report.clone())
        };
        let (before, after, forward) =
            (probe(rehearsal::BEFORE), probe(rehearsal::AFTER_ROLLBACK), probe(rehearsal::AFTER_ROLL_FORWARD));
        let served = |r: &Option<ProbeReport>| r.as_ref().map(|r| r.versions.clone());
        let rto = self.constants().get("rto").copied().unwrap_or(0.0);
        json!({
            "environment": env,
            "candidate": self.version,
            "steps": jobs,
            "proof": {
                "candidate_serving_before": served(&before),
                "serving_after_rollback": served(&after),
                "serving_after_roll_forward": served(&forward),
                "proven": recovery_ms.is_some() && failure.is_none(),
            },
            "probe_before_rollback": before,
            "probe_after_rollback": after,
            "probe_after_roll_forward": forward,
            "recovery_seconds": recovery_ms.map(|m| m as f64 / 1000.0),
            "recovery_measured": "from the start of the rollback job to the probe showing the previous version serving",
            "rto_seconds": rto,
            "within_rto": recovery_ms.map(|m| m as f64 / 1000.0 <= rto),
            "failure": failure,
        })
    }

    /// The signatures of go/no-go round `r`, with the gates and waivers known when it was decided;
    /// for a rejected round also who rejected (named as the signatures name people), when, how
    /// and why.
    pub(super) fn approval_body(&self, r: &ApprovalRound) -> Value {
        let signatures: Vec<Value> = r
            .approvals
            .iter()
            .map(|a| {
                json!({
                    "user": self.plan.people.label(&a.user), "name": a.name, "roles": a.roles, "approved_at": a.at.rfc3339(),
                    "comment": a.comment, "via": a.via, "platform": self.plan.people.platform,
                })
            })
            .collect();
        let mut body = json!({
            "decision": r.decision,
            "required_roles": r.roles,
            "requested_at": r.opened_at.rfc3339(),
            "decided_at": r.decided_at.map(|t| t.rfc3339()),
            "initiator": self.plan.people.label(&self.started_by.id),
            "signatures": signatures,
            "gates_so_far": self.gates.iter().map(|g| json!({"gate": g.name, "verdict": self.verdict_json(&g.verdict)})).collect::<Vec<_>>(),
            "risks": self.waivers.iter().map(|w| json!({"waived_gate": w.0, "by": self.plan.people.label(&w.1), "justification": w.2})).collect::<Vec<_>>(),
        });
        if let (Some(x), Value::Object(b)) = (&r.rejection, &mut body) {
            b.insert(
                "rejected_by".into(),
                json!({
                    "user": self.plan.people.label(&x.user), "name": x.name, "roles": x.roles,
                    "platform": self.plan.people.platform, "via": x.via,
                }),
            );
            b.insert("rejected_at".into(), json!(x.at.rfc3339()));
            b.insert("reason".into(), json!(x.reason));
        }
        body
    }

    /// The deploy step's report: every deploy job on `env` and the probes between the steps.
    pub(super) fn deploy_report_body(&self, env: &str, failure: Option<&str>) -> Value {
        let actions: Vec<Value> = self
            .jobs
            .iter()
            .filter(|j| j.env == env && j.purpose.starts_with("deploy "))
            .map(|j| {
                json!({
                    "action": j.purpose, "argv": shown_args(&j.argv), "started_at": j.started_at.rfc3339(),
                    "finished_at": j.finished_at.map(|t| t.rfc3339()),
                    "exit_code": j.outcome.as_ref().and_then(|o| o.exit_code),
                    "timed_out": j.outcome.as_ref().map(|o| o.timed_out),
                    "duration_ms": j.outcome.as_ref().map(|o| o.duration_ms),
                    "log": j.log,
                })
            })
            .collect();
        let probes: Vec<Value> = self
            .probes
            .iter()
            .filter(|p| p.env == env && p.purpose.starts_with("after deploy"))
            .map(|p| json!({"purpose": p.purpose, "report": p.report}))
            .collect();
        json!({
            "environment": env,
            "strategy": self.strategy.as_str(),
            "steps": self.strategy.steps(),
            "actions": actions,
            "probes_between_steps": probes,
            "result": if failure.is_some() { "failed" } else { "succeeded" },
            "failure": failure,
        })
    }

    pub(super) fn header(&self, now: Timestamp, step: &Step) -> Value {
        let p = self.plan.protocols.get(self.cursor.protocol).or(self.plan.protocols.last());
        json!({
            "release": {
                "id": self.id, "version": self.version, "environment": self.env, "strategy": self.strategy.as_str(),
                "started_by": self.plan.people.label(&self.started_by.id), "started_at": self.started_at.rfc3339(),
            },
            "protocol": { "id": p.map(|p| p.id.clone()), "title": p.map(|p| p.title.clone()) },
            "step": { "id": step.id, "title": step.title, "level": step.level },
            "generated_at": now.rfc3339(),
            "generated_by": "raybot",
        })
    }

    /// A JSON evidence document: the common header plus `body`'s fields.
    pub(super) fn json_doc(&self, now: Timestamp, step: &Step, body: Value) -> String {
        let mut doc = self.header(now, step);
        if let (Some(d), Value::Object(b)) = (doc.as_object_mut(), body) {
            d.extend(b);
        }
        serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
    }

    pub(super) fn md_header(&self, now: Timestamp, title: &str, step: Option<&Step>) -> String {
        let p = self.plan.protocols.get(self.cursor.protocol).or(self.plan.protocols.last());
        let mut s = format!(
            "# {title}\n\n- Release: {} ({} → {}, strategy {})\n- Protocol: {}\n",
            self.id,
            self.version,
            self.env,
            self.strategy.as_str(),
            p.map(|p| format!("{} — {}", p.id, p.title)).unwrap_or_default(),
        );
        if let Some(step) = step {
            s.push_str(&format!("- Step: {} ({:?})\n", step.title, step.level));
        }
        s.push_str(&format!(
            "- Generated: {} by raybot\n- Started by: {} at {}\n\n",
            now.rfc3339(),
            self.plan.people.label(&self.started_by.id),
            self.started_at.rfc3339()
        ));
        s
    }

    /// A person with their roles, e.g. `Carol Example (slack U0CAROL003; sre_lead)`.
    pub(super) fn person(&self, id: &str) -> String {
        let roles = self.plan.people.get(id).map(|p| p.roles.as_slice()).unwrap_or_default();
        self.person_as(id, roles)
    }

    /// Documents computed from the release: returns the file contents (if the template writes one) and
    /// the line posted in chat.
    pub(super) fn document(&self, now: Timestamp, template: DocumentTemplate, step: &Step) -> (Option<String>, String) {
        match template {
            DocumentTemplate::DeploymentChecklist => {
                let mut s = self.md_header(now, "Production deployment checklist", Some(step));
                s.push_str("## Checklist (updated from the staging rehearsal)\n\n");
                for j in self.jobs.iter().filter(|j| j.env == "staging") {
                    let o = j.outcome.as_ref().map(|o| o.summary()).unwrap_or_else(|| "no result".into());
                    s.push_str(&format!("- [x] `{}` — {} ({})\n", shown(&j.argv), j.purpose, o));
                }
                if let Some(prod) = self.plan.environment(&self.env) {
                    s.push_str(&format!(
                        "- [ ] Deploy {} to {} ({}, traffic steps {:?}):\n",
                        self.version,
                        self.env,
                        self.strategy.as_str(),
                        self.strategy.steps(),
                    ));
                    for percent in self.strategy.steps() {
                        s.push_str(&format!("  - `{}`\n", self.command(&self.env, &prod.deploy, *percent)));
                    }
                    s.push_str(&format!(
                        "- [ ] Probe {} after each step: success ≥ {:.0}%, p95 ≤ {} ms\n- [ ] Rollback ready: `{}` (RTO {} s)\n",
                        prod.probe.url,
                        prod.probe.min_success_rate * 100.0,
                        prod.probe.max_p95_ms,
                        self.command(&self.env, &prod.rollback, 0),
                        prod.rto_seconds
                    ));
                }
                s.push_str("\n## Learnings from the rehearsal\n\n");
                let failed: Vec<_> =
                    self.jobs.iter().filter(|j| j.outcome.as_ref().is_some_and(|o| !o.succeeded())).collect();
                if failed.is_empty() {
                    s.push_str("- No failures during the rehearsal.\n");
                }
                for j in failed {
                    s.push_str(&format!(
                        "- {} failed: {}\n",
                        j.purpose,
                        j.outcome.as_ref().map(|o| o.summary()).unwrap_or_default()
                    ));
                }
                for w in &self.waivers {
                    s.push_str(&format!("- Gate {} waived by {}: {}\n", w.0, self.plan.people.label(&w.1), w.2));
                }
                s.push_str(&format!(
                    "\n## Communication plan\n\n- Channel: {}\n- Stakeholders: {}\n",
                    self.plan.channel,
                    self.plan.people.persons.iter().map(|p| self.person(&p.id)).collect::<Vec<_>>().join("; ")
                ));
                (Some(s), "deployment checklist updated from the rehearsal (deployment-checklist.md).".into())
            }
            DocumentTemplate::ReleaseManifest => {
                let mut s = self.md_header(now, "Release manifest", Some(step));
                s.push_str(&format!(
                    "## Scope\n\n- Version: {}\n- Target: {}\n- Rollout strategy: {} ({:?}% traffic steps)\n",
                    self.version,
                    self.env,
                    self.strategy.as_str(),
                    self.strategy.steps()
                ));
                if let Some(e) = self.plan.environment(&self.env) {
                    s.push_str(&format!(
                        "- Impacted service endpoint: {}\n\n## Rollback procedure\n\n- `{}` (timeout {} s, RTO {} s)\n",
                        e.probe.url,
                        self.command(&self.env, &e.rollback, 0),
                        e.rollback.timeout_ms / 1000,
                        e.rto_seconds
                    ));
                }
                let planned = self.release_plan();
                s.push_str(&planned.section);
                s.push_str("\n## Stakeholders\n\n");
                for p in &self.plan.people.persons {
                    s.push_str(&format!("- {}\n", self.person(&p.id)));
                }
                s.push_str("\n## Confirmations\n\n");
                for round in self.rounds.iter().filter(|x| x.is_approved()) {
                    for a in &round.approvals {
                        s.push_str(&format!(
                            "- {} approved `{}` (Protocol {}) at {}\n",
                            self.person(&a.user),
                            round.step,
                            round.protocol,
                            a.at.rfc3339()
                        ));
                    }
                }
                for g in &self.gates {
                    s.push_str(&format!("- Gate {} (Protocol {}): {}\n", g.name, g.protocol, self.verdict(&g.verdict)));
                }
                (
                    Some(s),
                    format!(
                        "release scope {}: {} → {}, {} stakeholders listed (release-manifest.md).",
                        planned.said,
                        self.version,
                        self.env,
                        self.plan.people.persons.len()
                    ),
                )
            }
            DocumentTemplate::DeploymentWindow => {
                let on_call = |role: &str| -> Vec<String> {
                    self.plan.people.with_roles(&[role.to_string()]).iter().map(|p| self.mention(&p.id)).collect()
                };
                let (sre, po) = (on_call("sre_lead"), on_call("product_owner"));
                (
                    None,
                    format!(
                        "Deployment window: from {} (now); communication channel: {}; on-call: SRE ({}), Product ({}).",
                        now.rfc3339(),
                        self.plan.channel,
                        sre.join(", "),
                        po.join(", ")
                    ),
                )
            }
            DocumentTemplate::RunbookCoverage => {
                let sre: Vec<String> =
                    self.plan.people.with_roles(&["sre_lead".to_string()]).iter().map(|p| p.name.clone()).collect();
                let rm: Vec<String> = self
                    .plan
                    .people
                    .with_roles(&["release_manager".to_string()])
                    .iter()
                    .map(|p| p.name.clone())
                    .collect();
                let rollback = self
                    .plan
                    .environment(&self.env)
                    .map(|e| self.command(&self.env, &e.rollback, 0))
                    .unwrap_or_default();
                (
                    None,
                    format!(
                        "On-call: Primary SRE ({}), escalation: Release Manager ({}). Runbook: rollback with `{rollback}`.",
                        sre.join(", "),
                        rm.join(", ")
                    ),
                )
            }
            DocumentTemplate::RetrospectiveInputs => (
                Some(self.json_doc(now, step, self.retrospective_body(None))),
                "retrospective inputs recorded (retrospective-inputs.json).".into(),
            ),
        }
    }

    pub(super) fn freeze_doc(&self, now: Timestamp, step: &Step) -> String {
        let mut s = self.md_header(now, "Change freeze confirmation", Some(step));
        s.push_str(&format!(
        "Freeze announced: {}\nConfirmed: {}\nReminders sent: {}\n\n| Stakeholder | Roles | Acknowledged at | Via |\n|---|---|---|---|\n",
        self.freeze.opened_at.map(|t| t.rfc3339()).unwrap_or_default(),
        self.freeze.confirmed_at.map(|t| t.rfc3339()).unwrap_or_else(|| "not yet".into()),
        self.freeze.reminders
    ));
        for u in &self.freeze.required {
            let roles = self.plan.people.get(u).map(|p| p.roles.join(", ")).unwrap_or_default();
            let who = self.plan.people.label(u);
            match self.freeze.acks.get(u) {
                Some((t, via)) => s.push_str(&format!("| {who} | {roles} | {} | {via} |\n", t.rfc3339())),
                None => s.push_str(&format!("| {who} | {roles} | MISSING | |\n")),
            }
        }
        s.push_str(&format!(
            "\nAcknowledgements: {}/{} ({:.0}%).\n",
            self.freeze.acks.len(),
            self.freeze.required.len(),
            100.0 * self.freeze.acks.len() as f64 / self.freeze.required.len().max(1) as f64
        ));
        s
    }

    pub(super) fn baseline_doc(&self, now: Timestamp, step: &Step, p: &ProbeReport) -> String {
        let mut s = self.md_header(now, "Observability baseline", Some(step));
        s.push_str(&format!(
        "- Metric: API latency (p95) – {}ms\n- Metric: API latency (p50) – {}ms\n- Metric: Error rate – {:.1}%\n- Sample: {} requests to {}\n",
        p.p95_ms,
        p.p50_ms,
        100.0 * (1.0 - p.success_rate()),
        p.total,
        p.url
    ));
        s
    }

    pub(super) fn health_log(&self, now: Timestamp, step: &Step, e: &Environment) -> String {
        let mut s = self.md_header(now, "Deployment health log", Some(step));
        s.push_str(&format!(
        "Soak period: {} s, probing {} every {} s. SLO: success ≥ {:.0}%, p95 ≤ {} ms.\n\n| # | healthy | success | p50 ms | p95 ms | versions | within SLO |\n|---|---|---|---|---|---|---|\n",
        e.health_window.duration_ms / 1000,
        e.probe.url,
        e.health_window.interval_ms / 1000,
        e.probe.min_success_rate * 100.0,
        e.probe.max_p95_ms
    ));
        for (i, p) in self.soak.iter().enumerate() {
            let ok = p.success_rate() + 1e-9 >= e.probe.min_success_rate && p.p95_ms <= e.probe.max_p95_ms;
            let versions: Vec<String> = p.versions.iter().map(|(v, n)| format!("{v}×{n}")).collect();
            s.push_str(&format!(
                "| {} | {}/{} | {:.0}% | {} | {} | {} | {} |\n",
                i + 1,
                p.ok,
                p.total,
                p.success_rate() * 100.0,
                p.p50_ms,
                p.p95_ms,
                versions.join(" "),
                if ok { "yes" } else { "NO" }
            ));
        }
        let breaches = self
            .soak
            .iter()
            .filter(|p| !(p.success_rate() + 1e-9 >= e.probe.min_success_rate && p.p95_ms <= e.probe.max_p95_ms))
            .count();
        s.push_str(&format!(
            "\nObservations: {} rounds, {breaches} SLO breaches. Decision: {}.\n",
            self.soak.len(),
            if breaches == 0 { "stable, proceed to reporting" } else { "escalate to Protocol 13" }
        ));
        s
    }

    /// A job's result for evidence text, e.g. `exit 1 in 0.2s`.
    pub(super) fn result(j: &JobRecord) -> String {
        j.outcome.as_ref().map(JobOutcome::summary).unwrap_or_else(|| "no result".into())
    }

    /// The protocol gate a verdict is of.
    pub(super) fn gate_of(&self, g: &GateVerdict) -> Option<&crate::protocol::model::Gate> {
        self.plan.protocols.iter().find(|p| p.id == g.protocol)?.gates.iter().find(|x| x.id == g.gate)
    }

    /// The environment a job is listed under: the security scan checks the candidate, not an
    /// environment.
    pub(super) fn job_env(&self, j: &JobRecord) -> String {
        if j.purpose == SECURITY_SCAN { format!("candidate {} (no environment)", self.version) } else { j.env.clone() }
    }

    /// The command `template` runs on `env` at traffic share `percent`, as the release expands
    /// it for its jobs (see [`JobAsk::spec`]) and evidence shows it.
    pub(super) fn command(&self, env: &str, template: &JobTemplate, percent: u8) -> String {
        let ask = JobAsk::new(env, String::new(), template, String::new()).at(percent);
        let vars = Vars { id: &self.id, version: &self.version, strategy: self.strategy };
        shown(&ask.spec(&JobId::new(&self.id, 0), vars).argv)
    }
}

/// The release plan as the intake read it from `release-manifest.json`.
struct ReleasePlan {
    /// The manifest's section of `release-manifest.md`.
    section: String,
    /// What the step's note says of the scope.
    said: String,
}

impl Release {
    /// The services and scope of the Release Planning manifest (`release-manifest.json`), as the
    /// intake's content checks read them, with the digest of the file read; or that it was not read.
    fn release_plan(&self) -> ReleasePlan {
        let read = self
            .inputs
            .iter()
            .rev()
            .flat_map(|(_, results)| results.iter())
            .find(|r| r.name.ends_with("release-manifest.json") && !r.content.is_empty());
        let Some(r) = read else {
            return ReleasePlan {
                section:
                    "\n## Release plan\n\n- Not read: no `release-manifest.json` content was checked by the intake.\n"
                        .into(),
                said: "not read from a release plan (only the release's own settings)".into(),
            };
        };
        let mut section = format!(
            "\n## Release plan (release-manifest.json, SHA-256 {})\n\n",
            r.sha256.as_deref().unwrap_or("unknown")
        );
        let mut found = Vec::new();
        for c in &r.content {
            let value = match &c.found {
                Some(serde_json::Value::Array(items)) => items
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(", "),
                Some(v) => v.as_str().map_or_else(|| v.to_string(), str::to_string),
                None => format!("not found ({})", c.error.as_deref().unwrap_or("missing")),
            };
            section.push_str(&format!("- {}: {value}\n", c.field));
            found.push(format!("{} {value}", c.field));
        }
        let ok = r.content.iter().all(|c| c.ok);
        let said = if ok {
            format!("read from release-manifest.json ({})", found.join("; "))
        } else {
            format!("incomplete in release-manifest.json ({})", found.join("; "))
        };
        ReleasePlan { section, said }
    }
}

/// A command line as evidence shows it: `{artifacts}`, which the runtime replaces with this
/// release's evidence folder, becomes a path relative to that folder, as every path in evidence is.
pub(super) fn shown(argv: &[String]) -> String {
    shown_args(argv).join(" ")
}

/// Each argument as evidence shows it (see [`shown`]).
fn shown_args(argv: &[String]) -> Vec<String> {
    argv.iter().map(|a| a.replace("{artifacts}/", "").replace("{artifacts}", ".")).collect()
}

impl Release {
    /// A person with `roles`, named as evidence names people: `Carol Example (slack U0CAROL003;
    /// sre_lead)`.
    pub(super) fn person_as(&self, id: &str, roles: &[String]) -> String {
        let people = &self.plan.people;
        match people.get(id) {
            Some(p) => format!("{} ({} {id}; {})", p.name, people.platform, roles.join(", ")),
            None => people.label(id),
        }
    }

    /// A gate verdict in Markdown evidence.
    pub(super) fn verdict(&self, v: &Verdict) -> String {
        match v {
            Verdict::Passed => "passed".into(),
            Verdict::Failed => "FAILED".into(),
            Verdict::Waived { by, justification } => {
                format!("waived by {}: {justification}", self.plan.people.label(by))
            }
        }
    }

    /// A gate verdict in JSON evidence: as stored, with a waiver's author named as evidence names
    /// people.
    pub(super) fn verdict_json(&self, v: &Verdict) -> Value {
        match v {
            Verdict::Waived { by, justification } => {
                json!({"waived": {"by": self.plan.people.label(by), "justification": justification}})
            }
            other => json!(other),
        }
    }

    /// Who triggered `rb`: `automatic`, or the person who asked, named as evidence names people.
    pub(super) fn trigger_label(&self, rb: &RollbackRecord) -> String {
        rb.asked_by().map(|u| self.plan.people.label(u)).unwrap_or_else(|| rb.trigger.clone())
    }
}
