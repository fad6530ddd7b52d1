//! Plumbing every Switchyard subgraph shares: ids, the sharded store, pagination, input
//! checks, error codes and the HTTP server.

pub mod cache;
pub mod error;
pub mod events;
pub mod id;
pub mod loader;
pub mod metrics;
pub mod migration;
pub mod page;
pub mod server;
pub mod store;
mod store_metrics;
pub mod telemetry;
pub mod validate;
pub mod viewer;

#[cfg(feature = "testing")]
pub mod testing;

pub use error::{ApiError, ApiResult, ErrorCodes};
pub use store::{Session, ShardedStore, StoreConfig, StoreError};
pub use switchyard_wire::deployment;
pub use switchyard_wire::names as wire_names;
pub use viewer::Viewer;

/// The request's viewer (anonymous when the request data has none, e.g. in a unit test).
pub fn viewer(ctx: &async_graphql::Context<'_>) -> Viewer {
    ctx.data_opt::<Viewer>().cloned().unwrap_or_default()
}

/// The GraphQL `ID` of a stored row: its id in decimal.
pub fn gql_id(id: i64) -> async_graphql::ID {
    async_graphql::ID(id.to_string())
}

/// The SDL a subgraph serves at `_service.sdl` (and `switchyard schema export` writes): the
/// federation form, with our composed directives (`@cacheControl`).
pub fn federation_sdl<Q, M, S>(schema: &async_graphql::Schema<Q, M, S>) -> String
where
    Q: async_graphql::ObjectType + 'static,
    M: async_graphql::ObjectType + 'static,
    S: async_graphql::SubscriptionType + 'static,
{
    schema.sdl_with_options(
        async_graphql::SDLExportOptions::new()
            .federation()
            .compose_directive(),
    )
}

/// What the `switchyard` binary needs to know to run, migrate and export one subgraph.
pub struct SubgraphDef {
    /// The name in `supergraph.yaml`, shard file names and environment variables.
    pub name: &'static str,
    /// The port `switchyard dev` and `switchyard subgraph` listen on by default.
    pub default_port: u16,
    /// The SDL served at `_service.sdl`.
    pub sdl: fn() -> String,
    /// The HTTP routes over a connected store (or why its configuration is wrong).
    pub router:
        fn(std::sync::Arc<ShardedStore>, &server::ServerOptions) -> Result<axum::Router, String>,
    /// Runs the subgraph's migrations on every shard.
    pub migrate:
        for<'a> fn(&'a ShardedStore) -> futures::future::BoxFuture<'a, Result<(), StoreError>>,
}
