//! Durable state: the append-only event log of each release, the release index, environment locks
//! and idempotency keys.
//!
//! The [`Store`] trait is what the driver talks to. [`file::FileStore`] (redb, one file) is the
//! embedded default; a Redis implementation plugs in behind the same trait. Payloads are opaque
//! JSON strings so that stores know nothing about engine types.

pub mod conformance;
pub mod file;
pub mod redis;
pub mod redis_conn;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Errors every store can report.
#[derive(Debug, thiserror::Error)]
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

/// The state store.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Appends `events` to the log of `release` if the log has exactly `expected_len` entries, and
    /// stores `summary` in the index in the same transaction. Returns the new length.
    ///
    /// `fence` is the fencing token of the environment lock the writer holds: when the lock was
    /// taken from this release after its lease lapsed ([`Store::lock`] records the new token
    /// against the previous owner), a write with an older token fails with [`StoreError::Fenced`].
    async fn append(
        &self,
        release: &str,
        expected_len: u64,
        events: &[String],
        summary: &ReleaseSummary,
        fence: Option<u64>,
    ) -> Result<u64, StoreError>;

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
