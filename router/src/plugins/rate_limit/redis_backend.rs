//! The Redis backend: one atomic script per check, so every router replica draws from one
//! budget. Redis's own clock decides time, so replicas with drifting clocks still agree.

use std::time::Duration;

use crate::plugins::redis_connection::{RedisConnection, RedisError};

use super::gcra::{Decision, Quota};

const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local emission = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then
  return {0, 0, tat - now, allow_at - now}
end
local new_tat = tat + emission
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now + emission)
local used = new_tat - now
local remaining = math.floor((tolerance + emission - used) / emission)
if remaining < 0 then remaining = 0 end
return {1, remaining, used, 0}
"#;

pub struct RedisBackend {
    redis: RedisConnection,
    prefix: String,
    script: redis::Script,
}

impl RedisBackend {
    pub fn new(url: &str, prefix: String, timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            redis: RedisConnection::new(url, timeout)?,
            prefix,
            script: redis::Script::new(SCRIPT),
        })
    }

    /// One check, or why Redis could not answer in time. After a failure Redis rests for a
    /// second: the in-process limits answer at once instead of every request waiting out a
    /// timeout.
    pub async fn check(&self, key: &str, quota: &Quota) -> Result<Decision, RedisError> {
        let key = format!("{}{key}", self.prefix);
        let reply: Vec<i64> = self
            .redis
            .run(true, |mut conn| async move {
                let mut invocation = self.script.key(key);
                invocation
                    .arg(quota.emission_ms())
                    .arg(quota.tolerance_ms());
                invocation.invoke_async(&mut conn).await
            })
            .await?;
        let [allowed, remaining, reset, retry] = reply[..] else {
            return Err(RedisError::Failed(format!(
                "unexpected redis reply {reply:?}"
            )));
        };
        Ok(Decision {
            allowed: allowed == 1,
            remaining: remaining.max(0) as u64,
            reset_ms: reset.max(0) as u64,
            retry_after_ms: retry.max(0) as u64,
        })
    }
}
