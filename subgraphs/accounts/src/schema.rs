//! The accounts GraphQL schema: `User` and its queries and mutations.

use std::sync::Arc;

use async_graphql::{
    Context, EmptySubscription, ID, InputObject, MaybeUndefined, Object, Request, Schema,
};
use chrono::{DateTime, Utc};
use switchyard_kit::id::parse_id;
use switchyard_kit::loader::{RequestLoader, request_loader};
use switchyard_kit::{ApiError, ApiResult, ErrorCodes, Session, gql_id};

use crate::entities::user;
use crate::loaders::{HandleLoader, UserLoader};
use crate::repo::{self, NewUser, ProfileChange};

pub type AccountsSchema = Schema<Query, Mutation, EmptySubscription>;

/// The most ids `users(ids:)` takes in one call.
pub const MAX_IDS: usize = 100;

pub fn schema() -> AccountsSchema {
    Schema::build(Query, Mutation, EmptySubscription)
        .enable_federation()
        .extension(ErrorCodes)
        .finish()
}

/// Adds this request's session and loaders.
pub fn prepare(request: Request, session: Arc<Session>) -> Request {
    request
        .data(request_loader(UserLoader(session.clone())))
        .data(request_loader(HandleLoader(session.clone())))
        .data(session)
}

/// A person with an account.
pub struct User(user::Model);

#[Object]
impl User {
    async fn id(&self) -> ID {
        gql_id(self.0.id)
    }
    /// Unique across the platform, lower-case.
    async fn handle(&self) -> &str {
        &self.0.handle
    }
    async fn display_name(&self) -> &str {
        &self.0.display_name
    }
    async fn bio(&self) -> &str {
        &self.0.bio
    }
    async fn avatar_url(&self) -> Option<&str> {
        self.0.avatar_url.as_deref()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

fn session<'a>(ctx: &'a Context<'_>) -> &'a Session {
    ctx.data_unchecked::<Arc<Session>>()
}

fn shard_count(ctx: &Context<'_>) -> usize {
    session(ctx).store().shard_count()
}

async fn load_user(ctx: &Context<'_>, id: i64) -> ApiResult<Option<User>> {
    let loader = ctx.data_unchecked::<RequestLoader<UserLoader, i64>>();
    Ok(loader.load_one(id).await?.map(User))
}

/// Later fields of this request that load the user see the write, not a cached older copy.
fn remember(ctx: &Context<'_>, user: &user::Model) {
    ctx.data_unchecked::<RequestLoader<UserLoader, i64>>()
        .prime(user.id, user.clone());
}

pub struct Query;

#[Object]
impl Query {
    /// A user by id.
    async fn user(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<User>> {
        let id = parse_id(&id, shard_count(ctx))?;
        match load_user(ctx, id).await? {
            Some(user) => Ok(Some(user)),
            None => Err(ApiError::not_found(format!("no user with id {id}"))),
        }
    }

    /// A user by handle (case-insensitive).
    async fn user_by_handle(&self, ctx: &Context<'_>, handle: String) -> ApiResult<Option<User>> {
        let handle = repo::canonical_handle(&handle)?;
        let handles = ctx.data_unchecked::<RequestLoader<HandleLoader, String>>();
        let user_id = handles.load_one(handle.clone()).await?;
        let user = match user_id {
            Some(id) => load_user(ctx, id).await?,
            None => None,
        };
        // A claim left behind by an interrupted handle change must not resolve.
        match user {
            Some(user) if user.0.handle == handle => Ok(Some(user)),
            _ => Err(ApiError::not_found(format!(
                "no user with handle {handle:?}"
            ))),
        }
    }

    /// Users by id, in the order asked; unknown ids give `null` entries.
    async fn users(&self, ctx: &Context<'_>, ids: Vec<ID>) -> ApiResult<Vec<Option<User>>> {
        if ids.len() > MAX_IDS {
            return Err(ApiError::bad_input(format!(
                "at most {MAX_IDS} ids per call, got {}",
                ids.len()
            )));
        }
        let n = shard_count(ctx);
        let ids = ids
            .iter()
            .map(|id| parse_id(id, n))
            .collect::<ApiResult<Vec<_>>>()?;
        let loader = ctx.data_unchecked::<RequestLoader<UserLoader, i64>>();
        let mut found = loader.load_many(ids.iter().copied()).await?;
        Ok(ids.iter().map(|id| found.remove(id).map(User)).collect())
    }

    /// Federation: resolves `User` references from other subgraphs, batched per shard.
    #[graphql(entity)]
    async fn find_user_by_id(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<User>> {
        let id = parse_id(&id, shard_count(ctx))?;
        load_user(ctx, id).await
    }
}

#[derive(InputObject)]
pub struct CreateUserInput {
    /// 3–30 characters: letters, digits, underscores. Stored lower-case.
    pub handle: String,
    /// 1–64 characters.
    pub display_name: String,
    /// Up to 280 characters.
    pub bio: Option<String>,
    /// An absolute http(s) URL.
    pub avatar_url: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateProfileInput {
    pub handle: Option<String>,
    pub display_name: Option<String>,
    pub bio: Option<String>,
    /// `null` removes the avatar.
    pub avatar_url: MaybeUndefined<String>,
}

pub struct Mutation;

#[Object]
impl Mutation {
    async fn create_user(&self, ctx: &Context<'_>, input: CreateUserInput) -> ApiResult<User> {
        let new = NewUser {
            handle: repo::canonical_handle(&input.handle)?,
            display_name: repo::display_name(&input.display_name)?,
            bio: input
                .bio
                .as_deref()
                .map(repo::bio)
                .transpose()?
                .unwrap_or_default(),
            avatar_url: input
                .avatar_url
                .as_deref()
                .map(repo::avatar_url)
                .transpose()?,
        };
        let user = repo::create_user(session(ctx), new).await?;
        remember(ctx, &user);
        Ok(User(user))
    }

    async fn update_profile(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateProfileInput,
    ) -> ApiResult<User> {
        let id = parse_id(&id, shard_count(ctx))?;
        let change = ProfileChange {
            handle: input
                .handle
                .as_deref()
                .map(repo::canonical_handle)
                .transpose()?,
            display_name: input
                .display_name
                .as_deref()
                .map(repo::display_name)
                .transpose()?,
            bio: input.bio.as_deref().map(repo::bio).transpose()?,
            avatar_url: match input.avatar_url {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(url) => Some(Some(repo::avatar_url(&url)?)),
            },
        };
        let user = repo::update_profile(session(ctx), id, change).await?;
        remember(ctx, &user);
        Ok(User(user))
    }
}
