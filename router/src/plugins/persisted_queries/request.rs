//! The persisted-query parts of a typed request, and the expansion of an id into its text.

use serde_json_bytes::Value;

use crate::pipeline::read::GraphqlRequest;

/// The persisted-query parts of a request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PersistedParts {
    /// `documentId` (GraphQL over HTTP), without an optional `sha256:` prefix.
    pub document_id: Option<String>,
    /// `extensions.persistedQuery.sha256Hash` (Apollo / APQ).
    pub apq_hash: Option<String>,
    /// `extensions.persistedQuery.version`, when present.
    pub apq_version: Option<Value>,
    /// `query`, when present and not empty.
    pub query: Option<String>,
}

/// Why the persisted-query parts cannot be read.
#[derive(Debug, PartialEq, Eq)]
pub enum PartsError {
    NotAString(&'static str),
}

pub fn persisted_parts(request: &GraphqlRequest) -> Result<PersistedParts, PartsError> {
    let persisted = request
        .extensions
        .get("persistedQuery")
        .filter(|p| !p.is_null());
    let (apq_hash, apq_version) = match persisted {
        Some(Value::Object(p)) => {
            let hash = match p.get("sha256Hash") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.as_str().to_owned()),
                Some(_) => {
                    return Err(PartsError::NotAString(
                        "extensions.persistedQuery.sha256Hash",
                    ));
                }
            };
            (hash, p.get("version").cloned())
        }
        Some(_) => return Err(PartsError::NotAString("extensions.persistedQuery")),
        None => (None, None),
    };
    let document_id = request
        .document_id
        .as_deref()
        .map(|id| id.strip_prefix("sha256:").unwrap_or(id).to_owned());
    let query = request.query.clone().filter(|q| !q.is_empty());
    Ok(PersistedParts {
        document_id,
        apq_hash,
        apq_version,
        query,
    })
}

/// Replaces the id parts with the operation text the router should run.
pub fn expand(request: &mut GraphqlRequest, body: &str) {
    request.query = Some(body.to_owned());
    strip_ids(request);
}

/// Removes `documentId` and `extensions.persistedQuery`: this stage acted on them, and
/// apollo-router must not act on them again.
pub fn strip_ids(request: &mut GraphqlRequest) {
    request.document_id = None;
    request.extensions.remove("persistedQuery");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::read::{Client, from_body};

    #[test]
    fn parts_and_expansion() {
        let mut request = from_body(
            br#"{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"h"},"other":true},"variables":{"x":1},"documentId":"sha256:h"}"#,
            Client::default(),
        )
        .unwrap();
        let parts = persisted_parts(&request).unwrap();
        assert_eq!(parts.apq_hash.as_deref(), Some("h"));
        assert_eq!(parts.document_id.as_deref(), Some("h"));
        assert_eq!(parts.apq_version, Some(serde_json_bytes::json!(1)));
        expand(&mut request, "{ a }");
        assert_eq!(request.query.as_deref(), Some("{ a }"));
        assert_eq!(request.document_id, None);
        assert_eq!(
            Value::Object(request.extensions.clone()),
            serde_json_bytes::json!({"other": true})
        );

        let bad = from_body(
            br#"{"extensions":{"persistedQuery":{"sha256Hash":5}}}"#,
            Client::default(),
        )
        .unwrap();
        assert_eq!(
            persisted_parts(&bad),
            Err(PartsError::NotAString(
                "extensions.persistedQuery.sha256Hash"
            ))
        );
    }
}
