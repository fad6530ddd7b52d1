//! Reads and writes of users and handles across shards.

use std::collections::HashMap;

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set,
    TransactionTrait,
};
use switchyard_kit::events::kinds;
use switchyard_kit::events::outbox::{self, NewEvent};
use switchyard_kit::id::shard_of;
use switchyard_kit::store::{group_by_shard, is_unique_violation};
use switchyard_kit::{ApiError, ApiResult, Session, validate};

use crate::entities::{credential, handle, user};

/// Handles: 3–30 characters of `a-z`, `0-9` and `_`, compared case-insensitively.
pub fn canonical_handle(raw: &str) -> ApiResult<String> {
    let handle = raw.trim().to_ascii_lowercase();
    let len = handle.chars().count();
    if !(3..=30).contains(&len) {
        return Err(ApiError::bad_input(format!(
            "`handle` must be 3 to 30 characters, got {len}"
        )));
    }
    if !handle
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(ApiError::bad_input(
            "`handle` may only contain letters, digits and underscores",
        ));
    }
    Ok(handle)
}

pub fn display_name(raw: &str) -> ApiResult<String> {
    validate::text("displayName", raw, 1, 64)
}

pub fn bio(raw: &str) -> ApiResult<String> {
    validate::text("bio", raw, 0, 280)
}

pub fn avatar_url(raw: &str) -> ApiResult<String> {
    validate::url("avatarUrl", raw)
}

/// A validated new user.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub handle: String,
    pub display_name: String,
    pub bio: String,
    pub avatar_url: Option<String>,
}

/// Creates a user on its handle's shard: the handle claim and the profile in one transaction.
pub async fn create_user(session: &Session, new: NewUser) -> ApiResult<user::Model> {
    create_user_with(session, new, None).await
}

/// What a password sign-up stores next to the profile.
#[derive(Debug, Clone)]
pub struct NewCredential {
    pub email: String,
    pub password_hash: String,
}

/// Like [`create_user`], with sign-in credentials (built from the new id) in the same
/// transaction, so an account never exists without them or the other way round.
pub async fn create_user_with(
    session: &Session,
    new: NewUser,
    credential: Option<&NewCredential>,
) -> ApiResult<user::Model> {
    let store = session.store();
    let shard = store.shard_for_key(new.handle.as_bytes());
    let conn = session.writer(shard);
    // A fresh id collides only with another replica minting on this shard in the same
    // millisecond with the same sequence; the primary key catches that and we mint again.
    for _ in 0..3 {
        let now = Utc::now();
        let model = user::Model {
            id: store.next_id(shard),
            handle: new.handle.clone(),
            display_name: new.display_name.clone(),
            bio: new.bio.clone(),
            avatar_url: new.avatar_url.clone(),
            created_at: now,
            updated_at: now,
        };
        let txn = conn.begin().await?;
        let claim = handle::ActiveModel {
            handle: Set(new.handle.clone()),
            user_id: Set(model.id),
        };
        if let Err(err) = claim.insert(&txn).await {
            txn.rollback().await?;
            return Err(if is_unique_violation(&err) {
                handle_taken(&new.handle)
            } else {
                err.into()
            });
        }
        match user::ActiveModel::from(model.clone())
            .reset_all()
            .insert(&txn)
            .await
        {
            Ok(_) => {
                if let Some(c) = credential {
                    credential::ActiveModel {
                        user_id: Set(model.id),
                        email: Set(c.email.clone()),
                        password_hash: Set(c.password_hash.clone()),
                        totp_secret: Set(None),
                        totp_enabled: Set(false),
                        totp_last_step: Set(None),
                        recovery_codes: Set("[]".into()),
                        created_at: Set(now),
                        failed_attempts: Set(0),
                        last_failed_at: Set(None),
                        locked_until: Set(None),
                    }
                    .insert(&txn)
                    .await?;
                }
                txn.commit().await?;
                return Ok(model);
            }
            Err(err) if is_unique_violation(&err) => txn.rollback().await?,
            Err(err) => return Err(err.into()),
        }
    }
    Err(ApiError::Conflict(
        "could not allocate an id; try again".into(),
    ))
}

fn handle_taken(handle: &str) -> ApiError {
    ApiError::Conflict(format!("handle {handle:?} is taken"))
}

/// Fields to change; `None` leaves a field alone, `Some(None)` clears an optional one.
#[derive(Debug, Default, Clone)]
pub struct ProfileChange {
    pub handle: Option<String>,
    pub display_name: Option<String>,
    pub bio: Option<String>,
    pub avatar_url: Option<Option<String>>,
}

/// Updates a profile. A handle change claims the new handle on its shard first, so two users
/// racing for one handle cannot both win; the old claim is released afterwards.
pub async fn update_profile(
    session: &Session,
    id: i64,
    change: ProfileChange,
) -> ApiResult<user::Model> {
    let shard = shard_of(id);
    let conn = session.writer(shard);
    let current = user::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user with id {id}")))?;

    let new_handle = change.handle.filter(|h| *h != current.handle);
    if let Some(handle) = &new_handle {
        claim_handle(session, handle, id).await?;
    }

    let mut active: user::ActiveModel = current.clone().into();
    if let Some(handle) = &new_handle {
        active.handle = Set(handle.clone());
    }
    if let Some(name) = change.display_name {
        active.display_name = Set(name);
    }
    if let Some(bio) = change.bio {
        active.bio = Set(bio);
    }
    if let Some(url) = change.avatar_url {
        active.avatar_url = Set(url);
    }
    active.updated_at = Set(Utc::now());
    // The change and its event in one transaction: workers (cache invalidation, anything
    // that shows names) learn of every profile change, including ones made off the router.
    let written = async {
        let txn = conn.begin().await?;
        let model = active.update(&txn).await?;
        let changed: Vec<&str> = [
            ("handle", new_handle.is_some()),
            ("display_name", model.display_name != current.display_name),
            ("bio", model.bio != current.bio),
            ("avatar_url", model.avatar_url != current.avatar_url),
        ]
        .into_iter()
        .filter_map(|(field, changed)| changed.then_some(field))
        .collect();
        outbox::record(
            &txn,
            NewEvent::new(
                kinds::PROFILE_UPDATED,
                format!("User:{id}"),
                serde_json::json!({"user_id": id, "fields": changed}),
            ),
        )
        .await?;
        txn.commit().await?;
        Ok::<_, ApiError>(model)
    };
    let updated = match written.await {
        Ok(model) => model,
        Err(err) => {
            if let Some(handle) = &new_handle {
                release_handle(session, handle, id).await;
            }
            return Err(err);
        }
    };
    if new_handle.is_some() {
        release_handle(session, &current.handle, id).await;
    }
    Ok(updated)
}

async fn claim_handle(session: &Session, handle: &str, user_id: i64) -> ApiResult<()> {
    let shard = session.store().shard_for_key(handle.as_bytes());
    let claim = handle::ActiveModel {
        handle: Set(handle.to_owned()),
        user_id: Set(user_id),
    };
    match claim.insert(session.writer(shard)).await {
        Ok(_) => Ok(()),
        Err(err) if is_unique_violation(&err) => Err(handle_taken(handle)),
        Err(err) => Err(err.into()),
    }
}

/// Best effort: a claim left behind only keeps that handle reserved; lookups check that the
/// user still has the handle, so it never resolves to the wrong user.
async fn release_handle(session: &Session, handle: &str, user_id: i64) {
    let shard = session.store().shard_for_key(handle.as_bytes());
    let result = handle::Entity::delete_many()
        .filter(handle::Column::Handle.eq(handle))
        .filter(handle::Column::UserId.eq(user_id))
        .exec(session.writer(shard))
        .await;
    if let Err(err) = result {
        tracing::warn!(%handle, user_id, error = %err, "could not release old handle claim");
    }
}

/// Users by id: one `WHERE id IN (...)` per shard touched, all shards concurrently.
pub async fn users_by_ids(session: &Session, ids: &[i64]) -> ApiResult<HashMap<i64, user::Model>> {
    let rows = session
        .per_shard_of_ids(ids, |conn: DatabaseConnection, _, ids| async move {
            user::Entity::find()
                .filter(user::Column::Id.is_in(ids))
                .all(&conn)
                .await
        })
        .await?;
    Ok(rows.into_iter().map(|u| (u.id, u)).collect())
}

/// Handle claims by canonical handle: one query per directory shard touched.
pub async fn user_ids_by_handles(
    session: &Session,
    handles: &[String],
) -> ApiResult<HashMap<String, i64>> {
    let store = session.store();
    let groups = group_by_shard(
        handles.iter().cloned(),
        |h| store.shard_for_key(h.as_bytes()),
        store.shard_count(),
    );
    let rows = session
        .per_shard(groups, |conn, _, handles| async move {
            handle::Entity::find()
                .filter(handle::Column::Handle.is_in(handles))
                .all(&conn)
                .await
        })
        .await?;
    Ok(rows.into_iter().map(|h| (h.handle, h.user_id)).collect())
}

/// Whether any shard holds a user (for "first start" checks).
pub async fn has_users(store: &switchyard_kit::ShardedStore) -> ApiResult<bool> {
    for shard in store.shards() {
        if user::Entity::find().one(&shard.primary).await?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}
