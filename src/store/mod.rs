//! Durable state: the append-only event log of each release, the release index, environment locks
//! and idempotency keys.
//!
//! The [`Store`] trait is what the driver talks to. [`file::FileStore`] (redb, one file) is the
//! embedded default for one process; [`redis::RedisStore`] (one node or a Cluster) is the
//! production store, shared by replicas, and also offers the [`JobQueue`] and replica heartbeats.
//! Payloads are opaque JSON strings so that stores know nothing about engine types.

#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
pub mod file;
pub mod redis;
pub mod redis_conn;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Errors every store can report.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Someone else appended to the log since we read it (optimistic concurrency).
    #[error("release {release} changed underneath us (expected {expected} events, found {found})")]
    Conflict {
        /// The release whose log changed.
        release: String,
        /// Log length the writer had read.
        expected: u64,
        /// Log length actually found.
        found: u64,
    },
    /// The release lost its environment lock to another release (its lease lapsed and the lock was
    /// taken): writes with the old fencing token are refused.
    #[error("release {release} lost its environment lock (token {token}; the lock is now at token {current})")]
    Fenced {
        /// The release whose write was refused.
        release: String,
        /// The token the writer presented.
        token: u64,
        /// The token that took over.
        current: u64,
    },
    /// The platform event this write answers was recorded already (a retry or a replay).
    #[error("release {release} already recorded event {key}")]
    Duplicate {
        /// The release written to.
        release: String,
        /// The idempotency key.
        key: String,
    },
    /// The backing store cannot be reached or refused the operation.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// The stored data could not be read back.
    #[error("state store data is corrupt: {0}")]
    Corrupt(String),
}

/// One row of the release index (`raybot status`, `/ray history`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseSummary {
    /// Release id, e.g. `v1.2-production-20261121T233420Z`.
    pub id: String,
    /// Version released, e.g. `v1.2`.
    pub version: String,
    /// Target environment; an unfinished release blocks new `/ray deploy`s to it.
    pub env: String,
    /// Human status such as `awaiting approval`, `released`, `rolled back`.
    pub status: String,
    /// True once the release reached a terminal state.
    pub finished: bool,
    /// Platform user id of who typed `/ray deploy`.
    pub started_by: String,
    /// Start time, milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// Time of the latest event, milliseconds since the Unix epoch.
    pub updated_at_ms: u64,
    /// Number of events in the log.
    pub events: u64,
    /// The raybot process that recorded the latest event (another replica takes the release over
    /// when this one stops sending heartbeats).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
}

/// An environment lock: one release per environment at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// The environment locked, e.g. `production`.
    pub env: String,
    /// Who holds it (the release id).
    pub owner: String,
    /// Fencing token: grows by one every time the lock changes hands.
    pub token: u64,
    /// Lease end, milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
}

/// Result of [`Store::lock`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockOutcome {
    /// The caller holds the lock now (newly acquired, or its lease extended).
    Acquired(Lock),
    /// Somebody else holds an unexpired lease.
    Held(Lock),
}

/// One release's write: events appended to its log with its index row, all or nothing. Several
/// of them make a group commit ([`Store::append_all`]).
#[derive(Debug, Clone)]
pub struct Append {
    /// The release whose log grows.
    pub release: String,
    /// The log length the writer decided on: anything else is a [`StoreError::Conflict`].
    pub expected_len: u64,
    /// The events, oldest first (JSON lines).
    pub events: Vec<String>,
    /// The index row after the last event.
    pub summary: ReleaseSummary,
    /// The fencing token of the environment lock the writer holds.
    pub fence: Option<u64>,
    /// The idempotency keys of the platform events these events answer, recorded in the same
    /// transaction: if one of them is recorded already, nothing is written.
    pub once: Vec<String>,
    /// How long the keys are kept (ms).
    pub once_ttl_ms: u64,
}

/// The state store.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Writes each [`Append`] of `group` in order, each all or nothing, with one result per
    /// append (the new log length): a group commit of deliveries decided one after another.
    ///
    /// An append writes only if the release's log has exactly `expected_len` entries, and stores
    /// its index row in the same transaction. `fence` is the fencing token of the environment lock
    /// the writer holds: when the lock was taken from this release after its lease lapsed
    /// ([`Store::lock`] records the new token against the previous owner), a write with an older
    /// token fails with [`StoreError::Fenced`]. `once` are the idempotency keys of the platform
    /// events it answers: an append carrying a key already recorded for this release fails with
    /// [`StoreError::Duplicate`] and writes nothing.
    ///
    /// Redis sends the whole group in one round trip.
    async fn append_all(&self, group: &[Append]) -> Vec<Result<u64, StoreError>>;

    /// One append of `events` to `release` (see [`Store::append_all`]), with at most one
    /// idempotency key and how long to keep it (ms).
    async fn append(
        &self,
        release: &str,
        expected_len: u64,
        events: &[String],
        summary: &ReleaseSummary,
        fence: Option<u64>,
        once: Option<(&str, u64)>,
    ) -> Result<u64, StoreError> {
        let append = Append {
            release: release.to_string(),
            expected_len,
            events: events.to_vec(),
            summary: summary.clone(),
            fence,
            once: once.map(|(k, _)| k.to_string()).into_iter().collect(),
            once_ttl_ms: once.map(|(_, ttl)| ttl).unwrap_or(0),
        };
        let mut out = self.append_all(std::slice::from_ref(&append)).await;
        out.pop().unwrap_or_else(|| Err(StoreError::Corrupt(format!("no answer to the append to {release}"))))
    }

    /// Whether idempotency key `key` was recorded (by [`Store::remember`], or by an append that
    /// carried it on the embedded store) and has not expired.
    async fn seen(&self, key: &str, now_ms: u64) -> Result<bool, StoreError>;

    /// The whole log of `release`, oldest first (empty when unknown).
    async fn read(&self, release: &str) -> Result<Vec<String>, StoreError>;

    /// All releases in the index, newest first.
    async fn summaries(&self) -> Result<Vec<ReleaseSummary>, StoreError>;

    /// Acquires the lock of `env` for `owner`, or extends it when `owner` already holds it. Taking a
    /// lapsed lease from another owner fences that owner's log (see [`Store::append`]).
    async fn lock(&self, env: &str, owner: &str, lease_ms: u64, now_ms: u64) -> Result<LockOutcome, StoreError>;

    /// Releases the lock of `env` if `owner` holds it with `token`. Returns whether it did.
    async fn unlock(&self, env: &str, owner: &str, token: u64) -> Result<bool, StoreError>;

    /// The current holder of `env`'s lock, if its lease has not expired at `now_ms`.
    async fn lock_holder(&self, env: &str, now_ms: u64) -> Result<Option<Lock>, StoreError>;

    /// Records an idempotency key. Returns true the first time `key` is seen within `ttl_ms`.
    async fn remember(&self, key: &str, ttl_ms: u64, now_ms: u64) -> Result<bool, StoreError>;

    /// Checks that the store answers.
    async fn health(&self) -> Result<(), StoreError>;

    /// How far the chat announcements of `release` are known to have gone out, per raybot process
    /// (each posts what the events it recorded asked for): replica → `n`, the posts and edits its
    /// events before event number `n` asked for were taken by the platform; a replica not listed
    /// has had none taken. `None` for a release started by an older build, which kept no marks:
    /// nothing can be re-derived for it.
    async fn announced(&self, release: &str) -> Result<Option<BTreeMap<String, u64>>, StoreError>;

    /// Records that the announcements of `replica`'s events of `release` before event number
    /// `through` went out. A mark never moves back (a late write of a smaller figure changes nothing).
    async fn set_announced(&self, release: &str, replica: &str, through: u64) -> Result<(), StoreError>;

    /// Unfinished releases only, newest first. Stores with an index of unfinished releases answer
    /// without reading the whole history (what every command on every replica does first).
    async fn unfinished(&self) -> Result<Vec<ReleaseSummary>, StoreError> {
        Ok(self.summaries().await?.into_iter().filter(|s| !s.finished).collect())
    }

    /// [`Store::seen`] for `key` (false without a key) and [`Store::unfinished`] together: what
    /// every delivery reads before it is handled (one round trip on Redis).
    async fn seen_and_unfinished(
        &self,
        key: Option<&str>,
        now_ms: u64,
    ) -> Result<(bool, Vec<ReleaseSummary>), StoreError> {
        let (seen, open) = self.seen_all_and_unfinished(&[key], now_ms).await?;
        Ok((seen.first().copied().unwrap_or(false), open))
    }

    /// [`Store::seen_and_unfinished`] for several keys at once (a group of deliveries): one
    /// answer per key, in order.
    async fn seen_all_and_unfinished(
        &self,
        keys: &[Option<&str>],
        now_ms: u64,
    ) -> Result<(Vec<bool>, Vec<ReleaseSummary>), StoreError> {
        let mut seen = Vec::with_capacity(keys.len());
        for k in keys {
            seen.push(match k {
                Some(k) => self.seen(k, now_ms).await?,
                None => false,
            });
        }
        Ok((seen, self.unfinished().await?))
    }

    /// Requests sent to the store so far (a pipeline counts once), where the store counts them
    /// (Redis): `/metrics` shows them beside the events recorded.
    fn requests(&self) -> Option<u64> {
        None
    }

    /// The shared job queue, when the store has one (Redis): jobs then run on whichever replica
    /// takes them first. `None` (the embedded store) runs each job in the process that asked.
    fn queue(&self) -> Option<std::sync::Arc<dyn JobQueue>> {
        None
    }

    /// Marks raybot process `replica` alive for `ttl_ms` (called a few times per lease).
    async fn heartbeat(&self, _replica: &str, _ttl_ms: u64) -> Result<(), StoreError> {
        Ok(())
    }

    /// Raybot process `replica` stops cleanly: it no longer counts as alive, so another replica
    /// (or its next start) takes its releases over at once.
    async fn farewell(&self, _replica: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether raybot process `replica` sent a heartbeat within its last ttl. Stores without
    /// heartbeats answer false: every other process counts as stopped.
    async fn alive(&self, _replica: &str) -> Result<bool, StoreError> {
        Ok(false)
    }
}

/// A job taken from the [`JobQueue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    /// The queue's id of the entry (acknowledged with [`JobQueue::done`]).
    pub entry: String,
    /// The job id the engine gave it (`<release>#job<n>`).
    pub job: String,
    /// What to run (JSON, opaque to the store).
    pub payload: String,
}

/// Deploy, rollback and every other job of a platform's releases, shared by all replicas: each job
/// is taken by exactly one of them; a job whose replica stopped is found by the others and never
/// run again.
#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Queues job `job` unless a job with that id is queued or running already. Returns whether it
    /// queued it.
    async fn enqueue(&self, platform: &str, job: &str, payload: &str) -> Result<bool, StoreError>;

    /// Takes the next job nobody has taken yet, for `consumer` (this replica).
    async fn take(&self, platform: &str, consumer: &str) -> Result<Option<QueuedJob>, StoreError>;

    /// Jobs taken by `consumer` and never finished: at start-up these are the jobs a previous
    /// process of the same name was running when it stopped.
    async fn taken_by(&self, platform: &str, consumer: &str) -> Result<Vec<QueuedJob>, StoreError>;

    /// Renews `consumer`'s claim on `entry` while its job runs. False when the claim was lost (the
    /// job was declared lost by another replica after a lease without renewal).
    async fn extend(&self, platform: &str, consumer: &str, entry: &str) -> Result<bool, StoreError>;

    /// Claims for `consumer` the jobs other replicas took and have not renewed for `min_idle_ms`,
    /// with the name of the replica that had them.
    async fn claim_abandoned(
        &self,
        platform: &str,
        consumer: &str,
        min_idle_ms: u64,
    ) -> Result<Vec<(QueuedJob, String)>, StoreError>;

    /// The job's result is recorded: forget it.
    async fn done(&self, platform: &str, entry: &str, job: &str) -> Result<(), StoreError>;
}

/// Opens the store named by `spec` (`RAYBOT_STORE`, else `REDIS_URL`): `file://PATH`,
/// `redis://…` / `rediss://…`, `redis+cluster://HOST:PORT,HOST:PORT…` / `rediss+cluster://…` (a
/// Redis Cluster, seed nodes), or `None` for the embedded store in `.raybot/`. Redis connects
/// lazily; call it inside a Tokio runtime.
pub fn open(spec: Option<&str>) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    match spec.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(std::sync::Arc::new(file::FileStore::open(std::path::Path::new(".raybot"))?)),
        Some(s) if s.starts_with("file://") => {
            Ok(std::sync::Arc::new(file::FileStore::open(std::path::Path::new(&s["file://".len()..]))?))
        }
        Some(s) if s.starts_with("redis://") || s.starts_with("rediss://") || redis_conn::is_cluster_spec(s) => {
            Ok(std::sync::Arc::new(redis::RedisStore::open(s)?))
        }
        Some(s) => Err(StoreError::Unavailable(format!(
            "RAYBOT_STORE must be file://PATH, redis://HOST:PORT, rediss://HOST:PORT or \
             redis+cluster://HOST:PORT,HOST:PORT… (got `{}`)",
            redis::redact(s)
        ))),
    }
}
