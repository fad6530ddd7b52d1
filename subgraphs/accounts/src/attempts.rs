//! The per-account password budget: a second line of defence that holds whatever the router
//! does (a router without rate limits, a client that reached the subgraph directly, a botnet
//! with an address per guess, a handle and an email of the same account).
//!
//! Every password check of an account is counted *before* it runs, with a compare-and-set on
//! the account's credentials row, so concurrent guesses cannot share one reading of the count.
//! The first `free_attempts` checks after a success run freely; from then on each one locks
//! the account's password checks for a back-off that doubles per attempt (`base`, `2 × base`,
//! ... up to `max`). While locked, no password is checked at all: the refusal costs no argon2
//! work and reveals nothing about the password. A full sign-in (password and, when on, the
//! second factor) clears the count; a count untouched for `forget_after` is forgotten.
//!
//! Handles are public (`userByHandle`) and `signUp` says when an email is taken, so answering
//! a locked account with its own refusal reveals nothing an attacker could not already learn.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use switchyard_kit::id::shard_of;
use switchyard_kit::{ApiError, ApiResult, Session};

use crate::entities::credential;

/// How many password checks an account gets, from the environment:
/// `SWITCHYARD_SIGNIN_FREE_ATTEMPTS` (5), `SWITCHYARD_SIGNIN_BACKOFF_BASE_SECS` (30),
/// `SWITCHYARD_SIGNIN_BACKOFF_MAX_SECS` (900), `SWITCHYARD_SIGNIN_FORGET_AFTER_SECS` (86400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignInPolicy {
    /// Checks allowed before the first lock.
    pub free_attempts: u32,
    /// The first lock; each further attempt doubles it.
    pub base: Duration,
    /// The longest lock.
    pub max: Duration,
    /// A count with no attempt for this long starts again from zero.
    pub forget_after: Duration,
}

impl Default for SignInPolicy {
    fn default() -> Self {
        Self {
            free_attempts: 5,
            base: Duration::from_secs(30),
            max: Duration::from_secs(900),
            forget_after: Duration::from_secs(24 * 3600),
        }
    }
}

/// Compare-and-set rounds before giving up on a contended account (each round loses only to
/// another attempt on the same account, which then counts instead).
const MAX_ROUNDS: usize = 8;

impl SignInPolicy {
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let number =
            |name: &str, default: u64| -> Result<u64, String> {
                match var(name) {
                    None => Ok(default),
                    Some(v) => v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("{name} must be a positive whole number, got {v:?}")
                    }),
                }
            };
        let defaults = Self::default();
        let policy = Self {
            free_attempts: u32::try_from(number(
                "SWITCHYARD_SIGNIN_FREE_ATTEMPTS",
                defaults.free_attempts.into(),
            )?)
            .map_err(|_| "SWITCHYARD_SIGNIN_FREE_ATTEMPTS is too large".to_owned())?,
            base: Duration::from_secs(number(
                "SWITCHYARD_SIGNIN_BACKOFF_BASE_SECS",
                defaults.base.as_secs(),
            )?),
            max: Duration::from_secs(number(
                "SWITCHYARD_SIGNIN_BACKOFF_MAX_SECS",
                defaults.max.as_secs(),
            )?),
            forget_after: Duration::from_secs(number(
                "SWITCHYARD_SIGNIN_FORGET_AFTER_SECS",
                defaults.forget_after.as_secs(),
            )?),
        };
        if policy.max < policy.base {
            return Err(
                "SWITCHYARD_SIGNIN_BACKOFF_MAX_SECS must be at least SWITCHYARD_SIGNIN_BACKOFF_BASE_SECS"
                    .into(),
            );
        }
        Ok(policy)
    }

    /// The lock after the `attempt`-th counted check (1-based): none for the free ones, then
    /// `base`, doubling, at most `max`.
    pub fn lock_after(&self, attempt: u32) -> Option<Duration> {
        let over = attempt.checked_sub(self.free_attempts)?;
        let factor = 2u32.checked_pow(over.min(30)).unwrap_or(u32::MAX);
        Some(self.base.saturating_mul(factor).min(self.max))
    }

    /// Password checks an attacker gets in `window` against one account, at most: the free
    /// ones, then one per lock as the locks grow (what the brute-force test holds us to).
    pub fn max_checks_in(&self, window: Duration) -> u32 {
        let mut checks = self.free_attempts;
        let mut elapsed = Duration::ZERO;
        let mut attempt = self.free_attempts;
        while let Some(lock) = self.lock_after(attempt) {
            elapsed += lock;
            if elapsed > window {
                break;
            }
            checks += 1;
            attempt += 1;
        }
        checks
    }
}

fn locked(until: DateTime<Utc>, now: DateTime<Utc>) -> ApiError {
    let secs = (until - now).num_seconds().max(1);
    ApiError::Refused(
        "RATE_LIMITED",
        format!(
            "too many sign-in attempts for this account; try again in {secs} s (a successful sign-in resets the count)"
        ),
    )
}

/// Counts one password check for `user_id` before it runs, or refuses it while the account
/// is locked.
pub async fn reserve(
    session: &Session,
    user_id: i64,
    policy: &SignInPolicy,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    let conn = session.writer(shard_of(user_id));
    for _ in 0..MAX_ROUNDS {
        let Some(row) = credential::Entity::find_by_id(user_id).one(conn).await? else {
            // No credentials: nothing to guess (the caller answers as for a wrong password).
            return Ok(());
        };
        if let Some(until) = row.locked_until.filter(|until| *until > now) {
            return Err(locked(until, now));
        }
        let forget_after =
            chrono::Duration::from_std(policy.forget_after).unwrap_or(chrono::TimeDelta::MAX);
        if row.failed_attempts != 0 && row.last_failed_at.is_none_or(|at| now - at > forget_after) {
            // An old count is forgotten, by a compare-and-set of its own, so the count below
            // always moves to a value it did not have (what makes its compare-and-set exact).
            forget(conn, user_id, row.failed_attempts).await?;
            continue;
        }
        let attempt = u32::try_from(row.failed_attempts)
            .unwrap_or(0)
            .saturating_add(1);
        let lock = policy.lock_after(attempt).map(|lock| {
            now + chrono::Duration::from_std(lock).unwrap_or(chrono::Duration::seconds(900))
        });
        let counted = credential::Entity::update_many()
            .col_expr(
                credential::Column::FailedAttempts,
                Expr::value(i32::try_from(attempt).unwrap_or(i32::MAX)),
            )
            .col_expr(credential::Column::LastFailedAt, Expr::value(now))
            .col_expr(credential::Column::LockedUntil, Expr::value(lock))
            .filter(credential::Column::UserId.eq(user_id))
            // Every counted attempt changes the count, so an unchanged count means nobody
            // counted in between (a reset and a climb back to it is harmless: both counted).
            .filter(credential::Column::FailedAttempts.eq(row.failed_attempts))
            .exec(conn)
            .await?;
        if counted.rows_affected == 1 {
            return Ok(());
        }
        // Another attempt on this account counted first: read again.
    }
    Err(ApiError::Refused(
        "RATE_LIMITED",
        "too many sign-in attempts for this account at once; retry in a moment".into(),
    ))
}

/// A full sign-in succeeded: the count starts again.
pub async fn succeeded(session: &Session, user_id: i64) -> ApiResult<()> {
    reset(session.writer(shard_of(user_id)), user_id, None).await
}

async fn forget(conn: &DatabaseConnection, user_id: i64, count: i32) -> ApiResult<()> {
    reset(conn, user_id, Some(count)).await
}

/// Clears the count (only if it is still `expected`, when given).
async fn reset(conn: &DatabaseConnection, user_id: i64, expected: Option<i32>) -> ApiResult<()> {
    let mut update = credential::Entity::update_many()
        .col_expr(credential::Column::FailedAttempts, Expr::value(0))
        .col_expr(
            credential::Column::LastFailedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            credential::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(credential::Column::UserId.eq(user_id));
    if let Some(count) = expected {
        update = update.filter(credential::Column::FailedAttempts.eq(count));
    }
    update.exec(conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_start_after_the_free_attempts_and_double_up_to_the_max() {
        let policy = SignInPolicy::default();
        let locks: Vec<_> = (1..=12)
            .map(|n| policy.lock_after(n).map(|d| d.as_secs()))
            .collect();
        assert_eq!(
            locks,
            [
                None,
                None,
                None,
                None,
                Some(30),
                Some(60),
                Some(120),
                Some(240),
                Some(480),
                Some(900),
                Some(900),
                Some(900)
            ]
        );
        assert_eq!(policy.lock_after(u32::MAX), Some(policy.max));
    }

    #[test]
    fn the_budget_per_window_is_small() {
        let policy = SignInPolicy::default();
        // 5 at once, then at 30, 90, 210 and 450 s (9 in the first 15 minutes), at 930 s, and
        // every 15 minutes after that.
        assert_eq!(policy.max_checks_in(Duration::from_secs(60)), 6);
        assert_eq!(policy.max_checks_in(Duration::from_secs(900)), 9);
        assert_eq!(policy.max_checks_in(Duration::from_secs(3600)), 12);
        assert_eq!(policy.max_checks_in(Duration::from_secs(86_400)), 104);
    }
}
