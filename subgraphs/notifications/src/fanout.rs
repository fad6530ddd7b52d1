//! The notifications worker (`switchyard worker notifications`): turns posts' and
//! engagement's events into inbox entries, and each entry that should reach a phone into a
//! `PushRequested` event (the push queue) in the same transaction.
//!
//! - A like, comment or follow notifies one user: one transaction on their shard, idempotent
//!   by the event's id. While an entry is unread, more of the same (likes of one post, new
//!   followers) collapse into it, and push again only once the collapse window has passed
//!   since the last push: ten likes in a minute are one entry and one push.
//! - A new post notifies every follower of its author. The audience is paged (`batch` per
//!   page) and each page is one transaction per recipient shard, never one transaction for
//!   the whole audience. A redelivery after a crash mid-way redoes the pages; the unique
//!   `(recipient, source event)` index makes the pages that were done insert nothing.
//!
//! Two projections it keeps for itself: post authors and the audience of each user.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};
use serde_json::json;
use switchyard_kit::ShardedStore;
use switchyard_kit::events::outbox::{self, NewEvent};
use switchyard_kit::events::worker::{Handler, HandlerError};
use switchyard_kit::events::{Event, kinds, processed};
use switchyard_kit::id::{shard_of, timestamp_ms_of};
use switchyard_kit::store::is_unique_violation;

use crate::entities::{audience, notification, post_author};
use crate::kind::Kind;
use crate::repo::add_unread;
use crate::worker_error;

/// The consumer group, and its name in `processed_events`.
pub const GROUP: &str = "notifications";
/// Where unfollows seen before their follow are remembered.
const TOMBSTONES: &str = "notifications:unfollowed";

#[derive(Debug, Clone)]
pub struct FanoutOptions {
    /// Followers notified per transaction of a new post's fan-out.
    pub batch: u64,
    /// More of the same within this long after a push collapse into it without pushing.
    pub collapse_window: Duration,
    /// A like of a post whose author is not known yet is retried (posts' events may be
    /// behind) until the post id is this old; then it is a post we will never know (deleted,
    /// or an id that never existed) and the like notifies no one.
    pub unknown_post_grace: Duration,
}

impl Default for FanoutOptions {
    fn default() -> Self {
        Self {
            batch: 500,
            collapse_window: Duration::from_secs(60),
            unknown_post_grace: Duration::from_secs(600),
        }
    }
}

pub struct Fanout {
    store: Arc<ShardedStore>,
    options: FanoutOptions,
}

/// One inbox entry to write.
struct Entry<'a> {
    recipient: i64,
    kind: Kind,
    group_key: String,
    actor: i64,
    subject: Option<i64>,
    event: &'a Event,
}

impl Fanout {
    pub fn new(store: Arc<ShardedStore>, options: FanoutOptions) -> Self {
        Self { store, options }
    }

    fn check_shard(&self, shard: usize) -> Result<(), HandlerError> {
        if shard >= self.store.shard_count() {
            return Err(format!("shard {shard} does not exist here").into());
        }
        Ok(())
    }

    async fn begin(&self, shard: usize) -> Result<DatabaseTransaction, HandlerError> {
        self.check_shard(shard)?;
        self.store
            .primary(shard)
            .begin()
            .await
            .map_err(worker_error)
    }

    /// The author of `post`; `None` when it will never be known.
    async fn author_of(&self, post: i64) -> Result<Option<i64>, HandlerError> {
        self.check_shard(shard_of(post))?;
        let found = post_author::Entity::find_by_id(post)
            .one(self.store.primary(shard_of(post)))
            .await
            .map_err(worker_error)?;
        if let Some(found) = found {
            return Ok(Some(found.author_id));
        }
        let age_ms = Utc::now().timestamp_millis() - timestamp_ms_of(post);
        if age_ms > self.options.unknown_post_grace.as_millis() as i64 {
            tracing::debug!(
                post,
                "a like or comment of a post we do not know; no one to notify"
            );
            return Ok(None);
        }
        Err(format!("the author of post {post} is not known yet").into())
    }

    /// Writes (or collapses) one entry, once per event.
    async fn notify(&self, entry: Entry<'_>) -> Result<(), HandlerError> {
        if entry.recipient == entry.actor {
            return Ok(());
        }
        let shard = shard_of(entry.recipient);
        let txn = self.begin(shard).await?;
        let once = format!("{}/inbox", entry.event.id);
        if !processed::first_time(&txn, GROUP, &once)
            .await
            .map_err(worker_error)?
        {
            return Ok(());
        }
        let at = entry.event.occurred_at;
        let open = notification::Entity::find()
            .filter(notification::Column::RecipientId.eq(entry.recipient))
            .filter(notification::Column::GroupKey.eq(entry.group_key.as_str()))
            .filter(notification::Column::ReadAt.is_null())
            .order_by_desc(notification::Column::Id)
            .one(&txn)
            .await
            .map_err(worker_error)?;
        let window = chrono::Duration::from_std(self.options.collapse_window).unwrap_or_default();
        let (row, push) = match open {
            Some(open) => {
                let push = at - open.pushed_at >= window;
                let row = notification::Model {
                    actor_id: entry.actor,
                    actor_count: open.actor_count + 1,
                    updated_at: at.max(open.updated_at),
                    pushed_at: if push { at } else { open.pushed_at },
                    ..open
                };
                notification::Entity::update(
                    notification::ActiveModel::from(row.clone()).reset_all(),
                )
                .exec(&txn)
                .await
                .map_err(worker_error)?;
                (row, push)
            }
            None => {
                let row = new_row(&self.store, &entry, shard, at);
                notification::Entity::insert(
                    notification::ActiveModel::from(row.clone()).reset_all(),
                )
                .exec_without_returning(&txn)
                .await
                .map_err(worker_error)?;
                add_unread(&txn, entry.recipient, 1)
                    .await
                    .map_err(worker_error)?;
                (row, true)
            }
        };
        if push {
            request_push(&txn, &row).await?;
        }
        txn.commit().await.map_err(worker_error)
    }

    /// Notifies every follower of `author` of `post`, a page of the audience at a time.
    async fn fan_out(&self, event: &Event, author: i64, post: i64) -> Result<(), HandlerError> {
        let home = shard_of(author);
        self.check_shard(home)?;
        let mut after = 0i64;
        loop {
            let page = audience::Entity::find()
                .filter(audience::Column::FolloweeId.eq(author))
                .filter(audience::Column::FollowId.gt(after))
                .order_by_asc(audience::Column::FollowId)
                .limit(self.options.batch.max(1))
                .all(self.store.primary(home))
                .await
                .map_err(worker_error)?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = last.follow_id;
            let full = page.len() as u64 == self.options.batch.max(1);
            let mut by_shard: BTreeMap<usize, Vec<i64>> = BTreeMap::new();
            for row in page {
                by_shard
                    .entry(shard_of(row.follower_id))
                    .or_default()
                    .push(row.follower_id);
            }
            for (shard, recipients) in by_shard {
                let txn = self.begin(shard).await?;
                for recipient in recipients {
                    let entry = Entry {
                        recipient,
                        kind: Kind::Post,
                        group_key: format!("POST:{post}"),
                        actor: author,
                        subject: Some(post),
                        event,
                    };
                    let row = new_row(&self.store, &entry, shard, event.occurred_at);
                    let inserted = notification::Entity::insert(
                        notification::ActiveModel::from(row.clone()).reset_all(),
                    )
                    .on_conflict(
                        OnConflict::columns([
                            notification::Column::RecipientId,
                            notification::Column::Source,
                        ])
                        .do_nothing()
                        .to_owned(),
                    )
                    .exec_without_returning(&txn)
                    .await
                    .map_err(worker_error)?;
                    if inserted > 0 {
                        add_unread(&txn, recipient, 1).await.map_err(worker_error)?;
                        request_push(&txn, &row).await?;
                    }
                }
                txn.commit().await.map_err(worker_error)?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Adds a follow to the audience (unless an unfollow of it was seen first).
    async fn follow(&self, event: &Event, follow: audience::Model) -> Result<(), HandlerError> {
        let txn = self.begin(shard_of(follow.followee_id)).await?;
        let once = format!("{}/audience", event.id);
        if !processed::first_time(&txn, GROUP, &once)
            .await
            .map_err(worker_error)?
        {
            return Ok(());
        }
        let undone = processed::seen(&txn, TOMBSTONES, &follow.follow_id.to_string())
            .await
            .map_err(worker_error)?;
        if !undone {
            match audience::Entity::insert(audience::ActiveModel::from(follow).reset_all())
                .exec_without_returning(&txn)
                .await
            {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => {}
                Err(e) => return Err(worker_error(e)),
            }
        }
        txn.commit().await.map_err(worker_error)
    }

    async fn unfollow(
        &self,
        event: &Event,
        follow_id: i64,
        followee: i64,
    ) -> Result<(), HandlerError> {
        let txn = self.begin(shard_of(followee)).await?;
        let once = format!("{}/audience", event.id);
        if !processed::first_time(&txn, GROUP, &once)
            .await
            .map_err(worker_error)?
        {
            return Ok(());
        }
        audience::Entity::delete_by_id(follow_id)
            .exec(&txn)
            .await
            .map_err(worker_error)?;
        processed::first_time(&txn, TOMBSTONES, &follow_id.to_string())
            .await
            .map_err(worker_error)?;
        txn.commit().await.map_err(worker_error)
    }

    async fn post_created(&self, post: i64, author: i64) -> Result<(), HandlerError> {
        self.check_shard(shard_of(post))?;
        let inserted = post_author::Entity::insert(post_author::ActiveModel {
            post_id: Set(post),
            author_id: Set(author),
        })
        .on_conflict(
            OnConflict::column(post_author::Column::PostId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(self.store.primary(shard_of(post)))
        .await;
        inserted.map(|_| ()).map_err(worker_error)
    }
}

fn new_row(
    store: &ShardedStore,
    entry: &Entry<'_>,
    shard: usize,
    at: DateTime<Utc>,
) -> notification::Model {
    notification::Model {
        id: store.next_id(shard),
        recipient_id: entry.recipient,
        kind: entry.kind.as_str().to_owned(),
        group_key: entry.group_key.clone(),
        actor_id: entry.actor,
        actor_count: 1,
        subject_id: entry.subject,
        source: entry.event.id.clone(),
        created_at: at,
        updated_at: at,
        pushed_at: at,
        read_at: None,
    }
}

/// Queues a push of `row` (the notifications outbox, in the transaction that wrote it).
async fn request_push(
    txn: &DatabaseTransaction,
    row: &notification::Model,
) -> Result<(), HandlerError> {
    outbox::record(
        txn,
        NewEvent::new(
            kinds::PUSH_REQUESTED,
            format!("User:{}", row.recipient_id),
            json!({
                "notification_id": row.id,
                "recipient_id": row.recipient_id,
                "kind": row.kind,
                "actor_id": row.actor_id,
                "actor_count": row.actor_count,
                "subject_id": row.subject_id,
            }),
        ),
    )
    .await
    .map_err(worker_error)
}

#[async_trait::async_trait]
impl Handler for Fanout {
    fn group(&self) -> &'static str {
        GROUP
    }

    fn domains(&self) -> &'static [&'static str] {
        &["posts", "engagement"]
    }

    async fn handle(&self, event: &Event) -> Result<(), HandlerError> {
        match event.kind.as_str() {
            kinds::POST_CREATED => {
                let post = event.id_field("post_id")?;
                let author = event.id_field("author_id")?;
                self.post_created(post, author).await?;
                self.fan_out(event, author, post).await
            }
            kinds::POST_DELETED => {
                let post = event.id_field("post_id")?;
                self.check_shard(shard_of(post))?;
                post_author::Entity::delete_by_id(post)
                    .exec(self.store.primary(shard_of(post)))
                    .await
                    .map_err(worker_error)?;
                Ok(())
            }
            kinds::POST_LIKED | kinds::COMMENT_ADDED => {
                let post = event.id_field("post_id")?;
                let (kind, actor) = if event.kind == kinds::POST_LIKED {
                    (Kind::Like, event.id_field("user_id")?)
                } else {
                    (Kind::Comment, event.id_field("author_id")?)
                };
                let Some(author) = self.author_of(post).await? else {
                    return Ok(());
                };
                self.notify(Entry {
                    recipient: author,
                    kind,
                    group_key: format!("{}:{post}", kind.as_str()),
                    actor,
                    subject: Some(post),
                    event,
                })
                .await
            }
            kinds::USER_FOLLOWED => {
                let follow = audience::Model {
                    follow_id: event.id_field("follow_id")?,
                    follower_id: event.id_field("follower_id")?,
                    followee_id: event.id_field("followee_id")?,
                };
                self.follow(event, follow.clone()).await?;
                self.notify(Entry {
                    recipient: follow.followee_id,
                    kind: Kind::Follow,
                    group_key: Kind::Follow.as_str().to_owned(),
                    actor: follow.follower_id,
                    subject: None,
                    event,
                })
                .await
            }
            kinds::USER_UNFOLLOWED => {
                let follow_id = event.id_field("follow_id")?;
                let followee = event.id_field("followee_id")?;
                self.unfollow(event, follow_id, followee).await
            }
            // Unlikes and deleted comments do not take a notification back.
            _ => Ok(()),
        }
    }
}
