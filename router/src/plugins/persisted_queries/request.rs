//! Reading and rewriting the GraphQL request object, from a POST body or a GET query string.

use serde_json::{Map, Value};

/// A GraphQL request as a JSON object (`query`, `operationName`, `variables`, `extensions`,
/// `documentId`).
pub type RequestObject = Map<String, Value>;

/// Parses a GET query string into a request object. `variables` and `extensions` are JSON
/// texts in GET requests; one that does not parse leaves the request to the router, which
/// reports it precisely.
pub fn from_query_string(query: &str) -> Option<RequestObject> {
    let mut object = RequestObject::new();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let value = match key.as_ref() {
            "variables" | "extensions" => serde_json::from_str(&value).ok()?,
            _ => Value::String(value.into_owned()),
        };
        object.insert(key.into_owned(), value);
    }
    Some(object)
}

/// Writes a request object back as a GET query string.
pub fn to_query_string(object: &RequestObject) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in object {
        match value {
            Value::String(s) => out.append_pair(key, s),
            Value::Null => continue,
            other => out.append_pair(key, &other.to_string()),
        };
    }
    out.finish()
}

/// The persisted-query parts of a request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PersistedParts {
    /// `documentId` (GraphQL over HTTP), without an optional `sha256:` prefix.
    pub document_id: Option<String>,
    /// `extensions.persistedQuery.sha256Hash` (Apollo / APQ).
    pub apq_hash: Option<String>,
    /// `extensions.persistedQuery.version`, when present.
    pub apq_version: Option<Value>,
    /// `query`, when present.
    pub query: Option<String>,
}

/// Why the persisted-query parts cannot be read.
#[derive(Debug, PartialEq, Eq)]
pub enum PartsError {
    NotAString(&'static str),
}

pub fn persisted_parts(object: &RequestObject) -> Result<PersistedParts, PartsError> {
    let string = |value: Option<&Value>, what: &'static str| match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(PartsError::NotAString(what)),
    };
    let persisted = object
        .get("extensions")
        .and_then(|e| e.get("persistedQuery"))
        .filter(|p| !p.is_null());
    let (apq_hash, apq_version) = match persisted {
        Some(p) => (
            string(p.get("sha256Hash"), "extensions.persistedQuery.sha256Hash")?,
            p.get("version").cloned(),
        ),
        None => (None, None),
    };
    let document_id = string(object.get("documentId"), "documentId")?
        .map(|id| id.strip_prefix("sha256:").map(str::to_owned).unwrap_or(id));
    let query = string(object.get("query"), "query")?.filter(|q| !q.is_empty());
    Ok(PersistedParts {
        document_id,
        apq_hash,
        apq_version,
        query,
    })
}

/// Replaces the id parts with the operation text the router should run.
pub fn expand(object: &mut RequestObject, body: &str) {
    object.insert("query".to_owned(), Value::String(body.to_owned()));
    strip_ids(object);
}

/// Removes `documentId` and `extensions.persistedQuery` (the router's own APQ must not act on
/// them; we already did).
pub fn strip_ids(object: &mut RequestObject) {
    object.remove("documentId");
    if let Some(Value::Object(extensions)) = object.get_mut("extensions") {
        extensions.remove("persistedQuery");
        if extensions.is_empty() {
            object.remove("extensions");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn get_round_trip() {
        let object = from_query_string(
            "documentId=sha256%3Aabc&variables=%7B%22a%22%3A1%7D&operationName=Op",
        )
        .unwrap();
        assert_eq!(object["variables"], json!({"a": 1}));
        let parts = persisted_parts(&object).unwrap();
        assert_eq!(parts.document_id.as_deref(), Some("abc"));
        let again = from_query_string(&to_query_string(&object)).unwrap();
        assert_eq!(again, object);
        assert!(from_query_string("extensions=%7Bnot-json").is_none());
    }

    #[test]
    fn parts_and_expansion() {
        let mut object = json!({
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": "h"}, "other": true},
            "variables": {"x": 1}
        })
        .as_object()
        .unwrap()
        .clone();
        let parts = persisted_parts(&object).unwrap();
        assert_eq!(parts.apq_hash.as_deref(), Some("h"));
        assert_eq!(parts.apq_version, Some(json!(1)));
        expand(&mut object, "{ a }");
        assert_eq!(
            json!(object),
            json!({"query": "{ a }", "extensions": {"other": true}, "variables": {"x": 1}})
        );

        let bad = json!({"documentId": 5}).as_object().unwrap().clone();
        assert_eq!(
            persisted_parts(&bad),
            Err(PartsError::NotAString("documentId"))
        );
    }
}
