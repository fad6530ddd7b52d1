//! The counters worker (`switchyard worker counters`): keeps the engagement projections
//! (like, comment, follower and following counts, and the followers mirror) from the events.
//!
//! Each effect is one transaction on the shard it changes, together with its row in
//! `processed_events`, so a duplicate delivery changes nothing. Counters move by deltas, which
//! commute, so the order in which two consumers apply them does not matter; the followers
//! mirror is keyed by the follow's id, and an unfollow seen before its follow leaves a
//! tombstone the follow then respects.
//!
//! Once a count changed, the routers' caches are told (`PostEngagement:<post>`,
//! `UserFollows:<user>`): the count changes after the mutation's own invalidation, and a
//! response cached in between would otherwise show the old count until it expires.

use std::sync::Arc;

use sea_orm::{
    ConnectionTrait, DatabaseTransaction, EntityTrait, Set, Statement, TransactionTrait,
};
use switchyard_kit::ShardedStore;
use switchyard_kit::events::worker::{Handler, HandlerError};
use switchyard_kit::events::{Event, processed};
use switchyard_kit::id::shard_of;
use switchyard_kit::store::{is_unique_violation, placeholder};

use crate::entities::follower;
use crate::repo::kinds;
use crate::schema::{POST_ENGAGEMENT, USER_FOLLOWS};
use switchyard_kit::events::invalidation::CacheInvalidator;

/// The consumer group, and its name in `processed_events`.
pub const GROUP: &str = "counters";
/// Where unfollows seen before their follow are remembered.
const TOMBSTONES: &str = "counters:unfollowed";

pub struct Counters {
    store: Arc<ShardedStore>,
    /// Drops cached responses showing a count once it changed (when configured).
    invalidator: Option<CacheInvalidator>,
}

/// One change to one shard.
enum Effect {
    /// `column += delta` on the counters row of `id`.
    Count {
        table: &'static str,
        key: &'static str,
        id: i64,
        column: &'static str,
        other: &'static str,
        delta: i64,
    },
    /// The followers mirror of a follow (unless a tombstone says it was undone already).
    Mirror(follower::Model),
    /// Drops the mirror, leaving a tombstone for a follow that arrives later.
    Unmirror(i64),
}

impl Counters {
    pub fn new(store: Arc<ShardedStore>) -> Self {
        Self {
            store,
            invalidator: None,
        }
    }

    /// Also tells the routers' caches about every count it changes.
    pub fn with_invalidator(mut self, invalidator: CacheInvalidator) -> Self {
        self.invalidator = Some(invalidator);
        self
    }

    /// Invalidates `tags` (after the projection changed, so no cache refills the old count
    /// from it); runs again on a redelivery, which is harmless.
    async fn invalidate(&self, tags: Vec<String>) -> Result<(), String> {
        match &self.invalidator {
            Some(invalidator) => invalidator.invalidate(&tags).await,
            None => Ok(()),
        }
    }

    /// Applies `effect` on `shard` in one transaction with the processed-event row
    /// `effect_id`; a duplicate does nothing.
    async fn once(&self, shard: usize, effect_id: &str, effect: Effect) -> Result<(), String> {
        let fail = |e: sea_orm::DbErr| format!("shard {shard}: {e}");
        if shard >= self.store.shard_count() {
            return Err(format!("shard {shard} does not exist here"));
        }
        let txn = self.store.primary(shard).begin().await.map_err(fail)?;
        if !processed::first_time(&txn, GROUP, effect_id)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(());
        }
        match effect {
            Effect::Count {
                table,
                key,
                id,
                column,
                other,
                delta,
            } => bump(&txn, table, key, id, column, other, delta)
                .await
                .map_err(fail)?,
            Effect::Mirror(row) => {
                let undone = processed::seen(&txn, TOMBSTONES, &row.id.to_string())
                    .await
                    .map_err(|e| e.to_string())?;
                if !undone {
                    let inserted = follower::Entity::insert(follower::ActiveModel {
                        id: Set(row.id),
                        followee_id: Set(row.followee_id),
                        follower_id: Set(row.follower_id),
                        created_at: Set(row.created_at),
                    })
                    .exec_without_returning(&txn)
                    .await;
                    match inserted {
                        Ok(_) => {}
                        Err(e) if is_unique_violation(&e) => {}
                        Err(e) => return Err(fail(e)),
                    }
                }
            }
            Effect::Unmirror(follow_id) => {
                follower::Entity::delete_by_id(follow_id)
                    .exec(&txn)
                    .await
                    .map_err(fail)?;
                processed::first_time(&txn, TOMBSTONES, &follow_id.to_string())
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        txn.commit().await.map_err(fail)
    }
}

fn post_count(post_id: i64, column: &'static str, delta: i64) -> Effect {
    Effect::Count {
        table: "post_counters",
        key: "post_id",
        id: post_id,
        column,
        other: if column == "likes" {
            "comments"
        } else {
            "likes"
        },
        delta,
    }
}

fn user_count(user_id: i64, column: &'static str, delta: i64) -> Effect {
    Effect::Count {
        table: "user_counters",
        key: "user_id",
        id: user_id,
        column,
        other: if column == "followers" {
            "following"
        } else {
            "followers"
        },
        delta,
    }
}

#[async_trait::async_trait]
impl Handler for Counters {
    fn group(&self) -> &'static str {
        GROUP
    }

    fn domains(&self) -> &'static [&'static str] {
        &[crate::NAME]
    }

    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        let delta = match event.kind.as_str() {
            kinds::POST_LIKED | kinds::COMMENT_ADDED | kinds::USER_FOLLOWED => 1,
            kinds::POST_UNLIKED | kinds::COMMENT_DELETED | kinds::USER_UNFOLLOWED => -1,
            // Not ours to count.
            _ => return Ok(()),
        };
        match event.kind.as_str() {
            kinds::POST_LIKED | kinds::POST_UNLIKED => {
                let post = event.id_field("post_id")?;
                self.once(shard_of(post), &event.id, post_count(post, "likes", delta))
                    .await?;
                Ok(self
                    .invalidate(vec![format!("{POST_ENGAGEMENT}:{post}")])
                    .await?)
            }
            kinds::COMMENT_ADDED | kinds::COMMENT_DELETED => {
                let post = event.id_field("post_id")?;
                self.once(
                    shard_of(post),
                    &event.id,
                    post_count(post, "comments", delta),
                )
                .await?;
                Ok(self
                    .invalidate(vec![format!("{POST_ENGAGEMENT}:{post}")])
                    .await?)
            }
            _ => {
                let follow_id = event.id_field("follow_id")?;
                let follower_id = event.id_field("follower_id")?;
                let followee_id = event.id_field("followee_id")?;
                // Three effects on up to two shards, each idempotent on its own.
                self.once(
                    shard_of(follower_id),
                    &format!("{}/following", event.id),
                    user_count(follower_id, "following", delta),
                )
                .await?;
                self.once(
                    shard_of(followee_id),
                    &format!("{}/followers", event.id),
                    user_count(followee_id, "followers", delta),
                )
                .await?;
                let mirror = if delta > 0 {
                    Effect::Mirror(follower::Model {
                        id: follow_id,
                        followee_id,
                        follower_id,
                        created_at: event.occurred_at,
                    })
                } else {
                    Effect::Unmirror(follow_id)
                };
                self.once(
                    shard_of(followee_id),
                    &format!("{}/mirror", event.id),
                    mirror,
                )
                .await?;
                Ok(self
                    .invalidate(vec![
                        format!("{USER_FOLLOWS}:{follower_id}"),
                        format!("{USER_FOLLOWS}:{followee_id}"),
                    ])
                    .await?)
            }
        }
    }
}

/// An upsert both SQLite and PostgreSQL read: the first delta creates the row.
async fn bump(
    txn: &DatabaseTransaction,
    table: &str,
    key: &str,
    id: i64,
    column: &str,
    other: &str,
    delta: i64,
) -> Result<(), sea_orm::DbErr> {
    let backend = txn.get_database_backend();
    let sql = format!(
        "INSERT INTO {table} ({key}, {column}, {other}) VALUES ({}, {}, 0) \
         ON CONFLICT ({key}) DO UPDATE SET {column} = {table}.{column} + excluded.{column}",
        placeholder(backend, 1),
        placeholder(backend, 2),
    );
    txn.execute_raw(Statement::from_sql_and_values(
        backend,
        sql,
        [id.into(), delta.into()],
    ))
    .await?;
    Ok(())
}

/// A counter an event moves: table, column, and the id (when the event names it).
type Counted = (&'static str, &'static str, Option<i64>);

/// What a replay found: a projected count that differs from the one the event history gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// `post_counters.likes`, `user_counters.followers`, ...
    pub counter: String,
    pub id: i64,
    pub live: i64,
    pub replayed: i64,
}

/// The result of [`replay`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// Events read from the outboxes.
    pub events: usize,
    /// Counters compared.
    pub compared: usize,
    pub differences: Vec<Difference>,
}

/// Rebuilds the counts from the event history (every shard's outbox, sent or not: it is kept
/// in full, unlike a trimmed stream) and compares them with the live projections. With
/// `apply`, the live counters are set to the replayed values.
pub async fn replay(store: &ShardedStore, apply: bool) -> Result<Replay, String> {
    use std::collections::BTreeMap;

    use sea_orm::QueryOrder;
    use switchyard_kit::events::outbox::entity as outbox;

    use crate::entities::{post_counter, user_counter};

    let fail = |e: sea_orm::DbErr| e.to_string();
    // (table, column, id) -> count
    let mut replayed: BTreeMap<(&'static str, &'static str, i64), i64> = BTreeMap::new();
    let mut report = Replay::default();
    for shard in 0..store.shard_count() {
        let rows = outbox::Entity::find()
            .order_by_asc(outbox::Column::Seq)
            .all(store.primary(shard))
            .await
            .map_err(fail)?;
        for row in rows {
            report.events += 1;
            let data: serde_json::Value = serde_json::from_str(&row.data).unwrap_or_default();
            let id = |name: &str| data.get(name).and_then(serde_json::Value::as_i64);
            let (delta, effects): (i64, Vec<Counted>) = match row.kind.as_str() {
                kinds::POST_LIKED => (1, vec![("post_counters", "likes", id("post_id"))]),
                kinds::POST_UNLIKED => (-1, vec![("post_counters", "likes", id("post_id"))]),
                kinds::COMMENT_ADDED => (1, vec![("post_counters", "comments", id("post_id"))]),
                kinds::COMMENT_DELETED => (-1, vec![("post_counters", "comments", id("post_id"))]),
                kinds::USER_FOLLOWED | kinds::USER_UNFOLLOWED => (
                    if row.kind == kinds::USER_FOLLOWED {
                        1
                    } else {
                        -1
                    },
                    vec![
                        ("user_counters", "following", id("follower_id")),
                        ("user_counters", "followers", id("followee_id")),
                    ],
                ),
                _ => continue,
            };
            for (table, column, target) in effects {
                if let Some(target) = target {
                    *replayed.entry((table, column, target)).or_default() += delta;
                }
            }
        }
    }
    // Every live counter too: one the history does not explain must be zero.
    for shard in 0..store.shard_count() {
        let conn = store.primary(shard);
        for row in post_counter::Entity::find().all(conn).await.map_err(fail)? {
            replayed
                .entry(("post_counters", "likes", row.post_id))
                .or_default();
            replayed
                .entry(("post_counters", "comments", row.post_id))
                .or_default();
        }
        for row in user_counter::Entity::find().all(conn).await.map_err(fail)? {
            replayed
                .entry(("user_counters", "followers", row.user_id))
                .or_default();
            replayed
                .entry(("user_counters", "following", row.user_id))
                .or_default();
        }
    }
    for ((table, column, id), count) in replayed {
        report.compared += 1;
        let conn = store.primary(shard_of(id));
        let live = match table {
            "post_counters" => post_counter::Entity::find_by_id(id)
                .one(conn)
                .await
                .map_err(fail)?
                .map_or(0, |r| {
                    if column == "likes" {
                        r.likes
                    } else {
                        r.comments
                    }
                }),
            _ => user_counter::Entity::find_by_id(id)
                .one(conn)
                .await
                .map_err(fail)?
                .map_or(0, |r| {
                    if column == "followers" {
                        r.followers
                    } else {
                        r.following
                    }
                }),
        };
        if live != count {
            if apply {
                let txn = conn.begin().await.map_err(fail)?;
                let (key, other) = match table {
                    "post_counters" => (
                        "post_id",
                        if column == "likes" {
                            "comments"
                        } else {
                            "likes"
                        },
                    ),
                    _ => (
                        "user_id",
                        if column == "followers" {
                            "following"
                        } else {
                            "followers"
                        },
                    ),
                };
                bump(&txn, table, key, id, column, other, count - live)
                    .await
                    .map_err(fail)?;
                txn.commit().await.map_err(fail)?;
            }
            report.differences.push(Difference {
                counter: format!("{table}.{column}"),
                id,
                live,
                replayed: count,
            });
        }
    }
    Ok(report)
}
