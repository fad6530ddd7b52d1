//! `switchyard.explorer`: the schema explorer for frontend and mobile teams, served by the
//! router itself (apollo-router's sandbox loads its code from a CDN that offline and corporate
//! networks cannot reach).
//!
//! The web app (`router/explorer/`, GraphiQL for the editor) is embedded in the binary
//! ([`assets`]); its data comes from endpoints under the same path:
//!
//! - `GET  {path}/api/schema`: every API type and field with descriptions, deprecations, cache
//!   hints, owning subgraphs and entity keys ([`model`]), computed once per supergraph.
//! - `GET  {path}/api/sdl`: the API schema as SDL, for the editor (no introspection needed).
//! - `GET  {path}/api/operations`: the persisted-operation catalogue by client, with the fields
//!   and subgraphs each operation uses ([`catalogue`]), rebuilt when the manifest changes.
//! - `POST {path}/api/check`: a proposed subgraph SDL recomposed and every persisted operation
//!   validated against it ([`check`]); one check at a time per router.
//! - `GET  {path}/api/subgraphs/{name}/sdl`: the current SDL a check starts from.
//! - `GET  {path}/api/usage`: which client versions this router has seen send each persisted
//!   operation (the safelist stage records them), retired versions marked.
//!
//! Off by default; with `admin_token`, every request needs the token (HTTP Basic password or
//! bearer), compared as a digest so timing says nothing about it.

mod admin_token;
pub mod assets;
pub mod catalogue;
pub mod check;
pub mod model;
mod reply;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use apollo_compiler::Schema;
use apollo_compiler::validation::Valid;
use apollo_router::plugin::{Plugin, PluginInit};
use apollo_router::register_plugin;
use apollo_router::services::router;
use apollo_router::{Endpoint, ListenAddr};
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use schemars::JsonSchema;
use serde::Deserialize;
use tower::{BoxError, ServiceExt};

use self::reply::{Fixed, Gzip, Reply};
use crate::composition::{self, SubgraphSource};
use crate::plugins::persisted_queries::reload::{Snapshot, Watched};

fn default_path() -> String {
    "/explorer".to_owned()
}

fn default_graphql_path() -> String {
    "/graphql".to_owned()
}

fn default_manifest() -> PathBuf {
    PathBuf::from("persisted-queries/manifest.json")
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplorerConfig {
    /// Serve the explorer (off unless set: the production example leaves it off).
    #[serde(default)]
    pub enabled: bool,
    /// The explorer's path; everything under it belongs to the explorer (deep links such as
    /// `/explorer/type/Post/field/author`).
    #[serde(default = "default_path")]
    pub path: String,
    /// The address to serve it on. The supergraph's own `listen` puts it on the GraphQL port,
    /// so the editor talks to the same origin and needs no CORS.
    pub listen: SocketAddr,
    /// The GraphQL endpoint the editor sends requests to (`supergraph.path`).
    #[serde(default = "default_graphql_path")]
    pub graphql_path: String,
    /// When set (16+ characters), every explorer request must carry it: as the password of
    /// HTTP Basic auth (any user name; browsers prompt for it) or as `Authorization: Bearer`.
    pub admin_token: Option<String>,
    /// The persisted-query manifest the catalogue lists (re-read when it changes).
    #[serde(default = "default_manifest")]
    pub manifest: PathBuf,
    /// Retired operations and app versions (`persisted-queries/retired.yaml`).
    pub retired: Option<PathBuf>,
    /// `supergraph.yaml`: the subgraph sources a schema-change check recomposes. Without it,
    /// checks recompose the subgraphs extracted from the running supergraph, which lacks the
    /// other subgraphs' descriptions and cache hints (composition and breakage are still exact
    /// for everything the join directives carry).
    pub supergraph_config: Option<PathBuf>,
}

impl ExplorerConfig {
    fn check(&self) -> Result<(), String> {
        let path_like = |s: &str| {
            s.starts_with('/')
                && s.len() > 1
                && !s.ends_with('/')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/-_.~".contains(c))
        };
        if !path_like(&self.path) {
            return Err(format!(
                "path {:?} must start with /, not end with /, and use only letters, digits and /-_.~",
                self.path
            ));
        }
        if !path_like(&self.graphql_path) {
            return Err(format!(
                "graphql_path {:?} must be a path like /graphql",
                self.graphql_path
            ));
        }
        if self.graphql_path == self.path
            || self.graphql_path.starts_with(&format!("{}/", self.path))
        {
            return Err("graphql_path must not be under the explorer's path".to_owned());
        }
        if let Some(token) = &self.admin_token
            && token.len() < 16
        {
            return Err("admin_token must be at least 16 characters".to_owned());
        }
        Ok(())
    }
}

/// What the endpoints share, for one supergraph.
struct State {
    config: ExplorerConfig,
    /// `{path}/`, the `<base href>` of every page.
    base: String,
    token: Option<[u8; 32]>,
    supergraph_sdl: Arc<String>,
    api: Valid<Schema>,
    /// `api/schema`, serialized once.
    schema_json: Fixed,
    /// `api/sdl`: the API schema the editor validates and completes against (so it needs no
    /// introspection, which production turns off).
    api_sdl: Bytes,
    owners: std::collections::HashMap<String, Vec<String>>,
    watched: Watched,
    /// The catalogue of the snapshot it was built from (rebuilt when the manifest changes).
    catalogue: Mutex<Option<(Arc<Snapshot>, Arc<CatalogueCache>)>>,
    /// One schema check at a time: composition is CPU-heavy.
    checks: tokio::sync::Semaphore,
}

struct CatalogueCache {
    catalogue: catalogue::Catalogue,
    json: Fixed,
}

struct Explorer {
    endpoints: Vec<(ListenAddr, Endpoint)>,
}

#[async_trait::async_trait]
impl Plugin for Explorer {
    type Config = ExplorerConfig;

    async fn new(init: PluginInit<Self::Config>) -> Result<Self, BoxError> {
        let config = init.config;
        if !config.enabled {
            return Ok(Self {
                endpoints: Vec::new(),
            });
        }
        let fail = |e: String| -> BoxError { format!("switchyard.explorer: {e}").into() };
        config.check().map_err(fail)?;
        crate::plugins::persisted_queries::usage::watch();
        let supergraph = apollo_federation::Supergraph::new(&init.supergraph_sdl)
            .map_err(|e| fail(format!("the supergraph: {e}")))?;
        let api = composition::api_schema(&init.supergraph_sdl).map_err(fail)?;
        let model = model::build(supergraph.schema.schema(), &api);
        let watched =
            Watched::load(config.manifest.clone(), config.retired.clone()).map_err(fail)?;
        let state = Arc::new(State {
            base: format!("{}/", config.path),
            token: config.admin_token.as_ref().map(|t| admin_token::digest(t)),
            supergraph_sdl: init.supergraph_sdl.clone(),
            schema_json: Fixed::new(serde_json::to_vec(&model)?),
            api_sdl: api.to_string().into(),
            owners: model.owners(),
            api,
            watched,
            catalogue: Mutex::new(None),
            checks: tokio::sync::Semaphore::new(1),
            config,
        });
        let listen = ListenAddr::SocketAddr(state.config.listen);
        let endpoint = |path: String| {
            let state = state.clone();
            let service = tower::service_fn(move |request: router::Request| {
                let state = state.clone();
                async move { handle(&state, request).await }
            });
            Endpoint::from_router_service(path, service.boxed())
        };
        Ok(Self {
            endpoints: vec![
                (listen.clone(), endpoint(state.config.path.clone())),
                (listen, endpoint(format!("{}/{{*rest}}", state.config.path))),
            ],
        })
    }

    fn web_endpoints(&self) -> multimap::MultiMap<ListenAddr, Endpoint> {
        let mut endpoints = multimap::MultiMap::new();
        for (listen, endpoint) in &self.endpoints {
            endpoints.insert(listen.clone(), endpoint.clone());
        }
        endpoints
    }
}

register_plugin!("switchyard", "explorer", Explorer);

/// Largest request body read (a proposed SDL plus JSON framing).
const MAX_BODY_BYTES: usize = check::MAX_SDL_BYTES + 4096;

async fn handle(state: &State, request: router::Request) -> Result<router::Response, BoxError> {
    let context = request.context.clone();
    let (parts, body) = request.router_request.into_parts();
    let gzip_ok = reply::accepts_gzip(&parts.headers);
    let reply = if !admin_token::authorized(state.token.as_ref(), &parts.headers) {
        let mut reply = Reply::error(
            StatusCode::UNAUTHORIZED,
            "the explorer needs the admin token",
        );
        reply.extra.push((
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Switchyard explorer\", charset=\"UTF-8\""),
        ));
        reply
    } else {
        route(state, &parts, body).await
    };
    reply::respond(reply, gzip_ok, context)
}

async fn route(state: &State, parts: &http::request::Parts, body: router::Body) -> Reply {
    let path = parts.uri.path();
    let rest = path
        .strip_prefix(state.config.path.as_str())
        .unwrap_or("")
        .trim_start_matches('/');
    let method = &parts.method;
    if let Some(api) = rest.strip_prefix("api/") {
        return match (method, api) {
            (&Method::GET, "schema") => state.schema_json.json(),
            (&Method::GET, "operations") => match catalogue_of(state) {
                Ok(cache) => cache.json.json(),
                Err(e) => Reply::error(StatusCode::SERVICE_UNAVAILABLE, &e),
            },
            (&Method::GET, "usage") => usage(state),
            (&Method::GET, "sdl") => Reply {
                status: StatusCode::OK,
                content_type: "text/plain; charset=utf-8",
                cache_control: "no-store",
                body: state.api_sdl.clone(),
                gzip: Gzip::OnTheFly,
                extra: Vec::new(),
            },
            (&Method::POST, "check") => check_change(state, parts, body).await,
            (&Method::GET, _) if api.starts_with("subgraphs/") && api.ends_with("/sdl") => {
                let name = &api["subgraphs/".len()..api.len() - "/sdl".len()];
                subgraph_sdl(state, name)
            }
            (_, "schema" | "sdl" | "operations" | "usage" | "check") => {
                let mut reply = Reply::error(StatusCode::METHOD_NOT_ALLOWED, "wrong method");
                let allow = if api == "check" { "POST" } else { "GET" };
                reply
                    .extra
                    .push((header::ALLOW, HeaderValue::from_static(allow)));
                reply
            }
            _ => Reply::error(StatusCode::NOT_FOUND, "no such explorer API"),
        };
    }
    if method != Method::GET && method != Method::HEAD {
        let mut reply = Reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "the explorer's pages are GET",
        );
        reply
            .extra
            .push((header::ALLOW, HeaderValue::from_static("GET, HEAD")));
        return reply;
    }
    if rest.starts_with("assets/") {
        return match assets::get(rest) {
            Some(asset) => Reply {
                status: StatusCode::OK,
                content_type: assets::content_type(asset.path),
                cache_control: if asset.immutable() {
                    "public, max-age=31536000, immutable"
                } else {
                    "no-cache"
                },
                body: Bytes::from_static(asset.bytes),
                gzip: asset
                    .gzipped()
                    .map_or(Gzip::Never, |gz| Gzip::Ready(Bytes::from_static(gz))),
                extra: Vec::new(),
            },
            None => Reply::error(StatusCode::NOT_FOUND, "no such asset"),
        };
    }
    // Every other path is a page of the app (deep links): the index, revalidated each time.
    match assets::index_html(&state.base, &state.config.graphql_path) {
        Some(html) => Reply {
            status: StatusCode::OK,
            content_type: "text/html; charset=utf-8",
            cache_control: "no-cache",
            body: Bytes::from(html),
            gzip: Gzip::OnTheFly,
            extra: Vec::new(),
        },
        None => Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the explorer bundle has no index",
        ),
    }
}

/// The catalogue of the current manifest, rebuilt when the files changed since the last call.
fn catalogue_of(state: &State) -> Result<Arc<CatalogueCache>, String> {
    if let Some(Err(e)) = state.watched.reload_if_changed() {
        // The previous snapshot stays in force, as in the safelist stage.
        tracing::warn!("switchyard.explorer: {e}");
    }
    let snapshot = state.watched.snapshot();
    let mut cached = state
        .catalogue
        .lock()
        .map_err(|_| "catalogue lock poisoned".to_owned())?;
    if let Some((built_from, cache)) = cached.as_ref()
        && Arc::ptr_eq(built_from, &snapshot)
    {
        return Ok(cache.clone());
    }
    let catalogue = catalogue::build(
        &snapshot.manifest,
        &snapshot.retired,
        &state.api,
        &state.owners,
    );
    let json = Fixed::new(serde_json::to_vec(&catalogue).map_err(|e| e.to_string())?);
    let cache = Arc::new(CatalogueCache { catalogue, json });
    *cached = Some((snapshot, cache.clone()));
    Ok(cache)
}

/// Which client versions this router has seen send each persisted operation, and whether
/// those versions are retired.
fn usage(state: &State) -> Reply {
    let table = crate::plugins::persisted_queries::usage::Usage::global();
    let snapshot = state.watched.snapshot();
    let mut operations: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for row in table.rows() {
        let retired = snapshot
            .retired
            .client_version(Some(&row.client), Some(&row.version));
        operations
            .entry(row.id)
            .or_default()
            .push(serde_json::json!({
                "client": row.client,
                "version": row.version,
                "count": row.seen.count,
                "lastSeen": row.seen.last_seen,
                "retiredVersion": retired,
            }));
    }
    let body = serde_json::json!({
        "since": table.since(),
        "dropped": table.dropped(),
        "operations": operations,
    });
    Reply::json(StatusCode::OK, body.to_string())
}

/// The sources a check recomposes, and where they came from.
fn sources(state: &State) -> Result<(Vec<SubgraphSource>, &'static str), String> {
    match &state.config.supergraph_config {
        Some(path) => composition::read_config(path)
            .map(|s| (s, "supergraph.yaml"))
            .map_err(|e| e.to_string()),
        None => composition::extract_sources(&state.supergraph_sdl).map(|s| (s, "extracted")),
    }
}

fn subgraph_sdl(state: &State, name: &str) -> Reply {
    match sources(state) {
        Ok((sources, _)) => match sources.into_iter().find(|s| s.name == name) {
            Some(source) => Reply {
                status: StatusCode::OK,
                content_type: "text/plain; charset=utf-8",
                cache_control: "no-store",
                body: Bytes::from(source.sdl),
                gzip: Gzip::OnTheFly,
                extra: Vec::new(),
            },
            None => Reply::error(StatusCode::NOT_FOUND, "no such subgraph"),
        },
        Err(e) => Reply::error(StatusCode::SERVICE_UNAVAILABLE, &e),
    }
}

async fn read_body(body: router::Body) -> Result<Vec<u8>, Reply> {
    let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(Reply::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the body is larger than 516 KiB",
            ))
        }
        Err(e) => Err(Reply::error(
            StatusCode::BAD_REQUEST,
            &format!("reading the body: {e}"),
        )),
    }
}

async fn check_change(state: &State, parts: &http::request::Parts, body: router::Body) -> Reply {
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !json {
        // Also what keeps a cross-site form from posting here without a preflight.
        return Reply::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send {\"subgraph\": ..., \"sdl\": ...} as application/json",
        );
    }
    let bytes = match read_body(body).await {
        Ok(bytes) => bytes,
        Err(reply) => return reply,
    };
    let request: check::CheckRequest = match serde_json::from_slice(&bytes) {
        Ok(request) => request,
        Err(e) => return Reply::error(StatusCode::BAD_REQUEST, &format!("the body: {e}")),
    };
    if let Err(e) = request.validate() {
        return Reply::error(StatusCode::BAD_REQUEST, &e.to_string());
    }
    let Ok(_permit) = state.checks.try_acquire() else {
        let mut reply = Reply::error(
            StatusCode::TOO_MANY_REQUESTS,
            "another schema check is running on this router; try again in a moment",
        );
        reply
            .extra
            .push((header::RETRY_AFTER, HeaderValue::from_static("2")));
        return reply;
    };
    let (sources, label) = match sources(state) {
        Ok(found) => found,
        Err(e) => return Reply::error(StatusCode::SERVICE_UNAVAILABLE, &e),
    };
    let catalogue = match catalogue_of(state) {
        Ok(cache) => cache,
        Err(e) => return Reply::error(StatusCode::SERVICE_UNAVAILABLE, &e),
    };
    let api = state.api.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        check::run(&request, sources, label, &api, &catalogue.catalogue)
    })
    .await;
    match outcome {
        Ok(result) => match serde_json::to_vec(&result) {
            Ok(body) => Reply::json(StatusCode::OK, body),
            Err(e) => Reply::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        Err(e) => {
            tracing::error!("switchyard.explorer: schema check failed: {e}");
            Reply::error(StatusCode::INTERNAL_SERVER_ERROR, "the schema check failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On in development, off in production, on the supergraph's port in both.
    #[test]
    fn shipped_configs() {
        for (file, enabled) in [("router.yaml", true), ("router.production.yaml", false)] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            let yaml: serde_yaml::Value =
                serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            let explorer: ExplorerConfig =
                serde_yaml::from_value(yaml["plugins"]["switchyard.explorer"].clone()).unwrap();
            assert_eq!(explorer.enabled, enabled, "{file}");
            assert_eq!(
                explorer.listen.to_string(),
                yaml["supergraph"]["listen"].as_str().unwrap(),
                "{file}"
            );
            explorer.check().unwrap();
        }
    }

    #[test]
    fn config_is_checked() {
        let config = |yaml: &str| -> ExplorerConfig { serde_yaml::from_str(yaml).unwrap() };
        assert!(
            config("enabled: true\nlisten: 127.0.0.1:4000")
                .check()
                .is_ok()
        );
        for (yaml, expected) in [
            ("listen: 127.0.0.1:4000\npath: explorer", "path"),
            ("listen: 127.0.0.1:4000\npath: /explorer/", "path"),
            ("listen: 127.0.0.1:4000\npath: /x\"y", "path"),
            (
                "listen: 127.0.0.1:4000\ngraphql_path: /explorer/graphql",
                "graphql_path",
            ),
            ("listen: 127.0.0.1:4000\nadmin_token: short", "admin_token"),
        ] {
            let e = config(yaml).check().unwrap_err();
            assert!(e.contains(expected), "{yaml}: {e}");
        }
        let typo: Result<ExplorerConfig, _> =
            serde_yaml::from_str("listen: 127.0.0.1:4000\nenabeld: true");
        assert!(typo.unwrap_err().to_string().contains("enabeld"));
    }
}
