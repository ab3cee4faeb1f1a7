//! The figures steps compute from job results, probes and files, which gates then read:
//! validation coverage and blocking errors, security findings, prerequisite completeness.
//!
//! Pure functions over data; the release records the figures as metrics and writes the evidence.

use crate::engine::plan::Suite;
use crate::engine::reports::{BundleReport, InputStatus, JobOutcome};

use super::state::JobRecord;

/// The jobs of the last validation run on `env`: its last `suites` validation jobs, in suite
/// order (empty when the environment has no suites).
pub(crate) fn suite_jobs<'a>(jobs: &'a [JobRecord], env: &str, suites: usize) -> &'a [JobRecord] {
    let last = jobs.iter().rposition(|j| j.purpose.starts_with("validation ") && j.env == env);
    match last {
        Some(last) if suites > 0 => &jobs[last + 1 - suites..=last],
        _ => &[],
    }
}

/// What a validation step measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Validation {
    /// Suites that passed.
    pub(crate) passed: usize,
    /// Suites run.
    pub(crate) targeted: usize,
    /// Share of suites passed; without suites, 1 when the probe is healthy and 0 otherwise.
    pub(crate) coverage: f64,
    /// Failed critical suites, plus one for an unhealthy probe.
    pub(crate) blocking: f64,
}

impl Validation {
    /// Scores the suites' `jobs` (in the order of `suites`) and whether the probe after them was
    /// healthy.
    pub(crate) fn score(jobs: &[JobRecord], suites: &[Suite], probe_healthy: bool) -> Validation {
        let ok = |j: &JobRecord| j.outcome.as_ref().is_some_and(JobOutcome::succeeded);
        let passed = jobs.iter().filter(|j| ok(j)).count();
        let critical_failed = jobs.iter().zip(suites).filter(|(j, s)| s.critical && !ok(j)).count();
        let coverage =
            if jobs.is_empty() { if probe_healthy { 1.0 } else { 0.0 } } else { passed as f64 / jobs.len() as f64 };
        let blocking = critical_failed as f64 + if probe_healthy { 0.0 } else { 1.0 };
        Validation { passed, targeted: jobs.len(), coverage, blocking }
    }

    /// True when nothing blocks: the step passes.
    pub(crate) fn passed(&self) -> bool {
        self.blocking == 0.0
    }
}

/// Blocking findings of a security job: none when it passed, otherwise the last
/// `blocking_findings=N` line of its output, or one when it names none.
pub(crate) fn blocking_findings(outcome: &JobOutcome) -> f64 {
    if outcome.succeeded() {
        return 0.0;
    }
    outcome
        .log_tail
        .iter()
        .rev()
        .find_map(|l| l.trim().strip_prefix("blocking_findings=").and_then(|n| n.parse::<f64>().ok()))
        .unwrap_or(1.0)
}

/// Marks prerequisite files this release bundled itself whose digest no longer matches the one
/// the bundle recorded (`checksum mismatch`).
pub(crate) fn verify_digests(results: &mut [InputStatus], bundles: &[BundleReport]) {
    for r in results {
        if let Some(sha) = &r.sha256 {
            let recorded = bundles.iter().find(|b| b.zip == r.name).map(|b| &b.zip_sha256);
            if recorded.is_some_and(|rec| rec != sha) {
                r.status = "checksum mismatch".into();
            }
        }
    }
}

/// Prerequisites present out of those required: the required files, plus one item per extra
/// check (`true` when it holds). The completeness score is `good / total`, 1 when nothing is
/// required.
pub(crate) fn completeness(results: &[InputStatus], extra: &[bool]) -> (usize, usize) {
    let required = results.iter().filter(|r| r.required);
    let good = required.clone().filter(|r| r.status == "present").count() + extra.iter().filter(|x| **x).count();
    (good, required.count() + extra.len())
}

/// `good / total`, or 1 when nothing was asked for.
pub(crate) fn ratio(good: usize, total: usize) -> f64 {
    if total == 0 { 1.0 } else { good as f64 / total as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Timestamp;
    use crate::engine::plan::JobTemplate;

    fn outcome(exit: i32, tail: &[&str]) -> JobOutcome {
        JobOutcome {
            exit_code: Some(exit),
            timed_out: false,
            duration_ms: 1,
            spawn_error: None,
            log_tail: tail.iter().map(|l| l.to_string()).collect(),
            report: None,
        }
    }

    fn job(purpose: &str, env: &str, exit: Option<i32>) -> JobRecord {
        JobRecord {
            id: purpose.into(),
            purpose: purpose.into(),
            env: env.into(),
            argv: Vec::new(),
            log: "l".into(),
            started_at: Timestamp(1),
            outcome: exit.map(|e| outcome(e, &[])),
            finished_at: None,
            spec: None,
        }
    }

    fn suite(name: &str, critical: bool) -> Suite {
        let job = JobTemplate { argv: Vec::new(), timeout_ms: 1, env: Default::default() };
        Suite { name: name.into(), job, critical }
    }

    #[test]
    fn validation_reads_the_last_run_of_the_environment() {
        let jobs = [
            job("validation smoke staging", "staging", Some(1)),
            job("validation smoke staging", "staging", Some(0)),
            job("validation e2e staging", "staging", Some(1)),
            job("validation smoke production", "production", Some(0)),
        ];
        let run = suite_jobs(&jobs, "staging", 2);
        assert_eq!(run.len(), 2);
        assert_eq!(run[0].outcome.as_ref().and_then(|o| o.exit_code), Some(0));
        assert!(suite_jobs(&jobs, "staging", 0).is_empty());
        assert!(suite_jobs(&jobs, "qa", 1).is_empty());
    }

    #[test]
    fn only_critical_suites_and_the_probe_block() {
        let suites = [suite("smoke", true), suite("e2e", false)];
        let jobs = [job("validation smoke", "s", Some(0)), job("validation e2e", "s", Some(1))];
        let v = Validation::score(&jobs, &suites, true);
        assert_eq!((v.passed, v.targeted, v.coverage, v.blocking), (1, 2, 0.5, 0.0));
        assert!(v.passed());
        let jobs = [job("validation smoke", "s", Some(1)), job("validation e2e", "s", Some(0))];
        let v = Validation::score(&jobs, &suites, false);
        assert_eq!(v.blocking, 2.0);
        assert!(!v.passed());
    }

    #[test]
    fn without_suites_the_probe_is_the_coverage() {
        assert_eq!(Validation::score(&[], &[], true).coverage, 1.0);
        let v = Validation::score(&[], &[], false);
        assert_eq!((v.coverage, v.blocking), (0.0, 1.0));
    }

    #[test]
    fn security_findings_come_from_the_job_output() {
        assert_eq!(blocking_findings(&outcome(0, &["blocking_findings=3"])), 0.0);
        assert_eq!(blocking_findings(&outcome(2, &["blocking_findings=1", " blocking_findings=3 "])), 3.0);
        assert_eq!(blocking_findings(&outcome(2, &["crashed"])), 1.0);
    }

    fn input(name: &str, status: &str, required: bool, sha: Option<&str>) -> InputStatus {
        InputStatus {
            name: name.into(),
            found: Vec::new(),
            status: status.into(),
            required,
            sha256: sha.map(str::to_string),
        }
    }

    #[test]
    fn a_bundle_changed_since_it_was_written_is_a_mismatch() {
        let bundles =
            [BundleReport { zip: "P.zip".into(), zip_sha256: "aa".into(), files: Vec::new(), missing: Vec::new() }];
        let mut results = [input("P.zip", "present", true, Some("bb")), input("Q.zip", "present", true, Some("cc"))];
        verify_digests(&mut results, &bundles);
        assert_eq!((results[0].status.as_str(), results[1].status.as_str()), ("checksum mismatch", "present"));
    }

    #[test]
    fn completeness_counts_required_files_and_extra_checks() {
        let results =
            [input("a", "present", true, None), input("b", "missing", true, None), input("c", "missing", false, None)];
        assert_eq!(completeness(&results, &[]), (1, 2));
        assert_eq!(completeness(&results, &[true, false]), (2, 4));
        assert_eq!(ratio(0, 0), 1.0);
        assert_eq!(ratio(1, 4), 0.25);
    }
}
