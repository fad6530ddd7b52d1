//! The stage's configuration (`plugins: switchyard.pipeline: response_cache:` in the router
//! YAML).

use std::net::SocketAddr;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

pub use crate::plugins::entity_cache::config::EntityCacheConfig;

/// Configuration of `switchyard.response_cache`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponseCacheConfig {
    /// Off: whole responses are not cached (subgraph fetches and entities still are when
    /// `entities` is on; both share the levels configured here).
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Byte budget of the in-process level (per router process).
    #[serde(default = "default_memory_bytes")]
    pub memory_bytes: usize,
    /// The level shared by every replica, and the invalidation channel. In-process only when
    /// absent (one router, or replicas that may serve each other's stale entries until
    /// they expire).
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    /// Age given to a subgraph response that has no `Cache-Control`. Absent: such a response
    /// is not cached, so nothing is cached by accident.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub default_max_age: Option<Duration>,
    /// How long past its age a response is kept in memory, to be served (with its `Age`) when
    /// the subgraphs fail instead of an error: the last good home feed beats an error screen.
    /// `0s` turns it off.
    #[serde(default = "default_stale_if_error", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub stale_if_error: Duration,
    /// Longest a response is kept, whatever the hints say.
    #[serde(default = "default_max_ttl", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub max_ttl: Duration,
    /// The admin endpoint that invalidates by tag; none when absent.
    #[serde(default)]
    pub invalidation: Option<InvalidationConfig>,
    /// The entity cache: each subgraph fetch and each entity cached on its own, in the same
    /// two levels, so personalised responses reuse their public parts. Off when absent.
    #[serde(default)]
    pub entities: Option<EntityCacheConfig>,
}

/// The shared level (Redis), and the channel invalidations travel on between replicas.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    pub url: String,
    /// Prefix of every key this plugin writes.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// The pub/sub channel invalidations travel on.
    #[serde(default = "default_channel")]
    pub channel: String,
    /// Longest wait for Redis before carrying on without it.
    #[serde(default = "default_redis_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
}

/// The admin endpoint that invalidates cached responses by tag.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InvalidationConfig {
    /// Where the endpoint listens; keep it off the public listener (e.g. 127.0.0.1:8089).
    #[schemars(with = "String")]
    pub listen: SocketAddr,
    #[serde(default = "default_invalidation_path")]
    pub path: String,
    /// The bearer token callers must send; at least 16 characters.
    pub token: String,
}

/// A duration as the whole seconds Cache-Control speaks (at least 1 s), or why it is not one.
pub fn whole_seconds(d: Duration, what: &str) -> Result<u32, String> {
    let secs = d.as_secs();
    if secs == 0 || d.subsec_nanos() != 0 || secs > u64::from(u32::MAX) {
        return Err(format!(
            "{what} must be a whole number of seconds, at least 1s"
        ));
    }
    Ok(secs as u32)
}

fn enabled() -> bool {
    true
}
fn default_memory_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_stale_if_error() -> Duration {
    Duration::from_secs(60)
}
fn default_max_ttl() -> Duration {
    Duration::from_secs(3600)
}
fn default_prefix() -> String {
    "switchyard:rc:".into()
}
fn default_channel() -> String {
    "switchyard:rc:invalidations".into()
}
fn default_redis_timeout() -> Duration {
    Duration::from_millis(50)
}
fn default_invalidation_path() -> String {
    "/invalidation".into()
}
