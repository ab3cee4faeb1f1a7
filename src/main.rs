//! The `raybot` binary: parses the command line and calls the library (`raybot::app` holds what
//! each subcommand does).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use raybot::app;
use raybot::demo::{DemoOptions, Failure};
use raybot::engine::{Strategy, ray_error};

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
    /// Play release v1.2 through Protocols 10 and 11 (or another flow) against a local sample service.
    Demo {
        /// Flow of pipeline.yaml to run, e.g. standard, automation [default: production's default flow].
        #[arg(long)]
        flow: Option<String>,
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
    /// List the protocols, the flows and each target's default flow.
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

async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Cmd::Demo { flow, strategy, fail, artifacts } => {
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
                flow,
                config: cli.config.clone(),
                protocols: cli.protocols.clone(),
            };
            let outcome = raybot::demo::run(opts, Box::new(std::io::stdout())).await?;
            Ok(outcome.exit_code as u8)
        }
        Cmd::Chat { user, artifacts } => {
            app::chat(cli.config.as_deref(), cli.protocols.as_deref(), user, artifacts).await
        }
        Cmd::Protocols { action } => {
            let dir = cli.protocols.as_deref();
            match action {
                ProtocolsCmd::Validate { dir: target } => app::protocols_validate(dir, target),
                ProtocolsCmd::List => app::protocols_list(dir),
                ProtocolsCmd::Show { id } => app::protocols_show(dir, &id),
            }
        }
        Cmd::Serve { listen } => app::serve(cli.config.as_deref(), cli.protocols.as_deref(), listen).await,
        Cmd::Status { json } => app::status(json).await,
        Cmd::History => app::status(false).await,
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
