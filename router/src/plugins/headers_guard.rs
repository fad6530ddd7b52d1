//! `switchyard.headers_guard`: strips client-supplied internal headers at the router's front
//! door.
//!
//! Subgraphs trust `x-switchyard-*` headers (the authenticated user, scopes) because only the
//! router sets them. A client that sends them itself must never reach a subgraph with them, even
//! if a later `headers` propagation rule forwards everything, so they are removed in
//! `router_service`, before anything else sees the request.

use apollo_router::plugin::{Plugin, PluginInit};
use apollo_router::register_plugin;
use apollo_router::services::router;
use schemars::JsonSchema;
use serde::Deserialize;
use tower::{BoxError, ServiceBuilder, ServiceExt};

/// Configuration of `switchyard.headers_guard`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeadersGuardConfig {
    /// Header-name prefixes (case-insensitive) that only the router may set.
    #[serde(default = "default_prefixes")]
    pub strip_prefixes: Vec<String>,
}

fn default_prefixes() -> Vec<String> {
    vec!["x-switchyard-".to_owned()]
}

#[derive(Debug)]
pub struct HeadersGuard {
    prefixes: Vec<String>,
}

#[async_trait::async_trait]
impl Plugin for HeadersGuard {
    type Config = HeadersGuardConfig;

    async fn new(init: PluginInit<Self::Config>) -> Result<Self, BoxError> {
        let prefixes: Vec<String> = init
            .config
            .strip_prefixes
            .iter()
            .map(|p| p.trim().to_ascii_lowercase())
            .collect();
        if let Some(empty) = prefixes.iter().position(String::is_empty) {
            return Err(
                format!("strip_prefixes[{empty}] is empty: it would strip every header").into(),
            );
        }
        Ok(Self { prefixes })
    }

    fn router_service(&self, service: router::BoxService) -> router::BoxService {
        let prefixes = self.prefixes.clone();
        ServiceBuilder::new()
            .map_request(move |mut request: router::Request| {
                strip(request.router_request.headers_mut(), &prefixes);
                request
            })
            .service(service)
            .boxed()
    }
}

/// Removes every header whose (lower-case) name starts with one of `prefixes`.
fn strip(headers: &mut http::HeaderMap, prefixes: &[String]) -> usize {
    let doomed: Vec<http::HeaderName> = headers
        .keys()
        .filter(|name| {
            prefixes
                .iter()
                .any(|p| name.as_str().starts_with(p.as_str()))
        })
        .cloned()
        .collect();
    for name in &doomed {
        headers.remove(name);
    }
    if !doomed.is_empty() {
        tracing::debug!(
            count = doomed.len(),
            "stripped client-supplied internal headers"
        );
    }
    doomed.len()
}

register_plugin!("switchyard", "headers_guard", HeadersGuard);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_matching_headers() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-switchyard-user-id", "42".parse().unwrap());
        headers.append("X-Switchyard-Scopes", "admin".parse().unwrap());
        headers.insert("x-request-id", "r1".parse().unwrap());
        headers.insert("authorization", "Bearer t".parse().unwrap());
        let removed = strip(&mut headers, &default_prefixes());
        assert_eq!(removed, 2);
        assert!(headers.get("x-switchyard-user-id").is_none());
        assert!(headers.get("x-switchyard-scopes").is_none());
        assert_eq!(headers.len(), 2);
    }
}
