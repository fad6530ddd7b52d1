//! `switchyard.persisted_queries`: run operations by id, and (in `enforce` mode) nothing else.
//!
//! Ids are expanded in `router_service`, before apollo-router parses the request, from
//! `extensions.persistedQuery.sha256Hash` (Apollo/APQ) or `documentId` (GraphQL over HTTP), in
//! POST bodies and GET query strings. The manifest and the retired-versions file are polled and
//! hot-swapped; a malformed new file is logged and the old one stays in force.

pub mod apq;
pub mod errors;
pub mod manifest;
pub mod reload;
pub mod request;
pub mod retired;

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use apollo_router::layers::ServiceBuilderExt;
use apollo_router::plugin::{Plugin, PluginInit};
use apollo_router::register_plugin;
use apollo_router::services::router;
use http::Method;
use http_body_util::BodyExt;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, MeterProvider};
use schemars::JsonSchema;
use serde::Deserialize;
use tower::{BoxError, ServiceBuilder, ServiceExt};

use self::apq::ApqCache;
use self::errors::PqError;
use self::manifest::{is_valid_id, operation_id};
use self::reload::{Snapshot, Watched};
use self::request::{RequestObject, persisted_parts};

/// The request header naming the client app (Apollo's convention).
pub const CLIENT_NAME_HEADER: &str = "apollographql-client-name";
/// The request header with the client app's version.
pub const CLIENT_VERSION_HEADER: &str = "apollographql-client-version";
/// Context key with the persisted operation's id, for later plugins (cache keys).
pub const CONTEXT_OPERATION_ID: &str = "switchyard::persisted_query_id";

/// What runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Only manifest operations run (by id, or as their exact text).
    Enforce,
    /// Manifest operations run by id; free-form queries run too, and are logged and counted.
    LogUnknown,
    /// Development: clients may register operations (automatic persisted queries, hash checked).
    AllowApq,
}

/// Configuration of `switchyard.persisted_queries`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PersistedQueriesConfig {
    pub mode: Mode,
    /// The Apollo persisted query manifest (`switchyard pq build` writes it).
    pub manifest: PathBuf,
    /// Retired operations and client versions (YAML); optional.
    #[serde(default)]
    pub retired: Option<PathBuf>,
    /// How often the files are checked for changes.
    #[serde(default = "default_reload_interval", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub reload_interval: Duration,
    /// Hold clients (header `apollographql-client-name`) to the operations the manifest lists
    /// for them.
    #[serde(default = "default_true")]
    pub per_client_safelist: bool,
    /// Refuse requests without `apollographql-client-name`.
    #[serde(default)]
    pub require_client_name: bool,
    /// Operations remembered in `allow_apq` mode.
    #[serde(default = "default_apq_capacity")]
    pub apq_capacity: usize,
    /// Longest GET query string accepted (bytes).
    #[serde(default = "default_max_get_query_bytes")]
    pub max_get_query_bytes: usize,
    /// Largest POST body read (bytes).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_true() -> bool {
    true
}
fn default_apq_capacity() -> usize {
    10_000
}
fn default_max_get_query_bytes() -> usize {
    8 * 1024
}
fn default_max_body_bytes() -> usize {
    2 * 1024 * 1024
}

struct Shared {
    config: PersistedQueriesConfig,
    watched: Arc<Watched>,
    apq: ApqCache,
    requests: Counter<u64>,
}

pub struct PersistedQueries {
    shared: Arc<Shared>,
    _reloader: crate::plugins::background::AbortOnDrop,
}

#[async_trait::async_trait]
impl Plugin for PersistedQueries {
    type Config = PersistedQueriesConfig;

    async fn new(init: PluginInit<Self::Config>) -> Result<Self, BoxError> {
        let config = init.config;
        let watched = Arc::new(
            Watched::load(config.manifest.clone(), config.retired.clone())
                .map_err(|e| format!("switchyard.persisted_queries: {e}"))?,
        );
        let meter = apollo_router::metrics::meter_provider().meter("switchyard");
        let requests = meter
            .u64_counter("switchyard.persisted_queries.requests")
            .with_description("Requests seen by the persisted query plugin, by client and outcome")
            .build();
        let reloads = meter
            .u64_counter("switchyard.persisted_queries.reloads")
            .with_description("Manifest and retired-file reloads, by outcome")
            .build();
        let shared = Arc::new(Shared {
            apq: ApqCache::new(config.apq_capacity),
            watched,
            requests,
            config,
        });
        let reloader = reload::spawn(
            Arc::downgrade(&shared.watched),
            shared.config.reload_interval,
            reloads,
        );
        Ok(Self {
            shared,
            _reloader: reloader,
        })
    }

    fn router_service(&self, service: router::BoxService) -> router::BoxService {
        let shared = self.shared.clone();
        ServiceBuilder::new()
            .checkpoint_async(move |request: router::Request| {
                let shared = shared.clone();
                async move { Ok(handle(&shared, request).await) }
            })
            .buffered()
            .service(service)
            .boxed()
    }
}

/// What a request runs as.
struct Resolution {
    /// The metric outcome.
    label: &'static str,
    /// The persisted operation's id, when it is one.
    id: Option<String>,
}

impl Resolution {
    fn run(label: &'static str) -> Self {
        Self { label, id: None }
    }

    fn persisted(label: &'static str, id: String) -> Self {
        Self {
            label,
            id: Some(id),
        }
    }
}

async fn handle(
    shared: &Shared,
    request: router::Request,
) -> ControlFlow<router::Response, router::Request> {
    let client = header(&request, CLIENT_NAME_HEADER);
    let version = header(&request, CLIENT_VERSION_HEADER);
    let context = request.context.clone();
    let (result, label) =
        match rewrite(shared, request, client.as_deref(), version.as_deref()).await {
            Ok((request, label)) => (ControlFlow::Continue(request), label),
            Err(error) => {
                let label = error.metric_label();
                tracing::debug!(
                    client = client.as_deref().unwrap_or("unknown"),
                    code = error.code(),
                    "persisted query rejected"
                );
                (ControlFlow::Break(error.into_response(context)), label)
            }
        };
    shared.requests.add(
        1,
        &[
            KeyValue::new("client", client.unwrap_or_else(|| "unknown".to_owned())),
            KeyValue::new("outcome", label),
        ],
    );
    result
}

fn header(request: &router::Request, name: &str) -> Option<String> {
    request
        .router_request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

async fn rewrite(
    shared: &Shared,
    request: router::Request,
    client: Option<&str>,
    version: Option<&str>,
) -> Result<(router::Request, &'static str), PqError> {
    let snapshot = shared.watched.snapshot();
    if snapshot.retired.client_version(client, version) {
        return Err(PqError::ClientVersionRetired {
            client: client.unwrap_or_default().to_owned(),
            version: version.unwrap_or_default().to_owned(),
        });
    }
    if shared.config.require_client_name && client.is_none() {
        return Err(PqError::ClientNameRequired);
    }
    let router::Request {
        router_request,
        context,
        ..
    } = request;
    let (mut parts, body) = router_request.into_parts();

    if parts.method == Method::GET {
        let query = parts.uri.query().unwrap_or_default();
        if query.len() > shared.config.max_get_query_bytes {
            return Err(PqError::UriTooLong {
                limit: shared.config.max_get_query_bytes,
            });
        }
        let Some(mut object) = request::from_query_string(query) else {
            let request = http::Request::from_parts(parts, body);
            return Ok((router::Request::from((request, context)), "passthrough"));
        };
        let resolution = resolve(shared, &snapshot, &mut object, client)?;
        remember_id(&context, &resolution);
        request::strip_ids(&mut object);
        let path = parts.uri.path().to_owned();
        let pq = format!("{path}?{}", request::to_query_string(&object));
        let mut uri = http::uri::Parts::from(parts.uri.clone());
        uri.path_and_query = Some(
            pq.parse()
                .map_err(|_| PqError::Malformed("query string".into()))?,
        );
        parts.uri =
            http::Uri::from_parts(uri).map_err(|_| PqError::Malformed("query string".into()))?;
        let request = http::Request::from_parts(parts, body);
        return Ok((router::Request::from((request, context)), resolution.label));
    }

    let bytes = http_body_util::Limited::new(body, shared.config.max_body_bytes)
        .collect()
        .await
        .map_err(|_| PqError::BodyTooLarge {
            limit: shared.config.max_body_bytes,
        })?
        .to_bytes();
    let passthrough = |parts, bytes| {
        let request = http::Request::from_parts(parts, router::body::from_bytes(bytes));
        router::Request::from((request, context.clone()))
    };
    // Not a JSON object (malformed, or a batch): apollo-router answers that precisely.
    let Ok(serde_json::Value::Object(mut object)) =
        serde_json::from_slice::<serde_json::Value>(&bytes)
    else {
        return Ok((passthrough(parts, bytes), "passthrough"));
    };
    let resolution = resolve(shared, &snapshot, &mut object, client)?;
    remember_id(&context, &resolution);
    request::strip_ids(&mut object);
    let body = serde_json::to_vec(&object).expect("request object serializes");
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Ok((passthrough(parts, body.into()), resolution.label))
}

/// Records the persisted id for later plugins (cache keys).
fn remember_id(context: &apollo_router::Context, resolution: &Resolution) {
    if let Some(id) = &resolution.id {
        let _ = context.insert(CONTEXT_OPERATION_ID, id.clone());
    }
}

/// Decides what a request object runs as, expanding ids into the operation text in place.
fn resolve(
    shared: &Shared,
    snapshot: &Snapshot,
    object: &mut RequestObject,
    client: Option<&str>,
) -> Result<Resolution, PqError> {
    let mode = shared.config.mode;
    let parts = persisted_parts(object).map_err(|request::PartsError::NotAString(what)| {
        PqError::Malformed(format!("`{what}` must be a string"))
    })?;
    if let Some(version) = &parts.apq_version
        && version != &serde_json::json!(1)
    {
        return Err(PqError::UnsupportedVersion(version.to_string()));
    }
    let id = match (&parts.document_id, &parts.apq_hash) {
        (Some(doc), Some(hash)) if !doc.eq_ignore_ascii_case(hash) => {
            return Err(PqError::Malformed(
                "`documentId` and `extensions.persistedQuery` name different operations".into(),
            ));
        }
        (Some(id), _) | (None, Some(id)) => Some(id.clone()),
        (None, None) => None,
    };
    if parts.document_id.is_some() && parts.query.is_some() {
        return Err(PqError::IdAndQuery);
    }

    let Some(id) = id else {
        // Free-form (or no query at all, which apollo-router reports).
        let Some(query) = parts.query else {
            return Ok(Resolution::run("passthrough"));
        };
        let id = operation_id(&query);
        if let Some(op) = snapshot.manifest.get(&id) {
            check_operation(shared, snapshot, op, client)?;
            return Ok(Resolution::persisted("manifest_text", id));
        }
        return match mode {
            Mode::Enforce => Err(PqError::NotInList { client: None }),
            Mode::LogUnknown => {
                tracing::info!(
                    client = client.unwrap_or("unknown"),
                    operation = object
                        .get("operationName")
                        .and_then(|v| v.as_str())
                        .unwrap_or(""),
                    "free-form operation (log_unknown)"
                );
                Ok(Resolution::run("free_form"))
            }
            Mode::AllowApq => Ok(Resolution::run("free_form")),
        };
    };

    if !is_valid_id(&id) {
        return Err(PqError::InvalidId);
    }
    let id = id.to_ascii_lowercase();
    if let Some(query) = &parts.query {
        // APQ registration (or a client sending both): the body must hash to the id.
        if operation_id(query) != id {
            return Err(PqError::HashMismatch);
        }
        if let Some(op) = snapshot.manifest.get(&id) {
            check_operation(shared, snapshot, op, client)?;
            request::expand(object, &op.body);
            return Ok(Resolution::persisted("manifest_hit", id));
        }
        return match mode {
            Mode::Enforce => Err(PqError::NotInList { client: None }),
            Mode::LogUnknown => Ok(Resolution::run("free_form")),
            Mode::AllowApq => {
                shared.apq.insert(id.clone(), query.as_str().into());
                Ok(Resolution::persisted("apq_registered", id))
            }
        };
    }
    if let Some(op) = snapshot.manifest.get(&id) {
        check_operation(shared, snapshot, op, client)?;
        request::expand(object, &op.body);
        return Ok(Resolution::persisted("manifest_hit", id));
    }
    match mode {
        Mode::AllowApq => match shared.apq.get(&id) {
            Some(body) => {
                request::expand(object, &body);
                Ok(Resolution::persisted("apq_hit", id))
            }
            None => Err(PqError::NotFound),
        },
        Mode::LogUnknown => Err(PqError::NotFound),
        Mode::Enforce => Err(PqError::UnknownId),
    }
}

fn check_operation(
    shared: &Shared,
    snapshot: &Snapshot,
    op: &manifest::Operation,
    client: Option<&str>,
) -> Result<(), PqError> {
    if snapshot.retired.operation(&op.id) {
        return Err(PqError::OperationRetired {
            name: op.name.clone(),
        });
    }
    if shared.config.per_client_safelist && !op.allows_client(client) {
        return Err(PqError::NotInList {
            client: client.map(str::to_owned),
        });
    }
    Ok(())
}

register_plugin!("switchyard", "persisted_queries", PersistedQueries);
