//! The Redis backend: one atomic script per check, so every router replica draws from one
//! budget. Redis's own clock decides time, so replicas with drifting clocks still agree.

use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::Mutex;

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
    client: redis::Client,
    prefix: String,
    timeout: Duration,
    script: redis::Script,
    connection: Mutex<Option<ConnectionManager>>,
}

impl RedisBackend {
    pub fn new(url: &str, prefix: String, timeout: Duration) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis url {url:?}: {e}"))?;
        Ok(Self {
            client,
            prefix,
            timeout,
            script: redis::Script::new(SCRIPT),
            connection: Mutex::new(None),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, String> {
        let mut slot = self.connection.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(0);
        let conn = tokio::time::timeout(
            self.timeout * 2,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| "connecting to redis timed out".to_owned())?
        .map_err(|e| format!("connecting to redis: {e}"))?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// One check, or why Redis could not answer in time.
    pub async fn check(&self, key: &str, quota: &Quota) -> Result<Decision, String> {
        let mut conn = self.connection().await?;
        let mut invocation = self.script.key(format!("{}{key}", self.prefix));
        invocation
            .arg(quota.emission_ms())
            .arg(quota.tolerance_ms());
        let reply: Vec<i64> =
            tokio::time::timeout(self.timeout, invocation.invoke_async(&mut conn))
                .await
                .map_err(|_| "redis did not answer in time".to_owned())?
                .map_err(|e| format!("redis: {e}"))?;
        let [allowed, remaining, reset, retry] = reply[..] else {
            return Err(format!("unexpected redis reply {reply:?}"));
        };
        Ok(Decision {
            allowed: allowed == 1,
            remaining: remaining.max(0) as u64,
            reset_ms: reset.max(0) as u64,
            retry_after_ms: retry.max(0) as u64,
        })
    }
}
