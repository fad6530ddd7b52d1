//! Password hashing: argon2id with parameters tuned for an interactive sign-in on a server
//! core (OWASP's recommendation: 19 MiB of memory, 2 passes, 1 lane; about 20-40 ms in a
//! release build on this machine), stored as PHC strings so parameters can be raised later
//! without invalidating old hashes.

use std::sync::LazyLock;

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

/// Hashes on the blocking pool: argon2 is deliberately slow and must not stall the runtime.
pub async fn hash(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let salt =
            SaltString::encode_b64(&rand::random::<[u8; 16]>()).expect("16-byte salt encodes");
        argon2()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await
    .map_err(|e| internal(&e.to_string()))?
    .map_err(|e| internal(&e.to_string()))
}

/// Verifies in constant time (argon2's own comparison). With `None` (no such user), verifies
/// against a fixed dummy hash anyway, so "no such user" and "wrong password" take the same time
/// and cannot be told apart.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
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
    .unwrap_or(false)
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
        assert!(verify("correct horse battery".into(), Some(a.clone())).await);
        assert!(!verify("wrong horse battery".into(), Some(a)).await);
        assert!(
            !verify("no user has this password".into(), None).await,
            "the dummy never matches"
        );
    }

    #[test]
    fn policy() {
        assert!(check_policy("short").is_err());
        assert!(check_policy(&"x".repeat(257)).is_err());
        assert!(check_policy("long enough pass").is_ok());
    }
}
