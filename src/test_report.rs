//! Test reports that validation jobs write, read by the runtime once the job has ended.
//!
//! A suite configured with `report = "junit"` passes `{output}` to its job, which writes JUnit XML
//! there. [`read_report`] reads that file and returns a [`TestReport`]: the path, the SHA-256 of
//! the bytes read, and the counts over the test cases — or why there are none (missing,
//! unreadable, malformed). The engine scores the suites from it; it never reads a file itself.
//!
//! JUnit XML as accepted here (the common subset of Ant, Maven Surefire, pytest, Jest, Go's
//! gotestsum and others):
//!
//! ```xml
//! <testsuites>                          <!-- or a single <testsuite> as the root -->
//!   <testsuite name="smoke">            <!-- suites may nest -->
//!     <testcase classname="smoke.staging" name="check 1/5"/>
//!     <testcase classname="smoke.staging" name="check 2/5">
//!       <failure message="status 503, expected 200">…</failure>   <!-- or <error>, or <skipped/> -->
//!     </testcase>
//!   </testsuite>
//! </testsuites>
//! ```
//!
//! The counts come from the `<testcase>` elements, not from the `tests=` / `failures=` attributes a
//! writer may set: those are claims, the cases are what the file lists. Other elements and
//! attributes (`<properties>`, `<system-out>`, `time=` …) are ignored. No DTD is processed and no
//! external entity is resolved.

use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::engine::plan::ReportFormat;
use crate::engine::reports::{FailedCase, MAX_FAILED_CASES, ReportRead, TestCounts, TestReport};

/// Reports larger than this are not parsed (`unreadable`): a test report of a deploy gate is
/// kilobytes, and the runtime reads it into memory.
pub const MAX_REPORT_BYTES: u64 = 16 * 1024 * 1024;
/// Longest failed-case name and message kept, in characters.
const MAX_TEXT_CHARS: usize = 200;

/// Reads the report at `file` as `format`; `path` is how evidence names it (relative to the
/// release's artifacts directory). Never fails: a missing, unreadable or malformed file is
/// recorded as such.
pub fn read_report(format: ReportFormat, file: &Path, path: &str) -> TestReport {
    let report = |sha256: Option<String>, read: ReportRead| TestReport { format, path: path.to_string(), sha256, read };
    let bytes = match std::fs::metadata(file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return report(None, ReportRead::Missing),
        Err(e) => return report(None, ReportRead::Unreadable { error: e.to_string() }),
        Ok(m) if !m.is_file() => return report(None, ReportRead::Unreadable { error: "not a regular file".into() }),
        Ok(m) if m.len() > MAX_REPORT_BYTES => {
            let error = format!("{} bytes, more than the {MAX_REPORT_BYTES} read", m.len());
            return report(None, ReportRead::Unreadable { error });
        }
        Ok(_) => match std::fs::read(file) {
            Ok(bytes) => bytes,
            Err(e) => return report(None, ReportRead::Unreadable { error: e.to_string() }),
        },
    };
    let sha256 = Some(hex::encode(Sha256::digest(&bytes)));
    let read = match format {
        ReportFormat::Junit => match parse_junit(&bytes) {
            Ok(counts) => ReportRead::Parsed(counts),
            Err(error) => ReportRead::Malformed { error },
        },
    };
    report(sha256, read)
}

/// Parses JUnit XML and counts its test cases; the error says what is wrong.
pub fn parse_junit(bytes: &[u8]) -> Result<TestCounts, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    match root_element(text)?.as_str() {
        "testsuites" | "testsuite" => {}
        other => return Err(format!("root element <{other}>, expected <testsuites> or <testsuite>")),
    }
    // Either root reads as a suite: `<testsuites>` holds suites, `<testsuite>` cases (and maybe
    // suites); whatever the other holds is empty.
    let root: SuiteXml = quick_xml::de::from_str(text).map_err(|e| e.to_string())?;
    let mut counts = TestCounts::default();
    root.count(&mut counts);
    Ok(counts)
}

/// The name of the document's root element.
fn root_element(text: &str) -> Result<String, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) | Event::Empty(e) => {
                return Ok(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
            }
            Event::Eof => return Err("no root element".into()),
            Event::Text(t) if !t.iter().all(u8::is_ascii_whitespace) => {
                return Err("text before the root element".into());
            }
            _ => {}
        }
    }
}

/// `<testsuites>` or `<testsuite>`.
#[derive(Debug, Deserialize)]
struct SuiteXml {
    #[serde(rename = "testsuite", default)]
    suites: Vec<SuiteXml>,
    #[serde(rename = "testcase", default)]
    cases: Vec<CaseXml>,
}

/// `<testcase name=… classname=…>`.
#[derive(Debug, Deserialize)]
struct CaseXml {
    #[serde(rename = "@name")]
    name: String,
    #[serde(rename = "@classname", default)]
    classname: Option<String>,
    #[serde(default)]
    failure: Vec<ProblemXml>,
    #[serde(default)]
    error: Vec<ProblemXml>,
    #[serde(default)]
    skipped: Option<SkippedXml>,
}

/// `<failure message=…>text</failure>` or `<error …>`.
#[derive(Debug, Deserialize)]
struct ProblemXml {
    #[serde(rename = "@message", default)]
    message: Option<String>,
    #[serde(rename = "$text", default)]
    text: Option<String>,
}

/// `<skipped/>`; its message is not kept.
#[derive(Debug, Deserialize)]
struct SkippedXml {}

impl SuiteXml {
    fn count(&self, counts: &mut TestCounts) {
        for case in &self.cases {
            counts.tests += 1;
            let problem = match (case.failure.first(), case.error.first()) {
                (Some(p), _) => Some(("failure", p)),
                (None, Some(p)) => Some(("error", p)),
                (None, None) => None,
            };
            match problem {
                Some((kind, p)) => {
                    if kind == "failure" {
                        counts.failures += 1;
                    } else {
                        counts.errors += 1;
                    }
                    if counts.failed_cases.len() < MAX_FAILED_CASES {
                        counts.failed_cases.push(FailedCase {
                            name: case.full_name(),
                            kind: kind.into(),
                            message: p.line(),
                        });
                    }
                }
                None if case.skipped.is_some() => counts.skipped += 1,
                None => {}
            }
        }
        for suite in &self.suites {
            suite.count(counts);
        }
    }
}

impl CaseXml {
    /// `classname.name`, or `name`.
    fn full_name(&self) -> String {
        let name = match self.classname.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
            Some(class) => format!("{class}.{}", self.name.trim()),
            None => self.name.trim().to_string(),
        };
        cut(&name)
    }
}

impl ProblemXml {
    /// The first non-empty line of the message, else of the text.
    fn line(&self) -> String {
        cut(first_line(self.message.as_deref()).or_else(|| first_line(self.text.as_deref())).unwrap_or(""))
    }
}

fn first_line(text: Option<&str>) -> Option<&str> {
    text?.lines().map(str::trim).find(|l| !l.is_empty())
}

fn cut(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- written by smoke_test.sh -->
<testsuites name="smoke" tests="3" failures="0">
  <testsuite name="smoke staging v1.2" tests="3" timestamp="2026-12-02T12:00:00Z">
    <properties><property name="env" value="staging"/></properties>
    <testcase classname="smoke.staging" name="check 1/3" time="0.01"/>
    <testcase classname="smoke.staging" name="check 2/3"></testcase>
    <testcase classname="smoke.staging" name="check 3/3"><system-out>ok</system-out></testcase>
    <system-out>3 checks</system-out>
  </testsuite>
</testsuites>
"#;

    #[test]
    fn a_clean_report_counts_its_cases() {
        let c = parse_junit(GOOD.as_bytes()).unwrap();
        assert_eq!((c.tests, c.failures, c.errors, c.skipped, c.passed()), (3, 0, 0, 0, 3));
        assert!(c.failed_cases.is_empty());
    }

    #[test]
    fn failures_and_errors_are_counted_once_each_and_named() {
        let xml = r#"<testsuite name="regression" tests="99" failures="0">
  <testcase classname="regression.staging" name="GET /version answers the release">
    <failure message="body 'v1.1', expected 'v1.2'&#10;second line" type="check">details</failure>
  </testcase>
  <testcase name="  no class  "><error><![CDATA[panic at
the disco]]></error></testcase>
  <testcase name="both"><failure/><error message="e"/></testcase>
  <testcase name="fine"/>
</testsuite>"#;
        let c = parse_junit(xml.as_bytes()).unwrap();
        // The attributes claim 99 tests and no failure; the cases say otherwise.
        assert_eq!((c.tests, c.failures, c.errors, c.skipped, c.passed()), (4, 2, 1, 0, 1));
        let names: Vec<(&str, &str, &str)> =
            c.failed_cases.iter().map(|f| (f.name.as_str(), f.kind.as_str(), f.message.as_str())).collect();
        assert_eq!(
            names,
            [
                ("regression.staging.GET /version answers the release", "failure", "body 'v1.1', expected 'v1.2'"),
                ("no class", "error", "panic at"),
                ("both", "failure", ""),
            ]
        );
    }

    #[test]
    fn skipped_cases_are_targeted_but_not_passed() {
        let xml = r#"<testsuites><testsuite name="a">
  <testcase name="ran"/>
  <testcase name="later"><skipped message="not on staging"/></testcase>
  <testcase name="bare"><skipped/></testcase>
</testsuite></testsuites>"#;
        let c = parse_junit(xml.as_bytes()).unwrap();
        assert_eq!((c.tests, c.skipped, c.passed()), (3, 2, 1));
    }

    #[test]
    fn nested_and_interleaved_suites_are_all_counted() {
        let xml = r#"<testsuites>
  <testsuite name="outer">
    <testcase name="a"/>
    <testsuite name="inner"><testcase name="b"><failure message="x"/></testcase></testsuite>
    <testcase name="c"/>
  </testsuite>
  <testsuite name="second"><testcase name="d"/></testsuite>
</testsuites>"#;
        let c = parse_junit(xml.as_bytes()).unwrap();
        assert_eq!((c.tests, c.failures), (4, 1));
        assert_eq!(c.failed_cases[0].name, "b");
    }

    #[test]
    fn failed_case_names_are_bounded_but_all_counted() {
        let cases: String =
            (0..30).map(|i| format!(r#"<testcase name="{}{i}"><failure/></testcase>"#, "n".repeat(300))).collect();
        let c = parse_junit(format!("<testsuite>{cases}</testsuite>").as_bytes()).unwrap();
        assert_eq!((c.tests, c.failures), (30, 30));
        assert_eq!(c.failed_cases.len(), MAX_FAILED_CASES);
        assert_eq!(c.failed_cases[0].name.chars().count(), MAX_TEXT_CHARS + 1, "cut, with an ellipsis");
    }

    #[test]
    fn an_empty_suite_parses_with_no_case() {
        assert_eq!(parse_junit(b"<testsuite name=\"none\"/>").unwrap(), TestCounts::default());
    }

    #[test]
    fn what_is_not_junit_is_malformed() {
        for (bytes, says) in [
            (&b""[..], "no root element"),
            (b"   \n", "no root element"),
            (b"PASS 5/5\n", "text before the root element"),
            (b"<html><body>502 Bad Gateway</body></html>", "root element <html>"),
            (b"<testsuite><testcase name=\"a\">", ""),
            (b"<testsuite><testcase classname=\"no name\"/></testsuite>", "name"),
            (b"<testsuite><testcase name=\"a\"></testsuite>", ""),
            (b"<testsuite>\xff\xfe</testsuite>", "not UTF-8"),
        ] {
            let err = parse_junit(bytes).expect_err(&String::from_utf8_lossy(bytes));
            assert!(err.contains(says), "{err:?} for {:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn entities_from_a_dtd_are_not_expanded() {
        let xml = r#"<?xml version="1.0"?>
<!DOCTYPE testsuite [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<testsuite><testcase name="&x;"><failure/></testcase></testsuite>"#;
        assert!(parse_junit(xml.as_bytes()).is_err());
    }

    #[test]
    fn reading_a_file_records_its_digest_and_what_was_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("smoke.xml");
        let missing = read_report(ReportFormat::Junit, &file, "p/smoke.xml");
        assert_eq!((missing.read, missing.sha256, missing.path.as_str()), (ReportRead::Missing, None, "p/smoke.xml"));

        std::fs::write(&file, GOOD).unwrap();
        let good = read_report(ReportFormat::Junit, &file, "p/smoke.xml");
        assert_eq!(good.sha256.as_deref(), Some(hex::encode(Sha256::digest(GOOD.as_bytes())).as_str()));
        assert!(matches!(good.read, ReportRead::Parsed(TestCounts { tests: 3, .. })), "{good:?}");

        std::fs::write(&file, "<html/>").unwrap();
        let bad = read_report(ReportFormat::Junit, &file, "p/smoke.xml");
        assert!(bad.sha256.is_some(), "the digest names what was judged malformed");
        assert!(matches!(&bad.read, ReportRead::Malformed { error } if error.contains("<html>")), "{bad:?}");

        let unreadable = read_report(ReportFormat::Junit, dir.path(), "p");
        assert_eq!(unreadable.read, ReportRead::Unreadable { error: "not a regular file".into() });
    }
}
