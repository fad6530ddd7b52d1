//! Schema migrations, run on every shard by `switchyard migrate` and at start-up.

use sea_orm_migration::prelude::*;
use switchyard_kit::events::outbox::{AddOutboxTraceparent, CreateOutbox};
use switchyard_kit::events::processed::CreateProcessedEvents;
use switchyard_kit::migration::{at, count, create_all, id};

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateOutbox),
            Box::new(CreateProcessedEvents),
            Box::new(CreateEngagementTables),
            Box::new(AddOutboxTraceparent),
        ]
    }
}

struct CreateEngagementTables;

impl MigrationName for CreateEngagementTables {
    fn name(&self) -> &str {
        "m0001_create_engagement_tables"
    }
}

#[derive(DeriveIden)]
enum Likes {
    Table,
    PostId,
    UserId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Comments {
    Table,
    Id,
    PostId,
    AuthorId,
    Body,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Follows {
    Table,
    Id,
    FollowerId,
    FolloweeId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Followers {
    Table,
    Id,
    FolloweeId,
    FollowerId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum PostCounters {
    Table,
    PostId,
    Likes,
    Comments,
}

#[derive(DeriveIden)]
enum UserCounters {
    Table,
    UserId,
    Followers,
    Following,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateEngagementTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let tables = [
            Table::create()
                .table(Likes::Table)
                .if_not_exists()
                .col(id(Likes::PostId))
                .col(id(Likes::UserId))
                .col(at(Likes::CreatedAt))
                .primary_key(Index::create().col(Likes::PostId).col(Likes::UserId))
                .to_owned(),
            Table::create()
                .table(Comments::Table)
                .if_not_exists()
                .col(id(Comments::Id).primary_key())
                .col(id(Comments::PostId))
                .col(id(Comments::AuthorId))
                .col(ColumnDef::new(Comments::Body).text().not_null())
                .col(at(Comments::CreatedAt))
                .to_owned(),
            Table::create()
                .table(Follows::Table)
                .if_not_exists()
                .col(id(Follows::Id).primary_key())
                .col(id(Follows::FollowerId))
                .col(id(Follows::FolloweeId))
                .col(at(Follows::CreatedAt))
                .to_owned(),
            Table::create()
                .table(Followers::Table)
                .if_not_exists()
                .col(id(Followers::Id).primary_key())
                .col(id(Followers::FolloweeId))
                .col(id(Followers::FollowerId))
                .col(at(Followers::CreatedAt))
                .to_owned(),
            Table::create()
                .table(PostCounters::Table)
                .if_not_exists()
                .col(id(PostCounters::PostId).primary_key())
                .col(count(PostCounters::Likes))
                .col(count(PostCounters::Comments))
                .to_owned(),
            Table::create()
                .table(UserCounters::Table)
                .if_not_exists()
                .col(id(UserCounters::UserId).primary_key())
                .col(count(UserCounters::Followers))
                .col(count(UserCounters::Following))
                .to_owned(),
        ];
        let indexes = [
            // A user's likes of a page of posts (viewerHasLiked).
            Index::create()
                .name("likes_user")
                .table(Likes::Table)
                .col(Likes::UserId)
                .col(Likes::PostId)
                .to_owned(),
            Index::create()
                .name("comments_post")
                .table(Comments::Table)
                .col(Comments::PostId)
                .col(Comments::Id)
                .to_owned(),
            // One follow per pair.
            Index::create()
                .name("follows_pair")
                .table(Follows::Table)
                .col(Follows::FollowerId)
                .col(Follows::FolloweeId)
                .unique()
                .to_owned(),
            Index::create()
                .name("followers_followee")
                .table(Followers::Table)
                .col(Followers::FolloweeId)
                .col(Followers::Id)
                .to_owned(),
        ];
        create_all(manager, tables, indexes).await
    }
}
