//! The implementations of the pipeline's stages (`crate::pipeline` calls them in order).
//!
//! One module per stage; each holds its config (JSON-schema'd, `deny_unknown_fields`), its
//! metrics, its service hooks and its unit tests.

pub mod background;
pub mod entity_cache;
pub mod graphql_over_http;
pub mod headers_guard;
pub mod jwt_auth;
pub mod operation;
pub mod operation_limits;
pub mod persisted_queries;
pub mod rate_limit;
pub mod redis_connection;
pub mod response_cache;

/// Wall-clock unix milliseconds (0 before 1970), for ages and rate-limit arithmetic.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}
