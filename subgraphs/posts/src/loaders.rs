//! Per-request dataloaders: posts by id, and pages of posts by author.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use switchyard_kit::id::shard_of;
use switchyard_kit::loader::ShardOf;
use switchyard_kit::page::Page;
use switchyard_kit::{ApiError, Session};

use crate::entities::post;
use crate::repo::{self, AuthorPage};

/// Posts by id.
pub struct PostLoader(pub Arc<Session>);

impl Loader<i64> for PostLoader {
    type Value = post::Model;
    type Error = ApiError;

    async fn load(&self, ids: &[i64]) -> Result<HashMap<i64, post::Model>, ApiError> {
        repo::posts_by_ids(&self.0, ids).await
    }
}

impl ShardOf<i64> for PostLoader {
    fn shard_of(&self, id: &i64) -> usize {
        shard_of(*id)
    }
}

/// `User.posts` pages, by author and page arguments.
pub struct AuthorPostsLoader(pub Arc<Session>);

impl Loader<AuthorPage> for AuthorPostsLoader {
    type Value = Page<post::Model>;
    type Error = ApiError;

    async fn load(
        &self,
        keys: &[AuthorPage],
    ) -> Result<HashMap<AuthorPage, Self::Value>, ApiError> {
        repo::posts_by_authors(&self.0, keys).await
    }
}

impl ShardOf<AuthorPage> for AuthorPostsLoader {
    fn shard_of(&self, key: &AuthorPage) -> usize {
        repo::author_shard(self.0.store(), key.author_id)
    }
}
