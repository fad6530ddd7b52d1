//! Access tokens (short-lived JWTs the router validates) and refresh tokens (opaque, stored
//! hashed, rotated on every use).

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use sha2::{Digest, Sha256};
use switchyard_kit::ApiError;

/// How access tokens are signed, from the environment:
/// `SWITCHYARD_JWT_ALG` (`ES256`, `RS256` or `HS256`), `SWITCHYARD_JWT_KEY` (PEM private key
/// for ES256/RS256, or the HMAC secret), `SWITCHYARD_JWT_KID`, `SWITCHYARD_JWT_ISSUER`,
/// `SWITCHYARD_JWT_AUDIENCE`, `SWITCHYARD_ACCESS_TTL_SECS` (900), `SWITCHYARD_REFRESH_TTL_SECS`
/// (30 days).
#[derive(Clone)]
pub struct TokenConfig {
    pub algorithm: Algorithm,
    pub key: EncodingKey,
    pub kid: String,
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
}

/// The development signing key: HS256 with a secret anyone can read in this file. The dev
/// router config trusts it; production configs must not.
pub const DEV_HMAC_SECRET: &str = "switchyard-dev-only-hmac-secret-do-not-use-in-prod";
pub const DEV_ISSUER: &str = "https://auth.switchyard.local";
pub const DEV_AUDIENCE: &str = "switchyard-api";

impl TokenConfig {
    pub fn development() -> Self {
        Self {
            algorithm: Algorithm::HS256,
            key: EncodingKey::from_secret(DEV_HMAC_SECRET.as_bytes()),
            kid: "dev".into(),
            issuer: DEV_ISSUER.into(),
            audience: DEV_AUDIENCE.into(),
            access_ttl: Duration::from_secs(900),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
        }
    }

    /// From the environment; the development key when `SWITCHYARD_JWT_KEY` is unset.
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let Some(key) = var("SWITCHYARD_JWT_KEY") else {
            tracing::warn!(
                "SWITCHYARD_JWT_KEY is not set: signing access tokens with the development key"
            );
            return Ok(Self::development());
        };
        let algorithm = match var("SWITCHYARD_JWT_ALG").as_deref().unwrap_or("ES256") {
            "ES256" => Algorithm::ES256,
            "RS256" => Algorithm::RS256,
            "HS256" => Algorithm::HS256,
            other => {
                return Err(format!(
                    "SWITCHYARD_JWT_ALG {other:?} is not one of ES256, RS256, HS256"
                ));
            }
        };
        let key = match algorithm {
            Algorithm::ES256 => EncodingKey::from_ec_pem(key.as_bytes()),
            Algorithm::RS256 => EncodingKey::from_rsa_pem(key.as_bytes()),
            _ if key.len() < 32 => {
                return Err("SWITCHYARD_JWT_KEY: an HS256 secret needs at least 32 bytes".into());
            }
            _ => Ok(EncodingKey::from_secret(key.as_bytes())),
        }
        .map_err(|e| {
            format!("SWITCHYARD_JWT_KEY is not a valid {algorithm:?} private key (PEM): {e}")
        })?;
        let secs = |name: &str, default: u64| -> Result<Duration, String> {
            match var(name) {
                None => Ok(Duration::from_secs(default)),
                Some(v) => v
                    .parse()
                    .map(Duration::from_secs)
                    .map_err(|_| format!("{name} must be a number of seconds")),
            }
        };
        Ok(Self {
            algorithm,
            key,
            kid: var("SWITCHYARD_JWT_KID").unwrap_or_else(|| "default".into()),
            issuer: var("SWITCHYARD_JWT_ISSUER").unwrap_or_else(|| DEV_ISSUER.into()),
            audience: var("SWITCHYARD_JWT_AUDIENCE").unwrap_or_else(|| DEV_AUDIENCE.into()),
            access_ttl: secs("SWITCHYARD_ACCESS_TTL_SECS", 900)?,
            refresh_ttl: secs("SWITCHYARD_REFRESH_TTL_SECS", 30 * 24 * 3600)?,
        })
    }

    /// A signed access token for `user_id`.
    pub fn access_token(&self, user_id: i64) -> Result<String, ApiError> {
        #[derive(Serialize)]
        struct Claims<'a> {
            sub: String,
            iss: &'a str,
            aud: &'a str,
            exp: u64,
            iat: u64,
            jti: String,
            scope: &'a str,
        }
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: user_id.to_string(),
            iss: &self.issuer,
            aud: &self.audience,
            exp: now + self.access_ttl.as_secs(),
            iat: now,
            jti: hex::encode(rand::random::<[u8; 16]>()),
            scope: "user",
        };
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| {
            ApiError::Store(std::sync::Arc::new(switchyard_kit::StoreError::Db(
                sea_orm::DbErr::Custom(format!("signing an access token failed: {e}")),
            )))
        })
    }
}

/// A refresh token: `<user id>.<43 characters of randomness>`. The user id tells which shard
/// holds it; only its sha256 is stored, so a database leak yields no usable tokens.
pub fn new_refresh_token(user_id: i64) -> String {
    use base64::Engine;
    let random =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    format!("{user_id}.{random}")
}

/// The user id a refresh token belongs to, if it is shaped like one.
pub fn refresh_token_user(token: &str) -> Option<i64> {
    let (user, random) = token.split_once('.')?;
    if random.len() != 43 || token.len() > 80 {
        return None;
    }
    user.parse().ok().filter(|id: &i64| *id > 0)
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new session family id.
pub fn new_family() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_carry_their_user() {
        let token = new_refresh_token(4242);
        assert_eq!(refresh_token_user(&token), Some(4242));
        assert_eq!(refresh_token_user("4242.short"), None);
        assert_eq!(refresh_token_user("nope"), None);
        assert_ne!(hash_token(&token), token);
    }

    #[test]
    fn access_tokens_verify_with_the_dev_key() {
        let config = TokenConfig::development();
        let token = config.access_token(7).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::HS256);
        validation.set_audience(&[DEV_AUDIENCE]);
        validation.set_issuer(&[DEV_ISSUER]);
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &token,
            &jsonwebtoken::DecodingKey::from_secret(DEV_HMAC_SECRET.as_bytes()),
            &validation,
        )
        .unwrap();
        assert_eq!(data.claims["sub"], "7");
        assert_eq!(data.header.kid.as_deref(), Some("dev"));
        assert!(data.claims["jti"].as_str().unwrap().len() == 32);
    }
}
