//! The worker runtime: a consumer group over a domain's stream partitions. Each entry is
//! handled, retried in place with back-off when the handler fails, acknowledged once handled,
//! and dead-lettered when it cannot be read or has been delivered too often. Entries another
//! consumer left pending (it died mid-batch) are claimed once idle for `claim_idle`.

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

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
        // At zero from the start, so "the bus is failing" is a rate over a series that exists.
        let m = crate::metrics::metrics();
        m.bus_errors.with_label_values(&[handler.group()]);
        m.worker_retries.with_label_values(&[handler.group()]);
        crate::metrics::watch(
            format!("group:{}", handler.group()),
            Arc::new(GroupWatch {
                bus: bus.clone(),
                group: handler.group(),
                streams: names.clone(),
                dead_letters: streams.dead_letters(handler.group()),
            }),
        );
        Ok(Self {
            bus,
            streams: names,
            dead_letters: streams.dead_letters(handler.group()),
            handler,
            options,
        })
    }

    /// Claims idle entries, reads new ones, handles them all.
    ///
    /// An entry whose handler fails is retried in place after `retry_base`, then twice as
    /// long, up to `attempts`; while it waits, the other entries of the round are handled and
    /// new ones are read and handled. A failure does not hold up the entries behind it, and
    /// the entry it may be waiting for (a post's `PostCreated` on another stream, for a like
    /// of it) gets its turn.
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
        let mut waiting: Vec<Retry> = Vec::new();
        loop {
            for delivery in deliveries.drain(..) {
                match self.first_attempt(&delivery).await? {
                    Attempt::Done(outcome) => self.count(&mut round, outcome),
                    Attempt::Failed(e) => {
                        match self.schedule(delivery, 1, self.options.retry_base, &e) {
                            Some(retry) => waiting.push(retry),
                            None => self.count(&mut round, Outcome::Failed),
                        }
                    }
                }
            }
            let Some(due) = waiting.iter().map(|r| r.due).min() else {
                return Ok(round);
            };
            // Until the next retry is due, newer entries are handled.
            let now = tokio::time::Instant::now();
            if due > now {
                deliveries = self
                    .bus
                    .read_new(
                        &self.streams,
                        group,
                        &self.options.consumer,
                        self.options.batch,
                        due - now,
                    )
                    .await?;
                if !deliveries.is_empty() {
                    continue;
                }
                tokio::time::sleep_until(due).await;
            }
            let now = tokio::time::Instant::now();
            let (ready, later): (Vec<Retry>, Vec<Retry>) =
                waiting.drain(..).partition(|r| r.due <= now);
            waiting = later;
            for retry in ready {
                crate::metrics::metrics()
                    .worker_retries
                    .with_label_values(&[group])
                    .inc();
                match self.attempt(&retry.delivery).await? {
                    Ok(()) => self.count(&mut round, Outcome::Handled),
                    Err(e) => {
                        match self.schedule(retry.delivery, retry.attempts + 1, retry.wait * 2, &e)
                        {
                            Some(next) => waiting.push(next),
                            // Left pending: claimed again after `claim_idle`, until
                            // `max_deliveries`.
                            None => self.count(&mut round, Outcome::Failed),
                        }
                    }
                }
            }
        }
    }

    /// Dead-letters what cannot be handled, else makes the first attempt.
    async fn first_attempt(&self, delivery: &Delivery) -> Result<Attempt, BusError> {
        match &delivery.event {
            Ok(_) if delivery.deliveries <= self.options.max_deliveries => {}
            Ok(_) => {
                self.dead_letter(delivery, "delivered too often").await?;
                return Ok(Attempt::Done(Outcome::Dead));
            }
            Err(e) => {
                self.dead_letter(delivery, e).await?;
                return Ok(Attempt::Done(Outcome::Dead));
            }
        }
        Ok(match self.attempt(delivery).await? {
            Ok(()) => Attempt::Done(Outcome::Handled),
            Err(e) => Attempt::Failed(e),
        })
    }

    /// One call of the handler; acknowledged when it succeeds.
    async fn attempt(&self, delivery: &Delivery) -> Result<Result<(), HandlerError>, BusError> {
        let Ok(event) = &delivery.event else {
            return Ok(Err("unreadable".to_owned().into()));
        };
        let group = self.handler.group();
        // A child of the span that recorded the event (the request, or the relay's hop), so
        // one trace runs from the phone to the push.
        let span = tracing::info_span!(
            "event.handle",
            otel.kind = "consumer",
            group,
            event.id = event.id.as_str(),
            event.kind = event.kind.as_str(),
            deliveries = delivery.deliveries,
        );
        crate::telemetry::set_parent(
            &span,
            crate::telemetry::context_from_traceparent(event.traceparent.as_deref()),
        );
        let started = std::time::Instant::now();
        let result = self.handler.handle(event).instrument(span).await;
        crate::metrics::metrics()
            .handler_duration
            .with_label_values(&[group])
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                self.bus
                    .ack(
                        &delivery.stream,
                        group,
                        std::slice::from_ref(&delivery.entry),
                    )
                    .await?;
                Ok(Ok(()))
            }
            Err(e) => {
                tracing::warn!(group, event = %event.id, "handler failed: {e}");
                Ok(Err(e))
            }
        }
    }

    /// The next in-place attempt after `attempts` failed ones, or `None` when the entry is
    /// left for a later delivery (attempts used up, or the provider asked for a long wait).
    fn count(&self, round: &mut Round, outcome: Outcome) {
        let label = match outcome {
            Outcome::Handled => "handled",
            Outcome::Failed => "failed",
            Outcome::Dead => "dead",
        };
        crate::metrics::metrics()
            .worker_events
            .with_label_values(&[self.handler.group(), label])
            .inc();
        round.count(outcome);
    }

    fn schedule(
        &self,
        delivery: Delivery,
        attempts: u32,
        wait: Duration,
        e: &HandlerError,
    ) -> Option<Retry> {
        if attempts >= self.options.attempts.max(1)
            || e.retry_after.is_some_and(|after| after > MAX_RETRY_AFTER)
        {
            return None;
        }
        Some(Retry {
            delivery,
            attempts,
            wait,
            due: tokio::time::Instant::now() + wait.max(e.retry_after.unwrap_or_default()),
        })
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
                        crate::metrics::metrics()
                            .bus_errors
                            .with_label_values(&[self.handler.group()])
                            .inc();
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

/// Reads a consumer group's lag, pending entries and dead letters at scrape time.
struct GroupWatch {
    bus: Arc<dyn EventBus>,
    group: &'static str,
    streams: Vec<String>,
    dead_letters: String,
}

#[async_trait::async_trait]
impl crate::metrics::Watch for GroupWatch {
    async fn read(&self, m: &crate::metrics::Metrics) {
        for stream in &self.streams {
            match self.bus.backlog(stream, self.group).await {
                Ok(backlog) => {
                    let labels = [self.group, stream.as_str()];
                    if let Some(lag) = backlog.lag {
                        m.group_lag
                            .with_label_values(&labels)
                            .set(i64::try_from(lag).unwrap_or(i64::MAX));
                    }
                    m.group_pending
                        .with_label_values(&labels)
                        .set(i64::try_from(backlog.pending).unwrap_or(i64::MAX));
                }
                Err(e) => tracing::warn!(group = self.group, stream, "consumer lag: {e}"),
            }
        }
        match self.bus.len(&self.dead_letters).await {
            Ok(n) => m
                .dead_letters
                .with_label_values(&[self.group])
                .set(i64::try_from(n).unwrap_or(i64::MAX)),
            Err(e) => tracing::warn!(group = self.group, "dead letters: {e}"),
        }
    }
}

enum Outcome {
    Handled,
    Failed,
    Dead,
}

enum Attempt {
    Done(Outcome),
    Failed(HandlerError),
}

/// An entry waiting for its next in-place attempt.
struct Retry {
    delivery: Delivery,
    /// Attempts made so far.
    attempts: u32,
    /// The wait before this attempt; the next one waits twice as long.
    wait: Duration,
    due: tokio::time::Instant,
}

impl Round {
    fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Handled => self.handled += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Dead => self.dead += 1,
        }
    }
}
