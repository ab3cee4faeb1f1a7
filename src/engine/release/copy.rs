//! What raybot says in chat, as functions of the release's state: the announcements, requests,
//! halts and status lines that are not protocol data. Read-only views: nothing here changes the
//! release or decides anything.

use super::approval::{ApprovalRound, Rejection};
use super::gates::Verdict;
use super::rollback::AUTOMATIC;
use super::rollout::capitalize;
use super::state::Release;
use super::state::{Activity, Resume, Terminal};
use crate::engine::refusal::ERROR_TAG;
use crate::engine::reports::ProbeReport;
use crate::protocol::model::{Level, Protocol, Step, StepRun};

impl Release {
    /// How chat shows a mention of `id` on the release's platform.
    pub(super) fn mention(&self, id: &str) -> String {
        self.plan.people.mention(id)
    }

    /// `product_owner (@bob, @frank)`: a role and who holds it.
    pub(super) fn role_people(&self, role: &str) -> String {
        let people: Vec<String> =
            self.plan.people.with_roles(&[role.to_string()]).iter().map(|p| self.mention(&p.id)).collect();
        format!("{role} ({})", if people.is_empty() { "nobody configured".into() } else { people.join(", ") })
    }

    /// The freeze request: the step's line, who acknowledged and who is missing.
    pub(super) fn freeze_text(&self, step: &Step) -> String {
        let head =
            step.communication.clone().unwrap_or_else(|| "Change freeze in effect. All teams acknowledge?".into());
        let acked: Vec<String> = self.freeze.acknowledged().into_iter().map(|u| self.mention(u)).collect();
        let missing: Vec<String> = self.freeze.missing().into_iter().map(|u| self.mention(u)).collect();
        format!(
            "{head}\nRelease {} ({} → {}): react with :{}: or type `/ray ack`. Acknowledged {}/{}: {}. Waiting for: {}.",
            self.id,
            self.version,
            self.env,
            self.plan.policy.ack_emoji,
            acked.len(),
            self.freeze.required.len(),
            if acked.is_empty() { "nobody yet".into() } else { acked.join(", ") },
            if missing.is_empty() { "nobody".into() } else { missing.join(", ") },
        )
    }

    /// Everyone in `release-approvers.yaml`, mentioned.
    pub(super) fn stakeholder_mentions(&self) -> String {
        self.plan.people.persons.iter().map(|p| self.mention(&p.id)).collect::<Vec<_>>().join(" ")
    }

    /// A note under the current step: `[PHASE n] text`, or for a guideline `[PHASE n]
    /// Guideline — <title>: text`.
    pub(super) fn step_note_text(&self, text: &str) -> String {
        let (p, step) = (self.phase().number, self.step());
        match step.level {
            Level::Must => format!("[PHASE {p}] {text}"),
            Level::Guideline => format!("[PHASE {p}] Guideline — {}: {text}", step.title),
        }
    }

    /// The line that opens protocol `p`: its persona and guardrail.
    pub(super) fn protocol_text(p: &Protocol) -> String {
        let guardrail = p.role.guardrail.as_ref().map(|g| format!(" Guardrail: {g}")).unwrap_or_default();
        format!("[MASTER RAY™ | PROTOCOL {}: {}] Persona: {}.{guardrail}", p.id, p.title, p.role.persona)
    }

    /// The target's deployment starts: strategy and traffic shares.
    pub(super) fn deploy_started_text(&self, env: &str) -> String {
        let steps: Vec<String> = self.strategy.steps().iter().map(|p| format!("{p}%")).collect();
        format!(
            "[RAY ANNOUNCEMENT] {} deployment of {} started ({}: {}). Next update at 50%.",
            capitalize(env),
            self.version,
            self.strategy.as_str(),
            steps.join(" → ")
        )
    }

    /// The target's deployment stopped for `reason`.
    pub(super) fn deploy_stopped_text(&self, env: &str, reason: &str) -> String {
        format!("[RAY ANNOUNCEMENT] {} deployment of {} stopped: {reason}.", capitalize(env), self.version)
    }

    /// The target's rollout reached half of its work at sub-step traffic share `traffic` (%);
    /// `probe` and its `summary` are the probe's figures after it.
    pub(super) fn deploy_halfway_text(&self, env: &str, traffic: u8, probe: &ProbeReport, summary: &str) -> String {
        let version = &self.version;
        // Say where the traffic is, as the probe saw it: half of the work is not half of the users.
        let served = probe.version_share(version) * 100.0;
        let traffic = if traffic == 0 {
            format!(
                "{version} is started on the idle side (its deploy job succeeded; its health is probed once it takes traffic) with no traffic yet ({served:.0}% of probe answers); the switch comes next"
            )
        } else {
            format!("{traffic}% of the traffic is routed to {version} ({served:.0}% of probe answers)")
        };
        format!(
            "[RAY ANNOUNCEMENT] {} deployment 50% complete: {traffic}. No errors observed. Next update at completion. ({summary})",
            capitalize(env),
        )
    }

    /// The target's rollout is complete.
    pub(super) fn deploy_complete_text(&self, env: &str) -> String {
        let env = capitalize(env);
        format!(
            "[RAY ANNOUNCEMENT] {env} deployment 100% complete. No errors observed. {env} serves {}. Next: post-deployment checks.",
            self.version
        )
    }

    /// The rollback of `env` starts; `trigger` is `automatic` or who asked.
    pub(super) fn rollback_started_text(&self, env: &str, reason: &str, trigger: &str) -> String {
        let by = if trigger == AUTOMATIC { trigger.to_string() } else { self.mention(trigger) };
        format!(
            "[RAY ANNOUNCEMENT] Rolling back {env} ({by}): {reason}. Stakeholders: {}.",
            self.stakeholder_mentions()
        )
    }

    /// The rollback of `env` is confirmed by the probe after `secs` seconds.
    pub(super) fn rollback_done_text(env: &str, secs: f64, summary: &str) -> String {
        format!(
            "[RAY ANNOUNCEMENT] Rollback of {env} complete in {secs:.1}s; probe confirms the previous version serves again: {summary}."
        )
    }

    /// Everyone on the freeze list acknowledged.
    pub(super) fn freeze_confirmed_text(&self, phase: u32) -> String {
        format!("[PHASE {phase}] Change freeze confirmed by all {} stakeholders.", self.freeze.required.len())
    }

    /// Reminds the people who have not acknowledged the freeze yet.
    pub(super) fn freeze_reminder_text(&self) -> String {
        let missing: Vec<String> = self.freeze.missing().into_iter().map(|u| self.mention(u)).collect();
        format!(
            "[RAY REMINDER] Change freeze for {} still needs acknowledgement from {} — react with :{}: on the freeze message or type `/ray ack`.",
            self.version,
            missing.join(", "),
            self.plan.policy.ack_emoji
        )
    }

    /// Reminds the roles round `r` still waits for.
    pub(super) fn approval_reminder_text(&self, r: &ApprovalRound) -> String {
        let missing: Vec<String> = r.missing_roles().into_iter().map(|role| self.role_people(role)).collect();
        format!("[RAY REMINDER] Go/no-go for {} is waiting for: {}.", self.version, missing.join(", "))
    }

    /// Who signed round `r` so far: `@bob (product_owner) at <time>` each.
    pub(super) fn signatures(&self, r: &ApprovalRound) -> Vec<String> {
        r.approvals
            .iter()
            .map(|a| format!("{} ({}) at {}", self.mention(&a.user), a.roles.join("/"), a.at.rfc3339()))
            .collect()
    }

    /// Answers someone who approved the open round before.
    pub(super) fn approved_already_text(&self) -> String {
        format!("[RAY] You already approved {} — counted once.", self.id)
    }

    /// Answers someone who acknowledged the freeze before.
    pub(super) fn acknowledged_already_text(&self) -> String {
        format!("[RAY] You already acknowledged the freeze of {} — counted once.", self.id)
    }

    /// The go decision of a round, with who signed (`names`): the edit of the request.
    pub(super) fn approved_text(names: &[String]) -> String {
        format!("[RAY] ✅ Approved — {}. Decision recorded.", names.join(", "))
    }

    /// The go decision of a round, with who signed (`names`): the announcement.
    pub(super) fn go_text(&self, names: &[String]) -> String {
        format!("[RAY] Go decision recorded for {}: {}.", self.id, names.join(", "))
    }

    /// A round that needs another approver because only the initiator signed.
    pub(super) fn initiator_alone_text(&self) -> String {
        format!("{} started this release, so another approver is needed", self.mention(&self.started_by.id))
    }

    /// The edit of a rejected round's request: who rejected, as what, when and why.
    pub(super) fn rejected_text(&self, x: &Rejection) -> String {
        format!(
            "[RAY] ⛔ Rejected by {} ({}) at {}: {}",
            self.mention(&x.user),
            x.roles.join("/"),
            x.at.rfc3339(),
            x.reason
        )
    }

    /// The no-go decision of a round: the announcement, as the go decision has one, so the
    /// communication log holds who rejected, as what, when, how and why.
    pub(super) fn no_go_text(&self, x: &Rejection) -> String {
        format!(
            "[RAY] No-go decision recorded for {}: rejected by {} ({}) at {} via {}: {}",
            self.id,
            self.mention(&x.user),
            x.roles.join("/"),
            x.at.rfc3339(),
            x.via,
            x.reason
        )
    }

    /// `by` waived gate `gate` with `justification`.
    pub(super) fn waived_text(&self, gate: &str, by: &str, justification: &str) -> String {
        let roles = self.plan.people.get(by).map(|p| p.roles.join("/")).unwrap_or_default();
        format!("[RAY] Gate '{gate}' waived by {} ({roles}): {justification}", self.mention(by))
    }

    /// `by` asked to run `step` again (or to write the final evidence again, `rewrite`).
    pub(super) fn retry_text(&self, step: &str, by: &str, rewrite: bool) -> String {
        let what = if rewrite { "Writing {} again" } else { "Retrying {}" }.replace("{}", step);
        format!("[RAY] {what} as asked by {}.", self.mention(by))
    }

    /// `/ray status` text.
    pub fn status_text(&self) -> String {
        let p = self.protocol();
        let phase = &p.phases[self.cursor.phase.min(p.phases.len() - 1)];
        let mut s = format!(
            "[RAY STATUS] {} — {} → {} ({}), started by {} at {}. Protocol {} phase {} ({}): {}.",
            self.id,
            self.version,
            self.env,
            self.strategy.as_str(),
            self.mention(&self.started_by.id),
            self.started_at.rfc3339(),
            p.id,
            phase.number,
            phase.title,
            self.activity.label()
        );
        match &self.activity {
            Activity::Acks { .. } => {
                let missing: Vec<String> = self.freeze.missing().into_iter().map(|u| self.mention(u)).collect();
                s.push_str(&format!(
                    " Freeze acknowledgements {}/{}; missing: {}.",
                    self.freeze.acks.len(),
                    self.freeze.required.len(),
                    missing.join(", ")
                ));
            }
            Activity::Approval { round, .. } => {
                let r = &self.rounds[*round];
                let got: Vec<String> = r.approvals.iter().map(|a| self.mention(&a.user)).collect();
                s.push_str(&format!(
                    " Approvals so far: {}; required roles: {}.",
                    if got.is_empty() { "none".into() } else { got.join(", ") },
                    r.roles.join(", ")
                ));
            }
            Activity::Halted(h) => s.push_str(&format!(" Halted at {}: {}.", h.step, h.reason)),
            _ => {}
        }
        let gates: Vec<String> = self
            .gates
            .iter()
            .map(|g| {
                format!(
                    "{} {}",
                    g.name,
                    match g.verdict {
                        Verdict::Passed => "passed",
                        Verdict::Failed => "failed",
                        Verdict::Waived { .. } => "waived",
                    }
                )
            })
            .collect();
        if !gates.is_empty() {
            s.push_str(&format!(" Gates: {}.", gates.join("; ")));
        }
        s
    }

    /// The last post of a release that ended with `outcome`.
    pub(super) fn end_text(&self, outcome: &Terminal) -> String {
        match outcome {
            Terminal::Released => format!(
                "[RAY] ✅ {} released to {}. Evidence: {}/. Environment lock released.",
                self.version, self.env, self.id
            ),
            Terminal::RolledBack { reason } => format!(
                "[RAY] ↩️ {} rolled back in {}: {reason}. Evidence: {}/ (rollback-plan.md, DEPLOYMENT-REPORT.md).",
                self.version, self.env, self.id
            ),
            Terminal::Rejected { by, reason } => {
                format!(
                    "[RAY] ⛔ {} stopped: rejected by {}: {reason}. Nothing was deployed to {}.",
                    self.version,
                    self.mention(by),
                    self.env
                )
            }
            Terminal::Aborted { by, reason } => {
                format!(
                    "[RAY] ⛔ {} aborted by {}: {reason}. Environment lock released.",
                    self.version,
                    self.mention(by)
                )
            }
        }
    }

    /// The `[RAY ERROR]` post of a failure at `step` because of `reason` whose handling is the
    /// target's automatic rollback: the protocol's error template, saying what happens instead of
    /// awaiting instructions.
    pub(super) fn rolling_back_text(&self, step: &str, reason: &str) -> String {
        let template = self.protocol().communication.error_template.clone().unwrap_or_else(|| {
            format!("{ERROR_TAG} - \"Failed at {{step}}. Reason: {{explanation}}. Awaiting instructions.\"")
        });
        let text = template.replace("{step}", step).replace("{explanation}", reason.trim_end_matches('.'));
        let instead = format!("Rolling {} back automatically, as the gate's failure handling requires.", self.env);
        if text.contains("Awaiting instructions.") {
            text.replace("Awaiting instructions.", &instead)
        } else {
            format!("{text}\n{instead}")
        }
    }

    /// The `[RAY ERROR]` post of a halt at `step` because of `reason`, with what people can type.
    pub(super) fn halt_text(&self, step: &str, reason: &str, gate: Option<&str>, resume: &Resume) -> String {
        let template = self.protocol().communication.error_template.clone().unwrap_or_else(|| {
            format!("{ERROR_TAG} - \"Failed at {{step}}. Reason: {{explanation}}. Awaiting instructions.\"")
        });
        let mut text = template.replace("{step}", step).replace("{explanation}", reason.trim_end_matches('.'));
        let hint = match (gate, resume) {
            (Some(g), _) if self.gate_waivable(g) => format!(
                "\nType `/ray retry` to run it again, `/ray waive {g} <justification>` to accept the risk, or `/ray abort`."
            ),
            (_, Resume::Rollback) => "\nType `/ray retry` to run the rollback again.".to_string(),
            (_, Resume::Finish { .. }) => "\nType `/ray retry` to write the final evidence again.".to_string(),
            _ if self.production_touched => {
                "\nType `/ray retry` to run it again or `/ray rollback` to restore the previous version.".to_string()
            }
            _ => "\nType `/ray retry` to run it again or `/ray abort` to stop the release.".to_string(),
        };
        text.push_str(&hint);
        text
    }

    /// The go/no-go request of round `r`: the step's prompt, who is needed, who approved so far.
    pub(super) fn approval_request_text(&self, r: &ApprovalRound, lead: &str) -> String {
        let step = self.protocol().phases.iter().flat_map(|p| &p.steps).find(|s| s.id == r.step).cloned();
        let prompt = match step.as_ref().map(|s| &s.run) {
            Some(StepRun::Approval { prompt, .. }) => prompt.clone(),
            _ => "[APPROVAL REQUEST] Approve?".to_string(),
        };
        let who: Vec<String> = r.roles.iter().map(|role| self.role_people(role)).collect();
        let mut text = lead.to_string();
        if let Some(c) = step.as_ref().and_then(|s| s.communication.as_ref()) {
            if c != &prompt {
                text.push_str(c);
                text.push('\n');
            }
        }
        text.push_str(&prompt);
        let got: Vec<String> = r.approvals.iter().map(|a| self.mention(&a.user)).collect();
        text.push_str(&format!(
            "\nRelease {} ({} → {}). Needed: {}.{} Approve with the button or `/ray approve [comment]`; `/ray reject <reason>` stops the release.",
            self.id,
            self.version,
            self.env,
            who.join(", "),
            if got.is_empty() { String::new() } else { format!(" Approved so far: {}.", got.join(", ")) }
        ));
        text
    }
    /// The first post: who started what, and the protocols it will run through.
    pub(super) fn start_text(&self) -> String {
        let chain: Vec<String> =
            self.plan.protocols.iter().map(|p| format!("Protocol {} ({})", p.id, p.title)).collect();
        // Plans frozen before flows could be chosen name none: their start post reads as it did.
        let flow = self.plan.flow.as_ref().map(|f| format!(" (flow {f})")).unwrap_or_default();
        format!(
            "[RAY] Release {} of {} to {} started by {} (strategy {}). Pipeline{flow}: {}.",
            self.id,
            self.version,
            self.env,
            self.mention(&self.started_by.id),
            self.strategy.as_str(),
            chain.join(" → ")
        )
    }

    /// The posts that close the current protocol: its handoff checklist (with what really comes
    /// next when the seed names another protocol than the pipeline runs) and its validation
    /// prompt, saying what stands for the confirmation rather than claiming one was given.
    pub(super) fn handoff_texts(&self) -> Vec<String> {
        let p = self.protocol();
        let next = self.plan.protocols.get(self.cursor.protocol + 1);
        let mut out = Vec::new();
        if let Some(h) = &p.handoff {
            let passed = self.gates.iter().filter(|g| g.protocol == p.id && g.verdict == Verdict::Passed).count();
            let waived =
                self.gates.iter().filter(|g| g.protocol == p.id && matches!(g.verdict, Verdict::Waived { .. })).count();
            let mut text = format!(
                "{}\nHandoff checklist: {} gates passed, {} waived (documented); evidence in {}/.",
                h.announcement, passed, waived, p.artifacts_dir
            );
            text.push_str(&self.next_protocol_note(h.next_protocol.as_deref(), next));
            out.push(text);
        }
        if let Some(prompt) = p.communication.validation_prompts.first() {
            let approvers: Vec<String> = self
                .rounds
                .iter()
                .filter(|r| r.protocol == p.id && r.is_approved())
                .flat_map(|r| r.approvals.iter().map(|a| self.mention(&a.user)))
                .collect();
            let follow = match next {
                Some(n) => format!("continuing with Protocol {}", n.id),
                None => "release complete".to_string(),
            };
            let stands = if approvers.is_empty() {
                "no one is asked: this protocol collects no approval, so raybot goes on the passed gates alone"
                    .to_string()
            } else {
                format!(
                    "not asked again: raybot takes the go/no-go approval of {} as this confirmation",
                    approvers.join(", ")
                )
            };
            out.push(format!("{}\n→ {stands}; {follow}.", prompt.trim_end()));
        }
        out
    }

    /// What the handoff says about the seed's next protocol `seed_next` (e.g.
    /// `15-production-deployment`) when the pipeline runs `next` instead, or nothing more.
    fn next_protocol_note(&self, seed_next: Option<&str>, next: Option<&Protocol>) -> String {
        let Some(seed_next) = seed_next else { return String::new() };
        let seed_id = seed_next.split('-').next().unwrap_or(seed_next);
        match next {
            Some(n) if n.id != seed_id => format!(
                "\nThe seed hands off to Protocol {seed_id} (`{seed_next}`); this release's pipeline \
                 (protocols/pipeline.yaml) runs Protocol {} ({}) next, so that is where the evidence goes.",
                n.id, n.title
            ),
            Some(_) => String::new(),
            None => format!(
                "\nNext per the seed: Protocol {seed_id} (`{seed_next}`), which raybot does not run: hand the \
                 evidence above to its owners."
            ),
        }
    }
}
