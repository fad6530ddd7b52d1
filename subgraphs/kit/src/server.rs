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

/// Adds a subgraph's per-request data (its dataloaders) to a request, given the request's
/// store session. Loaders are per request: their cache then never serves one user's view to
/// another, and never outlives a write.
pub type PrepareRequest = fn(Request, Arc<Session>) -> Request;

struct App<E> {
    executor: E,
    store: Arc<ShardedStore>,
    prepare: PrepareRequest,
}

/// The subgraph's routes.
pub fn router<E: Executor>(
    executor: E,
    store: Arc<ShardedStore>,
    prepare: PrepareRequest,
) -> Router {
    let app = Arc::new(App {
        executor,
        store,
        prepare,
    });
    Router::new()
        .route("/graphql", get(graphql::<E>).post(graphql::<E>))
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready::<E>))
        .with_state(app)
}

async fn graphql<E: Executor>(
    State(app): State<Arc<App<E>>>,
    request: GraphQLRequest,
) -> GraphQLResponse {
    let session = Arc::new(app.store.session());
    let request = (app.prepare)(request.into_inner(), session);
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
