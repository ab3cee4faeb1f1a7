//! The answers to the read-only commands (`/ray status`, `/ray history`, `/ray protocols`), as pure
//! functions of what the driver read: no store write, no idempotency record, no engine event.

use crate::engine::{Release, Timestamp};
use crate::protocol::Catalog;
use crate::store::ReleaseSummary;

/// `/ray protocols`: the loaded protocols and what each target runs.
pub fn protocols(catalog: &Catalog) -> String {
    let mut s = String::from("[RAY] Protocols:");
    for p in &catalog.protocols {
        s.push_str(&format!("\n- {} {} ({} phases, {} gates)", p.id, p.title, p.phases.len(), p.gates.len()));
    }
    for f in &catalog.pipeline.flows {
        s.push_str(&format!("\nflow {}: {}", f.name, f.protocols.join(" → ")));
    }
    for (env, flow) in &catalog.pipeline.defaults {
        s.push_str(&format!("\n/ray deploy … to {env} runs flow {flow} unless `--flow <flow>` names another"));
    }
    s
}

/// `/ray history`: the ten most recent releases, newest first.
pub fn history(list: &[ReleaseSummary]) -> String {
    if list.is_empty() {
        return "[RAY] No releases yet.".to_string();
    }
    let mut s = String::from("[RAY] Recent releases:");
    for r in list.iter().take(10) {
        s.push_str(&format!(
            "\n- {} {} → {}: {} (by {}, {})",
            r.id,
            r.version,
            r.env,
            r.status,
            r.started_by,
            Timestamp(r.started_at_ms).rfc3339()
        ));
    }
    s
}

/// One release as `/ray status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    /// The version released.
    pub version: String,
    /// Whether the release has ended.
    pub finished: bool,
    /// [`Release::status_text`].
    pub text: String,
}

impl StatusLine {
    /// The line of `r`.
    pub fn of(r: &Release) -> StatusLine {
        StatusLine { version: r.version.clone(), finished: r.is_finished(), text: r.status_text() }
    }
}

/// `/ray status [<version>]`: the running releases, or every known release of `version`.
pub fn status<'a>(lines: impl Iterator<Item = &'a StatusLine>, version: Option<&str>) -> String {
    let found: Vec<String> = lines
        .filter(|r| version.is_none_or(|v| r.version == v))
        .filter(|r| version.is_some() || !r.finished)
        .map(|r| r.text.clone())
        .collect();
    if !found.is_empty() {
        return found.join("\n");
    }
    match version {
        Some(v) => crate::engine::refuse(crate::engine::refusal::Runtime::UnknownVersion { version: v.to_string() }),
        None => "[RAY] No release is running. Start one with `/ray deploy <version>`.".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str) -> ReleaseSummary {
        ReleaseSummary {
            id: id.into(),
            version: "v1.2".into(),
            env: "production".into(),
            status: "released".into(),
            finished: true,
            started_by: "alice".into(),
            started_at_ms: 0,
            updated_at_ms: 0,
            events: 3,
            replica: None,
        }
    }

    #[test]
    fn history_lists_at_most_ten_and_says_when_there_is_none() {
        assert_eq!(history(&[]), "[RAY] No releases yet.");
        let list: Vec<_> = (0..12).map(|i| row(&format!("r{i}"))).collect();
        let text = history(&list);
        assert_eq!(text.lines().count(), 11, "{text}");
        assert!(text.contains("- r0 v1.2 → production: released (by alice, 1970-01-01T00:00:00.000Z)"));
    }

    #[test]
    fn status_without_releases_says_how_to_start_one_and_names_an_unknown_version() {
        assert!(status(std::iter::empty(), None).starts_with("[RAY] No release is running."));
        assert_eq!(
            status(std::iter::empty(), Some("v9")),
            "[RAY ERROR] no release of v9 is known here; `/ray history` lists releases."
        );
    }
}
