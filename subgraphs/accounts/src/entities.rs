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
        /// Password checks since the last successful sign-in (each is counted before it runs).
        pub failed_attempts: i32,
        /// When the last of them was counted; an old count is forgotten.
        pub last_failed_at: Option<DateTimeUtc>,
        /// No password is checked for this account before then (the back-off).
        pub locked_until: Option<DateTimeUtc>,
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
        /// When an identity provider vouched that the account's owner holds this address
        /// (accounts made by Sign in with Apple/Google). `None` for a typed-in address:
        /// nothing proves its owner made the account, so no provider identity links to it.
        pub verified_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Refresh tokens (hashed), on the user's shard. A family is one sign-in and every token
/// rotated from it; reusing a rotated token (after the grace window) revokes the whole family.
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
        /// When it was exchanged for a new token (a second use after the grace window is
        /// theft).
        pub used_at: Option<DateTimeUtc>,
        /// Set by revocations before families had rows of their own (migration m0005); new
        /// revocations are recorded on the family.
        pub revoked_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// One sign-in's session family, on the user's shard: revoked as a whole (sign-out, or a
/// reused refresh token), and checked by every refresh.
pub mod refresh_family {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refresh_families")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub family: String,
        pub user_id: i64,
        pub created_at: DateTimeUtc,
        pub revoked_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Which account an Apple or Google identity signs in to, on the shard `provider_subject`
/// hashes to. `user_id` 0 means the first sign-in is still creating the account.
pub mod identity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "identities")]
    pub struct Model {
        /// `apple:<sub>` or `google:<sub>`.
        #[sea_orm(primary_key, auto_increment = false)]
        pub provider_subject: String,
        pub user_id: i64,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// ID-token nonces already signed in with (hashed, with the provider), until their tokens
/// expire; on the shard the hash names.
pub mod used_nonce {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "used_nonces")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub nonce_hash: String,
        pub expires_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
