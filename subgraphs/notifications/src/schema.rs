//! The notifications GraphQL schema: the signed-in user's inbox, devices and push
//! preferences. Nothing here may be cached: the read fields say `no-cache` (not merely no
//! hint, which an operator's `default_max_age` could fill in), so the router never stores a
//! response that holds an inbox, whatever else it holds.

use std::sync::Arc;

use async_graphql::connection::{Connection, Edge};
use async_graphql::{
    Context, EmptySubscription, ID, Object, Request, Schema, SchemaBuilder, SimpleObject,
};
use chrono::{DateTime, Utc};
use switchyard_kit::cache::{CacheControlScope::Private, cacheControl};
use switchyard_kit::id::{parse_id, shard_of};
use switchyard_kit::page::{PageRequest, encode_cursor};
use switchyard_kit::{ApiError, ApiResult, ErrorCodes, Session, gql_id};

use crate::entities::{device, notification};
use crate::kind::{Kind, Platform};
use crate::repo;

pub type NotificationsSchema = Schema<Query, Mutation, EmptySubscription>;

pub fn schema() -> NotificationsSchema {
    schema_builder().finish()
}

/// The schema before `finish()`, for tests that add an extension.
pub fn schema_builder() -> SchemaBuilder<Query, Mutation, EmptySubscription> {
    Schema::build(Query, Mutation, EmptySubscription)
        .enable_federation()
        .extension(ErrorCodes)
}

/// Adds this request's session. No loaders: every field reads the viewer's own rows, one
/// statement each, whatever the page size.
pub fn prepare(request: Request, session: Arc<Session>) -> Request {
    request.data(session)
}

fn session<'a>(ctx: &'a Context<'_>) -> &'a Session {
    ctx.data_unchecked::<Arc<Session>>()
}

fn signed_in(ctx: &Context<'_>) -> ApiResult<i64> {
    switchyard_kit::viewer(ctx).require_user()
}

/// A user, resolved by accounts.
#[derive(SimpleObject)]
#[graphql(unresolvable = "id")]
pub struct User {
    pub id: ID,
}

/// A post, resolved by posts.
#[derive(SimpleObject)]
#[graphql(unresolvable = "id")]
pub struct Post {
    pub id: ID,
}

/// One inbox entry. Likes of one post (comments on one post, new followers) collapse into
/// one unread entry: `actor` is the latest of `actorCount` people.
pub struct Notification(notification::Model);

#[Object]
impl Notification {
    async fn id(&self) -> ID {
        gql_id(self.0.id)
    }
    async fn kind(&self) -> ApiResult<Kind> {
        Kind::parse(&self.0.kind)
            .ok_or_else(|| ApiError::bad_input(format!("unknown kind {}", self.0.kind)))
    }
    /// The latest person to act.
    async fn actor(&self) -> User {
        User {
            id: gql_id(self.0.actor_id),
        }
    }
    /// How many acted (`alice and 9 others liked your post` is 10).
    async fn actor_count(&self) -> i64 {
        self.0.actor_count
    }
    /// The post it is about (none for a follow).
    async fn post(&self) -> Option<Post> {
        self.0.subject_id.map(|id| Post { id: gql_id(id) })
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When the latest actor acted.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    async fn read(&self) -> bool {
        self.0.read_at.is_some()
    }
}

/// The inbox's own fields, beside its page.
#[derive(SimpleObject)]
pub struct Inbox {
    /// Unread entries in the whole inbox (not only this page).
    pub unread_count: i64,
}

/// A device registered for push.
pub struct Device(device::Model);

#[Object]
impl Device {
    async fn id(&self) -> ID {
        gql_id(self.0.id)
    }
    async fn platform(&self) -> Option<Platform> {
        Platform::parse(&self.0.platform)
    }
    async fn registered_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// Whether a kind of notification is pushed to the user's devices (the inbox always has it).
#[derive(SimpleObject)]
pub struct NotificationPreference {
    pub kind: Kind,
    pub push: bool,
}

pub struct Query;

#[Object]
impl Query {
    /// The signed-in user's notifications, newest first.
    #[graphql(
        cache_control(no_cache, private),
        directive = cacheControl::apply(0, Private)
    )]
    async fn notifications(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "An `endCursor` from the previous page.")] after: Option<String>,
    ) -> ApiResult<Connection<String, Notification, Inbox>> {
        let user = signed_in(ctx)?;
        let page = PageRequest::parse(first, after.as_deref())?;
        let session = session(ctx);
        let (found, unread) = futures::future::try_join(repo::inbox(session, user, page), async {
            session
                .read(shard_of(user), |conn| async move {
                    repo::unread_count(&conn, user).await
                })
                .await
                .map_err(ApiError::from)
        })
        .await?;
        let mut conn = Connection::with_additional_fields(
            page.before_id.is_some(),
            found.has_next_page,
            Inbox {
                unread_count: unread,
            },
        );
        conn.edges.extend(
            found
                .rows
                .into_iter()
                .map(|row| Edge::new(encode_cursor(row.id), Notification(row))),
        );
        Ok(conn)
    }

    /// Which kinds push, for the signed-in user.
    #[graphql(
        cache_control(no_cache, private),
        directive = cacheControl::apply(0, Private)
    )]
    async fn notification_preferences(
        &self,
        ctx: &Context<'_>,
    ) -> ApiResult<Vec<NotificationPreference>> {
        let user = signed_in(ctx)?;
        let rows = session(ctx)
            .read(shard_of(user), |conn| async move {
                repo::preferences(&conn, user).await
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|(kind, push)| NotificationPreference { kind, push })
            .collect())
    }
}

pub struct Mutation;

#[Object]
impl Mutation {
    /// Registers this app install for push (again: refreshes it; as another user: moves it).
    async fn register_device(
        &self,
        ctx: &Context<'_>,
        platform: Platform,
        #[graphql(desc = "The APNs device token (hex) or FCM registration token.")] token: String,
    ) -> ApiResult<Device> {
        let user = signed_in(ctx)?;
        Ok(Device(
            repo::register_device(session(ctx), user, platform, &token).await?,
        ))
    }

    /// Stops pushes to this install (on sign-out); false when it was not registered.
    async fn unregister_device(&self, ctx: &Context<'_>, token: String) -> ApiResult<bool> {
        let user = signed_in(ctx)?;
        repo::unregister_device(session(ctx), user, &token).await
    }

    /// Marks some of the signed-in user's notifications read; answers the unread count.
    async fn mark_read(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "At most 100 notification ids.")] ids: Vec<ID>,
    ) -> ApiResult<i64> {
        let user = signed_in(ctx)?;
        repo::check_mark_read(ids.len())?;
        let shards = session(ctx).store().shard_count();
        let ids = ids
            .iter()
            .map(|id| parse_id(id, shards))
            .collect::<ApiResult<Vec<i64>>>()?;
        repo::mark_read(session(ctx), user, &ids).await
    }

    /// Marks the whole inbox read; answers the unread count (0).
    async fn mark_all_read(&self, ctx: &Context<'_>) -> ApiResult<i64> {
        let user = signed_in(ctx)?;
        repo::mark_all_read(session(ctx), user).await
    }

    /// Whether notifications of `kind` are pushed to the signed-in user's devices.
    async fn set_notification_preference(
        &self,
        ctx: &Context<'_>,
        kind: Kind,
        push: bool,
    ) -> ApiResult<NotificationPreference> {
        let user = signed_in(ctx)?;
        repo::set_preference(session(ctx), user, kind, push).await?;
        Ok(NotificationPreference { kind, push })
    }
}
