//! The driver's own promises, on the embedded store and a chat sink the test controls.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Semaphore, oneshot};

use super::*;
use crate::chat::{ChatError, Handled};

/// A chat platform that performs nothing until the test lets it, and records what it did.
struct Gated {
    gate: Semaphore,
    posts: Mutex<Vec<String>>,
}

impl Gated {
    /// A platform that performs `permits` calls before the test lets it go on.
    fn new(permits: usize) -> Arc<Gated> {
        Arc::new(Gated { gate: Semaphore::new(permits), posts: Mutex::new(Vec::new()) })
    }
}

/// The embedded store in `dir/store`.
fn file_store(dir: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(crate::store::file::FileStore::open(&dir.join("store")).expect("store"))
}

#[async_trait]
impl ChatSink for Gated {
    async fn post(&self, text: &str, _ask: &Ask) -> Result<String, ChatError> {
        let _permit = self.gate.acquire().await.map_err(|_| ChatError("closed".into()))?;
        let mut p = self.posts.lock().unwrap();
        p.push(text.to_string());
        Ok(format!("m{}", p.len()))
    }
    async fn update(&self, _message: &str, _text: &str) -> Result<(), ChatError> {
        let _permit = self.gate.acquire().await.map_err(|_| ChatError("closed".into()))?;
        Ok(())
    }
    async fn reply(&self, _to: &UserRef, _text: &str) -> Result<(), ChatError> {
        Ok(())
    }
    fn live_status(&self) -> bool {
        true
    }
}

fn driver(dir: &std::path::Path, chat: Arc<Gated>) -> Driver {
    let config = Config::embedded(dir).expect("embedded config");
    let catalog = Catalog::embedded().expect("embedded protocols");
    let store = file_store(dir);
    Driver::new(config, catalog, store, chat, dir.join("artifacts"), Platform::Local, Arc::new(Metrics::new()))
}

async fn say(d: &mut Driver, who: &str, text: &str, key: &str) -> Handled {
    let (tx, rx) = oneshot::channel();
    let inbound = Inbound::command(UserRef::new(Platform::Local, who), text).expect("valid /ray command");
    d.deliver(Delivery { key: Some(key.to_string()), inbound, done: Some(tx) }).await;
    rx.await.expect("answered")
}

/// Handles what comes back until the outbox has performed everything (what the run loop does
/// for [`crate::chat::handle::DriverHandle::flush`]).
async fn flush(d: &mut Driver) {
    while !d.settled() {
        if let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(50), d.recv_internal()).await {
            d.handle_internal(msg).await;
        }
    }
}

#[tokio::test]
async fn a_deploy_is_answered_and_recorded_while_the_platform_has_posted_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let chat = Gated::new(0);
    let mut d = driver(dir.path(), chat.clone());

    let answer = tokio::time::timeout(Duration::from_secs(5), say(&mut d, "alice", "/ray deploy v1.2", "k1"))
        .await
        .expect("answered without waiting for chat");
    assert_eq!(answer, Handled { duplicate: false, replies: vec![] });
    assert!(chat.posts.lock().unwrap().is_empty(), "nothing was posted yet");
    let id = d.active().next().expect("a release").id.clone();
    assert_eq!(d.store.read(&id).await.unwrap().len(), 1, "Started is recorded");
    assert!(d.outbox.pending() > 0, "the announcements wait in the outbox");

    // Read-only commands are answered from what the driver knows, without a write.
    let status = say(&mut d, "bob", "/ray status", "k2").await;
    assert!(status.replies[0].starts_with(&format!("[RAY STATUS] {id}")), "{status:?}");
    let help = say(&mut d, "bob", "/ray help", "k3").await;
    assert!(help.replies[0].starts_with("/ray deploy <version>"));
    assert!(!d.store.seen("inbound:k2", crate::clock::now().0).await.unwrap(), "a status records nothing");

    // The platform comes back: the posts go out in order, the status message once, and its id
    // is recorded in the log so every replica edits the same message.
    chat.gate.add_permits(10_000);
    tokio::time::timeout(Duration::from_secs(10), flush(&mut d)).await.expect("the outbox drains");
    let posts = chat.posts.lock().unwrap().clone();
    assert!(posts[0].starts_with(&format!("[RAY] Release {id} of v1.2")), "{posts:?}");
    assert_eq!(posts.iter().filter(|p| p.starts_with("[RAY STATUS]")).count(), 1, "{posts:?}");
    let release = d.active().next().unwrap();
    assert!(release.posts.contains_key(&PostKey::Status), "{:?}", release.posts);
}

#[tokio::test]
async fn a_second_deploy_is_told_which_release_holds_the_environment_and_leaves_its_lock_alone() {
    let dir = tempfile::tempdir().unwrap();
    let chat = Gated::new(10_000);
    let mut d = driver(dir.path(), chat);
    say(&mut d, "alice", "/ray deploy v1.2", "k1").await;
    let id = d.active().next().unwrap().id.clone();
    let lock = d.store.lock_holder("production", crate::clock::now().0).await.unwrap().expect("locked");
    let refused = say(&mut d, "bob", "/ray deploy v1.3", "k2").await;
    assert!(refused.replies[0].starts_with(&format!("[RAY ERROR] production is locked by release {id} (v1.2 by ")));
    let after = d.store.lock_holder("production", crate::clock::now().0).await.unwrap().expect("still locked");
    assert_eq!((after.owner, after.token), (lock.owner, lock.token));
}

#[test]
fn release_ids_of_one_second_differ_and_keep_their_readable_part() {
    let at = Timestamp(1_763_768_060_123);
    let ids: BTreeSet<ReleaseId> = (0..64).map(|_| new_release_id("v1.2", "production", at)).collect();
    assert!(ids.len() > 60, "{ids:?}");
    for id in &ids {
        let (head, tail) = id.rsplit_once('-').unwrap();
        assert_eq!(head, "v1.2-production-20251121T233420Z");
        assert_eq!(tail.len(), 4);
        assert!(tail.chars().all(|c| c.is_ascii_hexdigit()));
    }
}

#[tokio::test]
async fn the_read_side_answers_status_from_the_board_until_another_replica_moves_a_release_on() {
    use crate::chat::handle::ReadSide;
    let dir = tempfile::tempdir().unwrap();
    let chat = Gated::new(10_000);
    let mut a = driver(dir.path(), chat.clone());
    let catalog = Catalog::embedded().unwrap();
    let reader = reader::Reader::new(a.store.clone(), a.board.clone(), &catalog);
    let status = Command::Status { version: None };
    assert_eq!(reader.answer(&status).await.as_deref(), Some(answers::status(std::iter::empty(), None).as_str()));

    say(&mut a, "alice", "/ray deploy v1.2", "k1").await;
    let id = a.active().next().unwrap().id.clone();
    let seen = reader.answer(&status).await.expect("answered from the board");
    assert!(seen.starts_with(&format!("[RAY STATUS] {id}")), "{seen}");

    // A second driver on the same store (another replica) records an event the board has not seen.
    let config = Config::embedded(dir.path()).unwrap();
    let mut b = Driver::new(
        config,
        catalog.clone(),
        a.store.clone(),
        chat,
        dir.path().join("b"),
        Platform::Local,
        Arc::default(),
    );
    say(&mut b, "alice", "/ray abort changed our minds", "k2").await;
    assert_eq!(reader.answer(&status).await, None, "behind the store: the driver must catch up first");
    // The driver catches up on its next delivery and publishes again.
    let answer = say(&mut a, "bob", "/ray status", "k3").await;
    assert!(answer.replies[0].starts_with("[RAY] No release is running."), "{answer:?}");
    assert_eq!(reader.answer(&status).await, Some(answer.replies[0].clone()));
    assert_eq!(reader.answer(&Command::Help).await.as_deref(), Some(HELP));
}

/// What another replica writes just before a group's write.
type OtherWrites = Box<dyn FnOnce() -> Vec<crate::store::Append> + Send>;

/// The embedded store, with a hook that runs just before a group's write (another replica
/// writing in between).
struct Interleaved {
    inner: Arc<dyn Store>,
    before_group: Mutex<Option<OtherWrites>>,
    /// Writes (group commits and single appends alike) so far.
    writes: std::sync::atomic::AtomicUsize,
    /// Writes of announced marks so far.
    marks: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Store for Interleaved {
    async fn append_all(&self, group: &[crate::store::Append]) -> Vec<Result<u64, StoreError>> {
        self.writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let hook = self.before_group.lock().unwrap().take();
        if let Some(hook) = hook {
            for a in hook() {
                self.inner.append(&a.release, a.expected_len, &a.events, &a.summary, a.fence, None).await.unwrap();
            }
        }
        self.inner.append_all(group).await
    }
    async fn seen(&self, key: &str, now_ms: u64) -> Result<bool, StoreError> {
        self.inner.seen(key, now_ms).await
    }
    async fn read(&self, release: &str) -> Result<Vec<String>, StoreError> {
        self.inner.read(release).await
    }
    async fn summaries(&self) -> Result<Vec<ReleaseSummary>, StoreError> {
        self.inner.summaries().await
    }
    async fn lock(&self, env: &str, owner: &str, lease_ms: u64, now_ms: u64) -> Result<LockOutcome, StoreError> {
        self.inner.lock(env, owner, lease_ms, now_ms).await
    }
    async fn unlock(&self, env: &str, owner: &str, token: u64) -> Result<bool, StoreError> {
        self.inner.unlock(env, owner, token).await
    }
    async fn lock_holder(&self, env: &str, now_ms: u64) -> Result<Option<crate::store::Lock>, StoreError> {
        self.inner.lock_holder(env, now_ms).await
    }
    async fn remember(&self, key: &str, ttl_ms: u64, now_ms: u64) -> Result<bool, StoreError> {
        self.inner.remember(key, ttl_ms, now_ms).await
    }
    async fn health(&self) -> Result<(), StoreError> {
        self.inner.health().await
    }
    async fn announced(&self, release: &str) -> Result<Option<BTreeMap<String, u64>>, StoreError> {
        self.inner.announced(release).await
    }
    async fn set_announced(&self, release: &str, replica: &str, through: u64) -> Result<(), StoreError> {
        self.marks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.set_announced(release, replica, through).await
    }
}

/// A release waiting for change-freeze acknowledgements, recorded in `store` as raybot would
/// have; returns its id and the freeze message's id.
async fn release_in_freeze(store: &dyn Store) -> (ReleaseId, String) {
    let mut sim = crate::engine::testkit::Sim::new();
    sim.start("alice", crate::engine::Strategy::Bluegreen);
    sim.command("alice", ReleaseCommand::Approve { comment: None });
    sim.command("bob", ReleaseCommand::Approve { comment: None });
    (seed(store, &sim.log).await.unwrap(), sim.message(&PostKey::Freeze))
}

fn toggle(who: &str, message: &str, added: bool, key: &str) -> (Delivery, oneshot::Receiver<Handled>) {
    let (tx, rx) = oneshot::channel();
    let inbound = Inbound::Reaction {
        user: UserRef::new(Platform::Local, who),
        message: message.to_string(),
        emoji: "white_check_mark".into(),
        added,
    };
    (Delivery { key: Some(key.to_string()), inbound, done: Some(tx) }, rx)
}

fn recorded_events(lines: &[String]) -> Vec<Event> {
    lines.iter().map(|l| serde_json::from_str::<StoredEvent>(l).unwrap().event).collect()
}

#[tokio::test]
async fn deliveries_that_queued_together_are_recorded_in_order_and_each_answered_once() {
    let dir = tempfile::tempdir().unwrap();
    let chat = Gated::new(10_000);
    let mut d = driver(dir.path(), chat);
    let (id, freeze) = release_in_freeze(d.store.as_ref()).await;
    d.refresh(d.store.unfinished().await.unwrap()).await.unwrap();
    let before = d.store.read(&id).await.unwrap().len();

    let mut group = Vec::new();
    let mut answers = Vec::new();
    for (i, (who, added)) in
        [("bob", true), ("carol", true), ("mallory", true), ("bob", false), ("dave", true)].into_iter().enumerate()
    {
        let (delivery, rx) = toggle(who, &freeze, added, &format!("g{i}"));
        group.push(delivery);
        answers.push(rx);
    }
    // The same platform event twice (a retry) in one group, and a deploy in the middle that
    // must be handled on its own, in its place.
    let (retry, retry_rx) = toggle("carol", &freeze, true, "g1");
    group.insert(2, retry);
    let (tx, deploy_rx) = oneshot::channel();
    let deploy = Inbound::command(UserRef::new(Platform::Local, "erin"), "/ray deploy v1.3").unwrap();
    group.insert(4, Delivery { key: Some("g-deploy".into()), inbound: deploy, done: Some(tx) });
    d.deliver_all(group).await;

    let mut got = Vec::new();
    for rx in answers {
        got.push(rx.await.expect("answered"));
    }
    assert_eq!(got[0], Handled::default(), "bob's ✅ is recorded and says nothing");
    assert!(got[2].replies[0].starts_with("[RAY ERROR] mallory is not on the change-freeze list"), "{got:?}");
    assert!(retry_rx.await.unwrap().duplicate, "the retry counts once");
    let deploy = deploy_rx.await.unwrap();
    assert!(deploy.replies[0].starts_with("[RAY ERROR] production is locked by release"), "{deploy:?}");

    let lines = d.store.read(&id).await.unwrap();
    let events = recorded_events(&lines[before..]);
    let order: Vec<(String, bool)> = events
        .iter()
        .map(|e| match e {
            Event::Reaction { by, added, .. } => (by.id.clone(), *added),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let expected = [("bob", true), ("carol", true), ("mallory", true), ("bob", false), ("dave", true)];
    assert_eq!(order, expected.map(|(w, a)| (w.to_string(), a)).to_vec(), "recorded once each, in arrival order");
    let acked: Vec<&str> = d.active().next().unwrap().freeze.acks.keys().map(String::as_str).collect();
    assert_eq!(acked, ["carol", "dave"], "the state in memory is the state recorded");
}

#[tokio::test]
async fn a_group_another_replica_wrote_in_front_of_is_decided_again_on_the_newer_state() {
    let dir = tempfile::tempdir().unwrap();
    let chat = Gated::new(10_000);
    let file = file_store(dir.path());
    let (id, freeze) = release_in_freeze(file.as_ref()).await;
    let store = Arc::new(Interleaved {
        inner: file.clone(),
        before_group: Mutex::new(None),
        writes: Default::default(),
        marks: Default::default(),
    });
    let config = Config::embedded(dir.path()).unwrap();
    let mut d = Driver::new(
        config,
        Catalog::embedded().unwrap(),
        store.clone(),
        chat,
        dir.path().join("artifacts"),
        Platform::Local,
        Arc::default(),
    );
    d.refresh(file.unfinished().await.unwrap()).await.unwrap();
    let before = file.read(&id).await.unwrap().len() as u64;

    // Between this replica's read and its write, another replica records erin's ✅.
    let (other_id, other_freeze) = (id.clone(), freeze.clone());
    let other_store = file.clone();
    let row = other_store.summaries().await.unwrap().into_iter().find(|r| r.id == id).unwrap();
    *store.before_group.lock().unwrap() = Some(Box::new(move || {
        let ev = Event::Reaction {
            by: UserRef::new(Platform::Local, "erin"),
            message: other_freeze,
            emoji: "white_check_mark".into(),
            added: true,
        };
        let line =
            serde_json::to_string(&StoredEvent { at: crate::clock::now(), event: ev, replica: Some("b".into()) })
                .unwrap();
        let mut row = row;
        row.events = before + 1;
        vec![crate::store::Append {
            release: other_id.into(),
            expected_len: before,
            events: vec![line],
            summary: row,
            fence: None,
            once: Vec::new(),
            once_ttl_ms: 0,
        }]
    }));
    let (a, a_rx) = toggle("bob", &freeze, true, "c1");
    let (b, b_rx) = toggle("carol", &freeze, true, "c2");
    d.deliver_all(vec![a, b]).await;
    assert_eq!(a_rx.await.unwrap(), Handled::default());
    assert_eq!(b_rx.await.unwrap(), Handled::default());

    let who: Vec<String> = recorded_events(&file.read(&id).await.unwrap()[before as usize..])
        .iter()
        .map(|e| match e {
            Event::Reaction { by, .. } => by.id.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(who, ["erin", "bob", "carol"], "nothing lost, nothing twice");
    let acked: Vec<&str> = d.active().next().unwrap().freeze.acks.keys().map(String::as_str).collect();
    assert_eq!(acked, ["bob", "carol", "erin"]);
}

/// The loop behind a handle, as `raybot chat`, the demo and the tests use it: `handled` returns
/// once what was queued before it is decided, `flush` only once the platform has taken the
/// posts, `settle` once nothing runs; the progress shows the release running, then ended with
/// its outcome; `close` answers what was queued before it, flushes the outbox and stops.
#[tokio::test]
async fn a_handle_waits_for_what_was_sent_shows_progress_and_closes_after_answering_the_queue() {
    use crate::chat::handle::HandleError;
    let dir = tempfile::tempdir().unwrap();
    let chat = Gated::new(0);
    let handle = run::start(driver(dir.path(), chat.clone())).await.expect("the store is readable");
    let mut progress = handle.progress();
    let command = |who: &str, text: &str| Inbound::command(UserRef::new(Platform::Local, who), text).expect("valid");

    // No answer channel (a person typing in `raybot chat`): `handled` says when it is decided.
    handle.send(Delivery::new(command("alice", "/ray deploy v1.2"))).unwrap();
    handle.handled().await.unwrap();
    let shown = progress.borrow_and_update().clone();
    assert_eq!(shown.active.len(), 1, "{shown:?}");
    assert!(shown.finished.is_empty() && !shown.idle, "{shown:?}");
    let id = shown.active[0].id.clone();

    // The platform takes nothing yet: no flush; a wait given up on is forgotten.
    assert!(tokio::time::timeout(Duration::from_millis(300), handle.flush()).await.is_err(), "flushed");
    assert!(chat.posts.lock().unwrap().is_empty());
    chat.gate.add_permits(10_000);
    tokio::time::timeout(Duration::from_secs(10), handle.flush()).await.expect("flushed").unwrap();
    let posts = chat.posts.lock().unwrap().clone();
    assert!(posts[0].starts_with(&format!("[RAY] Release {id} of v1.2")), "{posts:?}");

    tokio::time::timeout(Duration::from_secs(30), handle.settle()).await.expect("settled").unwrap();
    let shown = progress.borrow_and_update().clone();
    assert!(shown.idle, "{shown:?}");
    assert!(shown.active[0].activity.needs_people(), "{shown:?}");
    assert!(shown.active[0].posts.contains_key(&PostKey::Status), "the status message's id is recorded: {shown:?}");

    // An abort ends it once its evidence bundle is written.
    handle.send(Delivery::new(command("alice", "/ray abort changed our minds"))).unwrap();
    tokio::time::timeout(Duration::from_secs(30), handle.settle()).await.expect("settled").unwrap();
    let shown = progress.borrow_and_update().clone();
    assert!(shown.active.is_empty() && shown.idle, "{shown:?}");
    assert!(matches!(&shown.finished[..], [(ended, Terminal::Aborted { by, .. })] if *ended == id && by == "alice"));

    // Queued right before the close: still answered, and its posts still go out.
    let other = handle.clone();
    let started = handle.submit(None, command("bob", "/ray deploy v1.3")).unwrap();
    tokio::time::timeout(Duration::from_secs(10), handle.close()).await.expect("closed");
    assert_eq!(started.await.expect("answered before the driver stopped"), Handled::default());
    assert!(progress.borrow_and_update().active.iter().any(|r| r.id.starts_with("v1.3-production-")));
    assert!(progress.changed().await.is_err(), "the driver task has ended");
    let posts = chat.posts.lock().unwrap().clone();
    assert!(posts.iter().any(|p| p.starts_with("[RAY] Release v1.3-production-")), "{posts:?}");

    // Nothing is taken after a close, through any handle.
    assert!(matches!(other.send(Delivery::new(command("bob", "/ray status"))), Err(HandleError::Stopped)));
    assert!(matches!(other.settle().await, Err(HandleError::Stopped)));
}

/// A driver named `replica` over `store` (two drivers standing for one process and its restart).
fn driver_on(dir: &std::path::Path, store: Arc<dyn Store>, chat: Arc<Gated>, replica: &str) -> Driver {
    let config = Config::embedded(dir).expect("embedded config");
    let catalog = Catalog::embedded().expect("embedded protocols");
    Driver::new(config, catalog, store, chat, dir.join("artifacts"), Platform::Local, Arc::new(Metrics::new()))
        .with_replica(replica)
}

/// Records `log` in `store` as raybot processes would have: events before `h` by `first`, whose
/// posts went out through event `first_mark`, the rest by raybot-c, which died before any of its
/// posts did.
async fn recorded_by_two_replicas(
    store: &dyn Store,
    log: &[(Timestamp, Event)],
    h: usize,
    (first, first_mark): (&str, u64),
) -> String {
    let release = Release::replay(log.iter()).unwrap();
    let lines: Vec<String> = log
        .iter()
        .enumerate()
        .map(|(n, (at, event))| {
            let replica = Some(if n < h { first } else { "raybot-c" }.to_string());
            serde_json::to_string(&StoredEvent { at: *at, event: event.clone(), replica }).unwrap()
        })
        .collect();
    let LockOutcome::Acquired(lock) = store.lock(&release.env, &release.id, 600_000, now().0).await.unwrap() else {
        panic!("locked")
    };
    let row = summary(&release, lines.len() as u64, "raybot-c");
    store.append(&release.id, 0, &lines, &row, Some(lock.token), None).await.unwrap();
    store.set_announced(&release.id, first, first_mark).await.unwrap();
    store.set_announced(&release.id, "raybot-c", 0).await.unwrap();
    release.id.into()
}

/// A release of v1.2 past its go/no-go in the simulator: its log, how many events its start
/// took (`h`), the protocol banner the start posted, and the announcements after the approvals.
struct Approved {
    sim: crate::engine::testkit::Sim,
    h: usize,
    banner: String,
    lost: Vec<String>,
}

fn approved() -> Approved {
    let mut sim = crate::engine::testkit::Sim::new();
    sim.start("alice", crate::engine::Strategy::Bluegreen);
    let h = sim.log.len();
    let banner = sim.channel.iter().find(|p| p.starts_with("[MASTER RAY™ | PROTOCOL 10")).unwrap().clone();
    sim.command("alice", ReleaseCommand::Approve { comment: None });
    sim.command("bob", ReleaseCommand::Approve { comment: None });
    let lost: Vec<String> = sim
        .channel
        .iter()
        .skip_while(|p| !p.contains("Approval recorded"))
        .filter(|p| p.starts_with("[MASTER RAY™"))
        .cloned()
        .collect();
    Approved { sim, h, banner, lost }
}

/// Replica raybot-c died after recording events but before their posts went out: the replica
/// that takes the release over posts what those events announced — once, in their order, before
/// it says it resumed — and nothing raybot-b had posted already; a restart after that posts none
/// of it again (the marks say it went out).
#[tokio::test]
async fn posts_a_crash_kept_from_the_platform_go_out_after_the_takeover_once_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_store(dir.path());
    let Approved { sim, h, banner, lost } = approved();
    assert!(lost.len() >= 2, "{:#?}", sim.channel);
    let id = recorded_by_two_replicas(store.as_ref(), &sim.log, h, ("raybot-b", h as u64)).await;

    let up = Gated::new(10_000);
    let mut survivor = driver_on(dir.path(), store.clone(), up.clone(), "raybot-a");
    assert_eq!(survivor.resume().await.unwrap(), 1);
    tokio::time::timeout(Duration::from_secs(10), flush(&mut survivor)).await.expect("the outbox drains");
    // A clean stop records the marks it had not written yet (at most one write per gap runs).
    survivor.write_marks().await;
    let posts = up.posts.lock().unwrap().clone();
    let at = |needle: &str| {
        let found: Vec<usize> = posts.iter().enumerate().filter(|(_, p)| p.contains(needle)).map(|(i, _)| i).collect();
        assert_eq!(found.len(), 1, "{needle:?} posted {} times: {posts:#?}", found.len());
        found[0]
    };
    let places: Vec<usize> = lost.iter().map(|p| at(p)).collect();
    assert!(places.windows(2).all(|w| w[0] < w[1]), "out of order: {posts:#?}");
    assert!(places.last() < Some(&at("Resumed after a restart")), "{posts:#?}");
    assert!(!posts.contains(&banner), "raybot-b's post went out before: {posts:#?}");
    let marks = survivor.store.announced(&id).await.unwrap().unwrap();
    // Through its last event that announced anything (the very last one may announce nothing).
    assert!(marks["raybot-c"] + 1 >= sim.log.len() as u64, "{marks:?} of {} events", sim.log.len());
    assert_eq!(marks["raybot-b"], h as u64, "raybot-b's mark is raybot-b's: {marks:?}");

    // The survivor restarts: none of it is posted again.
    drop(survivor);
    let again = Gated::new(10_000);
    let mut restarted = driver_on(dir.path(), store, again.clone(), "raybot-a");
    assert_eq!(restarted.resume().await.unwrap(), 1);
    tokio::time::timeout(Duration::from_secs(10), flush(&mut restarted)).await.expect("the outbox drains");
    let posts = again.posts.lock().unwrap().clone();
    assert!(lost.iter().all(|p| !posts.contains(p)), "{posts:#?}");
    assert_eq!(posts.iter().filter(|p| p.contains("Resumed after a restart")).count(), 1, "{posts:#?}");
}

/// A running replica that sweeps up a release raybot-c left posts only raybot-c's lost posts:
/// its own events' posts that have not gone out yet are still in its own outbox, so deriving them
/// again would post them twice.
#[tokio::test]
async fn a_running_survivor_that_sweeps_up_a_release_posts_the_dead_replicas_posts_not_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = file_store(dir.path());
    let Approved { sim, h, banner, lost } = approved();
    assert!(!lost.is_empty(), "{:#?}", sim.channel);
    // raybot-a recorded the start and none of its posts has gone out yet (mark 0).
    let id = recorded_by_two_replicas(store.as_ref(), &sim.log, h, ("raybot-a", 0)).await;

    let up = Gated::new(10_000);
    let mut survivor = driver_on(dir.path(), store.clone(), up.clone(), "raybot-a");
    survivor.sweep().await.unwrap();
    assert!(survivor.releases.contains_key(&id), "the sweep took the release over");
    tokio::time::timeout(Duration::from_secs(10), flush(&mut survivor)).await.expect("the outbox drains");
    let posts = up.posts.lock().unwrap().clone();
    for p in &lost {
        assert_eq!(posts.iter().filter(|q| *q == p).count(), 1, "{p:?}: {posts:#?}");
    }
    assert!(!posts.contains(&banner), "raybot-a's own post is in its outbox, not derived again: {posts:#?}");
}

/// A driver named raybot-a on a store that counts its writes, with a release of v1.2 started and
/// its first posts out.
async fn counted_release(dir: &std::path::Path) -> (Driver, Arc<Interleaved>, String) {
    let file = file_store(dir);
    let store = Arc::new(Interleaved {
        inner: file,
        before_group: Mutex::new(None),
        writes: Default::default(),
        marks: Default::default(),
    });
    let chat = Gated::new(10_000);
    let mut d = driver_on(dir, store.clone(), chat, "raybot-a");
    say(&mut d, "alice", "/ray deploy v1.2", "k1").await;
    tokio::time::timeout(Duration::from_secs(20), flush(&mut d)).await.expect("the outbox drains");
    let id = d.active().next().unwrap().id.to_string();
    (d, store, id)
}

/// Evidence that cannot be written comes back as events to record: those one event's effects
/// bring are decided one after another and recorded together, in one write.
#[tokio::test]
async fn the_follow_ups_of_one_event_are_recorded_in_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let (mut d, store, id) = counted_release(dir.path()).await;
    let before = d.store.read(&id).await.unwrap().len();
    let writes = store.writes.load(std::sync::atomic::Ordering::SeqCst);

    let failed = |file: &str| Event::EvidenceFailed { file: file.into(), error: "disk full".into() };
    let follow = vec![failed("intake/a.json"), failed("intake/b.json"), failed("intake/c.json")];
    d.apply_all(&id, follow, &mut Turn::background()).await.expect("recorded");
    assert_eq!(store.writes.load(std::sync::atomic::Ordering::SeqCst), writes + 1, "one write for the three");
    let events = recorded_events(&d.store.read(&id).await.unwrap());
    let files: Vec<&str> = events[before..]
        .iter()
        .filter_map(|e| match e {
            Event::EvidenceFailed { file, .. } => Some(file.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(files, ["intake/a.json", "intake/b.json", "intake/c.json"]);
    assert_eq!(d.releases.get(&id).unwrap().log_len, events.len() as u64);
}

/// A burst of posts going out moves a release's mark in the store a few times a second, not once
/// per post; a clean stop writes the last figure.
#[tokio::test]
async fn a_burst_of_posts_costs_the_store_a_few_mark_writes_and_a_stop_writes_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let (mut d, store, id) = counted_release(dir.path()).await;
    let before = store.marks.load(std::sync::atomic::Ordering::SeqCst);

    for n in 1..=200 {
        d.went_out(&id, crate::chat::outbox::Through { replica: "raybot-a".into(), events: 1000 + n });
        if let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(1), d.recv_internal()).await {
            d.handle_internal(msg).await;
        }
    }
    tokio::time::timeout(Duration::from_secs(10), flush(&mut d)).await.expect("settled");
    let during = store.marks.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!((1..=3).contains(&during), "{during} mark writes for 200 posts");
    d.write_marks().await;
    assert_eq!(d.store.announced(&id).await.unwrap().unwrap()["raybot-a"], 1200);
}
