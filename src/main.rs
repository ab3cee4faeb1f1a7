//! The `raybot` binary: command-line entry points over the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use raybot::chat::Delivery;
use raybot::chat::local::{LineReader, LineResult, LocalChat};
use raybot::config::Config;
use raybot::demo::{DemoOptions, Failure};
use raybot::driver::Driver;
use raybot::engine::{Strategy, ray_error};
use raybot::metrics::Metrics;
use raybot::protocol::Catalog;

#[derive(Parser)]
#[command(
    name = "raybot",
    version,
    about = "Chat-ops release manager: runs the MASTER RAY release protocols in a war room"
)]
struct Cli {
    /// Configuration directory holding raybot.toml and release-approvers.yaml
    /// [default: ./config if present, else the embedded sample].
    #[arg(long, global = true, env = "RAYBOT_CONFIG")]
    config: Option<PathBuf>,
    /// Protocols directory [default: ./protocols if present, else the embedded protocols].
    #[arg(long, global = true, env = "RAYBOT_PROTOCOLS")]
    protocols: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Play release v1.2 through Protocols 10 and 11 against a local sample service.
    Demo {
        #[arg(long, value_enum, default_value_t = StrategyArg::Bluegreen)]
        strategy: StrategyArg,
        /// Break something on purpose.
        #[arg(long, value_enum)]
        fail: Option<FailArg>,
        /// Where evidence goes (one folder per release).
        #[arg(long, default_value = ".artifacts")]
        artifacts: PathBuf,
    },
    /// The local war room: read messages from stdin, print raybot's posts to stdout.
    Chat {
        /// Who is speaking (`/as NAME` switches).
        #[arg(long)]
        user: String,
        #[arg(long, default_value = ".artifacts")]
        artifacts: PathBuf,
    },
    /// Work with the protocol files.
    Protocols {
        #[command(subcommand)]
        action: ProtocolsCmd,
    },
    /// Start the HTTP server (/healthz, /metrics).
    Serve {
        /// Address to listen on [env: RAYBOT_LISTEN, or 0.0.0.0:$PORT, default 0.0.0.0:8080].
        #[arg(long)]
        listen: Option<String>,
    },
    /// Releases in the store.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Recent releases.
    History,
    /// The sample service the demo deploys (used by scripts/deploy_backend.sh).
    #[command(hide = true, name = "sample-app")]
    SampleApp {
        #[command(subcommand)]
        action: SampleCmd,
    },
}

#[derive(Subcommand)]
enum ProtocolsCmd {
    /// List the protocols and the pipeline.
    List,
    /// Show one protocol's phases, steps and gates.
    Show { id: String },
    /// Validate a protocols directory (default: ./protocols or the embedded set).
    Validate { dir: Option<PathBuf> },
}

#[derive(Subcommand)]
enum SampleCmd {
    Serve {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        version: String,
        #[arg(long)]
        unhealthy: bool,
    },
    Router {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        state: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum StrategyArg {
    Bluegreen,
    Canary,
    Rolling,
}

#[derive(Clone, Copy, ValueEnum)]
enum FailArg {
    Smoke,
    Deploy,
    Approval,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RAYBOT_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{}", ray_error(format!("cannot start the runtime: {e}")));
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{}", ray_error(format!("{e:#}")));
            ExitCode::from(1)
        }
    }
}

fn load_catalog(dir: Option<&Path>) -> anyhow::Result<Catalog> {
    let result = match dir {
        Some(d) => Catalog::load_dir(d),
        None if Path::new("protocols/pipeline.yaml").exists() => Catalog::load_dir(Path::new("protocols")),
        None => Catalog::embedded(),
    };
    result.map_err(|errs| {
        anyhow::anyhow!("invalid protocols:\n{}", errs.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))
    })
}

fn load_config(dir: Option<&Path>) -> anyhow::Result<Config> {
    let cfg = match dir {
        Some(d) => Config::load(d)?,
        None if Path::new("config/raybot.toml").exists() => Config::load(Path::new("config"))?,
        None => Config::embedded(&std::env::current_dir()?)?,
    };
    Ok(cfg)
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Cmd::Demo { strategy, fail, artifacts } => {
            let opts = DemoOptions {
                strategy: match strategy {
                    StrategyArg::Bluegreen => Strategy::Bluegreen,
                    StrategyArg::Canary => Strategy::Canary,
                    StrategyArg::Rolling => Strategy::Rolling,
                },
                fail: fail.map(|f| match f {
                    FailArg::Smoke => Failure::Smoke,
                    FailArg::Deploy => Failure::Deploy,
                    FailArg::Approval => Failure::Approval,
                }),
                artifacts: std::path::absolute(&artifacts)?,
                workdir: None,
            };
            let outcome = raybot::demo::run(opts, Box::new(std::io::stdout())).await?;
            Ok(outcome.exit_code as u8)
        }
        Cmd::Chat { user, artifacts } => chat(cli.config.as_deref(), cli.protocols.as_deref(), user, artifacts).await,
        Cmd::Protocols { action } => protocols(cli.protocols.as_deref(), action),
        Cmd::Serve { listen } => serve(cli.config.as_deref(), cli.protocols.as_deref(), listen).await,
        Cmd::Status { json } => status(json).await,
        Cmd::History => status(false).await,
        Cmd::SampleApp { action } => {
            match action {
                SampleCmd::Serve { port, version, unhealthy } => {
                    raybot::sample_app::serve_app(port, version, !unhealthy).await?
                }
                SampleCmd::Router { port, state } => raybot::sample_app::serve_router(port, state).await?,
            }
            Ok(0)
        }
    }
}

fn protocols(dir: Option<&Path>, action: ProtocolsCmd) -> anyhow::Result<u8> {
    match action {
        ProtocolsCmd::Validate { dir: target } => {
            let target = target.or_else(|| dir.map(Path::to_path_buf));
            let result = match &target {
                Some(d) => Catalog::load_dir(d),
                None if Path::new("protocols/pipeline.yaml").exists() => Catalog::load_dir(Path::new("protocols")),
                None => Catalog::embedded(),
            };
            match result {
                Ok(c) => {
                    let in_pipeline: Vec<&String> = c.pipeline.targets.values().flatten().collect();
                    for p in c.protocols.iter().filter(|p| !in_pipeline.contains(&&p.id)) {
                        for w in raybot::protocol::unmeasurable_gates(&format!("protocol {}", p.id), p) {
                            println!("warning (not in the pipeline, so not run): {w}");
                        }
                    }
                    println!("ok: {} protocols and the pipeline in {} are valid.", c.protocols.len(), c.source);
                    Ok(0)
                }
                Err(errs) => {
                    for e in errs {
                        eprintln!("{}", ray_error(&e));
                    }
                    Ok(1)
                }
            }
        }
        ProtocolsCmd::List => {
            let c = load_catalog(dir)?;
            for p in &c.protocols {
                let steps: usize = p.phases.iter().map(|ph| ph.steps.len()).sum();
                println!(
                    "{:>3}  {} — {} phases, {steps} steps, {} gates ({})",
                    p.id,
                    p.title,
                    p.phases.len(),
                    p.gates.len(),
                    p.source
                );
            }
            for (env, ids) in &c.pipeline.targets {
                println!("pipeline {env}: {}", ids.join(" → "));
            }
            Ok(0)
        }
        ProtocolsCmd::Show { id } => {
            let c = load_catalog(dir)?;
            let Some(p) = c.get(&id) else {
                let ids: Vec<&str> = c.protocols.iter().map(|p| p.id.as_str()).collect();
                eprintln!("{}", ray_error(format!("no protocol `{id}`; known: {}", ids.join(", "))));
                return Ok(1);
            };
            println!("PROTOCOL {}: {} ({})", p.id, p.title, p.compliance.clone().unwrap_or_default());
            println!("Persona: {}\nMission: {}", p.role.persona, p.role.mission);
            if let Some(g) = &p.role.guardrail {
                println!("{g}");
            }
            for ph in &p.phases {
                println!(
                    "\nSTEP {}: {}{}",
                    ph.number,
                    ph.title,
                    ph.gate.as_ref().map(|g| format!("  [gate: {g}]")).unwrap_or_default()
                );
                for (i, s) in ph.steps.iter().enumerate() {
                    println!(
                        "  {}.{} [{:?}] {} — {}",
                        ph.number,
                        i + 1,
                        s.level,
                        s.title,
                        serde_json::to_string(&s.run).unwrap_or_default()
                    );
                    if let Some(c) = &s.communication {
                        println!("      says: {c}");
                    }
                    if let Some(h) = &s.halt_condition {
                        println!("      halt: {h}");
                    }
                    if !s.evidence.is_empty() {
                        println!("      evidence: {}", s.evidence.join(", "));
                    }
                }
            }
            println!("\nQUALITY GATES");
            for g in &p.gates {
                println!(
                    "  {} {} [{}]: pass when `{}`; on failure: {:?}{}",
                    g.number,
                    g.name,
                    g.id,
                    g.pass_threshold.clone().unwrap_or_default(),
                    g.on_failure,
                    if g.waivable { "" } else { " (not waivable)" }
                );
            }
            Ok(0)
        }
    }
}

async fn chat(config: Option<&Path>, protocols: Option<&Path>, user: String, artifacts: PathBuf) -> anyhow::Result<u8> {
    let cfg = load_config(config)?;
    let catalog = load_catalog(protocols)?;
    let store = raybot::store::open(store_spec().as_deref()).context("opening the state store")?;
    let session = format!("{:x}", raybot::clock::now().0);
    let local = Arc::new(LocalChat::new(Box::new(std::io::stdout()), &session));
    let artifacts = std::path::absolute(&artifacts)?;
    let driver = Driver::new(cfg, catalog, store, local.clone(), artifacts, "local", Arc::new(Metrics::new()));
    let driver = raybot::driver::run::start(driver).await.context("resuming releases from the store")?;
    // What the resume re-posts (a pending approval request with its buttons) is on screen before
    // the first line is read: a `/click` typed at once refers to it.
    driver.flush().await?;
    let mut user = user;
    let mut lines = LineReader::new(tokio::io::BufReader::new(tokio::io::stdin()));
    // Background results are handled by the driver's own loop meanwhile.
    while let Some(line) = lines.next().await? {
        match line {
            Ok(line) => match local.parse_line(&mut user, &line) {
                LineResult::Nothing => {}
                LineResult::Local(text) => local.say(&text),
                LineResult::Inbound(inbound) => {
                    driver.send(Delivery::new(inbound))?;
                    // The line's posts are out before the next line is read: the transcript reads in order.
                    driver.flush().await?;
                }
            },
            Err(not_utf8) => local.say(&raybot::engine::ray_error(not_utf8)),
        }
    }
    // End of input: let automated work finish until the release needs people or has ended.
    driver.settle().await?;
    driver.close().await;
    Ok(0)
}

async fn serve(config: Option<&Path>, protocols: Option<&Path>, listen: Option<String>) -> anyhow::Result<u8> {
    let addr = listen
        .or_else(|| std::env::var("RAYBOT_LISTEN").ok())
        .or_else(|| std::env::var("PORT").ok().map(|p| format!("0.0.0.0:{p}")))
        .unwrap_or_else(|| "0.0.0.0:8080".to_string());
    let ctx = raybot::serve::ServeContext {
        config: load_config(config)?,
        catalog: load_catalog(protocols)?,
        store: raybot::store::open(store_spec().as_deref()).context("opening the state store")?,
        metrics: Arc::new(Metrics::new()),
        artifacts: std::path::absolute(
            std::env::var("RAYBOT_ARTIFACTS").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(".artifacts")),
        )?,
        drain: Default::default(),
    };
    raybot::serve::run(ctx, &addr).await
}

/// `RAYBOT_STORE`, else `REDIS_URL`.
fn store_spec() -> Option<String> {
    std::env::var("RAYBOT_STORE")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| std::env::var("REDIS_URL").ok().filter(|s| !s.trim().is_empty()))
}

async fn status(json: bool) -> anyhow::Result<u8> {
    let store = raybot::store::open(store_spec().as_deref()).context("opening the state store")?;
    let list = store.summaries().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else if list.is_empty() {
        println!("No releases in the store.");
    } else {
        for r in list {
            println!("{}  {} → {}  {}  (by {}, {} events)", r.id, r.version, r.env, r.status, r.started_by, r.events);
        }
    }
    Ok(0)
}
