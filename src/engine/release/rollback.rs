//! Rolling the target environment back: the record, whether the probe after the rollback job
//! confirms the previous version, and when a queued `/ray rollback` takes over.
//!
//! A leaf: the release starts the job and the probe, posts and ends the release.

use crate::engine::Timestamp;
use crate::engine::plan::ProbeSettings;
use crate::engine::reports::ProbeReport;

use super::rollout;
use super::state::{RollbackRecord, Task};

/// The trigger of a rollback nobody asked for (a failed gate, job or health window).
pub(crate) const AUTOMATIC: &str = "automatic";

impl RollbackRecord {
    /// A rollback of `env` started at `now`; `trigger` is `automatic` or the user id who asked.
    pub(crate) fn start(env: String, reason: String, trigger: String, now: Timestamp) -> RollbackRecord {
        RollbackRecord { env, reason, trigger, started_at: now, finished_at: None, confirmed: None }
    }

    /// The probe confirmed the previous version at `now`; `summary` is its figures.
    pub(crate) fn confirm(&mut self, now: Timestamp, summary: String) {
        self.finished_at = Some(now);
        self.confirmed = Some(summary);
    }

    /// Who asked for the rollback; `None` when it was [`AUTOMATIC`].
    pub(crate) fn asked_by(&self) -> Option<&str> {
        Some(self.trigger.as_str()).filter(|t| *t != AUTOMATIC)
    }
}

/// Whether the probe after the rollback job shows the environment healthy and no longer serving
/// `version` (any request still answered by it means the rollback did not take).
pub(crate) fn restored(settings: &ProbeSettings, report: &ProbeReport, version: &str) -> bool {
    rollout::healthy(settings, report) && report.version_share(version) <= 0.0
}

impl Task {
    /// True for the rollback's own job and probe: a queued `/ray rollback` never interrupts them.
    pub(crate) fn is_rollback(&self) -> bool {
        matches!(self, Task::Rollback { .. } | Task::RollbackProbe { .. })
    }
}

/// Takes the `/ray rollback` queued while a job or probe ran, unless `task` (what just ended) is
/// part of a rollback already.
pub(crate) fn take_queued(queued: &mut Option<(String, String)>, task: &Task) -> Option<(String, String)> {
    if task.is_rollback() { None } else { queued.take() }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn settings() -> ProbeSettings {
        ProbeSettings {
            url: "u".into(),
            count: 10,
            interval_ms: 1,
            timeout_ms: 1,
            min_success_rate: 0.9,
            max_p95_ms: 100,
            version_header: Some("x-version".into()),
        }
    }

    fn report(ok: u32, versions: &[(&str, u32)]) -> ProbeReport {
        ProbeReport {
            url: "u".into(),
            total: 10,
            ok,
            p50_ms: 1,
            p95_ms: 5,
            max_ms: 5,
            statuses: BTreeMap::new(),
            versions: versions.iter().map(|(v, n)| (v.to_string(), *n)).collect(),
            errors: Vec::new(),
        }
    }

    #[test]
    fn a_rollback_is_confirmed_only_by_a_healthy_previous_version() {
        assert!(restored(&settings(), &report(10, &[("v1.1", 10)]), "v1.2"));
        assert!(!restored(&settings(), &report(10, &[("v1.1", 9), ("v1.2", 1)]), "v1.2"));
        assert!(!restored(&settings(), &report(0, &[("v1.1", 10)]), "v1.2"));
        // Without a version header nothing names the version: health decides.
        assert!(restored(&settings(), &report(10, &[]), "v1.2"));
    }

    #[test]
    fn the_record_keeps_when_and_how_it_was_confirmed() {
        let mut r = RollbackRecord::start("production".into(), "bad".into(), "automatic".into(), Timestamp(1));
        assert_eq!((r.finished_at, r.confirmed.as_deref()), (None, None));
        r.confirm(Timestamp(9), "10/10 healthy".into());
        assert_eq!((r.finished_at, r.confirmed.as_deref()), (Some(Timestamp(9)), Some("10/10 healthy")));
    }

    #[test]
    fn a_queued_rollback_waits_for_anything_but_a_rollback() {
        let mut queued = Some(("carol".to_string(), "requested by @carol: bad".to_string()));
        assert_eq!(take_queued(&mut queued, &Task::Rollback { started: Timestamp(1) }), None);
        assert!(queued.is_some());
        assert_eq!(take_queued(&mut queued, &Task::DeployStep { index: 0 }).map(|q| q.0), Some("carol".into()));
        assert_eq!(queued, None);
    }
}
