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

/// Stores an entry and adds it to its tags' sets; a tag set lives as long as its longest entry.
const PUT: &str = r#"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local ttl = tonumber(ARGV[2])
for i = 2, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return 1
"#;

/// Deletes every entry of the given tags, then tells every replica to drop its copies.
const INVALIDATE: &str = r#"
local n = 0
for i = 1, #KEYS do
  for _, key in ipairs(redis.call('SMEMBERS', KEYS[i])) do
    n = n + redis.call('DEL', key)
  end
  redis.call('DEL', KEYS[i])
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return n
"#;

pub struct RedisLevel {
    redis: RedisConnection,
    prefix: String,
    channel: String,
    put: redis::Script,
    invalidate: redis::Script,
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
            invalidate: redis::Script::new(INVALIDATE),
        })
    }

    fn entry_key(&self, key: &str) -> String {
        format!("{}e:{key}", self.prefix)
    }

    fn tag_key(&self, tag: &str) -> String {
        format!("{}t:{tag}", self.prefix)
    }

    /// The first of `keys` that holds an entry, with its position.
    pub async fn get(&self, keys: Vec<String>) -> Result<Option<(usize, Entry)>, RedisError> {
        let full: Vec<String> = keys.iter().map(|k| self.entry_key(k)).collect();
        let values: Vec<Option<Vec<u8>>> = self
            .redis
            .run(true, move |mut conn| async move {
                redis::cmd("MGET").arg(full).query_async(&mut conn).await
            })
            .await?;
        Ok(values
            .into_iter()
            .enumerate()
            .find_map(|(i, v)| v.and_then(|bytes| Entry::decode(&bytes)).map(|e| (i, e))))
    }

    pub async fn put(&self, key: &str, entry: &Entry, now_ms: u64) -> Result<(), RedisError> {
        let mut invocation = self.put.key(self.entry_key(key));
        for tag in &entry.meta.tags {
            invocation.key(self.tag_key(tag));
        }
        invocation.arg(entry.encode()).arg(entry.ttl_ms(now_ms));
        self.redis
            .run(true, move |mut conn| async move {
                invocation.invoke_async::<i64>(&mut conn).await
            })
            .await
            .map(|_| ())
    }

    /// Deletes the tags' entries in Redis and publishes the tags; returns entries deleted.
    /// Never skipped while Redis rests after a failure: a skipped invalidation would leave
    /// other replicas (whose subscriptions may still be up) serving what was invalidated.
    pub async fn invalidate(&self, tags: &[String]) -> Result<u64, RedisError> {
        let mut invocation = self.invalidate.prepare_invoke();
        for tag in tags {
            invocation.key(self.tag_key(tag));
        }
        let message = serde_json::to_string(&Message {
            tags: tags.to_vec(),
        })
        .expect("serializes");
        invocation.arg(&self.channel).arg(message);
        self.redis
            .run(false, move |mut conn| async move {
                invocation.invoke_async::<u64>(&mut conn).await
            })
            .await
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
