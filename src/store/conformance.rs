//! The behaviour every [`Store`] must show, as reusable async checks.
//!
//! `FileStore` runs them from its unit tests; the Redis store runs the same functions from its
//! integration tests against a real server, so both back ends are held to one contract.
//!
//! The checks panic on a violation (they are test code compiled into the library so that
//! integration tests can reach them). Each one uses release and environment names unique to the
//! run, so a shared, non-empty back end (a Redis database left over from an earlier run) does not
//! disturb them. Lease and TTL expiry is exercised with the real clock and short sleeps (well under
//! a second), which works for stores that compare against `now_ms` as well as for stores that rely
//! on server-side expiry (`PX`).

#![doc(hidden)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Append, LockOutcome, ReleaseSummary, Store, StoreError};

/// Runs every check, each against a fresh store from `make`.
pub async fn run_all<S: Store>(make: impl Fn() -> S) {
    append_read_roundtrip(&make()).await;
    conflict_leaves_log_unchanged(&make()).await;
    summaries_newest_first_and_updated(&make()).await;
    lock_lifecycle(&make()).await;
    lock_expiry_and_takeover(&make()).await;
    stale_token_is_fenced(&make()).await;
    remember_is_idempotent_until_ttl(&make()).await;
    an_event_recorded_once_is_refused_the_second_time(&make()).await;
    a_group_commits_each_release_all_or_nothing(&make()).await;
    unfinished_lists_only_running_releases(&make()).await;
    the_announced_mark_only_moves_forward(&make()).await;
    concurrent_appenders_lose_nothing(Arc::new(make()), 50).await;
    health_ok(&make()).await;
}

/// A group commit writes each release's append on its own terms: one that conflicts or carries a
/// recorded key writes nothing and leaves the others of the group written; `seen_all_and_unfinished`
/// answers each key in order.
pub async fn a_group_commits_each_release_all_or_nothing<S: Store>(store: &S) {
    let (a, b, c) = (unique("group-a"), unique("group-b"), unique("group-c"));
    let (k1, k2, k3, k4) = (unique("k1"), unique("k2"), unique("k3"), unique("k4"));
    let t = now_ms();
    store.append(&b, 0, &events("b", 0..1), &summary(&b, t, 1), None, None).await.expect("b exists");
    let append = |release: &str, expected_len: u64, n: u64, once: &[&str]| Append {
        release: release.to_string(),
        expected_len,
        events: events(release, expected_len as u32..(expected_len + n) as u32),
        summary: summary(release, t, expected_len + n),
        fence: None,
        once: once.iter().map(|k| k.to_string()).collect(),
        once_ttl_ms: 60_000,
    };
    let out = store.append_all(&[append(&a, 0, 2, &[&k1, &k2]), append(&b, 0, 1, &[]), append(&c, 0, 1, &[&k3])]).await;
    assert!(matches!(out[0], Ok(2)), "{out:?}");
    assert!(matches!(out[1], Err(StoreError::Conflict { found: 1, .. })), "{out:?}");
    assert!(matches!(out[2], Ok(1)), "{out:?}");
    assert_eq!(store.read(&a).await.expect("read"), events(&a, 0..2));
    assert_eq!(store.read(&b).await.expect("read").len(), 1, "the conflicting append wrote nothing");
    assert_eq!(store.read(&c).await.expect("read"), events(&c, 0..1));

    // One recorded key among several: nothing of that append is written, its new key included.
    let out = store.append_all(&[append(&a, 2, 2, &[&k4, &k2])]).await;
    assert!(matches!(&out[0], Err(StoreError::Duplicate { key, .. }) if *key == k2), "{out:?}");
    assert_eq!(store.read(&a).await.expect("read").len(), 2, "the duplicate wrote nothing");
    assert!(matches!(store.append_all(&[append(&a, 2, 1, &[&k4])]).await[0], Ok(3)), "k4 was not recorded");

    store.remember(&k1, 60_000, t).await.expect("remember");
    let never = unique("never");
    let (seen, open) = store.seen_all_and_unfinished(&[Some(&k1), None, Some(&never)], t).await.expect("read");
    assert_eq!(seen, [true, false, false], "each key answered, in order");
    assert!(open.iter().any(|r| r.id == a), "a is unfinished");
}

/// An append carrying an idempotency key records it in the same write: the same key on the same
/// release is refused as a duplicate and writes nothing; `seen` reports keys `remember` recorded.
pub async fn an_event_recorded_once_is_refused_the_second_time<S: Store>(store: &S) {
    let (r, other) = (unique("once"), unique("once-other"));
    let key = unique("inbound:slack:Ev");
    let t = now_ms();
    assert_eq!(
        store.append(&r, 0, &events("o", 0..1), &summary(&r, t, 1), None, Some((&key, 60_000))).await.expect("first"),
        1
    );
    match store.append(&r, 1, &events("o", 1..2), &summary(&r, t, 2), None, Some((&key, 60_000))).await {
        Err(StoreError::Duplicate { release, key: k }) => assert_eq!((release, k), (r.clone(), key.clone())),
        other => panic!("a replayed event must be refused, got {other:?}"),
    }
    assert_eq!(store.read(&r).await.expect("read").len(), 1, "the duplicate wrote nothing");
    // Keys belong to the release they were recorded with; other events still append.
    assert_eq!(
        store
            .append(&other, 0, &events("x", 0..1), &summary(&other, t, 1), None, Some((&key, 60_000)))
            .await
            .expect("other release"),
        1
    );
    assert_eq!(store.append(&r, 1, &events("o", 1..2), &summary(&r, t, 2), None, None).await.expect("no key"), 2);
    let fresh = unique("inbound:seen");
    assert!(!store.seen(&fresh, t).await.expect("seen"));
    assert!(store.remember(&fresh, 60_000, t).await.expect("remember"));
    assert!(store.seen(&fresh, t).await.expect("seen"));
}

/// `unfinished` lists running releases and drops a release once its summary says it finished.
pub async fn unfinished_lists_only_running_releases<S: Store>(store: &S) {
    let (running, done) = (unique("running"), unique("done"));
    let t = now_ms();
    store.append(&running, 0, &events("r", 0..1), &summary(&running, t, 1), None, None).await.expect("running");
    store.append(&done, 0, &events("d", 0..1), &summary(&done, t + 1, 1), None, None).await.expect("done");
    let ids = |v: Vec<ReleaseSummary>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
    let listed = ids(store.unfinished().await.expect("unfinished"));
    assert!(listed.contains(&running) && listed.contains(&done), "{listed:?}");
    let mut finished = summary(&done, t + 1, 2);
    finished.finished = true;
    finished.status = "released".into();
    store.append(&done, 1, &events("d", 1..2), &finished, None, None).await.expect("finish");
    let listed = ids(store.unfinished().await.expect("unfinished"));
    assert!(listed.contains(&running) && !listed.contains(&done), "{listed:?}");
    assert!(ids(store.summaries().await.expect("summaries")).contains(&done), "history keeps it");
}

/// A summary for `id` as the engine would write it.
pub fn summary(id: &str, started_at_ms: u64, events: u64) -> ReleaseSummary {
    ReleaseSummary {
        id: id.to_owned(),
        version: "v1.2.0".to_owned(),
        env: "production".to_owned(),
        status: "awaiting approval".to_owned(),
        finished: false,
        started_by: "U123".to_owned(),
        started_at_ms,
        updated_at_ms: started_at_ms,
        events,
        replica: Some("raybot-test".to_owned()),
    }
}

/// Milliseconds since the Unix epoch, by the wall clock.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

/// A name no other check (in this or any earlier run) uses.
pub fn unique(what: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("conf-{nanos:x}-{n}-{what}")
}

/// Sleeps without needing tokio's `time` feature (and without blocking a runtime worker).
async fn sleep(d: Duration) {
    // A panic in the sleeping thread is impossible; ignore the join result either way.
    let _ = tokio::task::spawn_blocking(move || std::thread::sleep(d)).await;
}

fn events(tag: &str, range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!(r#"{{"tag":"{tag}","n":{i}}}"#)).collect()
}

/// Appends come back from `read` in order and unchanged; logs of different releases (even when
/// one id is a prefix of the other) never mix; an empty append is a no-op that still succeeds.
pub async fn append_read_roundtrip<S: Store>(store: &S) {
    let a = unique("rel");
    let b = format!("{a}0"); // `a` is a prefix of `b`
    let t = now_ms();
    assert_eq!(store.read(&a).await.expect("read unknown"), Vec::<String>::new());

    let mut first = events("a", 0..3);
    // Opaque payloads: unicode, quotes, newlines and a large one come back byte for byte.
    first.push("{\"text\":\"déploiement ✅ \\\"v1.2\\\"\\nline 2\"}".to_owned());
    first.push(format!(r#"{{"blob":"{}"}}"#, "x".repeat(100_000)));
    let n = first.len() as u64;
    assert_eq!(store.append(&a, 0, &first, &summary(&a, t, n), None, None).await.expect("append 1"), n);
    let second = events("a", 10..12);
    assert_eq!(store.append(&a, n, &second, &summary(&a, t, n + 2), None, None).await.expect("append 2"), n + 2);
    assert_eq!(store.append(&b, 0, &events("b", 0..1), &summary(&b, t, 1), None, None).await.expect("append b"), 1);
    assert_eq!(store.append(&a, n + 2, &[], &summary(&a, t, n + 2), None, None).await.expect("empty append"), n + 2);

    let mut expected = first;
    expected.extend(second);
    assert_eq!(store.read(&a).await.expect("read a"), expected);
    assert_eq!(store.read(&b).await.expect("read b"), events("b", 0..1));
}

/// An append with the wrong `expected_len` fails with `Conflict` naming the real length, and
/// changes neither the log nor the index.
pub async fn conflict_leaves_log_unchanged<S: Store>(store: &S) {
    let r = unique("conflict");
    let t = now_ms();
    let original = summary(&r, t, 2);
    store.append(&r, 0, &events("c", 0..2), &original, None, None).await.expect("append");

    for wrong in [0, 1, 3, 100] {
        let mut changed = summary(&r, t, 3);
        changed.status = "should not be stored".to_owned();
        match store.append(&r, wrong, &events("bad", 0..1), &changed, None, None).await {
            Err(StoreError::Conflict { release, expected, found }) => {
                assert_eq!(release, r);
                assert_eq!(expected, wrong);
                assert_eq!(found, 2);
            }
            other => panic!("expected a conflict for expected_len {wrong}, got {other:?}"),
        }
    }
    assert_eq!(store.read(&r).await.expect("read"), events("c", 0..2));
    let stored: Vec<_> = store.summaries().await.expect("summaries").into_iter().filter(|s| s.id == r).collect();
    assert_eq!(stored, vec![original]);
}

/// `summaries` lists releases newest first by `started_at_ms`, and an append replaces the
/// release's summary (status, `events` set to the new log length) without changing the order.
pub async fn summaries_newest_first_and_updated<S: Store>(store: &S) {
    let prefix = unique("sum");
    let base = now_ms();
    let ids: Vec<String> = (0..3).map(|i| format!("{prefix}-{i}")).collect();
    // Started at base+1000, base+3000, base+2000: newest is ids[1].
    for (id, offset) in ids.iter().zip([1000, 3000, 2000]) {
        store.append(id, 0, &events(id, 0..1), &summary(id, base + offset, 1), None, None).await.expect("append");
    }
    let mine = |all: Vec<ReleaseSummary>| -> Vec<ReleaseSummary> {
        all.into_iter().filter(|s| s.id.starts_with(&prefix)).collect()
    };
    let listed = mine(store.summaries().await.expect("summaries"));
    let order: Vec<&str> = listed.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(order, [&ids[1], &ids[2], &ids[0]]);

    // The stored `events` is the log's real length whatever the caller put there (on success it
    // is always `expected_len + events.len()`), so the index never disagrees with the log.
    let mut update = summary(&ids[0], base + 1000, 999);
    update.status = "released".to_owned();
    update.finished = true;
    update.updated_at_ms = base + 9000;
    store.append(&ids[0], 1, &events(&ids[0], 1..3), &update, None, None).await.expect("append update");
    let listed = mine(store.summaries().await.expect("summaries"));
    let order: Vec<&str> = listed.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(order, [&ids[1], &ids[2], &ids[0]]);
    update.events = 3;
    assert_eq!(listed[2], update);
}

fn acquired(outcome: LockOutcome, what: &str) -> super::Lock {
    match outcome {
        LockOutcome::Acquired(lock) => lock,
        LockOutcome::Held(other) => panic!("{what}: expected to acquire, but held by {other:?}"),
    }
}

/// Acquire, refuse a second owner, extend for the same owner (same token), refuse an unlock with
/// the wrong token or owner, unlock, and hand over with the next token.
pub async fn lock_lifecycle<S: Store>(store: &S) {
    let env = unique("env");
    let (a, b) = ("release-a", "release-b");
    let lease = 60_000;
    let t0 = now_ms();
    assert_eq!(store.lock_holder(&env, t0).await.expect("holder"), None);

    let first = acquired(store.lock(&env, a, lease, t0).await.expect("lock a"), "a");
    assert_eq!(first.env, env);
    assert_eq!(first.owner, a);
    assert_eq!(first.expires_at_ms, t0 + lease);

    match store.lock(&env, b, lease, now_ms()).await.expect("lock b") {
        LockOutcome::Held(held) => assert_eq!(held, first),
        LockOutcome::Acquired(lock) => panic!("b took a lock a holds: {lock:?}"),
    }

    let t1 = t0 + 5_000;
    let extended = acquired(store.lock(&env, a, lease, t1).await.expect("extend"), "extend");
    assert_eq!(extended.token, first.token, "extending keeps the token");
    assert_eq!(extended.owner, a);
    assert_eq!(extended.expires_at_ms, t1 + lease);
    assert_eq!(store.lock_holder(&env, now_ms()).await.expect("holder"), Some(extended.clone()));

    assert!(!store.unlock(&env, a, first.token + 1).await.expect("unlock wrong token"));
    assert!(!store.unlock(&env, b, first.token).await.expect("unlock wrong owner"));
    assert_eq!(
        store.lock_holder(&env, now_ms()).await.expect("holder"),
        Some(extended.clone()),
        "a refused unlock changes nothing"
    );
    assert!(store.unlock(&env, a, first.token).await.expect("unlock"));
    assert_eq!(store.lock_holder(&env, now_ms()).await.expect("holder"), None);
    assert!(!store.unlock(&env, a, first.token).await.expect("unlock twice"));

    let second = acquired(store.lock(&env, b, lease, now_ms()).await.expect("lock b"), "b");
    assert_eq!(second.token, first.token + 1, "the token grows by one per hand-over");

    // Locks of different environments are independent.
    let other_env = unique("env");
    acquired(store.lock(&other_env, a, lease, now_ms()).await.expect("other env"), "other env");
}

/// An expired lease is free: `lock_holder` no longer reports it, another owner takes it with a
/// bigger token, and the old owner can no longer unlock.
pub async fn lock_expiry_and_takeover<S: Store>(store: &S) {
    let env = unique("env");
    let short = 100;
    let old = acquired(store.lock(&env, "release-a", short, now_ms()).await.expect("lock a"), "a");
    sleep(Duration::from_millis(short + 150)).await;
    let t = now_ms();
    assert_eq!(store.lock_holder(&env, t).await.expect("holder"), None);

    let new = acquired(store.lock(&env, "release-b", 60_000, t).await.expect("takeover"), "takeover");
    assert_eq!(new.owner, "release-b");
    assert!(new.token > old.token, "takeover token {} must exceed {}", new.token, old.token);
    assert!(!store.unlock(&env, "release-a", old.token).await.expect("stale unlock"));
    assert_eq!(store.lock_holder(&env, now_ms()).await.expect("holder"), Some(new.clone()));

    // The old owner asking again is refused while b's lease runs.
    match store.lock(&env, "release-a", short, now_ms()).await.expect("lock a again") {
        LockOutcome::Held(held) => assert_eq!(held, new),
        LockOutcome::Acquired(lock) => panic!("a took b's unexpired lock: {lock:?}"),
    }
}

/// A release whose lease lapsed and whose environment another release took can no longer write
/// with its old token; the new holder can, and a holder whose own lease lapsed unnoticed is not
/// fenced by re-acquiring it.
pub async fn stale_token_is_fenced<S: Store>(store: &S) {
    let env = unique("env");
    let (a, b) = (unique("rel-a"), unique("rel-b"));
    let t = now_ms();
    let short = 100;
    let la = acquired(store.lock(&env, &a, short, now_ms()).await.expect("lock a"), "a");
    store.append(&a, 0, &events("a", 0..1), &summary(&a, t, 1), Some(la.token), None).await.expect("holder writes");
    sleep(Duration::from_millis(short + 150)).await;
    let lb = acquired(store.lock(&env, &b, 60_000, now_ms()).await.expect("lock b"), "b");
    match store.append(&a, 1, &events("a", 1..2), &summary(&a, t, 2), Some(la.token), None).await {
        Err(StoreError::Fenced { release, token, current }) => {
            assert_eq!((release.as_str(), token, current), (a.as_str(), la.token, lb.token));
        }
        other => panic!("a write with the stale token {} must be fenced, got {other:?}", la.token),
    }
    assert_eq!(store.read(&a).await.expect("read a"), events("a", 0..1), "the fenced write changed the log");
    store.append(&b, 0, &events("b", 0..1), &summary(&b, t, 1), Some(lb.token), None).await.expect("new holder writes");

    // Same owner, lease lapsed, nobody else took it: it gets a new token and keeps writing.
    let env2 = unique("env");
    let c = unique("rel-c");
    let lc = acquired(store.lock(&env2, &c, short, now_ms()).await.expect("lock c"), "c");
    sleep(Duration::from_millis(short + 150)).await;
    let lc2 = acquired(store.lock(&env2, &c, 60_000, now_ms()).await.expect("relock c"), "c again");
    assert!(lc2.token > lc.token);
    store.append(&c, 0, &events("c", 0..1), &summary(&c, t, 1), Some(lc2.token), None).await.expect("c writes");
}

/// `remember` says true the first time, false while the key lives, and true again once its TTL
/// has passed.
pub async fn remember_is_idempotent_until_ttl<S: Store>(store: &S) {
    let key = unique("slack-event");
    let other = unique("discord-interaction");
    assert!(store.remember(&key, 60_000, now_ms()).await.expect("first"));
    assert!(!store.remember(&key, 60_000, now_ms()).await.expect("second"));
    assert!(!store.remember(&key, 60_000, now_ms()).await.expect("third"));
    assert!(store.remember(&other, 60_000, now_ms()).await.expect("other key"));

    let short = unique("short");
    let ttl = 100;
    assert!(store.remember(&short, ttl, now_ms()).await.expect("short first"));
    sleep(Duration::from_millis(ttl + 150)).await;
    assert!(
        store.remember(&short, 60_000, now_ms()).await.expect("after ttl"),
        "a key is new again once its TTL passed"
    );
    assert!(!store.remember(&short, 60_000, now_ms()).await.expect("renewed"));
}

/// How far a release's posts went out, per raybot process: unknown until recorded, then the
/// highest figure written for that process (a late, smaller write changes nothing), per release.
pub async fn the_announced_mark_only_moves_forward<S: Store>(store: &S) {
    let r = unique("release");
    let other = unique("release");
    assert_eq!(store.announced(&r).await.expect("read"), None, "a release nobody marked");
    store.set_announced(&r, "raybot-a", 0).await.expect("mark 0");
    let marks = |pairs: &[(&str, u64)]| Some(pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect());
    assert_eq!(store.announced(&r).await.expect("read"), marks(&[("raybot-a", 0)]));
    store.set_announced(&r, "raybot-a", 7).await.expect("mark 7");
    store.set_announced(&r, "raybot-a", 3).await.expect("late mark 3");
    store.set_announced(&r, "raybot-b", 5).await.expect("b's mark");
    assert_eq!(
        store.announced(&r).await.expect("read"),
        marks(&[("raybot-a", 7), ("raybot-b", 5)]),
        "a mark moved back"
    );
    assert_eq!(store.announced(&other).await.expect("read"), None, "marks are per release");
}

/// `writers` tasks append one event each to the same release with optimistic retry (read the
/// length, append, retry on `Conflict`). Every event must land exactly once.
pub async fn concurrent_appenders_lose_nothing<S: Store>(store: Arc<S>, writers: u32) {
    let release = Arc::new(unique("race"));
    let started = now_ms();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let store = Arc::clone(&store);
        let release = Arc::clone(&release);
        tasks.spawn(async move {
            let event = format!(r#"{{"writer":{w}}}"#);
            for _attempt in 0..10_000u32 {
                let len = store.read(&release).await.expect("read").len() as u64;
                let sum = summary(&release, started, len + 1);
                match store.append(&release, len, std::slice::from_ref(&event), &sum, None, None).await {
                    Ok(new_len) => {
                        assert_eq!(new_len, len + 1);
                        return;
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => panic!("writer {w}: {e}"),
                }
            }
            panic!("writer {w} never got its append in");
        });
    }
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            panic!("an appender failed: {e}");
        }
    }

    let log = store.read(&release).await.expect("read");
    assert_eq!(log.len() as u64, u64::from(writers));
    let seen: BTreeSet<&str> = log.iter().map(String::as_str).collect();
    assert_eq!(seen.len(), log.len(), "an event was stored twice");
    for w in 0..writers {
        assert!(seen.contains(format!(r#"{{"writer":{w}}}"#).as_str()), "writer {w}'s event is missing");
    }
    let listed = store
        .summaries()
        .await
        .expect("summaries")
        .into_iter()
        .find(|s| s.id == *release)
        .expect("summary of the raced release");
    assert_eq!(listed.events, u64::from(writers));
}

/// A working store reports healthy.
pub async fn health_ok<S: Store>(store: &S) {
    store.health().await.expect("healthy");
}
