//! How every stage refuses a request: one GraphQL error with a code, an HTTP status, and
//! `Cache-Control: no-store` so that no CDN or client cache ever keeps a refusal.

use apollo_router::graphql;
use apollo_router::services::router;
use http::{HeaderName, HeaderValue, StatusCode};

/// A refusal, before it becomes a response.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra response headers (`WWW-Authenticate`, `Retry-After`, ...).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Refusal {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn into_response(
        self,
        context: apollo_router::Context,
    ) -> Result<router::Response, tower::BoxError> {
        let error = graphql::Error::builder()
            .message(self.message)
            .extension_code(self.code)
            .build();
        let mut builder = router::Response::error_builder()
            .error(error)
            .status_code(self.status)
            .header(http::header::CACHE_CONTROL, "no-store")
            .context(context);
        for (name, value) in self.headers {
            builder = builder.header(name, value);
        }
        builder.build()
    }
}

/// `no-store` on every error answer that does not already say how to cache it (apollo-router's
/// own 400s and 5xx included): a refusal must never be served from a cache.
pub fn mark_no_store(headers: &mut http::HeaderMap, status: StatusCode) {
    if status.is_client_error() || status.is_server_error() {
        headers.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
    }
}
