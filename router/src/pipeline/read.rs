//! Stage `read`: the HTTP request, read once into a typed [`GraphqlRequest`] that every later
//! stage uses and that [`super::forward`] encodes again for apollo-router.
//!
//! The parsing itself is `switchyard_wire::request` (fuzzed in `fuzz/`). The reader is
//! deliberately stricter than apollo-router's own (which ignores bytes after the
//! JSON object and lets the last of repeated GET parameters win): whatever it cannot read in
//! exactly one way is refused here with a precise code, never passed on for the engine to
//! interpret differently. Because apollo-router only ever sees our re-encoding of the typed
//! value, what it executes is what the stages checked (`forward::differential` proves the
//! encoding round-trips through apollo-router's own parsers).

use http::{Method, StatusCode};
use http_body_util::BodyExt;
use schemars::JsonSchema;
use serde::Deserialize;

use super::document::Operation;
use super::refusal::Refusal;

pub use switchyard_wire::names::{CLIENT_NAME_HEADER, CLIENT_VERSION_HEADER};
use switchyard_wire::request::{self, ReadError, WireRequest};
pub use switchyard_wire::request::{Client, Object};

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
    /// Longest a POST body may take to arrive once its headers have (`10s`); a slower body
    /// gets 408 `REQUEST_TIMEOUT`, so trickled bodies cannot hold connections and memory.
    /// (Headers have their own bound, apollo-router's `server.http.header_read_timeout`.)
    #[serde(default = "defaults::body_timeout", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub body_timeout: std::time::Duration,
}

impl Default for ReadConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: defaults::max_body_bytes(),
            max_query_string_bytes: defaults::max_query_string_bytes(),
            max_document_bytes: defaults::max_document_bytes(),
            parser_max_tokens: defaults::parser_max_tokens(),
            parser_max_recursion: defaults::parser_max_recursion(),
            body_timeout: defaults::body_timeout(),
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
    pub fn body_timeout() -> std::time::Duration {
        std::time::Duration::from_secs(10)
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
    fn new(wire: WireRequest, client: Client) -> Self {
        Self {
            method: wire.method,
            query: wire.query,
            operation_name: wire.operation_name,
            variables: wire.variables,
            extensions: wire.extensions,
            document_id: wire.document_id,
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
    let client = request::client(&parts.headers)?;
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
    if !request::content_type_is_json(&parts.headers) {
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
    let collected = tokio::time::timeout(
        config.body_timeout,
        http_body_util::Limited::new(body, config.max_body_bytes).collect(),
    )
    .await
    .map_err(|_| {
        Refusal::new(
            StatusCode::REQUEST_TIMEOUT,
            "REQUEST_TIMEOUT",
            format!(
                "the request body did not arrive within {}",
                humantime_serde::re::humantime::format_duration(config.body_timeout)
            ),
        )
    })?;
    let bytes = collected
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

/// A POST body, for the given client.
pub fn from_body(bytes: &[u8], client: Client) -> Result<GraphqlRequest, Refusal> {
    Ok(GraphqlRequest::new(request::from_body(bytes)?, client))
}

/// A GET query string, for the given client.
pub fn from_query_string(query: &str, client: Client) -> Result<GraphqlRequest, Refusal> {
    Ok(GraphqlRequest::new(
        request::from_query_string(query)?,
        client,
    ))
}

impl From<ReadError> for Refusal {
    fn from(e: ReadError) -> Self {
        Refusal::new(e.status, e.code, e.message)
    }
}
