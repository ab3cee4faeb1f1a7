//! The prerequisite check of an intake step as a sub-machine: which artifacts are present, valid
//! and unchanged, what a later protocol also needs (the earlier go/no-go and a verified
//! rollback), and whether anything missing stops the step.
//!
//! A leaf: [`Intake::read`] returns the figures, the evidence body, the note and the [`Next`];
//! the release records them.

use serde_json::{Value, json};

use crate::engine::reports::{BundleReport, InputStatus};
use crate::protocol::model::Protocol;

use super::scores;
use super::steps::Next;

/// What a later protocol's intake needs from the earlier ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Earlier {
    /// A go/no-go round was approved.
    pub(crate) approved: bool,
    /// A rollback rehearsal measured its recovery time.
    pub(crate) rollback_verified: bool,
}

/// A prerequisite check, read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Intake {
    /// The artifacts' statuses, with bundles changed since they were written marked.
    pub(crate) results: Vec<InputStatus>,
    /// The extra checks of a later protocol, as the evidence lists them.
    pub(crate) extra: Vec<Value>,
    /// Items present.
    pub(crate) good: usize,
    /// Items required.
    pub(crate) total: usize,
    /// `good / total` (`completeness_score` and `checklist_completion`).
    pub(crate) score: f64,
    /// Required items missing or invalid, e.g. `QUALITY-AUDIT-PACKAGE.zip (missing)`.
    pub(crate) missing: Vec<String>,
}

impl Intake {
    /// Reads the check's `results` against the `bundles` this release wrote; `earlier` is set for
    /// protocols after the first.
    pub(crate) fn read(results: &[InputStatus], bundles: &[BundleReport], earlier: Option<Earlier>) -> Intake {
        let mut results = results.to_vec();
        // Files this release wrote itself must still carry the digest the bundle recorded.
        scores::verify_digests(&mut results, bundles);
        let (checks, extra) = match earlier {
            Some(Earlier { approved, rollback_verified }) => {
                let status = |ok: bool| if ok { "present" } else { "missing" };
                (
                    vec![approved, rollback_verified],
                    vec![
                        json!({"item": "readiness approvals recorded", "status": status(approved)}),
                        json!({"item": "rollback plan verified (rehearsal)", "status": status(rollback_verified)}),
                    ],
                )
            }
            None => (Vec::new(), Vec::new()),
        };
        let (good, total) = scores::completeness(&results, &checks);
        let missing = results
            .iter()
            .filter(|r| r.required && r.status != "present")
            .map(|r| format!("{} ({}{})", r.name, r.status, content_failures(r)))
            .chain(
                extra.iter().filter(|c| c["status"] == "missing").map(|c| c["item"].as_str().unwrap_or("").to_string()),
            )
            .collect();
        Intake { results, extra, good, total, score: scores::ratio(good, total), missing }
    }

    /// The step's evidence body.
    pub(crate) fn body(&self, protocol: &Protocol) -> Value {
        // Each approval the seed requires, with the fields that verified it, or nothing did.
        let approvals: Vec<Value> = protocol
            .prerequisites
            .approvals
            .iter()
            .map(|approval| {
                let read: Vec<Value> = self
                    .results
                    .iter()
                    .flat_map(|r| r.content.iter().map(move |c| (r, c)))
                    .filter(|(_, c)| c.proves.as_deref() == Some(approval.as_str()))
                    .map(|(r, c)| json!({"artifact": r.name, "file": c.file, "field": c.field, "found": c.found, "ok": c.ok}))
                    .collect();
                let status = match () {
                    _ if read.is_empty() => "not verified: no artifact raybot reads carries it",
                    _ if read.iter().all(|v| v["ok"] == true) => "verified",
                    _ => "failed",
                };
                json!({"approval": approval, "status": status, "read": read})
            })
            .collect();
        json!({
            "artifacts": self.results,
            "checks": self.extra,
            "approvals": approvals,
            "approvals_required": protocol.prerequisites.approvals,
            "system_states": protocol.prerequisites.system_states,
            "completeness": self.score,
            "status": if self.good == self.total { "complete" } else { "incomplete" },
        })
    }

    /// The note under the step.
    pub(crate) fn note(&self) -> String {
        let missing = if self.missing.is_empty() {
            String::new()
        } else {
            format!("; missing or invalid: {}", self.missing.join(", "))
        };
        format!("Prerequisites: {}/{} present{missing}.", self.good, self.total)
    }

    /// Anything missing meets the step's halt condition.
    pub(crate) fn next(&self) -> Next {
        if self.missing.is_empty() {
            Next::Done
        } else {
            Next::Failed(format!("prerequisites missing or invalid: {}", self.missing.join(", ")))
        }
    }
}

/// What the content checks of `r` that failed read, e.g. `: quality-audit-report.json
/// recommendation is "hold", expected "ready"`; empty when none failed.
fn content_failures(r: &InputStatus) -> String {
    let failed: Vec<String> = r
        .content
        .iter()
        .filter(|c| !c.ok)
        .map(|c| match (&c.found, &c.expected, &c.error) {
            (_, _, Some(error)) => error.clone(),
            (Some(found), Some(want), _) => format!("{} {} is {found}, expected {want}", c.file, c.field),
            (Some(found), None, _) => format!("{} {} is empty ({found})", c.file, c.field),
            (None, _, None) => format!("{} {} not found", c.file, c.field),
        })
        .collect();
    if failed.is_empty() { String::new() } else { format!(": {}", failed.join("; ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, status: &str, sha: Option<&str>) -> InputStatus {
        InputStatus {
            name: name.into(),
            found: Vec::new(),
            status: status.into(),
            required: true,
            sha256: sha.map(str::to_string),
            content: Vec::new(),
        }
    }

    #[test]
    fn everything_present_completes_the_step() {
        let read = Intake::read(&[input("a.md", "present", None), input("b.md", "present", None)], &[], None);
        assert_eq!((read.good, read.total, read.score), (2, 2, 1.0));
        assert_eq!(read.note(), "Prerequisites: 2/2 present.");
        assert_eq!(read.next(), Next::Done);
    }

    #[test]
    fn a_missing_file_fails_the_step_naming_it() {
        let read = Intake::read(&[input("a.md", "present", None), input("b.md", "missing", None)], &[], None);
        assert_eq!(read.score, 0.5);
        assert_eq!(read.note(), "Prerequisites: 1/2 present; missing or invalid: b.md (missing).");
        assert_eq!(read.next(), Next::Failed("prerequisites missing or invalid: b.md (missing)".into()));
    }

    #[test]
    fn a_later_protocol_needs_the_earlier_decision_and_rehearsal() {
        let earlier = Earlier { approved: true, rollback_verified: false };
        let read = Intake::read(&[input("a.md", "present", None)], &[], Some(earlier));
        assert_eq!((read.good, read.total), (2, 3));
        assert_eq!(read.missing, ["rollback plan verified (rehearsal)"]);
    }

    #[test]
    fn a_bundle_changed_since_this_release_wrote_it_is_invalid() {
        let bundle =
            BundleReport { zip: "P.zip".into(), zip_sha256: "aaa".into(), files: Vec::new(), missing: Vec::new() };
        let read = Intake::read(&[input("P.zip", "present", Some("bbb"))], &[bundle], None);
        assert_eq!(read.missing, ["P.zip (checksum mismatch)"]);
    }
}
