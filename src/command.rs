//! The chat command grammar, shared by every platform: `/ray <verb> …`.
//!
//! Parsing is pure and total: any text becomes a [`Command`] or a one-line error that says what was
//! wrong and what to type instead. Nothing here touches state, and no argument ever reaches a shell
//! (jobs run argv lists); versions, environments and gate names are still held to strict character
//! sets so that a typo or an injection attempt is refused early and visibly.

use crate::engine::valid_version;
use crate::engine::{ReleaseCommand, Strategy};

/// A parsed `/ray` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/ray deploy <version> [to <env>] [--flow <flow>] [--strategy …]`: start a release.
    Deploy {
        /// Version to release, e.g. `v1.2` (letters, digits, `.`, `_`, `-`; at most 64).
        version: String,
        /// Target environment; `production` when omitted.
        env: Option<String>,
        /// Flow of `pipeline.yaml` to run (lowercase letters, digits, `-`, `_`; at most 40); the
        /// target's default flow when omitted. Whether it exists is the catalog's to say.
        flow: Option<String>,
        /// Rollout strategy; blue/green when omitted.
        strategy: Option<Strategy>,
    },
    /// A command for the running release (ack, approve, reject, waive, retry, rollback, abort).
    Release(ReleaseCommand),
    /// `/ray status [<version>]`: where the running releases (or every release of a version) stand.
    Status {
        /// Only releases of this version that this process knows, finished ones included.
        version: Option<String>,
    },
    /// `/ray history`: the ten most recent releases from the store.
    History,
    /// `/ray protocols`: the loaded protocols and which ones each target runs.
    Protocols,
    /// `/ray help`: the command reference.
    Help,
}

impl std::fmt::Display for Command {
    /// The command as typed in its canonical form, e.g. `/ray deploy v1.2 to staging --strategy canary`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tail = |v: &Option<String>| v.as_deref().map(|v| format!(" {v}")).unwrap_or_default();
        match self {
            Command::Deploy { version, env, flow, strategy } => {
                write!(f, "/ray deploy {version}")?;
                if let Some(e) = env {
                    write!(f, " to {e}")?;
                }
                if let Some(fl) = flow {
                    write!(f, " --flow {fl}")?;
                }
                if let Some(s) = strategy {
                    write!(f, " --strategy {}", s.as_str())?;
                }
                Ok(())
            }
            Command::Release(rc) => match rc {
                ReleaseCommand::Ack => write!(f, "/ray ack"),
                ReleaseCommand::Approve { comment } => write!(f, "/ray approve{}", tail(comment)),
                ReleaseCommand::Reject { reason } => write!(f, "/ray reject {reason}"),
                ReleaseCommand::Waive { gate, justification } => write!(f, "/ray waive {gate} {justification}"),
                ReleaseCommand::Retry => write!(f, "/ray retry"),
                ReleaseCommand::Rollback { reason } => write!(f, "/ray rollback{}", tail(reason)),
                ReleaseCommand::Abort { reason } => write!(f, "/ray abort{}", tail(reason)),
                ReleaseCommand::Status => write!(f, "/ray status"),
            },
            Command::Status { version } => write!(f, "/ray status{}", tail(version)),
            Command::History => write!(f, "/ray history"),
            Command::Protocols => write!(f, "/ray protocols"),
            Command::Help => write!(f, "/ray help"),
        }
    }
}

impl Command {
    /// Whether the command only reads (answered without any write to the store).
    pub fn is_read_only(&self) -> bool {
        matches!(self, Command::Status { .. } | Command::History | Command::Protocols | Command::Help)
    }
}

/// Usage line of `/ray deploy`, quoted in its error messages.
pub const DEPLOY_USAGE: &str = "/ray deploy <version> [to <env>] [--flow <flow>] [--strategy bluegreen|canary|rolling]";

/// The command reference (`/ray help`).
pub const HELP: &str = "\
/ray deploy <version> [to <env>] [--flow <flow>] [--strategy bluegreen|canary|rolling] — start a release (default: production, the target's default flow, bluegreen; `/ray protocols` lists the flows)
/ray status [<version>] — where the release stands
/ray ack — acknowledge the change freeze (or react ✅ on the freeze message)
/ray approve [comment] — approve the go/no-go request (or click Approve)
/ray reject <reason> — reject the go/no-go request; the release stops
/ray waive <gate> <justification> — pass a failed gate on your responsibility (recorded)
/ray retry — run the halted step or phase again
/ray rollback [reason] — restore the previous version
/ray abort [reason] — stop a release that has not touched production
/ray history — recent releases
/ray protocols — the protocols raybot runs
/ray help — this list";

const VERBS: &str = "deploy, status, ack, approve, reject, waive, retry, rollback, abort, history, protocols, help";

fn is_token(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn free_text(words: &[&str]) -> Result<Option<String>, String> {
    if words.is_empty() {
        return Ok(None);
    }
    let text = words.join(" ");
    if text.chars().count() > 500 {
        return Err("text is longer than 500 characters".into());
    }
    if text.chars().any(|c| c.is_control()) {
        return Err("text contains control characters".into());
    }
    Ok(Some(text))
}

/// `text` as it may be quoted in an answer: on one line, whatever it holds. Control characters
/// (newlines, carriage returns, escape sequences, NUL…) and Unicode line and paragraph separators
/// are shown escaped (`\n`, `\u{1b}`), so a value cannot break a refusal into two lines or make a
/// line of its own look like raybot's. Everything else is kept as typed.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The first `n` characters of a user's `text`, quotable ([`one_line`]).
fn quote(text: &str, n: usize) -> String {
    one_line(&truncate(text, n))
}

fn bad_flow(f: &str) -> String {
    format!(
        "`{}` is not a flow name (lowercase letters, digits, `-`, `_`; at most 40). `/ray protocols` lists the flows. Usage: `{DEPLOY_USAGE}`.",
        quote(f, 50)
    )
}

fn flow_value(f: &str) -> Result<String, String> {
    if crate::protocol::model::flow_name_ok(f) { Ok(f.to_string()) } else { Err(bad_flow(f)) }
}

fn bad_version(v: &str) -> String {
    let v = quote(v, 70);
    format!(
        "`{v}` is not a valid version: use letters, digits, `.`, `_` or `-` (at most 64 characters), e.g. `/ray deploy v1.2`."
    )
}

/// Parses the text of a chat command, with or without the leading `/ray`.
pub fn parse(text: &str) -> Result<Command, String> {
    let text = text.trim();
    let text = match text.strip_prefix("/ray") {
        Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => rest.trim_start(),
        Some(_) => return Err(format!("unknown command `{}`: commands start with `/ray `.", quote(text, 40))),
        None => text,
    };
    let words: Vec<&str> = text.split_whitespace().collect();
    let Some((verb, args)) = words.split_first() else {
        return Err("missing command. Type `/ray help` for the list.".into());
    };
    let verb_lc = verb.to_lowercase();
    match verb_lc.as_str() {
        "deploy" => parse_deploy(args),
        "status" => match args {
            [] => Ok(Command::Status { version: None }),
            [v] if valid_version(v) => Ok(Command::Status { version: Some((*v).to_string()) }),
            [v] => Err(bad_version(v)),
            _ => Err("`/ray status` takes at most a version: `/ray status [<version>]`.".into()),
        },
        "ack" | "acknowledge" => no_args(args, "ack").map(|_| Command::Release(ReleaseCommand::Ack)),
        "approve" => Ok(Command::Release(ReleaseCommand::Approve {
            comment: free_text(args).map_err(|e| format!("approval comment: {e}"))?,
        })),
        "reject" => match free_text(args).map_err(|e| format!("reject reason: {e}"))? {
            Some(reason) => Ok(Command::Release(ReleaseCommand::Reject { reason })),
            None => Err("a rejection needs a reason: `/ray reject <reason>`.".into()),
        },
        "waive" => match args {
            [gate, rest @ ..] if !rest.is_empty() => {
                if !is_token(&gate.to_lowercase(), 40) {
                    return Err(format!(
                        "`{}` is not a gate id (letters, digits, `-`, `_`), e.g. `/ray waive intake <justification>`.",
                        quote(gate, 40)
                    ));
                }
                let justification = free_text(rest).map_err(|e| format!("justification: {e}"))?.unwrap_or_default();
                Ok(Command::Release(ReleaseCommand::Waive { gate: gate.to_lowercase(), justification }))
            }
            _ => Err("a waiver needs a gate and a justification: `/ray waive <gate> <justification>`.".into()),
        },
        "retry" => no_args(args, "retry").map(|_| Command::Release(ReleaseCommand::Retry)),
        "rollback" => Ok(Command::Release(ReleaseCommand::Rollback {
            reason: free_text(args).map_err(|e| format!("rollback reason: {e}"))?,
        })),
        "abort" => Ok(Command::Release(ReleaseCommand::Abort {
            reason: free_text(args).map_err(|e| format!("abort reason: {e}"))?,
        })),
        "history" => no_args(args, "history").map(|_| Command::History),
        "protocols" => no_args(args, "protocols").map(|_| Command::Protocols),
        "help" => Ok(Command::Help),
        _ => Err(format!("unknown command `{}`. Commands: {VERBS}. Type `/ray help` for usage.", quote(verb, 40))),
    }
}

/// A command from named option values, as Discord's typed slash-command options carry them
/// (`verb` is the subcommand, `option(name)` a value): the same checks as the text grammar, with
/// no text in between — a value can only ever be the one field it was given for.
pub fn from_options(verb: &str, option: &dyn Fn(&str) -> Option<String>) -> Result<Command, String> {
    let value = |name: &str| option(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let text = |name: &str, what: &str| -> Result<Option<String>, String> {
        match value(name) {
            Some(v) => free_text(&v.split_whitespace().collect::<Vec<_>>()).map_err(|e| format!("{what}: {e}")),
            None => Ok(None),
        }
    };
    let release = |rc: ReleaseCommand| Ok(Command::Release(rc));
    match verb {
        "deploy" => {
            let version = value("version").ok_or_else(|| format!("missing version. Usage: `{DEPLOY_USAGE}`."))?;
            if !valid_version(&version) {
                return Err(bad_version(&version));
            }
            let env = match value("env") {
                Some(e) if !is_token(&e, 32) => {
                    return Err(format!(
                        "`{}` is not an environment name (lowercase letters, digits, `-`, `_`). Usage: `{DEPLOY_USAGE}`.",
                        quote(&e, 40)
                    ));
                }
                e => e,
            };
            let flow = value("flow").map(|f| flow_value(&f)).transpose()?;
            let strategy = match value("strategy") {
                Some(s) => Some(Strategy::parse(&s).ok_or_else(|| {
                    format!("unknown strategy `{}`: use bluegreen, canary or rolling.", quote(&s, 40))
                })?),
                None => None,
            };
            Ok(Command::Deploy { version, env, flow, strategy })
        }
        "status" => match value("version") {
            None => Ok(Command::Status { version: None }),
            Some(v) if valid_version(&v) => Ok(Command::Status { version: Some(v) }),
            Some(v) => Err(bad_version(&v)),
        },
        "ack" | "acknowledge" => release(ReleaseCommand::Ack),
        "approve" => release(ReleaseCommand::Approve { comment: text("comment", "approval comment")? }),
        "reject" => match text("reason", "reject reason")? {
            Some(reason) => release(ReleaseCommand::Reject { reason }),
            None => Err("a rejection needs a reason: `/ray reject <reason>`.".into()),
        },
        "waive" => {
            let (Some(gate), Some(justification)) = (value("gate"), text("justification", "justification")?) else {
                return Err("a waiver needs a gate and a justification: `/ray waive <gate> <justification>`.".into());
            };
            if !is_token(&gate.to_lowercase(), 40) {
                return Err(format!(
                    "`{}` is not a gate id (letters, digits, `-`, `_`), e.g. `/ray waive intake <justification>`.",
                    quote(&gate, 40)
                ));
            }
            release(ReleaseCommand::Waive { gate: gate.to_lowercase(), justification })
        }
        "retry" => release(ReleaseCommand::Retry),
        "rollback" => release(ReleaseCommand::Rollback { reason: text("reason", "rollback reason")? }),
        "abort" => release(ReleaseCommand::Abort { reason: text("reason", "abort reason")? }),
        "history" => Ok(Command::History),
        "protocols" => Ok(Command::Protocols),
        "help" => Ok(Command::Help),
        other => Err(format!("unknown command `{}`. Commands: {VERBS}. Type `/ray help` for usage.", quote(other, 40))),
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn no_args(args: &[&str], verb: &str) -> Result<(), String> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(format!("`/ray {verb}` takes no arguments (got `{}`).", quote(&args.join(" "), 60)))
    }
}

fn parse_deploy(args: &[&str]) -> Result<Command, String> {
    let Some((version, mut rest)) = args.split_first() else {
        return Err(format!("missing version. Usage: `{DEPLOY_USAGE}`."));
    };
    if !valid_version(version) {
        return Err(bad_version(version));
    }
    let mut env = None;
    let mut flow: Option<String> = None;
    let mut strategy = None;
    let mut set_flow = |f: &str| -> Result<(), String> {
        if flow.is_some() {
            return Err(format!("`--flow` is given twice. Usage: `{DEPLOY_USAGE}`."));
        }
        flow = Some(flow_value(f)?);
        Ok(())
    };
    while let Some((first, tail)) = rest.split_first() {
        match *first {
            "to" => {
                let Some((e, tail)) = tail.split_first() else {
                    return Err(format!("`to` needs an environment. Usage: `{DEPLOY_USAGE}`."));
                };
                if !is_token(e, 32) {
                    return Err(format!(
                        "`{}` is not an environment name (lowercase letters, digits, `-`, `_`). Usage: `{DEPLOY_USAGE}`.",
                        quote(e, 40)
                    ));
                }
                env = Some((*e).to_string());
                rest = tail;
            }
            "--strategy" => {
                let Some((s, tail)) = tail.split_first() else {
                    return Err(format!("`--strategy` needs bluegreen, canary or rolling. Usage: `{DEPLOY_USAGE}`."));
                };
                strategy = Some(Strategy::parse(s).ok_or_else(|| {
                    format!("unknown strategy `{}`: use bluegreen, canary or rolling.", quote(s, 40))
                })?);
                rest = tail;
            }
            "--flow" => {
                let Some((f, tail)) = tail.split_first() else {
                    return Err(format!(
                        "`--flow` needs a flow name (`/ray protocols` lists them). Usage: `{DEPLOY_USAGE}`."
                    ));
                };
                set_flow(f)?;
                rest = tail;
            }
            s if s.starts_with("--flow=") => {
                set_flow(&s["--flow=".len()..])?;
                rest = tail;
            }
            s if s.starts_with("--strategy=") => {
                let v = &s["--strategy=".len()..];
                strategy = Some(Strategy::parse(v).ok_or_else(|| {
                    format!("unknown strategy `{}`: use bluegreen, canary or rolling.", quote(v, 40))
                })?);
                rest = tail;
            }
            other => {
                return Err(format!("unexpected `{}` after the version. Usage: `{DEPLOY_USAGE}`.", quote(other, 40)));
            }
        }
    }
    Ok(Command::Deploy { version: (*version).to_string(), env, flow, strategy })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_forms() {
        assert_eq!(
            parse("/ray deploy v1.2").unwrap(),
            Command::Deploy { version: "v1.2".into(), env: None, flow: None, strategy: None }
        );
        assert_eq!(
            parse("deploy v1.2 to staging --strategy canary").unwrap(),
            Command::Deploy {
                version: "v1.2".into(),
                env: Some("staging".into()),
                flow: None,
                strategy: Some(Strategy::Canary)
            }
        );
        assert_eq!(
            parse("/ray deploy 2024.06.01-rc_1 --strategy=rolling").unwrap(),
            Command::Deploy {
                version: "2024.06.01-rc_1".into(),
                env: None,
                flow: None,
                strategy: Some(Strategy::Rolling)
            }
        );
    }

    #[test]
    fn deploy_with_a_flow() {
        let deploy = |env: Option<&str>, flow: &str, strategy: Option<Strategy>| Command::Deploy {
            version: "v1.2".into(),
            env: env.map(String::from),
            flow: Some(flow.into()),
            strategy,
        };
        assert_eq!(parse("/ray deploy v1.2 --flow automation").unwrap(), deploy(None, "automation", None));
        assert_eq!(parse("/ray deploy v1.2 --flow=standard").unwrap(), deploy(None, "standard", None));
        assert_eq!(
            parse("/ray deploy v1.2 to staging --flow release-and-deployment --strategy canary").unwrap(),
            deploy(Some("staging"), "release-and-deployment", Some(Strategy::Canary))
        );
        // Any order on input; one canonical order out.
        let c = parse("/ray deploy v1.2 --strategy=rolling --flow staging_rehearsal-2 to staging").unwrap();
        assert_eq!(c, deploy(Some("staging"), "staging_rehearsal-2", Some(Strategy::Rolling)));
        assert_eq!(c.to_string(), "/ray deploy v1.2 to staging --flow staging_rehearsal-2 --strategy rolling");
        // Whether the flow exists is the catalog's to say: any well-formed name parses.
        assert_eq!(parse("/ray deploy v1.2 --flow nope").unwrap(), deploy(None, "nope", None));
    }

    #[test]
    fn bad_flow_names_are_refused() {
        assert!(parse("/ray deploy v1.2 --flow").unwrap_err().starts_with("`--flow` needs a flow name"));
        assert!(parse("/ray deploy v1.2 --flow=").unwrap_err().starts_with("`` is not a flow name"));
        for bad in ["Standard", "std;rm", "$(reboot)", "a/b", "../x", "`x`", "flow|sh", "ünïcode"] {
            let err = parse(&format!("/ray deploy v1.2 --flow {bad}")).unwrap_err();
            assert!(err.starts_with(&format!("`{bad}` is not a flow name")), "{bad}: {err}");
            let err = parse(&format!("/ray deploy v1.2 --flow={bad}")).unwrap_err();
            assert!(err.starts_with(&format!("`{bad}` is not a flow name")), "{bad}: {err}");
        }
        let err = parse(&format!("/ray deploy v1.2 --flow {}", "a".repeat(41))).unwrap_err();
        assert!(err.contains("is not a flow name"), "{err}");
        assert!(parse(&format!("/ray deploy v1.2 --flow {}", "a".repeat(40))).is_ok());
        let err = parse("/ray deploy v1.2 --flow standard --flow automation").unwrap_err();
        assert!(err.starts_with("`--flow` is given twice"), "{err}");
        let err = parse("/ray deploy v1.2 --flow x\u{1b}[2J").unwrap_err();
        assert!(err.starts_with("`x\\u{1b}[2J` is not a flow name"), "{err}");
        assert_eq!(err.lines().count(), 1);
        // `--flow` eats exactly one word: what follows is grammar again, and must be valid.
        assert!(parse("/ray deploy v1.2 --flow standard && reboot").unwrap_err().contains("unexpected `&&`"));
    }

    #[test]
    fn flow_from_options() {
        let opts = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        assert_eq!(
            from_options("deploy", &opts(&[("version", "v1.2"), ("env", "staging"), ("flow", "automation")])).unwrap(),
            parse("/ray deploy v1.2 to staging --flow automation").unwrap()
        );
        // An empty option is no option.
        assert_eq!(
            from_options("deploy", &opts(&[("version", "v1.2"), ("flow", " ")])).unwrap(),
            parse("/ray deploy v1.2").unwrap()
        );
        // A value is only the flow: no grammar hides in it.
        let err =
            from_options("deploy", &opts(&[("version", "v1.2"), ("flow", "standard --strategy canary")])).unwrap_err();
        assert!(err.starts_with("`standard --strategy canary` is not a flow name"), "{err}");
        let err = from_options("deploy", &opts(&[("version", "v1.2"), ("flow", "std\n[RAY] Accepted.")])).unwrap_err();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("`std\\n[RAY] Accepted.` is not a flow name"), "{err}");
    }

    #[test]
    fn bad_input_is_named() {
        assert!(parse("/ray deploy").unwrap_err().contains("missing version"));
        assert!(parse("/ray deploy v1.2;rm -rf /").unwrap_err().contains("`v1.2;rm` is not a valid version"));
        assert!(parse("/ray deploy $(reboot)").unwrap_err().contains("not a valid version"));
        assert!(parse("/ray deploy v1.2 && echo hi").unwrap_err().contains("unexpected `&&`"));
        assert!(parse("/ray deploy v1.2 to prod;uction").unwrap_err().contains("not an environment name"));
        assert!(parse("/ray deploy v1.2 --strategy yolo").unwrap_err().contains("unknown strategy `yolo`"));
        assert!(parse(&format!("/ray deploy {}", "a".repeat(65))).unwrap_err().contains("at most 64"));
        assert!(parse("/ray dploy v1.2").unwrap_err().contains("unknown command `dploy`"));
        assert!(parse("/ray").unwrap_err().contains("missing command"));
        assert!(parse("/raydeploy v1.2").unwrap_err().contains("commands start with `/ray `"));
        assert!(parse("/ray reject").unwrap_err().contains("needs a reason"));
        assert!(parse("/ray waive intake").unwrap_err().contains("gate and a justification"));
        assert!(parse("/ray retry now").unwrap_err().contains("takes no arguments"));
    }

    #[test]
    fn quoted_input_stays_on_one_line() {
        assert_eq!(one_line("v1.2\n[RAY] Accepted."), "v1.2\\n[RAY] Accepted.");
        assert_eq!(one_line("a\r\u{1b}[31m\u{0}\u{85}\u{2028}b"), "a\\r\\u{1b}[31m\\u{0}\\u{85}\\u{2028}b");
        assert_eq!(one_line("v1.2 ✅ \"x\" \\"), "v1.2 ✅ \"x\" \\", "only control characters change");
        let err = parse("/ray deploy v1.2\u{1b}[2J").unwrap_err();
        assert!(err.starts_with("`v1.2\\u{1b}[2J` is not a valid version"), "{err}");
        let err = parse("/ray waive \u{7}gate because").unwrap_err();
        assert!(err.starts_with("`\\u{7}gate` is not a gate id"), "{err}");
    }

    /// The Discord command definition in `commands/` offers exactly the verbs the grammar knows.
    #[test]
    fn discord_command_data_matches_the_grammar() {
        let text = include_str!("../commands/discord-commands.json");
        let json: serde_json::Value = serde_json::from_str(text).unwrap();
        let subs: Vec<&str> =
            json[0]["options"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
        let verbs: Vec<&str> = VERBS.split(", ").collect();
        assert_eq!(subs, verbs);
        for verb in verbs {
            // Every verb parses (with its required arguments), none is "unknown".
            let line = match verb {
                "deploy" => "deploy v1.2",
                "reject" => "reject no",
                "waive" => "waive intake because we must",
                v => v,
            };
            assert!(parse(line).is_ok(), "{line}");
        }
        let manifest = include_str!("../commands/slack-app-manifest.yaml");
        assert!(manifest.contains("command: /ray") && manifest.contains("/slack/interactions"));
    }

    #[test]
    fn typed_options_make_the_same_commands_as_text_and_every_command_prints_as_it_parses() {
        let opts = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        assert_eq!(
            from_options("deploy", &opts(&[("version", "v1.2"), ("env", "staging"), ("strategy", "canary")])).unwrap(),
            parse("/ray deploy v1.2 to staging --strategy canary").unwrap()
        );
        // A value is only ever the field it was given for: no grammar hides in it.
        let err = from_options("deploy", &opts(&[("version", "v1.2 to staging")])).unwrap_err();
        assert!(err.starts_with("`v1.2 to staging` is not a valid version"), "{err}");
        let err = from_options("deploy", &opts(&[("version", "v1.2\n[RAY] Accepted.")])).unwrap_err();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(from_options("reject", &opts(&[])).unwrap_err().contains("needs a reason"));
        assert!(from_options("launch", &opts(&[])).unwrap_err().contains("unknown command `launch`"));
        for line in [
            "/ray deploy v1.2 to staging --strategy canary",
            "/ray deploy v1.2 to staging --flow automation --strategy canary",
            "/ray deploy v1.2 --flow release-and-deployment",
            "/ray status v1.2",
            "/ray ack",
            "/ray approve looks good",
            "/ray reject error budget",
            "/ray waive intake audit runs next week",
            "/ray retry",
            "/ray rollback",
            "/ray abort not today",
            "/ray history",
            "/ray protocols",
            "/ray help",
        ] {
            let c = parse(line).unwrap();
            assert_eq!(c.to_string(), line);
            assert_eq!(parse(&c.to_string()).unwrap(), c);
        }
    }

    #[test]
    fn release_commands() {
        assert_eq!(parse("/ray ack").unwrap(), Command::Release(ReleaseCommand::Ack));
        assert_eq!(
            parse("/ray approve looks good").unwrap(),
            Command::Release(ReleaseCommand::Approve { comment: Some("looks good".into()) })
        );
        assert_eq!(
            parse("/ray waive Intake upstream audit runs next week").unwrap(),
            Command::Release(ReleaseCommand::Waive {
                gate: "intake".into(),
                justification: "upstream audit runs next week".into()
            })
        );
    }
}
