//! Tables of the posts subgraph.

/// A post. Lives on its author's shard, so a user's posts are one shard's index range.
pub mod post {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "posts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i64,
        pub author_id: i64,
        pub body: String,
        /// JSON array of URLs: portable across SQLite and PostgreSQL, and always read whole.
        pub media_urls: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl Model {
        pub fn media(&self) -> Vec<String> {
            serde_json::from_str(&self.media_urls).unwrap_or_default()
        }
    }
}
