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
//!
//! Inside an `_entities` fetch, [`tag_entity`] and [`hint_entity`] record a tag or hint for
//! one entity (named `Type:id`, as the router's representation names it), sent per entity in
//! [`ENTITY_HINTS_HEADER`]: the router's entity cache keeps each entity on its own, so a like
//! drops exactly the post it changed. A plain [`tag`] inside `_entities` is shared by every
//! entity of the fetch (async-graphql does not tell a resolver which entity it works for, so
//! only the resolver can say).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextRequest};
use async_graphql::registry::MetaType;
use async_graphql::{Context, Enum, QueryPathSegment, Response, TypeDirective, Value};
pub use switchyard_wire::entity_hints::{self, FetchHints};

pub use switchyard_wire::names::{ENTITY_HINTS_HEADER, INVALIDATE_HEADER, TAGS_HEADER};

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
    /// Hints resolvers declared at run time, for the whole response.
    hint: Option<async_graphql::CacheControl>,
    /// Inside an `_entities` fetch: the tags and hints of each entity, and those shared.
    entities: Option<FetchHints>,
}

impl CacheTags {
    fn with<T>(&self, f: impl FnOnce(&mut Recorded) -> T) -> T {
        let mut recorded = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut recorded)
    }

    /// Puts the recorded tags and invalidations on the response's headers, and lowers its
    /// `Cache-Control` to the hints resolvers declared.
    pub fn apply(&self, response: &mut Response) {
        self.with(|recorded| {
            if let Some(hint) = recorded.hint {
                response.cache_control = merge(response.cache_control, hint);
            }
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
            if recorded.tags.len() > MAX_TAGS {
                // Without its tags nothing may be cached: it could never be invalidated.
                response.cache_control = async_graphql::CacheControl {
                    public: false,
                    max_age: -1,
                };
            }
            // Sent with errors too: the router caches the entities that have none.
            if let Some(entities) = &recorded.entities
                && entities.tag_count() <= MAX_TAGS
                && entities.entities.len() <= entity_hints::MAX_ENTITIES
                && let Ok(value) =
                    axum::http::HeaderValue::from_str(&entity_hints::encode(entities))
            {
                response.http_headers.insert(ENTITY_HINTS_HEADER, value);
            }
        })
    }
}

/// async-graphql's own merge (not public): the stricter of two hints; `max_age` 0 is "no
/// hint", -1 is `no-cache`.
fn merge(
    a: async_graphql::CacheControl,
    b: async_graphql::CacheControl,
) -> async_graphql::CacheControl {
    async_graphql::CacheControl {
        public: a.public && b.public,
        max_age: match (a.max_age, b.max_age) {
            (-1, _) | (_, -1) => -1,
            (a, 0) => a,
            (0, b) => b,
            (a, b) => a.min(b),
        },
    }
}

/// Where a resolver runs in an `_entities` fetch: `None` outside one, `Some(true)` when it
/// resolves an entity itself (the entity resolver, or a field of the entity: the path is
/// `_entities` or `_entities.<field>`), `Some(false)` below that, where `self` is some other
/// object inside the entity and a tag it records belongs to the entity around it.
fn in_entities(ctx: &Context<'_>) -> Option<bool> {
    let mut node = ctx.path_node.as_ref()?;
    let mut depth = 1;
    while let Some(parent) = node.parent {
        node = parent;
        depth += 1;
    }
    matches!(node.segment, QueryPathSegment::Name("_entities")).then_some(depth <= 2)
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

/// The name of an entity, as the router's entity cache knows it: `Type:id`, from the
/// representation's `__typename` and `id` (pass the `ID` the entity was resolved with).
pub fn entity(type_name: &str, id: &str) -> String {
    tag_of(type_name, id)
}

/// Records that this request's response was built from `type_name` `id`. Inside an
/// `_entities` fetch every entity of it carries the tag; [`tag_entity`] gives it to one.
pub fn tag(ctx: &Context<'_>, type_name: &str, id: impl std::fmt::Display) {
    record_tag(ctx, None, tag_of(type_name, id));
}

/// Records that `entity` (see [`entity`]), and so this response, was built from
/// `type_name` `id`. Call it from the entity resolver or a field of the entity itself, with
/// the entity's own name; deeper down (a follower inside a user's `followers`), or outside an
/// `_entities` fetch, it is [`tag`]: the entity is then not the one the resolver names.
pub fn tag_entity(ctx: &Context<'_>, entity: &str, type_name: &str, id: impl std::fmt::Display) {
    record_tag(ctx, Some(entity), tag_of(type_name, id));
}

fn record_tag(ctx: &Context<'_>, entity: Option<&str>, tag: String) {
    let Some(tags) = ctx.data_opt::<CacheTags>() else {
        return;
    };
    let inside = in_entities(ctx);
    tags.with(|r| {
        if let Some(top) = inside {
            let hints = r.entities.get_or_insert_with(FetchHints::default);
            match entity.filter(|_| top) {
                Some(entity) => {
                    let own = hints.entities.entry(entity.to_owned()).or_default();
                    own.tags.insert(tag.clone());
                }
                None => {
                    hints.shared.insert(tag.clone());
                }
            }
        }
        r.tags.insert(tag);
    });
}

/// Declares at run time that this response may be reused for at most `max_age_secs` (0: not
/// at all), and only by this user when `scope` is private. The static `cache_control(..)`
/// hints still apply; this only makes them stricter.
pub fn hint(ctx: &Context<'_>, max_age_secs: u32, scope: CacheControlScope) {
    record_hint(ctx, None, max_age_secs, scope);
}

/// [`hint`] for one entity of an `_entities` fetch: its neighbours keep their own age and
/// scope in the router's entity cache (the response as a whole takes the strictest). Where
/// [`tag_entity`] would not name the entity, this is [`hint`].
pub fn hint_entity(ctx: &Context<'_>, entity: &str, max_age_secs: u32, scope: CacheControlScope) {
    record_hint(ctx, Some(entity), max_age_secs, scope);
}

fn record_hint(
    ctx: &Context<'_>,
    entity: Option<&str>,
    max_age_secs: u32,
    scope: CacheControlScope,
) {
    let Some(tags) = ctx.data_opt::<CacheTags>() else {
        return;
    };
    let private = scope == CacheControlScope::Private;
    let declared = async_graphql::CacheControl {
        public: !private,
        // 0 would read as "no hint" to async-graphql: say `no-cache` (-1) instead.
        max_age: if max_age_secs == 0 {
            -1
        } else {
            i32::try_from(max_age_secs).unwrap_or(i32::MAX)
        },
    };
    let entity = entity.filter(|_| in_entities(ctx) == Some(true));
    tags.with(|r| {
        r.hint = Some(match r.hint {
            Some(hint) => merge(hint, declared),
            None => declared,
        });
        if let Some(entity) = entity {
            let hints = r.entities.get_or_insert_with(FetchHints::default);
            let own = hints.entities.entry(entity.to_owned()).or_default();
            own.max_age = Some(own.max_age.map_or(max_age_secs, |a| a.min(max_age_secs)));
            own.private |= private;
        }
    });
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

#[cfg(test)]
mod tests {
    use async_graphql::{EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject};

    use super::*;

    #[derive(SimpleObject)]
    struct Thing {
        id: ID,
    }

    struct Query;

    #[Object]
    impl Query {
        async fn many(&self, ctx: &Context<'_>) -> i32 {
            for i in 0..=MAX_TAGS {
                tag(ctx, "Thing", i);
            }
            1
        }

        #[graphql(entity)]
        async fn find_thing_by_id(&self, ctx: &Context<'_>, id: ID) -> Thing {
            let name = entity("Thing", &id);
            tag_entity(ctx, &name, "Thing", id.as_str());
            tag(ctx, "Everything", 1);
            if id.as_str() == "2" {
                hint_entity(ctx, &name, 5, CacheControlScope::Private);
            }
            Thing { id }
        }
    }

    async fn run(query: &str) -> Response {
        let schema = Schema::build(Query, EmptyMutation, EmptySubscription)
            .enable_federation()
            .finish();
        let tags = CacheTags::default();
        let mut response = schema
            .execute(async_graphql::Request::new(query).data(tags.clone()))
            .await;
        tags.apply(&mut response);
        response
    }

    #[tokio::test]
    async fn each_entity_gets_its_own_tags_and_hints() {
        let response = run(
            r#"{ _entities(representations: [{__typename: "Thing", id: "1"}, {__typename: "Thing", id: "2"}]) { ... on Thing { id } } }"#,
        )
        .await;
        assert!(response.errors.is_empty(), "{:?}", response.errors);
        let header = response.http_headers[ENTITY_HINTS_HEADER].to_str().unwrap();
        let hints = entity_hints::decode(header.as_bytes()).unwrap();
        assert_eq!(hints.of(Some("Thing:1")).0, ["Everything:1", "Thing:1"]);
        let (tags, own) = hints.of(Some("Thing:2"));
        assert_eq!(tags, ["Everything:1", "Thing:2"]);
        let own = own.unwrap();
        assert_eq!((own.max_age, own.private), (Some(5), true));
        // The whole response takes the strictest hint.
        assert_eq!(
            response.cache_control.value().as_deref(),
            Some("max-age=5, private")
        );
        assert_eq!(
            response.http_headers[TAGS_HEADER],
            "Everything:1 Thing:1 Thing:2"
        );
    }

    /// Regression: a response with more tags than the header carries was sent untagged with
    /// its `Cache-Control`, so a cache kept what no invalidation could reach.
    #[tokio::test]
    async fn too_many_tags_make_a_response_uncacheable() {
        let response = run("{ many }").await;
        assert!(!response.http_headers.contains_key(TAGS_HEADER));
        assert_eq!(
            response.cache_control.value().as_deref(),
            Some("no-cache, private")
        );
        // Outside `_entities` nothing is sent per entity.
        assert!(!response.http_headers.contains_key(ENTITY_HINTS_HEADER));
    }
}
