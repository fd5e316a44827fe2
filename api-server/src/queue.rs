//! The Redis job queue: one list per priority, a per-worker processing list that a chunk moves to
//! atomically when taken, heartbeats in a sorted set so a dead worker's chunks go back to the
//! queue, retries with exponential backoff through a delayed set, and a dead-letter list. A
//! message only names a chunk (its rows are in PostgreSQL), so delivering one twice is harmless,
//! and a message Redis lost can be rebuilt from PostgreSQL (see `sweep.rs`). Every key here is
//! queue state and carries no TTL: under `volatile-lru` cache pressure never evicts it.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The documented priorities, highest first.
pub const PRIORITIES: [(&str, i16); 5] = [("critical", 9), ("high", 7), ("normal", 5), ("low", 3), ("batch", 1)];

/// Retries after the first attempt before a chunk is dead-lettered.
pub const MAX_RETRIES: u32 = 3;

const WORKERS: &str = "rp:workers";
const PROCESSING_PREFIX: &str = "rp:processing:";
/// The processing lists that may hold messages, so a scan for live messages finds them all
/// without walking the keyspace.
const PROCESSORS: &str = "rp:processors";
const DELAYED: &str = "rp:delayed";
pub const DEAD: &str = "rp:dead";
const QUEUE_PREFIX: &str = "rp:queue:";

pub fn priority_value(name: &str) -> Option<i16> {
    PRIORITIES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

fn queue_key(priority: i16) -> String {
    format!("{QUEUE_PREFIX}{priority}")
}

fn processing_key(worker: &str) -> String {
    format!("{PROCESSING_PREFIX}{worker}")
}

/// One chunk of one job to process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub job: Uuid,
    pub chunk: i32,
    pub priority: i16,
    /// 0 for the first delivery, then one more per retry (a crash of the worker counts too).
    pub attempt: u32,
}

/// Backoff before retry `attempt` (1, 2, 3): 1 s, 2 s, 4 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1 << attempt.saturating_sub(1).min(10))
}

/// Identifies a chunk in PostgreSQL and in the live-message scan: `job:chunk`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId {
    pub job: Uuid,
    pub chunk: i32,
}

impl ChunkId {
    fn key(&self) -> String {
        format!("{}:{}", self.job, self.chunk)
    }

    fn parse(key: &str) -> Option<Self> {
        let (job, chunk) = key.split_once(':')?;
        Some(Self { job: job.parse().ok()?, chunk: chunk.parse().ok()? })
    }
}

/// Takes the oldest message of the highest non-empty priority into the processing list
/// (KEYS[#KEYS - 2]), recording that list in the set of processing lists (KEYS[#KEYS - 1]) and
/// the worker ARGV[1] as alive at ARGV[2] in the heartbeats (KEYS[#KEYS]). In one script, so no
/// processing list ever holds a message without its worker's heartbeat: a worker killed before
/// its first heartbeat would otherwise keep its chunk out of reach of the reaper, and the sweep
/// would count it live.
const TAKE: &str = r"
local processing = KEYS[#KEYS - 2]
for i = 1, #KEYS - 3 do
  local m = redis.call('LMOVE', KEYS[i], processing, 'RIGHT', 'LEFT')
  if m then
    redis.call('SADD', KEYS[#KEYS - 1], processing)
    redis.call('ZADD', KEYS[#KEYS], ARGV[2], ARGV[1])
    return m
  end
end
return false";

/// The workers whose processing lists must be returned: silent since ARGV[1] in the heartbeats
/// (KEYS[1]), or with a processing list (named in KEYS[2], key prefix ARGV[2]) but no heartbeat
/// at all (Redis lost it: eviction of that one key, or a partial restore).
const UNHEARD: &str = r"
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for _, p in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local worker = string.sub(p, #ARGV[2] + 1)
  if not redis.call('ZSCORE', KEYS[1], worker) then dead[#dead + 1] = worker end
end
return dead";

/// Of the chunk ids in ARGV, returns those with no message anywhere a live message can be: the
/// priority queues (KEYS[1..n-2]), the delayed set (KEYS[n-1]) and every processing list named
/// in KEYS[n]. One script, so no message is missed while it moves between two of them. The
/// processing lists are read by name from the set (standalone Redis, not Cluster).
const MISSING: &str = r"
local live = {}
local function mark(m)
  local ok, msg = pcall(cjson.decode, m)
  if ok and type(msg) == 'table' and msg.job and msg.chunk then
    live[msg.job .. ':' .. tostring(msg.chunk)] = true
  end
end
for i = 1, #KEYS - 2 do
  for _, m in ipairs(redis.call('LRANGE', KEYS[i], 0, -1)) do mark(m) end
end
for _, m in ipairs(redis.call('ZRANGE', KEYS[#KEYS - 1], 0, -1)) do mark(m) end
for _, p in ipairs(redis.call('SMEMBERS', KEYS[#KEYS])) do
  for _, m in ipairs(redis.call('LRANGE', p, 0, -1)) do mark(m) end
end
local missing = {}
for _, c in ipairs(ARGV) do
  if not live[c] then missing[#missing + 1] = c end
end
return missing";

/// Moves a failed message from the processing list into the delayed set, due at ARGV[3].
const DEFER: &str = r"
redis.call('LREM', KEYS[1], 1, ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
return 1";

/// Moves due delayed messages to the head of their queue (they are next out).
const PROMOTE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 500)
for _, m in ipairs(due) do
  redis.call('ZREM', KEYS[1], m)
  redis.call('RPUSH', ARGV[2] .. cjson.decode(m).priority, m)
end
return #due";

/// Returns every message of a (dead) worker's processing list to its queue with one more
/// attempt counted, and forgets the worker.
const REAP: &str = r"
local n = 0
while true do
  local m = redis.call('RPOP', KEYS[1])
  if not m then break end
  local msg = cjson.decode(m)
  msg.attempt = msg.attempt + 1
  redis.call('RPUSH', ARGV[2] .. msg.priority, cjson.encode(msg))
  n = n + 1
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], KEYS[1])
return n";

/// Moves a message from the processing list to the dead-letter list.
const BURY: &str = r"
redis.call('LREM', KEYS[1], 1, ARGV[1])
redis.call('LPUSH', KEYS[2], ARGV[1])
return 1";

#[derive(Clone)]
pub struct Queue {
    conn: ConnectionManager,
}

/// A message taken by a worker: the raw text identifies it in the processing list.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub raw: String,
    pub message: Message,
}

impl Queue {
    pub fn new(conn: ConnectionManager) -> Self {
        Self { conn }
    }

    pub async fn push(&self, messages: &[Message]) -> redis::RedisResult<()> {
        let Some(first) = messages.first() else { return Ok(()) };
        let raw: Vec<String> = messages.iter().filter_map(|m| serde_json::to_string(m).ok()).collect();
        let mut conn = self.conn.clone();
        conn.lpush(queue_key(first.priority), raw).await
    }

    /// Puts rebuilt messages at the head of their queues (they are next out: they waited longest).
    pub async fn requeue(&self, messages: &[Message]) -> redis::RedisResult<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for m in messages {
            pipe.rpush(queue_key(m.priority), serde_json::to_string(m).unwrap_or_default()).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async(&mut conn).await
    }

    /// The chunks of `candidates` that have no message in Redis at all.
    pub async fn missing(&self, candidates: &[ChunkId]) -> redis::RedisResult<Vec<ChunkId>> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let script = Script::new(MISSING);
        let mut invocation = script.prepare_invoke();
        for (_, p) in PRIORITIES {
            invocation.key(queue_key(p));
        }
        invocation.key(DELAYED).key(PROCESSORS);
        for c in candidates {
            invocation.arg(c.key());
        }
        let mut conn = self.conn.clone();
        let missing: Vec<String> = invocation.invoke_async(&mut conn).await?;
        Ok(missing.iter().filter_map(|k| ChunkId::parse(k)).collect())
    }

    /// Takes the next message for `worker`, if any, and records the worker alive at `now_ms`.
    /// A message that cannot be parsed is moved to the dead-letter list rather than blocking
    /// the queue.
    pub async fn take(&self, worker: &str, now_ms: i64) -> redis::RedisResult<Option<Delivery>> {
        let script = Script::new(TAKE);
        let mut invocation = script.prepare_invoke();
        for (_, p) in PRIORITIES {
            invocation.key(queue_key(p));
        }
        invocation.key(processing_key(worker)).key(PROCESSORS).key(WORKERS).arg(worker).arg(now_ms);
        let mut conn = self.conn.clone();
        let raw: Option<String> = invocation.invoke_async(&mut conn).await?;
        let Some(raw) = raw else { return Ok(None) };
        match serde_json::from_str::<Message>(&raw) {
            Ok(message) => Ok(Some(Delivery { raw, message })),
            Err(e) => {
                tracing::error!(error = %e, message = %raw, "unreadable queue message dead-lettered");
                self.bury_raw(worker, &raw).await?;
                Ok(None)
            }
        }
    }

    /// Acknowledges a processed message.
    pub async fn ack(&self, worker: &str, delivery: &Delivery) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        conn.lrem(processing_key(worker), 1, &delivery.raw).await
    }

    /// Takes a message out of the processing list and brings it back after `delay`, as
    /// delivery number `attempt` (the caller decides whether the failure counts as a retry).
    pub async fn defer(
        &self,
        worker: &str,
        delivery: &Delivery,
        attempt: u32,
        delay: Duration,
        now_ms: i64,
    ) -> redis::RedisResult<()> {
        let next = Message { attempt, ..delivery.message.clone() };
        let due = now_ms + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        let raw = serde_json::to_string(&next).unwrap_or_default();
        let mut conn = self.conn.clone();
        Script::new(DEFER)
            .key(processing_key(worker))
            .key(DELAYED)
            .arg(&delivery.raw)
            .arg(raw)
            .arg(due)
            .invoke_async(&mut conn)
            .await
    }

    /// Moves a message that exhausted its retries to the dead-letter list.
    pub async fn bury(&self, worker: &str, delivery: &Delivery) -> redis::RedisResult<()> {
        self.bury_raw(worker, &delivery.raw).await
    }

    async fn bury_raw(&self, worker: &str, raw: &str) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        Script::new(BURY).key(processing_key(worker)).key(DEAD).arg(raw).invoke_async(&mut conn).await
    }

    /// Moves due retries back to their queues.
    pub async fn promote(&self, now_ms: i64) -> redis::RedisResult<u32> {
        let mut conn = self.conn.clone();
        Script::new(PROMOTE).key(DELAYED).arg(now_ms).arg(QUEUE_PREFIX).invoke_async(&mut conn).await
    }

    pub async fn heartbeat(&self, worker: &str, now_ms: i64) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        conn.zadd(WORKERS, worker, now_ms).await
    }

    /// Returns the chunks of workers silent since `stale_before_ms`, or with chunks but no
    /// heartbeat at all, to the queue. Returns how many moved. A worker wrongly taken for dead
    /// (its heartbeat evicted) loses nothing: its chunks are delivered twice and count once.
    pub async fn reap(&self, stale_before_ms: i64) -> redis::RedisResult<u32> {
        let mut conn = self.conn.clone();
        let dead: Vec<String> = Script::new(UNHEARD)
            .key(WORKERS)
            .key(PROCESSORS)
            .arg(stale_before_ms)
            .arg(PROCESSING_PREFIX)
            .invoke_async(&mut conn)
            .await?;
        let mut moved = 0;
        for worker in dead {
            moved += self.release(&worker).await?;
        }
        Ok(moved)
    }

    /// Returns everything in `worker`'s processing list to the queue and forgets the worker.
    pub async fn release(&self, worker: &str) -> redis::RedisResult<u32> {
        let mut conn = self.conn.clone();
        let n: u32 = Script::new(REAP)
            .key(processing_key(worker))
            .key(WORKERS)
            .key(PROCESSORS)
            .arg(worker)
            .arg(QUEUE_PREFIX)
            .invoke_async(&mut conn)
            .await?;
        if n > 0 {
            tracing::warn!(worker, chunks = n, "returned the chunks of a stopped worker to the queue");
        }
        Ok(n)
    }

    /// Length of each priority queue and of the retry set (work waiting, by name), and of the
    /// dead-letter list (kept apart: it never drains by itself, so it must not drive scaling).
    pub async fn lengths(&self) -> redis::RedisResult<(Vec<(&'static str, i64)>, i64)> {
        let mut pipe = redis::pipe();
        for (_, p) in PRIORITIES {
            pipe.llen(queue_key(p));
        }
        pipe.zcard(DELAYED).llen(DEAD);
        let mut conn = self.conn.clone();
        let mut lengths: Vec<i64> = pipe.query_async(&mut conn).await?;
        let dead = lengths.pop().unwrap_or(0);
        let names = PRIORITIES.iter().map(|(n, _)| *n).chain(["retry"]);
        Ok((names.zip(lengths).collect(), dead))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially() {
        assert_eq!([1, 2, 3].map(backoff), [1, 2, 4].map(Duration::from_secs));
    }

    #[test]
    fn a_chunk_id_reads_back_what_it_writes_and_rejects_anything_else() {
        let id = ChunkId { job: Uuid::from_u128(7), chunk: 42 };
        assert_eq!(ChunkId::parse(&id.key()), Some(id));
        for bad in ["", "42", "not-a-uuid:1", "00000000-0000-0000-0000-000000000007:x"] {
            assert_eq!(ChunkId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_chunk_id_is_spelled_as_the_message_json_spells_it() {
        let m = Message { job: Uuid::from_u128(7), chunk: 3, priority: 1, attempt: 0 };
        let json: serde_json::Value = serde_json::to_value(&m).unwrap_or_default();
        let spelled = format!("{}:{}", json["job"].as_str().unwrap_or_default(), json["chunk"]);
        assert_eq!(spelled, ChunkId { job: m.job, chunk: m.chunk }.key());
    }

    #[test]
    fn priorities_have_the_documented_values() {
        assert_eq!(PRIORITIES.map(|(_, v)| v), [9, 7, 5, 3, 1]);
        assert_eq!(priority_value("batch"), Some(1));
        assert_eq!(priority_value("urgent"), None);
    }
}
