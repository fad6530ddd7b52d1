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
            Box::new(AddSignInBackoff),
            Box::new(CreateRefreshFamilies),
            Box::new(CreateIdentities),
            Box::new(switchyard_kit::events::outbox::CreateOutbox),
            Box::new(switchyard_kit::events::outbox::AddOutboxTraceparent),
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

/// The per-account failed sign-in counter behind the back-off (`attempts`).
struct AddSignInBackoff;

impl MigrationName for AddSignInBackoff {
    fn name(&self) -> &str {
        "m0004_add_sign_in_backoff"
    }
}

#[derive(DeriveIden)]
enum SignInBackoff {
    FailedAttempts,
    LastFailedAt,
    LockedUntil,
}

#[async_trait::async_trait]
impl MigrationTrait for AddSignInBackoff {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for column in [
            ColumnDef::new(SignInBackoff::FailedAttempts)
                .integer()
                .not_null()
                .default(0)
                .to_owned(),
            ColumnDef::new(SignInBackoff::LastFailedAt)
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
            ColumnDef::new(SignInBackoff::LockedUntil)
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Credentials::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

/// Session families as rows of their own: revocation is recorded once, on the family, and
/// checked by every refresh (a successor issued concurrently with the revocation is dead too).
struct CreateRefreshFamilies;

impl MigrationName for CreateRefreshFamilies {
    fn name(&self) -> &str {
        "m0005_create_refresh_families"
    }
}

#[derive(DeriveIden)]
enum RefreshFamilies {
    Table,
    Family,
    UserId,
    CreatedAt,
    RevokedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateRefreshFamilies {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RefreshFamilies::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(RefreshFamilies::Family)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(RefreshFamilies::UserId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RefreshFamilies::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RefreshFamilies::RevokedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        // Families of tokens issued before this migration; a family any of whose tokens was
        // revoked was revoked as a whole.
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO refresh_families (family, user_id, created_at, revoked_at) \
                 SELECT family, MIN(user_id), MIN(created_at), MAX(revoked_at) \
                 FROM refresh_tokens GROUP BY family",
            )
            .await?;
        Ok(())
    }
}

/// Apple and Google identities linked to accounts, the ID-token nonces already used, and
/// whether an identity provider verified an account's email.
struct CreateIdentities;

impl MigrationName for CreateIdentities {
    fn name(&self) -> &str {
        "m0006_create_identities"
    }
}

#[derive(DeriveIden)]
enum Identities {
    Table,
    ProviderSubject,
    UserId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum UsedNonces {
    Table,
    NonceHash,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum EmailVerifiedAt {
    VerifiedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreateIdentities {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Emails::Table)
                    .add_column(
                        ColumnDef::new(EmailVerifiedAt::VerifiedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Identities::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(Identities::ProviderSubject)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Identities::UserId).big_integer().not_null())
                    .col(
                        ColumnDef::new(Identities::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UsedNonces::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(UsedNonces::NonceHash)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(UsedNonces::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("used_nonces_expires_at")
                    .table(UsedNonces::Table)
                    .col(UsedNonces::ExpiresAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}
