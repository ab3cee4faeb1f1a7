//! Slack: a real `raybot serve` child process driven only through signed Slack payloads, posting
//! through the fake Slack Web API of `tests/support/slack.rs`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::slack_fake::{
    FakeSlack, Signature, SlackRequest, button_click, reaction_event, slash_command, url_verification,
};
use crate::support::{RAYBOT, Workspace, release_dir};

pub(crate) const TOKEN: &str = "xoxb-test-0000-raybot";
pub(crate) const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
pub(crate) const WAR_ROOM: &str = "C0WARROOM01";
pub(crate) const ALICE: &str = "U0ALICE001";
const BOB: &str = "U0BOB00002";
const CAROL: &str = "U0CAROL003";
const DAVE: &str = "U0DAVE0004";
const ERIN: &str = "U0ERIN0005";
const MALLORY: &str = "U0MALLORY9";
const LIMIT: Duration = Duration::from_secs(120);

/// `raybot serve` with Slack configured against the fake; killed on drop.
struct Serve {
    child: Child,
    url: String,
    fake: FakeSlack,
    http: reqwest::Client,
    log: std::path::PathBuf,
    triggers: std::sync::atomic::AtomicU32,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    async fn start(ws: &Workspace) -> Serve {
        Serve::start_with(ws, FakeSlack::start(TOKEN, WAR_ROOM).await, None, None).await
    }

    /// With `app_token`, Socket Mode (and no signing secret); with `store`, that store instead of
    /// a file store in the workspace.
    async fn start_with(ws: &Workspace, fake: FakeSlack, app_token: Option<&str>, store: Option<&str>) -> Serve {
        Serve::start_as(ws, fake, app_token, store, None).await
    }

    /// Like [`Serve::start_with`], named `replica` (as a fly machine keeps its id across restarts).
    async fn start_as(
        ws: &Workspace,
        fake: FakeSlack,
        app_token: Option<&str>,
        store: Option<&str>,
        replica: Option<&str>,
    ) -> Serve {
        let port = raybot::demo::free_port_block(1).expect("port");
        let log = ws.path().join("serve.log");
        let mut cmd = Command::new(RAYBOT);
        if let Some(r) = replica {
            cmd.env("RAYBOT_REPLICA", r);
        }
        match app_token {
            Some(t) => cmd.env("SLACK_APP_TOKEN", t).env_remove("SLACK_SIGNING_SECRET"),
            None => cmd.env("SLACK_SIGNING_SECRET", SECRET).env_remove("SLACK_APP_TOKEN"),
        };
        let child = cmd
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .current_dir(ws.path())
            .env(
                "RAYBOT_STORE",
                store.map(str::to_string).unwrap_or_else(|| format!("file://{}", ws.path().join(".store").display())),
            )
            .env("RAYBOT_ARTIFACTS", ws.artifacts())
            .env("RAYBOT_LOG", "info")
            .env("SLACK_BOT_TOKEN", TOKEN)
            .env("SLACK_API_URL", fake.api_url())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("raybot serve starts");
        // Idle connections are dropped before raybot closes them (it disconnects a client that
        // sends no request head within 5 s), so a request is never sent on a closing connection.
        let http = reqwest::Client::builder().no_proxy().pool_idle_timeout(Duration::from_secs(2)).build().unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        while http.get(format!("{url}/healthz")).send().await.is_err() {
            assert!(start.elapsed() < Duration::from_secs(30), "raybot serve did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Serve { child, url, fake, http, log, triggers: Default::default() }
    }

    async fn send(&self, req: SlackRequest, sig: Signature<'_>) -> reqwest::Response {
        req.send(&self.http, &self.url, SECRET, sig).await
    }

    fn trigger(&self) -> String {
        // Unique across the replicas of a test: the port tells them apart.
        let n = self.triggers.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let port = self.url.rsplit(':').next().unwrap_or("0");
        format!("1337.{port}.{n}.trigger")
    }

    /// Types `/ray <text>` as `user` in `channel`; returns raybot's private answer, waiting for the
    /// `response_url` when raybot acknowledged before it had finished.
    async fn command_in(&self, user: &str, channel: &str, text: &str) -> String {
        let trigger = self.trigger();
        let req = slash_command(user, channel, text, &trigger, &self.fake.response_url(&trigger));
        let started = Instant::now();
        let res = self.send(req, Signature::Valid).await;
        let took = started.elapsed();
        assert_eq!(res.status(), 200, "/ray {text}");
        assert!(took < Duration::from_secs(3), "/ray {text} acknowledged after {took:?}");
        let body: Value = res.json().await.expect("json answer");
        assert_eq!(body["response_type"], "ephemeral", "{body}");
        let text = body["text"].as_str().unwrap_or("").to_string();
        if !text.contains("its answer follows") {
            return text;
        }
        let start = Instant::now();
        loop {
            if let Some(c) =
                self.fake.calls(Some("response_url")).into_iter().find(|c| c.body["id"] == trigger.as_str())
            {
                return c.text().to_string();
            }
            // "Its answer follows" is a promise: it is kept.
            assert!(start.elapsed() < LIMIT, "/ray {text}: the answer that was to follow never came");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn command(&self, user: &str, text: &str) -> String {
        self.command_in(user, WAR_ROOM, text).await
    }

    async fn react(&self, event_id: &str, user: &str, ts: &str) {
        let res =
            self.send(reaction_event(event_id, user, "white_check_mark", WAR_ROOM, ts, true), Signature::Valid).await;
        assert_eq!(res.status(), 200);
    }

    async fn click(&self, user: &str, ts: &str, action: &str) {
        let res = self.send(button_click(user, WAR_ROOM, ts, action, &self.trigger()), Signature::Valid).await;
        assert_eq!(res.status(), 200);
    }

    async fn post(&self, needle: &str) -> crate::slack_fake::Call {
        self.fake.wait_for("chat.postMessage", needle, LIMIT).await
    }

    async fn ephemeral_to(&self, user: &str, needle: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(t) = self.fake.ephemerals(user).into_iter().find(|t| t.contains(needle)) {
                return t;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no ephemeral to {user} containing {needle:?}: {:?}\n{}",
                self.fake.ephemerals(user),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn texts(calls: &[crate::slack_fake::Call]) -> String {
    calls.iter().map(|c| c.text().to_string()).collect::<Vec<_>>().join("\n---\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_drives_a_full_release_of_v1_2_with_signed_payloads_only() {
    let ws = Workspace::new();
    let s = Serve::start(&ws).await;

    // The Events API handshake.
    let res = s.send(url_verification("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"), Signature::Valid).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["challenge"], "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P");

    // Protocol 10 until the readiness review.
    let answer = s.command(ALICE, "deploy v1.2").await;
    assert!(answer.starts_with("[RAY] Accepted"), "{answer}");
    let review = s.post("[APPROVAL REQUEST] Readiness review").await;
    assert_eq!(
        review.body["blocks"].as_array().and_then(|b| b.last()).map(|b| b["type"].clone()),
        Some("actions".into())
    );
    let answer = s.command(ALICE, "approve evidence reviewed").await;
    assert!(!answer.contains("[RAY ERROR]"), "{answer}");
    s.click(BOB, &review.ts(), "ray_approve").await;
    s.post("Go decision recorded").await;

    // The change freeze: raybot reacts ✅ itself; people ack by reaction or /ray ack.
    let freeze = s.post("Change freeze in effect. All teams acknowledge?").await;
    // raybot adds its reaction once Slack has given the post its ts: wait for it, not for the post.
    let reacted = |own: &[crate::slack_fake::Call]| {
        own.iter().any(|c| c.body["timestamp"] == freeze.ts().as_str() && c.body["name"] == "white_check_mark")
    };
    let start = Instant::now();
    while !reacted(&s.fake.calls(Some("reactions.add"))) && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let own = s.fake.calls(Some("reactions.add"));
    assert!(reacted(&own), "raybot did not react on the freeze message: {own:?}");
    // raybot's own reaction comes back as an event and is not an acknowledgement.
    s.send(
        reaction_event("Ev0SELF", crate::slack_fake::BOT_USER, "white_check_mark", WAR_ROOM, &freeze.ts(), true),
        Signature::Valid,
    )
    .await;
    s.command(ALICE, "ack").await;
    s.react("Ev0BOB1", BOB, &freeze.ts()).await;
    s.react("Ev0MALLORY", MALLORY, &freeze.ts()).await;
    // Slack retries bob's event (same event_id): it must count once, so the engine never even
    // says "already acknowledged" to bob.
    let retry = reaction_event("Ev0BOB1", BOB, "white_check_mark", WAR_ROOM, &freeze.ts(), true)
        .with_header("x-slack-retry-num", "1")
        .with_header("x-slack-retry-reason", "http_timeout");
    assert_eq!(s.send(retry, Signature::Valid).await.status(), 200);
    s.command(CAROL, "ack").await;
    s.react("Ev0DAVE1", DAVE, &freeze.ts()).await;
    // The driver handles deliveries in order: once erin's answer is back, every earlier one is done.
    s.command(ERIN, "ack").await;
    s.post("Change freeze confirmed by all 5 stakeholders").await;
    s.ephemeral_to(MALLORY, "not on the change-freeze list").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bob_heard = s.fake.ephemerals(BOB);
    assert!(
        !bob_heard.iter().any(|t| t.contains("already acknowledged")),
        "the retried event counted twice: {bob_heard:?}"
    );
    assert!(s.fake.ephemerals(crate::slack_fake::BOT_USER).is_empty());
    let freeze_updates: Vec<_> =
        s.fake.calls(Some("chat.update")).into_iter().filter(|c| c.body["ts"] == freeze.ts().as_str()).collect();
    assert!(!freeze_updates.is_empty(), "the freeze message's ack list was never updated");

    // The go/no-go: a stakeholder may not approve (command or button); bob clicks, carol types.
    let go = s.post("[APPROVAL REQUEST] All readiness gates passed. Approve production deployment? (yes/no)").await;
    let answer = s.command(ERIN, "approve").await;
    assert!(answer.contains("[RAY ERROR] <@U0ERIN0005> (stakeholder) may not approve"), "{answer}");
    s.click(ERIN, &go.ts(), "ray_approve").await;
    s.ephemeral_to(ERIN, "may not approve").await;
    s.click(BOB, &go.ts(), "ray_approve").await;
    s.command(CAROL, "approve monitoring ready").await;
    s.post("Production deployment 100% complete").await;
    s.post("v1.2 released to production").await;

    // The live status message was posted once and edited as the release went on, to its end.
    let status: Vec<_> = s.fake.posts().into_iter().filter(|c| c.text().starts_with("[RAY STATUS]")).collect();
    assert_eq!(status.len(), 1, "one live status message per release: {status:?}");
    let done = s.fake.wait_for("chat.update", ": released.", Duration::from_secs(10)).await;
    assert_eq!(done.body["ts"], status[0].ts().as_str(), "the status message itself is edited");

    // After the decision the approval message shows who decided, without buttons.
    let go_updates: Vec<_> =
        s.fake.calls(Some("chat.update")).into_iter().filter(|c| c.body["ts"] == go.ts().as_str()).collect();
    let last = go_updates.last().expect("the go/no-go message was updated after the decision");
    assert!(last.text().contains("<@U0CAROL003>") || last.text().contains("<@U0BOB00002>"), "{}", last.text());
    assert!(
        last.body["blocks"].as_array().unwrap().iter().all(|b| b["type"] != "actions"),
        "buttons left on the decided message: {}",
        last.body
    );

    // What the channel saw: phase announcements, gate verdicts, milestones; one post per second.
    let posts = s.fake.posts();
    let all = texts(&posts);
    assert!(all.contains("[MASTER RAY™ | PHASE"), "{all}");
    assert!(all.contains("[RAY GATE PASSED: "), "{all}");
    assert!(!all.contains("[RAY GATE FAILED"), "{all}");
    assert!(all.contains("Production deployment 100% complete"), "{all}");
    for pair in posts.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(gap >= Duration::from_millis(900), "two posts {gap:?} apart:\n{}\n{}", pair[0].text(), pair[1].text());
    }
    // Mentions in the channel use Slack's <@U…>.
    assert!(all.contains("<@U0"), "{all}");

    // Production serves v1.2, deployed by one run of its 100% step.
    assert_eq!(ws.serving(ws.production_port), "v1.2");
    let dir = release_dir(&ws.artifacts());
    let log = std::fs::read_to_string(dir.join("deployment/production-deployment-run.log")).unwrap();
    assert_eq!(log.matches("--env production --release v1.2 --strategy bluegreen --percent 100").count(), 1, "{log}");
    let freeze_doc = std::fs::read_to_string(dir.join("deployment/change-freeze-confirmation.md")).unwrap();
    assert!(freeze_doc.contains("| reaction |") && freeze_doc.contains("| command |"), "{freeze_doc}");
    assert!(freeze_doc.contains("U0BOB00002") && !freeze_doc.contains(MALLORY), "{freeze_doc}");
    assert!(dir.join("deployment/DEPLOYMENT-EVIDENCE.zip").is_file());
    assert!(dir.join("deployment/DEPLOYMENT-REPORT.md").is_file());

    // People are named as Slack shows them: refusals and the deployment window mention them;
    // evidence gives their name and Slack id; no post, edit, answer or evidence file shows a bare id.
    let mallory = s.ephemeral_to(MALLORY, "not on the change-freeze list").await;
    assert!(mallory.starts_with("[RAY ERROR] <@U0MALLORY9> is not on the change-freeze list"), "{mallory}");
    assert!(all.contains("on-call: SRE (<@U0CAROL003>), Product (<@U0BOB00002>)."), "{all}");
    let report = std::fs::read_to_string(dir.join("deployment/DEPLOYMENT-REPORT.md")).unwrap();
    assert!(report.contains("- Started by: Alice Example (slack U0ALICE001)"), "{report}");
    let mut said: Vec<String> = s.fake.calls(None).iter().map(|c| c.text().to_string()).collect();
    said.push(answer);
    crate::support::assert_no_bare_ids(
        &said,
        &dir,
        raybot::engine::Platform::Slack,
        &[ALICE, BOB, CAROL, DAVE, ERIN, MALLORY],
    );

    // Secrets never reach the log.
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(!log.contains(TOKEN) && !log.contains(SECRET), "a secret reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_refuses_unsigned_requests_strangers_and_other_channels_and_survives_a_429() {
    let ws = Workspace::new();
    let s = Serve::start(&ws).await;
    let deploy = |s: &Serve| slash_command(ALICE, WAR_ROOM, "deploy v1.2", &s.trigger(), &s.fake.response_url("x"));

    // Forged, stale and missing signatures: 401 on every endpoint, and nothing happens.
    for sig in [Signature::Forged("not-the-secret"), Signature::Stale(301), Signature::Stale(-400), Signature::Missing]
    {
        assert_eq!(s.send(deploy(&s), sig).await.status(), 401, "{sig:?} on /slack/commands");
        let ev = reaction_event("Ev0FORGED", ALICE, "white_check_mark", WAR_ROOM, "1700000000.000101", true);
        assert_eq!(s.send(ev, sig).await.status(), 401, "{sig:?} on /slack/events");
        let click = button_click(BOB, WAR_ROOM, "1700000000.000101", "ray_approve", "t.forged");
        assert_eq!(s.send(click, sig).await.status(), 401, "{sig:?} on /slack/interactions");
    }
    // The body was changed after signing: 401 too.
    let mut tampered = deploy(&s);
    let ts = crate::slack_fake::unix_now();
    let sig = crate::slack_fake::sign(SECRET, ts, &tampered.body);
    tampered.body = tampered.body.replace("v1.2", "v6.6");
    let res = s
        .http
        .post(format!("{}/slack/commands", s.url))
        .header("content-type", tampered.content_type)
        .header("x-slack-request-timestamp", ts.to_string())
        .header("x-slack-signature", sig)
        .body(tampered.body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls: Vec<String> = s.fake.calls(None).iter().map(|c| c.method.clone()).collect();
    assert_eq!(calls, ["auth.test"], "an unsigned request reached Slack");
    assert!(std::fs::read_dir(ws.artifacts()).map(|d| d.count() == 0).unwrap_or(true), "evidence was written");

    // A command outside the war room: [RAY ERROR] naming the channel, nothing changes.
    let answer = s.command_in(ALICE, "C0RANDOM99", "deploy v1.2").await;
    assert!(answer.starts_with("[RAY ERROR]") && answer.contains("<#C0WARROOM01>"), "{answer}");
    let status = s.command(ALICE, "status").await;
    assert!(status.contains("No release is running"), "{status}");
    assert!(s.fake.posts().is_empty());

    // Slack answers the first post 429 (Retry-After: 1): the post arrives after a second.
    s.fake.rate_limit_next("chat.postMessage", 1);
    let answer = s.command(ALICE, "deploy v1.2").await;
    assert!(answer.starts_with("[RAY] Accepted"), "{answer}");
    s.post("[MASTER RAY™").await;
    let attempts = s.fake.calls(Some("chat.postMessage"));
    assert_eq!(attempts[0].status, 429);
    assert_eq!(attempts[1].status, 200);
    assert_eq!(attempts[0].body["text"], attempts[1].body["text"]);
    let waited = attempts[1].at.duration_since(attempts[0].at);
    assert!(waited >= Duration::from_millis(950), "retried after {waited:?}, before Retry-After");

    // A click by someone without the role is refused privately and changes nothing.
    let review = s.post("[APPROVAL REQUEST] Readiness review").await;
    s.click(ERIN, &review.ts(), "ray_approve").await;
    let refusal = s.ephemeral_to(ERIN, "[RAY ERROR]").await;
    assert!(refusal.contains("may not approve") || refusal.contains("U0ERIN0005"), "{refusal}");
    s.click(MALLORY, &review.ts(), "ray_reject").await;
    s.ephemeral_to(MALLORY, "[RAY ERROR]").await;
    let status = s.command(ALICE, "status").await;
    assert!(!status.contains("rejected") && !status.contains("Go decision"), "{status}");
    assert!(!texts(&s.fake.posts()).contains("Go decision recorded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_socket_mode_takes_commands_and_clicks_over_the_websocket() {
    use crate::slack_fake::{button_click_payload, slash_command_payload};
    let ws = Workspace::new();
    let fake = FakeSlack::start(TOKEN, WAR_ROOM).await;
    let socket = fake.socket_mode().await;
    let s = Serve::start_with(&ws, fake, Some("xapp-1-A0RAYBOT01-test"), None).await;
    socket.connected(Duration::from_secs(20)).await;
    assert!(s.fake.calls(Some("apps.connections.open")).iter().all(|c| c.answer["ok"] == true));
    // No HTTP endpoints in Socket Mode.
    let res = s.send(slash_command(ALICE, WAR_ROOM, "status", "t.http", "http://x/"), Signature::Valid).await;
    assert_eq!(res.status(), 404);

    let limit = Duration::from_secs(3);
    let ack = socket
        .deliver(
            "env-1",
            "slash_commands",
            slash_command_payload(ALICE, WAR_ROOM, "status", "t.1", &s.fake.response_url("t.1")),
            limit,
        )
        .await;
    assert_eq!(ack["payload"]["response_type"], "ephemeral", "{ack}");
    assert!(ack["payload"]["text"].as_str().unwrap().contains("No release is running"), "{ack}");

    let ack = socket
        .deliver(
            "env-2",
            "slash_commands",
            slash_command_payload(ALICE, "C0RANDOM99", "deploy v1.2", "t.2", "http://x/"),
            limit,
        )
        .await;
    let text = ack["payload"]["text"].as_str().unwrap();
    assert!(text.starts_with("[RAY ERROR]") && text.contains("<#C0WARROOM01>"), "{ack}");

    let ack = socket
        .deliver(
            "env-3",
            "slash_commands",
            slash_command_payload(ALICE, WAR_ROOM, "deploy v1.2", "t.3", &s.fake.response_url("t.3")),
            limit,
        )
        .await;
    assert!(ack["payload"]["text"].as_str().unwrap().starts_with("[RAY] Accepted"), "{ack}");
    s.post("[MASTER RAY™").await;

    // A click on a message that belongs to no release: refused privately.
    let ack = socket
        .deliver(
            "env-4",
            "interactive",
            button_click_payload(BOB, WAR_ROOM, "1600000000.000001", "ray_approve", "t.4"),
            limit,
        )
        .await;
    assert_eq!(ack["envelope_id"], "env-4");
    s.ephemeral_to(BOB, "belongs to no running release").await;
}

/// Stopping `raybot serve` (SIGTERM, as Docker does; fly sends SIGINT) while it runs a job taken
/// from the Redis job queue: it takes no new work, lets the job finish, records its result, and only
/// then exits — a clean restart leaves no "job outcome unknown" behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_replica_finishes_its_queued_job_before_it_exits() {
    let redis = crate::redis_server::RedisServer::start();
    let ws = Workspace::new();
    ws.edit_config(|t| {
        t.replacen(
            r#"argv = ["scripts/refresh_staging_data.sh", "--env", "{env}", "--output", "{output}"]"#,
            r#"argv = ["sleep", "3"]"#,
            1,
        )
    });
    let mut s = Serve::start_with(&ws, FakeSlack::start(TOKEN, WAR_ROOM).await, None, Some(&redis.url())).await;
    // Typed, not waited for: the answer may follow late (posts are paced at one per second).
    let trigger = s.trigger();
    let res = s
        .send(slash_command(ALICE, WAR_ROOM, "deploy v1.2", &trigger, &s.fake.response_url(&trigger)), Signature::Valid)
        .await;
    assert_eq!(res.status(), 200);
    s.post("running `refresh_data`").await;
    // The post comes when the job is queued; wait until this replica's worker has taken it.
    let start = Instant::now();
    while !std::fs::read_to_string(&s.log).unwrap_or_default().contains("running a queued job") {
        assert!(start.elapsed() < Duration::from_secs(30), "the job was never taken");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let asked = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .expect("SIGTERM");
    let status = loop {
        if let Some(st) = s.child.try_wait().expect("wait") {
            break st;
        }
        assert!(asked.elapsed() < Duration::from_secs(40), "raybot serve did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log = std::fs::read_to_string(&s.log).unwrap_or_default();
    assert!(status.success(), "{status:?}\n{log}");
    let (before, after) = log.split_once("stopping: taking no new jobs").unwrap_or_else(|| panic!("{log}"));
    assert!(before.contains("purpose=refresh_data") || before.contains("refresh_data staging"), "{log}");
    assert!(!after.contains("running a queued job"), "took a job while stopping:\n{log}");

    let store = raybot::store::redis::RedisStore::open(&redis.url()).expect("open");
    use raybot::store::Store;
    let id = store.summaries().await.expect("summaries")[0].id.clone();
    let events: Vec<raybot::driver::StoredEvent> =
        store.read(&id).await.expect("read").iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let finished = events.iter().any(
        |e| matches!(&e.event, raybot::engine::Event::JobFinished { outcome, .. } if outcome.duration_ms >= 2_500),
    );
    assert!(finished, "the 3 s job's result was recorded before the exit:\n{log}");
    assert!(!events.iter().any(|e| matches!(e.event, raybot::engine::Event::JobLost { .. })));
    assert!(
        redis.command(&["XPENDING", "raybot:{jobs:slack}", "runners"]).starts_with("*4\r\n:0"),
        "nothing left pending"
    );
}

// ---- The runtime's promises (issue: decisions never wait on chat, nothing accepted is lost,
// ---- replicas never collide) ----------------------------------------------------------------

/// `/ray <text>` sent without waiting: resolves to (HTTP answer text, time to the HTTP answer).
fn spawn_command(s: &Serve, user: &str, text: &str) -> (String, tokio::task::JoinHandle<(String, Duration)>) {
    let trigger = s.trigger();
    let req = slash_command(user, WAR_ROOM, text, &trigger, &s.fake.response_url(&trigger));
    let (http, url) = (s.http.clone(), s.url.clone());
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let res = req.send(&http, &url, SECRET, Signature::Valid).await;
        let took = started.elapsed();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.expect("json answer");
        (body["text"].as_str().unwrap_or("").to_string(), took)
    });
    (trigger, task)
}

/// The final answer a person got: the HTTP answer, or what followed on its `response_url`.
async fn final_answer(fake: &FakeSlack, trigger: &str, first: &str, limit: Duration) -> String {
    if !first.contains("its answer follows") {
        return first.to_string();
    }
    let start = Instant::now();
    loop {
        if let Some(c) = fake.calls(Some("response_url")).into_iter().find(|c| c.body["id"] == trigger) {
            return c.text().to_string();
        }
        assert!(start.elapsed() < limit, "{trigger}: \"its answer follows\" and nothing followed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn stop(child: &Child) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .expect("SIGTERM");
}

async fn exit_of(s: &mut Serve, limit: Duration) -> std::process::ExitStatus {
    let asked = Instant::now();
    loop {
        if let Some(st) = s.child.try_wait().expect("wait") {
            return st;
        }
        assert!(asked.elapsed() < limit, "raybot serve did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_rate_limited_slack_never_holds_up_a_decision() {
    let ws = Workspace::new();
    let fake = FakeSlack::start(TOKEN, WAR_ROOM).await;
    // Every post and edit takes 1.2 s, posts closer than 1 s apart are refused 429 (as Slack
    // does), and the first edit is rate limited for 6 s.
    fake.set_latency("chat.postMessage", Duration::from_millis(1200));
    fake.set_latency("chat.update", Duration::from_millis(1200));
    fake.pace_posts(Duration::from_secs(1));
    fake.rate_limit_next("chat.update", 6);
    let s = Serve::start_with(&ws, fake, None, None).await;

    let (_, deploy) = spawn_command(&s, ALICE, "deploy v1.2");
    let (answer, took) = deploy.await.unwrap();
    assert_eq!(answer, "[RAY] Accepted.", "{}", std::fs::read_to_string(&s.log).unwrap_or_default());
    assert!(took < Duration::from_secs(1), "/ray deploy answered after {took:?}");

    // A burst of 50 commands while the announcements are still going out, one per 1.2 s.
    let burst: Vec<_> = (0..50).map(|i| spawn_command(&s, [BOB, CAROL][i % 2], "status").1).collect();
    let mut slowest = Duration::ZERO;
    for task in burst {
        let (text, took) = task.await.unwrap();
        assert!(text.starts_with("[RAY STATUS] v1.2-production-"), "{text}");
        slowest = slowest.max(took);
    }
    println!("50 × /ray status during slow posting: slowest answer {slowest:?}");
    assert!(slowest < Duration::from_secs(1), "a status waited {slowest:?}");
    assert!(s.fake.posts().len() < 12, "the burst was answered before the announcements were out");

    // The readiness review: Bob's click is decided at once, however slow the channel is.
    let request = s.post("[APPROVAL REQUEST] Readiness review").await;
    let started = Instant::now();
    s.click(BOB, &request.ts(), "ray_approve").await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "the click was answered after {took:?}");
    s.ephemeral_to(BOB, "[RAY]").await;

    // One live status message, edited (not re-posted) to the latest state.
    let status_posts: Vec<_> = s.fake.posts().into_iter().filter(|c| c.text().starts_with("[RAY STATUS]")).collect();
    assert_eq!(status_posts.len(), 1, "{}", texts(&status_posts));
    let edits = s.fake.calls(Some("chat.update"));
    assert!(edits.iter().any(|c| c.status == 429), "the 429 on an edit was seen");
    assert!(edits.iter().any(|c| c.status == 200 && c.body["ts"] == status_posts[0].ts().as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_that_follows_is_sent_when_the_store_is_slow() {
    let redis = crate::redis_server::RedisServer::start();
    let ws = Workspace::new();
    let s = Serve::start_with(&ws, FakeSlack::start(TOKEN, WAR_ROOM).await, None, Some(&redis.url())).await;
    assert!(s.command(ALICE, "status").await.starts_with("[RAY] No release is running."));

    // Redis stops answering: each deploy waits out the store's limit in turn (a deploy is
    // decided on its own, never in a group), so the later ones are acknowledged before they are
    // decided — and their answers must follow.
    redis.pause();
    let sent: Vec<_> = [(ALICE, "deploy v1.2"), (BOB, "deploy v1.3"), (CAROL, "deploy v1.4")]
        .iter()
        .map(|(u, c)| spawn_command(&s, u, c))
        .collect();
    let mut followed = 0;
    for (trigger, task) in sent {
        let (first, took) = task.await.unwrap();
        assert!(took < Duration::from_secs(3), "acknowledged after {took:?}");
        followed += usize::from(first.contains("its answer follows"));
        let answer = final_answer(&s.fake, &trigger, &first, Duration::from_secs(20)).await;
        assert!(answer.starts_with("[RAY ERROR] state store unavailable — nothing was changed"), "{answer}");
    }
    redis.resume();
    assert!(followed >= 1, "the store was slow enough for an answer to follow");
    assert!(s.command(ALICE, "status").await.starts_with("[RAY] No release is running."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_replica_answers_every_delivery_it_holds() {
    let redis = crate::redis_server::RedisServer::start();
    let ws = Workspace::new();
    let mut s = Serve::start_with(&ws, FakeSlack::start(TOKEN, WAR_ROOM).await, None, Some(&redis.url())).await;
    assert!(s.command(ALICE, "status").await.starts_with("[RAY] No release is running."));

    // Deliveries queue up behind a stalled store; then the replica is told to stop.
    redis.pause();
    let sent = vec![
        ("v1.2", spawn_command(&s, ALICE, "deploy v1.2")),
        ("v1.3", spawn_command(&s, BOB, "deploy v1.3")),
        ("v1.4", spawn_command(&s, CAROL, "deploy v1.4")),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop(&s.child);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    redis.resume();

    let mut answers = Vec::new();
    for (version, (trigger, task)) in sent {
        let (first, _) = task.await.unwrap();
        answers.push((version, final_answer(&s.fake, &trigger, &first, Duration::from_secs(40)).await));
    }
    let status = exit_of(&mut s, Duration::from_secs(40)).await;
    let log = std::fs::read_to_string(&s.log).unwrap_or_default();
    assert!(status.success(), "{status:?}\n{log}");

    // Each was recorded (and said so) or refused (and nothing of it is in the store).
    let store = raybot::store::redis::RedisStore::open(&redis.url()).expect("open");
    use raybot::store::Store;
    let recorded: Vec<String> = store.summaries().await.expect("summaries").into_iter().map(|r| r.version).collect();
    for (version, answer) in &answers {
        if answer == "[RAY] Accepted." {
            assert!(recorded.contains(&version.to_string()), "{version} accepted but not recorded: {answers:?}");
        } else {
            assert!(answer.starts_with("[RAY ERROR]"), "{version}: {answer}");
            assert!(
                answer.contains("nothing was changed") || answer.contains("is locked by release"),
                "{version}: {answer}"
            );
            assert!(!recorded.contains(&version.to_string()), "{version} refused but recorded: {answers:?}");
        }
    }
    println!("answers while stopping: {answers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_taking_the_same_deploy_in_the_same_second_make_one_release() {
    let redis = crate::redis_server::RedisServer::start();
    let (ws_a, ws_b) = (Workspace::new(), Workspace::new());
    let fake = FakeSlack::start(TOKEN, WAR_ROOM).await;
    let a = Serve::start_with(&ws_a, fake.clone(), None, Some(&redis.url())).await;
    let b = Serve::start_with(&ws_b, fake.clone(), None, Some(&redis.url())).await;
    for round in 0..20 {
        let version = format!("v2.{round}");
        let text = format!("deploy {version}");
        let ((ta, ja), (tb, jb)) = (spawn_command(&a, ALICE, &text), spawn_command(&b, BOB, &text));
        let (fa, fb) = (ja.await.unwrap().0, jb.await.unwrap().0);
        let answer_a = final_answer(&fake, &ta, &fa, LIMIT).await;
        let answer_b = final_answer(&fake, &tb, &fb, LIMIT).await;
        let ids = redis.command(&["HKEYS", "raybot:unfinished"]);
        let unfinished: Vec<&str> = ids.lines().filter(|l| l.starts_with(&version)).collect();
        assert_eq!(unfinished.len(), 1, "round {round}: one release ({ids:?}); answers {answer_a:?} / {answer_b:?}");
        let id = unfinished[0];
        let owner = redis.command(&["HGET", "raybot:{lock:production}", "owner"]);
        assert!(owner.contains(id), "round {round}: the lock is held by {owner:?}, not {id}");
        let (loser, loser_answer) = match (answer_a.as_str(), answer_b.as_str()) {
            ("[RAY] Accepted.", _) => (&b, answer_b.clone()),
            (_, "[RAY] Accepted.") => (&a, answer_a.clone()),
            _ => panic!("round {round}: nobody was accepted: {answer_a:?} / {answer_b:?}"),
        };
        assert!(
            loser_answer.starts_with(&format!("[RAY ERROR] production is locked by release {id}")),
            "round {round}: {loser_answer}"
        );
        // The loser's replica ends the winner's release: it edits the one status message.
        let abort = loser.command(ALICE, "abort round over").await;
        assert_eq!(abort, "[RAY] Accepted.", "round {round}");
        let start = Instant::now();
        while redis.command(&["HLEN", "raybot:unfinished"]).trim() != ":0" {
            assert!(start.elapsed() < LIMIT, "round {round}: the release never ended");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Whichever replica handled a release's events, it has one live status message.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut per_release = std::collections::BTreeMap::<String, usize>::new();
    for c in fake.posts().iter().filter(|c| c.text().starts_with("[RAY STATUS] ")) {
        let id = c.text()["[RAY STATUS] ".len()..].split_whitespace().next().unwrap_or("").to_string();
        *per_release.entry(id).or_default() += 1;
    }
    assert!(per_release.values().all(|n| *n == 1), "{per_release:?}");
}

/// SIGKILL while announcements wait in the outbox, one of them taken by Slack but never
/// answered: the restarted replica posts every announcement the recorded events asked for, and
/// none twice — the one Slack took is found in the channel's history by its metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_posts_went_out_loses_none_and_repeats_none() {
    let redis = crate::redis_server::RedisServer::start();
    let ws = Workspace::new();
    let fake = FakeSlack::start(TOKEN, WAR_ROOM).await;
    let s = Serve::start_as(&ws, fake.clone(), None, Some(&redis.url()), Some("raybot-fly-1")).await;
    // Slack takes four posts (the release, the protocol banner, phase 1, the live status) and
    // answers them, then takes the fifth and goes silent.
    fake.stop_answering_posts_after(Some(4));
    assert_eq!(s.command(ALICE, "deploy v1.2").await, "[RAY] Accepted.");
    let start = Instant::now();
    while fake.posts().len() < 5 {
        assert!(start.elapsed() < LIMIT, "the fifth post never came: {}", texts(&fake.posts()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the release run until it waits for the readiness approval (its events recorded, the
    // posts behind them held by the silent Slack), then kill the process mid-post. Waiting on
    // the store rather than a fixed time keeps a slow machine from killing it mid-job.
    let start = Instant::now();
    loop {
        let (out, code) = tokio::task::block_in_place(|| {
            crate::support::run(ws.raybot(Some(&redis.url())).args(["status", "--json"]), "", Duration::from_secs(20))
        });
        assert_eq!(code, 0, "{out}");
        let list: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        if list[0]["status"] == "awaiting approval" {
            break;
        }
        assert!(start.elapsed() < LIMIT, "the release never reached the readiness approval: {out}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held = fake.posts()[4].text().to_string();
    assert!(!held.starts_with("[RAY STATUS]"), "{}", texts(&fake.posts()));
    drop(s);
    let before = fake.posts().len();
    fake.stop_answering_posts_after(None);

    let s = Serve::start_as(&ws, fake.clone(), None, Some(&redis.url()), Some("raybot-fly-1")).await;
    s.post("[APPROVAL REQUEST] Readiness review").await;
    let log = std::fs::read_to_string(&s.log).unwrap_or_default();
    let posts = fake.posts();
    let all = texts(&posts);
    assert!(posts.len() > before, "nothing was posted after the restart:\n{all}");
    assert!(log.contains("posting again what a stopped raybot had not posted"), "{log}");
    assert!(log.contains("went out before the restart; not posted again"), "{log}");
    // Each announcement once (the live status message is keyed and edited, not re-posted).
    let mut seen = std::collections::BTreeMap::new();
    for p in posts.iter().filter(|p| !p.text().starts_with("[RAY STATUS]")) {
        *seen.entry(p.text().to_string()).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "posted twice: {twice:#?}\n{all}");
    assert_eq!(seen.get(&held), Some(&1), "{held}\n{all}");
    let release = posts[0].text().to_string();
    assert!(release.starts_with("[RAY] Release v1.2-production-"), "{all}");
    for phase in ["[MASTER RAY™ | PROTOCOL 10", "[MASTER RAY™ | PHASE 1 START]"] {
        assert!(seen.keys().any(|t| t.starts_with(phase)), "{phase} never posted:\n{all}");
    }
}
