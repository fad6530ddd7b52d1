//! Stage `read`: the HTTP request, read once into a typed [`GraphqlRequest`] that every later
//! stage uses and that [`super::forward`] encodes again for apollo-router.
//!
//! The reader is deliberately stricter than apollo-router's own (which ignores bytes after the
//! JSON object and lets the last of repeated GET parameters win): whatever it cannot read in
//! exactly one way is refused here with a precise code, never passed on for the engine to
//! interpret differently. Because apollo-router only ever sees our re-encoding of the typed
//! value, what it executes is what the stages checked (`forward::differential` proves the
//! encoding round-trips through apollo-router's own parsers).

use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json_bytes::{ByteString, Map, Value};

use super::document::Operation;
use super::refusal::Refusal;

/// A JSON object as apollo-router holds variables and extensions.
pub type Object = Map<ByteString, Value>;

/// The request header naming the client app (Apollo's convention).
pub const CLIENT_NAME_HEADER: &str = "apollographql-client-name";
/// The request header with the client app's version.
pub const CLIENT_VERSION_HEADER: &str = "apollographql-client-version";

/// Bounds on what the reader accepts, checked before anything is parsed.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadConfig {
    /// Largest POST body read (bytes); larger bodies get 413 before they are parsed.
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: usize,
    /// Longest GET query string (bytes); longer ones get 414.
    #[serde(default = "defaults::max_query_string_bytes")]
    pub max_query_string_bytes: usize,
    /// Largest GraphQL document (bytes), after a persisted id was expanded; larger ones get
    /// 400 `DOCUMENT_TOO_LARGE` before they are parsed. Our largest persisted operation is under 1 KiB.
    #[serde(default = "defaults::max_document_bytes")]
    pub max_document_bytes: usize,
    /// Most lexical tokens the document parser reads; keep equal to apollo-router's
    /// `limits.parser_max_tokens` so both parsers refuse the same documents.
    #[serde(default = "defaults::parser_max_tokens")]
    pub parser_max_tokens: usize,
    /// Deepest nesting the document parser follows; keep equal to apollo-router's
    /// `limits.parser_max_recursion`.
    #[serde(default = "defaults::parser_max_recursion")]
    pub parser_max_recursion: usize,
}

impl Default for ReadConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: defaults::max_body_bytes(),
            max_query_string_bytes: defaults::max_query_string_bytes(),
            max_document_bytes: defaults::max_document_bytes(),
            parser_max_tokens: defaults::parser_max_tokens(),
            parser_max_recursion: defaults::parser_max_recursion(),
        }
    }
}

mod defaults {
    pub fn max_body_bytes() -> usize {
        64 * 1024
    }
    pub fn max_query_string_bytes() -> usize {
        8 * 1024
    }
    pub fn max_document_bytes() -> usize {
        16 * 1024
    }
    pub fn parser_max_tokens() -> usize {
        5_000
    }
    pub fn parser_max_recursion() -> usize {
        100
    }
}

/// Longest client name or version accepted.
const MAX_CLIENT_HEADER_BYTES: usize = 64;

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

/// A GraphQL request as the pipeline holds it, from the first stage to the last.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphqlRequest {
    /// `GET` or `POST`.
    pub method: Method,
    pub query: Option<String>,
    pub operation_name: Option<String>,
    pub variables: Object,
    pub extensions: Object,
    /// `documentId` (GraphQL over HTTP persisted documents), as sent.
    pub document_id: Option<String>,
    pub client: Client,
    /// Set by `safelist`: the persisted operation this request runs.
    pub persisted_id: Option<String>,
    /// Set by `document`: the parsed operation that runs (absent when the document does not
    /// parse or names no operation; apollo-router then answers with its own error).
    pub operation: Option<Operation>,
}

impl GraphqlRequest {
    fn new(method: Method, client: Client) -> Self {
        Self {
            method,
            query: None,
            operation_name: None,
            variables: Object::new(),
            extensions: Object::new(),
            document_id: None,
            client,
            persisted_id: None,
            operation: None,
        }
    }
}

/// Reads `parts` and `body` (the body only for POST) into a typed request.
pub async fn read(
    config: &ReadConfig,
    parts: &http::request::Parts,
    body: apollo_router::services::router::Body,
) -> Result<GraphqlRequest, Refusal> {
    let client = client(&parts.headers)?;
    if parts.method == Method::GET {
        let query = parts.uri.query().unwrap_or_default();
        if query.len() > config.max_query_string_bytes {
            return Err(Refusal::new(
                StatusCode::URI_TOO_LONG,
                "URI_TOO_LONG",
                format!(
                    "the query string is longer than {} bytes; send the operation by id or use POST",
                    config.max_query_string_bytes
                ),
            ));
        }
        return from_query_string(query, client);
    }
    if parts.method != Method::POST {
        return Err(Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "GraphQL requests are GET or POST",
        ));
    }
    if !content_type_is_json(&parts.headers) {
        return Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "INVALID_CONTENT_TYPE_HEADER",
            "'content-type' header must be \"application/json\" or \"application/graphql-response+json\"",
        ));
    }
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "REQUEST_TOO_LARGE",
            format!(
                "the request body is larger than {} bytes",
                config.max_body_bytes
            ),
        )
    };
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > config.max_body_bytes as u64) {
        return Err(too_large());
    }
    let bytes = http_body_util::Limited::new(body, config.max_body_bytes)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                too_large()
            } else {
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "INVALID_GRAPHQL_REQUEST",
                    "the request body could not be read",
                )
            }
        })?
        .to_bytes();
    from_body(&bytes, client)
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

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::new(StatusCode::BAD_REQUEST, "INVALID_GRAPHQL_REQUEST", message)
}

/// A POST body.
pub fn from_body(bytes: &[u8], client: Client) -> Result<GraphqlRequest, Refusal> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "BATCHING_NOT_ENABLED",
            "batched requests (a JSON array) are not accepted: send one operation per request",
        ));
    }
    let body: Body = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("the request body is not a GraphQL request: {e}")))?;
    let mut request = GraphqlRequest::new(Method::POST, client);
    request.query = body.query;
    request.operation_name = body.operation_name;
    request.variables = body.variables.unwrap_or_default();
    request.extensions = body.extensions.unwrap_or_default();
    request.document_id = body.document_id;
    Ok(request)
}

/// A GET query string. Each GraphQL parameter may appear once; others are ignored (as
/// apollo-router ignores them).
pub fn from_query_string(query: &str, client: Client) -> Result<GraphqlRequest, Refusal> {
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
    let object = |what: &str, value: Option<&String>| -> Result<Object, Refusal> {
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
    let mut request = GraphqlRequest::new(Method::GET, client);
    request.variables = object("variables", values[2].as_ref())?;
    request.extensions = object("extensions", values[3].as_ref())?;
    let [query, operation_name, _, _, document_id] = values;
    request.query = query;
    request.operation_name = operation_name;
    request.document_id = document_id;
    Ok(request)
}

/// The client headers: one value each, visible ASCII, at most [`MAX_CLIENT_HEADER_BYTES`].
pub fn client(headers: &HeaderMap) -> Result<Client, Refusal> {
    let one = |name: &'static str| -> Result<Option<String>, Refusal> {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        let bad = || {
            Refusal::new(
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
fn content_type_is_json(headers: &HeaderMap) -> bool {
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

    fn post(body: &str) -> Result<GraphqlRequest, Refusal> {
        from_body(body.as_bytes(), Client::default())
    }

    fn get(query: &str) -> Result<GraphqlRequest, Refusal> {
        from_query_string(query, Client::default())
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
