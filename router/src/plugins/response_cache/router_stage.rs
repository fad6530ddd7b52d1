//! The `router_service` stage: serves hits as the stored bytes, before apollo-router parses,
//! validates and plans the operation and before the response would be serialized again. A
//! hit here costs a key and a lookup. Misses go on down the pipeline, where the
//! `supergraph_service` stage runs them once (single flight) and stores what may be stored.
//!
//! Runs after `jwt_auth` and `persisted_queries` (which are listed before this plugin), so the
//! user is verified and persisted ids are expanded.

use apollo_router::services::router;
use http::{HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use serde::Deserialize;

use super::key::KeyParts;

/// The parts of a GraphQL request the key needs.
pub struct Parsed {
    pub query: String,
    pub operation_name: Option<String>,
    pub variables: serde_json_bytes::Map<serde_json_bytes::ByteString, serde_json_bytes::Value>,
}

impl Parsed {
    pub fn key_parts<'a>(&'a self, persisted_id: Option<&'a str>, client: &'a str) -> KeyParts<'a> {
        KeyParts {
            persisted_id,
            document: &self.query,
            operation_name: self.operation_name.as_deref(),
            variables: &self.variables,
            client,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    query: Option<String>,
    operation_name: Option<String>,
    #[serde(default)]
    variables: Option<serde_json_bytes::Map<serde_json_bytes::ByteString, serde_json_bytes::Value>>,
}

/// Bodies larger than this skip the fast path (the pipeline enforces the real limit).
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Reads the GraphQL request out of `request` without consuming it: the body is buffered and
/// put back. `None` for anything but a single JSON POST or a GET with a `query` (batches,
/// multipart, malformed requests: apollo-router answers those).
pub async fn parse(request: router::Request) -> (router::Request, Option<Parsed>) {
    let router::Request {
        router_request,
        context,
        ..
    } = request;
    let (parts, body) = router_request.into_parts();
    let rebuild = |parts, body| {
        router::Request::from((http::Request::from_parts(parts, body), context.clone()))
    };
    if parts.method == Method::GET {
        let parsed = parts.uri.query().and_then(from_query_string);
        return (rebuild(parts, body), parsed);
    }
    let is_json = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let small = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n <= MAX_BODY_BYTES);
    if parts.method != Method::POST || !is_json || !small {
        return (rebuild(parts, body), None);
    }
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        // The body failed to arrive; the pipeline reports it (with an empty body).
        Err(_) => {
            return (
                rebuild(parts, router::body::from_bytes(bytes::Bytes::new())),
                None,
            );
        }
    };
    let parsed = serde_json::from_slice::<Body>(&bytes).ok().and_then(|b| {
        Some(Parsed {
            query: b.query?,
            operation_name: b.operation_name,
            variables: b.variables.unwrap_or_default(),
        })
    });
    (rebuild(parts, router::body::from_bytes(bytes)), parsed)
}

fn from_query_string(query: &str) -> Option<Parsed> {
    let mut document = None;
    let mut operation_name = None;
    let mut variables = None;
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "query" => document = Some(value.into_owned()),
            "operationName" => operation_name = Some(value.into_owned()),
            "variables" => variables = Some(serde_json::from_str(&value).ok()?),
            _ => {}
        }
    }
    Some(Parsed {
        query: document?,
        operation_name,
        variables: variables.unwrap_or_default(),
    })
}

/// The stored response, as apollo-router would have sent it; or, when the client already
/// holds it (`not_modified`), a 304 without a body.
pub fn respond(
    not_modified: bool,
    body: bytes::Bytes,
    headers: impl FnOnce(&mut http::HeaderMap),
    context: apollo_router::Context,
) -> Result<router::Response, tower::BoxError> {
    let (status, body) = if not_modified {
        (StatusCode::NOT_MODIFIED, bytes::Bytes::new())
    } else {
        (StatusCode::OK, body)
    };
    let mut response = http::Response::builder()
        .status(status)
        .header(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )
        .body(router::body::from_bytes(body))?;
    headers(response.headers_mut());
    router::Response::http_response_builder()
        .response(response)
        .context(context)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_get_parameters() {
        let parsed = from_query_string(
            "query=query%20Q(%24n%3A%20Int)%20%7B%20a%20%7D&operationName=Q&variables=%7B%22n%22%3A1%7D",
        )
        .unwrap();
        assert_eq!(parsed.query, "query Q($n: Int) { a }");
        assert_eq!(parsed.operation_name.as_deref(), Some("Q"));
        assert_eq!(parsed.variables.len(), 1);
        assert!(from_query_string("operationName=Q").is_none());
        // Malformed variables: left to apollo-router to answer.
        assert!(from_query_string("query=%7Ba%7D&variables=%7Bnope").is_none());
    }
}
