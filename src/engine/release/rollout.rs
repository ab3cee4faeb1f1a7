//! The rollout of a deploy step and the health window after it: traffic shares one after the
//! other, a probe after each, the 50% milestone, and the rounds of the soak.
//!
//! A leaf: [`Rollout::after_probe`] says what a probe result means for the rollout and
//! [`next_soak_round`] when the health window probes next; the release starts the jobs and probes
//! and posts the announcements.

use crate::engine::ids::ProbeId;
use crate::engine::plan::{Environment, HealthWindow, ProbeSettings};
use crate::engine::reports::ProbeReport;
use crate::engine::{ProbeSpec, Strategy, Timestamp};

/// Whether a probe's figures meet the environment's health thresholds.
pub(crate) fn healthy(settings: &ProbeSettings, r: &ProbeReport) -> bool {
    r.success_rate() + 1e-9 >= settings.min_success_rate && r.p95_ms <= settings.max_p95_ms
}

/// A probe's figures for chat, e.g. `20/20 healthy (100%), p95 5 ms, serving v1.2×20`.
pub(crate) fn summary(r: &ProbeReport) -> String {
    let versions: Vec<String> = r.versions.iter().map(|(v, n)| format!("{v}×{n}")).collect();
    format!(
        "{}/{} healthy ({:.0}%), p95 {} ms{}",
        r.ok,
        r.total,
        r.success_rate() * 100.0,
        r.p95_ms,
        if versions.is_empty() { String::new() } else { format!(", serving {}", versions.join(" ")) }
    )
}

/// What the probe after a traffic step decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeStep {
    /// The environment is unhealthy at `percent` of the traffic: the deploy failed.
    Unhealthy {
        /// Traffic share of the step just probed.
        percent: u8,
    },
    /// After the last step the version under release does not serve (checked only when the
    /// environment names its serving version in a header).
    NotServing,
    /// Healthy: go on with sub-step `next`.
    Next {
        /// Index into [`Strategy::steps`] of the next sub-step.
        next: usize,
        /// This step took the rollout from under half to at least half (the 50% milestone).
        halfway: bool,
    },
    /// Healthy after the last sub-step: the deploy step is done.
    Complete {
        /// This step took the rollout from under half to at least half.
        halfway: bool,
    },
}

impl ProbeStep {
    /// Why the deploy failed, if it did; `summary` is the probe's figures.
    pub(crate) fn failure(self, summary: &str, version: &str) -> Option<String> {
        match self {
            ProbeStep::Unhealthy { percent } => Some(format!("probes at {percent}% traffic: {summary}")),
            ProbeStep::NotServing => Some(format!("{version} is not serving after the switch: {summary}")),
            ProbeStep::Next { .. } | ProbeStep::Complete { .. } => None,
        }
    }

    /// This step took the rollout past the 50% milestone.
    pub(crate) fn halfway(self) -> bool {
        matches!(self, ProbeStep::Next { halfway: true, .. } | ProbeStep::Complete { halfway: true })
    }
}

/// A rollout with `strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rollout {
    /// The release's strategy.
    pub(crate) strategy: Strategy,
}

impl Rollout {
    /// Traffic share of sub-step `index` (the last one for indices past the end).
    pub(crate) fn percent(self, index: usize) -> u8 {
        let steps = self.strategy.steps();
        steps[index.min(steps.len() - 1)]
    }

    /// How far the rollout is after sub-step `index`, in percent. Blue/green's first step starts
    /// the idle colour without traffic, yet it is half of the work.
    pub(crate) fn completion(self, index: usize) -> u8 {
        let steps = self.strategy.steps();
        match self.strategy {
            Strategy::Bluegreen => (((index + 1) * 100) / steps.len()) as u8,
            _ => steps[index],
        }
    }

    /// Whether sub-step `index` is the last.
    pub(crate) fn is_last(self, index: usize) -> bool {
        index + 1 == self.strategy.steps().len()
    }

    /// Reads the probe after sub-step `index` of a rollout of `version` to an environment probed
    /// with `settings`.
    pub(crate) fn after_probe(
        self,
        index: usize,
        settings: &ProbeSettings,
        report: &ProbeReport,
        version: &str,
    ) -> ProbeStep {
        if !healthy(settings, report) {
            return ProbeStep::Unhealthy { percent: self.percent(index) };
        }
        let last = self.is_last(index);
        if last && settings.version_header.is_some() && report.version_share(version) + 1e-9 < settings.min_success_rate
        {
            return ProbeStep::NotServing;
        }
        let before = if index == 0 { 0 } else { self.completion(index - 1) };
        let halfway = before < 50 && (50..100).contains(&self.completion(index));
        if last { ProbeStep::Complete { halfway } } else { ProbeStep::Next { next: index + 1, halfway } }
    }
}

/// When the health window ending at `until` probes next after a round at `now`; `None` once the
/// window is over.
pub(crate) fn next_soak_round(window: &HealthWindow, now: Timestamp, until: Timestamp) -> Option<Timestamp> {
    (now < until).then(|| now.plus_ms(window.interval_ms).min(until))
}

/// The probe of `env` the runtime runs as probe `id`.
pub(crate) fn probe_spec(id: &ProbeId, env: &Environment) -> ProbeSpec {
    let p = &env.probe;
    ProbeSpec {
        id: id.clone(),
        url: p.url.clone(),
        count: p.count,
        interval_ms: p.interval_ms,
        timeout_ms: p.timeout_ms,
        version_header: p.version_header.clone(),
    }
}

/// `Production` for `production`: environment names at the start of an announcement.
pub(crate) fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn settings(header: bool) -> ProbeSettings {
        ProbeSettings {
            url: "http://127.0.0.1:1/healthz".into(),
            count: 10,
            interval_ms: 1,
            timeout_ms: 1,
            min_success_rate: 0.9,
            max_p95_ms: 100,
            version_header: header.then(|| "x-version".to_string()),
        }
    }

    fn report(ok: u32, p95: u64, version: &str) -> ProbeReport {
        ProbeReport {
            url: "u".into(),
            total: 10,
            ok,
            p50_ms: 1,
            p95_ms: p95,
            max_ms: p95,
            statuses: BTreeMap::new(),
            versions: [(version.to_string(), 10)].into(),
            errors: Vec::new(),
        }
    }

    #[test]
    fn health_needs_both_the_success_rate_and_the_latency() {
        assert!(healthy(&settings(false), &report(9, 100, "v1")));
        assert!(!healthy(&settings(false), &report(8, 100, "v1")));
        assert!(!healthy(&settings(false), &report(10, 101, "v1")));
        assert_eq!(summary(&report(9, 5, "v1")), "9/10 healthy (90%), p95 5 ms, serving v1×10");
    }

    #[test]
    fn canary_walks_its_steps_and_marks_the_halfway_milestone_once() {
        let r = Rollout { strategy: Strategy::Canary };
        let ok = report(10, 5, "v2");
        assert_eq!(r.after_probe(0, &settings(true), &ok, "v2"), ProbeStep::Next { next: 1, halfway: false });
        assert_eq!(r.after_probe(1, &settings(true), &ok, "v2"), ProbeStep::Next { next: 2, halfway: true });
        assert_eq!(r.after_probe(2, &settings(true), &ok, "v2"), ProbeStep::Complete { halfway: false });
        assert_eq!(r.after_probe(1, &settings(true), &report(0, 5, "v2"), "v2"), ProbeStep::Unhealthy { percent: 50 });
    }

    #[test]
    fn a_failed_probe_names_the_traffic_share_or_the_version_not_serving() {
        let figures = "0/10 healthy (0%), p95 5 ms";
        assert_eq!(
            ProbeStep::Unhealthy { percent: 50 }.failure(figures, "v2"),
            Some("probes at 50% traffic: 0/10 healthy (0%), p95 5 ms".into())
        );
        assert_eq!(
            ProbeStep::NotServing.failure("10/10 healthy", "v2"),
            Some("v2 is not serving after the switch: 10/10 healthy".into())
        );
        assert_eq!(ProbeStep::Complete { halfway: true }.failure(figures, "v2"), None);
        assert!(
            ProbeStep::Complete { halfway: true }.halfway() && !ProbeStep::Next { next: 1, halfway: false }.halfway()
        );
    }

    #[test]
    fn blue_green_is_halfway_after_starting_the_idle_colour() {
        let r = Rollout { strategy: Strategy::Bluegreen };
        assert_eq!((r.percent(0), r.completion(0), r.completion(1)), (0, 50, 100));
        assert_eq!(
            r.after_probe(0, &settings(false), &report(10, 5, "v1"), "v2"),
            ProbeStep::Next { next: 1, halfway: true }
        );
    }

    #[test]
    fn the_new_version_must_serve_after_the_switch_when_the_header_names_it() {
        let r = Rollout { strategy: Strategy::Bluegreen };
        let old = report(10, 5, "v1");
        assert_eq!(r.after_probe(1, &settings(true), &old, "v2"), ProbeStep::NotServing);
        assert_eq!(r.after_probe(1, &settings(false), &old, "v2"), ProbeStep::Complete { halfway: false });
    }

    #[test]
    fn a_probe_runs_with_the_environment_settings() {
        let plan = crate::engine::testkit::sample_plan("production");
        let env = plan.environment("production").expect("production is configured");
        let spec = probe_spec(&ProbeId::new("r", 3), env);
        assert_eq!(
            (spec.id.as_str(), spec.url.as_str(), spec.count),
            ("r#probe3", env.probe.url.as_str(), env.probe.count)
        );
        assert_eq!(spec.version_header, env.probe.version_header);
    }

    #[test]
    fn the_health_window_probes_until_it_ends() {
        let w = HealthWindow { duration_ms: 10_000, interval_ms: 3_000 };
        assert_eq!(next_soak_round(&w, Timestamp(0), Timestamp(10_000)), Some(Timestamp(3_000)));
        assert_eq!(next_soak_round(&w, Timestamp(9_000), Timestamp(10_000)), Some(Timestamp(10_000)));
        assert_eq!(next_soak_round(&w, Timestamp(10_000), Timestamp(10_000)), None);
    }
}
