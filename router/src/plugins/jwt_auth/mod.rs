//! The pipeline's `authenticate` and `subgraph identity` stages: validates `Authorization: Bearer` tokens and tells subgraphs who the
//! caller is.
//!
//! Valid claims travel to subgraphs as internal headers (`x-switchyard-user-id`,
//! `x-switchyard-scopes`) next to the router's shared secret (`x-switchyard-router-secret`);
//! a subgraph believes the identity headers only when the secret matches, so a subgraph reached
//! directly cannot be fooled. Client-sent headers under those names are removed first (here
//! and by the pipeline's `guard` stage).

pub mod keys;

use std::sync::Arc;
use std::time::Duration;

use apollo_router::services::subgraph;
use http::{HeaderValue, StatusCode};
use schemars::JsonSchema;
use serde::Deserialize;
use tower::{BoxError, ServiceBuilder, ServiceExt};

use opentelemetry::metrics::MeterProvider;

use self::keys::{Alg, JwksConfig, KeyConfig};
use crate::pipeline::refusal::Refusal;
use crate::plugins::background::{self, AbortOnDrop};
use switchyard_wire::jwt::{AuthError, Verifier, VerifierOptions};

pub use switchyard_wire::names::{SCOPES_HEADER, SECRET_HEADER, USER_HEADER};
/// Where the verified user id goes in the request context (read by rate_limit and
/// response_cache).
pub const CONTEXT_USER: &str = "switchyard::auth::user_id";
const CONTEXT_SCOPES: &str = "switchyard::auth::scopes";

/// Configuration of the `jwt_auth` stage.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtAuthConfig {
    /// Required `iss`.
    pub issuer: String,
    /// Accepted `aud` values (one must match).
    pub audiences: Vec<String>,
    /// Accepted signing algorithms (`none` never is).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<Alg>,
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    #[serde(default)]
    pub jwks: Option<JwksConfig>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub leeway: Duration,
    /// Let requests without a token through (as anonymous); subgraphs then decide per field.
    #[serde(default)]
    pub allow_anonymous: bool,
    /// Longest token accepted.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Shared with the subgraphs (`SWITCHYARD_ROUTER_SECRET`); at least 16 characters.
    pub subgraph_secret: String,
}

fn default_algorithms() -> Vec<Alg> {
    vec![Alg::ES256, Alg::RS256]
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}
fn default_max_token_bytes() -> usize {
    8 * 1024
}

pub struct JwtAuth {
    verifier: Arc<Verifier>,
    allow_anonymous: bool,
    secret: HeaderValue,
    /// `switchyard.jwt.failures`, by reason (a bounded set: [`AuthError::reason`]).
    failures: opentelemetry::metrics::Counter<u64>,
    _refresher: Option<AbortOnDrop>,
}

impl JwtAuth {
    pub async fn new(config: JwtAuthConfig) -> Result<Self, BoxError> {
        let fail = |e: String| -> BoxError { format!("jwt_auth: {e}").into() };
        // As the subgraphs read `SWITCHYARD_ROUTER_SECRET_FILE` (`${file.PATH}` keeps it).
        let subgraph_secret =
            switchyard_wire::deployment::without_file_newline(&config.subgraph_secret);
        if subgraph_secret.len() < 16 {
            return Err(fail(
                "subgraph_secret must be at least 16 characters".into(),
            ));
        }
        if config.audiences.is_empty() {
            return Err(fail("audiences must name at least one audience".into()));
        }
        let secret = HeaderValue::from_str(subgraph_secret)
            .map_err(|_| fail("subgraph_secret must be printable ASCII".into()))?;
        let keys = Arc::new(keys::key_store(&config.keys, config.jwks.as_ref()).map_err(fail)?);
        keys.refresh(false).await.map_err(fail)?;
        let refresher = config.jwks.as_ref().map(|jwks| {
            background::every(
                jwks.refresh_interval,
                Arc::downgrade(&keys),
                |keys| async move {
                    if let Err(e) = keys.refresh(false).await {
                        tracing::error!("jwt_auth: keeping the previous keys: {e}");
                    }
                },
            )
        });
        let verifier = Verifier::new(
            keys,
            &VerifierOptions {
                algorithms: config.algorithms.iter().map(|a| a.algorithm()).collect(),
                issuers: vec![config.issuer.clone()],
                audiences: config.audiences.clone(),
                leeway_secs: config.leeway.as_secs(),
                max_token_bytes: config.max_token_bytes,
                required_claims: Vec::new(),
            },
        );
        let failures = apollo_router::metrics::meter_provider()
            .meter("switchyard")
            .u64_counter("switchyard.jwt.failures")
            .with_description("Requests refused by the authenticate stage, by reason")
            .build();
        Ok(Self {
            verifier: Arc::new(verifier),
            allow_anonymous: config.allow_anonymous,
            secret,
            failures,
            _refresher: refresher,
        })
    }

    /// The `authenticate` stage: verifies the bearer token (if any) and records the user and
    /// scopes in the context, or refuses with 401.
    pub async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        context: &apollo_router::Context,
    ) -> Result<(), Refusal> {
        let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
        let outcome = match (values.next(), values.next()) {
            (None, _) if self.allow_anonymous => return Ok(()),
            (None, _) => Err(AuthError::Required),
            (Some(_), Some(_)) => Err(AuthError::Malformed),
            (Some(value), None) => match value.to_str() {
                Ok(value) => self.verifier.verify_header::<Claims>(value).await,
                Err(_) => Err(AuthError::Malformed),
            },
        };
        match outcome {
            Ok(verified) => {
                let _ = context.insert(CONTEXT_USER, verified.subject);
                let _ = context.insert(CONTEXT_SCOPES, verified.claims.scopes().join(" "));
                Ok(())
            }
            Err(error) => {
                self.failures
                    .add(1, &[opentelemetry::KeyValue::new("reason", error.reason())]);
                Err(unauthenticated(error))
            }
        }
    }

    /// The `subgraph identity` stage: tells each subgraph who the caller is, next to the
    /// router's secret.
    pub fn subgraph_service(&self, service: subgraph::BoxService) -> subgraph::BoxService {
        let secret = self.secret.clone();
        ServiceBuilder::new()
            .map_request(move |mut request: subgraph::Request| {
                let user = request
                    .context
                    .get::<_, String>(CONTEXT_USER)
                    .ok()
                    .flatten();
                let scopes = request
                    .context
                    .get::<_, String>(CONTEXT_SCOPES)
                    .ok()
                    .flatten();
                let headers = request.subgraph_request.headers_mut();
                headers.remove(USER_HEADER);
                headers.remove(SCOPES_HEADER);
                headers.insert(SECRET_HEADER, secret.clone());
                if let Some(user) = user.and_then(|u| HeaderValue::from_str(&u).ok()) {
                    headers.insert(USER_HEADER, user);
                    if let Some(scopes) = scopes.and_then(|s| HeaderValue::from_str(&s).ok()) {
                        headers.insert(SCOPES_HEADER, scopes);
                    }
                }
                request
            })
            .service(service)
            .boxed()
    }
}

/// The claims of ours beyond the standard ones.
#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    scope: Option<String>,
}

impl Claims {
    /// Space-separated scopes; anything not visible ASCII is dropped (it becomes a header).
    fn scopes(&self) -> Vec<&str> {
        self.scope
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
            .filter(|s| s.chars().all(|c| c.is_ascii_graphic()))
            .collect()
    }
}

fn unauthenticated(error: AuthError) -> Refusal {
    let description = error.to_string();
    let challenge = match error {
        AuthError::Required => "Bearer".to_owned(),
        _ => format!("Bearer error=\"invalid_token\", error_description=\"{description}\""),
    };
    let challenge = HeaderValue::from_str(&challenge)
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer error=\"invalid_token\""));
    Refusal::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", description)
        .with_header(http::header::WWW_AUTHENTICATE, challenge)
}
