//! Domain events: written in the same transaction as the change they describe (the
//! [`outbox`]), moved to a bus by the [`relay`], and handled by [`worker`]s.
//!
//! Delivery is at least once and ordered per aggregate within a stream partition: one
//! aggregate's events are written on one shard, relayed in outbox order, and published to the
//! partition its key hashes to. Handlers make duplicates harmless ([`processed`]).
//!
//! Two buses with one contract ([`EventBus`]): Redis Streams with consumer groups
//! ([`redis_bus`]) for deployments, and an embedded bus durable in one SQLite file
//! ([`embedded`]) for `switchyard dev`, so a new user sees the whole pipeline with no servers.

pub mod embedded;
pub mod invalidation;
pub mod kinds;
pub mod outbox;
pub mod processed;
pub mod redis_bus;
pub mod relay;
pub mod worker;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One domain event as it travels: what happened, to which aggregate, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique across the deployment: `<domain>:<shard>:<outbox sequence>`.
    pub id: String,
    /// `PostLiked`, `UserFollowed`, ...
    pub kind: String,
    /// The subgraph that owns it (and the stream it travels on).
    pub domain: String,
    /// `Post:123`: what the event is about; the partition key.
    pub aggregate: String,
    pub occurred_at: DateTime<Utc>,
    /// The event's fields (per kind; see docs/events.md).
    pub data: serde_json::Value,
    /// W3C trace context of the change that recorded it (when that request was traced), so
    /// the workers that handle the event continue its trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Largest serialized event accepted from a bus (larger entries go to the dead letters).
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

impl Event {
    /// Decodes a bus entry; what cannot be read is the caller's dead letter, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Self, BusError> {
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(BusError::Malformed(format!(
                "an event of {} bytes (at most {MAX_EVENT_BYTES})",
                bytes.len()
            )));
        }
        serde_json::from_slice(bytes).map_err(|e| BusError::Malformed(e.to_string()))
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("events serialize")
    }

    /// A field of `data` as an id (events carry ids as numbers).
    pub fn id_field(&self, name: &str) -> Result<i64, String> {
        self.data
            .get(name)
            .and_then(serde_json::Value::as_i64)
            .ok_or_else(|| {
                format!(
                    "{} {}: `{name}` is missing or not an id",
                    self.kind, self.id
                )
            })
    }
}

/// How streams are named and partitioned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Streams {
    /// Prefix of every key (`switchyard:events:`).
    pub prefix: String,
    /// Partitions per domain stream; one aggregate always maps to the same one.
    pub partitions: u32,
}

impl Default for Streams {
    fn default() -> Self {
        Self {
            prefix: "switchyard:events:".into(),
            partitions: 4,
        }
    }
}

impl Streams {
    /// The stream partition an aggregate's events go to.
    pub fn stream_for(&self, domain: &str, aggregate: &str) -> String {
        let partition =
            crate::store::stable_hash(aggregate.as_bytes()) % u64::from(self.partitions.max(1));
        format!("{}{domain}:{partition}", self.prefix)
    }

    /// Every partition of a domain.
    pub fn all(&self, domain: &str) -> Vec<String> {
        (0..self.partitions.max(1))
            .map(|p| format!("{}{domain}:{p}", self.prefix))
            .collect()
    }

    /// Where events a worker gave up on go.
    pub fn dead_letters(&self, group: &str) -> String {
        format!("{}dead:{group}", self.prefix)
    }
}

/// One entry handed to a consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub stream: String,
    /// The bus's id of the entry (what is acknowledged).
    pub entry: String,
    /// The event, or why its bytes could not be read.
    pub event: Result<Event, String>,
    /// How often it has been delivered, this time included.
    pub deliveries: u64,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    #[error("event bus: {0}")]
    Backend(String),
    #[error("malformed event: {0}")]
    Malformed(String),
}

/// What the relay and the workers need of a bus. Both implementations keep Redis Streams'
/// consumer-group semantics: each group sees every entry; an entry read is pending for the
/// consumer that read it until acknowledged; a pending entry idle long enough can be claimed
/// by another consumer (its owner died).
#[async_trait::async_trait]
pub trait EventBus: Send + Sync {
    /// Appends entries to `stream`, in order.
    async fn publish(&self, stream: &str, entries: &[String]) -> Result<(), BusError>;
    /// Creates `group` on `stream` (from the start) if missing.
    async fn ensure_group(&self, stream: &str, group: &str) -> Result<(), BusError>;
    /// New entries for `consumer`, waiting up to `block` when there are none.
    async fn read_new(
        &self,
        streams: &[String],
        group: &str,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, BusError>;
    /// Entries pending (for any consumer) for at least `min_idle`, now pending for `consumer`.
    async fn claim_idle(
        &self,
        stream: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Delivery>, BusError>;
    async fn ack(&self, stream: &str, group: &str, entries: &[String]) -> Result<(), BusError>;
    /// Entries in `stream` (for tests, replays and the dead-letter runbook).
    async fn len(&self, stream: &str) -> Result<u64, BusError>;
    /// Every entry of `stream`, oldest first, at most `max`.
    async fn range(&self, stream: &str, max: usize) -> Result<Vec<(String, String)>, BusError>;
    /// How far `group` is behind on `stream` (for the lag metrics).
    async fn backlog(&self, stream: &str, group: &str) -> Result<Backlog, BusError>;
}

/// A consumer group's backlog on one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Entries not delivered to the group yet (`None` when Redis cannot tell, e.g. after
    /// entries were trimmed before the group read them).
    pub lag: Option<u64>,
    /// Entries delivered but not acknowledged.
    pub pending: u64,
}
