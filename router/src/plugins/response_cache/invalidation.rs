//! The admin endpoint: `POST {"tags": ["Post:1", ...]}` with `Authorization: Bearer <token>`
//! drops every cached response tagged with one of the tags, in this router, in Redis and
//! (through pub/sub) in every other replica.
//!
//! Answers `200 {"invalidated": {"memory": n, "redis": m}}`; `502` when Redis could not be
//! reached (this replica's memory is cleared of the tags all the same, and the body says so);
//! `400` naming what is wrong with the body; `401` without the token; `405` for other methods.

use std::sync::Arc;

use apollo_router::Endpoint;
use apollo_router::services::router;
use http::{HeaderValue, StatusCode};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tower::{BoxError, ServiceExt};

use super::hints::valid_tag;
use super::{Cache, InvalidationConfig};

/// Largest request body the endpoint reads.
const MAX_BODY_BYTES: usize = 256 * 1024;
/// Most tags per call.
pub const MAX_TAGS: usize = 1_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    tags: Vec<String>,
}

pub fn endpoint(cache: Arc<Cache>, config: &InvalidationConfig) -> Endpoint {
    let token = Arc::new(Sha256::digest(config.token.as_bytes()));
    let service = tower::service_fn(move |request: router::Request| {
        let cache = cache.clone();
        let token = token.clone();
        async move { handle(&cache, &token, request).await }
    });
    Endpoint::from_router_service(config.path.clone(), service.boxed())
}

async fn handle(
    cache: &Cache,
    token: &[u8],
    request: router::Request,
) -> Result<router::Response, BoxError> {
    let context = request.context.clone();
    let reply =
        |status: StatusCode, body: serde_json::Value| -> Result<router::Response, BoxError> {
            let mut response = http::Response::builder()
                .status(status)
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::CACHE_CONTROL, "no-store");
            if status == StatusCode::UNAUTHORIZED {
                response = response.header(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer"),
                );
            }
            router::Response::http_response_builder()
                .response(response.body(router::body::from_bytes(body.to_string()))?)
                .context(context.clone())
                .build()
        };
    let (parts, body) = request.router_request.into_parts();
    if parts.method != http::Method::POST {
        return reply(StatusCode::METHOD_NOT_ALLOWED, json!({"error": "use POST"}));
    }
    let sent = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| Sha256::digest(t.trim().as_bytes()));
    // Comparing digests: the time taken says nothing about the token.
    if sent.as_deref() != Some(token) {
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": "send the invalidation token as `Authorization: Bearer <token>`"}),
        );
    }
    let Ok(bytes) = http_body_util::Limited::new(body, MAX_BODY_BYTES)
        .collect()
        .await
    else {
        return reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": format!("the body is larger than {MAX_BODY_BYTES} bytes")}),
        );
    };
    let body: Body = match serde_json::from_slice(&bytes.to_bytes()) {
        Ok(body) => body,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                json!({"error": format!("expected {{\"tags\": [\"Type:id\", ...]}}: {e}")}),
            );
        }
    };
    if body.tags.is_empty() || body.tags.len() > MAX_TAGS {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": format!("send 1 to {MAX_TAGS} tags, got {}", body.tags.len())}),
        );
    }
    if let Some(bad) = body.tags.iter().find(|t| !valid_tag(t)) {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": format!("{bad:?} is not a tag: tags look like Type:id (printable, no spaces or commas)")}),
        );
    }
    let (memory, redis) = cache.invalidate(body.tags, "admin").await;
    match redis {
        Ok(redis) => reply(
            StatusCode::OK,
            json!({"invalidated": {"memory": memory, "redis": redis}}),
        ),
        Err(e) => reply(
            StatusCode::BAD_GATEWAY,
            json!({"error": format!("invalidated in this router only; redis failed: {e}"), "invalidated": {"memory": memory}}),
        ),
    }
}
