//! The Redis store: the shared conformance suite against a real `redis-server` and a real Redis
//! Cluster, outages, duplicate deliveries, a crash in the middle of the production deploy, and two
//! replicas racing for the lock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use raybot::chat::handle::DriverHandle;
use raybot::chat::{ChatError, ChatSink, Handled, Inbound};
use raybot::driver::{Driver, StoredEvent};
use raybot::engine::{Ask, Button, Platform, Release, UserRef};
use raybot::store::redis::RedisStore;
use raybot::store::{JobQueue, Store, StoreError};

use crate::redis_server::{RedisCluster, RedisServer};
use crate::support::{LiveChat, Workspace, release_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_passes_on_redis() {
    let server = RedisServer::start();
    let url = server.url();
    raybot::store::conformance::run_all(|| RedisStore::open(&url).expect("open")).await;
    // The keys of one release share a hash tag, so they live in one Redis Cluster slot.
    let keys = server.command(&["KEYS", "raybot:{conf-*-race}:*"]);
    assert!(keys.contains(":log") && keys.contains(":summary"), "{keys}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_passes_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let url = cluster.url();
    raybot::store::conformance::run_all(|| RedisStore::open(&url).expect("open")).await;
}

/// On a cluster every key of a release (log, summary, fence) hashes to one slot and lives on the
/// node owning it, while different releases spread over the nodes; the release index gathers them
/// from every node; scripts a node forgot (`SCRIPT FLUSH`, as after a restart) are loaded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_a_release_keeps_to_one_slot_and_releases_spread_over_the_nodes() {
    use raybot::store::LockOutcome;
    use raybot::store::conformance::{now_ms, summary};

    let cluster = RedisCluster::start();
    let store = RedisStore::open(&cluster.url()).expect("open");
    let t = now_ms();
    let ids: Vec<String> = (0..20).map(|i| format!("v1.{i}-production-20261122T0000{i:02}Z")).collect();
    for (i, id) in ids.iter().enumerate() {
        let n = store.append(id, 0, &[format!("{{\"n\":{i}}}")], &summary(id, t + i as u64, 1), None, None).await;
        assert_eq!(n.expect("append"), 1);
    }
    // ids[1] takes production's lapsed lock from ids[0]: that writes ids[0]'s fence key.
    let env = "production";
    let LockOutcome::Acquired(old) = store.lock(env, &ids[0], 1_000, t).await.expect("lock") else { panic!("held") };
    let LockOutcome::Acquired(new) = store.lock(env, &ids[1], 60_000, t + 5_000).await.expect("take over") else {
        panic!("held")
    };
    let fenced = store.append(&ids[0], 1, &["{}".into()], &summary(&ids[0], t, 2), Some(old.token), None).await;
    assert!(matches!(fenced, Err(StoreError::Fenced { current, .. }) if current == new.token), "{fenced:?}");

    let per_node = cluster.keys_per_node("raybot:*");
    let holding_logs = per_node.iter().filter(|keys| keys.iter().any(|k| k.ends_with(":log"))).count();
    assert!(holding_logs >= 2, "all releases landed on one node: {per_node:?}");
    for id in &ids {
        let key = |what: &str| format!("raybot:{{{id}}}:{what}");
        let slot = cluster.keyslot(&key("log"));
        assert_eq!(cluster.keyslot(&key("summary")), slot, "{id}");
        assert_eq!(cluster.keyslot(&key("fence")), slot, "{id}");
        let holders: Vec<&Vec<String>> =
            per_node.iter().filter(|keys| keys.iter().any(|k| k.starts_with(&format!("raybot:{{{id}}}:")))).collect();
        assert_eq!(holders.len(), 1, "{id} is split over nodes: {per_node:?}");
        assert!(holders[0].contains(&key("log")) && holders[0].contains(&key("summary")), "{id}: {:?}", holders[0]);
    }
    assert!(
        per_node.iter().any(|keys| keys.contains(&format!("raybot:{{{}}}:fence", ids[0]))),
        "no fence key was written: {per_node:?}"
    );

    // The index (one slot) and the summaries (20 slots on several nodes) come back together.
    let listed: Vec<String> = store.summaries().await.expect("summaries").into_iter().map(|s| s.id).collect();
    assert_eq!(listed, ids.iter().rev().cloned().collect::<Vec<_>>());

    // Every node forgets its scripts: appends, locks and idempotency keys still work.
    for node in &cluster.nodes {
        assert!(node.command(&["SCRIPT", "FLUSH"]).starts_with("+OK"));
    }
    for (i, id) in ids.iter().enumerate().skip(1) {
        let n = store.append(id, 1, &["{\"n\":\"again\"}".into()], &summary(id, t + i as u64, 2), None, None).await;
        assert_eq!(n.expect("append after SCRIPT FLUSH"), 2, "{id}");
    }
    assert!(matches!(store.lock("staging", &ids[2], 60_000, now_ms()).await, Ok(LockOutcome::Acquired(_))));
    assert!(store.remember("slack-event-1", 60_000, now_ms()).await.expect("remember"));
    assert!(!store.remember("slack-event-1", 60_000, now_ms()).await.expect("remember again"));
}

/// The whole cluster freezes: every operation fails within two seconds and changes nothing; when
/// the nodes wake up the store finds them again by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_cluster_fails_fast_and_the_store_reconnects_by_itself() {
    let cluster = RedisCluster::start();
    let store = RedisStore::open(&cluster.url()).expect("open");
    let sum = raybot::store::conformance::summary("r1", 1, 1);
    store.append("r1", 0, &["{\"n\":0}".into()], &sum, None, None).await.expect("append");

    cluster.pause();
    for _ in 0..3 {
        let start = Instant::now();
        let err = store.append("r1", 1, &["{\"n\":1}".into()], &sum, None, None).await.expect_err("paused");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
        let start = Instant::now();
        assert!(store.summaries().await.is_err());
        assert!(store.health().await.is_err());
        assert!(start.elapsed() < Duration::from_secs(4), "took {:?}", start.elapsed());
    }
    cluster.resume();
    let start = Instant::now();
    let mut ok = None;
    while ok.is_none() && start.elapsed() < Duration::from_secs(30) {
        match store.append("r1", 1, &["{\"n\":1}".into()], &sum, None, None).await {
            Ok(n) => ok = Some(n),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(ok, Some(2), "appending after the cluster woke up");
    assert!(store.health().await.is_ok());
    assert_eq!(store.read("r1").await.expect("read"), vec!["{\"n\":0}", "{\"n\":1}"], "a failed append wrote");
}

/// A release driven through `raybot chat` with `RAYBOT_STORE=redis+cluster://…`, then `/ray history`
/// and `raybot status --json` on the same cluster.
#[test]
fn a_release_runs_on_a_redis_cluster_and_status_lists_it() {
    let cluster = RedisCluster::start();
    let url = cluster.url();
    let ws = Workspace::new();
    let (out, code) = ws.chat_on(Some(&url), "alice", "/ray deploy v1.2\n/ray history\n");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("[APPROVAL REQUEST] Readiness review"), "{out}");
    assert!(out.contains("[RAY] Recent releases:"), "{out}");

    let (status, code) =
        crate::support::run(ws.raybot(Some(&url)).args(["status", "--json"]), "", Duration::from_secs(20));
    assert_eq!(code, 0, "{status}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&status).expect(&status);
    assert_eq!(list.len(), 1, "{status}");
    let id = list[0]["id"].as_str().unwrap();
    assert_eq!((list[0]["version"].as_str(), list[0]["env"].as_str()), (Some("v1.2"), Some("production")));
    assert!(out.contains(&format!("- {id} v1.2 → production")), "{out}");
    assert!(list[0]["events"].as_u64().unwrap() > 1, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_fails_fast_and_the_store_reconnects_by_itself() {
    let mut server = RedisServer::start();
    let store = RedisStore::open(&server.url()).expect("open");
    let sum = raybot::store::conformance::summary("r1", 1, 1);
    store.append("r1", 0, &["{\"n\":0}".into()], &sum, None, None).await.expect("append");

    server.pause(); // SIGSTOP: the socket stays open, nothing answers
    for _ in 0..3 {
        let start = Instant::now();
        let err = store.append("r1", 1, &["{\"n\":1}".into()], &sum, None, None).await.expect_err("paused");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
        assert!(store.health().await.is_err());
    }
    server.resume();
    let mut back = false;
    for _ in 0..50 {
        if store.health().await.is_ok() {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "the store did not come back after redis-server resumed");
    assert_eq!(store.read("r1").await.expect("read"), vec!["{\"n\":0}".to_string()], "a failed append wrote");

    server.restart(); // a new process on the same port: the connection manager reconnects
    let mut ok = None;
    for _ in 0..50 {
        match store.append("r1", 1, &["{\"n\":1}".into()], &sum, None, None).await {
            Ok(n) => {
                ok = Some(n);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(ok, Some(2), "appending after the restart");
    assert_eq!(store.read("r1").await.expect("read").len(), 2, "the log survived the restart (append-only file)");
}

/// Records what raybot says, like a chat platform would show it.
#[derive(Default)]
struct Room {
    posts: Mutex<Vec<(String, String, Ask)>>,
    replies: Mutex<Vec<(String, String)>>,
}

#[async_trait]
impl ChatSink for Room {
    async fn post(&self, text: &str, ask: &Ask) -> Result<String, ChatError> {
        let mut posts = self.posts.lock().unwrap();
        let id = format!("m{}", posts.len() + 1);
        posts.push((id.clone(), text.to_string(), ask.clone()));
        Ok(id)
    }
    async fn update(&self, _message: &str, _text: &str) -> Result<(), ChatError> {
        Ok(())
    }
    async fn reply(&self, to: &UserRef, text: &str) -> Result<(), ChatError> {
        self.replies.lock().unwrap().push((to.id.clone(), text.to_string()));
        Ok(())
    }
}

impl Room {
    fn text(&self) -> String {
        self.posts.lock().unwrap().iter().map(|(_, t, _)| t.as_str()).collect::<Vec<_>>().join("\n")
    }
    fn last_with_buttons(&self) -> String {
        self.posts.lock().unwrap().iter().rev().find(|(_, _, a)| *a == Ask::Buttons).expect("buttons").0.clone()
    }
}

/// A driver running in this process as replica `replica` on `store`, with the workspace's config
/// (jobs call the real binary).
async fn driver(ws: &Workspace, store: Arc<dyn Store>, room: Arc<Room>, replica: &str) -> DriverHandle {
    let toml = std::fs::read_to_string(ws.path().join("config/raybot.toml")).expect("raybot.toml");
    if !toml.contains("RAYBOT_BIN") {
        ws.edit_config(|t| t.replace("[job_env]", &format!("[job_env]\nRAYBOT_BIN = \"{}\"", crate::support::RAYBOT)));
    }
    let config = raybot::config::Config::load(&ws.path().join("config")).expect("config");
    let catalog = raybot::protocol::Catalog::embedded().expect("protocols");
    let metrics = Arc::new(raybot::metrics::Metrics::new());
    let d = Driver::new(config, catalog, store, room, ws.artifacts(), Platform::Local, metrics).with_replica(replica);
    raybot::driver::run::start(d).await.expect("the store is readable")
}

async fn settle(d: &DriverHandle) {
    tokio::time::timeout(Duration::from_secs(120), d.settle())
        .await
        .expect("the release never waited for people")
        .expect("the driver runs");
}

fn user(name: &str) -> UserRef {
    UserRef::new(Platform::Local, name)
}

async fn say(d: &DriverHandle, who: &str, text: &str, key: Option<&str>) -> Handled {
    let inbound = Inbound::command(user(who), text).expect("valid /ray command");
    d.submit(key.map(str::to_string), inbound).expect("queued").await.expect("handled")
}

async fn deliver(d: &DriverHandle, inbound: Inbound, key: &str) -> Handled {
    d.submit(Some(key.to_string()), inbound).expect("queued").await.expect("handled")
}

async fn log_of(store: &dyn Store) -> (String, Vec<StoredEvent>) {
    let list = store.summaries().await.expect("summaries");
    let id = list.first().expect("a release").id.clone();
    let events = store.read(&id).await.expect("read").iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    (id, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_delivered_five_times_counts_once_and_an_outage_changes_nothing() {
    let server = RedisServer::start();
    let ws = Workspace::new();
    let store: Arc<dyn Store> = Arc::new(RedisStore::open(&server.url()).expect("open"));
    let room = Arc::new(Room::default());
    let d = driver(&ws, store.clone(), room.clone(), "replica-1").await;

    say(&d, "alice", "/ray deploy v1.2", Some("cmd-1")).await;
    settle(&d).await;
    assert!(room.text().contains("[APPROVAL REQUEST] Readiness review"), "{}", room.text());
    let h = say(&d, "alice", "/ray approve evidence reviewed", Some("cmd-2")).await;
    assert!(!h.duplicate);
    let (_, before) = log_of(store.as_ref()).await;

    // Bob's click arrives five times with one idempotency key (a platform retrying).
    let message = room.last_with_buttons();
    let mut duplicates = 0;
    for _ in 0..5 {
        let inbound = Inbound::Click { user: user("bob"), message: message.clone(), button: Button::Approve };
        duplicates += usize::from(deliver(&d, inbound, "click-bob-1").await.duplicate);
    }
    assert_eq!(duplicates, 4);
    let (_, after) = log_of(store.as_ref()).await;
    let clicks = after[before.len()..]
        .iter()
        .filter(|e| matches!(&e.event, raybot::engine::Event::Click { by, .. } if by.id == "bob"))
        .count();
    assert_eq!(clicks, 1, "one click recorded");
    assert_eq!(room.text().matches("Go decision recorded").count(), 1, "{}", room.text());
    settle(&d).await;
    assert!(room.text().contains("Change freeze in effect"), "{}", room.text());

    // Carol's reaction reaches two replicas at once (a platform retry landing elsewhere): the key
    // is recorded with the event, so exactly one of them counts it. The second replica leaves the
    // release to the first, which is alive.
    let d2 = driver(&ws, store.clone(), Arc::new(Room::default()), "replica-2").await;
    let freeze = room
        .posts
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(_, _, a)| matches!(a, Ask::Reaction { .. }))
        .expect("freeze post")
        .0
        .clone();
    let react = |freeze: String| Inbound::Reaction {
        user: user("carol"),
        message: freeze,
        emoji: "white_check_mark".into(),
        added: true,
    };
    let (h1, h2) =
        tokio::join!(deliver(&d, react(freeze.clone()), "react-carol-1"), deliver(&d2, react(freeze), "react-carol-1"));
    assert_eq!(u8::from(h1.duplicate) + u8::from(h2.duplicate), 1, "{h1:?} {h2:?}");
    let (_, events) = log_of(store.as_ref()).await;
    let carol = events
        .iter()
        .filter(|e| matches!(&e.event, raybot::engine::Event::Reaction { by, .. } if by.id == "carol"))
        .count();
    assert_eq!(carol, 1, "carol's reaction recorded once");

    // Redis stops answering mid-release: commands fail fast with the store message, nothing changes.
    let (_, before) = log_of(store.as_ref()).await;
    server.pause();
    for cmd in ["/ray ack", "/ray status", "/ray deploy v1.3 to staging"] {
        let start = Instant::now();
        let h = say(&d, "alice", cmd, None).await;
        assert!(start.elapsed() < Duration::from_secs(2), "{cmd} took {:?}", start.elapsed());
        assert_eq!(
            h.replies,
            vec!["[RAY ERROR] state store unavailable — nothing was changed, try again".to_string()],
            "{cmd}"
        );
    }
    server.resume();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, during) = log_of(store.as_ref()).await;
    assert_eq!(during.len(), before.len(), "a command changed the log while the store was down");

    // Back up: the same command now counts, and the release goes on.
    let h = say(&d, "alice", "/ray ack", None).await;
    assert!(h.replies.is_empty(), "{:?}", h.replies);
    let (_, later) = log_of(store.as_ref()).await;
    assert_eq!(later.len(), before.len() + 1);
    let release =
        Release::replay(later.iter().map(|e| (e.at, e.event.clone())).collect::<Vec<_>>().iter()).expect("replay");
    assert!(release.freeze.acks.contains_key("alice"), "alice's ack is recorded");
}

/// A release of v1.2 on `url` whose production deploy job is `sleep 8`, run through one-shot
/// `raybot chat` sessions up to the confirmed change freeze (the go/no-go still needs bob and carol).
fn freeze_confirmed_before_a_slow_deploy(ws: &Workspace, url: &str) {
    ws.edit_config(|t| {
        t.replacen(
            r#"deploy = { argv = ["scripts/deploy_backend.sh", "--env", "{env}", "--release", "{version}", "--strategy", "{strategy}", "--percent", "{percent}"], timeout_seconds = 300 }"#,
            r#"deploy = { argv = ["sleep", "8"], timeout_seconds = 300 }"#,
            1,
        )
    });
    let (out, code) = ws.chat_on(Some(url), "alice", "/ray deploy v1.2\n");
    assert_eq!(code, 0, "{out}");
    let (out, _) = ws.chat_on(Some(url), "alice", "/ray approve evidence reviewed\n/as bob\n/click approve\n");
    assert!(out.contains("Change freeze in effect"), "{out}");
    let (out, _) = ws.chat_on(
        Some(url),
        "alice",
        "/ray ack\n/as bob\n/react ✅\n/as carol\n/ray ack\n/as dave\n/react white_check_mark\n/as erin\n/ray ack\n",
    );
    assert!(out.contains("Change freeze confirmed by all 5 stakeholders"), "{out}");
}

/// Bob (clicking) and carol approve production in `chat`; returns once the deploy job has started.
fn approve_until_the_deploy_job_runs(ws: &Workspace, chat: &mut LiveChat) {
    chat.send("/click approve");
    chat.send("/as carol");
    chat.send("/ray approve monitoring ready");
    chat.wait_for("Production deployment", Duration::from_secs(60));
    let start = Instant::now();
    while !production_deploy_log(ws).contains("$ sleep 8") {
        assert!(start.elapsed() < Duration::from_secs(60), "the production deploy job never started");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn production_deploy_log(ws: &Workspace) -> String {
    std::fs::read_to_string(release_dir(&ws.artifacts()).join("deployment/production-deployment-run.log"))
        .unwrap_or_default()
}

/// SIGKILL in the middle of the production deploy job, with Redis as the store: the restarted
/// raybot still has every ack and approval, reports the job as unknown without re-running it, and
/// `/ray rollback` then works.
#[test]
fn a_crash_during_the_production_deploy_loses_nothing_on_redis() {
    let server = RedisServer::start();
    let url = server.url();
    let ws = Workspace::new();
    freeze_confirmed_before_a_slow_deploy(&ws, &url);

    let mut cmd = ws.raybot(Some(&url));
    cmd.args(["chat", "--user", "bob"]).env("RAYBOT_REPLICA", "raybot-prod-1");
    let mut chat = LiveChat::start(cmd);
    approve_until_the_deploy_job_runs(&ws, &mut chat);
    let log = || production_deploy_log(&ws);
    chat.kill();

    // Everything people did is still in Redis.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let events = rt.block_on(async { log_of(&RedisStore::open(&url).expect("open")).await.1 });
    let release =
        Release::replay(events.iter().map(|e| (e.at, e.event.clone())).collect::<Vec<_>>().iter()).expect("replay");
    assert_eq!(release.freeze.acks.len(), 5, "acks after the crash");
    let approvers: Vec<&str> = release.rounds.last().unwrap().approvals.iter().map(|a| a.user.as_str()).collect();
    assert!(approvers.contains(&"bob") && approvers.contains(&"carol"), "{approvers:?}");

    // The same machine comes back (a fly machine keeps its id): it finds the job it had taken in
    // the queue's pending list, so the outcome is unknown at once; the job is not run again.
    let mut restart = ws.raybot(Some(&url));
    restart.args(["chat", "--user", "alice"]).env("RAYBOT_REPLICA", "raybot-prod-1");
    let (out, code) = crate::support::run(
        &mut restart,
        "/ray status\n/ray rollback deploy outcome unknown\n",
        Duration::from_secs(90),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Reason: job outcome unknown after raybot-prod-1 stopped. Awaiting instructions."), "{out}");
    assert!(out.to_lowercase().contains("rolled back"), "{out}");
    assert_eq!(log().matches("$ sleep 8").count(), 1, "the deploy job ran again:\n{}", log());
    assert_eq!(ws.serving(ws.production_port), "v1.1");
}

/// Two raybot processes on one Redis receive 50 `/ray deploy` commands for production between
/// them: exactly one release gets the lock, every other command is told who holds it.
#[test]
fn two_replicas_and_fifty_deploys_make_one_release() {
    let server = RedisServer::start();
    let url = server.url();
    let ws = Workspace::new();
    let people = ["alice", "bob", "carol", "dave", "erin"];
    let input = |offset: usize| {
        (0..25)
            .map(|i| format!("/as {}\n/ray deploy v1.{}\n", people[(i + offset) % 5], i + offset))
            .collect::<String>()
    };
    let spawn = |name: &str, offset: usize| {
        let mut cmd = ws.raybot(Some(&url));
        cmd.args(["chat", "--user", "alice"]).env("RAYBOT_REPLICA", name);
        let mut chat = LiveChat::start(cmd);
        for line in input(offset).lines() {
            chat.send(line);
        }
        chat
    };
    let (a, b) = (spawn("replica-a", 0), spawn("replica-b", 25));
    let (a, b) = (a.finish(Duration::from_secs(120)), b.finish(Duration::from_secs(120)));
    let both = format!("{a}\n{b}");
    let refused = both.matches("[RAY ERROR] production is locked by release ").count();
    assert_eq!(refused, 49, "{both}");

    let (status, code) =
        crate::support::run(ws.raybot(Some(&url)).args(["status", "--json"]), "", Duration::from_secs(20));
    assert_eq!(code, 0, "{status}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&status).unwrap();
    assert_eq!(list.len(), 1, "{status}");
    let holder = list[0]["id"].as_str().unwrap();
    assert_eq!(both.matches(&format!("production is locked by release {holder}")).count(), 49, "{both}");
}

/// The job queue on a real Redis: three replicas taking jobs at once get each job exactly once; a
/// job is queued once however often it is asked for; a replica that stops renewing its claims
/// loses them to another, which learns whose they were; the stopped one cannot renew them after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_queue_hands_each_job_to_exactly_one_replica_and_finds_abandoned_ones() {
    let server = RedisServer::start();
    job_queue_contract(&RedisStore::open(&server.url()).expect("open")).await;
    let keys = server.command(&["KEYS", "raybot:{jobs:slack}*"]);
    assert!(keys.contains("raybot:{jobs:slack}") && keys.contains(":ids"), "one hash tag per queue: {keys}");
}

/// The same on a Redis Cluster (every queue script stays in the `{jobs:<platform>}` slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_queue_works_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    job_queue_contract(&RedisStore::open(&cluster.url()).expect("open")).await;
}

async fn job_queue_contract(store: &RedisStore) {
    let q: Arc<dyn JobQueue> = store.queue().expect("redis has a job queue");
    for i in 0..60 {
        assert!(q.enqueue("slack", &format!("r#job{i}"), &format!("payload {i}")).await.expect("enqueue"));
    }
    assert!(!q.enqueue("slack", "r#job7", "payload 7 again").await.expect("enqueue"), "queued twice");

    let mut takers = Vec::new();
    for name in ["replica-1", "replica-2", "replica-3"] {
        let q = q.clone();
        takers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(j) = q.take("slack", name).await.expect("take") {
                got.push(j);
            }
            (name, got)
        }));
    }
    let mut by: std::collections::BTreeMap<&str, Vec<raybot::store::QueuedJob>> = Default::default();
    for t in takers {
        let (name, got) = t.await.expect("taker");
        by.insert(name, got);
    }
    let mut all: Vec<String> = by.values().flatten().map(|j| j.job.clone()).collect();
    all.sort();
    let mut expected: Vec<String> = (0..60).map(|i| format!("r#job{i}")).collect();
    expected.sort();
    assert_eq!(all, expected, "every job exactly once");
    assert!(by.values().flatten().all(|j| j.payload == format!("payload {}", &j.job[5..])), "payloads kept");
    assert!(q.take("slack", "replica-1").await.expect("take").is_none());
    assert!(q.take("discord", "replica-1").await.expect("take").is_none(), "queues are per platform");

    // What a replica had taken is still listed under its name (what a restart under that name finds).
    for (name, got) in &by {
        let mut pending: Vec<String> =
            q.taken_by("slack", name).await.expect("taken_by").into_iter().map(|j| j.job).collect();
        let mut mine: Vec<String> = got.iter().map(|j| j.job.clone()).collect();
        pending.sort();
        mine.sort();
        assert_eq!(pending, mine, "{name}");
    }

    // replica-3 finishes its jobs; replica-1 renews one claim and then stops; replica-2 looks.
    for j in &by["replica-3"] {
        q.done("slack", &j.entry, &j.job).await.expect("done");
    }
    assert!(q.claim_abandoned("slack", "replica-2", 60_000).await.expect("claim").is_empty(), "nothing idle yet");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let renewed = &by["replica-1"][0];
    assert!(q.extend("slack", "replica-1", &renewed.entry).await.expect("extend"));
    assert!(!q.extend("slack", "replica-2", &renewed.entry).await.expect("extend"), "not replica-2's to renew");
    let claimed = q.claim_abandoned("slack", "replica-2", 300).await.expect("claim");
    let mut claimed_jobs: Vec<String> = claimed.iter().map(|(j, _)| j.job.clone()).collect();
    claimed_jobs.sort();
    let mut lost: Vec<String> = by["replica-1"][1..].iter().map(|j| j.job.clone()).collect();
    lost.sort();
    assert_eq!(claimed_jobs, lost, "replica-1's idle jobs, not its renewed one nor replica-2's own");
    assert!(claimed.iter().all(|(_, owner)| owner == "replica-1"), "{claimed:?}");
    assert!(q.claim_abandoned("slack", "replica-3", 300).await.expect("claim").is_empty(), "claimed once");
    if let Some((j, _)) = claimed.first() {
        assert!(!q.extend("slack", "replica-1", &j.entry).await.expect("extend"), "a lost claim cannot be renewed");
    }

    // Done jobs are forgotten: the same id can be queued again.
    for j in by.values().flatten() {
        q.done("slack", &j.entry, &j.job).await.expect("done");
    }
    for name in ["replica-1", "replica-2", "replica-3"] {
        assert!(q.taken_by("slack", name).await.expect("taken_by").is_empty(), "{name}");
    }
    assert!(q.enqueue("slack", "r#job7", "payload 7").await.expect("enqueue"));
}

/// Two replicas; the one running the production deploy job is killed. The survivor finds the job
/// (pending past its lease), says its outcome is unknown naming the stopped replica, does not run
/// it again, and rolls back when told. The survivor's start-up left the release alone while its
/// replica was alive.
#[test]
fn a_survivor_reports_the_job_of_a_stopped_replica_and_rolls_back() {
    let server = RedisServer::start();
    let url = server.url();
    let ws = Workspace::new();
    ws.edit_config(|t| t.replacen("job_lease_seconds = 15", "job_lease_seconds = 2", 1));
    freeze_confirmed_before_a_slow_deploy(&ws, &url);

    let replica = |name: &str, user: &str| {
        let mut cmd = ws.raybot(Some(&url));
        cmd.args(["chat", "--user", user]).env("RAYBOT_REPLICA", name);
        LiveChat::start(cmd)
    };
    let mut a = replica("replica-a", "bob");
    approve_until_the_deploy_job_runs(&ws, &mut a);
    let log = || production_deploy_log(&ws);

    // replica-b starts while replica-a is alive and running the job: it leaves the release alone.
    let mut b = replica("replica-b", "alice");
    b.send("/ray status");
    b.wait_for("[RAY STATUS] v1.2-production", Duration::from_secs(30));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let events = rt.block_on(async { log_of(&RedisStore::open(&url).expect("open")).await.1 });
    assert!(
        !events
            .iter()
            .any(|e| matches!(&e.event, raybot::engine::Event::Resumed { replica, .. } if replica == "replica-b")),
        "a replica resumed a release a live replica drives"
    );

    a.kill();
    b.wait_for("Reason: job outcome unknown after replica-a stopped. Awaiting instructions.", Duration::from_secs(30));
    b.send("/ray rollback deploy outcome unknown");
    let out = b.finish(Duration::from_secs(90));
    assert!(out.to_lowercase().contains("rolled back"), "{out}");
    assert_eq!(out.matches("job outcome unknown after replica-a stopped").count(), 1, "said once:\n{out}");
    assert_eq!(log().matches("$ sleep 8").count(), 1, "the deploy job ran again:\n{}", log());
    assert_eq!(ws.serving(ws.production_port), "v1.1");
    let events = rt.block_on(async { log_of(&RedisStore::open(&url).expect("open")).await.1 });
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.event, raybot::engine::Event::JobLost { replica, .. } if replica == "replica-a"))
    );
}

/// `rediss://`: raybot talks TLS to Redis and verifies the server's certificate — against the
/// system's roots, or a private CA named by `SSL_CERT_FILE`. Without the CA it refuses to connect
/// and says the store is unavailable (nothing is written in the clear).
#[test]
fn rediss_verifies_the_server_certificate() {
    let server = RedisServer::start_tls();
    let url = server.tls_url();
    let ca = server.tls.as_ref().unwrap().1.clone();
    let ws = Workspace::new();

    let mut untrusted = ws.raybot(Some(&url));
    untrusted.args(["chat", "--user", "alice"]).env_remove("SSL_CERT_FILE").env("SSL_CERT_DIR", ws.path());
    let (out, _) = crate::support::run(&mut untrusted, "/ray deploy v1.2\n", Duration::from_secs(60));
    assert!(out.contains("state store unavailable") && out.contains("invalid peer certificate"), "{out}");
    assert!(server.command(&["DBSIZE"]).starts_with(":0"), "nothing written without a trusted certificate");

    let mut trusted = ws.raybot(Some(&url));
    trusted.args(["chat", "--user", "alice"]).env("SSL_CERT_FILE", &ca);
    let (out, code) = crate::support::run(&mut trusted, "/ray deploy v1.2\n", Duration::from_secs(60));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("started by @alice"), "{out}");
    let mut status = ws.raybot(Some(&url));
    status.args(["status", "--json"]).env("SSL_CERT_FILE", &ca);
    let (json, code) = crate::support::run(&mut status, "", Duration::from_secs(30));
    assert_eq!(code, 0, "{json}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&json).expect("json");
    assert_eq!(list.len(), 1, "{json}");
    assert!(server.command(&["KEYS", "raybot:*:log"]).contains(list[0]["id"].as_str().unwrap()));
}
