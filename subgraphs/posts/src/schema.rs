//! The posts GraphQL schema: `Post`, `User.posts` and the global feed.

use std::sync::Arc;

use async_graphql::connection::{Connection, Edge};
use async_graphql::{
    ComplexObject, Context, EmptySubscription, ID, InputObject, Object, Request, Schema,
    SchemaBuilder, SimpleObject,
};
use chrono::{DateTime, Utc};
use switchyard_kit::cache::{self, CacheControlScope::Public, cacheControl};
use switchyard_kit::id::parse_id;
use switchyard_kit::loader::{RequestLoader, request_loader};
use switchyard_kit::page::{Page, PageRequest, encode_cursor};
use switchyard_kit::{ApiError, ApiResult, ErrorCodes, Session, gql_id};

use crate::entities::post;
use crate::loaders::{AuthorPostsLoader, PostLoader};
use crate::repo::{self, AuthorPage};

pub type PostsSchema = Schema<Query, Mutation, EmptySubscription>;

/// A page of posts, newest first. Cursors are opaque.
pub type PostConnection = Connection<String, Post>;

pub fn schema() -> PostsSchema {
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
        .data(request_loader(PostLoader(session.clone())))
        .data(request_loader(AuthorPostsLoader(session.clone())))
        .data(session)
}

fn session<'a>(ctx: &'a Context<'_>) -> &'a Session {
    ctx.data_unchecked::<Arc<Session>>()
}

fn shard_count(ctx: &Context<'_>) -> usize {
    session(ctx).store().shard_count()
}

/// A user, as far as posts knows them: their id and their posts. Profiles come from accounts.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct User {
    pub id: ID,
}

#[ComplexObject]
impl User {
    /// The user's posts, newest first.
    #[graphql(
        cache_control(max_age = 30),
        directive = cacheControl::apply(30, Public)
    )]
    async fn posts(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "An `endCursor` from the previous page.")] after: Option<String>,
    ) -> ApiResult<PostConnection> {
        let author_id = parse_id(&self.id, shard_count(ctx))?;
        let page = PageRequest::parse(first, after.as_deref())?;
        let loader = ctx.data_unchecked::<RequestLoader<AuthorPostsLoader, AuthorPage>>();
        let found = loader.load_one(AuthorPage { author_id, page }).await?;
        // The list changes when this user posts or deletes a post. Its own tag, not the user's:
        // a new post must not drop every cached response that shows the author's profile.
        let owner = cache::entity("User", &self.id);
        cache::tag_entity(ctx, &owner, POSTS_OF_USER, author_id);
        Ok(connection(
            ctx,
            Some(&owner),
            found.unwrap_or(Page {
                rows: vec![],
                has_next_page: false,
            }),
            page,
        ))
    }
}

/// The cache tag of one user's post list (`UserPosts:<id>`).
pub const POSTS_OF_USER: &str = "UserPosts";

/// Something a user wrote.
pub struct Post(post::Model);

impl Post {
    /// Every `Post` a query returns is made here, so its response is tagged with it (and,
    /// inside an entity fetch, the entity `owner` it belongs to).
    fn loaded(ctx: &Context<'_>, model: post::Model, owner: Option<&str>) -> Self {
        match owner {
            Some(owner) => cache::tag_entity(ctx, owner, "Post", model.id),
            None => cache::tag(ctx, "Post", model.id),
        }
        Post(model)
    }
}

#[Object(
    cache_control(max_age = 30),
    directive = cacheControl::apply(30, Public)
)]
impl Post {
    async fn id(&self) -> ID {
        gql_id(self.0.id)
    }
    async fn author(&self) -> User {
        User {
            id: gql_id(self.0.author_id),
        }
    }
    async fn body(&self) -> &str {
        &self.0.body
    }
    async fn media_urls(&self) -> Vec<String> {
        self.0.media()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

fn connection(
    ctx: &Context<'_>,
    owner: Option<&str>,
    page: Page<post::Model>,
    request: PageRequest,
) -> PostConnection {
    let mut conn = Connection::new(request.before_id.is_some(), page.has_next_page);
    conn.edges.extend(
        page.rows
            .into_iter()
            .map(|p| Edge::new(encode_cursor(p.id), Post::loaded(ctx, p, owner))),
    );
    conn
}

pub struct Query;

#[Object]
impl Query {
    /// A post by id.
    async fn post(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<Post>> {
        let id = parse_id(&id, shard_count(ctx))?;
        let loader = ctx.data_unchecked::<RequestLoader<PostLoader, i64>>();
        match loader.load_one(id).await? {
            Some(p) => Ok(Some(Post::loaded(ctx, p, None))),
            None => Err(ApiError::not_found(format!("no post with id {id}"))),
        }
    }

    /// Every user's posts, newest first, across all shards. Cached briefly rather than
    /// invalidated: every new post would otherwise empty every cached feed.
    #[graphql(
        cache_control(max_age = 10),
        directive = cacheControl::apply(10, Public)
    )]
    async fn feed(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 1 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "An `endCursor` from the previous page.")] after: Option<String>,
    ) -> ApiResult<PostConnection> {
        let page = PageRequest::parse(first, after.as_deref())?;
        Ok(connection(
            ctx,
            None,
            repo::feed(session(ctx), page).await?,
            page,
        ))
    }

    /// Federation: `User` references get their `posts` here; no lookup needed.
    #[graphql(entity)]
    async fn find_user_by_id(&self, ctx: &Context<'_>, id: ID) -> ApiResult<User> {
        parse_id(&id, shard_count(ctx))?;
        Ok(User { id })
    }

    /// Federation: resolves `Post` references, batched per shard.
    #[graphql(entity)]
    async fn find_post_by_id(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<Post>> {
        let entity = cache::entity("Post", &id);
        let id = parse_id(&id, shard_count(ctx))?;
        let loader = ctx.data_unchecked::<RequestLoader<PostLoader, i64>>();
        Ok(loader
            .load_one(id)
            .await?
            .map(|p| Post::loaded(ctx, p, Some(&entity))))
    }
}

/// A post by the signed-in user.
#[derive(InputObject)]
pub struct CreatePostInput {
    /// 1–2000 characters.
    pub body: String,
    /// Up to 4 absolute http(s) URLs.
    #[graphql(default)]
    pub media_urls: Vec<String>,
}

pub struct Mutation;

#[Object]
impl Mutation {
    /// Posts as the signed-in user.
    async fn create_post(&self, ctx: &Context<'_>, input: CreatePostInput) -> ApiResult<Post> {
        let author_id = switchyard_kit::viewer(ctx).require_user()?;
        let body = repo::body(&input.body)?;
        let media = repo::media_urls(&input.media_urls)?;
        let post = repo::create_post(session(ctx), author_id, body, media).await?;
        cache::invalidate(ctx, POSTS_OF_USER, author_id);
        Ok(Post(post))
    }

    /// Deletes one of the signed-in user's posts; `NOT_FOUND` when there is none.
    async fn delete_post(&self, ctx: &Context<'_>, id: ID) -> ApiResult<ID> {
        let parsed = parse_id(&id, shard_count(ctx))?;
        let viewer = switchyard_kit::viewer(ctx);
        viewer.require_user()?;
        let loader = ctx.data_unchecked::<RequestLoader<PostLoader, i64>>();
        let post = loader
            .load_one(parsed)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no post with id {parsed}")))?;
        viewer.require_self_or_admin(post.author_id)?;
        if repo::delete_post(session(ctx), parsed).await? {
            ctx.data_unchecked::<RequestLoader<PostLoader, i64>>()
                .forget(&parsed);
            cache::invalidate(ctx, "Post", parsed);
            cache::invalidate(ctx, POSTS_OF_USER, post.author_id);
            Ok(id)
        } else {
            Err(ApiError::not_found(format!("no post with id {parsed}")))
        }
    }
}

/// The cache tags an event of this subgraph makes stale, for the cache worker (the same ones
/// the mutations invalidate, so a post deleted off the router disappears from cached pages).
pub fn cache_tags(event: &switchyard_kit::events::Event) -> Vec<String> {
    use switchyard_kit::events::kinds;
    let id = |name| event.id_field(name).ok();
    match (event.kind.as_str(), id("post_id"), id("author_id")) {
        (kinds::POST_CREATED, _, Some(author)) => vec![cache::tag_of(POSTS_OF_USER, author)],
        (kinds::POST_DELETED, Some(post), Some(author)) => vec![
            cache::tag_of("Post", post),
            cache::tag_of(POSTS_OF_USER, author),
        ],
        _ => vec![],
    }
}
