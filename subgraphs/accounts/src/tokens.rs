//! Access tokens (short-lived JWTs the router validates) and refresh tokens (opaque, stored
//! hashed, rotated on every use).

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use sha2::{Digest, Sha256};
use switchyard_kit::ApiError;
use switchyard_kit::deployment::{self, Environment, Secret};

/// How access tokens are signed and refresh tokens rotated, from the environment:
/// `SWITCHYARD_JWT_ALG` (`ES256`, `RS256` or `HS256`), `SWITCHYARD_JWT_KEY` or
/// `SWITCHYARD_JWT_KEY_FILE` (PEM private key for ES256/RS256, or the HMAC secret),
/// `SWITCHYARD_JWT_KID`, `SWITCHYARD_JWT_ISSUER`, `SWITCHYARD_JWT_AUDIENCE`,
/// `SWITCHYARD_ACCESS_TTL_SECS` (900), `SWITCHYARD_REFRESH_TTL_SECS` (30 days),
/// `SWITCHYARD_REFRESH_GRACE_SECS` (30).
#[derive(Clone)]
pub struct TokenConfig {
    pub algorithm: Algorithm,
    pub key: EncodingKey,
    pub kid: String,
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// How long after a refresh token was exchanged presenting it again returns the same
    /// successor (a phone that lost the response retries) instead of counting as theft.
    pub refresh_grace: Duration,
    /// Derives a refresh token's successor (HMAC), so a retried exchange can be answered with
    /// the same successor although only hashes of tokens are stored. Derived from the signing
    /// key: whoever could forge access tokens could do worse than this.
    successor_key: [u8; 32],
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .field("refresh_grace", &self.refresh_grace)
            .finish_non_exhaustive()
    }
}

/// The development signing key: HS256 with a secret anyone can read in this repository. The
/// dev router config trusts it; outside development it is refused.
pub use switchyard_kit::deployment::{DEV_AUDIENCE, DEV_HMAC_SECRET, DEV_ISSUER};

/// The longest grace window accepted: past a few minutes a retry is not a lost response.
pub const MAX_REFRESH_GRACE: Duration = Duration::from_secs(300);

fn successor_key(key_material: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"switchyard refresh-token successor v1\0");
    hasher.update(key_material);
    hasher.finalize().into()
}

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
            refresh_grace: Duration::from_secs(30),
            successor_key: successor_key(DEV_HMAC_SECRET.as_bytes()),
        }
    }

    /// From the environment. Without `SWITCHYARD_JWT_KEY` (or `_FILE`), the development key,
    /// in development only; in production a missing key, or the published development one,
    /// is an error.
    pub fn from_env(environment: Environment) -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let key = deployment::secret_from_env("SWITCHYARD_JWT_KEY").map_err(|e| e.to_string())?;
        // Without a key of its own: the development HMAC key, so HS256 unless told otherwise.
        let default_alg = if key.is_none() { "HS256" } else { "ES256" };
        let key = match key {
            Some(key) if key.is_published() && environment.is_production() => {
                return Err(format!(
                    "SWITCHYARD_JWT_KEY is the development key published in this repository; production needs its own ({})",
                    switchyard_kit::server::PRODUCTION_BECAUSE
                ));
            }
            Some(key) => key,
            None if environment.is_production() => {
                return Err(format!(
                    "SWITCHYARD_JWT_KEY (or SWITCHYARD_JWT_KEY_FILE) is required in production ({}); set {}=development to sign with the development key",
                    switchyard_kit::server::PRODUCTION_BECAUSE,
                    deployment::ENV_VAR
                ));
            }
            None => {
                tracing::warn!(
                    "SWITCHYARD_JWT_KEY is not set: signing access tokens with the development key"
                );
                Secret::new(DEV_HMAC_SECRET)
            }
        };
        let algorithm = match var("SWITCHYARD_JWT_ALG").as_deref().unwrap_or(default_alg) {
            "ES256" => Algorithm::ES256,
            "RS256" => Algorithm::RS256,
            "HS256" => Algorithm::HS256,
            other => {
                return Err(format!(
                    "SWITCHYARD_JWT_ALG {other:?} is not one of ES256, RS256, HS256"
                ));
            }
        };
        let material = key.expose().as_bytes();
        let encoding = match algorithm {
            Algorithm::ES256 => EncodingKey::from_ec_pem(material),
            Algorithm::RS256 => EncodingKey::from_rsa_pem(material),
            _ if material.len() < 32 => {
                return Err("SWITCHYARD_JWT_KEY: an HS256 secret needs at least 32 bytes".into());
            }
            _ => Ok(EncodingKey::from_secret(material)),
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
        let refresh_grace = secs("SWITCHYARD_REFRESH_GRACE_SECS", 30)?;
        if refresh_grace > MAX_REFRESH_GRACE {
            return Err(format!(
                "SWITCHYARD_REFRESH_GRACE_SECS must be at most {}",
                MAX_REFRESH_GRACE.as_secs()
            ));
        }
        let (kid, issuer, audience) = if key.is_published() {
            (
                "dev".to_owned(),
                DEV_ISSUER.to_owned(),
                DEV_AUDIENCE.to_owned(),
            )
        } else {
            (
                var("SWITCHYARD_JWT_KID").unwrap_or_else(|| "default".into()),
                var("SWITCHYARD_JWT_ISSUER").unwrap_or_else(|| DEV_ISSUER.into()),
                var("SWITCHYARD_JWT_AUDIENCE").unwrap_or_else(|| DEV_AUDIENCE.into()),
            )
        };
        Ok(Self {
            algorithm,
            key: encoding,
            kid,
            issuer,
            audience,
            access_ttl: secs("SWITCHYARD_ACCESS_TTL_SECS", 900)?,
            refresh_ttl: secs("SWITCHYARD_REFRESH_TTL_SECS", 30 * 24 * 3600)?,
            refresh_grace,
            successor_key: successor_key(material),
        })
    }

    /// The refresh token that succeeds `token`: the same every time it is asked for, and
    /// unpredictable without the signing key.
    pub fn successor(&self, user_id: i64, token: &str) -> String {
        use base64::Engine;
        use hmac::Mac;
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&self.successor_key)
            .expect("HMAC takes any key length");
        mac.update(token.as_bytes());
        let random =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{user_id}.{random}")
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
