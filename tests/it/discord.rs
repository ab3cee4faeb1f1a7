//! Discord: a real `raybot serve` process against the fake Discord of `tests/support/discord.rs`
//! (gateway events and REST), and the signed HTTP interactions endpoint.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use sha2::Digest;

use crate::discord_fake::{ALICE, APP, BOB, BOT, CAROL, CHANNEL, DAVE, ERIN, FakeDiscord, GUILD, MALLORY, Posted};
use crate::support::{RAYBOT, Workspace, release_dir};

const LONG: Duration = Duration::from_secs(90);
const SHORT: Duration = Duration::from_secs(15);

/// `raybot serve` in the workspace, talking to the fake; killed on drop.
pub(crate) struct Serve {
    pub(crate) child: Child,
    log: std::path::PathBuf,
    pub(crate) url: String,
    _store: tempfile::TempDir,
}

impl Serve {
    pub(crate) fn start(ws: &Workspace, fake: &FakeDiscord, env: &[(&str, &str)]) -> Serve {
        let port = raybot::demo::free_port_block(1).expect("port");
        let store = tempfile::tempdir().expect("store dir");
        let mut cmd = Command::new(RAYBOT);
        cmd.arg("serve")
            .current_dir(ws.path())
            .env("RAYBOT_LISTEN", format!("127.0.0.1:{port}"))
            .env("RAYBOT_STORE", format!("file://{}", store.path().display()))
            .env("RAYBOT_ARTIFACTS", ws.artifacts())
            .env("DISCORD_TOKEN", "fake-bot-token")
            .env("DISCORD_API_URL", &fake.api_url)
            .env_remove("DISCORD_PUBLIC_KEY")
            .env_remove("DISCORD_GATEWAY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .env("RAYBOT_LOG", "warn,raybot=info")
            .stderr(std::fs::File::create(ws.path().join("serve.log")).expect("serve.log"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("raybot serve starts");
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < SHORT, "raybot serve did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Serve { child, url, log: ws.path().join("serve.log"), _store: store }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("raybot serve log:\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
        }
    }
}

fn content(answer: &Value) -> &str {
    answer["body"]["data"]["content"].as_str().or(answer["body"]["content"].as_str()).unwrap_or("")
}

/// Dispatches `i` on the gateway and waits for its first answer (the callback); returns all answers.
fn interact(fake: &FakeDiscord, i: &Value) -> Vec<Value> {
    fake.dispatch("INTERACTION_CREATE", i.clone());
    fake.wait_answers(i, SHORT, |a| !a.is_empty())
}

/// The answer's callback is an ephemeral message (type 4, flags 64) containing `text`.
fn assert_ephemeral(answers: &[Value], text: &str) {
    let first = &answers[0];
    assert!(first["path"].as_str().unwrap().ends_with("/callback"), "{answers:#?}");
    assert_eq!(first["body"]["type"], 4, "{answers:#?}");
    assert_eq!(first["body"]["data"]["flags"], 64, "{answers:#?}");
    assert!(content(first).contains(text), "expected {text:?} in {answers:#?}");
}

fn button(message: &Posted, action: &str) -> String {
    let id = format!("ray:{action}:{}", message.id);
    let row = &message.components[0]["components"];
    assert!(row.as_array().unwrap().iter().any(|b| b["custom_id"] == id), "no {id} on {message:?}");
    id
}

#[test]
fn a_release_of_v1_2_runs_through_discord_alone() {
    let ws = Workspace::new();
    let fake = FakeDiscord::start();
    let _raybot = Serve::start(&ws, &fake, &[]);

    // Handshake: identify with the two intents, READY, /ray registered in the configured guild.
    let register = format!("/api/v10/applications/{APP}/guilds/{GUILD}/commands");
    fake.wait_for("command registration", SHORT, |f| f.requests().iter().any(|r| r.path == register));
    let reg = fake.requests().into_iter().find(|r| r.path == register).unwrap();
    assert_eq!(reg.method, "PUT");
    assert_eq!(reg.authorization, "Bot fake-bot-token");
    let file: Value = serde_json::from_str(include_str!("../../commands/discord-commands.json")).unwrap();
    assert_eq!(reg.body, file);
    let identify = fake.gateway_frames().into_iter().find(|f| f["op"] == 2).expect("identify");
    assert_eq!(identify["d"]["intents"], 1 | (1 << 10), "GUILDS | GUILD_MESSAGE_REACTIONS");
    assert_eq!(identify["d"]["token"], "<present>");

    // A command in another channel is refused to the person alone, naming the war room.
    let elsewhere = fake.command(ALICE, "200000000000000777", "deploy", &[("version", "v1.2")]);
    assert_ephemeral(
        &interact(&fake, &elsewhere),
        &format!("[RAY ERROR] raybot takes commands only in the war room, <#{CHANNEL}>"),
    );

    // The first post meets a 429: raybot's outbox waits retry_after, but the decision does not
    // wait for chat — the deploy is answered in full at once (type 4), not deferred.
    let messages_path = format!("/api/v10/channels/{CHANNEL}/messages");
    fake.rate_limit_next(&messages_path, 2.5);
    let deploy = fake.command(ALICE, CHANNEL, "deploy", &[("version", "v1.2"), ("strategy", "bluegreen")]);
    let sent = Instant::now();
    fake.dispatch("INTERACTION_CREATE", deploy.clone());
    let answers = fake.wait_answers(&deploy, SHORT, |a| !a.is_empty());
    let callback = fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/callback") && r.path.contains(deploy["id"].as_str().unwrap()))
        .unwrap();
    assert!(
        callback.at.duration_since(sent) < Duration::from_secs(1),
        "first answer after {:?}",
        callback.at.duration_since(sent)
    );
    assert_eq!(answers[0]["body"]["type"], 4, "{answers:#?}");
    assert_eq!(content(&answers[0]), "[RAY] `/ray deploy v1.2 --strategy bluegreen` accepted.");
    fake.wait_for("the first post after the 429", SHORT, |f| {
        f.requests().iter().filter(|r| r.method == "POST" && r.path == messages_path).count() >= 2
    });
    let posts: Vec<_> = fake.requests().into_iter().filter(|r| r.method == "POST" && r.path == messages_path).collect();
    assert_eq!(posts[0].status, 429);
    assert_eq!(posts[1].status, 200);
    assert!(posts[1].at.duration_since(posts[0].at) >= Duration::from_millis(2500), "retried too early");
    assert!(posts[0].at < callback.at + Duration::from_secs(1));
    // Announcements carry their identity: Discord refuses to create a second message with the
    // same nonce, so a post re-derived after a crash cannot show twice.
    let nonce = posts[1].body["nonce"].as_str().unwrap_or_default();
    assert_eq!(nonce.len(), 25, "{:#}", posts[1].body);
    assert_eq!(posts[1].body["enforce_nonce"], true, "{:#}", posts[1].body);
    assert_eq!(posts[0].body["nonce"], posts[1].body["nonce"], "the retry after the 429 is the same post");

    // Readiness review: Approve / Reject buttons naming the message; alice approves by command,
    // bob by button. Bob's click delivered twice counts once.
    let review = fake.wait_buttons("[APPROVAL REQUEST] Readiness review", LONG);
    let approve_review = button(&review, "approve");
    button(&review, "reject");
    assert_ephemeral(
        &interact(&fake, &fake.command(ALICE, CHANNEL, "approve", &[("comment", "evidence reviewed")])),
        "[RAY]",
    );
    let bob_click = fake.click(BOB, &review, &approve_review);
    assert_ephemeral(&interact(&fake, &bob_click), "[RAY]");
    fake.dispatch("INTERACTION_CREATE", bob_click.clone());
    let replayed = fake.wait_answers(&bob_click, SHORT, |a| a.len() >= 2);
    assert!(content(&replayed[1]).contains("Already received"), "{replayed:#?}");

    // The change freeze: raybot adds ✅ itself; its own reaction is not an acknowledgement, a
    // stranger's is refused in the channel, carol removes and adds hers again.
    let freeze = fake.wait_message("Change freeze in effect. All teams acknowledge?", LONG);
    let own = format!("/api/v10/channels/{CHANNEL}/messages/{}/reactions/✅/@me", freeze.id);
    fake.wait_for("raybot's own ✅", SHORT, |f| f.requests().iter().any(|r| r.method == "PUT" && r.path == own));
    let review_now = fake.messages().into_iter().find(|m| m.id == review.id).unwrap();
    assert_eq!(review_now.components, json!([]), "the decided request keeps its buttons: {review_now:?}");
    assert!(review_now.edits >= 2, "{review_now:?}");
    let react = |user: &str, emoji: &str, added: bool| {
        let (t, d) = fake.reaction(user, &freeze.id, emoji, added);
        fake.dispatch(&t, d);
    };
    react(BOT, "✅", true);
    assert_ephemeral(&interact(&fake, &fake.command(ALICE, CHANNEL, "ack", &[])), "[RAY]");
    react(BOB, "✅", true);
    react(MALLORY, "✅", true);
    react(CAROL, "✅", true);
    react(CAROL, "✅", false);
    react(CAROL, "✅", true);
    react(DAVE, "✅", true);
    fake.wait_message(&format!("[RAY ERROR] <@{MALLORY}> is not on the change-freeze list"), SHORT);
    assert!(!fake.transcript().contains(&format!("<@{MALLORY}> [RAY ERROR] <@{MALLORY}>")), "named once");
    assert_ephemeral(&interact(&fake, &fake.command(ERIN, CHANNEL, "ack", &[])), "[RAY]");
    fake.wait_message("Change freeze confirmed by all 5 stakeholders", LONG);
    assert!(!fake.transcript().contains(&format!("<@{BOT}> [RAY ERROR]")), "{}", fake.transcript());

    // Go/no-go: erin has no approver role and is refused, to her alone; bob and carol approve.
    let go = fake
        .wait_buttons("[APPROVAL REQUEST] All readiness gates passed. Approve production deployment? (yes/no)", LONG);
    let approve_go = button(&go, "approve");
    assert_ephemeral(
        &interact(&fake, &fake.click(ERIN, &go, &approve_go)),
        &format!("[RAY ERROR] <@{ERIN}> (stakeholder) may not approve"),
    );
    assert!(!fake.transcript().contains("may not approve"), "a refusal went to the channel");
    assert_ephemeral(
        &interact(&fake, &fake.command(MALLORY, CHANNEL, "approve", &[])),
        &format!("[RAY ERROR] <@{MALLORY}> is not in config/release-approvers.yaml, so cannot approve releases."),
    );
    assert_ephemeral(&interact(&fake, &fake.click(BOB, &go, &approve_go)), "[RAY]");
    assert_ephemeral(
        &interact(&fake, &fake.command(CAROL, CHANNEL, "approve", &[("comment", "monitoring ready")])),
        "[RAY]",
    );

    fake.wait_message("v1.2 released to production", Duration::from_secs(180));
    let transcript = fake.transcript();
    for expected in
        ["[MASTER RAY™ | PHASE 1 START]", "Production deployment 50%", "Production deployment 100% complete", "PASS"]
    {
        assert!(transcript.contains(expected), "missing {expected:?}:\n{transcript}");
    }
    // One live status message, edited as the release went on, to its end.
    fake.wait_for("the status message to say released", Duration::from_secs(10), |f| {
        f.messages().iter().any(|m| m.content.starts_with("[RAY STATUS]") && m.content.contains(": released."))
    });
    let status: Vec<Posted> = fake.messages().into_iter().filter(|m| m.content.starts_with("[RAY STATUS]")).collect();
    assert_eq!(status.len(), 1, "{status:?}");
    assert!(status[0].edits > 3, "{status:?}");
    let go_now = fake.messages().into_iter().find(|m| m.id == go.id).unwrap();
    assert_eq!(go_now.components, json!([]), "{go_now:?}");
    assert!(go_now.content.contains(&format!("<@{CAROL}>")), "the decided request names who decided: {go_now:?}");
    assert_eq!(ws.serving(ws.production_port), "v1.2");

    let dir = release_dir(&ws.artifacts());
    let freeze_doc = std::fs::read_to_string(dir.join("deployment/change-freeze-confirmation.md")).unwrap();
    assert!(freeze_doc.contains("| reaction |") && freeze_doc.contains("| command |"), "{freeze_doc}");
    assert!(freeze_doc.contains(CAROL) && !freeze_doc.contains(MALLORY), "{freeze_doc}");
    assert!(dir.join("deployment/DEPLOYMENT-EVIDENCE.zip").is_file());
    let log = std::fs::read_to_string(dir.join("deployment/production-deployment-run.log")).unwrap();
    assert_eq!(log.matches("--percent 100").count(), 1, "the production deploy ran more than once:\n{log}");

    // People are named as Discord shows them: the deployment window mentions the on-call people,
    // evidence gives their name and Discord id, and no message, edit, answer or evidence file
    // shows a bare id.
    assert!(transcript.contains(&format!("on-call: SRE (<@{CAROL}>), Product (<@{BOB}>).")), "{transcript}");
    let report = std::fs::read_to_string(dir.join("deployment/DEPLOYMENT-REPORT.md")).unwrap();
    assert!(report.contains(&format!("- Started by: Alice Example (discord {ALICE})")), "{report}");
    let said: Vec<String> = fake
        .requests()
        .iter()
        .filter_map(|r| r.body.get("content").or_else(|| r.body.pointer("/data/content")))
        .filter_map(|c| c.as_str().map(str::to_string))
        .chain(fake.messages().into_iter().map(|m| m.content))
        .collect();
    assert!(said.len() > 20, "{said:?}");
    crate::support::assert_no_bare_ids(
        &said,
        &dir,
        raybot::engine::Platform::Discord,
        &[ALICE, BOB, CAROL, DAVE, ERIN, MALLORY],
    );

    // The gateway kept its heartbeat.
    assert!(fake.heartbeat_acks() >= 1);
}

/// A real Ed25519 key pair (seeded from the clock and pid, so each run differs).
pub(crate) fn keypair() -> SigningKey {
    let seed = sha2::Sha256::digest(format!("{:?}{}", SystemTime::now(), std::process::id()));
    SigningKey::from_bytes(&seed.into())
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// POSTs `body` to the endpoint with the given signature headers; returns status and JSON.
pub(crate) fn post(fake: &FakeDiscord, url: &str, body: &str, sig: Option<String>, ts: Option<String>) -> (u16, Value) {
    fake.block_on(async {
        // Idle connections go before raybot's 5 s request-head limit closes them.
        let client = reqwest::Client::builder().no_proxy().pool_idle_timeout(Duration::from_secs(2)).build().unwrap();
        let mut req = client.post(format!("{url}/discord/interactions")).header("content-type", "application/json");
        if let Some(s) = sig {
            req = req.header("X-Signature-Ed25519", s);
        }
        if let Some(t) = ts {
            req = req.header("X-Signature-Timestamp", t);
        }
        let res = req.body(body.to_string()).send().await.expect("endpoint answers");
        let status = res.status().as_u16();
        (status, res.json::<Value>().await.unwrap_or(Value::Null))
    })
}

pub(crate) fn signed(fake: &FakeDiscord, url: &str, key: &SigningKey, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let ts = now_secs().to_string();
    let sig = hex::encode(key.sign(format!("{ts}{body}").as_bytes()).to_bytes());
    post(fake, url, &body, Some(sig), Some(ts))
}

#[test]
fn the_http_endpoint_verifies_signatures_and_answers_commands_and_clicks() {
    let ws = Workspace::new();
    let fake = FakeDiscord::start();
    let key = keypair();
    let public = hex::encode(key.verifying_key().to_bytes());
    let raybot = Serve::start(&ws, &fake, &[("DISCORD_PUBLIC_KEY", &public), ("DISCORD_GATEWAY", "off")]);
    let url = raybot.url.clone();
    let ping =
        json!({ "id": "500000000000000900", "application_id": APP, "type": 1, "token": "tok-ping", "version": 1 });

    // PING → PONG, only with a valid, fresh signature.
    assert_eq!(signed(&fake, &url, &key, &ping), (200, json!({ "type": 1 })));
    let body = ping.to_string();
    let ts = now_secs().to_string();
    let forged = hex::encode(keypair_other().sign(format!("{ts}{body}").as_bytes()).to_bytes());
    assert_eq!(post(&fake, &url, &body, Some(forged), Some(ts.clone())).0, 401, "forged signature");
    let stale_ts = (now_secs() - 301).to_string();
    let stale = hex::encode(key.sign(format!("{stale_ts}{body}").as_bytes()).to_bytes());
    assert_eq!(post(&fake, &url, &body, Some(stale), Some(stale_ts)).0, 401, "stale timestamp");
    let good = hex::encode(key.sign(format!("{ts}{body}").as_bytes()).to_bytes());
    assert_eq!(post(&fake, &url, &body.replace("tok-ping", "tok-pong"), Some(good), Some(ts)).0, 401, "tampered body");
    assert_eq!(post(&fake, &url, &body, None, None).0, 401, "unsigned");

    // Commands answer in the HTTP response, ephemeral; the release posts through REST.
    let (status, help) = signed(&fake, &url, &key, &fake.command(BOB, CHANNEL, "help", &[]));
    assert_eq!(status, 200);
    assert_eq!((help["type"].clone(), help["data"]["flags"].clone()), (json!(4), json!(64)));
    assert!(help["data"]["content"].as_str().unwrap().contains("/ray deploy <version>"), "{help}");
    let (_, bad) =
        signed(&fake, &url, &key, &fake.command(ALICE, CHANNEL, "deploy", &[("version", "v1.2 to staging")]));
    // The option is the version and only the version: no grammar hides in it.
    assert!(
        bad["data"]["content"].as_str().unwrap().starts_with("[RAY ERROR] `v1.2 to staging` is not a valid version"),
        "{bad}"
    );
    let (_, deployed) = signed(&fake, &url, &key, &fake.command(ALICE, CHANNEL, "deploy", &[("version", "v1.2")]));
    let text = deployed["data"]["content"].as_str().unwrap_or_default().to_string();
    assert!(deployed["type"] == 5 || text == "[RAY] `/ray deploy v1.2` accepted.", "{deployed}");

    // A click from someone without an approver role is refused to them alone.
    let review = fake.wait_buttons("[APPROVAL REQUEST] Readiness review", LONG);
    let approve = button(&review, "approve");
    let (_, refused) = signed(&fake, &url, &key, &fake.click(ERIN, &review, &approve));
    assert_eq!(refused["data"]["flags"], 64, "{refused}");
    assert!(refused["data"]["content"].as_str().unwrap().contains("[RAY ERROR]"), "{refused}");
    assert!(refused["data"]["content"].as_str().unwrap().contains("may not approve"), "{refused}");
    assert!(!fake.transcript().contains("may not approve"));

    // A click delivered twice counts once.
    let click = fake.click(BOB, &review, &approve);
    let (_, first) = signed(&fake, &url, &key, &click);
    let (_, again) = signed(&fake, &url, &key, &click);
    assert!(!first["data"]["content"].as_str().unwrap().contains("Already"), "{first}");
    assert!(again["data"]["content"].as_str().unwrap().contains("Already received"), "{again}");
    assert!(fake.gateway_frames().is_empty(), "DISCORD_GATEWAY=off still connected");
}

fn keypair_other() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

/// The fake's payloads are what serenity reads (a wrong shape would be dropped silently by the bot).
#[test]
fn fake_payloads_deserialize_as_discord_events() {
    let fake = FakeDiscord::start();
    let cmd = fake.command(ALICE, CHANNEL, "deploy", &[("version", "v1.2"), ("env", "staging")]);
    let i: serenity::model::application::Interaction = serde_json::from_value(cmd.clone()).unwrap();
    let serenity::model::application::Interaction::Command(c) = i else { panic!("not a command") };
    let command = raybot::chat::discord::ingress::command(&c).unwrap();
    assert_eq!(command, raybot::command::parse("/ray deploy v1.2 to staging").unwrap());
    assert_eq!(c.user.id.to_string(), ALICE);
    let msg = Posted { id: "600000000000000001".into(), content: "x".into(), components: json!([]), edits: 0 };
    let click: serenity::model::application::Interaction =
        serde_json::from_value(fake.click(BOB, &msg, "ray:approve:600000000000000001")).unwrap();
    assert!(matches!(click, serenity::model::application::Interaction::Component(_)));
    for added in [true, false] {
        let (_, d) = fake.reaction(CAROL, "600000000000000001", "✅", added);
        let r: serenity::model::channel::Reaction = serde_json::from_value(d).unwrap();
        assert_eq!(r.user_id.unwrap().to_string(), CAROL);
    }
}

/// Redis stops answering while three people deploy: Discord gets a first answer to each within
/// its three seconds — the answer itself, or a deferral (type 5) whose answer raybot edits into
/// the original response once the store has refused it. No answer is left "thinking".
#[test]
fn every_deferred_answer_is_edited_in_when_the_store_is_slow() {
    let redis = crate::redis_server::RedisServer::start();
    let ws = Workspace::new();
    let fake = FakeDiscord::start();
    let store = redis.url();
    let _raybot = Serve::start(&ws, &fake, &[("RAYBOT_STORE", store.as_str())]);
    let register = format!("/api/v10/applications/{APP}/guilds/{GUILD}/commands");
    fake.wait_for("command registration", SHORT, |f| f.requests().iter().any(|r| r.path == register));
    assert_ephemeral(&interact(&fake, &fake.command(ALICE, CHANNEL, "status", &[])), "[RAY] No release is running.");

    redis.pause();
    let deploys: Vec<Value> = [(ALICE, "v1.2"), (BOB, "v1.3"), (CAROL, "v1.4")]
        .iter()
        .map(|(user, version)| fake.command(user, CHANNEL, "deploy", &[("version", version)]))
        .collect();
    let sent = Instant::now();
    for d in &deploys {
        fake.dispatch("INTERACTION_CREATE", d.clone());
    }
    let refused = "[RAY ERROR] state store unavailable — nothing was changed";
    let mut deferred = 0;
    for d in &deploys {
        let answers = fake.wait_answers(d, LONG, |a| a.iter().any(|x| content(x).starts_with(refused)));
        let id = d["id"].as_str().unwrap();
        let callback = fake
            .requests()
            .into_iter()
            .find(|r| r.path.ends_with("/callback") && r.path.contains(id))
            .expect("a first answer");
        let took = callback.at.duration_since(sent);
        assert!(took < Duration::from_secs(3), "first answer after {took:?}: {answers:#?}");
        if answers[0]["body"]["type"] == 5 {
            deferred += 1;
            assert_eq!(answers[0]["body"]["data"]["flags"], 64, "deferred privately: {answers:#?}");
            let edit = answers.iter().find(|a| a["method"] == "PATCH").expect("the deferred answer edited in");
            assert!(edit["path"].as_str().unwrap().ends_with("/messages/@original"), "{answers:#?}");
            assert!(content(edit).starts_with(refused), "{answers:#?}");
        }
    }
    assert!(deferred >= 1, "the store was slow enough for an answer to be deferred");
    redis.resume();
    assert_ephemeral(&interact(&fake, &fake.command(ALICE, CHANNEL, "status", &[])), "[RAY] No release is running.");
}
