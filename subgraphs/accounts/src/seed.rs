//! Demo users for `switchyard seed` and `switchyard dev`.
//!
//! Ids and timestamps are derived from the user's index, never from the clock, so seeding twice
//! (or resuming an interrupted seed) inserts nothing new: every insert is `ON CONFLICT DO NOTHING`.

use chrono::{DateTime, Utc};
use sea_orm::EntityTrait;
use sea_orm::sea_query::OnConflict;
use switchyard_kit::ShardedStore;
use switchyard_kit::id::compose_id;
use switchyard_kit::store::StoreError;

use crate::entities::{handle, user};

/// Seeded users sign up one per millisecond from 2026-01-01T00:00:00Z.
pub const SEED_BASE_MS: i64 = 1_767_225_600_000;

const FIRST: [&str; 32] = [
    "ada",
    "alan",
    "grace",
    "linus",
    "margaret",
    "ken",
    "barbara",
    "dennis",
    "frances",
    "john",
    "radia",
    "edsger",
    "hedy",
    "tim",
    "katherine",
    "donald",
    "anita",
    "guido",
    "sophie",
    "bjarne",
    "shafi",
    "leslie",
    "jean",
    "niklaus",
    "adele",
    "vint",
    "mary",
    "claude",
    "evelyn",
    "yukihiro",
    "carol",
    "alonzo",
];
const LAST: [&str; 32] = [
    "lovelace",
    "turing",
    "hopper",
    "torvalds",
    "hamilton",
    "thompson",
    "liskov",
    "ritchie",
    "allen",
    "mccarthy",
    "perlman",
    "dijkstra",
    "lamarr",
    "berners",
    "johnson",
    "knuth",
    "borg",
    "rossum",
    "wilson",
    "stroustrup",
    "goldwasser",
    "lamport",
    "sammet",
    "wirth",
    "goldberg",
    "cerf",
    "keller",
    "shannon",
    "berezin",
    "matsumoto",
    "shaw",
    "church",
];
const BIOS: [&str; 6] = [
    "Building things for the web.",
    "Coffee, code and long walks.",
    "Mobile engineer. Opinions are my own.",
    "Photographer on weekends.",
    "Here for the memes and the distributed systems.",
    "",
];

/// The `i`-th demo user (deterministic).
pub fn demo_user(i: usize, shard_count: usize) -> user::Model {
    let first = FIRST[i % FIRST.len()];
    let last = LAST[(i / FIRST.len()) % LAST.len()];
    let handle = format!("{first}_{last}_{i}");
    let shard =
        (switchyard_kit::store::stable_hash(handle.as_bytes()) % shard_count as u64) as usize;
    let ms = SEED_BASE_MS + i as i64;
    let at: DateTime<Utc> = DateTime::from_timestamp_millis(ms).expect("valid seed time");
    user::Model {
        id: compose_id(ms, shard, 0),
        display_name: format!(
            "{}{} {}{}",
            &first[..1].to_uppercase(),
            &first[1..],
            &last[..1].to_uppercase(),
            &last[1..]
        ),
        handle,
        bio: BIOS[i % BIOS.len()].to_owned(),
        avatar_url: (!i.is_multiple_of(5))
            .then(|| format!("https://cdn.example.com/avatars/{i}.jpg")),
        created_at: at,
        updated_at: at,
    }
}

/// The ids of the first `n` demo users, for seeding other subgraphs without a round trip.
pub fn demo_user_ids(n: usize, shard_count: usize) -> Vec<i64> {
    (0..n).map(|i| demo_user(i, shard_count).id).collect()
}

/// Inserts the first `n` demo users; returns how many rows were new.
pub async fn seed_users(store: &ShardedStore, n: usize) -> Result<u64, StoreError> {
    let shards = store.shard_count();
    let users = (0..n).map(|i| demo_user(i, shards));
    store
        .load_rows(
            users,
            |u| switchyard_kit::id::shard_of(u.id),
            500,
            |txn, chunk| {
                Box::pin(async move {
                    let claims = chunk.iter().map(|u| handle::ActiveModel {
                        handle: sea_orm::Set(u.handle.clone()),
                        user_id: sea_orm::Set(u.id),
                    });
                    handle::Entity::insert_many(claims)
                        .on_conflict(
                            OnConflict::column(handle::Column::Handle)
                                .do_nothing()
                                .to_owned(),
                        )
                        .exec_without_returning(txn)
                        .await?;
                    let rows = chunk
                        .iter()
                        .cloned()
                        .map(|u| sea_orm::ActiveModelTrait::reset_all(user::ActiveModel::from(u)));
                    user::Entity::insert_many(rows)
                        .on_conflict(OnConflict::column(user::Column::Id).do_nothing().to_owned())
                        .exec_without_returning(txn)
                        .await
                })
            },
        )
        .await
}
