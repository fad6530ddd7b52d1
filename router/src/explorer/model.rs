//! The schema as the explorer shows it: every type and field of the API schema (what clients
//! can select), with what only the supergraph knows (which subgraph resolves each field, the
//! entity keys, the `@cacheControl` hints). Computed once per supergraph.

use std::collections::{BTreeSet, HashMap};

use apollo_compiler::Schema;
use apollo_compiler::ast::{DirectiveList, Value};
use apollo_compiler::schema::ExtendedType;
use apollo_compiler::validation::Valid;
use serde::Serialize;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaModel {
    pub subgraphs: Vec<SubgraphInfo>,
    pub types: Vec<TypeInfo>,
}

#[derive(Debug, Serialize)]
pub struct SubgraphInfo {
    pub name: String,
    pub url: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeInfo {
    pub name: String,
    /// As introspection names it: `OBJECT`, `INTERFACE`, `UNION`, `ENUM`, `INPUT_OBJECT`, `SCALAR`.
    pub kind: &'static str,
    pub description: Option<String>,
    pub subgraphs: Vec<String>,
    pub keys: Vec<KeyInfo>,
    pub cache: Option<CacheHint>,
    pub interfaces: Vec<String>,
    pub possible_types: Vec<String>,
    pub enum_values: Vec<EnumValueInfo>,
    pub input_fields: Vec<InputValueInfo>,
    pub fields: Vec<FieldInfo>,
}

#[derive(Debug, Serialize)]
pub struct KeyInfo {
    pub subgraph: String,
    pub fields: String,
    pub resolvable: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheHint {
    pub max_age: Option<i32>,
    pub scope: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnumValueInfo {
    pub name: String,
    pub description: Option<String>,
    pub deprecation_reason: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InputValueInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub description: Option<String>,
    pub default_value: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub description: Option<String>,
    pub args: Vec<InputValueInfo>,
    /// `null` unless deprecated.
    pub deprecation_reason: Option<String>,
    pub cache: Option<CacheHint>,
    /// The subgraphs that resolve it (not those that only declare it `@external`).
    pub subgraphs: Vec<String>,
    pub requires: Option<String>,
    pub provides: Option<String>,
}

fn string_arg(directive: &apollo_compiler::ast::Directive, name: &str) -> Option<String> {
    directive
        .specified_argument_by_name(name)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

fn enum_arg(directive: &apollo_compiler::ast::Directive, name: &str) -> Option<String> {
    directive
        .specified_argument_by_name(name)
        .and_then(|v| v.as_enum())
        .map(|n| n.to_string())
}

fn cache_hint(directives: &DirectiveList) -> Option<CacheHint> {
    let directive = directives.get("cacheControl")?;
    Some(CacheHint {
        max_age: directive
            .specified_argument_by_name("maxAge")
            .and_then(|v| v.to_i32()),
        scope: enum_arg(directive, "scope"),
    })
}

fn deprecation(directives: &DirectiveList) -> Option<String> {
    let directive = directives.get("deprecated")?;
    Some(string_arg(directive, "reason").unwrap_or_else(|| "No longer supported".to_owned()))
}

fn description(text: Option<&apollo_compiler::Node<str>>) -> Option<String> {
    text.map(|d| d.to_string())
}

fn default_value(value: &Option<apollo_compiler::Node<Value>>) -> Option<String> {
    value.as_ref().map(|v| v.to_string())
}

/// Join-directive facts about one supergraph field.
#[derive(Default)]
struct FieldJoin {
    owners: Vec<String>,
    requires: Option<String>,
    provides: Option<String>,
}

/// Join-directive facts about one supergraph type.
struct Joined<'a> {
    graphs: Vec<String>,
    keys: Vec<KeyInfo>,
    fields: HashMap<&'a str, FieldJoin>,
}

/// Builds the model from the API schema (visibility, descriptions) and the supergraph
/// (ownership, keys, cache hints).
pub fn build(supergraph: &Valid<Schema>, api: &Valid<Schema>) -> SchemaModel {
    // join__Graph enum value (e.g. POSTS) -> subgraph name and URL.
    let mut graph_names = HashMap::new();
    let mut subgraphs = Vec::new();
    for graph in crate::supergraph::graphs(supergraph) {
        graph_names.insert(graph.value, graph.name.clone());
        subgraphs.push(SubgraphInfo {
            name: graph.name,
            url: graph.url,
        });
    }
    let graph = |value: Option<String>| value.and_then(|v| graph_names.get(&v).cloned());

    let mut types = Vec::new();
    for (name, api_type) in &api.types {
        if api_type.is_built_in() {
            continue;
        }
        let super_type = supergraph.types.get(name);
        let mut joined = Joined {
            graphs: Vec::new(),
            keys: Vec::new(),
            fields: HashMap::new(),
        };
        if let Some(super_type) = super_type {
            for jt in super_type.directives().get_all("join__type") {
                let Some(subgraph) = graph(enum_arg(jt, "graph")) else {
                    continue;
                };
                if !joined.graphs.contains(&subgraph) {
                    joined.graphs.push(subgraph.clone());
                }
                if let Some(fields) = string_arg(jt, "key") {
                    let resolvable = jt
                        .specified_argument_by_name("resolvable")
                        .and_then(|v| v.to_bool())
                        .unwrap_or(true);
                    joined.keys.push(KeyInfo {
                        subgraph,
                        fields,
                        resolvable,
                    });
                }
            }
            let super_fields = match super_type {
                ExtendedType::Object(o) => Some(&o.fields),
                ExtendedType::Interface(i) => Some(&i.fields),
                _ => None,
            };
            for (field_name, field) in super_fields.into_iter().flatten() {
                let mut owners = Vec::new();
                let (mut requires, mut provides) = (None, None);
                let mut any = false;
                for jf in field.directives.get_all("join__field") {
                    any = true;
                    let external = jf
                        .specified_argument_by_name("external")
                        .and_then(|v| v.to_bool())
                        .unwrap_or(false);
                    if let Some(subgraph) = graph(enum_arg(jf, "graph"))
                        && !external
                        && !owners.contains(&subgraph)
                    {
                        owners.push(subgraph);
                    }
                    requires = requires.or_else(|| string_arg(jf, "requires"));
                    provides = provides.or_else(|| string_arg(jf, "provides"));
                }
                // No @join__field: every subgraph that defines the type resolves it.
                if !any {
                    owners = joined.graphs.clone();
                }
                joined.fields.insert(
                    field_name.as_str(),
                    FieldJoin {
                        owners,
                        requires,
                        provides,
                    },
                );
            }
        }
        let super_directives = super_type.map(|t| t.directives());
        let type_cache = super_directives.and_then(|d| {
            let directive = d.get("cacheControl")?;
            Some(CacheHint {
                max_age: directive
                    .specified_argument_by_name("maxAge")
                    .and_then(|v| v.to_i32()),
                scope: enum_arg(directive, "scope"),
            })
        });
        let field_cache = |field_name: &str| -> Option<CacheHint> {
            let super_type = super_type?;
            let fields = match super_type {
                ExtendedType::Object(o) => &o.fields,
                ExtendedType::Interface(i) => &i.fields,
                _ => return None,
            };
            cache_hint(&fields.get(field_name)?.directives)
        };
        let mut info = TypeInfo {
            name: name.to_string(),
            kind: "SCALAR",
            description: description(api_type.description()),
            subgraphs: joined.graphs.clone(),
            keys: joined.keys,
            cache: type_cache,
            interfaces: Vec::new(),
            possible_types: Vec::new(),
            enum_values: Vec::new(),
            input_fields: Vec::new(),
            fields: Vec::new(),
        };
        let api_fields = match api_type {
            ExtendedType::Object(o) => {
                info.kind = "OBJECT";
                info.interfaces = o
                    .implements_interfaces
                    .iter()
                    .map(|i| i.to_string())
                    .collect();
                Some(&o.fields)
            }
            ExtendedType::Interface(i) => {
                info.kind = "INTERFACE";
                info.interfaces = i
                    .implements_interfaces
                    .iter()
                    .map(|i| i.to_string())
                    .collect();
                let implementers: BTreeSet<String> = api
                    .implementers_map()
                    .get(name)
                    .map(|imp| imp.objects.iter().map(|o| o.to_string()).collect())
                    .unwrap_or_default();
                info.possible_types = implementers.into_iter().collect();
                Some(&i.fields)
            }
            ExtendedType::Union(u) => {
                info.kind = "UNION";
                info.possible_types = u.members.iter().map(|m| m.to_string()).collect();
                None
            }
            ExtendedType::Enum(e) => {
                info.kind = "ENUM";
                info.enum_values = e
                    .values
                    .iter()
                    .map(|(value, def)| EnumValueInfo {
                        name: value.to_string(),
                        description: description(def.description.as_ref()),
                        deprecation_reason: deprecation(&def.directives),
                    })
                    .collect();
                None
            }
            ExtendedType::InputObject(input) => {
                info.kind = "INPUT_OBJECT";
                info.input_fields = input
                    .fields
                    .iter()
                    .map(|(field_name, def)| InputValueInfo {
                        name: field_name.to_string(),
                        ty: def.ty.to_string(),
                        description: description(def.description.as_ref()),
                        default_value: default_value(&def.default_value),
                    })
                    .collect();
                None
            }
            ExtendedType::Scalar(_) => None,
        };
        for (field_name, field) in api_fields.into_iter().flatten() {
            let FieldJoin {
                owners: subgraphs,
                requires,
                provides,
            } = joined
                .fields
                .remove(field_name.as_str())
                .unwrap_or_else(|| FieldJoin {
                    owners: joined.graphs.clone(),
                    ..FieldJoin::default()
                });
            info.fields.push(FieldInfo {
                name: field_name.to_string(),
                ty: field.ty.to_string(),
                description: description(field.description.as_ref()),
                args: field
                    .arguments
                    .iter()
                    .map(|arg| InputValueInfo {
                        name: arg.name.to_string(),
                        ty: arg.ty.to_string(),
                        description: description(arg.description.as_ref()),
                        default_value: default_value(&arg.default_value),
                    })
                    .collect(),
                deprecation_reason: deprecation(&field.directives),
                cache: field_cache(field_name.as_str()),
                subgraphs,
                requires,
                provides,
            });
        }
        types.push(info);
    }
    SchemaModel { subgraphs, types }
}

impl SchemaModel {
    /// `Type.field` -> the subgraphs resolving it.
    pub fn owners(&self) -> HashMap<String, Vec<String>> {
        let mut owners = HashMap::new();
        for ty in &self.types {
            for field in &ty.fields {
                owners.insert(
                    format!("{}.{}", ty.name, field.name),
                    field.subgraphs.clone(),
                );
            }
        }
        owners
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> SchemaModel {
        let sdl = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema/supergraph.graphql"),
        )
        .unwrap();
        let supergraph = apollo_federation::Supergraph::new(&sdl).unwrap();
        let api = crate::composition::api_schema(&sdl).unwrap();
        build(supergraph.schema.schema(), &api)
    }

    #[test]
    fn fields_carry_their_owner_and_cache_hint() {
        let model = model();
        assert_eq!(
            model
                .subgraphs
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["accounts", "engagement", "notifications", "posts"]
        );
        let post = model.types.iter().find(|t| t.name == "Post").unwrap();
        assert_eq!(post.kind, "OBJECT");
        assert!(
            post.keys.iter().any(|k| k.fields == "id"),
            "{:?}",
            post.keys
        );
        let field = |name: &str| post.fields.iter().find(|f| f.name == name).unwrap();
        assert_eq!(field("likeCount").subgraphs, ["engagement"]);
        let hint = field("viewerHasLiked").cache.clone().unwrap();
        assert_eq!(hint.scope.as_deref(), Some("PRIVATE"));
        assert_eq!(field("body").subgraphs, ["posts"]);
        // `author` is resolved by posts (a reference), the user's fields by accounts.
        assert_eq!(field("author").subgraphs, ["posts"]);
        let user = model.types.iter().find(|t| t.name == "User").unwrap();
        assert!(user.subgraphs.contains(&"accounts".to_owned()));
    }

    #[test]
    fn only_the_api_schema_is_shown() {
        let model = model();
        for ty in &model.types {
            assert!(
                !ty.name.starts_with("join__") && !ty.name.starts_with("link__"),
                "{}",
                ty.name
            );
            assert!(!ty.name.starts_with("__"), "{}", ty.name);
        }
        let query = model.types.iter().find(|t| t.name == "Query").unwrap();
        assert!(
            query.fields.iter().all(|f| !f.name.starts_with('_')),
            "{:?}",
            query.fields.iter().map(|f| &f.name).collect::<Vec<_>>()
        );
    }
}
