//! Results the driver reports back to the engine after performing an effect.
//!
//! Plain data (serde), no I/O: the job runner, the HTTP prober and the evidence writer produce these,
//! the engine folds them into the release.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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
