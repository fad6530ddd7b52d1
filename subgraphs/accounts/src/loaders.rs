//! Per-request dataloaders: every user lookup in one request tick becomes one query per shard.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use switchyard_kit::id::shard_of;
use switchyard_kit::loader::ShardOf;
use switchyard_kit::{ApiError, Session};

use crate::entities::user;
use crate::repo;

/// Users by id.
pub struct UserLoader(pub Arc<Session>);

impl Loader<i64> for UserLoader {
    type Value = user::Model;
    type Error = ApiError;

    async fn load(&self, ids: &[i64]) -> Result<HashMap<i64, user::Model>, Self::Error> {
        repo::users_by_ids(&self.0, ids).await
    }
}

impl ShardOf<i64> for UserLoader {
    fn shard_of(&self, id: &i64) -> usize {
        shard_of(*id)
    }
}

/// User ids by canonical handle, through the handle directory.
pub struct HandleLoader(pub Arc<Session>);

impl Loader<String> for HandleLoader {
    type Value = i64;
    type Error = ApiError;

    async fn load(&self, handles: &[String]) -> Result<HashMap<String, i64>, Self::Error> {
        repo::user_ids_by_handles(&self.0, handles).await
    }
}

impl ShardOf<String> for HandleLoader {
    fn shard_of(&self, handle: &String) -> usize {
        self.0.store().shard_for_key(handle.as_bytes())
    }
}
