//! Reads and writes of posts across shards.

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use switchyard_kit::events::outbox::{self, NewEvent};
use switchyard_kit::id::shard_of;
use switchyard_kit::page::{Page, PageRequest, merge_desc};
use switchyard_kit::store::is_unique_violation;
use switchyard_kit::{ApiError, ApiResult, Session, ShardedStore, validate};

use crate::entities::post;

/// At most this many media URLs per post.
pub const MAX_MEDIA: usize = 4;
/// Post bodies are 1–2000 characters.
pub const MAX_BODY: usize = 2000;

/// The posts shard of an author: the shard index their user id carries (the same index as
/// their profile when both subgraphs run the same number of shards, which we recommend).
pub fn author_shard(store: &ShardedStore, author_id: i64) -> usize {
    shard_of(author_id) % store.shard_count()
}

pub fn body(raw: &str) -> ApiResult<String> {
    validate::text("body", raw, 1, MAX_BODY)
}

pub fn media_urls(raw: &[String]) -> ApiResult<Vec<String>> {
    if raw.len() > MAX_MEDIA {
        return Err(ApiError::bad_input(format!(
            "at most {MAX_MEDIA} `mediaUrls` per post, got {}",
            raw.len()
        )));
    }
    raw.iter().map(|u| validate::url("mediaUrls", u)).collect()
}

/// Creates a post on its author's shard.
pub async fn create_post(
    session: &Session,
    author_id: i64,
    body: String,
    media: Vec<String>,
) -> ApiResult<post::Model> {
    let store = session.store();
    let shard = author_shard(store, author_id);
    let conn = session.writer(shard);
    let media_urls = serde_json::to_string(&media).expect("strings serialize");
    for _ in 0..3 {
        let model = post::Model {
            id: store.next_id(shard),
            author_id,
            body: body.clone(),
            media_urls: media_urls.clone(),
            created_at: Utc::now(),
        };
        let txn = conn.begin().await?;
        let active = sea_orm::ActiveModelTrait::reset_all(post::ActiveModel::from(model.clone()));
        match post::Entity::insert(active)
            .exec_without_returning(&txn)
            .await
        {
            Ok(_) => {}
            // Another process minted the same id in the same millisecond: mint again.
            Err(err) if is_unique_violation(&err) => continue,
            Err(err) => return Err(err.into()),
        }
        outbox::record(
            &txn,
            NewEvent::new(
                POST_CREATED,
                format!("Post:{}", model.id),
                serde_json::json!({"post_id": model.id, "author_id": author_id}),
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

/// Deletes a post; false when there was none.
pub async fn delete_post(session: &Session, id: i64) -> ApiResult<bool> {
    let txn = session.writer(shard_of(id)).begin().await?;
    let Some(found) = post::Entity::find_by_id(id).one(&txn).await? else {
        return Ok(false);
    };
    post::Entity::delete_by_id(id).exec(&txn).await?;
    outbox::record(
        &txn,
        NewEvent::new(
            POST_DELETED,
            format!("Post:{id}"),
            serde_json::json!({"post_id": id, "author_id": found.author_id}),
        ),
    )
    .await?;
    txn.commit().await?;
    Ok(true)
}

/// The events this subgraph emits (docs/events.md).
pub use switchyard_kit::events::kinds::{POST_CREATED, POST_DELETED};

/// Posts by id: one `WHERE id IN (...)` per shard touched.
pub async fn posts_by_ids(session: &Session, ids: &[i64]) -> ApiResult<HashMap<i64, post::Model>> {
    let rows = session
        .per_shard_of_ids(ids, |conn: DatabaseConnection, _, ids| async move {
            post::Entity::find()
                .filter(post::Column::Id.is_in(ids))
                .all(&conn)
                .await
        })
        .await?;
    Ok(rows.into_iter().map(|p| (p.id, p)).collect())
}

/// The key of one `User.posts(first, after)` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuthorPage {
    pub author_id: i64,
    pub page: PageRequest,
}

/// Pages of several authors' posts. Keys are grouped by shard and page arguments; each group is
/// one statement (a window function ranks each author's posts), so 50 authors on 4 shards cost
/// at most 4 statements, not 50.
pub async fn posts_by_authors(
    session: &Session,
    keys: &[AuthorPage],
) -> ApiResult<HashMap<AuthorPage, Page<post::Model>>> {
    let store = session.store();
    let mut groups: HashMap<(usize, PageRequest), Vec<i64>> = HashMap::new();
    for key in keys {
        groups
            .entry((author_shard(store, key.author_id), key.page))
            .or_default()
            .push(key.author_id);
    }
    let results = futures::future::try_join_all(groups.into_iter().map(
        |((shard, page), authors)| async move {
            let rows = session
                .read(shard, |conn| {
                    let authors = &authors;
                    async move { ranked_posts(&conn, authors, page).await }
                })
                .await
                .map_err(|source| switchyard_kit::StoreError::Query { shard, source })?;
            Ok::<_, ApiError>((page, authors, rows))
        },
    ))
    .await?;

    let mut pages = HashMap::new();
    for (page, authors, rows) in results {
        let mut by_author: HashMap<i64, Vec<post::Model>> = HashMap::new();
        for row in rows {
            by_author.entry(row.author_id).or_default().push(row);
        }
        for author_id in authors {
            let rows = by_author.remove(&author_id).unwrap_or_default();
            pages.insert(
                AuthorPage { author_id, page },
                Page::from_overfetch(rows, page.first),
            );
        }
    }
    Ok(pages)
}

async fn ranked_posts(
    conn: &DatabaseConnection,
    authors: &[i64],
    page: PageRequest,
) -> Result<Vec<post::Model>, DbErr> {
    post::Entity::find()
        .from_raw_sql(switchyard_kit::page::ranked_pages(
            conn.get_database_backend(),
            "posts",
            "id, author_id, body, media_urls, created_at",
            "author_id",
            authors,
            page,
        ))
        .all(conn)
        .await
}

/// The global feed: each shard's newest `first + 1` posts below the cursor, k-way merged.
pub async fn feed(session: &Session, page: PageRequest) -> ApiResult<Page<post::Model>> {
    let pages = session
        .all_shards(|conn, _| async move {
            let mut query = post::Entity::find();
            if let Some(before) = page.before_id {
                query = query.filter(post::Column::Id.lt(before));
            }
            query
                .order_by_desc(post::Column::Id)
                .limit(page.fetch_limit())
                .all(&conn)
                .await
        })
        .await?;
    Ok(merge_desc(pages, page.first, |p| p.id))
}
