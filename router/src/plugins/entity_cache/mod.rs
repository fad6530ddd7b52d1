//! The pipeline's `entity cache` stage, at each subgraph fetch (`subgraph_service`): every
//! entity of an `_entities` fetch and every root fetch is cached on its own, in the response
//! cache's two levels (in-process LRU in front of Redis), so a personalised response that
//! the whole-response cache cannot share still reuses its public parts.
//!
//! - **Entity fetches**: each representation is looked up by itself (subgraph, the fetch's
//!   selection, its other variables, the representation, and the user when the entity was
//!   PRIVATE); only the representations that missed are sent, and the answer is merged back in
//!   the order the query planner asked for, errors moved to the position they belong to.
//!   With `split_private_fields`, a fetch selecting both public and PRIVATE fields (by the
//!   supergraph's `@cacheControl`) is sent as two ([`scopes`]): the public half is one entry
//!   per entity for every user, the private half one per entity and user.
//! - **Root fetches** (a feed page): cached by subgraph, operation text and variables.
//! - What an answer may be reused for is what the subgraph said: its `Cache-Control` (scope
//!   and age), lowered per entity by [`switchyard_wire::names::ENTITY_HINTS_HEADER`], which
//!   also carries each entity's own tags, so an invalidation drops exactly the entities that
//!   changed. An entity with an error, a PRIVATE entity without a signed-in user, or an answer
//!   that cannot be matched to what was sent is not cached.
//! - The answer it gives carries the strictest hint and every tag of what it was built from,
//!   so the whole-response cache behind it stores nothing longer than its parts may live.
//!
//! Invalidations need nothing of their own here: entries are tagged in the shared levels,
//! and the response cache's invalidation (mutations, the admin endpoint, Redis pub/sub)
//! drops both kinds. Redis failing means misses and skipped writes, never a failed fetch.

pub mod config;
pub mod fetch;
mod metrics;
pub mod scopes;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apollo_router::graphql;
use apollo_router::layers::ServiceBuilderExt;
use apollo_router::services::{OperationKind, subgraph};
use http::{HeaderMap, HeaderValue, StatusCode};
use lru::LruCache;
use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider;
use serde_json_bytes::Value;
use switchyard_wire::cache_key::{FetchKeys, private_key};
use switchyard_wire::entity_hints::{self, EntityHints};

use switchyard_wire::names::ENTITY_HINTS_HEADER;
use tower::{BoxError, ServiceBuilder, ServiceExt};

use self::config::EntityCacheConfig;
use self::fetch::Answer;
use self::metrics::Metrics;
use self::scopes::{Scopes, Split};
use crate::plugins::jwt_auth::CONTEXT_USER;
use crate::plugins::response_cache::Cache;
use crate::plugins::response_cache::config::whole_seconds;
use crate::plugins::response_cache::entry::{Entry, Meta, now_ms};
use crate::plugins::response_cache::flight::{self, Role};
use crate::plugins::response_cache::hints::{Hint, TAGS_HEADER, parse_cache_control, tags};

/// Fetch documents whose split is remembered (the query planner makes a bounded set of them;
/// this bounds it whatever it makes).
const SPLITS_REMEMBERED: usize = 1024;

pub struct EntityCache {
    levels: Arc<Cache>,
    rules: HashMap<String, Rule>,
    /// The supergraph's scopes, when entity fetches are split.
    scopes: Option<Scopes>,
    splits: Mutex<LruCache<String, Option<Arc<Split>>>>,
    /// The supergraph's object types: the only `type` labels metrics use (shared strings,
    /// so labelling a lookup allocates nothing).
    types: HashSet<Arc<str>>,
    metrics: Metrics,
}

/// One subgraph's settings, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rule {
    enabled: bool,
    max_ttl: u32,
}

/// The rest of the subgraph pipeline, as a cloneable service.
type Inner = tower::util::BoxCloneService<subgraph::Request, subgraph::Response, BoxError>;

impl EntityCache {
    /// `default_max_ttl` is the response cache's `max_ttl`, the default of ours.
    pub fn new(
        config: &EntityCacheConfig,
        levels: Arc<Cache>,
        default_max_ttl: Duration,
        supergraph_sdl: &str,
    ) -> Result<Self, BoxError> {
        let fail = |e: String| -> BoxError { format!("response_cache.entities: {e}").into() };
        let schema = apollo_compiler::Schema::parse(supergraph_sdl, "supergraph.graphql")
            .map_err(|e| fail(format!("cannot read the supergraph: {}", e.errors)))?;
        let max_ttl =
            whole_seconds(config.max_ttl.unwrap_or(default_max_ttl), "max_ttl").map_err(fail)?;
        let names: Vec<String> = crate::supergraph::graphs(&schema)
            .into_iter()
            .map(|g| g.name)
            .collect();
        let mut rules: HashMap<String, Rule> = names
            .iter()
            .map(|name| {
                let rule = Rule {
                    enabled: config.enabled,
                    max_ttl,
                };
                (name.clone(), rule)
            })
            .collect();
        for (name, subgraph) in &config.subgraphs {
            let Some(rule) = rules.get_mut(name) else {
                return Err(fail(format!(
                    "subgraphs.{name}: the supergraph has no subgraph of that name (it has {})",
                    names.join(", ")
                )));
            };
            rule.enabled = config.enabled && subgraph.enabled;
            if let Some(ttl) = subgraph.max_ttl {
                let what = format!("subgraphs.{name}.max_ttl");
                rule.max_ttl = whole_seconds(ttl, &what).map_err(fail)?.min(max_ttl);
            }
        }
        let types = schema
            .types
            .iter()
            .filter(|(_, ty)| ty.is_object())
            .map(|(name, _)| Arc::from(name.as_str()))
            .collect();
        let meter = apollo_router::metrics::meter_provider().meter("switchyard");
        Ok(Self {
            levels,
            rules,
            scopes: config.split_private_fields.then(|| Scopes::new(&schema)),
            splits: Mutex::new(LruCache::new(
                std::num::NonZeroUsize::new(SPLITS_REMEMBERED).expect("not zero"),
            )),
            types,
            metrics: Metrics::new(&meter),
        })
    }

    /// The stage for subgraph `name`: nothing when it is off for that subgraph.
    pub fn subgraph_service(
        self: &Arc<Self>,
        name: &str,
        service: subgraph::BoxService,
    ) -> subgraph::BoxService {
        let Some(rule) = self.rules.get(name).copied().filter(|r| r.enabled) else {
            return service;
        };
        // The series dashboards read exist from the start, at zero.
        self.metrics
            .saved
            .add(0, &[KeyValue::new("subgraph", name.to_owned())]);
        let inner: Inner = ServiceBuilder::new()
            .buffered()
            .service(service)
            .boxed_clone();
        let this = self.clone();
        let subgraph: Arc<str> = name.into();
        tower::service_fn(move |request: subgraph::Request| {
            let this = this.clone();
            let inner = inner.clone();
            let subgraph = subgraph.clone();
            async move {
                let user = request
                    .context
                    .get::<_, String>(CONTEXT_USER)
                    .ok()
                    .flatten();
                let fetch = Fetch {
                    cache: &this,
                    subgraph: &subgraph,
                    rule,
                    user,
                };
                fetch.run(request, inner).await
            }
        })
        .boxed()
    }

    /// The split of an entity fetch's document, remembered.
    fn split(&self, document: &str) -> Option<Arc<Split>> {
        let scopes = self.scopes.as_ref()?;
        let mut splits = self.splits.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = splits.get(document) {
            return known.clone();
        }
        let split = scopes.split(document).map(Arc::new);
        splits.put(document.to_owned(), split.clone());
        split
    }
}

/// One fetch through the stage.
struct Fetch<'a> {
    cache: &'a EntityCache,
    subgraph: &'a Arc<str>,
    rule: Rule,
    user: Option<String>,
}

/// The keys an entry may be under: public, then (signed in) private.
struct Slot {
    public: usize,
    private: Option<usize>,
}

/// What the answer this stage gives says about caching it, for the whole-response cache:
/// the strictest of every entry used and every answer fetched, and all their tags.
#[derive(Default)]
struct Combined {
    max_age: Option<u32>,
    private: bool,
    /// Some part had no hint, or refused caching: then so does the answer.
    missing: bool,
    refused: bool,
    tags: BTreeSet<String>,
}

impl Combined {
    fn entry(&mut self, entry: &Entry, now: u64) {
        let left = entry
            .expires_at_ms()
            .saturating_sub(now)
            .div_ceil(1000)
            .max(1);
        self.age(u32::try_from(left).unwrap_or(u32::MAX), entry.meta.private);
        self.tags.extend(entry.meta.tags.iter().cloned());
    }

    /// A subgraph answer: its `Cache-Control`, and every tag it carried.
    fn fetched(&mut self, headers: &HeaderMap, tags: &[String]) {
        match parse_cache_control(headers) {
            Hint::Cacheable { max_age, private } => self.age(max_age, private),
            Hint::Missing => self.missing = true,
            Hint::Refused(_) => self.refused = true,
        }
        self.tags.extend(tags.iter().cloned());
    }

    fn age(&mut self, max_age: u32, private: bool) {
        self.max_age = Some(self.max_age.map_or(max_age, |a| a.min(max_age)));
        self.private |= private;
    }

    fn write(&self, headers: &mut HeaderMap) {
        headers.remove(http::header::CACHE_CONTROL);
        headers.remove(TAGS_HEADER);
        headers.remove(ENTITY_HINTS_HEADER);
        let value = if self.refused {
            Some("no-store".to_owned())
        } else if self.missing {
            None
        } else {
            self.max_age.map(|age| match self.private {
                true => format!("max-age={age}, private"),
                false => format!("max-age={age}"),
            })
        };
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(http::header::CACHE_CONTROL, value);
        }
        let joined = self
            .tags
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        if !joined.is_empty()
            && let Ok(value) = HeaderValue::from_str(&joined)
        {
            headers.insert(TAGS_HEADER, value);
        }
    }
}

/// What one document's fetch of the missed representations gave.
struct Fetched {
    /// By original position.
    entities: Vec<(usize, Value)>,
    /// Entries a concurrent identical fetch stored while this one waited for it.
    reused: Vec<Arc<Entry>>,
    /// Moved to the original positions.
    errors: Vec<graphql::Error>,
    status: StatusCode,
    /// The subgraph's answer headers; `None` when nothing had to be sent after all.
    headers: Option<HeaderMap>,
    /// Every tag the answer carried (its tag header and its per-entity hints).
    tags: Vec<String>,
}

impl Fetch<'_> {
    async fn run(
        &self,
        request: subgraph::Request,
        inner: Inner,
    ) -> Result<subgraph::Response, BoxError> {
        let body = request.subgraph_request.body();
        if !matches!(request.operation_kind, OperationKind::Query) || body.query.is_none() {
            self.count_fetch("bypass");
            return inner.oneshot(request).await;
        }
        match fetch::representations(body) {
            Some(representations) if !representations.is_empty() => {
                let representations = representations.clone();
                self.entities(request, representations, inner).await
            }
            Some(_) => inner.oneshot(request).await,
            None => self.root(request, inner).await,
        }
    }

    /// Each slot's entry: memory first (public, then private key), then Redis in one round
    /// trip for the slots memory could not answer at all. With Redis's invalidation
    /// generation when Redis was asked and answered.
    async fn find<'s>(
        &self,
        lookup: &[String],
        slots: impl Iterator<Item = &'s Slot>,
    ) -> (Vec<Option<Arc<Entry>>>, Option<u64>) {
        let levels = &self.cache.levels;
        let mut found: Vec<Option<Arc<Entry>>> = vec![None; lookup.len()];
        let mut unanswered = Vec::new();
        for slot in slots {
            let at = std::iter::once(slot.public)
                .chain(slot.private)
                .find_map(|at| Some((at, levels.in_memory(&lookup[at])?)));
            match at {
                Some((at, entry)) => found[at] = Some(entry),
                None => {
                    unanswered.push(slot.public);
                    unanswered.extend(slot.private);
                }
            }
        }
        if unanswered.is_empty() {
            return (found, None);
        }
        let keys: Vec<String> = unanswered.iter().map(|i| lookup[*i].clone()).collect();
        let (entries, generation) = levels.lookup_each(&keys).await;
        for (at, entry) in unanswered.into_iter().zip(entries) {
            found[at] = entry;
        }
        (found, generation)
    }

    fn with_user(&self, public: String, into: &mut Vec<String>) -> Slot {
        let private = self.user.as_deref().map(|user| private_key(&public, user));
        into.push(public);
        let public = into.len() - 1;
        let private = private.map(|key| {
            into.push(key);
            into.len() - 1
        });
        Slot { public, private }
    }

    /// A root fetch: one entry for the whole answer.
    async fn root(
        &self,
        request: subgraph::Request,
        inner: Inner,
    ) -> Result<subgraph::Response, BoxError> {
        let levels = &self.cache.levels;
        let context = request.context.clone();
        let body = request.subgraph_request.body();
        let keys = FetchKeys::new(
            self.subgraph,
            body.query.as_deref().unwrap_or_default(),
            body.operation_name.as_deref(),
            &body.variables,
            None,
        );
        let mut lookup = Vec::with_capacity(2);
        let slot = self.with_user(keys.fetch(), &mut lookup);
        let (found, generation) = self.find(&lookup, std::iter::once(&slot)).await;
        if let Some(entry) = found.into_iter().flatten().next() {
            self.count_lookups("root", "hit", 1);
            self.count_fetch("hit");
            return self.answer_root(&entry, context);
        }
        self.count_lookups("root", "miss", 1);
        // Concurrent misses for one fetch: one goes, the others wait and look again.
        let leader = match levels.flights().join(&lookup[slot.public]) {
            Role::Leader(leader) => Some(leader),
            Role::Follower(waiting) => {
                flight::wait(waiting).await;
                if let Some(entry) = lookup.iter().find_map(|key| levels.in_memory(key)) {
                    self.count_fetch("coalesced");
                    return self.answer_root(&entry, context);
                }
                None
            }
        };
        self.count_fetch("miss");
        let started = now_ms();
        let response = inner.oneshot(request).await?;
        match self.root_entry(&response) {
            Ok(entry) => {
                let key = match (entry.meta.private, slot.private) {
                    (true, Some(private)) => lookup[private].clone(),
                    _ => lookup[slot.public].clone(),
                };
                self.keep(key, entry, generation, started).await;
            }
            Err(reason) => self.count_uncacheable(reason),
        }
        if let Some(leader) = leader {
            leader.finish(None);
        }
        Ok(response)
    }

    /// The entry of a root fetch's answer, or why there is none.
    fn root_entry(&self, response: &subgraph::Response) -> Result<Entry, &'static str> {
        if response.response.status() != StatusCode::OK {
            return Err("status");
        }
        let body = response.response.body();
        if !body.errors.is_empty() {
            return Err("errors");
        }
        let Some(data @ Value::Object(_)) = &body.data else {
            return Err("no_data");
        };
        let headers = response.response.headers();
        let (max_age, private) = self.scope(headers, None)?;
        let body = serde_json::to_vec(data).map_err(|_| "unserializable")?;
        Ok(self.entry(max_age, private, tags(headers, TAGS_HEADER).collect(), body))
    }

    fn entry(&self, max_age: u32, private: bool, tags: Vec<String>, body: Vec<u8>) -> Entry {
        Entry {
            meta: Meta {
                stored_at_ms: now_ms(),
                max_age: max_age.min(self.rule.max_ttl),
                private,
                tags,
                etag: String::new(),
            },
            body: body.into(),
        }
    }

    /// The age and scope an answer (or one entity of it, with its own hints) may be kept for.
    fn scope(
        &self,
        headers: &HeaderMap,
        entity: Option<&EntityHints>,
    ) -> Result<(u32, bool), &'static str> {
        let (mut max_age, mut private) = match parse_cache_control(headers) {
            Hint::Cacheable { max_age, private } => (max_age, private),
            Hint::Missing => return Err("no_hint"),
            Hint::Refused(_) => return Err("subgraph_refused"),
        };
        if let Some(entity) = entity {
            max_age = entity.max_age.map_or(max_age, |a| a.min(max_age));
            private |= entity.private;
        }
        if max_age == 0 {
            return Err("subgraph_refused");
        }
        if private && self.user.is_none() {
            return Err("private_without_user");
        }
        Ok((max_age, private))
    }

    fn answer_root(
        &self,
        entry: &Entry,
        context: apollo_router::Context,
    ) -> Result<subgraph::Response, BoxError> {
        let data: Value = serde_json::from_slice(&entry.body)?;
        let mut combined = Combined::default();
        combined.entry(entry, now_ms());
        let mut headers = HeaderMap::new();
        combined.write(&mut headers);
        self.respond(context, StatusCode::OK, headers, data, Vec::new())
    }

    fn respond(
        &self,
        context: apollo_router::Context,
        status: StatusCode,
        headers: HeaderMap,
        data: Value,
        errors: Vec<graphql::Error>,
    ) -> Result<subgraph::Response, BoxError> {
        Ok(subgraph::Response::builder()
            .data(data)
            .errors(errors)
            .extensions(serde_json_bytes::Map::new())
            .status_code(status)
            .headers(headers)
            .context(context)
            .subgraph_name(self.subgraph.to_string())
            .build())
    }

    /// An entity fetch: each representation (and, split, each half of it) on its own.
    async fn entities(
        &self,
        request: subgraph::Request,
        representations: Vec<Value>,
        inner: Inner,
    ) -> Result<subgraph::Response, BoxError> {
        let context = request.context.clone();
        let body = request.subgraph_request.body();
        let query = body.query.clone().unwrap_or_default();
        let split = self.cache.split(&query);
        let documents: Vec<&str> = match &split {
            Some(split) => vec![&split.public, &split.private],
            None => vec![&query],
        };
        let mut lookup = Vec::new();
        let slots: Vec<Vec<Slot>> = documents
            .iter()
            .map(|document| {
                let keys = FetchKeys::new(
                    self.subgraph,
                    document,
                    body.operation_name.as_deref(),
                    &body.variables,
                    Some("representations"),
                );
                representations
                    .iter()
                    .map(|r| self.with_user(keys.entity(r), &mut lookup))
                    .collect()
            })
            .collect();
        let (found, generation) = self.find(&lookup, slots.iter().flatten()).await;
        let now = now_ms();
        let mut merged: Vec<Option<Value>> = vec![None; representations.len()];
        let mut combined = Combined::default();
        let mut missing: Vec<Vec<usize>> = Vec::with_capacity(documents.len());
        // Lookups by (type, result), counted once per fetch rather than once per entity.
        let mut lookups: Vec<(Arc<str>, &'static str, u64)> = Vec::new();
        for part in &slots {
            let mut misses = Vec::new();
            for (at, slot) in part.iter().enumerate() {
                let hit = found[slot.public]
                    .clone()
                    .or_else(|| slot.private.and_then(|p| found[p].clone()))
                    .and_then(|entry| {
                        let value = serde_json::from_slice::<Value>(&entry.body).ok()?;
                        Some((entry, value))
                    });
                let result = match hit {
                    Some((entry, value)) => {
                        combined.entry(&entry, now);
                        fetch::merge_into(&mut merged[at], value);
                        "hit"
                    }
                    None => {
                        misses.push(at);
                        "miss"
                    }
                };
                let type_name = self.type_label(&representations[at]);
                match lookups
                    .iter_mut()
                    .find(|(t, r, _)| *t == type_name && *r == result)
                {
                    Some((_, _, n)) => *n += 1,
                    None => lookups.push((type_name, result, 1)),
                }
            }
            missing.push(misses);
        }
        for (type_name, result, n) in lookups {
            self.count_lookups(type_name, result, n);
        }
        let sent: usize = missing.iter().map(Vec::len).sum();
        let asked = representations.len() * documents.len();
        let saved = (asked - sent) as u64;
        if saved > 0 {
            self.cache
                .metrics
                .saved
                .add(saved, &[KeyValue::new("subgraph", self.subgraph.clone())]);
        }
        self.count_fetch(match sent {
            0 => "hit",
            _ if sent == asked => "miss",
            _ => "partial",
        });
        let started = now_ms();
        let calls = documents
            .iter()
            .zip(&missing)
            .zip(&slots)
            .filter(|((_, misses), _)| !misses.is_empty())
            .map(|((document, misses), part)| {
                self.fetch_part(
                    &request,
                    document,
                    &representations,
                    misses,
                    part,
                    &lookup,
                    generation,
                    started,
                    inner.clone(),
                )
            });
        let fetched = futures::future::try_join_all(calls).await?;
        let mut status = StatusCode::OK;
        let mut headers = None;
        let mut errors = Vec::new();
        let now = now_ms();
        for part in fetched {
            for entry in &part.reused {
                combined.entry(entry, now);
            }
            if let Some(answered) = &part.headers {
                combined.fetched(answered, &part.tags);
            }
            if status == StatusCode::OK {
                status = part.status;
            }
            for (at, value) in part.entities {
                fetch::merge_into(&mut merged[at], value);
            }
            errors.extend(part.errors);
            if headers.is_none() {
                headers = part.headers;
            }
        }
        let mut headers = headers.unwrap_or_default();
        combined.write(&mut headers);
        let entities = merged
            .into_iter()
            .map(|v| v.unwrap_or(Value::Null))
            .collect();
        let mut data = serde_json_bytes::Map::new();
        data.insert("_entities", Value::Array(entities));
        self.respond(context, status, headers, Value::Object(data), errors)
    }

    /// Sends one document for the representations it missed (after waiting for a concurrent
    /// identical fetch, whose entries may answer some of them), and keeps what may be kept.
    #[allow(clippy::too_many_arguments)]
    async fn fetch_part(
        &self,
        request: &subgraph::Request,
        document: &str,
        representations: &[Value],
        misses: &[usize],
        part: &[Slot],
        lookup: &[String],
        generation: Option<u64>,
        started: u64,
        inner: Inner,
    ) -> Result<Fetched, BoxError> {
        let levels = &self.cache.levels;
        let flight_key = {
            use sha2::{Digest, Sha256};
            let mut hasher = Sha256::new();
            for at in misses {
                hasher.update(lookup[part[*at].public].as_bytes());
            }
            format!("entities:{}", hex::encode(hasher.finalize()))
        };
        let mut early = Vec::new();
        let mut reused = Vec::new();
        let mut misses = misses.to_vec();
        let leader = match levels.flights().join(&flight_key) {
            Role::Leader(leader) => Some(leader),
            Role::Follower(waiting) => {
                flight::wait(waiting).await;
                misses.retain(|at| {
                    let slot = &part[*at];
                    let entry = levels
                        .in_memory(&lookup[slot.public])
                        .or_else(|| slot.private.and_then(|p| levels.in_memory(&lookup[p])));
                    let Some(entry) = entry else { return true };
                    match serde_json::from_slice::<Value>(&entry.body) {
                        Ok(value) => {
                            early.push((*at, value));
                            reused.push(entry);
                            false
                        }
                        Err(_) => true,
                    }
                });
                None
            }
        };
        if misses.is_empty() {
            return Ok(Fetched {
                entities: early,
                reused,
                errors: Vec::new(),
                status: StatusCode::OK,
                headers: None,
                tags: Vec::new(),
            });
        }
        let mut request = request.clone();
        let body = request.subgraph_request.body_mut();
        body.query = Some(document.to_owned());
        body.variables.insert(
            "representations",
            Value::Array(
                misses
                    .iter()
                    .map(|at| representations[*at].clone())
                    .collect(),
            ),
        );
        let response = inner.oneshot(request).await?;
        let (parts, body) = response.response.into_parts();
        let answer = Answer::read(body, misses.len());
        let per_entity = parts
            .headers
            .get(ENTITY_HINTS_HEADER)
            .map(|v| entity_hints::decode(v.as_bytes()));
        // Tags the subgraph named in no entity's hints belong to every entity.
        let attributed: BTreeSet<String> = match &per_entity {
            Some(Ok(hints)) => hints
                .shared
                .iter()
                .chain(hints.entities.values().flat_map(|h| &h.tags))
                .cloned()
                .collect(),
            _ => BTreeSet::new(),
        };
        let unattributed: Vec<String> = tags(&parts.headers, TAGS_HEADER)
            .filter(|t| !attributed.contains(t))
            .collect();
        let mut entities = early;
        for (sent_at, at) in misses.iter().enumerate() {
            let value = answer.entities[sent_at].clone();
            let name = fetch::entity_name(&representations[*at]);
            let verdict = if parts.status != StatusCode::OK {
                Err("status")
            } else if !answer.is_clean(sent_at) {
                Err("errors")
            } else {
                match &per_entity {
                    Some(Err(_)) => Err("bad_entity_hints"),
                    Some(Ok(hints)) => {
                        let (tags, own) = hints.of(name.as_deref());
                        self.scope(&parts.headers, own).map(|s| (s, tags))
                    }
                    None => self.scope(&parts.headers, None).map(|s| (s, Vec::new())),
                }
            };
            match verdict {
                Ok(((max_age, private), mut tags)) => {
                    tags.extend(unattributed.iter().cloned());
                    let slot = &part[*at];
                    let key = match (private, slot.private) {
                        (true, Some(p)) => lookup[p].clone(),
                        _ => lookup[slot.public].clone(),
                    };
                    let body = serde_json::to_vec(&value)?;
                    let entry = self.entry(max_age, private, tags, body);
                    self.keep(key, entry, generation, started).await;
                }
                Err(reason) => self.count_uncacheable(reason),
            }
            entities.push((*at, value));
        }
        if let Some(leader) = leader {
            leader.finish(None);
        }
        let errors = answer
            .errors
            .into_iter()
            .map(|(sent_at, mut error)| {
                if let Some(sent_at) = sent_at {
                    fetch::move_error(&mut error, misses[sent_at]);
                }
                error
            })
            .collect();
        let tags = attributed.into_iter().chain(unattributed).collect();
        Ok(Fetched {
            entities,
            reused,
            errors,
            status: parts.status,
            headers: Some(parts.headers),
            tags,
        })
    }

    /// Stores an entry unless what it was built from was invalidated while it was fetched.
    async fn keep(&self, key: String, entry: Entry, generation: Option<u64>, started: u64) {
        let levels = &self.cache.levels;
        if levels.invalidated_since(&entry.meta.tags, started) {
            self.count_uncacheable("invalidated_while_running");
            return;
        }
        let scope = if entry.meta.private {
            "private"
        } else {
            "public"
        };
        if levels.keep(key, Arc::new(entry), generation).await {
            self.cache.metrics.stores.add(
                1,
                &[
                    KeyValue::new("subgraph", self.subgraph.clone()),
                    KeyValue::new("scope", scope),
                ],
            );
        } else {
            self.count_uncacheable("invalidated_while_running");
        }
    }

    fn type_label(&self, representation: &Value) -> Arc<str> {
        let known = match representation.get("__typename") {
            Some(Value::String(name)) => self.cache.types.get(name.as_str()).cloned(),
            _ => None,
        };
        known.unwrap_or_else(|| Arc::from("other"))
    }

    fn count_lookups(
        &self,
        type_name: impl Into<opentelemetry::Value>,
        result: &'static str,
        n: u64,
    ) {
        self.cache.metrics.lookups.add(
            n,
            &[
                KeyValue::new("subgraph", self.subgraph.clone()),
                KeyValue::new("type", type_name),
                KeyValue::new("result", result),
            ],
        );
    }

    fn count_fetch(&self, outcome: &'static str) {
        self.cache.metrics.fetches.add(
            1,
            &[
                KeyValue::new("subgraph", self.subgraph.clone()),
                KeyValue::new("outcome", outcome),
            ],
        );
    }

    fn count_uncacheable(&self, reason: &'static str) {
        tracing::debug!(
            subgraph = &**self.subgraph,
            reason,
            "switchyard.entity_cache: not cached"
        );
        self.cache.metrics.uncacheable.add(
            1,
            &[
                KeyValue::new("subgraph", self.subgraph.clone()),
                KeyValue::new("reason", reason),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use apollo_router::Context;
    use serde_json_bytes::json;

    use super::*;
    use crate::plugins::response_cache::{ResponseCache, ResponseCacheConfig};

    const COUNTS: &str = "query($representations: [_Any!]!) { _entities(representations: $representations) { ... on Post { likeCount } } }";

    fn supergraph() -> String {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema/supergraph.graphql"),
        )
        .unwrap()
    }

    fn start(yaml: &str) -> Result<(Arc<EntityCache>, Arc<Cache>), String> {
        let config: ResponseCacheConfig = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        let entities = config.entities.clone().ok_or("no entities key")?;
        let max_ttl = config.max_ttl;
        let levels = ResponseCache::new(config)
            .map_err(|e| e.to_string())?
            .levels()
            .ok_or("no levels")?;
        let cache = EntityCache::new(&entities, levels.clone(), max_ttl, &supergraph())
            .map_err(|e| e.to_string())?;
        Ok((Arc::new(cache), levels))
    }

    /// What the subgraph below was sent: the ids of each request's representations.
    type Sent = Arc<StdMutex<Vec<Vec<String>>>>;

    /// A subgraph that answers `_entities` the way Apollo Server's `buildSubgraphSchema` does:
    /// each representation on its own, a failing one `null` with an error at its position;
    /// `Cache-Control` as given, and each post tagged `PostEngagement:<id>` by itself.
    fn subgraph(
        failing: &'static [&'static str],
        cache_control: &'static str,
        sent: Sent,
    ) -> subgraph::BoxService {
        tower::service_fn(move |request: subgraph::Request| {
            let sent = sent.clone();
            async move {
                let body = request.subgraph_request.body();
                let ids: Vec<String> = fetch::representations(body)
                    .map(|reps| {
                        reps.iter()
                            .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                sent.lock().unwrap().push(ids.clone());
                let mut errors = Vec::new();
                let mut hints = entity_hints::FetchHints::default();
                let entities: Vec<Value> = ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| {
                        hints.entities.insert(
                            format!("Post:{id}"),
                            EntityHints {
                                tags: [format!("PostEngagement:{id}")].into(),
                                ..Default::default()
                            },
                        );
                        if failing.contains(&id.as_str()) {
                            let mut error = graphql::Error::builder()
                                .message(format!("no post {id}"))
                                .build();
                            error.path =
                                serde_json_bytes::from_value(json!(["_entities", i, "likeCount"]))
                                    .ok();
                            errors.push(error);
                            Value::Null
                        } else {
                            json!({"likeCount": id.len()})
                        }
                    })
                    .collect();
                let mut headers = HeaderMap::new();
                headers.insert(
                    http::header::CACHE_CONTROL,
                    HeaderValue::from_static(cache_control),
                );
                headers.insert(
                    ENTITY_HINTS_HEADER,
                    HeaderValue::from_str(&entity_hints::encode(&hints)).unwrap(),
                );
                Ok(answer(request.context, entities, errors, headers))
            }
        })
        .boxed()
    }

    /// An `_entities` answer from engagement.
    fn answer(
        context: Context,
        entities: Vec<Value>,
        errors: Vec<graphql::Error>,
        headers: HeaderMap,
    ) -> subgraph::Response {
        subgraph::Response::builder()
            .data(json!({ "_entities": entities }))
            .errors(errors)
            .extensions(serde_json_bytes::Map::new())
            .headers(headers)
            .context(context)
            .subgraph_name("engagement")
            .build()
    }

    fn request(ids: &[&str], user: Option<&str>) -> subgraph::Request {
        let context = Context::new();
        if let Some(user) = user {
            context.insert(CONTEXT_USER, user.to_owned()).unwrap();
        }
        let representations: Vec<Value> = ids
            .iter()
            .map(|id| json!({"__typename": "Post", "id": id}))
            .collect();
        let mut variables = serde_json_bytes::Map::new();
        variables.insert("representations", Value::Array(representations));
        subgraph::Request::fake_builder()
            .subgraph_request(
                http::Request::builder()
                    .body(
                        graphql::Request::builder()
                            .query(COUNTS)
                            .variables(variables)
                            .build(),
                    )
                    .unwrap(),
            )
            .operation_kind(OperationKind::Query)
            .context(context)
            .build()
    }

    async fn fetch_once(
        cache: &Arc<EntityCache>,
        below: subgraph::BoxService,
        ids: &[&str],
        user: Option<&str>,
    ) -> graphql::Response {
        let service = cache.subgraph_service("engagement", below);
        service
            .oneshot(request(ids, user))
            .await
            .unwrap()
            .response
            .into_body()
    }

    fn entities(response: &graphql::Response) -> Value {
        response.data.as_ref().unwrap()["_entities"].clone()
    }

    fn error_paths(response: &graphql::Response) -> Vec<Value> {
        response
            .errors
            .iter()
            .map(|e| serde_json_bytes::to_value(&e.path).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_partial_hit_sends_only_the_misses_and_moves_their_errors() {
        let (cache, _) = start("entities: {}").unwrap();
        let sent: Sent = Default::default();
        let below = || subgraph(&["b"], "max-age=10", sent.clone());

        let first = fetch_once(&cache, below(), &["a", "b", "c"], None).await;
        assert_eq!(
            entities(&first),
            json!([{"likeCount": 1}, null, {"likeCount": 1}])
        );
        assert_eq!(error_paths(&first), [json!(["_entities", 1, "likeCount"])]);

        // a and c come from the cache; b (answered with an error) was not kept. b is sent
        // first now, so its error comes back at 0 and must point at 1 again after the merge.
        let second = fetch_once(&cache, below(), &["a", "b", "c", "dd"], None).await;
        assert_eq!(sent.lock().unwrap()[1], ["b", "dd"]);
        assert_eq!(
            entities(&second),
            json!([{"likeCount": 1}, null, {"likeCount": 1}, {"likeCount": 2}])
        );
        assert_eq!(error_paths(&second), [json!(["_entities", 1, "likeCount"])]);

        // Everything but b is cached now.
        let third = fetch_once(&cache, below(), &["dd", "c", "b"], None).await;
        assert_eq!(sent.lock().unwrap()[2], ["b"]);
        assert_eq!(error_paths(&third), [json!(["_entities", 2, "likeCount"])]);
        let all_hits = fetch_once(&cache, below(), &["c", "a"], None).await;
        assert_eq!(sent.lock().unwrap().len(), 3, "nothing sent for hits only");
        assert_eq!(
            entities(&all_hits),
            json!([{"likeCount": 1}, {"likeCount": 1}])
        );
        assert!(all_hits.errors.is_empty());
    }

    #[tokio::test]
    async fn a_private_answer_stays_with_its_user() {
        let (cache, _) = start("entities: {}").unwrap();
        let sent: Sent = Default::default();
        let below = || subgraph(&[], "max-age=10, private", sent.clone());
        fetch_once(&cache, below(), &["a"], Some("1")).await;
        fetch_once(&cache, below(), &["a"], Some("2")).await;
        assert_eq!(
            sent.lock().unwrap().len(),
            2,
            "user 2 does not get user 1's entity"
        );
        fetch_once(&cache, below(), &["a"], Some("1")).await;
        assert_eq!(
            sent.lock().unwrap().len(),
            2,
            "user 1's entity is kept for user 1"
        );
        // Anonymous callers: fetched every time, never kept.
        fetch_once(&cache, below(), &["a"], None).await;
        fetch_once(&cache, below(), &["a"], None).await;
        assert_eq!(sent.lock().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn an_invalidation_drops_exactly_its_entities() {
        let (cache, levels) = start("entities: {}").unwrap();
        let sent: Sent = Default::default();
        let below = || subgraph(&[], "max-age=10", sent.clone());
        fetch_once(&cache, below(), &["a", "b", "c"], None).await;
        let (dropped, _) = levels
            .invalidate(vec!["PostEngagement:b".into()], "admin")
            .await;
        assert_eq!(dropped, 1, "one entry: b's");
        fetch_once(&cache, below(), &["a", "b", "c"], None).await;
        assert_eq!(sent.lock().unwrap()[1], ["b"]);
    }

    #[tokio::test]
    async fn the_answer_tells_the_whole_response_cache_what_it_was_built_from() {
        let (cache, _) = start("entities: {}").unwrap();
        let sent: Sent = Default::default();
        let service =
            cache.subgraph_service("engagement", subgraph(&[], "max-age=10", sent.clone()));
        service.oneshot(request(&["a"], None)).await.unwrap();
        let service =
            cache.subgraph_service("engagement", subgraph(&[], "max-age=5", sent.clone()));
        let response = service.oneshot(request(&["a", "b"], None)).await.unwrap();
        let headers = response.response.headers();
        // The strictest of the hit (at most 10 s left) and the fetched part (5 s).
        assert_eq!(headers["cache-control"], "max-age=5");
        assert_eq!(headers[TAGS_HEADER], "PostEngagement:a PostEngagement:b");
    }

    /// Per-entity hints the stage cannot read exactly: nothing of that answer is kept (an
    /// entity must never be cached without the tags it depends on).
    #[tokio::test]
    async fn unreadable_entity_hints_keep_nothing() {
        let (cache, _) = start("entities: {}").unwrap();
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let below = || {
            let calls = calls.clone();
            tower::service_fn(move |request: subgraph::Request| {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut headers = HeaderMap::new();
                headers.insert(
                    http::header::CACHE_CONTROL,
                    HeaderValue::from_static("max-age=10"),
                );
                headers.insert(
                    ENTITY_HINTS_HEADER,
                    HeaderValue::from_static("[\"Post:a\"]"),
                );
                let entities = vec![json!({"likeCount": 1})];
                async move { Ok(answer(request.context, entities, Vec::new(), headers)) }
            })
            .boxed()
        };
        for _ in 0..2 {
            let response = fetch_once(&cache, below(), &["a"], None).await;
            assert_eq!(entities(&response), json!([{"likeCount": 1}]));
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_subgraph_switched_off_is_not_touched() {
        let (cache, _) = start("entities: {subgraphs: {engagement: {enabled: false}}}").unwrap();
        let sent: Sent = Default::default();
        for _ in 0..2 {
            fetch_once(
                &cache,
                subgraph(&[], "max-age=10", sent.clone()),
                &["a"],
                None,
            )
            .await;
        }
        assert_eq!(sent.lock().unwrap().len(), 2);
    }

    /// Concurrent identical misses make one subgraph request; the others take its entries.
    /// (The runtime has one thread: each spawned fetch runs until it waits, on the flight or
    /// on the held subgraph, before the subgraph is let go; no clock involved.)
    #[tokio::test(flavor = "current_thread")]
    async fn concurrent_identical_misses_make_one_request() {
        let (cache, _) = start("entities: {}").unwrap();
        let sent: Sent = Default::default();
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let held = {
            let gate = gate.clone();
            let below = subgraph(&[], "max-age=10", sent.clone());
            let below = ServiceBuilder::new()
                .buffered()
                .service(below)
                .boxed_clone();
            tower::service_fn(move |request: subgraph::Request| {
                let gate = gate.clone();
                let below = below.clone();
                async move {
                    let _permit = gate.acquire().await.expect("open");
                    below.oneshot(request).await
                }
            })
            .boxed_clone()
        };
        let fetches: Vec<_> = (0..10)
            .map(|_| {
                let service = cache.subgraph_service("engagement", held.clone().boxed());
                tokio::spawn(service.oneshot(request(&["a", "b"], None)))
            })
            .collect();
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(100);
        for fetch in fetches {
            let response = fetch.await.unwrap().unwrap().response.into_body();
            assert_eq!(
                entities(&response),
                json!([{"likeCount": 1}, {"likeCount": 1}])
            );
        }
        assert_eq!(sent.lock().unwrap().len(), 1, "{:?}", sent.lock().unwrap());
    }

    #[test]
    fn configuration_errors_name_the_key() {
        let error = start("entities: {subgraphs: {postz: {}}}").err().unwrap();
        assert!(error.contains("subgraphs.postz"), "{error}");
        assert!(error.contains("accounts"), "{error}");
        let error = start("entities: {max_tll: 1s}").err().unwrap();
        assert!(error.contains("unknown field `max_tll`"), "{error}");
        let error = start("entities: {subgraphs: {posts: {max_ttl: 1500ms}}}")
            .err()
            .unwrap();
        assert!(
            error.contains("subgraphs.posts.max_ttl must be a whole number"),
            "{error}"
        );
        assert!(start("enabled: false\nentities: {}").is_ok());
    }
}
