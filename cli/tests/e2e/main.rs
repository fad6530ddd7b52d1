//! End-to-end: real subgraphs and the real router on ephemeral ports, over HTTP.

mod cache_worker;
mod chaos;
mod cross_subgraph;
mod engagement;
mod entity_cache;
mod graphql_http_audit;
mod harness;
mod headers_guard;
mod hot_reload;
mod http_errors;
mod identity;
mod jwt_auth;
mod notifications;
mod persisted_queries;
mod rate_limit;
mod request_path;
mod resilience;
mod response_cache;
mod steady_load;
