//! The engagement GraphQL schema: counts, likes, comments and follows on `Post` and `User`.

use std::sync::Arc;

use async_graphql::connection::{Connection, Edge};
use async_graphql::{
    ComplexObject, Context, EmptySubscription, ID, Object, Request, Schema, SchemaBuilder,
    SimpleObject,
};
use chrono::{DateTime, Utc};
use switchyard_kit::cache::{
    self,
    CacheControlScope::{Private, Public},
    cacheControl,
};
use switchyard_kit::id::parse_id;
use switchyard_kit::loader::{RequestLoader, request_loader};
use switchyard_kit::page::{Page, PageRequest, encode_cursor};
use switchyard_kit::{ApiError, ApiResult, ErrorCodes, Session, gql_id};

use crate::entities::comment;
use crate::loaders::{
    CommentsLoader, FollowersLoader, FollowingLoader, PostCountsLoader, UserCountsLoader,
    ViewerFollowsLoader, ViewerLikesLoader,
};
use crate::repo::{self, OwnerPage};

pub type EngagementSchema = Schema<Query, Mutation, EmptySubscription>;

pub fn schema() -> EngagementSchema {
    schema_builder().finish()
}

/// The schema before `finish()`, for tests that add an extension.
pub fn schema_builder() -> SchemaBuilder<Query, Mutation, EmptySubscription> {
    Schema::build(Query, Mutation, EmptySubscription)
        .enable_federation()
        .extension(ErrorCodes)
}

/// Adds this request's session and loaders.
pub fn prepare(request: Request, session: Arc<Session>) -> Request {
    request
        .data(request_loader(PostCountsLoader(session.clone())))
        .data(request_loader(UserCountsLoader(session.clone())))
        .data(request_loader(ViewerLikesLoader(session.clone())))
        .data(request_loader(ViewerFollowsLoader(session.clone())))
        .data(request_loader(CommentsLoader(session.clone())))
        .data(request_loader(FollowingLoader(session.clone())))
        .data(request_loader(FollowersLoader(session.clone())))
        .data(session)
}

fn session<'a>(ctx: &'a Context<'_>) -> &'a Session {
    ctx.data_unchecked::<Arc<Session>>()
}

fn id_of(ctx: &Context<'_>, id: &ID) -> ApiResult<i64> {
    parse_id(id, session(ctx).store().shard_count())
}

fn viewer_id(ctx: &Context<'_>) -> Option<i64> {
    switchyard_kit::viewer(ctx).user_id
}

/// The cache tag of a post's counts and comments (`PostEngagement:<id>`): a like must not
/// drop every cached response showing the post's text.
pub const POST_ENGAGEMENT: &str = "PostEngagement";
/// The cache tag of a user's follow counts and lists.
pub const USER_FOLLOWS: &str = "UserFollows";
/// The cache tag of one viewer's like of one post (`ViewerLike:<viewer>.<post>`): only that
/// viewer's like or unlike changes their `viewerHasLiked`, so nobody else's cached answer
/// goes when a post is liked.
pub const VIEWER_LIKE: &str = "ViewerLike";
/// The cache tag of one viewer's follow of one user (`ViewerFollow:<viewer>.<user>`).
pub const VIEWER_FOLLOW: &str = "ViewerFollow";

/// The id part of a viewer tag: `<viewer>.<other>`.
fn pair(viewer: i64, other: i64) -> String {
    format!("{viewer}.{other}")
}

/// A post, as far as engagement knows it. The post itself comes from posts.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Post {
    pub id: ID,
}

async fn post_counts(ctx: &Context<'_>, id: &ID) -> ApiResult<(i64, i64)> {
    let entity = cache::entity("Post", id);
    let id = id_of(ctx, id)?;
    cache::tag_entity(ctx, &entity, POST_ENGAGEMENT, id);
    let loader = ctx.data_unchecked::<RequestLoader<PostCountsLoader, i64>>();
    Ok(loader
        .load_one(id)
        .await?
        .map_or((0, 0), |c| (c.likes.max(0), c.comments.max(0))))
}

/// Counts are projections the counters worker keeps: a like shows in `likeCount` within
/// moments, not in the `likePost` answer itself (`viewerHasLiked` does).
#[ComplexObject]
impl Post {
    #[graphql(
        cache_control(max_age = 10),
        directive = cacheControl::apply(10, Public)
    )]
    async fn like_count(&self, ctx: &Context<'_>) -> ApiResult<i64> {
        Ok(post_counts(ctx, &self.id).await?.0)
    }

    #[graphql(
        cache_control(max_age = 10),
        directive = cacheControl::apply(10, Public)
    )]
    async fn comment_count(&self, ctx: &Context<'_>) -> ApiResult<i64> {
        Ok(post_counts(ctx, &self.id).await?.1)
    }

    /// Whether the signed-in user likes the post (`false` for anonymous callers).
    #[graphql(
        cache_control(max_age = 10, private),
        directive = cacheControl::apply(10, Private)
    )]
    async fn viewer_has_liked(&self, ctx: &Context<'_>) -> ApiResult<bool> {
        let id = id_of(ctx, &self.id)?;
        let Some(viewer) = viewer_id(ctx) else {
            return Ok(false);
        };
        let entity = cache::entity("Post", &self.id);
        cache::tag_entity(ctx, &entity, VIEWER_LIKE, pair(viewer, id));
        let loader = ctx.data_unchecked::<RequestLoader<ViewerLikesLoader, (i64, i64)>>();
        Ok(loader.load_one((viewer, id)).await?.is_some())
    }

    /// Comments, newest first.
    #[graphql(
        cache_control(max_age = 10),
        directive = cacheControl::apply(10, Public)
    )]
    async fn comments(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "An `endCursor` from the previous page.")] after: Option<String>,
    ) -> ApiResult<Connection<String, Comment>> {
        let post = id_of(ctx, &self.id)?;
        let page = PageRequest::parse(first, after.as_deref())?;
        cache::tag_entity(ctx, &cache::entity("Post", &self.id), POST_ENGAGEMENT, post);
        let loader = ctx.data_unchecked::<RequestLoader<CommentsLoader, OwnerPage>>();
        let found = loader.load_one(OwnerPage { owner: post, page }).await?;
        Ok(connection(found, page, |c| (c.id, Comment(c))))
    }
}

/// A user, as far as engagement knows them.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct User {
    pub id: ID,
}

async fn user_counts(ctx: &Context<'_>, id: &ID) -> ApiResult<(i64, i64)> {
    let entity = cache::entity("User", id);
    let id = id_of(ctx, id)?;
    cache::tag_entity(ctx, &entity, USER_FOLLOWS, id);
    let loader = ctx.data_unchecked::<RequestLoader<UserCountsLoader, i64>>();
    Ok(loader
        .load_one(id)
        .await?
        .map_or((0, 0), |c| (c.followers.max(0), c.following.max(0))))
}

#[ComplexObject]
impl User {
    #[graphql(
        cache_control(max_age = 10),
        directive = cacheControl::apply(10, Public)
    )]
    async fn follower_count(&self, ctx: &Context<'_>) -> ApiResult<i64> {
        Ok(user_counts(ctx, &self.id).await?.0)
    }

    #[graphql(
        cache_control(max_age = 10),
        directive = cacheControl::apply(10, Public)
    )]
    async fn following_count(&self, ctx: &Context<'_>) -> ApiResult<i64> {
        Ok(user_counts(ctx, &self.id).await?.1)
    }

    /// Whether the signed-in user follows this user.
    #[graphql(
        cache_control(max_age = 10, private),
        directive = cacheControl::apply(10, Private)
    )]
    async fn viewer_follows(&self, ctx: &Context<'_>) -> ApiResult<bool> {
        let id = id_of(ctx, &self.id)?;
        let Some(viewer) = viewer_id(ctx) else {
            return Ok(false);
        };
        let entity = cache::entity("User", &self.id);
        cache::tag_entity(ctx, &entity, VIEWER_FOLLOW, pair(viewer, id));
        let loader = ctx.data_unchecked::<RequestLoader<ViewerFollowsLoader, (i64, i64)>>();
        Ok(loader.load_one((viewer, id)).await?.is_some())
    }

    /// Who follows this user, most recent first.
    #[graphql(
        cache_control(max_age = 10),
        directive = cacheControl::apply(10, Public)
    )]
    async fn followers(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "An `endCursor` from the previous page.")] after: Option<String>,
    ) -> ApiResult<Connection<String, User>> {
        let user = id_of(ctx, &self.id)?;
        let page = PageRequest::parse(first, after.as_deref())?;
        cache::tag_entity(ctx, &cache::entity("User", &self.id), USER_FOLLOWS, user);
        let loader = ctx.data_unchecked::<RequestLoader<FollowersLoader, OwnerPage>>();
        let found = loader.load_one(OwnerPage { owner: user, page }).await?;
        Ok(connection(found, page, |f| {
            (
                f.id,
                User {
                    id: gql_id(f.follower_id),
                },
            )
        }))
    }

    /// Whom this user follows, most recent first.
    #[graphql(
        cache_control(max_age = 10),
        directive = cacheControl::apply(10, Public)
    )]
    async fn following(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "An `endCursor` from the previous page.")] after: Option<String>,
    ) -> ApiResult<Connection<String, User>> {
        let user = id_of(ctx, &self.id)?;
        let page = PageRequest::parse(first, after.as_deref())?;
        cache::tag_entity(ctx, &cache::entity("User", &self.id), USER_FOLLOWS, user);
        let loader = ctx.data_unchecked::<RequestLoader<FollowingLoader, OwnerPage>>();
        let found = loader.load_one(OwnerPage { owner: user, page }).await?;
        Ok(connection(found, page, |f| {
            (
                f.id,
                User {
                    id: gql_id(f.followee_id),
                },
            )
        }))
    }
}

fn connection<R, T: async_graphql::OutputType>(
    found: Option<Page<R>>,
    page: PageRequest,
    node: impl Fn(R) -> (i64, T),
) -> Connection<String, T> {
    let found = found.unwrap_or(Page {
        rows: vec![],
        has_next_page: false,
    });
    let mut conn = Connection::new(page.before_id.is_some(), found.has_next_page);
    conn.edges.extend(found.rows.into_iter().map(|row| {
        let (id, node) = node(row);
        Edge::new(encode_cursor(id), node)
    }));
    conn
}

/// A comment on a post.
pub struct Comment(comment::Model);

#[Object(
    cache_control(max_age = 10),
    directive = cacheControl::apply(10, Public)
)]
impl Comment {
    async fn id(&self) -> ID {
        gql_id(self.0.id)
    }
    async fn post(&self) -> Post {
        Post {
            id: gql_id(self.0.post_id),
        }
    }
    async fn author(&self) -> User {
        User {
            id: gql_id(self.0.author_id),
        }
    }
    async fn body(&self) -> &str {
        &self.0.body
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

pub struct Query;

#[Object]
impl Query {
    /// Federation: `Post` references get their engagement fields here; no lookup needed.
    #[graphql(entity)]
    async fn find_post_by_id(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Post> {
        id_of(ctx, &id)?;
        Ok(Post { id })
    }

    /// Federation: `User` references get their follow fields here.
    #[graphql(entity)]
    async fn find_user_by_id(&self, ctx: &Context<'_>, id: ID) -> ApiResult<User> {
        id_of(ctx, &id)?;
        Ok(User { id })
    }
}

fn signed_in(ctx: &Context<'_>) -> ApiResult<i64> {
    switchyard_kit::viewer(ctx).require_user()
}

pub struct Mutation;

/// Every mutation is idempotent: liking twice is one like, unfollowing someone not followed
/// is no change. Each answers the object it changed.
#[Object]
impl Mutation {
    /// Likes a post as the signed-in user.
    async fn like_post(&self, ctx: &Context<'_>, post_id: ID) -> ApiResult<Post> {
        let user = signed_in(ctx)?;
        let post = id_of(ctx, &post_id)?;
        if repo::like(session(ctx), user, post).await? {
            cache::invalidate(ctx, POST_ENGAGEMENT, post);
            cache::invalidate(ctx, VIEWER_LIKE, pair(user, post));
        }
        Ok(Post { id: post_id })
    }

    async fn unlike_post(&self, ctx: &Context<'_>, post_id: ID) -> ApiResult<Post> {
        let user = signed_in(ctx)?;
        let post = id_of(ctx, &post_id)?;
        if repo::unlike(session(ctx), user, post).await? {
            cache::invalidate(ctx, POST_ENGAGEMENT, post);
            cache::invalidate(ctx, VIEWER_LIKE, pair(user, post));
        }
        Ok(Post { id: post_id })
    }

    /// Comments on a post as the signed-in user (1-1000 characters).
    async fn add_comment(
        &self,
        ctx: &Context<'_>,
        post_id: ID,
        body: String,
    ) -> ApiResult<Comment> {
        let user = signed_in(ctx)?;
        let post = id_of(ctx, &post_id)?;
        let body = repo::comment_body(&body)?;
        let comment = repo::add_comment(session(ctx), user, post, body).await?;
        cache::invalidate(ctx, POST_ENGAGEMENT, post);
        Ok(Comment(comment))
    }

    /// Deletes a comment: its author, or the `admin` scope.
    async fn delete_comment(&self, ctx: &Context<'_>, id: ID) -> ApiResult<ID> {
        signed_in(ctx)?;
        let parsed = id_of(ctx, &id)?;
        let found = repo::comment(session(ctx), parsed)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no comment with id {parsed}")))?;
        switchyard_kit::viewer(ctx).require_self_or_admin(found.author_id)?;
        repo::delete_comment(session(ctx), &found).await?;
        cache::invalidate(ctx, POST_ENGAGEMENT, found.post_id);
        Ok(id)
    }

    /// Follows a user as the signed-in user.
    async fn follow(&self, ctx: &Context<'_>, user_id: ID) -> ApiResult<User> {
        let me = signed_in(ctx)?;
        let them = id_of(ctx, &user_id)?;
        if repo::follow(session(ctx), me, them).await? {
            cache::invalidate(ctx, USER_FOLLOWS, them);
            cache::invalidate(ctx, USER_FOLLOWS, me);
            cache::invalidate(ctx, VIEWER_FOLLOW, pair(me, them));
        }
        Ok(User { id: user_id })
    }

    async fn unfollow(&self, ctx: &Context<'_>, user_id: ID) -> ApiResult<User> {
        let me = signed_in(ctx)?;
        let them = id_of(ctx, &user_id)?;
        if repo::unfollow(session(ctx), me, them).await? {
            cache::invalidate(ctx, USER_FOLLOWS, them);
            cache::invalidate(ctx, USER_FOLLOWS, me);
            cache::invalidate(ctx, VIEWER_FOLLOW, pair(me, them));
        }
        Ok(User { id: user_id })
    }
}
