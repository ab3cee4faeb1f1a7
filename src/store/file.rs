//! [`FileStore`]: the embedded state store, one [redb] database file.
//!
//! This is what `raybot` uses when no Redis URL is configured: a single process, a single file,
//! every commit fsynced before it returns (redb's default `Durability::Immediate`), so an event that
//! [`Store::append`] accepted survives a crash or a restart.
//!
//! redb is synchronous and its write transactions are serialised by the database itself. Every
//! operation therefore runs inside [`tokio::task::spawn_blocking`] so that a slow fsync never stalls
//! the async runtime that must answer Slack and Discord within three seconds. Because there is only
//! ever one writer at a time, the check of `expected_len` and the append happen atomically in one
//! write transaction: optimistic concurrency needs no further locking.
//!
//! redb takes an exclusive `flock` on the file, so a second `raybot` process (or a second
//! [`FileStore::open`] of the same directory) fails with [`StoreError::Unavailable`] instead of
//! corrupting the log.
//!
//! Tables:
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `events` | `(release, seq)` | event JSON (opaque) |
//! | `releases` | release id | [`ReleaseSummary`] JSON |
//! | `locks` | environment | [`Lock`] JSON |
//! | `fences` | environment | last fencing token handed out (never reset) |
//! | `idempotency` | key | expiry, ms since the epoch |
//! | `idempotency_by_expiry` | `(expiry, key)` | `()` — lets `remember` prune expired keys cheaply |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{Append, Lock, LockOutcome, ReleaseSummary, Store, StoreError};

/// File name of the database inside the state directory.
pub const DB_FILE_NAME: &str = "raybot.redb";

const EVENTS: TableDefinition<(&str, u64), &str> = TableDefinition::new("events");
const RELEASES: TableDefinition<&str, &str> = TableDefinition::new("releases");
const LOCKS: TableDefinition<&str, &str> = TableDefinition::new("locks");
const FENCES: TableDefinition<&str, u64> = TableDefinition::new("fences");
/// Per release: the token that took its environment lock after its lease lapsed.
const RELEASE_FENCES: TableDefinition<&str, u64> = TableDefinition::new("release_fences");
/// (Release id, replica) → how many of its events' announcements went out (see `Store::announced`).
const ANNOUNCED: TableDefinition<(&str, &str), u64> = TableDefinition::new("announced");
const IDEMPOTENCY: TableDefinition<&str, u64> = TableDefinition::new("idempotency");
const IDEMPOTENCY_BY_EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("idempotency_by_expiry");

/// At most this many expired idempotency keys are deleted per [`Store::remember`] call, so the
/// table stays bounded without any single call doing unbounded work.
const PRUNE_BATCH: usize = 64;

/// redb's default cache limit is 1 GiB; the state of a release manager is tiny, so keep the
/// process small on the 256 MiB machines users deploy to.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// The embedded [`Store`]: one redb database file in a state directory.
///
/// Cheap to clone; clones share the same open database.
#[derive(Clone)]
pub struct FileStore {
    db: Arc<Database>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore").field("path", &self.path).finish()
    }
}

impl FileStore {
    /// Opens (creating if needed) `dir/raybot.redb`, creating `dir` as well.
    ///
    /// This call blocks: after an unclean shutdown redb repairs the file before returning, which
    /// can take a while on a large file. Call it at start-up (or inside `spawn_blocking`).
    ///
    /// Fails with [`StoreError::Unavailable`] when another process (or another `FileStore` in this
    /// process) already has the file open — redb holds an exclusive lock for the life of the
    /// database — and with [`StoreError::Corrupt`] when the file is not a readable redb database.
    pub fn open(dir: &Path) -> Result<FileStore, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create state directory {}: {e}", dir.display())))?;
        let path = dir.join(DB_FILE_NAME);
        let mut builder = Database::builder();
        builder.set_cache_size(CACHE_BYTES);
        // redb 2.6 still writes the v2 format by default, but redb 3 reads only v3: new files are
        // created as v3 and old ones upgraded below, so a later redb bump needs no migration.
        builder.create_with_file_format_v3(true);
        let mut db = builder.create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => already_open(&path),
            other => map_err(&path, "opening", other),
        })?;
        db.upgrade().map_err(|e| map_err(&path, "upgrading the file format of", e))?;

        // Create every table up front so that readers never meet a missing table.
        let txn = db.begin_write().map_err(|e| map_err(&path, "initialising", e))?;
        {
            let init = |e: redb::TableError| map_err(&path, "initialising", e);
            txn.open_table(EVENTS).map_err(init)?;
            txn.open_table(RELEASES).map_err(init)?;
            txn.open_table(LOCKS).map_err(init)?;
            txn.open_table(FENCES).map_err(init)?;
            txn.open_table(RELEASE_FENCES).map_err(init)?;
            txn.open_table(ANNOUNCED).map_err(init)?;
            txn.open_table(IDEMPOTENCY).map_err(init)?;
            txn.open_table(IDEMPOTENCY_BY_EXPIRY).map_err(init)?;
        }
        txn.commit().map_err(|e| map_err(&path, "initialising", e))?;

        Ok(FileStore { db: Arc::new(db), path: Arc::new(path) })
    }

    /// Path of the database file (for logs and `raybot status`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a blocking thread with the database and the file path (for error messages).
    async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database, &Path) -> Result<T, StoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        let path = Arc::clone(&self.path);
        tokio::task::spawn_blocking(move || f(&db, &path))
            .await
            .map_err(|e| StoreError::Unavailable(format!("state store task failed: {e}")))?
    }
}

/// The message users see when two raybot processes point at the same state directory.
fn already_open(path: &Path) -> StoreError {
    StoreError::Unavailable(format!(
        "another raybot process is using the store at {} (the file is locked); stop that process \
         or give this one a different state directory",
        path.display()
    ))
}

/// Maps any redb error to a [`StoreError`] with a sentence that names what we were doing and the
/// file.
/// Records idempotency key `key` until `now_ms + ttl_ms` inside `txn`; false if it is recorded and
/// unexpired. Prunes a bounded batch of expired keys on the way.
fn record_key(txn: &redb::WriteTransaction, key: &str, ttl_ms: u64, now_ms: u64) -> Result<bool, Box<redb::Error>> {
    fn b(e: impl Into<redb::Error>) -> Box<redb::Error> {
        Box::new(e.into())
    }
    let mut keys = txn.open_table(IDEMPOTENCY).map_err(b)?;
    let mut by_expiry = txn.open_table(IDEMPOTENCY_BY_EXPIRY).map_err(b)?;

    // Prune a bounded batch of expired keys (expiry <= now).
    let mut expired: Vec<(u64, String)> = Vec::new();
    // `(now + 1, "")` is the smallest key that has not expired yet.
    for entry in by_expiry.range(..(now_ms.saturating_add(1), "")).map_err(b)?.take(PRUNE_BATCH) {
        let (k, _) = entry.map_err(b)?;
        let (expiry, name) = k.value();
        expired.push((expiry, name.to_owned()));
    }
    for (expiry, name) in &expired {
        by_expiry.remove((*expiry, name.as_str())).map_err(b)?;
        let current = keys.get(name.as_str()).map_err(b)?.map(|v| v.value());
        if current == Some(*expiry) {
            keys.remove(name.as_str()).map_err(b)?;
        }
    }

    let previous = keys.get(key).map_err(b)?.map(|v| v.value());
    Ok(match previous {
        Some(expiry) if expiry > now_ms => false,
        previous => {
            if let Some(old) = previous {
                by_expiry.remove((old, key)).map_err(b)?;
            }
            let expiry = now_ms.saturating_add(ttl_ms);
            keys.insert(key, expiry).map_err(b)?;
            by_expiry.insert((expiry, key), ()).map_err(b)?;
            true
        }
    })
}

fn map_err(path: &Path, doing: &str, err: impl Into<redb::Error>) -> StoreError {
    let err: redb::Error = err.into();
    let at = path.display();
    match err {
        redb::Error::DatabaseAlreadyOpen => already_open(path),
        redb::Error::Corrupted(msg) => {
            StoreError::Corrupt(format!("{doing} {at}: the database file is damaged: {msg}"))
        }
        redb::Error::UpgradeRequired(version) => StoreError::Corrupt(format!(
            "{doing} {at}: file format version {version} is not supported by this raybot build"
        )),
        e @ (redb::Error::TableTypeMismatch { .. }
        | redb::Error::TypeDefinitionChanged { .. }
        | redb::Error::TableIsMultimap(_)
        | redb::Error::TableIsNotMultimap(_)) => {
            StoreError::Corrupt(format!("{doing} {at}: the file was written by an incompatible raybot version: {e}"))
        }
        redb::Error::PreviousIo => StoreError::Unavailable(format!(
            "{doing} {at}: an earlier disk error left the store read-only for this process; \
             restart raybot once the disk is healthy"
        )),
        // redb reports a file without its magic number as a bare `InvalidData` I/O error.
        redb::Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => StoreError::Corrupt(format!(
            "{doing} {at}: this is not a raybot state file, or its header is damaged ({e})"
        )),
        redb::Error::Io(e) => StoreError::Unavailable(format!("{doing} {at}: I/O error: {e}")),
        other => StoreError::Unavailable(format!("{doing} {at}: {other}")),
    }
}

fn corrupt_json(path: &Path, what: &str, err: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("{what} in {} is not valid JSON: {err}", path.display()))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    // Serialising our own plain structs cannot fail, but a panic here would be worse than an error.
    serde_json::to_string(value).map_err(|e| StoreError::Unavailable(format!("cannot encode state: {e}")))
}

/// Number of events in `release`'s log: one past the last sequence number.
fn log_len(
    table: &impl ReadableTable<(&'static str, u64), &'static str>,
    release: &str,
) -> Result<u64, redb::StorageError> {
    let mut range = table.range((release, 0u64)..=(release, u64::MAX))?;
    match range.next_back() {
        Some(entry) => Ok(entry?.0.value().1 + 1),
        None => Ok(0),
    }
}

/// The lock of `env` as stored (expired or not).
fn stored_lock(
    table: &impl ReadableTable<&'static str, &'static str>,
    env: &str,
    path: &Path,
) -> Result<Option<Lock>, StoreError> {
    let raw = table.get(env).map_err(|e| map_err(path, "reading a lock from", e))?;
    match raw {
        Some(raw) => serde_json::from_str(raw.value())
            .map(Some)
            .map_err(|e| corrupt_json(path, &format!("the lock of {env}"), e)),
        None => Ok(None),
    }
}

/// One [`Append`] in one write transaction; dropping the transaction without commit aborts it.
fn append_one(db: &Database, path: &Path, a: Append) -> Result<u64, StoreError> {
    let Append { release, expected_len, events, mut summary, fence, once, once_ttl_ms } = a;
    let err = |e: redb::Error| map_err(path, &format!("appending to {release} in"), e);
    let txn = db.begin_write().map_err(|e| err(e.into()))?;
    let new_len = {
        let mut log = txn.open_table(EVENTS).map_err(|e| err(e.into()))?;
        let found = log_len(&log, &release).map_err(|e| err(e.into()))?;
        if found != expected_len {
            return Err(StoreError::Conflict { release, expected: expected_len, found });
        }
        if let Some(token) = fence {
            let fences = txn.open_table(RELEASE_FENCES).map_err(|e| err(e.into()))?;
            let current = fences.get(release.as_str()).map_err(|e| err(e.into()))?.map(|v| v.value());
            if let Some(current) = current.filter(|c| *c > token) {
                return Err(StoreError::Fenced { release, token, current });
            }
        }
        for key in &once {
            let scoped = format!("once:{release}:{key}");
            if !record_key(&txn, &scoped, once_ttl_ms, crate::clock::now().0).map_err(|e| err(*e))? {
                return Err(StoreError::Duplicate { release, key: key.clone() });
            }
        }
        let mut seq = found;
        for event in &events {
            log.insert((release.as_str(), seq), event.as_str()).map_err(|e| err(e.into()))?;
            seq += 1;
        }
        seq
    };
    summary.events = new_len;
    let json = to_json(&summary)?;
    txn.open_table(RELEASES)
        .map_err(|e| err(e.into()))?
        .insert(release.as_str(), json.as_str())
        .map_err(|e| err(e.into()))?;
    txn.commit().map_err(|e| err(e.into()))?;
    Ok(new_len)
}

#[async_trait]
impl Store for FileStore {
    /// Each append in its own write transaction (check length, fence and keys, insert events,
    /// store summary), the group in one trip to the blocking pool. The stored summary's `events`
    /// is set to the new log length so that the index can never disagree with the log.
    async fn append_all(&self, group: &[Append]) -> Vec<Result<u64, StoreError>> {
        let group = group.to_vec();
        let n = group.len();
        let out = self
            .blocking(move |db, path| Ok(group.into_iter().map(|a| append_one(db, path, a)).collect::<Vec<_>>()))
            .await;
        match out {
            Ok(results) => results,
            Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
        }
    }

    async fn read(&self, release: &str) -> Result<Vec<String>, StoreError> {
        let release = release.to_owned();
        self.blocking(move |db, path| {
            let err = |e: redb::Error| map_err(path, &format!("reading {release} from"), e);
            let txn = db.begin_read().map_err(|e| err(e.into()))?;
            let log = txn.open_table(EVENTS).map_err(|e| err(e.into()))?;
            let range =
                log.range((release.as_str(), 0u64)..=(release.as_str(), u64::MAX)).map_err(|e| err(e.into()))?;
            let mut out = Vec::new();
            for entry in range {
                let (_, value) = entry.map_err(|e| err(e.into()))?;
                out.push(value.value().to_owned());
            }
            Ok(out)
        })
        .await
    }

    /// Newest first by `started_at_ms`; ties by release id so the order is stable.
    async fn summaries(&self) -> Result<Vec<ReleaseSummary>, StoreError> {
        self.blocking(move |db, path| {
            let err = |e: redb::Error| map_err(path, "listing releases in", e);
            let txn = db.begin_read().map_err(|e| err(e.into()))?;
            let index = txn.open_table(RELEASES).map_err(|e| err(e.into()))?;
            let mut out = Vec::new();
            for entry in index.iter().map_err(|e| err(e.into()))? {
                let (key, value) = entry.map_err(|e| err(e.into()))?;
                let summary: ReleaseSummary = serde_json::from_str(value.value())
                    .map_err(|e| corrupt_json(path, &format!("the summary of {}", key.value()), e))?;
                out.push(summary);
            }
            out.sort_by(|a, b| b.started_at_ms.cmp(&a.started_at_ms).then_with(|| a.id.cmp(&b.id)));
            Ok(out)
        })
        .await
    }

    /// A lease that is free or expired (`expires_at_ms <= now_ms`) is taken with a new fencing
    /// token, even by its previous owner; an unexpired lease of the same owner is extended and
    /// keeps its token.
    async fn lock(&self, env: &str, owner: &str, lease_ms: u64, now_ms: u64) -> Result<LockOutcome, StoreError> {
        let env = env.to_owned();
        let owner = owner.to_owned();
        self.blocking(move |db, path| {
            let err = |e: redb::Error| map_err(path, &format!("locking {env} in"), e);
            let txn = db.begin_write().map_err(|e| err(e.into()))?;
            let outcome = {
                let mut locks = txn.open_table(LOCKS).map_err(|e| err(e.into()))?;
                let current = stored_lock(&locks, &env, path)?;
                let expires_at_ms = now_ms.saturating_add(lease_ms);
                let (outcome, write) = match current {
                    Some(held) if held.expires_at_ms > now_ms && held.owner != owner => (LockOutcome::Held(held), None),
                    Some(held) if held.expires_at_ms > now_ms => {
                        let extended = Lock { expires_at_ms, ..held };
                        (LockOutcome::Acquired(extended.clone()), Some(extended))
                    }
                    _ => {
                        let mut fences = txn.open_table(FENCES).map_err(|e| err(e.into()))?;
                        let last = fences.get(env.as_str()).map_err(|e| err(e.into()))?.map(|v| v.value()).unwrap_or(0);
                        let token = last.saturating_add(1);
                        fences.insert(env.as_str(), token).map_err(|e| err(e.into()))?;
                        if let Some(lapsed) = current.filter(|l| l.owner != owner) {
                            txn.open_table(RELEASE_FENCES)
                                .map_err(|e| err(e.into()))?
                                .insert(lapsed.owner.as_str(), token)
                                .map_err(|e| err(e.into()))?;
                        }
                        let fresh = Lock { env: env.clone(), owner: owner.clone(), token, expires_at_ms };
                        (LockOutcome::Acquired(fresh.clone()), Some(fresh))
                    }
                };
                if let Some(lock) = write {
                    let json = to_json(&lock)?;
                    locks.insert(env.as_str(), json.as_str()).map_err(|e| err(e.into()))?;
                }
                outcome
            };
            txn.commit().map_err(|e| err(e.into()))?;
            Ok(outcome)
        })
        .await
    }

    async fn unlock(&self, env: &str, owner: &str, token: u64) -> Result<bool, StoreError> {
        let env = env.to_owned();
        let owner = owner.to_owned();
        self.blocking(move |db, path| {
            let err = |e: redb::Error| map_err(path, &format!("unlocking {env} in"), e);
            let txn = db.begin_write().map_err(|e| err(e.into()))?;
            let released = {
                let mut locks = txn.open_table(LOCKS).map_err(|e| err(e.into()))?;
                match stored_lock(&locks, &env, path)? {
                    Some(held) if held.owner == owner && held.token == token => {
                        locks.remove(env.as_str()).map_err(|e| err(e.into()))?;
                        true
                    }
                    _ => false,
                }
            };
            if released {
                txn.commit().map_err(|e| err(e.into()))?;
            } else {
                txn.abort().map_err(|e| err(e.into()))?;
            }
            Ok(released)
        })
        .await
    }

    async fn lock_holder(&self, env: &str, now_ms: u64) -> Result<Option<Lock>, StoreError> {
        let env = env.to_owned();
        self.blocking(move |db, path| {
            let err = |e: redb::Error| map_err(path, &format!("reading the lock of {env} in"), e);
            let txn = db.begin_read().map_err(|e| err(e.into()))?;
            let locks = txn.open_table(LOCKS).map_err(|e| err(e.into()))?;
            Ok(stored_lock(&locks, &env, path)?.filter(|lock| lock.expires_at_ms > now_ms))
        })
        .await
    }

    /// Also deletes up to 64 keys that expired before `now_ms`, so the table does not
    /// grow forever.
    async fn remember(&self, key: &str, ttl_ms: u64, now_ms: u64) -> Result<bool, StoreError> {
        let key = key.to_owned();
        self.blocking(move |db, path| {
            let err = |e: redb::Error| map_err(path, "recording an idempotency key in", e);
            let txn = db.begin_write().map_err(|e| err(e.into()))?;
            let first = record_key(&txn, &key, ttl_ms, now_ms).map_err(|e| err(*e))?;
            txn.commit().map_err(|e| err(e.into()))?;
            Ok(first)
        })
        .await
    }

    async fn seen(&self, key: &str, now_ms: u64) -> Result<bool, StoreError> {
        let key = key.to_owned();
        self.blocking(move |db, path| {
            let err = |e: redb::Error| map_err(path, "reading an idempotency key in", e);
            let txn = db.begin_read().map_err(|e| err(e.into()))?;
            let keys = txn.open_table(IDEMPOTENCY).map_err(|e| err(e.into()))?;
            let expiry = keys.get(key.as_str()).map_err(|e| err(e.into()))?.map(|v| v.value());
            Ok(expiry.is_some_and(|e| e > now_ms))
        })
        .await
    }

    async fn announced(&self, release: &str) -> Result<Option<BTreeMap<String, u64>>, StoreError> {
        let release = release.to_owned();
        self.blocking(move |db, path| {
            let err = |e: redb::Error| map_err(path, "reading how far a release's posts went out in", e);
            let txn = db.begin_read().map_err(|e| err(e.into()))?;
            let table = txn.open_table(ANNOUNCED).map_err(|e| err(e.into()))?;
            let mut marks = BTreeMap::new();
            for row in table.range((release.as_str(), "")..).map_err(|e| err(e.into()))? {
                let (k, v) = row.map_err(|e| err(e.into()))?;
                let (r, replica) = k.value();
                if r != release {
                    break;
                }
                marks.insert(replica.to_string(), v.value());
            }
            Ok((!marks.is_empty()).then_some(marks))
        })
        .await
    }

    async fn set_announced(&self, release: &str, replica: &str, through: u64) -> Result<(), StoreError> {
        let (release, replica) = (release.to_owned(), replica.to_owned());
        self.blocking(move |db, path| {
            let err = |e: redb::Error| map_err(path, "recording how far a release's posts went out in", e);
            let txn = db.begin_write().map_err(|e| err(e.into()))?;
            {
                let mut marks = txn.open_table(ANNOUNCED).map_err(|e| err(e.into()))?;
                let key = (release.as_str(), replica.as_str());
                let current = marks.get(key).map_err(|e| err(e.into()))?.map(|v| v.value());
                if current.is_none_or(|c| through > c) {
                    marks.insert(key, through).map_err(|e| err(e.into()))?;
                }
            }
            txn.commit().map_err(|e| err(e.into()))?;
            Ok(())
        })
        .await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.blocking(move |db, path| {
            let err = |e: redb::Error| map_err(path, "checking", e);
            let txn = db.begin_read().map_err(|e| err(e.into()))?;
            let index = txn.open_table(RELEASES).map_err(|e| err(e.into()))?;
            index.len().map_err(|e| err(e.into()))?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;

    fn fresh() -> (tempfile::TempDir, FileStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileStore::open(dir.path()).expect("open store");
        (dir, store)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance_suite() {
        // Every check gets its own database; the temp dirs live until the end of the test.
        let dirs = std::sync::Mutex::new(Vec::new());
        conformance::run_all(|| {
            let (dir, store) = fresh();
            dirs.lock().expect("dirs").push(dir);
            store
        })
        .await;
    }

    #[tokio::test]
    async fn open_creates_directory_and_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nested = dir.path().join("state").join("raybot");
        let store = FileStore::open(&nested).expect("open");
        assert!(nested.join(DB_FILE_NAME).is_file());
        assert_eq!(store.path(), nested.join(DB_FILE_NAME));
        store.health().await.expect("healthy");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn everything_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = 1_700_000_000_000;
        let summary = conformance::summary("r-1", now, 0);
        let events: Vec<String> = (0..5).map(|i| format!("{{\"n\":{i}}}")).collect();
        let lock;
        {
            let store = FileStore::open(dir.path()).expect("open");
            assert_eq!(store.append("r-1", 0, &events[..3], &summary, None, None).await.expect("append"), 3);
            assert_eq!(store.append("r-1", 3, &events[3..], &summary, None, None).await.expect("append"), 5);
            lock = match store.lock("prod", "r-1", 60_000, now).await.expect("lock") {
                LockOutcome::Acquired(lock) => lock,
                LockOutcome::Held(other) => panic!("held by {other:?}"),
            };
            assert!(store.remember("slack:Ev1", 60_000, now).await.expect("remember"));
        }
        // The first database is dropped (closed) here: a restart.
        let store = FileStore::open(dir.path()).expect("reopen");
        assert_eq!(store.read("r-1").await.expect("read"), events);
        let summaries = store.summaries().await.expect("summaries");
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].events, 5);
        assert_eq!(store.lock_holder("prod", now + 1).await.expect("holder"), Some(lock.clone()));
        assert!(!store.remember("slack:Ev1", 60_000, now + 1).await.expect("remember"));
        // The fencing counter survived too: a takeover after expiry gets a bigger token.
        match store.lock("prod", "r-2", 60_000, lock.expires_at_ms).await.expect("lock") {
            LockOutcome::Acquired(new) => assert_eq!(new.token, lock.token + 1),
            LockOutcome::Held(other) => panic!("held by {other:?}"),
        }
        // Appending at the old length still detects the conflict after reopening.
        assert!(matches!(
            store.append("r-1", 3, &events[..1], &summary, None, None).await,
            Err(StoreError::Conflict { expected: 3, found: 5, .. })
        ));
    }

    #[test]
    fn second_opener_is_told_another_process_uses_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = FileStore::open(dir.path()).expect("first open");
        let err = FileStore::open(dir.path()).expect_err("second open must fail");
        let msg = err.to_string();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(msg.contains("another raybot process"), "{msg}");
        assert!(msg.contains(&dir.path().join(DB_FILE_NAME).display().to_string()), "{msg}");
    }

    #[test]
    fn lock_is_released_when_the_store_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(FileStore::open(dir.path()).expect("first open"));
        FileStore::open(dir.path()).expect("open after the first closed");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_reported_corrupt() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(DB_FILE_NAME), vec![0x5a; 8192]).expect("write junk");
        let err = FileStore::open(dir.path()).expect_err("junk must not open");
        let msg = err.to_string();
        assert!(msg.contains(DB_FILE_NAME), "{msg}");
        assert!(msg.contains("not a raybot state file"), "{msg}");
        assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    }

    #[test]
    fn a_state_dir_that_is_a_file_is_unavailable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").expect("write");
        let err = FileStore::open(&file).expect_err("must fail");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }

    #[tokio::test]
    async fn expired_idempotency_keys_are_pruned() {
        let (_dir, store) = fresh();
        for i in 0..10 {
            assert!(store.remember(&format!("k{i}"), 10, 1_000).await.expect("remember"));
        }
        // Re-recording k0 moves its expiry; the stale index entry must not delete the new one.
        assert!(store.remember("k0", 1_000, 2_000).await.expect("remember"));
        assert!(store.remember("other", 10, 2_000).await.expect("remember"));
        let db = Arc::clone(&store.db);
        let (keys, by_expiry) = tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().expect("read");
            let keys = txn.open_table(IDEMPOTENCY).expect("table").len().expect("len");
            let by = txn.open_table(IDEMPOTENCY_BY_EXPIRY).expect("table").len().expect("len");
            (keys, by)
        })
        .await
        .expect("join");
        assert_eq!((keys, by_expiry), (2, 2), "only k0 and other remain");
        assert!(!store.remember("k0", 1_000, 2_500).await.expect("remember"));
    }
}
