//! The HTTP request, read once into a [`WireRequest`], strictly: whatever could be read in
//! more than one way (repeated fields or parameters, bytes after the JSON object, a batch) is
//! refused with a precise code rather than left for another parser to interpret differently.
//!
//! The router's `read` stage calls these and the fuzz targets in `fuzz/` drive them.

use http::{HeaderMap, Method, StatusCode};
use serde::Deserialize;
use serde_json_bytes::{ByteString, Map, Value};

use crate::names::{CLIENT_NAME_HEADER, CLIENT_VERSION_HEADER};

/// A JSON object as apollo-router holds variables and extensions.
pub type Object = Map<ByteString, Value>;

/// Longest client name or version accepted.
pub const MAX_CLIENT_HEADER_BYTES: usize = 64;

/// Why a request cannot be read: the HTTP status, the GraphQL error code and the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ReadError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ReadError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

/// The GraphQL parts of a request, as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct WireRequest {
    /// `GET` or `POST`.
    pub method: Method,
    pub query: Option<String>,
    pub operation_name: Option<String>,
    pub variables: Object,
    pub extensions: Object,
    /// `documentId` (GraphQL over HTTP persisted documents).
    pub document_id: Option<String>,
}

impl WireRequest {
    pub fn new(method: Method) -> Self {
        Self {
            method,
            query: None,
            operation_name: None,
            variables: Object::new(),
            extensions: Object::new(),
            document_id: None,
        }
    }
}

/// The client app, from its headers, normalised once (trimmed; absent when empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    pub name: Option<String>,
    pub version: Option<String>,
}

impl Client {
    /// The name, or `""` for none (cache keys and rate-limit keys).
    pub fn name_or_empty(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }
}

/// The strict shape of a POST body: serde refuses repeated fields and trailing bytes.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    operation_name: Option<String>,
    #[serde(default)]
    variables: Option<Object>,
    #[serde(default)]
    extensions: Option<Object>,
    #[serde(default)]
    document_id: Option<String>,
}

fn invalid(message: impl Into<String>) -> ReadError {
    ReadError::new(StatusCode::BAD_REQUEST, "INVALID_GRAPHQL_REQUEST", message)
}

/// A POST body.
pub fn from_body(bytes: &[u8]) -> Result<WireRequest, ReadError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ReadError::new(
            StatusCode::BAD_REQUEST,
            "BATCHING_NOT_ENABLED",
            "batched requests (a JSON array) are not accepted: send one operation per request",
        ));
    }
    let body: Body = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("the request body is not a GraphQL request: {e}")))?;
    let mut request = WireRequest::new(Method::POST);
    request.query = body.query;
    request.operation_name = body.operation_name;
    request.variables = body.variables.unwrap_or_default();
    request.extensions = body.extensions.unwrap_or_default();
    request.document_id = body.document_id;
    Ok(request)
}

/// A GET query string. Each GraphQL parameter may appear once; others are ignored (as
/// apollo-router ignores them).
pub fn from_query_string(query: &str) -> Result<WireRequest, ReadError> {
    const NAMES: [&str; 5] = [
        "query",
        "operationName",
        "variables",
        "extensions",
        "documentId",
    ];
    let mut values: [Option<String>; 5] = Default::default();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let Some(index) = NAMES.iter().position(|n| *n == key) else {
            continue;
        };
        if values[index].replace(value.into_owned()).is_some() {
            return Err(invalid(format!(
                "the query string repeats `{key}`; send each GraphQL parameter once"
            )));
        }
    }
    let object = |what: &str, value: Option<&String>| -> Result<Object, ReadError> {
        let Some(value) = value else {
            return Ok(Object::new());
        };
        match serde_json::from_str::<Value>(value) {
            Ok(Value::Object(object)) => Ok(object),
            Ok(Value::Null) => Ok(Object::new()),
            Ok(_) => Err(invalid(format!("`{what}` must be a JSON object"))),
            Err(e) => Err(invalid(format!("`{what}` is not JSON: {e}"))),
        }
    };
    let mut request = WireRequest::new(Method::GET);
    request.variables = object("variables", values[2].as_ref())?;
    request.extensions = object("extensions", values[3].as_ref())?;
    let [query, operation_name, _, _, document_id] = values;
    request.query = query;
    request.operation_name = operation_name;
    request.document_id = document_id;
    Ok(request)
}

/// The client headers: one value each, visible ASCII, at most [`MAX_CLIENT_HEADER_BYTES`].
pub fn client(headers: &HeaderMap) -> Result<Client, ReadError> {
    let one = |name: &'static str| -> Result<Option<String>, ReadError> {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        let bad = || {
            ReadError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_CLIENT_HEADER",
                format!(
                    "{name} must be sent once, as at most {MAX_CLIENT_HEADER_BYTES} visible ASCII characters"
                ),
            )
        };
        if values.next().is_some() {
            return Err(bad());
        }
        let text = value.to_str().map_err(|_| bad())?.trim();
        if text.len() > MAX_CLIENT_HEADER_BYTES
            || !text.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        {
            return Err(bad());
        }
        Ok((!text.is_empty()).then(|| text.to_owned()))
    };
    Ok(Client {
        name: one(CLIENT_NAME_HEADER)?,
        version: one(CLIENT_VERSION_HEADER)?,
    })
}

/// `application/json` or `application/graphql-response+json` (parameters allowed), as
/// apollo-router's content negotiation accepts them; any one value of the header may say so.
pub fn content_type_is_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::CONTENT_TYPE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| {
            let essence = media.split(';').next().unwrap_or_default().trim();
            essence.eq_ignore_ascii_case("application/json")
                || essence.eq_ignore_ascii_case("application/graphql-response+json")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(body: &str) -> Result<WireRequest, ReadError> {
        from_body(body.as_bytes())
    }

    fn get(query: &str) -> Result<WireRequest, ReadError> {
        from_query_string(query)
    }

    #[test]
    fn refuses_what_could_be_read_two_ways() {
        // Regression (issue 10): trailing bytes after the object ran in enforce mode.
        let error = post(r#"{"query":"{ feed(first:2){nodes{id}} }"}x"#).unwrap_err();
        assert_eq!(error.code, "INVALID_GRAPHQL_REQUEST");
        assert!(error.message.contains("trailing"), "{}", error.message);
        // Regression (issue 10): a repeated GET `variables` ran in enforce mode.
        let error = get("query=%7Ba%7D&variables=x&variables=%7B%7D").unwrap_err();
        assert!(
            error.message.contains("repeats `variables`"),
            "{}",
            error.message
        );
        for body in [
            r#"{"query":"{a}","query":"{b}"}"#,
            r#"{"documentId":"a","documentId":"b"}"#,
            r#"{"query":"{a}","variables":{},"variables":{"x":1}}"#,
            r#"{"query":"{a}"} {"query":"{b}"}"#,
            "\u{feff}{\"query\":\"{a}\"}",
            r#"{"query":1}"#,
            r#"{"query":"{a}","variables":"{}"}"#,
            r#"{"query":"{a}","extensions":[]}"#,
            r#""{a}""#,
            "",
        ] {
            assert!(post(body).is_err(), "{body:?} must be refused");
        }
        assert_eq!(
            post(r#" [{"query":"{a}"}]"#).unwrap_err().code,
            "BATCHING_NOT_ENABLED"
        );
        for query in [
            "query=%7Ba%7D&query=%7Bb%7D",
            "documentId=a&documentId=b",
            "query=%7Ba%7D&extensions=1",
            "query=%7Ba%7D&variables=%7Bnope",
        ] {
            assert!(get(query).is_err(), "{query:?} must be refused");
        }
    }

    #[test]
    fn reads_what_clients_send() {
        let request = post(
            r#" {"query":"query Q($n: Int) { a(n: $n) }","operationName":"Q","variables":{"n":1},"extensions":null,"other":[1,2],"other":3} "#,
        )
        .unwrap();
        assert_eq!(
            request.query.as_deref(),
            Some("query Q($n: Int) { a(n: $n) }")
        );
        assert_eq!(request.operation_name.as_deref(), Some("Q"));
        assert_eq!(request.variables.len(), 1);
        assert!(request.extensions.is_empty());
        let request =
            get("documentId=sha256%3Aabc&variables=%7B%22a%22%3A1%7D&operationName=Op&foo=1&foo=2")
                .unwrap();
        assert_eq!(request.document_id.as_deref(), Some("sha256:abc"));
        assert_eq!(request.variables.len(), 1);
        assert_eq!(request.method, Method::GET);
        assert!(get("variables=null").unwrap().variables.is_empty());
    }

    #[test]
    fn client_headers_are_read_once() {
        let mut headers = HeaderMap::new();
        headers.insert(CLIENT_NAME_HEADER, " ios ".parse().unwrap());
        headers.insert(CLIENT_VERSION_HEADER, "1.2.3".parse().unwrap());
        assert_eq!(
            client(&headers).unwrap(),
            Client {
                name: Some("ios".into()),
                version: Some("1.2.3".into())
            }
        );
        headers.append(CLIENT_NAME_HEADER, "web".parse().unwrap());
        assert_eq!(client(&headers).unwrap_err().code, "INVALID_CLIENT_HEADER");
        let mut headers = HeaderMap::new();
        headers.insert(CLIENT_NAME_HEADER, "x".repeat(65).parse().unwrap());
        assert!(client(&headers).is_err());
        headers.insert(CLIENT_NAME_HEADER, "  ".parse().unwrap());
        assert_eq!(client(&headers).unwrap(), Client::default());
    }

    #[test]
    fn content_types() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(http::header::CONTENT_TYPE, v.parse().unwrap());
            content_type_is_json(&h)
        };
        assert!(with("application/json"));
        assert!(with("application/json; charset=utf-8"));
        assert!(with("Application/GraphQL-Response+JSON"));
        assert!(!with("text/plain"));
        assert!(!with("application/jsonx"));
        assert!(!content_type_is_json(&HeaderMap::new()));
    }
}
