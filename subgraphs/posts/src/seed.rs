//! Demo posts for `switchyard seed` and `switchyard dev`: deterministic ids, so reseeding
//! inserts nothing new.

use chrono::DateTime;
use sea_orm::EntityTrait;
use sea_orm::sea_query::OnConflict;
use switchyard_kit::ShardedStore;
use switchyard_kit::id::compose_id;
use switchyard_kit::store::{StoreError, stable_hash};

use crate::entities::post;
use crate::repo::author_shard;

/// Seeded posts are spread evenly from 2026-03-01 over 240 days.
pub const SEED_BASE_MS: i64 = 1_772_323_200_000;
const SEED_SPAN_MS: i64 = 240 * 24 * 3600 * 1000;

const OPENERS: [&str; 8] = [
    "Shipped it!",
    "Hot take:",
    "TIL",
    "Quick question:",
    "Reminder:",
    "Thread:",
    "Finally",
    "Can't believe",
];
const TOPICS: [&str; 10] = [
    "persisted queries make mobile releases so much calmer",
    "our feed p99 dropped after batching the author lookups",
    "the new coffee place downtown is worth the queue",
    "federation is just joins with extra steps",
    "rewrote the onboarding flow over the weekend",
    "sharding by user id keeps every profile page on one database",
    "the sunset from the office roof today",
    "cursor pagination beats offsets, every time",
    "dark mode is finally live on Android",
    "ran 10k requests through the router without a single error",
];

/// The `j`-th demo post, written by one of `authors` (deterministic). About a fifth of the
/// posts come from the first 1% of authors, like real feeds dominated by a few prolific users.
pub fn demo_post(j: usize, authors: &[i64], store: &ShardedStore) -> post::Model {
    let h = stable_hash(&(j as u64).to_le_bytes());
    let popular = (authors.len() / 100).max(1);
    let author = if h.is_multiple_of(5) {
        authors[(h / 5) as usize % popular]
    } else {
        authors[(h / 5) as usize % authors.len()]
    };
    let step = (SEED_SPAN_MS / 100_000).max(1);
    let ms = SEED_BASE_MS + j as i64 * step;
    let media = if h.is_multiple_of(7) {
        format!(r#"["https://cdn.example.com/media/{j}.jpg"]"#)
    } else {
        "[]".to_owned()
    };
    post::Model {
        id: compose_id(ms, author_shard(store, author), (j % 4096) as i64),
        author_id: author,
        body: format!(
            "{} {}",
            OPENERS[(h % OPENERS.len() as u64) as usize],
            TOPICS[((h >> 8) % TOPICS.len() as u64) as usize]
        ),
        media_urls: media,
        created_at: DateTime::from_timestamp_millis(ms).expect("valid seed time"),
    }
}

/// Inserts `n` demo posts by `authors`; returns how many rows were new.
pub async fn seed_posts(
    store: &ShardedStore,
    authors: &[i64],
    n: usize,
) -> Result<u64, StoreError> {
    if authors.is_empty() || n == 0 {
        return Ok(0);
    }
    let posts = (0..n).map(|j| demo_post(j, authors, store));
    store
        .load_rows(
            posts,
            |p| switchyard_kit::id::shard_of(p.id),
            1000,
            |txn, chunk| {
                Box::pin(async move {
                    let rows = chunk
                        .iter()
                        .cloned()
                        .map(|p| sea_orm::ActiveModelTrait::reset_all(post::ActiveModel::from(p)));
                    post::Entity::insert_many(rows)
                        .on_conflict(OnConflict::column(post::Column::Id).do_nothing().to_owned())
                        .exec_without_returning(txn)
                        .await
                })
            },
        )
        .await
}
