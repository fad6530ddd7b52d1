//! The pipeline's `limits` stage: refuses documents that are too deep, too wide or too
//! expensive before the router plans them, so an alias bomb or a 50-level nested query costs
//! us one parse, not a query plan and a fan-out of subgraph calls.
//!
//! Runs in `supergraph_service` on the operation the `document` stage parsed and selected
//! (after persisted-query ids were expanded), so it measures exactly what runs. Every refusal names the measured value and the limit.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use apollo_compiler::Schema;
use apollo_compiler::ast::{Selection, Value as AstValue};
use apollo_router::graphql;
use apollo_router::layers::ServiceBuilderExt;
use apollo_router::services::supergraph;
use http::StatusCode;
use opentelemetry::metrics::MeterProvider;
use schemars::JsonSchema;
use serde::Deserialize;
use tower::{BoxError, ServiceBuilder, ServiceExt};

use crate::pipeline::document::Operation;
use crate::pipeline::read::GraphqlRequest;
use crate::plugins::operation;

/// Configuration of the `limits` stage. Each limit is inclusive.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OperationLimitsConfig {
    /// Deepest field nesting (`{ a { b } }` is 2).
    #[serde(default = "defaults::depth")]
    pub max_depth: u32,
    /// Aliased fields in the whole document.
    #[serde(default = "defaults::aliases")]
    pub max_aliases: u32,
    /// Fields at the root of the operation (each one is at least one subgraph call).
    #[serde(default = "defaults::root_fields")]
    pub max_root_fields: u32,
    /// Lexical tokens in the document.
    #[serde(default = "defaults::tokens")]
    pub max_tokens: u32,
    /// Estimated cost: every field costs 1; a field with a `first` argument multiplies its
    /// subtree by it, and a list field without one by `default_list_size` (unless it sits
    /// directly in a paged field, like a connection's `nodes`).
    #[serde(default = "defaults::cost")]
    pub max_cost: u64,
    /// Assumed size of list fields without a `first` argument.
    #[serde(default = "defaults::list_size")]
    pub default_list_size: u32,
}

mod defaults {
    pub fn depth() -> u32 {
        12
    }
    pub fn aliases() -> u32 {
        30
    }
    pub fn root_fields() -> u32 {
        10
    }
    pub fn tokens() -> u32 {
        3_000
    }
    pub fn cost() -> u64 {
        10_000
    }
    pub fn list_size() -> u32 {
        20
    }
}

/// What a document measures.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Measurement {
    pub depth: u32,
    pub aliases: u32,
    pub root_fields: u32,
    pub tokens: u32,
    pub cost: u64,
}

/// A limit that was exceeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub code: &'static str,
    pub what: &'static str,
    pub measured: u64,
    pub limit: u64,
}

pub struct OperationLimits {
    config: OperationLimitsConfig,
    /// `switchyard.operation_limits.refusals`, by limit (the error code: a fixed set).
    refusals: opentelemetry::metrics::Counter<u64>,
    /// Field types by (type name, field name): only what the cost estimate needs.
    list_fields: Arc<HashMap<(String, String), FieldShape>>,
}

#[derive(Debug, Clone)]
struct FieldShape {
    is_list: bool,
    inner_type: String,
}

impl OperationLimits {
    pub fn new(config: OperationLimitsConfig, supergraph_sdl: &str) -> Result<Self, BoxError> {
        let schema = Schema::parse(supergraph_sdl, "supergraph.graphql")
            .map_err(|e| format!("operation_limits: cannot read the supergraph: {}", e.errors))?;
        let refusals = apollo_router::metrics::meter_provider()
            .meter("switchyard")
            .u64_counter("switchyard.operation_limits.refusals")
            .with_description("Operations refused by the limits stage, by the limit exceeded")
            .build();
        Ok(Self {
            config,
            refusals,
            list_fields: Arc::new(field_shapes(&schema)),
        })
    }

    /// The `limits` stage, on the operation the `document` stage selected.
    pub fn supergraph_service(&self, service: supergraph::BoxService) -> supergraph::BoxService {
        let config = self.config.clone();
        let shapes = self.list_fields.clone();
        let refusals = self.refusals.clone();
        ServiceBuilder::new()
            .checkpoint(move |request: supergraph::Request| {
                let Some(typed) = GraphqlRequest::of(&request.context) else {
                    return Ok(ControlFlow::Continue(request));
                };
                let (Some(query), Some(operation)) = (&typed.query, &typed.operation) else {
                    // Nothing parsed: apollo-router refuses it with its own error.
                    return Ok(ControlFlow::Continue(request));
                };
                let variables: HashMap<String, i64> = typed
                    .variables
                    .iter()
                    .filter_map(|(k, v)| v.as_i64().map(|n| (k.as_str().to_owned(), n)))
                    .collect();
                let verdict = tracing::info_span!("switchyard.limits").in_scope(|| {
                    measure_operation(query, operation, &variables, &shapes, &config)
                        .and_then(|m| check(&m, &config).map_or(Ok(()), Err))
                });
                match verdict {
                    Ok(()) => Ok(ControlFlow::Continue(request)),
                    Err(exceeded) => {
                        refusals.add(1, &[opentelemetry::KeyValue::new("limit", exceeded.code)]);
                        let error = graphql::Error::builder()
                            .message(format!(
                                "the operation's {} is {}, above the limit of {}",
                                exceeded.what, exceeded.measured, exceeded.limit
                            ))
                            .extension_code(exceeded.code)
                            .extension("measured", exceeded.measured)
                            .extension("limit", exceeded.limit)
                            .build();
                        let response = supergraph::Response::error_builder()
                            .error(error)
                            .status_code(StatusCode::BAD_REQUEST)
                            .context(request.context)
                            .build()?;
                        Ok(ControlFlow::Break(response))
                    }
                }
            })
            .service(service)
            .boxed()
    }
}

fn field_shapes(schema: &Schema) -> HashMap<(String, String), FieldShape> {
    let mut shapes = HashMap::new();
    for (type_name, ty) in &schema.types {
        let fields = match ty {
            apollo_compiler::schema::ExtendedType::Object(o) => &o.fields,
            apollo_compiler::schema::ExtendedType::Interface(i) => &i.fields,
            _ => continue,
        };
        for (field_name, field) in fields {
            shapes.insert(
                (type_name.to_string(), field_name.to_string()),
                FieldShape {
                    is_list: field.ty.is_list(),
                    inner_type: field.ty.inner_named_type().to_string(),
                },
            );
        }
    }
    shapes
}

/// Compares a measurement with the limits; the first limit exceeded, in a fixed order.
pub fn check(m: &Measurement, c: &OperationLimitsConfig) -> Option<Exceeded> {
    let checks = [
        (
            "MAX_TOKENS_LIMIT",
            "token count",
            u64::from(m.tokens),
            u64::from(c.max_tokens),
        ),
        (
            "MAX_DEPTH_LIMIT",
            "depth",
            u64::from(m.depth),
            u64::from(c.max_depth),
        ),
        (
            "MAX_ALIASES_LIMIT",
            "alias count",
            u64::from(m.aliases),
            u64::from(c.max_aliases),
        ),
        (
            "MAX_ROOT_FIELDS_LIMIT",
            "root field count",
            u64::from(m.root_fields),
            u64::from(c.max_root_fields),
        ),
        ("COST_LIMIT", "estimated cost", m.cost, c.max_cost),
    ];
    checks
        .into_iter()
        .find(|(_, _, measured, limit)| measured > limit)
        .map(|(code, what, measured, limit)| Exceeded {
            code,
            what,
            measured,
            limit,
        })
}

/// Measures a document's text (tests and tools; the stage measures the parsed operation).
/// Documents that do not parse or select no operation measure only their tokens.
#[cfg(test)]
fn measure(
    query: &str,
    operation_name: Option<&str>,
    variables: &HashMap<String, i64>,
    shapes: &HashMap<(String, String), FieldShape>,
    config: &OperationLimitsConfig,
) -> Result<Measurement, Exceeded> {
    let read = crate::pipeline::read::ReadConfig::default();
    let limits = operation::ParseLimits {
        max_tokens: read.parser_max_tokens,
        max_recursion: read.parser_max_recursion,
    };
    let tokens = count_tokens(query, config)?;
    let Some(document) = operation::parse(query, limits) else {
        return Ok(Measurement {
            tokens,
            ..Measurement::default()
        });
    };
    let Some(operation) = Operation::select(document, operation_name) else {
        return Ok(Measurement {
            tokens,
            ..Measurement::default()
        });
    };
    measure_operation(query, &operation, variables, shapes, config)
}

/// Tokens in `query`, stopping at the first past the limit.
fn count_tokens(query: &str, config: &OperationLimitsConfig) -> Result<u32, Exceeded> {
    let mut tokens = 0u32;
    for token in apollo_parser::Lexer::new(query) {
        if token.is_ok_and(|t| t.kind() != apollo_parser::TokenKind::Eof) {
            tokens += 1;
        }
        if tokens > config.max_tokens {
            return Err(Exceeded {
                code: "MAX_TOKENS_LIMIT",
                what: "token count",
                measured: u64::from(tokens),
                limit: u64::from(config.max_tokens),
            });
        }
    }
    Ok(tokens)
}

/// Measures the operation that runs.
fn measure_operation(
    query: &str,
    found: &Operation,
    variables: &HashMap<String, i64>,
    shapes: &HashMap<(String, String), FieldShape>,
    config: &OperationLimitsConfig,
) -> Result<Measurement, Exceeded> {
    let tokens = count_tokens(query, config)?;
    let document = &found.document;
    let operation = found.definition();
    let fragments = operation::fragments(document);
    let root_type = match operation.operation_type {
        apollo_compiler::ast::OperationType::Query => "Query",
        apollo_compiler::ast::OperationType::Mutation => "Mutation",
        apollo_compiler::ast::OperationType::Subscription => "Subscription",
    };
    let mut walker = Walker {
        fragments,
        variables,
        shapes,
        config,
        memo: HashMap::new(),
        stack: Vec::new(),
    };
    let measured = walker.selections(&operation.selection_set, root_type, false);
    let root_fields = operation::root_fields(operation, &walker.fragments).len() as u32;
    Ok(Measurement {
        depth: measured.depth,
        aliases: measured.aliases,
        root_fields,
        tokens,
        cost: measured.cost,
    })
}

/// What a selection set measures (aliases counted as often as the set is expanded).
#[derive(Debug, Clone, Copy, Default)]
struct Measured {
    depth: u32,
    cost: u64,
    aliases: u32,
}

struct Walker<'a> {
    fragments: HashMap<&'a str, &'a apollo_compiler::ast::FragmentDefinition>,
    variables: &'a HashMap<String, i64>,
    shapes: &'a HashMap<(String, String), FieldShape>,
    config: &'a OperationLimitsConfig,
    /// Each fragment is measured once and reused at every spread: a document whose fragments
    /// each spread the next one twice would otherwise take 2^n steps to walk.
    memo: HashMap<(&'a str, bool), Measured>,
    /// Fragments being expanded (a cycle is invalid GraphQL; we just stop following it).
    stack: Vec<&'a str>,
}

impl<'a> Walker<'a> {
    /// `paged`: the parent field took a `first` argument, so the lists directly inside it
    /// (a connection's `nodes`/`edges`) are already sized by it.
    fn selections(
        &mut self,
        selections: &'a [Selection],
        parent_type: &str,
        paged: bool,
    ) -> Measured {
        let mut total = Measured::default();
        for selection in selections {
            let m = match selection {
                Selection::Field(field) => {
                    let shape = self
                        .shapes
                        .get(&(parent_type.to_owned(), field.name.to_string()))
                        .cloned();
                    let inner = shape
                        .as_ref()
                        .map(|s| s.inner_type.clone())
                        .unwrap_or_default();
                    let first = self.first_argument(field);
                    let child = if field.selection_set.is_empty() {
                        Measured::default()
                    } else {
                        self.selections(&field.selection_set, &inner, first.is_some())
                    };
                    let multiplier = match first {
                        Some(n) => n.max(1) as u64,
                        None if !paged && shape.as_ref().is_some_and(|s| s.is_list) => {
                            u64::from(self.config.default_list_size)
                        }
                        None => 1,
                    };
                    Measured {
                        depth: child.depth + 1,
                        cost: 1u64.saturating_add(child.cost).saturating_mul(multiplier),
                        aliases: child.aliases + u32::from(field.alias.is_some()),
                    }
                }
                Selection::InlineFragment(inline) => {
                    let ty = inline
                        .type_condition
                        .as_ref()
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| parent_type.to_owned());
                    self.selections(&inline.selection_set, &ty, paged)
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.fragment_name.as_str();
                    if let Some(m) = self.memo.get(&(name, paged)) {
                        *m
                    } else {
                        match self.fragments.get(name).copied() {
                            Some(fragment) if !self.stack.contains(&name) => {
                                self.stack.push(fragment.name.as_str());
                                let ty = fragment.type_condition.to_string();
                                let m = self.selections(&fragment.selection_set, &ty, paged);
                                self.stack.pop();
                                self.memo.insert((fragment.name.as_str(), paged), m);
                                m
                            }
                            _ => Measured::default(),
                        }
                    }
                }
            };
            total.depth = total.depth.max(m.depth);
            total.cost = total.cost.saturating_add(m.cost);
            total.aliases = total.aliases.saturating_add(m.aliases);
        }
        total
    }

    fn first_argument(&self, field: &apollo_compiler::ast::Field) -> Option<i64> {
        field
            .arguments
            .iter()
            .find(|a| a.name == "first")
            .and_then(|a| match &*a.value {
                AstValue::Int(n) => n.try_to_i32().ok().map(i64::from),
                AstValue::Variable(v) => self.variables.get(v.as_str()).copied(),
                _ => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository file, located at run time (see `switchyard_kit::testing::repo_root`).
    fn repo_file(relative: &str) -> std::path::PathBuf {
        let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("tests run under cargo");
        std::path::Path::new(&manifest_dir)
            .join("..")
            .join(relative)
    }

    fn config() -> OperationLimitsConfig {
        serde_json::from_str("{}").unwrap()
    }

    fn shapes() -> HashMap<(String, String), FieldShape> {
        let sdl = std::fs::read_to_string(repo_file("schema/supergraph.graphql")).unwrap();
        field_shapes(&Schema::parse(sdl, "s.graphql").unwrap())
    }

    fn m(query: &str, vars: &[(&str, i64)]) -> Result<Measurement, Exceeded> {
        let vars = vars.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        measure(query, None, &vars, &shapes(), &config())
    }

    #[test]
    fn measures_depth_aliases_roots_and_cost() {
        let q = "query($n: Int) { a: feed(first: 10) { nodes { id author { posts(first: $n) { nodes { id } } } } } b: feed { nodes { id } } }";
        let got = m(q, &[("n", 5)]).unwrap();
        assert_eq!(got.depth, 6);
        assert_eq!(got.aliases, 2);
        assert_eq!(got.root_fields, 2);
        // a: feed x10 of (1 + nodes, paged so x1: 1 + id 1 + author(1 + posts x5 of (1 + nodes 2)))
        //    = 10 x (1 + (1 + 1 + 16)) = 190
        // b: feed without `first` is x1; its nodes list x20 (the default page): 1 + 20 x 2 = 41
        assert_eq!(got.cost, 231, "{got:?}");
        assert_eq!(check(&got, &config()), None);
        let big = m(q, &[("n", 100)]).unwrap();
        let wide = m(&q.replace("first: 10", "first: 100"), &[("n", 100)]).unwrap();
        assert!(
            big.cost > got.cost && wide.cost > 10_000,
            "{big:?} {wide:?}"
        );
        assert_eq!(check(&wide, &config()).unwrap().code, "COST_LIMIT");
    }

    #[test]
    fn fragments_count_where_they_are_spread() {
        let q = "{ ...F } fragment F on Query { feed(first: 2) { nodes { ...G } } } fragment G on Post { id body }";
        let got = m(q, &[]).unwrap();
        assert_eq!(got.depth, 3);
        assert_eq!(got.root_fields, 1);
        // A fragment "bomb" (each fragment spreads the next twice) is measured in linear time.
        let mut bomb = String::from("{ ...F0 }\n");
        for i in 0..40 {
            bomb.push_str(&format!(
                "fragment F{i} on Query {{ ...F{} ...F{} }}\n",
                i + 1,
                i + 1
            ));
        }
        bomb.push_str("fragment F40 on Query { feed { nodes { id } } }");
        let got = m(&bomb, &[]).unwrap();
        assert_eq!(check(&got, &config()).unwrap().code, "COST_LIMIT");
        // Cycles (invalid) do not loop forever.
        assert!(
            m(
                "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }",
                &[]
            )
            .is_ok()
        );
    }

    #[test]
    fn bombs_are_caught() {
        let aliases: String = (0..40).map(|i| format!("a{i}: __typename ")).collect();
        assert_eq!(
            check(&m(&format!("{{ {aliases} }}"), &[]).unwrap(), &config())
                .unwrap()
                .code,
            "MAX_ALIASES_LIMIT"
        );
        let deep = format!(
            "{{ {}id{} }}",
            "feed { nodes { author { ".repeat(5),
            " } } }".repeat(5)
        );
        let exceeded = check(&m(&deep, &[]).unwrap(), &config()).unwrap();
        assert_eq!(
            (exceeded.code, exceeded.measured, exceeded.limit),
            ("MAX_DEPTH_LIMIT", 16, 12)
        );
        let tokens = format!("{{ {} }}", "__typename ".repeat(4000));
        assert_eq!(m(&tokens, &[]).unwrap_err().code, "MAX_TOKENS_LIMIT");
        let roots: String = (0..11).map(|i| format!("r{i}: __typename ")).collect();
        let got = m(&format!("{{ {roots} }}"), &[]).unwrap();
        assert_eq!(got.root_fields, 11);
    }

    #[test]
    fn the_shipped_operations_are_within_the_defaults() {
        let dir = repo_file("persisted-queries/operations");
        for client in std::fs::read_dir(dir).unwrap() {
            for file in std::fs::read_dir(client.unwrap().path()).unwrap() {
                let path = file.unwrap().path();
                let text = std::fs::read_to_string(&path).unwrap();
                let got = m(&text, &[]).unwrap();
                assert_eq!(check(&got, &config()), None, "{}: {got:?}", path.display());
            }
        }
    }
}
