//! Logs recorded by an earlier build replay unchanged: the engine folds them to the state they
//! recorded, and both stores (embedded and Redis) give every line back byte for byte.
//!
//! `tests/fixtures/chat-release-v1.2.jsonl` is the stored event log of a whole release (four
//! `raybot chat` sessions: refusals, reactions, button clicks, restarts, jobs, probes, the health
//! window, bundles) recorded before the engine's ids became types of their own;
//! `chat-release-v1.2.expected.json` is what that build folded it to. They were recorded at commit
//! 7eaa535 with four `raybot chat` sessions on the embedded store (`alice`: `/ray deploy v1.2`, then
//! mallory's `/ray approve`; alice's `/ray approve evidence reviewed` and bob's `/click approve`;
//! the freeze acknowledged by `/ray ack`, `/react ✅` and mallory's refused ✅; erin's refused
//! approval and the approvals of bob and carol) and are never re-recorded: the point of the
//! fixture is that the log format does not change.

use std::path::PathBuf;

use raybot::driver::StoredEvent;
use raybot::engine::{Event, PostKey, Release, Timestamp};
use raybot::store::file::FileStore;
use raybot::store::redis::RedisStore;
use raybot::store::{ReleaseSummary, Store};
use serde_json::{Value, json};

use crate::redis_server::RedisServer;

const LOG: &str = "chat-release-v1.2.jsonl";
const EXPECTED: &str = "chat-release-v1.2.expected.json";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn lines() -> Vec<String> {
    let text = std::fs::read_to_string(fixture(LOG)).expect("fixture log");
    text.lines().map(str::to_string).collect()
}

fn parse(lines: &[String]) -> Vec<(Timestamp, Event)> {
    lines
        .iter()
        .map(|l| {
            let e: StoredEvent = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            (e.at, e.event)
        })
        .collect()
}

/// The parts of the folded state a user sees: status, outcome, the platform's message ids per
/// post, gate verdicts, jobs and the audit trail's size. Texts are left out on purpose: how people
/// are named in them may change; what happened may not.
fn folded(r: &Release) -> Value {
    json!({
        "release": r.id,
        "status": r.activity.label(),
        "finished": r.is_finished(),
        "outcome": match &r.activity { raybot::engine::Activity::Ended(t) => serde_json::to_value(t).unwrap(), _ => Value::Null },
        "posts": r.posts,
        "gates": r.gates.iter().map(|g| json!([g.protocol, g.name, g.verdict])).collect::<Vec<_>>(),
        "jobs": r.jobs.iter().map(|j| json!([j.purpose, j.outcome.as_ref().and_then(|o| o.exit_code)])).collect::<Vec<_>>(),
        "audit": r.audit.iter().map(|a| json!([a.who, a.accepted])).collect::<Vec<_>>(),
        "next_id": r.next_id,
    })
}

fn replayed(lines: &[String]) -> Release {
    Release::replay(&parse(lines)).expect("the log starts a release")
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(EXPECTED)).expect("expected state")).expect("json")
}

fn summary(r: &Release, events: u64) -> ReleaseSummary {
    raybot::driver::summary(r, events, "fixture")
}

#[test]
fn a_log_recorded_by_an_earlier_build_folds_to_the_state_it_recorded() {
    let lines = lines();
    assert!(lines.len() > 50, "the fixture holds a whole release ({} events)", lines.len());
    assert_eq!(folded(&replayed(&lines)), expected());
}

#[test]
fn typed_ids_in_the_folded_state_read_as_the_strings_they_were() {
    let r = replayed(&lines());
    let state = serde_json::to_value(&r).expect("json");
    assert_eq!(state["jobs"][0]["id"], format!("{}#job2", r.id));
    assert_eq!(state["probes"][0]["id"], format!("{}#probe4", r.id));
    let keys: Vec<&String> = state["posts"].as_object().expect("posts").keys().collect();
    assert_eq!(keys, ["approval:0", "approval:1", "freeze"]);
    let typed: Vec<&PostKey> = r.posts.keys().collect();
    assert_eq!(typed, [&PostKey::Freeze, &PostKey::Approval(0), &PostKey::Approval(1)]);
    let back: Release = serde_json::from_value(state).expect("the state reads back");
    assert_eq!(folded(&back), expected());
}

#[test]
fn every_recorded_event_is_written_back_exactly_as_it_was_stored() {
    // A log on Redis mixes lines of two builds once a release is resumed by a newer one: both
    // must read the same, so today's types serialise to the very bytes of the old ones.
    for l in lines() {
        let e: StoredEvent = serde_json::from_str(&l).expect("parse");
        assert_eq!(serde_json::to_string(&e).expect("json"), l);
    }
}

async fn round_trip(store: &dyn Store) {
    let lines = lines();
    let r = replayed(&lines);
    let (head, tail) = lines.split_at(lines.len() / 2);
    let n = store.append(&r.id, 0, head, &summary(&r, head.len() as u64), None, None).await.expect("append");
    store.append(&r.id, n, tail, &summary(&r, lines.len() as u64), None, None).await.expect("append");
    let back = store.read(&r.id).await.expect("read");
    assert_eq!(back, lines, "the store gives the log back byte for byte");
    assert_eq!(folded(&replayed(&back)), expected());
    let rows = store.summaries().await.expect("summaries");
    let row = rows.iter().find(|s| s.id == r.id).expect("indexed");
    assert_eq!((row.status.as_str(), row.finished), (expected()["status"].as_str().unwrap(), true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorded_log_replays_through_the_embedded_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::open(dir.path()).expect("open");
    round_trip(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorded_log_replays_through_redis() {
    let server = RedisServer::start();
    let store = RedisStore::open(&server.url()).expect("open");
    round_trip(&store).await;
}
