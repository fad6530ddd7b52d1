//! Cache keys. A response is reused only for the same operation (its persisted id, or the
//! hash of its document with formatting and comments removed), operation name, variables and
//! client app; a PRIVATE response also only for the same user.

use apollo_parser::{Lexer, TokenKind};
use serde_json_bytes::Value;
use sha2::{Digest, Sha256};

/// What identifies a response before knowing its scope.
pub struct KeyParts<'a> {
    /// The persisted operation id, when the request named one.
    pub persisted_id: Option<&'a str>,
    pub document: &'a str,
    pub operation_name: Option<&'a str>,
    pub variables: &'a serde_json_bytes::Map<serde_json_bytes::ByteString, Value>,
    pub client: &'a str,
}

/// The key of a PUBLIC response (hex sha256, so user input never reaches Redis key syntax).
pub fn public_key(parts: &KeyParts<'_>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"switchyard-response-v1\0");
    match parts.persisted_id {
        Some(id) => {
            hasher.update(b"id\0");
            hasher.update(id.as_bytes());
        }
        None => {
            hasher.update(b"doc\0");
            normalized_document(parts.document, &mut hasher);
        }
    }
    hasher.update(b"\0op\0");
    hasher.update(parts.operation_name.unwrap_or("").as_bytes());
    hasher.update(b"\0client\0");
    hasher.update(parts.client.as_bytes());
    hasher.update(b"\0vars\0");
    let mut canonical = Vec::with_capacity(64);
    write_canonical(&Value::Object(parts.variables.clone()), &mut canonical);
    hasher.update(&canonical);
    hex::encode(hasher.finalize())
}

/// The key of a PRIVATE response: the public key, bound to one user.
pub fn private_key(public_key: &str, user: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"switchyard-private-v1\0");
    hasher.update(public_key.as_bytes());
    hasher.update(b"\0user\0");
    hasher.update(user.as_bytes());
    hex::encode(hasher.finalize())
}

/// The keys of one subgraph fetch, for the entity cache: what every key of the fetch shares
/// (subgraph, the fetch's document, which is its selection set, and its variables other than
/// the representations) hashed once, then one key per representation or one for the fetch.
pub struct FetchKeys {
    base: Sha256,
}

impl FetchKeys {
    pub fn new(
        subgraph: &str,
        document: &str,
        operation_name: Option<&str>,
        variables: &serde_json_bytes::Map<serde_json_bytes::ByteString, Value>,
        skip_variable: Option<&str>,
    ) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"switchyard-fetch-v1\0subgraph\0");
        hasher.update(subgraph.as_bytes());
        hasher.update(b"\0doc\0");
        normalized_document(document, &mut hasher);
        hasher.update(b"\0op\0");
        hasher.update(operation_name.unwrap_or("").as_bytes());
        hasher.update(b"\0vars\0");
        // Without the representations (a copy of them would be the fetch's largest part).
        let mut canonical = Vec::with_capacity(64);
        write_canonical_object(
            variables
                .iter()
                .filter(|(k, _)| Some(k.as_str()) != skip_variable),
            &mut canonical,
        );
        hasher.update(&canonical);
        Self { base: hasher }
    }

    /// The PUBLIC key of a whole (root) fetch.
    pub fn fetch(&self) -> String {
        let mut hasher = self.base.clone();
        hasher.update(b"\0fetch");
        hex::encode(hasher.finalize())
    }

    /// The PUBLIC key of one entity of an `_entities` fetch: its representation (type name
    /// and key fields, canonical JSON) under the fetch's selection.
    pub fn entity(&self, representation: &Value) -> String {
        let mut hasher = self.base.clone();
        hasher.update(b"\0entity\0");
        let mut canonical = Vec::with_capacity(48);
        write_canonical(representation, &mut canonical);
        hasher.update(&canonical);
        hex::encode(hasher.finalize())
    }
}

/// Feeds the document's significant tokens, one space apart: whitespace, commas and comments
/// do not change the key.
fn normalized_document(document: &str, hasher: &mut Sha256) {
    let (tokens, errors) = Lexer::new(document).lex();
    if !errors.is_empty() {
        // Not a document apollo-router will run; the key only has to be deterministic.
        hasher.update(document.as_bytes());
        return;
    }
    for token in tokens {
        match token.kind() {
            TokenKind::Whitespace | TokenKind::Comment | TokenKind::Comma | TokenKind::Eof => {}
            _ => {
                hasher.update(token.data().as_bytes());
                hasher.update(b" ");
            }
        }
    }
}

/// JSON with object keys sorted, so `{"a":1,"b":2}` and `{"b":2,"a":1}` share a key.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => write_canonical_object(map.iter(), out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(serde_json::to_string(other).unwrap_or_default().as_bytes()),
    }
}

/// An object's entries, keys sorted.
fn write_canonical_object<'a>(
    entries: impl Iterator<Item = (&'a serde_json_bytes::ByteString, &'a Value)>,
    out: &mut Vec<u8>,
) {
    let mut entries: Vec<_> = entries.collect();
    entries.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    out.push(b'{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(
            serde_json::to_string(k.as_str())
                .unwrap_or_default()
                .as_bytes(),
        );
        out.push(b':');
        write_canonical(v, out);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(json: &str) -> serde_json_bytes::Map<serde_json_bytes::ByteString, Value> {
        serde_json::from_str(json).unwrap()
    }

    fn key(document: &str, op: Option<&str>, vars_json: &str, client: &str) -> String {
        public_key(&KeyParts {
            persisted_id: None,
            document,
            operation_name: op,
            variables: &vars(vars_json),
            client,
        })
    }

    #[test]
    fn formatting_and_key_order_do_not_matter() {
        let a = key(
            "query Q($id: ID!) { post(id: $id) { body } }",
            Some("Q"),
            r#"{"id":"1","n":{"a":1,"b":2}}"#,
            "ios",
        );
        let b = key(
            "# comment\nquery Q($id: ID!) {\n  post(id: $id) {\n    body\n  }\n}",
            Some("Q"),
            r#"{"n":{"b":2,"a":1},"id":"1"}"#,
            "ios",
        );
        assert_eq!(a, b);
    }

    #[test]
    fn everything_else_does() {
        let base = key("{ feed { edges { cursor } } }", None, "{}", "ios");
        assert_ne!(
            base,
            key(
                "{ feed { edges { cursor node { id } } } }",
                None,
                "{}",
                "ios"
            )
        );
        assert_ne!(
            base,
            key("{ feed { edges { cursor } } }", Some("Feed"), "{}", "ios")
        );
        assert_ne!(
            base,
            key("{ feed { edges { cursor } } }", None, r#"{"x":1}"#, "ios")
        );
        assert_ne!(
            base,
            key("{ feed { edges { cursor } } }", None, "{}", "android")
        );
        // A string "1" and a number 1 are different variables.
        assert_ne!(
            key("{ a }", None, r#"{"x":"1"}"#, "c"),
            key("{ a }", None, r#"{"x":1}"#, "c")
        );
    }

    #[test]
    fn fetch_keys_separate_what_changes_the_answer() {
        let doc = "query($representations:[_Any!]!){_entities(representations:$representations){...on Post{likeCount}}}";
        let reps = vars(r#"{"representations":[{"__typename":"Post","id":"1"}],"first":2}"#);
        let keys = FetchKeys::new("engagement", doc, None, &reps, Some("representations"));
        let one: Value = serde_json::from_str(r#"{"__typename":"Post","id":"1"}"#).unwrap();
        let one_reordered: Value =
            serde_json::from_str(r#"{"id":"1","__typename":"Post"}"#).unwrap();
        let two: Value = serde_json::from_str(r#"{"__typename":"Post","id":"2"}"#).unwrap();
        assert_eq!(keys.entity(&one), keys.entity(&one_reordered));
        assert_ne!(keys.entity(&one), keys.entity(&two));
        assert_ne!(keys.entity(&one), keys.fetch());
        // Other representations in the same fetch do not change an entity's key.
        let more = vars(r#"{"representations":[{"__typename":"Post","id":"9"}],"first":2}"#);
        let same = FetchKeys::new("engagement", doc, None, &more, Some("representations"));
        assert_eq!(keys.entity(&one), same.entity(&one));
        // Subgraph, selection and other variables do.
        for other in [
            FetchKeys::new("posts", doc, None, &reps, Some("representations")),
            FetchKeys::new(
                "engagement",
                &doc.replace("likeCount", "likeCount commentCount"),
                None,
                &reps,
                Some("representations"),
            ),
            FetchKeys::new(
                "engagement",
                doc,
                None,
                &vars(r#"{"representations":[],"first":3}"#),
                Some("representations"),
            ),
        ] {
            assert_ne!(keys.entity(&one), other.entity(&one));
        }
    }

    #[test]
    fn persisted_ids_and_users_separate_keys() {
        let vars = vars("{}");
        let by_id = |id| {
            public_key(&KeyParts {
                persisted_id: Some(id),
                document: "{ a }",
                operation_name: None,
                variables: &vars,
                client: "web",
            })
        };
        assert_ne!(by_id("aa"), by_id("bb"));
        assert_ne!(by_id("aa"), key("{ a }", None, "{}", "web"));
        let public = by_id("aa");
        assert_ne!(private_key(&public, "1"), private_key(&public, "2"));
        assert_ne!(private_key(&public, "1"), public);
    }
}
