//! The closing record of a release: `rollback-plan.md` (only the rollback steps that ran),
//! `DEPLOYMENT-REPORT.md` with its go/no-go decision and its full communication log, and
//! `retrospective-inputs.json` on every ending. Read-only views of a [`Release`], as in
//! `evidence.rs`, whose helpers (headers, people, verdicts, commands) they share.

use serde_json::{Value, json};

use super::approval::Rejection;
use super::evidence::shown;
use super::gates::{Verdict, fmt_num};
use super::rollout;
use super::state::Release;
use super::state::{Activity, JobRecord, ProbeRecord, RollbackRecord, Terminal};
use crate::engine::Timestamp;
use crate::engine::reports::JobOutcome;
use crate::protocol::model::{DocumentTemplate, StepRun};

impl Release {
    /// `rollback-plan.md` once the rollback is confirmed: its trigger, and the rollback jobs the
    /// release ran (never other jobs), each with its command, result, reason and confirming probe.
    pub(super) fn rollback_plan(&self, now: Timestamp, rollback: Option<&RollbackRecord>) -> String {
        let mut s = self.md_header(now, "Rollback plan (triggered)", None);
        if let Some(rb) = rollback {
            s.push_str(&format!(
            "## Trigger\n\n- Reason: {}\n- Triggered by: {}\n- Started: {}\n- Finished: {}\n- Confirmation probe: {}\n\n",
            self.plan.people.unmention(&rb.reason),
            self.trigger_label(rb),
            rb.started_at.rfc3339(),
            rb.finished_at.map(|t| t.rfc3339()).unwrap_or_else(|| "not finished".into()),
            rb.confirmed.clone().unwrap_or_else(|| "none".into())
        ));
        }
        s.push_str("## Steps executed\n\n");
        let steps = self.rollback_steps(rollback);
        if steps.is_empty() {
            s.push_str("No rollback job ran.\n");
        }
        for (n, step) in steps.iter().enumerate() {
            let j = step.job;
            s.push_str(&format!(
                "{}. `{}` — {} — {}\n   - Started: {}; finished: {}; log: {}\n   - Reason: {} (trigger: {})\n   - Confirming probe: {}\n",
                n + 1,
                shown(&j.argv),
                j.purpose,
                j.outcome.as_ref().map(|o| o.summary()).unwrap_or_else(|| "no result".into()),
                j.started_at.rfc3339(),
                j.finished_at.map(|t| t.rfc3339()).unwrap_or_else(|| "not finished".into()),
                j.log,
                step.reason,
                step.trigger,
                match step.probe.and_then(|p| p.report.as_ref().map(|r| (p, r))) {
                    Some((p, r)) => format!("{} at {}: {}", p.purpose, p.started_at.rfc3339(), rollout::summary(r)),
                    None => "none".into(),
                },
            ));
        }
        let why = rollback.map(|rb| self.plan.people.unmention(&rb.reason)).unwrap_or_else(|| "the rollback".into());
        s.push_str(&format!(
            "\n## Follow-up (Protocol 13)\n\n- Incident review of: {why}; the logs named above are in this folder.\n- Stakeholders notified in the war room (DEPLOYMENT-REPORT.md holds the communication log).\n"
        ));
        s
    }

    /// The rollback jobs the release ran (`rollback <env>`; rehearsals are not rollbacks), with
    /// why each ran, who or what triggered it, and the probe that checked it.
    fn rollback_steps(&self, rollback: Option<&RollbackRecord>) -> Vec<RollbackStepRecord<'_>> {
        let rollbacks: Vec<&JobRecord> =
            self.jobs.iter().filter(|j| j.purpose == format!("rollback {}", j.env)).collect();
        rollbacks
            .iter()
            .enumerate()
            .map(|(i, &job)| {
                // Its probe: after it, before the next rollback job of the same environment.
                let next = rollbacks[i + 1..].iter().find(|k| k.env == job.env).map(|k| k.started_at);
                let probe = self.probes.iter().find(|p| {
                    p.env == job.env
                        && p.purpose == format!("after rollback {}", job.env)
                        && p.started_at >= job.started_at
                        && next.is_none_or(|t| p.started_at < t)
                });
                let (reason, trigger) = match rollback.or(self.rollback.as_ref()) {
                    Some(rb) if rb.env == job.env => (self.plan.people.unmention(&rb.reason), self.trigger_label(rb)),
                    _ => match self.gates.iter().rev().find(|g| g.verdict == Verdict::Failed && g.at <= job.started_at)
                    {
                        Some(g) => (
                            format!(
                                "{} failed: {}; its failure handling rolls {} back",
                                g.name,
                                g.actual().join(", "),
                                job.env
                            ),
                            "automatic".into(),
                        ),
                        None => ("not recorded".into(), "automatic".into()),
                    },
                };
                RollbackStepRecord { job, probe, reason, trigger }
            })
            .collect()
    }

    /// `DEPLOYMENT-REPORT.md`: the whole release on one page.
    pub(super) fn deployment_report(&self, now: Timestamp, outcome: Option<&Terminal>) -> String {
        let mut s = self.md_header(now, "DEPLOYMENT REPORT", None);
        let status = match outcome {
            Some(t) => t.label().to_string(),
            None => self.activity.label(),
        };
        s.push_str(&format!("**Outcome:** {status}\n\n"));
        s.push_str(&self.no_go_section());
        s.push_str(
            "## Quality gates\n\n| Protocol | Gate | Threshold | Actual | Verdict | At |\n|---|---|---|---|---|---|\n",
        );
        for g in &self.gates {
            let actual: Vec<String> = g
                .clauses
                .iter()
                .map(|c| {
                    format!(
                        "{} = {}",
                        c.0.split_whitespace().next().unwrap_or(""),
                        c.1.map(fmt_num).unwrap_or_else(|| "n/a".into())
                    )
                })
                .collect();
            s.push_str(&format!(
                "| {} | {} | `{}` | {} | {} | {} |\n",
                g.protocol,
                g.name,
                g.threshold,
                actual.join(", "),
                self.verdict(&g.verdict),
                g.at.rfc3339()
            ));
        }
        s.push_str("\n## Approvals\n\n");
        for round in &self.rounds {
            s.push_str(&format!(
                "- Protocol {} `{}` ({}): {}\n",
                round.protocol,
                round.step,
                round.roles.join(", "),
                round.decision.clone().unwrap_or_else(|| "pending".into())
            ));
            for a in &round.approvals {
                s.push_str(&format!(
                    "  - {} at {} via {}{}\n",
                    self.person(&a.user),
                    a.at.rfc3339(),
                    a.via,
                    a.comment.as_ref().map(|c| format!(" — “{c}”")).unwrap_or_default()
                ));
            }
            if let Some(x) = &round.rejection {
                s.push_str(&format!(
                    "  - rejected by {} at {} via {} — “{}”\n",
                    self.rejecter(x),
                    x.at.rfc3339(),
                    x.via,
                    x.reason
                ));
            }
        }
        s.push_str(&format!(
            "\n## Change freeze\n\n- {}/{} acknowledged",
            self.freeze.acks.len(),
            self.freeze.required.len()
        ));
        if let Some(t) = self.freeze.confirmed_at {
            s.push_str(&format!(", confirmed {}", t.rfc3339()));
        }
        s.push_str("\n\n## Jobs\n\nPaths are relative to this release's evidence folder (a job's log shows its command as run).\n\n| Job | Environment | Command | Result | Log |\n|---|---|---|---|---|\n");
        for j in &self.jobs {
            s.push_str(&format!(
                "| {} | {} | `{}` | {} | {} |\n",
                j.purpose,
                self.job_env(j),
                shown(&j.argv),
                j.outcome.as_ref().map(|o| o.summary()).unwrap_or_else(|| "no result".into()),
                j.log
            ));
        }
        s.push_str("\n## Probes\n\n| Purpose | URL | Healthy | p95 ms | Versions |\n|---|---|---|---|---|\n");
        for p in &self.probes {
            if let Some(rep) = &p.report {
                let versions: Vec<String> = rep.versions.iter().map(|(v, n)| format!("{v}×{n}")).collect();
                s.push_str(&format!(
                    "| {} | {} | {}/{} | {} | {} |\n",
                    p.purpose,
                    rep.url,
                    rep.ok,
                    rep.total,
                    rep.p95_ms,
                    versions.join(" ")
                ));
            }
        }
        if let Some(rb) = &self.rollback {
            s.push_str(&format!(
                "\n## Rollback\n\n- Reason: {}\n- Trigger: {}\n- Confirmation: {}\n",
                self.plan.people.unmention(&rb.reason),
                self.trigger_label(rb),
                rb.confirmed.clone().unwrap_or_else(|| "not confirmed".into())
            ));
        }
        if !self.waivers.is_empty() {
            s.push_str("\n## Waivers\n\n");
            for w in &self.waivers {
                s.push_str(&format!(
                    "- {} waived by {} at {}: {}\n",
                    w.0,
                    self.plan.people.label(&w.1),
                    w.3.rfc3339(),
                    w.2
                ));
            }
        }
        let refusals: Vec<_> = self.audit.iter().filter(|a| !a.accepted).collect();
        s.push_str(&format!(
            "\n## Audit\n\n- {} accepted actions, {} refusals\n",
            self.audit.len() - refusals.len(),
            refusals.len()
        ));
        for a in refusals {
            s.push_str(&format!(
                "  - refused {} at {}: {}\n",
                self.plan.people.label(&a.who),
                a.at.rfc3339(),
                self.plan.people.unmention(&a.what)
            ));
        }
        s.push_str("\n## Evidence\n\n");
        for e in &self.evidence {
            s.push_str(&format!("- {e}\n"));
        }
        s.push_str(&self.communication_log(outcome));
        s
    }

    /// The report's communication log: every post in full, a multi-line post's further lines
    /// indented under its first, and for a release that reached `outcome` its final post, which
    /// is sent once this report and the evidence bundle are written.
    fn communication_log(&self, outcome: Option<&Terminal>) -> String {
        let mut entries: Vec<(String, String)> =
            self.communication.iter().map(|(t, text)| (t.rfc3339(), self.plan.people.unmention(text))).collect();
        if let Some(t) = outcome {
            entries.push((
                "(final post, sent once this report is bundled)".into(),
                self.plan.people.unmention(&self.end_text(t)),
            ));
        }
        // A fence longer than any run of backticks in the posts.
        let longest = entries.iter().flat_map(|(_, text)| text.split(|c| c != '`').map(str::len)).max().unwrap_or(0);
        let fence = "`".repeat(longest.max(2) + 1);
        let mut s = format!("\n## Communication log\n\n{fence}\n");
        for (at, text) in &entries {
            let pad = " ".repeat(at.chars().count());
            for (i, line) in text.lines().enumerate() {
                s.push_str(&format!("{} {line}\n", if i == 0 { at.as_str() } else { pad.as_str() }));
            }
            if text.is_empty() {
                s.push_str(&format!("{at}\n"));
            }
        }
        s.push_str(&format!("{fence}\n"));
        s
    }

    /// `retrospective-inputs.json` of a release that ended `outcome` before Protocol 11 STEP 4.3
    /// ran: its path (in the artifacts folder of the protocol it reached) and contents.
    pub(super) fn failed_retrospective(&self, now: Timestamp, outcome: &Terminal) -> (String, String) {
        let name = self
            .plan
            .protocols
            .iter()
            .flat_map(|p| p.phases.iter().flat_map(|ph| &ph.steps))
            .find(|s| matches!(s.run, StepRun::Document { template: DocumentTemplate::RetrospectiveInputs }))
            .and_then(|s| s.evidence.first().cloned())
            .unwrap_or_else(|| "retrospective-inputs.json".into());
        (self.evidence_path(&name), self.json_doc(now, self.step(), self.retrospective_body(Some(outcome))))
    }

    /// The retrospective inputs for Protocol 5: how the release ended (`None` while it runs),
    /// the failed gates with their figures, halts, the rollback, who decided what and when, and
    /// improvement items derived from what failed, each with its owner.
    pub(super) fn retrospective_body(&self, outcome: Option<&Terminal>) -> Value {
        let people = &self.plan.people;
        let job_json = |j: &JobRecord| {
            json!({
                "job": j.purpose, "argv": shown(&j.argv), "exit_code": j.outcome.as_ref().and_then(|o| o.exit_code),
                "duration_ms": j.outcome.as_ref().map(|o| o.duration_ms), "result": j.outcome.as_ref().map(JobOutcome::summary),
                "log": j.log,
            })
        };
        let failed = |j: &&JobRecord| j.outcome.as_ref().is_some_and(|o| !o.succeeded());
        let mut improvements = Vec::new();
        // Failed jobs a failed gate or a halt accounts for are named there, not again.
        let mut accounted: Vec<&str> = Vec::new();
        let mut failed_gates = Vec::new();
        for (i, g) in self.gates.iter().enumerate() {
            if g.verdict != Verdict::Failed {
                continue;
            }
            let since = if i == 0 { self.started_at } else { self.gates[i - 1].at };
            let causes: Vec<&JobRecord> = self
                .jobs
                .iter()
                .filter(failed)
                .filter(|j| j.finished_at.is_some_and(|t| (i == 0 || t > since) && t <= g.at))
                .collect();
            accounted.extend(causes.iter().map(|j| j.id.as_str()));
            let handling = self.gate_of(g).map(|x| x.failure_handling.clone()).unwrap_or_default();
            let mut what: Vec<String> =
                causes.iter().map(|j| format!("{} failed ({})", j.purpose, Self::result(j))).collect();
            what.push(format!("{} (threshold: {})", g.actual().join(", "), g.threshold));
            improvements.push(self.improvement(
                format!("{} failed: {}", g.name, what.join("; ")),
                &handling,
                causes.iter().map(|j| j.log.clone()).collect(),
            ));
            failed_gates.push(json!({
                "gate": g.gate, "name": g.name, "protocol": g.protocol, "threshold": g.threshold,
                "figures": g.clauses.iter().map(|c| json!({"clause": c.0, "actual": c.1, "held": c.2})).collect::<Vec<_>>(),
                "actual": g.actual().join(", "), "failed_at": g.at.rfc3339(), "failure_handling": handling,
                "failed_jobs": causes.iter().map(|j| job_json(j)).collect::<Vec<_>>(),
            }));
        }
        for h in self.halts.iter().filter(|h| h.gate.is_none()) {
            let causes: Vec<&JobRecord> = self
                .jobs
                .iter()
                .filter(failed)
                .filter(|j| j.finished_at == Some(h.at) && !accounted.contains(&j.id.as_str()))
                .collect();
            accounted.extend(causes.iter().map(|j| j.id.as_str()));
            improvements.push(self.improvement(
                format!("{} halted: {}", h.step, people.unmention(&h.reason)),
                "",
                causes.iter().map(|j| j.log.clone()).collect(),
            ));
        }
        for j in self.jobs.iter().filter(failed).filter(|j| !accounted.contains(&j.id.as_str())) {
            improvements.push(self.improvement(
                format!("Investigate failure of {}: {}", j.purpose, Self::result(j)),
                "",
                vec![j.log.clone()],
            ));
        }
        for w in &self.waivers {
            improvements.push(
                json!({"improvement": format!("Remove the need for waiver of {}: {}", w.0, w.2), "owner": people.label(&w.1), "owner_from": "waived the gate"}),
            );
        }
        for r in &self.rounds {
            let Some(x) = &r.rejection else { continue };
            improvements.push(json!({
                "improvement": format!("Resolve what the go/no-go `{}` was rejected for by {} at {}: {}", r.step, self.rejecter(x), x.at.rfc3339(), x.reason),
                "owner": people.label(&self.started_by.id), "owner_from": "started the release",
            }));
        }
        if let Some(Terminal::Aborted { by, reason }) = outcome {
            improvements.push(json!({
                "improvement": format!("Release aborted by {}: {reason}", people.label(by)),
                "owner": people.label(by), "owner_from": "aborted the release",
            }));
        }
        if self.freeze.reminders > 0 {
            improvements.push(json!({"improvement": format!("Freeze acknowledgements needed {} reminder(s)", self.freeze.reminders), "owner": "Release Manager"}));
        }
        let rollback = self.rollback.as_ref().map(|rb| {
            json!({
                "environment": rb.env, "reason": people.unmention(&rb.reason), "trigger": self.trigger_label(rb),
                "started_at": rb.started_at.rfc3339(), "finished_at": rb.finished_at.map(|t| t.rfc3339()),
                "confirmed": rb.confirmed,
            })
        });
        let rollback_steps: Vec<Value> =
            self.rollback_steps(self.rollback.as_ref())
                .iter()
                .map(|st| {
                    let mut v = job_json(st.job);
                    if let Value::Object(o) = &mut v {
                        o.insert("environment".into(), json!(st.job.env));
                        o.insert("reason".into(), json!(st.reason));
                        o.insert("trigger".into(), json!(st.trigger));
                        o.insert(
                            "confirming_probe".into(),
                            json!(st.probe.map(
                                |p| json!({"purpose": p.purpose, "at": p.started_at.rfc3339(), "report": p.report})
                            )),
                        );
                    }
                    v
                })
                .collect();
        let (ended, reason) = match outcome {
            None => (None, None),
            Some(t) => (
                Some(t.label()),
                match t {
                    Terminal::Released => None,
                    Terminal::RolledBack { reason }
                    | Terminal::Rejected { reason, .. }
                    | Terminal::Aborted { reason, .. } => Some(people.unmention(reason)),
                },
            ),
        };
        let decisions: Vec<Value> = self
            .audit
            .iter()
            .filter(|a| a.accepted && !a.what.contains("freeze"))
            .map(|a| json!({"who": people.label(&a.who), "at": a.at.rfc3339(), "what": people.unmention(&a.what)}))
            .collect();
        let halts: Vec<Value> = self
            .halts
            .iter()
            .map(|h| json!({"at": h.at.rfc3339(), "step": h.step, "reason": people.unmention(&h.reason), "gate": h.gate, "resume": h.resume}))
            .collect();
        let durations: Vec<Value> = self.jobs.iter().map(|j| json!({"job": j.purpose, "duration_ms": j.outcome.as_ref().map(|o| o.duration_ms), "exit_code": j.outcome.as_ref().and_then(|o| o.exit_code)})).collect();
        json!({
            "outcome": ended,
            "outcome_reason": reason,
            "stopped_at": outcome.filter(|t| **t != Terminal::Released).map(|_| match &self.activity {
                Activity::Halted(h) => format!("{} (halted: {})", h.step, people.unmention(&h.reason)),
                _ => self.step_label(),
            }),
            "summary": format!("{} to {}: {} jobs, {} gates evaluated", self.version, self.env, self.jobs.len(), self.gates.len()),
            "failed_gates": failed_gates,
            "halts": halts,
            "rollback": rollback,
            "rollback_steps": rollback_steps,
            "decisions": decisions,
            "waivers": self.waivers.iter().map(|w| json!({"gate": w.0, "by": people.label(&w.1), "justification": w.2, "at": w.3.rfc3339()})).collect::<Vec<_>>(),
            "rejections": self.rounds.iter().filter_map(|r| r.rejection.as_ref().map(|x| json!({
                "step": r.step, "protocol": r.protocol, "by": self.rejecter(x), "at": x.at.rfc3339(), "via": x.via, "reason": x.reason,
            }))).collect::<Vec<_>>(),
            "improvements": improvements,
            "job_durations": durations,
            "gates": self.gates.iter().map(|g| json!({"gate": g.name, "protocol": g.protocol, "verdict": self.verdict_json(&g.verdict)})).collect::<Vec<_>>(),
            "refusals": self.audit.iter().filter(|a| !a.accepted).count(),
        })
    }

    /// An improvement item with its owner: the configured role the failure handling `handling`
    /// names (e.g. "release manager"), else the on-call SRE (`sre_lead`), first on the runbook's
    /// escalation; the people who hold it, as evidence names people.
    fn improvement(&self, text: String, handling: &str, evidence: Vec<String>) -> Value {
        let people = &self.plan.people;
        // Whole words: "notify stakeholders" names no `stakeholder` to own anything.
        let words = |t: &str| -> Vec<String> {
            t.to_lowercase()
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect()
        };
        let said = words(handling);
        let named = people
            .persons
            .iter()
            .flat_map(|p| &p.roles)
            .find(|r| {
                let role = words(&r.replace('_', " "));
                !role.is_empty() && said.windows(role.len()).any(|w| w == role.as_slice())
            })
            .cloned();
        let (role, from) = match named {
            Some(r) => (r, "named by the failure handling".to_string()),
            None => ("sre_lead".to_string(), "on-call SRE (the failure handling names no role)".to_string()),
        };
        let holders: Vec<String> =
            people.with_roles(std::slice::from_ref(&role)).iter().map(|p| people.label(&p.id)).collect();
        let owner = if holders.is_empty() { format!("{role} (nobody holds it)") } else { holders.join(", ") };
        json!({"improvement": people.unmention(&text), "owner": owner, "owner_role": role, "owner_from": from, "evidence": evidence})
    }
}

/// A rollback job in `rollback-plan.md` and the retrospective inputs.
struct RollbackStepRecord<'a> {
    job: &'a JobRecord,
    probe: Option<&'a ProbeRecord>,
    reason: String,
    trigger: String,
}

impl Release {
    /// The report's go/no-go decision section for a rejected round: who rejected, as what, when,
    /// how and why, who had signed before, and the verdict. Empty when no round was rejected.
    fn no_go_section(&self) -> String {
        let mut s = String::new();
        for r in &self.rounds {
            let Some(x) = &r.rejection else { continue };
            let signed: Vec<String> = r
                .approvals
                .iter()
                .map(|a| format!("{} at {}", self.person_as(&a.user, &a.roles), a.at.rfc3339()))
                .collect();
            s.push_str(&format!(
                "## Go/no-go decision\n\n- Protocol {} `{}` (required: {}): rejected\n- Rejected by {} at {}: {}\n- Rejected via: {}\n- Signed before the rejection: {}\n- Verdict: no-go. The release stopped at this decision; the steps after it did not run.\n\n",
                r.protocol,
                r.step,
                r.roles.join(", "),
                self.rejecter(x),
                x.at.rfc3339(),
                x.reason,
                x.via,
                if signed.is_empty() { "nobody".to_string() } else { signed.join("; ") },
            ));
        }
        s
    }

    /// Who rejected a round, with the roles they rejected as, e.g. `Carol Example (slack
    /// U0CAROL003; sre_lead)`.
    fn rejecter(&self, x: &Rejection) -> String {
        self.person_as(&x.user, &x.roles)
    }
}
