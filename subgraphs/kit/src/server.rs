//! The HTTP face of a subgraph: `/graphql` (POST and GET), `/health` and `/ready`.

use std::future::Future;
use std::sync::Arc;

use async_graphql::{Executor, Request};
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::store::{Session, ShardedStore};
use crate::viewer::Viewer;

/// Adds a subgraph's per-request data (its dataloaders) to a request, given the request's
/// store session. Loaders are per request: their cache then never serves one user's view to
/// another, and never outlives a write.
pub type PrepareRequest = fn(Request, Arc<Session>) -> Request;

struct App<E> {
    executor: E,
    store: Arc<ShardedStore>,
    prepare: PrepareRequest,
    /// The secret the router proves itself with (`SWITCHYARD_ROUTER_SECRET`).
    router_secret: Option<String>,
}

/// How a subgraph's HTTP server is set up.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// The secret the router proves itself with; without one, no caller is ever authenticated.
    pub router_secret: Option<String>,
}

impl ServerOptions {
    /// From the environment (`SWITCHYARD_ROUTER_SECRET`).
    pub fn from_env() -> Self {
        let router_secret = std::env::var(crate::viewer::SECRET_ENV)
            .ok()
            .filter(|s| !s.is_empty());
        Self { router_secret }
    }
}

/// The subgraph's routes.
pub fn router<E: Executor>(
    executor: E,
    store: Arc<ShardedStore>,
    prepare: PrepareRequest,
    options: &ServerOptions,
) -> Router {
    let router_secret = options.router_secret.clone();
    let app = Arc::new(App {
        executor,
        store,
        prepare,
        router_secret,
    });
    Router::new()
        .route("/graphql", get(graphql::<E>).post(graphql::<E>))
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready::<E>))
        .with_state(app)
}

async fn graphql<E: Executor>(
    State(app): State<Arc<App<E>>>,
    headers: axum::http::HeaderMap,
    request: GraphQLRequest,
) -> GraphQLResponse {
    let session = Arc::new(app.store.session());
    let viewer = Viewer::from_headers(&headers, app.router_secret.as_deref());
    let request = (app.prepare)(request.into_inner().data(viewer), session);
    app.executor.execute(request).await.into()
}

async fn ready<E: Executor>(State(app): State<Arc<App<E>>>) -> (StatusCode, String) {
    match app.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready".into()),
        Err(err) => (StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
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
