//! Reads and writes behind the notifications API: each one reads or changes one user's rows
//! on that user's shard, in one statement or one transaction.

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, TransactionTrait,
};
use switchyard_kit::id::shard_of;
use switchyard_kit::page::{Page, PageRequest};
use switchyard_kit::store::is_unique_violation;
use switchyard_kit::{ApiError, ApiResult, Session, ShardedStore};

use crate::entities::{device, inbox_state, notification, preference};
use crate::kind::{Kind, Platform};

/// Devices one user may have registered; registering one more replaces the least recently
/// registered (a user who reinstalls the app every week does not grow a list forever).
pub const MAX_DEVICES_PER_USER: u64 = 10;

/// Ids `markRead` accepts at once (a page of the inbox is at most 100).
pub const MAX_MARK_READ: usize = 100;

/// Refuses more than [`MAX_MARK_READ`] ids (checked before they are parsed).
pub fn check_mark_read(count: usize) -> ApiResult<()> {
    if count > MAX_MARK_READ {
        return Err(ApiError::bad_input(format!(
            "at most {MAX_MARK_READ} ids at once, got {count}"
        )));
    }
    Ok(())
}

/// Registers `token` for push to `user_id`. A token is one app install: registering it again
/// refreshes it, and registering it as another user (someone else signed in on the device)
/// moves it, so the previous user's notifications stop reaching that phone.
pub async fn register_device(
    session: &Session,
    user_id: i64,
    platform: Platform,
    token: &str,
) -> ApiResult<device::Model> {
    let token = platform.check_token(token).map_err(ApiError::bad_input)?;
    let home = shard_of(user_id);
    let store = session.store();
    // The token on any other shard belonged to a user there: it moves here.
    for shard in (0..store.shard_count()).filter(|s| *s != home) {
        device::Entity::delete_many()
            .filter(device::Column::Token.eq(token.as_str()))
            .exec(session.writer(shard))
            .await?;
    }
    let conn = session.writer(home);
    for _ in 0..3 {
        let txn = conn.begin().await?;
        let now = Utc::now();
        if let Some(found) = device::Entity::find()
            .filter(device::Column::Token.eq(token.as_str()))
            .one(&txn)
            .await?
        {
            let model = device::Model {
                user_id,
                platform: platform.as_str().to_owned(),
                updated_at: now,
                ..found
            };
            device::Entity::update(device::ActiveModel::from(model.clone()).reset_all())
                .exec(&txn)
                .await?;
            txn.commit().await?;
            return Ok(model);
        }
        let registered = device::Entity::find()
            .filter(device::Column::UserId.eq(user_id))
            .count(&txn)
            .await?;
        if registered >= MAX_DEVICES_PER_USER {
            let oldest: Vec<i64> = device::Entity::find()
                .filter(device::Column::UserId.eq(user_id))
                .order_by_asc(device::Column::UpdatedAt)
                .limit(registered + 1 - MAX_DEVICES_PER_USER)
                .all(&txn)
                .await?
                .into_iter()
                .map(|d| d.id)
                .collect();
            device::Entity::delete_many()
                .filter(device::Column::Id.is_in(oldest))
                .exec(&txn)
                .await?;
        }
        let model = device::Model {
            id: store.next_id(home),
            user_id,
            platform: platform.as_str().to_owned(),
            token: token.clone(),
            created_at: now,
            updated_at: now,
        };
        match device::Entity::insert(device::ActiveModel::from(model.clone()).reset_all())
            .exec_without_returning(&txn)
            .await
        {
            Ok(_) => {
                txn.commit().await?;
                return Ok(model);
            }
            // The same token registered concurrently (or an id clash): look again.
            Err(err) if is_unique_violation(&err) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(ApiError::Conflict(
        "the device was registered concurrently; try again".into(),
    ))
}

/// Removes one of the user's devices (signing out on it); false when it was not theirs.
pub async fn unregister_device(session: &Session, user_id: i64, token: &str) -> ApiResult<bool> {
    if token.len() > 4096 {
        return Ok(false);
    }
    let deleted = device::Entity::delete_many()
        .filter(device::Column::UserId.eq(user_id))
        .filter(device::Column::Token.eq(token.trim()))
        .exec(session.writer(shard_of(user_id)))
        .await?;
    Ok(deleted.rows_affected > 0)
}

/// A user's devices (what a push goes to).
pub async fn devices_of(
    conn: &impl ConnectionTrait,
    user_id: i64,
) -> Result<Vec<device::Model>, sea_orm::DbErr> {
    device::Entity::find()
        .filter(device::Column::UserId.eq(user_id))
        .order_by_asc(device::Column::Id)
        .all(conn)
        .await
}

/// Forgets a token the push service says is dead.
pub async fn prune_device(
    store: &ShardedStore,
    device: &device::Model,
) -> Result<(), sea_orm::DbErr> {
    device::Entity::delete_by_id(device.id)
        .exec(store.primary(shard_of(device.user_id)))
        .await?;
    Ok(())
}

/// A page of the user's inbox, newest first.
pub async fn inbox(
    session: &Session,
    user_id: i64,
    page: PageRequest,
) -> ApiResult<Page<notification::Model>> {
    let mut query = notification::Entity::find()
        .filter(notification::Column::RecipientId.eq(user_id))
        .order_by_desc(notification::Column::Id)
        .limit(page.fetch_limit());
    if let Some(before) = page.before_id {
        query = query.filter(notification::Column::Id.lt(before));
    }
    let rows = session
        .read_with(shard_of(user_id), query, |conn, query| async move {
            query.all(&conn).await
        })
        .await?;
    Ok(Page::from_overfetch(rows, page.first))
}

pub async fn unread_count(
    conn: &impl ConnectionTrait,
    user_id: i64,
) -> Result<i64, sea_orm::DbErr> {
    Ok(inbox_state::Entity::find_by_id(user_id)
        .one(conn)
        .await?
        .map_or(0, |s| s.unread.max(0)))
}

/// Marks some of the user's notifications read (ids that are not theirs change nothing);
/// answers the unread count after.
pub async fn mark_read(session: &Session, user_id: i64, ids: &[i64]) -> ApiResult<i64> {
    check_mark_read(ids.len())?;
    let txn = session.writer(shard_of(user_id)).begin().await?;
    let updated = notification::Entity::update_many()
        .col_expr(notification::Column::ReadAt, Expr::value(Utc::now()))
        .filter(notification::Column::RecipientId.eq(user_id))
        .filter(notification::Column::Id.is_in(ids.to_vec()))
        .filter(notification::Column::ReadAt.is_null())
        .exec(&txn)
        .await?;
    let unread = add_unread(&txn, user_id, -(updated.rows_affected as i64)).await?;
    txn.commit().await?;
    Ok(unread)
}

/// Marks the whole inbox read.
pub async fn mark_all_read(session: &Session, user_id: i64) -> ApiResult<i64> {
    let txn = session.writer(shard_of(user_id)).begin().await?;
    notification::Entity::update_many()
        .col_expr(notification::Column::ReadAt, Expr::value(Utc::now()))
        .filter(notification::Column::RecipientId.eq(user_id))
        .filter(notification::Column::ReadAt.is_null())
        .exec(&txn)
        .await?;
    inbox_state::Entity::update_many()
        .col_expr(inbox_state::Column::Unread, Expr::value(0i64))
        .filter(inbox_state::Column::UserId.eq(user_id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(0)
}

/// Moves the unread count by `delta` (never below zero) in the caller's transaction; answers
/// the new count.
pub async fn add_unread(
    conn: &impl ConnectionTrait,
    user_id: i64,
    delta: i64,
) -> Result<i64, sea_orm::DbErr> {
    let current = inbox_state::Entity::find_by_id(user_id).one(conn).await?;
    let unread = (current.as_ref().map_or(0, |s| s.unread) + delta).max(0);
    let row = inbox_state::ActiveModel {
        user_id: Set(user_id),
        unread: Set(unread),
    };
    if current.is_some() {
        inbox_state::Entity::update(row).exec(conn).await?;
    } else {
        inbox_state::Entity::insert(row)
            .exec_without_returning(conn)
            .await?;
    }
    Ok(unread)
}

/// Whether each kind pushes for the user (every kind, in [`Kind::ALL`] order).
pub async fn preferences(
    conn: &impl ConnectionTrait,
    user_id: i64,
) -> Result<Vec<(Kind, bool)>, sea_orm::DbErr> {
    let rows = preference::Entity::find()
        .filter(preference::Column::UserId.eq(user_id))
        .all(conn)
        .await?;
    Ok(Kind::ALL
        .into_iter()
        .map(|kind| {
            let push = rows
                .iter()
                .find(|r| r.kind == kind.as_str())
                .is_none_or(|r| r.push);
            (kind, push)
        })
        .collect())
}

pub async fn set_preference(
    session: &Session,
    user_id: i64,
    kind: Kind,
    push: bool,
) -> ApiResult<()> {
    let txn = session.writer(shard_of(user_id)).begin().await?;
    preference::Entity::delete_by_id((user_id, kind.as_str().to_owned()))
        .exec(&txn)
        .await?;
    preference::Entity::insert(preference::ActiveModel {
        user_id: Set(user_id),
        kind: Set(kind.as_str().to_owned()),
        push: Set(push),
    })
    .exec_without_returning(&txn)
    .await?;
    txn.commit().await?;
    Ok(())
}
