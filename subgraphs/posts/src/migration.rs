//! Schema migrations, run on every shard by `switchyard migrate` and at start-up.

use sea_orm_migration::prelude::*;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreatePosts),
            Box::new(switchyard_kit::events::outbox::CreateOutbox),
            Box::new(switchyard_kit::events::outbox::AddOutboxTraceparent),
        ]
    }
}

struct CreatePosts;

impl MigrationName for CreatePosts {
    fn name(&self) -> &str {
        "m0001_create_posts"
    }
}

#[derive(DeriveIden)]
enum Posts {
    Table,
    Id,
    AuthorId,
    Body,
    MediaUrls,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreatePosts {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Posts::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Posts::Id)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Posts::AuthorId).big_integer().not_null())
                    .col(ColumnDef::new(Posts::Body).text().not_null())
                    .col(
                        ColumnDef::new(Posts::MediaUrls)
                            .text()
                            .not_null()
                            .default("[]"),
                    )
                    .col(
                        ColumnDef::new(Posts::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // A user's posts, newest first: the `User.posts` connection walks this index.
        manager
            .create_index(
                Index::create()
                    .name("posts_author_id_id")
                    .table(Posts::Table)
                    .col(Posts::AuthorId)
                    .col(Posts::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Posts::Table).to_owned())
            .await
    }
}
