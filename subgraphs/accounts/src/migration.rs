//! Schema migrations, run on every shard by `switchyard migrate` and at start-up.

use sea_orm_migration::prelude::*;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateUsersAndHandles),
            Box::new(CreateAuthTables),
            Box::new(AddTotpLastStep),
        ]
    }
}

/// Migration names are explicit: `DeriveMigrationName` names a migration after its module,
/// which would give every migration in this file the same name.
struct CreateUsersAndHandles;

impl MigrationName for CreateUsersAndHandles {
    fn name(&self) -> &str {
        "m0001_create_users_and_handles"
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Handle,
    DisplayName,
    Bio,
    AvatarUrl,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Handles {
    Table,
    Handle,
    UserId,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateUsersAndHandles {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Users::Id)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Users::Handle).string().not_null())
                    .col(ColumnDef::new(Users::DisplayName).string().not_null())
                    .col(ColumnDef::new(Users::Bio).text().not_null().default(""))
                    .col(ColumnDef::new(Users::AvatarUrl).text().null())
                    .col(
                        ColumnDef::new(Users::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Users::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Handles::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Handles::Handle)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Handles::UserId).big_integer().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Handles::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Users::Table).to_owned())
            .await
    }
}

struct CreateAuthTables;

impl MigrationName for CreateAuthTables {
    fn name(&self) -> &str {
        "m0002_create_auth_tables"
    }
}

#[derive(DeriveIden)]
enum Credentials {
    Table,
    UserId,
    Email,
    PasswordHash,
    TotpSecret,
    TotpEnabled,
    RecoveryCodes,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Emails {
    Table,
    Email,
    UserId,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    TokenHash,
    UserId,
    Family,
    ExpiresAt,
    UsedAt,
    RevokedAt,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateAuthTables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Credentials::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Credentials::UserId)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Credentials::Email).string().not_null())
                    .col(
                        ColumnDef::new(Credentials::PasswordHash)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Credentials::TotpSecret).string().null())
                    .col(
                        ColumnDef::new(Credentials::TotpEnabled)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(
                        ColumnDef::new(Credentials::RecoveryCodes)
                            .text()
                            .not_null()
                            .default("[]"),
                    )
                    .col(
                        ColumnDef::new(Credentials::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Emails::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Emails::Email)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Emails::UserId).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RefreshTokens::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(RefreshTokens::TokenHash)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(RefreshTokens::UserId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(RefreshTokens::Family).string().not_null())
                    .col(
                        ColumnDef::new(RefreshTokens::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RefreshTokens::UsedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(RefreshTokens::RevokedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(RefreshTokens::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("refresh_tokens_family")
                    .table(RefreshTokens::Table)
                    .col(RefreshTokens::Family)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(RefreshTokens::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Emails::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Credentials::Table).to_owned())
            .await
    }
}

/// Keeps the last accepted TOTP step, so a code cannot be replayed within its window.
struct AddTotpLastStep;

impl MigrationName for AddTotpLastStep {
    fn name(&self) -> &str {
        "m0003_add_totp_last_step"
    }
}

#[derive(DeriveIden)]
enum TotpLastStep {
    TotpLastStep,
}

#[async_trait::async_trait]
impl MigrationTrait for AddTotpLastStep {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Credentials::Table)
                    .add_column(
                        ColumnDef::new(TotpLastStep::TotpLastStep)
                            .big_integer()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }
}
