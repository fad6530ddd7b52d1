//! Schema migrations, run on every shard by `switchyard migrate` and at start-up.

use sea_orm_migration::prelude::*;
use switchyard_kit::events::outbox::{AddOutboxTraceparent, CreateOutbox};
use switchyard_kit::events::processed::CreateProcessedEvents;
use switchyard_kit::migration::{at, count, create_all, id, text};

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateOutbox),
            Box::new(CreateProcessedEvents),
            Box::new(CreateNotificationTables),
            Box::new(AddOutboxTraceparent),
        ]
    }
}

struct CreateNotificationTables;

impl MigrationName for CreateNotificationTables {
    fn name(&self) -> &str {
        "m0001_create_notification_tables"
    }
}

#[derive(DeriveIden)]
enum Notifications {
    Table,
    Id,
    RecipientId,
    Kind,
    GroupKey,
    ActorId,
    ActorCount,
    SubjectId,
    Source,
    CreatedAt,
    UpdatedAt,
    PushedAt,
    ReadAt,
}

#[derive(DeriveIden)]
enum InboxState {
    Table,
    UserId,
    Unread,
}

#[derive(DeriveIden)]
enum Devices {
    Table,
    Id,
    UserId,
    Platform,
    Token,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Preferences {
    Table,
    UserId,
    Kind,
    Push,
}

#[derive(DeriveIden)]
enum PostAuthors {
    Table,
    PostId,
    AuthorId,
}

#[derive(DeriveIden)]
enum Audience {
    Table,
    FollowId,
    FolloweeId,
    FollowerId,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateNotificationTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let tables = [
            Table::create()
                .table(Notifications::Table)
                .if_not_exists()
                .col(id(Notifications::Id).primary_key())
                .col(id(Notifications::RecipientId))
                .col(text(Notifications::Kind))
                .col(text(Notifications::GroupKey))
                .col(id(Notifications::ActorId))
                .col(id(Notifications::ActorCount))
                .col(
                    ColumnDef::new(Notifications::SubjectId)
                        .big_integer()
                        .null(),
                )
                .col(text(Notifications::Source))
                .col(at(Notifications::CreatedAt))
                .col(at(Notifications::UpdatedAt))
                .col(at(Notifications::PushedAt))
                .col(
                    ColumnDef::new(Notifications::ReadAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .to_owned(),
            Table::create()
                .table(InboxState::Table)
                .if_not_exists()
                .col(id(InboxState::UserId).primary_key())
                .col(count(InboxState::Unread))
                .to_owned(),
            Table::create()
                .table(Devices::Table)
                .if_not_exists()
                .col(id(Devices::Id).primary_key())
                .col(id(Devices::UserId))
                .col(text(Devices::Platform))
                .col(text(Devices::Token))
                .col(at(Devices::CreatedAt))
                .col(at(Devices::UpdatedAt))
                .to_owned(),
            Table::create()
                .table(Preferences::Table)
                .if_not_exists()
                .col(id(Preferences::UserId))
                .col(text(Preferences::Kind))
                .col(ColumnDef::new(Preferences::Push).boolean().not_null())
                .primary_key(
                    Index::create()
                        .col(Preferences::UserId)
                        .col(Preferences::Kind),
                )
                .to_owned(),
            Table::create()
                .table(PostAuthors::Table)
                .if_not_exists()
                .col(id(PostAuthors::PostId).primary_key())
                .col(id(PostAuthors::AuthorId))
                .to_owned(),
            Table::create()
                .table(Audience::Table)
                .if_not_exists()
                .col(id(Audience::FollowId).primary_key())
                .col(id(Audience::FolloweeId))
                .col(id(Audience::FollowerId))
                .to_owned(),
        ];
        let indexes = [
            // The inbox, newest first.
            Index::create()
                .name("notifications_recipient")
                .table(Notifications::Table)
                .col(Notifications::RecipientId)
                .col(Notifications::Id)
                .to_owned(),
            // The unread row a new like of the same post collapses into.
            Index::create()
                .name("notifications_group")
                .table(Notifications::Table)
                .col(Notifications::RecipientId)
                .col(Notifications::GroupKey)
                .col(Notifications::ReadAt)
                .to_owned(),
            // One row per recipient per source event: a fan-out batch that runs twice inserts
            // nothing the second time.
            Index::create()
                .name("notifications_source")
                .table(Notifications::Table)
                .col(Notifications::RecipientId)
                .col(Notifications::Source)
                .unique()
                .to_owned(),
            // A device token belongs to one user: registering it again moves it.
            Index::create()
                .name("devices_token")
                .table(Devices::Table)
                .col(Devices::Token)
                .unique()
                .to_owned(),
            Index::create()
                .name("devices_user")
                .table(Devices::Table)
                .col(Devices::UserId)
                .to_owned(),
            // A post's audience, paged by follow id for the fan-out.
            Index::create()
                .name("audience_followee")
                .table(Audience::Table)
                .col(Audience::FolloweeId)
                .col(Audience::FollowId)
                .to_owned(),
        ];
        create_all(manager, tables, indexes).await
    }
}
