//! The operation a request runs, as the pipeline's `document` stage reads it: the parsed
//! document (parsed once per document text and kept, since mobile clients send the same few
//! persisted documents over and over), the operation selected by name as apollo-router selects
//! it, its fragments and its root fields.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use apollo_compiler::Node;
use apollo_compiler::ast::{
    Definition, Document, Field, FragmentDefinition, OperationDefinition, Selection,
};
use apollo_compiler::parser::Parser;
use lru::LruCache;

/// The parser's limits; the router's YAML gives apollo-router's own parser the same ones
/// (`limits.parser_max_tokens`, `limits.parser_max_recursion`), so both refuse alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseLimits {
    pub max_tokens: usize,
    pub max_recursion: usize,
}

/// What the kept documents may hold, estimated as [`AST_BYTES_PER_TEXT_BYTE`] times their
/// text: bounded by bytes, not by count, so large documents cannot crowd memory.
const CACHE_BUDGET_BYTES: usize = 32 * 1024 * 1024;
/// A parsed document's size relative to its text (measured on our persisted operations:
/// about 10x; rounded up).
const AST_BYTES_PER_TEXT_BYTE: usize = 16;

struct Kept {
    limits: ParseLimits,
    document: Arc<Document>,
}

struct Cache {
    entries: LruCache<String, Kept>,
    bytes: usize,
}

static PARSED: LazyLock<Mutex<Cache>> = LazyLock::new(|| {
    Mutex::new(Cache {
        entries: LruCache::unbounded(),
        bytes: 0,
    })
});

fn cost(text: &str) -> usize {
    text.len().saturating_mul(AST_BYTES_PER_TEXT_BYTE) + 256
}

/// The parsed document, or `None` when it does not parse within `limits` (apollo-router,
/// whose parser has the same limits, answers those with its own precise error). Documents
/// that do not parse are not kept.
pub fn parse(query: &str, limits: ParseLimits) -> Option<Arc<Document>> {
    {
        let mut cache = PARSED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(kept) = cache.entries.get(query)
            && kept.limits == limits
        {
            return Some(kept.document.clone());
        }
    }
    let document = Parser::new()
        .token_limit(limits.max_tokens)
        .recursion_limit(limits.max_recursion)
        .parse_ast(query, "operation.graphql")
        .ok()?;
    let document = Arc::new(document);
    let size = cost(query);
    if size > CACHE_BUDGET_BYTES / 8 {
        return Some(document);
    }
    let mut cache = PARSED.lock().unwrap_or_else(|p| p.into_inner());
    let replaced = cache.entries.put(
        query.to_owned(),
        Kept {
            limits,
            document: document.clone(),
        },
    );
    if replaced.is_some() {
        cache.bytes = cache.bytes.saturating_sub(size);
    }
    cache.bytes += size;
    while cache.bytes > CACHE_BUDGET_BYTES {
        let Some((text, _)) = cache.entries.pop_lru() else {
            break;
        };
        cache.bytes = cache.bytes.saturating_sub(cost(&text));
    }
    Some(document)
}

/// Bytes the kept documents are estimated to hold.
pub fn kept_bytes() -> usize {
    PARSED.lock().unwrap_or_else(|p| p.into_inner()).bytes
}

/// The index (in `document.definitions`) of the operation that runs, selected as
/// apollo-router selects it: by name, or the only operation when no name is given.
pub fn select(document: &Document, name: Option<&str>) -> Option<usize> {
    let mut operations = document
        .definitions
        .iter()
        .enumerate()
        .filter_map(|(i, d)| match d {
            Definition::OperationDefinition(op) => Some((i, &**op)),
            _ => None,
        });
    match name {
        Some(name) => operations
            .find(|(_, op)| op.name.as_ref().is_some_and(|n| n == name))
            .map(|(i, _)| i),
        None => {
            let (first, _) = operations.next()?;
            operations.next().is_none().then_some(first)
        }
    }
}

/// The operation definition at `index` (from [`select`]).
pub fn definition(document: &Document, index: usize) -> Option<&OperationDefinition> {
    match document.definitions.get(index)? {
        Definition::OperationDefinition(op) => Some(op),
        _ => None,
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

    const LIMITS: ParseLimits = ParseLimits {
        max_tokens: 5_000,
        max_recursion: 100,
    };

    #[test]
    fn parses_once_and_selects_as_apollo_router_does() {
        let query =
            "query A { a ...F ...F } query B { b } fragment F on Query { c ... on Query { d } }";
        let document = parse(query, LIMITS).unwrap();
        assert!(
            Arc::ptr_eq(&document, &parse(query, LIMITS).unwrap()),
            "kept parsed"
        );
        assert!(parse("{ not closed", LIMITS).is_none());
        let fragments = fragments(&document);
        let a = definition(&document, select(&document, Some("A")).unwrap()).unwrap();
        let names: Vec<&str> = root_fields(a, &fragments)
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names.contains(&"a") && names.contains(&"c") && names.contains(&"d"));
        // Two operations and no name: apollo-router refuses, so nothing is selected.
        assert!(select(&document, None).is_none());
        assert!(select(&document, Some("Nope")).is_none());
        let single = parse("{ a }", LIMITS).unwrap();
        assert_eq!(select(&single, None), Some(0));
    }

    #[test]
    fn limits_are_the_parsers() {
        let wide = format!("{{ {} }}", "a ".repeat(6_000));
        assert!(parse(&wide, LIMITS).is_none(), "over the token limit");
        let deep = format!("{}{}", "{ a ".repeat(150), "}".repeat(150));
        assert!(parse(&deep, LIMITS).is_none(), "over the recursion limit");
    }

    #[test]
    fn the_cache_is_bounded_by_bytes() {
        for i in 0..2_000 {
            let text = format!("query Q{i} {{ {} }}", "field ".repeat(200));
            parse(&text, LIMITS).unwrap();
        }
        assert!(kept_bytes() <= CACHE_BUDGET_BYTES, "{}", kept_bytes());
    }
}
