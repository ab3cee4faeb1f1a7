//! Load benchmark: events through the engine and the Redis store on loopback, the way the driver
//! records them (decide in place, serialise, append with the fencing token, update the index).
//!
//! `cargo bench --bench redis_load` starts its own `redis-server` (or uses `REDIS_URL`), offers
//! events at a fixed rate (`RAYBOT_LOAD_RATE`, default 1000/s) for `RAYBOT_LOAD_SECONDS` (default
//! 10), and prints events/s, p50/p99 handling latency and Redis round trips per event.
//! `scripts/bench_redis.sh` runs it next to `redis-benchmark -t set` and prints the ratio.
//! Targets: at most 2 round trips per accepted event, p99 under 5 ms at 1,000 events/s.

#[path = "../tests/support/redis.rs"]
mod redis_server;

use std::time::{Duration, Instant};

use raybot::driver::{StoredEvent, summary};
use raybot::engine::testkit::Sim;
use raybot::engine::{Event, ReleaseCommand, Strategy};
use raybot::store::Store;
use raybot::store::redis::RedisStore;

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
    let store = RedisStore::open(url).expect("redis");
    store.health().await.expect("redis answers");

    // A release waiting for freeze acknowledgements: people toggle the ✅ reaction.
    let mut sim = Sim::new();
    sim.start("alice", Strategy::Bluegreen);
    sim.command("alice", ReleaseCommand::Approve { comment: None });
    sim.command("bob", ReleaseCommand::Approve { comment: None });
    let message = sim.message("freeze");
    let mut release = sim.release().clone();
    let id = format!("{}-load-{}", release.id, std::process::id());
    release.id = id.clone();
    let lock = match store.lock(&release.env, &id, 600_000, raybot::driver::now().0).await.expect("lock") {
        raybot::store::LockOutcome::Acquired(l) => l,
        raybot::store::LockOutcome::Held(l) => panic!("lock held by {}", l.owner),
    };
    let mut len = 0u64;
    let people = ["alice", "bob", "carol", "dave", "erin"];

    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut latencies = Vec::with_capacity(total as usize);
    let trips_before = store.round_trips();
    let start = Instant::now();
    for i in 0..total {
        // Open-loop pacing: event i is due at start + i × interval; latency counts from when it
        // was due, so falling behind shows up in the figures instead of being hidden.
        // When on time, latency counts from waking up (the timer's own millisecond of lag is not
        // raybot's); when behind, from when the event was due.
        let due = start + interval * i as u32;
        let now = Instant::now();
        let t0 = if due > now {
            tokio::time::sleep(due - now).await;
            Instant::now()
        } else {
            due
        };
        let ev = Event::Reaction {
            by: Sim::user(people[i as usize % people.len()]),
            message: message.clone(),
            emoji: "white_check_mark".into(),
            added: i % 2 == 0,
        };
        let at = raybot::driver::now();
        let _effects = release.handle(&ev, at);
        let line = serde_json::to_string(&StoredEvent { at, event: ev, replica: Some("load".into()) }).expect("json");
        len = store
            .append(&id, len, &[line], &summary(&release, len + 1, "raybot-bench"), Some(lock.token), None)
            .await
            .expect("append");
        latencies.push(t0.elapsed());
    }
    let elapsed = start.elapsed();
    let trips = store.round_trips() - trips_before;
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!("offered: {rate} events/s for {seconds} s ({total} events)");
    println!("achieved: {:.0} events/s", total as f64 / elapsed.as_secs_f64());
    println!(
        "latency: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3
    );
    println!("redis round trips per event: {:.3}", trips as f64 / total as f64);
    let _ = store.unlock(&release.env, &id, lock.token).await;
}
