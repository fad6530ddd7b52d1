//! The transactional outbox: a change and its domain event are written in one transaction on
//! the shard that owns the change, so an event exists exactly when its change committed.

use std::sync::{Arc, Weak};

use chrono::Utc;
use sea_orm::sea_query::{ColumnDef, Index, Table};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, Set,
};
use sea_orm_migration::{MigrationName, MigrationTrait, SchemaManager};

use crate::store::{ShardedStore, StoreError};

/// Outbox rows, on every shard of a subgraph that emits events.
pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        /// Per-shard sequence: the relay publishes in this order.
        #[sea_orm(primary_key)]
        pub seq: i64,
        pub kind: String,
        pub aggregate: String,
        /// The event's `data`, as JSON text.
        pub data: String,
        pub occurred_at: DateTimeUtc,
        /// Set once the relay published it.
        pub sent_at: Option<DateTimeUtc>,
        /// W3C `traceparent` of the request that recorded it, when that request was traced.
        pub traceparent: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// An event to record.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: &'static str,
    /// `Type:id`.
    pub aggregate: String,
    pub data: serde_json::Value,
}

impl NewEvent {
    pub fn new(kind: &'static str, aggregate: String, data: serde_json::Value) -> Self {
        Self {
            kind,
            aggregate,
            data,
        }
    }
}

/// Records `event` on `conn`, which must be the transaction that makes the change.
pub async fn record(conn: &impl ConnectionTrait, event: NewEvent) -> Result<(), StoreError> {
    entity::ActiveModel {
        kind: Set(event.kind.to_owned()),
        aggregate: Set(event.aggregate),
        data: Set(event.data.to_string()),
        occurred_at: Set(Utc::now()),
        sent_at: Set(None),
        traceparent: Set(crate::telemetry::current_traceparent()),
        ..Default::default()
    }
    .insert(conn)
    .await
    .map_err(StoreError::Db)?;
    Ok(())
}

/// Rows not yet published on one shard, and how old the oldest is.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardLag {
    pub shard: usize,
    pub unsent: u64,
    pub oldest_secs: f64,
}

/// The outbox lag per shard: two indexed reads per shard (for the metric and the runbook).
pub async fn lag(store: &ShardedStore) -> Result<Vec<ShardLag>, StoreError> {
    let mut out = Vec::new();
    for shard in 0..store.shard_count() {
        let conn = store.primary(shard);
        let fail = |source| StoreError::Query { shard, source };
        let unsent = entity::Entity::find()
            .filter(entity::Column::SentAt.is_null())
            .count(conn)
            .await
            .map_err(fail)?;
        let oldest = entity::Entity::find()
            .filter(entity::Column::SentAt.is_null())
            .order_by_asc(entity::Column::Seq)
            .one(conn)
            .await
            .map_err(fail)?;
        out.push(ShardLag {
            shard,
            unsent,
            oldest_secs: oldest.map_or(0.0, |row| {
                (Utc::now() - row.occurred_at).num_milliseconds().max(0) as f64 / 1000.0
            }),
        });
    }
    Ok(out)
}

/// Reads `subgraph`'s outbox lag at every metrics scrape from now on (once per subgraph: a
/// subgraph and the relay of its outbox may share a process).
pub fn watch_lag(subgraph: &'static str, store: &Arc<ShardedStore>) {
    crate::metrics::watch(
        format!("outbox:{subgraph}"),
        Arc::new(LagWatch {
            subgraph,
            store: Arc::downgrade(store),
        }),
    );
}

struct LagWatch {
    subgraph: &'static str,
    store: Weak<ShardedStore>,
}

#[async_trait::async_trait]
impl crate::metrics::Watch for LagWatch {
    async fn read(&self, m: &crate::metrics::Metrics) {
        let Some(store) = self.store.upgrade() else {
            return;
        };
        let subgraph = self.subgraph;
        match lag(&store).await {
            Ok(lag) => {
                for shard in lag {
                    let labels = [subgraph, &shard.shard.to_string()];
                    m.outbox_unsent
                        .with_label_values(&labels)
                        .set(i64::try_from(shard.unsent).unwrap_or(i64::MAX));
                    m.outbox_oldest_age
                        .with_label_values(&labels)
                        .set(shard.oldest_secs);
                }
                m.outbox_lag_up.with_label_values(&[subgraph]).set(1);
            }
            Err(e) => {
                tracing::warn!(subgraph, "outbox lag: {e}");
                m.outbox_lag_up.with_label_values(&[subgraph]).set(0);
            }
        }
    }
}

/// The outbox table, for a subgraph's migrator.
pub struct CreateOutbox;

impl MigrationName for CreateOutbox {
    fn name(&self) -> &str {
        "kit_0001_create_outbox"
    }
}

#[derive(sea_orm::DeriveIden)]
enum Outbox {
    Table,
    Seq,
    Kind,
    Aggregate,
    Data,
    OccurredAt,
    SentAt,
    Traceparent,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateOutbox {
    async fn up(&self, manager: &SchemaManager) -> Result<(), sea_orm::DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Outbox::Seq)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Outbox::Kind).string().not_null())
                    .col(ColumnDef::new(Outbox::Aggregate).string().not_null())
                    .col(ColumnDef::new(Outbox::Data).text().not_null())
                    .col(
                        ColumnDef::new(Outbox::OccurredAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Outbox::SentAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("outbox_unsent")
                    .table(Outbox::Table)
                    .col(Outbox::SentAt)
                    .col(Outbox::Seq)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}

/// The outbox's `traceparent` column (events carry their request's trace to the workers).
pub struct AddOutboxTraceparent;

impl MigrationName for AddOutboxTraceparent {
    fn name(&self) -> &str {
        "kit_0002_outbox_traceparent"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddOutboxTraceparent {
    async fn up(&self, manager: &SchemaManager) -> Result<(), sea_orm::DbErr> {
        if manager.has_column("outbox", "traceparent").await? {
            return Ok(());
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Outbox::Table)
                    .add_column(ColumnDef::new(Outbox::Traceparent).string().null())
                    .to_owned(),
            )
            .await
    }
}
