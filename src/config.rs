//! `config/raybot.toml` and `config/release-approvers.yaml`, and how they become a release [`Plan`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::engine::Platform;
use crate::engine::plan::{
    self, Environment, HealthWindow, JobTemplate, People, Person, Plan, Policy, ProbeSettings, ReportFormat, Suite,
};
use crate::protocol::Catalog;

/// The sample configuration compiled into the binary.
pub const EMBEDDED_RAYBOT_TOML: &str = include_str!("../config/raybot.toml");
/// The sample `config/release-approvers.yaml` (five example people) compiled into the binary.
pub const EMBEDDED_APPROVERS_YAML: &str = include_str!("../config/release-approvers.yaml");

/// A configuration problem, naming the file and the field.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    /// The file at fault, e.g. `config/raybot.toml` or `embedded config/raybot.toml`.
    pub file: String,
    /// What is wrong, e.g. `environments.staging.probe.count: must be above 0`.
    pub message: String,
}

/// `config/raybot.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaybotToml {
    /// `[war_room]`: where raybot speaks.
    pub war_room: WarRoom,
    /// `[release]`: inputs, reminders, roles and locking.
    pub release: ReleaseSettings,
    /// Environment variables given to every job, e.g. `SAMPLE_PORT_STAGING = "18080"`; a job's own
    /// `env` wins.
    #[serde(default)]
    pub job_env: BTreeMap<String, String>,
    /// Jobs that belong to no environment, by name; `security` runs the security scan step.
    #[serde(default)]
    pub jobs: BTreeMap<String, JobToml>,
    /// Deployment targets by name, e.g. `staging`, `production`.
    pub environments: BTreeMap<String, EnvironmentToml>,
}

/// `[war_room]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarRoom {
    /// Channel name used in texts and evidence, e.g. `#release-war-room`.
    pub channel: String,
    /// Slack channel id (`C…`) of the war room; raybot answers commands only there.
    #[serde(default)]
    pub slack_channel: Option<String>,
    /// Discord channel id (snowflake) of the war room; raybot answers commands only there.
    #[serde(default)]
    pub discord_channel: Option<String>,
    /// Discord guild (server) ids the `/ray` command is registered in.
    #[serde(default)]
    pub discord_guilds: Vec<String>,
}

/// `[release]`: settings shared by every release.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSettings {
    /// Folder of upstream artifacts, relative to the base directory; `{version}` is expanded,
    /// e.g. `examples/release-inputs`.
    pub inputs_dir: String,
    /// Inputs older than this many days count as `expired`; omit to accept any age.
    #[serde(default)]
    pub inputs_max_age_days: Option<u64>,
    /// Remind missing freeze acknowledgers and approvers after this many seconds, then each period.
    pub remind_after_seconds: u64,
    /// Reaction name that acknowledges the change freeze, e.g. `white_check_mark`.
    pub ack_emoji: String,
    /// Roles that may `/ray waive` a failed gate, e.g. `["release_manager", "sre_lead"]`.
    pub waiver_roles: Vec<String>,
    /// Roles that may `/ray retry`, `/ray rollback` and `/ray abort`.
    pub operator_roles: Vec<String>,
    /// Lease of the environment lock in seconds, e.g. `3600`.
    pub lock_lease_seconds: u64,
    /// With a shared job queue (Redis): a raybot process that has not renewed its claim on a
    /// running job, nor its heartbeat, for this many seconds counts as stopped. Its jobs are
    /// reported as `job outcome unknown` and its releases taken over by another replica.
    #[serde(default = "default_job_lease_seconds")]
    pub job_lease_seconds: u64,
}

fn default_job_lease_seconds() -> u64 {
    15
}

/// A job: `{ argv = [...], timeout_seconds = 120 }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobToml {
    /// Program and arguments, never run through a shell; placeholders `{version}` `{env}`
    /// `{strategy}` `{percent}` `{release}` `{output}`.
    pub argv: Vec<String>,
    /// Kill the job's process group after this many seconds.
    pub timeout_seconds: u64,
    /// Extra environment variables for this job; they override `job_env`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// `[[environments.<env>.validation]]`: one validation suite.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteToml {
    /// Suite name for chat and evidence, e.g. `smoke`.
    pub name: String,
    /// Program and arguments, as for [`JobToml::argv`]; exit 0 means passed.
    pub argv: Vec<String>,
    /// Kill the suite's process group after this many seconds.
    pub timeout_seconds: u64,
    /// A failing critical suite fails the validate step; others only lower `coverage`.
    #[serde(default)]
    pub critical: bool,
    /// `"junit"`: the job writes a JUnit XML report to the `{output}` path of its argv, and raybot
    /// counts the test cases it lists (read after the job; a missing or malformed report fails
    /// the suite). Without it the job's exit is the suite's one result.
    #[serde(default)]
    pub report: Option<ReportFormat>,
    /// Extra environment variables; they override `job_env`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// `[environments.<env>.probe]`: how to probe health and what counts as healthy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeToml {
    /// `http://` or `https://` health URL, e.g. `http://127.0.0.1:18080/healthz`.
    pub url: String,
    /// GET requests per probe run, e.g. `20`.
    pub count: u32,
    /// Milliseconds between the starts of two requests.
    pub interval_ms: u64,
    /// Limit for one request, in milliseconds.
    pub timeout_ms: u64,
    /// Minimum share of 2xx answers, 0 to 1, e.g. `0.95`.
    pub min_success_rate: f64,
    /// Maximum p95 latency in milliseconds, e.g. `500`.
    pub max_p95_ms: u64,
    /// Response header naming the serving version, e.g. `x-version`; when set, the last rollout
    /// step also checks that the new version serves.
    #[serde(default)]
    pub version_header: Option<String>,
}

/// `[environments.<env>.health_window]`: the soak after a deploy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthWindowToml {
    /// How long to keep probing, in seconds, e.g. `60`.
    pub duration_seconds: u64,
    /// Seconds between probe rounds.
    pub interval_seconds: u64,
}

/// `[environments.<name>]`: one deployment target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentToml {
    /// Recovery time objective in seconds: the rollback rehearsal must recover within it (gates
    /// read staging's value as `rto` when staging is configured).
    pub rto_seconds: f64,
    /// Deploy job, run once per rollout step with `{percent}` set.
    pub deploy: JobToml,
    /// Rollback job, restoring the previous version; the rehearsal runs it too.
    pub rollback: JobToml,
    /// Optional jobs that protocol steps name, e.g. `refresh_data`, `dry_run`.
    #[serde(default)]
    pub jobs: BTreeMap<String, JobToml>,
    /// Validation suites, run in order by the validate step.
    #[serde(default)]
    pub validation: Vec<SuiteToml>,
    /// Health probing.
    pub probe: ProbeToml,
    /// The soak after deploying here.
    pub health_window: HealthWindowToml,
    /// Settings compared between staging and production, e.g.
    /// `runtime = { value = "sample-app/1", severity = "critical" }`.
    #[serde(default)]
    pub parity: BTreeMap<String, plan::ParityValue>,
}

/// `config/release-approvers.yaml`: roles and people.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproversYaml {
    /// Role name → what it means; when present, people may only hold these roles.
    #[serde(default)]
    pub roles: BTreeMap<String, String>,
    /// Everyone raybot knows; nobody else may start, approve or acknowledge.
    pub people: Vec<PersonYaml>,
}

/// One person, with one user id per platform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonYaml {
    /// Display name for evidence, e.g. `Alice Example`.
    pub name: String,
    /// Roles, e.g. `[release_manager]`.
    pub roles: Vec<String>,
    /// Name in `raybot chat --user NAME` and `/as NAME`, e.g. `alice`.
    #[serde(default)]
    pub local: Option<String>,
    /// Slack member id, e.g. `U0ALICE001`.
    #[serde(default)]
    pub slack: Option<String>,
    /// Discord user id (a snowflake, quoted), e.g. `"100000000000000001"`.
    #[serde(default)]
    pub discord: Option<String>,
}

/// Loaded configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The parsed `raybot.toml`.
    pub raybot: RaybotToml,
    /// The parsed `release-approvers.yaml`.
    pub approvers: ApproversYaml,
    /// Directory jobs run in and relative paths resolve against.
    pub base_dir: PathBuf,
    /// `embedded` or the config directory.
    pub source: String,
}

impl Config {
    /// The sample configuration compiled into the binary, rooted at `base_dir`.
    pub fn embedded(base_dir: &Path) -> Result<Config, ConfigError> {
        Config::parse(
            EMBEDDED_RAYBOT_TOML,
            EMBEDDED_APPROVERS_YAML,
            base_dir,
            "embedded config/raybot.toml",
            "embedded config/release-approvers.yaml",
            "embedded",
        )
    }

    /// Loads `DIR/raybot.toml` and `DIR/release-approvers.yaml`; jobs run in DIR's parent.
    pub fn load(dir: &Path) -> Result<Config, ConfigError> {
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read_to_string(&p)
                .map_err(|e| ConfigError { file: p.display().to_string(), message: e.to_string() })
        };
        let toml_text = read("raybot.toml")?;
        let yaml_text = read("release-approvers.yaml")?;
        let dir_abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let base = dir_abs.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        Config::parse(
            &toml_text,
            &yaml_text,
            &base,
            &dir.join("raybot.toml").display().to_string(),
            &dir.join("release-approvers.yaml").display().to_string(),
            &dir.display().to_string(),
        )
    }

    /// Parses and checks both files' texts; `toml_name` and `yaml_name` name them in errors.
    pub fn parse(
        toml_text: &str,
        yaml_text: &str,
        base_dir: &Path,
        toml_name: &str,
        yaml_name: &str,
        source: &str,
    ) -> Result<Config, ConfigError> {
        let raybot: RaybotToml = toml::from_str(toml_text).map_err(|e| ConfigError {
            file: toml_name.into(),
            message: e.message().to_string() + &span_hint(toml_text, e.span()),
        })?;
        let approvers: ApproversYaml = serde_norway::from_str(yaml_text)
            .map_err(|e| ConfigError { file: yaml_name.into(), message: e.to_string() })?;
        let cfg = Config { raybot, approvers, base_dir: base_dir.to_path_buf(), source: source.into() };
        cfg.check(toml_name, yaml_name)?;
        Ok(cfg)
    }

    fn check(&self, toml_name: &str, yaml_name: &str) -> Result<(), ConfigError> {
        let err = |file: &str, message: String| Err(ConfigError { file: file.into(), message });
        let job_ok = |at: String, argv: &[String], timeout: u64| -> Result<(), ConfigError> {
            if argv.is_empty() || argv[0].trim().is_empty() {
                return err(toml_name, format!("{at}.argv: must name a program"));
            }
            if timeout == 0 {
                return err(toml_name, format!("{at}.timeout_seconds: must be above 0"));
            }
            Ok(())
        };
        for (name, job) in &self.raybot.jobs {
            job_ok(format!("jobs.{name}"), &job.argv, job.timeout_seconds)?;
        }
        for (name, e) in &self.raybot.environments {
            for (what, job) in [("deploy", &e.deploy), ("rollback", &e.rollback)]
                .into_iter()
                .chain(e.jobs.iter().map(|(k, v)| (k.as_str(), v)))
            {
                job_ok(format!("environments.{name}.{what}"), &job.argv, job.timeout_seconds)?;
            }
            for (i, suite) in e.validation.iter().enumerate() {
                job_ok(format!("environments.{name}.validation[{i}]"), &suite.argv, suite.timeout_seconds)?;
                if suite.report.is_some() && !suite.argv.iter().any(|a| a.contains("{output}")) {
                    return err(
                        toml_name,
                        format!(
                            "environments.{name}.validation[{i}].report: the argv must pass `{{output}}`, the path the report is read from"
                        ),
                    );
                }
            }
            if !(0.0..=1.0).contains(&e.probe.min_success_rate) {
                return err(toml_name, format!("environments.{name}.probe.min_success_rate: must be between 0 and 1"));
            }
            if e.probe.count == 0 {
                return err(toml_name, format!("environments.{name}.probe.count: must be above 0"));
            }
            if !e.probe.url.starts_with("http://") && !e.probe.url.starts_with("https://") {
                return err(toml_name, format!("environments.{name}.probe.url: must be an http:// or https:// URL"));
            }
            if e.health_window.interval_seconds == 0 {
                return err(toml_name, format!("environments.{name}.health_window.interval_seconds: must be above 0"));
            }
        }
        let known: Vec<&String> = self.approvers.roles.keys().collect();
        for (i, p) in self.approvers.people.iter().enumerate() {
            for r in &p.roles {
                if !known.is_empty() && !known.contains(&r) {
                    return err(
                        yaml_name,
                        format!(
                            "people[{i}].roles: unknown role `{r}` (roles: {})",
                            known.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    );
                }
            }
        }
        for platform in Platform::ALL {
            let mut ids: Vec<&str> = self.approvers.people.iter().filter_map(|p| p.id_on(platform)).collect();
            ids.sort_unstable();
            if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
                return err(yaml_name, format!("people: {platform} id `{}` is given to two people", w[0]));
            }
        }
        Ok(())
    }

    /// People as seen on `platform`.
    pub fn people(&self, platform: Platform) -> People {
        People {
            platform,
            persons: self
                .approvers
                .people
                .iter()
                .filter_map(|p| {
                    p.id_on(platform).map(|id| Person {
                        id: id.to_string(),
                        name: p.name.clone(),
                        roles: p.roles.clone(),
                    })
                })
                .collect(),
        }
    }

    /// The plan `/ray deploy <version> to <env>` runs: the target's default flow.
    pub fn plan(&self, catalog: &Catalog, env: &str, platform: Platform, version: &str) -> Result<Plan, String> {
        self.plan_flow(catalog, env, None, platform, version)
    }

    /// The plan `/ray deploy <version> to <env> [--flow <flow>]` runs: the protocols of `flow`,
    /// else of the target's default flow (see `pipeline.yaml`).
    pub fn plan_flow(
        &self,
        catalog: &Catalog,
        env: &str,
        flow: Option<&str>,
        platform: Platform,
        version: &str,
    ) -> Result<Plan, String> {
        if !self.raybot.environments.contains_key(env) {
            let envs: Vec<&String> = self.raybot.environments.keys().collect();
            return Err(format!(
                "unknown environment `{env}`; configured: {}.",
                envs.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        let (flow, protocols) = catalog.resolve(env, flow)?;
        let job_env = &self.raybot.job_env;
        let job = |j: &JobToml| JobTemplate {
            argv: j.argv.clone(),
            timeout_ms: j.timeout_seconds * 1000,
            env: job_env.iter().chain(j.env.iter()).map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        let environments = self
            .raybot
            .environments
            .iter()
            .map(|(name, e)| {
                (
                    name.clone(),
                    Environment {
                        name: name.clone(),
                        deploy: job(&e.deploy),
                        rollback: job(&e.rollback),
                        validation: e
                            .validation
                            .iter()
                            .map(|s| Suite {
                                name: s.name.clone(),
                                job: job(&JobToml {
                                    argv: s.argv.clone(),
                                    timeout_seconds: s.timeout_seconds,
                                    env: s.env.clone(),
                                }),
                                critical: s.critical,
                                report: s.report,
                            })
                            .collect(),
                        jobs: e.jobs.iter().map(|(k, v)| (k.clone(), job(v))).collect(),
                        probe: ProbeSettings {
                            url: e.probe.url.clone(),
                            count: e.probe.count,
                            interval_ms: e.probe.interval_ms,
                            timeout_ms: e.probe.timeout_ms,
                            min_success_rate: e.probe.min_success_rate,
                            max_p95_ms: e.probe.max_p95_ms,
                            version_header: e.probe.version_header.clone(),
                        },
                        rto_seconds: e.rto_seconds,
                        parity: e.parity.clone(),
                        health_window: HealthWindow {
                            duration_ms: e.health_window.duration_seconds * 1000,
                            interval_ms: e.health_window.interval_seconds * 1000,
                        },
                    },
                )
            })
            .collect();
        let inputs = self.base_dir.join(self.raybot.release.inputs_dir.replace("{version}", version));
        Ok(Plan {
            rules: crate::engine::plan::RULES,
            protocols,
            flow: Some(flow),
            environments,
            jobs: self.raybot.jobs.iter().map(|(k, v)| (k.clone(), job(v))).collect(),
            people: self.people(platform),
            policy: Policy {
                waiver_roles: self.raybot.release.waiver_roles.clone(),
                operator_roles: self.raybot.release.operator_roles.clone(),
                remind_after_ms: self.raybot.release.remind_after_seconds * 1000,
                ack_emoji: self.raybot.release.ack_emoji.clone(),
            },
            inputs_dir: inputs.display().to_string(),
            inputs_max_age_days: self.raybot.release.inputs_max_age_days,
            channel: self.raybot.war_room.channel.clone(),
        })
    }
}

impl PersonYaml {
    /// Their user id on `platform`; `None` if they have none there.
    pub fn id_on(&self, platform: Platform) -> Option<&str> {
        match platform {
            Platform::Local => self.local.as_deref(),
            Platform::Slack => self.slack.as_deref(),
            Platform::Discord => self.discord.as_deref(),
        }
    }
}

fn span_hint(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(r) => {
            let line = text[..r.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_config_builds_a_plan() {
        let cfg = Config::embedded(Path::new("/tmp")).unwrap();
        let catalog = Catalog::embedded().unwrap();
        let plan = cfg.plan(&catalog, "production", Platform::Local, "v1.2").unwrap();
        assert_eq!(plan.protocols.len(), 2);
        assert_eq!(plan.people.persons.len(), 5);
        assert!(plan.people.has_role("carol", "sre_lead"));
        assert!(cfg.plan(&catalog, "qa", Platform::Local, "v1.2").unwrap_err().contains("unknown environment `qa`"));
    }

    #[test]
    fn broken_config_names_the_field() {
        let bad = EMBEDDED_RAYBOT_TOML.replace("count = 20", "count = \"many\"");
        let e = Config::parse(&bad, EMBEDDED_APPROVERS_YAML, Path::new("."), "raybot.toml", "a.yaml", "t").unwrap_err();
        assert!(e.to_string().contains("raybot.toml"), "{e}");
        let bad = EMBEDDED_APPROVERS_YAML.replace("roles: [stakeholder]", "roles: [stakeholdr]");
        let e = Config::parse(EMBEDDED_RAYBOT_TOML, &bad, Path::new("."), "raybot.toml", "a.yaml", "t").unwrap_err();
        assert!(e.to_string().contains("unknown role `stakeholdr`"), "{e}");
    }

    #[test]
    fn a_suite_report_is_read_from_its_output_path() {
        let cfg = Config::embedded(Path::new("/tmp")).unwrap();
        let plan = cfg.plan(&Catalog::embedded().unwrap(), "production", Platform::Local, "v1.2").unwrap();
        for env in ["staging", "production"] {
            let suites = &plan.environment(env).unwrap().validation;
            let names: Vec<(&str, bool, Option<ReportFormat>)> =
                suites.iter().map(|s| (s.name.as_str(), s.critical, s.report)).collect();
            assert_eq!(
                names,
                [("smoke", true, Some(ReportFormat::Junit)), ("regression", false, Some(ReportFormat::Junit))]
            );
        }
        let suite = |report: &str, output: &str| {
            format!(
                "{EMBEDDED_RAYBOT_TOML}\n[[environments.staging.validation]]\nname = \"e2e\"\nargv = [\"e2e.sh\"{output}]\ntimeout_seconds = 5\n{report}\n"
            )
        };
        let parse =
            |text: &str| Config::parse(text, EMBEDDED_APPROVERS_YAML, Path::new("."), "raybot.toml", "a.yaml", "t");
        let e = parse(&suite("report = \"junit\"", "")).unwrap_err();
        assert!(e.to_string().contains("validation[2].report: the argv must pass `{output}`"), "{e}");
        let e = parse(&suite("report = \"tap\"", ", \"{output}\"")).unwrap_err();
        assert!(e.to_string().contains("tap"), "{e}");
        assert!(parse(&suite("report = \"junit\"", ", \"--junit\", \"{output}\"")).is_ok());
    }
}
