//! `raybot demo`: release v1.2 through Protocols 10 and 11 (or the flow `--flow` names) in a local
//! war room, with the sample people reacting and approving, against a real sample service on loopback.
//!
//! The protocols are the embedded ones unless `--protocols DIR` names others; the configuration is
//! the embedded sample unless `--config DIR` names another, which is then rooted in the scratch
//! directory (its jobs run there, against the sample scripts) with the demo's ports and short
//! health windows.
//!
//! The demo writes the sample scripts and upstream inputs into a scratch directory, starts the
//! sample service at v1.1 on staging and production (a blue/green router and two colours per
//! environment, all on 127.0.0.1), then plays the release. Exit code: 0 released, 3 rolled back,
//! 1 anything else.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::chat::handle::{DriverHandle, Progress};
use crate::chat::local::LocalChat;
use crate::chat::{ChatError, ChatSink, Delivery, Inbound};
use crate::config::Config;
use crate::driver::Driver;
use crate::engine::{Activity, Ask, Button, Platform, PostKey, ReleaseId, Terminal, UserRef};
use crate::jobs::{JobRequest, run_job};
use crate::metrics::Metrics;
use crate::protocol::Catalog;
use crate::store::Store;

/// Files the demo needs on disk, compiled into the binary so it runs from anywhere.
const SCRIPTS: &[(&str, &str)] = &[
    ("deploy_backend.sh", include_str!("../scripts/deploy_backend.sh")),
    ("rollback_backend.sh", include_str!("../scripts/rollback_backend.sh")),
    ("smoke_test.sh", include_str!("../scripts/smoke_test.sh")),
    ("regression_test.sh", include_str!("../scripts/regression_test.sh")),
    ("security_scan.sh", include_str!("../scripts/security_scan.sh")),
    ("refresh_staging_data.sh", include_str!("../scripts/refresh_staging_data.sh")),
    ("stop_sample.sh", include_str!("../scripts/stop_sample.sh")),
    ("_sample_lib.sh", include_str!("../scripts/_sample_lib.sh")),
];
const INPUTS: &[(&str, &[u8])] = &[
    ("QUALITY-AUDIT-PACKAGE.zip", include_bytes!("../examples/release-inputs/QUALITY-AUDIT-PACKAGE.zip")),
    ("integration-evidence-bundle.zip", include_bytes!("../examples/release-inputs/integration-evidence-bundle.zip")),
    ("UAT-CLOSURE-PACKAGE.zip", include_bytes!("../examples/release-inputs/UAT-CLOSURE-PACKAGE.zip")),
    ("release-manifest.json", include_bytes!("../examples/release-inputs/release-manifest.json")),
];

/// What the demo should break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// v1.2 answers 503 in production: the Production Launch Gate fails and raybot rolls back.
    Smoke,
    /// The production deploy script exits 1: raybot rolls back.
    Deploy,
    /// The SRE lead rejects the production go/no-go.
    Approval,
}

/// Demo options.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Rollout strategy for the production deploy (`--strategy`).
    pub strategy: crate::engine::Strategy,
    /// What to break on purpose (`--fail`); `None` plays a clean release.
    pub fail: Option<Failure>,
    /// Evidence root (`--artifacts`, default `.artifacts`); the release writes into `<root>/<release id>/`.
    pub artifacts: PathBuf,
    /// Scratch directory (sample service state, scripts, store); a fresh temp dir when `None`.
    pub workdir: Option<PathBuf>,
    /// Flow of `pipeline.yaml` to run (`--flow`); production's default flow when `None`.
    pub flow: Option<String>,
    /// Configuration directory (`--config`); the embedded sample when `None`.
    pub config: Option<PathBuf>,
    /// Protocols directory (`--protocols`); the embedded protocols when `None`.
    pub protocols: Option<PathBuf>,
}

/// How the demo ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoOutcome {
    /// Process exit code: 0 released, 3 rolled back, 1 anything else (rejected, halted, timed out).
    pub exit_code: i32,
    /// Id of the release played, if one started.
    pub release: Option<ReleaseId>,
    /// How it ended; `None` if it halted or the demo gave up.
    pub outcome: Option<Terminal>,
}

/// A chat sink that prints like `raybot chat` and tells the scripted people what was posted.
struct DemoChat {
    local: Arc<LocalChat>,
    cues: mpsc::UnboundedSender<Cue>,
}

/// A post the scripted people may answer: its message id, text and what it asks for.
type Cue = (String, String, Ask);

#[async_trait]
impl ChatSink for DemoChat {
    async fn post(&self, text: &str, ask: &Ask) -> Result<String, ChatError> {
        let id = self.local.post(text, ask).await?;
        let _ = self.cues.send((id.clone(), text.to_string(), ask.clone()));
        Ok(id)
    }
    async fn update(&self, message: &str, text: &str) -> Result<(), ChatError> {
        self.local.update(message, text).await
    }
    async fn reply(&self, to: &UserRef, text: &str) -> Result<(), ChatError> {
        self.local.reply(to, text).await
    }
}

/// The first of `n` consecutive free loopback ports, below the kernel's ephemeral range (so that
/// outgoing connections, probes included, never take one of them between this check and the bind).
/// The start is drawn at random so that concurrent demos and tests rarely try the same block.
pub fn free_port_block(n: u16) -> std::io::Result<u16> {
    let mut seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
            ^ std::process::id().wrapping_mul(2_654_435_761);
    for _ in 0..500 {
        // xorshift: cheap, good enough to spread starts over the range.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let base = 20_000 + (seed % 12_000) as u16;
        if (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return Ok(base);
        }
    }
    Err(std::io::Error::other("no block of free loopback ports found between 20000 and 32000"))
}

fn write_executable(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

/// Writes the sample scripts (`scripts/`) and upstream inputs (`inputs/`) into `workdir`.
pub fn write_sample_files(workdir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(workdir.join("scripts"))?;
    std::fs::create_dir_all(workdir.join("inputs"))?;
    for (name, text) in SCRIPTS {
        write_executable(&workdir.join("scripts").join(name), text)?;
    }
    for (name, bytes) in INPUTS {
        std::fs::write(workdir.join("inputs").join(name), bytes)?;
    }
    Ok(())
}

/// Prepares the scratch directory and returns the demo configuration: the one in `config` (a
/// directory holding `raybot.toml` and `release-approvers.yaml`) if given, else the embedded
/// sample, rooted in `workdir` either way.
pub fn prepare(workdir: &Path, fail: Option<Failure>, config: Option<&Path>) -> anyhow::Result<Config> {
    write_sample_files(workdir)?;
    let mut cfg = match config {
        Some(dir) => {
            let mut cfg = Config::load(dir)?;
            // Its jobs run in the scratch directory, against the sample scripts and inputs.
            cfg.base_dir = workdir.to_path_buf();
            cfg
        }
        None => Config::embedded(workdir)?,
    };
    for env in ["staging", "production"] {
        if !cfg.raybot.environments.contains_key(env) {
            anyhow::bail!("the demo needs a `{env}` environment; {} has none", cfg.source);
        }
    }
    let source = match config {
        Some(dir) => format!("demo ({}, in {})", dir.display(), workdir.display()),
        None => format!("demo ({})", workdir.display()),
    };
    let staging = free_port_block(3)?;
    let mut production = free_port_block(3)?;
    while production.abs_diff(staging) < 3 {
        production = free_port_block(3)?;
    }
    let r = &mut cfg.raybot;
    r.release.inputs_dir = "inputs".into();
    r.release.remind_after_seconds = 2;
    r.job_env.insert("SAMPLE_STATE_DIR".into(), workdir.join("sample").display().to_string());
    r.job_env.insert("SAMPLE_PORT_STAGING".into(), staging.to_string());
    r.job_env.insert("SAMPLE_PORT_PRODUCTION".into(), production.to_string());
    match fail {
        Some(Failure::Smoke) => {
            r.job_env.insert("SAMPLE_FAIL".into(), "production:smoke".into());
        }
        Some(Failure::Deploy) => {
            r.job_env.insert("SAMPLE_FAIL".into(), "production:deploy".into());
        }
        _ => {}
    }
    for (name, port) in [("staging", staging), ("production", production)] {
        if let Some(e) = r.environments.get_mut(name) {
            e.probe.url = format!("http://127.0.0.1:{port}/healthz");
            e.health_window.duration_seconds = 3;
            e.health_window.interval_seconds = 1;
        }
    }
    cfg.source = source;
    Ok(cfg)
}

async fn setup_job(cfg: &Config, workdir: &Path, argv: &[&str], log: &str) -> anyhow::Result<()> {
    let mut env: Vec<(String, String)> = cfg.raybot.job_env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    // Setup never injects failures (an empty value means none to the scripts).
    env.retain(|(k, _)| k != "SAMPLE_FAIL");
    env.push(("SAMPLE_FAIL".into(), String::new()));
    if let Ok(exe) = std::env::current_exe() {
        env.push(("RAYBOT_BIN".into(), exe.display().to_string()));
    }
    let outcome = run_job(JobRequest {
        argv: argv.iter().map(|s| (*s).to_string()).collect(),
        env,
        cwd: workdir.to_path_buf(),
        timeout: Duration::from_secs(30),
        log_path: workdir.join(log),
        header: format!("# demo setup: {}", argv.join(" ")),
        report: None,
    })
    .await;
    if !outcome.succeeded() {
        anyhow::bail!(
            "demo setup `{}` failed: {} — {}",
            argv.join(" "),
            outcome.summary(),
            outcome.log_tail.join(" | ")
        );
    }
    Ok(())
}

/// Runs the demo, printing the transcript to `out`.
pub async fn run(opts: DemoOptions, out: Box<dyn std::io::Write + Send>) -> anyhow::Result<DemoOutcome> {
    let temp = match &opts.workdir {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("raybot-demo-").tempdir()?),
    };
    let workdir = opts.workdir.clone().or_else(|| temp.as_ref().map(|t| t.path().to_path_buf())).unwrap_or_default();
    let catalog = match &opts.protocols {
        Some(dir) => Catalog::load_dir(dir),
        None => Catalog::embedded(),
    }
    .map_err(|errs| {
        anyhow::anyhow!("invalid protocols:\n{}", errs.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))
    })?;
    // An unknown flow is refused before the sample service starts.
    catalog.resolve("production", opts.flow.as_deref()).map_err(anyhow::Error::msg)?;
    let cfg = prepare(&workdir, opts.fail, opts.config.as_deref())?;
    let local = Arc::new(LocalChat::new(out, "demo"));
    let result = play(&opts, &cfg, catalog, &workdir, local.clone()).await;
    // Always stop the sample service, whatever happened.
    let _ = setup_job(&cfg, &workdir, &["scripts/stop_sample.sh"], "setup.log").await;
    local.say("[demo] sample service stopped.");
    result
}

async fn play(
    opts: &DemoOptions,
    cfg: &Config,
    catalog: Catalog,
    workdir: &Path,
    local: Arc<LocalChat>,
) -> anyhow::Result<DemoOutcome> {
    local.say(&format!(
        "[demo] Starting the sample service v1.1 on staging ({}) and production ({}) — blue/green on loopback.",
        cfg.raybot.environments["staging"].probe.url, cfg.raybot.environments["production"].probe.url
    ));
    for env in ["staging", "production"] {
        setup_job(
            cfg,
            workdir,
            &["scripts/deploy_backend.sh", "--env", env, "--release", "v1.1", "--percent", "100"],
            "setup.log",
        )
        .await?;
    }
    let store: Arc<dyn Store> = Arc::new(crate::store::file::FileStore::open(&workdir.join("store"))?);
    let (cue_tx, mut cue_rx) = mpsc::unbounded_channel();
    let chat = Arc::new(DemoChat { local: local.clone(), cues: cue_tx });
    let metrics = Arc::new(Metrics::new());
    let driver = Driver::new(cfg.clone(), catalog, store, chat, opts.artifacts.clone(), Platform::Local, metrics);
    let driver = crate::driver::run::start(driver).await?;
    let outcome = direct(opts, cfg, &local, &driver, &mut cue_rx).await;
    driver.close().await;
    outcome
}

/// Plays the scripted people against the running driver until the release ends, halts or the
/// demo gives up. The driver's progress says where the release stands.
async fn direct(
    opts: &DemoOptions,
    cfg: &Config,
    local: &LocalChat,
    driver: &DriverHandle,
    cue_rx: &mut mpsc::UnboundedReceiver<Cue>,
) -> anyhow::Result<DemoOutcome> {
    let mut progress = driver.progress();
    let (people_tx, mut people_rx) = mpsc::unbounded_channel::<(String, Inbound)>();
    let user = |id: &str| UserRef::new(Platform::Local, id);
    // The scripted people type only fixed commands of the grammar.
    let cmd = |id: &str, text: &str| Inbound::command(user(id), text).expect("the demo types valid /ray commands");

    let flow = opts.flow.as_ref().map(|f| format!(" --flow {f}")).unwrap_or_default();
    let deploy = format!("/ray deploy v1.2{flow} --strategy {}", opts.strategy.as_str());
    local.say(&format!("alice: {deploy}"));
    say(driver, cmd("alice", &deploy)).await?;

    let mut approvals_seen = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
    loop {
        let now = progress.borrow_and_update().clone();
        if let Some((id, outcome)) = now.finished.first().cloned() {
            let code = match outcome {
                Terminal::Released => 0,
                Terminal::RolledBack { .. } => 3,
                _ => 1,
            };
            if matches!(outcome, Terminal::RolledBack { .. }) {
                let url = cfg.raybot.environments["production"].probe.url.clone();
                let report = crate::probe::run_probe(
                    &reqwest::Client::new(),
                    &crate::probe::ProbeRequest {
                        url,
                        count: 5,
                        interval: Duration::from_millis(20),
                        timeout: Duration::from_secs(2),
                        version_header: Some("x-version".into()),
                    },
                )
                .await;
                local.say(&format!(
                    "[demo] production now serves {:?} ({} of {} healthy).",
                    report.versions.keys().collect::<Vec<_>>(),
                    report.ok,
                    report.total
                ));
            }
            local.say(&format!(
                "[demo] {id}: {}. Evidence in {}/{id}/. Exit code {code}.",
                outcome.label(),
                opts.artifacts.display()
            ));
            return Ok(DemoOutcome { exit_code: code, release: Some(id.into()), outcome: Some(outcome) });
        }
        if let Some(r) = now.active.first() {
            if let Activity::Halted(h) = &r.activity {
                if now.idle {
                    local.say(&format!("[demo] the release halted at {}: {} — the demo stops here.", h.step, h.reason));
                    return Ok(DemoOutcome { exit_code: 1, release: Some(r.id.clone()), outcome: None });
                }
            }
        } else if now.idle && now.finished.is_empty() {
            local.say("[demo] no release is running.");
            return Ok(DemoOutcome { exit_code: 1, release: None, outcome: None });
        }
        tokio::select! {
            Some((message, text, ask)) = cue_rx.recv() => {
                let tx = people_tx.clone();
                let script: Vec<(u64, &str, Inbound)> = match ask {
                    Ask::Reaction { emoji } => vec![
                        (300, "alice: /ray ack", cmd("alice", "/ray ack")),
                        (200, "bob reacted ✅", Inbound::Reaction { user: user("bob"), message: message.clone(), emoji: emoji.clone(), added: true }),
                        (200, "mallory reacted ✅", Inbound::Reaction { user: user("mallory"), message: message.clone(), emoji: emoji.clone(), added: true }),
                        (200, "carol reacted ✅", Inbound::Reaction { user: user("carol"), message: message.clone(), emoji: emoji.clone(), added: true }),
                        (200, "dave: /ray ack", cmd("dave", "/ray ack")),
                    ],
                    Ask::Buttons => {
                        approvals_seen += 1;
                        if approvals_seen == 1 {
                            vec![
                                (300, "erin clicked [Approve]", Inbound::Click { user: user("erin"), message: message.clone(), button: Button::Approve }),
                                (300, "alice: /ray approve rehearsal evidence reviewed", cmd("alice", "/ray approve rehearsal evidence reviewed")),
                                (300, "bob clicked [Approve]", Inbound::Click { user: user("bob"), message: message.clone(), button: Button::Approve }),
                            ]
                        } else if opts.fail == Some(Failure::Approval) {
                            vec![
                                (300, "bob clicked [Approve]", Inbound::Click { user: user("bob"), message: message.clone(), button: Button::Approve }),
                                (300, "carol: /ray reject error budget exhausted this week", cmd("carol", "/ray reject error budget exhausted this week")),
                            ]
                        } else {
                            vec![
                                (300, "bob clicked [Approve]", Inbound::Click { user: user("bob"), message: message.clone(), button: Button::Approve }),
                                (300, "carol: /ray approve dashboards and alerts ready", cmd("carol", "/ray approve dashboards and alerts ready")),
                            ]
                        }
                    }
                    Ask::Nothing if text.starts_with("[RAY REMINDER] Change freeze") => vec![
                        (300, "erin: /react ✅ (after the reminder)", Inbound::Reaction { user: user("erin"), message: freeze_message(&progress.borrow()), emoji: "white_check_mark".into(), added: true }),
                    ],
                    Ask::Nothing => vec![],
                };
                let script: Vec<(u64, String, Inbound)> = script.into_iter().map(|(d, s, i)| (d, s.to_string(), i)).collect();
                tokio::spawn(async move {
                    for (delay, said, inbound) in script {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                        let _ = tx.send((said, inbound));
                    }
                });
            }
            Some((said, inbound)) = people_rx.recv() => {
                local.say(&said);
                say(driver, inbound).await?;
            }
            // A job, probe or timer came back, or a post went out.
            Ok(()) = progress.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {
                local.say("[demo] gave up after 150 s.");
                return Ok(DemoOutcome { exit_code: 1, release: None, outcome: None });
            }
        }
    }
}

/// Hands what a scripted person did to the driver and waits until it is handled, so the demo
/// looks at the release only after it.
async fn say(driver: &DriverHandle, inbound: Inbound) -> anyhow::Result<()> {
    driver.send(Delivery::new(inbound))?;
    Ok(driver.handled().await?)
}

fn freeze_message(progress: &Progress) -> String {
    progress
        .active
        .first()
        .and_then(|r| r.posts.get(&PostKey::Freeze))
        .and_then(|v| v.last().cloned())
        .unwrap_or_default()
}
