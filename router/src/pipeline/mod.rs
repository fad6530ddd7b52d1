//! `switchyard.pipeline`: the router's request path, one stage after another, in an order
//! fixed here in code rather than by the order of keys in YAML.
//!
//! At the front door (`router_service`), each stage is a plain call with typed values between
//! them:
//!
//! 1. `guard` ([`crate::plugins::headers_guard`]): client-sent internal headers are removed.
//! 2. `negotiate` ([`crate::plugins::graphql_over_http`]): which media type the answer has.
//! 3. `read` ([`read`]): the HTTP request, read once into a [`read::GraphqlRequest`]; what
//!    cannot be read one way only is refused.
//! 4. `authenticate` ([`crate::plugins::jwt_auth`]): the bearer token, verified.
//! 5. `safelist` ([`crate::plugins::persisted_queries`]): persisted ids expanded; in `enforce`
//!    mode nothing else runs.
//! 6. `document` ([`document`]): size bound, one parse, the operation selected, variables
//!    normalised.
//! 7. `cache lookup` ([`crate::plugins::response_cache`]): hits answered with stored bytes.
//! 8. `forward` ([`forward`]): the typed request encoded again for apollo-router, which
//!    parses, validates and plans exactly that.
//!
//! Then, once apollo-router knows the operation (`supergraph_service`): `limits`
//! ([`crate::plugins::operation_limits`]), `rate limit` ([`crate::plugins::rate_limit`]) and
//! `cache fill`; at each subgraph fetch (`subgraph_service`): `subgraph identity` (who the
//! caller is), the cache's hints, tags and invalidations, and `entity cache`
//! ([`crate::plugins::entity_cache`]: each fetch and each entity answered from the cache where
//! it can be). Every refusal, ours or apollo-router's, leaves with `Cache-Control: no-store`.

pub mod document;
pub mod forward;
pub mod read;
pub mod refusal;

use std::sync::Arc;

use apollo_router::layers::ServiceBuilderExt;
use apollo_router::plugin::{Plugin, PluginInit};
use apollo_router::register_plugin;
use apollo_router::services::{router, subgraph, supergraph};
use apollo_router::{Context, Endpoint, ListenAddr};
use schemars::JsonSchema;
use serde::Deserialize;
use tower::{BoxError, ServiceBuilder, ServiceExt};

use self::read::{GraphqlRequest, ReadConfig};
use self::refusal::Refusal;
use crate::plugins::entity_cache::EntityCache;
use crate::plugins::graphql_over_http::{self, GraphqlOverHttpConfig, Negotiated};
use crate::plugins::headers_guard::{HeadersGuard, HeadersGuardConfig};
use crate::plugins::jwt_auth::{JwtAuth, JwtAuthConfig};
use crate::plugins::operation_limits::{OperationLimits, OperationLimitsConfig};
use crate::plugins::persisted_queries::{PersistedQueries, PersistedQueriesConfig};
use crate::plugins::rate_limit::{RateLimit, RateLimitConfig};
use crate::plugins::response_cache::{ResponseCache, ResponseCacheConfig};

/// Configuration of `switchyard.pipeline`: one key per stage. A stage whose key is absent
/// does not run, except `guard`, `graphql_over_http` and `read`, which always do (with their
/// defaults when absent).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Internal header prefixes stripped from client requests.
    #[serde(default)]
    pub headers_guard: HeadersGuardConfig,
    /// Response media types (GraphQL over HTTP).
    #[serde(default)]
    pub graphql_over_http: GraphqlOverHttpConfig,
    /// Bounds on request bodies, query strings and documents.
    #[serde(default)]
    pub read: ReadConfig,
    /// Bearer tokens (JWT) and the identity subgraphs are told.
    #[serde(default)]
    pub jwt_auth: Option<JwtAuthConfig>,
    /// The persisted-operation safelist.
    #[serde(default)]
    pub persisted_queries: Option<PersistedQueriesConfig>,
    /// Depth, alias, root-field, token and cost limits.
    #[serde(default)]
    pub operation_limits: Option<OperationLimitsConfig>,
    /// Rate limits.
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// Whole-response caching.
    #[serde(default)]
    pub response_cache: Option<ResponseCacheConfig>,
}

/// The stages that run before apollo-router sees the request.
struct Front {
    guard: HeadersGuard,
    negotiate: bool,
    read: ReadConfig,
    authenticate: Option<Arc<JwtAuth>>,
    safelist: Option<PersistedQueries>,
    cache: Option<Arc<ResponseCache>>,
    refusals: opentelemetry::metrics::Counter<u64>,
}

pub struct Pipeline {
    front: Arc<Front>,
    authenticate: Option<Arc<JwtAuth>>,
    limits: Option<OperationLimits>,
    rate_limit: Option<RateLimit>,
    cache: Option<Arc<ResponseCache>>,
    entity_cache: Option<Arc<EntityCache>>,
}

#[async_trait::async_trait]
impl Plugin for Pipeline {
    type Config = PipelineConfig;

    async fn new(init: PluginInit<Self::Config>) -> Result<Self, BoxError> {
        let config = init.config;
        let fail = |e: BoxError| -> BoxError { format!("switchyard.pipeline.{e}").into() };
        crate::deployment::check(&config, crate::deployment::current())
            .map_err(|e| fail(e.into()))?;
        let guard = HeadersGuard::new(&config.headers_guard).map_err(fail)?;
        let authenticate = match config.jwt_auth {
            Some(c) => Some(Arc::new(JwtAuth::new(c).await.map_err(fail)?)),
            None => None,
        };
        let safelist = config
            .persisted_queries
            .map(PersistedQueries::new)
            .transpose()
            .map_err(fail)?;
        let limits = config
            .operation_limits
            .map(|c| OperationLimits::new(c, &init.supergraph_sdl))
            .transpose()
            .map_err(fail)?;
        let rate_limit = config
            .rate_limit
            .map(RateLimit::new)
            .transpose()
            .map_err(fail)?;
        let entities = config.response_cache.as_ref().and_then(|c| {
            let entities = c.entities.clone().filter(|e| e.enabled)?;
            Some((entities, c.max_ttl))
        });
        let cache = config
            .response_cache
            .map(ResponseCache::new)
            .transpose()
            .map_err(fail)?
            .map(Arc::new);
        let entity_cache = match (entities, cache.as_ref().and_then(|c| c.levels())) {
            (Some((entities, max_ttl)), Some(levels)) => Some(Arc::new(
                EntityCache::new(&entities, levels, max_ttl, &init.supergraph_sdl).map_err(fail)?,
            )),
            _ => None,
        };
        check_read(&config.read).map_err(fail)?;
        Ok(Self {
            front: Arc::new(Front {
                guard,
                negotiate: config.graphql_over_http.enabled,
                read: config.read,
                authenticate: authenticate.clone(),
                safelist,
                cache: cache.clone(),
                refusals: {
                    use opentelemetry::metrics::MeterProvider;
                    apollo_router::metrics::meter_provider()
                        .meter("switchyard")
                        .u64_counter("switchyard.pipeline.refusals")
                        .with_description(
                            "Requests the front stages refused, by stage and error code",
                        )
                        .build()
                },
            }),
            authenticate,
            limits,
            rate_limit,
            cache,
            entity_cache,
        })
    }

    fn router_service(&self, service: router::BoxService) -> router::BoxService {
        let front = self.front.clone();
        let inner: RouterInner = ServiceBuilder::new()
            .buffered()
            .service(service)
            .boxed_clone();
        tower::service_fn(move |request: router::Request| {
            let front = front.clone();
            let inner = inner.clone();
            async move { front.run(request, inner).await }
        })
        .boxed()
    }

    fn supergraph_service(&self, service: supergraph::BoxService) -> supergraph::BoxService {
        // Innermost first: read bottom-up, this is the order a request passes.
        let mut service = service;
        if let Some(cache) = &self.cache {
            service = cache.supergraph_service(service);
        }
        if let Some(rate_limit) = &self.rate_limit {
            service = rate_limit.supergraph_service(service);
        }
        if let Some(limits) = &self.limits {
            service = limits.supergraph_service(service);
        }
        service
    }

    fn subgraph_service(&self, name: &str, service: subgraph::BoxService) -> subgraph::BoxService {
        // Innermost first (a request passes them bottom-up): identity headers are on the
        // request before the caches see it, and the whole-response cache records the hints
        // of the answer the entity cache gives, hit or not.
        let mut service = service;
        if let Some(entities) = &self.entity_cache {
            service = entities.subgraph_service(name, service);
        }
        if let Some(cache) = &self.cache {
            service = cache.subgraph_service(service);
        }
        if let Some(authenticate) = &self.authenticate {
            service = authenticate.subgraph_service(service);
        }
        service
    }

    fn web_endpoints(&self) -> multimap::MultiMap<ListenAddr, Endpoint> {
        self.cache
            .as_ref()
            .map(|c| c.web_endpoints())
            .unwrap_or_default()
    }
}

fn check_read(read: &ReadConfig) -> Result<(), BoxError> {
    if read.body_timeout.is_zero() {
        return Err("read.body_timeout must be positive".into());
    }
    for (name, value) in [
        ("max_body_bytes", read.max_body_bytes),
        ("max_query_string_bytes", read.max_query_string_bytes),
        ("max_document_bytes", read.max_document_bytes),
        ("parser_max_tokens", read.parser_max_tokens),
        ("parser_max_recursion", read.parser_max_recursion),
    ] {
        if value == 0 {
            return Err(format!("read.{name} must be positive").into());
        }
    }
    Ok(())
}

/// The rest of the pipeline, as a cloneable service.
type RouterInner = tower::util::BoxCloneService<router::Request, router::Response, BoxError>;

/// What the front stages decided.
enum Step {
    /// Answered here (a cache hit).
    Answered(router::Response),
    /// On to apollo-router.
    Forward(router::Request),
}

impl Front {
    async fn run(
        &self,
        request: router::Request,
        inner: RouterInner,
    ) -> Result<router::Response, BoxError> {
        let router::Request {
            router_request,
            context,
            ..
        } = request;
        let (mut parts, body) = router_request.into_parts();
        // 1. guard
        self.guard.strip(&mut parts.headers);
        // 2. negotiate
        let negotiated = if self.negotiate {
            graphql_over_http::negotiate(&parts.headers)
        } else {
            Negotiated::Json
        };
        let response = match self.stages(parts, body, &context).await {
            Ok(Step::Answered(response)) => response,
            Ok(Step::Forward(request)) => inner.oneshot(request).await?,
            Err(refusal) => refusal.into_response(context)?,
        };
        let mut response = if self.negotiate {
            graphql_over_http::finish(response, negotiated).await?
        } else {
            response
        };
        let status = response.response.status();
        refusal::mark_no_store(response.response.headers_mut(), status);
        Ok(response)
    }

    /// Stages 3 to 8, each in its own span (children of apollo-router's `router` span, so a
    /// trace shows where the front door spent its time) and each refusal counted by stage and
    /// code.
    async fn stages(
        &self,
        mut parts: http::request::Parts,
        body: router::Body,
        context: &Context,
    ) -> Result<Step, Refusal> {
        use tracing::{Instrument, info_span};
        // 3. read
        let mut request = read::read(&self.read, &parts, body)
            .instrument(info_span!("switchyard.read"))
            .await
            .map_err(|r| self.refused("read", r))?;
        // 4. authenticate
        if let Some(authenticate) = &self.authenticate {
            authenticate
                .authenticate(&parts.headers, context)
                .instrument(info_span!("switchyard.authenticate"))
                .await
                .map_err(|r| self.refused("authenticate", r))?;
        }
        // 5. safelist
        if let Some(safelist) = &self.safelist {
            info_span!("switchyard.safelist")
                .in_scope(|| safelist.check(&mut request))
                .map_err(|r| self.refused("safelist", r))?;
        }
        // 6. document
        info_span!("switchyard.document")
            .in_scope(|| document::prepare(&self.read, &mut request))
            .map_err(|r| self.refused("document", r))?;
        // 7. cache lookup
        if let Some(cache) = &self.cache {
            let span = info_span!("switchyard.cache_lookup", hit = tracing::field::Empty);
            let found = cache
                .lookup(&request, &parts.headers, context)
                .instrument(span.clone())
                .await;
            span.record("hit", matches!(found, Ok(Some(_))));
            match found {
                Ok(Some(hit)) => return Ok(Step::Answered(hit)),
                Ok(None) => {}
                Err(e) => tracing::warn!("switchyard.pipeline: cache lookup failed: {e}"),
            }
        }
        // 8. forward
        let body = info_span!("switchyard.forward")
            .in_scope(|| forward::encode(&mut parts, &request))
            .map_err(|r| self.refused("forward", r))?;
        context
            .extensions()
            .with_lock(|e| e.insert(Arc::new(request)));
        Ok(Step::Forward(router::Request::from((
            http::Request::from_parts(parts, body),
            context.clone(),
        ))))
    }

    /// Counts a refusal (`switchyard.pipeline.refusals`: stage and code, both fixed sets).
    fn refused(&self, stage: &'static str, refusal: Refusal) -> Refusal {
        self.refusals.add(
            1,
            &[
                opentelemetry::KeyValue::new("stage", stage),
                opentelemetry::KeyValue::new("code", refusal.code),
            ],
        );
        refusal
    }
}

impl GraphqlRequest {
    /// The typed request of a request in flight, as the front stages left it.
    pub fn of(context: &Context) -> Option<Arc<GraphqlRequest>> {
        context
            .extensions()
            .with_lock(|e| e.get::<Arc<GraphqlRequest>>().cloned())
    }
}

/// The `plugins:` section of a router YAML that runs the pipeline with `stages` (its keys at
/// two-space indentation, as tests and the benchmarks write them); empty `stages` give no
/// section at all (stock apollo-router).
pub fn plugins_yaml(stages: &str) -> String {
    if stages.trim().is_empty() {
        return String::new();
    }
    let mut out = String::from("plugins:\n  switchyard.pipeline:\n");
    for line in stages.lines().filter(|l| !l.trim().is_empty()) {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

register_plugin!("switchyard", "pipeline", Pipeline);

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(file: &str) -> serde_yaml::Value {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// The shipped configs parse (every key known), and apollo-router's own parser limits
    /// equal the pipeline's, so no document is parsed by one and refused by the other.
    #[test]
    fn shipped_configs_parse_and_agree_on_parser_limits() {
        for file in ["router.yaml", "router.production.yaml"] {
            let yaml = shipped(file);
            let pipeline = yaml["plugins"]["switchyard.pipeline"].clone();
            let config: PipelineConfig =
                serde_yaml::from_value(pipeline).unwrap_or_else(|e| panic!("{file}: {e}"));
            let limits = &yaml["limits"]["router"];
            assert_eq!(
                limits["parser_max_tokens"].as_u64(),
                Some(config.read.parser_max_tokens as u64),
                "{file}"
            );
            assert_eq!(
                limits["parser_max_recursion"].as_u64(),
                Some(config.read.parser_max_recursion as u64),
                "{file}"
            );
        }
    }

    #[test]
    fn a_typo_names_the_key() {
        let error = serde_yaml::from_str::<PipelineConfig>("reed: {}")
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `reed`"), "{error}");
        let error = serde_yaml::from_str::<PipelineConfig>("read: {max_body_byte: 1}")
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `max_body_byte`"), "{error}");
        assert!(check_read(&serde_yaml::from_str("max_document_bytes: 0").unwrap()).is_err());
    }
}
