//! Stage `document`: the operation text, bounded by size, parsed once (within the same parser
//! limits apollo-router applies), the operation that runs selected as apollo-router selects
//! it, and the variables normalised to what that operation declares (undeclared ones dropped,
//! defaults written in). Cache keys, limits and rate-limit keys are taken from this value, and
//! apollo-router executes the same normalised variables, so junk variables can neither split
//! cache entries nor reach a subgraph.

use std::sync::Arc;

use apollo_compiler::ast::{self, Document, OperationDefinition, OperationType};
use http::StatusCode;
use serde_json_bytes::{ByteString, Value};

use super::read::{GraphqlRequest, Object, ReadConfig};
use super::refusal::Refusal;
use crate::plugins::operation::{self, ParseLimits};

/// The operation a request runs: its parsed document and which definition in it.
#[derive(Debug, Clone)]
pub struct Operation {
    pub document: Arc<Document>,
    index: usize,
}

impl PartialEq for Operation {
    fn eq(&self, other: &Self) -> bool {
        self.index == other.index && Arc::ptr_eq(&self.document, &other.document)
    }
}

impl Operation {
    /// The operation `name` selects in `document`, as apollo-router selects it.
    pub fn select(document: Arc<Document>, name: Option<&str>) -> Option<Self> {
        let index = operation::select(&document, name)?;
        Some(Self { document, index })
    }

    pub fn definition(&self) -> &OperationDefinition {
        operation::definition(&self.document, self.index)
            .expect("the index was selected from this document")
    }

    pub fn kind(&self) -> OperationType {
        self.definition().operation_type
    }

    pub fn is_query(&self) -> bool {
        self.kind() == OperationType::Query
    }

    /// The name written in the document (not the client's `operationName`).
    pub fn name(&self) -> Option<&str> {
        self.definition().name.as_ref().map(|n| n.as_str())
    }
}

/// Bounds the document, parses it and normalises the variables.
pub fn prepare(config: &ReadConfig, request: &mut GraphqlRequest) -> Result<(), Refusal> {
    let Some(query) = request.query.as_deref() else {
        return Ok(());
    };
    if query.len() > config.max_document_bytes {
        // 400, not 413: apollo-router's body-limit layer (outside our plugin) replaces every
        // 413 with its own answer, which would lose this code and `no-store`.
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "DOCUMENT_TOO_LARGE",
            format!(
                "the GraphQL document is larger than {} bytes",
                config.max_document_bytes
            ),
        ));
    }
    let limits = ParseLimits {
        max_tokens: config.parser_max_tokens,
        max_recursion: config.parser_max_recursion,
    };
    let Some(document) = operation::parse(query, limits) else {
        return Ok(());
    };
    let Some(found) = Operation::select(document, request.operation_name.as_deref()) else {
        return Ok(());
    };
    request.variables = normalised(found.definition(), std::mem::take(&mut request.variables));
    request.operation = Some(found);
    Ok(())
}

/// The variables `operation` declares, in declaration order, with defaults for those not
/// sent. An explicit `null` stays `null` (GraphQL distinguishes it from absent).
pub fn normalised(operation: &OperationDefinition, mut sent: Object) -> Object {
    let mut out = Object::with_capacity(operation.variables.len());
    for definition in &operation.variables {
        let name = definition.name.as_str();
        if let Some(value) = sent.remove(name) {
            out.insert(ByteString::from(name), value);
        } else if let Some(default) = definition.default_value.as_ref().and_then(|v| constant(v)) {
            out.insert(ByteString::from(name), default);
        }
    }
    out
}

/// A constant GraphQL value as JSON (`None` for variables, which defaults cannot hold).
fn constant(value: &ast::Value) -> Option<Value> {
    Some(match value {
        ast::Value::Null => Value::Null,
        ast::Value::Enum(name) => Value::String(name.as_str().into()),
        ast::Value::Variable(_) => return None,
        ast::Value::String(s) => Value::String(s.as_str().into()),
        ast::Value::Float(f) => serde_json::from_str(f.as_str()).ok()?,
        ast::Value::Int(i) => serde_json::from_str(i.as_str()).ok()?,
        ast::Value::Boolean(b) => Value::Bool(*b),
        ast::Value::List(items) => Value::Array(
            items
                .iter()
                .map(|v| constant(v))
                .collect::<Option<Vec<_>>>()?,
        ),
        ast::Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| Some((ByteString::from(k.as_str()), constant(v)?)))
                .collect::<Option<Object>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use serde_json_bytes::json;

    use super::*;
    use crate::pipeline::read::{Client, from_body};

    fn prepared(body: &str) -> Result<GraphqlRequest, Refusal> {
        let mut request = from_body(body.as_bytes(), Client::default()).unwrap();
        prepare(&ReadConfig::default(), &mut request)?;
        Ok(request)
    }

    #[test]
    fn variables_are_what_the_operation_declares() {
        // Regression (issue 10): undeclared variables split the cache key.
        let a = prepared(
            r#"{"query":"query F($n: Int = 2, $after: String, $e: Order = NEWEST, $o: In = {a: [1, 2.5, \"x\", null, true]}) { feed(first: $n) { nodes { id } } }","variables":{"junk":7,"after":null}}"#,
        )
        .unwrap();
        assert_eq!(
            serde_json_bytes::Value::Object(a.variables.clone()),
            json!({"n": 2, "after": null, "e": "NEWEST", "o": {"a": [1, 2.5, "x", null, true]}})
        );
        let op = a.operation.as_ref().unwrap();
        assert!(op.is_query());
        assert_eq!(op.name(), Some("F"));
        let b = prepared(
            r#"{"query":"query F($n: Int = 2, $after: String, $e: Order = NEWEST, $o: In = {a: [1, 2.5, \"x\", null, true]}) { feed(first: $n) { nodes { id } } }","variables":{"junk":8,"after":null}}"#,
        )
        .unwrap();
        assert_eq!(a.variables, b.variables);
    }

    #[test]
    fn large_documents_are_refused_before_parsing() {
        let big = format!(
            r#"{{"query":"{{ a(s: \"{}\") }}"}}"#,
            "x".repeat(ReadConfig::default().max_document_bytes)
        );
        assert_eq!(prepared(&big).unwrap_err().code, "DOCUMENT_TOO_LARGE");
    }

    #[test]
    fn unparseable_or_ambiguous_documents_select_nothing() {
        let r = prepared(r#"{"query":"{ a "}"#).unwrap();
        assert!(r.operation.is_none());
        let r = prepared(r#"{"query":"query A { a } query B { b }","variables":{"x":1}}"#).unwrap();
        assert!(r.operation.is_none());
        assert_eq!(
            r.variables.len(),
            1,
            "left as sent: apollo-router refuses it"
        );
        let r = prepared(r#"{"query":"mutation M { a }"}"#).unwrap();
        assert_eq!(r.operation.unwrap().kind(), OperationType::Mutation);
    }
}
