//! The accounts GraphQL schema: `User` and its queries and mutations.

use std::sync::Arc;

use async_graphql::{
    Context, EmptySubscription, ID, InputObject, MaybeUndefined, Object, Request, Schema,
    SchemaBuilder,
};
use chrono::{DateTime, Utc};
use switchyard_kit::cache::{
    self,
    CacheControlScope::{Private, Public},
    cacheControl,
};
use switchyard_kit::id::parse_id;
use switchyard_kit::loader::{RequestLoader, request_loader};
use switchyard_kit::{ApiError, ApiResult, ErrorCodes, Session, Viewer, gql_id};

use crate::auth::{self, Tokens};
use crate::config::AccountsConfig;
use crate::entities::user;
use crate::loaders::{HandleLoader, UserLoader};
use crate::providers::{self, IdentityProvider};
use crate::repo::{self, NewUser, ProfileChange};

pub type AccountsSchema = Schema<Query, Mutation, EmptySubscription>;

/// The most ids `users(ids:)` takes in one call.
pub const MAX_IDS: usize = 100;

/// The schema with the development settings (tests, SDL export).
pub fn schema() -> AccountsSchema {
    schema_with(AccountsConfig::development())
}

/// The schema with `config`.
pub fn schema_with(config: AccountsConfig) -> AccountsSchema {
    schema_builder(config).finish()
}

/// The schema before `finish()`, for tests that add an extension.
pub fn schema_builder(config: AccountsConfig) -> SchemaBuilder<Query, Mutation, EmptySubscription> {
    Schema::build(Query, Mutation, EmptySubscription)
        .enable_federation()
        .extension(ErrorCodes)
        .data(config)
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

impl User {
    /// Every `User` a query returns is made here, so its response is tagged with it.
    fn loaded(ctx: &Context<'_>, model: user::Model) -> Self {
        cache::tag(ctx, "User", model.id);
        User(model)
    }

    /// A `User` an entity fetch asked for as `entity`: tagged for that entity alone.
    fn loaded_entity(ctx: &Context<'_>, model: user::Model, entity: &str) -> Self {
        cache::tag_entity(ctx, entity, "User", model.id);
        User(model)
    }
}

/// Profiles are public and change rarely; a change drops every cached response showing it.
#[Object(
    cache_control(max_age = 60),
    directive = cacheControl::apply(60, Public)
)]
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
    Ok(loader.load_one(id).await?.map(|u| User::loaded(ctx, u)))
}

/// Later fields of this request that load the user see the write, not a cached older copy.
fn remember(ctx: &Context<'_>, user: &user::Model) {
    ctx.data_unchecked::<RequestLoader<UserLoader, i64>>()
        .prime(user.id, user.clone());
}

pub struct Query;

#[Object]
impl Query {
    /// The signed-in user; `null` for anonymous requests.
    #[graphql(
        cache_control(max_age = 30, private),
        directive = cacheControl::apply(30, Private)
    )]
    async fn me(&self, ctx: &Context<'_>) -> ApiResult<Option<User>> {
        let Some(id) = ctx.data_opt::<Viewer>().and_then(|v| v.user_id) else {
            return Ok(None);
        };
        if switchyard_kit::id::shard_of(id) >= shard_count(ctx) {
            return Ok(None);
        }
        load_user(ctx, id).await
    }

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
        Ok(ids
            .iter()
            .map(|id| found.remove(id).map(|u| User::loaded(ctx, u)))
            .collect())
    }

    /// Federation: resolves `User` references from other subgraphs, batched per shard.
    #[graphql(entity)]
    async fn find_user_by_id(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<User>> {
        let entity = cache::entity("User", &id);
        let id = parse_id(&id, shard_count(ctx))?;
        let loader = ctx.data_unchecked::<RequestLoader<UserLoader, i64>>();
        Ok(loader
            .load_one(id)
            .await?
            .map(|u| User::loaded_entity(ctx, u, &entity)))
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

#[derive(InputObject)]
pub struct SignUpInput {
    /// 3–30 characters: letters, digits, underscores.
    pub handle: String,
    pub email: String,
    /// 10–256 characters.
    pub password: String,
    /// 1–64 characters; the handle when absent.
    pub display_name: Option<String>,
}

#[derive(InputObject)]
pub struct SignInInput {
    /// A handle or an email address.
    pub login: String,
    pub password: String,
    /// The authenticator app's code, or a recovery code, when two-factor sign-in is on.
    pub totp_code: Option<String>,
}

/// A signed-in session.
pub struct AuthPayload(Tokens);

#[Object]
impl AuthPayload {
    /// A short-lived JWT for `Authorization: Bearer`.
    async fn access_token(&self) -> &str {
        &self.0.access_token
    }
    /// Exchange it with `refreshSession` for new tokens; each works once.
    async fn refresh_token(&self) -> &str {
        &self.0.refresh_token
    }
    /// Seconds until the access token expires.
    async fn expires_in(&self) -> u64 {
        self.0.expires_in
    }
    async fn user(&self, ctx: &Context<'_>) -> ApiResult<User> {
        load_user(ctx, self.0.user_id)
            .await?
            .ok_or_else(|| ApiError::not_found("the signed-in user no longer exists"))
    }
}

/// What an authenticator app needs to start producing codes.
#[derive(async_graphql::SimpleObject)]
pub struct TotpEnrollment {
    /// Base32 secret, for manual entry.
    pub secret: String,
    /// `otpauth://` URI, for a QR code.
    pub otpauth_uri: String,
}

fn viewer_id(ctx: &Context<'_>) -> ApiResult<i64> {
    ctx.data_opt::<Viewer>()
        .and_then(|v| v.user_id)
        .ok_or_else(|| ApiError::Unauthenticated("sign in first".into()))
}

pub struct Mutation;

#[Object]
impl Mutation {
    /// Creates an account with a password and signs it in.
    async fn sign_up(&self, ctx: &Context<'_>, input: SignUpInput) -> ApiResult<AuthPayload> {
        let handle = repo::canonical_handle(&input.handle)?;
        let display_name = repo::display_name(input.display_name.as_deref().unwrap_or(&handle))?;
        let new = NewUser {
            handle,
            display_name,
            bio: String::new(),
            avatar_url: None,
        };
        let email = auth::canonical_email(&input.email)?;
        let config = ctx.data_unchecked::<AccountsConfig>();
        Ok(AuthPayload(
            auth::sign_up(session(ctx), new, email, input.password, &config.tokens).await?,
        ))
    }

    /// Signs in with a handle or email and a password (and a code when two-factor is on).
    async fn sign_in(&self, ctx: &Context<'_>, input: SignInInput) -> ApiResult<AuthPayload> {
        let config = ctx.data_unchecked::<AccountsConfig>();
        let result = auth::sign_in(
            session(ctx),
            &input.login,
            input.password,
            input.totp_code.as_deref(),
            config,
        )
        .await?;
        Ok(AuthPayload(result))
    }

    /// Signs in with an OpenID Connect ID token from Sign in with Apple or Google, issued
    /// for `nonce` (for Apple, the token carries the nonce's SHA-256 in hex). Links to the
    /// account with the provider-verified email, or creates one.
    async fn sign_in_with_provider(
        &self,
        ctx: &Context<'_>,
        provider: IdentityProvider,
        id_token: String,
        nonce: String,
    ) -> ApiResult<AuthPayload> {
        let config = ctx.data_unchecked::<AccountsConfig>();
        Ok(AuthPayload(
            providers::sign_in_with_provider(
                session(ctx),
                &config.providers,
                &config.tokens,
                provider,
                &id_token,
                &nonce,
            )
            .await?,
        ))
    }

    /// New tokens for a refresh token, which then stops working: presented again within a
    /// short grace window (a retry after a lost response) it returns the same new tokens;
    /// later, every session of that sign-in is signed out (`REFRESH_TOKEN_REUSED`).
    async fn refresh_session(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
    ) -> ApiResult<AuthPayload> {
        let config = ctx.data_unchecked::<AccountsConfig>();
        Ok(AuthPayload(
            auth::refresh(session(ctx), &refresh_token, &config.tokens).await?,
        ))
    }

    /// Ends the session the refresh token belongs to (on every device it was refreshed on).
    async fn sign_out(&self, ctx: &Context<'_>, refresh_token: String) -> ApiResult<bool> {
        auth::sign_out(session(ctx), &refresh_token).await?;
        Ok(true)
    }

    /// Starts two-factor enrolment for the signed-in user, who confirms their password.
    async fn enroll_totp(&self, ctx: &Context<'_>, password: String) -> ApiResult<TotpEnrollment> {
        let config = ctx.data_unchecked::<AccountsConfig>();
        let (secret, otpauth_uri) =
            auth::enroll_totp(session(ctx), viewer_id(ctx)?, password, config).await?;
        Ok(TotpEnrollment {
            secret,
            otpauth_uri,
        })
    }

    /// Turns two-factor sign-in off for the signed-in user, who confirms their password and a
    /// code from the app (or a recovery code).
    async fn disable_totp(
        &self,
        ctx: &Context<'_>,
        password: String,
        code: String,
    ) -> ApiResult<bool> {
        let config = ctx.data_unchecked::<AccountsConfig>();
        auth::disable_totp(session(ctx), viewer_id(ctx)?, password, &code, config).await?;
        Ok(true)
    }

    /// Turns two-factor sign-in on with a first code; returns ten single-use recovery codes.
    async fn confirm_totp(&self, ctx: &Context<'_>, code: String) -> ApiResult<Vec<String>> {
        auth::confirm_totp(session(ctx), viewer_id(ctx)?, &code).await
    }

    /// Creates a profile without sign-in credentials: an operator tool (`admin` scope). Apps
    /// use `signUp`.
    async fn create_user(&self, ctx: &Context<'_>, input: CreateUserInput) -> ApiResult<User> {
        switchyard_kit::viewer(ctx).require_admin()?;
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
        switchyard_kit::viewer(ctx).require_self_or_admin(id)?;
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
        cache::invalidate(ctx, "User", id);
        Ok(User(user))
    }
}

/// The cache tags an event of this subgraph makes stale, for the cache worker.
pub fn cache_tags(event: &switchyard_kit::events::Event) -> Vec<String> {
    match (event.kind.as_str(), event.id_field("user_id")) {
        (switchyard_kit::events::kinds::PROFILE_UPDATED, Ok(user)) => {
            vec![cache::tag_of("User", user)]
        }
        _ => vec![],
    }
}
