//! The pipeline's `guard` stage: strips client-supplied internal headers at the router's front
//! door.
//!
//! Subgraphs trust `x-switchyard-*` headers (the authenticated user, scopes) because only the
//! router sets them. A client that sends them itself must never reach a subgraph with them, even
//! if a later `headers` propagation rule forwards everything, so they are removed first,
//! before any other stage sees the request.

use schemars::JsonSchema;
use serde::Deserialize;
use tower::BoxError;

/// Configuration of the `guard` stage.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeadersGuardConfig {
    /// Header-name prefixes (case-insensitive) that only the router may set.
    #[serde(default = "default_prefixes")]
    pub strip_prefixes: Vec<String>,
}

impl Default for HeadersGuardConfig {
    fn default() -> Self {
        Self {
            strip_prefixes: default_prefixes(),
        }
    }
}

fn default_prefixes() -> Vec<String> {
    vec![switchyard_wire::names::INTERNAL_PREFIX.to_owned()]
}

#[derive(Debug)]
pub struct HeadersGuard {
    prefixes: Vec<String>,
}

impl HeadersGuard {
    pub fn new(config: &HeadersGuardConfig) -> Result<Self, BoxError> {
        let prefixes: Vec<String> = config
            .strip_prefixes
            .iter()
            .map(|p| p.trim().to_ascii_lowercase())
            .collect();
        if let Some(empty) = prefixes.iter().position(String::is_empty) {
            return Err(format!(
                "headers_guard.strip_prefixes[{empty}] is empty: it would strip every header"
            )
            .into());
        }
        Ok(Self { prefixes })
    }

    /// The `guard` stage: removes the internal headers a client sent.
    pub fn strip(&self, headers: &mut http::HeaderMap) -> usize {
        strip(headers, &self.prefixes)
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
