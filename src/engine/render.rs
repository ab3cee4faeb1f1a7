//! Evidence contents: every file names the release, the protocol, the step and the time, and holds
//! the figures the release really produced.

use serde_json::{Value, json};

use super::Timestamp;
use super::plan::Environment;
use super::release::{Release, Terminal, Verdict, fmt_num};
use crate::engine::io::ProbeReport;
use crate::protocol::model::{DocumentTemplate, Step};

fn header(r: &Release, now: Timestamp, step: &Step) -> Value {
    let p = r.plan.protocols.get(r.cursor.protocol).or(r.plan.protocols.last());
    json!({
        "release": {
            "id": r.id, "version": r.version, "environment": r.env, "strategy": r.strategy.as_str(),
            "started_by": r.started_by.id, "started_at": r.started_at.rfc3339(),
        },
        "protocol": { "id": p.map(|p| p.id.clone()), "title": p.map(|p| p.title.clone()) },
        "step": { "id": step.id, "title": step.title, "level": step.level },
        "generated_at": now.rfc3339(),
        "generated_by": "raybot",
    })
}

/// A JSON evidence document: the common header plus `body`'s fields.
pub(super) fn json_doc(r: &Release, now: Timestamp, step: &Step, body: Value) -> String {
    let mut doc = header(r, now, step);
    if let (Some(d), Value::Object(b)) = (doc.as_object_mut(), body) {
        d.extend(b);
    }
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}

fn md_header(r: &Release, now: Timestamp, title: &str, step: Option<&Step>) -> String {
    let p = r.plan.protocols.get(r.cursor.protocol).or(r.plan.protocols.last());
    let mut s = format!(
        "# {title}\n\n- Release: {} ({} → {}, strategy {})\n- Protocol: {}\n",
        r.id,
        r.version,
        r.env,
        r.strategy.as_str(),
        p.map(|p| format!("{} — {}", p.id, p.title)).unwrap_or_default(),
    );
    if let Some(step) = step {
        s.push_str(&format!("- Step: {} ({:?})\n", step.title, step.level));
    }
    s.push_str(&format!(
        "- Generated: {} by raybot\n- Started by: {} at {}\n\n",
        now.rfc3339(),
        r.started_by.id,
        r.started_at.rfc3339()
    ));
    s
}

fn person(r: &Release, id: &str) -> String {
    match r.plan.people.get(id) {
        Some(p) => format!("{} ({}; {})", p.name, id, p.roles.join(", ")),
        None => id.to_string(),
    }
}

/// Documents computed from the release: returns the file contents (if the template writes one) and
/// the line posted in chat.
pub(super) fn document(
    r: &Release,
    now: Timestamp,
    template: DocumentTemplate,
    step: &Step,
) -> (Option<String>, String) {
    match template {
        DocumentTemplate::DeploymentChecklist => {
            let mut s = md_header(r, now, "Production deployment checklist", Some(step));
            s.push_str("## Checklist (updated from the staging rehearsal)\n\n");
            for j in r.jobs.iter().filter(|j| j.env == "staging") {
                let o = j.outcome.as_ref().map(|o| o.summary()).unwrap_or_else(|| "no result".into());
                s.push_str(&format!("- [x] `{}` — {} ({})\n", j.argv.join(" "), j.purpose, o));
            }
            if let Some(prod) = r.plan.environment(&r.env) {
                s.push_str(&format!(
                    "- [ ] Deploy {} to {} with `{}` ({} steps: {:?})\n- [ ] Probe {} after each step: success ≥ {:.0}%, p95 ≤ {} ms\n- [ ] Rollback ready: `{}` (RTO {} s)\n",
                    r.version,
                    r.env,
                    prod.deploy.argv.join(" "),
                    r.strategy.as_str(),
                    r.strategy.steps(),
                    prod.probe.url,
                    prod.probe.min_success_rate * 100.0,
                    prod.probe.max_p95_ms,
                    prod.rollback.argv.join(" "),
                    prod.rto_seconds
                ));
            }
            s.push_str("\n## Learnings from the rehearsal\n\n");
            let failed: Vec<_> = r.jobs.iter().filter(|j| j.outcome.as_ref().is_some_and(|o| !o.succeeded())).collect();
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
            for w in &r.waivers {
                s.push_str(&format!("- Gate {} waived by {}: {}\n", w.0, w.1, w.2));
            }
            s.push_str(&format!(
                "\n## Communication plan\n\n- Channel: {}\n- Stakeholders: {}\n",
                r.plan.channel,
                r.plan.people.persons.iter().map(|p| person(r, &p.id)).collect::<Vec<_>>().join("; ")
            ));
            (Some(s), "deployment checklist updated from the rehearsal (deployment-checklist.md).".into())
        }
        DocumentTemplate::ReleaseManifest => {
            let mut s = md_header(r, now, "Release manifest", Some(step));
            s.push_str(&format!(
                "## Scope\n\n- Version: {}\n- Target: {}\n- Rollout strategy: {} ({:?}% traffic steps)\n",
                r.version,
                r.env,
                r.strategy.as_str(),
                r.strategy.steps()
            ));
            if let Some(e) = r.plan.environment(&r.env) {
                s.push_str(&format!(
                    "- Impacted service endpoint: {}\n\n## Rollback procedure\n\n- `{}` (timeout {} s, RTO {} s)\n",
                    e.probe.url,
                    e.rollback.argv.join(" "),
                    e.rollback.timeout_ms / 1000,
                    e.rto_seconds
                ));
            }
            s.push_str("\n## Stakeholders\n\n");
            for p in &r.plan.people.persons {
                s.push_str(&format!("- {}\n", person(r, &p.id)));
            }
            s.push_str("\n## Confirmations\n\n");
            for round in r.rounds.iter().filter(|x| x.decision.as_deref() == Some("approved")) {
                for a in &round.approvals {
                    s.push_str(&format!(
                        "- {} approved `{}` (Protocol {}) at {}\n",
                        person(r, &a.user),
                        round.step,
                        round.protocol,
                        a.at.rfc3339()
                    ));
                }
            }
            for g in &r.gates {
                s.push_str(&format!("- Gate {} (Protocol {}): {}\n", g.name, g.protocol, verdict(&g.verdict)));
            }
            (
                Some(s),
                format!(
                    "release scope confirmed: {} → {}, {} stakeholders listed (release-manifest.md).",
                    r.version,
                    r.env,
                    r.plan.people.persons.len()
                ),
            )
        }
        DocumentTemplate::DeploymentWindow => {
            let sre: Vec<String> =
                r.plan.people.with_roles(&["sre_lead".to_string()]).iter().map(|p| p.id.clone()).collect();
            let po: Vec<String> =
                r.plan.people.with_roles(&["product_owner".to_string()]).iter().map(|p| p.id.clone()).collect();
            (
                None,
                format!(
                    "Deployment window: from {} (now); communication channel: {}; on-call: SRE ({}), Product ({}).",
                    now.rfc3339(),
                    r.plan.channel,
                    sre.join(", "),
                    po.join(", ")
                ),
            )
        }
        DocumentTemplate::RunbookCoverage => {
            let sre: Vec<String> =
                r.plan.people.with_roles(&["sre_lead".to_string()]).iter().map(|p| p.name.clone()).collect();
            let rm: Vec<String> =
                r.plan.people.with_roles(&["release_manager".to_string()]).iter().map(|p| p.name.clone()).collect();
            let rollback = r
                .plan
                .environment(&r.env)
                .map(|e| e.rollback.argv.join(" ").replace("{env}", &r.env).replace("{version}", &r.version))
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
        DocumentTemplate::RetrospectiveInputs => {
            let mut improvements = Vec::new();
            for j in r.jobs.iter().filter(|j| j.outcome.as_ref().is_some_and(|o| !o.succeeded())) {
                improvements.push(json!({"improvement": format!("Investigate failure of {}", j.purpose), "owner": "Release Engineering", "evidence": j.log}));
            }
            for w in &r.waivers {
                improvements.push(
                    json!({"improvement": format!("Remove the need for waiver of {}: {}", w.0, w.2), "owner": w.1}),
                );
            }
            if r.freeze.reminders > 0 {
                improvements.push(json!({"improvement": format!("Freeze acknowledgements needed {} reminder(s)", r.freeze.reminders), "owner": "Release Manager"}));
            }
            let durations: Vec<Value> = r.jobs.iter().map(|j| json!({"job": j.purpose, "duration_ms": j.outcome.as_ref().map(|o| o.duration_ms), "exit_code": j.outcome.as_ref().and_then(|o| o.exit_code)})).collect();
            let body = json!({
                "summary": format!("{} to {}: {} jobs, {} gates evaluated", r.version, r.env, r.jobs.len(), r.gates.len()),
                "improvements": improvements,
                "job_durations": durations,
                "gates": r.gates.iter().map(|g| json!({"gate": g.name, "protocol": g.protocol, "verdict": g.verdict})).collect::<Vec<_>>(),
                "refusals": r.audit.iter().filter(|a| !a.accepted).count(),
            });
            (Some(json_doc(r, now, step, body)), "retrospective inputs recorded (retrospective-inputs.json).".into())
        }
    }
}

fn verdict(v: &Verdict) -> String {
    match v {
        Verdict::Passed => "passed".into(),
        Verdict::Failed => "FAILED".into(),
        Verdict::Waived { by, justification } => format!("waived by {by}: {justification}"),
    }
}

pub(super) fn freeze_doc(r: &Release, now: Timestamp, step: &Step) -> String {
    let mut s = md_header(r, now, "Change freeze confirmation", Some(step));
    s.push_str(&format!(
        "Freeze announced: {}\nConfirmed: {}\nReminders sent: {}\n\n| Stakeholder | Roles | Acknowledged at | Via |\n|---|---|---|---|\n",
        r.freeze.opened_at.map(|t| t.rfc3339()).unwrap_or_default(),
        r.freeze.confirmed_at.map(|t| t.rfc3339()).unwrap_or_else(|| "not yet".into()),
        r.freeze.reminders
    ));
    for u in &r.freeze.required {
        let roles = r.plan.people.get(u).map(|p| p.roles.join(", ")).unwrap_or_default();
        match r.freeze.acks.get(u) {
            Some((t, via)) => s.push_str(&format!(
                "| {} | {roles} | {} | {via} |\n",
                r.plan.people.get(u).map(|p| format!("{} ({u})", p.name)).unwrap_or_else(|| u.clone()),
                t.rfc3339()
            )),
            None => s.push_str(&format!("| {u} | {roles} | MISSING | |\n")),
        }
    }
    s.push_str(&format!(
        "\nAcknowledgements: {}/{} ({:.0}%).\n",
        r.freeze.acks.len(),
        r.freeze.required.len(),
        100.0 * r.freeze.acks.len() as f64 / r.freeze.required.len().max(1) as f64
    ));
    s
}

pub(super) fn baseline_doc(r: &Release, now: Timestamp, step: &Step, p: &ProbeReport) -> String {
    let mut s = md_header(r, now, "Observability baseline", Some(step));
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

pub(super) fn health_log(r: &Release, now: Timestamp, step: &Step, e: &Environment) -> String {
    let mut s = md_header(r, now, "Deployment health log", Some(step));
    s.push_str(&format!(
        "Soak period: {} s, probing {} every {} s. SLO: success ≥ {:.0}%, p95 ≤ {} ms.\n\n| # | healthy | success | p50 ms | p95 ms | versions | within SLO |\n|---|---|---|---|---|---|---|\n",
        e.health_window.duration_ms / 1000,
        e.probe.url,
        e.health_window.interval_ms / 1000,
        e.probe.min_success_rate * 100.0,
        e.probe.max_p95_ms
    ));
    for (i, p) in r.soak.iter().enumerate() {
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
    let breaches = r
        .soak
        .iter()
        .filter(|p| !(p.success_rate() + 1e-9 >= e.probe.min_success_rate && p.p95_ms <= e.probe.max_p95_ms))
        .count();
    s.push_str(&format!(
        "\nObservations: {} rounds, {breaches} SLO breaches. Decision: {}.\n",
        r.soak.len(),
        if breaches == 0 { "stable, proceed to reporting" } else { "escalate to Protocol 13" }
    ));
    s
}

pub(super) fn rollback_plan(r: &Release, now: Timestamp) -> String {
    let mut s = md_header(r, now, "Rollback plan (triggered)", None);
    if let Some(rb) = &r.rollback {
        s.push_str(&format!(
            "## Trigger\n\n- Reason: {}\n- Triggered by: {}\n- Started: {}\n- Finished: {}\n- Confirmation probe: {}\n\n",
            rb.reason,
            rb.trigger,
            rb.started_at.rfc3339(),
            rb.finished_at.map(|t| t.rfc3339()).unwrap_or_else(|| "not finished".into()),
            rb.confirmed.clone().unwrap_or_else(|| "none".into())
        ));
    }
    s.push_str("## Steps executed\n\n");
    for j in r.jobs.iter().filter(|j| j.env == r.env) {
        s.push_str(&format!(
            "1. `{}` — {} — {}\n",
            j.argv.join(" "),
            j.purpose,
            j.outcome.as_ref().map(|o| o.summary()).unwrap_or_else(|| "no result".into())
        ));
    }
    s.push_str("\n## Follow-up (Protocol 13)\n\n- Incident review of the failed gate, with the logs in this folder.\n- Stakeholders notified in the war room.\n");
    s
}

/// `DEPLOYMENT-REPORT.md`: the whole release on one page.
pub(super) fn deployment_report(r: &Release, now: Timestamp, outcome: Option<&Terminal>) -> String {
    let mut s = md_header(r, now, "DEPLOYMENT REPORT", None);
    let status = match outcome {
        Some(t) => t.label().to_string(),
        None => r.activity.label(),
    };
    s.push_str(&format!("**Outcome:** {status}\n\n## Quality gates\n\n| Protocol | Gate | Threshold | Actual | Verdict | At |\n|---|---|---|---|---|---|\n"));
    for g in &r.gates {
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
            verdict(&g.verdict),
            g.at.rfc3339()
        ));
    }
    s.push_str("\n## Approvals\n\n");
    for round in &r.rounds {
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
                person(r, &a.user),
                a.at.rfc3339(),
                a.via,
                a.comment.as_ref().map(|c| format!(" — “{c}”")).unwrap_or_default()
            ));
        }
    }
    s.push_str(&format!("\n## Change freeze\n\n- {}/{} acknowledged", r.freeze.acks.len(), r.freeze.required.len()));
    if let Some(t) = r.freeze.confirmed_at {
        s.push_str(&format!(", confirmed {}", t.rfc3339()));
    }
    s.push_str("\n\n## Jobs\n\n| Job | Environment | Command | Result | Log |\n|---|---|---|---|---|\n");
    for j in &r.jobs {
        s.push_str(&format!(
            "| {} | {} | `{}` | {} | {} |\n",
            j.purpose,
            j.env,
            j.argv.join(" "),
            j.outcome.as_ref().map(|o| o.summary()).unwrap_or_else(|| "no result".into()),
            j.log
        ));
    }
    s.push_str("\n## Probes\n\n| Purpose | URL | Healthy | p95 ms | Versions |\n|---|---|---|---|---|\n");
    for p in &r.probes {
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
    if let Some(rb) = &r.rollback {
        s.push_str(&format!(
            "\n## Rollback\n\n- Reason: {}\n- Trigger: {}\n- Confirmation: {}\n",
            rb.reason,
            rb.trigger,
            rb.confirmed.clone().unwrap_or_else(|| "not confirmed".into())
        ));
    }
    if !r.waivers.is_empty() {
        s.push_str("\n## Waivers\n\n");
        for w in &r.waivers {
            s.push_str(&format!("- {} waived by {} at {}: {}\n", w.0, w.1, w.3.rfc3339(), w.2));
        }
    }
    let refusals: Vec<_> = r.audit.iter().filter(|a| !a.accepted).collect();
    s.push_str(&format!(
        "\n## Audit\n\n- {} accepted actions, {} refusals\n",
        r.audit.len() - refusals.len(),
        refusals.len()
    ));
    for a in refusals {
        s.push_str(&format!("  - refused {} at {}: {}\n", a.who, a.at.rfc3339(), a.what));
    }
    s.push_str("\n## Evidence\n\n");
    for e in &r.evidence {
        s.push_str(&format!("- {e}\n"));
    }
    s.push_str("\n## Communication log\n\n```\n");
    for (t, line) in &r.communication {
        s.push_str(&format!("{} {}\n", t.rfc3339(), line.lines().next().unwrap_or("")));
    }
    s.push_str("```\n");
    s
}
