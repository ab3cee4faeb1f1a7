//! The evidence bundles of the package and report steps, read: how complete the package is,
//! which evidence the report should hold, and whether a missing file stops the step.
//!
//! A leaf: the release asks for the bundles, records the figures and posts the notes.

use crate::engine::reports::BundleReport;
use crate::protocol::model::{Level, Protocol, StepRun};

use super::scores;
use super::steps::Next;

/// The package step's bundle, read: `manifest_completeness`, the note, and a failure when a file
/// asked for is missing. `manifest` (written by the bundle itself) does not count.
pub(crate) fn package(report: &BundleReport, manifest: Option<&str>) -> (f64, String, Next) {
    let found = report.files.iter().filter(|f| Some(f.path.as_str()) != manifest).count();
    let asked = found + report.missing.len();
    let completeness = if asked == 0 { 0.0 } else { found as f64 / asked as f64 };
    let missing =
        if report.missing.is_empty() { String::new() } else { format!("; missing: {}", report.missing.join(", ")) };
    let note = format!(
        "{} written: {} files, SHA-256 {}{missing}.",
        report.zip,
        report.files.len(),
        &report.zip_sha256[..report.zip_sha256.len().min(12)],
    );
    let next = if report.missing.is_empty() {
        Next::Done
    } else {
        Next::Failed(format!("package incomplete: {} missing", report.missing.join(", ")))
    };
    (completeness, note, next)
}

/// The report step's bundle, read against the evidence `expected`: `report_completeness` and the
/// note.
pub(crate) fn report(report: &BundleReport, expected: &[String]) -> (f64, String) {
    let present = expected.iter().filter(|e| report.files.iter().any(|f| &f.path == *e)).count();
    let rc = scores::ratio(present, expected.len());
    let note = format!(
        "DEPLOYMENT-REPORT.md and {} written ({} files, report completeness {:.0}%).",
        report.zip,
        report.files.len(),
        rc * 100.0
    );
    (rc, note)
}

/// Evidence the MUST steps of protocol `p` up to step `step` of phase `phase` should have
/// produced (zips and the report step aside).
pub(crate) fn expected_evidence(p: &Protocol, phase: usize, step: usize) -> Vec<String> {
    let mut out = Vec::new();
    for (pi, ph) in p.phases.iter().enumerate() {
        for (si, s) in ph.steps.iter().enumerate() {
            if (pi, si) > (phase, step) {
                return out;
            }
            if s.level == Level::Must && !matches!(s.run, StepRun::Report { .. }) {
                out.extend(
                    s.evidence.iter().filter(|e| !e.ends_with(".zip")).map(|e| format!("{}/{e}", p.artifacts_dir)),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::reports::FileDigest;
    use crate::engine::testkit::sample_plan;

    fn bundle(files: &[&str], missing: &[&str]) -> BundleReport {
        BundleReport {
            zip: "pre/P.zip".into(),
            zip_sha256: "0123456789abcdef".into(),
            files: files.iter().map(|f| FileDigest { path: f.to_string(), sha256: "x".into(), bytes: 1 }).collect(),
            missing: missing.iter().map(|m| m.to_string()).collect(),
        }
    }

    #[test]
    fn a_missing_file_fails_the_package_step_and_the_manifest_does_not_count() {
        let (c, note, next) =
            package(&bundle(&["pre/a.json", "pre/manifest.json"], &["pre/b.json"]), Some("pre/manifest.json"));
        assert_eq!(c, 0.5);
        assert_eq!(note, "pre/P.zip written: 2 files, SHA-256 0123456789ab; missing: pre/b.json.");
        assert_eq!(next, Next::Failed("package incomplete: pre/b.json missing".into()));
        assert_eq!(package(&bundle(&["pre/a.json"], &[]), None).2, Next::Done);
    }

    #[test]
    fn the_report_counts_the_expected_evidence_it_holds() {
        let (rc, note) = report(&bundle(&["pre/a.json"], &[]), &["pre/a.json".into(), "pre/b.json".into()]);
        assert_eq!(rc, 0.5);
        assert_eq!(note, "DEPLOYMENT-REPORT.md and pre/P.zip written (1 files, report completeness 50%).");
    }

    #[test]
    fn expected_evidence_stops_at_the_current_step() {
        let plan = sample_plan("production");
        let p = &plan.protocols[0];
        let first = expected_evidence(p, 0, 0);
        let all = expected_evidence(p, p.phases.len(), 0);
        assert!(first.len() <= all.len() && !all.is_empty());
        assert!(all.iter().all(|e| e.starts_with(&p.artifacts_dir) && !e.ends_with(".zip")));
    }
}
