//! The pipeline's `safelist` stage: run operations by id, and (in `enforce` mode) nothing else.
//!
//! Works on the typed request the `read` stage produced (never on the client's bytes): ids
//! come from `extensions.persistedQuery.sha256Hash` (Apollo/APQ) or `documentId` (GraphQL over
//! HTTP), from POST bodies and GET query strings alike, and are expanded into the text that
//! apollo-router then executes. The manifest and the retired-versions file are polled and
//! hot-swapped; a malformed new file is logged and the old one stays in force.

pub mod apq;
pub mod errors;
pub mod reload;
pub mod request;
pub mod usage;

pub use switchyard_wire::{manifest, retired};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, MeterProvider};
use schemars::JsonSchema;
use serde::Deserialize;
use tower::BoxError;

use self::apq::ApqCache;
use self::errors::PqError;
use self::manifest::{is_valid_id, operation_id};
use self::reload::{Snapshot, Watched};
use self::request::persisted_parts;
use crate::pipeline::read::{Client, GraphqlRequest};
use crate::pipeline::refusal::Refusal;

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

/// Configuration of the `persisted_queries` stage (the safelist).
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

struct Shared {
    config: PersistedQueriesConfig,
    watched: Arc<Watched>,
    apq: ApqCache,
    requests: Counter<u64>,
}

/// The safelist stage.
pub struct PersistedQueries {
    shared: Arc<Shared>,
    _reloader: crate::plugins::background::AbortOnDrop,
}

impl PersistedQueries {
    pub fn new(config: PersistedQueriesConfig) -> Result<Self, BoxError> {
        let watched = Arc::new(
            Watched::load(config.manifest.clone(), config.retired.clone())
                .map_err(|e| format!("persisted_queries: {e}"))?,
        );
        let meter = apollo_router::metrics::meter_provider().meter("switchyard");
        let requests = meter
            .u64_counter("switchyard.persisted_queries.requests")
            .with_description("Requests seen by the persisted query stage, by client and outcome")
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

    /// Decides what `request` runs: expands a persisted id into its text (and records the id),
    /// or refuses. Counts the outcome by client (manifest clients only; others are `other`).
    pub fn check(&self, request: &mut GraphqlRequest) -> Result<(), Refusal> {
        let shared = &self.shared;
        let snapshot = shared.watched.snapshot();
        let outcome = decide(shared, &snapshot, request);
        let client = client_label(&snapshot, &request.client);
        // Which versions still send which shipped operation (the explorer's impact view),
        // retired versions included: they are refused, but they are still out there.
        if usage::watched() {
            let shipped = match &outcome {
                Ok(_) => request.persisted_id.clone(),
                Err(PqError::ClientVersionRetired { .. }) => shipped_id(request),
                Err(_) => None,
            };
            if let Some(id) = shipped.filter(|id| snapshot.manifest.get(id).is_some()) {
                usage::Usage::global().record(&id, &client, request.client.version.as_deref());
            }
        }
        let label: &'static str = match &outcome {
            Ok(label) => label,
            Err(error) => {
                tracing::debug!(client, code = error.code(), "persisted query rejected");
                error.metric_label()
            }
        };
        shared.requests.add(
            1,
            &[
                KeyValue::new("client", client),
                KeyValue::new("outcome", label),
            ],
        );
        outcome.map(|_| ()).map_err(PqError::into_refusal)
    }
}

/// The manifest id a request names (by id or by its text), without deciding anything.
fn shipped_id(request: &GraphqlRequest) -> Option<String> {
    let parts = persisted_parts(request).ok()?;
    match (parts.document_id, parts.apq_hash, parts.query) {
        (Some(id), _, _) | (None, Some(id), _) => Some(id.to_ascii_lowercase()),
        (None, None, Some(query)) => Some(operation_id(&query)),
        (None, None, None) => None,
    }
}

/// The client as a metric label: a manifest client's name, `other`, or `unknown` (none).
pub fn client_label(snapshot: &Snapshot, client: &Client) -> String {
    match client.name.as_deref() {
        None => "unknown".to_owned(),
        Some(name) if snapshot.manifest.knows_client(name) => name.to_owned(),
        Some(_) => "other".to_owned(),
    }
}

fn decide(
    shared: &Shared,
    snapshot: &Snapshot,
    request: &mut GraphqlRequest,
) -> Result<&'static str, PqError> {
    let client = request.client.name.clone();
    let version = request.client.version.clone();
    if snapshot
        .retired
        .client_version(client.as_deref(), version.as_deref())
    {
        return Err(PqError::ClientVersionRetired {
            client: client.unwrap_or_default(),
            version: version.unwrap_or_default(),
        });
    }
    if shared.config.require_client_name && client.is_none() {
        return Err(PqError::ClientNameRequired);
    }
    let resolution = resolve(shared, snapshot, request, client.as_deref())?;
    request.persisted_id = resolution.id;
    request::strip_ids(request);
    Ok(resolution.label)
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

/// Decides what a request runs as, expanding ids into the operation text in place.
fn resolve(
    shared: &Shared,
    snapshot: &Snapshot,
    request: &mut GraphqlRequest,
    client: Option<&str>,
) -> Result<Resolution, PqError> {
    let mode = shared.config.mode;
    let parts = persisted_parts(request).map_err(|request::PartsError::NotAString(what)| {
        PqError::Malformed(format!("`{what}` must be a string"))
    })?;
    if let Some(version) = &parts.apq_version
        && version != &serde_json_bytes::json!(1)
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
            return match mode {
                Mode::Enforce => Err(PqError::NoOperation),
                _ => Ok(Resolution::run("passthrough")),
            };
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
                    client = client_label(snapshot, &request.client),
                    operation = request.operation_name.as_deref().unwrap_or(""),
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
            request::expand(request, &op.body);
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
        request::expand(request, &op.body);
        return Ok(Resolution::persisted("manifest_hit", id));
    }
    match mode {
        Mode::AllowApq => match shared.apq.get(&id) {
            Some(body) => {
                request::expand(request, &body);
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
