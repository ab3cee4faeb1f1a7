//! What each `raybot` subcommand does, over the library: `main.rs` parses the arguments and calls
//! these (`raybot demo` is [`crate::demo::run`], `raybot sample-app` is [`crate::sample_app`]).
//! Each returns the process's exit code.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use crate::chat::Delivery;
use crate::chat::local::{LineReader, LineResult, LocalChat};
use crate::config::Config;
use crate::driver::Driver;
use crate::engine::{Platform, ray_error};
use crate::metrics::Metrics;
use crate::protocol::Catalog;

/// The protocols in `dir`, else `protocols/` when it holds a pipeline, else the embedded ones.
pub fn load_catalog(dir: Option<&Path>) -> anyhow::Result<Catalog> {
    let result = match dir {
        Some(d) => Catalog::load_dir(d),
        None if Path::new("protocols/pipeline.yaml").exists() => Catalog::load_dir(Path::new("protocols")),
        None => Catalog::embedded(),
    };
    result.map_err(|errs| {
        anyhow::anyhow!("invalid protocols:\n{}", errs.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))
    })
}

/// The configuration in `dir`, else `config/` when it holds `raybot.toml`, else the embedded one.
pub fn load_config(dir: Option<&Path>) -> anyhow::Result<Config> {
    let cfg = match dir {
        Some(d) => Config::load(d)?,
        None if Path::new("config/raybot.toml").exists() => Config::load(Path::new("config"))?,
        None => Config::embedded(&std::env::current_dir()?)?,
    };
    Ok(cfg)
}

/// `raybot protocols validate [DIR]`: loads and checks the protocols (and warns of gates a
/// protocol outside the pipeline could not measure); 1 when they are invalid.
pub fn protocols_validate(dir: Option<&Path>, target: Option<PathBuf>) -> anyhow::Result<u8> {
    let target = target.or_else(|| dir.map(Path::to_path_buf));
    let result = match &target {
        Some(d) => Catalog::load_dir(d),
        None if Path::new("protocols/pipeline.yaml").exists() => Catalog::load_dir(Path::new("protocols")),
        None => Catalog::embedded(),
    };
    match result {
        Ok(c) => {
            // Protocols of default flows were checked on loading; the others are reported here.
            let flows_of = |p: &crate::protocol::model::Protocol| -> Vec<&str> {
                let pid = c.get(&p.id).map(|x| x.id.as_str());
                c.pipeline
                    .flows
                    .iter()
                    .filter(|f| f.protocols.iter().any(|id| c.get(id).map(|x| x.id.as_str()) == pid))
                    .map(|f| f.name.as_str())
                    .collect()
            };
            for p in &c.protocols {
                let flows = flows_of(p);
                if flows.iter().any(|f| c.pipeline.is_default(f)) {
                    continue;
                }
                let why = if flows.is_empty() {
                    "not in the pipeline, so not run".to_string()
                } else {
                    format!(
                        "only in flow {}, which no target runs by default: a release with `--flow` halts at this gate unless it is waived",
                        flows.join(", ")
                    )
                };
                for w in crate::protocol::unmeasurable_gates(&format!("protocol {}", p.id), p) {
                    println!("warning ({why}): {w}");
                }
            }
            if c.pipeline.from_targets {
                println!(
                    "note: the pipeline uses the earlier `targets:` form; each target is a flow named after it (see README, Configuration)."
                );
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

/// `raybot protocols list`: each protocol with its phases, steps and gates, and the pipeline.
pub fn protocols_list(dir: Option<&Path>) -> anyhow::Result<u8> {
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
    for f in &c.pipeline.flows {
        let defaults: Vec<&str> =
            c.pipeline.defaults.iter().filter(|(_, flow)| **flow == f.name).map(|(env, _)| env.as_str()).collect();
        let default =
            if defaults.is_empty() { String::new() } else { format!("  (default for {})", defaults.join(", ")) };
        println!("flow {}: {}{default}", f.name, f.protocols.join(" → "));
    }
    for (env, flow) in &c.pipeline.defaults {
        println!("default {env}: {flow}");
    }
    Ok(0)
}

/// `raybot protocols show ID`: one protocol as raybot runs it.
pub fn protocols_show(dir: Option<&Path>, id: &str) -> anyhow::Result<u8> {
    let c = load_catalog(dir)?;
    let Some(p) = c.get(id) else {
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

/// `raybot chat`: the local war room on stdin and stdout, until the input ends.
pub async fn chat(
    config: Option<&Path>,
    protocols: Option<&Path>,
    user: String,
    artifacts: PathBuf,
) -> anyhow::Result<u8> {
    let cfg = load_config(config)?;
    let catalog = load_catalog(protocols)?;
    let store = crate::store::open(store_spec().as_deref()).context("opening the state store")?;
    let session = format!("{:x}", crate::clock::now().0);
    let local = Arc::new(LocalChat::new(Box::new(std::io::stdout()), &session));
    let artifacts = std::path::absolute(&artifacts)?;
    let driver = Driver::new(cfg, catalog, store, local.clone(), artifacts, Platform::Local, Arc::new(Metrics::new()));
    let driver = crate::driver::run::start(driver).await.context("resuming releases from the store")?;
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
            Err(not_utf8) => local.say(&crate::engine::ray_error(not_utf8)),
        }
    }
    // End of input: let automated work finish until the release needs people or has ended.
    driver.settle().await?;
    driver.close().await;
    Ok(0)
}

/// `raybot serve`: the Slack and Discord endpoints, `/healthz` and `/metrics`.
pub async fn serve(config: Option<&Path>, protocols: Option<&Path>, listen: Option<String>) -> anyhow::Result<u8> {
    let addr = listen
        .or_else(|| std::env::var("RAYBOT_LISTEN").ok())
        .or_else(|| std::env::var("PORT").ok().map(|p| format!("0.0.0.0:{p}")))
        .unwrap_or_else(|| "0.0.0.0:8080".to_string());
    let ctx = crate::serve::ServeContext {
        config: load_config(config)?,
        catalog: load_catalog(protocols)?,
        store: crate::store::open(store_spec().as_deref()).context("opening the state store")?,
        metrics: Arc::new(Metrics::new()),
        artifacts: std::path::absolute(
            std::env::var("RAYBOT_ARTIFACTS").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(".artifacts")),
        )?,
        drain: Default::default(),
    };
    crate::serve::run(ctx, &addr).await
}

/// `RAYBOT_STORE`, else `REDIS_URL`.
pub fn store_spec() -> Option<String> {
    std::env::var("RAYBOT_STORE")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| std::env::var("REDIS_URL").ok().filter(|s| !s.trim().is_empty()))
}

/// `raybot status` / `raybot history`: the releases in the store, newest first.
pub async fn status(json: bool) -> anyhow::Result<u8> {
    let store = crate::store::open(store_spec().as_deref()).context("opening the state store")?;
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
