//! One lazily opened, self-reconnecting Redis connection per plugin, with bounded waits: a
//! plugin that uses Redis must answer within its timeout whether Redis is up, down or slow.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::Mutex;

use crate::plugins::now_ms;

/// Why a call did not reach Redis.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// Redis failed moments ago, and calls skip it for a while (not worth logging again).
    #[error("redis failed moments ago; not retrying yet")]
    Resting,
    #[error("{0}")]
    Failed(String),
}

pub struct RedisConnection {
    client: redis::Client,
    timeout: Duration,
    slot: Mutex<Option<ConnectionManager>>,
    /// After a failure, calls are refused without trying until this time (unix ms), so a slow
    /// Redis costs one timeout per second instead of one per request.
    resting_until_ms: AtomicU64,
}

/// How long calls skip Redis after it failed.
const REST: Duration = Duration::from_secs(1);

impl RedisConnection {
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("redis url {url:?}: {e}"))?;
        Ok(Self {
            client,
            timeout,
            slot: Mutex::new(None),
            resting_until_ms: AtomicU64::new(0),
        })
    }

    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn connection(&self) -> Result<ConnectionManager, String> {
        let mut slot = self.slot.lock().await;
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

    /// Runs `call` on the connection within the timeout. After a failure, Redis rests for a
    /// second when `rest_on_error` is set.
    pub async fn run<T, F, Fut>(&self, rest_on_error: bool, call: F) -> Result<T, RedisError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>> + Send,
    {
        let now = now_ms();
        if rest_on_error && now < self.resting_until_ms.load(Ordering::Relaxed) {
            return Err(RedisError::Resting);
        }
        let result = async {
            // Bounds the wait for the slot too: requests queue there while one connects.
            let conn = tokio::time::timeout(self.timeout * 2, self.connection())
                .await
                .map_err(|_| "connecting to redis timed out".to_owned())??;
            tokio::time::timeout(self.timeout, call(conn))
                .await
                .map_err(|_| "redis did not answer in time".to_owned())?
                .map_err(|e| format!("redis: {e}"))
        }
        .await
        .map_err(RedisError::Failed);
        if result.is_err() && rest_on_error {
            self.resting_until_ms
                .store(now + REST.as_millis() as u64, Ordering::Relaxed);
        }
        result
    }
}
