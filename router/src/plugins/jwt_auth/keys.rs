//! The `jwt_auth` config's keys: static keys plus a JWKS (file or URL), refreshed periodically
//! and on demand when a token names a key id we have not seen (key rotation: the issuer
//! publishes the new key before signing with it). The store itself is `switchyard_wire::jwt`,
//! shared with the accounts subgraph's ID-token checks.

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use schemars::JsonSchema;
use serde::Deserialize;
use switchyard_wire::jwt::{JwksSource, KeyStore, StaticKey};

/// Algorithms we accept. `none` is not one of them, whatever the config says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
pub enum Alg {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Alg {
    pub fn algorithm(self) -> Algorithm {
        match self {
            Alg::HS256 => Algorithm::HS256,
            Alg::HS384 => Algorithm::HS384,
            Alg::HS512 => Algorithm::HS512,
            Alg::RS256 => Algorithm::RS256,
            Alg::RS384 => Algorithm::RS384,
            Alg::RS512 => Algorithm::RS512,
            Alg::PS256 => Algorithm::PS256,
            Alg::PS384 => Algorithm::PS384,
            Alg::PS512 => Algorithm::PS512,
            Alg::ES256 => Algorithm::ES256,
            Alg::ES384 => Algorithm::ES384,
            Alg::EdDSA => Algorithm::EdDSA,
        }
    }
}

/// A key given in the router config.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The `kid` tokens signed with this key carry.
    pub kid: String,
    pub alg: Alg,
    /// HMAC secret (HS* only; development). Use `${env.NAME}` to keep it out of the file.
    #[serde(default)]
    pub secret: Option<String>,
    /// Public key in PEM (RS*, PS*, ES*, EdDSA).
    #[serde(default)]
    pub public_key_pem: Option<String>,
    /// Public key PEM file.
    #[serde(default)]
    pub public_key_pem_file: Option<PathBuf>,
}

/// A JSON Web Key Set to fetch keys from.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwksConfig {
    /// `https://issuer/.well-known/jwks.json`
    #[serde(default)]
    pub url: Option<String>,
    /// A local JWKS file (mounted secret).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// How often the set is re-read.
    #[serde(default = "default_refresh", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub refresh_interval: Duration,
    /// A token with an unknown `kid` triggers a re-read at most this often, so garbage tokens
    /// cannot make us hammer the issuer.
    #[serde(default = "default_min_refresh_gap", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub min_refresh_gap: Duration,
}

fn default_min_refresh_gap() -> Duration {
    Duration::from_secs(30)
}

fn default_refresh() -> Duration {
    Duration::from_secs(300)
}

/// The key store for a `jwt_auth` config: files read now, the JWKS on its first refresh.
pub fn key_store(keys: &[KeyConfig], jwks: Option<&JwksConfig>) -> Result<KeyStore, String> {
    let keys =
        keys.iter()
            .map(|k| {
                let public_key_pem = match (&k.public_key_pem, &k.public_key_pem_file) {
                    (Some(pem), None) => Some(pem.clone()),
                    (None, Some(path)) => Some(std::fs::read_to_string(path).map_err(|e| {
                        format!("keys[{}]: reading {}: {e}", k.kid, path.display())
                    })?),
                    (None, None) => None,
                    (Some(_), Some(_)) => {
                        return Err(format!(
                            "keys[{}]: set one of `public_key_pem` and `public_key_pem_file`",
                            k.kid
                        ));
                    }
                };
                Ok(StaticKey {
                    kid: k.kid.clone(),
                    alg: k.alg.algorithm(),
                    secret: k.secret.clone(),
                    public_key_pem,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
    let (source, gap) = match jwks {
        None => (None, default_min_refresh_gap()),
        Some(j) => {
            let source = match (&j.url, &j.file) {
                (Some(url), None) => JwksSource::Url(url.clone()),
                (None, Some(file)) => JwksSource::File(file.clone()),
                _ => return Err("jwks: set exactly one of `url` and `file`".into()),
            };
            (Some(source), j.min_refresh_gap)
        }
    };
    KeyStore::new(&keys, source, gap)
}
