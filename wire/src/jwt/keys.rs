//! The keys tokens are checked against: static keys plus a JWKS (file or URL), refreshed
//! periodically by the owner and on demand when a token names a key id we have not seen (key
//! rotation: the issuer publishes the new key before signing with it).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

/// Largest JWKS document read (real ones are a few KiB).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Most keys kept from one JWKS.
pub const MAX_JWKS_KEYS: usize = 64;

/// A key given in configuration.
#[derive(Debug, Clone)]
pub struct StaticKey {
    /// The `kid` tokens signed with this key carry.
    pub kid: String,
    pub alg: Algorithm,
    /// HMAC secret (HS* only).
    pub secret: Option<String>,
    /// Public key in PEM (RS*, PS*, ES*, EdDSA).
    pub public_key_pem: Option<String>,
}

/// Where a JWKS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    Url(String),
    File(PathBuf),
}

#[derive(Clone)]
pub struct Key {
    pub alg: Algorithm,
    pub key: Arc<DecodingKey>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Static keys plus the latest JWKS.
pub struct KeyStore {
    static_keys: HashMap<String, Key>,
    jwks: Option<JwksSource>,
    min_refresh_gap: Duration,
    fetched: RwLock<HashMap<String, Key>>,
    last_fetch: Mutex<Option<Instant>>,
    http: reqwest::Client,
}

impl KeyStore {
    /// `min_refresh_gap`: on-demand re-reads (a token with an unknown `kid`) happen at most
    /// this often, so garbage tokens cannot make us hammer the issuer.
    pub fn new(
        keys: &[StaticKey],
        jwks: Option<JwksSource>,
        min_refresh_gap: Duration,
    ) -> Result<Self, String> {
        let mut static_keys = HashMap::new();
        for k in keys {
            let key = static_key(k).map_err(|e| format!("keys[{}]: {e}", k.kid))?;
            if static_keys.insert(k.kid.clone(), key).is_some() {
                return Err(format!("keys: kid {:?} appears twice", k.kid));
            }
        }
        if static_keys.is_empty() && jwks.is_none() {
            return Err("configure at least one key (`keys`) or a `jwks`".into());
        }
        Ok(Self {
            static_keys,
            jwks,
            min_refresh_gap,
            fetched: RwLock::default(),
            last_fetch: Mutex::new(None),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .connect_timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| e.to_string())?,
        })
    }

    pub fn has_jwks(&self) -> bool {
        self.jwks.is_some()
    }

    /// True when there is a JWKS and it was never read or last read over `age` ago (for
    /// owners that refresh lazily instead of on a timer).
    pub fn older_than(&self, age: Duration) -> bool {
        self.jwks.is_some()
            && self
                .last_fetch
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_none_or(|t| t.elapsed() > age)
    }

    pub fn get(&self, kid: &str) -> Option<Key> {
        self.static_keys.get(kid).cloned().or_else(|| {
            self.fetched
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(kid)
                .cloned()
        })
    }

    /// When exactly one key is configured, tokens without a `kid` use it.
    pub fn only_key(&self) -> Option<Key> {
        let fetched = self.fetched.read().unwrap_or_else(|e| e.into_inner());
        let mut all = self.static_keys.values().chain(fetched.values());
        match (all.next(), all.next()) {
            (Some(key), None) => Some(key.clone()),
            _ => None,
        }
    }

    /// The key named `kid`, re-reading the JWKS once (within the refresh gap) when it is
    /// not known yet.
    pub async fn find(&self, kid: &str) -> Option<Key> {
        if let Some(key) = self.get(kid) {
            return Some(key);
        }
        if let Err(e) = self.refresh(true).await {
            tracing::warn!("JWKS refresh failed: {e}");
        }
        self.get(kid)
    }

    /// Re-reads the JWKS (if any). `on_demand` refreshes respect `min_refresh_gap`. A set that
    /// cannot be read leaves the previous keys in place.
    pub async fn refresh(&self, on_demand: bool) -> Result<bool, String> {
        let Some(jwks) = &self.jwks else {
            return Ok(false);
        };
        {
            let mut last = self.last_fetch.lock().unwrap_or_else(|e| e.into_inner());
            if on_demand && last.is_some_and(|t| t.elapsed() < self.min_refresh_gap) {
                return Ok(false);
            }
            *last = Some(Instant::now());
        }
        let bytes = match jwks {
            JwksSource::Url(url) => self.fetch(url).await?,
            JwksSource::File(file) => {
                let bytes = tokio::fs::read(file)
                    .await
                    .map_err(|e| format!("reading JWKS {}: {e}", file.display()))?;
                if bytes.len() > MAX_JWKS_BYTES {
                    return Err(format!(
                        "JWKS {} is over {MAX_JWKS_BYTES} bytes",
                        file.display()
                    ));
                }
                bytes
            }
        };
        let keys = parse_jwks(&bytes)?;
        *self.fetched.write().unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(true)
    }

    async fn fetch(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("fetching JWKS {url}: {e}"))?;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("reading JWKS {url}: {e}"))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("JWKS {url} is over {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The usable keys of a JWKS document, by key id. Keys without a `kid`, or of a kind we do
/// not accept, are skipped (and logged); more than [`MAX_JWKS_KEYS`] is an error.
pub fn parse_jwks(bytes: &[u8]) -> Result<HashMap<String, Key>, String> {
    let set: JwkSet = serde_json::from_slice(bytes).map_err(|e| format!("invalid JWKS: {e}"))?;
    if set.keys.len() > MAX_JWKS_KEYS {
        return Err(format!(
            "the JWKS has {} keys; at most {MAX_JWKS_KEYS} are read",
            set.keys.len()
        ));
    }
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
    Ok(keys)
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn static_key(k: &StaticKey) -> Result<Key, String> {
    let alg = k.alg;
    let key = match (alg, &k.secret, &k.public_key_pem) {
        (_, Some(secret), None) if is_hmac(alg) => {
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
        (_, None, Some(pem)) if !is_hmac(alg) => {
            DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| e.to_string())?
        }
        _ => {
            return Err(format!(
                "{alg:?} needs {}",
                if is_hmac(alg) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwks_is_bounded_and_unusable_keys_are_skipped() {
        let ec = r#"{"kty":"EC","crv":"P-256","kid":"ec","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
        let keys = parse_jwks(
            format!(r#"{{"keys":[{ec},{{"kty":"oct","kid":"hmac","k":"c2VjcmV0"}}]}}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(keys.len(), 1, "an oct key is not accepted from a JWKS");
        assert_eq!(keys["ec"].alg, Algorithm::ES256);
        let many = vec![ec; MAX_JWKS_KEYS + 1].join(",");
        assert!(
            parse_jwks(format!(r#"{{"keys":[{many}]}}"#).as_bytes())
                .unwrap_err()
                .contains("at most 64")
        );
        assert!(parse_jwks(b"{").unwrap_err().starts_with("invalid JWKS"));
    }
}
