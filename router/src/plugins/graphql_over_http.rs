//! `switchyard.graphql_over_http`: answers with `application/graphql-response+json` when the
//! client asks for it, as the GraphQL-over-HTTP spec expects.
//!
//! apollo-router accepts that media type but always labels single responses
//! `application/json`. Clients that follow the spec (and send only the new type, or prefer it)
//! use the content type to know that a 4xx body is still a GraphQL response; we relabel it.

use apollo_router::plugin::{Plugin, PluginInit};
use apollo_router::register_plugin;
use apollo_router::services::router;
use http::HeaderValue;
use http::header::{ACCEPT, CONTENT_TYPE};
use schemars::JsonSchema;
use serde::Deserialize;
use tower::{BoxError, ServiceBuilder, ServiceExt};

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
const CONTEXT_KEY: &str = "switchyard::graphql_over_http::wants_graphql_response";

/// Configuration of `switchyard.graphql_over_http`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GraphqlOverHttpConfig {
    /// Relabel responses for clients that prefer `application/graphql-response+json`.
    #[serde(default = "enabled")]
    pub enabled: bool,
}

fn enabled() -> bool {
    true
}

#[derive(Debug)]
pub struct GraphqlOverHttp {
    enabled: bool,
}

#[async_trait::async_trait]
impl Plugin for GraphqlOverHttp {
    type Config = GraphqlOverHttpConfig;

    async fn new(init: PluginInit<Self::Config>) -> Result<Self, BoxError> {
        Ok(Self {
            enabled: init.config.enabled,
        })
    }

    fn router_service(&self, service: router::BoxService) -> router::BoxService {
        if !self.enabled {
            return service;
        }
        ServiceBuilder::new()
            .map_request(|request: router::Request| {
                if prefers_graphql_response(request.router_request.headers().get(ACCEPT)) {
                    let _ = request.context.insert(CONTEXT_KEY, true);
                }
                request
            })
            .map_response(|mut response: router::Response| {
                let wanted = response
                    .context
                    .get::<_, bool>(CONTEXT_KEY)
                    .ok()
                    .flatten()
                    .unwrap_or(false);
                let headers = response.response.headers_mut();
                let is_json = headers
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("application/json"));
                if wanted && is_json {
                    headers.insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static(GRAPHQL_RESPONSE_JSON),
                    );
                }
                response
            })
            .service(service)
            .boxed()
    }
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

register_plugin!("switchyard", "graphql_over_http", GraphqlOverHttp);

#[cfg(test)]
mod tests {
    use super::*;

    fn prefers(accept: &str) -> bool {
        prefers_graphql_response(Some(&HeaderValue::from_str(accept).unwrap()))
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
