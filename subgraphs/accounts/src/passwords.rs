//! Password hashing: argon2id with parameters tuned for an interactive sign-in on a server
//! core (OWASP's recommendation: 19 MiB of memory, 2 passes, 1 lane; about 20-40 ms in a
//! release build on this machine), stored as PHC strings so parameters can be raised later
//! without invalidating old hashes.

use std::sync::LazyLock;
use std::time::Duration;

use tokio::sync::Semaphore;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use switchyard_kit::ApiError;

/// Memory cost in KiB.
pub const MEMORY_KIB: u32 = 19 * 1024;
/// Passes over memory.
pub const ITERATIONS: u32 = 2;
/// Lanes.
pub const PARALLELISM: u32 = 1;

fn argon2() -> Argon2<'static> {
    let params =
        Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// 10 to 256 characters; checked before hashing so an enormous password cannot cost us.
pub fn check_policy(password: &str) -> Result<(), ApiError> {
    let len = password.chars().count();
    if len < 10 {
        return Err(ApiError::bad_input(
            "`password` must be at least 10 characters",
        ));
    }
    if len > 256 {
        return Err(ApiError::bad_input(
            "`password` must be at most 256 characters",
        ));
    }
    Ok(())
}

/// Where hashes run: at most one per core at once, so a flood of sign-ins waits in a queue
/// instead of taking 19 MiB on each of the runtime's (up to 512) blocking threads; a wait
/// longer than the queue timeout is answered `RATE_LIMITED`.
pub struct HashingPool {
    slots: Semaphore,
    queue_timeout: Duration,
}

/// Longest wait for a hashing slot.
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(2);

static POOL: LazyLock<HashingPool> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    HashingPool::new(cores, QUEUE_TIMEOUT)
});

impl HashingPool {
    pub fn new(slots: usize, queue_timeout: Duration) -> Self {
        Self {
            slots: Semaphore::new(slots.max(1)),
            queue_timeout,
        }
    }

    /// Runs `work` on the blocking pool once a slot is free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = tokio::time::timeout(self.queue_timeout, self.slots.acquire())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        let result = tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| internal(&e.to_string()));
        drop(permit);
        result
    }

    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        self.run(move || {
            let salt =
                SaltString::encode_b64(&rand::random::<[u8; 16]>()).expect("16-byte salt encodes");
            argon2()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
        })
        .await?
        .map_err(|e| internal(&e.to_string()))
    }

    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, ApiError> {
        self.run(move || {
            let found = stored.is_some();
            let stored = stored.unwrap_or_else(|| DUMMY.clone());
            let Ok(parsed) = PasswordHash::new(&stored) else {
                return false;
            };
            let ok = argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok();
            ok && found
        })
        .await
    }
}

fn busy() -> ApiError {
    ApiError::Refused(
        "RATE_LIMITED",
        "too many passwords are being checked right now; retry in a moment".into(),
    )
}

/// Hashes in the shared pool: argon2 is deliberately slow and must not stall the runtime.
pub async fn hash(password: String) -> Result<String, ApiError> {
    POOL.hash(password).await
}

/// Verifies in constant time (argon2's own comparison). With `None` (no such user), verifies
/// against a fixed dummy hash anyway, so "no such user" and "wrong password" take the same time
/// and cannot be told apart. `RATE_LIMITED` when no hashing slot frees up in time.
pub async fn verify(password: String, stored: Option<String>) -> Result<bool, ApiError> {
    POOL.verify(password, stored).await
}

static DUMMY: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::encode_b64(&[7u8; 16]).expect("salt encodes");
    argon2()
        .hash_password(b"no user has this password", &salt)
        .expect("dummy hash")
        .to_string()
});

fn internal(message: &str) -> ApiError {
    ApiError::Store(std::sync::Arc::new(switchyard_kit::StoreError::Db(
        sea_orm::DbErr::Custom(format!("password hashing failed: {message}")),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_differ() {
        let a = hash("correct horse battery".into()).await.unwrap();
        let b = hash("correct horse battery".into()).await.unwrap();
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert!(
            verify("correct horse battery".into(), Some(a.clone()))
                .await
                .unwrap()
        );
        assert!(!verify("wrong horse battery".into(), Some(a)).await.unwrap());
        assert!(
            !verify("no user has this password".into(), None)
                .await
                .unwrap(),
            "the dummy never matches"
        );
    }

    /// Regression (issue 11): every sign-in ran argon2 (19 MiB) on the blocking pool, up to
    /// 512 at once; now at most the pool's slots run, and a wait past the queue timeout is
    /// answered RATE_LIMITED.
    #[tokio::test]
    async fn hashing_is_bounded_and_a_long_queue_is_refused() {
        let pool = std::sync::Arc::new(HashingPool::new(1, Duration::from_millis(50)));
        let held = pool.slots.acquire().await.unwrap();
        let error = pool.verify("x".repeat(12), None).await.unwrap_err();
        assert_eq!(error.code(), "RATE_LIMITED");
        drop(held);
        assert!(!pool.verify("x".repeat(12), None).await.unwrap());
        // Two at once through one slot (and a queue timeout no hash comes near): both finish,
        // one after the other.
        let pool = HashingPool::new(1, Duration::from_secs(30));
        let (a, b) = tokio::join!(
            pool.hash("first password".into()),
            pool.hash("second password".into())
        );
        assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    }

    #[test]
    fn policy() {
        assert!(check_policy("short").is_err());
        assert!(check_policy(&"x".repeat(257)).is_err());
        assert!(check_policy("long enough pass").is_ok());
    }
}
