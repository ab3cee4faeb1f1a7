//! Load benchmark: platform deliveries through raybot's real driver (idempotency check, catch-up
//! read, engine, append with fencing token, index rows) on a Redis store on loopback.
//!
//! `cargo bench --bench redis_load` starts its own `redis-server` (or uses `REDIS_URL`), offers
//! deliveries at a fixed rate (`RAYBOT_LOAD_RATE`, default 1000/s) for `RAYBOT_LOAD_SECONDS`
//! (default 10), and prints events/s, p50/p99 handling latency and Redis round trips per event.
//! `scripts/bench_redis.sh` runs it next to `redis-benchmark -t set` and prints the ratio.
//! Targets: at most 2 round trips per accepted event, p99 under 5 ms at 1,000 events/s.

#[path = "../tests/support/redis.rs"]
mod redis_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use raybot::chat::{ChatError, ChatSink, Inbound};
use raybot::driver::{Driver, StoredEvent, summary};
use raybot::engine::testkit::Sim;
use raybot::engine::{Ask, Event, PostKey, Release, ReleaseCommand, Strategy, UserRef};
use raybot::store::Store;
use raybot::store::redis::RedisStore;

/// A chat platform that accepts everything (the benchmark measures raybot and Redis, not Slack).
struct Quiet;

#[async_trait]
impl ChatSink for Quiet {
    async fn post(&self, _text: &str, _ask: &Ask) -> Result<String, ChatError> {
        Ok("m".into())
    }
    async fn update(&self, _message: &str, _text: &str) -> Result<(), ChatError> {
        Ok(())
    }
    async fn reply(&self, _to: &UserRef, _text: &str) -> Result<(), ChatError> {
        Ok(())
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing useful either: ignore args.
    let rate = env_or("RAYBOT_LOAD_RATE", 1000);
    let seconds = env_or("RAYBOT_LOAD_SECONDS", 10);
    let own = std::env::var("REDIS_URL").is_err().then(redis_server::RedisServer::start);
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| own.as_ref().map(|s| s.url()).unwrap_or_default());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(run(&url, rate, seconds));
}

async fn run(url: &str, rate: u64, seconds: u64) {
    let store = Arc::new(RedisStore::open(url).expect("redis"));
    store.health().await.expect("redis answers");

    // A release waiting for freeze acknowledgements (recorded in Redis as raybot would have), then
    // people toggle the ✅ reaction, each delivery with its own idempotency key.
    let mut sim = Sim::new();
    sim.start("alice", Strategy::Bluegreen);
    sim.command("alice", ReleaseCommand::Approve { comment: None });
    sim.command("bob", ReleaseCommand::Approve { comment: None });
    let id = format!("{}-load-{}", sim.release().id, std::process::id());
    // Chat platforms give every post its own id: so does this run (a Redis used for earlier runs
    // still holds their releases, with the simulator's ids).
    let (sim_message, message) =
        (sim.message(&PostKey::Freeze), format!("{}-{}", sim.message(&PostKey::Freeze), std::process::id()));
    let mut log = sim.log.clone();
    for (_, event) in &mut log {
        match event {
            Event::Started { release, .. } => *release = id.clone().into(),
            Event::Posted { message: m, .. } if *m == sim_message => *m = message.clone(),
            _ => {}
        }
    }
    let rebuilt = Release::replay(log.iter()).expect("replay");
    let lock = match store.lock(&rebuilt.env, &id, 600_000, raybot::clock::now().0).await.expect("lock") {
        raybot::store::LockOutcome::Acquired(l) => l,
        raybot::store::LockOutcome::Held(l) => panic!("lock held by {}", l.owner),
    };
    let lines: Vec<String> = log
        .iter()
        .map(|(at, event)| {
            serde_json::to_string(&StoredEvent { at: *at, event: event.clone(), replica: Some("load".into()) })
                .expect("json")
        })
        .collect();
    let row = summary(&rebuilt, lines.len() as u64, "load");
    store.append(&id, 0, &lines, &row, Some(lock.token), None).await.expect("record the release");

    let dir = tempfile::tempdir().expect("tempdir");
    let config = raybot::config::Config::embedded(dir.path()).expect("config");
    let catalog = raybot::protocol::Catalog::embedded().expect("protocols");
    let platform = rebuilt.plan.people.platform;
    let metrics = Arc::new(raybot::metrics::Metrics::new());
    let shared: Arc<dyn Store> = store.clone();
    let driver = Driver::new(config, catalog, shared, Arc::new(Quiet), dir.path().join("artifacts"), platform, metrics);
    // The release's recorder ("load") is not running: this driver takes it over, as a restart would.
    let driver = raybot::driver::run::start(driver).await.expect("resume");
    driver.settle().await.expect("settled");
    let base = store.read(&id).await.expect("read").len();
    let people = ["alice", "bob", "carol", "dave", "erin"];

    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut latencies = Vec::with_capacity(total as usize);
    let trips_before = store.round_trips();
    let start = Instant::now();
    for i in 0..total {
        // Open-loop pacing: event i is due at start + i × interval. When on time, latency counts
        // from waking up (the timer's own millisecond of lag is not raybot's); when behind, from
        // when the event was due, so falling behind shows up in the figures.
        let due = start + interval * i as u32;
        let now = Instant::now();
        let t0 = if due > now {
            tokio::time::sleep(due - now).await;
            Instant::now()
        } else {
            due
        };
        let inbound = Inbound::Reaction {
            user: Sim::user(people[i as usize % people.len()]),
            message: message.clone(),
            emoji: "white_check_mark".into(),
            added: i % 2 == 0,
        };
        let answer = driver.deliver(Some(format!("load:{id}:{i}")), inbound).await.expect("the driver runs");
        assert!(matches!(answer, raybot::chat::handle::Answer::Now(_)), "answered within the platform's budget");
        latencies.push(t0.elapsed());
    }
    let elapsed = start.elapsed();
    let trips = store.round_trips() - trips_before;
    let recorded = store.read(&id).await.expect("read").len() - base;
    assert_eq!(recorded as u64, total, "every delivery is an accepted event");
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!("offered: {rate} events/s for {seconds} s ({total} deliveries, {recorded} events recorded)");
    println!("achieved: {:.0} events/s", total as f64 / elapsed.as_secs_f64());
    println!(
        "latency: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3
    );
    println!("redis round trips per event: {:.3}", trips as f64 / total as f64);
    let _ = store.unlock(&rebuilt.env, &id, lock.token).await;
}
