//! The persisted-operation catalogue: what each client ships, the fields every operation
//! selects and the subgraphs it reaches, so a field's users (and the impact of changing it)
//! are one lookup away.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use apollo_compiler::executable::{ExecutableDocument, Selection, SelectionSet};
use apollo_compiler::validation::Valid;
use apollo_compiler::{Name, Schema};
use serde::Serialize;
use switchyard_wire::manifest::Manifest;
use switchyard_wire::retired::Retired;

use crate::composition;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Catalogue {
    pub clients: Vec<String>,
    pub operations: Vec<CatalogueOperation>,
    /// Client -> semver requirement of its retired versions.
    pub retired_versions: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CatalogueOperation {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub body: String,
    pub clients: Vec<String>,
    /// Listed in `retired.yaml`: refused with UPGRADE_REQUIRED.
    pub retired: bool,
    /// `Type.field` coordinates it selects.
    pub fields: Vec<String>,
    pub subgraphs: Vec<String>,
    /// Why it does not validate against the current schema (empty when it does).
    pub invalid: Vec<String>,
}

/// `(parent type, field)` of every field an operation selects, fragments included
/// (`__typename` and introspection excluded).
pub fn used_fields(document: &ExecutableDocument) -> BTreeSet<String> {
    fn collect<'d>(
        document: &'d ExecutableDocument,
        set: &'d SelectionSet,
        out: &mut BTreeSet<String>,
        seen: &mut HashSet<&'d Name>,
    ) {
        for selection in &set.selections {
            match selection {
                Selection::Field(field) => {
                    if !field.name.starts_with("__") {
                        out.insert(format!("{}.{}", set.ty, field.name));
                    }
                    collect(document, &field.selection_set, out, seen);
                }
                Selection::InlineFragment(inline) => {
                    collect(document, &inline.selection_set, out, seen)
                }
                // A fragment's parent types do not depend on where it is spread: once is enough.
                Selection::FragmentSpread(spread) => {
                    if seen.insert(&spread.fragment_name)
                        && let Some(fragment) = document.fragments.get(&spread.fragment_name)
                    {
                        collect(document, &fragment.selection_set, out, seen);
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    let mut seen = HashSet::new();
    for operation in document.operations.iter() {
        collect(document, &operation.selection_set, &mut out, &mut seen);
    }
    out
}

/// Builds the catalogue from the manifest as shipped.
pub fn build(
    manifest: &Manifest,
    retired: &Retired,
    api: &Valid<Schema>,
    owners: &HashMap<String, Vec<String>>,
) -> Catalogue {
    let mut clients = BTreeSet::new();
    let mut operations = Vec::with_capacity(manifest.len());
    let mut shipped: Vec<_> = manifest.ids().filter_map(|id| manifest.get(id)).collect();
    shipped.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    for op in shipped {
        clients.extend(op.clients.iter().cloned());
        let source_name = format!("{}.graphql", op.name);
        let (fields, kind, invalid) =
            match composition::validate_operation(api, &op.body, &source_name) {
                Ok(document) => {
                    let kind = document
                        .operations
                        .iter()
                        .next()
                        .map(|o| o.operation_type.to_string())
                        .unwrap_or_default();
                    (used_fields(&document), kind, Vec::new())
                }
                Err(errors) => (BTreeSet::new(), String::new(), errors),
            };
        let subgraphs: BTreeSet<String> = fields
            .iter()
            .filter_map(|f| owners.get(f))
            .flatten()
            .cloned()
            .collect();
        operations.push(CatalogueOperation {
            id: op.id.clone(),
            name: op.name.clone(),
            kind,
            body: op.body.to_string(),
            retired: retired.operation(&op.id),
            clients: op.clients.clone(),
            fields: fields.into_iter().collect(),
            subgraphs: subgraphs.into_iter().collect(),
            invalid,
        });
    }
    Catalogue {
        clients: clients.into_iter().collect(),
        operations,
        retired_versions: retired
            .client_requirements()
            .map(|(client, req)| (client.to_owned(), req.to_string()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_inside_fragments_and_inline_fragments_count_with_their_parent_type() {
        let api = Schema::parse_and_validate(
            "type Query { feed: [Post] node: Node }
             interface Node { id: ID! }
             type Post implements Node { id: ID! body: String author: User }
             type User implements Node { id: ID! handle: String }",
            "schema.graphql",
        )
        .unwrap();
        let document = ExecutableDocument::parse_and_validate(
            &api,
            "query Q { feed { ...Cell __typename } node { id ... on User { handle } } }
             fragment Cell on Post { body author { handle } }",
            "q.graphql",
        )
        .unwrap();
        assert_eq!(
            used_fields(&document).into_iter().collect::<Vec<_>>(),
            [
                "Node.id",
                "Post.author",
                "Post.body",
                "Query.feed",
                "Query.node",
                "User.handle"
            ]
        );
    }
}
