//! Tables of the notifications subgraph, on every shard.
//!
//! A user's inbox, inbox state, devices and preferences live on the **user's** shard, so the
//! inbox, its unread count and a push's device lookup each read one shard. Two projections
//! let the fan-out worker answer its questions without reading another subgraph's database:
//! who wrote a post (`post_authors`, on the post's shard, from posts' events) and who follows
//! whom (`audience`, on the followee's shard, from engagement's events).

macro_rules! table {
    ($(#[$doc:meta])* $module:ident, $table:literal, { $($body:tt)* }) => {
        $(#[$doc])*
        pub mod $module {
            use sea_orm::entity::prelude::*;

            #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
            #[sea_orm(table_name = $table)]
            pub struct Model {
                $($body)*
            }

            #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
            pub enum Relation {}

            impl ActiveModelBehavior for ActiveModel {}
        }
    };
}

table!(
    /// One inbox entry. Likes (and comments, and follows) of the same thing that arrive while
    /// the entry is unread collapse into it: `actor_count` grows, `actor_id` is the latest.
    notification, "notifications", {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i64,
        pub recipient_id: i64,
        /// A [`crate::kind::Kind`] name (`LIKE`, `COMMENT`, `FOLLOW`, `POST`).
        pub kind: String,
        /// What entries collapse on (`LIKE:<post>`, `FOLLOW`, `POST:<post>`).
        pub group_key: String,
        pub actor_id: i64,
        pub actor_count: i64,
        /// The post it is about (none for a follow).
        pub subject_id: Option<i64>,
        /// The event that created the entry (unique per recipient).
        pub source: String,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        /// When a push for it was last requested: a burst within the collapse window is one.
        pub pushed_at: DateTimeUtc,
        pub read_at: Option<DateTimeUtc>,
    }
);

table!(
    /// The unread count of an inbox, kept with every change so reading it never counts rows.
    inbox_state, "inbox_state", {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i64,
        pub unread: i64,
    }
);

table!(
    /// A device registered for push.
    device, "devices", {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i64,
        pub user_id: i64,
        /// A [`crate::kind::Platform`] name (`IOS`, `ANDROID`).
        pub platform: String,
        pub token: String,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }
);

table!(
    /// Whether a kind of notification pushes (absent: it does).
    preference, "preferences", {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub kind: String,
        pub push: bool,
    }
);

table!(
    /// Who wrote a post (projection of posts' `PostCreated`/`PostDeleted`).
    post_author, "post_authors", {
        #[sea_orm(primary_key, auto_increment = false)]
        pub post_id: i64,
        pub author_id: i64,
    }
);

table!(
    /// Who follows whom (projection of engagement's follows), for a new post's fan-out.
    audience, "audience", {
        #[sea_orm(primary_key, auto_increment = false)]
        pub follow_id: i64,
        pub followee_id: i64,
        pub follower_id: i64,
    }
);
