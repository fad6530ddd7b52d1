//! Whether this router runs in development or production, and the start-up check that a
//! production router trusts none of the secrets this repository publishes.
//!
//! The launcher ([`crate::command`], [`crate::start`]) decides the environment from
//! `SWITCHYARD_ENV` and the address the router will listen on (see
//! [`Environment::resolve`]: unset means development only on a loopback address), and hands
//! it to the pipeline plugin, which checks its configuration against it at start-up and at
//! every hot reload. A router started some other way, with no `SWITCHYARD_ENV`, is production.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::Context;
use switchyard_wire::deployment::{self, Environment, Secret};

use crate::pipeline::PipelineConfig;

/// What in-process launches ([`crate::start`]) decided: 0 none yet, 1 development,
/// 2 production. Once production, always production (several routers in one process).
static LAUNCHED: AtomicU8 = AtomicU8::new(0);

/// The environment for a router listening on `listen`.
pub fn resolve(listen: SocketAddr) -> anyhow::Result<Environment> {
    Environment::from_env(&[listen]).map_err(anyhow::Error::msg)
}

/// Records an in-process launch's environment.
pub(crate) fn record(environment: Environment) {
    let value = if environment.is_production() { 2 } else { 1 };
    LAUNCHED.fetch_max(value, Ordering::SeqCst);
}

/// The environment the plugin checks against: an explicit `SWITCHYARD_ENV` (which the
/// launcher sets for a child process), else what an in-process launch recorded, else
/// production.
pub fn current() -> Environment {
    match std::env::var(deployment::ENV_VAR)
        .ok()
        .filter(|v| !v.is_empty())
    {
        Some(value) => Environment::resolve(Some(&value), &[]).unwrap_or(Environment::Production),
        None if LAUNCHED.load(Ordering::SeqCst) == 1 => Environment::Development,
        None => Environment::Production,
    }
}

/// The name `SWITCHYARD_ENV` takes for `environment`.
pub fn name(environment: Environment) -> &'static str {
    match environment {
        Environment::Development => "development",
        Environment::Production => "production",
    }
}

/// Refuses, in production, a configuration that trusts a published development secret: the
/// HMAC key anyone can sign access tokens with, the subgraph secret anyone can claim an
/// identity with, the cache admin token anyone can flush the cache with.
pub fn check(config: &PipelineConfig, environment: Environment) -> Result<(), String> {
    if !environment.is_production() {
        return Ok(());
    }
    let published =
        |value: &str| Secret::new(deployment::without_file_newline(value)).is_published();
    let mut found = Vec::new();
    if let Some(jwt) = &config.jwt_auth {
        if published(&jwt.subgraph_secret) {
            found.push("jwt_auth.subgraph_secret".to_owned());
        }
        for key in &jwt.keys {
            if key.secret.as_deref().is_some_and(published) {
                found.push(format!("jwt_auth.keys[kid {:?}].secret", key.kid));
            }
        }
    }
    if let Some(token) = config
        .response_cache
        .as_ref()
        .and_then(|c| c.invalidation.as_ref())
        .map(|i| i.token.as_str())
        && published(token)
    {
        found.push("response_cache.invalidation.token".to_owned());
    }
    if found.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{} {} the development secret published in this repository, and this router runs in production ({}=production, or unset while listening on a non-loopback address). Give it its own secrets (router/router.production.yaml reads them from the environment), or listen on 127.0.0.1 for development",
        found.join(", "),
        if found.len() == 1 { "is" } else { "are" },
        deployment::ENV_VAR,
    ))
}

/// `supergraph.listen` from a router config (apollo-router's default, 127.0.0.1:4000, when
/// absent). A value apollo-router would expand (`${env.NAME:-default}`) is expanded the same
/// way; one this cannot read counts as a public address (the safe side).
pub fn listen_address(config: &Path) -> anyhow::Result<SocketAddr> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text)
        .with_context(|| format!("{} is not valid YAML", config.display()))?;
    let listen = yaml["supergraph"]["listen"]
        .as_str()
        .unwrap_or("127.0.0.1:4000");
    let expanded = expand_env(listen);
    match expanded.as_deref().map(str::parse::<SocketAddr>) {
        Some(Ok(addr)) => Ok(addr),
        Some(Err(_)) if !listen.contains("${") => anyhow::bail!(
            "{}: supergraph.listen {listen:?} is not a socket address",
            config.display()
        ),
        _ => Ok(SocketAddr::from(([0, 0, 0, 0], 4000))),
    }
}

/// The explorer's path when the config turns it on (for `switchyard dev`'s banner).
pub fn explorer_path(config: &Path) -> Option<String> {
    let text = std::fs::read_to_string(config).ok()?;
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).ok()?;
    let explorer = &yaml["plugins"]["switchyard.explorer"];
    if explorer["enabled"].as_bool() != Some(true) {
        return None;
    }
    Some(explorer["path"].as_str().unwrap_or("/explorer").to_owned())
}

/// `${env.NAME}` and `${env.NAME:-default}` as a whole value; anything else as it is.
fn expand_env(value: &str) -> Option<String> {
    let Some(inner) = value
        .trim()
        .strip_prefix("${env.")
        .and_then(|v| v.strip_suffix('}'))
    else {
        return (!value.contains("${")).then(|| value.to_owned());
    };
    let (name, default) = match inner.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (inner, None),
    };
    std::env::var(name)
        .ok()
        .or_else(|| default.map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_wire::deployment::{DEV_CACHE_ADMIN_TOKEN, DEV_HMAC_SECRET, DEV_ROUTER_SECRET};

    fn config(yaml: &str) -> PipelineConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn jwt(subgraph_secret: &str, key_secret: &str) -> String {
        format!(
            "jwt_auth:\n  issuer: i\n  audiences: [a]\n  subgraph_secret: {subgraph_secret}\n  keys:\n    - {{ kid: dev, alg: HS256, secret: {key_secret} }}\n"
        )
    }

    #[test]
    fn production_refuses_every_published_secret_and_development_allows_them() {
        let dev = config(&format!(
            "{}response_cache:\n  invalidation:\n    listen: 127.0.0.1:0\n    token: {DEV_CACHE_ADMIN_TOKEN}\n",
            jwt(DEV_ROUTER_SECRET, DEV_HMAC_SECRET)
        ));
        assert_eq!(check(&dev, Environment::Development), Ok(()));
        let error = check(&dev, Environment::Production).unwrap_err();
        assert!(
            error.starts_with("jwt_auth.subgraph_secret, jwt_auth.keys[kid \"dev\"].secret, response_cache.invalidation.token are the development secret"),
            "{error}"
        );
        let own = config(&jwt(
            "a-secret-of-our-own-123",
            "an-hmac-key-of-our-own-0123456789abc",
        ));
        assert_eq!(check(&own, Environment::Production), Ok(()));
        let one = config(&jwt("a-secret-of-our-own-123", DEV_HMAC_SECRET));
        assert!(
            check(&one, Environment::Production)
                .unwrap_err()
                .starts_with("jwt_auth.keys[kid \"dev\"].secret is the development secret")
        );
    }

    #[test]
    fn the_listen_address_is_read_as_apollo_router_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("router.yaml");
        let listen = |yaml: &str| {
            std::fs::write(&file, yaml).unwrap();
            listen_address(&file).map(|a| a.to_string())
        };
        assert_eq!(listen("{}").unwrap(), "127.0.0.1:4000");
        assert_eq!(
            listen("supergraph:\n  listen: 0.0.0.0:4000\n").unwrap(),
            "0.0.0.0:4000"
        );
        assert_eq!(
            listen("supergraph:\n  listen: ${env.SWITCHYARD_TEST_UNSET_LISTEN:-127.0.0.1:4100}\n")
                .unwrap(),
            "127.0.0.1:4100"
        );
        // What cannot be read here counts as public.
        assert_eq!(
            listen("supergraph:\n  listen: ${env.SWITCHYARD_TEST_UNSET_LISTEN}\n").unwrap(),
            "0.0.0.0:4000"
        );
        assert_eq!(
            listen("supergraph:\n  listen: \"${file./nope}\"\n").unwrap(),
            "0.0.0.0:4000"
        );
        assert!(listen("supergraph:\n  listen: nonsense\n").is_err());
    }
}
