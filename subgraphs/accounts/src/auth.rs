//! Sign-up, sign-in (with an optional TOTP second factor and a per-account password budget),
//! session refresh with rotation, a grace window for retries and reuse detection, and
//! sign-out.

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, Set,
    TransactionTrait,
};
use switchyard_kit::id::shard_of;
use switchyard_kit::store::is_unique_violation;
use switchyard_kit::{ApiError, ApiResult, Session, validate};

use crate::attempts;
use crate::config::AccountsConfig;
use crate::entities::{credential, email, refresh_family, refresh_token};
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
        verified_at: Set(None),
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
    sign_in_as(session, user.id, config).await
}

/// Checks a sign-in. Unknown names, wrong passwords and accounts without a password all
/// answer the same `INVALID_CREDENTIALS` after a full argon2 verification. Each password check
/// of an existing account is counted first ([`attempts`]); a locked account is refused before
/// any password is checked.
pub async fn sign_in(
    session: &Session,
    login: &str,
    password: String,
    second_factor: Option<&str>,
    config: &AccountsConfig,
) -> ApiResult<Tokens> {
    if password.chars().count() > 256 {
        return Err(invalid_credentials());
    }
    let user_id = lookup_login(session, login).await?;
    let credential = match user_id {
        Some(id) if shard_of(id) < session.store().shard_count() => {
            session
                .read(shard_of(id), |conn| async move {
                    credential::Entity::find_by_id(id).one(&conn).await
                })
                .await?
        }
        _ => None,
    };
    if let Some(credential) = &credential {
        attempts::reserve(session, credential.user_id, &config.sign_in, Utc::now()).await?;
    }
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
    attempts::succeeded(session, credential.user_id).await?;
    sign_in_as(session, credential.user_id, &config.tokens).await
}

/// Checks the signed-in user's password again before a change to how they sign in (a stolen
/// access token alone must not be able to lock the owner out). Counted like a sign-in.
async fn confirm_password(
    session: &Session,
    credential: &credential::Model,
    password: String,
    config: &AccountsConfig,
) -> ApiResult<()> {
    if password.chars().count() > 256 {
        return Err(wrong_password());
    }
    attempts::reserve(session, credential.user_id, &config.sign_in, Utc::now()).await?;
    if !passwords::verify(password, Some(credential.password_hash.clone())).await? {
        return Err(wrong_password());
    }
    Ok(())
}

fn wrong_password() -> ApiError {
    ApiError::Refused("INVALID_CREDENTIALS", "the password is wrong".into())
}

async fn lookup_login(session: &Session, login: &str) -> ApiResult<Option<i64>> {
    let login = login.trim();
    if login.contains('@') {
        let Ok(address) = canonical_email(login) else {
            return Ok(None);
        };
        let shard = session.store().shard_for_key(address.as_bytes());
        Ok(session
            .read_with(shard, address, |conn, address| async move {
                email::Entity::find_by_id(address).one(&conn).await
            })
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

/// A new session: a new family and its first refresh token, in one transaction.
pub(crate) async fn sign_in_as(
    session: &Session,
    user_id: i64,
    config: &TokenConfig,
) -> ApiResult<Tokens> {
    let refresh = tokens::new_refresh_token(user_id);
    let family = tokens::new_family();
    let now = Utc::now();
    let txn = session.writer(shard_of(user_id)).begin().await?;
    refresh_family::ActiveModel {
        family: Set(family.clone()),
        user_id: Set(user_id),
        created_at: Set(now),
        revoked_at: Set(None),
    }
    .insert(&txn)
    .await?;
    store_refresh_token(&txn, user_id, &refresh, family, config).await?;
    txn.commit().await?;
    session_tokens(user_id, refresh, config)
}

async fn store_refresh_token(
    conn: &impl ConnectionTrait,
    user_id: i64,
    token: &str,
    family: String,
    config: &TokenConfig,
) -> ApiResult<()> {
    let now = Utc::now();
    refresh_token::ActiveModel {
        token_hash: Set(tokens::hash_token(token)),
        user_id: Set(user_id),
        family: Set(family),
        expires_at: Set(now
            + chrono::Duration::from_std(config.refresh_ttl).unwrap_or(chrono::Duration::days(30))),
        used_at: Set(None),
        revoked_at: Set(None),
        created_at: Set(now),
    }
    .insert(conn)
    .await?;
    Ok(())
}

fn session_tokens(user_id: i64, refresh_token: String, config: &TokenConfig) -> ApiResult<Tokens> {
    Ok(Tokens {
        user_id,
        access_token: config.access_token(user_id)?,
        refresh_token,
        expires_in: config.access_ttl.as_secs(),
    })
}

/// Exchanges a refresh token for new tokens, in one transaction on the user's shard.
///
/// Each token is exchanged once. Presenting it again within `refresh_grace` of that exchange
/// (a phone that lost the response and retries) returns the same successor; later it means
/// the token was copied, so its family (that sign-in's sessions on every device it reached)
/// is revoked. Revocation is recorded on the family, and every exchange checks the family, so
/// a successor issued while the family was being revoked is as dead as the rest.
pub async fn refresh(session: &Session, token: &str, config: &TokenConfig) -> ApiResult<Tokens> {
    let user_id = tokens::refresh_token_user(token).ok_or_else(invalid_refresh)?;
    let shard = shard_of(user_id);
    if shard >= session.store().shard_count() {
        return Err(invalid_refresh());
    }
    let hash = tokens::hash_token(token);
    let now = Utc::now();
    let txn = session.writer(shard).begin().await?;
    // The write comes first: it takes the row's lock (PostgreSQL) or the database's write lock
    // (SQLite), so concurrent exchanges of one token queue here and exactly one claims it.
    let claimed = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::UsedAt, Expr::value(now))
        .filter(refresh_token::Column::TokenHash.eq(hash.as_str()))
        .filter(refresh_token::Column::UsedAt.is_null())
        .filter(refresh_token::Column::RevokedAt.is_null())
        .filter(refresh_token::Column::ExpiresAt.gt(now))
        .exec(&txn)
        .await?
        .rows_affected
        == 1;
    // Dropping `txn` on a refusal rolls the claim back.
    let row = refresh_token::Entity::find_by_id(hash.clone())
        .one(&txn)
        .await?
        .filter(|row| row.user_id == user_id && row.revoked_at.is_none() && row.expires_at > now)
        .ok_or_else(invalid_refresh)?;
    let family = refresh_family::Entity::find_by_id(row.family.clone())
        .one(&txn)
        .await?;
    if family.is_none_or(|family| family.revoked_at.is_some()) {
        return Err(invalid_refresh());
    }
    let successor = config.successor(user_id, token);
    if claimed {
        store_refresh_token(&txn, user_id, &successor, row.family, config).await?;
        txn.commit().await?;
        return session_tokens(user_id, successor, config);
    }
    let grace = chrono::Duration::from_std(config.refresh_grace).unwrap_or_default();
    // (A concurrent exchange may have stamped a later `used_at` than this one's `now`.)
    let retried = !grace.is_zero()
        && row.used_at.is_some_and(|used| now - used <= grace)
        && refresh_token::Entity::find_by_id(tokens::hash_token(&successor))
            .one(&txn)
            .await?
            .is_some_and(|next| next.used_at.is_none() && next.revoked_at.is_none());
    if retried {
        txn.commit().await?;
        return session_tokens(user_id, successor, config);
    }
    revoke_family(&txn, &row.family, now).await?;
    txn.commit().await?;
    tracing::warn!(user_id, "refresh token reused: session family revoked");
    Err(ApiError::Refused(
        "REFRESH_TOKEN_REUSED",
        "this refresh token was already used; every session from that sign-in is now signed out"
            .into(),
    ))
}

async fn revoke_family(
    conn: &impl ConnectionTrait,
    family: &str,
    now: chrono::DateTime<Utc>,
) -> ApiResult<()> {
    refresh_family::Entity::update_many()
        .col_expr(refresh_family::Column::RevokedAt, Expr::value(now))
        .filter(refresh_family::Column::Family.eq(family))
        .filter(refresh_family::Column::RevokedAt.is_null())
        .exec(conn)
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
    let conn = session.writer(shard_of(user_id));
    let row = refresh_token::Entity::find_by_id(tokens::hash_token(token))
        .one(conn)
        .await?;
    if let Some(row) = row {
        revoke_family(conn, &row.family, Utc::now()).await?;
    }
    Ok(())
}

async fn password_credential(session: &Session, user_id: i64) -> ApiResult<credential::Model> {
    credential::Entity::find_by_id(user_id)
        .one(session.writer(shard_of(user_id)))
        .await?
        .ok_or_else(|| ApiError::not_found("this account has no password sign-in"))
}

/// Starts TOTP enrolment: a new secret, not yet required at sign-in. Needs the password.
pub async fn enroll_totp(
    session: &Session,
    user_id: i64,
    password: String,
    config: &AccountsConfig,
) -> ApiResult<(String, String)> {
    let credential = password_credential(session, user_id).await?;
    if credential.totp_enabled {
        return Err(ApiError::Conflict(
            "two-factor sign-in is already on".into(),
        ));
    }
    confirm_password(session, &credential, password, config).await?;
    attempts::succeeded(session, user_id).await?;
    let secret = totp::new_secret();
    credential::Entity::update_many()
        .col_expr(credential::Column::TotpSecret, Expr::value(secret.clone()))
        .filter(credential::Column::UserId.eq(user_id))
        .filter(credential::Column::TotpEnabled.eq(false))
        .exec(session.writer(shard_of(user_id)))
        .await?;
    Ok((
        secret.clone(),
        totp::otpauth_uri(&secret, "Switchyard", &credential.email),
    ))
}

/// Turns two-factor sign-in off. Needs the password and a current code (or a recovery code):
/// whoever holds a stolen access token and a leaked password still cannot remove the factor.
pub async fn disable_totp(
    session: &Session,
    user_id: i64,
    password: String,
    code: &str,
    config: &AccountsConfig,
) -> ApiResult<()> {
    let credential = password_credential(session, user_id).await?;
    if !credential.totp_enabled {
        return Err(ApiError::Conflict("two-factor sign-in is not on".into()));
    }
    confirm_password(session, &credential, password, config).await?;
    check_second_factor(session, &credential, code.trim()).await?;
    attempts::succeeded(session, user_id).await?;
    credential::Entity::update_many()
        .col_expr(credential::Column::TotpEnabled, Expr::value(false))
        .col_expr(
            credential::Column::TotpSecret,
            Expr::value(Option::<String>::None),
        )
        .col_expr(credential::Column::RecoveryCodes, Expr::value("[]"))
        .filter(credential::Column::UserId.eq(user_id))
        .exec(session.writer(shard_of(user_id)))
        .await?;
    Ok(())
}

/// Confirms enrolment with a code from the app; returns the recovery codes (shown once).
pub async fn confirm_totp(session: &Session, user_id: i64, code: &str) -> ApiResult<Vec<String>> {
    let conn = session.writer(shard_of(user_id));
    let credential = password_credential(session, user_id).await?;
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
