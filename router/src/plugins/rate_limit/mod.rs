//! `switchyard.rate_limit`: GCRA limits keyed by user, client app, client IP, operation or an
//! operation variable, with per-operation rules (e.g. `SignIn`: 5 per minute per IP and per
//! login). In-process by default; with Redis every router replica shares one budget. When
//! Redis fails, the in-process limits take over for that request (counted in
//! `switchyard_rate_limit_backend_fallbacks_total`): a Redis outage never fails a request.
//!
//! Runs in `supergraph_service`: persisted ids are expanded and the JWT is verified by then, so
//! the operation and the user are known. The operation name is read from the document itself,
//! not from the client's `operationName`, so a rule cannot be dodged by leaving it out.

pub mod gcra;
pub mod keys;
pub mod memory;
pub mod redis_backend;

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apollo_compiler::ast::{Definition, Document};
use apollo_router::graphql;
use apollo_router::layers::ServiceBuilderExt;
use apollo_router::plugin::{Plugin, PluginInit};
use apollo_router::register_plugin;
use apollo_router::services::supergraph;
use http::{HeaderValue, StatusCode};
use ipnet::IpNet;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, MeterProvider};
use schemars::JsonSchema;
use serde::Deserialize;
use tower::{BoxError, ServiceBuilder, ServiceExt};

use self::gcra::{Decision, Quota};
use self::keys::KeySource;
use self::memory::MemoryBackend;
use self::redis_backend::RedisBackend;

/// Configuration of `switchyard.rate_limit`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Shared budget across replicas; in-process limits when absent.
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    /// Proxies whose `X-Forwarded-For` entries are skipped when finding the client IP.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub trusted_proxies: Vec<IpNet>,
    pub rules: Vec<RuleConfig>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    pub url: String,
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// Longest wait for Redis before falling back to in-process limits.
    #[serde(default = "default_redis_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
}

fn default_prefix() -> String {
    "switchyard:rl:".into()
}
fn default_redis_timeout() -> Duration {
    Duration::from_millis(50)
}

/// One limit.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Names the rule in metrics and errors.
    pub name: String,
    /// Only for this operation (by the name in the document); every operation when absent.
    #[serde(default)]
    pub operation: Option<String>,
    /// `user`, `client`, `ip`, `operation` or `variable:<path>`.
    pub key: String,
    /// Requests per `per`.
    pub limit: u64,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub per: Duration,
    /// Requests allowed at once (default: `limit`).
    #[serde(default)]
    pub burst: Option<u64>,
}

struct Rule {
    name: String,
    operation: Option<String>,
    key: KeySource,
    quota: Quota,
}

struct Limiter {
    rules: Vec<Rule>,
    trusted: Vec<IpNet>,
    memory: MemoryBackend,
    redis: Option<RedisBackend>,
    decisions: Counter<u64>,
    fallbacks: Counter<u64>,
}

pub struct RateLimit {
    limiter: Arc<Limiter>,
}

/// The user id `switchyard.jwt_auth` puts in the context.
const CONTEXT_USER: &str = "switchyard::auth::user_id";

#[async_trait::async_trait]
impl Plugin for RateLimit {
    type Config = RateLimitConfig;

    async fn new(init: PluginInit<Self::Config>) -> Result<Self, BoxError> {
        let config = init.config;
        let fail = |e: String| -> BoxError { format!("switchyard.rate_limit: {e}").into() };
        let mut rules = Vec::new();
        for rule in &config.rules {
            let key = KeySource::parse(&rule.key)
                .map_err(|e| fail(format!("rule {}: {e}", rule.name)))?;
            if rule.limit == 0 || rule.per.is_zero() {
                return Err(fail(format!(
                    "rule {}: limit and per must be positive",
                    rule.name
                )));
            }
            let burst = rule.burst.unwrap_or(rule.limit);
            if burst == 0 {
                return Err(fail(format!("rule {}: burst must be positive", rule.name)));
            }
            rules.push(Rule {
                name: rule.name.clone(),
                operation: rule.operation.clone(),
                key,
                quota: Quota {
                    limit: rule.limit,
                    period_ms: rule.per.as_millis() as u64,
                    burst,
                },
            });
        }
        let redis = match &config.redis {
            Some(r) => {
                Some(RedisBackend::new(&r.url, r.key_prefix.clone(), r.timeout).map_err(fail)?)
            }
            None => None,
        };
        let meter = apollo_router::metrics::meter_provider().meter("switchyard");
        let limiter = Limiter {
            rules,
            trusted: config.trusted_proxies,
            memory: MemoryBackend::default(),
            redis,
            decisions: meter
                .u64_counter("switchyard.rate_limit.decisions")
                .with_description("Rate limit decisions, by rule and outcome")
                .build(),
            fallbacks: meter
                .u64_counter("switchyard.rate_limit.backend_fallbacks")
                .with_description("Checks answered in-process because Redis failed")
                .build(),
        };
        Ok(Self {
            limiter: Arc::new(limiter),
        })
    }

    fn supergraph_service(&self, service: supergraph::BoxService) -> supergraph::BoxService {
        let limiter = self.limiter.clone();
        ServiceBuilder::new()
            .checkpoint_async(move |request: supergraph::Request| {
                let limiter = limiter.clone();
                async move {
                    match limiter.check(&request).await {
                        None => Ok(ControlFlow::Continue(request)),
                        Some((rule, quota, decision)) => Ok(ControlFlow::Break(too_many(
                            &rule,
                            &quota,
                            &decision,
                            request.context,
                        )?)),
                    }
                }
            })
            .buffered()
            .service(service)
            .boxed()
    }
}

impl Limiter {
    /// The first rule that refuses the request, if any.
    async fn check(&self, request: &supergraph::Request) -> Option<(String, Quota, Decision)> {
        let body = request.supergraph_request.body();
        let headers = request.supergraph_request.headers();
        let operation = body
            .query
            .as_deref()
            .and_then(|q| operation_name(q, body.operation_name.as_deref()));
        for rule in &self.rules {
            if let Some(only) = &rule.operation
                && operation.as_deref() != Some(only.as_str())
            {
                continue;
            }
            let value = match &rule.key {
                KeySource::User => request
                    .context
                    .get::<_, String>(CONTEXT_USER)
                    .ok()
                    .flatten(),
                KeySource::Client => Some(
                    headers
                        .get("apollographql-client-name")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("unknown")
                        .to_owned(),
                ),
                KeySource::Ip => Some(
                    keys::client_ip(
                        headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()),
                        &self.trusted,
                    )
                    .map(|ip| ip.to_string())
                    .unwrap_or_else(|| "direct".to_owned()),
                ),
                KeySource::Operation => {
                    Some(operation.clone().unwrap_or_else(|| "anonymous".to_owned()))
                }
                KeySource::Variable(path) => {
                    let mut value = body.variables.get(path[0].as_str());
                    for part in &path[1..] {
                        value = value
                            .and_then(|v| v.as_object())
                            .and_then(|o| o.get(part.as_str()));
                    }
                    // Normalised, so `Ada` and `ada ` share one budget.
                    value
                        .and_then(|v| v.as_str())
                        .map(|s| s.trim().to_lowercase())
                }
            };
            // A rule whose key is absent (no user on an anonymous request) does not apply.
            let Some(value) = value else { continue };
            let key = format!("{}:{}", rule.name, value);
            let decision = self.decide(&key, &rule.quota).await;
            let outcome = if decision.allowed {
                "allowed"
            } else {
                "limited"
            };
            self.decisions.add(
                1,
                &[
                    KeyValue::new("rule", rule.name.clone()),
                    KeyValue::new("outcome", outcome),
                ],
            );
            if !decision.allowed {
                return Some((rule.name.clone(), rule.quota, decision));
            }
        }
        None
    }

    async fn decide(&self, key: &str, quota: &Quota) -> Decision {
        if let Some(redis) = &self.redis {
            match redis.check(key, quota).await {
                Ok(decision) => return decision,
                Err(e) => {
                    self.fallbacks.add(1, &[]);
                    tracing::warn!("switchyard.rate_limit: using in-process limits: {e}");
                }
            }
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        self.memory.check(key, quota, now)
    }
}

/// The name of the operation the document runs.
fn operation_name(query: &str, requested: Option<&str>) -> Option<String> {
    let document = Document::parse(query, "operation.graphql").ok()?;
    let mut operations = document.definitions.iter().filter_map(|d| match d {
        Definition::OperationDefinition(op) => Some(op),
        _ => None,
    });
    let op = match requested {
        Some(name) => operations.find(|op| op.name.as_ref().is_some_and(|n| n == name)),
        None => operations.next(),
    }?;
    op.name.as_ref().map(|n| n.to_string())
}

fn too_many(
    rule: &str,
    quota: &Quota,
    decision: &Decision,
    context: apollo_router::Context,
) -> Result<supergraph::Response, BoxError> {
    let retry_after = decision.retry_after_ms.div_ceil(1000).max(1);
    let header = |v: u64| HeaderValue::from(v);
    supergraph::Response::error_builder()
        .error(
            graphql::Error::builder()
                .message(format!(
                    "too many requests ({rule}); retry in {retry_after} s"
                ))
                .extension_code("RATE_LIMITED")
                .extension("rule", rule.to_owned())
                .extension("retryAfter", retry_after)
                .build(),
        )
        .status_code(StatusCode::TOO_MANY_REQUESTS)
        .header(http::header::RETRY_AFTER, header(retry_after))
        .header("ratelimit-limit", header(quota.limit))
        .header("ratelimit-remaining", header(0))
        .header("ratelimit-reset", header(decision.reset_ms.div_ceil(1000)))
        .header(
            "ratelimit-policy",
            HeaderValue::from_str(&format!("{};w={}", quota.limit, quota.period_ms / 1000))
                .expect("ascii"),
        )
        .context(context)
        .build()
}

register_plugin!("switchyard", "rate_limit", RateLimit);
