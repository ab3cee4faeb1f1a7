//! Where a release stands, read-only: its protocol, phase and step, their label, the figures
//! measured, the evidence paths and the constants gates read. A view of the release (an
//! `impl Release` block): nothing here changes it.

use std::collections::BTreeMap;

use super::state::Release;
use super::state::{Activity, Task};
use super::steps::Setting;
use crate::engine::ids::PostKey;
use crate::protocol::model::{Phase, Protocol, Step, StepRun};

impl Release {
    /// The protocol being run (the last one once the release has ended).
    pub(super) fn protocol(&self) -> &Protocol {
        &self.plan.protocols[self.cursor.protocol.min(self.plan.protocols.len() - 1)]
    }

    /// The phase being run.
    pub(super) fn phase(&self) -> &Phase {
        &self.protocol().phases[self.cursor.phase]
    }

    /// The step being run.
    pub(super) fn step(&self) -> &Step {
        &self.phase().steps[self.cursor.step]
    }

    /// `Protocol 10 STEP 2.1 Deploy to staging`, as halts and audit lines name the step.
    pub(super) fn step_label(&self) -> String {
        let p = self.phase();
        match p.steps.get(self.cursor.step) {
            Some(s) => {
                format!("Protocol {} STEP {}.{} {}", self.protocol().id, p.number, self.cursor.step + 1, s.title)
            }
            None => format!("Protocol {} STEP {}", self.protocol().id, p.number),
        }
    }

    /// A figure measured in the current phase.
    pub(super) fn metric(&self, name: &str) -> Option<f64> {
        self.phase_metrics.get(name).copied()
    }

    /// Evidence path of the current protocol: `pre-deployment/<name>`.
    pub(super) fn evidence_path(&self, name: &str) -> String {
        format!("{}/{}", self.protocol().artifacts_dir, name)
    }

    /// Whether gate `gate` of the current protocol may be waived.
    pub(super) fn gate_waivable(&self, gate: &str) -> bool {
        self.protocol().gates.iter().any(|g| g.id == gate && g.waivable)
    }

    /// Constants gate thresholds may read: `rto`, the recovery time objective in seconds.
    pub(super) fn constants(&self) -> BTreeMap<String, f64> {
        let mut c = BTreeMap::new();
        let rto = self
            .plan
            .environment("staging")
            .or_else(|| self.plan.environment(&self.env))
            .map(|e| e.rto_seconds)
            .unwrap_or(0.0);
        c.insert("rto".to_string(), rto);
        c
    }

    /// What the current step reads of the release.
    pub(super) fn setting(&self) -> Setting<'_> {
        Setting { plan: &self.plan, protocol: self.protocol(), target: &self.env, strategy: self.strategy }
    }

    /// Whether `message` is one of the platform messages posted under `key`.
    pub(super) fn is_post(&self, key: &PostKey, message: &str) -> bool {
        self.posts.get(key).is_some_and(|ids| ids.iter().any(|m| m == message))
    }

    /// Prerequisite artifacts of the current protocol: (name, required).
    pub fn protocol_prerequisites(&self) -> Vec<(String, bool)> {
        self.protocol().prerequisites.artifacts.iter().map(|a| (a.name.clone(), a.required)).collect()
    }

    /// The protocol whose report step bundles the final evidence: (artifacts dir, zip, protocol id).
    pub(super) fn report_zip(&self) -> Option<(String, String, String)> {
        self.plan.protocols.iter().find_map(|p| {
            p.phases.iter().flat_map(|ph| &ph.steps).find_map(|s| match &s.run {
                StepRun::Report { zip } => Some((p.artifacts_dir.clone(), zip.clone(), p.id.clone())),
                _ => None,
            })
        })
    }

    /// The task the release waits on, when job or probe `id` is the work it waits for.
    pub(super) fn awaited(&self, id: &str) -> Option<Task> {
        match &self.activity {
            Activity::Job { job, task } if job == id => Some(task.clone()),
            Activity::Probe { probe, task } if *probe == id => Some(task.clone()),
            _ => None,
        }
    }
}
