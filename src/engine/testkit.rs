//! A deterministic world around the engine, for tests, property tests and benchmarks.
//!
//! [`Sim`] answers the engine's effects the way the driver would — jobs succeed (unless told to
//! fail), probes report the version each environment serves, every input and bundle file exists —
//! without processes, sockets or clocks. Time advances by fixed steps.

use std::collections::BTreeMap;

use super::reports::{
    BundleReport, FailedCase, FileDigest, InputStatus, JobOutcome, ProbeReport, ReportRead, TestCounts, TestReport,
};
use super::{
    Effect, Event, Plan, Platform, PostKey, Release, ReleaseCommand, ReportSpec, Strategy, Terminal, TimerId,
    Timestamp, UserRef,
};
use crate::config::Config;
use crate::protocol::Catalog;

/// The report a simulated suite job writes: one test case, failed when the job fails; `lost`: it
/// wrote none.
fn simulated_report(spec: ReportSpec, fail: bool, lost: bool) -> TestReport {
    if lost {
        return TestReport { format: spec.format, path: spec.path, sha256: None, read: ReportRead::Missing };
    }
    let failed_cases = if fail {
        vec![FailedCase { name: "simulated.case".into(), kind: "failure".into(), message: "simulated failure".into() }]
    } else {
        Vec::new()
    };
    TestReport {
        format: spec.format,
        path: spec.path,
        sha256: Some("5133".into()),
        read: ReportRead::Parsed(TestCounts {
            tests: 1,
            failures: u32::from(fail),
            errors: 0,
            skipped: 0,
            failed_cases,
        }),
    }
}

/// The sample plan (embedded protocols and configuration) for `env` on the local platform.
pub fn sample_plan(env: &str) -> Plan {
    let cfg = Config::embedded(std::path::Path::new("/nonexistent")).expect("embedded config parses");
    let catalog = Catalog::embedded().expect("embedded protocols parse");
    cfg.plan(&catalog, env, Platform::Local, "v1.2").expect("sample plan builds")
}

/// A probe of 10 requests, `ok` of them answered, served by `versions` (version → requests).
pub fn probe_report(ok: u32, versions: &[(&str, u32)]) -> ProbeReport {
    ProbeReport {
        url: "u".into(),
        total: 10,
        ok,
        p50_ms: 1,
        p95_ms: 5,
        max_ms: 5,
        statuses: BTreeMap::new(),
        versions: versions.iter().map(|(v, n)| (v.to_string(), *n)).collect(),
        errors: Vec::new(),
    }
}

/// A job that exited with `code` after `ms`, with no output and no report.
pub fn exited(code: i32, ms: u64) -> JobOutcome {
    JobOutcome {
        exit_code: Some(code),
        timed_out: false,
        duration_ms: ms,
        spawn_error: None,
        log_tail: vec![],
        report: None,
    }
}

/// The sample plan for `env` on `platform`: the same people, with their ids on that platform.
pub fn sample_plan_on(env: &str, platform: Platform) -> Plan {
    let cfg = Config::embedded(std::path::Path::new("/nonexistent")).expect("embedded config parses");
    let catalog = Catalog::embedded().expect("embedded protocols parse");
    cfg.plan(&catalog, env, platform, "v1.2").expect("sample plan builds")
}

/// Every place in `text` where one of `ids` (platform user ids) stands alone: not inside a
/// mention (`<@U0CAROL003>`) and not after its platform's name (`Carol Example (slack
/// U0CAROL003)`). Chat shows a mention as the person's name and evidence names people with both;
/// a bare id names nobody. Returns the lines that hold one.
pub fn bare_ids(text: &str, platform: Platform, ids: &[&str]) -> Vec<String> {
    let named = format!("{platform} ");
    text.lines()
        .filter(|line| {
            ids.iter().any(|id| {
                line.match_indices(id).any(|(at, _)| {
                    let before = &line[..at];
                    let after = &line[at + id.len()..];
                    let mention = before.ends_with("<@") && after.starts_with('>');
                    // An id that is part of a longer word (another id, a message id) is not this one.
                    let inside = before.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
                        || after.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
                    !(mention || inside || before.ends_with(&named))
                })
            })
        })
        .map(str::to_string)
        .collect()
}

/// A simulated world.
pub struct Sim {
    pub release: Option<Release>,
    pub now: Timestamp,
    /// Every event the release accepted, as the store would hold them.
    pub log: Vec<(Timestamp, Event)>,
    /// Everything posted or updated in the channel.
    pub channel: Vec<String>,
    /// Replies to single users: (user, text).
    pub replies: Vec<(String, String)>,
    /// Evidence files written.
    pub files: BTreeMap<String, String>,
    /// Job purposes that fail (prefix match), e.g. `deploy production`.
    pub fail_jobs: Vec<String>,
    /// Job purposes that succeed without changing anything (prefix match), e.g. a rollback
    /// script that finds nothing to do.
    pub inert_jobs: Vec<String>,
    /// Evidence files that have vanished by the time a bundle is built.
    pub lose_files: Vec<String>,
    /// Jobs (purpose prefix) whose test report is missing once they end.
    pub lose_reports: Vec<String>,
    /// Zips that cannot be written: (path suffix, which writing of it fails, from 1); that bundle
    /// comes back as `EvidenceFailed`.
    pub fail_bundles: Vec<(String, usize)>,
    /// How often each zip was asked for.
    bundles_asked: BTreeMap<String, usize>,
    /// Versions whose health checks fail (the `--fail smoke` case).
    pub unhealthy: Vec<String>,
    /// What each environment serves: env → (current, previous).
    pub serving: BTreeMap<String, (String, Option<String>)>,
    /// Jobs run, in order (purpose).
    pub jobs_run: Vec<String>,
    pub timers: Vec<(TimerId, Timestamp)>,
    pub outcome: Option<Terminal>,
    /// Production answers unhealthy from this many production probes on (a degradation during
    /// the health window).
    pub break_production_after_probes: Option<usize>,
    production_probes: usize,
    messages: u64,
}

impl Sim {
    pub fn new() -> Sim {
        let mut serving = BTreeMap::new();
        serving.insert("staging".to_string(), ("v1.1".to_string(), None));
        serving.insert("production".to_string(), ("v1.1".to_string(), None));
        Sim {
            release: None,
            now: Timestamp(1_780_000_000_000),
            log: Vec::new(),
            channel: Vec::new(),
            replies: Vec::new(),
            files: BTreeMap::new(),
            fail_jobs: Vec::new(),
            inert_jobs: Vec::new(),
            lose_files: Vec::new(),
            lose_reports: Vec::new(),
            fail_bundles: Vec::new(),
            bundles_asked: BTreeMap::new(),
            unhealthy: Vec::new(),
            serving,
            jobs_run: Vec::new(),
            timers: Vec::new(),
            outcome: None,
            break_production_after_probes: None,
            production_probes: 0,
            messages: 0,
        }
    }

    pub fn user(id: &str) -> UserRef {
        UserRef::new(Platform::Local, id)
    }

    /// Starts `/ray deploy v1.2` by `by` with the sample plan.
    pub fn start(&mut self, by: &str, strategy: Strategy) {
        self.start_with(by, strategy, sample_plan("production"));
    }

    pub fn start_with(&mut self, by: &str, strategy: Strategy, plan: Plan) {
        let ev = Event::Started {
            release: "v1.2-test".into(),
            version: "v1.2".into(),
            env: "production".into(),
            strategy,
            by: Sim::user(by),
            plan: Box::new(plan),
        };
        let (r, fx) = Release::start(&ev, self.now).expect("release starts");
        self.log.push((self.now, ev));
        self.release = Some(r);
        self.perform(fx);
    }

    pub fn release(&self) -> &Release {
        self.release.as_ref().expect("started")
    }

    /// Delivers one event and lets the world answer until the release waits for people.
    pub fn send(&mut self, event: Event) -> Vec<Effect> {
        self.now = self.now.plus_ms(1_000);
        self.log.push((self.now, event.clone()));
        let fx = self.release.as_mut().expect("started").handle(&event, self.now);
        let copy = fx.clone();
        self.perform(fx);
        copy
    }

    pub fn command(&mut self, by: &str, command: ReleaseCommand) -> Vec<Effect> {
        self.send(Event::Command { by: Sim::user(by), command })
    }

    /// Message id of the latest post under `key`.
    pub fn message(&self, key: &PostKey) -> String {
        self.release().posts.get(key).and_then(|v| v.last().cloned()).unwrap_or_default()
    }

    /// Everyone on the freeze list reacts with the ack emoji.
    pub fn ack_all(&mut self) {
        let required = self.release().freeze.required.clone();
        for u in required {
            let message = self.message(&PostKey::Freeze);
            self.send(Event::Reaction { by: Sim::user(&u), message, emoji: "white_check_mark".into(), added: true });
        }
    }

    /// Fires the latest armed timer.
    pub fn fire_latest_timer(&mut self) {
        if let Some((t, at)) = self.timers.last().cloned() {
            self.now = self.now.max(at);
            self.send(Event::Tick { timer: t });
        }
    }

    fn perform(&mut self, fx: Vec<Effect>) {
        let mut queue: std::collections::VecDeque<Effect> = fx.into();
        while let Some(e) = queue.pop_front() {
            let answer = match e {
                Effect::Post { key, text, .. } => {
                    self.channel.push(text);
                    key.map(|key| {
                        self.messages += 1;
                        Event::Posted { key, message: format!("m{}", self.messages) }
                    })
                }
                Effect::Update { text, .. } => {
                    self.channel.push(format!("(updated) {text}"));
                    None
                }
                Effect::Reply { to, text } => {
                    self.replies.push((to.id, text));
                    None
                }
                Effect::RunJob(spec) => {
                    self.jobs_run.push(spec.purpose.clone());
                    let fail = self.fail_jobs.iter().any(|f| spec.purpose.starts_with(f.as_str()));
                    let env =
                        spec.env.iter().find(|(k, _)| k == "RAYBOT_ENV").map(|(_, v)| v.clone()).unwrap_or_default();
                    let version = spec
                        .env
                        .iter()
                        .find(|(k, _)| k == "RAYBOT_VERSION")
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    let inert = self.inert_jobs.iter().any(|f| spec.purpose.starts_with(f.as_str()));
                    if !fail && !inert {
                        let entry = self.serving.entry(env).or_insert(("v1.1".into(), None));
                        if spec.purpose.starts_with("rollback") {
                            if let Some(prev) = entry.1.take() {
                                entry.0 = prev;
                            }
                        } else if ((spec.purpose.starts_with("deploy") && spec.purpose.ends_with("100%"))
                            || spec.purpose.starts_with("roll forward"))
                            && entry.0 != version
                        {
                            entry.1 = Some(entry.0.clone());
                            entry.0 = version;
                        }
                    }
                    Some(Event::JobFinished {
                        job: spec.id,
                        outcome: JobOutcome {
                            exit_code: Some(if fail { 1 } else { 0 }),
                            timed_out: false,
                            duration_ms: 100,
                            spawn_error: None,
                            log_tail: vec![if fail { "simulated failure".into() } else { "ok".into() }],
                            report: spec.report.map(|r| {
                                let lost = self.lose_reports.iter().any(|l| spec.purpose.starts_with(l.as_str()));
                                simulated_report(r, fail, lost)
                            }),
                        },
                    })
                }
                Effect::Probe(spec) => {
                    let env = if spec.url.contains("18080") { "staging" } else { "production" };
                    let version = self.serving.get(env).map(|s| s.0.clone()).unwrap_or_default();
                    let mut ok = if self.unhealthy.contains(&version) { 0 } else { spec.count };
                    if env == "production" {
                        self.production_probes += 1;
                        if self.break_production_after_probes.is_some_and(|n| self.production_probes > n) {
                            ok = 0;
                        }
                    }
                    let mut statuses = BTreeMap::new();
                    statuses.insert(if ok > 0 { "200".to_string() } else { "503".to_string() }, spec.count);
                    let mut versions = BTreeMap::new();
                    versions.insert(version, spec.count);
                    Some(Event::ProbeFinished {
                        probe: spec.id,
                        report: ProbeReport {
                            url: spec.url,
                            total: spec.count,
                            ok,
                            p50_ms: 2,
                            p95_ms: 5,
                            max_ms: 9,
                            statuses,
                            versions,
                            errors: Vec::new(),
                        },
                    })
                }
                Effect::CheckInputs { check, items } => Some(Event::InputsChecked {
                    check,
                    results: items
                        .into_iter()
                        .map(|i| InputStatus {
                            name: i.name.clone(),
                            found: vec![i.name],
                            status: "present".into(),
                            required: i.required,
                            sha256: None,
                            content: Vec::new(),
                        })
                        .collect(),
                }),
                Effect::WriteEvidence { path, contents } => {
                    self.files.insert(path, contents);
                    None
                }
                Effect::Bundle { zip, .. }
                    if {
                        let n = self.bundles_asked.entry(zip.clone()).or_default();
                        *n += 1;
                        let n = *n;
                        self.fail_bundles.iter().any(|(f, which)| zip.ends_with(f.as_str()) && *which == n)
                    } =>
                {
                    Some(Event::EvidenceFailed { file: zip.clone(), error: "No space left on device".into() })
                }
                Effect::Bundle { bundle, zip, files, manifest, .. } => {
                    let mut all = files.clone();
                    all.extend(manifest.clone());
                    let present: Vec<FileDigest> = all
                        .iter()
                        .filter(|f| self.files.contains_key(*f) || f.ends_with(".log") || manifest.as_ref() == Some(*f))
                        .filter(|f| !self.lose_files.contains(f))
                        .map(|f| FileDigest { path: f.clone(), sha256: "0".repeat(64), bytes: 1 })
                        .collect();
                    let missing: Vec<String> =
                        all.iter().filter(|f| !present.iter().any(|p| &p.path == *f)).cloned().collect();
                    self.files.insert(zip.clone(), "zip".into());
                    Some(Event::BundleWritten {
                        bundle,
                        report: BundleReport { zip, zip_sha256: "a".repeat(64), files: present, missing },
                    })
                }
                Effect::ArmTimer { timer, at } => {
                    self.timers.push((timer, at));
                    None
                }
                Effect::Finished { outcome } => {
                    self.outcome = Some(outcome);
                    None
                }
            };
            if let Some(ev) = answer {
                self.now = self.now.plus_ms(100);
                self.log.push((self.now, ev.clone()));
                let more = self.release.as_mut().expect("started").handle(&ev, self.now);
                queue.extend(more);
            }
            // The health window only waits for time: let it pass.
            if queue.is_empty() {
                if let Some(super::Activity::Soak { timer, until }) = self.release.as_ref().map(|r| r.activity.clone())
                {
                    let at = self.timers.iter().find(|(t, _)| *t == timer).map(|(_, a)| *a).unwrap_or(until);
                    self.now = self.now.max(at);
                    let ev = Event::Tick { timer };
                    self.log.push((self.now, ev.clone()));
                    let more = self.release.as_mut().expect("started").handle(&ev, self.now);
                    queue.extend(more);
                }
            }
        }
    }
}

impl Default for Sim {
    fn default() -> Self {
        Sim::new()
    }
}
