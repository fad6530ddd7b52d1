//! Idempotent handlers: a handler records `(consumer, event id)` in the same transaction as
//! its effect, on the shard it changes. A duplicate delivery (the relay published twice, a
//! worker died before acknowledging) finds the row and changes nothing.

use chrono::Utc;
use sea_orm::sea_query::{ColumnDef, Table};
use sea_orm::{ConnectionTrait, EntityTrait, Set};
use sea_orm_migration::{MigrationName, MigrationTrait, SchemaManager};

use crate::store::{StoreError, is_unique_violation};

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "processed_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub consumer: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub processed_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Records that `consumer` handled `event_id`: true the first time, false for a duplicate.
/// Call inside the transaction that applies the effect.
pub async fn first_time(
    conn: &impl ConnectionTrait,
    consumer: &str,
    event_id: &str,
) -> Result<bool, StoreError> {
    let row = entity::ActiveModel {
        consumer: Set(consumer.to_owned()),
        event_id: Set(event_id.to_owned()),
        processed_at: Set(Utc::now()),
    };
    match entity::Entity::insert(row)
        .exec_without_returning(conn)
        .await
    {
        Ok(_) => Ok(true),
        Err(err) if is_unique_violation(&err) => Ok(false),
        Err(err) => Err(StoreError::Db(err)),
    }
}

/// Whether `consumer` recorded `event_id` (a tombstone check, without recording).
pub async fn seen(
    conn: &impl ConnectionTrait,
    consumer: &str,
    event_id: &str,
) -> Result<bool, StoreError> {
    Ok(
        entity::Entity::find_by_id((consumer.to_owned(), event_id.to_owned()))
            .one(conn)
            .await
            .map_err(StoreError::Db)?
            .is_some(),
    )
}

/// The processed-events table, for a subgraph's migrator.
pub struct CreateProcessedEvents;

impl MigrationName for CreateProcessedEvents {
    fn name(&self) -> &str {
        "kit_0002_create_processed_events"
    }
}

#[derive(sea_orm::DeriveIden)]
enum ProcessedEvents {
    Table,
    Consumer,
    EventId,
    ProcessedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateProcessedEvents {
    async fn up(&self, manager: &SchemaManager) -> Result<(), sea_orm::DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ProcessedEvents::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(ProcessedEvents::Consumer)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ProcessedEvents::EventId).string().not_null())
                    .col(
                        ColumnDef::new(ProcessedEvents::ProcessedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        sea_orm::sea_query::Index::create()
                            .col(ProcessedEvents::Consumer)
                            .col(ProcessedEvents::EventId),
                    )
                    .to_owned(),
            )
            .await
    }
}
