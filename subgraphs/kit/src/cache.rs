//! What the router's response cache needs from a subgraph: how long a response may be reused
//! and by whom (cache hints), which entities it was built from (tags), and which entities a
//! mutation changed (invalidations).
//!
//! Hints are declared twice on a type or field, once for each consumer:
//! `cache_control(max_age = 60)` makes async-graphql compute the response's `Cache-Control`
//! (the minimum over every hinted type and field the operation selects, `private` if any is
//! private), and `directive = cacheControl::apply(..)` puts `@cacheControl` in the exported
//! schema, where composition carries it into the supergraph for the router and the explorer to
//! show. [`check_hints`] fails a subgraph's tests when the two disagree.
//!
//! Tags are recorded by the code that loads an entity, not read off the response: a response
//! depends on `Post:1` even when the client did not select `id`. The subgraph sends them in
//! [`TAGS_HEADER`], space-separated like a CDN's `Surrogate-Key`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextRequest};
use async_graphql::registry::MetaType;
use async_graphql::{Context, Enum, Response, TypeDirective, Value};

pub use switchyard_wire::names::{INVALIDATE_HEADER, TAGS_HEADER};

/// More tags than this and the response is sent without any, which the router treats as "not
/// cacheable": a response that cannot be invalidated precisely is not worth the risk.
pub const MAX_TAGS: usize = 1_000;

/// Who may reuse a response: anyone (`PUBLIC`), or only the user it was made for.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum CacheControlScope {
    Public,
    Private,
}

/// How long, and for whom, data from this type or field may be served from a cache.
#[TypeDirective(
    location = "Object",
    location = "FieldDefinition",
    composable = "https://switchyard.dev/cache/v1.0"
)]
pub fn cacheControl(max_age: i32, scope: CacheControlScope) {}

/// The tags and invalidations of one request, shared by its resolvers.
#[derive(Clone, Default)]
pub struct CacheTags(Arc<Mutex<Recorded>>);

#[derive(Default)]
struct Recorded {
    tags: BTreeSet<String>,
    invalidate: BTreeSet<String>,
}

impl CacheTags {
    fn with<T>(&self, f: impl FnOnce(&mut Recorded) -> T) -> T {
        let mut recorded = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut recorded)
    }

    /// Puts the recorded tags and invalidations on the response's headers.
    pub fn apply(&self, response: &mut Response) {
        self.with(|recorded| {
            if response.is_ok()
                && !recorded.tags.is_empty()
                && recorded.tags.len() <= MAX_TAGS
                && let Some(value) = header_value(&recorded.tags)
            {
                response.http_headers.insert(TAGS_HEADER, value);
            }
            if let Some(value) = header_value(&recorded.invalidate) {
                response.http_headers.insert(INVALIDATE_HEADER, value);
            }
        })
    }
}

fn header_value(tags: &BTreeSet<String>) -> Option<axum::http::HeaderValue> {
    if tags.is_empty() {
        return None;
    }
    let joined = tags
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    axum::http::HeaderValue::from_str(&joined).ok()
}

/// The tag of one entity.
pub fn tag_of(type_name: &str, id: impl std::fmt::Display) -> String {
    format!("{type_name}:{id}")
}

/// Records that this request's response was built from `type_name` `id`.
pub fn tag(ctx: &Context<'_>, type_name: &str, id: impl std::fmt::Display) {
    if let Some(tags) = ctx.data_opt::<CacheTags>() {
        tags.with(|r| r.tags.insert(tag_of(type_name, id)));
    }
}

/// Records that this request changed `type_name` `id`: cached responses built from it must go.
pub fn invalidate(ctx: &Context<'_>, type_name: &str, id: impl std::fmt::Display) {
    if let Some(tags) = ctx.data_opt::<CacheTags>() {
        tags.with(|r| r.invalidate.insert(tag_of(type_name, id)));
    }
}

/// Compares every type's and field's `cache_control(..)` with its `@cacheControl` directive
/// and lists the differences. Pass the schema builder a subgraph's `schema()` uses.
pub async fn check_hints<Q, M, S>(builder: async_graphql::SchemaBuilder<Q, M, S>) -> Vec<String>
where
    Q: async_graphql::ObjectType + 'static,
    M: async_graphql::ObjectType + 'static,
    S: async_graphql::SubscriptionType + 'static,
{
    let found = Arc::new(Mutex::new(Vec::new()));
    let schema = builder.extension(HintProbe(found.clone())).finish();
    schema.execute("{ __typename }").await;
    let found = found.lock().unwrap_or_else(|p| p.into_inner());
    found.clone()
}

struct HintProbe(Arc<Mutex<Vec<String>>>);

impl ExtensionFactory for HintProbe {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(HintProbe(self.0.clone()))
    }
}

#[async_trait::async_trait]
impl Extension for HintProbe {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut problems = Vec::new();
        for ty in ctx.schema_env.registry.types.values() {
            let MetaType::Object {
                name,
                fields,
                cache_control,
                directive_invocations,
                ..
            } = ty
            else {
                continue;
            };
            compare(name, cache_control, directive_invocations, &mut problems);
            for field in fields.values() {
                let at = format!("{name}.{}", field.name);
                compare(
                    &at,
                    &field.cache_control,
                    &field.directive_invocations,
                    &mut problems,
                );
            }
        }
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = problems;
        next.run(ctx).await
    }
}

fn compare(
    at: &str,
    declared: &async_graphql::CacheControl,
    directives: &[async_graphql::registry::MetaDirectiveInvocation],
    problems: &mut Vec<String>,
) {
    let directive = directives.iter().find(|d| d.name == "cacheControl");
    let from_directive = directive.map(|d| {
        let max_age = match d.args.get("maxAge") {
            Some(Value::Number(n)) => n.as_i64().unwrap_or(0) as i32,
            _ => 0,
        };
        let public =
            !matches!(d.args.get("scope"), Some(Value::Enum(s)) if s.as_str() == "PRIVATE");
        (max_age, public)
    });
    // `no_cache` (-1) is published as `maxAge: 0`, Apollo's "not cacheable".
    let from_attribute = (*declared != async_graphql::CacheControl::default())
        .then_some((declared.max_age.max(0), declared.public));
    if from_directive != from_attribute {
        problems.push(format!(
            "{at}: cache_control(..) gives {from_attribute:?} but @cacheControl gives {from_directive:?} (max age, public)"
        ));
    }
}
