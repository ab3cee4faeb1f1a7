//! The production store: Redis (`RAYBOT_STORE=redis://…`, `rediss://…` for TLS, or `REDIS_URL`), or
//! a Redis Cluster (`redis+cluster://host1:port1,host2:port2`, `rediss+cluster://…`; see
//! [`super::redis_conn`]).
//!
//! Layout (prefix `raybot`, hash tags keep the keys of one release — and of one lock — in one
//! Redis Cluster slot, so every script touches a single slot):
//!
//! | key | type | what |
//! | --- | --- | --- |
//! | `raybot:{<release>}:log` | stream | the release's events, field `e` = JSON |
//! | `raybot:{<release>}:summary` | string | the index row (JSON) |
//! | `raybot:{<release>}:fence` | string | fencing token a write must reach (set on takeover) |
//! | `raybot:{<release>}:announced` | hash | replica → how many of its events' posts went out (see [`Store::announced`]) |
//! | `raybot:releases` | sorted set | release ids by start time (`raybot status`, `/ray history`) |
//! | `raybot:unfinished` | hash | release id → index row of each unfinished release (what every command reads first) |
//! | `raybot:{jobs:<platform>}` | stream | queued jobs, consumer group `runners` (see `redis_jobs.rs`) |
//! | `raybot:{jobs:<platform>}:ids` | hash | job id → stream entry, so a job is queued once |
//! | `raybot:replica:<name>` | string | heartbeat of a raybot process, `PX` = job lease |
//! | `raybot:{lock:<env>}` | hash | `owner`, `token`, `expires` of the environment lock, `PX` lease |
//! | `raybot:{lock:<env>}:token` | string | the fencing-token counter of that environment |
//! | `raybot:{lock:<env>}:last` | string | the last owner (to fence it when its lease lapsed) |
//! | `raybot:{<release>}:once:<key>` | string | idempotency key recorded by the append it caused, `PX` |
//! | `raybot:seen:<key>` | string | idempotency keys of handled deliveries, `SET NX PX` |
//!
//! An accepted event costs one round trip: the append script checks length, fence and idempotency
//! key, `XADD`s, stores the summary and keeps both indexes. On a Redis Cluster the indexes live in
//! other slots, and a script or pipeline must stay on one node: the first event of a release costs
//! three requests (`ZADD NX`, the script, the unfinished row), later ones two. Every operation runs
//! under a [`OP_TIMEOUT`], so while Redis is unreachable callers learn it within about a second and
//! a half; the connection reconnects by itself.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use redis::{AsyncCommands, Script, Value};

use super::redis_conn::RedisConn;
use super::{Append, Lock, LockOutcome, ReleaseSummary, Store, StoreError};

#[path = "redis_jobs.rs"]
mod jobs;

/// Longest any single store operation may take before it counts as "store unavailable".
pub const OP_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long after sending a write Redis may still carry it out (by its own clock). Well inside the
/// connection's 1 s response timeout, so a write the caller was told failed never lands later.
const WRITE_WINDOW_MS: i64 = 600;

/// Every write script starts here: a write that reaches Redis after the writer gave up (Redis was
/// frozen, the network stalled) must not happen, or "nothing was changed" would be a lie. The
/// writer passes a deadline in the server's clock as the first ARGV.
const DEADLINE: &str = r#"
local t = redis.call('TIME')
local server_now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if server_now > tonumber(ARGV[1]) then return {'late', server_now} end
"#;

// KEYS: log, summary, fence [, unfinished, releases — single node only], idempotency keys….
// ARGV: deadline, expected length, fence token ('' = none), summary, idempotency key ttl ms,
// release id, start time, finished ('1'/'0'), index of the first idempotency key in KEYS, events….
const APPEND: &str = r#"
local len = redis.call('XLEN', KEYS[1])
if len ~= tonumber(ARGV[2]) then return {'conflict', len} end
if ARGV[3] ~= '' then
  local f = redis.call('GET', KEYS[3])
  if f and tonumber(f) > tonumber(ARGV[3]) then return {'fenced', tonumber(f)} end
end
local first = tonumber(ARGV[9])
for k = first, #KEYS do
  if redis.call('EXISTS', KEYS[k]) == 1 then return {'duplicate', len, KEYS[k]} end
end
for k = first, #KEYS do redis.call('SET', KEYS[k], '1', 'PX', ARGV[5]) end
for i = 10, #ARGV do redis.call('XADD', KEYS[1], '*', 'e', ARGV[i]) end
redis.call('SET', KEYS[2], ARGV[4])
if first == 6 then
  if ARGV[8] == '1' then redis.call('HDEL', KEYS[4], ARGV[6]) else redis.call('HSET', KEYS[4], ARGV[6], ARGV[4]) end
  redis.call('ZADD', KEYS[5], 'NX', ARGV[7], ARGV[6])
end
return {'ok', len + #ARGV - 9}
"#;

// KEYS: lock, counter, last. ARGV: deadline, owner, lease_ms, now_ms, expires_at_ms.
// Returns {acquired, owner, token, expires, previous owner whose lapsed lease was taken ('' if none)}.
const LOCK: &str = r#"
local owner = redis.call('HGET', KEYS[1], 'owner')
local now = tonumber(ARGV[4])
if owner then
  local token = tonumber(redis.call('HGET', KEYS[1], 'token'))
  local expires = tonumber(redis.call('HGET', KEYS[1], 'expires'))
  if expires > now then
    if owner ~= ARGV[2] then return {0, owner, token, expires, ''} end
    redis.call('HSET', KEYS[1], 'expires', ARGV[5])
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    return {1, owner, token, tonumber(ARGV[5]), ''}
  end
end
local previous = redis.call('GET', KEYS[3]) or ''
if previous == ARGV[2] then previous = '' end
local token = redis.call('INCR', KEYS[2])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'token', token, 'expires', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[3], ARGV[2])
return {1, ARGV[2], token, tonumber(ARGV[5]), previous}
"#;

// KEYS: seen key. ARGV: deadline, ttl_ms. {'ok', 1} the first time, {'ok', 0} after.
const REMEMBER: &str = r#"
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[2]) then return {'ok', 1} end
return {'ok', 0}
"#;

/// Raises the announced mark of a release, never lowers it.
const ANNOUNCE: &str = r#"
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
if tonumber(ARGV[2]) > current then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
"#;

const UNLOCK: &str = r#"
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] and redis.call('HGET', KEYS[1], 'token') == ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

/// The Redis store.
#[derive(Clone)]
pub struct RedisStore {
    conn: RedisConn,
    prefix: String,
    append: Script,
    lock: Script,
    remember: Script,
    unlock: Script,
    announce: Script,
    /// Server clock minus ours (ms), and when we measured it.
    offset: Arc<Mutex<Option<(i64, Instant)>>>,
    /// Where it connects, without credentials (for messages).
    shown: String,
    round_trips: Arc<AtomicU64>,
    /// Releases recorded by older versions were added to the unfinished index (checked once).
    active_indexed: Arc<AtomicBool>,
    /// Job queue scripts (see `redis_jobs.rs`).
    jobs: jobs::Scripts,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("url", &self.shown).finish()
    }
}

/// `redis://user:secret@host:6379/0` → `redis://host:6379/0`: URLs may carry passwords. Everything
/// up to the last `@` goes, so a cluster spec `redis+cluster://user:secret@h1:1,h2:2` shows as
/// `redis+cluster://h1:1,h2:2`, and a spec with credentials on several hosts (or an unencoded `@` or
/// `,` in the password) loses hosts from the message rather than showing any part of a secret.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}{}", &url[..s + 3], &url[at + 1..]),
        _ => url.to_string(),
    }
}

fn unavailable(shown: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("redis at {shown}: {e}"))
}

impl RedisStore {
    /// Connects lazily to `url` (nothing is sent until the first operation, so raybot starts, and
    /// `/healthz` says so, while Redis is still down). Must be called inside a Tokio runtime.
    pub fn open(url: &str) -> Result<RedisStore, StoreError> {
        Self::open_with_prefix(url, "raybot")
    }

    /// Like [`RedisStore::open`] with another key prefix (several raybot installations on one Redis).
    pub fn open_with_prefix(url: &str, prefix: &str) -> Result<RedisStore, StoreError> {
        let shown = redact(url);
        let conn = RedisConn::open(url).map_err(|e| match e.kind() {
            redis::ErrorKind::InvalidClientConfig => StoreError::Unavailable(format!(
                "RAYBOT_STORE `{shown}` is not a valid redis://, rediss://, redis+cluster:// or rediss+cluster:// URL: {e}"
            )),
            _ => unavailable(&shown, e),
        })?;
        Ok(RedisStore {
            conn,
            prefix: prefix.to_string(),
            append: Script::new(&format!("{DEADLINE}{APPEND}")),
            lock: Script::new(&format!("{DEADLINE}{LOCK}")),
            remember: Script::new(&format!("{DEADLINE}{REMEMBER}")),
            offset: Arc::new(Mutex::new(None)),
            unlock: Script::new(UNLOCK),
            announce: Script::new(ANNOUNCE),
            shown,
            round_trips: Arc::new(AtomicU64::new(0)),
            active_indexed: Arc::new(AtomicBool::new(false)),
            jobs: jobs::Scripts::new(),
        })
    }

    fn log_key(&self, release: &str) -> String {
        format!("{}:{{{release}}}:log", self.prefix)
    }
    fn summary_key(&self, release: &str) -> String {
        format!("{}:{{{release}}}:summary", self.prefix)
    }
    fn announced_key(&self, release: &str) -> String {
        format!("{}:{{{release}}}:announced", self.prefix)
    }
    fn fence_key(&self, release: &str) -> String {
        format!("{}:{{{release}}}:fence", self.prefix)
    }
    fn index_key(&self) -> String {
        format!("{}:releases", self.prefix)
    }
    fn active_key(&self) -> String {
        format!("{}:unfinished", self.prefix)
    }
    fn replica_key(&self, replica: &str) -> String {
        format!("{}:replica:{replica}", self.prefix)
    }
    fn lock_key(&self, env: &str) -> String {
        format!("{}:{{lock:{env}}}", self.prefix)
    }

    /// A deadline for a write sent now, in the server's clock (measured with `TIME` once a minute;
    /// the error of the estimate is at most one round trip, far below the window).
    async fn deadline(&self) -> Result<String, StoreError> {
        let known = self.offset.lock().ok().and_then(|o| *o).filter(|(_, at)| at.elapsed() < Duration::from_secs(60));
        let offset = match known {
            Some((o, _)) => o,
            None => {
                let mut conn = self.conn.clone();
                let before = wall_ms();
                let (secs, micros): (i64, i64) =
                    self.timed("reading the server clock", redis::cmd("TIME").query_async(&mut conn)).await?;
                let after = wall_ms();
                let o = secs * 1000 + micros / 1000 - (before + after) / 2;
                if let Ok(mut slot) = self.offset.lock() {
                    *slot = Some((o, Instant::now()));
                }
                o
            }
        };
        Ok((wall_ms() + offset + WRITE_WINDOW_MS).to_string())
    }

    /// The index rows of `ids`, newest first; ids without a row (a failed first append) are skipped.
    async fn rows(&self, ids: &[String]) -> Result<Vec<ReleaseSummary>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        // One GET per release in one pipeline (on a cluster one MGET split by slot: the keys live in
        // different slots).
        let keys: Vec<String> = ids.iter().map(|id| self.summary_key(id)).collect();
        let rows: Vec<Option<String>> = self.timed("reading the release index", conn.get_each(&keys)).await?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, row) in ids.iter().zip(rows) {
            let Some(json) = row else { continue };
            out.push(parse_row(id, &json)?);
        }
        newest_first(&mut out);
        Ok(out)
    }

    /// Parses `raybot:unfinished` rows, newest first; rows of finished releases (an index update
    /// lost on a cluster) are dropped from the index.
    async fn open_rows(&self, rows: Vec<(String, String)>) -> Result<Vec<ReleaseSummary>, StoreError> {
        let mut open = Vec::with_capacity(rows.len());
        let mut done = Vec::new();
        for (id, json) in rows {
            let row = parse_row(&id, &json)?;
            if row.finished { done.push(id) } else { open.push(row) }
        }
        if !done.is_empty() {
            let mut conn = self.conn.clone();
            let _ = self.timed("tidying the unfinished index", conn.hdel::<_, _, ()>(self.active_key(), done)).await;
        }
        newest_first(&mut open);
        Ok(open)
    }

    /// Releases recorded before the index of unfinished releases existed join it, once per store.
    async fn index_unfinished_once(&self) -> Result<(), StoreError> {
        if self.active_indexed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        let marker = format!("{}:unfinished:indexed", self.prefix);
        let done: bool = self.timed("checking the unfinished index", conn.exists(&marker)).await?;
        if !done {
            for row in self.summaries().await?.into_iter().filter(|r| !r.finished) {
                let json = serde_json::to_string(&row).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let add = conn.hset::<_, _, _, ()>(self.active_key(), &row.id, json);
                self.timed("building the unfinished index", add).await?;
            }
            self.timed("checking the unfinished index", conn.set::<_, _, ()>(&marker, 1)).await?;
        }
        self.active_indexed.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Requests sent to Redis so far (a pipeline counts once): benchmarks report round trips per event.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// The append script's invocation for `a`, with the index keys when `indexed` (one node),
    /// and the summary row as JSON.
    fn append_invocation(
        &self,
        a: &Append,
        deadline: String,
        indexed: bool,
    ) -> Result<(redis::ScriptInvocation<'_>, String), StoreError> {
        let mut summary = a.summary.clone();
        summary.events = a.expected_len + a.events.len() as u64;
        let json = serde_json::to_string(&summary).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let release = &a.release;
        let mut inv = self.append.prepare_invoke();
        inv.key(self.log_key(release)).key(self.summary_key(release)).key(self.fence_key(release));
        if indexed {
            inv.key(self.active_key()).key(self.index_key());
        }
        // The idempotency keys live in the release's slot, so recording them and appending is one
        // script; `seen:` (below, `remember`) is the cross-release copy read before handling.
        for k in &a.once {
            inv.key(format!("{}:{{{release}}}:once:{k}", self.prefix));
        }
        inv.arg(deadline).arg(a.expected_len).arg(a.fence.map(|f| f.to_string()).unwrap_or_default()).arg(&json);
        inv.arg(a.once_ttl_ms.max(1)).arg(release).arg(summary.started_at_ms);
        inv.arg(if summary.finished { "1" } else { "0" }).arg(if indexed { 6 } else { 4 });
        for e in &a.events {
            inv.arg(e.as_str());
        }
        Ok((inv, json))
    }

    /// One append on a cluster, where the indexes are in other slots: the release index first
    /// (so a stored log is always listed; an index row without a summary is skipped by
    /// `summaries`), then the script on its own (it reloads itself after NOSCRIPT), then the
    /// unfinished index.
    async fn append_on_cluster(&self, a: &Append, deadline: String) -> Result<u64, StoreError> {
        let (inv, json) = self.append_invocation(a, deadline, false)?;
        let release = a.release.as_str();
        let mut conn = self.conn.clone();
        let mut index = redis::cmd("ZADD");
        index.arg(self.index_key()).arg("NX").arg(a.summary.started_at_ms).arg(release);
        let op = async {
            if a.expected_len == 0 {
                self.round_trips.fetch_add(1, Ordering::Relaxed);
                index.query_async::<()>(&mut conn).await?;
            }
            inv.invoke_async::<Value>(&mut conn).await
        };
        let reply = self.timed(&format!("appending to {release}"), op).await?;
        let n = append_outcome(a, Some(&reply))?;
        // A second request. If it is lost, the row is stale until the next event (readers then
        // load the release once more than needed), and a finished row is dropped by `unfinished`
        // when it next reads it.
        let mut conn = self.conn.clone();
        let update = async {
            if a.summary.finished {
                conn.hdel::<_, _, ()>(self.active_key(), release).await
            } else {
                conn.hset::<_, _, _, ()>(self.active_key(), release, &json).await
            }
        };
        if let Err(e) = self.timed("updating the unfinished index", update).await {
            tracing::warn!(release = %release, error = %e, "could not update the index of unfinished releases");
        }
        Ok(n)
    }

    /// Runs `op` under [`OP_TIMEOUT`], mapping errors to [`StoreError::Unavailable`].
    async fn timed<T, F>(&self, doing: &str, op: F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(OP_TIMEOUT, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(&self.shown, format!("{doing}: {e}"))),
            Err(_) => Err(unavailable(&self.shown, format!("{doing}: no answer within {} ms", OP_TIMEOUT.as_millis()))),
        }
    }

    /// Runs a pipeline; a server that forgot the scripts (restarted) gets them loaded once more.
    async fn query_pipe(&self, pipe: &redis::Pipeline, scripts: &[&Script]) -> redis::RedisResult<Vec<Value>> {
        let mut conn = self.conn.clone();
        match pipe.query_async::<Vec<Value>>(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                for s in scripts {
                    s.prepare_invoke().load_async(&mut conn).await?;
                }
                pipe.query_async(&mut conn).await
            }
            other => other,
        }
    }

    async fn script<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> redis::RedisResult<T> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        for a in args {
            inv.arg(a);
        }
        let mut conn = self.conn.clone();
        inv.invoke_async(&mut conn).await
    }
}

/// An index row (`…:summary`, or a field of `raybot:unfinished`) of release `id`.
fn parse_row(id: &str, json: &str) -> Result<ReleaseSummary, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("summary of {id}: {e}")))
}

/// Newest release first (`raybot status`, `/ray history`), ties by id.
fn newest_first(rows: &mut [ReleaseSummary]) {
    rows.sort_by(|a, b| b.started_at_ms.cmp(&a.started_at_ms).then_with(|| b.id.cmp(&a.id)));
}

fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn late(doing: &str) -> StoreError {
    StoreError::Unavailable(format!("{doing}: redis answered too late, so nothing was written"))
}

fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// What the append script answered for `a`.
fn append_outcome(a: &Append, reply: Option<&Value>) -> Result<u64, StoreError> {
    let release = a.release.clone();
    let Some(Value::Array(reply)) = reply else { return Err(corrupt("append", &reply)) };
    match (reply.first().and_then(text).as_deref(), reply.get(1).and_then(int)) {
        (Some("ok"), Some(n)) => Ok(n),
        (Some("conflict"), Some(found)) => Err(StoreError::Conflict { release, expected: a.expected_len, found }),
        (Some("late"), _) => Err(late(&format!("appending to {release}"))),
        (Some("duplicate"), _) => {
            let key = reply.get(2).and_then(text).unwrap_or_default();
            let key = key.rsplit_once(":once:").map(|(_, k)| k.to_string()).unwrap_or(key);
            Err(StoreError::Duplicate { release, key })
        }
        (Some("fenced"), Some(current)) => {
            Err(StoreError::Fenced { release, token: a.fence.unwrap_or_default(), current })
        }
        _ => Err(corrupt("append", reply)),
    }
}

fn corrupt(what: &str, v: &impl std::fmt::Debug) -> StoreError {
    StoreError::Corrupt(format!("unexpected answer from redis for {what}: {v:?}"))
}

#[async_trait]
impl Store for RedisStore {
    async fn append_all(&self, group: &[Append]) -> Vec<Result<u64, StoreError>> {
        if self.conn.is_cluster() {
            // Scripts of several slots cannot share a request on a cluster: one after another,
            // each with its own deadline.
            let mut out = Vec::with_capacity(group.len());
            for a in group {
                out.push(match self.deadline().await {
                    Ok(deadline) => self.append_on_cluster(a, deadline).await,
                    Err(e) => Err(e),
                });
            }
            return out;
        }
        let failed = |e: &StoreError| group.iter().map(|_| Err(e.clone())).collect();
        let deadline = match self.deadline().await {
            Ok(d) => d,
            Err(e) => return failed(&e),
        };
        // One node, one request: each release's append is one script (all or nothing), and the
        // script keeps both indexes too.
        let mut pipe = redis::pipe();
        for a in group {
            match self.append_invocation(a, deadline.clone(), true) {
                Ok((inv, _)) => {
                    pipe.invoke_script(&inv);
                }
                Err(e) => return failed(&e),
            }
        }
        let what = match group {
            [one] => format!("appending to {}", one.release),
            _ => format!("appending to {} releases in one request", group.len()),
        };
        let out = match self.timed(&what, self.query_pipe(&pipe, &[&self.append])).await {
            Ok(out) => out,
            Err(e) => return failed(&e),
        };
        group.iter().enumerate().map(|(i, a)| append_outcome(a, out.get(i))).collect()
    }

    async fn read(&self, release: &str) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        let key = self.log_key(release);
        let reply: redis::streams::StreamRangeReply =
            self.timed(&format!("reading {release}"), conn.xrange_all(&key)).await?;
        reply
            .ids
            .into_iter()
            .map(|entry| {
                entry
                    .map
                    .get("e")
                    .and_then(text)
                    .ok_or_else(|| StoreError::Corrupt(format!("{key} entry {} has no `e` field", entry.id)))
            })
            .collect()
    }

    async fn summaries(&self) -> Result<Vec<ReleaseSummary>, StoreError> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = self.timed("listing releases", conn.zrevrange(self.index_key(), 0, -1)).await?;
        self.rows(&ids).await
    }

    async fn unfinished(&self) -> Result<Vec<ReleaseSummary>, StoreError> {
        self.index_unfinished_once().await?;
        let mut conn = self.conn.clone();
        let rows: Vec<(String, String)> =
            self.timed("listing unfinished releases", conn.hgetall(self.active_key())).await?;
        self.open_rows(rows).await
    }

    async fn seen_all_and_unfinished(
        &self,
        keys: &[Option<&str>],
        now_ms: u64,
    ) -> Result<(Vec<bool>, Vec<ReleaseSummary>), StoreError> {
        if self.conn.is_cluster() || !self.active_indexed.load(Ordering::Relaxed) {
            let mut seen = Vec::with_capacity(keys.len());
            for k in keys {
                seen.push(match k {
                    Some(k) => self.seen(k, now_ms).await?,
                    None => false,
                });
            }
            return Ok((seen, self.unfinished().await?));
        }
        // One round trip: what every delivery (or group of deliveries) reads before it is handled.
        let mut pipe = redis::pipe();
        for k in keys.iter().flatten() {
            pipe.exists(format!("{}:seen:{k}", self.prefix));
        }
        pipe.hgetall(self.active_key());
        let mut conn = self.conn.clone();
        let mut out: Vec<Value> = self.timed("reading the unfinished releases", pipe.query_async(&mut conn)).await?;
        let rows = out.pop().ok_or_else(|| corrupt("the unfinished releases", &"an empty answer"))?;
        let rows: Vec<(String, String)> =
            redis::from_redis_value(rows).map_err(|e| corrupt("the unfinished releases", &e))?;
        let mut found = out.iter().map(|v| int(v).unwrap_or(0) > 0);
        let seen = keys.iter().map(|k| k.is_some() && found.next().unwrap_or(false)).collect();
        Ok((seen, self.open_rows(rows).await?))
    }

    fn requests(&self) -> Option<u64> {
        Some(self.round_trips())
    }

    fn queue(&self) -> Option<Arc<dyn super::JobQueue>> {
        Some(Arc::new(self.clone()))
    }

    async fn heartbeat(&self, replica: &str, ttl_ms: u64) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let key = self.replica_key(replica);
        self.timed("recording a heartbeat", conn.pset_ex::<_, _, ()>(key, wall_ms(), ttl_ms.max(1))).await
    }

    async fn farewell(&self, replica: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        self.timed("removing a heartbeat", conn.del::<_, ()>(self.replica_key(replica))).await
    }

    async fn alive(&self, replica: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        self.timed("reading a heartbeat", conn.exists(self.replica_key(replica))).await
    }

    async fn lock(&self, env: &str, owner: &str, lease_ms: u64, now_ms: u64) -> Result<LockOutcome, StoreError> {
        let key = self.lock_key(env);
        let keys = [key.clone(), format!("{key}:token"), format!("{key}:last")];
        let args = [
            self.deadline().await?,
            owner.to_string(),
            lease_ms.to_string(),
            now_ms.to_string(),
            (now_ms + lease_ms).to_string(),
        ];
        let reply: Vec<Value> = self.timed(&format!("locking {env}"), self.script(&self.lock, &keys, &args)).await?;
        if reply.first().and_then(text).as_deref() == Some("late") {
            return Err(late(&format!("locking {env}")));
        }
        let (Some(acquired), Some(holder), Some(token), Some(expires_at_ms), Some(previous)) = (
            reply.first().and_then(int),
            reply.get(1).and_then(text),
            reply.get(2).and_then(int),
            reply.get(3).and_then(int),
            reply.get(4).and_then(text),
        ) else {
            return Err(corrupt("lock", &reply));
        };
        let lock = Lock { env: env.to_string(), owner: holder, token, expires_at_ms };
        if acquired == 0 {
            return Ok(LockOutcome::Held(lock));
        }
        if !previous.is_empty() {
            // The previous holder's lease lapsed: its release may no longer write with its old token.
            let mut conn = self.conn.clone();
            let fence =
                self.timed("fencing the previous holder", conn.set::<_, _, ()>(self.fence_key(&previous), token));
            if let Err(e) = fence.await {
                tracing::warn!(release = %previous, error = %e, "could not fence the previous lock holder");
            }
        }
        Ok(LockOutcome::Acquired(lock))
    }

    async fn unlock(&self, env: &str, owner: &str, token: u64) -> Result<bool, StoreError> {
        let keys = [self.lock_key(env)];
        let args = [owner.to_string(), token.to_string()];
        let n: i64 = self.timed(&format!("unlocking {env}"), self.script(&self.unlock, &keys, &args)).await?;
        Ok(n == 1)
    }

    async fn lock_holder(&self, env: &str, now_ms: u64) -> Result<Option<Lock>, StoreError> {
        let mut conn = self.conn.clone();
        let (owner, token, expires): (Option<String>, Option<u64>, Option<u64>) = self
            .timed(
                &format!("reading the lock of {env}"),
                redis::cmd("HMGET").arg(self.lock_key(env)).arg(&["owner", "token", "expires"]).query_async(&mut conn),
            )
            .await?;
        Ok(match (owner, token, expires) {
            (Some(owner), Some(token), Some(expires_at_ms)) if expires_at_ms > now_ms => {
                Some(Lock { env: env.to_string(), owner, token, expires_at_ms })
            }
            _ => None,
        })
    }

    async fn remember(&self, key: &str, ttl_ms: u64, _now_ms: u64) -> Result<bool, StoreError> {
        let keys = [format!("{}:seen:{key}", self.prefix)];
        let args = [self.deadline().await?, ttl_ms.max(1).to_string()];
        let doing = "recording an idempotency key";
        let reply: Vec<Value> = self.timed(doing, self.script(&self.remember, &keys, &args)).await?;
        match (reply.first().and_then(text).as_deref(), reply.get(1).and_then(int)) {
            (Some("ok"), Some(n)) => Ok(n == 1),
            (Some("late"), _) => Err(late(doing)),
            _ => Err(corrupt("remember", &reply)),
        }
    }

    async fn seen(&self, key: &str, _now_ms: u64) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        self.timed("reading an idempotency key", conn.exists(format!("{}:seen:{key}", self.prefix))).await
    }

    async fn announced(&self, release: &str) -> Result<Option<BTreeMap<String, u64>>, StoreError> {
        let mut conn = self.conn.clone();
        let doing = "reading how far a release's posts went out";
        let marks: BTreeMap<String, u64> = self.timed(doing, conn.hgetall(self.announced_key(release))).await?;
        Ok((!marks.is_empty()).then_some(marks))
    }

    async fn set_announced(&self, release: &str, replica: &str, through: u64) -> Result<(), StoreError> {
        let keys = [self.announced_key(release)];
        let args = [replica.to_string(), through.to_string()];
        let _: i64 = self
            .timed("recording how far a release's posts went out", self.script(&self.announce, &keys, &args))
            .await?;
        Ok(())
    }

    async fn health(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let pong: String = self.timed("PING", redis::cmd("PING").query_async(&mut conn)).await?;
        if pong == "PONG" { Ok(()) } else { Err(corrupt("PING", &pong)) }
    }
}
