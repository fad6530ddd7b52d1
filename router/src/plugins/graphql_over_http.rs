//! The pipeline's `graphql_over_http` stage: answers with `application/graphql-response+json`
//! when the client asks for it, as the GraphQL-over-HTTP spec expects, and with 200 for
//! document errors when a legacy client accepts only `application/json`.
//!
//! apollo-router accepts that media type but always labels single responses
//! `application/json`. Clients that follow the spec (and send only the new type, or prefer it)
//! use the content type to know that a 4xx body is still a GraphQL response; we relabel it.

use apollo_router::services::router;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use schemars::JsonSchema;
use serde::Deserialize;
use tower::BoxError;

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// Configuration of the `graphql_over_http` stage.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GraphqlOverHttpConfig {
    /// Relabel responses for clients that prefer `application/graphql-response+json`, and
    /// answer legacy `application/json` clients 200 for GraphQL errors.
    #[serde(default = "enabled")]
    pub enabled: bool,
}

impl Default for GraphqlOverHttpConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

fn enabled() -> bool {
    true
}

/// The media type the client negotiated, read from `Accept` before the request goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiated {
    /// `application/graphql-response+json`: the status says how the request went.
    GraphqlResponse,
    /// `application/json` (or no preference): legacy clients read errors from a 200 body.
    Json,
}

/// Which media type the response is labelled with.
pub fn negotiate(headers: &http::HeaderMap) -> Negotiated {
    if prefers_graphql_response(headers.get(ACCEPT)) {
        Negotiated::GraphqlResponse
    } else {
        Negotiated::Json
    }
}

/// Errors raised while the GraphQL document is parsed, validated and its variables coerced:
/// to an `application/json` client the spec answers those with 200 (the request itself was
/// well-formed); only our policy refusals and malformed requests keep their 4xx.
const DOCUMENT_ERRORS: [&str; 5] = [
    "PARSING_ERROR",
    "GRAPHQL_PARSE_FAILED",
    "GRAPHQL_VALIDATION_FAILED",
    "VALIDATION_INVALID_TYPE_VARIABLE",
    "GRAPHQL_UNKNOWN_OPERATION_NAME",
];

/// Largest error body read to decide the status (apollo-router's error bodies are small).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Labels the response for what the client negotiated and, for legacy clients, turns the 400
/// of a document error into a 200.
pub async fn finish(
    response: router::Response,
    negotiated: Negotiated,
) -> Result<router::Response, BoxError> {
    let router::Response {
        response, context, ..
    } = response;
    let (mut parts, body) = response.into_parts();
    let is_json = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return router::Response::http_response_builder()
            .response(http::Response::from_parts(parts, body))
            .context(context)
            .build();
    }
    let body = match negotiated {
        Negotiated::GraphqlResponse => {
            parts.headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static(GRAPHQL_RESPONSE_JSON),
            );
            body
        }
        // Only bodies of a known, small size are read (apollo-router's error bodies are);
        // anything else goes on untouched.
        Negotiated::Json
            if parts.status == StatusCode::BAD_REQUEST
                && body
                    .size_hint()
                    .exact()
                    .is_some_and(|n| n <= MAX_ERROR_BODY as u64) =>
        {
            let bytes = body.collect().await?.to_bytes();
            if only_document_errors(&bytes) {
                parts.status = StatusCode::OK;
                // A 200 the cache fill stage never saw: say it must not be stored.
                parts.headers.insert(
                    http::header::CACHE_CONTROL,
                    HeaderValue::from_static("no-store"),
                );
            }
            router::body::from_bytes(bytes)
        }
        Negotiated::Json => body,
    };
    router::Response::http_response_builder()
        .response(http::Response::from_parts(parts, body))
        .context(context)
        .build()
}

/// True when `body` is a GraphQL response without data whose errors all have a
/// [`DOCUMENT_ERRORS`] code.
fn only_document_errors(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Response {
        #[serde(default)]
        errors: Vec<Error>,
    }
    #[derive(serde::Deserialize)]
    struct Error {
        #[serde(default)]
        extensions: Option<Extensions>,
    }
    #[derive(serde::Deserialize)]
    struct Extensions {
        #[serde(default)]
        code: Option<String>,
    }
    let Ok(response) = serde_json::from_slice::<Response>(body) else {
        return false;
    };
    !response.errors.is_empty()
        && response.errors.iter().all(|e| {
            e.extensions
                .as_ref()
                .and_then(|x| x.code.as_deref())
                .is_some_and(|c| DOCUMENT_ERRORS.contains(&c))
        })
}

/// True when `application/graphql-response+json` has the highest quality in `Accept` among the
/// JSON types (ties go to the new type, as the spec recommends).
fn prefers_graphql_response(accept: Option<&HeaderValue>) -> bool {
    let Some(accept) = accept.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut graphql = None;
    let mut json: Option<f32> = None;
    for part in accept.split(',') {
        let mut pieces = part.split(';');
        let media = pieces
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let q = pieces
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            GRAPHQL_RESPONSE_JSON => graphql = Some(graphql.map_or(q, |g: f32| g.max(q))),
            "application/json" => json = Some(json.map_or(q, |j| j.max(q))),
            _ => {}
        }
    }
    match (graphql, json) {
        (Some(g), Some(j)) => g > 0.0 && g >= j,
        (Some(g), None) => g > 0.0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefers(accept: &str) -> bool {
        prefers_graphql_response(Some(&HeaderValue::from_str(accept).unwrap()))
    }

    #[test]
    fn legacy_clients_get_200_for_document_errors_only() {
        let body = |code: &str| {
            format!(r#"{{"errors":[{{"message":"m","extensions":{{"code":"{code}"}}}}]}}"#)
        };
        assert!(only_document_errors(
            body("GRAPHQL_PARSE_FAILED").as_bytes()
        ));
        assert!(only_document_errors(
            body("GRAPHQL_VALIDATION_FAILED").as_bytes()
        ));
        assert!(!only_document_errors(body("RATE_LIMITED").as_bytes()));
        assert!(!only_document_errors(
            body("INVALID_GRAPHQL_REQUEST").as_bytes()
        ));
        assert!(!only_document_errors(br#"{"errors":[]}"#));
        assert!(!only_document_errors(b"not json"));
    }

    #[test]
    fn accept_negotiation() {
        assert!(prefers("application/graphql-response+json"));
        assert!(prefers(
            "application/graphql-response+json, application/json;q=0.9"
        ));
        assert!(prefers(
            "application/json, application/graphql-response+json"
        ));
        assert!(!prefers("application/json"));
        assert!(!prefers("*/*"));
        assert!(!prefers(
            "application/graphql-response+json;q=0.5, application/json"
        ));
        assert!(!prefers("application/graphql-response+json;q=0"));
        assert!(!prefers_graphql_response(None));
    }
}
