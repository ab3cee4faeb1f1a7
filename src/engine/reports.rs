//! Results the driver reports back to the engine after performing an effect.
//!
//! Plain data (serde), no I/O: the job runner, the HTTP prober and the evidence writer produce these,
//! the engine folds them into the release.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::plan::ReportFormat;

/// How a job (deploy, rollback, validation, security …) ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOutcome {
    /// Exit code; `None` when killed by a signal, timed out, or never started.
    pub exit_code: Option<i32>,
    /// The job ran past its timeout and its whole process group was killed.
    pub timed_out: bool,
    /// Wall-clock run time in milliseconds.
    pub duration_ms: u64,
    /// Why the job could not be started (missing program, permission …).
    pub spawn_error: Option<String>,
    /// The last lines the job printed (stdout and stderr interleaved), at most 20.
    pub log_tail: Vec<String>,
    /// What the runtime read of the test report the job was asked to write (`{output}`); `None`
    /// for jobs asked for none. Absent in events recorded before reports were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<TestReport>,
}

impl JobOutcome {
    /// True when the job started, finished in time and exited 0.
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out && self.spawn_error.is_none()
    }

    /// One-line human summary: `exit 0 in 1.2s`, `timed out after 30.0s`, `could not start: …`.
    pub fn summary(&self) -> String {
        let secs = self.duration_ms as f64 / 1000.0;
        if let Some(err) = &self.spawn_error {
            format!("could not start: {err}")
        } else if self.timed_out {
            format!("timed out after {secs:.1}s (process group killed)")
        } else {
            match self.exit_code {
                Some(code) => format!("exit {code} in {secs:.1}s"),
                None => format!("killed by a signal after {secs:.1}s"),
            }
        }
    }
}

/// The most failed test cases a [`TestCounts`] names; the counts still count them all.
pub const MAX_FAILED_CASES: usize = 20;

/// What the runtime found at the path a job was asked to write its test report to, read after
/// the job ended. The file is removed before the job starts, so what is read is the job's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestReport {
    /// The format the file was read as.
    pub format: ReportFormat,
    /// Path relative to the release's artifacts directory, e.g.
    /// `pre-deployment/staging-smoke-junit.xml`.
    pub path: String,
    /// SHA-256 of the bytes read, hex; `None` when there was nothing to read.
    #[serde(default)]
    pub sha256: Option<String>,
    /// The figures, or why there are none.
    pub read: ReportRead,
}

/// What reading a test report gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReportRead {
    /// The file parsed: the counts over its test cases.
    Parsed(TestCounts),
    /// No file at the path once the job had ended.
    Missing,
    /// A file is there but could not be read (permissions, size, an earlier file that could not
    /// be removed before the job).
    Unreadable {
        /// Why.
        error: String,
    },
    /// The file was read but is not a JUnit XML report.
    Malformed {
        /// What is wrong, e.g. `root element <html>, expected <testsuites> or <testsuite>`.
        error: String,
    },
}

/// Counts over the `<testcase>` elements of a report (its `tests=` / `failures=` attributes are
/// not trusted: they are what the writer claims, the cases are what it lists). A case counts once:
/// as a failure, else an error, else skipped, else passed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestCounts {
    /// Test cases listed.
    pub tests: u32,
    /// Cases with a `<failure>`.
    pub failures: u32,
    /// Cases with an `<error>` (and no `<failure>`).
    pub errors: u32,
    /// Cases with `<skipped>` and neither of the above.
    pub skipped: u32,
    /// The failed and errored cases, in file order, at most [`MAX_FAILED_CASES`].
    #[serde(default)]
    pub failed_cases: Vec<FailedCase>,
}

impl TestCounts {
    /// Cases that ran and neither failed nor errored.
    pub fn passed(&self) -> u32 {
        self.tests.saturating_sub(self.failures + self.errors + self.skipped)
    }

    /// Cases that failed or errored.
    pub fn failed(&self) -> u32 {
        self.failures + self.errors
    }
}

/// One failed or errored test case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedCase {
    /// `classname.name`, or `name` when the case has no class name (at most 200 characters).
    pub name: String,
    /// `failure` or `error`.
    pub kind: String,
    /// The first line of the failure's `message` attribute, or else of its text (at most 200
    /// characters); empty when it has neither.
    #[serde(default)]
    pub message: String,
}

/// Figures from one HTTP probe run (`count` GET requests against one URL).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// The URL probed, e.g. `http://127.0.0.1:18090/healthz`.
    pub url: String,
    /// Requests sent.
    pub total: u32,
    /// Requests answered with a 2xx status in time.
    pub ok: u32,
    /// Median latency in milliseconds over requests that got an HTTP answer (0 if none did).
    pub p50_ms: u64,
    /// 95th-percentile latency in milliseconds; compared with the environment's `max_p95_ms`.
    pub p95_ms: u64,
    /// Slowest answer in milliseconds.
    pub max_ms: u64,
    /// Status code (or `error`) → count.
    pub statuses: BTreeMap<String, u32>,
    /// Value of the version header (if configured) → count.
    pub versions: BTreeMap<String, u32>,
    /// Up to five distinct transport errors.
    pub errors: Vec<String>,
}

impl ProbeReport {
    /// Share of successful requests, 0.0 when nothing was sent.
    pub fn success_rate(&self) -> f64 {
        if self.total == 0 { 0.0 } else { f64::from(self.ok) / f64::from(self.total) }
    }

    /// Share of answers that carried `version` in the version header.
    pub fn version_share(&self, version: &str) -> f64 {
        let seen: u32 = self.versions.values().sum();
        if seen == 0 { 0.0 } else { f64::from(self.versions.get(version).copied().unwrap_or(0)) / f64::from(seen) }
    }
}

/// Status of one prerequisite artifact, as found on disk by the driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputStatus {
    /// The artifact's name as the protocol lists it.
    pub name: String,
    /// Files that matched (a glob may match several).
    pub found: Vec<String>,
    /// `present`, `missing`, `expired` (older than the configured max age), `unreadable` or `corrupt`.
    pub status: String,
    /// Copied from the request: only required artifacts count towards completeness.
    pub required: bool,
    /// SHA-256 of the first match, hex.
    pub sha256: Option<String>,
    /// What was read for each of the artifact's content expectations, in order (empty when it has
    /// none, or was not found).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<ContentResult>,
}

/// One content expectation of a prerequisite artifact, as read from the first match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentResult {
    /// The JSON file read (inside the zip, or the artifact itself).
    pub file: String,
    /// The field, dotted.
    pub field: String,
    /// The value it had to equal; `None`: any non-empty value.
    pub expected: Option<serde_json::Value>,
    /// The value found; `None` when the field (or the file) was not there.
    pub found: Option<serde_json::Value>,
    /// Why nothing was found, e.g. `quality-audit-report.json not in the zip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the expectation holds.
    pub ok: bool,
    /// The prerequisite approval it verifies, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proves: Option<String>,
}

/// One file written into an evidence bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// Path relative to the release's artifacts directory, e.g. `pre-deployment/staging-test-results.json`.
    pub path: String,
    /// SHA-256 of the contents, hex.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// What the evidence writer reports after building a bundle (zip + optional manifest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleReport {
    /// The zip, relative to the release's artifacts directory.
    pub zip: String,
    /// SHA-256 of the zip, hex; later prerequisite checks compare against it.
    pub zip_sha256: String,
    /// Files put into the zip (the manifest included, when there is one).
    pub files: Vec<FileDigest>,
    /// Files that were asked for but did not exist.
    pub missing: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_recorded_before_reports_were_read_still_load_and_new_ones_without_a_report_look_the_same() {
        let old = r#"{"exit_code":0,"timed_out":false,"duration_ms":5,"spawn_error":null,"log_tail":["ok"]}"#;
        let outcome: JobOutcome = serde_json::from_str(old).unwrap();
        assert_eq!(outcome.report, None);
        assert_eq!(serde_json::to_string(&outcome).unwrap(), old);
    }

    #[test]
    fn a_report_is_stored_with_its_status() {
        let report = TestReport {
            format: ReportFormat::Junit,
            path: "pre-deployment/staging-smoke-junit.xml".into(),
            sha256: Some("ab".into()),
            read: ReportRead::Parsed(TestCounts { tests: 2, failures: 1, ..TestCounts::default() }),
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["format"], "junit");
        assert_eq!(json["read"]["status"], "parsed");
        assert_eq!(json["read"]["tests"], 2);
        assert_eq!(serde_json::from_value::<TestReport>(json).unwrap(), report);
        let missing = serde_json::to_value(ReportRead::Missing).unwrap();
        assert_eq!(missing, serde_json::json!({"status": "missing"}));
        assert_eq!(TestCounts { tests: 5, failures: 1, errors: 1, skipped: 1, ..TestCounts::default() }.passed(), 2);
    }
}
