//! Per-request dataloaders: every field of a page of posts or users is one statement per
//! shard, whatever the page size.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use switchyard_kit::id::shard_of;
use switchyard_kit::loader::ShardOf;
use switchyard_kit::page::Page;
use switchyard_kit::{ApiError, Session};

use crate::entities::{comment, follow, follower, post_counter, user_counter};
use crate::repo::{self, OwnerPage};

pub struct PostCountsLoader(pub Arc<Session>);

impl Loader<i64> for PostCountsLoader {
    type Value = post_counter::Model;
    type Error = ApiError;

    async fn load(&self, ids: &[i64]) -> Result<HashMap<i64, Self::Value>, ApiError> {
        repo::post_counts(&self.0, ids).await
    }
}

pub struct UserCountsLoader(pub Arc<Session>);

impl Loader<i64> for UserCountsLoader {
    type Value = user_counter::Model;
    type Error = ApiError;

    async fn load(&self, ids: &[i64]) -> Result<HashMap<i64, Self::Value>, ApiError> {
        repo::user_counts(&self.0, ids).await
    }
}

/// The posts (of those asked) the viewer likes.
pub struct ViewerLikesLoader(pub Arc<Session>);

/// Keys are `(viewer, id)`: prepare runs before the viewer is known to the loader, and one
/// request has one viewer, so a batch is one viewer's.
impl Loader<(i64, i64)> for ViewerLikesLoader {
    type Value = ();
    type Error = ApiError;

    async fn load(&self, keys: &[(i64, i64)]) -> Result<HashMap<(i64, i64), ()>, ApiError> {
        per_viewer(&self.0, keys, |session, viewer, ids| {
            Box::pin(repo::liked_by(session, viewer, ids))
        })
        .await
    }
}

/// The users (of those asked) the viewer follows.
pub struct ViewerFollowsLoader(pub Arc<Session>);

/// Keys are `(viewer, id)`: prepare runs before the viewer is known to the loader, and one
/// request has one viewer, so a batch is one viewer's.
impl Loader<(i64, i64)> for ViewerFollowsLoader {
    type Value = ();
    type Error = ApiError;

    async fn load(&self, keys: &[(i64, i64)]) -> Result<HashMap<(i64, i64), ()>, ApiError> {
        per_viewer(&self.0, keys, |session, viewer, ids| {
            Box::pin(repo::followed_by(session, viewer, ids))
        })
        .await
    }
}

pub struct CommentsLoader(pub Arc<Session>);

impl Loader<OwnerPage> for CommentsLoader {
    type Value = Page<comment::Model>;
    type Error = ApiError;

    async fn load(&self, keys: &[OwnerPage]) -> Result<HashMap<OwnerPage, Self::Value>, ApiError> {
        repo::comment_pages(&self.0, keys).await
    }
}

pub struct FollowingLoader(pub Arc<Session>);

impl Loader<OwnerPage> for FollowingLoader {
    type Value = Page<follow::Model>;
    type Error = ApiError;

    async fn load(&self, keys: &[OwnerPage]) -> Result<HashMap<OwnerPage, Self::Value>, ApiError> {
        repo::following_pages(&self.0, keys).await
    }
}

pub struct FollowersLoader(pub Arc<Session>);

impl Loader<OwnerPage> for FollowersLoader {
    type Value = Page<follower::Model>;
    type Error = ApiError;

    async fn load(&self, keys: &[OwnerPage]) -> Result<HashMap<OwnerPage, Self::Value>, ApiError> {
        repo::follower_pages(&self.0, keys).await
    }
}

/// Which of some ids a viewer has a row for (their likes, their follows).
type ViewerQuery =
    for<'a> fn(
        &'a Session,
        i64,
        &'a [i64],
    )
        -> futures::future::BoxFuture<'a, Result<std::collections::HashSet<i64>, ApiError>>;

/// The keys present for each viewer, `query` answering which of `ids` a viewer has a row for.
async fn per_viewer(
    session: &Session,
    keys: &[(i64, i64)],
    query: ViewerQuery,
) -> Result<HashMap<(i64, i64), ()>, ApiError> {
    let mut by_viewer: HashMap<i64, Vec<i64>> = HashMap::new();
    for (viewer, id) in keys {
        by_viewer.entry(*viewer).or_default().push(*id);
    }
    let mut out = HashMap::new();
    for (viewer, ids) in by_viewer {
        for id in query(session, viewer, &ids).await? {
            out.insert((viewer, id), ());
        }
    }
    Ok(out)
}

/// Counters and likes live on the shard of the post or user they count; follows and pages on
/// the shard of their owner (the follower, the post, the user).
impl ShardOf<i64> for PostCountsLoader {
    fn shard_of(&self, post: &i64) -> usize {
        shard_of(*post)
    }
}

impl ShardOf<i64> for UserCountsLoader {
    fn shard_of(&self, user: &i64) -> usize {
        shard_of(*user)
    }
}

impl ShardOf<(i64, i64)> for ViewerLikesLoader {
    fn shard_of(&self, (_, post): &(i64, i64)) -> usize {
        shard_of(*post)
    }
}

impl ShardOf<(i64, i64)> for ViewerFollowsLoader {
    fn shard_of(&self, (viewer, _): &(i64, i64)) -> usize {
        shard_of(*viewer)
    }
}

impl ShardOf<OwnerPage> for CommentsLoader {
    fn shard_of(&self, key: &OwnerPage) -> usize {
        shard_of(key.owner)
    }
}

impl ShardOf<OwnerPage> for FollowingLoader {
    fn shard_of(&self, key: &OwnerPage) -> usize {
        shard_of(key.owner)
    }
}

impl ShardOf<OwnerPage> for FollowersLoader {
    fn shard_of(&self, key: &OwnerPage) -> usize {
        shard_of(key.owner)
    }
}
