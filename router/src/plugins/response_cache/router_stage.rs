//! The answer of the `cache lookup` stage: a hit served as the stored bytes, before
//! apollo-router parses, validates and plans the operation and before the response would be
//! serialized again. A hit costs a key and a lookup. Misses go on down the pipeline, where the
//! `cache fill` stage runs them once (single flight) and stores what may be stored.

use apollo_router::services::router;
use http::{HeaderValue, StatusCode};

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
