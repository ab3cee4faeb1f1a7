//! The figures steps compute from job results, probes and files, which gates then read:
//! validation coverage and blocking errors, security findings, prerequisite completeness.
//!
//! Validation counts test cases: a suite that names a report (JUnit, read by the runtime) counts
//! the cases it lists, a suite without one counts its job's exit as one case. Coverage is cases
//! passed over cases targeted (skipped cases are targeted, not passed); when a suite's report gave
//! no count, coverage is not measured rather than guessed.
//!
//! Pure functions over data; the release records the figures as metrics and writes the evidence.

use crate::engine::plan::Suite;
use crate::engine::reports::{BundleReport, InputStatus, JobOutcome, ReportRead};

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

/// Where a suite's test cases were counted from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CaseSource {
    /// The suite names no report: its job's exit is its one case.
    Exit,
    /// The cases its report lists. `exit_counted`: the job failed although the report names no
    /// failed case, so its exit counts as one more targeted and failed case (a failed job never
    /// reads as a clean suite).
    Report {
        /// The job's exit was added as a failed case.
        exit_counted: bool,
    },
    /// The suite names a report that gave no count: why (`report missing at …`). Its cases are
    /// unknown, so coverage over the suites is not measured.
    Unmeasured(String),
}

/// The test cases of one suite's run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SuiteCases {
    /// Where they were counted from.
    pub(crate) source: CaseSource,
    /// Cases targeted (0 when unmeasured).
    pub(crate) targeted: u32,
    /// Cases that ran and passed.
    pub(crate) passed: u32,
    /// Cases that failed or errored (the job's exit included when it was counted).
    pub(crate) failed: u32,
    /// Cases skipped: targeted, not passed.
    pub(crate) skipped: u32,
}

impl SuiteCases {
    /// The cases of `suite`'s run `job`: from the report the runtime read, when the suite names
    /// one, else from the job's exit.
    pub(crate) fn of(job: &JobRecord, suite: &Suite) -> SuiteCases {
        let outcome = job.outcome.as_ref();
        let job_ok = outcome.is_some_and(JobOutcome::succeeded);
        let unmeasured = |why: String| SuiteCases {
            source: CaseSource::Unmeasured(why),
            targeted: 0,
            passed: 0,
            failed: 0,
            skipped: 0,
        };
        let Some(format) = suite.report else {
            let passed = u32::from(job_ok);
            return SuiteCases { source: CaseSource::Exit, targeted: 1, passed, failed: 1 - passed, skipped: 0 };
        };
        let Some(outcome) = outcome else { return unmeasured("the job has no recorded outcome".into()) };
        let Some(report) = outcome.report.as_ref() else {
            return unmeasured(format!("no {} report was read after the job", format.as_str()));
        };
        let counts = match &report.read {
            ReportRead::Parsed(c) if c.tests == 0 => {
                return unmeasured(format!("report {} lists no test case", report.path));
            }
            ReportRead::Parsed(c) => c,
            ReportRead::Missing => return unmeasured(format!("report missing at {}", report.path)),
            ReportRead::Unreadable { error } => {
                return unmeasured(format!("report {} unreadable: {error}", report.path));
            }
            ReportRead::Malformed { error } => return unmeasured(format!("report {} malformed: {error}", report.path)),
        };
        let exit_counted = !job_ok && counts.failed() == 0;
        let extra = u32::from(exit_counted);
        SuiteCases {
            source: CaseSource::Report { exit_counted },
            targeted: counts.tests + extra,
            passed: counts.passed(),
            failed: counts.failed() + extra,
            skipped: counts.skipped,
        }
    }

    /// Why the suite's cases are unknown, when they are.
    pub(crate) fn unmeasured(&self) -> Option<&str> {
        match &self.source {
            CaseSource::Unmeasured(why) => Some(why),
            _ => None,
        }
    }

    /// Counted, and nothing failed: no failed case, no failed job.
    pub(crate) fn clean(&self) -> bool {
        self.unmeasured().is_none() && self.failed == 0
    }

    /// What the suite adds to the blocking errors when it is critical: its failed cases, or one
    /// when its cases are unknown.
    fn blocking(&self) -> u32 {
        if self.unmeasured().is_some() { 1 } else { self.failed }
    }
}

/// What a validation step measured.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Validation {
    /// Each suite's cases, in suite order.
    pub(crate) suites: Vec<SuiteCases>,
    /// Test cases passed over the suites whose cases are known.
    pub(crate) passed: u32,
    /// Test cases targeted over the suites whose cases are known (skipped cases included).
    pub(crate) targeted: u32,
    /// `passed / targeted`; `None` (not measured) when a suite's report gave no count. Without
    /// suites, 1 when the probe is healthy and 0 otherwise.
    pub(crate) coverage: Option<f64>,
    /// Failed cases of critical suites (one for a critical suite whose cases are unknown), plus
    /// one for an unhealthy probe.
    pub(crate) blocking: f64,
}

impl Validation {
    /// Scores the suites' `jobs` (in the order of `suites`) and whether the probe after them was
    /// healthy.
    pub(crate) fn score(jobs: &[JobRecord], suites: &[Suite], probe_healthy: bool) -> Validation {
        let cases: Vec<SuiteCases> = jobs.iter().zip(suites).map(|(j, s)| SuiteCases::of(j, s)).collect();
        let passed = cases.iter().map(|c| c.passed).sum();
        let targeted = cases.iter().map(|c| c.targeted).sum();
        let critical: u32 = cases.iter().zip(suites).filter(|(_, s)| s.critical).map(|(c, _)| c.blocking()).sum();
        let coverage = if cases.is_empty() {
            Some(if probe_healthy { 1.0 } else { 0.0 })
        } else if cases.iter().any(|c| c.unmeasured().is_some()) {
            None
        } else {
            Some(ratio(passed as usize, targeted as usize))
        };
        let blocking = f64::from(critical) + if probe_healthy { 0.0 } else { 1.0 };
        Validation { suites: cases, passed, targeted, coverage, blocking }
    }

    /// True when nothing blocks: the step passes.
    pub(crate) fn passed(&self) -> bool {
        self.blocking == 0.0
    }

    /// Suites counted and clean.
    pub(crate) fn suites_passed(&self) -> usize {
        self.suites.iter().filter(|c| c.clean()).count()
    }

    /// Why coverage is not measured: one `suite: reason` per suite whose cases are unknown.
    pub(crate) fn unmeasured(&self, suites: &[Suite]) -> Vec<String> {
        self.suites.iter().zip(suites).filter_map(|(c, s)| Some(format!("{}: {}", s.name, c.unmeasured()?))).collect()
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
    use crate::engine::plan::{JobTemplate, ReportFormat};
    use crate::engine::reports::{TestCounts, TestReport};

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
        Suite { name: name.into(), job, critical, report: None }
    }

    fn junit_suite(name: &str, critical: bool) -> Suite {
        Suite { report: Some(ReportFormat::Junit), ..suite(name, critical) }
    }

    /// A suite job that exited `exit` after writing a report that read as `read`.
    fn reported(exit: i32, read: Option<ReportRead>) -> JobRecord {
        let mut j = job("validation x", "s", Some(exit));
        if let (Some(o), Some(read)) = (j.outcome.as_mut(), read) {
            o.report = Some(TestReport {
                format: ReportFormat::Junit,
                path: "p/s-x-junit.xml".into(),
                sha256: Some("ab".into()),
                read,
            });
        }
        j
    }

    fn counts(tests: u32, failures: u32, errors: u32, skipped: u32) -> Option<ReportRead> {
        Some(ReportRead::Parsed(TestCounts { tests, failures, errors, skipped, failed_cases: Vec::new() }))
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
        assert_eq!((v.passed, v.targeted, v.coverage, v.blocking), (1, 2, Some(0.5), 0.0));
        assert_eq!(v.suites_passed(), 1);
        assert!(v.passed());
        let jobs = [job("validation smoke", "s", Some(1)), job("validation e2e", "s", Some(0))];
        let v = Validation::score(&jobs, &suites, false);
        assert_eq!(v.blocking, 2.0);
        assert!(!v.passed());
    }

    #[test]
    fn without_suites_the_probe_is_the_coverage() {
        assert_eq!(Validation::score(&[], &[], true).coverage, Some(1.0));
        let v = Validation::score(&[], &[], false);
        assert_eq!((v.coverage, v.blocking), (Some(0.0), 1.0));
    }

    #[test]
    fn coverage_counts_the_test_cases_of_the_reports_and_one_per_suite_without_one() {
        // smoke: 5 cases from its report, all passed; regression: 6 cases, 1 failed, 1 skipped;
        // probe-less suite without a report: its exit.
        let suites = [junit_suite("smoke", true), junit_suite("regression", false), suite("legacy", false)];
        let jobs =
            [reported(0, counts(5, 0, 0, 0)), reported(1, counts(6, 1, 0, 1)), job("validation legacy", "s", Some(0))];
        let v = Validation::score(&jobs, &suites, true);
        assert_eq!((v.passed, v.targeted, v.blocking), (10, 12, 0.0));
        assert_eq!(v.coverage, Some(10.0 / 12.0));
        assert_eq!(v.suites[1].source, CaseSource::Report { exit_counted: false });
        assert_eq!((v.suites[1].failed, v.suites[1].skipped), (1, 1));
        assert_eq!(v.suites_passed(), 2);
        assert!(v.passed(), "a failed case of a non-critical suite only lowers coverage");
    }

    #[test]
    fn a_failed_case_of_a_critical_suite_blocks_and_lowers_coverage() {
        let suites = [junit_suite("smoke", true), junit_suite("regression", false)];
        let jobs = [reported(1, counts(5, 1, 1, 0)), reported(0, counts(6, 0, 0, 0))];
        let v = Validation::score(&jobs, &suites, true);
        assert_eq!((v.passed, v.targeted, v.blocking), (9, 11, 2.0));
        assert!(v.coverage.is_some_and(|c| c < 0.9));
        assert!(!v.passed());
    }

    #[test]
    fn a_failed_job_whose_report_names_no_failure_counts_its_exit_as_a_failed_case() {
        let suites = [junit_suite("smoke", true)];
        let v = Validation::score(&[reported(2, counts(5, 0, 0, 0))], &suites, true);
        assert_eq!(v.suites[0].source, CaseSource::Report { exit_counted: true });
        assert_eq!((v.passed, v.targeted, v.blocking), (5, 6, 1.0));
        // Failures that explain the exit are not counted twice.
        let v = Validation::score(&[reported(1, counts(5, 2, 0, 0))], &suites, true);
        assert_eq!((v.passed, v.targeted, v.blocking), (3, 5, 2.0));
        // A clean exit does not hide a failed case.
        let v = Validation::score(&[reported(0, counts(5, 1, 0, 0))], &suites, true);
        assert_eq!((v.targeted, v.blocking, v.suites_passed()), (5, 1.0, 0));
    }

    #[test]
    fn a_report_that_gave_no_count_fails_its_suite_and_leaves_coverage_unmeasured() {
        let suites = [junit_suite("smoke", true), junit_suite("regression", false)];
        let unreadable = Some(ReportRead::Unreadable { error: "permission denied".into() });
        let malformed = Some(ReportRead::Malformed { error: "no root".into() });
        for (read, why) in [
            (Some(ReportRead::Missing), "regression: report missing at p/s-x-junit.xml"),
            (unreadable, "regression: report p/s-x-junit.xml unreadable: permission denied"),
            (malformed, "regression: report p/s-x-junit.xml malformed: no root"),
            (counts(0, 0, 0, 0), "regression: report p/s-x-junit.xml lists no test case"),
            (None, "regression: no junit report was read after the job"),
        ] {
            let jobs = [reported(0, counts(5, 0, 0, 0)), reported(0, read)];
            let v = Validation::score(&jobs, &suites, true);
            assert_eq!(v.coverage, None, "{why}");
            assert_eq!(v.unmeasured(&suites), [why]);
            assert_eq!((v.passed, v.targeted, v.suites_passed()), (5, 5, 1));
            assert_eq!(v.blocking, 0.0, "regression is not critical");
        }
        // A critical suite whose report is missing blocks, even though its job exited 0.
        let jobs = [reported(0, Some(ReportRead::Missing)), reported(0, counts(6, 0, 0, 0))];
        let v = Validation::score(&jobs, &suites, true);
        assert_eq!((v.coverage, v.blocking), (None, 1.0));
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
            content: Vec::new(),
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
