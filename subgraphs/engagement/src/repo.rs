//! Reads and writes of the engagement tables. Every write records its domain event in the
//! same transaction ([`outbox::record`]); every read a loader makes is one statement per shard.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set,
    TransactionTrait,
};
use serde_json::json;
use switchyard_kit::events::outbox::{self, NewEvent};
use switchyard_kit::id::shard_of;
use switchyard_kit::page::{Page, PageRequest};
use switchyard_kit::store::is_unique_violation;
use switchyard_kit::{ApiError, ApiResult, Session, validate};

use crate::entities::{comment, follow, follower, like, post_counter, user_counter};

/// The event kinds (the catalogue is shared with the workers that read them).
pub use switchyard_kit::events::kinds;

fn post_aggregate(post_id: i64) -> String {
    format!("Post:{post_id}")
}

fn user_aggregate(user_id: i64) -> String {
    format!("User:{user_id}")
}

/// Likes `post_id` as `user_id`; false when it was liked already (liking twice is one like,
/// and one event).
pub async fn like(session: &Session, user_id: i64, post_id: i64) -> ApiResult<bool> {
    let txn = session.writer(shard_of(post_id)).begin().await?;
    let inserted = like::Entity::insert(like::ActiveModel {
        post_id: Set(post_id),
        user_id: Set(user_id),
        created_at: Set(Utc::now()),
    })
    .exec_without_returning(&txn)
    .await;
    match inserted {
        Ok(_) => {}
        Err(err) if is_unique_violation(&err) => return Ok(false),
        Err(err) => return Err(err.into()),
    }
    outbox::record(
        &txn,
        NewEvent::new(
            kinds::POST_LIKED,
            post_aggregate(post_id),
            json!({"post_id": post_id, "user_id": user_id}),
        ),
    )
    .await?;
    txn.commit().await?;
    Ok(true)
}

/// Removes the like; false when there was none.
pub async fn unlike(session: &Session, user_id: i64, post_id: i64) -> ApiResult<bool> {
    let txn = session.writer(shard_of(post_id)).begin().await?;
    let deleted = like::Entity::delete_by_id((post_id, user_id))
        .exec(&txn)
        .await?;
    if deleted.rows_affected == 0 {
        return Ok(false);
    }
    outbox::record(
        &txn,
        NewEvent::new(
            kinds::POST_UNLIKED,
            post_aggregate(post_id),
            json!({"post_id": post_id, "user_id": user_id}),
        ),
    )
    .await?;
    txn.commit().await?;
    Ok(true)
}

/// 1-1000 characters, trimmed.
pub fn comment_body(raw: &str) -> ApiResult<String> {
    validate::text("body", raw, 1, 1000)
}

pub async fn add_comment(
    session: &Session,
    author_id: i64,
    post_id: i64,
    body: String,
) -> ApiResult<comment::Model> {
    let shard = shard_of(post_id);
    let conn = session.writer(shard);
    for _ in 0..3 {
        let model = comment::Model {
            id: session.store().next_id(shard),
            post_id,
            author_id,
            body: body.clone(),
            created_at: Utc::now(),
        };
        let txn = conn.begin().await?;
        let inserted =
            comment::Entity::insert(comment::ActiveModel::from(model.clone()).reset_all())
                .exec_without_returning(&txn)
                .await;
        match inserted {
            Ok(_) => {}
            // Another process minted the same id in the same millisecond: mint again.
            Err(err) if is_unique_violation(&err) => continue,
            Err(err) => return Err(err.into()),
        }
        outbox::record(
            &txn,
            NewEvent::new(
                kinds::COMMENT_ADDED,
                post_aggregate(post_id),
                json!({"comment_id": model.id, "post_id": post_id, "author_id": author_id}),
            ),
        )
        .await?;
        txn.commit().await?;
        return Ok(model);
    }
    Err(ApiError::Conflict(
        "could not allocate an id; try again".into(),
    ))
}

pub async fn comment(session: &Session, id: i64) -> ApiResult<Option<comment::Model>> {
    Ok(session
        .read(shard_of(id), |conn| async move {
            comment::Entity::find_by_id(id).one(&conn).await
        })
        .await?)
}

/// Deletes a comment; false when it was gone already.
pub async fn delete_comment(session: &Session, found: &comment::Model) -> ApiResult<bool> {
    let txn = session.writer(shard_of(found.id)).begin().await?;
    let deleted = comment::Entity::delete_by_id(found.id).exec(&txn).await?;
    if deleted.rows_affected == 0 {
        return Ok(false);
    }
    outbox::record(
        &txn,
        NewEvent::new(
            kinds::COMMENT_DELETED,
            post_aggregate(found.post_id),
            json!({"comment_id": found.id, "post_id": found.post_id, "author_id": found.author_id}),
        ),
    )
    .await?;
    txn.commit().await?;
    Ok(true)
}

/// `follower_id` follows `followee_id`; false when they did already.
pub async fn follow(session: &Session, follower_id: i64, followee_id: i64) -> ApiResult<bool> {
    if follower_id == followee_id {
        return Err(ApiError::bad_input("you cannot follow yourself"));
    }
    let shard = shard_of(follower_id);
    let conn = session.writer(shard);
    let txn = conn.begin().await?;
    let id = session.store().next_id(shard);
    let inserted = follow::Entity::insert(follow::ActiveModel {
        id: Set(id),
        follower_id: Set(follower_id),
        followee_id: Set(followee_id),
        created_at: Set(Utc::now()),
    })
    .exec_without_returning(&txn)
    .await;
    match inserted {
        Ok(_) => {}
        // The pair's unique index: followed already (a clash of minted ids would be retried
        // by the client, and is one in millions).
        Err(err) if is_unique_violation(&err) => return Ok(false),
        Err(err) => return Err(err.into()),
    }
    outbox::record(
        &txn,
        NewEvent::new(
            kinds::USER_FOLLOWED,
            user_aggregate(follower_id),
            json!({"follow_id": id, "follower_id": follower_id, "followee_id": followee_id}),
        ),
    )
    .await?;
    txn.commit().await?;
    Ok(true)
}

/// Stops following; false when there was nothing to stop.
pub async fn unfollow(session: &Session, follower_id: i64, followee_id: i64) -> ApiResult<bool> {
    let txn = session.writer(shard_of(follower_id)).begin().await?;
    let Some(found) = follow::Entity::find()
        .filter(follow::Column::FollowerId.eq(follower_id))
        .filter(follow::Column::FolloweeId.eq(followee_id))
        .one(&txn)
        .await?
    else {
        return Ok(false);
    };
    follow::Entity::delete_by_id(found.id).exec(&txn).await?;
    outbox::record(
        &txn,
        NewEvent::new(
            kinds::USER_UNFOLLOWED,
            user_aggregate(follower_id),
            json!({"follow_id": found.id, "follower_id": follower_id, "followee_id": followee_id}),
        ),
    )
    .await?;
    txn.commit().await?;
    Ok(true)
}

/// Counts of posts, by post id (absent: none yet).
pub async fn post_counts(
    session: &Session,
    ids: &[i64],
) -> ApiResult<HashMap<i64, post_counter::Model>> {
    let rows = session
        .per_shard_of_ids(ids, |conn: DatabaseConnection, _, ids| async move {
            post_counter::Entity::find()
                .filter(post_counter::Column::PostId.is_in(ids))
                .all(&conn)
                .await
        })
        .await?;
    Ok(rows.into_iter().map(|r| (r.post_id, r)).collect())
}

/// Counts of users, by user id.
pub async fn user_counts(
    session: &Session,
    ids: &[i64],
) -> ApiResult<HashMap<i64, user_counter::Model>> {
    let rows = session
        .per_shard_of_ids(ids, |conn: DatabaseConnection, _, ids| async move {
            user_counter::Entity::find()
                .filter(user_counter::Column::UserId.is_in(ids))
                .all(&conn)
                .await
        })
        .await?;
    Ok(rows.into_iter().map(|r| (r.user_id, r)).collect())
}

/// Which of `post_ids` `user_id` likes.
pub async fn liked_by(
    session: &Session,
    user_id: i64,
    post_ids: &[i64],
) -> ApiResult<HashSet<i64>> {
    let rows = session
        .per_shard_of_ids(post_ids, |conn: DatabaseConnection, _, ids| async move {
            like::Entity::find()
                .filter(like::Column::UserId.eq(user_id))
                .filter(like::Column::PostId.is_in(ids))
                .all(&conn)
                .await
        })
        .await?;
    Ok(rows.into_iter().map(|r| r.post_id).collect())
}

/// Which of `followee_ids` `follower_id` follows: one statement on the follower's shard.
pub async fn followed_by(
    session: &Session,
    follower_id: i64,
    followee_ids: &[i64],
) -> ApiResult<HashSet<i64>> {
    let query = follow::Entity::find()
        .filter(follow::Column::FollowerId.eq(follower_id))
        .filter(follow::Column::FolloweeId.is_in(followee_ids.to_vec()));
    let rows = session
        .read_with(shard_of(follower_id), query, |conn, query| async move {
            query.all(&conn).await
        })
        .await?;
    Ok(rows.into_iter().map(|r| r.followee_id).collect())
}

/// A page of one owner's rows (the comments of a post, the follows of a user).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OwnerPage {
    pub owner: i64,
    pub page: PageRequest,
}

/// Pages of several owners' rows of `E`: keys grouped by shard and page arguments, one
/// ranked statement per group.
pub async fn pages<E>(
    session: &Session,
    keys: &[OwnerPage],
    table: &'static str,
    columns: &'static str,
    owner_column: &'static str,
    owner_of: fn(&E::Model) -> i64,
) -> ApiResult<HashMap<OwnerPage, Page<E::Model>>>
where
    E: EntityTrait,
    E::Model: Send + Sync,
{
    let mut groups: HashMap<(usize, PageRequest), Vec<i64>> = HashMap::new();
    for key in keys {
        groups
            .entry((shard_of(key.owner), key.page))
            .or_default()
            .push(key.owner);
    }
    let results = futures::future::try_join_all(groups.into_iter().map(
        |((shard, page), owners)| async move {
            let statement = switchyard_kit::page::ranked_pages(
                session.reader(shard).get_database_backend(),
                table,
                columns,
                owner_column,
                &owners,
                page,
            );
            let rows = session
                .read_with(shard, statement, |conn, statement| async move {
                    E::find().from_raw_sql(statement).all(&conn).await
                })
                .await
                .map_err(|source| switchyard_kit::StoreError::Query { shard, source })?;
            Ok::<_, ApiError>((page, owners, rows))
        },
    ))
    .await?;
    let mut out = HashMap::new();
    for (page, owners, rows) in results {
        let mut by_owner: HashMap<i64, Vec<E::Model>> = HashMap::new();
        for row in rows {
            by_owner.entry(owner_of(&row)).or_default().push(row);
        }
        for owner in owners {
            let rows = by_owner.remove(&owner).unwrap_or_default();
            out.insert(
                OwnerPage { owner, page },
                Page::from_overfetch(rows, page.first),
            );
        }
    }
    Ok(out)
}

/// Comments of posts, newest first.
pub async fn comment_pages(
    session: &Session,
    keys: &[OwnerPage],
) -> ApiResult<HashMap<OwnerPage, Page<comment::Model>>> {
    pages::<comment::Entity>(
        session,
        keys,
        "comments",
        "id, post_id, author_id, body, created_at",
        "post_id",
        |c| c.post_id,
    )
    .await
}

/// Whom users follow, newest first (on the followers' shards).
pub async fn following_pages(
    session: &Session,
    keys: &[OwnerPage],
) -> ApiResult<HashMap<OwnerPage, Page<follow::Model>>> {
    pages::<follow::Entity>(
        session,
        keys,
        "follows",
        "id, follower_id, followee_id, created_at",
        "follower_id",
        |f| f.follower_id,
    )
    .await
}

/// Who follows users, newest first (the projection on the followees' shards).
pub async fn follower_pages(
    session: &Session,
    keys: &[OwnerPage],
) -> ApiResult<HashMap<OwnerPage, Page<follower::Model>>> {
    pages::<follower::Entity>(
        session,
        keys,
        "followers",
        "id, followee_id, follower_id, created_at",
        "followee_id",
        |f| f.followee_id,
    )
    .await
}
