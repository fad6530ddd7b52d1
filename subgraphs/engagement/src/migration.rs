//! Schema migrations, run on every shard by `switchyard migrate` and at start-up.

use sea_orm_migration::prelude::*;
use switchyard_kit::events::{outbox::CreateOutbox, processed::CreateProcessedEvents};

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateOutbox),
            Box::new(CreateProcessedEvents),
            Box::new(CreateEngagementTables),
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

fn id(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).big_integer().not_null().to_owned()
}

fn at(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn count(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .big_integer()
        .not_null()
        .default(0)
        .to_owned()
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
        for table in tables {
            manager.create_table(table).await?;
        }
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
        for mut index in indexes {
            manager
                .create_index(index.if_not_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
