//! Per-request dataloaders: posts by id, and pages of posts by author.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
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
