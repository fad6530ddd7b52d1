//! Sign-up, sign-in (with an optional TOTP second factor), session refresh with rotation and
//! reuse detection, and sign-out.

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, Set};
use switchyard_kit::id::shard_of;
use switchyard_kit::store::is_unique_violation;
use switchyard_kit::{ApiError, ApiResult, Session, validate};

use crate::entities::{credential, email, refresh_token};
use crate::passwords;
use crate::repo::{self, NewCredential, NewUser};
use crate::tokens::{self, TokenConfig};
use crate::totp;

/// Tokens handed to a signed-in client.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub user_id: i64,
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

fn invalid_credentials() -> ApiError {
    ApiError::Refused(
        "INVALID_CREDENTIALS",
        "the sign-in name or password is wrong".into(),
    )
}

fn invalid_refresh() -> ApiError {
    ApiError::Refused(
        "INVALID_REFRESH_TOKEN",
        "the refresh token is not valid; sign in again".into(),
    )
}

/// Lower-case, 3-254 characters, one `@` with something on both sides.
pub fn canonical_email(raw: &str) -> ApiResult<String> {
    let email = validate::text("email", raw, 3, 254)?.to_ascii_lowercase();
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && !email.contains(char::is_whitespace) =>
        {
            Ok(email)
        }
        _ => Err(ApiError::bad_input("`email` is not an email address")),
    }
}

/// Creates an account: email claim on its directory shard, then user, handle claim and
/// credentials in one transaction on the user's shard.
pub async fn sign_up(
    session: &Session,
    new: NewUser,
    email_address: String,
    password: String,
    config: &TokenConfig,
) -> ApiResult<Tokens> {
    passwords::check_policy(&password)?;
    let password_hash = passwords::hash(password).await?;
    let store = session.store();
    // The user id is not known yet; claim with a placeholder and point it at the user after.
    let email_shard = store.shard_for_key(email_address.as_bytes());
    let claim = email::ActiveModel {
        email: Set(email_address.clone()),
        user_id: Set(0),
    };
    if let Err(err) = claim.insert(session.writer(email_shard)).await {
        return Err(if is_unique_violation(&err) {
            ApiError::Conflict("an account with this email already exists".into())
        } else {
            err.into()
        });
    }
    let release = || async {
        let _ = email::Entity::delete_by_id(email_address.clone())
            .exec(session.writer(email_shard))
            .await;
    };
    let credential = NewCredential {
        email: email_address.clone(),
        password_hash,
    };
    let user = match repo::create_user_with(session, new, Some(&credential)).await {
        Ok(user) => user,
        Err(err) => {
            release().await;
            return Err(err);
        }
    };
    email::Entity::update_many()
        .col_expr(email::Column::UserId, Expr::value(user.id))
        .filter(email::Column::Email.eq(email_address.as_str()))
        .exec(session.writer(email_shard))
        .await?;
    issue(session, user.id, None, config).await
}

/// Checks a sign-in. Unknown names, wrong passwords and missing users all answer the same
/// `INVALID_CREDENTIALS` after the same argon2 work, so neither errors nor timing reveal which
/// accounts exist.
pub async fn sign_in(
    session: &Session,
    login: &str,
    password: String,
    second_factor: Option<&str>,
    config: &TokenConfig,
) -> ApiResult<Tokens> {
    if password.chars().count() > 256 {
        return Err(invalid_credentials());
    }
    let user_id = lookup_login(session, login).await?;
    let credential = match user_id {
        Some(id) if shard_of(id) < session.store().shard_count() => {
            credential::Entity::find_by_id(id)
                .one(session.reader(shard_of(id)))
                .await?
        }
        _ => None,
    };
    let ok = passwords::verify(
        password,
        credential.as_ref().map(|c| c.password_hash.clone()),
    )
    .await?;
    let Some(credential) = credential.filter(|_| ok) else {
        return Err(invalid_credentials());
    };
    if credential.totp_enabled {
        let Some(code) = second_factor.map(str::trim).filter(|c| !c.is_empty()) else {
            return Err(ApiError::Refused(
                "TOTP_REQUIRED",
                "enter the code from your authenticator app".into(),
            ));
        };
        check_second_factor(session, &credential, code).await?;
    }
    issue(session, credential.user_id, None, config).await
}

async fn lookup_login(session: &Session, login: &str) -> ApiResult<Option<i64>> {
    let login = login.trim();
    if login.contains('@') {
        let Ok(address) = canonical_email(login) else {
            return Ok(None);
        };
        let shard = session.store().shard_for_key(address.as_bytes());
        Ok(email::Entity::find_by_id(address)
            .one(session.reader(shard))
            .await?
            .map(|e| e.user_id)
            .filter(|id| *id > 0))
    } else {
        let Ok(handle) = repo::canonical_handle(login) else {
            return Ok(None);
        };
        Ok(
            repo::user_ids_by_handles(session, std::slice::from_ref(&handle))
                .await?
                .remove(&handle),
        )
    }
}

async fn check_second_factor(
    session: &Session,
    credential: &credential::Model,
    code: &str,
) -> ApiResult<()> {
    let secret = credential.totp_secret.as_deref().unwrap_or_default();
    if let Some(step) = totp::accepted_step(secret, code, Utc::now().timestamp() as u64) {
        // Accepted once: the step is recorded only if it is after the last one, atomically,
        // so a replayed (or concurrently reused) code finds its step taken.
        let updated = credential::Entity::update_many()
            .col_expr(credential::Column::TotpLastStep, Expr::value(step))
            .filter(credential::Column::UserId.eq(credential.user_id))
            .filter(
                Condition::any()
                    .add(credential::Column::TotpLastStep.is_null())
                    .add(credential::Column::TotpLastStep.lt(step)),
            )
            .exec(session.writer(shard_of(credential.user_id)))
            .await?;
        if updated.rows_affected == 1 {
            return Ok(());
        }
        return Err(ApiError::Refused(
            "TOTP_CODE_REUSED",
            "this code was already used; wait for the next one".into(),
        ));
    }
    // A recovery code works once.
    let hashed = totp::hash_recovery_code(code);
    let mut codes: Vec<String> =
        serde_json::from_str(&credential.recovery_codes).unwrap_or_default();
    if let Some(position) = codes
        .iter()
        .position(|c| switchyard_kit::viewer::constant_time_eq(c.as_bytes(), hashed.as_bytes()))
    {
        codes.remove(position);
        let updated = credential::Entity::update_many()
            .col_expr(
                credential::Column::RecoveryCodes,
                Expr::value(serde_json::to_string(&codes).expect("codes serialize")),
            )
            .filter(credential::Column::UserId.eq(credential.user_id))
            .filter(credential::Column::RecoveryCodes.eq(credential.recovery_codes.as_str()))
            .exec(session.writer(shard_of(credential.user_id)))
            .await?;
        if updated.rows_affected == 1 {
            return Ok(());
        }
    }
    Err(ApiError::Refused(
        "INVALID_TOTP",
        "the code is wrong or expired".into(),
    ))
}

/// A new access token and a new refresh token in `family` (a new family for a new sign-in).
async fn issue(
    session: &Session,
    user_id: i64,
    family: Option<String>,
    config: &TokenConfig,
) -> ApiResult<Tokens> {
    let refresh = tokens::new_refresh_token(user_id);
    let now = Utc::now();
    refresh_token::ActiveModel {
        token_hash: Set(tokens::hash_token(&refresh)),
        user_id: Set(user_id),
        family: Set(family.unwrap_or_else(tokens::new_family)),
        expires_at: Set(now
            + chrono::Duration::from_std(config.refresh_ttl).unwrap_or(chrono::Duration::days(30))),
        used_at: Set(None),
        revoked_at: Set(None),
        created_at: Set(now),
    }
    .insert(session.writer(shard_of(user_id)))
    .await?;
    Ok(Tokens {
        user_id,
        access_token: config.access_token(user_id)?,
        refresh_token: refresh,
        expires_in: config.access_ttl.as_secs(),
    })
}

/// Exchanges a refresh token for new tokens. Each token works once: presenting one that was
/// already exchanged means it was copied, so the whole family (that sign-in's sessions on every
/// device it reached) is revoked.
pub async fn refresh(session: &Session, token: &str, config: &TokenConfig) -> ApiResult<Tokens> {
    let user_id = tokens::refresh_token_user(token).ok_or_else(invalid_refresh)?;
    let shard = shard_of(user_id);
    if shard >= session.store().shard_count() {
        return Err(invalid_refresh());
    }
    let conn = session.writer(shard);
    let hash = tokens::hash_token(token);
    let row = refresh_token::Entity::find_by_id(hash.clone())
        .one(conn)
        .await?
        .ok_or_else(invalid_refresh)?;
    if row.revoked_at.is_some() || row.expires_at < Utc::now() {
        return Err(invalid_refresh());
    }
    // Mark used only if nobody else did first: two concurrent uses cannot both win.
    let claimed = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::UsedAt, Expr::value(Utc::now()))
        .filter(refresh_token::Column::TokenHash.eq(hash.as_str()))
        .filter(refresh_token::Column::UsedAt.is_null())
        .exec(conn)
        .await?;
    if claimed.rows_affected != 1 {
        revoke_family(session, user_id, &row.family).await?;
        tracing::warn!(user_id, "refresh token reused: session family revoked");
        return Err(ApiError::Refused(
            "REFRESH_TOKEN_REUSED",
            "this refresh token was already used; every session from that sign-in is now signed out".into(),
        ));
    }
    issue(session, user_id, Some(row.family), config).await
}

async fn revoke_family(session: &Session, user_id: i64, family: &str) -> ApiResult<()> {
    refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(refresh_token::Column::Family.eq(family))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(session.writer(shard_of(user_id)))
        .await?;
    Ok(())
}

/// Signs out the session family the refresh token belongs to. Unknown tokens are not an error
/// (signing out twice is fine).
pub async fn sign_out(session: &Session, token: &str) -> ApiResult<()> {
    let Some(user_id) = tokens::refresh_token_user(token) else {
        return Ok(());
    };
    if shard_of(user_id) >= session.store().shard_count() {
        return Ok(());
    }
    let row = refresh_token::Entity::find_by_id(tokens::hash_token(token))
        .one(session.writer(shard_of(user_id)))
        .await?;
    if let Some(row) = row {
        revoke_family(session, user_id, &row.family).await?;
    }
    Ok(())
}

/// Starts TOTP enrolment: a new secret, not yet required at sign-in.
pub async fn enroll_totp(session: &Session, user_id: i64) -> ApiResult<(String, String)> {
    let conn = session.writer(shard_of(user_id));
    let credential = credential::Entity::find_by_id(user_id)
        .one(conn)
        .await?
        .ok_or_else(|| ApiError::not_found("this account has no password sign-in"))?;
    if credential.totp_enabled {
        return Err(ApiError::Conflict(
            "two-factor sign-in is already on".into(),
        ));
    }
    let secret = totp::new_secret();
    let mut active: credential::ActiveModel = credential.clone().into();
    active.totp_secret = Set(Some(secret.clone()));
    active.update(conn).await?;
    Ok((
        secret.clone(),
        totp::otpauth_uri(&secret, "Switchyard", &credential.email),
    ))
}

/// Confirms enrolment with a code from the app; returns the recovery codes (shown once).
pub async fn confirm_totp(session: &Session, user_id: i64, code: &str) -> ApiResult<Vec<String>> {
    let conn = session.writer(shard_of(user_id));
    let credential = credential::Entity::find_by_id(user_id)
        .one(conn)
        .await?
        .ok_or_else(|| ApiError::not_found("this account has no password sign-in"))?;
    let Some(secret) = credential
        .totp_secret
        .clone()
        .filter(|_| !credential.totp_enabled)
    else {
        return Err(ApiError::Conflict(
            "start enrolment first (enrollTotp)".into(),
        ));
    };
    let Some(step) = totp::accepted_step(&secret, code, Utc::now().timestamp() as u64) else {
        return Err(ApiError::Refused(
            "INVALID_TOTP",
            "the code is wrong or expired".into(),
        ));
    };
    let (codes, hashes) = totp::new_recovery_codes();
    let mut active: credential::ActiveModel = credential.into();
    active.totp_enabled = Set(true);
    // The confirming code is used: it cannot sign in as well.
    active.totp_last_step = Set(Some(step));
    active.recovery_codes = Set(serde_json::to_string(&hashes).expect("hashes serialize"));
    active.update(conn).await?;
    Ok(codes)
}
