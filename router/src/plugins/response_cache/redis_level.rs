//! The shared level: every router replica reads and writes the same entries in Redis, and
//! hears every invalidation on one pub/sub channel. Each call is bounded by the timeout; a
//! failure is the caller's cue to carry on without Redis.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::entry::Entry;
use super::memory::MemoryLevel;
use crate::plugins::background::AbortOnDrop;
use crate::plugins::redis_connection::{RedisConnection, RedisError};

/// Stores an entry and adds it to its tags' sorted sets (scored by the entry's expiry, in
/// Redis's own clock), pruning members that expired; a tag set lives as long as its longest
/// entry. Refused (returns 0) when one of the tags was invalidated after the fill began
/// (`ARGV[3]`, the generation read when the lookup missed), on whichever replica.
/// KEYS: entry, then per tag its set and its invalidation-generation key.
const PUT: &str = r#"
local started = tonumber(ARGV[3])
local tags = (#KEYS - 1) / 2
for i = 1, tags do
  local invalidated = tonumber(redis.call('GET', KEYS[1 + tags + i]) or '0')
  if invalidated > started then return 0 end
end
local ttl = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
for i = 2, 1 + tags do
  redis.call('ZADD', KEYS[i], now + ttl, KEYS[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return 1
"#;

/// Starts an invalidation: a new generation, recorded on each tag (KEYS: the generation
/// counter, then each tag's generation key) for `ARGV[1]` ms, so fills that began before it
/// cannot store what they read.
const BEGIN_INVALIDATION: &str = r#"
local generation = redis.call('INCR', KEYS[1])
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], generation, 'PX', ARGV[1])
end
return generation
"#;

/// Deletes up to `ARGV[1]` entries of one tag (KEYS[1]); returns {deleted, left}. Called until
/// nothing is left, so a huge tag never blocks Redis for long.
const INVALIDATE_BATCH: &str = r#"
local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[1])
local n = 0
for i = 1, #popped, 2 do
  n = n + redis.call('DEL', popped[i])
end
return {n, redis.call('ZCARD', KEYS[1])}
"#;

/// Entries deleted per call of [`INVALIDATE_BATCH`].
const INVALIDATION_BATCH: usize = 500;

/// How long a tag's invalidation generation is kept: longer than any fill may take.
const GENERATION_MEMORY_MS: u64 = 60_000;

pub struct RedisLevel {
    redis: RedisConnection,
    prefix: String,
    channel: String,
    put: redis::Script,
    begin_invalidation: redis::Script,
    invalidate_batch: redis::Script,
}

/// An invalidation as published on the channel.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub tags: Vec<String>,
}

impl RedisLevel {
    pub fn new(
        url: &str,
        prefix: String,
        channel: String,
        timeout: Duration,
    ) -> Result<Self, String> {
        Ok(Self {
            redis: RedisConnection::new(url, timeout)?,
            prefix,
            channel,
            put: redis::Script::new(PUT),
            begin_invalidation: redis::Script::new(BEGIN_INVALIDATION),
            invalidate_batch: redis::Script::new(INVALIDATE_BATCH),
        })
    }

    fn entry_key(&self, key: &str) -> String {
        format!("{}e:{key}", self.prefix)
    }

    fn tag_key(&self, tag: &str) -> String {
        format!("{}t:{tag}", self.prefix)
    }

    fn tag_generation_key(&self, tag: &str) -> String {
        format!("{}i:{tag}", self.prefix)
    }

    fn generation_key(&self) -> String {
        format!("{}gen", self.prefix)
    }

    /// The first of `keys` that holds an entry, with its position, and the invalidation
    /// generation now (read in the same round trip; a fill that follows a miss passes it to
    /// [`Self::put`]).
    pub async fn get(
        &self,
        keys: Vec<String>,
    ) -> Result<(Option<(usize, Entry)>, u64), RedisError> {
        let (entries, generation) = self.get_each(&keys).await?;
        let found = entries
            .into_iter()
            .enumerate()
            .find_map(|(i, e)| e.map(|e| (i, e)));
        Ok((found, generation))
    }

    /// Each of `keys`' entry (in order), and the invalidation generation now, in one round
    /// trip: the entity cache asks for every entity of a fetch at once.
    pub async fn get_each(&self, keys: &[String]) -> Result<(Vec<Option<Entry>>, u64), RedisError> {
        let mut full: Vec<String> = keys.iter().map(|k| self.entry_key(k)).collect();
        full.push(self.generation_key());
        let mut values: Vec<Option<Vec<u8>>> = self
            .redis
            .run(true, move |mut conn| async move {
                redis::cmd("MGET").arg(full).query_async(&mut conn).await
            })
            .await?;
        let generation = values
            .pop()
            .flatten()
            .and_then(|v| String::from_utf8(v).ok()?.parse().ok())
            .unwrap_or(0);
        let entries = values
            .into_iter()
            .map(|v| v.and_then(|bytes| Entry::decode(&bytes)))
            .collect();
        Ok((entries, generation))
    }

    /// Stores `entry` unless one of its tags was invalidated after `generation` (then returns
    /// `false`).
    pub async fn put(
        &self,
        key: &str,
        entry: &Entry,
        now_ms: u64,
        generation: u64,
    ) -> Result<bool, RedisError> {
        let mut invocation = self.put.key(self.entry_key(key));
        for tag in &entry.meta.tags {
            invocation.key(self.tag_key(tag));
        }
        for tag in &entry.meta.tags {
            invocation.key(self.tag_generation_key(tag));
        }
        invocation
            .arg(entry.encode())
            .arg(entry.ttl_ms(now_ms))
            .arg(generation);
        self.redis
            .run(true, move |mut conn| async move {
                invocation.invoke_async::<i64>(&mut conn).await
            })
            .await
            .map(|stored| stored == 1)
    }

    /// Deletes the tags' entries in Redis (in batches) and publishes the tags; returns entries
    /// deleted. Never skipped while Redis rests after a failure: a skipped invalidation would
    /// leave other replicas (whose subscriptions may still be up) serving what was invalidated.
    pub async fn invalidate(&self, tags: &[String]) -> Result<u64, RedisError> {
        let mut begin = self.begin_invalidation.key(self.generation_key());
        for tag in tags {
            begin.key(self.tag_generation_key(tag));
        }
        begin.arg(GENERATION_MEMORY_MS);
        self.redis
            .run(false, move |mut conn| async move {
                begin.invoke_async::<u64>(&mut conn).await
            })
            .await?;
        let mut deleted = 0;
        for tag in tags {
            loop {
                let mut batch = self.invalidate_batch.key(self.tag_key(tag));
                batch.arg(INVALIDATION_BATCH);
                let (n, left): (u64, u64) = self
                    .redis
                    .run(false, move |mut conn| async move {
                        batch.invoke_async(&mut conn).await
                    })
                    .await?;
                deleted += n;
                if left == 0 {
                    break;
                }
            }
        }
        let message = serde_json::to_string(&Message {
            tags: tags.to_vec(),
        })
        .map_err(|e| RedisError::Failed(e.to_string()))?;
        let channel = self.channel.clone();
        self.redis
            .run(false, move |mut conn| async move {
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(message)
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await?;
        Ok(deleted)
    }

    /// Listens on the channel and drops invalidated entries from `memory`, reconnecting
    /// after failures (every second; `on_error` hears each failure, the log one line per
    /// outage). After a reconnect, `memory` is cleared: invalidations published while
    /// this replica was not listening are lost, so nothing it holds can be trusted.
    pub fn listen(
        self: &Arc<Self>,
        memory: Arc<MemoryLevel>,
        on_message: impl Fn(&[String], u64) + Send + Sync + 'static,
        on_error: impl Fn(&str) + Send + Sync + 'static,
    ) -> AbortOnDrop {
        let this = self.clone();
        AbortOnDrop(tokio::spawn(async move {
            let mut connected_before = false;
            let mut failing = false;
            let fail = |e: &str, failing: &mut bool| {
                on_error(e);
                if !*failing {
                    tracing::warn!(
                        "switchyard.response_cache: invalidation channel: {e}; retrying every second"
                    );
                }
                *failing = true;
            };
            loop {
                match this.subscribe().await {
                    Ok(pubsub) => {
                        if connected_before {
                            memory.clear();
                            tracing::info!(
                                "switchyard.response_cache: invalidation channel reconnected; in-process entries dropped"
                            );
                        }
                        connected_before = true;
                        failing = false;
                        let mut messages = pubsub.into_on_message();
                        while let Some(message) = messages.next().await {
                            let Ok(payload) = message.get_payload::<Vec<u8>>() else {
                                continue;
                            };
                            match serde_json::from_slice::<Message>(&payload) {
                                Ok(message) => {
                                    let dropped =
                                        memory.invalidate(message.tags.iter().map(String::as_str));
                                    on_message(&message.tags, dropped);
                                }
                                Err(e) => tracing::warn!(
                                    "switchyard.response_cache: ignoring a malformed invalidation message: {e}"
                                ),
                            }
                        }
                        fail("the invalidation channel closed", &mut failing);
                    }
                    Err(e) => fail(&e, &mut failing),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }))
    }

    async fn subscribe(&self) -> Result<redis::aio::PubSub, String> {
        let timeout = self.redis.timeout() * 4;
        let mut pubsub = tokio::time::timeout(timeout, self.redis.client().get_async_pubsub())
            .await
            .map_err(|_| "connecting to redis for invalidations timed out".to_owned())?
            .map_err(|e| format!("connecting to redis for invalidations: {e}"))?;
        tokio::time::timeout(timeout, pubsub.subscribe(&self.channel))
            .await
            .map_err(|_| "subscribing to the invalidation channel timed out".to_owned())?
            .map_err(|e| format!("subscribing to the invalidation channel: {e}"))?;
        Ok(pubsub)
    }
}

/// Against the local Redis (127.0.0.1:6379), each test under its own key prefix.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::now_ms;
    use crate::plugins::response_cache::entry::Meta;

    fn level() -> RedisLevel {
        let prefix = format!(
            "test:rl:{}:",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        RedisLevel::new(
            "redis://127.0.0.1:6379",
            prefix.clone(),
            format!("{prefix}channel"),
            Duration::from_secs(2),
        )
        .unwrap()
    }

    fn entry(tags: &[&str], max_age: u32) -> Entry {
        Entry {
            meta: Meta {
                stored_at_ms: now_ms(),
                max_age,
                private: false,
                tags: tags.iter().map(|t| t.to_string()).collect(),
                etag: String::new(),
            },
            body: bytes::Bytes::from_static(b"{}"),
        }
    }

    async fn zcard(level: &RedisLevel, tag: &str) -> u64 {
        let key = level.tag_key(tag);
        level
            .redis
            .run(false, move |mut conn| async move {
                redis::cmd("ZCARD").arg(key).query_async(&mut conn).await
            })
            .await
            .unwrap()
    }

    /// Regression (issue 10): a fill that raced an invalidation on another replica wrote the
    /// stale entry back.
    #[tokio::test]
    async fn a_fill_older_than_an_invalidation_is_not_stored() {
        let a = level();
        // Another replica, sharing the prefix.
        let b = RedisLevel::new(
            "redis://127.0.0.1:6379",
            a.prefix.clone(),
            a.channel.clone(),
            Duration::from_secs(2),
        )
        .unwrap();
        let (_, started) = a.get(vec!["k".into()]).await.unwrap();
        b.invalidate(&["Post:1".to_owned()]).await.unwrap();
        let stored = a
            .put("k", &entry(&["Post:1", "User:2"], 30), now_ms(), started)
            .await
            .unwrap();
        assert!(!stored, "read before the invalidation: not kept");
        assert!(a.get(vec!["k".into()]).await.unwrap().0.is_none());
        let (_, now) = a.get(vec!["k".into()]).await.unwrap();
        assert!(now > started);
        assert!(
            a.put("k", &entry(&["Post:1"], 30), now_ms(), now)
                .await
                .unwrap()
        );
        assert!(a.get(vec!["k".into()]).await.unwrap().0.is_some());
        // Other tags' fills are not affected.
        assert!(
            a.put("other", &entry(&["Post:3"], 30), now_ms(), started)
                .await
                .unwrap()
        );
    }

    /// A huge tag is deleted in batches, and tag sets drop members as their entries expire.
    #[tokio::test]
    async fn tag_sets_are_pruned_and_invalidated_in_batches() {
        let level = level();
        let (_, generation) = level.get(vec![]).await.unwrap();
        let count = INVALIDATION_BATCH * 2 + 7;
        for i in 0..count {
            assert!(
                level
                    .put(&format!("e{i}"), &entry(&["Big"], 30), now_ms(), generation)
                    .await
                    .unwrap()
            );
        }
        assert_eq!(zcard(&level, "Big").await, count as u64);
        assert_eq!(
            level.invalidate(&["Big".to_owned()]).await.unwrap(),
            count as u64
        );
        assert_eq!(zcard(&level, "Big").await, 0);

        // An entry that expired leaves its tag set at the next write to that tag.
        let mut short = entry(&["T"], 1);
        short.meta.stored_at_ms = now_ms() - 900;
        assert!(
            level
                .put("short", &short, now_ms(), generation)
                .await
                .unwrap()
        );
        let key = level.entry_key("short");
        loop {
            let key = key.clone();
            let ttl: i64 = level
                .redis
                .run(false, move |mut conn| async move {
                    redis::cmd("PTTL").arg(key).query_async(&mut conn).await
                })
                .await
                .unwrap();
            if ttl == -2 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(
            level
                .put("long", &entry(&["T"], 30), now_ms(), generation)
                .await
                .unwrap()
        );
        assert_eq!(zcard(&level, "T").await, 1, "the expired member was pruned");
    }
}
