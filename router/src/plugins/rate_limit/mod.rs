//! The pipeline's `rate limit` stage: GCRA limits keyed by user, client app, client IP, operation or an
//! operation argument, with per-operation rules (e.g. `SignIn`: 5 per minute per IP and per
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
use std::time::Duration;

use apollo_router::graphql;
use apollo_router::layers::ServiceBuilderExt;
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
use switchyard_wire::client_ip::{AddressRules, ClientAddress};

use crate::pipeline::document::Operation;
use crate::pipeline::read::{GraphqlRequest, Object};
use crate::plugins::jwt_auth::CONTEXT_USER;
use crate::plugins::operation;
use crate::plugins::redis_connection::RedisError;

/// Configuration of the `rate_limit` stage.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Shared budget across replicas; in-process limits when absent.
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    /// Proxies (ours and a CDN's edges) whose `X-Forwarded-For` entries are skipped when
    /// finding the client's address.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub trusted_proxies: Vec<IpNet>,
    /// IPv6 clients are counted per network of this prefix length (a phone has a whole /64).
    #[serde(default = "default_ipv6_prefix")]
    pub ipv6_prefix: u8,
    /// A header a CDN sets to the client's address (`cf-connecting-ip`, `true-client-ip`),
    /// believed only when every `X-Forwarded-For` hop is a trusted proxy.
    #[serde(default)]
    pub client_address_header: Option<String>,
    pub rules: Vec<RuleConfig>,
}

fn default_ipv6_prefix() -> u8 {
    64
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
    /// Only for operations with this name (as written in the document); any when absent.
    #[serde(default)]
    pub operation: Option<String>,
    /// Only for operations that select this root field (`signIn`): unlike a name, a client
    /// cannot change it to dodge the rule.
    #[serde(default)]
    pub root_field: Option<String>,
    /// `user`, `client`, `ip`, `operation` or `argument:<rootField>.<argument>[.<field>...]`.
    pub key: String,
    /// Requests per `per`.
    pub limit: u64,
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub per: Duration,
    /// Requests allowed at once (default: `limit`).
    #[serde(default)]
    pub burst: Option<u64>,
    /// How often one operation may select `root_field` (aliases count): more is refused
    /// outright with `ROOT_FIELD_REPEATED`. Default 1 when `root_field` is set, so one request
    /// cannot carry six password guesses.
    #[serde(default)]
    pub max_per_operation: Option<u32>,
}

struct Rule {
    name: String,
    operation: Option<String>,
    root_field: Option<String>,
    /// With `root_field`: how often one operation may select it.
    max_per_operation: u32,
    key: KeySource,
    quota: Quota,
}

/// Why a request is refused.
enum Verdict {
    /// A rule's budget is spent: 429.
    Limited(String, Quota, Decision),
    /// The operation selects a rule's root field more often than allowed: 400.
    Repeated {
        field: String,
        count: usize,
        max: u32,
    },
}

struct Limiter {
    rules: Vec<Rule>,
    addresses: AddressRules,
    memory: MemoryBackend,
    redis: Option<RedisBackend>,
    decisions: Counter<u64>,
    fallbacks: Counter<u64>,
}

pub struct RateLimit {
    limiter: Arc<Limiter>,
}

impl RateLimit {
    pub fn new(config: RateLimitConfig) -> Result<Self, BoxError> {
        let fail = |e: String| -> BoxError { format!("rate_limit: {e}").into() };
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
            if rule.max_per_operation == Some(0) {
                return Err(fail(format!(
                    "rule {}: max_per_operation must be positive",
                    rule.name
                )));
            }
            if rule.max_per_operation.is_some() && rule.root_field.is_none() {
                return Err(fail(format!(
                    "rule {}: max_per_operation needs root_field",
                    rule.name
                )));
            }
            rules.push(Rule {
                name: rule.name.clone(),
                operation: rule.operation.clone(),
                root_field: rule.root_field.clone(),
                max_per_operation: rule.max_per_operation.unwrap_or(1),
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
        let addresses = AddressRules {
            trusted: config.trusted_proxies,
            ipv6_prefix: config.ipv6_prefix,
            client_header: config
                .client_address_header
                .map(|h| h.trim().to_ascii_lowercase()),
        };
        addresses.validate().map_err(fail)?;
        let meter = apollo_router::metrics::meter_provider().meter("switchyard");
        let limiter = Limiter {
            rules,
            addresses,
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
        // At zero from the start, so the Redis alert's rate has a series to read.
        limiter.fallbacks.add(0, &[]);
        Ok(Self {
            limiter: Arc::new(limiter),
        })
    }

    /// The `rate limit` stage.
    pub fn supergraph_service(&self, service: supergraph::BoxService) -> supergraph::BoxService {
        let limiter = self.limiter.clone();
        ServiceBuilder::new()
            .checkpoint_async(move |request: supergraph::Request| {
                let limiter = limiter.clone();
                async move {
                    let verdict = tracing::Instrument::instrument(
                        limiter.check(&request),
                        tracing::info_span!("switchyard.rate_limit"),
                    )
                    .await;
                    match verdict {
                        None => Ok(ControlFlow::Continue(request)),
                        Some(Verdict::Limited(rule, quota, decision)) => Ok(ControlFlow::Break(
                            too_many(&rule, &quota, &decision, request.context)?,
                        )),
                        Some(Verdict::Repeated { field, count, max }) => Ok(ControlFlow::Break(
                            repeated(&field, count, max, request.context)?,
                        )),
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
    /// The first rule that refuses the request, if any. Every matching root field is one
    /// attempt (aliases count), and an argument key that cannot be resolved is counted in one
    /// fixed bucket rather than skipping the rule.
    async fn check(&self, request: &supergraph::Request) -> Option<Verdict> {
        let headers = request.supergraph_request.headers();
        let typed = GraphqlRequest::of(&request.context);
        let shape = typed
            .as_deref()
            .and_then(|t| t.operation.as_ref())
            .map(operation_shape)
            .unwrap_or_default();
        let empty = Object::new();
        let variables = typed.as_deref().map(|t| &t.variables).unwrap_or(&empty);
        let operation = shape.name.clone();
        for rule in &self.rules {
            if let Some(only) = &rule.operation
                && operation.as_deref() != Some(only.as_str())
            {
                continue;
            }
            let attempts = match &rule.root_field {
                Some(field) => {
                    let count = shape.fields_named(field).count();
                    if count == 0 {
                        continue;
                    }
                    if count > rule.max_per_operation as usize {
                        return Some(Verdict::Repeated {
                            field: field.clone(),
                            count,
                            max: rule.max_per_operation,
                        });
                    }
                    count
                }
                None => 1,
            };
            let values: Vec<String> = match &rule.key {
                KeySource::User => {
                    // A rule whose key is absent (no user on an anonymous request) does not
                    // apply: anonymous requests meet the per-IP rules.
                    let Some(user) = request
                        .context
                        .get::<_, String>(CONTEXT_USER)
                        .ok()
                        .flatten()
                    else {
                        continue;
                    };
                    vec![user; attempts]
                }
                KeySource::Client => {
                    let client = typed
                        .as_deref()
                        .and_then(|t| t.client.name.clone())
                        .unwrap_or_else(|| "unknown".to_owned());
                    vec![client; attempts]
                }
                KeySource::Ip => vec![self.client_address(headers).key(); attempts],
                KeySource::Operation => {
                    vec![operation.clone().unwrap_or_else(|| "anonymous".to_owned()); attempts]
                }
                KeySource::Argument(path) => {
                    let mut values: Vec<String> = shape
                        .fields_named(&path[0])
                        .map(|field| {
                            argument_of(field, path, variables)
                                .unwrap_or_else(|| UNRESOLVED.to_owned())
                        })
                        .collect();
                    if values.is_empty() {
                        values.push(UNRESOLVED.to_owned());
                    }
                    values
                }
            };
            for value in values {
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
                    return Some(Verdict::Limited(rule.name.clone(), rule.quota, decision));
                }
            }
        }
        None
    }

    /// The client's address from every `X-Forwarded-For` line and the CDN header; a line
    /// that is not text stops the walk like an unparseable hop.
    fn client_address(&self, headers: &http::HeaderMap) -> ClientAddress {
        let lines: Option<Vec<&str>> = headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.to_str().ok())
            .collect();
        let Some(lines) = lines else {
            return ClientAddress::Unresolvable;
        };
        let cdn = self
            .addresses
            .client_header
            .as_deref()
            .and_then(|name| headers.get(name))
            .map(|v| v.to_str().unwrap_or("not text"));
        self.addresses.client(&lines, cdn)
    }

    async fn decide(&self, key: &str, quota: &Quota) -> Decision {
        if let Some(redis) = &self.redis {
            match redis.check(key, quota).await {
                Ok(decision) => return decision,
                Err(e) => {
                    self.fallbacks.add(1, &[]);
                    // Logged once per failure, not again for each request while Redis rests.
                    if let RedisError::Failed(e) = e {
                        tracing::warn!("switchyard.rate_limit: using in-process limits: {e}");
                    }
                }
            }
        }
        self.memory.check(key, quota, crate::plugins::now_ms())
    }
}

/// The key of an argument that cannot be read (absent, not a string, behind a variable that
/// was not sent): one shared bucket, so leaving it out never skips the rule.
const UNRESOLVED: &str = "unresolved";

/// The operation a document runs: its name and the root fields it selects (directly or
/// through fragments).
#[derive(Debug, Default)]
struct Shape {
    name: Option<String>,
    root_fields: Vec<apollo_compiler::Node<apollo_compiler::ast::Field>>,
}

impl Shape {
    /// The root fields named `name`, aliased or not.
    fn fields_named<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a apollo_compiler::Node<apollo_compiler::ast::Field>> + 'a {
        self.root_fields.iter().filter(move |f| f.name == name)
    }
}

fn operation_shape(found: &Operation) -> Shape {
    let op = found.definition();
    let fragments = operation::fragments(&found.document);
    Shape {
        name: op.name.as_ref().map(|n| n.to_string()),
        root_fields: operation::root_fields(op, &fragments)
            .into_iter()
            .cloned()
            .collect(),
    }
}

/// The string at `rootField.argument[.field...]`, from the document's literals or through its
/// variables; lower-cased and trimmed so `Ada` and `ada ` share one budget.
#[cfg(test)]
fn argument_value(
    shape: &Shape,
    path: &[String],
    variables: &serde_json_bytes::Map<serde_json_bytes::ByteString, serde_json_bytes::Value>,
) -> Option<String> {
    argument_of(shape.fields_named(&path[0]).next()?, path, variables)
}

/// The string at `argument[.field...]` of one root field (`path[0]` is the field's name).
fn argument_of(
    field: &apollo_compiler::ast::Field,
    path: &[String],
    variables: &serde_json_bytes::Map<serde_json_bytes::ByteString, serde_json_bytes::Value>,
) -> Option<String> {
    use apollo_compiler::ast::Value;
    let normalise = |s: &str| s.trim().to_lowercase();
    let argument = field
        .arguments
        .iter()
        .find(|a| a.name == path[1].as_str())?;
    let mut value: &Value = &argument.value;
    let mut rest = &path[2..];
    loop {
        match value {
            Value::Variable(name) => {
                let mut json = variables.get(name.as_str())?;
                for part in rest {
                    json = json.as_object()?.get(part.as_str())?;
                }
                return json.as_str().map(normalise);
            }
            Value::Object(fields) if !rest.is_empty() => {
                value = &fields.iter().find(|(name, _)| name == rest[0].as_str())?.1;
                rest = &rest[1..];
            }
            Value::String(s) if rest.is_empty() => return Some(normalise(s)),
            _ => return None,
        }
    }
}

fn repeated(
    field: &str,
    count: usize,
    max: u32,
    context: apollo_router::Context,
) -> Result<supergraph::Response, BoxError> {
    supergraph::Response::error_builder()
        .error(
            graphql::Error::builder()
                .message(format!(
                    "the operation selects {field} {count} times; at most {max} per operation"
                ))
                .extension_code("ROOT_FIELD_REPEATED")
                .extension("field", field.to_owned())
                .extension("limit", max)
                .build(),
        )
        .status_code(StatusCode::BAD_REQUEST)
        .context(context)
        .build()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn shape_of(query: &str, name: Option<&str>) -> Shape {
        let limits = operation::ParseLimits {
            max_tokens: 5_000,
            max_recursion: 100,
        };
        operation::parse(query, limits)
            .and_then(|d| Operation::select(d, name))
            .map(|op| operation_shape(&op))
            .unwrap_or_default()
    }

    fn field_names(shape: &Shape) -> Vec<String> {
        shape
            .root_fields
            .iter()
            .map(|f| f.name.to_string())
            .collect()
    }

    #[test]
    fn operation_shape_sees_through_names_and_fragments() {
        let shape = shape_of(
            "mutation Innocent { ...F } fragment F on Mutation { signIn(input: {}) { accessToken } }",
            None,
        );
        assert_eq!(shape.name.as_deref(), Some("Innocent"));
        assert_eq!(field_names(&shape), ["signIn"]);
        let shape = shape_of("query A { a } query B { b c }", Some("B"));
        assert_eq!(
            (shape.name.as_deref(), field_names(&shape)),
            (Some("B"), vec!["b".to_owned(), "c".to_owned()])
        );
        assert!(shape_of("{ broken", None).root_fields.is_empty());
    }

    #[test]
    fn argument_values_follow_literals_and_variables() {
        let path: Vec<String> = ["signIn", "input", "login"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let vars = |json: serde_json::Value| {
            serde_json_bytes::Value::from(json)
                .as_object()
                .unwrap()
                .clone()
        };
        let literal = shape_of(
            "mutation { signIn(input: {login: \" Ada \", password: \"x\"}) { accessToken } }",
            None,
        );
        assert_eq!(
            argument_value(&literal, &path, &vars(serde_json::json!({}))).as_deref(),
            Some("ada")
        );
        let whole = shape_of(
            "mutation($whatever: SignInInput!) { signIn(input: $whatever) { accessToken } }",
            None,
        );
        let v = vars(serde_json::json!({"whatever": {"login": "ADA"}}));
        assert_eq!(argument_value(&whole, &path, &v).as_deref(), Some("ada"));
        let part = shape_of(
            "mutation($l: String!) { signIn(input: {login: $l, password: \"x\"}) { accessToken } }",
            None,
        );
        assert_eq!(
            argument_value(&part, &path, &vars(serde_json::json!({"l": "Grace"}))).as_deref(),
            Some("grace")
        );
        assert_eq!(
            argument_value(&part, &path, &vars(serde_json::json!({}))),
            None
        );
    }

    /// The Redis script and the in-process algorithm agree (needs the local Redis).
    #[tokio::test]
    async fn redis_backend_matches_gcra() {
        let redis = RedisBackend::new(
            "redis://127.0.0.1:6379",
            format!("switchyard:test:{}:", rand_suffix()),
            Duration::from_secs(2),
        )
        .unwrap();
        let quota = Quota {
            limit: 5,
            period_ms: 60_000,
            burst: 5,
        };
        for i in 0..5 {
            let d = redis
                .check("k", &quota)
                .await
                .expect("Redis at 127.0.0.1:6379 (see .ci/run)");
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 4 - i);
        }
        let d = redis.check("k", &quota).await.unwrap();
        assert!(!d.allowed);
        assert!((11_000..=12_000).contains(&d.retry_after_ms), "{d:?}");
        assert!(
            redis.check("other", &quota).await.unwrap().allowed,
            "keys are separate"
        );
    }

    #[tokio::test]
    async fn unreachable_redis_is_an_error_not_a_hang() {
        let redis = RedisBackend::new(
            "redis://127.0.0.1:1",
            "x:".into(),
            Duration::from_millis(100),
        )
        .unwrap();
        let started = std::time::Instant::now();
        assert!(
            redis
                .check(
                    "k",
                    &Quota {
                        limit: 1,
                        period_ms: 1000,
                        burst: 1
                    }
                )
                .await
                .is_err()
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(RedisBackend::new("not a url", "x:".into(), Duration::from_millis(100)).is_err());
    }

    fn rand_suffix() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    }
}
