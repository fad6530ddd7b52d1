//! The operation a request runs, as `operation_limits` and `rate_limit` read it: the parsed
//! document (parsed once per document text and shared, since mobile clients send the same
//! few persisted documents over and over), the operation selected by name, its fragments and
//! its root fields.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, LazyLock, Mutex};

use apollo_compiler::Node;
use apollo_compiler::ast::{
    Definition, Document, Field, FragmentDefinition, OperationDefinition, Selection,
};
use lru::LruCache;

/// Distinct documents kept parsed.
const CAPACITY: NonZeroUsize = NonZeroUsize::new(512).expect("non-zero");

static PARSED: LazyLock<Mutex<LruCache<String, Arc<Document>>>> =
    LazyLock::new(|| Mutex::new(LruCache::new(CAPACITY)));

/// The parsed document, or `None` when it does not parse (apollo-router answers those with
/// its own precise error). Documents that do not parse are not kept.
pub fn parse(query: &str) -> Option<Arc<Document>> {
    if let Some(document) = PARSED.lock().unwrap_or_else(|p| p.into_inner()).get(query) {
        return Some(document.clone());
    }
    let document = Arc::new(Document::parse(query, "operation.graphql").ok()?);
    PARSED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .put(query.to_owned(), document.clone());
    Some(document)
}

/// The operation `name` selects (the first one when there is no name).
pub fn select<'a>(document: &'a Document, name: Option<&str>) -> Option<&'a OperationDefinition> {
    let mut operations = document.definitions.iter().filter_map(|d| match d {
        Definition::OperationDefinition(op) => Some(&**op),
        _ => None,
    });
    match name {
        Some(name) => operations.find(|op| op.name.as_ref().is_some_and(|n| n == name)),
        None => operations.next(),
    }
}

/// The document's fragments by name.
pub fn fragments(document: &Document) -> HashMap<&str, &FragmentDefinition> {
    document
        .definitions
        .iter()
        .filter_map(|d| match d {
            Definition::FragmentDefinition(f) => Some((f.name.as_str(), &**f)),
            _ => None,
        })
        .collect()
}

/// The fields an operation selects at its root, directly or through fragments. A fragment
/// spread twice adds its fields once (GraphQL merges them), which also ends cycles and
/// fragment bombs.
pub fn root_fields<'a>(
    operation: &'a OperationDefinition,
    fragments: &HashMap<&str, &'a FragmentDefinition>,
) -> Vec<&'a Node<Field>> {
    let mut fields = Vec::new();
    let mut pending: Vec<&[Selection]> = vec![&operation.selection_set];
    let mut seen: Vec<&str> = Vec::new();
    while let Some(selections) = pending.pop() {
        for selection in selections {
            match selection {
                Selection::Field(f) => fields.push(f),
                Selection::InlineFragment(i) => pending.push(&i.selection_set),
                Selection::FragmentSpread(spread) => {
                    let name = spread.fragment_name.as_str();
                    if !seen.contains(&name)
                        && let Some(f) = fragments.get(name)
                    {
                        seen.push(f.name.as_str());
                        pending.push(&f.selection_set);
                    }
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_once_and_reads_the_selected_operation() {
        let query =
            "query A { a ...F ...F } query B { b } fragment F on Query { c ... on Query { d } }";
        let document = parse(query).unwrap();
        assert!(
            Arc::ptr_eq(&document, &parse(query).unwrap()),
            "kept parsed"
        );
        assert!(parse("{ not closed").is_none());
        let fragments = fragments(&document);
        let a = select(&document, Some("A")).unwrap();
        let names: Vec<&str> = root_fields(a, &fragments)
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.contains(&"a") && names.contains(&"c") && names.contains(&"d"));
        assert_eq!(select(&document, None).unwrap().name.as_ref().unwrap(), "A");
        assert!(select(&document, Some("Nope")).is_none());
    }
}
