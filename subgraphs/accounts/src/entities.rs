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
