//! The keys tokens are checked against: static keys from the config plus a JWKS (file or URL),
//! refreshed periodically and on demand when a token names a key id we have not seen (key
//! rotation: the issuer publishes the new key before signing with it).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use schemars::JsonSchema;
use serde::Deserialize;

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

#[derive(Clone)]
pub struct Key {
    pub alg: Algorithm,
    pub key: Arc<DecodingKey>,
}

/// Static keys plus the latest JWKS.
pub struct KeyStore {
    static_keys: HashMap<String, Key>,
    jwks: Option<JwksConfig>,
    fetched: RwLock<HashMap<String, Key>>,
    last_fetch: Mutex<Option<Instant>>,
    http: reqwest::Client,
}

impl KeyStore {
    pub fn new(keys: &[KeyConfig], jwks: Option<JwksConfig>) -> Result<Self, String> {
        let mut static_keys = HashMap::new();
        for k in keys {
            let key = static_key(k).map_err(|e| format!("keys[{}]: {e}", k.kid))?;
            if static_keys.insert(k.kid.clone(), key).is_some() {
                return Err(format!("keys: kid {:?} appears twice", k.kid));
            }
        }
        if let Some(j) = &jwks
            && j.url.is_some() == j.file.is_some()
        {
            return Err("jwks: set exactly one of `url` and `file`".into());
        }
        if static_keys.is_empty() && jwks.is_none() {
            return Err("configure at least one key (`keys`) or a `jwks`".into());
        }
        Ok(Self {
            static_keys,
            jwks,
            fetched: RwLock::default(),
            last_fetch: Mutex::new(None),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| e.to_string())?,
        })
    }

    pub fn jwks_refresh_interval(&self) -> Option<Duration> {
        self.jwks.as_ref().map(|j| j.refresh_interval)
    }

    pub fn get(&self, kid: &str) -> Option<Key> {
        self.static_keys
            .get(kid)
            .cloned()
            .or_else(|| self.fetched.read().expect("keys lock").get(kid).cloned())
    }

    /// When exactly one key is configured, tokens without a `kid` use it.
    pub fn only_key(&self) -> Option<Key> {
        let fetched = self.fetched.read().expect("keys lock");
        let mut all = self.static_keys.values().chain(fetched.values());
        match (all.next(), all.next()) {
            (Some(key), None) => Some(key.clone()),
            _ => None,
        }
    }

    /// Re-reads the JWKS (if any). `on_demand` refreshes respect `min_refresh_gap`.
    pub async fn refresh(&self, on_demand: bool) -> Result<bool, String> {
        let Some(jwks) = &self.jwks else {
            return Ok(false);
        };
        {
            let mut last = self.last_fetch.lock().expect("fetch lock");
            if on_demand && last.is_some_and(|t| t.elapsed() < jwks.min_refresh_gap) {
                return Ok(false);
            }
            *last = Some(Instant::now());
        }
        let text = match (&jwks.url, &jwks.file) {
            (Some(url), _) => self
                .http
                .get(url)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| format!("fetching JWKS {url}: {e}"))?
                .text()
                .await
                .map_err(|e| format!("reading JWKS {url}: {e}"))?,
            (None, Some(file)) => tokio::fs::read_to_string(file)
                .await
                .map_err(|e| format!("reading JWKS {}: {e}", file.display()))?,
            (None, None) => return Ok(false),
        };
        let set: JwkSet = serde_json::from_str(&text).map_err(|e| format!("invalid JWKS: {e}"))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = &jwk.common.key_id else {
                continue;
            };
            match jwk_key(jwk) {
                Ok(key) => {
                    keys.insert(kid.clone(), key);
                }
                Err(e) => tracing::warn!(%kid, "skipping JWKS key: {e}"),
            }
        }
        *self.fetched.write().expect("keys lock") = keys;
        Ok(true)
    }
}

fn static_key(k: &KeyConfig) -> Result<Key, String> {
    let alg = k.alg.algorithm();
    let pem = match (&k.public_key_pem, &k.public_key_pem_file) {
        (Some(pem), None) => Some(pem.clone()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?,
        ),
        (None, None) => None,
        (Some(_), Some(_)) => {
            return Err("set one of `public_key_pem` and `public_key_pem_file`".into());
        }
    };
    let key = match (alg, &k.secret, pem) {
        (Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512, Some(secret), None) => {
            if secret.len() < 32 {
                return Err("an HMAC secret needs at least 32 bytes".into());
            }
            DecodingKey::from_secret(secret.as_bytes())
        }
        (Algorithm::ES256 | Algorithm::ES384, None, Some(pem)) => {
            DecodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| e.to_string())?
        }
        (Algorithm::EdDSA, None, Some(pem)) => {
            DecodingKey::from_ed_pem(pem.as_bytes()).map_err(|e| e.to_string())?
        }
        (_, None, Some(pem))
            if !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) =>
        {
            DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| e.to_string())?
        }
        _ => {
            return Err(format!(
                "{alg:?} needs {}",
                if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                    "`secret` (and no public key)"
                } else {
                    "a public key (and no `secret`)"
                }
            ));
        }
    };
    Ok(Key {
        alg,
        key: Arc::new(key),
    })
}

fn jwk_key(jwk: &Jwk) -> Result<Key, String> {
    let alg = match (jwk.common.key_algorithm, &jwk.algorithm) {
        (Some(KeyAlgorithm::ES256), _) => Algorithm::ES256,
        (Some(KeyAlgorithm::ES384), _) => Algorithm::ES384,
        (Some(KeyAlgorithm::RS256), _) => Algorithm::RS256,
        (Some(KeyAlgorithm::RS384), _) => Algorithm::RS384,
        (Some(KeyAlgorithm::RS512), _) => Algorithm::RS512,
        (Some(KeyAlgorithm::PS256), _) => Algorithm::PS256,
        (Some(KeyAlgorithm::PS384), _) => Algorithm::PS384,
        (Some(KeyAlgorithm::PS512), _) => Algorithm::PS512,
        (Some(KeyAlgorithm::EdDSA), _) => Algorithm::EdDSA,
        (Some(other), _) => return Err(format!("algorithm {other:?} is not accepted from a JWKS")),
        (None, AlgorithmParameters::EllipticCurve(ec)) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        (None, AlgorithmParameters::EllipticCurve(ec)) if ec.curve == EllipticCurve::P384 => {
            Algorithm::ES384
        }
        (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
        (None, AlgorithmParameters::OctetKeyPair(_)) => Algorithm::EdDSA,
        (None, _) => return Err("cannot tell the key's algorithm".into()),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    Ok(Key {
        alg,
        key: Arc::new(key),
    })
}
