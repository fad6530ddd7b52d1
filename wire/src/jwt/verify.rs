//! Checking one token: size, header, algorithm, key, signature, then claims.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation, decode, decode_header};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::keys::KeyStore;

/// Why a token was refused. The message says which check failed, so a client developer can
/// fix their integration, without revealing keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the Authorization header must be `Bearer <token>`")]
    NotBearer,
    #[error("the token is longer than {0} bytes")]
    TooLarge(usize),
    #[error("the token is malformed")]
    Malformed,
    #[error("tokens signed with {0} are not accepted")]
    AlgorithmNotAllowed(String),
    #[error("the token's key id is unknown")]
    UnknownKey,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued in the future")]
    IssuedInFuture,
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    #[error("the token is not meant for this API (audience)")]
    WrongAudience,
    #[error("the token lacks the `{0}` claim")]
    MissingClaim(String),
    #[error("authentication is required")]
    Required,
}

impl AuthError {
    /// A bounded name for the failure: the `reason` label of the router's JWT failure metric.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::NotBearer => "not_bearer",
            AuthError::TooLarge(_) => "too_large",
            AuthError::Malformed => "malformed",
            AuthError::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            AuthError::UnknownKey => "unknown_key",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::IssuedInFuture => "issued_in_future",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::MissingClaim(_) => "missing_claim",
            AuthError::Required => "required",
        }
    }
}

/// What a verifier accepts.
#[derive(Debug, Clone)]
pub struct VerifierOptions {
    pub algorithms: HashSet<Algorithm>,
    /// Accepted `iss` values (one must match).
    pub issuers: Vec<String>,
    /// Accepted `aud` values (one must match).
    pub audiences: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: u64,
    /// Longer tokens are refused unparsed.
    pub max_token_bytes: usize,
    /// Claims that must be present besides `exp`, `iss` and `aud`.
    pub required_claims: Vec<&'static str>,
}

/// A verified token's claims (`C`), with its `sub` (checked: present, 1-255 bytes).
#[derive(Debug, Clone)]
pub struct Verified<C> {
    pub subject: String,
    pub claims: C,
}

#[derive(Deserialize)]
struct Envelope<C> {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(flatten)]
    claims: C,
}

pub struct Verifier {
    keys: Arc<KeyStore>,
    /// The checks for each allowed algorithm, built once (the key decides which applies).
    validations: HashMap<Algorithm, Validation>,
    leeway_secs: u64,
    max_token_bytes: usize,
}

impl Verifier {
    pub fn new(keys: Arc<KeyStore>, options: &VerifierOptions) -> Self {
        let mut required = vec!["exp", "sub", "iss", "aud"];
        required.extend(options.required_claims.iter().copied());
        let validations = options
            .algorithms
            .iter()
            .map(|alg| {
                let mut validation = Validation::new(*alg);
                validation.set_issuer(&options.issuers);
                validation.set_audience(&options.audiences);
                validation.set_required_spec_claims(&required);
                validation.validate_nbf = true;
                validation.leeway = options.leeway_secs;
                (*alg, validation)
            })
            .collect();
        Self {
            keys,
            validations,
            leeway_secs: options.leeway_secs,
            max_token_bytes: options.max_token_bytes,
        }
    }

    pub fn keys(&self) -> &Arc<KeyStore> {
        &self.keys
    }

    /// Verifies the value of an `Authorization` header.
    pub async fn verify_header<C: DeserializeOwned>(
        &self,
        header: &str,
    ) -> Result<Verified<C>, AuthError> {
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::NotBearer)?;
        self.verify(token).await
    }

    pub async fn verify<C: DeserializeOwned>(&self, token: &str) -> Result<Verified<C>, AuthError> {
        if token.len() > self.max_token_bytes {
            return Err(AuthError::TooLarge(self.max_token_bytes));
        }
        let header = decode_header(token).map_err(|_| AuthError::Malformed)?;
        if !self.validations.contains_key(&header.alg) {
            return Err(AuthError::AlgorithmNotAllowed(format!("{:?}", header.alg)));
        }
        let key = match &header.kid {
            // Maybe the issuer rotated keys since our last JWKS read.
            Some(kid) => self.keys.find(kid).await.ok_or(AuthError::UnknownKey)?,
            None => self.keys.only_key().ok_or(AuthError::UnknownKey)?,
        };
        // The key decides the algorithm, never the token: an RS256 public key must not be
        // accepted as an HS256 secret.
        if key.alg != header.alg {
            return Err(AuthError::AlgorithmNotAllowed(format!(
                "{:?} with this key",
                header.alg
            )));
        }
        let validation = self
            .validations
            .get(&key.alg)
            .ok_or_else(|| AuthError::AlgorithmNotAllowed(format!("{:?}", key.alg)))?;
        let data =
            decode::<Envelope<C>>(token, &key.key, validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                ErrorKind::InvalidAudience => AuthError::WrongAudience,
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim.clone()),
                ErrorKind::InvalidAlgorithm => {
                    AuthError::AlgorithmNotAllowed(format!("{:?}", header.alg))
                }
                _ => AuthError::Malformed,
            })?;
        let now = jsonwebtoken::get_current_timestamp() as i64;
        if data
            .claims
            .iat
            .is_some_and(|iat| iat > now + self.leeway_secs as i64)
        {
            return Err(AuthError::IssuedInFuture);
        }
        let subject = data
            .claims
            .sub
            .filter(|s| !s.is_empty() && s.len() <= 255)
            .ok_or_else(|| AuthError::MissingClaim("sub".into()))?;
        Ok(Verified {
            subject,
            claims: data.claims.claims,
        })
    }
}

/// Token handling takes any header text: refused or verified, never a panic, and only a
/// token signed with our key, for our issuer and audience, ever yields an identity.
#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
    use proptest::prelude::*;

    use super::*;
    use crate::jwt::keys::StaticKey;

    const SECRET: &str = "verify-test-secret-0123456789-abcdefgh";

    fn verifier() -> Verifier {
        let keys = KeyStore::new(
            &[StaticKey {
                kid: "k".into(),
                alg: Algorithm::HS256,
                secret: Some(SECRET.into()),
                public_key_pem: None,
            }],
            None,
            std::time::Duration::from_secs(30),
        )
        .expect("keys");
        Verifier::new(
            Arc::new(keys),
            &VerifierOptions {
                algorithms: HashSet::from([Algorithm::HS256]),
                issuers: vec!["iss".to_owned()],
                audiences: vec!["aud".to_owned()],
                leeway_secs: 30,
                max_token_bytes: 2048,
                required_claims: Vec::new(),
            },
        )
    }

    fn token(claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k".into());
        encode(
            &header,
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("signs")
    }

    fn valid() -> String {
        let now = get_current_timestamp();
        token(
            serde_json::json!({"sub": "7", "iss": "iss", "aud": "aud", "exp": now + 300, "scope": "read write"}),
        )
    }

    #[derive(Debug, serde::Deserialize)]
    struct Claims {
        #[serde(default)]
        scope: Option<String>,
    }

    fn verify(verifier: &Verifier, header: &str) -> Result<Verified<Claims>, AuthError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(verifier.verify_header(header))
    }

    #[test]
    fn a_valid_token_verifies() {
        let verified = verify(&verifier(), &format!("Bearer {}", valid())).unwrap();
        assert_eq!(verified.subject, "7");
        assert_eq!(verified.claims.scope.as_deref(), Some("read write"));
    }

    #[test]
    fn each_check_names_itself() {
        let now = get_current_timestamp();
        let verifier = verifier();
        let cases = [
            (
                serde_json::json!({"sub": "7", "iss": "other", "aud": "aud", "exp": now + 300}),
                AuthError::WrongIssuer,
            ),
            (
                serde_json::json!({"sub": "7", "iss": "iss", "aud": "other", "exp": now + 300}),
                AuthError::WrongAudience,
            ),
            (
                serde_json::json!({"sub": "7", "iss": "iss", "aud": "aud", "exp": now - 300}),
                AuthError::Expired,
            ),
            (
                serde_json::json!({"sub": "7", "iss": "iss", "aud": "aud", "exp": now + 300, "iat": now + 300}),
                AuthError::IssuedInFuture,
            ),
            (
                serde_json::json!({"iss": "iss", "aud": "aud", "exp": now + 300}),
                AuthError::MissingClaim("sub".into()),
            ),
        ];
        for (claims, expected) in cases {
            let got = verify(&verifier, &format!("Bearer {}", token(claims.clone())));
            assert_eq!(got.map(|v| v.subject), Err(expected), "{claims}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_header_text_is_refused_or_verified(text in "\\PC{0,300}") {
            let verifier = verifier();
            prop_assert!(verify(&verifier, &text).is_err());
            let bearer = format!("Bearer {text}");
            prop_assert!(verify(&verifier, &bearer).is_err());
        }

        /// One byte of a valid token changed, or its parts rearranged: never accepted as
        /// another identity.
        #[test]
        fn tampered_tokens_are_refused(index in 0usize..400, byte in any::<u8>(), swap in any::<bool>()) {
            let verifier = verifier();
            let good = valid();
            let mut bytes = good.clone().into_bytes();
            let index = index % bytes.len();
            bytes[index] = byte;
            let mut tampered = String::from_utf8_lossy(&bytes).into_owned();
            if swap {
                let parts: Vec<&str> = good.split('.').collect();
                tampered = format!("{}.{}.{}", parts[1], parts[0], parts[2]);
            }
            if tampered != good {
                let bearer = format!("Bearer {tampered}");
                match verify(&verifier, &bearer) {
                    Err(_) => {}
                    // Base64 has spare bits: a change that decodes to the same bytes is the
                    // same token.
                    Ok(verified) => prop_assert_eq!(verified.subject, "7"),
                }
            }
        }
    }
}
