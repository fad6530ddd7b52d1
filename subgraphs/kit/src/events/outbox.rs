//! The transactional outbox: a change and its domain event are written in one transaction on
//! the shard that owns the change, so an event exists exactly when its change committed.

use chrono::Utc;
use sea_orm::sea_query::{ColumnDef, Index, Table};
use sea_orm::{ActiveModelTrait, ConnectionTrait, Set};
use sea_orm_migration::{MigrationName, MigrationTrait, SchemaManager};

use crate::store::StoreError;

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
        ..Default::default()
    }
    .insert(conn)
    .await
    .map_err(StoreError::Db)?;
    Ok(())
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
