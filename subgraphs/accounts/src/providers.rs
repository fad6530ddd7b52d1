//! Sign in with Apple and Google: the app gets an OpenID Connect ID token from the provider's
//! SDK and sends it here with the nonce it asked for; we verify it and issue our own tokens.
//!
//! An ID token counts only if it is signed by a key in the provider's JWKS (the algorithm is
//! the key's, never the token's), names the provider as issuer and one of our client ids as
//! audience, has not expired, and carries the nonce the app generated for this sign-in. Each
//! nonce signs in once (kept until the token expires), so a captured token cannot be replayed.
//! The identity (`provider:sub`) is linked to an account: the one it was linked to before;
//! else the account whose email a provider verified, if the provider verified this one's too;
//! else a new account.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::Enum;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use switchyard_kit::store::is_unique_violation;
use switchyard_kit::{ApiError, ApiResult, Session};
use switchyard_wire::jwt::{AuthError, JwksSource, KeyStore, Verifier, VerifierOptions};

use crate::auth::{self, Tokens};
use crate::entities::{email, identity, used_nonce};
use crate::repo::{self, NewUser};
use crate::tokens::TokenConfig;

/// The providers apps can sign in with.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityProvider {
    Apple,
    Google,
}

impl IdentityProvider {
    fn key(self) -> &'static str {
        match self {
            Self::Apple => "apple",
            Self::Google => "google",
        }
    }
}

/// How the token's `nonce` claim relates to the nonce the app sends us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceForm {
    /// The claim is the nonce itself (Google).
    Plain,
    /// The claim is the nonce's SHA-256 in lower-case hex: the app hands Apple the hash and
    /// keeps the nonce (Apple's and Firebase's convention on iOS).
    Sha256,
}

/// One provider's settings.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub provider: IdentityProvider,
    /// Our app's client ids at the provider (the accepted `aud` values); none turns it off.
    pub client_ids: Vec<String>,
    /// The accepted `iss` values.
    pub issuers: Vec<String>,
    pub jwks_url: String,
    pub nonce: NonceForm,
    /// The JWKS is read again when older than this.
    pub jwks_max_age: Duration,
    /// A token with an unknown key id (the provider rotated its keys) re-reads the JWKS at
    /// most this often, so made-up key ids cannot make us hammer the provider.
    pub jwks_min_refresh_gap: Duration,
}

impl ProviderSettings {
    /// From `SWITCHYARD_<APPLE|GOOGLE>_CLIENT_IDS` (comma-separated; unset turns the provider
    /// off), `_JWKS_URL`, `_ISSUERS` (comma-separated) and `_NONCE` (`plain` or `sha256`),
    /// with the providers' published values as defaults.
    pub fn from_env(provider: IdentityProvider) -> Result<Option<Self>, String> {
        let prefix = match provider {
            IdentityProvider::Apple => "SWITCHYARD_APPLE",
            IdentityProvider::Google => "SWITCHYARD_GOOGLE",
        };
        let var = |name: &str| {
            std::env::var(format!("{prefix}_{name}"))
                .ok()
                .filter(|v| !v.trim().is_empty())
        };
        let list = |value: String| -> Vec<String> {
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let Some(client_ids) = var("CLIENT_IDS").map(list) else {
            return Ok(None);
        };
        let mut settings = Self::published(provider, client_ids);
        if let Some(url) = var("JWKS_URL") {
            settings.jwks_url = url;
        }
        if let Some(issuers) = var("ISSUERS") {
            settings.issuers = list(issuers);
        }
        if let Some(form) = var("NONCE") {
            settings.nonce = match form.as_str() {
                "plain" => NonceForm::Plain,
                "sha256" => NonceForm::Sha256,
                other => {
                    return Err(format!(
                        "{prefix}_NONCE must be `plain` or `sha256`, got {other:?}"
                    ));
                }
            };
        }
        Ok(Some(settings))
    }

    /// The provider's published issuer, JWKS and nonce convention, for `client_ids`.
    pub fn published(provider: IdentityProvider, client_ids: Vec<String>) -> Self {
        let (issuers, jwks_url, nonce): (&[&str], _, _) = match provider {
            IdentityProvider::Apple => (
                &["https://appleid.apple.com"],
                "https://appleid.apple.com/auth/keys",
                NonceForm::Sha256,
            ),
            IdentityProvider::Google => (
                &["https://accounts.google.com", "accounts.google.com"],
                "https://www.googleapis.com/oauth2/v3/certs",
                NonceForm::Plain,
            ),
        };
        Self {
            provider,
            client_ids,
            issuers: issuers.iter().map(|s| (*s).to_owned()).collect(),
            jwks_url: jwks_url.to_owned(),
            nonce,
            jwks_max_age: Duration::from_secs(3600),
            jwks_min_refresh_gap: Duration::from_secs(60),
        }
    }
}

struct Provider {
    settings: ProviderSettings,
    verifier: Verifier,
}

/// The configured providers.
#[derive(Clone, Default)]
pub struct Providers(Vec<Arc<Provider>>);

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|p| &p.settings))
            .finish()
    }
}

/// Longest ID token read (real ones are about 1 KiB).
pub const MAX_ID_TOKEN_BYTES: usize = 8 * 1024;
/// Longest nonce accepted.
pub const MAX_NONCE_CHARS: usize = 256;

impl Providers {
    pub fn new(settings: Vec<ProviderSettings>) -> Result<Self, String> {
        let mut providers = Vec::new();
        for settings in settings {
            let name = settings.provider.key();
            if settings.client_ids.is_empty() || settings.issuers.is_empty() {
                return Err(format!("{name}: needs client ids and issuers"));
            }
            if !settings.jwks_url.starts_with("https://")
                && !settings.jwks_url.starts_with("http://")
            {
                return Err(format!("{name}: the JWKS URL must be http(s)"));
            }
            let keys = KeyStore::new(
                &[],
                Some(JwksSource::Url(settings.jwks_url.clone())),
                settings.jwks_min_refresh_gap,
            )
            .map_err(|e| format!("{name}: {e}"))?;
            let verifier = Verifier::new(
                Arc::new(keys),
                &VerifierOptions {
                    // What Apple and Google sign with; never an HMAC, never `none`.
                    algorithms: [
                        jsonwebtoken::Algorithm::RS256,
                        jsonwebtoken::Algorithm::ES256,
                    ]
                    .into(),
                    issuers: settings.issuers.clone(),
                    audiences: settings.client_ids.clone(),
                    leeway_secs: 60,
                    max_token_bytes: MAX_ID_TOKEN_BYTES,
                    required_claims: vec!["iat"],
                },
            );
            providers.push(Arc::new(Provider { settings, verifier }));
        }
        Ok(Self(providers))
    }

    /// Apple and Google as the environment configures them (see [`ProviderSettings::from_env`]).
    pub fn from_env() -> Result<Self, String> {
        let mut settings = Vec::new();
        for provider in [IdentityProvider::Apple, IdentityProvider::Google] {
            settings.extend(ProviderSettings::from_env(provider)?);
        }
        Self::new(settings)
    }

    fn get(&self, provider: IdentityProvider) -> Option<&Provider> {
        self.0
            .iter()
            .find(|p| p.settings.provider == provider)
            .map(|p| p.as_ref())
    }
}

#[derive(Debug, Deserialize)]
struct IdClaims {
    exp: i64,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    email: Option<String>,
    /// A boolean (Google) or the string `"true"` (Apple, in some tokens).
    #[serde(default)]
    email_verified: Option<serde_json::Value>,
    #[serde(default)]
    name: Option<String>,
}

impl IdClaims {
    fn verified_email(&self) -> Option<String> {
        let verified = matches!(&self.email_verified, Some(serde_json::Value::Bool(true)))
            || matches!(&self.email_verified, Some(serde_json::Value::String(s)) if s == "true");
        self.email
            .as_deref()
            .filter(|_| verified)
            .and_then(|e| auth::canonical_email(e).ok())
    }
}

fn refused(message: String) -> ApiError {
    ApiError::Refused("INVALID_ID_TOKEN", message)
}

/// Verifies `id_token` from `provider` for `nonce`, links it to an account and signs that in.
pub async fn sign_in_with_provider(
    session: &Session,
    providers: &Providers,
    tokens: &TokenConfig,
    provider: IdentityProvider,
    id_token: &str,
    nonce: &str,
) -> ApiResult<Tokens> {
    let name = provider.key();
    let Some(config) = providers.get(provider) else {
        return Err(ApiError::Refused(
            "PROVIDER_NOT_CONFIGURED",
            format!("sign-in with {name} is not configured on this server"),
        ));
    };
    let nonce = nonce.trim();
    if nonce.is_empty() || nonce.chars().count() > MAX_NONCE_CHARS {
        return Err(ApiError::bad_input(format!(
            "`nonce` must be 1 to {MAX_NONCE_CHARS} characters"
        )));
    }
    let keys = config.verifier.keys();
    if keys.older_than(config.settings.jwks_max_age)
        && let Err(e) = keys.refresh(false).await
    {
        tracing::warn!(provider = name, "JWKS refresh failed: {e}");
    }
    let verified = config
        .verifier
        .verify::<IdClaims>(id_token)
        .await
        .map_err(|e: AuthError| refused(format!("the {name} ID token was refused: {e}")))?;
    let expected = match config.settings.nonce {
        NonceForm::Plain => nonce.to_owned(),
        NonceForm::Sha256 => hex::encode(Sha256::digest(nonce.as_bytes())),
    };
    let matches = verified.claims.nonce.as_deref().is_some_and(|claim| {
        switchyard_kit::viewer::constant_time_eq(claim.as_bytes(), expected.as_bytes())
    });
    if !matches {
        return Err(refused(format!(
            "the {name} ID token was not issued for this nonce"
        )));
    }
    consume_nonce(session, name, &expected, verified.claims.exp).await?;
    let subject = format!("{name}:{}", verified.subject);
    let user_id = linked_account(session, &subject, &verified.claims).await?;
    auth::sign_in_as(session, user_id, tokens).await
}

/// Records the nonce as used until the token expires; a second use is `ID_TOKEN_REUSED`.
async fn consume_nonce(session: &Session, provider: &str, nonce: &str, exp: i64) -> ApiResult<()> {
    let key = hex::encode(Sha256::digest(format!("{provider}:{nonce}").as_bytes()));
    let shard = session.store().shard_for_key(key.as_bytes());
    let conn = session.writer(shard);
    let now = Utc::now();
    // Expired entries can go: their tokens no longer verify.
    used_nonce::Entity::delete_many()
        .filter(used_nonce::Column::ExpiresAt.lt(now))
        .exec(conn)
        .await?;
    let expires_at = DateTime::<Utc>::from_timestamp(exp, 0)
        .unwrap_or(now)
        .max(now)
        + chrono::Duration::seconds(120);
    let inserted = used_nonce::ActiveModel {
        nonce_hash: Set(key),
        expires_at: Set(expires_at),
    }
    .insert(conn)
    .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(err) if is_unique_violation(&err) => Err(ApiError::Refused(
            "ID_TOKEN_REUSED",
            "this ID token (its nonce) was already used to sign in; get a new one".into(),
        )),
        Err(err) => Err(err.into()),
    }
}

/// The account `subject` is linked to, linking or creating one first.
async fn linked_account(session: &Session, subject: &str, claims: &IdClaims) -> ApiResult<i64> {
    let shard = session.store().shard_for_key(subject.as_bytes());
    let conn = session.writer(shard);
    if let Some(found) = identity::Entity::find_by_id(subject.to_owned())
        .one(conn)
        .await?
    {
        return linked(found.user_id);
    }
    // Claim the identity first (user 0: being linked), so two first sign-ins at once make
    // one account, not two.
    let claim = identity::ActiveModel {
        provider_subject: Set(subject.to_owned()),
        user_id: Set(0),
        created_at: Set(Utc::now()),
    }
    .insert(conn)
    .await;
    if let Err(err) = claim {
        if is_unique_violation(&err) {
            let found = identity::Entity::find_by_id(subject.to_owned())
                .one(conn)
                .await?;
            return linked(found.map_or(0, |f| f.user_id));
        }
        return Err(err.into());
    }
    let user_id = match link_target(session, claims).await {
        Ok(user_id) => user_id,
        Err(err) => {
            let _ = identity::Entity::delete_by_id(subject.to_owned())
                .exec(conn)
                .await;
            return Err(err);
        }
    };
    identity::Entity::update_many()
        .col_expr(identity::Column::UserId, Expr::value(user_id))
        .filter(identity::Column::ProviderSubject.eq(subject))
        .exec(conn)
        .await?;
    Ok(user_id)
}

fn linked(user_id: i64) -> ApiResult<i64> {
    if user_id > 0 {
        Ok(user_id)
    } else {
        Err(ApiError::Refused(
            "SIGN_IN_IN_PROGRESS",
            "another sign-in with this identity is creating its account; retry in a moment".into(),
        ))
    }
}

/// The account whose email a provider verified, when the provider verified this one's too;
/// else a new account.
///
/// An account whose email was only typed in (a password sign-up; there is no email
/// verification yet) is never linked: whoever typed it need not own it, and linking would let
/// them wait for the real owner to sign in with Google and share the account
/// ("pre-hijacking"). The owner gets an account of their own instead.
async fn link_target(session: &Session, claims: &IdClaims) -> ApiResult<i64> {
    let mut verified_email = claims.verified_email();
    if let Some(address) = &verified_email {
        let shard = session.store().shard_for_key(address.as_bytes());
        let existing = email::Entity::find_by_id(address.clone())
            .one(session.writer(shard))
            .await?
            .filter(|e| e.user_id > 0);
        match existing {
            Some(entry) if entry.verified_at.is_some() => return Ok(entry.user_id),
            // Taken by a typed-in address: the new account goes without it.
            Some(_) => verified_email = None,
            None => {}
        }
    }
    let base = handle_base(verified_email.as_deref(), claims.name.as_deref());
    let display_name = claims
        .name
        .as_deref()
        .and_then(|n| repo::display_name(n).ok())
        .unwrap_or_else(|| base.clone());
    let mut last_error = None;
    for _ in 0..5 {
        let handle = format!("{base}_{:04}", rand::random::<u16>() % 10_000);
        let new = NewUser {
            handle,
            display_name: display_name.clone(),
            bio: String::new(),
            avatar_url: None,
        };
        match repo::create_user(session, new).await {
            Ok(user) => {
                if let Some(address) = verified_email {
                    claim_email(session, &address, user.id).await?;
                }
                return Ok(user.id);
            }
            Err(err @ ApiError::Conflict(_)) => last_error = Some(err),
            Err(err) => return Err(err),
        }
    }
    Err(last_error.unwrap_or_else(|| ApiError::Conflict("no free handle".into())))
}

/// The email's directory entry, for a new account (skipped if someone took it meanwhile).
async fn claim_email(session: &Session, address: &str, user_id: i64) -> ApiResult<()> {
    let shard = session.store().shard_for_key(address.as_bytes());
    let claim = email::ActiveModel {
        email: Set(address.to_owned()),
        user_id: Set(user_id),
        verified_at: Set(Some(Utc::now())),
    }
    .insert(session.writer(shard))
    .await;
    match claim {
        Ok(_) => Ok(()),
        Err(err) if is_unique_violation(&err) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// A handle stem from the email's local part or the name: lower-case letters, digits and
/// underscores, 3 to 20 characters (a random suffix follows).
fn handle_base(email: Option<&str>, name: Option<&str>) -> String {
    let source = email
        .and_then(|e| e.split('@').next())
        .or(name)
        .unwrap_or("user");
    let mut stem: String = source
        .chars()
        .filter_map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() {
                Some(c)
            } else if c == '_' || c == '.' || c == '-' || c == ' ' {
                Some('_')
            } else {
                None
            }
        })
        .take(20)
        .collect();
    if stem.len() < 3 {
        stem = "user".into();
    }
    stem
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_stems_are_valid_handles() {
        for (email, name, expected) in [
            (Some("grace.hopper@navy.mil"), None, "grace_hopper"),
            (None, Some("Ada Lovelace"), "ada_lovelace"),
            (Some("ab@x.io"), None, "user"),
            (None, Some("名前"), "user"),
            (None, None, "user"),
            (Some(&*"x".repeat(40)), None, &*"x".repeat(20)),
        ] {
            let stem = handle_base(email, name);
            assert_eq!(stem, expected);
            assert!(
                repo::canonical_handle(&format!("{stem}_1234")).is_ok(),
                "{stem}"
            );
        }
    }

    #[test]
    fn apple_sends_email_verified_as_a_string() {
        let claims = |v: serde_json::Value| IdClaims {
            exp: 0,
            nonce: None,
            email: Some("A@Example.com".into()),
            email_verified: Some(v),
            name: None,
        };
        assert_eq!(
            claims(serde_json::json!(true)).verified_email().as_deref(),
            Some("a@example.com")
        );
        assert_eq!(
            claims(serde_json::json!("true"))
                .verified_email()
                .as_deref(),
            Some("a@example.com")
        );
        assert_eq!(claims(serde_json::json!("false")).verified_email(), None);
        assert_eq!(claims(serde_json::json!(false)).verified_email(), None);
    }
}
