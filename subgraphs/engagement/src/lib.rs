//! The engagement subgraph: likes, comments and follows, with counts kept as projections by
//! the counters worker from the subgraph's own events.

pub mod entities;
pub mod loaders;
pub mod migration;
pub mod projections;
pub mod repo;
pub mod schema;

use std::sync::Arc;

use switchyard_kit::ShardedStore;

pub use migration::Migrator;
pub use schema::{EngagementSchema, prepare, schema};

/// The subgraph's name in `supergraph.yaml`, shard file names and its event stream.
pub const NAME: &str = "engagement";

/// The SDL this subgraph serves at `_service.sdl` (and `switchyard schema export` writes).
pub fn sdl() -> String {
    switchyard_kit::federation_sdl(&schema())
}

/// The subgraph's HTTP routes over `store`.
pub fn router(
    store: Arc<ShardedStore>,
    options: &switchyard_kit::server::ServerOptions,
) -> Result<axum::Router, String> {
    Ok(switchyard_kit::server::router(
        schema(),
        store,
        prepare,
        options,
    ))
}

/// This subgraph, for the `switchyard` binary.
pub const SUBGRAPH: switchyard_kit::SubgraphDef = switchyard_kit::SubgraphDef {
    name: NAME,
    default_port: 4003,
    sdl,
    router,
    migrate: |store| Box::pin(store.migrate::<Migrator>()),
};
