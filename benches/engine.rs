//! Engine benchmarks: handling one event, and rebuilding a release from a 10,000-event log
//! (target: under 10 ms). Run with `cargo bench --bench engine`.

use criterion::{Criterion, criterion_group, criterion_main};

use raybot::driver::StoredEvent;
use raybot::engine::testkit::Sim;
use raybot::engine::{Event, PostKey, Release, ReleaseCommand, Strategy};

/// A release waiting for freeze acknowledgements, plus its log.
fn at_freeze() -> Sim {
    let mut sim = Sim::new();
    sim.start("alice", Strategy::Bluegreen);
    sim.command("alice", ReleaseCommand::Approve { comment: None });
    sim.command("bob", ReleaseCommand::Approve { comment: None });
    sim
}

/// The sample release's log padded to `n` events with people toggling reactions and asking status.
fn long_log(n: usize) -> Vec<(raybot::engine::Timestamp, Event)> {
    let mut sim = at_freeze();
    let message = sim.message(&PostKey::Freeze);
    let people = ["alice", "bob", "carol", "dave"];
    let mut i = 0;
    while sim.log.len() < n {
        let who = people[i % people.len()];
        let ev = match i % 3 {
            0 => Event::Reaction {
                by: Sim::user(who),
                message: message.clone(),
                emoji: "white_check_mark".into(),
                added: true,
            },
            1 => Event::Reaction {
                by: Sim::user(who),
                message: message.clone(),
                emoji: "white_check_mark".into(),
                added: false,
            },
            _ => Event::Command { by: Sim::user("mallory"), command: ReleaseCommand::Ack },
        };
        sim.send(ev);
        i += 1;
    }
    sim.log
}

fn bench(c: &mut Criterion) {
    let sim = at_freeze();
    let base = sim.release().clone();
    let message = sim.message(&PostKey::Freeze);
    let ev = Event::Reaction { by: Sim::user("carol"), message, emoji: "white_check_mark".into(), added: true };
    c.bench_function("handle one event (freeze ack by reaction)", |b| {
        b.iter_batched(|| base.clone(), |mut r| r.handle(&ev, sim.now), criterion::BatchSize::SmallInput)
    });

    let log = long_log(10_000);
    assert!(log.len() >= 10_000);
    c.bench_function("rebuild a release from 10,000 events", |b| {
        b.iter(|| Release::replay(log.iter()).expect("replays"))
    });

    let lines: Vec<String> = log
        .iter()
        .map(|(at, event)| {
            serde_json::to_string(&StoredEvent { at: *at, event: event.clone(), replica: None }).expect("serialises")
        })
        .collect();
    c.bench_function("rebuild from 10,000 stored JSON lines (parse + fold)", |b| {
        b.iter(|| {
            let events: Vec<(raybot::engine::Timestamp, Event)> = lines
                .iter()
                .map(|l| {
                    let e: StoredEvent = serde_json::from_str(l).expect("parses");
                    (e.at, e.event)
                })
                .collect();
            Release::replay(events.iter()).expect("replays")
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
