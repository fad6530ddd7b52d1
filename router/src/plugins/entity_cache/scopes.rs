//! Which fields are PRIVATE (the supergraph's `@cacheControl(scope: PRIVATE)`), and the split
//! of an entity fetch into its public and its private fields.
//!
//! A signed-in home feed asks engagement for `likeCount commentCount viewerHasLiked` of every
//! post in one fetch. Cached as one unit, that fetch is private (the viewer's like), so every
//! user misses. Sent as two fetches, `likeCount commentCount` is one public entry per post
//! that every user shares, and only `viewerHasLiked` is fetched per user.
//!
//! The split is only a guess at the scopes, made from the schema: what an answer may be reused
//! for is still decided by the `Cache-Control` that answer carries, so a field the schema calls
//! public but whose subgraph answers `private` is cached per user, never shared.

use std::collections::{HashMap, HashSet};

use apollo_compiler::ast::{self, Definition, Document, Selection};
use apollo_compiler::schema::ExtendedType;
use apollo_compiler::{Node, Schema};

/// The supergraph's scopes, read once at start-up.
#[derive(Debug, Default)]
pub struct Scopes {
    /// `(type, field)` → the field's named return type and whether it is PRIVATE.
    fields: HashMap<(String, String), (String, bool)>,
    /// Types marked PRIVATE: every field returning one is private.
    private_types: HashSet<String>,
}

/// An entity fetch, split: both documents select `_entities` like the original, one with the
/// public fields, one with the private ones.
#[derive(Debug, PartialEq, Eq)]
pub struct Split {
    pub public: String,
    pub private: String,
}

/// `@cacheControl(scope: PRIVATE)`.
fn says_private(directive: &ast::Directive) -> bool {
    directive.name == "cacheControl"
        && matches!(
            directive.specified_argument_by_name("scope").map(|v| v.as_ref()),
            Some(ast::Value::Enum(scope)) if scope.as_str() == "PRIVATE"
        )
}

impl Scopes {
    pub fn new(schema: &Schema) -> Self {
        let mut scopes = Scopes::default();
        for (type_name, ty) in &schema.types {
            let (fields, directives) = match ty {
                ExtendedType::Object(o) => (&o.fields, &o.directives),
                ExtendedType::Interface(i) => (&i.fields, &i.directives),
                _ => continue,
            };
            if directives.iter().any(|d| says_private(d)) {
                scopes.private_types.insert(type_name.to_string());
            }
            for (field_name, field) in fields {
                scopes.fields.insert(
                    (type_name.to_string(), field_name.to_string()),
                    (
                        field.ty.inner_named_type().to_string(),
                        field.directives.iter().any(|d| says_private(d)),
                    ),
                );
            }
        }
        scopes
    }

    /// Whether a selection on `parent` reads anything private: `None` when the schema cannot
    /// tell (an unknown field, a fragment spread), and then nothing is split.
    fn reads_private(&self, parent: &str, selection: &Selection) -> Option<bool> {
        match selection {
            Selection::Field(field) => {
                if field.name.starts_with("__") {
                    return Some(false);
                }
                let (returns, private) = self
                    .fields
                    .get(&(parent.to_owned(), field.name.to_string()))?;
                if *private || self.private_types.contains(returns) {
                    return Some(true);
                }
                self.any_private(returns, &field.selection_set)
            }
            Selection::InlineFragment(fragment) => {
                let on = fragment
                    .type_condition
                    .as_ref()
                    .map_or(parent, |t| t.as_str());
                self.any_private(on, &fragment.selection_set)
            }
            Selection::FragmentSpread(_) => None,
        }
    }

    fn any_private(&self, parent: &str, selections: &[Selection]) -> Option<bool> {
        let mut any = false;
        for selection in selections {
            any |= self.reads_private(parent, selection)?;
        }
        Some(any)
    }

    /// Splits an `_entities` fetch into its public and private fields, when it has both and
    /// the schema knows every field it selects; `None` otherwise (it is cached whole).
    pub fn split(&self, document: &str) -> Option<Split> {
        let document = Document::parse(document, "fetch.graphql").ok()?;
        let [Definition::OperationDefinition(operation)] = document.definitions.as_slice() else {
            return None;
        };
        let [Selection::Field(entities)] = operation.selection_set.as_slice() else {
            return None;
        };
        if entities.name != "_entities" || entities.alias.is_some() {
            return None;
        }
        // Per type condition, its selections by scope.
        let mut public = Vec::new();
        let mut private = Vec::new();
        let (mut any_public, mut any_private) = (false, false);
        for selection in &entities.selection_set {
            let Selection::InlineFragment(fragment) = selection else {
                // `__typename` beside the fragments: both halves keep it.
                match selection {
                    Selection::Field(f) if f.name == "__typename" => {
                        public.push(selection.clone());
                        private.push(selection.clone());
                        continue;
                    }
                    _ => return None,
                }
            };
            let on = fragment.type_condition.as_ref()?.as_str();
            let (mut pub_part, mut priv_part) = (Vec::new(), Vec::new());
            for inner in &fragment.selection_set {
                if matches!(inner, Selection::Field(f) if f.name == "__typename") {
                    pub_part.push(inner.clone());
                    priv_part.push(inner.clone());
                } else if self.reads_private(on, inner)? {
                    priv_part.push(inner.clone());
                    any_private = true;
                } else {
                    pub_part.push(inner.clone());
                    any_public = true;
                }
            }
            for (part, into) in [(pub_part, &mut public), (priv_part, &mut private)] {
                if part.iter().any(|s| !is_typename(s)) {
                    let mut half = fragment.as_ref().clone();
                    half.selection_set = part;
                    into.push(Selection::InlineFragment(Node::new(half)));
                }
            }
        }
        if !any_public || !any_private {
            return None;
        }
        Some(Split {
            public: with_selections(&document, operation, entities, public),
            private: with_selections(&document, operation, entities, private),
        })
    }
}

fn is_typename(selection: &Selection) -> bool {
    matches!(selection, Selection::Field(f) if f.name == "__typename")
}

/// The operation again with `selections` under `_entities`, declaring only the variables it
/// still uses (GraphQL refuses unused ones).
fn with_selections(
    document: &Document,
    operation: &ast::OperationDefinition,
    entities: &ast::Field,
    selections: Vec<Selection>,
) -> String {
    let mut field = entities.clone();
    field.selection_set = selections;
    let mut used = HashSet::new();
    variables_in_field(&field, &mut used);
    for directive in operation.directives.iter() {
        variables_in_directive(directive, &mut used);
    }
    let mut half = operation.clone();
    half.selection_set = vec![Selection::Field(Node::new(field))];
    half.variables.retain(|v| used.contains(v.name.as_str()));
    let mut out = document.clone();
    out.definitions = vec![Definition::OperationDefinition(Node::new(half))];
    out.to_string()
}

fn variables_in_field(field: &ast::Field, used: &mut HashSet<String>) {
    for argument in &field.arguments {
        variables_in_value(&argument.value, used);
    }
    for directive in field.directives.iter() {
        variables_in_directive(directive, used);
    }
    variables_in_selections(&field.selection_set, used);
}

fn variables_in_selections(selections: &[Selection], used: &mut HashSet<String>) {
    for selection in selections {
        match selection {
            Selection::Field(field) => variables_in_field(field, used),
            Selection::InlineFragment(fragment) => {
                for directive in fragment.directives.iter() {
                    variables_in_directive(directive, used);
                }
                variables_in_selections(&fragment.selection_set, used);
            }
            Selection::FragmentSpread(spread) => {
                for directive in spread.directives.iter() {
                    variables_in_directive(directive, used);
                }
            }
        }
    }
}

fn variables_in_directive(directive: &ast::Directive, used: &mut HashSet<String>) {
    for argument in &directive.arguments {
        variables_in_value(&argument.value, used);
    }
}

fn variables_in_value(value: &ast::Value, used: &mut HashSet<String>) {
    match value {
        ast::Value::Variable(name) => {
            used.insert(name.to_string());
        }
        ast::Value::List(items) => items.iter().for_each(|v| variables_in_value(v, used)),
        ast::Value::Object(fields) => fields.iter().for_each(|(_, v)| variables_in_value(v, used)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes() -> Scopes {
        let sdl = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema/supergraph.graphql"),
        )
        .unwrap();
        Scopes::new(&Schema::parse(sdl, "supergraph.graphql").unwrap())
    }

    const MIXED: &str = "query PersonalFeed__engagement__1($representations: [_Any!]!, $first: Int) { _entities(representations: $representations) { ... on Post { __typename likeCount comments(first: $first) { totalCount: __typename } viewerHasLiked } } }";

    #[test]
    fn splits_public_from_private_fields() {
        let split = scopes().split(MIXED).expect("has both");
        let public = Document::parse(split.public.as_str(), "p")
            .unwrap()
            .to_string();
        assert!(public.contains("likeCount"), "{public}");
        assert!(public.contains("comments(first: $first)"), "{public}");
        assert!(public.contains("$first: Int"), "{public}");
        assert!(!public.contains("viewerHasLiked"), "{public}");
        let private = split.private;
        assert!(private.contains("viewerHasLiked"), "{private}");
        assert!(!private.contains("likeCount"), "{private}");
        // The private half no longer uses $first, so it does not declare it.
        assert!(!private.contains("$first"), "{private}");
        assert!(private.contains("$representations"), "{private}");
        assert!(private.contains("__typename"), "{private}");
    }

    #[test]
    fn a_private_field_below_a_public_one_makes_it_private() {
        let scopes = scopes();
        let doc = "query($representations: [_Any!]!) { _entities(representations: $representations) { ... on Post { likeCount author { viewerFollows } } } }";
        let split = scopes.split(doc).expect("has both");
        assert!(split.private.contains("author"), "{}", split.private);
        assert!(!split.public.contains("author"), "{}", split.public);
    }

    #[test]
    fn leaves_whole_what_it_cannot_split_exactly() {
        let scopes = scopes();
        for doc in [
            // Only public, or only private: nothing to split.
            "query($representations: [_Any!]!) { _entities(representations: $representations) { ... on Post { likeCount } } }",
            "query($representations: [_Any!]!) { _entities(representations: $representations) { ... on Post { viewerHasLiked } } }",
            // A fragment spread, an unknown field, a root fetch, garbage.
            "query($representations: [_Any!]!) { _entities(representations: $representations) { ... on Post { likeCount ...F } } } fragment F on Post { viewerHasLiked }",
            "query($representations: [_Any!]!) { _entities(representations: $representations) { ... on Post { likeCount nope viewerHasLiked } } }",
            "{ feed { edges { cursor } } }",
            "query { _entities(",
        ] {
            assert_eq!(scopes.split(doc), None, "{doc}");
        }
    }
}
