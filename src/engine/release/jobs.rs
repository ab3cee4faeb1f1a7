//! The jobs a release asks the runtime to run: what a step wants run ([`JobAsk`]), the command
//! line and environment it expands to, and the record kept of it.
//!
//! A leaf: the release numbers the job, records it and emits the effect.

use crate::engine::ids::JobId;
use crate::engine::plan::{JobTemplate, ReportFormat};
use crate::engine::reports::JobOutcome;
use crate::engine::{JobSpec, ReportSpec, Strategy, Timestamp};

use super::state::JobRecord;

/// A job a step wants run: a template of an environment, what it is for and where it logs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JobAsk {
    /// Environment it runs against, e.g. `staging`.
    pub(crate) env: String,
    /// What it is for, e.g. `deploy production 50%`; evidence and the rollback switch read it.
    pub(crate) purpose: String,
    /// The configured command line.
    pub(crate) template: JobTemplate,
    /// Traffic share (`{percent}`); 100 for jobs outside a rollout, 0 for rollbacks.
    pub(crate) percent: u8,
    /// Log file relative to the artifacts directory.
    pub(crate) log: String,
    /// Evidence file the job writes itself (`{output}`).
    pub(crate) output: Option<String>,
    /// The format `output` is a test report in, for the runtime to read after the job.
    pub(crate) report: Option<ReportFormat>,
}

/// What a job's placeholders stand for: the release it belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Vars<'a> {
    /// Release id.
    pub(crate) id: &'a str,
    /// Version under release.
    pub(crate) version: &'a str,
    /// Rollout strategy.
    pub(crate) strategy: Strategy,
}

fn expand(arg: &str, vars: &[(&str, &str)]) -> String {
    let mut out = arg.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

impl JobAsk {
    /// A job of `template` on `env` for `purpose`, logging to `log`, at full traffic and writing
    /// no evidence of its own.
    pub(crate) fn new(env: &str, purpose: String, template: &JobTemplate, log: String) -> JobAsk {
        JobAsk {
            env: env.to_string(),
            purpose,
            template: template.clone(),
            percent: 100,
            log,
            output: None,
            report: None,
        }
    }

    /// The same job at traffic share `percent`.
    pub(crate) fn at(self, percent: u8) -> JobAsk {
        JobAsk { percent, ..self }
    }

    /// The spec the runtime runs as job `id` of `release`: placeholders expanded, the `RAYBOT_*`
    /// variables added after the configured ones.
    pub(crate) fn spec(&self, id: &JobId, release: Vars<'_>) -> JobSpec {
        let percent = self.percent.to_string();
        let output = self.output.as_ref().map(|o| format!("{{artifacts}}/{o}")).unwrap_or_default();
        let vars = [
            ("version", release.version),
            ("env", self.env.as_str()),
            ("strategy", release.strategy.as_str()),
            ("percent", percent.as_str()),
            ("release", release.id),
            ("output", output.as_str()),
        ];
        let argv = self.template.argv.iter().map(|a| expand(a, &vars)).collect();
        let mut env: Vec<(String, String)> =
            self.template.env.iter().map(|(k, v)| (k.clone(), expand(v, &vars))).collect();
        env.push(("RAYBOT_RELEASE".into(), release.id.to_string()));
        env.push(("RAYBOT_VERSION".into(), release.version.to_string()));
        env.push(("RAYBOT_ENV".into(), self.env.clone()));
        env.push(("RAYBOT_STRATEGY".into(), release.strategy.as_str().into()));
        env.push(("RAYBOT_PERCENT".into(), percent));
        JobSpec {
            id: id.clone(),
            purpose: self.purpose.clone(),
            argv,
            env,
            timeout_ms: self.template.timeout_ms,
            log: self.log.clone(),
            report: self
                .report
                .zip(self.output.as_ref())
                .map(|(format, path)| ReportSpec { format, path: path.clone() }),
        }
    }

    /// Whether the job changes what the environment serves: a deploy or a rollback (on the
    /// target, it makes `/ray rollback` replace `/ray abort`).
    pub(crate) fn changes_serving(&self) -> bool {
        self.purpose.starts_with("deploy ") || self.purpose.starts_with("rollback ")
    }
}

impl JobRecord {
    /// The record of job `spec` on `env`, started at `now` and not finished yet.
    pub(crate) fn started(spec: &JobSpec, env: &str, now: Timestamp) -> JobRecord {
        JobRecord {
            id: spec.id.clone(),
            purpose: spec.purpose.clone(),
            env: env.to_string(),
            argv: spec.argv.clone(),
            log: spec.log.clone(),
            started_at: now,
            outcome: None,
            finished_at: None,
            spec: Some(spec.clone()),
        }
    }
}

/// Records `outcome` of job `id` at `now` among `jobs`; false when one was recorded already (a
/// duplicate delivery).
pub(crate) fn record_outcome(jobs: &mut [JobRecord], id: &JobId, outcome: &JobOutcome, now: Timestamp) -> bool {
    match jobs.iter_mut().find(|j| j.id == *id) {
        Some(j) if j.outcome.is_some() => false,
        Some(j) => {
            j.outcome = Some(outcome.clone());
            j.finished_at = Some(now);
            true
        }
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn template() -> JobTemplate {
        JobTemplate {
            argv: vec![
                "deploy.sh".into(),
                "{version}".into(),
                "--env={env}".into(),
                "{percent}%".into(),
                "{output}".into(),
            ],
            timeout_ms: 60_000,
            env: BTreeMap::from([("TARGET".to_string(), "{env}-{strategy}".to_string())]),
        }
    }

    fn release() -> Vars<'static> {
        Vars { id: "v1.2-production-1", version: "v1.2", strategy: Strategy::Canary }
    }

    #[test]
    fn placeholders_expand_and_the_raybot_variables_follow_the_configured_ones() {
        let mut ask = JobAsk::new("production", "deploy production 10%".into(), &template(), "p/run.log".into()).at(10);
        ask.output = Some("p/report.json".into());
        let spec = ask.spec(&JobId::new("v1.2-production-1", 4), release());
        assert_eq!(spec.id, "v1.2-production-1#job4");
        assert_eq!(spec.argv, ["deploy.sh", "v1.2", "--env=production", "10%", "{artifacts}/p/report.json"]);
        let names: Vec<&str> = spec.env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["TARGET", "RAYBOT_RELEASE", "RAYBOT_VERSION", "RAYBOT_ENV", "RAYBOT_STRATEGY", "RAYBOT_PERCENT"]
        );
        assert_eq!(spec.env[0].1, "production-canary");
        assert_eq!((spec.timeout_ms, spec.log.as_str()), (60_000, "p/run.log"));
    }

    #[test]
    fn a_test_report_is_read_from_the_output_path() {
        let mut ask = JobAsk::new("staging", "validation smoke staging".into(), &template(), "l".into());
        assert_eq!(ask.spec(&JobId::new("r", 1), release()).report, None);
        ask.output = Some("p/staging-smoke-junit.xml".into());
        ask.report = Some(ReportFormat::Junit);
        let spec = ask.spec(&JobId::new("r", 1), release());
        assert_eq!(spec.argv.last().map(String::as_str), Some("{artifacts}/p/staging-smoke-junit.xml"));
        assert_eq!(
            spec.report,
            Some(ReportSpec { format: ReportFormat::Junit, path: "p/staging-smoke-junit.xml".into() })
        );
    }

    #[test]
    fn a_job_without_output_leaves_the_placeholder_empty() {
        let spec = JobAsk::new("staging", "x".into(), &template(), "l".into()).spec(&JobId::new("r", 1), release());
        assert_eq!(spec.argv.last().map(String::as_str), Some(""));
    }

    #[test]
    fn only_deploys_and_rollbacks_change_what_serves() {
        let ask = |purpose: &str| JobAsk::new("production", purpose.into(), &template(), "l".into());
        assert!(ask("deploy production 50%").changes_serving());
        assert!(ask("rollback production").changes_serving());
        assert!(!ask("roll forward staging").changes_serving());
        assert!(!ask("validation smoke production").changes_serving());
    }

    #[test]
    fn an_outcome_is_recorded_once() {
        let spec = JobAsk::new("staging", "x".into(), &template(), "l".into()).spec(&JobId::new("r", 1), release());
        let mut jobs = vec![JobRecord::started(&spec, "staging", Timestamp(1))];
        let done = JobOutcome {
            exit_code: Some(0),
            timed_out: false,
            duration_ms: 1,
            spawn_error: None,
            log_tail: Vec::new(),
            report: None,
        };
        assert!(record_outcome(&mut jobs, &JobId::new("r", 1), &done, Timestamp(2)));
        assert!(!record_outcome(&mut jobs, &JobId::new("r", 1), &done, Timestamp(3)));
        assert_eq!(jobs[0].finished_at, Some(Timestamp(2)));
    }

    #[test]
    fn the_record_keeps_the_spec_for_a_takeover() {
        let spec = JobAsk::new("staging", "deploy staging 100%".into(), &template(), "l".into())
            .spec(&JobId::new("r", 2), release());
        let record = JobRecord::started(&spec, "staging", Timestamp(7));
        assert_eq!((record.id.as_str(), record.started_at, record.outcome.is_none()), ("r#job2", Timestamp(7), true));
        assert_eq!(record.spec, Some(spec));
    }
}
