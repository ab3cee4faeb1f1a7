//! The job queue on Redis Streams: one stream per chat platform, `raybot:{jobs:<platform>}`, read
//! by the consumer group `runners` in which every raybot process is a consumer named after itself.
//!
//! - `XREADGROUP … >` hands each job to exactly one replica; the entry stays in that consumer's
//!   pending list until the job's result is recorded in the release's log ([`JobQueue::done`]:
//!   `XACK` + `XDEL`).
//! - While the job runs, its replica renews the claim (`XCLAIM … JUSTID` resets the entry's idle
//!   time) a few times per lease, and only if the entry is still its own.
//! - Every replica looks for entries idle past the lease with `XAUTOCLAIM`; such a job's replica
//!   stopped, so its outcome is unknown: raybot says so and never runs it again.
//! - `raybot:{jobs:<platform>}:ids` maps job ids to entries, so queueing the same job twice (a
//!   replica taking a release over re-queues the job the release waits for) queues it once.
//!
//! All keys of a platform's queue share the hash tag `{jobs:<platform>}`: each script touches one
//! Redis Cluster slot.

use redis::{Script, Value};

use super::{RedisStore, corrupt, text};
use crate::store::{JobQueue, QueuedJob, StoreError};

const GROUP: &str = "runners";

// KEYS: stream, ids. ARGV: job id, payload. The group is created on first use, from the start of
// the stream, so no job queued before it existed is missed.
const ENQUEUE: &str = r#"
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
pcall(redis.call, 'XGROUP', 'CREATE', KEYS[1], 'runners', '0', 'MKSTREAM')
local id = redis.call('XADD', KEYS[1], '*', 'job', ARGV[1], 'p', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], id)
return 1
"#;

// KEYS: stream. ARGV: entry, consumer. Renews the claim only while the entry is the consumer's.
const EXTEND: &str = r#"
local p = redis.call('XPENDING', KEYS[1], 'runners', ARGV[1], ARGV[1], 1)
if p[1] == nil or p[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], 'runners', ARGV[2], 0, ARGV[1], 'JUSTID')
return 1
"#;

// KEYS: stream. ARGV: consumer, min idle ms. Returns {entry, previous consumer, fields} for each
// entry of another consumer idle past the lease (XAUTOCLAIM moves it to this consumer).
const CLAIM: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local ok, pending = pcall(redis.call, 'XPENDING', KEYS[1], 'runners', 'IDLE', ARGV[2], '-', '+', 800)
if not ok then return {} end
local owners = {}
for _, e in ipairs(pending) do owners[e[1]] = e[2] end
local out = {}
local cursor = '0-0'
for _ = 1, 8 do
  local claimed = redis.call('XAUTOCLAIM', KEYS[1], 'runners', ARGV[1], ARGV[2], cursor, 'COUNT', 100)
  for _, e in ipairs(claimed[2]) do
    local owner = owners[e[1]] or ''
    if owner ~= ARGV[1] then table.insert(out, {e[1], owner, e[2]}) end
  end
  for _, id in ipairs(claimed[3] or {}) do table.insert(out, {id, owners[id] or '', {}}) end
  cursor = claimed[1]
  if cursor == '0-0' then break end
end
-- Consumers of processes long gone (pid-named ones pile up) leave the group once nothing is
-- pending for them; a live one is recreated by its next read.
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], 'runners')) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if info['pending'] == 0 and info['idle'] > 3600000 and info['name'] ~= ARGV[1] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], 'runners', info['name'])
  end
end
return out
"#;

// KEYS: stream, ids. ARGV: entry, job id.
const DONE: &str = r#"
redis.call('XACK', KEYS[1], 'runners', ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[2], ARGV[2]) end
return 1
"#;

/// The queue's scripts, loaded once per store.
#[derive(Clone)]
pub(super) struct Scripts {
    enqueue: Script,
    extend: Script,
    claim: Script,
    done: Script,
}

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            enqueue: Script::new(ENQUEUE),
            extend: Script::new(EXTEND),
            claim: Script::new(CLAIM),
            done: Script::new(DONE),
        }
    }
}

impl RedisStore {
    fn jobs_key(&self, platform: &str) -> String {
        format!("{}:{{jobs:{platform}}}", self.prefix)
    }

    fn jobs_ids_key(&self, platform: &str) -> String {
        format!("{}:{{jobs:{platform}}}:ids", self.prefix)
    }

    /// Creates the group if the stream or the group is missing (first use, or the data was lost).
    async fn ensure_group(&self, platform: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE").arg(self.jobs_key(platform)).arg(GROUP).arg("0").arg("MKSTREAM");
        let create = cmd.query_async::<()>(&mut conn);
        match tokio::time::timeout(super::OP_TIMEOUT, create).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if e.code() == Some("BUSYGROUP") => Ok(()),
            Ok(Err(e)) => Err(super::unavailable(&self.shown, format!("creating the job queue: {e}"))),
            Err(_) => Err(super::unavailable(&self.shown, "creating the job queue: no answer")),
        }
    }

    /// `XREADGROUP` for `consumer` from `from` (`>`: new entries; `0`: its pending ones).
    async fn read_group(&self, platform: &str, consumer: &str, from: &str) -> Result<Vec<QueuedJob>, StoreError> {
        let key = self.jobs_key(platform);
        let mut attempt = 0;
        loop {
            let mut conn = self.conn.clone();
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP").arg(GROUP).arg(consumer).arg("COUNT").arg(if from == ">" { 1 } else { 100 });
            cmd.arg("STREAMS").arg(&key).arg(from);
            let read = cmd.query_async::<Value>(&mut conn);
            self.round_trips.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let reply = match tokio::time::timeout(super::OP_TIMEOUT, read).await {
                Ok(Ok(v)) => v,
                Ok(Err(e)) if e.code() == Some("NOGROUP") && attempt == 0 => {
                    attempt += 1;
                    self.ensure_group(platform).await?;
                    continue;
                }
                Ok(Err(e)) => return Err(super::unavailable(&self.shown, format!("reading the job queue: {e}"))),
                Err(_) => return Err(super::unavailable(&self.shown, "reading the job queue: no answer")),
            };
            return parse_read(&reply);
        }
    }
}

/// Entries of an `XREADGROUP` reply (`[[stream, [[id, [field, value …]] …]]]`, RESP2 or a RESP3 map).
fn parse_read(reply: &Value) -> Result<Vec<QueuedJob>, StoreError> {
    let streams: Vec<&Value> = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(a) => a.iter().filter_map(|s| if let Value::Array(p) = s { p.get(1) } else { None }).collect(),
        Value::Map(m) => m.iter().map(|(_, v)| v).collect(),
        other => return Err(corrupt("XREADGROUP", other)),
    };
    let mut out = Vec::new();
    for entries in streams {
        let Value::Array(entries) = entries else { return Err(corrupt("XREADGROUP", entries)) };
        for e in entries {
            out.push(entry(e).ok_or_else(|| corrupt("XREADGROUP entry", e))?);
        }
    }
    Ok(out)
}

/// `[id, [field, value …]]` → a job; an entry deleted meanwhile has no fields (empty job).
fn entry(e: &Value) -> Option<QueuedJob> {
    let Value::Array(parts) = e else { return None };
    let id = parts.first().and_then(text)?;
    let mut job = QueuedJob { entry: id, job: String::new(), payload: String::new() };
    if let Some(Value::Array(fields)) = parts.get(1) {
        for pair in fields.chunks(2) {
            match (pair.first().and_then(text).as_deref(), pair.get(1).and_then(text)) {
                (Some("job"), Some(v)) => job.job = v,
                (Some("p"), Some(v)) => job.payload = v,
                _ => {}
            }
        }
    }
    Some(job)
}

#[async_trait::async_trait]
impl JobQueue for RedisStore {
    async fn enqueue(&self, platform: &str, job: &str, payload: &str) -> Result<bool, StoreError> {
        let keys = [self.jobs_key(platform), self.jobs_ids_key(platform)];
        let args = [job.to_string(), payload.to_string()];
        let n: i64 = self.timed(&format!("queueing {job}"), self.script(&self.jobs.enqueue, &keys, &args)).await?;
        Ok(n == 1)
    }

    async fn take(&self, platform: &str, consumer: &str) -> Result<Option<QueuedJob>, StoreError> {
        Ok(self.read_group(platform, consumer, ">").await?.into_iter().next())
    }

    async fn taken_by(&self, platform: &str, consumer: &str) -> Result<Vec<QueuedJob>, StoreError> {
        self.read_group(platform, consumer, "0").await
    }

    async fn extend(&self, platform: &str, consumer: &str, entry: &str) -> Result<bool, StoreError> {
        let keys = [self.jobs_key(platform)];
        let args = [entry.to_string(), consumer.to_string()];
        let n: i64 = self.timed("renewing a job claim", self.script(&self.jobs.extend, &keys, &args)).await?;
        Ok(n == 1)
    }

    async fn claim_abandoned(
        &self,
        platform: &str,
        consumer: &str,
        min_idle_ms: u64,
    ) -> Result<Vec<(QueuedJob, String)>, StoreError> {
        let keys = [self.jobs_key(platform)];
        let args = [consumer.to_string(), min_idle_ms.to_string()];
        let reply: Vec<Value> =
            self.timed("claiming abandoned jobs", self.script(&self.jobs.claim, &keys, &args)).await?;
        let mut out = Vec::new();
        for row in &reply {
            let Value::Array(parts) = row else { return Err(corrupt("claim", row)) };
            let (Some(id), Some(owner)) = (parts.first().and_then(text), parts.get(1).and_then(text)) else {
                return Err(corrupt("claim", row));
            };
            let fields = parts.get(2).cloned().unwrap_or(Value::Nil);
            let job = entry(&Value::Array(vec![Value::BulkString(id.clone().into_bytes()), fields]))
                .ok_or_else(|| corrupt("claim", row))?;
            out.push((job, owner));
        }
        Ok(out)
    }

    async fn done(&self, platform: &str, entry: &str, job: &str) -> Result<(), StoreError> {
        let keys = [self.jobs_key(platform), self.jobs_ids_key(platform)];
        let args = [entry.to_string(), job.to_string()];
        let _: i64 = self.timed(&format!("finishing {job}"), self.script(&self.jobs.done, &keys, &args)).await?;
        Ok(())
    }
}
