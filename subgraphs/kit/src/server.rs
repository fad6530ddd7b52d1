//! The HTTP face of a subgraph: `/graphql` (POST and GET), `/health`, `/ready` and `/metrics`
//! (Prometheus, see [`crate::metrics`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use async_graphql::{Executor, Request};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::cache::CacheTags;
use crate::store::{Session, ShardedStore};
use crate::viewer::Viewer;
use governor::middleware::NoOpMiddleware;
use switchyard_wire::deployment::{self, Environment, Secret};
use tower_governor::GovernorError;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::GlobalKeyExtractor;

/// Adds a subgraph's per-request data (its dataloaders) to a request, given the request's
/// store session. Loaders are per request: their cache then never serves one user's view to
/// another, and never outlives a write.
pub type PrepareRequest = fn(Request, Arc<Session>) -> Request;

struct App<E> {
    executor: E,
    store: Arc<ShardedStore>,
    prepare: PrepareRequest,
    /// The secret the router proves itself with (`SWITCHYARD_ROUTER_SECRET`).
    router_secret: Option<Secret>,
}

/// Largest request body a subgraph reads (the router's own limit is the same).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// How a subgraph's HTTP server is set up.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Development allows the secrets this repository publishes; production refuses them.
    pub environment: Environment,
    /// The secret the router proves itself with; without one, no caller is ever authenticated.
    pub router_secret: Option<Secret>,
    /// The backstop: GraphQL requests this instance serves per second, whoever sends them. The
    /// router's limits are the real defence; this one keeps a runaway router (or a client that
    /// reached the subgraph directly) from taking the shards down with it.
    pub max_requests_per_second: u32,
    /// Requests above the rate accepted at once.
    pub burst: u32,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            environment: Environment::Development,
            router_secret: None,
            max_requests_per_second: 2_000,
            burst: 500,
        }
    }
}

impl ServerOptions {
    /// From the environment: `SWITCHYARD_ENV` (with the addresses the process will listen on,
    /// see [`Environment::resolve`]), `SWITCHYARD_ROUTER_SECRET` (or `_FILE`),
    /// `SWITCHYARD_SUBGRAPH_MAX_RPS`, `SWITCHYARD_SUBGRAPH_BURST`. In production the router
    /// secret is required and must not be the published development one.
    pub fn from_env(listens_on: &[SocketAddr]) -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|s| !s.is_empty());
        let number = |name: &str, default: u32| -> Result<u32, String> {
            match var(name) {
                None => Ok(default),
                Some(v) => v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{name} must be a positive number, got {v:?}")),
            }
        };
        let defaults = Self::default();
        let environment = Environment::from_env(listens_on).map_err(|e| e.to_string())?;
        let router_secret =
            deployment::secret_from_env(crate::viewer::SECRET_ENV).map_err(|e| e.to_string())?;
        let options = Self {
            environment,
            router_secret,
            max_requests_per_second: number(
                "SWITCHYARD_SUBGRAPH_MAX_RPS",
                defaults.max_requests_per_second,
            )?,
            burst: number("SWITCHYARD_SUBGRAPH_BURST", defaults.burst)?,
        };
        options.check()?;
        Ok(options)
    }

    /// Refuses, in production, a missing router secret or the published development one.
    pub fn check(&self) -> Result<(), String> {
        if !self.environment.is_production() {
            return Ok(());
        }
        match &self.router_secret {
            None => Err(format!(
                "{} (or {}_FILE) is required in production ({}); set {}=development to run without it",
                crate::viewer::SECRET_ENV,
                crate::viewer::SECRET_ENV,
                PRODUCTION_BECAUSE,
                deployment::ENV_VAR
            )),
            Some(secret) if secret.is_published() => Err(format!(
                "{} is the development secret published in this repository; production needs its own ({PRODUCTION_BECAUSE})",
                crate::viewer::SECRET_ENV
            )),
            Some(_) => Ok(()),
        }
    }
}

/// Why a process counts as production, for error messages.
pub const PRODUCTION_BECAUSE: &str =
    "SWITCHYARD_ENV=production, or unset while listening on a non-loopback address";

/// The subgraph's routes.
pub fn router<E: Executor>(
    executor: E,
    store: Arc<ShardedStore>,
    prepare: PrepareRequest,
    options: &ServerOptions,
) -> Router {
    let router_secret = options.router_secret.clone();
    store.watch_metrics();
    crate::events::outbox::watch_lag(store.name(), &store);
    let app = Arc::new(App {
        executor,
        store,
        prepare,
        router_secret,
    });
    let graphql_routes = Router::new()
        .route("/graphql", get(graphql::<E>).post(graphql::<E>))
        // async-graphql reads the body as a stream, which axum's default limit does not cover.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_BODY_BYTES,
        ))
        .layer(backstop(options));
    Router::new()
        .merge(graphql_routes)
        .route("/health", get(|| async { "ok" }))
        .route("/metrics", get(crate::metrics::handler))
        .route("/ready", get(ready::<E>))
        .with_state(app)
}

/// One GraphQL request: its span (a child of the router's fetch span when the router sent a
/// `traceparent`), its metrics and its log line (operation, duration, outcome; never
/// variables, tokens or the document).
async fn graphql<E: Executor>(
    State(app): State<Arc<App<E>>>,
    headers: axum::http::HeaderMap,
    request: GraphQLRequest,
) -> GraphQLResponse {
    let started = std::time::Instant::now();
    let secret = app.router_secret.as_ref().map(Secret::expose);
    let request = request.into_inner();
    let subgraph = app.store.name();
    let metrics = crate::metrics::metrics();
    let operation = metrics.operation_label(request.operation_name.as_deref());
    let span = tracing::info_span!(
        "graphql.request",
        otel.kind = "server",
        subgraph,
        graphql.operation.name = operation.as_str(),
        outcome = tracing::field::Empty,
    );
    // A direct caller could otherwise force every request into the sampled set, or graft its
    // spans onto our traces.
    if crate::viewer::from_router(&headers, secret) {
        crate::telemetry::set_parent(&span, crate::telemetry::context_from_headers(&headers));
    }
    let session = Arc::new(app.store.session());
    let viewer = Viewer::from_headers(&headers, secret);
    let tags = CacheTags::default();
    let request = (app.prepare)(request.data(viewer).data(tags.clone()), session);
    let mut response = app.executor.execute(request).instrument(span.clone()).await;
    tags.apply(&mut response);
    let elapsed = started.elapsed();
    let outcome = if response.errors.is_empty() {
        "ok"
    } else {
        "error"
    };
    let codes: Vec<String> = response
        .errors
        .iter()
        .filter_map(|e| match e.extensions.as_ref()?.get("code")? {
            async_graphql::Value::String(code) => Some(code.clone()),
            _ => None,
        })
        .take(5)
        .collect();
    metrics
        .requests
        .with_label_values(&[subgraph, operation.as_str(), outcome])
        .inc();
    metrics
        .request_duration
        .with_label_values(&[subgraph, operation.as_str()])
        .observe(elapsed.as_secs_f64());
    span.record("outcome", outcome);
    span.in_scope(|| {
        tracing::info!(
            target: "switchyard::request",
            subgraph,
            operation = operation.as_str(),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            outcome,
            errors = response.errors.len(),
            error_codes = codes.join(","),
            "graphql request"
        );
    });
    response.into()
}

/// One global GCRA bucket for the instance; refusals are GraphQL `RATE_LIMITED` errors.
fn backstop(
    options: &ServerOptions,
) -> tower_governor::GovernorLayer<GlobalKeyExtractor, NoOpMiddleware, axum::body::Body> {
    let per_request = std::time::Duration::from_nanos(
        1_000_000_000 / u64::from(options.max_requests_per_second.max(1)),
    );
    let config = GovernorConfigBuilder::default()
        .period(per_request)
        .burst_size(options.burst.max(1))
        .key_extractor(GlobalKeyExtractor)
        .finish()
        .expect("positive period and burst");
    tower_governor::GovernorLayer::new(config).error_handler(|error| {
        let (status, retry_after) = match error {
            GovernorError::TooManyRequests { wait_time, .. } => (StatusCode::TOO_MANY_REQUESTS, wait_time.max(1)),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, 1),
        };
        let body = serde_json::json!({"errors": [{"message": "this subgraph is over its request budget; retry shortly", "extensions": {"code": "RATE_LIMITED"}}]});
        axum::http::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("retry-after", retry_after.to_string())
            .body(axum::body::Body::from(body.to_string()))
            .expect("static response")
    })
}

async fn ready<E: Executor>(State(app): State<Arc<App<E>>>) -> (StatusCode, String) {
    let readiness = app.store.readiness().await;
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, readiness.report)
}

/// Serves `app` until `shutdown` resolves; in-flight requests are allowed to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
