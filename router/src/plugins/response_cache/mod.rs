//! The pipeline's `cache lookup` and `cache fill` stages: whole-response caching for queries, driven by the cache hints
//! subgraphs send (`Cache-Control`, computed from `@cacheControl`), with two levels (an
//! in-process LRU bounded by bytes, in front of Redis shared by every replica), single flight
//! for concurrent misses, tag invalidation (subgraph mutations, an admin endpoint, Redis
//! pub/sub), and `Cache-Control`/`Age` on responses so CDNs can serve public persisted GETs.
//!
//! The pipeline runs them after `authenticate`, `safelist` and `document`, so the user is
//! verified, persisted ids are expanded and the key comes from the normalised request:
//! - `cache lookup` ([`router_stage`], at the front door): a hit is answered with the stored
//!   bytes, before apollo-router parses, validates and plans the operation and before
//!   anything would serialize the response again.
//! - `cache fill` (`supergraph_service`): misses run once per key (single flight) and their
//!   responses are stored when they may be.
//! - `subgraph_service`: collects each subgraph response's hint and tags, and applies the
//!   invalidations mutations announce.
//!
//! A response is cached only when all of this holds: the operation is a query; the response
//! is complete (not incremental), has data and no errors; every subgraph response carried a
//! usable hint (or `default_max_age` is set); and a PRIVATE response has a signed-in user to
//! key it by. Everything the router did not cache is sent with `Cache-Control: no-store`.

pub mod config;
pub mod entry;
pub mod flight;
pub mod hints;
pub mod invalidation;
pub mod memory;
pub mod metrics;
pub mod redis_level;
pub mod router_stage;

pub use switchyard_wire::cache_key as key;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apollo_router::graphql;
use apollo_router::layers::ServiceBuilderExt;
use apollo_router::services::{router, subgraph, supergraph};
use apollo_router::{Context, Endpoint, ListenAddr};
use futures::StreamExt;
use http::{HeaderValue, StatusCode};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, MeterProvider, ObservableGauge};
use tower::{BoxError, ServiceBuilder, ServiceExt};

pub use self::config::{InvalidationConfig, RedisConfig, ResponseCacheConfig};
use self::entry::{Entry, Meta, now_ms};
use self::flight::{Flights, Role};
use self::hints::{INVALIDATE_HEADER, RequestHints};
use self::key::KeyParts;
use self::memory::{Lookup, MemoryLevel};
use self::metrics::Metrics;
use self::redis_level::RedisLevel;
use crate::pipeline::read::{CLIENT_NAME_HEADER, GraphqlRequest};
use crate::plugins::background::AbortOnDrop;
use crate::plugins::jwt_auth::CONTEXT_USER;
use crate::plugins::redis_connection::RedisError;

/// How long an invalidated tag is remembered, so a response computed while it was being
/// invalidated is not stored (longer than any request may take).
const INVALIDATION_MEMORY: Duration = Duration::from_secs(60);

/// The two levels, single flight and the invalidation record: shared by the whole-response
/// cache and the entity cache (`crate::plugins::entity_cache`), so one invalidation drops
/// both kinds of entry everywhere.
pub struct Cache {
    /// Whole responses are cached (`enabled`); without, the levels serve the entity cache only.
    whole: bool,
    memory: Arc<MemoryLevel>,
    redis: Option<Arc<RedisLevel>>,
    flights: Arc<Flights>,
    default_max_age: Option<u32>,
    max_ttl: u32,
    /// Tag → when it was last invalidated (unix ms).
    invalidated_at: Mutex<HashMap<String, u64>>,
    metrics: Metrics,
}

pub struct ResponseCache {
    cache: Option<Arc<Cache>>,
    endpoint: Option<(ListenAddr, Endpoint)>,
    _listener: Option<AbortOnDrop>,
    _memory_gauge: Option<ObservableGauge<u64>>,
}

/// What the request's key is, before its scope is known.
#[derive(Clone)]
struct Plan {
    public_key: String,
    private_key: Option<String>,
    user: Option<String>,
    /// Redis's invalidation generation when the lookup missed (see [`LookedUp`]).
    generation: Option<u64>,
}

impl Plan {
    fn new(parts: &KeyParts<'_>, user: Option<String>) -> Self {
        let public_key = key::public_key(parts);
        let private_key = user.as_deref().map(|u| key::private_key(&public_key, u));
        Plan {
            public_key,
            private_key,
            user,
            generation: None,
        }
    }
}

/// What the levels hold for a request.
enum Found {
    Fresh(Arc<Entry>),
    /// Only an entry past its age, within `stale_if_error`.
    Stale(Arc<Entry>),
    Nothing,
}

/// Reasons not to store that mean the subgraphs failed (rather than "not cacheable"): then a
/// stale entry is served instead.
const FAILURES: [&str; 4] = ["errors", "status", "empty", "no_data"];

/// Set when the lookup stage looked in both levels and missed, so the fill stage neither
/// derives the keys again nor asks Redis again. The plan carries the invalidation generation
/// Redis reported then (`None` without Redis or when it failed), which the fill's write must
/// not be older than.
#[derive(Clone)]
struct LookedUp(Plan);

/// The key of a request, from the typed request the pipeline read (persisted id, normalised
/// variables, client) and the verified user. `None` when it runs no parsed query.
fn plan_for(request: &GraphqlRequest, context: &Context) -> Option<Plan> {
    let operation = request.operation.as_ref().filter(|op| op.is_query())?;
    let document = request.query.as_deref()?;
    let user = context.get::<_, String>(CONTEXT_USER).ok().flatten();
    let parts = KeyParts {
        persisted_id: request.persisted_id.as_deref(),
        document,
        operation_name: operation.name(),
        variables: &request.variables,
        client: request.client.name_or_empty(),
    };
    Some(Plan::new(&parts, user))
}

impl ResponseCache {
    pub fn new(config: ResponseCacheConfig) -> Result<Self, BoxError> {
        let fail = |e: String| -> BoxError { format!("response_cache: {e}").into() };
        let entities_on = config.entities.as_ref().is_some_and(|e| e.enabled);
        if !config.enabled && !entities_on {
            return Ok(Self {
                cache: None,
                endpoint: None,
                _listener: None,
                _memory_gauge: None,
            });
        }
        if config.memory_bytes < 1024 {
            return Err(fail("memory_bytes must be at least 1024".into()));
        }
        let max_ttl = config::whole_seconds(config.max_ttl, "max_ttl").map_err(fail)?;
        let default_max_age = config
            .default_max_age
            .map(|d| config::whole_seconds(d, "default_max_age"))
            .transpose()
            .map_err(fail)?;
        let redis = match &config.redis {
            Some(r) => Some(Arc::new(
                RedisLevel::new(&r.url, r.key_prefix.clone(), r.channel.clone(), r.timeout)
                    .map_err(fail)?,
            )),
            None => None,
        };
        let meter = apollo_router::metrics::meter_provider().meter("switchyard");
        let metrics = Metrics::new(&meter);
        // Every Redis error series exists from the start (at zero, also without Redis), so a
        // dashboard or an alert on its rate never reads a series that is not there yet.
        for operation in ["get", "put", "invalidate", "subscribe"] {
            metrics
                .redis_errors
                .add(0, &[KeyValue::new("operation", operation)]);
        }
        metrics.evictions.add(0, &[]);
        let memory = Arc::new(MemoryLevel::new(
            config.memory_bytes,
            config.stale_if_error.as_millis() as u64,
        ));
        let cache = Arc::new(Cache {
            whole: config.enabled,
            memory: memory.clone(),
            redis,
            flights: Arc::new(Flights::default()),
            default_max_age,
            max_ttl,
            invalidated_at: Mutex::new(HashMap::new()),
            metrics,
        });
        let gauge_memory = memory.clone();
        let memory_gauge = meter
            .u64_observable_gauge("switchyard.response_cache.memory_bytes")
            .with_description("Bytes held by the in-process level")
            .with_callback(move |observer| observer.observe(gauge_memory.bytes() as u64, &[]))
            .build();
        let listener = cache.redis.as_ref().map(|redis| {
            let on_message = {
                let cache = cache.clone();
                move |tags: &[String], dropped: u64| {
                    cache.remember_invalidated(tags);
                    cache
                        .metrics
                        .invalidations
                        .add(tags.len() as u64, &[KeyValue::new("source", "pubsub")]);
                    cache
                        .metrics
                        .invalidated_entries
                        .add(dropped, &[KeyValue::new("level", "memory")]);
                }
            };
            let on_error = {
                let cache = cache.clone();
                move |e: &str| {
                    cache
                        .metrics
                        .redis_errors
                        .add(1, &[KeyValue::new("operation", "subscribe")]);
                    tracing::debug!("switchyard.response_cache: invalidation channel: {e}");
                }
            };
            redis.listen(memory.clone(), on_message, on_error)
        });
        let endpoint = match &config.invalidation {
            Some(invalidation) => {
                if invalidation.token.len() < 16 {
                    return Err(fail(
                        "invalidation.token must be at least 16 characters".into(),
                    ));
                }
                if !invalidation.path.starts_with('/') {
                    return Err(fail("invalidation.path must start with /".into()));
                }
                Some((
                    ListenAddr::SocketAddr(invalidation.listen),
                    invalidation::endpoint(cache.clone(), invalidation),
                ))
            }
            None => None,
        };
        Ok(Self {
            cache: Some(cache),
            endpoint,
            _listener: listener,
            _memory_gauge: Some(memory_gauge),
        })
    }

    /// The `cache lookup` stage: a fresh entry is answered with its stored bytes (or a 304),
    /// before apollo-router parses, plans or serializes anything.
    pub async fn lookup(
        &self,
        request: &GraphqlRequest,
        headers: &http::HeaderMap,
        context: &Context,
    ) -> Result<Option<router::Response>, BoxError> {
        match &self.cache {
            Some(cache) if cache.whole => cache.serve_hit(request, headers, context).await,
            _ => Ok(None),
        }
    }

    /// The levels, for the entity cache to share (`None` when neither cache is on).
    pub fn levels(&self) -> Option<Arc<Cache>> {
        self.cache.clone()
    }

    /// The `cache fill` stage.
    pub fn supergraph_service(&self, service: supergraph::BoxService) -> supergraph::BoxService {
        let Some(cache) = self.cache.clone().filter(|c| c.whole) else {
            return service;
        };
        let inner: Inner = ServiceBuilder::new()
            .buffered()
            .service(service)
            .boxed_clone();
        tower::service_fn(move |request: supergraph::Request| {
            let cache = cache.clone();
            let inner = inner.clone();
            async move { cache.serve(request, inner).await }
        })
        .boxed()
    }

    /// Hints, tags and invalidations at each subgraph fetch.
    pub fn subgraph_service(&self, service: subgraph::BoxService) -> subgraph::BoxService {
        let Some(cache) = self.cache.clone() else {
            return service;
        };
        ServiceBuilder::new()
            .and_then(move |response: subgraph::Response| {
                let cache = cache.clone();
                async move {
                    cache.on_subgraph_response(&response).await;
                    Ok(response)
                }
            })
            .service(service)
            .boxed()
    }

    pub fn web_endpoints(&self) -> multimap::MultiMap<ListenAddr, Endpoint> {
        let mut endpoints = multimap::MultiMap::new();
        if let Some((listen, endpoint)) = &self.endpoint {
            endpoints.insert(listen.clone(), endpoint.clone());
        }
        endpoints
    }
}

/// The rest of the pipeline, as a cloneable service (boxed: naming the buffer's own type
/// trips rustc's higher-ranked `Send` checks on the futures that hold it).
type Inner = tower::util::BoxCloneService<supergraph::Request, supergraph::Response, BoxError>;

impl Cache {
    /// A hit is answered with the stored bytes; a miss is remembered so the fill stage does
    /// not ask Redis again.
    async fn serve_hit(
        &self,
        request: &GraphqlRequest,
        headers: &http::HeaderMap,
        context: &Context,
    ) -> Result<Option<router::Response>, BoxError> {
        let Some(mut plan) = plan_for(request, context) else {
            return Ok(None);
        };
        let (found, generation) = self.lookup(&plan, true).await;
        if let Found::Fresh(entry) = found {
            let now = now_ms();
            // The client (or CDN) holds this very response: say so, without the body.
            let revalidated = headers
                .get(http::header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| entry::matches_etag(v, &entry.meta.etag));
            if revalidated {
                self.count_lookup("not_modified", "any");
            }
            return router_stage::respond(
                revalidated,
                entry.body.clone(),
                |headers| set_cache_headers(headers, &entry, now),
                context.clone(),
            )
            .map(Some);
        }
        plan.generation = generation;
        context.extensions().with_lock(|e| e.insert(LookedUp(plan)));
        Ok(None)
    }

    async fn serve(
        self: Arc<Self>,
        request: supergraph::Request,
        inner: Inner,
    ) -> Result<supergraph::Response, BoxError> {
        let context = request.context.clone();
        let looked_up = context
            .extensions()
            .with_lock(|e| e.get::<LookedUp>().cloned());
        let (mut plan, redis_too) = match looked_up {
            Some(LookedUp(plan)) => (plan, false),
            None => match self.plan(&request) {
                Some(plan) => (plan, true),
                None => {
                    let mut response = inner.oneshot(request).await?;
                    no_store(&mut response.response);
                    return Ok(response);
                }
            },
        };
        // Memory again (a concurrent fill may have landed); Redis only if not asked yet.
        let (found, generation) = self.lookup(&plan, redis_too).await;
        if redis_too {
            plan.generation = generation;
        }
        let stale = match found {
            Found::Fresh(hit) => return self.respond(hit, context),
            Found::Stale(entry) => Some(entry),
            Found::Nothing => None,
        };
        let flight_key = format!("{}:{}", plan.public_key, plan.user.as_deref().unwrap_or(""));
        let (response, outcome) = match self.flights.join(&flight_key) {
            Role::Follower(receiver) => {
                if let Some(entry) = flight::wait(receiver).await {
                    self.count_lookup("coalesced", "flight");
                    return self.respond(entry, context);
                }
                self.count_lookup("miss", "none");
                self.fill(&plan, request, inner).await?
            }
            Role::Leader(leader) => {
                self.count_lookup("miss", "none");
                let (response, outcome) = self.fill(&plan, request, inner).await?;
                leader.finish(outcome.as_ref().ok().cloned());
                (response, outcome)
            }
        };
        // The subgraphs failed: the last good response, if it is recent enough, instead.
        if let (Err(reason), Some(stale)) = (outcome, stale)
            && FAILURES.contains(&reason)
        {
            self.metrics
                .stale
                .add(1, &[KeyValue::new("outcome", "served")]);
            tracing::info!(
                reason,
                "switchyard.response_cache: serving a stale response"
            );
            return self.respond(stale, response.context);
        }
        Ok(response)
    }

    /// The keys of a cacheable request; `None` for mutations, subscriptions and requests
    /// the pipeline did not parse.
    fn plan(&self, request: &supergraph::Request) -> Option<Plan> {
        let typed = GraphqlRequest::of(&request.context)?;
        plan_for(&typed, &request.context)
    }

    /// The in-process level, then (with `redis_too`) Redis, which refills the in-process level;
    /// with Redis's invalidation generation when Redis was asked and answered.
    async fn lookup(&self, plan: &Plan, redis_too: bool) -> (Found, Option<u64>) {
        let now = now_ms();
        let keys: Vec<String> = std::iter::once(plan.public_key.clone())
            .chain(plan.private_key.clone())
            .collect();
        let mut stale = None;
        for key in &keys {
            match self.memory.get(key, now) {
                Lookup::Fresh(entry) => {
                    self.count_lookup("hit", "memory");
                    return (Found::Fresh(entry), None);
                }
                Lookup::Stale(entry) => {
                    self.metrics
                        .stale
                        .add(1, &[KeyValue::new("outcome", "expired")]);
                    stale = Some(entry);
                }
                Lookup::Missing(expired) => {
                    if expired {
                        self.metrics
                            .stale
                            .add(1, &[KeyValue::new("outcome", "expired")]);
                    }
                }
            }
        }
        let nothing = || match stale.clone() {
            Some(entry) => Found::Stale(entry),
            None => Found::Nothing,
        };
        let Some(redis) = self.redis.as_ref().filter(|_| redis_too) else {
            return (nothing(), None);
        };
        match redis.get(keys.clone()).await {
            Ok((Some((index, entry)), generation)) if entry.is_fresh(now) => {
                let entry = Arc::new(entry);
                self.put_memory(keys[index].clone(), entry.clone());
                self.count_lookup("hit", "redis");
                (Found::Fresh(entry), Some(generation))
            }
            Ok((_, generation)) => (nothing(), Some(generation)),
            Err(e) => {
                report_redis_error(&self.metrics.redis_errors, "get", &e);
                (nothing(), None)
            }
        }
    }

    /// Runs the request and stores its response when it may be; says what was stored, or why
    /// nothing was.
    async fn fill(
        &self,
        plan: &Plan,
        request: supergraph::Request,
        inner: Inner,
    ) -> Result<(supergraph::Response, Result<Arc<Entry>, &'static str>), BoxError> {
        let started = now_ms();
        request
            .context
            .extensions()
            .with_lock(|e| e.insert(RequestHints::default()));
        let mut response = inner.oneshot(request).await?;
        let first = response.next_response().await;
        let status = response.response.status();
        let headers = response.response.headers_mut();
        let hints = response
            .context
            .extensions()
            .with_lock(|e| e.get::<RequestHints>().cloned())
            .unwrap_or_default();
        let entry = match self.decide(status, first.as_ref(), &hints, plan) {
            Ok((max_age, private)) => {
                let body = serde_json::to_vec(first.as_ref().expect("decided on a response"))?;
                let entry = Arc::new(Entry {
                    meta: Meta {
                        stored_at_ms: now_ms(),
                        max_age,
                        private,
                        tags: hints.tags.into_iter().collect(),
                        etag: entry::etag_of(&body),
                    },
                    body: body.into(),
                });
                if self.invalidated_since(&entry.meta.tags, started) {
                    // Built from data that changed meanwhile: served, not kept by anyone, and
                    // not shared with waiting requests (they run again).
                    self.metrics
                        .uncacheable
                        .add(1, &[KeyValue::new("reason", "invalidated_while_running")]);
                    no_store_headers(headers);
                    Err("invalidated_while_running")
                } else {
                    set_cache_headers(headers, &entry, now_ms());
                    let key = match (private, &plan.private_key) {
                        (true, Some(private_key)) => private_key.clone(),
                        _ => plan.public_key.clone(),
                    };
                    self.store(key, entry.clone(), plan.generation).await;
                    Ok(entry)
                }
            }
            Err(reason) => {
                self.metrics
                    .uncacheable
                    .add(1, &[KeyValue::new("reason", reason)]);
                tracing::debug!(reason, "switchyard.response_cache: response not cached");
                no_store_headers(headers);
                Err(reason)
            }
        };
        let response = response.map(|rest| futures::stream::iter(first).chain(rest).boxed());
        Ok((response, entry))
    }

    /// The time to live and scope of a response, or why it is not cached.
    fn decide(
        &self,
        status: StatusCode,
        response: Option<&graphql::Response>,
        hints: &RequestHints,
        plan: &Plan,
    ) -> Result<(u32, bool), &'static str> {
        let response = response.ok_or("empty")?;
        if status != StatusCode::OK {
            return Err("status");
        }
        if response.has_next == Some(true)
            || response.subscribed.is_some()
            || !response.incremental.is_empty()
        {
            return Err("incremental");
        }
        if !response.errors.is_empty() {
            return Err("errors");
        }
        if response.data.as_ref().is_none_or(|d| d.is_null()) {
            return Err("no_data");
        }
        if let Some(refused) = hints.refused {
            tracing::debug!(
                refused,
                "switchyard.response_cache: a subgraph refused caching"
            );
            return Err("subgraph_refused");
        }
        let max_age = match (hints.fetches, hints.max_age) {
            (0, _) => self.default_max_age.ok_or("no_subgraph_fetch")?,
            (_, Some(age)) => age,
            (_, None) => return Err("no_hint"),
        };
        if hints.private && plan.user.is_none() {
            return Err("private_without_user");
        }
        Ok((max_age.min(self.max_ttl), hints.private))
    }

    /// Stores in memory, then in Redis before the response goes out: once a client has a
    /// response, every replica can find it (a Redis failure costs at most its timeout).
    async fn store(&self, key: String, entry: Arc<Entry>, generation: Option<u64>) {
        let scope = if entry.meta.private {
            "private"
        } else {
            "public"
        };
        self.metrics.stores.add(1, &[KeyValue::new("scope", scope)]);
        self.metrics.stored_bytes.add(entry.body.len() as u64, &[]);
        if !self.keep(key, entry, generation).await {
            self.metrics
                .uncacheable
                .add(1, &[KeyValue::new("reason", "invalidated_while_running")]);
        }
    }

    /// Puts `entry` in memory, then in Redis unless one of its tags was invalidated after
    /// `generation` (the generation the lookup read); `false` when Redis refused it so.
    pub async fn keep(&self, key: String, entry: Arc<Entry>, generation: Option<u64>) -> bool {
        self.put_memory(key.clone(), entry.clone());
        let Some(redis) = &self.redis else {
            return true;
        };
        // Without the generation of the lookup (Redis failed then), a write could not be told
        // apart from one that raced an invalidation on another replica: skip it.
        let Some(generation) = generation else {
            return true;
        };
        match redis.put(&key, &entry, now_ms(), generation).await {
            Ok(stored) => stored,
            Err(e) => {
                report_redis_error(&self.metrics.redis_errors, "put", &e);
                true
            }
        }
    }

    /// Each key's fresh entry, from memory, then (for those memory lacks) from Redis in one
    /// round trip, which refills memory; with Redis's invalidation generation when Redis was
    /// asked and answered (a later [`Self::keep`] needs it).
    pub async fn lookup_each(&self, keys: &[String]) -> (Vec<Option<Arc<Entry>>>, Option<u64>) {
        let now = now_ms();
        let mut found: Vec<Option<Arc<Entry>>> = keys
            .iter()
            .map(|key| match self.memory.get(key, now) {
                Lookup::Fresh(entry) => Some(entry),
                _ => None,
            })
            .collect();
        let missing: Vec<usize> = (0..keys.len()).filter(|i| found[*i].is_none()).collect();
        let Some(redis) = self.redis.as_ref().filter(|_| !missing.is_empty()) else {
            return (found, None);
        };
        let asked: Vec<String> = missing.iter().map(|i| keys[*i].clone()).collect();
        match redis.get_each(&asked).await {
            Ok((entries, generation)) => {
                for (at, entry) in missing.into_iter().zip(entries) {
                    if let Some(entry) = entry.filter(|e| e.is_fresh(now)) {
                        let entry = Arc::new(entry);
                        self.put_memory(keys[at].clone(), entry.clone());
                        found[at] = Some(entry);
                    }
                }
                (found, Some(generation))
            }
            Err(e) => {
                report_redis_error(&self.metrics.redis_errors, "get", &e);
                (found, None)
            }
        }
    }

    /// The fresh entry under `key` in memory only (after waiting for another request's fill).
    pub fn in_memory(&self, key: &str) -> Option<Arc<Entry>> {
        match self.memory.get(key, now_ms()) {
            Lookup::Fresh(entry) => Some(entry),
            _ => None,
        }
    }

    pub fn flights(&self) -> &Arc<Flights> {
        &self.flights
    }

    fn put_memory(&self, key: String, entry: Arc<Entry>) {
        let evicted = self.memory.put(key, entry);
        if evicted > 0 {
            self.metrics.evictions.add(evicted, &[]);
        }
    }

    fn respond(
        &self,
        entry: Arc<Entry>,
        context: Context,
    ) -> Result<supergraph::Response, BoxError> {
        let cached: graphql::Response = serde_json::from_slice(&entry.body)?;
        let mut response = supergraph::Response::builder()
            .and_data(cached.data)
            .extensions(cached.extensions)
            .context(context)
            .build()?;
        set_cache_headers(response.response.headers_mut(), &entry, now_ms());
        Ok(response)
    }

    /// Records hints and tags for the request being filled, and applies the invalidations a
    /// mutation announces (before its response goes on, so the client's next read is fresh).
    async fn on_subgraph_response(&self, response: &subgraph::Response) {
        let headers = response.response.headers();
        response.context.extensions().with_lock(|e| {
            if let Some(hints) = e.get_mut::<RequestHints>() {
                hints.record(headers, self.default_max_age);
            }
        });
        let tags: Vec<String> = hints::tags(headers, INVALIDATE_HEADER).collect();
        if !tags.is_empty() {
            let _ = self.invalidate(tags, "subgraph").await;
        }
    }

    /// Drops the tags' entries here and in Redis, and tells the other replicas. Returns the
    /// entries dropped in memory and in Redis, or the Redis error (memory is done either way).
    pub async fn invalidate(
        &self,
        tags: Vec<String>,
        source: &'static str,
    ) -> (u64, Result<u64, String>) {
        self.remember_invalidated(&tags);
        let in_memory = self.memory.invalidate(tags.iter().map(String::as_str));
        self.metrics
            .invalidations
            .add(tags.len() as u64, &[KeyValue::new("source", source)]);
        self.metrics
            .invalidated_entries
            .add(in_memory, &[KeyValue::new("level", "memory")]);
        let in_redis = match &self.redis {
            None => Ok(0),
            Some(redis) => match redis.invalidate(&tags).await {
                Ok(n) => {
                    self.metrics
                        .invalidated_entries
                        .add(n, &[KeyValue::new("level", "redis")]);
                    Ok(n)
                }
                Err(e) => {
                    report_redis_error(&self.metrics.redis_errors, "invalidate", &e);
                    Err(e.to_string())
                }
            },
        };
        (in_memory, in_redis)
    }

    fn remember_invalidated(&self, tags: &[String]) {
        let now = now_ms();
        let mut at = self
            .invalidated_at
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if at.len() > 10_000 {
            let horizon = now.saturating_sub(INVALIDATION_MEMORY.as_millis() as u64);
            at.retain(|_, t| *t >= horizon);
        }
        for tag in tags {
            at.insert(tag.clone(), now);
        }
    }

    /// Whether one of `tags` was invalidated at or after `since_ms` (then what was computed
    /// from them since must not be stored).
    pub fn invalidated_since(&self, tags: &[String], since_ms: u64) -> bool {
        let at = self
            .invalidated_at
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        !at.is_empty()
            && tags
                .iter()
                .any(|t| at.get(t).is_some_and(|when| *when >= since_ms))
    }

    fn count_lookup(&self, result: &'static str, level: &'static str) {
        self.metrics.lookups.add(
            1,
            &[
                KeyValue::new("result", result),
                KeyValue::new("level", level),
            ],
        );
    }
}

/// Counts and logs a Redis failure; calls skipped while Redis rests after a failure are
/// neither (the failure that started the rest was).
fn report_redis_error(counter: &Counter<u64>, operation: &'static str, error: &RedisError) {
    if let RedisError::Failed(e) = error {
        counter.add(1, &[KeyValue::new("operation", operation)]);
        tracing::warn!(
            "switchyard.response_cache: redis {operation} failed, carrying on without it: {e}"
        );
    }
}

/// `Cache-Control` and `Age` for a cached response, and `Vary` on the client name (part of
/// the key), so a CDN keeps one copy per client app.
fn set_cache_headers(headers: &mut http::HeaderMap, entry: &Entry, now: u64) {
    let scope = if entry.meta.private {
        "private"
    } else {
        "public"
    };
    let value = format!("{scope}, max-age={}", entry.meta.max_age);
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_str(&value).expect("ascii"),
    );
    headers.insert(http::header::AGE, HeaderValue::from(entry.age_secs(now)));
    if let Ok(etag) = HeaderValue::from_str(&entry.meta.etag)
        && !entry.meta.etag.is_empty()
    {
        headers.insert(http::header::ETAG, etag);
    }
    headers.append(
        http::header::VARY,
        HeaderValue::from_static(CLIENT_NAME_HEADER),
    );
}

fn no_store_headers(headers: &mut http::HeaderMap) {
    headers
        .entry(http::header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

fn no_store(response: &mut http::Response<graphql::ResponseStream>) {
    no_store_headers(response.headers_mut());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<ResponseCacheConfig, String> {
        serde_yaml::from_str(yaml).map_err(|e| e.to_string())
    }

    async fn start(yaml: &str) -> Result<ResponseCache, String> {
        let config = parse(yaml)?;
        ResponseCache::new(config).map_err(|e| e.to_string())
    }

    #[test]
    fn a_typo_names_the_key() {
        let error = parse("memory_byte: 1024").unwrap_err();
        assert!(error.contains("unknown field `memory_byte`"), "{error}");
        let error = parse("redis: {url: redis://x, timout: 1s}").unwrap_err();
        assert!(error.contains("unknown field `timout`"), "{error}");
        let error = parse("max_ttl: soon").unwrap_err();
        assert!(error.contains("max_ttl"), "{error}");
    }

    #[tokio::test]
    async fn bad_values_are_refused_with_the_reason() {
        for (yaml, expected) in [
            ("memory_bytes: 10", "memory_bytes must be at least 1024"),
            (
                "max_ttl: 1500ms",
                "max_ttl must be a whole number of seconds",
            ),
            (
                "default_max_age: 0s",
                "default_max_age must be a whole number",
            ),
            ("stale_if_error: later", "stale_if_error"),
            (
                "invalidation: {listen: 127.0.0.1:0, token: short}",
                "invalidation.token must be at least 16 characters",
            ),
            (
                "invalidation: {listen: 127.0.0.1:0, token: long-enough-token-123, path: nope}",
                "invalidation.path must start with /",
            ),
            ("redis: {url: not-a-url}", "redis url"),
        ] {
            let error = start(yaml).await.err().unwrap_or_default();
            assert!(error.contains(expected), "{yaml}: {error}");
        }
        assert!(start("{}").await.is_ok());
        assert!(start("enabled: false").await.is_ok());
    }
}
