//! The relay: moves outbox rows to the bus and marks them sent, shard by shard, in outbox
//! order. At least once: a relay that dies between publishing and marking publishes those rows
//! again, and the handlers' processed-event check absorbs the duplicates.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::outbox::entity as outbox;
use super::{BusError, Event, EventBus, Streams};
use crate::store::{ShardedStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

impl From<sea_orm::DbErr> for RelayError {
    fn from(e: sea_orm::DbErr) -> Self {
        RelayError::Store(StoreError::Db(e))
    }
}

pub use super::outbox::ShardLag;

pub struct Relay {
    store: Arc<ShardedStore>,
    domain: &'static str,
    bus: Arc<dyn EventBus>,
    streams: Streams,
    /// Rows per shard per round.
    pub batch: u64,
}

impl Relay {
    pub fn new(
        store: Arc<ShardedStore>,
        domain: &'static str,
        bus: Arc<dyn EventBus>,
        streams: Streams,
    ) -> Self {
        Self {
            store,
            domain,
            bus,
            streams,
            batch: 500,
        }
    }

    /// One round over every shard: publishes up to `batch` unsent rows each; returns how many.
    pub async fn run_once(&self) -> Result<usize, RelayError> {
        let mut total = 0;
        for shard in 0..self.store.shard_count() {
            total += self.relay_shard(shard).await?;
        }
        Ok(total)
    }

    async fn relay_shard(&self, shard: usize) -> Result<usize, RelayError> {
        let conn = self.store.primary(shard);
        let rows = outbox::Entity::find()
            .filter(outbox::Column::SentAt.is_null())
            .order_by_asc(outbox::Column::Seq)
            .limit(self.batch)
            .all(conn)
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        // Grouped by partition, each group in outbox order (so per aggregate).
        let mut by_stream: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for row in &rows {
            let id = format!("{}:{shard}:{}", self.domain, row.seq);
            let event = Event {
                traceparent: relay_span(&id, &row.kind, row.traceparent.as_deref()),
                id,
                kind: row.kind.clone(),
                domain: self.domain.to_owned(),
                aggregate: row.aggregate.clone(),
                occurred_at: row.occurred_at,
                data: serde_json::from_str(&row.data).unwrap_or(serde_json::Value::Null),
            };
            by_stream
                .entry(self.streams.stream_for(self.domain, &row.aggregate))
                .or_default()
                .push(event.encode());
        }
        for (stream, entries) in &by_stream {
            self.bus.publish(stream, entries).await?;
        }
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        outbox::Entity::update_many()
            .col_expr(outbox::Column::SentAt, Expr::value(Utc::now()))
            .filter(outbox::Column::Seq.is_in(seqs))
            .exec(conn)
            .await?;
        crate::metrics::metrics()
            .relay_published
            .with_label_values(&[self.domain])
            .inc_by(rows.len() as u64);
        Ok(rows.len())
    }

    /// Relays until `stop` resolves: rounds back to back while there is work, a poll every
    /// `idle` otherwise; errors (a bus or shard down) are logged and retried a second later.
    pub async fn run(&self, idle: Duration, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let wait = match self.run_once().await {
                Ok(0) => idle,
                Ok(_) => Duration::ZERO,
                Err(e) => {
                    crate::metrics::metrics()
                        .relay_errors
                        .with_label_values(&[self.domain])
                        .inc();
                    tracing::warn!(domain = self.domain, "relay: {e}; retrying");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Reads this relay's outbox lag at every metrics scrape (once per subgraph).
    pub fn watch_metrics(&self) {
        let m = crate::metrics::metrics();
        m.relay_errors.with_label_values(&[self.domain]);
        m.relay_published.with_label_values(&[self.domain]);
        super::outbox::watch_lag(self.domain, &self.store);
    }

    /// The outbox lag per shard (for the metric and the runbook).
    pub async fn lag(&self) -> Result<Vec<ShardLag>, RelayError> {
        Ok(super::outbox::lag(&self.store).await?)
    }
}

/// The hop an event takes through the relay, as a span in the trace of the request that
/// recorded it (only when that request was traced); its context is what the event carries on.
fn relay_span(id: &str, kind: &str, traceparent: Option<&str>) -> Option<String> {
    traceparent?;
    let span = tracing::info_span!("outbox.relay", event.id = id, event.kind = kind);
    crate::telemetry::set_parent(
        &span,
        crate::telemetry::context_from_traceparent(traceparent),
    );
    crate::telemetry::traceparent_of(&span)
}
