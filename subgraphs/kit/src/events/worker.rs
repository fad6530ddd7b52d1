//! The worker runtime: a consumer group over a domain's stream partitions. Each entry is
//! handled, retried in place with back-off when the handler fails, acknowledged once handled,
//! and dead-lettered when it cannot be read or has been delivered too often. Entries another
//! consumer left pending (it died mid-batch) are claimed once idle for `claim_idle`.

use std::sync::Arc;
use std::time::Duration;

use super::{BusError, Delivery, Event, EventBus, Streams};

/// What a worker does with an event. Must be idempotent (see [`super::processed`]): an event
/// can arrive more than once.
#[async_trait::async_trait]
pub trait Handler: Send + Sync {
    /// The consumer group (and the name in `processed_events`).
    fn group(&self) -> &'static str;
    /// The domains whose streams it reads.
    fn domains(&self) -> &'static [&'static str];
    /// Handles one event; an error is retried.
    async fn handle(&self, event: &Event) -> Result<(), HandlerError>;
}

/// Why a handler failed, and when the thing it depends on asked to be called again (a push
/// provider's `Retry-After`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    pub message: String,
    /// Waited before the next in-place attempt (at most [`MAX_RETRY_AFTER`]).
    pub retry_after: Option<Duration>,
}

/// The longest in-place wait a `retry_after` can ask for; longer waits leave the entry
/// pending for a later delivery instead of holding the worker.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

impl HandlerError {
    pub fn retry_after(message: impl Into<String>, after: Option<Duration>) -> Self {
        Self {
            message: message.into(),
            retry_after: after,
        }
    }
}

impl From<String> for HandlerError {
    fn from(message: String) -> Self {
        Self {
            message,
            retry_after: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// This consumer's name within the group (unique per process).
    pub consumer: String,
    /// Entries read at once.
    pub batch: usize,
    /// How long a read waits for new entries.
    pub block: Duration,
    /// Attempts in place before the entry is left pending for a later delivery.
    pub attempts: u32,
    /// The first in-place retry waits this long; each next one twice as long.
    pub retry_base: Duration,
    /// Deliveries after which an entry goes to the dead letters.
    pub max_deliveries: u64,
    /// A pending entry idle this long is claimed (its consumer died or gave up on it).
    pub claim_idle: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            consumer: format!(
                "{}-{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into()),
                std::process::id()
            ),
            batch: 100,
            block: Duration::from_secs(1),
            attempts: 3,
            retry_base: Duration::from_millis(100),
            max_deliveries: 5,
            claim_idle: Duration::from_secs(30),
        }
    }
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub handled: usize,
    pub failed: usize,
    pub dead: usize,
}

pub struct Worker {
    bus: Arc<dyn EventBus>,
    streams: Vec<String>,
    dead_letters: String,
    handler: Arc<dyn Handler>,
    options: WorkerOptions,
}

impl Worker {
    pub async fn new(
        bus: Arc<dyn EventBus>,
        streams: &Streams,
        handler: Arc<dyn Handler>,
        options: WorkerOptions,
    ) -> Result<Self, BusError> {
        let names: Vec<String> = handler
            .domains()
            .iter()
            .flat_map(|domain| streams.all(domain))
            .collect();
        for stream in &names {
            bus.ensure_group(stream, handler.group()).await?;
        }
        Ok(Self {
            bus,
            streams: names,
            dead_letters: streams.dead_letters(handler.group()),
            handler,
            options,
        })
    }

    /// Claims idle entries, reads new ones, handles them all.
    pub async fn run_once(&self) -> Result<Round, BusError> {
        let group = self.handler.group();
        let mut deliveries = Vec::new();
        for stream in &self.streams {
            deliveries.extend(
                self.bus
                    .claim_idle(
                        stream,
                        group,
                        &self.options.consumer,
                        self.options.claim_idle,
                        self.options.batch,
                    )
                    .await?,
            );
        }
        let block = if deliveries.is_empty() {
            self.options.block
        } else {
            Duration::from_millis(1)
        };
        deliveries.extend(
            self.bus
                .read_new(
                    &self.streams,
                    group,
                    &self.options.consumer,
                    self.options.batch,
                    block,
                )
                .await?,
        );
        let mut round = Round::default();
        for delivery in deliveries {
            match self.process(&delivery).await? {
                Outcome::Handled => round.handled += 1,
                Outcome::Failed => round.failed += 1,
                Outcome::Dead => round.dead += 1,
            }
        }
        Ok(round)
    }

    async fn process(&self, delivery: &Delivery) -> Result<Outcome, BusError> {
        let group = self.handler.group();
        let event = match &delivery.event {
            Ok(event) if delivery.deliveries <= self.options.max_deliveries => event,
            Ok(_) => {
                self.dead_letter(delivery, "delivered too often").await?;
                return Ok(Outcome::Dead);
            }
            Err(e) => {
                self.dead_letter(delivery, e).await?;
                return Ok(Outcome::Dead);
            }
        };
        let mut wait = self.options.retry_base;
        for attempt in 1..=self.options.attempts.max(1) {
            match self.handler.handle(event).await {
                Ok(()) => {
                    self.bus
                        .ack(
                            &delivery.stream,
                            group,
                            std::slice::from_ref(&delivery.entry),
                        )
                        .await?;
                    return Ok(Outcome::Handled);
                }
                Err(e) => {
                    tracing::warn!(group, event = %event.id, attempt, "handler failed: {e}");
                    if e.retry_after.is_some_and(|after| after > MAX_RETRY_AFTER) {
                        break;
                    }
                    if attempt < self.options.attempts {
                        tokio::time::sleep(wait.max(e.retry_after.unwrap_or_default())).await;
                        wait *= 2;
                    }
                }
            }
        }
        // Left pending: claimed again after `claim_idle`, until `max_deliveries`.
        Ok(Outcome::Failed)
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), BusError> {
        let group = self.handler.group();
        let entry = serde_json::json!({
            "group": group,
            "stream": delivery.stream,
            "entry": delivery.entry,
            "deliveries": delivery.deliveries,
            "reason": reason,
            "event": delivery.event.as_ref().ok(),
        });
        tracing::error!(group, stream = %delivery.stream, entry = %delivery.entry, "dead-lettered: {reason}");
        self.bus
            .publish(&self.dead_letters, &[entry.to_string()])
            .await?;
        self.bus
            .ack(
                &delivery.stream,
                group,
                std::slice::from_ref(&delivery.entry),
            )
            .await
    }

    /// Works until `stop` resolves. Bus errors are logged and retried a second later.
    pub async fn run(&self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                result = self.run_once() => {
                    if let Err(e) = result {
                        tracing::warn!(group = self.handler.group(), "worker: {e}; retrying");
                        tokio::select! {
                            () = &mut stop => return,
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            }
        }
    }
}

enum Outcome {
    Handled,
    Failed,
    Dead,
}
