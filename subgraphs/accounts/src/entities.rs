//! Tables of the accounts subgraph. Both live on every shard.

/// A user's profile. Lives on the shard its id names (chosen at sign-up by its handle's hash).
pub mod user {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i64,
        /// Canonical (lower-case) handle; the handle directory holds the unique claim.
        pub handle: String,
        pub display_name: String,
        pub bio: String,
        pub avatar_url: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The handle directory: one row per taken handle, on the shard the handle hashes to. Its
/// primary key is what makes handles unique across shards.
pub mod handle {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "handles")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub handle: String,
        pub user_id: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Sign-in credentials, on the user's shard.
pub mod credential {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "credentials")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i64,
        /// Canonical (lower-case) email.
        pub email: String,
        /// argon2id PHC string.
        pub password_hash: String,
        /// Base32 TOTP secret, set at enrolment.
        pub totp_secret: Option<String>,
        /// True once the user confirmed a code from their app.
        pub totp_enabled: bool,
        /// The last TOTP time step a code was accepted for: codes of that step or earlier
        /// are refused (no replay inside the window).
        pub totp_last_step: Option<i64>,
        /// JSON array of sha256 hashes of unused recovery codes.
        pub recovery_codes: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The email directory: like handles, sharded by the email's hash; makes emails unique.
pub mod email {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "emails")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub email: String,
        pub user_id: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Refresh tokens (hashed), on the user's shard. A family is one sign-in and every token
/// rotated from it; reusing a rotated token revokes the whole family.
pub mod refresh_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refresh_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_hash: String,
        pub user_id: i64,
        pub family: String,
        pub expires_at: DateTimeUtc,
        /// When it was exchanged for a new token (a second use is theft).
        pub used_at: Option<DateTimeUtc>,
        pub revoked_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
